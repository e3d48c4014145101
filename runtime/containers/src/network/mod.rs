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

mod cni;
mod netns;
mod resolv;
mod subnet;

use std::collections::{BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use ketch_workload::Attachment;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::process::Command;

use self::cni::{RunError, clip, parse_add_result, plugin_error, run_with_timeout};
use self::netns::{create_netns, is_netns, remove_netns};
pub use self::resolv::{host_pod_resolv_conf, pod_resolv_conf};
use self::subnet::Subnet;

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
/// A plugin that neither finishes nor fails in this time is killed (the CRI uses minutes,
/// but ours only create a veth and write a file).
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The CNI network name; host-local keeps its allocations under `{dataDir}/{name}`.
const NETWORK_NAME: &str = "ketch";
const IFNAME: &str = "eth0";
const CNI_VERSION: &str = "1.0.0";
const REQUIRED_PLUGINS: [&str; 3] = ["bridge", "host-local", "loopback"];
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
        // A random name created exclusively (O_EXCL): no file or symlink someone else put
        // there is written through.
        let tmp = path.with_extension(format!("{:016x}.tmp", rand::random::<u64>()));
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| NetworkError::Io {
            context: "encoding the pod network record".into(),
            source: e.into(),
        })?;
        let write = || -> io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path).inspect_err(|_| {
                let _ = fs::remove_file(&tmp);
            })
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

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::Read as _;
    use std::net::{SocketAddr, TcpListener, TcpStream};

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

    #[test]
    fn the_proxy_listens_on_the_bridge_address() {
        let dir = tempfile::tempdir().unwrap();
        let Some(net) = network_in(dir.path(), "kx0", "10.77.3.0/24") else {
            return;
        };
        assert_eq!(net.proxy_addr(), "10.77.3.1:15080".parse().unwrap());
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
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)?;
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
