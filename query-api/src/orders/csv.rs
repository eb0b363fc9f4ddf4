//! `GET /api/orders.csv`: every matching order, one line each, streamed as it is written. The
//! listing's order is decided first (order ids only); lines are then written a chunk at a
//! time from the index, so memory stays flat whatever the count and the index is never held
//! while the client reads.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{Datelike, Offset, TimeZone, Timelike};
use ksa_bus::Bus;
use ksa_state::StateStore;
use tokio::sync::mpsc;
use warp::reply::{Reply, Response};

use super::index::Entry;
use super::params::{Filters, Sort};
use super::rows::Names;
use super::select::{Measured, Snapshot, ordered};
use super::{Context, index::Clocks};
use crate::QueryApi;
use crate::error::ApiError;

/// Lines written per step.
const CHUNK: usize = 2_000;

/// A number in decimal. Lines are mostly numbers: written without the formatting machinery,
/// a line costs about half as much.
fn number(out: &mut String, n: i64) {
    let mut digits = [0u8; 20];
    let (mut at, mut rest) = (digits.len(), n.unsigned_abs());
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        out.push('-');
    }
    out.extend(digits[at..].iter().map(|d| char::from(*d)));
}

/// A number of at least two digits.
fn two_digits(out: &mut String, n: i64) {
    if (0..10).contains(&n) {
        out.push('0');
    }
    number(out, n);
}

/// A duration in seconds (whole, as the data's precision is the second) and as `HH:MM`.
fn durations(out: &mut String, micros: i64) {
    let seconds = micros.max(0) / 1_000_000;
    out.push(',');
    number(out, seconds);
    out.push(',');
    two_digits(out, seconds / 3600);
    out.push(':');
    two_digits(out, seconds % 3600 / 60);
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

/// A field: an instant in the project's zone with its offset (`2026-02-02T09:00:00+02:00`).
fn local(out: &mut String, tz: chrono_tz::Tz, at: i64) {
    out.push(',');
    let Some(utc) = chrono::DateTime::from_timestamp_micros(at) else { return };
    let offset = tz.offset_from_utc_datetime(&utc.naive_utc()).fix().local_minus_utc();
    let local = utc.naive_utc() + chrono::TimeDelta::seconds(i64::from(offset));
    number(out, i64::from(local.year()));
    for (separator, value) in [('-', local.month()), ('-', local.day()), ('T', local.hour()), (':', local.minute()), (':', local.second())]
    {
        out.push(separator);
        two_digits(out, i64::from(value));
    }
    out.push(if offset < 0 { '-' } else { '+' });
    let offset = i64::from(offset.abs());
    two_digits(out, offset / 3600);
    out.push(':');
    two_digits(out, offset % 3600 / 60);
    if offset % 60 != 0 {
        out.push(':');
        two_digits(out, offset % 60);
    }
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
        number(out, entry.order_id);
        out.push(',');
        number(out, entry.status_id);
        field(out, self.names.status(entry.status_id).unwrap_or(""));
        out.push(',');
        number(out, i64::from(entry.group_id));
        field(out, self.names.group(entry.group_id).unwrap_or(""));
        local(out, self.tz, entry.started_at);
        local(out, self.tz, entry.last);
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
                    out.push(',');
                    number(out, i64::from(visits));
                    out.push(',');
                    if let Some(limit) = limit {
                        number(out, limit);
                    }
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

#[cfg(test)]
mod tests {
    use ksa_schemas::Timestamp;

    use super::*;

    #[test]
    fn numbers_are_written_as_the_formatter_writes_them() {
        for n in [0, 7, 10, 99, 100, 12_345, -1, -10, i64::MAX, i64::MIN, 1_000_000_007] {
            let mut out = String::new();
            number(&mut out, n);
            assert_eq!(out, n.to_string());
        }
        let mut out = String::new();
        durations(&mut out, 93_784_000_000);
        assert_eq!(out, ",93784,26:03");
    }

    #[test]
    fn local_instants_equal_chronos_around_daylight_saving_changes() {
        let kyiv: chrono_tz::Tz = "Europe/Kyiv".parse().unwrap();
        let zones = [kyiv, chrono_tz::UTC, "America/St_Johns".parse().unwrap(), "Asia/Kolkata".parse().unwrap()];
        // Every 7 minutes 30 seconds over the spring and autumn changes of 2026, and a few
        // instants far apart.
        let spring = chrono::DateTime::parse_from_rfc3339("2026-03-29T00:00:00Z").unwrap().timestamp_micros();
        let autumn = chrono::DateTime::parse_from_rfc3339("2026-10-25T00:00:00Z").unwrap().timestamp_micros();
        let step = 450 * 1_000_000;
        let instants =
            (0..200).map(|i| spring + i * step).chain((0..200).map(|i| autumn + i * step)).chain([0, 1_234_567, 4_102_444_799_999_999]);
        for at in instants {
            for tz in zones {
                let utc = chrono::DateTime::from_timestamp_micros(at).unwrap();
                let expected = format!(
                    ",{}{}",
                    utc.with_timezone(&tz).format("%Y-%m-%dT%H:%M:%S"),
                    super::super::rows::offset_at(tz, Timestamp::from_micros(at))
                );
                let mut out = String::new();
                local(&mut out, tz, at);
                assert_eq!(out, expected, "{at} in {tz}");
            }
        }
    }
}
