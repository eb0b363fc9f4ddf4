-- The processor's hot path, made cheaper (measured in BENCHMARKS.md): no query reads events by
-- arrival time, and every insert paid for this index. SQLite's 0003 drops it too (and rebuilds
-- tables whose layout only SQLite needed changed).
DROP INDEX IF EXISTS order_status_events_received_at_idx;
