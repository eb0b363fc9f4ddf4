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
pub mod webhooks;

use ksa_schemas::Timestamp;
use ksa_state::Project;
use ksa_state::admin::{AuditRecord, User};
use serde_json::{Value, json};

use crate::auth::policy;
use crate::error::ApiError;

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

/// The projects an admin's read of `what` (`audit log`) covers: the one `slug` names (404
/// unless `user` sees it, 403 unless they administer it), else every project they administer.
/// 403 for a user who administers none.
pub fn administered<'p>(user: &User, projects: &'p [Project], slug: Option<&str>, what: &str) -> Result<Vec<&'p Project>, ApiError> {
    if !policy::administers_any(user) {
        return Err(ApiError::forbidden(format!("only owners and project admins read the {what}")));
    }
    match slug {
        Some(slug) => {
            let project = projects
                .iter()
                .find(|p| p.slug == slug && policy::sees(user, p.id))
                .ok_or_else(|| ApiError::not_found(format!("no project `{slug}`")))?;
            if !policy::administers(user, project.id) {
                return Err(ApiError::forbidden(format!("only an admin of `{slug}` reads its {what}")));
            }
            Ok(vec![project])
        }
        None => Ok(projects.iter().filter(|p| policy::administers(user, p.id)).collect()),
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
