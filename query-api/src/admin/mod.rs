//! What people change, over HTTP and from the command line alike: the functions here take the
//! acting user (an owner named `cli` on the command line) and an [`Actor`] for the audit log,
//! check the rules of [`crate::auth::policy`], and change the store. The HTTP handlers beside
//! them only parse, call and shape.

pub mod audit;
pub mod dicts;
pub mod overrides;
pub mod projects;
pub mod session;
pub mod settings;
pub mod tokens;
pub mod users;

use ksa_schemas::Timestamp;
use ksa_state::admin::{AuditRecord, User};
use serde_json::{Value, json};

/// The command line acts as an owner named `cli`.
pub fn cli_user() -> User {
    User {
        id: 0,
        login: "cli".into(),
        email: None,
        is_owner: true,
        is_active: true,
        token_version: 0,
        created_at: Timestamp::from_micros(0),
        updated_at: Timestamp::from_micros(0),
        memberships: Vec::new(),
    }
}

/// An audit row of `action` on `entity`.
pub fn record(
    project_id: Option<i64>,
    action: &str,
    entity: &str,
    entity_id: Option<String>,
    before: Option<Value>,
    after: Option<Value>,
) -> AuditRecord {
    AuditRecord { project_id, action: action.into(), entity: entity.into(), entity_id, before, after }
}

/// A user as answers show them (never the password hash).
pub fn user_json(user: &User) -> Value {
    json!({
        "id": user.id,
        "login": user.login,
        "email": user.email,
        "owner": user.is_owner,
        "active": user.is_active,
        "projects": user.memberships.iter().map(|m| json!({"project": m.slug, "role": m.role.as_str()})).collect::<Vec<_>>(),
        "created_at": user.created_at.to_string(),
        "updated_at": user.updated_at.to_string(),
    })
}
