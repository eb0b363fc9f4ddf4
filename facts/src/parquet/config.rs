//! Where the Parquet facts live and when a month is worth compacting.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The Parquet fact store: `<dir>/<table>/project=<id>/month=<YYYY-MM>/part-<n>.parquet`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParquetConfig {
    /// The `facts` folder, by default `<data_dir>/facts`.
    pub dir: PathBuf,
    /// A month is compacted once it holds at least this many files.
    pub compact_min_files: usize,
}

impl Default for ParquetConfig {
    fn default() -> Self {
        ParquetConfig { dir: PathBuf::from("./data/facts"), compact_min_files: 8 }
    }
}

impl ParquetConfig {
    /// The store inside the embedded data dir.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        ParquetConfig { dir: data_dir.join("facts"), ..ParquetConfig::default() }
    }
}
