//! Migrating a database named by URL, as the binary does at start and in `migrate`.

use std::path::Path;
use std::str::FromStr;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

use crate::{MigrateError, MigrationReport, migrate_postgres, migrate_sqlite};

/// The database a URL names.
#[derive(Debug)]
enum Target {
    Postgres,
    Sqlite(Box<SqliteConnectOptions>),
}

/// Connects to `postgres://…` (or `postgresql://…`), or to a SQLite database given as a path or
/// a `sqlite:` URL (creating the file and its parent folders, in WAL mode with foreign keys
/// enforced), applies the pending migrations and closes the connection.
///
/// Passwords in the URL never appear in error messages.
pub async fn migrate_url(url: &str) -> Result<MigrationReport, MigrateError> {
    match target(url)? {
        Target::Postgres => {
            let pool = PgPoolOptions::new()
                .max_connections(1)
                // A server that refuses connections is reported in seconds, not half a minute.
                .acquire_timeout(std::time::Duration::from_secs(10))
                .connect(url)
                .await
                .map_err(|source| MigrateError::Connect { target: redact(url), source })?;
            let report = migrate_postgres(&pool).await;
            pool.close().await;
            report
        }
        Target::Sqlite(options) => {
            let file = options.get_filename().to_owned();
            create_parent_dir(&file)?;
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(*options)
                .await
                .map_err(|source| MigrateError::Connect { target: format!("the SQLite database `{}`", file.display()), source })?;
            let report = migrate_sqlite(&pool).await;
            pool.close().await;
            report
        }
    }
}

fn target(url: &str) -> Result<Target, MigrateError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Target::Postgres);
    }
    let options = if url.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(url).map_err(|source| MigrateError::InvalidUrl { url: redact(url), source })?
    } else if url.is_empty() || url.contains("://") {
        return Err(MigrateError::UnsupportedUrl { url: redact(url) });
    } else {
        SqliteConnectOptions::new().filename(url)
    };
    Ok(Target::Sqlite(Box::new(options.create_if_missing(true).journal_mode(SqliteJournalMode::Wal).foreign_keys(true))))
}

/// Creates the folder a SQLite file lives in. In-memory databases have no folder.
fn create_parent_dir(file: &Path) -> Result<(), MigrateError> {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|source| MigrateError::CreateDir { path: dir.to_owned(), source })
        }
        _ => Ok(()),
    }
}

/// `url` with the password replaced by `***`, both as `user:password@` and as a `password=`
/// query parameter.
fn redact(url: &str) -> String {
    let mut redacted = url.to_owned();
    if let Some(scheme_end) = url.find("://") {
        let start = scheme_end + 3;
        let end = url[start..].find(['/', '?', '#']).map_or(url.len(), |i| start + i);
        if let Some(at) = url[start..end].rfind('@')
            && let Some(colon) = url[start..start + at].find(':')
        {
            redacted = format!("{}***{}", &url[..=start + colon], &url[start + at..]);
        }
    }
    if let Some(query_start) = redacted.find('?') {
        let (head, query) = redacted.split_at(query_start + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.ends_with("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        redacted = format!("{head}{}", query.join("&"));
    }
    redacted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_urls_go_to_postgres() {
        for url in ["postgres://u@h/db", "postgresql://u:p@h:5432/db?sslmode=disable"] {
            assert!(matches!(target(url), Ok(Target::Postgres)), "{url}");
        }
    }

    #[test]
    fn paths_and_sqlite_urls_go_to_sqlite() {
        for (url, file) in [
            ("data/state.db", "data/state.db"),
            ("/var/lib/ksa/state.db", "/var/lib/ksa/state.db"),
            ("sqlite:data/state.db", "data/state.db"),
            ("sqlite://data/state.db", "data/state.db"),
        ] {
            match target(url) {
                Ok(Target::Sqlite(options)) => {
                    assert_eq!(options.get_filename(), Path::new(file), "{url}")
                }
                other => panic!("{url}: expected SQLite, got {other:?}"),
            }
        }
    }

    #[test]
    fn other_schemes_are_refused_without_their_password() {
        let error = target("mysql://root:hunter2@db/app").expect_err("mysql is not supported");
        let message = error.to_string();
        assert!(matches!(error, MigrateError::UnsupportedUrl { .. }));
        assert!(message.contains("mysql://root:***@db/app"), "{message}");
        assert!(message.contains("postgres://"), "{message}");
    }

    #[test]
    fn redaction_hides_passwords_and_nothing_else() {
        assert_eq!(redact("postgres://ksa:s3cr@t@db:5432/ksa"), "postgres://ksa:***@db:5432/ksa");
        assert_eq!(
            redact("postgres://db/ksa?user=ksa&password=s3cret&sslmode=require"),
            "postgres://db/ksa?user=ksa&password=***&sslmode=require"
        );
        assert_eq!(redact("postgres://postgres@127.0.0.1:5432/test"), "postgres://postgres@127.0.0.1:5432/test");
        assert_eq!(redact("data/state.db"), "data/state.db");
    }
}
