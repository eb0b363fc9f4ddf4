//! Reads of orders: a page of a project's orders and one order's timeline, computed at the
//! request's `as_of` (default now) with the rules of the applied settings revision, the urgency
//! the enricher's items give and the order's overrides. Every answer names the settings
//! revision it was computed with.
//!
//! - `GET /api/orders?project=SLUG[&limit=N][&cursor=C][&as_of=T]`
//! - `GET /api/orders/{id}/timeline?project=SLUG[&as_of=T]`

use std::collections::HashMap;
use std::sync::Arc;

use ksa_bus::Bus;
use ksa_domain::{OrderOverrides, OrderTimeline, ProjectRules, Urgency, compute_timeline, matching_rule};
use ksa_schemas::{StatusEvent, Timestamp};
use ksa_state::StateStore;
use ksa_state::admin::OrderOverride;
use serde_json::{Value, json};
use warp::reply::Response;

use crate::admin::overrides::override_json;
use crate::auth::now;
use crate::error::ApiError;
use crate::routes::{Call, ok};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;

const DAY_MICROS: i64 = 86_400 * 1_000_000;

/// What a read computes orders with.
struct Context {
    project_id: i64,
    as_of: Timestamp,
    rules: Arc<ProjectRules>,
    revision: i64,
}

/// The instant to measure at: `as_of`, within [the project's earliest order − 1 day, now + 1
/// day] (outside it there is nothing to see, and a far instant would make the working clock
/// walk every day up to it).
async fn context<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Context, ApiError> {
    let project = call.project()?;
    let now = now();
    let as_of = match call.request.param("as_of") {
        Some(text) => {
            let as_of = Timestamp::parse(text).ok_or_else(|| ApiError::bad("as_of", format!("{text:?} is not an RFC 3339 time")))?;
            if as_of.as_micros() > now.as_micros() + DAY_MICROS {
                return Err(ApiError::bad("as_of", format!("{as_of} is more than a day ahead; nothing is known about it yet")));
            }
            if let Some(first) = call.api.state.earliest_order(project.id).await?
                && as_of.as_micros() < first.as_micros() - DAY_MICROS
            {
                return Err(ApiError::bad("as_of", format!("{as_of} is more than a day before the project's first order ({first})")));
            }
            as_of
        }
        None => now,
    };
    let (rules, revision) = call.api.applied_rules(project.id).await?;
    Ok(Context { project_id: project.id, as_of, rules, revision })
}

/// Everything a timeline needs of each order besides its events: urgency from its items (with
/// the rule that matched) and its override.
struct Inputs {
    urgency: HashMap<i64, (Urgency, Option<Value>)>,
    overrides: HashMap<i64, OrderOverride>,
}

async fn inputs<S: StateStore>(state: &S, context: &Context, order_ids: &[i64]) -> Result<Inputs, ApiError> {
    let lines = state.order_lines(context.project_id, order_ids).await?;
    let rules = &context.rules.settings.urgency_rules;
    let urgency = lines
        .into_iter()
        .map(|(order_id, lines)| {
            let found = matching_rule(&lines, rules);
            let source = found.map(|(rule, line)| {
                json!({"rule": rule.name, "line": line, "sku": lines[line].sku, "offer_id": lines[line].offer_id, "product_id": lines[line].product_id})
            });
            (order_id, (if found.is_some() { Urgency::Urgent } else { Urgency::Normal }, source))
        })
        .collect();
    let overrides = state.overrides(context.project_id, order_ids).await?;
    Ok(Inputs { urgency, overrides })
}

/// The order's timeline object, with where its urgency came from and its override.
fn order_value(timeline: &OrderTimeline, inputs: &Inputs, with_intervals: bool) -> Value {
    let mut value = serde_json::to_value(timeline).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        if !with_intervals {
            map.remove("intervals");
        }
        let stored = inputs.overrides.get(&timeline.order_id);
        let source = match (stored.and_then(|o| o.is_urgent), inputs.urgency.get(&timeline.order_id)) {
            (Some(_), _) => json!({"kind": "override"}),
            (None, Some((_, Some(rule)))) => json!({"kind": "rule", "match": rule}),
            (None, Some((_, None))) => json!({"kind": "items"}),
            (None, None) => json!({"kind": "pending"}),
        };
        map.insert("urgency_source".into(), source);
        map.insert("override".into(), stored.map_or(Value::Null, override_json));
    }
    value
}

fn compute(events: Vec<StatusEvent>, order_id: i64, inputs: &Inputs, rules: &ProjectRules, as_of: Timestamp) -> Option<OrderTimeline> {
    let urgency = inputs.urgency.get(&order_id).map_or(Urgency::Pending, |(u, _)| *u);
    let overrides = inputs
        .overrides
        .get(&order_id)
        .map(|o| OrderOverrides::from_stored(o.is_urgent, o.sla_profile.as_deref(), o.cycle_start, o.cycle_end))
        .unwrap_or_default();
    compute_timeline(&events, urgency, &overrides, rules, as_of)
}

/// `GET /api/orders`: newest change first.
pub async fn list<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    let request = call.request;
    let limit = request.limit(DEFAULT_LIMIT, MAX_LIMIT)?;
    let cursor = match request.param("cursor") {
        Some(text) => Some(parse_cursor(text).ok_or_else(|| ApiError::bad("cursor", "not a cursor this API returned"))?),
        None => None,
    };
    let context = context(call).await?;
    let state = &call.api.state;
    let rows = state.list_orders(context.project_id, limit, cursor).await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.order_id).collect();
    let mut events = state.order_events(context.project_id, &ids).await?;
    let inputs = inputs(state, &context, &ids).await?;
    let batch: Vec<(i64, Vec<StatusEvent>)> = ids.iter().map(|id| (*id, events.remove(id).unwrap_or_default())).collect();
    let (rules, as_of) = (context.rules.clone(), context.as_of);
    let orders = call
        .api
        .compute(move || {
            batch
                .into_iter()
                .filter_map(|(id, events)| compute(events, id, &inputs, &rules, as_of).map(|t| order_value(&t, &inputs, false)))
                .collect::<Vec<_>>()
        })
        .await?;
    let next_cursor =
        (rows.len() as u32 == limit).then(|| rows.last().map(|r| format!("{}.{}", r.last_changed_at.as_micros(), r.order_id))).flatten();
    ok(&json!({ "orders": orders, "next_cursor": next_cursor, "settings_revision": context.revision, "as_of": context.as_of }))
}

/// `GET /api/orders/{id}/timeline`.
pub async fn timeline<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    let order_id = call.id("id")?;
    let context = context(call).await?;
    let state = &call.api.state;
    let events = state.order_events(context.project_id, &[order_id]).await?.remove(&order_id).unwrap_or_default();
    let inputs = inputs(state, &context, &[order_id]).await?;
    let (rules, as_of) = (context.rules.clone(), context.as_of);
    let value = call
        .api
        .compute(move || compute(events, order_id, &inputs, &rules, as_of).map(|t| order_value(&t, &inputs, true)))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no order {order_id} as of {}", context.as_of)))?;
    let mut value = value;
    value["settings_revision"] = json!(context.revision);
    ok(&value)
}

fn parse_cursor(text: &str) -> Option<(Timestamp, i64)> {
    let (micros, order) = text.split_once('.')?;
    Some((Timestamp::from_micros(micros.parse().ok()?), order.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        assert_eq!(parse_cursor("1769712815000000.23196"), Some((Timestamp::from_micros(1_769_712_815_000_000), 23196)));
        assert_eq!(parse_cursor("abc"), None);
        assert_eq!(parse_cursor("1.x"), None);
    }
}
