//! Hand-computed working-time cases: windows, overnight runs, exceptions and both DST edges.

use chrono::NaiveDate;
use chrono_tz::Tz;
use ksa_domain::{WorkCalendar, WorkingClock};
use ksa_schemas::Timestamp;
use ksa_schemas::settings::{CalendarSpec, Window};

fn t(text: &str) -> Timestamp {
    Timestamp::parse(text).unwrap()
}

fn windows(list: &[&str]) -> Vec<Window> {
    list.iter().map(|w| Window::parse(w).unwrap()).collect()
}

/// `days` is Monday first.
fn spec(days: [&[&str]; 7], exceptions: &[(&str, &[&str])]) -> CalendarSpec {
    CalendarSpec {
        weekly: days.map(windows),
        exceptions: exceptions.iter().map(|(d, w)| (NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap(), windows(w))).collect(),
    }
}

fn clock(spec: &CalendarSpec, tz: Tz) -> WorkingClock {
    WorkingClock::new(
        WorkCalendar::new(spec, tz),
        NaiveDate::from_ymd_opt(2025, 12, 1).unwrap(),
        NaiveDate::from_ymd_opt(2027, 1, 31).unwrap(),
    )
}

fn hours(clock: &WorkingClock, a: &str, b: &str) -> f64 {
    clock.working_seconds(t(a), t(b)) / 3600.0
}

#[test]
fn office_hours_count_only_weekday_windows() {
    let c = clock(&CalendarSpec::office_hours(), Tz::UTC);
    // Monday 2026-01-05.
    assert_eq!(hours(&c, "2026-01-05T08:00:00Z", "2026-01-05T19:00:00Z"), 9.0);
    // Friday 17:00 to Monday 10:00: one hour each side of the weekend.
    assert_eq!(hours(&c, "2026-01-09T17:00:00Z", "2026-01-12T10:00:00Z"), 2.0);
    assert_eq!(hours(&c, "2026-01-10T00:00:00Z", "2026-01-12T00:00:00Z"), 0.0);
}

#[test]
fn several_windows_a_day_skip_the_break() {
    let day: &[&str] = &["09:00-13:00", "14:00-18:00"];
    let c = clock(&spec([day, day, day, day, day, &[], &[]], &[]), Tz::UTC);
    assert_eq!(hours(&c, "2026-01-05T12:00:00Z", "2026-01-05T15:00:00Z"), 2.0);
    assert_eq!(hours(&c, "2026-01-05T13:15:00Z", "2026-01-05T13:45:00Z"), 0.0);
}

#[test]
fn overlapping_windows_are_merged() {
    let day: &[&str] = &["09:00-13:00", "12:00-18:00", "10:00-11:00"];
    let c = clock(&spec([day; 7], &[]), Tz::UTC);
    assert_eq!(hours(&c, "2026-01-05T00:00:00Z", "2026-01-06T00:00:00Z"), 9.0);
}

#[test]
fn overnight_window_runs_into_the_next_day() {
    let c = clock(&spec([&["22:00-06:00"], &[], &[], &[], &[], &[], &[]], &[]), Tz::UTC);
    // Monday 20:00 to Tuesday 12:00 holds Monday's whole night shift.
    assert_eq!(hours(&c, "2026-01-05T20:00:00Z", "2026-01-06T12:00:00Z"), 8.0);
    // Tuesday night belongs to no shift: the window belongs to Monday only.
    assert_eq!(hours(&c, "2026-01-06T20:00:00Z", "2026-01-07T12:00:00Z"), 0.0);
    // Half of it.
    assert_eq!(hours(&c, "2026-01-06T02:00:00Z", "2026-01-06T12:00:00Z"), 4.0);
}

#[test]
fn a_holiday_removes_only_the_windows_that_start_on_it() {
    let night: &[&str] = &["22:00-06:00"];
    let c = clock(&spec([night, night, night, &[], &[], &[], &[]], &[("2026-01-06", &[])]), Tz::UTC);
    // Monday's shift still runs into the Tuesday holiday (8 h); Tuesday's own shift is gone;
    // Wednesday's starts at 22:00 (2 h before Thursday).
    assert_eq!(hours(&c, "2026-01-05T00:00:00Z", "2026-01-08T00:00:00Z"), 10.0);
}

#[test]
fn an_exception_gives_a_date_its_own_windows() {
    let day: &[&str] = &["09:00-18:00"];
    let c = clock(&spec([day, day, day, day, day, &[], &[]], &[("2026-03-07", &["10:00-14:00"])]), Tz::UTC);
    // 2026-03-07 is a Saturday: a working Saturday with a short day.
    assert_eq!(hours(&c, "2026-03-07T00:00:00Z", "2026-03-08T00:00:00Z"), 4.0);
}

#[test]
fn a_window_may_end_at_24_00() {
    let c = clock(&spec([&["18:00-24:00"], &[], &[], &[], &[], &[], &[]], &[]), Tz::UTC);
    assert_eq!(hours(&c, "2026-01-05T00:00:00Z", "2026-01-07T00:00:00Z"), 6.0);
}

#[test]
fn kyiv_spring_forward_day_is_23_hours_and_keeps_wall_clock_windows() {
    let kyiv: Tz = "Europe/Kyiv".parse().unwrap();
    // 2026-03-29 is a Sunday; clocks go from 03:00 to 04:00 local (01:00 UTC).
    let whole = clock(&spec([&[], &[], &[], &[], &[], &[], &["00:00-24:00"]], &[]), kyiv);
    assert_eq!(hours(&whole, "2026-03-28T00:00:00Z", "2026-03-30T00:00:00Z"), 23.0);
    let office = clock(&spec([&[], &[], &[], &[], &[], &[], &["09:00-18:00"]], &[]), kyiv);
    assert_eq!(hours(&office, "2026-03-28T00:00:00Z", "2026-03-30T00:00:00Z"), 9.0);
    // Local 09:00 after the change is 06:00 UTC.
    assert_eq!(hours(&office, "2026-03-29T06:00:00Z", "2026-03-29T07:00:00Z"), 1.0);
    assert_eq!(hours(&office, "2026-03-29T05:00:00Z", "2026-03-29T06:00:00Z"), 0.0);
}

#[test]
fn an_edge_inside_the_spring_gap_moves_to_the_end_of_the_gap() {
    let kyiv: Tz = "Europe/Kyiv".parse().unwrap();
    // 03:30 does not exist on 2026-03-29: the window opens at 04:00 local (01:00 UTC) and
    // closes at 05:00 local (02:00 UTC).
    let c = clock(&spec([&[], &[], &[], &[], &[], &[], &["03:30-05:00"]], &[]), kyiv);
    assert_eq!(hours(&c, "2026-03-28T00:00:00Z", "2026-03-30T00:00:00Z"), 1.0);
    assert_eq!(hours(&c, "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"), 1.0);
    // 02:00 (+02:00) to 05:00 (+03:00) is two real hours.
    let c = clock(&spec([&[], &[], &[], &[], &[], &[], &["02:00-05:00"]], &[]), kyiv);
    assert_eq!(hours(&c, "2026-03-28T00:00:00Z", "2026-03-30T00:00:00Z"), 2.0);
}

#[test]
fn kyiv_fall_back_day_is_25_hours_and_office_day_stays_9_hours() {
    let kyiv: Tz = "Europe/Kyiv".parse().unwrap();
    // 2026-10-25 is a Sunday; clocks go from 04:00 back to 03:00 local (01:00 UTC).
    let whole = clock(&spec([&[], &[], &[], &[], &[], &[], &["00:00-24:00"]], &[]), kyiv);
    assert_eq!(hours(&whole, "2026-10-24T00:00:00Z", "2026-10-26T00:00:00Z"), 25.0);
    let office = clock(&spec([&[], &[], &[], &[], &[], &[], &["09:00-18:00"]], &[]), kyiv);
    assert_eq!(hours(&office, "2026-10-24T00:00:00Z", "2026-10-26T00:00:00Z"), 9.0);
    // Local 09:00 after the change is 07:00 UTC.
    assert_eq!(hours(&office, "2026-10-25T07:00:00Z", "2026-10-25T08:00:00Z"), 1.0);
}

#[test]
fn a_window_in_the_fall_overlap_covers_the_real_elapsed_time() {
    let kyiv: Tz = "Europe/Kyiv".parse().unwrap();
    // 03:30 happens twice: the opening edge takes the first (00:30 UTC); 04:30 is after the
    // change (02:30 UTC): two real hours.
    let c = clock(&spec([&[], &[], &[], &[], &[], &[], &["03:30-04:30"]], &[]), kyiv);
    assert_eq!(hours(&c, "2026-10-24T00:00:00Z", "2026-10-26T00:00:00Z"), 2.0);
    // 02:00-03:30: the closing edge takes the second 03:30 (01:30 UTC); 02:00 is 23:00 UTC.
    let c = clock(&spec([&[], &[], &[], &[], &[], &[], &["02:00-03:30"]], &[]), kyiv);
    assert_eq!(hours(&c, "2026-10-24T00:00:00Z", "2026-10-26T00:00:00Z"), 2.5);
}

#[test]
fn instants_outside_the_compiled_span_are_still_exact() {
    let spec = CalendarSpec::office_hours();
    let narrow = WorkingClock::new(
        WorkCalendar::new(&spec, Tz::UTC),
        NaiveDate::from_ymd_opt(2026, 1, 5).unwrap(),
        NaiveDate::from_ymd_opt(2026, 1, 9).unwrap(),
    );
    let wide = clock(&spec, Tz::UTC);
    for (a, b) in [
        ("2025-12-29T00:00:00Z", "2026-01-20T00:00:00Z"),
        ("2025-12-01T10:00:00Z", "2026-01-06T10:00:00Z"),
        ("2026-01-08T10:00:00Z", "2026-02-06T10:00:00Z"),
        ("2026-02-01T10:00:00Z", "2026-02-06T10:00:00Z"),
    ] {
        assert_eq!(narrow.working_micros(t(a), t(b)), wide.working_micros(t(a), t(b)), "{a}..{b}");
    }
    // Three weeks of office hours: 15 days × 9 h.
    assert_eq!(hours(&narrow, "2025-12-29T00:00:00Z", "2026-01-19T00:00:00Z"), 135.0);
}

#[test]
fn always_open_counts_wall_time() {
    let c = WorkingClock::always_open();
    assert_eq!(c.working_micros(t("2026-01-01T00:00:00Z"), t("2026-01-01T00:00:01.5Z")), 1_500_000);
    assert_eq!(c.working_micros(t("2026-01-02T00:00:00Z"), t("2026-01-01T00:00:00Z")), 0);
}

#[test]
fn an_absurdly_early_timestamp_does_not_compile_millennia_of_windows() {
    use ksa_domain::ProjectRules;
    use ksa_schemas::ProjectSettings;
    let settings = ProjectSettings::from_json(r#"{"calendars": {"default": "Mon-Fri 09:00-18:00"}}"#).unwrap();
    let rules = ProjectRules::covering(settings, t("0001-01-01T00:00:00Z"), t("2026-12-01T00:00:00Z"));
    let clock = rules.default_clock();
    // At most twenty years of one window a day, not two thousand.
    assert!(clock.compiled_windows() <= ProjectRules::MAX_COMPILED_DAYS as usize, "{}", clock.compiled_windows());
    assert!(clock.compiled_windows() > 5000);
    assert_eq!(hours(clock, "2026-01-05T00:00:00Z", "2026-01-12T00:00:00Z"), 45.0);
    // Before the compiled span the answer is still exact: a week of 1990 (Monday 1990-01-08).
    assert_eq!(hours(clock, "1990-01-08T00:00:00Z", "1990-01-15T00:00:00Z"), 45.0);
}
