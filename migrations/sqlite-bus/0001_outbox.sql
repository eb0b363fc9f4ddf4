-- The embedded bus in a SQLite file of its own, beside the state database: ingest's group
-- commits and the processor's commits then write two files and never wait for each other's
-- write lock, nor drop each other's page cache. The tables are those the state database had
-- (its 0002 and 0003); an older data folder's records are moved here once, at start.

CREATE TABLE bus_heads (
    topic        TEXT    NOT NULL,
    partition_no INTEGER NOT NULL CHECK (partition_no >= 0),
    next_offset  INTEGER NOT NULL CHECK (next_offset >= 0),
    PRIMARY KEY (topic, partition_no)
) STRICT;

-- A rowid table: its ~1.5 KB records would spill into overflow pages as `WITHOUT ROWID`.
CREATE TABLE bus_log (
    topic         TEXT    NOT NULL,
    partition_no  INTEGER NOT NULL,
    record_offset INTEGER NOT NULL,
    record_key    TEXT    NOT NULL,
    payload       BLOB    NOT NULL,
    appended_at   INTEGER NOT NULL DEFAULT (CAST(ROUND(unixepoch('subsec') * 1000) AS INTEGER) * 1000),
    PRIMARY KEY (topic, partition_no, record_offset)
) STRICT;

CREATE TABLE bus_idempotency (
    topic           TEXT    NOT NULL,
    idempotency_key TEXT    NOT NULL,
    appended_at     INTEGER NOT NULL DEFAULT (CAST(ROUND(unixepoch('subsec') * 1000) AS INTEGER) * 1000),
    PRIMARY KEY (topic, idempotency_key)
) STRICT, WITHOUT ROWID;
