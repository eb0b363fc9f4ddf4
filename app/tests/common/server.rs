//! `keycrm-analytics run` as a process of its own: a data dir (or a PostgreSQL database), the
//! projects made in it with `project add`, and the server started on `127.0.0.1:0`, stopped by
//! SIGTERM or killed by SIGKILL as an operator or a crash would.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ksa_state::{PostgresState, SqliteState, StateStore};

use super::Workspace;

/// How long a server may take to start listening or to stop before the test fails.
const START_OR_STOP_DEADLINE: Duration = Duration::from_secs(120);
/// What `run` and the services run apart (`keycrm-analytics ingest listening on …`) print.
const LISTENING: &str = " listening on http://";

/// Where one deployment keeps its state: a data dir, and a PostgreSQL database when given.
pub struct Instance {
    pub ws: Workspace,
    data_dir: PathBuf,
    database_url: Option<String>,
    env: Vec<(String, String)>,
    /// An owner's API token, made on first use (`user add` and `token create`).
    token: std::sync::OnceLock<String>,
}

/// A project as `project add` printed it.
#[derive(Clone, Debug)]
pub struct Project {
    pub slug: String,
    pub secret: String,
}

impl Instance {
    /// Embedded defaults: SQLite in a fresh data dir.
    pub fn sqlite() -> Self {
        let ws = Workspace::new();
        let data_dir = ws.path("data");
        Instance { ws, data_dir, database_url: None, env: Vec::new(), token: std::sync::OnceLock::new() }
    }

    /// State (and the outbox) in the PostgreSQL database at `url`, via `KSA__DATABASE__URL`.
    pub fn postgres(url: &str) -> Self {
        Instance { database_url: Some(url.to_owned()), ..Instance::sqlite() }.with_env("KSA__DATABASE__URL", url)
    }

    /// Passes `KSA__…` (or any) variable to every command of this instance.
    pub fn with_env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The embedded SQLite state file.
    pub fn state_db(&self) -> PathBuf {
        self.data_dir.join("state.db")
    }

    /// The embedded bus's SQLite file, beside the state file.
    pub fn bus_db(&self) -> PathBuf {
        ksa_app::stores::bus_file(&self.state_db())
    }

    /// The binary with this instance's data dir and environment.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = self.ws.command([OsStr::new("--data-dir"), self.data_dir.as_os_str()]);
        command.args(args).envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// `project add --slug SLUG --name SLUG [extra…]`; returns the slug and the printed secret.
    pub fn add_project(&self, slug: &str, extra: &[&str]) -> Project {
        let outcome = super::run(self.command(["project", "add", "--slug", slug, "--name", slug]).args(extra));
        outcome.assert_success();
        let secret = outcome
            .stdout
            .lines()
            .find_map(|line| line.strip_prefix("webhook URL: "))
            .and_then(|url| url.split_once("?token="))
            .map(|(_, secret)| secret.trim().to_owned())
            .unwrap_or_else(|| panic!("`project add` printed no webhook URL with a token:\n{}", outcome.stdout));
        Project { slug: slug.to_owned(), secret }
    }

    /// `project settings --slug SLUG --file FILE`; returns the revision it printed.
    pub fn put_settings(&self, slug: &str, file: &Path) -> i64 {
        let outcome = super::run(self.command(["project", "settings", "--slug", slug, "--file"]).arg(file));
        outcome.assert_success();
        outcome
            .stdout
            .split("stored as revision ")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("`project settings` printed no revision:\n{}", outcome.stdout))
    }

    /// The API token of an owner `tester`, made with the command line the first time: the test
    /// client sends it on every `/api` request to a server of this instance.
    pub fn api_token(&self) -> String {
        self.token
            .get_or_init(|| {
                let mut add = self.command(["user", "add", "--login", "tester", "--role", "owner", "--password-stdin"]);
                super::run_with_stdin(&mut add, "tester-password-1\n").assert_success();
                let outcome = super::run(&mut self.command(["token", "create", "--login", "tester", "--name", "tests"]));
                outcome.assert_success();
                outcome
                    .stdout
                    .lines()
                    .find(|line| line.starts_with("ksa_"))
                    .unwrap_or_else(|| panic!("`token create` printed no token:\n{}", outcome.stdout))
                    .to_owned()
            })
            .clone()
    }

    /// `user add --login LOGIN --role ROLE [--projects P]` with `password` on standard input.
    pub fn add_user(&self, login: &str, role: &str, projects: &[&str], password: &str) {
        let mut command = self.command(["user", "add", "--login", login, "--role", role, "--password-stdin"]);
        if !projects.is_empty() {
            command.args(["--projects", &projects.join(",")]);
        }
        super::run_with_stdin(&mut command, &format!("{password}\n")).assert_success();
    }

    /// `token create --login LOGIN`: the token it printed.
    pub fn token(&self, login: &str) -> String {
        let outcome = super::run(&mut self.command(["token", "create", "--login", login, "--name", "tests"]));
        outcome.assert_success();
        outcome
            .stdout
            .lines()
            .find(|line| line.starts_with("ksa_"))
            .unwrap_or_else(|| panic!("no token printed:\n{}", outcome.stdout))
            .to_owned()
    }

    /// Starts `run` without giving the test client a token: every request says who it is.
    pub fn start_bare(&self, extra_env: &[(&str, &str)]) -> Server {
        let mut command = self.command(["run", "--listen", "127.0.0.1:0"]);
        command.envs(extra_env.iter().copied()).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        Server::spawn(command)
    }

    /// Starts `run --listen 127.0.0.1:0` (plus `extra_env`) and waits until it listens.
    pub fn start(&self) -> Server {
        self.start_with(&[])
    }

    pub fn start_with(&self, extra_env: &[(&str, &str)]) -> Server {
        let token = self.api_token();
        let mut command = self.command(["run", "--listen", "127.0.0.1:0"]);
        command.envs(extra_env.iter().copied()).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        Server::spawn(command).with_token(token)
    }

    /// Starts `SERVICE --listen 127.0.0.1:0 [extra…]` (`ingest`, `process`, `query-api`) and
    /// waits until it listens.
    pub fn start_service(&self, service: &str, extra: &[&str]) -> Server {
        self.start_service_with(service, extra, &[])
    }

    /// [`Instance::start_service`] with more environment for this one process.
    pub fn start_service_with(&self, service: &str, extra: &[&str], extra_env: &[(&str, &str)]) -> Server {
        let token = (service == "query-api").then(|| self.api_token());
        let mut command = self.command([service, "--listen", "127.0.0.1:0"]);
        command.args(extra).envs(extra_env.iter().copied()).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let server = Server::spawn(command);
        match token {
            Some(token) => server.with_token(token),
            None => server,
        }
    }

    /// The digest of a project's derived state, read from this instance's database while no
    /// server runs (or alongside one: reads never block the server).
    pub async fn derived_digest(&self, slug: &str) -> String {
        match &self.database_url {
            Some(url) => digest_of(&PostgresState::connect(url).await.expect("opening the PostgreSQL state"), slug).await,
            None => digest_of(&SqliteState::open(&self.state_db().display().to_string()).await.expect("opening state.db"), slug).await,
        }
    }
}

impl Instance {
    /// Every event payload the state database holds for the project, by event key
    /// `(order, changed at µs, status)`.
    #[allow(dead_code)] // not every test binary uses it
    pub async fn stored_payloads(&self, slug: &str) -> std::collections::BTreeMap<(i64, i64, i64), String> {
        match &self.database_url {
            Some(url) => payloads_of(&PostgresState::connect(url).await.expect("opening the PostgreSQL state"), slug).await,
            None => payloads_of(&SqliteState::open(&self.state_db().display().to_string()).await.expect("opening state.db"), slug).await,
        }
    }
}

async fn payloads_of<S: StateStore>(state: &S, slug: &str) -> std::collections::BTreeMap<(i64, i64, i64), String> {
    let project = state.project_by_slug(slug).await.expect("reading projects").unwrap_or_else(|| panic!("no project `{slug}`"));
    let (from, to) = (ksa_schemas::Timestamp::from_micros(0), ksa_schemas::Timestamp::from_micros(i64::MAX / 2));
    let (mut all, mut after) = (std::collections::BTreeMap::new(), (0, from, 0));
    loop {
        let page = state.payloads(project.id, from, to, after, 1000).await.expect("reading payloads");
        let Some(last) = page.last() else { return all };
        after = (last.order_id, last.status_changed_at, last.status_id);
        for p in page {
            all.insert((p.order_id, p.status_changed_at.as_micros(), p.status_id), p.payload);
        }
    }
}

async fn digest_of<S: StateStore>(state: &S, slug: &str) -> String {
    let project = state.project_by_slug(slug).await.expect("reading projects").unwrap_or_else(|| panic!("no project `{slug}`"));
    state.derived_digest(project.id).await.expect("computing the derived digest")
}

/// A running `keycrm-analytics run`. Dropping it kills the process.
pub struct Server {
    child: Option<Child>,
    pub base_url: String,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    fn spawn(mut command: Command) -> Server {
        let mut child = command.spawn().expect("starting keycrm-analytics run");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (listening, address) = mpsc::channel();
        let pipe = child.stderr.take().expect("stderr is piped");
        let log = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.split(LISTENING).nth(1) {
                    let _ = listening.send(format!("http://{}", addr.trim()));
                }
                let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        match address.recv_timeout(START_OR_STOP_DEADLINE) {
            Ok(base_url) => Server { child: Some(child), base_url, stderr },
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                let said = stderr.lock().map(|s| s.clone()).unwrap_or_default();
                panic!("`run` did not say `{LISTENING}…` (exit: {status:?}); it said:\n{said}");
            }
        }
    }

    /// Sends `token` on every `/api` request the test client makes to this server.
    fn with_token(self, token: String) -> Server {
        super::http::remember_token(&self.base_url, &token);
        self
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether the process has exited (by itself: a test that killed it reaps it with
    /// [`Server::kill`]).
    pub fn has_exited(&mut self) -> bool {
        self.child.as_mut().is_none_or(|c| c.try_wait().is_ok_and(|s| s.is_some()))
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// `http://ADDR/webhooks/keycrm/SLUG?token=SECRET`, as `project add` prints it.
    pub fn webhook_url(&self, project: &Project) -> String {
        format!("{}/webhooks/keycrm/{}?token={}", self.base_url, project.slug, project.secret)
    }

    /// SIGTERM, as a service manager stops it; returns how it exited.
    pub fn stop(mut self) -> ExitStatus {
        self.signal("-TERM");
        self.wait()
    }

    /// SIGKILL (unless [`sigkill`] already killed it): the process dies wherever it is, as in
    /// a crash or an OOM kill.
    pub fn kill(mut self) {
        let exited = self.child.as_mut().is_some_and(|c| c.try_wait().is_ok_and(|s| s.is_some()));
        if !exited {
            self.signal("-KILL");
        }
        self.wait();
    }

    fn signal(&self, signal: &str) {
        send_signal(self.pid(), signal);
    }

    fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the server runs");
        let deadline = Instant::now() + START_OR_STOP_DEADLINE;
        loop {
            if let Some(status) = child.try_wait().expect("waiting for the server") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server did not exit within {START_OR_STOP_DEADLINE:?}; it said:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// SIGKILL to the server with this pid, from anywhere (a posting task, say); reap it later
/// with [`Server::kill`].
pub fn sigkill(pid: u32) {
    send_signal(pid, "-KILL");
}

fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill").args([signal, &pid.to_string()]).status().expect("running kill");
    assert!(status.success(), "kill {signal} {pid} failed");
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
