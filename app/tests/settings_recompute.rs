//! A settings change (calendars, SLA grid) stored with `project settings` while `run` runs
//! recomputes the project's whole history (docs/domain.md, "Working calendars"), while webhooks
//! keep being accepted.

mod common;

use common::example;
use common::http::{client, list_all_orders, wait_until_processed};
use common::server::Instance;
use common::state_file::StateFile;
use common::webhook_log::{WebhookLog, assert_all_taken};
use serde_json::Value;

/// Group totals of every order whose working time is less than its wall time.
fn groups_off_the_clock(orders: &[Value]) -> usize {
    orders
        .iter()
        .flat_map(|order| order["groups"].as_object().into_iter().flat_map(|groups| groups.values()))
        .map(|total| match (total["working_seconds"].as_f64(), total["wall_seconds"].as_f64()) {
            (Some(working), Some(wall)) => working < wall,
            _ => panic!("a group total without working_seconds and wall_seconds: {total}"),
        })
        .filter(|off| *off)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_change_recomputes_the_stored_history_while_webhooks_keep_being_accepted() {
    let instance = Instance::sqlite();
    let project = instance.add_project("p1", &[]);
    let log = WebhookLog::simulate(&instance.ws, "p1", 300);
    let (first, rest) = log.bodies.split_at(log.len() * 2 / 3);
    let (first, rest) = (WebhookLog { bodies: first.to_vec() }, WebhookLog { bodies: rest.to_vec() });
    let client = client();
    let server = instance.start();
    let url = server.webhook_url(&project);

    assert_all_taken(&first.post_all(&client, &url, 8).await);
    wait_until_processed(&client, &server, "p1", first.expected()).await;
    let before = list_all_orders(&client, &server, "p1", "").await;
    assert_eq!(groups_off_the_clock(&before), 0, "the default calendar is 24/7: working time is wall time");

    // Mon–Fri 09:00–18:00 in Europe/Kyiv, with SLA limits, while the server runs.
    let settings = example("settings.json");
    let revision = instance.put_settings("p1", &settings);
    assert_all_taken(&rest.post_all(&client, &url, 8).await);
    wait_until_processed(&client, &server, "p1", log.expected()).await;
    wait_for_no_rows_older_than(&instance, revision).await;

    let after = list_all_orders(&client, &server, "p1", "").await;
    assert!(groups_off_the_clock(&after) > 0, "the read API still measures in 24/7 time");
    assert!(server.stop().success());
    let recomputed = instance.derived_digest("p1").await;

    let (with_old, _) = log.digest_of_a_clean_run(None).await;
    let (with_new, new_revision) = log.digest_of_a_clean_run(Some(&settings)).await;
    assert_eq!(new_revision, revision);
    assert_ne!(recomputed, with_old, "the stored derived rows did not change with the settings");
    assert_eq!(recomputed, with_new, "recomputed history differs from a run that had the new settings from the start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_changed_after_a_restart_recompute_history_without_waiting_for_a_webhook() {
    let (instance, log) = processed_and_stopped(120).await;
    let server = instance.start();
    // Changed while the restarted server runs, before any webhook reaches it.
    let revision = instance.put_settings("p1", &example("settings.json"));
    wait_for_no_rows_older_than(&instance, revision).await;
    assert!(server.stop().success());
    let (with_new, _) = log.digest_of_a_clean_run(Some(&example("settings.json"))).await;
    assert_eq!(instance.derived_digest("p1").await, with_new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_stored_while_the_server_was_stopped_are_applied_to_history_when_it_starts() {
    let (instance, log) = processed_and_stopped(120).await;
    let revision = instance.put_settings("p1", &example("settings.json"));
    let server = instance.start();
    wait_for_no_rows_older_than(&instance, revision).await;
    assert!(server.stop().success());
    let (with_new, _) = log.digest_of_a_clean_run(Some(&example("settings.json"))).await;
    assert_eq!(instance.derived_digest("p1").await, with_new);
}

/// An instance whose project `p1` received and processed a simulated log of `orders` orders,
/// with its server stopped again.
async fn processed_and_stopped(orders: u64) -> (Instance, WebhookLog) {
    let instance = Instance::sqlite();
    let project = instance.add_project("p1", &[]);
    let log = WebhookLog::simulate(&instance.ws, "p1", orders);
    let server = instance.start();
    let client = client();
    assert_all_taken(&log.post_all(&client, &server.webhook_url(&project), 8).await);
    wait_until_processed(&client, &server, "p1", log.expected()).await;
    assert!(server.stop().success());
    (instance, log)
}

/// Waits until no stored row of `p1` predates settings `revision`.
async fn wait_for_no_rows_older_than(instance: &Instance, revision: i64) {
    let mut state = StateFile::open(&instance.state_db()).await;
    state.wait_for_no_rows_older_than("p1", revision).await;
    state.close().await;
}
