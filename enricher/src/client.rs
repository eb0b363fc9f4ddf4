//! The KeyCRM API client: one per project (its base URL, bearer token, token bucket and circuit
//! breaker), all sharing one HTTP connection pool. Every request of the process for a project
//! goes through that project's bucket.
//!
//! Retried: 429 (after `Retry-After`, else exponential back-off with full jitter, and the whole
//! project waits), 5xx, timeouts and connection errors. Never retried: 401, 403, 404 and other
//! 4xx. Errors name the project and what to do; none contains the token.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue, RETRY_AFTER};

use crate::circuit::{Admission, CircuitBreaker, Transition};
use crate::limiter::RateLimiter;
use crate::secret::Secret;

/// The KeyCRM API unless a project says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://openapi.keycrm.app/v1";

/// How every project's client behaves. Rates count requests per `rate_window` (one minute in
/// production; tests shrink the window to run fast).
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Requests per window for projects that set no rate of their own.
    pub default_rate: u32,
    pub rate_window: Duration,
    /// Requests that may go back to back before the rate applies.
    pub burst: u32,
    /// One request, from sending to the last byte of the body.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// First back-off; doubled per attempt, with full jitter.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A `Retry-After` longer than this is cut to it.
    pub retry_after_max: Duration,
    /// Failed calls in a row that open a project's circuit.
    pub circuit_threshold: u32,
    pub circuit_open_for: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            default_rate: 60,
            rate_window: Duration::from_secs(60),
            burst: 1,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_attempts: 5,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            retry_after_max: Duration::from_secs(600),
            circuit_threshold: 5,
            circuit_open_for: Duration::from_secs(120),
        }
    }
}

/// Why a call to a project's API did not give a usable answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error(
        "project `{project}`: KeyCRM refused the API token (HTTP {status}); store a valid token with \
         `keycrm-analytics project api --slug {project} --token-stdin`"
    )]
    Unauthorized { project: String, status: u16 },
    #[error("project `{project}`: {what} does not exist in KeyCRM (HTTP 404)")]
    NotFound { project: String, what: String },
    #[error("project `{project}`: KeyCRM answered HTTP {status} to {what}; not retried")]
    Rejected { project: String, what: String, status: u16 },
    #[error("project `{project}`: {what} failed {attempts} times, last: {last}")]
    Exhausted { project: String, what: String, attempts: u32, last: String },
    #[error("project `{project}`: the answer to {what} is not what KeyCRM sends: {reason}")]
    Malformed { project: String, what: String, reason: String },
    #[error("project `{project}`: calls to KeyCRM are paused for {} s after repeated failures (circuit open)", retry_in.as_secs())]
    CircuitOpen { project: String, retry_in: Duration },
    #[error("project `{project}` has no KeyCRM API token; store one with `keycrm-analytics project api --slug {project} --token-stdin`")]
    NoToken { project: String },
    #[error("project `{project}`: {reason}")]
    Setup { project: String, reason: String },
}

impl ApiError {
    /// True when retrying the same call later cannot help (the order is gone).
    pub fn is_permanent(&self) -> bool {
        matches!(self, ApiError::NotFound { .. } | ApiError::Rejected { .. })
    }
}

/// Counters of one project's client since start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub requests: u64,
    pub succeeded: u64,
    pub throttled: u64,
    pub server_errors: u64,
    pub timeouts: u64,
    pub connection_errors: u64,
    pub retries: u64,
    pub failed_calls: u64,
    pub circuit_opened: u64,
    pub circuit_open: bool,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    succeeded: AtomicU64,
    throttled: AtomicU64,
    server_errors: AtomicU64,
    timeouts: AtomicU64,
    connection_errors: AtomicU64,
    retries: AtomicU64,
    failed_calls: AtomicU64,
    circuit_opened: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What a project's client needs to reach its API.
#[derive(Clone, Debug)]
pub struct ProjectEndpoint {
    pub project_id: i64,
    pub slug: String,
    pub base_url: String,
    pub token: Secret,
    /// Requests per window; `None` = [`ClientConfig::default_rate`].
    pub rate: Option<u32>,
}

/// One project's client. Cheap to share (`Arc`); all clones use one bucket.
#[derive(Debug)]
pub struct ProjectClient {
    endpoint: ProjectEndpoint,
    http: reqwest::Client,
    config: ClientConfig,
    limiter: RateLimiter,
    breaker: CircuitBreaker,
    counters: Counters,
}

/// One attempt's outcome, before the retry decision.
enum Attempt {
    Done(Vec<u8>),
    Retry { reason: String, after: Option<Duration>, throttled: bool },
    Fail(ApiError),
}

impl ProjectClient {
    fn new(endpoint: ProjectEndpoint, http: reqwest::Client, config: ClientConfig) -> Self {
        let rate = endpoint.rate.unwrap_or(config.default_rate);
        ProjectClient {
            limiter: RateLimiter::new(rate, config.rate_window, config.burst),
            breaker: CircuitBreaker::new(config.circuit_threshold, config.circuit_open_for),
            endpoint,
            http,
            config,
            counters: Counters::default(),
        }
    }

    pub fn project_id(&self) -> i64 {
        self.endpoint.project_id
    }

    pub fn slug(&self) -> &str {
        &self.endpoint.slug
    }

    /// The spacing of requests at this project's rate.
    pub fn interval(&self) -> Duration {
        self.limiter.interval()
    }

    pub fn stats(&self) -> ClientStats {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ClientStats {
            requests: load(&c.requests),
            succeeded: load(&c.succeeded),
            throttled: load(&c.throttled),
            server_errors: load(&c.server_errors),
            timeouts: load(&c.timeouts),
            connection_errors: load(&c.connection_errors),
            retries: load(&c.retries),
            failed_calls: load(&c.failed_calls),
            circuit_opened: load(&c.circuit_opened),
            circuit_open: self.breaker.is_open(),
        }
    }

    /// `GET {base}{path}?{query}`, retried as the module says; the body of a 2xx answer.
    /// `what` names the call in errors and logs ("order 23196").
    pub async fn get(&self, path: &str, query: &[(&str, String)], what: &str) -> Result<Vec<u8>, ApiError> {
        let project = self.endpoint.slug.clone();
        if let Admission::Refused(retry_in) = self.breaker.admit() {
            return Err(ApiError::CircuitOpen { project, retry_in });
        }
        let url = format!("{}{}", self.endpoint.base_url.trim_end_matches('/'), path);
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", self.endpoint.token.expose())).map_err(|_| ApiError::Setup {
            project: project.clone(),
            reason: "the API token holds characters a header cannot carry".into(),
        })?;
        auth.set_sensitive(true);
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.limiter.acquire().await;
            bump(&self.counters.requests);
            let outcome = self.attempt(&url, query, auth.clone(), what).await;
            let (reason, after, throttled) = match outcome {
                Attempt::Done(body) => {
                    bump(&self.counters.succeeded);
                    if self.breaker.record_success() == Transition::Closed {
                        metrics::gauge!("ksa_keycrm_circuit_open", "project" => project.clone()).set(0.0);
                        tracing::info!(project = %project, "KeyCRM answers again; circuit closed");
                    }
                    return Ok(body);
                }
                Attempt::Fail(error) => {
                    // A definite answer: the service works, the request does not.
                    self.breaker.record_success();
                    return Err(error);
                }
                Attempt::Retry { reason, after, throttled } => (reason, after, throttled),
            };
            if attempt >= self.config.max_attempts {
                bump(&self.counters.failed_calls);
                if self.breaker.record_failure() == Transition::Opened {
                    bump(&self.counters.circuit_opened);
                    metrics::gauge!("ksa_keycrm_circuit_open", "project" => project.clone()).set(1.0);
                    tracing::warn!(
                        project = %project,
                        open_for_s = self.config.circuit_open_for.as_secs(),
                        "KeyCRM keeps failing; circuit opened, calls for this project pause"
                    );
                }
                return Err(ApiError::Exhausted { project, what: what.to_owned(), attempts: attempt, last: reason });
            }
            let backoff = after.unwrap_or_else(|| self.backoff(attempt));
            bump(&self.counters.retries);
            tracing::debug!(project = %project, what, attempt, retry_in_ms = backoff.as_millis() as u64, reason = %reason, "retrying a KeyCRM call");
            if throttled {
                // The limit is the project's: everyone of it waits, not just this call.
                self.limiter.pause_for(backoff).await;
            } else {
                tokio::time::sleep(backoff).await;
            }
        }
    }

    async fn attempt(&self, url: &str, query: &[(&str, String)], auth: HeaderValue, what: &str) -> Attempt {
        let project = &self.endpoint.slug;
        let sent = self
            .http
            .get(url)
            .query(query)
            .header(AUTHORIZATION, auth)
            .header(ACCEPT, "application/json")
            .timeout(self.config.request_timeout)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                let outcome = if error.is_timeout() { "timeout" } else { "connect" };
                metrics::counter!("ksa_keycrm_calls_total", "project" => project.clone(), "outcome" => outcome).increment(1);
                return self.transport_failure(&error);
            }
        };
        let status = response.status();
        let outcome = match status.as_u16() {
            200..=299 => "2xx",
            429 => "429",
            500..=599 => "5xx",
            _ => "4xx",
        };
        metrics::counter!("ksa_keycrm_calls_total", "project" => project.clone(), "outcome" => outcome).increment(1);
        if status.is_success() {
            return match response.bytes().await {
                Ok(body) => Attempt::Done(body.to_vec()),
                Err(error) => self.transport_failure(&error),
            };
        }
        match status {
            StatusCode::TOO_MANY_REQUESTS => {
                bump(&self.counters.throttled);
                let after = retry_after(response.headers().get(RETRY_AFTER)).map(|d| d.min(self.config.retry_after_max));
                tracing::info!(project = %project, what, retry_after_s = after.map(|d| d.as_secs_f64()), "KeyCRM rate limit hit (429)");
                Attempt::Retry { reason: "HTTP 429 Too Many Requests".into(), after, throttled: true }
            }
            s if s.is_server_error() => {
                bump(&self.counters.server_errors);
                Attempt::Retry { reason: format!("HTTP {}", s.as_u16()), after: None, throttled: false }
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                tracing::warn!(project = %project, status = status.as_u16(), "KeyCRM refused the project's API token");
                Attempt::Fail(ApiError::Unauthorized { project: project.clone(), status: status.as_u16() })
            }
            StatusCode::NOT_FOUND => Attempt::Fail(ApiError::NotFound { project: project.clone(), what: what.to_owned() }),
            s => Attempt::Fail(ApiError::Rejected { project: project.clone(), what: what.to_owned(), status: s.as_u16() }),
        }
    }

    fn transport_failure(&self, error: &reqwest::Error) -> Attempt {
        let reason = if error.is_timeout() {
            bump(&self.counters.timeouts);
            "timed out".to_owned()
        } else if error.is_connect() {
            bump(&self.counters.connection_errors);
            "could not connect".to_owned()
        } else {
            bump(&self.counters.connection_errors);
            // Without the URL: it is the project's, but errors stay short and uniform.
            format!("transport error: {}", error_chain(error))
        };
        Attempt::Retry { reason, after: None, throttled: false }
    }

    /// Full jitter: a random wait in `[0, min(max, base * 2^(attempt-1))]`, at least 1 ms.
    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self.config.backoff_base.saturating_mul(1u32 << (attempt - 1).min(16)).min(self.config.backoff_max);
        let millis = cap.as_millis().max(1) as u64;
        Duration::from_millis(fastrand::u64(1..=millis))
    }
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut source = error.source();
    while let Some(cause) = source {
        text = cause.to_string();
        source = cause.source();
    }
    if text.is_empty() { "connection failed".into() } else { text }
}

/// `Retry-After` as seconds (integer or decimal); an HTTP date is not used by KeyCRM and is
/// ignored (the back-off applies).
fn retry_after(value: Option<&HeaderValue>) -> Option<Duration> {
    let seconds: f64 = value?.to_str().ok()?.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// The clients of every project of the process, made on first use and kept, so that a
/// project's bucket is one for all callers.
#[derive(Debug)]
pub struct Clients {
    http: reqwest::Client,
    config: ClientConfig,
    by_project: Mutex<HashMap<i64, Arc<ProjectClient>>>,
}

impl Clients {
    pub fn new(config: ClientConfig) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("keycrm-analytics/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::Setup { project: "*".into(), reason: format!("cannot build the HTTP client: {e}") })?;
        Ok(Clients { http, config, by_project: Mutex::new(HashMap::new()) })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The project's client; made from `endpoint` the first time. A later call with another
    /// token, URL or rate replaces it (a changed setting), keeping nothing of the old bucket.
    pub fn client(&self, endpoint: ProjectEndpoint) -> Arc<ProjectClient> {
        let mut clients = self.by_project.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = clients.get(&endpoint.project_id) {
            let same = existing.endpoint.base_url == endpoint.base_url
                && existing.endpoint.token == endpoint.token
                && existing.endpoint.rate == endpoint.rate
                && existing.endpoint.slug == endpoint.slug;
            if same {
                return existing.clone();
            }
        }
        let client = Arc::new(ProjectClient::new(endpoint.clone(), self.http.clone(), self.config.clone()));
        clients.insert(endpoint.project_id, client.clone());
        client
    }

    /// Every project's counters, by slug.
    pub fn stats(&self) -> Vec<(String, ClientStats)> {
        let clients = self.by_project.lock().unwrap_or_else(|p| p.into_inner());
        let mut stats: Vec<_> = clients.values().map(|c| (c.slug().to_owned(), c.stats())).collect();
        stats.sort_by(|a, b| a.0.cmp(&b.0));
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_ignores_dates() {
        assert_eq!(retry_after(Some(&HeaderValue::from_static("3"))), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(Some(&HeaderValue::from_static("0.5"))), Some(Duration::from_millis(500)));
        assert_eq!(retry_after(Some(&HeaderValue::from_static("Wed, 21 Oct 2026 07:28:00 GMT"))), None);
        assert_eq!(retry_after(None), None);
    }

    #[test]
    fn errors_name_the_project_and_never_hold_a_token() {
        let endpoint = ProjectEndpoint {
            project_id: 1,
            slug: "shop".into(),
            base_url: "http://127.0.0.1:1".into(),
            token: Secret::new("very-secret-token"),
            rate: None,
        };
        assert!(!format!("{endpoint:?}").contains("very-secret-token"));
        let error = ApiError::Unauthorized { project: "shop".into(), status: 401 };
        assert!(error.to_string().contains("`shop`"));
        assert!(error.to_string().contains("401"));
    }
}
