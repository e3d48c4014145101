//! One task per Pod: it feeds what happens (starts, exits, probe reports, Pod updates,
//! time) to the Pod's [`Lifecycle`] and executes the [`Effect`]s it returns — runtime
//! starts and stops, probe tasks, Events, the registry entry requests reach — then writes
//! the status when it changed. It decides nothing itself.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ketch_api::core::Pod;
use ketch_api::runtime::{Runtime, RuntimeChoice};
use ketch_api::time::now;
use ketch_workload::{
    Attachment, PodEntry, StartError, StartReason, Started, Workload, WorkloadExit, WorkloadRuntime,
};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_util::task::AbortOnDropHandle;

use super::lifecycle::{Effect, Lifecycle, Now, StartedFacts};
use super::{Ctx, Stop, WASM_POD_IP, spec};
use crate::events::PodRef;
use crate::logs::{self, FileSink};
use crate::probe::{self, Kind as ProbeKind};
use crate::status::{self, PodFacts};

/// Retry period of a failed status write.
const STATUS_RETRY: Duration = Duration::from_secs(1);
/// How long a killed container's runtime has to report the real exit (137 after SIGKILL).
const KILL_EXIT_WAIT: Duration = Duration::from_secs(5);

/// A workload exit for the worker: container index, start generation, how it ended.
type Exit = (usize, u64, WorkloadExit);

struct Worker {
    ctx: Arc<Ctx>,
    pod: Pod,
    pref: PodRef,
    log_dir: PathBuf,
    start_time: String,
    life: Lifecycle,
    /// Already `Succeeded`/`Failed` when this agent took it: nothing runs or is written.
    finished: bool,
    /// Each container's running workload.
    workloads: Vec<Option<Arc<dyn Workload>>>,
    sinks: Vec<Arc<FileSink>>,
    /// Each container's probe tasks; dropping one stops it.
    probes: Vec<Vec<(ProbeKind, AbortOnDropHandle<()>)>>,
    last_written: Option<Value>,
    exits: mpsc::UnboundedSender<Exit>,
    probe_reports: mpsc::UnboundedSender<probe::Report>,
    /// Wasm or Linux containers (a Pod never mixes them: validation rejects it); for registry
    /// references without a runtime class, decided by the artifact at the first start.
    kind: RuntimeChoice,
    /// The Pod's network namespace (Linux-container Pods), attached before the first start.
    network: Option<Attachment>,
}

/// The monotonic clock as tokio sees it (paused in tests), and the wall clock.
fn now_at() -> Now {
    Now {
        instant: tokio::time::Instant::now().into_std(),
        wall: now(),
    }
}

async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => futures_util::future::pending().await,
    }
}

/// Runs the Pod until the manager says stop (deleted, or the agent stopping), then stops
/// its workloads and, for a deleted Pod, removes what it leaves on the node.
pub(super) async fn run(
    ctx: Arc<Ctx>,
    pod: Pod,
    mut updates: watch::Receiver<Pod>,
    mut stop: watch::Receiver<Stop>,
) {
    let pref = PodRef::of(&pod);
    let log_dir = logs::pod_dir(&ctx.logs_root, &pref.namespace, &pref.name, &pref.uid);
    let life = Lifecycle::new(&pod, now_at().instant);
    let finished = life.next_wake().is_none();
    let sinks = life
        .names()
        .map(|name| FileSink::spawn(logs::container_file(&log_dir, name)))
        .collect();
    let n = life.names().count();
    let kind = pod.spec.as_ref().map_or(
        RuntimeChoice::Known(Runtime::Wasm),
        ketch_api::runtime::pod_runtime_choice,
    );
    let (exits, mut exit_rx) = mpsc::unbounded_channel();
    let (probe_reports, mut probe_rx) = mpsc::unbounded_channel();
    let mut w = Worker {
        ctx: ctx.clone(),
        pod,
        pref,
        log_dir,
        start_time: now(),
        life,
        finished,
        workloads: vec![None; n],
        sinks,
        probes: (0..n).map(|_| Vec::new()).collect(),
        last_written: None,
        exits,
        probe_reports,
        kind,
        network: None,
    };
    w.publish();
    let stopped = loop {
        let now = now_at();
        let effects = if w.pod.metadata.deletion_timestamp.is_some() {
            w.life.stop_all("pod is being deleted", &now)
        } else {
            w.life.due(&now)
        };
        w.apply(effects).await;
        let mut next = w.life.next_wake();
        if !w.finished {
            let mut written = w.write_status().await;
            // As the kubelet does: a failed pull is shown once as ErrImagePull, then the
            // container waits in ImagePullBackOff until the next attempt.
            if written {
                let moved = w.life.status_written();
                if !moved.is_empty() {
                    w.apply(moved).await;
                    written = w.write_status().await;
                }
            }
            if !written {
                let retry = now_at().instant + STATUS_RETRY;
                next = Some(next.map_or(retry, |n| n.min(retry)));
            }
        }
        let mut effects = Vec::new();
        let updated = tokio::select! {
            biased;
            r = stop.wait_for(|s| *s != Stop::Run) => {
                break r.map(|s| *s).unwrap_or(Stop::Shutdown);
            }
            r = updates.changed() => Some(r.is_ok()),
            Some((i, generation, exit)) = exit_rx.recv() => {
                effects = w.life.exited(i, generation, exit, &now_at());
                None
            }
            Some((i, generation, kind, result)) = probe_rx.recv() => {
                effects = w.life.probed(i, generation, kind, result);
                None
            }
            () = sleep_until(next) => None,
        };
        // Outside the select: applying awaits, which must not happen while the other
        // branches' futures (a watch guard among them) are alive.
        w.apply(effects).await;
        match updated {
            Some(true) => {
                w.pod = updates.borrow_and_update().clone();
                w.forget_overwritten_status();
            }
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
    w.shut_down(stopped).await;
}

impl Worker {
    /// Executes `effects` in order; the effects of a start or a kill (reported back to the
    /// lifecycle) are executed before the ones after it.
    async fn apply(&mut self, effects: Vec<Effect>) {
        let mut queue = VecDeque::from(effects);
        while let Some(effect) = queue.pop_front() {
            let more = match effect {
                Effect::Start(i) => self.start(i).await,
                Effect::Kill {
                    container,
                    generation,
                    message,
                } => self.kill(container, generation, message).await,
                Effect::Probe {
                    container,
                    generation,
                    spec,
                } => {
                    self.probe(container, generation, spec);
                    Vec::new()
                }
                Effect::StopProbe { container, kind } => {
                    self.probes[container].retain(|(k, _)| *k != kind);
                    Vec::new()
                }
                Effect::StopProbes(i) => {
                    self.probes[i].clear();
                    Vec::new()
                }
                Effect::Stop(i) => {
                    if let Some(w) = self.workloads[i].take() {
                        w.stop().await;
                    }
                    Vec::new()
                }
                Effect::Forget(i) => {
                    self.workloads[i] = None;
                    Vec::new()
                }
                Effect::Event {
                    type_,
                    reason,
                    message,
                } => {
                    self.ctx.recorder.record(&self.pref, type_, reason, message);
                    Vec::new()
                }
                Effect::Publish => {
                    self.publish();
                    Vec::new()
                }
            };
            for e in more.into_iter().rev() {
                queue.push_front(e);
            }
        }
    }

    /// Makes the Pod's current workloads what invoke, logs and proxy reach.
    fn publish(&self) {
        let entry = PodEntry {
            uid: self.pref.uid.clone(),
            log_dir: self.log_dir.clone(),
            containers: self
                .life
                .names()
                .zip(&self.workloads)
                .map(|(name, w)| (name.to_string(), w.clone()))
                .collect(),
        };
        self.ctx
            .pods
            .publish((self.pref.namespace.clone(), self.pref.name.clone()), entry);
    }

    /// Starts container `i` and reports how it went.
    async fn start(&mut self, i: usize) -> Vec<Effect> {
        let began = std::time::Instant::now();
        let result = match self.runtime_and_spec(i).await {
            Ok((runtime, spec)) => runtime.start(spec).await.map(|s| (runtime, s)),
            Err(e) => Err(e),
        };
        let now = now_at();
        match result {
            Ok((runtime, started)) => {
                if !started.adopted {
                    self.ctx
                        .metrics
                        .observe_start(runtime.name(), began.elapsed());
                }
                let Started {
                    workload,
                    image_id,
                    container_id,
                    detail,
                    adopted,
                } = started;
                let effects = self.life.started(
                    i,
                    StartedFacts {
                        image_id,
                        container_id,
                        detail,
                        adopted,
                    },
                    &now,
                );
                let generation = self.life.generation(i);
                let exited = workload.exited();
                let tx = self.exits.clone();
                tokio::spawn(async move {
                    let exit = exited.await;
                    let _ = tx.send((i, generation, exit));
                });
                self.workloads[i] = Some(workload);
                effects
            }
            Err(e) => self.life.start_failed(i, e, &now),
        }
    }

    /// The runtime for this Pod, with the container's spec; a Linux-container Pod gets its
    /// network first.
    async fn runtime_and_spec(
        &mut self,
        i: usize,
    ) -> Result<(Arc<dyn WorkloadRuntime>, ketch_workload::WorkloadSpec), StartError> {
        let image = self.life.image(i).to_string();
        let kind = match self.kind {
            RuntimeChoice::Known(k) => k,
            RuntimeChoice::ByArtifact => {
                let k = spec::resolve_runtime(&self.ctx, &self.pod, i, &image).await?;
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
                        .pod_addresses()
                        .insert(att.ip, &self.pref.namespace);
                    self.network = Some(att);
                }
                rt.clone()
            }
        };
        let name = self.life.names().nth(i).unwrap_or_default().to_string();
        let spec = spec::workload_spec(
            &self.ctx,
            &self.pod,
            &self.pref,
            &name,
            &image,
            &self.pod_ip(),
            self.sinks[i].clone(),
            self.network.clone(),
        )
        .await
        .map_err(|message| StartError {
            reason: StartReason::CreateContainerConfigError,
            message,
        })?;
        Ok((runtime, spec))
    }

    /// Stops container `i`'s workload of `generation` and reports how it ended: a container
    /// reports its real exit (137 after SIGKILL, 143 after SIGTERM); an in-process component
    /// has no process to exit.
    async fn kill(&mut self, i: usize, generation: u64, message: String) -> Vec<Effect> {
        let Some(wl) = self.workloads[i].clone() else {
            return Vec::new();
        };
        let exited = wl.exited();
        wl.stop().await;
        let exit = match self.kind {
            RuntimeChoice::Known(Runtime::Container) => {
                tokio::time::timeout(KILL_EXIT_WAIT, exited).await.ok()
            }
            _ => None,
        };
        self.life.killed(i, generation, exit, message, &now_at())
    }

    /// Starts probing container `i`'s workload with `spec`.
    fn probe(&mut self, i: usize, generation: u64, spec: probe::Spec) {
        let Some(workload) = self.workloads[i].clone() else {
            return;
        };
        let kind = spec.kind;
        let target = probe::Target {
            workload,
            pod_ip: self.network.as_ref().map(|n| n.ip),
        };
        let task = probe::spawn(spec, target, i, generation, self.probe_reports.clone());
        self.probes[i].push((kind, task));
    }

    /// `status.podIP`: the Pod network's address, or loopback for in-process Wasm.
    fn pod_ip(&self) -> String {
        self.network
            .as_ref()
            .map_or_else(|| WASM_POD_IP.to_string(), |n| n.ip.to_string())
    }

    /// When someone else changed the Pod's Ready condition (the node lifecycle marks the
    /// Pods of a node it lost not Ready), the status this worker last wrote is no longer
    /// what is stored: write it again.
    fn forget_overwritten_status(&mut self) {
        let ready = |conditions: Option<&Value>| {
            conditions
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                .map(|c| c["status"].clone())
        };
        let Some(written) = &self.last_written else {
            return;
        };
        let stored = self
            .pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .map(|c| Value::String(c.status.clone()));
        if stored.is_some() && stored != ready(written.get("conditions")) {
            self.last_written = None;
        }
    }

    /// Writes the status if it changed; `false` when the write failed (retry later).
    async fn write_status(&mut self) -> bool {
        let (statuses, terminal) = self.life.statuses();
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

    /// Stops every probe and workload; for a deleted Pod also releases its network and
    /// removes its logs.
    async fn shut_down(mut self, why: Stop) {
        for probes in &mut self.probes {
            probes.clear();
        }
        for (w, sink) in self.workloads.iter_mut().zip(&self.sinks) {
            if let Some(wl) = w.take() {
                wl.stop().await;
            }
            sink.flush();
        }
        let ctx = &self.ctx;
        ctx.pods.remove(
            &(self.pref.namespace.clone(), self.pref.name.clone()),
            &self.pref.uid,
        );
        if why != Stop::Deleted {
            return;
        }
        if let Some(att) = &self.network {
            // Before the address is released and maybe handed to another Pod.
            ctx.gateway.pod_addresses().remove(att.ip);
            if let Some((_, net)) = &ctx.containers
                && let Err(e) = net.detach(&self.pref.uid).await
            {
                tracing::warn!(error = %e, pod = %self.pref.name, "removing the pod network");
            }
        }
        ctx.recorder.forget(&self.pref.uid);
        for sink in &self.sinks {
            sink.close();
        }
        if let Err(e) = tokio::fs::remove_dir_all(&self.log_dir).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, dir = %self.log_dir.display(), "removing pod logs");
        }
    }
}

#[cfg(test)]
mod tests {
    //! The worker against a recording fake runtime and a recording fake API (a
    //! [`LocalTransport`] that keeps every request): what it started and stopped, what it
    //! published, and the statuses it wrote.

    use std::sync::Mutex;

    use ketch_client::{Client, LocalResponse, LocalTransport};
    use ketch_gateway::{Dispatcher, GatewayConfig};
    use ketch_workload::fake::FakeRuntime;
    use ketch_workload::{PodRegistry, WorkloadExit};
    use serde_json::json;

    use super::*;
    use crate::events::Recorder;
    use crate::metrics::NodeMetrics;

    /// Answers status patches with the Pod and records every request's method, path and
    /// JSON body.
    #[derive(Debug)]
    struct FakeApi {
        pod: Value,
        requests: Mutex<Vec<(String, String, Value)>>,
    }

    impl LocalTransport for FakeApi {
        fn call(&self, request: http::Request<reqwest::Body>) -> LocalResponse {
            let method = request.method().to_string();
            let path = request.uri().path().to_string();
            let body = request
                .body()
                .as_bytes()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            self.requests
                .lock()
                .unwrap()
                .push((method.clone(), path.clone(), body.clone()));
            let (code, answer) = if path.ends_with("/status") {
                (200, self.pod.clone())
            } else if method == "POST" {
                (201, body)
            } else {
                (
                    404,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "reason": "NotFound", "code": 404}),
                )
            };
            let resp = http::Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(reqwest::Body::from(answer.to_string()))
                .unwrap();
            Box::pin(async move { resp })
        }
    }

    impl FakeApi {
        /// The `status` of every status patch, in order.
        fn statuses(&self) -> Vec<Value> {
            self.requests
                .lock()
                .unwrap()
                .iter()
                .filter(|(m, p, _)| m == "PATCH" && p.ends_with("/status"))
                .map(|(_, _, b)| b["status"].clone())
                .collect()
        }

        /// The reasons of the Events written so far.
        fn event_reasons(&self) -> Vec<String> {
            self.requests
                .lock()
                .unwrap()
                .iter()
                .filter(|(m, p, _)| m == "POST" && p.ends_with("/events"))
                .filter_map(|(_, _, b)| b["reason"].as_str().map(str::to_string))
                .collect()
        }
    }

    struct Harness {
        api: Arc<FakeApi>,
        runtime: Arc<FakeRuntime>,
        ctx: Arc<Ctx>,
        pod: watch::Sender<Pod>,
        stop: watch::Sender<Stop>,
        task: tokio::task::JoinHandle<()>,
        _logs: tempfile::TempDir,
    }

    fn pod(spec: Value) -> Pod {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": spec,
        }))
        .unwrap()
    }

    /// A worker for `pod` on node `n1` whose Wasm runtime is a fake.
    fn start(pod: Pod) -> Harness {
        let api = Arc::new(FakeApi {
            pod: serde_json::to_value(&pod).unwrap(),
            requests: Mutex::new(Vec::new()),
        });
        let client = Client::in_process("http://fake", "token", api.clone()).unwrap();
        let runtime = FakeRuntime::new("wasm");
        let pods = Arc::new(PodRegistry::new(None));
        let metrics = NodeMetrics::new();
        let gateway = Arc::new(Dispatcher::new(
            pods.clone(),
            None,
            GatewayConfig::default(),
            "n1",
            metrics.gateway.clone(),
        ));
        let (recorder, _events) = Recorder::spawn(client.clone(), "n1".into());
        let logs = tempfile::tempdir().unwrap();
        let ctx = Arc::new(Ctx {
            client,
            node: "n1".into(),
            host_ip: "127.0.0.1".into(),
            logs_root: logs.path().to_path_buf(),
            wasm: runtime.clone(),
            containers: None,
            registries: Arc::new(ketch_oci::Registries::default()),
            recorder,
            pods,
            gateway,
            metrics,
        });
        let (pod_tx, pod_rx) = watch::channel(pod.clone());
        let (stop_tx, stop_rx) = watch::channel(Stop::Run);
        let task = tokio::spawn(run(ctx.clone(), pod, pod_rx, stop_rx));
        Harness {
            api,
            runtime,
            ctx,
            pod: pod_tx,
            stop: stop_tx,
            task,
            _logs: logs,
        }
    }

    /// Waits (on paused time: the clock jumps to the worker's timers) until `cond` holds.
    async fn until(what: &str, mut cond: impl FnMut() -> bool) {
        for _ in 0..10_000 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    fn phase(status: &Value) -> &str {
        status["phase"].as_str().unwrap_or_default()
    }

    fn waiting_reason(status: &Value) -> &str {
        status["containerStatuses"][0]["state"]["waiting"]["reason"]
            .as_str()
            .unwrap_or_default()
    }

    impl Harness {
        fn serving(&self) -> bool {
            self.ctx
                .pods
                .workload(&("ns".to_string(), "p".to_string()))
                .is_some()
        }

        fn last_status(&self) -> Value {
            self.api.statuses().last().cloned().unwrap_or(Value::Null)
        }

        async fn stop(self, why: Stop) -> Arc<FakeRuntime> {
            self.stop.send(why).unwrap();
            self.task.await.unwrap();
            self.runtime
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_crashed_container_restarts_after_its_back_off_and_requests_follow_it() {
        let h = start(pod(
            json!({"containers": [{"name": "app", "image": "app.wasm"}]}),
        ));
        until("the first start", || h.runtime.starts().len() == 1).await;
        until("Running", || phase(&h.last_status()) == "Running").await;
        assert!(h.serving(), "published for requests");
        let spec = &h.runtime.starts()[0];
        assert_eq!(
            (spec.namespace.as_str(), spec.pod_name.as_str()),
            ("ns", "p")
        );
        assert_eq!(spec.app, "ns/Pod/p");

        let first_start = tokio::time::Instant::now();
        h.runtime.workloads()[0].exit(WorkloadExit {
            exit_code: 1,
            reason: "Error".into(),
            message: None,
        });
        until("CrashLoopBackOff", || {
            waiting_reason(&h.last_status()) == "CrashLoopBackOff"
        })
        .await;
        assert!(!h.serving(), "an exited workload gets no requests");
        until("the restart", || h.runtime.starts().len() == 2).await;
        assert!(
            first_start.elapsed() >= Duration::from_secs(10),
            "the back-off was waited"
        );
        until("Running again", || phase(&h.last_status()) == "Running").await;
        assert_eq!(h.last_status()["containerStatuses"][0]["restartCount"], 1);
        assert!(h.serving());

        let runtime = h.stop(Stop::Deleted).await;
        assert!(runtime.workloads()[1].stopped(), "stopped with its Pod");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_pull_is_shown_then_backs_off_then_starts() {
        let h = start(pod(
            json!({"containers": [{"name": "app", "image": "app.wasm"}]}),
        ));
        h.runtime.fail_next(StartError {
            reason: StartReason::ErrImagePull,
            message: "no such tag".into(),
        });
        until("ImagePullBackOff", || {
            waiting_reason(&h.last_status()) == "ImagePullBackOff"
        })
        .await;
        let reasons: Vec<String> = h
            .api
            .statuses()
            .iter()
            .map(|s| waiting_reason(s).to_string())
            .collect();
        assert!(
            reasons.iter().any(|r| r == "ErrImagePull"),
            "ErrImagePull shown first: {reasons:?}"
        );
        until("the retry", || h.runtime.starts().len() == 2).await;
        until("Running", || phase(&h.last_status()) == "Running").await;
        until("the Events", || {
            let r = h.api.event_reasons();
            r.contains(&"Failed".to_string()) && r.contains(&"BackOff".to_string())
        })
        .await;
        h.stop(Stop::Shutdown).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_liveness_probe_gets_the_container_restarted() {
        let h = start(pod(json!({"containers": [{
            "name": "app", "image": "app.wasm",
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080},
                              "periodSeconds": 1, "failureThreshold": 2},
        }]})));
        until("the first start", || h.runtime.starts().len() == 1).await;
        let first = h.runtime.workloads()[0].clone();
        until("probed", || first.invocations() > 0).await;
        first.answer(500);
        until("killed", || first.stopped()).await;
        until("the restart", || h.runtime.starts().len() == 2).await;
        let st = h.last_status();
        let last = &st["containerStatuses"][0]["lastState"]["terminated"];
        assert_eq!(last["exitCode"], 137, "{st}");
        assert_eq!(
            last["message"],
            "Container app failed liveness probe, will be restarted"
        );
        until("the Events", || {
            h.api.event_reasons().contains(&"Killing".to_string())
        })
        .await;
        h.stop(Stop::Shutdown).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_ready_condition_someone_else_changed_is_written_again() {
        let p = pod(json!({"containers": [{"name": "app", "image": "app.wasm"}]}));
        let h = start(p.clone());
        until("Running", || phase(&h.last_status()) == "Running").await;
        let writes = h.api.statuses().len();
        // The node lifecycle marked the Pod not Ready while this node was out of touch.
        let mut marked = p;
        marked.status = Some(
            serde_json::from_value(json!({"phase": "Running", "conditions": [
                {"type": "Ready", "status": "False", "reason": "NodeNotReady"}]}))
            .unwrap(),
        );
        h.pod.send(marked).unwrap();
        until("the status written again", || {
            h.api.statuses().len() > writes
        })
        .await;
        let ready = h.last_status()["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .map(|c| c["status"].clone());
        assert_eq!(ready, Some(json!("True")));
        h.stop(Stop::Shutdown).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_pod_being_deleted_has_its_containers_stopped_and_completed() {
        let p = pod(json!({"containers": [{"name": "app", "image": "app.wasm"}]}));
        let h = start(p.clone());
        until("Running", || phase(&h.last_status()) == "Running").await;
        let mut deleting = p;
        deleting.metadata.deletion_timestamp = Some("2026-12-07T00:00:00Z".into());
        h.pod.send(deleting).unwrap();
        let w = h.runtime.workloads()[0].clone();
        until("stopped", || w.stopped()).await;
        until("Completed", || {
            h.last_status()["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
        })
        .await;
        assert!(!h.serving());
        h.stop(Stop::Deleted).await;
    }
}
