//! A Server-Sent Events client, as a dashboard uses `GET /api/stream/orders`: it sends the
//! server's token (or the given one), reads the stream as it arrives and parses its events.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::http::{Reply, token_for};

/// One event of the stream (comments are not events).
#[derive(Clone, Debug)]
pub struct Event {
    pub name: String,
    pub id: Option<String>,
    pub data: Value,
    /// When it was read.
    pub at: Instant,
}

pub struct EventStream {
    response: reqwest::Response,
    buffer: String,
    /// The `id` of the last event read.
    pub last_id: Option<String>,
    /// Heartbeat comments read so far.
    pub comments: usize,
}

/// Opens `url` (`Last-Event-ID` when given; `token` instead of the server's); a refusal comes
/// back as the answer.
pub async fn open(http: &reqwest::Client, url: &str, last_event_id: Option<&str>, token: Option<&str>) -> Result<EventStream, Reply> {
    let mut request = http.get(url).header("accept", "text/event-stream").timeout(Duration::from_secs(3600));
    if let Some(token) = token.map(str::to_owned).or_else(|| token_for(url)) {
        request = request.bearer_auth(token);
    }
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    if status != 200 {
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        return Err(Reply { status, headers, text, body });
    }
    Ok(EventStream { response, buffer: String::new(), last_id: None, comments: 0 })
}

impl EventStream {
    /// The next event within `wait`; `None` when none came or the stream ended.
    pub async fn next(&mut self, wait: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(event) = self.parse_one() {
                return Some(event);
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
    }

    /// The next event named `name` within `wait`, skipping others.
    pub async fn next_named(&mut self, name: &str, wait: Duration) -> Option<Event> {
        let deadline = Instant::now() + wait;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next(left).await {
                Some(event) if event.name == name => return Some(event),
                Some(_) => continue,
                None => return None,
            }
        }
        None
    }

    /// Every event that arrives within `wait`.
    pub async fn collect(&mut self, wait: Duration) -> Vec<Event> {
        let deadline = Instant::now() + wait;
        let mut events = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next(left).await {
                Some(event) => events.push(event),
                None => break,
            }
        }
        events
    }

    /// The distinct orders of `order_updated` events until `count` are seen or `wait` passes.
    pub async fn updated_orders(&mut self, count: usize, wait: Duration) -> std::collections::BTreeSet<i64> {
        let deadline = Instant::now() + wait;
        let mut seen = std::collections::BTreeSet::new();
        while seen.len() < count
            && let Some(left) = deadline.checked_duration_since(Instant::now())
        {
            match self.next(left).await {
                Some(event) if event.name == "order_updated" => {
                    seen.extend(event.data["order_id"].as_i64());
                }
                Some(_) => {}
                None => break,
            }
        }
        seen
    }

    /// Whether the server ended the stream (reading until `wait` passes or it ends).
    pub async fn ended_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(Ok(None)) | Ok(Err(_)) => return true,
                Err(_) => return false,
            }
        }
    }

    /// One complete event from the buffer, if it holds one; comments are counted and dropped.
    fn parse_one(&mut self) -> Option<Event> {
        loop {
            let end = self.buffer.find("\n\n")?;
            let block: String = self.buffer.drain(..end + 2).collect();
            let (mut name, mut id, mut data) = ("message".to_owned(), None, String::new());
            let mut any = false;
            for line in block.lines() {
                if line.starts_with(':') {
                    self.comments += 1;
                    continue;
                }
                let (field, value) = line.split_once(':').map_or((line, ""), |(f, v)| (f, v.strip_prefix(' ').unwrap_or(v)));
                any = true;
                match field {
                    "event" => name = value.to_owned(),
                    "id" => id = Some(value.to_owned()),
                    "data" => {
                        if !data.is_empty() {
                            data.push('\n');
                        }
                        data.push_str(value);
                    }
                    _ => {}
                }
            }
            if !any {
                continue;
            }
            if id.is_some() {
                self.last_id = id.clone();
            }
            let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
            return Some(Event { name, id, data, at: Instant::now() });
        }
    }
}
