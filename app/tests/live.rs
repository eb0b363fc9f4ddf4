//! The live feed, black-box through `run`: `GET /api/stream/orders` as a dashboard uses it.
//! Updates reach the project's clients and nobody else; a client that reconnects with
//! `Last-Event-ID` gets exactly what it missed; `sla_changed` comes at the crossing with no
//! event; a client that reads nothing is closed with `invalidate` while the others go on.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::http::{client, get, list_all_orders, post_webhook};
use common::server::{Instance, Server};
use common::sse::{self, EventStream};
use common::status_change;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(30);

fn stream_url(server: &Server, slug: &str) -> String {
    format!("{}/api/stream/orders?project={slug}", server.base_url)
}

async fn open(http: &reqwest::Client, server: &Server, slug: &str, last_event_id: Option<&str>) -> EventStream {
    sse::open(http, &stream_url(server, slug), last_event_id, None)
        .await
        .unwrap_or_else(|reply| panic!("the stream was refused: {reply:?}"))
}

/// The order's row from `GET /api/orders` as of `as_of`, without its override.
async fn listed_row(http: &reqwest::Client, server: &Server, slug: &str, order_id: i64, as_of: &str) -> Value {
    let rows = list_all_orders(http, server, slug, &format!("&q={order_id}&as_of={as_of}")).await;
    let mut row = rows.into_iter().find(|r| r["order_id"] == order_id).unwrap_or_else(|| panic!("order {order_id} is not listed"));
    row.as_object_mut().unwrap().remove("override");
    row
}

/// Waits until the list shows `order_id` with `events` events.
async fn wait_for_events(http: &reqwest::Client, server: &Server, slug: &str, order_id: i64, events: u64) {
    let deadline = std::time::Instant::now() + common::http::PROCESSING_DEADLINE;
    loop {
        let rows = list_all_orders(http, server, slug, &format!("&q={order_id}")).await;
        if rows.iter().any(|r| r["order_id"] == order_id && r["event_count"] == events) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "order {order_id} never had {events} events: {rows:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn at(minute: u32) -> String {
    format!("2026-02-02T10:{minute:02}:00.000000Z")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_reach_the_projects_clients_only_and_a_reconnect_gets_exactly_what_it_missed() {
    let instance = Instance::sqlite();
    let shop = instance.add_project("shop", &[]);
    instance.add_project("other", &[]);
    instance.add_user("outsider", "viewer", &["other"], "outsider-password-1");
    let outsider = instance.token("outsider");
    let server = instance.start();
    let http = client();

    // Nobody, and a viewer of another project, cannot listen to `shop`.
    let anonymous = reqwest::Client::new().get(stream_url(&server, "shop")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let refused = sse::open(&http, &stream_url(&server, "shop"), None, Some(&outsider)).await.err().expect("refused");
    assert_eq!(refused.status, 404, "{refused:?}");
    let mut outsiders_own = sse::open(&http, &stream_url(&server, "other"), None, Some(&outsider)).await.expect("their own project");

    let mut shop_stream = open(&http, &server, "shop", None).await;
    let mut other_stream = open(&http, &server, "other", None).await;
    let url = server.webhook_url(&shop);
    post_webhook(&http, &url, status_change(7001, 20, 2, &at(0))).await.assert_accepted_as("accepted");

    let update = shop_stream.next_named("order_updated", WAIT).await.expect("order_updated reaches the client");
    assert!(update.id.is_some(), "every event has an id");
    assert_eq!((update.data["order_id"].as_i64(), update.data["event_count"].as_u64()), (Some(7001), Some(1)), "{:?}", update.data);
    let as_of = update.data["as_of"].as_str().unwrap().to_owned();
    assert_eq!(update.data, listed_row(&http, &server, "shop", 7001, &as_of).await, "the event carries the row the list shows");
    for stream in [&mut other_stream, &mut outsiders_own] {
        let leaked: Vec<_> = stream.collect(Duration::from_secs(2)).await.into_iter().filter(|e| e.name == "order_updated").collect();
        assert!(leaked.is_empty(), "another project's client received {leaked:?}");
    }

    // Disconnect; four more changes of 7001 (each processed before the next) and a new order.
    let resume_from = shop_stream.last_id.clone().unwrap();
    drop(shop_stream);
    for (n, (status, group)) in [(21, 2), (30, 3), (31, 3), (40, 4)].into_iter().enumerate() {
        post_webhook(&http, &url, status_change(7001, status, group, &at(10 * (n as u32 + 1)))).await.assert_accepted_as("accepted");
        wait_for_events(&http, &server, "shop", 7001, n as u64 + 2).await;
    }
    post_webhook(&http, &url, status_change(7002, 20, 2, &at(55))).await.assert_accepted_as("accepted");
    wait_for_events(&http, &server, "shop", 7002, 1).await;

    let mut resumed = open(&http, &server, "shop", Some(&resume_from)).await;
    let missed: Vec<(i64, u64)> = resumed
        .collect(Duration::from_secs(3))
        .await
        .into_iter()
        .filter(|e| e.name == "order_updated")
        .map(|e| (e.data["order_id"].as_i64().unwrap(), e.data["event_count"].as_u64().unwrap()))
        .collect();
    let of_7001: Vec<u64> = missed.iter().filter(|(id, _)| *id == 7001).map(|(_, n)| *n).collect();
    assert_eq!(of_7001, vec![2, 3, 4, 5], "the missed updates of 7001, in order: {missed:?}");
    assert_eq!(missed.len(), 5, "exactly the missed updates: {missed:?}");
    assert!(missed.contains(&(7002, 1)), "{missed:?}");

    // Live again after the replay; a bad id is refused naming the header.
    post_webhook(&http, &url, status_change(7003, 20, 2, &at(58))).await.assert_accepted_as("accepted");
    let live = resumed.next_named("order_updated", WAIT).await.expect("live events after the replay");
    assert_eq!(live.data["order_id"], 7003);
    let bad = sse::open(&http, &stream_url(&server, "shop"), Some("not-an-id"), None).await.err().expect("refused");
    assert_eq!((bad.status, bad.body["field"].as_str()), (400, Some("Last-Event-ID")), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sla_changed_comes_at_the_crossing_with_no_event() {
    let instance = Instance::sqlite();
    let shop = instance.add_project("shop", &[]);
    // 24/7; group 2 may take one minute, near from 80 %.
    let settings = instance.ws.write("settings.json", r#"{"timezone": "UTC", "sla": {"near": {"percent": 80}, "normal": {"2": "00:01"}}}"#);
    instance.put_settings("shop", &settings);
    let server = instance.start();
    let http = client();
    let mut stream = open(&http, &server, "shop", None).await;

    // Entered group 2 55 s ago: near is behind it, over is 5 s ahead.
    let entered = chrono::Utc::now() - chrono::Duration::seconds(55);
    let entered_text = entered.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    post_webhook(&http, &server.webhook_url(&shop), status_change(8001, 20, 2, &entered_text)).await.assert_accepted_as("accepted");
    let update = stream.next_named("order_updated", WAIT).await.expect("order_updated");
    let over_at = update.data["crossings"]["group_over_at"].as_str().expect("the row knows when group 2 goes over").to_owned();

    let deadline = std::time::Instant::now() + WAIT;
    let crossing = loop {
        let event = stream.next_named("sla_changed", WAIT).await.expect("sla_changed");
        if event.data["state"] == "over" {
            break event;
        }
        assert!(std::time::Instant::now() < deadline, "no over crossing");
    };
    let received = chrono::Utc::now();
    assert_eq!((crossing.data["order_id"].as_i64(), crossing.data["scope"].as_str()), (Some(8001), Some("group")), "{:?}", crossing.data);
    assert_eq!(crossing.data["at"].as_str(), Some(over_at.as_str()), "{:?}", crossing.data);
    let instant = chrono::DateTime::parse_from_rfc3339(&over_at).unwrap();
    let late = (received - instant.with_timezone(&chrono::Utc)).num_milliseconds();
    assert!((-50..=1_000).contains(&late), "sla_changed came {late} ms after the crossing instant");
    assert!(crossing.id.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_nothing_is_closed_with_invalidate_and_the_others_keep_receiving() {
    let instance = Instance::sqlite();
    let shop = instance.add_project("shop", &[]);
    // The default buffer (1,024 events behind) absorbs the feed's bursts for a client that reads.
    let server = instance.start();
    let http = client();
    let token = instance.api_token();

    // The slow client: a socket with a tiny receive buffer that is never read.
    let address = server.base_url.trim_start_matches("http://").to_owned();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    let mut slow = socket.connect(address.parse().unwrap()).await.unwrap();
    let request = format!(
        "GET /api/stream/orders?project=shop HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    );
    slow.write_all(request.as_bytes()).await.unwrap();
    let mut reader = open(&http, &server, "shop", None).await;

    // Far more than the buffer and whatever the sockets between hold (a few MB at most).
    const ORDERS: i64 = 8_000;
    const POSTERS: i64 = 4;
    let url = server.webhook_url(&shop);
    let posting = {
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move {
            let posters = (0..POSTERS).map(|p| {
                let (http, url) = (http.clone(), url.clone());
                tokio::spawn(async move {
                    for id in (1..=ORDERS).filter(|id| id % POSTERS == p) {
                        post_webhook(&http, &url, status_change(9_000 + id, 20, 2, &at((id % 60) as u32)))
                            .await
                            .assert_accepted_as("accepted");
                    }
                })
            });
            for poster in posters.collect::<Vec<_>>() {
                poster.await.unwrap();
            }
        })
    };
    let mut seen = BTreeSet::new();
    let deadline = std::time::Instant::now() + common::http::PROCESSING_DEADLINE;
    while seen.len() < ORDERS as usize {
        assert!(std::time::Instant::now() < deadline, "the reading client got {} of {ORDERS} updates", seen.len());
        if let Some(event) = reader.next(Duration::from_secs(5)).await {
            // (`invalidate` for the settings recompute at start is a reload, not a cut-off.)
            assert!(event.name != "invalidate" || event.data["reason"] == "settings", "the reading client was cut off: {:?}", event.data);
            if event.name == "order_updated" {
                seen.insert(event.data["order_id"].as_i64().unwrap());
            }
        }
    }
    posting.await.unwrap();

    // Now read what the slow client was sent: it ends with `invalidate` (too_slow), then the
    // server closes the stream.
    let mut received = Vec::new();
    let read = tokio::time::timeout(WAIT, slow.read_to_end(&mut received)).await;
    assert!(read.is_ok(), "the slow client's stream was not closed");
    let text = String::from_utf8_lossy(&received);
    let last_event = text.rfind("event:").map(|i| &text[i..]).unwrap_or_default();
    assert!(
        last_event.trim_start_matches("event:").trim_start().starts_with("invalidate") && last_event.contains("too_slow"),
        "the stream did not end with invalidate: {last_event}"
    );
    let health = get(&http, &format!("{}/healthz", server.base_url)).await;
    assert_eq!(health.status, 200);
}
