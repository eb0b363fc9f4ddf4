//! `ksa_open_orders{project, sla}`: every active project's open orders by their SLA state now
//! (the worst over groups and statuses, as the projects page counts them), from the orders
//! index, every 15 s. A project's index is loaded for it if no request has loaded it yet.

use std::sync::Arc;
use std::time::Duration;

use ksa_bus::Bus;
use ksa_schemas::row::RowSla;
use ksa_state::StateStore;
use tokio::sync::watch;

use super::registry;
use crate::QueryApi;

const EVERY: Duration = Duration::from_secs(15);

/// Samples until `shutdown` turns true.
pub async fn sample<S: StateStore, B: Bus>(api: Arc<QueryApi<S, B>>, mut shutdown: watch::Receiver<bool>) {
    loop {
        if let Ok(projects) = api.state.projects().await {
            for project in projects.into_iter().filter(|p| p.is_active) {
                let Ok(index) = registry::index(&api, project.id).await else { continue };
                let now = crate::auth::now().as_micros();
                let mut counts = [0u64; 4];
                if let Ok(index) = index.read() {
                    for entry in index.entries().iter().filter(|e| e.open) {
                        counts[entry.sla_at(now) as usize] += 1;
                    }
                }
                for state in [RowSla::None, RowSla::Ok, RowSla::Near, RowSla::Over] {
                    metrics::gauge!("ksa_open_orders", "project" => project.slug.clone(), "sla" => state.as_str())
                        .set(counts[state as usize] as f64);
                }
            }
        }
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}
