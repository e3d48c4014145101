//! The node's Service proxy for Linux containers: an HTTP forward proxy on the Pod bridge's
//! address (`http://10.89.0.1:15080`, each container's `HTTP_PROXY`), so a container reaches
//! in-cluster Services by name (`GET http://backend/`, `http://backend.ns`,
//! `http://backend.ns.svc.cluster.local`, with or without a port) as a Wasm app does.
//!
//! A request is routed exactly like a Wasm app's outbound call: the caller's namespace is
//! that of the Pod holding the request's source address (the agent keeps the map), the name
//! is resolved by [`RouteTable::resolve_cluster_name`](super::RouteTable::resolve_cluster_name)
//! through [`ServiceCaller::call`], and the request is dispatched to one Ready endpoint. Any
//! other host is refused with 403 and nothing is sent anywhere: this is no general proxy,
//! and Pod traffic stays on this machine. `CONNECT` (HTTPS through the proxy) is refused
//! too: Services are plain HTTP inside the cluster.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::body::Body;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;

use super::{Dispatcher, X_KETCH_POD, X_KETCH_PORT, strip_hop_by_hop};
use ketch_workload::ServiceCaller;

/// The namespace of each Pod address on this node's bridge: how the proxy knows who calls.
#[derive(Debug, Default)]
pub struct PodAddresses(RwLock<HashMap<IpAddr, Arc<str>>>);

impl PodAddresses {
    /// A Pod of `namespace` got address `ip` (on attach, and when a restarted agent finds its
    /// network again).
    pub fn insert(&self, ip: IpAddr, namespace: &str) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ip, Arc::from(namespace));
    }

    /// The Pod at `ip` is gone (before its address is released, so a new Pod given the same
    /// address is never removed by the old one).
    pub fn remove(&self, ip: IpAddr) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ip);
    }

    fn namespace(&self, ip: IpAddr) -> Option<Arc<str>> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&ip)
            .cloned()
    }
}

/// Why the proxy does not forward a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The source address is no Pod of this node.
    UnknownCaller(IpAddr),
    /// `CONNECT`: tunnels (HTTPS) are not proxied.
    Connect,
    /// An absolute URL with another scheme than `http`.
    Scheme(String),
    /// No host in the request line nor a `Host` header.
    NoHost,
    /// The host is not an in-cluster Service name.
    NotAService(String),
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::NoHost => StatusCode::BAD_REQUEST,
            Refusal::Connect => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::UnknownCaller(_) | Refusal::Scheme(_) | Refusal::NotAService(_) => {
                StatusCode::FORBIDDEN
            }
        }
    }

    fn message(&self) -> String {
        match self {
            Refusal::UnknownCaller(ip) => format!(
                "ketch service proxy: {ip} is not a Pod on this node; the proxy serves this node's containers only"
            ),
            Refusal::Connect => "ketch service proxy: CONNECT is not supported: the proxy reaches in-cluster Services over plain http:// only".into(),
            Refusal::Scheme(s) => format!(
                "ketch service proxy: {s}:// is not supported: the proxy reaches in-cluster Services over plain http:// only"
            ),
            Refusal::NoHost => "ketch service proxy: the request names no host (absolute URL or Host header)".into(),
            Refusal::NotAService(host) => format!(
                "ketch service proxy: {host:?} is not a Service of this cluster; the proxy only reaches Services \
                 (svc, svc.namespace, svc.namespace.svc.cluster.local) and sends nothing outside this machine"
            ),
        }
    }

    fn response(&self) -> Response<Body> {
        let mut r = Response::new(Body::from(format!("{}\n", self.message())));
        *r.status_mut() = self.status();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    }
}

/// The host (with its port, if any) a proxied request is for: the authority of an
/// absolute-form request line (`GET http://backend/path`), else the `Host` header (a client
/// that talks to the proxy address as to a server).
///
/// # Errors
/// [`Refusal::Connect`], [`Refusal::Scheme`] for anything but `http`, [`Refusal::NoHost`].
pub(crate) fn target_host(
    method: &Method,
    uri: &Uri,
    host_header: Option<&HeaderValue>,
) -> Result<String, Refusal> {
    if method == Method::CONNECT {
        return Err(Refusal::Connect);
    }
    if let Some(scheme) = uri.scheme_str()
        && !scheme.eq_ignore_ascii_case("http")
    {
        return Err(Refusal::Scheme(scheme.to_ascii_lowercase()));
    }
    let host = match uri.authority() {
        Some(a) => a.as_str().to_string(),
        None => host_header
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .unwrap_or_default(),
    };
    // userinfo (`user@host`) is not a Service's business.
    let host = host
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    if host.is_empty() {
        return Err(Refusal::NoHost);
    }
    Ok(host)
}

impl Dispatcher {
    /// Serves one request that arrived on the Service proxy listener from `peer`.
    pub(crate) async fn serve_proxy(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Body> {
        let start = Instant::now();
        let max = usize::try_from(self.cfg.max_body).unwrap_or(usize::MAX);
        let mut req = req.map(|b| Body::new(http_body_util::Limited::new(b, max)));
        let h = req.headers_mut();
        strip_hop_by_hop(h);
        // Gateway-to-gateway headers are not a container's to send.
        for name in [X_KETCH_POD, X_KETCH_PORT] {
            h.remove(name);
        }
        h.remove(header::PROXY_AUTHORIZATION);
        let routed = match self.pod_addresses.namespace(peer.ip()) {
            None => Err(Refusal::UnknownCaller(peer.ip())),
            Some(ns) => target_host(req.method(), req.uri(), req.headers().get(header::HOST))
                .map(|host| (ns, host)),
        };
        let (ns, host) = match routed {
            Ok(x) => x,
            Err(refusal) => return self.refuse(&refusal, peer, start),
        };
        if !req.headers().contains_key(header::HOST)
            && let Ok(v) = HeaderValue::from_str(&host)
        {
            req.headers_mut().insert(header::HOST, v);
        }
        let mut resp = match self.clone().call(&ns, &host, req) {
            Ok(fut) => fut.await,
            Err(_) => return self.refuse(&Refusal::NotAService(host), peer, start),
        };
        strip_hop_by_hop(resp.headers_mut());
        resp
    }

    fn refuse(&self, refusal: &Refusal, peer: SocketAddr, start: Instant) -> Response<Body> {
        tracing::debug!(%peer, reason = %refusal.message(), "service proxy refused a request");
        let resp = refusal.response();
        self.metrics
            .observe("-", resp.status().as_u16(), start.elapsed());
        resp
    }
}

/// Binds `addr` with `IP_FREEBIND`: the bridge address exists only once the bridge plugin
/// has created the bridge (the first container Pod's attach), and the proxy must listen on
/// that address alone, not on all of them. The socket is bound before and starts receiving
/// as soon as the address appears; if the bridge is deleted and made again, it keeps
/// working.
pub fn bind_freebind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    match addr {
        SocketAddr::V4(_) => socket.set_freebind_v4(true)?,
        SocketAddr::V6(_) => socket.set_freebind_v6(true)?,
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(method: Method, uri: &str, host: Option<&str>) -> Result<String, Refusal> {
        let uri: Uri = uri.parse().unwrap();
        let h = host.map(|h| HeaderValue::from_str(h).unwrap());
        target_host(&method, &uri, h.as_ref())
    }

    #[test]
    fn the_target_is_the_absolute_url_s_authority_or_the_host_header() {
        assert_eq!(host(Method::GET, "http://hello/", None).unwrap(), "hello");
        assert_eq!(
            host(Method::GET, "http://hello.default:8080/x?y", Some("other")).unwrap(),
            "hello.default:8080",
            "the request line wins over Host"
        );
        assert_eq!(
            host(
                Method::POST,
                "HTTP://hello.default.svc.cluster.local/",
                None
            )
            .unwrap(),
            "hello.default.svc.cluster.local"
        );
        assert_eq!(
            host(Method::GET, "http://me:pw@hello:80/", None).unwrap(),
            "hello:80"
        );
        assert_eq!(
            host(Method::GET, "/path", Some("hello.ns")).unwrap(),
            "hello.ns"
        );
    }

    #[test]
    fn tunnels_other_schemes_and_hostless_requests_are_refused() {
        assert_eq!(
            host(Method::CONNECT, "hello:443", None),
            Err(Refusal::Connect)
        );
        assert_eq!(
            host(Method::GET, "https://hello/", None),
            Err(Refusal::Scheme("https".into()))
        );
        assert_eq!(host(Method::GET, "/", None), Err(Refusal::NoHost));
        assert_eq!(host(Method::GET, "/", Some(" ")), Err(Refusal::NoHost));
        assert_eq!(Refusal::Connect.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(Refusal::NoHost.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn refusals_say_why_and_forbid() {
        let r = Refusal::NotAService("example.com".into());
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(
            r.message()
                .contains("\"example.com\" is not a Service of this cluster"),
            "{}",
            r.message()
        );
        let r = Refusal::UnknownCaller("10.0.0.9".parse().unwrap());
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.message().contains("10.0.0.9 is not a Pod on this node"));
    }

    #[test]
    fn callers_are_known_by_address_until_removed() {
        let m = PodAddresses::default();
        let ip: IpAddr = "10.89.0.7".parse().unwrap();
        assert_eq!(m.namespace(ip), None);
        m.insert(ip, "shop");
        assert_eq!(m.namespace(ip).as_deref(), Some("shop"));
        m.insert(ip, "other");
        assert_eq!(m.namespace(ip).as_deref(), Some("other"));
        m.remove(ip);
        assert_eq!(m.namespace(ip), None);
    }

    #[tokio::test]
    async fn binding_works_before_the_address_exists() {
        // TEST-NET-1: assigned to no interface here, as the bridge address before the first
        // Pod. Without IP_FREEBIND this bind fails with EADDRNOTAVAIL.
        let addr: SocketAddr = "192.0.2.77:0".parse().unwrap();
        assert!(std::net::TcpListener::bind(addr).is_err());
        let l = bind_freebind(addr).unwrap();
        assert_eq!(l.local_addr().unwrap().ip(), addr.ip());
        tokio::net::TcpListener::from_std(l).unwrap();
    }
}
