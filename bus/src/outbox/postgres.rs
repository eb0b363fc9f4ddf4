//! The outbox in the PostgreSQL state database, shared by several processes.

use std::sync::Arc;
use std::time::Duration;

use ksa_schemas::Timestamp;
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;

use super::batch::{Batch, LogRow};
use super::{Core, DELETES_PER_STATEMENT, Shared, Store, delete_in_steps, outbox_handle};
use crate::{AppendOutcome, BusError, OutboxConfig, Record};

/// The channel every append transaction notifies, with payload `topic:partition`.
pub const NOTIFY_CHANNEL: &str = "ksa_bus";

/// Waits between attempts to listen again after the listening connection failed.
const RELISTEN_FIRST_DELAY: Duration = Duration::from_millis(100);
const RELISTEN_MAX_DELAY: Duration = Duration::from_secs(5);

/// The bus in the PostgreSQL state database, for distributed mode.
///
/// Appenders of every process lock a partition's head row until they commit, so records of a
/// partition become visible in offset order whichever process wrote them. Each append
/// transaction issues `pg_notify('ksa_bus', 'topic:partition')`; every outbox listens on its
/// own connection, so readers wake for other processes' appends too. When that connection
/// breaks it is opened again, and every reader is woken once, as notifications may have been
/// lost meanwhile.
#[derive(Clone)]
pub struct PostgresOutbox {
    core: Core<PostgresStore>,
}

impl PostgresOutbox {
    /// Starts the outbox on `pool` (the state database, already migrated) for `topics`: spawns
    /// its group-commit writer and its listener, which holds one more connection of its own
    /// (made with the pool's connect options, not taken from it). Returns once the listener
    /// listens, so every append committed afterwards wakes this outbox's readers. Must be
    /// called inside a Tokio runtime.
    pub async fn start(pool: PgPool, topics: &[&str], config: OutboxConfig) -> Result<Self, BusError> {
        sqlx::query("SELECT 1 FROM bus_heads, bus_log, bus_idempotency LIMIT 0")
            .execute(&pool)
            .await
            .map_err(|error| BusError::Unavailable(format!("the outbox tables cannot be read (are the migrations applied?): {error}")))?;
        let listen_pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with((*pool.connect_options()).clone());
        let listener = listen(&listen_pool)
            .await
            .map_err(|error| BusError::Unavailable(format!("cannot LISTEN for appends of other processes: {error}")))?;
        let core = Core::start(PostgresStore { pool }, topics, &config)?;
        tokio::spawn(relay_notifications(listen_pool, listener, Arc::clone(core.shared()), core.stop_signal()));
        Ok(PostgresOutbox { core })
    }
}

outbox_handle!(PostgresOutbox);

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(NOTIFY_CHANNEL).await?;
    Ok(listener)
}

/// Raises the signal of each partition named by a notification, until stopped (shutdown, or
/// the last handle dropped). A broken connection is replaced, and every signal raised.
async fn relay_notifications(pool: PgPool, mut listener: PgListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let error = loop {
            tokio::select! {
                _ = stop.wait_for(|stopping| *stopping) => return,
                received = listener.try_recv() => match received {
                    Ok(Some(notification)) => {
                        if let Some((topic, partition)) = notification.payload().rsplit_once(':')
                            && let Ok(partition) = partition.parse()
                        {
                            shared.topics.raise(topic, partition);
                        }
                    }
                    // The connection was lost and has been opened again.
                    Ok(None) => shared.topics.raise_all(),
                    Err(error) => break error,
                },
            }
        };
        drop(listener);
        tracing::warn!(%error, "outbox: the LISTEN connection failed; listening again");
        shared.topics.raise_all();
        let mut delay = RELISTEN_FIRST_DELAY;
        listener = loop {
            tokio::select! {
                _ = stop.wait_for(|stopping| *stopping) => return,
                () = tokio::time::sleep(delay) => {}
            }
            match listen(&pool).await {
                Ok(listener) => break listener,
                Err(error) => {
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "outbox: cannot LISTEN yet");
                    delay = (delay * 2).min(RELISTEN_MAX_DELAY);
                }
            }
        };
        shared.topics.raise_all();
    }
}

pub(crate) struct PostgresStore {
    pool: PgPool,
}

impl Store for PostgresStore {
    async fn commit(&self, batch: &Batch) -> Result<Vec<Vec<AppendOutcome>>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        match write(&mut tx, batch).await {
            Ok(outcomes) => {
                tx.commit().await?;
                Ok(outcomes)
            }
            Err(error) => {
                let _ = tx.rollback().await;
                Err(error)
            }
        }
    }

    async fn read(&self, topic: &str, partition: u32, after: i64, limit: i64) -> Result<Vec<Record>, sqlx::Error> {
        let rows: Vec<(i64, String, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT record_offset, record_key, payload, (EXTRACT(EPOCH FROM appended_at) * 1000000)::bigint \
             FROM bus_log WHERE topic = $1 AND partition_no = $2 AND record_offset > $3 \
             ORDER BY record_offset LIMIT $4",
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
        sqlx::query_scalar("SELECT COALESCE(MAX(record_offset), -1) FROM bus_log WHERE topic = $1 AND partition_no = $2")
            .bind(topic)
            .bind(i64::from(partition))
            .fetch_one(&self.pool)
            .await
    }

    async fn forget_keys(&self, topic: &str, appended_before: Timestamp) -> Result<u64, sqlx::Error> {
        let done = sqlx::query("DELETE FROM bus_idempotency WHERE topic = $1 AND EXTRACT(EPOCH FROM appended_at) * 1000000 < $2::bigint")
            .bind(topic)
            .bind(appended_before.as_micros())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// In steps of the oldest records (see [`delete_in_steps`]).
    async fn truncate(&self, topic: &str, partition: u32, through: i64, appended_before: Timestamp) -> Result<u64, sqlx::Error> {
        delete_in_steps(|| async {
            let done = sqlx::query(
                "DELETE FROM bus_log WHERE topic = $1 AND partition_no = $2 \
                 AND EXTRACT(EPOCH FROM appended_at) * 1000000 < $4::bigint AND record_offset IN ( \
                     SELECT record_offset FROM bus_log \
                     WHERE topic = $1 AND partition_no = $2 AND record_offset <= $3 \
                     ORDER BY record_offset LIMIT $5)",
            )
            .bind(topic)
            .bind(i64::from(partition))
            .bind(through)
            .bind(appended_before.as_micros())
            .bind(DELETES_PER_STATEMENT)
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected())
        })
        .await
    }
}

/// The batch's statements, inside its transaction. Keys are claimed and heads locked in sorted
/// order, so concurrent writers of several processes cannot deadlock.
async fn write(conn: &mut PgConnection, batch: &Batch) -> Result<Vec<Vec<AppendOutcome>>, sqlx::Error> {
    let claims = batch.claims();
    let mut fresh = vec![false; claims.len()];
    if !claims.is_empty() {
        let (topics, keys): (Vec<&str>, Vec<&str>) = claims.iter().copied().unzip();
        let inserted: Vec<(String, String)> = sqlx::query_as(
            "INSERT INTO bus_idempotency (topic, idempotency_key) \
             SELECT * FROM UNNEST($1::text[], $2::text[]) \
             ON CONFLICT DO NOTHING RETURNING topic, idempotency_key",
        )
        .bind(topics)
        .bind(keys)
        .fetch_all(&mut *conn)
        .await?;
        for (topic, key) in &inserted {
            if let Ok(index) = claims.binary_search(&(topic.as_str(), key.as_str())) {
                fresh[index] = true;
            }
        }
    }
    let admission = batch.admit(&claims, fresh);
    let mut heads = Vec::with_capacity(admission.advances().len());
    for advance in admission.advances() {
        let head: i64 = sqlx::query_scalar(
            "INSERT INTO bus_heads (topic, partition_no, next_offset) VALUES ($1, $2, $3) \
             ON CONFLICT (topic, partition_no) DO UPDATE SET next_offset = bus_heads.next_offset + EXCLUDED.next_offset \
             RETURNING next_offset",
        )
        .bind(advance.topic)
        .bind(i64::from(advance.partition))
        .bind(advance.count)
        .fetch_one(&mut *conn)
        .await?;
        heads.push(head);
    }
    let notifications: Vec<String> = admission.advances().iter().map(|a| format!("{}:{}", a.topic, a.partition)).collect();
    let placement = admission.place(&heads);
    if !placement.rows.is_empty() {
        insert_rows(conn, &placement.rows).await?;
        sqlx::query("SELECT pg_notify($1, payload) FROM UNNEST($2::text[]) AS payload")
            .bind(NOTIFY_CHANNEL)
            .bind(notifications)
            .execute(&mut *conn)
            .await?;
    }
    Ok(placement.outcomes)
}

async fn insert_rows(conn: &mut PgConnection, rows: &[LogRow<'_>]) -> Result<(), sqlx::Error> {
    let topics: Vec<&str> = rows.iter().map(|r| r.topic).collect();
    let partitions: Vec<i64> = rows.iter().map(|r| i64::from(r.partition)).collect();
    let offsets: Vec<i64> = rows.iter().map(|r| r.offset).collect();
    let keys: Vec<&str> = rows.iter().map(|r| r.key).collect();
    let payloads: Vec<&[u8]> = rows.iter().map(|r| r.payload).collect();
    sqlx::query(
        "INSERT INTO bus_log (topic, partition_no, record_offset, record_key, payload) \
         SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::bytea[])",
    )
    .bind(topics)
    .bind(partitions)
    .bind(offsets)
    .bind(keys)
    .bind(payloads)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
