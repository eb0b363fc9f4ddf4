//! Rows derived from an order's events: what the processor writes and the state store keeps.
//! Plain data, so that storage adapters need not know the domain rules.

use serde::{Deserialize, Serialize};

use crate::event::StatusEvent;
use crate::time::Timestamp;

/// A status event as stored in the event log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub project_id: i64,
    pub event: StatusEvent,
    pub received_at: Timestamp,
    pub payload: Option<String>,
}

/// An order's derived state as of its latest event. `settings_revision` and `event_count`
/// version the row: a write never replaces a row of a higher version, so a recompute and the
/// live processor can race without losing the newer result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DerivedOrder {
    pub project_id: i64,
    pub order_id: i64,
    pub current_status_id: i64,
    pub current_group_id: u16,
    pub last_changed_at: Timestamp,
    pub started_at: Timestamp,
    pub untracked_seconds: f64,
    pub delivery_entered_at: Option<Timestamp>,
    pub cycle_duration_to_delivery: Option<f64>,
    pub closed_at: Option<Timestamp>,
    pub cycle_rule_id_applied: Option<u32>,
    /// `pending`, `normal` or `urgent`.
    pub urgency: String,
    /// `none`, `ok`, `near` or `over`.
    pub sla_state: String,
    pub event_count: u32,
    pub settings_revision: i64,
    /// What the analyzer's object for the order holds beyond these columns and `cycles`
    /// (per-group and per-status totals, the SLA profile, `history_truncated`, `as_of`), as
    /// JSON. Intervals are not kept here: they are facts, and read paths recompute the whole
    /// object.
    pub derived_json: String,
    pub cycles: Vec<CycleRow>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CycleRow {
    pub cycle_id: u32,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub wall_seconds: f64,
    pub working_seconds: f64,
    pub is_open: bool,
}

/// Where a consumer group stands in one partition: the next offset it will read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerOffset {
    pub group: String,
    pub topic: String,
    pub partition: u32,
    pub next_offset: i64,
}
