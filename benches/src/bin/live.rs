//! The live-feed benchmark: `keycrm-analytics run` (embedded defaults, a fresh data dir) with
//! many clients on `GET /api/stream/orders` while webhooks are posted at a fixed rate.
//!
//! live --app target/release/keycrm-analytics [--projects 10] [--clients 1000] [--rate 20] [--seconds 30]
//!
//! `--clients` are spread evenly over `--projects`; each project gets `--rate` webhooks per
//! second, each a new order, so every webhook is one `order_updated` per client of its project.
//! Reports webhook accepted (its 202 read) → event received p50/p99/max over every delivery,
//! deliveries missing, the server's CPU per delivery and its memory per connected client.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ksa_benches::process::{Server, cpu_seconds, rss_mib};
use ksa_benches::traffic::{GeneratedEvent, webhook_body};
use ksa_domain::quantile::nearest_rank;
use ksa_schemas::Timestamp;

type Fallible<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const USAGE: &str = "usage: live --app PATH [--projects 10] [--clients 1000] [--rate 20] [--seconds 30]";

struct Options {
    app: PathBuf,
    projects: usize,
    clients: usize,
    rate: f64,
    seconds: u64,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options { app: PathBuf::new(), projects: 10, clients: 1000, rate: 20.0, seconds: 30 };
    let mut args = args.peekable();
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |_| format!("cannot use {flag} {value}");
        match flag.as_str() {
            "--app" => options.app = value.into(),
            "--projects" => options.projects = value.parse().map_err(bad)?,
            "--clients" => options.clients = value.parse().map_err(bad)?,
            "--rate" => options.rate = value.parse().map_err(|_| format!("cannot use {flag} {value}"))?,
            "--seconds" => options.seconds = value.parse().map_err(bad)?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if options.app.as_os_str().is_empty() || options.projects == 0 || options.clients < options.projects {
        return Err("--app is required, and every project needs a client".into());
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("live: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    match runtime.block_on(run(&options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("live: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Per client: when each order's `order_updated` arrived.
type Received = Vec<(i64, Instant)>;

async fn run(options: &Options) -> Fallible<()> {
    let data = tempfile::tempdir()?;
    let command = |args: &[&str]| {
        let mut command = Command::new(&options.app);
        command.arg("--data-dir").arg(data.path()).args(args);
        command
    };
    // Projects, with their webhook secrets.
    let mut secrets = Vec::new();
    for p in 0..options.projects {
        let slug = format!("p{p}");
        let out = command(&["project", "add", "--slug", &slug, "--name", &slug]).output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let secret = text
            .lines()
            .find_map(|l| l.split_once("?token=").map(|(_, s)| s.trim().to_owned()))
            .ok_or("`project add` printed no secret")?;
        secrets.push((slug, secret));
    }
    let mut add = command(&["user", "add", "--login", "bench", "--role", "owner", "--password-stdin"]);
    let mut child = add.stdin(Stdio::piped()).stdout(Stdio::null()).spawn()?;
    child.stdin.take().ok_or("no stdin")?.write_all(b"bench-password-123\n")?;
    child.wait()?;
    let out = command(&["token", "create", "--login", "bench", "--name", "live benchmark"]).output()?;
    let token = String::from_utf8_lossy(&out.stdout).lines().find(|l| l.starts_with("ksa_")).ok_or("no token")?.to_owned();

    let mut server = command(&["run", "--listen", "127.0.0.1:0"]);
    // Room for every client (the defaults are sized for dashboards, not a benchmark).
    server.env("KSA__LIVE__MAX_STREAMS", "100000").env("KSA__LIVE__MAX_STREAMS_PER_USER", "100000");
    let server = Server::start(server)?;
    let (pid, base) = (server.pid(), server.base_url.clone());
    let idle_rss = rss_mib(pid);

    // The clients.
    let http = reqwest::Client::builder().pool_max_idle_per_host(4096).build()?;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut clients = Vec::new();
    for c in 0..options.clients {
        let slug = secrets[c % options.projects].0.clone();
        let response = http.get(format!("{base}/api/stream/orders?project={slug}")).bearer_auth(&token).send().await?.error_for_status()?;
        let stop = stop.clone();
        clients.push((c % options.projects, tokio::spawn(read_stream(response, stop))));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let connected_rss = rss_mib(pid);
    println!(
        "{} clients over {} projects connected: server RSS {:.0} MiB idle, {:.0} MiB with clients ({:.1} KiB per client)",
        options.clients,
        options.projects,
        idle_rss,
        connected_rss,
        (connected_rss - idle_rss) * 1024.0 / options.clients as f64
    );

    // Webhooks: each project `rate` per second, each a new order.
    let accepted: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let mut posters = Vec::new();
    for (p, (slug, secret)) in secrets.iter().enumerate() {
        let url = format!("{base}/webhooks/keycrm/{slug}?token={secret}");
        let (http, accepted) = (http.clone(), accepted.clone());
        let (rate, seconds) = (options.rate, options.seconds);
        posters.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            let total = (rate * seconds as f64) as i64;
            let mut sends = Vec::new();
            for n in 0..total {
                ticker.tick().await;
                let order_id = 1_000_000 * (p as i64 + 1) + n;
                let now = Timestamp::from_datetime(chrono::Utc::now());
                let event = GeneratedEvent { order_id, status_id: 1, group_id: 1, changed_at: now, created_at: now };
                let mut body = String::new();
                webhook_body(&event, &mut body);
                let request = http.post(&url).header("content-type", "application/json").body(body);
                let accepted = accepted.clone();
                sends.push(tokio::spawn(async move {
                    if let Ok(response) = request.send().await
                        && response.status().as_u16() == 202
                    {
                        accepted.lock().unwrap().insert(order_id, Instant::now());
                    }
                }));
            }
            for send in sends {
                let _ = send.await;
            }
        }));
    }
    let mut peak_rss = connected_rss;
    for poster in posters {
        poster.await?;
        peak_rss = peak_rss.max(rss_mib(pid));
    }
    // Let the last deliveries arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    peak_rss = peak_rss.max(rss_mib(pid));
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu_before;
    let _ = stop_tx.send(true);

    let accepted = accepted.lock().unwrap().clone();
    let mut latencies = Vec::new();
    let mut missing = 0usize;
    let per_project: Vec<usize> =
        (0..options.projects).map(|p| accepted.keys().filter(|id| **id / 1_000_000 - 1 == p as i64).count()).collect();
    for (project, task) in clients {
        let received = task.await?;
        let mut seen = 0;
        for (order_id, at) in received {
            if let Some(sent) = accepted.get(&order_id) {
                seen += 1;
                latencies.push(at.saturating_duration_since(*sent).as_micros() as i64);
            }
        }
        missing += per_project[project].saturating_sub(seen);
    }
    latencies.sort_unstable();
    let ms = |p| nearest_rank(&latencies, p).unwrap_or(0) as f64 / 1000.0;
    let deliveries = latencies.len();
    println!(
        "{} webhooks accepted ({:.0}/s over {:.1} s); {} deliveries ({:.0}/s), {} missing",
        accepted.len(),
        accepted.len() as f64 / options.seconds as f64,
        elapsed,
        deliveries,
        deliveries as f64 / elapsed,
        missing
    );
    println!(
        "accepted → received: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(50),
        ms(99),
        latencies.last().copied().unwrap_or(0) as f64 / 1000.0
    );
    println!(
        "server: {:.1} CPU-seconds ({:.0} % of one core), {:.1} µs CPU per delivery (ingest and processing included); peak RSS {:.0} MiB",
        cpu,
        cpu / elapsed * 100.0,
        cpu * 1e6 / deliveries.max(1) as f64,
        peak_rss
    );
    drop(server);
    Ok(())
}

/// Reads one stream until `stop`: the arrival of each `order_updated`, by order.
async fn read_stream(mut response: reqwest::Response, mut stop: tokio::sync::watch::Receiver<bool>) -> Received {
    let mut received = Vec::new();
    let mut buffer = Vec::<u8>::new();
    loop {
        let chunk = tokio::select! {
            chunk = response.chunk() => chunk,
            _ = stop.wait_for(|stopped| *stopped) => break,
        };
        let Ok(Some(chunk)) = chunk else { break };
        let at = Instant::now();
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buffer.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&event);
            if !text.contains("event:order_updated") && !text.contains("event: order_updated") {
                continue;
            }
            if let Some(id) =
                text.split("\"order_id\":").nth(1).and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
            {
                received.push((id, at));
            }
        }
    }
    received
}
