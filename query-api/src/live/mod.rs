//! The live feed: `GET /api/stream/orders?project=SLUG`, Server-Sent Events per user and
//! project, resumable with `Last-Event-ID`, with SLA crossings announced when time makes them.
//!
//! - [`feed`]: the process's one subscription to `order-updates`; it also keeps the orders
//!   index current.
//! - [`hub`]: a channel per project, and the feed's position (every event's id).
//! - [`crossings`]: per watched project, a timer on the instants at which orders turn near or
//!   over with no new event (`sla_changed`).
//! - [`stream`]: one client's stream: replay after its `Last-Event-ID`, then live events,
//!   heartbeats, and its end (too slow, access revoked, shutdown).

pub mod crossings;
pub mod feed;
pub mod hub;
pub mod stream;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ksa_schemas::row::OrderRow;
use ksa_state::StateStore;
use tokio::sync::watch;

use crate::orders::rows::{ListedRow, Names};
use hub::Hub;

/// How the live feed behaves (`live` in the configuration).
#[derive(Clone, Debug)]
pub struct LiveConfig {
    /// A comment line this often keeps idle connections open through proxies.
    pub heartbeat: Duration,
    /// How often a stream checks that its caller may still see the project.
    pub recheck: Duration,
    /// Events a stream may fall behind by (and records a resume may replay) before it gets
    /// `invalidate` and is closed.
    pub client_buffer: usize,
    /// Streams open at once, per user and in total.
    pub max_streams_per_user: usize,
    pub max_streams: usize,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            heartbeat: Duration::from_secs(15),
            recheck: Duration::from_secs(5),
            client_buffer: 1024,
            max_streams_per_user: 16,
            max_streams: 5_000,
        }
    }
}

/// How long names of statuses and groups are reused before they are read again.
const NAMES_FOR: Duration = Duration::from_secs(60);

/// The live feed's shared parts.
pub struct Live {
    pub config: LiveConfig,
    pub hub: Hub,
    names: Mutex<HashMap<i64, (Instant, Arc<Names>)>>,
    /// Open streams per user.
    streams: Mutex<HashMap<i64, usize>>,
    /// Projects whose crossings are being watched.
    watched: Mutex<HashSet<i64>>,
    /// Turns true at shutdown: streams end.
    shutdown: Mutex<Option<watch::Receiver<bool>>>,
}

impl Live {
    pub fn new(config: LiveConfig, partitions: usize) -> Self {
        Live {
            hub: Hub::new(partitions, config.client_buffer),
            config,
            names: Mutex::new(HashMap::new()),
            streams: Mutex::new(HashMap::new()),
            watched: Mutex::new(HashSet::new()),
            shutdown: Mutex::new(None),
        }
    }

    pub fn set_shutdown(&self, shutdown: watch::Receiver<bool>) {
        if let Ok(mut slot) = self.shutdown.lock() {
            *slot = Some(shutdown);
        }
    }

    /// A receiver that turns true at shutdown (never, when the feed was not started).
    pub fn shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown.lock().ok().and_then(|s| s.clone()).unwrap_or_else(|| watch::channel(false).1)
    }

    /// The project's names, read at most once a minute.
    pub async fn names<S: StateStore>(&self, state: &S, project_id: i64) -> Arc<Names> {
        if let Some((at, names)) = self.names.lock().ok().and_then(|n| n.get(&project_id).cloned())
            && at.elapsed() < NAMES_FOR
        {
            return names;
        }
        let names = Arc::new(Names::load(state, project_id).await.unwrap_or_default());
        if let Ok(mut cache) = self.names.lock() {
            cache.insert(project_id, (Instant::now(), names.clone()));
        }
        names
    }

    /// An `order_updated` event's data: the row as `GET /api/orders` shows it (without the
    /// override, which the timeline gives).
    pub async fn row_data<S: StateStore>(&self, state: &S, project_id: i64, row: &OrderRow) -> Arc<str> {
        let names = self.names(state, project_id).await;
        serde_json::to_string(&ListedRow::new(row, &names, None)).unwrap_or_default().into()
    }

    /// Forgets the project's cached names (a group was renamed).
    pub fn forget_names(&self, project_id: i64) {
        if let Ok(mut cache) = self.names.lock() {
            cache.remove(&project_id);
        }
    }

    /// Counts a new stream of `user_id`; `None` when a cap is reached.
    fn open_stream(self: &Arc<Self>, user_id: i64) -> Option<StreamSlot> {
        let mut streams = self.streams.lock().ok()?;
        let total: usize = streams.values().sum();
        let mine = streams.get(&user_id).copied().unwrap_or(0);
        if total >= self.config.max_streams || mine >= self.config.max_streams_per_user {
            return None;
        }
        *streams.entry(user_id).or_default() += 1;
        metrics::gauge!("ksa_sse_clients").set((total + 1) as f64);
        Some(StreamSlot { live: self.clone(), user_id })
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.streams.lock().map(|s| s.values().sum()).unwrap_or(0)
    }
}

/// One open stream, counted until dropped.
pub struct StreamSlot {
    live: Arc<Live>,
    user_id: i64,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if let Ok(mut streams) = self.live.streams.lock()
            && let Some(count) = streams.get_mut(&self.user_id)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                streams.remove(&self.user_id);
            }
            metrics::gauge!("ksa_sse_clients").set(streams.values().sum::<usize>() as f64);
        }
    }
}
