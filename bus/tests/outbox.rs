//! The outbox adapters against real databases, one suite run on both: SQLite in a temporary
//! folder, and PostgreSQL from `DATABASE_URL`, a server URL such as
//! `postgres://postgres@127.0.0.1:5432/test`. Every PostgreSQL test creates its own database and
//! drops it at the end.
//!
//! Without `DATABASE_URL` the PostgreSQL tests say that they were skipped and pass, except under
//! `CI=true`, where they fail: CI must test both adapters.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ksa_bus::outbox::{OutboxStats, PostgresOutbox, SqliteOutbox};
use ksa_bus::{AppendOutcome, Bus, BusError, NewRecord, OutboxConfig, Record};
use ksa_migrations::{migrate_postgres, migrate_sqlite, migrate_sqlite_bus};
use ksa_schemas::Timestamp;
use ksa_schemas::bus::{ENRICH_REQUESTS, ORDER_UPDATES, STATUS_EVENTS, partition_for};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, PgPool, Postgres, Sqlite, SqlitePool, Transaction};
use tempfile::TempDir;

const TOPICS: [&str; 2] = [STATUS_EVENTS, ORDER_UPDATES];
const PARTITIONS: u32 = 4;
/// Far longer than anything here should take: a read that is woken returns long before.
const PATIENCE: Duration = Duration::from_secs(60);
/// A wait that no test outlasts unless a wake-up was lost.
const FOREVER: Duration = Duration::from_secs(3600);

fn config() -> OutboxConfig {
    OutboxConfig { partitions: PARTITIONS, queue_capacity: 1024, max_batch_records: 2000 }
}

// ---------------------------------------------------------------------------------------------
// Behaviours, each run on both adapters.
// ---------------------------------------------------------------------------------------------

ksa_testkit::on_both_databases!(
    offsets_count_from_one_per_partition_and_each_key_keeps_its_order_in_its_partition,
    concurrent_appenders_are_all_answered_and_durable_and_share_transactions,
    idempotency_key_seen_before_or_earlier_in_the_batch_is_a_duplicate_appended_once,
    forgotten_keys_are_those_of_their_topic_recorded_before_the_horizon,
    full_queue_refuses_appends_at_once_with_overloaded,
    read_returns_at_once_when_records_exist,
    read_waits_for_an_append_and_wakes_with_it,
    read_returns_nothing_once_the_wait_runs_out_without_appends,
    truncate_deletes_only_consumed_old_enough_records_and_offsets_keep_increasing,
    truncate_of_a_long_log_goes_in_steps_and_stops_at_the_first_younger_record,
    database_error_fails_every_waiting_append_with_unavailable_and_writes_nothing,
    closed_pool_makes_appends_reads_and_truncates_unavailable,
    shutdown_answers_queued_appends_then_refuses_new_ones,
    every_operation_refuses_an_unknown_topic,
);

/// An older version kept the embedded bus in the state database's tables: opening the bus file
/// moves those records, heads and idempotency keys there once, and consumers find the same
/// offsets. A move interrupted after its copy (the state's rows not yet deleted) is not done
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_the_bus_file_moves_the_state_databases_outbox_into_it_once() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let state = sqlite_pool(&dir.path().join("state.db")).await;
    migrate_sqlite(&state).await.expect("migrating the state database");
    let older = Outbox::Sqlite(SqliteOutbox::start(state.clone(), &TOPICS, config()).await.expect("the older outbox"));
    let keys: Vec<String> = (1..=10).map(|order| format!("3:{order}")).collect();
    older.append(STATUS_EVENTS, keys.iter().map(|key| keyed(key, &format!("{key}@1"))).collect()).await.expect("append");
    older.append(ORDER_UPDATES, vec![record(&keys[0], "announced")]).await.expect("append");
    let before = read_everything(&older, STATUS_EVENTS).await;
    drop(older);

    let file = dir.path().join("state-bus.db");
    let (bus, moved) = SqliteOutbox::open(&file, Some(&state), &TOPICS, config()).await.expect("opening the bus file");
    assert_eq!((moved.moved_records, moved.moved_keys), (11, 10));
    let left: (i64, i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM bus_heads), (SELECT count(*) FROM bus_log), (SELECT count(*) FROM bus_idempotency)")
            .fetch_one(&state)
            .await
            .expect("counting");
    assert_eq!(left, (0, 0, 0), "the state database keeps no outbox rows");
    let bus = Outbox::Sqlite(bus);
    assert_eq!(read_everything(&bus, STATUS_EVENTS).await, before, "the same records at the same offsets");
    assert_eq!(bus.append(STATUS_EVENTS, vec![keyed(&keys[0], "3:1@1")]).await.expect("append"), [AppendOutcome::Duplicate]);
    let partition = partition_for(&keys[0], PARTITIONS);
    let next = before[&partition].len() as i64 + 1;
    assert_eq!(
        bus.append(STATUS_EVENTS, vec![keyed(&keys[0], "3:1@2")]).await.expect("append"),
        [AppendOutcome::Appended { partition, offset: next }],
        "offsets go on from the moved head"
    );
    drop(bus);

    // Interrupted after the copy: the state database still holds rows the bus file has.
    sqlx::query("INSERT INTO bus_heads (topic, partition_no, next_offset) VALUES (?, 0, 99)")
        .bind(STATUS_EVENTS)
        .execute(&state)
        .await
        .unwrap();
    sqlx::query("INSERT INTO bus_idempotency (topic, idempotency_key) VALUES (?, 'stale')")
        .bind(STATUS_EVENTS)
        .execute(&state)
        .await
        .unwrap();
    let (bus, moved) = SqliteOutbox::open(&file, Some(&state), &TOPICS, config()).await.expect("opening the bus file again");
    assert_eq!((moved.moved_records, moved.moved_keys), (0, 0), "nothing is moved twice");
    let bus = Outbox::Sqlite(bus);
    let after = read_everything(&bus, STATUS_EVENTS).await;
    assert_eq!(after.values().map(Vec::len).sum::<usize>(), 11);
    let left: i64 = sqlx::query_scalar("SELECT (SELECT count(*) FROM bus_heads) + (SELECT count(*) FROM bus_idempotency)")
        .fetch_one(&state)
        .await
        .expect("counting");
    assert_eq!(left, 0, "the leftovers are deleted");
    let outcome = bus.append(STATUS_EVENTS, vec![keyed("3:99", "stale")]).await.expect("append");
    assert!(matches!(outcome[..], [AppendOutcome::Appended { .. }]), "a leftover key is not taken over: {outcome:?}");
}

/// The bus file's WAL is copied into the file by the outbox's own checkpoints: a few appends,
/// far below the writer's `wal_autocheckpoint`, reach the file itself without another write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_files_own_checkpoints_copy_its_wal_into_it() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let file = dir.path().join("state-bus.db");
    let (bus, _) = SqliteOutbox::open(&file, None, &TOPICS, config()).await.expect("opening the bus file");
    let size = || std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let before = size();
    let filler = "x".repeat(1024);
    let records = (0..500).map(|n| keyed(&format!("7:{n}"), &format!("{n}:{filler}"))).collect();
    // Kept until the end: the checkpoints stop with the last handle.
    let bus = Outbox::Sqlite(bus);
    bus.append(STATUS_EVENTS, records).await.expect("append");
    let grown = async {
        while size() < before + 400 * 1024 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    assert!(
        tokio::time::timeout(PATIENCE, grown).await.is_ok(),
        "the bus file stayed at {} bytes (from {before}): its WAL was not checkpointed",
        size()
    );
}

/// Behaviours that need several processes on one database: PostgreSQL only.
mod appends_of_another_process_wake_a_reader_through_listen_notify {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_postgres() {
        crate::on_postgres("another_process_wakes", super::appends_of_another_process_wake_a_reader_through_listen_notify).await;
    }
}

mod reader_still_wakes_after_the_listen_connection_was_killed {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_postgres() {
        crate::on_postgres("listen_killed", super::reader_still_wakes_after_the_listen_connection_was_killed).await;
    }
}

async fn offsets_count_from_one_per_partition_and_each_key_keeps_its_order_in_its_partition(db: Db) {
    let bus = db.outbox(config()).await;
    let keys: Vec<String> = (1..=12).map(|order| format!("3:{order}")).collect();
    for round in 0..5 {
        let records = keys.iter().map(|key| record(key, &format!("{key}#{round}"))).collect();
        let outcomes = bus.append(STATUS_EVENTS, records).await.expect("append");
        for (key, outcome) in keys.iter().zip(outcomes) {
            match outcome {
                AppendOutcome::Appended { partition, .. } => assert_eq!(partition, partition_for(key, PARTITIONS), "{key}"),
                AppendOutcome::Duplicate => panic!("{key} has no idempotency key, yet is a duplicate"),
            }
        }
    }

    let log = read_everything(&bus, STATUS_EVENTS).await;
    assert!(log.values().filter(|records| !records.is_empty()).count() >= 2, "12 keys should spread over partitions");
    assert_eq!(log.values().map(Vec::len).sum::<usize>(), 60);
    for (partition, records) in &log {
        let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (1..=records.len() as i64).collect::<Vec<_>>(), "partition {partition}");
        assert!(records.iter().all(|r| partition_for(&r.key, PARTITIONS) == *partition && r.partition == *partition));
    }
    for key in &keys {
        let payloads: Vec<String> = log[&partition_for(key, PARTITIONS)].iter().filter(|r| &r.key == key).map(payload).collect();
        assert_eq!(payloads, (0..5).map(|round| format!("{key}#{round}")).collect::<Vec<_>>());
    }
    let other_topic = bus.append(ORDER_UPDATES, vec![record(&keys[0], "first")]).await.expect("append");
    assert_eq!(other_topic, [AppendOutcome::Appended { partition: partition_for(&keys[0], PARTITIONS), offset: 1 }]);
}

async fn concurrent_appenders_are_all_answered_and_durable_and_share_transactions(db: Db) {
    const TASKS: usize = 50;
    const APPENDS: usize = 100;
    let bus = db.outbox(config()).await;
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move {
            let mut last_offsets: BTreeMap<String, i64> = BTreeMap::new();
            for i in 0..APPENDS {
                let key = format!("{task}:{}", i % 3);
                let outcomes = bus.append(STATUS_EVENTS, vec![record(&key, &format!("{key}#{i}"))]).await.expect("append");
                let [AppendOutcome::Appended { offset, .. }] = outcomes[..] else { panic!("{outcomes:?}") };
                let previous = last_offsets.insert(key, offset);
                assert!(previous.is_none_or(|previous| previous < offset), "offsets of one key must increase");
            }
        }));
    }
    for task in tasks {
        task.await.expect("appender task");
    }

    let stats = bus.stats();
    let appends = (TASKS * APPENDS) as u64;
    assert_eq!(stats.appends, appends);
    assert_eq!(stats.records_appended, appends);
    assert_eq!(stats.failed_transactions, 0);
    assert!(
        stats.transactions * 4 <= appends,
        "{} transactions for {appends} appends: group commit should share transactions ({stats:?})",
        stats.transactions
    );
    let log = read_everything(&bus, STATUS_EVENTS).await;
    assert_eq!(log.values().map(Vec::len).sum::<usize>(), TASKS * APPENDS);
    for (partition, records) in &log {
        let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (1..=records.len() as i64).collect::<Vec<_>>(), "partition {partition}");
    }
    assert_eq!(db.scalar("SELECT count(*) FROM bus_log").await, (TASKS * APPENDS) as i64);
}

async fn idempotency_key_seen_before_or_earlier_in_the_batch_is_a_duplicate_appended_once(db: Db) {
    let bus = db.outbox(config()).await;
    let key = "3:1001";
    let p = partition_for(key, PARTITIONS);
    let first = bus
        .append(STATUS_EVENTS, vec![keyed(key, "a"), keyed(key, "b"), keyed(key, "a"), record(key, "plain"), record(key, "plain")])
        .await
        .expect("append");
    assert_eq!(
        first,
        [
            AppendOutcome::Appended { partition: p, offset: 1 },
            AppendOutcome::Appended { partition: p, offset: 2 },
            AppendOutcome::Duplicate,
            AppendOutcome::Appended { partition: p, offset: 3 },
            AppendOutcome::Appended { partition: p, offset: 4 },
        ]
    );
    let again = bus.append(STATUS_EVENTS, vec![keyed(key, "a"), keyed(key, "c")]).await.expect("append");
    assert_eq!(again, [AppendOutcome::Duplicate, AppendOutcome::Appended { partition: p, offset: 5 }]);

    // Ten appenders race with one key: whichever batches they share, one appends it.
    let racers: Vec<_> = (0..10).map(|_| bus.append(STATUS_EVENTS, vec![keyed(key, "raced")])).collect();
    let mut appended = 0;
    for racer in racers {
        match racer.await.expect("append")[..] {
            [AppendOutcome::Appended { .. }] => appended += 1,
            [AppendOutcome::Duplicate] => {}
            ref other => panic!("{other:?}"),
        }
    }
    assert_eq!(appended, 1);

    // Keys belong to their topic.
    let elsewhere = bus.append(ORDER_UPDATES, vec![keyed(key, "a")]).await.expect("append");
    assert_eq!(elsewhere, [AppendOutcome::Appended { partition: p, offset: 1 }]);

    let payloads: Vec<String> = read_all(&bus, STATUS_EVENTS, p).await.iter().map(payload).collect();
    assert_eq!(payloads, ["a", "b", "plain", "plain", "c", "raced"]);
    assert_eq!(db.scalar("SELECT count(*) FROM bus_idempotency").await, 5);
    assert_eq!(bus.stats().duplicates, 1 + 1 + 9);
}

async fn forgotten_keys_are_those_of_their_topic_recorded_before_the_horizon(db: Db) {
    let bus = db.outbox(config()).await;
    bus.append(STATUS_EVENTS, vec![keyed("3:1", "a"), keyed("3:2", "b")]).await.expect("append");
    bus.append(ORDER_UPDATES, vec![keyed("3:1", "a")]).await.expect("append");
    let past = Timestamp::from_micros(0);
    assert_eq!(bus.forget_keys(STATUS_EVENTS, past).await.expect("forget"), 0, "nothing was recorded before 1970");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as i64;
    let horizon = Timestamp::from_micros(now + 60_000_000);
    assert_eq!(bus.forget_keys(STATUS_EVENTS, horizon).await.expect("forget"), 2);
    assert_eq!(db.scalar("SELECT count(*) FROM bus_idempotency").await, 1, "another topic's key stays");
    let again = bus.append(STATUS_EVENTS, vec![keyed("3:1", "a")]).await.expect("append");
    assert!(matches!(again[..], [AppendOutcome::Appended { .. }]), "a forgotten key is appended again: {again:?}");
    let kept = bus.append(ORDER_UPDATES, vec![keyed("3:1", "a")]).await.expect("append");
    assert_eq!(kept, [AppendOutcome::Duplicate]);
}

async fn full_queue_refuses_appends_at_once_with_overloaded(db: Db) {
    let bus = db.outbox(OutboxConfig { queue_capacity: 1, ..config() }).await;
    let lock = db.hold_write_lock().await;

    // The writer is stuck behind the lock with what it took, and the queue holds one more.
    let mut pending: Vec<_> = (0..4).map(|i| bus.append(STATUS_EVENTS, vec![record("3:1", &format!("#{i}"))])).collect();
    let mut accepted = Vec::new();
    let mut refused = 0;
    for mut append in pending.drain(..) {
        match poll_once(&mut append) {
            Some(Err(BusError::Overloaded)) => refused += 1,
            Some(other) => panic!("only a refusal can be answered while the database is locked: {other:?}"),
            None => accepted.push(append),
        }
    }
    assert!(refused >= 1, "{refused} refused");
    assert!(!accepted.is_empty());
    assert_eq!(bus.stats().overloaded, refused);

    lock.release().await;
    let accepted_count = accepted.len();
    for append in accepted {
        assert!(matches!(within_patience(append).await.expect("append")[..], [AppendOutcome::Appended { .. }]));
    }
    bus.append(STATUS_EVENTS, vec![record("3:1", "after")]).await.expect("the queue takes appends again");
    assert_eq!(db.scalar("SELECT count(*) FROM bus_log").await, accepted_count as i64 + 1);
}

async fn read_returns_at_once_when_records_exist(db: Db) {
    let bus = db.outbox(config()).await;
    let key = "3:7";
    let p = partition_for(key, PARTITIONS);
    bus.append(STATUS_EVENTS, vec![record(key, "one"), record(key, "two"), record(key, "three")]).await.expect("append");

    let records = within_patience(bus.read(STATUS_EVENTS, p, 0, 10, FOREVER)).await.expect("read");
    assert_eq!(records.iter().map(payload).collect::<Vec<_>>(), ["one", "two", "three"]);
    assert_eq!(records.iter().map(|r| r.offset).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(records.iter().all(|r| r.key == key && r.partition == p));
    let a_year_ago = now().as_micros() - 365 * 86_400_000_000;
    assert!(records.iter().all(|r| r.appended_at.as_micros() > a_year_ago), "{records:?}");

    let rest = within_patience(bus.read(STATUS_EVENTS, p, 1, 10, FOREVER)).await.expect("read");
    assert_eq!(rest.iter().map(|r| r.offset).collect::<Vec<_>>(), [2, 3]);
    let one = within_patience(bus.read(STATUS_EVENTS, p, 0, 1, FOREVER)).await.expect("read");
    assert_eq!(one.iter().map(|r| r.offset).collect::<Vec<_>>(), [1]);
}

async fn read_waits_for_an_append_and_wakes_with_it(db: Db) {
    let bus = db.outbox(config()).await;
    let key = "3:8";
    let p = partition_for(key, PARTITIONS);
    let reader = {
        let bus = bus.clone();
        tokio::spawn(async move { bus.read(STATUS_EVENTS, p, 0, 10, FOREVER).await })
    };
    until_waiting_reads(&bus, 1).await;

    bus.append(STATUS_EVENTS, vec![record(key, "news")]).await.expect("append");
    let records = within_patience(reader).await.expect("reader task").expect("read");
    assert_eq!(records.iter().map(payload).collect::<Vec<_>>(), ["news"]);
    assert_eq!(bus.stats().waiting_reads, 0);
}

async fn read_returns_nothing_once_the_wait_runs_out_without_appends(db: Db) {
    let bus = db.outbox(config()).await;
    let key = "3:9";
    let p = partition_for(key, PARTITIONS);
    let nothing = within_patience(bus.read(STATUS_EVENTS, p, 0, 10, Duration::from_millis(50))).await.expect("read");
    assert!(nothing.is_empty());

    bus.append(STATUS_EVENTS, vec![record(key, "one")]).await.expect("append");
    let past_the_end = within_patience(bus.read(STATUS_EVENTS, p, 1, 10, Duration::from_millis(50))).await.expect("read");
    assert!(past_the_end.is_empty());
    let no_wait = within_patience(bus.read(STATUS_EVENTS, p, 1, 10, Duration::ZERO)).await.expect("read");
    assert!(no_wait.is_empty());
    assert_eq!(bus.stats().waiting_reads, 0);
}

async fn truncate_deletes_only_consumed_old_enough_records_and_offsets_keep_increasing(db: Db) {
    let bus = db.outbox(config()).await;
    let key = "3:10";
    let p = partition_for(key, PARTITIONS);
    let other_key = key_in_other_partition(p);
    let q = partition_for(&other_key, PARTITIONS);
    let records = (1..=5).map(|i| keyed(key, &format!("k{i}"))).chain([record(&other_key, "elsewhere")]).collect();
    bus.append(STATUS_EVENTS, records).await.expect("append");
    let appended = read_all(&bus, STATUS_EVENTS, p).await;
    let oldest = appended.iter().map(|r| r.appended_at).min().expect("records");
    let newest = appended.iter().map(|r| r.appended_at).max().expect("records");
    let after_newest = Timestamp::from_micros(newest.as_micros() + 1);

    assert_eq!(bus.truncate(STATUS_EVENTS, p, 3, oldest).await.expect("truncate"), 0, "nothing was appended before the oldest");
    assert_eq!(bus.truncate(STATUS_EVENTS, p, 0, after_newest).await.expect("truncate"), 0, "nothing is consumed through 0");
    assert_eq!(bus.truncate(STATUS_EVENTS, p, 3, after_newest).await.expect("truncate"), 3);
    assert_eq!(read_all(&bus, STATUS_EVENTS, p).await.iter().map(|r| r.offset).collect::<Vec<_>>(), [4, 5]);
    assert_eq!(bus.truncate(STATUS_EVENTS, p, 3, after_newest).await.expect("truncate"), 0);
    assert_eq!(read_all(&bus, STATUS_EVENTS, q).await.len(), 1, "another partition is untouched");
    assert_eq!(read_all(&bus, ORDER_UPDATES, p).await.len(), 0);

    assert_eq!(bus.truncate(STATUS_EVENTS, p, 5, after_newest).await.expect("truncate"), 2);
    let later = bus.append(STATUS_EVENTS, vec![keyed(key, "k6"), keyed(key, "k1")]).await.expect("append");
    assert_eq!(later, [AppendOutcome::Appended { partition: p, offset: 6 }, AppendOutcome::Duplicate]);
    assert_eq!(read_all(&bus, STATUS_EVENTS, p).await.iter().map(|r| r.offset).collect::<Vec<_>>(), [6]);
    assert_eq!(db.scalar("SELECT count(*) FROM bus_idempotency").await, 6);
}

/// Retention deletes a few thousand records per statement: a log longer than that goes in
/// several steps, and the records appended at or after the horizon stay.
async fn truncate_of_a_long_log_goes_in_steps_and_stops_at_the_first_younger_record(db: Db) {
    let bus = db.outbox(config()).await;
    let key = "3:20";
    let p = partition_for(key, PARTITIONS);
    let append = |from: usize, to: usize| bus.append(STATUS_EVENTS, (from..to).map(|i| record(key, &format!("r{i}"))).collect());
    for from in (0..12_000).step_by(2_000) {
        append(from, from + 2_000).await.expect("append");
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    append(12_000, 12_010).await.expect("append");
    let appended = read_all(&bus, STATUS_EVENTS, p).await;
    let younger = appended[12_000].appended_at;
    assert!(appended[..12_000].iter().all(|r| r.appended_at < younger), "the last ten were appended later");

    assert_eq!(bus.truncate(STATUS_EVENTS, p, 12_010, younger).await.expect("truncate"), 12_000, "three steps and a short one");
    let left = read_all(&bus, STATUS_EVENTS, p).await;
    assert_eq!(left.iter().map(|r| r.offset).collect::<Vec<_>>(), (12_001..=12_010).collect::<Vec<_>>());
}

async fn database_error_fails_every_waiting_append_with_unavailable_and_writes_nothing(db: Db) {
    let bus = db.outbox(config()).await;
    bus.append(STATUS_EVENTS, vec![keyed("3:1", "before")]).await.expect("append");
    let heads_before = db.scalar("SELECT CAST(coalesce(sum(next_offset), 0) AS BIGINT) FROM bus_heads").await;
    let keys_before = db.scalar("SELECT count(*) FROM bus_idempotency").await;

    let lock = db.hold_write_lock().await;
    let waiting: Vec<_> = (1..=3)
        .map(|i| bus.append(STATUS_EVENTS, vec![keyed(&format!("3:{i}"), &format!("lost-{i}")), record(&format!("4:{i}"), "lost")]))
        .collect();
    lock.commit_after("DROP TABLE bus_log").await;

    for append in waiting {
        let error = within_patience(append).await.expect_err("bus_log is gone");
        assert!(matches!(error, BusError::Unavailable(_)), "{error:?}");
    }
    assert!(bus.stats().failed_transactions >= 1);
    assert_eq!(db.scalar("SELECT CAST(coalesce(sum(next_offset), 0) AS BIGINT) FROM bus_heads").await, heads_before, "heads rolled back");
    assert_eq!(db.scalar("SELECT count(*) FROM bus_idempotency").await, keys_before, "keys rolled back");
    let read = bus.read(STATUS_EVENTS, 0, 0, 10, Duration::ZERO).await;
    assert!(matches!(read, Err(BusError::Unavailable(_))), "{read:?}");
}

async fn closed_pool_makes_appends_reads_and_truncates_unavailable(db: Db) {
    let bus = db.outbox(config()).await;
    db.close().await;
    let append = within_patience(bus.append(STATUS_EVENTS, vec![record("3:1", "x")])).await;
    assert!(matches!(append, Err(BusError::Unavailable(_))), "{append:?}");
    let read = bus.read(STATUS_EVENTS, 0, 0, 10, Duration::ZERO).await;
    assert!(matches!(read, Err(BusError::Unavailable(_))), "{read:?}");
    let truncate = bus.truncate(STATUS_EVENTS, 0, 10, now()).await;
    assert!(matches!(truncate, Err(BusError::Unavailable(_))), "{truncate:?}");
}

async fn shutdown_answers_queued_appends_then_refuses_new_ones(db: Db) {
    let bus = db.outbox(config()).await;
    let key = "3:11";
    let p = partition_for(key, PARTITIONS);
    let waiting_reader = {
        let bus = bus.clone();
        tokio::spawn(async move { bus.read(ORDER_UPDATES, p, 0, 10, FOREVER).await })
    };
    until_waiting_reads(&bus, 1).await;

    let lock = db.hold_write_lock().await;
    let queued: Vec<_> = (0..3).map(|i| bus.append(STATUS_EVENTS, vec![record(key, &format!("#{i}"))])).collect();
    let shutdown = {
        let bus = bus.clone();
        tokio::spawn(async move { bus.shutdown().await })
    };
    assert!(matches!(within_patience(waiting_reader).await.expect("reader task"), Err(BusError::Closed)));
    lock.release().await;
    within_patience(shutdown).await.expect("shutdown");

    for append in queued {
        assert!(matches!(append.await.expect("a queued append is written")[..], [AppendOutcome::Appended { .. }]));
    }
    assert!(matches!(bus.append(STATUS_EVENTS, vec![record(key, "late")]).await, Err(BusError::Closed)));
    assert!(matches!(bus.read(STATUS_EVENTS, p, 0, 10, Duration::ZERO).await, Err(BusError::Closed)));
    assert_eq!(db.scalar("SELECT count(*) FROM bus_log").await, 3);
}

async fn every_operation_refuses_an_unknown_topic(db: Db) {
    let bus = db.outbox(config()).await;
    let unknown = |result: Result<(), BusError>| matches!(result, Err(BusError::UnknownTopic(topic)) if topic.starts_with(ENRICH_REQUESTS));
    assert_eq!(bus.partitions(STATUS_EVENTS).expect("known"), PARTITIONS);
    assert!(unknown(bus.partitions(ENRICH_REQUESTS).map(drop)));
    assert!(unknown(bus.append(ENRICH_REQUESTS, vec![record("3:1", "x")]).await.map(drop)));
    assert!(unknown(bus.read(ENRICH_REQUESTS, 0, 0, 10, FOREVER).await.map(drop)));
    assert!(unknown(bus.truncate(ENRICH_REQUESTS, 0, 10, now()).await.map(drop)));
    let no_such_partition = bus.read(STATUS_EVENTS, PARTITIONS, 0, 10, FOREVER).await;
    assert!(matches!(&no_such_partition, Err(BusError::UnknownTopic(t)) if t.contains("partition")), "{no_such_partition:?}");
    assert_eq!(db.scalar("SELECT count(*) FROM bus_log").await, 0);
}

async fn appends_of_another_process_wake_a_reader_through_listen_notify(db: Db) {
    let here = db.outbox(config()).await;
    let elsewhere = db.outbox_of_another_process(config()).await;
    let key = "3:12";
    let p = partition_for(key, PARTITIONS);
    let reader = {
        let here = here.clone();
        tokio::spawn(async move { here.read(STATUS_EVENTS, p, 0, 10, FOREVER).await })
    };
    until_waiting_reads(&here, 1).await;

    elsewhere.append(STATUS_EVENTS, vec![record(key, "from afar")]).await.expect("append");
    let records = within_patience(reader).await.expect("reader task").expect("read");
    assert_eq!(records.iter().map(payload).collect::<Vec<_>>(), ["from afar"]);
    assert_eq!(here.stats().transactions, 0, "the reader's own outbox wrote nothing");
}

async fn reader_still_wakes_after_the_listen_connection_was_killed(db: Db) {
    let here = db.outbox(config()).await;
    let elsewhere = db.outbox_of_another_process(config()).await;
    let killed = db
        .scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
        )
        .await;
    assert_eq!(killed, 2, "each outbox listens on a connection of its own");

    let key = "3:13";
    let p = partition_for(key, PARTITIONS);
    let reader = {
        let here = here.clone();
        tokio::spawn(async move { here.read(STATUS_EVENTS, p, 0, 10, FOREVER).await })
    };
    until_waiting_reads(&here, 1).await;
    elsewhere.append(STATUS_EVENTS, vec![record(key, "after the break")]).await.expect("append");
    let records = within_patience(reader).await.expect("reader task").expect("read");
    assert_eq!(records.iter().map(payload).collect::<Vec<_>>(), ["after the break"]);
}

// ---------------------------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------------------------

fn record(key: &str, payload: &str) -> NewRecord {
    NewRecord { key: key.to_owned(), payload: payload.as_bytes().to_vec(), idempotency_key: None }
}

/// A record whose payload is also its idempotency key.
fn keyed(key: &str, payload: &str) -> NewRecord {
    NewRecord { idempotency_key: Some(payload.to_owned()), ..record(key, payload) }
}

fn payload(record: &Record) -> String {
    String::from_utf8_lossy(&record.payload).into_owned()
}

fn now() -> Timestamp {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is after 1970");
    Timestamp::from_micros(since_epoch.as_micros() as i64)
}

fn key_in_other_partition(partition: u32) -> String {
    (0..).map(|order| format!("4:{order}")).find(|key| partition_for(key, PARTITIONS) != partition).expect("some key")
}

async fn read_all(bus: &Outbox, topic: &str, partition: u32) -> Vec<Record> {
    bus.read(topic, partition, 0, 1_000_000, Duration::ZERO).await.expect("read")
}

async fn read_everything(bus: &Outbox, topic: &str) -> BTreeMap<u32, Vec<Record>> {
    let mut log = BTreeMap::new();
    for partition in 0..PARTITIONS {
        log.insert(partition, read_all(bus, topic, partition).await);
    }
    log
}

async fn within_patience<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future).await.expect("no answer within a minute: a wake-up or an answer was lost")
}

/// Waits until `count` reads of `bus` wait for appends, so that what follows happens while
/// they wait.
async fn until_waiting_reads(bus: &Outbox, count: u64) {
    within_patience(async {
        while bus.stats().waiting_reads != count {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
}

/// Polls `future` once: its output if that is ready.
fn poll_once<F: Future + Unpin>(future: &mut F) -> Option<F::Output> {
    match Pin::new(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, BusError>> + Send + 'a>>;

/// Either adapter, through the `Bus` trait plus the adapters' own methods.
#[derive(Clone)]
enum Outbox {
    Sqlite(SqliteOutbox),
    Postgres(PostgresOutbox),
}

impl Outbox {
    fn partitions(&self, topic: &str) -> Result<u32, BusError> {
        match self {
            Outbox::Sqlite(bus) => bus.partitions(topic),
            Outbox::Postgres(bus) => bus.partitions(topic),
        }
    }

    /// Queued when called (as the adapters do); the returned future waits for the answer.
    fn append<'a>(&'a self, topic: &'a str, records: Vec<NewRecord>) -> Pending<'a, Vec<AppendOutcome>> {
        match self {
            Outbox::Sqlite(bus) => Box::pin(bus.append(topic, records)),
            Outbox::Postgres(bus) => Box::pin(bus.append(topic, records)),
        }
    }

    async fn read(&self, topic: &str, partition: u32, after: i64, max: usize, wait: Duration) -> Result<Vec<Record>, BusError> {
        match self {
            Outbox::Sqlite(bus) => bus.read(topic, partition, after, max, wait).await,
            Outbox::Postgres(bus) => bus.read(topic, partition, after, max, wait).await,
        }
    }

    async fn forget_keys(&self, topic: &str, appended_before: Timestamp) -> Result<u64, BusError> {
        match self {
            Outbox::Sqlite(bus) => bus.forget_keys(topic, appended_before).await,
            Outbox::Postgres(bus) => bus.forget_keys(topic, appended_before).await,
        }
    }

    async fn truncate(&self, topic: &str, partition: u32, through: i64, appended_before: Timestamp) -> Result<u64, BusError> {
        match self {
            Outbox::Sqlite(bus) => bus.truncate(topic, partition, through, appended_before).await,
            Outbox::Postgres(bus) => bus.truncate(topic, partition, through, appended_before).await,
        }
    }

    fn stats(&self) -> OutboxStats {
        match self {
            Outbox::Sqlite(bus) => bus.stats(),
            Outbox::Postgres(bus) => bus.stats(),
        }
    }

    async fn shutdown(&self) {
        match self {
            Outbox::Sqlite(bus) => bus.shutdown().await,
            Outbox::Postgres(bus) => bus.shutdown().await,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures.
// ---------------------------------------------------------------------------------------------

/// A freshly migrated database of either dialect.
#[derive(Clone)]
enum Db {
    Sqlite { pool: SqlitePool, _dir: Arc<TempDir> },
    Postgres { pool: PgPool },
}

/// The database's write lock, held by the test: appends wait behind it without sleeping.
enum WriteLock {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl Db {
    async fn outbox(&self, config: OutboxConfig) -> Outbox {
        match self {
            Db::Sqlite { pool, .. } => {
                Outbox::Sqlite(SqliteOutbox::start(pool.clone(), &TOPICS, config).await.expect("starting the outbox"))
            }
            Db::Postgres { pool, .. } => {
                Outbox::Postgres(PostgresOutbox::start(pool.clone(), &TOPICS, config).await.expect("starting the outbox"))
            }
        }
    }

    /// An outbox on a pool of its own, as another process would have.
    async fn outbox_of_another_process(&self, config: OutboxConfig) -> Outbox {
        let Db::Postgres { pool } = self else { panic!("SQLite is embedded: one process") };
        let options = (*pool.connect_options()).clone();
        let pool = PgPoolOptions::new().max_connections(2).connect_with(options).await.expect("a second pool");
        Outbox::Postgres(PostgresOutbox::start(pool, &TOPICS, config).await.expect("starting the second outbox"))
    }

    async fn hold_write_lock(&self) -> WriteLock {
        match self {
            Db::Sqlite { pool, .. } => WriteLock::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await.expect("taking the write lock")),
            Db::Postgres { pool, .. } => {
                let mut tx = pool.begin().await.expect("a transaction");
                sqlx::query("LOCK TABLE bus_heads IN EXCLUSIVE MODE").execute(&mut *tx).await.expect("locking bus_heads");
                WriteLock::Postgres(tx)
            }
        }
    }

    async fn scalar(&self, sql: &str) -> i64 {
        let result = match self {
            Db::Sqlite { pool, .. } => sqlx::query_scalar(AssertSqlSafe(sql.to_owned())).fetch_one(pool).await,
            Db::Postgres { pool, .. } => sqlx::query_scalar(AssertSqlSafe(sql.to_owned())).fetch_one(pool).await,
        };
        result.unwrap_or_else(|e| panic!("{sql}\nfailed: {e}"))
    }

    async fn close(&self) {
        match self {
            Db::Sqlite { pool, .. } => pool.close().await,
            Db::Postgres { pool, .. } => pool.close().await,
        }
    }
}

impl WriteLock {
    async fn release(self) {
        match self {
            WriteLock::Sqlite(tx) => tx.rollback().await.expect("releasing the write lock"),
            WriteLock::Postgres(tx) => tx.rollback().await.expect("releasing the write lock"),
        }
    }

    /// Runs `sql` while still holding the lock, then commits.
    async fn commit_after(self, sql: &str) {
        let statement = || sqlx::raw_sql(AssertSqlSafe(sql.to_owned()));
        match self {
            WriteLock::Sqlite(mut tx) => {
                statement().execute(&mut *tx).await.expect(sql);
                tx.commit().await.expect("commit");
            }
            WriteLock::Postgres(mut tx) => {
                statement().execute(&mut *tx).await.expect(sql);
                tx.commit().await.expect("commit");
            }
        }
    }
}

async fn on_sqlite<F, Fut>(behaviour: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()>,
{
    // The embedded bus's own file, as `run` keeps it beside the state database.
    let dir = tempfile::tempdir().expect("temporary folder");
    let pool = sqlite_pool(&dir.path().join("state-bus.db")).await;
    migrate_sqlite_bus(&pool).await.expect("migrating the bus file");
    behaviour(Db::Sqlite { pool, _dir: Arc::new(dir) }).await;
}

async fn sqlite_pool(file: &std::path::Path) -> SqlitePool {
    let options =
        SqliteConnectOptions::new().filename(file).create_if_missing(true).journal_mode(SqliteJournalMode::Wal).foreign_keys(true);
    SqlitePoolOptions::new().max_connections(4).connect_with(options).await.expect("opening SQLite")
}

/// Runs `behaviour` on a database of its own on the `DATABASE_URL` server, and drops that
/// database afterwards, also when the behaviour panics.
async fn on_postgres<F, Fut>(test: &str, behaviour: F)
where
    F: FnOnce(Db) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    ksa_testkit::with_postgres_database(test, |url| async move {
        let options: PgConnectOptions = url.parse().expect("the fresh database's URL");
        let pool = PgPoolOptions::new().max_connections(4).connect_with(options).await.expect("connecting to the fresh database");
        migrate_postgres(&pool).await.expect("migrating PostgreSQL");
        behaviour(Db::Postgres { pool: pool.clone() }).await;
        pool.close().await;
    })
    .await;
}
