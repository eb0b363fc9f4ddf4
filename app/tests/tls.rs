//! TLS to PostgreSQL when `database.url` asks for it, against a cluster of the test's own that
//! `scripts/services` starts with a self-signed certificate (`KSA_PG_SSL=1`): with
//! `sslmode=verify-full` and the certificate as `sslrootcert` the connection is encrypted and
//! the commands work over it; a certificate nobody vouched for is refused; `sslmode=disable`
//! stays plain.
//!
//! Needs `initdb` (Debian's postgresql, as every PostgreSQL test) and openssl.

mod common;

use common::Workspace;
use common::postgres::postgres_server;
use common::private_services::{PrivateServices, free_ports};
use sqlx::{Connection, PgConnection};

async fn encrypted(url: &str) -> bool {
    let mut connection = PgConnection::connect(url).await.unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetch_one(&mut connection).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_use_tls_when_the_url_asks_and_verify_the_certificate() {
    if postgres_server("tls").is_none() {
        return;
    }
    let [port, probe_port] = free_ports();
    // The probe port is one nobody listens on: the script must start a cluster, not reuse one.
    let cluster =
        PrivateServices::new(&[("KSA_PG_PORT", &port.to_string()), ("KSA_PG_PROBE_PORT", &probe_port.to_string()), ("KSA_PG_SSL", "1")]);
    let exports = tokio::task::block_in_place(|| cluster.up("postgres"));
    let export =
        |name: &str| exports.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_else(|| panic!("no {name}: {exports:?}"));
    let (url, certificate) = (export("DATABASE_URL"), export("KSA_PG_SSL_CERT"));
    assert!(url.contains(&format!(":{port}/")), "scripts/services found another server: {url}");
    let verified = format!("{url}?sslmode=verify-full&sslrootcert={certificate}");

    assert!(encrypted(&verified).await, "verify-full is encrypted");
    assert!(encrypted(&format!("{url}?sslmode=require")).await, "require is encrypted");
    assert!(!encrypted(&format!("{url}?sslmode=disable")).await, "disable stays plain");
    let refused = PgConnection::connect(&format!("{url}?sslmode=verify-full")).await.err().expect("an unknown certificate is refused");
    assert!(refused.to_string().to_lowercase().contains("certificate"), "{refused}");

    let ws = Workspace::new();
    let migrate = common::run(ws.command(["migrate"]).env("KSA__DATABASE__URL", &verified));
    migrate.assert_success();
    let add = common::run(ws.command(["project", "add", "--slug", "shop", "--name", "Shop"]).env("KSA__DATABASE__URL", &verified));
    add.assert_success();
    let unverified = common::run(ws.command(["project", "list"]).env("KSA__DATABASE__URL", format!("{url}?sslmode=verify-full")));
    unverified.assert_failure_mentioning(&["certificate"]);
}
