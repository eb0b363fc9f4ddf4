//! A stand-in for KeyCRM's HTTP API (it cannot be reached from the tests), answering in the
//! shapes of the fixtures: the status dictionary, the order list, and one order with its items.
//! It runs on its own thread and records the `Authorization` header of every request.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use warp::Filter;
use warp::http::Response;

use super::keycrm_fixture;

/// The token the stand-in accepts.
pub const TOKEN: &str = "kc-test-token-5f1e9a";

/// One order with its items for `GET /v1/order/{id}`, or `None` for 404.
pub type OrderFn = fn(i64) -> Option<Value>;

pub struct FakeKeycrm {
    /// Its API's base URL, as `project api --base-url` takes it.
    pub base_url: String,
    /// The `Authorization` header of each request, in arrival order.
    pub seen: Arc<Mutex<Vec<String>>>,
}

/// Starts the stand-in; `order` answers `GET /v1/order/{id}`.
pub fn start(order: OrderFn) -> FakeKeycrm {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = seen.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let routes = warp::get()
                .and(warp::path::full())
                .and(warp::query::raw().or(warp::any().map(String::new)).unify())
                .and(warp::header::optional::<String>("authorization"))
                .map(move |path: warp::path::FullPath, query: String, auth: Option<String>| {
                    let auth = auth.unwrap_or_default();
                    recorded.lock().unwrap().push(auth.clone());
                    if auth != format!("Bearer {TOKEN}") {
                        return Response::builder().status(401).body(json!({"message": "Unauthenticated."}).to_string()).unwrap();
                    }
                    let body = match path.as_str() {
                        "/v1/order/status" if query.contains("page=2") => Some(keycrm_fixture("order_status_page2.json")),
                        "/v1/order/status" => Some(keycrm_fixture("order_status_page1.json")),
                        "/v1/order" => {
                            let order: Value = serde_json::from_str(&keycrm_fixture("order_with_products.json")).unwrap();
                            Some(json!({"total": 1, "current_page": 1, "per_page": 50, "last_page": 1, "data": [order]}).to_string())
                        }
                        other => other.strip_prefix("/v1/order/").and_then(|id| id.parse().ok()).and_then(order).map(|o| o.to_string()),
                    };
                    match body {
                        Some(body) => Response::builder().status(200).header("content-type", "application/json").body(body).unwrap(),
                        None => Response::builder().status(404).body("{}".to_owned()).unwrap(),
                    }
                });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            warp::serve(routes).incoming(listener).run().await;
        });
    });
    let addr = rx.recv().unwrap();
    FakeKeycrm { base_url: format!("http://{addr}/v1"), seen }
}

/// The fixture order with its items (one of them the urgent-production line
/// `Термінове виготовлення`), as order `id`.
pub fn with_products(id: i64) -> Value {
    let mut order: Value = serde_json::from_str(&keycrm_fixture("order_with_products.json")).unwrap();
    order["id"] = id.into();
    order
}

/// The fixture order as order `id`, without its urgent-production line.
pub fn without_urgent_line(id: i64) -> Value {
    let mut order = with_products(id);
    if let Some(products) = order["products"].as_array_mut() {
        products.retain(|p| p["sku"] != "Термінове виготовлення");
    }
    order
}

/// Points project `slug` of `instance` at this stand-in (its token, 600 requests a minute) and
/// gives it the example settings (working calendars, an urgent grid, the urgency rules).
pub fn connect_with_example_settings(instance: &super::server::Instance, slug: &str, keycrm: &FakeKeycrm) {
    let mut api =
        instance.command(["project", "api", "--slug", slug, "--token-env", "SHOP_TOKEN", "--base-url", &keycrm.base_url, "--rate", "600"]);
    super::run(api.env("SHOP_TOKEN", TOKEN)).assert_success();
    instance.put_settings(slug, &super::example("settings.json"));
}
