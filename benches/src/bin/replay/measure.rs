//! What the replay measures besides wall time: latency percentiles, peak memory, and where the
//! CPU went (per thread group of this process, and the whole machine).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

/// Microseconds since the Unix epoch: the clock `received_at` is stamped with.
pub fn wall_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// Percentiles of a set of latencies, in microseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Latencies {
    pub count: usize,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl Latencies {
    pub fn of(mut micros: Vec<u64>) -> Latencies {
        if micros.is_empty() {
            return Latencies::default();
        }
        micros.sort_unstable();
        let at = |p: f64| micros[((micros.len() as f64 * p).ceil() as usize).clamp(1, micros.len()) - 1];
        Latencies { count: micros.len(), p50: at(0.50), p90: at(0.90), p99: at(0.99), max: micros[micros.len() - 1] }
    }
}

impl fmt::Display for Latencies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |us: u64| us as f64 / 1000.0;
        write!(
            f,
            "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max),
            self.count
        )
    }
}

/// Resets the kernel's peak-RSS mark of this process, so the next [`peak_rss_kib`] covers one
/// phase only. False when the kernel refused (then the peak counts from process start).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// `VmHWM`: the peak resident set size, in KiB.
pub fn peak_rss_kib() -> u64 {
    status_field("VmHWM:")
}

/// `VmRSS`: the resident set size now, in KiB.
pub fn rss_kib() -> u64 {
    status_field("VmRSS:")
}

fn status_field(name: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())))
        .unwrap_or(0)
}

/// Clock ticks per second of `/proc` CPU times (`USER_HZ`, 100 on every Linux we run on).
const TICKS: f64 = 100.0;

/// CPU time so far: per thread group of this process (threads named alike), the process as a
/// whole, and the machine.
#[derive(Clone, Debug)]
pub struct CpuSample {
    at: Instant,
    groups: BTreeMap<String, u64>,
    process: u64,
    machine_busy: u64,
    machine_total: u64,
}

impl CpuSample {
    pub fn now() -> CpuSample {
        let mut groups = BTreeMap::new();
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for task in tasks.flatten() {
                if let Ok(stat) = std::fs::read_to_string(task.path().join("stat"))
                    && let Some((comm, ticks)) = comm_and_ticks(&stat)
                {
                    *groups.entry(thread_group(&comm)).or_default() += ticks;
                }
            }
        }
        let process = std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| comm_and_ticks(&s)).map_or(0, |(_, t)| t);
        let (machine_busy, machine_total) = machine_ticks();
        CpuSample { at: Instant::now(), groups, process, machine_busy, machine_total }
    }

    /// CPU used since `earlier`.
    pub fn since(&self, earlier: &CpuSample) -> CpuUse {
        let wall = self.at.duration_since(earlier.at);
        let groups = self
            .groups
            .iter()
            .map(|(name, ticks)| (name.clone(), ticks.saturating_sub(earlier.groups.get(name).copied().unwrap_or(0)) as f64 / TICKS))
            .filter(|(_, secs)| *secs > 0.0)
            .collect();
        let busy = self.machine_busy.saturating_sub(earlier.machine_busy) as f64;
        let total = self.machine_total.saturating_sub(earlier.machine_total) as f64;
        CpuUse {
            wall,
            groups,
            process_secs: self.process.saturating_sub(earlier.process) as f64 / TICKS,
            machine_busy_share: if total > 0.0 { busy / total } else { 0.0 },
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// CPU used during one phase.
#[derive(Clone, Debug)]
pub struct CpuUse {
    pub wall: Duration,
    /// CPU seconds per thread group (threads that ended during the phase are missing here but
    /// counted in `process_secs`).
    pub groups: Vec<(String, f64)>,
    pub process_secs: f64,
    /// Share of all cores of the machine busy (any process), 0–1.
    pub machine_busy_share: f64,
    pub cores: usize,
}

impl fmt::Display for CpuUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wall = self.wall.as_secs_f64();
        write!(f, "this process {:.1} CPU-s in {:.1} s ({:.2} cores: ", self.process_secs, wall, self.process_secs / wall.max(1e-9))?;
        for (i, (name, secs)) in self.groups.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{name} {secs:.1}")?;
        }
        let others = (self.machine_busy_share * self.cores as f64 - self.process_secs / wall.max(1e-9)).max(0.0);
        write!(
            f,
            "); machine {:.0} % busy of {} cores, {others:.2} cores used by other processes",
            self.machine_busy_share * 100.0,
            self.cores
        )
    }
}

/// CPU time so far of every process on the machine, by name: the processes given by pid under
/// the names given, every other one under its command name (`postgres`, `tansu`, …).
#[derive(Clone, Debug)]
pub struct MachineSample {
    at: Instant,
    by_name: BTreeMap<String, u64>,
    machine_busy: u64,
    machine_total: u64,
}

impl MachineSample {
    pub fn now(named: &[(String, u32)]) -> MachineSample {
        let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
        if let Ok(processes) = std::fs::read_dir("/proc") {
            for process in processes.flatten() {
                let Some(pid) = process.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
                let Some((comm, ticks)) = std::fs::read_to_string(process.path().join("stat")).ok().and_then(|s| comm_and_ticks(&s)) else {
                    continue;
                };
                let name = named.iter().find(|(_, p)| *p == pid).map_or(comm, |(name, _)| name.clone());
                *by_name.entry(name).or_default() += ticks;
            }
        }
        let (machine_busy, machine_total) = machine_ticks();
        MachineSample { at: Instant::now(), by_name, machine_busy, machine_total }
    }

    /// CPU used since `earlier` (by processes alive at both samples, or started since).
    pub fn since(&self, earlier: &MachineSample) -> MachineCpu {
        let mut groups: Vec<(String, f64)> = self
            .by_name
            .iter()
            .map(|(name, ticks)| (name.clone(), ticks.saturating_sub(earlier.by_name.get(name).copied().unwrap_or(0)) as f64 / TICKS))
            .filter(|(_, secs)| *secs > 0.0)
            .collect();
        groups.sort_by(|a, b| b.1.total_cmp(&a.1));
        let busy = self.machine_busy.saturating_sub(earlier.machine_busy) as f64;
        let total = self.machine_total.saturating_sub(earlier.machine_total) as f64;
        MachineCpu {
            wall: self.at.duration_since(earlier.at),
            groups,
            machine_busy_share: if total > 0.0 { busy / total } else { 0.0 },
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// CPU used on the whole machine during one phase, by process name.
#[derive(Clone, Debug)]
pub struct MachineCpu {
    pub wall: Duration,
    /// CPU seconds per process name, most first.
    pub groups: Vec<(String, f64)>,
    pub machine_busy_share: f64,
    pub cores: usize,
}

impl fmt::Display for MachineCpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wall = self.wall.as_secs_f64().max(1e-9);
        write!(f, "machine {:.0} % busy of {} cores over {:.1} s; cores used: ", self.machine_busy_share * 100.0, self.cores, wall)?;
        const SHOWN: usize = 7;
        for (i, (name, secs)) in self.groups.iter().take(SHOWN).enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{name} {:.2}", secs / wall)?;
        }
        let rest: f64 = self.groups.iter().skip(SHOWN).map(|(_, secs)| secs).sum();
        write!(f, ", all others {:.2}", rest / wall)
    }
}

/// `comm` and `utime + stime` from a `/proc/.../stat` line.
fn comm_and_ticks(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    // Fields after the comm: state is field 3; utime and stime are fields 14 and 15.
    let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// Threads named alike form one group: SQLite's per-connection workers, each runtime's workers,
/// and the main thread (which runs the driving future of `block_on`).
fn thread_group(comm: &str) -> String {
    if comm.starts_with("sqlx-sqlite") {
        "sqlite-threads".into()
    } else if comm == "replay" {
        "main".into()
    } else {
        comm.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-').to_string()
    }
}

/// `(busy, total)` ticks of all cores from `/proc/stat`.
fn machine_ticks() -> (u64, u64) {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else { return (0, 0) };
    let Some(line) = stat.lines().next() else { return (0, 0) };
    let values: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal guest guest_nice; guests are inside user.
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let l = Latencies::of((1..=100).collect());
        assert_eq!((l.p50, l.p90, l.p99, l.max, l.count), (50, 90, 99, 100, 100));
        assert_eq!(Latencies::of(vec![7]).p99, 7);
    }

    #[test]
    fn stat_lines_give_comm_and_cpu_ticks() {
        let line = "42 (sqlx-sqlite-wor) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(comm_and_ticks(line), Some(("sqlx-sqlite-wor".into(), 300)));
        assert_eq!(thread_group("server-7"), "server");
    }
}
