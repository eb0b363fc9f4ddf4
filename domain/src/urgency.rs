//! Urgency: an order is urgent because of the items in it.

use ksa_schemas::OrderLine;
use ksa_schemas::settings::{UrgencyMatch, UrgencyRule};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Urgency {
    /// Items not fetched yet: measured against the normal grid until they are.
    #[default]
    Pending,
    Normal,
    Urgent,
}

impl Urgency {
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::Pending => "pending",
            Urgency::Normal => "normal",
            Urgency::Urgent => "urgent",
        }
    }
}

/// Urgent when any line matches any active rule. A SKU rule matches the line's SKU or its
/// offer's SKU (KeyCRM lets them differ).
pub fn urgency_of(lines: &[OrderLine], rules: &[UrgencyRule]) -> Urgency {
    if matching_rule(lines, rules).is_some() { Urgency::Urgent } else { Urgency::Normal }
}

/// The first active rule that one of the lines matches, and that line's position: why an
/// order is urgent.
pub fn matching_rule<'r>(lines: &[OrderLine], rules: &'r [UrgencyRule]) -> Option<(&'r UrgencyRule, usize)> {
    rules.iter().filter(|r| r.is_active).find_map(|rule| lines.iter().position(|line| line_matches(line, &rule.matches)).map(|i| (rule, i)))
}

fn line_matches(line: &OrderLine, rule: &UrgencyMatch) -> bool {
    match rule {
        UrgencyMatch::Sku(sku) => {
            let sku = sku.trim();
            line.sku.as_deref().is_some_and(|s| s.trim() == sku) || line.offer_sku.as_deref().is_some_and(|s| s.trim() == sku)
        }
        UrgencyMatch::OfferId(id) => line.offer_id == Some(*id),
        UrgencyMatch::ProductId(id) => line.product_id == Some(*id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(matches: UrgencyMatch) -> UrgencyRule {
        UrgencyRule { name: None, matches, is_active: true }
    }

    fn line(sku: &str, offer_sku: &str, offer_id: i64, product_id: i64) -> OrderLine {
        OrderLine {
            sku: Some(sku.into()),
            offer_sku: Some(offer_sku.into()),
            offer_id: Some(offer_id),
            product_id: Some(product_id),
            quantity: 1.0,
            ..OrderLine::default()
        }
    }

    #[test]
    fn sku_rule_matches_the_line_sku_or_the_offer_sku() {
        let rules = [rule(UrgencyMatch::Sku("Термінове виготовлення".into()))];
        assert_eq!(urgency_of(&[line("Термінове виготовлення", "X", 1, 1)], &rules), Urgency::Urgent);
        assert_eq!(urgency_of(&[line("X", "Термінове виготовлення", 1, 1)], &rules), Urgency::Urgent);
        assert_eq!(urgency_of(&[line("X", "Y", 1, 1)], &rules), Urgency::Normal);
    }

    #[test]
    fn offer_and_product_rules_match_the_offer() {
        assert_eq!(urgency_of(&[line("a", "a", 16, 1)], &[rule(UrgencyMatch::OfferId(16))]), Urgency::Urgent);
        assert_eq!(urgency_of(&[line("a", "a", 1, 2)], &[rule(UrgencyMatch::ProductId(2))]), Urgency::Urgent);
        assert_eq!(urgency_of(&[line("a", "a", 2, 16)], &[rule(UrgencyMatch::OfferId(16))]), Urgency::Normal);
    }

    #[test]
    fn inactive_rules_and_orders_without_items_are_normal() {
        let inactive = UrgencyRule { name: None, matches: UrgencyMatch::OfferId(16), is_active: false };
        assert_eq!(urgency_of(&[line("a", "a", 16, 1)], &[inactive]), Urgency::Normal);
        assert_eq!(urgency_of(&[], &[rule(UrgencyMatch::OfferId(16))]), Urgency::Normal);
    }
}
