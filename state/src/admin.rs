//! What people change: users and their project memberships, personal API tokens, login
//! failures, projects' administration, settings revisions and their recomputes, per-order
//! overrides, and the audit log every such change writes in the same transaction.

use std::collections::HashMap;
use std::future::Future;

use ksa_schemas::Timestamp;

use crate::StateError;

/// A user's role in one project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProjectRole {
    Viewer,
    Admin,
}

impl ProjectRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectRole::Admin => "admin",
            ProjectRole::Viewer => "viewer",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "admin" => Some(ProjectRole::Admin),
            "viewer" => Some(ProjectRole::Viewer),
            _ => None,
        }
    }
}

/// A user's access to one project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    pub project_id: i64,
    pub slug: String,
    pub role: ProjectRole,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub login: String,
    pub email: Option<String>,
    pub is_owner: bool,
    pub is_active: bool,
    /// Grows when the user's access changes; sessions signed with an older one are refused.
    pub token_version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub memberships: Vec<Membership>,
}

impl User {
    pub fn role_in(&self, project_id: i64) -> Option<ProjectRole> {
        self.memberships.iter().find(|m| m.project_id == project_id).map(|m| m.role)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewUser {
    pub login: String,
    pub email: Option<String>,
    /// An argon2id PHC string.
    pub password_hash: String,
    pub is_owner: bool,
    pub memberships: Vec<(i64, ProjectRole)>,
}

/// A change to a user; `None` fields stay as they are. A change of password, activity, owner
/// flag or memberships ends the user's open sessions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserChange {
    pub email: Option<Option<String>>,
    pub password_hash: Option<String>,
    pub is_active: Option<bool>,
    pub is_owner: Option<bool>,
    /// The user's memberships as a whole, replacing the stored ones.
    pub memberships: Option<Vec<(i64, ProjectRole)>>,
}

/// A personal API token, without the token (only its digest is stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiToken {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

/// Who made a change, and from where: written with the change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// A login, or `cli`.
    pub name: String,
    pub user_id: Option<i64>,
    pub address: Option<String>,
}

impl Actor {
    /// A change made with the command-line tool on the server.
    pub fn cli() -> Self {
        Actor { name: "cli".into(), user_id: None, address: None }
    }
}

/// One audit row to write. `before` and `after` are JSON documents with secrets already
/// replaced by `"***"`.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditRecord {
    pub project_id: Option<i64>,
    /// `settings.update`, `user.create`, …
    pub action: String,
    /// What was changed: `user`, `project`, `settings`, `token`, `override`, …
    pub entity: String,
    pub entity_id: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// An audit row as read back.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    pub id: i64,
    pub at: Timestamp,
    pub actor: String,
    pub client_address: Option<String>,
    pub project_id: Option<i64>,
    pub action: String,
    pub entity: String,
    pub entity_id: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// Which audit rows to read: of some projects (with or without project-less rows), or all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditScope {
    All,
    Projects(Vec<i64>),
}

/// A project as its administrators see it. Secrets appear only as whether they are set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectDetail {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub timezone: String,
    pub is_active: bool,
    pub base_url: String,
    pub rate_per_minute: Option<u32>,
    pub token_set: bool,
    /// The API token's last characters.
    pub token_hint: Option<String>,
    pub allowed_cidrs: Vec<String>,
    pub created_at: Timestamp,
}

/// A change to a project; `None` fields stay as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProjectChange {
    pub name: Option<String>,
    pub is_active: Option<bool>,
    pub allowed_cidrs: Option<Vec<String>>,
}

/// A new settings document for a project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingsChange {
    pub project_id: i64,
    /// Valid JSON; validated by the caller.
    pub document: String,
    /// The document's time zone: the project's column follows it.
    pub timezone: String,
    /// Store only over this revision (`If-Match`); `None` stores over any.
    pub expected_revision: Option<i64>,
}

/// A project's recompute after a settings change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecomputeProgress {
    pub revision: i64,
    /// `running`, `done` or `failed`.
    pub state: String,
    pub orders_total: u64,
    pub orders_done: u64,
    pub error: Option<String>,
    /// The shape of the rows it wrote (`ksa_schemas::row::ROW_FORMAT`).
    pub row_format: i64,
    pub started_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A person's correction of one order; each set field beats every rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderOverride {
    pub is_urgent: Option<bool>,
    /// `normal` or `urgent`.
    pub sla_profile: Option<String>,
    pub cycle_start: Option<Timestamp>,
    pub cycle_end: Option<Timestamp>,
    pub updated_by: Option<String>,
    pub updated_at: Option<Timestamp>,
}

/// Failed logins in the throttling windows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoginFailures {
    /// Of this login from this address since its last success, oldest first.
    pub pair: Vec<Timestamp>,
    /// From this address, any login, oldest first.
    pub address: Vec<Timestamp>,
}

/// The administration store.
pub trait AdminStore: Clone + Send + Sync + 'static {
    // --- users ----------------------------------------------------------------------------
    fn user_count(&self) -> impl Future<Output = Result<u64, StateError>> + Send;
    /// Fails with [`StateError::LoginTaken`] when the login is used (in any case).
    fn create_user(&self, user: NewUser, actor: &Actor, audit: AuditRecord) -> impl Future<Output = Result<User, StateError>> + Send;
    /// The user with this login (in any case) and their password hash.
    fn user_by_login(&self, login: &str) -> impl Future<Output = Result<Option<(User, String)>, StateError>> + Send;
    fn user(&self, id: i64) -> impl Future<Output = Result<Option<User>, StateError>> + Send;
    fn users(&self) -> impl Future<Output = Result<Vec<User>, StateError>> + Send;
    /// Applies the change; returns the user as now stored (`None`: no such user).
    fn update_user(
        &self,
        id: i64,
        change: UserChange,
        actor: &Actor,
        audit: AuditRecord,
    ) -> impl Future<Output = Result<Option<User>, StateError>> + Send;

    // --- tokens ---------------------------------------------------------------------------
    fn create_token(
        &self,
        user_id: i64,
        name: &str,
        token_hash: &str,
        actor: &Actor,
        audit: AuditRecord,
    ) -> impl Future<Output = Result<ApiToken, StateError>> + Send;
    fn tokens(&self, user_id: i64) -> impl Future<Output = Result<Vec<ApiToken>, StateError>> + Send;
    /// The token with this digest, and marks it used at `now` (at most once a minute).
    fn use_token(&self, token_hash: &str, now: Timestamp) -> impl Future<Output = Result<Option<ApiToken>, StateError>> + Send;
    /// Deletes one of the user's tokens; false when they have none with that id.
    fn delete_token(
        &self,
        user_id: i64,
        token_id: i64,
        actor: &Actor,
        audit: AuditRecord,
    ) -> impl Future<Output = Result<bool, StateError>> + Send;

    // --- login throttling -----------------------------------------------------------------
    /// Records a login attempt; a success also forgets every attempt before `forget_before`.
    fn record_login(
        &self,
        login: &str,
        address: &str,
        at: Timestamp,
        succeeded: bool,
        forget_before: Timestamp,
    ) -> impl Future<Output = Result<(), StateError>> + Send;
    /// The pair's failures since `pair_since` and after its last success, and the address's
    /// failures since `address_since`.
    fn login_failures(
        &self,
        login: &str,
        address: &str,
        pair_since: Timestamp,
        address_since: Timestamp,
    ) -> impl Future<Output = Result<LoginFailures, StateError>> + Send;

    // --- audit ----------------------------------------------------------------------------
    /// Writes one row on its own (changes made through this trait write theirs themselves).
    fn audit(&self, actor: &Actor, record: AuditRecord) -> impl Future<Output = Result<(), StateError>> + Send;
    /// Newest first, with ids below `before_id` when given.
    fn audit_entries(
        &self,
        scope: &AuditScope,
        before_id: Option<i64>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<AuditEntry>, StateError>> + Send;

    // --- projects -------------------------------------------------------------------------
    fn project_detail(&self, project_id: i64) -> impl Future<Output = Result<Option<ProjectDetail>, StateError>> + Send;
    fn update_project(
        &self,
        project_id: i64,
        change: ProjectChange,
        actor: &Actor,
        audit: AuditRecord,
    ) -> impl Future<Output = Result<(), StateError>> + Send;
    /// Deletes the project and everything it owns.
    fn delete_project(&self, project_id: i64, actor: &Actor, audit: AuditRecord) -> impl Future<Output = Result<(), StateError>> + Send;
    /// Replaces the webhook secret's digest; the previous secret keeps working until
    /// `previous_until`.
    fn rotate_webhook_secret(
        &self,
        project_id: i64,
        secret_hash: &str,
        previous_until: Timestamp,
        actor: &Actor,
        audit: AuditRecord,
    ) -> impl Future<Output = Result<(), StateError>> + Send;

    // --- settings -------------------------------------------------------------------------
    /// Stores the next revision, with its audit row (whose `before` and `after` are set to the
    /// stored and the new document); fails with [`StateError::StaleRevision`] when
    /// `expected_revision` is given and is not the stored one.
    fn store_settings(
        &self,
        change: SettingsChange,
        actor: &Actor,
        audit: AuditRecord,
    ) -> impl Future<Output = Result<i64, StateError>> + Send;
    /// The document of one revision.
    fn settings_revision(&self, project_id: i64, revision: i64) -> impl Future<Output = Result<Option<String>, StateError>> + Send;
    /// The revision whose recompute has finished (what reads compute with), 0 when the project
    /// never had settings stored.
    fn applied_revision(&self, project_id: i64) -> impl Future<Output = Result<i64, StateError>> + Send;

    // --- recomputes -----------------------------------------------------------------------
    fn start_recompute(&self, project_id: i64, revision: i64, now: Timestamp) -> impl Future<Output = Result<(), StateError>> + Send;
    fn recompute_progress(
        &self,
        project_id: i64,
        revision: i64,
        done: u64,
        total: u64,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StateError>> + Send;
    /// Ends the recompute of `revision`: done (reads move to it; its rows are in `row_format`)
    /// or failed with an error.
    fn finish_recompute(
        &self,
        project_id: i64,
        revision: i64,
        error: Option<&str>,
        row_format: i64,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StateError>> + Send;
    fn recompute(&self, project_id: i64) -> impl Future<Output = Result<Option<RecomputeProgress>, StateError>> + Send;

    // --- overrides ------------------------------------------------------------------------
    /// Stores the order's override, replacing the previous one.
    fn put_override(
        &self,
        project_id: i64,
        order_id: i64,
        value: &OrderOverride,
        actor: &Actor,
        audit: AuditRecord,
    ) -> impl Future<Output = Result<(), StateError>> + Send;
    /// False when the order had none.
    fn delete_override(
        &self,
        project_id: i64,
        order_id: i64,
        actor: &Actor,
        audit: AuditRecord,
    ) -> impl Future<Output = Result<bool, StateError>> + Send;
    fn overrides(&self, project_id: i64, order_ids: &[i64])
    -> impl Future<Output = Result<HashMap<i64, OrderOverride>, StateError>> + Send;
    /// Every override of the project (few: people set them by hand).
    fn project_overrides(&self, project_id: i64) -> impl Future<Output = Result<HashMap<i64, OrderOverride>, StateError>> + Send;
}
