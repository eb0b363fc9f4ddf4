//! The enricher's wiring and subcommands: `project api`, `statuses sync|export`, `backfill`,
//! `enrich retry|status`, and its configuration.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use ksa_bus::Bus;
use ksa_enricher::backfill::{ScanOptions, ScanProgress, backfill};
use ksa_enricher::statuses::{ExportFormat, export_statuses, sync_statuses};
use ksa_enricher::{ApiAccessor, ClientConfig, Clients, EnricherConfig, Secret, TokenCipher, now};
use ksa_schemas::{EventSource, Timestamp};
use ksa_state::{Project, StateStore};

use crate::config::{Config, EnricherSection};

/// The name of the key file in the data dir when no key is configured.
pub const KEY_FILE: &str = "secret.key";

/// The key that encrypts API tokens: the configured one, else the data dir's key file.
pub fn cipher(config: &Config) -> anyhow::Result<TokenCipher> {
    match &config.enricher.secrets_key {
        Some(key) => TokenCipher::from_hex(key).context("enricher.secrets_key"),
        None => Ok(TokenCipher::load_or_create(&config.data_dir.join(KEY_FILE))?),
    }
}

pub fn client_config(section: &EnricherSection) -> ClientConfig {
    ClientConfig {
        default_rate: section.rate_per_minute.clamp(1, 600),
        rate_window: Duration::from_secs(60),
        burst: section.burst.max(1),
        request_timeout: Duration::from_secs(section.request_timeout_seconds.max(1)),
        max_attempts: section.call_attempts.max(1),
        circuit_threshold: section.circuit_failures.max(1),
        circuit_open_for: Duration::from_secs(section.circuit_open_seconds),
        ..ClientConfig::default()
    }
}

pub fn enricher_config(section: &EnricherSection) -> EnricherConfig {
    EnricherConfig {
        max_attempts: section.fetch_attempts.max(1),
        retry_base: Duration::from_secs(section.retry_base_seconds.max(1)),
        retry_max: Duration::from_secs(section.retry_max_seconds.max(section.retry_base_seconds.max(1))),
        status_refresh: Duration::from_secs(section.status_refresh_minutes.max(1) * 60),
        reconcile_every: (section.reconcile_minutes > 0).then(|| Duration::from_secs(section.reconcile_minutes * 60)),
        reconcile_lookback: Duration::from_secs(section.reconcile_lookback_minutes.max(1) * 60),
        ..EnricherConfig::default()
    }
}

pub fn accessor(config: &Config) -> anyhow::Result<ApiAccessor> {
    let clients = Clients::new(client_config(&config.enricher))?;
    Ok(ApiAccessor::new(Arc::new(clients), cipher(config)?))
}

async fn project<S: StateStore>(state: &S, slug: &str) -> anyhow::Result<Project> {
    state.project_by_slug(slug).await?.with_context(|| format!("no project `{slug}`; `keycrm-analytics project list` shows them"))
}

/// What `project api` changes.
pub struct ApiChange {
    pub token: Option<Secret>,
    pub base_url: Option<String>,
    pub rate_per_minute: Option<u32>,
    pub default_rate: bool,
}

/// `project api`: stores the project's API token (encrypted), base URL and rate.
pub async fn set_api<S: StateStore>(state: &S, config: &Config, slug: &str, change: ApiChange, out: &mut dyn Write) -> anyhow::Result<()> {
    use ksa_query_api::admin::projects::{KeycrmPatch, ProjectPatch, update_project};
    let project = project(state, slug).await?;
    let keycrm = KeycrmPatch {
        base_url: change.base_url,
        token: change.token.map(|t| t.expose().to_owned()),
        rate_per_minute: if change.default_rate { Some(None) } else { change.rate_per_minute.map(Some) },
    };
    let patch = ProjectPatch { keycrm: Some(keycrm), ..ProjectPatch::default() };
    update_project(state, &cipher(config)?, true, &ksa_state::admin::Actor::cli(), &project, patch).await.map_err(|e| {
        let flag = match e.field.as_deref() {
            Some("keycrm.base_url") => "--base-url",
            Some("keycrm.token") => "the API token",
            Some("keycrm.rate_per_minute") => "--rate",
            _ => "project api",
        };
        anyhow::anyhow!("{flag}: {}", e.message)
    })?;
    let access = state.api_access(project.id).await?.context("the project disappeared")?;
    writeln!(
        out,
        "project `{slug}`: API {} at {}, {} requests/min",
        if access.token_enc.is_some() { "token stored (encrypted)" } else { "token not set" },
        access.base_url,
        access.rate_per_minute.map_or_else(|| format!("{} (default)", config.enricher.rate_per_minute), |r| r.to_string())
    )?;
    Ok(())
}

/// `statuses sync`.
pub async fn statuses_sync<S: StateStore>(state: &S, config: &Config, slug: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let project = project(state, slug).await?;
    let client = accessor(config)?.client(state, project.id).await?;
    let report = sync_statuses(&client, state).await?;
    writeln!(
        out,
        "project `{slug}`: {} added, {} updated, {} no longer listed (kept, inactive)",
        report.added, report.updated, report.deactivated
    )?;
    Ok(())
}

/// `statuses export`.
pub async fn statuses_export<S: StateStore>(state: &S, slug: &str, format: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let format = match format {
        "json" => ExportFormat::Json,
        "csv" => ExportFormat::Csv,
        other => bail!("--format {other:?}: json or csv"),
    };
    let project = project(state, slug).await?;
    let statuses = state.statuses(project.id).await?;
    let groups = state.status_groups(project.id).await?;
    export_statuses(&statuses, &groups, format, out)?;
    Ok(())
}

/// What `backfill` was asked to do.
pub struct BackfillRequest {
    pub slug: String,
    pub since: Timestamp,
    pub window_days: u32,
    /// Draw a progress bar (standard error is a terminal).
    pub show_progress: bool,
}

/// `statuses rename-group`.
pub async fn rename_group<S: StateStore>(state: &S, slug: &str, group: u16, name: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    if !(1..=6).contains(&group) {
        bail!("--group {group}: KeyCRM's status groups are 1 to 6");
    }
    if name.trim().is_empty() {
        bail!("--name is empty");
    }
    let project = project(state, slug).await?;
    state.rename_status_group(project.id, group, name.trim()).await?;
    writeln!(out, "project `{slug}`: group {group} is now called {:?}", name.trim())?;
    Ok(())
}

/// `backfill`: with a progress bar whose ETA follows the project's rate limit.
/// `keycrm-analytics backfill`: on whichever bus and state the configuration opens, reporting on
/// standard output.
pub async fn backfill_command(config: &Config, request: BackfillRequest) -> anyhow::Result<()> {
    crate::apart::connect::with_bus(config, Backfill { config, request }).await
}

struct Backfill<'a> {
    config: &'a Config,
    request: BackfillRequest,
}

impl crate::apart::connect::WithBus for Backfill<'_> {
    async fn run<B: Bus, S: StateStore>(self, bus: B, state: S) -> anyhow::Result<()> {
        run_backfill(&state, &bus, self.config, self.request, &mut std::io::stdout()).await
    }
}

pub async fn run_backfill<S: StateStore, B: Bus>(
    state: &S,
    bus: &B,
    config: &Config,
    request: BackfillRequest,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let BackfillRequest { slug, since, window_days, show_progress } = request;
    let slug = slug.as_str();
    let project = project(state, slug).await?;
    let client = accessor(config)?.client(state, project.id).await?;
    let per_minute = 60.0 / client.interval().as_secs_f64().max(1e-3);
    eprintln!(
        "backfill of `{slug}`: KeyCRM allows about {per_minute:.0} requests per minute for this project, so this is slow \
         (50 orders per request); it can be stopped and resumed, the position is kept"
    );
    let options = ScanOptions {
        since,
        until: now(),
        window: Duration::from_secs(u64::from(window_days.max(1)) * 86_400),
        source: EventSource::Backfilled,
    };
    let bar = indicatif::ProgressBar::new(0);
    if show_progress {
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} % of windows, ETA {eta} · {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut progress = |p: &ScanProgress| {
        let within = if p.last_page > 0 { u64::from(p.page.min(p.last_page)) * 100 / u64::from(p.last_page) } else { 100 };
        bar.set_length(p.windows_total * 100);
        bar.set_position((p.windows_done * 100 + if p.windows_done < p.windows_total { within } else { 0 }).min(p.windows_total * 100));
        bar.set_message(format!("{} orders read, {} backfilled events", p.orders_scanned, p.events_added));
    };
    let report = backfill(&client, state, bus, &options, &mut progress).await?;
    bar.finish_and_clear();
    writeln!(
        out,
        "project `{slug}`: {} orders read{}, {} backfilled events added (history before each is unknown: marked truncated)",
        report.orders_scanned,
        if report.resumed { " (resumed)" } else { "" },
        report.events_added
    )?;
    Ok(())
}

/// `enrich retry`: dead-lettered orders are fetched again.
pub async fn retry_dead<S: StateStore>(state: &S, slug: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let project = project(state, slug).await?;
    let requeued = state.requeue_dead(project.id, now()).await?;
    writeln!(out, "project `{slug}`: {requeued} dead-lettered order(s) scheduled again; the running enricher fetches them")?;
    Ok(())
}

/// `enrich status`: the schedule's counts and the dead-letter list.
pub async fn status<S: StateStore>(state: &S, slug: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let project = project(state, slug).await?;
    let counts = state.job_counts(project.id).await?;
    writeln!(out, "project `{slug}`: {} pending, {} fetched, {} dead-lettered", counts.pending, counts.done, counts.dead)?;
    for job in state.dead_jobs(project.id).await? {
        writeln!(out, "  order {}: {} attempt(s): {}", job.order_id, job.attempts, job.last_error.unwrap_or_default())?;
    }
    Ok(())
}
