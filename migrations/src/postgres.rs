//! Applying the PostgreSQL migrations.

use sqlx::{Connection, PgConnection, PgPool};

use crate::ledger::{self, Recorded};
use crate::{Dialect, MigrateError, Migration, MigrationReport, migrations};

/// Key of the session-level advisory lock that serialises migrators of one database (advisory
/// locks are per database). The bytes spell "ksa_mig" so the lock is recognisable in pg_locks.
const LOCK_KEY: i64 = 0x006b_7361_5f6d_6967;

const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS ksa_schema_migrations (
    version    BIGINT      NOT NULL PRIMARY KEY,
    name       TEXT        NOT NULL,
    checksum   TEXT        NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)";

/// Brings the database behind `pool` up to date. Safe to call from several processes at once:
/// an advisory lock lets one migrate while the others wait, and then find nothing left to do.
pub async fn migrate_postgres(pool: &PgPool) -> Result<MigrationReport, MigrateError> {
    let mut conn = pool.acquire().await.map_err(|source| MigrateError::Connect { target: "the PostgreSQL pool".into(), source })?;
    // The lock belongs to this session. Closing the session afterwards releases it whatever
    // happens, even if this future is dropped half-way, so no pooled connection keeps it.
    conn.close_on_drop();
    sqlx::query("SELECT pg_advisory_lock($1)").bind(LOCK_KEY).execute(&mut *conn).await.map_err(|source| MigrateError::Lock { source })?;
    let report = migrate_locked(&mut conn).await;
    // An unlock failure needs no handling: the session closes on drop and releases the lock.
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)").bind(LOCK_KEY).execute(&mut *conn).await;
    report
}

async fn migrate_locked(conn: &mut PgConnection) -> Result<MigrationReport, MigrateError> {
    let ledger_error = |source| MigrateError::Ledger { source };
    sqlx::raw_sql(CREATE_LEDGER).execute(&mut *conn).await.map_err(ledger_error)?;
    let rows: Vec<(i64, String, String)> = sqlx::query_as("SELECT version, name, checksum FROM ksa_schema_migrations ORDER BY version")
        .fetch_all(&mut *conn)
        .await
        .map_err(ledger_error)?;
    let recorded: Vec<Recorded> = rows.into_iter().map(Recorded::from).collect();
    let plan = ledger::plan(migrations(Dialect::Postgres), &recorded)?;
    let mut report = MigrationReport { applied: Vec::new(), already: plan.already };
    for migration in plan.pending {
        apply(conn, migration).await.map_err(|source| MigrateError::Apply { version: migration.version, name: migration.name, source })?;
        report.applied.push(migration.version);
    }
    Ok(report)
}

async fn apply(conn: &mut PgConnection, migration: &Migration) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::raw_sql(migration.sql).execute(&mut *tx).await?;
    sqlx::query("INSERT INTO ksa_schema_migrations (version, name, checksum) VALUES ($1, $2, $3)")
        .bind(migration.version)
        .bind(migration.name)
        .bind(migration.checksum())
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}
