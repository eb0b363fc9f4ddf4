//! The bus: durable, partitioned, ordered logs of records ("topics"). Records with one key go
//! to one partition and keep their order there. Consumers read by offset; where they stand is
//! kept by the consumer itself (in the state database, inside its own transaction), never here.

#[cfg(feature = "kafka")]
pub mod kafka;
pub mod outbox;

use std::future::Future;
use std::time::Duration;

use ksa_schemas::Timestamp;

/// A record to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRecord {
    /// Decides the partition (see `ksa_schemas::bus::partition_for`).
    pub key: String,
    pub payload: Vec<u8>,
    /// When set, a record with the same key already appended to the topic makes this one a
    /// duplicate: it is not appended again.
    pub idempotency_key: Option<String>,
}

/// What became of one appended record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    Appended { partition: u32, offset: i64 },
    Duplicate,
}

/// A record read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub partition: u32,
    pub offset: i64,
    pub key: String,
    pub payload: Vec<u8>,
    pub appended_at: Timestamp,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Too many appends are waiting: the caller should answer 503 with `Retry-After`.
    #[error("the bus is at capacity; retry shortly")]
    Overloaded,
    /// The records could not be made durable (storage down, broker unreachable).
    #[error("the bus cannot make records durable: {0}")]
    Unavailable(String),
    #[error("the bus is shutting down")]
    Closed,
    #[error("unknown topic `{0}`")]
    UnknownTopic(String),
}

/// A durable, partitioned log.
pub trait Bus: Clone + Send + Sync + 'static {
    /// Partitions of `topic` (fixed for the life of the bus).
    fn partitions(&self, topic: &str) -> Result<u32, BusError>;

    /// Appends `records` and resolves once they are durable, with one outcome per record in
    /// order. Appends from many callers share one transaction (group commit). When too many
    /// appends are already waiting it fails fast with [`BusError::Overloaded`].
    fn append(&self, topic: &str, records: Vec<NewRecord>) -> impl Future<Output = Result<Vec<AppendOutcome>, BusError>> + Send;

    /// Up to `max` records of `partition` with offsets greater than `after`, oldest first.
    /// When there are none it waits up to `wait` for an append (a notification, not polling).
    fn read(
        &self,
        topic: &str,
        partition: u32,
        after: i64,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Record>, BusError>> + Send;

    /// The offset of the last record of `partition` (−1 when it has none): a reader that reads
    /// after it sees only what is appended from then on.
    fn end_offset(&self, topic: &str, partition: u32) -> impl Future<Output = Result<i64, BusError>> + Send;

    /// Deletes the records of `partition` with offsets up to and including `through` that were
    /// appended before `appended_before` (retention of consumed records). Returns how many.
    fn truncate(
        &self,
        topic: &str,
        partition: u32,
        through: i64,
        appended_before: Timestamp,
    ) -> impl Future<Output = Result<u64, BusError>> + Send;

    /// Forgets the idempotency keys of `topic` recorded before `appended_before`: a repeat of
    /// such a record is appended again (and deduplicated downstream, by the event's key).
    /// Returns how many. A bus that keeps no keys (Kafka) has nothing to forget.
    fn forget_keys(&self, topic: &str, appended_before: Timestamp) -> impl Future<Output = Result<u64, BusError>> + Send {
        let _ = (topic, appended_before);
        async { Ok(0) }
    }
}

/// How the outbox adapter is sized.
#[derive(Clone, Debug)]
pub struct OutboxConfig {
    /// Partitions per topic.
    pub partitions: u32,
    /// Appends waiting for the group-commit writer before new ones are refused.
    pub queue_capacity: usize,
    /// Records written in one transaction at most.
    pub max_batch_records: usize,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig { partitions: 4, queue_capacity: 4096, max_batch_records: 2000 }
    }
}
