//! Test support: every suite that needs PostgreSQL gets a database of its own on the server in
//! `DATABASE_URL`, dropped afterwards even when the test panics. Without `DATABASE_URL` a test
//! is skipped with a visible line, except under `CI=true`, where it fails. ClickHouse suites find
//! their server the same way, in `KSA_CLICKHOUSE_URL`.

pub mod facts;

use std::future::Future;
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// Generates `<behaviour>::on_sqlite` and `<behaviour>::on_postgres` for each behaviour: one
/// suite, both databases. The calling test crate defines `on_sqlite(behaviour)` and
/// `on_postgres(test_name, behaviour)`.
// `crate::` is the calling test crate on purpose: that is where its adapters are set up.
#[allow(clippy::crate_in_macro_def)]
#[macro_export]
macro_rules! on_both_databases {
    ($($behaviour:ident),* $(,)?) => {$(
        mod $behaviour {
            #[tokio::test]
            async fn on_sqlite() {
                crate::on_sqlite(super::$behaviour).await;
            }

            #[tokio::test]
            async fn on_postgres() {
                crate::on_postgres(stringify!($behaviour), super::$behaviour).await;
            }
        }
    )*};
}

/// The server to test against, or `None` (after saying so) when there is none outside CI.
pub fn postgres_server(test: &str) -> Option<String> {
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
                "skipped {test} on PostgreSQL: DATABASE_URL is not set (`eval \"$(scripts/services up)\"` sets it)"
            );
            None
        }
    }
}

/// The ClickHouse HTTP interface to test against (`KSA_CLICKHOUSE_URL`), or `None` (after saying
/// so) when it is not set outside CI. Under `CI=true` a missing URL fails the test, and so does,
/// always, a URL that does not answer: the suite then fails where it connects.
pub fn clickhouse_server(test: &str) -> Option<String> {
    match std::env::var("KSA_CLICKHOUSE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => panic!(
            "KSA_CLICKHOUSE_URL is not set, and CI=true requires the ClickHouse tests to run: start \
             ClickHouse with `eval \"$(scripts/services up)\"` before `cargo test`"
        ),
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "skipped {test} on ClickHouse: KSA_CLICKHOUSE_URL is not set (`eval \"$(scripts/services up)\"` sets it)"
            );
            None
        }
    }
}

/// The Kafka-protocol brokers to test against (`KSA_KAFKA_BROKERS`), or `None` (after saying so)
/// when it is not set outside CI; under `CI=true` a missing value fails the test.
pub fn kafka_brokers(test: &str) -> Option<String> {
    match std::env::var("KSA_KAFKA_BROKERS") {
        Ok(brokers) if !brokers.trim().is_empty() => Some(brokers),
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => panic!(
            "KSA_KAFKA_BROKERS is not set, and CI=true requires the Kafka tests to run: start a \
             broker with `eval \"$(scripts/services up)\"` before `cargo test`"
        ),
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "skipped {test} on Kafka: KSA_KAFKA_BROKERS is not set (`eval \"$(scripts/services up)\"` sets it)"
            );
            None
        }
    }
}

/// A database name no other test (or concurrent run) uses.
pub fn unique_database_name(test: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let test: String = test.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(28).collect();
    format!("ksa_t{}_{nanos}_{}_{test}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// `server` (a PostgreSQL URL) pointing at database `name` instead.
pub fn url_with_database(server: &str, name: &str) -> String {
    let (base, query) = server.split_at(server.find('?').unwrap_or(server.len()));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[authority_start..].find('/').map_or(base.len(), |i| authority_start + i);
    format!("{}/{name}{query}", &base[..authority_end])
}

/// A database created on the `DATABASE_URL` server; [`FreshDatabase::drop_database`] removes it.
pub struct FreshDatabase {
    pub name: String,
    /// The URL of the new database.
    pub url: String,
    admin: PgConnection,
}

impl FreshDatabase {
    /// Creates a database for `test`, or returns `None` when there is no server outside CI.
    pub async fn create(test: &str) -> Option<FreshDatabase> {
        let server = postgres_server(test)?;
        let admin_options: PgConnectOptions = server.parse().unwrap_or_else(|e| panic!("DATABASE_URL is not a PostgreSQL URL: {e}"));
        let mut admin = PgConnection::connect_with(&admin_options).await.unwrap_or_else(|e| panic!("cannot connect to DATABASE_URL: {e}"));
        let name = unique_database_name(test);
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        Some(FreshDatabase { url: url_with_database(&server, &name), name, admin })
    }

    /// Drops the database, closing whatever connections are still open to it.
    pub async fn drop_database(mut self) {
        sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name)))
            .execute(&mut self.admin)
            .await
            .unwrap_or_else(|e| panic!("cannot drop database {}: {e}", self.name));
    }
}

/// Runs `behaviour` with the URL of a fresh database and drops the database afterwards, also
/// when the behaviour panics (the panic is then resumed).
pub async fn with_postgres_database<F, Fut>(test: &str, behaviour: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(database) = FreshDatabase::create(test).await else { return };
    let outcome = tokio::spawn(behaviour(database.url.clone())).await;
    database.drop_database().await;
    if let Err(error) = outcome {
        match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(error) => panic!("{test} did not finish: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_point_at_the_new_database_and_keep_their_parameters() {
        assert_eq!(url_with_database("postgres://u@h:5432/test", "x"), "postgres://u@h:5432/x");
        assert_eq!(url_with_database("postgres://u@h/test?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
        assert_eq!(url_with_database("postgres://h", "x"), "postgres://h/x");
    }

    #[test]
    fn names_are_unique_and_safe_to_quote() {
        let a = unique_database_name("a test\"; DROP");
        assert_ne!(a, unique_database_name("a test\"; DROP"));
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{a}");
    }
}
