//! The scheduler loop: take every pending pod at once (up to [`MAX_BATCH`]), place them with
//! the pure [`schedule_batch`] against a snapshot built from the caches, and write the
//! bindings concurrently so the API's group commit turns a batch into a few raft entries.
//!
//! Pods placed but whose binding the cache has not shown yet are kept as *assumed*: they count
//! against their node in the next snapshot and are not scheduled again. Unschedulable pods are
//! *parked* until they change, the cluster's capacity changes (a node changes in a way that
//! matters, a pod goes away or finishes), or [`UNSCHEDULABLE_RETRY`] passes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use ketch_api::core::{Event, EventSource, Node, ObjectReference, Pod, PodCondition};
use ketch_api::meta::ObjectMeta;
use ketch_client::Client;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::informer::{Change, Informer, key_of};
use super::now;
use crate::scheduler::{ClusterSnapshot, NodeInfo, Placement, ScoringStrategy, schedule_batch};

/// The most pods placed against one snapshot.
pub const MAX_BATCH: usize = 1024;
/// Concurrent binding writes; the API batches concurrent writes into one raft entry.
pub const BIND_CONCURRENCY: usize = 64;
/// An unschedulable pod is retried at least this often even if nothing seems to change.
pub const UNSCHEDULABLE_RETRY: Duration = Duration::from_secs(60);
/// A failed write is retried after this long (or on the pod's next change).
const WRITE_RETRY: Duration = Duration::from_millis(200);

/// The `source.component` of the scheduler's events.
pub const COMPONENT: &str = "ketch-scheduler";

struct Parked {
    /// The pod's resourceVersion when parked (after our condition write, if any).
    rv: String,
    /// The capacity generation when parked.
    generation: u64,
    at: Instant,
}

pub struct Scheduler {
    client: Client,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    strategy: ScoringStrategy,
    /// Bumped whenever capacity may have grown: unschedulable pods get another try.
    generation: Arc<AtomicU64>,
    wake: Arc<Notify>,
    /// Placed pods whose binding the cache does not show yet: key → (uid, node).
    assumed: HashMap<String, (String, String)>,
    parked: HashMap<String, Parked>,
    retry_at: HashMap<String, Instant>,
}

/// What happened to one pod of a batch.
enum Outcome {
    Bound,
    /// Unschedulable; the pod's resourceVersion now.
    Parked(String),
    /// The write failed; try again later.
    Retry,
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

fn node_name(p: &Pod) -> Option<&str> {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn finished(p: &Pod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn scheduled_condition(p: &Pod) -> Option<&PodCondition> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "PodScheduled")
}

impl Scheduler {
    pub fn new(
        client: Client,
        pods: Informer<Pod>,
        nodes: Informer<Node>,
        strategy: ScoringStrategy,
    ) -> Self {
        Scheduler {
            client,
            pods,
            nodes,
            strategy,
            generation: Arc::default(),
            wake: Arc::default(),
            assumed: HashMap::new(),
            parked: HashMap::new(),
            retry_at: HashMap::new(),
        }
    }

    /// Runs forever: wakes on pod and node changes and on retry deadlines.
    pub async fn run(mut self) {
        let pods = watch_pods(
            self.pods.subscribe(),
            self.generation.clone(),
            self.wake.clone(),
        );
        let nodes = watch_nodes(
            self.nodes.subscribe(),
            self.generation.clone(),
            self.wake.clone(),
        );
        let schedule = async move {
            self.pods.synced().await;
            self.nodes.synced().await;
            loop {
                while self.schedule_once().await > 0 {}
                let deadline = self.next_deadline();
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep_until(deadline) => {}
                }
            }
        };
        tokio::join!(pods, nodes, schedule);
    }

    fn next_deadline(&self) -> Instant {
        let now = Instant::now();
        let parked = self.parked.values().map(|p| p.at + UNSCHEDULABLE_RETRY);
        self.retry_at
            .values()
            .copied()
            .chain(parked)
            .min()
            .unwrap_or(now + UNSCHEDULABLE_RETRY)
            .max(now + Duration::from_millis(10))
    }

    fn is_pending(&self, p: &Pod, key: &str, generation: u64, now: Instant) -> bool {
        if node_name(p).is_some() || p.metadata.deletion_timestamp.is_some() || finished(p) {
            return false;
        }
        if self.assumed.contains_key(key) || self.retry_at.get(key).is_some_and(|t| *t > now) {
            return false;
        }
        !self.parked.get(key).is_some_and(|park| {
            Some(&park.rv) == p.metadata.resource_version.as_ref()
                && park.generation == generation
                && park.at + UNSCHEDULABLE_RETRY > now
        })
    }

    /// Schedules one batch; returns how many pods it tried.
    pub async fn schedule_once(&mut self) -> usize {
        let generation = self.generation.load(Ordering::SeqCst);
        let now = Instant::now();
        let pods = self.pods.list(None);
        self.retry_at.retain(|_, t| *t > now);
        // An assumption ends when the cache shows the pod bound, gone or replaced.
        let cache = &self.pods;
        self.assumed.retain(|k, (u, _)| {
            cache
                .get(k)
                .is_some_and(|p| uid(&p) == *u && node_name(&p).is_none())
        });
        self.parked.retain(|k, _| cache.get(k).is_some());

        let mut pending: Vec<Pod> = pods
            .iter()
            .filter(|p| self.is_pending(p, &key_of(&***p), generation, now))
            .map(|p| (**p).clone())
            .collect();
        if pending.is_empty() {
            return 0;
        }
        // Oldest first, as Kubernetes' FIFO within one priority.
        pending.sort_by(|a, b| {
            (a.metadata.creation_timestamp.as_deref(), key_of(a))
                .cmp(&(b.metadata.creation_timestamp.as_deref(), key_of(b)))
        });
        pending.truncate(MAX_BATCH);

        let nodes: Vec<NodeInfo> = self
            .nodes
            .list(None)
            .iter()
            .map(|n| NodeInfo::from_node(n))
            .collect();
        let mut snapshot = ClusterSnapshot::from_nodes(nodes);
        for p in &pods {
            if let Some(node) = node_name(p)
                && !finished(p)
            {
                snapshot.assume(p, node);
            }
        }
        for (k, (_, node)) in &self.assumed {
            if let Some(p) = self.pods.get(k) {
                snapshot.assume(&p, node);
            }
        }

        let placements = schedule_batch(&pending, &mut snapshot, self.strategy);
        let mut work = Vec::with_capacity(pending.len());
        for (pod, (key, placement)) in pending.into_iter().zip(placements) {
            if let Placement::Bind(node) = &placement {
                self.assumed.insert(key.clone(), (uid(&pod), node.clone()));
            }
            work.push((key, pod, placement));
        }
        let tried = work.len();
        let client = &self.client;
        let results: Vec<(String, Outcome)> = futures_util::stream::iter(work)
            .map(|(key, pod, placement)| async move {
                let outcome = match placement {
                    Placement::Bind(node) => bind(client, &pod, &node).await,
                    Placement::Unschedulable { message } => {
                        mark_unschedulable(client, &pod, &message).await
                    }
                };
                (key, outcome)
            })
            .buffer_unordered(BIND_CONCURRENCY)
            .collect()
            .await;
        let now = Instant::now();
        for (key, outcome) in results {
            match outcome {
                Outcome::Bound => {}
                Outcome::Parked(rv) => {
                    self.parked.insert(
                        key,
                        Parked {
                            rv,
                            generation,
                            at: now,
                        },
                    );
                }
                Outcome::Retry => {
                    self.assumed.remove(&key);
                    self.retry_at.insert(key, now + WRITE_RETRY);
                }
            }
        }
        tried
    }
}

/// Counts pod changes that may free capacity and wakes the loop on every pod change.
async fn watch_pods(
    mut rx: mpsc::UnboundedReceiver<Change<Pod>>,
    generation: Arc<AtomicU64>,
    wake: Arc<Notify>,
) {
    while let Some(c) = rx.recv().await {
        let frees = match &c {
            Change::Delete(p) => node_name(p).is_some(),
            Change::Upsert {
                old: Some(old),
                new,
            } => !finished(old) && finished(new),
            Change::Upsert { .. } => false,
        };
        if frees {
            generation.fetch_add(1, Ordering::SeqCst);
        }
        wake.notify_one();
    }
}

/// Counts node changes that matter to placement (not heartbeats) and wakes the loop.
async fn watch_nodes(
    mut rx: mpsc::UnboundedReceiver<Change<Node>>,
    generation: Arc<AtomicU64>,
    wake: Arc<Notify>,
) {
    while let Some(c) = rx.recv().await {
        let relevant = match &c {
            Change::Upsert {
                old: Some(old),
                new,
            } => NodeInfo::from_node(old) != NodeInfo::from_node(new),
            _ => true,
        };
        if relevant {
            generation.fetch_add(1, Ordering::SeqCst);
            wake.notify_one();
        }
    }
}

/// Binds `pod` to `node`: a compare-and-set on the pod's resourceVersion, so a pod that
/// changed since the snapshot (or was bound by someone else) is not overwritten.
async fn bind(client: &Client, pod: &Pod, node: &str) -> Outcome {
    let info = &ketch_api::resource::PODS;
    let ns = pod.metadata.namespace();
    let name = pod.metadata.name();
    let patch = json!({
        "metadata": {"uid": pod.metadata.uid, "resourceVersion": pod.metadata.resource_version},
        "spec": {"nodeName": node},
    });
    match client
        .merge_patch(info, Some(ns), name, &patch, false)
        .await
    {
        Ok(_) => {}
        Err(e) => {
            if matches!(e.code(), Some(404 | 409)) {
                tracing::debug!(pod = %key_of(pod), error = %e, "binding lost a race; retrying");
            } else {
                tracing::warn!(pod = %key_of(pod), node, error = %e, "binding failed");
            }
            return Outcome::Retry;
        }
    }
    // A pod that was unschedulable before says so no longer.
    if scheduled_condition(pod).is_some_and(|c| c.status != "True") {
        let conditions = with_condition(pod, "True", None, None);
        let patch =
            json!({"metadata": {"uid": pod.metadata.uid}, "status": {"conditions": conditions}});
        if let Err(e) = client.merge_patch(info, Some(ns), name, &patch, true).await {
            tracing::debug!(pod = %key_of(pod), error = %e, "clearing PodScheduled=False");
        }
    }
    let message = format!("Successfully assigned {ns}/{name} to {node}");
    record_event(client, pod, "Normal", "Scheduled", &message).await;
    Outcome::Bound
}

/// Sets `PodScheduled=False, reason Unschedulable` with `message` (only when that changes
/// anything, so retries do not write in a loop) and records a `FailedScheduling` event.
async fn mark_unschedulable(client: &Client, pod: &Pod, message: &str) -> Outcome {
    let rv = pod.metadata.resource_version.clone().unwrap_or_default();
    let current = scheduled_condition(pod);
    if current.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
            && c.message.as_deref() == Some(message)
    }) {
        return Outcome::Parked(rv);
    }
    let conditions = with_condition(pod, "False", Some("Unschedulable"), Some(message));
    let patch = json!({
        "metadata": {"uid": pod.metadata.uid, "resourceVersion": rv},
        "status": {"conditions": conditions},
    });
    let written = client
        .merge_patch(
            &ketch_api::resource::PODS,
            Some(pod.metadata.namespace()),
            pod.metadata.name(),
            &patch,
            true,
        )
        .await;
    match written {
        Ok(obj) => {
            record_event(client, pod, "Warning", "FailedScheduling", message).await;
            let rv = obj
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            Outcome::Parked(rv.to_string())
        }
        Err(e) => {
            tracing::debug!(pod = %key_of(pod), error = %e, "setting PodScheduled=False");
            Outcome::Retry
        }
    }
}

/// The pod's conditions with `PodScheduled` set; the transition time moves only when the
/// status does.
fn with_condition(
    pod: &Pod,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
) -> Vec<PodCondition> {
    let mut conditions = pod
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let old = conditions.iter().position(|c| c.type_ == "PodScheduled");
    let transition = match old.map(|i| &conditions[i]) {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Some(now()),
    };
    let cond = PodCondition {
        type_: "PodScheduled".into(),
        status: status.into(),
        reason: reason.map(str::to_string),
        message: message.map(str::to_string),
        last_transition_time: transition,
        last_probe_time: None,
    };
    match old {
        Some(i) => conditions[i] = cond,
        None => conditions.push(cond),
    }
    conditions
}

/// A v1 Event about `pod`. Events are written blind (create only, no read-modify-write of a
/// counter): cheap, at the cost of not aggregating repeats into one object.
pub fn pod_event(pod: &Pod, type_: &str, reason: &str, message: &str) -> Event {
    let ts = now();
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
            component: Some(COMPONENT.into()),
            host: None,
        }),
        reporting_component: Some(COMPONENT.into()),
        reporting_instance: None,
        action: Some(
            if type_ == "Normal" {
                "Binding"
            } else {
                "Scheduling"
            }
            .into(),
        ),
    }
}

async fn record_event(client: &Client, pod: &Pod, type_: &str, reason: &str, message: &str) {
    let ev = pod_event(pod, type_, reason, message);
    if let Err(e) = client
        .api::<Event>(pod.metadata.namespace.as_deref())
        .create(&ev)
        .await
    {
        tracing::debug!(pod = %key_of(pod), reason, error = %e, "recording an event");
    }
}
