//! The replay benchmark: a generated KeyCRM log of ≥ 1M webhooks (150,000 orders) through the
//! processor over SQLite or PostgreSQL, or through webhook ingest over HTTP. Prints throughput,
//! latency percentiles, peak memory and where the CPU went.
//!
//! replay --mode processor-sqlite|processor-postgres|http [--orders 150000] [--seed 7]
//!        [--data-dir DIR] [--database-url URL] [--partitions 1 on SQLite, 4 on PostgreSQL] [--batch-records 50000]
//!        [--threads 2] [--phase all|throughput|paced] [--rate EVENTS_PER_S] [--paced-deliveries N]
//!        [--tick-ms 5] [--analyze-every SECONDS]
//!        [--concurrency 64] [--server-threads 2] [--client-threads 2] [--with-processor]
//!
//! Processor modes: (a) the whole log is appended to the outbox first (timed separately), then
//! the processor runs until its offset reaches the end; (b) on a fresh database, the log is
//! appended at a fixed rate (70 % of (a)'s throughput unless `--rate`) while the processor runs,
//! and each event's `commit − received_at` is measured. PostgreSQL mode needs `DATABASE_URL`
//! (a server URL); `--analyze-every` runs `ANALYZE` on the run's database meanwhile, for a
//! server whose autovacuum is off (as the test server's is). Each run creates its own database and drops it afterwards (kept when
//! `KSA_REPLAY_KEEP` is set).

mod databases;
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
use crate::http::HttpSettings;
use crate::measure::rss_kib;
use crate::pipeline::{Paced, PipelineSettings, Throughput};
use crate::records::Replay;

pub type Fallible<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const USAGE: &str = "usage: replay --mode processor-sqlite|processor-postgres|http [--orders 150000] [--seed 7] \
[--data-dir DIR] [--database-url URL] [--partitions 1 on SQLite, 4 on PostgreSQL] [--batch-records 50000] [--threads 2] \
[--phase all|throughput|paced] [--rate EVENTS_PER_S] [--paced-deliveries N] [--tick-ms 5] \
[--analyze-every SECONDS] [--concurrency 64] \
[--server-threads 2] [--client-threads 2] [--with-processor]";

/// Targets on the reference machine (2 vCPU).
const SQLITE_TARGET: f64 = 50_000.0;
const POSTGRES_TARGET: f64 = 30_000.0;
const HTTP_TARGET: f64 = 10_000.0;
const HTTP_P99_TARGET_MS: f64 = 20.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    ProcessorSqlite,
    ProcessorPostgres,
    Http,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    All,
    Throughput,
    Paced,
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
        };
        let mut mode = None;
        let mut args = args.peekable();
        while let Some(flag) = args.next() {
            if flag == "--with-processor" {
                options.with_processor = true;
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
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        options.mode = mode.ok_or("--mode is required")?;
        if options.phase == Phase::Paced && options.rate.is_none() {
            return Err("--phase paced needs --rate (the paced rate is otherwise 70 % of the throughput phase's)".into());
        }
        if options.mode == Mode::ProcessorPostgres && options.database_url.is_none() {
            return Err("processor-postgres needs DATABASE_URL or --database-url (a PostgreSQL server URL)".into());
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
        let analyze = options.analyze_every.and_then(|every| stores.scratch.analyze_every(every));
        let measured = pipeline::paced(&stores, replay, settings, rate, options.paced_deliveries).await;
        analyze.inspect(|task| task.abort());
        drop((stores.bus, stores.state));
        stores.scratch.remove().await?;
        print_paced(&measured?);
    }
    Ok(())
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
        retry_pause: Duration::from_millis(10),
    };
    println!(
        "settings: {} connections, server runtime {} threads, client runtime {} threads, processor {}, {} cores",
        settings.concurrency,
        settings.server_threads,
        settings.client_threads,
        if settings.processor.is_some() { "running" } else { "off" },
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let r = http::run(replay, &settings)?;
    println!(
        "http:       {} webhooks answered 2xx ({} accepted, {} duplicate) in {:.2} s = {:.0} webhooks/s",
        r.accepted + r.duplicates,
        r.accepted,
        r.duplicates,
        r.elapsed.as_secs_f64(),
        r.webhooks_per_second()
    );
    println!("            request latency (2xx): {}", r.latency);
    println!(
        "            {} requests, {} answered 503 (retried after 10 ms), {} failed{}",
        r.requests,
        r.overloaded,
        r.failed,
        r.first_failure.as_deref().map(|f| format!(" (first: {f})")).unwrap_or_default()
    );
    let o = &r.outbox;
    println!(
        "            outbox: {} transactions, {:.1} appends/transaction, {} overloaded",
        o.transactions,
        o.appends as f64 / o.transactions.max(1) as f64,
        o.overloaded
    );
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
        verdict(r.webhooks_per_second() >= HTTP_TARGET),
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
    }
}
