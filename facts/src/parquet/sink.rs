//! `ParquetSink`: the [`FactSink`] of the embedded mode.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use ksa_schemas::facts::{CycleFact, FactBatch, IntervalFact};

use super::ParquetConfig;
use super::compact::{CompactionReport, compact_table, compact_tiers};
use super::layout::{io_error, month_dir, month_of, parts, remove_temporaries, write_part};
use super::table::{FactTable, newest_per_key};
use crate::{FactError, FactSink};

/// Writes facts as Parquet files. Clones share one writer: part numbers are handed out under
/// one lock, so they never collide; run one sink per data dir.
///
/// A write only adds files; the compaction it calls for runs on a thread of its own, so a
/// write (which the processor's commit waits for) never waits for a merge.
#[derive(Clone, Debug)]
pub struct ParquetSink {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ParquetConfig,
    numbers: PartNumbers,
    /// Compactions take turns, so two never merge the same files.
    compacting: Mutex<()>,
    /// Month folders written since the compactor last looked at them.
    pending: Mutex<Pending>,
    /// Signalled when the compactor finds nothing left to do.
    idle: Condvar,
}

#[derive(Debug, Default)]
struct Pending {
    intervals: BTreeSet<PathBuf>,
    cycles: BTreeSet<PathBuf>,
    /// The compactor thread is at work (it takes what is added meanwhile before it stops).
    running: bool,
}

/// The next part number of each month folder, known once the folder was listed.
#[derive(Debug, Default)]
pub(crate) struct PartNumbers(Mutex<HashMap<PathBuf, u64>>);

impl PartNumbers {
    /// A number for a new file of `dir`: one past the highest there or handed out before.
    pub(crate) fn reserve(&self, dir: &Path) -> Result<u64, FactError> {
        let mut known = lock(&self.0);
        let next = match known.get(dir) {
            Some(next) => *next,
            None => {
                // The folder's first number in this process: no write of this sink is under
                // way there, so a temporary file is what a killed process left (a merge's
                // number can lie below later writes', so none of them would reuse its name).
                remove_temporaries(dir)?;
                parts(dir)?.last().map_or(0, |(n, _)| n + 1)
            }
        };
        known.insert(dir.to_path_buf(), next + 1);
        Ok(next)
    }
}

/// A panic while writing leaves at worst a temporary file; what the locks guard stays valid.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ParquetSink {
    /// Opens (creating) the store's folder.
    pub fn open(config: ParquetConfig) -> Result<ParquetSink, FactError> {
        if config.compact_min_files < 2 {
            return Err(FactError::Config("parquet compact_min_files must be at least 2".into()));
        }
        std::fs::create_dir_all(&config.dir).map_err(io_error(&config.dir))?;
        let inner =
            Inner { config, numbers: PartNumbers::default(), compacting: Mutex::new(()), pending: Mutex::default(), idle: Condvar::new() };
        Ok(ParquetSink { inner: Arc::new(inner) })
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

    /// Waits until the compaction that earlier writes called for is done.
    pub async fn compacted(&self) {
        let sink = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let mut pending = lock(&sink.inner.pending);
            while pending.running {
                pending = sink.inner.idle.wait(pending).unwrap_or_else(|poisoned| poisoned.into_inner());
            }
        })
        .await;
    }

    async fn merge_months(&self, quiet: Option<Duration>) -> Result<CompactionReport, FactError> {
        let sink = self.clone();
        run_blocking(move || {
            let _turn = lock(&sink.inner.compacting);
            let numbers = &sink.inner.numbers;
            let mut report = compact_table::<IntervalFact>(sink.dir(), 2, u64::MAX, quiet, numbers)?;
            report.add(compact_table::<CycleFact>(sink.dir(), 2, u64::MAX, quiet, numbers)?);
            Ok(report)
        })
        .await
    }

    /// Writes `batch`, one new file per table, project and month it touches, then has the
    /// compactor look at those months.
    fn write_blocking(&self, batch: FactBatch) -> Result<(), FactError> {
        let intervals = write_table(self.dir(), batch.intervals, &self.inner.numbers)?;
        let cycles = write_table(self.dir(), batch.cycles, &self.inner.numbers)?;
        self.call_compactor(intervals, cycles);
        Ok(())
    }

    /// Adds months to the compactor's list, starting its thread when it is not at work.
    fn call_compactor(&self, intervals: Vec<PathBuf>, cycles: Vec<PathBuf>) {
        let mut pending = lock(&self.inner.pending);
        pending.intervals.extend(intervals);
        pending.cycles.extend(cycles);
        if pending.running {
            return;
        }
        pending.running = true;
        drop(pending);
        let sink = self.clone();
        let started = std::thread::Builder::new().name("parquet-compact".into()).spawn(move || sink.compact_pending());
        if let Err(err) = started {
            // The files wait for the next write's call, as after a failed compaction.
            tracing::warn!(error = %err, "cannot start the Parquet compaction thread; the files stay as they are");
            lock(&self.inner.pending).running = false;
            self.inner.idle.notify_all();
        }
    }

    /// The compactor thread: merges the tiers of each month on its list until the list stays
    /// empty.
    fn compact_pending(&self) {
        let min_files = self.inner.config.compact_min_files;
        let mut running = Running { inner: &self.inner, stopped: false };
        loop {
            let (intervals, cycles) = {
                let mut pending = lock(&self.inner.pending);
                if pending.intervals.is_empty() && pending.cycles.is_empty() {
                    // Under the lock: a write that adds months after this starts a new thread.
                    pending.running = false;
                    running.stopped = true;
                    self.inner.idle.notify_all();
                    return;
                }
                (std::mem::take(&mut pending.intervals), std::mem::take(&mut pending.cycles))
            };
            let _turn = lock(&self.inner.compacting);
            for month in &intervals {
                compact_or_warn::<IntervalFact>(month, min_files, &self.inner.numbers);
            }
            for month in &cycles {
                compact_or_warn::<CycleFact>(month, min_files, &self.inner.numbers);
            }
        }
    }
}

/// Marks the compactor stopped if its thread ends without doing so itself (a panic), so a
/// later write starts another and [`ParquetSink::compacted`] does not wait for ever.
struct Running<'a> {
    inner: &'a Inner,
    stopped: bool,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if !self.stopped {
            lock(&self.inner.pending).running = false;
            self.inner.idle.notify_all();
        }
    }
}

/// A failed compaction loses nothing (the files it would merge are still there): it is
/// logged and tried again after a later write.
fn compact_or_warn<T: FactTable>(month: &Path, min_files: usize, numbers: &PartNumbers) {
    if let Err(err) = compact_tiers::<T>(month, min_files, numbers) {
        tracing::warn!(folder = %month.display(), error = %err, "compacting Parquet facts failed; the files stay as they are");
    }
}

/// Writes `rows`, one file per project and month, each with at most one row per key (the
/// newest), so a month of a single file needs no deduplication when read; returns the month
/// folders written.
fn write_table<T: FactTable>(root: &Path, rows: Vec<T>, numbers: &PartNumbers) -> Result<Vec<PathBuf>, FactError> {
    let mut by_month: BTreeMap<(i64, String), Vec<T>> = BTreeMap::new();
    for row in rows {
        by_month.entry((row.project_id(), month_of(row.month_instant()))).or_default().push(row);
    }
    let mut written = Vec::with_capacity(by_month.len());
    for ((project_id, month), rows) in by_month {
        let dir = month_dir(root, T::NAME, project_id, &month);
        write_part(&dir, numbers.reserve(&dir)?, &newest_per_key(rows))?;
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

#[cfg(test)]
mod tests {
    use super::super::table::test_cycle;
    use super::*;

    fn cycles(order_id: i64) -> FactBatch {
        FactBatch { intervals: Vec::new(), cycles: vec![test_cycle(order_id, 1, true, 1.0)] }
    }

    #[tokio::test]
    async fn a_temporary_file_left_by_a_killed_process_is_removed_on_the_first_write() {
        let dir = tempfile::tempdir().expect("temp dir");
        let month = month_dir(dir.path(), "order_cycles", 1, "1970-01");
        std::fs::create_dir_all(&month).expect("month");
        // A merge that took number 5 while writes went on to 6 and 7, then the process died.
        write_part(&month, 6, &cycles(1).cycles).expect("part 6");
        write_part(&month, 7, &cycles(2).cycles).expect("part 7");
        std::fs::write(month.join(".part-5.parquet.tmp"), b"half a file").expect("leftover");
        std::fs::write(month.join("notes.txt"), b"not ours").expect("other file");

        let sink = ParquetSink::open(ParquetConfig { dir: dir.path().to_path_buf(), compact_min_files: 8 }).expect("open");
        sink.write_blocking(cycles(3)).expect("write");
        let mut names: Vec<String> =
            std::fs::read_dir(&month).expect("dir").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names, ["notes.txt", "part-6.parquet", "part-7.parquet", "part-8.parquet"]);
    }

    #[tokio::test]
    async fn a_write_does_not_wait_for_a_compaction_under_way() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sink = ParquetSink::open(ParquetConfig { dir: dir.path().to_path_buf(), compact_min_files: 2 }).expect("open");
        let month = month_dir(dir.path(), "order_cycles", 1, "1970-01");
        // A compaction holds its turn (as a long merge would) while writes come in.
        let turn = lock(&sink.inner.compacting);
        for order_id in 0..4 {
            let writing = sink.clone();
            let written = std::thread::spawn(move || writing.write_blocking(cycles(order_id)));
            let waited = std::time::Instant::now();
            while !written.is_finished() {
                assert!(waited.elapsed() < Duration::from_secs(30), "write {order_id} waits for the compaction");
                std::thread::sleep(Duration::from_millis(5));
            }
            written.join().expect("no panic").expect("written");
        }
        assert_eq!(parts(&month).expect("parts").len(), 4, "nothing merged while the turn is held");
        drop(turn);
        sink.compacted().await;
        let left = parts(&month).expect("parts");
        assert_eq!(left.len(), 1, "the files written meanwhile are merged once it is free: {left:?}");
        assert_eq!(super::super::layout::read_part::<CycleFact>(&left[0].1).expect("read").len(), 4);
    }
}
