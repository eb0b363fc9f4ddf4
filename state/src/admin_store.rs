//! [`AdminStore`] on either database, written once (see `sql`).

use std::collections::HashMap;

use ksa_schemas::Timestamp;

use crate::StateError;
use crate::admin::{
    Actor, AdminStore, ApiToken, AuditEntry, AuditRecord, AuditScope, LoginFailures, Membership, NewUser, OrderOverride, ProjectChange,
    ProjectDetail, ProjectRole, RecomputeProgress, SettingsChange, User, UserChange,
};
use crate::columns;
use crate::sql::{Reader, Row, SqlStore, Tx, args, is_unique_violation, sql};

/// A token's `last_used_at` is written at most this often (µs), not on every request.
const TOKEN_USE_RESOLUTION_MICROS: i64 = 60_000_000;

macro_rules! user_columns {
    ($tail:literal) => {
        concat!(
            "SELECT id, login, email, is_owner, is_active, token_version, {micros:created_at} AS created_micros, \
             {micros:updated_at} AS updated_micros, password_hash FROM users",
            $tail
        )
    };
}

macro_rules! audit_columns {
    ($tail:literal) => {
        concat!(
            "SELECT id, {micros:created_at} AS at_micros, actor, client_address, project_id, action, entity, entity_id, \
             {text:before_json} AS before_text, {text:after_json} AS after_text FROM audit_log",
            $tail
        )
    };
}

macro_rules! override_columns {
    ($tail:literal) => {
        concat!(
            "SELECT o.order_id, o.is_urgent_override, o.sla_profile_override, {micros:o.cycle_start_override} AS start_micros, \
             {micros:o.cycle_end_override} AS end_micros, u.login, {micros:o.updated_at} AS updated_micros \
             FROM order_overrides o LEFT JOIN users u ON u.id = o.updated_by WHERE o.project_id = $1",
            $tail
        )
    };
}

fn add_overrides(found: &mut HashMap<i64, OrderOverride>, rows: Vec<Row>) -> Result<(), StateError> {
    for row in rows {
        found.insert(
            row.get("order_id")?,
            OrderOverride {
                is_urgent: row.get("is_urgent_override")?,
                sla_profile: row.get("sla_profile_override")?,
                cycle_start: row.opt_instant("start_micros")?,
                cycle_end: row.opt_instant("end_micros")?,
                updated_by: row.get("login")?,
                updated_at: row.opt_instant("updated_micros")?,
            },
        );
    }
    Ok(())
}

/// Writes the audit record of a change. Every change to who may do what, or where, is audited
/// in its transaction: so its commit also forgets the store's kept callers (`access_cache`).
async fn write_audit(tx: &mut Tx, actor: &Actor, record: AuditRecord) -> Result<(), StateError> {
    tx.changes_access();
    let before = record.before.map(|v| v.to_string());
    let after = record.after.map(|v| v.to_string());
    tx.execute(
        sql!(
            "INSERT INTO audit_log (project_id, user_id, actor, client_address, action, entity, entity_id, before_json, after_json) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, {json:$8}, {json:$9})"
        ),
        args![
            record.project_id,
            actor.user_id,
            &actor.name,
            actor.address.clone(),
            record.action,
            record.entity,
            record.entity_id,
            before,
            after
        ],
    )
    .await?;
    Ok(())
}

fn user_from_row(row: &Row, memberships: Vec<Membership>) -> Result<User, StateError> {
    Ok(User {
        id: row.get("id")?,
        login: row.get("login")?,
        email: row.get("email")?,
        is_owner: row.get("is_owner")?,
        is_active: row.get("is_active")?,
        token_version: row.get("token_version")?,
        created_at: row.instant("created_micros")?,
        updated_at: row.instant("updated_micros")?,
        memberships,
    })
}

/// Memberships of `user_ids` (all users when `None`), by user.
async fn memberships(reader: &mut Reader, user_ids: Option<&[i64]>) -> Result<HashMap<i64, Vec<Membership>>, StateError> {
    let rows = match user_ids {
        Some(ids) => {
            reader
                .fetch_all(
                    sql!(
                        "SELECT m.user_id, m.project_id, p.slug, m.role FROM user_projects m JOIN projects p ON p.id = m.project_id \
                         WHERE m.user_id {ids:$1} ORDER BY m.user_id, p.slug"
                    ),
                    args![ids],
                )
                .await?
        }
        None => {
            reader
                .fetch_all(
                    sql!(
                        "SELECT m.user_id, m.project_id, p.slug, m.role FROM user_projects m JOIN projects p ON p.id = m.project_id \
                         ORDER BY m.user_id, p.slug"
                    ),
                    args![],
                )
                .await?
        }
    };
    let mut by_user: HashMap<i64, Vec<Membership>> = HashMap::new();
    for row in rows {
        let role: String = row.get("role")?;
        let role = ProjectRole::parse(&role).ok_or_else(|| StateError::Corrupt(format!("project role `{role}` is not admin or viewer")))?;
        by_user.entry(row.get("user_id")?).or_default().push(Membership {
            project_id: row.get("project_id")?,
            slug: row.get("slug")?,
            role,
        });
    }
    Ok(by_user)
}

async fn set_memberships(tx: &mut Tx, user_id: i64, memberships: &[(i64, ProjectRole)]) -> Result<(), StateError> {
    tx.execute(sql!("DELETE FROM user_projects WHERE user_id = $1"), args![user_id]).await?;
    for (project_id, role) in memberships {
        tx.execute(
            sql!("INSERT INTO user_projects (user_id, project_id, role) VALUES ($1, $2, $3)"),
            args![user_id, *project_id, role.as_str()],
        )
        .await?;
    }
    Ok(())
}

fn token_from_row(row: &Row) -> Result<ApiToken, StateError> {
    Ok(ApiToken {
        id: row.get("id")?,
        user_id: row.get("user_id")?,
        name: row.get("name")?,
        created_at: row.instant("created_micros")?,
        last_used_at: row.opt_instant("used_micros")?,
    })
}

fn micros_list(rows: Vec<Row>) -> Result<Vec<Timestamp>, StateError> {
    rows.iter().map(|row| Ok(Timestamp::from_micros(row.get(0)?))).collect()
}

impl<T: SqlStore + Clone + Send + Sync + 'static> AdminStore for T {
    async fn user_count(&self) -> Result<u64, StateError> {
        let row = self.db().fetch_one(sql!("SELECT count(*) FROM users"), args![]).await?;
        Ok(row.get::<i64, _>(0)?.max(0) as u64)
    }

    async fn create_user(&self, user: NewUser, actor: &Actor, audit: AuditRecord) -> Result<User, StateError> {
        let mut tx = self.db().begin().await?;
        let inserted = tx
            .fetch_one(
                sql!("INSERT INTO users (login, email, password_hash, is_owner) VALUES ($1, $2, $3, $4) RETURNING id"),
                args![&user.login, user.email.clone(), &user.password_hash, user.is_owner],
            )
            .await;
        let id: i64 = match inserted {
            Ok(row) => row.get(0)?,
            Err(error) if is_unique_violation(&error) => return Err(StateError::LoginTaken(user.login)),
            Err(error) => return Err(error),
        };
        set_memberships(&mut tx, id, &user.memberships).await?;
        let mut audit = audit;
        audit.entity_id = Some(id.to_string());
        write_audit(&mut tx, actor, audit).await?;
        tx.commit().await?;
        self.user(id).await?.ok_or_else(|| StateError::Corrupt(format!("user {id} vanished after it was created")))
    }

    async fn user_by_login(&self, login: &str) -> Result<Option<(User, String)>, StateError> {
        let mut reader = self.db().reader().await?;
        let Some(row) = reader.fetch_optional(sql!(user_columns!(" WHERE lower(login) = lower($1)")), args![login]).await? else {
            return Ok(None);
        };
        let id: i64 = row.get("id")?;
        let mut by_user = memberships(&mut reader, Some(&[id])).await?;
        let hash: String = row.get("password_hash")?;
        Ok(Some((user_from_row(&row, by_user.remove(&id).unwrap_or_default())?, hash)))
    }

    async fn user(&self, id: i64) -> Result<Option<User>, StateError> {
        let kept = self.db().access();
        if let Some(user) = kept.get(&kept.users, &id) {
            return Ok(Some(user));
        }
        let ticket = kept.ticket();
        let mut reader = self.db().reader().await?;
        let Some(row) = reader.fetch_optional(sql!(user_columns!(" WHERE id = $1")), args![id]).await? else {
            return Ok(None);
        };
        let mut by_user = memberships(&mut reader, Some(&[id])).await?;
        let user = user_from_row(&row, by_user.remove(&id).unwrap_or_default())?;
        kept.keep(&kept.users, ticket, id, user.clone());
        Ok(Some(user))
    }

    async fn users(&self) -> Result<Vec<User>, StateError> {
        let mut reader = self.db().reader().await?;
        let rows = reader.fetch_all(sql!(user_columns!(" ORDER BY lower(login)")), args![]).await?;
        let mut by_user = memberships(&mut reader, None).await?;
        rows.iter()
            .map(|row| {
                let id: i64 = row.get("id")?;
                user_from_row(row, by_user.remove(&id).unwrap_or_default())
            })
            .collect()
    }

    async fn update_user(&self, id: i64, change: UserChange, actor: &Actor, audit: AuditRecord) -> Result<Option<User>, StateError> {
        let mut tx = self.db().begin().await?;
        if tx.fetch_optional(sql!("SELECT id FROM users WHERE id = $1 {for_update}"), args![id]).await?.is_none() {
            return Ok(None);
        }
        let ends_sessions =
            change.password_hash.is_some() || change.is_active.is_some() || change.is_owner.is_some() || change.memberships.is_some();
        if let Some(email) = change.email {
            tx.execute(sql!("UPDATE users SET email = $1 WHERE id = $2"), args![email, id]).await?;
        }
        if let Some(hash) = change.password_hash {
            tx.execute(sql!("UPDATE users SET password_hash = $1 WHERE id = $2"), args![hash, id]).await?;
        }
        if let Some(active) = change.is_active {
            tx.execute(sql!("UPDATE users SET is_active = $1 WHERE id = $2"), args![active, id]).await?;
        }
        if let Some(owner) = change.is_owner {
            tx.execute(sql!("UPDATE users SET is_owner = $1 WHERE id = $2"), args![owner, id]).await?;
        }
        if let Some(memberships) = &change.memberships {
            set_memberships(&mut tx, id, memberships).await?;
        }
        if ends_sessions {
            tx.execute(sql!("UPDATE users SET token_version = token_version + 1 WHERE id = $1"), args![id]).await?;
        }
        tx.execute(sql!("UPDATE users SET updated_at = {now} WHERE id = $1"), args![id]).await?;
        write_audit(&mut tx, actor, audit).await?;
        tx.commit().await?;
        self.user(id).await
    }

    async fn create_token(
        &self,
        user_id: i64,
        name: &str,
        token_hash: &str,
        actor: &Actor,
        audit: AuditRecord,
    ) -> Result<ApiToken, StateError> {
        let mut tx = self.db().begin().await?;
        let row = tx
            .fetch_one(
                sql!(
                    "INSERT INTO api_tokens (user_id, name, token_hash) VALUES ($1, $2, $3) \
                     RETURNING id, user_id, name, {micros:created_at} AS created_micros, {micros:last_used_at} AS used_micros"
                ),
                args![user_id, name, token_hash],
            )
            .await?;
        let token = token_from_row(&row)?;
        let mut audit = audit;
        audit.entity_id = Some(token.id.to_string());
        write_audit(&mut tx, actor, audit).await?;
        tx.commit().await?;
        Ok(token)
    }

    async fn tokens(&self, user_id: i64) -> Result<Vec<ApiToken>, StateError> {
        let rows = self
            .db()
            .fetch_all(
                sql!(
                    "SELECT id, user_id, name, {micros:created_at} AS created_micros, {micros:last_used_at} AS used_micros \
                     FROM api_tokens WHERE user_id = $1 ORDER BY id"
                ),
                args![user_id],
            )
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn use_token(&self, token_hash: &str, now: Timestamp) -> Result<Option<ApiToken>, StateError> {
        let kept = self.db().access();
        let ticket = kept.ticket();
        let token = match kept.get(&kept.tokens, token_hash) {
            Some(token) => token,
            None => {
                let row = self
                    .db()
                    .fetch_optional(
                        sql!(
                            "SELECT id, user_id, name, {micros:created_at} AS created_micros, {micros:last_used_at} AS used_micros \
                             FROM api_tokens WHERE token_hash = $1"
                        ),
                        args![token_hash],
                    )
                    .await?;
                let Some(token) = row.as_ref().map(token_from_row).transpose()? else { return Ok(None) };
                kept.keep(&kept.tokens, ticket, token_hash.to_owned(), token.clone());
                token
            }
        };
        if token.last_used_at.is_none_or(|at| now.as_micros() - at.as_micros() >= TOKEN_USE_RESOLUTION_MICROS) {
            self.db().execute(sql!("UPDATE api_tokens SET last_used_at = {at:$1} WHERE id = $2"), args![now, token.id]).await?;
            kept.keep(&kept.tokens, ticket, token_hash.to_owned(), ApiToken { last_used_at: Some(now), ..token.clone() });
        }
        Ok(Some(token))
    }

    async fn delete_token(&self, user_id: i64, token_id: i64, actor: &Actor, audit: AuditRecord) -> Result<bool, StateError> {
        let mut tx = self.db().begin().await?;
        let deleted = tx.execute(sql!("DELETE FROM api_tokens WHERE id = $1 AND user_id = $2"), args![token_id, user_id]).await?;
        if deleted == 0 {
            return Ok(false);
        }
        write_audit(&mut tx, actor, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn record_login(
        &self,
        login: &str,
        address: &str,
        at: Timestamp,
        succeeded: bool,
        forget_before: Timestamp,
    ) -> Result<(), StateError> {
        let mut tx = self.db().begin().await?;
        tx.execute(
            sql!("INSERT INTO login_attempts (login, address, attempted_at, succeeded) VALUES (lower($1), $2, {at:$3}, $4)"),
            args![login, address, at, succeeded],
        )
        .await?;
        if succeeded {
            tx.execute(sql!("DELETE FROM login_attempts WHERE attempted_at < {at:$1}"), args![forget_before]).await?;
        }
        tx.commit().await
    }

    async fn login_failures(
        &self,
        login: &str,
        address: &str,
        pair_since: Timestamp,
        address_since: Timestamp,
    ) -> Result<LoginFailures, StateError> {
        let mut reader = self.db().reader().await?;
        let pair = reader
            .fetch_all(
                sql!(
                    "SELECT {micros:f.attempted_at} FROM login_attempts f WHERE f.login = lower($1) AND f.address = $2 \
                     AND NOT f.succeeded AND f.attempted_at >= {at:$3} AND NOT EXISTS (SELECT 1 FROM login_attempts s \
                     WHERE s.login = f.login AND s.address = f.address AND s.succeeded AND s.attempted_at >= f.attempted_at) \
                     ORDER BY f.attempted_at"
                ),
                args![login, address, pair_since],
            )
            .await?;
        let by_address = reader
            .fetch_all(
                sql!(
                    "SELECT {micros:attempted_at} FROM login_attempts WHERE address = $1 AND NOT succeeded \
                     AND attempted_at >= {at:$2} ORDER BY attempted_at"
                ),
                args![address, address_since],
            )
            .await?;
        Ok(LoginFailures { pair: micros_list(pair)?, address: micros_list(by_address)? })
    }

    async fn audit(&self, actor: &Actor, record: AuditRecord) -> Result<(), StateError> {
        let mut tx = self.db().begin().await?;
        write_audit(&mut tx, actor, record).await?;
        tx.commit().await
    }

    async fn audit_entries(&self, scope: &AuditScope, before_id: Option<i64>, limit: u32) -> Result<Vec<AuditEntry>, StateError> {
        let before = before_id.unwrap_or(i64::MAX);
        let rows = match scope {
            AuditScope::All => {
                self.db().fetch_all(sql!(audit_columns!(" WHERE id < $1 ORDER BY id DESC LIMIT $2")), args![before, limit]).await?
            }
            AuditScope::Projects(ids) => {
                self.db()
                    .fetch_all(
                        sql!(audit_columns!(" WHERE project_id {ids:$1} AND id < $2 ORDER BY id DESC LIMIT $3")),
                        args![ids.as_slice(), before, limit],
                    )
                    .await?
            }
        };
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: row.get("id")?,
                    at: row.instant("at_micros")?,
                    actor: row.get("actor")?,
                    client_address: row.get("client_address")?,
                    project_id: row.get("project_id")?,
                    action: row.get("action")?,
                    entity: row.get("entity")?,
                    entity_id: row.get("entity_id")?,
                    before: row.get("before_text")?,
                    after: row.get("after_text")?,
                })
            })
            .collect()
    }

    async fn project_detail(&self, project_id: i64) -> Result<Option<ProjectDetail>, StateError> {
        let row = self
            .db()
            .fetch_optional(
                sql!(
                    "SELECT id, slug, name, timezone, is_active, base_url, api_rate_per_minute, api_token_enc IS NOT NULL AS token_set, \
                     api_token_hint, allowed_cidrs, {micros:created_at} AS created_micros FROM projects WHERE id = $1"
                ),
                args![project_id],
            )
            .await?;
        row.map(|row| {
            let rate: Option<i64> = row.get("api_rate_per_minute")?;
            Ok(ProjectDetail {
                id: row.get("id")?,
                slug: row.get("slug")?,
                name: row.get("name")?,
                timezone: row.get("timezone")?,
                is_active: row.get("is_active")?,
                base_url: row.get("base_url")?,
                rate_per_minute: rate.and_then(|r| u32::try_from(r).ok()),
                token_set: row.get("token_set")?,
                token_hint: row.get("api_token_hint")?,
                allowed_cidrs: columns::split_cidrs(&row.get::<String, _>("allowed_cidrs")?),
                created_at: row.instant("created_micros")?,
            })
        })
        .transpose()
    }

    async fn update_project(&self, project_id: i64, change: ProjectChange, actor: &Actor, audit: AuditRecord) -> Result<(), StateError> {
        let mut tx = self.db().begin().await?;
        if let Some(name) = change.name {
            tx.execute(sql!("UPDATE projects SET name = $1 WHERE id = $2"), args![name, project_id]).await?;
        }
        if let Some(active) = change.is_active {
            tx.execute(sql!("UPDATE projects SET is_active = $1 WHERE id = $2"), args![active, project_id]).await?;
        }
        if let Some(cidrs) = change.allowed_cidrs {
            tx.execute(sql!("UPDATE projects SET allowed_cidrs = $1 WHERE id = $2"), args![columns::join_cidrs(&cidrs), project_id])
                .await?;
        }
        tx.execute(sql!("UPDATE projects SET updated_at = {now} WHERE id = $1"), args![project_id]).await?;
        write_audit(&mut tx, actor, audit).await?;
        tx.commit().await
    }

    async fn delete_project(&self, project_id: i64, actor: &Actor, audit: AuditRecord) -> Result<(), StateError> {
        let mut tx = self.db().begin().await?;
        // The audit row of the deletion outlives the project: it names no project id.
        let mut audit = audit;
        audit.project_id = None;
        write_audit(&mut tx, actor, audit).await?;
        tx.execute(sql!("DELETE FROM projects WHERE id = $1"), args![project_id]).await?;
        tx.commit().await
    }

    async fn rotate_webhook_secret(
        &self,
        project_id: i64,
        secret_hash: &str,
        previous_until: Timestamp,
        actor: &Actor,
        audit: AuditRecord,
    ) -> Result<(), StateError> {
        let mut tx = self.db().begin().await?;
        tx.execute(
            sql!(
                "UPDATE projects SET webhook_secret_prev_hash = webhook_secret_hash, webhook_secret_prev_until = {at:$1}, \
                 webhook_secret_hash = $2, updated_at = {now} WHERE id = $3"
            ),
            args![previous_until, secret_hash, project_id],
        )
        .await?;
        write_audit(&mut tx, actor, audit).await?;
        tx.commit().await
    }

    async fn store_settings(&self, change: SettingsChange, actor: &Actor, audit: AuditRecord) -> Result<i64, StateError> {
        let project_id = change.project_id;
        let mut tx = self.db().begin().await?;
        // Serialises settings changes of one project.
        tx.fetch_optional(sql!("SELECT id FROM projects WHERE id = $1 {for_update}"), args![project_id]).await?;
        let stored = tx
            .fetch_optional(
                sql!("SELECT revision, {text:settings_json} AS document FROM project_settings WHERE project_id = $1"),
                args![project_id],
            )
            .await?;
        let (current, before) = match stored {
            Some(row) => (row.get::<i64, _>("revision")?, Some(row.get::<String, _>("document")?)),
            None => (0, None),
        };
        if let Some(expected) = change.expected_revision
            && expected != current
        {
            return Err(StateError::StaleRevision { expected, current });
        }
        let revision = current + 1;
        tx.execute(
            sql!(
                "INSERT INTO project_settings (project_id, settings_json, revision) VALUES ($1, {json:$2}, $3) \
                 ON CONFLICT (project_id) DO UPDATE SET settings_json = excluded.settings_json, revision = excluded.revision, \
                 updated_at = {now}"
            ),
            args![project_id, &change.document, revision],
        )
        .await?;
        tx.execute(
            sql!("INSERT INTO settings_history (project_id, revision, settings_json, actor) VALUES ($1, $2, {json:$3}, $4)"),
            args![project_id, revision, &change.document, &actor.name],
        )
        .await?;
        tx.execute(sql!("UPDATE projects SET timezone = $1 WHERE id = $2"), args![&change.timezone, project_id]).await?;
        // The audit row holds the documents before and after, as stored.
        let mut audit = audit;
        audit.entity_id = Some(revision.to_string());
        audit.before = before.and_then(|text| serde_json::from_str(&text).ok());
        audit.after = serde_json::from_str(&change.document).ok();
        write_audit(&mut tx, actor, audit).await?;
        tx.commit().await?;
        Ok(revision)
    }

    async fn settings_revision(&self, project_id: i64, revision: i64) -> Result<Option<String>, StateError> {
        let row = self
            .db()
            .fetch_optional(
                sql!("SELECT {text:settings_json} FROM settings_history WHERE project_id = $1 AND revision = $2"),
                args![project_id, revision],
            )
            .await?;
        row.map(|row| row.get(0)).transpose()
    }

    async fn applied_revision(&self, project_id: i64) -> Result<i64, StateError> {
        let kept = self.db().access();
        if let Some(revision) = kept.get(&kept.revisions, &project_id) {
            return Ok(revision);
        }
        let ticket = kept.ticket();
        let row = self
            .db()
            .fetch_optional(sql!("SELECT applied_revision FROM project_settings WHERE project_id = $1"), args![project_id])
            .await?;
        let revision = row.map(|row| row.get(0)).transpose()?.unwrap_or(0);
        kept.keep(&kept.revisions, ticket, project_id, revision);
        Ok(revision)
    }

    async fn start_recompute(&self, project_id: i64, revision: i64, now: Timestamp) -> Result<(), StateError> {
        self.db()
            .execute(
                sql!(
                    "INSERT INTO recomputes (project_id, revision, state, orders_total, orders_done, started_at, updated_at) \
                     VALUES ($1, $2, 'running', 0, 0, {at:$3}, {at:$3}) ON CONFLICT (project_id) DO UPDATE SET \
                     revision = excluded.revision, state = 'running', orders_total = 0, orders_done = 0, error = NULL, \
                     started_at = excluded.started_at, updated_at = excluded.updated_at"
                ),
                args![project_id, revision, now],
            )
            .await?;
        Ok(())
    }

    async fn recompute_progress(&self, project_id: i64, revision: i64, done: u64, total: u64, now: Timestamp) -> Result<(), StateError> {
        self.db()
            .execute(
                sql!(
                    "UPDATE recomputes SET orders_done = $1, orders_total = $2, updated_at = {at:$3} \
                     WHERE project_id = $4 AND revision = $5 AND state = 'running'"
                ),
                args![done as i64, total as i64, now, project_id, revision],
            )
            .await?;
        Ok(())
    }

    async fn finish_recompute(
        &self,
        project_id: i64,
        revision: i64,
        error: Option<&str>,
        row_format: i64,
        now: Timestamp,
    ) -> Result<(), StateError> {
        let mut tx = self.db().begin().await?;
        let state = if error.is_some() { "failed" } else { "done" };
        tx.execute(
            sql!(
                "UPDATE recomputes SET state = $1, error = $2, orders_done = CASE WHEN $1 = 'done' THEN orders_total ELSE orders_done END, \
                 updated_at = {at:$3}, row_format = CASE WHEN $1 = 'done' THEN $6 ELSE row_format END \
                 WHERE project_id = $4 AND revision = $5"
            ),
            args![state, error, now, project_id, revision, row_format],
        )
        .await?;
        if error.is_none() {
            tx.changes_access();
            tx.execute(
                sql!("UPDATE project_settings SET applied_revision = {greatest}(applied_revision, $1) WHERE project_id = $2 AND revision >= $1"),
                args![revision, project_id],
            )
            .await?;
        }
        tx.commit().await
    }

    async fn recompute(&self, project_id: i64) -> Result<Option<RecomputeProgress>, StateError> {
        let row = self
            .db()
            .fetch_optional(
                sql!(
                    "SELECT revision, state, orders_total, orders_done, error, row_format, {micros:started_at} AS started_micros, \
                     {micros:updated_at} AS updated_micros FROM recomputes WHERE project_id = $1"
                ),
                args![project_id],
            )
            .await?;
        row.map(|row| {
            Ok(RecomputeProgress {
                revision: row.get("revision")?,
                state: row.get("state")?,
                orders_total: row.get::<i64, _>("orders_total")?.max(0) as u64,
                orders_done: row.get::<i64, _>("orders_done")?.max(0) as u64,
                error: row.get("error")?,
                row_format: row.get("row_format")?,
                started_at: row.instant("started_micros")?,
                updated_at: row.instant("updated_micros")?,
            })
        })
        .transpose()
    }

    async fn put_override(
        &self,
        project_id: i64,
        order_id: i64,
        value: &OrderOverride,
        actor: &Actor,
        audit: AuditRecord,
    ) -> Result<(), StateError> {
        let mut tx = self.db().begin().await?;
        tx.execute(
            sql!(
                "INSERT INTO order_overrides (project_id, order_id, is_urgent_override, sla_profile_override, cycle_start_override, \
                 cycle_end_override, updated_by, updated_at) VALUES ($1, $2, $3, $4, {at:$5}, {at:$6}, $7, {now}) \
                 ON CONFLICT (project_id, order_id) DO UPDATE SET is_urgent_override = excluded.is_urgent_override, \
                 sla_profile_override = excluded.sla_profile_override, cycle_start_override = excluded.cycle_start_override, \
                 cycle_end_override = excluded.cycle_end_override, updated_by = excluded.updated_by, updated_at = excluded.updated_at"
            ),
            args![project_id, order_id, value.is_urgent, value.sla_profile.clone(), value.cycle_start, value.cycle_end, actor.user_id],
        )
        .await?;
        write_audit(&mut tx, actor, audit).await?;
        tx.commit().await
    }

    async fn delete_override(&self, project_id: i64, order_id: i64, actor: &Actor, audit: AuditRecord) -> Result<bool, StateError> {
        let mut tx = self.db().begin().await?;
        let deleted =
            tx.execute(sql!("DELETE FROM order_overrides WHERE project_id = $1 AND order_id = $2"), args![project_id, order_id]).await?;
        if deleted == 0 {
            return Ok(false);
        }
        write_audit(&mut tx, actor, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn overrides(&self, project_id: i64, order_ids: &[i64]) -> Result<HashMap<i64, OrderOverride>, StateError> {
        let mut found = HashMap::new();
        let mut reader = self.db().reader().await?;
        for chunk in order_ids.chunks(10_000) {
            let rows = reader.fetch_all(sql!(override_columns!(" AND o.order_id {ids:$2}")), args![project_id, chunk]).await?;
            add_overrides(&mut found, rows)?;
        }
        Ok(found)
    }

    async fn project_overrides(&self, project_id: i64) -> Result<HashMap<i64, OrderOverride>, StateError> {
        let mut found = HashMap::new();
        add_overrides(&mut found, self.db().fetch_all(sql!(override_columns!("")), args![project_id]).await?)?;
        Ok(found)
    }
}
