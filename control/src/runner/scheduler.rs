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
use ketch_api::core::{Event, EventSource, Node, ObjectReference, Pod, PodCondition};
use ketch_api::meta::ObjectMeta;
use ketch_client::Client;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::informer::{Change, Informer, key_of};
use super::now;
use crate::scheduler::cache::{SchedulerCache, is_finished};
use crate::scheduler::{NodeInfo, Placement, ScoringStrategy, place};

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

static STAT_DONE: AtomicU64 = AtomicU64::new(0); // TEMP
static STAT_LAT_US: AtomicU64 = AtomicU64::new(0); // TEMP
static STAT_PLACE_US: AtomicU64 = AtomicU64::new(0); // TEMP
fn env_or(name: &str, d: usize) -> usize { std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(d) } // TEMP

/// The `source.component` of the scheduler's events.
pub const COMPONENT: &str = "ketch-scheduler";

pub struct Scheduler {
    client: Client,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    strategy: ScoringStrategy,
}

/// What happened to one pod of a batch.
enum Outcome {
    Bound,
    /// Unschedulable; the pod's resourceVersion now.
    Parked(u64),
    /// The write failed; try again later.
    Retry,
}

/// A finished write, reported back to the loop.
struct Done {
    key: String,
    uid: String,
    /// The capacity generation the pod was placed against.
    generation: u64,
    outcome: Outcome,
    started: Instant, // TEMP
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

    fn on_done(&mut self, done: Done, pods: &Informer<Pod>, now: Instant) {
        let Done {
            key,
            uid,
            generation,
            outcome,
            started: done_started,
        } = done;
        self.in_flight.remove(&key);
        STAT_DONE.fetch_add(1, Ordering::Relaxed); // TEMP
        STAT_LAT_US.fetch_add(done_started.elapsed().as_micros() as u64, Ordering::Relaxed); // TEMP
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
    fn wake_due(&mut self, pods: &Informer<Pod>, now: Instant) {
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

    /// Takes up to `max` pods from the active queue that still need placing.
    fn take(&mut self, max: usize, pods: &Informer<Pod>) -> Vec<(String, Arc<Pod>)> {
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
        strategy: ScoringStrategy,
    ) -> Self {
        Scheduler {
            client,
            pods,
            nodes,
            strategy,
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
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let mut last_stat = Instant::now(); // TEMP
        loop {
            let now = Instant::now();
            if now.duration_since(last_stat) >= Duration::from_secs(2) { // TEMP
                last_stat = now;
                let d = STAT_DONE.swap(0, Ordering::Relaxed);
                let l = STAT_LAT_US.swap(0, Ordering::Relaxed);
                let p = STAT_PLACE_US.swap(0, Ordering::Relaxed);
                tracing::warn!(active = state.active.len(), in_flight = state.in_flight.len(), done_per_s = d / 2, mean_write_ms = l / d.max(1) / 1000, place_ms_per_s = p / 2000, pods = state.cache.pod_count(), events_dropped = events.dropped.load(Ordering::Relaxed), "STAT");
            }
            while let Ok(c) = node_rx.try_recv() {
                state.on_node(c, now);
            }
            while let Ok(c) = pod_rx.try_recv() {
                state.on_pod(c, now);
            }
            while let Ok(d) = done_rx.try_recv() {
                state.on_done(d, &self.pods, now);
            }
            state.wake_due(&self.pods, now);
            let room = env_or("KETCH_SCHED_INFLIGHT", MAX_IN_FLIGHT).saturating_sub(state.in_flight.len()); // TEMP
            if room > 0 && !state.active.is_empty() {
                let batch = state.take(room, &self.pods);
                if !batch.is_empty() {
                    self.place_batch(&mut state, batch, &done_tx, &events);
                    // Let the writes start and the informers catch up before the next batch.
                    tokio::task::yield_now().await;
                    continue;
                }
            }
            let deadline = state.next_deadline(now);
            tokio::select! {
                Some(c) = pod_rx.recv() => state.on_pod(c, Instant::now()),
                Some(c) = node_rx.recv() => state.on_node(c, Instant::now()),
                Some(d) = done_rx.recv() => state.on_done(d, &self.pods, Instant::now()),
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Places each pod against the cache (assuming it at once) and starts its write.
    fn place_batch(
        &self,
        state: &mut State,
        batch: Vec<(String, Arc<Pod>)>,
        done: &mpsc::UnboundedSender<Done>,
        events: &Recorder,
    ) {
        let started = std::time::Instant::now();
        let n = batch.len();
        for (key, pod) in batch {
            let placement = place(&pod, state.cache.snapshot(), self.strategy);
            if let Placement::Bind(node) = &placement {
                state.cache.assume(&key, &pod, node);
            }
            state.in_flight.insert(key.clone());
            let (client, done, events) = (self.client.clone(), done.clone(), events.clone());
            let generation = state.generation;
            let started = Instant::now(); // TEMP
            tokio::spawn(async move {
                let outcome = match placement {
                    Placement::Bind(node) => bind(&client, &pod, &node, &events).await,
                    Placement::Unschedulable { message } => {
                        mark_unschedulable(&client, &pod, &message, &events).await
                    }
                };
                let uid = uid(&pod).to_string();
                // The loop is gone only when the scheduler stops.
                let _ = done.send(Done {
                    key,
                    uid,
                    generation,
                    outcome,
                    started,
                });
            });
        }
        STAT_PLACE_US.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed); // TEMP
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
        if self
            .tx
            .try_send(pod_event(pod, type_, reason, message))
            .is_err()
        {
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
    let events =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|ev| (ev, rx)) },
        );
    events
        .for_each_concurrent(env_or("KETCH_SCHED_EVENT_WRITERS", EVENT_WRITERS), |ev| { // TEMP
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
