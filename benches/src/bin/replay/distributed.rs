//! The distributed path as users run it apart: `keycrm-analytics ingest` and `keycrm-analytics
//! process` as processes of their own on Kafka, PostgreSQL and ClickHouse (the servers of
//! scripts/services), the generated log posted over HTTP with keep-alive clients.
//!
//! Each phase gets a deployment of its own: a scratch PostgreSQL database (migrated, with the
//! replay's project), a scratch ClickHouse database, and Kafka topics under a prefix of their
//! own; all removed afterwards unless `KSA_REPLAY_KEEP` is set.
//!
//! Consumer lag is sampled every `sample_every`: the high watermark of each `status-events`
//! partition (what ingest made durable) against the position the processors committed to
//! PostgreSQL (`consumer_offsets`, written in the same transaction as the state, after the
//! facts). End-to-end latency comes from the same samples: a record counts as produced at the
//! first sample whose watermark is past it, and as committed at the first sample whose position
//! is past it; the difference has the sampling interval as its resolution.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use ksa_bus::kafka::rdkafka::ClientConfig;
use ksa_bus::kafka::rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use ksa_bus::kafka::rdkafka::client::DefaultClientContext;
use ksa_bus::kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use ksa_schemas::bus::{ENRICH_REQUESTS, ORDER_UPDATES, STATUS_EVENTS};
use ksa_state::PostgresState;
use tokio::sync::watch;

use crate::Fallible;
use crate::databases::{self, PROJECT_SECRET, PROJECT_SLUG, Scratch};
use crate::http::{self, Posted};
use crate::measure::{Latencies, MachineCpu, MachineSample};
use crate::records::Replay;

/// How long a service may take to listen, or to stop after SIGTERM.
const START_OR_STOP: Duration = Duration::from_secs(120);
/// What the services print once they listen (`keycrm-analytics ingest listening on …`).
const LISTENING: &str = " listening on http://";
/// Lag lines printed while a phase runs.
const REPORT_EVERY: Duration = Duration::from_secs(5);
/// How long the processors may commit nothing, once posting is done, before the run fails.
const STALL: Duration = Duration::from_secs(60);
/// Lines of a service's log kept to show when it fails.
const LOG_TAIL: usize = 40;

#[derive(Clone, Debug)]
pub struct DistributedSettings {
    /// The `keycrm-analytics` binary (built with the Kafka adapter, the default).
    pub app: PathBuf,
    /// A PostgreSQL server URL; each phase creates a database there.
    pub database_url: String,
    pub brokers: String,
    pub clickhouse_url: String,
    /// Partitions of each topic.
    pub partitions: u32,
    /// `process` instances; the partitions are split between them statically.
    pub processes: u32,
    pub batch_records: usize,
    /// Requests in flight (one keep-alive connection each).
    pub concurrency: usize,
    pub client_threads: usize,
    pub sample_every: Duration,
    /// `ANALYZE` on the run's PostgreSQL database this often, as autovacuum would.
    pub analyze_every: Option<Duration>,
    /// `processor.linger_ms`.
    pub linger: Duration,
}

/// What one phase measured.
pub struct PhaseResult {
    pub posted: Posted,
    /// Records in `status-events` at the end (all partitions).
    pub records: i64,
    /// From the first post until every record was committed.
    pub total_time: Duration,
    /// Backlog phase: from the processors' start until every record was committed.
    pub drain_time: Option<Duration>,
    pub lag: Vec<LagSample>,
    pub latency: Latencies,
    pub cpu_posting: MachineCpu,
    pub cpu_processing: Option<MachineCpu>,
    /// Events in `order_status_events`, intervals in ClickHouse under `FINAL`.
    pub stored_events: i64,
    pub final_intervals: i64,
    /// Batches the processors committed (from their `/healthz`).
    pub batches: Option<u64>,
}

impl PhaseResult {
    pub fn events_per_second(&self) -> f64 {
        self.records as f64 / self.drain_time.unwrap_or(self.total_time).as_secs_f64()
    }
}

/// One sample: seconds since the phase started, the watermark and the committed position of
/// each partition.
#[derive(Clone, Debug)]
pub struct LagSample {
    pub at: f64,
    pub produced: Vec<i64>,
    pub committed: Vec<i64>,
}

impl LagSample {
    /// Records produced but not committed, over all partitions.
    pub fn lag(&self) -> i64 {
        self.produced.iter().zip(&self.committed).map(|(p, c)| (p - c).max(0)).sum()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DistributedPhase {
    /// Everything posted with no processor running, then the processors work the backlog off.
    Backlog,
    /// Posting with the processors running, as in production.
    Live,
}

impl DistributedPhase {
    pub fn label(self) -> &'static str {
        match self {
            DistributedPhase::Backlog => "backlog",
            DistributedPhase::Live => "live",
        }
    }
}

pub fn run(replay: Arc<Replay>, settings: &DistributedSettings, phase: DistributedPhase) -> Fallible<PhaseResult> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.client_threads.max(1))
        .thread_name("client")
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let deployment = Deployment::create(settings, phase.label()).await?;
        let analyze = settings.analyze_every.and_then(|every| deployment.scratch.analyze_every(every));
        let measured = measure(&deployment, replay, settings, phase).await;
        analyze.inspect(|task| task.abort());
        deployment.remove().await;
        measured
    })
}

async fn measure(
    deployment: &Deployment,
    replay: Arc<Replay>,
    settings: &DistributedSettings,
    phase: DistributedPhase,
) -> Fallible<PhaseResult> {
    let ingest = Service::start(settings, deployment, "ingest", &[])?;
    let url = format!("{}/webhooks/keycrm/{PROJECT_SLUG}?token={PROJECT_SECRET}", ingest.base_url);
    let mut services = vec![ingest];
    let sampler = Sampler::connect(deployment, settings).await?;
    let processor_args: Vec<String> = partition_split(settings.partitions, settings.processes);
    let start_processors = |services: &mut Vec<Service>| -> Fallible<()> {
        for (i, partitions) in processor_args.iter().enumerate() {
            services.push(Service::start(settings, deployment, &format!("process-{i}"), &["--partitions", partitions])?);
        }
        Ok(())
    };
    if phase == DistributedPhase::Live {
        start_processors(&mut services)?;
    }
    eprintln!("{}: posting {} webhooks to {url} with {} connections", phase.label(), replay.events.len(), settings.concurrency);

    let started = Instant::now();
    let (posting_done, posting_done_rx) = watch::channel(false);
    let unique = replay.unique as i64;
    let sampling = (phase == DistributedPhase::Live).then(|| tokio::spawn(sampler.clone().run(started, posting_done_rx.clone(), unique)));
    let cpu_before = MachineSample::now(&names(&services));
    let posted = http::post_all(&url, replay, settings.concurrency, Duration::from_millis(10), None).await;
    posting_done.send_replace(true);
    let cpu_posting = MachineSample::now(&names(&services)).since(&cpu_before);
    let posted = match posted {
        Ok(posted) => posted,
        Err(error) => {
            stop_all(services);
            return Err(error);
        }
    };

    let (lag, drain_time, cpu_processing) = match sampling {
        Some(sampling) => (sampling.await??, None, None),
        None => {
            eprintln!("backlog: {} webhooks posted in {:.1} s; starting the processors", posted.requests, started.elapsed().as_secs_f64());
            start_processors(&mut services)?;
            let processing_started = Instant::now();
            let cpu_before = MachineSample::now(&names(&services));
            let lag = sampler.clone().run(processing_started, posting_done_rx, unique).await?;
            let cpu = MachineSample::now(&names(&services)).since(&cpu_before);
            (lag, Some(processing_started.elapsed()), Some(cpu))
        }
    };
    let total_time = started.elapsed();
    let batches = processor_batches(&services).await;
    stop_all(services);

    let last = lag.last().cloned().ok_or("no lag sample was taken")?;
    let latency = if phase == DistributedPhase::Live { end_to_end(&lag) } else { Latencies::default() };
    let stored_events = deployment.stored_events().await?;
    let final_intervals = deployment.final_intervals().await?;
    Ok(PhaseResult {
        posted,
        records: last.produced.iter().sum::<i64>().max(last.committed.iter().sum()),
        total_time,
        drain_time,
        lag,
        latency,
        cpu_posting,
        cpu_processing,
        stored_events,
        final_intervals,
        batches,
    })
}

/// The batches the `process` instances committed, from their `/healthz`.
async fn processor_batches(services: &[Service]) -> Option<u64> {
    let mut batches = 0;
    for service in services.iter().filter(|s| s.name.starts_with("process")) {
        let text = reqwest::get(format!("{}/healthz", service.base_url)).await.ok()?.text().await.ok()?;
        let health: serde_json::Value = serde_json::from_str(&text).ok()?;
        batches += health["batches"].as_u64()?;
    }
    Some(batches)
}

/// `partitions` split into `processes` contiguous lists, e.g. 4 into 2: `0,1` and `2,3`.
pub fn partition_split(partitions: u32, processes: u32) -> Vec<String> {
    let processes = processes.clamp(1, partitions.max(1));
    (0..processes)
        .map(|i| {
            let (from, to) = (partitions * i / processes, partitions * (i + 1) / processes);
            (from..to).map(|p| p.to_string()).collect::<Vec<_>>().join(",")
        })
        .collect()
}

fn names(services: &[Service]) -> Vec<(String, u32)> {
    services.iter().map(|s| (s.name.clone(), s.child.id())).collect()
}

fn stop_all(services: Vec<Service>) {
    for service in services {
        if let Err(error) = service.stop() {
            eprintln!("{error}");
        }
    }
}

/// Per record, from the first sample that shows it produced to the first that shows it
/// committed (microseconds).
pub fn end_to_end(samples: &[LagSample]) -> Latencies {
    let Some(first) = samples.first() else { return Latencies::default() };
    let mut weighted: Vec<(u64, u64)> = Vec::new();
    for partition in 0..first.produced.len() {
        let produced: Vec<(f64, i64)> = samples.iter().map(|s| (s.at, s.produced[partition])).collect();
        let committed: Vec<(f64, i64)> = samples.iter().map(|s| (s.at, s.committed[partition])).collect();
        weighted.extend(matched_ranges(&produced, &committed));
    }
    weighted_latencies(weighted)
}

/// Given `(time, position)` series of where production and commits stood, the latency of each
/// range of offsets with the number of records in it.
fn matched_ranges(produced: &[(f64, i64)], committed: &[(f64, i64)]) -> Vec<(u64, u64)> {
    let segments = |series: &[(f64, i64)]| -> Vec<(i64, i64, f64)> {
        let mut low = series.first().map_or(0, |s| s.1);
        let mut out = Vec::new();
        for &(at, high) in series {
            if high > low {
                out.push((low, high, at));
                low = high;
            }
        }
        out
    };
    let (made, done) = (segments(produced), segments(committed));
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < made.len() && j < done.len() {
        let (from, to) = (made[i].0.max(done[j].0), made[i].1.min(done[j].1));
        if to > from {
            out.push((((done[j].2 - made[i].2).max(0.0) * 1e6) as u64, (to - from) as u64));
        }
        if made[i].1 <= done[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Percentiles of latencies given with their counts.
fn weighted_latencies(mut weighted: Vec<(u64, u64)>) -> Latencies {
    weighted.sort_unstable();
    let total: u64 = weighted.iter().map(|w| w.1).sum();
    if total == 0 {
        return Latencies::default();
    }
    let at = |p: f64| {
        let rank = ((total as f64 * p).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for &(latency, count) in &weighted {
            seen += count;
            if seen >= rank {
                return latency;
            }
        }
        weighted.last().map_or(0, |w| w.0)
    };
    Latencies { count: total as usize, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: weighted.last().map_or(0, |w| w.0) }
}

/// A scratch deployment: PostgreSQL and ClickHouse databases, topics, a config file.
struct Deployment {
    database_url: String,
    scratch: Scratch,
    clickhouse_url: String,
    clickhouse_database: String,
    admin: AdminClient<DefaultClientContext>,
    brokers: String,
    topics: Vec<String>,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Deployment {
    async fn create(settings: &DistributedSettings, label: &str) -> Fallible<Deployment> {
        let (database_url, scratch) = databases::postgres_database(&settings.database_url, label).await?;
        let state = PostgresState::connect(&database_url).await?;
        databases::create_project(&state).await?;
        state.pool().close().await;
        let name = databases::scratch_name(label);
        let prefix = format!("{name}.");
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", &settings.brokers).create()?;
        let topics: Vec<String> = [STATUS_EVENTS, ORDER_UPDATES, ENRICH_REQUESTS].iter().map(|t| format!("{prefix}{t}")).collect();
        let partitions = settings.partitions as i32;
        let new_topics: Vec<NewTopic> = topics.iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1))).collect();
        for created in admin.create_topics(&new_topics, &AdminOptions::new()).await? {
            created.map_err(|(topic, code)| format!("cannot create topic {topic}: {code}"))?;
        }
        let dir = tempfile::Builder::new().prefix("ksa-replay-").tempdir()?;
        let config = dir.path().join("distributed.toml");
        std::fs::write(
            &config,
            format!(
                "[database]\nurl = \"{database_url}\"\n\n[bus]\nkind = \"kafka\"\npartitions = {}\n\n[bus.kafka]\nbrokers = \"{}\"\n\
                 topic_prefix = \"{prefix}\"\n# tansu 0.6 (docs/distributed.md)\nrewind_when_quiet = true\n\n\
                 [processor]\nbatch_records = {}\nlinger_ms = {}\n\n[facts]\nkind = \"clickhouse\"\n\n\
                 [facts.clickhouse]\nurl = \"{}\"\ndatabase = \"{name}\"\n\n[log]\nlevel = \"warn\"\n",
                settings.partitions,
                settings.brokers,
                settings.batch_records,
                settings.linger.as_millis(),
                settings.clickhouse_url
            ),
        )?;
        Ok(Deployment {
            database_url,
            scratch,
            clickhouse_url: settings.clickhouse_url.trim_end_matches('/').to_owned(),
            clickhouse_database: name,
            admin,
            brokers: settings.brokers.clone(),
            topics,
            dir,
            config,
        })
    }

    async fn clickhouse(&self, sql: String) -> Fallible<String> {
        let response = reqwest::Client::new().post(format!("{}/", self.clickhouse_url)).body(sql).send().await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            return Err(format!("ClickHouse answered {status}: {}", text.trim()).into());
        }
        Ok(text)
    }

    async fn stored_events(&self) -> Fallible<i64> {
        let pool = sqlx::PgPool::connect(&self.database_url).await?;
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM order_status_events").fetch_one(&pool).await?;
        pool.close().await;
        Ok(count)
    }

    async fn final_intervals(&self) -> Fallible<i64> {
        let text = self.clickhouse(format!("SELECT count() FROM {}.status_intervals FINAL", self.clickhouse_database)).await?;
        Ok(text.trim().parse()?)
    }

    async fn remove(self) {
        if std::env::var_os("KSA_REPLAY_KEEP").is_some() {
            eprintln!("kept topics {:?} and ClickHouse database {}", self.topics, self.clickhouse_database);
        } else {
            let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
            if let Err(error) = self.admin.delete_topics(&topics, &AdminOptions::new()).await {
                eprintln!("cannot delete the topics {topics:?}: {error}");
            }
            if let Err(error) = self.clickhouse(format!("DROP DATABASE IF EXISTS {}", self.clickhouse_database)).await {
                eprintln!("cannot drop ClickHouse database {}: {error}", self.clickhouse_database);
            }
        }
        if let Err(error) = self.scratch.remove().await {
            eprintln!("cannot remove the PostgreSQL database: {error}");
        }
    }
}

/// One service (`ingest`, `process`) as a child process, its log drained by a thread.
struct Service {
    name: String,
    child: Child,
    base_url: String,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Service {
    fn start(settings: &DistributedSettings, deployment: &Deployment, name: &str, extra: &[&str]) -> Fallible<Service> {
        let subcommand = name.split('-').next().unwrap_or(name);
        let mut child = Command::new(&settings.app)
            .arg("--data-dir")
            .arg(deployment.dir.path().join("data"))
            .args([subcommand, "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("KSA_CONFIG", &deployment.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {} (build it with `cargo build --release -p ksa-app`): {e}", settings.app.display()))?;
        let log = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_TAIL)));
        let (listening, address) = mpsc::channel();
        let pipe = child.stderr.take().ok_or("stderr is not piped")?;
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.split(LISTENING).nth(1) {
                    let _ = listening.send(format!("http://{}", addr.trim()));
                }
                let mut lines = lines.lock().unwrap_or_else(|e| e.into_inner());
                if lines.len() == LOG_TAIL {
                    lines.pop_front();
                }
                lines.push_back(line);
            }
        });
        match address.recv_timeout(START_OR_STOP) {
            Ok(base_url) => Ok(Service { name: name.to_owned(), child, base_url, log }),
            Err(_) => {
                let _ = child.kill();
                let status = child.wait()?;
                let service = Service { name: name.to_owned(), child, base_url: String::new(), log };
                Err(format!("{name} did not start listening ({status}):\n{}", service.tail()).into())
            }
        }
    }

    fn tail(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// SIGTERM, then waits for the exit (SIGKILL after [`START_OR_STOP`]).
    fn stop(mut self) -> Fallible<()> {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + START_OR_STOP;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if status.success() {
                    return Ok(());
                }
                return Err(format!("{} exited with {status}:\n{}", self.name, self.tail()).into());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return Err(format!("{} did not stop within {} s", self.name, START_OR_STOP.as_secs()).into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Reads where production and the processors stand.
#[derive(Clone)]
struct Sampler {
    consumer: Arc<BaseConsumer>,
    pool: sqlx::PgPool,
    topic: String,
    partitions: u32,
    every: Duration,
}

impl Sampler {
    async fn connect(deployment: &Deployment, settings: &DistributedSettings) -> Fallible<Sampler> {
        let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &deployment.brokers).create()?;
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&deployment.database_url).await?;
        let topic = deployment.topics.first().cloned().ok_or("no topics")?;
        Ok(Sampler { consumer: Arc::new(consumer), pool, topic, partitions: settings.partitions, every: settings.sample_every })
    }

    async fn sample(&self, started: Instant) -> Fallible<LagSample> {
        let (consumer, topic, partitions) = (Arc::clone(&self.consumer), self.topic.clone(), self.partitions);
        let produced = tokio::task::spawn_blocking(move || {
            (0..partitions as i32)
                .map(|p| consumer.fetch_watermarks(&topic, p, Duration::from_secs(10)).map(|(_, high)| high))
                .collect::<Result<Vec<i64>, _>>()
        })
        .await??;
        // Positions are kept under the topic's name in the product, without the prefix.
        let rows: Vec<(i64, i64)> = sqlx::query_as("SELECT partition_no, next_offset FROM consumer_offsets WHERE topic = $1")
            .bind(STATUS_EVENTS)
            .fetch_all(&self.pool)
            .await?;
        let mut committed = vec![0; self.partitions as usize];
        // The bus counts offsets from 1 (Kafka's plus one): the stored position past N records
        // of a partition is N + 1, its watermark N.
        for (partition, next) in rows {
            if let Some(slot) = committed.get_mut(partition as usize) {
                *slot = (*slot).max(next - 1);
            }
        }
        Ok(LagSample { at: started.elapsed().as_secs_f64(), produced, committed })
    }

    /// Samples until posting is done and every produced record is committed: every partition's
    /// position at its watermark and `events` distinct events stored (tansu's watermark can
    /// stand up to one producer batch short of the end, see docs/distributed.md).
    async fn run(self, started: Instant, mut posting_done: watch::Receiver<bool>, events: i64) -> Fallible<Vec<LagSample>> {
        let mut samples: Vec<LagSample> = Vec::with_capacity(4096);
        let mut next_report = REPORT_EVERY;
        let (mut last_committed, mut last_progress) = (-1, Instant::now());
        loop {
            let done = *posting_done.borrow_and_update();
            let sample = self.sample(started).await?;
            let caught_up = sample.committed.iter().zip(&sample.produced).all(|(c, p)| c >= p);
            if sample.at >= next_report.as_secs_f64() {
                let (records, committed): (i64, i64) = (sample.produced.iter().sum(), sample.committed.iter().sum());
                eprintln!("  t={:>6.1} s  in Kafka {records:>9}  committed {committed:>9}  lag {:>8}", sample.at, sample.lag());
                next_report += REPORT_EVERY;
            }
            let committed: i64 = sample.committed.iter().sum();
            if committed != last_committed {
                (last_committed, last_progress) = (committed, Instant::now());
            } else if done && last_progress.elapsed() > STALL {
                return Err(format!("the processors committed nothing for {} s (at {committed} records)", STALL.as_secs()).into());
            }
            samples.push(sample);
            if done && caught_up {
                let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM order_status_events").fetch_one(&self.pool).await?;
                if stored >= events {
                    return Ok(samples);
                }
            }
            tokio::time::sleep(self.every).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_split_into_contiguous_lists() {
        assert_eq!(partition_split(4, 1), ["0,1,2,3"]);
        assert_eq!(partition_split(4, 2), ["0,1", "2,3"]);
        assert_eq!(partition_split(4, 3), ["0", "1", "2,3"]);
        assert_eq!(partition_split(2, 5), ["0", "1"]);
    }

    #[test]
    fn latency_is_from_the_sample_that_shows_a_record_produced_to_the_one_that_shows_it_committed() {
        // 10 records produced by t=1, 10 more by t=2; 5 committed by t=2, 20 by t=4.
        let produced = [(0.0, 0), (1.0, 10), (2.0, 20), (4.0, 20)];
        let committed = [(0.0, 0), (1.0, 0), (2.0, 5), (4.0, 20)];
        let ranges = matched_ranges(&produced, &committed);
        assert_eq!(ranges, [(1_000_000, 5), (3_000_000, 5), (2_000_000, 10)]);
        let latencies = weighted_latencies(ranges);
        assert_eq!((latencies.count, latencies.p50, latencies.max), (20, 2_000_000, 3_000_000));
        assert_eq!(latencies.p90, 3_000_000);
    }
}
