//! `keycrm-analytics run`: ingest, processor and read API in one process.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use ksa_bus::Bus;
use ksa_ingest::{Ingest, IngestConfig};
use ksa_processor::Processor;
use ksa_query_api::QueryApi;
use ksa_schemas::bus::{ENRICH_REQUESTS, ORDER_UPDATES, STATUS_EVENTS};
use ksa_state::StateStore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use warp::Filter;

use crate::config::{Config, FactsKind};

pub const TOPICS: [&str; 3] = [STATUS_EVENTS, ORDER_UPDATES, ENRICH_REQUESTS];

/// Opens the configured state database and its outbox bus, binds `listen`, and serves until
/// `shutdown` turns true. `on_listening` is told the bound address (port 0 picks one).
pub async fn run(
    config: &Config,
    listen: &str,
    shutdown: watch::Receiver<bool>,
    on_listening: impl FnOnce(SocketAddr) + Send,
) -> anyhow::Result<()> {
    crate::apart::require_outbox(config, "run")?;
    crate::metrics::serve(config, "run", shutdown.clone()).await;
    let listener = TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    crate::apart::connect::with_bus(config, Embedded { config, listener, addr, shutdown, on_listening }).await
}

/// What `run` serves once its outbox bus and state are open.
struct Embedded<'a, L> {
    config: &'a Config,
    listener: TcpListener,
    addr: SocketAddr,
    shutdown: watch::Receiver<bool>,
    on_listening: L,
}

impl<L: FnOnce(SocketAddr) + Send> crate::apart::connect::WithBus for Embedded<'_, L> {
    fn run<B: Bus, S: StateStore>(self, bus: B, state: S) -> impl Future<Output = anyhow::Result<()>> + Send {
        serve(self.config, bus, state, self.listener, self.addr, self.shutdown, self.on_listening)
    }
}

async fn serve<B: Bus, S: StateStore>(
    config: &Config,
    bus: B,
    state: S,
    listener: TcpListener,
    addr: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
    on_listening: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    crate::access::ensure_owner(&state, config).await?;
    let ingest = Ingest::new(bus.clone(), state.clone(), IngestConfig::default());
    let api =
        QueryApi::new(state.clone(), bus.clone(), crate::enrich::cipher(config)?, crate::access::api_config(config, &addr.to_string())?);
    api.start_live(shutdown.clone());
    let api_handle = api.clone();
    let routes = ksa_ingest::routes(ingest.clone())
        .or(ksa_query_api::routes(api))
        .unify()
        .or(crate::apart::health_routes("run", state.clone()))
        .unify()
        .or(ksa_query_api::ui::routes(config.server.ui()))
        .unify()
        .recover(ksa_query_api::recover)
        .unify();

    let processor_config = crate::apart::processor_config(config);
    // One processor per partition: their transactions touch disjoint orders, so a database that
    // takes concurrent writers (PostgreSQL) commits them in parallel.
    // Facts turned on for a data dir that already holds orders: write theirs once.
    let backfill = config.facts.kind == FactsKind::Parquet
        && !config.facts.parquet.store(&config.data_dir).dir.exists()
        && !state.projects().await?.is_empty();
    let facts = crate::apart::open_facts(config).await?;
    if let Some(engine) = crate::apart::open_analytics(config).await? {
        let _ = api_handle.analytics.set(engine);
    }
    let mut processors = Vec::new();
    for partition in 0..bus.partitions(STATUS_EVENTS)? {
        let mut processor = Processor::new(bus.clone(), state.clone(), processor_config.clone(), Some(vec![partition]))
            .await
            .context("starting the processor")?;
        if let Some(facts) = &facts {
            processor = processor.with_facts(facts.clone());
            if backfill && partition == 0 {
                tracing::info!(
                    "facts are on for a data dir that holds orders: writing their facts (GET /api/settings/recompute shows the progress)"
                );
                processor = processor.with_facts_backfill();
            }
        }
        processors.push(processor);
    }

    let mut server_stop = shutdown.clone();
    let server = tokio::spawn(ksa_edge::serve(listener, routes, config.server.limits()?, async move {
        let _ = server_stop.wait_for(|stop| *stop).await;
    }));
    tracing::info!(%addr, "listening");
    let projects = state.projects().await?;
    if projects.is_empty() {
        tracing::info!(
            "no projects yet: add one with `keycrm-analytics project add --slug SLUG --name NAME`; it prints the webhook URL for KeyCRM"
        );
    }
    let public_url = config.server.public_url(&addr.to_string());
    for project in projects {
        tracing::info!(project = %project.slug, url = %format!("{public_url}/webhooks/keycrm/{}?token=<secret>", project.slug), "webhook URL");
    }
    on_listening(addr);

    // Payloads past retention.payload_days go to the archive every night.
    let nightly = tokio::spawn(crate::archive::nightly(state.clone(), config.clone(), shutdown.clone()));

    let flusher = {
        let ingest = ingest.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move { ingest.flush_until(ksa_ingest::FLUSH_EVERY, stop).await })
    };

    let enricher = if config.enricher.enabled {
        // Held while `run` runs: an `enrich` service beside it would double the KeyCRM calls.
        let claims = crate::apart::enrich::claim(config, &bus).await?;
        let access = crate::enrich::accessor(config).context("setting up the enricher")?;
        let enricher = ksa_enricher::Enricher::new(bus.clone(), state.clone(), access, crate::enrich::enricher_config(&config.enricher))
            .await
            .context("starting the enricher")?;
        let stop = shutdown.clone();
        Some(tokio::spawn(async move {
            let stats = enricher.run(stop).await;
            drop(claims);
            stats
        }))
    } else {
        None
    };

    // Below ingest's priority, on threads of their own (crate::background).
    let background = crate::background::Background::start(config.processor.nice).context("starting the processors' runtime")?;
    let running: Vec<_> = processors.into_iter().map(|p| background.handle().spawn(p.run(shutdown.clone()))).collect();
    let mut failure = None;
    let (mut batches, mut events, mut orders) = (0, 0, 0);
    for task in running {
        match task.await {
            Ok(Ok(stats)) => {
                batches += stats.batches;
                events += stats.new_events;
                orders += stats.orders_written;
            }
            Ok(Err(err)) => failure = Some(anyhow::Error::new(err)),
            Err(err) => failure = Some(anyhow::anyhow!("a processor task failed: {err}")),
        }
    }
    let _ = shutdown.wait_for(|s| *s).await;
    let _ = server.await;
    let _ = flusher.await;
    let _ = nightly.await;
    if let Some(enricher) = enricher
        && let Ok(stats) = enricher.await
    {
        tracing::info!(fetched = stats.items_fetched, dead_lettered = stats.dead_lettered, "enricher stopped");
    }
    if let Some(err) = failure {
        return Err(err);
    }
    tracing::info!(batches, events, orders, "stopped");
    Ok(())
}
