//! A fresh PostgreSQL database per test on the server in `DATABASE_URL`, dropped afterwards.
//!
//! Without `DATABASE_URL` a test says it was skipped and passes, except under `CI=true`, where
//! it fails: CI must test both dialects.

use sqlx::{AssertSqlSafe, Connection, PgConnection};

#[allow(unused_imports)] // not every test binary uses it
pub use ksa_testkit::postgres_server;
use ksa_testkit::{unique_database_name, url_with_database};

/// A database of its own on the test server, dropped when the test ends, even by a panic.
pub struct ScratchDatabase {
    server: String,
    name: String,
    pub url: String,
}

impl ScratchDatabase {
    pub fn create(server: &str, purpose: &str) -> Self {
        let name = unique_database_name(purpose);
        admin(server, &format!("CREATE DATABASE \"{name}\""));
        let url = url_with_database(server, &name);
        ScratchDatabase { server: server.to_owned(), name, url }
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        admin(&self.server, &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name));
    }
}

/// Runs one statement on the server's own database, on a runtime of its own (so it works
/// inside and outside async tests, and in `Drop`).
fn admin(server: &str, sql: &str) {
    let (server, sql) = (server.to_owned(), sql.to_owned());
    let done = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a Tokio runtime");
        runtime.block_on(async {
            let mut connection = PgConnection::connect(&server).await.map_err(|e| format!("cannot connect to DATABASE_URL: {e}"))?;
            let result = sqlx::raw_sql(AssertSqlSafe(sql.clone())).execute(&mut connection).await.map_err(|e| format!("{sql}: {e}"));
            let _ = connection.close().await;
            result.map(|_| ())
        })
    })
    .join();
    match done {
        Ok(Ok(())) => {}
        Ok(Err(message)) if std::thread::panicking() => eprintln!("{message}"),
        Ok(Err(message)) => panic!("{message}"),
        Err(_) => panic!("the PostgreSQL admin thread panicked"),
    }
}
