//! `POST /webhooks/keycrm/{project}` and the read API answering a client over real HTTP, with
//! the real binary on a real SQLite file: every answer the webhook endpoint gives, and for each
//! refusal the proof that nothing was written (docs/architecture.md, invariant 2).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::http::{Processed, Reply, client, get, post_webhook, send, try_send, wait_until_processed};
use common::server::{Instance, Project, Server};
use common::state_file::{StateFile, WriteLock};
use common::webhook_log::EventKey;
use common::{keycrm_fixture, status_change};
use serde_json::Value;

/// A running server with one open project `shop` and one `walled` that only 10.0.0.0/8 may use.
struct Setup {
    instance: Instance,
    server: Server,
    shop: Project,
    walled: Project,
    client: reqwest::Client,
    state: StateFile,
}

impl Setup {
    async fn start() -> Setup {
        Setup::start_with(&[]).await
    }

    async fn start_with(env: &[(&str, &str)]) -> Setup {
        let instance = Instance::sqlite();
        let shop = instance.add_project("shop", &[]);
        let walled = instance.add_project("walled", &["--allow", "10.0.0.0/8"]);
        let server = instance.start_with(env);
        let state = StateFile::open(&instance.state_db()).await;
        Setup { instance, server, shop, walled, client: client(), state }
    }

    fn url(&self) -> String {
        self.server.webhook_url(&self.shop)
    }

    fn webhooks_url(&self, rest: &str) -> String {
        format!("{}/webhooks/keycrm/{rest}", self.server.base_url)
    }

    /// Sends the request and asserts that the outbox and the event log did not change.
    async fn send_writing_nothing(&mut self, request: reqwest::RequestBuilder) -> Reply {
        let before = self.state.written_rows().await;
        let reply = send(request).await;
        let after = self.state.written_rows().await;
        assert_eq!(after, before, "{reply:?} wrote rows");
        reply
    }

    /// A POST of `body` as JSON that must write nothing.
    async fn refused(&mut self, url: &str, body: String) -> Reply {
        let request = self.client.post(url).header("content-type", "application/json").body(body);
        self.send_writing_nothing(request).await
    }
}

fn a_status_change(order_id: i64) -> String {
    status_change(order_id, 20, 2, "2026-02-02T10:00:00.000000Z")
}

fn with_context(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut webhook: Value = serde_json::from_str(&keycrm_fixture("webhook_status_change.json")).expect("fixture JSON");
    edit(webhook["context"].as_object_mut().expect("context object"));
    webhook.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_webhook_is_durable_when_answered_and_then_shown_by_the_read_api() {
    let mut setup = Setup::start().await;
    let before = setup.state.written_rows().await;

    post_webhook(&setup.client, &setup.url(), a_status_change(501)).await.assert_accepted_as("accepted");
    let after = setup.state.written_rows().await;
    assert_eq!((after.bus_log, after.bus_idempotency), (before.bus_log + 1, before.bus_idempotency + 1), "in the outbox when answered");

    wait_until_processed(&setup.client, &setup.server, "shop", Processed { orders: 1, events: 1 }).await;
    assert_eq!(setup.state.written_rows().await.order_status_events, before.order_status_events + 1);
    let timeline = get(&setup.client, &format!("{}/api/orders/501/timeline?project=shop", setup.server.base_url)).await;
    assert_eq!(timeline.status, 200, "{timeline:?}");
    assert_eq!((timeline.body["order_id"].as_i64(), timeline.body["current_status_id"].as_i64()), (Some(501), Some(20)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_webhook_again_is_answered_duplicate_and_writes_nothing() {
    let mut setup = Setup::start().await;
    post_webhook(&setup.client, &setup.url(), a_status_change(502)).await.assert_accepted_as("accepted");
    wait_until_processed(&setup.client, &setup.server, "shop", Processed { orders: 1, events: 1 }).await;

    let url = setup.url();
    setup.refused(&url, a_status_change(502)).await.assert_accepted_as("duplicate");
    // The same event with other incidental fields (KeyCRM's `updated_at`, a comment) is the same event.
    let retouched = a_status_change(502).replace("Нова Пошта", "Укрпошта");
    setup.refused(&url, retouched).await.assert_accepted_as("duplicate");
    wait_until_processed(&setup.client, &setup.server, "shop", Processed { orders: 1, events: 1 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_status_webhook_is_acknowledged_as_ignored_naming_the_event_and_writes_nothing() {
    let mut setup = Setup::start().await;
    let url = setup.url();
    let reply = setup.refused(&url, keycrm_fixture("webhook_payment_status.json")).await;
    reply.assert_accepted_as("ignored");
    assert_eq!(reply.body["event"], "order.change_payment_status", "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_refused_with_400_and_writes_nothing() {
    let mut setup = Setup::start().await;
    let url = setup.url();
    let truncated = a_status_change(503)[..40].to_string();
    setup.refused(&url, truncated).await.assert_error(400);
    setup.refused(&url, "[1, 2, 3]".into()).await.assert_error(400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_without_a_status_id_is_refused_with_400_naming_the_field_and_writes_nothing() {
    let mut setup = Setup::start().await;
    let url = setup.url();
    let reply = setup
        .refused(
            &url,
            with_context(|context| {
                context.remove("status_id");
            }),
        )
        .await;
    reply.assert_error(400);
    assert_eq!(reply.body["field"], "context.status_id", "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_with_an_unreadable_status_time_is_refused_with_400_naming_the_field_and_writes_nothing() {
    let mut setup = Setup::start().await;
    let url = setup.url();
    let reply = setup.refused(&url, with_context(|context| drop(context.insert("status_changed_at".into(), "yesterday".into())))).await;
    reply.assert_error(400);
    assert_eq!(reply.body["field"], "context.status_changed_at", "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_whose_status_change_is_implausibly_old_or_ahead_is_refused_naming_the_field_and_writes_nothing() {
    let mut setup = Setup::start().await;
    let url = setup.url();
    let now = chrono::Utc::now();
    for at in [now - chrono::Duration::days(6 * 366), now + chrono::Duration::days(2)] {
        let body = status_change(510, 20, 2, &at.format("%Y-%m-%dT%H:%M:%S.000000Z").to_string());
        let reply = setup.refused(&url, body).await;
        reply.assert_error(400);
        assert_eq!(reply.body["field"], "context.status_changed_at", "{reply:?}");
    }
    // Within the bounds: accepted.
    let recent = (now - chrono::Duration::days(4 * 366)).format("%Y-%m-%dT%H:%M:%S.000000Z").to_string();
    post_webhook(&setup.client, &url, status_change(510, 20, 2, &recent)).await.assert_accepted_as("accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_utf8_is_refused_with_400_and_writes_nothing() {
    let mut setup = Setup::start().await;
    let url = setup.url();
    let mut body = a_status_change(511).into_bytes();
    let at = body.iter().position(|b| *b == b'"').unwrap();
    body.insert(at + 1, 0xff);
    let request = setup.client.post(&url).header("content-type", "application/json").body(body);
    let reply = setup.send_writing_nothing(request).await;
    reply.assert_error(400);
    assert!(reply.body["message"].as_str().unwrap().contains("UTF-8"), "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_without_a_secret_is_refused_with_401_and_writes_nothing() {
    let mut setup = Setup::start().await;
    let url = setup.webhooks_url("shop");
    setup.refused(&url, a_status_change(504)).await.assert_error(401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_with_a_wrong_secret_is_refused_with_401_in_every_place_and_writes_nothing() {
    let mut setup = Setup::start().await;
    let wrong = setup.shop.secret.replace(|c: char| c != '0', "0");
    for url in [setup.webhooks_url(&format!("shop?token={wrong}")), setup.webhooks_url(&format!("shop/{wrong}"))] {
        setup.refused(&url, a_status_change(505)).await.assert_error(401);
    }
    let in_header = setup
        .client
        .post(setup.webhooks_url("shop"))
        .header("content-type", "application/json")
        .header("x-webhook-token", wrong)
        .body(a_status_change(505));
    setup.send_writing_nothing(in_header).await.assert_error(401);
    // Another project's secret opens only that project.
    let other = setup.webhooks_url(&format!("shop?token={}", setup.walled.secret));
    setup.refused(&other, a_status_change(505)).await.assert_error(401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_is_accepted_as_query_token_as_header_and_as_last_path_segment() {
    let setup = Setup::start().await;
    let secret = &setup.shop.secret;
    let by_query = post_webhook(&setup.client, &setup.webhooks_url(&format!("shop?token={secret}")), a_status_change(601)).await;
    by_query.assert_accepted_as("accepted");
    let by_path = post_webhook(&setup.client, &setup.webhooks_url(&format!("shop/{secret}")), a_status_change(602)).await;
    by_path.assert_accepted_as("accepted");
    let by_header = send(
        setup
            .client
            .post(setup.webhooks_url("shop"))
            .header("content-type", "application/json")
            .header("x-webhook-token", secret.as_str())
            .body(a_status_change(603)),
    )
    .await;
    by_header.assert_accepted_as("accepted");
    wait_until_processed(&setup.client, &setup.server, "shop", Processed { orders: 3, events: 3 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_from_outside_the_project_allowlist_is_refused_with_403_and_writes_nothing() {
    let mut setup = Setup::start().await;
    let url = setup.server.webhook_url(&setup.walled);
    let reply = setup.refused(&url, a_status_change(506)).await;
    reply.assert_error(403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_for_an_unknown_project_is_answered_as_a_wrong_secret_and_writes_nothing() {
    let mut setup = Setup::start().await;
    let url = setup.webhooks_url(&format!("no-such-shop?token={}", setup.shop.secret));
    let unknown = setup.refused(&url, a_status_change(507)).await;
    unknown.assert_error(401);
    // Exactly what a wrong secret for a real project gets: slugs cannot be found by guessing.
    let (wrong_url, unknown_bare, known_bare) =
        (setup.webhooks_url("shop?token=not-the-secret"), setup.webhooks_url("no-such-shop"), setup.webhooks_url("shop"));
    let wrong = setup.refused(&wrong_url, a_status_change(507)).await;
    assert_eq!((unknown.status, &unknown.body), (wrong.status, &wrong.body));
    let missing_unknown = setup.refused(&unknown_bare, a_status_change(507)).await;
    let missing_known = setup.refused(&known_bare, a_status_change(507)).await;
    assert_eq!((missing_unknown.status, &missing_unknown.body), (missing_known.status, &missing_known.body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_on_the_webhook_endpoint_is_refused_with_405_allowing_post() {
    let mut setup = Setup::start().await;
    let reply = setup.send_writing_nothing(setup.client.get(setup.url())).await;
    reply.assert_error(405);
    assert_eq!(reply.header("allow"), Some("POST"), "a 405 names the allowed methods in `Allow` (RFC 9110): {reply:?}");
    assert_eq!(reply.body["allow"], "POST", "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_256_kib_is_refused_with_413_and_writes_nothing() {
    let mut setup = Setup::start().await;
    let url = setup.url();
    let padding = "x".repeat(300 * 1024);
    let huge = with_context(|context| drop(context.insert("manager_comment".into(), padding.into())));
    setup.refused(&url, huge.clone()).await.assert_error(413);

    // Without a Content-Length (chunked), the limit holds while the body is read.
    let before = setup.state.written_rows().await;
    let (status, body) = post_chunked(&setup.server, &format!("/webhooks/keycrm/shop?token={}", setup.shop.secret), huge.as_bytes());
    assert_eq!(status, 413, "{body}");
    assert!(serde_json::from_str::<Value>(&body).is_ok_and(|b| b["error"].is_string()), "{body}");
    assert_eq!(setup.state.written_rows().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_text_body_is_refused_with_415_and_writes_nothing() {
    let mut setup = Setup::start().await;
    let request = setup.client.post(setup.url()).header("content-type", "text/plain").body(a_status_change(508));
    setup.send_writing_nothing(request).await.assert_error(415);
}

/// KeyCRM retries what is refused; the server must refuse rather than queue without bound, and
/// must never lose what it acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_ingest_queue_answers_503_with_retry_after_and_loses_no_accepted_webhook() {
    let setup = Setup::start_with(&[("KSA__BUS__QUEUE_CAPACITY", "1")]).await;
    let lock = WriteLock::take(&setup.instance.bus_db()).await;

    let bodies: Vec<String> = (0..24).map(|i| status_change(700 + i, 20, 2, "2026-02-03T10:00:00.000000Z")).collect();
    let (answers, mut answered) = tokio::sync::mpsc::unbounded_channel();
    for (i, body) in bodies.iter().enumerate() {
        let request = setup.client.post(setup.url()).header("content-type", "application/json").body(body.clone());
        let answers = answers.clone();
        tokio::spawn(async move {
            let _ = answers.send((i, try_send(request).await));
        });
    }
    drop(answers);

    // The outbox writer waits for the lock, so the queue fills at once and refusals come back
    // while the lock is held. Release it at the first refusal.
    let mut replies: Vec<(usize, Reply)> = Vec::new();
    while let Some((i, reply)) = answered.recv().await {
        let reply = reply.unwrap_or_else(|e| panic!("webhook {i} got no answer: {e}"));
        let refused = reply.status == 503;
        replies.push((i, reply));
        if refused {
            break;
        }
    }
    lock.release().await;
    while let Some((i, reply)) = answered.recv().await {
        replies.push((i, reply.unwrap_or_else(|e| panic!("webhook {i} got no answer: {e}"))));
    }

    let refused: Vec<&(usize, Reply)> = replies.iter().filter(|(_, r)| r.status == 503).collect();
    assert!(!refused.is_empty(), "no webhook was refused while the queue was full: {replies:?}");
    for (_, reply) in &refused {
        reply.assert_error(503);
        let retry_after = reply.header("retry-after").and_then(|s| s.parse::<u32>().ok());
        assert!(retry_after.is_some_and(|s| s >= 1), "a 503 needs Retry-After in whole seconds: {reply:?}");
    }
    let taken: Vec<usize> = replies.iter().filter(|(_, r)| r.status == 202).map(|(i, _)| *i).collect();
    assert_eq!(taken.len() + refused.len(), bodies.len(), "every answer is 202 or 503: {replies:?}");
    for (_, reply) in replies.iter().filter(|(_, r)| r.status == 202) {
        reply.assert_accepted_as("accepted");
    }

    let mut state = StateFile::open(&setup.instance.state_db()).await;
    wait_until_processed(&setup.client, &setup.server, "shop", Processed { orders: taken.len(), events: taken.len() as u64 }).await;
    let stored = state.event_keys("shop").await;
    let missing: Vec<usize> = taken.iter().copied().filter(|i| !stored.contains(&EventKey::of(&bodies[*i]))).collect();
    assert!(missing.is_empty(), "webhooks answered 202 but not in the event log: {missing:?}");

    // A refused webhook left no trace: sent again, it is new, not a duplicate.
    for (i, _) in refused {
        post_webhook(&setup.client, &setup.url(), bodies[*i].clone()).await.assert_accepted_as("accepted");
    }
    let all = bodies.len();
    wait_until_processed(&setup.client, &setup.server, "shop", Processed { orders: all, events: all as u64 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_api_answers_bad_parameters_with_400_and_unknown_things_with_404_as_json() {
    let setup = Setup::start().await;
    post_webhook(&setup.client, &setup.url(), a_status_change(509)).await.assert_accepted_as("accepted");
    wait_until_processed(&setup.client, &setup.server, "shop", Processed { orders: 1, events: 1 }).await;
    let base = &setup.server.base_url;
    let ask = |path: &str| {
        let (client, url) = (setup.client.clone(), format!("{base}{path}"));
        async move { get(&client, &url).await }
    };

    for path in ["/api/orders?project=shop&as_of=yesterday", "/api/orders/509/timeline?project=shop&as_of=yesterday"] {
        let reply = ask(path).await;
        reply.assert_error(400);
        assert_eq!(reply.body["field"], "as_of", "{path}: {reply:?}");
    }
    for path in ["/api/orders", "/api/orders/509/timeline"] {
        let reply = ask(path).await;
        reply.assert_error(400);
        assert_eq!(reply.body["field"], "project", "{path}: {reply:?}");
    }
    ask("/api/orders?project=no-such-shop").await.assert_error(404);
    ask("/api/orders/509/timeline?project=no-such-shop").await.assert_error(404);
    ask("/api/orders/999999/timeline?project=shop").await.assert_error(404);
    ask("/api/nothing-here").await.assert_error(404);
    // A mistyped webhook URL in KeyCRM is a wrong address, not a wrong method.
    for path in ["/webhook/keycrm/shop", "/webhooks/keycrm2/shop", "/api/nothing-here"] {
        let reply = send(setup.client.post(format!("{base}{path}")).header("content-type", "application/json").body("{}")).await;
        reply.assert_error(404);
    }
    send(setup.client.post(format!("{base}/api/orders?project=shop"))).await.assert_error(405);

    // The order is there, and not before its first event.
    assert_eq!(ask("/api/orders/509/timeline?project=shop").await.status, 200);
    ask("/api/orders/509/timeline?project=shop&as_of=2026-02-01T00:00:00Z").await.assert_error(404);
}

/// POSTs `body` with `Transfer-Encoding: chunked` over a plain socket (no Content-Length) and
/// returns the status and the body of the answer.
fn post_chunked(server: &Server, path_and_query: &str, body: &[u8]) -> (u16, String) {
    let address = server.base_url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).expect("connecting to the server");
    let head = format!(
        "POST {path_and_query} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("sending the head");
    for chunk in body.chunks(16 * 1024) {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        // The server may answer and stop reading before the last chunk: that is its right.
        if stream.write_all(&framed).is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"));
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_is_served_and_names_every_endpoint() {
    let setup = Setup::start().await;
    let reply = get(&setup.client, &format!("{}/api/openapi.yaml", setup.server.base_url)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("content-type"), Some("application/yaml"));
    assert!(reply.text.starts_with("openapi: 3"), "{}", reply.text);
    for path in ["/webhooks/keycrm/{project}:", "/webhooks/keycrm/{project}/{secret}:", "/api/orders:", "/api/orders/{id}/timeline:"] {
        assert!(reply.text.contains(path), "the OpenAPI document does not describe {path}");
    }
}
