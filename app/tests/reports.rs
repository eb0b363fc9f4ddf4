//! Reports, black-box through `run` with its defaults (Parquet facts, DataFusion): webhooks in,
//! `/api/reports/{name}` out. Each report's rows and summary agree with what was posted; sort
//! and cursor list every row exactly once; CSV has every row; a bad parameter is a 400 naming it.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::http::{Processed, Reply, client, get, post_webhook, wait_until_processed};
use common::server::{Instance, Server};
use common::status_change;
use serde_json::Value;

const FIRST: i64 = 8001;
const ORDERS: i64 = 10;
const PERIOD: &str = "from=2026-03-01&to=2026-03-03";
/// Production (group 2) may take 1½ hours on the normal grid (pending orders use it too).
const SETTINGS: &str = r#"{"sla": {"normal": {"2": "01:30"}}}"#;

/// Ten orders: new (group 1) at 08:00, production (group 2) at 10:00; odd ones completed
/// (group 5) at 12:00, two hours in production (over); even ones cancelled (group 6) at 11:00,
/// one hour in production (ok).
async fn start() -> (Instance, Server, reqwest::Client) {
    let instance = Instance::sqlite();
    let project = instance.add_project("shop", &[]);
    let settings = instance.ws.write("settings.json", SETTINGS);
    instance.put_settings("shop", &settings);
    let server = instance.start();
    let http = client();
    for id in FIRST..FIRST + ORDERS {
        let end =
            if id % 2 == 1 { status_change(id, 50, 5, "2026-03-02T12:00:00Z") } else { status_change(id, 60, 6, "2026-03-02T11:00:00Z") };
        for body in [status_change(id, 10, 1, "2026-03-02T08:00:00Z"), status_change(id, 20, 2, "2026-03-02T10:00:00Z"), end] {
            post_webhook(&http, &server.webhook_url(&project), body).await.assert_accepted_as("accepted");
        }
    }
    wait_until_processed(&http, &server, "shop", Processed { orders: ORDERS as usize, events: 3 * ORDERS as u64 }).await;
    // The facts are written before the state commits; wait until every order's are readable.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let sla = report(&http, &server, "sla", PERIOD).await;
        assert_eq!(sla.status, 200, "{sla:?}");
        if sla.body["total_rows"] == ORDERS && sla.body["summary"]["any_over"] == 5 {
            break;
        }
        assert!(Instant::now() < deadline, "the facts of {ORDERS} orders never showed: {}\n{}", sla.body, server.stderr());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    (instance, server, http)
}

async fn report(http: &reqwest::Client, server: &Server, name: &str, params: &str) -> Reply {
    get(http, &format!("{}/api/reports/{name}?project=shop&{params}", server.base_url)).await
}

fn rows(body: &Value) -> &Vec<Value> {
    body["rows"].as_array().unwrap_or_else(|| panic!("no rows: {body}"))
}

fn ids(body: &Value) -> Vec<i64> {
    rows(body).iter().map(|r| r["order_id"].as_i64().unwrap()).collect()
}

fn odd() -> Vec<i64> {
    (FIRST..FIRST + ORDERS).filter(|id| id % 2 == 1).collect()
}

fn even() -> Vec<i64> {
    (FIRST..FIRST + ORDERS).filter(|id| id % 2 == 0).collect()
}

/// Every row of a report through its cursors, `limit` at a time, keyed by `key`.
async fn all_pages(http: &reqwest::Client, server: &Server, name: &str, params: &str, limit: usize) -> Vec<Value> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut query = format!("{params}&limit={limit}");
        if let Some(cursor) = &cursor {
            query.push_str(&format!("&cursor={cursor}"));
        }
        let page = report(http, server, name, &query).await;
        assert_eq!(page.status, 200, "{name}?{query}: {page:?}");
        assert!(rows(&page.body).len() <= limit, "{}", page.body);
        seen.extend(rows(&page.body).iter().cloned());
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return seen,
        }
    }
    panic!("{name}: the cursors never ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_report_answers_rows_and_a_summary_from_the_posted_orders() {
    let (_instance, server, http) = start().await;

    let productivity = report(&http, &server, "productivity", PERIOD).await;
    assert_eq!(productivity.status, 200, "{productivity:?}");
    let body = &productivity.body;
    assert_eq!(
        (body["report"].as_str(), body["engine"].as_str(), body["sort"].as_str()),
        (Some("productivity"), Some("datafusion"), Some("-over_seconds"))
    );
    let mut over = ids(body);
    over.sort_unstable();
    assert_eq!(over, odd(), "two hours in production is over 1½: {body}");
    for row in rows(body) {
        assert_eq!(
            (row["group_id"].as_i64(), row["limit_seconds"].as_i64(), row["over_seconds"].as_f64()),
            (Some(2), Some(5400), Some(1800.0)),
            "{row}"
        );
    }
    let groups = body["summary"]["groups"].as_array().unwrap();
    let production = groups.iter().find(|g| g["group_id"] == 2).unwrap();
    assert_eq!(
        (production["settled"].as_i64(), production["over"].as_i64(), production["over_share"].as_f64()),
        (Some(10), Some(5), Some(0.5)),
        "{body}"
    );
    assert_eq!(body["summary"]["orders_over"], 5);

    let cancellations = report(&http, &server, "cancellations", PERIOD).await;
    assert_eq!(cancellations.status, 200, "{cancellations:?}");
    let body = &cancellations.body;
    assert_eq!(ids(body), even(), "by cancellation, then order: {body}");
    assert_eq!(
        (body["summary"]["created"].as_i64(), body["summary"]["cancelled"].as_i64(), body["summary"]["rate"].as_f64()),
        (Some(10), Some(5), Some(0.5))
    );
    let first = &rows(body)[0];
    assert_eq!(
        (first["from_group_id"].as_i64(), first["from_status_id"].as_i64(), first["wall_seconds"].as_f64()),
        (Some(2), Some(20), Some(3.0 * 3600.0)),
        "{first}"
    );
    assert_eq!(first["cancelled_at"], "2026-03-02T11:00:00+00:00", "the project's zone is UTC: {first}");

    let success = report(&http, &server, "success", PERIOD).await;
    assert_eq!(success.status, 200, "{success:?}");
    let body = &success.body;
    assert_eq!(ids(body), odd(), "{body}");
    let summary = &body["summary"];
    assert_eq!(
        (summary["completed"].as_i64(), summary["on_time"].as_i64(), summary["late"].as_i64()),
        (Some(5), Some(0), Some(5)),
        "{body}"
    );
    assert_eq!(summary["wall_seconds"]["median"].as_f64(), Some(4.0 * 3600.0), "two hours new, two in production: {body}");
    assert!(rows(body).iter().all(|r| r["on_time"] == false && r["worst"] == "over"), "{body}");

    let sla = report(&http, &server, "sla", &format!("{PERIOD}&sort=order_id")).await;
    assert_eq!(sla.status, 200, "{sla:?}");
    let body = &sla.body;
    let columns: Vec<&str> = body["columns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        columns,
        ["order_id", "urgency", "created_at", "worst", "open", "group_1", "group_2", "group_3", "group_4"],
        "no terminal groups"
    );
    for row in rows(body) {
        let id = row["order_id"].as_i64().unwrap();
        let state = if id % 2 == 1 { "over" } else { "ok" };
        assert_eq!((row["group_1"].as_str(), row["group_2"].as_str(), &row["group_3"]), (Some("none"), Some(state), &Value::Null), "{row}");
    }
    assert_eq!((body["summary"]["orders"].as_i64(), body["summary"]["any_over_share"].as_f64()), (Some(10), Some(0.5)), "{body}");

    let stages = report(&http, &server, "stage-time", PERIOD).await;
    assert_eq!(stages.status, 200, "{stages:?}");
    let body = &stages.body;
    let group = |id: i64| rows(body).iter().find(|r| r["group_id"] == id).unwrap_or_else(|| panic!("no group {id}: {body}"));
    assert_eq!((group(1)["visits"].as_i64(), group(1)["wall_median"].as_f64()), (Some(10), Some(7200.0)), "{body}");
    // Five visits of one hour and five of two: the lower middle one (nearest rank).
    assert_eq!((group(2)["wall_median"].as_f64(), group(2)["wall_mean"].as_f64()), (Some(3600.0), Some(5400.0)), "{body}");
    assert_eq!(
        (group(2)["pending_visits"].as_i64(), group(2)["normal_visits"].as_i64()),
        (Some(10), Some(0)),
        "items never fetched: {body}"
    );
    assert!(rows(body).iter().all(|r| r["group_id"].as_i64().unwrap() < 5), "terminal groups have no rows: {body}");

    let custom = report(&http, &server, "custom", "group=5").await;
    assert_eq!(custom.status, 200, "{custom:?}");
    let body = &custom.body;
    let mut completed = ids(body);
    completed.sort_unstable();
    assert_eq!(completed, odd(), "the orders list's filters: {body}");
    assert_eq!(body["summary"]["count"], 5, "the KPIs of the matching orders: {body}");
    assert!(body["as_of"].is_string(), "{body}");
    let row = &rows(body)[0];
    assert_eq!(
        (row["group_2_wall_seconds"].as_f64(), row["group_2_sla"].as_str(), row["group_2_limit_seconds"].as_i64()),
        (Some(7200.0), Some("over"), Some(5400)),
        "{row}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorted_pages_list_every_row_once_and_csv_has_them_all() {
    let (_instance, server, http) = start().await;
    for (name, params) in [
        ("custom", "sort=-working_seconds"),
        ("custom", "sort=group_3_sla"),
        ("sla", &*format!("{PERIOD}&sort=-group_2")),
        ("sla", &*format!("{PERIOD}&sort=created_at&by=entered")),
        ("success", &*format!("{PERIOD}&sort=-wall_seconds")),
    ] {
        let listed = all_pages(&http, &server, name, params, 3).await;
        let ids: Vec<i64> = listed.iter().map(|r| r["order_id"].as_i64().unwrap()).collect();
        let unique: BTreeSet<i64> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "{name}?{params}: a row listed twice: {ids:?}");
        let whole = report(&http, &server, name, &format!("{params}&limit=500")).await;
        assert_eq!(ids.len() as i64, whole.body["total_rows"].as_i64().unwrap(), "{name}?{params}: {ids:?}");
        assert_eq!(ids, self::ids(&whole.body), "{name}?{params}: the pages in the one page's order");
    }
    // Descending by group 2's state: the over ones first, ties by order number.
    let sla = report(&http, &server, "sla", &format!("{PERIOD}&sort=-group_2")).await;
    assert_eq!(ids(&sla.body), [odd(), even()].concat(), "{}", sla.body);

    let csv = report(&http, &server, "sla", &format!("{PERIOD}&format=csv&sort=order_id")).await;
    assert_eq!(csv.status, 200, "{csv:?}");
    assert!(csv.header("content-type").is_some_and(|v| v.starts_with("text/csv")), "{csv:?}");
    assert!(csv.header("content-disposition").is_some_and(|v| v.contains("sla-shop-2026-03-01_2026-03-03.csv")), "{csv:?}");
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(lines[0], "order_id,urgency,created_at,worst,open,group_1,group_2,group_3,group_4", "{}", csv.text);
    assert_eq!(lines.len() as i64, 1 + ORDERS, "{}", csv.text);
    assert_eq!(lines[1], format!("{FIRST},pending,2026-03-02T08:00:00+00:00,over,false,none,over,,"), "{}", csv.text);
    let custom = report(&http, &server, "custom", "format=csv&limit=1").await;
    assert_eq!(custom.text.lines().count() as i64, 1 + ORDERS, "every row, whatever the limit:\n{}", custom.text);
    assert!(custom.text.starts_with("order_id,status_id,status,group_id,group,urgency,"), "{}", custom.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_get_a_400_naming_them() {
    let instance = Instance::sqlite();
    let project = instance.add_project("shop", &[]);
    let server = instance.start();
    let http = client();
    for id in [9001, 9002] {
        post_webhook(&http, &server.webhook_url(&project), status_change(id, 10, 1, "2026-03-02T08:00:00Z"))
            .await
            .assert_accepted_as("accepted");
    }
    wait_until_processed(&http, &server, "shop", Processed { orders: 2, events: 2 }).await;
    let first = report(&http, &server, "custom", "limit=1&sort=order_id").await;
    let cursor = first.body["next_cursor"].as_str().unwrap_or_else(|| panic!("two orders, one a page: {first:?}")).to_owned();
    assert_eq!(report(&http, &server, "custom", &format!("limit=1&sort=order_id&cursor={cursor}")).await.status, 200);
    for (name, params, field) in [
        ("sla", "sort=speed", "sort"),
        ("custom", "sort=-speed", "sort"),
        ("success", "cursor=not-a-cursor", "cursor"),
        ("custom", &*format!("limit=1&sort=-order_id&cursor={cursor}"), "cursor"),
        ("custom", &*format!("limit=1&sort=order_id&group=1&cursor={cursor}"), "cursor"),
        ("sla", &*format!("limit=1&sort=order_id&cursor={cursor}"), "cursor"),
        ("productivity", "bucket=day", "bucket"),
        ("stage-time", "urgency=split", "urgency"),
        ("cancellations", "from=2026-03-03&to=2026-03-01", "to"),
        ("sla", "by=changed", "by"),
        ("success", "format=xml", "format"),
        ("custom", "limit=0", "limit"),
        ("custom", "urgency=soon", "urgency"),
    ] {
        let reply = report(&http, &server, name, params).await;
        assert_eq!((reply.status, reply.body["field"].as_str()), (400, Some(field)), "{name}?{params}: {reply:?}");
    }
    let unknown = report(&http, &server, "speed", "").await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
    let listed = report(&http, &server, "custom", "sort=nope").await;
    assert!(listed.body["message"].as_str().is_some_and(|m| m.contains("working_seconds")), "the message lists the columns: {listed:?}");
}
