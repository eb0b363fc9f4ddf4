//! Reports: `GET /api/reports/{custom,productivity,cancellations,success,sla,stage-time}`.
//! Each is a [`table::Table`] (rows with typed cells, sorted by any column, paged by an
//! opaque cursor, or every row as CSV) plus a summary. `custom` is the orders list's filters
//! and columns as a report, read from the orders index at `as_of`; the other five read the
//! analytics facts with the analytics parameters. `docs/analytics.md` ("Reports") defines
//! each.

pub mod build;
pub mod table;

use ksa_bus::Bus;
use ksa_schemas::Timestamp;
use ksa_state::StateStore;
use serde_json::{Map, Value, json};
use warp::reply::Response;

use self::table::{Cursor, SortBy, Table};
use crate::analytics::params::{By, Period, UrgencyFilter};
use crate::analytics::queries::Scope;
use crate::analytics::{self, csv_attachment, local_time, period_filename};
use crate::auth::now;
use crate::error::ApiError;
use crate::orders::index::Version;
use crate::orders::{self, DEFAULT_LIMIT, MAX_LIMIT};
use crate::routes::{Call, ok};

/// Which report a route answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    Custom,
    Productivity,
    Cancellations,
    Success,
    Sla,
    StageTime,
}

impl Report {
    pub fn name(self) -> &'static str {
        match self {
            Report::Custom => "custom",
            Report::Productivity => "productivity",
            Report::Cancellations => "cancellations",
            Report::Success => "success",
            Report::Sla => "sla",
            Report::StageTime => "stage-time",
        }
    }

    /// The sort when none is asked for.
    fn default_sort(self) -> &'static str {
        match self {
            Report::Custom => "-changed_at",
            Report::Productivity => "-over_seconds",
            Report::Cancellations => "cancelled_at",
            Report::Success => "completed_at",
            Report::Sla => "-worst",
            Report::StageTime => "group_id",
        }
    }
}

/// What a built report answers besides its rows.
struct Answer {
    table: Table,
    summary: Value,
    /// The fields that say what was read: the period, or `as_of`.
    head: Map<String, Value>,
    revision: i64,
    tz: chrono_tz::Tz,
    /// Pinned by the cursor: the period's "now" or the custom report's `as_of`.
    now: i64,
    version: Option<Version>,
    filename: String,
}

/// `GET /api/reports/{name}`.
pub async fn answer<S: StateStore, B: Bus>(call: &Call<'_, S, B>, report: Report) -> Result<Response, ApiError> {
    let project = call.project()?.clone();
    let request = call.request;
    let csv = analytics::wants_csv(request)?;
    let limit = request.limit(DEFAULT_LIMIT, MAX_LIMIT)? as usize;
    let fingerprint = table::fingerprint(report.name(), project.id, &request.query);
    let cursor = request.param("cursor").map(|text| Cursor::decode(text, &fingerprint)).transpose()?;
    let mut answer = match report {
        Report::Custom => custom(call, cursor.as_ref()).await?,
        _ => facts(call, report, cursor.as_ref()).await?,
    };
    let sort = SortBy::parse(request.param("sort"), report.default_sort(), &answer.table.columns)?;
    answer.table.sort(&sort);
    if csv {
        return Ok(csv_attachment(answer.table.csv(answer.tz), &answer.filename));
    }
    let (rows, more) = answer.table.page(&sort, cursor.as_ref().map(|c| &c.after), limit);
    let next_cursor = rows.last().filter(|_| more).map(|last| {
        Cursor {
            fingerprint: fingerprint.clone(),
            now: answer.now,
            after: sort.position(last),
            version: answer.version.map(|v| (v.generation, v.changes)),
        }
        .encode()
    });
    let mut body = Map::new();
    body.insert("report".into(), json!(report.name()));
    body.insert("project".into(), json!(project.slug));
    body.insert("settings_revision".into(), json!(answer.revision));
    body.extend(std::mem::take(&mut answer.head));
    body.insert("sort".into(), json!(sort.text()));
    body.insert("columns".into(), answer.table.columns_json());
    body.insert("total_rows".into(), json!(answer.table.rows.len()));
    body.insert("summary".into(), std::mem::take(&mut answer.summary));
    body.insert("rows".into(), answer.table.rows_json(rows, answer.tz));
    body.insert("next_cursor".into(), json!(next_cursor));
    ok(&Value::Object(body))
}

/// `custom`: the orders index at `as_of` (the cursor's), filtered as the orders list.
async fn custom<S: StateStore, B: Bus>(call: &Call<'_, S, B>, cursor: Option<&Cursor>) -> Result<Answer, ApiError> {
    let project = call.project()?.clone();
    let (rules, _) = call.api.applied_rules(project.id).await?;
    let filters = orders::filters(call, &rules).await?;
    let pin = cursor.map(|c| (Timestamp::from_micros(c.now), c.version.map(|(generation, changes)| Version { generation, changes })));
    let context = orders::pinned_context(call, pin).await?;
    let names = call.api.live.names(&call.api.state, project.id).await;
    let mut groups: Vec<u16> = names.groups.iter().map(|(id, _)| *id).collect();
    if groups.is_empty() {
        groups = (1..=6).collect();
    }
    let (table, kpis) = context
        .on_snapshot(call.api, move |snapshot, clocks| {
            let table = build::custom(snapshot, clocks, &filters, &names, &groups);
            (table, orders::select::snapshot_kpis(snapshot, &filters, orders::select::KPI_CHUNK))
        })
        .await?;
    let tz = context.rules.settings.timezone;
    let local = chrono::DateTime::from_timestamp_micros(context.as_of.as_micros()).unwrap_or_default().with_timezone(&tz);
    let mut head = Map::new();
    head.insert("as_of".into(), json!(context.as_of));
    Ok(Answer {
        table,
        summary: orders::kpis_json(&kpis, &context.rules)?,
        head,
        revision: context.revision,
        tz,
        now: context.as_of.as_micros(),
        version: Some(context.version),
        filename: format!("custom-{}-{}.csv", project.slug, local.format("%Y-%m-%d_%H%M")),
    })
}

/// The five reports over the analytics facts.
async fn facts<S: StateStore, B: Bus>(call: &Call<'_, S, B>, report: Report, cursor: Option<&Cursor>) -> Result<Answer, ApiError> {
    let project = call.project()?.clone();
    let request = call.request;
    if request.param("bucket").is_some() {
        return Err(ApiError::bad("bucket", "reports have a row per order or group, not per bucket; /api/analytics/* has buckets"));
    }
    if request.param("urgency") == Some(UrgencyFilter::Split.name()) {
        return Err(ApiError::bad("urgency", "reports take all, urgent, normal or pending; stage-time has a column per urgency"));
    }
    let engine = analytics::engine(call)?;
    let (rules, revision) = call.api.applied_rules(project.id).await?;
    let settings = &rules.settings;
    let tz = settings.timezone;
    let now = cursor.map_or_else(now, |c| Timestamp::from_micros(c.now));
    let period = Period::parse(request, tz, now)?;
    let scope = Scope { engine: engine.as_ref(), project_id: project.id, settings, period: &period };
    let built = match report {
        Report::Productivity => build::productivity(&scope).await,
        Report::Cancellations => build::cancellations(&scope).await,
        Report::Success => build::success(&scope).await,
        Report::Sla => {
            let names = call.api.live.names(&call.api.state, project.id).await;
            let mut groups: Vec<i64> = names.groups.iter().map(|(id, _)| i64::from(*id)).collect();
            if groups.is_empty() {
                groups = (1..=6).collect();
            }
            let terminal = scope.terminal();
            groups.retain(|g| !terminal.contains(g) && (period.groups.is_empty() || period.groups.contains(g)));
            build::sla(&scope, &groups).await
        }
        Report::StageTime => build::stage_time(&scope).await,
        Report::Custom => return Err(ApiError::internal("the custom report does not read facts")),
    };
    let (table, summary) = built.map_err(|error| analytics::failed(report.name(), engine.as_ref(), &project.slug, &error))?;
    let mut head = Map::new();
    head.insert("engine".into(), json!(engine.name()));
    head.insert("from".into(), json!(local_time(tz, period.span.from)));
    head.insert("to".into(), json!(local_time(tz, period.span.to)));
    head.insert(
        "by".into(),
        json!(match period.by {
            By::Created => "created",
            By::Entered => "entered",
        }),
    );
    head.insert("urgency".into(), json!(period.urgency.name()));
    Ok(Answer {
        table,
        summary,
        head,
        revision,
        tz,
        now: now.as_micros(),
        version: None,
        filename: period_filename(report.name(), &project.slug, &period, tz),
    })
}
