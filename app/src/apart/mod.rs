//! `keycrm-analytics ingest | process | query-api | enrich`: the services of `run`, each in a
//! process of its own, configured by the same file. With `bus.kind = "kafka"`, PostgreSQL and
//! `facts.kind = "clickhouse"` this is the distributed mode; on the outbox bus of a PostgreSQL
//! state database it also runs apart, without Kafka.
//!
//! Each service answers `GET /healthz` on its listen address (`process` too, for its stats),
//! which `keycrm-analytics probe URL` checks for container health checks.

mod claim;
pub(crate) mod connect;
pub(crate) mod enrich;
mod health;
mod ingest;
mod process;
mod query_api;

use std::net::SocketAddr;

use tokio::sync::watch;

use crate::config::Config;

pub use connect::{open_analytics, open_facts, processor_config, require_outbox};
pub use health::probe;

/// `GET /healthz` and `GET /readyz` of a service that has no report of its own.
pub fn health_routes<S: ksa_state::AdminStore>(
    service: &'static str,
    state: S,
) -> impl warp::Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    use warp::Filter;
    health::route(service, std::sync::Arc::new(|| serde_json::Value::Null)).or(health::ready_route(state)).unify()
}

/// A service to run apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Service {
    /// Webhooks in, events onto the bus.
    Ingest { listen: String },
    /// Events off the bus, facts and state out. `partitions` of `status-events` (all when
    /// `None`), one processor each; instances that run side by side need disjoint sets.
    Process { listen: String, partitions: Option<Vec<u32>> },
    /// The API behind a login: reads, administration and the OpenAPI document.
    QueryApi { listen: String },
    /// The enricher: order items and urgency, status dictionaries, reconciliation.
    Enrich { listen: String },
}

impl Service {
    pub fn name(&self) -> &'static str {
        match self {
            Service::Ingest { .. } => "ingest",
            Service::Process { .. } => "process",
            Service::QueryApi { .. } => "query-api",
            Service::Enrich { .. } => "enrich",
        }
    }
}

/// Runs `service` until `shutdown` turns true; `on_listening` is told the bound address.
pub async fn run(
    config: &Config,
    service: Service,
    shutdown: watch::Receiver<bool>,
    on_listening: impl FnOnce(SocketAddr) + Send,
) -> anyhow::Result<()> {
    crate::metrics::serve(config, service.name(), shutdown.clone()).await;
    match service {
        Service::Ingest { listen } => connect::with_bus(config, ingest::IngestService { config, listen, shutdown, on_listening }).await,
        Service::Process { listen, partitions } => {
            connect::with_bus(config, process::ProcessService { config, listen, partitions, shutdown, on_listening }).await
        }
        Service::QueryApi { listen } => {
            connect::with_bus(config, query_api::QueryApiService { config, listen, shutdown, on_listening }).await
        }
        Service::Enrich { listen } => connect::with_bus(config, enrich::EnrichService { config, listen, shutdown, on_listening }).await,
    }
}
