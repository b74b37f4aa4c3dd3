//! Who the caller is, for the per-peer failure budgets: the TCP peer's
//! address, or, when that peer is a trusted proxy (`--trusted-proxies`), the
//! nearest hop of `x-forwarded-for` that is not one (what nginx's
//! `real_ip_recursive` does). Without trusted proxies the header is ignored:
//! anyone can write it.

use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use ipnet::IpNet;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::server::TcpConnectInfo;
use tower::Service;

/// The caller's address as resolved through trusted proxies; a request
/// extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The networks whose connections are proxies that may say, in
/// `x-forwarded-for`, whom they forward.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<Vec<IpNet>>);

impl TrustedProxies {
    /// Parses CIDRs (`10.0.0.0/8`) or single addresses; the error names the
    /// entry.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<TrustedProxies, String> {
        let nets = entries
            .iter()
            .map(|e| {
                let e = e.as_ref().trim();
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("`{e}` is not an address or a CIDR (e.g. 10.0.0.0/8, fd00::/8)"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedProxies(Arc::new(nets)))
    }

    /// Whether `ip` (IPv4-mapped IPv6 as IPv4) is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The caller behind `peer`: the rightmost `x-forwarded-for` address that
    /// is not a trusted proxy, when `peer` is one; else `peer`.
    pub fn resolve(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        let mut caller = peer;
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.parse::<IpAddr>() else { break };
            caller = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        caller
    }

    /// `inner` with every request's [`ClientAddr`] set (when there are
    /// trusted proxies; else [`client_ip`] reads the TCP peer).
    pub fn service<S>(&self, inner: S) -> Resolved<S> {
        Resolved { inner, trusted: self.clone() }
    }
}

/// A service whose requests carry the resolved [`ClientAddr`].
#[derive(Debug, Clone)]
pub struct Resolved<S> {
    inner: S,
    trusted: TrustedProxies,
}

impl<S: NamedService> NamedService for Resolved<S> {
    const NAME: &'static str = S::NAME;
}

impl<S: Service<Request<Body>>> Service<Request<Body>> for Resolved<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        if !self.trusted.0.is_empty() {
            let peer = req.extensions().get::<TcpConnectInfo>().and_then(|i| i.remote_addr()).map(|a| a.ip());
            if let Some(peer) = peer {
                let caller = self.trusted.resolve(peer, req.headers());
                req.extensions_mut().insert(ClientAddr(caller));
            }
        }
        self.inner.call(req)
    }
}

/// The caller's address: resolved through trusted proxies if configured,
/// else the TCP peer's (the TLS peer's over TLS).
pub fn client_ip<T>(req: &tonic::Request<T>) -> Option<IpAddr> {
    req.extensions().get::<ClientAddr>().map(|c| c.0).or_else(|| req.remote_addr().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_caller() {
        let t = TrustedProxies::parse(&["10.0.0.0/8", "fd00::/8", "192.0.2.7"]).unwrap();
        // Not from a proxy: the header is whatever the caller wrote.
        assert_eq!(t.resolve(ip("203.0.113.9"), &headers(&["1.2.3.4"])), ip("203.0.113.9"));
        // From a proxy: the rightmost untrusted hop; what the caller put in
        // front of it is ignored.
        assert_eq!(t.resolve(ip("10.1.1.1"), &headers(&["6.6.6.6, 198.51.100.4, 10.2.2.2"])), ip("198.51.100.4"));
        assert_eq!(t.resolve(ip("10.1.1.1"), &headers(&["6.6.6.6", "198.51.100.4"])), ip("198.51.100.4"));
        assert_eq!(t.resolve(ip("::ffff:192.0.2.7"), &headers(&["2001:db8::1"])), ip("2001:db8::1"));
        // A proxy with no (or a garbled) header: the proxy itself.
        assert_eq!(t.resolve(ip("10.1.1.1"), &headers(&[])), ip("10.1.1.1"));
        assert_eq!(t.resolve(ip("10.1.1.1"), &headers(&["nonsense"])), ip("10.1.1.1"));
        // Every hop trusted: the leftmost.
        assert_eq!(t.resolve(ip("10.1.1.1"), &headers(&["10.3.3.3, 10.2.2.2"])), ip("10.3.3.3"));
    }

    #[test]
    fn bad_entries_are_named() {
        let e = TrustedProxies::parse(&["10.0.0.0/8", "10.0.0/33"]).unwrap_err();
        assert!(e.contains("`10.0.0/33`"), "{e}");
    }
}
