//! Hand-computed timelines: intervals, totals, rework, terminal groups, reopening, late events,
//! untracked lead time, SLA grids, cycles and overrides.

use chrono::NaiveDate;
use ksa_domain::timeline::canonical_events;
use ksa_domain::{OrderOverrides, OrderTimeline, ProjectRules, SlaProfile, SlaState, Urgency, compute_timeline};
use ksa_schemas::settings::{CycleEnd, CycleRule, CycleStart, Occurrence};
use ksa_schemas::{EventSource, ProjectSettings, StatusEvent, Timestamp};

fn t(text: &str) -> Timestamp {
    Timestamp::parse(text).unwrap()
}

const CREATED: &str = "2026-01-05T08:00:00Z";

fn ev(status: i64, group: u16, at: &str) -> StatusEvent {
    StatusEvent {
        order_id: 7,
        status_id: status,
        group_id: group,
        changed_at: t(at),
        order_created_at: t(CREATED),
        source: EventSource::Webhook,
    }
}

/// UTC, office hours by default, production (group 3) around the clock on weekdays.
fn settings() -> ProjectSettings {
    ProjectSettings::from_json(
        r#"{
        "timezone": "UTC",
        "calendars": {
            "default": "Mon-Fri 09:00-18:00",
            "groups": {"3": {"weekly": {"mon": ["00:00-24:00"], "tue": ["00:00-24:00"], "wed": ["00:00-24:00"],
                                         "thu": ["00:00-24:00"], "fri": ["00:00-24:00"]}}}
        },
        "sla": {"near": {"percent": 50}, "normal": {"2": "02:00", "3": "48:00"}, "urgent": {"2": "01:00", "3": "08:00"},
                "statuses": {"normal": {"21": "00:30"}}},
        "cycles": [
            {"id": 1, "title": "to delivery", "start": {"kind": "created"}, "end": {"kind": "group", "id": 4}},
            {"id": 2, "title": "full cycle", "start": {"kind": "created"}, "end": {"kind": "group", "id": 5}},
            {"id": 3, "title": "production", "start": {"kind": "group", "id": 3}, "end": {"kind": "group", "id": 4, "occurrence": "last"}}
        ]
    }"#,
    )
    .unwrap()
}

fn rules() -> ProjectRules {
    ProjectRules::new(settings(), NaiveDate::from_ymd_opt(2025, 12, 1).unwrap(), NaiveDate::from_ymd_opt(2026, 3, 1).unwrap())
}

fn timeline(events: &[StatusEvent], now: &str) -> OrderTimeline {
    compute_timeline(events, Urgency::Pending, &OrderOverrides::default(), &rules(), t(now)).unwrap()
}

fn secs(hours: f64) -> f64 {
    hours * 3600.0
}

/// Monday 2026-01-05: new 10:00, agreement 11:00, production 13:00, delivery Tue 10:00,
/// completed Wed 12:00.
fn straight_path() -> Vec<StatusEvent> {
    vec![
        ev(1, 1, "2026-01-05T10:00:00Z"),
        ev(20, 2, "2026-01-05T11:00:00Z"),
        ev(7, 3, "2026-01-05T13:00:00Z"),
        ev(11, 4, "2026-01-06T10:00:00Z"),
        ev(12, 5, "2026-01-07T12:00:00Z"),
    ]
}

#[test]
fn each_event_opens_an_interval_that_the_next_one_closes() {
    let tl = timeline(&straight_path(), "2026-01-08T00:00:00Z");
    assert_eq!(tl.intervals.len(), 5);
    assert_eq!(tl.intervals[1].left_at, Some(t("2026-01-05T13:00:00Z")));
    assert_eq!(tl.intervals[1].wall_seconds.seconds(), secs(2.0));
    // Production: Mon 13:00 → Tue 10:00 by its own round-the-clock weekday calendar.
    assert_eq!(tl.intervals[2].working_seconds.seconds(), secs(21.0));
    // Delivery: Tue 10:00 → Wed 12:00 by office hours: 8 h + 3 h.
    assert_eq!(tl.intervals[3].working_seconds.seconds(), secs(11.0));
    // The last interval is open and measured to `now` (Wed 12:00 → Thu 00:00).
    assert_eq!(tl.intervals[4].left_at, None);
    assert_eq!(tl.intervals[4].wall_seconds.seconds(), secs(12.0));
    assert_eq!(tl.current_group_id, 5);
    assert_eq!(tl.closed_at, Some(t("2026-01-07T12:00:00Z")));
    assert_eq!(tl.delivery_entered_at, Some(t("2026-01-06T10:00:00Z")));
}

#[test]
fn terminal_groups_appear_as_intervals_but_not_in_totals() {
    let tl = timeline(&straight_path(), "2026-01-08T00:00:00Z");
    assert_eq!(tl.groups.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert!(!tl.statuses.contains_key(&12));
}

#[test]
fn untracked_lead_time_is_reported_not_attributed() {
    let tl = timeline(&straight_path(), "2026-01-08T00:00:00Z");
    assert_eq!(tl.started_at, t(CREATED));
    assert_eq!(tl.untracked_seconds.seconds(), secs(2.0));
    assert_eq!(tl.groups[&1].wall_seconds.seconds(), secs(1.0));
}

#[test]
fn cycles_run_from_creation_to_the_first_entry_and_skip_terminal_time() {
    let tl = timeline(&straight_path(), "2026-01-08T00:00:00Z");
    let to_delivery = &tl.cycles[&1];
    assert!(!to_delivery.open);
    assert_eq!(to_delivery.ended_at, Some(t("2026-01-06T10:00:00Z")));
    assert_eq!(to_delivery.wall_seconds.seconds(), secs(26.0));
    // Lead-in 08:00–10:00 by office hours (1 h, from 09:00), new 1 h, agreement 2 h,
    // production 21 h.
    assert_eq!(to_delivery.working_seconds.seconds(), secs(25.0));
    let full = &tl.cycles[&2];
    assert_eq!(full.wall_seconds.seconds(), secs(52.0));
    assert_eq!(full.working_seconds.seconds(), secs(36.0));
}

#[test]
fn an_open_cycle_is_measured_to_now() {
    let events = &straight_path()[..3];
    let tl = timeline(events, "2026-01-05T15:00:00Z");
    let full = &tl.cycles[&2];
    assert!(full.open);
    assert_eq!(full.ended_at, None);
    assert_eq!(full.wall_seconds.seconds(), secs(7.0));
}

#[test]
fn a_cycle_whose_start_never_happened_is_absent() {
    let tl = timeline(&straight_path()[..2], "2026-01-05T12:00:00Z");
    assert!(!tl.cycles.contains_key(&3));
    assert!(tl.cycles.contains_key(&1));
}

#[test]
fn reentering_a_group_adds_a_visit_and_sums_the_time() {
    let events = vec![
        ev(1, 1, "2026-01-05T10:00:00Z"),
        ev(20, 2, "2026-01-05T11:00:00Z"),
        ev(21, 2, "2026-01-05T11:30:00Z"),
        ev(7, 3, "2026-01-05T12:00:00Z"),
        ev(20, 2, "2026-01-05T14:00:00Z"),
        ev(7, 3, "2026-01-05T15:00:00Z"),
    ];
    let tl = timeline(&events, "2026-01-05T16:00:00Z");
    // Two statuses in a row in group 2 are one visit; coming back is a second one.
    assert_eq!(tl.groups[&2].visits, 2);
    assert_eq!(tl.groups[&2].wall_seconds.seconds(), secs(2.0));
    assert_eq!(tl.groups[&3].visits, 2);
    assert_eq!(tl.groups[&3].wall_seconds.seconds(), secs(3.0));
    assert_eq!(tl.statuses[&20].visits, 2);
    assert_eq!(tl.statuses[&20].wall_seconds.seconds(), secs(1.5));
}

#[test]
fn reopening_after_completion_resumes_the_clock() {
    let events = vec![
        ev(1, 1, "2026-01-05T10:00:00Z"),
        ev(12, 5, "2026-01-05T11:00:00Z"),
        ev(7, 3, "2026-01-05T14:00:00Z"),
        ev(12, 5, "2026-01-05T16:00:00Z"),
    ];
    let tl = timeline(&events, "2026-01-06T00:00:00Z");
    assert_eq!(tl.groups[&3].wall_seconds.seconds(), secs(2.0));
    assert_eq!(tl.closed_at, Some(t("2026-01-05T16:00:00Z")));
    // The full cycle ends at the first completion: lead-in 2 h + new 1 h.
    assert_eq!(tl.cycles[&2].wall_seconds.seconds(), secs(3.0));
    // A cycle whose span contains the completed stretch does not count it.
    let mut settings = settings();
    settings.cycles = vec![CycleRule {
        id: 9,
        title: "to last completion".into(),
        start: CycleStart::Created,
        end: CycleEnd::Group { id: 5, occurrence: Occurrence::Last },
    }];
    let rules = ProjectRules::covering(settings, t("2026-01-01T00:00:00Z"), t("2026-01-10T00:00:00Z"));
    let tl = compute_timeline(&events, Urgency::Pending, &OrderOverrides::default(), &rules, t("2026-01-06T00:00:00Z")).unwrap();
    // 08:00 → 16:00 minus 11:00 → 14:00 in group 5.
    assert_eq!(tl.cycles[&9].wall_seconds.seconds(), secs(5.0));
}

#[test]
fn a_late_event_is_merged_into_place() {
    let mut events = straight_path();
    let late = ev(21, 2, "2026-01-05T12:00:00Z");
    let before = timeline(&events, "2026-01-08T00:00:00Z");
    assert_eq!(before.intervals[1].wall_seconds.seconds(), secs(2.0));
    events.push(late);
    let after = timeline(&events, "2026-01-08T00:00:00Z");
    assert_eq!(after.intervals.len(), 6);
    assert_eq!(after.intervals[1].left_at, Some(t("2026-01-05T12:00:00Z")));
    assert_eq!(after.intervals[2].status_id, 21);
    // Same answer as when the event arrived on time.
    let mut in_order = straight_path();
    in_order.insert(2, late);
    assert_eq!(after, timeline(&in_order, "2026-01-08T00:00:00Z"));
}

#[test]
fn duplicates_are_dropped_and_re_entry_at_another_time_is_kept() {
    let mut events = straight_path();
    events.push(events[1]);
    events.push(events[1]);
    let tl = timeline(&events, "2026-01-08T00:00:00Z");
    assert_eq!(tl.event_count, 5);
    assert_eq!(canonical_events(&events, t("2026-01-08T00:00:00Z")).len(), 5);
}

#[test]
fn events_after_as_of_are_ignored() {
    let tl = timeline(&straight_path(), "2026-01-05T12:00:00Z");
    assert_eq!(tl.intervals.len(), 2);
    assert_eq!(tl.current_status_id, 20);
    assert_eq!(tl.intervals[1].wall_seconds.seconds(), secs(1.0));
    assert!(
        compute_timeline(&straight_path(), Urgency::Pending, &OrderOverrides::default(), &rules(), t("2026-01-05T09:00:00Z")).is_none()
    );
}

#[test]
fn sla_uses_the_normal_grid_until_items_say_urgent() {
    let events = &straight_path()[..2];
    // 1 h 15 min in agreement: normal limit 2 h (near at 50 %), urgent limit 1 h.
    let now = t("2026-01-05T12:15:00Z");
    let pending = compute_timeline(events, Urgency::Pending, &OrderOverrides::default(), &rules(), now).unwrap();
    assert_eq!(pending.groups[&2].sla, SlaState::Near);
    assert_eq!(pending.sla_profile, SlaProfile::Normal);
    let urgent = compute_timeline(events, Urgency::Urgent, &OrderOverrides::default(), &rules(), now).unwrap();
    assert_eq!(urgent.groups[&2].sla, SlaState::Over);
    assert_eq!(urgent.sla, SlaState::Over);
    // A group without a limit has no state; the order takes the worst.
    assert_eq!(urgent.groups[&1].sla, SlaState::None);
}

#[test]
fn sla_counts_working_time_so_an_order_waits_out_the_night() {
    let events = [ev(20, 2, "2026-01-05T17:00:00Z")];
    // 17:00 Monday to 09:30 Tuesday: 1.5 working hours of the 2 h limit.
    let tl = timeline(&events, "2026-01-06T09:30:00Z");
    assert_eq!(tl.groups[&2].working_seconds.seconds(), secs(1.5));
    assert_eq!(tl.groups[&2].sla, SlaState::Near);
    let tl = timeline(&events, "2026-01-06T10:00:00Z");
    assert_eq!(tl.groups[&2].sla, SlaState::Over);
}

#[test]
fn per_status_limits_count_in_the_order_state() {
    let events = [ev(1, 1, "2026-01-05T10:00:00Z"), ev(21, 2, "2026-01-05T11:00:00Z")];
    let tl = timeline(&events, "2026-01-05T11:40:00Z");
    assert_eq!(tl.groups[&2].sla, SlaState::Ok);
    assert_eq!(tl.statuses[&21].sla, SlaState::Over);
    assert_eq!(tl.sla, SlaState::Over);
}

#[test]
fn overrides_beat_every_rule() {
    let events = &straight_path()[..2];
    let now = t("2026-01-05T12:15:00Z");
    let forced_normal = OrderOverrides { is_urgent: Some(false), ..OrderOverrides::default() };
    let tl = compute_timeline(events, Urgency::Urgent, &forced_normal, &rules(), now).unwrap();
    assert_eq!(tl.urgency, Urgency::Normal);
    assert_eq!(tl.groups[&2].sla, SlaState::Near);
    let urgent_grid = OrderOverrides { sla_profile: Some(SlaProfile::Urgent), ..OrderOverrides::default() };
    let tl = compute_timeline(events, Urgency::Normal, &urgent_grid, &rules(), now).unwrap();
    assert_eq!(tl.groups[&2].sla, SlaState::Over);
    // Cycle overrides apply to the default cycle (the first rule here).
    let cycle = OrderOverrides {
        cycle_start: Some(t("2026-01-05T10:00:00Z")),
        cycle_end: Some(t("2026-01-05T11:30:00Z")),
        ..OrderOverrides::default()
    };
    let tl = compute_timeline(&straight_path(), Urgency::Normal, &cycle, &rules(), t("2026-01-08T00:00:00Z")).unwrap();
    assert_eq!(tl.cycles[&1].wall_seconds.seconds(), secs(1.5));
    assert!(!tl.cycles[&1].open);
    assert_eq!(tl.cycles[&2].wall_seconds.seconds(), secs(52.0));
}

#[test]
fn backfilled_history_is_flagged_as_truncated() {
    let mut event = ev(7, 3, "2026-01-05T13:00:00Z");
    event.source = EventSource::Backfilled;
    let tl = timeline(&[event], "2026-01-05T14:00:00Z");
    assert!(tl.history_truncated);
    assert!(!timeline(&straight_path(), "2026-01-08T00:00:00Z").history_truncated);
}

#[test]
fn the_analyzer_shape_serializes_times_as_rfc3339_and_durations_as_seconds() {
    let tl = timeline(&straight_path()[..2], "2026-01-05T11:30:00Z");
    let json = serde_json::to_value(&tl).unwrap();
    assert_eq!(json["started_at"], "2026-01-05T08:00:00Z");
    assert_eq!(json["untracked_seconds"], 7200.0);
    assert_eq!(json["intervals"][1]["left_at"], serde_json::Value::Null);
    assert_eq!(json["groups"]["2"]["visits"], 1);
    assert_eq!(json["groups"]["2"]["sla"], "ok");
    assert_eq!(json["cycles"]["1"]["open"], true);
    assert_eq!(json["urgency"], "pending");
}
