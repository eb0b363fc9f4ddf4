//! Compaction: a month's small files become one file with only the newest row per key.
//!
//! The merged file is written (and synced) before the files it replaces are removed, so a
//! crash in between leaves rows twice, never missing; readers keep the newest per key anyway.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::layout::{PartReader, PartWriter, parts, read_part, remove_part, sync_dir, write_part};
use super::sink::PartNumbers;
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
    numbers: &PartNumbers,
) -> Result<CompactionReport, FactError> {
    let small: Vec<PathBuf> = sized_parts(dir)?.into_iter().filter(|(_, size)| *size < max_file_bytes).map(|(path, _)| path).collect();
    if small.len() < min_files.max(2) {
        return Ok(CompactionReport::default());
    }
    merge::<T>(dir, &small, numbers)
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
pub(crate) fn compact_tiers<T: FactTable>(dir: &Path, min_files: usize, numbers: &PartNumbers) -> Result<CompactionReport, FactError> {
    let mut report = CompactionReport::default();
    loop {
        let sized: Vec<(PathBuf, u64)> = sized_parts(dir)?.into_iter().filter(|(_, size)| *size < SMALL_FILE_BYTES).collect();
        let sizes: Vec<u64> = sized.iter().map(|(_, size)| *size).collect();
        let Some(chosen) = tier_to_merge(&sizes, min_files) else { return Ok(report) };
        let files: Vec<PathBuf> = chosen.into_iter().map(|i| sized[i].0.clone()).collect();
        report.add(merge::<T>(dir, &files, numbers)?);
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
fn merge<T: FactTable>(dir: &Path, files: &[PathBuf], numbers: &PartNumbers) -> Result<CompactionReport, FactError> {
    let number = numbers.reserve(dir)?;
    let (rows_read, rows_kept) = match merge_sorted::<T>(dir, number, files)? {
        Merged::Rows { read, kept } => (read, kept),
        Merged::Unsorted(path) => {
            tracing::debug!(file = %path.display(), "a Parquet facts file is not sorted by key; merging its folder in memory");
            merge_in_memory::<T>(dir, number, files)?
        }
    };
    for path in files {
        remove_part(path)?;
    }
    sync_dir(dir)?;
    tracing::debug!(folder = %dir.display(), files = files.len(), rows_read, rows_kept, "compacted Parquet facts");
    Ok(CompactionReport { months: 1, files_merged: files.len() as u64, rows_read, rows_kept })
}

/// Rows gathered before they are handed to the writer, in a streaming merge.
const MERGE_CHUNK_ROWS: usize = 8 * 1024;

enum Merged {
    Rows {
        read: u64,
        kept: u64,
    },
    /// This file's keys do not rise row after row; nothing was written.
    Unsorted(PathBuf),
}

/// One input of a streaming merge: its next row, and the key of the row before it.
struct Input<T: FactTable> {
    rows: PartReader<T>,
    head: Option<T>,
    last_key: Option<T::Key>,
}

impl<T: FactTable> Input<T> {
    /// Moves to the next row; false when the file's keys stop rising (a file not written
    /// sorted and deduplicated, which only an older writer would leave).
    fn advance(&mut self) -> Result<bool, FactError> {
        self.head = self.rows.next().transpose()?;
        let Some(row) = &self.head else { return Ok(true) };
        let key = row.key();
        if self.last_key.as_ref().is_some_and(|last| *last >= key) {
            return Ok(false);
        }
        self.last_key = Some(key);
        Ok(true)
    }
}

/// Writes `dir/part-<number>.parquet` from `files`, each sorted by key with one row per key
/// (as every write and merge leaves them), holding one batch of rows per file rather than all
/// of their rows: a k-way merge by key. Of rows with one key it keeps what [`newest_per_key`]
/// keeps of the files' rows in order: the highest version, of equal ones a complete row, of
/// those the one of the earliest file.
fn merge_sorted<T: FactTable>(dir: &Path, number: u64, files: &[PathBuf]) -> Result<Merged, FactError> {
    let mut inputs = Vec::with_capacity(files.len());
    let mut next: BinaryHeap<Reverse<(T::Key, usize)>> = BinaryHeap::with_capacity(files.len());
    for path in files {
        let mut input = Input { rows: PartReader::<T>::open(path)?, head: None, last_key: None };
        if !input.advance()? {
            return Ok(Merged::Unsorted(path.clone()));
        }
        if let Some(row) = &input.head {
            next.push(Reverse((row.key(), inputs.len())));
        }
        inputs.push(input);
    }
    let mut part = PartWriter::<T>::create(dir, number)?;
    let (mut read, mut kept) = (0u64, 0u64);
    let mut chunk: Vec<T> = Vec::with_capacity(MERGE_CHUNK_ROWS);
    while let Some(Reverse((key, first))) = next.pop() {
        // Inputs of one key leave the heap by file order, so a tie keeps the earliest file; an
        // input's next key is larger, so pushing it back does not mix it into this key's.
        let mut newest: Option<T> = None;
        let mut index = first;
        loop {
            let input = &mut inputs[index];
            let row = input.head.take().expect("an input in the heap has a row");
            read += 1;
            if newest.as_ref().is_none_or(|best| (row.version(), row.complete()) > (best.version(), best.complete())) {
                newest = Some(row);
            }
            if !input.advance()? {
                return Ok(Merged::Unsorted(input.rows.path().to_path_buf()));
            }
            if let Some(row) = &input.head {
                next.push(Reverse((row.key(), index)));
            }
            match next.peek() {
                Some(Reverse((other, other_index))) if *other == key => index = *other_index,
                _ => break,
            }
            next.pop();
        }
        chunk.extend(newest);
        kept += 1;
        if chunk.len() == MERGE_CHUNK_ROWS {
            part.write(&chunk)?;
            chunk.clear();
        }
    }
    part.write(&chunk)?;
    part.finish()?;
    Ok(Merged::Rows { read, kept })
}

/// Merges `files` holding all of their rows: for files not sorted by key.
fn merge_in_memory<T: FactTable>(dir: &Path, number: u64, files: &[PathBuf]) -> Result<(u64, u64), FactError> {
    let mut rows: Vec<T> = Vec::new();
    for path in files {
        rows.extend(read_part::<T>(path)?);
    }
    let read = rows.len() as u64;
    let rows = newest_per_key(rows);
    write_part(dir, number, &rows)?;
    Ok((read, rows.len() as u64))
}

/// Compacts every month of every project of table `T`; with `quiet`, only the months whose
/// newest file is at least that old.
pub(crate) fn compact_table<T: FactTable>(
    root: &Path,
    min_files: usize,
    max_file_bytes: u64,
    quiet: Option<Duration>,
    numbers: &PartNumbers,
) -> Result<CompactionReport, FactError> {
    let mut report = CompactionReport::default();
    for project_id in super::layout::project_ids(root, T::NAME)? {
        for month in super::layout::month_dirs(root, T::NAME, project_id)? {
            if let Some(quiet) = quiet
                && !quiet_for(&month, quiet)?
            {
                continue;
            }
            report.add(compact_month::<T>(&month, min_files, max_file_bytes, numbers)?);
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
    use super::super::table::test_cycle as cycle;
    use super::*;
    use ksa_schemas::facts::{CycleFact, FactVersion};
    use proptest::prelude::*;

    /// Writes each of `files` as a part of `dir` (as given: a caller sorts them or not) and
    /// merges them all; returns what the merge reported and the rows of the one file left.
    fn write_and_merge(dir: &Path, files: &[Vec<CycleFact>]) -> (CompactionReport, Vec<CycleFact>) {
        let paths: Vec<PathBuf> = files.iter().enumerate().map(|(n, rows)| write_part(dir, n as u64, rows).expect("write")).collect();
        let report = merge::<CycleFact>(dir, &paths, &PartNumbers::default()).expect("merge");
        let left = parts(dir).expect("parts");
        assert_eq!(left.len(), 1, "the merged file alone is left: {left:?}");
        let names: Vec<String> =
            std::fs::read_dir(dir).expect("dir").map(|e| e.expect("entry").file_name().to_string_lossy().into()).collect();
        assert_eq!(names.len(), 1, "no temporary file is left: {names:?}");
        (report, read_part::<CycleFact>(&left[0].1).expect("read"))
    }

    fn rows_strategy() -> impl Strategy<Value = Vec<Vec<(i64, u32, bool)>>> {
        prop::collection::vec(prop::collection::vec((0i64..12, 0u32..3, any::<bool>()), 0..20), 1..6)
    }

    fn marked(files: &[Vec<(i64, u32, bool)>]) -> Vec<Vec<CycleFact>> {
        files
            .iter()
            .enumerate()
            .map(|(f, rows)| {
                rows.iter()
                    .enumerate()
                    .map(|(r, &(order, version, complete))| cycle(order, version, complete, (f * 100 + r) as f64))
                    .collect()
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// The streaming merge of files as writes leave them (each sorted, one row per key)
        /// keeps exactly what deduplicating all of their rows in memory keeps.
        #[test]
        fn merging_sorted_files_keeps_what_the_in_memory_rule_keeps(files in rows_strategy()) {
            let files: Vec<Vec<CycleFact>> = marked(&files).into_iter().map(newest_per_key).collect();
            let expected = newest_per_key(files.concat());
            let dir = tempfile::tempdir().expect("temp dir");
            let (report, merged) = write_and_merge(dir.path(), &files);
            prop_assert_eq!(&merged, &expected);
            prop_assert_eq!(report.rows_read, files.iter().map(Vec::len).sum::<usize>() as u64);
            prop_assert_eq!(report.rows_kept, expected.len() as u64);
        }

        /// A file whose keys do not rise (an older writer's) is merged in memory, to the same rows.
        #[test]
        fn a_file_not_sorted_by_key_is_merged_all_the_same(files in rows_strategy(), unsorted in any::<prop::sample::Index>()) {
            let mut files: Vec<Vec<CycleFact>> = marked(&files).into_iter().map(newest_per_key).collect();
            let which = unsorted.index(files.len());
            files[which].reverse();
            files[which].push(cycle(5, 1, true, -1.0));
            let expected = newest_per_key(files.concat());
            let dir = tempfile::tempdir().expect("temp dir");
            let (_, merged) = write_and_merge(dir.path(), &files);
            prop_assert_eq!(merged, expected);
        }
    }

    #[test]
    fn a_merge_larger_than_its_chunk_writes_every_row_once() {
        let rows = |offset: i64, version: u32| -> Vec<CycleFact> {
            (0..(MERGE_CHUNK_ROWS as i64 + 1000)).map(|n| cycle(n * 3 + offset, version, true, (n * 3 + offset) as f64)).collect()
        };
        let files = vec![rows(0, 1), rows(1, 1), rows(0, 2)];
        let expected = newest_per_key(files.concat());
        let dir = tempfile::tempdir().expect("temp dir");
        let (report, merged) = write_and_merge(dir.path(), &files);
        assert_eq!(merged.len(), 2 * (MERGE_CHUNK_ROWS + 1000));
        assert_eq!(merged, expected);
        assert!(merged.iter().filter(|row| row.order_id % 3 == 0).all(|row| row.version == FactVersion::new(0, 2)));
        assert_eq!(report.rows_read, 3 * (MERGE_CHUNK_ROWS as u64 + 1000));
    }

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
