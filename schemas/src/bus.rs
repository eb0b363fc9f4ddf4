//! Messages on the bus and how they are keyed. Records of one order share a key, so they share
//! a partition and keep their order.

use serde::{Deserialize, Serialize};

use crate::event::StatusEvent;
use crate::time::Timestamp;

/// Status changes (and later `ItemsFetched`), keyed by `project:order`.
pub const STATUS_EVENTS: &str = "status-events";
/// One message per order whose derived data changed, for live views.
pub const ORDER_UPDATES: &str = "order-updates";
/// Orders whose items the enricher should fetch.
pub const ENRICH_REQUESTS: &str = "enrich-requests";

/// A message of the `status-events` topic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StatusMessage {
    StatusChanged {
        project_id: i64,
        event: StatusEvent,
        received_at: Timestamp,
        /// The webhook body exactly as received.
        payload: String,
    },
}

impl StatusMessage {
    pub fn project_id(&self) -> i64 {
        match self {
            StatusMessage::StatusChanged { project_id, .. } => *project_id,
        }
    }

    pub fn order_id(&self) -> i64 {
        match self {
            StatusMessage::StatusChanged { event, .. } => event.order_id,
        }
    }
}

/// A message of the `order-updates` topic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderUpdated {
    pub project_id: i64,
    pub order_id: i64,
    pub last_changed_at: Timestamp,
    pub event_count: u32,
}

/// The key of every record about one order.
pub fn order_key(project_id: i64, order_id: i64) -> String {
    format!("{project_id}:{order_id}")
}

/// The idempotency key of a status event: its dedup key within its project.
pub fn status_idempotency_key(project_id: i64, event: &StatusEvent) -> String {
    format!("{project_id}:{}:{}:{}", event.order_id, event.changed_at.as_micros(), event.status_id)
}

/// Kafka's murmur2 partitioner (the Java client's and librdkafka's `murmur2_random` for keyed
/// records), so the outbox and Kafka put a key in the same partition.
pub fn partition_for(key: &str, partitions: u32) -> u32 {
    if partitions <= 1 {
        return 0;
    }
    (murmur2(key.as_bytes()) & 0x7fff_ffff) % partitions
}

fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka_reference_values() {
        // Values from Kafka's own partitioner tests (Utils.murmur2).
        assert_eq!(murmur2(b"21") as i32, -973_932_308);
        assert_eq!(murmur2(b"foobar") as i32, -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1_486_304_829);
        assert_eq!(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32, -58_897_971);
        assert_eq!(murmur2(b"abc") as i32, 479_470_107);
    }

    #[test]
    fn one_order_always_lands_in_one_partition() {
        let key = order_key(3, 23196);
        assert_eq!(key, "3:23196");
        assert_eq!(partition_for(&key, 8), partition_for(&key, 8));
        assert!(partition_for(&key, 8) < 8);
        assert_eq!(partition_for(&key, 1), 0);
    }
}
