//! Urgency in the processor: an order's urgency comes from its items as the enricher stored them
//! (`order_items`), judged by the project's current rules, so that a rule change recomputes it
//! like every other derived value. An order whose items were never fetched is `pending`.
//!
//! The processor also asks the enricher for items (`enrich-requests`): for an order that has
//! none yet, and again when an order enters the configured status group.

use std::collections::HashMap;

use ksa_bus::NewRecord;
use ksa_domain::row::urgency_with_source;
use ksa_domain::{ProjectRules, Urgency};
use ksa_schemas::StatusEvent;
use ksa_schemas::bus::{EnrichReason, EnrichRequest, order_key};
use ksa_schemas::row::UrgencySource;
use ksa_state::{EnrichStore, StateError};

/// The urgency of each of `order_ids` whose items were fetched, and why (absent = pending).
pub async fn urgencies<S: EnrichStore>(
    state: &S,
    project_id: i64,
    order_ids: &[i64],
    rules: &ProjectRules,
) -> Result<HashMap<i64, (Urgency, UrgencySource)>, StateError> {
    let lines = state.order_lines(project_id, order_ids).await?;
    Ok(lines.into_iter().map(|(order_id, lines)| (order_id, urgency_with_source(&lines, &rules.settings.urgency_rules))).collect())
}

/// The enrichment request for an order that got new events, if it needs one: its items are
/// unknown and the processor sees the order for the first time (`first_sight`: new, or not
/// cached since a restart), or one of the new events entered `refetch_group`.
pub fn enrich_request(
    project_id: i64,
    order_id: i64,
    urgency: Urgency,
    fresh: &[StatusEvent],
    first_sight: bool,
    refetch_group: Option<u16>,
) -> Option<NewRecord> {
    let latest = fresh.iter().max_by_key(|e| e.timeline_key())?;
    let reason = if urgency == Urgency::Pending && first_sight {
        EnrichReason::MissingItems
    } else if refetch_group.is_some_and(|group| fresh.iter().any(|e| e.group_id == group)) {
        EnrichReason::GroupReached
    } else {
        return None;
    };
    let request = EnrichRequest { project_id, order_id, reason, status_id: Some(latest.status_id) };
    Some(NewRecord { key: order_key(project_id, order_id), payload: serde_json::to_vec(&request).ok()?, idempotency_key: None })
}

#[cfg(test)]
mod tests {
    use ksa_schemas::{EventSource, Timestamp};

    use super::*;

    fn ev(status: i64, group: u16) -> StatusEvent {
        StatusEvent {
            order_id: 9,
            status_id: status,
            group_id: group,
            changed_at: Timestamp::from_seconds(status),
            order_created_at: Timestamp::from_seconds(0),
            source: EventSource::Webhook,
        }
    }

    fn reason(record: Option<NewRecord>) -> Option<(EnrichReason, Option<i64>)> {
        record.map(|r| serde_json::from_slice::<EnrichRequest>(&r.payload).unwrap()).map(|r| (r.reason, r.status_id))
    }

    #[test]
    fn orders_without_items_ask_for_them_naming_their_latest_status() {
        assert_eq!(
            reason(enrich_request(1, 9, Urgency::Pending, &[ev(1, 1), ev(20, 2)], true, None)),
            Some((EnrichReason::MissingItems, Some(20)))
        );
        assert_eq!(reason(enrich_request(1, 9, Urgency::Pending, &[ev(21, 2)], false, None)), None, "asked already");
        assert_eq!(reason(enrich_request(1, 9, Urgency::Normal, &[ev(20, 2)], true, None)), None);
        assert_eq!(reason(enrich_request(1, 9, Urgency::Pending, &[], true, None)), None, "no new events, no request");
    }

    #[test]
    fn entering_the_refetch_group_asks_again() {
        assert_eq!(reason(enrich_request(1, 9, Urgency::Urgent, &[ev(7, 3)], false, Some(3))), Some((EnrichReason::GroupReached, Some(7))));
        assert_eq!(reason(enrich_request(1, 9, Urgency::Urgent, &[ev(11, 4)], false, Some(3))), None);
    }
}
