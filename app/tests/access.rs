//! Access to the API, black-box: `run` started on 127.0.0.1:0 on SQLite and on PostgreSQL, used
//! by an owner, an admin and a viewer of one project, an admin of another, and nobody.
//!
//! The authorization matrix is data: every route of the API with the status each caller gets.
//! One test walks it; another fails when the API has a route the matrix does not list.

mod common;

use std::collections::BTreeSet;

use common::http::{Reply, client, post_webhook, send};
use common::postgres::{ScratchDatabase, postgres_server};
use common::server::{Instance, Server};
use common::status_change;
use ksa_query_api::routes::ROUTES;
use serde_json::{Value, json};

/// Who calls, in the matrix's column order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    Owner,
    ShopAdmin,
    ShopViewer,
    OtherAdmin,
    Nobody,
}

const CALLERS: [Caller; 5] = [Caller::Owner, Caller::ShopAdmin, Caller::ShopViewer, Caller::OtherAdmin, Caller::Nobody];

impl Caller {
    fn login(self) -> &'static str {
        match self {
            Caller::Owner => "tester",
            Caller::ShopAdmin => "shop-admin",
            Caller::ShopViewer => "shop-viewer",
            Caller::OtherAdmin => "other-admin",
            Caller::Nobody => "nobody",
        }
    }

    fn password(self) -> String {
        format!("{}-password-1", self.login())
    }
}

/// Members of `shop` read it (others do not see it); admins and owners change it.
const READ: [u16; 5] = [200, 200, 200, 404, 401];
const CHANGE: [u16; 5] = [200, 200, 403, 404, 401];
const SIGNED: [u16; 5] = [200, 200, 200, 200, 401];

/// One row of the matrix: a request and the status each caller gets. In paths, `{order}` is an
/// order of `shop`, `{target}` a viewer of `shop` only, `{token}` a token of the caller made
/// for the row, `{caller}` the caller's login, `{doomed}` a project made for the row.
struct Row {
    method: &'static str,
    route: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    expect: [u16; 5],
}

const fn row(method: &'static str, route: &'static str, path: &'static str, body: Option<&'static str>, expect: [u16; 5]) -> Row {
    Row { method, route, path, body, expect }
}

const MATRIX: &[Row] = &[
    row("POST", "/api/auth/login", "/api/auth/login", Some(r#"{"login": "login-user", "password": "login-user-password-1"}"#), [200; 5]),
    row("POST", "/api/auth/logout", "/api/auth/logout", None, SIGNED),
    row("GET", "/api/me", "/api/me", None, SIGNED),
    row("POST", "/api/me/password", "/api/me/password", Some("{password}"), SIGNED),
    row("GET", "/api/tokens", "/api/tokens", None, SIGNED),
    row("POST", "/api/tokens", "/api/tokens", Some(r#"{"name": "matrix"}"#), [201, 201, 201, 201, 401]),
    row("DELETE", "/api/tokens/{id}", "/api/tokens/{token}", None, SIGNED),
    row("GET", "/api/users", "/api/users", None, [200, 200, 403, 200, 401]),
    row(
        "POST",
        "/api/users",
        "/api/users",
        Some(r#"{"login": "new-{caller}", "password": "a-long-password", "projects": [{"project": "shop", "role": "viewer"}]}"#),
        [201, 201, 403, 403, 401],
    ),
    row("PATCH", "/api/users/{id}", "/api/users/{target}", Some(r#"{"active": true}"#), [200, 200, 403, 404, 401]),
    row("GET", "/api/projects", "/api/projects", None, SIGNED),
    row("POST", "/api/projects", "/api/projects", Some(r#"{"slug": "new-{caller}", "name": "New"}"#), [201, 403, 403, 403, 401]),
    row("GET", "/api/projects/{slug}", "/api/projects/shop", None, READ),
    row("PATCH", "/api/projects/{slug}", "/api/projects/shop", Some(r#"{"name": "Shop"}"#), CHANGE),
    row("DELETE", "/api/projects/{slug}", "/api/projects/{doomed}", None, [200, 403, 403, 403, 401]),
    row("POST", "/api/projects/{slug}/webhook-secret", "/api/projects/shop/webhook-secret", None, CHANGE),
    row("GET", "/api/settings", "/api/settings?project=shop", None, CHANGE),
    row("PUT", "/api/settings", "/api/settings?project=shop", Some(r#"{"timezone": "Europe/Kyiv"}"#), CHANGE),
    row("GET", "/api/settings/recompute", "/api/settings/recompute?project=shop", None, READ),
    row("GET", "/api/settings/sla", "/api/settings/sla?project=shop", None, CHANGE),
    row("PUT", "/api/settings/sla", "/api/settings/sla?project=shop", Some(r#"{"sla": {"normal": {"2": "02:00"}}}"#), CHANGE),
    row("GET", "/api/settings/cycle", "/api/settings/cycle?project=shop", None, CHANGE),
    row("PUT", "/api/settings/cycle", "/api/settings/cycle?project=shop", Some("{}"), CHANGE),
    row("GET", "/api/settings/working-hours", "/api/settings/working-hours?project=shop", None, CHANGE),
    row(
        "PUT",
        "/api/settings/working-hours",
        "/api/settings/working-hours?project=shop",
        Some(r#"{"calendars": {"default": "24/7"}}"#),
        CHANGE,
    ),
    row("GET", "/api/settings/urgent-rules", "/api/settings/urgent-rules?project=shop", None, CHANGE),
    row("PUT", "/api/settings/urgent-rules", "/api/settings/urgent-rules?project=shop", Some(r#"{"urgency_rules": []}"#), CHANGE),
    row("GET", "/api/settings/terminal", "/api/settings/terminal?project=shop", None, CHANGE),
    row("PUT", "/api/settings/terminal", "/api/settings/terminal?project=shop", Some(r#"{"completion_groups": [5]}"#), CHANGE),
    row("GET", "/api/dicts/statuses", "/api/dicts/statuses?project=shop", None, READ),
    row("PATCH", "/api/dicts/groups/{id}", "/api/dicts/groups/3?project=shop", Some(r#"{"name": "Цех"}"#), CHANGE),
    row("POST", "/api/dicts/statuses/sync", "/api/dicts/statuses/sync?project=shop", None, [202, 202, 403, 404, 401]),
    row("PUT", "/api/orders/{id}/override", "/api/orders/{order}/override?project=shop", Some(r#"{"is_urgent": true}"#), CHANGE),
    row("DELETE", "/api/orders/{id}/override", "/api/orders/{order}/override?project=shop", None, CHANGE),
    row("GET", "/api/audit", "/api/audit", None, [200, 200, 403, 200, 401]),
    row("GET", "/api/webhooks/stats", "/api/webhooks/stats?project=shop", None, CHANGE),
    row("GET", "/api/orders", "/api/orders?project=shop", None, READ),
    row("GET", "/api/orders/kpis", "/api/orders/kpis?project=shop", None, READ),
    row("GET", "/api/orders.csv", "/api/orders.csv?project=shop", None, READ),
    row("GET", "/api/stream/orders", "/api/stream/orders?project=shop", None, READ),
    row("GET", "/api/orders/{id}/timeline", "/api/orders/{order}/timeline?project=shop", None, READ),
    row("GET", "/api/analytics/stages", "/api/analytics/stages?project=shop", None, READ),
    row("GET", "/api/analytics/cycles", "/api/analytics/cycles?project=shop", None, READ),
    row("GET", "/api/analytics/sla", "/api/analytics/sla?project=shop", None, READ),
    row("GET", "/api/analytics/throughput", "/api/analytics/throughput?project=shop", None, READ),
    row("GET", "/api/analytics/cancellations", "/api/analytics/cancellations?project=shop", None, READ),
    row("GET", "/api/reports/custom", "/api/reports/custom?project=shop", None, READ),
    row("GET", "/api/reports/productivity", "/api/reports/productivity?project=shop", None, READ),
    row("GET", "/api/reports/cancellations", "/api/reports/cancellations?project=shop", None, READ),
    row("GET", "/api/reports/success", "/api/reports/success?project=shop", None, READ),
    row("GET", "/api/reports/sla", "/api/reports/sla?project=shop", None, READ),
    row("GET", "/api/reports/stage-time", "/api/reports/stage-time?project=shop", None, READ),
    row("GET", "/api/openapi.yaml", "/api/openapi.yaml", None, SIGNED),
];

const ORDER: i64 = 4101;

/// A server with the callers of the matrix, their tokens, a project `shop` with one order, and
/// a project `other`.
struct World {
    instance: Instance,
    server: Server,
    http: reqwest::Client,
    tokens: Vec<(Caller, String)>,
    target: i64,
    shop_secret: String,
}

impl World {
    async fn start(instance: Instance) -> World {
        let shop = instance.add_project("shop", &["--timezone", "Europe/Kyiv"]);
        instance.add_project("other", &[]);
        let owner = instance.api_token();
        instance.add_user("shop-admin", "admin", &["shop"], &Caller::ShopAdmin.password());
        instance.add_user("shop-viewer", "viewer", &["shop"], &Caller::ShopViewer.password());
        instance.add_user("other-admin", "admin", &["other"], &Caller::OtherAdmin.password());
        instance.add_user("target", "viewer", &["shop"], "target-password-1");
        instance.add_user("login-user", "viewer", &["shop"], "login-user-password-1");
        let tokens = vec![
            (Caller::Owner, owner),
            (Caller::ShopAdmin, instance.token("shop-admin")),
            (Caller::ShopViewer, instance.token("shop-viewer")),
            (Caller::OtherAdmin, instance.token("other-admin")),
        ];
        let server = instance.start_bare(&[]);
        let http = client();
        post_webhook(&http, &server.webhook_url(&shop), status_change(ORDER, 20, 2, "2026-02-02T10:00:00.000000Z"))
            .await
            .assert_accepted_as("accepted");
        let mut world = World { instance, server, http, tokens, target: 0, shop_secret: shop.secret };
        let users = world.call("GET", "/api/users", Caller::Owner, None).await;
        world.target = users.body["users"].as_array().unwrap().iter().find(|u| u["login"] == "target").unwrap()["id"].as_i64().unwrap();
        // The status dictionary can be synced only with a KeyCRM token.
        world.call("PATCH", "/api/projects/shop", Caller::Owner, Some(json!({"keycrm": {"token": "keycrm-token-7777"}}))).await;
        world.wait_for_order().await;
        world
    }

    fn token(&self, caller: Caller) -> Option<&str> {
        self.tokens.iter().find(|(c, _)| *c == caller).map(|(_, t)| t.as_str())
    }

    async fn call(&self, method: &str, path: &str, caller: Caller, body: Option<Value>) -> Reply {
        let url = format!("{}{path}", self.server.base_url);
        let mut request = self.http.request(method.parse().unwrap(), &url);
        if let Some(token) = self.token(caller) {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        send(request).await
    }

    async fn wait_for_order(&self) {
        let deadline = std::time::Instant::now() + common::http::PROCESSING_DEADLINE;
        loop {
            let reply = self.call("GET", &format!("/api/orders/{ORDER}/timeline?project=shop"), Caller::Owner, None).await;
            if reply.status == 200 {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "order {ORDER} was never processed: {reply:?}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Makes what a row needs for `caller`, and returns the concrete path and body.
    async fn prepare(&self, row: &Row, caller: Caller) -> (String, Option<Value>) {
        let mut path = row.path.replace("{order}", &ORDER.to_string()).replace("{target}", &self.target.to_string());
        if path.contains("{token}") {
            let id = match caller {
                Caller::Nobody => 1,
                _ => self.call("POST", "/api/tokens", caller, Some(json!({"name": "to revoke"}))).await.body["id"].as_i64().unwrap(),
            };
            path = path.replace("{token}", &id.to_string());
        }
        if path.contains("{doomed}") {
            let slug = format!("doomed-{}", caller.login());
            let made = self.call("POST", "/api/projects", Caller::Owner, Some(json!({"slug": slug, "name": "Doomed"}))).await;
            assert_eq!(made.status, 201, "{made:?}");
            path = path.replace("{doomed}", &slug);
        }
        if row.method == "DELETE" && row.route == "/api/orders/{id}/override" {
            let put = self.call("PUT", &path, Caller::Owner, Some(json!({"is_urgent": false}))).await;
            assert_eq!(put.status, 200, "{put:?}");
        }
        let body = row.body.map(|text| {
            let text = match text {
                "{password}" => json!({"old_password": caller.password(), "new_password": caller.password()}).to_string(),
                other => other.replace("{caller}", caller.login()),
            };
            serde_json::from_str(&text).unwrap()
        });
        (path, body)
    }
}

async fn authorization_matrix_is_enforced_on_every_route(instance: Instance) {
    let world = World::start(instance).await;
    let mut wrong = Vec::new();
    for row in MATRIX {
        for (caller, expected) in CALLERS.iter().zip(row.expect) {
            let (path, body) = world.prepare(row, *caller).await;
            let reply = world.call(row.method, &path, *caller, body).await;
            if reply.status != expected {
                wrong.push(format!("{:?} {} {path}: expected {expected}, got {} {}", caller, row.method, reply.status, reply.text));
            }
            if reply.status >= 400 {
                assert!(reply.body["error"].is_string(), "{} {path}: an error answer must be JSON with `error`: {reply:?}", row.method);
            }
        }
    }
    assert!(wrong.is_empty(), "the authorization matrix is not what the API does:\n{}", wrong.join("\n"));
    // Nobody's requests reached nothing, and the secrets the test used never reached the log.
    let log = world.server.stderr();
    for (_, token) in &world.tokens {
        assert!(!log.contains(token.as_str()), "an API token is in the server's log");
    }
    for secret in [world.shop_secret.as_str(), "keycrm-token-7777", "login-user-password-1"] {
        assert!(!log.contains(secret), "a secret is in the server's log:\n{log}");
    }
    drop(world.instance);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix_is_enforced_on_every_route_on_sqlite() {
    authorization_matrix_is_enforced_on_every_route(Instance::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix_is_enforced_on_every_route_on_postgres() {
    let Some(server) = postgres_server("access_matrix") else { return };
    let database = ScratchDatabase::create(&server, "access");
    authorization_matrix_is_enforced_on_every_route(Instance::postgres(&database.url)).await;
}

/// A user disabled by the command line, another process, while the server runs: refused by
/// the server's next requests, though on PostgreSQL it keeps callers in memory (forgotten when
/// PostgreSQL tells of the change, within milliseconds); and enabled again the same way.
async fn the_command_line_disables_a_user_while_the_server_runs(instance: Instance) {
    let world = World::start(instance).await;
    let me = |caller: Caller| world.call("GET", "/api/me", caller, None);
    for _ in 0..3 {
        assert_eq!(me(Caller::ShopViewer).await.status, 200);
    }
    // Waits up to 2 s for `caller`'s requests to answer `status`.
    let within = |what: &'static str, caller: Caller, status: u16| {
        let me = &me;
        async move {
            let started = std::time::Instant::now();
            while me(caller).await.status != status {
                assert!(started.elapsed() < std::time::Duration::from_secs(2), "{what}: not {status} after 2 s");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    };
    common::run(&mut world.instance.command(["user", "disable", "--login", "shop-viewer"])).assert_success();
    within("a user disabled by the command line", Caller::ShopViewer, 401).await;
    assert_eq!(me(Caller::ShopAdmin).await.status, 200, "the others are not touched");
    common::run(&mut world.instance.command(["user", "enable", "--login", "shop-viewer"])).assert_success();
    within("a user enabled again by the command line", Caller::ShopViewer, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_disables_a_user_while_the_server_runs_on_sqlite() {
    the_command_line_disables_a_user_while_the_server_runs(Instance::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_disables_a_user_while_the_server_runs_on_postgres() {
    let Some(server) = postgres_server("access_cli_disable") else { return };
    let database = ScratchDatabase::create(&server, "access_cli");
    the_command_line_disables_a_user_while_the_server_runs(Instance::postgres(&database.url)).await;
}

#[test]
fn the_matrix_lists_every_route_of_the_api() {
    let listed: BTreeSet<(&str, &str)> = MATRIX.iter().map(|r| (r.method, r.route)).collect();
    let served: BTreeSet<(&str, &str)> = ROUTES.iter().map(|r| (r.method, r.path)).collect();
    let missing: Vec<_> = served.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&served).collect();
    assert!(missing.is_empty(), "routes the authorization matrix does not list: {missing:?}");
    assert!(stale.is_empty(), "matrix rows for routes that do not exist: {stale:?}");
    assert_eq!(listed.len(), MATRIX.len(), "a route is listed twice in the matrix");
}

/// Logs `login` in; returns the answer and the session cookie it set.
async fn login(world: &World, login: &str, password: &str, headers: &[(&str, &str)]) -> (Reply, Option<String>) {
    let mut request = world
        .http
        .post(format!("{}/api/auth/login", world.server.base_url))
        .header("content-type", "application/json")
        .body(json!({"login": login, "password": password}).to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let reply = send(request).await;
    let cookie = reply.header("set-cookie").and_then(|c| c.split(';').next()).map(str::to_owned);
    (reply, cookie)
}

async fn with_cookie(world: &World, method: &str, path: &str, cookie: &str, body: Option<Value>, headers: &[(&str, &str)]) -> Reply {
    let mut request = world.http.request(method.parse().unwrap(), format!("{}{path}", world.server.base_url)).header("cookie", cookie);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_string());
    }
    send(request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_cookie_is_http_only_and_strict_and_ends_with_logout_or_a_change_of_the_user() {
    let world = World::start(Instance::sqlite()).await;
    let (reply, cookie) = login(&world, "shop-viewer", &Caller::ShopViewer.password(), &[]).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let set = reply.header("set-cookie").unwrap_or_default().to_owned();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && !set.contains("Secure"), "{set}");
    assert!(reply.body.get("token").is_none() && !reply.text.contains(cookie.as_deref().unwrap_or("none")), "no token in the body");
    assert_eq!(reply.body["login"], "shop-viewer");
    let cookie = cookie.expect("a session cookie");
    assert_eq!(with_cookie(&world, "GET", "/api/me", &cookie, None, &[]).await.status, 200);

    // Logout clears the cookie in the browser.
    let out = with_cookie(&world, "POST", "/api/auth/logout", &cookie, None, &[]).await;
    assert!(out.header("set-cookie").unwrap_or_default().contains("Max-Age=0"), "{out:?}");

    // Disabling the user ends the session, and their token too.
    let (_, cookie) = login(&world, "shop-viewer", &Caller::ShopViewer.password(), &[]).await;
    let cookie = cookie.unwrap();
    let target = world.call("GET", "/api/users", Caller::Owner, None).await.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["login"] == "shop-viewer")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    assert_eq!(world.call("PATCH", &format!("/api/users/{target}"), Caller::Owner, Some(json!({"active": false}))).await.status, 200);
    with_cookie(&world, "GET", "/api/me", &cookie, None, &[]).await.assert_error(401);
    world.call("GET", "/api/me", Caller::ShopViewer, None).await.assert_error(401);
    let (refused, _) = login(&world, "shop-viewer", &Caller::ShopViewer.password(), &[]).await;
    refused.assert_error(401);
    assert_eq!(world.call("PATCH", &format!("/api/users/{target}"), Caller::Owner, Some(json!({"active": true}))).await.status, 200);

    // A change of role ends the session; a change of password too.
    let (_, cookie) = login(&world, "shop-viewer", &Caller::ShopViewer.password(), &[]).await;
    let cookie = cookie.unwrap();
    let regrant = json!({"projects": [{"project": "shop", "role": "viewer"}, {"project": "other", "role": "viewer"}]});
    assert_eq!(world.call("PATCH", &format!("/api/users/{target}"), Caller::Owner, Some(regrant)).await.status, 200);
    with_cookie(&world, "GET", "/api/me", &cookie, None, &[]).await.assert_error(401);
    let (_, cookie) = login(&world, "shop-viewer", &Caller::ShopViewer.password(), &[]).await;
    let cookie = cookie.unwrap();
    let changed =
        world.call("PATCH", &format!("/api/users/{target}"), Caller::Owner, Some(json!({"password": "another-password-2"}))).await;
    assert_eq!(changed.status, 200, "{changed:?}");
    with_cookie(&world, "GET", "/api/me", &cookie, None, &[]).await.assert_error(401);

    // A revoked token stops at once.
    let made = world.call("POST", "/api/tokens", Caller::ShopAdmin, Some(json!({"name": "script"}))).await;
    let (token, id) = (made.body["token"].as_str().unwrap().to_owned(), made.body["id"].as_i64().unwrap());
    let with = |token: String| world.http.get(format!("{}/api/me", world.server.base_url)).bearer_auth(token);
    assert_eq!(send(with(token.clone())).await.status, 200);
    assert_eq!(world.call("DELETE", &format!("/api/tokens/{id}"), Caller::ShopAdmin, None).await.status, 200);
    send(with(token)).await.assert_error(401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_failed_logins_lock_the_pair_and_the_address_cap_stops_guessing_across_logins() {
    let world = World::start(Instance::sqlite()).await;
    let password = Caller::ShopAdmin.password();
    for _ in 0..5 {
        login(&world, "shop-admin", "wrong-password", &[]).await.0.assert_error(401);
    }
    // Locked, even with the right password; the answer says how long to wait.
    let (locked, _) = login(&world, "SHOP-ADMIN", &password, &[]).await;
    locked.assert_error(429);
    let wait: u64 = locked.header("retry-after").and_then(|v| v.parse().ok()).expect("Retry-After in seconds");
    assert!((1..=900).contains(&wait), "{wait}");
    // Another login from the same address is not locked by it.
    assert_eq!(login(&world, "shop-viewer", &Caller::ShopViewer.password(), &[]).await.0.status, 200);
    // A forged X-Forwarded-For does not make a new address: no proxy is trusted.
    login(&world, "shop-admin", &password, &[("x-forwarded-for", "203.0.113.7")]).await.0.assert_error(429);

    // A success clears the pair's failures.
    for _ in 0..4 {
        login(&world, "other-admin", "wrong-password", &[]).await.0.assert_error(401);
    }
    assert_eq!(login(&world, "other-admin", &Caller::OtherAdmin.password(), &[]).await.0.status, 200);
    for _ in 0..4 {
        login(&world, "other-admin", "wrong-password", &[]).await.0.assert_error(401);
    }
    assert_eq!(login(&world, "other-admin", &Caller::OtherAdmin.password(), &[]).await.0.status, 200);

    // Unknown logins answer exactly as wrong passwords, and count for the address: 50 failures
    // in an hour stop the address whatever the login.
    let unknown = login(&world, "no-such-user", "whatever-password", &[]).await.0;
    let wrong = login(&world, "login-user", "whatever-password", &[]).await.0;
    assert_eq!((unknown.status, &unknown.body), (wrong.status, &wrong.body));
    // Successes clear a pair, not the address's count: 5 + 8 + 2 failures so far.
    let mut failures = 5 + 8 + 2;
    let mut i = 0;
    while failures < 50 {
        login(&world, &format!("guess-{i}"), "whatever-password", &[]).await.0.assert_error(401);
        failures += 1;
        i += 1;
    }
    login(&world, "login-user", "login-user-password-1", &[]).await.0.assert_error(429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_writes_from_another_site_are_refused_and_write_nothing_but_token_writes_are_not_cookie_bound() {
    let world = World::start(Instance::sqlite()).await;
    let (_, cookie) = login(&world, "shop-admin", &Caller::ShopAdmin.password(), &[]).await;
    let cookie = cookie.unwrap();
    let audit_before = world.call("GET", "/api/audit", Caller::Owner, None).await.body["entries"].as_array().unwrap().len();
    let put = json!({"timezone": "Europe/Warsaw"});
    for headers in [&[("sec-fetch-site", "cross-site")][..], &[("origin", "https://evil.example")][..]] {
        let reply = with_cookie(&world, "PUT", "/api/settings?project=shop", &cookie, Some(put.clone()), headers).await;
        reply.assert_error(403);
    }
    // A cross-site login is refused too (login CSRF).
    login(&world, "shop-admin", &Caller::ShopAdmin.password(), &[("origin", "https://evil.example")]).await.0.assert_error(403);
    let settings = world.call("GET", "/api/settings?project=shop", Caller::Owner, None).await;
    assert_eq!(settings.body["document"]["timezone"], "Europe/Kyiv", "nothing was saved");
    let audit_after = world.call("GET", "/api/audit", Caller::Owner, None).await.body["entries"].as_array().unwrap().len();
    assert_eq!(audit_before, audit_after, "nothing was audited, because nothing changed");

    // From our own page the same write goes through; with a token, the Origin does not matter.
    let same =
        with_cookie(&world, "PUT", "/api/settings?project=shop", &cookie, Some(put.clone()), &[("sec-fetch-site", "same-origin")]).await;
    assert_eq!(same.status, 200, "{same:?}");
    let token = world
        .http
        .put(format!("{}/api/settings?project=shop", world.server.base_url))
        .bearer_auth(world.token(Caller::ShopAdmin).unwrap())
        .header("origin", "https://elsewhere.example")
        .header("content-type", "application/json")
        .body(json!({"timezone": "Europe/Kyiv"}).to_string());
    assert_eq!(send(token).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_the_caller_may_not_see_answers_as_one_that_does_not_exist() {
    let world = World::start(Instance::sqlite()).await;
    for path in ["/api/projects/{p}", "/api/orders?project={p}", "/api/settings?project={p}", "/api/dicts/statuses?project={p}"] {
        let hidden = world.call("GET", &path.replace("{p}", "shop"), Caller::OtherAdmin, None).await;
        let missing = world.call("GET", &path.replace("{p}", "nowhere"), Caller::OtherAdmin, None).await;
        assert_eq!((hidden.status, &hidden.body["error"]), (missing.status, &missing.body["error"]), "{path}");
        assert_eq!(hidden.status, 404);
        assert_eq!(
            hidden.body["message"].as_str().unwrap().replace("shop", "X"),
            missing.body["message"].as_str().unwrap().replace("nowhere", "X")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_saved_meanwhile_answer_412_and_invalid_documents_422_with_every_field_and_nothing_is_saved() {
    let world = World::start(Instance::sqlite()).await;
    let read = world.call("GET", "/api/settings?project=shop", Caller::ShopAdmin, None).await;
    let etag = read.header("etag").unwrap().to_owned();
    let revision = read.body["revision"].as_i64().unwrap();
    let put = |body: Value, etag: &str| {
        world
            .http
            .put(format!("{}/api/settings/sla?project=shop", world.server.base_url))
            .bearer_auth(world.token(Caller::ShopAdmin).unwrap())
            .header("if-match", etag)
            .header("content-type", "application/json")
            .body(body.to_string())
    };
    let first = send(put(json!({"sla": {"normal": {"2": "01:00"}}}), &etag)).await;
    assert_eq!((first.status, first.body["revision"].as_i64()), (200, Some(revision + 1)), "{first:?}");
    // Someone else saved in between: the second writer read the old revision.
    let stale = send(put(json!({"sla": {"normal": {"2": "03:00"}}}), &etag)).await;
    stale.assert_error(412);
    let now = world.call("GET", "/api/settings/sla?project=shop", Caller::ShopAdmin, None).await;
    assert_eq!(now.body["document"]["sla"]["normal"]["2"], "01:00");
    assert_eq!(now.body["revision"].as_i64(), Some(revision + 1));

    let bad = json!({"timezone": "Mars/Base", "sla": {"normal": {"3": "soon"}}, "cycles": [{"id": 1, "title": "", "start": {"kind": "created"}, "end": {"kind": "group", "id": 4}}]});
    let refused = world.call("PUT", "/api/settings?project=shop", Caller::ShopAdmin, Some(bad)).await;
    refused.assert_error(422);
    let fields: Vec<&str> = refused.body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    for field in ["timezone", "sla.normal.3", "cycles[0].title"] {
        assert!(fields.contains(&field), "{field} not named: {refused:?}");
    }
    let part = world.call("PUT", "/api/settings/terminal?project=shop", Caller::ShopAdmin, Some(json!({"sla": {}}))).await;
    part.assert_error(422);
    assert_eq!(part.body["errors"][0]["field"], "sla");
    let after = world.call("GET", "/api/settings?project=shop", Caller::ShopAdmin, None).await;
    assert_eq!(after.body["revision"].as_i64(), Some(revision + 1), "nothing was saved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_audited_with_secrets_masked_and_admins_read_only_their_projects_rows() {
    let world = World::start(Instance::sqlite()).await;
    world.call("PATCH", "/api/projects/shop", Caller::ShopAdmin, Some(json!({"keycrm": {"token": "very-secret-keycrm-token"}}))).await;
    let rotated = world.call("POST", "/api/projects/shop/webhook-secret", Caller::ShopAdmin, None).await;
    let new_url = rotated.body["webhook_url"].as_str().unwrap().to_owned();
    let new_secret = new_url.split("token=").nth(1).unwrap().to_owned();
    let made = world
        .call("POST", "/api/users", Caller::ShopAdmin, Some(json!({"login": "fresh", "projects": [{"project": "shop", "role": "viewer"}]})))
        .await;
    assert_eq!(made.status, 201, "{made:?}");
    let generated = made.body["password"].as_str().unwrap().to_owned();
    world.call("PATCH", "/api/projects/other", Caller::OtherAdmin, Some(json!({"name": "Other shop"}))).await;

    let audit = world.call("GET", "/api/audit", Caller::Owner, None).await;
    let text = audit.text.clone();
    for secret in ["very-secret-keycrm-token", new_secret.as_str(), generated.as_str(), world.shop_secret.as_str()] {
        assert!(!text.contains(secret), "a secret is in the audit log: {secret}");
    }
    let entries = audit.body["entries"].as_array().unwrap();
    let find = |action: &str| entries.iter().find(|e| e["action"] == action).unwrap_or_else(|| panic!("no {action} row: {entries:#?}"));
    let token_change =
        entries.iter().find(|e| e["action"] == "project.update" && e["after"].get("keycrm.token").is_some()).expect("a token change");
    assert_eq!(token_change["after"]["keycrm.token"], "***");
    assert_eq!(find("project.webhook_secret")["after"]["webhook_secret"], "***");
    let user = find("user.create");
    assert_eq!((user["actor"].as_str(), user["after"]["password"].as_str()), (Some("shop-admin"), Some("***")));
    assert_eq!(user["client_address"], "127.0.0.1");
    assert!(entries.iter().any(|e| e["actor"] == "cli" && e["action"] == "project.create"), "the command line's changes are audited too");

    // The admin of `other` reads other's rows only; asking for shop's is 404 (not theirs).
    let theirs = world.call("GET", "/api/audit", Caller::OtherAdmin, None).await;
    let projects: BTreeSet<&str> = theirs.body["entries"].as_array().unwrap().iter().filter_map(|e| e["project"].as_str()).collect();
    assert_eq!(projects, BTreeSet::from(["other"]));
    world.call("GET", "/api/audit?project=shop", Caller::OtherAdmin, None).await.assert_error(404);
    // Answers never show secrets either.
    let project = world.call("GET", "/api/projects/shop", Caller::ShopAdmin, None).await;
    assert_eq!(project.body["keycrm"]["token_set"], true);
    assert_eq!(project.body["keycrm"]["token_last4"], "oken");
    assert!(!project.text.contains("very-secret") && !project.text.contains(&new_secret));
    assert!(!world.server.stderr().contains("very-secret-keycrm-token"));

    // The old webhook secret works during its grace period, the new one at once.
    let old = post_webhook(
        &world.http,
        &format!("{}/webhooks/keycrm/shop?token={}", world.server.base_url, world.shop_secret),
        status_change(4102, 20, 2, "2026-02-02T11:00:00.000000Z"),
    )
    .await;
    assert_eq!(old.status, 202, "{old:?}");
    assert!(new_url.starts_with(&world.server.base_url), "{new_url}");
    let fresh = post_webhook(&world.http, &new_url, status_change(4103, 20, 2, "2026-02-02T11:00:00.000000Z")).await;
    assert_eq!(fresh.status, 202, "{fresh:?}");
}
