//! The processor's pure step: an order's events and its project's rules in, derived rows out.
//! No IO here; `processor::run` is the edge that feeds it.

pub use ksa_domain::row::OrderInputs;
use ksa_domain::row::{order_row, timeline_at};
use ksa_domain::timeline::DELIVERY_GROUP;
use ksa_domain::{OrderTimeline, ProjectRules};
use ksa_schemas::derived::{CycleRow, DerivedOrder};
use ksa_schemas::facts::FactBatch;
use ksa_schemas::settings::{CycleEnd, CycleStart, Occurrence};
use ksa_schemas::{StatusEvent, Timestamp};

use crate::facts::append_order_facts;

/// Derives an order's rows from its events as of its latest event, so the result depends on
/// the event set and the settings only, never on when it is computed. Read paths measure open
/// intervals up to their own `now`.
///
/// `urgency` comes from the order's fetched items (`urgency::urgencies`); `Pending` until then.
/// `overrides` are a person's corrections of the order; each beats every rule.
pub fn derive_order(
    project_id: i64,
    events: &[StatusEvent],
    inputs: &OrderInputs,
    rules: &ProjectRules,
    settings_revision: i64,
) -> Option<DerivedOrder> {
    let timeline = timeline_as_of_latest(events, inputs, rules)?;
    Some(rows(project_id, &timeline, inputs, rules, settings_revision))
}

/// [`derive_order`], and the order's fact rows from the same timeline appended to `facts`
/// (intervals are facts only: `derived_json` does not hold them).
pub fn derive_order_with_facts(
    project_id: i64,
    events: &[StatusEvent],
    inputs: &OrderInputs,
    rules: &ProjectRules,
    settings_revision: i64,
    facts: &mut FactBatch,
) -> Option<DerivedOrder> {
    let timeline = timeline_as_of_latest(events, inputs, rules)?;
    append_order_facts(facts, project_id, &timeline, rules, settings_revision);
    Some(rows(project_id, &timeline, inputs, rules, settings_revision))
}

fn timeline_as_of_latest(events: &[StatusEvent], inputs: &OrderInputs, rules: &ProjectRules) -> Option<OrderTimeline> {
    let latest = events.iter().map(|e| e.changed_at).max()?;
    timeline_at(events, inputs, rules, latest)
}

/// The order's columns, its cycles' rows, and its dashboard row ([`OrderRow`]) as the
/// `derived_json` document: what every reader of derived state measures at its own instant
/// (per-group and per-status totals with limits and states, cycles, urgency and why, and the
/// instants at which its SLA states change if no event arrives). Intervals are facts
/// (`status_intervals`), not part of it.
///
/// Group totals were a table of their own (`order_group_totals`), which live processing
/// deleted and wrote again for almost every event: a quarter of PostgreSQL's time
/// (BENCHMARKS.md). Nothing read them by SQL, so they travel in this document.
fn rows(project_id: i64, timeline: &OrderTimeline, inputs: &OrderInputs, rules: &ProjectRules, settings_revision: i64) -> DerivedOrder {
    let row = order_row(timeline, rules, inputs.effective_source(), settings_revision);
    let derived_json = serde_json::to_string(&row).unwrap_or_else(|_| "{}".into());
    let to_delivery = rules
        .settings
        .cycles
        .iter()
        .find(|c| c.start == CycleStart::Created && c.end == CycleEnd::Group { id: DELIVERY_GROUP, occurrence: Occurrence::First })
        .and_then(|c| timeline.cycles.get(&c.id))
        .filter(|c| !c.open)
        .map(|c| c.working_seconds.seconds());
    DerivedOrder {
        project_id,
        order_id: timeline.order_id,
        current_status_id: timeline.current_status_id,
        current_group_id: timeline.current_group_id,
        last_changed_at: timeline.last_changed_at,
        started_at: timeline.started_at,
        untracked_seconds: timeline.untracked_seconds.seconds(),
        delivery_entered_at: timeline.delivery_entered_at,
        cycle_duration_to_delivery: to_delivery,
        closed_at: timeline.closed_at,
        cycle_rule_id_applied: rules.settings.default_cycle_id(),
        urgency: timeline.urgency.as_str().to_string(),
        sla_state: timeline.sla.as_str().to_string(),
        event_count: timeline.event_count,
        settings_revision,
        derived_json,
        cycles: timeline
            .cycles
            .iter()
            .map(|(id, cycle)| CycleRow {
                cycle_id: *id,
                started_at: cycle.started_at,
                ended_at: cycle.ended_at,
                wall_seconds: cycle.wall_seconds.seconds(),
                working_seconds: cycle.working_seconds.seconds(),
                is_open: cycle.open,
            })
            .collect(),
    }
}

/// Merges `incoming` into `known`, returning the events that were not known yet (by dedup key).
pub fn merge_events(known: &mut Vec<StatusEvent>, incoming: &[StatusEvent]) -> Vec<StatusEvent> {
    let mut fresh = Vec::new();
    for event in incoming {
        let key = event.dedup_key();
        if !known.iter().any(|k| k.dedup_key() == key) && !fresh.iter().any(|f: &StatusEvent| f.dedup_key() == key) {
            fresh.push(*event);
        }
    }
    known.extend_from_slice(&fresh);
    fresh
}

/// The span of dates a project's clocks are compiled for, around `now`.
pub fn rules_for(settings: ksa_schemas::ProjectSettings, now: Timestamp) -> ProjectRules {
    const YEAR: i64 = 366 * 86_400 * 1_000_000;
    ProjectRules::covering(settings, Timestamp::from_micros(now.as_micros() - 3 * YEAR), Timestamp::from_micros(now.as_micros() + YEAR))
}

#[cfg(test)]
mod tests {
    use ksa_domain::Urgency;
    use ksa_schemas::{EventSource, ProjectSettings};

    use super::*;

    fn inputs(urgency: Urgency) -> OrderInputs {
        OrderInputs { urgency, ..OrderInputs::default() }
    }

    fn ev(status: i64, group: u16, minute: i64) -> StatusEvent {
        StatusEvent {
            order_id: 9,
            status_id: status,
            group_id: group,
            changed_at: Timestamp::from_seconds(1_767_225_600 + minute * 60),
            order_created_at: Timestamp::from_seconds(1_767_225_600),
            source: EventSource::Webhook,
        }
    }

    #[test]
    fn derived_rows_do_not_depend_on_when_they_are_computed() {
        let rules = rules_for(ProjectSettings::default(), Timestamp::from_seconds(1_767_225_600));
        let events = [ev(1, 1, 0), ev(20, 2, 30), ev(7, 3, 90), ev(11, 4, 600)];
        let derived = derive_order(5, &events, &inputs(Urgency::Pending), &rules, 3).unwrap();
        let later_rules = rules_for(ProjectSettings::default(), Timestamp::from_seconds(1_800_000_000));
        assert_eq!(derive_order(5, &events, &inputs(Urgency::Pending), &later_rules, 3).unwrap(), derived);
        assert_eq!(derived.event_count, 4);
        assert_eq!(derived.current_group_id, 4);
        assert_eq!(derived.settings_revision, 3);
        // Created → first entry into delivery, measured 24/7: ten hours.
        assert_eq!(derived.cycle_duration_to_delivery, Some(36_000.0));
        let document: serde_json::Value = serde_json::from_str(&derived.derived_json).unwrap();
        let groups: Vec<&String> = document["groups"].as_object().unwrap().keys().collect();
        assert_eq!(groups, ["1", "2", "3", "4"]);
        // Group 2: from minute 30 to minute 90, one visit.
        assert_eq!(document["groups"]["2"]["wall_seconds"], 3600.0);
        assert_eq!(document["groups"]["2"]["visits"], 1);
        assert_eq!(derived.urgency, "pending");
        assert_eq!(derive_order(5, &events, &inputs(Urgency::Urgent), &rules, 3).unwrap().urgency, "urgent");
    }

    #[test]
    fn facts_come_from_the_same_timeline_one_interval_per_event() {
        let rules = rules_for(ProjectSettings::default(), Timestamp::from_seconds(1_767_225_600));
        let events = [ev(1, 1, 0), ev(20, 2, 30), ev(7, 3, 90), ev(11, 4, 600)];
        let mut facts = FactBatch::default();
        let derived = derive_order_with_facts(5, &events, &inputs(Urgency::Pending), &rules, 3, &mut facts).unwrap();
        assert_eq!(derive_order(5, &events, &inputs(Urgency::Pending), &rules, 3).unwrap(), derived);

        let version = ksa_schemas::facts::FactVersion::new(3, 4);
        assert_eq!(facts.intervals.len(), 4);
        assert!(facts.intervals.iter().all(|i| i.version == version && i.project_id == 5 && i.order_id == 9));
        assert_eq!(facts.intervals[1].entered_at, ev(20, 2, 30).changed_at);
        assert_eq!(facts.intervals[1].left_at, Some(ev(7, 3, 90).changed_at));
        assert_eq!(facts.intervals[1].wall_seconds, 3600.0);
        assert_eq!(facts.intervals[3].left_at, None, "the latest interval is open");
        assert_eq!(facts.cycles.len(), derived.cycles.len());
        let to_delivery = facts.cycles.iter().find(|c| c.ended_at == Some(ev(11, 4, 600).changed_at)).unwrap();
        assert_eq!((to_delivery.working_seconds, to_delivery.version), (36_000.0, version));
    }

    #[test]
    fn each_interval_carries_the_order_creation_and_the_start_of_its_group_visit() {
        let rules = rules_for(ProjectSettings::default(), Timestamp::from_seconds(1_767_225_600));
        // Group 2 twice in a row (statuses 20 and 21: one visit), then 3, then 2 again (rework).
        let events = [ev(1, 1, 0), ev(20, 2, 30), ev(21, 2, 45), ev(7, 3, 90), ev(20, 2, 120)];
        let mut facts = FactBatch::default();
        derive_order_with_facts(5, &events, &inputs(Urgency::Pending), &rules, 3, &mut facts).unwrap();
        let at = |minute: i64| Some(ev(1, 1, minute).changed_at);
        let placed: Vec<_> = facts.intervals.iter().map(|i| (i.group_id, i.order_created_at, i.group_entered_at)).collect();
        assert_eq!(placed, [(1, at(0), at(0)), (2, at(0), at(30)), (2, at(0), at(30)), (3, at(0), at(90)), (2, at(0), at(120))]);
        assert!(facts.cycles.iter().all(|c| c.order_created_at == at(0)));
    }

    #[test]
    fn rederiving_the_same_events_in_another_order_writes_identical_facts() {
        let rules = rules_for(ProjectSettings::default(), Timestamp::from_seconds(1_767_225_600));
        let mut first = FactBatch::default();
        derive_order_with_facts(5, &[ev(1, 1, 0), ev(20, 2, 30), ev(7, 3, 90)], &inputs(Urgency::Pending), &rules, 1, &mut first).unwrap();
        let mut again = FactBatch::default();
        derive_order_with_facts(
            5,
            &[ev(7, 3, 90), ev(1, 1, 0), ev(20, 2, 30), ev(1, 1, 0)],
            &inputs(Urgency::Pending),
            &rules,
            1,
            &mut again,
        )
        .unwrap();
        assert_eq!(first, again);
    }

    #[test]
    fn merging_keeps_only_events_not_known_by_dedup_key() {
        let mut known = vec![ev(1, 1, 0)];
        let fresh = merge_events(&mut known, &[ev(1, 1, 0), ev(20, 2, 5), ev(20, 2, 5), ev(1, 1, 10)]);
        assert_eq!(fresh, vec![ev(20, 2, 5), ev(1, 1, 10)]);
        assert_eq!(known.len(), 3);
    }
}
