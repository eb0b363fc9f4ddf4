//! The distributed mode's engine: ClickHouse over `status_intervals` and `order_cycles`. The
//! newest version of a row wins through `FINAL` (ReplacingMergeTree merges lazily). The SQL
//! runs on 18.16 and on current releases: no window functions, `ALL INNER JOIN` spelled out.

use clickhouse::Client;

use super::engine::{AnalyticsEngine, Row, RowsFuture};
use super::sql::Dialect;

pub struct ClickHouseEngine {
    client: Client,
}

impl ClickHouseEngine {
    /// Reads through `client`, already bound to the fact database.
    pub fn new(client: Client) -> Self {
        ClickHouseEngine { client }
    }
}

/// The SQL over the ClickHouse fact tables.
pub struct ClickHouseSql;

impl Dialect for ClickHouseSql {
    fn intervals(&self, project_id: i64) -> String {
        format!(
            "(SELECT order_id, status_id, toInt64(group_id) AS group_id, entered_at, left_at, wall_seconds, working_seconds, \
             toInt64(version % 4) AS urgency, toInt64(toInt8(sla_state)) AS sla_rank, order_created_at AS created_at, \
             group_entered_at AS visit_at FROM status_intervals FINAL WHERE project_id = {project_id})"
        )
    }

    fn cycles(&self, project_id: i64) -> String {
        format!(
            "(SELECT order_id, toInt64(cycle_id) AS cycle_id, started_at, ended_at, wall_seconds, working_seconds, \
             toInt64(version % 4) AS urgency, order_created_at AS created_at FROM order_cycles FINAL WHERE project_id = {project_id})"
        )
    }

    fn sorted(&self, expr: &str) -> String {
        // groupArray skips NULLs.
        format!("arraySort(groupArray({expr}))")
    }

    fn element(&self, array: &str, index: &str) -> String {
        format!("arrayElement({array}, {index})")
    }

    fn int_div(&self, a: &str, b: &str) -> String {
        format!("intDiv({a}, {b})")
    }

    fn int64(&self, expr: &str) -> String {
        format!("toInt64({expr})")
    }

    fn arg_max(&self, value: &str, by: &str) -> String {
        format!("argMax({value}, {by})")
    }

    fn inner_join(&self) -> &'static str {
        "ALL INNER JOIN"
    }
}

impl AnalyticsEngine for ClickHouseEngine {
    fn name(&self) -> &'static str {
        "clickhouse"
    }

    fn dialect(&self) -> &dyn Dialect {
        &ClickHouseSql
    }

    fn rows<'a>(&'a self, _project_id: i64, sql: &'a str) -> RowsFuture<'a> {
        Box::pin(async move {
            let bytes = self
                .client
                .query(sql)
                // Numbers as numbers: 18.16 quotes 64-bit integers in JSON by default.
                .with_setting("output_format_json_quote_64bit_integers", "0")
                .fetch_bytes("JSONEachRow")
                .map_err(|e| format!("ClickHouse: {e}"))?
                .collect()
                .await
                .map_err(|e| format!("ClickHouse: {e}"))?;
            let mut rows = Vec::new();
            for line in bytes.split(|b| *b == b'\n').filter(|line| !line.is_empty()) {
                rows.push(serde_json::from_slice::<Row>(line).map_err(|e| format!("ClickHouse answered a row that is not JSON: {e}"))?);
            }
            Ok(rows)
        })
    }
}
