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

/// A message of the `status-events` topic: a JSON object whose `type` names the variant. It is
/// read through [`WireMessage`] (see its `Deserialize`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StatusMessage {
    StatusChanged {
        project_id: i64,
        event: StatusEvent,
        received_at: Timestamp,
        /// The webhook body exactly as received.
        payload: String,
    },
    /// The enricher fetched the order's items (stored in `order_items` before this message is
    /// published). The processor recomputes the order with urgency from the stored items, in
    /// order with the order's other events.
    ItemsFetched {
        project_id: i64,
        order_id: i64,
        /// Urgency as the enricher computed it with the rules it saw; the processor recomputes
        /// it from the stored items with its own rules, so this is informative.
        urgency: String,
        fetched_at: Timestamp,
    },
    /// A person changed the order's override (stored in `order_overrides` before this message
    /// is published). The processor recomputes the order with it.
    OverrideChanged { project_id: i64, order_id: i64, changed_at: Timestamp },
}

/// The variant names of [`StatusMessage`] on the wire.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum MessageType {
    StatusChanged,
    ItemsFetched,
    OverrideChanged,
}

/// Every field of every [`StatusMessage`] variant, read in one pass. The derived reader of an
/// internally tagged enum first buffers the whole object (every key, and the webhook body once
/// more) to find the tag; this one reads each field straight into place, whatever the order of
/// the keys. Unknown keys are ignored, as before.
#[derive(Deserialize)]
struct WireMessage {
    #[serde(rename = "type")]
    kind: MessageType,
    project_id: i64,
    event: Option<StatusEvent>,
    received_at: Option<Timestamp>,
    payload: Option<String>,
    order_id: Option<i64>,
    urgency: Option<String>,
    fetched_at: Option<Timestamp>,
    changed_at: Option<Timestamp>,
}

impl<'de> Deserialize<'de> for StatusMessage {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        fn required<T, E: serde::de::Error>(value: Option<T>, field: &'static str) -> Result<T, E> {
            value.ok_or_else(|| E::missing_field(field))
        }
        let wire = WireMessage::deserialize(deserializer)?;
        Ok(match wire.kind {
            MessageType::StatusChanged => StatusMessage::StatusChanged {
                project_id: wire.project_id,
                event: required(wire.event, "event")?,
                received_at: required(wire.received_at, "received_at")?,
                payload: required(wire.payload, "payload")?,
            },
            MessageType::ItemsFetched => StatusMessage::ItemsFetched {
                project_id: wire.project_id,
                order_id: required(wire.order_id, "order_id")?,
                urgency: required(wire.urgency, "urgency")?,
                fetched_at: required(wire.fetched_at, "fetched_at")?,
            },
            MessageType::OverrideChanged => StatusMessage::OverrideChanged {
                project_id: wire.project_id,
                order_id: required(wire.order_id, "order_id")?,
                changed_at: required(wire.changed_at, "changed_at")?,
            },
        })
    }
}

impl StatusMessage {
    pub fn project_id(&self) -> i64 {
        match self {
            StatusMessage::StatusChanged { project_id, .. }
            | StatusMessage::ItemsFetched { project_id, .. }
            | StatusMessage::OverrideChanged { project_id, .. } => *project_id,
        }
    }

    pub fn order_id(&self) -> i64 {
        match self {
            StatusMessage::StatusChanged { event, .. } => event.order_id,
            StatusMessage::ItemsFetched { order_id, .. } | StatusMessage::OverrideChanged { order_id, .. } => *order_id,
        }
    }
}

/// Why an order's items are wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnrichReason {
    /// The order has no items yet.
    MissingItems,
    /// The order entered a status group after which items may have changed.
    GroupReached,
    /// Asked for by an operator.
    Manual,
}

/// A message of the `enrich-requests` topic, keyed by `project:order`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrichRequest {
    pub project_id: i64,
    pub order_id: i64,
    pub reason: EnrichReason,
    /// The status the order is in, when known: a status missing from the project's dictionary
    /// makes the enricher refresh the dictionary at once.
    #[serde(default)]
    pub status_id: Option<i64>,
}

/// A processor's word, inside its process, that an order's derived state was committed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderUpdated {
    pub project_id: i64,
    pub order_id: i64,
    pub last_changed_at: Timestamp,
    pub event_count: u32,
}

/// A message of the `order-updates` topic: what live views and the query API's order index
/// learn. Rows are as of the order's latest event, so a republished row is the same row.
///
/// Externally tagged (`{"order_updated": {…}}`): an internally tagged enum is read through a
/// buffer that cannot turn the rows' map keys (`"2"`) back into numbers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveMessage {
    /// The order's row after a committed change, keyed by `project:order`.
    OrderUpdated { project_id: i64, row: Box<crate::row::OrderRow> },
    /// Reload the project: its settings changed and every row was recomputed. Keyed by
    /// [`project_key`].
    Invalidate { project_id: i64, revision: i64 },
    /// How far a project's recompute has come. Keyed by [`project_key`].
    Recompute { project_id: i64, revision: i64, orders_done: u64, orders_total: u64, state: String },
}

impl LiveMessage {
    pub fn project_id(&self) -> i64 {
        match self {
            LiveMessage::OrderUpdated { project_id, .. }
            | LiveMessage::Invalidate { project_id, .. }
            | LiveMessage::Recompute { project_id, .. } => *project_id,
        }
    }
}

/// The key of records about a whole project.
pub fn project_key(project_id: i64) -> String {
    format!("{project_id}")
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
    fn status_changed_keeps_its_wire_shape() {
        let message = StatusMessage::StatusChanged {
            project_id: 3,
            event: StatusEvent {
                order_id: 7,
                status_id: 20,
                group_id: 2,
                changed_at: Timestamp::from_seconds(1),
                order_created_at: Timestamp::from_seconds(0),
                source: crate::EventSource::Webhook,
            },
            received_at: Timestamp::from_seconds(2),
            payload: "{}".into(),
        };
        let json = serde_json::to_string(&message).unwrap();
        assert!(json.starts_with(r#"{"type":"status_changed","project_id":3,"event":{"order_id":7"#), "{json}");
        assert_eq!(serde_json::from_str::<StatusMessage>(&json).unwrap(), message);
    }

    #[test]
    fn items_fetched_round_trips_and_names_its_order() {
        let message =
            StatusMessage::ItemsFetched { project_id: 3, order_id: 7, urgency: "urgent".into(), fetched_at: Timestamp::from_seconds(5) };
        let json = serde_json::to_string(&message).unwrap();
        assert!(json.contains(r#""type":"items_fetched""#), "{json}");
        let back: StatusMessage = serde_json::from_str(&json).unwrap();
        assert_eq!((back.project_id(), back.order_id()), (3, 7));
    }

    #[test]
    fn messages_are_read_whatever_the_key_order_and_name_what_is_missing() {
        let reordered = r#"{"payload":"{\"a\":1}","received_at":"1970-01-01T00:00:02Z","extra":[1,{"x":null}],
            "event":{"order_id":7,"status_id":20,"group_id":2,"changed_at":"1970-01-01T00:00:01Z",
            "order_created_at":"1970-01-01T00:00:00Z","source":"webhook"},"project_id":3,"type":"status_changed"}"#;
        match serde_json::from_str::<StatusMessage>(reordered).unwrap() {
            StatusMessage::StatusChanged { project_id, event, payload, .. } => {
                assert_eq!((project_id, event.order_id, payload.as_str()), (3, 7, r#"{"a":1}"#));
            }
            other => panic!("{other:?}"),
        }
        let missing = serde_json::from_str::<StatusMessage>(r#"{"type":"status_changed","project_id":3}"#).unwrap_err();
        assert!(missing.to_string().contains("missing field `event`"), "{missing}");
        let missing = serde_json::from_str::<StatusMessage>(r#"{"type":"items_fetched","project_id":3,"order_id":7}"#).unwrap_err();
        assert!(missing.to_string().contains("missing field `urgency`"), "{missing}");
        let unknown = serde_json::from_str::<StatusMessage>(r#"{"type":"order_deleted","project_id":3}"#).unwrap_err();
        assert!(unknown.to_string().contains("order_deleted"), "{unknown}");
        assert!(serde_json::from_str::<StatusMessage>(r#"{"project_id":3}"#).unwrap_err().to_string().contains("`type`"));
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
