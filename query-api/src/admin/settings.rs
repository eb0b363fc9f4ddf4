//! The settings document over HTTP: the whole of it or one part, read with its revision and
//! written over the revision the writer read (`If-Match`), validated with the same code as the
//! command line, every error named.

use ksa_bus::Bus;
use ksa_schemas::ProjectSettings;
use ksa_state::admin::{Actor, SettingsChange};
use ksa_state::{Project, StateStore};
use serde_json::{Map, Value, json};
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use crate::admin::record;
use crate::error::{ApiError, FieldError};
use crate::routes::{Call, Part, json};

/// The stored document as written out in full (defaults included), and its revision.
pub async fn effective<S: StateStore>(state: &S, project_id: i64) -> Result<(ProjectSettings, i64), ApiError> {
    Ok(match state.settings(project_id).await? {
        Some(record) => {
            let settings = ProjectSettings::from_json(&record.document).unwrap_or_else(|err| {
                tracing::error!(project_id, revision = record.revision, error = %err, "stored settings are invalid; showing defaults");
                ProjectSettings::default()
            });
            (settings, record.revision)
        }
        None => (ProjectSettings::default(), 0),
    })
}

/// Validates `document` and stores it as the project's next revision. `expected`: the revision
/// the writer read (412 when another was saved since).
pub async fn store<S: StateStore>(
    state: &S,
    actor: &Actor,
    project: &Project,
    document: &str,
    expected: Option<i64>,
) -> Result<i64, ApiError> {
    let settings = ProjectSettings::validate_document(document)
        .map_err(|errors| ApiError::invalid(errors.into_iter().map(|e| FieldError { field: e.path, message: e.message }).collect()))?;
    let change = SettingsChange {
        project_id: project.id,
        document: document.to_owned(),
        timezone: settings.timezone.name().to_owned(),
        expected_revision: expected,
    };
    let audit = record(Some(project.id), "settings.update", "settings", None, None, None);
    Ok(state.store_settings(change, actor, audit).await?)
}

fn part_of(document: &Value, part: Option<Part>) -> Value {
    match part {
        None => document.clone(),
        Some(part) => {
            let mut map = Map::new();
            for key in part.keys() {
                if let Some(value) = document.get(*key) {
                    map.insert((*key).to_owned(), value.clone());
                }
            }
            Value::Object(map)
        }
    }
}

fn with_etag(mut response: Response, revision: i64) -> Response {
    if let Ok(value) = format!("\"{revision}\"").parse() {
        response.headers_mut().insert("etag", value);
    }
    response
}

/// The revision in `If-Match` (`"3"` or `3`), if given.
fn if_match(call: &Call<'_, impl StateStore, impl Bus>) -> Result<Option<i64>, ApiError> {
    let Some(value) = call.request.headers.get("if-match") else { return Ok(None) };
    let text = value.to_str().unwrap_or("").trim().trim_start_matches("W/").trim_matches('"');
    text.parse().map(Some).map_err(|_| ApiError::bad("If-Match", format!("{text:?} is not a settings revision")))
}

/// `GET /api/settings` and its parts.
pub async fn get<S: StateStore, B: Bus>(call: &Call<'_, S, B>, part: Option<Part>) -> Result<Response, ApiError> {
    let project = call.project()?;
    let (settings, revision) = effective(&call.api.state, project.id).await?;
    let applied = call.api.state.applied_revision(project.id).await?;
    let body = json!({
        "project": project.slug,
        "revision": revision,
        "applied_revision": applied,
        "document": part_of(&settings.to_document(), part),
    });
    Ok(with_etag(json(StatusCode::OK, &body), revision))
}

/// `PUT /api/settings` (the whole document) and its parts (only the part's keys change).
pub async fn put<S: StateStore, B: Bus>(call: &Call<'_, S, B>, part: Option<Part>) -> Result<Response, ApiError> {
    let caller = call.caller()?;
    let project = call.project()?;
    let expected = if_match(call)?;
    let body: Value = serde_json::from_slice(&call.request.body).map_err(|e| ApiError::bad_body(format!("not JSON: {e}")))?;
    let Value::Object(given) = body else { return Err(ApiError::bad_body("the settings must be a JSON object")) };
    let document = match part {
        None => Value::Object(given),
        Some(part) => {
            if let Some(unknown) = given.keys().find(|k| !part.keys().contains(&k.as_str())) {
                return Err(ApiError::invalid(vec![FieldError {
                    field: unknown.clone(),
                    message: format!("not part of this section; it takes {}", part.keys().join(", ")),
                }]));
            }
            let (settings, revision) = effective(&call.api.state, project.id).await?;
            if let Some(expected) = expected
                && expected != revision
            {
                return Err(ksa_state::StateError::StaleRevision { expected, current: revision }.into());
            }
            let mut whole = settings.to_document();
            for key in part.keys() {
                match given.get(*key) {
                    Some(value) => whole[*key] = value.clone(),
                    None => {
                        if let Value::Object(map) = &mut whole {
                            map.remove(*key);
                        }
                    }
                }
            }
            whole
        }
    };
    let revision = store(&call.api.state, &caller.actor(), project, &document.to_string(), expected).await?;
    let body = json!({"project": project.slug, "revision": revision, "recompute": "pending"});
    Ok(with_etag(json(StatusCode::OK, &body), revision))
}

/// `GET /api/settings/recompute`: where the recompute after the last change stands.
pub async fn recompute<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    let project = call.project()?;
    let state = &call.api.state;
    let revision = state.settings(project.id).await?.map_or(0, |r| r.revision);
    let applied = state.applied_revision(project.id).await?;
    let progress = state.recompute(project.id).await?;
    let body = match progress.filter(|p| p.revision == revision) {
        Some(p) => json!({
            "revision": revision,
            "applied_revision": applied,
            "state": p.state,
            "orders_done": p.orders_done,
            "orders_total": p.orders_total,
            "error": p.error,
            "started_at": p.started_at.to_string(),
            "updated_at": p.updated_at.to_string(),
        }),
        // Stored, not yet picked up by a processor; or applied long ago.
        None => json!({
            "revision": revision,
            "applied_revision": applied,
            "state": if applied >= revision { "done" } else { "pending" },
            "orders_done": 0,
            "orders_total": 0,
        }),
    };
    Ok(warp::reply::json(&body).into_response())
}
