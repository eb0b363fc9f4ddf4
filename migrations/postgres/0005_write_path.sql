-- The processor's write path made cheaper (measured in BENCHMARKS.md).
--
-- The four tables the processor writes on every batch (the event log and the three derived
-- tables) referenced `projects` with `ON DELETE CASCADE`. PostgreSQL checks such a reference with
-- a query per inserted or updated row; in the distributed replay that was one check per event,
-- per derived order, per group total and per cycle row (≈ 2.2 per event), and the largest single
-- cost of the commit after the rows themselves. Rows reach these tables only from bus records
-- that ingest (or the enricher) made for a project found in `projects`; a project deleted while
-- its records are still on the bus may leave rows behind, where the reference used to refuse
-- the whole batch and stop that partition's processor on it for good.
--
-- Deleting a project still deletes its rows in these tables, by the trigger below instead of
-- the cascade. Every other table keeps its reference.
--
-- The event log also loses what only its inserts paid for:
-- * the surrogate `id` and its index: nothing reads events by it, and the unique dedup key
--   `(project_id, order_id, status_changed_at, status_id)` identifies an event (docs/domain.md);
-- * `payload` becomes TEXT instead of JSON: the text is kept exactly as before, but the server
--   no longer parses every payload to check it (ingest has parsed it before it was accepted).
-- Changing the column's type rewrites the table once, here.

ALTER TABLE order_status_events DROP CONSTRAINT order_status_events_project_id_fkey;
ALTER TABLE orders_current DROP CONSTRAINT orders_current_project_id_fkey;
ALTER TABLE order_group_totals DROP CONSTRAINT order_group_totals_project_id_fkey;
ALTER TABLE order_cycle_metrics DROP CONSTRAINT order_cycle_metrics_project_id_fkey;

ALTER TABLE order_status_events DROP COLUMN id;
ALTER TABLE order_status_events ALTER COLUMN payload TYPE TEXT;

CREATE FUNCTION ksa_delete_project_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM order_status_events WHERE project_id = OLD.id;
    DELETE FROM orders_current WHERE project_id = OLD.id;
    DELETE FROM order_group_totals WHERE project_id = OLD.id;
    DELETE FROM order_cycle_metrics WHERE project_id = OLD.id;
    RETURN OLD;
END
$$;

CREATE TRIGGER projects_delete_processor_rows AFTER DELETE ON projects
    FOR EACH ROW EXECUTE FUNCTION ksa_delete_project_rows();
