-- Fact tables for the distributed mode. Written by the processor through the ClickHouse
-- FactSink, read by the query API. Runs on ClickHouse 18.16 and on current releases:
--
-- * Instants are Int64 microseconds since the Unix epoch, UTC, like `Timestamp` in Rust:
--   DateTime has whole seconds only (two events within a second would share a key) and
--   DateTime64 does not exist on 18.16. Queries convert with
--   toDateTime(intDiv(x, 1000000), '<time zone>') where they bucket.
-- * ReplacingMergeTree(version) keeps, per ORDER BY key, the row with the highest version
--   (settings revision << 32 | event count, see schemas::facts::FactVersion). Merges happen
--   in the background, so readers that need exact rows use FINAL.
-- * Booleans are UInt8 (no Bool type on 18.16); no LowCardinality (experimental on 18.16).
-- * ReplacingMergeTree replaces rows only within a partition, so a partition must be a
--   function of the key columns. status_intervals: the UTC month of entered_at, which is part
--   of the key. order_cycles: a cycle's start can move when a late event arrives (and across
--   a month boundary), and it is not part of the key, so a month of started_at would leave the
--   old row behind in the old month; the table has one partition (it holds one row per order
--   and cycle rule, small next to the intervals).
--
-- One statement per `;`: the HTTP interface takes one statement per request.

CREATE TABLE IF NOT EXISTS status_intervals
(
    project_id      Int64,
    order_id        Int64,
    status_id       Int64,
    group_id        UInt16,
    entered_at      Int64,
    left_at         Nullable(Int64),
    wall_seconds    Float64,
    working_seconds Float64,
    is_urgent       UInt8,
    sla_state       Enum8('none' = 0, 'ok' = 1, 'near' = 2, 'over' = 3),
    version         UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(toDateTime(intDiv(entered_at, 1000000), 'UTC'))
ORDER BY (project_id, order_id, entered_at, status_id);

CREATE TABLE IF NOT EXISTS order_cycles
(
    project_id      Int64,
    order_id        Int64,
    cycle_id        UInt32,
    started_at      Int64,
    ended_at        Nullable(Int64),
    wall_seconds    Float64,
    working_seconds Float64,
    is_urgent       UInt8,
    version         UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (project_id, order_id, cycle_id);
