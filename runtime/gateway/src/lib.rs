//! `ketch-gateway` is the node gateway: an HTTP/1.1 + HTTP/2 (h2c) listener on every node
//! that routes requests to Services by Host (`<svc>.<ns>.<domain>`), Ingress rules,
//! `ketch.dev/path-prefix` annotations and NodePorts, and load-balances them round robin
//! over the Ready endpoints.
//!
//! It reaches the Pods of its node through the agent's [`PodRegistry`] (shared, never the
//! agent itself), and the cluster's Services through the route table its [`reflect`]or
//! keeps from the API.
//!
//! A Wasm endpoint on this node is invoked in-process (no socket hop); an endpoint on another
//! node is proxied to that node's gateway, which invokes it there (the `x-ketch-pod` header,
//! authenticated by the cluster token, says which Pod). The same [`Dispatcher`] serves Wasm
//! guests' outbound calls to in-cluster names (`http://svc.ns`), so those never leave the
//! process either when the endpoint is local.
//!
//! Linux containers reach Services by name through the [`proxy`] listener on the Pod
//! bridge's address, which resolves names the same way.
//!
//! Ingress TLS is terminated on a second listener ([`Listener::bind_tls`]): the certificate
//! is chosen by SNI from the Ingresses' `kubernetes.io/tls` Secrets ([`tls`]), HTTP/2 or
//! HTTP/1.1 by ALPN, and the requests are routed exactly as on the plain listener.
//!
//! The hot path is plain hyper: a route-table read (an `Arc` swapped in whole by
//! [`reflect`]), an atomic round-robin step, and the invoke. Bodies stream both ways.

mod access;
mod error;
mod metrics;
pub mod proxy;
mod reflect;
pub mod retry;
pub mod routes;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::watch;

pub use error::GatewayError;
pub use metrics::GatewayMetrics;
pub use routes::{Backend, Route, RouteTable, ServiceRoute, Target};

use ketch_api::format::error_chain;
use ketch_workload::{PodKey, PodRegistry, ServiceCaller, TargetPort, Workload};

/// Peer gateways name the Pod to invoke with this header...
pub const X_KETCH_POD: HeaderName = HeaderName::from_static("x-ketch-pod");
/// With `x-ketch-pod`: the target port of the endpoint (a Linux container's port).
pub const X_KETCH_PORT: HeaderName = HeaderName::from_static("x-ketch-port");
/// ...and is believed only on the peer listener, where mutual TLS proves the sender is a
/// node (or server) of the cluster.
/// On a peer gateway's answer to an `x-ketch-pod` request: the Pod never saw the request
/// (not on that node, not running, at its limit), so the sender may try another endpoint.
/// The peer removes it from the Pod's own responses, and the sender from what it returns.
pub const X_KETCH_UNDELIVERED: HeaderName = HeaderName::from_static("x-ketch-undelivered");
/// Request id: kept when the client sends one, generated otherwise; echoed on the response.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Default request body limit.
pub const DEFAULT_MAX_BODY: u64 = 16 << 20;
/// Default time to the response head.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time to connect to a peer gateway: a node that does not answer a connect within
/// it is treated as down for this request (tried elsewhere) and for [`retry::EJECT_FOR`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default Service host suffix; browsers and curl resolve `*.localhost` to loopback.
pub const DEFAULT_DOMAIN: &str = "ketch.localhost";

/// How the gateway is set up.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where to listen; `None` runs no listener (in-cluster calls from Wasm still work).
    pub listen: Option<SocketAddr>,
    /// Where the TLS listener (Ingress `spec.tls`) listens; `None` runs none.
    pub tls_listen: Option<SocketAddr>,
    /// URL other nodes' gateways use to reach this one (its peer listener); default
    /// `https://<node ip>:<peer port>`.
    pub advertise: Option<String>,
    /// Where the peer listener (mutual TLS, gateway to gateway) listens; `None` runs none
    /// (this node's Pods are then reachable from this node only).
    pub peer_listen: Option<SocketAddr>,
    /// Service host suffix: `<svc>.<ns>.<domain>`.
    pub domain: String,
    /// Largest request body accepted (413 above it).
    pub max_body: u64,
    /// Deadline for the response head (504 after it), all attempts together.
    pub timeout: Duration,
    /// Deadline for a connection to a peer gateway or an address endpoint.
    pub connect_timeout: Duration,
    /// One line per request on stderr ([`access`]).
    pub access_log: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: Some(SocketAddr::from(([0, 0, 0, 0], 8080))),
            tls_listen: Some(SocketAddr::from(([0, 0, 0, 0], 8443))),
            advertise: None,
            peer_listen: Some(SocketAddr::from(([0, 0, 0, 0], 10251))),
            domain: DEFAULT_DOMAIN.to_string(),
            max_body: DEFAULT_MAX_BODY,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            access_log: false,
        }
    }
}

/// Routes requests to Service endpoints: the gateway listener's handler and the in-cluster
/// caller Wasm guests use.
pub struct Dispatcher {
    /// The Pods of this node: local endpoints are invoked through it.
    pods: Arc<PodRegistry>,
    table: RwLock<Arc<RouteTable>>,
    published: watch::Sender<Arc<RouteTable>>,
    cfg: GatewayConfig,
    /// `Some` with `--access-log`.
    access_log: Option<access::AccessLog>,
    /// Plain HTTP to address endpoints (containers' Service proxies on Pod networks).
    client: HttpClient<HttpConnector, Body>,
    /// Mutual TLS (this node's certificate) to other nodes' peer listeners; `None` without
    /// a node certificate.
    peer_client: Option<HttpClient<hyper_rustls::HttpsConnector<HttpConnector>, Body>>,
    metrics: GatewayMetrics,
    /// The namespace of each container Pod address: the Service proxy's callers.
    pod_addresses: proxy::PodAddresses,
    /// Peer gateways that refused a connection a moment ago.
    ejections: retry::Ejections,
    id_prefix: String,
    next_id: AtomicU64,
    /// The TLS listener's certificates by SNI host, kept by the reflector.
    certs: Arc<tls::CertResolver>,
}

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// The gateway: routes by Host, Ingress and path.
    Gateway,
    /// A NodePort: every request goes to that port's Service.
    NodePort(u16),
    /// The Service proxy for containers ([`proxy`]).
    ServiceProxy,
    /// Other nodes' gateways delivering to this node's Pods (`x-ketch-pod`), over mutual
    /// TLS: the only listener where that header means anything.
    Peer,
    /// The gateway over TLS: Ingress `spec.tls` certificates by SNI, then routed as
    /// [`ListenerKind::Gateway`].
    Tls,
}

/// The node's certificate for gateway-to-gateway traffic: what the peer listener serves
/// and verifies clients with, and what this gateway presents to other nodes' listeners.
#[derive(Clone)]
pub struct PeerTls {
    pub server: Arc<rustls::ServerConfig>,
    pub client: rustls::ClientConfig,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls").finish_non_exhaustive()
    }
}

/// Where one request goes after routing.
enum Pick {
    Local(Arc<dyn Workload>, PodKey, Option<u16>),
    /// Another node's gateway, the node, the Pod it should invoke and its port.
    Remote(Arc<str>, String, PodKey, Option<u16>),
    /// A plain HTTP address (`http://host:port`).
    Address(Arc<str>),
}

/// One failed attempt: what the client gets if no other endpoint is tried, and whether the
/// request may have reached a backend (see [`retry`]).
struct Failed {
    answer: Result<Response<Body>, GatewayError>,
    delivered: bool,
}

/// The peer gateway or address a backend is reached through (ejections are by it).
fn peer_url(b: &Backend) -> Option<&str> {
    match &b.target {
        Target::Remote { gateway, .. } => Some(gateway),
        Target::Address { url } => Some(url),
        Target::Local | Target::Unreachable { .. } => None,
    }
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A dispatcher for the node `node`, invoking local endpoints through `pods`; `tls` is
    /// the node's certificate other nodes' gateways are reached with, `metrics` its handles
    /// in the node's registry.
    pub fn new(
        pods: Arc<PodRegistry>,
        tls: Option<&PeerTls>,
        cfg: GatewayConfig,
        node: &str,
        metrics: GatewayMetrics,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(cfg.connect_timeout));
        // https:// URLs go through the TLS connector, which needs them passed on.
        connector.enforce_http(false);
        let client = HttpClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector.clone());
        let peer_client = tls.map(|t| {
            // hyper-rustls sets ALPN itself from the enabled protocols.
            let mut client = t.client.clone();
            client.alpn_protocols.clear();
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(client)
                .https_only()
                .enable_http1()
                .wrap_connector(connector);
            HttpClient::builder(TokioExecutor::new())
                .pool_idle_timeout(ketch_tls::CLIENT_POOL_IDLE)
                .build(https)
        });
        let table = Arc::new(RouteTable::build(&Default::default(), node, &cfg.domain));
        let (published, _) = watch::channel(table.clone());
        let access_log = cfg
            .access_log
            .then(|| access::AccessLog::spawn(metrics.access_log_dropped.clone()));
        Self {
            pods,
            access_log,
            table: RwLock::new(table),
            published,
            cfg,
            client,
            peer_client,
            metrics,
            pod_addresses: proxy::PodAddresses::default(),
            ejections: retry::Ejections::default(),
            id_prefix: format!("{:08x}", rand::random::<u32>()),
            next_id: AtomicU64::new(0),
            certs: Arc::new(tls::CertResolver::default()),
        }
    }

    /// The certificates the TLS listener presents (the reflector replaces them).
    pub fn certs(&self) -> &Arc<tls::CertResolver> {
        &self.certs
    }

    /// How it was set up.
    pub fn config(&self) -> &GatewayConfig {
        &self.cfg
    }

    /// The namespace of each container Pod address on this node: the agent records a Pod's
    /// address when it attaches its network, and drops it before the address is released.
    pub fn pod_addresses(&self) -> &proxy::PodAddresses {
        &self.pod_addresses
    }

    /// The current table.
    pub fn table(&self) -> Arc<RouteTable> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Swaps in a new table (called by the reflector).
    pub(crate) fn publish(&self, table: RouteTable) {
        let table = Arc::new(table);
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = table.clone();
        self.published.send_replace(table);
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<RouteTable>> {
        self.published.subscribe()
    }

    fn request_id(&self) -> HeaderValue {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        HeaderValue::try_from(format!("{}-{n:x}", self.id_prefix))
            .unwrap_or(HeaderValue::from_static("-"))
    }

    /// Where `b` is reached: local ones must be running here; remote ones are trusted to
    /// their gateway.
    fn resolve(&self, b: &Backend) -> Option<Pick> {
        match &b.target {
            Target::Local => self
                .pods
                .workload(&b.pod)
                .map(|w| Pick::Local(w, b.pod.clone(), b.port)),
            Target::Remote { gateway, node } => Some(Pick::Remote(
                gateway.clone(),
                node.clone(),
                b.pod.clone(),
                b.port,
            )),
            Target::Address { url } => Some(Pick::Address(url.clone())),
            Target::Unreachable { .. } => None,
        }
    }

    /// The next backend of a Service's round-robin `order` to try. Backends behind an
    /// ejected peer go to `deferred` and are tried only when nothing else is left.
    fn next_pick<'a>(
        &self,
        order: &mut impl Iterator<Item = &'a Backend>,
        deferred: &mut Vec<&'a Backend>,
    ) -> Option<Pick> {
        let now = self.ejections.any().then(Instant::now);
        for b in order.by_ref() {
            if let Some(now) = now
                && let Some(peer) = peer_url(b)
                && self.ejections.is_ejected(peer, now)
            {
                deferred.push(b);
                continue;
            }
            if let Some(pick) = self.resolve(b) {
                return Some(pick);
            }
        }
        // Better a peer that refused a moment ago than no answer at all.
        while !deferred.is_empty() {
            if let Some(pick) = self.resolve(deferred.remove(0)) {
                return Some(pick);
            }
        }
        None
    }

    /// Sends `req` to one Ready endpoint of `svc`, and on to others while [`retry`] allows,
    /// all within the gateway deadline.
    async fn dispatch(
        &self,
        svc: &ServiceRoute,
        req: Request<Body>,
    ) -> Result<Response<Body>, GatewayError> {
        let answer = match tokio::time::timeout(self.cfg.timeout, self.send(svc, req)).await {
            Ok(r) => r,
            Err(_) => Err(GatewayError::Deadline {
                service: svc.key.clone(),
                budget: self.cfg.timeout,
            }),
        };
        answer.map(|mut resp| {
            resp.headers_mut().remove(X_KETCH_UNDELIVERED);
            resp
        })
    }

    async fn send(
        &self,
        svc: &ServiceRoute,
        req: Request<Body>,
    ) -> Result<Response<Body>, GatewayError> {
        let no_endpoints = || GatewayError::NoEndpoints {
            namespace: svc.namespace.clone(),
            service: svc.name.clone(),
        };
        let mut order = svc.pick();
        let mut deferred = Vec::new();
        // One endpoint: nowhere else to go, so no copy of the request is kept.
        if svc.backends.len() < 2 {
            let pick = self
                .next_pick(&mut order, &mut deferred)
                .ok_or_else(no_endpoints)?;
            return self.attempt(pick, req).await.or_else(|f| f.answer);
        }
        let (parts, body) = req.into_parts();
        let body = retry::BodySlot::new(body);
        let mut answer = None;
        for n in 1..=retry::MAX_ATTEMPTS {
            let Some(pick) = self.next_pick(&mut order, &mut deferred) else {
                break;
            };
            let req = Request::from_parts(parts.clone(), body.body());
            let failed = match self.attempt(pick, req).await {
                Ok(resp) => return Ok(resp),
                Err(f) => f,
            };
            let again = n < retry::MAX_ATTEMPTS
                && retry::may_retry(&parts.method, failed.delivered, body.replayable());
            if let Err(e) = &failed.answer {
                tracing::debug!(service = %svc.key, attempt = n, retry = again, error = %e, "endpoint failed");
            }
            answer = Some(failed.answer);
            if !again {
                break;
            }
            self.metrics.retries.inc();
        }
        answer.unwrap_or_else(|| Err(no_endpoints()))
    }

    /// One try at one endpoint.
    async fn attempt(&self, pick: Pick, mut req: Request<Body>) -> Result<Response<Body>, Failed> {
        match pick {
            Pick::Local(w, (ns, pod), port) => {
                if let Some(p) = port {
                    req.extensions_mut().insert(TargetPort(p));
                }
                self.pods
                    .invoke_workload(&ns, &pod, &w, req)
                    .await
                    .map_err(|e| Failed {
                        delivered: !e.not_delivered(),
                        answer: Err(e.into()),
                    })
            }
            Pick::Remote(gateway, node, pod, port) => {
                if let Some(p) = port {
                    req.headers_mut().insert(X_KETCH_PORT, HeaderValue::from(p));
                }
                self.forward(gateway, node, Some(pod), req).await
            }
            Pick::Address(url) => {
                let to = url.to_string();
                self.forward(url, to, None, req).await
            }
        }
    }

    /// Proxies to the peer listener of the node running `pod` (which it names in
    /// `x-ketch-pod`; mutual TLS with the node's certificate), or, without a Pod, to a plain
    /// address.
    async fn forward(
        &self,
        gateway: Arc<str>,
        node: String,
        pod: Option<(String, String)>,
        mut req: Request<Body>,
    ) -> Result<Response<Body>, Failed> {
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let uri: http::Uri = format!("{gateway}{pq}").parse().map_err(|e| Failed {
            delivered: false,
            answer: Err(GatewayError::Upstream {
                node: node.clone(),
                message: format!("bad gateway URL {gateway:?}: {e}"),
            }),
        })?;
        // The peer speaks HTTP/1.1 to us whatever the client spoke (h2 needs the authority
        // in the URI; HTTP/1.1 keeps it in Host).
        if req.headers().get(header::HOST).is_none()
            && let Some(a) = req.uri().authority()
            && let Ok(v) = HeaderValue::from_str(a.as_str())
        {
            req.headers_mut().insert(header::HOST, v);
        }
        *req.uri_mut() = uri;
        *req.version_mut() = http::Version::HTTP_11;
        let via_peer = pod.is_some();
        if let Some((ns, pod)) = pod {
            let h = req.headers_mut();
            match HeaderValue::try_from(format!("{ns}/{pod}")) {
                Ok(v) => h.insert(X_KETCH_POD, v),
                Err(e) => {
                    return Err(Failed {
                        delivered: false,
                        answer: Err(GatewayError::Upstream {
                            node,
                            message: e.to_string(),
                        }),
                    });
                }
            };
        }
        let sent = if via_peer {
            match &self.peer_client {
                Some(c) => c.request(req).await,
                None => {
                    return Err(Failed {
                        delivered: false,
                        answer: Err(GatewayError::Upstream {
                            node,
                            message:
                                "this node has no certificate to reach other nodes' gateways with"
                                    .into(),
                        }),
                    });
                }
            }
        } else {
            self.client.request(req).await
        };
        match sent {
            Ok(resp) if via_peer && resp.headers().contains_key(X_KETCH_UNDELIVERED) => {
                Err(Failed {
                    delivered: false,
                    answer: Ok(resp.map(Body::new)),
                })
            }
            Ok(resp) => Ok(resp.map(Body::new)),
            Err(e) => {
                // Not connected: nothing was sent, and the peer is likely down.
                let delivered = !e.is_connect();
                if !delivered {
                    self.ejections.eject(&gateway, Instant::now());
                }
                Err(Failed {
                    delivered,
                    answer: Err(GatewayError::Upstream {
                        node,
                        message: format!("proxying to {gateway}: {}", error_chain(&e)),
                    }),
                })
            }
        }
    }

    /// Serves one request that arrived on a listener of `kind`: a NodePort's sends every
    /// request to that port's Service; the peer listener's clients proved with a
    /// certificate that they are the cluster's.
    async fn serve(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
        kind: ListenerKind,
        public: bool,
    ) -> Response<Body> {
        let start = Instant::now();
        let id = match req.headers().get(&X_REQUEST_ID) {
            Some(v) => v.clone(),
            None => self.request_id(),
        };
        // Only the access log needs these after the request is handed on.
        let logged = self
            .access_log
            .as_ref()
            .map(|log| (log, req.method().clone(), req.uri().path().to_string()));
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| req.uri().authority().map(|a| a.to_string()))
            .unwrap_or_default();
        let in_flight = self.metrics.in_flight.clone();
        in_flight.inc();

        let (label, result) = self
            .route_and_invoke(req, &id, &host, peer, kind, public)
            .await;
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => axum::response::IntoResponse::into_response(e),
        };
        strip_hop_by_hop(resp.headers_mut());
        resp.headers_mut().insert(X_REQUEST_ID, id.clone());
        let code = resp.status().as_u16();
        let elapsed = start.elapsed();
        self.metrics.observe(&label, code, elapsed);
        if let Some((log, method, path)) = logged {
            log.log(&access::Entry {
                request_id: id.to_str().unwrap_or("-"),
                peer,
                method: &method,
                host: &host,
                path: &path,
                code,
                service: &label,
                took: elapsed,
            });
        }
        // In flight until the response body is done, not just its head.
        resp.map(|b| Body::new(metrics::InFlightBody::new(b, in_flight)))
    }

    async fn route_and_invoke(
        &self,
        req: Request<Incoming>,
        id: &HeaderValue,
        host: &str,
        peer: SocketAddr,
        kind: ListenerKind,
        public: bool,
    ) -> (String, Result<Response<Body>, GatewayError>) {
        let node_port = match kind {
            ListenerKind::NodePort(p) => Some(p),
            _ => None,
        };
        let https = matches!(kind, ListenerKind::Tls | ListenerKind::Peer);
        if let Some(declared) = req.headers().get(header::CONTENT_LENGTH)
            && let Some(n) = declared.to_str().ok().and_then(|s| s.parse::<u64>().ok())
            && n > self.cfg.max_body
        {
            return (
                "-".into(),
                Err(GatewayError::BodyTooLarge {
                    limit: self.cfg.max_body,
                }),
            );
        }
        let max = usize::try_from(self.cfg.max_body).unwrap_or(usize::MAX);
        let mut req = req.map(|b| Body::new(http_body_util::Limited::new(b, max)));
        let h = req.headers_mut();
        strip_hop_by_hop(h);
        h.insert(X_REQUEST_ID, id.clone());

        // A peer gateway delivering to a Pod of ours: only on the peer listener, and that
        // listener serves nothing else.
        let target = h.remove(X_KETCH_POD);
        if kind == ListenerKind::Peer {
            let Some(target) = target else {
                return ("-".into(), Err(GatewayError::Unauthorized));
            };
            let Some((ns, pod)) = target.to_str().ok().and_then(|t| t.split_once('/')) else {
                return ("-".into(), Err(GatewayError::Unauthorized));
            };
            if let Some(p) = h
                .remove(X_KETCH_PORT)
                .and_then(|v| v.to_str().ok().and_then(|v| v.parse::<u16>().ok()))
            {
                req.extensions_mut().insert(TargetPort(p));
            }
            let label = format!("{ns}/{pod}@forwarded");
            let r = match tokio::time::timeout(self.cfg.timeout, self.pods.invoke(ns, pod, req))
                .await
            {
                Ok(Ok(mut resp)) => {
                    // Only this gateway may say a request was not delivered, not the Pod.
                    resp.headers_mut().remove(X_KETCH_UNDELIVERED);
                    Ok(resp)
                }
                Ok(Err(e)) if e.not_delivered() => {
                    let mut resp =
                        axum::response::IntoResponse::into_response(GatewayError::from(e));
                    resp.headers_mut()
                        .insert(X_KETCH_UNDELIVERED, HeaderValue::from_static("1"));
                    Ok(resp)
                }
                Ok(Err(e)) => Err(GatewayError::from(e)),
                Err(_) => Err(GatewayError::Deadline {
                    service: label.clone(),
                    budget: self.cfg.timeout,
                }),
            };
            return (label, r);
        }
        if let Ok(v) = HeaderValue::try_from(peer.ip().to_string()) {
            h.append(X_FORWARDED_FOR, v);
        }
        h.insert(
            X_FORWARDED_PROTO,
            HeaderValue::from_static(if https { "https" } else { "http" }),
        );
        if let Ok(v) = HeaderValue::from_str(host) {
            h.insert(X_FORWARDED_HOST, v);
        }

        let table = self.table();
        let route = match node_port {
            Some(p) => table
                .node_port(p)
                .map_or(Route::None, |s| Route::Service(s.clone())),
            None if public => table.route_public(host, req.uri().path()),
            None => table.route(host, req.uri().path()),
        };
        match route {
            Route::Service(svc) => {
                let r = self.dispatch(&svc, req).await;
                (svc.key.clone(), r)
            }
            Route::MissingService { namespace, name } => (
                format!("{namespace}/{name}"),
                Err(GatewayError::ServiceNotFound {
                    namespace,
                    service: name,
                }),
            ),
            Route::None => (
                "-".into(),
                Err(GatewayError::NoRoute {
                    host: host.to_string(),
                    path: req.uri().path().to_string(),
                    domain: table.domain().to_string(),
                }),
            ),
        }
    }
}

impl ServiceCaller for Dispatcher {
    fn call(
        self: Arc<Self>,
        from_namespace: &str,
        host: &str,
        req: Request<Body>,
    ) -> Result<BoxFuture<'static, Response<Body>>, Box<Request<Body>>> {
        let table = self.table();
        let svc = match table.resolve_cluster_name(from_namespace, host) {
            None => return Err(Box::new(req)),
            Some(Ok(svc)) => svc,
            Some(Err((namespace, service))) => {
                let e = GatewayError::ServiceNotFound { namespace, service };
                return Ok(futures_util::future::ready(
                    axum::response::IntoResponse::into_response(e),
                )
                .boxed());
            }
        };
        let me = self;
        Ok(async move {
            let start = Instant::now();
            let r = me.dispatch(&svc, req).await;
            let resp = match r {
                Ok(r) => r,
                Err(e) => axum::response::IntoResponse::into_response(e),
            };
            me.metrics
                .observe(&svc.key, resp.status().as_u16(), start.elapsed());
            resp
        }
        .boxed())
    }
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1): `Connection`, the headers it names, and
/// the fixed set. A proxy must not pass them on — a back end's `Connection: close` would
/// otherwise close the client's kept-alive connection to the gateway on every response.
fn strip_hop_by_hop(h: &mut http::HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        h.remove(n);
    }
}

/// A bound gateway listener (the main one, a NodePort, or the Service proxy).
pub struct Listener {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// Binds `addr` and serves it until [`Listener::stop`].
    pub async fn bind(
        dispatcher: Arc<Dispatcher>,
        addr: SocketAddr,
        kind: ListenerKind,
    ) -> std::io::Result<Listener> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Self::serve(dispatcher, listener, kind, None)
    }

    /// Binds the peer listener on `addr`: TLS with `tls` (which must require client
    /// certificates from the cluster CA), and only nodes' and servers' certificates served.
    pub async fn bind_peer(
        dispatcher: Arc<Dispatcher>,
        addr: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<Listener> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Self::serve(
            dispatcher,
            listener,
            ListenerKind::Peer,
            Some(tokio_rustls::TlsAcceptor::from(tls)),
        )
    }

    /// Binds `addr` for the gateway's TLS listener and serves it until [`Listener::stop`]:
    /// certificates by SNI from [`Dispatcher::certs`], ALPN `h2` and `http/1.1`, then the
    /// same routing as the plain listener.
    ///
    /// # Errors
    /// When `addr` cannot be bound.
    pub async fn bind_tls(
        dispatcher: Arc<Dispatcher>,
        addr: SocketAddr,
    ) -> std::io::Result<Listener> {
        let config =
            tls::server_config(dispatcher.certs().clone()).map_err(std::io::Error::other)?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Self::serve(
            dispatcher,
            listener,
            ListenerKind::Tls,
            Some(tokio_rustls::TlsAcceptor::from(config)),
        )
    }

    /// Serves an already bound listener (the Service proxy's, bound by
    /// [`proxy::bind_freebind`]) until [`Listener::stop`]. Needs a tokio runtime.
    pub fn serve_std(
        dispatcher: Arc<Dispatcher>,
        listener: std::net::TcpListener,
        kind: ListenerKind,
    ) -> std::io::Result<Listener> {
        Self::serve(
            dispatcher,
            tokio::net::TcpListener::from_std(listener)?,
            kind,
            None,
        )
    }

    fn serve(
        dispatcher: Arc<Dispatcher>,
        listener: tokio::net::TcpListener,
        kind: ListenerKind,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<Listener> {
        let addr = listener.local_addr()?;
        let (stop, stop_rx) = watch::channel(false);
        // Others can reach a listener not on loopback: it routes Service names only to
        // exposed Services (`RouteTable::route_public`).
        let public = !addr.ip().is_loopback();
        let task = tokio::spawn(accept_loop(
            listener, dispatcher, kind, tls, public, stop_rx,
        ));
        Ok(Listener { addr, stop, task })
    }

    /// Stops accepting; open connections finish their in-flight requests (2 s at most).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// How long a peer's TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a verified client certificate may deliver to this node's Pods: another node's
/// gateway, or a server's.
fn may_deliver(stream: &tokio_rustls::server::TlsStream<tokio::net::TcpStream>) -> bool {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|leaf| ketch_tls::identity_of(leaf))
        .is_some_and(|id| {
            id.in_group(ketch_tls::NODES_GROUP) || id.in_group(ketch_tls::SERVERS_GROUP)
        })
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    dispatcher: Arc<Dispatcher>,
    kind: ListenerKind,
    tls: Option<tokio_rustls::TlsAcceptor>,
    public: bool,
    mut stop: watch::Receiver<bool>,
) {
    let limits = ketch_tls::ListenerLimits::GATEWAY;
    let builder = Arc::new(limits.http_builder());
    let slots = limits.slots();
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = stopped(&mut stop) => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "gateway accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = slots.take() else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let d = dispatcher.clone();
        let builder = builder.clone();
        let stop = stop.clone();
        let tls = tls.clone();
        conns.spawn(async move {
            let _slot = slot;
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let d = d.clone();
                async move {
                    Ok::<_, Infallible>(match kind {
                        ListenerKind::ServiceProxy => d.serve_proxy(req, peer).await,
                        _ => d.serve(req, peer, kind, public).await,
                    })
                }
            });
            match tls {
                None => serve_conn(&builder, TokioIo::new(stream), svc, stop).await,
                Some(acceptor) => {
                    let stream = match tokio::time::timeout(
                        HANDSHAKE_TIMEOUT,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        // An unknown SNI host lands here too: at debug, as a scanner would
                        // otherwise fill the log.
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "gateway TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "gateway TLS handshake timed out");
                            return;
                        }
                    };
                    if kind == ListenerKind::Peer && !may_deliver(&stream) {
                        tracing::debug!(%peer, "peer listener: a certificate that is not a node's or a server's");
                        return;
                    }
                    serve_conn(&builder, TokioIo::new(stream), svc, stop).await;
                }
            }
        });
        // Reap finished connections so the set does not grow without bound.
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// Serve one connection until it ends, or until `stop` (then 2 s for in-flight requests).
async fn serve_conn<I, S>(
    builder: &hyper_util::server::conn::auto::Builder<TokioExecutor>,
    io: I,
    svc: S,
    mut stop: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let conn = builder.serve_connection_with_upgrades(io, svc);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
        }
    }
}

/// Keeps one listener per NodePort in the route table, on the gateway's IP, until `stop`.
pub async fn node_ports(
    dispatcher: Arc<Dispatcher>,
    ip: std::net::IpAddr,
    mut stop: watch::Receiver<bool>,
) {
    let mut tables = dispatcher.subscribe();
    let mut open: std::collections::BTreeMap<u16, Listener> = Default::default();
    loop {
        let want: std::collections::BTreeSet<u16> = tables
            .borrow_and_update()
            .node_ports()
            .map(|(p, _)| p)
            .collect();
        let gone: Vec<u16> = open.keys().filter(|p| !want.contains(p)).copied().collect();
        for p in gone {
            if let Some(l) = open.remove(&p) {
                l.stop().await;
            }
        }
        for p in want {
            if open.contains_key(&p) {
                continue;
            }
            let addr = SocketAddr::new(ip, p);
            match Listener::bind(dispatcher.clone(), addr, ListenerKind::NodePort(p)).await {
                Ok(l) => {
                    tracing::info!(port = p, "gateway: NodePort listening");
                    open.insert(p, l);
                }
                Err(e) => {
                    tracing::warn!(port = p, error = %e, "gateway: cannot listen on NodePort")
                }
            }
        }
        tokio::select! {
            () = stopped(&mut stop) => break,
            r = tables.changed() => if r.is_err() { break },
        }
    }
    for (_, l) in open {
        l.stop().await;
    }
}

pub use reflect::run as reflect;

/// Resolves once `stop` is set (the guard `wait_for` returns is dropped here, so callers'
/// futures stay `Send`).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use http::Method;
    use http_body_util::BodyExt as _;
    use ketch_api::core::Node;
    use tokio::net::TcpListener;

    use super::*;
    use crate::routes::tests::{node, service, slice};

    /// How a stand-in peer gateway answers.
    #[derive(Clone, Copy)]
    enum Peer {
        /// 200 with its name.
        Serves,
        /// 503 marked undelivered, as a peer whose Pod is gone answers.
        Undelivered,
        /// Closes the connection once it has read the request head.
        Hangs,
    }

    /// A test cluster CA and a node certificate from it (every stand-in node shares it).
    fn pki() -> &'static (String, ketch_tls::Issued) {
        static PKI: std::sync::OnceLock<(String, ketch_tls::Issued)> = std::sync::OnceLock::new();
        PKI.get_or_init(|| {
            let ca = ketch_tls::ClusterCa::generate().unwrap();
            let node = ca
                .issue(
                    &ketch_tls::node_identity("n"),
                    &["127.0.0.1".into()],
                    ketch_tls::Usage::ServerAndClient,
                )
                .unwrap();
            (ca.cert_pem().to_string(), node)
        })
    }

    /// This node's peer TLS, from [`pki`].
    fn peer_tls() -> PeerTls {
        let (ca, node) = pki();
        PeerTls {
            server: ketch_tls::server_config(
                &node.cert_pem,
                &node.key_pem,
                ca,
                ketch_tls::ClientAuth::Required,
            )
            .unwrap(),
            client: ketch_tls::client_config(ca, Some((&node.cert_pem, &node.key_pem))).unwrap(),
        }
    }

    /// A peer gateway on loopback (mutual TLS, as a node's peer listener); returns its URL
    /// and the requests it has read.
    async fn peer(name: &'static str, how: Peer) -> (String, Arc<AtomicUsize>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", l.local_addr().unwrap());
        let seen = Arc::new(AtomicUsize::new(0));
        let count = seen.clone();
        let tls = tokio_rustls::TlsAcceptor::from(peer_tls().server);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = l.accept().await else {
                    return;
                };
                let count = count.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let Ok(stream) = tls.accept(stream).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                        count.fetch_add(1, Ordering::SeqCst);
                        async move {
                            match how {
                                Peer::Serves => Ok(Response::new(Body::from(name))),
                                Peer::Undelivered => {
                                    let mut r = Response::new(Body::from("pod not here"));
                                    *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                                    r.headers_mut()
                                        .insert(X_KETCH_UNDELIVERED, HeaderValue::from_static("1"));
                                    Ok(r)
                                }
                                Peer::Hangs => Err(std::io::Error::other("dropped")),
                            }
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (url, seen)
    }

    /// A URL nothing listens on: connects are refused.
    async fn refusing() -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", l.local_addr().unwrap());
        drop(l);
        url
    }

    /// A dispatcher on node `n0` whose Service `default/hello` has one Pod on each of the
    /// given `(node, gateway URL)`s.
    fn dispatcher(peers: &[(&str, &str)]) -> (Arc<Dispatcher>, GatewayMetrics) {
        let metrics = GatewayMetrics::new(&mut prometheus_client::registry::Registry::default());
        let d = Arc::new(Dispatcher::new(
            Arc::new(PodRegistry::new(None)),
            Some(&peer_tls()),
            GatewayConfig {
                listen: None,
                ..GatewayConfig::default()
            },
            "n0",
            metrics.clone(),
        ));
        let svc = service("default", "hello");
        let pods: Vec<(String, String)> = peers
            .iter()
            .map(|(n, _)| (format!("pod-{n}"), n.to_string()))
            .collect();
        let eps: Vec<(&str, &str, bool)> = pods
            .iter()
            .map(|(p, n)| (p.as_str(), n.as_str(), true))
            .collect();
        let sl = slice("default", "hello", &eps);
        let nodes: Vec<Node> = peers.iter().map(|(n, gw)| node(n, Some(gw))).collect();
        d.publish(RouteTable::build(
            &routes::Inputs {
                services: vec![&svc],
                slices: vec![&sl],
                nodes: nodes.iter().collect(),
                ..Default::default()
            },
            "n0",
            DEFAULT_DOMAIN,
        ));
        (d, metrics)
    }

    async fn send(d: &Arc<Dispatcher>, method: Method, body: &'static str) -> (u16, String, bool) {
        let req = Request::builder()
            .method(method)
            .uri("/")
            .body(Body::from(body))
            .unwrap();
        let resp = d.clone().call("default", "hello", req).unwrap().await;
        let code = resp.status().as_u16();
        let marked = resp.headers().contains_key(X_KETCH_UNDELIVERED);
        let text = resp.into_body().collect().await.unwrap().to_bytes();
        (code, String::from_utf8_lossy(&text).into_owned(), marked)
    }

    #[tokio::test]
    async fn a_refused_peer_is_tried_once_then_left_out_and_every_request_succeeds() {
        let dead = refusing().await;
        let (alive, seen) = peer("b", Peer::Serves).await;
        let (d, metrics) = dispatcher(&[("a", &dead), ("b", &alive)]);
        // POST too: a refused connect never delivered anything.
        for method in [Method::GET, Method::POST, Method::GET, Method::POST] {
            let (code, body, _) = send(&d, method, "x").await;
            assert_eq!((code, body.as_str()), (200, "b"));
        }
        assert_eq!(seen.load(Ordering::SeqCst), 4);
        assert_eq!(
            metrics.retries.get(),
            1,
            "after the first refusal the dead peer is ejected, not tried again"
        );
    }

    #[tokio::test]
    async fn an_undelivered_answer_is_retried_and_its_mark_never_reaches_the_client() {
        let (gone, gone_seen) = peer("a", Peer::Undelivered).await;
        let (alive, _) = peer("b", Peer::Serves).await;
        let (d, metrics) = dispatcher(&[("a", &gone), ("b", &alive)]);
        for _ in 0..4 {
            let (code, body, marked) = send(&d, Method::POST, "payload").await;
            assert_eq!((code, body.as_str(), marked), (200, "b", false));
        }
        assert_eq!(
            gone_seen.load(Ordering::SeqCst),
            2,
            "round robin picks it every other time"
        );
        assert_eq!(metrics.retries.get(), 2);
        // With nowhere else to go the client gets the peer's answer, unmarked.
        let (d, _) = dispatcher(&[("a", &gone), ("c", &refusing().await)]);
        let (code, _, marked) = send(&d, Method::POST, "payload").await;
        assert!(code == 503 || code == 502, "{code}");
        assert!(!marked);
    }

    #[tokio::test]
    async fn a_connection_lost_mid_request_is_retried_only_when_safe_to_repeat() {
        let (hangs, hangs_seen) = peer("a", Peer::Hangs).await;
        let (alive, _) = peer("b", Peer::Serves).await;
        let (d, metrics) = dispatcher(&[("a", &hangs), ("b", &alive)]);
        let mut codes = Vec::new();
        for method in [Method::GET, Method::GET, Method::POST, Method::POST] {
            codes.push((method.clone(), send(&d, method, "x").await.0));
        }
        assert_eq!(hangs_seen.load(Ordering::SeqCst), 2);
        // Both GETs succeed; one POST went to the hanging peer and is not repeated.
        let get_ok = codes
            .iter()
            .filter(|(m, c)| *m == Method::GET && *c == 200)
            .count();
        let post_failed = codes
            .iter()
            .filter(|(m, c)| *m == Method::POST && *c == 502)
            .count();
        assert_eq!((get_ok, post_failed), (2, 1), "{codes:?}");
        assert_eq!(metrics.retries.get(), 1);
    }

    #[test]
    fn hop_by_hop_headers_are_not_passed_on() {
        let mut h = http::HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h[header::CONTENT_TYPE], "text/plain");
    }
}
