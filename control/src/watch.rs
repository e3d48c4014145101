//! Watch fan-out: the state machine publishes every change here in revision order; each
//! watcher replays what it missed from a bounded in-memory history, then follows live.
//!
//! The history is the Kubernetes "watch cache" idea: a ring of the most recent events.
//! A watch from a revision older than the ring's start gets `Expired` (HTTP 410), and the
//! client relists. The state machine also persists the most recent events (see
//! `store::state_machine::EVENT_HISTORY`) and restores them here when it opens, so a watcher
//! that was behind when the server stopped or crashed resumes across the restart without a
//! gap; what the raft log re-applies after that is published again and skipped by revision.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::attrs::{Attrs, attrs_of, plural_of_key};
use crate::store::command::EventType;

/// One change, shared by every watcher that receives it. Holds the object as the JSON
/// bytes sent on the wire plus the small [`Attrs`] view filters need, so a history of many
/// thousands of events stays compact.
#[derive(Debug)]
pub struct WatchEvent {
    pub revision: u64,
    pub event: EventType,
    /// Store key: `{plural}/{namespace}/{name}`.
    pub key: String,
    /// The object, serialized once.
    pub object: Bytes,
    pub attrs: Attrs,
    /// For MODIFIED: the view of the object before this change, so a filtered watch can
    /// tell an object entering its selection (sent as ADDED) or leaving it (DELETED).
    pub previous: Option<Attrs>,
    line: OnceLock<Bytes>,
}

impl WatchEvent {
    pub fn new(revision: u64, event: EventType, key: String, object: &Value) -> Self {
        let bytes = serde_json::to_vec(object).expect("JSON values always serialize");
        Self::serialized(revision, event, key, object, bytes.into())
    }

    /// Like [`WatchEvent::new`], with `bytes` already holding `object` serialized (the state
    /// machine serializes each object once, for the table and the event).
    pub fn serialized(
        revision: u64,
        event: EventType,
        key: String,
        object: &Value,
        bytes: Bytes,
    ) -> Self {
        let attrs = attrs_of(plural_of_key(&key), object);
        Self {
            revision,
            event,
            object: bytes,
            attrs,
            key,
            previous: None,
            line: OnceLock::new(),
        }
    }

    /// An event as the persisted history holds it (object bytes and views already made).
    pub fn from_parts(
        revision: u64,
        event: EventType,
        key: String,
        object: Bytes,
        attrs: Attrs,
        previous: Option<Attrs>,
    ) -> Self {
        Self {
            revision,
            event,
            key,
            object,
            attrs,
            previous,
            line: OnceLock::new(),
        }
    }

    /// What selectors see of `object`, stored at `key`: for [`WatchEvent::with_previous`].
    pub fn attrs_for(key: &str, object: &Value) -> Attrs {
        attrs_of(plural_of_key(key), object)
    }

    /// Attach what selectors saw of the object before a MODIFIED change
    /// ([`WatchEvent::attrs_for`] of the previous object).
    pub fn with_previous(mut self, previous: Option<Attrs>) -> Self {
        self.previous = previous;
        self
    }

    /// The newline-terminated JSON line a watch stream sends; built once, shared.
    pub fn line(&self) -> Bytes {
        self.line
            .get_or_init(|| encode_line(self.event, &self.object))
            .clone()
    }

    /// What a watch whose filter is `matches` should receive for this event, if anything:
    /// Kubernetes semantics, where a modified object entering the selection is ADDED and
    /// one leaving it is DELETED.
    pub fn for_filter(&self, matches: impl Fn(&Attrs) -> bool) -> Option<Bytes> {
        let now = matches(&self.attrs);
        let as_type = match self.event {
            EventType::Added | EventType::Deleted => now.then_some(self.event)?,
            EventType::Modified => {
                let before = self.previous.as_ref().is_none_or(&matches);
                match (before, now) {
                    (true, true) => EventType::Modified,
                    (false, true) => EventType::Added,
                    (true, false) => EventType::Deleted,
                    (false, false) => return None,
                }
            }
        };
        if as_type == self.event {
            Some(self.line())
        } else {
            Some(encode_line(as_type, &self.object))
        }
    }
}

/// `{"type":"ADDED","object":<object>}\n` without re-serializing the object.
pub fn encode_line(event: EventType, object: &[u8]) -> Bytes {
    let head = br#"{"type":""#;
    let mid = br#"","object":"#;
    let mut buf = Vec::with_capacity(object.len() + 40);
    buf.extend_from_slice(head);
    buf.extend_from_slice(event.as_str().as_bytes());
    buf.extend_from_slice(mid);
    buf.extend_from_slice(object);
    buf.extend_from_slice(b"}\n");
    buf.into()
}

/// A watch asked for history the hub no longer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too old resource version: {requested} (oldest available is {oldest})")]
pub struct Expired {
    pub requested: u64,
    pub oldest: u64,
}

struct Ring {
    /// Events with revision > `start` are all in `events` (in order).
    start: u64,
    /// The newest revision published (or reset to).
    head: u64,
    events: VecDeque<Arc<WatchEvent>>,
    capacity: usize,
}

/// The publish/subscribe point between the state machine and the watch streams.
pub struct WatchHub {
    ring: Mutex<Ring>,
    tx: broadcast::Sender<Arc<WatchEvent>>,
    /// Counts [`WatchHub::reset`]s and [`WatchHub::restore`]s: the state changed without
    /// events (a snapshot installed), so an in-memory index fed by the live stream must
    /// read the store again (see `authz::reflector`).
    resets: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for WatchHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchHub").finish_non_exhaustive()
    }
}

/// A live subscription: `backlog` first, then `live` (which may repeat the backlog's tail:
/// skip events with revision ≤ the last one delivered).
pub struct Subscription {
    pub backlog: Vec<Arc<WatchEvent>>,
    pub live: broadcast::Receiver<Arc<WatchEvent>>,
    /// The newest revision at subscription time (for a BOOKMARK or a LIST's resourceVersion).
    pub head: u64,
}

impl WatchHub {
    /// `capacity` events of history are kept; the broadcast buffer holds as many, so a
    /// watcher that falls further behind than that is cut off and must resume.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(16));
        Self {
            ring: Mutex::new(Ring {
                start: 0,
                head: 0,
                events: VecDeque::with_capacity(capacity.min(1 << 16)),
                capacity,
            }),
            tx,
            resets: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Changes whenever the history is reset or restored (see the field's docs).
    pub fn resets(&self) -> tokio::sync::watch::Receiver<u64> {
        self.resets.subscribe()
    }

    /// Forget all history: nothing at or before `revision` can be replayed any more. The
    /// state machine calls this when it opens and after installing a snapshot.
    pub fn reset(&self, revision: u64) {
        let mut ring = self.ring.lock().expect("watch ring poisoned");
        ring.events.clear();
        ring.start = revision;
        ring.head = revision;
        drop(ring);
        self.resets.send_modify(|n| *n += 1);
    }

    /// Forget all history, then take `events` (in revision order, the newest at `revision`)
    /// as the history: what the state machine persisted before a restart, so a watcher that
    /// was behind when the server stopped resumes without a gap.
    pub fn restore(&self, revision: u64, events: Vec<WatchEvent>) {
        let mut ring = self.ring.lock().expect("watch ring poisoned");
        ring.events.clear();
        let skip = events.len().saturating_sub(ring.capacity);
        let kept: Vec<_> = events
            .into_iter()
            .skip(skip)
            .filter(|e| e.revision <= revision)
            .collect();
        // Events with revision > start are all in the ring: the first kept one starts it.
        ring.start = kept.first().map_or(revision, |e| e.revision - 1);
        ring.head = revision;
        ring.events.extend(kept.into_iter().map(Arc::new));
        drop(ring);
        self.resets.send_modify(|n| *n += 1);
    }

    /// Publish events in revision order. Called only by the state machine's apply.
    pub fn publish(&self, events: Vec<WatchEvent>) {
        if events.is_empty() {
            return;
        }
        let mut ring = self.ring.lock().expect("watch ring poisoned");
        for ev in events {
            let ev = Arc::new(ev);
            if ev.revision <= ring.head {
                // Re-applied after a restart; watchers already have it in the ring or will
                // read it from the store.
                continue;
            }
            ring.head = ev.revision;
            if ring.events.len() == ring.capacity
                && let Some(old) = ring.events.pop_front()
            {
                ring.start = old.revision;
            }
            ring.events.push_back(ev.clone());
            // No receivers is fine.
            let _ = self.tx.send(ev);
        }
    }

    /// The newest published revision.
    pub fn head(&self) -> u64 {
        self.ring.lock().expect("watch ring poisoned").head
    }

    /// Subscribe to every event with revision > `from`.
    ///
    /// # Errors
    /// [`Expired`] when events after `from` have already left the history.
    pub fn subscribe(&self, from: u64) -> Result<Subscription, Expired> {
        let ring = self.ring.lock().expect("watch ring poisoned");
        if from < ring.start {
            return Err(Expired {
                requested: from,
                oldest: ring.start,
            });
        }
        // Subscribing under the lock means nothing published can fall between the
        // backlog and the live stream.
        let live = self.tx.subscribe();
        let skip = ring.events.partition_point(|e| e.revision <= from);
        let backlog = ring.events.iter().skip(skip).cloned().collect();
        Ok(Subscription {
            backlog,
            live,
            head: ring.head,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(rev: u64) -> WatchEvent {
        WatchEvent::new(rev, EventType::Added, format!("pods/d/p{rev}"), &json!({}))
    }

    #[test]
    fn subscribe_replays_after_the_given_revision_then_follows_live() {
        let hub = WatchHub::new(10);
        hub.reset(5);
        hub.publish(vec![ev(6), ev(7), ev(8)]);
        let mut sub = hub.subscribe(6).unwrap();
        let revs: Vec<u64> = sub.backlog.iter().map(|e| e.revision).collect();
        assert_eq!(revs, vec![7, 8]);
        hub.publish(vec![ev(9)]);
        assert_eq!(sub.live.try_recv().unwrap().revision, 9);
    }

    #[test]
    fn a_restored_history_is_replayed_and_followed_by_new_events() {
        let hub = WatchHub::new(3);
        hub.restore(8, (5..=8).map(ev).collect());
        // Capacity 3: 6, 7, 8 kept; a watcher at 5 resumes, one at 4 relists.
        assert!(hub.subscribe(4).is_err());
        let sub = hub.subscribe(5).unwrap();
        let revs: Vec<u64> = sub.backlog.iter().map(|e| e.revision).collect();
        assert_eq!((revs, sub.head), (vec![6, 7, 8], 8));
        // Re-applied after the restart: not delivered twice; then new ones follow.
        hub.publish(vec![ev(8), ev(9)]);
        let revs: Vec<u64> = hub
            .subscribe(7)
            .unwrap()
            .backlog
            .iter()
            .map(|e| e.revision)
            .collect();
        assert_eq!(revs, vec![8, 9]);
        hub.restore(20, Vec::new());
        assert!(hub.subscribe(19).is_err() && hub.subscribe(20).is_ok());
    }

    #[test]
    fn a_revision_older_than_the_history_is_expired() {
        let hub = WatchHub::new(3);
        hub.reset(0);
        hub.publish((1..=6).map(ev).collect());
        assert!(hub.subscribe(2).is_err());
        assert_eq!(hub.subscribe(3).unwrap().backlog.len(), 3);
        hub.reset(100);
        assert_eq!(
            hub.subscribe(6).err(),
            Some(Expired {
                requested: 6,
                oldest: 100
            })
        );
    }

    #[test]
    fn a_filtered_watch_sees_objects_enter_and_leave_its_selection() {
        let matches = |a: &Attrs| a.labels.get("l").is_some_and(|v| v == "yes");
        let labelled = |v: &str| json!({"metadata": {"name": "x", "labels": {"l": v}}});
        let modified = |before: &str, after: &str| {
            WatchEvent::new(2, EventType::Modified, "pods/d/x".into(), &labelled(after))
                .with_previous(Some(WatchEvent::attrs_for("pods/d/x", &labelled(before))))
        };
        let kind = |b: Option<Bytes>| {
            b.map(|b| serde_json::from_slice::<Value>(&b).unwrap()["type"].clone())
        };
        assert_eq!(
            kind(modified("yes", "yes").for_filter(matches)),
            Some(json!("MODIFIED"))
        );
        assert_eq!(
            kind(modified("no", "yes").for_filter(matches)),
            Some(json!("ADDED"))
        );
        assert_eq!(
            kind(modified("yes", "no").for_filter(matches)),
            Some(json!("DELETED"))
        );
        assert_eq!(kind(modified("no", "no").for_filter(matches)), None);
        let line = modified("no", "yes").for_filter(matches).unwrap();
        let parsed: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(parsed["object"]["metadata"]["name"], "x");
    }

    #[test]
    fn republished_revisions_are_not_delivered_twice() {
        let hub = WatchHub::new(10);
        hub.reset(3);
        hub.publish(vec![ev(2), ev(3), ev(4)]);
        let sub = hub.subscribe(3).unwrap();
        assert_eq!(sub.backlog.len(), 1);
    }
}
