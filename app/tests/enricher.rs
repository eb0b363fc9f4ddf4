//! The enricher's subcommands run as a user would, against an in-process fake KeyCRM that
//! answers with the fixtures: `project api`, `statuses sync / export`, `backfill`,
//! `enrich status / retry`.

mod common;

use common::Workspace;
use common::keycrm::{self, TOKEN};

fn setup(ws: &Workspace, base_url: &str, token: &str) {
    ws.run(["project", "add", "--slug", "shop", "--name", "Shop"]).assert_success();
    let mut command =
        ws.command(["project", "api", "--slug", "shop", "--token-env", "SHOP_TOKEN", "--base-url", base_url, "--rate", "600"]);
    let outcome = common::run(command.env("SHOP_TOKEN", token));
    outcome.assert_success();
    assert!(outcome.stdout.contains("token stored (encrypted)") && outcome.stdout.contains("600 requests/min"), "{outcome:#?}");
    assert!(!outcome.stdout.contains(token) && !outcome.stderr.contains(token));
}

#[test]
fn statuses_backfill_and_the_schedule_work_against_keycrm_with_an_encrypted_token() {
    let keycrm::FakeKeycrm { base_url, seen } = keycrm::start(|_| None);
    let ws = Workspace::new();
    setup(&ws, &base_url, TOKEN);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = std::fs::metadata(ws.path("data/secret.key")).expect("the key file is created in the data dir");
        assert_eq!(key.permissions().mode() & 0o777, 0o600);
    }
    let database = std::fs::read(ws.path("data/state.db")).unwrap();
    assert!(!database.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()), "the token is not stored in clear");

    let sync = ws.run(["statuses", "sync", "--project", "shop"]);
    sync.assert_success();
    assert!(sync.stdout.contains("6 added"), "{sync:#?}");
    let csv = ws.run(["statuses", "export", "--project", "shop", "--format", "csv"]);
    csv.assert_success();
    assert_eq!(csv.stdout.lines().count(), 7, "{csv:#?}");
    assert!(csv.stdout.lines().any(|l| l.starts_with("20,Матеріали,materiali,2,Погодження,true")), "{csv:#?}");
    ws.run(["statuses", "rename-group", "--project", "shop", "--group", "3", "--name", "Пошиття"]).assert_success();
    ws.run(["statuses", "rename-group", "--project", "shop", "--group", "7", "--name", "x"]).assert_failure_mentioning(&["1 to 6"]);
    let json = ws.run(["statuses", "export", "--project", "shop"]);
    let document: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(document["groups"].as_array().unwrap().len(), 6);
    assert_eq!(document["groups"][2]["name"], "Пошиття");
    assert_eq!(document["groups"][0]["name"], "Новий");

    let backfill = ws.run(["backfill", "--project", "shop", "--since", "2026-01-01", "--window-days", "400"]);
    backfill.assert_success();
    assert!(backfill.stdout.contains("1 orders read") && backfill.stdout.contains("1 backfilled events"), "{backfill:#?}");
    assert!(backfill.stderr.contains("requests per minute"), "the command says why it is slow: {backfill:#?}");

    let status = ws.run(["enrich", "status", "--project", "shop"]);
    status.assert_success();
    assert!(status.stdout.contains("0 dead-lettered"), "{status:#?}");
    let retry = ws.run(["enrich", "retry", "--project", "shop"]);
    assert!(retry.stdout.contains("0 dead-lettered order(s) scheduled again"), "{retry:#?}");

    assert!(seen.lock().unwrap().iter().all(|auth| auth == &format!("Bearer {TOKEN}")));
}

#[test]
fn a_refused_token_fails_naming_the_project_and_never_the_token() {
    let base_url = keycrm::start(|_| None).base_url;
    let ws = Workspace::new();
    setup(&ws, &base_url, "revoked-token-77");
    let sync = ws.run(["statuses", "sync", "--project", "shop"]);
    sync.assert_failure_mentioning(&["project `shop`", "401", "project api --slug shop"]);
    assert!(!sync.stderr.contains("revoked-token-77") && !sync.stdout.contains("revoked-token-77"));
}
