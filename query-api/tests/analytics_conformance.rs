//! The analytics engines agree: one golden data set of facts (regenerated from a fixed seed,
//! with older versions of many rows written first), written to Parquet and to ClickHouse, and
//! every query under several parameter sets answers the same JSON on DataFusion and on
//! ClickHouse, equal to the expected answer kept in `tests/golden/analytics/`.
//!
//! `KSA_BLESS=1 cargo test -p ksa-query-api --test analytics_conformance` rewrites the expected
//! answers from DataFusion (read the diff before committing it).

use std::path::PathBuf;

use chrono_tz::Tz;
use ksa_facts::{ClickHouseConfig, ClickHouseSink, FactSink, ParquetConfig, ParquetSink};
use ksa_query_api::analytics::params::{BucketKind, Buckets, By, Period, UrgencyFilter};
use ksa_query_api::analytics::queries::{self, Scope};
use ksa_query_api::analytics::sql::Span;
use ksa_query_api::analytics::{AnalyticsEngine, ClickHouseEngine, DataFusionEngine, Query};
use ksa_schemas::facts::{CycleFact, FactBatch, FactSlaState, FactVersion, IntervalFact};
use ksa_schemas::{ProjectSettings, Timestamp};
use serde_json::Value;

const PROJECT: i64 = 7;
const SEED: u64 = 20_260_205;
const ORDERS: i64 = 400;

/// A small deterministic generator (a 64-bit LCG), so the data set never depends on a crate's
/// algorithm.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        ((self.next() << 31) | self.next()) % n
    }
}

fn at(text: &str) -> i64 {
    Timestamp::parse(text).expect("instant").as_micros()
}

/// The golden facts: the newest rows, and older versions of some of them written before.
fn golden() -> (FactBatch, FactBatch) {
    let mut random = Lcg(SEED);
    let (mut newest, mut older) = (FactBatch::default(), FactBatch::default());
    let start = at("2026-02-20T00:00:00+02:00");
    let year = 280 * 86_400 * 1_000_000_i64;
    let sla = [FactSlaState::Ok, FactSlaState::Near, FactSlaState::Over, FactSlaState::None];
    for order in 0..ORDERS {
        let order_id = 1000 + order;
        let urgency = (random.below(3)) as u8;
        let mut entered = start + (random.below(year as u64) as i64);
        // Groups 1 → 2 → 3 (sometimes twice) → 4, then completion (5) or cancellation (6),
        // or still open somewhere.
        let mut path: Vec<u16> = vec![1, 2, 3];
        if random.below(4) == 0 {
            path.extend([2, 3]);
        }
        path.push(4);
        let end = random.below(10);
        if end < 6 {
            path.push(5);
        } else if end < 8 {
            let cut = 1 + random.below(path.len() as u64 - 1) as usize;
            path.truncate(cut);
            path.push(6);
        } else {
            let cut = 1 + random.below(path.len() as u64 - 1) as usize;
            path.truncate(cut);
        }
        let group_state: Vec<FactSlaState> = (0..7).map(|_| sla[random.below(4) as usize]).collect();
        let events = path.len() as u32;
        let version = FactVersion::with_urgency(1, events, urgency);
        let (mut first_of_2, mut terminal_at) = (None, None);
        for (index, group) in path.iter().enumerate() {
            let last = index + 1 == path.len();
            let wall_micros = 600_000_000 + random.below(3 * 86_400_000_000) as i64 + random.below(1_000_000) as i64;
            let terminal = *group >= 5;
            let left = (!last).then_some(entered + wall_micros);
            let wall = if terminal { 0.0 } else { wall_micros as f64 / 1e6 };
            let working = if terminal { 0.0 } else { (wall_micros as f64 * (20 + random.below(80)) as f64 / 100.0).round() / 1e6 };
            let row = IntervalFact {
                project_id: PROJECT,
                order_id,
                status_id: i64::from(*group) * 10 + random.below(2) as i64,
                group_id: *group,
                entered_at: Timestamp::from_micros(entered),
                left_at: left.map(Timestamp::from_micros),
                wall_seconds: wall,
                working_seconds: working,
                is_urgent: urgency == 2,
                sla_state: if terminal { FactSlaState::None } else { group_state[*group as usize] },
                version,
            };
            if random.below(3) == 0 {
                // An older version: an event fewer, other times, a different state.
                let mut old = row.clone();
                old.version = FactVersion::with_urgency(1, events - 1, 0);
                old.working_seconds += 3600.0;
                old.left_at = None;
                old.sla_state = FactSlaState::Over;
                older.intervals.push(old);
            }
            if *group == 2 && order % 5 == 0 && left.is_some() {
                // Two statuses of one group in a row: one visit to the group, two to statuses.
                let (first, second) = split_in_group(row);
                newest.intervals.extend([first, second]);
            } else {
                newest.intervals.push(row);
            }
            if *group == 2 && first_of_2.is_none() {
                first_of_2 = Some(entered);
            }
            if terminal {
                terminal_at = Some(entered);
            }
            if let Some(left) = left {
                entered = left;
            }
        }
        let started = first_of_2.unwrap_or(start + order);
        let ended = terminal_at.filter(|t| *t > started);
        let span = ended.unwrap_or(entered) - started;
        let cycle = CycleFact {
            project_id: PROJECT,
            order_id,
            cycle_id: 2,
            started_at: Timestamp::from_micros(started),
            ended_at: ended.map(Timestamp::from_micros),
            wall_seconds: span as f64 / 1e6,
            working_seconds: (span as f64 * 0.4).round() / 1e6,
            is_urgent: urgency == 2,
            version,
        };
        if random.below(3) == 0 {
            let mut old = cycle.clone();
            old.version = FactVersion::with_urgency(1, events - 1, 0);
            old.ended_at = None;
            older.cycles.push(old);
        }
        newest.cycles.push(cycle);
    }
    (newest, older)
}

/// A closed interval as two back to back in the same group: the first half in its status,
/// the second in the next status id.
fn split_in_group(row: IntervalFact) -> (IntervalFact, IntervalFact) {
    let left = row.left_at.expect("a closed interval");
    let middle = Timestamp::from_micros((row.entered_at.as_micros() + left.as_micros()) / 2);
    let half = |seconds: f64| (seconds * 1e6 / 2.0).round() / 1e6;
    let first = IntervalFact {
        left_at: Some(middle),
        wall_seconds: half(row.wall_seconds),
        working_seconds: half(row.working_seconds),
        ..row.clone()
    };
    let second = IntervalFact {
        status_id: row.status_id + 5,
        entered_at: middle,
        wall_seconds: ((row.wall_seconds - first.wall_seconds) * 1e6).round() / 1e6,
        working_seconds: ((row.working_seconds - first.working_seconds) * 1e6).round() / 1e6,
        ..row
    };
    (first, second)
}

fn settings() -> ProjectSettings {
    ProjectSettings { timezone: kyiv(), ..ProjectSettings::default() }
}

fn kyiv() -> Tz {
    "Europe/Kyiv".parse().expect("zone")
}

/// One query with its parameters, named as its expected file.
struct Case {
    name: &'static str,
    query: Query,
    per_status: bool,
    period: Period,
}

fn period(from: &str, to: &str, by: By, bucket: Option<BucketKind>, urgency: UrgencyFilter, groups: &[i64]) -> Period {
    let span = Span { from: at(from), to: at(to) };
    Period {
        span,
        by,
        buckets: bucket.map(|kind| (kind, Buckets::new(kind, span, kyiv()))),
        urgency,
        groups: groups.to_vec(),
        statuses: Vec::new(),
    }
}

fn cases() -> Vec<Case> {
    let (from, to) = ("2026-02-01T00:00:00+02:00", "2026-12-01T00:00:00+02:00");
    let case = |name, query, per_status, period| Case { name, query, per_status, period };
    vec![
        case("stages", Query::Stages, false, period(from, to, By::Created, None, UrgencyFilter::All, &[])),
        case(
            "stages_status_week_split_entered",
            Query::Stages,
            true,
            period(from, to, By::Entered, Some(BucketKind::Week), UrgencyFilter::Split, &[]),
        ),
        // Both DST changes of Europe/Kyiv inside daily buckets.
        case(
            "stages_day_spring",
            Query::Stages,
            false,
            period(
                "2026-03-20T00:00:00+02:00",
                "2026-04-10T00:00:00+03:00",
                By::Entered,
                Some(BucketKind::Day),
                UrgencyFilter::All,
                &[2, 3],
            ),
        ),
        case(
            "stages_day_autumn",
            Query::Stages,
            false,
            period(
                "2026-10-15T00:00:00+03:00",
                "2026-11-05T00:00:00+02:00",
                By::Entered,
                Some(BucketKind::Day),
                UrgencyFilter::Urgent,
                &[],
            ),
        ),
        case("cycles_month", Query::Cycles, false, period(from, to, By::Created, Some(BucketKind::Month), UrgencyFilter::All, &[])),
        case("cycles_entered_split", Query::Cycles, false, period(from, to, By::Entered, None, UrgencyFilter::Split, &[])),
        case("sla_month", Query::Sla, false, period(from, to, By::Created, Some(BucketKind::Month), UrgencyFilter::All, &[])),
        case("sla_week_split", Query::Sla, false, period(from, to, By::Created, Some(BucketKind::Week), UrgencyFilter::Split, &[])),
        case("throughput_week", Query::Throughput, false, period(from, to, By::Created, Some(BucketKind::Week), UrgencyFilter::All, &[])),
        case(
            "cancellations_month",
            Query::Cancellations,
            false,
            period(from, to, By::Created, Some(BucketKind::Month), UrgencyFilter::All, &[]),
        ),
        case("cancellations_entered_split", Query::Cancellations, false, period(from, to, By::Entered, None, UrgencyFilter::Split, &[])),
    ]
}

fn report_periods() -> Vec<(&'static str, Period)> {
    let (from, to) = ("2026-02-01T00:00:00+02:00", "2026-12-01T00:00:00+02:00");
    vec![
        ("created", period(from, to, By::Created, None, UrgencyFilter::All, &[])),
        ("entered_urgent_group_3", period(from, to, By::Entered, None, UrgencyFilter::Urgent, &[3])),
    ]
}

/// What the reports read beyond the five queries, as text to compare.
async fn report_reads(engine: &dyn AnalyticsEngine, period: &Period) -> String {
    let settings = settings();
    let scope = Scope { engine, project_id: PROJECT, settings: &settings, period };
    let fail = |error: String| -> ! { panic!("the reports' reads on {}: {error}", engine.name()) };
    let completions = queries::completions(&scope).await.unwrap_or_else(|e| fail(e));
    let settled = queries::settled_group_times(&scope).await.unwrap_or_else(|e| fail(e));
    let per_order = queries::order_group_times(&scope).await.unwrap_or_else(|e| fail(e));
    format!("{completions:?}\n{settled:?}\n{per_order:?}")
}

async fn run(engine: &dyn AnalyticsEngine, case: &Case) -> Value {
    let settings = settings();
    let scope = Scope { engine, project_id: PROJECT, settings: &settings, period: &case.period };
    let answer = case.query.run(&scope, case.per_status).await;
    answer.unwrap_or_else(|error| panic!("{} on {}: {error}", case.name, engine.name()))
}

fn expected_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/analytics").join(format!("{name}.json"))
}

/// The first place two answers differ, for a readable failure.
fn first_difference(path: &str, a: &Value, b: &Value) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for key in x.keys().chain(y.keys()) {
                let (left, right) = (x.get(key).unwrap_or(&Value::Null), y.get(key).unwrap_or(&Value::Null));
                if let Some(found) = first_difference(&format!("{path}.{key}"), left, right) {
                    return Some(found);
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().find_map(|(i, (left, right))| first_difference(&format!("{path}[{i}]"), left, right))
        }
        (Value::Array(x), Value::Array(y)) => Some(format!("{path}: {} items against {}", x.len(), y.len())),
        _ if a == b => None,
        _ => Some(format!("{path}: {a} against {b}")),
    }
}

async fn write(sink: &impl FactSink, newest: &FactBatch, older: &FactBatch) {
    sink.write(older.clone()).await.expect("older versions written");
    sink.write(newest.clone()).await.expect("newest versions written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_engines_answer_the_golden_answers() {
    let (newest, older) = golden();
    let dir = tempfile::tempdir().expect("temp dir");
    let parquet = ParquetSink::open(ParquetConfig { dir: dir.path().join("facts"), compact_min_files: 1000 }).expect("parquet");
    write(&parquet, &newest, &older).await;
    let datafusion = DataFusionEngine::new(dir.path().join("facts"), 2);

    let clickhouse = match ksa_testkit::clickhouse_server("both_engines_answer_the_golden_answers") {
        Some(url) => {
            let database = ksa_testkit::unique_database_name("analytics_conformance");
            let (sink, _) =
                ClickHouseSink::connect(ClickHouseConfig::new(url.clone(), database.clone())).await.expect("ClickHouse reachable");
            write(&sink, &newest, &older).await;
            Some((ClickHouseEngine::new(sink.client().clone()), url, database))
        }
        None => None,
    };

    let bless = std::env::var("KSA_BLESS").is_ok_and(|v| v == "1");
    let mut failures = Vec::new();
    for case in cases() {
        let answer = run(&datafusion, &case).await;
        let path = expected_path(case.name);
        if bless {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, serde_json::to_string_pretty(&answer).unwrap() + "\n").unwrap();
        }
        let expected: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
            .expect("expected JSON");
        if let Some(difference) = first_difference(case.name, &expected, &answer) {
            failures.push(format!("DataFusion differs from {}: {difference}", path.display()));
        }
        if let Some((engine, _, _)) = &clickhouse {
            let other = run(engine, &case).await;
            if let Some(difference) = first_difference(case.name, &answer, &other) {
                failures.push(format!("ClickHouse differs from DataFusion: {difference}"));
            }
        }
    }
    // The reports' reads (completions, settled and per-order group times) agree too.
    for (name, period) in report_periods() {
        let answer = report_reads(&datafusion, &period).await;
        assert!(name != "created" || (answer.contains("GroupTime") && answer.contains("Ended")), "{name}: the data set has rows for them");
        if let Some((engine, _, _)) = &clickhouse
            && answer != report_reads(engine, &period).await
        {
            failures.push(format!("ClickHouse differs from DataFusion on the reports' reads, {name}"));
        }
    }
    if let Some((_, url, database)) = clickhouse {
        clickhouse::Client::default()
            .with_url(url)
            .query(&format!("DROP DATABASE IF EXISTS {database}"))
            .execute()
            .await
            .unwrap_or_else(|e| panic!("cannot drop ClickHouse database {database}: {e}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_golden_data_set_has_what_the_queries_need() {
    let (newest, older) = golden();
    let open = newest.intervals.iter().filter(|i| i.left_at.is_none() && i.group_id < 5).count();
    let cancelled = newest.intervals.iter().filter(|i| i.group_id == 6).count();
    let completed = newest.intervals.iter().filter(|i| i.group_id == 5).count();
    assert!(open > 20 && cancelled > 20 && completed > 100, "open {open}, cancelled {cancelled}, completed {completed}");
    assert!(older.intervals.len() > 300, "older versions to deduplicate: {}", older.intervals.len());
    assert!(newest.intervals.iter().any(|i| i.working_seconds.fract() != 0.0), "fractional seconds");
}
