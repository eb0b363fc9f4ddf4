//! The Parquet fact store of the embedded mode, on a temporary folder: files by project and
//! month, the newest version per key for readers, compaction that keeps only that row.
#![cfg(feature = "parquet")]

use ksa_facts::parquet::ParquetFacts;
use ksa_facts::{FactSink, ParquetConfig, ParquetSink};
use ksa_schemas::Timestamp;
use ksa_schemas::facts::{CycleFact, FactBatch, FactSlaState, FactVersion, IntervalFact};

const PROJECT: i64 = 7;
/// 2026-01-31T22:00:00Z: an hour later is still January, three hours later is February.
const JAN_31_22H: i64 = 1_769_896_800;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_micros((JAN_31_22H + seconds) * 1_000_000 + 123_456)
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
        sla_state: FactSlaState::Near,
        version,
        order_created_at: Some(at(0)),
        group_entered_at: Some(at(entered)),
    }
}

fn cycle(order_id: i64, ended: Option<i64>, version: FactVersion) -> CycleFact {
    CycleFact {
        project_id: PROJECT,
        order_id,
        cycle_id: 1,
        started_at: at(0),
        ended_at: ended.map(at),
        wall_seconds: ended.unwrap_or(0) as f64,
        working_seconds: ended.unwrap_or(0) as f64 / 3.0,
        is_urgent: false,
        version,
        order_created_at: Some(at(0)),
    }
}

/// Order `order_id` with two events (a closed interval in January, an open one in February)
/// or, from version 3 on, three (the second closed by a third, still in February).
fn order(order_id: i64, events: u32) -> FactBatch {
    let version = FactVersion::new(1, events);
    let mut intervals = vec![interval(order_id, 10, 0, Some(3 * 3_600), version)];
    if events == 2 {
        intervals.push(interval(order_id, 11, 3 * 3_600, None, version));
    } else {
        intervals.push(interval(order_id, 11, 3 * 3_600, Some(5 * 3_600), version));
        intervals.push(interval(order_id, 12, 5 * 3_600, None, version));
    }
    let ended = (events > 2).then_some(5 * 3_600);
    FactBatch { intervals, cycles: vec![cycle(order_id, ended, version)] }
}

fn orders(ids: &[i64], events: u32) -> FactBatch {
    let mut batch = FactBatch::default();
    for id in ids {
        let more = order(*id, events);
        batch.intervals.extend(more.intervals);
        batch.cycles.extend(more.cycles);
    }
    batch
}

fn sink(dir: &std::path::Path, compact_min_files: usize) -> ParquetSink {
    ParquetSink::open(ParquetConfig { dir: dir.join("facts"), compact_min_files }).expect("open")
}

#[tokio::test]
async fn rows_are_filed_by_project_and_utc_month() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sink = sink(dir.path(), 8);
    sink.write(orders(&[1, 2], 2)).await.expect("write");

    let facts = ParquetFacts::new(sink.dir());
    let relative = |table| -> Vec<String> {
        let files = facts.files(table, PROJECT).expect("files");
        files.iter().map(|f| f.strip_prefix(sink.dir()).expect("under dir").display().to_string()).collect()
    };
    assert_eq!(
        relative("status_intervals"),
        vec!["status_intervals/project=7/month=2026-01/part-0.parquet", "status_intervals/project=7/month=2026-02/part-0.parquet"]
    );
    assert_eq!(relative("order_cycles"), vec!["order_cycles/project=7/month=2026-01/part-0.parquet"]);
    assert_eq!(facts.final_intervals(PROJECT).expect("read"), orders(&[1, 2], 2).intervals);
}

#[tokio::test]
async fn writing_twice_then_compacting_keeps_one_row_per_key_with_the_newest_version() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sink = sink(dir.path(), 8);
    // Orders 1 and 2 with two events, then order 1 with a third and order 2 replayed as is.
    sink.write(orders(&[1, 2], 2)).await.expect("first write");
    let mut second = order(1, 3);
    let replay = order(2, 2);
    second.intervals.extend(replay.intervals);
    second.cycles.extend(replay.cycles);
    sink.write(second).await.expect("second write");

    let facts = ParquetFacts::new(sink.dir());
    assert_eq!(facts.files("status_intervals", PROJECT).expect("files").len(), 4, "two writes, two months each");
    let mut expected = orders(&[1], 3);
    expected.intervals.extend(order(2, 2).intervals);
    expected.cycles.extend(order(2, 2).cycles);
    let by_key = |rows: &mut Vec<IntervalFact>| rows.sort_by_key(|i| (i.order_id, i.entered_at, i.status_id));
    by_key(&mut expected.intervals);
    assert_eq!(facts.final_intervals(PROJECT).expect("read"), expected.intervals, "readers see the newest before compaction");

    let report = sink.compact_all().await.expect("compact");
    assert_eq!(report.months, 3, "{report:?}");
    assert_eq!(facts.files("status_intervals", PROJECT).expect("files").len(), 2, "one file per month");
    assert_eq!(facts.files("order_cycles", PROJECT).expect("files").len(), 1);
    assert_eq!(facts.stored_rows("status_intervals", PROJECT).expect("count"), expected.intervals.len() as u64, "nothing but the newest");
    assert_eq!(facts.final_intervals(PROJECT).expect("read"), expected.intervals);
    assert_eq!(facts.final_cycles(PROJECT).expect("read"), expected.cycles);
    let newest = facts.final_cycles(PROJECT).expect("read");
    assert_eq!((newest[0].version, newest[0].ended_at), (FactVersion::new(1, 3), Some(at(5 * 3_600))));
}

#[tokio::test]
async fn an_older_version_written_after_compaction_changes_nothing_readers_see() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sink = sink(dir.path(), 8);
    sink.write(orders(&[1], 3)).await.expect("newer");
    sink.compact_all().await.expect("compact");
    sink.write(orders(&[1], 2)).await.expect("older, late");

    let facts = ParquetFacts::new(sink.dir());
    assert_eq!(facts.final_intervals(PROJECT).expect("read"), orders(&[1], 3).intervals);
    sink.compact_all().await.expect("compact again");
    assert_eq!(facts.final_intervals(PROJECT).expect("read"), orders(&[1], 3).intervals);
    assert_eq!(facts.stored_rows("order_cycles", PROJECT).expect("count"), 1);
}

#[tokio::test]
async fn a_month_that_reaches_the_file_limit_is_compacted_after_the_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sink = sink(dir.path(), 3);
    let facts = ParquetFacts::new(sink.dir());
    sink.write(orders(&[1], 2)).await.expect("write 1");
    sink.write(orders(&[2], 2)).await.expect("write 2");
    sink.compacted().await;
    assert_eq!(facts.files("order_cycles", PROJECT).expect("files").len(), 2, "below the limit, nothing is merged");
    sink.write(orders(&[1], 3)).await.expect("write 3");
    sink.compacted().await;

    let files = facts.files("order_cycles", PROJECT).expect("files");
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with("part-3.parquet"), "numbers go on after the merged files: {files:?}");
    assert_eq!(facts.stored_rows("order_cycles", PROJECT).expect("count"), 2);
    sink.write(orders(&[3], 2)).await.expect("write 4");
    assert!(facts.files("order_cycles", PROJECT).expect("files").iter().any(|f| f.ends_with("part-4.parquet")));
}

#[tokio::test]
async fn small_files_are_merged_among_themselves_not_into_a_larger_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sink = sink(dir.path(), 3);
    let facts = ParquetFacts::new(sink.dir());
    let many: Vec<i64> = (1..=40_000).collect();
    sink.write(orders(&many, 2)).await.expect("large write");
    let large = facts.files("order_cycles", PROJECT).expect("files");
    let size = std::fs::metadata(&large[0]).expect("size").len();
    assert!(large.len() == 1 && size >= 64 * 1024, "a file above the first tier to begin with: {large:?}, {size} bytes");

    sink.write(orders(&[1], 3)).await.expect("small write 1");
    sink.write(orders(&[2], 3)).await.expect("small write 2");
    sink.compacted().await;
    assert_eq!(facts.files("order_cycles", PROJECT).expect("files").len(), 3, "no tier holds three files yet");
    sink.write(orders(&[3], 3)).await.expect("small write 3");
    sink.compacted().await;

    let files = facts.files("order_cycles", PROJECT).expect("files");
    assert_eq!(files.len(), 2, "the three small files became one: {files:?}");
    assert!(files.contains(&large[0]), "the large file is left as it was: {files:?}");
    let mut expected = orders(&[1, 2, 3], 3).cycles;
    expected.extend(orders(&many[3..], 2).cycles);
    assert_eq!(facts.final_cycles(PROJECT).expect("read"), expected);
}

#[tokio::test]
async fn only_months_left_alone_long_enough_are_merged_into_one_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sink = sink(dir.path(), 8);
    let facts = ParquetFacts::new(sink.dir());
    sink.write(orders(&[1], 2)).await.expect("write 1");
    sink.write(orders(&[1], 3)).await.expect("write 2");
    let report = sink.compact_quiet(std::time::Duration::from_secs(3600)).await.expect("compact");
    assert_eq!(report.months, 0, "just written: {report:?}");
    assert!(facts.months("status_intervals", PROJECT).expect("months").iter().all(|files| files.len() == 2));

    let report = sink.compact_quiet(std::time::Duration::ZERO).await.expect("compact");
    assert_eq!(report.months, 3, "{report:?}");
    assert!(facts.months("status_intervals", PROJECT).expect("months").iter().all(|files| files.len() == 1));
    assert_eq!(facts.final_intervals(PROJECT).expect("read"), orders(&[1], 3).intervals);
}

#[tokio::test]
async fn one_write_keeps_one_row_per_key_in_its_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sink = sink(dir.path(), 8);
    // Two versions of the same order in one batch: the file keeps the newest of each key.
    let mut batch = orders(&[1], 2);
    let newer = orders(&[1], 3);
    batch.intervals.extend(newer.intervals.clone());
    batch.cycles.extend(newer.cycles.clone());
    sink.write(batch).await.expect("write");
    let facts = ParquetFacts::new(sink.dir());
    assert_eq!(facts.stored_rows("status_intervals", PROJECT).expect("count"), newer.intervals.len() as u64);
    assert_eq!(facts.stored_rows("order_cycles", PROJECT).expect("count"), 1);
}

#[tokio::test]
async fn a_reopened_store_numbers_parts_after_the_existing_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    sink(dir.path(), 8).write(orders(&[1], 2)).await.expect("write");
    sink(dir.path(), 8).write(orders(&[1], 3)).await.expect("write after reopening");

    let facts = ParquetFacts::new(dir.path().join("facts"));
    let files = facts.files("order_cycles", PROJECT).expect("files");
    assert!(files[0].ends_with("part-0.parquet") && files[1].ends_with("part-1.parquet"), "{files:?}");
    assert_eq!(facts.final_cycles(PROJECT).expect("read"), orders(&[1], 3).cycles);
}

#[test]
fn a_compaction_limit_below_two_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    assert!(ParquetSink::open(ParquetConfig { dir: dir.path().to_path_buf(), compact_min_files: 1 }).is_err());
}
