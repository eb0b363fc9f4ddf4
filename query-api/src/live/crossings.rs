//! `sla_changed`: an order turns near or over because time passed, with no event to say so.
//! Every stored row carries the instants at which its current group and status cross their
//! thresholds if nothing else happens; while a project has streams, a timer here fires at
//! each such instant of the next minutes and tells the streams, after checking that the order
//! has not changed since (its newer row has its own instants).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ksa_bus::Bus;
use ksa_schemas::Timestamp;
use ksa_schemas::row::RowSla;
use ksa_state::StateStore;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::hub::Kind;
use crate::QueryApi;
use crate::auth::now;
use crate::orders::index::{Clocks, Entry, NEVER};
use crate::orders::registry;
use crate::orders::select::Measured;

/// How far ahead the timer holds instants; the index is scanned again as time reaches it.
const HORIZON: i64 = 120 * 1_000_000;
/// How often a watcher checks that its project still has streams.
const IDLE_CHECK: Duration = Duration::from_secs(5);

/// The distinct instants at which `entry` changes state with no event, with the scope and
/// state each brings.
pub fn instants(entry: &Entry) -> Vec<(i64, &'static str, RowSla)> {
    let mut out: Vec<(i64, &'static str, RowSla)> = Vec::with_capacity(4);
    for (at, scope, state) in [
        (entry.group_near_at, "group", RowSla::Near),
        (entry.group_over_at, "group", RowSla::Over),
        (entry.near_at, "status", RowSla::Near),
        (entry.over_at, "status", RowSla::Over),
    ] {
        if at != NEVER && !out.iter().any(|(a, _, s)| *a == at && *s == state) {
            out.push((at, scope, state));
        }
    }
    out
}

/// The `sla_changed` data of `entry` at `at` (one of its [`instants`]).
pub fn event_data(entry: &Entry, clocks: &mut Clocks, at: i64, scope: &str, state: RowSla) -> String {
    let measured = Measured::measure(entry, clocks);
    json!({
        "order_id": entry.order_id,
        "at": Timestamp::from_micros(at),
        "scope": scope,
        "state": state,
        "sla": measured.sla(at),
        "group_id": entry.group_id,
        "group_sla": measured.group_sla(entry.group_id, at),
        "status_id": entry.status_id,
    })
    .to_string()
}

/// Starts watching the project's crossings unless it is watched already.
pub fn watch<S: StateStore, B: Bus>(api: &Arc<QueryApi<S, B>>, project_id: i64) {
    let started = api.live.watched.lock().map(|mut w| w.insert(project_id)).unwrap_or(false);
    if started {
        let api = api.clone();
        tokio::spawn(async move {
            if let Err(error) = run(&api, project_id).await {
                tracing::warn!(project_id, error = %error.message, "watching SLA crossings stopped");
            }
            if let Ok(mut watched) = api.live.watched.lock() {
                watched.remove(&project_id);
            }
        });
    }
}

async fn run<S: StateStore, B: Bus>(api: &Arc<QueryApi<S, B>>, project_id: i64) -> Result<(), crate::ApiError> {
    let (mut updates, _) = api.live.hub.subscribe(project_id);
    let mut due: BinaryHeap<Reverse<(i64, i64)>> = BinaryHeap::new();
    let mut scanned_to = now().as_micros();
    scan(api, project_id, &mut due, scanned_to, scanned_to + HORIZON).await?;
    scanned_to += HORIZON;
    let mut idle = tokio::time::interval(IDLE_CHECK);
    loop {
        let current = now().as_micros();
        let next = due.peek().map_or(scanned_to, |Reverse((at, _))| (*at).min(scanned_to));
        let sleep = Duration::from_micros(next.saturating_sub(current).max(0) as u64);
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {
                let current = now().as_micros();
                let mut fired = Vec::new();
                while let Some(Reverse((at, order_id))) = due.peek().copied() && at <= current {
                    due.pop();
                    fired.push((at, order_id));
                }
                if !fired.is_empty() {
                    fire(api, project_id, fired).await?;
                }
                if current >= scanned_to {
                    scan(api, project_id, &mut due, scanned_to, current + HORIZON).await?;
                    scanned_to = current + HORIZON;
                }
            }
            update = updates.recv() => match update {
                Ok(delivery) => match &delivery.kind {
                    Kind::OrderUpdated(row) => {
                        let index = registry::index(api, project_id).await?;
                        let index = index.read().map_err(|_| crate::ApiError::internal("the orders index is unusable"))?;
                        let entry = Entry::from_row(row, &index.rules);
                        let current = now().as_micros();
                        for (at, _, _) in instants(&entry) {
                            if at > current && at <= scanned_to {
                                due.push(Reverse((at, entry.order_id)));
                            }
                        }
                    }
                    Kind::Invalidate => {
                        due.clear();
                        let current = now().as_micros();
                        scan(api, project_id, &mut due, current, current + HORIZON).await?;
                        scanned_to = current + HORIZON;
                    }
                    Kind::SlaChanged | Kind::Recompute => {}
                },
                Err(RecvError::Lagged(_)) => {
                    due.clear();
                    let current = now().as_micros();
                    scan(api, project_id, &mut due, current, current + HORIZON).await?;
                    scanned_to = current + HORIZON;
                }
                Err(RecvError::Closed) => return Ok(()),
            },
            _ = idle.tick() => {
                // This watcher is a subscriber itself.
                if api.live.hub.subscribers(project_id) <= 1 {
                    return Ok(());
                }
            }
        }
    }
}

/// Puts every crossing in `(from, to]` of the project's orders on the timer.
async fn scan<S: StateStore, B: Bus>(
    api: &Arc<QueryApi<S, B>>,
    project_id: i64,
    due: &mut BinaryHeap<Reverse<(i64, i64)>>,
    from: i64,
    to: i64,
) -> Result<(), crate::ApiError> {
    let index = registry::index(api, project_id).await?;
    let found = api
        .compute(move || {
            let Ok(index) = index.read() else { return Vec::new() };
            let mut found = Vec::new();
            for entry in index.entries().iter().filter(|e| e.open) {
                for (at, _, _) in instants(entry) {
                    if at > from && at <= to {
                        found.push((at, entry.order_id));
                    }
                }
            }
            found
        })
        .await?;
    due.extend(found.into_iter().map(Reverse));
    Ok(())
}

/// Tells the streams of the crossings that came, each checked against the order's current
/// entry (a row that came since has its own instants).
async fn fire<S: StateStore, B: Bus>(api: &Arc<QueryApi<S, B>>, project_id: i64, fired: Vec<(i64, i64)>) -> Result<(), crate::ApiError> {
    let index = registry::index(api, project_id).await?;
    let events = {
        let index = index.read().map_err(|_| crate::ApiError::internal("the orders index is unusable"))?;
        let mut sent = HashSet::new();
        let mut events = Vec::new();
        for (at, order_id) in fired {
            let Some(entry) = index.get(order_id) else { continue };
            if entry.last >= at || !sent.insert((order_id, at)) {
                continue;
            }
            let mut clocks = Clocks::new(&index.rules, Timestamp::from_micros(at));
            for (instant, scope, state) in instants(entry) {
                if instant == at {
                    events.push((at, event_data(entry, &mut clocks, at, scope, state)));
                    break;
                }
            }
        }
        events
    };
    for (at, data) in events {
        api.live.hub.derived(project_id, Kind::SlaChanged, "sla_changed", data.into(), Timestamp::from_micros(at));
    }
    Ok(())
}

/// The crossings of the project's orders in `(from, to]`, latest per order: what a client
/// resuming after `from` missed while away.
pub fn missed(entries: &[Entry], rules: &ksa_domain::ProjectRules, from: i64, to: i64) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for entry in entries.iter().filter(|e| e.open) {
        let latest = instants(entry)
            .into_iter()
            .filter(|(at, _, _)| *at > from && *at <= to && *at > entry.last)
            .max_by_key(|(at, _, state)| (*at, *state));
        if let Some((at, scope, state)) = latest {
            let mut clocks = Clocks::new(rules, Timestamp::from_micros(at));
            out.push((at, event_data(entry, &mut clocks, at, scope, state)));
        }
    }
    out.sort_by_key(|(at, _)| *at);
    out
}
