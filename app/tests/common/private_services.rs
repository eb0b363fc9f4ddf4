//! Servers that one test owns, started by the project's own `scripts/services` with a services
//! folder (`KSA_SERVICES_DIR`) of their own, so that the test may stop and restart them without
//! touching the servers other tests share. Whatever was started is stopped when the value is
//! dropped, even by a panic.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use tempfile::TempDir;

/// Variables that would make `scripts/services` reuse a shared server instead of starting one.
const SHARED_SERVERS: [&str; 3] = ["DATABASE_URL", "KSA_KAFKA_BROKERS", "KSA_CLICKHOUSE_URL"];

pub struct PrivateServices {
    dir: TempDir,
    env: Vec<(String, String)>,
    /// Services brought up and not brought down since.
    running: Mutex<BTreeSet<String>>,
}

impl PrivateServices {
    /// A fresh services folder, and `env` (`KSA_PG_PORT`, `KSA_KAFKA_PORT`, …) for every call.
    pub fn new(env: &[(&str, &str)]) -> PrivateServices {
        let dir = tempfile::tempdir().expect("creating a services folder");
        // A cluster started as root runs as the postgres user, which must reach its data dir in
        // here; otherwise the script would fall back to the shared /var/lib/ksa-services.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("opening the services folder");
        let env = env.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect();
        PrivateServices { dir, env, running: Mutex::new(BTreeSet::new()) }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `scripts/services up SERVICE`: starts it (or finds it running) and returns its exports,
    /// `(NAME, value)`.
    pub fn up(&self, service: &str) -> Vec<(String, String)> {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).insert(service.to_owned());
        let stdout = self.run(&["up", service]).unwrap_or_else(|said| panic!("scripts/services up {service} failed:\n{said}"));
        stdout
            .lines()
            .filter_map(|line| line.strip_prefix("export "))
            .filter_map(|line| line.split_once('='))
            .map(|(name, value)| {
                assert!(!value.contains(['\'', '"', '\\', '$']), "{name}={value} is quoted; read it with a shell");
                (name.to_owned(), value.to_owned())
            })
            .collect()
    }

    /// `up`, and the value of one export.
    pub fn up_exporting(&self, service: &str, name: &str) -> String {
        let exports = self.up(service);
        let found = exports.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        found.unwrap_or_else(|| panic!("scripts/services up {service} exported no {name}: {exports:?}"))
    }

    /// `scripts/services down SERVICE`: stops what `up` started here (its data stays).
    pub fn down(&self, service: &str) {
        self.run(&["down", service]).unwrap_or_else(|said| panic!("scripts/services down {service} failed:\n{said}"));
        self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(service);
    }

    /// Runs the script with this folder and environment; its stdout, or everything it said.
    fn run(&self, args: &[&str]) -> Result<String, String> {
        let script = repository().join("scripts").join("services");
        // A server the script starts must not keep a descriptor this process inherited, such as
        // the lock of `flock LOCK cargo test`: only stdin, stdout and stderr go through.
        let mut command = Command::new("bash");
        command
            .arg("-c")
            .arg(r#"for fd in /proc/$$/fd/*; do fd=${fd##*/}; if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi; done; exec "$0" "$@""#)
            .arg(&script)
            .args(args)
            .env("KSA_SERVICES_DIR", self.dir.path())
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        for name in SHARED_SERVERS {
            command.env_remove(name);
        }
        let output = command.output().unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            Ok(stdout)
        } else {
            Err(format!("{}\n{stdout}{}", output.status, String::from_utf8_lossy(&output.stderr)))
        }
    }
}

impl Drop for PrivateServices {
    fn drop(&mut self) {
        let running = std::mem::take(&mut *self.running.lock().unwrap_or_else(|e| e.into_inner()));
        for service in running {
            if let Err(said) = self.run(&["down", &service]) {
                eprintln!("scripts/services down {service} failed:\n{said}");
            }
        }
    }
}

/// `N` distinct TCP ports on 127.0.0.1 that nothing listened on a moment ago.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: [TcpListener; N] = std::array::from_fn(|_| TcpListener::bind("127.0.0.1:0").expect("binding a port"));
    listeners.map(|listener| listener.local_addr().expect("the port's address").port())
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}
