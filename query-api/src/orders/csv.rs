//! `GET /api/orders.csv`: every matching order, one line each, streamed as it is written. The
//! listing's order is decided first (order ids only); lines are then written a chunk at a
//! time from the index, so memory stays flat whatever the count and the index is never held
//! while the client reads.

use std::fmt::Write;
use std::sync::Arc;

use bytes::Bytes;
use ksa_bus::Bus;
use ksa_schemas::Timestamp;
use ksa_state::StateStore;
use tokio::sync::mpsc;
use warp::reply::{Reply, Response};

use super::index::Entry;
use super::params::{Filters, Sort};
use super::rows::{Names, offset_at};
use super::select::{Measured, Snapshot, ordered};
use super::{Context, index::Clocks};
use crate::QueryApi;
use crate::error::ApiError;

/// Lines written per step.
const CHUNK: usize = 2_000;

/// A duration in seconds (whole, as the data's precision is the second) and as `HH:MM`.
fn durations(out: &mut String, micros: i64) {
    let seconds = micros.max(0) / 1_000_000;
    let _ = write!(out, ",{seconds},{:02}:{:02}", seconds / 3600, seconds % 3600 / 60);
}

/// A field, quoted when it holds a separator, a quote or a line break.
pub(crate) fn field(out: &mut String, text: &str) {
    out.push(',');
    if text.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(text);
    }
}

/// An instant in the project's zone, with its offset.
fn local(tz: chrono_tz::Tz, at: i64) -> String {
    let Some(utc) = chrono::DateTime::from_timestamp_micros(at) else { return String::new() };
    format!("{}{}", utc.with_timezone(&tz).format("%Y-%m-%dT%H:%M:%S"), offset_at(tz, Timestamp::from_micros(at)))
}

/// What the lines need besides the entries.
struct Layout {
    names: Names,
    /// The groups and cycles that have columns, in order.
    groups: Vec<u16>,
    cycles: Vec<(u32, String)>,
    tz: chrono_tz::Tz,
}

impl Layout {
    fn header(&self) -> String {
        let mut out = String::from("order_id");
        for name in [
            "status_id",
            "status",
            "group_id",
            "group",
            "created_at",
            "changed_at",
            "open",
            "urgency",
            "urgency_source",
            "sla",
            "overdue",
            "working_seconds",
            "working_hhmm",
            "wall_seconds",
            "wall_hhmm",
        ] {
            field(&mut out, name);
        }
        for group in &self.groups {
            let name = self.names.group(*group).map_or_else(|| format!("group {group}"), str::to_owned);
            for column in ["working_seconds", "working_hhmm", "wall_seconds", "wall_hhmm", "visits", "limit_seconds", "sla"] {
                field(&mut out, &format!("{name}: {column}"));
            }
        }
        for (id, title) in &self.cycles {
            let name = if title.is_empty() { format!("cycle {id}") } else { title.clone() };
            for column in ["working_seconds", "working_hhmm", "wall_seconds", "wall_hhmm", "open"] {
                field(&mut out, &format!("{name}: {column}"));
            }
        }
        out.push_str("\r\n");
        out
    }

    fn line(&self, out: &mut String, entry: &Entry, clocks: &mut Clocks, as_of: i64) {
        let m = Measured::measure(entry, clocks);
        let _ = write!(out, "{}", entry.order_id);
        let _ = write!(out, ",{}", entry.status_id);
        field(out, self.names.status(entry.status_id).unwrap_or(""));
        let _ = write!(out, ",{}", entry.group_id);
        field(out, self.names.group(entry.group_id).unwrap_or(""));
        field(out, &local(self.tz, entry.started_at));
        field(out, &local(self.tz, entry.last));
        field(out, if entry.open { "true" } else { "false" });
        field(out, ["pending", "normal", "urgent"][usize::from(entry.urgency.min(2))]);
        field(out, &entry.urgency_source);
        field(out, m.sla(as_of).as_str());
        field(out, if m.overdue(as_of) { "true" } else { "false" });
        durations(out, m.working());
        durations(out, m.wall());
        for group in &self.groups {
            match m.group(*group) {
                Some((working, wall, visits)) => {
                    durations(out, working);
                    durations(out, wall);
                    let limit = entry.groups.iter().find(|g| g.group_id == *group).and_then(|g| g.limit_seconds);
                    let _ = write!(out, ",{visits},{}", limit.map(|l| l.to_string()).unwrap_or_default());
                    field(out, m.group_sla(*group, as_of).as_str());
                }
                None => out.push_str(",,,,,,,"),
            }
        }
        for (id, _) in &self.cycles {
            match m.cycle(*id) {
                Some((working, wall, open)) => {
                    durations(out, working);
                    durations(out, wall);
                    field(out, if open { "true" } else { "false" });
                }
                None => out.push_str(",,,,,"),
            }
        }
        out.push_str("\r\n");
    }
}

/// The CSV answer, streamed.
pub async fn stream<S: StateStore, B: Bus>(
    api: Arc<QueryApi<S, B>>,
    context: Context,
    filters: Filters,
    sort: Sort,
    names: Names,
) -> Result<Response, ApiError> {
    let ids = {
        let filters = filters.clone();
        context
            .on_snapshot(&api, move |snapshot, clocks| {
                let as_of = snapshot.as_of;
                let listing: Vec<(i64, &Entry)> = ordered(snapshot, clocks, &filters, sort, None).collect();
                listing
                    .into_iter()
                    .filter(|(_, e)| Measured::measure(e, clocks).matches(&filters, as_of))
                    .map(|(_, e)| e.order_id)
                    .collect::<Vec<_>>()
            })
            .await?
    };
    let mut groups: Vec<u16> = names.groups.iter().map(|(id, _)| *id).collect();
    if groups.is_empty() {
        groups = (1..=6).collect();
    }
    let cycles = context.rules.settings.cycles.iter().map(|c| (c.id, c.title.clone())).collect();
    let layout = Arc::new(Layout { names, groups, cycles, tz: context.rules.settings.timezone });
    let filename = format!(
        "orders-{}-{}.csv",
        context.project.slug,
        chrono::DateTime::from_timestamp_micros(context.as_of.as_micros())
            .unwrap_or_default()
            .with_timezone(&layout.tz)
            .format("%Y-%m-%d_%H%M")
    );
    let (sender, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let header = layout.header();
    tokio::spawn(async move {
        if sender.send(Ok(Bytes::from(header))).await.is_err() {
            return;
        }
        let ids = Arc::new(ids);
        for start in (0..ids.len()).step_by(CHUNK) {
            let (ids, layout) = (ids.clone(), layout.clone());
            let chunk = context
                .on_snapshot(&api, move |snapshot: &Snapshot, clocks| {
                    let mut out = String::with_capacity(CHUNK * 256);
                    for id in &ids[start..(start + CHUNK).min(ids.len())] {
                        // An order gone since the listing (a deleted project) is left out.
                        if let Some(entry) = snapshot.get(*id) {
                            layout.line(&mut out, entry, clocks, snapshot.as_of);
                        }
                    }
                    out
                })
                .await;
            let chunk = match chunk {
                Ok(chunk) => Ok(Bytes::from(chunk)),
                Err(error) => Err(std::io::Error::other(error.message)),
            };
            let failed = chunk.is_err();
            if sender.send(chunk).await.is_err() || failed {
                return;
            }
        }
    });
    let body = futures_util::stream::unfold(receiver, |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) });
    let mut response = warp::reply::stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert("content-type", warp::http::HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(value) = warp::http::HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert("content-disposition", value);
    }
    Ok(response)
}
