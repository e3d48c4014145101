//! The scheduler loop, kube-scheduler's shape: an active queue of pending pods, a cache of what
//! each node has requested kept current incrementally, and bindings written concurrently.
//!
//! - **Cache.** [`SchedulerCache`] is fed every pod and node change from the informers and every
//!   placement the loop makes, so no work per batch grows with the number of pods in the
//!   cluster. A placed pod is *assumed* at once: it counts against its node before its binding
//!   is visible, and is not scheduled again.
//! - **Queue.** Pending pods wait in an active queue ordered by creation time (Kubernetes' FIFO
//!   within one priority). Unschedulable pods are *parked* until they change, the cluster's
//!   capacity may have grown (a node changed in a way that matters, or a pod went away,
//!   finished or lost its assumption; parked pods are then retried at most every
//!   [`PARKED_FLUSH_INTERVAL`]), or [`UNSCHEDULABLE_RETRY`] passes. A pod whose write failed
//!   is retried after [`WRITE_RETRY`].
//! - **Pipeline.** Up to [`MAX_IN_FLIGHT`] bindings are written at once, each in its own task;
//!   the API's group commit turns concurrent writes into a few raft entries. The loop places
//!   more pods whenever bindings complete, so a deep queue is placed in large batches while the
//!   previous ones are still being written, and a single new pod is placed at once.
//! - **Events.** `Scheduled` / `FailedScheduling` events go through a bounded queue drained by
//!   a few writers, off the binding path. When the queue is full, events are dropped and
//!   counted, as client-go's event broadcaster does: a binding is never delayed by its event.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use ketch_api::core::{Event, Node, Pod, PodCondition};
use ketch_client::Client;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::{self, JoinSet};
use tokio::time::Instant;

use super::informer::{Change, Informer, key_of};
use crate::scheduler::cache::{SchedulerCache, is_finished};
use crate::scheduler::{NodeInfo, Placement, Profile};

/// The most bindings (or unschedulable markings) written at once; also the largest batch of
/// placements between two looks at the informers' changes.
pub const MAX_IN_FLIGHT: usize = 256;
/// An unschedulable pod is retried at least this often even if nothing seems to change.
pub const UNSCHEDULABLE_RETRY: Duration = Duration::from_secs(60);
/// After a capacity change, parked pods are retried at most this often: a stream of pod
/// deletions must not re-place every unschedulable pod for each one.
pub const PARKED_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// A failed write is retried after this long.
pub const WRITE_RETRY: Duration = Duration::from_millis(200);
/// Events waiting to be written; beyond this they are dropped (client-go's
/// `maxQueuedEvents`).
pub const EVENT_QUEUE: usize = 1000;
/// Concurrent event writes: a small share of the write path next to the bindings.
pub const EVENT_WRITERS: usize = 16;

/// The `source.component` of the scheduler's events.
pub const COMPONENT: &str = "ketch-scheduler";

pub struct Scheduler {
    client: Client,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    profile: Profile,
}

/// What happened to one pod of a batch.
enum Outcome {
    Bound,
    /// Unschedulable; the pod's resourceVersion now.
    Parked(u64),
    /// The write failed; try again later.
    Retry,
}

/// A write in flight.
struct Write {
    key: String,
    uid: String,
    /// The capacity generation the pod was placed against.
    generation: u64,
}

/// The write tasks, and what each one is for.
#[derive(Default)]
struct Writes {
    set: JoinSet<Outcome>,
    started: HashMap<task::Id, Write>,
}

impl Writes {
    /// What a finished task did; a task that panicked counts as a failed write.
    fn finished(
        &mut self,
        res: Result<(task::Id, Outcome), task::JoinError>,
    ) -> Option<(Write, Outcome)> {
        let (id, outcome) = match res {
            Ok(done) => done,
            Err(e) => {
                tracing::warn!(error = %e, "a scheduler write task failed");
                (e.id(), Outcome::Retry)
            }
        };
        Some((self.started.remove(&id)?, outcome))
    }
}

struct Parked {
    /// The pod's resourceVersion when parked (after our condition write, if any).
    rv: u64,
    at: Instant,
}

fn uid(p: &Pod) -> &str {
    p.metadata.uid.as_deref().unwrap_or_default()
}

fn rv(p: &Pod) -> u64 {
    p.metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn node_name(p: &Pod) -> Option<&str> {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// Needs a node: unbound, not terminating, not finished.
fn wants_node(p: &Pod) -> bool {
    node_name(p).is_none() && p.metadata.deletion_timestamp.is_none() && !is_finished(p)
}

fn queue_key(p: &Pod, key: String) -> (String, String) {
    (
        p.metadata.creation_timestamp.clone().unwrap_or_default(),
        key,
    )
}

fn scheduled_condition(p: &Pod) -> Option<&PodCondition> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "PodScheduled")
}

/// Where the loop reads the current version of a pod: the pod informer (a map in tests).
trait PodLookup {
    fn get(&self, key: &str) -> Option<Arc<Pod>>;
}

impl PodLookup for Informer<Pod> {
    fn get(&self, key: &str) -> Option<Arc<Pod>> {
        Informer::get(self, key)
    }
}

/// The loop's state; owned by the one scheduling task.
struct State {
    cache: SchedulerCache,
    /// Bumped whenever capacity may have grown: unschedulable pods get another try.
    generation: u64,
    /// Pods to place, by (creationTimestamp, key). An entry may be stale (the pod was bound,
    /// deleted, parked meanwhile): it is checked against the pod cache when taken.
    active: BTreeSet<(String, String)>,
    /// Pods with a write in flight.
    in_flight: HashSet<String>,
    parked: HashMap<String, Parked>,
    /// Parking times in order, for [`UNSCHEDULABLE_RETRY`]; entries are checked against
    /// `parked` when due.
    parked_order: VecDeque<(Instant, String)>,
    /// When the parked pods are retried next because capacity may have grown.
    flush_at: Option<Instant>,
    last_flush: Option<Instant>,
    backoff: HashMap<String, Instant>,
    backoff_order: VecDeque<(Instant, String)>,
}

impl State {
    fn new() -> Self {
        State {
            cache: SchedulerCache::new(),
            generation: 0,
            active: BTreeSet::new(),
            in_flight: HashSet::new(),
            parked: HashMap::new(),
            parked_order: VecDeque::new(),
            flush_at: None,
            last_flush: None,
            backoff: HashMap::new(),
            backoff_order: VecDeque::new(),
        }
    }

    /// Capacity may have grown: retry the parked pods soon.
    fn capacity_changed(&mut self, now: Instant) {
        self.generation += 1;
        if self.flush_at.is_none() && !self.parked.is_empty() {
            let earliest = self.last_flush.map_or(now, |t| t + PARKED_FLUSH_INTERVAL);
            self.flush_at = Some(earliest.max(now));
        }
    }

    fn on_pod(&mut self, change: Change<Pod>, now: Instant) {
        match change {
            Change::Upsert { new, .. } => {
                let key = key_of(&*new);
                if self.cache.update_pod(&key, &new) {
                    self.capacity_changed(now);
                }
                self.consider(key, &new);
            }
            Change::Delete(old) => {
                let key = key_of(&*old);
                if self.cache.remove_pod(&key) {
                    self.capacity_changed(now);
                }
                self.parked.remove(&key);
                self.backoff.remove(&key);
            }
        }
    }

    /// Queues the pod if it needs placing and nothing else is already waiting for it.
    fn consider(&mut self, key: String, pod: &Pod) {
        if !wants_node(pod) {
            self.parked.remove(&key);
            self.backoff.remove(&key);
            return;
        }
        if self.in_flight.contains(&key)
            || self.cache.is_assumed(&key, uid(pod))
            || self.backoff.contains_key(&key)
        {
            return;
        }
        if let Some(p) = self.parked.get(&key) {
            // Our own condition write is not a change worth another try.
            if rv(pod) <= p.rv {
                return;
            }
            self.parked.remove(&key);
        }
        self.active.insert(queue_key(pod, key));
    }

    fn on_node(&mut self, change: Change<Node>, now: Instant) {
        let changed = match change {
            Change::Upsert { new, .. } => self.cache.set_node(NodeInfo::from_node(&new)),
            Change::Delete(old) => self.cache.remove_node(old.metadata.name()),
        };
        if changed {
            self.capacity_changed(now);
        }
    }

    /// Takes the result of a write.
    fn on_done(&mut self, write: Write, outcome: Outcome, pods: &impl PodLookup, now: Instant) {
        let Write {
            key,
            uid,
            generation,
        } = write;
        self.in_flight.remove(&key);
        match outcome {
            Outcome::Bound => {}
            Outcome::Parked(at_rv) => {
                let Some(pod) = pods.get(&key) else { return };
                if !wants_node(&pod) {
                    return;
                }
                if rv(&pod) > at_rv {
                    // It changed while we wrote.
                    self.active.insert(queue_key(&pod, key));
                    return;
                }
                self.parked
                    .insert(key.clone(), Parked { rv: at_rv, at: now });
                self.parked_order.push_back((now, key));
                if generation != self.generation && self.flush_at.is_none() {
                    // Capacity changed after this pod was placed.
                    self.flush_at = Some(now + PARKED_FLUSH_INTERVAL);
                }
            }
            Outcome::Retry => {
                if self.cache.forget(&key, &uid) {
                    self.capacity_changed(now);
                }
                let at = now + WRITE_RETRY;
                self.backoff.insert(key.clone(), at);
                self.backoff_order.push_back((at, key));
            }
        }
    }

    /// Moves pods whose wait is over back to the active queue.
    fn wake_due(&mut self, pods: &impl PodLookup, now: Instant) {
        let mut due = Vec::new();
        while let Some((at, _)) = self.backoff_order.front()
            && *at <= now
        {
            let (at, key) = self.backoff_order.pop_front().expect("front exists");
            if self.backoff.get(&key) == Some(&at) {
                self.backoff.remove(&key);
                due.push(key);
            }
        }
        if self.flush_at.is_some_and(|t| t <= now) {
            self.flush_at = None;
            self.last_flush = Some(now);
            self.parked_order.clear();
            due.extend(self.parked.drain().map(|(k, _)| k));
        }
        while let Some((at, _)) = self.parked_order.front()
            && *at + UNSCHEDULABLE_RETRY <= now
        {
            let (at, key) = self.parked_order.pop_front().expect("front exists");
            if self.parked.get(&key).is_some_and(|p| p.at == at) {
                self.parked.remove(&key);
                due.push(key);
            }
        }
        for key in due {
            if let Some(pod) = pods.get(&key) {
                self.consider(key, &pod);
            }
        }
    }

    fn next_deadline(&self, now: Instant) -> Instant {
        let backoff = self.backoff_order.front().map(|(t, _)| *t);
        let parked = self
            .parked_order
            .front()
            .map(|(t, _)| *t + UNSCHEDULABLE_RETRY);
        [backoff, parked, self.flush_at]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + UNSCHEDULABLE_RETRY)
            .max(now + Duration::from_millis(1))
    }

    /// Places one pod taken from the queue: assumes it on its node at once and marks its
    /// write as in flight.
    fn place(&mut self, key: &str, pod: &Pod, profile: Profile) -> Placement {
        let placement = self.cache.place(key, pod, profile);
        self.in_flight.insert(key.to_string());
        placement
    }

    /// Takes up to `max` pods from the active queue that still need placing.
    fn take(&mut self, max: usize, pods: &impl PodLookup) -> Vec<(String, Arc<Pod>)> {
        let mut out = Vec::new();
        while out.len() < max
            && let Some((_, key)) = self.active.pop_first()
        {
            let Some(pod) = pods.get(&key) else { continue };
            if !wants_node(&pod)
                || self.in_flight.contains(&key)
                || self.cache.is_assumed(&key, uid(&pod))
                || self.parked.contains_key(&key)
                || self.backoff.contains_key(&key)
            {
                continue;
            }
            out.push((key, pod));
        }
        out
    }
}

impl Scheduler {
    pub fn new(
        client: Client,
        pods: Informer<Pod>,
        nodes: Informer<Node>,
        profile: Profile,
    ) -> Self {
        Scheduler {
            client,
            pods,
            nodes,
            profile,
        }
    }

    /// Runs forever: wakes on pod and node changes, finished writes and retry deadlines.
    pub async fn run(self) {
        let (events, event_rx) = Recorder::new();
        let writer = write_events(self.client.clone(), event_rx);
        tokio::join!(self.schedule(events), writer);
    }

    async fn schedule(self, events: Recorder) {
        // Subscribe before listing: a change made in between is seen twice, and applying a
        // change twice is harmless.
        let mut pod_rx = self.pods.subscribe();
        let mut node_rx = self.nodes.subscribe();
        self.pods.synced().await;
        self.nodes.synced().await;
        let mut state = State::new();
        let now = Instant::now();
        for n in self.nodes.list(None) {
            state.cache.set_node(NodeInfo::from_node(&n));
        }
        for p in self.pods.list(None) {
            state.on_pod(Change::Upsert { old: None, new: p }, now);
        }
        // The writes in flight: each in its own task, aborted with the loop when the scheduler
        // stops.
        let mut writes = Writes::default();
        loop {
            let now = Instant::now();
            while let Ok(c) = node_rx.try_recv() {
                state.on_node(c, now);
            }
            while let Ok(c) = pod_rx.try_recv() {
                state.on_pod(c, now);
            }
            while let Some(res) = writes.set.try_join_next_with_id() {
                if let Some((w, outcome)) = writes.finished(res) {
                    state.on_done(w, outcome, &self.pods, now);
                }
            }
            state.wake_due(&self.pods, now);
            let room = MAX_IN_FLIGHT.saturating_sub(state.in_flight.len());
            if room > 0 && !state.active.is_empty() {
                let batch = state.take(room, &self.pods);
                if !batch.is_empty() {
                    self.place_batch(&mut state, batch, &mut writes, &events);
                    // Let the writes start and the informers catch up before the next batch.
                    tokio::task::yield_now().await;
                    continue;
                }
            }
            let deadline = state.next_deadline(now);
            tokio::select! {
                Some(c) = pod_rx.recv() => state.on_pod(c, Instant::now()),
                Some(c) = node_rx.recv() => state.on_node(c, Instant::now()),
                Some(res) = writes.set.join_next_with_id() => {
                    if let Some((w, outcome)) = writes.finished(res) {
                        state.on_done(w, outcome, &self.pods, Instant::now());
                    }
                }
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Places each pod against the cache (assuming it at once) and starts its write.
    fn place_batch(
        &self,
        state: &mut State,
        batch: Vec<(String, Arc<Pod>)>,
        writes: &mut Writes,
        events: &Recorder,
    ) {
        let started = std::time::Instant::now();
        let n = batch.len();
        for (key, pod) in batch {
            let placement = state.place(&key, &pod, self.profile);
            let (client, events) = (self.client.clone(), events.clone());
            let write = Write {
                key,
                uid: uid(&pod).to_string(),
                generation: state.generation,
            };
            let task = writes.set.spawn(async move {
                match placement {
                    Placement::Bind(node) => bind(&client, &pod, &node, &events).await,
                    Placement::Unschedulable { message } => {
                        mark_unschedulable(&client, &pod, &message, &events).await
                    }
                }
            });
            writes.started.insert(task.id(), write);
        }
        tracing::trace!(
            pods = n,
            micros = started.elapsed().as_micros() as u64,
            "placed a batch"
        );
    }
}

/// Queues events for [`write_events`]; cheap to clone, never waits.
#[derive(Clone)]
struct Recorder {
    tx: mpsc::Sender<Event>,
    dropped: Arc<AtomicU64>,
}

impl Recorder {
    fn new() -> (Recorder, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let rec = Recorder {
            tx,
            dropped: Arc::default(),
        };
        (rec, rx)
    }

    fn record(&self, pod: &Pod, type_: &str, reason: &str, message: &str) {
        // Reserve first: a full queue costs no Event built for nothing.
        if let Ok(slot) = self.tx.try_reserve() {
            let action = if type_ == "Normal" {
                "Binding"
            } else {
                "Scheduling"
            };
            slot.send(super::pod_event(
                pod, COMPONENT, action, type_, reason, message,
            ));
        } else {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n,
                    "scheduler events are produced faster than they are written; dropping some"
                );
            }
        }
    }
}

/// Writes queued events, [`EVENT_WRITERS`] at a time, until every [`Recorder`] is gone.
async fn write_events(client: Client, rx: mpsc::Receiver<Event>) {
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        let ev = rx.recv().await?;
        Some((ev, rx))
    });
    events
        .for_each_concurrent(EVENT_WRITERS, |ev| {
            let client = &client;
            async move {
                let ns = ev.metadata.namespace.clone();
                if let Err(e) = client.api::<Event>(ns.as_deref()).create(&ev).await {
                    tracing::debug!(
                        object = ev.involved_object.name.as_deref().unwrap_or_default(),
                        reason = ev.reason.as_deref().unwrap_or_default(),
                        error = %e,
                        "recording an event"
                    );
                }
            }
        })
        .await;
}

/// Binds `pod` to `node`: a compare-and-set on the pod's resourceVersion, so a pod that
/// changed since the snapshot (or was bound by someone else) is not overwritten.
async fn bind(client: &Client, pod: &Pod, node: &str, events: &Recorder) -> Outcome {
    let ns = pod.metadata.namespace();
    let name = pod.metadata.name();
    // The binding subresource sets nodeName and PodScheduled=True in one write, refused if
    // the Pod was bound meanwhile (or re-created: the uid must match).
    if let Err(e) = client
        .bind_pod(ns, name, pod.metadata.uid.as_deref(), node)
        .await
    {
        if matches!(e.code(), Some(404 | 409)) {
            tracing::debug!(pod = %key_of(pod), error = %e, "binding lost a race; retrying");
        } else {
            tracing::warn!(pod = %key_of(pod), node, error = %e, "binding failed");
        }
        return Outcome::Retry;
    }
    let message = format!("Successfully assigned {ns}/{name} to {node}");
    events.record(pod, "Normal", "Scheduled", &message);
    Outcome::Bound
}

/// Sets `PodScheduled=False, reason Unschedulable` with `message` (only when that changes
/// anything, so retries do not write in a loop) and records a `FailedScheduling` event.
async fn mark_unschedulable(
    client: &Client,
    pod: &Pod,
    message: &str,
    events: &Recorder,
) -> Outcome {
    let current = scheduled_condition(pod);
    if current.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
            && c.message.as_deref() == Some(message)
    }) {
        return Outcome::Parked(rv(pod));
    }
    let conditions = with_condition(pod, "False", Some("Unschedulable"), Some(message));
    let patch = json!({
        "metadata": {"uid": pod.metadata.uid, "resourceVersion": pod.metadata.resource_version},
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
            events.record(pod, "Warning", "FailedScheduling", message);
            let rv = obj
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            Outcome::Parked(rv)
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
        _ => Some(ketch_api::time::now()),
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ketch_api::core::{
        Container, NodeCondition, NodeRuntimeHandler, NodeSpec, NodeStatus, PodSpec,
        ResourceRequirements,
    };
    use ketch_api::meta::ObjectMeta;
    use ketch_api::quantity::Quantity;

    use super::*;

    #[derive(Default)]
    struct Pods(BTreeMap<String, Arc<Pod>>);

    impl PodLookup for Pods {
        fn get(&self, key: &str) -> Option<Arc<Pod>> {
            self.0.get(key).cloned()
        }
    }

    impl Pods {
        /// Stores `pod` as the informer would and tells the loop.
        fn upsert(&mut self, state: &mut State, pod: Pod, now: Instant) {
            let new = Arc::new(pod);
            let old = self.0.insert(key_of(&*new), new.clone());
            state.on_pod(Change::Upsert { old, new }, now);
        }
    }

    fn node(name: &str, cpu: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                allocatable: [
                    ("cpu".to_string(), Quantity::new(cpu)),
                    ("memory".to_string(), Quantity::new("8Gi")),
                ]
                .into(),
                conditions: vec![NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }],
                runtime_handlers: vec![NodeRuntimeHandler {
                    name: "container".into(),
                    features: None,
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(name: &str, cpu: &str, rv: u64) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                resource_version: Some(rv.to_string()),
                creation_timestamp: Some(format!("2026-01-01T00:00:{rv:02}Z")),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some("nginx".into()),
                    resources: Some(ResourceRequirements {
                        requests: [("cpu".to_string(), Quantity::new(cpu))].into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn bound(mut p: Pod, node: &str, rv: u64) -> Pod {
        p.spec.as_mut().unwrap().node_name = Some(node.into());
        p.metadata.resource_version = Some(rv.to_string());
        p
    }

    fn add_node(state: &mut State, n: Node, now: Instant) {
        state.on_node(
            Change::Upsert {
                old: None,
                new: Arc::new(n),
            },
            now,
        );
    }

    /// Takes everything queued and places it, as the loop does; returns (key, placement).
    fn schedule(state: &mut State, pods: &Pods) -> Vec<(String, Placement)> {
        state
            .take(usize::MAX, pods)
            .into_iter()
            .map(|(key, pod)| {
                let p = state.place(&key, &pod, Profile::default());
                (key, p)
            })
            .collect()
    }

    fn done(state: &mut State, pods: &Pods, key: &str, outcome: Outcome, now: Instant) {
        let w = Write {
            key: key.into(),
            uid: format!("uid-{}", key.trim_start_matches("default/")),
            generation: state.generation,
        };
        state.on_done(w, outcome, pods, now);
    }

    #[test]
    fn pods_are_placed_oldest_first_and_not_again_while_their_binding_is_unseen() {
        let now = Instant::now();
        let (mut state, mut pods) = (State::new(), Pods::default());
        add_node(&mut state, node("n1", "4"), now);
        pods.upsert(&mut state, pod("b", "1", 2), now);
        pods.upsert(&mut state, pod("a", "1", 1), now);
        let placed = schedule(&mut state, &pods);
        assert_eq!(
            placed,
            [
                ("default/a".to_string(), Placement::Bind("n1".into())),
                ("default/b".to_string(), Placement::Bind("n1".into())),
            ]
        );
        // Both count against the node before any binding is visible.
        assert_eq!(state.cache.usage("n1").cpu_millis, 2000);
        // An update of the still-unbound pod while its write is in flight, and after it
        // succeeded but before the watch shows it, does not queue it again.
        pods.upsert(&mut state, pod("a", "1", 3), now);
        assert!(schedule(&mut state, &pods).is_empty());
        done(&mut state, &pods, "default/a", Outcome::Bound, now);
        pods.upsert(&mut state, pod("a", "1", 4), now);
        assert!(schedule(&mut state, &pods).is_empty());
        // The binding arrives: still counted once.
        pods.upsert(&mut state, bound(pod("a", "1", 1), "n1", 5), now);
        assert_eq!(state.cache.usage("n1").cpu_millis, 2000);
        assert!(schedule(&mut state, &pods).is_empty());
    }

    #[test]
    fn a_failed_binding_frees_the_node_and_is_retried_after_the_write_delay() {
        let now = Instant::now();
        let (mut state, mut pods) = (State::new(), Pods::default());
        add_node(&mut state, node("n1", "4"), now);
        pods.upsert(&mut state, pod("a", "1", 1), now);
        assert_eq!(schedule(&mut state, &pods).len(), 1);
        done(&mut state, &pods, "default/a", Outcome::Retry, now);
        assert_eq!(state.cache.usage("n1").cpu_millis, 0);
        state.wake_due(&pods, now);
        assert!(schedule(&mut state, &pods).is_empty(), "too early");
        assert!(state.next_deadline(now) <= now + WRITE_RETRY);
        state.wake_due(&pods, now + WRITE_RETRY);
        assert_eq!(schedule(&mut state, &pods).len(), 1);
        assert_eq!(state.cache.usage("n1").cpu_millis, 1000);
    }

    #[test]
    fn an_unschedulable_pod_waits_for_its_own_change_or_for_capacity() {
        let now = Instant::now();
        let (mut state, mut pods) = (State::new(), Pods::default());
        add_node(&mut state, node("n1", "1"), now);
        pods.upsert(&mut state, pod("big", "2", 1), now);
        let placed = schedule(&mut state, &pods);
        assert!(matches!(placed[0].1, Placement::Unschedulable { .. }));
        // Our condition write produced rv 2; its watch event is not a reason to retry.
        done(&mut state, &pods, "default/big", Outcome::Parked(2), now);
        pods.upsert(&mut state, pod("big", "2", 2), now);
        state.wake_due(&pods, now);
        assert!(schedule(&mut state, &pods).is_empty());
        // A node change: retried at once, but the new node is too small as well.
        add_node(&mut state, node("n2", "1"), now);
        state.wake_due(&pods, now);
        let placed = schedule(&mut state, &pods);
        assert!(matches!(placed[0].1, Placement::Unschedulable { .. }));
        done(&mut state, &pods, "default/big", Outcome::Parked(3), now);
        pods.upsert(&mut state, pod("big", "2", 3), now);
        // Another change soon after: retried once the flush interval has passed.
        add_node(&mut state, node("n3", "4"), now);
        state.wake_due(&pods, now);
        assert!(
            schedule(&mut state, &pods).is_empty(),
            "at most once per interval"
        );
        let later = now + PARKED_FLUSH_INTERVAL;
        assert_eq!(state.next_deadline(now), later);
        state.wake_due(&pods, later);
        assert_eq!(
            schedule(&mut state, &pods),
            [("default/big".to_string(), Placement::Bind("n3".into()))]
        );
        // A second unschedulable pod retries at once when it changes itself.
        pods.upsert(&mut state, pod("huge", "64", 4), later);
        assert_eq!(schedule(&mut state, &pods).len(), 1);
        done(&mut state, &pods, "default/huge", Outcome::Parked(5), later);
        pods.upsert(&mut state, pod("huge", "64", 5), later);
        assert!(schedule(&mut state, &pods).is_empty());
        pods.upsert(&mut state, pod("huge", "1", 6), later);
        assert_eq!(
            schedule(&mut state, &pods),
            [("default/huge".to_string(), Placement::Bind("n1".into()))]
        );
    }

    #[test]
    fn a_parked_pod_is_retried_after_the_unschedulable_retry_period() {
        let now = Instant::now();
        let (mut state, mut pods) = (State::new(), Pods::default());
        pods.upsert(&mut state, pod("a", "1", 1), now);
        assert_eq!(schedule(&mut state, &pods).len(), 1);
        done(&mut state, &pods, "default/a", Outcome::Parked(1), now);
        assert_eq!(state.next_deadline(now), now + UNSCHEDULABLE_RETRY);
        state.wake_due(&pods, now + UNSCHEDULABLE_RETRY);
        assert_eq!(schedule(&mut state, &pods).len(), 1);
    }

    #[test]
    fn deleted_and_bound_pods_leave_the_queue() {
        let now = Instant::now();
        let (mut state, mut pods) = (State::new(), Pods::default());
        add_node(&mut state, node("n1", "4"), now);
        pods.upsert(&mut state, pod("a", "1", 1), now);
        pods.upsert(&mut state, pod("b", "1", 2), now);
        // Someone else binds a; b is deleted.
        pods.upsert(&mut state, bound(pod("a", "1", 1), "n1", 3), now);
        let b = pods.0.remove("default/b").unwrap();
        state.on_pod(Change::Delete(b), now);
        assert!(schedule(&mut state, &pods).is_empty());
        assert_eq!(state.cache.usage("n1").cpu_millis, 1000);
    }
}
