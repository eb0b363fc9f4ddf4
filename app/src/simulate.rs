//! `keycrm-analytics simulate`: realistic, seeded KeyCRM traffic for several projects, written
//! as JSON Lines (one file per project) or posted to a running server.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ksa_schemas::Timestamp;
use tokio::sync::Semaphore;

use crate::traffic::{TrafficSpec, deliveries, is_urgent, order_body, webhook_body};

pub struct SimulateOptions {
    /// Slugs, one per simulated project; the secret is needed only to post.
    pub projects: Vec<(String, Option<String>)>,
    pub orders: u64,
    pub days: u32,
    pub seed: u64,
    pub start: Timestamp,
    pub target: Target,
    pub progress: bool,
}

pub enum Target {
    /// Writes `DIR/{slug}.jsonl`.
    Files(PathBuf),
    /// Posts to `BASE/webhooks/keycrm/{slug}?token=SECRET` with this many requests in flight.
    Post { base_url: String, concurrency: usize },
}

/// What was sent or written.
#[derive(Debug, Default)]
pub struct SimulateSummary {
    pub webhooks: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub retried: u64,
}

pub async fn simulate(options: SimulateOptions, out: &mut dyn Write) -> anyhow::Result<SimulateSummary> {
    if options.projects.is_empty() {
        bail!("--project: name at least one project (SLUG or SLUG=SECRET)");
    }
    let mut traffic = Vec::with_capacity(options.projects.len());
    for (index, (slug, secret)) in options.projects.iter().enumerate() {
        let spec = TrafficSpec {
            orders: options.orders,
            start: options.start,
            days: options.days,
            seed: options.seed,
            project_index: index as u32,
            ..TrafficSpec::default()
        };
        traffic.push((slug.clone(), secret.clone(), deliveries(&spec)));
    }
    let total: u64 = traffic.iter().map(|(_, _, t)| t.len() as u64).sum();
    let bar = progress_bar(options.progress, total);
    let started = Instant::now();
    let summary = match &options.target {
        Target::Files(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let mut body = String::with_capacity(2048);
            for (slug, _, events) in &traffic {
                let path = dir.join(format!("{slug}.jsonl"));
                let mut file = BufWriter::new(std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?);
                for event in events {
                    body.clear();
                    webhook_body(event, &mut body);
                    body.push('\n');
                    file.write_all(body.as_bytes())?;
                    bar.inc(1);
                }
                file.flush()?;
                writeln!(out, "{}: {} webhooks", path.display(), events.len())?;
                let orders_path = dir.join(format!("{slug}.orders.jsonl"));
                let mut orders =
                    BufWriter::new(std::fs::File::create(&orders_path).with_context(|| format!("creating {}", orders_path.display()))?);
                let mut ids: Vec<i64> = events.iter().map(|e| e.order_id).collect();
                ids.sort_unstable();
                ids.dedup();
                for id in &ids {
                    body.clear();
                    order_body(*id, is_urgent(*id, options.seed), &mut body);
                    body.push('\n');
                    orders.write_all(body.as_bytes())?;
                }
                orders.flush()?;
                writeln!(out, "{}: {} orders with their items (about one in ten urgent)", orders_path.display(), ids.len())?;
            }
            SimulateSummary { webhooks: total, ..SimulateSummary::default() }
        }
        Target::Post { base_url, concurrency } => post_all(&traffic, base_url, (*concurrency).max(1), &bar).await?,
    };
    bar.finish_and_clear();
    writeln!(
        out,
        "{} webhooks for {} project(s) in {:.1} s ({} accepted, {} duplicates, {} retried after 503)",
        summary.webhooks,
        traffic.len(),
        started.elapsed().as_secs_f64(),
        summary.accepted,
        summary.duplicates,
        summary.retried
    )?;
    Ok(summary)
}

type Traffic = Vec<(String, Option<String>, Vec<crate::traffic::GeneratedEvent>)>;

/// Posts every project's webhooks, interleaving projects, honouring 503 + `Retry-After`.
async fn post_all(traffic: &Traffic, base_url: &str, concurrency: usize, bar: &ProgressBar) -> anyhow::Result<SimulateSummary> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).timeout(Duration::from_secs(30)).build()?;
    let limit = Arc::new(Semaphore::new(concurrency));
    let accepted = Arc::new(AtomicU64::new(0));
    let duplicates = Arc::new(AtomicU64::new(0));
    let retried = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let longest = traffic.iter().map(|(_, _, t)| t.len()).max().unwrap_or(0);
    let mut sent = 0u64;
    for i in 0..longest {
        for (slug, secret, events) in traffic {
            let Some(event) = events.get(i) else { continue };
            let secret = secret.as_deref().with_context(|| format!("--project {slug}: posting needs SLUG=SECRET"))?;
            let url = format!("{}/webhooks/keycrm/{slug}?token={secret}", base_url.trim_end_matches('/'));
            let mut body = String::with_capacity(2048);
            webhook_body(event, &mut body);
            let permit = limit.clone().acquire_owned().await?;
            let (client, accepted, duplicates, retried, bar) =
                (client.clone(), accepted.clone(), duplicates.clone(), retried.clone(), bar.clone());
            tasks.spawn(async move {
                let _permit = permit;
                let result = post_one(&client, &url, body, &retried).await;
                match result.as_deref() {
                    Ok("duplicate") => duplicates.fetch_add(1, Ordering::Relaxed),
                    Ok(_) => accepted.fetch_add(1, Ordering::Relaxed),
                    Err(_) => 0,
                };
                bar.inc(1);
                result.map(|_| ())
            });
            sent += 1;
            while let Some(done) = tasks.try_join_next() {
                done??;
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(SimulateSummary {
        webhooks: sent,
        accepted: accepted.load(Ordering::Relaxed),
        duplicates: duplicates.load(Ordering::Relaxed),
        retried: retried.load(Ordering::Relaxed),
    })
}

/// One webhook, retried while the server answers 503; returns the `status` it reported.
async fn post_one(client: &reqwest::Client, url: &str, body: String, retried: &AtomicU64) -> anyhow::Result<String> {
    for _ in 0..100 {
        let response = client.post(url).header("content-type", "application/json").body(body.clone()).send().await;
        let response = match response {
            Ok(r) => r,
            Err(err) => bail!("posting to {}: {err}", url.split('?').next().unwrap_or(url)),
        };
        let status = response.status();
        if status.as_u16() == 503 {
            retried.fetch_add(1, Ordering::Relaxed);
            let wait = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok()).unwrap_or(1);
            tokio::time::sleep(Duration::from_secs(wait.min(10))).await;
            continue;
        }
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("the server answered {status}: {text}");
        }
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        return Ok(answer["status"].as_str().unwrap_or("").to_string());
    }
    bail!("the server kept answering 503")
}

fn progress_bar(show: bool, total: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("simulating [{bar:40}] {pos}/{len} webhooks ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}
