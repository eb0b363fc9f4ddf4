//! The ClickHouse schema of the fact tables (`clickhouse/*.sql`). This crate only carries the
//! text and the decisions on the ledger; the facts crate, which owns the ClickHouse client,
//! runs the statements.
//!
//! ClickHouse has no transactions and its HTTP interface takes one statement per request, so a
//! migration is a list of statements, each idempotent (`CREATE TABLE IF NOT EXISTS`, or an `ALTER
//! TABLE` that only adds columns, which a rerun finds already there: [`adds_columns`]): a run
//! that stops half-way is finished by the next one. A migration is recorded in
//! [`LEDGER_TABLE`] once all its statements succeeded.

use crate::{MigrateError, Migration, ledger};

static CLICKHOUSE: [Migration; 2] = [
    Migration { version: 1, name: "facts", sql: include_str!("../clickhouse/0001_facts.sql") },
    Migration { version: 2, name: "placing_columns", sql: include_str!("../clickhouse/0002_placing_columns.sql") },
];

/// The table recording applied ClickHouse migrations, in the facts database.
pub const LEDGER_TABLE: &str = "ksa_schema_migrations";

/// Creates [`LEDGER_TABLE`]. Runs on 18.16 and current releases; `applied_at` is whole
/// seconds (DateTime), which is all a ledger needs. ReplacingMergeTree keeps one row per
/// version when two processes apply the same migration at once.
pub const LEDGER_DDL: &str = "CREATE TABLE IF NOT EXISTS ksa_schema_migrations \
     (version Int64, name String, checksum String, applied_at DateTime) \
     ENGINE = ReplacingMergeTree ORDER BY version";

/// Every ClickHouse migration, in ascending version order.
pub fn clickhouse_migrations() -> &'static [Migration] {
    &CLICKHOUSE
}

/// What a ClickHouse run has to do: the versions recorded before, and the migrations to apply.
#[derive(Debug)]
pub struct ClickHousePlan {
    pub already: Vec<i64>,
    pub pending: Vec<&'static Migration>,
}

/// Compares the ledger's rows `(version, name, checksum)` with this build's migrations, and
/// refuses a migration changed after it was applied or unknown to this build.
pub fn plan_clickhouse(recorded: &[(i64, String, String)]) -> Result<ClickHousePlan, MigrateError> {
    let recorded: Vec<ledger::Recorded> = recorded.iter().cloned().map(ledger::Recorded::from).collect();
    let plan = ledger::plan(clickhouse_migrations(), &recorded)?;
    Ok(ClickHousePlan { already: plan.already, pending: plan.pending })
}

/// The statements of a migration's text: `--` comments dropped, split at each `;`. The files
/// keep `;` out of string literals and comments, which this split relies on.
pub fn statements(sql: &str) -> Vec<String> {
    let without_comments: String = sql
        .lines()
        .map(|line| match line.find("--") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    without_comments.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// True for an `ALTER TABLE` that only adds columns. 18.16 has no `ADD COLUMN IF NOT EXISTS`;
/// ClickHouse applies one such statement whole or not at all, so when a rerun answers that a
/// column already exists, the statement was applied before.
pub fn adds_columns(statement: &str) -> bool {
    let Some(rest) = statement.strip_prefix("ALTER TABLE ") else { return false };
    let Some((_, clauses)) = rest.split_once(char::is_whitespace) else { return false };
    clauses.split(',').all(|clause| clause.trim_start().starts_with("ADD COLUMN "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_ascend_without_gaps() {
        let versions: Vec<i64> = clickhouse_migrations().iter().map(|m| m.version).collect();
        assert_eq!(versions, (1..=versions.len() as i64).collect::<Vec<_>>());
    }

    #[test]
    fn every_statement_is_idempotent() {
        for migration in clickhouse_migrations() {
            for statement in statements(migration.sql) {
                let idempotent = statement.starts_with("CREATE TABLE IF NOT EXISTS ") || adds_columns(&statement);
                assert!(idempotent, "{}: {statement}", migration.name);
            }
        }
    }

    #[test]
    fn the_fact_migration_has_both_tables() {
        let statements = statements(clickhouse_migrations()[0].sql);
        assert_eq!(statements.len(), 2);
        assert!(statements[0].contains("status_intervals"));
        assert!(statements[1].contains("order_cycles"));
    }

    #[test]
    fn only_alters_that_add_columns_count_as_adding_columns() {
        assert!(adds_columns("ALTER TABLE t\n    ADD COLUMN a Nullable(Int64),\n    ADD COLUMN b Nullable(Int64)"));
        assert!(!adds_columns("ALTER TABLE t ADD COLUMN a Int64, DROP COLUMN b"));
        assert!(!adds_columns("ALTER TABLE t MODIFY COLUMN a Int64"));
        assert!(!adds_columns("CREATE TABLE t (a Int64)"));
    }

    #[test]
    fn comments_and_blank_statements_are_dropped() {
        let sql = "-- header; with a semicolon\nCREATE TABLE a (x Int8); -- trailing\n\n;CREATE TABLE b (y Int8)";
        assert_eq!(statements(sql), vec!["CREATE TABLE a (x Int8)", "CREATE TABLE b (y Int8)"]);
    }

    #[test]
    fn a_changed_migration_is_refused() {
        let recorded = vec![(1, "facts".to_owned(), "fnv1a64:0000000000000000".to_owned())];
        assert!(matches!(plan_clickhouse(&recorded), Err(MigrateError::Changed { version: 1, .. })));
    }

    #[test]
    fn applied_migrations_are_not_pending() {
        let recorded: Vec<(i64, String, String)> =
            clickhouse_migrations().iter().map(|m| (m.version, m.name.to_owned(), m.checksum())).collect();
        let plan = plan_clickhouse(&recorded).expect("plan");
        assert_eq!(plan.already, vec![1, 2]);
        assert!(plan.pending.is_empty());
        let plan = plan_clickhouse(&recorded[..1]).expect("plan");
        assert_eq!(plan.pending.iter().map(|m| m.version).collect::<Vec<_>>(), vec![2]);
        assert_eq!(plan_clickhouse(&[]).expect("plan").pending.len(), clickhouse_migrations().len());
    }
}
