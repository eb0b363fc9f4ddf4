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

/// Files at least this large are left alone by the compaction that follows writes (they are
/// merged only when the month has gone quiet, or by `compact`).
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
    let small: Vec<PathBuf> = sized_parts(dir)?.into_iter().filter(|(_, size)| *size < max_file_bytes).map(|(path, _)| path).collect();
    if small.len() < min_files.max(2) {
        return Ok(CompactionReport::default());
    }
    merge::<T>(dir, &small, parts_known)
}

/// The smallest files are one tier; each tier above holds files up to `min_files` times as
/// large as the one below ([`tier_to_merge`]).
const FIRST_TIER_BYTES: u64 = 64 * 1024;

/// The compaction that follows writes: while some tier of the month's files smaller than
/// [`SMALL_FILE_BYTES`] holds `min_files` files, merges that tier's files (the lowest such tier
/// first). Files are merged only with files of about their size, so a row is rewritten about
/// once per tier on its way to a large file, not at every few batches as when the month's
/// growing merged file was merged again with each new handful of small ones (under a burst
/// that cost more than writing the facts).
pub(crate) fn compact_tiers<T: FactTable>(
    dir: &Path,
    min_files: usize,
    parts_known: &mut HashMap<PathBuf, u64>,
) -> Result<CompactionReport, FactError> {
    let mut report = CompactionReport::default();
    loop {
        let sized: Vec<(PathBuf, u64)> = sized_parts(dir)?.into_iter().filter(|(_, size)| *size < SMALL_FILE_BYTES).collect();
        let sizes: Vec<u64> = sized.iter().map(|(_, size)| *size).collect();
        let Some(chosen) = tier_to_merge(&sizes, min_files) else { return Ok(report) };
        let files: Vec<PathBuf> = chosen.into_iter().map(|i| sized[i].0.clone()).collect();
        report.add(merge::<T>(dir, &files, parts_known)?);
    }
}

/// Of files with these sizes, the indexes of the lowest tier holding at least `min_files`
/// (at least 2) files; none when no tier does. Tier 0 is below [`FIRST_TIER_BYTES`], tier n
/// below `FIRST_TIER_BYTES × min_files^n`.
pub(crate) fn tier_to_merge(sizes: &[u64], min_files: usize) -> Option<Vec<usize>> {
    let min_files = min_files.max(2);
    let ratio = min_files as u64;
    let tier_of = |size: u64| {
        let (mut tier, mut bound) = (0u32, FIRST_TIER_BYTES);
        while size >= bound {
            tier += 1;
            bound = bound.saturating_mul(ratio);
        }
        tier
    };
    let mut by_tier: std::collections::BTreeMap<u32, Vec<usize>> = std::collections::BTreeMap::new();
    for (index, size) in sizes.iter().enumerate() {
        by_tier.entry(tier_of(*size)).or_default().push(index);
    }
    by_tier.into_values().find(|files| files.len() >= min_files)
}

/// The month's part files with their sizes, in part order.
fn sized_parts(dir: &Path) -> Result<Vec<(PathBuf, u64)>, FactError> {
    parts(dir)?
        .into_iter()
        .map(|(_, path)| {
            let size = std::fs::metadata(&path).map_err(super::layout::io_error(&path))?.len();
            Ok((path, size))
        })
        .collect()
}

/// Replaces `files` of `dir` by one file with the newest row per key of them all.
fn merge<T: FactTable>(dir: &Path, files: &[PathBuf], parts_known: &mut HashMap<PathBuf, u64>) -> Result<CompactionReport, FactError> {
    let mut rows: Vec<T> = Vec::new();
    for path in files {
        rows.extend(read_part::<T>(path)?);
    }
    let rows_read = rows.len() as u64;
    let rows = newest_per_key(rows);
    let number = next_part(dir, parts_known)?;
    write_part(dir, number, &rows)?;
    parts_known.insert(dir.to_path_buf(), number + 1);
    for path in files {
        remove_part(path)?;
    }
    sync_dir(dir)?;
    tracing::debug!(folder = %dir.display(), files = files.len(), rows_read, rows_kept = rows.len(), "compacted Parquet facts");
    Ok(CompactionReport { months: 1, files_merged: files.len() as u64, rows_read, rows_kept: rows.len() as u64 })
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

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;

    #[test]
    fn small_files_are_merged_once_a_tier_holds_enough_of_them() {
        assert_eq!(tier_to_merge(&[KIB, 2 * KIB], 3), None);
        assert_eq!(tier_to_merge(&[KIB, 2 * KIB, 3 * KIB], 3), Some(vec![0, 1, 2]));
        // The merged file of an earlier compaction is a tier up: it waits for others of its size.
        assert_eq!(tier_to_merge(&[200 * KIB, KIB, 2 * KIB], 3), None);
        assert_eq!(tier_to_merge(&[200 * KIB, KIB, 2 * KIB, 3 * KIB], 3), Some(vec![1, 2, 3]));
        assert_eq!(tier_to_merge(&[100 * KIB, 150 * KIB, 190 * KIB, KIB], 3), Some(vec![0, 1, 2]));
    }

    #[test]
    fn the_lowest_full_tier_goes_first_and_a_limit_below_two_means_two() {
        let sizes = [100 * KIB, 100 * KIB, KIB, KIB];
        assert_eq!(tier_to_merge(&sizes, 2), Some(vec![2, 3]));
        assert_eq!(tier_to_merge(&[KIB, KIB], 1), Some(vec![0, 1]));
        assert_eq!(tier_to_merge(&[KIB], 1), None);
    }

    #[test]
    fn each_tier_spans_the_compaction_ratio() {
        // With 8 files per merge: tier 0 below 64 KiB, tier 1 below 512 KiB, tier 2 below 4 MiB.
        let sizes = [63 * KIB, 64 * KIB, 511 * KIB, 512 * KIB, 4095 * KIB];
        for (i, _) in sizes.iter().enumerate() {
            let mut many = vec![sizes[i]; 8];
            many.push(if i == 0 { 600 * KIB } else { KIB });
            assert_eq!(tier_to_merge(&many, 8), Some((0..8).collect()), "size {}", sizes[i]);
        }
        assert_eq!(tier_to_merge(&[63 * KIB, 64 * KIB, 63 * KIB], 2), Some(vec![0, 2]));
        assert_eq!(tier_to_merge(&[511 * KIB, 512 * KIB, 600 * KIB], 2), Some(vec![1, 2]));
    }
}
