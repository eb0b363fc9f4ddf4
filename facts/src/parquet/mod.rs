//! The Parquet fact store of the embedded mode: `status_intervals` and `order_cycles` as
//! Parquet files in the data dir, one folder per project and month, written by one writer
//! (arrow's `ArrowWriter`) with an explicit schema, so DataFusion reads every file alike.
//!
//! ```text
//! <data_dir>/facts/status_intervals/project=<id>/month=<YYYY-MM>/part-<n>.parquet
//! <data_dir>/facts/order_cycles/project=<id>/month=<YYYY-MM>/part-<n>.parquet
//! ```
//!
//! Each write adds files and changes none; the same rule as ClickHouse's ReplacingMergeTree
//! makes them one table: per natural key, the row with the highest version counts. Compaction
//! merges a month's files into one and drops the rows that rule hides; readers apply the rule
//! whether or not compaction has run.

mod compact;
mod config;
mod layout;
mod read;
mod sink;
mod table;

pub use compact::CompactionReport;
pub use config::ParquetConfig;
pub use read::ParquetFacts;
pub use sink::ParquetSink;
pub use table::{cycle_schema, interval_schema};
