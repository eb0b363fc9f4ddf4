//! The `StateStore` contract, one suite run against both adapters: SQLite in a temporary folder,
//! and PostgreSQL from `DATABASE_URL`, a server URL such as
//! `postgres://postgres@127.0.0.1:5432/test`. Every PostgreSQL test creates its own database and
//! drops it at the end.
//!
//! Without `DATABASE_URL` the PostgreSQL tests say that they were skipped and pass, except under
//! `CI=true`, where they fail: CI must test both adapters.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::time::Instant;

use ksa_schemas::derived::{ConsumerOffset, CycleRow, DerivedOrder, StoredEvent};
use ksa_schemas::{EventSource, StatusEvent, Timestamp};
use ksa_state::{
    CommitBatch, NewProject, OrderSummary, PostgresState, SqliteState, StateError, StateStore, WebhookCount, WebhookLatency, WebhookLatest,
    WebhookTally,
};
use sqlx::AssertSqlSafe;

use common::{on_postgres, on_sqlite};

/// 2026-01-29T18:53:35Z, in microseconds since the Unix epoch.
const T0: i64 = 1_769_712_815_000_000;
const HOUR: i64 = 3_600_000_000;
const GROUP: &str = "processor";
const TOPIC: &str = "status-events";

// ---------------------------------------------------------------------------------------------
// Behaviours, each run on both stores.
// ---------------------------------------------------------------------------------------------

ksa_testkit::on_both_databases!(
    created_project_is_found_by_slug_and_listed,
    duplicate_slug_is_refused_and_leaves_the_first_project_alone,
    new_project_gets_the_six_keycrm_groups_with_completed_and_canceled_terminal,
    settings_revisions_grow_by_one_and_every_change_is_audited,
    webhook_counts_add_up_per_hour_outcome_and_reason,
    webhook_tally_adds_latencies_and_keeps_the_last_webhook_of_each_hour,
    commit_writes_events_derived_rows_cycles_and_offsets_together,
    event_already_stored_is_skipped_in_a_later_batch,
    events_keep_every_field_exactly,
    lower_version_replaces_nothing_while_an_equal_or_higher_one_replaces_row_totals_and_cycles,
    same_order_twice_in_one_batch_keeps_its_higher_version,
    failing_commit_writes_nothing_not_even_offsets,
    order_events_are_grouped_by_order_and_never_mix_projects,
    list_orders_pages_through_every_order_once_newest_first,
    order_ids_ascend_after_the_cursor,
    digest_changes_when_a_derived_value_changes_and_only_then,
    digest_ignores_json_formatting_and_the_project_id,
    five_thousand_events_for_five_thousand_orders_commit_in_one_batch,
);

async fn created_project_is_found_by_slug_and_listed<S: Inspect>(store: S) {
    let alpha = store.create_project(new_project("alpha")).await.expect("creating alpha");
    let beta = store.create_project(NewProject { allowed_cidrs: vec![], ..new_project("beta") }).await.expect("creating beta");

    assert_ne!(alpha.id, beta.id);
    assert_eq!(alpha.slug, "alpha");
    assert_eq!(alpha.name, "Project alpha");
    assert_eq!(alpha.timezone, "Europe/Kyiv");
    assert!(alpha.is_active);
    assert_eq!(alpha.webhook_secret_hash, "ab".repeat(32));
    assert_eq!(alpha.allowed_cidrs, vec!["10.0.0.0/8", "192.168.0.0/16"]);
    assert!(beta.allowed_cidrs.is_empty());

    assert_eq!(store.project_by_slug("alpha").await.expect("lookup"), Some(alpha.clone()));
    assert_eq!(store.project_by_slug("beta").await.expect("lookup"), Some(beta.clone()));
    assert_eq!(store.project_by_slug("gamma").await.expect("lookup"), None);
    assert_eq!(store.projects().await.expect("listing"), vec![alpha, beta]);
}

async fn duplicate_slug_is_refused_and_leaves_the_first_project_alone<S: Inspect>(store: S) {
    let first = store.create_project(new_project("alpha")).await.expect("creating alpha");
    let error = store.create_project(NewProject { name: "Impostor".into(), ..new_project("alpha") }).await.expect_err("a second alpha");
    assert!(matches!(&error, StateError::SlugTaken(slug) if slug == "alpha"), "{error:?}");
    assert_eq!(error.to_string(), "a project with slug `alpha` already exists");

    assert_eq!(store.projects().await.expect("listing"), vec![first]);
    assert_eq!(store.integer("SELECT count(*) FROM status_group_dict".into()).await, 6);
}

async fn new_project_gets_the_six_keycrm_groups_with_completed_and_canceled_terminal<S: Inspect>(store: S) {
    let project = store.create_project(new_project("alpha")).await.expect("creating alpha").id;
    let names = store.texts(format!("SELECT name FROM status_group_dict WHERE project_id = {project} ORDER BY group_id")).await;
    assert_eq!(names, vec!["Новий", "Погодження", "Виробництво", "Доставка", "Виконано", "Скасовано"]);
    let terminal = store
        .integers(format!("SELECT group_id FROM status_group_dict WHERE project_id = {project} AND is_terminal ORDER BY group_id"))
        .await;
    assert_eq!(terminal, vec![5, 6]);
    let enabled = store.integer(format!("SELECT count(*) FROM status_group_dict WHERE project_id = {project} AND is_enabled")).await;
    assert_eq!(enabled, 6);
}

async fn settings_revisions_grow_by_one_and_every_change_is_audited<S: Inspect>(store: S) {
    let project = store.create_project(new_project("alpha")).await.expect("creating alpha").id;
    let other = store.create_project(new_project("beta")).await.expect("creating beta").id;
    store
        .execute(
            "INSERT INTO users (login, email, password_hash, is_owner) VALUES ('ops@example.com', 'ops@example.com', 'x', TRUE)".into(),
        )
        .await;
    let user = store.integer("SELECT id FROM users WHERE login = 'ops@example.com'".into()).await;

    assert_eq!(store.settings(project).await.expect("reading settings"), None);

    let first = r#"{"timezone": "Europe/Kyiv", "near": {"percent": 80}}"#;
    let second = r#"{"timezone": "Europe/Kyiv", "near": {"percent": 90}}"#;
    assert_eq!(store.put_settings(project, first, "Ops@Example.com").await.expect("first settings"), 1);
    assert_eq!(store.put_settings(project, second, "cli").await.expect("second settings"), 2);
    assert_eq!(store.put_settings(other, first, "cli").await.expect("another project's settings"), 1);

    let stored = store.settings(project).await.expect("reading settings").expect("settings were put");
    assert_eq!((stored.project_id, stored.revision), (project, 2));
    assert_eq!(json(&stored.document), json(second));

    let audited = format!("FROM audit_log WHERE project_id = {project} AND action = 'settings.update' AND entity = 'settings'");
    assert_eq!(store.integer(format!("SELECT count(*) {audited}")).await, 2);
    assert_eq!(store.integer(format!("SELECT count(*) {audited} AND before_json IS NULL")).await, 1, "the first change has no before");
    assert_eq!(store.integers(format!("SELECT user_id {audited} AND user_id IS NOT NULL")).await, vec![user]);
    let afters = store.texts(format!("SELECT CAST(after_json AS TEXT) {audited} ORDER BY id")).await;
    assert_eq!(afters.iter().map(|a| json(a)).collect::<Vec<_>>(), vec![json(first), json(second)]);
    let befores = store.texts(format!("SELECT CAST(before_json AS TEXT) {audited} AND before_json IS NOT NULL")).await;
    assert_eq!(befores.iter().map(|b| json(b)).collect::<Vec<_>>(), vec![json(first)]);
}

async fn webhook_counts_add_up_per_hour_outcome_and_reason<S: Inspect>(store: S) {
    let project = store.create_project(new_project("alpha")).await.expect("creating alpha").id;
    let other = store.create_project(new_project("beta")).await.expect("creating beta").id;
    let count = |project_id, hour: i64, outcome: &str, reason: &str, count| WebhookCount {
        project_id,
        hour: Timestamp::from_micros(T0 + hour * HOUR),
        outcome: outcome.into(),
        reason: reason.into(),
        count,
    };
    store
        .add_webhook_counts(&[
            count(project, 0, "accepted", "", 3),
            count(project, 0, "rejected", "unauthorized", 1),
            count(project, 0, "accepted", "", 2),
            count(other, 0, "accepted", "", 100),
        ])
        .await
        .expect("first counts");
    store
        .add_webhook_counts(&[
            count(project, 0, "accepted", "", 5),
            count(project, 1, "accepted", "", 1),
            count(project, 0, "rejected", "malformed", 4),
        ])
        .await
        .expect("second counts");
    store.add_webhook_counts(&[]).await.expect("no counts");

    let all = store.webhook_counts(project, Timestamp::from_micros(T0), Timestamp::from_micros(T0 + 2 * HOUR)).await.expect("reading");
    assert_eq!(
        all,
        vec![
            count(project, 0, "accepted", "", 10),
            count(project, 0, "rejected", "malformed", 4),
            count(project, 0, "rejected", "unauthorized", 1),
            count(project, 1, "accepted", "", 1),
        ]
    );
    let first_hour = store.webhook_counts(project, Timestamp::from_micros(T0), Timestamp::from_micros(T0 + HOUR)).await.expect("reading");
    assert_eq!(first_hour.len(), 3, "the range ends before `to`: {first_hour:?}");
    let others = store.webhook_counts(other, Timestamp::from_micros(T0), Timestamp::from_micros(T0 + 2 * HOUR)).await.expect("reading");
    assert_eq!(others, vec![count(other, 0, "accepted", "", 100)]);
}

async fn webhook_tally_adds_latencies_and_keeps_the_last_webhook_of_each_hour<S: Inspect>(store: S) {
    let project = store.create_project(new_project("alpha")).await.expect("creating alpha").id;
    let other = store.create_project(new_project("beta")).await.expect("creating beta").id;
    let at = |hour: i64, seconds: i64| Timestamp::from_micros(T0 + hour * HOUR + seconds * 1_000_000);
    let latency = |project_id, hour: i64, bucket, count| WebhookLatency { project_id, hour: at(hour, 0), bucket, count };
    let latest = |project_id, kind: &str, hour: i64, seconds, reason: &str| WebhookLatest {
        project_id,
        kind: kind.into(),
        hour: at(hour, 0),
        at: at(hour, seconds),
        reason: reason.into(),
    };
    let accepted = WebhookCount { project_id: project, hour: at(0, 0), outcome: "accepted".into(), reason: "".into(), count: 2 };
    store
        .add_webhook_tally(&WebhookTally {
            counts: vec![accepted.clone()],
            latencies: vec![latency(project, 0, 7, 1), latency(project, 0, 7, 1), latency(project, 1, 31, 1), latency(other, 0, 7, 9)],
            latest: vec![
                latest(project, "accepted", 0, 30, ""),
                latest(project, "accepted", 0, 20, ""),
                latest(project, "refused", 0, 40, "malformed"),
                latest(other, "refused", 1, 50, "unauthorized"),
            ],
        })
        .await
        .expect("first tally");
    store
        .add_webhook_tally(&WebhookTally {
            counts: vec![],
            latencies: vec![latency(project, 0, 7, 3), latency(project, 0, 0, 1)],
            // An earlier refusal of hour 0 keeps the later one; hour 1 gets its own.
            latest: vec![latest(project, "refused", 0, 10, "forbidden"), latest(project, "refused", 1, 5, "overloaded")],
        })
        .await
        .expect("second tally");
    store.add_webhook_tally(&WebhookTally::default()).await.expect("an empty tally");

    let tally = store.webhook_tally(project, at(0, 0), at(2, 0)).await.expect("reading");
    assert_eq!(tally.counts, vec![accepted]);
    assert_eq!(tally.latencies, vec![latency(project, 0, 0, 1), latency(project, 0, 7, 5), latency(project, 1, 31, 1)]);
    assert_eq!(
        tally.latest,
        vec![
            latest(project, "accepted", 0, 30, ""),
            latest(project, "refused", 0, 40, "malformed"),
            latest(project, "refused", 1, 5, "overloaded")
        ]
    );
    let first_hour = store.webhook_tally(project, at(0, 0), at(1, 0)).await.expect("reading");
    assert_eq!((first_hour.latencies.len(), first_hour.latest.len()), (2, 2), "the range ends before `to`: {first_hour:?}");
    assert_eq!(
        store.last_webhooks(project).await.expect("reading"),
        vec![latest(project, "accepted", 0, 30, ""), latest(project, "refused", 1, 5, "overloaded")]
    );
    assert_eq!(store.last_webhooks(other).await.expect("reading"), vec![latest(other, "refused", 1, 50, "unauthorized")]);
}

async fn commit_writes_events_derived_rows_cycles_and_offsets_together<S: Inspect>(store: S) {
    let project = store.create_project(new_project("alpha")).await.expect("creating alpha").id;
    let mut backfilled = event(project, 11, 30, 3, 120);
    backfilled.event.source = EventSource::Backfilled;
    backfilled.payload = None;
    let events = vec![event(project, 10, 20, 1, 0), event(project, 10, 30, 3, 60), backfilled.clone()];
    let batch = CommitBatch {
        events: events.clone(),
        orders: vec![derived(project, 10, 1, 2), derived(project, 11, 1, 1)],
        offsets: vec![offset(0, 10), offset(1, 7)],
    };
    store.commit(batch).await.expect("committing");

    assert_eq!(store.event_count(project).await.expect("counting"), 3);
    let mut stored = store.order_events(project, &[10, 11]).await.expect("reading events");
    for events in stored.values_mut() {
        events.sort_by_key(|e| e.timeline_key());
    }
    let expected: HashMap<i64, Vec<StatusEvent>> =
        HashMap::from([(10, vec![events[0].event, events[1].event]), (11, vec![backfilled.event])]);
    assert_eq!(stored, expected);

    let orders = store.list_orders(project, 10, None).await.expect("listing");
    assert_eq!(orders, vec![summary(&derived(project, 11, 1, 1)), summary(&derived(project, 10, 1, 2))]);
    let in_project = format!("WHERE project_id = {project}");
    // The derived document (group and status totals) is kept as the text that was written.
    assert_eq!(
        store.texts(format!("SELECT derived_json FROM orders_current {in_project} AND order_id = 10")).await,
        vec![derived(project, 10, 1, 2).derived_json]
    );
    assert_eq!(store.integer(format!("SELECT count(*) FROM order_cycle_metrics {in_project}")).await, 4);
    assert_eq!(store.integer(format!("SELECT count(*) FROM order_cycle_metrics {in_project} AND ended_at IS NULL AND is_open")).await, 2);
    assert_eq!(store.consumer_offsets(GROUP, TOPIC).await.expect("offsets"), HashMap::from([(0, 10), (1, 7)]));

    store.commit(CommitBatch { offsets: vec![offset(0, 12)], ..CommitBatch::default() }).await.expect("committing offsets");
    assert_eq!(store.consumer_offsets(GROUP, TOPIC).await.expect("offsets"), HashMap::from([(0, 12), (1, 7)]));
    assert!(store.consumer_offsets(GROUP, "order-updates").await.expect("offsets").is_empty());
    store.commit(CommitBatch::default()).await.expect("an empty batch commits");
}

async fn event_already_stored_is_skipped_in_a_later_batch<S: Inspect>(store: S) {
    let project = store.create_project(new_project("alpha")).await.expect("creating alpha").id;
    let first = event(project, 10, 20, 1, 0);
    let commit = |events: Vec<StoredEvent>| store.commit(CommitBatch { events, ..CommitBatch::default() });
    commit(vec![first.clone(), event(project, 10, 30, 3, 60)]).await.expect("first batch");

    let mut repeat = first.clone();
    repeat.received_at = Timestamp::from_micros(T0 + 99 * HOUR);
    repeat.payload = Some(r#"{"repeated": true}"#.into());
    let reentry = event(project, 10, 20, 1, 120);
    commit(vec![repeat.clone(), reentry.clone(), reentry.clone()]).await.expect("a batch with a stored event and a repeat in itself");
    // No repeat within the batch, but one event stored before (PostgreSQL tries `COPY` first).
    let later = event(project, 10, 40, 4, 180);
    commit(vec![later.clone(), repeat]).await.expect("a batch of distinct events, one of them stored");
    assert_eq!(store.event_count(project).await.expect("counting"), 4);
    commit(vec![later]).await.expect("a batch of one stored event");

    assert_eq!(store.event_count(project).await.expect("counting"), 4);
    let stored = store.order_events(project, &[10]).await.expect("reading events");
    assert_eq!(stored[&10].len(), 4);
    assert_eq!(stored[&10].iter().filter(|e| e.status_id == 20).count(), 2, "re-entering a status later is a new event");
    let payload = store
        .texts(format!(
            "SELECT CAST(payload AS TEXT) FROM order_status_events WHERE project_id = {project} AND status_id = 20 AND payload IS NOT NULL"
        ))
        .await;
    assert!(payload.iter().all(|p| !p.contains("repeated")), "the stored event is kept: {payload:?}");
}

async fn events_keep_every_field_exactly<S: Inspect>(store: S) {
    let project = store.create_project(new_project("alpha")).await.expect("creating alpha").id;
    let body = "{\"context\": {\"manager_comment\": \"Тел.\\t+380\\n\\\\ \\\"x\\\"\", \"a\":\t[1,\n2]}}\r\n";
    let mut webhook = event(project, 10, 20, 1, 0);
    webhook.payload = Some(body.into());
    // Before 2000 (PostgreSQL's epoch) and before 1970, to the microsecond.
    webhook.event.order_created_at = Timestamp::from_micros(-86_400_000_001);
    webhook.received_at = Timestamp::from_micros(946_684_799_999_999);
    let mut backfilled = event(project, 11, 21, 2, 60);
    backfilled.event.source = EventSource::Backfilled;
    backfilled.payload = None;
    let mut reconciled = event(project, 12, 22, 3, 120);
    reconciled.event.source = EventSource::Reconciled;
    store
        .commit(CommitBatch { events: vec![webhook.clone(), backfilled.clone(), reconciled.clone()], ..CommitBatch::default() })
        .await
        .expect("committing");

    let stored = store.order_events(project, &[10, 11, 12]).await.expect("reading events");
    for expected in [&webhook, &backfilled, &reconciled] {
        assert_eq!(stored[&expected.event.order_id], vec![expected.event]);
    }
    let payloads = store
        .texts(format!(
            "SELECT COALESCE(CAST(payload AS TEXT), 'NULL') FROM order_status_events WHERE project_id = {project} ORDER BY order_id"
        ))
        .await;
    assert_eq!(payloads, vec![body.to_owned(), "NULL".to_owned(), reconciled.payload.clone().unwrap()]);
    let received = store
        .integers(format!(
            "SELECT {} FROM order_status_events WHERE project_id = {project} ORDER BY order_id",
            store.micros_of("received_at")
        ))
        .await;
    assert_eq!(received, vec![webhook.received_at.as_micros(), backfilled.received_at.as_micros(), reconciled.received_at.as_micros()]);
}

async fn lower_version_replaces_nothing_while_an_equal_or_higher_one_replaces_row_totals_and_cycles<S: Inspect>(store: S) {
    let project = store.create_project(new_project("alpha")).await.expect("creating alpha").id;
    let document = |group: u16| format!(r#"{{"groups":{{"{group}":{{"visits":1}}}}}}"#);
    let with = |revision, count, group: u16, cycles: u32| {
        let mut order = derived(project, 10, revision, count);
        order.urgency = if group.is_multiple_of(2) { "urgent".into() } else { "normal".into() };
        order.derived_json = document(group);
        order.cycles = (1..=cycles).map(|id| CycleRow { cycle_id: id, ..open_cycle() }).collect();
        order
    };
    let commit = |order: DerivedOrder| store.commit(CommitBatch { orders: vec![order], ..CommitBatch::default() });
    let state = || async {
        let orders = store.list_orders(project, 10, None).await.expect("listing");
        let json = store.texts(format!("SELECT derived_json FROM orders_current WHERE project_id = {project}")).await;
        let cycles = store.integer(format!("SELECT count(*) FROM order_cycle_metrics WHERE project_id = {project}")).await;
        assert_eq!(orders.len(), 1);
        (orders[0].settings_revision, orders[0].event_count, json, cycles)
    };

    commit(with(1, 3, 1, 1)).await.expect("first version");
    assert_eq!(state().await, (1, 3, vec![document(1)], 1));

    commit(with(1, 2, 2, 2)).await.expect("a lower event count is not an error");
    assert_eq!(state().await, (1, 3, vec![document(1)], 1), "fewer events under the same settings replace nothing");

    commit(with(1, 3, 3, 3)).await.expect("an equal version");
    assert_eq!(state().await, (1, 3, vec![document(3)], 3), "an equal version replaces row, totals and cycles");

    commit(with(2, 1, 5, 0)).await.expect("a newer settings revision");
    assert_eq!(state().await, (2, 1, vec![document(5)], 0), "a newer settings revision wins over more events");

    commit(with(1, 99, 4, 2)).await.expect("an older settings revision is not an error");
    assert_eq!(state().await, (2, 1, vec![document(5)], 0), "an older settings revision replaces nothing");
}

async fn same_order_twice_in_one_batch_keeps_its_higher_version<S: Inspect>(store: S) {
    let project = store.create_project(new_project("alpha")).await.expect("creating alpha").id;
    let mut newer = derived(project, 10, 1, 5);
    newer.cycles.truncate(1);
    let batch =
        CommitBatch { orders: vec![derived(project, 10, 1, 2), newer.clone(), derived(project, 10, 1, 4)], ..CommitBatch::default() };
    store.commit(batch).await.expect("committing");

    assert_eq!(store.list_orders(project, 10, None).await.expect("listing"), vec![summary(&newer)]);
    assert_eq!(store.integer(format!("SELECT count(*) FROM order_cycle_metrics WHERE project_id = {project}")).await, 1);
}

async fn failing_commit_writes_nothing_not_even_offsets<S: Inspect>(store: S) {
    let project = store.create_project(new_project("alpha")).await.expect("creating alpha").id;

    // The order statement fails (a value its CHECK refuses), after the events went in.
    let mut refused_order = derived(project, 11, 1, 1);
    refused_order.urgency = "very".into();
    let bad_order = CommitBatch {
        events: vec![event(project, 10, 20, 1, 0), event(project, 11, 20, 1, 0)],
        orders: vec![derived(project, 10, 1, 1), refused_order],
        offsets: vec![offset(0, 10)],
    };
    let error = store.commit(bad_order).await.expect_err("an urgency the schema refuses");
    assert!(matches!(error, StateError::Database(_)), "{error:?}");

    // A later statement fails, after the events and the orders went in.
    let mut refused_cycle = derived(project, 11, 1, 1);
    refused_cycle.cycles[0].is_open = true;
    assert!(refused_cycle.cycles[0].ended_at.is_some());
    let bad_cycle = CommitBatch {
        events: vec![event(project, 10, 20, 1, 0), event(project, 11, 20, 1, 0)],
        orders: vec![derived(project, 10, 1, 1), refused_cycle],
        offsets: vec![offset(0, 10)],
    };
    store.commit(bad_cycle).await.expect_err("an ended cycle marked open, which the schema refuses");

    assert_eq!(store.event_count(project).await.expect("counting"), 0);
    assert!(store.list_orders(project, 10, None).await.expect("listing").is_empty());
    assert_eq!(store.integer("SELECT count(*) FROM order_cycle_metrics".into()).await, 0);
    assert!(store.consumer_offsets(GROUP, TOPIC).await.expect("offsets").is_empty());

    // Over existing data: the stored row, its totals and the offsets stay as they were.
    let good =
        CommitBatch { events: vec![event(project, 10, 20, 1, 0)], orders: vec![derived(project, 10, 1, 1)], offsets: vec![offset(0, 10)] };
    store.commit(good).await.expect("a good batch");
    let digest = store.derived_digest(project).await.expect("digest");
    let mut newer = derived(project, 10, 2, 2);
    newer.cycles.truncate(1);
    let mut refused = derived(project, 11, 1, 1);
    refused.sla_state = "late".into();
    let failing = CommitBatch { events: vec![event(project, 10, 30, 3, 60)], orders: vec![newer, refused], offsets: vec![offset(0, 11)] };
    store.commit(failing).await.expect_err("an SLA state the schema refuses");
    assert_eq!(store.event_count(project).await.expect("counting"), 1);
    assert_eq!(store.derived_digest(project).await.expect("digest"), digest);
    assert_eq!(store.integer("SELECT count(*) FROM order_cycle_metrics".into()).await, 2);
    assert_eq!(store.consumer_offsets(GROUP, TOPIC).await.expect("offsets"), HashMap::from([(0, 10)]));
}

async fn order_events_are_grouped_by_order_and_never_mix_projects<S: Inspect>(store: S) {
    let alpha = store.create_project(new_project("alpha")).await.expect("creating alpha").id;
    let beta = store.create_project(new_project("beta")).await.expect("creating beta").id;
    let events = vec![
        event(alpha, 42, 20, 1, 0),
        event(alpha, 42, 30, 3, 60),
        event(alpha, 43, 20, 1, 30),
        event(beta, 42, 77, 2, 0),
        event(beta, 44, 20, 1, 0),
    ];
    store.commit(CommitBatch { events, ..CommitBatch::default() }).await.expect("committing");

    let of_alpha = store.order_events(alpha, &[42, 43, 44, 42]).await.expect("alpha's events");
    assert_eq!(of_alpha.keys().copied().collect::<BTreeSet<_>>(), BTreeSet::from([42, 43]));
    assert_eq!(of_alpha[&42].iter().map(|e| e.status_id).collect::<BTreeSet<_>>(), BTreeSet::from([20, 30]));
    assert!(of_alpha.values().flatten().all(|e| e.status_id != 77));

    let of_beta = store.order_events(beta, &[42]).await.expect("beta's events");
    assert_eq!(of_beta[&42].iter().map(|e| e.status_id).collect::<Vec<_>>(), vec![77]);
    assert!(store.order_events(alpha, &[]).await.expect("no orders").is_empty());

    // More ids than one statement names.
    let ids: Vec<i64> = (0..2500).collect();
    assert_eq!(store.order_events(alpha, &ids).await.expect("many ids").len(), 2);
}

async fn list_orders_pages_through_every_order_once_newest_first<S: Inspect>(store: S) {
    let project = store.create_project(new_project("alpha")).await.expect("creating alpha").id;
    let other = store.create_project(new_project("beta")).await.expect("creating beta").id;
    // 25 orders over 9 instants, so that many share their last change and the order id decides.
    let orders: Vec<DerivedOrder> = (1..=25)
        .map(|id| {
            let mut order = derived(project, id, 1, 1);
            order.last_changed_at = Timestamp::from_micros(T0 + (id * 7 % 9) * 1_000_001);
            order
        })
        .collect();
    let mut all = orders.clone();
    all.push(derived(other, 100, 1, 1));
    store.commit(CommitBatch { orders: all, ..CommitBatch::default() }).await.expect("committing");

    let mut expected: Vec<(Timestamp, i64)> = orders.iter().map(|o| (o.last_changed_at, o.order_id)).collect();
    expected.sort_by(|a, b| b.cmp(a));

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list_orders(project, 7, cursor).await.expect("a page");
        assert!(page.len() <= 7);
        let Some(last) = page.last() else { break };
        cursor = Some((last.last_changed_at, last.order_id));
        seen.extend(page.iter().map(|o| (o.last_changed_at, o.order_id)));
    }
    assert_eq!(seen, expected);
}

async fn order_ids_ascend_after_the_cursor<S: Inspect>(store: S) {
    let project = store.create_project(new_project("alpha")).await.expect("creating alpha").id;
    let other = store.create_project(new_project("beta")).await.expect("creating beta").id;
    let events = vec![
        event(project, 5, 20, 1, 0),
        event(project, 1, 20, 1, 0),
        event(project, 9, 20, 1, 0),
        event(project, 3, 20, 1, 0),
        event(project, 3, 30, 3, 60),
        event(other, 2, 20, 1, 0),
    ];
    store.commit(CommitBatch { events, ..CommitBatch::default() }).await.expect("committing");

    assert_eq!(store.order_ids(project, 0, 10).await.expect("ids"), vec![1, 3, 5, 9]);
    assert_eq!(store.order_ids(project, 3, 2).await.expect("ids"), vec![5, 9]);
    assert!(store.order_ids(project, 9, 10).await.expect("ids").is_empty());
}

async fn digest_changes_when_a_derived_value_changes_and_only_then<S: Inspect>(store: S) {
    let project = store.create_project(new_project("alpha")).await.expect("creating alpha").id;
    let empty = store.derived_digest(project).await.expect("digest of nothing");
    let order = derived(project, 10, 1, 2);
    let commit = |order: DerivedOrder| store.commit(CommitBatch { orders: vec![order], ..CommitBatch::default() });
    commit(order.clone()).await.expect("committing");
    let digest = store.derived_digest(project).await.expect("digest");
    assert_ne!(digest, empty);
    assert_eq!(digest.len(), 64);
    assert!(digest.chars().all(|c| c.is_ascii_hexdigit()));

    // The same row written again (only `updated_at` changes), and events, change nothing.
    commit(order.clone()).await.expect("committing again");
    store.commit(CommitBatch { events: vec![event(project, 10, 20, 1, 0)], ..CommitBatch::default() }).await.expect("an event");
    assert_eq!(store.derived_digest(project).await.expect("digest"), digest);

    let mut cycle_changed = order.clone();
    cycle_changed.cycles[0].working_seconds += 1.0;
    commit(cycle_changed).await.expect("a changed cycle");
    let after_cycle = store.derived_digest(project).await.expect("digest");
    assert_ne!(after_cycle, digest);

    let mut json_changed = order.clone();
    json_changed.derived_json = json_changed.derived_json.replace("Статус", "Status");
    commit(json_changed).await.expect("a changed analyzer object");
    let after_json = store.derived_digest(project).await.expect("digest");
    assert_ne!(after_json, after_cycle);

    commit(order).await.expect("the first values again");
    assert_eq!(store.derived_digest(project).await.expect("digest"), digest);
}

async fn digest_ignores_json_formatting_and_the_project_id<S: Inspect>(store: S) {
    let alpha = store.create_project(new_project("alpha")).await.expect("creating alpha").id;
    let beta = store.create_project(new_project("beta")).await.expect("creating beta").id;
    let mut compact = derived(alpha, 10, 1, 2);
    compact.derived_json = r#"{"b":[1,2.5,1e3],"a":{"y":null,"x":"Статус"}}"#.into();
    let mut spaced = derived(beta, 10, 1, 2);
    spaced.derived_json =
        "{ \"a\": { \"x\": \"\\u0421\\u0442\\u0430\\u0442\\u0443\\u0441\", \"y\": null },\n  \"b\": [1, 2.50, 1000] }".into();
    store.commit(CommitBatch { orders: vec![compact, spaced], ..CommitBatch::default() }).await.expect("committing");

    assert_eq!(store.derived_digest(alpha).await.expect("alpha"), store.derived_digest(beta).await.expect("beta"));
}

async fn five_thousand_events_for_five_thousand_orders_commit_in_one_batch<S: Inspect>(store: S) {
    let project = store.create_project(new_project("alpha")).await.expect("creating alpha").id;
    let ids: Vec<i64> = (1..=5000).map(|i| 1_000_000 + i).collect();
    let batch = |revision: i64| CommitBatch {
        events: ids.iter().map(|&id| event(project, id, 20 + id % 7, 1 + (id % 6) as u16, id % 3600)).collect(),
        orders: ids.iter().map(|&id| derived(project, id, revision, 1)).collect(),
        offsets: (0..8).map(|partition| offset(partition, 625 * revision + i64::from(partition))).collect(),
    };

    let started = Instant::now();
    store.commit(batch(1)).await.expect("a batch of 5,000");
    let first = started.elapsed();
    let started = Instant::now();
    store.commit(batch(2)).await.expect("the batch again, replacing every derived row");
    let second = started.elapsed();
    // For the record only: a debug build on a shared machine is no benchmark.
    let _ = writeln!(std::io::stderr(), "{}: 5,000 events/orders in {first:?}, replaced in {second:?}", store.name());

    assert_eq!(store.event_count(project).await.expect("counting"), 5000);
    let in_project = format!("WHERE project_id = {project}");
    assert_eq!(store.integer(format!("SELECT count(*) FROM orders_current {in_project} AND settings_revision = 2")).await, 5000);
    assert_eq!(store.integer(format!("SELECT count(*) FROM order_cycle_metrics {in_project}")).await, 10_000);
    assert_eq!(store.consumer_offsets(GROUP, TOPIC).await.expect("offsets").len(), 8);
    assert_eq!(store.order_events(project, &ids).await.expect("reading events").len(), 5000);
}

// ---------------------------------------------------------------------------------------------
// Tests of one store, or of both side by side.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn equal_data_gives_equal_digests_on_sqlite_and_postgres() {
    on_postgres("equal_data_gives_equal_digests_on_sqlite_and_postgres", |postgres: PostgresState| async move {
        let dir = tempfile::tempdir().expect("temporary folder");
        let sqlite = SqliteState::open(dir.path().join("state.db").to_str().expect("UTF-8 path")).await.expect("opening SQLite");
        // Different project ids for the same data: the digest does not depend on them.
        postgres.create_project(new_project("filler")).await.expect("creating a filler project");
        let on_postgres = postgres.create_project(new_project("alpha")).await.expect("creating alpha").id;
        let on_sqlite = sqlite.create_project(new_project("alpha")).await.expect("creating alpha").id;
        assert_ne!(on_postgres, on_sqlite);

        postgres.commit(varied_batch(on_postgres)).await.expect("committing to PostgreSQL");
        sqlite.commit(varied_batch(on_sqlite)).await.expect("committing to SQLite");
        let digest_postgres = postgres.derived_digest(on_postgres).await.expect("PostgreSQL digest");
        let digest_sqlite = sqlite.derived_digest(on_sqlite).await.expect("SQLite digest");
        assert_eq!(digest_postgres, digest_sqlite);

        assert_eq!(
            postgres.list_orders(on_postgres, 100, None).await.expect("listing"),
            sqlite.list_orders(on_sqlite, 100, None).await.expect("listing")
        );
        let ids: Vec<i64> = (1..=40).collect();
        let sorted = |mut events: HashMap<i64, Vec<StatusEvent>>| {
            events.values_mut().for_each(|e| e.sort_by_key(|e| e.timeline_key()));
            events
        };
        assert_eq!(
            sorted(postgres.order_events(on_postgres, &ids).await.expect("events")),
            sorted(sqlite.order_events(on_sqlite, &ids).await.expect("events"))
        );

        // One value changed on one side only: the digests differ.
        let mut changed = varied_batch(on_sqlite);
        changed.orders.truncate(1);
        changed.orders[0].untracked_seconds = f64::from_bits(changed.orders[0].untracked_seconds.to_bits() + 1);
        sqlite.commit(changed).await.expect("committing a change");
        assert_ne!(sqlite.derived_digest(on_sqlite).await.expect("SQLite digest"), digest_postgres);
    })
    .await;
}

#[tokio::test]
async fn open_creates_the_sqlite_file_and_its_folders_and_reopens_it() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let file = dir.path().join("data").join("nested").join("state.db");
    let path = file.to_str().expect("UTF-8 path");
    let store = SqliteState::open(path).await.expect("opening");
    assert!(file.is_file());
    let journal_mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(store.pool()).await.expect("journal mode");
    assert_eq!(journal_mode, "wal");
    let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(store.pool()).await.expect("foreign keys");
    assert_eq!(foreign_keys, 1);
    let project = store.create_project(new_project("alpha")).await.expect("creating alpha");
    store.pool().close().await;

    let reopened = SqliteState::open(&format!("sqlite:{path}")).await.expect("reopening by URL");
    assert_eq!(reopened.projects().await.expect("listing"), vec![project]);
}

#[tokio::test]
async fn in_memory_sqlite_keeps_its_data_for_the_life_of_the_store() {
    let store = SqliteState::open("sqlite::memory:").await.expect("opening in memory");
    let project = store.create_project(new_project("alpha")).await.expect("creating alpha").id;
    store.commit(varied_batch(project)).await.expect("committing");
    assert_eq!(store.event_count(project).await.expect("counting"), 80);
    assert_eq!(store.list_orders(project, 100, None).await.expect("listing").len(), 40);
}

/// The SQLite this workspace builds keeps no global allocation counts (`.cargo/config.toml`), and
/// a state file's WAL is not cut back below what a run between two checkpoints fills.
#[tokio::test]
async fn sqlite_is_built_without_allocation_counts_and_keeps_a_full_wal() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let store = SqliteState::open(dir.path().join("state.db").to_str().expect("UTF-8 path")).await.expect("opening");
    let options: Vec<String> = sqlx::query_scalar("PRAGMA compile_options").fetch_all(store.pool()).await.expect("compile options");
    assert!(options.iter().any(|option| option == "DEFAULT_MEMSTATUS=0"), "{options:?}");
    let checkpoint_pages: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint").fetch_one(store.pool()).await.expect("autocheckpoint");
    let size_limit: i64 = sqlx::query_scalar("PRAGMA journal_size_limit").fetch_one(store.pool()).await.expect("size limit");
    let page_size: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(store.pool()).await.expect("page size");
    assert!(size_limit >= checkpoint_pages * page_size * 3 / 2, "the WAL is cut to {size_limit} bytes");
}

#[tokio::test]
async fn empty_sqlite_path_is_refused() {
    let error = SqliteState::open(" ").await.expect_err("an empty path");
    assert!(error.to_string().contains("path is empty"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// Fixtures.
// ---------------------------------------------------------------------------------------------

/// A store the tests can also look into with plain SQL (no dialect-specific syntax).
trait Inspect: StateStore {
    fn name(&self) -> &'static str;
    fn execute(&self, sql: String) -> impl Future<Output = ()> + Send;
    fn integers(&self, sql: String) -> impl Future<Output = Vec<i64>> + Send;
    fn texts(&self, sql: String) -> impl Future<Output = Vec<String>> + Send;
    /// An expression for an instant column as microseconds since the Unix epoch.
    fn micros_of(&self, column: &str) -> String;

    fn integer(&self, sql: String) -> impl Future<Output = i64> + Send {
        async move {
            let values = self.integers(sql.clone()).await;
            assert_eq!(values.len(), 1, "{sql} returned {values:?}");
            values[0]
        }
    }
}

macro_rules! inspect_with_pool {
    ($store:ty, $name:literal, $micros:literal) => {
        impl Inspect for $store {
            fn name(&self) -> &'static str {
                $name
            }

            fn micros_of(&self, column: &str) -> String {
                format!($micros, column = column)
            }

            async fn execute(&self, sql: String) {
                if let Err(e) = sqlx::raw_sql(AssertSqlSafe(sql.clone())).execute(self.pool()).await {
                    panic!("{sql}\nfailed on {}: {e}", $name);
                }
            }

            async fn integers(&self, sql: String) -> Vec<i64> {
                sqlx::query_scalar(AssertSqlSafe(sql.clone()))
                    .fetch_all(self.pool())
                    .await
                    .unwrap_or_else(|e| panic!("{sql}\nfailed on {}: {e}", $name))
            }

            async fn texts(&self, sql: String) -> Vec<String> {
                sqlx::query_scalar(AssertSqlSafe(sql.clone()))
                    .fetch_all(self.pool())
                    .await
                    .unwrap_or_else(|e| panic!("{sql}\nfailed on {}: {e}", $name))
            }
        }
    };
}

inspect_with_pool!(SqliteState, "SQLite", "{column}");
inspect_with_pool!(PostgresState, "PostgreSQL", "CAST(EXTRACT(EPOCH FROM {column}) * 1000000 AS BIGINT)");

fn new_project(slug: &str) -> NewProject {
    NewProject {
        slug: slug.into(),
        name: format!("Project {slug}"),
        timezone: "Europe/Kyiv".into(),
        webhook_secret_hash: "ab".repeat(32),
        allowed_cidrs: vec!["10.0.0.0/8".into(), "192.168.0.0/16".into()],
    }
}

/// An entry of `order_id` into `status_id` `seconds` after [`T0`].
fn event(project_id: i64, order_id: i64, status_id: i64, group_id: u16, seconds: i64) -> StoredEvent {
    StoredEvent {
        project_id,
        event: StatusEvent {
            order_id,
            status_id,
            group_id,
            changed_at: Timestamp::from_micros(T0 + seconds * 1_000_000 + 123_456),
            order_created_at: Timestamp::from_micros(T0 - HOUR),
            source: EventSource::Webhook,
        },
        received_at: Timestamp::from_micros(T0 + seconds * 1_000_000 + 500_000),
        payload: Some(format!(r#"{{"event": "order.change_order_status", "context": {{"id": {order_id}}}}}"#)),
    }
}

/// A derived row with two group totals and two cycles (one closed, one open).
fn derived(project_id: i64, order_id: i64, settings_revision: i64, event_count: u32) -> DerivedOrder {
    DerivedOrder {
        project_id,
        order_id,
        current_status_id: 30,
        current_group_id: 3,
        last_changed_at: Timestamp::from_micros(T0 + order_id % 1000 * 1_000_000),
        started_at: Timestamp::from_micros(T0 - HOUR),
        untracked_seconds: 12.5,
        delivery_entered_at: None,
        cycle_duration_to_delivery: None,
        closed_at: None,
        cycle_rule_id_applied: Some(1),
        urgency: "pending".into(),
        sla_state: "ok".into(),
        event_count,
        settings_revision,
        derived_json: format!(r#"{{"order_id": {order_id}, "intervals": [{{"group": 1, "wall": 60.5}}], "label": "Статус"}}"#),
        cycles: vec![
            CycleRow {
                cycle_id: 1,
                started_at: Timestamp::from_micros(T0 - HOUR),
                ended_at: Some(Timestamp::from_micros(T0 + 17)),
                wall_seconds: 3600.000017,
                working_seconds: 1800.25,
                is_open: false,
            },
            CycleRow { cycle_id: 2, ..open_cycle() },
        ],
    }
}

fn open_cycle() -> CycleRow {
    CycleRow {
        cycle_id: 1,
        started_at: Timestamp::from_micros(T0 - HOUR),
        ended_at: None,
        wall_seconds: 0.0,
        working_seconds: 0.0,
        is_open: true,
    }
}

/// Rows that exercise every column: nulls and values, awkward floats, JSON that JSONB rewrites.
fn varied_batch(project_id: i64) -> CommitBatch {
    let orders = (1..=40)
        .map(|id: i64| {
            let mut order = derived(project_id, id, 1 + id % 2, (id % 5) as u32 + 1);
            order.current_group_id = 1 + (id % 6) as u16;
            order.untracked_seconds = id as f64 / 3.0;
            if id % 3 == 0 {
                order.delivery_entered_at = Some(Timestamp::from_micros(T0 + id * 999_999));
                order.cycle_duration_to_delivery = Some(1e-7 * id as f64);
                order.closed_at = Some(Timestamp::from_micros(-id));
                order.cycle_rule_id_applied = None;
                order.urgency = "urgent".into();
                order.sla_state = "over".into();
            }
            order.derived_json = format!(
                r#"{{"z": {id}, "big": 1e16, "neg": -0.0, "f": {}, "nested": {{"b": [true, null], "a": "\u00e9\"\n"}}}}"#,
                id as f64 * 0.1
            );
            order
        })
        .collect();
    let events = (1..=40).flat_map(|id| [event(project_id, id, 20, 1, id), event(project_id, id, 30, 3, id + 60)]).collect();
    CommitBatch { events, orders, offsets: vec![offset(0, 80)] }
}

fn offset(partition: u32, next_offset: i64) -> ConsumerOffset {
    ConsumerOffset { group: GROUP.into(), topic: TOPIC.into(), partition, next_offset }
}

fn summary(order: &DerivedOrder) -> OrderSummary {
    OrderSummary {
        order_id: order.order_id,
        current_status_id: order.current_status_id,
        current_group_id: order.current_group_id,
        last_changed_at: order.last_changed_at,
        event_count: order.event_count,
        settings_revision: order.settings_revision,
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text} is not JSON: {e}"))
}
