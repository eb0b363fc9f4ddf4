//! The PostgreSQL adapter (distributed mode).
//!
//! Batches go in as one statement per table: the rows travel as one array per column and the
//! statement reads them back with `UNNEST`, so its text and plan never depend on the number of
//! rows. Instants cross the wire as microseconds since the Unix epoch and are converted in SQL
//! (sqlx's time features are off); JSON documents travel as text and are cast where the column is
//! JSONB (settings). Event payloads and `derived_json` are stored as the text that was written:
//! nothing queries into them, and parsing each order's document into JSONB on every upsert (and
//! printing it back on every read) cost the server ≈ 8 µs per row (BENCHMARKS.md).
//!
//! Rows that cannot conflict go in by binary `COPY` instead (`pg_copy`): cycles (written after
//! the order's old ones are deleted), and events when the batch repeats no stored event, as the
//! processor's batches never do; a batch that does is written again with
//! `INSERT … ON CONFLICT DO NOTHING`.
//!
//! Statements that read or delete by a list of order ids are sent unnamed (`persistent(false)`),
//! so the server plans each one for its own list: a cached generic plan made while a table was
//! small (or had no statistics, on a server without autovacuum) scans the whole table on every
//! batch. Only those: forcing custom plans on the whole connection (`plan_cache_mode`) also
//! re-plans the foreign-key check of every inserted row, which cost the distributed processor
//! more than a third of PostgreSQL's time (measured in BENCHMARKS.md).
//!
//! The processor's commits do not wait for their WAL flush (`synchronous_commit = off`): a
//! server crash may take back the last commits, never half of one, and the event log, derived
//! rows and consumer offsets of a lost commit go together, so the processor reads the same
//! events again from its offsets (docs/architecture.md, invariant 4).

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use ksa_schemas::derived::{DerivedOrder, StoredEvent};
use ksa_schemas::{StatusEvent, Timestamp};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgConnection, PgPool};

use crate::access_cache::{self, AccessWatch};
use crate::batch::{self, CommitPlan};
use crate::columns;
use crate::pg_copy;
use crate::sql::{self, Db, SqlStore};
use crate::{CommitBatch, HotPath, StateError};

/// Connections of a pool made by [`PostgresState::connect`].
const MAX_CONNECTIONS: u32 = 10;

/// How long to wait for a connection: a server that refuses them is reported in seconds.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The most rows one statement writes, to bound the size of one message.
const MAX_ROWS: usize = 8192;

/// The instant `$n` microseconds after the Unix epoch.
macro_rules! instant {
    ($micros:literal) => {
        concat!("(TIMESTAMPTZ 'epoch' + ", $micros, "::bigint * INTERVAL '1 microsecond')")
    };
}

/// Microseconds since the Unix epoch of a TIMESTAMPTZ column (exact: EXTRACT gives a numeric).
macro_rules! micros {
    ($column:literal) => {
        concat!("(EXTRACT(EPOCH FROM ", $column, ") * 1000000)::bigint")
    };
}

// --- SQL ------------------------------------------------------------------------------------

const SELECT_EVENTS: &str = concat!(
    "SELECT order_id, status_id, status_group_id, ",
    micros!("status_changed_at"),
    " AS changed_micros, ",
    micros!("order_created_at"),
    " AS created_micros, source FROM order_status_events WHERE project_id = $1 AND order_id = ANY($2)"
);

const INSERT_EVENTS: &str = concat!(
    "INSERT INTO order_status_events (project_id, order_id, status_id, status_group_id, status_changed_at, \
     order_created_at, received_at, source, payload) SELECT p, o, s, g, ",
    instant!("c"),
    ", ",
    instant!("oc"),
    ", ",
    instant!("r"),
    ", src, pl FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], \
     $6::bigint[], $7::bigint[], $8::text[], $9::text[]) AS u(p, o, s, g, c, oc, r, src, pl) \
     ON CONFLICT (project_id, order_id, status_changed_at, status_id) DO NOTHING"
);

/// Writes a row only over one of a lower or equal version, and names the rows it wrote.
const UPSERT_ORDERS: &str = concat!(
    "INSERT INTO orders_current (project_id, order_id, current_status_id, last_status_group_id, last_changed_at, \
     started_at, untracked_seconds, delivery_entered_at, cycle_duration_to_delivery, closed_at, cycle_rule_id_applied, \
     urgency, sla_state, event_count, settings_revision, derived_json) SELECT p, o, s, g, ",
    instant!("lc"),
    ", ",
    instant!("st"),
    ", un, ",
    instant!("de"),
    ", cd, ",
    instant!("ca"),
    ", cr, urg, sla, ec, rev, dj FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], \
     $5::bigint[], $6::bigint[], $7::float8[], $8::bigint[], $9::float8[], $10::bigint[], $11::bigint[], $12::text[], \
     $13::text[], $14::bigint[], $15::bigint[], $16::text[]) \
     AS u(p, o, s, g, lc, st, un, de, cd, ca, cr, urg, sla, ec, rev, dj) \
     ON CONFLICT (project_id, order_id) DO UPDATE SET current_status_id = excluded.current_status_id, \
     last_status_group_id = excluded.last_status_group_id, last_changed_at = excluded.last_changed_at, \
     started_at = excluded.started_at, untracked_seconds = excluded.untracked_seconds, \
     delivery_entered_at = excluded.delivery_entered_at, \
     cycle_duration_to_delivery = excluded.cycle_duration_to_delivery, closed_at = excluded.closed_at, \
     cycle_rule_id_applied = excluded.cycle_rule_id_applied, urgency = excluded.urgency, \
     sla_state = excluded.sla_state, event_count = excluded.event_count, \
     settings_revision = excluded.settings_revision, derived_json = excluded.derived_json, updated_at = now() \
     WHERE excluded.settings_revision > orders_current.settings_revision \
     OR (excluded.settings_revision = orders_current.settings_revision \
     AND excluded.event_count >= orders_current.event_count) \
     RETURNING project_id, order_id"
);

const DELETE_CYCLES: &str = "DELETE FROM order_cycle_metrics \
     WHERE (project_id, order_id) IN (SELECT * FROM UNNEST($1::bigint[], $2::bigint[]))";

const UPSERT_OFFSETS: &str = "INSERT INTO consumer_offsets (consumer_group, topic, partition_no, next_offset) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[]) \
     ON CONFLICT (consumer_group, topic, partition_no) DO UPDATE SET next_offset = excluded.next_offset, updated_at = now()";

/// See the module's documentation.
const COMMIT_WITHOUT_FLUSH: &str = "SET LOCAL synchronous_commit = off";

// --- the store ------------------------------------------------------------------------------

/// The state in a PostgreSQL database.
#[derive(Clone, Debug)]
pub struct PostgresState {
    pool: PgPool,
    /// The same pool, for the statements written once for both databases.
    db: Db,
}

impl PostgresState {
    /// Connects to `postgres://…` and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Self, StateError> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new().max_connections(MAX_CONNECTIONS).acquire_timeout(ACQUIRE_TIMEOUT).connect_with(options).await?;
        ksa_migrations::migrate_postgres(&pool).await?;
        Ok(PostgresState::from_pool(pool))
    }

    /// A store over a pool whose schema is already up to date (`migrate_postgres`).
    pub fn from_pool(pool: PgPool) -> Self {
        PostgresState { db: Db::Postgres { pool: pool.clone(), access: Default::default() }, pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Writes a planned batch in one transaction: events, derived rows, offsets.
    async fn write(&self, plan: &CommitPlan<'_>, events: EventWrite) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(COMMIT_WITHOUT_FLUSH).execute(&mut *tx).await?;
        match events {
            EventWrite::Copy => pg_copy::copy(&mut tx, pg_copy::COPY_EVENTS, plan.events, pg_copy::event).await?,
            EventWrite::SkipStored => {
                for events in plan.events.chunks(MAX_ROWS) {
                    insert_events(&mut tx, events).await?;
                }
            }
        }
        let mut written_keys = HashSet::with_capacity(plan.orders.len());
        for orders in plan.orders.chunks(MAX_ROWS) {
            written_keys.extend(upsert_orders(&mut tx, orders).await?);
        }
        let written = plan.written(&written_keys);
        for orders in written.chunks(MAX_ROWS) {
            let project_ids: Vec<i64> = orders.iter().map(|o| o.project_id).collect();
            let order_ids: Vec<i64> = orders.iter().map(|o| o.order_id).collect();
            sqlx::query(DELETE_CYCLES).persistent(false).bind(&project_ids).bind(&order_ids).execute(&mut *tx).await?;
        }
        // The written orders' old cycles are gone: nothing can conflict.
        pg_copy::copy(&mut tx, pg_copy::COPY_CYCLES, batch::cycles(&written).as_slice(), pg_copy::cycle).await?;
        for offsets in plan.offsets.chunks(MAX_ROWS) {
            sqlx::query(UPSERT_OFFSETS)
                .bind(offsets.iter().map(|o| o.group.as_str()).collect::<Vec<_>>())
                .bind(offsets.iter().map(|o| o.topic.as_str()).collect::<Vec<_>>())
                .bind(offsets.iter().map(|o| i64::from(o.partition)).collect::<Vec<_>>())
                .bind(offsets.iter().map(|o| o.next_offset).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }
}

/// How a commit writes its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EventWrite {
    /// `COPY`: every event is new (the processor's batches), or the transaction fails.
    Copy,
    /// `INSERT … ON CONFLICT DO NOTHING`: events already stored, or repeated in the batch, are
    /// skipped.
    SkipStored,
}

impl SqlStore for PostgresState {
    fn db(&self) -> &Db {
        &self.db
    }

    /// Listens for `ksa_access` (raised by the triggers of migration 0009 on every change to
    /// users, memberships, tokens, projects and applied revisions) on a connection of the pool,
    /// and keeps callers in memory while it hears (`access_cache`).
    fn keep_access_in_memory(&self) {
        access_cache::keep_while_watching(self.db.access().clone(), Listen(self.pool.clone()));
    }
}

/// Hears of access changes by `LISTEN`ing on a connection of the pool.
struct Listen(PgPool);

impl AccessWatch for Listen {
    type Watching = PgListener;

    async fn start(&mut self) -> Result<PgListener, sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.0).await?;
        listener.listen(ACCESS_CHANNEL).await?;
        Ok(listener)
    }

    /// `Ok(None)`: the connection was lost, and notifications with it.
    async fn next_change(&mut self, listener: &mut PgListener) -> bool {
        matches!(listener.try_recv().await, Ok(Some(_)))
    }

    fn closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// Where PostgreSQL announces changes to who may do what (migration 0009).
const ACCESS_CHANNEL: &str = "ksa_access";

impl HotPath for PostgresState {
    async fn read_order_events(&self, project_id: i64, order_ids: &[i64]) -> Result<HashMap<i64, Vec<StatusEvent>>, StateError> {
        let ids = columns::distinct_ids(order_ids);
        let mut events = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_ROWS) {
            let rows = sqlx::query(SELECT_EVENTS).persistent(false).bind(project_id).bind(chunk).fetch_all(&self.pool).await?;
            columns::add_events(&mut events, rows.into_iter().map(sql::Row::Postgres))?;
        }
        Ok(events)
    }

    async fn commit_batch(&self, batch: CommitBatch) -> Result<(), StateError> {
        let plan = CommitPlan::new(&batch);
        let events = if pg_copy::distinct(plan.events) { EventWrite::Copy } else { EventWrite::SkipStored };
        match self.write(&plan, events).await {
            // An event of the batch was stored before: the whole transaction rolled back, and
            // the batch is written again with the insert that skips stored events.
            Err(error) if events == EventWrite::Copy && is_unique_violation(&error) => {
                tracing::info!("a batch repeated a stored event; writing it again, skipping stored events");
                Ok(self.write(&plan, EventWrite::SkipStored).await?)
            }
            written => Ok(written?),
        }
    }
}

// --- rows -----------------------------------------------------------------------------------

async fn insert_events(conn: &mut PgConnection, events: &[StoredEvent]) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT_EVENTS)
        .bind(events.iter().map(|e| e.project_id).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.event.order_id).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.event.status_id).collect::<Vec<_>>())
        .bind(events.iter().map(|e| i64::from(e.event.group_id)).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.event.changed_at.as_micros()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.event.order_created_at.as_micros()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.received_at.as_micros()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| columns::source_name(e.event.source)).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.payload.as_deref()).collect::<Vec<_>>())
        .execute(conn)
        .await?;
    Ok(())
}

/// Upserts `orders` and returns the keys of the rows it wrote.
async fn upsert_orders(conn: &mut PgConnection, orders: &[&DerivedOrder]) -> Result<Vec<(i64, i64)>, sqlx::Error> {
    sqlx::query_as(UPSERT_ORDERS)
        .bind(orders.iter().map(|o| o.project_id).collect::<Vec<_>>())
        .bind(orders.iter().map(|o| o.order_id).collect::<Vec<_>>())
        .bind(orders.iter().map(|o| o.current_status_id).collect::<Vec<_>>())
        .bind(orders.iter().map(|o| i64::from(o.current_group_id)).collect::<Vec<_>>())
        .bind(orders.iter().map(|o| o.last_changed_at.as_micros()).collect::<Vec<_>>())
        .bind(orders.iter().map(|o| o.started_at.as_micros()).collect::<Vec<_>>())
        .bind(orders.iter().map(|o| o.untracked_seconds).collect::<Vec<_>>())
        .bind(orders.iter().map(|o| o.delivery_entered_at.map(Timestamp::as_micros)).collect::<Vec<_>>())
        .bind(orders.iter().map(|o| o.cycle_duration_to_delivery).collect::<Vec<_>>())
        .bind(orders.iter().map(|o| o.closed_at.map(Timestamp::as_micros)).collect::<Vec<_>>())
        .bind(orders.iter().map(|o| o.cycle_rule_id_applied.map(i64::from)).collect::<Vec<_>>())
        .bind(orders.iter().map(|o| o.urgency.as_str()).collect::<Vec<_>>())
        .bind(orders.iter().map(|o| o.sla_state.as_str()).collect::<Vec<_>>())
        .bind(orders.iter().map(|o| i64::from(o.event_count)).collect::<Vec<_>>())
        .bind(orders.iter().map(|o| o.settings_revision).collect::<Vec<_>>())
        .bind(orders.iter().map(|o| o.derived_json.as_str()).collect::<Vec<_>>())
        .fetch_all(conn)
        .await
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(|e| e.is_unique_violation())
}
