//! Per-order overrides by a person (urgency, SLA grid, the default cycle's start and end).
//! Stored, then announced on `status-events` like an event of the order, so the processor
//! recomputes the order with them and stored rows, facts and live updates carry them.

use ksa_bus::{Bus, NewRecord};
use ksa_schemas::Timestamp;
use ksa_schemas::bus::{STATUS_EVENTS, StatusMessage, order_key};
use ksa_state::StateStore;
use ksa_state::admin::OrderOverride;
use serde::Deserialize;
use serde_json::{Value, json};
use warp::reply::Response;

use crate::admin::record;
use crate::auth::now;
use crate::error::ApiError;
use crate::routes::{Call, ok};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideRequest {
    #[serde(default)]
    is_urgent: Option<bool>,
    #[serde(default)]
    sla_profile: Option<String>,
    #[serde(default)]
    cycle_start: Option<String>,
    #[serde(default)]
    cycle_end: Option<String>,
}

/// An override as answers show it.
pub fn override_json(value: &OrderOverride) -> Value {
    json!({
        "is_urgent": value.is_urgent,
        "sla_profile": value.sla_profile,
        "cycle_start": value.cycle_start.map(|t| t.to_string()),
        "cycle_end": value.cycle_end.map(|t| t.to_string()),
        "updated_by": value.updated_by,
        "updated_at": value.updated_at.map(|t| t.to_string()),
    })
}

fn instant(field: &str, text: Option<String>) -> Result<Option<Timestamp>, ApiError> {
    text.map(|t| Timestamp::parse(&t).ok_or_else(|| ApiError::bad(field, format!("{t:?} is not an RFC 3339 time")))).transpose()
}

async fn order_exists<S: StateStore, B: Bus>(call: &Call<'_, S, B>, project_id: i64, order_id: i64) -> Result<(), ApiError> {
    let events = call.api.state.order_events(project_id, &[order_id]).await?;
    if events.get(&order_id).is_none_or(Vec::is_empty) {
        return Err(ApiError::not_found(format!("no order {order_id} in this project")));
    }
    Ok(())
}

/// Tells the processor the order's override changed; it recomputes the order.
async fn announce<S: StateStore, B: Bus>(call: &Call<'_, S, B>, project_id: i64, order_id: i64) -> Result<(), ApiError> {
    let message = StatusMessage::OverrideChanged { project_id, order_id, changed_at: now() };
    let payload = serde_json::to_vec(&message).map_err(|e| ApiError::bad_body(e.to_string()))?;
    let record = NewRecord { key: order_key(project_id, order_id), payload, idempotency_key: None };
    call.api.bus.append(STATUS_EVENTS, vec![record]).await.map_err(|e| {
        tracing::warn!(error = %e, "an override was stored but not announced");
        ApiError::from(ksa_state::StateError::Corrupt(format!("the override was stored; the recompute could not be queued: {e}")))
    })?;
    Ok(())
}

/// `PUT /api/orders/{id}/override`.
pub async fn put<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    let caller = call.caller()?;
    let project = call.project()?;
    let order_id = call.id("id")?;
    let request: OverrideRequest = call.request.json()?;
    let value = OrderOverride {
        is_urgent: request.is_urgent,
        sla_profile: match request.sla_profile.as_deref() {
            None => None,
            Some(p @ ("normal" | "urgent")) => Some(p.to_owned()),
            Some(other) => return Err(ApiError::bad("sla_profile", format!("{other:?} is not normal or urgent"))),
        },
        cycle_start: instant("cycle_start", request.cycle_start)?,
        cycle_end: instant("cycle_end", request.cycle_end)?,
        updated_by: None,
        updated_at: None,
    };
    if value == OrderOverride::default() {
        return Err(ApiError::bad_body(
            "give at least one of is_urgent, sla_profile, cycle_start, cycle_end (DELETE removes the override)",
        ));
    }
    if let (Some(start), Some(end)) = (value.cycle_start, value.cycle_end)
        && end <= start
    {
        return Err(ApiError::bad("cycle_end", "must be after cycle_start"));
    }
    order_exists(call, project.id, order_id).await?;
    let state = &call.api.state;
    let before = state.overrides(project.id, &[order_id]).await?.remove(&order_id).map(|o| override_json(&o));
    let audit = record(Some(project.id), "override.put", "order", Some(order_id.to_string()), before, Some(override_json(&value)));
    state.put_override(project.id, order_id, &value, &caller.actor(), audit).await?;
    announce(call, project.id, order_id).await?;
    let stored = state.overrides(project.id, &[order_id]).await?.remove(&order_id).unwrap_or(value);
    ok(&json!({"order_id": order_id, "override": override_json(&stored), "recompute": "queued"}))
}

/// `DELETE /api/orders/{id}/override`.
pub async fn delete<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    let caller = call.caller()?;
    let project = call.project()?;
    let order_id = call.id("id")?;
    let state = &call.api.state;
    let before = state.overrides(project.id, &[order_id]).await?.remove(&order_id).map(|o| override_json(&o));
    let audit = record(Some(project.id), "override.delete", "order", Some(order_id.to_string()), before, None);
    if !state.delete_override(project.id, order_id, &caller.actor(), audit).await? {
        return Err(ApiError::not_found(format!("order {order_id} has no override")));
    }
    announce(call, project.id, order_id).await?;
    ok(&json!({"order_id": order_id, "override": null, "recompute": "queued"}))
}
