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
//! events again from its offsets (ARCHITECTURE invariant 4).

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use futures_util::TryStreamExt;
use ksa_schemas::derived::{DerivedOrder, StoredEvent};
use ksa_schemas::{StatusEvent, Timestamp};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgConnection, PgPool, Row};

use crate::batch::{self, CommitPlan};
use crate::columns::{self, STATUS_GROUPS};
use crate::digest::{DerivedDigest, DigestCycle, DigestOrder};
use crate::pg_copy;
use crate::{CommitBatch, NewProject, OrderSummary, Project, SettingsRecord, StateError, StateStore, WebhookCount};

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

const INSERT_PROJECT: &str = "INSERT INTO projects (slug, name, timezone, webhook_secret_hash, allowed_cidrs) \
     VALUES ($1, $2, $3, $4, $5) RETURNING id";

const SEED_STATUS_GROUPS: &str = "INSERT INTO status_group_dict (project_id, group_id, name, is_terminal) \
     SELECT $1, g, n, t FROM UNNEST($2::bigint[], $3::text[], $4::boolean[]) AS u(g, n, t)";

const SELECT_PROJECT_BY_SLUG: &str = "SELECT id, slug, name, timezone, is_active, webhook_secret_hash, allowed_cidrs \
     FROM projects WHERE slug = $1";

const SELECT_PROJECTS: &str = "SELECT id, slug, name, timezone, is_active, webhook_secret_hash, allowed_cidrs \
     FROM projects ORDER BY id";

/// Serialises settings changes of one project without blocking writers of its other rows
/// (their foreign keys take KEY SHARE locks, which NO KEY UPDATE lets through).
const LOCK_PROJECT: &str = "SELECT id FROM projects WHERE id = $1 FOR NO KEY UPDATE";

const SELECT_SETTINGS: &str = "SELECT project_id, settings_json::text, revision FROM project_settings WHERE project_id = $1";

const UPSERT_SETTINGS: &str = "INSERT INTO project_settings (project_id, settings_json, revision) VALUES ($1, $2::jsonb, $3) \
     ON CONFLICT (project_id) DO UPDATE SET settings_json = excluded.settings_json, revision = excluded.revision, \
     updated_at = now()";

/// The actor is recorded as the user with that e-mail, or as the system (NULL) when no user
/// has it: the audit log keeps users by id.
const INSERT_SETTINGS_AUDIT: &str = "INSERT INTO audit_log (project_id, user_id, action, entity, entity_id, before_json, after_json) \
     VALUES ($1, (SELECT id FROM users WHERE email = lower($2)), 'settings.update', 'project_settings', $3, $4::jsonb, $5::jsonb)";

const ADD_WEBHOOK_COUNTS: &str = concat!(
    "INSERT INTO webhook_counters (project_id, hour, outcome, reason, count) SELECT p, ",
    instant!("h"),
    ", o, r, c FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[]) AS u(p, h, o, r, c) \
     ON CONFLICT (project_id, hour, outcome, reason) DO UPDATE SET count = webhook_counters.count + excluded.count"
);

const SELECT_WEBHOOK_COUNTS: &str = concat!(
    "SELECT project_id, ",
    micros!("hour"),
    " AS hour_micros, outcome, reason, count FROM webhook_counters WHERE project_id = $1 AND hour >= ",
    instant!("$2"),
    " AND hour < ",
    instant!("$3"),
    " ORDER BY hour, outcome, reason"
);

const SELECT_CONSUMER_OFFSETS: &str = "SELECT partition_no, next_offset FROM consumer_offsets WHERE consumer_group = $1 AND topic = $2";

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

const SELECT_ORDER_IDS: &str = "SELECT DISTINCT order_id FROM order_status_events \
     WHERE project_id = $1 AND order_id > $2 ORDER BY order_id LIMIT $3";

const SELECT_ORDERS_FIRST_PAGE: &str = concat!(
    "SELECT order_id, current_status_id, last_status_group_id, ",
    micros!("last_changed_at"),
    " AS changed_micros, event_count, settings_revision FROM orders_current WHERE project_id = $1 \
     ORDER BY last_changed_at DESC, order_id DESC LIMIT $2"
);

const SELECT_ORDERS_AFTER: &str = concat!(
    "SELECT order_id, current_status_id, last_status_group_id, ",
    micros!("last_changed_at"),
    " AS changed_micros, event_count, settings_revision FROM orders_current WHERE project_id = $1 \
     AND (last_changed_at, order_id) < (",
    instant!("$2"),
    ", $3) ORDER BY last_changed_at DESC, order_id DESC LIMIT $4"
);

const SELECT_DIGEST_ORDERS: &str = concat!(
    "SELECT order_id, current_status_id, last_status_group_id, ",
    micros!("last_changed_at"),
    " AS last_changed_micros, ",
    micros!("started_at"),
    " AS started_micros, untracked_seconds, ",
    micros!("delivery_entered_at"),
    " AS delivery_entered_micros, cycle_duration_to_delivery, ",
    micros!("closed_at"),
    " AS closed_micros, cycle_rule_id_applied, urgency, sla_state, event_count, settings_revision, \
     derived_json FROM orders_current WHERE project_id = $1 ORDER BY order_id"
);

const SELECT_DIGEST_CYCLES: &str = concat!(
    "SELECT order_id, cycle_id, ",
    micros!("started_at"),
    " AS started_micros, ",
    micros!("ended_at"),
    " AS ended_micros, wall_seconds, working_seconds, is_open FROM order_cycle_metrics WHERE project_id = $1 \
     ORDER BY order_id, cycle_id"
);

/// See the module's documentation.
const COMMIT_WITHOUT_FLUSH: &str = "SET LOCAL synchronous_commit = off";

const COUNT_EVENTS: &str = "SELECT count(*) FROM order_status_events WHERE project_id = $1";

// --- the store ------------------------------------------------------------------------------

/// The state in a PostgreSQL database.
#[derive(Clone, Debug)]
pub struct PostgresState {
    pool: PgPool,
}

impl PostgresState {
    /// Connects to `postgres://…` and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Self, StateError> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new().max_connections(MAX_CONNECTIONS).acquire_timeout(ACQUIRE_TIMEOUT).connect_with(options).await?;
        ksa_migrations::migrate_postgres(&pool).await?;
        Ok(PostgresState { pool })
    }

    /// A store over a pool whose schema is already up to date (`migrate_postgres`).
    pub fn from_pool(pool: PgPool) -> Self {
        PostgresState { pool }
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

impl StateStore for PostgresState {
    async fn create_project(&self, project: NewProject) -> Result<Project, StateError> {
        let allowed_cidrs = columns::join_cidrs(&project.allowed_cidrs);
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query_scalar::<_, i64>(INSERT_PROJECT)
            .bind(&project.slug)
            .bind(&project.name)
            .bind(&project.timezone)
            .bind(&project.webhook_secret_hash)
            .bind(&allowed_cidrs)
            .fetch_one(&mut *tx)
            .await;
        let id = match inserted {
            Ok(id) => id,
            Err(error) if is_unique_violation(&error) => return Err(StateError::SlugTaken(project.slug)),
            Err(error) => return Err(error.into()),
        };
        sqlx::query(SEED_STATUS_GROUPS)
            .bind(id)
            .bind(STATUS_GROUPS.map(|(group_id, _, _)| group_id).to_vec())
            .bind(STATUS_GROUPS.map(|(_, name, _)| name).to_vec())
            .bind(STATUS_GROUPS.map(|(_, _, is_terminal)| is_terminal).to_vec())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Project {
            id,
            slug: project.slug,
            name: project.name,
            timezone: project.timezone,
            is_active: true,
            webhook_secret_hash: project.webhook_secret_hash,
            allowed_cidrs: columns::split_cidrs(&allowed_cidrs),
        })
    }

    async fn project_by_slug(&self, slug: &str) -> Result<Option<Project>, StateError> {
        let row = sqlx::query(SELECT_PROJECT_BY_SLUG).bind(slug).fetch_optional(&self.pool).await?;
        row.as_ref().map(project_from_row).transpose()
    }

    async fn projects(&self) -> Result<Vec<Project>, StateError> {
        let rows = sqlx::query(SELECT_PROJECTS).fetch_all(&self.pool).await?;
        rows.iter().map(project_from_row).collect()
    }

    async fn put_settings(&self, project_id: i64, document: &str, actor: &str) -> Result<i64, StateError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(LOCK_PROJECT).bind(project_id).fetch_optional(&mut *tx).await?;
        let before: Option<(i64, String, i64)> = sqlx::query_as(SELECT_SETTINGS).bind(project_id).fetch_optional(&mut *tx).await?;
        let revision = before.as_ref().map_or(1, |(_, _, revision)| revision + 1);
        sqlx::query(UPSERT_SETTINGS).bind(project_id).bind(document).bind(revision).execute(&mut *tx).await?;
        sqlx::query(INSERT_SETTINGS_AUDIT)
            .bind(project_id)
            .bind(actor)
            .bind(project_id.to_string())
            .bind(before.map(|(_, document, _)| document))
            .bind(document)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(revision)
    }

    async fn settings(&self, project_id: i64) -> Result<Option<SettingsRecord>, StateError> {
        let row: Option<(i64, String, i64)> = sqlx::query_as(SELECT_SETTINGS).bind(project_id).fetch_optional(&self.pool).await?;
        Ok(row.map(|(project_id, document, revision)| SettingsRecord { project_id, document, revision }))
    }

    async fn add_webhook_counts(&self, counts: &[WebhookCount]) -> Result<(), StateError> {
        let counts = columns::summed_webhook_counts(counts);
        if counts.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for chunk in counts.chunks(MAX_ROWS) {
            sqlx::query(ADD_WEBHOOK_COUNTS)
                .bind(chunk.iter().map(|c| c.project_id).collect::<Vec<_>>())
                .bind(chunk.iter().map(|c| c.hour.as_micros()).collect::<Vec<_>>())
                .bind(chunk.iter().map(|c| c.outcome.as_str()).collect::<Vec<_>>())
                .bind(chunk.iter().map(|c| c.reason.as_str()).collect::<Vec<_>>())
                .bind(chunk.iter().map(|c| c.count).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn webhook_counts(&self, project_id: i64, from: Timestamp, to: Timestamp) -> Result<Vec<WebhookCount>, StateError> {
        let rows: Vec<(i64, i64, String, String, i64)> = sqlx::query_as(SELECT_WEBHOOK_COUNTS)
            .bind(project_id)
            .bind(from.as_micros())
            .bind(to.as_micros())
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(columns::webhook_count).collect())
    }

    async fn consumer_offsets(&self, group: &str, topic: &str) -> Result<HashMap<u32, i64>, StateError> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(SELECT_CONSUMER_OFFSETS).bind(group).bind(topic).fetch_all(&self.pool).await?;
        columns::consumer_offsets(rows)
    }

    async fn order_events(&self, project_id: i64, order_ids: &[i64]) -> Result<HashMap<i64, Vec<StatusEvent>>, StateError> {
        let mut ids = order_ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let mut events: HashMap<i64, Vec<StatusEvent>> = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_ROWS) {
            let rows = sqlx::query(SELECT_EVENTS).persistent(false).bind(project_id).bind(chunk).fetch_all(&self.pool).await?;
            for row in rows {
                let event = event_from_row(&row)?;
                events.entry(event.order_id).or_default().push(event);
            }
        }
        Ok(events)
    }

    async fn commit(&self, batch: CommitBatch) -> Result<(), StateError> {
        if batch.events.is_empty() && batch.orders.is_empty() && batch.offsets.is_empty() {
            return Ok(());
        }
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

    async fn order_ids(&self, project_id: i64, after: i64, limit: u32) -> Result<Vec<i64>, StateError> {
        Ok(sqlx::query_scalar(SELECT_ORDER_IDS).bind(project_id).bind(after).bind(i64::from(limit)).fetch_all(&self.pool).await?)
    }

    async fn list_orders(&self, project_id: i64, limit: u32, after: Option<(Timestamp, i64)>) -> Result<Vec<OrderSummary>, StateError> {
        let query = match after {
            None => sqlx::query(SELECT_ORDERS_FIRST_PAGE).bind(project_id),
            Some((last_changed_at, order_id)) => {
                sqlx::query(SELECT_ORDERS_AFTER).bind(project_id).bind(last_changed_at.as_micros()).bind(order_id)
            }
        };
        let rows = query.bind(i64::from(limit)).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(OrderSummary {
                    order_id: row.try_get("order_id")?,
                    current_status_id: row.try_get("current_status_id")?,
                    current_group_id: columns::group_id(row.try_get("last_status_group_id")?, "last_status_group_id")?,
                    last_changed_at: Timestamp::from_micros(row.try_get("changed_micros")?),
                    event_count: columns::count(row.try_get("event_count")?, "event_count")?,
                    settings_revision: row.try_get("settings_revision")?,
                })
            })
            .collect()
    }

    async fn derived_digest(&self, project_id: i64) -> Result<String, StateError> {
        // One snapshot for both tables.
        let mut tx = self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
        let mut digest = DerivedDigest::new();
        {
            let mut rows = sqlx::query(SELECT_DIGEST_ORDERS).bind(project_id).fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                digest.order(&DigestOrder {
                    order_id: row.try_get("order_id")?,
                    current_status_id: row.try_get("current_status_id")?,
                    last_status_group_id: row.try_get("last_status_group_id")?,
                    last_changed_at: row.try_get("last_changed_micros")?,
                    started_at: row.try_get("started_micros")?,
                    untracked_seconds: row.try_get("untracked_seconds")?,
                    delivery_entered_at: row.try_get("delivery_entered_micros")?,
                    cycle_duration_to_delivery: row.try_get("cycle_duration_to_delivery")?,
                    closed_at: row.try_get("closed_micros")?,
                    cycle_rule_id_applied: row.try_get("cycle_rule_id_applied")?,
                    urgency: row.try_get("urgency")?,
                    sla_state: row.try_get("sla_state")?,
                    event_count: row.try_get("event_count")?,
                    settings_revision: row.try_get("settings_revision")?,
                    derived_json: row.try_get("derived_json")?,
                })?;
            }
        }
        {
            let mut rows = sqlx::query(SELECT_DIGEST_CYCLES).bind(project_id).fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                digest.cycle(&DigestCycle {
                    order_id: row.try_get("order_id")?,
                    cycle_id: row.try_get("cycle_id")?,
                    started_at: row.try_get("started_micros")?,
                    ended_at: row.try_get("ended_micros")?,
                    wall_seconds: row.try_get("wall_seconds")?,
                    working_seconds: row.try_get("working_seconds")?,
                    is_open: row.try_get("is_open")?,
                });
            }
        }
        tx.rollback().await?;
        Ok(digest.finish())
    }

    async fn event_count(&self, project_id: i64) -> Result<u64, StateError> {
        let count: i64 = sqlx::query_scalar(COUNT_EVENTS).bind(project_id).fetch_one(&self.pool).await?;
        u64::try_from(count).map_err(|_| StateError::Corrupt(format!("event count {count} is negative")))
    }
}

// --- rows -----------------------------------------------------------------------------------

fn project_from_row(row: &PgRow) -> Result<Project, StateError> {
    Ok(Project {
        id: row.try_get("id")?,
        slug: row.try_get("slug")?,
        name: row.try_get("name")?,
        timezone: row.try_get("timezone")?,
        is_active: row.try_get("is_active")?,
        webhook_secret_hash: row.try_get::<Option<String>, _>("webhook_secret_hash")?.unwrap_or_default(),
        allowed_cidrs: columns::split_cidrs(&row.try_get::<String, _>("allowed_cidrs")?),
    })
}

fn event_from_row(row: &PgRow) -> Result<StatusEvent, StateError> {
    Ok(StatusEvent {
        order_id: row.try_get("order_id")?,
        status_id: row.try_get("status_id")?,
        group_id: columns::group_id(row.try_get("status_group_id")?, "status_group_id")?,
        changed_at: Timestamp::from_micros(row.try_get("changed_micros")?),
        order_created_at: Timestamp::from_micros(row.try_get("created_micros")?),
        source: columns::parse_source(row.try_get("source")?)?,
    })
}

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
