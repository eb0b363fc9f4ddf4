//! Fact rows of one derived order: an [`IntervalFact`] per interval of its timeline and a
//! [`CycleFact`] per cycle, from the same timeline the state rows come from. Pure, like
//! `derive`.

use ksa_domain::timeline::StageTotal;
use ksa_domain::{OrderTimeline, ProjectRules, SlaState, Urgency};
use ksa_schemas::Timestamp;
use ksa_schemas::facts::{CycleFact, FactBatch, FactSlaState, FactVersion, IntervalFact};

/// Appends the order's facts to `facts`. Every row carries the version of this derivation
/// (settings revision, event count, urgency), so a replay writes the same rows again.
///
/// An interval's `sla_state` is its group's state over all visits (docs/domain.md, "SLA": limits
/// apply to the total per stage), as of the order's latest event: what the `sla` analytics count
/// per order and group. An interval in a terminal group has none. Each interval also carries
/// the order's creation (its first interval's entry) and the entry into the group visit it
/// belongs to, so analytics place orders and visits without joining the table to itself.
pub fn append_order_facts(facts: &mut FactBatch, project_id: i64, timeline: &OrderTimeline, rules: &ProjectRules, settings_revision: i64) {
    let urgency_rank = match timeline.urgency {
        Urgency::Pending => 0,
        Urgency::Normal => 1,
        Urgency::Urgent => 2,
    };
    let version = FactVersion::with_urgency(settings_revision, timeline.event_count, urgency_rank);
    let is_urgent = timeline.urgency == Urgency::Urgent;
    let state_of = |total: Option<&StageTotal>| total.map_or(SlaState::None, |t| t.sla);
    let created = timeline.intervals.first().map(|interval| interval.entered_at);
    let mut visit: Option<(u16, Timestamp)> = None;
    facts.intervals.extend(timeline.intervals.iter().map(|interval| {
        let sla = if rules.is_terminal(interval.group_id) { SlaState::None } else { state_of(timeline.groups.get(&interval.group_id)) };
        // Moving between statuses of one group continues the visit; entering from another
        // group starts one.
        let group_entered_at = match visit {
            Some((group, started)) if group == interval.group_id => started,
            _ => interval.entered_at,
        };
        visit = Some((interval.group_id, group_entered_at));
        IntervalFact {
            project_id,
            order_id: timeline.order_id,
            status_id: interval.status_id,
            group_id: interval.group_id,
            entered_at: interval.entered_at,
            left_at: interval.left_at,
            wall_seconds: interval.wall_seconds.seconds(),
            working_seconds: interval.working_seconds.seconds(),
            is_urgent,
            sla_state: fact_sla(sla),
            version,
            order_created_at: created,
            group_entered_at: Some(group_entered_at),
        }
    }));
    facts.cycles.extend(timeline.cycles.iter().map(|(cycle_id, cycle)| CycleFact {
        project_id,
        order_id: timeline.order_id,
        cycle_id: *cycle_id,
        started_at: cycle.started_at,
        ended_at: if cycle.open { None } else { cycle.ended_at },
        wall_seconds: cycle.wall_seconds.seconds(),
        working_seconds: cycle.working_seconds.seconds(),
        is_urgent,
        version,
        order_created_at: created,
    }));
}

fn fact_sla(state: SlaState) -> FactSlaState {
    match state {
        SlaState::None => FactSlaState::None,
        SlaState::Ok => FactSlaState::Ok,
        SlaState::Near => FactSlaState::Near,
        SlaState::Over => FactSlaState::Over,
    }
}
