//! Logins in the binary: the API's configuration (session key, public URL, grace periods), the
//! first owner of a new installation, and the `user`, `token` and `audit` commands.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use ksa_query_api::admin::users::{Grant, NewUserRequest, UserPatch};
use ksa_query_api::admin::{cli_user, tokens, users};
use ksa_query_api::{ApiConfig, ApiError, AuthConfig, SessionKey};
use ksa_state::StateStore;
use ksa_state::admin::{Actor, AuditScope, User};
use ksa_state::secret::{decode_hex_key, load_or_create_key, write_private_file};

use crate::config::Config;

/// The session key file in the data dir when no key is configured.
pub const SESSION_KEY_FILE: &str = "session.key";
/// Where the first owner's password is written, readable by the server's user only.
pub const OWNER_PASSWORD_FILE: &str = "owner-password.txt";
/// The first owner's login.
pub const OWNER_LOGIN: &str = "owner";

/// The API's configuration for a server listening on `listen`.
pub fn api_config(config: &Config, listen: &str) -> anyhow::Result<ApiConfig> {
    let key = match &config.auth.session_key {
        Some(hex) => decode_hex_key(hex.trim())
            .context("auth.session_key must be 64 hexadecimal digits; generate one with `openssl rand -hex 32`")?,
        None => load_or_create_key(&config.data_dir.join(SESSION_KEY_FILE))?,
    };
    let public_url = config.server.public_url(listen);
    let mut auth = AuthConfig::new(SessionKey::new(&key).map_err(|e| anyhow::anyhow!("the session key cannot be used: {e}"))?);
    auth.session_lifetime = Duration::from_secs(config.auth.session_hours.max(1) * 3600);
    auth.secure_cookies = public_url.starts_with("https://");
    let mut api = ApiConfig::new(auth, public_url);
    api.secret_grace = Duration::from_secs(config.auth.secret_grace_minutes * 60);
    api.owner_password_file = Some(owner_password_file(config));
    api.live.heartbeat = Duration::from_secs(config.live.heartbeat_seconds.max(1));
    api.live.client_buffer = config.live.client_buffer.max(1);
    api.live.max_streams_per_user = config.live.max_streams_per_user.max(1);
    api.live.max_streams = config.live.max_streams.max(1);
    api.keep_callers_in_memory = config.database.keep_callers_in_memory;
    Ok(api)
}

pub fn owner_password_file(config: &Config) -> PathBuf {
    config.data_dir.join(OWNER_PASSWORD_FILE)
}

/// On an installation without users: creates the owner `owner` with a random password, written
/// to a file readable by this user only (the log says where, never the password). The file goes
/// when that password is changed.
pub async fn ensure_owner<S: StateStore>(state: &S, config: &Config) -> anyhow::Result<()> {
    if state.user_count().await? > 0 {
        return Ok(());
    }
    let password = ksa_query_api::auth::password::generate();
    let request =
        NewUserRequest { login: OWNER_LOGIN.into(), email: None, password: Some(password.clone()), owner: true, projects: Vec::new() };
    let actor = Actor { name: "system".into(), user_id: None, address: None };
    match users::create_user(state, &cli_user(), &actor, request).await {
        Ok(_) => {}
        // Another process of the deployment made it first.
        Err(error) if error.code == "conflict" => return Ok(()),
        Err(error) => bail!("creating the first owner: {}", error.message),
    }
    let path = owner_password_file(config);
    let _ = std::fs::remove_file(&path);
    write_private_file(&path, &format!("login: {OWNER_LOGIN}\npassword: {password}\n"))
        .with_context(|| format!("writing the first owner's password to {}", path.display()))?;
    tracing::warn!(
        path = %path.display(),
        "no users yet: created the owner `{OWNER_LOGIN}`; its password is in this file (mode 0600). Log in and change it; the file is removed then"
    );
    Ok(())
}

fn api_error(error: ApiError) -> anyhow::Error {
    match &error.field {
        Some(field) => anyhow::anyhow!("{field}: {}", error.message),
        None => anyhow::anyhow!("{}", error.message),
    }
}

/// `(slug, role)` grants from `--projects a,b` with one role.
fn grants(projects: &[String], role: &str) -> Vec<Grant> {
    projects.iter().filter(|p| !p.trim().is_empty()).map(|p| Grant { project: p.trim().to_owned(), role: role.to_owned() }).collect()
}

async fn user_by_login<S: StateStore>(state: &S, login: &str) -> anyhow::Result<User> {
    Ok(state.user_by_login(login).await?.with_context(|| format!("--login: no user `{login}`; `keycrm-analytics user list` shows them"))?.0)
}

/// What `user add` creates.
pub struct AddUser {
    pub login: String,
    /// `owner`, `admin` or `viewer`.
    pub role: String,
    pub email: Option<String>,
    pub projects: Vec<String>,
    pub password: Option<String>,
}

/// `user add`: prints the generated password once when none was given.
pub async fn add_user<S: StateStore>(state: &S, add: AddUser, out: &mut dyn Write) -> anyhow::Result<()> {
    let (owner, role) = match add.role.as_str() {
        "owner" => (true, "admin"),
        "admin" | "viewer" => (false, add.role.as_str()),
        other => bail!("--role: {other:?} is not owner, admin or viewer"),
    };
    if !owner && add.projects.is_empty() {
        bail!("--projects: an admin or viewer needs at least one project (e.g. --projects shop)");
    }
    let request =
        NewUserRequest { login: add.login, email: add.email, password: add.password, owner, projects: grants(&add.projects, role) };
    let (user, generated) = users::create_user(state, &cli_user(), &Actor::cli(), request).await.map_err(api_error)?;
    writeln!(out, "user `{}` created (id {})", user.login, user.id)?;
    if let Some(password) = generated {
        writeln!(out, "password: {password}")?;
        writeln!(out, "It is shown only now; the user can change it after logging in.")?;
    }
    Ok(())
}

/// `user list`.
pub async fn list_users<S: StateStore>(state: &S, out: &mut dyn Write) -> anyhow::Result<()> {
    let users = state.users().await?;
    if users.is_empty() {
        writeln!(out, "no users yet: `run` creates the owner on its first start, or add one with `keycrm-analytics user add`")?;
    }
    for user in users {
        let role = if user.is_owner { "owner".to_owned() } else { "member".to_owned() };
        let projects: Vec<String> = user.memberships.iter().map(|m| format!("{}:{}", m.slug, m.role.as_str())).collect();
        let active = if user.is_active { "active" } else { "disabled" };
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}",
            user.id,
            user.login,
            role,
            active,
            user.email.as_deref().unwrap_or("-"),
            projects.join(",")
        )?;
    }
    Ok(())
}

/// `user passwd`, `user disable`, `user enable`, `user grant`, `user revoke`: one change.
pub enum UserCommand {
    Password(String),
    Active(bool),
    Grant { projects: Vec<String>, role: String },
    Revoke { projects: Vec<String> },
}

pub async fn change_user<S: StateStore>(
    state: &S,
    config: &Config,
    login: &str,
    command: UserCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let user = user_by_login(state, login).await?;
    let mut patch = UserPatch::default();
    let what = match command {
        UserCommand::Password(password) => {
            patch.password = Some(password);
            "password changed; the user's sessions have ended"
        }
        UserCommand::Active(active) => {
            patch.active = Some(active);
            if active { "enabled" } else { "disabled; the user's sessions have ended" }
        }
        UserCommand::Grant { projects, role } => {
            if ksa_state::admin::ProjectRole::parse(&role).is_none() {
                bail!("--role: {role:?} is not admin or viewer");
            }
            let mut all: Vec<Grant> = user
                .memberships
                .iter()
                .filter(|m| !projects.iter().any(|p| p.trim() == m.slug))
                .map(|m| Grant { project: m.slug.clone(), role: m.role.as_str().to_owned() })
                .collect();
            all.extend(grants(&projects, &role));
            patch.projects = Some(all);
            "access granted"
        }
        UserCommand::Revoke { projects } => {
            let kept = user
                .memberships
                .iter()
                .filter(|m| !projects.iter().any(|p| p.trim() == m.slug))
                .map(|m| Grant { project: m.slug.clone(), role: m.role.as_str().to_owned() })
                .collect();
            patch.projects = Some(kept);
            "access revoked"
        }
    };
    let changed_password = patch.password.is_some();
    let updated = users::update_user(state, &cli_user(), &Actor::cli(), user.id, patch).await.map_err(api_error)?;
    if changed_password {
        ksa_query_api::admin::session::forget_initial_password(Some(&owner_password_file(config)), &updated.login);
    }
    writeln!(out, "user `{}`: {what}", updated.login)?;
    Ok(())
}

/// `token create`: prints the token once.
pub async fn create_token<S: StateStore>(state: &S, login: &str, name: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let user = user_by_login(state, login).await?;
    let (token, secret) = tokens::create_token(state, &user, &Actor::cli(), name).await.map_err(api_error)?;
    writeln!(out, "token `{}` (id {}) for `{}`:", token.name, token.id, user.login)?;
    writeln!(out, "{secret}")?;
    writeln!(out, "It is shown only now. Send it as `Authorization: Bearer <token>`.")?;
    Ok(())
}

/// `audit [--project S] [--limit N]`: newest first.
pub async fn audit<S: StateStore>(state: &S, project: Option<&str>, limit: u32, out: &mut dyn Write) -> anyhow::Result<()> {
    let projects = state.projects().await?;
    let scope = match project {
        Some(slug) => AuditScope::Projects(vec![
            projects.iter().find(|p| p.slug == slug).with_context(|| format!("--project: no project `{slug}`"))?.id,
        ]),
        None => AuditScope::All,
    };
    for entry in state.audit_entries(&scope, None, limit.clamp(1, 10_000)).await? {
        let slug = entry.project_id.and_then(|id| projects.iter().find(|p| p.id == id)).map_or("-", |p| p.slug.as_str());
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}:{}\tbefore={}\tafter={}",
            entry.at,
            entry.actor,
            entry.client_address.as_deref().unwrap_or("-"),
            slug,
            entry.action,
            entry.entity,
            entry.entity_id.as_deref().unwrap_or("-"),
            entry.before.as_deref().unwrap_or("null"),
            entry.after.as_deref().unwrap_or("null"),
        )?;
    }
    Ok(())
}

/// A password from standard input (its first line), never from the command line.
pub fn read_password_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!("--password-stdin: standard input held no password");
    }
    Ok(password)
}
