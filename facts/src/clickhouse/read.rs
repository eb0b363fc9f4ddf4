//! Reading facts back as queries see them: `FINAL`, one row per natural key, the highest
//! version. For tests and checks that compare runs; analytics queries live in the query API.

use ksa_schemas::facts::{CycleFact, IntervalFact};

use super::ClickHouseSink;
use super::error::classify;
use super::rows::{CycleRow, IntervalRow};
use crate::FactError;

/// Reads a project's facts after deduplication.
pub trait FinalFacts {
    /// The project's intervals under `FINAL`, by order, entry time and status.
    fn final_intervals(&self, project_id: i64) -> impl Future<Output = Result<Vec<IntervalFact>, FactError>> + Send;
    /// The project's cycles under `FINAL`, by order and cycle rule.
    fn final_cycles(&self, project_id: i64) -> impl Future<Output = Result<Vec<CycleFact>, FactError>> + Send;
    /// Rows stored for the project in `table` before deduplication (`status_intervals` or
    /// `order_cycles`): shows whether a merge has happened yet.
    fn stored_rows(&self, table: &str, project_id: i64) -> impl Future<Output = Result<u64, FactError>> + Send;
}

impl FinalFacts for ClickHouseSink {
    async fn final_intervals(&self, project_id: i64) -> Result<Vec<IntervalFact>, FactError> {
        let sql = "SELECT ?fields FROM status_intervals FINAL WHERE project_id = ? ORDER BY order_id, entered_at, status_id";
        let rows = self
            .client()
            .query(sql)
            .bind(project_id)
            .fetch_all::<IntervalRow>()
            .await
            .map_err(|e| classify(self.config().display_url(), sql, e))?;
        rows.into_iter().map(|row| row.into_fact().map_err(FactError::InvalidRow)).collect()
    }

    async fn final_cycles(&self, project_id: i64) -> Result<Vec<CycleFact>, FactError> {
        let sql = "SELECT ?fields FROM order_cycles FINAL WHERE project_id = ? ORDER BY order_id, cycle_id";
        let rows = self
            .client()
            .query(sql)
            .bind(project_id)
            .fetch_all::<CycleRow>()
            .await
            .map_err(|e| classify(self.config().display_url(), sql, e))?;
        Ok(rows.into_iter().map(CycleFact::from).collect())
    }

    async fn stored_rows(&self, table: &str, project_id: i64) -> Result<u64, FactError> {
        if !matches!(table, "status_intervals" | "order_cycles") {
            return Err(FactError::Config(format!("`{table}` is not a fact table")));
        }
        let sql = format!("SELECT count() FROM {table} WHERE project_id = ?");
        self.client().query(&sql).bind(project_id).fetch_one::<u64>().await.map_err(|e| classify(self.config().display_url(), &sql, e))
    }
}
