//! Read API over derived order state. Every order object has one shape everywhere: the
//! offline analyzer's, computed at the request's `as_of` (default: now), so open intervals and
//! SLA states are live.
//!
//! - `GET /api/orders?project=SLUG[&limit=N][&cursor=C][&as_of=T]`
//! - `GET /api/orders/{id}/timeline?project=SLUG[&as_of=T]`

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use ksa_domain::{OrderOverrides, OrderTimeline, ProjectRules, Urgency, compute_timeline};
use ksa_schemas::{ProjectSettings, Timestamp};
use ksa_state::{StateError, StateStore};
use serde_json::{Value, json};
use warp::Filter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;

/// Rules per project, rebuilt when the settings revision changes.
pub struct QueryApi<S: StateStore> {
    state: S,
    rules: Mutex<HashMap<i64, (i64, Arc<ProjectRules>)>>,
}

impl<S: StateStore> QueryApi<S> {
    pub fn new(state: S) -> Arc<Self> {
        Arc::new(QueryApi { state, rules: Mutex::new(HashMap::new()) })
    }

    async fn rules(&self, project_id: i64) -> Result<Arc<ProjectRules>, StateError> {
        let record = self.state.settings(project_id).await?;
        let revision = record.as_ref().map_or(0, |r| r.revision);
        if let Some((cached, rules)) = self.rules.lock().ok().and_then(|m| m.get(&project_id).cloned())
            && cached == revision
        {
            return Ok(rules);
        }
        let settings = record.and_then(|r| ProjectSettings::from_json(&r.document).ok()).unwrap_or_default();
        const YEAR: i64 = 366 * 86_400 * 1_000_000;
        let now = now().as_micros();
        let rules = Arc::new(ProjectRules::covering(settings, Timestamp::from_micros(now - 3 * YEAR), Timestamp::from_micros(now + YEAR)));
        if let Ok(mut map) = self.rules.lock() {
            map.insert(project_id, (revision, rules.clone()));
        }
        Ok(rules)
    }
}

/// The read routes.
pub fn routes<S: StateStore>(api: Arc<QueryApi<S>>) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let query = warp::query::<HashMap<String, String>>();
    // Path before method: a POST to an address that does not exist is a 404, not a 405.
    let list = {
        let api = api.clone();
        warp::path!("api" / "orders").and(warp::get()).and(query).then(move |q: HashMap<String, String>| {
            let api = api.clone();
            async move { respond(list_orders(&api, &q).await) }
        })
    };
    let timeline = warp::path!("api" / "orders" / String / "timeline").and(warp::get()).and(query).then(
        move |id: String, q: HashMap<String, String>| {
            let api = api.clone();
            async move { respond(order_timeline(&api, &id, &q).await) }
        },
    );
    let openapi = warp::path!("api" / "openapi.yaml")
        .and(warp::get())
        .map(|| warp::reply::with_header(OPENAPI, "content-type", "application/yaml").into_response());
    list.or(timeline).unify().or(openapi).unify()
}

/// The OpenAPI document of every public endpoint.
pub const OPENAPI: &str = include_str!("../../docs/openapi.yaml");

/// An error answer: status, code, message and the parameter at fault.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<&'static str>,
}

impl ApiError {
    fn bad(field: &'static str, message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::BAD_REQUEST, code: "invalid_parameter", message: message.into(), field: Some(field) }
    }

    fn not_found(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::NOT_FOUND, code: "not_found", message: message.into(), field: None }
    }
}

impl From<StateError> for ApiError {
    fn from(err: StateError) -> Self {
        tracing::warn!(error = %err, "read failed");
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            message: "state cannot be read; retry later".into(),
            field: None,
        }
    }
}

fn respond(result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(body) => warp::reply::json(&body).into_response(),
        Err(err) => {
            let mut body = json!({ "error": err.code, "message": err.message });
            if let Some(field) = err.field {
                body["field"] = json!(field);
            }
            warp::reply::with_status(warp::reply::json(&body), err.status).into_response()
        }
    }
}

struct Common {
    project_id: i64,
    as_of: Timestamp,
}

async fn common<S: StateStore>(api: &QueryApi<S>, q: &HashMap<String, String>) -> Result<Common, ApiError> {
    let slug = q.get("project").filter(|s| !s.is_empty()).ok_or_else(|| ApiError::bad("project", "missing: ?project=SLUG"))?;
    let project = api.state.project_by_slug(slug).await?.ok_or_else(|| ApiError::not_found(format!("no project `{slug}`")))?;
    let as_of = match q.get("as_of") {
        Some(text) => Timestamp::parse(text).ok_or_else(|| ApiError::bad("as_of", format!("{text:?} is not an RFC 3339 time")))?,
        None => now(),
    };
    Ok(Common { project_id: project.id, as_of })
}

async fn list_orders<S: StateStore>(api: &QueryApi<S>, q: &HashMap<String, String>) -> Result<Value, ApiError> {
    let Common { project_id, as_of } = common(api, q).await?;
    let limit = match q.get("limit") {
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| ApiError::bad("limit", format!("{text:?} is not a number from 1 to {MAX_LIMIT}")))?,
        None => DEFAULT_LIMIT,
    };
    let cursor = match q.get("cursor") {
        Some(text) => Some(parse_cursor(text).ok_or_else(|| ApiError::bad("cursor", "not a cursor this API returned"))?),
        None => None,
    };
    let rows = api.state.list_orders(project_id, limit, cursor).await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.order_id).collect();
    let mut events = api.state.order_events(project_id, &ids).await?;
    let rules = api.rules(project_id).await?;
    let mut orders = Vec::with_capacity(rows.len());
    for row in &rows {
        let Some(timeline) = timeline_of(events.remove(&row.order_id).unwrap_or_default(), &rules, as_of) else { continue };
        let mut value = serde_json::to_value(&timeline).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            map.remove("intervals");
        }
        orders.push(value);
    }
    let next_cursor =
        (rows.len() as u32 == limit).then(|| rows.last().map(|r| format!("{}.{}", r.last_changed_at.as_micros(), r.order_id))).flatten();
    Ok(json!({ "orders": orders, "next_cursor": next_cursor }))
}

async fn order_timeline<S: StateStore>(api: &QueryApi<S>, id: &str, q: &HashMap<String, String>) -> Result<Value, ApiError> {
    let order_id = id.parse::<i64>().map_err(|_| ApiError::bad("id", format!("{id:?} is not an order id")))?;
    let Common { project_id, as_of } = common(api, q).await?;
    let events = api.state.order_events(project_id, &[order_id]).await?.remove(&order_id).unwrap_or_default();
    let rules = api.rules(project_id).await?;
    let timeline = timeline_of(events, &rules, as_of).ok_or_else(|| ApiError::not_found(format!("no order {order_id} as of {as_of}")))?;
    Ok(serde_json::to_value(&timeline).unwrap_or(Value::Null))
}

fn timeline_of(events: Vec<ksa_schemas::StatusEvent>, rules: &ProjectRules, as_of: Timestamp) -> Option<OrderTimeline> {
    compute_timeline(&events, Urgency::Pending, &OrderOverrides::default(), rules, as_of)
}

fn parse_cursor(text: &str) -> Option<(Timestamp, i64)> {
    let (micros, order) = text.split_once('.')?;
    Some((Timestamp::from_micros(micros.parse().ok()?), order.parse().ok()?))
}

/// The wall clock, read at the edge: the default `as_of`.
fn now() -> Timestamp {
    Timestamp::from_micros(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64))
}

/// Turns unmatched routes into JSON 404s, so every error body is JSON.
pub async fn not_found(rejection: warp::Rejection) -> Result<Response, Infallible> {
    let (status, code, message) = if rejection.is_not_found() {
        (StatusCode::NOT_FOUND, "not_found", "no such endpoint; see /api/openapi.yaml")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint does not take that method; see /api/openapi.yaml")
    } else if rejection.find::<warp::reject::InvalidQuery>().is_some() {
        (StatusCode::BAD_REQUEST, "invalid_query", "the query string cannot be read")
    } else {
        (StatusCode::BAD_REQUEST, "bad_request", "the request cannot be read")
    };
    let body = json!({ "error": code, "message": message });
    Ok(warp::reply::with_status(warp::reply::json(&body), status).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_describes_every_route() {
        for path in [
            "/webhooks/keycrm/{project}:",
            "/webhooks/keycrm/{project}/{secret}:",
            "/api/orders:",
            "/api/orders/{id}/timeline:",
            "/api/openapi.yaml:",
        ] {
            assert!(OPENAPI.contains(path), "{path} is not described");
        }
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        assert_eq!(parse_cursor("1769712815000000.23196"), Some((Timestamp::from_micros(1_769_712_815_000_000), 23196)));
        assert_eq!(parse_cursor("abc"), None);
        assert_eq!(parse_cursor("1.x"), None);
    }
}
