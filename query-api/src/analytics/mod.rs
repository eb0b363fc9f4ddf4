//! Analytics over long periods: `GET /api/analytics/{stages,cycles,sla,throughput,cancellations}`.
//! The fact rows are read by an [`AnalyticsEngine`]: DataFusion over the embedded mode's
//! Parquet files, or ClickHouse in the distributed mode. The SQL is written once
//! ([`sql`]), the answers are typed once ([`queries`]); `docs/analytics.md` defines each figure.

pub mod clickhouse;
pub mod datafusion;
pub mod engine;
pub mod params;
pub mod queries;
pub mod sql;

use std::fmt::Write;

use ksa_bus::Bus;
use ksa_state::StateStore;
use serde_json::{Value, json};
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

pub use self::clickhouse::ClickHouseEngine;
pub use self::datafusion::DataFusionEngine;
pub use engine::AnalyticsEngine;
use params::{By, Period};
use queries::Scope;

use crate::auth::now;
use crate::error::ApiError;
use crate::orders::csv::field;
use crate::routes::{Call, ok};

/// Which analytics query a route answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Query {
    Stages,
    Cycles,
    Sla,
    Throughput,
    Cancellations,
}

impl Query {
    pub fn name(self) -> &'static str {
        match self {
            Query::Stages => "stages",
            Query::Cycles => "cycles",
            Query::Sla => "sla",
            Query::Throughput => "throughput",
            Query::Cancellations => "cancellations",
        }
    }

    /// Runs the query (`per_status`: stages per status) and answers its JSON.
    pub async fn run(self, scope: &Scope<'_>, per_status: bool) -> Result<Value, String> {
        let answer = match self {
            Query::Stages => serde_json::to_value(queries::stages(scope, per_status).await?),
            Query::Cycles => serde_json::to_value(queries::cycles(scope).await?),
            Query::Sla => serde_json::to_value(queries::sla(scope).await?),
            Query::Throughput => serde_json::to_value(queries::throughput(scope).await?),
            Query::Cancellations => serde_json::to_value(queries::cancellations(scope).await?),
        };
        answer.map_err(|e| format!("the answer could not be written: {e}"))
    }

    /// The rows a CSV export holds.
    fn csv_rows(self) -> &'static str {
        match self {
            Query::Cancellations => "orders",
            _ => "rows",
        }
    }
}

/// `GET /api/analytics/{query}`.
pub async fn answer<S: StateStore, B: Bus>(call: &Call<'_, S, B>, query: Query) -> Result<Response, ApiError> {
    let project = call.project()?.clone();
    let engine = engine(call)?;
    let (rules, revision) = call.api.applied_rules(project.id).await?;
    let request = call.request;
    let period = Period::parse(request, rules.settings.timezone, now())?;
    let csv = wants_csv(request)?;
    let per_status = match request.param("per") {
        None | Some("group") => false,
        Some("status") if query == Query::Stages => true,
        Some(other) => {
            return Err(ApiError::bad("per", format!("{other:?} is not group{}", if query == Query::Stages { " or status" } else { "" })));
        }
    };
    let scope = Scope { engine: engine.as_ref(), project_id: project.id, settings: &rules.settings, period: &period };
    let started = std::time::Instant::now();
    let body = match query.run(&scope, per_status).await {
        Ok(body) => body,
        Err(error) => return Err(failed(query.name(), engine.as_ref(), &project.slug, &error)),
    };
    tracing::debug!(query = query.name(), engine = engine.name(), elapsed_ms = started.elapsed().as_millis() as u64, "analytics query");
    let tz = rules.settings.timezone;
    let local = |at: i64| local_time(tz, at);
    if csv {
        let filename = period_filename(query.name(), &project.slug, &period, tz);
        let rows = body.get(query.csv_rows()).and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
        return Ok(csv_attachment(csv_text(rows), &filename));
    }
    let mut answer = json!({
        "query": query.name(),
        "engine": engine.name(),
        "project": project.slug,
        "from": local(period.span.from),
        "to": local(period.span.to),
        "by": match period.by { By::Created => "created", By::Entered => "entered" },
        "bucket": period.buckets.as_ref().map(|(kind, _)| kind.name()),
        "urgency": period.urgency.name(),
        "settings_revision": revision,
    });
    if let (Some(answer), Value::Object(body)) = (answer.as_object_mut(), body) {
        answer.extend(body);
    }
    ok(&answer)
}

/// The deployment's analytics engine; 503 `analytics_off` when it writes no facts.
/// `format`: `json` (the default) or `csv`; true for CSV.
pub(crate) fn wants_csv(request: &crate::routes::Request) -> Result<bool, ApiError> {
    match request.param("format") {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(other) => Err(ApiError::bad("format", format!("{other:?} is not json or csv"))),
    }
}

pub(crate) fn engine<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<std::sync::Arc<dyn AnalyticsEngine>, ApiError> {
    call.api.analytics.get().cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "analytics_off",
            "analytics read the fact tables, and this deployment writes none: set facts.kind to parquet (embedded) or clickhouse",
        )
    })
}

/// A failed engine run: logged, and answered 503 `analytics_failed`.
pub(crate) fn failed(what: &str, engine: &dyn AnalyticsEngine, project: &str, error: &str) -> ApiError {
    tracing::error!(query = what, engine = engine.name(), project = %project, %error, "an analytics query failed");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "analytics_failed", format!("the {} engine failed: {error}", engine.name()))
}

/// An instant in the project's time zone, RFC 3339 with its offset.
pub(crate) fn local_time(tz: chrono_tz::Tz, at: i64) -> String {
    ksa_schemas::Timestamp::from_micros(at).to_datetime().with_timezone(&tz).to_rfc3339()
}

/// `{name}-{project}-{first day}_{last day}.csv`, the days local to the project.
pub(crate) fn period_filename(name: &str, slug: &str, period: &Period, tz: chrono_tz::Tz) -> String {
    format!(
        "{name}-{slug}-{}_{}.csv",
        local_time(tz, period.span.from).get(..10).unwrap_or_default(),
        // The last instant in the period: a bare `to` date names its own day.
        local_time(tz, period.span.to - 1).get(..10).unwrap_or_default()
    )
}

/// The columns that say what a row is about, first and in this order.
const KEY_COLUMNS: [&str; 8] = ["bucket", "urgency", "group_id", "status_id", "cycle_id", "title", "order_id", "orders"];

/// Rows as CSV: one column per (flattened) field, the keys first, then the others by name;
/// nested objects give `outer_inner` columns, lists a JSON cell.
pub fn csv_text(rows: &[Value]) -> String {
    let flat: Vec<Vec<(String, String)>> = rows.iter().map(|row| flatten(row, "")).collect();
    let mut columns: Vec<String> = Vec::new();
    for row in &flat {
        for (name, _) in row {
            if !columns.contains(name) {
                columns.push(name.clone());
            }
        }
    }
    let rank = |name: &String| KEY_COLUMNS.iter().position(|k| k == name).unwrap_or(KEY_COLUMNS.len());
    columns.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.cmp(b)));
    let mut out = String::new();
    let mut line = String::new();
    for name in &columns {
        field(&mut line, name);
    }
    let _ = writeln!(out, "{}", line.get(1..).unwrap_or_default());
    for row in &flat {
        line.clear();
        for name in &columns {
            let value = row.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str());
            field(&mut line, value);
        }
        let _ = writeln!(out, "{}", line.get(1..).unwrap_or_default());
    }
    out
}

fn flatten(value: &Value, prefix: &str) -> Vec<(String, String)> {
    let mut cells = Vec::new();
    match value {
        Value::Object(map) => {
            for (name, inner) in map {
                let name = if prefix.is_empty() { name.clone() } else { format!("{prefix}_{name}") };
                match inner {
                    Value::Object(_) => cells.extend(flatten(inner, &name)),
                    other => cells.push((name, cell(other))),
                }
            }
        }
        other => cells.push((prefix.to_owned(), cell(other))),
    }
    cells
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A CSV file as an attachment named `filename`.
pub(crate) fn csv_attachment(text: String, filename: &str) -> Response {
    let mut response = warp::reply::with_status(text, StatusCode::OK).into_response();
    let headers = response.headers_mut();
    headers.insert("content-type", warp::http::HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(value) = warp::http::HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert("content-disposition", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_flattens_nested_objects_and_quotes_what_needs_it() {
        let rows = vec![
            json!({"group_id": 2, "bucket": "2026-03-02", "working_seconds": {"sum": 10.5, "median": null}}),
            json!({"group_id": 3, "title": "a, \"b\"", "working_seconds": {"sum": 1.0, "median": 1.0}}),
        ];
        assert_eq!(
            csv_text(&rows),
            "bucket,group_id,title,working_seconds_median,working_seconds_sum\n2026-03-02,2,,,10.5\n,3,\"a, \"\"b\"\"\",1.0,1.0\n"
        );
    }
}
