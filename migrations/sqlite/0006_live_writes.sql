-- The group totals travel in `orders_current.derived_json`, as on PostgreSQL (its 0006,
-- measured in BENCHMARKS.md): the processor rewrote `order_group_totals` for nearly every
-- event, and nothing read it by SQL. `derived_json` is TEXT here already.

DROP TABLE order_group_totals;
