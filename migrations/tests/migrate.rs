//! The migrations against real databases: SQLite in a temporary folder, and PostgreSQL from
//! `DATABASE_URL`, a server URL such as `postgres://postgres@127.0.0.1:5432/test`. Every
//! PostgreSQL test creates its own database and drops it at the end.
//!
//! Without `DATABASE_URL` the PostgreSQL tests say that they were skipped and pass, except under
//! `CI=true`, where they fail: CI must test both dialects.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use ksa_migrations::{Dialect, MigrateError, MigrationReport, migrate_postgres, migrate_sqlite, migrate_url, migrations};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, PgPool, SqlitePool};
use tempfile::TempDir;

/// Every table that belongs to a project, i.e. all but `projects`, `users` and the ledger.
const PROJECT_TABLES: [&str; 21] = [
    "user_projects",
    "project_settings",
    "status_group_dict",
    "status_dict",
    "sla_stage_rules",
    "cycle_rules",
    "urgent_rules",
    "working_hours",
    "order_overrides",
    "order_status_events",
    "orders_current",
    "order_cycle_metrics",
    "order_items",
    "order_marketing",
    "audit_log",
    "enrich_jobs",
    "enrich_cursors",
    "settings_history",
    "recomputes",
    "webhook_latency",
    "webhook_latest",
];

/// The one table of a single dialect: SQLite's count of access changes (migration 0010), which
/// PostgreSQL's notifications make needless.
const SQLITE_ONLY: &str = "access_changes";

/// Lookups the stores rely on: (table, leading columns of some index on it).
const INDEXED_LOOKUPS: [(&str, &str); 5] = [
    ("order_status_events", "project_id, order_id, status_changed_at"),
    ("orders_current", "project_id, last_status_group_id"),
    ("orders_current", "project_id, last_changed_at DESC, order_id DESC"),
    ("order_items", "project_id, order_id"),
    ("user_projects", "project_id"),
];

/// 2026-01-29T18:53:35Z, in microseconds since the Unix epoch.
const CHANGED_AT: i64 = 1_769_712_815_000_000;

// ---------------------------------------------------------------------------------------------
// Behaviours, each run on both dialects.
// ---------------------------------------------------------------------------------------------

ksa_testkit::on_both_databases!(
    fresh_database_gets_every_table_and_the_indexes_lookups_need,
    second_run_applies_nothing,
    dedup_key_rejects_an_identical_event_but_keeps_a_reentry_at_another_time,
    deleting_a_project_deletes_its_rows_in_every_table_and_nothing_else,
    migration_changed_after_it_was_applied_is_refused_naming_its_version,
    migration_unknown_to_this_build_is_refused,
    concurrent_migrations_both_succeed_and_apply_each_version_once,
    enumerations_refuse_values_outside_their_list,
    group_level_limit_and_default_calendar_are_unique_although_their_key_is_null,
    accounts_migration_keeps_users_memberships_and_what_refers_to_them,
);

async fn fresh_database_gets_every_table_and_the_indexes_lookups_need(db: Db) {
    let report = db.migrate().await.expect("migrating a fresh database");
    assert_eq!(report, MigrationReport { applied: all_versions(db.dialect()), already: vec![] });

    let mut expected: BTreeSet<String> = PROJECT_TABLES.iter().map(|t| t.to_string()).collect();
    expected.extend(["projects", "users", "ksa_schema_migrations", "api_tokens", "login_attempts"].map(String::from));
    // The event path's tables: the outbox bus, consumer offsets and webhook counters.
    expected.extend(["bus_heads", "bus_log", "bus_idempotency", "consumer_offsets", "webhook_counters"].map(String::from));
    if db.dialect() == Dialect::Sqlite {
        expected.insert(SQLITE_ONLY.to_owned());
    }
    assert_eq!(db.tables().await, expected);

    let columns = db.columns().await;
    for table in PROJECT_TABLES {
        assert!(columns.iter().any(|c| c.table == table && c.name == "project_id"), "{table} has no project_id");
    }

    let indexes = db.indexes().await;
    for (table, leading) in INDEXED_LOOKUPS {
        assert!(
            indexes.iter().any(|i| i.table == table && i.leads_with(leading)),
            "no index on {table} starts with ({leading}); indexes: {indexes:#?}"
        );
    }
    let dedup = indexes.iter().find(|i| i.name == "order_status_events_dedup_key").expect("the dedup key index exists");
    assert!(dedup.unique);
    assert_eq!(dedup.columns, "project_id, order_id, status_changed_at, status_id");
    // Dropped by 0003: no query reads events by arrival time, and every insert paid for it.
    assert!(!indexes.iter().any(|i| i.name == "order_status_events_received_at_idx"), "{indexes:#?}");
}

async fn second_run_applies_nothing(db: Db) {
    db.migrate().await.expect("first run");
    let report = db.migrate().await.expect("second run");
    assert_eq!(report, MigrationReport { applied: vec![], already: all_versions(db.dialect()) });
    assert_eq!(db.scalar("SELECT count(*) FROM ksa_schema_migrations").await, all_versions(db.dialect()).len() as i64);
}

async fn dedup_key_rejects_an_identical_event_but_keeps_a_reentry_at_another_time(db: Db) {
    db.migrate().await.expect("migrating");
    let project = db.project("dedup").await;
    let other_project = db.project("other").await;
    let event = |project: i64, changed_at: i64, status: i64| {
        format!(
            "INSERT INTO order_status_events (project_id, order_id, status_id, status_group_id, \
             status_changed_at, order_created_at, source, payload) VALUES ({project}, 1001, \
             {status}, 1, {}, {}, 'webhook', '{{\"event\": \"order.change_order_status\"}}')",
            db.instant(changed_at),
            db.instant(CHANGED_AT - 60_000_000),
        )
    };

    db.must(&event(project, CHANGED_AT, 20)).await;
    let error = db.execute(&event(project, CHANGED_AT, 20)).await.expect_err("an identical event must be rejected");
    assert!(is_unique_violation(&error), "{error}");
    let ignored = db
        .execute(&format!("{} ON CONFLICT (project_id, order_id, status_changed_at, status_id) DO NOTHING", event(project, CHANGED_AT, 20)))
        .await
        .expect("ON CONFLICT DO NOTHING drops the repeat");
    assert_eq!(ignored, 0);

    // Re-entering the status one microsecond later, another status at the same instant, and the
    // same event in another project are all new events.
    db.must(&event(project, CHANGED_AT + 1, 20)).await;
    db.must(&event(project, CHANGED_AT, 21)).await;
    db.must(&event(other_project, CHANGED_AT, 20)).await;
    assert_eq!(db.scalar(&format!("SELECT count(*) FROM order_status_events WHERE project_id = {project}")).await, 3);
}

async fn deleting_a_project_deletes_its_rows_in_every_table_and_nothing_else(db: Db) {
    db.migrate().await.expect("migrating");
    db.must("INSERT INTO users (login, email, password_hash, is_owner) VALUES ('ops', 'ops@example.com', 'x', TRUE)").await;
    let user = db.scalar("SELECT id FROM users WHERE login = 'ops'").await;
    let doomed = db.project("doomed").await;
    let kept = db.project("kept").await;
    for project in [doomed, kept] {
        for sql in rows_of_project(&db, project, user) {
            db.must(&sql).await;
        }
    }
    for table in PROJECT_TABLES {
        assert_eq!(db.rows_of(table, doomed).await, 1, "{table} before delete");
    }

    db.must(&format!("DELETE FROM projects WHERE id = {doomed}")).await;

    for table in PROJECT_TABLES {
        assert_eq!(db.rows_of(table, doomed).await, 0, "{table} after delete");
        assert_eq!(db.rows_of(table, kept).await, 1, "{table} of the other project");
    }
    assert_eq!(db.scalar("SELECT count(*) FROM users").await, 1);
}

async fn migration_changed_after_it_was_applied_is_refused_naming_its_version(db: Db) {
    db.migrate().await.expect("migrating");
    db.must("UPDATE ksa_schema_migrations SET checksum = 'fnv1a64:0000000000000000' WHERE version = 1").await;
    let error = db.migrate().await.expect_err("a changed migration must be refused");
    assert!(matches!(error, MigrateError::Changed { version: 1, .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.starts_with("migration 0001 `core` was changed after it was applied"), "{message}");
}

async fn migration_unknown_to_this_build_is_refused(db: Db) {
    db.migrate().await.expect("migrating");
    db.must(
        "INSERT INTO ksa_schema_migrations (version, name, checksum) \
         VALUES (9999, 'from_the_future', 'fnv1a64:0000000000000000')",
    )
    .await;
    let error = db.migrate().await.expect_err("an unknown applied migration must be refused");
    assert!(matches!(error, MigrateError::UnknownVersion { version: 9999, .. }), "{error:?}");
    assert!(error.to_string().contains("9999 `from_the_future`"), "{error}");
}

async fn concurrent_migrations_both_succeed_and_apply_each_version_once(db: Db) {
    let other = db.another_pool().await;
    let (first, second) = tokio::join!(db.migrate(), other.migrate());
    let first = first.expect("first migrator");
    let second = second.expect("second migrator");

    let all = all_versions(db.dialect());
    let mut applied = [first.applied.clone(), second.applied.clone()].concat();
    applied.sort_unstable();
    assert_eq!(applied, all, "{first:?} {second:?}");
    let mut already = [first.already, second.already].concat();
    already.sort_unstable();
    assert_eq!(already, all);
    assert_eq!(db.scalar("SELECT count(*) FROM ksa_schema_migrations").await, all.len() as i64);
}

async fn enumerations_refuse_values_outside_their_list(db: Db) {
    db.migrate().await.expect("migrating");
    let p = db.project("enums").await;
    let t = db.instant(CHANGED_AT);
    db.must("INSERT INTO users (login, password_hash) VALUES ('enums', 'x')").await;
    let user = db.scalar("SELECT id FROM users WHERE login = 'enums'").await;
    let refused = [
        format!(
            "INSERT INTO order_status_events (project_id, order_id, status_id, status_group_id, \
             status_changed_at, order_created_at, source) VALUES ({p}, 1, 20, 1, {t}, {t}, 'email')"
        ),
        format!(
            "INSERT INTO sla_stage_rules (project_id, profile, group_id, limit_seconds) \
             VALUES ({p}, 'vip', 1, 3600)"
        ),
        format!(
            "INSERT INTO orders_current (project_id, order_id, current_status_id, \
             last_status_group_id, last_changed_at, started_at, urgency, event_count, \
             settings_revision, derived_json) VALUES ({p}, 1, 20, 1, {t}, {t}, 'maybe', 1, 1, '{{}}')"
        ),
        format!(
            "INSERT INTO urgent_rules (project_id, match_type, match_value) \
             VALUES ({p}, 'name', 'x')"
        ),
        format!(
            "INSERT INTO cycle_rules (project_id, title, start_kind, start_ref, end_kind, end_ref) \
             VALUES ({p}, 'created needs no ref', 'created', 4, 'group', 5)"
        ),
        format!("INSERT INTO status_group_dict (project_id, group_id, name) VALUES ({p}, 7, 'seventh')"),
        format!("INSERT INTO user_projects (user_id, project_id, role) VALUES ({user}, {p}, 'analyst')"),
        format!("INSERT INTO recomputes (project_id, revision, state, started_at, updated_at) VALUES ({p}, 1, 'paused', {t}, {t})"),
        "INSERT INTO users (login, password_hash) VALUES ('', 'x')".to_owned(),
        format!("INSERT INTO webhook_latency (project_id, hour, bucket, count) VALUES ({p}, {t}, 32, 1)"),
        format!("INSERT INTO webhook_latest (project_id, kind, hour, last_at) VALUES ({p}, 'ignored', {t}, {t})"),
    ];
    for sql in refused {
        let error = db.execute(&sql).await.expect_err(&format!("must be refused: {sql}"));
        assert!(is_check_violation(&error), "{sql}: {error}");
    }
}

async fn group_level_limit_and_default_calendar_are_unique_although_their_key_is_null(db: Db) {
    db.migrate().await.expect("migrating");
    let p = db.project("nulls").await;
    let group_limit = format!(
        "INSERT INTO sla_stage_rules (project_id, profile, group_id, limit_seconds) \
         VALUES ({p}, 'normal', 3, 7200)"
    );
    db.must(&group_limit).await;
    let error = db.execute(&group_limit).await.expect_err("a second group-level limit must be refused");
    assert!(is_unique_violation(&error), "{error}");
    db.must(&format!(
        "{group_limit} ON CONFLICT (project_id, profile, group_id) WHERE status_id IS NULL \
         DO UPDATE SET limit_seconds = excluded.limit_seconds + 1"
    ))
    .await;
    db.must(&format!(
        "INSERT INTO sla_stage_rules (project_id, profile, group_id, status_id, limit_seconds) \
         VALUES ({p}, 'normal', 3, 31, 3600)"
    ))
    .await;
    assert_eq!(db.scalar(&format!("SELECT count(*) FROM sla_stage_rules WHERE project_id = {p}")).await, 2);

    let default_calendar = format!(
        "INSERT INTO working_hours (project_id, weekly_json, exceptions_json, preset) \
         VALUES ({p}, '{{}}', '[]', '24/7')"
    );
    db.must(&default_calendar).await;
    let error = db.execute(&default_calendar).await.expect_err("a second default calendar must be refused");
    assert!(is_unique_violation(&error), "{error}");
    db.must(&format!(
        "{default_calendar} ON CONFLICT (project_id) WHERE group_id IS NULL \
         DO UPDATE SET preset = excluded.preset"
    ))
    .await;
}

/// 0007 rebuilds `users` and `user_projects` on SQLite, where dropping `users` would null or
/// delete what refers to it: users become logins with an owner flag, `analyst` becomes
/// `viewer`, and audit rows and overrides keep their user.
async fn accounts_migration_keeps_users_memberships_and_what_refers_to_them(db: Db) {
    let all = migrations(db.dialect());
    let accounts = all.iter().position(|m| m.name == "accounts").expect("0007 accounts exists");
    for migration in &all[..accounts] {
        db.must(migration.sql).await;
    }
    let t = db.instant(CHANGED_AT);
    for statement in [
        "INSERT INTO projects (slug, name) VALUES ('p', 'P')".to_owned(),
        "INSERT INTO users (email, display_name, password_hash, role) VALUES ('boss@example.com', 'Boss', 'h1', 'admin')".to_owned(),
        "INSERT INTO users (email, display_name, password_hash, role) VALUES ('ann@example.com', 'Ann', 'h2', 'analyst')".to_owned(),
        "INSERT INTO user_projects (user_id, project_id, role) SELECT id, 1, 'analyst' FROM users WHERE email = 'ann@example.com'"
            .to_owned(),
        "INSERT INTO user_projects (user_id, project_id, role) SELECT id, 1, 'admin' FROM users WHERE email = 'boss@example.com'"
            .to_owned(),
        "INSERT INTO audit_log (project_id, user_id, action, entity) SELECT 1, id, 'settings.update', 'project_settings' FROM users \
         WHERE email = 'ann@example.com'"
            .to_owned(),
        "INSERT INTO audit_log (project_id, action, entity) VALUES (1, 'settings.update', 'project_settings')".to_owned(),
        format!(
            "INSERT INTO order_overrides (project_id, order_id, is_urgent_override, updated_by, updated_at) \
             SELECT 1, 10, TRUE, id, {t} FROM users WHERE email = 'boss@example.com'"
        ),
        "INSERT INTO project_settings (project_id, settings_json, revision) VALUES (1, '{}', 3)".to_owned(),
    ] {
        db.must(&statement).await;
    }

    db.must(all[accounts].sql).await;

    let ann = db.scalar("SELECT id FROM users WHERE login = 'ann@example.com' AND email = 'ann@example.com' AND NOT is_owner").await;
    let boss = db.scalar("SELECT id FROM users WHERE login = 'boss@example.com' AND is_owner").await;
    assert_eq!(db.scalar(&format!("SELECT count(*) FROM user_projects WHERE user_id = {ann} AND role = 'viewer'")).await, 1);
    assert_eq!(db.scalar(&format!("SELECT count(*) FROM user_projects WHERE user_id = {boss} AND role = 'admin'")).await, 1);
    assert_eq!(db.scalar(&format!("SELECT count(*) FROM audit_log WHERE user_id = {ann}")).await, 1, "the audit row keeps its user");
    assert_eq!(db.scalar("SELECT count(*) FROM audit_log WHERE actor = 'cli'").await, 1, "rows without a user were the command line's");
    assert_eq!(db.scalar(&format!("SELECT count(*) FROM order_overrides WHERE updated_by = {boss}")).await, 1);
    assert_eq!(db.scalar("SELECT applied_revision FROM project_settings WHERE project_id = 1").await, 3);
    assert_eq!(db.scalar("SELECT count(*) FROM settings_history WHERE project_id = 1 AND revision = 3").await, 1);
    // Logins are unique without regard to case.
    let error = db
        .execute("INSERT INTO users (login, password_hash) VALUES ('ANN@example.com', 'x')")
        .await
        .expect_err("a login that differs only in case must be refused");
    assert!(is_unique_violation(&error), "{error}");
}

// ---------------------------------------------------------------------------------------------
// Tests of one dialect, or of both side by side.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn postgres_and_sqlite_have_the_same_tables_columns_and_indexes() {
    on_postgres("postgres_and_sqlite_have_the_same_tables_columns_and_indexes", |postgres| async move {
        let sqlite = fresh_sqlite().await;
        postgres.migrate().await.expect("migrating PostgreSQL");
        sqlite.migrate().await.expect("migrating SQLite");

        let mut sqlite_tables = sqlite.tables().await;
        assert!(sqlite_tables.remove(SQLITE_ONLY), "SQLite counts access changes in {SQLITE_ONLY}");
        assert_eq!(postgres.tables().await, sqlite_tables);
        let postgres_columns = postgres.columns().await;
        let sqlite_columns: BTreeSet<_> = sqlite.columns().await.into_iter().filter(|c| c.table != SQLITE_ONLY).collect();
        let only_postgres: Vec<_> = postgres_columns.difference(&sqlite_columns).collect();
        let only_sqlite: Vec<_> = sqlite_columns.difference(&postgres_columns).collect();
        assert!(
            only_postgres.is_empty() && only_sqlite.is_empty(),
            "columns differ:\nonly in PostgreSQL: {only_postgres:#?}\nonly in SQLite: {only_sqlite:#?}"
        );

        let explicit = |indexes: Vec<Index>| -> BTreeSet<_> { indexes.into_iter().filter(|i| i.explicit).collect() };
        assert_eq!(explicit(postgres.indexes().await), explicit(sqlite.indexes().await));
    })
    .await;
}

#[tokio::test]
async fn migrate_url_creates_the_sqlite_file_and_its_folders_in_wal_mode() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let file = dir.path().join("data").join("nested").join("state.db");
    let path = file.to_str().expect("a UTF-8 path");

    let report = migrate_url(path).await.expect("migrating by path");
    assert_eq!(report.applied, all_versions(Dialect::Sqlite));
    assert!(file.is_file());

    let pool = SqlitePool::connect_with(SqliteConnectOptions::new().filename(&file)).await.expect("opening the migrated file");
    let journal_mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&pool).await.expect("reading the journal mode");
    assert_eq!(journal_mode, "wal");
    pool.close().await;

    let again = migrate_url(&format!("sqlite:{path}")).await.expect("migrating by sqlite: URL");
    assert_eq!(again, MigrationReport { applied: vec![], already: all_versions(Dialect::Sqlite) });
}

/// 0003 rebuilds three SQLite tables; every row written under 0002 must come through, and the
/// rebuilt tables must take what the new layout allows.
#[tokio::test]
async fn sqlite_hot_path_migration_keeps_every_row_of_the_rebuilt_tables() {
    let Db::Sqlite { pool, _dir, .. } = fresh_sqlite().await else { unreachable!("fresh_sqlite gives SQLite") };
    let all = migrations(Dialect::Sqlite);
    let hot_path = all.iter().position(|m| m.name == "hot_path").expect("0003 hot_path exists");
    for migration in &all[..hot_path] {
        sqlx::raw_sql(migration.sql).execute(&pool).await.expect("applying the migrations before 0003");
    }
    let t = CHANGED_AT;
    for statement in [
        "INSERT INTO projects (slug, name) VALUES ('p', 'P')".to_owned(),
        "INSERT INTO bus_log (topic, partition_no, record_offset, record_key, payload) VALUES \
         ('status-events', 0, 1, '1:10', x'7b7d'), ('status-events', 0, 2, '1:11', x'5b5d')"
            .to_owned(),
        format!(
            "INSERT INTO order_status_events (project_id, order_id, status_id, status_group_id, status_changed_at, \
             order_created_at, source, payload) VALUES (1, 10, 20, 1, {t}, {t}, 'webhook', '{{\"a\":1}}')"
        ),
        format!(
            "INSERT INTO orders_current (project_id, order_id, current_status_id, last_status_group_id, last_changed_at, \
             started_at, event_count, settings_revision, derived_json) VALUES (1, 10, 20, 1, {t}, {t}, 1, 1, '{{}}')"
        ),
    ] {
        sqlx::raw_sql(AssertSqlSafe(statement)).execute(&pool).await.expect("writing a row under 0002");
    }

    sqlx::raw_sql(all[hot_path].sql).execute(&pool).await.expect("applying 0003 over rows");

    let log: Vec<(i64, String, Vec<u8>)> =
        sqlx::query_as("SELECT record_offset, record_key, payload FROM bus_log ORDER BY record_offset").fetch_all(&pool).await.unwrap();
    assert_eq!(log, vec![(1, "1:10".to_owned(), b"{}".to_vec()), (2, "1:11".to_owned(), b"[]".to_vec())]);
    let without_rowid: String = sqlx::query_scalar("SELECT sql FROM sqlite_schema WHERE name = 'bus_log'").fetch_one(&pool).await.unwrap();
    assert!(!without_rowid.contains("WITHOUT ROWID"), "{without_rowid}");
    let payload: String = sqlx::query_scalar("SELECT payload FROM order_status_events WHERE order_id = 10").fetch_one(&pool).await.unwrap();
    assert_eq!(payload, r#"{"a":1}"#);
    let derived: (i64, String) =
        sqlx::query_as("SELECT event_count, derived_json FROM orders_current WHERE order_id = 10").fetch_one(&pool).await.unwrap();
    assert_eq!(derived, (1, "{}".to_owned()));
    // The key and the dedup index are still there.
    let repeat = sqlx::raw_sql(AssertSqlSafe(format!(
        "INSERT INTO order_status_events (project_id, order_id, status_id, status_group_id, status_changed_at, \
         order_created_at, source) VALUES (1, 10, 20, 1, {t}, {t}, 'webhook')"
    )))
    .execute(&pool)
    .await;
    assert!(repeat.is_err(), "the dedup key must still refuse an identical event");
    let offset_again = sqlx::query(
        "INSERT INTO bus_log (topic, partition_no, record_offset, record_key, payload) VALUES ('status-events', 0, 2, 'k', x'00')",
    )
    .execute(&pool)
    .await;
    assert!(offset_again.is_err(), "(topic, partition, offset) must stay unique");
}

#[tokio::test]
async fn postgres_live_writes_migration_keeps_each_derived_document_and_drops_the_group_totals() {
    on_postgres("live_writes_migration", |db| async move {
        let Db::Postgres { pool, .. } = &db else { unreachable!("on_postgres gives a PostgreSQL database") };
        let all = migrations(Dialect::Postgres);
        let live_writes = all.iter().position(|m| m.name == "live_writes").expect("0006 live_writes exists");
        for migration in &all[..live_writes] {
            sqlx::raw_sql(migration.sql).execute(pool).await.expect("applying the migrations before 0006");
        }
        let t = db.instant(CHANGED_AT);
        for statement in [
            "INSERT INTO projects (slug, name) VALUES ('p', 'P')".to_owned(),
            format!(
                "INSERT INTO orders_current (project_id, order_id, current_status_id, last_status_group_id, last_changed_at, \
                 started_at, event_count, settings_revision, derived_json) \
                 VALUES (1, 10, 20, 1, {t}, {t}, 1, 1, '{{\"statuses\": {{\"7\": {{\"wall_seconds\": 1.50}}}}, \"as_of\": \"ї\"}}')"
            ),
            "INSERT INTO order_group_totals (project_id, order_id, group_id, wall_seconds, working_seconds, visits) \
             VALUES (1, 10, 1, 60, 30, 1)"
                .to_owned(),
        ] {
            sqlx::raw_sql(AssertSqlSafe(statement)).execute(pool).await.expect("writing a row under 0005");
        }

        sqlx::raw_sql(all[live_writes].sql).execute(pool).await.expect("applying 0006 over rows");

        let (column_type,): (String,) = sqlx::query_as(
            "SELECT data_type FROM information_schema.columns WHERE table_name = 'orders_current' AND column_name = 'derived_json'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(column_type, "text");
        // The document as JSONB printed it: keys sorted, numbers and text as they were.
        let (derived,): (String,) =
            sqlx::query_as("SELECT derived_json FROM orders_current WHERE order_id = 10").fetch_one(pool).await.unwrap();
        assert_eq!(derived, r#"{"as_of": "ї", "statuses": {"7": {"wall_seconds": 1.50}}}"#);
        assert!(!db.tables().await.contains("order_group_totals"));
        // Deleting the project still deletes its derived rows (the trigger no longer names the
        // dropped table).
        db.must("DELETE FROM projects WHERE slug = 'p'").await;
        assert_eq!(db.scalar("SELECT count(*) FROM orders_current").await, 0);
    })
    .await;
}

#[tokio::test]
async fn migrate_url_migrates_a_postgres_database() {
    on_postgres("migrate_url_migrates_a_postgres_database", |db| async move {
        let Db::Postgres { url, .. } = &db else { unreachable!("on_postgres gives a PostgreSQL database") };
        let report = migrate_url(url).await.expect("migrating by URL");
        assert_eq!(report.applied, all_versions(Dialect::Postgres));
        let again = migrate_url(url).await.expect("migrating by URL again");
        assert_eq!(again.already, all_versions(Dialect::Postgres));
        assert!(again.applied.is_empty());
    })
    .await;
}

#[tokio::test]
async fn migrate_url_refuses_a_scheme_it_does_not_know() {
    let error = migrate_url("mysql://root:hunter2@127.0.0.1/ksa").await.expect_err("mysql is not supported");
    assert!(matches!(error, MigrateError::UnsupportedUrl { .. }));
    assert!(!error.to_string().contains("hunter2"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// Fixtures.
// ---------------------------------------------------------------------------------------------

/// A freshly created, empty database of either dialect.
#[derive(Debug, Clone)]
enum Db {
    Postgres { pool: PgPool, options: PgConnectOptions, url: String },
    Sqlite { pool: SqlitePool, options: SqliteConnectOptions, _dir: Arc<TempDir> },
}

/// A column as both dialects can describe it: its SQLite storage type, and whether it is
/// nullable.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Column {
    table: String,
    name: String,
    sqlite_type: String,
    nullable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Index {
    table: String,
    name: String,
    /// Key columns as `a, b DESC`.
    columns: String,
    unique: bool,
    /// Created by CREATE INDEX, rather than behind a PRIMARY KEY or UNIQUE constraint (whose
    /// index names differ between the dialects).
    explicit: bool,
}

impl Index {
    fn leads_with(&self, columns: &str) -> bool {
        self.columns == columns || self.columns.starts_with(&format!("{columns}, "))
    }
}

async fn on_sqlite<F, Fut>(behaviour: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()>,
{
    behaviour(fresh_sqlite().await).await;
}

async fn fresh_sqlite() -> Db {
    let dir = tempfile::tempdir().expect("temporary folder");
    let options = SqliteConnectOptions::new()
        .filename(dir.path().join("state.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options.clone()).await.expect("opening SQLite");
    Db::Sqlite { pool, options, _dir: Arc::new(dir) }
}

/// Runs `behaviour` on a database of its own on the `DATABASE_URL` server, and drops that
/// database afterwards, also when the behaviour panics.
async fn on_postgres<F, Fut>(test: &str, behaviour: F)
where
    F: FnOnce(Db) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    ksa_testkit::with_postgres_database(test, |url| async move {
        let options: PgConnectOptions = url.parse().expect("the fresh database's URL");
        let pool = PgPoolOptions::new().max_connections(4).connect_with(options.clone()).await.expect("connecting to the fresh database");
        behaviour(Db::Postgres { pool: pool.clone(), options, url }).await;
        pool.close().await;
    })
    .await;
}

fn all_versions(dialect: Dialect) -> Vec<i64> {
    migrations(dialect).iter().map(|m| m.version).collect()
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(|e| e.is_unique_violation())
}

fn is_check_violation(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(|e| e.is_check_violation())
}

/// One row in every project table for `project`.
fn rows_of_project(db: &Db, project: i64, user: i64) -> Vec<String> {
    let p = project;
    let t = db.instant(CHANGED_AT);
    vec![
        format!("INSERT INTO user_projects (user_id, project_id, role) VALUES ({user}, {p}, 'viewer')"),
        format!("INSERT INTO project_settings (project_id, settings_json) VALUES ({p}, '{{}}')"),
        format!(
            "INSERT INTO status_group_dict (project_id, group_id, name, is_terminal) \
             VALUES ({p}, 5, 'completed', TRUE)"
        ),
        format!(
            "INSERT INTO status_dict (project_id, status_id, name, alias, group_id, \
             expiration_period_seconds) VALUES ({p}, 20, 'New', 'new', 1, 86400)"
        ),
        format!(
            "INSERT INTO sla_stage_rules (project_id, profile, group_id, limit_seconds) \
             VALUES ({p}, 'urgent', 3, 3600)"
        ),
        format!(
            "INSERT INTO cycle_rules (project_id, title, start_kind, end_kind, end_ref) \
             VALUES ({p}, 'to delivery', 'created', 'group', 4)"
        ),
        format!(
            "INSERT INTO urgent_rules (project_id, match_type, match_value) \
             VALUES ({p}, 'sku', 'Термінове виготовлення')"
        ),
        format!(
            "INSERT INTO working_hours (project_id, group_id, weekly_json, exceptions_json) \
             VALUES ({p}, 3, '{{\"mon\": [\"09:00-18:00\"]}}', '[]')"
        ),
        format!(
            "INSERT INTO order_overrides (project_id, order_id, is_urgent_override, \
             cycle_start_override, cycle_end_override, updated_by) \
             VALUES ({p}, 1, TRUE, {t}, {}, {user})",
            db.instant(CHANGED_AT + 1)
        ),
        format!(
            "INSERT INTO order_status_events (project_id, order_id, status_id, status_group_id, \
             status_changed_at, order_created_at, source, payload) \
             VALUES ({p}, 1, 20, 1, {t}, {t}, 'backfilled', '{{}}')"
        ),
        format!(
            "INSERT INTO orders_current (project_id, order_id, current_status_id, \
             last_status_group_id, last_changed_at, started_at, event_count, settings_revision, \
             derived_json) VALUES ({p}, 1, 20, 1, {t}, {t}, 1, 1, '{{}}')"
        ),
        format!(
            "INSERT INTO order_cycle_metrics (project_id, order_id, cycle_id, started_at, \
             wall_seconds, working_seconds, is_open) VALUES ({p}, 1, 1, {t}, 60, 30, TRUE)"
        ),
        format!(
            "INSERT INTO order_items (project_id, order_id, line_id, sku, quantity, price, \
             offer_id, product_id) VALUES ({p}, 1, 0, 'SKU-1', 1.5, 2.0, 16, 2)"
        ),
        format!(
            "INSERT INTO order_marketing (project_id, order_id, utm_source) \
             VALUES ({p}, 1, 'facebook')"
        ),
        format!(
            "INSERT INTO audit_log (project_id, user_id, action, entity, after_json) \
             VALUES ({p}, {user}, 'update', 'settings', '{{}}')"
        ),
        format!("INSERT INTO enrich_jobs (project_id, order_id, next_attempt_at) VALUES ({p}, 1, {t})"),
        format!("INSERT INTO enrich_cursors (project_id, name, cursor_json) VALUES ({p}, 'backfill', '{{}}')"),
        format!("INSERT INTO settings_history (project_id, revision, settings_json, actor) VALUES ({p}, 1, '{{}}', 'cli')"),
        format!("INSERT INTO recomputes (project_id, revision, state, started_at, updated_at) VALUES ({p}, 1, 'running', {t}, {t})"),
        format!("INSERT INTO webhook_latency (project_id, hour, bucket, count) VALUES ({p}, {t}, 12, 3)"),
        format!("INSERT INTO webhook_latest (project_id, kind, hour, last_at, reason) VALUES ({p}, 'refused', {t}, {t}, 'malformed')"),
    ]
}

impl Db {
    fn dialect(&self) -> Dialect {
        match self {
            Db::Postgres { .. } => Dialect::Postgres,
            Db::Sqlite { .. } => Dialect::Sqlite,
        }
    }

    async fn migrate(&self) -> Result<MigrationReport, MigrateError> {
        match self {
            Db::Postgres { pool, .. } => migrate_postgres(pool).await,
            Db::Sqlite { pool, .. } => migrate_sqlite(pool).await,
        }
    }

    /// Another pool on the same database, as a second process would have.
    async fn another_pool(&self) -> Db {
        match self {
            Db::Postgres { options, url, .. } => Db::Postgres {
                pool: PgPoolOptions::new().max_connections(2).connect_with(options.clone()).await.expect("a second PostgreSQL pool"),
                options: options.clone(),
                url: url.clone(),
            },
            Db::Sqlite { options, _dir, .. } => Db::Sqlite {
                pool: SqlitePoolOptions::new().max_connections(2).connect_with(options.clone()).await.expect("a second SQLite pool"),
                options: options.clone(),
                _dir: Arc::clone(_dir),
            },
        }
    }

    /// An SQL literal for the instant `micros` after the Unix epoch.
    fn instant(&self, micros: i64) -> String {
        match self {
            Db::Postgres { .. } => {
                format!("(TIMESTAMPTZ 'epoch' + {micros} * INTERVAL '1 microsecond')")
            }
            Db::Sqlite { .. } => micros.to_string(),
        }
    }

    async fn project(&self, slug: &str) -> i64 {
        self.must(&format!("INSERT INTO projects (slug, name) VALUES ('{slug}', 'Project {slug}')")).await;
        self.scalar(&format!("SELECT id FROM projects WHERE slug = '{slug}'")).await
    }

    async fn rows_of(&self, table: &str, project: i64) -> i64 {
        self.scalar(&format!("SELECT count(*) FROM {table} WHERE project_id = {project}")).await
    }

    /// Runs `sql`, returning the number of rows it changed.
    async fn execute(&self, sql: &str) -> Result<u64, sqlx::Error> {
        let query = sqlx::raw_sql(AssertSqlSafe(sql.to_owned()));
        match self {
            Db::Postgres { pool, .. } => query.execute(pool).await.map(|r| r.rows_affected()),
            Db::Sqlite { pool, .. } => query.execute(pool).await.map(|r| r.rows_affected()),
        }
    }

    async fn must(&self, sql: &str) {
        if let Err(error) = self.execute(sql).await {
            panic!("{sql}\nfailed on {:?}: {error}", self.dialect());
        }
    }

    async fn scalar(&self, sql: &str) -> i64 {
        let sql_safe = || AssertSqlSafe(sql.to_owned());
        let result = match self {
            Db::Postgres { pool, .. } => sqlx::query_scalar(sql_safe()).fetch_one(pool).await,
            Db::Sqlite { pool, .. } => sqlx::query_scalar(sql_safe()).fetch_one(pool).await,
        };
        result.unwrap_or_else(|e| panic!("{sql}\nfailed on {:?}: {e}", self.dialect()))
    }

    async fn tables(&self) -> BTreeSet<String> {
        let tables: Result<Vec<String>, _> = match self {
            Db::Postgres { pool, .. } => {
                sqlx::query_scalar(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
                )
                .fetch_all(pool)
                .await
            }
            Db::Sqlite { pool, .. } => {
                sqlx::query_scalar(
                    "SELECT name FROM sqlite_master \
                     WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
                )
                .fetch_all(pool)
                .await
            }
        };
        tables.expect("listing tables").into_iter().collect()
    }

    async fn columns(&self) -> BTreeSet<Column> {
        match self {
            Db::Postgres { pool, .. } => {
                let rows: Vec<(String, String, String, String)> = sqlx::query_as(
                    "SELECT table_name::text, column_name::text, data_type::text, \
                     is_nullable::text FROM information_schema.columns \
                     WHERE table_schema = current_schema()",
                )
                .fetch_all(pool)
                .await
                .expect("listing PostgreSQL columns");
                rows.into_iter()
                    .map(|(table, name, data_type, nullable)| Column {
                        sqlite_type: sqlite_counterpart(&data_type).to_owned(),
                        table,
                        name,
                        nullable: nullable == "YES",
                    })
                    .collect()
            }
            Db::Sqlite { pool, .. } => {
                let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
                    "SELECT m.name, c.name, c.type, c.\"notnull\" FROM sqlite_master AS m \
                     JOIN pragma_table_info(m.name) AS c \
                     WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'",
                )
                .fetch_all(pool)
                .await
                .expect("listing SQLite columns");
                rows.into_iter()
                    .map(|(table, name, sqlite_type, not_null)| Column { table, name, sqlite_type, nullable: not_null == 0 })
                    .collect()
            }
        }
    }

    async fn indexes(&self) -> Vec<Index> {
        match self {
            Db::Postgres { pool, .. } => {
                let rows: Vec<(String, String, String, bool)> = sqlx::query_as(
                    "SELECT i.tablename::text, i.indexname::text, i.indexdef, \
                     NOT EXISTS (SELECT 1 FROM pg_constraint AS c WHERE c.conname = i.indexname) \
                     FROM pg_indexes AS i WHERE i.schemaname = current_schema()",
                )
                .fetch_all(pool)
                .await
                .expect("listing PostgreSQL indexes");
                rows.into_iter()
                    .map(|(table, name, definition, explicit)| Index {
                        columns: key_columns(&definition),
                        unique: definition.starts_with("CREATE UNIQUE INDEX"),
                        table,
                        name,
                        explicit,
                    })
                    .collect()
            }
            Db::Sqlite { pool, .. } => {
                let rows: Vec<(String, String, i64, bool)> = sqlx::query_as(
                    "SELECT m.tbl_name, m.name, l.\"unique\", m.sql IS NOT NULL \
                     FROM sqlite_master AS m JOIN pragma_index_list(m.tbl_name) AS l \
                     ON l.name = m.name WHERE m.type = 'index'",
                )
                .fetch_all(pool)
                .await
                .expect("listing SQLite indexes");
                let mut indexes = Vec::new();
                for (table, name, unique, explicit) in rows {
                    let keys: Vec<(Option<String>, i64)> = sqlx::query_as(
                        "SELECT name, \"desc\" FROM pragma_index_xinfo(?) \
                         WHERE key = 1 ORDER BY seqno",
                    )
                    .bind(&name)
                    .fetch_all(pool)
                    .await
                    .expect("listing SQLite index columns");
                    let columns = if keys.iter().any(|(column, _)| column.is_none()) {
                        // An index on an expression: its text, as PostgreSQL shows it.
                        let sql: String = sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = ?")
                            .bind(&name)
                            .fetch_one(pool)
                            .await
                            .expect("reading an index's definition");
                        let on = sql.find(&format!("ON {table} (")).expect("an index names its table") + table.len() + 5;
                        parenthesized(&sql[on..])
                    } else {
                        keys.into_iter()
                            .map(|(column, desc)| {
                                let column = column.unwrap_or_default();
                                if desc == 1 { format!("{column} DESC") } else { column }
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    indexes.push(Index { table, name, columns, unique: unique == 1, explicit });
                }
                indexes
            }
        }
    }
}

/// The SQLite type that stands for a PostgreSQL type in these migrations.
fn sqlite_counterpart(postgres_type: &str) -> &'static str {
    match postgres_type {
        "bigint" | "boolean" | "timestamp with time zone" => "INTEGER",
        "double precision" => "REAL",
        "text" | "json" | "jsonb" => "TEXT",
        "bytea" => "BLOB",
        other => panic!("PostgreSQL type {other} has no SQLite counterpart in the conventions"),
    }
}

/// The key columns of a `pg_indexes.indexdef`, as `a, b DESC`.
fn key_columns(definition: &str) -> String {
    let start =
        definition.find(" USING btree (").map(|i| i + " USING btree (".len()).unwrap_or_else(|| panic!("not a btree index: {definition}"));
    parenthesized(&definition[start..])
}

/// The text up to the parenthesis that closes one opened just before `text`.
fn parenthesized(text: &str) -> String {
    let mut depth = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return text[..i].to_owned(),
            ')' => depth -= 1,
            _ => {}
        }
    }
    text.to_owned()
}
