//! The embedded mode's engine: DataFusion over the Parquet fact files. A project's files are
//! listed per query (compaction replaces them in the background), and the newest version per
//! natural key is chosen in the query, the rule the Parquet writer's compaction follows, except
//! in months of a single file: every file holds one row per key, so those rows are final.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::prelude::{SessionConfig, SessionContext};
use ksa_facts::parquet::{ParquetFacts, cycle_schema, interval_schema};
use serde_json::Value;

use super::engine::{AnalyticsEngine, Row, RowsFuture};
use super::sql::Dialect;

pub struct DataFusionEngine {
    facts: ParquetFacts,
    partitions: usize,
}

impl DataFusionEngine {
    /// Reads the facts under `dir` (`facts.parquet.dir`), with `partitions` threads per query.
    pub fn new(dir: impl Into<PathBuf>, partitions: usize) -> Self {
        DataFusionEngine { facts: ParquetFacts::new(dir), partitions: partitions.max(1) }
    }

    /// A session over the project's files: `status_intervals_unique` holds the interval files
    /// of months with one file (final as they are), `status_intervals` the others and
    /// `order_cycles` every cycle file (a cycle's newest row can be in another month).
    async fn context(&self, project_id: i64) -> Result<SessionContext, String> {
        let config = SessionConfig::new().with_target_partitions(self.partitions).with_information_schema(false);
        let context = SessionContext::new_with_config(config);
        let months = |table: &str| self.facts.months(table, project_id).map_err(|e| e.to_string());
        let (single, several): (Vec<Vec<PathBuf>>, Vec<Vec<PathBuf>>) =
            months("status_intervals")?.into_iter().partition(|files| files.len() == 1);
        let tables = [
            ("status_intervals_unique", interval_schema(), single.concat()),
            ("status_intervals", interval_schema(), several.concat()),
            ("order_cycles", cycle_schema(), months("order_cycles")?.concat()),
        ];
        for (table, schema, files) in tables {
            let provider: Arc<dyn datafusion::catalog::TableProvider> = if files.is_empty() {
                Arc::new(MemTable::try_new(schema.clone(), vec![vec![]]).map_err(|e| e.to_string())?)
            } else {
                Arc::new(listing(&files, schema)?)
            };
            context.register_table(table, provider).map_err(|e| e.to_string())?;
        }
        Ok(context)
    }

    async fn run(&self, project_id: i64, sql: &str) -> Result<Vec<Row>, String> {
        let context = self.context(project_id).await?;
        let frame = context.sql(sql).await.map_err(|e| format!("DataFusion: {e}"))?;
        let batches = frame.collect().await.map_err(|e| format!("DataFusion: {e}"))?;
        let mut rows = Vec::new();
        for batch in &batches {
            rows.extend(batch_rows(batch)?);
        }
        Ok(rows)
    }
}

fn listing(files: &[PathBuf], schema: SchemaRef) -> Result<ListingTable, String> {
    let urls = files
        .iter()
        .map(|file| ListingTableUrl::parse(file.to_string_lossy()).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls).with_listing_options(options).with_schema(schema);
    ListingTable::try_new(config).map_err(|e| e.to_string())
}

/// The columns of the analytics' intervals relation (`super::sql`) from a Parquet row.
const INTERVAL_COLUMNS: &str = "order_id, status_id, CAST(group_id AS BIGINT) AS group_id, CAST(entered_at AS BIGINT) AS entered_at, \
     CAST(left_at AS BIGINT) AS left_at, wall_seconds, working_seconds, CAST(version % 4 AS BIGINT) AS urgency, \
     CASE WHEN sla_state = 'over' THEN 3 WHEN sla_state = 'near' THEN 2 WHEN sla_state = 'ok' THEN 1 ELSE 0 END AS sla_rank, \
     CAST(order_created_at AS BIGINT) AS created_at, CAST(group_entered_at AS BIGINT) AS visit_at";

/// The SQL over the Parquet facts; DuckDB reads the same files with the same relations.
pub struct DataFusionSql;

impl Dialect for DataFusionSql {
    fn intervals(&self, _project_id: i64) -> String {
        // Months of one file as they are; elsewhere the newest version per (order, entry,
        // status) and, of one version, a row written after the placing columns existed. The
        // tables hold one project's files.
        format!(
            "(SELECT {INTERVAL_COLUMNS} FROM status_intervals_unique UNION ALL SELECT {INTERVAL_COLUMNS} FROM \
             (SELECT *, row_number() OVER (PARTITION BY order_id, entered_at, status_id \
             ORDER BY version DESC, CASE WHEN group_entered_at IS NULL THEN 1 ELSE 0 END) AS newest \
             FROM status_intervals) AS versions WHERE newest = 1)"
        )
    }

    fn cycles(&self, _project_id: i64) -> String {
        "(SELECT order_id, CAST(cycle_id AS BIGINT) AS cycle_id, CAST(started_at AS BIGINT) AS started_at, \
         CAST(ended_at AS BIGINT) AS ended_at, wall_seconds, working_seconds, CAST(version % 4 AS BIGINT) AS urgency, \
         CAST(order_created_at AS BIGINT) AS created_at \
         FROM (SELECT *, row_number() OVER (PARTITION BY order_id, cycle_id \
         ORDER BY version DESC, CASE WHEN order_created_at IS NULL THEN 1 ELSE 0 END) AS newest \
         FROM order_cycles) AS versions WHERE newest = 1)"
            .to_owned()
    }

    fn sorted(&self, expr: &str) -> String {
        format!("array_sort(array_agg({expr}) FILTER (WHERE {expr} IS NOT NULL))")
    }

    fn element(&self, array: &str, index: &str) -> String {
        format!("array_element({array}, {index})")
    }

    fn int_div(&self, a: &str, b: &str) -> String {
        format!("(CAST({a} AS BIGINT) / CAST({b} AS BIGINT))")
    }

    fn int64(&self, expr: &str) -> String {
        format!("CAST({expr} AS BIGINT)")
    }

    fn arg_max(&self, value: &str, by: &str) -> String {
        format!("first_value({value} ORDER BY {by} DESC)")
    }

    fn inner_join(&self) -> &'static str {
        "INNER JOIN"
    }
}

impl AnalyticsEngine for DataFusionEngine {
    fn name(&self) -> &'static str {
        "datafusion"
    }

    fn dialect(&self) -> &dyn Dialect {
        &DataFusionSql
    }

    fn rows<'a>(&'a self, project_id: i64, sql: &'a str) -> RowsFuture<'a> {
        Box::pin(async move {
            match self.run(project_id, sql).await {
                // A compaction may have replaced a file between the listing and the read.
                Err(error) if error.contains("No such file") || error.contains("not found") => self.run(project_id, sql).await,
                other => other,
            }
        })
    }
}

/// A record batch as JSON rows: integers, floats, strings, booleans and nulls.
fn batch_rows(batch: &RecordBatch) -> Result<Vec<Row>, String> {
    let schema = batch.schema();
    let mut rows = vec![Row::new(); batch.num_rows()];
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let name = field.name();
        let values: Vec<Value> = match column.data_type() {
            DataType::Null => vec![Value::Null; column.len()],
            DataType::Boolean => {
                let array = column.as_boolean();
                (0..array.len()).map(|i| if array.is_null(i) { Value::Null } else { Value::from(array.value(i)) }).collect()
            }
            t if t.is_integer() => {
                let cast = cast(column, &DataType::Int64).map_err(|e| format!("column {name}: {e}"))?;
                let array = cast.as_primitive::<Int64Type>();
                (0..array.len()).map(|i| if array.is_null(i) { Value::Null } else { Value::from(array.value(i)) }).collect()
            }
            t if t.is_floating() => {
                let cast = cast(column, &DataType::Float64).map_err(|e| format!("column {name}: {e}"))?;
                let array = cast.as_primitive::<Float64Type>();
                (0..array.len())
                    .map(|i| {
                        if array.is_null(i) {
                            Value::Null
                        } else {
                            serde_json::Number::from_f64(array.value(i)).map_or(Value::Null, Value::Number)
                        }
                    })
                    .collect()
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                let cast = cast(column, &DataType::Utf8).map_err(|e| format!("column {name}: {e}"))?;
                let array = cast.as_string::<i32>();
                (0..array.len()).map(|i| if array.is_null(i) { Value::Null } else { Value::from(array.value(i)) }).collect()
            }
            other => return Err(format!("column {name} has type {other}, which analytics do not read")),
        };
        for (row, value) in rows.iter_mut().zip(values) {
            row.insert(name.clone(), value);
        }
    }
    Ok(rows)
}
