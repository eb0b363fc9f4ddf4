//! Webhook statistics per project and hour, counted in memory on the hot path and added to the
//! state database in the background: counts by outcome, a latency histogram, and the last
//! accepted and last refused webhook.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ksa_schemas::Timestamp;
use ksa_state::{StateStore, WebhookCount, WebhookLatency, WebhookLatest, WebhookTally, latency};

const HOUR: i64 = 3_600_000_000;

/// `(project_id, hour in µs, outcome, reason)`.
type CounterKey = (i64, i64, &'static str, &'static str);

/// `(project_id, hour in µs, latency bucket)`.
type LatencyKey = (i64, i64, u8);

/// `(project_id, hour in µs, kind)` to `(instant in µs, reason)`.
type LatestKey = (i64, i64, &'static str);

#[derive(Default)]
struct Pending {
    counts: HashMap<CounterKey, i64>,
    latencies: HashMap<LatencyKey, i64>,
    latest: HashMap<LatestKey, (i64, &'static str)>,
}

impl Pending {
    fn note_latest(&mut self, key: LatestKey, at: i64, reason: &'static str) {
        let kept = self.latest.entry(key).or_insert((at, reason));
        if at >= kept.0 {
            *kept = (at, reason);
        }
    }

    fn take(&mut self) -> WebhookTally {
        WebhookTally {
            counts: self
                .counts
                .drain()
                .map(|((project_id, hour, outcome, reason), count)| WebhookCount {
                    project_id,
                    hour: Timestamp::from_micros(hour),
                    outcome: outcome.into(),
                    reason: reason.into(),
                    count,
                })
                .collect(),
            latencies: self
                .latencies
                .drain()
                .map(|((project_id, hour, bucket), count)| WebhookLatency { project_id, hour: Timestamp::from_micros(hour), bucket, count })
                .collect(),
            latest: self
                .latest
                .drain()
                .map(|((project_id, hour, kind), (at, reason))| WebhookLatest {
                    project_id,
                    kind: kind.into(),
                    hour: Timestamp::from_micros(hour),
                    at: Timestamp::from_micros(at),
                    reason: reason.into(),
                })
                .collect(),
        }
    }

    /// Puts back a tally that could not be saved, added to what was counted meanwhile.
    fn restore(&mut self, tally: WebhookTally) {
        for c in tally.counts {
            *self.counts.entry((c.project_id, c.hour.as_micros(), intern(&c.outcome), intern(&c.reason))).or_default() += c.count;
        }
        for l in tally.latencies {
            *self.latencies.entry((l.project_id, l.hour.as_micros(), l.bucket)).or_default() += l.count;
        }
        for l in tally.latest {
            self.note_latest((l.project_id, l.hour.as_micros(), intern(&l.kind)), l.at.as_micros(), intern(&l.reason));
        }
    }
}

#[derive(Clone, Default)]
pub struct Counters {
    pending: Arc<Mutex<Pending>>,
}

fn hour_of(at: Timestamp) -> i64 {
    at.as_micros().div_euclid(HOUR) * HOUR
}

impl Counters {
    pub fn count(&self, project_id: i64, slug: &str, at: Timestamp, outcome: &'static str, reason: &'static str) {
        metrics::counter!("ksa_webhooks_total", "project" => slug.to_owned(), "outcome" => outcome, "reason" => reason).increment(1);
        let hour = hour_of(at);
        if let Ok(mut pending) = self.pending.lock() {
            *pending.counts.entry((project_id, hour, outcome, reason)).or_default() += 1;
            match outcome {
                "accepted" => pending.note_latest((project_id, hour, "accepted"), at.as_micros(), ""),
                "rejected" => pending.note_latest((project_id, hour, "refused"), at.as_micros(), reason),
                _ => {}
            }
        }
    }

    /// Counts how long a webhook received at `at` took to answer.
    pub fn latency(&self, project_id: i64, slug: &str, at: Timestamp, micros: i64) {
        metrics::histogram!("ksa_webhook_duration_seconds", "project" => slug.to_owned()).record(micros as f64 / 1e6);
        if let Ok(mut pending) = self.pending.lock() {
            *pending.latencies.entry((project_id, hour_of(at), latency::bucket_of(micros))).or_default() += 1;
        }
    }

    /// Adds what was counted since the last flush to the state database. On failure the counts
    /// are kept for the next flush.
    pub async fn flush<S: StateStore>(&self, state: &S) {
        let taken = match self.pending.lock() {
            Ok(mut pending) => pending.take(),
            Err(_) => return,
        };
        if taken.is_empty() {
            return;
        }
        if let Err(err) = state.add_webhook_tally(&taken).await {
            tracing::warn!(error = %err, "webhook statistics not saved yet; will retry");
            if let Ok(mut pending) = self.pending.lock() {
                pending.restore(taken);
            }
        }
    }
}

fn intern(text: &str) -> &'static str {
    const KNOWN: [&str; 16] = [
        "received",
        "accepted",
        "duplicate",
        "ignored",
        "rejected",
        "refused",
        "",
        "unauthorized",
        "forbidden",
        "too_large",
        "unsupported_media_type",
        "malformed",
        "unavailable",
        "overloaded",
        "invalid_field",
        "other",
    ];
    KNOWN.iter().find(|k| **k == text).copied().unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_keeps_its_counts_latencies_and_latest_accepted_and_refused_webhook() {
        let counters = Counters::default();
        let t = |micros| Timestamp::from_micros(HOUR * 1000 + micros);
        counters.count(1, "shop", t(5), "accepted", "");
        counters.count(1, "shop", t(9), "rejected", "malformed");
        counters.count(1, "shop", t(7), "rejected", "unauthorized");
        counters.count(1, "shop", t(3), "accepted", "");
        counters.count(1, "shop", t(8), "duplicate", "");
        counters.latency(1, "shop", t(5), 150);
        counters.latency(1, "shop", t(8), 150);
        let mut tally = counters.pending.lock().unwrap().take();
        tally.counts.sort_by(|a, b| (&a.outcome, &a.reason).cmp(&(&b.outcome, &b.reason)));
        tally.latest.sort_by(|a, b| a.kind.cmp(&b.kind));
        let counted: Vec<_> = tally.counts.iter().map(|c| (c.outcome.as_str(), c.reason.as_str(), c.count)).collect();
        assert_eq!(counted, [("accepted", "", 2), ("duplicate", "", 1), ("rejected", "malformed", 1), ("rejected", "unauthorized", 1)]);
        assert_eq!(tally.latencies, [WebhookLatency { project_id: 1, hour: t(0), bucket: 2, count: 2 }]);
        let latest: Vec<_> = tally.latest.iter().map(|l| (l.kind.as_str(), l.at, l.reason.as_str())).collect();
        assert_eq!(latest, [("accepted", t(5), ""), ("refused", t(9), "malformed")]);

        // What could not be saved comes back, merged with what was counted meanwhile.
        counters.count(1, "shop", t(2), "rejected", "forbidden");
        let mut pending = counters.pending.lock().unwrap();
        pending.restore(tally);
        assert_eq!(pending.latest[&(1, t(0).as_micros(), "refused")], (t(9).as_micros(), "malformed"));
        assert_eq!(pending.counts[&(1, t(0).as_micros(), "accepted", "")], 2);
        assert_eq!(pending.latencies[&(1, t(0).as_micros(), 2)], 2);
    }
}
