//! Talking to a running server over HTTP as KeyCRM and the web UI do, and waiting (by polling
//! the read API, never by sleeping a guessed time) until it has processed what it accepted.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::server::Server;

/// How long processing may take before a wait fails the test. Generous: a slow CI machine
/// must not fail, a stuck processor must.
pub const PROCESSING_DEADLINE: Duration = Duration::from_secs(180);

/// One HTTP answer, whatever its status.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    /// The body as text, and as JSON (`Null` when it is not JSON).
    pub text: String,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The webhook outcome of a 202: `accepted`, `duplicate` or `ignored`.
    pub fn outcome(&self) -> &str {
        self.body["status"].as_str().unwrap_or("")
    }

    /// Panics unless this is a JSON error answer with `status` and an `error` field.
    pub fn assert_error(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "unexpected answer: {self:?}");
        assert!(self.body.is_object(), "an error body must be JSON: {self:?}");
        assert!(self.body["error"].as_str().is_some_and(|e| !e.is_empty()), "an error body needs an `error` field: {self:?}");
        self
    }

    /// Panics unless this is a 202 with `outcome`.
    pub fn assert_accepted_as(&self, outcome: &str) -> &Self {
        assert_eq!((self.status, self.outcome()), (202, outcome), "unexpected answer: {self:?}");
        self
    }
}

/// The API token to send to each server (by base URL), as [`remember_token`] was told.
static TOKENS: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

/// Requests from [`send`] to `/api` of `base_url` carry `token` from now on.
pub fn remember_token(base_url: &str, token: &str) {
    let mut tokens = TOKENS.lock().unwrap_or_else(|e| e.into_inner());
    tokens.retain(|(url, _)| url != base_url);
    tokens.push((base_url.to_owned(), token.to_owned()));
}

/// The token for a request to `url`, if it goes to `/api` of a server with one.
pub fn token_for(url: &str) -> Option<String> {
    let tokens = TOKENS.lock().unwrap_or_else(|e| e.into_inner());
    tokens.iter().find(|(base, _)| url.strip_prefix(base.as_str()).is_some_and(|rest| rest.starts_with("/api/"))).map(|(_, t)| t.clone())
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("an HTTP client")
}

/// Sends the request and reads the whole answer; panics only when no answer came at all.
pub async fn send(request: reqwest::RequestBuilder) -> Reply {
    try_send(request).await.unwrap_or_else(|e| panic!("no answer: {e}"))
}

/// Sends the request (with the server's API token when it goes to `/api` and names none);
/// `Err` when the connection failed or broke before an answer.
pub async fn try_send(request: reqwest::RequestBuilder) -> Result<Reply, reqwest::Error> {
    let (client, request) = request.build_split();
    let mut request = request?;
    if !request.headers().contains_key("authorization")
        && !request.headers().contains_key("cookie")
        && let Some(token) = token_for(request.url().as_str())
        && let Ok(value) = format!("Bearer {token}").parse()
    {
        request.headers_mut().insert("authorization", value);
    }
    let response = client.execute(request).await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    // An event stream never ends: its answer is its status and headers.
    let streaming = headers.get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let bytes = if streaming { Default::default() } else { response.bytes().await? };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Reply { status, headers, text, body })
}

/// POSTs a webhook body as KeyCRM does (`Content-Type: application/json`).
pub async fn post_webhook(client: &reqwest::Client, url: &str, body: impl Into<reqwest::Body>) -> Reply {
    send(client.post(url).header("content-type", "application/json").body(body)).await
}

pub async fn get(client: &reqwest::Client, url: &str) -> Reply {
    send(client.get(url)).await
}

/// Orders and distinct events of a project as the read API shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Processed {
    pub orders: usize,
    pub events: u64,
}

/// Every order of the project through `GET /api/orders?project=SLUG{extra_query}`, page by page.
pub async fn list_all_orders(client: &reqwest::Client, server: &Server, slug: &str, extra_query: &str) -> Vec<Value> {
    let mut orders = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{}/api/orders?project={slug}&limit=500{extra_query}", server.base_url);
        if let Some(cursor) = &cursor {
            url.push_str("&cursor=");
            url.push_str(cursor);
        }
        let page = get(client, &url).await;
        assert_eq!(page.status, 200, "GET {url}: {page:?}");
        orders.extend(page.body["orders"].as_array().cloned().unwrap_or_default());
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return orders,
        }
    }
}

pub async fn processed(client: &reqwest::Client, server: &Server, slug: &str) -> Processed {
    let orders = list_all_orders(client, server, slug, "").await;
    Processed { orders: orders.len(), events: orders.iter().map(|o| o["event_count"].as_u64().unwrap_or(0)).sum() }
}

/// Polls the read API until the project shows exactly `expected`; fails the test with what it
/// last saw when [`PROCESSING_DEADLINE`] passes.
pub async fn wait_until_processed(client: &reqwest::Client, server: &Server, slug: &str, expected: Processed) {
    let deadline = Instant::now() + PROCESSING_DEADLINE;
    loop {
        let seen = processed(client, server, slug).await;
        if seen == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "project `{slug}` was not processed within {PROCESSING_DEADLINE:?}: expected {expected:?}, the API shows {seen:?}; \
             the server said:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
