//! Users and their project memberships, within the rules of `auth::policy`.

use ksa_bus::Bus;
use ksa_state::admin::{Actor, NewUser, ProjectRole, User, UserChange};
use ksa_state::{AdminStore, StateStore};
use serde::Deserialize;
use serde_json::json;
use warp::http::StatusCode;
use warp::reply::Response;

use crate::admin::{record, user_json};
use crate::auth::{password, policy};
use crate::error::ApiError;
use crate::routes::{Call, json, ok};

/// A project and a role, as requests name them.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub project: String,
    pub role: String,
}

/// A user to create.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUserRequest {
    pub login: String,
    #[serde(default)]
    pub email: Option<String>,
    /// None: a random one, returned once.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub owner: bool,
    #[serde(default)]
    pub projects: Vec<Grant>,
}

/// A change to a user; absent fields stay.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    #[serde(default, with = "double_option")]
    pub email: Option<Option<String>>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub active: Option<bool>,
    #[serde(default)]
    pub owner: Option<bool>,
    /// The memberships as a whole (within the projects the caller administers).
    #[serde(default)]
    pub projects: Option<Vec<Grant>>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

fn valid_login(login: &str) -> Result<String, ApiError> {
    let login = login.trim();
    let ok = !login.is_empty()
        && login.chars().count() <= 100
        && login.chars().all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+'));
    if !ok {
        return Err(ApiError::bad("login", "1 to 100 letters, digits or . _ - @ +"));
    }
    Ok(login.to_owned())
}

fn valid_email(email: Option<String>) -> Result<Option<String>, ApiError> {
    match email.map(|e| e.trim().to_owned()).filter(|e| !e.is_empty()) {
        Some(email) if !email.contains('@') || email.len() > 254 => Err(ApiError::bad("email", "not an e-mail address")),
        other => Ok(other),
    }
}

/// The grants as `(project id, role)`, naming the first bad one.
async fn resolve_grants<S: StateStore>(state: &S, grants: &[Grant]) -> Result<Vec<(i64, ProjectRole)>, ApiError> {
    let mut resolved = Vec::with_capacity(grants.len());
    for (i, grant) in grants.iter().enumerate() {
        let role =
            ProjectRole::parse(&grant.role).ok_or_else(|| ApiError::bad(format!("projects[{i}].role"), "must be admin or viewer"))?;
        let project = state
            .project_by_slug(&grant.project)
            .await?
            .ok_or_else(|| ApiError::bad(format!("projects[{i}].project"), format!("no project `{}`", grant.project)))?;
        resolved.push((project.id, role));
    }
    Ok(resolved)
}

fn current(user: &User) -> Vec<(i64, ProjectRole)> {
    user.memberships.iter().map(|m| (m.project_id, m.role)).collect()
}

/// Creates a user; returns it with the generated password when none was given.
pub async fn create_user<S: StateStore>(
    state: &S,
    acting: &User,
    actor: &Actor,
    request: NewUserRequest,
) -> Result<(User, Option<String>), ApiError> {
    let login = valid_login(&request.login)?;
    let email = valid_email(request.email)?;
    if request.owner && !acting.is_owner {
        return Err(ApiError::forbidden("only an owner can make an owner"));
    }
    let requested = resolve_grants(state, &request.projects).await?;
    if !acting.is_owner && requested.is_empty() {
        return Err(ApiError::bad("projects", "name a project you administer to add the user to"));
    }
    let memberships = policy::memberships(acting, None, &[], &requested).map_err(ApiError::forbidden)?;
    let (password, generated) = match request.password {
        Some(password) => (password, None),
        None => {
            let password = password::generate();
            (password.clone(), Some(password))
        }
    };
    if let Some(why) = password::weakness(&password) {
        return Err(ApiError::bad("password", format!("the password {why}")));
    }
    let hash = password::blocking(move || password::hash(&password)).await;
    let after = json!({"login": login, "email": email, "owner": request.owner, "password": "***",
        "projects": request.projects.iter().map(|g| json!({"project": g.project, "role": g.role})).collect::<Vec<_>>()});
    let audit = record(None, "user.create", "user", None, None, Some(after));
    let user = state.create_user(NewUser { login, email, password_hash: hash, is_owner: request.owner, memberships }, actor, audit).await?;
    Ok((user, generated))
}

/// Changes a user within the acting user's rights.
pub async fn update_user<S: StateStore>(
    state: &S,
    acting: &User,
    actor: &Actor,
    target_id: i64,
    patch: UserPatch,
) -> Result<User, ApiError> {
    let target = state
        .user(target_id)
        .await?
        .filter(|t| policy::sees_user(acting, t))
        .ok_or_else(|| ApiError::not_found(format!("no user {target_id}")))?;
    let mut change = UserChange::default();
    if patch.password.is_some() || patch.active.is_some() || patch.email.is_some() {
        policy::may_manage(acting, &target).map_err(ApiError::forbidden)?;
    }
    if let Some(email) = patch.email {
        change.email = Some(valid_email(email)?);
    }
    if let Some(password) = &patch.password {
        if let Some(why) = password::weakness(password) {
            return Err(ApiError::bad("password", format!("the password {why}")));
        }
        let password = password.clone();
        change.password_hash = Some(password::blocking(move || password::hash(&password)).await);
    }
    if let Some(active) = patch.active {
        if !active && target.is_owner && only_owner(state, target.id).await? {
            return Err(ApiError::conflict("active", "the last active owner cannot be disabled"));
        }
        change.is_active = Some(active);
    }
    if let Some(owner) = patch.owner {
        if !acting.is_owner {
            return Err(ApiError::forbidden("only an owner can make or unmake an owner"));
        }
        if !owner && target.is_owner && only_owner(state, target.id).await? {
            return Err(ApiError::conflict("owner", "the last active owner must stay an owner"));
        }
        change.is_owner = Some(owner);
    }
    if let Some(grants) = &patch.projects {
        let requested = resolve_grants(state, grants).await?;
        change.memberships =
            Some(policy::memberships(acting, Some(target.id), &current(&target), &requested).map_err(ApiError::forbidden)?);
    }
    if change == UserChange::default() {
        return Ok(target);
    }
    let before = json!({"active": target.is_active, "owner": target.is_owner, "email": target.email,
        "projects": target.memberships.iter().map(|m| json!({"project": m.slug, "role": m.role.as_str()})).collect::<Vec<_>>()});
    let mut after = serde_json::Map::new();
    if let Some(email) = &change.email {
        after.insert("email".into(), json!(email));
    }
    if change.password_hash.is_some() {
        after.insert("password".into(), json!("***"));
    }
    if let Some(active) = change.is_active {
        after.insert("active".into(), json!(active));
    }
    if let Some(owner) = change.is_owner {
        after.insert("owner".into(), json!(owner));
    }
    if let Some(grants) = &patch.projects {
        after.insert("projects".into(), grants.iter().map(|g| json!({"project": g.project, "role": g.role})).collect());
    }
    let audit = record(None, "user.update", "user", Some(target.id.to_string()), Some(before), Some(serde_json::Value::Object(after)));
    state.update_user(target.id, change, actor, audit).await?.ok_or_else(|| ApiError::not_found(format!("no user {target_id}")))
}

/// True when `user_id` is the only active owner.
async fn only_owner<S: AdminStore>(state: &S, user_id: i64) -> Result<bool, ApiError> {
    Ok(!state.users().await?.iter().any(|u| u.is_owner && u.is_active && u.id != user_id))
}

pub async fn list<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    let caller = call.caller()?;
    if !policy::administers_any(&caller.user) {
        return Err(ApiError::forbidden("only owners and project admins manage users"));
    }
    let users = call.api.state.users().await?;
    let visible: Vec<_> = users.iter().filter(|u| policy::sees_user(&caller.user, u)).map(user_json).collect();
    ok(&json!({"users": visible}))
}

pub async fn create<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    let caller = call.caller()?;
    if !policy::administers_any(&caller.user) {
        return Err(ApiError::forbidden("only owners and project admins manage users"));
    }
    let request: NewUserRequest = call.request.json()?;
    let (user, generated) = create_user(&call.api.state, &caller.user, &caller.actor(), request).await?;
    let mut body = user_json(&user);
    if let Some(password) = generated {
        body["password"] = json!(password);
    }
    Ok(json(StatusCode::CREATED, &body))
}

pub async fn update<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    let caller = call.caller()?;
    if !policy::administers_any(&caller.user) {
        return Err(ApiError::forbidden("only owners and project admins manage users"));
    }
    let patch: UserPatch = call.request.json()?;
    let id = call.id("id")?;
    let password_changed = patch.password.is_some();
    let user = update_user(&call.api.state, &caller.user, &caller.actor(), id, patch).await?;
    if password_changed {
        crate::admin::session::forget_initial_password(call.api.config.owner_password_file.as_deref(), &user.login);
    }
    ok(&user_json(&user))
}
