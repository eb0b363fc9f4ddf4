use std::path::PathBuf;

/// Why the schema could not be brought up to date. Each message says what to do about it; the
/// underlying database error, when there is one, is the error's `source()`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    #[error(
        "`{url}` is not a database URL this program knows: use postgres://user@host:port/db for \
         PostgreSQL, or a file path or sqlite: URL for SQLite"
    )]
    UnsupportedUrl { url: String },

    #[error("`{url}` is not a valid SQLite URL; write it as sqlite:path/to/state.db or a plain path")]
    InvalidUrl {
        url: String,
        #[source]
        source: sqlx::Error,
    },

    #[error(
        "cannot create the folder `{}` for the SQLite database; check the path and its permissions",
        path.display()
    )]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot connect to {target}; check the URL, the credentials and that the server runs")]
    Connect {
        target: String,
        #[source]
        source: sqlx::Error,
    },

    #[error(
        "cannot take the PostgreSQL migration lock (pg_advisory_lock); check that the database \
         user may call it"
    )]
    Lock {
        #[source]
        source: sqlx::Error,
    },

    #[error(
        "cannot read or create the table `ksa_schema_migrations`; check that the database user \
         may create tables in this database"
    )]
    Ledger {
        #[source]
        source: sqlx::Error,
    },

    #[error(
        "migration {version:04} `{name}` failed and was rolled back; fix the cause and run the \
         migrations again"
    )]
    Apply {
        version: i64,
        name: &'static str,
        #[source]
        source: sqlx::Error,
    },

    #[error(
        "migration {version:04} `{name}` was changed after it was applied (checksum recorded \
         {recorded}, now {current}); restore the file as it was and put the change in a new \
         migration"
    )]
    Changed { version: i64, name: &'static str, recorded: String, current: String },

    #[error(
        "the database has migration {version:04} `{name}` applied, which this build does not \
         contain; run a build at least as new as the one that last migrated this database"
    )]
    UnknownVersion { version: i64, name: String },
}
