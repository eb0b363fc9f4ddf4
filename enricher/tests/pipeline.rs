//! The enricher and the processor together: a webhook's order has no items, so the processor
//! marks it `pending` and asks for them; the enricher fetches them from the fake KeyCRM and
//! publishes `ItemsFetched`; the processor then derives the order as `urgent`, and a recompute
//! with new rules judges the stored items again.

mod common;

use common::{FakeKeyCrm, World, fast_client_config, order_json};
use ksa_bus::{Bus, NewRecord};
use ksa_enricher::{Enricher, EnricherConfig};
use ksa_processor::derive::rules_for;
use ksa_processor::{Processor, ProcessorConfig, recompute_project};
use ksa_schemas::bus::{ENRICH_REQUESTS, EnrichReason, EnrichRequest, STATUS_EVENTS, StatusMessage, order_key, status_idempotency_key};
use ksa_schemas::{EventSource, ProjectSettings, StatusEvent, Timestamp};
use ksa_state::StateStore;

const URGENT_SETTINGS: &str = r#"{"urgency_rules": [{"match_type": "offer_id", "match_value": "16"}]}"#;

async fn urgency(world: &World, project: i64, order: i64) -> String {
    sqlx::query_scalar("SELECT urgency FROM orders_current WHERE project_id = ? AND order_id = ?")
        .bind(project)
        .bind(order)
        .fetch_one(world.state.pool())
        .await
        .expect("the order's row")
}

#[tokio::test]
async fn fetched_items_make_a_pending_order_urgent_in_order_with_its_events() {
    let fake = FakeKeyCrm::start().await;
    fake.add_order(order_json(23196, 20, 2, "2026-01-29T18:53:35.000000Z", "2026-01-29T18:53:35.000000Z"));
    let dir = tempfile::tempdir().unwrap();
    let world = World::open(&dir.path().join("state.db"), fast_client_config()).await;
    let project = world.project("shop", &fake, "t", None).await;
    world.state.put_settings(project, URGENT_SETTINGS, "test").await.unwrap();

    let event = StatusEvent {
        order_id: 23196,
        status_id: 20,
        group_id: 2,
        changed_at: Timestamp::parse("2026-01-29T18:53:35Z").unwrap(),
        order_created_at: Timestamp::parse("2026-01-29T11:35:03Z").unwrap(),
        source: EventSource::Webhook,
    };
    let message = StatusMessage::StatusChanged { project_id: project, event, received_at: event.changed_at, payload: "{}".into() };
    world
        .bus
        .append(
            STATUS_EVENTS,
            vec![NewRecord {
                key: order_key(project, 23196),
                payload: serde_json::to_vec(&message).unwrap(),
                idempotency_key: Some(status_idempotency_key(project, &event)),
            }],
        )
        .await
        .unwrap();

    let mut processor = Processor::new(world.bus.clone(), world.state.clone(), ProcessorConfig::default(), None).await.unwrap();
    processor.step().await.unwrap();
    processor.settle().await.unwrap();
    assert_eq!(urgency(&world, project, 23196).await, "pending");
    let requests: Vec<EnrichRequest> =
        world.records(ENRICH_REQUESTS).await.iter().map(|r| serde_json::from_slice(&r.payload).unwrap()).collect();
    assert_eq!(
        requests,
        vec![EnrichRequest { project_id: project, order_id: 23196, reason: EnrichReason::MissingItems, status_id: Some(20) }]
    );

    let config = EnricherConfig { reconcile_every: None, ..EnricherConfig::default() };
    let mut enricher = Enricher::new(world.bus.clone(), world.state.clone(), world.access.clone(), config).await.unwrap();
    enricher.step().await.unwrap();
    processor.step().await.unwrap();
    processor.settle().await.unwrap();
    assert_eq!(urgency(&world, project, 23196).await, "urgent");
    assert_eq!(world.records(ENRICH_REQUESTS).await.len(), 1, "an order with items asks for nothing more");

    // New rules: the stored items are judged again, without another fetch.
    world.state.put_settings(project, r#"{"urgency_rules": []}"#, "test").await.unwrap();
    let rules = rules_for(ProjectSettings::from_json(r#"{"urgency_rules": []}"#).unwrap(), event.changed_at);
    recompute_project(&world.state, None, project, &rules, &Default::default(), 2, None).await.unwrap();
    assert_eq!(urgency(&world, project, 23196).await, "normal");
    assert_eq!(fake.hits("t").iter().filter(|h| h.path == "/v1/order/23196").count(), 1);
}
