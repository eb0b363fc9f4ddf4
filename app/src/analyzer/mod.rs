//! `keycrm-analytics timeline`: an exported webhook log in, one derived object per order out.
//!
//! The log may be far larger than memory and in any order. Events are read once, normalized,
//! sorted by order in bounded chunks (spilled to temporary files when there is more than one),
//! then merged, so memory is bounded by the chunk size plus the largest order.

mod runs;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ksa_domain::{OrderOverrides, ProjectRules, Urgency, compute_timeline, urgency_of};
use ksa_schemas::{ProjectSettings, StatusEvent, Timestamp, WebhookOutcome, parse_order_details, parse_webhook};

use runs::{SortedRuns, group_by_order};

/// How many rejected lines are printed one by one before only counting the rest.
const MAX_REPORTED_LINES: u64 = 1000;

#[derive(Clone, Debug)]
pub struct AnalyzeOptions {
    pub events: PathBuf,
    pub settings: Option<PathBuf>,
    pub orders: Option<PathBuf>,
    /// Where to write; standard output when unset.
    pub output: Option<PathBuf>,
    pub now: Timestamp,
    /// Events held in memory before a sorted chunk goes to a temporary file.
    pub chunk_events: usize,
    pub progress: bool,
}

impl AnalyzeOptions {
    pub const DEFAULT_CHUNK_EVENTS: usize = 1 << 20;
}

/// What a run read and wrote; `rejected_lines > 0` makes the command exit non-zero.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnalyzeSummary {
    pub event_lines: u64,
    pub status_events: u64,
    pub ignored_events: u64,
    pub rejected_lines: u64,
    pub order_lines: u64,
    pub orders_written: u64,
    /// Orders whose every event is after `--now`.
    pub orders_not_yet_started: u64,
    pub spilled_chunks: usize,
}

/// Runs the analyzer; per-line problems go to `diagnostics`, results to the output.
pub fn analyze(options: &AnalyzeOptions, diagnostics: &mut dyn Write) -> anyhow::Result<AnalyzeSummary> {
    let started = Instant::now();
    let settings = match &options.settings {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading settings {}", path.display()))?;
            ProjectSettings::from_json(&text).with_context(|| format!("settings {}", path.display()))?
        }
        None => ProjectSettings::default(),
    };
    let mut summary = AnalyzeSummary::default();
    let urgency = match &options.orders {
        Some(path) => read_urgency(path, &settings, &mut summary, diagnostics)?,
        None => HashMap::new(),
    };

    let mut runs = SortedRuns::new(options.chunk_events.max(1));
    let (mut earliest, mut latest) = (options.now, options.now);
    for_each_line(&options.events, options.progress, "events", |line_no, line| {
        summary.event_lines += 1;
        match parse_webhook(line) {
            Ok(WebhookOutcome::Status(event)) => {
                summary.status_events += 1;
                earliest = earliest.min(event.changed_at).min(event.order_created_at);
                latest = latest.max(event.changed_at);
                runs.push(event)
            }
            Ok(WebhookOutcome::Ignored { .. }) => {
                summary.ignored_events += 1;
                Ok(())
            }
            Err(err) => {
                summary.rejected_lines += 1;
                report(diagnostics, &options.events, line_no, &err.to_string(), summary.rejected_lines)
            }
        }
    })?;
    let orders = runs.finish()?;
    summary.spilled_chunks = orders.spilled_chunks();

    let rules = ProjectRules::covering(settings, earliest, latest);
    let mut out: Box<dyn Write> = match &options.output {
        Some(path) => Box::new(BufWriter::with_capacity(
            1 << 20,
            File::create(partial(path)).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(BufWriter::with_capacity(1 << 20, std::io::stdout().lock())),
    };
    let overrides = OrderOverrides::default();
    let mut written = |order_id: i64, events: &[StatusEvent]| -> anyhow::Result<()> {
        let urgency = urgency.get(&order_id).copied().unwrap_or(Urgency::Pending);
        match compute_timeline(events, urgency, &overrides, &rules, options.now) {
            Some(timeline) => {
                serde_json::to_writer(&mut out, &timeline)?;
                out.write_all(b"\n")?;
                summary.orders_written += 1;
            }
            None => summary.orders_not_yet_started += 1,
        }
        Ok(())
    };
    group_by_order(orders, &mut written)?;
    out.flush()?;
    drop(out);
    if let Some(path) = &options.output {
        std::fs::rename(partial(path), path).with_context(|| format!("moving the result into {}", path.display()))?;
    }
    if summary.rejected_lines > MAX_REPORTED_LINES {
        writeln!(diagnostics, "… and {} more rejected lines", summary.rejected_lines - MAX_REPORTED_LINES)?;
    }
    writeln!(
        diagnostics,
        "read {} event lines ({} status changes, {} other events ignored, {} rejected){}; wrote {} orders in {:.1} s",
        summary.event_lines,
        summary.status_events,
        summary.ignored_events,
        summary.rejected_lines,
        if options.orders.is_some() { format!(" and {} order lines", summary.order_lines) } else { String::new() },
        summary.orders_written,
        started.elapsed().as_secs_f64()
    )?;
    Ok(summary)
}

fn partial(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

fn report(diagnostics: &mut dyn Write, file: &Path, line_no: u64, message: &str, rejected_so_far: u64) -> anyhow::Result<()> {
    if rejected_so_far <= MAX_REPORTED_LINES {
        writeln!(diagnostics, "{}:{line_no}: {message}; line skipped", file.display())?;
    }
    Ok(())
}

/// Urgency of every order in an `ORDERS.jsonl` of `GET /order/{id}` bodies.
fn read_urgency(
    path: &Path,
    settings: &ProjectSettings,
    summary: &mut AnalyzeSummary,
    diagnostics: &mut dyn Write,
) -> anyhow::Result<HashMap<i64, Urgency>> {
    let mut urgency = HashMap::new();
    for_each_line(path, false, "orders", |line_no, line| {
        summary.order_lines += 1;
        match parse_order_details(line) {
            Ok(order) => {
                urgency.insert(order.id, urgency_of(&order.lines, &settings.urgency_rules));
                Ok(())
            }
            Err(err) => {
                summary.rejected_lines += 1;
                report(diagnostics, path, line_no, &err.to_string(), summary.rejected_lines)
            }
        }
    })?;
    Ok(urgency)
}

/// Calls `f` with each non-blank line and its 1-based number, showing progress by bytes.
fn for_each_line(path: &Path, progress: bool, what: &str, mut f: impl FnMut(u64, &[u8]) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("opening {what} file {}", path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = if progress && size > 0 {
        let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(format!("reading {what}"));
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::with_capacity(4096);
    let (mut line_no, mut unreported) = (0u64, 0u64);
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        unreported += n as u64;
        if unreported >= 1 << 20 {
            bar.inc(unreported);
            unreported = 0;
        }
        let text = line.trim_ascii();
        if !text.is_empty() {
            f(line_no, text)?;
        }
    }
    bar.finish_and_clear();
    Ok(())
}
