//! `GET /api/webhooks/stats` against `run` on SQLite and on PostgreSQL: webhooks posted over
//! HTTP show up, within the few seconds ingest takes to save its counters, as the right counts
//! by outcome and reason, latency quantiles, the share of duplicates and the last accepted and
//! refused webhook; viewers are refused, and bad parameters are named.

mod common;

use std::time::{Duration, Instant};

use common::http::{Reply, client, get, post_webhook, send};
use common::postgres::{ScratchDatabase, postgres_server};
use common::server::{Instance, Server};
use common::{keycrm_fixture, status_change};
use serde_json::Value;

/// How long the statistics may take to show a webhook: ingest saves them every 5 seconds.
const STATS_DEADLINE: Duration = Duration::from_secs(60);

fn a_status_change(order_id: i64) -> String {
    status_change(order_id, 20, 2, "2026-02-02T10:00:00.000000Z")
}

/// Polls the statistics of `shop` until `ready` holds for its first day; returns the project.
async fn stats_until(http: &reqwest::Client, server: &Server, query: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + STATS_DEADLINE;
    loop {
        let reply = get(http, &format!("{}/api/webhooks/stats?{query}", server.base_url)).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let project = reply.body["projects"][0].clone();
        if ready(&project) {
            return project;
        }
        assert!(Instant::now() < deadline, "the statistics never showed the webhooks: {reply:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn outcomes_latency_duplicates_and_the_last_webhooks_add_up(instance: Instance) {
    let shop = instance.add_project("shop", &[]);
    instance.add_project("other", &[]);
    let server = instance.start();
    let http = client();
    let url = server.webhook_url(&shop);
    post_webhook(&http, &url, a_status_change(701)).await.assert_accepted_as("accepted");
    post_webhook(&http, &url, a_status_change(702)).await.assert_accepted_as("accepted");
    post_webhook(&http, &url, a_status_change(701)).await.assert_accepted_as("duplicate");
    post_webhook(&http, &url, keycrm_fixture("webhook_payment_status.json")).await.assert_accepted_as("ignored");
    let wrong = format!("{}/webhooks/keycrm/shop?token=not-the-secret", server.base_url);
    post_webhook(&http, &wrong, a_status_change(703)).await.assert_error(401);
    post_webhook(&http, &url, "{ not json").await.assert_error(400);

    let project = stats_until(&http, &server, "project=shop", |p| p["days"][0]["rejected"] == 2 && p["days"][0]["accepted"] == 2).await;
    assert_eq!(project["project"], "shop");
    let days = project["days"].as_array().expect("days");
    assert_eq!(days.len(), 1, "every webhook came today: {project:#}");
    let today = &days[0];
    let counts: Vec<i64> =
        ["received", "accepted", "duplicate", "ignored", "rejected"].iter().map(|o| today[o].as_i64().unwrap()).collect();
    assert_eq!(counts, [6, 2, 1, 1, 2], "{today:#}");
    assert_eq!(today["rejected_by_reason"], serde_json::json!({"malformed": 1, "unauthorized": 1}));
    let share = today["duplicate_share"].as_f64().expect("a duplicate share");
    assert!((share - 1.0 / 3.0).abs() < 1e-9, "{today:#}");
    assert_eq!(today["latency_measured"], 3, "accepted and duplicate webhooks are timed: {today:#}");
    let (p50, p99) = (today["p50_ms"].as_f64().expect("p50"), today["p99_ms"].as_f64().expect("p99"));
    assert!(0.0 < p50 && p50 <= p99 && p99 < 10_000.0, "{today:#}");
    assert_eq!(today["last_refusal"]["reason"], "malformed", "the malformed webhook came last: {today:#}");
    let day = today["day"].as_str().expect("a day");
    assert!(today["last_accepted_at"].as_str().is_some_and(|at| at.starts_with(day)), "{today:#}");
    assert_eq!(project["last_accepted_at"], today["last_accepted_at"]);
    assert_eq!(project["last_refusal"], today["last_refusal"]);

    // The owner without `project` gets every project; `other` had no webhooks.
    let all = get(&http, &format!("{}/api/webhooks/stats", server.base_url)).await;
    let slugs: Vec<&str> = all.body["projects"].as_array().unwrap().iter().map(|p| p["project"].as_str().unwrap()).collect();
    assert_eq!(slugs, ["shop", "other"], "{all:?}");
    assert_eq!(all.body["projects"][1]["days"], serde_json::json!([]));
    assert_eq!(all.body["projects"][1]["last_refusal"], Value::Null);

    // A period without those webhooks shows none, and stopping keeps what was counted.
    let past = stats_until(&http, &server, "project=shop&from=2026-01-01&to=2026-01-31", |_| true).await;
    assert_eq!(past["days"], serde_json::json!([]), "{past:#}");
    assert!(server.stop().success());
    let server = instance.start();
    let again = stats_until(&http, &server, "project=shop", |p| p["days"][0]["accepted"] == 2).await;
    assert_eq!(again["days"][0]["received"], 6, "{again:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_latency_duplicates_and_the_last_webhooks_add_up_on_sqlite() {
    outcomes_latency_duplicates_and_the_last_webhooks_add_up(Instance::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_latency_duplicates_and_the_last_webhooks_add_up_on_postgres() {
    let Some(server) = postgres_server("webhook_stats") else { return };
    let database = ScratchDatabase::create(&server, "webhook_stats");
    outcomes_latency_duplicates_and_the_last_webhooks_add_up(Instance::postgres(&database.url)).await;
}

async fn as_user(http: &reqwest::Client, server: &Server, token: &str, query: &str) -> Reply {
    send(http.get(format!("{}/api/webhooks/stats{query}", server.base_url)).bearer_auth(token)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_are_refused_admins_see_only_their_projects_and_bad_parameters_are_named() {
    let instance = Instance::sqlite();
    instance.add_project("shop", &[]);
    instance.add_project("other", &[]);
    instance.add_user("shop-viewer", "viewer", &["shop"], "shop-viewer-password-1");
    instance.add_user("shop-admin", "admin", &["shop"], "shop-admin-password-1");
    let (viewer, admin) = (instance.token("shop-viewer"), instance.token("shop-admin"));
    let server = instance.start();
    let http = client();

    for query in ["", "?project=shop"] {
        let refused = as_user(&http, &server, &viewer, query).await;
        refused.assert_error(403);
        assert_eq!(refused.body["error"], "forbidden", "{refused:?}");
    }
    let mine = as_user(&http, &server, &admin, "").await;
    assert_eq!(mine.status, 200, "{mine:?}");
    let slugs: Vec<&str> = mine.body["projects"].as_array().unwrap().iter().map(|p| p["project"].as_str().unwrap()).collect();
    assert_eq!(slugs, ["shop"], "an admin reads only the projects they administer");
    as_user(&http, &server, &admin, "?project=other").await.assert_error(404);
    send(http.get(format!("{}/api/webhooks/stats", server.base_url)).bearer_auth("ksa_not-a-token")).await.assert_error(401);

    for (query, field) in [
        ("?project=shop&from=yesterday", "from"),
        ("?project=shop&to=2026-13-01", "to"),
        ("?project=shop&from=2026-03-02&to=2026-03-01", "to"),
        ("?project=shop&from=2020-01-01&to=2026-01-01", "from"),
    ] {
        let reply = as_user(&http, &server, &admin, query).await;
        reply.assert_error(400);
        assert_eq!(reply.body["field"], field, "{query}: {reply:?}");
    }
    get(&http, &format!("{}/api/webhooks/stats?project=nowhere", server.base_url)).await.assert_error(404);
}
