-- Query processes keep callers (tokens, users with their memberships), projects and applied
-- settings revisions in memory while they hear of every change to them: each write to these
-- tables tells the listeners of channel `ksa_access`, whichever process made it (the command
-- line included), once per statement, when its transaction commits. A token's `last_used_at`
-- is not such a change.
CREATE FUNCTION ksa_access_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ksa_access', TG_TABLE_NAME);
    RETURN NULL;
END
$$;

CREATE TRIGGER users_access_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION ksa_access_changed();
CREATE TRIGGER user_projects_access_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON user_projects
    FOR EACH STATEMENT EXECUTE FUNCTION ksa_access_changed();
CREATE TRIGGER api_tokens_access_changed AFTER UPDATE OF user_id, token_hash OR DELETE OR TRUNCATE ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION ksa_access_changed();
CREATE TRIGGER projects_access_changed AFTER UPDATE OR DELETE OR TRUNCATE ON projects
    FOR EACH STATEMENT EXECUTE FUNCTION ksa_access_changed();
CREATE TRIGGER project_settings_access_changed AFTER INSERT OR UPDATE OF applied_revision OR DELETE OR TRUNCATE ON project_settings
    FOR EACH STATEMENT EXECUTE FUNCTION ksa_access_changed();
