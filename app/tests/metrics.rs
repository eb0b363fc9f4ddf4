//! `GET /metrics` (docs/operations.md): served on an address of its own, never on the public
//! port; behind a bearer token when `metrics.token` is set; and after traffic it counts the
//! webhooks by outcome, their answer times, the processor's work, the bus lag and the open
//! orders by SLA state, in the Prometheus text format.

mod common;

use std::time::{Duration, Instant};

use common::http::{Processed, client, post_webhook, wait_until_processed};
use common::server::{Instance, Server};
use common::status_change;

/// The address the server logged for `/metrics`.
fn metrics_url(server: &Server) -> String {
    let log = server.stderr();
    let at = log.find("metrics on http://").unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"));
    let url = &log[at + "metrics on ".len()..];
    url[..url.find(|c: char| c.is_whitespace() || c == '"').unwrap_or(url.len())].to_owned()
}

/// The value of the sample `name{labels…}` (labels in any order, others allowed).
fn sample(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        (metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))).then(|| value.parse().ok())?
    })
}

async fn scrape(url: &str, token: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("scraping /metrics");
    (response.status().as_u16(), response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_processing_lag_and_open_orders_are_counted_on_a_port_of_their_own() {
    let instance = Instance::sqlite();
    let project = instance.add_project("shop", &[]);
    let server = instance.start();
    let client = client();
    let url = server.webhook_url(&project);
    let now = chrono::Utc::now();
    let at = |minutes: i64| (now - chrono::Duration::minutes(minutes)).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    post_webhook(&client, &url, status_change(7001, 1, 1, &at(30))).await.assert_accepted_as("accepted");
    post_webhook(&client, &url, status_change(7002, 1, 1, &at(20))).await.assert_accepted_as("accepted");
    post_webhook(&client, &url, status_change(7002, 1, 1, &at(20))).await.assert_accepted_as("duplicate");
    let wrong = format!("{}/webhooks/keycrm/shop?token=not-the-secret", server.base_url);
    post_webhook(&client, &wrong, status_change(7003, 1, 1, &at(10))).await.assert_error(401);
    wait_until_processed(&client, &server, "shop", Processed { orders: 2, events: 2 }).await;

    let public = reqwest::get(format!("{}/metrics", server.base_url)).await.unwrap().text().await.unwrap();
    assert!(!public.contains("ksa_webhooks_total"), "never on the public port (there it is the web UI's page)");
    let metrics = metrics_url(&server);
    assert!(metrics.starts_with("http://127.0.0.1:"), "{metrics}");
    let deadline = Instant::now() + Duration::from_secs(40);
    let body = loop {
        let (status, body) = scrape(&metrics, None).await;
        assert_eq!(status, 200, "{body}");
        let open: f64 = ["none", "ok", "near", "over"]
            .iter()
            .filter_map(|s| sample(&body, "ksa_open_orders", &[("project", "shop"), ("sla", s)]))
            .sum();
        let lag = sample(&body, "ksa_consumer_lag_records", &[("topic", "status-events"), ("partition", "0")]);
        if open == 2.0 && lag == Some(0.0) {
            break body;
        }
        assert!(Instant::now() < deadline, "open orders {open}, lag {lag:?} after 40 s:\n{body}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let webhooks =
        |outcome: &str, reason: &str| sample(&body, "ksa_webhooks_total", &[("project", "shop"), ("outcome", outcome), ("reason", reason)]);
    assert_eq!(webhooks("received", ""), Some(4.0));
    assert_eq!(webhooks("accepted", ""), Some(2.0));
    assert_eq!(webhooks("duplicate", ""), Some(1.0));
    assert_eq!(webhooks("rejected", "unauthorized"), Some(1.0));
    assert_eq!(
        sample(&body, "ksa_webhook_duration_seconds_count", &[("project", "shop")]),
        Some(3.0),
        "answer times of those that reached the bus"
    );
    assert_eq!(sample(&body, "ksa_processor_events_total", &[]), Some(2.0));
    assert!(sample(&body, "ksa_processor_orders_total", &[]).is_some_and(|n| n >= 2.0));
    assert!(sample(&body, "ksa_processor_batch_records_count", &[]).is_some_and(|n| n >= 1.0));
    assert!(sample(&body, "ksa_state_write_seconds_count", &[]).is_some_and(|n| n >= 1.0));
    assert!(sample(&body, "ksa_processor_delay_seconds_bucket", &[("le", "+Inf")]).is_some_and(|n| n >= 1.0));
    assert!(body.contains("# HELP ksa_webhooks_total"), "metrics carry their help text");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_token_is_required_and_an_empty_address_serves_nothing() {
    let instance = Instance::sqlite();
    instance.add_project("shop", &[]);
    let server = instance.start_with(&[("KSA__METRICS__TOKEN", "scrape-me-please")]);
    let metrics = metrics_url(&server);
    let (status, body) = scrape(&metrics, None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(scrape(&metrics, Some("a-wrong-token")).await.0, 401);
    let (status, body) = scrape(&metrics, Some("scrape-me-please")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("ksa_webhooks_total"), "the zero series of every active project:\n{body}");
    assert!(!server.stderr().contains("scrape-me-please"), "the token is never logged");
    server.stop();

    let server = instance.start_with(&[("KSA__METRICS__LISTEN", "")]);
    assert!(!server.stderr().contains("metrics on"), "no metrics address: {}", server.stderr());
    server.stop();
}
