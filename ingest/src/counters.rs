//! Webhook counters per project, hour and outcome: counted in memory on the hot path, added to
//! the state database in the background.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ksa_schemas::Timestamp;
use ksa_state::{StateStore, WebhookCount};

const HOUR: i64 = 3_600_000_000;

/// `(project_id, hour in µs, outcome, reason)`.
type CounterKey = (i64, i64, &'static str, &'static str);

#[derive(Clone, Default)]
pub struct Counters {
    pending: Arc<Mutex<HashMap<CounterKey, i64>>>,
}

impl Counters {
    pub fn count(&self, project_id: i64, at: Timestamp, outcome: &'static str, reason: &'static str) {
        let hour = at.as_micros().div_euclid(HOUR) * HOUR;
        if let Ok(mut pending) = self.pending.lock() {
            *pending.entry((project_id, hour, outcome, reason)).or_default() += 1;
        }
    }

    /// Adds what was counted since the last flush to the state database. On failure the counts
    /// are kept for the next flush.
    pub async fn flush<S: StateStore>(&self, state: &S) {
        let taken: Vec<WebhookCount> = match self.pending.lock() {
            Ok(mut pending) => pending
                .drain()
                .map(|((project_id, hour, outcome, reason), count)| WebhookCount {
                    project_id,
                    hour: Timestamp::from_micros(hour),
                    outcome: outcome.into(),
                    reason: reason.into(),
                    count,
                })
                .collect(),
            Err(_) => return,
        };
        if taken.is_empty() {
            return;
        }
        if let Err(err) = state.add_webhook_counts(&taken).await {
            tracing::warn!(error = %err, "webhook counters not saved yet; will retry");
            if let Ok(mut pending) = self.pending.lock() {
                for c in taken {
                    let outcome = intern(&c.outcome);
                    let reason = intern(&c.reason);
                    *pending.entry((c.project_id, c.hour.as_micros(), outcome, reason)).or_default() += c.count;
                }
            }
        }
    }
}

fn intern(text: &str) -> &'static str {
    const KNOWN: [&str; 14] = [
        "received",
        "accepted",
        "duplicate",
        "ignored",
        "rejected",
        "",
        "unauthorized",
        "forbidden",
        "too_large",
        "unsupported_media_type",
        "malformed",
        "unavailable",
        "overloaded",
        "invalid_field",
    ];
    KNOWN.iter().find(|k| **k == text).copied().unwrap_or("other")
}
