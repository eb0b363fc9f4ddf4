//! The replay benchmark: a generated KeyCRM log of ≥ 1M webhooks (150,000 orders) through the
//! processor over SQLite or PostgreSQL, or through webhook ingest over HTTP. Prints throughput,
//! latency percentiles, peak memory and where the CPU went.
//!
//! replay --mode processor-sqlite|processor-postgres|http|distributed [--orders 150000] [--seed 7]
//!        [--data-dir DIR] [--database-url URL] [--partitions 1 on SQLite, 4 on PostgreSQL] [--batch-records 50000]
//!        [--threads 2] [--phase all|throughput|paced|backlog|live] [--rate EVENTS_PER_S] [--paced-deliveries N]
//!        [--tick-ms 5] [--analyze-every SECONDS]
//!        [--concurrency 64] [--server-threads 2] [--client-threads 2] [--with-processor] [--floor] [--url URL] [--seconds N]
//!        [--app target/release/keycrm-analytics] [--brokers HOST:PORT] [--clickhouse-url URL] [--processes 1] [--sample-ms 200] [--linger-ms 1000]
//!        [--settings FILE] [--urgent-items]
//!
//! Processor modes: (a) the whole log is appended to the outbox first (timed separately), then
//! the processor runs until its offset reaches the end; (b) on a fresh database, the log is
//! appended at a fixed rate (70 % of (a)'s throughput unless `--rate`) while the processor runs,
//! and each event's `commit − received_at` is measured. PostgreSQL mode needs `DATABASE_URL`
//! (a server URL); `--analyze-every` runs `ANALYZE` on the run's database meanwhile, for a
//! server whose autovacuum is off (as the test server's is). Each run creates its own database and drops it afterwards (kept when
//! `KSA_REPLAY_KEEP` is set).
//!
//! `--mode http --url URL` posts to a webhook URL of a server started elsewhere (the burst
//! benchmark, `benches/burst/run.py`, starts `keycrm-analytics run` and points it here), and
//! `--seconds N` stops posting after N seconds.
//!
//! `--mode http --floor` serves, instead of ingest, a route that only reads each body and answers
//! 202 as ingest does: what any webhook endpoint on warp pays per request, with the same clients.
//!
//! `--settings FILE` stores the project's settings before the log is replayed, and
//! `--urgent-items` stores fetched items for the generator's urgent orders (one in ten) with
//! the line the example settings' urgency rule matches, so the processor measures them on the
//! urgent grid. With `KSA_REPLAY_KEEP` the throughput phase's database is kept, and `run`
//! serves it as it is (the dashboard benchmark, `dashboard`, reads it so).
//!
//! Distributed mode (`distributed.rs`): `keycrm-analytics ingest` and `process` as processes of
//! their own on Kafka (`KSA_KAFKA_BROKERS`), PostgreSQL (`DATABASE_URL`) and ClickHouse
//! (`KSA_CLICKHOUSE_URL`), as `eval "$(scripts/services up)"` exports them. Phase `backlog`
//! posts the whole log with no processor running, then times the processors working it off;
//! phase `live` posts with the processors running and samples the consumer lag; `all` runs both.
//! `--analyze-every` applies here too.

mod client;
mod databases;
mod distributed;
mod http;
mod measure;
mod pipeline;
mod records;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ksa_benches::traffic::TrafficSpec;
use ksa_bus::{Bus, OutboxConfig};
use ksa_processor::ProcessorConfig;
use ksa_state::StateStore;

use crate::databases::Stores;
use crate::distributed::{DistributedPhase, DistributedSettings, LagSample, PhaseResult};
use crate::http::HttpSettings;
use crate::measure::{Latencies, rss_kib};
use crate::pipeline::{Paced, PipelineSettings, Throughput};
use crate::records::Replay;

pub type Fallible<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const USAGE: &str = "usage: replay --mode processor-sqlite|processor-postgres|http|distributed [--orders 150000] [--seed 7] \
[--data-dir DIR] [--database-url URL] [--partitions 1 on SQLite, 4 on PostgreSQL] [--batch-records 50000] [--threads 2] \
[--phase all|throughput|paced|backlog|live] [--rate EVENTS_PER_S] [--paced-deliveries N] [--tick-ms 5] \
[--analyze-every SECONDS] [--concurrency 64] \
[--server-threads 2] [--client-threads 2] [--with-processor] [--url URL] [--seconds N] \
[--app target/release/keycrm-analytics] [--brokers HOST:PORT] [--clickhouse-url URL] [--processes 1] [--sample-ms 200] [--linger-ms 1000] \
[--settings FILE] [--urgent-items]";

/// Targets on the reference machine (2 vCPU).
const SQLITE_TARGET: f64 = 50_000.0;
const POSTGRES_TARGET: f64 = 30_000.0;
const HTTP_TARGET: f64 = 10_000.0;
const HTTP_P99_TARGET_MS: f64 = 20.0;
/// HTTP ingest → Kafka → processor → PostgreSQL + ClickHouse, everything on the one machine.
const DISTRIBUTED_TARGET: f64 = 30_000.0;
/// The processors' linger in distributed mode, as `config/distributed.example.toml` sets it.
const DISTRIBUTED_LINGER_MS: u64 = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    ProcessorSqlite,
    ProcessorPostgres,
    Http,
    Distributed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    All,
    Throughput,
    Paced,
    /// Distributed: post everything, then process the backlog.
    Backlog,
    /// Distributed: post while the processors run.
    Live,
}

struct Options {
    mode: Mode,
    spec: TrafficSpec,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    /// As `bus.partitions`: unset means the app's default for the database.
    partitions: Option<u32>,
    batch_records: usize,
    threads: usize,
    phase: Phase,
    rate: Option<f64>,
    paced_deliveries: Option<usize>,
    analyze_every: Option<Duration>,
    tick: Duration,
    concurrency: usize,
    server_threads: usize,
    client_threads: usize,
    with_processor: bool,
    floor: bool,
    app: Option<PathBuf>,
    brokers: Option<String>,
    clickhouse_url: Option<String>,
    processes: u32,
    sample_every: Duration,
    /// Distributed: the processors' `processor.linger_ms`.
    linger: Duration,
    /// The project's settings document, stored before the replay.
    settings: Option<PathBuf>,
    /// Store items for the generator's urgent orders before the replay.
    urgent_items: bool,
    /// HTTP mode: post to this webhook URL instead of a server of the benchmark's own.
    url: Option<String>,
    /// HTTP mode: stop posting after this many seconds.
    seconds: Option<u64>,
}

impl Options {
    fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut options = Options {
            mode: Mode::ProcessorSqlite,
            spec: TrafficSpec { orders: 150_000, ..TrafficSpec::default() },
            data_dir: None,
            database_url: std::env::var("DATABASE_URL").ok(),
            partitions: None,
            batch_records: ProcessorConfig::default().batch_records,
            threads: 2,
            phase: Phase::All,
            rate: None,
            paced_deliveries: None,
            analyze_every: None,
            tick: Duration::from_millis(5),
            concurrency: 64,
            server_threads: 2,
            client_threads: 2,
            with_processor: false,
            floor: false,
            app: None,
            brokers: std::env::var("KSA_KAFKA_BROKERS").ok(),
            clickhouse_url: std::env::var("KSA_CLICKHOUSE_URL").ok(),
            processes: 1,
            sample_every: Duration::from_millis(200),
            linger: Duration::from_millis(DISTRIBUTED_LINGER_MS),
            settings: None,
            urgent_items: false,
            url: None,
            seconds: None,
        };
        let mut mode = None;
        let mut args = args.peekable();
        while let Some(flag) = args.next() {
            if flag == "--with-processor" {
                options.with_processor = true;
                continue;
            }
            if flag == "--floor" {
                options.floor = true;
                continue;
            }
            if flag == "--urgent-items" {
                options.urgent_items = true;
                continue;
            }
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let bad = |_| format!("cannot use {flag} {value}");
            match flag.as_str() {
                "--mode" => {
                    mode = Some(match value.as_str() {
                        "processor-sqlite" => Mode::ProcessorSqlite,
                        "processor-postgres" => Mode::ProcessorPostgres,
                        "http" => Mode::Http,
                        "distributed" => Mode::Distributed,
                        _ => return Err(format!("unknown mode `{value}`")),
                    })
                }
                "--orders" => options.spec.orders = value.parse().map_err(bad)?,
                "--seed" => options.spec.seed = value.parse().map_err(bad)?,
                "--data-dir" => options.data_dir = Some(value.into()),
                "--database-url" => options.database_url = Some(value),
                "--partitions" => options.partitions = Some(value.parse().map_err(bad)?),
                "--batch-records" => options.batch_records = value.parse().map_err(bad)?,
                "--threads" => options.threads = value.parse().map_err(bad)?,
                "--phase" => {
                    options.phase = match value.as_str() {
                        "all" => Phase::All,
                        "throughput" => Phase::Throughput,
                        "paced" => Phase::Paced,
                        "backlog" => Phase::Backlog,
                        "live" => Phase::Live,
                        _ => return Err(format!("unknown phase `{value}`")),
                    }
                }
                "--rate" => options.rate = Some(value.parse().map_err(|_| format!("cannot use {flag} {value}"))?),
                "--paced-deliveries" => options.paced_deliveries = Some(value.parse().map_err(bad)?),
                "--analyze-every" => options.analyze_every = Some(Duration::from_secs(value.parse().map_err(bad)?)),
                "--tick-ms" => options.tick = Duration::from_millis(value.parse().map_err(bad)?),
                "--concurrency" => options.concurrency = value.parse().map_err(bad)?,
                "--server-threads" => options.server_threads = value.parse().map_err(bad)?,
                "--client-threads" => options.client_threads = value.parse().map_err(bad)?,
                "--app" => options.app = Some(value.into()),
                "--brokers" => options.brokers = Some(value),
                "--clickhouse-url" => options.clickhouse_url = Some(value),
                "--processes" => options.processes = value.parse().map_err(bad)?,
                "--linger-ms" => options.linger = Duration::from_millis(value.parse().map_err(bad)?),
                "--settings" => options.settings = Some(value.into()),
                "--sample-ms" => options.sample_every = Duration::from_millis(value.parse().map_err(bad)?),
                "--url" => options.url = Some(value),
                "--seconds" => options.seconds = Some(value.parse().map_err(bad)?),
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        options.mode = mode.ok_or("--mode is required")?;
        if (options.url.is_some() || options.seconds.is_some()) && options.mode != Mode::Http {
            return Err("--url and --seconds belong to --mode http".into());
        }
        if options.url.is_some() && (options.floor || options.with_processor) {
            return Err("--url posts to a server elsewhere; --floor and --with-processor describe the benchmark's own".into());
        }
        if options.floor && (options.mode != Mode::Http || options.with_processor) {
            return Err("--floor belongs to --mode http, without --with-processor".into());
        }
        if options.phase == Phase::Paced && options.rate.is_none() {
            return Err("--phase paced needs --rate (the paced rate is otherwise 70 % of the throughput phase's)".into());
        }
        if matches!(options.mode, Mode::ProcessorPostgres | Mode::Distributed) && options.database_url.is_none() {
            return Err(format!("{} needs DATABASE_URL or --database-url (a PostgreSQL server URL)", mode_name(options.mode)));
        }
        let distributed_phase = matches!(options.phase, Phase::Backlog | Phase::Live);
        if options.mode == Mode::Distributed {
            if matches!(options.phase, Phase::Throughput | Phase::Paced) {
                return Err("distributed mode has the phases backlog, live and all".into());
            }
            if options.brokers.is_none() || options.clickhouse_url.is_none() {
                return Err("distributed mode needs KSA_KAFKA_BROKERS and KSA_CLICKHOUSE_URL (or --brokers and --clickhouse-url): \
                     eval \"$(scripts/services up)\""
                    .into());
            }
        } else if distributed_phase {
            return Err("the phases backlog and live belong to --mode distributed".into());
        }
        Ok(options)
    }

    fn partitions(&self) -> u32 {
        let bus = ksa_app::config::BusConfig { partitions: self.partitions, ..Default::default() };
        bus.partitions_for(self.mode == Mode::ProcessorPostgres)
    }

    fn outbox(&self) -> OutboxConfig {
        OutboxConfig { partitions: self.partitions(), ..OutboxConfig::default() }
    }

    fn processor(&self) -> ProcessorConfig {
        ProcessorConfig { batch_records: self.batch_records.max(1), ..ProcessorConfig::default() }
    }
}

/// The same allocator as the `keycrm-analytics` binary, so the pipeline is measured as it runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("replay: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn,sqlx=error".into()))
        .with_writer(std::io::stderr)
        .init();
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("replay: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: &Options) -> Fallible<()> {
    let started = Instant::now();
    let replay = Replay::generate(&options.spec);
    let repeats = replay.events.len() - replay.unique;
    println!(
        "replay {}: {} orders, {} deliveries ({} exact repeats, {} unique events), seed {}; generated in {:.1} s, RSS {:.0} MB",
        mode_name(options.mode),
        options.spec.orders,
        replay.events.len(),
        repeats,
        replay.unique,
        options.spec.seed,
        started.elapsed().as_secs_f64(),
        rss_kib() as f64 / 1024.0
    );
    match options.mode {
        Mode::Http => http_mode(replay, options),
        Mode::Distributed => distributed_mode(replay, options),
        Mode::ProcessorSqlite | Mode::ProcessorPostgres => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(options.threads.max(1))
                .thread_name("bench")
                .enable_all()
                .build()?;
            runtime.block_on(processor_mode(&replay, options))
        }
    }
}

async fn processor_mode(replay: &Replay, options: &Options) -> Fallible<()> {
    let settings = PipelineSettings { processor: options.processor(), append_chunk: 5000, appends_in_flight: 2, tick: options.tick };
    println!(
        "settings: {} partition(s) with one processor each, batch {} records, cache {} orders, {} runtime threads, {} cores",
        options.partitions(),
        settings.processor.batch_records,
        settings.processor.cache_orders,
        options.threads,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    match options.mode {
        Mode::ProcessorSqlite => {
            let parent = options.data_dir.as_deref();
            phases(|_| databases::sqlite(parent, options.outbox()), replay, &settings, options, SQLITE_TARGET).await
        }
        _ => {
            let url = options.database_url.as_deref().unwrap_or_default();
            phases(|label| databases::postgres(url, label, options.outbox()), replay, &settings, options, POSTGRES_TARGET).await
        }
    }
}

async fn phases<B, S, F, Fut>(open: F, replay: &Replay, settings: &PipelineSettings, options: &Options, target: f64) -> Fallible<()>
where
    B: Bus,
    S: StateStore,
    F: Fn(&'static str) -> Fut,
    Fut: std::future::Future<Output = Fallible<Stores<B, S>>>,
{
    let mut rate = options.rate;
    if options.phase != Phase::Paced {
        let stores = open("throughput").await?;
        databases::prepare(&stores, replay, options.settings.as_deref(), options.urgent_items, options.spec.seed).await?;
        let analyze = options.analyze_every.and_then(|every| stores.scratch.analyze_every(every));
        let measured = pipeline::throughput(&stores, replay, settings).await;
        analyze.inspect(|task| task.abort());
        let size = stores.scratch.size().await;
        drop((stores.bus, stores.state));
        stores.scratch.remove().await?;
        let measured = measured?;
        print_throughput(&measured, size, target);
        rate = rate.or(Some(measured.events_per_second() * 0.7));
    }
    if options.phase != Phase::Throughput {
        let rate = rate.unwrap_or(1000.0);
        eprintln!("paced: appending at {rate:.0} deliveries/s while the processor runs");
        let stores = open("paced").await?;
        databases::prepare(&stores, replay, options.settings.as_deref(), options.urgent_items, options.spec.seed).await?;
        let analyze = options.analyze_every.and_then(|every| stores.scratch.analyze_every(every));
        let measured = pipeline::paced(&stores, replay, settings, rate, options.paced_deliveries).await;
        analyze.inspect(|task| task.abort());
        drop((stores.bus, stores.state));
        stores.scratch.remove().await?;
        print_paced(&measured?);
    }
    Ok(())
}

/// Where the processors' time went: their own tasks' stages, then the commit tasks' (which run
/// beside the next batch's reading and deriving).
fn stage_times(t: &ksa_processor::StageTimes) -> String {
    let s = |micros: u64| micros as f64 / 1e6;
    format!(
        "processor task: reading {:.1} s, lingering {:.1} s, deriving {:.1} s, waiting for the commit before {:.1} s; \
         commit task: facts {:.1} s, state {:.1} s",
        s(t.reading),
        s(t.lingering),
        s(t.deriving),
        s(t.waiting),
        s(t.facts),
        s(t.committing)
    )
}

fn print_throughput(t: &Throughput, database_size: Option<String>, target: f64) {
    println!(
        "append:     {} records appended, {} duplicates, in {:.2} s = {:.0} records/s (calls of 5000, the next built while the last is written)",
        t.appended,
        t.duplicates,
        t.append_time.as_secs_f64(),
        t.append_rate()
    );
    println!("            cpu: {}", t.append_cpu);
    let s = &t.stats;
    println!(
        "throughput: {} records in {:.2} s = {:.0} events/s; {} new events stored, {} order rows written, {} batches ({:.0} records/batch)",
        s.records,
        t.process_time.as_secs_f64(),
        t.events_per_second(),
        s.new_events,
        s.orders_written,
        s.batches,
        s.records as f64 / s.batches.max(1) as f64
    );
    println!("            cpu: {}", t.cpu);
    println!("            time: {}", stage_times(&s.times));
    println!("            peak RSS during processing {:.0} MB", t.peak_rss_kib as f64 / 1024.0);
    if let Some(size) = database_size {
        println!("            database size {size}");
    }
    if t.stored_events != t.appended || s.records != t.appended {
        println!("            CHECK FAILED: {} events stored, {} records read, {} appended", t.stored_events, s.records, t.appended);
    }
    println!("target:     ≥ {target:.0} events/s: {}", verdict(t.events_per_second() >= target));
}

fn print_paced(p: &Paced) {
    println!(
        "paced:      {:.0} deliveries/s asked, {:.0}/s sent over {:.1} s; {} appended, {} duplicates; last append durable {:.2} s after it was sent, processor done {:.2} s after that",
        p.rate,
        p.achieved_rate(),
        p.pace_time.as_secs_f64(),
        p.appended,
        p.duplicates,
        p.append_tail.as_secs_f64(),
        p.drain_time.as_secs_f64()
    );
    println!("            append call→durable (one call per tick, retries included): {}", p.append_latency);
    println!("            append calls refused as overloaded (ingest would answer 503) and made again: {}", p.overloaded);
    println!("            received→committed: {}", p.latency);
    println!("            last third only:    {}", p.latency_last_third);
    println!(
        "            {} batches ({:.0} records/batch); {} records without a seen commit, {} order updates lost to lag",
        p.stats.batches,
        p.stats.records as f64 / p.stats.batches.max(1) as f64,
        p.unmatched,
        p.lagged_updates
    );
    println!("            cpu: {}", p.cpu);
    println!("            peak RSS during the paced run {:.0} MB", p.peak_rss_kib as f64 / 1024.0);
}

fn http_mode(replay: Replay, options: &Options) -> Fallible<()> {
    let settings = HttpSettings {
        data_dir: options.data_dir.clone(),
        outbox: options.outbox(),
        concurrency: options.concurrency,
        server_threads: options.server_threads,
        client_threads: options.client_threads,
        processor: options.with_processor.then(|| options.processor()),
        floor: options.floor,
        retry_pause: Duration::from_millis(10),
        url: options.url.clone(),
        limit: options.seconds.map(Duration::from_secs),
    };
    println!(
        "settings: {} connections, server runtime {} threads, client runtime {} threads, {}, {} cores",
        settings.concurrency,
        settings.server_threads,
        settings.client_threads,
        match (settings.floor, settings.processor.is_some()) {
            (true, _) => "floor: bodies read and answered 202, nothing else",
            (false, true) => "ingest, processor running",
            (false, false) => "ingest, processor off",
        },
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let r = http::run(replay, &settings)?;
    println!("http:       {}", r.posted.summary());
    println!("            request latency (2xx): {}", r.latency);
    if let Some(o) = &r.outbox {
        println!(
            "            outbox: {} transactions, {:.1} appends/transaction, {} overloaded",
            o.transactions,
            o.appends as f64 / o.transactions.max(1) as f64,
            o.overloaded
        );
    }
    if let Some(p) = &r.processor {
        println!("            processor meanwhile: {} records, {} batches", p.records, p.batches);
    }
    println!("            cpu: {}", r.cpu);
    println!("            peak RSS during posting {:.0} MB", r.peak_rss_kib as f64 / 1024.0);
    if let Some(size) = &r.database_size {
        println!("            database size {size}");
    }
    let p99_ms = r.latency.p99 as f64 / 1000.0;
    println!(
        "target:     ≥ {HTTP_TARGET:.0} webhooks/s: {}; p99 ≤ {HTTP_P99_TARGET_MS:.0} ms: {}",
        verdict(r.posted.webhooks_per_second() >= HTTP_TARGET),
        verdict(p99_ms <= HTTP_P99_TARGET_MS)
    );
    Ok(())
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::ProcessorSqlite => "processor-sqlite",
        Mode::ProcessorPostgres => "processor-postgres",
        Mode::Http => "http",
        Mode::Distributed => "distributed",
    }
}

fn distributed_mode(replay: Replay, options: &Options) -> Fallible<()> {
    let app = match &options.app {
        Some(app) => app.clone(),
        None => std::env::current_exe()?.with_file_name("keycrm-analytics"),
    };
    let settings = DistributedSettings {
        app,
        database_url: options.database_url.clone().unwrap_or_default(),
        brokers: options.brokers.clone().unwrap_or_default(),
        clickhouse_url: options.clickhouse_url.clone().unwrap_or_default(),
        partitions: options.partitions.unwrap_or(4).max(1),
        processes: options.processes.max(1),
        batch_records: options.batch_records.max(1),
        concurrency: options.concurrency,
        client_threads: options.client_threads,
        sample_every: options.sample_every,
        analyze_every: options.analyze_every,
        linger: options.linger,
    };
    println!(
        "settings: {} partitions, {} process instance(s) ({}), batch {} records, linger {} ms, {} connections, {} client threads, lag sampled every {} ms, {} cores",
        settings.partitions,
        settings.processes,
        distributed::partition_split(settings.partitions, settings.processes).join(" | "),
        settings.batch_records,
        settings.linger.as_millis(),
        settings.concurrency,
        settings.client_threads,
        settings.sample_every.as_millis(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let (unique, replay) = (replay.unique as i64, std::sync::Arc::new(replay));
    let phases: &[DistributedPhase] = match options.phase {
        Phase::Backlog => &[DistributedPhase::Backlog],
        Phase::Live => &[DistributedPhase::Live],
        _ => &[DistributedPhase::Backlog, DistributedPhase::Live],
    };
    for &phase in phases {
        let r = distributed::run(replay.clone(), &settings, phase)?;
        print_distributed(phase, &r, unique, settings.sample_every);
    }
    Ok(())
}

fn print_distributed(phase: DistributedPhase, r: &PhaseResult, unique: i64, sample_every: Duration) {
    let label = format!("{}:", phase.label());
    println!("{label:<11} ingest: {}", r.posted.summary());
    println!("            request latency (2xx): {}", Latencies::of(r.posted.latencies.clone()));
    println!("            cpu while posting: {}", r.cpu_posting);
    match r.drain_time {
        Some(drain) => println!(
            "            processors: {} records worked off in {:.2} s = {:.0} events/s (Kafka → PostgreSQL + ClickHouse)",
            r.records,
            drain.as_secs_f64(),
            r.events_per_second()
        ),
        None => {
            println!(
                "            end to end: {} records in Kafka, all committed {:.2} s after the first post = {:.0} events/s sustained",
                r.records,
                r.total_time.as_secs_f64(),
                r.events_per_second()
            );
            println!("            produced→committed (resolution {} ms): {}", sample_every.as_millis(), r.latency);
        }
    }
    if let Some(batches) = r.batches {
        println!("            {batches} batches committed ({:.0} records/batch)", r.records as f64 / batches.max(1) as f64);
    }
    if let Some(cpu) = &r.cpu_processing {
        println!("            cpu while processing: {cpu}");
    }
    let max_lag = r.lag.iter().map(LagSample::lag).max().unwrap_or(0);
    let posting_end = r.posted.elapsed.as_secs_f64();
    let lag_at_posting_end = r.lag.iter().find(|s| s.at >= posting_end).map_or(0, LagSample::lag);
    println!(
        "            consumer lag: max {max_lag} records{}; {} samples",
        if r.drain_time.is_none() { format!(", {lag_at_posting_end} when posting ended") } else { String::new() },
        r.lag.len()
    );
    println!("            lag over time (s: records):{}", lag_series(&r.lag, 10));
    if r.stored_events != unique || r.final_intervals != unique {
        println!(
            "            CHECK FAILED: {} events in PostgreSQL, {} intervals in ClickHouse (FINAL), {unique} distinct events posted",
            r.stored_events, r.final_intervals
        );
    } else {
        println!("            check: {unique} distinct events in PostgreSQL and as intervals in ClickHouse (FINAL)");
    }
    println!("target:     ≥ {DISTRIBUTED_TARGET:.0} events/s: {}", verdict(r.events_per_second() >= DISTRIBUTED_TARGET));
}

/// The lag every `step` seconds, e.g. ` 0: 0, 10: 51234, …`.
fn lag_series(samples: &[LagSample], step: u64) -> String {
    let mut out = String::new();
    let mut next = 0.0;
    for sample in samples {
        if sample.at >= next {
            out.push_str(&format!(" {:.0}: {}", sample.at, sample.lag()));
            next += step as f64;
        }
    }
    if let Some(last) = samples.last() {
        out.push_str(&format!(" | end {:.1}: {}", last.at, last.lag()));
    }
    out
}
