//! The KeyCRM client against the in-process fake: rate limits per project under a 429 storm,
//! retries of 5xx and timeouts, no retry of 401, malformed bodies, the circuit breaker.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{FakeKeyCrm, Scripted, World, fast_client_config, order_json};
use ksa_enricher::items::fetch_items;
use ksa_enricher::{ApiError, EnrichError};
use ksa_state::EnrichStore;

/// Two projects side by side, each at its own rate, while the fake answers 429 to a third of
/// the requests (some with `Retry-After`, some without): every call still succeeds, and the
/// requests of each project are never closer together than its rate allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_projects_in_a_429_storm_never_exceed_their_own_rates() {
    let fake = FakeKeyCrm::start().await;
    for id in 1..=12 {
        fake.add_order(order_json(id, 20, 2, "2026-01-29T18:53:35.000000Z", "2026-01-29T18:53:35.000000Z"));
    }
    let storm = |token: &str| {
        let answers = (0..12).map(|i| match i % 3 {
            0 => Scripted::Status { code: 429, retry_after: None },
            1 => Scripted::Status { code: 429, retry_after: Some("0.1") },
            _ => Scripted::Delay(Duration::ZERO),
        });
        fake.script(token, answers);
    };
    storm("token-fast");
    storm("token-slow");
    let dir = tempfile::tempdir().unwrap();
    let world = World::open(&dir.path().join("state.db"), fast_client_config()).await;
    // Rates are per second here (the window is shrunk for the test): 20/s and 8/s.
    let fast = world.project("fast", &fake, "token-fast", Some(20)).await;
    let slow = world.project("slow", &fake, "token-slow", Some(8)).await;

    let mut tasks = Vec::new();
    for project in [fast, slow] {
        for order in 1..=12 {
            let (access, state) = (world.access.clone(), world.state.clone());
            tasks.push(tokio::spawn(async move {
                let client = access.client(&state, project).await.unwrap();
                client.get(&format!("/order/{order}"), &[("include", "products.offer,marketing".into())], "an order").await
            }));
        }
    }
    for task in tasks {
        task.await.unwrap().expect("every call succeeds in the end");
    }

    for (token, rate) in [("token-fast", 20.0), ("token-slow", 8.0)] {
        let hits = fake.hits(token);
        assert!(hits.len() >= 12 + 8, "{token}: 12 calls and their retries, got {}", hits.len());
        let interval = Duration::from_secs_f64(1.0 / rate);
        // Counted where KeyCRM counts, at the server. Arrival times carry scheduling noise, so
        // a window may hold one request more than the bucket let out in it, never two.
        for (window, allowed) in [(Duration::from_secs(1), rate as usize + 1), (interval * 5, 5 + 1), (interval * 2, 2 + 1)] {
            for (i, first) in hits.iter().enumerate() {
                let within = hits[i..].iter().take_while(|h| h.at - first.at < window).count();
                assert!(within <= allowed, "{token}: {within} requests within {window:?}; the rate allows {}", allowed - 1);
            }
        }
        // Over the whole run the spacing is the rate's.
        let span = hits.last().unwrap().at - hits[0].at;
        assert!(span >= interval * (hits.len() as u32 - 2), "{token}: {} requests in {span:?}", hits.len());
    }
    let stats = world.access.clients().stats();
    assert!(stats.iter().all(|(_, s)| s.throttled >= 8 && s.succeeded == 12 && !s.circuit_open), "{stats:?}");
}

#[tokio::test]
async fn server_errors_then_success_are_retried() {
    let fake = FakeKeyCrm::start().await;
    fake.add_order(order_json(7, 20, 2, "2026-01-29T18:53:35.000000Z", "2026-01-29T18:53:35.000000Z"));
    fake.script("t", [Scripted::Status { code: 503, retry_after: None }, Scripted::Status { code: 500, retry_after: None }]);
    let dir = tempfile::tempdir().unwrap();
    let world = World::open(&dir.path().join("state.db"), fast_client_config()).await;
    let project = world.project("shop", &fake, "t", None).await;
    let client = world.access.client(&world.state, project).await.unwrap();
    let body = client.get("/order/7", &[], "order 7").await.expect("the third attempt succeeds");
    assert!(String::from_utf8(body).unwrap().contains("\"id\":7"));
    let stats = client.stats();
    assert_eq!((stats.requests, stats.server_errors, stats.retries, stats.succeeded), (3, 2, 2, 1));
}

#[tokio::test]
async fn unauthorized_is_not_retried_and_the_error_names_the_project_without_the_token() {
    let fake = FakeKeyCrm::start().await;
    fake.with(|s| s.refused_tokens.push("revoked-token-123".into()));
    let dir = tempfile::tempdir().unwrap();
    let world = World::open(&dir.path().join("state.db"), fast_client_config()).await;
    let project = world.project("shop", &fake, "revoked-token-123", None).await;
    let client = world.access.client(&world.state, project).await.unwrap();
    let error = client.get("/order/7", &[], "order 7").await.expect_err("401");
    assert!(matches!(error, ApiError::Unauthorized { status: 401, .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("project `shop`") && text.contains("401"), "{text}");
    assert!(!text.contains("revoked-token-123") && !format!("{error:?}").contains("revoked-token-123"));
    assert!(!format!("{client:?}").contains("revoked-token-123"), "Debug of the client hides the token");
    assert_eq!(fake.hits("revoked-token-123").len(), 1, "never retried");
}

#[tokio::test]
async fn not_found_is_not_retried() {
    let fake = FakeKeyCrm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let world = World::open(&dir.path().join("state.db"), fast_client_config()).await;
    let project = world.project("shop", &fake, "t", None).await;
    let client = world.access.client(&world.state, project).await.unwrap();
    let error = client.get("/order/404404", &[], "order 404404").await.expect_err("404");
    assert!(matches!(&error, ApiError::NotFound { what, .. } if what == "order 404404"), "{error:?}");
    assert!(error.is_permanent());
    assert_eq!(fake.hits("t").len(), 1);
}

#[tokio::test]
async fn slow_responses_time_out_and_are_retried() {
    let fake = FakeKeyCrm::start().await;
    fake.add_order(order_json(7, 20, 2, "2026-01-29T18:53:35.000000Z", "2026-01-29T18:53:35.000000Z"));
    fake.script("t", [Scripted::Delay(Duration::from_millis(800))]);
    let dir = tempfile::tempdir().unwrap();
    let config = ksa_enricher::ClientConfig { request_timeout: Duration::from_millis(200), ..fast_client_config() };
    let world = World::open(&dir.path().join("state.db"), config).await;
    let project = world.project("shop", &fake, "t", None).await;
    let client = world.access.client(&world.state, project).await.unwrap();
    let started = std::time::Instant::now();
    client.get("/order/7", &[], "order 7").await.expect("the retry is answered at once");
    assert!(started.elapsed() < Duration::from_millis(700), "the slow answer was not waited for");
    let stats = client.stats();
    assert_eq!((stats.timeouts, stats.succeeded), (1, 1));

    // Always slow: the call gives up after its attempts, saying why.
    fake.with(|s| s.slow.insert("t".into(), Duration::from_millis(400)));
    let config = ksa_enricher::ClientConfig { request_timeout: Duration::from_millis(100), max_attempts: 2, ..fast_client_config() };
    let world = World::open(&dir.path().join("other.db"), config).await;
    let project = world.project("shop", &fake, "t", None).await;
    let client = world.access.client(&world.state, project).await.unwrap();
    let error = client.get("/order/7", &[], "order 7").await.expect_err("always too slow");
    assert!(matches!(&error, ApiError::Exhausted { attempts: 2, last, .. } if last == "timed out"), "{error:?}");
}

#[tokio::test]
async fn malformed_bodies_are_reported_and_nothing_is_stored() {
    let fake = FakeKeyCrm::start().await;
    fake.script("t", [Scripted::Body("<html>maintenance</html>"), Scripted::Body(r#"{"id": "not an id"}"#)]);
    let dir = tempfile::tempdir().unwrap();
    let world = World::open(&dir.path().join("state.db"), fast_client_config()).await;
    let project = world.project("shop", &fake, "t", None).await;
    let client = world.access.client(&world.state, project).await.unwrap();
    for _ in 0..2 {
        let error = fetch_items(&client, &world.state, &world.bus, 7).await.expect_err("malformed");
        assert!(matches!(&error, EnrichError::Api(ApiError::Malformed { what, .. }) if what == "order 7"), "{error:?}");
        assert!(error.to_string().contains("project `shop`"), "{error}");
    }
    assert!(world.state.order_lines(project, &[7]).await.unwrap().is_empty());
    assert!(world.records(ksa_schemas::bus::STATUS_EVENTS).await.is_empty());
}

#[tokio::test]
async fn repeated_failures_open_the_circuit_and_calls_then_fail_fast() {
    let fake = FakeKeyCrm::start().await;
    fake.script("t", (0..4).map(|_| Scripted::Status { code: 502, retry_after: None }));
    let dir = tempfile::tempdir().unwrap();
    let config = ksa_enricher::ClientConfig {
        max_attempts: 2,
        circuit_threshold: 2,
        circuit_open_for: Duration::from_millis(300),
        ..fast_client_config()
    };
    let world = World::open(&dir.path().join("state.db"), config).await;
    fake.add_order(order_json(7, 20, 2, "2026-01-29T18:53:35.000000Z", "2026-01-29T18:53:35.000000Z"));
    let project = world.project("shop", &fake, "t", None).await;
    let client = world.access.client(&world.state, project).await.unwrap();
    for _ in 0..2 {
        assert!(matches!(client.get("/order/7", &[], "order 7").await, Err(ApiError::Exhausted { .. })));
    }
    let error = client.get("/order/7", &[], "order 7").await.expect_err("open");
    assert!(matches!(error, ApiError::CircuitOpen { .. }), "{error:?}");
    assert_eq!(fake.hits("t").len(), 4, "an open circuit sends nothing");
    let stats = client.stats();
    assert!(stats.circuit_open && stats.circuit_opened == 1, "{stats:?}");

    tokio::time::sleep(Duration::from_millis(350)).await;
    client.get("/order/7", &[], "order 7").await.expect("the trial call succeeds and closes the circuit");
    assert!(!client.stats().circuit_open);
    let _ = Arc::clone(world.access.clients());
}
