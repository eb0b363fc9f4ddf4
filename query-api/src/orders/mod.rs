//! Reads of orders, exact at the request's `as_of` (default now), from what the processor
//! stored: every order's row as of its latest event, with its urgency (and why) and overrides.
//! Lists, KPIs and CSV filter and sort an in-memory index of those rows ([`index`]); they never
//! compute an order from its events, except for orders that changed after an `as_of` in the
//! past (a cursor pins its first page's instant), which are measured again from their events.
//!
//! - `GET /api/orders?project=SLUG&…filters…[&sort=][&limit=][&cursor=][&as_of=]`
//! - `GET /api/orders/kpis?project=SLUG&…filters…[&as_of=]`
//! - `GET /api/orders.csv?project=SLUG&…filters…[&sort=][&as_of=]`
//! - `GET /api/orders/{id}/timeline?project=SLUG[&as_of=]`

pub mod csv;
pub mod gauges;
pub mod index;
pub mod params;
pub mod registry;
pub mod rows;
pub mod select;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use ksa_bus::Bus;
use ksa_domain::ProjectRules;
use ksa_domain::row::{OrderInputs, row_at, row_from_events, timeline_at};
use ksa_domain::timeline::OrderOverrides;
use ksa_schemas::Timestamp;
use ksa_schemas::row::OrderRow;
use ksa_state::admin::OrderOverride;
use ksa_state::{Project, StateStore};
use serde_json::json;
use warp::reply::Response;

use self::index::{Clocks, Entry, Version};
use self::params::{Cursor, Filters, Sort};
use self::registry::SharedIndex;
use self::select::Snapshot;
use crate::QueryApi;
use crate::auth::now;
use crate::error::ApiError;
use crate::routes::{Call, json_bytes, ok, ok_bytes};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;

const DAY_MICROS: i64 = 86_400 * 1_000_000;

/// The orders of one project at one instant, as a read sees them.
pub struct Context {
    pub project: Project,
    pub as_of: Timestamp,
    pub index: SharedIndex,
    pub rules: Arc<ProjectRules>,
    pub revision: i64,
    /// Orders whose latest event is after `as_of` but that existed then, measured at `as_of`
    /// from their events: their rows, and their entries.
    pub past_rows: HashMap<i64, OrderRow>,
    pub past: Arc<HashMap<i64, Entry>>,
    /// The index's version the read sees (a cursor's first page's).
    pub version: Version,
}

impl Context {
    /// Runs `work` on the snapshot at `as_of`, on the blocking pool, under the index's read
    /// lock.
    pub async fn on_snapshot<S: StateStore, B: Bus, T: Send + 'static>(
        &self,
        api: &Arc<QueryApi<S, B>>,
        work: impl FnOnce(&Snapshot, &mut Clocks) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (index, past, as_of, version) = (self.index.clone(), self.past.clone(), self.as_of, self.version);
        api.compute(move || {
            let index = index.read().map_err(|_| ApiError::internal("the orders index is unusable"))?;
            let snapshot = Snapshot::new(&index, &past, Some(version), as_of.as_micros());
            let mut clocks = Clocks::new(&index.rules, as_of);
            Ok(work(&snapshot, &mut clocks))
        })
        .await?
    }
}

/// `as_of` from the request: within [the project's earliest order − 1 day, now + 1 day]
/// (outside it there is nothing to see, and a far instant would make the working clock walk
/// every day up to it).
async fn requested_as_of<S: StateStore, B: Bus>(call: &Call<'_, S, B>, project: &Project) -> Result<Option<Timestamp>, ApiError> {
    let Some(text) = call.request.param("as_of") else { return Ok(None) };
    let as_of = Timestamp::parse(text).ok_or_else(|| ApiError::bad("as_of", format!("{text:?} is not an RFC 3339 time")))?;
    if as_of.as_micros() > now().as_micros() + DAY_MICROS {
        return Err(ApiError::bad("as_of", format!("{as_of} is more than a day ahead; nothing is known about it yet")));
    }
    if let Some(first) = call.api.state.earliest_order(project.id).await?
        && as_of.as_micros() < first.as_micros() - DAY_MICROS
    {
        return Err(ApiError::bad("as_of", format!("{as_of} is more than a day before the project's first order ({first})")));
    }
    Ok(Some(as_of))
}

/// The group ids a filter may name: the project's groups.
fn known_groups(names: &rows::Names) -> Vec<u16> {
    let groups: Vec<u16> = names.groups.iter().map(|(id, _)| *id).collect();
    if groups.is_empty() { (1..=6).collect() } else { groups }
}

/// A listing's parameters, read before anything is computed so a bad one answers 400 at once.
pub struct Query {
    pub filters: Filters,
    pub sort: Sort,
    pub cursor: Option<Cursor>,
}

/// The orders filters of a request (the list's, the KPIs', the CSV's and the custom report's);
/// 400 naming the parameter that is wrong.
pub(crate) async fn filters<S: StateStore, B: Bus>(call: &Call<'_, S, B>, rules: &ProjectRules) -> Result<Filters, ApiError> {
    let project = call.project()?;
    let groups = known_groups(&*call.api.live.names(&call.api.state, project.id).await);
    let filters = Filters::parse(call.request, rules.settings.timezone, &groups)?;
    if let Some(cycle) = filters.cycle
        && !rules.settings.cycles.iter().any(|c| c.id == cycle)
    {
        return Err(ApiError::bad("cycle", format!("the project's settings have no cycle {cycle}")));
    }
    Ok(filters)
}

async fn query<S: StateStore, B: Bus>(call: &Call<'_, S, B>, rules: &ProjectRules, paged: bool) -> Result<Query, ApiError> {
    let project = call.project()?;
    let filters = filters(call, rules).await?;
    let sort = params::sort(call.request)?;
    let cursor = if paged { params::cursor(call.request, project.id, sort, &filters)? } else { None };
    Ok(Query { filters, sort, cursor })
}

/// What identical reads share a computation by (`crate::shared`): the endpoint, the project
/// and every query parameter.
fn read_key<S, B>(call: &Call<'_, S, B>, endpoint: &str) -> Result<String, ApiError> {
    let mut params: Vec<(&String, &String)> = call.request.query.iter().collect();
    params.sort_unstable();
    let params = serde_json::to_string(&params).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(format!("{endpoint} {} {params}", call.project()?.id))
}

/// The project's index, rules and `as_of` (the cursor's when one is given, else `requested`,
/// else now), with the orders that changed after `as_of` measured again at it.
async fn context<S: StateStore, B: Bus>(
    api: &Arc<QueryApi<S, B>>,
    project: Project,
    requested: Option<Timestamp>,
    cursor: Option<&Cursor>,
) -> Result<Context, ApiError> {
    context_at(api, project, requested, cursor.map(|c| (c.as_of, Some(c.version)))).await
}

/// [`context`] for a read whose earlier page pinned `as_of` and, while the index still knows
/// what changed since, the index's version.
pub(crate) async fn pinned_context<S: StateStore, B: Bus>(
    call: &Call<'_, S, B>,
    pin: Option<(Timestamp, Option<Version>)>,
) -> Result<Context, ApiError> {
    let project = call.project()?.clone();
    let requested = requested_as_of(call, &project).await?;
    context_at(call.api, project, requested, pin).await
}

async fn context_at<S: StateStore, B: Bus>(
    api: &Arc<QueryApi<S, B>>,
    project: Project,
    requested: Option<Timestamp>,
    pin: Option<(Timestamp, Option<Version>)>,
) -> Result<Context, ApiError> {
    let as_of = match (pin, requested) {
        (Some((pinned, _)), Some(as_of)) if pinned != as_of => {
            return Err(ApiError::bad("as_of", "a cursor keeps its first page's as_of; leave as_of out or give the same instant"));
        }
        (Some((pinned, _)), _) => pinned,
        (None, Some(as_of)) => as_of,
        (None, None) => now(),
    };
    let index = registry::index(api, project.id).await?;
    let (rules, revision) = {
        let index = index.read().map_err(|_| ApiError::internal("the orders index is unusable"))?;
        (index.rules.clone(), index.revision)
    };
    // The version to see: the cursor's while the index still knows what changed since (else
    // now), and the orders that existed at `as_of` but whose latest event then was after it.
    let (version, changed): (Version, Vec<i64>) = {
        let index = index.read().map_err(|_| ApiError::internal("the orders index is unusable"))?;
        let was = pin.and_then(|(_, version)| version).and_then(|v| index.as_it_was(v).map(|was| (v, was)));
        let (version, was) = was.unwrap_or_else(|| (index.version(), HashMap::new()));
        let as_of = as_of.as_micros();
        let existed_after = |e: &Entry| e.last > as_of && e.first_event_at <= as_of;
        let after = (as_of.saturating_add(1), i64::MIN);
        let mut changed: Vec<i64> = index
            .changed
            .range(after..)
            .map(|(_, id)| *id)
            .filter(|id| !was.contains_key(id) && index.get(*id).is_some_and(existed_after))
            .collect();
        changed.extend(was.iter().filter(|(_, e)| e.is_some_and(existed_after)).map(|(id, _)| *id));
        (version, changed)
    };
    let measured = measure_from_events(api, project.id, &changed, &rules, revision, as_of).await?;
    let mut past_rows = HashMap::with_capacity(measured.len());
    let mut past = HashMap::with_capacity(measured.len());
    for (id, (row, entry)) in measured {
        past_rows.insert(id, row);
        past.insert(id, entry);
    }
    Ok(Context { project, as_of, index, rules, revision, past_rows, past: Arc::new(past), version })
}

/// The rows of these orders at `as_of`, computed from their events with their stored inputs.
async fn measure_from_events<S: StateStore, B: Bus>(
    api: &Arc<QueryApi<S, B>>,
    project_id: i64,
    order_ids: &[i64],
    rules: &Arc<ProjectRules>,
    revision: i64,
    as_of: Timestamp,
) -> Result<HashMap<i64, (OrderRow, Entry)>, ApiError> {
    let mut measured = HashMap::with_capacity(order_ids.len());
    for chunk in order_ids.chunks(2_000) {
        let state = &api.state;
        let events = state.order_events(project_id, chunk).await?;
        let inputs = inputs(state, project_id, chunk, rules).await?;
        let rules = rules.clone();
        let rows = api
            .compute(move || {
                events
                    .into_iter()
                    .filter_map(|(id, events)| {
                        let inputs = inputs.get(&id).cloned().unwrap_or_default();
                        let row = row_from_events(&events, &inputs, &rules, revision, as_of)?;
                        let entry = Entry::from_row(&row, &rules);
                        Some((id, (row, entry)))
                    })
                    .collect::<Vec<_>>()
            })
            .await?;
        measured.extend(rows);
    }
    Ok(measured)
}

/// What the processor measures each order with besides its events: urgency from its fetched
/// items and its overrides.
async fn inputs<S: StateStore>(
    state: &S,
    project_id: i64,
    order_ids: &[i64],
    rules: &ProjectRules,
) -> Result<HashMap<i64, OrderInputs>, ApiError> {
    let lines = state.order_lines(project_id, order_ids).await?;
    let overrides = state.overrides(project_id, order_ids).await?;
    Ok(order_ids
        .iter()
        .map(|id| {
            let overrides = overrides.get(id).map(domain_overrides).unwrap_or_default();
            (*id, OrderInputs::new(lines.get(id).map(Vec::as_slice), overrides, &rules.settings.urgency_rules))
        })
        .collect())
}

fn domain_overrides(o: &OrderOverride) -> OrderOverrides {
    OrderOverrides::from_stored(o.is_urgent, o.sla_profile.as_deref(), o.cycle_start, o.cycle_end)
}

/// `GET /api/orders`: a page of the filtered, sorted orders (computed once for identical
/// requests asked at once: `crate::shared`).
pub async fn list<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    let limit = call.request.limit(DEFAULT_LIMIT, MAX_LIMIT)? as usize;
    let project = call.project()?.clone();
    let (rules, _) = call.api.applied_rules(project.id).await?;
    let query = query(call, &rules, true).await?;
    let requested = requested_as_of(call, &project).await?;
    let api = call.api.clone();
    let answer =
        call.api.shared.answer(read_key(call, "orders")?, move || async move { page(&api, project, requested, query, limit).await });
    Ok(ok_bytes(answer.await?))
}

async fn page<S: StateStore, B: Bus>(
    api: &Arc<QueryApi<S, B>>,
    project: Project,
    requested: Option<Timestamp>,
    Query { filters, sort, cursor }: Query,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let context = context(api, project, requested, cursor.as_ref()).await?;
    let after = cursor.as_ref().map(|c| c.position);
    let found = {
        let filters = filters.clone();
        context
            .on_snapshot(api, move |snapshot, clocks| {
                select::page(snapshot, clocks, &filters, sort, after, limit).into_iter().map(|(e, p)| (e.order_id, p)).collect::<Vec<_>>()
            })
            .await?
    };
    let ids: Vec<i64> = found.iter().map(|(id, _)| *id).collect();
    let rows = rows_at(api, &context, &ids).await?;
    let names = api.live.names(&api.state, context.project.id).await;
    let overrides = api.state.overrides(context.project.id, &ids).await?;
    let orders: Vec<_> =
        ids.iter().filter_map(|id| rows.get(id).map(|row| rows::ListedRow::new(row, &names, Some(overrides.get(id))))).collect();
    let next_cursor = (found.len() == limit)
        .then(|| found.last().map(|(_, p)| params::make_cursor(context.project.id, context.as_of, context.version, sort, &filters, *p)))
        .flatten();
    #[derive(serde::Serialize)]
    struct Page<'a> {
        orders: Vec<rows::ListedRow<'a>>,
        next_cursor: Option<String>,
        sort: String,
        settings_revision: i64,
        as_of: Timestamp,
    }
    json_bytes(&Page { orders, next_cursor, sort: sort.name(), settings_revision: context.revision, as_of: context.as_of })
}

/// `GET /api/orders/kpis`: figures over every order that matches (computed once for identical
/// requests asked at once: `crate::shared`).
pub async fn kpis<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    let project = call.project()?.clone();
    let (rules, _) = call.api.applied_rules(project.id).await?;
    let Query { filters, .. } = query(call, &rules, false).await?;
    let requested = requested_as_of(call, &project).await?;
    let api = call.api.clone();
    let kpis = call.api.shared.answer(read_key(call, "kpis")?, move || async move {
        let context = context(&api, project, requested, None).await?;
        let kpis = context.on_snapshot(&api, move |snapshot, _| select::snapshot_kpis(snapshot, &filters, select::KPI_CHUNK)).await?;
        json_bytes(&json!({
            "kpis": kpis_json(&kpis, &context.rules)?,
            "settings_revision": context.revision,
            "as_of": context.as_of,
        }))
    });
    Ok(ok_bytes(kpis.await?))
}

/// The KPIs as JSON, each cycle with its title from the settings.
pub(crate) fn kpis_json(kpis: &select::Kpis, rules: &ProjectRules) -> Result<serde_json::Value, ApiError> {
    let mut kpis = serde_json::to_value(kpis).map_err(|e| ApiError::internal(e.to_string()))?;
    if let Some(cycles) = kpis.get_mut("cycles").and_then(serde_json::Value::as_object_mut) {
        for rule in &rules.settings.cycles {
            if let Some(cycle) = cycles.get_mut(&rule.id.to_string()).and_then(serde_json::Value::as_object_mut) {
                cycle.insert("title".into(), json!(rule.title));
            }
        }
    }
    Ok(kpis)
}

/// `GET /api/orders.csv`: every matching order, streamed.
pub async fn csv<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    let (rules, _) = call.api.applied_rules(call.project()?.id).await?;
    let Query { filters, sort, .. } = query(call, &rules, false).await?;
    let project = call.project()?.clone();
    let requested = requested_as_of(call, &project).await?;
    let context = context(call.api, project, requested, None).await?;
    let names = rows::Names::load(&call.api.state, context.project.id).await?;
    csv::stream(call.api.clone(), context, filters, sort, names).await
}

/// `GET /api/orders/{id}/timeline`: one order's intervals, each with its working and
/// non-working segments, with its totals, urgency and why, and its override.
pub async fn timeline<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    let order_id = call.id("id")?;
    let project = call.project()?.clone();
    let as_of = requested_as_of(call, &project).await?.unwrap_or_else(now);
    let (rules, revision) = call.api.applied_rules(project.id).await?;
    let state = &call.api.state;
    let events = state.order_events(project.id, &[order_id]).await?.remove(&order_id).unwrap_or_default();
    let inputs = inputs(state, project.id, &[order_id], &rules).await?.remove(&order_id).unwrap_or_default();
    let stored = state.overrides(project.id, &[order_id]).await?.remove(&order_id);
    let names = rows::Names::load(state, project.id).await?;
    let value = call
        .api
        .compute(move || {
            let timeline = timeline_at(&events, &inputs, &rules, as_of)?;
            let row = ksa_domain::row::order_row(&timeline, &rules, inputs.effective_source(), revision);
            Some(rows::timeline_json(&timeline, &row, &rules, &names, stored.as_ref()))
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no order {order_id} as of {as_of}")))?;
    ok(&value)
}

/// The stored row of each order measured at `as_of`: from its stored row when its latest event
/// is not after `as_of`, else from its events.
async fn rows_at<S: StateStore, B: Bus>(
    api: &Arc<QueryApi<S, B>>,
    context: &Context,
    ids: &[i64],
) -> Result<HashMap<i64, OrderRow>, ApiError> {
    let stored = api.state.order_rows(context.project.id, ids).await?;
    let mut rows = HashMap::with_capacity(ids.len());
    let mut again = Vec::new();
    for id in ids {
        if let Some(row) = context.past_rows.get(id) {
            rows.insert(*id, row.clone());
            continue;
        }
        let parsed = stored.get(id).and_then(|json| serde_json::from_str::<OrderRow>(json).ok());
        match parsed.and_then(|row| row_at(&row, context.as_of, &context.rules)) {
            Some(row) => {
                rows.insert(*id, row);
            }
            // Changed since the index saw it, after `as_of`.
            None => again.push(*id),
        }
    }
    if !again.is_empty() {
        let measured = measure_from_events(api, context.project.id, &again, &context.rules, context.revision, context.as_of).await?;
        rows.extend(measured.into_iter().map(|(id, (row, _))| (id, row)));
    }
    Ok(rows)
}
