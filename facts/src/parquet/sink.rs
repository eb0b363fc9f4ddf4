//! `ParquetSink`: the [`FactSink`] of the embedded mode.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ksa_schemas::facts::{CycleFact, FactBatch, IntervalFact};

use super::ParquetConfig;
use super::compact::{CompactionReport, compact_table, compact_tiers};
use super::layout::{io_error, month_dir, month_of, parts, write_part};
use super::table::{FactTable, newest_per_key};
use crate::{FactError, FactSink};

/// Writes facts as Parquet files. Clones share one writer: writes (and compactions) take
/// turns, so part numbers never collide; run one sink per data dir.
#[derive(Clone, Debug)]
pub struct ParquetSink {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ParquetConfig,
    /// The next part number per month folder, known once the folder was listed.
    next_part: Mutex<HashMap<PathBuf, u64>>,
}

impl ParquetSink {
    /// Opens (creating) the store's folder.
    pub fn open(config: ParquetConfig) -> Result<ParquetSink, FactError> {
        if config.compact_min_files < 2 {
            return Err(FactError::Config("parquet compact_min_files must be at least 2".into()));
        }
        std::fs::create_dir_all(&config.dir).map_err(io_error(&config.dir))?;
        Ok(ParquetSink { inner: Arc::new(Inner { config, next_part: Mutex::default() }) })
    }

    pub fn config(&self) -> &ParquetConfig {
        &self.inner.config
    }

    pub fn dir(&self) -> &Path {
        &self.inner.config.dir
    }

    /// Merges every month of every project into one file per month that holds only the
    /// newest row per key, whatever the files' sizes.
    pub async fn compact_all(&self) -> Result<CompactionReport, FactError> {
        self.merge_months(None).await
    }

    /// As [`ParquetSink::compact_all`], for the months none of whose files was written in the
    /// last `quiet`: months that stopped changing become one file each, which readers take as
    /// final without deduplicating (`ParquetFacts::months`). `run` calls it now and then.
    pub async fn compact_quiet(&self, quiet: Duration) -> Result<CompactionReport, FactError> {
        self.merge_months(Some(quiet)).await
    }

    async fn merge_months(&self, quiet: Option<Duration>) -> Result<CompactionReport, FactError> {
        let sink = self.clone();
        run_blocking(move || {
            let mut parts = sink.lock();
            let mut report = compact_table::<IntervalFact>(sink.dir(), 2, u64::MAX, quiet, &mut parts)?;
            report.add(compact_table::<CycleFact>(sink.dir(), 2, u64::MAX, quiet, &mut parts)?);
            Ok(report)
        })
        .await
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<PathBuf, u64>> {
        // A panic while writing leaves at worst a temporary file; the numbers stay valid.
        self.inner.next_part.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes `batch`, one new file per table, project and month it touches, then compacts
    /// the months where `compact_min_files` files of about one size have gathered.
    fn write_blocking(&self, batch: FactBatch) -> Result<(), FactError> {
        let mut parts = self.lock();
        let intervals = write_table(self.dir(), batch.intervals, &mut parts)?;
        let cycles = write_table(self.dir(), batch.cycles, &mut parts)?;
        let min_files = self.inner.config.compact_min_files;
        for month in &intervals {
            compact_or_warn::<IntervalFact>(month, min_files, &mut parts);
        }
        for month in &cycles {
            compact_or_warn::<CycleFact>(month, min_files, &mut parts);
        }
        Ok(())
    }
}

/// A failed compaction loses nothing (the files it would merge are still there): it is
/// logged and tried again after a later write.
fn compact_or_warn<T: FactTable>(month: &Path, min_files: usize, parts: &mut HashMap<PathBuf, u64>) {
    if let Err(err) = compact_tiers::<T>(month, min_files, parts) {
        tracing::warn!(folder = %month.display(), error = %err, "compacting Parquet facts failed; the files stay as they are");
    }
}

/// The next part number of `dir`: one past the highest there.
pub(crate) fn next_part(dir: &Path, parts_known: &mut HashMap<PathBuf, u64>) -> Result<u64, FactError> {
    if let Some(next) = parts_known.get(dir) {
        return Ok(*next);
    }
    let next = parts(dir)?.last().map_or(0, |(n, _)| n + 1);
    parts_known.insert(dir.to_path_buf(), next);
    Ok(next)
}

/// Writes `rows`, one file per project and month, each with at most one row per key (the
/// newest), so a month of a single file needs no deduplication when read; returns the month
/// folders written.
fn write_table<T: FactTable>(root: &Path, rows: Vec<T>, parts_known: &mut HashMap<PathBuf, u64>) -> Result<Vec<PathBuf>, FactError> {
    let mut by_month: BTreeMap<(i64, String), Vec<T>> = BTreeMap::new();
    for row in rows {
        by_month.entry((row.project_id(), month_of(row.month_instant()))).or_default().push(row);
    }
    let mut written = Vec::with_capacity(by_month.len());
    for ((project_id, month), rows) in by_month {
        let dir = month_dir(root, T::NAME, project_id, &month);
        let number = next_part(&dir, parts_known)?;
        write_part(&dir, number, &newest_per_key(rows))?;
        parts_known.insert(dir.clone(), number + 1);
        written.push(dir);
    }
    Ok(written)
}

async fn run_blocking<R: Send + 'static>(work: impl FnOnce() -> Result<R, FactError> + Send + 'static) -> Result<R, FactError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| FactError::Config(format!("the Parquet writer task failed: {e}")))?
}

impl FactSink for ParquetSink {
    async fn write(&self, batch: FactBatch) -> Result<(), FactError> {
        if batch.is_empty() {
            return Ok(());
        }
        let sink = self.clone();
        let (intervals, cycles) = (batch.intervals.len(), batch.cycles.len());
        run_blocking(move || sink.write_blocking(batch)).await?;
        tracing::debug!(intervals, cycles, "wrote facts to Parquet");
        Ok(())
    }
}
