//! An order as the dashboard shows it: one row of `GET /api/orders`, one `order_updated` of the
//! live feed, one line of `orders.csv`. The processor stores it as of the order's latest event
//! (`orders_current.derived_json`), with the instants at which its SLA states will change if no
//! event arrives; readers measure it at their own instant from those (`ksa_domain::row`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// The shape of the rows the processor writes: a project whose stored rows are of an older one
/// is recomputed once (1: rows are [`OrderRow`]s; 2: fact rows carry the order's creation and
/// the interval's group visit, `facts::IntervalFact`).
pub const ROW_FORMAT: i64 = 2;

/// Why an order is urgent, normal or pending.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UrgencySource {
    /// Its items are not fetched yet: measured on the normal grid.
    #[default]
    Pending,
    /// Its items matched no active rule.
    Items,
    /// A rule matched one of its items.
    Rule {
        /// The rule's name, if it has one.
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// `sku`, `offer_id` or `product_id`.
        match_type: String,
        match_value: String,
        /// The matching item's position in the order.
        line: usize,
    },
    /// A person set it.
    Override,
}

/// An SLA state, worst greatest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RowSla {
    #[default]
    None,
    Ok,
    Near,
    Over,
}

impl RowSla {
    pub fn as_str(self) -> &'static str {
        match self {
            RowSla::None => "none",
            RowSla::Ok => "ok",
            RowSla::Near => "near",
            RowSla::Over => "over",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "none" => Some(RowSla::None),
            "ok" => Some(RowSla::Ok),
            "near" => Some(RowSla::Near),
            "over" => Some(RowSla::Over),
            _ => None,
        }
    }
}

/// Durations are held in microseconds and written as seconds (`working_seconds`): the JSON
/// matches the offline analyzer's, and reading it back gives the same microseconds (a double
/// holds a microsecond count of centuries exactly enough to round back).
pub mod seconds {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(micros: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(*micros as f64 / 1_000_000.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        let seconds = f64::deserialize(deserializer)?;
        Ok((seconds * 1_000_000.0).round() as i64)
    }
}

/// All visits to one group or status, up to the row's `as_of`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StageRow {
    #[serde(rename = "working_seconds", with = "seconds")]
    pub working_micros: i64,
    #[serde(rename = "wall_seconds", with = "seconds")]
    pub wall_micros: i64,
    pub visits: u32,
    /// The limit that applies (working seconds), on the order's grid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_seconds: Option<i64>,
    pub sla: RowSla,
}

/// One cycle rule's duration for the order, up to the row's `as_of`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CycleRow {
    pub title: String,
    pub started_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    #[serde(rename = "working_seconds", with = "seconds")]
    pub working_micros: i64,
    #[serde(rename = "wall_seconds", with = "seconds")]
    pub wall_micros: i64,
    pub open: bool,
}

/// The next SLA change of an order if no event arrives: at `at` the order's `scope` (its
/// current group or status) turns `state`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaChange {
    pub at: Timestamp,
    pub state: RowSla,
    /// `group` or `status`.
    pub scope: String,
}

/// When the current group's and status's totals cross their near and over thresholds if no
/// event arrives (the instants are after `last_changed_at`; a threshold already crossed, or
/// with no limit, has none).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Crossings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_near_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_over_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_near_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_over_at: Option<Timestamp>,
}

/// One order, measured as of `as_of`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderRow {
    pub order_id: i64,
    pub current_status_id: i64,
    pub current_group_id: u16,
    /// Not in a terminal group: its clock runs.
    pub open: bool,
    /// The order's creation: the earliest of its events' `order_created_at` and changes.
    pub started_at: Timestamp,
    pub first_event_at: Timestamp,
    pub last_changed_at: Timestamp,
    /// From `started_at` to the first event: attributed to no status.
    #[serde(rename = "untracked_seconds", with = "seconds")]
    pub untracked_micros: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_entered_at: Option<Timestamp>,
    /// `pending`, `normal` or `urgent`.
    pub urgency: String,
    pub urgency_source: UrgencySource,
    /// `normal` or `urgent`: the grid the order is measured on.
    pub sla_profile: String,
    /// The worst state over its groups and statuses.
    pub sla: RowSla,
    /// Working and wall time in non-terminal groups, all visits.
    #[serde(rename = "working_seconds", with = "seconds")]
    pub working_micros: i64,
    #[serde(rename = "wall_seconds", with = "seconds")]
    pub wall_micros: i64,
    pub groups: BTreeMap<u16, StageRow>,
    pub statuses: BTreeMap<i64, StageRow>,
    pub cycles: BTreeMap<u32, CycleRow>,
    /// The next change of `sla` (or of a group's or status's state) with no new event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla_next: Option<SlaChange>,
    pub crossings: Crossings,
    pub event_count: u32,
    pub settings_revision: i64,
    pub history_truncated: bool,
    pub as_of: Timestamp,
}
