//! The enricher: everything that comes from KeyCRM's API rather than from webhooks. It fetches
//! order items (urgency) and marketing data, keeps the status dictionaries, and fills the gaps
//! lost webhooks leave (backfill and reconciliation), without ever going over a project's API
//! rate limit.
//!
//! - [`client`]: the HTTP client per project: token bucket, retries, circuit breaker.
//! - [`secret`]: API tokens encrypted at rest (AES-256-GCM) and redacted in memory.
//! - [`items`]: one order's items → `order_items`, `order_marketing`, `ItemsFetched`.
//! - [`statuses`]: the status dictionary sync and export.
//! - [`backfill`]: backfill and reconciliation over `GET /order`.
//! - [`worker`]: the long-running loop: `enrich-requests`, the durable retry schedule, the
//!   periodic refreshes.

pub mod api;
pub mod backfill;
pub mod circuit;
pub mod client;
pub mod items;
pub mod limiter;
pub mod marketing;
pub use ksa_state::secret;
pub mod statuses;
pub mod worker;

use std::sync::Arc;

use ksa_bus::BusError;
use ksa_schemas::Timestamp;
use ksa_state::{EnrichStore, StateError};

pub use client::{ApiError, ClientConfig, ClientStats, Clients, ProjectClient, ProjectEndpoint};
pub use secret::{Secret, SecretError, TokenCipher};
pub use worker::{Enricher, EnricherConfig, EnricherStats};

#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("no project with id {0}")]
    NoSuchProject(i64),
    #[error("project `{project}`: {reason}")]
    Project { project: String, reason: String },
}

/// The wall clock, read only here: due times of the retry schedule, `fetched_at`, backfill
/// windows. Derived analytics never depend on it.
pub fn now() -> Timestamp {
    let micros = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
    Timestamp::from_micros(micros)
}

/// The clients of the process and the key that opens the stored tokens: resolves a project id
/// to its client, shared by every caller.
#[derive(Clone, Debug)]
pub struct ApiAccessor {
    clients: Arc<Clients>,
    cipher: TokenCipher,
}

impl ApiAccessor {
    pub fn new(clients: Arc<Clients>, cipher: TokenCipher) -> Self {
        ApiAccessor { clients, cipher }
    }

    pub fn clients(&self) -> &Arc<Clients> {
        &self.clients
    }

    pub fn cipher(&self) -> &TokenCipher {
        &self.cipher
    }

    /// The project's client, from its stored base URL, token and rate.
    pub async fn client<S: EnrichStore>(&self, store: &S, project_id: i64) -> Result<Arc<ProjectClient>, EnrichError> {
        let access = store.api_access(project_id).await?.ok_or(EnrichError::NoSuchProject(project_id))?;
        let Some(token_enc) = access.token_enc.as_deref() else {
            return Err(ApiError::NoToken { project: access.slug }.into());
        };
        let token = self
            .cipher
            .decrypt(token_enc)
            .map_err(|error| EnrichError::Project { project: access.slug.clone(), reason: error.to_string() })?;
        Ok(self.clients.client(ProjectEndpoint {
            project_id,
            slug: access.slug,
            base_url: access.base_url,
            token,
            rate: access.rate_per_minute,
        }))
    }
}
