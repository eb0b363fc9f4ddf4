//! The `EnrichStore` contract, one suite run against both adapters: SQLite in a temporary
//! folder, and PostgreSQL from `DATABASE_URL` (skipped with a visible line without it, except
//! under `CI=true`, where it fails).

mod common;

use ksa_schemas::{OrderLine, Timestamp};
use ksa_state::enrich::{ApiAccessUpdate, CursorName, FetchedItems, JobCounts, JobState, MarketingRow, StatusEntry};
use ksa_state::{EnrichStore, NewProject, StateStore};

use common::{on_postgres, on_sqlite};

/// 2026-01-29T18:53:35Z, in microseconds since the Unix epoch.
const T0: i64 = 1_769_712_815_000_000;
const MINUTE: i64 = 60_000_000;

ksa_testkit::on_both_databases!(
    api_access_keeps_the_encrypted_token_base_url_and_rate,
    status_sync_adds_updates_and_keeps_vanished_statuses_inactive,
    groups_are_seeded_in_ukrainian_and_can_be_renamed,
    recent_orders_in_statuses_the_dictionary_lacks_are_found,
    stored_items_replace_the_previous_fetch_and_mark_the_job_done,
    orders_fetched_without_lines_are_told_apart_from_orders_never_fetched,
    failed_fetches_come_back_after_their_backoff_then_dead_letter_until_requeued,
    repeated_requests_do_not_reset_attempts_and_done_orders_refetch_only_when_asked,
    cursors_are_stored_replaced_and_removed_per_project,
);

fn at(minutes: i64) -> Timestamp {
    Timestamp::from_micros(T0 + minutes * MINUTE)
}

async fn project<S: StateStore>(store: &S, slug: &str) -> i64 {
    store
        .create_project(NewProject {
            slug: slug.into(),
            name: format!("Project {slug}"),
            timezone: "UTC".into(),
            webhook_secret_hash: "ab".repeat(32),
            allowed_cidrs: vec![],
        })
        .await
        .expect("creating a project")
        .id
}

fn status(id: i64, name: &str, group: u16) -> StatusEntry {
    StatusEntry {
        status_id: id,
        name: name.into(),
        alias: Some(name.to_lowercase()),
        group_id: group,
        is_active: true,
        is_closing_order: group == 5,
        is_reserved: false,
        expiration_period_seconds: (id == 20).then_some(86_400.0),
    }
}

fn line(sku: &str, offer_id: i64, product_id: i64) -> OrderLine {
    OrderLine {
        line_id: None,
        sku: Some(sku.into()),
        name: Some(format!("Item {sku}")),
        quantity: 1.5,
        price_sold: Some(599.0),
        offer_id: Some(offer_id),
        offer_sku: Some(sku.into()),
        product_id: Some(product_id),
    }
}

async fn api_access_keeps_the_encrypted_token_base_url_and_rate<S: StateStore + EnrichStore>(store: S) {
    let p = project(&store, "shop").await;
    let fresh = store.api_access(p).await.unwrap().expect("the project");
    assert_eq!(fresh.slug, "shop");
    assert_eq!(fresh.base_url, "https://openapi.keycrm.app/v1");
    assert_eq!((fresh.token_enc, fresh.rate_per_minute), (None, None));

    let update = ApiAccessUpdate {
        base_url: Some("http://127.0.0.1:9/v1".into()),
        token_enc: Some(vec![1, 2, 3, 0, 255]),
        token_hint: Some("0255".into()),
        rate_per_minute: Some(Some(20)),
    };
    assert!(!format!("{update:?}").contains("255"), "Debug does not show the token bytes");
    store.update_api_access(p, update).await.unwrap();
    let stored = store.api_access(p).await.unwrap().unwrap();
    assert_eq!(stored.base_url, "http://127.0.0.1:9/v1");
    assert_eq!(stored.token_enc.as_deref(), Some(&[1, 2, 3, 0, 255][..]));
    assert_eq!(stored.rate_per_minute, Some(20));

    store.update_api_access(p, ApiAccessUpdate { rate_per_minute: Some(None), ..ApiAccessUpdate::default() }).await.unwrap();
    let stored = store.api_access(p).await.unwrap().unwrap();
    assert_eq!(stored.rate_per_minute, None);
    assert_eq!(stored.token_enc.as_deref(), Some(&[1, 2, 3, 0, 255][..]), "fields not named stay");
    assert!(store.api_access(p + 100).await.unwrap().is_none());
}

async fn status_sync_adds_updates_and_keeps_vanished_statuses_inactive<S: StateStore + EnrichStore>(store: S) {
    let p = project(&store, "shop").await;
    let other = project(&store, "other").await;
    let first = store.sync_statuses(p, &[status(1, "new", 1), status(20, "Матеріали", 2), status(7, "Пакування", 3)], at(0)).await.unwrap();
    assert_eq!((first.added, first.updated, first.deactivated), (3, 0, 0));

    let second = store.sync_statuses(p, &[status(1, "new", 1), status(20, "Матеріали і тканини", 2)], at(60)).await.unwrap();
    assert_eq!((second.added, second.updated, second.deactivated), (0, 2, 1));
    let statuses = store.statuses(p).await.unwrap();
    assert_eq!(statuses.iter().map(|s| (s.status_id, s.is_active)).collect::<Vec<_>>(), vec![(1, true), (7, false), (20, true)]);
    let renamed = statuses.iter().find(|s| s.status_id == 20).unwrap();
    assert_eq!(renamed.name, "Матеріали і тканини");
    assert_eq!(renamed.expiration_period_seconds, Some(86_400.0));
    assert_eq!(renamed.alias.as_deref(), Some("матеріали і тканини"));

    // A status that comes back is active again.
    let third = store.sync_statuses(p, &[status(1, "new", 1), status(7, "Пакування", 3)], at(120)).await.unwrap();
    assert_eq!((third.added, third.updated, third.deactivated), (0, 2, 1));
    assert!(store.statuses(p).await.unwrap().iter().find(|s| s.status_id == 7).unwrap().is_active);
    assert!(store.statuses(other).await.unwrap().is_empty(), "dictionaries are per project");
}

async fn groups_are_seeded_in_ukrainian_and_can_be_renamed<S: StateStore + EnrichStore>(store: S) {
    let p = project(&store, "shop").await;
    let groups = store.status_groups(p).await.unwrap();
    assert_eq!(groups.iter().map(|g| g.group_id).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(groups[0].name, "Новий");
    assert_eq!(groups.iter().filter(|g| g.is_terminal).map(|g| g.group_id).collect::<Vec<_>>(), vec![5, 6]);
    store.rename_status_group(p, 3, "Пошиття").await.unwrap();
    assert_eq!(store.status_groups(p).await.unwrap()[2].name, "Пошиття");
}

async fn recent_orders_in_statuses_the_dictionary_lacks_are_found<S: StateStore + EnrichStore>(store: S) {
    use ksa_schemas::derived::DerivedOrder;
    let p = project(&store, "shop").await;
    store.sync_statuses(p, &[status(1, "new", 1), status(20, "Матеріали", 2)], at(0)).await.unwrap();
    let order = |order_id: i64, status_id: i64, minute: i64| DerivedOrder {
        project_id: p,
        order_id,
        current_status_id: status_id,
        current_group_id: 2,
        last_changed_at: at(minute),
        started_at: at(0),
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
    let orders = vec![order(1, 20, 10), order(2, 99, 10), order(3, 98, 1), order(4, 99, 12)];
    store.commit(ksa_state::CommitBatch { orders, ..Default::default() }).await.unwrap();
    assert_eq!(store.unknown_recent_statuses(p, at(5)).await.unwrap(), vec![99], "98 changed before the window; 20 is known");
    assert_eq!(store.unknown_recent_statuses(p, at(0)).await.unwrap(), vec![98, 99]);
}

async fn stored_items_replace_the_previous_fetch_and_mark_the_job_done<S: StateStore + EnrichStore>(store: S) {
    let p = project(&store, "shop").await;
    assert!(store.schedule_fetch(p, 23196, "missing_items", at(0), false).await.unwrap());
    let marketing = MarketingRow {
        utm_source: Some("instagram".into()),
        utm_campaign: Some("winter".into()),
        fbclid: Some("IwAR0abc".into()),
        ..MarketingRow::default()
    };
    let first = FetchedItems {
        project_id: p,
        order_id: 23196,
        lines: vec![line("KUF006OGXL", 9876, 1234), line("Термінове виготовлення", 16, 2)],
        marketing: Some(marketing.clone()),
        fetched_at: at(1),
    };
    store.store_items(&first).await.unwrap();
    let lines = store.order_lines(p, &[23196, 5]).await.unwrap();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[&23196], first.lines);
    assert_eq!(store.marketing(p, 23196).await.unwrap(), Some(marketing));
    let job = store.job(p, 23196).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Done, 0));

    let second = FetchedItems { lines: vec![line("KUF006OGXL", 9876, 1234)], marketing: None, fetched_at: at(2), ..first };
    store.store_items(&second).await.unwrap();
    assert_eq!(store.order_lines(p, &[23196]).await.unwrap()[&23196], second.lines);
    assert_eq!(store.marketing(p, 23196).await.unwrap(), None);
    assert_eq!(store.job_counts(p).await.unwrap(), JobCounts { pending: 0, done: 1, dead: 0 });
}

async fn orders_fetched_without_lines_are_told_apart_from_orders_never_fetched<S: StateStore + EnrichStore>(store: S) {
    let p = project(&store, "shop").await;
    store.store_items(&FetchedItems { project_id: p, order_id: 1, lines: vec![], marketing: None, fetched_at: at(0) }).await.unwrap();
    store.schedule_fetch(p, 2, "missing_items", at(0), false).await.unwrap();
    let lines = store.order_lines(p, &[1, 2, 3]).await.unwrap();
    assert_eq!(lines.get(&1), Some(&vec![]));
    assert!(!lines.contains_key(&2), "pending, not fetched");
    assert!(!lines.contains_key(&3));
}

async fn failed_fetches_come_back_after_their_backoff_then_dead_letter_until_requeued<S: StateStore + EnrichStore>(store: S) {
    let p = project(&store, "shop").await;
    store.schedule_fetch(p, 10, "missing_items", at(0), false).await.unwrap();
    store.schedule_fetch(p, 11, "missing_items", at(5), false).await.unwrap();
    assert_eq!(store.due_jobs(at(1), 10).await.unwrap().iter().map(|j| j.order_id).collect::<Vec<_>>(), vec![10]);
    assert_eq!(store.due_jobs(at(5), 10).await.unwrap().iter().map(|j| j.order_id).collect::<Vec<_>>(), vec![10, 11]);

    store.record_failure(p, 10, "project `shop`: order 10 failed 5 times, last: HTTP 503", Some(at(30))).await.unwrap();
    let job = store.job(p, 10).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempts, job.next_attempt_at), (JobState::Pending, 1, at(30)));
    assert_eq!(job.last_error.as_deref(), Some("project `shop`: order 10 failed 5 times, last: HTTP 503"));
    assert!(store.due_jobs(at(29), 10).await.unwrap().iter().all(|j| j.order_id != 10));

    store.record_failure(p, 10, "HTTP 404", None).await.unwrap();
    let dead = store.dead_jobs(p).await.unwrap();
    assert_eq!(dead.iter().map(|j| (j.order_id, j.attempts)).collect::<Vec<_>>(), vec![(10, 2)]);
    assert!(store.due_jobs(at(1000), 10).await.unwrap().iter().all(|j| j.order_id != 10), "dead jobs are not due");
    assert_eq!(store.job_counts(p).await.unwrap(), JobCounts { pending: 1, done: 0, dead: 1 });

    assert_eq!(store.requeue_dead(p, at(40)).await.unwrap(), 1);
    let job = store.job(p, 10).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempts, job.next_attempt_at), (JobState::Pending, 0, at(40)));
    assert!(store.dead_jobs(p).await.unwrap().is_empty());
}

async fn repeated_requests_do_not_reset_attempts_and_done_orders_refetch_only_when_asked<S: StateStore + EnrichStore>(store: S) {
    let p = project(&store, "shop").await;
    store.schedule_fetch(p, 10, "missing_items", at(0), false).await.unwrap();
    store.record_failure(p, 10, "timeout", Some(at(30))).await.unwrap();
    // Another request for the same order: still one job, its attempts kept, not due earlier
    // than its back-off unless the request is earlier.
    assert!(store.schedule_fetch(p, 10, "missing_items", at(40), false).await.unwrap());
    let job = store.job(p, 10).await.unwrap().unwrap();
    assert_eq!((job.attempts, job.next_attempt_at), (1, at(30)));

    store.store_items(&FetchedItems { project_id: p, order_id: 10, lines: vec![], marketing: None, fetched_at: at(31) }).await.unwrap();
    assert!(!store.schedule_fetch(p, 10, "missing_items", at(50), false).await.unwrap(), "done stays done");
    assert!(store.schedule_fetch(p, 10, "group_reached", at(50), true).await.unwrap(), "refetch asked");
    let job = store.job(p, 10).await.unwrap().unwrap();
    assert_eq!((job.state, job.reason.as_str(), job.next_attempt_at), (JobState::Pending, "group_reached", at(50)));

    store.record_failure(p, 10, "gone", None).await.unwrap();
    assert!(!store.schedule_fetch(p, 10, "group_reached", at(60), true).await.unwrap(), "dead stays dead until requeued");
}

async fn cursors_are_stored_replaced_and_removed_per_project<S: StateStore + EnrichStore>(store: S) {
    let p = project(&store, "shop").await;
    let other = project(&store, "other").await;
    assert_eq!(store.cursor(p, CursorName::Backfill).await.unwrap(), None);
    store.put_cursor(p, CursorName::Backfill, Some(r#"{"page":1}"#)).await.unwrap();
    store.put_cursor(p, CursorName::Backfill, Some(r#"{"page":2}"#)).await.unwrap();
    store.put_cursor(p, CursorName::Reconcile, Some(r#"{"until":5}"#)).await.unwrap();
    assert_eq!(store.cursor(p, CursorName::Backfill).await.unwrap().as_deref(), Some(r#"{"page":2}"#));
    assert_eq!(store.cursor(other, CursorName::Backfill).await.unwrap(), None);
    store.put_cursor(p, CursorName::Backfill, None).await.unwrap();
    assert_eq!(store.cursor(p, CursorName::Backfill).await.unwrap(), None);
    assert_eq!(store.cursor(p, CursorName::Reconcile).await.unwrap().as_deref(), Some(r#"{"until":5}"#));
}

// ---------------------------------------------------------------------------------------------
// The two adapters.
// ---------------------------------------------------------------------------------------------
