//! `keycrm-analytics process`: processors for some or all partitions of `status-events`,
//! writing facts (when configured) before state, with a `/healthz` that reports their counts.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use ksa_bus::Bus;
use ksa_processor::{Processor, ProcessorStats};
use ksa_schemas::bus::STATUS_EVENTS;
use ksa_state::StateStore;
use serde_json::json;
use tokio::sync::watch;
use warp::Filter;

use super::claim::{self, Claims};
use super::connect::{WithBus, open_facts, processor_config};
use super::health;
use crate::config::Config;

pub(super) struct ProcessService<'a, L> {
    pub config: &'a Config,
    pub listen: String,
    pub partitions: Option<Vec<u32>>,
    pub shutdown: watch::Receiver<bool>,
    pub on_listening: L,
}

/// The partitions to process: the ones asked for (each once, each existing), else all.
fn chosen_partitions(asked: Option<Vec<u32>>, existing: u32) -> anyhow::Result<Vec<u32>> {
    let Some(asked) = asked else { return Ok((0..existing).collect()) };
    let unique: BTreeSet<u32> = asked.iter().copied().collect();
    if asked.is_empty() || unique.len() != asked.len() {
        bail!("--partitions must list each partition once: {asked:?}");
    }
    if let Some(missing) = unique.iter().find(|p| **p >= existing) {
        bail!("--partitions: {STATUS_EVENTS} has partitions 0..{existing}, not {missing}");
    }
    Ok(unique.into_iter().collect())
}

impl<L: FnOnce(SocketAddr) + Send> WithBus for ProcessService<'_, L> {
    async fn run<B: Bus, S: StateStore>(self, bus: B, state: S) -> anyhow::Result<()> {
        let ProcessService { config, listen, partitions, shutdown, on_listening } = self;
        let partitions = chosen_partitions(partitions, bus.partitions(STATUS_EVENTS)?)?;
        let claims =
            Claims::take(&config.database_url(), &config.data_dir, &claim::topic_on_bus(config, STATUS_EVENTS), &partitions).await?;
        let facts = open_facts(config).await?;
        match &facts {
            Some(sink) => tracing::info!(facts = sink.kind(), ?partitions, "processing"),
            None => tracing::warn!(?partitions, "facts.kind = \"none\": processing into state only, no facts are written"),
        }

        let settings = processor_config(config);
        let mut processors = Vec::new();
        let mut stats = Vec::new();
        for partition in &partitions {
            let mut processor = Processor::new(bus.clone(), state.clone(), settings.clone(), Some(vec![*partition]))
                .await
                .context("starting the processor")?;
            if let Some(sink) = &facts {
                processor = processor.with_facts(sink.clone());
            }
            stats.push(processor.stats());
            processors.push(processor);
        }

        let report = {
            let partitions = partitions.clone();
            Arc::new(move || {
                let total = stats.iter().map(|s| s.borrow().clone()).fold(ProcessorStats::default(), |mut sum, s| {
                    sum.batches += s.batches;
                    sum.records += s.records;
                    sum.new_events += s.new_events;
                    sum.orders_written += s.orders_written;
                    sum.recomputes += s.recomputes;
                    sum
                });
                json!({
                    "partitions": partitions,
                    "batches": total.batches,
                    "records": total.records,
                    "new_events": total.new_events,
                    "orders_written": total.orders_written,
                })
            })
        };
        let routes =
            health::route("process", report).or(health::ready_route(state.clone())).unify().recover(ksa_query_api::recover).unify();
        let server = health::serve(config, &listen, routes, shutdown.clone(), on_listening).await?;

        let running: Vec<_> = processors.into_iter().map(|p| tokio::spawn(p.run(shutdown.clone()))).collect();
        let processing = async {
            let mut failure = None;
            for task in running {
                match task.await {
                    Ok(Ok(stats)) => {
                        tracing::info!(
                            batches = stats.batches,
                            events = stats.new_events,
                            orders = stats.orders_written,
                            "processor stopped"
                        )
                    }
                    Ok(Err(err)) => failure = Some(anyhow::Error::new(err)),
                    Err(err) => failure = Some(anyhow::anyhow!("a processor task failed: {err}")),
                }
            }
            failure.map_or(Ok(()), Err)
        };
        let outcome = tokio::select! {
            outcome = processing => outcome,
            lost = claim::fail_on(claims.watch()) => lost,
        };
        let _ = server.await;
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_default_to_all_and_must_exist_once() {
        assert_eq!(chosen_partitions(None, 3).unwrap(), vec![0, 1, 2]);
        assert_eq!(chosen_partitions(Some(vec![2, 0]), 3).unwrap(), vec![0, 2]);
        assert!(chosen_partitions(Some(vec![1, 1]), 3).is_err());
        assert!(chosen_partitions(Some(vec![3]), 3).is_err());
        assert!(chosen_partitions(Some(vec![]), 3).is_err());
    }
}
