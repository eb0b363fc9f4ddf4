//! Reading the Parquet facts back as queries see them: every file of a project, the newest
//! row per key. For tests and checks that compare runs; analytics queries go through
//! DataFusion in the query API.

use std::path::{Path, PathBuf};

use ksa_schemas::facts::{CycleFact, IntervalFact};

use super::layout::{month_dirs, parts, read_part};
use super::table::{FactTable, newest_per_key};
use crate::FactError;

/// The facts under a store's folder (`ParquetConfig::dir`).
#[derive(Clone, Debug)]
pub struct ParquetFacts {
    dir: PathBuf,
}

impl ParquetFacts {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ParquetFacts { dir: dir.into() }
    }

    /// The project's intervals, newest per key, by order, entry time and status.
    pub fn final_intervals(&self, project_id: i64) -> Result<Vec<IntervalFact>, FactError> {
        Ok(newest_per_key(self.stored::<IntervalFact>(project_id)?))
    }

    /// The project's cycles, newest per key, by order and cycle rule.
    pub fn final_cycles(&self, project_id: i64) -> Result<Vec<CycleFact>, FactError> {
        Ok(newest_per_key(self.stored::<CycleFact>(project_id)?))
    }

    /// Rows stored for the project in `table` before deduplication.
    pub fn stored_rows(&self, table: &str, project_id: i64) -> Result<u64, FactError> {
        let rows = match table {
            "status_intervals" => self.stored::<IntervalFact>(project_id)?.len(),
            "order_cycles" => self.stored::<CycleFact>(project_id)?.len(),
            other => return Err(FactError::Config(format!("`{other}` is not a fact table"))),
        };
        Ok(rows as u64)
    }

    /// The project's files in `table`, by month and part number.
    pub fn files(&self, table: &str, project_id: i64) -> Result<Vec<PathBuf>, FactError> {
        Ok(self.months(table, project_id)?.into_iter().flatten().collect())
    }

    /// The project's files in `table`, one list per month, by part number. Every file holds at
    /// most one row per key, so the rows of a month with a single file are final as they are
    /// (for intervals, whose month follows from the key; a cycle's row can move to another
    /// month).
    pub fn months(&self, table: &str, project_id: i64) -> Result<Vec<Vec<PathBuf>>, FactError> {
        let mut months = Vec::new();
        for month in month_dirs(&self.dir, table, project_id)? {
            let files: Vec<PathBuf> = parts(&month)?.into_iter().map(|(_, path)| path).collect();
            if !files.is_empty() {
                months.push(files);
            }
        }
        Ok(months)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every stored row of the project. A file that a compaction removed after the listing
    /// (its rows are in the merged file by then) means listing again.
    fn stored<T: FactTable>(&self, project_id: i64) -> Result<Vec<T>, FactError> {
        let mut attempts = 0;
        'listing: loop {
            attempts += 1;
            let mut rows = Vec::new();
            for file in self.files(T::NAME, project_id)? {
                match read_part::<T>(&file) {
                    Ok(read) => rows.extend(read),
                    Err(FactError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound && attempts < 5 => continue 'listing,
                    Err(err) => return Err(err),
                }
            }
            return Ok(rows);
        }
    }
}
