-- Nothing on SQLite: its reads are local, so query processes read callers, projects and applied
-- revisions afresh on every request and keep none in memory. (On PostgreSQL this migration adds
-- the triggers that tell them of changes.) Kept so both databases count the same migrations.
SELECT 1;
