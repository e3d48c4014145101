//! The ReplicaSet, Deployment, EndpointSlice, disruption and garbage-collector reconcilers:
//! gather a
//! plan's inputs from the informers, call the pure `plan`, execute it, and wait until the
//! caches show the writes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ketch_api::apps::{Deployment, ReplicaSet};
use ketch_api::core::{Pod, Service};
use ketch_api::discovery::EndpointSlice;
use ketch_api::meta::{ObjectMeta, OwnerReference};
use ketch_api::policy::PodDisruptionBudget;
use ketch_api::resource::Resource;
use ketch_api::selector::Selector;
use ketch_client::Client;
use serde_json::Value;
use tokio::sync::mpsc;

use super::Error;
use super::actions::{self, Outcome, info_of};
use super::informer::{Change, Informer, key_of};
use super::queue::{Reconciler, Requeue, WorkQueue};
use crate::controllers::gc::GcObject;
use crate::controllers::{
    Action, controller_ref, deployment, disruption, endpointslice, gc, replicaset,
};

/// How long a reconcile waits for the caches to show its own writes before giving up and
/// planning again later.
const READ_YOUR_WRITES_TIMEOUT: Duration = Duration::from_secs(5);

/// The informers the controllers share.
#[derive(Clone)]
pub struct Caches {
    pub pods: Informer<Pod>,
    pub replica_sets: Informer<ReplicaSet>,
    pub deployments: Informer<Deployment>,
    pub services: Informer<Service>,
    pub endpoint_slices: Informer<EndpointSlice>,
}

impl Caches {
    /// Starts every informer.
    pub fn start(client: &Client) -> Caches {
        Caches {
            pods: Informer::start(client),
            replica_sets: Informer::start(client),
            deployments: Informer::start(client),
            services: Informer::start(client),
            endpoint_slices: Informer::start(client),
        }
    }

    /// Waits until every informer has listed.
    pub async fn synced(&self) {
        self.pods.synced().await;
        self.replica_sets.synced().await;
        self.deployments.synced().await;
        self.services.synced().await;
        self.endpoint_slices.synced().await;
    }

    /// Stops every informer's watch.
    pub fn stop(&self) {
        self.pods.stop();
        self.replica_sets.stop();
        self.deployments.stop();
        self.services.stop();
        self.endpoint_slices.stop();
    }

    /// Waits until each cache reflects what `out` wrote.
    async fn catch_up(&self, out: &Outcome) -> bool {
        let t = READ_YOUR_WRITES_TIMEOUT;
        self.pods.wait_for(out.rv(Pod::INFO.kind), t).await
            && self
                .replica_sets
                .wait_for(out.rv(ReplicaSet::INFO.kind), t)
                .await
            && self
                .deployments
                .wait_for(out.rv(Deployment::INFO.kind), t)
                .await
            && self.services.wait_for(out.rv(Service::INFO.kind), t).await
            && self
                .endpoint_slices
                .wait_for(out.rv(EndpointSlice::INFO.kind), t)
                .await
    }

    /// Finishes a reconcile: waits for the caches, then reports the plan's outcome.
    async fn finish(&self, out: Outcome) -> Result<Requeue, Error> {
        let caught_up = self.catch_up(&out).await;
        if let Some(e) = out.error {
            return Err(e);
        }
        if !caught_up {
            return Err(Error::StaleCache);
        }
        Ok(out
            .requeue_after
            .map_or(Requeue::AwaitChange, Requeue::After))
    }
}

fn as_json<K: serde::Serialize>(k: &K) -> Value {
    serde_json::to_value(k).expect("API objects serialize")
}

pub struct ReplicaSetController {
    pub client: Client,
    pub caches: Caches,
}

impl Reconciler for ReplicaSetController {
    const NAME: &'static str = "replicaset";

    async fn reconcile(self: Arc<Self>, key: String) -> Result<Requeue, Error> {
        let Some(rs) = self.caches.replica_sets.get(&key) else {
            return Ok(Requeue::AwaitChange);
        };
        let pods = self.caches.pods.list_owned(Some(rs.metadata.namespace()));
        let plan = replicaset::plan(&rs, &pods, &ketch_api::time::now());
        if plan.is_empty() {
            return Ok(Requeue::AwaitChange);
        }
        let out = actions::execute_plan(&self.client, plan, Some(&as_json(&*rs))).await;
        self.caches.finish(out).await
    }
}

pub struct DeploymentController {
    pub client: Client,
    pub caches: Caches,
}

impl Reconciler for DeploymentController {
    const NAME: &'static str = "deployment";

    async fn reconcile(self: Arc<Self>, key: String) -> Result<Requeue, Error> {
        let Some(d) = self.caches.deployments.get(&key) else {
            return Ok(Requeue::AwaitChange);
        };
        let ns = d.metadata.namespace();
        let rss = self.caches.replica_sets.list_owned(Some(ns));
        let pods = self.caches.pods.list_owned(Some(ns));
        let plan = deployment::plan(&d, &rss, &pods, &ketch_api::time::now());
        if plan.is_empty() {
            return Ok(Requeue::AwaitChange);
        }
        let out = actions::execute_plan(&self.client, plan, Some(&as_json(&*d))).await;
        self.caches.finish(out).await
    }
}

pub struct EndpointSliceController {
    pub client: Client,
    pub caches: Caches,
}

impl Reconciler for EndpointSliceController {
    const NAME: &'static str = "endpointslice";

    /// `key` is a Service's `namespace/name`. A Service that is gone needs nothing: its
    /// slice is controlled by it, so the garbage collector deletes the slice.
    async fn reconcile(self: Arc<Self>, key: String) -> Result<Requeue, Error> {
        let Some(svc) = self.caches.services.get(&key) else {
            return Ok(Requeue::AwaitChange);
        };
        let ns = svc.metadata.namespace();
        let pods = self.caches.pods.list(Some(ns));
        let slices = self.caches.endpoint_slices.list(Some(ns));
        let slices: Vec<&EndpointSlice> = slices.iter().map(|s| &**s).collect();
        let plan = endpointslice::plan(&svc, pods.iter().map(|p| &**p), &slices);
        if plan.is_empty() {
            return Ok(Requeue::AwaitChange);
        }
        let out = actions::execute_plan(&self.client, plan, None).await;
        self.caches.finish(out).await
    }
}

/// Keeps each PodDisruptionBudget's status (see `controllers::disruption`). Keyed by the
/// budget's `namespace/name`.
pub struct DisruptionController {
    pub client: Client,
    pub caches: Caches,
    pub budgets: Informer<PodDisruptionBudget>,
}

impl Reconciler for DisruptionController {
    const NAME: &'static str = "disruption";

    async fn reconcile(self: Arc<Self>, key: String) -> Result<Requeue, Error> {
        let Some(pdb) = self.budgets.get(&key) else {
            return Ok(Requeue::AwaitChange);
        };
        let ns = Some(pdb.metadata.namespace());
        let (pods, rss, ds) = (
            self.caches.pods.list(ns),
            self.caches.replica_sets.list(ns),
            self.caches.deployments.list(ns),
        );
        let plan = disruption::plan(
            &pdb,
            &pods.iter().map(|p| &**p).collect::<Vec<_>>(),
            &rss.iter().map(|r| &**r).collect::<Vec<_>>(),
            &ds.iter().map(|d| &**d).collect::<Vec<_>>(),
            &ketch_api::time::now(),
        );
        if !plan.unmanaged.is_empty() {
            tracing::debug!(budget = %key, pods = ?plan.unmanaged,
                "pods without a controller are left out of the budget's expected count");
        }
        let requeue = plan
            .recheck_after
            .map_or(Requeue::AwaitChange, Requeue::After);
        let Some(status) = plan.status else {
            return Ok(requeue);
        };
        // A compare-and-set on the budget as read: an eviction that used an allowance since
        // then makes this write fail (409), and the next look counts that eviction.
        let mut next = (*pdb).clone();
        next.status = Some(status);
        let written = self
            .client
            .api::<PodDisruptionBudget>(ns)
            .replace_status(&next)
            .await?;
        let rv = written
            .metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if !self.budgets.wait_for(rv, READ_YOUR_WRITES_TIMEOUT).await {
            return Err(Error::StaleCache);
        }
        Ok(requeue)
    }
}

/// A budget change enqueues that budget.
pub fn budget_keys_of_budget(c: &Change<PodDisruptionBudget>) -> HashSet<String> {
    HashSet::from([key_of(&**c.object())])
}

/// A Pod change enqueues the budgets of its namespace that select it before or after.
pub fn budget_keys_of_pod(
    c: &Change<Pod>,
    budgets: &Informer<PodDisruptionBudget>,
) -> HashSet<String> {
    let pods: Vec<&Arc<Pod>> = versions(c).collect();
    budgets
        .list(Some(c.object().metadata.namespace()))
        .iter()
        .filter(|b| pods.iter().any(|p| disruption::selects(b, p)))
        .map(|b| key_of(&**b))
        .collect()
}

/// A change of a workload's replica count (or its coming or going) enqueues every budget
/// of its namespace: a percentage's expected count is the controllers' replicas.
pub fn budget_keys_of_scale<K: Resource>(
    c: &Change<K>,
    replicas: impl Fn(&K) -> Option<i32>,
    budgets: &Informer<PodDisruptionBudget>,
) -> HashSet<String> {
    let scaled = match c {
        Change::Upsert {
            old: Some(old),
            new,
        } => replicas(old) != replicas(new),
        _ => true,
    };
    if !scaled {
        return HashSet::new();
    }
    budgets
        .list(Some(c.object().metadata().namespace()))
        .iter()
        .map(|b| key_of(&**b))
        .collect()
}

/// The kinds the collector sees; owner references to any other kind are left alone.
const GC_KINDS: [(&str, &str); 5] = [
    ("apps/v1", "Deployment"),
    ("apps/v1", "ReplicaSet"),
    ("v1", "Pod"),
    ("v1", "Service"),
    ("discovery.k8s.io/v1", "EndpointSlice"),
];

fn collected_kind(r: &OwnerReference) -> bool {
    GC_KINDS
        .iter()
        .any(|(v, k)| r.api_version == *v && r.kind == *k)
}

/// The garbage collector runs one plan over the whole snapshot; its queue has one key.
pub struct GcController {
    pub client: Client,
    pub caches: Caches,
}

pub const GC_KEY: &str = "gc";

impl GcController {
    /// One [`GcObject`] per cached object. An object with an owner reference to a kind the
    /// collector does not watch cannot be judged (the owner would look missing), so it takes
    /// part only as a possible owner: its references are hidden from the plan.
    fn snapshot(&self) -> Vec<GcObject> {
        fn add(objects: &mut Vec<GcObject>, api_version: &str, kind: &str, meta: &ObjectMeta) {
            let mut o = GcObject::new(api_version, kind, meta);
            if !o.owner_references.iter().all(collected_kind) {
                o.owner_references.clear();
            }
            objects.push(o);
        }
        let mut objects = Vec::new();
        for d in self.caches.deployments.list(None) {
            add(&mut objects, "apps/v1", "Deployment", &d.metadata);
        }
        for rs in self.caches.replica_sets.list(None) {
            add(&mut objects, "apps/v1", "ReplicaSet", &rs.metadata);
        }
        for p in self.caches.pods.list(None) {
            add(&mut objects, "v1", "Pod", &p.metadata);
        }
        for svc in self.caches.services.list(None) {
            add(&mut objects, "v1", "Service", &svc.metadata);
        }
        for s in self.caches.endpoint_slices.list(None) {
            add(
                &mut objects,
                "discovery.k8s.io/v1",
                "EndpointSlice",
                &s.metadata,
            );
        }
        objects
    }

    /// Whether the owner `r` of a dependent in `namespace` exists, asked of the API: the three
    /// caches are not one snapshot, so an owner missing from its cache may just be late (as
    /// Kubernetes' collector, this looks the owner up before acting on its absence).
    async fn owner_exists(&self, namespace: &str, r: &OwnerReference) -> Result<bool, Error> {
        let info = info_of(&r.api_version, &r.kind)?;
        let ns = Some(namespace).filter(|n| info.namespaced && !n.is_empty());
        match self.client.get(info, ns, &r.name).await {
            Ok(o) => Ok(o.pointer("/metadata/uid").and_then(Value::as_str) == Some(&r.uid)),
            Err(e) if e.code() == Some(404) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Checks, before a dependent is deleted or loses references, that each owner the plan
    /// judged missing is really gone.
    async fn verify(
        &self,
        action: &Action,
        by_uid: &HashMap<&str, &GcObject>,
    ) -> Result<(), Error> {
        let (object, kept): (_, Option<&[OwnerReference]>) = match action {
            Action::Delete { object, .. } => (object, None),
            Action::SetOwnerReferences {
                object,
                owner_references,
            } => (object, Some(owner_references.as_slice())),
            _ => return Ok(()),
        };
        let Some(dep) = by_uid.get(object.uid.as_str()) else {
            return Ok(());
        };
        for r in &dep.owner_references {
            let dropped = kept.is_none_or(|k| !k.iter().any(|x| x.uid == r.uid));
            if dropped
                && !by_uid.contains_key(r.uid.as_str())
                && self.owner_exists(&object.namespace, r).await?
            {
                return Err(Error::StaleCache);
            }
        }
        Ok(())
    }
}

impl Reconciler for GcController {
    const NAME: &'static str = "garbage-collector";

    async fn reconcile(self: Arc<Self>, _key: String) -> Result<Requeue, Error> {
        let objects = self.snapshot();
        let plan = gc::plan(&objects);
        if plan.is_empty() {
            return Ok(Requeue::AwaitChange);
        }
        let by_uid: HashMap<&str, &GcObject> = objects
            .iter()
            .filter(|o| !o.key.uid.is_empty())
            .map(|o| (o.key.uid.as_str(), o))
            .collect();
        let mut out = Outcome::default();
        for action in plan {
            let r = match self.verify(&action, &by_uid).await {
                Ok(()) => actions::execute(&self.client, action, None, &mut out).await,
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                out.error = Some(e);
                break;
            }
        }
        self.caches.finish(out).await
    }
}

// Triggers: which keys a change of a watched object enqueues.

fn versions<K>(c: &Change<K>) -> impl Iterator<Item = &Arc<K>> {
    let (a, b) = match c {
        Change::Upsert { old, new } => (old.as_ref(), Some(new)),
        Change::Delete(o) => (None, Some(o)),
    };
    a.into_iter().chain(b)
}

/// The key of `meta`'s controller when it is of `kind`.
fn controller_key(meta: &ObjectMeta, kind: &str) -> Option<String> {
    controller_ref(meta)
        .filter(|r| r.kind == kind)
        .map(|r| format!("{}/{}", meta.namespace(), r.name))
}

/// Keys of the selector owners in `meta`'s namespace that could adopt it (it has no
/// controller and is not terminating).
fn adopters<O: Resource>(
    meta: &ObjectMeta,
    owners: &Informer<O>,
    selector: impl Fn(&O) -> Option<&ketch_api::selector::LabelSelector>,
) -> Vec<String> {
    if controller_ref(meta).is_some() || meta.deletion_timestamp.is_some() {
        return Vec::new();
    }
    owners
        .list(Some(meta.namespace()))
        .iter()
        .filter(|o| {
            selector(o)
                .and_then(|s| Selector::from_label_selector(s).ok())
                .is_some_and(|s| !s.is_empty() && s.matches(&meta.labels))
        })
        .map(|o| key_of(&**o))
        .collect()
}

/// Feeds `queue` from `rx`, mapping each change to keys with `keys`.
pub async fn feed<K>(
    mut rx: mpsc::UnboundedReceiver<Change<K>>,
    queue: Arc<WorkQueue>,
    keys: impl Fn(&Change<K>) -> HashSet<String>,
) {
    while let Some(c) = rx.recv().await {
        for k in keys(&c) {
            queue.add(k);
        }
    }
}

/// Which changes of a collected kind enqueue the collector's single key.
///
/// Only changes the collector can act on count: a deletion (its dependents may now be
/// orphans), a new object that names owners (one may be gone), and a change of owner
/// references, finalizers or the deletion mark. Spec and status updates — nearly all
/// writes under load — do not re-run the collector's whole-cluster pass.
pub fn gc_keys<K: Resource>(c: &Change<K>) -> HashSet<String> {
    if gc_relevant(c) {
        HashSet::from([GC_KEY.to_string()])
    } else {
        HashSet::new()
    }
}

fn gc_relevant<K: Resource>(c: &Change<K>) -> bool {
    match c {
        Change::Delete(_) => true,
        Change::Upsert { old: None, new } => {
            let m = new.metadata();
            !m.owner_references.is_empty() || m.deletion_timestamp.is_some()
        }
        Change::Upsert {
            old: Some(old),
            new,
        } => {
            let (a, b) = (old.metadata(), new.metadata());
            a.owner_references != b.owner_references
                || a.finalizers != b.finalizers
                || a.deletion_timestamp != b.deletion_timestamp
        }
    }
}

/// A ReplicaSet change enqueues that ReplicaSet.
pub fn rs_keys_of_rs(c: &Change<ReplicaSet>) -> HashSet<String> {
    HashSet::from([key_of(&**c.object())])
}

/// A pod change enqueues its controlling ReplicaSet (before and after the change) and, for an
/// orphan, every ReplicaSet whose selector matches it.
pub fn rs_keys_of_pod(c: &Change<Pod>, rss: &Informer<ReplicaSet>) -> HashSet<String> {
    let mut keys = HashSet::new();
    for p in versions(c) {
        keys.extend(controller_key(&p.metadata, ReplicaSet::INFO.kind));
    }
    if let Change::Upsert { new, .. } = c {
        keys.extend(adopters(&new.metadata, rss, |rs| {
            rs.spec.as_ref().map(|s| &s.selector)
        }));
    }
    keys
}

/// A Deployment change enqueues that Deployment.
pub fn deployment_keys_of_deployment(c: &Change<Deployment>) -> HashSet<String> {
    HashSet::from([key_of(&**c.object())])
}

/// A ReplicaSet change enqueues its controlling Deployment and, for an orphan, every
/// Deployment whose selector matches it.
pub fn deployment_keys_of_rs(c: &Change<ReplicaSet>, ds: &Informer<Deployment>) -> HashSet<String> {
    let mut keys = HashSet::new();
    for rs in versions(c) {
        keys.extend(controller_key(&rs.metadata, Deployment::INFO.kind));
    }
    if let Change::Upsert { new, .. } = c {
        keys.extend(adopters(&new.metadata, ds, |d| {
            d.spec.as_ref().map(|s| &s.selector)
        }));
    }
    keys
}

/// A pod that is gone enqueues the Deployment of its ReplicaSet: `Recreate` waits for the old
/// pods to disappear, which no ReplicaSet status change reports.
pub fn deployment_keys_of_pod(c: &Change<Pod>, rss: &Informer<ReplicaSet>) -> HashSet<String> {
    let Change::Delete(p) = c else {
        return HashSet::new();
    };
    controller_key(&p.metadata, ReplicaSet::INFO.kind)
        .and_then(|k| rss.get(&k))
        .and_then(|rs| controller_key(&rs.metadata, Deployment::INFO.kind))
        .into_iter()
        .collect()
}

/// A Service change enqueues that Service.
pub fn service_keys_of_service(c: &Change<Service>) -> HashSet<String> {
    HashSet::from([key_of(&**c.object())])
}

/// A change of a slice the controller manages enqueues its Service, so an edited or deleted
/// slice is put back. Users' slices enqueue nothing.
pub fn service_keys_of_slice(c: &Change<EndpointSlice>) -> HashSet<String> {
    versions(c)
        .filter(|s| endpointslice::is_managed(s))
        .filter_map(|s| {
            endpointslice::service_name(s).map(|svc| format!("{}/{svc}", s.metadata.namespace()))
        })
        .collect()
}

/// A Pod change enqueues the Services of its namespace whose selector matches its labels
/// before or after the change (so a Pod that stops matching leaves the slice too). Updates
/// that change nothing a slice shows are skipped. The Services of one namespace are a range
/// of the informer's ordered map, so this is a scan of that namespace's Services only.
pub fn service_keys_of_pod(c: &Change<Pod>, services: &Informer<Service>) -> HashSet<String> {
    if let Change::Upsert {
        old: Some(old),
        new,
    } = c
        && !endpointslice::pod_change_matters(old, new)
    {
        return HashSet::new();
    }
    let ns = c.object().metadata.namespace();
    let pods: Vec<&Arc<Pod>> = versions(c).collect();
    services
        .list(Some(ns))
        .iter()
        .filter(|svc| {
            endpointslice::service_selector(svc).is_some_and(|sel| {
                pods.iter()
                    .any(|p| endpointslice::selects(sel, &p.metadata.labels))
            })
        })
        .map(|svc| key_of(&**svc))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_owner_finalizer_and_deletion_changes_wake_the_collector() {
        use ketch_api::core::Pod;
        use ketch_api::meta::{ObjectMeta, OwnerReference};
        let pod = |owners: usize, status: &str| {
            let mut p = Pod {
                metadata: ObjectMeta {
                    name: Some("p".into()),
                    owner_references: (0..owners)
                        .map(|_| OwnerReference {
                            uid: "u".into(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                },
                ..Default::default()
            };
            p.status = Some(ketch_api::core::PodStatus {
                phase: Some(status.into()),
                ..Default::default()
            });
            Arc::new(p)
        };
        let up = |old: Option<Arc<Pod>>, new: Arc<Pod>| Change::Upsert { old, new };
        assert!(gc_keys(&Change::Delete(pod(0, "Running"))).contains(GC_KEY));
        assert!(!gc_keys(&up(Some(pod(1, "Pending")), pod(1, "Running"))).contains(GC_KEY));
        assert!(gc_keys(&up(Some(pod(1, "Running")), pod(0, "Running"))).contains(GC_KEY));
        assert!(gc_keys(&up(None, pod(1, "Pending"))).contains(GC_KEY));
        assert!(!gc_keys(&up(None, pod(0, "Pending"))).contains(GC_KEY));
    }
}
