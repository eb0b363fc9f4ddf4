//! The client's address, and the per-connection service that records it on every request.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use warp::Filter;

use crate::Limits;
use crate::body::TimedBody;
use crate::cidr::Cidr;

/// Where a request came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr {
    /// The client: the peer, or the address a trusted proxy forwarded.
    pub ip: IpAddr,
    /// The connection's peer.
    pub peer: IpAddr,
}

/// Proxies whose `X-Forwarded-For` is believed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<Cidr>);

impl TrustedProxies {
    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client behind `peer`: the right-most address of `X-Forwarded-For` that is not a
    /// trusted proxy, when `peer` is one; otherwise `peer` itself.
    pub fn client(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let Some(header) = forwarded_for else { return peer };
        let mut client = peer;
        for hop in header.rsplit(',') {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else { break };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// The request's [`ClientAddr`]; requests not served by [`crate::serve`] (warp's own test
/// harness) get the loopback address.
pub fn client_addr() -> impl Filter<Extract = (ClientAddr,), Error = Infallible> + Clone {
    warp::ext::optional::<ClientAddr>()
        .map(|addr: Option<ClientAddr>| addr.unwrap_or(ClientAddr { ip: IpAddr::from([127, 0, 0, 1]), peer: IpAddr::from([127, 0, 0, 1]) }))
}

/// Wraps warp's service: records the client's address and bounds the time the body may take.
#[derive(Clone)]
pub(crate) struct Service<S> {
    inner: S,
    peer: SocketAddr,
    limits: Arc<Limits>,
}

impl<S> Service<S> {
    pub(crate) fn new(inner: S, peer: SocketAddr, limits: Arc<Limits>) -> Self {
        Service { inner, peer, limits }
    }
}

impl<S> tower_service::Service<http::Request<hyper::body::Incoming>> for Service<S>
where
    S: tower_service::Service<http::Request<TimedBody<hyper::body::Incoming>>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        let forwarded = request.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok());
        let ip = self.limits.trusted_proxies.client(self.peer.ip(), forwarded);
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(ClientAddr { ip, peer: self.peer.ip() });
        self.inner.call(http::Request::from_parts(parts, TimedBody::new(body, self.limits.body_read_timeout)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let proxies = TrustedProxies(vec![Cidr::parse("10.0.0.0/8").unwrap()]);
        // Straight from the client: the header is whatever the client wrote.
        assert_eq!(proxies.client(ip("203.0.113.9"), Some("1.2.3.4")), ip("203.0.113.9"));
        // Through our proxy: the last hop it saw.
        assert_eq!(proxies.client(ip("10.0.0.2"), Some("1.2.3.4")), ip("1.2.3.4"));
        // A client cannot pose as another by prepending to the header.
        assert_eq!(proxies.client(ip("10.0.0.2"), Some("6.6.6.6, 1.2.3.4")), ip("1.2.3.4"));
        // Through two of our proxies.
        assert_eq!(proxies.client(ip("10.0.0.2"), Some("1.2.3.4, 10.0.0.7")), ip("1.2.3.4"));
        // Garbage stops the walk at the last good hop.
        assert_eq!(proxies.client(ip("10.0.0.2"), Some("nonsense")), ip("10.0.0.2"));
        assert_eq!(TrustedProxies::default().client(ip("10.0.0.2"), Some("1.2.3.4")), ip("10.0.0.2"));
    }
}
