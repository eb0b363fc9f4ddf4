//! `ClickHouseSink`: the [`FactSink`] over ClickHouse.

use clickhouse::{Client, Compression, RowOwned, RowWrite};
use ksa_migrations::MigrationReport;
use ksa_schemas::facts::FactBatch;

use super::ClickHouseConfig;
use super::error::classify;
use super::rows::{CycleRow, IntervalRow};
use crate::{FactError, FactSink};

/// Writes facts to ClickHouse. Cheap to clone: clones share the HTTP connection pool.
#[derive(Clone)]
pub struct ClickHouseSink {
    client: Client,
    config: ClickHouseConfig,
}

impl std::fmt::Debug for ClickHouseSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseSink").field("url", &self.config.display_url()).field("database", &self.config.database).finish()
    }
}

impl ClickHouseSink {
    /// Connects, creates the database when missing and applies the fact schema. Fails with
    /// [`FactError::Unavailable`] while the server cannot be reached.
    pub async fn connect(config: ClickHouseConfig) -> Result<(ClickHouseSink, MigrationReport), FactError> {
        config.validate().map_err(FactError::Config)?;
        let server = base_client(&config);
        let client = server.clone().with_database(&config.database);
        let report = super::schema::apply(&server, &client, &config).await?;
        Ok((ClickHouseSink { client, config }, report))
    }

    pub fn config(&self) -> &ClickHouseConfig {
        &self.config
    }

    /// The connection to the fact database, for readers (the query API's analytics).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Inserts `rows` into `table` in INSERTs of at most `insert_chunk_rows` rows each.
    async fn insert_chunks<T, F>(&self, table: &str, facts: &[F]) -> Result<(), FactError>
    where
        T: RowOwned + RowWrite + Send + for<'a> From<&'a F>,
        F: Sync,
    {
        let statement = format!("INSERT INTO {table}");
        for chunk in facts.chunks(self.config.insert_chunk_rows) {
            let fail = |e| classify(self.config.display_url(), &statement, e);
            let mut insert = self.client.insert::<T>(table).await.map_err(fail)?;
            for fact in chunk {
                insert.write(&T::from(fact)).await.map_err(fail)?;
            }
            insert.end().await.map_err(fail)?;
        }
        Ok(())
    }
}

impl FactSink for ClickHouseSink {
    async fn write(&self, batch: FactBatch) -> Result<(), FactError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.insert_chunks::<IntervalRow, _>("status_intervals", &batch.intervals).await?;
        self.insert_chunks::<CycleRow, _>("order_cycles", &batch.cycles).await?;
        tracing::debug!(intervals = batch.intervals.len(), cycles = batch.cycles.len(), "wrote facts to ClickHouse");
        Ok(())
    }
}

/// A client for the server, not yet bound to a database. Validation off: it would send
/// RowBinaryWithNamesAndTypes and ask `system` tables for the schema, which 18.16 lacks.
fn base_client(config: &ClickHouseConfig) -> Client {
    let mut client = Client::default().with_url(&config.url).with_compression(Compression::None).with_validation(false);
    if let Some(user) = &config.user {
        client = client.with_user(user);
    }
    if let Some(password) = &config.password {
        client = client.with_password(password);
    }
    client
}
