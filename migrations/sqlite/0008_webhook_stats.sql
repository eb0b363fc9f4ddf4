-- Webhook statistics (GET /api/webhooks/stats, docs/event-path.md), SQLite dialect; the same
-- tables and columns as postgres/0008_webhook_stats.sql. Like `webhook_counters`, both are small
-- per-hour rows that ingest adds to every few seconds, never one row per webhook.
--
-- * `webhook_latency`: how long ingest took to answer the webhooks that reached the bus
--   (accepted or duplicate), as a histogram of 32 log-scale buckets per project and hour
--   (`bucket` 0 is up to 0.1 ms, each next one 10^(1/6) times wider, 30 ends at 10 s, 31 is
--   everything longer).
-- * `webhook_latest`: per project and hour, the last accepted webhook and the last refused one
--   (`kind`), when (`last_at`) and, for a refusal, why (`reason`, as in `webhook_counters`).

CREATE TABLE webhook_latency (
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    hour       INTEGER NOT NULL,
    bucket     INTEGER NOT NULL CHECK (bucket BETWEEN 0 AND 31),
    count      INTEGER NOT NULL CHECK (count >= 0),
    PRIMARY KEY (project_id, hour, bucket)
) STRICT;

CREATE TABLE webhook_latest (
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    kind       TEXT    NOT NULL CHECK (kind IN ('accepted', 'refused')),
    hour       INTEGER NOT NULL,
    last_at    INTEGER NOT NULL,
    reason     TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (project_id, kind, hour)
) STRICT;
