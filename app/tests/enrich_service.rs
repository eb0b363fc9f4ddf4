//! `keycrm-analytics enrich`: the enricher as a process of its own, beside `run` with its
//! enricher off, on a PostgreSQL state database: it fetches the posted orders' items from the
//! KeyCRM stand-in and the reads judge them by the urgency it found; its `/healthz` counts the
//! fetches. A second enricher, another `enrich` or a `run` with its enricher on, is refused at
//! start, so two never pace one project's calls apart.
//!
//! Needs `DATABASE_URL` (scripts/services); a fresh database is made and dropped.

mod common;

use common::http::{Processed, client, get, list_all_orders, post_webhook, wait_until_processed};
use common::keycrm;
use common::postgres::{ScratchDatabase, postgres_server};
use common::server::Instance;
use common::status_change;

/// Odd orders carry the urgent line of the example settings' rules.
fn order(id: i64) -> Option<serde_json::Value> {
    Some(if id % 2 == 1 { keycrm::with_products(id) } else { keycrm::without_urgent_line(id) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enricher_runs_apart_and_only_once() {
    let Some(server) = postgres_server("enrich_service") else { return };
    let database = ScratchDatabase::create(&server, "enrich_service");
    let stand_in = keycrm::start(order);
    let instance = Instance::postgres(&database.url);
    let project = instance.add_project("shop", &[]);
    keycrm::connect_with_example_settings(&instance, "shop", &stand_in);
    let run = instance.start_with(&[("KSA__ENRICHER__ENABLED", "false")]);
    let enrich = instance.start_service("enrich", &[]);
    let http = client();
    for id in 8101..8105 {
        post_webhook(&http, &run.webhook_url(&project), status_change(id, 20, 2, "2026-02-02T07:00:00.000000Z"))
            .await
            .assert_accepted_as("accepted");
    }
    wait_until_processed(&http, &run, "shop", Processed { orders: 4, events: 4 }).await;
    let deadline = std::time::Instant::now() + common::http::PROCESSING_DEADLINE;
    let rows = loop {
        let rows = list_all_orders(&http, &run, "shop", "&q=810").await;
        if rows.iter().all(|r| r["urgency"] != "pending") {
            break rows;
        }
        assert!(std::time::Instant::now() < deadline, "items not fetched by `enrich`:\n{}", enrich.stderr());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    for row in &rows {
        let expected = if row["order_id"].as_i64().unwrap() % 2 == 1 { "urgent" } else { "normal" };
        assert_eq!(row["urgency"], expected, "{row}");
    }
    let health = get(&http, &format!("{}/healthz", enrich.base_url)).await;
    assert_eq!(health.body["service"], "enrich", "{health:?}");
    assert!(health.body["items_fetched"].as_u64().is_some_and(|n| n >= 4), "{health:?}");

    let second = common::run(&mut instance.command(["enrich", "--listen", "127.0.0.1:0"]));
    second.assert_failure_mentioning(&["another enricher", "enrich-requests"]);
    let embedded = common::run(&mut instance.command(["run", "--listen", "127.0.0.1:0"]));
    embedded.assert_failure_mentioning(&["another enricher"]);
    assert!(common::run(&mut instance.command(["enrich", "status", "--project", "shop"])).succeeded(), "the subcommands stay");
    enrich.stop();
    run.stop();
}
