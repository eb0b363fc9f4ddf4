//! The process's one subscription to `order-updates`: every partition read from where the
//! feed starts, each record applied to the orders index of its project and handed to the
//! project's streams. Several query-API processes each read the whole topic.

use std::sync::Arc;
use std::time::Duration;

use ksa_bus::{Bus, Record};
use ksa_schemas::bus::{LiveMessage, ORDER_UPDATES};
use ksa_schemas::row::OrderRow;
use ksa_state::StateStore;
use serde_json::json;
use tokio::sync::watch;

use super::hub::Kind;
use crate::QueryApi;

/// Records read at a time.
pub const BATCH: usize = 1_000;
/// How long a read waits for an append before it looks again.
const WAIT: Duration = Duration::from_millis(500);

/// Starts one reader per partition, each from the offset `start` gives (−1: the oldest
/// retained record).
pub fn start<S: StateStore, B: Bus>(api: Arc<QueryApi<S, B>>, start: Vec<i64>, shutdown: watch::Receiver<bool>) {
    api.live.hub.start_at(start.clone());
    for (partition, after) in start.into_iter().enumerate() {
        let (api, shutdown) = (api.clone(), shutdown.clone());
        tokio::spawn(read(api, partition as u32, after, shutdown));
    }
}

async fn read<S: StateStore, B: Bus>(api: Arc<QueryApi<S, B>>, partition: u32, mut after: i64, mut shutdown: watch::Receiver<bool>) {
    let mut failing = false;
    while !*shutdown.borrow() {
        let records = tokio::select! {
            records = api.bus.read(ORDER_UPDATES, partition, after, BATCH, WAIT) => records,
            _ = shutdown.changed() => break,
        };
        let records = match records {
            Ok(records) => {
                if failing {
                    tracing::info!(partition, "the live feed reads order-updates again");
                    failing = false;
                }
                records
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(partition, %error, "the live feed cannot read order-updates; retrying");
                    failing = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some(last) = records.last().map(|r| r.offset) else { continue };
        // Records the feed never saw are gone (retention passed it by): no index or stream
        // can be trusted to have every change.
        if after >= 0 && records[0].offset > after + 1 {
            tracing::warn!(
                partition,
                from = after + 1,
                to = records[0].offset - 1,
                "the live feed missed records that retention removed; reloading"
            );
            api.indexes.invalidate_all();
            api.live.hub.everyone(Kind::Invalidate, "invalidate", json!({"reason": "feed_gap"}).to_string().into());
        }
        after = last;
        apply(&api, partition, records).await;
    }
}

/// Applies a batch: rows to the indexes (parsed off the async workers), then every record to
/// the hub in order.
async fn apply<S: StateStore, B: Bus>(api: &Arc<QueryApi<S, B>>, partition: u32, records: Vec<Record>) {
    let parsed = tokio::task::spawn_blocking(move || {
        records
            .into_iter()
            .map(|record| {
                let message = serde_json::from_slice::<LiveMessage>(&record.payload);
                if let Err(error) = &message {
                    tracing::warn!(partition = record.partition, offset = record.offset, %error, "an order-updates record does not parse; skipped");
                }
                (record, message.ok())
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let rows: Vec<(i64, OrderRow)> = parsed
        .iter()
        .filter_map(|(_, message)| match message {
            Some(LiveMessage::OrderUpdated { project_id, row }) => Some((*project_id, (**row).clone())),
            _ => None,
        })
        .collect();
    if !rows.is_empty() {
        let api = api.clone();
        let _ = tokio::task::spawn_blocking(move || api.indexes.apply(rows)).await;
    }
    let hub = &api.live.hub;
    for (record, message) in parsed {
        let event = match message {
            // A row is written out only for a project someone listens to.
            Some(LiveMessage::OrderUpdated { project_id, row }) if hub.subscribers(project_id) > 0 => {
                let data = api.live.row_data(&api.state, project_id, &row).await;
                Some((project_id, Kind::OrderUpdated(Arc::new(*row)), "order_updated", data))
            }
            Some(LiveMessage::OrderUpdated { .. }) => None,
            Some(LiveMessage::Invalidate { project_id, revision }) => {
                api.indexes.invalidate(project_id);
                Some((project_id, Kind::Invalidate, "invalidate", json!({"reason": "settings", "revision": revision}).to_string().into()))
            }
            Some(LiveMessage::Recompute { project_id, revision, orders_done, orders_total, state }) => {
                let data = json!({"revision": revision, "orders_done": orders_done, "orders_total": orders_total, "state": state});
                Some((project_id, Kind::Recompute, "recompute", data.to_string().into()))
            }
            None => None,
        };
        hub.record(partition, record.offset, record.appended_at, event);
    }
}
