//! `keycrm-analytics`: KeyCRM order-status analytics. See README.md.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ksa_app::analyzer::{AnalyzeOptions, analyze};
use ksa_app::config::{Config, LogFormat};
use ksa_schemas::Timestamp;

#[derive(Parser)]
#[command(name = "keycrm-analytics", version, about = "Time-in-status, working-time, SLA and cycle analytics for KeyCRM orders")]
struct Cli {
    /// Configuration file (TOML). Default: ./keycrm-analytics.toml when it exists.
    #[arg(long, global = true, env = "KSA_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory for embedded mode; overrides the config file and KSA__DATA_DIR.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the version.
    Version,
    /// Create or update the state database schema (SQLite file by default, or a postgres:// URL).
    Migrate {
        /// Database URL; default: the configured one, else state.db in the data dir.
        #[arg(long)]
        database: Option<String>,
    },
    /// Compute every order's timeline from an exported webhook log (JSON Lines out).
    Timeline {
        /// One KeyCRM webhook body per line, as KeyCRM posts it (one project).
        #[arg(long)]
        events: PathBuf,
        /// The project settings document (JSON). Default: UTC, 24/7, standard cycles.
        #[arg(long)]
        settings: Option<PathBuf>,
        /// `GET /order/{id}?include=products.offer` bodies, one per line, for urgency.
        #[arg(long)]
        orders: Option<PathBuf>,
        /// Measure open intervals up to this instant (RFC 3339); later events are ignored.
        /// Default: the current time.
        #[arg(long)]
        now: Option<String>,
        /// Write here instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Events kept in memory before a sorted chunk is spilled to a temporary file.
        #[arg(long, default_value_t = AnalyzeOptions::DEFAULT_CHUNK_EVENTS)]
        chunk_events: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(cli.config.as_deref(), std::env::vars())?;
    if let Some(dir) = cli.data_dir {
        config.data_dir = dir;
    }
    init_logging(&config);
    match cli.command {
        Command::Version => {
            println!("keycrm-analytics {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { database } => {
            let url = database.unwrap_or_else(|| config.database_url());
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let report = runtime.block_on(ksa_migrations::migrate_url(&url)).with_context(|| format!("migrating {}", redact(&url)))?;
            let applied = match report.applied.as_slice() {
                [] => "schema up to date: 0 migration(s) applied".to_string(),
                versions => format!(
                    "{} migration(s) applied ({})",
                    versions.len(),
                    versions.iter().map(|v| format!("{v:04}")).collect::<Vec<_>>().join(", ")
                ),
            };
            println!("{}: {applied}, {} already in place", redact(&url), report.already.len());
            Ok(ExitCode::SUCCESS)
        }
        Command::Timeline { events, settings, orders, now, output, chunk_events } => {
            let now = match now {
                Some(text) => Timestamp::parse(&text)
                    .with_context(|| format!("--now: {text:?} is not an RFC 3339 time such as 2026-12-01T00:00:00Z"))?,
                None => Timestamp::from_datetime(chrono::Utc::now()),
            };
            let options = AnalyzeOptions { events, settings, orders, output, now, chunk_events, progress: std::io::stderr().is_terminal() };
            let summary = analyze(&options, &mut std::io::stderr())?;
            Ok(if summary.rejected_lines > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal: escape codes would litter log files.
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    let _ = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// A database URL without its password, given as `user:password@` or as a `password=`
/// parameter, for messages.
fn redact(url: &str) -> String {
    let (base, query) = url.split_at(url.find('?').unwrap_or(url.len()));
    let mut redacted = match (base.find("://"), base.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &base[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &base[..scheme + 3], &base[at..]),
                None => base.to_string(),
            }
        }
        _ => base.to_string(),
    };
    if let Some(parameters) = query.strip_prefix('?') {
        let parameters: Vec<String> = parameters
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_string(),
            })
            .collect();
        redacted = format!("{redacted}?{}", parameters.join("&"));
    }
    redacted
}
