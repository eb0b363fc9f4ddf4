//! `keycrm-analytics migrate` against real databases: a SQLite file in a fresh data dir, and a
//! fresh PostgreSQL database made on the server in `DATABASE_URL` (for example
//! `postgres://postgres@127.0.0.1:5432/test`) and dropped afterwards.
//!
//! Without `DATABASE_URL` the PostgreSQL test says it was skipped and passes, except under
//! `CI=true`, where it fails: CI must test both dialects.

mod common;

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use common::Workspace;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

#[test]
fn migrate_creates_state_db_in_a_fresh_data_dir_and_a_second_run_applies_nothing() {
    let ws = Workspace::new();
    let data_dir = ws.path("data/nested");
    let dir = data_dir.display().to_string();

    let first = ws.run(["--data-dir", &dir, "migrate"]);
    first.assert_success();
    assert!(data_dir.join("state.db").is_file(), "{first:#?}");
    assert!(first.stdout.contains("2 migration(s) applied (0001, 0002), 0 already in place"), "{first:#?}");

    let second = ws.run(["--data-dir", &dir, "migrate"]);
    second.assert_success();
    assert!(second.stdout.contains("0 migration(s) applied"), "{second:#?}");
    assert!(second.stdout.contains("2 already in place"), "{second:#?}");
}

#[test]
fn migrate_refuses_a_database_url_of_an_unknown_kind() {
    Workspace::new().run(["migrate", "--database", "mysql://localhost/ksa"]).assert_failure_mentioning(&["mysql://localhost/ksa"]);
}

#[test]
fn migrate_applies_the_schema_to_a_fresh_postgres_database_once() {
    let Some(server) = postgres_server() else { return };
    let database = ScratchDatabase::create(&server);
    let ws = Workspace::new();

    let first = ws.run(["migrate", "--database", &database.url]);
    first.assert_success();
    assert!(first.stdout.contains("2 migration(s) applied (0001, 0002), 0 already in place"), "{first:#?}");
    let second = ws.run(["migrate", "--database", &database.url]);
    second.assert_success();
    assert!(second.stdout.contains("0 migration(s) applied"), "{second:#?}");
    assert!(second.stdout.contains("2 already in place"), "{second:#?}");
    assert!(!second.stderr.contains('\u{1b}'), "no terminal colour codes in logs that go to a pipe: {second:#?}");
    assert_eq!(database.scalar("SELECT count(*) FROM ksa_schema_migrations"), 2);
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

fn postgres_server() -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => panic!(
            "DATABASE_URL is not set, and CI=true requires the PostgreSQL tests to run: start \
             PostgreSQL with `eval \"$(scripts/services up)\"` before `cargo test`"
        ),
        _ => {
            // Straight to stderr, past the test harness's capture, so the skip is seen.
            let _ = writeln!(
                std::io::stderr(),
                "skipped migrate on PostgreSQL: DATABASE_URL is not set (`eval \"$(scripts/services up)\"` sets it)"
            );
            None
        }
    }
}

/// A database of its own on the test server, dropped when the test ends, even by a panic.
struct ScratchDatabase {
    server: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    fn create(server: &str) -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let name = format!("ksa_app_migrate_{}_{nanos}", std::process::id());
        admin(server, &format!("CREATE DATABASE \"{name}\""));
        let url = url_with_database(server, &name);
        ScratchDatabase { server: server.to_owned(), name, url }
    }

    fn scalar(&self, sql: &str) -> i64 {
        block_on(async {
            let mut connection = PgConnection::connect(&self.url).await.unwrap_or_else(|e| panic!("connecting to {}: {e}", self.name));
            let value = sqlx::query_scalar(AssertSqlSafe(sql.to_owned())).fetch_one(&mut connection).await;
            let _ = connection.close().await;
            value.unwrap_or_else(|e| panic!("{sql}: {e}"))
        })
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        admin(&self.server, &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name));
    }
}

/// Runs one statement on the server's own database.
fn admin(server: &str, sql: &str) {
    block_on(async {
        let mut connection = PgConnection::connect(server).await.unwrap_or_else(|e| panic!("cannot connect to DATABASE_URL: {e}"));
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned())).execute(&mut connection).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = connection.close().await;
    });
}

fn block_on<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a Tokio runtime").block_on(future)
}

/// `server` (a PostgreSQL URL) pointing at database `name` instead.
fn url_with_database(server: &str, name: &str) -> String {
    let (base, query) = server.split_at(server.find('?').unwrap_or(server.len()));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[authority_start..].find('/').map_or(base.len(), |i| authority_start + i);
    format!("{}/{name}{query}", &base[..authority_end])
}
