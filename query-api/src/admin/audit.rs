//! `GET /api/audit`: who changed what, newest first; owners see everything, admins their
//! projects' rows.

use ksa_bus::Bus;
use ksa_state::StateStore;
use ksa_state::admin::{AuditEntry, AuditScope};
use serde_json::{Value, json};
use warp::reply::Response;

use crate::error::ApiError;
use crate::routes::{Call, ok};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;

/// An audit row as answers show it, with the project's slug when it still exists.
pub fn entry_json(entry: &AuditEntry, slug: Option<&str>) -> Value {
    let document = |text: &Option<String>| text.as_deref().and_then(|t| serde_json::from_str::<Value>(t).ok());
    json!({
        "id": entry.id,
        "at": entry.at.to_string(),
        "actor": entry.actor,
        "client_address": entry.client_address,
        "project": slug,
        "action": entry.action,
        "entity": entry.entity,
        "entity_id": entry.entity_id,
        "before": document(&entry.before),
        "after": document(&entry.after),
    })
}

pub async fn list<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    let caller = call.caller()?;
    let user = &caller.user;
    let request = call.request;
    let projects = call.api.state.projects().await?;
    let slug = request.param("project");
    let administered = super::administered(user, &projects, slug, "audit log")?;
    let limit = match request.param("limit") {
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| ApiError::bad("limit", format!("{text:?} is not a number from 1 to {MAX_LIMIT}")))?,
        None => DEFAULT_LIMIT,
    };
    let before = match request.param("cursor") {
        Some(text) => Some(text.parse::<i64>().map_err(|_| ApiError::bad("cursor", "not a cursor this API returned"))?),
        None => None,
    };
    let scope = match slug {
        None if user.is_owner => AuditScope::All,
        _ => AuditScope::Projects(administered.iter().map(|p| p.id).collect()),
    };
    let entries = call.api.state.audit_entries(&scope, before, limit).await?;
    let slug = |id: Option<i64>| id.and_then(|id| projects.iter().find(|p| p.id == id).map(|p| p.slug.as_str()));
    let next = (entries.len() == limit as usize).then(|| entries.last().map(|e| e.id.to_string())).flatten();
    ok(&json!({
        "entries": entries.iter().map(|e| entry_json(e, slug(e.project_id))).collect::<Vec<_>>(),
        "next_cursor": next,
    }))
}
