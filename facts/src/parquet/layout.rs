//! Where each row's file goes, and the file operations: a file is written under a hidden
//! temporary name, synced, then renamed, so a reader (or DataFusion listing the folder) sees
//! a whole file or none.

use std::fs::{self, File};
use std::io;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use ksa_schemas::Timestamp;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::table::FactTable;
use crate::FactError;

/// Rows per row group: large enough for scans, small enough to write a batch in one.
const ROW_GROUP_ROWS: usize = 64 * 1024;

/// `YYYY-MM` of `instant` in UTC.
pub(crate) fn month_of(instant: Timestamp) -> String {
    instant.to_datetime().format("%Y-%m").to_string()
}

pub(crate) fn project_dir(root: &Path, table: &str, project_id: i64) -> PathBuf {
    root.join(table).join(format!("project={project_id}"))
}

pub(crate) fn month_dir(root: &Path, table: &str, project_id: i64, month: &str) -> PathBuf {
    project_dir(root, table, project_id).join(format!("month={month}"))
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> FactError + '_ {
    move |source| FactError::Io { path: path.to_path_buf(), source }
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> FactError {
    FactError::File { path: path.to_path_buf(), message: message.to_string() }
}

/// The `month=…` folders of a project, oldest month first; none when the project has none.
pub(crate) fn month_dirs(root: &Path, table: &str, project_id: i64) -> Result<Vec<PathBuf>, FactError> {
    let dir = project_dir(root, table, project_id);
    let mut months = Vec::new();
    match fs::read_dir(&dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry.map_err(io_error(&dir))?;
                if entry.file_name().to_string_lossy().starts_with("month=") && entry.path().is_dir() {
                    months.push(entry.path());
                }
            }
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(io_error(&dir)(err)),
    }
    months.sort();
    Ok(months)
}

/// The projects that have a folder in `table`.
pub(crate) fn project_ids(root: &Path, table: &str) -> Result<Vec<i64>, FactError> {
    let dir = root.join(table);
    let mut ids = Vec::new();
    match fs::read_dir(&dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry.map_err(io_error(&dir))?;
                if let Some(id) = entry.file_name().to_string_lossy().strip_prefix("project=").and_then(|id| id.parse().ok()) {
                    ids.push(id);
                }
            }
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(io_error(&dir)(err)),
    }
    ids.sort_unstable();
    Ok(ids)
}

/// A month folder's `part-<n>.parquet` files as `(n, path)`, by `n`. Temporary files of a
/// write in progress are not parts.
pub(crate) fn parts(dir: &Path) -> Result<Vec<(u64, PathBuf)>, FactError> {
    let mut parts = Vec::new();
    match fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry.map_err(io_error(dir))?;
                let name = entry.file_name();
                let number = name
                    .to_string_lossy()
                    .strip_prefix("part-")
                    .and_then(|rest| rest.strip_suffix(".parquet"))
                    .and_then(|n| n.parse().ok());
                if let Some(number) = number {
                    parts.push((number, entry.path()));
                }
            }
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(io_error(dir)(err)),
    }
    parts.sort();
    Ok(parts)
}

/// Writes `rows` as `dir/part-<number>.parquet`, durable once this returns.
pub(crate) fn write_part<T: FactTable>(dir: &Path, number: u64, rows: &[T]) -> Result<PathBuf, FactError> {
    let mut part = PartWriter::create(dir, number)?;
    part.write(rows)?;
    part.finish()
}

/// A part file being written a slice of rows at a time (so a merge need not hold all of its
/// rows): under a hidden temporary name until [`PartWriter::finish`], which syncs and renames
/// it. Dropped unfinished, it removes the temporary file.
pub(crate) struct PartWriter<T> {
    dir: PathBuf,
    path: PathBuf,
    temporary: PathBuf,
    writer: Option<ArrowWriter<File>>,
    /// Renamed into place: nothing for `drop` to remove.
    finished: bool,
    rows: PhantomData<fn(&T)>,
}

impl<T: FactTable> PartWriter<T> {
    pub(crate) fn create(dir: &Path, number: u64) -> Result<PartWriter<T>, FactError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let path = dir.join(format!("part-{number}.parquet"));
        let temporary = dir.join(format!(".part-{number}.parquet.tmp"));
        let file = File::create(&temporary).map_err(io_error(&temporary))?;
        let properties =
            WriterProperties::builder().set_compression(Compression::SNAPPY).set_max_row_group_row_count(Some(ROW_GROUP_ROWS)).build();
        let mut part = PartWriter { dir: dir.to_path_buf(), path, temporary, writer: None, finished: false, rows: PhantomData };
        part.writer = Some(ArrowWriter::try_new(file, T::schema(), Some(properties)).map_err(|e| file_error(&part.path, e))?);
        Ok(part)
    }

    /// Appends `rows` (the writer cuts row groups of [`ROW_GROUP_ROWS`] across calls).
    pub(crate) fn write(&mut self, rows: &[T]) -> Result<(), FactError> {
        let writer = self.writer.as_mut().expect("a part writer is open until finished");
        let batch = T::to_batch(rows).map_err(|e| file_error(&self.path, e))?;
        writer.write(&batch).map_err(|e| file_error(&self.path, e))
    }

    /// Closes the file and makes it `part-<number>.parquet`, durable once this returns.
    pub(crate) fn finish(mut self) -> Result<PathBuf, FactError> {
        let writer = self.writer.take().expect("a part writer is finished once");
        let file = writer.into_inner().map_err(|e| file_error(&self.path, e))?;
        file.sync_all().map_err(io_error(&self.temporary))?;
        drop(file);
        fs::rename(&self.temporary, &self.path).map_err(io_error(&self.path))?;
        self.finished = true;
        sync_dir(&self.dir)?;
        Ok(self.path.clone())
    }
}

impl<T> Drop for PartWriter<T> {
    fn drop(&mut self) {
        // Unfinished (an error, also while closing or syncing, or a merge that gave up): the
        // temporary file is not a part, and no later write reuses its number.
        if !self.finished {
            let _ = fs::remove_file(&self.temporary);
        }
    }
}

/// Rows read from a batch at a time when a file is read row by row.
const READ_BATCH_ROWS: usize = 8 * 1024;

/// The rows of one part file in file order, read [`READ_BATCH_ROWS`] at a time.
pub(crate) struct PartReader<T> {
    path: PathBuf,
    batches: ParquetRecordBatchReader,
    rows: std::vec::IntoIter<T>,
}

impl<T: FactTable> PartReader<T> {
    pub(crate) fn open(path: &Path) -> Result<PartReader<T>, FactError> {
        let file = File::open(path).map_err(io_error(path))?;
        let batches = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| file_error(path, e))?
            .with_batch_size(READ_BATCH_ROWS)
            .build()
            .map_err(|e| file_error(path, e))?;
        Ok(PartReader { path: path.to_path_buf(), batches, rows: Vec::new().into_iter() })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl<T: FactTable> Iterator for PartReader<T> {
    type Item = Result<T, FactError>;

    fn next(&mut self) -> Option<Result<T, FactError>> {
        loop {
            if let Some(row) = self.rows.next() {
                return Some(Ok(row));
            }
            let rows = self
                .batches
                .next()?
                .map_err(|e| file_error(&self.path, e))
                .and_then(|batch| T::from_batch(&batch).map_err(|e| file_error(&self.path, e)));
            match rows {
                Ok(rows) => self.rows = rows.into_iter(),
                Err(err) => return Some(Err(err)),
            }
        }
    }
}

/// Every row of one file.
pub(crate) fn read_part<T: FactTable>(path: &Path) -> Result<Vec<T>, FactError> {
    PartReader::open(path)?.collect()
}

/// Removes from `dir` the temporary files of writes that never finished (the process was
/// killed in the middle of one).
pub(crate) fn remove_temporaries(dir: &Path) -> Result<(), FactError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(io_error(dir)(err)),
    };
    for entry in entries {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(".part-") && name.ends_with(".parquet.tmp") {
            remove_part(&entry.path())?;
        }
    }
    Ok(())
}

pub(crate) fn remove_part(path: &Path) -> Result<(), FactError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(io_error(path)(err)),
    }
}

/// Makes a rename or removal in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), FactError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_utc_calendar_months() {
        // 2026-01-31T23:30:00Z is already February in Kyiv, still January in UTC.
        assert_eq!(month_of(Timestamp::from_seconds(1_769_902_200)), "2026-01");
        assert_eq!(month_of(Timestamp::from_seconds(1_769_904_000)), "2026-02");
    }

    #[test]
    fn a_written_file_carries_the_explicit_schema() {
        let dir = tempfile::tempdir().expect("temp dir");
        let row = ksa_schemas::facts::CycleFact {
            project_id: 1,
            order_id: 2,
            cycle_id: 3,
            started_at: Timestamp::from_seconds(10),
            ended_at: Some(Timestamp::from_seconds(20)),
            wall_seconds: 10.0,
            working_seconds: 5.0,
            is_urgent: false,
            order_created_at: None,
            version: ksa_schemas::facts::FactVersion::new(1, 2),
        };
        let path = write_part(dir.path(), 0, std::slice::from_ref(&row)).expect("write");
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).expect("open")).expect("parquet");
        assert_eq!(builder.schema(), &super::super::cycle_schema());
        assert_eq!(read_part::<ksa_schemas::facts::CycleFact>(&path).expect("read"), vec![row]);
        assert_eq!(parts(dir.path()).expect("parts"), vec![(0, path)], "no temporary file is left");
    }

    #[test]
    fn folders_follow_the_documented_layout() {
        let dir = month_dir(Path::new("/data/facts"), "status_intervals", 3, "2026-03");
        assert_eq!(dir, Path::new("/data/facts/status_intervals/project=3/month=2026-03"));
    }
}
