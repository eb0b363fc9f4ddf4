//! An order's timeline: its events, deduplicated and ordered, as intervals with wall and
//! working time, per-group and per-status totals, SLA states and cycles.

use std::collections::BTreeMap;

use ksa_schemas::{EventSource, StatusEvent, Timestamp};
use serde::{Serialize, Serializer};

use crate::cycles::{CycleResult, Entry, measure_cycles};
use crate::rules::ProjectRules;
use crate::sla::{SlaProfile, SlaState, sla_state};
use crate::urgency::Urgency;

/// KeyCRM's delivery group: its first entry is the order's `delivery_entered_at`.
pub const DELIVERY_GROUP: u16 = 4;

/// A duration held in microseconds and written out as seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Elapsed(pub i64);

impl Elapsed {
    pub fn micros(self) -> i64 {
        self.0
    }

    pub fn seconds(self) -> f64 {
        self.0 as f64 / 1_000_000.0
    }
}

impl std::ops::AddAssign for Elapsed {
    fn add_assign(&mut self, rhs: Self) {
        self.0 += rhs.0;
    }
}

impl Serialize for Elapsed {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.seconds())
    }
}

/// Per-order corrections by a person; each beats every rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OrderOverrides {
    pub is_urgent: Option<bool>,
    pub sla_profile: Option<SlaProfile>,
    /// Apply to the project's default cycle.
    pub cycle_start: Option<Timestamp>,
    pub cycle_end: Option<Timestamp>,
}

impl OrderOverrides {
    /// An override as stored: `sla_profile` is `normal` or `urgent` (anything else: none).
    pub fn from_stored(
        is_urgent: Option<bool>,
        sla_profile: Option<&str>,
        cycle_start: Option<Timestamp>,
        cycle_end: Option<Timestamp>,
    ) -> Self {
        let sla_profile = match sla_profile {
            Some("urgent") => Some(SlaProfile::Urgent),
            Some("normal") => Some(SlaProfile::Normal),
            _ => None,
        };
        OrderOverrides { is_urgent, sla_profile, cycle_start, cycle_end }
    }
}

/// Time spent in one status between two events.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Interval {
    pub status_id: i64,
    pub group_id: u16,
    pub entered_at: Timestamp,
    /// `None` while the order is still in this status; measured up to `now`.
    pub left_at: Option<Timestamp>,
    pub wall_seconds: Elapsed,
    pub working_seconds: Elapsed,
}

/// Totals over all visits to a group or a status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct StageTotal {
    pub wall_seconds: Elapsed,
    pub working_seconds: Elapsed,
    /// Entries into the stage; more than one means rework.
    pub visits: u32,
    pub sla: SlaState,
    /// The limit that applies, in working seconds, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_seconds: Option<i64>,
}

/// Everything derived from one order's events, as of `as_of`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OrderTimeline {
    pub order_id: i64,
    pub started_at: Timestamp,
    /// The span from `started_at` to the first known event: attributed to no status.
    pub untracked_seconds: Elapsed,
    pub intervals: Vec<Interval>,
    /// Non-terminal groups only.
    pub groups: BTreeMap<u16, StageTotal>,
    /// Non-terminal statuses only.
    pub statuses: BTreeMap<i64, StageTotal>,
    pub cycles: BTreeMap<u32, CycleResult>,
    pub urgency: Urgency,
    pub sla_profile: SlaProfile,
    pub sla: SlaState,
    pub current_status_id: i64,
    pub current_group_id: u16,
    pub last_changed_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_entered_at: Option<Timestamp>,
    /// When the order entered the terminal group it is still in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<Timestamp>,
    /// Distinct events after deduplication.
    pub event_count: u32,
    /// True when the earliest event came from a backfill or reconciliation, so history before
    /// it is unknown.
    pub history_truncated: bool,
    pub as_of: Timestamp,
}

/// Computes an order's timeline from its events as they stood at `now`.
///
/// Any permutation or duplication of `events` gives the same result; events after `now` are
/// ignored. Returns `None` when no event is at or before `now`.
pub fn compute_timeline(
    events: &[StatusEvent],
    urgency: Urgency,
    overrides: &OrderOverrides,
    rules: &ProjectRules,
    now: Timestamp,
) -> Option<OrderTimeline> {
    let events = canonical_events(events, now);
    let first = events.first()?;
    let last = events.last()?;
    let started_at = events.iter().map(|e| e.order_created_at.min(e.changed_at)).min().unwrap_or(first.changed_at);
    let settings = &rules.settings;

    let mut intervals = Vec::with_capacity(events.len());
    let mut group_entries = Vec::new();
    let mut status_entries = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let left_at = events.get(i + 1).map(|next| next.changed_at);
        let end = left_at.unwrap_or(now);
        let previous = i.checked_sub(1).map(|p| &events[p]);
        if previous.is_none_or(|p| p.group_id != event.group_id) {
            group_entries.push(Entry { id: i64::from(event.group_id), at: event.changed_at });
        }
        if previous.is_none_or(|p| p.status_id != event.status_id) {
            status_entries.push(Entry { id: event.status_id, at: event.changed_at });
        }
        intervals.push(Interval {
            status_id: event.status_id,
            group_id: event.group_id,
            entered_at: event.changed_at,
            left_at,
            wall_seconds: Elapsed(end.as_micros() - event.changed_at.as_micros()),
            working_seconds: Elapsed(rules.clock_for_group(event.group_id).working_micros(event.changed_at, end)),
        });
    }

    let urgency = match overrides.is_urgent {
        Some(true) => Urgency::Urgent,
        Some(false) => Urgency::Normal,
        None => urgency,
    };
    let sla_profile = overrides.sla_profile.unwrap_or(match urgency {
        Urgency::Urgent => SlaProfile::Urgent,
        Urgency::Normal | Urgency::Pending => SlaProfile::Normal,
    });
    let grid = sla_profile.grid(&settings.sla);

    let mut groups: BTreeMap<u16, StageTotal> = BTreeMap::new();
    let mut statuses: BTreeMap<i64, StageTotal> = BTreeMap::new();
    let mut previous: Option<&Interval> = None;
    for interval in &intervals {
        if !rules.is_terminal(interval.group_id) {
            let group = groups.entry(interval.group_id).or_default();
            add_visit(group, interval, previous.is_none_or(|p| p.group_id != interval.group_id));
            let status = statuses.entry(interval.status_id).or_default();
            add_visit(status, interval, previous.is_none_or(|p| p.status_id != interval.status_id));
        }
        previous = Some(interval);
    }
    let near = settings.sla.near;
    for (group, total) in &mut groups {
        total.limit_seconds = grid.groups.get(group).copied();
        total.sla = sla_state(total.working_seconds.0, total.limit_seconds, near);
    }
    for (status, total) in &mut statuses {
        total.limit_seconds = grid.statuses.get(status).copied();
        total.sla = sla_state(total.working_seconds.0, total.limit_seconds, near);
    }
    let sla = groups.values().chain(statuses.values()).map(|t| t.sla).max().unwrap_or_default();

    let cycles = measure_cycles(rules, &intervals, &group_entries, &status_entries, started_at, overrides, now);
    let delivery_entered_at = group_entries.iter().find(|e| e.id == i64::from(DELIVERY_GROUP)).map(|e| e.at);
    let closed_at = if rules.is_terminal(last.group_id) {
        intervals.iter().rev().take_while(|iv| rules.is_terminal(iv.group_id)).last().map(|iv| iv.entered_at)
    } else {
        None
    };

    Some(OrderTimeline {
        order_id: first.order_id,
        started_at,
        untracked_seconds: Elapsed(first.changed_at.as_micros() - started_at.as_micros()),
        groups,
        statuses,
        cycles,
        urgency,
        sla_profile,
        sla,
        current_status_id: last.status_id,
        current_group_id: last.group_id,
        last_changed_at: last.changed_at,
        delivery_entered_at,
        closed_at,
        event_count: u32::try_from(events.len()).unwrap_or(u32::MAX),
        history_truncated: first.source != EventSource::Webhook,
        as_of: now,
        intervals,
    })
}

fn add_visit(total: &mut StageTotal, interval: &Interval, entered: bool) {
    total.wall_seconds += interval.wall_seconds;
    total.working_seconds += interval.working_seconds;
    if entered {
        total.visits += 1;
    }
}

/// The order's distinct events up to `now`, in timeline order.
///
/// Two events with the same dedup key `(changed_at, status_id)` are one event; the one kept is
/// chosen by content (smallest timeline key), never by arrival.
pub fn canonical_events(events: &[StatusEvent], now: Timestamp) -> Vec<StatusEvent> {
    let mut kept: Vec<StatusEvent> = events.iter().filter(|e| e.changed_at <= now).copied().collect();
    kept.sort_unstable_by_key(|e| (e.changed_at, e.status_id, e.timeline_key()));
    kept.dedup_by_key(|e| (e.changed_at, e.status_id));
    kept.sort_unstable_by_key(StatusEvent::timeline_key);
    kept
}
