//! Analytics, black-box through `run` with its defaults (Parquet facts, DataFusion): webhooks
//! in, figures out of `/api/analytics/…`; a 400 naming the parameter for every bad one; 503
//! when facts are off; and a data dir that had facts off gets them written when they come on.

mod common;

use std::time::{Duration, Instant};

use common::http::{Processed, Reply, client, get, post_webhook, wait_until_processed};
use common::server::{Instance, Project, Server};
use common::status_change;
use serde_json::{Value, json};

const FIRST: i64 = 7001;
const ORDERS: i64 = 10;
const PERIOD: &str = "from=2026-03-01&to=2026-03-03";

/// Ten orders: new (group 1) at 08:00, production (group 2) at 10:00; odd ones completed
/// (group 5) at 12:00, even ones cancelled (group 6) at 11:00.
async fn post_orders(http: &reqwest::Client, server: &Server, project: &Project) {
    for id in FIRST..FIRST + ORDERS {
        let end =
            if id % 2 == 1 { status_change(id, 50, 5, "2026-03-02T12:00:00Z") } else { status_change(id, 60, 6, "2026-03-02T11:00:00Z") };
        for body in [status_change(id, 10, 1, "2026-03-02T08:00:00Z"), status_change(id, 20, 2, "2026-03-02T10:00:00Z"), end] {
            post_webhook(http, &server.webhook_url(project), body).await.assert_accepted_as("accepted");
        }
    }
    wait_until_processed(http, server, &project.slug, Processed { orders: ORDERS as usize, events: 3 * ORDERS as u64 }).await;
}

async fn analytics(http: &reqwest::Client, server: &Server, query: &str, params: &str) -> Reply {
    get(http, &format!("{}/api/analytics/{query}?project=shop&{params}", server.base_url)).await
}

/// `stages` once the facts of every order are readable (they are written before the state
/// commits, so this is at once in practice; a backfill takes a moment).
async fn stages_when_complete(http: &reqwest::Client, server: &Server) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let reply = analytics(http, server, "stages", PERIOD).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        if reply.body["total"]["orders"] == ORDERS {
            return reply.body;
        }
        assert!(Instant::now() < deadline, "the facts of {ORDERS} orders never showed: {}\n{}", reply.body, server.stderr());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn group(body: &Value, id: i64) -> &Value {
    body["rows"].as_array().and_then(|rows| rows.iter().find(|r| r["group_id"] == id)).unwrap_or_else(|| panic!("no group {id}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_answer_from_the_facts_run_writes() {
    let instance = Instance::sqlite();
    let project = instance.add_project("shop", &[]);
    let server = instance.start();
    let http = client();
    post_orders(&http, &server, &project).await;

    let stages = stages_when_complete(&http, &server).await;
    assert_eq!((stages["engine"].as_str(), stages["query"].as_str()), (Some("datafusion"), Some("stages")), "{stages}");
    // Group 1: ten closed visits of two hours.
    let new = group(&stages, 1);
    assert_eq!((new["intervals"].as_i64(), new["orders"].as_i64(), new["open"].as_i64()), (Some(10), Some(10), Some(0)), "{new}");
    assert_eq!((new["wall_seconds"]["median"].as_f64(), new["wall_seconds"]["sum"].as_f64()), (Some(7200.0), Some(72_000.0)), "{new}");
    // Group 2: five visits of one hour (cancelled at 11:00) and five of two: nearest rank.
    let production = group(&stages, 2);
    let wall = &production["wall_seconds"];
    assert_eq!(
        (wall["median"].as_f64(), wall["p90"].as_f64(), wall["max"].as_f64(), wall["mean"].as_f64()),
        (Some(3600.0), Some(7200.0), Some(7200.0), Some(5400.0)),
        "{production}"
    );
    assert!(production["working_seconds"]["sum"].as_f64().unwrap() <= wall["sum"].as_f64().unwrap(), "{production}");
    // Terminal groups have no rows: their clock is stopped.
    assert!(stages["rows"].as_array().unwrap().iter().all(|r| r["group_id"].as_i64().unwrap() < 5), "{stages}");

    let throughput = analytics(&http, &server, "throughput", PERIOD).await;
    assert_eq!(throughput.status, 200, "{throughput:?}");
    let row = &throughput.body["rows"][0];
    assert_eq!((row["created"].as_i64(), row["completed"].as_i64(), row["cancelled"].as_i64()), (Some(10), Some(5), Some(5)), "{row}");

    let cancellations = analytics(&http, &server, "cancellations", &format!("{PERIOD}&bucket=day")).await;
    assert_eq!(cancellations.status, 200, "{cancellations:?}");
    let body = &cancellations.body;
    assert_eq!(body["rows"], json!([{"bucket": "2026-03-02", "created": 10, "cancelled": 5, "rate": 0.5}]), "{body}");
    assert_eq!(body["from"], json!([{"group_id": 2, "status_id": 20, "orders": 5}]), "{body}");
    assert_eq!(body["wall_seconds"]["median"].as_f64(), Some(3.0 * 3600.0), "two hours new, one in production: {body}");

    let sla = analytics(&http, &server, "sla", &format!("{PERIOD}&bucket=month&urgency=split")).await;
    assert_eq!(sla.status, 200, "{sla:?}");
    let settled: i64 =
        sla.body["rows"].as_array().unwrap().iter().filter(|r| r["group_id"] == 2).map(|r| r["orders"].as_i64().unwrap()).sum();
    assert_eq!(settled, 10, "every order left production for good: {}", sla.body);

    let cycles = analytics(&http, &server, "cycles", PERIOD).await;
    assert_eq!(cycles.status, 200, "{cycles:?}");

    // CSV: the rows, one column per field, named after the query, project and period.
    let csv = analytics(&http, &server, "stages", &format!("{PERIOD}&per=status&format=csv")).await;
    assert_eq!(csv.status, 200, "{csv:?}");
    assert!(csv.header("content-type").is_some_and(|v| v.starts_with("text/csv")), "{csv:?}");
    assert!(csv.header("content-disposition").is_some_and(|v| v.contains("stages-shop-2026-03-01_2026-03-03.csv")), "{csv:?}");
    let lines: Vec<&str> = csv.text.lines().collect();
    assert!(lines[0].starts_with("group_id,status_id,orders,") && lines[0].contains("working_seconds_median"), "{}", csv.text);
    assert_eq!(lines.len(), 1 + 2, "statuses 10 and 20:\n{}", csv.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_get_a_400_naming_them() {
    let instance = Instance::sqlite();
    instance.add_project("shop", &[]);
    let server = instance.start();
    let http = client();
    for (query, params, field) in [
        ("stages", "from=2026-03-03&to=2026-03-01", "to"),
        ("stages", "from=2021-01-01&to=2025-01-02", "from"),
        ("stages", "from=yesterday", "from"),
        ("stages", "to=2026-13-01", "to"),
        ("stages", "bucket=year", "bucket"),
        ("stages", "by=changed", "by"),
        ("stages", "urgency=soon", "urgency"),
        ("stages", "per=order", "per"),
        ("sla", "per=status", "per"),
        ("cycles", "format=xml", "format"),
        ("throughput", "group=two", "group"),
        ("cancellations", "status=1,x", "status"),
        ("stages", "bucket=day&bucket=week", "bucket"),
    ] {
        let reply = analytics(&http, &server, query, params).await;
        assert_eq!((reply.status, reply.body["field"].as_str()), (400, Some(field)), "{query}?{params}: {reply:?}");
    }
    let unknown = get(&http, &format!("{}/api/analytics/funnel?project=shop", server.base_url)).await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facts_turned_on_later_are_written_for_the_orders_already_stored() {
    let instance = Instance::sqlite();
    let project = instance.add_project("shop", &[]);
    let http = client();
    let off = instance.start_with(&[("KSA__FACTS__KIND", "none")]);
    post_orders(&http, &off, &project).await;
    let refused = analytics(&http, &off, "stages", PERIOD).await;
    assert_eq!((refused.status, refused.body["error"].as_str()), (503, Some("analytics_off")), "{refused:?}");
    assert!(off.stop().success());
    assert!(!instance.data_dir().join("facts").exists(), "no facts were written while off");

    let on = instance.start();
    let stages = stages_when_complete(&http, &on).await;
    assert_eq!(group(&stages, 1)["intervals"], 10, "{stages}");
    assert_eq!(group(&stages, 2)["intervals"], 10, "{stages}");
    assert!(on.stderr().contains("writing their facts"), "the backfill says so:\n{}", on.stderr());
}
