-- Columns that place an interval without joining the table to itself: the order's creation
-- (its first interval's entry) on both tables, and on intervals the entry into the group
-- visit the interval belongs to (consecutive intervals in one group are one visit). Rows
-- written before have them NULL; the processor rewrites every order's rows once after the
-- upgrade (with the same version, and ReplacingMergeTree keeps the last inserted of equal
-- versions).
--
-- 18.16 has no ADD COLUMN IF NOT EXISTS: each table's columns come in one statement, which
-- ClickHouse applies whole or not at all, and the runner takes "already exists" from a rerun
-- as done.

ALTER TABLE status_intervals
    ADD COLUMN order_created_at Nullable(Int64),
    ADD COLUMN group_entered_at Nullable(Int64);

ALTER TABLE order_cycles
    ADD COLUMN order_created_at Nullable(Int64);
