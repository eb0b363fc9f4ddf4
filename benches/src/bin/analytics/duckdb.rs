//! DuckDB as the benchmark's anchor: a Python process (`benches/analytics_duckdb.py`) holding one
//! DuckDB connection over the same Parquet files, sent one SQL statement per line. Its SQL is
//! DataFusion's (the same relations over the same files), except for the few functions DuckDB
//! spells differently.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;

use ksa_query_api::analytics::datafusion::DataFusionSql;
use ksa_query_api::analytics::engine::{AnalyticsEngine, Row, RowsFuture};
use ksa_query_api::analytics::sql::Dialect;
use serde_json::{Value, json};

use crate::Fallible;

pub struct DuckDbEngine {
    process: Mutex<Process>,
}

struct Process {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Process {
    fn ask(&mut self, request: &Value) -> Result<Value, String> {
        writeln!(self.input, "{request}").and_then(|()| self.input.flush()).map_err(|e| format!("DuckDB process: {e}"))?;
        let mut line = String::new();
        self.output.read_line(&mut line).map_err(|e| format!("DuckDB process: {e}"))?;
        let answer: Value = serde_json::from_str(&line).map_err(|e| format!("DuckDB process answered {line:?}: {e}"))?;
        match answer.get("error") {
            Some(error) => Err(format!("DuckDB: {}", error.as_str().unwrap_or_default())),
            None => Ok(answer),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl DuckDbEngine {
    /// Starts the script with `python` (a virtualenv with `duckdb`) over the facts in `dir`.
    pub fn start(python: &Path, dir: &Path, threads: usize) -> Fallible<DuckDbEngine> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("analytics_duckdb.py");
        let mut child =
            Command::new(python).arg(&script).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().map_err(
                |e| {
                    format!(
                        "cannot start {} (a Python with the duckdb package: python3 -m venv ~/.cache/ksa-duckdb && \
                     ~/.cache/ksa-duckdb/bin/pip install duckdb): {e}",
                        python.display()
                    )
                },
            )?;
        let input = child.stdin.take().ok_or("no stdin")?;
        let output = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut process = Process { child, input, output };
        let version = process.ask(&json!({"facts": dir, "threads": threads}))?;
        eprintln!("DuckDB {}", version.get("version").and_then(Value::as_str).unwrap_or("?"));
        Ok(DuckDbEngine { process: Mutex::new(process) })
    }
}

struct DuckDbSql;

impl Dialect for DuckDbSql {
    fn intervals(&self, project_id: i64) -> String {
        DataFusionSql.intervals(project_id)
    }

    fn cycles(&self, project_id: i64) -> String {
        DataFusionSql.cycles(project_id)
    }

    fn sorted(&self, expr: &str) -> String {
        format!("list_sort(list({expr}) FILTER (WHERE {expr} IS NOT NULL))")
    }

    fn element(&self, array: &str, index: &str) -> String {
        format!("list_extract({array}, {index})")
    }

    fn int_div(&self, a: &str, b: &str) -> String {
        format!("(CAST({a} AS BIGINT) // CAST({b} AS BIGINT))")
    }

    fn int64(&self, expr: &str) -> String {
        DataFusionSql.int64(expr)
    }

    fn arg_max(&self, value: &str, by: &str) -> String {
        format!("arg_max({value}, {by})")
    }

    fn inner_join(&self) -> &'static str {
        DataFusionSql.inner_join()
    }
}

impl AnalyticsEngine for DuckDbEngine {
    fn name(&self) -> &'static str {
        "duckdb"
    }

    fn dialect(&self) -> &dyn Dialect {
        &DuckDbSql
    }

    fn rows<'a>(&'a self, _project_id: i64, sql: &'a str) -> RowsFuture<'a> {
        Box::pin(async move {
            let answer = self.process.lock().map_err(|_| "DuckDB process poisoned".to_owned())?.ask(&json!({"sql": sql}))?;
            let rows = answer.get("rows").and_then(Value::as_array).ok_or("DuckDB process answered no rows")?;
            Ok(rows.iter().filter_map(|row| row.as_object().cloned()).collect::<Vec<Row>>())
        })
    }
}
