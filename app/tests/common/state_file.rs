//! Looking into an embedded instance's SQLite file from the side, as an operator with the
//! `sqlite3` shell would: what was written, and a write lock held on purpose.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection};

use super::http::PROCESSING_DEADLINE;
use super::webhook_log::EventKey;

/// Rows of the tables a webhook writes to: the outbox and the event log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrittenRows {
    pub bus_log: i64,
    pub bus_idempotency: i64,
    pub order_status_events: i64,
}

/// A connection to a server's `state.db`, used only to read.
pub struct StateFile {
    connection: SqliteConnection,
}

async fn connect(path: &Path) -> SqliteConnection {
    SqliteConnectOptions::new()
        .filename(path)
        .busy_timeout(Duration::from_secs(30))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
}

impl StateFile {
    pub async fn open(path: &Path) -> StateFile {
        StateFile { connection: connect(path).await }
    }

    pub async fn written_rows(&mut self) -> WrittenRows {
        let (bus_log, bus_idempotency, order_status_events) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM bus_log), (SELECT count(*) FROM bus_idempotency), (SELECT count(*) FROM order_status_events)",
        )
        .fetch_one(&mut self.connection)
        .await
        .expect("counting rows");
        WrittenRows { bus_log, bus_idempotency, order_status_events }
    }

    /// The dedup keys of the project's stored status events.
    pub async fn event_keys(&mut self, slug: &str) -> BTreeSet<EventKey> {
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT order_id, status_changed_at, status_id FROM order_status_events \
             WHERE project_id = (SELECT id FROM projects WHERE slug = ?)",
        )
        .bind(slug)
        .fetch_all(&mut self.connection)
        .await
        .expect("reading order_status_events");
        rows.into_iter().map(|(order_id, changed_at_micros, status_id)| EventKey { order_id, changed_at_micros, status_id }).collect()
    }

    /// Derived rows of the project not yet at `revision` of its settings.
    pub async fn orders_below_revision(&mut self, slug: &str, revision: i64) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM orders_current \
             WHERE project_id = (SELECT id FROM projects WHERE slug = ?) AND settings_revision < ?",
        )
        .bind(slug)
        .bind(revision)
        .fetch_one(&mut self.connection)
        .await
        .expect("reading orders_current")
    }

    /// Polls `orders_current` until no row of the project was derived with settings older
    /// than `revision`; fails the test after [`PROCESSING_DEADLINE`].
    pub async fn wait_for_no_rows_older_than(&mut self, slug: &str, revision: i64) {
        let deadline = Instant::now() + PROCESSING_DEADLINE;
        loop {
            let stale = self.orders_below_revision(slug, revision).await;
            if stale == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{stale} orders of `{slug}` still derived with settings older than revision {revision} after {PROCESSING_DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn close(self) {
        let _ = self.connection.close().await;
    }
}

/// SQLite's write lock on `state.db`, taken (`BEGIN IMMEDIATE`) and held by the test: every
/// writer of the server waits for it, as it would behind a long checkpoint or backup.
pub struct WriteLock {
    connection: SqliteConnection,
}

impl WriteLock {
    pub async fn take(path: &Path) -> WriteLock {
        let mut connection = connect(path).await;
        sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut connection).await.expect("taking the write lock");
        WriteLock { connection }
    }

    pub async fn release(mut self) {
        sqlx::raw_sql("COMMIT").execute(&mut self.connection).await.expect("releasing the write lock");
        let _ = self.connection.close().await;
    }
}
