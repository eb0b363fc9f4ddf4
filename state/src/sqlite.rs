//! The SQLite adapter (embedded mode): the state database is one file in the data folder; the
//! bus outbox keeps a file of its own beside it (or, in memory, shares this pool and its write
//! gate).
//!
//! Every write transaction takes SQLite's write lock when it begins (`BEGIN IMMEDIATE`), so it
//! waits for another writer (up to [`BUSY_TIMEOUT`]) rather than failing half-way when its
//! first write finds the database changed. Batches go in as multi-row statements of at most
//! [`MAX_ROWS`] rows; [`Repeated`] explains their sizes.
//!
//! The processor's commits run on a connection of their own with `synchronous = NORMAL`: in WAL
//! mode such a commit is not flushed to disk by itself, only by the next flushed commit or
//! checkpoint, so a power loss may take back the last commits, never half of one. The event log,
//! derived rows and consumer offsets of a lost commit go together, and the processor reads the same
//! events again from its offsets (docs/architecture.md, invariant 4). Everything else, the bus
//! outbox included (in its own file), keeps `synchronous = FULL`: what ingest acknowledges is on disk.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ksa_schemas::derived::{ConsumerOffset, CycleRow, DerivedOrder, StoredEvent};
use ksa_schemas::{StatusEvent, Timestamp};
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqliteConnection, SqlitePool};

use crate::access_cache::{self, AccessWatch};
use crate::batch::{self, CommitPlan};
use crate::columns;
use crate::sql::{self, Db, SqlStore};
use crate::{CommitBatch, HotPath, StateError};

/// How long a writer waits for another one to finish.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections of a pool made by [`SqliteState::open`]: readers run side by side (WAL), writers
/// one at a time.
const MAX_CONNECTIONS: u32 = 8;

/// Page cache per connection, in KiB (SQLite's default is 2 MiB).
const CACHE_KIB: i64 = 32 * 1024;

/// Page cache of the processor's committing connection, in KiB: its writes land all over the
/// order tables and indexes, and each page it keeps is one it need not read back.
const COMMITTER_CACHE_KIB: i64 = 256 * 1024;

/// WAL pages after which a commit checkpoints them into the database (SQLite's default is
/// 1,000, 4 MiB): checkpointing in larger runs writes each hot page once per run instead of
/// once per few commits (measured: +10 % processor throughput over 1M events).
const WAL_AUTOCHECKPOINT_PAGES: u32 = 65_536;

/// The WAL file is truncated back to this size after a checkpoint. It is above what one run
/// between checkpoints leaves ([`WAL_AUTOCHECKPOINT_PAGES`] and the frames of the commit that
/// passed them: 334 MB under the replay benchmark's batches), so each run writes its frames over the
/// blocks the file already has instead of extending it again: extending cost the committing
/// connection a block allocation and the zeroing of every partly written page (measured: +11 %
/// processor throughput over truncating to 64 MiB). The last connection to close deletes it.
const WAL_SIZE_LIMIT_BYTES: u64 = 512 * 1024 * 1024;

/// Prepared statements kept per connection: the batch statements come in up to 11 sizes each
/// (see [`Repeated`]), about a hundred texts in all.
const STATEMENT_CACHE: usize = 256;

/// Rows a query hands over from SQLite's worker thread at a time (sqlx's default is 50): reads
/// of a batch's events return thousands.
const ROW_BUFFER: usize = 1024;

/// The most rows one statement writes or names. A power of two; 1024 rows of the widest
/// statement (16 columns) bind 16,384 values, half of SQLite's limit of 32,766.
const MAX_ROWS: usize = 1024;

/// The instant of "now" as the schema's defaults write it: microseconds, to the millisecond.
macro_rules! now_micros {
    () => {
        "CAST(ROUND(unixepoch('subsec') * 1000) AS INTEGER) * 1000"
    };
}

// --- SQL ------------------------------------------------------------------------------------

static SELECT_EVENTS: Repeated = Repeated::list(
    "SELECT order_id, status_id, status_group_id, status_changed_at AS changed_micros, order_created_at AS created_micros, \
     source FROM order_status_events WHERE project_id = ? AND order_id IN (",
    ")",
);

static INSERT_EVENTS: Repeated = Repeated::rows(
    "INSERT INTO order_status_events (project_id, order_id, status_id, status_group_id, status_changed_at, \
     order_created_at, received_at, source, payload) VALUES ",
    9,
    " ON CONFLICT (project_id, order_id, status_changed_at, status_id) DO NOTHING",
);

/// Writes a row only over one of a lower or equal version, and names the rows it wrote.
static UPSERT_ORDERS: Repeated = Repeated::rows(
    "INSERT INTO orders_current (project_id, order_id, current_status_id, last_status_group_id, last_changed_at, \
     started_at, untracked_seconds, delivery_entered_at, cycle_duration_to_delivery, closed_at, cycle_rule_id_applied, \
     urgency, sla_state, event_count, settings_revision, derived_json) VALUES ",
    16,
    concat!(
        " ON CONFLICT (project_id, order_id) DO UPDATE SET current_status_id = excluded.current_status_id, \
         last_status_group_id = excluded.last_status_group_id, last_changed_at = excluded.last_changed_at, \
         started_at = excluded.started_at, untracked_seconds = excluded.untracked_seconds, \
         delivery_entered_at = excluded.delivery_entered_at, \
         cycle_duration_to_delivery = excluded.cycle_duration_to_delivery, closed_at = excluded.closed_at, \
         cycle_rule_id_applied = excluded.cycle_rule_id_applied, urgency = excluded.urgency, \
         sla_state = excluded.sla_state, event_count = excluded.event_count, \
         settings_revision = excluded.settings_revision, derived_json = excluded.derived_json, updated_at = ",
        now_micros!(),
        " WHERE excluded.settings_revision > orders_current.settings_revision \
         OR (excluded.settings_revision = orders_current.settings_revision \
         AND excluded.event_count >= orders_current.event_count) \
         RETURNING project_id, order_id"
    ),
);

static DELETE_CYCLES: Repeated = Repeated::list("DELETE FROM order_cycle_metrics WHERE project_id = ? AND order_id IN (", ")");

static INSERT_CYCLES: Repeated = Repeated::rows(
    "INSERT INTO order_cycle_metrics (project_id, order_id, cycle_id, started_at, ended_at, wall_seconds, \
     working_seconds, is_open) VALUES ",
    8,
    "",
);

static UPSERT_OFFSETS: Repeated = Repeated::rows(
    "INSERT INTO consumer_offsets (consumer_group, topic, partition_no, next_offset) VALUES ",
    4,
    concat!(
        " ON CONFLICT (consumer_group, topic, partition_no) DO UPDATE SET next_offset = excluded.next_offset, updated_at = ",
        now_micros!()
    ),
);

// --- the store ------------------------------------------------------------------------------

/// The state in a SQLite database.
#[derive(Clone, Debug)]
pub struct SqliteState {
    pool: SqlitePool,
    /// Where [`StateStore::commit`] runs: one connection with `synchronous = NORMAL` (see the
    /// module's documentation), or `pool` itself for a store made [`SqliteState::from_pool`].
    committer: SqlitePool,
    /// Taken before every write transaction of this store, and by the bus outbox on the same
    /// file ([`SqliteState::write_gate`]): writers queue in order instead of sleeping in
    /// SQLite's busy handler, and the page cache of a connection is not reset by a commit it
    /// raced.
    gate: WriteGate,
    /// The same pool and gate, for the statements written once for both databases.
    db: Db,
    /// The database file; `None` in memory or for a store made [`SqliteState::from_pool`].
    file: Option<PathBuf>,
}

/// Writers to one SQLite file in this process queue here, first come first served.
pub type WriteGate = Arc<tokio::sync::Mutex<()>>;

impl SqliteState {
    /// Opens the database at a path or `sqlite:` URL, creating the file and its folders, in
    /// WAL mode with foreign keys enforced, and brings its schema up to date.
    ///
    /// An in-memory database (`sqlite::memory:`, for tests) lives as long as the store: its
    /// connections are kept open, and commits share them.
    pub async fn open(path_or_url: &str) -> Result<Self, StateError> {
        if path_or_url.trim().is_empty() {
            return Err(sqlx::Error::Configuration("the SQLite database path is empty".into()).into());
        }
        let in_memory = path_or_url.contains(":memory:") || path_or_url.contains("mode=memory");
        let options = if path_or_url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(path_or_url)?
        } else {
            SqliteConnectOptions::new().filename(path_or_url)
        };
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .pragma("cache_size", format!("-{CACHE_KIB}"))
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string())
            .pragma("journal_size_limit", WAL_SIZE_LIMIT_BYTES.to_string())
            .statement_cache_capacity(STATEMENT_CACHE)
            .row_buffer_size(ROW_BUFFER);
        if !in_memory {
            create_parent_dir(options.get_filename())?;
        }
        let mut pool_options = SqlitePoolOptions::new().max_connections(MAX_CONNECTIONS);
        if in_memory {
            pool_options = pool_options.min_connections(1).idle_timeout(None).max_lifetime(None);
        }
        let pool = pool_options.connect_with(options.clone().synchronous(SqliteSynchronous::Full)).await?;
        ksa_migrations::migrate_sqlite(&pool).await?;
        let file = (!in_memory).then(|| options.get_filename().to_path_buf());
        let committer = if in_memory {
            pool.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(1)
                .connect_lazy_with(options.synchronous(SqliteSynchronous::Normal).pragma("cache_size", format!("-{COMMITTER_CACHE_KIB}")))
        };
        let gate = WriteGate::default();
        Ok(SqliteState {
            db: Db::Sqlite { pool: pool.clone(), gate: gate.clone(), access: Default::default() },
            pool,
            committer,
            gate,
            file,
        })
    }

    /// A store over a pool whose schema is already up to date (`migrate_sqlite`). The pool's
    /// connections should enforce foreign keys and wait for the write lock (`busy_timeout`).
    pub fn from_pool(pool: SqlitePool) -> Self {
        let gate = WriteGate::default();
        SqliteState {
            db: Db::Sqlite { pool: pool.clone(), gate: gate.clone(), access: Default::default() },
            committer: pool.clone(),
            pool,
            gate,
            file: None,
        }
    }

    /// The pool, for a bus outbox that lives in the same database.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The database file, when the store is one (not in memory): the embedded bus keeps its
    /// own file beside it.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The gate this store's writes take; give it to the bus outbox on the same database.
    pub fn write_gate(&self) -> WriteGate {
        self.gate.clone()
    }
}

fn create_parent_dir(file: &Path) -> Result<(), StateError> {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir).map_err(|error| {
            sqlx::Error::Configuration(format!("cannot create the folder `{}` for the SQLite database: {error}", dir.display()).into())
                .into()
        }),
        _ => Ok(()),
    }
}

impl SqlStore for SqliteState {
    fn db(&self) -> &Db {
        &self.db
    }

    /// Reads the count of access changes (kept by the triggers of migration 0010 on users,
    /// memberships, tokens, projects and applied revisions) every [`access_cache::POLL`], and
    /// keeps callers in memory while it can (`access_cache`).
    fn keep_access_in_memory(&self) {
        access_cache::keep_while_watching(self.db.access().clone(), Count(self.pool.clone()));
    }
}

/// Hears of access changes by reading their count.
struct Count(SqlitePool);

impl Count {
    async fn read(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT changes FROM access_changes WHERE id = 1").fetch_one(&self.0).await
    }
}

impl AccessWatch for Count {
    /// The count last read.
    type Watching = i64;

    async fn start(&mut self) -> Result<i64, sqlx::Error> {
        self.read().await
    }

    async fn next_change(&mut self, seen: &mut i64) -> bool {
        loop {
            tokio::time::sleep(access_cache::POLL).await;
            match self.read().await {
                Ok(count) if count == *seen => continue,
                Ok(count) => {
                    *seen = count;
                    return true;
                }
                Err(_) => return false,
            }
        }
    }

    fn closed(&self) -> bool {
        self.0.is_closed()
    }
}

impl HotPath for SqliteState {
    async fn read_order_events(&self, project_id: i64, order_ids: &[i64]) -> Result<HashMap<i64, Vec<StatusEvent>>, StateError> {
        let ids = columns::distinct_ids(order_ids);
        let mut events = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_ROWS) {
            let padded = chunk.len().next_power_of_two();
            let mut query = sqlx::query(SELECT_EVENTS.text(padded)).bind(project_id);
            for index in 0..padded {
                // Repeating the last id fills the list up to its cached size.
                query = query.bind(chunk[index.min(chunk.len() - 1)]);
            }
            columns::add_events(&mut events, query.fetch_all(&self.pool).await?.into_iter().map(sql::Row::Sqlite))?;
        }
        Ok(events)
    }

    async fn commit_batch(&self, batch: CommitBatch) -> Result<(), StateError> {
        let plan = CommitPlan::new(&batch);
        let _turn = self.gate.lock().await;
        let mut tx = self.committer.begin_with("BEGIN IMMEDIATE").await?;
        write_rows(&mut tx, &INSERT_EVENTS, plan.events, bind_event).await?;

        let mut written_keys = HashSet::with_capacity(plan.orders.len());
        for range in chunks(plan.orders.len()) {
            let mut query = sqlx::query(UPSERT_ORDERS.text(range.len()));
            for order in &plan.orders[range] {
                query = bind_order(query, order);
            }
            let keys: Vec<(i64, i64)> = query.try_map(|row: SqliteRow| Ok((row.try_get(0)?, row.try_get(1)?))).fetch_all(&mut *tx).await?;
            written_keys.extend(keys);
        }
        let written = plan.written(&written_keys);
        for (project_id, order_ids) in batch::order_ids_by_project(&written) {
            delete_orders_rows(&mut tx, &DELETE_CYCLES, project_id, &order_ids).await?;
        }
        write_rows(&mut tx, &INSERT_CYCLES, &batch::cycles(&written), bind_cycle).await?;
        write_rows(&mut tx, &UPSERT_OFFSETS, &plan.offsets, bind_offset).await?;
        tx.commit().await?;
        Ok(())
    }
}

// --- rows -----------------------------------------------------------------------------------

type SqliteQuery = Query<'static, Sqlite, SqliteArguments>;

fn bind_event(query: SqliteQuery, stored: &StoredEvent) -> SqliteQuery {
    let event = &stored.event;
    query
        .bind(stored.project_id)
        .bind(event.order_id)
        .bind(event.status_id)
        .bind(i64::from(event.group_id))
        .bind(event.changed_at.as_micros())
        .bind(event.order_created_at.as_micros())
        .bind(stored.received_at.as_micros())
        .bind(columns::source_name(event.source))
        .bind(stored.payload.clone())
}

fn bind_order(query: SqliteQuery, order: &DerivedOrder) -> SqliteQuery {
    query
        .bind(order.project_id)
        .bind(order.order_id)
        .bind(order.current_status_id)
        .bind(i64::from(order.current_group_id))
        .bind(order.last_changed_at.as_micros())
        .bind(order.started_at.as_micros())
        .bind(order.untracked_seconds)
        .bind(order.delivery_entered_at.map(Timestamp::as_micros))
        .bind(order.cycle_duration_to_delivery)
        .bind(order.closed_at.map(Timestamp::as_micros))
        .bind(order.cycle_rule_id_applied.map(i64::from))
        .bind(order.urgency.clone())
        .bind(order.sla_state.clone())
        .bind(i64::from(order.event_count))
        .bind(order.settings_revision)
        .bind(order.derived_json.clone())
}

fn bind_cycle(query: SqliteQuery, (project_id, order_id, cycle): &(i64, i64, &CycleRow)) -> SqliteQuery {
    query
        .bind(*project_id)
        .bind(*order_id)
        .bind(i64::from(cycle.cycle_id))
        .bind(cycle.started_at.as_micros())
        .bind(cycle.ended_at.map(Timestamp::as_micros))
        .bind(cycle.wall_seconds)
        .bind(cycle.working_seconds)
        .bind(cycle.is_open)
}

fn bind_offset(query: SqliteQuery, offset: &&ConsumerOffset) -> SqliteQuery {
    query.bind(offset.group.clone()).bind(offset.topic.clone()).bind(i64::from(offset.partition)).bind(offset.next_offset)
}

/// Writes `items` with `statement`, [`MAX_ROWS`] at a time.
async fn write_rows<T: Sync>(
    conn: &mut SqliteConnection,
    statement: &'static Repeated,
    items: &[T],
    bind: fn(SqliteQuery, &T) -> SqliteQuery,
) -> Result<(), sqlx::Error> {
    for range in chunks(items.len()) {
        let mut query = sqlx::query(statement.text(range.len()));
        for item in &items[range] {
            query = bind(query, item);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Deletes the rows of `order_ids` of one project with `statement` (a [`Repeated::list`]).
async fn delete_orders_rows(
    conn: &mut SqliteConnection,
    statement: &'static Repeated,
    project_id: i64,
    order_ids: &[i64],
) -> Result<(), sqlx::Error> {
    for chunk in order_ids.chunks(MAX_ROWS) {
        let padded = chunk.len().next_power_of_two();
        let mut query = sqlx::query(statement.text(padded)).bind(project_id);
        for index in 0..padded {
            query = query.bind(chunk[index.min(chunk.len() - 1)]);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

// --- multi-row statements -------------------------------------------------------------------

/// A statement that repeats a group of placeholders: `head (?, ?), (?, ?) tail` for rows, or
/// `head ?, ? tail` for a list of ids.
///
/// Each connection caches its prepared statements by text, so the number of texts is kept
/// small: they come only in power-of-two sizes up to [`MAX_ROWS`] (11 texts per statement). Rows
/// go in as full chunks and then the rest split by its binary digits (1000 rows: 512, 256,
/// 128, 64, 32, 8); an id list is padded up to the next power of two by repeating an id.
struct Repeated {
    head: &'static str,
    /// Columns per row; 0 for a list of single placeholders.
    columns: usize,
    tail: &'static str,
    texts: OnceLock<Vec<String>>,
}

impl Repeated {
    const fn rows(head: &'static str, columns: usize, tail: &'static str) -> Self {
        Repeated { head, columns, tail, texts: OnceLock::new() }
    }

    const fn list(head: &'static str, tail: &'static str) -> Self {
        Repeated { head, columns: 0, tail, texts: OnceLock::new() }
    }

    /// The text for `count` rows or ids; `count` is a power of two up to [`MAX_ROWS`].
    fn text(&'static self, count: usize) -> &'static str {
        debug_assert!(count.is_power_of_two() && count <= MAX_ROWS, "{count} rows");
        let texts = self.texts.get_or_init(|| (0..=MAX_ROWS.trailing_zeros()).map(|power| self.build(1 << power)).collect());
        &texts[count.trailing_zeros() as usize]
    }

    fn build(&self, count: usize) -> String {
        let group = if self.columns == 0 { "?".to_owned() } else { format!("({})", vec!["?"; self.columns].join(", ")) };
        let mut text = String::with_capacity(self.head.len() + count * (group.len() + 2) + self.tail.len());
        text.push_str(self.head);
        for i in 0..count {
            if i > 0 {
                text.push_str(", ");
            }
            text.push_str(&group);
        }
        text.push_str(self.tail);
        text
    }
}

/// `0..n` cut into ranges whose lengths are powers of two no longer than [`MAX_ROWS`]: full
/// chunks first, then the rest by its binary digits, largest first.
fn chunks(n: usize) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    while n - start >= MAX_ROWS {
        ranges.push(start..start + MAX_ROWS);
        start += MAX_ROWS;
    }
    let mut size = MAX_ROWS / 2;
    while size > 0 {
        if (n - start) & size != 0 {
            ranges.push(start..start + size);
            start += size;
        }
        size /= 2;
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_row_once_in_power_of_two_sizes() {
        for n in [0, 1, 2, 3, 1000, 1023, 1024, 1025, 5000, 10_000] {
            let ranges = chunks(n);
            let mut next = 0;
            for range in &ranges {
                assert_eq!(range.start, next, "{n}: {ranges:?}");
                assert!(range.len().is_power_of_two() && range.len() <= MAX_ROWS, "{n}: {ranges:?}");
                next = range.end;
            }
            assert_eq!(next, n);
        }
        assert_eq!(chunks(5000).iter().map(|r| r.len()).collect::<Vec<_>>(), vec![1024, 1024, 1024, 1024, 512, 256, 128, 8]);
    }

    #[test]
    fn repeated_statements_have_one_placeholder_per_value() {
        static ROWS: Repeated = Repeated::rows("INSERT INTO t (a, b) VALUES ", 2, " ON CONFLICT DO NOTHING");
        static LIST: Repeated = Repeated::list("SELECT a FROM t WHERE a IN (", ")");
        assert_eq!(ROWS.text(2), "INSERT INTO t (a, b) VALUES (?, ?), (?, ?) ON CONFLICT DO NOTHING");
        assert_eq!(LIST.text(4), "SELECT a FROM t WHERE a IN (?, ?, ?, ?)");
        assert_eq!(UPSERT_ORDERS.text(MAX_ROWS).matches('?').count(), 16 * MAX_ROWS);
        assert!(UPSERT_ORDERS.text(MAX_ROWS).matches('?').count() <= 32_766);
    }
}
