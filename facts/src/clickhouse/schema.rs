//! Brings the fact tables up to date at start: the database, the ledger, then each pending
//! migration of `migrations/clickhouse`, statement by statement.

use clickhouse::Client;
use ksa_migrations::clickhouse::{LEDGER_DDL, LEDGER_TABLE, adds_columns, statements};
use ksa_migrations::{MigrationReport, plan_clickhouse};
use serde::Deserialize;

use super::ClickHouseConfig;
use super::error::{classify, server_code};
use crate::FactError;

#[derive(Debug, ::clickhouse::Row, Deserialize)]
struct LedgerRow {
    version: i64,
    name: String,
    checksum: String,
}

/// ClickHouse's error code for adding a column a table already has.
const COLUMN_EXISTS: u32 = 44;

/// Creates the database when missing and applies what the ledger does not list yet.
pub(crate) async fn apply(server: &Client, client: &Client, config: &ClickHouseConfig) -> Result<MigrationReport, FactError> {
    // The name was validated: letters, digits and `_` only.
    run(server, config, &format!("CREATE DATABASE IF NOT EXISTS {}", config.database)).await?;
    run(client, config, LEDGER_DDL).await?;

    let recorded: Vec<(i64, String, String)> = client
        .query(&format!("SELECT version, name, checksum FROM {LEDGER_TABLE} FINAL ORDER BY version"))
        .fetch_all::<LedgerRow>()
        .await
        .map_err(|e| classify(config.display_url(), "SELECT FROM ksa_schema_migrations", e))?
        .into_iter()
        .map(|row| (row.version, row.name, row.checksum))
        .collect();
    let plan = plan_clickhouse(&recorded)?;

    let mut applied = Vec::new();
    for migration in plan.pending {
        for statement in statements(migration.sql) {
            match run(client, config, &statement).await {
                // Applied by a run that stopped before recording the migration.
                Err(FactError::Rejected { source: clickhouse::error::Error::BadResponse(text), .. })
                    if adds_columns(&statement) && server_code(&text) == Some(COLUMN_EXISTS) =>
                {
                    tracing::info!(version = migration.version, statement = first_line(&statement), "columns already added");
                }
                other => other?,
            }
        }
        client
            .query(&format!("INSERT INTO {LEDGER_TABLE} (version, name, checksum, applied_at) VALUES (?, ?, ?, now())"))
            .bind(migration.version)
            .bind(migration.name)
            .bind(migration.checksum())
            .execute()
            .await
            .map_err(|e| classify(config.display_url(), "INSERT INTO ksa_schema_migrations", e))?;
        tracing::info!(version = migration.version, name = migration.name, database = %config.database, "applied ClickHouse migration");
        applied.push(migration.version);
    }
    Ok(MigrationReport { applied, already: plan.already })
}

async fn run(client: &Client, config: &ClickHouseConfig, statement: &str) -> Result<(), FactError> {
    client.query(statement).execute().await.map_err(|e| classify(config.display_url(), first_line(statement), e))
}

fn first_line(statement: &str) -> &str {
    statement.lines().next().unwrap_or(statement)
}
