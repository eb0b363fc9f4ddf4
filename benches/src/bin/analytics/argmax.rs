//! An alternative to `FINAL` measured by the benchmark: ClickHouse choosing the newest version
//! of each interval with `argMax` grouped by the key (multi-threaded on 18.16, where `FINAL`
//! reads a partition in one thread). Everything but the intervals relation is the engine's own.
//! A tuple carries the columns, because aggregates skip NULL arguments: `argMax(left_at, …)`
//! alone would return an older, closed `left_at` for an interval that is open now.

use ksa_query_api::analytics::ClickHouseEngine;
use ksa_query_api::analytics::clickhouse::ClickHouseSql;
use ksa_query_api::analytics::engine::{AnalyticsEngine, RowsFuture};
use ksa_query_api::analytics::sql::Dialect;

pub struct ArgMaxEngine(pub ClickHouseEngine);

struct ArgMaxSql;

impl Dialect for ArgMaxSql {
    fn intervals(&self, project_id: i64) -> String {
        format!(
            "(SELECT order_id, status_id, toInt64(t.1) AS group_id, entered_at, t.2 AS left_at, t.3 AS wall_seconds, \
             t.4 AS working_seconds, toInt64(v % 4) AS urgency, toInt64(toInt8(t.5)) AS sla_rank, t.6 AS created_at, t.7 AS visit_at \
             FROM (SELECT order_id, status_id, entered_at, max(version) AS v, \
             argMax((group_id, left_at, wall_seconds, working_seconds, sla_state, order_created_at, group_entered_at), version) AS t \
             FROM status_intervals WHERE project_id = {project_id} GROUP BY order_id, entered_at, status_id))"
        )
    }

    fn cycles(&self, project_id: i64) -> String {
        ClickHouseSql.cycles(project_id)
    }

    fn sorted(&self, expr: &str) -> String {
        ClickHouseSql.sorted(expr)
    }

    fn element(&self, array: &str, index: &str) -> String {
        ClickHouseSql.element(array, index)
    }

    fn int_div(&self, a: &str, b: &str) -> String {
        ClickHouseSql.int_div(a, b)
    }

    fn int64(&self, expr: &str) -> String {
        ClickHouseSql.int64(expr)
    }

    fn arg_max(&self, value: &str, by: &str) -> String {
        ClickHouseSql.arg_max(value, by)
    }

    fn inner_join(&self) -> &'static str {
        ClickHouseSql.inner_join()
    }
}

impl AnalyticsEngine for ArgMaxEngine {
    fn name(&self) -> &'static str {
        "clickhouse-argmax"
    }

    fn dialect(&self) -> &dyn Dialect {
        &ArgMaxSql
    }

    fn rows<'a>(&'a self, project_id: i64, sql: &'a str) -> RowsFuture<'a> {
        self.0.rows(project_id, sql)
    }
}
