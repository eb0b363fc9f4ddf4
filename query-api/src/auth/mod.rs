//! Who is asking, and what they may do.
//!
//! A caller proves who they are with a session cookie (browsers) or a personal API token
//! (`Authorization: Bearer`, scripts). Either names a user, read on every request (from memory
//! only while the database tells of every change: `StateStore::keep_access_in_memory`), so a
//! disabled user, a changed password or role, or a revoked token takes effect on the next one.
//! The rules of who may do what are in [`policy`].

pub mod password;
pub mod policy;
pub mod session;
pub mod throttle;

use std::time::Duration;

use ksa_edge::ClientAddr;
use ksa_schemas::Timestamp;
use ksa_state::admin::{Actor, User};
use ksa_state::secret::sha256_hex;
use ksa_state::{AdminStore, StateError};
use warp::http::HeaderMap;

use crate::error::ApiError;
pub use session::{Session, SessionKey};

/// How sessions are made.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    pub session_key: SessionKey,
    pub session_lifetime: Duration,
    /// Cookies only over HTTPS (`server.public_url` is https).
    pub secure_cookies: bool,
}

impl AuthConfig {
    pub fn new(session_key: SessionKey) -> Self {
        AuthConfig { session_key, session_lifetime: Duration::from_secs(8 * 3600), secure_cookies: false }
    }
}

/// How the caller proved who they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Session,
    Token,
}

/// An authenticated request's user.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user: User,
    pub via: Via,
    pub client: ClientAddr,
}

impl Caller {
    /// The caller as the audit log records them.
    pub fn actor(&self) -> Actor {
        Actor { name: self.user.login.clone(), user_id: Some(self.user.id), address: Some(self.client.ip.to_string()) }
    }
}

/// The caller of a request with these headers, or 401.
pub async fn authenticate<S: AdminStore>(
    state: &S,
    config: &AuthConfig,
    headers: &HeaderMap,
    client: ClientAddr,
) -> Result<Caller, ApiError> {
    if let Some(value) = headers.get("authorization") {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <token>`"))?;
        let found = state.use_token(&sha256_hex(token), now()).await?;
        let Some(found) = found else { return Err(ApiError::unauthorized("this API token is not valid (revoked?)")) };
        let user = active_user(state, found.user_id).await?.ok_or_else(|| ApiError::unauthorized("this API token's user is disabled"))?;
        return Ok(Caller { user, via: Via::Token, client });
    }
    let cookie = headers.get_all("cookie").iter().filter_map(|v| v.to_str().ok()).find_map(session::from_cookie_header);
    let Some(token) = cookie else {
        return Err(ApiError::unauthorized("log in first (POST /api/auth/login), or send an API token as `Authorization: Bearer`"));
    };
    let expired = || ApiError::unauthorized("the session has ended; log in again");
    let session = config.session_key.verify(token).ok_or_else(expired)?;
    let user = active_user(state, session.user_id).await?.ok_or_else(expired)?;
    if user.token_version != session.token_version {
        return Err(expired());
    }
    Ok(Caller { user, via: Via::Session, client })
}

async fn active_user<S: AdminStore>(state: &S, id: i64) -> Result<Option<User>, StateError> {
    Ok(state.user(id).await?.filter(|u| u.is_active))
}

/// True when a write with these headers may come from a page of another site: browsers say
/// where a request comes from (`Sec-Fetch-Site`, else `Origin`); a request that says neither
/// is not from a browser, so no cookie of ours rides along without its sender's will.
pub fn cross_origin(headers: &HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site") {
        return !matches!(site, "same-origin" | "none");
    }
    match (header("origin"), header("host")) {
        (Some(origin), Some(host)) => origin.split_once("://").is_none_or(|(_, authority)| !authority.eq_ignore_ascii_case(host)),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// The wall clock, read at the edge.
pub fn now() -> Timestamp {
    Timestamp::from_micros(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn writes_from_other_sites_are_recognised() {
        assert!(cross_origin(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(cross_origin(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(!cross_origin(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(cross_origin(&headers(&[("origin", "https://evil.example"), ("host", "ksa.example")])));
        assert!(!cross_origin(&headers(&[("origin", "https://ksa.example"), ("host", "ksa.example")])));
        assert!(cross_origin(&headers(&[("origin", "null"), ("host", "ksa.example")])));
        assert!(!cross_origin(&headers(&[("host", "ksa.example")])), "curl sends neither header");
    }
}
