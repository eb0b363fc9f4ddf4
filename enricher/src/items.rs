//! One order's items: fetch `GET /order/{id}?include=products.offer,marketing`, store the lines
//! and the marketing row (which marks the order's job done), and publish `ItemsFetched` on the
//! status-events path so that the processor applies urgency in order with the order's events.

use ksa_bus::{Bus, NewRecord};
use ksa_domain::{Urgency, urgency_of};
use ksa_schemas::bus::{STATUS_EVENTS, StatusMessage, order_key};
use ksa_schemas::{ProjectSettings, Timestamp, parse_order_details};
use ksa_state::enrich::FetchedItems;
use ksa_state::{EnrichStore, StateStore};

use crate::client::{ApiError, ProjectClient};
use crate::marketing::marketing_row;
use crate::{EnrichError, now};

/// What one fetch found.
#[derive(Clone, Debug, PartialEq)]
pub struct ItemsOutcome {
    pub lines: usize,
    pub urgency: Urgency,
    pub fetched_at: Timestamp,
}

/// Fetches, stores and announces one order's items.
pub async fn fetch_items<S, B>(client: &ProjectClient, state: &S, bus: &B, order_id: i64) -> Result<ItemsOutcome, EnrichError>
where
    S: StateStore + EnrichStore,
    B: Bus,
{
    let project_id = client.project_id();
    let what = format!("order {order_id}");
    let body = client.get(&format!("/order/{order_id}"), &[("include", "products.offer,marketing".to_owned())], &what).await?;
    let order = parse_order_details(&body).map_err(|error| ApiError::Malformed {
        project: client.slug().to_owned(),
        what: what.clone(),
        reason: error.to_string(),
    })?;
    if order.id != order_id {
        return Err(ApiError::Malformed {
            project: client.slug().to_owned(),
            what,
            reason: format!("asked for order {order_id}, got order {}", order.id),
        }
        .into());
    }
    let rules = match state.settings(project_id).await? {
        Some(record) => ProjectSettings::from_json(&record.document).map(|s| s.urgency_rules).unwrap_or_default(),
        None => Vec::new(),
    };
    let urgency = urgency_of(&order.lines, &rules);
    let fetched_at = now();
    let items = FetchedItems {
        project_id,
        order_id,
        marketing: marketing_row(order.marketing.as_ref(), order.manager_comment.as_deref()),
        lines: order.lines,
        fetched_at,
    };
    state.store_items(&items).await?;
    let message = StatusMessage::ItemsFetched { project_id, order_id, urgency: urgency.as_str().to_owned(), fetched_at };
    let payload = serde_json::to_vec(&message).unwrap_or_default();
    bus.append(STATUS_EVENTS, vec![NewRecord { key: order_key(project_id, order_id), payload, idempotency_key: None }]).await?;
    tracing::debug!(project = client.slug(), order_id, lines = items.lines.len(), urgency = urgency.as_str(), "order items fetched");
    Ok(ItemsOutcome { lines: items.lines.len(), urgency, fetched_at })
}
