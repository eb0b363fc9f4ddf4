//! The Kafka adapter (feature `kafka`): the bus as Kafka topics, through rdkafka.
//!
//! What holds:
//! - **Durable appends.** The producer is idempotent with `acks=all`; an append resolves once
//!   every record is acknowledged, or fails with [`BusError::Unavailable`] after
//!   `delivery_timeout` (the brokers cannot make it durable) and with [`BusError::Overloaded`]
//!   when the producer's queue is full. No transactions.
//! - **Partitioning** is librdkafka's `murmur2_random`, the Java client's: a key lands in
//!   `ksa_schemas::bus::partition_for(key, partitions)`, as in the outbox.
//! - **Offsets** are Kafka's plus one, so that they count from 1 as the outbox's do and a
//!   consumer that has read nothing reads `after = 0`.
//! - **Static assignment.** A read names its partition and offset; the adapter assigns that
//!   partition to a consumer of its own (no consumer group, nothing committed to Kafka) and seeks
//!   when the caller asks for another position than the one it stands at. Where a consumer stands
//!   is the caller's to keep, in its state database (docs/architecture.md, invariant 5).
//! - **Idempotency keys** cannot be checked by Kafka: an append never reports `Duplicate`, and
//!   repeated records are dropped downstream by the processor's event dedup key.
//! - **Retention** is the broker's: [`Bus::truncate`] deletes nothing and returns 0. A read
//!   below the broker's oldest retained offset fails loudly instead of skipping records.

mod config;
mod reader;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

pub use self::config::KafkaConfig;
use self::reader::PartitionReader;
use crate::{AppendOutcome, Bus, BusError, NewRecord, Record};
use ksa_schemas::Timestamp;
/// The client library, for callers that need its admin API (tests create topics with it).
pub use rdkafka;

/// The bus over Kafka. Cheap to clone; clones share the producer and the readers.
#[derive(Clone)]
pub struct KafkaBus {
    inner: Arc<Inner>,
}

/// A partition's reader, held by one read at a time.
type SharedReader = Arc<tokio::sync::Mutex<PartitionReader>>;

struct Inner {
    config: KafkaConfig,
    /// The producer and its generation, counted from 0: it is replaced when the brokers fence
    /// it (see [`KafkaBus::replace_fenced_producer`]).
    producer: RwLock<(u64, FutureProducer)>,
    readers: Mutex<HashMap<(String, u32), SharedReader>>,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus").field("brokers", &self.inner.config.brokers).field("topics", &self.inner.config.topics).finish()
    }
}

impl KafkaBus {
    /// Creates the producer and checks that every configured topic exists on the brokers with
    /// the configured partition count. Fails with `Unavailable` when the brokers do not answer
    /// within `metadata_timeout`, and with `UnknownTopic` naming a topic that is missing or
    /// has another partition count.
    pub async fn connect(config: KafkaConfig) -> Result<KafkaBus, BusError> {
        let producer = create_producer(&config)?;
        let partitions = fetch_partition_counts(&producer, &config).await?;
        for (topic, expected) in &config.topics {
            let topic = &format!("{}{topic}", config.topic_prefix);
            match partitions.get(topic) {
                Some(found) if found == expected => {}
                Some(found) => {
                    return Err(BusError::UnknownTopic(format!(
                        "{topic} (it has {found} partitions on {}, the configuration says {expected}; keys would map to \
                         other partitions)",
                        config.brokers
                    )));
                }
                None => return Err(BusError::UnknownTopic(format!("{topic} (missing on {}; create it first)", config.brokers))),
            }
        }
        tracing::info!(brokers = %config.brokers, topics = ?config.topics, "connected to Kafka");
        Ok(KafkaBus { inner: Arc::new(Inner { config, producer: RwLock::new((0, producer)), readers: Mutex::new(HashMap::new()) }) })
    }

    /// The current producer and its generation.
    fn producer(&self) -> Result<(u64, FutureProducer), BusError> {
        self.inner.producer.read().map(|p| p.clone()).map_err(|_| BusError::Unavailable("the Kafka producer panicked".into()))
    }

    /// After the brokers fenced the producer of `generation` (or it failed fatally), puts a
    /// new producer, with a new producer id, in its place, unless another append did already;
    /// the records left in the old one fail, and their appends with them (callers retry). A
    /// fenced idempotent producer never recovers by itself: after records timed out librdkafka
    /// bumps its epoch on its own (KIP-360), which tansu 0.6 answers with `ProducerFenced` for
    /// good, so ingest answered 503 for ever after a broker outage (found by the broker fault
    /// test, app/tests/faults.rs).
    fn replace_fenced_producer(&self, generation: u64) {
        let Ok(mut current) = self.inner.producer.write() else { return };
        if current.0 != generation {
            return;
        }
        match create_producer(&self.inner.config) {
            Ok(fresh) => {
                tracing::warn!(brokers = %self.inner.config.brokers, "the Kafka producer was fenced; replaced it with a new one");
                let (_, old) = std::mem::replace(&mut *current, (generation + 1, fresh));
                // Dropping a producer purges it and waits for its thread: not on an async worker.
                drop(current);
                tokio::task::spawn_blocking(move || drop(old));
            }
            Err(err) => tracing::warn!(error = %err, "the Kafka producer was fenced and cannot be replaced yet"),
        }
    }

    pub fn config(&self) -> &KafkaConfig {
        &self.inner.config
    }

    fn reader(&self, topic: &str, partition: u32) -> Result<SharedReader, BusError> {
        let mut readers = self.inner.readers.lock().map_err(|_| BusError::Unavailable("a Kafka reader panicked".into()))?;
        if let Some(reader) = readers.get(&(topic.to_owned(), partition)) {
            return Ok(reader.clone());
        }
        let reader = Arc::new(tokio::sync::Mutex::new(PartitionReader::new(&self.inner.config, &self.broker_topic(topic), partition)?));
        readers.insert((topic.to_owned(), partition), reader.clone());
        Ok(reader)
    }

    /// The name of `topic` on the brokers.
    fn broker_topic(&self, topic: &str) -> String {
        format!("{}{topic}", self.inner.config.topic_prefix)
    }

    fn check_partition(&self, topic: &str, partition: u32) -> Result<(), BusError> {
        let partitions = self.partitions(topic)?;
        if partition < partitions {
            Ok(())
        } else {
            Err(BusError::UnknownTopic(format!("{topic} partition {partition} (the topic has {partitions})")))
        }
    }
}

impl Bus for KafkaBus {
    fn partitions(&self, topic: &str) -> Result<u32, BusError> {
        self.inner.config.topics.get(topic).copied().ok_or_else(|| BusError::UnknownTopic(topic.to_owned()))
    }

    async fn append(&self, topic: &str, records: Vec<NewRecord>) -> Result<Vec<AppendOutcome>, BusError> {
        self.partitions(topic)?;
        let broker_topic = self.broker_topic(topic);
        let (generation, producer) = self.producer()?;
        let mut deliveries = Vec::with_capacity(records.len());
        for record in &records {
            let message = FutureRecord::to(&broker_topic).key(record.key.as_bytes()).payload(&record.payload);
            match producer.send_result(message) {
                Ok(delivery) => deliveries.push(delivery),
                // Records enqueued before this one are still delivered; a retry of the whole
                // append may repeat them, which the consumers' dedup absorbs.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => return Err(BusError::Overloaded),
                Err((error, _)) => {
                    if is_fenced(&error) {
                        self.replace_fenced_producer(generation);
                    }
                    return Err(BusError::Unavailable(format!("cannot enqueue a record for {topic}: {error}")));
                }
            }
        }
        // Not held while waiting: the last holder of a replaced producer drops it, which blocks.
        drop(producer);
        let mut outcomes = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(delivered)) => {
                    outcomes.push(AppendOutcome::Appended { partition: delivered.partition as u32, offset: delivered.offset + 1 })
                }
                Ok(Err((error, _))) => {
                    if is_fenced(&error) {
                        self.replace_fenced_producer(generation);
                    }
                    return Err(BusError::Unavailable(format!("{topic}: {error}")));
                }
                Err(_canceled) => return Err(BusError::Closed),
            }
        }
        Ok(outcomes)
    }

    async fn read(&self, topic: &str, partition: u32, after: i64, max: usize, wait: Duration) -> Result<Vec<Record>, BusError> {
        self.check_partition(topic, partition)?;
        if max == 0 {
            return Ok(Vec::new());
        }
        let reader = self.reader(topic, partition)?;
        let mut reader = reader.lock().await;
        reader.read(after, max, wait).await
    }

    async fn end_offset(&self, topic: &str, partition: u32) -> Result<i64, BusError> {
        self.check_partition(topic, partition)?;
        let (_, producer) = self.producer()?;
        let broker_topic = self.broker_topic(topic);
        let timeout = self.inner.config.delivery_timeout;
        let watermarks = tokio::task::spawn_blocking(move || producer.client().fetch_watermarks(&broker_topic, partition as i32, timeout))
            .await
            .map_err(|_| BusError::Unavailable("fetching the end of a partition panicked".into()))?;
        match watermarks {
            // Our offsets are the broker's plus one: the last record's is the high watermark.
            Ok((_, high)) => Ok(if high > 0 { high } else { -1 }),
            Err(error) => Err(BusError::Unavailable(format!("cannot read the end of {topic} partition {partition}: {error}"))),
        }
    }

    async fn truncate(&self, topic: &str, partition: u32, _through: i64, _appended_before: Timestamp) -> Result<u64, BusError> {
        self.check_partition(topic, partition)?;
        Ok(0)
    }
}

/// The idempotent producer the adapter appends with.
fn create_producer(config: &KafkaConfig) -> Result<FutureProducer, BusError> {
    ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", &config.client_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("message.timeout.ms", millis(config.delivery_timeout))
        .set("linger.ms", millis(config.linger))
        .set("compression.type", &config.compression)
        .set("queue.buffering.max.messages", config.queue_capacity.to_string())
        .create()
        .map_err(|e| BusError::Unavailable(format!("cannot create the Kafka producer for {}: {e}", config.brokers)))
}

/// Whether a producer that met `error` can never append again: the brokers fenced it, or
/// librdkafka raised a fatal error of the idempotent producer.
fn is_fenced(error: &KafkaError) -> bool {
    matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::Fatal))
}

/// Partition counts of the configured topics, as the brokers report them. librdkafka's
/// metadata call blocks, so it runs off the async workers.
async fn fetch_partition_counts(producer: &FutureProducer, config: &KafkaConfig) -> Result<HashMap<String, u32>, BusError> {
    let producer = producer.clone();
    let timeout = config.metadata_timeout;
    let brokers = config.brokers.clone();
    tokio::task::spawn_blocking(move || {
        let metadata = producer
            .client()
            .fetch_metadata(None, timeout)
            .map_err(|e| BusError::Unavailable(format!("the Kafka brokers {brokers} did not answer: {e}")))?;
        Ok(metadata.topics().iter().filter(|t| t.error().is_none()).map(|t| (t.name().to_owned(), t.partitions().len() as u32)).collect())
    })
    .await
    .map_err(|e| BusError::Unavailable(format!("the Kafka metadata request did not finish: {e}")))?
}

fn millis(duration: Duration) -> String {
    duration.as_millis().max(1).to_string()
}
