//! Administration through the API as a person does it: the first owner of a new installation,
//! overrides of one order, and a settings change with its recompute.

mod common;

use std::time::{Duration, Instant};

use common::http::{PROCESSING_DEADLINE, Reply, client, get, post_webhook, send};
use common::server::{Instance, Server};
use common::status_change;
use serde_json::{Value, json};

async fn wait_for(what: &str, server: &Server, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + PROCESSING_DEADLINE;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} did not happen within {PROCESSING_DEADLINE:?}; the server said:\n{}", server.stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_creates_the_owner_with_a_private_password_file_that_goes_when_the_password_changes() {
    let instance = Instance::sqlite();
    let server = instance.start_bare(&[]);
    let file = instance.data_dir().join("owner-password.txt");
    let text = std::fs::read_to_string(&file).expect("the owner's password file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let password = text.lines().find_map(|l| l.strip_prefix("password: ")).expect("a password line").to_owned();
    let log = server.stderr();
    assert!(log.contains("owner-password.txt") && !log.contains(&password), "the log names the file, never the password:\n{log}");

    let http = client();
    let login = |password: String| {
        http.post(format!("{}/api/auth/login", server.base_url))
            .header("content-type", "application/json")
            .body(json!({"login": "owner", "password": password}).to_string())
    };
    let reply = send(login(password.clone())).await;
    assert_eq!((reply.status, reply.body["role"].as_str()), (200, Some("owner")), "{reply:?}");
    let cookie = reply.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    let change = http
        .post(format!("{}/api/me/password", server.base_url))
        .header("cookie", &cookie)
        .header("content-type", "application/json")
        .body(json!({"old_password": password, "new_password": "my own password 1"}).to_string());
    let changed = send(change).await;
    assert_eq!(changed.status, 200, "{changed:?}");
    assert!(!file.exists(), "the file goes once the password is changed");
    // The old session ended; the cookie of the answer is the new one.
    let old = send(http.get(format!("{}/api/me", server.base_url)).header("cookie", &cookie)).await;
    old.assert_error(401);
    let new_cookie = changed.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    assert_eq!(send(http.get(format!("{}/api/me", server.base_url)).header("cookie", new_cookie)).await.status, 200);
    send(login(password)).await.assert_error(401);
    assert_eq!(send(login("my own password 1".into())).await.status, 200);
}

/// A project with SLA grids, one order in it, and the owner's client.
struct Shop {
    instance: Instance,
    server: Server,
    http: reqwest::Client,
}

const SETTINGS: &str = r#"{"timezone": "Europe/Kyiv", "sla": {"normal": {"2": "100:00"}, "urgent": {"2": "00:30"}}}"#;

impl Shop {
    async fn start() -> Shop {
        let instance = Instance::sqlite();
        let shop = instance.add_project("shop", &["--timezone", "Europe/Kyiv"]);
        let settings = instance.ws.write("settings.json", SETTINGS);
        instance.put_settings("shop", &settings);
        let server = instance.start();
        let http = client();
        post_webhook(&http, &server.webhook_url(&shop), status_change(5001, 20, 2, "2026-02-02T10:00:00.000000Z"))
            .await
            .assert_accepted_as("accepted");
        let shop = Shop { instance, server, http };
        shop.wait_for_timeline(|t| t["order_id"] == 5001).await;
        shop
    }

    async fn ask(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let mut request = self.http.request(method.parse().unwrap(), format!("{}{path}", self.server.base_url));
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        send(request).await
    }

    async fn timeline(&self) -> Value {
        get(&self.http, &format!("{}/api/orders/5001/timeline?project=shop&as_of=2026-02-02T12:00:00Z", self.server.base_url)).await.body
    }

    async fn wait_for_timeline(&self, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PROCESSING_DEADLINE;
        loop {
            let timeline = self.timeline().await;
            if check(&timeline) {
                return timeline;
            }
            assert!(Instant::now() < deadline, "the timeline never became as expected: {timeline:#}\n{}", self.server.stderr());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn digest(&self) -> String {
        self.instance.derived_digest("shop").await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_override_reaches_the_processor_and_survives_a_rule_change_until_removed() {
    let shop = Shop::start().await;
    let plain = shop.timeline().await;
    assert_eq!((plain["urgency"].as_str(), plain["sla"].as_str()), (Some("pending"), Some("ok")), "{plain:#}");
    let before = shop.digest().await;

    let put = shop.ask("PUT", "/api/orders/5001/override?project=shop", Some(json!({"is_urgent": true}))).await;
    assert_eq!(put.status, 200, "{put:?}");
    assert_eq!(put.body["override"]["is_urgent"], true);
    // Two hours in group 2 against the urgent grid's 30 minutes: over.
    let urgent = shop.wait_for_timeline(|t| t["urgency"] == "urgent").await;
    assert_eq!((urgent["sla"].as_str(), urgent["urgency_source"]["kind"].as_str()), (Some("over"), Some("override")), "{urgent:#}");
    assert_eq!(urgent["override"]["updated_by"], "tester");
    // The processor wrote it into the stored state too.
    wait_for("the processor's rows to carry the override", &shop.server, async || shop.digest().await != before).await;
    let overridden = shop.digest().await;

    // A rule change recomputes the project; the override stays in force.
    let changed =
        shop.ask("PUT", "/api/settings/sla?project=shop", Some(json!({"sla": {"normal": {"2": "90:00"}, "urgent": {"2": "00:20"}}}))).await;
    assert_eq!(changed.status, 200, "{changed:?}");
    let revision = changed.body["revision"].as_i64().unwrap();
    wait_for("the recompute", &shop.server, async || {
        let progress = shop.ask("GET", "/api/settings/recompute?project=shop", None).await;
        progress.body["state"] == "done" && progress.body["applied_revision"].as_i64() == Some(revision)
    })
    .await;
    let recomputed = shop.timeline().await;
    assert_eq!((recomputed["urgency"].as_str(), recomputed["settings_revision"].as_i64()), (Some("urgent"), Some(revision)));
    assert_eq!(recomputed["groups"]["2"]["limit_seconds"], 1200);
    assert_ne!(shop.digest().await, overridden, "the new rules were applied");

    // Removed, the order is judged by the rules again.
    assert_eq!(shop.ask("DELETE", "/api/orders/5001/override?project=shop", None).await.status, 200);
    shop.wait_for_timeline(|t| t["urgency"] == "pending" && t["override"].is_null()).await;
    shop.ask("DELETE", "/api/orders/5001/override?project=shop", None).await.assert_error(404);
    // Bad overrides are refused naming the field, for orders that do not exist too.
    let bad = shop.ask("PUT", "/api/orders/5001/override?project=shop", Some(json!({"sla_profile": "vip"}))).await;
    bad.assert_error(400);
    assert_eq!(bad.body["field"], "sla_profile");
    let backwards = json!({"cycle_start": "2026-02-03T00:00:00Z", "cycle_end": "2026-02-02T00:00:00Z"});
    assert_eq!(shop.ask("PUT", "/api/orders/5001/override?project=shop", Some(backwards)).await.body["field"], "cycle_end");
    shop.ask("PUT", "/api/orders/777/override?project=shop", Some(json!({"is_urgent": true}))).await.assert_error(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_keep_the_previous_revision_until_its_recompute_is_done_and_name_the_revision() {
    let shop = Shop::start().await;
    let first = shop.timeline().await;
    let revision = first["settings_revision"].as_i64().unwrap();
    let settings = shop.ask("GET", "/api/settings?project=shop", None).await;
    assert_eq!(settings.body["applied_revision"].as_i64(), Some(revision));
    assert_eq!(settings.body["document"]["sla"]["normal"]["2"], "100:00");
    assert_eq!(settings.body["document"]["completion_groups"], json!([5]), "every default is written out");

    let next = shop.ask("PUT", "/api/settings?project=shop", Some(json!({"timezone": "Europe/Kyiv"}))).await;
    let new_revision = next.body["revision"].as_i64().unwrap();
    assert_eq!(new_revision, revision + 1);
    wait_for("the recompute", &shop.server, async || {
        shop.ask("GET", "/api/settings/recompute?project=shop", None).await.body["state"] == "done"
    })
    .await;
    let after = shop.timeline().await;
    assert_eq!(after["settings_revision"].as_i64(), Some(new_revision));
    assert_eq!(after["groups"]["2"]["limit_seconds"], serde_json::Value::Null, "the new document has no limits");
}
