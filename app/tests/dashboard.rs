//! Dashboard reads, black-box through `run`: urgency found by the enricher (from a KeyCRM
//! stand-in) and overrides in lists, KPIs, CSV and timelines; paging while webhooks arrive; and
//! a 400 naming the parameter for every bad one.

mod common;

use std::collections::BTreeSet;

use common::http::{Reply, client, get, list_all_orders, post_webhook, wait_until_processed};
use common::keycrm;
use common::server::{Instance, Server};
use common::status_change;
use common::webhook_log::{WebhookLog, assert_all_taken};
use serde_json::{Value, json};

/// Orders 5001–5040 enter group 2 (Mon 2026-02-02 09:00 in Kyiv); even ones carry the urgent
/// production line the example settings' rule matches.
const FIRST: i64 = 5001;
const ORDERS: i64 = 40;
const ENTERED: &str = "2026-02-02T07:00:00.000000Z";
/// Five working hours later: over the urgent limit of group 2 (2 h), within the normal (8 h).
const AS_OF: &str = "2026-02-02T12:00:00Z";

fn is_urgent(id: i64) -> bool {
    id % 2 == 0
}

fn order(id: i64) -> Option<Value> {
    Some(if is_urgent(id) { keycrm::with_products(id) } else { keycrm::without_urgent_line(id) })
}

fn ids(orders: &[Value]) -> BTreeSet<i64> {
    orders.iter().map(|o| o["order_id"].as_i64().unwrap()).collect()
}

/// The ids `GET /api/orders` lists, among the test's orders 5001–5040 (`q=50`; the stand-in's
/// order list brings the fixture's order in too), or of `p1`.
async fn listed(http: &reqwest::Client, server: &Server, query: &str) -> BTreeSet<i64> {
    ids(&list_all_orders(http, server, "shop", &format!("&q=50{query}")).await)
}

/// A project with the example settings (Mon–Fri 09:00–18:00, an urgent grid, the urgency
/// rules) whose KeyCRM is the stand-in, with the 40 orders posted and their items fetched.
async fn shop_with_fetched_items() -> (Instance, Server, reqwest::Client) {
    let keycrm = keycrm::start(order);
    let instance = Instance::sqlite();
    let project = instance.add_project("shop", &[]);
    keycrm::connect_with_example_settings(&instance, "shop", &keycrm);
    let server = instance.start();
    let http = client();
    for id in FIRST..FIRST + ORDERS {
        post_webhook(&http, &server.webhook_url(&project), status_change(id, 20, 2, ENTERED)).await.assert_accepted_as("accepted");
    }
    let deadline = std::time::Instant::now() + common::http::PROCESSING_DEADLINE;
    loop {
        let all = list_all_orders(&http, &server, "shop", "&q=50").await;
        let pending = list_all_orders(&http, &server, "shop", "&q=50&urgency=pending").await;
        if all.len() == ORDERS as usize && pending.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "items were not fetched: {} orders, {} pending\n{}",
            all.len(),
            pending.len(),
            server.stderr()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    (instance, server, http)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_judge_orders_by_the_urgency_the_enricher_found_and_by_overrides() {
    let (_instance, server, http) = shop_with_fetched_items().await;
    let urgent: BTreeSet<i64> = (FIRST..FIRST + ORDERS).filter(|id| is_urgent(*id)).collect();
    let normal: BTreeSet<i64> = (FIRST..FIRST + ORDERS).filter(|id| !is_urgent(*id)).collect();

    let rows = list_all_orders(&http, &server, "shop", &format!("&q=50&as_of={AS_OF}")).await;
    assert_eq!(rows.len(), ORDERS as usize);
    for row in &rows {
        let id = row["order_id"].as_i64().unwrap();
        let group = &row["groups"]["2"];
        if is_urgent(id) {
            assert_eq!(row["urgency"], "urgent", "{row}");
            assert_eq!(row["sla_profile"], "urgent", "{row}");
            assert_eq!(
                row["urgency_source"],
                json!({"kind": "rule", "match_type": "sku", "match_value": "Термінове виготовлення", "line": 1}),
                "{row}"
            );
            assert_eq!((group["limit_seconds"].as_i64(), group["sla"].as_str()), (Some(7_200), Some("over")), "{row}");
            assert_eq!(row["sla"], "over", "{row}");
        } else {
            assert_eq!((row["urgency"].as_str(), row["urgency_source"]["kind"].as_str()), (Some("normal"), Some("items")), "{row}");
            assert_eq!((group["limit_seconds"].as_i64(), group["sla"].as_str()), (Some(28_800), Some("ok")), "{row}");
        }
        assert_eq!(group["working_seconds"].as_f64(), Some(5.0 * 3600.0), "five working hours: {row}");
        assert_eq!(row["current_group_id"], 2);
        assert!(row["current_group_name"].is_string() || row["current_group_name"].is_null());
    }
    assert_eq!(listed(&http, &server, &format!("&as_of={AS_OF}&urgency=urgent")).await, urgent);
    assert_eq!(listed(&http, &server, &format!("&as_of={AS_OF}&urgency=normal")).await, normal);
    assert_eq!(listed(&http, &server, &format!("&as_of={AS_OF}&sla=over")).await, urgent);
    assert_eq!(listed(&http, &server, &format!("&as_of={AS_OF}&overdue=true")).await, urgent);
    assert_eq!(listed(&http, &server, &format!("&as_of={AS_OF}&sla=ok&group=2")).await, normal);
    // An hour in, neither grid is crossed yet: 1 h of 2 h is ok, below the 80 % mark.
    assert!(listed(&http, &server, "&as_of=2026-02-02T08:00:00Z&sla=over").await.is_empty());

    let kpis = get(&http, &format!("{}/api/orders/kpis?project=shop&q=50&as_of={AS_OF}", server.base_url)).await;
    assert_eq!(kpis.status, 200, "{kpis:?}");
    let k = &kpis.body["kpis"];
    assert_eq!(
        (k["count"].as_u64(), k["urgent"].as_u64(), k["normal"].as_u64(), k["pending"].as_u64()),
        (Some(40), Some(20), Some(20), Some(0)),
        "{k}"
    );
    assert_eq!((k["sla"]["over"].as_u64(), k["sla"]["ok"].as_u64(), k["sla"]["overdue"].as_u64()), (Some(20), Some(20), Some(20)), "{k}");

    // An override makes a normal order urgent: the reads judge it on the urgent grid.
    let normal_one = FIRST;
    let put = common::http::send(
        http.put(format!("{}/api/orders/{normal_one}/override?project=shop", server.base_url))
            .header("content-type", "application/json")
            .body(json!({"is_urgent": true}).to_string()),
    )
    .await;
    assert_eq!(put.status, 200, "{put:?}");
    let deadline = std::time::Instant::now() + common::http::PROCESSING_DEADLINE;
    loop {
        let rows = list_all_orders(&http, &server, "shop", &format!("&as_of={AS_OF}&q={normal_one}")).await;
        let row = rows.iter().find(|r| r["order_id"] == normal_one).expect("the order is listed");
        if row["urgency_source"]["kind"] == "override" {
            assert_eq!((row["urgency"].as_str(), row["sla"].as_str()), (Some("urgent"), Some("over")), "{row}");
            assert_eq!(row["override"]["is_urgent"], true, "{row}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the override never reached the row: {row}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // The timeline of an urgent order: its limit and its working and non-working segments (in
    // UTC with Kyiv's offset): 09:00–18:00 local works, the evening does not.
    let timeline =
        get(&http, &format!("{}/api/orders/{}/timeline?project=shop&as_of=2026-02-02T18:00:00Z", server.base_url, FIRST + 1)).await;
    assert_eq!(timeline.status, 200, "{timeline:?}");
    assert_eq!(timeline.body["urgency_source"]["kind"], "rule", "{timeline:?}");
    let interval = &timeline.body["intervals"][0];
    assert_eq!(interval["group_limit_seconds"], 7_200, "{interval}");
    assert_eq!(
        interval["segments"],
        json!([
            {"from": "2026-02-02T07:00:00Z", "to": "2026-02-02T16:00:00Z", "working": true, "offset": "+02:00"},
            {"from": "2026-02-02T16:00:00Z", "to": "2026-02-02T18:00:00Z", "working": false, "offset": "+02:00"},
        ]),
        "{interval}"
    );
    assert_eq!(timeline.body["timezone"], "Europe/Kyiv");

    // CSV: every matching order, a header, seconds and H:MM, named after the project.
    let csv = get(&http, &format!("{}/api/orders.csv?project=shop&q=50&as_of={AS_OF}&urgency=urgent&sort=id", server.base_url)).await;
    assert_eq!(csv.status, 200, "{csv:?}");
    let disposition = csv.headers.get("content-disposition").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(disposition.contains("attachment") && disposition.contains("orders-shop-"), "{disposition}");
    assert!(csv.headers.get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"text/csv")));
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(lines.len(), 1 + urgent.len() + 1, "a header and one line per urgent order (with the override):\n{}", csv.text);
    assert!(lines[0].starts_with("order_id,"), "{}", lines[0]);
    assert!(lines[1].starts_with(&format!("{normal_one},")) && lines[1].contains(",18000,05:00"), "{}", lines[1]);
}

/// One listing, page by page (`limit=7`), while webhooks keep arriving (changes of listed
/// orders and new orders, as KeyCRM sends them: now): no order that existed at the first page
/// is skipped or repeated, with stable and time-driven sorts alike.
/// Project `p1` with `orders` simulated orders posted and processed: the instance, the server,
/// a client, the log posted and the project's webhook URL.
async fn simulated_p1(orders: u64) -> (Instance, Server, reqwest::Client, WebhookLog, String) {
    let instance = Instance::sqlite();
    let project = instance.add_project("p1", &[]);
    let log = WebhookLog::simulate(&instance.ws, "p1", orders);
    let http = client();
    let server = instance.start();
    let url = server.webhook_url(&project);
    assert_all_taken(&log.post_all(&http, &url, 8).await);
    wait_until_processed(&http, &server, "p1", log.expected()).await;
    (instance, server, http, log, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_while_webhooks_arrive_neither_skips_nor_repeats() {
    let (_instance, server, http, _log, url) = simulated_p1(120).await;
    let before: Vec<i64> = ids(&list_all_orders(&http, &server, "p1", "").await).into_iter().collect();

    for (round, sort) in ["-changed", "-working", "wall", "created"].into_iter().enumerate() {
        // Meanwhile: every listed order moves on (a new status now) and new orders come.
        let posting = {
            let (http, url, orders) = (http.clone(), url.clone(), before.clone());
            tokio::spawn(async move {
                for (n, id) in orders.iter().enumerate() {
                    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
                    let (status, group) = if round % 2 == 0 { (30, 3) } else { (21, 2) };
                    post_webhook(&http, &url, status_change(*id, status, group, &now)).await.assert_accepted_as("accepted");
                    let new_order = 900_000 + (round * 1_000 + n) as i64;
                    post_webhook(&http, &url, status_change(new_order, 20, 2, &now)).await.assert_accepted_as("accepted");
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            })
        };
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut page_url = format!("{}/api/orders?project=p1&limit=7&sort={sort}", server.base_url);
            if let Some(cursor) = &cursor {
                page_url.push_str(&format!("&cursor={cursor}"));
            }
            let page = get(&http, &page_url).await;
            assert_eq!(page.status, 200, "{page:?}");
            seen.extend(ids(page.body["orders"].as_array().unwrap()));
            match page.body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        }
        posting.await.unwrap();
        let unique: BTreeSet<i64> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "sort {sort}: an order was listed twice");
        let skipped: Vec<_> = before.iter().filter(|id| !unique.contains(id)).collect();
        assert!(skipped.is_empty(), "sort {sort}: orders skipped: {skipped:?}");
    }
}

/// Identical reads asked at once share a computation (`query-api/src/shared.rs`), but none is
/// answered from one that started before it was asked: each answer's `as_of` is after its
/// request was sent, and an order processed before a read is in its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_reads_at_once_each_answer_as_of_after_they_were_asked() {
    let (_instance, server, http, log, url) = simulated_p1(200).await;
    let orders = list_all_orders(&http, &server, "p1", "").await.len() as u64;
    assert!(orders > 100, "{orders} orders listed");

    for round in 0..3u64 {
        let reads: Vec<_> = (0..24)
            .map(|n| {
                let path = if n % 2 == 0 { "/api/orders/kpis?project=p1" } else { "/api/orders?project=p1&limit=500&sort=-working" };
                let (http, url) = (http.clone(), format!("{}{path}", server.base_url));
                tokio::spawn(async move {
                    let sent = chrono::Utc::now();
                    (sent, get(&http, &url).await)
                })
            })
            .collect();
        let mut as_ofs = BTreeSet::new();
        for read in reads {
            let (sent, reply) = read.await.unwrap();
            assert_eq!(reply.status, 200, "{reply:?}");
            let as_of = reply.body["as_of"].as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()).unwrap();
            assert!(as_of >= sent, "round {round}: answered as of {as_of}, before the read was sent at {sent}");
            as_ofs.insert(as_of);
            let listed = match reply.body["kpis"]["count"].as_u64() {
                Some(count) => count,
                None => reply.body["orders"].as_array().unwrap().len() as u64,
            };
            assert_eq!(listed, orders + round, "round {round}: {}", reply.text);
        }
        assert!(as_ofs.len() >= 2, "at least the first list and the first KPIs are computed apart");

        // A new order, processed before the next round's reads: every one of them sees it.
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        post_webhook(&http, &url, status_change(800_000 + round as i64, 20, 2, &now)).await.assert_accepted_as("accepted");
        let expected =
            common::http::Processed { orders: log.expected().orders + round as usize + 1, events: log.expected().events + round + 1 };
        wait_until_processed(&http, &server, "p1", expected).await;
    }
}

fn assert_names(reply: &Reply, field: &str, query: &str) {
    assert_eq!((reply.status, reply.body["field"].as_str()), (400, Some(field)), "{query}: {}", reply.text);
    assert!(reply.body["message"].as_str().is_some_and(|m| !m.is_empty()), "{query}: {reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_parameter_answers_400_naming_it() {
    let instance = Instance::sqlite();
    let shop = instance.add_project("shop", &["--timezone", "Europe/Kyiv"]);
    instance.add_project("other", &[]);
    let server = instance.start();
    let http = client();
    for id in 1..=3 {
        post_webhook(&http, &server.webhook_url(&shop), status_change(id, 20, 2, ENTERED)).await.assert_accepted_as("accepted");
    }
    wait_until_processed(&http, &server, "shop", common::http::Processed { orders: 3, events: 3 }).await;
    let page = get(&http, &format!("{}/api/orders?project=shop&limit=1", server.base_url)).await;
    let shop_cursor = page.body["next_cursor"].as_str().expect("a next page").to_owned();
    let sorted = get(&http, &format!("{}/api/orders?project=shop&limit=1&sort=id", server.base_url)).await;
    let id_cursor = sorted.body["next_cursor"].as_str().expect("a next page").to_owned();

    let base = format!("{}/api/orders?project=", server.base_url);
    let cases: &[(&str, &str)] = &[
        ("shop&sort=fastest", "sort"),
        ("shop&created_from=2026-13-01", "created_from"),
        ("shop&created_to=yesterday", "created_to"),
        ("shop&changed_from=2026-02-30", "changed_from"),
        ("shop&changed_to=2026-02-02T25:00:00Z", "changed_to"),
        ("shop&group=99", "group"),
        ("shop&group=2,x", "group"),
        ("shop&status=-4", "status"),
        ("shop&limit=0", "limit"),
        ("shop&limit=501", "limit"),
        ("shop&limit=ten", "limit"),
        ("shop&urgency=soon", "urgency"),
        ("shop&sla=late", "sla"),
        ("shop&overdue=maybe", "overdue"),
        ("shop&open=1x", "open"),
        ("shop&cycle=x", "cycle"),
        ("shop&cycle=7", "cycle"),
        ("shop&cycle_state=open", "cycle_state"),
        ("shop&q=abc", "q"),
        ("shop&as_of=3026-01-01T00:00:00Z", "as_of"),
        ("shop&cursor=garbage", "cursor"),
        // Another listing's cursor: another sort, or another project.
        (&format!("shop&cursor={id_cursor}"), "cursor"),
        (&format!("other&cursor={shop_cursor}"), "cursor"),
        (&format!("shop&cursor={shop_cursor}&group=3"), "cursor"),
    ];
    for (query, field) in cases {
        let reply = get(&http, &format!("{base}{query}")).await;
        assert_names(&reply, field, query);
    }
    for path in ["/api/orders/kpis", "/api/orders.csv"] {
        for (query, field) in [("&group=99", "group"), ("&created_from=2026-13-01", "created_from"), ("&sla=late", "sla")] {
            let reply = get(&http, &format!("{}{path}?project=shop{query}", server.base_url)).await;
            assert_names(&reply, field, query);
        }
    }
    // The cursor still works where it belongs, and nothing above changed anything.
    let next = get(&http, &format!("{base}shop&limit=1&cursor={shop_cursor}")).await;
    assert_eq!((next.status, next.body["orders"].as_array().map(Vec::len)), (200, Some(1)), "{next:?}");
    assert_eq!(list_all_orders(&http, &server, "shop", "").await.len(), 3);
}
