//! Webhook logs as KeyCRM would deliver them, made by `keycrm-analytics simulate`, and what a
//! server should hold after receiving one.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ksa_schemas::Timestamp;
use serde_json::Value;

use super::Workspace;
use super::http::{PROCESSING_DEADLINE, Processed, Reply, client, post_webhook, wait_until_processed};
use super::server::Instance;

/// The dedup key of a status event, without the project: `(order, status_changed_at, status)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventKey {
    pub order_id: i64,
    pub changed_at_micros: i64,
    pub status_id: i64,
}

impl EventKey {
    /// The key of a webhook body, read from its JSON.
    pub fn of(body: &str) -> EventKey {
        let webhook: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("a webhook of the log is not JSON ({e}): {body}"));
        let context = &webhook["context"];
        let changed_at = context["status_changed_at"].as_str().and_then(Timestamp::parse);
        match (context["id"].as_i64(), changed_at, context["status_id"].as_i64()) {
            (Some(order_id), Some(changed_at), Some(status_id)) => {
                EventKey { order_id, changed_at_micros: changed_at.as_micros(), status_id }
            }
            _ => panic!("a webhook of the log lacks id, status_changed_at or status_id: {body}"),
        }
    }
}

/// The 503 answers met by [`WebhookLog::post_all_until_taken`], readable while it posts.
#[derive(Clone, Debug, Default)]
pub struct Refusals(Arc<Mutex<Vec<Reply>>>);

impl Refusals {
    pub fn seen(&self) -> Vec<Reply> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Webhook bodies in delivery order.
#[derive(Clone, Debug)]
pub struct WebhookLog {
    pub bodies: Vec<String>,
}

impl WebhookLog {
    /// `simulate --project SLUG --orders N --out DIR` (seeded: the same log every time).
    pub fn simulate(ws: &Workspace, slug: &str, orders: u64) -> WebhookLog {
        let dir = ws.path(&format!("simulated-{slug}-{orders}"));
        let (count, out) = (orders.to_string(), dir.display().to_string());
        ws.run(["simulate", "--project", slug, "--orders", &count, "--start", &simulation_start(), "--out", &out]).assert_success();
        let path = dir.join(format!("{slug}.jsonl"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let log = WebhookLog { bodies: text.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect() };
        assert!(!log.bodies.is_empty(), "simulate wrote no webhooks");
        log
    }

    pub fn len(&self) -> usize {
        self.bodies.len()
    }

    /// The distinct status events of the log.
    pub fn event_keys(&self) -> BTreeSet<EventKey> {
        self.bodies.iter().map(|b| EventKey::of(b)).collect()
    }

    /// What the read API shows once every webhook of the log is processed.
    pub fn expected(&self) -> Processed {
        let keys = self.event_keys();
        let orders: BTreeSet<i64> = keys.iter().map(|k| k.order_id).collect();
        Processed { orders: orders.len(), events: keys.len() as u64 }
    }

    /// [`WebhookLog::shuffled_with_duplicates`] (every 4th sent twice) cut in two halves.
    pub fn shuffled_halves(&self, seed: u64) -> (WebhookLog, WebhookLog) {
        let mut first = self.shuffled_with_duplicates(seed, 4).bodies;
        let second = first.split_off(first.len() / 2);
        (WebhookLog { bodies: first }, WebhookLog { bodies: second })
    }

    /// The same webhooks in a seeded random order, with every `every`-th one sent once more.
    pub fn shuffled_with_duplicates(&self, seed: u64, every: usize) -> WebhookLog {
        let mut bodies = self.bodies.clone();
        bodies.extend(self.bodies.iter().step_by(every.max(1)).cloned());
        let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for i in (1..bodies.len()).rev() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            bodies.swap(i, (rng % (i as u64 + 1)) as usize);
        }
        WebhookLog { bodies }
    }

    /// Posts every webhook to `url` with `concurrency` requests in flight; the answers come
    /// back in log order.
    pub async fn post_all(&self, client: &reqwest::Client, url: &str, concurrency: usize) -> Vec<Reply> {
        let (client, url) = (client.clone(), url.to_owned());
        self.post_each(concurrency, move |body| {
            let (client, url) = (client.clone(), url.clone());
            async move { post_webhook(&client, &url, body).await }
        })
        .await
    }

    /// Like [`WebhookLog::post_all`], but as KeyCRM delivers through an outage: a webhook
    /// answered 503 is posted again after its `Retry-After` (at most a second here, to keep
    /// tests short) until another answer comes, or the 503 itself once [`PROCESSING_DEADLINE`]
    /// has passed; every 503 goes to `refusals`.
    pub async fn post_all_until_taken(&self, client: &reqwest::Client, url: &str, concurrency: usize, refusals: &Refusals) -> Vec<Reply> {
        let (client, url, refusals) = (client.clone(), url.to_owned(), refusals.clone());
        let deadline = Instant::now() + PROCESSING_DEADLINE;
        self.post_each(concurrency, move |body| {
            let (client, url, refusals) = (client.clone(), url.clone(), refusals.clone());
            async move {
                loop {
                    let reply = post_webhook(&client, &url, body.clone()).await;
                    if reply.status != 503 || Instant::now() > deadline {
                        return reply;
                    }
                    let pause = reply.header("retry-after").and_then(|s| s.parse().ok()).map_or(1.0, |s: f64| s.min(1.0));
                    refusals.0.lock().unwrap_or_else(|e| e.into_inner()).push(reply);
                    tokio::time::sleep(Duration::from_secs_f64(pause)).await;
                }
            }
        })
        .await
    }

    /// `post(body)` for every webhook, `concurrency` at a time; the answers in log order.
    async fn post_each<F, Fut>(&self, concurrency: usize, post: F) -> Vec<Reply>
    where
        F: Fn(String) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Reply> + Send,
    {
        let bodies = Arc::new(self.bodies.clone());
        let next = Arc::new(AtomicUsize::new(0));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..concurrency.max(1) {
            let (bodies, next, post) = (Arc::clone(&bodies), Arc::clone(&next), post.clone());
            workers.spawn(async move {
                let mut replies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { return replies };
                    replies.push((i, post(body.clone()).await));
                }
            });
        }
        let mut replies: Vec<Option<Reply>> = vec![None; bodies.len()];
        while let Some(done) = workers.join_next().await {
            for (i, reply) in done.expect("a posting task panicked") {
                replies[i] = Some(reply);
            }
        }
        replies.into_iter().map(|r| r.expect("every webhook was posted")).collect()
    }

    /// The derived digest after replaying the log into a fresh embedded instance whose project
    /// `p1` got `settings` (a file for `project settings`) before the server started; and the
    /// settings revision (0 when none was stored).
    pub async fn digest_of_a_clean_run(&self, settings: Option<&std::path::Path>) -> (String, i64) {
        let instance = Instance::sqlite();
        let project = instance.add_project("p1", &[]);
        let revision = settings.map_or(0, |file| instance.put_settings("p1", file));
        let server = instance.start();
        let client = client();
        assert_all_taken(&self.post_all(&client, &server.webhook_url(&project), 8).await);
        wait_until_processed(&client, &server, "p1", self.expected()).await;
        assert!(server.stop().success());
        (instance.derived_digest("p1").await, revision)
    }
}

impl WebhookLog {
    /// Like [`WebhookLog::digest_of_a_clean_run`] (no settings), with Parquet facts: the
    /// digest and the facts as a query sees them (deduplicated by version), with the project id
    /// set to 0 so that they compare across instances.
    pub async fn clean_run_with_facts(&self) -> (String, Vec<ksa_schemas::facts::IntervalFact>, Vec<ksa_schemas::facts::CycleFact>) {
        use ksa_state::StateStore;
        let instance = Instance::sqlite().with_env("KSA__FACTS__KIND", "parquet");
        let project = instance.add_project("p1", &[]);
        let server = instance.start();
        let client = client();
        assert_all_taken(&self.post_all(&client, &server.webhook_url(&project), 8).await);
        wait_until_processed(&client, &server, "p1", self.expected()).await;
        assert!(server.stop().success());
        let digest = instance.derived_digest("p1").await;
        let state = ksa_state::SqliteState::open(&instance.state_db().display().to_string()).await.expect("state");
        let project_id = state.project_by_slug("p1").await.expect("read").expect("project").id;
        let facts = ksa_facts::parquet::ParquetFacts::new(instance.state_db().with_file_name("facts"));
        let mut intervals = facts.final_intervals(project_id).expect("intervals");
        let mut cycles = facts.final_cycles(project_id).expect("cycles");
        intervals.iter_mut().for_each(|i| i.project_id = 0);
        cycles.iter_mut().for_each(|c| c.project_id = 0);
        (digest, intervals, cycles)
    }
}

/// `simulate`'s own default start, 2026-01-01 (its four months of traffic cross the March DST
/// change), when that traffic lies well in the past; else a year ago. The read API measures at
/// the current time and leaves out events after it, so a log from the future would never show.
fn simulation_start() -> String {
    let now = chrono::Utc::now();
    let default = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").expect("a valid instant").to_utc();
    let start = if default + chrono::Duration::days(180) <= now { default } else { now - chrono::Duration::days(365) };
    start.format("%Y-%m-%dT00:00:00Z").to_string()
}

/// Panics unless every answer is a 202 `accepted` or `duplicate`.
pub fn assert_all_taken(replies: &[Reply]) {
    let refused: Vec<&Reply> = replies.iter().filter(|r| r.status != 202 || !["accepted", "duplicate"].contains(&r.outcome())).collect();
    assert!(refused.is_empty(), "{} of {} webhooks were not taken, for example {:?}", refused.len(), replies.len(), refused.first());
}
