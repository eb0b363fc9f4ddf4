//! Backfill and reconciliation: page `GET /order` by `filter[updated_between]` windows with
//! `sort=id`, and add an event for each order whose current status is newer than what we hold.
//!
//! KeyCRM has no status history: such an event carries only the order's current status since
//! its `status_changed_at`, and is marked `backfilled` (a one-off backfill) or `reconciled` (the
//! periodic pass that catches lost webhooks), so the UI can say that the history is truncated.
//! Events go through the bus like webhooks (same idempotency key), so the processor stays the
//! only writer of derived data and a repeat is appended once.
//!
//! The position is stored after every page (`enrich_cursors`): an interrupted run resumes from
//! the page after the last one finished.

use std::collections::HashMap;
use std::time::Duration;

use ksa_bus::{Bus, NewRecord};
use ksa_schemas::bus::{STATUS_EVENTS, StatusMessage, order_key, status_idempotency_key};
use ksa_schemas::{EventSource, StatusEvent, Timestamp};
use ksa_state::enrich::CursorName;
use ksa_state::{EnrichStore, StateStore};
use serde::{Deserialize, Serialize};

use crate::api::{ListedOrder, parse_order_page};
use crate::client::{ApiError, ProjectClient};
use crate::{EnrichError, now};

/// Orders per page asked for (KeyCRM's maximum).
const PAGE_LIMIT: u32 = 50;
/// A guard against an API that never says it is on the last page.
const MAX_PAGES_PER_WINDOW: u32 = 10_000;

/// What to scan.
#[derive(Clone, Debug)]
pub struct ScanOptions {
    pub since: Timestamp,
    pub until: Timestamp,
    /// Width of one `updated_between` window.
    pub window: Duration,
    /// `Backfilled` or `Reconciled`.
    pub source: EventSource,
}

/// Where a scan stands; stored as JSON after every page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanCursor {
    pub since: i64,
    pub until: i64,
    pub window_start: i64,
    pub next_page: u32,
    pub orders_scanned: u64,
    pub events_added: u64,
    pub done: bool,
}

/// Progress as a scan reports it after every page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanProgress {
    pub windows_total: u64,
    pub windows_done: u64,
    /// Page just finished, and the last page of the current window.
    pub page: u32,
    pub last_page: u32,
    pub orders_scanned: u64,
    pub events_added: u64,
}

/// What a scan did in all (a resumed scan counts the part before the interruption too).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanReport {
    pub resumed: bool,
    pub pages: u64,
    pub orders_scanned: u64,
    pub events_added: u64,
}

/// `keycrm-analytics backfill`: scans `[since, until)`, resuming a stored unfinished backfill
/// that began at the same `since`.
pub async fn backfill<S, B>(
    client: &ProjectClient,
    state: &S,
    bus: &B,
    options: &ScanOptions,
    progress: &mut (dyn FnMut(&ScanProgress) + Send),
) -> Result<ScanReport, EnrichError>
where
    S: StateStore + EnrichStore,
    B: Bus,
{
    scan(client, state, bus, options, CursorName::Backfill, progress).await
}

/// One reconciliation pass: orders updated since the end of the previous pass (less `overlap`,
/// at most `lookback` ago) up to now get `reconciled` events where a webhook was lost.
pub async fn reconcile<S, B>(
    client: &ProjectClient,
    state: &S,
    bus: &B,
    lookback: Duration,
    overlap: Duration,
) -> Result<ScanReport, EnrichError>
where
    S: StateStore + EnrichStore,
    B: Bus,
{
    let until = now();
    let earliest = until.as_micros() - lookback.as_micros() as i64;
    let previous =
        state.cursor(client.project_id(), CursorName::Reconcile).await?.and_then(|text| serde_json::from_str::<ScanCursor>(&text).ok());
    let since = match &previous {
        Some(cursor) if !cursor.done => cursor.since,
        Some(cursor) => (cursor.until - overlap.as_micros() as i64).max(earliest),
        None => earliest,
    };
    let options = ScanOptions {
        since: Timestamp::from_micros(since),
        until,
        window: Duration::from_micros((until.as_micros() - since).max(1) as u64),
        source: EventSource::Reconciled,
    };
    let report = scan(client, state, bus, &options, CursorName::Reconcile, &mut |_| {}).await?;
    if report.events_added > 0 {
        tracing::warn!(
            project = client.slug(),
            events = report.events_added,
            "reconciliation found status changes whose webhook never arrived; added as `reconciled` events"
        );
    }
    Ok(report)
}

async fn scan<S, B>(
    client: &ProjectClient,
    state: &S,
    bus: &B,
    options: &ScanOptions,
    name: CursorName,
    progress: &mut (dyn FnMut(&ScanProgress) + Send),
) -> Result<ScanReport, EnrichError>
where
    S: StateStore + EnrichStore,
    B: Bus,
{
    let project_id = client.project_id();
    let stored = state.cursor(project_id, name).await?.and_then(|text| serde_json::from_str::<ScanCursor>(&text).ok());
    let (mut cursor, resumed) = match stored {
        Some(cursor) if !cursor.done && cursor.since == options.since.as_micros() => (cursor, true),
        _ => (
            ScanCursor {
                since: options.since.as_micros(),
                until: options.until.as_micros(),
                window_start: options.since.as_micros(),
                next_page: 1,
                orders_scanned: 0,
                events_added: 0,
                done: false,
            },
            false,
        ),
    };
    if resumed {
        tracing::info!(project = client.slug(), window_start = %Timestamp::from_micros(cursor.window_start), page = cursor.next_page, "resuming an interrupted scan");
    }
    let window = (options.window.as_micros() as i64).max(1_000_000);
    let windows_total = ((cursor.until - cursor.since).max(1) + window - 1) / window;
    let groups: HashMap<i64, u16> = state.statuses(project_id).await?.into_iter().map(|s| (s.status_id, s.group_id)).collect();
    let mut report = ScanReport { resumed, ..ScanReport::default() };

    while cursor.window_start < cursor.until {
        let window_end = (cursor.window_start + window).min(cursor.until);
        let filter = format!("{}, {}", keycrm_time(cursor.window_start), keycrm_time(window_end));
        loop {
            let page = cursor.next_page;
            let what = format!("order list page {page} of {filter}");
            let query = [
                ("limit", PAGE_LIMIT.to_string()),
                ("page", page.to_string()),
                ("sort", "id".to_owned()),
                ("filter[updated_between]", filter.clone()),
            ];
            let body = client.get("/order", &query, &what).await?;
            let parsed = parse_order_page(&body).map_err(|reason| ApiError::Malformed {
                project: client.slug().to_owned(),
                what: what.clone(),
                reason,
            })?;
            let added = add_missing_events(project_id, state, bus, &parsed.data, &groups, options.source).await?;
            cursor.orders_scanned += parsed.data.len() as u64;
            cursor.events_added += added;
            report.pages += 1;
            let last = parsed.is_last() || page >= MAX_PAGES_PER_WINDOW;
            if last {
                cursor.window_start = window_end;
                cursor.next_page = 1;
            } else {
                cursor.next_page = page + 1;
            }
            cursor.done = cursor.window_start >= cursor.until;
            let text = serde_json::to_string(&cursor).unwrap_or_default();
            state.put_cursor(project_id, name, Some(&text)).await?;
            progress(&ScanProgress {
                windows_total: windows_total as u64,
                windows_done: ((cursor.window_start - cursor.since) / window) as u64,
                page,
                last_page: parsed.last_page,
                orders_scanned: cursor.orders_scanned,
                events_added: cursor.events_added,
            });
            if last {
                break;
            }
        }
    }
    if !cursor.done {
        cursor.done = true;
        state.put_cursor(project_id, name, Some(&serde_json::to_string(&cursor).unwrap_or_default())).await?;
    }
    report.orders_scanned = cursor.orders_scanned;
    report.events_added = cursor.events_added;
    Ok(report)
}

/// Publishes an event for each listed order whose current status is newer than every event we
/// hold for it; returns how many.
async fn add_missing_events<S, B>(
    project_id: i64,
    state: &S,
    bus: &B,
    orders: &[ListedOrder],
    groups: &HashMap<i64, u16>,
    source: EventSource,
) -> Result<u64, EnrichError>
where
    S: StateStore,
    B: Bus,
{
    if orders.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = orders.iter().map(|o| o.id).collect();
    let held = state.order_events(project_id, &ids).await?;
    let received_at = now();
    let mut records = Vec::new();
    for order in orders {
        let latest = held.get(&order.id).and_then(|events| events.iter().map(|e| e.changed_at).max());
        if latest.is_some_and(|latest| latest >= order.status_changed_at) {
            continue;
        }
        let group_id = if order.status_group_id > 0 { order.status_group_id } else { groups.get(&order.status_id).copied().unwrap_or(0) };
        let event = StatusEvent {
            order_id: order.id,
            status_id: order.status_id,
            group_id,
            changed_at: order.status_changed_at,
            order_created_at: order.created_at,
            source,
        };
        // What the event came from, without anything personal (the order list has comments).
        let payload = serde_json::json!({
            "source": match source { EventSource::Reconciled => "reconciled", _ => "backfilled" },
            "order": {
                "id": order.id,
                "status_id": order.status_id,
                "status_group_id": group_id,
                "status_changed_at": order.status_changed_at.to_rfc3339(),
            }
        })
        .to_string();
        let message = StatusMessage::StatusChanged { project_id, event, received_at, payload };
        records.push(NewRecord {
            key: order_key(project_id, order.id),
            payload: serde_json::to_vec(&message).unwrap_or_default(),
            idempotency_key: Some(status_idempotency_key(project_id, &event)),
        });
    }
    if records.is_empty() {
        return Ok(0);
    }
    let outcomes = bus.append(STATUS_EVENTS, records).await?;
    Ok(outcomes.iter().filter(|o| matches!(o, ksa_bus::AppendOutcome::Appended { .. })).count() as u64)
}

/// `2026-01-01 00:00:00`: the form KeyCRM's `updated_between` filter takes (UTC).
fn keycrm_time(micros: i64) -> String {
    Timestamp::from_micros(micros).to_datetime().format("%Y-%m-%d %H:%M:%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_times_have_the_form_keycrm_takes() {
        assert_eq!(keycrm_time(1_767_225_600_000_000), "2026-01-01 00:00:00");
    }
}
