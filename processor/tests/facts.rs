//! The processor writes an order's facts before it commits its state and offsets
//! (docs/architecture.md, invariant 4). A sink that fails holds the batch back; a replay from the
//! start writes identical rows, which ClickHouse keeps once per key.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ksa_bus::outbox::SqliteOutbox;
use ksa_bus::{Bus, NewRecord, OutboxConfig};
use ksa_facts::clickhouse::FinalFacts;
use ksa_facts::{BoxedFactSink, ClickHouseConfig, ClickHouseSink, FactError, FactSink};
use ksa_processor::{Processor, ProcessorConfig, ProcessorStats};
use ksa_schemas::bus::{ENRICH_REQUESTS, ORDER_UPDATES, STATUS_EVENTS, StatusMessage};
use ksa_schemas::facts::{FactBatch, IntervalFact};
use ksa_schemas::{EventSource, StatusEvent, Timestamp};
use ksa_state::sqlite::SqliteState;
use ksa_state::{NewProject, StateStore};
use tokio::sync::watch;

const TOPICS: [&str; 3] = [STATUS_EVENTS, ORDER_UPDATES, ENRICH_REQUESTS];
const GROUP: &str = "processor";

/// A state database and its outbox in a folder of their own.
struct Embedded {
    _dir: tempfile::TempDir,
    state: SqliteState,
    bus: SqliteOutbox,
    project_id: i64,
}

async fn embedded(partitions: u32) -> Embedded {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = SqliteState::open(&dir.path().join("state.db").display().to_string()).await.expect("state db");
    let config = OutboxConfig { partitions, ..OutboxConfig::default() };
    let bus = SqliteOutbox::start_with_gate(state.pool().clone(), state.write_gate(), &TOPICS, config).await.expect("outbox");
    let project = state
        .create_project(NewProject {
            slug: "shop".into(),
            name: "Shop".into(),
            timezone: "UTC".into(),
            webhook_secret_hash: "x".into(),
            allowed_cidrs: Vec::new(),
        })
        .await
        .expect("project");
    Embedded { _dir: dir, state, bus, project_id: project.id }
}

fn event(order_id: i64, status_id: i64, group_id: u16, minute: i64) -> StatusEvent {
    StatusEvent {
        order_id,
        status_id,
        group_id,
        changed_at: Timestamp::from_micros(1_767_225_600_000_000 + minute * 60_000_000 + 250),
        order_created_at: Timestamp::from_seconds(1_767_225_600),
        source: EventSource::Webhook,
    }
}

/// A small log: orders through new → agreement → production → delivery → completed, one
/// reopened, a late event that lands between two known ones, and repeated deliveries.
fn webhook_log() -> Vec<StatusEvent> {
    let mut log = Vec::new();
    for order_id in 1..=12 {
        let step = order_id * 7;
        log.extend([event(order_id, 1, 1, 0), event(order_id, 20, 2, step), event(order_id, 7, 3, 3 * step)]);
        if order_id % 3 != 0 {
            log.push(event(order_id, 11, 4, 40 * step));
        }
        if order_id % 4 == 0 {
            log.extend([event(order_id, 15, 5, 50 * step), event(order_id, 7, 3, 60 * step)]);
        }
    }
    log.push(event(2, 8, 3, 20));
    log.push(event(5, 20, 2, 35));
    log.push(event(7, 1, 1, 0));
    log
}

async fn append(bus: &SqliteOutbox, project_id: i64, events: &[StatusEvent]) {
    let records = events
        .iter()
        .map(|event| NewRecord {
            key: format!("{project_id}:{}", event.order_id),
            payload: serde_json::to_vec(&StatusMessage::StatusChanged {
                project_id,
                event: *event,
                received_at: event.changed_at,
                payload: "{}".into(),
            })
            .expect("message"),
            idempotency_key: None,
        })
        .collect();
    bus.append(STATUS_EVENTS, records).await.expect("append");
}

fn config() -> ProcessorConfig {
    ProcessorConfig { batch_records: 8, idle_wait: Duration::from_millis(20), linger: Duration::ZERO, ..ProcessorConfig::default() }
}

/// Runs one processor over every partition until it has consumed `records`, then stops it.
async fn process(embedded: &Embedded, sink: BoxedFactSink, records: u64) -> ProcessorStats {
    let processor = Processor::new(embedded.bus.clone(), embedded.state.clone(), config(), None).await.expect("processor").with_facts(sink);
    let mut stats = processor.stats();
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(processor.run(shutdown));
    tokio::time::timeout(Duration::from_secs(60), stats.wait_for(|s| s.records >= records))
        .await
        .expect("processed in time")
        .expect("stats");
    stop.send(true).expect("stop");
    running.await.expect("processor task").expect("processor")
}

/// Stores what it is given in memory; fails the first `failures` writes, and notes the
/// committed offsets each write sees.
#[derive(Clone)]
struct FlakySink {
    state: SqliteState,
    failures: Arc<Mutex<u32>>,
    offsets_seen: Arc<Mutex<Vec<i64>>>,
    written: Arc<Mutex<FactBatch>>,
}

impl FactSink for FlakySink {
    async fn write(&self, batch: FactBatch) -> Result<(), FactError> {
        let offsets = self.state.consumer_offsets(GROUP, STATUS_EVENTS).await.expect("offsets");
        self.offsets_seen.lock().unwrap().push(offsets.values().sum());
        {
            let mut failures = self.failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err(FactError::InvalidRow("the sink is down for this test".into()));
            }
        }
        let mut written = self.written.lock().unwrap();
        written.intervals.extend(batch.intervals);
        written.cycles.extend(batch.cycles);
        Ok(())
    }
}

#[tokio::test]
async fn a_batch_whose_facts_fail_is_not_committed_and_is_retried() {
    let embedded = embedded(1).await;
    let log = webhook_log();
    append(&embedded.bus, embedded.project_id, &log[..6]).await;
    let sink = FlakySink {
        state: embedded.state.clone(),
        failures: Arc::new(Mutex::new(2)),
        offsets_seen: Arc::default(),
        written: Arc::default(),
    };

    let stats = process(&embedded, BoxedFactSink::new("flaky", sink.clone()), 6).await;

    assert_eq!(stats.batches, 1, "{stats:?}");
    // Three attempts at the first batch, none of which found its offsets committed.
    assert_eq!(*sink.offsets_seen.lock().unwrap(), vec![0, 0, 0]);
    let offsets = embedded.state.consumer_offsets(GROUP, STATUS_EVENTS).await.expect("offsets");
    assert_eq!(offsets.get(&0), Some(&7), "the batch committed once its facts were written");
    let written = sink.written.lock().unwrap().clone();
    assert_eq!(written.intervals.len(), 6, "one interval per event: {written:?}");
    assert!(!written.cycles.is_empty());
}

#[tokio::test]
async fn a_sink_that_never_recovers_keeps_the_offsets_where_they_were() {
    let embedded = embedded(1).await;
    append(&embedded.bus, embedded.project_id, &webhook_log()[..4]).await;
    let sink = FlakySink {
        state: embedded.state.clone(),
        failures: Arc::new(Mutex::new(u32::MAX)),
        offsets_seen: Arc::default(),
        written: Arc::default(),
    };
    let processor = Processor::new(embedded.bus.clone(), embedded.state.clone(), config(), None)
        .await
        .expect("processor")
        .with_facts(BoxedFactSink::new("down", sink.clone()));
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(processor.run(shutdown));
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.send(true).expect("stop");
    let stats = running.await.expect("task").expect("processor");

    assert_eq!(stats.batches, 0);
    assert!(sink.offsets_seen.lock().unwrap().len() >= 2, "retried with back-off");
    assert!(embedded.state.consumer_offsets(GROUP, STATUS_EVENTS).await.expect("offsets").is_empty());
    assert_eq!(embedded.state.event_count(embedded.project_id).await.expect("events"), 0);
}

#[tokio::test]
async fn a_replay_from_the_start_writes_identical_facts_once_per_key() {
    let Some(url) = ksa_testkit::clickhouse_server("replay_writes_identical_facts") else { return };
    let database = ksa_testkit::unique_database_name("processor_replay");
    let config = ClickHouseConfig::new(url.clone(), database.clone());
    let outcome = tokio::spawn(replay_twice(config)).await;
    clickhouse::Client::default()
        .with_url(url)
        .with_compression(clickhouse::Compression::None)
        .query(&format!("DROP DATABASE IF EXISTS {database}"))
        .execute()
        .await
        .unwrap_or_else(|e| panic!("cannot drop ClickHouse database {database}: {e}"));
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

async fn replay_twice(config: ClickHouseConfig) {
    let (sink, _) = ClickHouseSink::connect(config).await.unwrap_or_else(|e| panic!("cannot connect to ClickHouse: {e}"));
    let log = webhook_log();
    let records = log.len() as u64;

    let first = embedded(2).await;
    append(&first.bus, first.project_id, &log).await;
    process(&first, BoxedFactSink::new("clickhouse", sink.clone()), records).await;
    let intervals = sink.final_intervals(first.project_id).await.expect("intervals");
    let cycles = sink.final_cycles(first.project_id).await.expect("cycles");

    // The same log again from offset 0, into a fresh state database: every fact is written a
    // second time, with the same version.
    let second = embedded(2).await;
    assert_eq!(second.project_id, first.project_id);
    append(&second.bus, second.project_id, &log).await;
    process(&second, BoxedFactSink::new("clickhouse", sink.clone()), records).await;

    let replayed = sink.final_intervals(first.project_id).await.expect("intervals");
    assert_eq!(replayed, intervals);
    assert_eq!(sink.final_cycles(first.project_id).await.expect("cycles"), cycles);

    // One row per event (each opens an interval), none per repeated delivery.
    let distinct_events = {
        let mut keys: Vec<_> = log.iter().map(|e| (e.order_id, e.changed_at, e.status_id)).collect();
        keys.sort();
        keys.dedup();
        keys.len()
    };
    assert_eq!(replayed.len(), distinct_events);
    let key = |i: &IntervalFact| (i.order_id, i.entered_at, i.status_id);
    assert!(replayed.windows(2).all(|w| key(&w[0]) != key(&w[1])), "a key appears twice under FINAL");
    // The late event closed order 2's agreement interval at minute 20, not at production.
    let agreement = replayed.iter().find(|i| i.order_id == 2 && i.status_id == 20).expect("order 2 in agreement");
    assert_eq!(agreement.left_at, Some(event(2, 8, 3, 20).changed_at));
    assert!(cycles.iter().all(|c| c.version == replayed.iter().find(|i| i.order_id == c.order_id).expect("order").version));
}
