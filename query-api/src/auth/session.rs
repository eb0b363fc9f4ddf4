//! Browser sessions: a signed token (HS256) in an HttpOnly, SameSite=Strict cookie. It names the
//! user and their token version; changing the user's password, roles or activity bumps the
//! version, which ends every session signed before.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The cookie that holds the session token.
pub const COOKIE: &str = "ksa_session";

/// The signing key, the same on every query-API process of a deployment.
#[derive(Clone)]
pub struct SessionKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(***)")
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The user id.
    sub: String,
    /// The user's token version when the session began.
    tv: i64,
    iat: u64,
    exp: u64,
}

/// What a valid session names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    pub user_id: i64,
    pub token_version: i64,
}

impl SessionKey {
    /// A key from 32 secret bytes (the session key file, or `auth.session_key`).
    pub fn new(key: &[u8; 32]) -> Result<Self, jsonwebtoken::errors::Error> {
        Ok(SessionKey { encoding: EncodingKey::from_secret(key)?, decoding: DecodingKey::from_secret(key)? })
    }

    /// A token for `session`, valid for `lifetime` from `now` (seconds since the Unix epoch).
    pub fn sign(&self, session: Session, now: u64, lifetime: Duration) -> String {
        let claims = Claims { sub: session.user_id.to_string(), tv: session.token_version, iat: now, exp: now + lifetime.as_secs() };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).unwrap_or_default()
    }

    /// The session a token names, if it was signed with this key and has not expired.
    pub fn verify(&self, token: &str) -> Option<Session> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).ok()?;
        Some(Session { user_id: data.claims.sub.parse().ok()?, token_version: data.claims.tv })
    }
}

/// `Set-Cookie` for a new session.
pub fn set_cookie(token: &str, lifetime: Duration, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}", lifetime.as_secs())
}

/// `Set-Cookie` that ends the session in the browser.
pub fn clear_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

/// The session token in a `Cookie` header, if any.
pub fn from_cookie_header(header: &str) -> Option<&str> {
    header.split(';').filter_map(|pair| pair.trim().split_once('=')).find(|(name, _)| *name == COOKIE).map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    }

    #[test]
    fn a_signed_session_verifies_with_its_key_only() {
        let key = SessionKey::new(&[3; 32]).unwrap();
        let session = Session { user_id: 42, token_version: 7 };
        let token = key.sign(session, now(), Duration::from_secs(3600));
        assert_eq!(key.verify(&token), Some(session));
        assert_eq!(SessionKey::new(&[4; 32]).unwrap().verify(&token), None);
        let mut forged = token.clone();
        forged.pop();
        assert_eq!(key.verify(&forged), None);
        assert_eq!(key.verify("not.a.token"), None);
    }

    #[test]
    fn an_expired_session_is_refused() {
        let key = SessionKey::new(&[3; 32]).unwrap();
        let token = key.sign(Session { user_id: 1, token_version: 0 }, now() - 10_000, Duration::from_secs(60));
        assert_eq!(key.verify(&token), None);
    }

    #[test]
    fn cookies_are_http_only_and_strict_and_found_among_others() {
        let cookie = set_cookie("abc", Duration::from_secs(8 * 3600), true);
        assert_eq!(cookie, "ksa_session=abc; Path=/; HttpOnly; SameSite=Strict; Max-Age=28800; Secure");
        assert!(!set_cookie("abc", Duration::from_secs(1), false).contains("Secure"));
        assert_eq!(from_cookie_header("a=1; ksa_session=tok.en; b=2"), Some("tok.en"));
        assert_eq!(from_cookie_header("a=1"), None);
    }
}
