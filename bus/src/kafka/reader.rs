//! One partition read by offset: a consumer assigned to that partition alone, without a group.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio::time::Instant;

use super::KafkaConfig;
use crate::{BusError, Record};
use ksa_schemas::Timestamp;

/// Records of the latest reads kept to answer a read that starts a little behind the reader.
const RECENT_RECORDS: usize = 64;

/// How long a reader positioned inside the log may see nothing before it rewinds, where the
/// broker needs it (see [`PartitionReader::rewind_if_stuck`]).
const STUCK_AFTER: Duration = Duration::from_secs(1);

/// Reads one partition in offset order. It stands at `position` (a Kafka offset) and re-assigns
/// itself when asked for another position, e.g. when a processor retries a batch it did not
/// commit.
pub(super) struct PartitionReader {
    topic: String,
    partition: u32,
    consumer: StreamConsumer,
    rewind_when_quiet: bool,
    /// The Kafka offset the caller reads next; records below it are skipped.
    position: Option<i64>,
    /// Since when the consumer is assigned without having delivered anything, and whether it
    /// has rewound already; `None` once a record came.
    quiet_since: Option<(Instant, bool)>,
    /// The last records delivered, oldest first, consecutive up to `position`. The processor
    /// peeks at one record while idle (to wake up) and then reads from where it stood: served
    /// from here, that costs no re-assignment, after which a read that does not wait would get
    /// nothing until the consumer had fetched again.
    recent: std::collections::VecDeque<Record>,
}

impl PartitionReader {
    pub(super) fn new(config: &KafkaConfig, topic: &str, partition: u32) -> Result<Self, BusError> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("client.id", &config.client_id)
            // Required by librdkafka for a consumer; never used to commit or to join a group.
            .set("group.id", format!("{}-{topic}-{partition}", config.client_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "error")
            .set("enable.partition.eof", "false")
            // A reader at the tail asks the broker to hold its fetch until 256 KiB (≈ 600
            // compressed events) have come or 250 ms have passed. With librdkafka's defaults
            // (answer as soon as one byte is there) every consumer fetched again after each
            // few records while ingest produced: in the live replay the broker spent a quarter
            // more CPU, and the whole path sustained ≈ 12,500 events/s instead of ≈ 15,500
            // (BENCHMARKS.md). The processors linger longer than this on a short batch anyway.
            .set("fetch.wait.max.ms", "250")
            .set("fetch.min.bytes", "262144")
            .create()
            .map_err(|e| BusError::Unavailable(format!("cannot create a Kafka consumer for {topic}/{partition}: {e}")))?;
        Ok(PartitionReader {
            topic: topic.to_owned(),
            partition,
            consumer,
            rewind_when_quiet: config.rewind_when_quiet,
            position: None,
            quiet_since: None,
            recent: std::collections::VecDeque::new(),
        })
    }

    /// Up to `max` records with bus offsets greater than `after`, waiting up to `wait` for the
    /// first one.
    pub(super) async fn read(&mut self, after: i64, max: usize, wait: Duration) -> Result<Vec<Record>, BusError> {
        // Bus offsets are Kafka's plus one: after = n means Kafka offset n comes next.
        let start = after.max(0);
        let mut records = Vec::new();
        if self.position != Some(start) {
            if self.recent_covers(start) {
                let behind: Vec<&Record> = self.recent.iter().filter(|r| r.offset > start).collect();
                records.extend(behind.iter().take(max).map(|r| (*r).clone()));
                if records.len() < behind.len() {
                    return Ok(records);
                }
            } else {
                self.assign(start, start)?;
            }
        }
        let from_recent = records.len();
        let deadline = Instant::now() + wait;
        while records.len() < max {
            // Once something arrived, take only what is already buffered.
            let patience = if records.is_empty() { deadline.saturating_duration_since(Instant::now()) } else { Duration::ZERO };
            let message = match tokio::time::timeout(patience, self.consumer.recv()).await {
                Err(_elapsed) => break,
                Ok(Err(error)) => {
                    // The position is unknown after an error: assign again on the next read.
                    self.position = None;
                    return Err(BusError::Unavailable(format!("reading {}/{}: {error}", self.topic, self.partition)));
                }
                Ok(Ok(message)) => message,
            };
            if message.offset() < start {
                continue;
            }
            self.position = Some(message.offset() + 1);
            self.quiet_since = None;
            records.push(Record {
                partition: self.partition,
                offset: message.offset() + 1,
                key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                payload: message.payload().unwrap_or_default().to_vec(),
                appended_at: message.timestamp().to_millis().map_or_else(now, |ms| Timestamp::from_micros(ms.saturating_mul(1000))),
            });
        }
        let delivered = &records[from_recent.max(records.len().saturating_sub(RECENT_RECORDS))..];
        for record in delivered {
            if self.recent.len() == RECENT_RECORDS {
                self.recent.pop_front();
            }
            self.recent.push_back(record.clone());
        }
        if records.is_empty() {
            self.rewind_if_stuck().await?;
        }
        Ok(records)
    }

    /// Whether the records after bus offset `start` up to the reader's position are all in
    /// `recent`, so that a read from `start` can begin there.
    fn recent_covers(&self, start: i64) -> bool {
        match (self.recent.front(), self.position) {
            (Some(first), Some(position)) => first.offset <= start + 1 && start < position,
            _ => false,
        }
    }

    /// tansu 0.6 (memory storage) answers a fetch that starts inside a record batch with
    /// nothing, where Kafka sends the whole batch and the client skips what precedes its
    /// position; its high watermark is wrong in that case too (the last batch's base offset
    /// plus one). A reader positioned there would wait forever. With
    /// [`KafkaConfig::rewind_when_quiet`], a reader that got nothing for [`STUCK_AFTER`] since
    /// it was positioned inside the log reads it once more from its start and skips up to its
    /// position. Off for Kafka, where it would only cost a re-read.
    async fn rewind_if_stuck(&mut self) -> Result<(), BusError> {
        if !self.rewind_when_quiet {
            return Ok(());
        }
        let (Some(position), Some((since, false))) = (self.position, self.quiet_since) else { return Ok(()) };
        if position == 0 || since.elapsed() < STUCK_AFTER {
            return Ok(());
        }
        tracing::debug!(topic = %self.topic, partition = self.partition, position, "nothing at a position inside the log; reading from its start");
        self.assign(0, position)?;
        self.quiet_since = Some((Instant::now(), true));
        Ok(())
    }

    /// Assigns the partition at Kafka offset `from`; records below `position` are skipped.
    fn assign(&mut self, from: i64, position: i64) -> Result<(), BusError> {
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&self.topic, self.partition as i32, Offset::Offset(from))
            .and_then(|()| self.consumer.assign(&assignment))
            .map_err(|e| BusError::Unavailable(format!("cannot assign {}/{} at {from}: {e}", self.topic, self.partition)))?;
        self.position = Some(position);
        self.quiet_since = Some((Instant::now(), false));
        self.recent.clear();
        Ok(())
    }
}

fn now() -> Timestamp {
    let micros = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
    Timestamp::from_micros(micros)
}
