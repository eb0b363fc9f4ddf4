//! The processor: the only writer of derived data. It consumes `status-events` in micro-batches,
//! merges each affected order's new events into its known ones, recomputes the order with the
//! domain rules, and commits events, derived rows and its offsets in one transaction.

pub mod cache;
pub mod derive;
pub mod urgency;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ksa_bus::{Bus, BusError, Record};
use ksa_domain::ProjectRules;
use ksa_schemas::bus::{ENRICH_REQUESTS, OrderUpdated, STATUS_EVENTS, StatusMessage};
use ksa_schemas::derived::{ConsumerOffset, DerivedOrder, StoredEvent};
use ksa_schemas::{ProjectSettings, StatusEvent, Timestamp};
use ksa_state::{CommitBatch, StateError, StateStore};
use tokio::sync::{broadcast, watch};

use cache::OrderCache;
use derive::{derive_order, merge_events, rules_for};

#[derive(Clone, Debug)]
pub struct ProcessorConfig {
    /// The consumer group whose offsets this processor keeps.
    pub group: String,
    /// Records per micro-batch at most.
    pub batch_records: usize,
    /// How long an idle processor waits for records before looking again.
    pub idle_wait: Duration,
    /// Orders whose events are kept in memory between batches.
    pub cache_orders: usize,
    /// Consumed records older than this are deleted from the outbox.
    pub retention: Duration,
    /// How often settings revisions are checked.
    pub settings_check: Duration,
    /// Entering this status group asks the enricher to fetch the order's items again.
    pub refetch_items_on_group: Option<u16>,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        ProcessorConfig {
            group: "processor".into(),
            batch_records: 5000,
            idle_wait: Duration::from_millis(500),
            cache_orders: 200_000,
            retention: Duration::from_secs(24 * 3600),
            settings_check: Duration::from_secs(2),
            refetch_items_on_group: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// A status event as it arrived: the event, when it was received, the body.
type Arrival = (StatusEvent, Timestamp, String);

/// A project's compiled rules at one settings revision.
struct ProjectState {
    revision: i64,
    rules: Arc<ProjectRules>,
}

/// Counts since start, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessorStats {
    pub batches: u64,
    pub records: u64,
    pub new_events: u64,
    pub orders_written: u64,
    pub recomputes: u64,
}

pub struct Processor<B: Bus, S: StateStore> {
    bus: B,
    state: S,
    config: ProcessorConfig,
    partitions: Vec<u32>,
    offsets: HashMap<u32, i64>,
    projects: HashMap<i64, ProjectState>,
    cache: OrderCache,
    updates: broadcast::Sender<OrderUpdated>,
    stats: watch::Sender<ProcessorStats>,
    last_settings_check: Instant,
    last_retention: Instant,
    /// Whether every project's settings were checked against its stored rows since start.
    settings_caught_up: bool,
}

impl<B: Bus, S: StateStore> Processor<B, S> {
    /// A processor for `partitions` of `status-events` (all of them when `None`).
    pub async fn new(bus: B, state: S, config: ProcessorConfig, partitions: Option<Vec<u32>>) -> Result<Self, ProcessorError> {
        let partitions = match partitions {
            Some(p) => p,
            None => (0..bus.partitions(STATUS_EVENTS)?).collect(),
        };
        let stored = state.consumer_offsets(&config.group, STATUS_EVENTS).await?;
        let offsets = partitions.iter().map(|p| (*p, stored.get(p).copied().unwrap_or(1) - 1)).collect();
        let (updates, _) = broadcast::channel(4096);
        let (stats, _) = watch::channel(ProcessorStats::default());
        Ok(Processor {
            cache: OrderCache::new(config.cache_orders),
            bus,
            state,
            config,
            partitions,
            offsets,
            projects: HashMap::new(),
            updates,
            stats,
            last_settings_check: Instant::now(),
            last_retention: Instant::now(),
            settings_caught_up: false,
        })
    }

    /// Order updates, one per order whose derived state changed.
    pub fn updates(&self) -> broadcast::Sender<OrderUpdated> {
        self.updates.clone()
    }

    pub fn stats(&self) -> watch::Receiver<ProcessorStats> {
        self.stats.subscribe()
    }

    /// Runs until `shutdown` turns true. A batch in flight completes (or fails and is not
    /// committed) before it returns, so a stop never leaves half a batch.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<ProcessorStats, ProcessorError> {
        let mut backoff = Duration::from_millis(100);
        while !*shutdown.borrow() {
            match self.step().await {
                Ok(0) => {
                    let wait = self.config.idle_wait;
                    let partition = self.partitions.first().copied().unwrap_or(0);
                    let after = self.offsets.get(&partition).copied().unwrap_or(0);
                    tokio::select! {
                        _ = shutdown.changed() => {}
                        _ = self.bus.read(STATUS_EVENTS, partition, after, 1, wait) => {}
                    }
                }
                Ok(_) => backoff = Duration::from_millis(100),
                Err(err) => {
                    tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "processor batch failed; retrying");
                    self.cache.clear();
                    tokio::select! {
                        _ = shutdown.changed() => {}
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
            self.housekeeping().await;
        }
        Ok(self.stats.borrow().clone())
    }

    /// Reads one micro-batch from every partition and processes it; returns the records read.
    pub async fn step(&mut self) -> Result<usize, ProcessorError> {
        let mut records: Vec<Record> = Vec::new();
        let per_partition = (self.config.batch_records / self.partitions.len().max(1)).max(1);
        for partition in &self.partitions {
            let after = self.offsets[partition];
            records.extend(self.bus.read(STATUS_EVENTS, *partition, after, per_partition, Duration::ZERO).await?);
        }
        if records.is_empty() {
            return Ok(0);
        }
        let read = records.len();
        self.process(records).await?;
        Ok(read)
    }

    async fn process(&mut self, records: Vec<Record>) -> Result<(), ProcessorError> {
        let mut next_offsets: BTreeMap<u32, i64> = BTreeMap::new();
        let mut incoming: BTreeMap<(i64, i64), Vec<Arrival>> = BTreeMap::new();
        let mut items_fetched: std::collections::HashSet<(i64, i64)> = std::collections::HashSet::new();
        for record in &records {
            let next = next_offsets.entry(record.partition).or_default();
            *next = (*next).max(record.offset + 1);
            match serde_json::from_slice::<StatusMessage>(&record.payload) {
                Ok(StatusMessage::StatusChanged { project_id, event, received_at, payload }) => {
                    incoming.entry((project_id, event.order_id)).or_default().push((event, received_at, payload));
                }
                Ok(StatusMessage::ItemsFetched { project_id, order_id, .. }) => {
                    incoming.entry((project_id, order_id)).or_default();
                    items_fetched.insert((project_id, order_id));
                }
                Err(err) => {
                    tracing::error!(partition = record.partition, offset = record.offset, error = %err, "unreadable status-events record skipped");
                }
            }
        }

        // Load the events of orders the cache does not hold, one query per project.
        let mut by_project: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for (project_id, order_id) in incoming.keys() {
            if !self.cache.contains(*project_id, *order_id) {
                by_project.entry(*project_id).or_default().push(*order_id);
            }
        }
        let mut loaded: HashMap<(i64, i64), Vec<StatusEvent>> = HashMap::new();
        for (project_id, order_ids) in &by_project {
            for (order_id, events) in self.state.order_events(*project_id, order_ids).await? {
                loaded.insert((*project_id, order_id), events);
            }
        }
        for project_id in incoming.keys().map(|(p, _)| *p).collect::<std::collections::BTreeSet<_>>() {
            self.ensure_project(project_id).await?;
        }
        let mut urgencies = HashMap::new();
        for (project_id, order_ids) in incoming.keys().fold(BTreeMap::<i64, Vec<i64>>::new(), |mut m, (p, o)| {
            m.entry(*p).or_default().push(*o);
            m
        }) {
            for (order_id, u) in urgency::urgencies(&self.state, project_id, &order_ids, &self.projects[&project_id].rules).await? {
                urgencies.insert((project_id, order_id), u);
            }
        }
        let mut enrich_requests = Vec::new();

        let mut batch = CommitBatch::default();
        let mut merged: Vec<((i64, i64), Vec<StatusEvent>)> = Vec::with_capacity(incoming.len());
        for ((project_id, order_id), arrivals) in incoming {
            let mut known = match loaded.remove(&(project_id, order_id)) {
                Some(events) => events,
                None => self.cache.get(project_id, order_id).map(<[StatusEvent]>::to_vec).unwrap_or_default(),
            };
            let new_events: Vec<StatusEvent> = arrivals.iter().map(|(e, _, _)| *e).collect();
            let fresh = merge_events(&mut known, &new_events);
            if fresh.is_empty()
                && !known.is_empty()
                && self.cache.contains(project_id, order_id)
                && !items_fetched.contains(&(project_id, order_id))
            {
                continue;
            }
            let order_urgency = urgencies.get(&(project_id, order_id)).copied().unwrap_or_default();
            for event in &fresh {
                if let Some((_, received_at, payload)) = arrivals.iter().find(|(e, _, _)| e == event) {
                    batch.events.push(StoredEvent { project_id, event: *event, received_at: *received_at, payload: Some(payload.clone()) });
                }
            }
            let project = &self.projects[&project_id];
            if let Some(derived) = derive_order(project_id, &known, order_urgency, &project.rules, project.revision) {
                batch.orders.push(derived);
            }
            enrich_requests.extend(urgency::enrich_request(
                project_id,
                order_id,
                order_urgency,
                &fresh,
                self.config.refetch_items_on_group,
            ));
            merged.push(((project_id, order_id), known));
        }
        batch.offsets = next_offsets
            .iter()
            .map(|(partition, next)| ConsumerOffset {
                group: self.config.group.clone(),
                topic: STATUS_EVENTS.into(),
                partition: *partition,
                next_offset: *next,
            })
            .collect();

        let new_events = batch.events.len() as u64;
        let orders: Vec<OrderUpdated> = batch.orders.iter().map(order_updated).collect();
        self.state.commit(batch).await?;

        for (partition, next) in next_offsets {
            self.offsets.insert(partition, next - 1);
        }
        for ((project_id, order_id), events) in merged {
            self.cache.put(project_id, order_id, events);
        }
        for update in &orders {
            let _ = self.updates.send(update.clone());
        }
        // After the commit: a request lost to a crash here is made again by the order's next
        // event, and the enricher's reconciliation finds orders that never get one.
        if !enrich_requests.is_empty()
            && let Err(err) = self.bus.append(ENRICH_REQUESTS, enrich_requests).await
        {
            tracing::warn!(error = %err, "could not ask the enricher for order items");
        }
        self.stats.send_modify(|s| {
            s.batches += 1;
            s.records += records.len() as u64;
            s.new_events += new_events;
            s.orders_written += orders.len() as u64;
        });
        Ok(())
    }

    /// Loads (or reloads after a change) a project's rules.
    async fn ensure_project(&mut self, project_id: i64) -> Result<(), ProcessorError> {
        if self.projects.contains_key(&project_id) {
            return Ok(());
        }
        let (settings, revision) = self.load_settings(project_id).await?;
        let rules = Arc::new(rules_for(settings, Timestamp::from_micros(now_micros())));
        self.projects.insert(project_id, ProjectState { revision, rules });
        Ok(())
    }

    async fn load_settings(&self, project_id: i64) -> Result<(ProjectSettings, i64), ProcessorError> {
        Ok(match self.state.settings(project_id).await? {
            Some(record) => match ProjectSettings::from_json(&record.document) {
                Ok(settings) => (settings, record.revision),
                Err(err) => {
                    tracing::error!(project_id, revision = record.revision, error = %err, "stored settings are invalid; using defaults");
                    (ProjectSettings::default(), record.revision)
                }
            },
            None => (ProjectSettings::default(), 0),
        })
    }

    /// Settings changes and outbox retention, off the hot path.
    async fn housekeeping(&mut self) {
        if !self.settings_caught_up {
            match self.catch_up_settings().await {
                Ok(()) => self.settings_caught_up = true,
                Err(err) => tracing::warn!(error = %err, "could not check projects' settings at start; retrying"),
            }
        }
        if self.last_settings_check.elapsed() >= self.config.settings_check {
            self.last_settings_check = Instant::now();
            let known: Vec<i64> = self.projects.keys().copied().collect();
            for project_id in known {
                match self.state.settings(project_id).await {
                    Ok(record) => {
                        let revision = record.map_or(0, |r| r.revision);
                        if revision != self.projects[&project_id].revision {
                            self.projects.remove(&project_id);
                            if self.ensure_project(project_id).await.is_ok() {
                                self.spawn_recompute(project_id);
                            }
                        }
                    }
                    Err(err) => tracing::warn!(project_id, error = %err, "could not check settings"),
                }
            }
        }
        if self.last_retention.elapsed() >= Duration::from_secs(60) {
            self.last_retention = Instant::now();
            let before = Timestamp::from_micros(now_micros() - self.config.retention.as_micros() as i64);
            for (partition, offset) in &self.offsets {
                if let Err(err) = self.bus.truncate(STATUS_EVENTS, *partition, *offset, before).await {
                    tracing::warn!(partition, error = %err, "outbox retention failed");
                }
            }
        }
    }

    /// Loads every project's rules, so that a settings change is noticed for projects that get
    /// no webhook, and recomputes each project whose stored rows were derived with older
    /// settings: a change stored while no processor ran, or one whose recompute a crash cut
    /// short, must still reach the whole history.
    async fn catch_up_settings(&mut self) -> Result<(), ProcessorError> {
        for project in self.state.projects().await? {
            self.ensure_project(project.id).await?;
            let revision = self.projects[&project.id].revision;
            if has_rows_older_than(&self.state, project.id, revision).await? {
                tracing::info!(project_id = project.id, revision, "derived rows predate the settings; recomputing");
                self.spawn_recompute(project.id);
            }
        }
        Ok(())
    }

    /// Recomputes every order of a project with its new rules, in the background. Rows are
    /// versioned, so racing the live path never loses the newer result.
    fn spawn_recompute(&self, project_id: i64) {
        let state = self.state.clone();
        let project = &self.projects[&project_id];
        let (rules, revision) = (project.rules.clone(), project.revision);
        let stats = self.stats.clone();
        tokio::spawn(async move {
            match recompute_project(&state, project_id, &rules, revision).await {
                Ok(orders) => {
                    tracing::info!(project_id, revision, orders, "recomputed derived data for new settings");
                    stats.send_modify(|s| s.recomputes += 1);
                }
                Err(err) => tracing::error!(project_id, revision, error = %err, "recompute failed"),
            }
        });
    }
}

/// Rewrites the derived rows of every order of a project from its stored events.
pub async fn recompute_project<S: StateStore>(state: &S, project_id: i64, rules: &ProjectRules, revision: i64) -> Result<u64, StateError> {
    let mut after = 0;
    let mut written = 0;
    loop {
        let ids = state.order_ids(project_id, after, 2000).await?;
        let Some(last) = ids.last().copied() else { break };
        let events = state.order_events(project_id, &ids).await?;
        let urgencies = urgency::urgencies(state, project_id, &ids, rules).await?;
        let orders: Vec<DerivedOrder> = events
            .iter()
            .filter_map(|(order_id, evs)| {
                derive_order(project_id, evs, urgencies.get(order_id).copied().unwrap_or_default(), rules, revision)
            })
            .collect();
        written += orders.len() as u64;
        state.commit(CommitBatch { orders, ..CommitBatch::default() }).await?;
        after = last;
    }
    Ok(written)
}

/// True when some derived row of the project was computed with a settings revision below
/// `revision`.
async fn has_rows_older_than<S: StateStore>(state: &S, project_id: i64, revision: i64) -> Result<bool, StateError> {
    const PAGE: u32 = 5000;
    let mut after = None;
    loop {
        let page = state.list_orders(project_id, PAGE, after).await?;
        if page.iter().any(|order| order.settings_revision < revision) {
            return Ok(true);
        }
        match page.last() {
            Some(last) if page.len() == PAGE as usize => after = Some((last.last_changed_at, last.order_id)),
            _ => return Ok(false),
        }
    }
}

fn order_updated(order: &DerivedOrder) -> OrderUpdated {
    OrderUpdated {
        project_id: order.project_id,
        order_id: order.order_id,
        last_changed_at: order.last_changed_at,
        event_count: order.event_count,
    }
}

/// The wall clock, read only at the edge: to choose which dates to compile calendars for and
/// for retention, never for derived values.
fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}
