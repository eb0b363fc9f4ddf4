//! `ingest`, `process` and `query-api` as processes of their own, configured by one file: the
//! same log gives the same derived state as a clean embedded run, and the processors write one
//! fact row per event and cycle. Also `run` with Parquet facts.
//!
//! Needs `DATABASE_URL` and `KSA_CLICKHOUSE_URL` (scripts/services); fresh databases are made
//! and dropped.

mod common;

use common::clickhouse::ScratchClickHouse;
use common::http::{client, get, wait_until_processed};
use common::postgres::{ScratchDatabase, postgres_server};
use common::server::Instance;
use common::webhook_log::{WebhookLog, assert_all_taken};
use ksa_facts::clickhouse::FinalFacts;
use ksa_facts::parquet::ParquetFacts;
use ksa_facts::{ClickHouseConfig, ClickHouseSink};
use ksa_schemas::facts::IntervalFact;
use ksa_state::{PostgresState, SqliteState, StateStore};

fn assert_one_row_per_event(intervals: &[IntervalFact], log: &WebhookLog) {
    assert_eq!(intervals.len(), log.event_keys().len(), "one interval per distinct event");
    let key = |i: &IntervalFact| (i.order_id, i.entered_at, i.status_id);
    let mut keys: Vec<_> = intervals.iter().map(key).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), intervals.len(), "a key appears twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_run_apart_from_one_config_file_give_the_embedded_result_and_facts() {
    let Some(server) = postgres_server("apart") else { return };
    let Some(clickhouse_url) = ksa_testkit::clickhouse_server("apart") else { return };
    let database = ScratchDatabase::create(&server, "apart");
    let clickhouse = ScratchClickHouse { url: clickhouse_url.clone(), database: ksa_testkit::unique_database_name("apart") };

    let instance = Instance::postgres(&database.url);
    let config = instance.ws.write(
        "distributed.toml",
        &format!(
            "[database]\nurl = \"{}\"\n\n[bus]\nkind = \"outbox\"\npartitions = 2\n\n[facts]\nkind = \"clickhouse\"\n\n\
             [facts.clickhouse]\nurl = \"{clickhouse_url}\"\ndatabase = \"{}\"\n",
            database.url, clickhouse.database
        ),
    );
    let instance = instance.with_env("KSA_CONFIG", &config.display().to_string());
    let log = WebhookLog::simulate(&instance.ws, "p1", 150);
    let shuffled = log.shuffled_with_duplicates(3, 4);
    let project = instance.add_project("p1", &[]);

    let ingest = instance.start_service("ingest", &[]);
    let first = instance.start_service("process", &["--partitions", "0"]);
    let second = instance.start_service("process", &["--partitions", "1"]);
    let query = instance.start_service("query-api", &[]);
    let client = client();
    assert_all_taken(&shuffled.post_all(&client, &ingest.webhook_url(&project), 8).await);
    wait_until_processed(&client, &query, "p1", log.expected()).await;

    let health = get(&client, &format!("{}/healthz", first.base_url)).await;
    assert_eq!(
        (health.status, health.body["service"].as_str(), health.body["partitions"].clone()),
        (200, Some("process"), serde_json::json!([0]))
    );
    assert_eq!(get(&client, &format!("{}/healthz", ingest.base_url)).await.status, 200);
    assert_eq!(get(&client, &format!("{}/healthz", query.base_url)).await.status, 200);
    for service in [ingest, first, second, query] {
        assert!(service.stop().success());
    }

    let (clean_digest, _) = log.digest_of_a_clean_run(None).await;
    assert_eq!(instance.derived_digest("p1").await, clean_digest, "the services apart derive another state than `run`");

    let state = PostgresState::connect(&database.url).await.expect("state");
    let project_id = state.project_by_slug("p1").await.expect("read").expect("project").id;
    let (facts, _) = ClickHouseSink::connect(ClickHouseConfig::new(clickhouse_url, clickhouse.database.clone())).await.expect("ClickHouse");
    assert_one_row_per_event(&facts.final_intervals(project_id).await.expect("intervals"), &log);
    let orders = log.expected().orders;
    let cycles = facts.final_cycles(project_id).await.expect("cycles");
    assert!(!cycles.is_empty() && cycles.len() <= 2 * orders, "{} cycles for {orders} orders", cycles.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_parquet_facts_writes_one_interval_per_event() {
    let instance = Instance::sqlite().with_env("KSA__FACTS__KIND", "parquet");
    let log = WebhookLog::simulate(&instance.ws, "p1", 100);
    let project = instance.add_project("p1", &[]);
    let server = instance.start();
    let client = client();
    assert_all_taken(&log.shuffled_with_duplicates(5, 3).post_all(&client, &server.webhook_url(&project), 8).await);
    wait_until_processed(&client, &server, "p1", log.expected()).await;
    assert!(server.stop().success());

    let state = SqliteState::open(&instance.state_db().display().to_string()).await.expect("state");
    let project_id = state.project_by_slug("p1").await.expect("read").expect("project").id;
    let facts = ParquetFacts::new(instance.state_db().with_file_name("facts"));
    assert_one_row_per_event(&facts.final_intervals(project_id).expect("intervals"), &log);
    assert!(!facts.files("status_intervals", project_id).expect("files").is_empty());
}

#[test]
fn run_refuses_the_kafka_bus() {
    let instance = Instance::sqlite().with_env("KSA__BUS__KIND", "kafka");
    let outcome = common::run(&mut instance.command(["run", "--listen", "127.0.0.1:0"]));
    outcome.assert_failure_mentioning(&["outbox", "ingest"]);
}

/// The distributed mode proper: Kafka (the broker of scripts/services, with topics of this
/// test's own under a prefix), PostgreSQL and ClickHouse, two processors splitting the
/// partitions statically.
#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_apart_on_kafka_give_the_embedded_result_and_facts() {
    use ksa_bus::kafka::rdkafka::ClientConfig;
    use ksa_bus::kafka::rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use ksa_bus::kafka::rdkafka::client::DefaultClientContext;

    let Some(server) = postgres_server("apart_kafka") else { return };
    let Some(clickhouse_url) = ksa_testkit::clickhouse_server("apart_kafka") else { return };
    let Some(brokers) = ksa_testkit::kafka_brokers("apart_kafka") else { return };
    let database = ScratchDatabase::create(&server, "apart_kafka");
    let clickhouse = ScratchClickHouse { url: clickhouse_url.clone(), database: ksa_testkit::unique_database_name("apart_kafka") };
    let prefix = format!("{}.", ksa_testkit::unique_database_name("apart"));
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &brokers).create().expect("Kafka admin client");
    let topics: Vec<String> = ["status-events", "order-updates", "enrich-requests"].iter().map(|t| format!("{prefix}{t}")).collect();
    let new_topics: Vec<NewTopic> = topics.iter().map(|t| NewTopic::new(t, 2, TopicReplication::Fixed(1))).collect();
    for created in admin.create_topics(&new_topics, &AdminOptions::new()).await.expect("create topics") {
        created.unwrap_or_else(|(topic, code)| panic!("cannot create topic {topic}: {code}"));
    }

    let instance = Instance::postgres(&database.url);
    let config = instance.ws.write(
        "distributed.toml",
        &format!(
            "[database]\nurl = \"{}\"\n\n[bus]\nkind = \"kafka\"\npartitions = 2\n\n[bus.kafka]\nbrokers = \"{brokers}\"\n\
             topic_prefix = \"{prefix}\"\n# tansu 0.6 (docs/distributed.md)\nrewind_when_quiet = true\n\n[facts]\nkind = \"clickhouse\"\n\n\
             [facts.clickhouse]\nurl = \"{clickhouse_url}\"\ndatabase = \"{}\"\n",
            database.url, clickhouse.database
        ),
    );
    let instance = instance.with_env("KSA_CONFIG", &config.display().to_string());
    let log = WebhookLog::simulate(&instance.ws, "p1", 120);
    let project = instance.add_project("p1", &[]);

    let ingest = instance.start_service("ingest", &[]);
    let first = instance.start_service("process", &["--partitions", "0"]);
    let second = instance.start_service("process", &["--partitions", "1"]);
    let query = instance.start_service("query-api", &[]);
    // A second query API: each reads the whole `order-updates` topic for its live clients.
    let query_again = instance.start_service("query-api", &[]);
    let client = client();
    let mut listeners = Vec::new();
    for server in [&query, &query_again] {
        let url = format!("{}/api/stream/orders?project=p1", server.base_url);
        let mut stream = common::sse::open(&client, &url, None, None).await.unwrap_or_else(|r| panic!("stream refused: {r:?}"));
        let orders = log.expected().orders;
        listeners.push(tokio::spawn(async move { stream.updated_orders(orders, common::http::PROCESSING_DEADLINE).await }));
    }
    assert_all_taken(&log.shuffled_with_duplicates(9, 4).post_all(&client, &ingest.webhook_url(&project), 8).await);
    wait_until_processed(&client, &query, "p1", log.expected()).await;
    for listener in listeners {
        let seen = listener.await.unwrap();
        assert_eq!(seen.len(), log.expected().orders, "a query API's live client missed order updates");
    }
    for service in [ingest, first, second, query, query_again] {
        assert!(service.stop().success());
    }
    let _ = admin.delete_topics(&topics.iter().map(String::as_str).collect::<Vec<_>>(), &AdminOptions::new()).await;

    let (clean_digest, _) = log.digest_of_a_clean_run(None).await;
    assert_eq!(instance.derived_digest("p1").await, clean_digest, "the services on Kafka derive another state than `run`");
    let state = PostgresState::connect(&database.url).await.expect("state");
    let project_id = state.project_by_slug("p1").await.expect("read").expect("project").id;
    let (facts, _) = ClickHouseSink::connect(ClickHouseConfig::new(clickhouse_url, clickhouse.database.clone())).await.expect("ClickHouse");
    assert_one_row_per_event(&facts.final_intervals(project_id).await.expect("intervals"), &log);
}

/// Two `process` instances given overlapping partitions: the second refuses to start, naming
/// the partition; once the first is gone (even by SIGKILL) the partition can be taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_with_a_partition_another_instance_holds_refuses_to_start() {
    let Some(server) = postgres_server("apart_claims") else { return };
    let database = ScratchDatabase::create(&server, "apart_claims");
    let instance = Instance::postgres(&database.url).with_env("KSA__BUS__PARTITIONS", "3");
    let first = instance.start_service("process", &["--partitions", "0,1"]);

    let refused = common::run(&mut instance.command(["process", "--listen", "127.0.0.1:0", "--partitions", "2,1"]));
    assert_ne!(refused.code, Some(0), "a second holder of partition 1 started:\n{}", refused.stderr);
    assert!(refused.stderr.contains("partition 1 of status-events is already processed by another"), "{}", refused.stderr);
    let disjoint = instance.start_service("process", &["--partitions", "2"]);

    first.kill();
    let taken_over = instance.start_service("process", &["--partitions", "1"]);
    for service in [disjoint, taken_over] {
        assert!(service.stop().success());
    }
}
