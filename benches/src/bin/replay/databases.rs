//! A fresh, migrated state database with its outbox bus and one project, for each run: a
//! SQLite file in a temporary folder, or a new PostgreSQL database that is dropped afterwards.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ksa_bus::OutboxConfig;
use ksa_bus::outbox::{PostgresOutbox, SqliteOutbox};
use ksa_ingest::secret::secret_digest;
use ksa_schemas::bus::{ENRICH_REQUESTS, ORDER_UPDATES, STATUS_EVENTS};
use ksa_state::{NewProject, PostgresState, SqliteState, StateStore};
// Database names here are made by this module (a prefix, the process id, a fixed label).
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use futures_util::{StreamExt, TryStreamExt};
use ksa_benches::traffic;
use ksa_schemas::keycrm::OrderLine;
use ksa_state::enrich::FetchedItems;

use crate::Fallible;
use crate::records::Replay;

/// The topics the app's outbox serves.
pub const TOPICS: [&str; 3] = [STATUS_EVENTS, ORDER_UPDATES, ENRICH_REQUESTS];

pub const PROJECT_SLUG: &str = "replay";
pub const PROJECT_SECRET: &str = "replay-webhook-secret";

/// A bus, a state store, the project the replay writes to, and what to remove afterwards.
pub struct Stores<B, S> {
    pub bus: B,
    pub state: S,
    pub project_id: i64,
    pub scratch: Scratch,
}

/// Where a run's database lives; [`Scratch::remove`] deletes it.
pub enum Scratch {
    Sqlite { dir: tempfile::TempDir },
    Postgres { server_url: String, name: String },
}

impl Scratch {
    /// What the database takes on disk now, in MB, e.g. `312 MB (state.db 250, state.db-wal 62)`.
    pub async fn size(&self) -> Option<String> {
        const MB: f64 = 1e6;
        match self {
            Scratch::Sqlite { dir } => {
                let mut files: Vec<(String, u64)> = std::fs::read_dir(dir.path())
                    .ok()?
                    .flatten()
                    .filter_map(|e| Some((e.file_name().to_string_lossy().into_owned(), e.metadata().ok()?.len())))
                    .collect();
                files.sort();
                let total: u64 = files.iter().map(|(_, len)| len).sum();
                let parts: Vec<String> = files.iter().map(|(name, len)| format!("{name} {:.0}", *len as f64 / MB)).collect();
                Some(format!("{:.0} MB ({})", total as f64 / MB, parts.join(", ")))
            }
            Scratch::Postgres { server_url, name } => {
                let mut conn = PgConnection::connect(server_url).await.ok()?;
                let size: i64 = sqlx::query_scalar("SELECT pg_database_size($1)").bind(name).fetch_one(&mut conn).await.ok()?;
                Some(format!("{:.0} MB", size as f64 / MB))
            }
        }
    }

    /// Runs `ANALYZE` on a PostgreSQL database every `every` until the returned task is aborted,
    /// as autovacuum would on a server that has it on. (Statistics also invalidate the plans
    /// the server cached for prepared statements while the tables were still empty.)
    pub fn analyze_every(&self, every: Duration) -> Option<tokio::task::JoinHandle<()>> {
        let Scratch::Postgres { server_url, name } = self else { return None };
        let url = with_database(server_url, name);
        Some(tokio::spawn(async move {
            let Ok(mut conn) = PgConnection::connect(&url).await else { return };
            loop {
                tokio::time::sleep(every).await;
                if let Err(error) = sqlx::query("ANALYZE").execute(&mut conn).await {
                    eprintln!("analyze: {error}");
                }
            }
        }))
    }

    /// Deletes the database, unless `KSA_REPLAY_KEEP` is set (then says where it is).
    pub async fn remove(self) -> Fallible<()> {
        if std::env::var_os("KSA_REPLAY_KEEP").is_some() {
            match self {
                Scratch::Sqlite { dir } => eprintln!("kept {}", dir.keep().display()),
                Scratch::Postgres { name, .. } => eprintln!("kept database {name}"),
            }
            return Ok(());
        }
        match self {
            Scratch::Sqlite { dir } => Ok(dir.close()?),
            Scratch::Postgres { server_url, name } => {
                let mut conn = PgConnection::connect(&server_url).await?;
                sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))).execute(&mut conn).await?;
                Ok(())
            }
        }
    }
}

/// A new SQLite database and bus file in a temporary folder under `parent` (the system's
/// temporary folder when `None`), opened and migrated as the app opens them.
pub async fn sqlite(parent: Option<&Path>, outbox: OutboxConfig) -> Fallible<Stores<SqliteOutbox, SqliteState>> {
    let builder = tempfile::Builder::new().prefix("ksa-replay-").tempdir_in(parent.map_or_else(std::env::temp_dir, Path::to_path_buf));
    let dir = builder?;
    let path: PathBuf = dir.path().join("state.db");
    let state = SqliteState::open(&path.to_string_lossy()).await?;
    // The bus in a file of its own beside the state database, as `run` keeps it.
    let (bus, _) = SqliteOutbox::open(&ksa_app::stores::bus_file(&path), None, &TOPICS, outbox).await?;
    let project_id = create_project(&state).await?;
    Ok(Stores { bus, state, project_id, scratch: Scratch::Sqlite { dir } })
}

/// The name of this run's database for `label`, on PostgreSQL and ClickHouse alike.
pub fn scratch_name(label: &str) -> String {
    format!("ksa_replay_{}_{label}", std::process::id())
}

/// A new, empty database on the PostgreSQL server at `server_url`: its URL, and what removes it.
pub async fn postgres_database(server_url: &str, label: &str) -> Fallible<(String, Scratch)> {
    let name = scratch_name(label);
    let mut conn = PgConnection::connect(server_url).await?;
    sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))).execute(&mut conn).await?;
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).execute(&mut conn).await?;
    Ok((with_database(server_url, &name), Scratch::Postgres { server_url: server_url.to_string(), name }))
}

/// A new database on the PostgreSQL server at `server_url`, migrated as the app does it.
pub async fn postgres(server_url: &str, label: &str, outbox: OutboxConfig) -> Fallible<Stores<PostgresOutbox, PostgresState>> {
    let (url, scratch) = postgres_database(server_url, label).await?;
    let opened = async {
        let state = PostgresState::connect(&url).await?;
        let bus = PostgresOutbox::start(state.pool().clone(), &TOPICS, outbox).await?;
        let project_id = create_project(&state).await?;
        Fallible::Ok((bus, state, project_id))
    }
    .await;
    match opened {
        Ok((bus, state, project_id)) => Ok(Stores { bus, state, project_id, scratch }),
        Err(error) => {
            let _ = scratch.remove().await;
            Err(error)
        }
    }
}

/// Before a replay: stores the project's settings from `settings`, and with `urgent_items` the
/// items of the generator's urgent orders (the line the example settings' rule matches), as
/// the enricher would have fetched them.
pub async fn prepare<B, S: StateStore>(
    stores: &Stores<B, S>,
    replay: &Replay,
    settings: Option<&Path>,
    urgent_items: bool,
    seed: u64,
) -> Fallible<()> {
    if let Some(path) = settings {
        let document = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let revision = stores.state.put_settings(stores.project_id, &document, "replay").await?;
        eprintln!("settings from {} stored as revision {revision}", path.display());
    }
    if urgent_items {
        let orders: std::collections::BTreeSet<i64> =
            replay.events.iter().map(|e| e.order_id).filter(|id| traffic::is_urgent(*id, seed)).collect();
        let started = std::time::Instant::now();
        let fetched_at = ksa_schemas::Timestamp::from_datetime(chrono::Utc::now());
        let state = &stores.state;
        let project_id = stores.project_id;
        futures_util::stream::iter(orders.iter().copied())
            .map(|order_id| async move {
                let line = OrderLine {
                    line_id: Some(order_id * 10),
                    sku: Some(URGENT_SKU.to_owned()),
                    name: Some(URGENT_SKU.to_owned()),
                    quantity: 1.0,
                    price_sold: Some(0.0),
                    offer_id: None,
                    offer_sku: None,
                    product_id: None,
                };
                state.store_items(&FetchedItems { project_id, order_id, lines: vec![line], marketing: None, fetched_at }).await
            })
            .buffer_unordered(8)
            .try_collect::<Vec<()>>()
            .await?;
        eprintln!("items of {} urgent orders stored in {:.1} s", orders.len(), started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// The SKU of the example settings' urgency rule.
const URGENT_SKU: &str = "Термінове виготовлення";

/// The replay's project (slug [`PROJECT_SLUG`], secret [`PROJECT_SECRET`]); returns its id.
pub async fn create_project<S: StateStore>(state: &S) -> Fallible<i64> {
    let project = state
        .create_project(NewProject {
            slug: PROJECT_SLUG.into(),
            name: "Replay benchmark".into(),
            timezone: "Europe/Kyiv".into(),
            webhook_secret_hash: secret_digest(PROJECT_SECRET),
            allowed_cidrs: Vec::new(),
        })
        .await?;
    Ok(project.id)
}

/// `url` with its database replaced by `name` (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_of_a_url_is_replaced_and_its_options_kept() {
        assert_eq!(with_database("postgres://u@127.0.0.1:5432/test?sslmode=disable", "x"), "postgres://u@127.0.0.1:5432/x?sslmode=disable");
        assert_eq!(with_database("postgres://u:p@host:1", "x"), "postgres://u:p@host:1/x");
        assert_eq!(with_database("postgresql://h/", "x"), "postgresql://h/x");
    }
}
