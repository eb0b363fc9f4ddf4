//! `deploy/prometheus/alerts.yml`: promtool reads it and its unit tests pass, and every metric
//! it names is one the services record (described in `app/src/metrics.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus")
}

/// promtool, or `None` outside CI when it is not installed (scripts/test installs it).
fn promtool() -> Option<Command> {
    match Command::new("promtool").arg("--version").output() {
        Ok(out) if out.status.success() => Some(Command::new("promtool")),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("promtool is not installed (Debian's `prometheus` package has it; scripts/test installs it)")
        }
        _ => {
            eprintln!("skipped: promtool is not installed");
            None
        }
    }
}

#[test]
fn promtool_reads_the_alerts_and_their_unit_tests_pass() {
    let Some(mut check) = promtool() else { return };
    let out = check.current_dir(deploy()).args(["check", "rules", "alerts.yml"]).output().unwrap();
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("promtool").current_dir(deploy()).args(["test", "rules", "alerts.test.yml"]).output().unwrap();
    assert!(out.status.success(), "promtool test rules:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn every_metric_the_alerts_name_is_recorded() {
    let alerts = std::fs::read_to_string(deploy().join("alerts.yml")).unwrap();
    let described = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/metrics.rs")).unwrap();
    let mut named = 0;
    for word in alerts.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("ksa_")) {
        let metric = word.strip_suffix("_bucket").unwrap_or(word);
        assert!(described.contains(&format!("\"{metric}\"")), "alerts.yml names {metric}, which no service records");
        named += 1;
    }
    assert!(named >= 10, "alerts.yml names {named} metrics");
}
