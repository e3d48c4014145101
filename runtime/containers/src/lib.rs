//! `ketch-containers` runs Linux containers for the node agent: a [`WorkloadRuntime`] on
//! containerd (namespace `ketch`, the stock runc v2 shim, its gRPC API through the typed
//! layer in [`containerd`]), images pulled by ketch into containerd's content store
//! ([`image`]), an OCI runtime spec generated from the Pod ([`spec`], [`seccomp`]), and one
//! network namespace per Pod on a ketch-owned CNI bridge ([`network`], set up by the agent
//! before the containers start).
//!
//! Each container is a containerd container + task with its own lease and rootfs snapshot;
//! stdout/stderr go through FIFOs the agent reads into the Pod's bounded log files. Exits
//! come from the task's `Wait`; OOM kills are read from the container's memory cgroup
//! before its task is deleted. Containers carry labels naming their Pod, so an agent that
//! was killed and restarted re-adopts what containerd still runs ([`ContainerRuntime`]'s
//! `start` finds it) and removes what no Pod claims ([`WorkloadRuntime::reap`]).

pub mod containerd;
pub mod image;
pub mod network;
pub mod seccomp;
pub mod spec;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use containerd_client::services::v1 as api;
use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;

use crate::containerd::{Containerd, ContainerdError, RUNC_V2, SNAPSHOTTER, SPEC_TYPE_URL};
use crate::image::{Images, PullPolicy};
use ketch_workload::{
    InvokeFailure, OutputSink, OutputStream, StartError, StartReason, Started, TargetPort,
    Workload, WorkloadExit, WorkloadRuntime, WorkloadSpec,
};

pub use containerd::NAMESPACE;

use ketch_api::wellknown::{LABEL_CONTAINER, LABEL_NODE, LABEL_POD, LABEL_POD_UID};

/// Default `terminationGracePeriodSeconds`.
const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// After SIGKILL, how long to wait for the exit before giving up on the task.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// How the agent reaches containerd.
#[derive(Debug, Clone)]
pub struct ContainerConfig {
    /// containerd's gRPC socket.
    pub socket: PathBuf,
    /// FIFOs and per-Pod files (`<data dir>/containers`).
    pub state_dir: PathBuf,
    /// Protocol and credentials per registry (shared with the Wasm runtime).
    pub registries: Arc<ketch_oci::Registries>,
    pub node: String,
    /// `pids.max` of every container (the kubelet's `podPidsLimit`).
    pub pids_limit: i64,
}

/// Default per-container process limit.
pub const DEFAULT_PIDS_LIMIT: i64 = 1024;

/// The [`WorkloadRuntime`] for Linux containers.
pub struct ContainerRuntime {
    cd: Containerd,
    images: Images,
    cfg: ContainerConfig,
    http: HttpClient<HttpConnector, Body>,
    pub version: String,
}

impl std::fmt::Debug for ContainerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerRuntime")
            .field("socket", &self.cfg.socket)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

fn create_err(message: impl Into<String>) -> StartError {
    StartError {
        reason: StartReason::CreateContainerError,
        message: message.into(),
    }
}

fn cri_err(what: &str) -> impl FnOnce(ContainerdError) -> StartError + '_ {
    move |e| create_err(format!("{what}: {e}"))
}

/// The cgroup's OOM-kill count (cgroup v2 `memory.events`, or v1 `memory.oom_control`).
fn oom_kills(cgroups_path: &str) -> u64 {
    let rel = cgroups_path.trim_start_matches('/');
    let candidates = [
        (
            Path::new("/sys/fs/cgroup").join(rel).join("memory.events"),
            "oom_kill ",
        ),
        (
            Path::new("/sys/fs/cgroup/memory")
                .join(rel)
                .join("memory.oom_control"),
            "oom_kill ",
        ),
    ];
    for (path, key) in candidates {
        if let Ok(text) = std::fs::read_to_string(&path) {
            return text
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
        }
    }
    0
}

/// Kubernetes' terminated reason for an exit.
pub fn exit_reason(exit_code: i32, oom_killed: bool) -> &'static str {
    if oom_killed {
        "OOMKilled"
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

impl ContainerRuntime {
    /// Connects to containerd.
    ///
    /// # Errors
    /// [`ContainerdError::Connect`] when containerd is not there: the node then does not offer the
    /// container runtime.
    pub async fn connect(cfg: ContainerConfig) -> Result<Self, ContainerdError> {
        let (cd, version) = Containerd::connect(&cfg.socket).await?;
        let images = Images::new(cd.clone(), cfg.registries.clone());
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let http = HttpClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Ok(Self {
            cd,
            images,
            cfg,
            http,
            version,
        })
    }

    fn fifo(&self, id: &str, stream: OutputStream) -> PathBuf {
        io_file(&self.cfg.state_dir, id, stream.as_str())
    }

    /// The running container of this Pod container from before a restart, if any; stopped
    /// leftovers are removed.
    async fn find_existing(&self, spec: &WorkloadSpec) -> Result<Option<String>, StartError> {
        let found = self
            .cd
            .list_containers(&[
                (LABEL_POD_UID, spec.pod_uid.as_str()),
                (LABEL_CONTAINER, spec.container.as_str()),
            ])
            .await
            .map_err(cri_err("listing containers"))?;
        let mut adopt = None;
        for c in found {
            let running = matches!(
                self.cd.task(&c.id).await,
                Ok(Some(p)) if p.status == containerd_client::types::v1::Status::Running as i32
            );
            if running && adopt.is_none() {
                adopt = Some(c.id);
            } else {
                self.remove(&c.id).await;
            }
        }
        Ok(adopt)
    }

    /// Deletes everything of container `id` (logging failures: cleanup is best effort and
    /// retried by the next reap).
    async fn remove(&self, id: &str) {
        if let Err(e) = self.cd.remove_container(id).await {
            tracing::warn!(error = %e, container = id, "removing container");
        }
        remove_io_files(&self.cfg.state_dir, id);
    }

    async fn create(&self, spec: &WorkloadSpec) -> Result<Started, StartError> {
        let def = &spec.definition;
        let policy = PullPolicy::of(def.image_pull_policy.as_deref(), &spec.image);
        let ready = self
            .images
            .ensure(&spec.image, policy, &spec.progress)
            .await
            .map_err(|e| StartError {
                reason: StartReason::ErrImagePull,
                message: e.to_string(),
            })?;
        let id = format!(
            "{}-{}-{:08x}",
            &spec.pod_uid[..spec.pod_uid.len().min(8)],
            spec.container,
            rand::random::<u32>()
        );
        let cgroups_path = format!("/ketch/{id}");
        let defaults = spec::ImageDefaults::from_config(&ready.config);
        let security = spec::Security::of(&spec.pod_spec, def);
        let cpu_limit_millis = def
            .resources
            .as_ref()
            .and_then(|r| r.limits.get("cpu"))
            .and_then(|q| q.millis().ok())
            .and_then(|m| u64::try_from(m).ok());
        let mut extra_mounts = Vec::new();
        let mut pod_files = Vec::new();
        let mut env = spec.env.clone();
        if let Some(net) = &spec.network {
            // Services by name through the node's proxy (`$(HTTP_PROXY)` expands in args).
            env = net.with_proxy_env(&env);
            let hosts = format!(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{}\n",
                net.ip, spec.pod_name
            );
            let files = [
                ("hosts", "/etc/hosts", hosts),
                (
                    "resolv.conf",
                    "/etc/resolv.conf",
                    network::host_pod_resolv_conf(),
                ),
            ];
            for (kind, dest, content) in files {
                // Per container, next to its FIFOs, so it goes with them.
                let path = io_file(&self.cfg.state_dir, &id, kind);
                extra_mounts.push((dest.to_string(), path.display().to_string(), true));
                pod_files.push((path, content));
            }
        }
        let oci = spec::build(&spec::SpecInput {
            hostname: &spec.pod_name,
            image: &defaults,
            command: &def.command,
            args: &def.args,
            env: &env,
            working_dir: def.working_dir.as_deref(),
            memory_limit: spec.memory_limit,
            cpu_limit_millis,
            pids_limit: self.cfg.pids_limit,
            security: &security,
            netns: spec.network.as_ref().map(|n| n.netns.as_path()),
            cgroups_path: &cgroups_path,
            extra_mounts: &extra_mounts,
        })
        .map_err(|e| StartError {
            reason: StartReason::CreateContainerConfigError,
            message: e.to_string(),
        })?;
        let spec_json = serde_json::to_vec(&oci)
            .map_err(|e| create_err(format!("encoding the runtime spec: {e}")))?;
        // Written once the spec is good, so a refused spec leaves no file behind.
        if let Err(e) = write_pod_files(&pod_files) {
            remove_io_files(&self.cfg.state_dir, &id);
            return Err(e);
        }
        let labels = HashMap::from([
            (LABEL_POD_UID.to_string(), spec.pod_uid.clone()),
            (
                LABEL_POD.to_string(),
                format!("{}/{}", spec.namespace, spec.pod_name),
            ),
            (LABEL_CONTAINER.to_string(), spec.container.clone()),
            (LABEL_NODE.to_string(), self.cfg.node.clone()),
        ]);
        let result = self
            .create_and_start(&id, &ready, spec_json, labels, spec)
            .await;
        match result {
            Ok(workload) => Ok(Started {
                workload,
                image_id: format!("{}@{}", ready.name, ready.digest),
                container_id: format!("containerd://{id}"),
                detail: if ready.pulled {
                    format!(
                        "Pulled image \"{}\" ({} bytes, {})",
                        spec.image, ready.bytes, ready.digest
                    )
                } else {
                    format!(
                        "Container image \"{}\" already present on machine",
                        spec.image
                    )
                },
                adopted: false,
            }),
            Err(e) => {
                self.remove(&id).await;
                Err(e)
            }
        }
    }

    async fn create_and_start(
        &self,
        id: &str,
        ready: &image::ReadyImage,
        spec_json: Vec<u8>,
        labels: HashMap<String, String>,
        spec: &WorkloadSpec,
    ) -> Result<Arc<dyn Workload>, StartError> {
        self.cd
            .create_lease(id, labels.clone())
            .await
            .map_err(cri_err("creating the lease"))?;
        let mounts = self
            .cd
            .prepare_snapshot(id, &ready.chain_id, id)
            .await
            .map_err(cri_err("preparing the rootfs snapshot"))?;
        let container = api::Container {
            id: id.to_string(),
            labels,
            image: ready.name.clone(),
            runtime: Some(api::container::Runtime {
                name: RUNC_V2.to_string(),
                options: None,
            }),
            spec: Some(prost_types::Any {
                type_url: SPEC_TYPE_URL.to_string(),
                value: spec_json,
            }),
            snapshotter: SNAPSHOTTER.to_string(),
            snapshot_key: id.to_string(),
            ..Default::default()
        };
        self.cd
            .raw()
            .containers()
            .create(self.cd.leased(
                api::CreateContainerRequest {
                    container: Some(container),
                },
                id,
            ))
            .await
            .map_err(containerd::call("create container"))
            .map_err(cri_err("creating the container"))?;
        let io = self.open_io(id, spec.output.clone())?;
        let created = self
            .cd
            .raw()
            .tasks()
            .create(self.cd.req(api::CreateTaskRequest {
                container_id: id.to_string(),
                rootfs: mounts,
                stdout: self.fifo(id, OutputStream::Stdout).display().to_string(),
                stderr: self.fifo(id, OutputStream::Stderr).display().to_string(),
                ..Default::default()
            }))
            .await;
        if let Err(s) = created {
            io.stop();
            return Err(create_err(format!("creating the task: {}", s.message())));
        }
        let workload = self.watch(id, spec, io);
        if let Err(s) = self
            .cd
            .raw()
            .tasks()
            .start(self.cd.req(api::StartRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            }))
            .await
        {
            workload.abandon();
            return Err(StartError {
                reason: StartReason::CreateContainerError,
                message: format!("starting the container: {}", s.message()),
            });
        }
        Ok(workload)
    }

    /// Opens the container's stdout/stderr FIFOs (creating them) and copies what arrives
    /// into `sink`.
    fn open_io(&self, id: &str, sink: Arc<dyn OutputSink>) -> Result<IoCopy, StartError> {
        let dir = self.cfg.state_dir.join("io");
        std::fs::create_dir_all(&dir)
            .map_err(|e| create_err(format!("creating {}: {e}", dir.display())))?;
        let (stop_tx, stop_rx) = watch::channel(false);
        for stream in [OutputStream::Stdout, OutputStream::Stderr] {
            let path = self.fifo(id, stream);
            if !path.exists() {
                nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                    .map_err(|e| create_err(format!("mkfifo {}: {e}", path.display())))?;
            }
            // Read-write: the FIFO never reports EOF while the shim reconnects or before it
            // opens its end; the copier stops when the container has exited.
            let rx = tokio::net::unix::pipe::OpenOptions::new()
                .read_write(true)
                .open_receiver(&path)
                .map_err(|e| create_err(format!("opening {}: {e}", path.display())))?;
            tokio::spawn(copy_output(rx, stream, sink.clone(), stop_rx.clone()));
        }
        Ok(IoCopy { stop: stop_tx })
    }

    /// Starts the task's exit watcher; the returned workload is live until it exits.
    fn watch(&self, id: &str, spec: &WorkloadSpec, io: IoCopy) -> Arc<ContainerWorkload> {
        let (exit_tx, exit_rx) = watch::channel(None);
        let grace = spec
            .pod_spec
            .termination_grace_period_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(DEFAULT_GRACE, Duration::from_secs);
        let ports = spec
            .definition
            .ports
            .iter()
            .filter_map(|p| u16::try_from(p.container_port).ok())
            .collect();
        let workload = Arc::new(ContainerWorkload {
            id: id.to_string(),
            cd: self.cd.clone(),
            ip: spec.network.as_ref().map(|n| n.ip),
            ports,
            grace,
            http: self.http.clone(),
            exit: exit_rx,
            abandoned: Mutex::new(None),
        });
        let cd = self.cd.clone();
        let id = id.to_string();
        let state_dir = self.cfg.state_dir.clone();
        let waiter = tokio::spawn(async move {
            let exit = wait_exit(&cd, &id).await;
            // Let the shim flush what the process wrote last, then stop copying.
            tokio::time::sleep(Duration::from_millis(50)).await;
            io.stop();
            if let Err(e) = cd.remove_container(&id).await {
                tracing::warn!(error = %e, container = %id, "removing exited container");
            }
            remove_io_files(&state_dir, &id);
            let _ = exit_tx.send(Some(exit));
        });
        *workload.abandoned.lock().unwrap_or_else(|p| p.into_inner()) = Some(waiter);
        workload
    }
}

/// A file the agent keeps for container `id` under `<state>/io`: `stdout`/`stderr` FIFOs,
/// its `/etc/hosts` and `/etc/resolv.conf`.
fn io_file(state_dir: &Path, id: &str, kind: &str) -> PathBuf {
    state_dir.join("io").join(format!("{id}.{kind}"))
}

fn write_pod_files(files: &[(PathBuf, String)]) -> Result<(), StartError> {
    for (path, content) in files {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| create_err(format!("creating {}: {e}", dir.display())))?;
        }
        std::fs::write(path, content)
            .map_err(|e| create_err(format!("writing {}: {e}", path.display())))?;
    }
    Ok(())
}

fn remove_io_files(state_dir: &Path, id: &str) {
    for kind in ["stdout", "stderr", "hosts", "resolv.conf"] {
        let _ = std::fs::remove_file(io_file(state_dir, id, kind));
    }
}

/// Waits for the task to exit and describes how it ended.
async fn wait_exit(cd: &Containerd, id: &str) -> WorkloadExit {
    let cgroups_path = format!("/ketch/{id}");
    loop {
        match cd.wait_task(id).await {
            Ok(r) => {
                let code = i32::try_from(r.exit_status).unwrap_or(255);
                let oom = oom_kills(&cgroups_path) > 0;
                return WorkloadExit {
                    exit_code: code,
                    reason: exit_reason(code, oom).to_string(),
                    message: oom.then(|| "the container exceeded its memory limit".to_string()),
                };
            }
            Err(s) if s.code() == containerd_client::tonic::Code::NotFound => {
                return WorkloadExit {
                    exit_code: 255,
                    reason: "Error".into(),
                    message: Some(format!("containerd lost the task: {}", s.message())),
                };
            }
            Err(s) => {
                // containerd restarting: the shim keeps the task; ask again.
                tracing::warn!(container = id, error = %s.message(), "waiting for task (retrying)");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn copy_output(
    rx: tokio::net::unix::pipe::Receiver,
    stream: OutputStream,
    sink: Arc<dyn OutputSink>,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            r = rx.readable() => {
                if r.is_err() {
                    return;
                }
                match rx.try_read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => sink.write(stream, &buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
            _ = stop.wait_for(|s| *s) => {
                // Drain what is buffered, then stop.
                while let Ok(n) = rx.try_read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.write(stream, &buf[..n]);
                }
                return;
            }
        }
    }
}

/// Stops the output copiers of one container.
struct IoCopy {
    stop: watch::Sender<bool>,
}

impl IoCopy {
    fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

/// One running Linux container.
pub struct ContainerWorkload {
    id: String,
    cd: Containerd,
    ip: Option<std::net::IpAddr>,
    /// Declared container ports: the first is used when a request names none.
    ports: Vec<u16>,
    grace: Duration,
    http: HttpClient<HttpConnector, Body>,
    exit: watch::Receiver<Option<WorkloadExit>>,
    /// The exit watcher, aborted if the task never started.
    abandoned: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl ContainerWorkload {
    fn abandon(&self) {
        if let Some(h) = self
            .abandoned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            h.abort();
        }
    }

    fn has_exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    async fn wait_exited(&self, budget: Duration) -> bool {
        let mut rx = self.exit.clone();
        tokio::time::timeout(budget, rx.wait_for(Option::is_some))
            .await
            .is_ok()
    }
}

impl Workload for ContainerWorkload {
    fn invoke(
        &self,
        mut req: http::Request<Body>,
    ) -> BoxFuture<'_, Result<http::Response<Body>, InvokeFailure>> {
        async move {
            let Some(ip) = self.ip else {
                return Err(InvokeFailure::NotHttp);
            };
            let port = req
                .extensions()
                .get::<TargetPort>()
                .map(|p| p.0)
                .or_else(|| self.ports.first().copied())
                .ok_or(InvokeFailure::NotHttp)?;
            let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let addr = std::net::SocketAddr::new(ip, port);
            let uri: http::Uri = format!("http://{addr}{pq}")
                .parse()
                .map_err(|e| InvokeFailure::BadRequest(format!("{e}")))?;
            if req.headers().get(http::header::HOST).is_none()
                && let Some(a) = req.uri().authority()
                && let Ok(v) = http::HeaderValue::from_str(a.as_str())
            {
                req.headers_mut().insert(http::header::HOST, v);
            }
            *req.uri_mut() = uri;
            *req.version_mut() = http::Version::HTTP_11;
            match self.http.request(req).await {
                Ok(resp) => Ok(resp.map(Body::new)),
                Err(e) => {
                    let msg = format!("{addr}: {}", ketch_api::format::error_chain(&e));
                    // The gateway may send a request that never reached the container to
                    // another endpoint; one that may have, only if it is safe to repeat.
                    Err(if e.is_connect() {
                        InvokeFailure::Unreachable(msg)
                    } else {
                        InvokeFailure::Disconnected(msg)
                    })
                }
            }
        }
        .boxed()
    }

    fn exited(&self) -> BoxFuture<'static, WorkloadExit> {
        let mut rx = self.exit.clone();
        async move {
            match rx.wait_for(Option::is_some).await {
                Ok(v) => v.clone().unwrap_or_else(|| unreachable_exit("no exit")),
                Err(_) => unreachable_exit("the exit watcher stopped"),
            }
        }
        .boxed()
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        async move {
            if self.has_exited() {
                return;
            }
            // SIGTERM, the grace period, then SIGKILL (the kubelet's sequence).
            if let Err(e) = self.cd.kill(&self.id, 15).await {
                tracing::warn!(error = %e, container = %self.id, "SIGTERM");
            }
            if self.wait_exited(self.grace).await {
                return;
            }
            if let Err(e) = self.cd.kill(&self.id, 9).await {
                tracing::warn!(error = %e, container = %self.id, "SIGKILL");
            }
            if !self.wait_exited(KILL_WAIT).await {
                tracing::warn!(container = %self.id, "task did not exit after SIGKILL; removing it");
                self.abandon();
                if let Err(e) = self.cd.remove_container(&self.id).await {
                    tracing::warn!(error = %e, container = %self.id, "removing container");
                }
            }
        }
        .boxed()
    }
}

fn unreachable_exit(why: &str) -> WorkloadExit {
    WorkloadExit {
        exit_code: 255,
        reason: "Error".into(),
        message: Some(why.into()),
    }
}

impl WorkloadRuntime for ContainerRuntime {
    fn name(&self) -> &str {
        "container"
    }

    fn start(&self, spec: WorkloadSpec) -> BoxFuture<'_, Result<Started, StartError>> {
        async move {
            if let Some(id) = self.find_existing(&spec).await? {
                let io = self.open_io(&id, spec.output.clone())?;
                let workload = self.watch(&id, &spec, io);
                return Ok(Started {
                    workload,
                    image_id: String::new(),
                    container_id: format!("containerd://{id}"),
                    detail: format!("Re-adopted running container {id}"),
                    adopted: true,
                });
            }
            self.create(&spec).await
        }
        .boxed()
    }

    /// Whether `image` is already pulled and unpacked on this node.
    fn has_image<'a>(&'a self, image: &'a str) -> BoxFuture<'a, bool> {
        self.images.present(image).boxed()
    }

    fn reap<'a>(&'a self, live: &'a HashSet<String>) -> BoxFuture<'a, ()> {
        async move {
            let all = match self
                .cd
                .list_containers(&[(LABEL_NODE, self.cfg.node.as_str())])
                .await
            {
                Ok(all) => all,
                Err(e) => {
                    tracing::warn!(error = %e, "listing containers to reap");
                    return;
                }
            };
            for c in all {
                let uid = c.labels.get(LABEL_POD_UID).cloned().unwrap_or_default();
                if !live.contains(&uid) {
                    tracing::info!(container = %c.id, pod_uid = %uid, "removing a container no Pod claims");
                    self.remove(&c.id).await;
                }
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_reasons_follow_the_kubelet() {
        assert_eq!(exit_reason(0, false), "Completed");
        assert_eq!(exit_reason(3, false), "Error");
        assert_eq!(exit_reason(137, true), "OOMKilled");
    }
}
