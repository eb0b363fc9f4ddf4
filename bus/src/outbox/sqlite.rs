//! The outbox in the embedded SQLite state database.

use std::sync::Arc;

use ksa_schemas::Timestamp;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool};

use super::batch::{Batch, Claim, LogRow};
use super::{Core, Store, outbox_handle};
use crate::{AppendOutcome, BusError, OutboxConfig, Record};

/// Idempotency keys per INSERT: 2 bind variables each, well under SQLite's 32766.
const CLAIMS_PER_STATEMENT: usize = 2000;
/// Records per INSERT into `bus_log`: 5 bind variables each.
const ROWS_PER_STATEMENT: usize = 1000;
/// Records deleted per statement by `truncate`, so that no write transaction holds the
/// database for long.
const DELETES_PER_STATEMENT: i64 = 5000;

/// The bus in the SQLite state database, for embedded mode.
///
/// SQLite here is embedded: one process owns the database file, so in-process signals are
/// enough to wake waiting readers — an append by another process would only be seen when a
/// read's wait runs out. The state store writes the same file. Given the store's write gate
/// ([`SqliteOutbox::start_with_gate`]), the two take turns in arrival order before either asks
/// SQLite for its write lock; otherwise each transaction takes the lock at its start (`BEGIN
/// IMMEDIATE`) and the pool's `busy_timeout` makes the loser retry, sleeping up to 100 ms a try.
#[derive(Clone)]
pub struct SqliteOutbox {
    core: Core<SqliteStore>,
}

impl SqliteOutbox {
    /// Starts the outbox on `pool` (the state database, already migrated) for `topics`, and
    /// spawns its group-commit writer; must be called inside a Tokio runtime.
    pub async fn start(pool: SqlitePool, topics: &[&str], config: OutboxConfig) -> Result<Self, BusError> {
        Self::start_with_gate(pool, WriteGate::default(), topics, config).await
    }

    /// Like [`SqliteOutbox::start`], taking `gate` before each write transaction: pass the
    /// state store's gate for the same database file, so that one writer waits for the other
    /// without sleeping.
    pub async fn start_with_gate(pool: SqlitePool, gate: WriteGate, topics: &[&str], config: OutboxConfig) -> Result<Self, BusError> {
        sqlx::query("SELECT 1 FROM bus_heads, bus_log, bus_idempotency LIMIT 0")
            .execute(&pool)
            .await
            .map_err(|error| BusError::Unavailable(format!("the outbox tables cannot be read (are the migrations applied?): {error}")))?;
        Ok(SqliteOutbox { core: Core::start(SqliteStore { pool, gate }, topics, &config)? })
    }
}

outbox_handle!(SqliteOutbox);

/// Writers to one SQLite file in this process queue here, first come first served, before
/// they begin a write transaction.
pub type WriteGate = Arc<tokio::sync::Mutex<()>>;

pub(crate) struct SqliteStore {
    pool: SqlitePool,
    gate: WriteGate,
}

impl Store for SqliteStore {
    async fn commit(&self, batch: &Batch) -> Result<Vec<Vec<AppendOutcome>>, sqlx::Error> {
        let _turn = self.gate.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
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

    async fn truncate(&self, topic: &str, partition: u32, through: i64, appended_before: Timestamp) -> Result<u64, sqlx::Error> {
        let mut deleted = 0;
        loop {
            let _turn = self.gate.lock().await;
            let done = sqlx::query(
                "DELETE FROM bus_log WHERE topic = ?1 AND partition_no = ?2 AND record_offset IN ( \
                     SELECT record_offset FROM bus_log \
                     WHERE topic = ?1 AND partition_no = ?2 AND record_offset <= ?3 AND appended_at < ?4 \
                     ORDER BY record_offset LIMIT ?5)",
            )
            .bind(topic)
            .bind(i64::from(partition))
            .bind(through)
            .bind(appended_before.as_micros())
            .bind(DELETES_PER_STATEMENT)
            .execute(&self.pool)
            .await?
            .rows_affected();
            deleted += done;
            if done < DELETES_PER_STATEMENT as u64 {
                return Ok(deleted);
            }
        }
    }
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
