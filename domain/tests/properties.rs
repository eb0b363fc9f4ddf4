//! Properties of docs/domain.md, each over at least 1,000 generated cases: working time is
//! additive, bounded by wall time, equal to it on 24/7, equal to a minute-by-minute count, the same
//! inside and outside the compiled span; and a timeline does not depend on arrival order or
//! duplicates.

use std::collections::BTreeMap;

use chrono::{Duration, FixedOffset, NaiveDate, TimeZone, Timelike};
use chrono_tz::Tz;
use ksa_domain::{OrderOverrides, ProjectRules, Urgency, WorkCalendar, WorkingClock, compute_timeline};
use ksa_schemas::settings::{CalendarSpec, Calendars, Window};
use ksa_schemas::{EventSource, ProjectSettings, StatusEvent, Timestamp};
use proptest::prelude::*;

const ZONES: [&str; 6] = ["UTC", "Europe/Kyiv", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "America/Santiago"];

/// 2026-01-01T00:00:00Z
const BASE: i64 = 1_767_225_600_000_000;
const DAY: i64 = 86_400_000_000;
const MINUTE: i64 = 60_000_000;

fn window() -> impl Strategy<Value = Window> {
    (0u16..96, 0u16..=96).prop_map(|(s, e)| Window::new(s * 15, e * 15).unwrap())
}

fn day() -> impl Strategy<Value = Vec<Window>> {
    prop::collection::vec(window(), 0..3)
}

fn calendar() -> impl Strategy<Value = CalendarSpec> {
    let weekly = [day(), day(), day(), day(), day(), day(), day()];
    let exceptions = prop::collection::btree_map(
        (0u32..365).prop_map(|d| NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + Duration::days(d.into())),
        day(),
        0..4,
    );
    (weekly, exceptions).prop_map(|(weekly, exceptions)| CalendarSpec { weekly, exceptions })
}

fn zone() -> impl Strategy<Value = Tz> {
    prop::sample::select(ZONES.to_vec()).prop_map(|z| z.parse::<Tz>().unwrap())
}

fn compiled(spec: &CalendarSpec, tz: Tz) -> WorkingClock {
    WorkingClock::new(
        WorkCalendar::new(spec, tz),
        NaiveDate::from_ymd_opt(2025, 12, 1).unwrap(),
        NaiveDate::from_ymd_opt(2027, 1, 31).unwrap(),
    )
}

/// An instant in 2026, to the microsecond.
fn instant() -> impl Strategy<Value = Timestamp> {
    (0i64..365 * DAY).prop_map(|o| Timestamp::from_micros(BASE + o))
}

/// Is local minute `x` of `date` inside a window, by the rules read literally: a window belongs
/// to the date it starts on, and an overnight one runs into the next date.
fn reference_is_working(spec: &CalendarSpec, date: NaiveDate, x: u16) -> bool {
    let windows_of = |d: NaiveDate| -> &[Window] {
        use chrono::Datelike;
        spec.exceptions.get(&d).map_or(&spec.weekly[d.weekday().num_days_from_monday() as usize][..], |w| &w[..])
    };
    let today = windows_of(date).iter().any(|w| if w.is_overnight() { x >= w.start } else { x >= w.start && x < w.end });
    let from_yesterday = windows_of(date.pred_opt().unwrap()).iter().any(|w| w.is_overnight() && x < w.end);
    today || from_yesterday
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn working_time_is_additive(spec in calendar(), tz in zone(), a in instant(), b in instant(), c in instant()) {
        let mut points = [a, b, c];
        points.sort();
        let [a, b, c] = points;
        let clock = compiled(&spec, tz);
        prop_assert_eq!(clock.working_micros(a, c), clock.working_micros(a, b) + clock.working_micros(b, c));
    }

    #[test]
    fn working_time_lies_between_zero_and_wall_time(spec in calendar(), tz in zone(), a in instant(), span in 0i64..20 * DAY) {
        let b = Timestamp::from_micros(a.as_micros() + span);
        let w = compiled(&spec, tz).working_micros(a, b);
        prop_assert!(w >= 0);
        prop_assert!(w <= span);
    }

    #[test]
    fn always_open_calendar_gives_wall_time(tz in zone(), a in instant(), span in 0i64..400 * DAY) {
        let b = Timestamp::from_micros(a.as_micros() + span);
        let clock = compiled(&CalendarSpec::always_open(), tz);
        prop_assert_eq!(clock.working_micros(a, b), span);
        // Also when compiled as a plain calendar rather than recognised as 24/7.
        let mut spec = CalendarSpec::always_open();
        spec.weekly[0] = vec![Window::new(0, 600).unwrap(), Window::new(600, 1440).unwrap()];
        let fixed = WorkCalendar::new(&spec, tz);
        prop_assert!(!fixed.is_always_open());
        let clock = WorkingClock::new(fixed, NaiveDate::from_ymd_opt(2025, 12, 1).unwrap(), NaiveDate::from_ymd_opt(2028, 1, 1).unwrap());
        prop_assert_eq!(clock.working_micros(a, b), span);
    }

    #[test]
    fn working_time_equals_a_minute_by_minute_count_without_dst(
        spec in calendar(),
        offset_minutes in prop::sample::select(vec![0i32, 330, -180]),
        start_minute in 0i64..360 * 1440,
        length in 0i64..3 * 1440,
    ) {
        let tz: Tz = match offset_minutes { 0 => "UTC", 330 => "Asia/Kolkata", _ => "America/Sao_Paulo" }.parse().unwrap();
        let offset = FixedOffset::east_opt(offset_minutes * 60).unwrap();
        let clock = compiled(&spec, tz);
        let a = BASE + start_minute * MINUTE;
        let b = a + length * MINUTE;
        let mut expected = 0;
        let mut m = a;
        while m < b {
            let local = offset.timestamp_micros(m).unwrap();
            let x = (local.hour() * 60 + local.minute()) as u16;
            if reference_is_working(&spec, local.date_naive(), x) {
                expected += MINUTE;
            }
            m += MINUTE;
        }
        prop_assert_eq!(clock.working_micros(Timestamp::from_micros(a), Timestamp::from_micros(b)), expected);
    }

    #[test]
    fn instants_outside_the_compiled_span_get_the_same_answer(spec in calendar(), tz in zone(), a in instant(), span in 0i64..60 * DAY, narrow_start in 0u32..300) {
        let b = Timestamp::from_micros(a.as_micros() + span);
        let first = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + Duration::days(narrow_start.into());
        let narrow = WorkingClock::new(WorkCalendar::new(&spec, tz), first, first + Duration::days(10));
        prop_assert_eq!(narrow.working_micros(a, b), compiled(&spec, tz).working_micros(a, b));
    }
}

fn event() -> impl Strategy<Value = StatusEvent> {
    // Few statuses and coarse times, so that ties and re-entries are common.
    (1u16..=6, 0i64..4, 0i64..14 * 24 * 4, 0i64..48).prop_map(|(group, status, quarter, created)| StatusEvent {
        order_id: 42,
        status_id: i64::from(group) * 10 + status,
        group_id: group,
        changed_at: Timestamp::from_micros(BASE + quarter * 15 * MINUTE),
        order_created_at: Timestamp::from_micros(BASE - created * 60 * MINUTE),
        source: EventSource::Webhook,
    })
}

fn project_rules() -> ProjectRules {
    let mut groups = BTreeMap::new();
    groups.insert(
        3,
        CalendarSpec { weekly: std::array::from_fn(|_| vec![Window::parse("22:00-06:00").unwrap()]), exceptions: BTreeMap::new() },
    );
    groups.insert(2, CalendarSpec::always_open());
    let settings = ProjectSettings {
        timezone: "Europe/Kyiv".parse().unwrap(),
        calendars: Calendars { default: CalendarSpec::office_hours(), groups },
        ..ProjectSettings::default()
    };
    ProjectRules::new(settings, NaiveDate::from_ymd_opt(2025, 12, 1).unwrap(), NaiveDate::from_ymd_opt(2026, 2, 1).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn timeline_ignores_arrival_order_and_duplicates(
        events in prop::collection::vec(event(), 1..13),
        seed in any::<u64>(),
        duplicates in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        now_days in 0i64..20,
    ) {
        let rules = project_rules();
        let now = Timestamp::from_micros(BASE + now_days * DAY);
        let mut delivered = events.clone();
        for index in &duplicates {
            delivered.push(events[index.index(events.len())]);
        }
        // A deterministic shuffle driven by the seed.
        let mut state = seed | 1;
        for i in (1..delivered.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            delivered.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let overrides = OrderOverrides::default();
        let original = compute_timeline(&events, Urgency::Pending, &overrides, &rules, now);
        let shuffled = compute_timeline(&delivered, Urgency::Pending, &overrides, &rules, now);
        prop_assert_eq!(original, shuffled);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// The instant a span of working time ends is the first at which that much has passed, on
    /// any calendar, in or outside the compiled span.
    #[test]
    fn the_instant_after_some_working_time_is_the_first_that_has_it(
        spec in calendar(), tz in zone(), start in instant(), working in 0i64..(40 * 60 * MINUTE), outside in any::<bool>()
    ) {
        let clock = if outside { WorkingClock::new(WorkCalendar::new(&spec, tz), NaiveDate::from_ymd_opt(2030, 1, 1).unwrap(), NaiveDate::from_ymd_opt(2030, 1, 2).unwrap()) } else { compiled(&spec, tz) };
        match clock.instant_after(start, working) {
            Some(end) => {
                prop_assert_eq!(clock.working_micros(start, end), working);
                if working > 0 {
                    prop_assert!(clock.working_micros(start, Timestamp::from_micros(end.as_micros() - 1)) < working);
                }
            }
            None => prop_assert!(clock.working_micros(start, Timestamp::from_micros(start.as_micros() + 400 * DAY)) < working),
        }
    }

    /// Segments tile the span in order, alternate, and their working part is the working time.
    #[test]
    fn segments_tile_the_span_and_add_up_to_its_working_time(spec in calendar(), tz in zone(), a in instant(), length in 0i64..(20 * DAY)) {
        let clock = compiled(&spec, tz);
        let b = Timestamp::from_micros(a.as_micros() + length);
        let segments = clock.segments(a, b);
        let mut at = a;
        let mut working = 0;
        for (i, (from, to, is_working)) in segments.iter().enumerate() {
            prop_assert_eq!(*from, at);
            prop_assert!(to > from);
            if i > 0 {
                prop_assert_ne!(segments[i - 1].2, *is_working);
            }
            if *is_working {
                working += to.as_micros() - from.as_micros();
            }
            at = *to;
        }
        prop_assert_eq!(at, if length == 0 { a } else { b });
        prop_assert_eq!(working, clock.working_micros(a, b));
        if let (Some(ca), Some(cb)) = (clock.cumulative(a), clock.cumulative(b)) {
            prop_assert_eq!(cb - ca, clock.working_micros(a, b));
        }
    }
}

/// Rules with SLA limits on both grids, per group and per status, and a near threshold.
fn rules_with_limits(near_percent: bool) -> ProjectRules {
    let mut rules = project_rules();
    let settings = &mut rules.settings;
    settings.sla.near = if near_percent {
        ksa_schemas::settings::NearThreshold::Percent(70.0)
    } else {
        ksa_schemas::settings::NearThreshold::BeforeSeconds(1800)
    };
    for (group, hours) in [(1u16, 2i64), (2, 5), (3, 3), (4, 30)] {
        settings.sla.normal.groups.insert(group, hours * 3600);
        settings.sla.urgent.groups.insert(group, hours * 1200);
    }
    settings.sla.normal.statuses.insert(21, 3600);
    settings.sla.normal.statuses.insert(30, 7200);
    ProjectRules::new(rules.settings.clone(), NaiveDate::from_ymd_opt(2025, 12, 1).unwrap(), NaiveDate::from_ymd_opt(2026, 3, 1).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// A row made at the latest event and measured later equals the row of the timeline
    /// computed at that later instant: totals, states, cycles and the next SLA change.
    #[test]
    fn a_row_measured_later_equals_the_timeline_computed_then(
        events in prop::collection::vec(event(), 1..10),
        later in 0i64..(10 * DAY),
        urgent in any::<bool>(),
        near_percent in any::<bool>(),
    ) {
        use ksa_domain::row::{order_row, row_at};
        use ksa_schemas::row::UrgencySource;
        let rules = rules_with_limits(near_percent);
        let urgency = if urgent { Urgency::Urgent } else { Urgency::Normal };
        let overrides = OrderOverrides::default();
        let latest = events.iter().map(|e| e.changed_at).max().unwrap();
        let at_latest = compute_timeline(&events, urgency, &overrides, &rules, latest).unwrap();
        let row = order_row(&at_latest, &rules, UrgencySource::Items, 1);
        let as_of = Timestamp::from_micros(latest.as_micros() + later);
        let measured = row_at(&row, as_of, &rules).unwrap();
        let then = order_row(&compute_timeline(&events, urgency, &overrides, &rules, as_of).unwrap(), &rules, UrgencySource::Items, 1);
        let mut expected = then.clone();
        expected.crossings = measured.crossings.clone();
        prop_assert_eq!(&measured, &expected);
        prop_assert_eq!(&measured.sla_next, &then.sla_next);
        // The state the next change names is the state at that instant.
        if let Some(next) = &measured.sla_next {
            let at = row_at(&row, next.at, &rules).unwrap();
            let scope = if next.scope == "group" { at.groups[&at.current_group_id].sla } else { at.statuses[&at.current_status_id].sla };
            prop_assert_eq!(scope, next.state);
            let before = row_at(&row, Timestamp::from_micros(next.at.as_micros() - 1), &rules).unwrap();
            let earlier = if next.scope == "group" { before.groups[&before.current_group_id].sla } else { before.statuses[&before.current_status_id].sla };
            prop_assert!(earlier < next.state);
        }
        // The row survives its JSON: what the processor stores is what readers measure.
        let stored: ksa_schemas::row::OrderRow = serde_json::from_str(&serde_json::to_string(&row).unwrap()).unwrap();
        prop_assert_eq!(&stored, &row);
    }
}
