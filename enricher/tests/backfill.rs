//! Backfill and reconciliation against the in-process fake: windows and pages of `GET /order`,
//! events only where KeyCRM's current status is newer than what we hold, flagged by source, and
//! a backfill interrupted mid-way that resumes from its stored cursor.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{FakeKeyCrm, World, fast_client_config, order_json};
use ksa_enricher::backfill::{ScanOptions, backfill, reconcile};
use ksa_schemas::bus::{STATUS_EVENTS, StatusMessage};
use ksa_schemas::derived::StoredEvent;
use ksa_schemas::{EventSource, StatusEvent, Timestamp};
use ksa_state::enrich::CursorName;
use ksa_state::{CommitBatch, EnrichStore, StateStore};

/// 2026-01-01T00:00:00Z.
const JAN_1: i64 = 1_767_225_600_000_000;
const DAY: i64 = 86_400_000_000;

fn day(n: i64) -> String {
    Timestamp::from_micros(JAN_1 + n * DAY + 3_600_000_000).to_rfc3339()
}

/// 120 orders updated over four days (30 a day), in status 20 since their update.
fn orders(fake: &FakeKeyCrm) {
    for id in 1..=120 {
        let when = day((id - 1) / 30);
        fake.add_order(order_json(id, 20, 2, &when, &when));
    }
}

async fn backfilled(world: &World) -> Vec<(i64, StatusEvent)> {
    world
        .records(STATUS_EVENTS)
        .await
        .iter()
        .map(|r| match serde_json::from_slice(&r.payload).unwrap() {
            StatusMessage::StatusChanged { project_id, event, .. } => (project_id, event),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

fn options(source: EventSource) -> ScanOptions {
    ScanOptions {
        since: Timestamp::from_micros(JAN_1),
        until: Timestamp::from_micros(JAN_1 + 4 * DAY),
        window: Duration::from_secs(2 * 86_400),
        source,
    }
}

#[tokio::test]
async fn backfill_adds_flagged_events_only_where_keycrm_is_ahead_of_us() {
    let fake = FakeKeyCrm::start().await;
    orders(&fake);
    let dir = tempfile::tempdir().unwrap();
    let world = World::open(&dir.path().join("state.db"), fast_client_config()).await;
    let project = world.project("shop", &fake, "t", Some(200)).await;
    // We hold order 1 in status 20 already (its webhook arrived), and order 2 in an older status.
    let held = |order_id: i64, status_id: i64, at: &str| StoredEvent {
        project_id: project,
        event: StatusEvent {
            order_id,
            status_id,
            group_id: 2,
            changed_at: Timestamp::parse(at).unwrap(),
            order_created_at: Timestamp::parse(at).unwrap(),
            source: EventSource::Webhook,
        },
        received_at: Timestamp::parse(at).unwrap(),
        payload: None,
    };
    world
        .state
        .commit(CommitBatch { events: vec![held(1, 20, &day(0)), held(2, 1, "2025-12-31T10:00:00Z")], ..CommitBatch::default() })
        .await
        .unwrap();
    let client = world.access.client(&world.state, project).await.unwrap();
    let mut reports = Vec::new();
    let report =
        backfill(&client, &world.state, &world.bus, &options(EventSource::Backfilled), &mut |p| reports.push(p.clone())).await.unwrap();

    assert_eq!((report.orders_scanned, report.events_added, report.resumed), (120, 119, false));
    let events = backfilled(&world).await;
    assert_eq!(events.len(), 119);
    assert!(events.iter().all(|(p, e)| *p == project && e.source == EventSource::Backfilled && e.status_id == 20 && e.group_id == 2));
    assert!(!events.iter().any(|(_, e)| e.order_id == 1), "we already hold order 1's current status");
    // Two windows of two days, each 60 orders = two pages of 50.
    let queries: Vec<String> = fake.hits("t").iter().map(|h| h.query.clone()).collect();
    assert_eq!(queries.len(), 4, "{queries:#?}");
    assert!(
        queries[0].contains("sort=id")
            && queries[0].contains("filter%5Bupdated_between%5D=2026-01-01+00%3A00%3A00%2C+2026-01-03+00%3A00%3A00"),
        "{}",
        queries[0]
    );
    assert_eq!(reports.last().map(|p| (p.windows_done, p.windows_total)), Some((2, 2)));

    // A second run over the same span adds nothing: the bus drops the repeats.
    let again = backfill(&client, &world.state, &world.bus, &options(EventSource::Backfilled), &mut |_| {}).await.unwrap();
    assert_eq!(again.events_added, 0);
}

#[tokio::test]
async fn interrupted_backfill_resumes_from_its_cursor() {
    let fake = FakeKeyCrm::start().await;
    orders(&fake);
    let dir = tempfile::tempdir().unwrap();
    let world = World::open(&dir.path().join("state.db"), fast_client_config()).await;
    // Slow enough to interrupt between pages: 10 requests a second.
    let project = world.project("shop", &fake, "t", Some(10)).await;
    let client = world.access.client(&world.state, project).await.unwrap();

    let (state, bus, first_client) = (world.state.clone(), world.bus.clone(), client.clone());
    let interrupted = tokio::spawn(async move {
        backfill(&first_client, &state, &bus, &options(EventSource::Backfilled), &mut |_| {}).await.unwrap();
    });
    while fake.hits("t").len() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    interrupted.abort();
    let _ = interrupted.await;
    let before = fake.hits("t").len();
    assert!(before < 4, "stopped before the end ({before} pages)");
    let cursor = world.state.cursor(project, CursorName::Backfill).await.unwrap().expect("a stored cursor");
    assert!(cursor.contains("\"done\":false"), "{cursor}");

    let report = backfill(&client, &world.state, &world.bus, &options(EventSource::Backfilled), &mut |_| {}).await.unwrap();
    assert!(report.resumed);
    let after = fake.hits("t").len() - before;
    assert!(before + after <= 5, "pages done before the interruption are not read again ({before} + {after})");
    let orders: BTreeSet<i64> = backfilled(&world).await.iter().map(|(_, e)| e.order_id).collect();
    assert_eq!(orders, (1..=120).collect(), "every order is backfilled exactly once");
    assert_eq!(backfilled(&world).await.len(), 120);
    assert!(world.state.cursor(project, CursorName::Backfill).await.unwrap().unwrap().contains("\"done\":true"));
}

#[tokio::test]
async fn reconciliation_flags_the_transitions_whose_webhook_never_arrived() {
    let fake = FakeKeyCrm::start().await;
    let recent = ksa_enricher::now();
    let at = Timestamp::from_micros(recent.as_micros() - 600_000_000).to_rfc3339();
    fake.add_order(order_json(500, 11, 4, &at, &at));
    let dir = tempfile::tempdir().unwrap();
    let world = World::open(&dir.path().join("state.db"), fast_client_config()).await;
    let project = world.project("shop", &fake, "t", None).await;
    let client = world.access.client(&world.state, project).await.unwrap();

    let report = reconcile(&client, &world.state, &world.bus, Duration::from_secs(3600), Duration::from_secs(60)).await.unwrap();
    assert_eq!(report.events_added, 1);
    let events = backfilled(&world).await;
    assert_eq!(events[0].1.source, EventSource::Reconciled);
    assert_eq!((events[0].1.order_id, events[0].1.status_id, events[0].1.group_id), (500, 11, 4));
    let cursor = world.state.cursor(project, CursorName::Reconcile).await.unwrap().unwrap();
    assert!(cursor.contains("\"done\":true"), "{cursor}");

    // The next pass starts where this one ended (less the overlap), not an hour back.
    reconcile(&client, &world.state, &world.bus, Duration::from_secs(3600), Duration::from_secs(60)).await.unwrap();
    let last = fake.hits("t").last().unwrap().query.clone();
    let first = fake.hits("t")[0].query.clone();
    assert_ne!(first, last);
}
