//! Replaying a webhook log into the real server: arrival order and repeats change nothing
//! (docs/architecture.md, invariant 3), and SIGTERM stops the server cleanly without losing work.

mod common;

use common::http::{client, wait_until_processed};
use common::server::Instance;
use common::webhook_log::{WebhookLog, assert_all_taken};

/// Posts `log` to a fresh `instance`, waits until it shows every event of `expected`, stops
/// the server with SIGTERM and returns the derived digest.
async fn digest_after_replaying(instance: Instance, log: &WebhookLog, expected: &WebhookLog, concurrency: usize) -> String {
    let project = instance.add_project("p1", &[]);
    let server = instance.start();
    let client = client();
    assert_all_taken(&log.post_all(&client, &server.webhook_url(&project), concurrency).await);
    wait_until_processed(&client, &server, "p1", expected.expected()).await;
    let said = server.stderr();
    let status = server.stop();
    assert!(status.success(), "SIGTERM should stop the server with success, got {status}; it said:\n{said}");
    instance.derived_digest("p1").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffled_log_with_extra_duplicates_gives_the_same_derived_state_as_the_log_in_order() {
    let ws = common::Workspace::new();
    let log = WebhookLog::simulate(&ws, "p1", 300);
    let shuffled = log.shuffled_with_duplicates(2024, 7);
    assert!(shuffled.len() > log.len());
    assert_ne!(shuffled.bodies, log.bodies);

    let in_order = digest_after_replaying(Instance::sqlite(), &log, &log, 1).await;
    let reordered = digest_after_replaying(Instance::sqlite(), &shuffled, &log, 16).await;
    assert_eq!(reordered, in_order, "the derived state depends on arrival order or on repeats");
}

/// `run` starts one processor per partition; orders are split between them by key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_partitions_derive_the_same_state_as_one() {
    let ws = common::Workspace::new();
    let log = WebhookLog::simulate(&ws, "p1", 300);
    let shuffled = log.shuffled_with_duplicates(99, 5);

    let one = digest_after_replaying(Instance::sqlite(), &log, &log, 8).await;
    let four = digest_after_replaying(Instance::sqlite().with_env("KSA__BUS__PARTITIONS", "4"), &shuffled, &log, 16).await;
    assert_eq!(four, one, "the derived state depends on the number of partitions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_server_cleanly_and_a_restart_keeps_everything_it_took() {
    let instance = Instance::sqlite();
    let project = instance.add_project("p1", &[]);
    let log = WebhookLog::simulate(&instance.ws, "p1", 120);
    let client = client();

    // Stopped right after the last answer: processing may still be under way.
    let server = instance.start();
    assert_all_taken(&log.post_all(&client, &server.webhook_url(&project), 8).await);
    let said = server.stderr();
    let status = server.stop();
    assert!(status.success(), "SIGTERM should stop the server with success, got {status}; it said:\n{said}");

    let server = instance.start();
    wait_until_processed(&client, &server, "p1", log.expected()).await;
    let again = log.post_all(&client, &server.webhook_url(&project), 8).await;
    let new: Vec<_> = again.iter().filter(|r| r.outcome() != "duplicate").collect();
    assert!(new.is_empty(), "after a restart, webhooks taken before are duplicates; got {} others, e.g. {:?}", new.len(), new.first());
    let said = server.stderr();
    let status = server.stop();
    assert!(status.success(), "SIGTERM should stop the server with success, got {status}; it said:\n{said}");
}
