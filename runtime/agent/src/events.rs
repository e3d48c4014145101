//! Events about Pods, aggregated so a failing hot endpoint cannot flood the store.
//!
//! Identical events (same pod, type, reason and message) share one Event object whose
//! `count` and `lastTimestamp` are bumped, and at most one write per (pod, reason) happens
//! per [`WINDOW`]: the first occurrence is written at once, the rest are folded into the
//! next write. [`Aggregator`] decides (pure, unit-tested); [`Recorder`] does the I/O.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use ketch_api::core::{Event, EventSource, ObjectReference, Pod};
use ketch_api::meta::ObjectMeta;
use ketch_client::Client;
use tokio::sync::Notify;

/// At most one write per (pod, reason) per window.
pub const WINDOW: Duration = Duration::from_secs(5);
/// Aggregation entries kept; the least recently seen are forgotten beyond it.
const MAX_ENTRIES: usize = 4096;
/// Longest event message stored.
const MAX_MESSAGE: usize = 1024;

/// Normal or Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// The Pod an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl PodRef {
    pub fn of(pod: &Pod) -> Self {
        Self {
            namespace: pod.metadata.namespace().to_string(),
            name: pod.metadata.name().to_string(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
        }
    }
}

/// What makes two events identical.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventKey {
    pub pod: PodRef,
    pub type_: EventType,
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Clone)]
struct Entry {
    /// The Event object's name, fixed at the first occurrence.
    name: String,
    count: i32,
    written_count: i32,
    first: String,
    last: String,
    last_seen: Instant,
}

/// One write the recorder must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub key: EventKey,
    pub name: String,
    pub count: i32,
    pub first_timestamp: String,
    pub last_timestamp: String,
    /// Create the object (first write) or update its count.
    pub create: bool,
}

/// Pure aggregation and rate-limiting state.
#[derive(Debug, Default)]
pub struct Aggregator {
    entries: HashMap<EventKey, Entry>,
    /// Last write per (pod uid, reason).
    last_write: HashMap<(String, String), Instant>,
    seq: u64,
}

impl Aggregator {
    /// Records one occurrence at `now` (`wall` is its RFC 3339 time).
    pub fn observe(&mut self, mut key: EventKey, now: Instant, wall: &str) {
        if key.message.len() > MAX_MESSAGE {
            let mut end = MAX_MESSAGE;
            while !key.message.is_char_boundary(end) {
                end -= 1;
            }
            key.message.truncate(end);
        }
        if !self.entries.contains_key(&key) && self.entries.len() >= MAX_ENTRIES {
            self.evict_oldest();
        }
        self.seq += 1;
        let seq = self.seq;
        let e = self.entries.entry(key.clone()).or_insert_with(|| Entry {
            name: event_name(&key.pod.name, seq),
            count: 0,
            written_count: 0,
            first: wall.to_string(),
            last: wall.to_string(),
            last_seen: now,
        });
        e.count += 1;
        e.last = wall.to_string();
        e.last_seen = now;
    }

    fn evict_oldest(&mut self) {
        if let Some(oldest) = self
            .entries
            .iter()
            .min_by_key(|(_, e)| e.last_seen)
            .map(|(k, _)| k.clone())
        {
            self.entries.remove(&oldest);
        }
    }

    /// The writes due at `now`, marking them done (a failed write is simply retried by the
    /// next occurrence).
    pub fn due(&mut self, now: Instant) -> Vec<Write> {
        let mut out = Vec::new();
        let mut keys: Vec<&EventKey> = self
            .entries
            .iter()
            .filter(|(_, e)| e.count > e.written_count)
            .map(|(k, _)| k)
            .collect();
        keys.sort_by_key(|k| self.entries[*k].last_seen);
        let keys: Vec<EventKey> = keys.into_iter().cloned().collect();
        for key in keys {
            let limit_key = (key.pod.uid.clone(), key.reason.clone());
            if let Some(at) = self.last_write.get(&limit_key)
                && now.saturating_duration_since(*at) < WINDOW
            {
                continue;
            }
            let e = self.entries.get_mut(&key).expect("key from entries");
            out.push(Write {
                key: key.clone(),
                name: e.name.clone(),
                count: e.count,
                first_timestamp: e.first.clone(),
                last_timestamp: e.last.clone(),
                create: e.written_count == 0,
            });
            e.written_count = e.count;
            self.last_write.insert(limit_key, now);
        }
        out
    }

    /// When the next deferred write becomes due, if any.
    pub fn next_due(&self) -> Option<Instant> {
        self.entries
            .iter()
            .filter(|(_, e)| e.count > e.written_count)
            .filter_map(|(k, _)| {
                self.last_write
                    .get(&(k.pod.uid.clone(), k.reason.clone()))
                    .map(|at| *at + WINDOW)
            })
            .min()
    }

    /// Forgets everything about a Pod (it was deleted).
    pub fn forget(&mut self, uid: &str) {
        self.entries.retain(|k, _| k.pod.uid != uid);
        self.last_write.retain(|(u, _), _| u != uid);
    }
}

fn event_name(pod: &str, seq: u64) -> String {
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    format!("{pod}.{:x}", (nanos as u64).wrapping_add(seq))
}

/// Records Pod events through the API.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<RecorderInner>,
}

struct RecorderInner {
    agg: Mutex<Aggregator>,
    wake: Notify,
    client: Client,
    node: String,
}

impl Recorder {
    /// Creates the recorder and spawns its writer task (stop it by aborting the handle).
    pub fn spawn(client: Client, node: String) -> (Self, tokio::task::JoinHandle<()>) {
        let inner = Arc::new(RecorderInner {
            agg: Mutex::new(Aggregator::default()),
            wake: Notify::new(),
            client,
            node,
        });
        let task = tokio::spawn(writer(Arc::downgrade(&inner)));
        (Self { inner }, task)
    }

    /// Records an event about `pod`.
    pub fn record(&self, pod: &PodRef, type_: EventType, reason: &str, message: impl Into<String>) {
        let key = EventKey {
            pod: pod.clone(),
            type_,
            reason: reason.to_string(),
            message: message.into(),
        };
        let wall = ketch_api::time::now();
        self.lock().observe(key, Instant::now(), &wall);
        self.inner.wake.notify_one();
    }

    pub fn forget(&self, uid: &str) {
        self.lock().forget(uid);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Aggregator> {
        self.inner.agg.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn writer(weak: std::sync::Weak<RecorderInner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let (writes, next) = {
            let mut agg = inner.agg.lock().unwrap_or_else(|p| p.into_inner());
            let w = agg.due(Instant::now());
            (w, agg.next_due())
        };
        for w in writes {
            if let Err(e) = write_event(&inner, &w).await {
                tracing::debug!(error = %e, reason = %w.key.reason, "writing event");
            }
        }
        let wake = inner.wake.notified();
        let sleep = match next {
            Some(at) => tokio::time::sleep_until(at.into()),
            None => tokio::time::sleep(Duration::from_secs(3600)),
        };
        tokio::select! {
            () = wake => {}
            () = sleep => {}
        }
    }
}

async fn write_event(inner: &RecorderInner, w: &Write) -> Result<(), ketch_client::Error> {
    let api = inner.client.api::<Event>(Some(&w.key.pod.namespace));
    if !w.create {
        let patch = serde_json::json!({
            "count": w.count,
            "lastTimestamp": w.last_timestamp,
        });
        match api.merge_patch(&w.name, &patch, false).await {
            Ok(_) => return Ok(()),
            Err(e) if e.code() == Some(404) => {} // deleted meanwhile: create it again
            Err(e) => return Err(e),
        }
    }
    let ev = Event {
        api_version: Some("v1".into()),
        kind: Some("Event".into()),
        metadata: ObjectMeta {
            name: Some(w.name.clone()),
            namespace: Some(w.key.pod.namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some(w.key.pod.namespace.clone()),
            name: Some(w.key.pod.name.clone()),
            uid: Some(w.key.pod.uid.clone()),
            api_version: Some("v1".into()),
            ..ObjectReference::default()
        },
        reason: Some(w.key.reason.clone()),
        message: Some(w.key.message.clone()),
        type_: Some(w.key.type_.as_str().into()),
        count: Some(w.count),
        first_timestamp: Some(w.first_timestamp.clone()),
        last_timestamp: Some(w.last_timestamp.clone()),
        source: Some(EventSource {
            component: Some("ketch-agent".into()),
            host: Some(inner.node.clone()),
        }),
        reporting_component: Some("ketch-agent".into()),
        reporting_instance: Some(inner.node.clone()),
        ..Event::default()
    };
    match api.create(&ev).await {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(409) => {
            let patch = serde_json::json!({"count": w.count, "lastTimestamp": w.last_timestamp});
            api.merge_patch(&w.name, &patch, false).await.map(|_| ())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(uid: &str, reason: &str, message: &str) -> EventKey {
        EventKey {
            pod: PodRef {
                namespace: "default".into(),
                name: format!("pod-{uid}"),
                uid: uid.into(),
            },
            type_: EventType::Warning,
            reason: reason.into(),
            message: message.into(),
        }
    }

    #[test]
    fn the_first_occurrence_is_written_at_once() {
        let mut a = Aggregator::default();
        let t0 = Instant::now();
        a.observe(key("u1", "RequestFailed", "timeout"), t0, "T0");
        let w = a.due(t0);
        assert_eq!(w.len(), 1);
        assert!(w[0].create);
        assert_eq!(w[0].count, 1);
        assert!(w[0].name.starts_with("pod-u1."));
        assert!(a.due(t0).is_empty());
    }

    #[test]
    fn identical_events_within_the_window_bump_one_count_in_one_write() {
        let mut a = Aggregator::default();
        let t0 = Instant::now();
        a.observe(key("u1", "RequestFailed", "timeout"), t0, "T0");
        let first = a.due(t0);
        for i in 1..=100 {
            a.observe(
                key("u1", "RequestFailed", "timeout"),
                t0 + Duration::from_millis(i * 10),
                "T1",
            );
        }
        assert!(a.due(t0 + Duration::from_secs(1)).is_empty());
        assert_eq!(a.next_due(), Some(t0 + WINDOW));
        let w = a.due(t0 + WINDOW);
        assert_eq!(w.len(), 1);
        assert!(!w[0].create);
        assert_eq!(w[0].name, first[0].name);
        assert_eq!(w[0].count, 101);
        assert_eq!(w[0].first_timestamp, "T0");
        assert_eq!(w[0].last_timestamp, "T1");
        assert_eq!(a.next_due(), None);
    }

    #[test]
    fn one_pod_and_reason_gets_at_most_one_write_per_window_even_with_new_messages() {
        let mut a = Aggregator::default();
        let t0 = Instant::now();
        a.observe(key("u1", "RequestFailed", "trap a"), t0, "T0");
        a.observe(
            key("u1", "RequestFailed", "trap b"),
            t0 + Duration::from_millis(1),
            "T0",
        );
        a.observe(key("u2", "RequestFailed", "trap a"), t0, "T0");
        a.observe(key("u1", "Started", "started"), t0, "T0");
        let w = a.due(t0);
        assert_eq!(w.len(), 3, "{w:?}");
        let w = a.due(t0 + WINDOW);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].key.message, "trap b");
    }

    #[test]
    fn forgetting_a_pod_drops_its_pending_events() {
        let mut a = Aggregator::default();
        let t0 = Instant::now();
        a.observe(key("u1", "Failed", "x"), t0, "T0");
        a.forget("u1");
        assert!(a.due(t0).is_empty());
    }

    #[test]
    fn long_messages_are_truncated() {
        let mut a = Aggregator::default();
        let t0 = Instant::now();
        a.observe(key("u1", "Failed", &"é".repeat(2000)), t0, "T0");
        let w = a.due(t0);
        assert!(w[0].key.message.len() <= MAX_MESSAGE);
    }
}
