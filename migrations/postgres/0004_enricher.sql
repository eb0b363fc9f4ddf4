-- The enricher: the durable schedule of item fetches (with its dead-letter list), the cursors
-- of backfill, reconciliation and status-dictionary refresh, and a per-project API rate.

-- Requests per minute allowed against the project's CRM API key; NULL = the configured default.
ALTER TABLE projects ADD COLUMN api_rate_per_minute BIGINT
    CHECK (api_rate_per_minute IS NULL OR api_rate_per_minute BETWEEN 1 AND 600);

-- One row per order whose items were asked for. `pending` rows are due at `next_attempt_at`;
-- `done` rows have their items in order_items; `dead` rows failed `attempts` times and wait
-- for `keycrm-analytics enrich retry`. The row survives restarts, so retries do too.
CREATE TABLE enrich_jobs (
    project_id      BIGINT      NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    order_id        BIGINT      NOT NULL,
    state           TEXT        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'dead')),
    reason          TEXT        NOT NULL DEFAULT 'missing_items',
    attempts        BIGINT      NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at TIMESTAMPTZ NOT NULL,
    -- Why the last attempt failed; never holds a token.
    last_error      TEXT,
    fetched_at      TIMESTAMPTZ,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, order_id)
);
CREATE INDEX enrich_jobs_due_idx ON enrich_jobs (state, next_attempt_at);

-- Where a long-running pass over the CRM stands, as a JSON document of its own shape.
CREATE TABLE enrich_cursors (
    project_id  BIGINT      NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name        TEXT        NOT NULL CHECK (name IN ('backfill', 'reconcile', 'statuses')),
    cursor_json TEXT        NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, name)
);
