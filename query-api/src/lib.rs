//! The API behind a login: orders and timelines, projects and their settings, users, tokens,
//! overrides and the audit log. Every route is listed once, with who may call it, in
//! [`routes::ROUTES`]; `docs/openapi.yaml` describes each, and `docs/access.md` the rules.
//!
//! Layout: `auth/` (sessions, tokens, throttling, the rules of who may do what), `admin/`
//! (projects, settings, users, tokens, overrides, audit: the same functions serve the HTTP
//! routes and the command line), `orders` (reads), `routes` (the table and the one dispatcher).

pub mod admin;
pub mod analytics;
pub mod auth;
pub mod error;
pub mod live;
pub mod orders;
pub mod reports;
pub mod routes;
pub mod shared;
pub mod ui;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ksa_bus::Bus;
use ksa_domain::ProjectRules;
use ksa_schemas::bus::ORDER_UPDATES;
use ksa_schemas::{ProjectSettings, Timestamp};
use ksa_state::secret::TokenCipher;
use ksa_state::{AdminStore, StateError, StateStore};
use tokio::sync::Semaphore;

pub use auth::{AuthConfig, SessionKey};
pub use error::{ApiError, recover};
pub use routes::routes;

/// The OpenAPI document of every public endpoint.
pub const OPENAPI: &str = include_str!("../../docs/openapi.yaml");

/// How the API behaves.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    pub auth: AuthConfig,
    /// The address people and KeyCRM reach this deployment at (`server.public_url`), the base
    /// of every webhook URL shown.
    pub public_url: String,
    /// How long a rotated webhook secret keeps working.
    pub secret_grace: Duration,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Timelines computed at once, off the async workers.
    pub timeline_concurrency: usize,
    /// The file that holds the first owner's generated password: removed once it is changed.
    pub owner_password_file: Option<std::path::PathBuf>,
    pub live: live::LiveConfig,
    /// Keep callers in memory where the database tells of their changes
    /// (`StateStore::keep_access_in_memory`; `database.keep_callers_in_memory`).
    pub keep_callers_in_memory: bool,
}

impl ApiConfig {
    pub fn new(auth: AuthConfig, public_url: impl Into<String>) -> Self {
        ApiConfig {
            auth,
            public_url: public_url.into().trim_end_matches('/').to_owned(),
            secret_grace: Duration::from_secs(600),
            max_body_bytes: 1024 * 1024,
            timeline_concurrency: 4,
            owner_password_file: None,
            live: live::LiveConfig::default(),
            keep_callers_in_memory: true,
        }
    }
}

/// What the routes share.
pub struct QueryApi<S, B> {
    pub state: S,
    /// Where overrides go to reach the processor (as an order's event does).
    pub bus: B,
    /// Encrypts API tokens at rest.
    pub cipher: TokenCipher,
    pub config: ApiConfig,
    /// Compiled rules per project, at the applied settings revision.
    rules: Mutex<HashMap<i64, (i64, Arc<ProjectRules>)>>,
    /// Bounds the timelines computed at once.
    timelines: Semaphore,
    /// Every project's orders, in memory, for lists, KPIs and CSV.
    pub indexes: orders::registry::Indexes,
    /// Identical reads of orders asked at once, computed once.
    pub shared: shared::Shared,
    pub live: Arc<live::Live>,
    /// What answers `/api/analytics/…`: set once at start when the deployment writes facts.
    pub analytics: std::sync::OnceLock<Arc<dyn analytics::AnalyticsEngine>>,
}

impl<S: StateStore, B: Bus> QueryApi<S, B> {
    pub fn new(state: S, bus: B, cipher: TokenCipher, config: ApiConfig) -> Arc<Self> {
        let timelines = Semaphore::new(config.timeline_concurrency.max(1));
        let partitions = bus.partitions(ORDER_UPDATES).unwrap_or(1) as usize;
        let live = Arc::new(live::Live::new(config.live.clone(), partitions));
        Arc::new(QueryApi {
            state,
            bus,
            cipher,
            config,
            rules: Mutex::new(HashMap::new()),
            timelines,
            indexes: Default::default(),
            shared: Default::default(),
            live,
            analytics: Default::default(),
        })
    }

    /// Starts reading `order-updates`: the live streams' events, and what keeps the orders
    /// index current. Streams end when `shutdown` turns true.
    /// Also samples the open orders' SLA states for `/metrics` (`orders::gauges`), and keeps
    /// callers in memory where the database tells of their changes (`StateStore::keep_access_in_memory`).
    pub fn start_live(self: &Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        self.live.set_shutdown(shutdown.clone());
        if self.config.keep_callers_in_memory {
            self.state.keep_access_in_memory();
        }
        tokio::spawn(orders::gauges::sample(self.clone(), shutdown.clone()));
        let api = self.clone();
        tokio::spawn(async move {
            // From the end of each partition: the index loads what came before from the state
            // store, and a resume reads it from the bus itself.
            let partitions = api.live.hub.position().offsets.len();
            let mut start = Vec::with_capacity(partitions);
            for partition in 0..partitions as u32 {
                let mut failing = false;
                let end = loop {
                    match api.bus.end_offset(ORDER_UPDATES, partition).await {
                        Ok(end) => break end,
                        Err(error) => {
                            if !failing {
                                tracing::warn!(partition, %error, "the live feed cannot find the end of order-updates; retrying");
                                failing = true;
                            }
                            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        }
                    }
                };
                start.push(end);
            }
            live::feed::start(api, start, shutdown);
        });
    }

    /// The project's rules at the revision whose recompute has finished (reads keep the
    /// previous revision's rules until then), and that revision.
    pub async fn applied_rules(&self, project_id: i64) -> Result<(Arc<ProjectRules>, i64), StateError> {
        let revision = self.state.applied_revision(project_id).await?;
        if let Some((cached, rules)) = self.rules.lock().ok().and_then(|m| m.get(&project_id).cloned())
            && cached == revision
        {
            return Ok((rules, revision));
        }
        let document = match revision {
            0 => None,
            revision => self.state.settings_revision(project_id, revision).await?,
        };
        let settings = document.and_then(|d| ProjectSettings::from_json(&d).ok()).unwrap_or_default();
        const YEAR: i64 = 366 * 86_400 * 1_000_000;
        let now = auth::now().as_micros();
        let rules = Arc::new(ProjectRules::covering(settings, Timestamp::from_micros(now - 3 * YEAR), Timestamp::from_micros(now + YEAR)));
        if let Ok(mut map) = self.rules.lock() {
            map.insert(project_id, (revision, rules.clone()));
        }
        Ok((rules, revision))
    }

    /// Runs CPU-bound work (timelines) on the blocking pool, at most
    /// [`ApiConfig::timeline_concurrency`] at a time, so a burst of heavy reads never stalls
    /// the async workers that answer everything else.
    pub async fn compute<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
        let _permit = self.timelines.acquire().await.map_err(|_| ApiError::from(StateError::Corrupt("shutting down".into())))?;
        tokio::task::spawn_blocking(work).await.map_err(|e| ApiError::from(StateError::Corrupt(format!("a computation failed: {e}"))))
    }
}

/// Whether a state store answers: what `/readyz` reports.
pub async fn ready<S: AdminStore>(state: &S) -> bool {
    state.user_count().await.is_ok()
}
