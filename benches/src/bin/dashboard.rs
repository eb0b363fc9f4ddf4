//! The dashboard benchmark: `keycrm-analytics run` over a database the replay benchmark filled
//! (one project, kept with `KSA_REPLAY_KEEP`), read by concurrent clients as dashboards read it.
//!
//! dashboard --app target/release/keycrm-analytics (--data-dir DIR | --database-url URL)
//!           [--project replay] [--clients 16] [--requests 320] [--skip-csv] [--distinct]
//!
//! It makes an owner and a token with the binary's own commands, starts `run` on 127.0.0.1:0,
//! times the first read (the index load) and the server's memory, then for each read runs
//! `--requests` requests spread over `--clients` concurrent clients and prints p50, p95 and
//! max; then downloads the whole CSV, counting rows per second and sampling the server's
//! memory meanwhile.
//!
//! Identical reads asked at once share one computation on the server. With `--distinct` every
//! client adds a parameter of its own (`&client=N`, which the server ignores), so no two
//! clients' reads are identical and each is computed alone: the cost of sixteen different views.
//!
//! `run` starts with facts off (`KSA__FACTS__KIND=none`, unless set): with its default, a data
//! dir that holds orders but no facts has them all written first, a whole-project recompute
//! that would run under the reads.

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ksa_benches::process::{Server, cpu_seconds, rss_mib};
use ksa_domain::quantile::nearest_rank;

type Fallible<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const USAGE: &str = "usage: dashboard --app PATH (--data-dir DIR | --database-url URL) [--project replay] [--clients 16] [--requests 320] [--skip-csv] [--distinct]";

struct Options {
    app: PathBuf,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    project: String,
    clients: usize,
    requests: usize,
    csv: bool,
    distinct: bool,
}

impl Options {
    fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut options = Options {
            app: PathBuf::new(),
            data_dir: None,
            database_url: None,
            project: "replay".into(),
            clients: 16,
            requests: 320,
            csv: true,
            distinct: false,
        };
        let mut args = args.peekable();
        while let Some(flag) = args.next() {
            if flag == "--skip-csv" {
                options.csv = false;
                continue;
            }
            if flag == "--distinct" {
                options.distinct = true;
                continue;
            }
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let bad = |_| format!("cannot use {flag} {value}");
            match flag.as_str() {
                "--app" => options.app = value.into(),
                "--data-dir" => options.data_dir = Some(value.into()),
                "--database-url" => options.database_url = Some(value),
                "--project" => options.project = value,
                "--clients" => options.clients = value.parse().map_err(bad)?,
                "--requests" => options.requests = value.parse().map_err(bad)?,
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        if options.app.as_os_str().is_empty() {
            return Err("--app is required".into());
        }
        if options.data_dir.is_none() && options.database_url.is_none() {
            return Err("give --data-dir (SQLite) or --database-url (PostgreSQL)".into());
        }
        Ok(options)
    }

    /// The binary with this deployment's data dir and database.
    fn command(&self, data_dir: &std::path::Path) -> Command {
        let mut command = Command::new(&self.app);
        command.arg("--data-dir").arg(data_dir);
        if let Some(url) = &self.database_url {
            command.env("KSA__DATABASE__URL", url);
        }
        // The replay wrote no facts, so `run` with its default (Parquet) facts would write the
        // facts of every stored order first, a recompute of the whole project running under
        // the reads. Reads are what is measured; `KSA__FACTS__KIND` set by the caller wins.
        if std::env::var_os("KSA__FACTS__KIND").is_none() {
            command.env("KSA__FACTS__KIND", "none");
        }
        command
    }
}

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("dashboard: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    match runtime.block_on(run(&options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dashboard: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: &Options) -> Fallible<()> {
    let scratch = tempfile::tempdir()?;
    let data_dir = options.data_dir.clone().unwrap_or_else(|| scratch.path().to_path_buf());
    // An owner and a token (the owner may exist from an earlier run).
    let mut add = options.command(&data_dir);
    add.args(["user", "add", "--login", "bench", "--role", "owner", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = add.spawn()?;
    {
        use std::io::Write;
        child.stdin.take().ok_or("no stdin")?.write_all(b"bench-password-123\n")?;
    }
    child.wait()?;
    let token = options.command(&data_dir).args(["token", "create", "--login", "bench", "--name", "dashboard benchmark"]).output()?;
    let token =
        String::from_utf8_lossy(&token.stdout).lines().find(|l| l.starts_with("ksa_")).ok_or("`token create` printed no token")?.to_owned();

    let mut command = options.command(&data_dir);
    command.args(["run", "--listen", "127.0.0.1:0"]);
    let server = Server::start(command)?;
    let pid = server.pid();
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let get = {
        let (http, token, base) = (http.clone(), token.clone(), server.base_url.clone());
        move |path: String| {
            let request = http.get(format!("{base}{path}")).bearer_auth(&token);
            async move {
                let response = request.send().await?;
                let status = response.status();
                let body = response.bytes().await?;
                if !status.is_success() {
                    return Err(format!("{path}: {status} {}", String::from_utf8_lossy(&body)).into());
                }
                Fallible::Ok(body)
            }
        }
    };
    let project = &options.project;
    println!("server: pid {pid}, {}", server.base_url);
    println!("machine: {} cores", std::thread::available_parallelism().map_or(1, |n| n.get()));
    let before = rss_mib(pid);
    let started = Instant::now();
    let first = get(format!("/api/orders/kpis?project={project}")).await?;
    let loaded = started.elapsed();
    let kpis: serde_json::Value = serde_json::from_slice(&first)?;
    let count = kpis["kpis"]["count"].as_u64().unwrap_or(0);
    println!(
        "index: first read (load + KPIs over {count} orders) {:.1} s; server RSS {:.0} MiB before, {:.0} MiB after ({:.0} B per order)",
        loaded.as_secs_f64(),
        before,
        rss_mib(pid),
        (rss_mib(pid) - before) * 1024.0 * 1024.0 / count.max(1) as f64
    );
    println!(
        "orders: {} urgent, {} normal, {} pending; sla over {}, overdue now {}",
        kpis["kpis"]["urgent"],
        kpis["kpis"]["normal"],
        kpis["kpis"]["pending"],
        kpis["kpis"]["sla"]["over"],
        kpis["kpis"]["sla"]["overdue"]
    );

    let reads: &[(&str, String)] = &[
        ("page of 100, no filter", format!("/api/orders?project={project}&limit=100")),
        ("page of 100, sla=over", format!("/api/orders?project={project}&limit=100&sla=over")),
        ("page of 100, group=3&urgency=urgent", format!("/api/orders?project={project}&limit=100&group=3&urgency=urgent")),
        ("page of 100, sort=-working", format!("/api/orders?project={project}&limit=100&sort=-working")),
        ("page of 100, overdue=true&sort=-working", format!("/api/orders?project={project}&limit=100&overdue=true&sort=-working")),
        ("KPIs, all orders", format!("/api/orders/kpis?project={project}")),
        ("KPIs, q=5 (about 11 %)", format!("/api/orders/kpis?project={project}&q=5")),
    ];
    let get = Arc::new(get);
    for (name, path) in reads {
        // Warm: one request.
        get(path.clone()).await?;
        let cpu = cpu_seconds(pid);
        let started = Instant::now();
        let per_client = options.requests.div_ceil(options.clients);
        let mut tasks = Vec::new();
        for client in 0..options.clients {
            let path = if options.distinct { format!("{path}&client={client}") } else { path.clone() };
            let get = get.clone();
            tasks.push(tokio::spawn(async move {
                let mut times = Vec::with_capacity(per_client);
                for _ in 0..per_client {
                    let t = Instant::now();
                    get(path.clone()).await?;
                    times.push(t.elapsed().as_micros() as i64);
                }
                Fallible::Ok(times)
            }));
        }
        let mut times = Vec::new();
        for task in tasks {
            times.extend(task.await??);
        }
        let elapsed = started.elapsed().as_secs_f64();
        times.sort_unstable();
        let ms = |p| nearest_rank(&times, p).unwrap_or(0) as f64 / 1000.0;
        println!(
            "{name:<42} {} requests by {} clients{}: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms; {:.0} requests/s; server CPU {:.2} ms/request",
            times.len(),
            options.clients,
            if options.distinct { " (distinct)" } else { "" },
            ms(50),
            ms(95),
            times.last().copied().unwrap_or(0) as f64 / 1000.0,
            times.len() as f64 / elapsed,
            (cpu_seconds(pid) - cpu) * 1000.0 / times.len() as f64
        );
    }

    if options.csv {
        let base_rss = rss_mib(pid);
        let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sampling = {
            let peak = peak.clone();
            tokio::spawn(async move {
                loop {
                    peak.fetch_max((rss_mib(pid) * 1024.0) as u64, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let started = Instant::now();
        let response = http.get(format!("{}/api/orders.csv?project={project}", server.base_url)).bearer_auth(&token).send().await?;
        let mut response = response.error_for_status()?;
        let (mut bytes, mut rows) = (0usize, 0usize);
        while let Some(chunk) = response.chunk().await? {
            bytes += chunk.len();
            rows += chunk.iter().filter(|b| **b == b'\n').count();
        }
        let elapsed = started.elapsed().as_secs_f64();
        sampling.abort();
        let peak = peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0;
        println!(
            "orders.csv: {} rows ({:.0} MiB) in {:.1} s = {:.0} rows/s; server RSS {:.0} MiB before, peak {:.0} MiB during",
            rows.saturating_sub(1),
            bytes as f64 / 1024.0 / 1024.0,
            elapsed,
            rows.saturating_sub(1) as f64 / elapsed,
            base_rss,
            peak
        );
    }
    drop(server);
    Ok(())
}
