//! `ketch-agent` is ketch's node agent. It registers its Node (capacity, the runtimes it
//! offers, the URL of its HTTP endpoint), renews a Lease in `kube-node-lease`, watches the
//! Pods bound to it, runs their containers through a [`WorkloadRuntime`] (Wasm in-process on
//! `ketch-wasm` ([`wasm`]), or Linux containers through `ketch-containers` when the node has
//! containerd), restarts failed ones with kubelet-style [`Backoff`], reports Pod status and
//! aggregated Events, keeps size-bounded CRI-format logs, serves logs and a Pod proxy over
//! HTTP, and wires the node's gateway (`ketch-gateway`) to the Pods it runs.
//! [`Agent::invoke`] is the in-process path to a Pod.
//!
//! Decisions are pure and unit-tested ([`backoff`], [`status`], [`events`]'s aggregator,
//! [`logs`] formatting); IO sits at the edges (the API client, the runtimes, files, HTTP).
//!
//! Probes ([`probe`]: startup, liveness, readiness; httpGet and tcpSocket) run as the
//! kubelet runs them. Known gaps: no init containers, exec probes; the agent authenticates
//! with the cluster token (node credentials come with RBAC).

pub mod backoff;
pub mod credentials;
mod error;
pub mod events;
pub mod logs;
mod metrics;
pub mod node;
mod pods;
mod probe;
mod server;
pub mod status;
pub mod wasm;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use ketch_containers::network::{NetworkConfig, PodNetwork};
use ketch_containers::{ContainerConfig, ContainerRuntime};
use ketch_gateway::{Dispatcher, GatewayConfig, ListenerKind};
use ketch_oci::Registries;
use ketch_oci::wasm::WasmStore;
use ketch_workload::{PodRegistry, WorkloadRuntime};

pub use backoff::Backoff;
pub use credentials::{NodeTls, node_credentials};
pub use error::AgentError;
pub use wasm::WasmRuntime;

use crate::events::{EventType, PodRef, Recorder};
use crate::pods::Ctx;

/// How the agent is started.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// API server URL, or the servers of a cluster separated by commas: the agent uses
    /// one at a time and moves to the next when it cannot connect (watches resume there
    /// by resourceVersion).
    pub server: String,
    /// Bearer token for the API server: the admin token for the agent inside a server
    /// process, empty for a remote agent (its node certificate is its credential). Without
    /// `tls` the agent's endpoint requires this token (tests of the agent alone).
    pub token: String,
    /// The node's certificate: the agent's API credential, the serving certificate of its
    /// endpoint, and its gateway's towards other nodes (see [`credentials`]).
    pub tls: Option<NodeTls>,
    /// Set when the agent runs inside the server process (`ketch server`, `ketch up`): its
    /// API calls go to the server's router in process, not over loopback; `server` still
    /// names it.
    pub in_process: Option<Arc<dyn ketch_client::LocalTransport>>,
    pub node_name: String,
    /// Agent HTTP endpoint (logs, proxy); port 0 picks one.
    pub listen: SocketAddr,
    /// URL others use to reach `listen`; default `https://{bound address}` (`http://`
    /// without `tls`).
    pub advertise: Option<String>,
    /// Holds `logs/` and `wasm-cache/`.
    pub data_dir: PathBuf,
    /// Extra Node labels.
    pub labels: BTreeMap<String, String>,
    /// Default: logical CPUs × 1000.
    pub cpu_millis: Option<i64>,
    /// Default: `MemTotal`.
    pub memory_bytes: Option<i64>,
    /// Wasm instances alive at once (sizes the pooling allocator); default 1000.
    pub max_wasm_instances: u32,
    /// Reset freed Wasm slots by their dirty pages only
    /// (`ketch_wasm::EngineConfig::reset_dirty_pages_only`, and its isolation caveat); off by
    /// default.
    pub wasm_dirty_page_reset: bool,
    /// A PEM bundle of CA certificates Wasm apps' outbound `https://` requests trust besides
    /// the platform's roots (`ketch_wasm::EngineConfig::outbound_ca_file`); read at start.
    pub outbound_ca_file: Option<PathBuf>,
    /// Networks Wasm apps may reach although the node refuses them by default (its own
    /// addresses, loopback, link-local: `ketch_wasm::EgressPolicy`).
    pub wasm_outbound_allow: Vec<ipnet::IpNet>,
    /// Directories `file:` images may be read from; any other `file:` image fails to
    /// start without being read (`WasmRuntime`).
    pub file_image_dirs: Vec<PathBuf>,
    /// The node gateway (Services over HTTP).
    pub gateway: GatewayConfig,
    /// containerd's socket: Linux containers run when it answers (and the CNI plugins are
    /// installed); `None` turns the container runtime off.
    pub containerd: Option<PathBuf>,
    /// Registries (`host:port`) pulled from over plain HTTP besides loopback ones.
    pub insecure_registries: Vec<String>,
    /// A Docker-style `config.json` with registry credentials; `None`: `$DOCKER_CONFIG` or
    /// `~/.docker/config.json` when present.
    pub registry_config: Option<PathBuf>,
    /// The Pod network (bridge, subnet); state lives under `data_dir/cni`.
    pub pod_network: Option<NetworkConfig>,
}

impl AgentConfig {
    /// A config with defaults: endpoint and gateway on `127.0.0.1:0`, detected resources,
    /// 1000 instances.
    pub fn new(
        server: impl Into<String>,
        token: impl Into<String>,
        node_name: impl Into<String>,
        data_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            server: server.into(),
            token: token.into(),
            tls: None,
            in_process: None,
            node_name: node_name.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            data_dir: data_dir.into(),
            labels: BTreeMap::new(),
            cpu_millis: None,
            memory_bytes: None,
            max_wasm_instances: 1000,
            wasm_dirty_page_reset: false,
            outbound_ca_file: None,
            wasm_outbound_allow: Vec::new(),
            file_image_dirs: Vec::new(),
            // Like the endpoint: a free loopback port, so embedded agents never collide.
            gateway: GatewayConfig {
                listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
                tls_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
                ..GatewayConfig::default()
            },
            containerd: None,
            insecure_registries: Vec::new(),
            registry_config: None,
            pod_network: None,
        }
    }
}

/// A running node agent.
pub struct Agent {
    ctx: Arc<Ctx>,
    endpoint: String,
    gateway: Option<ketch_gateway::Listener>,
    /// The gateway's peer listener (mutual TLS, other nodes' gateways).
    peer: Option<ketch_gateway::Listener>,
    gateway_url: Option<String>,
    /// The gateway's TLS listener (Ingress `spec.tls`).
    gateway_tls: Option<ketch_gateway::Listener>,
    /// The Service proxy for containers, on the Pod bridge's address.
    service_proxy: Option<ketch_gateway::Listener>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    http: tokio::task::JoinHandle<()>,
    events: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("node", &self.ctx.node)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

fn api_err(context: impl Into<String>) -> impl FnOnce(ketch_client::Error) -> AgentError {
    let context = context.into();
    move |source| AgentError::Api { context, source }
}

/// How long the agent keeps trying to register at start while the API servers cannot
/// answer (one restarting, a leader failing over) before it gives up.
const REGISTER_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// Registers the node, then makes sure of the lease namespace and the node's Lease: each
/// step is idempotent, so all are made again after a failure that may pass
/// ([`ketch_client::Error::is_retriable`]: the client moves to the next server after a
/// broken connection), with back-off, for up to [`REGISTER_PATIENCE`]. A refusal fails at
/// once: a wrong token or a rejected node does not get better by waiting.
async fn register_patiently(
    client: &ketch_client::Client,
    facts: &node::NodeFacts,
) -> Result<(), AgentError> {
    let deadline = tokio::time::Instant::now() + REGISTER_PATIENCE;
    let mut backoff = backoff::Backoff::new(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(5),
        REGISTER_PATIENCE,
    );
    loop {
        let res = async {
            node::register(client, facts)
                .await
                .map_err(api_err(format!("registering node {}", facts.name)))?;
            node::ensure_lease_namespace(client)
                .await
                .map_err(api_err("creating namespace kube-node-lease"))?;
            node::renew_lease(client, &facts.name)
                .await
                .map_err(api_err("creating the node lease"))
        }
        .await;
        match res {
            Err(AgentError::Api { context, source })
                if source.is_retriable() && tokio::time::Instant::now() < deadline =>
            {
                tracing::warn!(error = %source, "{context}; trying again");
                tokio::time::sleep(backoff.failed(std::time::Instant::now())).await;
            }
            other => return other,
        }
    }
}

/// The host part of an `http://host:port` URL.
fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next();
    }
    Some(authority.rsplit_once(':').map_or(authority, |(h, _)| h))
}

/// Connects to containerd and prepares the Pod network; `None` (logged) when either is
/// missing, so the node simply does not offer Linux containers.
async fn start_containers(
    cfg: &AgentConfig,
    socket: &std::path::Path,
    registries: Arc<Registries>,
) -> Option<ContainerParts> {
    let net_cfg = cfg
        .pod_network
        .clone()
        .unwrap_or_else(|| NetworkConfig::new(cfg.data_dir.join("cni")));
    let network = match PodNetwork::new(net_cfg) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "Linux containers are off: the pod network is unavailable");
            return None;
        }
    };
    let rt = ContainerRuntime::connect(ContainerConfig {
        socket: socket.to_path_buf(),
        state_dir: cfg.data_dir.join("containers"),
        registries,
        node: cfg.node_name.clone(),
        pids_limit: ketch_containers::DEFAULT_PIDS_LIMIT,
    })
    .await;
    match rt {
        Ok(rt) => {
            tracing::info!(socket = %socket.display(), version = %rt.version, "Linux containers through containerd");
            Some((Arc::new(rt), Arc::new(network)))
        }
        Err(e) => {
            tracing::info!(error = %e, "Linux containers are off");
            None
        }
    }
}

/// The Linux-container runtime and the Pod network, when the node offers containers.
type ContainerParts = (Arc<ContainerRuntime>, Arc<PodNetwork>);

/// Binds the Service proxy for containers on the Pod bridge's address
/// ([`ketch_gateway::proxy`]); when that fails (the port taken there) the node does not offer
/// Linux containers, whose `HTTP_PROXY` would point at nothing.
fn bind_service_proxy(
    containers: Option<ContainerParts>,
) -> (Option<ContainerParts>, Option<std::net::TcpListener>) {
    let Some((rt, net)) = containers else {
        return (None, None);
    };
    let addr = net.proxy_addr();
    match ketch_gateway::proxy::bind_freebind(addr) {
        Ok(l) => {
            tracing::info!(%addr, "service proxy for containers listening");
            (Some((rt, net)), Some(l))
        }
        Err(e) => {
            tracing::warn!(%addr, error = %e, "Linux containers are off: cannot listen for the containers' service proxy");
            (None, None)
        }
    }
}

impl Agent {
    /// Registers the Node, starts the heartbeat and Pod loops, and serves HTTP.
    ///
    /// # Errors
    /// [`AgentError::Config`] for an unusable setting, [`AgentError::Io`] when `listen` cannot
    /// be bound, [`AgentError::Engine`] when the Wasm engine cannot be created,
    /// [`AgentError::Api`] when registration fails.
    pub async fn start(cfg: AgentConfig) -> Result<Agent, AgentError> {
        if cfg.node_name.is_empty() {
            return Err(AgentError::Config("node_name must not be empty".into()));
        }
        if cfg.max_wasm_instances == 0 {
            return Err(AgentError::Config("max_wasm_instances must be > 0".into()));
        }
        let client = match &cfg.in_process {
            Some(local) => ketch_client::Client::in_process(&cfg.server, &cfg.token, local.clone()),
            None => {
                let servers: Vec<String> = cfg
                    .server
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                ketch_client::Client::with_tls(
                    &servers,
                    &cfg.token,
                    cfg.tls.as_ref().map(NodeTls::settings).as_ref(),
                )
            }
        }
        .map_err(|e| AgentError::Config(e.to_string()))?;
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| AgentError::Io {
                context: format!("listening on {}", cfg.listen),
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| AgentError::Io {
            context: "reading the bound address".into(),
            source,
        })?;
        let endpoint = cfg
            .advertise
            .clone()
            .unwrap_or_else(|| {
                let scheme = if cfg.tls.is_some() { "https" } else { "http" };
                format!("{scheme}://{bound}")
            })
            .trim_end_matches('/')
            .to_string();
        let internal_ip = url_host(&endpoint)
            .and_then(|h| h.parse::<std::net::IpAddr>().ok())
            .filter(|ip| !ip.is_unspecified())
            .map_or_else(|| "127.0.0.1".to_string(), |ip| ip.to_string());
        let memory = cfg.memory_bytes.unwrap_or_else(node::detect_memory_bytes);
        // Compared with images' canonical paths: symlinks resolved here once.
        let file_image_dirs = cfg
            .file_image_dirs
            .iter()
            .map(|d| {
                d.canonicalize().map_err(|e| {
                    AgentError::Config(format!("--allow-file-images {}: {e}", d.display()))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut engine = ketch_wasm::EngineConfig::with_instances(
            cfg.data_dir.join("wasm-cache"),
            cfg.max_wasm_instances,
        );
        engine.max_memory_per_instance =
            wasm::max_memory_per_instance(u64::try_from(memory).unwrap_or(1 << 30));
        engine.reset_dirty_pages_only = cfg.wasm_dirty_page_reset;
        engine.outbound_ca_file.clone_from(&cfg.outbound_ca_file);
        engine.egress = ketch_wasm::EgressPolicy {
            allowed: cfg.wasm_outbound_allow.clone(),
        };
        let runtime = WasmRuntime::new(engine, cfg.data_dir.join("keyvalue.redb"), file_image_dirs)
            .map_err(AgentError::Engine)?;
        let registries = Arc::new(Registries::new(
            cfg.insecure_registries.clone(),
            cfg.registry_config.clone(),
        ));
        let runtime = runtime.with_store(Arc::new(WasmStore::new(
            cfg.data_dir.join("wasm-images"),
            registries.clone(),
            ketch_wasm::MAX_COMPONENT_BYTES,
        )));
        let containers = match &cfg.containerd {
            Some(socket) => start_containers(&cfg, socket, registries.clone()).await,
            None => None,
        };
        let (containers, proxy_socket) = bind_service_proxy(containers);
        let (recorder, events) = Recorder::spawn(client.clone(), cfg.node_name.clone());
        let peer_tls = cfg.tls.as_ref().map(NodeTls::gateway).transpose()?;
        let metrics = metrics::NodeMetrics::new();
        // A workload's own failures (traps, deadlines) become `RequestFailed` Events.
        let pods = Arc::new(PodRegistry::new(Some({
            let recorder = recorder.clone();
            Arc::new(
                move |(namespace, name): &(String, String), uid: &str, failure: &_| {
                    let pod = PodRef {
                        namespace: namespace.clone(),
                        name: name.clone(),
                        uid: uid.to_string(),
                    };
                    recorder.record(
                        &pod,
                        EventType::Warning,
                        "RequestFailed",
                        failure.to_string(),
                    );
                },
            )
        })));
        let dispatcher = Arc::new(Dispatcher::new(
            pods.clone(),
            peer_tls.as_ref(),
            cfg.gateway.clone(),
            &cfg.node_name,
            metrics.gateway.clone(),
        ));
        let ctx = Arc::new(Ctx {
            client: client.clone(),
            node: cfg.node_name.clone(),
            host_ip: internal_ip.clone(),
            logs_root: cfg.data_dir.join("logs"),
            wasm: Arc::new(runtime),
            containers: containers.map(|(rt, net)| (rt as Arc<dyn WorkloadRuntime>, net)),
            registries,
            recorder,
            pods,
            gateway: dispatcher,
            metrics,
        });
        // The gateway listens before the Node is registered, so the Node can advertise it.
        let gateway = match cfg.gateway.listen {
            Some(addr) => Some(
                ketch_gateway::Listener::bind(ctx.gateway.clone(), addr, ListenerKind::Gateway)
                    .await
                    .map_err(|source| AgentError::Io {
                        context: format!("gateway: listening on {addr}"),
                        source,
                    })?,
            ),
            None => None,
        };
        let gateway_tls = match cfg.gateway.tls_listen {
            Some(addr) => Some(
                ketch_gateway::Listener::bind_tls(ctx.gateway.clone(), addr)
                    .await
                    .map_err(|source| AgentError::Io {
                        context: format!("gateway: TLS listening on {addr}"),
                        source,
                    })?,
            ),
            None => None,
        };
        let service_proxy = proxy_socket
            .map(|l| {
                ketch_gateway::Listener::serve_std(
                    ctx.gateway.clone(),
                    l,
                    ListenerKind::ServiceProxy,
                )
            })
            .transpose()
            .map_err(|source| AgentError::Io {
                context: "serving the containers' service proxy".into(),
                source,
            })?;
        // Other nodes' gateways deliver to this node's Pods on the peer listener, over
        // mutual TLS with node certificates; without a certificate there is none.
        let peer = match (&peer_tls, cfg.gateway.peer_listen) {
            (Some(t), Some(addr)) => Some(
                ketch_gateway::Listener::bind_peer(ctx.gateway.clone(), addr, t.server.clone())
                    .await
                    .map_err(|source| AgentError::Io {
                        context: format!("gateway: peer listener on {addr}"),
                        source,
                    })?,
            ),
            _ => None,
        };
        let url_of = |scheme: &str, addr: SocketAddr| {
            let ip = if addr.ip().is_unspecified() {
                internal_ip.clone()
            } else {
                addr.ip().to_string()
            };
            match ip.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V6(v6)) => format!("{scheme}://[{v6}]:{}", addr.port()),
                _ => format!("{scheme}://{ip}:{}", addr.port()),
            }
        };
        let gateway_url = gateway.as_ref().map(|l| url_of("http", l.addr));
        let peer_url = peer.as_ref().map(|l| {
            cfg.gateway
                .advertise
                .clone()
                .unwrap_or_else(|| url_of("https", l.addr))
        });
        let facts = node::NodeFacts {
            name: cfg.node_name.clone(),
            labels: cfg.labels.clone(),
            endpoint: endpoint.clone(),
            gateway_endpoint: gateway_url.clone(),
            gateway_peer_endpoint: peer_url,
            internal_ip: internal_ip.clone(),
            hostname: node::detect_hostname().unwrap_or_else(|| cfg.node_name.clone()),
            cpu_millis: cfg.cpu_millis.unwrap_or_else(node::detect_cpu_millis),
            memory_bytes: memory,
            max_wasm_instances: cfg.max_wasm_instances,
            kernel: node::detect_kernel(),
            runtime_handlers: ctx.runtime_names(),
        };
        register_patiently(&client, &facts).await?;

        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = vec![
            tokio::spawn(node::heartbeat_loop(
                client.clone(),
                cfg.node_name.clone(),
                stop_rx.clone(),
            )),
            tokio::spawn(pods::run(ctx.clone(), stop_rx.clone())),
            tokio::spawn(ketch_gateway::reflect(
                client.clone(),
                ctx.gateway.clone(),
                cfg.node_name.clone(),
                stop_rx.clone(),
            )),
        ];
        if let Some(l) = &gateway {
            tasks.push(tokio::spawn(ketch_gateway::node_ports(
                ctx.gateway.clone(),
                l.addr.ip(),
                stop_rx.clone(),
            )));
        }
        let app = server::router(server::HttpState {
            ctx: ctx.clone(),
            token: cfg.tls.is_none().then(|| Arc::from(cfg.token.as_str())),
        });
        let mut http_stop = stop_rx;
        let endpoint_tls = cfg.tls.as_ref().map(NodeTls::endpoint).transpose()?;
        let http = tokio::spawn(async move {
            let served = match endpoint_tls {
                Some(tls) => {
                    let limits = ketch_tls::ListenerLimits::AGENT;
                    ketch_tls::serve(listener, tls, app, limits, http_stop).await
                }
                None => {
                    // Logs followed with `-f` stream small writes: no Nagle delay.
                    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                        let _ = tcp.set_nodelay(true);
                    });
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = http_stop.wait_for(|s| *s).await;
                        })
                        .await
                }
            };
            if let Err(e) = served {
                tracing::warn!(error = %e, "agent HTTP server");
            }
        });
        tracing::info!(node = %cfg.node_name, %endpoint, "ketch agent started");
        if let Some(url) = &gateway_url {
            tracing::info!(node = %cfg.node_name, gateway = %url, "gateway listening");
        }
        if let Some(l) = &gateway_tls {
            tracing::info!(node = %cfg.node_name, addr = %l.addr, "gateway TLS listening");
        }
        Ok(Agent {
            ctx,
            endpoint,
            gateway,
            peer,
            gateway_url,
            gateway_tls,
            service_proxy,
            stop,
            tasks,
            http,
            events,
        })
    }

    /// The advertised agent URL (`ketch.dev/agent-endpoint` on the Node).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The gateway's bound address, when it listens.
    pub fn gateway_addr(&self) -> Option<SocketAddr> {
        self.gateway.as_ref().map(|l| l.addr)
    }

    /// The gateway's TLS listener's bound address, when it listens.
    pub fn gateway_tls_addr(&self) -> Option<SocketAddr> {
        self.gateway_tls.as_ref().map(|l| l.addr)
    }

    /// The gateway URL other nodes use (`ketch.dev/gateway-endpoint` on the Node).
    pub fn gateway_url(&self) -> Option<&str> {
        self.gateway_url.as_deref()
    }

    /// The Service host suffix (`ketch.localhost`).
    pub fn gateway_domain(&self) -> &str {
        &self.ctx.gateway.config().domain
    }

    /// The node's Prometheus metrics, the gateway's among them (also served on the agent
    /// endpoint's `/metrics`).
    pub fn metrics(&self) -> String {
        self.ctx.metrics.encode()
    }

    /// Routes an HTTP request to a running Pod on this node, in-process.
    ///
    /// # Errors
    /// [`ketch_workload::PodError`] (as [`AgentError::Pod`]): not found, not running, or the
    /// workload failed the request (a `RequestFailed` Event is recorded for the workload's own
    /// failures).
    pub async fn invoke(
        &self,
        namespace: &str,
        pod: &str,
        req: http::Request<Body>,
    ) -> Result<http::Response<Body>, AgentError> {
        Ok(self.ctx.pods.invoke(namespace, pod, req).await?)
    }

    /// Stops the loops and the HTTP server; Wasm instances are dropped. The Node object stays:
    /// a restarted agent re-registers and re-creates its Pods.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for l in [
            self.gateway,
            self.peer,
            self.gateway_tls,
            self.service_proxy,
        ]
        .into_iter()
        .flatten()
        {
            l.stop().await;
        }
        for t in self.tasks {
            let _ = t.await;
        }
        // Following log streams end once their Pod leaves the registry (done above); give
        // in-flight requests a moment, then cut the rest.
        let mut http = self.http;
        if tokio::time::timeout(std::time::Duration::from_secs(2), &mut http)
            .await
            .is_err()
        {
            http.abort();
        }
        self.events.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_internal_ip_comes_from_the_advertised_url_host() {
        assert_eq!(url_host("http://10.0.0.5:8080"), Some("10.0.0.5"));
        assert_eq!(url_host("http://node-a:8080/x"), Some("node-a"));
        assert_eq!(url_host("http://[::1]:80"), Some("::1"));
    }
}
