#!/usr/bin/env python3
"""The burst benchmark: `keycrm-analytics run` as a new user starts it (embedded defaults, a fresh
data folder, one project), a burst of valid webhooks posted at it for a fixed time, and the
processor's progress sampled meanwhile.

    benches/burst/run.py --app target/release/keycrm-analytics [--load wrk|replay] [--connections 64]
                         [--seconds 60] [--runs 3] [--database-url postgres://…/test] [--sample-ms 100]
                         [--events-per-order N]
                         [--perf FILE] [--load-nice N]

Load: `wrk -t2 -cN -dS --latency -s benches/burst/webhooks.lua` (Debian's `wrk`), or the replay
tool's own HTTP/1.1 client (`--load replay`: `replay --mode http --url …`, the generated log of
150,000 orders with its duplicates and late deliveries, cut off after `--seconds`).

Reported per run: webhooks/s and latency percentiles of the answers (from the load generator;
wrk's are corrected for coordinated omission: before it prints them, every answer slower than
twice the mean interval of a connection stands in for the requests a client sending at that
mean rate would have sent meanwhile, so a stall counts several times),
answers other than 2xx, received → derived (from samples of where the bus and the processor
stand: a record counts from the first sample that shows it appended to the first that shows it
committed by the processor, so the resolution is the sampling period), how long the backlog took
to drain once the load stopped, the server's CPU (in all, and per thread name: Tokio's workers,
SQLite's connection threads, blocking tasks, the Parquet compactor; read at every sample, so a
thread that ends during the load counts up to its last reading, and threads that lived only
between two samples are shown together), its peak RSS (VmHWM), and the answer times the server
measured itself (its `ksa_webhook_duration_seconds` histogram on `/metrics`, from a request's
headers read to its answer; the time between wrk's own system calls agrees with it, and what
wrk's percentiles hold beyond it is mostly wrk's correction above). `--perf FILE` also samples the
server with `perf record -g` while the load runs (`perf report -i FILE` afterwards).
`--load-nice N` runs the load generator at nice value N (negative needs root): with the
generator on the same cores, how much of its latency is its own wait for a core.

`--database-url` (a PostgreSQL server) runs `run` with `database.url` on a new database there
(dropped afterwards), outbox and state both in PostgreSQL; positions are read with `psql`.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TOPIC = "status-events"
GROUP = "processor"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "keycrm-analytics"))
    parser.add_argument("--replay", default=None, help="the replay binary (default: beside --app)")
    parser.add_argument("--load", choices=["wrk", "replay"], default="wrk")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--events-per-order", type=int, default=0, help="wrk: new orders after this many status changes each (default: the same orders for the whole burst)")
    parser.add_argument("--sample-ms", type=int, default=100)
    parser.add_argument("--load-nice", type=int, default=0, metavar="N", help="run the load generator at this nice value (negative needs root): a diagnosis of how much of its latency is its own wait for a core")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server (e.g. KSA__PROCESSOR__LINGER_MS=20)")
    parser.add_argument("--perf", default=None, metavar="FILE", help="record the server with `perf record` during the load into FILE (Debian's linux-perf)")
    args = parser.parse_args()
    if args.load == "wrk" and shutil.which("wrk") is None:
        sys.exit("burst: wrk is not installed (apt-get install wrk), or use --load replay")
    results = []
    for run_no in range(1, args.runs + 1):
        print(f"== run {run_no} of {args.runs}: {args.load}, {args.connections} connections, {args.seconds} s"
              + (f", the load at nice {args.load_nice}" if args.load_nice else ""), flush=True)
        result = one_run(args)
        print(result.report(), flush=True)
        results.append(result)
    if len(results) > 1:
        med = lambda f: statistics.median(f(r) for r in results)
        print(
            f"== median of {len(results)}: {med(lambda r: r.rate):,.0f} webhooks/s, p99 {med(lambda r: r.p99_ms):.1f} ms, "
            f"received → derived p99 {med(lambda r: r.derived[2]):.2f} s, drained {med(lambda r: r.drain):.2f} s after the load, "
            f"peak RSS {med(lambda r: r.peak_rss_mib):,.0f} MiB"
        )


class Result:
    def report(self):
        p50, p90, p99, worst = self.derived
        return (
            f"load: {self.answered:,} answered 2xx in {self.elapsed:.1f} s = {self.rate:,.0f} webhooks/s; "
            f"latency p50 {self.p50_ms:.2f} ms, p99 {self.p99_ms:.2f} ms; {self.non_2xx} not 2xx, {self.errors} socket errors\n"
            f"processor: {self.committed:,} of {self.appended:,} records committed; received → derived p50 {p50:.2f} s, "
            f"p90 {p90:.2f} s, p99 {p99:.2f} s, max {worst:.2f} s; backlog at the load's end {self.backlog_at_end:,}, "
            f"drained {self.drain:.2f} s after it\n"
            f"server: {self.cpu:.1f} CPU-s ({self.cpu / self.elapsed:.2f} cores during the load), peak RSS {self.peak_rss_mib:,.0f} MiB, "
            f"RSS at the end {self.end_rss_mib:,.0f} MiB; machine {self.machine_busy:.0%} busy\n"
            f"peak RSS so far at each fifth of the load: " + " / ".join(f"{m:,.0f}" for m in self.peak_by_fifth) + " MiB\n"
            f"server CPU by thread: " + ", ".join(f"{name} {seconds / self.elapsed:.2f}" for name, seconds in self.threads) + " (cores)\n"
            f"answer time inside the server (from its headers read to the answer): {self.inside}"
        )


def one_run(args):
    data = tempfile.mkdtemp(prefix="ksa-burst-")
    env = dict(os.environ)
    env.pop("KSA_CONFIG", None)
    for pair in args.env:
        key, _, value = pair.partition("=")
        env[key] = value
    # `/metrics` on a port of its own: the server's own answer times are read there.
    env["KSA__METRICS__LISTEN"] = f"127.0.0.1:{free_port()}"
    database = None
    if args.database_url:
        database = f"ksa_burst_{os.getpid()}"
        psql(args.database_url, f'DROP DATABASE IF EXISTS "{database}"')
        psql(args.database_url, f'CREATE DATABASE "{database}"')
        env["KSA__DATABASE__URL"] = with_database(args.database_url, database)
    app = lambda *extra: [args.app, "--data-dir", data, *extra]
    try:
        added = subprocess.run(app("project", "add", "--slug", "burst", "--name", "Burst"), env=env, capture_output=True, text=True, check=True)
        token = re.search(r"\?token=(\S+)", added.stdout + added.stderr)
        if not token:
            raise SystemExit(f"burst: `project add` printed no webhook secret:\n{added.stdout}{added.stderr}")
        server = subprocess.Popen(app("run", "--listen", "127.0.0.1:0"), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        base = wait_listening(server)
        url = f"{base}/webhooks/keycrm/burst?token={token.group(1)}"
        positions = PgPositions(env["KSA__DATABASE__URL"]) if database else SqlitePositions(data)
        return measure(args, server, url, positions, "http://" + env["KSA__METRICS__LISTEN"] + "/metrics")
    finally:
        if "server" in locals() and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
        if database:
            psql(args.database_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        shutil.rmtree(data, ignore_errors=True)


def measure(args, server, url, positions, metrics):
    samples = []  # (t, appended, committed, the server's VmHWM in MiB)
    stop = threading.Event()
    started = time.monotonic()

    clock = ThreadClock(server.pid)

    def sample():
        while not stop.is_set():
            clock.read()
            try:
                appended, committed = positions.read()
                samples.append((time.monotonic() - started, appended, committed, status_kib(server.pid, "VmHWM") / 1024))
            except Exception as error:  # the files may not exist for the first few samples
                if time.monotonic() - started > 10:
                    print(f"burst: cannot read the positions: {error}", file=sys.stderr)
            time.sleep(args.sample_ms / 1000)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cpu_before, machine_before = cpu_seconds(server.pid), machine_ticks()
    perf = None
    if args.perf:
        perf = subprocess.Popen(["perf", "record", "-F", "499", "-g", "-p", str(server.pid), "-o", args.perf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    answers_before = answer_buckets(metrics)
    load = run_load(args, url)
    load_end = time.monotonic() - started
    inside = answer_time(answers_before, answer_buckets(metrics))
    cpu = cpu_seconds(server.pid) - cpu_before
    clock.close()
    if perf:
        perf.send_signal(signal.SIGINT)
        perf.wait(60)
    machine_after = machine_ticks()
    # Wait for the processor to commit everything appended (at most 5 minutes).
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if samples and samples[-1][0] > load_end and samples[-1][2] >= samples[-1][1]:
            break
        time.sleep(args.sample_ms / 1000)
    stop.set()
    sampler.join()
    result = Result()
    result.__dict__.update(load)
    result.cpu = cpu
    result.inside = inside
    result.threads = sorted(clock.by_name().items(), key=lambda t: -t[1])[:8]
    # Threads that lived only between two samples (most of the compactor's, which starts and
    # ends with each merge) are in the process's total only.
    result.threads.append(("threads that ended between samples", max(0.0, cpu - sum(seconds for _, seconds in clock.by_name().items()))))
    result.machine_busy = 1 - (machine_after[1] - machine_before[1]) / max(1, machine_after[0] - machine_before[0])
    result.peak_rss_mib = status_kib(server.pid, "VmHWM") / 1024
    result.end_rss_mib = status_kib(server.pid, "VmRSS") / 1024
    # The peak so far at the end of each fifth of the load: flat once the burst's working set is
    # reached, or climbing with its length.
    result.peak_by_fifth = [max((s[3] for s in samples if s[0] <= load_end * k / 5), default=0.0) for k in range(1, 6)]
    last = samples[-1]
    result.appended, result.committed = last[1], last[2]
    at_end = [s for s in samples if s[0] <= load_end]
    result.backlog_at_end = (at_end[-1][1] - at_end[-1][2]) if at_end else 0
    caught = next((s[0] for s in samples if s[0] >= load_end and s[2] >= s[1]), None)
    result.drain = (caught - load_end) if caught is not None else float("inf")
    result.derived = latencies(samples)
    return result


def run_load(args, url):
    if args.load == "wrk":
        command = ["wrk", "-t2", f"-c{args.connections}", f"-d{args.seconds}s", "--latency", "--timeout", "10s", "-s", os.path.join(HERE, "webhooks.lua"), url]
        load_env = dict(os.environ, KSA_BURST_EVENTS_PER_ORDER=str(args.events_per_order))
        out = subprocess.run(niced(args, command), capture_output=True, text=True, check=True, env=load_env).stdout
        took = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)\b", out)
        if not took:
            raise SystemExit(f"burst: cannot read wrk's report:\n{out}")
        requests = int(took.group(1))
        elapsed = float(took.group(2)) * {"s": 1, "ms": 0.001, "m": 60}[took.group(3)]
        non_2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
        errors = sum(int(x) for x in m.groups()) if (m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)) else 0
        percentile = lambda p: duration_ms(re.search(rf"^\s+{p}%\s+(\S+)", out, re.M).group(1))
        return dict(answered=requests - non_2xx, elapsed=elapsed, rate=(requests - non_2xx) / elapsed, p50_ms=percentile(50), p99_ms=percentile(99), non_2xx=non_2xx, errors=errors)
    replay = args.replay or os.path.join(os.path.dirname(args.app), "replay")
    command = [replay, "--mode", "http", "--url", url, "--concurrency", str(args.connections), "--seconds", str(args.seconds)]
    out = subprocess.run(niced(args, command), capture_output=True, text=True, check=True).stdout
    answered = re.search(r"(\d+) webhooks answered 2xx .* in ([\d.]+) s = (\d+) webhooks/s; (\d+) requests, (\d+) answered 503 \(retried\), (\d+) failed", out)
    p = re.search(r"request latency \(2xx\): p50 ([\d.]+) ms, p90 [\d.]+ ms, p99 ([\d.]+) ms", out)
    if not answered or not p:
        raise SystemExit(f"burst: cannot read the replay's report:\n{out}")
    return dict(answered=int(answered.group(1)), elapsed=float(answered.group(2)), rate=float(answered.group(3)), p50_ms=float(p.group(1)), p99_ms=float(p.group(2)), non_2xx=int(answered.group(5)) + int(answered.group(6)), errors=0)


def niced(args, command):
    return ["nice", "-n", str(args.load_nice), *command] if args.load_nice else command


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answer_buckets(metrics):
    """The server's `ksa_webhook_duration_seconds` histogram: answers at or under each bound
    (seconds), summed over its labels; empty when `/metrics` cannot be read."""
    try:
        with urllib.request.urlopen(metrics, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    buckets = {}
    for line in text.splitlines():
        if line.startswith("ksa_webhook_duration_seconds_bucket{"):
            bound = re.search(r'le="([^"]+)"', line).group(1)
            buckets[float(bound)] = buckets.get(float(bound), 0) + float(line.rsplit(" ", 1)[1])
    return buckets


def answer_time(before, after):
    """p50 and p99 of the answers between two readings, as the bounds of the buckets holding
    them, and the share over 50 ms."""
    counts = sorted((bound, after[bound] - before.get(bound, 0)) for bound in after)
    total = counts[-1][1] if counts else 0
    if total <= 0:
        return "not read (is /metrics on?)"
    at = lambda p: next(bound for bound, count in counts if count >= total * p)
    over_50 = 1 - next(count for bound, count in counts if bound >= 0.05) / total
    ms = lambda seconds: "over the last bucket" if seconds == float("inf") else f"≤ {seconds * 1000:g} ms"
    return f"p50 {ms(at(0.5))}, p99 {ms(at(0.99))}, {over_50:.2%} over 50 ms ({total:,.0f} answers)"


def latencies(samples):
    """Per record, from the first sample showing it appended to the first showing it committed."""
    def segments(index):
        low, out = samples[0][index], []
        for s in samples:
            if s[index] > low:
                out.append((low, s[index], s[0]))
                low = s[index]
        return out

    made, done = segments(1), segments(2)
    weighted, i, j = [], 0, 0
    while i < len(made) and j < len(done):
        lo, hi = max(made[i][0], done[j][0]), min(made[i][1], done[j][1])
        if hi > lo:
            weighted.append((max(0.0, done[j][2] - made[i][2]), hi - lo))
        if made[i][1] <= done[j][1]:
            i += 1
        else:
            j += 1
    weighted.sort()
    total = sum(w[1] for w in weighted)
    if total == 0:
        return (0.0, 0.0, 0.0, 0.0)

    def at(p):
        rank, seen = max(1, -(-total * p // 100)), 0
        for latency, count in weighted:
            seen += count
            if seen >= rank:
                return latency
        return weighted[-1][0]

    return (at(50), at(90), at(99), weighted[-1][0])


class SqlitePositions:
    def __init__(self, data):
        self.bus = os.path.join(data, "state-bus.db")
        self.state = os.path.join(data, "state.db")
        self.connections = None

    def read(self):
        if self.connections is None:
            if not (os.path.exists(self.bus) and os.path.exists(self.state)):
                raise RuntimeError("the database files are not there yet")
            self.connections = [sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) for path in (self.bus, self.state)]
        bus, state = self.connections
        appended = bus.execute("SELECT COALESCE(SUM(next_offset), 0) FROM bus_heads WHERE topic = ?", (TOPIC,)).fetchone()[0]
        committed = state.execute(
            "SELECT COALESCE(SUM(next_offset - 1), 0) FROM consumer_offsets WHERE consumer_group = ? AND topic = ?", (GROUP, TOPIC)
        ).fetchone()[0]
        return appended, committed


class PgPositions:
    def __init__(self, url):
        self.url = url

    def read(self):
        out = psql(
            self.url,
            f"SELECT (SELECT COALESCE(SUM(next_offset), 0) FROM bus_heads WHERE topic = '{TOPIC}'), "
            f"(SELECT COALESCE(SUM(next_offset - 1), 0) FROM consumer_offsets WHERE consumer_group = '{GROUP}' AND topic = '{TOPIC}')",
        )
        appended, committed = out.strip().split("|")
        return int(appended), int(committed)


def psql(url, sql):
    return subprocess.run(["psql", "-Atq", "-v", "ON_ERROR_STOP=1", url, "-c", sql], capture_output=True, text=True, check=True).stdout


def with_database(url, name):
    head, _, query = url.partition("?")
    head = head.rsplit("/", 1)[0] if head.count("/") > 2 else head
    return f"{head}/{name}" + (f"?{query}" if query else "")


def wait_listening(server):
    deadline = time.monotonic() + 60
    log = []
    while time.monotonic() < deadline:
        line = server.stderr.readline()
        if not line:
            raise SystemExit("burst: the server exited before listening:\n" + "".join(log[-30:]))
        log.append(line)
        if " listening on " in line:
            base = line.split(" listening on ", 1)[1].split()[0].rstrip("/")
            threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
            return base
    raise SystemExit("burst: the server did not listen within 60 s")


def duration_ms(text):
    value, unit = re.match(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_readings(pid):
    """CPU seconds and name of each thread of `pid`, by thread id (digits dropped from names:
    `sqlx-sqlite-worker-3` counts as `sqlx-sqlite-worker-`)."""
    readings = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                head, _, rest = f.read().rpartition(") ")
            name = re.sub(r"\d+$", "", head.split(" (", 1)[1])
            fields = rest.split()
            readings[tid] = (name, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
    return readings


class ThreadClock:
    """CPU seconds per thread name from now until `close`, read at every sample so that threads
    which end meanwhile (the Parquet compactor's, Tokio's blocking threads) still count, up to
    their last reading."""

    def __init__(self, pid):
        self.pid = pid
        self.lock = threading.Lock()
        self.first = thread_readings(pid)
        self.last = dict(self.first)
        self.closed = False

    def read(self):
        with self.lock:
            if not self.closed:
                self.last.update(thread_readings(self.pid))

    def close(self):
        self.read()
        with self.lock:
            self.closed = True

    def by_name(self):
        totals = {}
        for tid, (name, seconds) in self.last.items():
            totals[name] = totals.get(name, 0.0) + seconds - self.first.get(tid, (name, 0.0))[1]
        return totals


def machine_ticks():
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return sum(values), values[3] + values[4]


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


if __name__ == "__main__":
    main()
