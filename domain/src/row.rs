//! An order's dashboard row ([`OrderRow`]): made from its timeline as of its latest event, and
//! measured again at any later instant without its events, because after the latest event only
//! the open interval grows, by its group's calendar. A row measured at `as_of` equals the row of
//! the timeline computed at `as_of` (a property test holds them together).

use std::collections::BTreeMap;

use ksa_schemas::Timestamp;
use ksa_schemas::row::{Crossings, CycleRow, OrderRow, RowSla, SlaChange, StageRow, UrgencySource};

use ksa_schemas::settings::{UrgencyMatch, UrgencyRule};
use ksa_schemas::{OrderLine, StatusEvent};

use crate::rules::ProjectRules;
use crate::sla::{SlaState, near_threshold_micros, sla_state};
use crate::timeline::{OrderOverrides, OrderTimeline, StageTotal, compute_timeline};
use crate::urgency::{Urgency, matching_rule};

/// What an order is measured with besides its events and rules: the processor derives its
/// stored row with these, and a read at an earlier instant computes it again with the same.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OrderInputs {
    /// From the order's fetched items; `Pending` until then.
    pub urgency: Urgency,
    /// Why: the rule that matched, the items, pending.
    pub source: UrgencySource,
    /// A person's corrections of the order; each beats every rule.
    pub overrides: OrderOverrides,
}

impl OrderInputs {
    /// The inputs of an order with these fetched items (`None`: not fetched yet) and overrides.
    pub fn new(lines: Option<&[OrderLine]>, overrides: OrderOverrides, rules: &[UrgencyRule]) -> Self {
        let (urgency, source) = lines.map_or((Urgency::Pending, UrgencySource::Pending), |lines| urgency_with_source(lines, rules));
        OrderInputs { urgency, source, overrides }
    }

    /// Where the urgency the order is measured with comes from: a person's override beats
    /// the items.
    pub fn effective_source(&self) -> UrgencySource {
        if self.overrides.is_urgent.is_some() { UrgencySource::Override } else { self.source.clone() }
    }
}

/// An order's urgency from its items, and the rule that made it urgent.
pub fn urgency_with_source(lines: &[OrderLine], rules: &[UrgencyRule]) -> (Urgency, UrgencySource) {
    match matching_rule(lines, rules) {
        Some((rule, line)) => {
            let (match_type, match_value) = match &rule.matches {
                UrgencyMatch::Sku(sku) => ("sku", sku.clone()),
                UrgencyMatch::OfferId(id) => ("offer_id", id.to_string()),
                UrgencyMatch::ProductId(id) => ("product_id", id.to_string()),
            };
            (Urgency::Urgent, UrgencySource::Rule { name: rule.name.clone(), match_type: match_type.into(), match_value, line })
        }
        None => (Urgency::Normal, UrgencySource::Items),
    }
}

/// The order's timeline at `as_of` with its inputs (`None` when it has no event by then).
pub fn timeline_at(events: &[StatusEvent], inputs: &OrderInputs, rules: &ProjectRules, as_of: Timestamp) -> Option<OrderTimeline> {
    compute_timeline(events, inputs.urgency, &inputs.overrides, rules, as_of)
}

/// The order's row at `as_of` computed from its events (for an instant before its latest event,
/// which the stored row cannot answer).
pub fn row_from_events(
    events: &[StatusEvent],
    inputs: &OrderInputs,
    rules: &ProjectRules,
    settings_revision: i64,
    as_of: Timestamp,
) -> Option<OrderRow> {
    let timeline = timeline_at(events, inputs, rules, as_of)?;
    Some(order_row(&timeline, rules, inputs.effective_source(), settings_revision))
}

fn row_sla(state: SlaState) -> RowSla {
    match state {
        SlaState::None => RowSla::None,
        SlaState::Ok => RowSla::Ok,
        SlaState::Near => RowSla::Near,
        SlaState::Over => RowSla::Over,
    }
}

fn stage_row(total: &StageTotal) -> StageRow {
    StageRow {
        working_micros: total.working_seconds.micros(),
        wall_micros: total.wall_seconds.micros(),
        visits: total.visits,
        limit_seconds: total.limit_seconds,
        sla: row_sla(total.sla),
    }
}

/// The row of `timeline`, which must be computed as of the order's latest event.
pub fn order_row(timeline: &OrderTimeline, rules: &ProjectRules, source: UrgencySource, settings_revision: i64) -> OrderRow {
    let groups: BTreeMap<u16, StageRow> = timeline.groups.iter().map(|(g, t)| (*g, stage_row(t))).collect();
    let statuses: BTreeMap<i64, StageRow> = timeline.statuses.iter().map(|(s, t)| (*s, stage_row(t))).collect();
    let cycles = timeline
        .cycles
        .iter()
        .map(|(id, c)| {
            let title = rules.settings.cycles.iter().find(|r| r.id == *id).map(|r| r.title.clone()).unwrap_or_default();
            let row = CycleRow {
                title,
                started_at: c.started_at,
                ended_at: c.ended_at,
                working_micros: c.working_seconds.micros(),
                wall_micros: c.wall_seconds.micros(),
                open: c.open,
            };
            (*id, row)
        })
        .collect();
    let open = !rules.is_terminal(timeline.current_group_id);
    let last = timeline.last_changed_at;
    let mut crossings = Crossings::default();
    if open {
        let clock = rules.clock_for_group(timeline.current_group_id);
        let near = rules.settings.sla.near;
        let ahead = |stage: Option<&StageRow>| -> (Option<Timestamp>, Option<Timestamp>) {
            let Some(stage) = stage else { return (None, None) };
            let Some(limit) = stage.limit_seconds else { return (None, None) };
            let limit = limit.saturating_mul(1_000_000);
            // Totals are measured up to the timeline's `as_of`: the crossings count from there.
            let at = |threshold: i64| {
                (stage.working_micros < threshold).then(|| clock.instant_after(timeline.as_of, threshold - stage.working_micros)).flatten()
            };
            (at(near_threshold_micros(limit, near)), at(limit))
        };
        (crossings.group_near_at, crossings.group_over_at) = ahead(groups.get(&timeline.current_group_id));
        (crossings.status_near_at, crossings.status_over_at) = ahead(statuses.get(&timeline.current_status_id));
    }
    let mut row = OrderRow {
        order_id: timeline.order_id,
        current_status_id: timeline.current_status_id,
        current_group_id: timeline.current_group_id,
        open,
        started_at: timeline.started_at,
        first_event_at: timeline.intervals.first().map_or(last, |i| i.entered_at),
        last_changed_at: last,
        untracked_micros: timeline.untracked_seconds.micros(),
        closed_at: timeline.closed_at,
        delivery_entered_at: timeline.delivery_entered_at,
        urgency: timeline.urgency.as_str().to_owned(),
        urgency_source: source,
        sla_profile: match timeline.sla_profile {
            crate::SlaProfile::Normal => "normal".into(),
            crate::SlaProfile::Urgent => "urgent".into(),
        },
        sla: row_sla(timeline.sla),
        working_micros: groups.values().map(|g| g.working_micros).sum(),
        wall_micros: groups.values().map(|g| g.wall_micros).sum(),
        groups,
        statuses,
        cycles,
        sla_next: None,
        crossings,
        event_count: timeline.event_count,
        settings_revision,
        history_truncated: timeline.history_truncated,
        as_of: timeline.as_of,
    };
    row.sla_next = next_change(&row.crossings, row.as_of);
    row
}

/// The earliest crossing after `as_of`: the next SLA change with no new event.
pub fn next_change(crossings: &Crossings, as_of: Timestamp) -> Option<SlaChange> {
    [
        (crossings.group_near_at, RowSla::Near, "group"),
        (crossings.group_over_at, RowSla::Over, "group"),
        (crossings.status_near_at, RowSla::Near, "status"),
        (crossings.status_over_at, RowSla::Over, "status"),
    ]
    .into_iter()
    .filter_map(|(at, state, scope)| at.filter(|at| *at > as_of).map(|at| (at, state, scope)))
    .min_by_key(|(at, state, _)| (*at, std::cmp::Reverse(*state)))
    .map(|(at, state, scope)| SlaChange { at, state, scope: scope.to_owned() })
}

/// `row` measured at `as_of`, which must not be before its latest event: the open interval's
/// group and status, and the open cycles, grow by the current group's calendar; their states
/// follow. `None` when `as_of` is before the latest event (the row cannot know; compute the
/// timeline from the events instead).
pub fn row_at(row: &OrderRow, as_of: Timestamp, rules: &ProjectRules) -> Option<OrderRow> {
    if as_of < row.last_changed_at {
        return None;
    }
    let mut out = row.clone();
    out.as_of = as_of;
    if !row.open || as_of <= row.as_of {
        out.sla_next = next_change(&out.crossings, as_of);
        return Some(out);
    }
    let clock = rules.clock_for_group(row.current_group_id);
    let working = clock.working_micros(row.as_of, as_of);
    let wall = as_of.as_micros() - row.as_of.as_micros();
    let near = rules.settings.sla.near;
    let grow = |stage: &mut StageRow| {
        stage.working_micros += working;
        stage.wall_micros += wall;
        stage.sla = row_sla(sla_state(stage.working_micros, stage.limit_seconds, near));
    };
    if let Some(group) = out.groups.get_mut(&row.current_group_id) {
        grow(group);
    }
    if let Some(status) = out.statuses.get_mut(&row.current_status_id) {
        grow(status);
    }
    for cycle in out.cycles.values_mut().filter(|c| c.open) {
        cycle.working_micros += working;
        cycle.wall_micros += wall;
    }
    out.working_micros += working;
    out.wall_micros += wall;
    out.sla = out.groups.values().chain(out.statuses.values()).map(|s| s.sla).max().unwrap_or_default();
    out.sla_next = next_change(&out.crossings, as_of);
    Some(out)
}
