//! Outbound HTTP from guests (`wasi:http/outgoing-handler`): the resolver hook, the
//! allow-list, and an HTTP/1 sender, over TLS for `https://` (the node's client
//! configuration, `crate::tls`). Everything a guest sends goes through
//! [`OutboundPolicy::send`]; a denied request fails with `HttpRequestDenied` and opens nothing.
//! The allow-list decides by host and port whatever the scheme; a pattern without a port
//! admits the scheme's default port (80 for `http`, 443 for `https`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::uri::Scheme;
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::egress::EgressPolicy;
use crate::error::{BodyError, WasmError};
use crate::tls::OutboundTls;

/// Body type of outbound requests and responses seen by an [`OutboundResolver`].
pub type OutboundBody = UnsyncBoxBody<Bytes, BodyError>;

/// What an [`OutboundResolver`] decided about one outbound request.
pub enum Resolution {
    /// Not the resolver's business: the handler's `allowed_outbound_hosts` decide, on this
    /// (possibly rewritten) request.
    Pass(http::Request<OutboundBody>),
    /// Resolved (e.g. an in-cluster `svc.ns` name rewritten to an endpoint): send this request
    /// as is, without checking `allowed_outbound_hosts`. The resolver vouches for it.
    Send(http::Request<OutboundBody>),
    /// Served by the resolver itself: this response goes to the guest, nothing is sent.
    Respond(http::Response<OutboundBody>),
    /// Refused: the guest sees `HttpRequestDenied`.
    Deny,
}

/// A hook that sees every outbound request before the allow-list does.
///
/// The request URI is absolute (scheme and authority set). Implementations must not block:
/// return a future.
pub trait OutboundResolver: Send + Sync + 'static {
    /// Decide what happens to `req`.
    fn resolve(
        &self,
        req: http::Request<OutboundBody>,
    ) -> Pin<Box<dyn Future<Output = Resolution> + Send>>;
}

/// Default connect / first-byte timeouts when the guest sets no request options.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortRule {
    /// No port in the pattern: the scheme's default port only (80 / 443).
    Default,
    /// `host:*`.
    Any,
    Is(u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostRule {
    /// `*`: every host.
    Any,
    Exact(String),
    /// `*.example.com`: strict subdomains of `example.com` (stored as `.example.com`).
    Suffix(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPattern {
    host: HostRule,
    port: PortRule,
}

impl HostPattern {
    fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        if s == "*" {
            return Ok(Self {
                host: HostRule::Any,
                port: PortRule::Any,
            });
        }
        if s.contains("://") || s.contains('/') {
            return Err("expected a host or host:port, without scheme or path".into());
        }
        let parse_port = |p: &str| -> Result<PortRule, String> {
            if p == "*" {
                Ok(PortRule::Any)
            } else {
                p.parse()
                    .map(PortRule::Is)
                    .map_err(|_| format!("invalid port {p:?}"))
            }
        };
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            // IPv6 literal: `[::1]` or `[::1]:8080`.
            let (h, after) = rest.split_once(']').ok_or("unclosed `[`")?;
            let port = match after.strip_prefix(':') {
                Some(p) => parse_port(p)?,
                None if after.is_empty() => PortRule::Default,
                None => return Err(format!("unexpected {after:?} after `]`")),
            };
            (format!("[{h}]"), port)
        } else {
            match s.split_once(':') {
                Some((h, p)) => (h.to_string(), parse_port(p)?),
                None => (s.clone(), PortRule::Default),
            }
        };
        if host.is_empty() {
            return Err("empty host".into());
        }
        let host = match host.strip_prefix("*.") {
            Some(rest) if !rest.is_empty() && !rest.contains('*') => {
                HostRule::Suffix(format!(".{rest}"))
            }
            _ if host.contains('*') => {
                return Err("`*` is only allowed as a whole label prefix: `*.example.com`".into());
            }
            _ => HostRule::Exact(host),
        };
        Ok(Self { host, port })
    }

    fn matches(&self, host: &str, port: u16, default_port: u16) -> bool {
        let host_ok = match &self.host {
            HostRule::Any => true,
            HostRule::Exact(h) => h == host,
            HostRule::Suffix(suffix) => host.ends_with(suffix.as_str()),
        };
        let port_ok = match self.port {
            PortRule::Default => port == default_port,
            PortRule::Any => true,
            PortRule::Is(p) => p == port,
        };
        host_ok && port_ok
    }
}

/// A handler's outbound policy; shared by all its requests.
pub(crate) struct OutboundPolicy {
    allowed: Vec<HostPattern>,
    resolver: Option<Arc<dyn OutboundResolver>>,
    /// The node's TLS client (one per engine), for `https://`.
    tls: OutboundTls,
    /// The addresses the allow-listed names may resolve to (the node's policy).
    egress: EgressPolicy,
}

impl OutboundPolicy {
    pub(crate) fn new(
        allowed: &[String],
        resolver: Option<Arc<dyn OutboundResolver>>,
        tls: OutboundTls,
        egress: EgressPolicy,
    ) -> Result<Self, WasmError> {
        let allowed = allowed
            .iter()
            .enumerate()
            .map(|(i, p)| {
                HostPattern::parse(p).map_err(|e| {
                    WasmError::InvalidConfig(format!("allowed_outbound_hosts[{i}]: {p:?}: {e}"))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            allowed,
            resolver,
            tls,
            egress,
        })
    }

    /// Whether the allow-list admits this absolute URI.
    pub(crate) fn allows(&self, uri: &http::Uri) -> bool {
        let Some(authority) = uri.authority() else {
            return false;
        };
        let default_port = if uri.scheme() == Some(&Scheme::HTTPS) {
            443
        } else {
            80
        };
        let port = authority.port_u16().unwrap_or(default_port);
        let host = authority.host().to_ascii_lowercase();
        self.allowed
            .iter()
            .any(|p| p.matches(&host, port, default_port))
    }

    async fn send(
        self: Arc<Self>,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<SendResult, HttpError> {
        let request = match &self.resolver {
            None => request,
            Some(resolver) => match resolver.resolve(request.map(to_outbound_body)).await {
                Resolution::Pass(req) => req.map(to_wasi_body),
                // The resolver's own endpoints (in-cluster Pods): not the guest's choice.
                Resolution::Send(req) => {
                    return send_http1(&self.tls, None, req.map(to_wasi_body), options).await;
                }
                Resolution::Respond(resp) => {
                    let done: IoFuture = Box::new(async { Ok(()) });
                    return Ok((resp.map(to_wasi_body), done));
                }
                Resolution::Deny => return Err(HttpError::HttpRequestDenied),
            },
        };
        if !self.allows(request.uri()) {
            tracing::debug!(uri = %request.uri(), "outbound request denied by allowed_outbound_hosts");
            return Err(HttpError::HttpRequestDenied);
        }
        send_http1(&self.tls, Some(&self.egress), request, options).await
    }
}

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
type SendResult = (http::Response<WasiBody>, IoFuture);

fn to_outbound_body(body: WasiBody) -> OutboundBody {
    body.map_err(|e| BodyError(e.to_string())).boxed_unsync()
}

fn to_wasi_body(body: OutboundBody) -> WasiBody {
    body.map_err(|e| HttpError::InternalError(Some(e.0)))
        .boxed_unsync()
}

/// Sends a request over a fresh HTTP/1.1 connection: TLS (verified against the URL's host)
/// for `https`, plain TCP for `http`. The TLS handshake shares the connect timeout. With an
/// `egress` policy the host is resolved here and the connection goes to the first address
/// the policy permits; none permitted is `HttpRequestDenied`.
async fn send_http1(
    tls: &OutboundTls,
    egress: Option<&EgressPolicy>,
    mut req: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<SendResult, HttpError> {
    let https = match req.uri().scheme() {
        Some(s) if *s == Scheme::HTTPS => true,
        None => false,
        Some(s) if *s == Scheme::HTTP => false,
        // wasi:http lets a guest name any scheme; nothing but these two is spoken here.
        Some(_) => return Err(HttpError::HttpRequestUriInvalid),
    };
    let authority = req
        .uri()
        .authority()
        .ok_or(HttpError::HttpRequestUriInvalid)?;
    let host = authority.host().to_string();
    let addr = format!(
        "{host}:{}",
        authority.port_u16().unwrap_or(if https { 443 } else { 80 })
    );
    let connect_timeout = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let first_byte_timeout = options
        .and_then(|o| o.first_byte_timeout)
        .unwrap_or(DEFAULT_FIRST_BYTE_TIMEOUT);

    let connect = async {
        match egress {
            None => tokio::net::TcpStream::connect(&addr)
                .await
                .map_err(HttpError::Connect),
            Some(policy) => {
                let resolved: Vec<std::net::SocketAddr> = tokio::net::lookup_host(&addr)
                    .await
                    .map_err(HttpError::Connect)?
                    .collect();
                let Some(target) = policy.choose(resolved.iter().copied()) else {
                    tracing::debug!(%addr, ?resolved, "outbound request denied: the name resolves only to addresses the node refuses");
                    return Err(HttpError::HttpRequestDenied);
                };
                tokio::net::TcpStream::connect(target)
                    .await
                    .map_err(HttpError::Connect)
            }
        }
    };
    let stream = tokio::time::timeout(connect_timeout, connect)
        .await
        .map_err(|_| HttpError::ConnectionTimeout)??;

    // The request line carries only the path: the authority went into the Host header.
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *req.uri_mut() = http::Uri::try_from(path).map_err(|_| HttpError::HttpRequestUriInvalid)?;

    if https {
        let stream = tokio::time::timeout(connect_timeout, tls.connect(&host, stream))
            .await
            .map_err(|_| HttpError::ConnectionTimeout)??;
        exchange(
            TokioIo::new(stream),
            req,
            connect_timeout,
            first_byte_timeout,
        )
        .await
    } else {
        exchange(
            TokioIo::new(stream),
            req,
            connect_timeout,
            first_byte_timeout,
        )
        .await
    }
}

/// The HTTP/1.1 handshake on `io`, then one request.
async fn exchange<IO>(
    io: IO,
    req: http::Request<WasiBody>,
    connect_timeout: Duration,
    first_byte_timeout: Duration,
) -> Result<SendResult, HttpError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        tokio::time::timeout(connect_timeout, hyper::client::conn::http1::handshake(io))
            .await
            .map_err(|_| HttpError::ConnectionTimeout)??;
    // Aborted when wasi-http drops the I/O future (the guest dropped the response).
    let conn = wasmtime_wasi::runtime::spawn(conn);
    let resp = tokio::time::timeout(first_byte_timeout, sender.send_request(req))
        .await
        .map_err(|_| HttpError::ConnectionReadTimeout)??;
    let io: IoFuture = Box::new(async move { conn.await.map_err(HttpError::from) });
    Ok((resp.map(|b| b.map_err(HttpError::from).boxed_unsync()), io))
}

/// The `WasiHttpHooks` of each store: routes `send_request` through the handler's policy.
pub(crate) struct OutboundHooks {
    pub(crate) policy: Arc<OutboundPolicy>,
}

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = Result<SendResult, HttpError>> + Send> {
        Box::new(self.policy.clone().send(request, options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls() -> OutboundTls {
        OutboundTls::new(None).expect("TLS client")
    }

    fn policy(allowed: &[&str]) -> OutboundPolicy {
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        OutboundPolicy::new(&allowed, None, tls(), EgressPolicy::default()).expect("valid patterns")
    }

    fn allows(p: &OutboundPolicy, uri: &str) -> bool {
        p.allows(&uri.parse().expect("valid uri"))
    }

    #[test]
    fn an_empty_allow_list_denies_everything() {
        let p = policy(&[]);
        assert!(!allows(&p, "http://example.com/"));
        assert!(!allows(&p, "http://127.0.0.1:8080/"));
    }

    #[test]
    fn a_bare_host_allows_only_the_default_port_of_the_scheme() {
        let p = policy(&["api.example.com"]);
        assert!(allows(&p, "https://api.example.com/x"));
        assert!(allows(&p, "http://API.example.com/x"));
        assert!(!allows(&p, "http://api.example.com:8080/x"));
        assert!(!allows(&p, "http://other.example.com/x"));
    }

    #[test]
    fn a_wildcard_matches_subdomains_but_not_the_apex() {
        let p = policy(&["*.example.com"]);
        assert!(allows(&p, "https://a.example.com/"));
        assert!(allows(&p, "https://a.b.example.com/"));
        assert!(!allows(&p, "https://example.com/"));
        assert!(!allows(&p, "https://evilexample.com/"));
    }

    #[test]
    fn host_port_patterns_match_that_port_or_any_with_star() {
        let p = policy(&["127.0.0.1:8080", "svc.ns:*"]);
        assert!(allows(&p, "http://127.0.0.1:8080/"));
        assert!(!allows(&p, "http://127.0.0.1:8081/"));
        assert!(allows(&p, "http://svc.ns:9999/"));
        assert!(allows(&p, "http://svc.ns/"));
    }

    #[test]
    fn a_lone_star_allows_everything() {
        let p = policy(&["*"]);
        assert!(allows(&p, "http://anything:1/"));
    }

    #[test]
    fn malformed_patterns_are_rejected_with_their_index() {
        let err = OutboundPolicy::new(
            &["ok.com".into(), "http://x.com/".into()],
            None,
            tls(),
            EgressPolicy::default(),
        )
        .err()
        .expect("invalid");
        assert!(
            err.to_string().contains("allowed_outbound_hosts[1]"),
            "{err}"
        );
        assert!(
            OutboundPolicy::new(&["a*.com".into()], None, tls(), EgressPolicy::default()).is_err()
        );
        assert!(
            OutboundPolicy::new(
                &["a.com:notaport".into()],
                None,
                tls(),
                EgressPolicy::default()
            )
            .is_err()
        );
    }
}
