//! Faults in the distributed mode, with the real services (scripts/services): Kafka, PostgreSQL
//! and ClickHouse, `ingest`, `process` and `query-api` as processes of their own. Each test ends
//! like a clean embedded run: the same derived-state digest and the same facts as a query sees
//! them (ClickHouse `FINAL` against the clean run's Parquet facts: nothing missing, nothing
//! twice). See docs/distributed.md, "Fault tests".

#![cfg(feature = "kafka")]

mod common;

use std::time::{Duration, Instant};

use common::clickhouse::ScratchClickHouse;
use common::http::{PROCESSING_DEADLINE, client, wait_until_processed};
use common::postgres::{ScratchDatabase, postgres_server};
use common::private_services::{PrivateServices, free_ports};
use common::proxy::Proxy;
use common::server::{Instance, Server};
use common::webhook_log::{Refusals, WebhookLog, assert_all_taken};
use ksa_bus::kafka::rdkafka::ClientConfig;
use ksa_bus::kafka::rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use ksa_bus::kafka::rdkafka::client::DefaultClientContext;
use ksa_facts::clickhouse::FinalFacts;
use ksa_facts::{ClickHouseConfig, ClickHouseSink};
use ksa_schemas::facts::{CycleFact, IntervalFact};
use ksa_state::{PostgresState, StateStore};

/// One deployment apart: a scratch PostgreSQL database, ClickHouse database and Kafka topics
/// (under a prefix of its own, deleted at the end), and one config file for every service.
struct Deployment {
    instance: Instance,
    database: ScratchDatabase,
    clickhouse: ScratchClickHouse,
    admin: AdminClient<DefaultClientContext>,
    topics: Vec<String>,
}

/// The servers a deployment runs on: the shared ones of `scripts/services`, or one of a test's
/// own in their place.
#[derive(Default)]
struct Servers {
    /// A PostgreSQL server URL (its database is replaced by a scratch one).
    postgres: Option<String>,
    /// Kafka's `bootstrap.servers`.
    brokers: Option<String>,
}

impl Deployment {
    /// On the shared servers. `None` (after saying so) when a service is missing outside CI;
    /// under `CI=true` it fails.
    async fn new(test: &str, partitions: i32) -> Option<Deployment> {
        Deployment::on(test, partitions, Servers::default()).await
    }

    /// On `servers`, the shared ones for what it leaves out.
    async fn on(test: &str, partitions: i32, servers: Servers) -> Option<Deployment> {
        let clickhouse_url = ksa_testkit::clickhouse_server(test)?;
        let server = match servers.postgres {
            Some(url) => url,
            None => postgres_server(test)?,
        };
        let brokers = match servers.brokers {
            Some(brokers) => brokers,
            None => ksa_testkit::kafka_brokers(test)?,
        };
        let database = ScratchDatabase::create(&server, test);
        let clickhouse = ScratchClickHouse { url: clickhouse_url.clone(), database: ksa_testkit::unique_database_name(test) };
        let prefix = format!("{}.", ksa_testkit::unique_database_name(test));
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", &brokers).create().expect("Kafka admin client");
        let topics: Vec<String> = ["status-events", "order-updates", "enrich-requests"].iter().map(|t| format!("{prefix}{t}")).collect();
        let new_topics: Vec<NewTopic> = topics.iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1))).collect();
        for created in admin.create_topics(&new_topics, &AdminOptions::new()).await.expect("create topics") {
            created.unwrap_or_else(|(topic, code)| panic!("cannot create topic {topic}: {code}"));
        }
        let instance = Instance::postgres(&database.url);
        let config = instance.ws.write(
            "distributed.toml",
            &format!(
                "[database]\nurl = \"{}\"\n\n[bus]\nkind = \"kafka\"\npartitions = {partitions}\n\n[bus.kafka]\nbrokers = \"{brokers}\"\n\
                 topic_prefix = \"{prefix}\"\n# tansu 0.6 (docs/distributed.md)\nrewind_when_quiet = true\n\n[facts]\nkind = \"clickhouse\"\n\n\
                 [facts.clickhouse]\nurl = \"{clickhouse_url}\"\ndatabase = \"{}\"\n",
                database.url, clickhouse.database
            ),
        );
        let instance = instance.with_env("KSA_CONFIG", &config.display().to_string());
        Some(Deployment { instance, database, clickhouse, admin, topics })
    }

    /// The processors' positions in the state database: (group, topic, partition, next offset).
    /// (How far their announcements on `order-updates` got, `{group}.published`, follows them.)
    async fn offsets(&self) -> Vec<(String, String, i64, i64)> {
        let pool = sqlx::PgPool::connect(&self.database.url).await.expect("connecting to PostgreSQL");
        let rows = sqlx::query_as(
            "SELECT consumer_group, topic, partition_no, next_offset FROM consumer_offsets \
             WHERE consumer_group NOT LIKE '%.published' ORDER BY 1, 2, 3",
        )
        .fetch_all(&pool)
        .await
        .expect("reading consumer_offsets");
        pool.close().await;
        rows
    }

    /// Records the processors have committed, over all partitions.
    async fn committed_records(&self) -> i64 {
        self.offsets().await.iter().map(|o| o.3).sum()
    }

    /// Posts `half` of a log (every webhook taken) and waits for the processors' first commit.
    async fn post_and_wait_for_a_commit(&self, half: &WebhookLog, url: &str) {
        assert_all_taken(&half.post_all(&client(), url, 4).await);
        self.wait_for_committed(1).await;
    }

    /// Waits until the processors have committed at least `records` records in all.
    async fn wait_for_committed(&self, records: i64) {
        let deadline = Instant::now() + PROCESSING_DEADLINE;
        loop {
            let committed = self.committed_records().await;
            if committed >= records {
                return;
            }
            assert!(Instant::now() < deadline, "only {committed} records committed, waiting for {records}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn facts(&self) -> ClickHouseSink {
        let config = ClickHouseConfig::new(self.clickhouse.url.clone(), self.clickhouse.database.clone());
        ClickHouseSink::connect(config).await.expect("ClickHouse").0
    }

    async fn project_id(&self) -> i64 {
        let state = PostgresState::connect(&self.database.url).await.expect("state");
        state.project_by_slug("p1").await.expect("read").expect("project").id
    }

    /// The project's facts under `FINAL`, with the project id set to 0 as in
    /// [`WebhookLog::clean_run_with_facts`].
    async fn final_facts(&self) -> (Vec<IntervalFact>, Vec<CycleFact>) {
        let (facts, project_id) = (self.facts().await, self.project_id().await);
        let mut intervals = facts.final_intervals(project_id).await.expect("intervals");
        let mut cycles = facts.final_cycles(project_id).await.expect("cycles");
        intervals.iter_mut().for_each(|i| i.project_id = 0);
        cycles.iter_mut().for_each(|c| c.project_id = 0);
        (intervals, cycles)
    }

    /// Intervals of the project in ClickHouse under `FINAL`.
    async fn final_interval_count(&self) -> u64 {
        let url = format!("{}/?database={}", self.clickhouse.url.trim_end_matches('/'), self.clickhouse.database);
        let sql = format!("SELECT count() FROM status_intervals FINAL WHERE project_id = {}", self.project_id().await);
        let text = reqwest::Client::new().post(url).body(sql).send().await.expect("ClickHouse").text().await.expect("an answer");
        text.trim().parse().unwrap_or_else(|_| panic!("ClickHouse said {text:?}"))
    }

    /// Events the processors committed to the state database (with their offsets).
    async fn committed_events(&self) -> i64 {
        let pool = sqlx::PgPool::connect(&self.database.url).await.expect("connecting to PostgreSQL");
        let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM order_status_events").fetch_one(&pool).await.expect("counting events");
        pool.close().await;
        count
    }

    /// Stops the services, then compares the digest and the facts with a clean embedded run.
    async fn assert_like_a_clean_run(&self, services: Vec<Server>, log: &WebhookLog) {
        for service in services {
            let status = service.stop();
            assert!(status.success(), "{status}");
        }
        let _ = self.admin.delete_topics(&self.topics.iter().map(String::as_str).collect::<Vec<_>>(), &AdminOptions::new()).await;
        let (clean_digest, mut clean_intervals, mut clean_cycles) = log.clean_run_with_facts().await;
        assert_eq!(self.instance.derived_digest("p1").await, clean_digest, "the derived state differs from a clean run");
        let (mut intervals, mut cycles) = self.final_facts().await;
        for list in [&mut intervals, &mut clean_intervals] {
            list.sort_by_key(|i| (i.order_id, i.entered_at, i.status_id));
        }
        for list in [&mut cycles, &mut clean_cycles] {
            list.sort_by_key(|c| (c.order_id, c.cycle_id));
        }
        assert_eq!(intervals.len(), log.event_keys().len(), "one interval per distinct event");
        assert_eq!(intervals.len(), clean_intervals.len(), "interval count against the clean run");
        assert!(intervals == clean_intervals, "the intervals under FINAL differ from a clean run's");
        assert_eq!(cycles.len(), clean_cycles.len(), "cycle count against the clean run");
        assert!(cycles == clean_cycles, "the cycles under FINAL differ from a clean run's");
    }
}

/// Posts the log in a task of its own; it answers with the replies.
fn post_in_background(log: WebhookLog, url: String) -> tokio::task::JoinHandle<Vec<common::http::Reply>> {
    tokio::spawn(async move { log.post_all(&client(), &url, 4).await })
}

/// Like [`post_in_background`], posting a webhook again while it is answered 503; the 503s go
/// to `refusals`.
fn post_until_taken_in_background(log: WebhookLog, url: String, refusals: &Refusals) -> tokio::task::JoinHandle<Vec<common::http::Reply>> {
    let refusals = refusals.clone();
    tokio::spawn(async move { log.post_all_until_taken(&client(), &url, 4, &refusals).await })
}

/// [`assert_all_taken`], showing what ingest said when it did not take everything.
fn assert_all_taken_by(replies: &[common::http::Reply], ingest: &Server) {
    if replies.iter().any(|r| r.status != 202) {
        eprintln!("ingest said:\n{}", ingest.stderr());
    }
    assert_all_taken(replies);
}

/// Kills (SIGKILL) one processor of `split` once the processors have committed some records
/// while the log is still being posted, restarts it with the same partitions, and checks the
/// end result.
async fn kill_one_processor_mid_stream(test: &str, partitions: i32, split: &[&str]) {
    let Some(deployment) = Deployment::new(test, partitions).await else { return };
    let instance = &deployment.instance;
    let log = WebhookLog::simulate(&instance.ws, "p1", 300);
    let project = instance.add_project("p1", &[]);
    let ingest = instance.start_service("ingest", &[]);
    let query = instance.start_service("query-api", &[]);
    let mut processors: Vec<Server> = split.iter().map(|p| instance.start_service("process", &["--partitions", p])).collect();

    let posting = post_in_background(log.shuffled_with_duplicates(11, 4), ingest.webhook_url(&project));
    deployment.wait_for_committed(20).await;
    assert!(!posting.is_finished(), "the log was posted before the kill: make it longer");
    let victim = processors.remove(0);
    victim.kill();
    let committed_at_kill = deployment.committed_records().await;
    processors.insert(0, instance.start_service("process", &["--partitions", split[0]]));

    assert_all_taken(&posting.await.expect("posting"));
    wait_until_processed(&client(), &query, "p1", log.expected()).await;
    assert!(committed_at_kill > 0);
    let mut services = vec![ingest, query];
    services.extend(processors);
    deployment.assert_like_a_clean_run(services, &log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_processor_mid_stream_then_restart_ends_like_a_clean_run() {
    kill_one_processor_mid_stream("faults_kill", 2, &["0,1"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processors_with_static_partitions_one_killed_and_restarted_end_like_a_clean_run() {
    kill_one_processor_mid_stream("faults_two", 4, &["0,1", "2,3"]).await;
}

/// How long ClickHouse stays unreachable in its test (issue 4: "ClickHouse stopped for 30 s
/// during a replay").
const CLICKHOUSE_OUTAGE: Duration = Duration::from_secs(30);

/// ClickHouse unreachable for the processor (a proxy in front of it switched off) for
/// [`CLICKHOUSE_OUTAGE`] during a replay: the fact writes fail, no offset moves while they do,
/// ingest (which does not need ClickHouse) takes the rest of the log meanwhile, and once
/// ClickHouse answers again the processor resumes by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_unreachable_during_a_replay_holds_offsets_and_resumes_by_itself() {
    let Some(deployment) = Deployment::new("faults_clickhouse", 2).await else { return };
    let instance = &deployment.instance;
    let target = deployment.clickhouse.url.trim_end_matches('/').rsplit("//").next().expect("host:port").to_owned();
    let proxy = Proxy::start(&target).await;
    let proxied = format!("http://127.0.0.1:{}", proxy.port);
    let log = WebhookLog::simulate(&instance.ws, "p1", 200);
    let (first_half, second_half) = log.shuffled_halves(13);
    let project = instance.add_project("p1", &[]);
    let ingest = instance.start_service("ingest", &[]);
    let query = instance.start_service("query-api", &[]);
    let processor = instance.start_service_with("process", &["--partitions", "0,1"], &[("KSA__FACTS__CLICKHOUSE__URL", &proxied)]);
    let client = client();

    deployment.post_and_wait_for_a_commit(&first_half, &ingest.webhook_url(&project)).await;

    proxy.switch_off();
    let posting = post_in_background(second_half, ingest.webhook_url(&project));
    // The processor has met the outage (and retried) once two connections were refused.
    proxy.wait_for_refused(2, "the processor never tried ClickHouse during the outage").await;
    // Facts of a write cut off by the switch may still land in ClickHouse (a replay rewrites
    // them with the same version); what must not happen is state or offsets without facts.
    let offsets = deployment.offsets().await;
    let outage_end = Instant::now() + CLICKHOUSE_OUTAGE;
    while Instant::now() < outage_end {
        let committed = deployment.committed_events().await;
        assert_eq!(deployment.offsets().await, offsets, "an offset moved while ClickHouse was unreachable");
        let in_clickhouse = deployment.final_interval_count().await;
        assert!(committed as u64 <= in_clickhouse, "{committed} events committed, only {in_clickhouse} intervals in ClickHouse");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let retries = proxy.refused();
    assert!(retries >= 3, "only {retries} attempts in the outage: no retry with back-off");
    assert_all_taken(&posting.await.expect("posting"));

    proxy.switch_on();
    wait_until_processed(&client, &query, "p1", log.expected()).await;
    let held: i64 = offsets.iter().map(|o| o.3).sum();
    let after = deployment.committed_records().await;
    assert!(after > held, "nothing was held back by the outage ({held} records committed before, {after} after)");
    assert!(processor.stderr().contains("facts were not written"), "no fact error was logged:\n{}", processor.stderr());
    deployment.assert_like_a_clean_run(vec![ingest, query, processor], &log).await;
}

/// PostgreSQL unreachable for the processor (a proxy in front of it switched off) during a
/// replay: the processor neither dies nor skips anything, and resumes by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_for_the_processor_during_a_replay_resumes_by_itself() {
    let Some(deployment) = Deployment::new("faults_postgres", 2).await else { return };
    let instance = &deployment.instance;
    let url = &deployment.database.url;
    let (start, rest) = url.split_once('@').map_or(("", url.as_str()), |(user, rest)| (user, rest));
    let (address, path) = rest.split_once('/').expect("a database URL with a path");
    let proxy = Proxy::start(address).await;
    let proxied =
        if start.is_empty() { format!("127.0.0.1:{}/{path}", proxy.port) } else { format!("{start}@127.0.0.1:{}/{path}", proxy.port) };
    let log = WebhookLog::simulate(&instance.ws, "p1", 200);
    let (first_half, second_half) = log.shuffled_halves(17);
    let project = instance.add_project("p1", &[]);
    let ingest = instance.start_service("ingest", &[]);
    let query = instance.start_service("query-api", &[]);
    let mut processor = instance.start_service_with("process", &["--partitions", "0,1"], &[("KSA__DATABASE__URL", &proxied)]);
    let client = client();

    deployment.post_and_wait_for_a_commit(&first_half, &ingest.webhook_url(&project)).await;

    proxy.switch_off();
    let posting = post_in_background(second_half, ingest.webhook_url(&project));
    proxy.wait_for_refused(2, "the processor never tried PostgreSQL during the outage").await;
    let offsets = deployment.offsets().await;
    let outage_end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < outage_end {
        assert!(!processor.has_exited(), "the processor exited while PostgreSQL was unreachable:\n{}", processor.stderr());
        assert_eq!(deployment.offsets().await, offsets, "an offset moved while PostgreSQL was unreachable");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_all_taken(&posting.await.expect("posting"));

    proxy.switch_on();
    wait_until_processed(&client, &query, "p1", log.expected()).await;
    let held: i64 = offsets.iter().map(|o| o.3).sum();
    let after = deployment.committed_records().await;
    assert!(after > held, "nothing was held back by the outage ({held} records committed before, {after} after)");
    deployment.assert_like_a_clean_run(vec![ingest, query, processor], &log).await;
}

/// How long the private PostgreSQL cluster stays stopped in its restart test: longer than the
/// state pool's 10 s acquire timeout, so that every service meets failed queries, not only slow
/// ones.
const POSTGRES_DOWN: Duration = Duration::from_secs(12);

/// PostgreSQL restarted under every service during a replay: a cluster of the test's own (the
/// project's `scripts/services` with a services folder of its own) is stopped (`down`: fast
/// shutdown, every connection closed) once part of the log was processed, stays down for
/// [`POSTGRES_DOWN`] while the rest is posted, and is started again on the same port and data.
/// No service exits; ingest may refuse webhooks (503) while it cannot read its projects and
/// every one is taken when posted again; the processor resumes by itself; query-api answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_during_a_replay_every_service_reconnects_by_itself() {
    let test = "faults_postgres_restart";
    if ksa_testkit::clickhouse_server(test).is_none() || ksa_testkit::kafka_brokers(test).is_none() {
        return;
    }
    let [port, probe_port] = free_ports();
    // The probe port is one nobody listens on: the script must start a cluster, not reuse one.
    let cluster = PrivateServices::new(&[("KSA_PG_PORT", &port.to_string()), ("KSA_PG_PROBE_PORT", &probe_port.to_string())]);
    let server = tokio::task::block_in_place(|| cluster.up_exporting("postgres", "DATABASE_URL"));
    assert!(cluster.dir().join("postgres").join("PG_VERSION").exists(), "the cluster is not in the test's services folder");
    assert!(server.contains(&format!(":{port}/")), "scripts/services found another server: {server}");
    let Some(deployment) = Deployment::on(test, 2, Servers { postgres: Some(server), ..Servers::default() }).await else { return };
    let instance = &deployment.instance;
    let log = WebhookLog::simulate(&instance.ws, "p1", 200);
    let (first_half, second_half) = log.shuffled_halves(19);
    let project = instance.add_project("p1", &[]);
    let mut ingest = instance.start_service("ingest", &[]);
    let mut query = instance.start_service("query-api", &[]);
    let mut processor = instance.start_service("process", &["--partitions", "0,1"]);
    let client = client();

    deployment.post_and_wait_for_a_commit(&first_half, &ingest.webhook_url(&project)).await;
    let before = deployment.committed_records().await;

    tokio::task::block_in_place(|| cluster.down("postgres"));
    let refusals = Refusals::default();
    let posting = post_until_taken_in_background(second_half, ingest.webhook_url(&project), &refusals);
    let restart_at = Instant::now() + POSTGRES_DOWN;
    while Instant::now() < restart_at {
        for (name, service) in [("ingest", &mut ingest), ("query-api", &mut query), ("process", &mut processor)] {
            assert!(!service.has_exited(), "{name} exited while PostgreSQL was down:\n{}", service.stderr());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::task::block_in_place(|| cluster.up("postgres"));

    assert_all_taken_by(&posting.await.expect("posting"), &ingest);
    wait_until_processed(&client, &query, "p1", log.expected()).await;
    for (name, service) in [("ingest", &mut ingest), ("query-api", &mut query), ("process", &mut processor)] {
        assert!(!service.has_exited(), "{name} exited after the restart:\n{}", service.stderr());
    }
    let after = deployment.committed_records().await;
    assert!(after > before, "nothing was processed after the restart ({before} records committed before, {after} after)");
    assert!(processor.stderr().contains("processor batch failed"), "the processor never met the restart:\n{}", processor.stderr());
    for refusal in refusals.seen() {
        refusal.assert_error(503);
    }
    deployment.assert_like_a_clean_run(vec![ingest, query, processor], &log).await;
}

/// How long every client is cut off the broker in its test.
const BROKER_CUT_OFF: Duration = Duration::from_secs(15);
/// Ingest's `bus.kafka.delivery_timeout_ms` in that test (10 s by default), so that its 503s
/// come well within the cut.
const DELIVERY_TIMEOUT_MS: &str = "3000";

/// The Kafka broker unreachable during a replay. tansu keeps its topics in memory, so a broker
/// restart would lose them; instead the test starts a broker of its own (`scripts/services`
/// with a services folder of its own) that advertises a proxy in front of it, so every client
/// connection, bootstrap or not, goes through the proxy, and switching it off cuts every
/// service off the broker. While cut off, ingest answers 503 with `Retry-After` (it cannot make
/// events durable) and no service exits; once on again, ingest takes the webhooks posted again,
/// the processor resumes by itself, and the result is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_unreachable_during_a_replay_ingest_answers_503_and_everything_resumes_by_itself() {
    let test = "faults_broker";
    if ksa_testkit::clickhouse_server(test).is_none() || postgres_server(test).is_none() {
        return;
    }
    let [broker_port] = free_ports();
    let proxy = Proxy::start(&format!("127.0.0.1:{broker_port}")).await;
    let proxied = format!("127.0.0.1:{}", proxy.port);
    let broker = PrivateServices::new(&[("KSA_KAFKA_PORT", &broker_port.to_string()), ("KSA_KAFKA_ADVERTISED", &proxied)]);
    let direct = tokio::task::block_in_place(|| broker.up_exporting("kafka", "KSA_KAFKA_BROKERS"));
    assert_eq!(direct, format!("127.0.0.1:{broker_port}"), "scripts/services found another broker");
    let Some(deployment) = Deployment::on(test, 2, Servers { brokers: Some(proxied), ..Servers::default() }).await else { return };
    let instance = &deployment.instance;
    let log = WebhookLog::simulate(&instance.ws, "p1", 200);
    let (first_half, second_half) = log.shuffled_halves(23);
    let project = instance.add_project("p1", &[]);
    let mut ingest = instance.start_service_with("ingest", &[], &[("KSA__BUS__KAFKA__DELIVERY_TIMEOUT_MS", DELIVERY_TIMEOUT_MS)]);
    let query = instance.start_service("query-api", &[]);
    let mut processor = instance.start_service("process", &["--partitions", "0,1"]);
    let client = client();

    deployment.post_and_wait_for_a_commit(&first_half, &ingest.webhook_url(&project)).await;

    proxy.switch_off();
    let refusals = Refusals::default();
    let posting = post_until_taken_in_background(second_half, ingest.webhook_url(&project), &refusals);
    let outage_end = Instant::now() + BROKER_CUT_OFF;
    while Instant::now() < outage_end {
        assert!(!ingest.has_exited(), "ingest exited while the broker was unreachable:\n{}", ingest.stderr());
        assert!(!processor.has_exited(), "the processor exited while the broker was unreachable:\n{}", processor.stderr());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let refused = refusals.seen();
    assert!(!refused.is_empty(), "ingest never answered 503 while the broker was unreachable:\n{}", ingest.stderr());
    for reply in &refused {
        reply.assert_error(503);
        assert!(reply.header("retry-after").is_some(), "a 503 without Retry-After: {reply:?}");
    }
    assert!(proxy.refused() > 0, "no client tried to reach the broker during the cut");
    assert!(!posting.is_finished(), "every webhook was taken while the broker was unreachable");

    proxy.switch_on();
    assert_all_taken_by(&posting.await.expect("posting"), &ingest);
    wait_until_processed(&client, &query, "p1", log.expected()).await;
    deployment.assert_like_a_clean_run(vec![ingest, query, processor], &log).await;
}
