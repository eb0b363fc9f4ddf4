//! `[facts]`: where the processor writes the analytics rows before it commits.

use std::path::{Path, PathBuf};

use ksa_facts::{ClickHouseConfig, ParquetConfig};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FactsKind {
    /// No facts: state only; the analytics queries answer 503.
    None,
    /// Parquet files in `<data_dir>/facts` (embedded mode; the default).
    #[default]
    Parquet,
    /// ClickHouse (`[facts.clickhouse]`, distributed mode).
    Clickhouse,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FactsConfig {
    pub kind: FactsKind,
    pub parquet: ParquetSection,
    pub clickhouse: ClickHouseConfig,
}

/// `[facts.parquet]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParquetSection {
    /// Unset: `facts` in the data dir.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// A month folder is compacted once it holds this many files.
    pub compact_min_files: usize,
}

impl Default for ParquetSection {
    fn default() -> Self {
        ParquetSection { dir: None, compact_min_files: ParquetConfig::default().compact_min_files }
    }
}

impl ParquetSection {
    pub fn store(&self, data_dir: &Path) -> ParquetConfig {
        ParquetConfig { dir: self.dir.clone().unwrap_or_else(|| data_dir.join("facts")), compact_min_files: self.compact_min_files }
    }
}
