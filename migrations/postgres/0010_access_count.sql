-- Nothing on PostgreSQL: its query processes hear of access changes through the notifications
-- of migration 0009. (On SQLite, which cannot notify, this migration adds the count of changes
-- that query processes read instead.) Kept so both databases count the same migrations.
SELECT 1;
