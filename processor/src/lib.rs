//! The processor: the only writer of derived data. It consumes `status-events` in micro-batches,
//! merges each affected order's new events into its known ones, recomputes the order with the
//! domain rules, and commits events, derived rows and its offsets in one transaction.

pub mod cache;
pub mod derive;
pub mod facts;
pub mod publish;
pub mod urgency;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ksa_bus::{Bus, BusError, NewRecord, Record};
use ksa_domain::{OrderOverrides, ProjectRules};
use ksa_facts::{BoxedFactSink, FactError, FactSink};
use ksa_schemas::bus::{ENRICH_REQUESTS, LiveMessage, ORDER_UPDATES, OrderUpdated, STATUS_EVENTS, StatusMessage, project_key};
use ksa_schemas::derived::{ConsumerOffset, DerivedOrder, StoredEvent};
use ksa_schemas::facts::FactBatch;
use ksa_schemas::row::ROW_FORMAT;
use ksa_schemas::{ProjectSettings, StatusEvent, Timestamp};
use ksa_state::{CommitBatch, StateError, StateStore};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use cache::OrderCache;
use derive::{OrderInputs, derive_order, derive_order_with_facts, merge_events, rules_for};

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
    /// Idempotency keys older than this are forgotten by the outbox.
    pub key_retention: Duration,
    /// How often settings revisions are checked.
    pub settings_check: Duration,
    /// How long a short batch waits for more records, counted from its oldest record's append.
    /// Zero processes whatever has arrived at once.
    pub linger: Duration,
    /// While records keep arriving, how long after the previous batch was read the next short
    /// batch is read: under a burst, batches grow with the load instead of each paying a
    /// transaction and a fact file for a few records. Zero: only `linger` applies.
    pub burst_linger: Duration,
    /// Entering this status group asks the enricher to fetch the order's items again.
    pub refetch_items_on_group: Option<u16>,
}

/// `ProcessorConfig::burst_linger` by default, in milliseconds (BENCHMARKS.md, "A burst on
/// `run`").
pub const DEFAULT_BURST_LINGER_MS: u64 = 0;

/// A batch of at least this many records means a burst: the next one waits for `burst_linger`.
/// A trickle of webhooks (fewer in one linger) keeps the plain linger's latency.
const BURST_RECORDS: usize = 100;

impl Default for ProcessorConfig {
    fn default() -> Self {
        ProcessorConfig {
            group: "processor".into(),
            batch_records: 50_000,
            idle_wait: Duration::from_millis(500),
            cache_orders: 200_000,
            retention: Duration::from_secs(24 * 3600),
            key_retention: Duration::from_secs(7 * 86_400),
            settings_check: Duration::from_secs(2),
            linger: Duration::from_millis(50),
            burst_linger: Duration::from_millis(DEFAULT_BURST_LINGER_MS),
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
    #[error("facts were not written, so the batch was not committed: {0}")]
    Facts(#[from] FactError),
}

/// A status event as it arrived: the event, when it was received, the body.
type Arrival = (StatusEvent, Timestamp, String);

/// A derived batch, ready to commit.
struct Prepared {
    batch: CommitBatch,
    /// Asked of the enricher once the batch has committed.
    enrich_requests: Vec<NewRecord>,
    /// The batch's orders' facts, written before `batch` commits (empty without a sink).
    facts: FactBatch,
    records: u64,
    /// The last offset per partition the batch covers.
    offsets: HashMap<u32, i64>,
    /// Per partition, the first and last offsets the batch covers.
    ranges: HashMap<u32, (i64, i64)>,
    /// When the batch's oldest record reached the bus (µs).
    oldest_appended: i64,
}

/// A batch whose commit task runs.
struct InFlight {
    commit: JoinHandle<Result<(), ProcessorError>>,
    offsets: HashMap<u32, i64>,
}

/// The cache holds at least four batches' worth of orders. It drops its least recently used
/// half when full, so the orders of the batch in flight (at most one batch's worth, put last)
/// stay cached while the next batch is prepared, and are never read back from the database
/// before their commit.
fn cache_capacity(config: &ProcessorConfig) -> usize {
    config.cache_orders.max(config.batch_records.saturating_mul(4))
}

/// A project's compiled rules at one settings revision.
struct ProjectState {
    revision: i64,
    rules: Arc<ProjectRules>,
    /// Whether the project has a KeyCRM API token, so that asking the enricher can help.
    enrich: bool,
    /// People's corrections by order (few), kept current by `OverrideChanged` records.
    overrides: HashMap<i64, OrderOverrides>,
}

/// Counts since start, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessorStats {
    pub batches: u64,
    pub records: u64,
    pub new_events: u64,
    pub orders_written: u64,
    pub recomputes: u64,
    /// Where the time of the batches went, in µs: see [`StageTimes`].
    pub times: StageTimes,
}

/// Where a processor's time goes, summed over its batches (µs). The processor's own task reads,
/// lingers, derives and then waits for the previous batch's commit; the commit task writes the
/// facts, then the state. The task and the commit overlap, so when `waiting` is large the
/// commit is what bounds the throughput, and when it is near zero the deriving is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StageTimes {
    /// Reading records from the bus.
    pub reading: u64,
    /// Waiting for a short batch's linger.
    pub lingering: u64,
    /// Decoding the records, loading orders and deriving them.
    pub deriving: u64,
    /// Waiting for the previous batch's commit to end.
    pub waiting: u64,
    /// In the commit task: writing the facts.
    pub facts: u64,
    /// In the commit task: committing the state.
    pub committing: u64,
}

impl StageTimes {
    /// The sum of two processors' times.
    pub fn plus(&self, other: &StageTimes) -> StageTimes {
        StageTimes {
            reading: self.reading + other.reading,
            lingering: self.lingering + other.lingering,
            deriving: self.deriving + other.deriving,
            waiting: self.waiting + other.waiting,
            facts: self.facts + other.facts,
            committing: self.committing + other.committing,
        }
    }
}

fn micros_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

pub struct Processor<B: Bus, S: StateStore> {
    bus: B,
    state: S,
    config: ProcessorConfig,
    partitions: Vec<u32>,
    /// Where reading goes on: the last offset read per partition.
    offsets: HashMap<u32, i64>,
    /// The last offset per partition whose batch has committed.
    committed: HashMap<u32, i64>,
    /// The batch being committed while the next one is prepared.
    in_flight: Option<InFlight>,
    projects: HashMap<i64, ProjectState>,
    cache: OrderCache,
    updates: broadcast::Sender<OrderUpdated>,
    stats: watch::Sender<ProcessorStats>,
    last_settings_check: Instant,
    last_retention: Instant,
    last_lag: Instant,
    last_key_forgetting: Option<Instant>,
    /// When the last batch was read, if it held at least [`BURST_RECORDS`] records.
    last_read: Option<Instant>,
    /// Whether every project's settings were checked against its stored rows since start.
    settings_caught_up: bool,
    /// Where facts go before each commit; none: state only.
    facts: Option<BoxedFactSink>,
    /// Announces committed orders on `order-updates` (started by `run`).
    publisher: Option<publish::Publisher>,
    /// Recompute every project once at start, to write the facts of what state already holds.
    backfill_facts: bool,
}

impl<B: Bus, S: StateStore> Processor<B, S> {
    /// A processor for `partitions` of `status-events` (all of them when `None`).
    pub async fn new(bus: B, state: S, config: ProcessorConfig, partitions: Option<Vec<u32>>) -> Result<Self, ProcessorError> {
        let partitions = match partitions {
            Some(p) => p,
            None => (0..bus.partitions(STATUS_EVENTS)?).collect(),
        };
        let stored = state.consumer_offsets(&config.group, STATUS_EVENTS).await?;
        let offsets: HashMap<u32, i64> = partitions.iter().map(|p| (*p, stored.get(p).copied().unwrap_or(1) - 1)).collect();
        let (updates, _) = broadcast::channel(4096);
        let (stats, _) = watch::channel(ProcessorStats::default());
        Ok(Processor {
            cache: OrderCache::new(cache_capacity(&config)),
            committed: offsets.clone(),
            in_flight: None,
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
            last_lag: Instant::now(),
            last_key_forgetting: None,
            last_read: None,
            settings_caught_up: false,
            facts: None,
            publisher: None,
            backfill_facts: false,
        })
    }

    /// Writes every batch's facts to `sink` before its state commits (docs/architecture.md,
    /// invariant 4): when the write fails the batch is not committed and is read again after a
    /// back-off.
    pub fn with_facts(mut self, sink: BoxedFactSink) -> Self {
        self.facts = Some(sink);
        self
    }

    /// Recomputes every project once at start, writing facts for the orders state already
    /// holds: for a data dir whose facts were off until now. Give it to one processor only.
    pub fn with_facts_backfill(mut self) -> Self {
        self.backfill_facts = true;
        self
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
        let publisher =
            publish::Publisher::start(self.bus.clone(), self.state.clone(), &self.config.group, &self.committed, shutdown.clone()).await?;
        self.publisher = Some(publisher);
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
                    self.rewind().await;
                    tokio::select! {
                        _ = shutdown.changed() => {}
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
            self.housekeeping().await;
        }
        if let Err(err) = self.settle().await {
            tracing::warn!(error = %err, "the last batch was not committed; it will be read again at the next start");
        }
        Ok(self.stats.borrow().clone())
    }

    /// Reads one micro-batch from every partition, derives it, and hands it to a commit task;
    /// returns the records read. The previous batch's commit runs while this one is read and
    /// derived, and must succeed before this one is handed over.
    pub async fn step(&mut self) -> Result<usize, ProcessorError> {
        let per_partition = (self.config.batch_records / self.partitions.len().max(1)).max(1);
        let mut after = self.offsets.clone();
        let reading = Instant::now();
        let mut records = self.read_after(&mut after, per_partition).await?;
        let mut times = StageTimes { reading: micros_since(reading), ..StageTimes::default() };
        if records.is_empty() {
            self.last_read = None;
            self.settle().await?;
            return Ok(0);
        }
        // A short batch of fresh records waits for the rest of its linger: every transaction has
        // a fixed cost, and a processor that keeps up would otherwise commit a few records at a
        // time. Under a burst (the last read found many records) it also waits until
        // `burst_linger` has passed since that read, so batches grow with the load.
        if records.len() < per_partition * self.partitions.len() {
            let oldest = records.iter().map(|r| r.appended_at.as_micros()).min().unwrap_or(0);
            let age = Duration::from_micros(u64::try_from(now_micros() - oldest).unwrap_or(0));
            let fresh = self.config.linger.saturating_sub(age);
            let burst = self.last_read.map_or(Duration::ZERO, |last| self.config.burst_linger.saturating_sub(last.elapsed()));
            let rest = fresh.max(burst);
            if !rest.is_zero() {
                tokio::time::sleep(rest).await;
                times.lingering = u64::try_from(rest.as_micros()).unwrap_or(u64::MAX);
                let reading = Instant::now();
                let more = per_partition.saturating_sub(records.len() / self.partitions.len().max(1)).max(1);
                records.extend(self.read_after(&mut after, more).await?);
                times.reading += micros_since(reading);
            }
        }
        self.last_read = (records.len() >= BURST_RECORDS).then(Instant::now);
        let read = records.len();
        let deriving = Instant::now();
        let prepared = self.prepare(records).await?;
        times.deriving = micros_since(deriving);
        let waiting = Instant::now();
        self.settle().await?;
        times.waiting = micros_since(waiting);
        self.stats.send_modify(|s| s.times = s.times.plus(&times));
        self.launch(prepared);
        Ok(read)
    }

    /// Reads up to `limit` records of each partition after `after`, and moves `after` past them.
    async fn read_after(&self, after: &mut HashMap<u32, i64>, limit: usize) -> Result<Vec<Record>, ProcessorError> {
        let mut records: Vec<Record> = Vec::new();
        for partition in &self.partitions {
            let from = after[partition];
            let read = self.bus.read(STATUS_EVENTS, *partition, from, limit, Duration::ZERO).await?;
            if let Some(last) = read.last() {
                after.insert(*partition, last.offset);
            }
            records.extend(read);
        }
        Ok(records)
    }

    /// Waits for the batch in flight, if any, to commit.
    pub async fn settle(&mut self) -> Result<(), ProcessorError> {
        let Some(in_flight) = self.in_flight.take() else { return Ok(()) };
        match in_flight.commit.await {
            Ok(Ok(())) => {
                self.committed.extend(in_flight.offsets);
                Ok(())
            }
            Ok(Err(err)) => Err(err),
            Err(join) => Err(StateError::Corrupt(format!("the commit task failed: {join}")).into()),
        }
    }

    /// After a failure: lets the batch in flight end, forgets everything not known to be
    /// committed, and reads again from the committed offsets.
    async fn rewind(&mut self) {
        if let Some(in_flight) = self.in_flight.take()
            && let Ok(Ok(())) = in_flight.commit.await
        {
            self.committed.extend(in_flight.offsets);
        }
        self.cache.clear();
        self.offsets = self.committed.clone();
    }

    /// Decodes a batch, merges each order's new events into its known ones and derives the
    /// orders. The cache and the read offsets move on at once; [`Processor::rewind`] undoes
    /// both when a commit fails.
    async fn prepare(&mut self, records: Vec<Record>) -> Result<Prepared, ProcessorError> {
        let mut next_offsets: BTreeMap<u32, i64> = BTreeMap::new();
        let mut incoming: BTreeMap<(i64, i64), Vec<Arrival>> = BTreeMap::new();
        // Orders to recompute although no event of theirs is new: items fetched, override changed.
        let mut refreshed: std::collections::HashSet<(i64, i64)> = std::collections::HashSet::new();
        let mut override_changed: Vec<(i64, i64)> = Vec::new();
        for record in &records {
            let next = next_offsets.entry(record.partition).or_default();
            *next = (*next).max(record.offset + 1);
            match serde_json::from_slice::<StatusMessage>(&record.payload) {
                Ok(StatusMessage::StatusChanged { project_id, event, received_at, payload }) => {
                    incoming.entry((project_id, event.order_id)).or_default().push((event, received_at, payload));
                }
                Ok(StatusMessage::ItemsFetched { project_id, order_id, .. }) => {
                    incoming.entry((project_id, order_id)).or_default();
                    refreshed.insert((project_id, order_id));
                }
                Ok(StatusMessage::OverrideChanged { project_id, order_id, .. }) => {
                    incoming.entry((project_id, order_id)).or_default();
                    refreshed.insert((project_id, order_id));
                    override_changed.push((project_id, order_id));
                }
                Err(err) => {
                    tracing::error!(partition = record.partition, offset = record.offset, error = %err, "unreadable status-events record skipped");
                }
            }
        }

        // Load the events of orders the cache does not hold, one query per project. Orders of
        // the batch in flight are always cached (see `cache_capacity`), so what is read here
        // was committed before.
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
        for (project_id, order_id) in override_changed {
            let stored = self.state.overrides(project_id, &[order_id]).await?.remove(&order_id);
            if let Some(project) = self.projects.get_mut(&project_id) {
                match stored {
                    Some(o) => project.overrides.insert(order_id, stored_override(&o)),
                    None => project.overrides.remove(&order_id),
                };
            }
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
        let mut facts = FactBatch::default();
        for ((project_id, order_id), mut arrivals) in incoming {
            let was_cached = self.cache.contains(project_id, order_id);
            let mut known = match loaded.remove(&(project_id, order_id)) {
                Some(events) => events,
                None => self.cache.get(project_id, order_id).map(<[StatusEvent]>::to_vec).unwrap_or_default(),
            };
            let new_events: Vec<StatusEvent> = arrivals.iter().map(|(e, _, _)| *e).collect();
            let fresh = merge_events(&mut known, &new_events);
            if fresh.is_empty()
                && !known.is_empty()
                && self.cache.contains(project_id, order_id)
                && !refreshed.contains(&(project_id, order_id))
            {
                continue;
            }
            let (order_urgency, source) = urgencies.remove(&(project_id, order_id)).unwrap_or_default();
            // Each fresh event is distinct, so each body is taken once (not copied).
            for event in &fresh {
                if let Some((_, received_at, payload)) = arrivals.iter_mut().find(|(e, _, _)| e == event) {
                    let payload = std::mem::take(payload);
                    batch.events.push(StoredEvent { project_id, event: *event, received_at: *received_at, payload: Some(payload) });
                }
            }
            let project = &self.projects[&project_id];
            let inputs =
                OrderInputs { urgency: order_urgency, source, overrides: project.overrides.get(&order_id).copied().unwrap_or_default() };
            let derived = match self.facts {
                Some(_) => derive_order_with_facts(project_id, &known, &inputs, &project.rules, project.revision, &mut facts),
                None => derive_order(project_id, &known, &inputs, &project.rules, project.revision),
            };
            batch.orders.extend(derived);
            // Items are asked for once per order and process: when the order is new here (or
            // was not cached, as after a restart), and again on entering the refetch group. The
            // enricher's schedule is durable, so one request is enough.
            if project.enrich {
                let first_sight = !was_cached;
                enrich_requests.extend(urgency::enrich_request(
                    project_id,
                    order_id,
                    order_urgency,
                    &fresh,
                    first_sight,
                    self.config.refetch_items_on_group,
                ));
            }
            self.cache.put(project_id, order_id, known);
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
        let mut ranges = HashMap::new();
        for (partition, next) in &next_offsets {
            let previous = self.offsets.insert(*partition, next - 1).unwrap_or(0);
            ranges.insert(*partition, (previous + 1, next - 1));
        }
        let offsets = next_offsets.into_iter().map(|(partition, next)| (partition, next - 1)).collect();
        let oldest_appended = records.iter().map(|r| r.appended_at.as_micros()).min().unwrap_or_else(now_micros);
        Ok(Prepared { batch, facts, records: records.len() as u64, offsets, ranges, enrich_requests, oldest_appended })
    }

    /// Commits a prepared batch in a task of its own; when it has committed, the task announces
    /// the batch's orders and counts it.
    fn launch(&mut self, prepared: Prepared) {
        let Prepared { batch, facts, records, offsets, ranges, enrich_requests, oldest_appended } = prepared;
        let state = self.state.clone();
        let bus = self.bus.clone();
        let sink = self.facts.clone();
        let updates = self.updates.clone();
        let stats = self.stats.clone();
        let publisher = self.publisher.clone();
        let commit = tokio::spawn(async move {
            let new_events = batch.events.len() as u64;
            let orders: Vec<OrderUpdated> = batch.orders.iter().map(order_updated).collect();
            let announcements = publisher.as_ref().map(|_| batch.orders.iter().map(publish::order_record).collect());
            let started = Instant::now();
            let mut times = StageTimes::default();
            if let Some(sink) = sink.filter(|_| !facts.is_empty()) {
                let writing = Instant::now();
                if let Err(err) = sink.write(facts).await {
                    metrics::counter!("ksa_facts_write_failures_total").increment(1);
                    return Err(err.into());
                }
                metrics::histogram!("ksa_facts_write_seconds").record(writing.elapsed().as_secs_f64());
                times.facts = micros_since(writing);
            }
            let committing = Instant::now();
            if let Err(err) = state.commit(batch).await {
                metrics::counter!("ksa_state_write_failures_total").increment(1);
                return Err(err.into());
            }
            metrics::histogram!("ksa_state_write_seconds").record(committing.elapsed().as_secs_f64());
            times.committing = micros_since(committing);
            metrics::histogram!("ksa_processor_batch_seconds").record(started.elapsed().as_secs_f64());
            metrics::histogram!("ksa_processor_batch_records").record(records as f64);
            metrics::histogram!("ksa_processor_delay_seconds").record((now_micros() - oldest_appended).max(0) as f64 / 1e6);
            metrics::counter!("ksa_processor_events_total").increment(new_events);
            metrics::counter!("ksa_processor_orders_total").increment(orders.len() as u64);
            for update in &orders {
                let _ = updates.send(update.clone());
            }
            if let (Some(publisher), Some(records)) = (publisher, announcements) {
                publisher.committed(publish::Committed { ranges, records });
            }
            // After the commit: a request lost to a crash here is made again when the order is
            // next seen after the restart (it is not cached then).
            if !enrich_requests.is_empty()
                && let Err(err) = bus.append(ENRICH_REQUESTS, enrich_requests).await
            {
                tracing::warn!(error = %err, "could not ask the enricher for order items");
            }
            stats.send_modify(|s| {
                s.times = s.times.plus(&times);
                s.batches += 1;
                s.records += records;
                s.new_events += new_events;
                s.orders_written += orders.len() as u64;
            });
            Ok(())
        });
        self.in_flight = Some(InFlight { commit, offsets });
    }

    /// Loads (or reloads after a change) a project's rules.
    async fn ensure_project(&mut self, project_id: i64) -> Result<(), ProcessorError> {
        if self.projects.contains_key(&project_id) {
            return Ok(());
        }
        let (settings, revision) = self.load_settings(project_id).await?;
        let rules = Arc::new(rules_for(settings, Timestamp::from_micros(now_micros())));
        let enrich = self.has_api_token(project_id).await?;
        let overrides = self.state.project_overrides(project_id).await?.iter().map(|(id, o)| (*id, stored_override(o))).collect();
        self.projects.insert(project_id, ProjectState { revision, rules, enrich, overrides });
        Ok(())
    }

    async fn has_api_token(&self, project_id: i64) -> Result<bool, ProcessorError> {
        Ok(self.state.api_access(project_id).await?.is_some_and(|access| access.token_enc.is_some()))
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
        if self.last_lag.elapsed() >= Duration::from_secs(5) {
            self.last_lag = Instant::now();
            self.report_lag().await;
        }
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
                match self.has_api_token(project_id).await {
                    Ok(enrich) => {
                        if let Some(project) = self.projects.get_mut(&project_id) {
                            project.enrich = enrich;
                        }
                    }
                    Err(err) => tracing::warn!(project_id, error = %err, "could not check the project's API access"),
                }
                match self.state.settings(project_id).await {
                    Ok(record) => {
                        let revision = record.map_or(0, |r| r.revision);
                        if revision != self.projects[&project_id].revision {
                            // The batch in flight was derived with the old rules. It must land
                            // before the recompute reads the project's orders: committed after
                            // the recompute went past its new orders, they would keep the old
                            // revision until their next event.
                            if let Err(err) = self.settle().await {
                                tracing::warn!(error = %err, "processor batch failed; reading it again");
                                self.rewind().await;
                            }
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
        // Hourly, by the processor of partition 0: the keys are the topic's, not a partition's.
        if self.partitions.contains(&0) && self.last_key_forgetting.is_none_or(|at| at.elapsed() >= Duration::from_secs(3600)) {
            self.last_key_forgetting = Some(Instant::now());
            let before = Timestamp::from_micros(now_micros() - self.config.key_retention.as_micros() as i64);
            match self.bus.forget_keys(STATUS_EVENTS, before).await {
                Ok(0) => {}
                Ok(forgotten) => tracing::info!(forgotten, "outbox idempotency keys past their days forgotten"),
                Err(err) => tracing::warn!(error = %err, "forgetting old outbox idempotency keys failed"),
            }
        }
        if self.last_retention.elapsed() >= Duration::from_secs(60) {
            self.last_retention = Instant::now();
            let before = Timestamp::from_micros(now_micros() - self.config.retention.as_micros() as i64);
            for (partition, offset) in &self.committed {
                // Records not yet announced are read again to announce them: keep them.
                let through = self.publisher.as_ref().and_then(|p| p.announced(*partition)).map_or(*offset, |a| a.min(*offset));
                if let Err(err) = self.bus.truncate(STATUS_EVENTS, *partition, through, before).await {
                    tracing::warn!(partition, error = %err, "outbox retention failed");
                }
                // Announcements are read by nobody who keeps a position: they age out.
                if let Err(err) = self.bus.truncate(ORDER_UPDATES, *partition, i64::MAX, before).await {
                    tracing::warn!(partition, error = %err, "outbox retention of order-updates failed");
                }
            }
        }
    }

    /// Per partition, the bus's end and how far the committed position is behind it (metrics).
    async fn report_lag(&self) {
        for partition in &self.partitions {
            let Ok(end) = self.bus.end_offset(STATUS_EVENTS, *partition).await else { continue };
            let committed = self.committed.get(partition).copied().unwrap_or(0);
            let label = partition.to_string();
            metrics::gauge!("ksa_bus_end_offset", "topic" => STATUS_EVENTS, "partition" => label.clone()).set(end as f64);
            metrics::gauge!("ksa_consumer_lag_records", "topic" => STATUS_EVENTS, "partition" => label)
                .set((end - committed).max(0) as f64);
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
            let applied = self.state.applied_revision(project.id).await?;
            let format = self.state.recompute(project.id).await?.map_or(0, |r| r.row_format);
            if self.backfill_facts && self.facts.is_some() {
                tracing::info!(project_id = project.id, revision, "writing the facts of the orders already stored; recomputing");
                self.spawn_recompute(project.id);
            } else if applied < revision || format < ROW_FORMAT || has_rows_older_than(&self.state, project.id, revision).await? {
                tracing::info!(project_id = project.id, revision, "derived rows predate the settings; recomputing");
                self.spawn_recompute(project.id);
            }
        }
        self.backfill_facts = false;
        Ok(())
    }

    /// Recomputes every order of a project with its new rules, in the background, keeping its
    /// progress in the state database; when it is done, reads move to the new revision. Rows
    /// are versioned, so racing the live path never loses the newer result.
    fn spawn_recompute(&self, project_id: i64) {
        let state = self.state.clone();
        let project = &self.projects[&project_id];
        let (rules, revision, overrides) = (project.rules.clone(), project.revision, project.overrides.clone());
        let stats = self.stats.clone();
        let facts = self.facts.clone();
        let bus = self.bus.clone();
        let announce: Announce = Arc::new(move |message: LiveMessage| {
            let bus = bus.clone();
            let Ok(payload) = serde_json::to_vec(&message) else { return };
            let record = NewRecord { key: project_key(message.project_id()), payload, idempotency_key: None };
            tokio::spawn(async move {
                if let Err(err) = bus.append(ORDER_UPDATES, vec![record]).await {
                    tracing::warn!(error = %err, "could not announce a recompute's progress");
                }
            });
        });
        tokio::spawn(async move {
            let progress = Progress { state: &state, project_id, revision, announce: announce.clone() };
            if let Err(err) = state.start_recompute(project_id, revision, Timestamp::from_micros(now_micros())).await {
                tracing::warn!(project_id, error = %err, "could not record the recompute's start");
            }
            let outcome = recompute_project(&state, facts.as_ref(), project_id, &rules, &overrides, revision, Some(&progress)).await;
            let error = outcome.as_ref().err().map(ToString::to_string);
            if let Err(err) =
                state.finish_recompute(project_id, revision, error.as_deref(), ROW_FORMAT, Timestamp::from_micros(now_micros())).await
            {
                tracing::warn!(project_id, error = %err, "could not record the recompute's end");
            }
            match outcome {
                Ok(orders) => {
                    tracing::info!(project_id, revision, orders, "recomputed derived data for new settings");
                    stats.send_modify(|s| s.recomputes += 1);
                    // Every row changed: readers reload the project rather than take them one by one.
                    announce(LiveMessage::Recompute {
                        project_id,
                        revision,
                        orders_done: orders,
                        orders_total: orders,
                        state: "done".into(),
                    });
                    announce(LiveMessage::Invalidate { project_id, revision });
                }
                Err(err) => {
                    tracing::error!(project_id, revision, error = %err, "recompute failed");
                    announce(LiveMessage::Recompute { project_id, revision, orders_done: 0, orders_total: 0, state: "failed".into() });
                }
            }
        });
    }
}

/// Announces a message about a whole project on `order-updates`, without waiting.
type Announce = Arc<dyn Fn(LiveMessage) + Send + Sync>;

/// Where a recompute reports how far it got: the state database (for `GET
/// /api/settings/recompute`) and `order-updates` (for live views).
pub struct Progress<'a, S> {
    state: &'a S,
    project_id: i64,
    revision: i64,
    announce: Announce,
}

impl<S: StateStore> Progress<'_, S> {
    async fn report(&self, done: u64, total: u64) {
        let project = self.project_id.to_string();
        metrics::gauge!("ksa_recompute_orders_done", "project_id" => project.clone()).set(done as f64);
        metrics::gauge!("ksa_recompute_orders_total", "project_id" => project).set(total as f64);
        let now = Timestamp::from_micros(now_micros());
        if let Err(err) = self.state.recompute_progress(self.project_id, self.revision, done, total, now).await {
            tracing::warn!(project_id = self.project_id, error = %err, "could not record the recompute's progress");
        }
        (self.announce)(LiveMessage::Recompute {
            project_id: self.project_id,
            revision: self.revision,
            orders_done: done,
            orders_total: total,
            state: "running".into(),
        });
    }
}

/// Rewrites the derived rows of every order of a project from its stored events, and their
/// facts first when there is a sink.
pub async fn recompute_project<S: StateStore>(
    state: &S,
    facts: Option<&BoxedFactSink>,
    project_id: i64,
    rules: &ProjectRules,
    overrides: &HashMap<i64, OrderOverrides>,
    revision: i64,
    progress: Option<&Progress<'_, S>>,
) -> Result<u64, ProcessorError> {
    let total = match progress {
        Some(_) => state.order_count(project_id).await?,
        None => 0,
    };
    let mut after = 0;
    let mut written = 0;
    loop {
        let ids = state.order_ids(project_id, after, 2000).await?;
        let Some(last) = ids.last().copied() else { break };
        let events = state.order_events(project_id, &ids).await?;
        let mut urgencies = urgency::urgencies(state, project_id, &ids, rules).await?;
        let mut inputs_of = |order_id: &i64| {
            let (urgency, source) = urgencies.remove(order_id).unwrap_or_default();
            OrderInputs { urgency, source, overrides: overrides.get(order_id).copied().unwrap_or_default() }
        };
        let mut batch = FactBatch::default();
        let orders: Vec<DerivedOrder> = match facts {
            Some(_) => events
                .iter()
                .filter_map(|(id, evs)| derive_order_with_facts(project_id, evs, &inputs_of(id), rules, revision, &mut batch))
                .collect(),
            None => events.iter().filter_map(|(id, evs)| derive_order(project_id, evs, &inputs_of(id), rules, revision)).collect(),
        };
        written += orders.len() as u64;
        if let Some(sink) = facts {
            sink.write(batch).await?;
        }
        state.commit(CommitBatch { orders, ..CommitBatch::default() }).await?;
        if let Some(progress) = progress {
            progress.report(written, total.max(written)).await;
        }
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

/// An override as the domain rules take it.
fn stored_override(o: &ksa_state::admin::OrderOverride) -> OrderOverrides {
    OrderOverrides::from_stored(o.is_urgent, o.sla_profile.as_deref(), o.cycle_start, o.cycle_end)
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
