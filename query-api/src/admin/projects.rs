//! Projects: creating them (with their webhook secret, shown once), their administration
//! (name, allowlist, KeyCRM API access with a write-only token), secret rotation, deletion.

use ksa_bus::Bus;
use ksa_edge::Cidr;
use ksa_state::admin::{Actor, ProjectChange, ProjectDetail, SettingsChange};
use ksa_state::enrich::ApiAccessUpdate;
use ksa_state::secret::{Secret, TokenCipher, random_hex, sha256_hex};
use ksa_state::{NewProject, Project, StateStore};
use serde::Deserialize;
use serde_json::{Value, json};
use warp::http::StatusCode;
use warp::reply::Response;

use crate::admin::record;
use crate::auth::{now, policy};
use crate::error::ApiError;
use crate::routes::{Call, json, ok};

/// A project to create.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProjectRequest {
    pub slug: String,
    pub name: String,
    #[serde(default = "utc")]
    pub timezone: String,
    #[serde(default)]
    pub allowed_cidrs: Vec<String>,
}

fn utc() -> String {
    "UTC".into()
}

/// A change to a project; absent fields stay.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectPatch {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub active: Option<bool>,
    #[serde(default)]
    pub allowed_cidrs: Option<Vec<String>>,
    #[serde(default)]
    pub keycrm: Option<KeycrmPatch>,
}

/// How the enricher reaches the project's KeyCRM API.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeycrmPatch {
    #[serde(default)]
    pub base_url: Option<String>,
    /// Write-only: answers show whether one is set and its last 4 characters.
    #[serde(default)]
    pub token: Option<String>,
    /// Requests per minute (1–600); `null` goes back to the configured default.
    #[serde(default, deserialize_with = "some_value")]
    pub rate_per_minute: Option<Option<u32>>,
}

fn some_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    Option::<u32>::deserialize(d).map(Some)
}

/// The webhook URL people paste into KeyCRM, with or without the secret.
pub fn webhook_url(public_url: &str, slug: &str, secret: Option<&str>) -> String {
    format!("{public_url}/webhooks/keycrm/{slug}?token={}", secret.unwrap_or("<secret>"))
}

fn valid_slug(slug: &str) -> Result<String, ApiError> {
    let slug = slug.trim();
    if slug.is_empty() || slug.len() > 64 || !slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(ApiError::bad("slug", format!("{slug:?} must be 1–64 characters of a–z, 0–9 and '-'")));
    }
    Ok(slug.to_owned())
}

fn valid_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::bad("name", "give a name of 1 to 200 characters"));
    }
    Ok(name.to_owned())
}

fn valid_cidrs(cidrs: &[String]) -> Result<Vec<String>, ApiError> {
    for (i, cidr) in cidrs.iter().enumerate() {
        if Cidr::parse(cidr).is_none() {
            return Err(ApiError::bad(format!("allowed_cidrs[{i}]"), format!("{cidr:?} is not an IP address or CIDR")));
        }
    }
    Ok(cidrs.iter().map(|c| c.trim().to_owned()).collect())
}

/// Creates a project with its first settings revision (its time zone) and a new webhook
/// secret; returns the project and the secret, which is not stored and never shown again.
pub async fn create_project<S: StateStore>(state: &S, actor: &Actor, request: NewProjectRequest) -> Result<(Project, String), ApiError> {
    let slug = valid_slug(&request.slug)?;
    let name = valid_name(&request.name)?;
    if request.timezone.parse::<chrono_tz::Tz>().is_err() {
        return Err(ApiError::bad("timezone", format!("{:?} is not an IANA time zone (for example Europe/Kyiv)", request.timezone)));
    }
    let allowed_cidrs = valid_cidrs(&request.allowed_cidrs)?;
    let secret = random_hex(32);
    let project = state
        .create_project(NewProject {
            slug: slug.clone(),
            name: name.clone(),
            timezone: request.timezone.clone(),
            webhook_secret_hash: sha256_hex(&secret),
            allowed_cidrs: allowed_cidrs.clone(),
        })
        .await?;
    let after = json!({"slug": slug, "name": name, "timezone": request.timezone, "allowed_cidrs": allowed_cidrs, "webhook_secret": "***"});
    state.audit(actor, record(Some(project.id), "project.create", "project", Some(slug.clone()), None, Some(after))).await?;
    // The time zone lives in the settings document; the column follows it.
    let document = json!({"timezone": request.timezone}).to_string();
    let change = SettingsChange { project_id: project.id, document, timezone: request.timezone, expected_revision: Some(0) };
    state.store_settings(change, actor, record(Some(project.id), "settings.update", "settings", None, None, None)).await?;
    Ok((project, secret))
}

/// Applies a change to a project (its token encrypted with `cipher`).
pub async fn update_project<S: StateStore>(
    state: &S,
    cipher: &TokenCipher,
    acting_is_owner: bool,
    actor: &Actor,
    project: &Project,
    patch: ProjectPatch,
) -> Result<(), ApiError> {
    let mut change = ProjectChange::default();
    let mut before = serde_json::Map::new();
    let mut after = serde_json::Map::new();
    if let Some(name) = &patch.name {
        change.name = Some(valid_name(name)?);
        before.insert("name".into(), json!(project.name));
        after.insert("name".into(), json!(change.name));
    }
    if let Some(active) = patch.active {
        if !acting_is_owner {
            return Err(ApiError::forbidden("only an owner may switch a project on or off").with_field("active"));
        }
        change.is_active = Some(active);
        before.insert("active".into(), json!(project.is_active));
        after.insert("active".into(), json!(active));
    }
    if let Some(cidrs) = &patch.allowed_cidrs {
        change.allowed_cidrs = Some(valid_cidrs(cidrs)?);
        before.insert("allowed_cidrs".into(), json!(project.allowed_cidrs));
        after.insert("allowed_cidrs".into(), json!(change.allowed_cidrs));
    }
    let mut api = ApiAccessUpdate::default();
    if let Some(keycrm) = patch.keycrm {
        if let Some(url) = keycrm.base_url {
            let url = url.trim().trim_end_matches('/').to_owned();
            if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 500 {
                return Err(ApiError::bad("keycrm.base_url", format!("{url:?} is not an http(s) URL")));
            }
            after.insert("keycrm.base_url".into(), json!(url));
            api.base_url = Some(url);
        }
        if let Some(token) = keycrm.token {
            let token = Secret::new(token.trim());
            if token.is_empty() || token.expose().len() > 2000 {
                return Err(ApiError::bad("keycrm.token", "the API token is empty (or over 2000 characters)"));
            }
            let hint: String = token.expose().chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
            api.token_enc = Some(cipher.encrypt(&token));
            api.token_hint = Some(hint);
            after.insert("keycrm.token".into(), json!("***"));
        }
        if let Some(rate) = keycrm.rate_per_minute {
            if rate.is_some_and(|r| !(1..=600).contains(&r)) {
                return Err(ApiError::bad("keycrm.rate_per_minute", "give requests per minute between 1 and 600 (KeyCRM allows about 60)"));
            }
            after.insert("keycrm.rate_per_minute".into(), json!(rate));
            api.rate_per_minute = Some(rate);
        }
    }
    if after.is_empty() {
        return Err(ApiError::bad_body("nothing to change: give name, active, allowed_cidrs or keycrm"));
    }
    if api != ApiAccessUpdate::default() {
        state.update_api_access(project.id, api).await?;
    }
    let audit = record(
        Some(project.id),
        "project.update",
        "project",
        Some(project.slug.clone()),
        Some(Value::Object(before)),
        Some(Value::Object(after)),
    );
    state.update_project(project.id, change, actor, audit).await?;
    Ok(())
}

/// A new webhook secret; the previous one works for the configured grace period.
pub async fn rotate_secret<S: StateStore>(
    state: &S,
    actor: &Actor,
    project: &Project,
    grace: std::time::Duration,
) -> Result<(String, ksa_schemas::Timestamp), ApiError> {
    let secret = random_hex(32);
    let until = ksa_schemas::Timestamp::from_micros(now().as_micros() + grace.as_micros() as i64);
    let audit = record(
        Some(project.id),
        "project.webhook_secret",
        "project",
        Some(project.slug.clone()),
        Some(json!({"webhook_secret": "***"})),
        Some(json!({"webhook_secret": "***", "previous_valid_until": until.to_string()})),
    );
    state.rotate_webhook_secret(project.id, &sha256_hex(&secret), until, actor, audit).await?;
    Ok((secret, until))
}

fn project_json(public_url: &str, project: &Project, detail: Option<&ProjectDetail>, role: &str, admin: bool) -> Value {
    let mut body = json!({
        "slug": project.slug,
        "name": project.name,
        "timezone": project.timezone,
        "active": project.is_active,
        "role": role,
    });
    if let Some(detail) = detail {
        body["created_at"] = json!(detail.created_at.to_string());
        if admin {
            body["webhook_url"] = json!(webhook_url(public_url, &project.slug, None));
            body["allowed_cidrs"] = json!(detail.allowed_cidrs);
            body["keycrm"] = json!({
                "base_url": detail.base_url,
                "rate_per_minute": detail.rate_per_minute,
                "token_set": detail.token_set,
                "token_last4": detail.token_hint,
            });
        }
    }
    body
}

fn role_of(user: &ksa_state::admin::User, project_id: i64) -> &'static str {
    if user.is_owner { "owner" } else { user.role_in(project_id).map_or("none", |r| r.as_str()) }
}

pub async fn list<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    let caller = call.caller()?;
    let public_url = &call.api.config.public_url;
    let projects: Vec<Value> = call
        .api
        .state
        .projects()
        .await?
        .iter()
        .filter(|p| policy::sees(&caller.user, p.id))
        .map(|p| project_json(public_url, p, None, role_of(&caller.user, p.id), false))
        .collect();
    ok(&json!({"projects": projects}))
}

pub async fn create<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    let caller = call.caller()?;
    let request: NewProjectRequest = call.request.json()?;
    let (project, secret) = create_project(&call.api.state, &caller.actor(), request).await?;
    let public_url = &call.api.config.public_url;
    let mut body = project_json(public_url, &project, None, "owner", true);
    body["webhook_url"] = json!(webhook_url(public_url, &project.slug, Some(&secret)));
    body["webhook_secret_shown_once"] = json!(true);
    Ok(json(StatusCode::CREATED, &body))
}

pub async fn get<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    let caller = call.caller()?;
    let project = call.project()?;
    let detail = call.api.state.project_detail(project.id).await?;
    let admin = policy::administers(&caller.user, project.id);
    ok(&project_json(&call.api.config.public_url, project, detail.as_ref(), role_of(&caller.user, project.id), admin))
}

pub async fn update<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    let caller = call.caller()?;
    let project = call.project()?;
    let patch: ProjectPatch = call.request.json()?;
    update_project(&call.api.state, &call.api.cipher, caller.user.is_owner, &caller.actor(), project, patch).await?;
    let fresh = call.api.state.project_by_slug(&project.slug).await?.ok_or_else(|| ApiError::not_found("the project is gone"))?;
    let detail = call.api.state.project_detail(project.id).await?;
    ok(&project_json(&call.api.config.public_url, &fresh, detail.as_ref(), role_of(&caller.user, project.id), true))
}

pub async fn delete<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    let caller = call.caller()?;
    let project = call.project()?;
    let audit =
        record(Some(project.id), "project.delete", "project", Some(project.slug.clone()), Some(json!({"name": project.name})), None);
    call.api.state.delete_project(project.id, &caller.actor(), audit).await?;
    ok(&json!({"status": "deleted"}))
}

pub async fn rotate_secret_route<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    let caller = call.caller()?;
    let project = call.project()?;
    let (secret, until) = rotate_secret(&call.api.state, &caller.actor(), project, call.api.config.secret_grace).await?;
    ok(&json!({
        "webhook_url": webhook_url(&call.api.config.public_url, &project.slug, Some(&secret)),
        "previous_valid_until": until.to_string(),
        "webhook_secret_shown_once": true,
    }))
}
