//! The two adapters every state suite runs its behaviours on (`ksa_testkit::on_both_databases!`).

use std::future::Future;

use ksa_state::{PostgresState, SqliteState};

/// Runs `behaviour` on a fresh SQLite store in a temporary folder.
pub async fn on_sqlite<F, Fut>(behaviour: F)
where
    F: FnOnce(SqliteState) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("state.db");
    let store = SqliteState::open(path.to_str().expect("UTF-8 path")).await.expect("opening SQLite");
    behaviour(store).await;
}

/// Runs `behaviour` on a database of its own on the `DATABASE_URL` server, and drops that
/// database afterwards, also when the behaviour panics.
pub async fn on_postgres<F, Fut>(test: &str, behaviour: F)
where
    F: FnOnce(PostgresState) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    ksa_testkit::with_postgres_database(test, |url| async move {
        let store = PostgresState::connect(&url).await.unwrap_or_else(|e| panic!("cannot open the fresh database: {e}"));
        let pool = store.pool().clone();
        behaviour(store).await;
        pool.close().await;
    })
    .await;
}
