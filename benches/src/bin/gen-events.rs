//! Writes generated KeyCRM webhook traffic as JSON Lines, for the analyzer and replay benchmarks.
//!
//! gen-events --orders 150000 [--seed 7] [--days 120] --out events.jsonl

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use ksa_benches::traffic::{TrafficSpec, deliveries, webhook_body};

fn main() -> ExitCode {
    let mut spec = TrafficSpec::default();
    let mut out = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next();
        let parsed = match (flag.as_str(), &value) {
            ("--orders", Some(v)) => v.parse().map(|n| spec.orders = n).is_ok(),
            ("--seed", Some(v)) => v.parse().map(|n| spec.seed = n).is_ok(),
            ("--days", Some(v)) => v.parse().map(|n| spec.days = n).is_ok(),
            ("--out", Some(v)) => {
                out = Some(v.clone());
                true
            }
            _ => false,
        };
        if !parsed {
            eprintln!(
                "gen-events: cannot use {flag} {}\nusage: gen-events --orders N [--seed S] [--days D] --out FILE",
                value.unwrap_or_default()
            );
            return ExitCode::from(2);
        }
    }
    let Some(path) = out else {
        eprintln!("usage: gen-events --orders N [--seed S] [--days D] --out FILE");
        return ExitCode::from(2);
    };
    let events = deliveries(&spec);
    let file = match std::fs::File::create(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("gen-events: {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    let mut body = String::with_capacity(2048);
    for event in &events {
        body.clear();
        webhook_body(event, &mut body);
        body.push('\n');
        if let Err(e) = writer.write_all(body.as_bytes()) {
            eprintln!("gen-events: {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Err(e) = writer.flush() {
        eprintln!("gen-events: {path}: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!("gen-events: {} webhook lines for {} orders written to {path}", events.len(), spec.orders);
    ExitCode::SUCCESS
}
