//! The analytics benchmark: a year of one project's facts (1,000,000 orders by default, about
//! 6.5M interval rows plus older versions of a third of them), written as the embedded mode
//! writes them (Parquet) and as the distributed mode does (ClickHouse), then the two
//! queries timed on each engine: `stages?urgency=split&bucket=week` and `sla?bucket=month`
//! over the whole year. DuckDB (the `duckdb` package from PyPI, through
//! `benches/analytics_duckdb.py`) runs the same SQL over the same Parquet files as the anchor.
//! Every engine's answer is compared with DataFusion's: a benchmark of wrong answers is none.
//!
//! analytics [--orders 1000000] [--seed 7] [--dir DIR] [--reuse] [--runs 5]
//!           [--engines datafusion,duckdb,clickhouse,clickhouse-argmax] [--clickhouse-url URL] [--python PATH]
//!           [--partitions 2] [--compact] [--optimize]
//!
//! `--dir` keeps the Parquet files (and `--reuse` reads them again instead of generating);
//! `--compact` merges each month into one file with the newest version per key before timing,
//! `--optimize` runs `OPTIMIZE TABLE … FINAL` on ClickHouse. ClickHouse comes from
//! `--clickhouse-url` or `KSA_CLICKHOUSE_URL` (as `eval "$(scripts/services up)"` exports it);
//! its database `ksa_bench_analytics` is replaced by each run that generates.

mod argmax;
mod duckdb;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use chrono_tz::Tz;
use ksa_domain::quantile::nearest_rank;
use ksa_facts::{ClickHouseConfig, ClickHouseSink, FactSink, ParquetConfig, ParquetSink};
use ksa_query_api::analytics::params::{BucketKind, Buckets, By, Period, UrgencyFilter};
use ksa_query_api::analytics::queries::Scope;
use ksa_query_api::analytics::sql::Span;
use ksa_query_api::analytics::{AnalyticsEngine, ClickHouseEngine, DataFusionEngine, Query};
use ksa_schemas::{ProjectSettings, Timestamp};
use ksa_testkit::facts::FactGenerator;
use serde_json::Value;

type Fallible<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const USAGE: &str = "usage: analytics [--orders 1000000] [--seed 7] [--dir DIR] [--reuse] [--runs 5] \
[--engines datafusion,duckdb,clickhouse,clickhouse-argmax] [--clickhouse-url URL] [--python PATH] [--partitions 2] [--compact] [--optimize]";

const PROJECT: i64 = 1;
/// What `--engines` names: `clickhouse-argmax` is ClickHouse with `argMax` instead of `FINAL`.
const ENGINES: [&str; 4] = ["datafusion", "duckdb", "clickhouse", "clickhouse-argmax"];
const DATABASE: &str = "ksa_bench_analytics";
/// Orders generated and written per batch.
const CHUNK: i64 = 50_000;
/// The targets of the analytics issue, p95 in milliseconds, and DataFusion against DuckDB.
const DATAFUSION_TARGET_MS: f64 = 1000.0;
const CLICKHOUSE_TARGET_MS: f64 = 300.0;
const DUCKDB_RATIO_TARGET: f64 = 1.5;

struct Options {
    orders: i64,
    seed: u64,
    dir: Option<PathBuf>,
    reuse: bool,
    runs: usize,
    engines: Vec<String>,
    clickhouse_url: Option<String>,
    python: PathBuf,
    partitions: usize,
    compact: bool,
    optimize: bool,
}

impl Options {
    fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
        let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
        let mut options = Options {
            orders: 1_000_000,
            seed: 7,
            dir: None,
            reuse: false,
            runs: 5,
            engines: vec!["datafusion".into(), "duckdb".into(), "clickhouse".into()],
            clickhouse_url: std::env::var("KSA_CLICKHOUSE_URL").ok().filter(|url| !url.is_empty()),
            python: PathBuf::from(home).join(".cache/ksa-duckdb/bin/python"),
            partitions: 2,
            compact: false,
            optimize: false,
        };
        let mut args = args.peekable();
        while let Some(flag) = args.next() {
            match flag.as_str() {
                "--reuse" => options.reuse = true,
                "--compact" => options.compact = true,
                "--optimize" => options.optimize = true,
                "--help" | "-h" => return Err(String::new()),
                _ => {
                    let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
                    let bad = |_| format!("cannot use {flag} {value}");
                    match flag.as_str() {
                        "--orders" => options.orders = value.parse().map_err(bad)?,
                        "--seed" => options.seed = value.parse().map_err(bad)?,
                        "--dir" => options.dir = Some(value.into()),
                        "--runs" => options.runs = value.parse().map_err(bad)?,
                        "--engines" => options.engines = value.split(',').map(|e| e.trim().to_owned()).collect(),
                        "--clickhouse-url" => options.clickhouse_url = Some(value),
                        "--python" => options.python = value.into(),
                        "--partitions" => options.partitions = value.parse().map_err(bad)?,
                        _ => return Err(format!("unknown option {flag}")),
                    }
                }
            }
        }
        if let Some(engine) = options.engines.iter().find(|e| !ENGINES.contains(&e.as_str())) {
            return Err(format!("--engines: unknown engine {engine} ({})", ENGINES.join(", ")));
        }
        if options.reuse && options.dir.is_none() {
            return Err("--reuse needs --dir (the files to read again)".into());
        }
        if options.runs == 0 || options.orders <= 0 {
            return Err("--runs and --orders must be positive".into());
        }
        Ok(options)
    }

    fn wants(&self, engine: &str) -> bool {
        self.engines.iter().any(|e| e == engine)
    }
}

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("analytics: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("analytics: {error}");
            ExitCode::FAILURE
        }
    }
}

fn kyiv() -> Tz {
    "Europe/Kyiv".parse().expect("zone")
}

/// The year the generator spreads orders over, and the queries' period.
fn year() -> Span {
    let at = |text: &str| Timestamp::parse(text).expect("instant").as_micros();
    Span { from: at("2026-01-01T00:00:00+02:00"), to: at("2027-01-01T00:00:00+02:00") }
}

/// The two queries: name, query and period.
fn cases() -> Vec<(&'static str, Query, Period)> {
    let span = year();
    let period = |bucket: BucketKind, urgency: UrgencyFilter| Period {
        span,
        by: By::Created,
        buckets: Some((bucket, Buckets::new(bucket, span, kyiv()))),
        urgency,
        groups: Vec::new(),
        statuses: Vec::new(),
    };
    vec![
        ("stages urgency=split bucket=week", Query::Stages, period(BucketKind::Week, UrgencyFilter::Split)),
        ("sla bucket=month", Query::Sla, period(BucketKind::Month, UrgencyFilter::All)),
    ]
}

async fn run(options: Options) -> Fallible<()> {
    let temp = tempfile::tempdir()?;
    let dir = options.dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    let facts_dir = dir.join("facts");
    let clickhouse = match (&options.clickhouse_url, options.wants("clickhouse") || options.wants("clickhouse-argmax")) {
        (Some(url), true) => Some(url.clone()),
        (None, true) => return Err("ClickHouse needs --clickhouse-url or KSA_CLICKHOUSE_URL (or leave it out of --engines)".into()),
        _ => None,
    };
    let mut clickhouse_sink = None;
    if !options.reuse {
        if facts_dir.exists() {
            std::fs::remove_dir_all(&facts_dir)?;
        }
        if let Some(url) = &clickhouse {
            drop_database(url).await?;
            let (sink, _) = ClickHouseSink::connect(ClickHouseConfig::new(url.clone(), DATABASE)).await?;
            clickhouse_sink = Some(sink);
        }
        generate(&options, &facts_dir, clickhouse_sink.as_ref()).await?;
    } else if let Some(url) = &clickhouse {
        clickhouse_sink = Some(ClickHouseSink::connect(ClickHouseConfig::new(url.clone(), DATABASE)).await?.0);
    }
    let parquet = ParquetSink::open(ParquetConfig { dir: facts_dir.clone(), compact_min_files: 1_000_000 })?;
    if options.compact {
        let started = Instant::now();
        let report = parquet.compact_all().await?;
        eprintln!(
            "compacted {} months: {} files merged, {} rows read, {} kept, {:.1} s",
            report.months,
            report.files_merged,
            report.rows_read,
            report.rows_kept,
            started.elapsed().as_secs_f64()
        );
    }
    if let (true, Some(sink)) = (options.optimize, &clickhouse_sink) {
        let started = Instant::now();
        for table in ["status_intervals", "order_cycles"] {
            sink.client().query(&format!("OPTIMIZE TABLE {table} FINAL")).execute().await?;
        }
        eprintln!("ClickHouse OPTIMIZE … FINAL: {:.1} s", started.elapsed().as_secs_f64());
    }
    let (files, bytes) = parquet_files(&facts_dir)?;
    eprintln!("Parquet: {files} files, {:.1} MiB under {}", bytes as f64 / 1048576.0, facts_dir.display());

    let mut engines: Vec<Box<dyn AnalyticsEngine>> = Vec::new();
    if options.wants("datafusion") {
        engines.push(Box::new(DataFusionEngine::new(&facts_dir, options.partitions)));
    }
    if options.wants("duckdb") {
        engines.push(Box::new(duckdb::DuckDbEngine::start(&options.python, &facts_dir, options.partitions)?));
    }
    if let Some(sink) = &clickhouse_sink {
        // The server's default per-query limit (10 GB); the test services set 2 GB, which the
        // year's exact quantiles exceed.
        let client = sink.client().clone().with_setting("max_memory_usage", "10000000000");
        if options.wants("clickhouse") {
            engines.push(Box::new(ClickHouseEngine::new(client.clone())));
        }
        if options.wants("clickhouse-argmax") {
            engines.push(Box::new(argmax::ArgMaxEngine(ClickHouseEngine::new(client))));
        }
    }

    let settings = ProjectSettings { timezone: kyiv(), ..ProjectSettings::default() };
    println!("| query | engine | median ms | p95 ms | min ms | runs | target |");
    println!("|---|---|---|---|---|---|---|");
    for (name, query, period) in cases() {
        let mut reference: Option<Value> = None;
        let mut medians = Vec::new();
        for engine in &engines {
            let scope = Scope { engine: engine.as_ref(), project_id: PROJECT, settings: &settings, period: &period };
            // One untimed run: the answer to compare, and file metadata in the OS cache.
            let answer = query.run(&scope, false).await.map_err(|e| format!("{name} on {}: {e}", engine.name()))?;
            match &reference {
                None => reference = Some(answer),
                Some(expected) if *expected != answer => {
                    return Err(format!("{name}: {} answers differently from {}", engine.name(), engines[0].name()).into());
                }
                Some(_) => {}
            }
            let mut millis = Vec::new();
            for _ in 0..options.runs {
                let started = Instant::now();
                query.run(&scope, false).await.map_err(|e| format!("{name} on {}: {e}", engine.name()))?;
                millis.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            millis.sort_by(f64::total_cmp);
            let median = nearest_rank(&millis, 50).unwrap_or_default();
            let p95 = nearest_rank(&millis, 95).unwrap_or_default();
            let target = match engine.name() {
                "datafusion" => format!("p95 ≤ {DATAFUSION_TARGET_MS} ms: {}", verdict(p95 <= DATAFUSION_TARGET_MS)),
                "clickhouse" | "clickhouse-argmax" => format!("p95 ≤ {CLICKHOUSE_TARGET_MS} ms: {}", verdict(p95 <= CLICKHOUSE_TARGET_MS)),
                _ => "anchor".to_owned(),
            };
            println!("| {name} | {} | {median:.0} | {p95:.0} | {:.0} | {} | {target} |", engine.name(), millis[0], options.runs);
            medians.push((engine.name(), median));
        }
        let of = |engine: &str| medians.iter().find(|(name, _)| *name == engine).map(|(_, median)| *median);
        if let (Some(datafusion), Some(duckdb)) = (of("datafusion"), of("duckdb")) {
            let ratio = datafusion / duckdb;
            println!(
                "| {name} | DataFusion / DuckDB | {ratio:.2}× | | | | ≤ {DUCKDB_RATIO_TARGET}×: {} |",
                verdict(ratio <= DUCKDB_RATIO_TARGET)
            );
        }
    }
    if options.dir.is_some() {
        eprintln!("kept {} (rerun with --reuse to time again without generating)", facts_dir.display());
    }
    Ok(())
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "missed" }
}

/// Generates the year in chunks, each chunk's older versions written before its newest ones,
/// to Parquet and (when given) ClickHouse.
async fn generate(options: &Options, facts_dir: &Path, clickhouse: Option<&ClickHouseSink>) -> Fallible<()> {
    let parquet = ParquetSink::open(ParquetConfig { dir: facts_dir.to_path_buf(), ..ParquetConfig::default() })?;
    let mut generator = FactGenerator::new(options.seed, PROJECT, year().from, 365);
    let started = Instant::now();
    let (mut written, mut intervals, mut older_rows) = (0, 0, 0);
    while written < options.orders {
        let count = CHUNK.min(options.orders - written);
        let (newest, older) = generator.orders(count);
        intervals += newest.intervals.len();
        older_rows += older.intervals.len() + older.cycles.len();
        if let Some(sink) = clickhouse {
            sink.write(older.clone()).await?;
            sink.write(newest.clone()).await?;
        }
        parquet.write(older).await?;
        parquet.write(newest).await?;
        written += count;
        eprint!("\rgenerated {written} of {} orders ({intervals} intervals), {:.0} s", options.orders, started.elapsed().as_secs_f64());
    }
    eprintln!("\ngenerated {written} orders: {intervals} interval rows, {written} cycles, {older_rows} older versions");
    Ok(())
}

async fn drop_database(url: &str) -> Fallible<()> {
    let client = clickhouse::Client::default().with_url(url);
    client.query(&format!("DROP DATABASE IF EXISTS {DATABASE}")).execute().await?;
    Ok(())
}

/// How many Parquet files there are under `dir`, and their bytes.
fn parquet_files(dir: &Path) -> Fallible<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                pending.push(entry.path());
            } else if entry.path().extension().is_some_and(|e| e == "parquet") {
                files += 1;
                bytes += entry.metadata()?.len();
            }
        }
    }
    Ok((files, bytes))
}

// As the app binary: the engines' allocations go through the same allocator as in `run`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
