//! Every KeyCRM fixture parses, and each class of bad input is an error that names the field.

use std::path::PathBuf;

use ksa_schemas::keycrm::STATUS_CHANGE_EVENT;
use ksa_schemas::{EventSource, Timestamp, WebhookError, WebhookOutcome, parse_order_details, parse_webhook};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/keycrm").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn status(body: &[u8]) -> ksa_schemas::StatusEvent {
    match parse_webhook(body) {
        Ok(WebhookOutcome::Status(event)) => event,
        other => panic!("expected a status event, got {other:?}"),
    }
}

fn error(body: &str) -> WebhookError {
    parse_webhook(body.as_bytes()).expect_err("expected a rejection")
}

#[test]
fn status_change_fixture_becomes_a_status_event() {
    let event = status(&fixture("webhook_status_change.json"));
    assert_eq!(event.order_id, 23196);
    assert_eq!(event.status_id, 20);
    assert_eq!(event.group_id, 2);
    assert_eq!(event.changed_at, Timestamp::parse("2026-01-29T18:53:35Z").unwrap());
    assert_eq!(event.order_created_at, Timestamp::parse("2026-01-29T11:35:03Z").unwrap());
    assert_eq!(event.source, EventSource::Webhook);
}

#[test]
fn closing_fixture_with_zone_less_timestamps_and_string_money_parses() {
    let event = status(&fixture("webhook_closing.json"));
    assert_eq!(event.status_id, 12);
    assert_eq!(event.group_id, 5);
}

#[test]
fn payment_status_fixture_is_ignored_with_its_name() {
    assert_eq!(
        parse_webhook(&fixture("webhook_payment_status.json")),
        Ok(WebhookOutcome::Ignored { event: "order.change_payment_status".into() })
    );
}

#[test]
fn ids_may_arrive_as_strings_and_unknown_fields_are_ignored() {
    let event = status(
        br#"{"event":"order.change_order_status","extra":{"a":[1,2]},"context":{"id":"23196","status_id":"20","status_group_id":"2",
            "status_changed_at":"2026-01-29 18:53:35","discount_data":[],"whatever":null}}"#,
    );
    assert_eq!((event.order_id, event.status_id, event.group_id), (23196, 20, 2));
    assert_eq!(event.changed_at.to_rfc3339(), "2026-01-29T18:53:35Z");
}

#[test]
fn order_created_at_falls_back_to_ordered_at_then_to_the_change() {
    let with_ordered = status(
        br#"{"event":"order.change_order_status","context":{"id":1,"status_id":2,"status_changed_at":"2026-01-29T18:00:00Z","created_at":null,"ordered_at":"2026-01-29T10:00:00Z"}}"#,
    );
    assert_eq!(with_ordered.order_created_at.to_rfc3339(), "2026-01-29T10:00:00Z");
    let bare =
        status(br#"{"event":"order.change_order_status","context":{"id":1,"status_id":2,"status_changed_at":"2026-01-29T18:00:00Z"}}"#);
    assert_eq!(bare.order_created_at, bare.changed_at);
    assert_eq!(bare.group_id, 0, "an absent group is resolved later from the status dictionary");
}

#[test]
fn missing_required_fields_are_named() {
    let cases = [
        (r#"{"context":{}}"#, "event"),
        (r#"{"event":"order.change_order_status"}"#, "context"),
        (r#"{"event":"order.change_order_status","context":[]}"#, "context"),
        (r#"{"event":"order.change_order_status","context":{"status_id":2,"status_changed_at":"2026-01-29T18:00:00Z"}}"#, "context.id"),
        (r#"{"event":"order.change_order_status","context":{"id":1,"status_changed_at":"2026-01-29T18:00:00Z"}}"#, "context.status_id"),
        (r#"{"event":"order.change_order_status","context":{"id":1,"status_id":2}}"#, "context.status_changed_at"),
    ];
    for (body, field) in cases {
        let err = error(body);
        assert_eq!(err.field(), Some(field), "{body}");
        assert!(err.to_string().starts_with(field), "{err}");
    }
}

#[test]
fn invalid_values_are_named_with_what_is_wrong() {
    let cases = [
        (
            r#"{"event":"order.change_order_status","context":{"id":"abc","status_id":2,"status_changed_at":"2026-01-29T18:00:00Z"}}"#,
            "context.id",
        ),
        (
            r#"{"event":"order.change_order_status","context":{"id":-5,"status_id":2,"status_changed_at":"2026-01-29T18:00:00Z"}}"#,
            "context.id",
        ),
        (
            r#"{"event":"order.change_order_status","context":{"id":1,"status_id":{},"status_changed_at":"2026-01-29T18:00:00Z"}}"#,
            "context.status_id",
        ),
        (
            r#"{"event":"order.change_order_status","context":{"id":1,"status_id":2,"status_changed_at":"yesterday"}}"#,
            "context.status_changed_at",
        ),
        (
            r#"{"event":"order.change_order_status","context":{"id":1,"status_id":2,"status_changed_at":1769712000}}"#,
            "context.status_changed_at",
        ),
        (
            r#"{"event":"order.change_order_status","context":{"id":1,"status_id":2,"status_group_id":"x","status_changed_at":"2026-01-29T18:00:00Z"}}"#,
            "context.status_group_id",
        ),
        (r#"{"event":42,"context":{}}"#, "event"),
    ];
    for (body, field) in cases {
        let err = error(body);
        assert_eq!(err.field(), Some(field), "{body}: {err}");
    }
    assert!(
        error(r#"{"event":"order.change_order_status","context":{"id":1,"status_id":2,"status_changed_at":"yesterday"}}"#)
            .to_string()
            .contains("\"yesterday\" is not a timestamp")
    );
}

#[test]
fn malformed_json_is_rejected_without_a_field() {
    for body in ["", "not json", "[1,2]", "{\"event\": \"order.change_order_status\", ", "null"] {
        assert!(matches!(parse_webhook(body.as_bytes()), Err(WebhookError::Malformed(_))), "{body:?}");
    }
}

#[test]
fn long_hostile_values_are_cut_in_messages() {
    let long = "x".repeat(10_000);
    let body = format!(r#"{{"event":"order.change_order_status","context":{{"id":1,"status_id":2,"status_changed_at":"{long}"}}}}"#);
    let message = parse_webhook(body.as_bytes()).unwrap_err().to_string();
    assert!(message.len() < 200, "{message}");
}

#[test]
fn other_event_names_are_not_status_events() {
    assert_eq!(STATUS_CHANGE_EVENT, "order.change_order_status");
    assert_eq!(
        parse_webhook(br#"{"event":"lead.change_lead_status","context":{"id":1}}"#),
        Ok(WebhookOutcome::Ignored { event: "lead.change_lead_status".into() })
    );
}

#[test]
fn order_fixture_yields_lines_with_offer_ids_and_marketing() {
    let order = parse_order_details(&fixture("order_with_products.json")).unwrap();
    assert_eq!(order.id, 23196);
    assert_eq!(order.lines.len(), 2);
    let urgent = &order.lines[1];
    assert_eq!(urgent.sku.as_deref(), Some("Термінове виготовлення"));
    assert_eq!(urgent.offer_id, Some(16));
    assert_eq!(urgent.product_id, Some(2));
    assert_eq!(order.lines[0].quantity, 1.0);
    assert_eq!(order.lines[0].price_sold, Some(599.0));
    assert_eq!(order.marketing.as_ref().and_then(|m| m.utm_source.as_deref()), Some("instagram"));
    assert_eq!(order.marketing.as_ref().and_then(|m| m.utm_term.clone()), None);
}

#[test]
fn order_without_products_or_with_php_empty_objects_parses() {
    let order =
        parse_order_details(br#"{"id": 5, "products": [[], {"sku": "A", "quantity": "2.5", "offer": []}], "marketing": []}"#).unwrap();
    assert_eq!(order.lines.len(), 1);
    assert_eq!(order.lines[0].quantity, 2.5);
    assert_eq!(order.lines[0].offer_id, None);
    assert!(order.marketing.is_none());
    assert_eq!(parse_order_details(br#"{"products": []}"#).unwrap_err().field(), Some("id"));
}
