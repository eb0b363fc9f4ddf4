//! Cycles: the span between a start and an end event of an order, minus the time spent in
//! terminal groups, per cycle rule.

use std::collections::BTreeMap;

use ksa_schemas::Timestamp;
use ksa_schemas::settings::{CycleEnd, CycleRule, CycleStart, Occurrence};
use serde::Serialize;

use crate::rules::ProjectRules;
use crate::timeline::{Elapsed, Interval, OrderOverrides};

/// An entry into a group or a status: the first event of a run of events in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: i64,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CycleResult {
    pub title: String,
    pub started_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    pub wall_seconds: Elapsed,
    pub working_seconds: Elapsed,
    /// Measured up to `now` because the end has not happened yet.
    pub open: bool,
}

/// Measures every rule of the project; a cycle whose start has not happened is absent.
pub fn measure_cycles(
    rules: &ProjectRules,
    intervals: &[Interval],
    group_entries: &[Entry],
    status_entries: &[Entry],
    started_at: Timestamp,
    overrides: &OrderOverrides,
    now: Timestamp,
) -> BTreeMap<u32, CycleResult> {
    let default_cycle = rules.settings.default_cycle_id();
    let mut out = BTreeMap::new();
    for rule in &rules.settings.cycles {
        let overridden = Some(rule.id) == default_cycle;
        let start = match (overridden, overrides.cycle_start) {
            (true, Some(at)) => Some(at),
            _ => rule_start(rule, group_entries, status_entries, started_at),
        };
        let Some(start) = start else { continue };
        let end = match (overridden, overrides.cycle_end) {
            (true, Some(at)) => Some(at.max(start)),
            _ => rule_end(rule, group_entries, status_entries, start),
        };
        let until = end.unwrap_or(now).max(start);
        let (wall, working) = measure_span(rules, intervals, start, until);
        out.insert(
            rule.id,
            CycleResult {
                title: rule.title.clone(),
                started_at: start,
                ended_at: end,
                wall_seconds: Elapsed(wall),
                working_seconds: Elapsed(working),
                open: end.is_none(),
            },
        );
    }
    out
}

fn pick(entries: &[Entry], id: i64, occurrence: Occurrence, not_before: Option<Timestamp>) -> Option<Timestamp> {
    let matches = |e: &&Entry| e.id == id && not_before.is_none_or(|t| e.at >= t);
    match occurrence {
        Occurrence::First => entries.iter().find(matches).map(|e| e.at),
        Occurrence::Last => entries.iter().rev().find(matches).map(|e| e.at),
    }
}

fn rule_start(rule: &CycleRule, groups: &[Entry], statuses: &[Entry], started_at: Timestamp) -> Option<Timestamp> {
    match rule.start {
        CycleStart::Created => Some(started_at),
        CycleStart::Group { id, occurrence } => pick(groups, i64::from(id), occurrence, None),
        CycleStart::Status { id, occurrence } => pick(statuses, id, occurrence, None),
    }
}

fn rule_end(rule: &CycleRule, groups: &[Entry], statuses: &[Entry], start: Timestamp) -> Option<Timestamp> {
    match rule.end {
        CycleEnd::Group { id, occurrence } => pick(groups, i64::from(id), occurrence, Some(start)),
        CycleEnd::Status { id, occurrence } => pick(statuses, id, occurrence, Some(start)),
    }
}

/// Wall and working time of `[start, until)` outside terminal groups. The lead-in before the
/// first event is measured by the project default calendar, every interval by its group's.
pub fn measure_span(rules: &ProjectRules, intervals: &[Interval], start: Timestamp, until: Timestamp) -> (i64, i64) {
    let (mut wall, mut working) = (0, 0);
    let mut add = |clock: &crate::clock::WorkingClock, a: Timestamp, b: Timestamp| {
        let (a, b) = (a.max(start), b.min(until));
        if b > a {
            wall += b.as_micros() - a.as_micros();
            working += clock.working_micros(a, b);
        }
    };
    if let Some(first) = intervals.first() {
        add(rules.default_clock(), start, first.entered_at);
    }
    for interval in intervals {
        if interval.entered_at >= until {
            break;
        }
        if rules.is_terminal(interval.group_id) {
            continue;
        }
        let left = interval.left_at.unwrap_or(until);
        add(rules.clock_for_group(interval.group_id), interval.entered_at, left);
    }
    (wall, working)
}
