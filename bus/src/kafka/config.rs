//! How the Kafka adapter reaches the brokers and which topics it uses.

use std::collections::BTreeMap;
use std::time::Duration;

/// The Kafka bus. Topics are not created here: they must exist with exactly the partition
/// counts given (`scripts/services` creates them for tests; operators do in production), so a
/// key maps to the same partition in every process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]`, librdkafka's `bootstrap.servers`.
    pub brokers: String,
    /// Topic name → partitions.
    pub topics: BTreeMap<String, u32>,
    /// Put before every topic name on the brokers (`ksa.` makes `status-events`
    /// `ksa.status-events`), so several deployments, or test runs, can share a cluster. Callers
    /// keep using the plain names.
    pub topic_prefix: String,
    /// Shown in the broker's logs and metrics.
    pub client_id: String,
    /// How long an append may wait for the brokers to make its records durable before it fails
    /// with `Unavailable` (librdkafka's `message.timeout.ms`): ingest then answers 503.
    pub delivery_timeout: Duration,
    /// Records waiting in the producer before appends are refused with `Overloaded`
    /// (`queue.buffering.max.messages`).
    pub queue_capacity: usize,
    /// How long the producer lingers to batch records (`linger.ms`).
    pub linger: Duration,
    /// How the producer compresses record batches (`compression.type`: `none`, `gzip`,
    /// `snappy`, `lz4` or `zstd`). The brokers keep and serve batches as produced, so the
    /// bytes they store and move shrink with it (JSON events by ≈ 3×); consumers decompress.
    pub compression: String,
    /// How long `connect` waits for the brokers' metadata.
    pub metadata_timeout: Duration,
    /// Works around brokers that return nothing for a fetch starting inside a record batch
    /// (tansu 0.6 with memory storage): a reader positioned inside the log that gets nothing for
    /// a second reads the partition once more from its start, skipping up to its position.
    /// Leave off for Kafka.
    pub rewind_when_quiet: bool,
}

impl KafkaConfig {
    /// The three topics of the product with `partitions` each.
    pub fn new(brokers: impl Into<String>, partitions: u32) -> Self {
        let topics = [ksa_schemas::bus::STATUS_EVENTS, ksa_schemas::bus::ORDER_UPDATES, ksa_schemas::bus::ENRICH_REQUESTS]
            .into_iter()
            .map(|topic| (topic.to_owned(), partitions))
            .collect();
        KafkaConfig {
            brokers: brokers.into(),
            topics,
            topic_prefix: String::new(),
            client_id: "keycrm-analytics".into(),
            delivery_timeout: Duration::from_secs(10),
            queue_capacity: 100_000,
            linger: Duration::from_millis(5),
            compression: "lz4".into(),
            metadata_timeout: Duration::from_secs(10),
            rewind_when_quiet: false,
        }
    }
}
