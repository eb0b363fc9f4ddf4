//! Marketing data of an order: KeyCRM's UTM fields, and the Facebook click ids that are found
//! only inside `manager_comment`. The comment is personal data: only the three ids are taken
//! from it, and nothing of it is logged.

use ksa_schemas::Marketing;
use ksa_schemas::kept::find_param;
use ksa_state::enrich::MarketingRow;

/// The marketing row for an order, or `None` when it has nothing to say.
pub fn marketing_row(marketing: Option<&Marketing>, comment: Option<&str>) -> Option<MarketingRow> {
    let mut row = MarketingRow::default();
    if let Some(m) = marketing {
        row.utm_source = m.utm_source.clone();
        row.utm_medium = m.utm_medium.clone();
        row.utm_campaign = m.utm_campaign.clone();
        row.utm_term = m.utm_term.clone();
        row.utm_content = m.utm_content.clone();
    }
    if let Some(comment) = comment {
        row.fbclid = find_param(comment, "fbclid");
        row.fbc = find_param(comment, "_fbc");
        row.fbp = find_param(comment, "_fbp");
    }
    (row != MarketingRow::default()).then_some(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn click_ids_are_found_in_a_comment_among_personal_data() {
        let comment = "Іван, +380501234567, Київ\nhttps://shop.example/p?utm_source=fb&fbclid=IwAR0abc_DEF-1\n\
                       _fbc: fb.1.1700000000.IwAR0abc\n_fbp=fb.1.1700000000.123456789";
        let row = marketing_row(None, Some(comment)).unwrap();
        assert_eq!(row.fbclid.as_deref(), Some("IwAR0abc_DEF-1"));
        assert_eq!(row.fbc.as_deref(), Some("fb.1.1700000000.IwAR0abc"));
        assert_eq!(row.fbp.as_deref(), Some("fb.1.1700000000.123456789"));
        assert_eq!(row.utm_source, None, "UTM data comes from the marketing object only");
    }

    #[test]
    fn an_order_without_marketing_data_gets_no_row() {
        assert_eq!(marketing_row(Some(&Marketing::default()), Some("call after 18:00")), None);
        let utm = Marketing { utm_source: Some("instagram".into()), ..Marketing::default() };
        assert_eq!(marketing_row(Some(&utm), None).unwrap().utm_source.as_deref(), Some("instagram"));
    }
}
