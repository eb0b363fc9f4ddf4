//! Crash safety: `kill -9` in the middle of a burst of webhooks loses nothing the server
//! acknowledged, and after a restart and KeyCRM's re-deliveries the derived state is exactly
//! that of a run that never crashed (docs/architecture.md, invariants 2 and 4).

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::http::{PROCESSING_DEADLINE, Reply, client, try_send, wait_until_processed};
use common::server::{Instance, sigkill};
use common::state_file::StateFile;
use common::webhook_log::{EventKey, WebhookLog, assert_all_taken};

const ORDERS: u64 = 600;
const CONCURRENCY: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_burst_loses_no_acknowledged_webhook_and_ends_like_a_clean_run() {
    let instance = Instance::sqlite();
    let project = instance.add_project("p1", &[]);
    let log = WebhookLog::simulate(&instance.ws, "p1", ORDERS);
    let client = client();

    // Killed once half of the webhooks have their answer, with more in flight.
    let server = instance.start();
    let before_kill = post_until_killed(&client, &server.webhook_url(&project), &log, server.pid(), log.len() / 2).await;
    server.kill();
    let acknowledged: Vec<usize> = (0..log.len()).filter(|i| before_kill[*i].as_ref().is_some_and(|r| r.status == 202)).collect();
    let unanswered = before_kill.iter().filter(|r| r.is_none()).count();
    assert!(acknowledged.len() >= log.len() / 2 && unanswered > 0, "the kill did not land mid-burst");
    for i in &acknowledged {
        let reply = before_kill[*i].as_ref().expect("answered");
        assert!(["accepted", "duplicate"].contains(&reply.outcome()), "webhook {i}: {reply:?}");
    }

    // Restarted on the same data dir, it processes what it acknowledged before the crash.
    let server = instance.start();
    let acknowledged_keys: BTreeSet<EventKey> = acknowledged.iter().map(|i| EventKey::of(&log.bodies[*i])).collect();
    let mut state = StateFile::open(&instance.state_db()).await;
    wait_for_stored_events(&mut state, "p1", &acknowledged_keys).await;

    // KeyCRM delivers everything again: what was acknowledged is a duplicate now.
    let again = log.post_all(&client, &server.webhook_url(&project), CONCURRENCY).await;
    assert_all_taken(&again);
    let not_duplicate: Vec<usize> = acknowledged.iter().copied().filter(|i| again[*i].outcome() != "duplicate").collect();
    assert!(not_duplicate.is_empty(), "acknowledged before the crash, yet new after it: {not_duplicate:?}");
    wait_until_processed(&client, &server, "p1", log.expected()).await;
    assert_eq!(state.event_keys("p1").await, log.event_keys(), "the event log after the crash");
    state.close().await;
    let status = server.stop();
    assert!(status.success(), "{status}");
    let after_crash = instance.derived_digest("p1").await;

    let (clean, _) = log.digest_of_a_clean_run(None).await;
    assert_eq!(after_crash, clean, "the crash changed the derived state");
}

/// The recompute after a settings change runs in the background: a crash may come before it
/// starts or half-way through, and the restarted server must still finish it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_right_after_a_settings_change_still_gets_the_whole_history_recomputed() {
    let instance = Instance::sqlite();
    let project = instance.add_project("p1", &[]);
    let log = WebhookLog::simulate(&instance.ws, "p1", ORDERS);
    let client = client();
    let server = instance.start();
    assert_all_taken(&log.post_all(&client, &server.webhook_url(&project), CONCURRENCY).await);
    wait_until_processed(&client, &server, "p1", log.expected()).await;

    let settings = common::example("settings.json");
    let revision = instance.put_settings("p1", &settings);
    server.kill();

    let server = instance.start();
    let mut state = StateFile::open(&instance.state_db()).await;
    state.wait_for_no_rows_older_than("p1", revision).await;
    state.close().await;
    assert!(server.stop().success());
    let (clean, _) = log.digest_of_a_clean_run(Some(&settings)).await;
    assert_eq!(instance.derived_digest("p1").await, clean, "history after the crash differs from a run with the new settings");
}

/// An older version kept the embedded outbox in `state.db`. A data dir it left with webhooks
/// acknowledged but not yet processed starts on this version: the records move into
/// `state-bus.db`, each is processed once, and KeyCRM's re-deliveries are still duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_data_dir_with_the_outbox_in_the_state_database_is_moved_and_processed_once() {
    let instance = Instance::sqlite();
    let project = instance.add_project("p1", &[]);
    let log = WebhookLog::simulate(&instance.ws, "p1", 200);
    let client = client();
    older_ingest_takes(&instance, &log, &client, &project).await;
    assert!(!instance.bus_db().exists(), "the older layout has no bus file");

    let server = instance.start();
    wait_until_processed(&client, &server, "p1", log.expected()).await;
    let mut state = StateFile::open(&instance.state_db()).await;
    assert_eq!(state.outbox_rows_in_the_state_database().await, 0, "the state database keeps no outbox rows");
    assert_eq!(state.written_rows().await.bus_idempotency, log.expected().events as i64, "the keys moved with the records");
    let again = log.post_all(&client, &server.webhook_url(&project), CONCURRENCY).await;
    let not_duplicate: Vec<usize> = (0..again.len()).filter(|i| again[*i].outcome() != "duplicate").collect();
    assert!(not_duplicate.is_empty(), "acknowledged by the older version, yet new after the move: {not_duplicate:?}");
    assert_eq!(state.event_keys("p1").await, log.event_keys());
    state.close().await;
    assert!(server.stop().success());

    let (clean, _) = log.digest_of_a_clean_run(None).await;
    assert_eq!(instance.derived_digest("p1").await, clean, "the move changed the derived state");
}

/// Ingest as an older version ran it: the outbox in the state database's own tables, no
/// processor. Every webhook of `log` is acknowledged.
async fn older_ingest_takes(instance: &Instance, log: &WebhookLog, client: &reqwest::Client, project: &common::server::Project) {
    use ksa_bus::OutboxConfig;
    use ksa_bus::outbox::SqliteOutbox;
    use ksa_ingest::{Ingest, IngestConfig};

    let state = ksa_state::SqliteState::open(&instance.state_db().display().to_string()).await.expect("opening state.db");
    // As many partitions as `run` gives the outbox on SQLite.
    let partitions = ksa_app::config::Config::default().bus.partitions_for(false);
    let config = OutboxConfig { partitions, ..OutboxConfig::default() };
    let bus = SqliteOutbox::start_with_gate(state.pool().clone(), state.write_gate(), &ksa_app::serve::TOPICS, config)
        .await
        .expect("the outbox in state.db");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let addr = listener.local_addr().expect("its address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let routes = ksa_ingest::routes(Ingest::new(bus.clone(), state.clone(), IngestConfig::default()));
    let server = tokio::spawn(warp::serve(routes).incoming(listener).graceful(async move { stopped.await.unwrap_or(()) }).run());
    let url = format!("http://{addr}/webhooks/keycrm/{}?token={}", project.slug, project.secret);
    let replies = log.post_all(client, &url, CONCURRENCY).await;
    assert_all_taken(&replies);
    let _ = stop.send(());
    server.await.expect("the older ingest stopped");
    bus.shutdown().await;
    state.pool().close().await;
}

/// Posts the log with [`CONCURRENCY`] requests in flight and SIGKILLs the server (by `pid`) once
/// `kill_after` answers are in. Returns each webhook's answer, `None` where none came.
async fn post_until_killed(client: &reqwest::Client, url: &str, log: &WebhookLog, pid: u32, kill_after: usize) -> Vec<Option<Reply>> {
    let bodies = Arc::new(log.bodies.clone());
    let next = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (bodies, next, answered, killed) = (bodies.clone(), next.clone(), answered.clone(), killed.clone());
        let (client, url) = (client.clone(), url.to_owned());
        workers.spawn(async move {
            let mut replies = Vec::new();
            while !killed.load(Ordering::SeqCst) {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(body) = bodies.get(i) else { break };
                let request = client.post(&url).header("content-type", "application/json").body(body.clone());
                // An answer that came at all was given before the process died.
                let Ok(reply) = try_send(request).await else { continue };
                replies.push((i, reply));
                if answered.fetch_add(1, Ordering::SeqCst) + 1 == kill_after && !killed.swap(true, Ordering::SeqCst) {
                    sigkill(pid);
                }
            }
            replies
        });
    }
    let mut replies: Vec<Option<Reply>> = vec![None; bodies.len()];
    while let Some(done) = workers.join_next().await {
        for (i, reply) in done.expect("a posting task panicked") {
            replies[i] = Some(reply);
        }
    }
    replies
}

/// Polls `order_status_events` until it holds every one of `keys`.
async fn wait_for_stored_events(state: &mut StateFile, slug: &str, keys: &BTreeSet<EventKey>) {
    let deadline = Instant::now() + PROCESSING_DEADLINE;
    loop {
        let stored = state.event_keys(slug).await;
        let missing = keys.difference(&stored).count();
        if missing == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{missing} of {} acknowledged webhooks never reached the event log", keys.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
