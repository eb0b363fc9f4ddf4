//! The HTTP edge of every service: a server loop that bounds what one client can hold, and the
//! client's address as the services should see it.
//!
//! - At most [`Limits::max_connections`] connections are served at once; further ones wait in
//!   the listen backlog until one ends.
//! - A client must send a request's headers within [`Limits::header_read_timeout`] (also while
//!   a kept-alive connection waits for its next request), and its body within
//!   [`Limits::body_read_timeout`] of the headers: a client that trickles bytes (slowloris)
//!   holds a connection for seconds, not forever.
//! - Each request carries its [`ClientAddr`]: the peer's address, or, when the peer is one of
//!   the trusted proxies, the address it forwarded in `X-Forwarded-For`.

mod body;
mod cidr;
mod client;
mod request;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use warp::Filter;

pub use body::BodyTimedOut;
pub use cidr::Cidr;
pub use client::{ClientAddr, TrustedProxies, client_addr};
pub use request::{percent_decode, read_limited};

/// What one client may hold.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub trusted_proxies: TrustedProxies,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

/// Serves `filter` (whose rejections are recovered into answers) on `listener` until `shutdown` completes, then lets the requests in flight
/// finish and returns.
pub async fn serve<F>(listener: TcpListener, filter: F, limits: Limits, shutdown: impl Future<Output = ()> + Send)
where
    F: Filter<Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let limits = Arc::new(limits);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = client::Service::new(warp::service(filter.clone()), peer, limits.clone());
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
        let connection = http.serve_connection(TokioIo::new(stream), hyper_util::service::TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
