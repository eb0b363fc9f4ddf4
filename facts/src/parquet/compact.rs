//! Compaction: a month's small files become one file with only the newest row per key.
//!
//! The merged file is written (and synced) before the files it replaces are removed, so a
//! crash in between leaves rows twice, never missing; readers keep the newest per key anyway.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::layout::{parts, read_part, remove_part, sync_dir, write_part};
use super::sink::next_part;
use super::table::{FactTable, newest_per_key};
use crate::FactError;

/// Files at least this large are left alone by the compaction that follows writes: merging
/// them again and again would rewrite a busy month on every few batches.
pub(crate) const SMALL_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// What a compaction did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Month folders whose files were merged.
    pub months: u64,
    /// Files replaced by merged ones.
    pub files_merged: u64,
    pub rows_read: u64,
    pub rows_kept: u64,
}

impl CompactionReport {
    pub(crate) fn add(&mut self, other: CompactionReport) {
        self.months += other.months;
        self.files_merged += other.files_merged;
        self.rows_read += other.rows_read;
        self.rows_kept += other.rows_kept;
    }
}

/// Merges the files of `dir` smaller than `max_file_bytes` into one when there are at least
/// `min_files` of them.
pub(crate) fn compact_month<T: FactTable>(
    dir: &Path,
    min_files: usize,
    max_file_bytes: u64,
    parts_known: &mut HashMap<PathBuf, u64>,
) -> Result<CompactionReport, FactError> {
    let mut small = Vec::new();
    for (_, path) in parts(dir)? {
        let size = std::fs::metadata(&path).map_err(super::layout::io_error(&path))?.len();
        if size < max_file_bytes {
            small.push(path);
        }
    }
    if small.len() < min_files.max(2) {
        return Ok(CompactionReport::default());
    }
    let mut rows: Vec<T> = Vec::new();
    for path in &small {
        rows.extend(read_part::<T>(path)?);
    }
    let rows_read = rows.len() as u64;
    let rows = newest_per_key(rows);
    let number = next_part(dir, parts_known)?;
    write_part(dir, number, &rows)?;
    parts_known.insert(dir.to_path_buf(), number + 1);
    for path in &small {
        remove_part(path)?;
    }
    sync_dir(dir)?;
    tracing::debug!(folder = %dir.display(), files = small.len(), rows_read, rows_kept = rows.len(), "compacted Parquet facts");
    Ok(CompactionReport { months: 1, files_merged: small.len() as u64, rows_read, rows_kept: rows.len() as u64 })
}

/// Compacts every month of every project of table `T`; with `quiet`, only the months whose
/// newest file is at least that old.
pub(crate) fn compact_table<T: FactTable>(
    root: &Path,
    min_files: usize,
    max_file_bytes: u64,
    quiet: Option<Duration>,
    parts_known: &mut HashMap<PathBuf, u64>,
) -> Result<CompactionReport, FactError> {
    let mut report = CompactionReport::default();
    for project_id in super::layout::project_ids(root, T::NAME)? {
        for month in super::layout::month_dirs(root, T::NAME, project_id)? {
            if let Some(quiet) = quiet
                && !quiet_for(&month, quiet)?
            {
                continue;
            }
            report.add(compact_month::<T>(&month, min_files, max_file_bytes, parts_known)?);
        }
    }
    Ok(report)
}

/// True when no file of `dir` was written in the last `quiet`.
fn quiet_for(dir: &Path, quiet: Duration) -> Result<bool, FactError> {
    for (_, path) in parts(dir)? {
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).map_err(super::layout::io_error(&path))?;
        if modified.elapsed().unwrap_or_default() < quiet {
            return Ok(false);
        }
    }
    Ok(true)
}
