//! Personal API tokens: 32 random bytes, shown once, kept as SHA-256, named, listed, revoked.

use ksa_bus::Bus;
use ksa_state::admin::{Actor, ApiToken, User};
use ksa_state::secret::{random_hex, sha256_hex};
use ksa_state::{AdminStore, StateStore};
use serde::Deserialize;
use serde_json::{Value, json};
use warp::http::StatusCode;
use warp::reply::Response;

use crate::admin::record;
use crate::error::ApiError;
use crate::routes::{Call, json, ok};

/// The prefix of every token, so that a leaked one is recognisable.
pub const PREFIX: &str = "ksa_";

fn token_json(token: &ApiToken) -> Value {
    json!({
        "id": token.id,
        "name": token.name,
        "created_at": token.created_at.to_string(),
        "last_used_at": token.last_used_at.map(|t| t.to_string()),
    })
}

/// A new token for `user`; returns it with the token itself, which is never shown again.
pub async fn create_token<S: AdminStore>(state: &S, user: &User, actor: &Actor, name: &str) -> Result<(ApiToken, String), ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::bad("name", "give the token a name of 1 to 100 characters"));
    }
    let secret = format!("{PREFIX}{}", random_hex(32));
    let audit = record(None, "token.create", "token", None, None, Some(json!({"user": user.login, "name": name, "token": "***"})));
    let token = state.create_token(user.id, name, &sha256_hex(&secret), actor, audit).await?;
    Ok((token, secret))
}

pub async fn list<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    let caller = call.caller()?;
    let tokens = call.api.state.tokens(caller.user.id).await?;
    ok(&json!({"tokens": tokens.iter().map(token_json).collect::<Vec<_>>()}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
}

pub async fn create<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    let caller = call.caller()?;
    let body: NewToken = call.request.json()?;
    let (token, secret) = create_token(&call.api.state, &caller.user, &caller.actor(), &body.name).await?;
    let mut answer = token_json(&token);
    answer["token"] = json!(secret);
    Ok(json(StatusCode::CREATED, &answer))
}

pub async fn delete<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    let caller = call.caller()?;
    let id = call.id("id")?;
    let audit = record(None, "token.delete", "token", Some(id.to_string()), Some(json!({"user": caller.user.login})), None);
    if !call.api.state.delete_token(caller.user.id, id, &caller.actor(), audit).await? {
        return Err(ApiError::not_found(format!("you have no token {id}")));
    }
    ok(&json!({"status": "revoked"}))
}
