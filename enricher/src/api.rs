//! The list endpoints of the KeyCRM API as they answer (`fixtures/keycrm/order_status_page*.json`):
//! the Laravel pagination envelope around statuses and orders. Parsing is lenient like
//! `ksa_schemas::keycrm` (numbers as strings, unknown fields ignored) and strict only where a value
//! is needed: an entry without an id is skipped, an envelope that is not an object is an error.

use ksa_schemas::Timestamp;
use ksa_state::enrich::StatusEntry;
use serde_json::Value;

/// One page of a list.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub current_page: u32,
    pub last_page: u32,
    pub total: Option<u64>,
    pub data: Vec<T>,
}

impl<T> Page<T> {
    /// Paging stops at the last page or at an empty one.
    pub fn is_last(&self) -> bool {
        self.data.is_empty() || self.current_page >= self.last_page
    }
}

/// An order of `GET /order` as backfill needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct ListedOrder {
    pub id: i64,
    pub status_id: i64,
    /// 0 when the order did not say (the dictionary is consulted then).
    pub status_group_id: u16,
    pub status_changed_at: Timestamp,
    pub created_at: Timestamp,
}

fn int(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn float(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn boolean(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        Some(Value::String(s)) => matches!(s.trim(), "1" | "true"),
        _ => false,
    }
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn time(value: Option<&Value>) -> Option<Timestamp> {
    value.and_then(Value::as_str).and_then(Timestamp::parse)
}

fn envelope<T>(body: &[u8], entry: impl Fn(&Value) -> Option<T>) -> Result<Page<T>, String> {
    let root: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(root) = root else { return Err("not a JSON object".into()) };
    let data = match root.get("data") {
        Some(Value::Array(items)) => items.iter().filter_map(&entry).collect(),
        Some(Value::Null) | None => return Err("no `data` list".into()),
        Some(_) => return Err("`data` is not a list".into()),
    };
    let current_page = int(root.get("current_page")).and_then(|p| u32::try_from(p).ok()).unwrap_or(1);
    let last_page = int(root.get("last_page")).and_then(|p| u32::try_from(p).ok()).unwrap_or(current_page);
    Ok(Page { current_page, last_page, total: int(root.get("total")).and_then(|t| u64::try_from(t).ok()), data })
}

/// A page of `GET /order/status`.
pub fn parse_status_page(body: &[u8]) -> Result<Page<StatusEntry>, String> {
    envelope(body, |item| {
        let status_id = int(item.get("id")).filter(|id| *id > 0)?;
        let group_id = int(item.get("group_id")).and_then(|g| u16::try_from(g).ok()).filter(|g| (1..=6).contains(g))?;
        let alias = text(item.get("alias"));
        Some(StatusEntry {
            status_id,
            name: text(item.get("name")).or_else(|| alias.clone()).unwrap_or_else(|| status_id.to_string()),
            alias,
            group_id,
            is_active: item.get("is_active").is_none_or(|v| boolean(Some(v))),
            is_closing_order: boolean(item.get("is_closing_order")),
            is_reserved: boolean(item.get("is_reserved")),
            expiration_period_seconds: float(item.get("expiration_period")).filter(|s| *s >= 0.0),
        })
    })
}

/// A page of `GET /order`.
pub fn parse_order_page(body: &[u8]) -> Result<Page<ListedOrder>, String> {
    envelope(body, |item| {
        let id = int(item.get("id")).filter(|id| *id > 0)?;
        let status_id = int(item.get("status_id")).filter(|id| *id > 0)?;
        let status_changed_at = time(item.get("status_changed_at"))?;
        let created_at = time(item.get("created_at")).or_else(|| time(item.get("ordered_at"))).unwrap_or(status_changed_at);
        let status_group_id = int(item.get("status_group_id")).and_then(|g| u16::try_from(g).ok()).unwrap_or(0);
        Some(ListedOrder { id, status_id, status_group_id, status_changed_at, created_at })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/../fixtures/keycrm/{name}", env!("CARGO_MANIFEST_DIR"))).expect("fixture")
    }

    #[test]
    fn status_pages_of_the_fixtures_parse_with_their_paging() {
        let first = parse_status_page(&fixture("order_status_page1.json")).unwrap();
        assert_eq!((first.current_page, first.last_page, first.total), (1, 2, Some(6)));
        assert!(!first.is_last());
        let materials = first.data.iter().find(|s| s.status_id == 20).unwrap();
        assert_eq!(materials.name, "Матеріали");
        assert_eq!(materials.group_id, 2);
        assert_eq!(materials.expiration_period_seconds, Some(86_400.0));
        let second = parse_status_page(&fixture("order_status_page2.json")).unwrap();
        assert!(second.is_last());
        assert!(second.data.iter().any(|s| s.is_closing_order));
    }

    #[test]
    fn lenient_where_keycrm_is_loose_strict_where_it_must_be() {
        let body = br#"{"current_page":"1","last_page":"1","data":[
            {"id":"5","name":"A","group_id":"2","is_active":1,"expiration_period":"3600"},
            {"name":"no id","group_id":1},
            {"id":6,"name":"bad group","group_id":9}]}"#;
        let page = parse_status_page(body).unwrap();
        assert_eq!(page.data.len(), 1);
        assert_eq!(page.data[0].expiration_period_seconds, Some(3600.0));
        assert!(parse_status_page(b"<html>busy</html>").is_err());
        assert!(parse_status_page(b"[]").is_err());
        assert!(parse_status_page(br#"{"data":{}}"#).is_err());
    }

    #[test]
    fn order_pages_give_the_current_status_of_each_order() {
        let body = br#"{"current_page":1,"last_page":3,"total":120,"data":[
            {"id":23196,"status_id":20,"status_group_id":2,"status_changed_at":"2026-01-29T18:53:35.000000Z",
             "created_at":"2026-01-29T11:35:03.000000Z"},
            {"id":23197,"status_id":"7","status_changed_at":"2026-02-03 09:34:10"},
            {"id":23198,"status_id":7}]}"#;
        let page = parse_order_page(body).unwrap();
        assert_eq!(page.data.len(), 2, "an order without status_changed_at is skipped");
        assert_eq!(page.data[0].status_group_id, 2);
        assert_eq!(page.data[1].status_group_id, 0);
        assert_eq!(page.data[1].created_at, page.data[1].status_changed_at);
    }
}
