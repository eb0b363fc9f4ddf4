//! Applying the SQLite migrations.

use sqlx::{Connection, SqliteConnection, SqlitePool};

use crate::ledger::{self, Recorded};
use crate::{Dialect, MigrateError, Migration, MigrationReport, bus_migrations, migrations};

const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS ksa_schema_migrations (
    version    INTEGER NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    checksum   TEXT    NOT NULL,
    -- Microseconds since the Unix epoch, UTC.
    applied_at INTEGER NOT NULL DEFAULT (CAST(ROUND(unixepoch('subsec') * 1000) AS INTEGER) * 1000)
) STRICT";

/// What one migration's transaction found.
enum Outcome {
    Applied,
    AppliedByAnother,
}

/// Brings the database behind `pool` up to date. Safe to call from several processes at once:
/// each migration's transaction takes SQLite's write lock first (`BEGIN IMMEDIATE`) and checks
/// the ledger again inside it, so a migration applied meanwhile by another process is skipped.
pub async fn migrate_sqlite(pool: &SqlitePool) -> Result<MigrationReport, MigrateError> {
    apply_all(pool, migrations(Dialect::Sqlite)).await
}

/// Brings the embedded bus's own file behind `pool` up to date, as [`migrate_sqlite`] does the
/// state database.
pub async fn migrate_sqlite_bus(pool: &SqlitePool) -> Result<MigrationReport, MigrateError> {
    apply_all(pool, bus_migrations()).await
}

async fn apply_all(pool: &SqlitePool, known: &'static [Migration]) -> Result<MigrationReport, MigrateError> {
    let mut conn = pool.acquire().await.map_err(|source| MigrateError::Connect { target: "the SQLite pool".into(), source })?;
    let ledger_error = |source| MigrateError::Ledger { source };
    sqlx::raw_sql(CREATE_LEDGER).execute(&mut *conn).await.map_err(ledger_error)?;
    let rows: Vec<(i64, String, String)> = sqlx::query_as("SELECT version, name, checksum FROM ksa_schema_migrations ORDER BY version")
        .fetch_all(&mut *conn)
        .await
        .map_err(ledger_error)?;
    let recorded: Vec<Recorded> = rows.into_iter().map(Recorded::from).collect();
    let plan = ledger::plan(known, &recorded)?;
    let mut report = MigrationReport { applied: Vec::new(), already: plan.already };
    for migration in plan.pending {
        let outcome = apply(&mut conn, migration).await.map_err(|error| match error {
            ApplyError::Sql(source) => MigrateError::Apply { version: migration.version, name: migration.name, source },
            ApplyError::Refused(error) => error,
        })?;
        match outcome {
            Outcome::Applied => report.applied.push(migration.version),
            Outcome::AppliedByAnother => report.already.push(migration.version),
        }
    }
    report.already.sort_unstable();
    Ok(report)
}

enum ApplyError {
    Sql(sqlx::Error),
    Refused(MigrateError),
}

impl From<sqlx::Error> for ApplyError {
    fn from(error: sqlx::Error) -> Self {
        ApplyError::Sql(error)
    }
}

async fn apply(conn: &mut SqliteConnection, migration: &Migration) -> Result<Outcome, ApplyError> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let recorded: Option<String> = sqlx::query_scalar("SELECT checksum FROM ksa_schema_migrations WHERE version = ?")
        .bind(migration.version)
        .fetch_optional(&mut *tx)
        .await?;
    if let Some(checksum) = recorded {
        ledger::verify(migration, &checksum).map_err(ApplyError::Refused)?;
        return Ok(Outcome::AppliedByAnother);
    }
    sqlx::raw_sql(migration.sql).execute(&mut *tx).await?;
    sqlx::query("INSERT INTO ksa_schema_migrations (version, name, checksum) VALUES (?, ?, ?)")
        .bind(migration.version)
        .bind(migration.name)
        .bind(migration.checksum())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Outcome::Applied)
}
