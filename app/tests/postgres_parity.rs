//! The same webhook log through `run` on PostgreSQL (`KSA__DATABASE__URL`) and on the embedded
//! SQLite default gives the same derived state and the same read API answers.
//!
//! Needs `DATABASE_URL` (a server; a fresh database is made and dropped); see common/postgres.rs.

mod common;

use common::http::{client, list_all_orders, wait_until_processed};
use common::postgres::{ScratchDatabase, postgres_server};
use common::server::Instance;
use common::webhook_log::{WebhookLog, assert_all_taken};
use serde_json::Value;

/// Replays `log` into `instance` until it shows every event of `expected`; returns the read
/// API's orders at `as_of` and, after a SIGTERM, the derived digest.
async fn replay(instance: &Instance, log: &WebhookLog, expected: &WebhookLog, as_of: &str) -> (Vec<Value>, String) {
    let project = instance.add_project("p1", &[]);
    let server = instance.start();
    let client = client();
    assert_all_taken(&log.post_all(&client, &server.webhook_url(&project), 8).await);
    wait_until_processed(&client, &server, "p1", expected.expected()).await;
    let orders = list_all_orders(&client, &server, "p1", &format!("&as_of={as_of}")).await;
    assert!(server.stop().success());
    (orders, instance.derived_digest("p1").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_sqlite_derive_the_same_state_from_the_same_log() {
    let Some(server) = postgres_server("postgres_parity") else { return };
    let database = ScratchDatabase::create(&server, "parity");
    let sqlite = Instance::sqlite();
    let log = WebhookLog::simulate(&sqlite.ws, "p1", 300);
    // One instant for both, so open intervals are measured alike.
    let as_of = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();

    let (sqlite_orders, sqlite_digest) = replay(&sqlite, &log, &log, &as_of).await;
    let postgres = Instance::postgres(&database.url);
    let (postgres_orders, postgres_digest) = replay(&postgres, &log, &log, &as_of).await;

    assert!(!postgres.state_db().exists(), "with a PostgreSQL URL no SQLite file is made");
    assert_eq!(postgres_orders.len(), sqlite_orders.len());
    assert_eq!(postgres_orders, sqlite_orders, "the read API answers differently");
    assert_eq!(postgres_digest, sqlite_digest, "the derived state differs between PostgreSQL and SQLite");
}

/// With several partitions `run` commits from one processor per partition in parallel, which
/// PostgreSQL (unlike SQLite) really runs side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_with_four_parallel_processors_derives_the_same_state_as_sqlite() {
    let Some(server) = postgres_server("postgres_parity") else { return };
    let database = ScratchDatabase::create(&server, "partitions");
    let sqlite = Instance::sqlite();
    let log = WebhookLog::simulate(&sqlite.ws, "p1", 300);
    let shuffled = log.shuffled_with_duplicates(11, 5);
    let as_of = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();

    let (_, sqlite_digest) = replay(&sqlite, &log, &log, &as_of).await;
    let postgres = Instance::postgres(&database.url).with_env("KSA__BUS__PARTITIONS", "4");
    let (_, postgres_digest) = replay(&postgres, &shuffled, &log, &as_of).await;
    assert_eq!(postgres_digest, sqlite_digest, "four processors on PostgreSQL derive another state");
}
