//! `keycrm-analytics enrich`: the enricher on its own (order items and urgency, status
//! dictionaries, reconciliation), from the same configuration, on Kafka or the outbox, with a
//! `/healthz` that reports its counts.
//!
//! One enricher per deployment: it claims every partition of `enrich-requests` (the claims of
//! `process`), so a second `enrich`, or a `run` with its enricher on, beside it fails at start.
//! Each project's KeyCRM calls are then paced by one limiter; a restarted enricher's limiters
//! start as if a call had just been made (docs/enricher.md).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use ksa_bus::Bus;
use ksa_schemas::bus::ENRICH_REQUESTS;
use ksa_state::StateStore;
use serde_json::json;
use tokio::sync::watch;
use warp::Filter;

use super::claim::{self, Claims};
use super::connect::WithBus;
use super::health;
use crate::config::Config;

pub(super) struct EnrichService<'a, L> {
    pub config: &'a Config,
    pub listen: String,
    pub shutdown: watch::Receiver<bool>,
    pub on_listening: L,
}

/// Claims the enricher's place: every partition of `enrich-requests`.
pub(crate) async fn claim<B: Bus>(config: &Config, bus: &B) -> anyhow::Result<Claims> {
    let topic = claim::topic_on_bus(config, ENRICH_REQUESTS);
    let partitions: Vec<u32> = (0..bus.partitions(ENRICH_REQUESTS)?).collect();
    Claims::take(&config.database_url(), &config.data_dir, &topic, &partitions).await.context(
        "another enricher runs against this state database (an `enrich` service, or `run` with enricher.enabled): \
         one enricher per deployment keeps each project's KeyCRM calls within its rate",
    )
}

impl<L: FnOnce(SocketAddr) + Send> WithBus for EnrichService<'_, L> {
    async fn run<B: Bus, S: StateStore>(self, bus: B, state: S) -> anyhow::Result<()> {
        let EnrichService { config, listen, shutdown, on_listening } = self;
        let claims = claim(config, &bus).await?;
        let access = crate::enrich::accessor(config).context("setting up the enricher")?;
        let enricher = ksa_enricher::Enricher::new(bus, state.clone(), access, crate::enrich::enricher_config(&config.enricher))
            .await
            .context("starting the enricher")?;
        let stats = enricher.stats();
        let report = Arc::new(move || {
            let s = stats.borrow().clone();
            json!({"items_fetched": s.items_fetched, "dead_lettered": s.dead_lettered})
        });
        let routes = health::route("enrich", report).or(health::ready_route(state)).unify().recover(ksa_query_api::recover).unify();
        let server = health::serve(config, &listen, routes, shutdown.clone(), on_listening).await?;
        let enriching = tokio::spawn(enricher.run(shutdown));
        let outcome = tokio::select! {
            stats = enriching => {
                if let Ok(stats) = stats {
                    tracing::info!(fetched = stats.items_fetched, dead_lettered = stats.dead_lettered, "enricher stopped");
                }
                Ok(())
            }
            lost = claim::fail_on(claims.watch()) => lost,
        };
        let _ = server.await;
        outcome
    }
}
