//! The processor measured over a real outbox and state database: its throughput on a log that
//! is already in the outbox, and the latency from `received_at` to the committed result when
//! the log is appended at a steady rate while it runs.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use ksa_bus::{AppendOutcome, Bus, BusError};
use ksa_processor::{Processor, ProcessorConfig, ProcessorStats};
use ksa_schemas::Timestamp;
use ksa_schemas::bus::STATUS_EVENTS;
use ksa_state::StateStore;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::Fallible;
use crate::databases::Stores;
use crate::measure::{CpuSample, CpuUse, Latencies, peak_rss_kib, reset_peak_rss, wall_micros};
use crate::records::{Replay, status_record};

/// How often long phases report progress on stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct PipelineSettings {
    pub processor: ProcessorConfig,
    /// Records per append call when the log is loaded before the throughput run.
    pub append_chunk: usize,
    /// Append calls queued at once while loading (2: the next is built while the last is written).
    pub appends_in_flight: usize,
    /// How often the paced run appends what is due.
    pub tick: Duration,
}

/// The log loaded into the outbox, then consumed by the processor as fast as it goes.
pub struct Throughput {
    pub appended: u64,
    pub duplicates: u64,
    pub append_time: Duration,
    pub append_cpu: CpuUse,
    pub process_time: Duration,
    pub stats: ProcessorStats,
    pub stored_events: u64,
    pub peak_rss_kib: u64,
    pub cpu: CpuUse,
}

impl Throughput {
    pub fn append_rate(&self) -> f64 {
        self.appended as f64 / self.append_time.as_secs_f64()
    }

    pub fn events_per_second(&self) -> f64 {
        self.stats.records as f64 / self.process_time.as_secs_f64()
    }
}

pub async fn throughput<B: Bus, S: StateStore>(
    stores: &Stores<B, S>,
    replay: &Replay,
    settings: &PipelineSettings,
) -> Fallible<Throughput> {
    let cpu_before = CpuSample::now();
    let started = Instant::now();
    let (appended, duplicates) = load(&stores.bus, stores.project_id, replay, settings).await?;
    let append_time = started.elapsed();
    let append_cpu = CpuSample::now().since(&cpu_before);
    eprintln!("throughput: {appended} records appended ({duplicates} duplicates) in {:.1} s; processing", append_time.as_secs_f64());

    let processors = start_processors(stores, settings).await?;
    reset_peak_rss();
    let cpu_before = CpuSample::now();
    let started = Instant::now();
    let (stats, caught_up, ()) = drive(processors, async { Ok((appended, ())) }, "throughput").await?;
    let process_time = caught_up.duration_since(started);
    let cpu = CpuSample::now().since(&cpu_before);
    let peak_rss_kib = peak_rss_kib();
    let stored_events = stores.state.event_count(stores.project_id).await?;
    Ok(Throughput { appended, duplicates, append_time, append_cpu, process_time, stats, stored_events, peak_rss_kib, cpu })
}

/// Appends the whole log in large calls; building the next overlaps writing the last. Returns `(appended, duplicates)`.
async fn load<B: Bus>(bus: &B, project_id: i64, replay: &Replay, settings: &PipelineSettings) -> Fallible<(u64, u64)> {
    let mut in_flight = std::collections::VecDeque::new();
    let (mut appended, mut duplicates) = (0, 0);
    let mut body = String::with_capacity(2048);
    let mut reported = Instant::now();
    let mut tally = |outcomes: Vec<AppendOutcome>| {
        for outcome in outcomes {
            match outcome {
                AppendOutcome::Appended { .. } => appended += 1,
                AppendOutcome::Duplicate => duplicates += 1,
            }
        }
    };
    for (n, chunk) in replay.events.chunks(settings.append_chunk.max(1)).enumerate() {
        let received_at = Timestamp::from_micros(wall_micros());
        let records = chunk.iter().map(|event| status_record(project_id, event, received_at, &mut body)).collect::<Fallible<Vec<_>>>()?;
        in_flight.push_back(bus.append(STATUS_EVENTS, records));
        while in_flight.len() >= settings.appends_in_flight.max(1) {
            if let Some(append) = in_flight.pop_front() {
                tally(append.await?);
            }
        }
        if reported.elapsed() >= PROGRESS_EVERY {
            reported = Instant::now();
            eprintln!("throughput: appending, {} of {} deliveries", (n + 1) * settings.append_chunk, replay.events.len());
        }
    }
    while let Some(append) = in_flight.pop_front() {
        tally(append.await?);
    }
    Ok((appended, duplicates))
}

/// The log appended at `rate` deliveries per second while the processor runs.
pub struct Paced {
    pub rate: f64,
    pub appended: u64,
    pub duplicates: u64,
    /// From the first append call to the last.
    pub pace_time: Duration,
    /// From the last append call until the bus had answered every append.
    pub append_tail: Duration,
    /// From the last answered append until the processor had committed everything.
    pub drain_time: Duration,
    /// Per append call (one every tick), from the call until its records were durable: what
    /// ingest waits for before it answers a webhook.
    pub append_latency: Latencies,
    /// Append calls refused as overloaded and made again 10 ms later.
    pub overloaded: u64,
    /// `commit − received_at` per appended record.
    pub latency: Latencies,
    /// The same, over the last third of the records only (is the lag steady or growing?).
    pub latency_last_third: Latencies,
    /// Records whose commit was not seen (order updates lost to a lagging receiver).
    pub unmatched: u64,
    pub lagged_updates: u64,
    pub stats: ProcessorStats,
    pub peak_rss_kib: u64,
    pub cpu: CpuUse,
}

impl Paced {
    pub fn achieved_rate(&self) -> f64 {
        (self.appended + self.duplicates) as f64 / self.pace_time.as_secs_f64()
    }
}

/// `limit` appends only the first deliveries of the log (a shorter run at a low rate).
pub async fn paced<B: Bus, S: StateStore>(
    stores: &Stores<B, S>,
    replay: &Replay,
    settings: &PipelineSettings,
    rate: f64,
    limit: Option<usize>,
) -> Fallible<Paced> {
    let processors = start_processors(stores, settings).await?;
    // One update per order per commit that changed it, sent right after the commit: the time
    // it arrives is the commit time of every event of the order it now counts. An order's
    // updates all come from the processor of its partition, in commit order.
    let collectors: Vec<_> = processors
        .iter()
        .map(|processor| {
            let mut updates = processor.updates().subscribe();
            tokio::spawn(async move {
                let mut seen: Vec<(i64, u32, i64)> = Vec::with_capacity(1 << 18);
                let mut lagged = 0u64;
                loop {
                    match updates.recv().await {
                        Ok(update) => seen.push((update.order_id, update.event_count, wall_micros())),
                        Err(RecvError::Lagged(missed)) => lagged += missed,
                        Err(RecvError::Closed) => break,
                    }
                }
                (seen, lagged)
            })
        })
        .collect();

    // Per order, the `received_at` of each of its appended records, in append order: the
    // processor commits an order's records in that order, and each is a new event, so an
    // update counting n events means the order's first n records are committed.
    let mut received: HashMap<i64, Vec<i64>> = HashMap::with_capacity(replay.orders());
    reset_peak_rss();
    let cpu_before = CpuSample::now();
    let total = limit.unwrap_or(usize::MAX).min(replay.events.len());
    let pacer = pace(&stores.bus, stores.project_id, replay, total, rate, settings.tick, &mut received);
    let (stats, caught_up, paced) = drive(processors, pacer, "paced").await?;
    let cpu = CpuSample::now().since(&cpu_before);
    let peak_rss_kib = peak_rss_kib();
    let (mut seen, mut lagged_updates) = (Vec::new(), 0);
    for collector in collectors {
        let (more, lagged) = collector.await?;
        seen.extend(more);
        lagged_updates += lagged;
    }

    let mut committed: HashMap<i64, usize> = HashMap::with_capacity(received.len());
    let mut latencies: Vec<(i64, u64)> = Vec::with_capacity(paced.appended as usize);
    for (order_id, event_count, at) in seen {
        let Some(times) = received.get(&order_id) else { continue };
        let done = committed.entry(order_id).or_default();
        let upto = (event_count as usize).min(times.len());
        if upto > *done {
            latencies.extend(times[*done..upto].iter().map(|t| (*t, (at - t).max(0) as u64)));
            *done = upto;
        }
    }
    let unmatched = paced.appended.saturating_sub(latencies.len() as u64);
    latencies.sort_unstable_by_key(|(received_at, _)| *received_at);
    let last_third = latencies[latencies.len() * 2 / 3..].iter().map(|(_, l)| *l).collect();
    Ok(Paced {
        rate,
        appended: paced.appended,
        duplicates: paced.duplicates,
        pace_time: paced.last_sent.duration_since(paced.started),
        append_tail: paced.last_answered.duration_since(paced.last_sent),
        drain_time: caught_up.saturating_duration_since(paced.last_answered),
        append_latency: Latencies::of(paced.append_latencies),
        overloaded: paced.overloaded,
        latency: Latencies::of(latencies.into_iter().map(|(_, l)| l).collect()),
        latency_last_third: Latencies::of(last_third),
        unmatched,
        lagged_updates,
        stats,
        peak_rss_kib,
        cpu,
    })
}

struct PaceOutcome {
    appended: u64,
    duplicates: u64,
    /// Append calls the bus refused as overloaded (ingest's 503) and that were made again.
    overloaded: u64,
    started: Instant,
    /// When the last delivery was handed to the bus.
    last_sent: Instant,
    /// When the bus answered the last append (all durable).
    last_answered: Instant,
    /// Per append call, from the call to its answer (durable), in microseconds.
    append_latencies: Vec<u64>,
}

/// Appends the first `total` deliveries, what is due every `tick` (`rate` deliveries per second
/// since the start), stamping each record's `received_at` as it is built; returns once every
/// append is answered.
async fn pace<B: Bus>(
    bus: &B,
    project_id: i64,
    replay: &Replay,
    total: usize,
    rate: f64,
    tick: Duration,
    received: &mut HashMap<i64, Vec<i64>>,
) -> Fallible<(u64, PaceOutcome)> {
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut in_flight = FuturesUnordered::new();
    let (mut appended, mut duplicates, mut overloaded) = (0u64, 0u64, 0u64);
    let mut body = String::with_capacity(2048);
    let started = Instant::now();
    let (mut last_sent, mut last_answered) = (started, started);
    let mut append_latencies = Vec::new();
    let mut reported = started;
    let mut sent = 0;
    while sent < total || !in_flight.is_empty() {
        tokio::select! {
            _ = ticker.tick(), if sent < total => {
                let due = ((started.elapsed().as_secs_f64() * rate) as usize).min(total);
                if due > sent {
                    let mut records = Vec::with_capacity(due - sent);
                    for index in sent..due {
                        let event = &replay.events[index];
                        let now = wall_micros();
                        records.push(status_record(project_id, event, Timestamp::from_micros(now), &mut body)?);
                        if !replay.repeat[index] {
                            received.entry(event.order_id).or_default().push(now);
                        }
                    }
                    sent = due;
                    // Queued as it is called: appends keep the order of these calls.
                    let called = Instant::now();
                    let bus = bus.clone();
                    // As ingest's clients do after a 503: the same deliveries again, 10 ms later.
                    in_flight.push(async move {
                        let mut refused = 0u64;
                        loop {
                            match bus.append(STATUS_EVENTS, records.clone()).await {
                                Err(BusError::Overloaded) => {
                                    refused += 1;
                                    tokio::time::sleep(Duration::from_millis(10)).await;
                                }
                                answer => return (answer, called.elapsed(), refused),
                            }
                        }
                    });
                    if sent == total {
                        last_sent = Instant::now();
                    }
                }
                if reported.elapsed() >= PROGRESS_EVERY {
                    reported = Instant::now();
                    eprintln!("paced: {sent} of {total} deliveries appended at {rate:.0}/s");
                }
            }
            Some((outcomes, took, refused)) = in_flight.next(), if !in_flight.is_empty() => {
                append_latencies.push(took.as_micros() as u64);
                overloaded += refused;
                for outcome in outcomes? {
                    match outcome {
                        AppendOutcome::Appended { .. } => appended += 1,
                        AppendOutcome::Duplicate => duplicates += 1,
                    }
                }
                if sent == total && in_flight.is_empty() {
                    last_answered = Instant::now();
                }
            }
        }
    }
    Ok((appended, PaceOutcome { appended, duplicates, overloaded, started, last_sent, last_answered, append_latencies }))
}

/// One processor per partition of `status-events`, as `keycrm-analytics run` starts them.
async fn start_processors<B: Bus, S: StateStore>(stores: &Stores<B, S>, settings: &PipelineSettings) -> Fallible<Vec<Processor<B, S>>> {
    let mut processors = Vec::new();
    for partition in 0..stores.bus.partitions(STATUS_EVENTS)? {
        processors.push(Processor::new(stores.bus.clone(), stores.state.clone(), settings.processor.clone(), Some(vec![partition])).await?);
    }
    Ok(processors)
}

/// Runs the processors (each on a task of its own, so their CPU-bound stretches do not delay
/// `work`) while `work` runs; once `work` returns how many records they must read in all,
/// waits until they have committed that many and stops them. Returns their summed stats, when
/// they caught up, and what `work` returned.
async fn drive<B: Bus, S: StateStore, T>(
    processors: Vec<Processor<B, S>>,
    work: impl Future<Output = Fallible<(u64, T)>>,
    phase: &str,
) -> Fallible<(ProcessorStats, Instant, T)> {
    let mut stats: Vec<watch::Receiver<ProcessorStats>> = processors.iter().map(Processor::stats).collect();
    let (stop, stop_rx) = watch::channel(false);
    let running: Vec<_> = processors.into_iter().map(|processor| tokio::spawn(processor.run(stop_rx.clone()))).collect();
    let control = async {
        let (target, output) = match work.await {
            Ok(done) => done,
            Err(error) => {
                stop.send_replace(true);
                return Err(error);
            }
        };
        let mut reported = Instant::now();
        loop {
            let now = sum(stats.iter_mut().map(|s| s.borrow_and_update().clone()));
            if now.records >= target {
                break;
            }
            if reported.elapsed() >= PROGRESS_EVERY {
                reported = Instant::now();
                eprintln!("{phase}: processors at {} of {target} records, {} batches", now.records, now.batches);
            }
            let changed = futures_util::future::select_all(stats.iter_mut().map(|s| Box::pin(s.changed())));
            if let Ok((Err(_), _, _)) = tokio::time::timeout(PROGRESS_EVERY, changed).await {
                break;
            }
        }
        let caught_up = Instant::now();
        stop.send_replace(true);
        Ok((caught_up, output))
    };
    let control = control.await;
    let mut finals = Vec::new();
    for run in running {
        finals.push(run.await??);
    }
    let (caught_up, output) = control?;
    Ok((sum(finals), caught_up, output))
}

fn sum(stats: impl IntoIterator<Item = ProcessorStats>) -> ProcessorStats {
    stats.into_iter().fold(ProcessorStats::default(), |total, s| ProcessorStats {
        batches: total.batches + s.batches,
        records: total.records + s.records,
        new_events: total.new_events + s.new_events,
        orders_written: total.orders_written + s.orders_written,
        recomputes: total.recomputes + s.recomputes,
        times: total.times.plus(&s.times),
    })
}
