//! The ClickHouse sink against the real server in `KSA_CLICKHOUSE_URL` (scripts/services starts
//! one). Each test gets a database of its own, dropped afterwards also when the test fails.

use std::future::Future;

use ksa_facts::clickhouse::FinalFacts;
use ksa_facts::{ClickHouseConfig, ClickHouseSink, FactError, FactSink};
use ksa_schemas::Timestamp;
use ksa_schemas::facts::{CycleFact, FactBatch, FactSlaState, FactVersion, IntervalFact};

const PROJECT: i64 = 7;

/// Runs `behaviour` with the config of a fresh database and drops the database afterwards.
async fn with_database<F, Fut>(test: &str, behaviour: F)
where
    F: FnOnce(ClickHouseConfig) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(url) = ksa_testkit::clickhouse_server(test) else { return };
    let config = ClickHouseConfig::new(url.clone(), ksa_testkit::unique_database_name(test));
    let outcome = tokio::spawn(behaviour(config.clone())).await;
    clickhouse::Client::default()
        .with_url(url)
        .with_compression(clickhouse::Compression::None)
        .query(&format!("DROP DATABASE IF EXISTS {}", config.database))
        .execute()
        .await
        .unwrap_or_else(|e| panic!("cannot drop ClickHouse database {}: {e}", config.database));
    if let Err(error) = outcome {
        match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(error) => panic!("{test} did not finish: {error}"),
        }
    }
}

async fn connect(config: ClickHouseConfig) -> ClickHouseSink {
    ClickHouseSink::connect(config).await.unwrap_or_else(|e| panic!("cannot connect to ClickHouse: {e} ({e:?})")).0
}

fn at(seconds: i64) -> Timestamp {
    // Microseconds that a DateTime column would lose.
    Timestamp::from_micros(1_767_225_600_000_000 + seconds * 1_000_000 + 123_456)
}

fn interval(order_id: i64, status_id: i64, entered: i64, left: Option<i64>, version: FactVersion) -> IntervalFact {
    IntervalFact {
        project_id: PROJECT,
        order_id,
        status_id,
        group_id: 2,
        entered_at: at(entered),
        left_at: left.map(at),
        wall_seconds: left.map_or(0.0, |l| (l - entered) as f64),
        working_seconds: left.map_or(0.0, |l| (l - entered) as f64 / 2.0),
        is_urgent: order_id % 2 == 0,
        sla_state: FactSlaState::Ok,
        version,
        order_created_at: Some(at(0)),
        group_entered_at: Some(at(entered)),
    }
}

fn cycle(order_id: i64, cycle_id: u32, ended: Option<i64>, version: FactVersion) -> CycleFact {
    CycleFact {
        project_id: PROJECT,
        order_id,
        cycle_id,
        started_at: at(0),
        ended_at: ended.map(at),
        wall_seconds: ended.unwrap_or(0) as f64,
        working_seconds: ended.unwrap_or(0) as f64 / 3.0,
        is_urgent: false,
        version,
        order_created_at: Some(at(0)),
    }
}

/// One order with a closed and an open interval, and a closed and an open cycle.
fn order_batch(order_id: i64, version: FactVersion) -> FactBatch {
    FactBatch {
        intervals: vec![interval(order_id, 10, 0, Some(3_600), version), interval(order_id, 11, 3_600, None, version)],
        cycles: vec![cycle(order_id, 1, Some(7_200), version), cycle(order_id, 2, None, version)],
    }
}

#[tokio::test]
async fn the_schema_applies_twice_cleanly() {
    with_database("schema_applies_twice", |config| async move {
        let (_, first) = ClickHouseSink::connect(config.clone()).await.expect("first connect");
        assert_eq!(first.applied, vec![1, 2]);
        let (sink, second) = ClickHouseSink::connect(config).await.expect("second connect");
        assert!(second.applied.is_empty(), "{second:?}");
        assert_eq!(second.already, vec![1, 2]);
        assert!(sink.final_intervals(PROJECT).await.expect("read").is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_migration_whose_columns_were_added_but_not_recorded_completes() {
    with_database("columns_added_not_recorded", |config| async move {
        let (sink, _) = ClickHouseSink::connect(config.clone()).await.expect("first connect");
        // As if every run had stopped after its statements, before recording them.
        sink.client().query("DROP TABLE ksa_schema_migrations").execute().await.expect("forget the ledger");
        let (sink, again) = ClickHouseSink::connect(config).await.expect("connect again");
        assert_eq!(again.applied, vec![1, 2], "{again:?}");
        sink.write(order_batch(1, FactVersion::new(1, 2))).await.expect("rows with the added columns");
        let stored = sink.final_intervals(PROJECT).await.expect("read");
        assert_eq!(stored[0].order_created_at, Some(at(0)));
    })
    .await;
}

#[tokio::test]
async fn writing_the_same_rows_twice_keeps_one_row_per_key() {
    with_database("same_rows_twice", |config| async move {
        let sink = connect(config).await;
        let batch = order_batch(1, FactVersion::new(1, 2));
        sink.write(batch.clone()).await.expect("first write");
        sink.write(batch.clone()).await.expect("second write");

        assert_eq!(sink.final_intervals(PROJECT).await.expect("intervals"), batch.intervals);
        assert_eq!(sink.final_cycles(PROJECT).await.expect("cycles"), batch.cycles);
    })
    .await;
}

#[tokio::test]
async fn an_older_version_written_after_a_newer_one_changes_nothing() {
    with_database("older_after_newer", |config| async move {
        let sink = connect(config).await;
        // With three events the second interval is closed by the third; with two it was open.
        let newer = FactBatch {
            intervals: vec![
                interval(1, 10, 0, Some(3_600), FactVersion::new(1, 3)),
                interval(1, 11, 3_600, Some(5_000), FactVersion::new(1, 3)),
                interval(1, 12, 5_000, None, FactVersion::new(1, 3)),
            ],
            cycles: vec![cycle(1, 1, Some(5_000), FactVersion::new(1, 3)), cycle(1, 2, None, FactVersion::new(1, 3))],
        };
        let older = order_batch(1, FactVersion::new(1, 2));
        sink.write(newer.clone()).await.expect("newer");
        sink.write(older).await.expect("older");

        assert_eq!(sink.final_intervals(PROJECT).await.expect("intervals"), newer.intervals);
        assert_eq!(sink.final_cycles(PROJECT).await.expect("cycles"), newer.cycles);
    })
    .await;
}

#[tokio::test]
async fn a_newer_version_replaces_the_row_with_the_same_key() {
    with_database("newer_replaces", |config| async move {
        let sink = connect(config).await;
        sink.write(order_batch(1, FactVersion::new(1, 2))).await.expect("version 2");
        let mut settings_changed = order_batch(1, FactVersion::new(2, 2));
        settings_changed.intervals[0].working_seconds = 60.0;
        sink.write(settings_changed.clone()).await.expect("revision 2");

        assert_eq!(sink.final_intervals(PROJECT).await.expect("intervals"), settings_changed.intervals);
        assert!(sink.stored_rows("status_intervals", PROJECT).await.expect("count") >= 2);
    })
    .await;
}

#[tokio::test]
async fn open_intervals_and_cycles_keep_their_missing_ends() {
    with_database("open_ends", |config| async move {
        let sink = connect(config).await;
        sink.write(order_batch(4, FactVersion::new(0, 2))).await.expect("write");

        let intervals = sink.final_intervals(PROJECT).await.expect("intervals");
        assert_eq!(intervals.iter().map(|i| i.left_at).collect::<Vec<_>>(), vec![Some(at(3_600)), None]);
        let cycles = sink.final_cycles(PROJECT).await.expect("cycles");
        assert_eq!(cycles.iter().map(|c| c.ended_at).collect::<Vec<_>>(), vec![Some(at(7_200)), None]);
        assert_eq!(intervals[0].entered_at.as_micros() % 1_000_000, 123_456, "microseconds are kept");
    })
    .await;
}

#[tokio::test]
async fn a_batch_larger_than_the_insert_chunk_is_written_whole() {
    with_database("larger_than_chunk", |mut config| async move {
        config.insert_chunk_rows = 7;
        let sink = connect(config).await;
        let mut batch = FactBatch::default();
        for order_id in 0..50 {
            let more = order_batch(order_id, FactVersion::new(3, 2));
            batch.intervals.extend(more.intervals);
            batch.cycles.extend(more.cycles);
        }
        sink.write(batch.clone()).await.expect("write");

        assert_eq!(sink.final_intervals(PROJECT).await.expect("intervals"), batch.intervals);
        assert_eq!(sink.final_cycles(PROJECT).await.expect("cycles"), batch.cycles);
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_server_is_a_retryable_error() {
    // Port 9 (discard) on loopback: nothing listens there on a test machine.
    let config = ClickHouseConfig::new("http://127.0.0.1:9", "ksa_unreachable");
    match ClickHouseSink::connect(config).await {
        Err(error @ FactError::Unavailable { .. }) => assert!(error.is_retryable()),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}
