//! `keycrm-analytics ingest`: webhooks in, status events onto the bus.

use std::net::SocketAddr;
use std::sync::Arc;

use ksa_bus::Bus;
use ksa_ingest::{Ingest, IngestConfig};
use ksa_state::StateStore;
use tokio::sync::watch;
use warp::Filter;

use super::connect::WithBus;
use super::health;
use crate::config::Config;

pub(super) struct IngestService<'a, L> {
    pub config: &'a Config,
    pub listen: String,
    pub shutdown: watch::Receiver<bool>,
    pub on_listening: L,
}

impl<L: FnOnce(SocketAddr) + Send> WithBus for IngestService<'_, L> {
    async fn run<B: Bus, S: StateStore>(self, bus: B, state: S) -> anyhow::Result<()> {
        let IngestService { config, listen, shutdown, on_listening } = self;
        let ingest = Ingest::new(bus, state.clone(), IngestConfig::default());
        let routes = ksa_ingest::routes(ingest.clone())
            .or(health::route("ingest", Arc::new(|| serde_json::Value::Null)))
            .unify()
            .or(health::ready_route(state))
            .unify()
            .recover(ksa_query_api::recover)
            .unify();
        let server = health::serve(config, &listen, routes, shutdown.clone(), on_listening).await?;

        // Webhook statistics go to the state database every few seconds and once at the end.
        ingest.flush_until(ksa_ingest::FLUSH_EVERY, shutdown).await;
        let _ = server.await;
        ingest.flush_counters().await;
        tracing::info!("ingest stopped");
        Ok(())
    }
}
