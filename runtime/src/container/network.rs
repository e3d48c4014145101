//! The Pod network for container Pods: one Linux network namespace per Pod, attached to a
//! ketch-owned bridge on the node with the stock CNI plugins (Debian's
//! `containernetworking-plugins`): `loopback`, then `bridge` with `host-local` IPAM.
//!
//! Traffic stays on the node: no `ipMasq`, no `portmap`, and no default route in the Pod
//! (host-local hands out none), so a Pod reaches the other Pods on the bridge and the node at
//! [`PodNetwork::gateway_ip`] (the bridge's address), and nothing else — off-node
//! destinations fail fast with "network unreachable". Services are reached by name through
//! the node's Service proxy on that address ([`PodNetwork::proxy_addr`], the containers'
//! `HTTP_PROXY`: [`Attachment::with_proxy_env`]).
//!
//! Layout on the node:
//! - `{netns_dir}/{pod_uid}`: the Pod's network namespace, kept alive by a bind mount (what
//!   `ip netns add` and containerd's CRI do), so it outlives the process that created it and
//!   runc can join it by path;
//! - `{state_dir}/ipam/`: host-local's allocations (`dataDir`);
//! - `{state_dir}/pods/{pod_uid}.json`: our record of a finished attach (address, gateway and
//!   the CNI result, the `prevResult` of the later DEL). A record is written only after ADD
//!   succeeded, so "record present and netns mounted" means attached; anything else is a
//!   leftover that [`PodNetwork::attach`] cleans before starting over.
//!
//! Side effects on the node the integrator should know about:
//! - the bridge plugin creates the bridge on the first ADD and, because the bridge is the
//!   Pods' gateway (`isGateway`), sets `net.ipv4.ip_forward=1` (it always does for gateway
//!   bridges). ketch does not need forwarding, but cannot prevent the plugin from enabling it;
//! - DEL never deletes the bridge; [`PodNetwork::remove_bridge`] does (tests, uninstall);
//! - with `br_netfilter` loaded (`net.bridge.bridge-nf-call-iptables=1`, as Docker and
//!   kubeadm leave it), Pod↔Pod frames on the bridge traverse the iptables `FORWARD` chain,
//!   so a `FORWARD` policy of `DROP` (Docker sets one) drops Pod↔Pod traffic unless it is
//!   accepted for the bridge (`iptables -I FORWARD -i ketch0 -o ketch0 -j ACCEPT`).
//!   Node↔Pod traffic is local delivery (`INPUT`/`OUTPUT`), not forwarding, and is
//!   unaffected.
//!
//! The agent needs root (`CAP_SYS_ADMIN` for the namespace and mount, `CAP_NET_ADMIN` for the
//! plugins) and must share its mount namespace with containerd: the netns bind mounts are not
//! propagated anywhere, so a runc in another mount namespace would find empty files.

use std::collections::{BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The default bridge name.
pub const DEFAULT_BRIDGE: &str = "ketch0";
/// The default Pod subnet. Not `10.88.0.0/16`: that is the default of containerd's and
/// podman's own CNI networks, which may live on the same node. A /24 gives 253 Pods per node.
pub const DEFAULT_SUBNET: &str = "10.89.0.0/24";
/// The default directory of the netns bind mounts (tmpfs: netns do not survive a reboot).
pub const DEFAULT_NETNS_DIR: &str = "/run/ketch/netns";
/// Where the plugins are looked for by default: Debian's package, then the upstream tarball's
/// customary location.
pub const DEFAULT_CNI_BIN_DIRS: [&str; 2] = ["/usr/lib/cni", "/opt/cni/bin"];

/// The port of the node's Service proxy on the bridge address (`http://10.89.0.1:15080`,
/// the containers' `HTTP_PROXY`). Its own fixed port, not the gateway's: the gateway may
/// listen on `0.0.0.0:8080`, which already covers the bridge address and would collide with a
/// second listener on the same port; the proxy also serves other requests (proxy-form URLs,
/// the caller known by its source address), and a fixed port keeps the containers' env the
/// same whatever `--gateway` says. 15080: outside the ephemeral range, next to the 15xxx
/// ports service meshes use for their per-Pod proxies.
pub const DEFAULT_PROXY_PORT: u16 = 15080;
/// The host's resolver configuration, and where systemd-resolved keeps the upstream servers
/// when the former only names its loopback stub (Docker reads the same two files).
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
const RESOLVED_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";

/// A plugin that neither finishes nor fails in this time is killed (the CRI uses minutes,
/// but ours only create a veth and write a file).
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The CNI network name; host-local keeps its allocations under `{dataDir}/{name}`.
const NETWORK_NAME: &str = "ketch";
const IFNAME: &str = "eth0";
const CNI_VERSION: &str = "1.0.0";
const REQUIRED_PLUGINS: [&str; 3] = ["bridge", "host-local", "loopback"];
/// A plugin's error text is cut to this many bytes in our messages.
const MAX_ERROR_TEXT: usize = 2048;
/// Pod uids are file names here; Kubernetes uids have 36 characters.
const MAX_UID_LEN: usize = 128;
/// Linux interface names have at most 15 bytes (`IFNAMSIZ` - 1).
const MAX_IFNAME_LEN: usize = 15;

/// How the Pod network is set up on this node.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// The bridge the Pods attach to; created by the bridge plugin on first use.
    pub bridge: String,
    /// The Pods' subnet as a CIDR (`10.89.0.0/24`); the first address is the bridge's.
    pub subnet: String,
    /// Directories searched for the plugins, in order; also the plugins' `CNI_PATH`.
    pub cni_bin_dirs: Vec<PathBuf>,
    /// host-local's `dataDir` and our per-Pod records; the agent passes `{data_dir}/cni`.
    pub state_dir: PathBuf,
    /// Where netns files are bind-mounted.
    pub netns_dir: PathBuf,
    /// The port the node's Service proxy listens on, on the bridge address.
    pub proxy_port: u16,
}

impl NetworkConfig {
    /// Defaults ([`DEFAULT_BRIDGE`], [`DEFAULT_SUBNET`], [`DEFAULT_CNI_BIN_DIRS`],
    /// [`DEFAULT_NETNS_DIR`]) with state in `state_dir`.
    /// Defaults with another bridge and subnet. The netns dir is per bridge
    /// (`/run/ketch/netns/<bridge>`): agents sharing a machine (each with its own bridge)
    /// never list or remove each other's namespaces.
    pub fn with_bridge(
        state_dir: impl Into<PathBuf>,
        bridge: impl Into<String>,
        subnet: impl Into<String>,
    ) -> Self {
        let bridge = bridge.into();
        Self {
            netns_dir: Path::new(DEFAULT_NETNS_DIR).join(&bridge),
            bridge,
            subnet: subnet.into(),
            ..Self::new(state_dir)
        }
    }

    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            bridge: DEFAULT_BRIDGE.into(),
            subnet: DEFAULT_SUBNET.into(),
            cni_bin_dirs: DEFAULT_CNI_BIN_DIRS.iter().map(PathBuf::from).collect(),
            state_dir: state_dir.into(),
            netns_dir: Path::new(DEFAULT_NETNS_DIR).join(DEFAULT_BRIDGE),
            proxy_port: DEFAULT_PROXY_PORT,
        }
    }
}

/// A Pod's place on the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The netns file, for the OCI spec's network namespace path.
    pub netns: PathBuf,
    /// The Pod's address (`eth0`).
    pub ip: IpAddr,
    /// The bridge's address: the node as the Pod sees it.
    pub gateway: IpAddr,
    /// The Pod subnet (`10.89.0.0/24`).
    pub subnet: String,
    /// The node's Service proxy as the Pod reaches it (bridge address, proxy port).
    pub proxy: SocketAddr,
}

impl Attachment {
    /// `env` plus the variables that send a container's HTTP clients to the node's Service
    /// proxy: `HTTP_PROXY`/`http_proxy` = `http://<bridge address>:<proxy port>` and
    /// `NO_PROXY`/`no_proxy` = `localhost,127.0.0.1,<pod subnet>` (Pod addresses are reached
    /// directly). Tools read either spelling, so a Pod that sets one spelling of a pair keeps
    /// the pair to itself: nothing of it is added.
    pub fn with_proxy_env(&self, env: &[(String, String)]) -> Vec<(String, String)> {
        let proxy = format!("http://{}", self.proxy);
        let no_proxy = format!("localhost,127.0.0.1,{}", self.subnet);
        let mut out = env.to_vec();
        for (upper, lower, value) in [
            ("HTTP_PROXY", "http_proxy", proxy),
            ("NO_PROXY", "no_proxy", no_proxy),
        ] {
            if !env.iter().any(|(k, _)| k == upper || k == lower) {
                out.push((upper.to_string(), value.clone()));
                out.push((lower.to_string(), value));
            }
        }
        out
    }
}

/// A container's `/etc/resolv.conf` made from the host's (`host`), as Docker does: every
/// line kept except `nameserver`s on loopback addresses (`127.0.0.0/8`, `::1`), which in the
/// Pod's network namespace would be the Pod itself. When no nameserver is left the file says
/// so in a comment and names none; there is no public fallback (Docker's 8.8.8.8), because
/// Pod traffic stays on this machine: a resolver then falls back to the Pod's own loopback
/// and fails at once, and Services are reached by name through the HTTP proxy anyway.
pub fn pod_resolv_conf(host: &str) -> String {
    let mut out = String::with_capacity(host.len() + 64);
    let mut kept = 0;
    let mut dropped = Vec::new();
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver")
            && let Some(addr) = words.next()
        {
            // An IPv6 address may carry a zone (`fe80::1%eth0`).
            let ip = addr.split('%').next().unwrap_or(addr).parse::<IpAddr>();
            if ip.is_ok_and(|ip| ip.is_loopback()) {
                dropped.push(addr);
                continue;
            }
            kept += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if kept == 0 {
        out.push_str("# ketch: no nameserver: ");
        if dropped.is_empty() {
            out.push_str("the host names none");
        } else {
            out.push_str("the host's (");
            out.push_str(&dropped.join(", "));
            out.push_str(") are loopback addresses, not reachable from the Pod");
        }
        out.push_str("; reach Services by name through HTTP_PROXY\n");
    }
    out
}

/// [`pod_resolv_conf`] of the host's `/etc/resolv.conf`, or, when that leaves no nameserver
/// and systemd-resolved keeps its upstream servers in `/run/systemd/resolve/resolv.conf`, of
/// that file (the stub at `127.0.0.53` is not reachable from a Pod). A missing file reads as
/// empty.
pub fn host_pod_resolv_conf() -> String {
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    let conf = pod_resolv_conf(&read(HOST_RESOLV_CONF));
    if has_nameserver(&conf) {
        return conf;
    }
    let resolved = pod_resolv_conf(&read(RESOLVED_RESOLV_CONF));
    if has_nameserver(&resolved) {
        resolved
    } else {
        conf
    }
}

fn has_nameserver(conf: &str) -> bool {
    conf.lines()
        .any(|l| l.split_whitespace().next() == Some("nameserver"))
}

/// What setting up or tearing down the Pod network can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    /// A [`NetworkConfig`] field is unusable.
    #[error("invalid network configuration: {0}")]
    Config(String),
    /// Some CNI plugins are not installed.
    #[error(
        "CNI plugins {missing:?} not found in {searched}; install them with `apt install containernetworking-plugins`"
    )]
    PluginsMissing {
        missing: Vec<String>,
        searched: String,
    },
    /// The Pod uid cannot name a CNI container and a file.
    #[error(
        "invalid pod uid {0:?}: want 1-{MAX_UID_LEN} letters, digits, '-', '_' or '.', starting with a letter or digit"
    )]
    InvalidPodUid(String),
    /// A plugin reported an error (its JSON `code`/`msg`/`details`, or its output).
    #[error(
        "pod {pod}: CNI {command} with plugin {plugin} failed{}: {msg}",
        .code.map(|c| format!(" (code {c})")).unwrap_or_default()
    )]
    Plugin {
        pod: String,
        plugin: String,
        command: &'static str,
        code: Option<u64>,
        msg: String,
    },
    /// A plugin did not finish in time and was killed.
    #[error("pod {pod}: CNI {command} with plugin {plugin} timed out after {after:?}")]
    Timeout {
        pod: String,
        plugin: String,
        command: &'static str,
        after: Duration,
    },
    /// A plugin could not be run.
    #[error("pod {pod}: running CNI plugin {}", .plugin.display())]
    Exec {
        pod: String,
        plugin: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A plugin succeeded but its result is not what CNI 1.0 specifies.
    #[error("pod {pod}: unexpected CNI result from plugin {plugin}: {reason}")]
    BadResult {
        pod: String,
        plugin: String,
        reason: String,
    },
    /// Creating or removing the network namespace failed.
    #[error("pod {pod}: {op} network namespace {}", .path.display())]
    Netns {
        pod: String,
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Reading or writing state files failed.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// Deleting the bridge failed.
    #[error("deleting bridge {bridge}: {msg}")]
    Bridge { bridge: String, msg: String },
}

/// Our record of a finished attach (`{state_dir}/pods/{pod_uid}.json`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    pod_uid: String,
    namespace: String,
    name: String,
    netns: PathBuf,
    bridge: String,
    subnet: String,
    ip: IpAddr,
    gateway: IpAddr,
    /// The bridge plugin's ADD result: the `prevResult` of DEL.
    result: Value,
}

/// The Pod network of this node. Cheap to share behind an `Arc`; calls for different Pods
/// run concurrently, calls for the same Pod are serialized.
#[derive(Debug)]
pub struct PodNetwork {
    cfg: NetworkConfig,
    subnet: Subnet,
    bridge_plugin: PathBuf,
    loopback_plugin: PathBuf,
    cni_path: OsString,
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl PodNetwork {
    /// Checks the configuration and that the plugins are installed. Touches nothing on the
    /// node.
    ///
    /// # Errors
    /// [`NetworkError::Config`] for a bad bridge name, subnet or directory,
    /// [`NetworkError::PluginsMissing`] naming the plugins and the directories searched.
    pub fn new(cfg: NetworkConfig) -> Result<Self, NetworkError> {
        check_bridge_name(&cfg.bridge).map_err(NetworkError::Config)?;
        let subnet = Subnet::parse(&cfg.subnet)
            .map_err(|e| NetworkError::Config(format!("subnet {:?}: {e}", cfg.subnet)))?;
        if cfg.cni_bin_dirs.is_empty() {
            return Err(NetworkError::Config("cni_bin_dirs is empty".into()));
        }
        for (field, dir) in [("state_dir", &cfg.state_dir), ("netns_dir", &cfg.netns_dir)] {
            if !dir.is_absolute() {
                return Err(NetworkError::Config(format!(
                    "{field} {} must be absolute (plugins run with another working directory)",
                    dir.display()
                )));
            }
        }
        let cni_path = std::env::join_paths(&cfg.cni_bin_dirs)
            .map_err(|e| NetworkError::Config(format!("cni_bin_dirs: {e}")))?;
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        for plugin in REQUIRED_PLUGINS {
            match cfg
                .cni_bin_dirs
                .iter()
                .map(|d| d.join(plugin))
                .find(|p| is_executable(p))
            {
                Some(path) => {
                    found.insert(plugin, path);
                }
                None => missing.push(plugin.to_string()),
            }
        }
        if !missing.is_empty() {
            let searched = cfg
                .cni_bin_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(NetworkError::PluginsMissing { missing, searched });
        }
        Ok(Self {
            bridge_plugin: found.remove("bridge").unwrap_or_default(),
            loopback_plugin: found.remove("loopback").unwrap_or_default(),
            cfg,
            subnet,
            cni_path,
            locks: Mutex::default(),
        })
    }

    /// The configuration this network was created with.
    pub fn config(&self) -> &NetworkConfig {
        &self.cfg
    }

    /// Creates the network namespace of Pod `pod_uid` and attaches it to the bridge (CNI ADD
    /// of `loopback`, then `bridge`), or returns the existing attachment: a retry after an
    /// agent crash gets the same address. Leftovers of an attach that never finished (a
    /// crash, an error, a reboot that emptied `netns_dir` while the record stayed) are torn
    /// down first, so they neither block the ADD nor leak an address.
    ///
    /// `namespace` and `pod_name` only label errors, logs and the record.
    ///
    /// # Errors
    /// [`NetworkError::InvalidPodUid`], [`NetworkError::Netns`] when the netns cannot be
    /// created (not root?), the plugin errors ([`NetworkError::Plugin`], `Timeout`, `Exec`,
    /// `BadResult`), [`NetworkError::Io`] for the state files. A failed attach leaves nothing
    /// behind (best effort; what remains is cleaned by the next attach or detach).
    pub async fn attach(
        &self,
        pod_uid: &str,
        namespace: &str,
        pod_name: &str,
    ) -> Result<Attachment, NetworkError> {
        check_uid(pod_uid)?;
        let lock = self.lock_for(pod_uid);
        let _held = lock.lock().await;
        if let Some(found) = self.existing(pod_uid) {
            return Ok(found);
        }
        let pod = format!("{namespace}/{pod_name} ({pod_uid})");
        let netns = self.netns_path(pod_uid);
        // An address can only be allocated while the netns file exists, and DEL keeps the
        // record until the address is released: with neither, there is nothing to clean.
        if netns.exists() || self.record_path(pod_uid).exists() {
            tracing::info!(%pod, "cleaning up an unfinished pod network attach");
            self.teardown(pod_uid, &pod).await?;
        }
        create_netns(&netns)
            .await
            .map_err(|(op, source)| NetworkError::Netns {
                pod: pod.clone(),
                op,
                path: netns.clone(),
                source,
            })?;
        match self.add(pod_uid, namespace, pod_name, &pod, &netns).await {
            Ok(attachment) => {
                tracing::info!(%pod, ip = %attachment.ip, bridge = %self.cfg.bridge, "pod network attached");
                Ok(attachment)
            }
            Err(e) => {
                if let Err(undo) = self.teardown(pod_uid, &pod).await {
                    tracing::warn!(%pod, error = %undo, "undoing a failed pod network attach");
                }
                Err(e)
            }
        }
    }

    /// The attachment of Pod `pod_uid` if it is attached: its record exists (for this bridge
    /// and subnet) and its netns is mounted. `None` for anything else, including leftovers
    /// [`PodNetwork::attach`] would clean up.
    pub fn existing(&self, pod_uid: &str) -> Option<Attachment> {
        check_uid(pod_uid).ok()?;
        let record = self.read_record(pod_uid)?;
        let netns = self.netns_path(pod_uid);
        let current = record.netns == netns
            && record.bridge == self.cfg.bridge
            && record.subnet == self.cfg.subnet;
        (current && is_netns(&netns)).then_some(Attachment {
            netns,
            ip: record.ip,
            gateway: record.gateway,
            subnet: record.subnet,
            proxy: self.proxy_addr(),
        })
    }

    /// Detaches Pod `pod_uid` (CNI DEL, which releases its address), unmounts and removes its
    /// netns and removes its record. Parts already gone are fine: detaching twice, or a Pod
    /// never attached, succeeds.
    ///
    /// # Errors
    /// A failing DEL ([`NetworkError::Plugin`] and the other plugin errors): the netns is
    /// still removed but the record is kept, so [`PodNetwork::list`] still names the Pod and
    /// a later detach retries the release. [`NetworkError::Netns`] when unmounting fails.
    pub async fn detach(&self, pod_uid: &str) -> Result<(), NetworkError> {
        check_uid(pod_uid)?;
        let lock = self.lock_for(pod_uid);
        let _held = lock.lock().await;
        let pod = self.read_record(pod_uid).map_or_else(
            || pod_uid.to_string(),
            |r| format!("{}/{} ({pod_uid})", r.namespace, r.name),
        );
        self.teardown(pod_uid, &pod).await?;
        tracing::info!(%pod, "pod network detached");
        Ok(())
    }

    /// The uids of the Pods with a netns or a record here, sorted: after a restart the agent
    /// detaches those whose Pod is gone.
    pub fn list(&self) -> Vec<String> {
        let mut uids = BTreeSet::new();
        for name in dir_names(&self.cfg.netns_dir) {
            if check_uid(&name).is_ok() {
                uids.insert(name);
            }
        }
        for name in dir_names(&self.records_dir()) {
            // Skips `.json.tmp` files of interrupted writes.
            if let Some(uid) = name.strip_suffix(".json")
                && check_uid(uid).is_ok()
            {
                uids.insert(uid.to_string());
            }
        }
        uids.into_iter().collect()
    }

    /// The bridge's address (the subnet's first address): how containers reach the node, e.g.
    /// its gateway listener, which must then listen on this address or on all addresses.
    pub fn gateway_ip(&self) -> IpAddr {
        self.subnet.first_host()
    }

    /// Where the node's Service proxy listens: the bridge address and the proxy port.
    pub fn proxy_addr(&self) -> SocketAddr {
        SocketAddr::new(self.gateway_ip(), self.cfg.proxy_port)
    }

    /// Deletes the bridge link (CNI DEL never does). For tests and for removing ketch from a
    /// node, with no Pods attached; a missing bridge is fine. Runs `ip link del` (iproute2):
    /// no netlink crate is among the dependencies, and this is not on any Pod's path.
    ///
    /// # Errors
    /// [`NetworkError::Bridge`] when `ip` fails or cannot be run.
    pub async fn remove_bridge(&self) -> Result<(), NetworkError> {
        let bridge = self.cfg.bridge.clone();
        if !Path::new("/sys/class/net").join(&bridge).exists() {
            return Ok(());
        }
        let mut cmd = Command::new("ip");
        cmd.args(["link", "del", "dev", &bridge]);
        let fail = |msg: String| NetworkError::Bridge {
            bridge: bridge.clone(),
            msg,
        };
        match run_with_timeout(cmd, Vec::new(), PLUGIN_TIMEOUT).await {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(fail(format!(
                "ip link del: {}: {}",
                out.status,
                clip(String::from_utf8_lossy(&out.stderr).trim())
            ))),
            Err(RunError::Io(e)) => Err(fail(format!("running ip: {e}"))),
            Err(RunError::Timeout) => Err(fail(format!("ip timed out after {PLUGIN_TIMEOUT:?}"))),
        }
    }

    fn netns_path(&self, pod_uid: &str) -> PathBuf {
        self.cfg.netns_dir.join(pod_uid)
    }

    fn records_dir(&self) -> PathBuf {
        self.cfg.state_dir.join("pods")
    }

    fn record_path(&self, pod_uid: &str) -> PathBuf {
        self.records_dir().join(format!("{pod_uid}.json"))
    }

    fn lock_for(&self, pod_uid: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        locks.retain(|_, l| l.strong_count() > 0);
        if let Some(lock) = locks.get(pod_uid).and_then(Weak::upgrade) {
            return lock;
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(pod_uid.to_string(), Arc::downgrade(&lock));
        lock
    }

    fn read_record(&self, pod_uid: &str) -> Option<Record> {
        let path = self.record_path(pod_uid);
        let bytes = fs::read(&path).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable pod network record");
                None
            }
        }
    }

    fn write_record(&self, record: &Record) -> Result<(), NetworkError> {
        let path = self.record_path(&record.pod_uid);
        let io_err = |context: String| {
            move |source| NetworkError::Io {
                context: context.clone(),
                source,
            }
        };
        let dir = self.records_dir();
        fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        // Write-then-rename: a crash never leaves a torn record that would hide the attach.
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| NetworkError::Io {
            context: "encoding the pod network record".into(),
            source: e.into(),
        })?;
        let write = || -> io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(io_err(format!("writing {}", path.display())))
    }

    fn bridge_conf(&self, prev_result: Option<&Value>) -> Value {
        let mut conf = json!({
            "cniVersion": CNI_VERSION,
            "name": NETWORK_NAME,
            "type": "bridge",
            "bridge": self.cfg.bridge,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{ "subnet": self.cfg.subnet }]],
                "dataDir": self.cfg.state_dir.join("ipam"),
            },
        });
        if let Some(prev) = prev_result {
            conf["prevResult"] = prev.clone();
        }
        conf
    }

    fn loopback_conf() -> Value {
        json!({ "cniVersion": CNI_VERSION, "name": "ketch-loopback", "type": "loopback" })
    }

    async fn add(
        &self,
        pod_uid: &str,
        namespace: &str,
        pod_name: &str,
        pod: &str,
        netns: &Path,
    ) -> Result<Attachment, NetworkError> {
        let lo = Self::loopback_conf();
        self.run(&self.loopback_plugin, "ADD", pod_uid, pod, Some(netns), &lo)
            .await?;
        let conf = self.bridge_conf(None);
        let result = self
            .run(&self.bridge_plugin, "ADD", pod_uid, pod, Some(netns), &conf)
            .await?;
        let (ip, gateway) = parse_add_result(&result, self.gateway_ip()).map_err(|reason| {
            NetworkError::BadResult {
                pod: pod.to_string(),
                plugin: "bridge".into(),
                reason,
            }
        })?;
        if !self.subnet.contains(ip) {
            return Err(NetworkError::BadResult {
                pod: pod.to_string(),
                plugin: "bridge".into(),
                reason: format!("address {ip} is outside subnet {}", self.cfg.subnet),
            });
        }
        self.write_record(&Record {
            pod_uid: pod_uid.into(),
            namespace: namespace.into(),
            name: pod_name.into(),
            netns: netns.to_path_buf(),
            bridge: self.cfg.bridge.clone(),
            subnet: self.cfg.subnet.clone(),
            ip,
            gateway,
            result,
        })?;
        Ok(Attachment {
            netns: netns.to_path_buf(),
            ip,
            gateway,
            subnet: self.cfg.subnet.clone(),
            proxy: self.proxy_addr(),
        })
    }

    /// DEL in reverse ADD order, then the netns, then (only once DEL released the address) the
    /// record.
    async fn teardown(&self, pod_uid: &str, pod: &str) -> Result<(), NetworkError> {
        let netns = self.netns_path(pod_uid);
        let live = is_netns(&netns);
        // Without a live netns, DEL only releases the address (CNI_NETNS may be empty for
        // DEL); an unmounted leftover file would make the plugin fail on "not a netns".
        let ns_arg = live.then_some(netns.as_path());
        let prev = self.read_record(pod_uid).map(|r| r.result);
        let conf = self.bridge_conf(prev.as_ref());
        let released = self
            .run(&self.bridge_plugin, "DEL", pod_uid, pod, ns_arg, &conf)
            .await
            .map(drop);
        if live {
            // Only resets `lo` in a namespace about to disappear: nothing can leak.
            let lo = Self::loopback_conf();
            if let Err(e) = self
                .run(&self.loopback_plugin, "DEL", pod_uid, pod, ns_arg, &lo)
                .await
            {
                tracing::debug!(%pod, error = %e, "loopback DEL");
            }
        }
        remove_netns(&netns).map_err(|(op, source)| NetworkError::Netns {
            pod: pod.to_string(),
            op,
            path: netns.clone(),
            source,
        })?;
        released?;
        let record = self.record_path(pod_uid);
        match fs::remove_file(&record) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(NetworkError::Io {
                context: format!("removing {}", record.display()),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Runs one plugin command; returns its result (`Null` when it printed nothing, as DEL
    /// does).
    async fn run(
        &self,
        plugin: &Path,
        command: &'static str,
        pod_uid: &str,
        pod: &str,
        netns: Option<&Path>,
        conf: &Value,
    ) -> Result<Value, NetworkError> {
        let name = plugin.file_name().map_or_else(
            || plugin.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let mut cmd = Command::new(plugin);
        cmd.env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", pod_uid)
            .env("CNI_NETNS", netns.map_or(OsStr::new(""), Path::as_os_str))
            .env("CNI_IFNAME", IFNAME)
            .env("CNI_PATH", &self.cni_path)
            .env_remove("CNI_ARGS");
        let input = conf.to_string().into_bytes();
        tracing::debug!(%pod, plugin = %name, command, "running CNI plugin");
        let out = run_with_timeout(cmd, input, PLUGIN_TIMEOUT)
            .await
            .map_err(|e| match e {
                RunError::Io(source) => NetworkError::Exec {
                    pod: pod.to_string(),
                    plugin: plugin.to_path_buf(),
                    source,
                },
                RunError::Timeout => NetworkError::Timeout {
                    pod: pod.to_string(),
                    plugin: name.clone(),
                    command,
                    after: PLUGIN_TIMEOUT,
                },
            })?;
        if !out.status.success() {
            let (code, msg) = plugin_error(&out);
            return Err(NetworkError::Plugin {
                pod: pod.to_string(),
                plugin: name,
                command,
                code,
                msg,
            });
        }
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&out.stdout).map_err(|e| NetworkError::BadResult {
            pod: pod.to_string(),
            plugin: name,
            reason: format!(
                "not JSON ({e}): {}",
                clip(&String::from_utf8_lossy(&out.stdout))
            ),
        })
    }
}

/// A CIDR, checked: the network address itself (no host bits) and room for a gateway and
/// Pods.
#[derive(Debug, Clone, Copy)]
struct Subnet {
    network: IpAddr,
    prefix: u8,
}

impl Subnet {
    fn parse(s: &str) -> Result<Self, String> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| "want a CIDR such as 10.89.0.0/24".to_string())?;
        let network: IpAddr = addr.parse().map_err(|e| format!("address {addr:?}: {e}"))?;
        let prefix: u8 = len.parse().map_err(|e| format!("prefix {len:?}: {e}"))?;
        let (bits, value) = Self::bits(network);
        // At least 2 host bits: network, gateway, one Pod (and broadcast for IPv4).
        if !(8..=bits - 2).contains(&prefix) {
            return Err(format!(
                "prefix /{prefix} must be between /8 and /{}",
                bits - 2
            ));
        }
        let host_mask = (1u128 << (bits - prefix)) - 1;
        if value & host_mask != 0 {
            let net = Self::from_bits(network, value & !host_mask);
            return Err(format!("host bits set; the network is {net}/{prefix}"));
        }
        Ok(Self { network, prefix })
    }

    fn bits(ip: IpAddr) -> (u8, u128) {
        match ip {
            IpAddr::V4(a) => (32, u128::from(u32::from(a))),
            IpAddr::V6(a) => (128, u128::from(a)),
        }
    }

    fn from_bits(like: IpAddr, value: u128) -> IpAddr {
        match like {
            // Only called with values inside `like`'s family.
            IpAddr::V4(_) => {
                std::net::Ipv4Addr::from(u32::try_from(value).unwrap_or_default()).into()
            }
            IpAddr::V6(_) => std::net::Ipv6Addr::from(value).into(),
        }
    }

    /// host-local's default gateway: the first address after the network's.
    fn first_host(&self) -> IpAddr {
        Self::from_bits(self.network, Self::bits(self.network).1 + 1)
    }

    fn contains(&self, ip: IpAddr) -> bool {
        if ip.is_ipv4() != self.network.is_ipv4() {
            return false;
        }
        let (bits, net) = Self::bits(self.network);
        let mask = !((1u128 << (bits - self.prefix)) - 1);
        Self::bits(ip).1 & mask == net
    }
}

/// libcni's container id rule (`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`), which also keeps the uid a
/// plain file name.
fn check_uid(uid: &str) -> Result<(), NetworkError> {
    let mut chars = uid.chars();
    let ok = uid.len() <= MAX_UID_LEN
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(NetworkError::InvalidPodUid(uid.to_string()))
    }
}

fn check_bridge_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IFNAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bridge {name:?}: want 1-{MAX_IFNAME_LEN} letters, digits, '-', '_' or '.'"
        ))
    }
}

/// `ips[0]` of a CNI 1.0 ADD result: the address (without its prefix length) and gateway.
fn parse_add_result(result: &Value, default_gateway: IpAddr) -> Result<(IpAddr, IpAddr), String> {
    let first = result
        .get("ips")
        .and_then(Value::as_array)
        .and_then(|ips| ips.first())
        .ok_or("no ips in the result")?;
    let address = first
        .get("address")
        .and_then(Value::as_str)
        .ok_or("ips[0].address missing")?;
    let ip = address
        .split_once('/')
        .map_or(address, |(ip, _)| ip)
        .parse()
        .map_err(|e| format!("ips[0].address {address:?}: {e}"))?;
    let gateway = match first.get("gateway").and_then(Value::as_str) {
        Some(gw) => gw
            .parse()
            .map_err(|e| format!("ips[0].gateway {gw:?}: {e}"))?,
        None => default_gateway,
    };
    Ok((ip, gateway))
}

/// The CNI error a failed plugin printed (`{"code", "msg", "details"}` on stdout), or else
/// whatever it printed.
fn plugin_error(out: &RunOutput) -> (Option<u64>, String) {
    #[derive(Deserialize)]
    struct CniError {
        code: Option<u64>,
        #[serde(default)]
        msg: String,
        #[serde(default)]
        details: String,
    }
    if let Ok(e) = serde_json::from_slice::<CniError>(&out.stdout)
        && !(e.msg.is_empty() && e.details.is_empty())
    {
        let msg = match (e.msg.is_empty(), e.details.is_empty()) {
            (false, false) => format!("{}; {}", e.msg, e.details),
            (true, _) => e.details,
            (_, true) => e.msg,
        };
        return (e.code, clip(&msg));
    }
    let text = [&out.stdout, &out.stderr]
        .iter()
        .map(|b| String::from_utf8_lossy(b).trim().to_string())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if text.is_empty() {
        (None, out.status.to_string())
    } else {
        (None, clip(&text))
    }
}

fn clip(s: &str) -> String {
    if s.len() <= MAX_ERROR_TEXT {
        return s.to_string();
    }
    let mut end = MAX_ERROR_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn dir_names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `path` is a mounted network (or other) namespace: an unmounted leftover file sits
/// on the directory's own filesystem instead.
fn is_netns(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

type NetnsFailure = (&'static str, io::Error);

/// Creates a network namespace and pins it at `path`, as containerd's `pkg/netns` does:
/// an empty file, and a thread of our own that unshares its network namespace, bind-mounts
/// it onto the file and exits. The thread is not a tokio worker because its namespace
/// changes for good; no other code ever runs on it.
async fn create_netns(path: &Path) -> Result<(), NetnsFailure> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| ("creating the directory of", e))?;
    }
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o444)
        .open(path)
        .map_err(|e| ("creating the file of", e))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let target = path.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("ketch-netns".into())
        .spawn(move || {
            let made = nix::sched::unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| ("unsharing", io::Error::from(e)))
                .and_then(|()| {
                    nix::mount::mount(
                        Some("/proc/thread-self/ns/net"),
                        &target,
                        None::<&str>,
                        MsFlags::MS_BIND,
                        None::<&str>,
                    )
                    .map_err(|e| ("bind-mounting", io::Error::from(e)))
                });
            let _ = tx.send(made);
        });
    let made = match spawned {
        Ok(_) => rx
            .await
            .unwrap_or_else(|_| Err(("creating", io::Error::other("the netns thread panicked")))),
        Err(e) => Err(("starting a thread for", e)),
    };
    if made.is_err() {
        let _ = fs::remove_file(path);
    }
    made
}

/// Unmounts and removes a netns file; a missing or unmounted one is fine. `MNT_DETACH`: a
/// process still holding the namespace open (a container being killed) keeps it alive
/// without blocking us.
fn remove_netns(path: &Path) -> Result<(), NetnsFailure> {
    // Several rounds in case a racing attach mounted twice.
    for _ in 0..4 {
        if !is_netns(path) {
            break;
        }
        match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => {}
            Err(e) => return Err(("unmounting", e.into())),
        }
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(("removing", e)),
        _ => Ok(()),
    }
}

struct RunOutput {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

enum RunError {
    Io(io::Error),
    Timeout,
}

/// Runs `cmd` with `input` on stdin and collects its output; after `limit` the child is
/// killed (`kill_on_drop`: the timed-out future drops it) and reaped by tokio.
async fn run_with_timeout(
    mut cmd: Command,
    input: Vec<u8>,
    limit: Duration,
) -> Result<RunOutput, RunError> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(RunError::Io)?;
    let stdin = child.stdin.take();
    let run = async move {
        if let Some(mut w) = stdin {
            // A plugin reads its whole (small) config before writing anything, so writing
            // first cannot stall on a full stdout pipe. One that exits without reading
            // everything closes the pipe: not our error.
            match w.write_all(&input).await {
                Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(e),
                _ => {}
            }
        }
        child.wait_with_output().await
    };
    match tokio::time::timeout(limit, run).await {
        Ok(out) => out.map(RunOutput::from).map_err(RunError::Io),
        Err(_) => Err(RunError::Timeout),
    }
}

impl From<std::process::Output> for RunOutput {
    fn from(o: std::process::Output) -> Self {
        RunOutput {
            status: o.status,
            stdout: o.stdout,
            stderr: o.stderr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::Read as _;
    use std::net::{SocketAddr, TcpListener, TcpStream};

    #[test]
    fn subnets_must_be_network_addresses_with_room_for_pods() {
        let s = Subnet::parse("10.89.0.0/24").unwrap();
        assert_eq!(s.first_host(), "10.89.0.1".parse::<IpAddr>().unwrap());
        assert!(s.contains("10.89.0.200".parse().unwrap()));
        assert!(!s.contains("10.89.1.1".parse().unwrap()));
        assert!(!s.contains("::1".parse().unwrap()));
        let v6 = Subnet::parse("fd00:89::/64").unwrap();
        assert_eq!(v6.first_host(), "fd00:89::1".parse::<IpAddr>().unwrap());
        let err = Subnet::parse("10.89.0.1/24").unwrap_err();
        assert!(err.contains("10.89.0.0/24"), "{err}");
        assert!(Subnet::parse("10.89.0.0/31").is_err());
        assert!(Subnet::parse("10.0.0.0/4").is_err());
        assert!(Subnet::parse("10.89.0.0").is_err());
        assert!(Subnet::parse("ten/24").is_err());
    }

    #[test]
    fn pod_uids_follow_the_cni_container_id_rule() {
        assert!(check_uid("0d5b1c9e-4f1a-4c55-9a0e-3d2c1b0a9f8e").is_ok());
        assert!(check_uid("a.b_c-d").is_ok());
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "-a",
            "a b",
            &"a".repeat(MAX_UID_LEN + 1),
        ] {
            assert!(check_uid(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bridge_names_fit_an_interface_name() {
        assert!(check_bridge_name("ketch0").is_ok());
        assert!(check_bridge_name("ketchtest123456").is_ok());
        assert!(check_bridge_name("ketchtest1234567").is_err());
        assert!(check_bridge_name("a/b").is_err());
        assert!(check_bridge_name("").is_err());
    }

    #[test]
    fn the_add_result_gives_the_address_without_its_prefix_and_the_gateway() {
        let result = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "ketch0"}, {"name": "veth1"}, {"name": "eth0", "sandbox": "/x"}],
            "ips": [{"interface": 2, "address": "10.89.0.5/24", "gateway": "10.89.0.1"}],
        });
        let gw: IpAddr = "10.89.0.254".parse().unwrap();
        assert_eq!(
            parse_add_result(&result, gw).unwrap(),
            ("10.89.0.5".parse().unwrap(), "10.89.0.1".parse().unwrap())
        );
        let no_gw = json!({"ips": [{"address": "10.89.0.5/24"}]});
        assert_eq!(parse_add_result(&no_gw, gw).unwrap().1, gw);
        assert!(parse_add_result(&json!({"ips": []}), gw).is_err());
        assert!(parse_add_result(&json!({"ips": [{"address": "x/24"}]}), gw).is_err());
    }

    fn failed(stdout: &str, stderr: &str) -> RunOutput {
        use std::os::unix::process::ExitStatusExt;
        RunOutput {
            status: ExitStatus::from_raw(1 << 8),
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    #[test]
    fn a_plugin_error_surfaces_the_cni_msg_and_code() {
        let (code, msg) = plugin_error(&failed(
            r#"{"code": 7, "msg": "failed to parse", "details": "bad json"}"#,
            "",
        ));
        assert_eq!((code, msg.as_str()), (Some(7), "failed to parse; bad json"));
        let (code, msg) = plugin_error(&failed("", "panic: boom\n"));
        assert_eq!((code, msg.as_str()), (None, "panic: boom"));
        let (_, msg) = plugin_error(&failed("", ""));
        assert!(msg.contains("exit status: 1"), "{msg}");

        let e = NetworkError::Plugin {
            pod: "default/web (u1)".into(),
            plugin: "bridge".into(),
            command: "ADD",
            code: Some(7),
            msg: "failed to parse".into(),
        };
        assert_eq!(
            e.to_string(),
            "pod default/web (u1): CNI ADD with plugin bridge failed (code 7): failed to parse"
        );
    }

    #[test]
    fn the_bridge_config_keeps_traffic_on_the_node() {
        let dir = tempfile::tempdir().unwrap();
        let Some(net) = network_in(dir.path(), "ketch0", "10.89.0.0/24") else {
            return;
        };
        let conf = net.bridge_conf(Some(&json!({"ips": []})));
        assert_eq!(conf["type"], "bridge");
        assert_eq!(conf["ipMasq"], false);
        assert_eq!(conf["isGateway"], true);
        assert_eq!(
            conf["ipam"]["ranges"],
            json!([[{"subnet": "10.89.0.0/24"}]])
        );
        assert_eq!(
            conf["ipam"]["dataDir"],
            json!(dir.path().join("state/ipam"))
        );
        assert_eq!(conf["prevResult"], json!({"ips": []}));
        assert!(conf["ipam"].get("routes").is_none(), "no default route");
        assert!(net.bridge_conf(None).get("prevResult").is_none());
    }

    fn attachment() -> Attachment {
        Attachment {
            netns: PathBuf::from("/run/ketch/netns/ketch0/u1"),
            ip: "10.89.0.7".parse().unwrap(),
            gateway: "10.89.0.1".parse().unwrap(),
            subnet: "10.89.0.0/24".into(),
            proxy: "10.89.0.1:15080".parse().unwrap(),
        }
    }

    fn pairs(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn containers_get_the_service_proxy_unless_the_pod_sets_it() {
        let att = attachment();
        assert_eq!(
            att.with_proxy_env(&pairs(&[("A", "1")])),
            pairs(&[
                ("A", "1"),
                ("HTTP_PROXY", "http://10.89.0.1:15080"),
                ("http_proxy", "http://10.89.0.1:15080"),
                ("NO_PROXY", "localhost,127.0.0.1,10.89.0.0/24"),
                ("no_proxy", "localhost,127.0.0.1,10.89.0.0/24"),
            ])
        );
        // Either spelling set by the Pod keeps the whole pair the Pod's.
        assert_eq!(
            att.with_proxy_env(&pairs(&[("http_proxy", ""), ("NO_PROXY", "x")])),
            pairs(&[("http_proxy", ""), ("NO_PROXY", "x")])
        );
        assert_eq!(
            att.with_proxy_env(&pairs(&[("HTTP_PROXY", "http://mine:3128")])),
            pairs(&[
                ("HTTP_PROXY", "http://mine:3128"),
                ("NO_PROXY", "localhost,127.0.0.1,10.89.0.0/24"),
                ("no_proxy", "localhost,127.0.0.1,10.89.0.0/24"),
            ])
        );
    }

    #[test]
    fn the_proxy_listens_on_the_bridge_address() {
        let dir = tempfile::tempdir().unwrap();
        let Some(net) = network_in(dir.path(), "kx0", "10.77.3.0/24") else {
            return;
        };
        assert_eq!(net.proxy_addr(), "10.77.3.1:15080".parse().unwrap());
    }

    #[test]
    fn resolv_conf_drops_loopback_nameservers_and_keeps_the_rest() {
        let host = "# generated\nnameserver 127.0.0.53\nnameserver 192.168.1.1\n\
                    nameserver ::1\nnameserver fe80::1%eth0\nsearch corp.example\n\
                    options edns0 trust-ad\nnameserver 127.1.2.3\n";
        assert_eq!(
            pod_resolv_conf(host),
            "# generated\nnameserver 192.168.1.1\nnameserver fe80::1%eth0\n\
             search corp.example\noptions edns0 trust-ad\n"
        );
    }

    #[test]
    fn resolv_conf_without_a_usable_nameserver_says_so() {
        let stub = pod_resolv_conf("nameserver 127.0.0.53\noptions edns0\nsearch .\n");
        assert_eq!(
            stub,
            "options edns0\nsearch .\n# ketch: no nameserver: the host's (127.0.0.53) are \
             loopback addresses, not reachable from the Pod; reach Services by name through \
             HTTP_PROXY\n"
        );
        assert!(!has_nameserver(&stub));
        let empty = pod_resolv_conf("");
        assert_eq!(
            empty,
            "# ketch: no nameserver: the host names none; reach Services by name through \
             HTTP_PROXY\n"
        );
        // A commented-out or malformed line is not a nameserver, and is kept as it is.
        let odd = pod_resolv_conf("#nameserver 1.1.1.1\nnameserver\nnameserver bogus\n");
        assert!(odd.starts_with("#nameserver 1.1.1.1\nnameserver\nnameserver bogus\n"));
        assert!(
            has_nameserver(&odd),
            "an unparsable address is the resolver's to judge"
        );
    }

    #[test]
    fn missing_plugins_name_the_directories_and_the_package() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = NetworkConfig::new(dir.path().join("state"));
        cfg.cni_bin_dirs = vec![dir.path().join("a"), dir.path().join("b")];
        let err = PodNetwork::new(cfg).unwrap_err().to_string();
        assert!(
            err.contains("\"bridge\", \"host-local\", \"loopback\""),
            "{err}"
        );
        assert!(
            err.contains(&dir.path().join("b").display().to_string()),
            "{err}"
        );
        assert!(
            err.contains("apt install containernetworking-plugins"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_command_gets_its_input_and_a_hung_one_is_killed() {
        let out = run_with_timeout(
            Command::new("cat"),
            b"conf".to_vec(),
            Duration::from_secs(5),
        )
        .await
        .unwrap_or_else(|_| panic!("cat failed"));
        assert!(out.status.success());
        assert_eq!(out.stdout, b"conf");

        let mut sleep = Command::new("sleep");
        sleep.arg("30");
        let started = std::time::Instant::now();
        let r = run_with_timeout(sleep, Vec::new(), Duration::from_millis(200)).await;
        assert!(matches!(r, Err(RunError::Timeout)));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// A network with state and netns dirs under `dir`; `None` (test skipped) only when the
    /// plugins are not installed, which CI's image guarantees they are.
    fn network_in(dir: &Path, bridge: &str, subnet: &str) -> Option<PodNetwork> {
        let mut cfg = NetworkConfig::new(dir.join("state"));
        cfg.bridge = bridge.into();
        cfg.subnet = subnet.into();
        cfg.netns_dir = dir.join("netns");
        match PodNetwork::new(cfg) {
            Ok(net) => Some(net),
            Err(e @ NetworkError::PluginsMissing { .. }) => {
                eprintln!("skipping: {e}");
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    /// Runs `f` on a new thread that first joins the network namespace at `netns` (if any).
    fn in_netns<T: Send + 'static>(
        netns: Option<&Path>,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> std::thread::JoinHandle<io::Result<T>> {
        let netns = netns.map(Path::to_path_buf);
        std::thread::spawn(move || {
            if let Some(path) = netns {
                let file = fs::File::open(path)?;
                nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)?;
            }
            f()
        })
    }

    /// Listens on `ip` inside `netns`, answers one connection with "ok"; returns the port.
    fn serve_ok_once(netns: &Path, ip: IpAddr) -> u16 {
        let (tx, rx) = std::sync::mpsc::channel();
        in_netns(Some(netns), move || {
            let listener = TcpListener::bind((ip, 0))?;
            let _ = tx.send(listener.local_addr()?.port());
            let (mut conn, _) = listener.accept()?;
            conn.write_all(b"ok")
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("listener inside the pod netns")
    }

    fn fetch_from(netns: Option<&Path>, addr: SocketAddr) -> io::Result<String> {
        in_netns(netns, move || {
            let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            conn.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut body = String::new();
            conn.read_to_string(&mut body)?;
            Ok(body)
        })
        .join()
        .expect("fetch thread")
    }

    async fn attach_reach_and_detach(net: &PodNetwork) {
        let subnet = Subnet::parse(&net.config().subnet).unwrap();
        let a = net.attach("pod-a", "default", "a").await.unwrap();
        assert_eq!(a.netns, net.config().netns_dir.join("pod-a"));
        assert!(
            is_netns(&a.netns),
            "{} is a mounted netns",
            a.netns.display()
        );
        assert!(subnet.contains(a.ip), "{} in {}", a.ip, net.config().subnet);
        assert_eq!(a.gateway, net.gateway_ip());
        assert_eq!(net.existing("pod-a"), Some(a.clone()));
        assert_eq!(
            net.attach("pod-a", "default", "a").await.unwrap(),
            a,
            "idempotent"
        );

        // Node → Pod: local delivery over the bridge.
        let port = serve_ok_once(&a.netns, a.ip);
        assert_eq!(fetch_from(None, SocketAddr::new(a.ip, port)).unwrap(), "ok");

        // Pod → Pod: bridged, so through FORWARD when br_netfilter is loaded.
        let b = net.attach("pod-b", "default", "b").await.unwrap();
        assert_ne!(a.ip, b.ip);
        let port = serve_ok_once(&a.netns, a.ip);
        assert_eq!(
            fetch_from(Some(&b.netns), SocketAddr::new(a.ip, port)).unwrap(),
            "ok"
        );

        // Pod → node at the gateway address.
        let (tx, rx) = std::sync::mpsc::channel();
        let gw = net.gateway_ip();
        std::thread::spawn(move || -> io::Result<()> {
            let listener = TcpListener::bind((gw, 0))?;
            let _ = tx.send(listener.local_addr()?.port());
            let (mut conn, _) = listener.accept()?;
            conn.write_all(b"ok")
        });
        let port = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(
            fetch_from(Some(&a.netns), SocketAddr::new(gw, port)).unwrap(),
            "ok"
        );

        // Nothing off the node: the Pod has no default route.
        let off_node = fetch_from(Some(&a.netns), "192.0.2.1:80".parse().unwrap()).unwrap_err();
        assert_eq!(
            off_node.raw_os_error(),
            Some(nix::libc::ENETUNREACH),
            "{off_node}"
        );

        // A crash after ADD but before the record: the next attach starts over cleanly.
        fs::remove_file(net.record_path("pod-b")).unwrap();
        assert_eq!(net.existing("pod-b"), None);
        let b2 = net.attach("pod-b", "default", "b").await.unwrap();
        assert!(is_netns(&b2.netns));
        assert_eq!(net.existing("pod-b"), Some(b2));

        // A reboot empties netns_dir (tmpfs) but keeps the record: attach starts over too.
        remove_netns(&a.netns).unwrap();
        assert_eq!(net.existing("pod-a"), None);
        assert_eq!(net.list(), ["pod-a", "pod-b"]);
        let a = net.attach("pod-a", "default", "a").await.unwrap();
        assert_eq!(net.existing("pod-a"), Some(a.clone()));

        assert_eq!(net.list(), ["pod-a", "pod-b"]);
        net.detach("pod-a").await.unwrap();
        assert!(!a.netns.exists(), "netns file removed");
        assert_eq!(net.existing("pod-a"), None);
        net.detach("pod-a").await.unwrap();
        net.detach("never-attached").await.unwrap();
        assert_eq!(net.list(), ["pod-b"]);
        net.detach("pod-b").await.unwrap();
        assert!(net.list().is_empty());
        // Every address went back to host-local.
        let allocated = dir_names(&net.config().state_dir.join("ipam").join(NETWORK_NAME))
            .into_iter()
            .filter(|n| n.parse::<IpAddr>().is_ok())
            .collect::<Vec<_>>();
        assert!(allocated.is_empty(), "leaked addresses {allocated:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pods_get_a_netns_on_the_bridge_reachable_from_the_node() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test creates network namespaces and a bridge: run it as root"
        );
        let dir = tempfile::tempdir().unwrap();
        let tag: u32 = rand::random::<u32>() % 1_000_000;
        let third = rand::random::<u8>();
        let bridge = format!("ketchtest{tag}");
        let Some(net) = network_in(dir.path(), &bridge, &format!("10.250.{third}.0/24")) else {
            return;
        };
        let net = Arc::new(net);
        // Run the body as a task so the cleanup below runs even when it panics.
        let body = tokio::spawn({
            let net = net.clone();
            async move { attach_reach_and_detach(&net).await }
        })
        .await;
        for uid in net.list() {
            let _ = net.detach(&uid).await;
        }
        net.remove_bridge().await.unwrap();
        assert!(!Path::new("/sys/class/net").join(&bridge).exists());
        if let Err(e) = body {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}
