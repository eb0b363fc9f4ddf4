//! criterion benches of the domain core: one working-time query, one order recompute.

use std::collections::BTreeMap;
use std::hint::black_box;

use chrono::{Duration, NaiveDate};
use criterion::{Criterion, criterion_group, criterion_main};
use ksa_benches::traffic::Rng;
use ksa_domain::{OrderOverrides, ProjectRules, Urgency, WorkCalendar, WorkingClock, compute_timeline};
use ksa_schemas::settings::{CalendarSpec, Calendars, Window};
use ksa_schemas::{EventSource, ProjectSettings, StatusEvent, Timestamp};

const DAY: i64 = 86_400_000_000;
/// 2025-01-01T00:00:00Z
const START: i64 = 1_735_689_600_000_000;

/// Mon–Fri 09:00–13:00 and 14:00–18:00 with ten holidays a year.
fn office_with_lunch_and_holidays() -> CalendarSpec {
    let day = vec![Window::parse("09:00-13:00").unwrap(), Window::parse("14:00-18:00").unwrap()];
    let mut exceptions = BTreeMap::new();
    for year in 2025..=2027 {
        for (m, d) in [(1, 1), (1, 7), (3, 8), (5, 1), (5, 9), (6, 28), (7, 15), (8, 24), (10, 14), (12, 25)] {
            exceptions.insert(NaiveDate::from_ymd_opt(year, m, d).unwrap(), Vec::new());
        }
    }
    CalendarSpec { weekly: std::array::from_fn(|i| if i < 5 { day.clone() } else { Vec::new() }), exceptions }
}

fn working_seconds(c: &mut Criterion) {
    let kyiv = "Europe/Kyiv".parse().unwrap();
    let first = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    let clock = WorkingClock::new(WorkCalendar::new(&office_with_lunch_and_holidays(), kyiv), first, first + Duration::days(3 * 365));
    let mut rng = Rng::new(11);
    let pairs: Vec<(Timestamp, Timestamp)> = (0..4096)
        .map(|_| {
            let a = START + rng.below((3 * 365 - 30) as u64 * DAY as u64) as i64;
            let b = a + rng.below(30 * DAY as u64) as i64;
            (Timestamp::from_micros(a), Timestamp::from_micros(b))
        })
        .collect();
    let mut i = 0;
    c.bench_function("working_seconds/two_windows_a_day_holidays_3_years", |bench| {
        bench.iter(|| {
            i = (i + 1) & 4095;
            let (a, b) = pairs[i];
            clock.working_micros(black_box(a), black_box(b))
        })
    });
}

fn recompute_order(c: &mut Criterion) {
    let mut groups = BTreeMap::new();
    groups.insert(2, office_with_lunch_and_holidays());
    groups.insert(
        3,
        CalendarSpec {
            weekly: std::array::from_fn(|_| vec![Window::parse("22:00-06:00").unwrap(), Window::parse("08:00-20:00").unwrap()]),
            exceptions: BTreeMap::new(),
        },
    );
    groups.insert(
        4,
        CalendarSpec {
            weekly: std::array::from_fn(|i| if i < 6 { vec![Window::parse("08:00-20:00").unwrap()] } else { Vec::new() }),
            exceptions: BTreeMap::new(),
        },
    );
    let settings = ProjectSettings::from_json(
        r#"{"timezone": "Europe/Kyiv", "sla": {"normal": {"1": "01:00", "2": "08:00", "3": "36:30", "4": "48:00"}, "urgent": {"2": "02:00", "3": "08:00"}},
            "cycles": [{"id": 1, "title": "to delivery", "start": {"kind": "created"}, "end": {"kind": "group", "id": 4}},
                       {"id": 2, "title": "full cycle", "start": {"kind": "created"}, "end": {"kind": "group", "id": 5}},
                       {"id": 3, "title": "production", "start": {"kind": "group", "id": 3}, "end": {"kind": "group", "id": 4, "occurrence": "last"}}]}"#,
    )
    .unwrap();
    let settings = ProjectSettings { calendars: Calendars { default: CalendarSpec::office_hours(), groups }, ..settings };
    let first = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    let rules = ProjectRules::new(settings, first, first + Duration::days(3 * 365));
    let path: [(i64, u16); 12] = [(1, 1), (20, 2), (21, 2), (7, 3), (8, 3), (20, 2), (7, 3), (8, 3), (11, 4), (12, 5), (8, 3), (11, 4)];
    let base = START + 400 * DAY;
    let events: Vec<StatusEvent> = path
        .iter()
        .enumerate()
        .map(|(i, &(status_id, group_id))| StatusEvent {
            order_id: 1,
            status_id,
            group_id,
            changed_at: Timestamp::from_micros(base + i as i64 * 7 * 3_600_000_000),
            order_created_at: Timestamp::from_micros(base - 3_600_000_000),
            source: EventSource::Webhook,
        })
        .collect();
    let now = Timestamp::from_micros(base + 10 * DAY);
    let overrides = OrderOverrides::default();
    c.bench_function("timeline/12_events_3_group_calendars", |bench| {
        bench.iter(|| compute_timeline(black_box(&events), Urgency::Normal, &overrides, &rules, now))
    });
}

criterion_group!(benches, working_seconds, recompute_order);
criterion_main!(benches);
