//! Partition claims: a `process` instance holds a lock per partition of `status-events` it
//! processes, so a second instance started with an overlapping `--partitions` fails at start,
//! naming the partition, instead of racing the first on the same orders and offsets. The
//! enricher (`enrich`, or `run`'s) holds every partition of `enrich-requests` the same way.
//!
//! On PostgreSQL a claim is a session advisory lock (scoped to the database) held by a
//! connection of its own: it goes when the process dies, even by SIGKILL. When that connection
//! breaks (a server restart), the claims are taken again once the server answers; if another
//! instance took one meanwhile, this instance stops with an error. On SQLite (one machine) a
//! claim is an exclusive lock on a file under the data dir.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use sqlx::{Connection, PgConnection};

use crate::redact::redact;

/// How long a claim held by another instance is tried again before giving up.
const HOLDER_GRACE: Duration = Duration::from_secs(3);
/// How often the PostgreSQL connection that holds the claims is checked.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// The claims of this instance; dropping it releases them.
pub(crate) enum Claims {
    Postgres { url: String, topic: String, partitions: Vec<u32>, connection: PgConnection },
    Files(#[allow(dead_code, reason = "held for its locks")] Vec<File>),
}

/// The name of `topic` on the bus (with `bus.kafka.topic_prefix` on Kafka): what claims are
/// taken on, so deployments that share a cluster under different prefixes do not collide.
pub(crate) fn topic_on_bus(config: &crate::config::Config, topic: &str) -> String {
    match config.bus.kind {
        crate::config::BusKind::Kafka => format!("{}{topic}", config.bus.kafka.topic_prefix),
        crate::config::BusKind::Outbox => topic.to_owned(),
    }
}

/// The advisory lock key of a topic: FNV-1a of its name on the bus, as a 32-bit integer.
fn topic_key(topic: &str) -> i32 {
    let hash = topic.bytes().fold(0x811c_9dc5_u32, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193));
    hash as i32
}

fn overlap(topic: &str, partition: u32) -> anyhow::Error {
    if topic.ends_with(ksa_schemas::bus::ENRICH_REQUESTS) {
        return anyhow::anyhow!("partition {partition} of {topic} is already held by another enricher");
    }
    anyhow::anyhow!(
        "partition {partition} of {topic} is already processed by another `process` instance: \
         give each instance a disjoint --partitions set"
    )
}

/// Takes every lock or none.
async fn lock_all(connection: &mut PgConnection, key: i32, topic: &str, partitions: &[u32]) -> anyhow::Result<()> {
    for (i, partition) in partitions.iter().enumerate() {
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(key)
            .bind(*partition as i32)
            .fetch_one(&mut *connection)
            .await
            .context("claiming the partitions")?;
        if !taken {
            for held in &partitions[..i] {
                let _ = sqlx::query("SELECT pg_advisory_unlock($1, $2)").bind(key).bind(*held as i32).execute(&mut *connection).await;
            }
            return Err(overlap(topic, *partition));
        }
    }
    Ok(())
}

impl Claims {
    /// Claims `partitions` of `topic` (its name on the bus) in the state database at `url`, or
    /// under `data_dir` for SQLite.
    pub async fn take(url: &str, data_dir: &Path, topic: &str, partitions: &[u32]) -> anyhow::Result<Claims> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let key = topic_key(topic);
            let mut connection = PgConnection::connect(url).await.with_context(|| format!("opening {}", redact(url)))?;
            // The server frees a killed holder's locks when it sees its connection close: a
            // restart right after a SIGKILL may have to wait a moment for that.
            let deadline = tokio::time::Instant::now() + HOLDER_GRACE;
            while let Err(error) = lock_all(&mut connection, key, topic, partitions).await {
                if tokio::time::Instant::now() >= deadline {
                    return Err(error);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            return Ok(Claims::Postgres { url: url.to_owned(), topic: topic.to_owned(), partitions: partitions.to_vec(), connection });
        }
        let dir = data_dir.join("claims");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut files = Vec::with_capacity(partitions.len());
        for partition in partitions {
            let path = dir.join(format!("{topic}-{partition}.lock"));
            let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            match file.try_lock() {
                Ok(()) => files.push(file),
                Err(std::fs::TryLockError::WouldBlock) => return Err(overlap(topic, *partition)),
                Err(std::fs::TryLockError::Error(error)) => return Err(error).with_context(|| format!("locking {}", path.display())),
            }
        }
        Ok(Claims::Files(files))
    }

    /// Returns only when a claim is lost to another instance (after a broken connection); keeps
    /// the PostgreSQL claims alive meanwhile. Pending forever for file claims.
    pub async fn watch(self) -> anyhow::Error {
        let Claims::Postgres { url, topic, partitions, mut connection } = self else {
            return std::future::pending().await;
        };
        loop {
            tokio::time::sleep(CHECK_EVERY).await;
            if connection.ping().await.is_ok() {
                continue;
            }
            tracing::warn!("lost the connection that holds this instance's partition claims; taking them again");
            connection = loop {
                match PgConnection::connect(&url).await {
                    Ok(fresh) => break fresh,
                    Err(_) => tokio::time::sleep(CHECK_EVERY).await,
                }
            };
            if let Err(error) = lock_all(&mut connection, topic_key(&topic), &topic, &partitions).await {
                return error.context("a partition claim was lost while the database was unreachable");
            }
            tracing::info!(?partitions, "partition claims taken again");
        }
    }
}

/// Logs the error `watch` ends with, and returns it: for `select!` next to the processors.
pub(super) async fn fail_on(watch: impl Future<Output = anyhow::Error>) -> anyhow::Result<()> {
    let error = watch.await;
    tracing::error!(error = %format!("{error:#}"), "stopping: this instance no longer holds its partitions");
    Err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_keys_are_stable_and_differ_between_topics() {
        assert_eq!(topic_key("status-events"), topic_key("status-events"));
        assert_ne!(topic_key("status-events"), topic_key("t1.status-events"));
    }

    #[tokio::test]
    async fn a_file_claim_on_sqlite_refuses_a_second_holder_and_goes_with_the_first() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let first = Claims::take("state.db", dir.path(), "status-events", &[0, 1]).await.expect("first claim");
        let error = Claims::take("state.db", dir.path(), "status-events", &[1, 2]).await.err().expect("an overlap");
        assert!(error.to_string().contains("partition 1 of status-events"), "{error}");
        assert!(Claims::take("state.db", dir.path(), "status-events", &[2]).await.is_ok(), "a disjoint set is free");
        drop(first);
        assert!(Claims::take("state.db", dir.path(), "status-events", &[1]).await.is_ok(), "released with the first");
    }
}
