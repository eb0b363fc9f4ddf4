//! Facts: the analytics rows of every order (status intervals and cycles), written by the
//! processor and read by the query API.
//!
//! Writes are idempotent and versioned (docs/architecture.md, invariant 4): the processor writes an
//! order's facts before it commits state and offsets, so a crash replays them, and a sink keeps per
//! natural key only the row with the highest [`FactVersion`](ksa_schemas::facts::FactVersion).
//! Writing the same batch twice, or an older version after a newer one, changes nothing that a
//! reader sees.

mod boxed;
pub mod clickhouse;
#[cfg(feature = "parquet")]
pub mod parquet;

use std::future::Future;

use ksa_schemas::facts::FactBatch;

pub use boxed::BoxedFactSink;
pub use clickhouse::{ClickHouseConfig, ClickHouseSink};
#[cfg(feature = "parquet")]
pub use parquet::{ParquetConfig, ParquetSink};

/// Where facts go: ClickHouse in the distributed mode, Parquet files in the embedded one.
pub trait FactSink: Clone + Send + Sync + 'static {
    /// Writes every row of `batch` and resolves once the sink has stored them all. On an error
    /// some rows may be stored and others not; the caller writes the whole batch again (rows
    /// are idempotent), and must not commit the offsets that produced it before that succeeds.
    fn write(&self, batch: FactBatch) -> impl Future<Output = Result<(), FactError>> + Send;
}

/// Why facts could not be written or read. [`FactError::is_retryable`] tells a processor
/// whether to back off and try again or to stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FactError {
    #[error("ClickHouse at {url} cannot be reached; check that it runs (scripts/services up clickhouse) and the URL")]
    Unavailable {
        url: String,
        #[source]
        source: ::clickhouse::error::Error,
    },

    #[error("ClickHouse at {url} refused `{statement}`; check the server's log and the facts schema")]
    Rejected {
        url: String,
        statement: String,
        #[source]
        source: ::clickhouse::error::Error,
    },

    #[error("the ClickHouse facts schema cannot be brought up to date")]
    Schema(#[from] ksa_migrations::MigrateError),

    #[error("a fact row cannot be stored: {0}")]
    InvalidRow(String),

    #[error("facts configuration: {0}")]
    Config(String),

    #[error("facts file {path}: {source}; check the disk's free space and the folder's permissions")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("facts file {path} cannot be written or read as Parquet: {message}")]
    File { path: std::path::PathBuf, message: String },
}

impl FactError {
    /// Whether the same write may succeed later unchanged (the server was down or busy), as
    /// opposed to a schema or data problem that needs a person. A file system error counts as
    /// retryable: a full disk or a lost mount can come back.
    pub fn is_retryable(&self) -> bool {
        matches!(self, FactError::Unavailable { .. } | FactError::Io { .. })
    }
}
