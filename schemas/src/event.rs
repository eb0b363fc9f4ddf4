//! The normalized status event: what the event log stores for each order-status change.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// Where an event came from. Backfilled and reconciled events carry no history before them, so
/// the UI can say that an order's timeline is truncated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    #[default]
    Webhook,
    Backfilled,
    Reconciled,
}

/// One entry of an order into a status, as KeyCRM reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StatusEvent {
    pub order_id: i64,
    pub status_id: i64,
    /// KeyCRM's status group (1–6); 0 when the webhook did not say and the status dictionary
    /// has not been consulted yet.
    pub group_id: u16,
    pub changed_at: Timestamp,
    /// `created_at`, else `ordered_at`, else `changed_at`.
    pub order_created_at: Timestamp,
    pub source: EventSource,
}

/// Identity of an event: an identical repeat is dropped, re-entering a status at another time
/// is a new event. The project is implied by the log the event lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DedupKey {
    pub order_id: i64,
    pub changed_at: Timestamp,
    pub status_id: i64,
}

impl StatusEvent {
    pub fn dedup_key(&self) -> DedupKey {
        DedupKey { order_id: self.order_id, changed_at: self.changed_at, status_id: self.status_id }
    }

    /// The order in which events form a timeline: `(changed_at, group, status)`, then the
    /// remaining fields so that the order is total and never depends on arrival.
    pub fn timeline_key(&self) -> (Timestamp, u16, i64, Timestamp, EventSource) {
        (self.changed_at, self.group_id, self.status_id, self.order_created_at, self.source)
    }
}

impl EventSource {
    fn rank(self) -> u8 {
        match self {
            EventSource::Webhook => 0,
            EventSource::Backfilled => 1,
            EventSource::Reconciled => 2,
        }
    }
}

impl PartialOrd for EventSource {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for EventSource {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}
