//! The enricher's loop against the in-process fake: requests become fetched items with urgency
//! and an `ItemsFetched` message; an unknown status id refreshes the dictionary; retries survive
//! a restart; repeated failures dead-letter an order until `enrich retry`; the dictionary pages
//! through the fixtures and keeps vanished statuses inactive.

mod common;

use std::time::Duration;

use common::{FakeKeyCrm, Scripted, World, fast_client_config, fixture, order_json, status_json};
use ksa_bus::{Bus, NewRecord};
use ksa_enricher::statuses::sync_statuses;
use ksa_enricher::{Enricher, EnricherConfig, now};
use ksa_schemas::bus::{ENRICH_REQUESTS, EnrichReason, EnrichRequest, STATUS_EVENTS, StatusMessage, order_key};
use ksa_state::enrich::JobState;
use ksa_state::{EnrichStore, StateStore};
use serde_json::json;

const URGENT_SETTINGS: &str = r#"{"urgency_rules": [{"match_type": "sku", "match_value": "Термінове виготовлення"}]}"#;

fn quick_config() -> EnricherConfig {
    EnricherConfig {
        poll: Duration::from_millis(20),
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        max_attempts: 3,
        unknown_status_gap: Duration::ZERO,
        reconcile_every: None,
        ..EnricherConfig::default()
    }
}

async fn request(world: &World, project_id: i64, order_id: i64, status_id: Option<i64>) {
    let request = EnrichRequest { project_id, order_id, reason: EnrichReason::MissingItems, status_id };
    world
        .bus
        .append(
            ENRICH_REQUESTS,
            vec![NewRecord { key: order_key(project_id, order_id), payload: serde_json::to_vec(&request).unwrap(), idempotency_key: None }],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_request_becomes_stored_items_urgency_and_an_items_fetched_message() {
    let fake = FakeKeyCrm::start().await;
    let mut order = order_json(23196, 20, 2, "2026-01-29T18:53:35.000000Z", "2026-01-29T18:53:35.000000Z");
    order["manager_comment"] = json!("Олена, +380671112233, fbclid=IwAR0xyz _fbp=fb.1.17.99");
    fake.add_order(order);
    let dir = tempfile::tempdir().unwrap();
    let world = World::open(&dir.path().join("state.db"), fast_client_config()).await;
    let project = world.project("shop", &fake, "t", None).await;
    world.state.put_settings(project, URGENT_SETTINGS, "test").await.unwrap();
    request(&world, project, 23196, None).await;
    request(&world, project, 23196, None).await;

    let mut enricher = Enricher::new(world.bus.clone(), world.state.clone(), world.access.clone(), quick_config()).await.unwrap();
    assert_eq!(enricher.step().await.unwrap(), 3, "two requests read, one job run");

    let hits = fake.hits("t");
    assert_eq!(hits.len(), 1, "one order, one fetch");
    assert_eq!(hits[0].path, "/v1/order/23196");
    assert!(hits[0].query.contains("include=products.offer%2Cmarketing") || hits[0].query.contains("include=products.offer,marketing"));
    let lines = world.state.order_lines(project, &[23196]).await.unwrap();
    assert_eq!(lines[&23196].len(), 2);
    assert_eq!(lines[&23196][1].offer_id, Some(16));
    let marketing = world.state.marketing(project, 23196).await.unwrap().unwrap();
    assert_eq!((marketing.utm_source.as_deref(), marketing.utm_campaign.as_deref()), (Some("instagram"), Some("winter")));
    assert_eq!((marketing.fbclid.as_deref(), marketing.fbp.as_deref(), marketing.fbc), (Some("IwAR0xyz"), Some("fb.1.17.99"), None));

    let messages: Vec<StatusMessage> =
        world.records(STATUS_EVENTS).await.iter().map(|r| serde_json::from_slice(&r.payload).unwrap()).collect();
    assert_eq!(messages.len(), 1);
    assert!(
        matches!(&messages[0], StatusMessage::ItemsFetched { project_id, order_id: 23196, urgency, .. } if *project_id == project && urgency == "urgent"),
        "{messages:?}"
    );
    assert_eq!(world.records(STATUS_EVENTS).await[0].key, order_key(project, 23196), "keyed like the order's status events");
    assert_eq!(world.state.job(project, 23196).await.unwrap().unwrap().state, JobState::Done);
    assert_eq!(enricher.step().await.unwrap(), 0, "nothing left to do");
    assert_eq!(enricher.stats().borrow().items_fetched, 1);
}

#[tokio::test]
async fn status_sync_pages_through_the_fixtures_and_keeps_vanished_statuses_inactive() {
    let fake = FakeKeyCrm::start().await;
    fake.with(|s| s.status_pages = vec![fixture("order_status_page1.json"), fixture("order_status_page2.json")]);
    let dir = tempfile::tempdir().unwrap();
    let world = World::open(&dir.path().join("state.db"), fast_client_config()).await;
    let project = world.project("shop", &fake, "t", None).await;
    let client = world.access.client(&world.state, project).await.unwrap();

    let report = sync_statuses(&client, &world.state).await.unwrap();
    assert_eq!(report.added, 6);
    let pages: Vec<String> = fake.hits("t").iter().map(|h| h.query.clone()).collect();
    assert_eq!(pages, vec!["limit=50&page=1", "limit=50&page=2"]);
    let statuses = world.state.statuses(project).await.unwrap();
    assert_eq!(statuses.len(), 6);
    assert_eq!(statuses.iter().find(|s| s.status_id == 20).unwrap().name, "Матеріали");

    // Status 7 is deleted in KeyCRM: kept, inactive.
    fake.with(|s| {
        s.status_pages.clear();
        s.statuses = vec![status_json(1, "new", 1), status_json(20, "Матеріали", 2)];
    });
    let report = sync_statuses(&client, &world.state).await.unwrap();
    assert_eq!(report.deactivated, 4);
    let statuses = world.state.statuses(project).await.unwrap();
    assert_eq!(statuses.len(), 6);
    assert!(!statuses.iter().find(|s| s.status_id == 7).unwrap().is_active);

    // An empty list is a fault, not a wipe.
    fake.with(|s| s.statuses.clear());
    assert!(sync_statuses(&client, &world.state).await.is_err());
    assert_eq!(world.state.statuses(project).await.unwrap().iter().filter(|s| s.is_active).count(), 2);
}

#[tokio::test]
async fn an_unknown_status_id_in_a_request_refreshes_the_dictionary_at_once() {
    let fake = FakeKeyCrm::start().await;
    fake.with(|s| s.statuses = vec![status_json(1, "new", 1), status_json(20, "Матеріали", 2)]);
    fake.add_order(order_json(5, 20, 2, "2026-01-29T18:53:35.000000Z", "2026-01-29T18:53:35.000000Z"));
    let dir = tempfile::tempdir().unwrap();
    let world = World::open(&dir.path().join("state.db"), fast_client_config()).await;
    let project = world.project("shop", &fake, "t", None).await;
    let mut enricher = Enricher::new(world.bus.clone(), world.state.clone(), world.access.clone(), quick_config()).await.unwrap();

    request(&world, project, 5, Some(20)).await;
    enricher.consume_requests().await.unwrap();
    assert_eq!(world.state.statuses(project).await.unwrap().len(), 2, "status 20 was unknown: synced");
    let status_calls = || fake.hits("t").iter().filter(|h| h.path == "/v1/order/status").count();
    assert_eq!(status_calls(), 1);

    request(&world, project, 6, Some(20)).await;
    enricher.consume_requests().await.unwrap();
    assert_eq!(status_calls(), 1, "a known status does not trigger a sync");

    fake.with(|s| s.statuses.push(status_json(99, "Нова стадія", 3)));
    request(&world, project, 7, Some(99)).await;
    enricher.consume_requests().await.unwrap();
    assert_eq!(status_calls(), 2);
    assert!(world.state.statuses(project).await.unwrap().iter().any(|s| s.status_id == 99 && s.group_id == 3));
}

#[tokio::test]
async fn pending_retries_survive_a_restart() {
    let fake = FakeKeyCrm::start().await;
    fake.add_order(order_json(42, 20, 2, "2026-01-29T18:53:35.000000Z", "2026-01-29T18:53:35.000000Z"));
    fake.script("t", (0..2).map(|_| Scripted::Status { code: 503, retry_after: None }));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let client_config = ksa_enricher::ClientConfig { max_attempts: 2, ..fast_client_config() };
    let project;
    {
        let world = World::open(&path, client_config.clone()).await;
        project = world.project("shop", &fake, "t", None).await;
        request(&world, project, 42, None).await;
        let mut enricher = Enricher::new(world.bus.clone(), world.state.clone(), world.access.clone(), quick_config()).await.unwrap();
        enricher.step().await.unwrap();
        let job = world.state.job(project, 42).await.unwrap().unwrap();
        assert_eq!((job.state, job.attempts), (JobState::Pending, 1));
        assert!(job.last_error.as_deref().unwrap().contains("HTTP 503"), "{job:?}");
        assert!(job.next_attempt_at > now());
        // The process stops here, with the retry pending.
    }
    let world = World::open(&path, client_config).await;
    let mut enricher = Enricher::new(world.bus.clone(), world.state.clone(), world.access.clone(), quick_config()).await.unwrap();
    assert_eq!(enricher.step().await.unwrap(), 0, "the request was consumed before the restart; the retry is not due yet");
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(enricher.step().await.unwrap(), 1, "the stored retry runs after the restart");
    assert_eq!(world.state.job(project, 42).await.unwrap().unwrap().state, JobState::Done);
    assert_eq!(world.state.order_lines(project, &[42]).await.unwrap()[&42].len(), 2);
}

#[tokio::test]
async fn repeated_failures_dead_letter_an_order_until_it_is_requeued() {
    let fake = FakeKeyCrm::start().await;
    // Order 8 answers with a body that is no order, until KeyCRM is fixed.
    fake.with(|s| s.orders.insert(8, json!({"unexpected": true})));
    let dir = tempfile::tempdir().unwrap();
    let world = World::open(&dir.path().join("state.db"), fast_client_config()).await;
    let project = world.project("shop", &fake, "t", None).await;
    request(&world, project, 8, None).await;
    request(&world, project, 404, None).await;
    let mut enricher = Enricher::new(world.bus.clone(), world.state.clone(), world.access.clone(), quick_config()).await.unwrap();
    for _ in 0..20 {
        enricher.step().await.unwrap();
        if world.state.job_counts(project).await.unwrap().dead == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let dead = world.state.dead_jobs(project).await.unwrap();
    assert_eq!(dead.iter().map(|j| (j.order_id, j.attempts)).collect::<Vec<_>>(), vec![(8, 3), (404, 1)], "404 is not retried");
    assert!(dead[1].last_error.as_deref().unwrap().contains("does not exist"), "{dead:?}");
    assert_eq!(enricher.stats().borrow().dead_lettered, 2);

    // `enrich retry`: the dead orders are tried again, and 8 now succeeds.
    fake.add_order(order_json(8, 20, 2, "2026-01-29T18:53:35.000000Z", "2026-01-29T18:53:35.000000Z"));
    assert_eq!(world.state.requeue_dead(project, now()).await.unwrap(), 2);
    enricher.step().await.unwrap();
    assert_eq!(world.state.job(project, 8).await.unwrap().unwrap().state, JobState::Done);
    assert_eq!(world.state.job(project, 404).await.unwrap().unwrap().state, JobState::Dead);
}

#[tokio::test]
async fn a_project_without_a_token_is_told_so_and_retried_later() {
    let dir = tempfile::tempdir().unwrap();
    let world = World::open(&dir.path().join("state.db"), fast_client_config()).await;
    let project = world
        .state
        .create_project(ksa_state::NewProject {
            slug: "bare".into(),
            name: "bare".into(),
            timezone: "UTC".into(),
            webhook_secret_hash: "ab".repeat(32),
            allowed_cidrs: vec![],
        })
        .await
        .unwrap()
        .id;
    request(&world, project, 1, None).await;
    let mut enricher = Enricher::new(world.bus.clone(), world.state.clone(), world.access.clone(), quick_config()).await.unwrap();
    enricher.step().await.unwrap();
    let job = world.state.job(project, 1).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Pending);
    assert!(job.last_error.unwrap().contains("project `bare` has no KeyCRM API token"));
}

#[tokio::test]
async fn an_order_changed_into_an_unknown_status_refreshes_the_dictionary_in_the_periodic_pass() {
    let fake = FakeKeyCrm::start().await;
    fake.with(|s| s.statuses = vec![status_json(1, "new", 1)]);
    let dir = tempfile::tempdir().unwrap();
    let world = World::open(&dir.path().join("state.db"), fast_client_config()).await;
    let project = world.project("shop", &fake, "t", None).await;
    let mut enricher = Enricher::new(world.bus.clone(), world.state.clone(), world.access.clone(), quick_config()).await.unwrap();
    let status_calls = || fake.hits("t").iter().filter(|h| h.path == "/v1/order/status").count();

    enricher.periodic().await;
    assert_eq!(status_calls(), 1, "never synced: synced now");
    enricher.periodic().await;
    assert_eq!(status_calls(), 1, "synced lately and nothing unknown: no call");

    // A webhook moved an order into status 77, which KeyCRM lists but we do not know yet.
    fake.with(|s| s.statuses.push(status_json(77, "Друк", 3)));
    let derived = ksa_schemas::derived::DerivedOrder {
        project_id: project,
        order_id: 1,
        current_status_id: 77,
        current_group_id: 3,
        last_changed_at: now(),
        started_at: now(),
        untracked_seconds: 0.0,
        delivery_entered_at: None,
        cycle_duration_to_delivery: None,
        closed_at: None,
        cycle_rule_id_applied: None,
        urgency: "pending".into(),
        sla_state: "none".into(),
        event_count: 1,
        settings_revision: 1,
        derived_json: "{}".into(),
        cycles: vec![],
    };
    world.state.commit(ksa_state::CommitBatch { orders: vec![derived], ..Default::default() }).await.unwrap();
    enricher.periodic().await;
    assert_eq!(status_calls(), 2);
    assert!(world.state.statuses(project).await.unwrap().iter().any(|s| s.status_id == 77));
}
