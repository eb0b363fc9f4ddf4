-- Accounts, sessions and the audit log (docs/access.md), SQLite dialect; the same tables and
-- columns as postgres/0007_accounts.sql.
--
-- * `users` is keyed by a login (unique without regard to case) with an optional e-mail; the
--   global role becomes one flag, `is_owner` (the former `admin`); `token_version` grows when
--   the user is disabled or their password or roles change, which ends their open sessions.
-- * `user_projects.role` is `admin` or `viewer`; `analyst` becomes `viewer`.
-- * Personal API tokens, kept as SHA-256 digests; login attempts, for throttling; every settings
--   revision's document; the progress of a project's recompute.
-- * The audit log records who acted (`actor`: a login, or `cli`) and from where.
-- * Projects keep the last characters of their API token (shown in place of it), and the
--   previous webhook secret's digest with the end of its grace period after a rotation.
--
-- SQLite cannot change a CHECK or drop a column, so `users` and `user_projects` are rebuilt.
-- Dropping `users` would null or delete what refers to it (foreign keys are on), so those
-- references are kept aside first and put back after.

CREATE TABLE users_new (
    id            INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    login         TEXT    NOT NULL CHECK (login <> ''),
    email         TEXT,
    password_hash TEXT    NOT NULL,
    is_owner      INTEGER NOT NULL DEFAULT 0 CHECK (is_owner IN (0, 1)),
    is_active     INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    token_version INTEGER NOT NULL DEFAULT 0 CHECK (token_version >= 0),
    created_at    INTEGER NOT NULL DEFAULT (CAST(ROUND(unixepoch('subsec') * 1000) AS INTEGER) * 1000),
    updated_at    INTEGER NOT NULL DEFAULT (CAST(ROUND(unixepoch('subsec') * 1000) AS INTEGER) * 1000)
) STRICT;
INSERT INTO users_new (id, login, email, password_hash, is_owner, is_active, created_at, updated_at)
    SELECT id, email, email, password_hash, role = 'admin', is_active, created_at, created_at FROM users;

CREATE TEMP TABLE ksa_kept_memberships AS SELECT user_id, project_id, role FROM user_projects;
CREATE TEMP TABLE ksa_kept_audit_users AS SELECT id, user_id FROM audit_log WHERE user_id IS NOT NULL;
CREATE TEMP TABLE ksa_kept_override_users AS
    SELECT project_id, order_id, updated_by FROM order_overrides WHERE updated_by IS NOT NULL;

DROP TABLE user_projects;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;
CREATE UNIQUE INDEX users_login_key ON users (lower(login));

CREATE TABLE user_projects (
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    role       TEXT    NOT NULL CHECK (role IN ('admin', 'viewer')),
    PRIMARY KEY (user_id, project_id)
) STRICT;
CREATE INDEX user_projects_project_idx ON user_projects (project_id);
INSERT INTO user_projects (user_id, project_id, role)
    SELECT user_id, project_id, CASE WHEN role = 'admin' THEN 'admin' ELSE 'viewer' END FROM ksa_kept_memberships;
UPDATE audit_log SET user_id = (SELECT k.user_id FROM ksa_kept_audit_users k WHERE k.id = audit_log.id)
    WHERE id IN (SELECT id FROM ksa_kept_audit_users);
UPDATE order_overrides SET updated_by = (
        SELECT k.updated_by FROM ksa_kept_override_users k
        WHERE k.project_id = order_overrides.project_id AND k.order_id = order_overrides.order_id)
    WHERE EXISTS (SELECT 1 FROM ksa_kept_override_users k
        WHERE k.project_id = order_overrides.project_id AND k.order_id = order_overrides.order_id);
DROP TABLE ksa_kept_memberships;
DROP TABLE ksa_kept_audit_users;
DROP TABLE ksa_kept_override_users;

-- Personal API tokens: 32 random bytes shown once; only their SHA-256 (hex) is kept.
CREATE TABLE api_tokens (
    id           INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL CHECK (name <> ''),
    token_hash   TEXT    NOT NULL,
    created_at   INTEGER NOT NULL DEFAULT (CAST(ROUND(unixepoch('subsec') * 1000) AS INTEGER) * 1000),
    last_used_at INTEGER,
    CONSTRAINT api_tokens_hash_key UNIQUE (token_hash)
) STRICT;
CREATE INDEX api_tokens_user_idx ON api_tokens (user_id);

-- Login attempts, for throttling per (login, address) and per address. `login` is lower-cased.
-- A success is kept as a row too: the pair's failures count only after its last success, while
-- the address's count keeps every failure.
CREATE TABLE login_attempts (
    login        TEXT    NOT NULL,
    address      TEXT    NOT NULL,
    attempted_at INTEGER NOT NULL,
    succeeded    INTEGER NOT NULL CHECK (succeeded IN (0, 1))
) STRICT;
CREATE INDEX login_attempts_pair_idx ON login_attempts (login, address, attempted_at);
CREATE INDEX login_attempts_address_idx ON login_attempts (address, attempted_at);

-- Every revision's settings document: reads use the revision whose recompute has finished.
CREATE TABLE settings_history (
    project_id    INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    revision      INTEGER NOT NULL CHECK (revision >= 1),
    settings_json TEXT    NOT NULL CHECK (json_valid(settings_json)),
    actor         TEXT    NOT NULL,
    created_at    INTEGER NOT NULL DEFAULT (CAST(ROUND(unixepoch('subsec') * 1000) AS INTEGER) * 1000),
    PRIMARY KEY (project_id, revision)
) STRICT;
INSERT INTO settings_history (project_id, revision, settings_json, actor, created_at)
    SELECT project_id, revision, settings_json, 'cli', updated_at FROM project_settings;

-- The revision whose recompute has finished: what reads compute with.
ALTER TABLE project_settings ADD COLUMN applied_revision INTEGER NOT NULL DEFAULT 0;
UPDATE project_settings SET applied_revision = revision;

-- A project's recompute after a settings change: one row per project, the latest. `row_format` is
-- the shape of the derived rows it wrote (`ksa_schemas::row::ROW_FORMAT`): a project whose rows are
-- older is recomputed once.
CREATE TABLE recomputes (
    project_id   INTEGER NOT NULL PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    revision     INTEGER NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('running', 'done', 'failed')),
    orders_total INTEGER NOT NULL DEFAULT 0 CHECK (orders_total >= 0),
    orders_done  INTEGER NOT NULL DEFAULT 0 CHECK (orders_done >= 0),
    error        TEXT,
    row_format   INTEGER NOT NULL DEFAULT 0,
    started_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
) STRICT;

ALTER TABLE audit_log ADD COLUMN actor TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_log ADD COLUMN client_address TEXT;
UPDATE audit_log SET actor = 'cli' WHERE actor = '' AND user_id IS NULL;
CREATE INDEX audit_log_project_id_idx ON audit_log (project_id, id);

-- Reads bound `as_of` by the project's earliest order, and list orders by creation.
CREATE INDEX orders_current_started_idx ON orders_current (project_id, started_at);

ALTER TABLE projects ADD COLUMN api_token_hint TEXT;
ALTER TABLE projects ADD COLUMN webhook_secret_prev_hash TEXT;
ALTER TABLE projects ADD COLUMN webhook_secret_prev_until INTEGER;
