//! The gateway's route table: a pure function of the Services, EndpointSlices, Ingresses and
//! Nodes the agent has seen. Rebuilt whole on every change (off the request path) and swapped
//! in, so a request only does hash lookups and an atomic increment.
//!
//! Precedence for a request `(host, path)`:
//! 1. `Host: <svc>.<ns>.<domain>` names a Service directly;
//! 2. Ingress rules for that exact host, then wildcard hosts (`*.example.com` matches one
//!    label), then rules without a host, together with `ketch.dev/path-prefix` Service
//!    annotations: within one set an `Exact` match beats any `Prefix`, and the longest
//!    `Prefix` wins (Kubernetes' rule); among equals the oldest Ingress wins;
//! 3. an Ingress `defaultBackend`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ketch_api::core::{Node, Service};
use ketch_api::discovery::{EndpointSlice, SERVICE_NAME_LABEL};
use ketch_api::networking::{Ingress, IngressBackend};
use ketch_api::wellknown;

/// Ingress class the gateway serves; Ingresses without a class are served too.
pub const INGRESS_CLASS: &str = "ketch";

/// One Ready endpoint of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// `(namespace, pod)`: the agent's registry key, kept ready-made so a request does not
    /// allocate to look a Pod up.
    pub pod: (String, String),
    pub target: Target,
    /// The slice's target port: a Linux container is reached on it (Wasm ignores it).
    pub port: Option<u16>,
}

/// Where a backend is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// On this node: invoked in-process.
    Local,
    /// On another node: proxied to that node's gateway.
    Remote { gateway: Arc<str>, node: String },
    /// On another node whose gateway is unknown (no annotation yet): skipped.
    Unreachable { node: String },
    /// An address without a Pod (a hand-written EndpointSlice of a selector-less Service):
    /// proxied over HTTP/1.1 to `url` (`http://host:port`, built once with the table).
    Address { url: Arc<str> },
}

/// A routable Service and its Ready endpoints.
#[derive(Debug)]
pub struct ServiceRoute {
    pub namespace: String,
    pub name: String,
    /// `ns/name`, the metrics label.
    pub key: String,
    pub backends: Vec<Backend>,
    next: AtomicUsize,
}

impl ServiceRoute {
    fn new(namespace: &str, name: &str, backends: Vec<Backend>) -> Self {
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
            key: format!("{namespace}/{name}"),
            backends,
            next: AtomicUsize::new(0),
        }
    }

    /// The reachable backends in round-robin order, starting from the next one: the first is
    /// the pick, the rest are fallbacks if it turns out to be gone.
    pub fn pick(&self) -> impl Iterator<Item = &Backend> {
        let n = self.backends.len();
        let start = if n == 0 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % n
        };
        (0..n)
            .map(move |i| &self.backends[(start + i) % n])
            .filter(|b| !matches!(b.target, Target::Unreachable { .. }))
    }
}

/// What a request resolves to.
#[derive(Debug, Clone)]
pub enum Route {
    Service(Arc<ServiceRoute>),
    /// A rule names a Service that does not exist.
    MissingService {
        namespace: String,
        name: String,
    },
    /// Nothing matches.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PathKind {
    Exact,
    Prefix,
}

#[derive(Debug, Clone)]
struct PathRule {
    kind: PathKind,
    /// Without a trailing `/` for prefixes (`/` itself becomes empty: matches everything).
    path: String,
    /// Resolved when the table is built, so a request clones one `Arc`.
    route: Route,
}

impl PathRule {
    fn matches(&self, path: &str) -> bool {
        match self.kind {
            PathKind::Exact => path == self.path,
            // Element-wise prefix: `/foo` matches `/foo` and `/foo/bar`, not `/foobar`.
            PathKind::Prefix => path
                .strip_prefix(self.path.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
        }
    }
}

/// Rules of one host, best first: Exact before Prefix, longer before shorter, then the order
/// they were added in (oldest Ingress first).
#[derive(Debug, Default, Clone)]
struct RuleSet(Vec<PathRule>);

impl RuleSet {
    fn finish(&mut self) {
        self.0.sort_by(|a, b| {
            a.kind
                .cmp(&b.kind)
                .then_with(|| b.path.len().cmp(&a.path.len()))
        });
    }

    fn find(&self, path: &str) -> Option<&PathRule> {
        self.0.iter().find(|r| r.matches(path))
    }
}

/// Everything the gateway routes by.
#[derive(Debug, Default)]
pub struct RouteTable {
    domain: String,
    services: HashMap<(String, String), Arc<ServiceRoute>>,
    /// `<svc>.<ns>.<domain>` → Service, and whether a public listener may route it
    /// ([`RouteTable::route_public`]).
    by_host: HashMap<String, (Arc<ServiceRoute>, bool)>,
    exact_hosts: HashMap<String, RuleSet>,
    /// `*.example.com` stored as `example.com`.
    wildcard_hosts: HashMap<String, RuleSet>,
    any_host: RuleSet,
    default_backend: Option<Route>,
    node_ports: BTreeMap<u16, Arc<ServiceRoute>>,
}

/// The objects a table is built from.
#[derive(Debug, Default, Clone)]
pub struct Inputs<'a> {
    pub services: Vec<&'a Service>,
    pub slices: Vec<&'a EndpointSlice>,
    pub ingresses: Vec<&'a Ingress>,
    pub nodes: Vec<&'a Node>,
}

fn backend_service(b: &IngressBackend) -> Option<&str> {
    b.service.as_ref().map(|s| s.name.as_str())
}

fn resolve(services: &HashMap<(String, String), Arc<ServiceRoute>>, ns: &str, name: &str) -> Route {
    match services.get(&(ns.to_string(), name.to_string())) {
        Some(s) => Route::Service(s.clone()),
        None => Route::MissingService {
            namespace: ns.to_string(),
            name: name.to_string(),
        },
    }
}

fn normalize_prefix(p: &str) -> String {
    p.trim_end_matches('/').to_string()
}

impl RouteTable {
    /// Builds the table for the node `self_node`.
    pub fn build(inputs: &Inputs<'_>, self_node: &str, domain: &str) -> RouteTable {
        let domain = domain.trim_matches('.').to_ascii_lowercase();
        let gateways: HashMap<&str, Arc<str>> = inputs
            .nodes
            .iter()
            .filter_map(|n| {
                let url = n
                    .metadata
                    .annotations
                    .get(wellknown::GATEWAY_PEER_ENDPOINT)?;
                Some((
                    n.metadata.name.as_deref()?,
                    Arc::from(url.trim_end_matches('/')),
                ))
            })
            .collect();

        // Ready endpoints per Service, from every slice labelled with its name (the
        // controller's slice, or hand-written ones for selector-less Services).
        let mut backends: HashMap<(String, String), Vec<Backend>> = HashMap::new();
        for slice in &inputs.slices {
            let ns = slice.metadata.namespace.clone().unwrap_or_default();
            let Some(svc) = slice.metadata.labels.get(SERVICE_NAME_LABEL) else {
                continue;
            };
            let list = backends.entry((ns.clone(), svc.clone())).or_default();
            // The port address endpoints are reached on: the slice's first numbered port.
            let port = slice.ports.iter().find_map(|p| p.port);
            let target_port = port.and_then(|p| u16::try_from(p).ok());
            for ep in &slice.endpoints {
                if !ep.is_ready() {
                    continue;
                }
                let Some(pod_ref) = ep.pod() else {
                    if let (Some(addr), Some(port)) = (ep.addresses.first(), port) {
                        let url: Arc<str> = if addr.contains(':') {
                            Arc::from(format!("http://[{addr}]:{port}"))
                        } else {
                            Arc::from(format!("http://{addr}:{port}"))
                        };
                        let b = Backend {
                            pod: (ns.clone(), url.to_string()),
                            target: Target::Address { url },
                            port: target_port,
                        };
                        if !list.contains(&b) {
                            list.push(b);
                        }
                    }
                    continue;
                };
                let pod = pod_ref.name.clone().unwrap_or_default();
                let pod_ns = pod_ref.namespace.clone().unwrap_or_else(|| ns.clone());
                let node = ep.node_name.clone().unwrap_or_default();
                let target = if node == self_node {
                    Target::Local
                } else if let Some(gw) = gateways.get(node.as_str()) {
                    Target::Remote {
                        gateway: gw.clone(),
                        node,
                    }
                } else {
                    Target::Unreachable { node }
                };
                let b = Backend {
                    pod: (pod_ns, pod),
                    target,
                    port: target_port,
                };
                if !list.contains(&b) {
                    list.push(b);
                }
            }
        }

        let mut table = RouteTable {
            domain: domain.clone(),
            ..RouteTable::default()
        };
        for svc in &inputs.services {
            let (Some(ns), Some(name)) = (&svc.metadata.namespace, &svc.metadata.name) else {
                continue;
            };
            let mut list = backends
                .remove(&(ns.clone(), name.clone()))
                .unwrap_or_default();
            list.sort_by(|a, b| a.pod.cmp(&b.pod));
            let route = Arc::new(ServiceRoute::new(ns, name, list));
            table.by_host.insert(
                format!("{name}.{ns}.{domain}"),
                (route.clone(), exposed(svc)),
            );
            if let Some(spec) = &svc.spec
                && spec.type_.as_deref() == Some("NodePort")
            {
                for p in &spec.ports {
                    if let Some(np) = p.node_port.and_then(|n| u16::try_from(n).ok()) {
                        table.node_ports.entry(np).or_insert_with(|| route.clone());
                    }
                }
            }
            if let Some(prefix) = svc.metadata.annotations.get(wellknown::PATH_PREFIX) {
                let prefix = prefix.trim();
                if prefix.starts_with('/') {
                    table.any_host.0.push(PathRule {
                        kind: PathKind::Prefix,
                        path: normalize_prefix(prefix),
                        route: Route::Service(route.clone()),
                    });
                }
            }
            table.services.insert((ns.clone(), name.clone()), route);
        }

        let mut ingresses: Vec<&Ingress> = inputs
            .ingresses
            .iter()
            .copied()
            .filter(|i| {
                i.spec.as_ref().is_some_and(|s| {
                    s.ingress_class_name
                        .as_deref()
                        .is_none_or(|c| c == INGRESS_CLASS)
                })
            })
            .collect();
        ingresses.sort_by(|a, b| {
            (
                &a.metadata.creation_timestamp,
                &a.metadata.namespace,
                &a.metadata.name,
            )
                .cmp(&(
                    &b.metadata.creation_timestamp,
                    &b.metadata.namespace,
                    &b.metadata.name,
                ))
        });
        for ing in ingresses {
            let ns = ing.metadata.namespace.clone().unwrap_or_default();
            let Some(spec) = &ing.spec else { continue };
            if table.default_backend.is_none()
                && let Some(svc) = spec.default_backend.as_ref().and_then(backend_service)
            {
                table.default_backend = Some(resolve(&table.services, &ns, svc));
            }
            for rule in &spec.rules {
                let Some(http) = &rule.http else { continue };
                for p in &http.paths {
                    let Some(svc) = backend_service(&p.backend) else {
                        continue;
                    };
                    let path = p.path.clone().unwrap_or_else(|| "/".into());
                    let (kind, path) = match p.path_type.as_str() {
                        "Exact" => (PathKind::Exact, path),
                        // ImplementationSpecific: we implement it as Prefix.
                        _ => (PathKind::Prefix, normalize_prefix(&path)),
                    };
                    let route = resolve(&table.services, &ns, svc);
                    let set = match rule.host.as_deref().map(str::to_ascii_lowercase) {
                        None => &mut table.any_host,
                        Some(h) if h.is_empty() => &mut table.any_host,
                        Some(h) => match h.strip_prefix("*.") {
                            Some(base) => table.wildcard_hosts.entry(base.to_string()).or_default(),
                            None => table.exact_hosts.entry(h).or_default(),
                        },
                    };
                    set.0.push(PathRule { kind, path, route });
                }
            }
        }
        table.any_host.finish();
        for set in table.exact_hosts.values_mut() {
            set.finish();
        }
        for set in table.wildcard_hosts.values_mut() {
            set.finish();
        }
        table
    }

    /// The DNS suffix of Service hosts (`ketch.localhost`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The Service `ns/name`, if it exists.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&Arc<ServiceRoute>> {
        self.services
            .get(&(namespace.to_string(), name.to_string()))
    }

    /// NodePort → Service.
    pub fn node_ports(&self) -> impl Iterator<Item = (u16, &Arc<ServiceRoute>)> {
        self.node_ports.iter().map(|(p, r)| (*p, r))
    }

    /// The Service behind a NodePort.
    pub fn node_port(&self, port: u16) -> Option<&Arc<ServiceRoute>> {
        self.node_ports.get(&port)
    }

    /// Routes a request. `host` is the Host header or URI authority, any case, port allowed.
    /// Every Service is reachable by its `<svc>.<ns>.<domain>` name: for listeners only the
    /// node itself can reach (loopback).
    pub fn route(&self, host: &str, path: &str) -> Route {
        self.route_with(host, path, false)
    }

    /// [`RouteTable::route`] for a listener others can reach: `<svc>.<ns>.<domain>` routes
    /// only to Services that are exposed (`ketch.dev/expose: "true"`, or of type NodePort or
    /// LoadBalancer), so a forged Host header cannot reach any Service of any namespace.
    /// Ingress rules and path prefixes are exposure by themselves.
    pub fn route_public(&self, host: &str, path: &str) -> Route {
        self.route_with(host, path, true)
    }

    fn route_with(&self, host: &str, path: &str, public: bool) -> Route {
        let host = strip_port(host);
        let lowered;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = host.to_ascii_lowercase();
            lowered.as_str()
        } else {
            host
        };
        let host = host.trim_end_matches('.');
        if let Some((s, exposed)) = self.by_host.get(host)
            && (*exposed || !public)
        {
            return Route::Service(s.clone());
        }
        if let Some(r) = self.exact_hosts.get(host).and_then(|set| set.find(path)) {
            return r.route.clone();
        }
        if let Some((_, base)) = host.split_once('.')
            && let Some(r) = self.wildcard_hosts.get(base).and_then(|set| set.find(path))
        {
            return r.route.clone();
        }
        if let Some(r) = self.any_host.find(path) {
            return r.route.clone();
        }
        self.default_backend.clone().unwrap_or(Route::None)
    }

    /// Resolves an in-cluster name as seen from a Pod in `from_ns`: `svc`, `svc.ns`,
    /// `svc.ns.svc` and `svc.ns.svc.cluster.local`. `Some(Err(..))` for a name in the cluster
    /// domain that names no Service; `None` when the name is not an in-cluster name at all
    /// (the outbound allow-list decides).
    pub fn resolve_cluster_name(
        &self,
        from_ns: &str,
        host: &str,
    ) -> Option<Result<Arc<ServiceRoute>, (String, String)>> {
        let host = strip_port(host).trim_end_matches('.').to_ascii_lowercase();
        let (short, explicit) = match host
            .strip_suffix(".svc.cluster.local")
            .or_else(|| host.strip_suffix(".svc"))
        {
            Some(s) => (s, true),
            None => (host.as_str(), false),
        };
        let (name, ns) = match short.split_once('.') {
            None => (short, from_ns),
            Some((name, ns)) if !ns.contains('.') => (name, ns),
            Some(_) => return None,
        };
        match self.services.get(&(ns.to_string(), name.to_string())) {
            Some(s) => Some(Ok(s.clone())),
            None if explicit => Some(Err((ns.to_string(), name.to_string()))),
            None => None,
        }
    }
}

/// Whether a public gateway listener routes the Service by its name (see
/// [`RouteTable::route_public`]).
fn exposed(svc: &Service) -> bool {
    match svc.metadata.annotations.get(wellknown::EXPOSE) {
        Some(v) => v == "true",
        None => svc
            .spec
            .as_ref()
            .and_then(|s| s.type_.as_deref())
            .is_some_and(|t| t == "NodePort" || t == "LoadBalancer"),
    }
}

/// `host:port` → `host`; `[v6]:port` → `[v6]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..=h.len()]);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ketch_api::core::{ServicePort, ServiceSpec};
    use ketch_api::discovery::{Endpoint, EndpointConditions};
    use ketch_api::meta::ObjectMeta;
    use ketch_api::networking::{
        HttpIngressPath, HttpIngressRuleValue, IngressRule, IngressServiceBackend, IngressSpec,
    };

    fn meta(ns: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            ..ObjectMeta::default()
        }
    }

    pub(crate) fn service(ns: &str, name: &str) -> Service {
        Service {
            metadata: meta(ns, name),
            spec: Some(ServiceSpec {
                ports: vec![ServicePort {
                    port: 80,
                    ..ServicePort::default()
                }],
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    pub(crate) fn slice(ns: &str, svc: &str, eps: &[(&str, &str, bool)]) -> EndpointSlice {
        let mut m = meta(ns, svc);
        m.labels.insert(SERVICE_NAME_LABEL.into(), svc.into());
        EndpointSlice {
            metadata: m,
            address_type: "IPv4".into(),
            endpoints: eps
                .iter()
                .map(|(pod, node, ready)| Endpoint {
                    addresses: vec!["127.0.0.1".into()],
                    conditions: Some(EndpointConditions {
                        ready: Some(*ready),
                        ..EndpointConditions::default()
                    }),
                    node_name: Some((*node).into()),
                    target_ref: Some(ketch_api::core::ObjectReference {
                        kind: Some("Pod".into()),
                        namespace: Some(ns.into()),
                        name: Some((*pod).into()),
                        ..Default::default()
                    }),
                    ..Endpoint::default()
                })
                .collect(),
            ..EndpointSlice::default()
        }
    }

    pub(crate) fn node(name: &str, gw: Option<&str>) -> Node {
        let mut n = Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            ..Node::default()
        };
        if let Some(gw) = gw {
            n.metadata
                .annotations
                .insert(wellknown::GATEWAY_PEER_ENDPOINT.into(), gw.into());
        }
        n
    }

    fn ingress(ns: &str, name: &str, host: Option<&str>, paths: &[(&str, &str, &str)]) -> Ingress {
        Ingress {
            metadata: meta(ns, name),
            spec: Some(IngressSpec {
                rules: vec![IngressRule {
                    host: host.map(Into::into),
                    http: Some(HttpIngressRuleValue {
                        paths: paths
                            .iter()
                            .map(|(path, kind, svc)| HttpIngressPath {
                                path: Some((*path).into()),
                                path_type: (*kind).into(),
                                backend: IngressBackend {
                                    service: Some(IngressServiceBackend {
                                        name: (*svc).into(),
                                        ..IngressServiceBackend::default()
                                    }),
                                    ..IngressBackend::default()
                                },
                            })
                            .collect(),
                    }),
                }],
                ..IngressSpec::default()
            }),
            ..Ingress::default()
        }
    }

    fn name_of(r: &Route) -> String {
        match r {
            Route::Service(s) => s.key.clone(),
            Route::MissingService { namespace, name } => format!("missing {namespace}/{name}"),
            Route::None => "none".into(),
        }
    }

    #[test]
    fn service_hosts_route_by_name_and_namespace_in_any_case_with_a_port() {
        let t = RouteTable::build(
            &Inputs {
                services: vec![&service("default", "hello"), &service("prod", "hello")],
                ..Inputs::default()
            },
            "n1",
            "ketch.localhost",
        );
        assert_eq!(
            name_of(&t.route("hello.default.ketch.localhost", "/")),
            "default/hello"
        );
        assert_eq!(
            name_of(&t.route("Hello.Prod.ketch.localhost:8080", "/x")),
            "prod/hello"
        );
        assert_eq!(
            name_of(&t.route("other.default.ketch.localhost", "/")),
            "none"
        );
    }

    #[test]
    fn a_public_listener_routes_service_names_only_to_exposed_services() {
        let mut exposed = service("prod", "shop");
        exposed
            .metadata
            .annotations
            .insert(wellknown::EXPOSE.into(), "true".into());
        let mut node_port = service("prod", "np");
        node_port.spec.as_mut().unwrap().type_ = Some("NodePort".into());
        let mut hidden_np = node_port.clone();
        hidden_np.metadata.name = Some("np-hidden".into());
        hidden_np
            .metadata
            .annotations
            .insert(wellknown::EXPOSE.into(), "false".into());
        let mut prefixed = service("default", "api");
        prefixed
            .metadata
            .annotations
            .insert(wellknown::PATH_PREFIX.into(), "/api".into());
        let internal = service("kube-system", "db");
        let t = RouteTable::build(
            &Inputs {
                services: vec![&exposed, &node_port, &hidden_np, &prefixed, &internal],
                ..Inputs::default()
            },
            "n1",
            "ketch.localhost",
        );
        let public = |host: &str, path: &str| name_of(&t.route_public(host, path));
        assert_eq!(public("shop.prod.ketch.localhost", "/"), "prod/shop");
        assert_eq!(public("np.prod.ketch.localhost", "/"), "prod/np");
        // A forged Host reaches nothing unexposed.
        assert_eq!(public("db.kube-system.ketch.localhost", "/"), "none");
        assert_eq!(public("np-hidden.prod.ketch.localhost", "/"), "none");
        // A path prefix is exposure of its own, on any host.
        assert_eq!(
            public("db.kube-system.ketch.localhost", "/api/x"),
            "default/api"
        );
        // Loopback listeners and in-cluster callers see every Service.
        assert_eq!(
            name_of(&t.route("db.kube-system.ketch.localhost", "/")),
            "kube-system/db"
        );
    }

    #[test]
    fn only_ready_endpoints_are_backends_and_remote_ones_go_to_their_gateway() {
        let t = RouteTable::build(
            &Inputs {
                services: vec![&service("default", "hello")],
                slices: vec![&slice(
                    "default",
                    "hello",
                    &[
                        ("a", "n1", true),
                        ("b", "n2", true),
                        ("c", "n1", false),
                        ("d", "n3", true),
                    ],
                )],
                nodes: vec![&node("n2", Some("http://10.0.0.2:8080/"))],
                ..Inputs::default()
            },
            "n1",
            "ketch.localhost",
        );
        let s = t.service("default", "hello").expect("service");
        let pods: Vec<_> = s.backends.iter().map(|b| b.pod.1.as_str()).collect();
        assert_eq!(pods, ["a", "b", "d"]);
        assert_eq!(s.backends[0].target, Target::Local);
        assert_eq!(
            s.backends[1].target,
            Target::Remote {
                gateway: Arc::from("http://10.0.0.2:8080"),
                node: "n2".into()
            }
        );
        // d's node has no known gateway: never picked.
        let picks: Vec<_> = (0..6)
            .map(|_| s.pick().next().expect("a backend").pod.1.clone())
            .collect();
        assert!(picks.iter().all(|p| p != "d"));
        assert!(picks.contains(&"a".to_string()) && picks.contains(&"b".to_string()));
    }

    #[test]
    fn hand_written_slices_without_pods_route_to_their_addresses() {
        let mut manual = slice("default", "ext", &[]);
        manual.endpoints = vec![Endpoint {
            addresses: vec!["127.0.0.1".into()],
            ..Endpoint::default()
        }];
        manual.ports = vec![ketch_api::discovery::EndpointPort {
            port: Some(9000),
            ..Default::default()
        }];
        let t = RouteTable::build(
            &Inputs {
                services: vec![&service("default", "ext")],
                slices: vec![&manual],
                ..Inputs::default()
            },
            "n1",
            "d",
        );
        let s = t.service("default", "ext").expect("service");
        assert_eq!(
            s.backends[0].target,
            Target::Address {
                url: Arc::from("http://127.0.0.1:9000")
            }
        );
    }

    #[test]
    fn round_robin_spreads_evenly_and_offers_the_rest_as_fallbacks() {
        let t = RouteTable::build(
            &Inputs {
                services: vec![&service("default", "s")],
                slices: vec![&slice(
                    "default",
                    "s",
                    &[("a", "n1", true), ("b", "n1", true), ("c", "n1", true)],
                )],
                ..Inputs::default()
            },
            "n1",
            "d",
        );
        let s = t.service("default", "s").expect("service");
        let mut counts = HashMap::new();
        for _ in 0..300 {
            *counts
                .entry(s.pick().next().expect("pick").pod.1.clone())
                .or_insert(0) += 1;
        }
        assert_eq!(counts.values().copied().collect::<Vec<_>>(), vec![100; 3]);
        assert_eq!(s.pick().count(), 3);
    }

    #[test]
    fn ingress_paths_exact_beats_prefix_and_longest_prefix_wins_element_wise() {
        let t = RouteTable::build(
            &Inputs {
                services: vec![
                    &service("default", "root"),
                    &service("default", "api"),
                    &service("default", "exact"),
                    &service("default", "wild"),
                ],
                ingresses: vec![
                    &ingress(
                        "default",
                        "i1",
                        Some("example.com"),
                        &[
                            ("/", "Prefix", "root"),
                            ("/api/", "Prefix", "api"),
                            ("/api/v1", "Exact", "exact"),
                        ],
                    ),
                    &ingress(
                        "default",
                        "i2",
                        Some("*.example.com"),
                        &[("/", "Prefix", "wild")],
                    ),
                    &ingress("default", "i3", None, &[("/gone", "Prefix", "missing")]),
                ],
                ..Inputs::default()
            },
            "n1",
            "ketch.localhost",
        );
        assert_eq!(name_of(&t.route("example.com", "/")), "default/root");
        assert_eq!(name_of(&t.route("example.com", "/api")), "default/api");
        assert_eq!(
            name_of(&t.route("example.com", "/api/users")),
            "default/api"
        );
        assert_eq!(name_of(&t.route("example.com", "/apis")), "default/root");
        assert_eq!(name_of(&t.route("example.com", "/api/v1")), "default/exact");
        assert_eq!(
            name_of(&t.route("EXAMPLE.com:80", "/api/v1/x")),
            "default/api"
        );
        assert_eq!(name_of(&t.route("a.example.com", "/x")), "default/wild");
        // A wildcard matches exactly one label.
        assert_eq!(name_of(&t.route("a.b.example.com", "/x")), "none");
        assert_eq!(
            name_of(&t.route("other", "/gone/x")),
            "missing default/missing"
        );
    }

    #[test]
    fn path_prefix_annotations_route_on_any_host() {
        let mut s = service("default", "hello");
        s.metadata
            .annotations
            .insert(wellknown::PATH_PREFIX.into(), "/hello/".into());
        let t = RouteTable::build(
            &Inputs {
                services: vec![&s],
                ..Inputs::default()
            },
            "n1",
            "ketch.localhost",
        );
        assert_eq!(
            name_of(&t.route("127.0.0.1:8080", "/hello")),
            "default/hello"
        );
        assert_eq!(name_of(&t.route("localhost", "/hello/x")), "default/hello");
        assert_eq!(name_of(&t.route("localhost", "/helloo")), "none");
    }

    #[test]
    fn ingresses_of_other_classes_are_ignored() {
        let mut i = ingress("default", "i", None, &[("/", "Prefix", "hello")]);
        if let Some(spec) = i.spec.as_mut() {
            spec.ingress_class_name = Some("nginx".into());
        }
        let t = RouteTable::build(
            &Inputs {
                services: vec![&service("default", "hello")],
                ingresses: vec![&i],
                ..Inputs::default()
            },
            "n1",
            "d",
        );
        assert_eq!(name_of(&t.route("x", "/")), "none");
    }

    #[test]
    fn node_ports_map_to_their_service() {
        let mut s = service("default", "hello");
        if let Some(spec) = s.spec.as_mut() {
            spec.type_ = Some("NodePort".into());
            spec.ports[0].node_port = Some(30080);
        }
        let t = RouteTable::build(
            &Inputs {
                services: vec![&s],
                ..Inputs::default()
            },
            "n1",
            "d",
        );
        assert_eq!(
            t.node_port(30080).map(|s| s.key.as_str()),
            Some("default/hello")
        );
        assert_eq!(t.node_ports().count(), 1);
    }

    #[test]
    fn cluster_names_resolve_relative_to_the_callers_namespace() {
        let t = RouteTable::build(
            &Inputs {
                services: vec![&service("default", "api"), &service("prod", "db")],
                ..Inputs::default()
            },
            "n1",
            "d",
        );
        let key = |r: Option<Result<Arc<ServiceRoute>, (String, String)>>| match r {
            Some(Ok(s)) => s.key.clone(),
            Some(Err((ns, n))) => format!("missing {ns}/{n}"),
            None => "external".into(),
        };
        assert_eq!(key(t.resolve_cluster_name("default", "api")), "default/api");
        assert_eq!(key(t.resolve_cluster_name("default", "db.prod")), "prod/db");
        assert_eq!(key(t.resolve_cluster_name("x", "db.prod.svc")), "prod/db");
        assert_eq!(
            key(t.resolve_cluster_name("x", "db.prod.svc.cluster.local:80")),
            "prod/db"
        );
        assert_eq!(
            key(t.resolve_cluster_name("x", "nope.prod.svc.cluster.local")),
            "missing prod/nope"
        );
        assert_eq!(
            key(t.resolve_cluster_name("default", "example.com")),
            "external"
        );
        assert_eq!(
            key(t.resolve_cluster_name("default", "www.example.com")),
            "external"
        );
    }

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("a.b:8080"), "a.b");
        assert_eq!(strip_port("a.b"), "a.b");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
    }
}
