//! Values as both stores keep them in columns: event sources as text, CIDR lists joined by
//! commas, narrow integers widened to 64 bits, and the status groups every project starts with.

use std::collections::BTreeMap;

use ksa_schemas::EventSource;

use crate::{StateError, WebhookCount, WebhookLatency, WebhookLatest};

/// KeyCRM's six status groups as a new project gets them: `(group_id, name, is_terminal)`.
/// Completed and canceled stop the clock (docs/domain.md, "Projects, groups and statuses").
pub(crate) const STATUS_GROUPS: [(i64, &str, bool); 6] = [
    (1, "Новий", false),
    (2, "Погодження", false),
    (3, "Виробництво", false),
    (4, "Доставка", false),
    (5, "Виконано", true),
    (6, "Скасовано", true),
];

pub(crate) fn source_name(source: EventSource) -> &'static str {
    match source {
        EventSource::Webhook => "webhook",
        EventSource::Backfilled => "backfilled",
        EventSource::Reconciled => "reconciled",
    }
}

pub(crate) fn parse_source(name: &str) -> Result<EventSource, StateError> {
    match name {
        "webhook" => Ok(EventSource::Webhook),
        "backfilled" => Ok(EventSource::Backfilled),
        "reconciled" => Ok(EventSource::Reconciled),
        other => Err(StateError::Corrupt(format!("event source `{other}` is not webhook, backfilled or reconciled"))),
    }
}

pub(crate) fn join_cidrs(cidrs: &[String]) -> String {
    cidrs.iter().map(|c| c.trim()).filter(|c| !c.is_empty()).collect::<Vec<_>>().join(",")
}

pub(crate) fn split_cidrs(joined: &str) -> Vec<String> {
    joined.split(',').map(str::trim).filter(|c| !c.is_empty()).map(String::from).collect()
}

/// A status group id read back from a 64-bit column.
pub(crate) fn group_id(value: i64, column: &str) -> Result<u16, StateError> {
    u16::try_from(value).map_err(|_| StateError::Corrupt(format!("{column} {value} is not a status group id")))
}

/// A count read back from a 64-bit column.
pub(crate) fn count(value: i64, column: &str) -> Result<u32, StateError> {
    u32::try_from(value).map_err(|_| StateError::Corrupt(format!("{column} {value} is out of range")))
}

/// Rows with the same key merged into one, in key order, so that one statement upserts each
/// key once (PostgreSQL refuses an upsert that touches a row twice).
fn merged<T: Clone, K: Ord>(rows: &[T], key: impl Fn(&T) -> K, merge: impl Fn(&mut T, &T)) -> Vec<T> {
    let mut by_key: BTreeMap<K, T> = BTreeMap::new();
    for row in rows {
        match by_key.entry(key(row)) {
            std::collections::btree_map::Entry::Occupied(mut kept) => merge(kept.get_mut(), row),
            std::collections::btree_map::Entry::Vacant(place) => {
                place.insert(row.clone());
            }
        }
    }
    by_key.into_values().collect()
}

/// Webhook counts with the same key summed into one.
pub(crate) fn summed_webhook_counts(counts: &[WebhookCount]) -> Vec<WebhookCount> {
    merged(counts, |c| (c.project_id, c.hour.as_micros(), c.outcome.clone(), c.reason.clone()), |kept, c| kept.count += c.count)
}

/// Webhook latencies with the same key summed into one.
pub(crate) fn summed_webhook_latencies(latencies: &[WebhookLatency]) -> Vec<WebhookLatency> {
    merged(latencies, |l| (l.project_id, l.hour.as_micros(), l.bucket), |kept, l| kept.count += l.count)
}

/// The latest of the last webhooks with the same key.
pub(crate) fn latest_webhooks(latest: &[WebhookLatest]) -> Vec<WebhookLatest> {
    merged(
        latest,
        |l| (l.project_id, l.kind.clone(), l.hour.as_micros()),
        |kept, l| {
            if l.at > kept.at {
                *kept = l.clone();
            }
        },
    )
}

/// The ids, sorted, each once.
pub(crate) fn distinct_ids(ids: &[i64]) -> Vec<i64> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Adds event rows (`order_id, status_id, status_group_id, changed_micros, created_micros,
/// source`) to `events`, by order.
pub(crate) fn add_events(
    events: &mut std::collections::HashMap<i64, Vec<ksa_schemas::StatusEvent>>,
    rows: impl Iterator<Item = crate::sql::Row>,
) -> Result<(), StateError> {
    for row in rows {
        let event = ksa_schemas::StatusEvent {
            order_id: row.get("order_id")?,
            status_id: row.get("status_id")?,
            group_id: group_id(row.get("status_group_id")?, "status_group_id")?,
            changed_at: row.instant("changed_micros")?,
            order_created_at: row.instant("created_micros")?,
            source: parse_source(&row.get::<String, _>("source")?)?,
        };
        events.entry(event.order_id).or_default().push(event);
    }
    Ok(())
}

/// `consumer_offsets` rows `(partition, next_offset)` by partition.
pub(crate) fn consumer_offsets(rows: Vec<(i64, i64)>) -> Result<std::collections::HashMap<u32, i64>, StateError> {
    rows.into_iter()
        .map(|(partition, next_offset)| {
            let partition = u32::try_from(partition)
                .map_err(|_| StateError::Corrupt(format!("consumer offset partition {partition} is out of range")))?;
            Ok((partition, next_offset))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_survive_joining_and_splitting_without_blanks() {
        let cidrs = vec!["10.0.0.0/8".to_owned(), " 192.168.1.0/24 ".to_owned(), String::new()];
        let joined = join_cidrs(&cidrs);
        assert_eq!(joined, "10.0.0.0/8,192.168.1.0/24");
        assert_eq!(split_cidrs(&joined), vec!["10.0.0.0/8", "192.168.1.0/24"]);
        assert!(split_cidrs("").is_empty());
    }

    #[test]
    fn every_source_reads_back_as_itself() {
        for source in [EventSource::Webhook, EventSource::Backfilled, EventSource::Reconciled] {
            assert_eq!(parse_source(source_name(source)).ok(), Some(source));
        }
        assert!(parse_source("email").is_err());
    }
}
