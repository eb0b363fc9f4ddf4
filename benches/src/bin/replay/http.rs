//! Webhook ingest over HTTP: the ingest routes served by warp on 127.0.0.1 over a SQLite state
//! database and outbox, and keep-alive clients posting the generated webhooks. Server and
//! clients run on separate runtimes with named threads, so the CPU each side used is known.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ksa_benches::traffic::webhook_body;
use ksa_bus::outbox::OutboxStats;
use ksa_bus::{Bus, OutboxConfig};
use ksa_ingest::{Ingest, IngestConfig};
use ksa_processor::{Processor, ProcessorConfig, ProcessorStats};
use ksa_schemas::bus::STATUS_EVENTS;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::Fallible;
use crate::client;
use crate::databases::{self, PROJECT_SECRET, PROJECT_SLUG};
use crate::measure::{CpuSample, CpuUse, Latencies, peak_rss_kib, reset_peak_rss};
use crate::records::Replay;

const PROGRESS_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct HttpSettings {
    pub data_dir: Option<PathBuf>,
    pub outbox: OutboxConfig,
    /// Requests in flight (one keep-alive connection each).
    pub concurrency: usize,
    pub server_threads: usize,
    pub client_threads: usize,
    /// Also run the processor in the server, as `keycrm-analytics run` does.
    pub processor: Option<ProcessorConfig>,
    /// Serve the floor route instead of ingest ([`floor_routes`]).
    pub floor: bool,
    /// Pause before posting again after a 503.
    pub retry_pause: Duration,
    /// Post to this webhook URL (a `keycrm-analytics run` started elsewhere) instead of a
    /// server of the benchmark's own.
    pub url: Option<String>,
    /// Stop posting after this long, even if the log is not through.
    pub limit: Option<Duration>,
}

pub struct HttpResult {
    pub posted: Posted,
    /// Per request answered 2xx, from send to the whole answer read.
    pub latency: Latencies,
    pub cpu: CpuUse,
    pub peak_rss_kib: u64,
    /// `None` when posting to a server elsewhere.
    pub outbox: Option<OutboxStats>,
    pub processor: Option<ProcessorStats>,
    pub database_size: Option<String>,
}

pub fn run(replay: Replay, settings: &HttpSettings) -> Fallible<HttpResult> {
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.server_threads.max(1))
        .thread_name("server")
        .enable_all()
        .build()?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.client_threads.max(1))
        .thread_name("client")
        .enable_all()
        .build()?;

    let server = match &settings.url {
        Some(_) => None,
        None => Some(server_rt.block_on(Server::start(settings))?),
    };
    let url = match (&server, &settings.url) {
        (Some(server), _) => format!("http://{}/webhooks/keycrm/{PROJECT_SLUG}?token={PROJECT_SECRET}", server.addr),
        (None, Some(url)) => url.clone(),
        (None, None) => unreachable!("a server is started when no URL is given"),
    };
    eprintln!("http: posting {} webhooks to {url} with {} connections", replay.events.len(), settings.concurrency);
    reset_peak_rss();
    let cpu_before = CpuSample::now();
    let posted = client_rt.block_on(post_all(&url, Arc::new(replay), settings.concurrency, settings.retry_pause, settings.limit));
    let cpu = CpuSample::now().since(&cpu_before);
    let peak_rss_kib = peak_rss_kib();
    let stopped = server.map(|server| server_rt.block_on(server.stop())).transpose()?;
    let mut posted = posted?;
    let (outbox, processor, database_size) = match stopped {
        Some((outbox, processor, size)) => (Some(outbox), processor, size),
        None => (None, None, None),
    };
    Ok(HttpResult {
        latency: Latencies::of(std::mem::take(&mut posted.latencies)),
        posted,
        cpu,
        peak_rss_kib,
        outbox,
        processor,
        database_size,
    })
}

/// The ingest side: what `keycrm-analytics run` serves for webhooks, without the read API.
struct Server {
    addr: SocketAddr,
    stores: databases::Stores<ksa_bus::outbox::SqliteOutbox, ksa_state::SqliteState>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    processors: Vec<tokio::task::JoinHandle<Option<ProcessorStats>>>,
}

impl Server {
    async fn start(settings: &HttpSettings) -> Fallible<Server> {
        let stores = databases::sqlite(settings.data_dir.as_deref(), settings.outbox.clone()).await?;
        let ingest = Ingest::new(stores.bus.clone(), stores.state.clone(), IngestConfig::default());
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stop_rx) = watch::channel(false);
        let mut server_stop = stop_rx.clone();
        let stopped = async move {
            let _ = server_stop.wait_for(|stop| *stop).await;
        };
        let server = if settings.floor {
            tokio::spawn(warp::serve(floor_routes()).incoming(listener).graceful(stopped).run())
        } else {
            tokio::spawn(warp::serve(ksa_ingest::routes(ingest.clone())).incoming(listener).graceful(stopped).run())
        };
        // Webhook counters are saved every few seconds, as the app does.
        let mut flush_stop = stop_rx.clone();
        let flusher = async move {
            loop {
                tokio::select! {
                    _ = async { let _ = flush_stop.wait_for(|stop| *stop).await; } => break,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => ingest.flush_counters().await,
                }
            }
            ingest.flush_counters().await;
        };
        let tasks = vec![server, tokio::spawn(flusher)];
        // One processor per partition, as `keycrm-analytics run` starts them.
        let mut processors = Vec::new();
        if let Some(config) = &settings.processor {
            for partition in 0..stores.bus.partitions(STATUS_EVENTS)? {
                let processor = Processor::new(stores.bus.clone(), stores.state.clone(), config.clone(), Some(vec![partition])).await?;
                let stop_rx = stop_rx.clone();
                processors.push(tokio::spawn(async move { processor.run(stop_rx).await.ok() }));
            }
        }
        Ok(Server { addr, stores, stop, tasks, processors })
    }

    async fn stop(self) -> Fallible<(OutboxStats, Option<ProcessorStats>, Option<String>)> {
        self.stop.send_replace(true);
        for task in self.tasks {
            task.await?;
        }
        let mut processor: Option<ProcessorStats> = None;
        for task in self.processors {
            if let Some(stats) = task.await? {
                let total = processor.get_or_insert_with(ProcessorStats::default);
                total.batches += stats.batches;
                total.records += stats.records;
                total.new_events += stats.new_events;
                total.orders_written += stats.orders_written;
            }
        }
        let outbox = self.stores.bus.stats();
        self.stores.bus.shutdown().await;
        let size = self.stores.scratch.size().await;
        self.stores.scratch.remove().await?;
        Ok((outbox, processor, size))
    }
}

/// What any webhook endpoint on warp pays per request, as a floor under ingest's cost: the body
/// read whole and a 202 with a small JSON body, as ingest answers an accepted webhook. No
/// project lookup, secret, parsing or bus.
fn floor_routes() -> impl warp::Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    use warp::Filter;
    use warp::reply::Reply;
    warp::post().and(warp::path!("webhooks" / "keycrm" / String)).and(warp::body::bytes()).map(|_slug: String, _body| {
        let body = warp::reply::json(&serde_json::json!({ "status": "accepted" }));
        warp::reply::with_status(body, warp::http::StatusCode::ACCEPTED).into_response()
    })
}

/// What posting the whole log met.
#[derive(Default)]
pub struct Posted {
    pub requests: u64,
    pub accepted: u64,
    pub duplicates: u64,
    /// 503 answers, each posted again after the retry pause.
    pub overloaded: u64,
    pub failed: u64,
    pub first_failure: Option<String>,
    /// Per request answered 2xx, in microseconds.
    pub latencies: Vec<u64>,
    pub elapsed: Duration,
}

impl Posted {
    pub fn answered_2xx(&self) -> u64 {
        self.accepted + self.duplicates
    }

    pub fn webhooks_per_second(&self) -> f64 {
        self.answered_2xx() as f64 / self.elapsed.as_secs_f64()
    }

    /// `N webhooks answered 2xx (…) in S s = R webhooks/s; …`, for the report.
    pub fn summary(&self) -> String {
        format!(
            "{} webhooks answered 2xx ({} accepted, {} duplicate) in {:.2} s = {:.0} webhooks/s; {} requests, {} answered 503 (retried), {} failed{}",
            self.answered_2xx(),
            self.accepted,
            self.duplicates,
            self.elapsed.as_secs_f64(),
            self.webhooks_per_second(),
            self.requests,
            self.overloaded,
            self.failed,
            self.first_failure.as_deref().map(|f| format!(" (first: {f})")).unwrap_or_default()
        )
    }

    fn add(&mut self, other: Posted) {
        self.requests += other.requests;
        self.accepted += other.accepted;
        self.duplicates += other.duplicates;
        self.overloaded += other.overloaded;
        self.failed += other.failed;
        self.first_failure = self.first_failure.take().or(other.first_failure);
        self.latencies.extend(other.latencies);
    }
}

/// Posts every delivery to the webhook `url` once (again after a 503, following a pause of
/// `retry_pause`), `concurrency` at a time over keep-alive connections; with a `limit`, stops
/// taking new deliveries once it has passed.
pub async fn post_all(
    url: &str,
    replay: Arc<Replay>,
    concurrency: usize,
    retry_pause: Duration,
    limit: Option<Duration>,
) -> Fallible<Posted> {
    let target = client::Target::parse(url)?;
    let next = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let total = replay.events.len();
    let started = Instant::now();
    let mut posters = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (next, answered, replay) = (next.clone(), answered.clone(), replay.clone());
        let mut connection = client::Connection::new(target.clone(), Duration::from_secs(30));
        posters.spawn(async move {
            let mut posted = Posted { latencies: Vec::with_capacity(total / 16), ..Posted::default() };
            let mut body = String::with_capacity(2048);
            loop {
                if limit.is_some_and(|limit| started.elapsed() >= limit) {
                    break;
                }
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(event) = replay.events.get(index) else { break };
                body.clear();
                webhook_body(event, &mut body);
                loop {
                    posted.requests += 1;
                    let sent = Instant::now();
                    let answer = connection.post_json(body.as_bytes()).await.map(|answer| (answer.status, answer.body));
                    match answer {
                        Ok((status, text)) if (200..300).contains(&status) => {
                            posted.latencies.push(sent.elapsed().as_micros() as u64);
                            if text.windows(9).any(|w| w == b"duplicate") {
                                posted.duplicates += 1;
                            } else {
                                posted.accepted += 1;
                            }
                        }
                        Ok((503, _)) => {
                            posted.overloaded += 1;
                            tokio::time::sleep(retry_pause).await;
                            continue;
                        }
                        Ok((status, text)) => {
                            posted.failed += 1;
                            posted.first_failure.get_or_insert_with(|| format!("{status}: {}", String::from_utf8_lossy(&text)));
                        }
                        Err(error) => {
                            posted.failed += 1;
                            posted.first_failure.get_or_insert_with(|| error.to_string());
                        }
                    }
                    break;
                }
                answered.fetch_add(1, Ordering::Relaxed);
            }
            posted
        });
    }
    let progress = {
        let answered = answered.clone();
        tokio::spawn(async move {
            let mut last = (Instant::now(), 0);
            loop {
                tokio::time::sleep(PROGRESS_EVERY).await;
                let now = (Instant::now(), answered.load(Ordering::Relaxed));
                let rate = (now.1 - last.1) as f64 / now.0.duration_since(last.0).as_secs_f64();
                eprintln!("http: {} of {total} webhooks answered, {rate:.0}/s", now.1);
                last = now;
            }
        })
    };
    let mut posted = Posted::default();
    while let Some(done) = posters.join_next().await {
        posted.add(done?);
    }
    posted.elapsed = started.elapsed();
    progress.abort();
    Ok(posted)
}
