//! The outbox of embedded mode: a SQLite file of its own beside the state database
//! ([`SqliteOutbox::open`]), or tables of the state database itself ([`SqliteOutbox::start`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ksa_schemas::Timestamp;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, QueryBuilder, Sqlite, SqliteConnection, SqlitePool};

use super::batch::{Batch, Claim, LogRow};
use super::{Core, DELETES_PER_STATEMENT, Store, delete_in_steps, outbox_handle};
use crate::{AppendOutcome, BusError, OutboxConfig, Record};

/// Idempotency keys per INSERT: 2 bind variables each, well under SQLite's 32766.
const CLAIMS_PER_STATEMENT: usize = 2000;
/// Records per INSERT into `bus_log`: 5 bind variables each.
const ROWS_PER_STATEMENT: usize = 1000;

/// How long a writer of the bus file waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections of the bus file's reading pool: the processors', the live feed's and the
/// checkpoints'. The group-commit writer has one of its own.
const MAX_CONNECTIONS: u32 = 4;

/// Page cache per connection of the bus file, in KiB: appends touch the tail of `bus_log` and
/// the idempotency keys, reads the records just appended.
const CACHE_KIB: i64 = 16 * 1024;

/// WAL pages after which a commit checkpoints (SQLite's default is 1,000): in larger runs the
/// tail pages of `bus_log` are written to the database once per run, not once per few commits.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 16_384;

/// The WAL is truncated back to this size after a checkpoint.
const WAL_SIZE_LIMIT_BYTES: u64 = 64 * 1024 * 1024;

/// How often a task of its own checkpoints the bus file, so that the group-commit writer (what
/// each webhook's answer waits for) never stops for a checkpoint; its `wal_autocheckpoint` above
/// is the backstop. Often, so that each checkpoint copies little: a checkpoint ends with a flush
/// of the bus file, and a second's worth of a burst's pages flushed at once made the writer's own
/// flushes wait behind it, tens of milliseconds about once a second. Every 50 ms took the
/// answers over 50 ms from 0.7 % to 0.2 % of a burst (BENCHMARKS.md); with nothing appended a
/// checkpoint finds nothing to copy and costs a few microseconds.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);

/// The bus of embedded mode, in SQLite.
///
/// SQLite here is embedded: one process owns the database file, so in-process signals are
/// enough to wake waiting readers — an append by another process would only be seen when a
/// read's wait runs out.
///
/// [`SqliteOutbox::open`] keeps the bus in a file of its own, which is what `run` does: the
/// processor's commits to the state database and ingest's group commits then never wait for
/// each other. [`SqliteOutbox::start`] keeps it in the state database's own tables (an
/// in-memory database has no second file); given the store's write gate
/// ([`SqliteOutbox::start_with_gate`]) the two writers take turns in arrival order before
/// either asks SQLite for its write lock, otherwise each transaction takes the lock at its start
/// (`BEGIN IMMEDIATE`) and the pool's `busy_timeout` makes the loser retry.
///
/// Every commit of the outbox is flushed to disk (`synchronous = FULL`): an append is durable
/// when it is answered.
#[derive(Clone)]
pub struct SqliteOutbox {
    core: Core<SqliteStore>,
}

/// What [`SqliteOutbox::open`] found and did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BusFileOpened {
    /// Records moved from the state database's own outbox tables (an older data folder).
    pub moved_records: u64,
    /// Idempotency keys moved with them.
    pub moved_keys: u64,
}

impl SqliteOutbox {
    /// Opens (creating and migrating if needed) the bus file at `file` and starts the outbox on
    /// it. When `state` (the state database, already migrated) still holds outbox records of an
    /// older version, which kept the bus in its tables, they move into the bus file first, with
    /// their offsets, heads and idempotency keys, so that consumers resume where they stood.
    pub async fn open(
        file: &Path,
        state: Option<&SqlitePool>,
        topics: &[&str],
        config: OutboxConfig,
    ) -> Result<(Self, BusFileOpened), BusError> {
        let unavailable =
            |what: &str, error: &dyn std::fmt::Display| BusError::Unavailable(format!("{what} `{}`: {error}", file.display()));
        if let Some(dir) = file.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|error| unavailable("cannot create the folder of the bus file", &error))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(file)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .pragma("cache_size", format!("-{CACHE_KIB}"))
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string())
            .pragma("journal_size_limit", WAL_SIZE_LIMIT_BYTES.to_string());
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options.clone())
            .await
            .map_err(|error| unavailable("cannot open the bus file", &error))?;
        ksa_migrations::migrate_sqlite_bus(&pool).await.map_err(|error| unavailable("cannot migrate the bus file", &error))?;
        let opened = match state {
            Some(state) => move_older_records(&options, state)
                .await
                .map_err(|error| unavailable("cannot move the outbox records of the state database into the bus file", &error))?,
            None => BusFileOpened::default(),
        };
        // The group-commit writer's own connection, opened here and kept open: its page cache
        // stays warm, it never waits for a connection a reader holds, and its thread is started
        // by the caller's, whatever threads the readers run on (`run` lowers the priority of the
        // processors', see `ksa_app::background`).
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await
            .map_err(|error| unavailable("cannot open the bus file", &error))?;
        let outbox = Self::start_on(SqliteStore { pool: pool.clone(), writer, gate: WriteGate::default() }, topics, config).await?;
        let checkpoints = checkpoint_in_background(pool, CHECKPOINT_EVERY);
        let mut stop = outbox.core.stop_signal();
        tokio::spawn(async move {
            // Shutdown, or the last handle dropped.
            let _ = stop.wait_for(|stopped| *stopped).await;
            checkpoints.abort();
        });
        Ok((outbox, opened))
    }

    /// Starts the outbox on `pool` (the state database, already migrated) for `topics`, and
    /// spawns its group-commit writer; must be called inside a Tokio runtime.
    pub async fn start(pool: SqlitePool, topics: &[&str], config: OutboxConfig) -> Result<Self, BusError> {
        Self::start_with_gate(pool, WriteGate::default(), topics, config).await
    }

    /// Like [`SqliteOutbox::start`], taking `gate` before each write transaction: pass the
    /// state store's gate for the same database file, so that one writer waits for the other
    /// without sleeping.
    pub async fn start_with_gate(pool: SqlitePool, gate: WriteGate, topics: &[&str], config: OutboxConfig) -> Result<Self, BusError> {
        Self::start_on(SqliteStore { writer: pool.clone(), pool, gate }, topics, config).await
    }

    async fn start_on(store: SqliteStore, topics: &[&str], config: OutboxConfig) -> Result<Self, BusError> {
        sqlx::query("SELECT 1 FROM bus_heads, bus_log, bus_idempotency LIMIT 0")
            .execute(&store.pool)
            .await
            .map_err(|error| BusError::Unavailable(format!("the outbox tables cannot be read (are the migrations applied?): {error}")))?;
        Ok(SqliteOutbox { core: Core::start(store, topics, &config)? })
    }
}

outbox_handle!(SqliteOutbox);

/// Writers to one SQLite file in this process queue here, first come first served, before
/// they begin a write transaction.
pub type WriteGate = Arc<tokio::sync::Mutex<()>>;

pub(crate) struct SqliteStore {
    /// Reads.
    pool: SqlitePool,
    /// Writes: the group commits and retention's deletes (the same pool when the bus lives in
    /// the state database).
    writer: SqlitePool,
    gate: WriteGate,
}

impl Store for SqliteStore {
    async fn commit(&self, batch: &Batch) -> Result<Vec<Vec<AppendOutcome>>, sqlx::Error> {
        let _turn = self.gate.lock().await;
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        match write(&mut tx, batch).await {
            Ok(outcomes) => {
                tx.commit().await?;
                Ok(outcomes)
            }
            Err(error) => {
                // Dropping would roll back too; this just does it before the next use.
                let _ = tx.rollback().await;
                Err(error)
            }
        }
    }

    async fn read(&self, topic: &str, partition: u32, after: i64, limit: i64) -> Result<Vec<Record>, sqlx::Error> {
        let rows: Vec<(i64, String, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT record_offset, record_key, payload, appended_at FROM bus_log \
             WHERE topic = ? AND partition_no = ? AND record_offset > ? \
             ORDER BY record_offset LIMIT ?",
        )
        .bind(topic)
        .bind(i64::from(partition))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(offset, key, payload, appended_at)| Record {
                partition,
                offset,
                key,
                payload,
                appended_at: Timestamp::from_micros(appended_at),
            })
            .collect())
    }

    async fn end_offset(&self, topic: &str, partition: u32) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT COALESCE(MAX(record_offset), -1) FROM bus_log WHERE topic = ? AND partition_no = ?")
            .bind(topic)
            .bind(i64::from(partition))
            .fetch_one(&self.pool)
            .await
    }

    async fn forget_keys(&self, topic: &str, appended_before: Timestamp) -> Result<u64, sqlx::Error> {
        delete_in_steps(|| async {
            let _turn = self.gate.lock().await;
            let done = sqlx::query(
                "DELETE FROM bus_idempotency WHERE (topic, idempotency_key) IN ( \
                     SELECT topic, idempotency_key FROM bus_idempotency WHERE topic = ?1 AND appended_at < ?2 LIMIT ?3)",
            )
            .bind(topic)
            .bind(appended_before.as_micros())
            .bind(DELETES_PER_STATEMENT)
            .execute(&self.writer)
            .await?;
            Ok(done.rows_affected())
        })
        .await
    }

    /// In steps of the oldest records (see [`delete_in_steps`]), each at the writers' gate, so
    /// appends never wait long.
    async fn truncate(&self, topic: &str, partition: u32, through: i64, appended_before: Timestamp) -> Result<u64, sqlx::Error> {
        delete_in_steps(|| async {
            let _turn = self.gate.lock().await;
            let done = sqlx::query(
                "DELETE FROM bus_log WHERE topic = ?1 AND partition_no = ?2 AND appended_at < ?4 AND record_offset IN ( \
                     SELECT record_offset FROM bus_log \
                     WHERE topic = ?1 AND partition_no = ?2 AND record_offset <= ?3 \
                     ORDER BY record_offset LIMIT ?5)",
            )
            .bind(topic)
            .bind(i64::from(partition))
            .bind(through)
            .bind(appended_before.as_micros())
            .bind(DELETES_PER_STATEMENT)
            .execute(&self.writer)
            .await?;
            Ok(done.rows_affected())
        })
        .await
    }
}

/// Checkpoints the WAL of the database behind `pool` every `every` from a task of its own, with
/// `PRAGMA wal_checkpoint(PASSIVE)`, which neither waits for writers nor makes them wait: the
/// connection that commits (the group-commit writer each webhook's answer waits for) does not stop to
/// copy the WAL into the database itself, and its `wal_autocheckpoint` is only a backstop.
/// The task ends once the pool is closed (or with the runtime).
fn checkpoint_in_background(pool: SqlitePool, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if pool.is_closed() {
                return;
            }
            // A failed checkpoint loses nothing: the WAL keeps every frame, and the next try or
            // a commit's own checkpoint copies it.
            if let Err(sqlx::Error::PoolClosed) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
                return;
            }
        }
    })
}

/// Moves the outbox rows an older version kept in the state database into the bus file (one
/// transaction there), then deletes them from the state database. Interrupted after the first
/// step, the next start finds the bus file's rows and only deletes: nothing is appended to the
/// bus file before this has run, so rows there mean the move was done.
async fn move_older_records(options: &SqliteConnectOptions, state: &SqlitePool) -> Result<BusFileOpened, sqlx::Error> {
    let left: (i64, i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM bus_heads), (SELECT count(*) FROM bus_log), (SELECT count(*) FROM bus_idempotency)")
            .fetch_one(state)
            .await?;
    if left == (0, 0, 0) {
        return Ok(BusFileOpened::default());
    }
    let mut conn = SqliteConnection::connect_with(options).await?;
    let here: i64 =
        sqlx::query_scalar("SELECT (SELECT count(*) FROM bus_heads) + (SELECT count(*) FROM bus_idempotency)").fetch_one(&mut conn).await?;
    let mut opened = BusFileOpened::default();
    if here == 0 {
        let state_file = state.connect_options().get_filename().to_string_lossy().into_owned();
        sqlx::query("ATTACH DATABASE ? AS older").bind(&state_file).execute(&mut conn).await?;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO bus_heads (topic, partition_no, next_offset) SELECT topic, partition_no, next_offset FROM older.bus_heads",
        )
        .execute(&mut *tx)
        .await?;
        opened.moved_records = sqlx::query(
            "INSERT INTO bus_log (topic, partition_no, record_offset, record_key, payload, appended_at) \
             SELECT topic, partition_no, record_offset, record_key, payload, appended_at FROM older.bus_log \
             ORDER BY topic, partition_no, record_offset",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        opened.moved_keys = sqlx::query(
            "INSERT INTO bus_idempotency (topic, idempotency_key, appended_at) \
             SELECT topic, idempotency_key, appended_at FROM older.bus_idempotency",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        sqlx::query("DETACH DATABASE older").execute(&mut conn).await?;
    }
    conn.close().await?;
    let mut tx = state.begin_with("BEGIN IMMEDIATE").await?;
    for statement in ["DELETE FROM bus_log", "DELETE FROM bus_idempotency", "DELETE FROM bus_heads"] {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(opened)
}

/// The batch's statements, inside its transaction.
async fn write(conn: &mut SqliteConnection, batch: &Batch) -> Result<Vec<Vec<AppendOutcome>>, sqlx::Error> {
    let claims = batch.claims();
    let fresh = claim(conn, &claims).await?;
    let admission = batch.admit(&claims, fresh);
    let mut heads = Vec::with_capacity(admission.advances().len());
    for advance in admission.advances() {
        let head: i64 = sqlx::query_scalar(
            "INSERT INTO bus_heads (topic, partition_no, next_offset) VALUES (?, ?, ?) \
             ON CONFLICT (topic, partition_no) DO UPDATE SET next_offset = bus_heads.next_offset + excluded.next_offset \
             RETURNING next_offset",
        )
        .bind(advance.topic)
        .bind(i64::from(advance.partition))
        .bind(advance.count)
        .fetch_one(&mut *conn)
        .await?;
        heads.push(head);
    }
    let placement = admission.place(&heads);
    insert_rows(conn, &placement.rows).await?;
    Ok(placement.outcomes)
}

/// Inserts the idempotency keys; `fresh[i]` tells whether `claims[i]` was new.
async fn claim(conn: &mut SqliteConnection, claims: &[Claim<'_>]) -> Result<Vec<bool>, sqlx::Error> {
    let mut fresh = vec![false; claims.len()];
    for chunk in claims.chunks(CLAIMS_PER_STATEMENT) {
        let mut insert = QueryBuilder::<Sqlite>::new("INSERT INTO bus_idempotency (topic, idempotency_key) ");
        insert.push_values(chunk, |mut row, (topic, key)| {
            row.push_bind(*topic).push_bind(*key);
        });
        insert.push(" ON CONFLICT DO NOTHING RETURNING topic, idempotency_key");
        let inserted: Vec<(String, String)> = insert.build_query_as().fetch_all(&mut *conn).await?;
        for (topic, key) in &inserted {
            if let Ok(index) = claims.binary_search(&(topic.as_str(), key.as_str())) {
                fresh[index] = true;
            }
        }
    }
    Ok(fresh)
}

async fn insert_rows(conn: &mut SqliteConnection, rows: &[LogRow<'_>]) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut insert = QueryBuilder::<Sqlite>::new("INSERT INTO bus_log (topic, partition_no, record_offset, record_key, payload) ");
        insert.push_values(chunk, |mut values, row| {
            values.push_bind(row.topic).push_bind(i64::from(row.partition)).push_bind(row.offset).push_bind(row.key).push_bind(row.payload);
        });
        insert.build().execute(&mut *conn).await?;
    }
    Ok(())
}
