//! The configured state database, whichever kind it is.

use anyhow::Context;
use ksa_state::postgres::PostgresState;
use ksa_state::sqlite::SqliteState;

use crate::config::Config;

pub enum AnyState {
    Sqlite(SqliteState),
    Postgres(PostgresState),
}

/// Opens (creating and migrating if needed) the state database of `config`.
pub async fn open_state(config: &Config) -> anyhow::Result<AnyState> {
    let url = config.database_url();
    let shown = crate::redact::redact(&url);
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let state = PostgresState::connect(&url).await.with_context(|| format!("opening {shown}"))?;
        Ok(AnyState::Postgres(state))
    } else {
        let state = SqliteState::open(&url).await.with_context(|| format!("opening {shown}"))?;
        Ok(AnyState::Sqlite(state))
    }
}

/// Runs `$body` with `$state` bound to the concrete store.
#[macro_export]
macro_rules! with_state {
    ($any:expr, $state:ident => $body:expr) => {
        match $any {
            $crate::stores::AnyState::Sqlite($state) => $body,
            $crate::stores::AnyState::Postgres($state) => $body,
        }
    };
}
