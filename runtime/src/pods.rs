//! Pods bound to this node: a resumable watch feeds one worker task per Pod uid; each worker
//! starts the Pod's containers through the [`WorkloadRuntime`], restarts them with
//! [`Backoff`], reports status and events, and stops them when the Pod goes away.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use futures_util::StreamExt as _;
use ketch_api::core::{
    ConfigMap, ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
    Pod, Secret,
};
use ketch_client::{Client, ListParams};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_util::task::AbortOnDropHandle;

use ketch_api::runtime::{Runtime, RuntimeChoice};

use crate::backoff::Backoff;
use crate::container::ContainerRuntime;
use crate::container::network::{Attachment, PodNetwork};
use crate::env::{self, EnvSources};
use crate::events::{EventType, PodRef, Recorder};
use crate::logs::{self, FileSink};
use crate::oci::PullPolicy;
use crate::oci::wasm::ArtifactKind;
use crate::probe::{self, Kind as ProbeKind};
use crate::status::{self, PodFacts};
use crate::workload::{
    StartError, StartReason, Started, Workload, WorkloadExit, WorkloadRuntime, WorkloadSpec,
};

/// `status.podIP` of in-process Wasm Pods: they have no network namespace of their own and
/// are reached through the agent (proxy, gateway), so they report the loopback address.
pub const WASM_POD_IP: &str = "127.0.0.1";
/// Per-request deadline annotation (`30s`, `500ms`).
pub const ANN_REQUEST_TIMEOUT: &str = "ketch.dev/request-timeout";
/// Requests in flight per Pod.
pub const ANN_MAX_CONCURRENCY: &str = "ketch.dev/max-concurrency";
/// Comma-separated outbound allow-list.
pub const ANN_OUTBOUND_HOSTS: &str = "ketch.dev/allowed-outbound-hosts";

/// The waiting reason between two failed image pulls.
const IMAGE_PULL_BACKOFF: &str = "ImagePullBackOff";

/// Retry period of a failed status write.
const STATUS_RETRY: Duration = Duration::from_secs(1);

/// What the HTTP side needs of a Pod on this node.
#[derive(Clone)]
pub(crate) struct PodEntry {
    pub uid: String,
    pub log_dir: PathBuf,
    /// Containers in spec order, with their workload while running.
    pub containers: Vec<(String, Option<Arc<dyn Workload>>)>,
}

pub(crate) type Registry = RwLock<HashMap<(String, String), PodEntry>>;

/// Shared by the pod manager, every worker and the HTTP server.
pub(crate) struct Ctx {
    pub client: Client,
    pub node: String,
    pub host_ip: String,
    pub logs_root: PathBuf,
    pub wasm: Arc<dyn WorkloadRuntime>,
    /// Linux containers, when containerd (and the CNI plugins) are there.
    pub containers: Option<(Arc<ContainerRuntime>, Arc<PodNetwork>)>,
    /// Registry protocol and credentials (to ask what a reference is).
    pub registries: Arc<crate::oci::Registries>,
    /// Wasm components pulled from registries (shared with the Wasm runtime).
    pub wasm_store: Arc<crate::oci::wasm::WasmStore>,
    pub recorder: Recorder,
    pub registry: Registry,
    /// Routes requests to Services: the gateway listener's handler and the in-cluster caller
    /// given to workloads.
    pub gateway: Arc<crate::gateway::Dispatcher>,
    /// The node's Prometheus metrics (the gateway's handles are shared with `gateway`).
    pub metrics: crate::metrics::NodeMetrics,
}

impl Ctx {
    /// The runtime handler names this node offers.
    pub fn runtime_names(&self) -> Vec<String> {
        let mut v = vec![self.wasm.name().to_string()];
        if let Some((c, _)) = &self.containers {
            v.push(c.name().to_string());
        }
        v
    }

    /// Removes containers and Pod networks no Pod bound here claims (after a restart).
    async fn reap(&self, live: &std::collections::HashSet<String>) {
        if let Some((rt, net)) = &self.containers {
            rt.reap(live).await;
            for uid in net.list() {
                if !live.contains(&uid)
                    && let Err(e) = net.detach(&uid).await
                {
                    tracing::warn!(error = %e, pod_uid = %uid, "removing a stale pod network");
                }
            }
        }
    }

    pub fn lookup(&self, ns: &str, pod: &str) -> Option<PodEntry> {
        self.registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(ns.to_string(), pod.to_string()))
            .cloned()
    }

    /// The running workload of a Pod (its first running container), without copying the
    /// registry entry: the gateway's per-request lookup.
    pub fn workload(&self, key: &(String, String)) -> Option<Arc<dyn Workload>> {
        self.registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)?
            .containers
            .iter()
            .find_map(|(_, w)| w.clone())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Run,
    /// The Pod was deleted: stop and remove its logs.
    Deleted,
    /// The agent is stopping: stop, keep logs.
    Shutdown,
}

struct WorkerHandle {
    pod: watch::Sender<Pod>,
    stop: watch::Sender<Stop>,
    join: tokio::task::JoinHandle<()>,
}

/// Watches the Pods bound to this node until `stop`, then stops every worker.
pub(crate) async fn run(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let params = ListParams {
        field_selector: Some(format!("spec.nodeName={}", ctx.node)),
        label_selector: None,
    };
    let stream = ctx.client.api::<Pod>(None).watcher(params, None);
    let mut stream = std::pin::pin!(stream);
    let mut workers: HashMap<String, WorkerHandle> = HashMap::new();
    let mut reaped = false;
    loop {
        let ev = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            ev = stream.next() => ev,
        };
        match ev {
            Some(Ok(ketch_client::Event::Added(p) | ketch_client::Event::Modified(p))) => {
                upsert(&ctx, &mut workers, p);
            }
            Some(Ok(ketch_client::Event::Deleted(p))) => {
                if let Some(uid) = &p.metadata.uid
                    && let Some(w) = workers.remove(uid)
                {
                    let _ = w.stop.send(Stop::Deleted);
                }
            }
            Some(Ok(ketch_client::Event::Restarted(list))) => {
                let live: std::collections::HashSet<String> =
                    list.iter().filter_map(|p| p.metadata.uid.clone()).collect();
                workers.retain(|uid, w| {
                    let keep = live.contains(uid);
                    if !keep {
                        let _ = w.stop.send(Stop::Deleted);
                    }
                    keep
                });
                for p in list {
                    upsert(&ctx, &mut workers, p);
                }
                if !reaped {
                    reaped = true;
                    let ctx = ctx.clone();
                    tokio::spawn(async move { ctx.reap(&live).await });
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "watching pods (retrying)"),
            None => break,
        }
        workers.retain(|_, w| !w.join.is_finished());
    }
    for w in workers.values() {
        let _ = w.stop.send(Stop::Shutdown);
    }
    for (_, w) in workers {
        let _ = w.join.await;
    }
}

fn upsert(ctx: &Arc<Ctx>, workers: &mut HashMap<String, WorkerHandle>, pod: Pod) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(ctx.node.as_str()) {
        return;
    }
    if let Some(w) = workers.get(&uid) {
        let _ = w.pod.send(pod);
        return;
    }
    let (pod_tx, pod_rx) = watch::channel(pod.clone());
    let (stop_tx, stop_rx) = watch::channel(Stop::Run);
    let join = tokio::spawn(worker(ctx.clone(), pod, pod_rx, stop_rx));
    workers.insert(
        uid,
        WorkerHandle {
            pod: pod_tx,
            stop: stop_tx,
            join,
        },
    );
}

struct CState {
    name: String,
    image: String,
    workload: Option<Arc<dyn Workload>>,
    generation: u64,
    image_id: String,
    container_id: Option<String>,
    state: ContainerState,
    last_state: Option<ContainerState>,
    restart_count: i32,
    backoff: Backoff,
    /// When to (re)start; `None` while running or terminal.
    next_attempt: Option<tokio::time::Instant>,
    /// Terminated and will not restart.
    terminal: bool,
    sink: Arc<FileSink>,
    /// Its startup probe passed (or it has none) since it last started.
    started: bool,
    /// Its readiness probe passes (or it has none).
    ready: bool,
    /// The probes of the current run: what each does, its state, and its task.
    probes: Vec<RunningProbe>,
}

/// One probe of a running container; dropping it stops its task.
struct RunningProbe {
    spec: probe::Spec,
    tracker: probe::Tracker,
    _task: AbortOnDropHandle<()>,
}

impl CState {
    /// Ends the probes of the current run.
    fn stop_probes(&mut self) {
        self.probes.clear();
        self.ready = false;
        self.started = false;
    }
}

struct Worker {
    ctx: Arc<Ctx>,
    pod: Pod,
    pref: PodRef,
    log_dir: PathBuf,
    start_time: String,
    containers: Vec<CState>,
    last_written: Option<Value>,
    exits: mpsc::UnboundedSender<(usize, u64, WorkloadExit)>,
    probe_reports: mpsc::UnboundedSender<probe::Report>,
    /// Wasm or Linux containers (a Pod never mixes them: validation rejects it); for registry
    /// references without a runtime class, decided by the artifact at the first start.
    kind: RuntimeChoice,
    /// The Pod's network namespace (Linux-container Pods), attached before the first start.
    network: Option<Attachment>,
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message,
        }),
        ..ContainerState::default()
    }
}

async fn worker(
    ctx: Arc<Ctx>,
    pod: Pod,
    mut updates: watch::Receiver<Pod>,
    mut stop: watch::Receiver<Stop>,
) {
    let pref = PodRef::of(&pod);
    let log_dir = logs::pod_dir(&ctx.logs_root, &pref.namespace, &pref.name, &pref.uid);
    let already_final = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    let spec_containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    let now_i = tokio::time::Instant::now();
    let previous = |name: &str| {
        pod.status
            .as_ref()
            .and_then(|s| s.container_statuses.iter().find(|c| c.name == name))
            .map_or(0, |c| c.restart_count)
    };
    let kind = pod.spec.as_ref().map_or(
        RuntimeChoice::Known(Runtime::Wasm),
        ketch_api::runtime::pod_runtime_choice,
    );
    let containers = spec_containers
        .iter()
        .map(|c| CState {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            workload: None,
            generation: 0,
            image_id: String::new(),
            container_id: None,
            state: waiting("ContainerCreating", None),
            last_state: None,
            // An agent restart keeps the count the Pod already shows.
            restart_count: previous(&c.name),
            backoff: Backoff::default(),
            next_attempt: (!already_final).then_some(now_i),
            terminal: already_final,
            sink: FileSink::spawn(logs::container_file(&log_dir, &c.name)),
            started: false,
            ready: false,
            probes: Vec::new(),
        })
        .collect();
    let (exits, mut exit_rx) = mpsc::unbounded_channel();
    let (probe_reports, mut probe_rx) = mpsc::unbounded_channel();
    let mut w = Worker {
        ctx: ctx.clone(),
        pod,
        pref,
        log_dir,
        start_time: now(),
        containers,
        last_written: None,
        exits,
        probe_reports,
        kind,
        network: None,
    };
    w.publish();
    let stopped = loop {
        if w.pod.metadata.deletion_timestamp.is_some() {
            w.stop_all("pod is being deleted").await;
        } else if !already_final {
            w.start_due().await;
        }
        let mut next = w.containers.iter().filter_map(|c| c.next_attempt).min();
        if !already_final {
            let mut written = w.write_status().await;
            // As the kubelet does: a failed pull is shown once as ErrImagePull, then the
            // container waits in ImagePullBackOff until the next attempt.
            if written && w.image_pull_backoff() {
                written = w.write_status().await;
            }
            if !written {
                let retry = tokio::time::Instant::now() + STATUS_RETRY;
                next = Some(next.map_or(retry, |n| n.min(retry)));
            }
        }
        let mut probed = None;
        let updated = tokio::select! {
            biased;
            r = stop.wait_for(|s| *s != Stop::Run) => {
                break r.map(|s| *s).unwrap_or(Stop::Shutdown);
            }
            r = updates.changed() => Some(r.is_ok()),
            Some((idx, generation, exit)) = exit_rx.recv() => {
                w.on_exit(idx, generation, exit);
                None
            }
            // Handled below: `on_probe` awaits, which must not happen while the other
            // branches' futures (a watch guard among them) are alive.
            Some(report) = probe_rx.recv() => {
                probed = Some(report);
                None
            }
            () = sleep_until(next) => None,
        };
        if let Some(report) = probed.take() {
            w.on_probe(report).await;
        }
        match updated {
            Some(true) => w.pod = updates.borrow_and_update().clone(),
            // The manager dropped this worker's handle: its stop value says why.
            Some(false) => {
                break match *stop.borrow() {
                    Stop::Run => Stop::Shutdown,
                    why => why,
                };
            }
            None => {}
        }
    };
    for c in &mut w.containers {
        c.stop_probes();
        if let Some(wl) = c.workload.take() {
            wl.stop().await;
        }
        c.sink.flush();
    }
    {
        let mut reg = ctx.registry.write().unwrap_or_else(|p| p.into_inner());
        let key = (w.pref.namespace.clone(), w.pref.name.clone());
        if reg.get(&key).is_some_and(|e| e.uid == w.pref.uid) {
            reg.remove(&key);
        }
    }
    if stopped == Stop::Deleted {
        if let Some(att) = &w.network {
            // Before the address is released and maybe handed to another Pod.
            ctx.gateway.pod_addresses.remove(att.ip);
        }
        if let (Some(_), Some((_, net))) = (&w.network, &ctx.containers)
            && let Err(e) = net.detach(&w.pref.uid).await
        {
            tracing::warn!(error = %e, pod = %w.pref.name, "removing the pod network");
        }
        ctx.recorder.forget(&w.pref.uid);
        for c in &w.containers {
            c.sink.close();
        }
        if let Err(e) = tokio::fs::remove_dir_all(&w.log_dir).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, dir = %w.log_dir.display(), "removing pod logs");
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => futures_util::future::pending().await,
    }
}

impl Worker {
    fn restart_policy(&self) -> &str {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            .unwrap_or("Always")
    }

    /// Makes the Pod's current workloads visible to invoke, logs and proxy.
    fn publish(&self) {
        let entry = PodEntry {
            uid: self.pref.uid.clone(),
            log_dir: self.log_dir.clone(),
            containers: self
                .containers
                .iter()
                .map(|c| (c.name.clone(), c.workload.clone()))
                .collect(),
        };
        self.ctx
            .registry
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert((self.pref.namespace.clone(), self.pref.name.clone()), entry);
    }

    fn event(&self, type_: EventType, reason: &str, message: String) {
        self.ctx.recorder.record(&self.pref, type_, reason, message);
    }

    async fn start_due(&mut self) {
        let now_i = tokio::time::Instant::now();
        for i in 0..self.containers.len() {
            match self.containers[i].next_attempt {
                Some(at) if at <= now_i => {}
                _ => continue,
            }
            self.containers[i].next_attempt = None;
            let began = std::time::Instant::now();
            let result = match self.runtime_and_spec(i).await {
                Ok((runtime, spec)) => runtime.start(spec).await.map(|s| (runtime, s)),
                Err(e) => Err(e),
            };
            match result {
                Ok((runtime, started)) => {
                    if !started.adopted {
                        self.ctx
                            .metrics
                            .observe_start(runtime.name(), began.elapsed());
                    }
                    self.on_started(i, started);
                }
                Err(e) => self.on_start_failed(i, e),
            }
        }
        self.publish();
    }

    /// The runtime for this Pod, with the container's spec; a Linux-container Pod gets its
    /// network first.
    async fn runtime_and_spec(
        &mut self,
        i: usize,
    ) -> Result<(Arc<dyn WorkloadRuntime>, WorkloadSpec), StartError> {
        let kind = match self.kind {
            RuntimeChoice::Known(k) => k,
            RuntimeChoice::ByArtifact => {
                let k = self.resolve_runtime(i).await?;
                self.kind = RuntimeChoice::Known(k);
                k
            }
        };
        let runtime: Arc<dyn WorkloadRuntime> = match kind {
            Runtime::Wasm => self.ctx.wasm.clone(),
            Runtime::Container => {
                let Some((rt, net)) = &self.ctx.containers else {
                    return Err(StartError {
                        reason: StartReason::CreateContainerError,
                        message: "this node does not run Linux containers (no containerd)".into(),
                    });
                };
                if self.network.is_none() {
                    let att = net
                        .attach(&self.pref.uid, &self.pref.namespace, &self.pref.name)
                        .await
                        .map_err(|e| StartError {
                            reason: StartReason::CreateContainerError,
                            message: format!("setting up the pod network: {e}"),
                        })?;
                    // The Service proxy knows its callers by address.
                    self.ctx
                        .gateway
                        .pod_addresses
                        .insert(att.ip, &self.pref.namespace);
                    self.network = Some(att);
                }
                rt.clone()
            }
        };
        let spec = self.spec_for(i).await.map_err(|message| StartError {
            reason: StartReason::CreateContainerConfigError,
            message,
        })?;
        Ok((runtime, spec))
    }

    /// What container `i`'s registry image is — a Wasm component artifact or a container
    /// image — from what this node already has (unless `imagePullPolicy: Always`), else from
    /// the manifest's config media type (one registry request).
    async fn resolve_runtime(&self, i: usize) -> Result<Runtime, StartError> {
        let image = self.containers[i].image.clone();
        let policy = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.get(i))
            .and_then(|c| c.image_pull_policy.clone());
        let policy = PullPolicy::of(policy.as_deref(), &image);
        let pull_err = |message: String| StartError {
            reason: StartReason::ErrImagePull,
            message,
        };
        let kind = if policy != PullPolicy::Always && self.ctx.wasm_store.local(&image).is_some() {
            ArtifactKind::Wasm
        } else if policy != PullPolicy::Always
            && let Some((rt, _)) = &self.ctx.containers
            && rt.has_image(&image).await
        {
            ArtifactKind::Image
        } else if policy == PullPolicy::Never {
            return Err(pull_err(format!(
                "image {image} is not present on this node and imagePullPolicy is Never"
            )));
        } else {
            crate::oci::wasm::resolve_kind(&self.ctx.registries, &image)
                .await
                .map_err(|e| pull_err(e.to_string()))?
        };
        match kind {
            ArtifactKind::Wasm => Ok(Runtime::Wasm),
            ArtifactKind::Image if self.ctx.containers.is_some() => Ok(Runtime::Container),
            ArtifactKind::Image => Err(StartError {
                reason: StartReason::CreateContainerError,
                message: format!(
                    "image {image} is a container image (not a Wasm component artifact with \
                     config media type {}), and this node does not run Linux containers \
                     (no containerd)",
                    crate::oci::wasm::CONFIG_MEDIA_TYPE
                ),
            }),
        }
    }

    /// `status.podIP`: the Pod network's address, or loopback for in-process Wasm.
    fn pod_ip(&self) -> String {
        self.network
            .as_ref()
            .map_or_else(|| WASM_POD_IP.to_string(), |n| n.ip.to_string())
    }

    fn on_started(&mut self, i: usize, s: Started) {
        let ts = now();
        let c = &mut self.containers[i];
        c.generation += 1;
        c.backoff.started(std::time::Instant::now());
        c.image_id = s.image_id;
        c.container_id = Some(s.container_id);
        if c.state.terminated.is_some() {
            c.last_state = Some(c.state.clone());
        }
        c.state = ContainerState {
            running: Some(ketch_api::core::ContainerStateRunning {
                started_at: Some(ts),
            }),
            ..ContainerState::default()
        };
        let exited = s.workload.exited();
        c.workload = Some(s.workload);
        let (idx, generation, tx) = (i, c.generation, self.exits.clone());
        tokio::spawn(async move {
            let exit = exited.await;
            let _ = tx.send((idx, generation, exit));
        });
        // A startup probe holds the others back until it passes.
        let first = if self.probe_spec(i, ProbeKind::Startup).is_some() {
            &[ProbeKind::Startup][..]
        } else {
            self.containers[i].started = true;
            &[ProbeKind::Liveness, ProbeKind::Readiness][..]
        };
        self.start_probes(i, first);
        let c = &mut self.containers[i];
        let name = c.name.clone();
        if s.adopted {
            self.event(EventType::Normal, "Adopted", s.detail);
        } else {
            self.event(EventType::Normal, "Pulled", s.detail);
            self.event(
                EventType::Normal,
                "Started",
                format!("Started container {name}"),
            );
        }
    }

    /// Container `i`'s probe of `kind`, resolved; a probe that cannot run (a named port the
    /// container does not declare) is reported as a Warning once per start and skipped.
    fn probe_spec(&self, i: usize, kind: ProbeKind) -> Option<probe::Spec> {
        let container = self
            .pod
            .spec
            .as_ref()?
            .containers
            .iter()
            .find(|c| c.name == self.containers[i].name)?;
        match probe::Spec::of(kind, container) {
            Ok(spec) => spec,
            Err(e) => {
                self.event(
                    EventType::Warning,
                    "Unhealthy",
                    format!("{} probe not run: {e}", kind.title()),
                );
                None
            }
        }
    }

    /// Starts container `i`'s probes of `kinds`; one without a readiness probe is ready.
    fn start_probes(&mut self, i: usize, kinds: &[ProbeKind]) {
        let Some(workload) = self.containers[i].workload.clone() else {
            return;
        };
        let target = probe::Target {
            workload,
            pod_ip: self.network.as_ref().map(|n| n.ip),
        };
        for &kind in kinds {
            let spec = self.probe_spec(i, kind);
            let c = &mut self.containers[i];
            if kind == ProbeKind::Readiness {
                c.ready = spec.is_none();
            }
            if let Some(spec) = spec {
                let task = probe::spawn(
                    spec.clone(),
                    target.clone(),
                    i,
                    c.generation,
                    self.probe_reports.clone(),
                );
                c.probes.push(RunningProbe {
                    spec,
                    tracker: probe::Tracker::new(kind),
                    _task: task,
                });
            }
        }
    }

    /// One probe attempt's result: Ready follows readiness; a failed startup or liveness
    /// probe kills the container, which restarts per the Pod's restartPolicy.
    async fn on_probe(&mut self, (i, generation, kind, result): probe::Report) {
        let Some(c) = self.containers.get_mut(i) else {
            return;
        };
        if c.generation != generation || c.workload.is_none() {
            return;
        }
        let Some(p) = c.probes.iter_mut().find(|p| p.spec.kind == kind) else {
            return;
        };
        let changed = p.tracker.record(result.is_ok(), &p.spec);
        let name = c.name.clone();
        if let Err(why) = &result {
            self.event(
                EventType::Warning,
                "Unhealthy",
                format!("{} probe failed: {why}", kind.title()),
            );
        }
        match (kind, changed) {
            (ProbeKind::Readiness, Some(ready)) => self.containers[i].ready = ready,
            (ProbeKind::Startup, Some(true)) => {
                let c = &mut self.containers[i];
                c.started = true;
                // Its job is done: dropping it stops its task calling the container.
                c.probes.retain(|p| p.spec.kind != ProbeKind::Startup);
                self.start_probes(i, &[ProbeKind::Liveness, ProbeKind::Readiness]);
            }
            (ProbeKind::Startup | ProbeKind::Liveness, Some(false)) => {
                let why = format!(
                    "Container {name} failed {} probe, will be restarted",
                    kind.title().to_lowercase()
                );
                self.event(EventType::Normal, "Killing", why.clone());
                self.kill(i, why).await;
            }
            _ => {}
        }
    }

    /// Stops container `i` and records its exit as if it had exited by itself, so the
    /// restart policy and back-off apply.
    async fn kill(&mut self, i: usize, why: String) {
        let c = &mut self.containers[i];
        c.stop_probes();
        let Some(wl) = c.workload.clone() else {
            return;
        };
        let generation = c.generation;
        let exited = wl.exited();
        wl.stop().await;
        // A container reports its real exit (137 after SIGKILL, 143 after SIGTERM); an
        // in-process component has no process to exit.
        let exit = match self.kind {
            RuntimeChoice::Known(Runtime::Container) => {
                tokio::time::timeout(Duration::from_secs(5), exited)
                    .await
                    .ok()
            }
            _ => None,
        };
        let exit = exit.map_or_else(
            || WorkloadExit {
                exit_code: 137,
                reason: "Error".into(),
                message: Some(why.clone()),
            },
            |e| WorkloadExit {
                message: Some(why.clone()),
                ..e
            },
        );
        self.on_exit(i, generation, exit);
    }

    fn on_start_failed(&mut self, i: usize, e: StartError) {
        let never = self.restart_policy() == "Never";
        let pod_name = format!("{}/{}", self.pref.namespace, self.pref.name);
        let c = &mut self.containers[i];
        let msg = format!("{}: {}", e.reason, e.message);
        let first = !matches!(
            c.state.waiting.as_ref().and_then(|w| w.reason.as_deref()),
            Some(r) if r == e.reason.as_str()
        // A failed pull gets its own BackOff Event once it waits in ImagePullBackOff.
        ) || e.reason == StartReason::ErrImagePull;
        if e.reason.is_permanent() && never {
            let ts = now();
            c.state = ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 128,
                    reason: Some(e.reason.as_str().into()),
                    message: Some(e.message.clone()),
                    started_at: Some(ts.clone()),
                    finished_at: Some(ts),
                    ..ContainerStateTerminated::default()
                }),
                ..ContainerState::default()
            };
            c.terminal = true;
            self.event(EventType::Warning, "Failed", msg);
            return;
        }
        let delay = c.backoff.failed(std::time::Instant::now());
        c.next_attempt = Some(tokio::time::Instant::now() + delay);
        c.state = waiting(e.reason.as_str(), Some(e.message.clone()));
        let name = c.name.clone();
        self.event(EventType::Warning, "Failed", msg);
        if !first {
            self.event(
                EventType::Warning,
                "BackOff",
                format!(
                    "Back-off {} restarting failed container {name} in pod {pod_name}",
                    crate::format::duration(delay)
                ),
            );
        }
    }

    /// Moves containers whose pull just failed (waiting `ErrImagePull`, retry scheduled) to
    /// `ImagePullBackOff`, keeping the registry's message; `true` if any moved.
    fn image_pull_backoff(&mut self) -> bool {
        let mut moved = Vec::new();
        for c in &mut self.containers {
            let Some(w) = &c.state.waiting else { continue };
            if w.reason.as_deref() != Some(StartReason::ErrImagePull.as_str())
                || c.next_attempt.is_none()
            {
                continue;
            }
            let message = format!(
                "Back-off pulling image {:?}: ErrImagePull: {}",
                c.image,
                w.message.as_deref().unwrap_or("")
            );
            c.state = waiting(IMAGE_PULL_BACKOFF, Some(message));
            moved.push(format!("Back-off pulling image {:?}", c.image));
        }
        let any = !moved.is_empty();
        for m in moved {
            self.event(EventType::Normal, "BackOff", m);
        }
        any
    }

    fn on_exit(&mut self, i: usize, generation: u64, exit: WorkloadExit) {
        let policy = self.restart_policy().to_string();
        let Some(c) = self.containers.get_mut(i) else {
            return;
        };
        if c.generation != generation || c.workload.is_none() {
            return;
        }
        c.workload = None;
        c.stop_probes();
        let started_at = c.state.running.as_ref().and_then(|r| r.started_at.clone());
        let terminated = ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: exit.exit_code,
                reason: Some(exit.reason.clone()),
                message: exit.message.clone(),
                started_at,
                finished_at: Some(now()),
                container_id: c.container_id.clone(),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        };
        let restart = policy == "Always" || (policy == "OnFailure" && exit.exit_code != 0);
        let name = c.name.clone();
        if restart {
            let delay = c.backoff.failed(std::time::Instant::now());
            c.last_state = Some(terminated);
            c.state = waiting(
                "CrashLoopBackOff",
                Some(format!(
                    "back-off {} restarting failed container={name}",
                    crate::format::duration(delay)
                )),
            );
            c.restart_count += 1;
            c.next_attempt = Some(tokio::time::Instant::now() + delay);
            self.event(
                EventType::Warning,
                "BackOff",
                format!("Back-off restarting failed container {name}"),
            );
        } else {
            c.state = terminated;
            c.terminal = true;
        }
        self.publish();
    }

    async fn stop_all(&mut self, why: &str) {
        let mut changed = false;
        for c in &mut self.containers {
            if c.terminal {
                continue;
            }
            c.stop_probes();
            if let Some(wl) = c.workload.take() {
                wl.stop().await;
            }
            let started_at = c.state.running.as_ref().and_then(|r| r.started_at.clone());
            c.state = ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 0,
                    reason: Some("Completed".into()),
                    message: Some(why.into()),
                    started_at,
                    finished_at: Some(now()),
                    container_id: c.container_id.clone(),
                    ..ContainerStateTerminated::default()
                }),
                ..ContainerState::default()
            };
            c.terminal = true;
            c.next_attempt = None;
            changed = true;
        }
        if changed {
            self.publish();
        }
    }

    /// Resolves the container's configuration into a [`WorkloadSpec`].
    async fn spec_for(&self, i: usize) -> Result<WorkloadSpec, String> {
        let c = &self.containers[i];
        let container = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.iter().find(|x| x.name == c.name))
            .ok_or_else(|| format!("container {:?} is no longer in the pod spec", c.name))?
            .clone();
        let ns = self.pref.namespace.as_str();
        let (cms, secrets) = env::referenced(&container);
        let mut sources = EnvSources::default();
        for name in cms {
            match self.ctx.client.api::<ConfigMap>(Some(ns)).get(&name).await {
                Ok(cm) => {
                    sources.config_maps.insert(name, cm.data);
                }
                Err(e) if e.code() == Some(404) => {}
                Err(e) => return Err(format!("reading configmap {name:?}: {e}")),
            }
        }
        for name in secrets {
            match self.ctx.client.api::<Secret>(Some(ns)).get(&name).await {
                Ok(s) => {
                    sources.secrets.insert(name, env::secret_data(&s)?);
                }
                Err(e) if e.code() == Some(404) => {}
                Err(e) => return Err(format!("reading secret {name:?}: {e}")),
            }
        }
        let env = env::resolve(
            &self.pod,
            &container,
            &sources,
            &self.pod_ip(),
            &self.ctx.host_ip,
        )?;
        let ann = &self.pod.metadata.annotations;
        let request_timeout = match ann.get(ANN_REQUEST_TIMEOUT) {
            None => None,
            Some(v) => Some(crate::format::parse_duration(v).ok_or_else(|| {
                format!("annotation {ANN_REQUEST_TIMEOUT}: invalid duration {v:?} (use e.g. 30s or 500ms)")
            })?),
        };
        let max_concurrency = match ann.get(ANN_MAX_CONCURRENCY) {
            None => None,
            Some(v) => Some(
                v.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        format!("annotation {ANN_MAX_CONCURRENCY}: {v:?} is not a positive integer")
                    })?,
            ),
        };
        let allowed_outbound_hosts = ann
            .get(ANN_OUTBOUND_HOSTS)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let memory_limit = match container
            .resources
            .as_ref()
            .and_then(|r| r.limits.get("memory"))
        {
            None => None,
            Some(q) => Some(
                q.value()
                    .ok()
                    .and_then(|v| u64::try_from(v).ok())
                    .ok_or_else(|| {
                        format!("resources.limits.memory: invalid quantity {:?}", q.0)
                    })?,
            ),
        };
        Ok(WorkloadSpec {
            namespace: ns.to_string(),
            pod_name: self.pref.name.clone(),
            pod_uid: self.pref.uid.clone(),
            container: c.name.clone(),
            image: c.image.clone(),
            app: crate::workload::app_identity(ns, &self.pod.metadata.labels, &self.pref.name),
            env,
            memory_limit,
            request_timeout,
            max_concurrency,
            allowed_outbound_hosts,
            output: c.sink.clone(),
            services: Some(self.ctx.gateway.clone() as Arc<dyn crate::workload::ServiceCaller>),
            definition: Arc::new(container),
            pod_spec: Arc::new(self.pod.spec.clone().unwrap_or_default()),
            network: self.network.clone(),
            progress: {
                let (recorder, pref) = (self.ctx.recorder.clone(), self.pref.clone());
                Arc::new(move |m: String| {
                    recorder.record(&pref, EventType::Normal, "Pulling", m);
                })
            },
        })
    }

    /// Writes the status if it changed; `false` when the write failed (retry later).
    async fn write_status(&mut self) -> bool {
        let statuses: Vec<ContainerStatus> = self
            .containers
            .iter()
            .map(|c| {
                let running = c.state.running.is_some();
                ContainerStatus {
                    name: c.name.clone(),
                    ready: running && c.started && c.ready,
                    restart_count: c.restart_count,
                    image: c.image.clone(),
                    image_id: c.image_id.clone(),
                    container_id: c.container_id.clone(),
                    started: Some(running && c.started),
                    state: Some(c.state.clone()),
                    last_state: c.last_state.clone(),
                }
            })
            .collect();
        let terminal: Vec<bool> = self.containers.iter().map(|c| c.terminal).collect();
        let now = now();
        let pod_ip = self.pod_ip();
        let facts = PodFacts {
            existing: self.pod.status.as_ref(),
            host_ip: &self.ctx.host_ip,
            pod_ip: &pod_ip,
            start_time: &self.start_time,
            now: &now,
        };
        let st = status::build(&facts, statuses, &terminal);
        let mut value = serde_json::to_value(&st).unwrap_or(Value::Null);
        if let Some(o) = value.as_object_mut() {
            // Merge patch: clear what this status does not set.
            for k in ["reason", "message"] {
                o.entry(k).or_insert(Value::Null);
            }
        }
        if self.last_written.as_ref() == Some(&value) {
            return true;
        }
        let api = self.ctx.client.api::<Pod>(Some(&self.pref.namespace));
        match api
            .merge_patch(&self.pref.name, &json!({"status": value}), true)
            .await
        {
            Ok(_) => {
                self.last_written = Some(value);
                true
            }
            Err(e) if e.code() == Some(404) => true, // deleted: the watch will say so
            Err(e) => {
                tracing::warn!(error = %e, pod = %self.pref.name, "writing pod status");
                false
            }
        }
    }
}
