-- Query processes keep callers (tokens, users with their memberships), projects and applied
-- settings revisions in memory while they hear of every change to them. SQLite cannot notify
-- another process, so every write to these tables counts itself here, in the writer's
-- transaction, whichever process made it (the command line included), and query processes read
-- the count every 100 ms. A token's `last_used_at` is not such a change.
CREATE TABLE access_changes (
    id      INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    changes INTEGER NOT NULL
) STRICT;
INSERT INTO access_changes (id, changes) VALUES (1, 0);

CREATE TRIGGER users_inserted AFTER INSERT ON users
    BEGIN UPDATE access_changes SET changes = changes + 1; END;
CREATE TRIGGER users_updated AFTER UPDATE ON users
    BEGIN UPDATE access_changes SET changes = changes + 1; END;
CREATE TRIGGER users_deleted AFTER DELETE ON users
    BEGIN UPDATE access_changes SET changes = changes + 1; END;
CREATE TRIGGER user_projects_inserted AFTER INSERT ON user_projects
    BEGIN UPDATE access_changes SET changes = changes + 1; END;
CREATE TRIGGER user_projects_updated AFTER UPDATE ON user_projects
    BEGIN UPDATE access_changes SET changes = changes + 1; END;
CREATE TRIGGER user_projects_deleted AFTER DELETE ON user_projects
    BEGIN UPDATE access_changes SET changes = changes + 1; END;
CREATE TRIGGER api_tokens_updated AFTER UPDATE OF user_id, token_hash ON api_tokens
    BEGIN UPDATE access_changes SET changes = changes + 1; END;
CREATE TRIGGER api_tokens_deleted AFTER DELETE ON api_tokens
    BEGIN UPDATE access_changes SET changes = changes + 1; END;
CREATE TRIGGER projects_updated AFTER UPDATE ON projects
    BEGIN UPDATE access_changes SET changes = changes + 1; END;
CREATE TRIGGER projects_deleted AFTER DELETE ON projects
    BEGIN UPDATE access_changes SET changes = changes + 1; END;
CREATE TRIGGER project_settings_inserted AFTER INSERT ON project_settings
    BEGIN UPDATE access_changes SET changes = changes + 1; END;
CREATE TRIGGER project_settings_revision_updated AFTER UPDATE OF applied_revision ON project_settings
    BEGIN UPDATE access_changes SET changes = changes + 1; END;
CREATE TRIGGER project_settings_deleted AFTER DELETE ON project_settings
    BEGIN UPDATE access_changes SET changes = changes + 1; END;
