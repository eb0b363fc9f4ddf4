//! `POST /webhooks/keycrm/{project_slug}[/{secret}]`: KeyCRM's webhooks in, durable events out.
//!
//! A webhook is answered 202 only after its event is durable in the bus; every error is JSON
//! with a 4xx or 503 status, and nothing is written for a rejected request.

mod counters;
mod directory;
pub mod secret;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Buf;
use futures_util::Stream;
use ksa_bus::{AppendOutcome, Bus, BusError, NewRecord};
use ksa_schemas::bus::{STATUS_EVENTS, StatusMessage, order_key, status_idempotency_key};
use ksa_schemas::{Timestamp, WebhookError, WebhookOutcome, kept_payload, parse_webhook};
use ksa_state::StateStore;
use serde_json::json;
use warp::Filter;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::{Reply, Response};

pub use counters::Counters;
use directory::{ProjectDirectory, Resolved};
pub use ksa_edge::Cidr;

#[derive(Clone, Debug)]
pub struct IngestConfig {
    /// Largest accepted body.
    pub max_body_bytes: usize,
    /// How long a project lookup is trusted before it is read again.
    pub project_refresh: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig { max_body_bytes: 256 * 1024, project_refresh: Duration::from_secs(5) }
    }
}

/// What the webhook endpoint needs: the bus to publish to, the state to find projects in.
pub struct Ingest<B: Bus, S: StateStore> {
    bus: B,
    state: S,
    config: IngestConfig,
    directory: ProjectDirectory,
    counters: Counters,
}

impl<B: Bus, S: StateStore> Ingest<B, S> {
    pub fn new(bus: B, state: S, config: IngestConfig) -> Arc<Self> {
        Arc::new(Ingest { directory: ProjectDirectory::new(config.project_refresh), bus, state, config, counters: Counters::default() })
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Saves the webhook statistics gathered so far.
    pub async fn flush_counters(&self) {
        self.counters.flush(&self.state).await;
    }

    /// Saves the webhook statistics every `every` until `stop` turns true, then once more.
    pub async fn flush_until(&self, every: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut flushes = 0u32;
        loop {
            if flushes % 12 == 0 {
                self.name_projects_in_metrics().await;
            }
            flushes = flushes.wrapping_add(1);
            tokio::select! {
                _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
                _ = tokio::time::sleep(every) => self.flush_counters().await,
            }
        }
        self.flush_counters().await;
    }
}

impl<B: Bus, S: StateStore> Ingest<B, S> {
    /// Gives every active project its `accepted` series from the start, at zero, so that an
    /// alert on "no webhook for hours" sees a project that has sent nothing since ingest started.
    async fn name_projects_in_metrics(&self) {
        if let Ok(projects) = self.state.projects().await {
            for project in projects.into_iter().filter(|p| p.is_active) {
                metrics::counter!("ksa_webhooks_total", "project" => project.slug, "outcome" => "accepted", "reason" => "").increment(0);
            }
        }
    }
}

/// How often the webhook statistics go to the state database.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// The webhook routes.
pub fn routes<B: Bus, S: StateStore>(ingest: Arc<Ingest<B, S>>) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::path("webhooks")
        .and(warp::path("keycrm"))
        .and(warp::method())
        .and(warp::path::tail())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(ksa_edge::client_addr())
        .and(warp::body::stream())
        .and_then(move |method, tail: warp::path::Tail, query, headers, remote, body| {
            let ingest = ingest.clone();
            async move {
                let request = Request { method, tail: tail.as_str().to_string(), query, headers, remote };
                Ok::<_, Infallible>(handle(&ingest, request, body).await)
            }
        })
}

struct Request {
    method: Method,
    tail: String,
    query: String,
    headers: HeaderMap,
    remote: ksa_edge::ClientAddr,
}

/// One answer: status, the JSON body, an optional `Retry-After`, and `Allow` for a 405.
struct Answer {
    status: StatusCode,
    body: serde_json::Value,
    retry_after: Option<u32>,
    allow: Option<&'static str>,
}

impl Answer {
    fn ok(status: &str) -> Answer {
        Answer { status: StatusCode::ACCEPTED, body: json!({ "status": status }), retry_after: None, allow: None }
    }

    fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Answer {
        Answer { status, body: json!({ "error": code, "message": message.into() }), retry_after: None, allow: None }
    }

    fn into_response(self) -> Response {
        let mut response = warp::reply::with_status(warp::reply::json(&self.body), self.status).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert("retry-after", seconds.into());
        }
        if let Some(methods) = self.allow {
            response.headers_mut().insert("allow", warp::http::HeaderValue::from_static(methods));
        }
        response
    }
}

async fn handle<B: Bus, S: StateStore>(
    ingest: &Ingest<B, S>,
    request: Request,
    body: impl Stream<Item = Result<impl Buf, warp::Error>> + Send,
) -> Response {
    answer(ingest, request, body).await.into_response()
}

async fn answer<B: Bus, S: StateStore>(
    ingest: &Ingest<B, S>,
    request: Request,
    body: impl Stream<Item = Result<impl Buf, warp::Error>> + Send,
) -> Answer {
    // Ingest latency runs from here (the request's headers are read) to the answer.
    let started = std::time::Instant::now();
    let mut segments = request.tail.split('/').filter(|s| !s.is_empty());
    let (Some(slug), path_secret, None) = (segments.next(), segments.next(), segments.next()) else {
        return Answer::error(StatusCode::NOT_FOUND, "not_found", "expected /webhooks/keycrm/{project}[/{secret}]");
    };
    if request.method != Method::POST {
        let mut answer = Answer::error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "webhooks are delivered with POST");
        answer.body["allow"] = json!("POST");
        answer.allow = Some("POST");
        return answer;
    }
    let offered = path_secret
        .map(str::to_string)
        .or_else(|| query_token(&request.query))
        .or_else(|| request.headers.get("x-webhook-token").and_then(|v| v.to_str().ok()).map(str::to_string));
    let now = now();
    let project = match ingest.directory.resolve(&ingest.state, slug, offered.as_deref(), now).await {
        Resolved::Active(project) => Some(project),
        Resolved::Unknown => None,
        Resolved::Unavailable(err) => {
            tracing::warn!(error = %err, "project lookup failed");
            return Answer {
                retry_after: Some(5),
                ..Answer::error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the project directory cannot be read; retry later")
            };
        }
    };
    let counters = &ingest.counters;
    if let Some(project) = &project {
        counters.count(project.id, &project.slug, now, "received", "");
    }
    // An unknown project answers exactly as a wrong secret does, so slugs cannot be guessed.
    let unauthorized = |message: &str| {
        if let Some(project) = &project {
            counters.count(project.id, &project.slug, now, "rejected", "unauthorized");
        }
        Answer::error(StatusCode::UNAUTHORIZED, "unauthorized", message)
    };
    let Some(offered) = offered else {
        return unauthorized("missing webhook secret: add it as ?token=…, an X-Webhook-Token header or a last path segment");
    };
    let project = match project {
        Some(project) if project.accepts(&offered, now) => project,
        _ => return unauthorized("wrong webhook secret"),
    };
    let reject = |status: StatusCode, reason: &'static str, message: String| {
        counters.count(project.id, &project.slug, now, "rejected", reason);
        // The message may quote the body's values; the log masks phones and e-mails in it.
        tracing::debug!(project = %project.slug, reason, %message, "webhook refused");
        Answer::error(status, reason, message)
    };

    if !project.allowed.is_empty() && !project.allowed.iter().any(|c| c.contains(request.remote.ip)) {
        return reject(StatusCode::FORBIDDEN, "forbidden", "this source address may not post webhooks for the project".into());
    }
    if let Some(content_type) = request.headers.get("content-type") {
        let json = content_type.to_str().ok().and_then(|v| v.split(';').next()).is_some_and(|v| {
            let v = v.trim().to_ascii_lowercase();
            v == "application/json" || v.ends_with("+json")
        });
        if !json {
            return reject(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "webhooks must be sent as application/json".into(),
            );
        }
    }
    let limit = ingest.config.max_body_bytes;
    let declared = request.headers.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return reject(StatusCode::PAYLOAD_TOO_LARGE, "too_large", format!("the body is over {limit} bytes"));
    }
    let body = match ksa_edge::read_limited(body, limit).await {
        Ok(Some(body)) => body,
        Ok(None) => return reject(StatusCode::PAYLOAD_TOO_LARGE, "too_large", format!("the body is over {limit} bytes")),
        Err(err) => return reject(StatusCode::BAD_REQUEST, "malformed", format!("the body could not be read: {err}")),
    };

    if std::str::from_utf8(&body).is_err() {
        return reject(StatusCode::BAD_REQUEST, "malformed", "the body is not valid UTF-8".into());
    }
    let event = match parse_webhook(&body) {
        Ok(WebhookOutcome::Status(event)) => event,
        Ok(WebhookOutcome::Ignored { event }) => {
            counters.count(project.id, &project.slug, now, "ignored", "");
            let mut answer = Answer::ok("ignored");
            answer.body["event"] = json!(event);
            return answer;
        }
        Err(err) => {
            let reason = if matches!(err, WebhookError::Malformed(_)) { "malformed" } else { "invalid_field" };
            let mut answer = reject(StatusCode::BAD_REQUEST, reason, err.to_string());
            if let Some(field) = err.field() {
                answer.body["field"] = json!(field);
            }
            return answer;
        }
    };

    if let Err(message) = plausible_change_time(event.changed_at, now) {
        let mut answer = reject(StatusCode::BAD_REQUEST, "invalid_field", message);
        answer.body["field"] = json!("context.status_changed_at");
        return answer;
    }
    // Only the allow-listed projection goes on: no comment, name, phone or address is written
    // anywhere (docs/event-path.md, "What is kept of a webhook").
    let Some(kept) = kept_payload(&body) else {
        return reject(StatusCode::BAD_REQUEST, "malformed", "the body is not a JSON object".into());
    };
    let message = StatusMessage::StatusChanged { project_id: project.id, event, received_at: now, payload: kept };
    let payload = match serde_json::to_vec(&message) {
        Ok(p) => p,
        Err(err) => return reject(StatusCode::BAD_REQUEST, "malformed", err.to_string()),
    };
    let record = NewRecord {
        key: order_key(project.id, event.order_id),
        payload,
        idempotency_key: Some(status_idempotency_key(project.id, &event)),
    };
    let reached_bus = |outcome: &'static str| {
        counters.count(project.id, &project.slug, now, outcome, "");
        counters.latency(project.id, &project.slug, now, i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX));
        Answer::ok(outcome)
    };
    match ingest.bus.append(STATUS_EVENTS, vec![record]).await {
        Ok(outcomes) => match outcomes.first() {
            Some(AppendOutcome::Appended { .. }) => reached_bus("accepted"),
            Some(AppendOutcome::Duplicate) => reached_bus("duplicate"),
            None => unavailable(reject, "the bus returned no outcome".into(), 5),
        },
        Err(BusError::Overloaded) => {
            let mut answer = reject(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "too many webhooks at once; retry shortly".into());
            answer.retry_after = Some(1);
            answer
        }
        Err(err) => {
            tracing::warn!(project = %project.slug, error = %err, "webhook not made durable");
            unavailable(reject, "the event could not be stored; retry later".into(), 5)
        }
    }
}

/// How far back a status change may lie: older ones are not KeyCRM's webhooks.
const OLDEST_CHANGE_MICROS: i64 = 5 * 366 * 86_400 * 1_000_000;
/// How far ahead of this server's clock a status change may lie (clock skew, time zones).
const NEWEST_CHANGE_MICROS: i64 = 86_400 * 1_000_000;

/// A status change time within [now − 5 years, now + 1 day], or why not.
fn plausible_change_time(changed_at: Timestamp, now: Timestamp) -> Result<(), String> {
    let (at, now) = (changed_at.as_micros(), now.as_micros());
    if at < now - OLDEST_CHANGE_MICROS {
        return Err(format!("status_changed_at {changed_at} is more than 5 years ago"));
    }
    if at > now + NEWEST_CHANGE_MICROS {
        return Err(format!("status_changed_at {changed_at} is more than a day ahead of this server's clock"));
    }
    Ok(())
}

fn unavailable(reject: impl Fn(StatusCode, &'static str, String) -> Answer, message: String, retry_after: u32) -> Answer {
    let mut answer = reject(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
    answer.retry_after = Some(retry_after);
    answer
}

/// `token=` from a raw query string, percent-decoded.
fn query_token(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| pair.strip_prefix("token=")).map(ksa_edge::percent_decode)
}

/// The wall clock, read at the edge: when a webhook was received.
fn now() -> Timestamp {
    Timestamp::from_micros(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_read_from_the_query_and_percent_decoded() {
        assert_eq!(query_token("a=1&token=ab%2Fc"), Some("ab/c".into()));
        assert_eq!(query_token("token=x"), Some("x".into()));
        assert_eq!(query_token("tok=x"), None);
    }
}
