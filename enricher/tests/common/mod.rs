//! An in-process fake of KeyCRM's API on `127.0.0.1:0`, answering in the shapes of
//! `fixtures/keycrm/`, plus the wiring the enricher's tests share. It records every request (token,
//! path, query, arrival time) and can be scripted per token: a status code (with or without
//! `Retry-After`), a delay, or a raw body for the next requests.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ksa_bus::Bus;
use ksa_bus::outbox::SqliteOutbox;
use ksa_bus::{OutboxConfig, Record};
use ksa_enricher::{ApiAccessor, ClientConfig, Clients, Secret, TokenCipher};
use ksa_schemas::bus::{ENRICH_REQUESTS, ORDER_UPDATES, STATUS_EVENTS};
use ksa_state::enrich::ApiAccessUpdate;
use ksa_state::{EnrichStore, NewProject, SqliteState, StateStore};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::time::Instant;
use warp::Filter;
use warp::http::{Response, StatusCode};

pub const TOPICS: [&str; 3] = [STATUS_EVENTS, ORDER_UPDATES, ENRICH_REQUESTS];

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/../fixtures/keycrm/{name}", env!("CARGO_MANIFEST_DIR"))).expect("fixture")
}

/// One scripted answer, used once, before the normal answer.
#[derive(Clone, Debug)]
pub enum Scripted {
    Status { code: u16, retry_after: Option<&'static str> },
    Delay(Duration),
    Body(&'static str),
}

#[derive(Clone, Debug)]
pub struct Hit {
    pub token: String,
    pub path: String,
    pub query: String,
    pub at: Instant,
}

#[derive(Default)]
pub struct FakeState {
    pub hits: Vec<Hit>,
    /// Status list pages served as they are (the fixtures); when empty, `statuses` is paged.
    pub status_pages: Vec<String>,
    pub statuses: Vec<Value>,
    pub orders: HashMap<i64, Value>,
    pub scripts: HashMap<String, VecDeque<Scripted>>,
    /// Tokens answered 401.
    pub refused_tokens: Vec<String>,
    /// Every answer to this token waits this long first.
    pub slow: HashMap<String, Duration>,
}

#[derive(Clone)]
pub struct FakeKeyCrm {
    pub base_url: String,
    pub state: Arc<Mutex<FakeState>>,
}

impl FakeKeyCrm {
    pub async fn start() -> FakeKeyCrm {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let shared = state.clone();
        let routes = warp::get()
            .and(warp::path::full())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .and(warp::header::optional::<String>("authorization"))
            .then(move |path: warp::path::FullPath, query: String, auth: Option<String>| {
                let state = shared.clone();
                async move { answer(state, path.as_str().to_owned(), query, auth.unwrap_or_default()).await }
            });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding the fake KeyCRM");
        let addr = listener.local_addr().expect("its address");
        tokio::spawn(warp::serve(routes).incoming(listener).run());
        FakeKeyCrm { base_url: format!("http://{addr}/v1"), state }
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    pub fn script(&self, token: &str, answers: impl IntoIterator<Item = Scripted>) {
        self.with(|s| s.scripts.entry(token.to_owned()).or_default().extend(answers));
    }

    pub fn hits(&self, token: &str) -> Vec<Hit> {
        self.with(|s| s.hits.iter().filter(|h| h.token == token).cloned().collect())
    }

    pub fn add_order(&self, order: Value) {
        let id = order["id"].as_i64().expect("an order id");
        self.with(|s| s.orders.insert(id, order));
    }
}

fn reply(code: u16, body: String) -> Response<String> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(body)
        .unwrap()
}

async fn answer(state: Arc<Mutex<FakeState>>, path: String, query: String, auth: String) -> Response<String> {
    let token = auth.strip_prefix("Bearer ").unwrap_or("").to_owned();
    let (scripted, slow, refused) = {
        let mut s = state.lock().unwrap();
        s.hits.push(Hit { token: token.clone(), path: path.clone(), query: query.clone(), at: Instant::now() });
        let scripted = s.scripts.get_mut(&token).and_then(VecDeque::pop_front);
        (scripted, s.slow.get(&token).copied(), s.refused_tokens.contains(&token) || token.is_empty())
    };
    if let Some(delay) = slow {
        tokio::time::sleep(delay).await;
    }
    if refused {
        return reply(401, json!({"message": "Unauthenticated."}).to_string());
    }
    match scripted {
        Some(Scripted::Status { code, retry_after }) => {
            let mut response = reply(code, json!({"message": "scripted"}).to_string());
            if let Some(after) = retry_after {
                response.headers_mut().insert("retry-after", after.parse().unwrap());
            }
            return response;
        }
        Some(Scripted::Delay(delay)) => tokio::time::sleep(delay).await,
        Some(Scripted::Body(body)) => return reply(200, body.to_owned()),
        None => {}
    }
    let params: HashMap<String, String> = url_params(&query);
    let page: usize = params.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let limit: usize = params.get("limit").and_then(|p| p.parse().ok()).unwrap_or(15);
    let s = state.lock().unwrap();
    match path.as_str() {
        "/v1/order/status" if !s.status_pages.is_empty() => match s.status_pages.get(page - 1) {
            Some(body) => reply(200, body.clone()),
            None => reply(200, envelope(&[], page, limit, s.status_pages.len())),
        },
        "/v1/order/status" => {
            let last = s.statuses.len().div_ceil(limit).max(1);
            let data: Vec<Value> = s.statuses.iter().skip((page - 1) * limit).take(limit).cloned().collect();
            reply(200, envelope(&data, page, limit, last))
        }
        "/v1/order" => {
            let (from, to) = params.get("filter[updated_between]").and_then(|f| f.split_once(", ")).expect("a window filter");
            let mut orders: Vec<&Value> = s
                .orders
                .values()
                .filter(|o| {
                    let updated = o["updated_at"].as_str().unwrap_or("")[..19].replace('T', " ");
                    updated.as_str() >= from && updated.as_str() < to
                })
                .collect();
            assert_eq!(params.get("sort").map(String::as_str), Some("id"), "backfill pages by id");
            orders.sort_by_key(|o| o["id"].as_i64());
            let last = orders.len().div_ceil(limit).max(1);
            let data: Vec<Value> = orders.iter().skip((page - 1) * limit).take(limit).map(|o| (*o).clone()).collect();
            reply(200, envelope(&data, page, limit, last))
        }
        other => match other.strip_prefix("/v1/order/").and_then(|id| id.parse::<i64>().ok()) {
            Some(id) => match s.orders.get(&id) {
                Some(order) => reply(200, order.to_string()),
                None => reply(404, json!({"message": "Not found"}).to_string()),
            },
            None => reply(404, json!({"message": "Not found"}).to_string()),
        },
    }
}

/// Laravel's pagination envelope, as the fixtures have it.
fn envelope(data: &[Value], page: usize, per_page: usize, last_page: usize) -> String {
    json!({
        "total": data.len(),
        "current_page": page,
        "per_page": per_page,
        "last_page": last_page,
        "from": (page - 1) * per_page + 1,
        "to": (page - 1) * per_page + data.len(),
        "data": data,
        "first_page_url": "https://openapi.keycrm.app/v1/order?page=1",
        "next_page_url": if page < last_page { Value::String(format!("https://openapi.keycrm.app/v1/order?page={}", page + 1)) } else { Value::Null },
        "prev_page_url": Value::Null,
        "path": "https://openapi.keycrm.app/v1/order",
    })
    .to_string()
}

fn url_params(query: &str) -> HashMap<String, String> {
    query.split('&').filter_map(|pair| pair.split_once('=')).map(|(k, v)| (decode(k), decode(v))).collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A status of the dictionary, in the fixtures' shape.
pub fn status_json(id: i64, name: &str, group: i64) -> Value {
    json!({"id": id, "name": name, "alias": name, "is_active": true, "group_id": group, "is_closing_order": group == 5,
           "is_reserved": false, "expiration_period": null, "created_at": "2023-03-01T10:00:00.000000Z",
           "updated_at": "2023-03-01T10:00:00.000000Z", "deleted_at": null})
}

/// An order of `GET /order` / `GET /order/{id}`, in the fixture's shape.
pub fn order_json(id: i64, status_id: i64, group: i64, changed_at: &str, updated_at: &str) -> Value {
    let mut order: Value = serde_json::from_str(&fixture("order_with_products.json")).unwrap();
    order["id"] = json!(id);
    order["status_id"] = json!(status_id);
    order["status_group_id"] = json!(group);
    order["status_changed_at"] = json!(changed_at);
    order["updated_at"] = json!(updated_at);
    order["marketing"]["order_id"] = json!(id);
    order
}

/// Fast settings for tests: rates per second instead of per minute, short back-offs.
pub fn fast_client_config() -> ClientConfig {
    ClientConfig {
        default_rate: 50,
        rate_window: Duration::from_secs(1),
        burst: 1,
        request_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(1),
        max_attempts: 6,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(100),
        retry_after_max: Duration::from_secs(2),
        circuit_threshold: 5,
        circuit_open_for: Duration::from_secs(5),
    }
}

/// A SQLite state in `dir`, its outbox, and an accessor with a fixed key.
pub struct World {
    pub state: SqliteState,
    pub bus: SqliteOutbox,
    pub access: ApiAccessor,
}

pub fn cipher() -> TokenCipher {
    TokenCipher::from_key([42; 32])
}

impl World {
    pub async fn open(path: &std::path::Path, config: ClientConfig) -> World {
        let state = SqliteState::open(path.to_str().unwrap()).await.expect("opening SQLite");
        let bus = SqliteOutbox::start(state.pool().clone(), &TOPICS, OutboxConfig::default()).await.expect("starting the outbox");
        let access = ApiAccessor::new(Arc::new(Clients::new(config).expect("clients")), cipher());
        World { state, bus, access }
    }

    /// A project whose API is the fake, with `token` and `rate` (per window).
    pub async fn project(&self, slug: &str, fake: &FakeKeyCrm, token: &str, rate: Option<u32>) -> i64 {
        let project = self
            .state
            .create_project(NewProject {
                slug: slug.into(),
                name: slug.into(),
                timezone: "UTC".into(),
                webhook_secret_hash: "ab".repeat(32),
                allowed_cidrs: vec![],
            })
            .await
            .expect("creating a project");
        self.state
            .update_api_access(
                project.id,
                ApiAccessUpdate {
                    base_url: Some(fake.base_url.clone()),
                    token_enc: Some(cipher().encrypt(&Secret::new(token))),
                    token_hint: None,
                    rate_per_minute: Some(rate),
                },
            )
            .await
            .expect("storing API access");
        project.id
    }

    /// Every record of `topic`, all partitions.
    pub async fn records(&self, topic: &str) -> Vec<Record> {
        let mut all = Vec::new();
        for partition in 0..self.bus.partitions(topic).unwrap() {
            all.extend(self.bus.read(topic, partition, 0, 100_000, Duration::ZERO).await.unwrap());
        }
        all
    }
}
