//! The indexes of every project this process serves: loaded from the stored rows on first use
//! (one load at a time per project, however many requests wait for it), kept current by the
//! live feed (`order-updates`), and rebuilt in the background when the applied settings revision
//! changes (requests keep the old index until the new one is ready).
//!
//! Rows announced while an index loads are kept aside and applied once it is loaded: the load
//! reads each order's row once, and a row announced after that read would otherwise be lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use ksa_bus::Bus;
use ksa_schemas::row::OrderRow;
use ksa_state::{StateError, StateStore};

use super::index::ProjectIndex;
use crate::QueryApi;

/// Rows read from the database at a time while loading.
const LOAD_PAGE: u32 = 5_000;

pub type SharedIndex = Arc<RwLock<ProjectIndex>>;

#[derive(Default)]
struct Slot {
    current: Option<SharedIndex>,
    /// A load is running: rows announced meanwhile wait here.
    loading: Option<Vec<OrderRow>>,
}

/// Every project's index, by project id.
#[derive(Default)]
pub struct Indexes {
    slots: Mutex<HashMap<i64, Slot>>,
    /// Signalled when a load finishes.
    loaded: tokio::sync::Notify,
}

impl Indexes {
    /// Applies announced rows to their projects' indexes (and to loads in progress).
    pub fn apply(&self, rows: Vec<(i64, OrderRow)>) {
        let mut targets: Vec<(SharedIndex, Vec<OrderRow>)> = Vec::new();
        {
            let Ok(mut slots) = self.slots.lock() else { return };
            let mut by_project: HashMap<i64, Vec<OrderRow>> = HashMap::new();
            for (project_id, row) in rows {
                by_project.entry(project_id).or_default().push(row);
            }
            for (project_id, rows) in by_project {
                let Some(slot) = slots.get_mut(&project_id) else { continue };
                if let Some(pending) = &mut slot.loading {
                    pending.extend(rows.iter().cloned());
                }
                if let Some(index) = &slot.current {
                    targets.push((index.clone(), rows));
                }
            }
        }
        for (index, rows) in targets {
            if let Ok(mut index) = index.write() {
                for row in &rows {
                    index.apply(row);
                }
            }
        }
    }

    /// Forgets the project's index: the next read loads it again (settings changed, or the
    /// feed lost its place).
    pub fn invalidate(&self, project_id: i64) {
        if let Ok(mut slots) = self.slots.lock()
            && let Some(slot) = slots.get_mut(&project_id)
        {
            slot.current = None;
        }
    }

    /// Forgets every index (the feed cannot vouch for any of them).
    pub fn invalidate_all(&self) {
        if let Ok(mut slots) = self.slots.lock() {
            for slot in slots.values_mut() {
                slot.current = None;
            }
        }
    }

    fn current(&self, project_id: i64) -> Option<SharedIndex> {
        self.slots.lock().ok()?.get(&project_id)?.current.clone()
    }

    /// Marks a load as started; false when one already runs.
    fn begin_load(&self, project_id: i64) -> bool {
        let Ok(mut slots) = self.slots.lock() else { return false };
        let slot = slots.entry(project_id).or_default();
        if slot.loading.is_some() {
            return false;
        }
        slot.loading = Some(Vec::new());
        true
    }

    fn end_load(&self, project_id: i64, index: Option<ProjectIndex>) {
        if let Ok(mut slots) = self.slots.lock() {
            let slot = slots.entry(project_id).or_default();
            let pending = slot.loading.take().unwrap_or_default();
            if let Some(mut index) = index {
                for row in &pending {
                    index.apply(row);
                }
                slot.current = Some(Arc::new(RwLock::new(index)));
            }
        }
        self.loaded.notify_waiters();
    }
}

/// The project's index at its applied revision: loaded now if there is none (waiting for a
/// load another request started), rebuilt in the background if its revision is old.
pub async fn index<S: StateStore, B: Bus>(api: &Arc<QueryApi<S, B>>, project_id: i64) -> Result<SharedIndex, StateError> {
    let indexes = &api.indexes;
    loop {
        let revision = api.state.applied_revision(project_id).await?;
        let notified = indexes.loaded.notified();
        if let Some(index) = indexes.current(project_id) {
            let stale = index.read().map(|i| i.revision != revision).unwrap_or(true);
            if stale && indexes.begin_load(project_id) {
                // The old index serves until the new one is ready.
                drop(spawn_load(api, project_id));
            }
            return Ok(index);
        }
        if indexes.begin_load(project_id) {
            let error = spawn_load(api, project_id).await.unwrap_or_else(|_| Some("the load stopped".into()));
            if let Some(error) = error {
                return Err(StateError::Corrupt(format!("loading the orders index: {error}")));
            }
            continue;
        }
        notified.await;
    }
}

/// Runs a load begun with `begin_load` as a task of its own, so it ends (and `end_load` runs)
/// even when the request that started it goes away or the load panics; the error, if any.
fn spawn_load<S: StateStore, B: Bus>(api: &Arc<QueryApi<S, B>>, project_id: i64) -> tokio::task::JoinHandle<Option<String>> {
    let api = api.clone();
    tokio::spawn(async move {
        use futures_util::FutureExt;
        let loaded = std::panic::AssertUnwindSafe(load(&api, project_id)).catch_unwind().await;
        let (index, error) = match loaded {
            Ok(Ok(index)) => (Some(index), None),
            Ok(Err(error)) => (None, Some(error.to_string())),
            Err(_) => (None, Some("the load panicked".to_owned())),
        };
        if let Some(error) = &error {
            tracing::warn!(project_id, %error, "loading the orders index failed");
        }
        api.indexes.end_load(project_id, index);
        error
    })
}

/// Reads every stored row of the project into a new index.
async fn load<S: StateStore, B: Bus>(api: &QueryApi<S, B>, project_id: i64) -> Result<ProjectIndex, StateError> {
    let started = Instant::now();
    let (rules, revision) = api.applied_rules(project_id).await?;
    let mut index = ProjectIndex::new(project_id, revision, rules);
    let mut after = i64::MIN;
    loop {
        let page = api.state.order_rows_after(project_id, after, LOAD_PAGE).await?;
        let Some(last) = page.last().map(|(id, _)| *id) else { break };
        after = last;
        let full = page.len() as u32 == LOAD_PAGE;
        // Parsing is the load's work: off the async workers.
        index = tokio::task::spawn_blocking(move || {
            for (order_id, json) in page {
                match serde_json::from_str::<OrderRow>(&json) {
                    Ok(row) => index.apply(&row),
                    Err(error) => {
                        tracing::warn!(project_id, order_id, %error, "a stored order row does not parse; it is left out of lists")
                    }
                }
            }
            index
        })
        .await
        .map_err(|e| StateError::Corrupt(format!("loading the orders index: {e}")))?;
        if !full {
            break;
        }
    }
    tracing::info!(project_id, orders = index.len(), revision, millis = started.elapsed().as_millis() as u64, "orders index loaded");
    Ok(index)
}
