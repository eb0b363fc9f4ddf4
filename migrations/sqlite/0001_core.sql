-- KeyCRM Status Analytics: the core data model of docs/domain.md, SQLite dialect.
--
-- TIMESTAMPS: every instant (`*_at` and `*_override` columns) is an INTEGER holding
-- MICROSECONDS SINCE THE UNIX EPOCH, UTC. Durations are REAL seconds. Defaults of "now" have
-- millisecond precision (unixepoch('subsec'), SQLite >= 3.42, which sqlx bundles).
--
-- Shared with postgres/0001_core.sql (same tables, same columns, same nullability):
-- * Every row of every table carries project_id, except projects and users themselves. Nothing
--   crosses projects, and deleting a project deletes every row it owns (ON DELETE CASCADE; the
--   connection must run with `PRAGMA foreign_keys = ON`, which sqlx sets by default).
-- * Integers are INTEGER (64-bit), booleans INTEGER 0/1, JSON documents TEXT checked by
--   json_valid(), secrets BLOB. Tables are STRICT, so a value of the wrong type is an error.
-- * Surrogate ids are AUTOINCREMENT so that, as with PostgreSQL identities, an id is never reused.
-- * Enumerations are TEXT with a CHECK that lists the allowed values.
-- * Status group ids are KeyCRM's fixed 1..6; status ids are per project (id 20 in one project has
--   nothing to do with id 20 in another).

CREATE TABLE projects (
    id                 INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    slug               TEXT    NOT NULL CHECK (slug <> ''),
    name               TEXT    NOT NULL,
    vendor             TEXT    NOT NULL DEFAULT 'keycrm',
    base_url           TEXT    NOT NULL DEFAULT 'https://openapi.keycrm.app/v1',
    -- Secrets, encrypted by the application; never stored or logged in clear.
    api_token_enc      BLOB,
    webhook_secret_enc BLOB,
    -- IANA name; used only to interpret calendars and bucket analytics.
    timezone           TEXT    NOT NULL DEFAULT 'UTC',
    is_active          INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    created_at         INTEGER NOT NULL DEFAULT (CAST(ROUND(unixepoch('subsec') * 1000) AS INTEGER) * 1000),
    updated_at         INTEGER NOT NULL DEFAULT (CAST(ROUND(unixepoch('subsec') * 1000) AS INTEGER) * 1000),
    CONSTRAINT projects_slug_key UNIQUE (slug)
) STRICT;

CREATE TABLE users (
    id            INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    -- Stored lower-cased by the application.
    email         TEXT    NOT NULL,
    display_name  TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL DEFAULT 'viewer'
                          CHECK (role IN ('admin', 'analyst', 'viewer')),
    is_active     INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    created_at    INTEGER NOT NULL DEFAULT (CAST(ROUND(unixepoch('subsec') * 1000) AS INTEGER) * 1000),
    CONSTRAINT users_email_key UNIQUE (email)
) STRICT;

CREATE TABLE user_projects (
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    role       TEXT    NOT NULL CHECK (role IN ('admin', 'analyst', 'viewer')),
    PRIMARY KEY (user_id, project_id)
) STRICT;
CREATE INDEX user_projects_project_idx ON user_projects (project_id);

-- One settings document per project. `revision` grows by one on every change; derived rows and
-- fact versions record the revision they were computed with.
CREATE TABLE project_settings (
    project_id          INTEGER NOT NULL PRIMARY KEY
                                REFERENCES projects (id) ON DELETE CASCADE,
    settings_json       TEXT    NOT NULL CHECK (json_valid(settings_json)),
    revision            INTEGER NOT NULL DEFAULT 1 CHECK (revision >= 1),
    -- A cycle_rules.id of this project (not a foreign key, so deleting a rule is not blocked).
    default_cycle_id    INTEGER,
    -- Near-SLA threshold: a percentage of the limit, or an absolute time before the limit.
    near_percent        REAL    DEFAULT 80
                                CHECK (near_percent > 0 AND near_percent <= 100),
    near_before_seconds REAL    CHECK (near_before_seconds > 0),
    -- Comma-separated status group ids whose time stops the clock.
    terminal_groups     TEXT    NOT NULL DEFAULT '5,6',
    updated_at          INTEGER NOT NULL DEFAULT (CAST(ROUND(unixepoch('subsec') * 1000) AS INTEGER) * 1000)
) STRICT;

CREATE TABLE status_group_dict (
    project_id  INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    group_id    INTEGER NOT NULL CHECK (group_id BETWEEN 1 AND 6),
    name        TEXT    NOT NULL,
    is_terminal INTEGER NOT NULL DEFAULT 0 CHECK (is_terminal IN (0, 1)),
    is_enabled  INTEGER NOT NULL DEFAULT 1 CHECK (is_enabled IN (0, 1)),
    PRIMARY KEY (project_id, group_id)
) STRICT;

-- The project's status dictionary, synced from the CRM.
CREATE TABLE status_dict (
    project_id                INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    status_id                 INTEGER NOT NULL,
    name                      TEXT    NOT NULL,
    alias                     TEXT,
    group_id                  INTEGER NOT NULL,
    is_active                 INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    is_closing_order          INTEGER NOT NULL DEFAULT 0 CHECK (is_closing_order IN (0, 1)),
    is_reserved               INTEGER NOT NULL DEFAULT 0 CHECK (is_reserved IN (0, 1)),
    -- KeyCRM's own per-status limit; may seed a per-status SLA limit.
    expiration_period_seconds REAL    CHECK (expiration_period_seconds >= 0),
    synced_at                 INTEGER NOT NULL DEFAULT (CAST(ROUND(unixepoch('subsec') * 1000) AS INTEGER) * 1000),
    PRIMARY KEY (project_id, status_id)
) STRICT;

-- SLA grids: a working-time limit per profile and status group (status_id NULL), optionally
-- refined per status. A missing row means "no limit".
CREATE TABLE sla_stage_rules (
    project_id    INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    profile       TEXT    NOT NULL CHECK (profile IN ('normal', 'urgent')),
    group_id      INTEGER NOT NULL,
    status_id     INTEGER,
    limit_seconds REAL    NOT NULL CHECK (limit_seconds > 0),
    CONSTRAINT sla_stage_rules_key UNIQUE (project_id, profile, group_id, status_id)
) STRICT;
-- NULLs are distinct in a UNIQUE constraint, so the group-level limit needs its own index.
-- Upsert it with `ON CONFLICT (project_id, profile, group_id) WHERE status_id IS NULL`.
CREATE UNIQUE INDEX sla_stage_rules_group_key
    ON sla_stage_rules (project_id, profile, group_id) WHERE status_id IS NULL;

-- A cycle runs from a start (order created, or first/last entry into a group or status) to the
-- first matching entry into an end group or status at or after the start.
CREATE TABLE cycle_rules (
    id               INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    project_id       INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    title            TEXT    NOT NULL,
    start_kind       TEXT    NOT NULL CHECK (start_kind IN ('created', 'group', 'status')),
    -- A group id or status id; NULL exactly when start_kind = 'created'.
    start_ref        INTEGER,
    start_occurrence TEXT    NOT NULL DEFAULT 'first'
                             CHECK (start_occurrence IN ('first', 'last')),
    end_kind         TEXT    NOT NULL CHECK (end_kind IN ('group', 'status')),
    end_ref          INTEGER NOT NULL,
    end_occurrence   TEXT    NOT NULL DEFAULT 'first'
                             CHECK (end_occurrence IN ('first', 'last')),
    is_active        INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    CONSTRAINT cycle_rules_project_key UNIQUE (project_id, id),
    CONSTRAINT cycle_rules_start_ref_check CHECK ((start_kind = 'created') = (start_ref IS NULL))
) STRICT;

-- An order is urgent when any of its items matches an active rule.
CREATE TABLE urgent_rules (
    id          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    project_id  INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    match_type  TEXT    NOT NULL CHECK (match_type IN ('sku', 'offer_id', 'product_id')),
    match_value TEXT    NOT NULL,
    is_active   INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    CONSTRAINT urgent_rules_match_key UNIQUE (project_id, match_type, match_value)
) STRICT;

-- Working calendars in the project's time zone: one per status group, plus the project default
-- (group_id NULL). The JSON documents are the schemas crate's calendar types.
CREATE TABLE working_hours (
    project_id      INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    group_id        INTEGER,
    weekly_json     TEXT    NOT NULL CHECK (json_valid(weekly_json)),
    exceptions_json TEXT    NOT NULL CHECK (json_valid(exceptions_json)),
    -- The preset the calendar was made from, if any (e.g. `24/7`).
    preset          TEXT,
    updated_at      INTEGER NOT NULL DEFAULT (CAST(ROUND(unixepoch('subsec') * 1000) AS INTEGER) * 1000),
    CONSTRAINT working_hours_group_key UNIQUE (project_id, group_id)
) STRICT;
-- Upsert the default calendar with `ON CONFLICT (project_id) WHERE group_id IS NULL`.
CREATE UNIQUE INDEX working_hours_default_key ON working_hours (project_id) WHERE group_id IS NULL;

-- Per-order overrides; an override beats every rule.
CREATE TABLE order_overrides (
    project_id           INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    order_id             INTEGER NOT NULL,
    is_urgent_override   INTEGER CHECK (is_urgent_override IN (0, 1)),
    sla_profile_override TEXT    CHECK (sla_profile_override IN ('normal', 'urgent')),
    cycle_start_override INTEGER,
    cycle_end_override   INTEGER,
    updated_by           INTEGER REFERENCES users (id) ON DELETE SET NULL,
    updated_at           INTEGER NOT NULL DEFAULT (CAST(ROUND(unixepoch('subsec') * 1000) AS INTEGER) * 1000),
    PRIMARY KEY (project_id, order_id),
    CONSTRAINT order_overrides_cycle_check CHECK (cycle_end_override > cycle_start_override)
) STRICT;

-- The event log: the truth every derived row is rebuilt from.
CREATE TABLE order_status_events (
    id                INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    project_id        INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    order_id          INTEGER NOT NULL,
    status_id         INTEGER NOT NULL,
    status_group_id   INTEGER NOT NULL,
    status_changed_at INTEGER NOT NULL,
    -- created_at, else ordered_at, else status_changed_at.
    order_created_at  INTEGER NOT NULL,
    received_at       INTEGER NOT NULL DEFAULT (CAST(ROUND(unixepoch('subsec') * 1000) AS INTEGER) * 1000),
    source            TEXT    NOT NULL CHECK (source IN ('webhook', 'backfilled', 'reconciled')),
    -- The payload exactly as received.
    payload           TEXT    CHECK (json_valid(payload))
) STRICT;
-- The dedup key: an identical repeat is dropped (`ON CONFLICT (project_id, order_id,
-- status_changed_at, status_id) DO NOTHING`); re-entering a status at another time is a new event.
-- Its leading columns also serve the per-order timeline, `(order_id, status_changed_at)` within
-- a project.
CREATE UNIQUE INDEX order_status_events_dedup_key
    ON order_status_events (project_id, order_id, status_changed_at, status_id);
CREATE INDEX order_status_events_received_at_idx ON order_status_events (received_at);

-- One row per order: its current state and the analyzer's results, written by the processor only.
CREATE TABLE orders_current (
    project_id                 INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    order_id                   INTEGER NOT NULL,
    current_status_id          INTEGER NOT NULL,
    last_status_group_id       INTEGER NOT NULL,
    last_changed_at            INTEGER NOT NULL,
    started_at                 INTEGER NOT NULL,
    untracked_seconds          REAL    NOT NULL DEFAULT 0,
    delivery_entered_at        INTEGER,
    cycle_duration_to_delivery REAL,
    closed_at                  INTEGER,
    cycle_rule_id_applied      INTEGER,
    urgency                    TEXT    NOT NULL DEFAULT 'pending'
                                       CHECK (urgency IN ('pending', 'normal', 'urgent')),
    sla_state                  TEXT    NOT NULL DEFAULT 'none'
                                       CHECK (sla_state IN ('none', 'ok', 'near', 'over')),
    event_count                INTEGER NOT NULL CHECK (event_count >= 0),
    settings_revision          INTEGER NOT NULL,
    derived_json               TEXT    NOT NULL CHECK (json_valid(derived_json)),
    updated_at                 INTEGER NOT NULL DEFAULT (CAST(ROUND(unixepoch('subsec') * 1000) AS INTEGER) * 1000),
    PRIMARY KEY (project_id, order_id)
) STRICT;
CREATE INDEX orders_current_group_idx ON orders_current (project_id, last_status_group_id);
-- Keyset pagination, newest first: `WHERE (last_changed_at, order_id) < ($2, $3)`.
CREATE INDEX orders_current_keyset_idx
    ON orders_current (project_id, last_changed_at DESC, order_id DESC);

-- Per order and status group: all visits summed (terminal groups count toward nothing).
CREATE TABLE order_group_totals (
    project_id      INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    order_id        INTEGER NOT NULL,
    group_id        INTEGER NOT NULL,
    wall_seconds    REAL    NOT NULL,
    working_seconds REAL    NOT NULL,
    visits          INTEGER NOT NULL CHECK (visits >= 1),
    sla_state       TEXT    NOT NULL DEFAULT 'none'
                            CHECK (sla_state IN ('none', 'ok', 'near', 'over')),
    PRIMARY KEY (project_id, order_id, group_id)
) STRICT;

-- Every cycle rule's duration per order; an open cycle is measured up to "now" at read time.
CREATE TABLE order_cycle_metrics (
    project_id      INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    order_id        INTEGER NOT NULL,
    cycle_id        INTEGER NOT NULL,
    started_at      INTEGER NOT NULL,
    ended_at        INTEGER,
    wall_seconds    REAL    NOT NULL,
    working_seconds REAL    NOT NULL,
    is_open         INTEGER NOT NULL CHECK (is_open IN (0, 1)),
    PRIMARY KEY (project_id, order_id, cycle_id),
    CONSTRAINT order_cycle_metrics_open_check CHECK (is_open = (ended_at IS NULL))
) STRICT;

-- The order's product lines as last fetched from the CRM; replaced as a whole on every fetch.
CREATE TABLE order_items (
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    order_id   INTEGER NOT NULL,
    -- The line's position in the order (KeyCRM gives lines no id of their own).
    line_id    INTEGER NOT NULL,
    sku        TEXT,
    name       TEXT,
    quantity   REAL    NOT NULL,
    price      REAL,
    offer_id   INTEGER,
    offer_sku  TEXT,
    product_id INTEGER,
    fetched_at INTEGER NOT NULL DEFAULT (CAST(ROUND(unixepoch('subsec') * 1000) AS INTEGER) * 1000),
    -- Its leading columns serve the per-order lookup, `(project_id, order_id)`.
    PRIMARY KEY (project_id, order_id, line_id)
) STRICT;

CREATE TABLE order_marketing (
    project_id   INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    order_id     INTEGER NOT NULL,
    utm_source   TEXT,
    utm_medium   TEXT,
    utm_campaign TEXT,
    utm_term     TEXT,
    utm_content  TEXT,
    fbclid       TEXT,
    fbc          TEXT,
    fbp          TEXT,
    fetched_at   INTEGER NOT NULL DEFAULT (CAST(ROUND(unixepoch('subsec') * 1000) AS INTEGER) * 1000),
    PRIMARY KEY (project_id, order_id)
) STRICT;

-- Every change of settings, calendars, rules and overrides. project_id is NULL for changes that
-- belong to no project (users), user_id for changes made by the system.
CREATE TABLE audit_log (
    id          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    project_id  INTEGER REFERENCES projects (id) ON DELETE CASCADE,
    user_id     INTEGER REFERENCES users (id) ON DELETE SET NULL,
    action      TEXT    NOT NULL,
    entity      TEXT    NOT NULL,
    entity_id   TEXT,
    before_json TEXT    CHECK (json_valid(before_json)),
    after_json  TEXT    CHECK (json_valid(after_json)),
    created_at  INTEGER NOT NULL DEFAULT (CAST(ROUND(unixepoch('subsec') * 1000) AS INTEGER) * 1000)
) STRICT;
CREATE INDEX audit_log_project_idx ON audit_log (project_id, created_at);
