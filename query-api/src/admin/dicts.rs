//! The project's status dictionary (synced from KeyCRM by the enricher) and its group names.

use ksa_bus::Bus;
use ksa_state::StateStore;
use ksa_state::enrich::CursorName;
use serde::Deserialize;
use serde_json::json;
use warp::http::StatusCode;
use warp::reply::Response;

use crate::admin::record;
use crate::error::ApiError;
use crate::routes::{Call, json, ok};

/// `GET /api/dicts/statuses`: the six groups and the statuses, inactive ones included.
pub async fn statuses<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    let project = call.project()?;
    let state = &call.api.state;
    let groups = state.status_groups(project.id).await?;
    let statuses = state.statuses(project.id).await?;
    ok(&json!({
        "groups": groups.iter().map(|g| json!({"id": g.group_id, "name": g.name, "terminal": g.is_terminal, "enabled": g.is_enabled})).collect::<Vec<_>>(),
        "statuses": statuses.iter().map(|s| json!({
            "id": s.status_id,
            "name": s.name,
            "alias": s.alias,
            "group_id": s.group_id,
            "active": s.is_active,
            "closing_order": s.is_closing_order,
            "expiration_period_seconds": s.expiration_period_seconds,
        })).collect::<Vec<_>>(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupName {
    name: String,
}

/// `PATCH /api/dicts/groups/{id}`: renames one of the six groups for the project.
pub async fn rename_group<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    let caller = call.caller()?;
    let project = call.project()?;
    let group = call.id("id")?;
    let group = u16::try_from(group).ok().filter(|g| (1..=6).contains(g)).ok_or_else(|| ApiError::bad("id", "status groups are 1 to 6"))?;
    let body: GroupName = call.request.json()?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::bad("name", "give a name of 1 to 100 characters"));
    }
    let state = &call.api.state;
    let before = state.status_groups(project.id).await?.into_iter().find(|g| g.group_id == group).map(|g| g.name);
    state.rename_status_group(project.id, group, name).await?;
    call.api.live.forget_names(project.id);
    let audit = record(
        Some(project.id),
        "statuses.group_rename",
        "status_group",
        Some(group.to_string()),
        Some(json!({"name": before})),
        Some(json!({"name": name})),
    );
    state.audit(&caller.actor(), audit).await?;
    ok(&json!({"id": group, "name": name}))
}

/// `POST /api/dicts/statuses/sync`: asks the enricher to sync the dictionary on its next pass.
pub async fn sync<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    let project = call.project()?;
    let state = &call.api.state;
    let token_set = state.api_access(project.id).await?.is_some_and(|a| a.token_enc.is_some());
    if !token_set {
        return Err(ApiError::conflict("keycrm.token", "set the project's KeyCRM API token first (PATCH /api/projects/{slug})"));
    }
    // The enricher syncs a project whose last sync it cannot find.
    state.put_cursor(project.id, CursorName::Statuses, None).await?;
    Ok(json(StatusCode::ACCEPTED, &json!({"status": "requested"})))
}
