//! What is kept of a webhook body. KeyCRM's order context carries free text (the manager's and
//! the client's comments, a gift message) that holds customers' names, phones and addresses,
//! and other events may nest buyer or shipping objects. None of it is needed to time statuses.
//! Ingest keeps an allow-listed projection instead of the body: the ids, statuses, timestamps,
//! money totals, source and marketing fields listed in [`KEPT_CONTEXT_FIELDS`], and the click
//! ids ([`CLICK_IDS`]) found in the comments; the rest is dropped before the record is written
//! anywhere. The projection has the body's shape, so it reads back as a webhook.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::loose::{Loose, MaybeObject};

/// The fields of a webhook's `context` that are kept, when they are scalars (strings, numbers,
/// booleans or null; arrays and objects are dropped whatever their name).
pub const KEPT_CONTEXT_FIELDS: &[&str] = &[
    // Identity and status.
    "id",
    "parent_id",
    "status_id",
    "status_group_id",
    "status_on_source",
    "closed_from",
    "is_expired",
    // Timestamps.
    "status_changed_at",
    "status_expired_at",
    "created_at",
    "ordered_at",
    "updated_at",
    "closed_at",
    "deleted_at",
    "last_synced_at",
    "source_updated_at",
    // Source and people, by id only.
    "source_id",
    "source_uuid",
    "global_source_uuid",
    "client_id",
    "manager_id",
    "shipping_type_id",
    // Money.
    "grand_total",
    "total_discount",
    "margin_sum",
    "expenses_sum",
    "discount_amount",
    "discount_percent",
    "shipping_price",
    "taxes",
    "payments_total",
    "products_total",
    "payment_status",
    "fiscal_status",
    // Marketing.
    "promocode",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
];

/// The click ids that KeyCRM keeps only inside the manager's comment; kept as `context.marketing`.
pub const CLICK_IDS: [&str; 3] = ["fbclid", "_fbc", "_fbp"];

/// The free-text fields searched for [`CLICK_IDS`] (and then dropped).
const COMMENTS: [&str; 2] = ["manager_comment", "client_comment"];

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow, default)]
    event: Loose<'a>,
    #[serde(borrow, default)]
    context: MaybeObject<BTreeMap<Cow<'a, str>, Loose<'a>>>,
}

/// The kept projection of a webhook body, as JSON text; `None` when the body is not a JSON
/// object (such a body is refused before anything is kept).
pub fn kept_payload(body: &[u8]) -> Option<String> {
    let body: Body = serde_json::from_slice(body).ok()?;
    let mut out = Map::new();
    out.insert("event".into(), scalar(&body.event).unwrap_or(Value::Null));
    if let Some(context) = body.context.0 {
        let mut kept = Map::new();
        for field in KEPT_CONTEXT_FIELDS {
            if let Some(value) = context.get(*field).and_then(scalar) {
                kept.insert((*field).into(), value);
            }
        }
        let mut marketing = Map::new();
        for comment in COMMENTS.iter().filter_map(|name| context.get(*name).and_then(Loose::as_str)) {
            for name in CLICK_IDS {
                if let (false, Some(value)) = (marketing.contains_key(name), find_param(comment, name)) {
                    marketing.insert(name.into(), Value::String(value));
                }
            }
        }
        if !marketing.is_empty() {
            kept.insert("marketing".into(), Value::Object(marketing));
        }
        out.insert("context".into(), Value::Object(kept));
    }
    Some(Value::Object(out).to_string())
}

fn scalar(value: &Loose) -> Option<Value> {
    match value {
        Loose::Null => Some(Value::Null),
        Loose::Bool(b) => Some(Value::Bool(*b)),
        Loose::Int(i) => Some(Value::from(*i)),
        Loose::Float(f) => serde_json::Number::from_f64(*f).map(Value::Number),
        Loose::Str(s) => Some(Value::String(s.to_string())),
        Loose::Composite => None,
    }
}

/// The value after `name=` or `name:` (optionally spaced) in free text, where `name` starts a
/// word (so `_fbc` is not found inside `x_fbc`, and `fbclid` is found in `?fbclid=` of a URL):
/// letters, digits and `. _ -` only, so nothing personal around it comes along.
pub fn find_param(text: &str, name: &str) -> Option<String> {
    let mut from = 0;
    while let Some(found) = text[from..].find(name) {
        let start = from + found;
        let end = start + name.len();
        from = end;
        let before = text[..start].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = text[end..].trim_start();
        let Some(rest) = rest.strip_prefix('=').or_else(|| rest.strip_prefix(':')) else { continue };
        let value: String = rest.trim_start().chars().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')).collect();
        if !value.is_empty() {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_nested_objects_and_unknown_fields_are_dropped_click_ids_kept() {
        let body = br#"{"event":"order.change_order_status","context":{"id":"23196","status_id":20,
            "status_group_id":2,"status_changed_at":"2026-01-29T18:53:35.000000Z","grand_total":"2.00",
            "manager_comment":"Ivan, +380501234567, ivan@example.com https://x.example/?fbclid=IwAR0abc_1 _fbp: fb.1.2.3",
            "client_comment":"call me 0671234567","gift_message":"for Olena","buyer":{"phone":"+380501234567"},
            "discount_data":[],"something_new":"maybe personal","is_gift":false}}"#;
        let kept: Value = serde_json::from_str(&kept_payload(body).unwrap()).unwrap();
        assert_eq!(
            kept,
            serde_json::json!({"event":"order.change_order_status","context":{"id":"23196","status_id":20,
                "status_group_id":2,"status_changed_at":"2026-01-29T18:53:35.000000Z","grand_total":"2.00",
                "marketing":{"fbclid":"IwAR0abc_1","_fbp":"fb.1.2.3"}}})
        );
    }

    #[test]
    fn the_projection_reads_back_as_the_same_event() {
        let body = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/keycrm/webhook_status_change.json")).unwrap();
        let kept = kept_payload(&body).unwrap();
        assert!(!kept.contains("380501234567") && !kept.contains("manager_comment"), "{kept}");
        assert_eq!(crate::parse_webhook(kept.as_bytes()).unwrap(), crate::parse_webhook(&body).unwrap());
    }

    #[test]
    fn names_inside_other_words_or_without_a_value_do_not_count() {
        assert_eq!(find_param("x_fbc=1 _fbc=2", "_fbc").as_deref(), Some("2"));
        assert_eq!(find_param("fbclid is missing", "fbclid"), None);
        assert_eq!(find_param("fbclid= ", "fbclid"), None);
    }

    #[test]
    fn a_body_that_is_not_an_object_keeps_nothing() {
        assert_eq!(kept_payload(b"[1,2]"), None);
        assert_eq!(kept_payload(b"not json"), None);
        assert_eq!(kept_payload(br#"{"event":"x","context":[]}"#).as_deref(), Some(r#"{"event":"x"}"#));
    }
}
