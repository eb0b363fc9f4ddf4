//! `GET /api/webhooks/stats`: what ingest made of each project's webhooks, per day local to the
//! project: counts by outcome (rejections by reason), the share of duplicates, p50 and p99 of
//! the time to answer, and the last accepted and last refused webhook. Owners and project admins
//! read it for the projects they administer; it is read from the per-hour rows ingest keeps
//! (`webhook_counters`, `webhook_latency`, `webhook_latest`), never from the webhooks themselves.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use chrono_tz::Tz;
use ksa_bus::Bus;
use ksa_schemas::Timestamp;
use ksa_state::latency::{self, BUCKETS, Histogram};
use ksa_state::{Project, StateStore, WebhookLatest, WebhookTally};
use serde_json::{Value, json};
use warp::reply::Response;

use crate::analytics::local_time;
use crate::analytics::sql::Span;
use crate::auth::now;
use crate::error::ApiError;
use crate::routes::{Call, ok};

/// The outcomes a day reports, each as a number (0 when none).
const OUTCOMES: [&str; 5] = ["received", "accepted", "duplicate", "ignored", "rejected"];

pub async fn stats<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    let caller = call.caller()?;
    let request = call.request;
    let projects = call.api.state.projects().await?;
    let chosen = super::administered(&caller.user, &projects, request.param("project"), "webhook statistics")?;
    let now = now();
    let mut answers = Vec::with_capacity(chosen.len());
    for project in chosen {
        let (rules, _) = call.api.applied_rules(project.id).await?;
        let tz = rules.settings.timezone;
        let span = Span::parse(request, tz, now)?;
        let state = &call.api.state;
        let tally = state.webhook_tally(project.id, Timestamp::from_micros(span.from), Timestamp::from_micros(span.to)).await?;
        let last = state.last_webhooks(project.id).await?;
        answers.push(project_json(project, tz, span, &tally, &last));
    }
    ok(&json!({ "projects": answers }))
}

/// What one local day of a project adds up to.
struct Day {
    outcomes: BTreeMap<String, i64>,
    reasons: BTreeMap<String, i64>,
    histogram: Histogram,
    last_accepted: Option<Timestamp>,
    last_refusal: Option<(Timestamp, String)>,
}

impl Default for Day {
    fn default() -> Self {
        Day { outcomes: BTreeMap::new(), reasons: BTreeMap::new(), histogram: [0; BUCKETS], last_accepted: None, last_refusal: None }
    }
}

impl Day {
    fn note(&mut self, latest: &WebhookLatest) {
        match latest.kind.as_str() {
            "accepted" => self.last_accepted = self.last_accepted.max(Some(latest.at)),
            _ if self.last_refusal.as_ref().is_none_or(|(at, _)| latest.at > *at) => {
                self.last_refusal = Some((latest.at, latest.reason.clone()));
            }
            _ => {}
        }
    }

    fn to_json(&self, day: NaiveDate, tz: Tz) -> Value {
        let count = |outcome: &str| self.outcomes.get(outcome).copied().unwrap_or(0);
        let (accepted, duplicate) = (count("accepted"), count("duplicate"));
        let quantile = |q| latency::quantile(&self.histogram, q).map(latency::reported_ms);
        let mut answer = json!({
            "day": day.format("%Y-%m-%d").to_string(),
            "rejected_by_reason": self.reasons,
            "duplicate_share": (accepted + duplicate > 0).then(|| duplicate as f64 / (accepted + duplicate) as f64),
            "latency_measured": self.histogram.iter().sum::<i64>(),
            "p50_ms": quantile(0.5),
            "p99_ms": quantile(0.99),
        });
        if let Some(fields) = answer.as_object_mut() {
            for outcome in OUTCOMES {
                fields.insert(outcome.into(), json!(count(outcome)));
            }
            fields.extend(last_json(tz, self.last_accepted, self.last_refusal.as_ref()));
        }
        answer
    }
}

/// `last_accepted_at` and `last_refusal` (`{at, reason}`), each `null` when there is none.
fn last_json(tz: Tz, accepted: Option<Timestamp>, refusal: Option<&(Timestamp, String)>) -> [(String, Value); 2] {
    [
        ("last_accepted_at".into(), json!(accepted.map(|at| local_time(tz, at.as_micros())))),
        ("last_refusal".into(), json!(refusal.map(|(at, reason)| json!({"at": local_time(tz, at.as_micros()), "reason": reason})))),
    ]
}

/// The local day an hour starts in.
fn day_of(days: &mut BTreeMap<NaiveDate, Day>, tz: Tz, hour: Timestamp) -> &mut Day {
    days.entry(hour.to_datetime().with_timezone(&tz).date_naive()).or_default()
}

fn project_json(project: &Project, tz: Tz, span: Span, tally: &WebhookTally, last: &[WebhookLatest]) -> Value {
    let mut days: BTreeMap<NaiveDate, Day> = BTreeMap::new();
    for count in &tally.counts {
        let day = day_of(&mut days, tz, count.hour);
        *day.outcomes.entry(count.outcome.clone()).or_default() += count.count;
        if count.outcome == "rejected" {
            *day.reasons.entry(count.reason.clone()).or_default() += count.count;
        }
    }
    for latency in &tally.latencies {
        if let Some(slot) = day_of(&mut days, tz, latency.hour).histogram.get_mut(usize::from(latency.bucket)) {
            *slot += latency.count;
        }
    }
    for latest in &tally.latest {
        day_of(&mut days, tz, latest.hour).note(latest);
    }
    let mut overall = Day::default();
    for latest in last {
        overall.note(latest);
    }
    let mut answer = json!({
        "project": project.slug,
        "name": project.name,
        "timezone": tz.name(),
        "from": local_time(tz, span.from),
        "to": local_time(tz, span.to),
        "days": days.iter().map(|(date, day)| day.to_json(*date, tz)).collect::<Vec<_>>(),
    });
    if let Some(fields) = answer.as_object_mut() {
        fields.extend(last_json(tz, overall.last_accepted, overall.last_refusal.as_ref()));
    }
    answer
}

#[cfg(test)]
mod tests {
    use ksa_state::{WebhookCount, WebhookLatency};

    use super::*;

    const HOUR: i64 = 3_600_000_000;
    /// 2026-03-02T00:00:00Z: 02:00 in Kyiv.
    const T0: i64 = 1_772_409_600_000_000;

    fn count(hour: i64, outcome: &str, reason: &str, count: i64) -> WebhookCount {
        WebhookCount {
            project_id: 1,
            hour: Timestamp::from_micros(T0 + hour * HOUR),
            outcome: outcome.into(),
            reason: reason.into(),
            count,
        }
    }

    fn latest(hour: i64, kind: &str, minute: i64, reason: &str) -> WebhookLatest {
        let hour_at = T0 + hour * HOUR;
        WebhookLatest {
            project_id: 1,
            kind: kind.into(),
            hour: Timestamp::from_micros(hour_at),
            at: Timestamp::from_micros(hour_at + minute * 60_000_000),
            reason: reason.into(),
        }
    }

    #[test]
    fn hours_add_up_to_local_days_with_shares_quantiles_and_the_last_webhooks() {
        let project = Project {
            id: 1,
            slug: "shop".into(),
            name: "Shop".into(),
            timezone: "Europe/Kyiv".into(),
            is_active: true,
            webhook_secret_hash: String::new(),
            previous_secret: None,
            allowed_cidrs: vec![],
        };
        let tz: Tz = "Europe/Kyiv".parse().unwrap();
        // Hour −3 is 23:00 in Kyiv the day before.
        let tally = WebhookTally {
            counts: vec![
                count(-3, "accepted", "", 1),
                count(0, "accepted", "", 2),
                count(1, "accepted", "", 1),
                count(1, "duplicate", "", 1),
                count(1, "rejected", "malformed", 2),
                count(1, "rejected", "unauthorized", 1),
            ],
            latencies: vec![
                WebhookLatency { project_id: 1, hour: Timestamp::from_micros(T0), bucket: 6, count: 3 },
                WebhookLatency { project_id: 1, hour: Timestamp::from_micros(T0 + HOUR), bucket: 12, count: 1 },
            ],
            latest: vec![
                latest(0, "accepted", 10, ""),
                latest(1, "accepted", 5, ""),
                latest(1, "refused", 7, "malformed"),
                latest(0, "refused", 50, "unauthorized"),
            ],
        };
        let span = Span { from: T0 - 4 * HOUR, to: T0 + 2 * HOUR };
        let answer = project_json(&project, tz, span, &tally, &[latest(1, "accepted", 5, ""), latest(1, "refused", 7, "malformed")]);
        let days = answer["days"].as_array().unwrap();
        assert_eq!(days.len(), 2, "{answer:#}");
        assert_eq!(days[0]["day"], "2026-03-01");
        assert_eq!(days[0]["accepted"], 1);
        assert_eq!(days[0]["p50_ms"], Value::Null);
        assert_eq!(days[0]["duplicate_share"], 0.0);
        let today = &days[1];
        assert_eq!(today["day"], "2026-03-02");
        assert_eq!((today["accepted"].as_i64(), today["duplicate"].as_i64(), today["rejected"].as_i64()), (Some(3), Some(1), Some(3)));
        assert_eq!(today["received"], 0, "an outcome never counted is 0");
        assert_eq!(today["rejected_by_reason"], json!({"malformed": 2, "unauthorized": 1}));
        assert_eq!(today["duplicate_share"], 0.25);
        assert_eq!(
            (today["p50_ms"].as_f64(), today["p99_ms"].as_f64(), today["latency_measured"].as_i64()),
            (Some(1.0), Some(10.0), Some(4))
        );
        assert_eq!(today["last_accepted_at"], "2026-03-02T03:05:00+02:00");
        assert_eq!(today["last_refusal"], json!({"at": "2026-03-02T03:07:00+02:00", "reason": "malformed"}));
        assert_eq!(answer["last_accepted_at"], "2026-03-02T03:05:00+02:00");
        assert_eq!(answer["last_refusal"]["reason"], "malformed");
        assert_eq!(answer["from"], "2026-03-01T22:00:00+02:00");
    }
}
