//! The record of applied migrations, `ksa_schema_migrations`, and the pure decisions taken on it:
//! which migrations are already applied, which are pending, and which were tampered with.

use crate::{MigrateError, Migration};

/// A row of the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recorded {
    pub version: i64,
    pub name: String,
    pub checksum: String,
}

impl From<(i64, String, String)> for Recorded {
    fn from((version, name, checksum): (i64, String, String)) -> Self {
        Recorded { version, name, checksum }
    }
}

/// What a run has to do.
#[derive(Debug)]
pub(crate) struct Plan<'a> {
    pub already: Vec<i64>,
    pub pending: Vec<&'a Migration>,
}

/// Compares the ledger with the migrations this build carries. Refuses to go on when an applied
/// migration is unknown to this build or was changed since, before anything new is applied.
pub(crate) fn plan<'a>(known: &'a [Migration], recorded: &[Recorded]) -> Result<Plan<'a>, MigrateError> {
    let mut already = Vec::new();
    for row in recorded {
        let Some(migration) = known.iter().find(|m| m.version == row.version) else {
            return Err(MigrateError::UnknownVersion { version: row.version, name: row.name.clone() });
        };
        verify(migration, &row.checksum)?;
        already.push(row.version);
    }
    already.sort_unstable();
    let pending = known.iter().filter(|m| already.binary_search(&m.version).is_err()).collect();
    Ok(Plan { already, pending })
}

/// Checksums that applied migrations had before only their comments were reworded, by version:
/// a database migrated with the old text is not "changed". Nothing else may be added here: a
/// change to a migration's SQL is a new migration.
///
/// 1 and 5 (both dialects): the comments cited a brief that is not in the repository; they now
/// cite docs/domain.md.
const REWORDED: &[(i64, &str)] =
    &[(1, "fnv1a64:75e135b0c65797f4"), (1, "fnv1a64:61f2d33a7979e270"), (5, "fnv1a64:4e9ded2ffb3884f9"), (5, "fnv1a64:a347234c199c06d8")];

/// Checks that `migration` still has the text it had when it was applied (or that text with
/// only its comments reworded, [`REWORDED`]).
pub(crate) fn verify(migration: &Migration, recorded_checksum: &str) -> Result<(), MigrateError> {
    let current = migration.checksum();
    if current == recorded_checksum || REWORDED.contains(&(migration.version, recorded_checksum)) {
        Ok(())
    } else {
        Err(MigrateError::Changed { version: migration.version, name: migration.name, recorded: recorded_checksum.to_owned(), current })
    }
}

/// A 64-bit FNV-1a hash of the SQL text without carriage returns, written `fnv1a64:<16 hex>`.
/// It detects edits to a migration, which is all it is for (not an adversary), and needs no
/// dependency; the prefix leaves room to change the algorithm later.
pub(crate) fn checksum(sql: &str) -> String {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = sql.bytes().filter(|&b| b != b'\r').fold(OFFSET_BASIS, |hash, b| (hash ^ u64::from(b)).wrapping_mul(PRIME));
    format!("fnv1a64:{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: Migration = Migration { version: 1, name: "core", sql: "CREATE TABLE a (x INTEGER);" };
    const SECOND: Migration = Migration { version: 2, name: "more", sql: "CREATE TABLE b (y INTEGER);" };

    fn recorded(migration: &Migration) -> Recorded {
        Recorded { version: migration.version, name: migration.name.to_owned(), checksum: migration.checksum() }
    }

    #[test]
    fn a_migration_applied_before_its_comments_were_reworded_still_verifies() {
        let core = crate::migrations(crate::Dialect::Sqlite).iter().find(|m| m.version == 1).expect("migration 1");
        assert!(verify(core, "fnv1a64:61f2d33a7979e270").is_ok(), "the text applied before the rewording");
        assert!(verify(core, &core.checksum()).is_ok());
        assert!(matches!(verify(core, "fnv1a64:0000000000000000"), Err(MigrateError::Changed { .. })), "any other text is a change");
        let other = Migration { version: 2, ..*core };
        assert!(verify(&other, "fnv1a64:61f2d33a7979e270").is_err(), "an old checksum counts for its own version only");
    }

    #[test]
    fn checksum_matches_the_published_fnv1a_vectors() {
        assert_eq!(checksum(""), "fnv1a64:cbf29ce484222325");
        assert_eq!(checksum("a"), "fnv1a64:af63dc4c8601ec8c");
        assert_eq!(checksum("foobar"), "fnv1a64:85944171f73967e8");
    }

    #[test]
    fn checksum_ignores_line_endings_but_not_content() {
        assert_eq!(checksum("a;\r\nb;\r\n"), checksum("a;\nb;\n"));
        assert_ne!(checksum("a;\nb;\n"), checksum("a;\nc;\n"));
    }

    #[test]
    fn empty_ledger_leaves_everything_pending() {
        let known = [FIRST, SECOND];
        let plan = plan(&known, &[]).expect("plan");
        assert!(plan.already.is_empty());
        assert_eq!(plan.pending, vec![&FIRST, &SECOND]);
    }

    #[test]
    fn applied_migrations_are_not_pending() {
        let known = [FIRST, SECOND];
        let plan = plan(&known, &[recorded(&FIRST)]).expect("plan");
        assert_eq!(plan.already, vec![1]);
        assert_eq!(plan.pending, vec![&SECOND]);
    }

    #[test]
    fn changed_migration_is_refused_with_its_version_and_name() {
        let known = [FIRST, SECOND];
        let mut row = recorded(&FIRST);
        row.checksum = "fnv1a64:0000000000000000".into();
        let error = plan(&known, &[row]).expect_err("a changed migration must be refused");
        assert!(matches!(error, MigrateError::Changed { version: 1, .. }));
        assert!(error.to_string().starts_with("migration 0001 `core` was changed after it was applied"), "{error}");
    }

    #[test]
    fn migration_unknown_to_this_build_is_refused() {
        let known = [FIRST];
        let error = plan(&known, &[recorded(&FIRST), recorded(&SECOND)]).expect_err("an unknown applied migration must be refused");
        assert!(matches!(error, MigrateError::UnknownVersion { version: 2, .. }));
        assert!(error.to_string().contains("0002 `more`"), "{error}");
    }
}
