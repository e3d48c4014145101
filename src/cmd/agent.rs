//! `ketch agent`: a node agent that joins a server; and the node agent's flags and settings,
//! which `ketch server` and `ketch up` share for the agent they run in their process.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use ketch_agent::{Agent, AgentConfig};
use ketch_gateway::GatewayConfig;

use super::shared::{Connection, Signals, absolute_path};

#[derive(Args, Debug)]
pub struct AgentArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Where the agent keeps logs and the compiled-Wasm cache
    #[arg(long, default_value_os_t = default_agent_dir(), value_parser = absolute_path())]
    data_dir: PathBuf,
}

/// Node agent settings (shared by `ketch agent` and the agent inside `ketch server`).
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// Node name [default: this machine's hostname]
    #[arg(long = "name")]
    node_name: Option<String>,
    /// Address the agent's endpoint (logs, pod proxy) listens on
    /// [default: 127.0.0.1:0 inside `ketch server`, 0.0.0.0:10250 for `ketch agent`]
    #[arg(long = "agent-listen")]
    agent_listen: Option<SocketAddr>,
    /// Node label KEY=VALUE (repeatable)
    #[arg(long = "node-label", value_parser = parse_label)]
    node_labels: Vec<(String, String)>,
    /// Most Wasm instances alive at once on this node
    #[arg(long, default_value_t = 1000)]
    max_wasm_instances: u32,
    /// Reset a freed Wasm instance slot by resetting only the pages its guest dirtied
    /// (PAGEMAP_SCAN, Linux 6.7+; faster per request) instead of decommitting its
    /// memory. Isolation risk: with the wasmtime ketch builds on, a dirty page the kernel is
    /// migrating at that moment can reach the next instance; ignored where swap is on
    #[arg(long)]
    wasm_dirty_page_reset: bool,
    /// PEM file of CA certificates that Wasm apps' outbound HTTPS trusts besides the
    /// platform's roots (read at start)
    #[arg(long, value_parser = absolute_path())]
    outbound_ca_file: Option<PathBuf>,
    /// A network (CIDR) Wasm apps may connect to although it is refused by default: this
    /// node's own addresses, loopback, link-local, multicast (repeatable; e.g. 127.0.0.0/8
    /// on a developer's machine)
    #[arg(long = "wasm-outbound-allow", value_parser = parse_cidr)]
    wasm_outbound_allow: Vec<ipnet::IpNet>,
    /// A directory `file:` images may be read from (repeatable; in the environment,
    /// colon-separated). A `file:` image anywhere else fails to start without being read;
    /// `ketch up` allows its app's directory
    #[arg(long = "allow-file-images", value_name = "DIR", env = "KETCH_ALLOW_FILE_IMAGES", value_delimiter = ':', value_parser = absolute_path())]
    allow_file_images: Vec<PathBuf>,
    #[command(flatten)]
    gateway: GatewayArgs,
    #[command(flatten)]
    containers: ContainerArgs,
}

/// Linux containers through containerd.
#[derive(Args, Debug, Clone)]
pub struct ContainerArgs {
    /// containerd's socket; without a containerd answering there the node runs Wasm only
    #[arg(long, default_value = "/run/containerd/containerd.sock", value_parser = absolute_path())]
    containerd: PathBuf,
    /// Do not run Linux containers on this node
    #[arg(long, conflicts_with = "containerd")]
    no_containerd: bool,
    /// Pull from this registry (HOST:PORT) over plain HTTP; loopback registries always are (repeatable)
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
    /// Registry credentials: a Docker-style config.json [default: $DOCKER_CONFIG/config.json or ~/.docker/config.json]
    #[arg(long, env = "KETCH_REGISTRY_CONFIG", value_parser = absolute_path())]
    registry_config: Option<PathBuf>,
    /// The Linux bridge container Pods attach to (two agents on one machine need two)
    #[arg(long, default_value = ketch_containers::network::DEFAULT_BRIDGE)]
    pod_bridge: String,
    /// Addresses of container Pods on this node (CIDR)
    #[arg(long, default_value = ketch_containers::network::DEFAULT_SUBNET)]
    pod_subnet: String,
}

/// The node gateway: Services over HTTP.
#[derive(Args, Debug, Clone)]
pub struct GatewayArgs {
    /// Address the gateway listens on (HTTP/1.1 and h2c) [default: 0.0.0.0:8080; 127.0.0.1:8080 for `ketch up`]
    #[arg(long = "gateway")]
    gateway: Option<SocketAddr>,
    /// Run no gateway listener, plain or TLS (Wasm apps can still call Services by name)
    #[arg(long, conflicts_with_all = ["gateway", "gateway_tls"])]
    no_gateway: bool,
    /// Address the gateway's TLS listener (Ingress spec.tls; HTTP/2 and HTTP/1.1 by ALPN)
    /// listens on [default: 0.0.0.0:8443; 127.0.0.1:8443 for `ketch up`]
    #[arg(long = "gateway-tls")]
    gateway_tls: Option<SocketAddr>,
    /// Run no gateway TLS listener (Ingress spec.tls is then served nowhere on this node)
    #[arg(long, conflicts_with = "gateway_tls")]
    no_gateway_tls: bool,
    /// Service hosts are <service>.<namespace>.<domain>
    #[arg(long, default_value = ketch_gateway::DEFAULT_DOMAIN)]
    gateway_domain: String,
    /// URL other nodes' gateways use to reach this one's peer listener [default:
    /// https://<node IP>:<peer port>]
    #[arg(long)]
    gateway_advertise: Option<String>,
    /// Where other nodes' gateways deliver to this node's Pods (mutual TLS with node
    /// certificates) [default: the gateway's IP, a free port, advertised on the Node]
    #[arg(long)]
    gateway_peer_listen: Option<SocketAddr>,
    /// Deadline for a response from the app, e.g. 60s or 500ms
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    gateway_timeout: std::time::Duration,
    /// Deadline for connecting to another node's gateway; a node that misses it is tried
    /// no more for 2 s and its requests go to other endpoints
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    gateway_connect_timeout: std::time::Duration,
    /// Largest request body the gateway accepts, e.g. 16Mi
    #[arg(long, default_value = "16Mi", value_parser = parse_bytes)]
    gateway_max_body: u64,
    /// Log one line per gateway request to stderr
    #[arg(long)]
    access_log: bool,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    ketch_api::format::parse_duration(s)
        .ok_or_else(|| format!("invalid duration {s:?} (use e.g. 60s or 500ms)"))
}

pub(crate) fn parse_bytes(s: &str) -> Result<u64, String> {
    ketch_api::quantity::Quantity::new(s)
        .value()
        .ok()
        .and_then(|v| u64::try_from(v).ok())
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("invalid size {s:?} (use e.g. 16Mi or 1048576)"))
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

fn parse_cidr(s: &str) -> Result<ipnet::IpNet, String> {
    // A bare address is its own /32 or /128.
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("expected a CIDR such as 127.0.0.0/8 or an address, got {s:?}"))
}

fn default_agent_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".ketch").join("agent")
}

impl NodeArgs {
    /// Lets `file:` images be read from under `dir` too (`ketch up`: the app's directory).
    pub fn allow_file_images_under(&mut self, dir: PathBuf) {
        self.allow_file_images.push(dir);
    }

    /// The agent's settings. `listen` is the endpoint's address when `--agent-listen` is not
    /// given, `default_gateway` the gateway's when `--gateway` is not, `default_gateway_tls`
    /// its TLS listener's when `--gateway-tls` is not.
    ///
    /// # Errors
    /// When no `--name` is given and the hostname cannot be read.
    pub fn agent_config(
        self,
        server: String,
        token: String,
        data_dir: PathBuf,
        default_listen: SocketAddr,
        default_gateway: SocketAddr,
        default_gateway_tls: SocketAddr,
    ) -> anyhow::Result<AgentConfig> {
        let node_name = match self.node_name {
            Some(n) => n,
            None => std::fs::read_to_string("/proc/sys/kernel/hostname")
                .context("reading the hostname for the node name (pass --name)")?
                .trim()
                .to_lowercase(),
        };
        Ok(AgentConfig {
            server,
            token,
            tls: None,
            in_process: None,
            node_name,
            listen: self.agent_listen.unwrap_or(default_listen),
            advertise: None,
            data_dir: data_dir.clone(),
            labels: self.node_labels.into_iter().collect(),
            cpu_millis: None,
            memory_bytes: None,
            max_wasm_instances: self.max_wasm_instances,
            wasm_dirty_page_reset: self.wasm_dirty_page_reset,
            outbound_ca_file: self.outbound_ca_file,
            wasm_outbound_allow: self.wasm_outbound_allow,
            file_image_dirs: self.allow_file_images,
            gateway: self.gateway.config(default_gateway, default_gateway_tls),
            containerd: (!self.containers.no_containerd).then_some(self.containers.containerd),
            insecure_registries: self.containers.insecure_registries,
            registry_config: self.containers.registry_config,
            pod_network: Some(ketch_containers::network::NetworkConfig::with_bridge(
                data_dir.join("cni"),
                self.containers.pod_bridge,
                self.containers.pod_subnet,
            )),
        })
    }
}

impl GatewayArgs {
    fn config(self, default_listen: SocketAddr, default_tls: SocketAddr) -> GatewayConfig {
        let listen = (!self.no_gateway).then(|| self.gateway.unwrap_or(default_listen));
        GatewayConfig {
            listen,
            tls_listen: if self.no_gateway || self.no_gateway_tls {
                None
            } else {
                Some(self.gateway_tls.unwrap_or(default_tls))
            },
            // A free port on the gateway's address: it is advertised on the Node, so peers
            // find it, and agents sharing a machine (tests) never collide.
            peer_listen: self
                .gateway_peer_listen
                .or_else(|| listen.map(|l| SocketAddr::new(l.ip(), 0))),
            advertise: self.gateway_advertise,
            domain: self.gateway_domain,
            max_body: self.gateway_max_body,
            timeout: self.gateway_timeout,
            connect_timeout: self.gateway_connect_timeout,
            access_log: self.access_log,
        }
    }
}

pub async fn run(conn: &Connection, args: AgentArgs) -> anyhow::Result<()> {
    let mut signals = Signals::new()?;
    // Every configured server: the agent moves to the next when one is unreachable.
    let servers = match &conn.server {
        Some(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>(),
        None => super::shared::resolve(conn)?.servers,
    };
    if servers.is_empty() {
        anyhow::bail!("--server: no server given");
    }
    let server = servers.join(",");
    let mut cfg = args.node.agent_config(
        server.clone(),
        String::new(),
        args.data_dir.clone(),
        "0.0.0.0:10250".parse().expect("valid address"),
        GatewayConfig::default()
            .listen
            .unwrap_or_else(|| "0.0.0.0:8080".parse().expect("valid address")),
        GatewayConfig::default()
            .tls_listen
            .unwrap_or_else(|| "0.0.0.0:8443".parse().expect("valid address")),
    )?;
    // The node's certificate is its only credential: obtained with the join token on first
    // start, renewed with itself afterwards.
    let addresses = node_addresses(&cfg);
    let tls = ketch_agent::node_credentials(
        &args.data_dir,
        &servers,
        conn.token.as_deref(),
        &cfg.node_name,
        &addresses,
    )
    .await
    .context("the node's certificate")?;
    cfg.tls = Some(tls);
    let name = cfg.node_name.clone();
    let agent = Agent::start(cfg).await.context("starting the node agent")?;
    println!(
        "ketch agent {}: node {name} joined {server}; endpoint {}",
        env!("CARGO_PKG_VERSION"),
        agent.endpoint()
    );
    if let Some(addr) = agent.gateway_addr() {
        println!("  gateway: http://{addr}");
    }
    if let Some(addr) = agent.gateway_tls_addr() {
        println!("  gateway TLS: https://{addr} (Ingress spec.tls)");
    }
    signals.wait().await;
    println!("shutting down");
    agent.stop().await;
    Ok(())
}

/// The names a node's certificate is valid for: where the API server reaches its endpoint
/// and other gateways its peer listener (loopback, the host name, the addresses it listens
/// on and advertises).
pub fn node_addresses(cfg: &AgentConfig) -> Vec<String> {
    let mut out = vec![
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "localhost".to_string(),
    ];
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        out.push(h.trim().to_lowercase());
    }
    let ips = [
        Some(cfg.listen),
        cfg.gateway.listen,
        cfg.gateway.peer_listen,
    ];
    for addr in ips.into_iter().flatten() {
        if !addr.ip().is_unspecified() {
            out.push(addr.ip().to_string());
        }
    }
    for url in [cfg.advertise.as_deref(), cfg.gateway.advertise.as_deref()]
        .into_iter()
        .flatten()
    {
        out.push(ketch_control::server::pki::host_of(url).to_string());
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|a| !a.is_empty() && seen.insert(a.clone()));
    out
}
