//! What a hostile or careless client cannot do to a running server: ask for a timeline measured
//! at an absurd instant, hold connections by trickling bytes, or take every connection.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::http::{client, get, post_webhook};
use common::server::{Instance, Server};
use common::status_change;

/// Short limits, so that the test waits seconds, not the defaults' tens of seconds.
const LIMITS: [(&str, &str); 3] = [
    ("KSA__SERVER__HEADER_READ_TIMEOUT_SECONDS", "2"),
    ("KSA__SERVER__BODY_READ_TIMEOUT_SECONDS", "2"),
    ("KSA__SERVER__MAX_CONNECTIONS", "3"),
];

fn address(server: &Server) -> String {
    server.base_url.trim_start_matches("http://").to_owned()
}

/// Writes `bytes` one a second until the server closes the connection; returns how many it
/// took. Fails the test when the server still reads after `patience`.
fn trickle(stream: &mut TcpStream, bytes: &[u8], patience: Duration) -> usize {
    let started = Instant::now();
    stream.set_read_timeout(Some(Duration::from_millis(1000))).unwrap();
    for (i, byte) in bytes.iter().enumerate() {
        if stream.write_all(&[*byte]).is_err() {
            return i;
        }
        let mut answer = [0u8; 512];
        match stream.read(&mut answer) {
            // Closed, or an error answer followed by the close.
            Ok(_) => return i + 1,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {}
            Err(_) => return i + 1,
        }
        assert!(started.elapsed() < patience, "the server still waits for a client that sends one byte a second");
    }
    panic!("the whole request went through, one byte a second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_one_byte_a_second_is_cut_off_and_others_are_served_meanwhile() {
    let instance = Instance::sqlite();
    instance.add_project("shop", &[]);
    let server = instance.start_with(&LIMITS);
    let head = format!("GET /api/me HTTP/1.1\r\nHost: {}\r\nX-Padding: {}\r\n\r\n", address(&server), "x".repeat(100));
    let mut slow = TcpStream::connect(address(&server)).unwrap();
    let trickler = std::thread::spawn(move || trickle(&mut slow, head.as_bytes(), Duration::from_secs(30)));
    // Meanwhile a normal client gets its answer.
    let healthy = get(&client(), &format!("{}/healthz", server.base_url)).await;
    assert_eq!(healthy.status, 200);
    let sent = trickler.join().unwrap();
    assert!(sent < 40, "the slow client was allowed {sent} bytes of headers");

    // A body that trickles after complete headers is cut off too.
    let mut slow = TcpStream::connect(address(&server)).unwrap();
    let head = format!(
        "POST /webhooks/keycrm/shop?token=x HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n",
        address(&server)
    );
    slow.write_all(head.as_bytes()).unwrap();
    let body = vec![b' '; 200];
    let sent = std::thread::spawn(move || trickle(&mut slow, &body, Duration::from_secs(30))).join().unwrap();
    assert!(sent < 40, "the slow body was read for {sent} seconds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_take_every_slot() {
    let instance = Instance::sqlite();
    instance.add_project("shop", &[]);
    let server = instance.start_with(&LIMITS);
    // As many silent connections as the server serves at once.
    let idle: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(address(&server)).unwrap()).collect();
    // A real request is still answered: the silent ones are closed when their time is up.
    let healthy = get(&client(), &format!("{}/healthz", server.base_url)).await;
    assert_eq!(healthy.status, 200, "{healthy:?}");
    for mut stream in idle {
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buffer = [0u8; 64];
        let closed = matches!(stream.read(&mut buffer), Ok(0) | Err(_)) || stream.read(&mut buffer).is_ok_and(|n| n == 0);
        assert!(closed, "a silent connection was kept open");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeline_as_of_an_absurd_instant_is_refused_naming_as_of() {
    let instance = Instance::sqlite();
    let shop = instance.add_project("shop", &[]);
    let server = instance.start();
    let http = client();
    post_webhook(&http, &server.webhook_url(&shop), status_change(7001, 20, 2, "2026-02-02T10:00:00.000000Z"))
        .await
        .assert_accepted_as("accepted");
    common::http::wait_until_processed(&http, &server, "shop", common::http::Processed { orders: 1, events: 1 }).await;
    for as_of in ["9999-12-31T00:00:00Z", "2000-01-01T00:00:00Z", "2026-01-27T00:00:00Z"] {
        for path in ["/api/orders?project=shop", "/api/orders/7001/timeline?project=shop"] {
            let reply = get(&http, &format!("{}{path}&as_of={as_of}", server.base_url)).await;
            reply.assert_error(400);
            assert_eq!(reply.body["field"], "as_of", "{path} at {as_of}: {reply:?}");
        }
    }
    // Less than a day before the first order started is still fine (nothing is there yet).
    let early = get(&http, &format!("{}/api/orders?project=shop&as_of=2026-01-28T12:00:00Z", server.base_url)).await;
    assert_eq!(early.status, 200, "{early:?}");
}
