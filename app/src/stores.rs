//! The configured state database, whichever kind it is.

use std::path::{Path, PathBuf};

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

/// Where the embedded bus keeps its records: beside the state database file, named after it.
pub fn bus_file(state_file: &Path) -> PathBuf {
    let stem = state_file.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_else(|| "state".into());
    let name = match state_file.extension() {
        Some(extension) => format!("{stem}-bus.{}", extension.to_string_lossy()),
        None => format!("{stem}-bus"),
    };
    state_file.with_file_name(name)
}

#[cfg(test)]
mod bus_file_tests {
    use std::path::Path;

    use super::bus_file;

    #[test]
    fn the_bus_file_sits_beside_the_state_file_named_after_it() {
        assert_eq!(bus_file(Path::new("/var/lib/ksa/state.db")), Path::new("/var/lib/ksa/state-bus.db"));
        assert_eq!(bus_file(Path::new("data/shop.sqlite3")), Path::new("data/shop-bus.sqlite3"));
        assert_eq!(bus_file(Path::new("state")), Path::new("state-bus"));
    }
}
