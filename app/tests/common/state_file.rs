//! Looking into an embedded instance's SQLite files from the side, as an operator with the
//! `sqlite3` shell would: what was written, and a write lock held on purpose.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
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

/// A connection to a server's `state.db`, used only to read, and to the bus file beside it
/// (`state-bus.db`) once that exists.
pub struct StateFile {
    connection: SqliteConnection,
    bus_file: PathBuf,
    bus: Option<SqliteConnection>,
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
        StateFile { connection: connect(path).await, bus_file: ksa_app::stores::bus_file(path), bus: None }
    }

    /// Rows of the outbox (in the bus file; none before it exists) and of the event log.
    pub async fn written_rows(&mut self) -> WrittenRows {
        let order_status_events =
            sqlx::query_scalar("SELECT count(*) FROM order_status_events").fetch_one(&mut self.connection).await.expect("counting events");
        if self.bus.is_none() && self.bus_file.is_file() {
            self.bus = Some(connect(&self.bus_file).await);
        }
        let (bus_log, bus_idempotency) = match &mut self.bus {
            Some(bus) => sqlx::query_as("SELECT (SELECT count(*) FROM bus_log), (SELECT count(*) FROM bus_idempotency)")
                .fetch_one(bus)
                .await
                .expect("counting the outbox's rows"),
            None => (0, 0),
        };
        WrittenRows { bus_log, bus_idempotency, order_status_events }
    }

    /// Rows left in the outbox tables of `state.db` itself (where an older version kept the
    /// embedded bus).
    pub async fn outbox_rows_in_the_state_database(&mut self) -> i64 {
        sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM bus_heads) + (SELECT count(*) FROM bus_log) + (SELECT count(*) FROM bus_idempotency)",
        )
        .fetch_one(&mut self.connection)
        .await
        .expect("counting the state database's outbox rows")
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
        if let Some(bus) = self.bus {
            let _ = bus.close().await;
        }
    }
}

/// SQLite's write lock on a server's file (`state.db`, or the bus file `state-bus.db`), taken
/// (`BEGIN IMMEDIATE`) and held by the test: every writer of that file waits for it, as it
/// would behind a long checkpoint or backup.
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
