//! Logging in and out, who am I, and changing one's own password.

use std::time::Duration;

use ksa_bus::Bus;
use ksa_schemas::Timestamp;
use ksa_state::admin::{Actor, ProjectRole, User, UserChange};
use ksa_state::{AdminStore, StateStore};
use serde::Deserialize;
use serde_json::json;
use warp::http::StatusCode;
use warp::reply::Response;

use crate::admin::{record, user_json};
use crate::auth::session::{self, Session};
use crate::auth::{now, password, throttle};
use crate::error::ApiError;
use crate::routes::{Call, json, ok};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    login: String,
    password: String,
}

/// `POST /api/auth/login`: checks the password (as slowly for an unknown login), throttles
/// failures, and answers with the user and a session cookie.
pub async fn login<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    let body: Login = call.request.json()?;
    let login = body.login.trim().to_owned();
    if login.is_empty() || login.len() > 200 {
        return Err(ApiError::bad("login", "give your login"));
    }
    let address = call.request.client.ip.to_string();
    let state = &call.api.state;
    let at = now();
    throttle::check(state, &login, &address, at).await?;
    let found = state.user_by_login(&login).await?;
    let offered = body.password;
    let user = match found {
        Some((user, hash)) => {
            let matches = password::blocking(move || password::verify(&offered, &hash)).await;
            (matches && user.is_active).then_some(user)
        }
        None => {
            password::blocking(move || password::verify_nothing(&offered)).await;
            None
        }
    };
    let Some(user) = user else {
        state.record_login(&login, &address, at, false, at).await?;
        tracing::info!(client = %address, "failed login");
        // The same answer for an unknown login, a wrong password and a disabled user.
        return Err(ApiError::unauthorized("wrong login or password").with_field("password"));
    };
    state.record_login(&login, &address, at, true, Timestamp::from_micros(at.as_micros() - 86_400_000_000)).await?;
    let config = &call.api.config.auth;
    let token =
        config.session_key.sign(Session { user_id: user.id, token_version: user.token_version }, unix_seconds(at), config.session_lifetime);
    let mut response = json(StatusCode::OK, &me_json(call, &user).await?);
    let cookie = session::set_cookie(&token, config.session_lifetime, config.secure_cookies);
    if let Ok(value) = cookie.parse() {
        response.headers_mut().insert("set-cookie", value);
    }
    Ok(response)
}

/// `POST /api/auth/logout`: ends the session in this browser.
pub async fn logout<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    call.caller()?;
    let mut response = json(StatusCode::OK, &json!({"status": "logged_out"}));
    if let Ok(value) = session::clear_cookie(call.api.config.auth.secure_cookies).parse() {
        response.headers_mut().insert("set-cookie", value);
    }
    Ok(response)
}

/// `GET /api/me`.
pub async fn me<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    ok(&me_json(call, &call.caller()?.user).await?)
}

/// The user, their role and the projects they see, each with their role in it.
async fn me_json<S: StateStore, B: Bus>(call: &Call<'_, S, B>, user: &User) -> Result<serde_json::Value, ApiError> {
    let projects = call.api.state.projects().await?;
    let visible: Vec<_> = projects
        .iter()
        .filter_map(|p| {
            let role = if user.is_owner { Some(ProjectRole::Admin) } else { user.role_in(p.id) };
            role.map(|role| json!({"slug": p.slug, "name": p.name, "timezone": p.timezone, "role": role.as_str()}))
        })
        .collect();
    let mut body = user_json(user);
    body["role"] = json!(if user.is_owner { "owner" } else { "member" });
    body["projects"] = json!(visible);
    Ok(body)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    old_password: String,
    new_password: String,
}

/// `POST /api/me/password`: the old password is required; every session of the user ends,
/// this one gets a new cookie.
pub async fn change_password<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    let caller = call.caller()?;
    let body: PasswordChange = call.request.json()?;
    let state = &call.api.state;
    let (_, hash) = state.user_by_login(&caller.user.login).await?.ok_or_else(|| ApiError::unauthorized("the session has ended"))?;
    let old = body.old_password;
    if !password::blocking(move || password::verify(&old, &hash)).await {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "wrong_password", "the current password is wrong").with_field("old_password"));
    }
    let user = set_password(state, &caller.user, &caller.actor(), &body.new_password).await?;
    forget_initial_password(call.api.config.owner_password_file.as_deref(), &user.login);
    let config = &call.api.config.auth;
    let token = config.session_key.sign(
        Session { user_id: user.id, token_version: user.token_version },
        unix_seconds(now()),
        config.session_lifetime,
    );
    let mut response = json(StatusCode::OK, &json!({"status": "changed"}));
    if caller.via == crate::auth::Via::Session
        && let Ok(value) = session::set_cookie(&token, config.session_lifetime, config.secure_cookies).parse()
    {
        response.headers_mut().insert("set-cookie", value);
    }
    Ok(response)
}

/// Sets `user`'s password (checked for strength), ending their sessions, with an audit row.
pub async fn set_password<S: AdminStore>(state: &S, user: &User, actor: &Actor, new_password: &str) -> Result<User, ApiError> {
    if let Some(why) = password::weakness(new_password) {
        return Err(ApiError::bad("new_password", format!("the new password {why}")));
    }
    let new_password = new_password.to_owned();
    let hash = password::blocking(move || password::hash(&new_password)).await;
    let change = UserChange { password_hash: Some(hash), ..UserChange::default() };
    let audit = record(None, "user.password", "user", Some(user.id.to_string()), None, Some(json!({"password": "***"})));
    state.update_user(user.id, change, actor, audit).await?.ok_or_else(|| ApiError::not_found("no such user"))
}

/// Removes the file with the first owner's generated password once `login`, whose password it
/// is, has a new one.
pub fn forget_initial_password(file: Option<&std::path::Path>, login: &str) {
    let Some(file) = file else { return };
    let holds = std::fs::read_to_string(file).is_ok_and(|text| text.lines().any(|l| l.trim() == format!("login: {login}")));
    if holds {
        match std::fs::remove_file(file) {
            Ok(()) => tracing::info!(path = %file.display(), "the first owner's password was changed; its file is removed"),
            Err(error) => tracing::warn!(path = %file.display(), %error, "could not remove the first owner's password file"),
        }
    }
}

fn unix_seconds(at: Timestamp) -> u64 {
    u64::try_from(at.as_micros() / 1_000_000).unwrap_or(0)
}

/// How long a session lasts when nothing else is configured.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);
