//! `keycrm-analytics migrate` against real databases: a SQLite file in a fresh data dir, and a
//! fresh PostgreSQL database made on the server in `DATABASE_URL` (for example
//! `postgres://postgres@127.0.0.1:5432/test`) and dropped afterwards.
//!
//! Without `DATABASE_URL` the PostgreSQL test says it was skipped and passes, except under
//! `CI=true`, where it fails: CI must test both dialects.

mod common;

use common::Workspace;
use common::postgres::{ScratchDatabase, postgres_server};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

#[test]
fn migrate_creates_state_db_in_a_fresh_data_dir_and_a_second_run_applies_nothing() {
    let ws = Workspace::new();
    let data_dir = ws.path("data/nested");
    let dir = data_dir.display().to_string();

    let first = ws.run(["--data-dir", &dir, "migrate"]);
    first.assert_success();
    assert!(data_dir.join("state.db").is_file(), "{first:#?}");
    assert!(
        first.stdout.contains("10 migration(s) applied (0001, 0002, 0003, 0004, 0005, 0006, 0007, 0008, 0009, 0010), 0 already in place"),
        "{first:#?}"
    );

    let second = ws.run(["--data-dir", &dir, "migrate"]);
    second.assert_success();
    assert!(second.stdout.contains("0 migration(s) applied"), "{second:#?}");
    assert!(second.stdout.contains("10 already in place"), "{second:#?}");
}

#[test]
fn migrate_refuses_a_database_url_of_an_unknown_kind() {
    Workspace::new().run(["migrate", "--database", "mysql://localhost/ksa"]).assert_failure_mentioning(&["mysql://localhost/ksa"]);
}

#[test]
fn migrate_applies_the_schema_to_a_fresh_postgres_database_once() {
    let Some(server) = postgres_server("migrate_applies_the_schema_to_a_fresh_postgres_database_once") else { return };
    let database = ScratchDatabase::create(&server, "migrate");
    let ws = Workspace::new();

    let first = ws.run(["migrate", "--database", &database.url]);
    first.assert_success();
    assert!(
        first.stdout.contains("10 migration(s) applied (0001, 0002, 0003, 0004, 0005, 0006, 0007, 0008, 0009, 0010), 0 already in place"),
        "{first:#?}"
    );
    let second = ws.run(["migrate", "--database", &database.url]);
    second.assert_success();
    assert!(second.stdout.contains("0 migration(s) applied"), "{second:#?}");
    assert!(second.stdout.contains("10 already in place"), "{second:#?}");
    assert!(!second.stderr.contains('\u{1b}'), "no terminal colour codes in logs that go to a pipe: {second:#?}");
    assert_eq!(scalar(&database.url, "SELECT count(*) FROM ksa_schema_migrations"), 10);
    assert!(!ws.path("data").exists(), "no SQLite file is made when a database is given");
}

#[test]
fn migrate_never_shows_a_database_password() {
    // The port is not a number, so the connection fails at once and the error names the URL.
    let url = "postgres://ksa:pw-in-userinfo@127.0.0.1:notaport/ksa?sslmode=disable&password=pw-in-query";
    let outcome = Workspace::new().run(["migrate", "--database", url]);
    outcome.assert_failure_mentioning(&["postgres://ksa:***@127.0.0.1:notaport/ksa?sslmode=disable&password=***"]);
    let said = format!("{}{}", outcome.stdout, outcome.stderr);
    assert!(!said.contains("pw-in-"), "a password was shown: {said}");
}

/// One number from the database at `url`.
fn scalar(url: &str, sql: &str) -> i64 {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a Tokio runtime");
    runtime.block_on(async {
        let mut connection = PgConnection::connect(url).await.unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
        let value = sqlx::query_scalar(AssertSqlSafe(sql.to_owned())).fetch_one(&mut connection).await;
        let _ = connection.close().await;
        value.unwrap_or_else(|e| panic!("{sql}: {e}"))
    })
}
