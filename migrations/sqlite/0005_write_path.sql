-- The event log without its surrogate `id`, as on PostgreSQL (its 0005, measured in
-- BENCHMARKS.md): nothing reads events by it, and the unique dedup key
-- `(project_id, order_id, status_changed_at, status_id)` identifies an event (docs/domain.md).
-- SQLite cannot drop a primary key column, so the table is rebuilt once, here, in the order the
-- events were stored.
--
-- The rest of PostgreSQL's 0005 does not apply: its payload column becomes TEXT, which it is
-- here already, and SQLite keeps the references to `projects` (its check is a B-tree probe
-- in the same file, not a query per row).

CREATE TABLE order_status_events_new (
    project_id        INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    order_id          INTEGER NOT NULL,
    status_id         INTEGER NOT NULL,
    status_group_id   INTEGER NOT NULL,
    status_changed_at INTEGER NOT NULL,
    -- created_at, else ordered_at, else status_changed_at.
    order_created_at  INTEGER NOT NULL,
    received_at       INTEGER NOT NULL DEFAULT (CAST(ROUND(unixepoch('subsec') * 1000) AS INTEGER) * 1000),
    source            TEXT    NOT NULL CHECK (source IN ('webhook', 'backfilled', 'reconciled')),
    -- The payload exactly as received (JSON text, written as received).
    payload           TEXT
) STRICT;
INSERT INTO order_status_events_new
    SELECT project_id, order_id, status_id, status_group_id, status_changed_at, order_created_at,
           received_at, source, payload
    FROM order_status_events ORDER BY id;
DROP TABLE order_status_events;
ALTER TABLE order_status_events_new RENAME TO order_status_events;
CREATE UNIQUE INDEX order_status_events_dedup_key
    ON order_status_events (project_id, order_id, status_changed_at, status_id);
