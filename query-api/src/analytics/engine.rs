//! The analytics engines: what runs the SQL of [`super::sql`] over a project's facts.
//! DataFusion reads the embedded mode's Parquet files, ClickHouse the distributed mode's
//! tables; both hand rows back as JSON objects, so every query decodes one shape.

use std::future::Future;
use std::pin::Pin;

use super::sql::Dialect;

/// One result row: column name to value.
pub type Row = serde_json::Map<String, serde_json::Value>;

pub type RowsFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<Row>, String>> + Send + 'a>>;

/// Runs analytics SQL over one project's facts.
pub trait AnalyticsEngine: Send + Sync {
    /// `datafusion` or `clickhouse`, for messages and the answers' `engine`.
    fn name(&self) -> &'static str;
    fn dialect(&self) -> &dyn Dialect;
    /// The rows of `sql`, which reads the relations of [`Dialect`] for `project_id`.
    fn rows<'a>(&'a self, project_id: i64, sql: &'a str) -> RowsFuture<'a>;
}
