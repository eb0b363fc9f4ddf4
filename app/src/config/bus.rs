//! `[bus]`: which bus carries the topics, and how to reach Kafka when it is Kafka.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The bus of the deployment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    /// The outbox: `bus_log` in a SQLite file beside the state database (embedded mode), or in
    /// the PostgreSQL state database (which also works with the services apart).
    #[default]
    Outbox,
    /// Kafka (`[bus.kafka]`); needs a binary built with the `kafka` feature (the default).
    Kafka,
}

/// `[bus.kafka]`: the brokers and the producer's limits. Topics must exist with the partition
/// counts given here (or `bus.partitions`, else 4), the same in every process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSection {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    /// Topic name → partitions; a product topic not listed has `bus.partitions`.
    pub topics: BTreeMap<String, u32>,
    /// Put before every topic name on the brokers (`ksa.` → `ksa.status-events`), for a
    /// cluster shared with others; empty by default.
    pub topic_prefix: String,
    pub client_id: String,
    /// An append not durable after this long fails; ingest then answers 503.
    pub delivery_timeout_ms: u64,
    /// Records waiting in the producer before appends are refused (503).
    pub queue_capacity: usize,
    pub linger_ms: u64,
    /// How record batches are compressed: `none`, `gzip`, `snappy` or `lz4`.
    pub compression: String,
    /// How long a start waits for the brokers' metadata.
    pub metadata_timeout_ms: u64,
    /// Only for tansu 0.6 with memory storage (docs/distributed.md); leave off for Kafka.
    pub rewind_when_quiet: bool,
}

impl Default for KafkaSection {
    fn default() -> Self {
        KafkaSection {
            brokers: "127.0.0.1:9092".into(),
            topics: BTreeMap::new(),
            topic_prefix: String::new(),
            client_id: "keycrm-analytics".into(),
            delivery_timeout_ms: 10_000,
            queue_capacity: 100_000,
            linger_ms: 5,
            compression: "lz4".into(),
            metadata_timeout_ms: 10_000,
            rewind_when_quiet: false,
        }
    }
}
