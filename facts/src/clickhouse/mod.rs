//! The ClickHouse fact sink: `status_intervals` and `order_cycles` as ReplacingMergeTree tables
//! on a deterministic version, written with RowBinary over HTTP (the `clickhouse` crate with
//! validation off: 18.16 knows neither RowBinaryWithNamesAndTypes nor the schema queries that
//! validation uses).

mod config;
mod error;
mod read;
mod rows;
mod schema;
mod sink;

pub use config::ClickHouseConfig;
pub use read::FinalFacts;
pub use sink::ClickHouseSink;
