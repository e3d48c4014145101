//! Pods bound to this node: a resumable watch feeds one worker task per Pod uid ([`worker`]).
//! Each worker executes what its Pod's pure [`lifecycle`] decides — start, restart after
//! back-off, probe, kill, stop — through the [`WorkloadRuntime`]s, and reports status and
//! Events; [`spec`] resolves what a container needs to start.

mod lifecycle;
mod spec;
mod worker;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::StreamExt as _;
use ketch_api::core::Pod;
use ketch_client::{Client, ListParams};
use ketch_containers::network::PodNetwork;
use ketch_gateway::Dispatcher;
use ketch_workload::{PodRegistry, WorkloadRuntime};
use tokio::sync::watch;

use crate::events::Recorder;

/// `status.podIP` of in-process Wasm Pods: they have no network namespace of their own and
/// are reached through the agent (proxy, gateway), so they report the loopback address.
pub const WASM_POD_IP: &str = "127.0.0.1";

/// Shared by the pod manager, every worker and the HTTP server.
pub(crate) struct Ctx {
    pub client: Client,
    pub node: String,
    pub host_ip: String,
    pub logs_root: PathBuf,
    pub wasm: Arc<dyn WorkloadRuntime>,
    /// Linux containers, when containerd (and the CNI plugins) are there.
    pub containers: Option<(Arc<dyn WorkloadRuntime>, Arc<PodNetwork>)>,
    /// Registry protocol and credentials (to ask what a reference is).
    pub registries: Arc<ketch_oci::Registries>,
    pub recorder: Recorder,
    /// The Pods of this node and their running workloads (shared with the gateway).
    pub pods: Arc<PodRegistry>,
    /// Routes requests to Services: the gateway listener's handler and the in-cluster caller
    /// given to workloads.
    pub gateway: Arc<Dispatcher>,
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
    async fn reap(&self, live: &HashSet<String>) {
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
}

/// Why a worker is told to stop.
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
                let live: HashSet<String> =
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
    let join = tokio::spawn(worker::run(ctx.clone(), pod, pod_rx, stop_rx));
    workers.insert(
        uid,
        WorkerHandle {
            pod: pod_tx,
            stop: stop_tx,
            join,
        },
    );
}
