//! The replayed log: generated deliveries, and each one as the bus record ingest would append
//! for it.

use std::collections::HashSet;

use ksa_benches::traffic::{GeneratedEvent, TrafficSpec, deliveries, webhook_body};
use ksa_bus::NewRecord;
use ksa_schemas::bus::{StatusMessage, order_key, status_idempotency_key};
use ksa_schemas::{Timestamp, WebhookOutcome, kept_payload, parse_webhook};

use crate::Fallible;

/// The deliveries of one generated project, in delivery order.
pub struct Replay {
    pub events: Vec<GeneratedEvent>,
    /// `repeat[i]`: delivery `i` repeats an earlier one exactly (same order, status and time),
    /// so the outbox takes it as a duplicate and the processor never sees it.
    pub repeat: Vec<bool>,
    /// Deliveries that are not repeats: the records the outbox appends.
    pub unique: usize,
}

impl Replay {
    pub fn generate(spec: &TrafficSpec) -> Replay {
        let events = deliveries(spec);
        let mut seen = HashSet::with_capacity(events.len());
        let repeat: Vec<bool> = events.iter().map(|e| !seen.insert((e.order_id, e.changed_at, e.status_id))).collect();
        let unique = repeat.iter().filter(|r| !**r).count();
        Replay { events, repeat, unique }
    }

    pub fn orders(&self) -> usize {
        self.events.iter().map(|e| e.order_id).collect::<HashSet<_>>().len()
    }
}

/// The record ingest appends for `event` received at `received_at`: the same message, key and
/// idempotency key. `body` is scratch space for the webhook body.
pub fn status_record(project_id: i64, event: &GeneratedEvent, received_at: Timestamp, body: &mut String) -> Fallible<NewRecord> {
    body.clear();
    webhook_body(event, body);
    let parsed = match parse_webhook(body.as_bytes())? {
        WebhookOutcome::Status(parsed) => parsed,
        WebhookOutcome::Ignored { event } => return Err(format!("the generator made a `{event}` webhook, not a status change").into()),
    };
    // What ingest keeps of the body, not the body: the same bytes reach the event log as in `run`.
    let kept = kept_payload(body.as_bytes()).ok_or("the generator made a body that is not a JSON object")?;
    let message = StatusMessage::StatusChanged { project_id, event: parsed, received_at, payload: kept };
    Ok(NewRecord {
        key: order_key(project_id, parsed.order_id),
        payload: serde_json::to_vec(&message)?,
        idempotency_key: Some(status_idempotency_key(project_id, &parsed)),
    })
}
