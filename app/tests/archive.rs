//! Retention and archive (docs/operations.md): payloads of events changed longer ago than
//! `retention.payload_days` move to Parquet files by project and month and are cleared in the
//! state database, while recent ones stay; the figures do not move; `restore` puts a month back
//! exactly; an archive cut short after writing a month's file and run again neither loses nor
//! repeats a payload; bad input is named. On SQLite and PostgreSQL.

mod common;

use common::http::{Processed, client, post_webhook, wait_until_processed};
use common::postgres::{ScratchDatabase, postgres_server};
use common::server::Instance;
use common::status_change;

const DAYS: [(i64, i64); 5] = [(9001, 200), (9002, 199), (9003, 150), (9004, 149), (9005, 10)];

fn ago(days: i64) -> (String, String) {
    let at = chrono::Utc::now() - chrono::Duration::days(days);
    (at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(), at.format("%Y-%m").to_string())
}

async fn archive_then_restore(instance: Instance) {
    let instance = instance.with_env("KSA__RETENTION__PAYLOAD_DAYS", "30");
    let project = instance.add_project("shop", &[]);
    let server = instance.start();
    let http = client();
    for (order, days) in DAYS {
        post_webhook(&http, &server.webhook_url(&project), status_change(order, 1, 1, &ago(days).0)).await.assert_accepted_as("accepted");
    }
    wait_until_processed(&http, &server, "shop", Processed { orders: 5, events: 5 }).await;
    server.stop();
    let figures = instance.derived_digest("shop").await;
    let stored = instance.stored_payloads("shop").await;
    assert_eq!(stored.len(), 5);
    let months: std::collections::BTreeSet<String> = DAYS[..4].iter().map(|(_, days)| ago(*days).1).collect();

    let dry = common::run(&mut instance.command(["archive", "--dry-run"]));
    dry.assert_success();
    assert!(dry.stdout.contains(&format!("dry run: 4 payload(s) in {} month(s)", months.len())), "{dry:#?}");
    assert_eq!(instance.stored_payloads("shop").await, stored, "a dry run changes nothing");

    let archived = common::run(&mut instance.command(["archive"]));
    archived.assert_success();
    assert!(archived.stdout.contains(&format!("4 payload(s) in {} month(s) moved", months.len())), "{archived:#?}");
    let left = instance.stored_payloads("shop").await;
    assert_eq!(left.keys().map(|k| k.0).collect::<Vec<_>>(), vec![9005], "only the recent payload stays");
    for month in &months {
        assert!(instance.data_dir().join(format!("archive/payloads/shop/{month}.parquet")).exists(), "{month}");
    }
    assert_eq!(instance.derived_digest("shop").await, figures, "the figures do not move");
    let again = common::run(&mut instance.command(["archive"]));
    assert!(again.stdout.contains("0 payload(s) in 0 month(s) moved"), "nothing left to move: {again:#?}");

    // Cut short after a month's file was written and before the database was cleared: the
    // payloads are in both places. Restoring the month leaves exactly that.
    let first = months.iter().next().unwrap().clone();
    let restored = common::run(&mut instance.command(["restore", "--project", "shop", "--month", &first]));
    restored.assert_success();
    let in_file = restored.stdout.split_whitespace().nth(3).unwrap().to_owned();
    let rerun = common::run(&mut instance.command(["archive"]));
    rerun.assert_success();
    let restored = common::run(&mut instance.command(["restore", "--project", "shop", "--month", &first]));
    assert!(restored.stdout.contains(&format!("of {in_file} in")), "the rerun repeated nothing in the file: {restored:#?}");
    for month in &months {
        common::run(&mut instance.command(["restore", "--project", "shop", "--month", month])).assert_success();
    }
    assert_eq!(instance.stored_payloads("shop").await, stored, "archive then restore gives back every payload as it was");
    assert_eq!(instance.derived_digest("shop").await, figures);

    common::run(&mut instance.command(["restore", "--project", "shop", "--month", "2025-13"]))
        .assert_failure_mentioning(&["--month", "YYYY-MM"]);
    common::run(&mut instance.command(["restore", "--project", "shop", "--month", "2001-01"]))
        .assert_failure_mentioning(&["no archive", "2001-01"]);
    common::run(&mut instance.command(["restore", "--project", "nope", "--month", &first]))
        .assert_failure_mentioning(&["no project `nope`"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_past_their_days_move_to_the_archive_and_back_on_sqlite() {
    archive_then_restore(Instance::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_past_their_days_move_to_the_archive_and_back_on_postgres() {
    let Some(server) = postgres_server("archive") else { return };
    let database = ScratchDatabase::create(&server, "archive");
    archive_then_restore(Instance::postgres(&database.url)).await;
}
