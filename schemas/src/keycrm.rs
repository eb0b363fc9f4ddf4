//! KeyCRM's shapes as they really arrive (examples in `fixtures/keycrm/`): the webhook body and
//! the order object of `GET /order/{id}?include=products.offer,marketing`.

use serde::Deserialize;

use crate::event::{EventSource, StatusEvent};
use crate::loose::{Loose, MaybeObject};
use crate::time::Timestamp;

/// The only webhook event that becomes a status event.
pub const STATUS_CHANGE_EVENT: &str = "order.change_order_status";

/// What a webhook body means to us.
#[derive(Clone, Debug, PartialEq)]
pub enum WebhookOutcome {
    Status(StatusEvent),
    /// A well-formed event of a type we do not process (payment status, leads, …): acknowledged
    /// and counted, never stored.
    Ignored {
        event: String,
    },
}

/// Why a webhook body was rejected. The message names the field, so a client can fix it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("body is not a JSON object of the KeyCRM webhook shape: {0}")]
    Malformed(String),
    #[error("{field}: missing")]
    Missing { field: &'static str },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl WebhookError {
    /// The field the error is about, when there is one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            WebhookError::Malformed(_) => None,
            WebhookError::Missing { field } | WebhookError::Invalid { field, .. } => Some(field),
        }
    }
}

#[derive(Deserialize)]
struct RawWebhook<'a> {
    #[serde(borrow, default)]
    event: Loose<'a>,
    #[serde(borrow, default)]
    context: MaybeObject<RawContext<'a>>,
}

#[derive(Deserialize)]
struct RawContext<'a> {
    #[serde(borrow, default)]
    id: Loose<'a>,
    #[serde(borrow, default)]
    status_id: Loose<'a>,
    #[serde(borrow, default)]
    status_group_id: Loose<'a>,
    #[serde(borrow, default)]
    status_changed_at: Loose<'a>,
    #[serde(borrow, default)]
    created_at: Loose<'a>,
    #[serde(borrow, default)]
    ordered_at: Loose<'a>,
}

/// Parses one webhook body exactly as KeyCRM posts it.
pub fn parse_webhook(body: &[u8]) -> Result<WebhookOutcome, WebhookError> {
    let raw: RawWebhook = serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    let event = match &raw.event {
        Loose::Str(name) if !name.trim().is_empty() => name.trim(),
        Loose::Null => return Err(WebhookError::Missing { field: "event" }),
        other => {
            return Err(WebhookError::Invalid { field: "event", reason: format!("{} is not an event name", other.describe()) });
        }
    };
    if event != STATUS_CHANGE_EVENT {
        return Ok(WebhookOutcome::Ignored { event: event.to_owned() });
    }
    let context = raw.context.0.ok_or(WebhookError::Missing { field: "context" })?;
    let order_id = positive_id(&context.id, "context.id")?;
    let status_id = positive_id(&context.status_id, "context.status_id")?;
    let group_id = match &context.status_group_id {
        Loose::Null => 0,
        value => value.as_i64().and_then(|g| u16::try_from(g).ok()).filter(|g| *g > 0).ok_or_else(|| WebhookError::Invalid {
            field: "context.status_group_id",
            reason: format!("{} is not a status group id", value.describe()),
        })?,
    };
    let changed_at = required_time(&context.status_changed_at, "context.status_changed_at")?;
    let order_created_at = optional_time(&context.created_at).or_else(|| optional_time(&context.ordered_at)).unwrap_or(changed_at);
    Ok(WebhookOutcome::Status(StatusEvent { order_id, status_id, group_id, changed_at, order_created_at, source: EventSource::Webhook }))
}

fn positive_id(value: &Loose, field: &'static str) -> Result<i64, WebhookError> {
    if value.is_absent() {
        return Err(WebhookError::Missing { field });
    }
    value
        .as_i64()
        .filter(|id| *id > 0)
        .ok_or_else(|| WebhookError::Invalid { field, reason: format!("{} is not a positive integer id", value.describe()) })
}

fn required_time(value: &Loose, field: &'static str) -> Result<Timestamp, WebhookError> {
    match value {
        Loose::Null => Err(WebhookError::Missing { field }),
        Loose::Str(text) => Timestamp::parse(text).ok_or_else(|| WebhookError::Invalid {
            field,
            reason: format!("{} is not a timestamp (expected 2026-01-29T18:53:35.000000Z)", value.describe()),
        }),
        other => Err(WebhookError::Invalid { field, reason: format!("{} is not a timestamp", other.describe()) }),
    }
}

fn optional_time(value: &Loose) -> Option<Timestamp> {
    value.as_str().and_then(Timestamp::parse)
}

/// An order as `GET /order/{id}?include=products.offer,marketing` returns it, reduced to what
/// urgency and marketing analytics need.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OrderDetails {
    pub id: i64,
    pub lines: Vec<OrderLine>,
    pub marketing: Option<Marketing>,
    /// May hold the recipient's phone and address: personal data, never logged.
    pub manager_comment: Option<String>,
}

/// One product line. KeyCRM has no top-level offer or product id on a line: they live in
/// `offer`, and the line `sku` may differ from `offer.sku`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OrderLine {
    pub line_id: Option<i64>,
    pub sku: Option<String>,
    pub name: Option<String>,
    pub quantity: f64,
    pub price_sold: Option<f64>,
    pub offer_id: Option<i64>,
    pub offer_sku: Option<String>,
    pub product_id: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Marketing {
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    pub utm_term: Option<String>,
    pub utm_content: Option<String>,
}

#[derive(Deserialize)]
struct RawOrder<'a> {
    #[serde(borrow, default)]
    id: Loose<'a>,
    #[serde(borrow, default)]
    products: Option<Vec<MaybeObject<RawLine<'a>>>>,
    #[serde(borrow, default)]
    marketing: MaybeObject<RawMarketing<'a>>,
    #[serde(borrow, default)]
    manager_comment: Loose<'a>,
}

#[derive(Deserialize)]
struct RawLine<'a> {
    #[serde(borrow, default)]
    id: Loose<'a>,
    #[serde(borrow, default)]
    sku: Loose<'a>,
    #[serde(borrow, default)]
    name: Loose<'a>,
    #[serde(borrow, default)]
    quantity: Loose<'a>,
    #[serde(borrow, default)]
    price_sold: Loose<'a>,
    #[serde(borrow, default)]
    offer: MaybeObject<RawOffer<'a>>,
}

#[derive(Deserialize)]
struct RawOffer<'a> {
    #[serde(borrow, default)]
    id: Loose<'a>,
    #[serde(borrow, default)]
    product_id: Loose<'a>,
    #[serde(borrow, default)]
    sku: Loose<'a>,
}

#[derive(Deserialize)]
struct RawMarketing<'a> {
    #[serde(borrow, default)]
    utm_source: Loose<'a>,
    #[serde(borrow, default)]
    utm_medium: Loose<'a>,
    #[serde(borrow, default)]
    utm_campaign: Loose<'a>,
    #[serde(borrow, default)]
    utm_term: Loose<'a>,
    #[serde(borrow, default)]
    utm_content: Loose<'a>,
}

fn text(value: &Loose) -> Option<String> {
    value.to_text().filter(|s| !s.is_empty())
}

/// Parses an order object of the KeyCRM API.
pub fn parse_order_details(body: &[u8]) -> Result<OrderDetails, WebhookError> {
    let raw: RawOrder = serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    let id = positive_id(&raw.id, "id")?;
    let lines = raw
        .products
        .unwrap_or_default()
        .into_iter()
        .filter_map(|line| line.0)
        .map(|line| {
            let offer = line.offer.0;
            OrderLine {
                line_id: line.id.as_i64(),
                sku: text(&line.sku),
                name: text(&line.name),
                quantity: line.quantity.as_f64().unwrap_or(0.0),
                price_sold: line.price_sold.as_f64(),
                offer_id: offer.as_ref().and_then(|o| o.id.as_i64()),
                offer_sku: offer.as_ref().and_then(|o| text(&o.sku)),
                product_id: offer.as_ref().and_then(|o| o.product_id.as_i64()),
            }
        })
        .collect();
    let marketing = raw.marketing.0.map(|m| Marketing {
        utm_source: text(&m.utm_source),
        utm_medium: text(&m.utm_medium),
        utm_campaign: text(&m.utm_campaign),
        utm_term: text(&m.utm_term),
        utm_content: text(&m.utm_content),
    });
    Ok(OrderDetails { id, lines, marketing, manager_comment: text(&raw.manager_comment) })
}
