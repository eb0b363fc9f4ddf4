-- Nothing changes on SQLite. PostgreSQL's 0005 replaces the references from the processor's
-- four hot tables to `projects` by a delete trigger, because PostgreSQL checks a reference with
-- a query per written row; SQLite's check is a B-tree probe of `projects` in the same file,
-- and its `ON DELETE CASCADE` stays. The version exists so that both dialects keep the same
-- sequence of migrations.
SELECT 1;
