//! `keycrm-analytics`: KeyCRM order-status analytics. See README.md.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ksa_app::analyzer::{AnalyzeOptions, analyze};
use ksa_app::apart::Service;
use ksa_app::config::{Config, LogFormat};
use ksa_app::projects::{self, AddProject};
use ksa_app::redact::redact;
use ksa_app::stores::open_state;
use ksa_app::with_state;
use ksa_app::{archive, enrich};
use ksa_enricher::Secret;
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
    /// Run ingest, processor and the read API in one process (embedded defaults: SQLite in the
    /// data dir, listening on 127.0.0.1:8080).
    Run {
        /// Address to listen on; overrides server.listen.
        #[arg(long)]
        listen: Option<String>,
        /// Serve the web UI from this folder (server.ui_dir), not the built-in copy.
        #[arg(long)]
        ui_dir: Option<PathBuf>,
    },
    /// Run only the webhook receiver: webhooks in, events onto the bus (bus.kind), on
    /// server.listen. One of the three services of `run`, run apart (docs/distributed.md).
    Ingest {
        #[arg(long)]
        listen: Option<String>,
    },
    /// Run only processors: events off the bus, facts (facts.kind) then state. Instances side
    /// by side need disjoint --partitions. GET /healthz on server.listen reports progress.
    Process {
        /// Partitions of status-events to process, e.g. `0,1`; default: all.
        #[arg(long, value_delimiter = ',', env = "KSA_PROCESS_PARTITIONS")]
        partitions: Option<Vec<u32>>,
        #[arg(long)]
        listen: Option<String>,
    },
    /// Run only the read API (REST and the OpenAPI document) on server.listen.
    QueryApi {
        #[arg(long)]
        listen: Option<String>,
        /// Serve the web UI from this folder (server.ui_dir), not the built-in copy.
        #[arg(long)]
        ui_dir: Option<PathBuf>,
    },
    /// Exit 0 when URL answers 2xx (for container health checks, e.g. http://127.0.0.1:8080/healthz).
    Probe { url: String },
    /// Manage projects (CRM accounts).
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Generate realistic, seeded KeyCRM traffic: write it as JSON Lines or post it to a server.
    Simulate {
        /// A project: SLUG (to write files) or SLUG=SECRET (to post). Repeatable.
        #[arg(long = "project", required = true)]
        projects: Vec<String>,
        /// Orders per project.
        #[arg(long, default_value_t = 1000)]
        orders: u64,
        /// Orders are created over this many days.
        #[arg(long, default_value_t = 120)]
        days: u32,
        /// The same seed gives the same traffic.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// First day of the traffic (UTC); the default crosses the March DST change.
        #[arg(long, default_value = "2026-01-01T00:00:00Z")]
        start: String,
        /// Write DIR/{slug}.jsonl.
        #[arg(long, conflicts_with = "post")]
        out: Option<PathBuf>,
        /// Post to this server, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        post: Option<String>,
        /// Requests in flight when posting.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Status dictionaries synced from KeyCRM (`GET /order/status`).
    #[command(subcommand)]
    Statuses(StatusesCommand),
    /// Read orders' current statuses from KeyCRM's API into the event log, marked `backfilled`
    /// (KeyCRM keeps no status history). Slow by design: it keeps to the API rate limit. Resumes
    /// where an interrupted run stopped.
    Backfill {
        #[arg(long)]
        project: String,
        /// First day (UTC), e.g. 2026-01-01, or an RFC 3339 time.
        #[arg(long)]
        since: String,
        /// Days per `filter[updated_between]` window.
        #[arg(long, default_value_t = 1)]
        window_days: u32,
    },
    /// Run only the enricher (order items and urgency, status dictionaries, reconciliation) on
    /// the bus, one per deployment; GET /healthz on server.listen reports its counts. With a
    /// subcommand: its schedule of order item fetches.
    #[command(args_conflicts_with_subcommands = true)]
    Enrich {
        #[command(subcommand)]
        command: Option<EnrichCommand>,
        #[arg(long)]
        listen: Option<String>,
    },
    /// Users who log in to the web UI and the API (docs/access.md).
    #[command(subcommand)]
    User(UserCommand),
    /// Personal API tokens for scripts.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Who changed what: settings, users, tokens, projects, secrets, overrides (newest first).
    Audit {
        /// Only this project's changes.
        #[arg(long)]
        project: Option<String>,
        /// Rows at most.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Print the version.
    Version,
    /// Move event payloads older than retention.payload_days to Parquet files by project and
    /// month (and delete audit rows older than retention.audit_days); `run` does it nightly.
    Archive {
        /// Say what would move, and move nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Put one archived month of a project's payloads back into the state database.
    Restore {
        #[arg(long)]
        project: String,
        /// The month, YYYY-MM.
        #[arg(long)]
        month: String,
    },
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

#[derive(Subcommand)]
enum StatusesCommand {
    /// Page KeyCRM's statuses into the project's dictionary; statuses no longer listed are
    /// kept, marked inactive.
    Sync {
        #[arg(long)]
        project: String,
    },
    /// Write the project's status groups and statuses.
    Export {
        #[arg(long)]
        project: String,
        /// `json` or `csv`.
        #[arg(long, default_value = "json")]
        format: String,
        /// Write here instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Rename one of the six status groups for a project (ids 1–6 are KeyCRM's).
    RenameGroup {
        #[arg(long)]
        project: String,
        #[arg(long)]
        group: u16,
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum EnrichCommand {
    /// Schedule the project's dead-lettered orders for another fetch.
    Retry {
        #[arg(long)]
        project: String,
    },
    /// Pending, fetched and dead-lettered orders, with why each dead one failed.
    Status {
        #[arg(long)]
        project: String,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user. Without --password-stdin a random password is generated and printed once.
    Add {
        #[arg(long)]
        login: String,
        /// `owner` (everything), or `admin` / `viewer` of the --projects.
        #[arg(long)]
        role: String,
        /// Projects (slugs) the user gets the role in, e.g. `shop,factory`.
        #[arg(long, value_delimiter = ',')]
        projects: Vec<String>,
        #[arg(long)]
        email: Option<String>,
        /// Read the password from standard input (first line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users, their roles and projects.
    List,
    /// Set a user's password (read from standard input); their sessions end.
    Passwd {
        #[arg(long)]
        login: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Disable a user: their sessions and tokens stop working at once.
    Disable {
        #[arg(long)]
        login: String,
    },
    /// Enable a disabled user.
    Enable {
        #[arg(long)]
        login: String,
    },
    /// Give a user a role in projects.
    Grant {
        #[arg(long)]
        login: String,
        #[arg(long, value_delimiter = ',', required = true)]
        projects: Vec<String>,
        /// `admin` or `viewer`.
        #[arg(long, default_value = "viewer")]
        role: String,
    },
    /// Take projects away from a user.
    Revoke {
        #[arg(long)]
        login: String,
        #[arg(long, value_delimiter = ',', required = true)]
        projects: Vec<String>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a personal API token for a user and print it (shown only once).
    Create {
        #[arg(long)]
        login: String,
        /// What the token is for, e.g. `nightly export`.
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum ProjectCommand {
    /// Create a project and print its webhook URL with its secret (shown only once).
    Add {
        #[arg(long)]
        slug: String,
        #[arg(long)]
        name: String,
        /// IANA time zone of the account's calendars.
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// Accept webhooks only from this address or CIDR (repeatable).
        #[arg(long)]
        allow: Vec<String>,
    },
    /// List projects and their webhook URLs (without secrets).
    List,
    /// Store a new settings document (docs/settings.md) for a project.
    Settings {
        #[arg(long)]
        slug: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Set how the enricher reaches the project's KeyCRM API: token (stored encrypted), base
    /// URL, requests per minute.
    Api {
        #[arg(long)]
        slug: String,
        /// Read the API token from standard input (first line).
        #[arg(long, conflicts_with = "token_env")]
        token_stdin: bool,
        /// Read the API token from this environment variable.
        #[arg(long)]
        token_env: Option<String>,
        /// Default: https://openapi.keycrm.app/v1
        #[arg(long)]
        base_url: Option<String>,
        /// Requests per minute for this project (KeyCRM allows about 60; some accounts 20).
        #[arg(long, conflicts_with = "default_rate")]
        rate: Option<u32>,
        /// Go back to the configured enricher.rate_per_minute.
        #[arg(long)]
        default_rate: bool,
    },
}

/// glibc's allocator spends a sixth of the processor's time in its arena locks and free lists
/// when SQLite's worker threads and the runtime share it (BENCHMARKS.md); mimalloc does not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        Command::Run { listen, ui_dir } => {
            if ui_dir.is_some() {
                config.server.ui_dir = ui_dir;
            }
            let listen = listen.unwrap_or_else(|| config.server.listen.clone());
            std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(async {
                let (stop, shutdown) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    wait_for_signal().await;
                    tracing::info!("stopping: finishing the batch in flight");
                    let _ = stop.send(true);
                });
                ksa_app::serve::run(&config, &listen, shutdown, |addr| eprintln!("keycrm-analytics listening on http://{addr}")).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ingest { listen } => {
            run_apart(&config, Service::Ingest { listen: listen.unwrap_or_else(|| config.server.listen.clone()) })
        }
        Command::Process { partitions, listen } => {
            run_apart(&config, Service::Process { listen: listen.unwrap_or_else(|| config.server.listen.clone()), partitions })
        }
        Command::QueryApi { listen, ui_dir } => {
            if ui_dir.is_some() {
                config.server.ui_dir = ui_dir;
            }
            run_apart(&config, Service::QueryApi { listen: listen.unwrap_or_else(|| config.server.listen.clone()) })
        }
        Command::Probe { url } => ksa_app::apart::probe(&url),
        Command::Project(command) => {
            std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let base_url = config.server.public_url(&config.server.listen);
            let mut out = std::io::stdout();
            runtime.block_on(async {
                let state = open_state(&config).await?;
                with_state!(state, state => match command {
                    ProjectCommand::Add { slug, name, timezone, allow } => {
                        projects::add(&state, AddProject { slug, name, timezone, allow }, &base_url, &mut out).await
                    }
                    ProjectCommand::List => projects::list(&state, &base_url, &mut out).await,
                    ProjectCommand::Settings { slug, file } => projects::put_settings(&state, &slug, &file, &mut out).await,
                    ProjectCommand::Api { slug, token_stdin, token_env, base_url, rate, default_rate } => {
                        let token = read_token(token_stdin, token_env.as_deref())?;
                        let change = enrich::ApiChange { token, base_url, rate_per_minute: rate, default_rate };
                        enrich::set_api(&state, &config, &slug, change, &mut out).await
                    }
                })
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate { projects, orders, days, seed, start, out, post, concurrency } => {
            use ksa_app::simulate::{SimulateOptions, Target, simulate};
            let start = Timestamp::parse(&start).with_context(|| format!("--start: {start:?} is not an RFC 3339 time"))?;
            let target = match (out, post) {
                (Some(dir), None) => Target::Files(dir),
                (None, Some(base_url)) => Target::Post { base_url, concurrency },
                _ => anyhow::bail!("give --out DIR or --post URL"),
            };
            let projects = projects
                .into_iter()
                .map(|p| match p.split_once('=') {
                    Some((slug, secret)) => (slug.to_string(), Some(secret.to_string())),
                    None => (p, None),
                })
                .collect();
            let options = SimulateOptions { projects, orders, days, seed, start, target, progress: std::io::stderr().is_terminal() };
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(simulate(options, &mut std::io::stdout()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Statuses(command) => {
            std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(async {
                let state = open_state(&config).await?;
                with_state!(state, state => match command {
                    StatusesCommand::Sync { project } => enrich::statuses_sync(&state, &config, &project, &mut std::io::stdout()).await,
                    StatusesCommand::Export { project, format, output } => match output {
                        Some(path) => {
                            let mut file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
                            enrich::statuses_export(&state, &project, &format, &mut file).await
                        }
                        None => enrich::statuses_export(&state, &project, &format, &mut std::io::stdout()).await,
                    },
                    StatusesCommand::RenameGroup { project, group, name } => {
                        enrich::rename_group(&state, &project, group, &name, &mut std::io::stdout()).await
                    }
                })
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Backfill { project, since, window_days } => {
            let since = parse_day(&since)?;
            std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let progress = std::io::stderr().is_terminal();
            runtime.block_on(async {
                let request = enrich::BackfillRequest { slug: project, since, window_days, show_progress: progress };
                enrich::backfill_command(&config, request).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Enrich { command: None, listen } => {
            run_apart(&config, Service::Enrich { listen: listen.unwrap_or_else(|| config.server.listen.clone()) })
        }
        Command::Enrich { command: Some(command), .. } => {
            std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let state = open_state(&config).await?;
                let mut out = std::io::stdout();
                with_state!(state, state => match command {
                    EnrichCommand::Retry { project } => enrich::retry_dead(&state, &project, &mut out).await,
                    EnrichCommand::Status { project } => enrich::status(&state, &project, &mut out).await,
                })
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::User(command) => {
            use ksa_app::access::{self, AddUser, UserCommand as Change};
            let password = match &command {
                UserCommand::Add { password_stdin: true, .. } | UserCommand::Passwd { .. } => Some(access::read_password_stdin()?),
                _ => None,
            };
            with_store(&config, |config| async move {
                let state = open_state(config).await?;
                let mut out = std::io::stdout();
                with_state!(state, state => match command {
                    UserCommand::Add { login, role, projects, email, .. } => {
                        access::add_user(&state, AddUser { login, role, email, projects, password }, &mut out).await
                    }
                    UserCommand::List => access::list_users(&state, &mut out).await,
                    UserCommand::Passwd { login, .. } => {
                        access::change_user(&state, config, &login, Change::Password(password.unwrap_or_default()), &mut out).await
                    }
                    UserCommand::Disable { login } => access::change_user(&state, config, &login, Change::Active(false), &mut out).await,
                    UserCommand::Enable { login } => access::change_user(&state, config, &login, Change::Active(true), &mut out).await,
                    UserCommand::Grant { login, projects, role } => {
                        access::change_user(&state, config, &login, Change::Grant { projects, role }, &mut out).await
                    }
                    UserCommand::Revoke { login, projects } => {
                        access::change_user(&state, config, &login, Change::Revoke { projects }, &mut out).await
                    }
                })
            })
        }
        Command::Token(TokenCommand::Create { login, name }) => with_store(&config, |config| async move {
            let state = open_state(config).await?;
            with_state!(state, state => ksa_app::access::create_token(&state, &login, &name, &mut std::io::stdout()).await)
        }),
        Command::Audit { project, limit } => with_store(&config, |config| async move {
            let state = open_state(config).await?;
            with_state!(state, state => ksa_app::access::audit(&state, project.as_deref(), limit, &mut std::io::stdout()).await)
        }),
        Command::Version => {
            println!("keycrm-analytics {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Archive { dry_run } => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let now = ksa_schemas::Timestamp::from_micros(chrono::Utc::now().timestamp_micros());
            let report = runtime.block_on(async {
                let state = open_state(&config).await?;
                with_state!(state, state => archive::archive(&state, &config, now, dry_run, |month| {
                    let verb = if dry_run { "would move" } else { "moved" };
                    eprintln!(
                        "{} {}: {verb} {} payload(s); {} holds {}",
                        month.project, month.month, month.archived, month.file.display(), month.in_file
                    );
                }).await)
            })?;
            let archived: u64 = report.months.iter().map(|m| m.archived).sum();
            if dry_run {
                println!(
                    "dry run: {archived} payload(s) in {} month(s) would move to the archive; nothing was changed",
                    report.months.len()
                );
            } else {
                println!(
                    "{archived} payload(s) in {} month(s) moved to the archive; {} audit row(s) deleted",
                    report.months.len(),
                    report.audit_rows_deleted
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore { project, month } => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (restored, in_file, file) = runtime.block_on(async {
                let state = open_state(&config).await?;
                with_state!(state, state => archive::restore(&state, &config, &project, &month).await)
            })?;
            println!("{restored} payload(s) of {in_file} in {} put back (the others were in place); the file stays", file.display());
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

/// Runs a command that only needs the state database, on a small runtime.
fn with_store<'c, F, Fut>(config: &'c Config, command: F) -> anyhow::Result<ExitCode>
where
    F: FnOnce(&'c Config) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(command(config))?;
    Ok(ExitCode::SUCCESS)
}

/// `2026-01-01` (midnight UTC) or an RFC 3339 time.
fn parse_day(text: &str) -> anyhow::Result<Timestamp> {
    let full = if text.len() == 10 { format!("{text}T00:00:00Z") } else { text.to_owned() };
    Timestamp::parse(&full).with_context(|| format!("--since: {text:?} is not a date such as 2026-01-01"))
}

/// The API token from standard input or an environment variable; never from the command line,
/// where it would stay in the shell history and the process list.
fn read_token(stdin: bool, env: Option<&str>) -> anyhow::Result<Option<Secret>> {
    if stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).context("reading the API token from standard input")?;
        return Ok(Some(Secret::new(line.trim())));
    }
    match env {
        Some(name) => Ok(Some(Secret::new(std::env::var(name).with_context(|| format!("--token-env: {name} is not set"))?.trim()))),
        None => Ok(None),
    }
}

/// Runs one service of `run` on its own until SIGINT or SIGTERM.
fn run_apart(config: &Config, service: Service) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let name = service.name();
    runtime.block_on(async {
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("stopping");
            let _ = stop.send(true);
        });
        ksa_app::apart::run(config, service, shutdown, |addr| eprintln!("keycrm-analytics {name} listening on http://{addr}")).await
    })?;
    Ok(ExitCode::SUCCESS)
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal: escape codes would litter log files. Phones and
    // e-mails are masked in every line, whatever message carried them.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(ksa_app::redact::MaskedLog(std::io::stderr))
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// SIGINT or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
