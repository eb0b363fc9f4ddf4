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
use ksa_schemas::facts::FactBatch;
use ksa_schemas::{ProjectSettings, Timestamp};
use ksa_testkit::facts::FactGenerator;
use serde_json::Value;

const PROJECT: i64 = 7;
const SEED: u64 = 20_260_205;
const ORDERS: i64 = 400;

fn at(text: &str) -> i64 {
    Timestamp::parse(text).expect("instant").as_micros()
}

/// The golden facts: the newest rows, and older versions of some of them written before.
fn golden() -> (FactBatch, FactBatch) {
    FactGenerator::new(SEED, PROJECT, at("2026-02-20T00:00:00+02:00"), 280).orders(ORDERS)
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
    // Months merged into one file each are read without deduplication: the same answers, and
    // a few months of several files beside them (a late write) still deduplicate.
    parquet.compact_all().await.expect("compacted");
    let late = FactGenerator::new(SEED, PROJECT, at("2026-02-20T00:00:00+02:00"), 280).orders(40).1;
    parquet.write(late).await.expect("older versions written late");
    let months = ksa_facts::parquet::ParquetFacts::new(dir.path().join("facts")).months("status_intervals", PROJECT).expect("months");
    assert!(months.iter().any(|files| files.len() == 1) && months.iter().any(|files| files.len() > 1), "{months:?}");
    for case in cases() {
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(expected_path(case.name)).expect("expected answer")).expect("JSON");
        if let Some(difference) = first_difference(case.name, &expected, &run(&datafusion, &case).await) {
            failures.push(format!("DataFusion over merged months differs: {difference}"));
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
