//! The IO half of the scheduler and the controllers: informers (watch-fed caches), a work
//! queue and reconcile loop in kube-runtime's shape, and the runners that feed the pure
//! planners (`crate::scheduler`, `crate::controllers`) and execute what they decide.
//!
//! Everything talks to the store only through the API, with [`ketch_client`]. A
//! [`ControlPlane`] runs it all in one process.
//!
//! # Consistency
//!
//! The planners require that a snapshot never lags behind the runner's own writes. Every write
//! returns the object's new `resourceVersion`, a global revision of the linearizable store;
//! after executing a plan, a reconcile waits until each informer it wrote to has applied that
//! revision (see [`informer::Informer::wait_for`]) before it returns, so the next plan of any
//! key sees the writes. The scheduler instead keeps its placements as *assumed* until the pod
//! cache shows them.
//!
//! # Leadership
//!
//! Exactly one `ControlPlane` may run per cluster: [`leader::LeaderGated`] runs it only on
//! the raft leader, starting and stopping it as leadership moves between servers.

pub mod actions;
pub mod controllers;
pub mod informer;
pub mod leader;
pub mod queue;
pub mod scheduler;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use ketch_api::coordination::Lease;
use ketch_api::core::Node;
use ketch_client::Client;
use tokio::task::JoinSet;

use self::controllers::{
    Caches, DeploymentController, EndpointSliceController, GC_KEY, GcController,
    ReplicaSetController, feed,
};
use self::informer::{Informer, key_of};
use self::queue::{Reconciler, WorkQueue};
use crate::controllers::node_lifecycle;
use crate::scheduler::Profile;

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] ketch_client::Error),
    /// A plan named a kind the API does not serve.
    #[error("unknown kind {kind} in {api_version}")]
    UnknownKind { api_version: String, kind: String },
    /// The caches did not show this controller's writes in time, or an owner the collector
    /// took for deleted still exists: plan again shortly.
    #[error("the cache is behind the API; planning again")]
    StaleCache,
}

impl Error {
    /// A failure that resolves by planning again from a fresher cache: a failed precondition
    /// (409 Conflict), a target that vanished (404), or a stale cache. Retried soon, quietly.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Api(e) => matches!(e.code(), Some(404 | 409)),
            Error::StaleCache => true,
            Error::UnknownKind { .. } => false,
        }
    }
}

/// How the control plane behaves.
#[derive(Debug, Clone, Default)]
pub struct ControlOptions {
    /// How the scheduler looks for and ranks nodes that fit.
    pub scheduler: Profile,
    /// How long a node may go without renewing its Lease before it is marked not Ready
    /// (`None`: Kubernetes' 40 s).
    pub node_grace: Option<Duration>,
}

/// Workers per keyed controller: different keys reconcile in parallel.
const WORKERS: usize = 4;

/// The running scheduler, ReplicaSet, Deployment and EndpointSlice controllers and garbage
/// collector.
pub struct ControlPlane {
    /// Trigger feeds and the scheduler: they run until aborted.
    tasks: JoinSet<()>,
    /// One task per keyed controller: each ends once its queue is closed.
    controllers: JoinSet<()>,
    queues: Vec<Arc<WorkQueue>>,
    caches: Caches,
    nodes: Informer<Node>,
    leases: Informer<Lease>,
}

impl ControlPlane {
    /// Starts everything on the current tokio runtime. Controllers begin work once their
    /// informers have listed; the API must be reachable (the informers retry until it is).
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(client: Client, opts: ControlOptions) -> ControlPlane {
        let caches = Caches::start(&client);
        let nodes = Informer::<Node>::start(&client);
        let mut tasks = JoinSet::new();
        let mut ctrls = JoinSet::new();

        // ReplicaSets: their own changes and their pods'.
        let rs_queue = WorkQueue::new();
        tasks.spawn(feed(
            caches.replica_sets.subscribe(),
            rs_queue.clone(),
            controllers::rs_keys_of_rs,
        ));
        let rss = caches.replica_sets.clone();
        tasks.spawn(feed(caches.pods.subscribe(), rs_queue.clone(), move |c| {
            controllers::rs_keys_of_pod(c, &rss)
        }));

        // Deployments: their own changes, their ReplicaSets', and pods going away.
        let d_queue = WorkQueue::new();
        tasks.spawn(feed(
            caches.deployments.subscribe(),
            d_queue.clone(),
            controllers::deployment_keys_of_deployment,
        ));
        let ds = caches.deployments.clone();
        tasks.spawn(feed(
            caches.replica_sets.subscribe(),
            d_queue.clone(),
            move |c| controllers::deployment_keys_of_rs(c, &ds),
        ));
        let rss = caches.replica_sets.clone();
        tasks.spawn(feed(caches.pods.subscribe(), d_queue.clone(), move |c| {
            controllers::deployment_keys_of_pod(c, &rss)
        }));

        // EndpointSlices, keyed by Service: Service changes, changes of the slices the
        // controller manages, and Pods that (stop to) match a Service's selector.
        let eps_queue = WorkQueue::new();
        tasks.spawn(feed(
            caches.services.subscribe(),
            eps_queue.clone(),
            controllers::service_keys_of_service,
        ));
        tasks.spawn(feed(
            caches.endpoint_slices.subscribe(),
            eps_queue.clone(),
            controllers::service_keys_of_slice,
        ));
        let svcs = caches.services.clone();
        tasks.spawn(feed(caches.pods.subscribe(), eps_queue.clone(), move |c| {
            controllers::service_keys_of_pod(c, &svcs)
        }));

        // The collector: any change of any collected kind.
        let gc_queue = WorkQueue::new();
        tasks.spawn(feed(
            caches.pods.subscribe(),
            gc_queue.clone(),
            controllers::gc_keys,
        ));
        tasks.spawn(feed(
            caches.replica_sets.subscribe(),
            gc_queue.clone(),
            controllers::gc_keys,
        ));
        tasks.spawn(feed(
            caches.deployments.subscribe(),
            gc_queue.clone(),
            controllers::gc_keys,
        ));
        tasks.spawn(feed(
            caches.services.subscribe(),
            gc_queue.clone(),
            controllers::gc_keys,
        ));
        tasks.spawn(feed(
            caches.endpoint_slices.subscribe(),
            gc_queue.clone(),
            controllers::gc_keys,
        ));

        let rs = Arc::new(ReplicaSetController {
            client: client.clone(),
            caches: caches.clone(),
        });
        let initial = caches.replica_sets.clone();
        start_controller(
            &mut ctrls,
            rs,
            rs_queue.clone(),
            caches.clone(),
            move || initial.list(None).iter().map(|o| key_of(&**o)).collect(),
        );
        let d = Arc::new(DeploymentController {
            client: client.clone(),
            caches: caches.clone(),
        });
        let initial = caches.deployments.clone();
        start_controller(&mut ctrls, d, d_queue.clone(), caches.clone(), move || {
            initial.list(None).iter().map(|o| key_of(&**o)).collect()
        });
        let eps = Arc::new(EndpointSliceController {
            client: client.clone(),
            caches: caches.clone(),
        });
        let initial = caches.services.clone();
        start_controller(
            &mut ctrls,
            eps,
            eps_queue.clone(),
            caches.clone(),
            move || initial.list(None).iter().map(|o| key_of(&**o)).collect(),
        );
        let gc = Arc::new(GcController {
            client: client.clone(),
            caches: caches.clone(),
        });
        start_controller(&mut ctrls, gc, gc_queue.clone(), caches.clone(), || {
            vec![GC_KEY.to_string()]
        });

        let leases = Informer::<Lease>::start(&client);
        tasks.spawn(node_lifecycle(
            client.clone(),
            nodes.clone(),
            leases.clone(),
            opts.node_grace.unwrap_or(node_lifecycle::DEFAULT_GRACE),
        ));

        let sched =
            scheduler::Scheduler::new(client, caches.pods.clone(), nodes.clone(), opts.scheduler);
        tasks.spawn(sched.run());

        ControlPlane {
            tasks,
            controllers: ctrls,
            queues: vec![rs_queue, d_queue, eps_queue, gc_queue],
            caches,
            nodes,
            leases,
        }
    }

    /// Stops every loop and watch. In-flight reconciles get a moment to finish their current
    /// write sequence; each write is atomic on the server, so an abandoned plan is simply
    /// re-planned by the next leader.
    pub async fn stop(mut self) {
        for q in &self.queues {
            q.close();
        }
        let drained = tokio::time::timeout(Duration::from_secs(2), async {
            while self.controllers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::debug!("control plane stop: abandoning in-flight reconciles");
        }
        self.controllers.shutdown().await;
        self.tasks.shutdown().await;
        self.caches.stop();
        self.nodes.stop();
        self.leases.stop();
    }
}

/// How often silent nodes are looked for.
const NODE_MONITOR_PERIOD: Duration = Duration::from_secs(5);

/// Marks nodes whose agents went silent as not Ready (see `controllers::node_lifecycle`).
async fn node_lifecycle(
    client: Client,
    nodes: Informer<Node>,
    leases: Informer<Lease>,
    grace: Duration,
) {
    nodes.synced().await;
    leases.synced().await;
    let info = ketch_api::resource::lookup("nodes").expect("nodes are registered");
    let mut tick = tokio::time::interval(NODE_MONITOR_PERIOD);
    loop {
        tick.tick().await;
        let (ns, ls) = (nodes.list_owned(None), leases.list_owned(None));
        for (name, conditions) in node_lifecycle::plan(&ns, &ls, &ketch_api::time::now(), grace) {
            let patch = serde_json::json!({"status": {"conditions": conditions}});
            match client.merge_patch(info, None, &name, &patch, true).await {
                Ok(_) => {
                    tracing::warn!(node = %name, "node stopped renewing its lease: Ready=Unknown")
                }
                Err(e) => tracing::debug!(node = %name, error = %e, "marking node not ready"),
            }
        }
    }
}

/// Spawns a controller's workers once the caches have listed, after queueing every existing
/// key (changes seen before the subscription existed are covered by this initial pass).
fn start_controller<R: Reconciler>(
    tasks: &mut JoinSet<()>,
    reconciler: Arc<R>,
    queue: Arc<WorkQueue>,
    caches: Caches,
    initial: impl FnOnce() -> Vec<String> + Send + 'static,
) {
    tasks.spawn(async move {
        caches.synced().await;
        for k in initial() {
            queue.add(k);
        }
        let mut workers = JoinSet::new();
        queue::run(reconciler, queue, WORKERS, &mut workers);
        while workers.join_next().await.is_some() {}
    });
}
