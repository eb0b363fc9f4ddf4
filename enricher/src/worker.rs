//! The enricher's long-running loop.
//!
//! 1. Reads `enrich-requests` and turns each into a row of the durable schedule
//!    (`enrich_jobs`), committing its consumer offsets after the rows are written: a request is
//!    never lost, and a repeated one changes nothing.
//! 2. Runs the jobs that are due: each project's jobs one after another (its token bucket
//!    spaces them anyway), projects side by side. A failed fetch is due again after an
//!    exponential back-off; after `max_attempts` it is dead-lettered until
//!    `keycrm-analytics enrich retry`. Since the schedule is in the state database, retries
//!    survive a restart.
//! 3. Keeps status dictionaries fresh (every `status_refresh`, and at once when a request names
//!    a status the dictionary does not know) and runs reconciliation every `reconcile_every`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use ksa_bus::Bus;
use ksa_schemas::Timestamp;
use ksa_schemas::bus::{ENRICH_REQUESTS, EnrichReason, EnrichRequest};
use ksa_schemas::derived::ConsumerOffset;
use ksa_state::enrich::{CursorName, EnrichJob};
use ksa_state::{CommitBatch, EnrichStore, StateStore};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::backfill::{ScanCursor, reconcile};
use crate::items::fetch_items;
use crate::statuses::sync_statuses;
use crate::{ApiAccessor, ApiError, EnrichError, now};

#[derive(Clone, Debug)]
pub struct EnricherConfig {
    /// The consumer group whose `enrich-requests` offsets this enricher keeps.
    pub group: String,
    /// How long an idle loop waits before looking again.
    pub poll: Duration,
    /// Requests read per partition and round at most.
    pub requests_per_round: usize,
    /// Due jobs taken per round at most.
    pub jobs_per_round: u32,
    /// Attempts before an order is dead-lettered.
    pub max_attempts: u32,
    /// Wait after the first failed attempt; doubled per attempt, capped at `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// How often each project's status dictionary is synced.
    pub status_refresh: Duration,
    /// An unknown status id triggers a sync at most this often per project.
    pub unknown_status_gap: Duration,
    /// How often reconciliation runs per project; `None` = never.
    pub reconcile_every: Option<Duration>,
    /// How far back the first reconciliation looks.
    pub reconcile_lookback: Duration,
    /// How much each pass re-reads of the previous one's span.
    pub reconcile_overlap: Duration,
}

impl Default for EnricherConfig {
    fn default() -> Self {
        EnricherConfig {
            group: "enricher".into(),
            poll: Duration::from_millis(500),
            requests_per_round: 500,
            jobs_per_round: 64,
            max_attempts: 10,
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(6 * 3600),
            status_refresh: Duration::from_secs(3600),
            unknown_status_gap: Duration::from_secs(60),
            reconcile_every: Some(Duration::from_secs(15 * 60)),
            reconcile_lookback: Duration::from_secs(2 * 3600),
            reconcile_overlap: Duration::from_secs(5 * 60),
        }
    }
}

/// Counts since start, for logs, stats and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnricherStats {
    pub requests_read: u64,
    pub items_fetched: u64,
    pub failed_attempts: u64,
    pub dead_lettered: u64,
    pub status_syncs: u64,
    pub reconciled_events: u64,
}

/// The stored record of the last dictionary sync.
#[derive(Serialize, Deserialize)]
struct StatusesCursor {
    synced_at: i64,
}

pub struct Enricher<B: Bus, S: StateStore + EnrichStore> {
    bus: B,
    state: S,
    access: ApiAccessor,
    config: EnricherConfig,
    partitions: Vec<u32>,
    offsets: HashMap<u32, i64>,
    stats: watch::Sender<EnricherStats>,
    /// Status ids known per project, loaded on first use.
    known_statuses: HashMap<i64, HashSet<i64>>,
    /// When a project's dictionary was last synced because of an unknown status.
    unknown_synced: HashMap<i64, tokio::time::Instant>,
    last_periodic: Option<tokio::time::Instant>,
}

impl<B: Bus, S: StateStore + EnrichStore> Enricher<B, S> {
    pub async fn new(bus: B, state: S, access: ApiAccessor, config: EnricherConfig) -> Result<Self, EnrichError> {
        let partitions: Vec<u32> = (0..bus.partitions(ENRICH_REQUESTS)?).collect();
        let stored = state.consumer_offsets(&config.group, ENRICH_REQUESTS).await?;
        let offsets = partitions.iter().map(|p| (*p, stored.get(p).copied().unwrap_or(1) - 1)).collect();
        let (stats, _) = watch::channel(EnricherStats::default());
        Ok(Enricher {
            bus,
            state,
            access,
            config,
            partitions,
            offsets,
            stats,
            known_statuses: HashMap::new(),
            unknown_synced: HashMap::new(),
            last_periodic: None,
        })
    }

    pub fn stats(&self) -> watch::Receiver<EnricherStats> {
        self.stats.subscribe()
    }

    /// Runs until `shutdown` turns true; a round in flight finishes first.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> EnricherStats {
        while !*shutdown.borrow() {
            let work = match self.step().await {
                Ok(work) => work,
                Err(error) => {
                    tracing::warn!(error = %error, "enricher round failed; retrying");
                    0
                }
            };
            let periodic_due = self.last_periodic.is_none_or(|at| at.elapsed() >= self.config.poll.max(Duration::from_secs(1)) * 10);
            if periodic_due {
                self.last_periodic = Some(tokio::time::Instant::now());
                self.periodic().await;
            }
            if work == 0 {
                tokio::select! {
                    _ = shutdown.changed() => {}
                    _ = tokio::time::sleep(self.config.poll) => {}
                }
            }
        }
        self.stats.borrow().clone()
    }

    /// One round: new requests into the schedule, then the due jobs. Returns the work done.
    pub async fn step(&mut self) -> Result<usize, EnrichError> {
        let read = self.consume_requests().await?;
        let ran = self.run_due_jobs().await?;
        Ok(read + ran)
    }

    /// Reads new `enrich-requests` into the schedule and commits the offsets.
    pub async fn consume_requests(&mut self) -> Result<usize, EnrichError> {
        let mut read = 0;
        let mut unknown: BTreeMap<i64, HashSet<i64>> = BTreeMap::new();
        let mut next_offsets = Vec::new();
        for partition in self.partitions.clone() {
            let after = self.offsets[&partition];
            let records = self.bus.read(ENRICH_REQUESTS, partition, after, self.config.requests_per_round, Duration::ZERO).await?;
            let Some(last) = records.last().map(|r| r.offset) else { continue };
            for record in &records {
                let request = match serde_json::from_slice::<EnrichRequest>(&record.payload) {
                    Ok(request) => request,
                    Err(error) => {
                        tracing::error!(partition, offset = record.offset, error = %error, "unreadable enrich-requests record skipped");
                        continue;
                    }
                };
                let (reason, refetch) = match request.reason {
                    EnrichReason::MissingItems => ("missing_items", false),
                    EnrichReason::GroupReached => ("group_reached", true),
                    EnrichReason::Manual => ("manual", true),
                };
                self.state.schedule_fetch(request.project_id, request.order_id, reason, now(), refetch).await?;
                if let Some(status_id) = request.status_id
                    && !self.status_known(request.project_id, status_id).await?
                {
                    unknown.entry(request.project_id).or_default().insert(status_id);
                }
            }
            read += records.len();
            next_offsets.push((partition, last));
        }
        if !next_offsets.is_empty() {
            let offsets = next_offsets
                .iter()
                .map(|(partition, last)| ConsumerOffset {
                    group: self.config.group.clone(),
                    topic: ENRICH_REQUESTS.into(),
                    partition: *partition,
                    next_offset: last + 1,
                })
                .collect();
            self.state.commit(CommitBatch { offsets, ..CommitBatch::default() }).await?;
            for (partition, last) in next_offsets {
                self.offsets.insert(partition, last);
            }
            self.stats.send_modify(|s| s.requests_read += read as u64);
        }
        for (project_id, statuses) in unknown {
            self.refresh_for_unknown(project_id, &statuses).await;
        }
        Ok(read)
    }

    async fn status_known(&mut self, project_id: i64, status_id: i64) -> Result<bool, EnrichError> {
        if !self.known_statuses.contains_key(&project_id) {
            let ids = self.state.statuses(project_id).await?.into_iter().map(|s| s.status_id).collect();
            self.known_statuses.insert(project_id, ids);
        }
        Ok(self.known_statuses.get(&project_id).is_some_and(|ids| ids.contains(&status_id)))
    }

    /// Syncs the project's dictionary because requests named statuses it does not know, unless
    /// that was done less than `unknown_status_gap` ago.
    async fn refresh_for_unknown(&mut self, project_id: i64, statuses: &HashSet<i64>) {
        if self.unknown_synced.get(&project_id).is_some_and(|at| at.elapsed() < self.config.unknown_status_gap) {
            return;
        }
        self.unknown_synced.insert(project_id, tokio::time::Instant::now());
        tracing::info!(project_id, unknown = ?statuses, "status ids missing from the dictionary; syncing it now");
        if self.sync_project_statuses(project_id).await {
            let still: Vec<i64> = statuses.iter().copied().filter(|id| !self.known_statuses[&project_id].contains(id)).collect();
            if !still.is_empty() {
                tracing::warn!(project_id, statuses = ?still, "KeyCRM does not list these status ids either");
            }
        }
    }

    /// Syncs one project's statuses; true when it worked.
    pub async fn sync_project_statuses(&mut self, project_id: i64) -> bool {
        let outcome = async {
            let client = self.access.client(&self.state, project_id).await?;
            sync_statuses(&client, &self.state).await
        }
        .await;
        match outcome {
            Ok(_) => {
                let cursor = serde_json::to_string(&StatusesCursor { synced_at: now().as_micros() }).unwrap_or_default();
                if let Err(error) = self.state.put_cursor(project_id, CursorName::Statuses, Some(&cursor)).await {
                    tracing::warn!(project_id, error = %error, "could not record the status sync");
                }
                match self.state.statuses(project_id).await {
                    Ok(statuses) => {
                        self.known_statuses.insert(project_id, statuses.into_iter().map(|s| s.status_id).collect());
                    }
                    Err(_) => {
                        self.known_statuses.remove(&project_id);
                    }
                }
                self.stats.send_modify(|s| s.status_syncs += 1);
                true
            }
            Err(error) => {
                tracing::warn!(project_id, error = %error, "status dictionary sync failed");
                false
            }
        }
    }

    /// Runs the jobs due now; returns how many ran.
    pub async fn run_due_jobs(&mut self) -> Result<usize, EnrichError> {
        let due = self.state.due_jobs(now(), self.config.jobs_per_round).await?;
        if due.is_empty() {
            return Ok(0);
        }
        let count = due.len();
        let mut by_project: BTreeMap<i64, Vec<EnrichJob>> = BTreeMap::new();
        for job in due {
            by_project.entry(job.project_id).or_default().push(job);
        }
        let mut tasks = JoinSet::new();
        for (project_id, jobs) in by_project {
            let client = match self.access.client(&self.state, project_id).await {
                Ok(client) => Some(client),
                Err(error) => {
                    for job in &jobs {
                        self.fail(job, &error).await?;
                    }
                    None
                }
            };
            let Some(client) = client else { continue };
            let (state, bus) = (self.state.clone(), self.bus.clone());
            tasks.spawn(async move {
                let mut outcomes = Vec::with_capacity(jobs.len());
                for job in jobs {
                    let outcome = fetch_items(&client, &state, &bus, job.order_id).await;
                    outcomes.push((job, outcome.map(|_| ())));
                }
                outcomes
            });
        }
        while let Some(joined) = tasks.join_next().await {
            let Ok(outcomes) = joined else { continue };
            for (job, outcome) in outcomes {
                match outcome {
                    Ok(()) => self.stats.send_modify(|s| s.items_fetched += 1),
                    Err(error) => self.fail(&job, &error).await?,
                }
            }
        }
        Ok(count)
    }

    /// Records a failed attempt: due again after a back-off, or dead-lettered.
    async fn fail(&self, job: &EnrichJob, error: &EnrichError) -> Result<(), EnrichError> {
        let attempts = job.attempts + 1;
        let permanent = matches!(error, EnrichError::Api(api) if api.is_permanent());
        let text = error.to_string();
        if permanent || attempts >= self.config.max_attempts {
            self.state.record_failure(job.project_id, job.order_id, &text, None).await?;
            self.stats.send_modify(|s| {
                s.failed_attempts += 1;
                s.dead_lettered += 1;
            });
            tracing::warn!(project_id = job.project_id, order_id = job.order_id, attempts, error = %text, "order items dead-lettered");
        } else {
            let delay = match error {
                EnrichError::Api(ApiError::CircuitOpen { retry_in, .. }) => (*retry_in).max(self.retry_delay(attempts)),
                _ => self.retry_delay(attempts),
            };
            let retry_at = Timestamp::from_micros(now().as_micros() + delay.as_micros() as i64);
            self.state.record_failure(job.project_id, job.order_id, &text, Some(retry_at)).await?;
            self.stats.send_modify(|s| s.failed_attempts += 1);
            tracing::info!(project_id = job.project_id, order_id = job.order_id, attempts, retry_in_s = delay.as_secs(), error = %text, "order items fetch failed; will retry");
        }
        Ok(())
    }

    /// `retry_base * 2^(attempts-1)`, capped, plus up to 10 % jitter so retries spread out.
    fn retry_delay(&self, attempts: u32) -> Duration {
        let delay = self.config.retry_base.saturating_mul(1u32 << attempts.saturating_sub(1).min(20)).min(self.config.retry_max);
        let jitter = delay.as_millis() as u64 / 10;
        delay + Duration::from_millis(if jitter > 0 { fastrand::u64(0..=jitter) } else { 0 })
    }

    /// Status dictionaries and reconciliation, for every project with an API token; and the
    /// clients' counters in the log.
    pub async fn periodic(&mut self) {
        for (project, stats) in self.access.clients().stats() {
            tracing::info!(
                project = %project,
                requests = stats.requests,
                throttled = stats.throttled,
                server_errors = stats.server_errors,
                timeouts = stats.timeouts,
                retries = stats.retries,
                failed_calls = stats.failed_calls,
                circuit_opened = stats.circuit_opened,
                circuit_open = stats.circuit_open,
                "KeyCRM client counters"
            );
        }
        let projects = match self.state.projects().await {
            Ok(projects) => projects,
            Err(error) => {
                tracing::warn!(error = %error, "could not list projects for the enricher's periodic work");
                return;
            }
        };
        for project in projects.into_iter().filter(|p| p.is_active) {
            match self.state.api_access(project.id).await {
                Ok(Some(access)) if access.token_enc.is_some() => {}
                _ => continue,
            }
            if self.due(project.id, CursorName::Statuses, self.config.status_refresh).await {
                self.sync_project_statuses(project.id).await;
            } else {
                // Webhooks whose order needed no items still bring status ids: look at the
                // orders changed lately for ones the dictionary lacks.
                let since = Timestamp::from_micros(now().as_micros() - 3_600_000_000);
                match self.state.unknown_recent_statuses(project.id, since).await {
                    Ok(unknown) if !unknown.is_empty() => self.refresh_for_unknown(project.id, &unknown.into_iter().collect()).await,
                    Ok(_) => {}
                    Err(error) => tracing::warn!(project = %project.slug, error = %error, "could not look for unknown status ids"),
                }
            }
            if let Some(every) = self.config.reconcile_every
                && self.due(project.id, CursorName::Reconcile, every).await
            {
                let outcome = async {
                    let client = self.access.client(&self.state, project.id).await?;
                    reconcile(&client, &self.state, &self.bus, self.config.reconcile_lookback, self.config.reconcile_overlap).await
                }
                .await;
                match outcome {
                    Ok(report) => self.stats.send_modify(|s| s.reconciled_events += report.events_added),
                    Err(error) => tracing::warn!(project = %project.slug, error = %error, "reconciliation failed"),
                }
            }
        }
    }

    /// Whether the pass named `name` last finished more than `every` ago (or never).
    async fn due(&self, project_id: i64, name: CursorName, every: Duration) -> bool {
        let Ok(stored) = self.state.cursor(project_id, name).await else { return false };
        let last = stored.and_then(|text| match name {
            CursorName::Statuses => serde_json::from_str::<StatusesCursor>(&text).ok().map(|c| c.synced_at),
            _ => serde_json::from_str::<ScanCursor>(&text).ok().filter(|c| c.done).map(|c| c.until),
        });
        last.is_none_or(|at| now().as_micros() - at >= every.as_micros() as i64)
    }
}
