//! Fact rows: the analytics shape of an order's derived data, one row per status interval and
//! per cycle. The processor writes them through a `FactSink` (ClickHouse or Parquet) before it
//! commits state, and may write the same rows again on a replay: a sink keeps, per natural key,
//! only the row with the highest [`FactVersion`].

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// Orders the rows written for one order over time, so a sink can keep only the newest.
///
/// Derived from the project's settings revision, the order's event count and whether its items were
/// known, never from the clock (docs/architecture.md, invariant 4): replaying the same events under
/// the same settings writes the same version, a new event raises it, and so does a settings change
/// (which recomputes every order) and the items arriving (urgency known: the rows may change with
/// no new event). Layout, compared as one number: the revision in the high 32 bits, the event count
/// in the next 30, the urgency rank (0 pending, 1 normal, 2 urgent) in the low 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FactVersion(u64);

/// Event counts above this share the version of this many events (2^30 − 1; never reached).
const MAX_EVENT_COUNT: u32 = (1 << 30) - 1;

impl FactVersion {
    /// The version of the rows derived from `event_count` events under settings revision
    /// `settings_revision`, urgency pending. A revision outside `0..=u32::MAX` is clamped into
    /// it: revisions start at 0 and grow by one per change, so the clamp is never reached.
    pub fn new(settings_revision: i64, event_count: u32) -> Self {
        Self::with_urgency(settings_revision, event_count, 0)
    }

    /// As [`FactVersion::new`], with the urgency rank: 0 pending, 1 normal, 2 urgent (higher
    /// values are taken as 3). Items fetched for an order whose events did not change raise its
    /// version from pending to known; a later change between normal and urgent with no new
    /// event (a refetch, `enricher.refetch_items_on_group`) only wins when it goes up.
    pub fn with_urgency(settings_revision: i64, event_count: u32, urgency_rank: u8) -> Self {
        let revision = settings_revision.clamp(0, i64::from(u32::MAX)) as u64;
        let events = u64::from(event_count.min(MAX_EVENT_COUNT));
        FactVersion((revision << 32) | (events << 2) | u64::from(urgency_rank.min(3)))
    }

    pub const fn from_u64(raw: u64) -> Self {
        FactVersion(raw)
    }

    pub const fn as_u64(self) -> u64 {
        self.0
    }

    pub const fn settings_revision(self) -> u32 {
        (self.0 >> 32) as u32
    }

    pub const fn event_count(self) -> u32 {
        (self.0 as u32) >> 2
    }

    pub const fn urgency_rank(self) -> u8 {
        (self.0 & 3) as u8
    }
}

/// An interval's SLA state at the time its row was derived (`near`/`over` of an open interval
/// are evaluated again at read time).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FactSlaState {
    #[default]
    None,
    Ok,
    Near,
    Over,
}

impl FactSlaState {
    pub const ALL: [FactSlaState; 4] = [FactSlaState::None, FactSlaState::Ok, FactSlaState::Near, FactSlaState::Over];

    pub fn as_str(self) -> &'static str {
        match self {
            FactSlaState::None => "none",
            FactSlaState::Ok => "ok",
            FactSlaState::Near => "near",
            FactSlaState::Over => "over",
        }
    }

    /// The state named `text` (`none`, `ok`, `near`, `over`), as the derived rows spell it.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == text)
    }
}

/// One visit of an order to a status: `[entered_at, left_at)`, `left_at` unset while the
/// order is still there. Natural key: `(project_id, order_id, entered_at, status_id)`, the key
/// of the event that opened the interval, so a late event adds a row and shortens its
/// neighbour's (same key, higher version) but never orphans one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntervalFact {
    pub project_id: i64,
    pub order_id: i64,
    pub status_id: i64,
    pub group_id: u16,
    pub entered_at: Timestamp,
    pub left_at: Option<Timestamp>,
    pub wall_seconds: f64,
    pub working_seconds: f64,
    pub is_urgent: bool,
    pub sla_state: FactSlaState,
    pub version: FactVersion,
    /// When the order entered its first status (its creation, as analytics place orders).
    /// Unset only in rows written before the column existed.
    #[serde(default)]
    pub order_created_at: Option<Timestamp>,
    /// When the order entered this interval's group for the visit the interval belongs to:
    /// consecutive intervals in one group are one visit (docs/domain.md), so this is the
    /// `entered_at` of the visit's first interval. Unset only in rows written before the
    /// column existed.
    #[serde(default)]
    pub group_entered_at: Option<Timestamp>,
}

/// One cycle rule's span for an order: `[started_at, ended_at)`, `ended_at` unset while open.
/// Natural key: `(project_id, order_id, cycle_id)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CycleFact {
    pub project_id: i64,
    pub order_id: i64,
    pub cycle_id: u32,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub wall_seconds: f64,
    pub working_seconds: f64,
    pub is_urgent: bool,
    pub version: FactVersion,
    /// When the order entered its first status. Unset only in rows written before the column
    /// existed.
    #[serde(default)]
    pub order_created_at: Option<Timestamp>,
}

/// What one write hands a sink: the rows of any number of orders.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FactBatch {
    pub intervals: Vec<IntervalFact>,
    pub cycles: Vec<CycleFact>,
}

impl FactBatch {
    pub fn is_empty(&self) -> bool {
        self.intervals.is_empty() && self.cycles.is_empty()
    }

    pub fn len(&self) -> usize {
        self.intervals.len() + self.cycles.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_event_raises_the_version() {
        assert!(FactVersion::new(3, 5) > FactVersion::new(3, 4));
    }

    #[test]
    fn a_settings_change_outranks_any_event_count() {
        assert!(FactVersion::new(4, 1) > FactVersion::new(3, u32::MAX));
        assert!(FactVersion::with_urgency(4, 1, 0) > FactVersion::with_urgency(3, u32::MAX, 2));
    }

    #[test]
    fn known_items_raise_the_version_and_a_new_event_outranks_them() {
        let pending = FactVersion::new(3, 5);
        let urgent = FactVersion::with_urgency(3, 5, 2);
        assert!(FactVersion::with_urgency(3, 5, 1) > pending);
        assert!(urgent > FactVersion::with_urgency(3, 5, 1));
        assert!(FactVersion::new(3, 6) > urgent);
        assert_eq!((urgent.settings_revision(), urgent.event_count(), urgent.urgency_rank()), (3, 5, 2));
    }

    #[test]
    fn the_same_inputs_give_the_same_version() {
        let version = FactVersion::new(7, 42);
        assert_eq!(version, FactVersion::new(7, 42));
        assert_eq!((version.settings_revision(), version.event_count()), (7, 42));
    }

    #[test]
    fn out_of_range_revisions_are_clamped_not_wrapped() {
        assert_eq!(FactVersion::new(-1, 3), FactVersion::new(0, 3));
        assert_eq!(FactVersion::new(i64::MAX, 3).settings_revision(), u32::MAX);
    }

    #[test]
    fn sla_states_round_trip_through_their_names() {
        for state in FactSlaState::ALL {
            assert_eq!(FactSlaState::parse(state.as_str()), Some(state));
        }
        assert_eq!(FactSlaState::parse("late"), None);
    }
}
