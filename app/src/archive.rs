//! Retention (docs/operations.md, "Retention and archive"). Event rows are small and stay: every
//! figure can be recomputed from them, and late or duplicate webhooks still deduplicate. What
//! ages out is their stored payload: payloads of events changed more than
//! `retention.payload_days` ago move to Parquet files, one per project and month
//! (`<archive dir>/payloads/<slug>/<YYYY-MM>.parquet`), and are cleared in the state database;
//! `restore` puts a month back. Audit rows older than `retention.audit_days` are deleted.
//!
//! A month's file is rewritten with what it held plus the month's payloads still in the
//! database, deduplicated by the event key, synced and renamed into place before the database
//! is cleared, event by event (a late event stored meanwhile keeps its payload until the next
//! run). An archive cut short anywhere and run again neither loses nor repeats a
//! payload.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use arrow::array::{Array, ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::{Datelike, NaiveDate};
use ksa_schemas::Timestamp;
use ksa_state::{StateStore, StoredPayload};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// `[retention]` of the configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSection {
    /// Payloads of events changed longer ago than this move to the archive (0: never).
    pub payload_days: u32,
    /// Audit rows older than this are deleted (0: never).
    pub audit_days: u32,
    /// Where the archive goes; default `DATA_DIR/archive`.
    pub archive_dir: Option<PathBuf>,
}

impl Default for RetentionSection {
    fn default() -> Self {
        RetentionSection { payload_days: 90, audit_days: 730, archive_dir: None }
    }
}

impl RetentionSection {
    pub fn dir(&self, data_dir: &Path) -> PathBuf {
        self.archive_dir.clone().unwrap_or_else(|| data_dir.join("archive")).join("payloads")
    }
}

/// What one month of one project came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonthReport {
    pub project: String,
    /// `YYYY-MM`.
    pub month: String,
    /// Payloads moved to the archive now (with `--dry-run`: that would be).
    pub archived: u64,
    /// Payloads the month's file holds now.
    pub in_file: u64,
    pub file: PathBuf,
}

/// What a run did: the months, and the audit rows deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveReport {
    pub months: Vec<MonthReport>,
    pub audit_rows_deleted: u64,
}

const MICROS_PER_DAY: i64 = 86_400 * 1_000_000;
/// Rows read from the database per query.
const PAGE: u32 = 5_000;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("status_changed_at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
        Field::new("status_id", DataType::Int64, false),
        Field::new("payload", DataType::Utf8, false),
    ]))
}

/// The first instant of the UTC month holding `at`, and of the month after.
fn month_of(at: Timestamp) -> (Timestamp, Timestamp, String) {
    let date = chrono::DateTime::from_timestamp_micros(at.as_micros()).unwrap_or_default().date_naive();
    let first = NaiveDate::from_ymd_opt(date.year(), date.month(), 1).unwrap_or(date);
    let next = if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
    }
    .unwrap_or(first);
    let micros = |d: NaiveDate| Timestamp::from_micros(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc().timestamp_micros());
    (micros(first), micros(next), format!("{:04}-{:02}", first.year(), first.month()))
}

/// `YYYY-MM` → the month's bounds.
fn parse_month(text: &str) -> anyhow::Result<(Timestamp, Timestamp)> {
    let first = NaiveDate::parse_from_str(&format!("{}-01", text.trim()), "%Y-%m-%d")
        .with_context(|| format!("--month: {text:?} is not a month (YYYY-MM, for example 2025-01)"))?;
    let (from, to, _) = month_of(Timestamp::from_micros(first.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc().timestamp_micros()));
    Ok((from, to))
}

fn month_file(dir: &Path, slug: &str, month: &str) -> PathBuf {
    dir.join(slug).join(format!("{month}.parquet"))
}

/// Every row of an archive file.
fn read_file(path: &Path) -> anyhow::Result<Vec<StoredPayload>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .with_context(|| format!("{} is not a payload archive", path.display()))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.with_context(|| format!("reading {}", path.display()))?;
        let column = |i: usize| batch.column(i);
        let (Some(orders), Some(at), Some(statuses), Some(payloads)) = (
            column(0).as_any().downcast_ref::<Int64Array>(),
            column(1).as_any().downcast_ref::<TimestampMicrosecondArray>(),
            column(2).as_any().downcast_ref::<Int64Array>(),
            column(3).as_any().downcast_ref::<StringArray>(),
        ) else {
            bail!("{} has other columns than a payload archive", path.display());
        };
        for i in 0..batch.num_rows() {
            rows.push(StoredPayload {
                order_id: orders.value(i),
                status_changed_at: Timestamp::from_micros(at.value(i)),
                status_id: statuses.value(i),
                payload: payloads.value(i).to_owned(),
            });
        }
    }
    Ok(rows)
}

fn batch_of(rows: &[StoredPayload]) -> anyhow::Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.order_id))),
        Arc::new(TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.status_changed_at.as_micros())).with_timezone("UTC")),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.status_id))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.payload.as_str()))),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}

type Key = (i64, i64, i64);

fn key(row: &StoredPayload) -> Key {
    (row.order_id, row.status_changed_at.as_micros(), row.status_id)
}

/// Moves the payloads of `[from, to)` of one project into its month's file, then clears them.
async fn archive_month<S: StateStore>(
    state: &S,
    project: &ksa_state::Project,
    (from, to, month): (Timestamp, Timestamp, String),
    dir: &Path,
    dry_run: bool,
) -> anyhow::Result<Option<MonthReport>> {
    let path = month_file(dir, &project.slug, &month);
    let kept = if path.exists() { read_file(&path)? } else { Vec::new() };
    let mut seen: HashSet<Key> = kept.iter().map(key).collect();
    let (mut fresh, mut in_both): (Vec<StoredPayload>, Vec<StoredPayload>) = (Vec::new(), Vec::new());
    let mut after = (0, Timestamp::from_micros(0), 0);
    loop {
        let page = state.payloads(project.id, from, to, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = (last.order_id, last.status_changed_at, last.status_id);
        for row in page {
            if seen.insert(key(&row)) { fresh.push(row) } else { in_both.push(row) }
        }
    }
    let read = (fresh.len() + in_both.len()) as u64;
    let report = |archived: u64, in_file: u64| MonthReport {
        project: project.slug.clone(),
        month: month.clone(),
        archived,
        in_file,
        file: path.clone(),
    };
    if read == 0 {
        return Ok(None);
    }
    if dry_run {
        return Ok(Some(report(fresh.len() as u64, kept.len() as u64)));
    }
    if !fresh.is_empty() {
        write_file(&path, &kept, &fresh)?;
    }
    for chunk in fresh.chunks(1_000).chain(in_both.chunks(1_000)) {
        state.clear_payloads(project.id, chunk).await?;
    }
    Ok(Some(report(fresh.len() as u64, (kept.len() + fresh.len()) as u64)))
}

/// Writes `kept` and `fresh` to a new file beside `path`, syncs it and renames it into place.
fn write_file(path: &Path, kept: &[StoredPayload], fresh: &[StoredPayload]) -> anyhow::Result<()> {
    let folder = path.parent().context("an archive file has a folder")?;
    std::fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
    let partial = path.with_extension("parquet.partial");
    let file = File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let properties = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut writer = ArrowWriter::try_new(file, schema(), Some(properties))?;
    for rows in [kept, fresh] {
        for chunk in rows.chunks(PAGE as usize) {
            writer.write(&batch_of(chunk)?)?;
        }
    }
    let file = writer.into_inner().with_context(|| format!("writing {}", partial.display()))?;
    file.sync_all()?;
    std::fs::rename(&partial, path).with_context(|| format!("renaming {} into place", partial.display()))?;
    File::open(folder)?.sync_all()?;
    Ok(())
}

/// Archives every project's payloads older than `retention.payload_days` before `now`, month by
/// month (telling `progress` after each), and deletes audit rows older than
/// `retention.audit_days`. With `dry_run` nothing is written or cleared.
pub async fn archive<S: StateStore>(
    state: &S,
    config: &Config,
    now: Timestamp,
    dry_run: bool,
    mut progress: impl FnMut(&MonthReport),
) -> anyhow::Result<ArchiveReport> {
    let retention = &config.retention;
    let dir = retention.dir(&config.data_dir);
    let mut report = ArchiveReport::default();
    if retention.payload_days > 0 {
        let cutoff = Timestamp::from_micros(now.as_micros() - i64::from(retention.payload_days) * MICROS_PER_DAY);
        for project in state.projects().await? {
            let Some(mut at) = state.earliest_payload(project.id, cutoff).await? else { continue };
            while at < cutoff {
                let (from, next, month) = month_of(at);
                if let Some(done) = archive_month(state, &project, (from, next.min(cutoff), month), &dir, dry_run).await? {
                    progress(&done);
                    report.months.push(done);
                }
                at = next;
            }
        }
    }
    if retention.audit_days > 0 && !dry_run {
        let before = Timestamp::from_micros(now.as_micros() - i64::from(retention.audit_days) * MICROS_PER_DAY);
        report.audit_rows_deleted = state.prune_audit(before).await?;
    }
    Ok(report)
}

/// Puts one archived month of a project back into the state database (where its events have no
/// payload); the file stays. Returns the payloads put back and the file's rows.
pub async fn restore<S: StateStore>(state: &S, config: &Config, slug: &str, month: &str) -> anyhow::Result<(u64, u64, PathBuf)> {
    let project = state.project_by_slug(slug).await?.with_context(|| format!("no project `{slug}`"))?;
    parse_month(month)?;
    let path = month_file(&config.retention.dir(&config.data_dir), &project.slug, month.trim());
    if !path.exists() {
        bail!("no archive of project `{slug}` for {month}: {} does not exist", path.display());
    }
    let rows = read_file(&path)?;
    let mut restored = 0;
    for chunk in rows.chunks(1_000) {
        restored += state.restore_payloads(project.id, chunk).await?;
    }
    Ok((restored, rows.len() as u64, path))
}

/// Runs [`archive`] every night at 03:00 UTC until `shutdown` (inside `run`).
pub async fn nightly<S: StateStore>(state: S, config: Config, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        let now = chrono::Utc::now();
        let mut next = now.date_naive().and_hms_opt(3, 0, 0).unwrap_or_default().and_utc();
        if next <= now {
            next += chrono::Duration::days(1);
        }
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let now = Timestamp::from_micros(chrono::Utc::now().timestamp_micros());
        match archive(&state, &config, now, false, |_| {}).await {
            Ok(report) => {
                let archived: u64 = report.months.iter().map(|m| m.archived).sum();
                tracing::info!(
                    archived,
                    months = report.months.len(),
                    audit_rows_deleted = report.audit_rows_deleted,
                    "nightly archive done"
                );
            }
            Err(error) => tracing::warn!(error = %format!("{error:#}"), "nightly archive failed; it runs again tomorrow"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_utc_calendar_months() {
        let at = |s: &str| Timestamp::parse(s).unwrap();
        let (from, to, name) = month_of(at("2025-12-31T23:59:59Z"));
        assert_eq!((from, to, name.as_str()), (at("2025-12-01T00:00:00Z"), at("2026-01-01T00:00:00Z"), "2025-12"));
        assert_eq!(parse_month("2025-02").unwrap(), (at("2025-02-01T00:00:00Z"), at("2025-03-01T00:00:00Z")));
        assert!(parse_month("2025-13").is_err());
        assert!(parse_month("January").is_err());
    }

    #[test]
    fn a_file_reads_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shop").join("2025-01.parquet");
        let row = |order_id: i64| StoredPayload {
            order_id,
            status_changed_at: Timestamp::from_micros(1_736_000_000_000_000 + order_id),
            status_id: 7,
            payload: format!("{{\"id\":{order_id}}}"),
        };
        write_file(&path, &[row(1)], &[row(2), row(3)]).unwrap();
        assert_eq!(read_file(&path).unwrap(), vec![row(1), row(2), row(3)]);
        assert!(!path.with_extension("parquet.partial").exists());
    }
}
