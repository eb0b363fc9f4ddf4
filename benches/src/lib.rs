//! Benchmarks of the domain core and the pipeline; the traffic they replay comes from the
//! binary's own generator.

pub use ksa_app::traffic;

/// The server process a benchmark runs and measures.
pub mod process {
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};

    /// Resident memory of `pid` in MiB (0 when it cannot be read).
    pub fn rss_mib(pid: u32) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kib: f64 =
            status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0.0);
        kib / 1024.0
    }

    /// CPU seconds, user and system, `pid` has used.
    pub fn cpu_seconds(pid: u32) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat.rsplit_once(") ").map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
        let ticks = |i: usize| fields.get(i).and_then(|t| t.parse::<f64>().ok()).unwrap_or(0.0);
        (ticks(11) + ticks(12)) / 100.0
    }

    /// `keycrm-analytics … run --listen 127.0.0.1:0` as a process of its own; SIGTERM when
    /// dropped.
    pub struct Server {
        child: Child,
        pub base_url: String,
    }

    impl Server {
        /// Starts `command` (a `run`) and waits until it says where it listens; its log is
        /// read and dropped from then on.
        pub fn start(mut command: Command) -> Result<Server, String> {
            let mut child = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().map_err(|e| e.to_string())?;
            let stderr = child.stderr.take().ok_or("no stderr")?;
            let mut lines = BufReader::new(stderr).lines();
            let base_url = loop {
                let line = lines.next().ok_or("the server exited before listening")?.map_err(|e| e.to_string())?;
                if let Some((_, rest)) = line.split_once(" listening on ") {
                    break rest.split_whitespace().next().unwrap_or_default().trim_end_matches('/').to_owned();
                }
            };
            std::thread::spawn(move || for _ in lines.by_ref() {});
            Ok(Server { child, base_url })
        }

        pub fn pid(&self) -> u32 {
            self.child.id()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
            let _ = self.child.wait();
        }
    }
}
