//! The SQL schema of the state database, for PostgreSQL and SQLite, and of the ClickHouse fact
//! tables (see [`clickhouse`]), embedded in the binary and applied at start.
//!
//! Each dialect has its own folder of numbered files (`postgres/0001_core.sql`,
//! `sqlite/0001_core.sql`) with the same tables and columns. Applied versions are recorded, with
//! a checksum of their text, in the `ksa_schema_migrations` table: running the migrations again
//! applies only what is new, and a file changed after it was applied is refused rather than
//! silently ignored. Every migration runs in its own transaction, so a failed one leaves nothing
//! behind.

pub mod clickhouse;
mod error;
mod ledger;
mod postgres;
mod sqlite;
mod url;

pub use clickhouse::{ClickHousePlan, clickhouse_migrations, plan_clickhouse};
pub use error::MigrateError;
pub use postgres::migrate_postgres;
pub use sqlite::{migrate_sqlite, migrate_sqlite_bus};
pub use url::migrate_url;

/// The SQL dialect a set of migrations is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

/// One schema change: applied once per database, in version order, inside a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Position in the sequence; the file name's numeric prefix (`0001`).
    pub version: i64,
    /// The file name's suffix (`core`), for messages.
    pub name: &'static str,
    /// The file's text; may hold several statements.
    pub sql: &'static str,
}

impl Migration {
    /// The checksum recorded when the migration is applied. Line endings do not count, so a
    /// checkout with CRLF line endings matches one with LF.
    pub fn checksum(&self) -> String {
        ledger::checksum(self.sql)
    }
}

static POSTGRES: [Migration; 10] = [
    Migration { version: 1, name: "core", sql: include_str!("../postgres/0001_core.sql") },
    Migration { version: 2, name: "event_path", sql: include_str!("../postgres/0002_event_path.sql") },
    Migration { version: 3, name: "hot_path", sql: include_str!("../postgres/0003_hot_path.sql") },
    Migration { version: 4, name: "enricher", sql: include_str!("../postgres/0004_enricher.sql") },
    Migration { version: 5, name: "write_path", sql: include_str!("../postgres/0005_write_path.sql") },
    Migration { version: 6, name: "live_writes", sql: include_str!("../postgres/0006_live_writes.sql") },
    Migration { version: 7, name: "accounts", sql: include_str!("../postgres/0007_accounts.sql") },
    Migration { version: 8, name: "webhook_stats", sql: include_str!("../postgres/0008_webhook_stats.sql") },
    Migration { version: 9, name: "access_changes", sql: include_str!("../postgres/0009_access_changes.sql") },
    Migration { version: 10, name: "access_count", sql: include_str!("../postgres/0010_access_count.sql") },
];

static SQLITE: [Migration; 10] = [
    Migration { version: 1, name: "core", sql: include_str!("../sqlite/0001_core.sql") },
    Migration { version: 2, name: "event_path", sql: include_str!("../sqlite/0002_event_path.sql") },
    Migration { version: 3, name: "hot_path", sql: include_str!("../sqlite/0003_hot_path.sql") },
    Migration { version: 4, name: "enricher", sql: include_str!("../sqlite/0004_enricher.sql") },
    Migration { version: 5, name: "write_path", sql: include_str!("../sqlite/0005_write_path.sql") },
    Migration { version: 6, name: "live_writes", sql: include_str!("../sqlite/0006_live_writes.sql") },
    Migration { version: 7, name: "accounts", sql: include_str!("../sqlite/0007_accounts.sql") },
    Migration { version: 8, name: "webhook_stats", sql: include_str!("../sqlite/0008_webhook_stats.sql") },
    Migration { version: 9, name: "access_changes", sql: include_str!("../sqlite/0009_access_changes.sql") },
    Migration { version: 10, name: "access_count", sql: include_str!("../sqlite/0010_access_count.sql") },
];

/// The embedded bus's own SQLite file (beside the state database): its ledger and versions are
/// apart from the state database's.
static SQLITE_BUS: [Migration; 1] = [Migration { version: 1, name: "outbox", sql: include_str!("../sqlite-bus/0001_outbox.sql") }];

/// Every migration of the embedded bus's SQLite file, in ascending version order.
pub fn bus_migrations() -> &'static [Migration] {
    &SQLITE_BUS
}

/// Every migration of `dialect`, in ascending version order. Both dialects have the same
/// versions and names.
pub fn migrations(dialect: Dialect) -> &'static [Migration] {
    match dialect {
        Dialect::Postgres => &POSTGRES,
        Dialect::Sqlite => &SQLITE,
    }
}

/// What a run did: the versions it applied now, and those it found applied before.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    pub applied: Vec<i64>,
    pub already: Vec<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_ascend_without_gaps_or_repeats() {
        for (set, known) in
            [("postgres", migrations(Dialect::Postgres)), ("sqlite", migrations(Dialect::Sqlite)), ("sqlite bus", bus_migrations())]
        {
            let versions: Vec<i64> = known.iter().map(|m| m.version).collect();
            let expected: Vec<i64> = (1..=versions.len() as i64).collect();
            assert_eq!(versions, expected, "{set}");
        }
    }

    #[test]
    fn both_dialects_have_the_same_versions_and_names() {
        let names = |d| migrations(d).iter().map(|m| (m.version, m.name)).collect::<Vec<_>>();
        assert_eq!(names(Dialect::Postgres), names(Dialect::Sqlite));
    }
}
