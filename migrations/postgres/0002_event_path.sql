-- The event path: webhook secrets and allowlists, the SQL outbox bus, consumer offsets and
-- webhook counters.

-- The webhook secret is kept only as a SHA-256 digest (hex): ingest compares digests in
-- constant time, and the secret itself is shown once, when the project is created.
ALTER TABLE projects ADD COLUMN webhook_secret_hash TEXT;
-- Comma-separated CIDRs allowed to post webhooks; empty = any source.
ALTER TABLE projects ADD COLUMN allowed_cidrs TEXT NOT NULL DEFAULT '';

-- The outbox bus. Appenders take the partition's head row for update, so records become
-- visible in offset order and a consumer never skips one.
CREATE TABLE bus_heads (
    topic        TEXT   NOT NULL,
    partition_no BIGINT NOT NULL CHECK (partition_no >= 0),
    next_offset  BIGINT NOT NULL CHECK (next_offset >= 0),
    PRIMARY KEY (topic, partition_no)
);

CREATE TABLE bus_log (
    topic         TEXT        NOT NULL,
    partition_no  BIGINT      NOT NULL,
    record_offset BIGINT      NOT NULL,
    record_key    TEXT        NOT NULL,
    payload       BYTEA       NOT NULL,
    appended_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition_no, record_offset)
);

-- Idempotency keys of appended records (for status events: the dedup key), so that a
-- repeated webhook is answered "duplicate" and appended once.
CREATE TABLE bus_idempotency (
    topic           TEXT        NOT NULL,
    idempotency_key TEXT        NOT NULL,
    appended_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, idempotency_key)
);

-- Where each consumer group stands; written in the same transaction as the derived data.
CREATE TABLE consumer_offsets (
    consumer_group TEXT        NOT NULL,
    topic          TEXT        NOT NULL,
    partition_no   BIGINT      NOT NULL CHECK (partition_no >= 0),
    next_offset    BIGINT      NOT NULL CHECK (next_offset >= 0),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition_no)
);

-- Webhooks per project and hour (UTC), by outcome; `reason` is '' except for rejections.
CREATE TABLE webhook_counters (
    project_id BIGINT      NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    hour       TIMESTAMPTZ NOT NULL,
    outcome    TEXT        NOT NULL
               CHECK (outcome IN ('received', 'accepted', 'duplicate', 'ignored', 'rejected')),
    reason     TEXT        NOT NULL DEFAULT '',
    count      BIGINT      NOT NULL CHECK (count >= 0),
    PRIMARY KEY (project_id, hour, outcome, reason)
);
