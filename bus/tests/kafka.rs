//! The Kafka adapter against the broker in `KSA_KAFKA_BROKERS` (scripts/services starts tansu).
//! Each test creates topics of its own.
#![cfg(feature = "kafka")]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ksa_bus::kafka::rdkafka::ClientConfig;
use ksa_bus::kafka::rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use ksa_bus::kafka::rdkafka::client::DefaultClientContext;
use ksa_bus::kafka::{KafkaBus, KafkaConfig};
use ksa_bus::{AppendOutcome, Bus, BusError, NewRecord, Record};
use ksa_schemas::bus::partition_for;

const PARTITIONS: u32 = 4;
const PATIENCE: Duration = Duration::from_secs(20);

/// A topic no other test (or run) uses, created on the broker with `partitions`.
async fn fresh_topic(brokers: &str, test: &str, partitions: u32) -> String {
    let name = ksa_testkit::unique_database_name(test).replace('_', "-");
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().expect("Kafka admin client");
    let results = admin
        .create_topics(&[NewTopic::new(&name, partitions as i32, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .expect("create topics");
    for result in results {
        result.unwrap_or_else(|(topic, code)| panic!("cannot create topic {topic}: {code}"));
    }
    name
}

/// A bus over one fresh topic of [`PARTITIONS`] partitions, or `None` when there is no broker.
async fn bus_with_topic(test: &str) -> Option<(KafkaBus, String)> {
    let brokers = ksa_testkit::kafka_brokers(test)?;
    let topic = fresh_topic(&brokers, test, PARTITIONS).await;
    let mut config = KafkaConfig::new(brokers, PARTITIONS);
    config.topics = BTreeMap::from([(topic.clone(), PARTITIONS)]);
    // The broker of scripts/services is tansu, which needs it (see KafkaConfig).
    config.rewind_when_quiet = true;
    let bus = KafkaBus::connect(config).await.unwrap_or_else(|e| panic!("cannot connect to Kafka: {e}"));
    Some((bus, topic))
}

fn record(key: &str, payload: &str) -> NewRecord {
    NewRecord { key: key.to_owned(), payload: payload.as_bytes().to_vec(), idempotency_key: None }
}

fn payload(record: &Record) -> String {
    String::from_utf8_lossy(&record.payload).into_owned()
}

/// Reads `partition` from `after` until `count` records came, or fails after [`PATIENCE`].
async fn read_n(bus: &KafkaBus, topic: &str, partition: u32, after: i64, count: usize) -> Vec<Record> {
    let started = Instant::now();
    let mut records: Vec<Record> = Vec::new();
    while records.len() < count {
        assert!(started.elapsed() < PATIENCE, "read {} of {count} records of {topic}/{partition}", records.len());
        let from = records.last().map_or(after, |r| r.offset);
        records.extend(bus.read(topic, partition, from, count - records.len(), Duration::from_millis(500)).await.expect("read"));
    }
    records
}

#[tokio::test]
async fn records_land_in_the_murmur2_partition_of_their_key_and_keep_their_order() {
    let Some((bus, topic)) = bus_with_topic("murmur2_partitions").await else { return };
    let records: Vec<NewRecord> = (0..40).map(|i| record(&format!("7:{}", i % 8), &format!("event {i}"))).collect();
    let outcomes = bus.append(&topic, records.clone()).await.expect("append");

    let mut expected: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for (record, outcome) in records.iter().zip(&outcomes) {
        let AppendOutcome::Appended { partition, .. } = outcome else { panic!("Kafka never reports duplicates: {outcome:?}") };
        assert_eq!(*partition, partition_for(&record.key, PARTITIONS), "key {}", record.key);
        expected.entry(*partition).or_default().push(payload_of(record));
    }
    for (partition, payloads) in expected {
        let read = read_n(&bus, &topic, partition, 0, payloads.len()).await;
        assert_eq!(read.iter().map(payload).collect::<Vec<_>>(), payloads, "partition {partition}");
        assert_eq!(read.iter().map(|r| r.offset).collect::<Vec<_>>(), (1..=payloads.len() as i64).collect::<Vec<_>>());
    }
}

fn payload_of(record: &NewRecord) -> String {
    String::from_utf8_lossy(&record.payload).into_owned()
}

#[tokio::test]
async fn offsets_from_appends_are_the_offsets_reads_return() {
    let Some((bus, topic)) = bus_with_topic("append_offsets").await else { return };
    let key = "1:42";
    let partition = partition_for(key, PARTITIONS);
    let outcomes = bus.append(&topic, vec![record(key, "a"), record(key, "b"), record(key, "c")]).await.expect("append");
    let offsets: Vec<i64> = outcomes
        .iter()
        .map(|o| match o {
            AppendOutcome::Appended { offset, .. } => *offset,
            AppendOutcome::Duplicate => panic!("duplicate"),
        })
        .collect();
    assert_eq!(offsets, vec![1, 2, 3]);
    let read = read_n(&bus, &topic, partition, 0, 3).await;
    assert_eq!(read.iter().map(|r| (r.offset, r.key.as_str())).collect::<Vec<_>>(), vec![(1, key), (2, key), (3, key)]);
}

#[tokio::test]
async fn a_read_after_an_offset_skips_what_came_before_and_a_seek_back_reads_it_again() {
    let Some((bus, topic)) = bus_with_topic("seek_back").await else { return };
    let key = "3:9";
    let partition = partition_for(key, PARTITIONS);
    bus.append(&topic, (0..5).map(|i| record(key, &format!("{i}"))).collect()).await.expect("append");

    let later = read_n(&bus, &topic, partition, 2, 3).await;
    assert_eq!(later.iter().map(payload).collect::<Vec<_>>(), vec!["2", "3", "4"]);
    // A processor that did not commit its batch reads it again from its stored offset.
    let again = read_n(&bus, &topic, partition, 0, 5).await;
    assert_eq!(again.iter().map(payload).collect::<Vec<_>>(), vec!["0", "1", "2", "3", "4"]);
}

#[tokio::test]
async fn a_read_from_just_behind_the_reader_returns_at_once_without_waiting() {
    let Some((bus, topic)) = bus_with_topic("peek_then_read").await else { return };
    let key = "4:2";
    let partition = partition_for(key, PARTITIONS);
    bus.append(&topic, (0..4).map(|i| record(key, &format!("{i}"))).collect()).await.expect("append");
    // The processor, idle, peeks at one record to wake up, then reads from where it stood
    // without waiting: what the peek took must come back, and the rest follow.
    let peek = read_n(&bus, &topic, partition, 0, 1).await;
    assert_eq!(peek.iter().map(payload).collect::<Vec<_>>(), vec!["0"]);
    let mut batch = Vec::new();
    let started = Instant::now();
    while batch.len() < 4 && started.elapsed() < Duration::from_secs(5) {
        let after = batch.last().map_or(0, |r: &Record| r.offset);
        batch.extend(bus.read(&topic, partition, after, 10, Duration::ZERO).await.expect("read"));
        if batch.is_empty() {
            panic!("a read without wait from just behind the reader returned nothing");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(batch.iter().map(payload).collect::<Vec<_>>(), vec!["0", "1", "2", "3"]);
}

#[tokio::test]
async fn a_read_waits_for_an_append_and_returns_nothing_when_the_wait_runs_out() {
    let Some((bus, topic)) = bus_with_topic("read_waits").await else { return };
    let key = "5:1";
    let partition = partition_for(key, PARTITIONS);

    let started = Instant::now();
    let nothing = bus.read(&topic, partition, 0, 10, Duration::from_millis(400)).await.expect("read");
    assert!(nothing.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(400), "returned after {:?}", started.elapsed());

    let reader = {
        let (bus, topic) = (bus.clone(), topic.clone());
        tokio::spawn(async move { bus.read(&topic, partition, 0, 10, PATIENCE).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    bus.append(&topic, vec![record(key, "late")]).await.expect("append");
    let read = reader.await.expect("reader task").expect("read");
    assert_eq!(read.iter().map(payload).collect::<Vec<_>>(), vec!["late"]);
}

#[tokio::test]
async fn connect_refuses_a_topic_with_another_partition_count() {
    let Some(brokers) = ksa_testkit::kafka_brokers("partition_mismatch") else { return };
    let topic = fresh_topic(&brokers, "partition_mismatch", 2).await;
    let mut config = KafkaConfig::new(brokers, PARTITIONS);
    config.topics = BTreeMap::from([(topic.clone(), PARTITIONS)]);
    match KafkaBus::connect(config).await {
        Err(BusError::UnknownTopic(message)) => assert!(message.contains("2 partitions"), "{message}"),
        other => panic!("expected UnknownTopic, got {other:?}"),
    }
}

#[tokio::test]
async fn every_operation_refuses_a_topic_that_is_not_configured() {
    let Some((bus, _topic)) = bus_with_topic("unknown_topic").await else { return };
    assert!(matches!(bus.partitions("nope"), Err(BusError::UnknownTopic(_))));
    assert!(matches!(bus.append("nope", vec![record("k", "v")]).await, Err(BusError::UnknownTopic(_))));
    assert!(matches!(bus.read("nope", 0, 0, 1, Duration::ZERO).await, Err(BusError::UnknownTopic(_))));
}

#[tokio::test]
async fn records_of_many_keys_are_all_read_back_once() {
    let Some((bus, topic)) = bus_with_topic("many_keys").await else { return };
    let records: Vec<NewRecord> = (0..500).map(|i| record(&format!("{}:{}", i % 3, i % 97), &format!("{i}"))).collect();
    bus.append(&topic, records).await.expect("append");

    let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
    for i in 0..500 {
        *counts.entry(partition_for(&format!("{}:{}", i % 3, i % 97), PARTITIONS)).or_default() += 1;
    }
    let mut seen = BTreeSet::new();
    for (partition, count) in counts {
        for record in read_n(&bus, &topic, partition, 0, count).await {
            assert!(seen.insert(payload(&record)), "read twice: {}", payload(&record));
        }
    }
    assert_eq!(seen.len(), 500);
}

#[tokio::test]
async fn an_unreachable_broker_fails_connect_as_unavailable() {
    let mut config = KafkaConfig::new("127.0.0.1:9", PARTITIONS);
    config.metadata_timeout = Duration::from_secs(2);
    match KafkaBus::connect(config).await {
        Err(BusError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
}
