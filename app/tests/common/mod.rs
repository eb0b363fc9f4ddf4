//! Running the real `keycrm-analytics` binary as a user would: in an empty working folder, with
//! no `KSA_*` variables inherited from the caller, so only what a test passes reaches it.

// Each test binary uses a part of this module.
#![allow(dead_code)]

pub mod clickhouse;
pub mod http;
pub mod keycrm;
pub mod postgres;
pub mod private_services;
pub mod proxy;
pub mod server;
pub mod sse;
pub mod state_file;
pub mod webhook_log;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;

/// The instant the examples are measured at: after every event in them.
pub const EXAMPLES_NOW: &str = "2026-04-01T00:00:00Z";

/// What one run of the binary did.
#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics with everything the binary said unless it exited 0.
    pub fn assert_success(&self) -> &Self {
        assert!(self.succeeded(), "expected exit 0, got {self:#?}");
        self
    }

    /// Panics unless the binary failed and its standard error mentions every one of `needles`.
    pub fn assert_failure_mentioning(&self, needles: &[&str]) -> &Self {
        assert!(!self.succeeded() && self.code.is_some(), "expected a non-zero exit, got {self:#?}");
        for needle in needles {
            assert!(self.stderr.contains(needle), "standard error does not mention {needle:?}:\n{}", self.stderr);
        }
        self
    }

    /// Standard output as JSON Lines.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("output line is not JSON ({e}): {line}")))
            .collect()
    }
}

/// A temporary working folder to run the binary in.
pub struct Workspace {
    pub dir: TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        Workspace { dir: tempfile::tempdir().expect("creating a temporary folder") }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `text` to `name` in the folder and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    /// The binary, to be run in this folder with a clean `KSA_*` environment.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(env!("CARGO_BIN_EXE_keycrm-analytics"));
        command.current_dir(self.dir.path()).args(args);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("KSA_") {
                command.env_remove(name);
            }
        }
        // Servers run side by side in the tests: each serves /metrics on a port of its own.
        command.env("KSA__METRICS__LISTEN", "127.0.0.1:0");
        command
    }

    pub fn run<I, S>(&self, args: I) -> Outcome
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(&mut self.command(args))
    }
}

pub fn run(command: &mut Command) -> Outcome {
    let output = command.output().expect("starting keycrm-analytics");
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).expect("standard output is UTF-8"),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `command` with `input` on its standard input.
pub fn run_with_stdin(command: &mut Command, input: &str) -> Outcome {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("starting keycrm-analytics");
    child.stdin.take().expect("stdin is piped").write_all(input.as_bytes()).expect("writing standard input");
    let output = child.wait_with_output().expect("waiting for keycrm-analytics");
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).expect("standard output is UTF-8"),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A file of the demo in `examples/`.
pub fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("examples").join(name)
}

pub fn example_text(name: &str) -> String {
    let path = example(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// `timeline` over `events` with the demo's settings and orders, measured at `now`.
pub fn timeline_args(events: &Path, now: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "timeline".to_string(),
        "--events".into(),
        events.display().to_string(),
        "--settings".into(),
        example("settings.json").display().to_string(),
        "--orders".into(),
        example("orders.jsonl").display().to_string(),
        "--now".into(),
        now.into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// A file of the KeyCRM fixtures in `fixtures/keycrm/`.
pub fn keycrm_fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("fixtures").join("keycrm").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// KeyCRM's `order.change_order_status` webhook (the fixture) for this order, status and time.
pub fn status_change(order_id: i64, status_id: i64, group_id: u16, changed_at: &str) -> String {
    let mut webhook: Value = serde_json::from_str(&keycrm_fixture("webhook_status_change.json")).expect("the fixture is JSON");
    let context = &mut webhook["context"];
    context["id"] = order_id.into();
    context["status_id"] = status_id.into();
    context["status_group_id"] = group_id.into();
    context["status_changed_at"] = changed_at.into();
    context["updated_at"] = changed_at.into();
    webhook.to_string()
}
