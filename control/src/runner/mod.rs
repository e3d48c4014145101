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
use ketch_api::core::{Event, EventSource, Node, ObjectReference, Pod};
use ketch_api::meta::ObjectMeta;
use ketch_api::policy::PodDisruptionBudget;
use ketch_api::rbac::ClusterRole;
use ketch_client::Client;
use tokio::task::JoinSet;

use self::controllers::{
    Caches, DeploymentController, DisruptionController, EndpointSliceController, GC_KEY,
    GcController, ReplicaSetController, feed,
};
use self::informer::{Informer, key_of};
use self::queue::{Reconciler, WorkQueue};
use crate::controllers::node_lifecycle::{
    self, Heartbeat, LifecyclePolicy, LifecycleState, Observed,
};
use crate::controllers::taint_eviction;
use crate::liveness::NodeLiveness;
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
    /// How nodes are judged alive and how fast their Pods may be evicted.
    pub lifecycle: LifecyclePolicy,
    /// The nodes' heartbeats, as this server's API noted them (`None`: nodes are judged by
    /// their Leases only).
    pub liveness: Option<Arc<NodeLiveness>>,
    /// How long an Event is kept after it was last seen (`None`:
    /// `event_ttl::DEFAULT_EVENT_TTL`, 1 h).
    pub event_ttl: Option<Duration>,
}

/// Workers per keyed controller: different keys reconcile in parallel.
const WORKERS: usize = 4;

/// The running scheduler, ReplicaSet, Deployment, EndpointSlice and disruption controllers
/// and garbage collector.
pub struct ControlPlane {
    /// Trigger feeds and the scheduler: they run until aborted.
    tasks: JoinSet<()>,
    /// One task per keyed controller: each ends once its queue is closed.
    controllers: JoinSet<()>,
    queues: Vec<Arc<WorkQueue>>,
    caches: Caches,
    nodes: Informer<Node>,
    leases: Informer<Lease>,
    budgets: Informer<PodDisruptionBudget>,
    cluster_roles: Informer<ClusterRole>,
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

        // PodDisruptionBudgets: their own changes, the Pods they select, and the replica
        // counts of the workloads of their namespace.
        let budgets = Informer::<PodDisruptionBudget>::start(&client);
        let pdb_queue = WorkQueue::new();
        tasks.spawn(feed(
            budgets.subscribe(),
            pdb_queue.clone(),
            controllers::budget_keys_of_budget,
        ));
        let b = budgets.clone();
        tasks.spawn(feed(caches.pods.subscribe(), pdb_queue.clone(), move |c| {
            controllers::budget_keys_of_pod(c, &b)
        }));
        let b = budgets.clone();
        tasks.spawn(feed(
            caches.replica_sets.subscribe(),
            pdb_queue.clone(),
            move |c| {
                controllers::budget_keys_of_scale(
                    c,
                    |rs: &ketch_api::apps::ReplicaSet| rs.spec.as_ref().and_then(|s| s.replicas),
                    &b,
                )
            },
        ));
        let b = budgets.clone();
        tasks.spawn(feed(
            caches.deployments.subscribe(),
            pdb_queue.clone(),
            move |c| {
                controllers::budget_keys_of_scale(
                    c,
                    |d: &ketch_api::apps::Deployment| d.spec.as_ref().and_then(|s| s.replicas),
                    &b,
                )
            },
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

        let pdb = Arc::new(DisruptionController {
            client: client.clone(),
            caches: caches.clone(),
            budgets: budgets.clone(),
        });
        start_controller(&mut ctrls, pdb, pdb_queue.clone(), caches.clone(), Vec::new);
        // The budgets' cache is not among the shared ones `start_controller` waits for: the
        // first pass over every budget is queued once it has listed.
        let (initial, q) = (budgets.clone(), pdb_queue.clone());
        tasks.spawn(async move {
            initial.synced().await;
            for b in initial.list(None) {
                q.add(key_of(&*b));
            }
        });

        let leases = Informer::<Lease>::start(&client);
        tasks.spawn(node_lifecycle(
            client.clone(),
            Looked {
                nodes: nodes.clone(),
                leases: leases.clone(),
                pods: caches.pods.clone(),
            },
            opts.liveness.clone(),
            opts.lifecycle,
        ));

        tasks.spawn(expire_events(
            client.clone(),
            opts.event_ttl
                .unwrap_or(crate::controllers::event_ttl::DEFAULT_EVENT_TTL),
        ));

        let cluster_roles = Informer::<ClusterRole>::start(&client);
        tasks.spawn(aggregate_cluster_roles(
            client.clone(),
            cluster_roles.clone(),
        ));

        let sched =
            scheduler::Scheduler::new(client, caches.pods.clone(), nodes.clone(), opts.scheduler);
        tasks.spawn(sched.run());

        ControlPlane {
            tasks,
            controllers: ctrls,
            queues: vec![rs_queue, d_queue, eps_queue, gc_queue, pdb_queue],
            caches,
            nodes,
            leases,
            budgets,
            cluster_roles,
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
        self.budgets.stop();
        self.cluster_roles.stop();
    }
}

/// ClusterRole aggregation (see `authz::aggregation`): after any ClusterRole change, the
/// aggregated roles whose rules differ from the union of their selected roles are written,
/// each as a compare-and-set on the version planned from (a conflict means a newer change,
/// which plans again). Its own writes come back as changes and plan nothing.
async fn aggregate_cluster_roles(client: Client, roles: Informer<ClusterRole>) {
    let mut changes = roles.subscribe();
    roles.synced().await;
    let api = client.api::<ClusterRole>(None);
    loop {
        let snapshot = roles.list_owned(None);
        let mut failed = false;
        for update in crate::authz::aggregation::plan(&snapshot) {
            let Some(mut role) = snapshot
                .iter()
                .find(|r| r.metadata.name() == update.name)
                .cloned()
            else {
                continue;
            };
            role.rules = update.rules;
            match api.replace(&role).await {
                Ok(_) => tracing::info!(role = %update.name, "aggregated ClusterRole rules"),
                Err(e) => {
                    failed = true;
                    tracing::debug!(role = %update.name, error = %e, "aggregating ClusterRole rules");
                }
            }
        }
        if failed {
            // A conflict's newer version arrives as a change; anything else is retried.
            tokio::time::sleep(Duration::from_secs(1)).await;
            while changes.try_recv().is_ok() {}
            continue;
        }
        // Wait for the next change; a burst plans once.
        if changes.recv().await.is_none() {
            return;
        }
        while changes.try_recv().is_ok() {}
    }
}

/// Deletes the Events last seen more than `ttl` ago (`controllers::event_ttl`): a sweep a
/// minute (or four per `ttl` when it is shorter), a LIST of every namespace's Events, then
/// one DELETE per expired Event.
async fn expire_events(client: Client, ttl: Duration) {
    use ketch_api::core::Event;
    let every = (ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let events = match client.api::<Event>(None).list(&Default::default()).await {
            Ok(list) => list.items,
            Err(e) => {
                tracing::debug!(error = %e, "listing Events to expire");
                continue;
            }
        };
        let expired = crate::controllers::event_ttl::plan(&events, chrono::Utc::now(), ttl);
        for (namespace, name) in expired {
            match client.api::<Event>(Some(&namespace)).delete(&name).await {
                Ok(_) => {}
                Err(e) if e.code() == Some(404) => {}
                Err(e) => tracing::debug!(%namespace, %name, error = %e, "expiring an Event"),
            }
        }
    }
}

/// How often nodes are looked at (and evictions that fell due are done): the granularity
/// of detection and of `tolerationSeconds`.
const NODE_MONITOR_PERIOD: Duration = Duration::from_secs(1);
/// Who writes the node lifecycle's Events.
const LIFECYCLE_COMPONENT: &str = "ketch-node-lifecycle";

/// The caches the node lifecycle looks at.
struct Looked {
    nodes: Informer<Node>,
    leases: Informer<Lease>,
    pods: Informer<Pod>,
}

/// Node liveness, Ready, taints, marking Pods of dead nodes not Ready, and taint-based
/// eviction (see `controllers::node_lifecycle` and `controllers::taint_eviction`). Pods are
/// listed only when a node is not Ready or has a `NoExecute` taint: a healthy cluster costs
/// a look at its nodes a second.
async fn node_lifecycle(
    client: Client,
    looked: Looked,
    liveness: Option<Arc<NodeLiveness>>,
    policy: LifecyclePolicy,
) {
    looked.nodes.synced().await;
    looked.leases.synced().await;
    looked.pods.synced().await;
    let nodes_info = ketch_api::resource::lookup("nodes").expect("nodes are registered");
    let pods_info = ketch_api::resource::lookup("pods").expect("pods are registered");
    let mut state = LifecycleState::default();
    let mut tick = tokio::time::interval(NODE_MONITOR_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = ketch_api::time::now();
        let (nodes, leases) = (
            looked.nodes.list_owned(None),
            looked.leases.list_owned(None),
        );
        let heartbeats = heartbeats_on_the_wall_clock(liveness.as_deref(), &nodes);
        let plan = node_lifecycle::plan(
            &Observed {
                nodes: &nodes,
                leases: &leases,
                heartbeats: &heartbeats,
                now: &now,
            },
            &policy,
            &mut state,
        );
        for (zone, zs) in &plan.zones {
            tracing::warn!(zone = %zone, state = ?zs, "node zone state changed");
        }
        for (name, conditions) in &plan.conditions {
            let ready = conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .map_or("", |c| c.status.as_str());
            let patch = serde_json::json!({"status": {"conditions": conditions}});
            match client
                .merge_patch(nodes_info, None, name, &patch, true)
                .await
            {
                Ok(_) => tracing::warn!(node = %name, ready, "node Ready changed"),
                Err(e) => tracing::debug!(node = %name, error = %e, "writing node Ready"),
            }
        }
        for (name, taints) in &plan.taints {
            let patch = serde_json::json!({"spec": {"taints": taints}});
            if let Err(e) = client
                .merge_patch(nodes_info, None, name, &patch, false)
                .await
            {
                tracing::debug!(node = %name, error = %e, "writing node taints");
            }
        }
        // Evictions go by the taints this look just wrote, not the cache's older ones.
        let mut nodes = nodes;
        for (name, taints) in &plan.taints {
            if let Some(n) = nodes.iter_mut().find(|n| n.metadata.name() == name) {
                n.spec.get_or_insert_with(Default::default).taints = taints.clone();
            }
        }
        let noexecute: std::collections::BTreeSet<&str> = nodes
            .iter()
            .filter(|n| {
                n.spec
                    .as_ref()
                    .is_some_and(|s| s.taints.iter().any(|t| t.effect == "NoExecute"))
            })
            .map(|n| n.metadata.name())
            .collect();
        if plan.not_ready.is_empty() && noexecute.is_empty() {
            continue;
        }
        // Only the Pods of the nodes in question, not every Pod of the cluster.
        let pods: Vec<Pod> = looked
            .pods
            .list(None)
            .iter()
            .filter(|p| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_some_and(|n| plan.not_ready.contains(n) || noexecute.contains(n))
            })
            .map(|p| (**p).clone())
            .collect();
        for (ns, name, conditions) in node_lifecycle::pods_not_ready(&pods, &plan.not_ready, &now) {
            let patch = serde_json::json!({"status": {"conditions": conditions}});
            if let Err(e) = client
                .merge_patch(pods_info, Some(&ns), &name, &patch, true)
                .await
            {
                tracing::debug!(pod = %name, error = %e, "marking a pod not ready");
            }
        }
        let (evictions, _) = taint_eviction::plan(&pods, &nodes, &now);
        for ev in evictions {
            evict(&client, &pods, &ev).await;
        }
    }
}

/// This leader's heartbeat table with its instants moved onto the wall clock; nodes that no
/// longer exist are forgotten.
fn heartbeats_on_the_wall_clock(
    liveness: Option<&NodeLiveness>,
    nodes: &[Node],
) -> std::collections::HashMap<String, Heartbeat> {
    let Some(liveness) = liveness else {
        return Default::default();
    };
    let names: std::collections::HashSet<&str> = nodes.iter().map(|n| n.metadata.name()).collect();
    liveness.retain(|n| names.contains(n));
    let (wall_ms, mono) = (
        chrono::Utc::now().timestamp_millis(),
        std::time::Instant::now(),
    );
    liveness
        .snapshot()
        .into_iter()
        .map(|(node, beat)| {
            let age = i64::try_from(mono.saturating_duration_since(beat.at).as_millis())
                .unwrap_or(i64::MAX);
            let grace_ms = i64::try_from(beat.grace.as_millis()).unwrap_or(i64::MAX);
            (
                node,
                Heartbeat {
                    at_ms: wall_ms.saturating_sub(age),
                    grace_ms,
                },
            )
        })
        .collect()
}

/// Deletes an evicted Pod (only the one of that uid) and records why.
async fn evict(client: &Client, pods: &[Pod], ev: &taint_eviction::Eviction) {
    let api = client.api::<Pod>(Some(&ev.namespace));
    match api.delete_with_uid(&ev.name, &ev.uid).await {
        Ok(_) => {
            tracing::warn!(pod = %ev.name, node = %ev.node, "evicted a pod of a tainted node");
            if let Some(pod) = pods
                .iter()
                .find(|p| p.metadata.uid.as_deref() == Some(&ev.uid))
            {
                let event = pod_event(
                    pod,
                    LIFECYCLE_COMPONENT,
                    "Evicting",
                    "Normal",
                    "TaintManagerEviction",
                    &ev.message,
                );
                if let Err(e) = client
                    .api::<Event>(Some(&ev.namespace))
                    .create(&event)
                    .await
                {
                    tracing::debug!(pod = %ev.name, error = %e, "recording an eviction event");
                }
            }
        }
        Err(e) if matches!(e.code(), Some(404 | 409)) => {}
        Err(e) => tracing::warn!(pod = %ev.name, error = %e, "evicting a pod"),
    }
}

/// A v1 Event about `pod`. Events are written blind (create only, no read-modify-write of a
/// counter): cheap, at the cost of not aggregating repeats into one object.
pub fn pod_event(
    pod: &Pod,
    component: &str,
    action: &str,
    type_: &str,
    reason: &str,
    message: &str,
) -> Event {
    let ts = ketch_api::time::now();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    Event {
        api_version: Some("v1".into()),
        kind: Some("Event".into()),
        metadata: ObjectMeta {
            name: Some(format!("{}.{}", pod.metadata.name(), &suffix[..16])),
            namespace: pod.metadata.namespace.clone(),
            ..Default::default()
        },
        involved_object: ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            api_version: Some("v1".into()),
            resource_version: pod.metadata.resource_version.clone(),
            field_path: None,
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(type_.into()),
        count: Some(1),
        first_timestamp: Some(ts.clone()),
        last_timestamp: Some(ts),
        event_time: None,
        source: Some(EventSource {
            component: Some(component.into()),
            host: None,
        }),
        reporting_component: Some(component.into()),
        reporting_instance: None,
        action: Some(action.into()),
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
