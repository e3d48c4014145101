//! A watch validator: given every event one watcher received (across reconnects) on all
//! objects of a kind from a known starting revision, check they are ordered, unique, and
//! that none is missing — the etcd robustness suite's watch checks. Pure: no IO.
//!
//! "None missing" is checked against the writes clients saw acknowledged (each one's
//! resourceVersion must arrive as the right event for the right key with the right value),
//! and, when given, against the final state: replaying the events must rebuild exactly the
//! objects a final list returned, which also covers writes whose outcome was unknown.

use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

/// One event as the watcher received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    pub key: String,
    pub rv: u64,
    /// The object's `data.v` (for a deletion: its last value).
    pub value: Option<String>,
}

/// A write a client saw acknowledged: the resourceVersion it got and what it wrote
/// (`None` for a deletion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckedWrite {
    pub key: String,
    pub rv: u64,
    pub kind: EventKind,
    pub value: Option<String>,
}

/// Objects (key → (value, resourceVersion)) as a list returned them at `rv`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub rv: u64,
    pub objects: BTreeMap<String, (Option<String>, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// An event at or below the revision the watch started from.
    BeforeStart { rv: u64, from: u64 },
    /// The same revision delivered twice.
    Duplicate { rv: u64, index: usize },
    /// A revision after a higher one.
    OutOfOrder { rv: u64, after: u64, index: usize },
    /// An acknowledged write never delivered.
    Missing(AckedWrite),
    /// Delivered, but not as the write was acknowledged (other key, kind or value).
    Mismatch { acked: AckedWrite, got: WatchEvent },
    /// ADDED for an object the stream already has, or MODIFIED/DELETED for one it does not:
    /// the stream skipped something.
    Inconsistent {
        event: WatchEvent,
        why: &'static str,
    },
    /// Replaying the stream does not give the final state.
    FinalState {
        key: String,
        replayed: Option<(Option<String>, u64)>,
        listed: Option<(Option<String>, u64)>,
    },
    /// The stream ended before the final list's revision, so it cannot be compared.
    Incomplete { last: u64, listed: u64 },
}

/// What a valid stream contained.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub events: usize,
    pub acked: usize,
}

/// Validate a watch that started after revision `from` (all objects of the kind, initially
/// as `initial` — empty for a fresh namespace). All violations are returned, not the first.
///
/// # Errors
/// Every violation found.
pub fn validate(
    from: u64,
    initial: &BTreeMap<String, (Option<String>, u64)>,
    events: &[WatchEvent],
    acked: &[AckedWrite],
    last: Option<&Snapshot>,
) -> Result<Summary, Vec<Violation>> {
    let mut out = Vec::new();
    let mut prev: Option<u64> = None;
    for (index, ev) in events.iter().enumerate() {
        if ev.rv <= from {
            out.push(Violation::BeforeStart { rv: ev.rv, from });
        }
        match prev {
            Some(p) if ev.rv == p => out.push(Violation::Duplicate { rv: ev.rv, index }),
            Some(p) if ev.rv < p => out.push(Violation::OutOfOrder {
                rv: ev.rv,
                after: p,
                index,
            }),
            _ => {}
        }
        prev = Some(prev.map_or(ev.rv, |p| p.max(ev.rv)));
    }

    let by_rv: HashMap<u64, &WatchEvent> = events.iter().map(|e| (e.rv, e)).collect();
    for w in acked {
        match by_rv.get(&w.rv) {
            None => out.push(Violation::Missing(w.clone())),
            Some(got) => {
                // A deletion's event carries the last value; only its key and kind count.
                let value_ok = w.kind == EventKind::Deleted || got.value == w.value;
                if got.key != w.key || got.kind != w.kind || !value_ok {
                    out.push(Violation::Mismatch {
                        acked: w.clone(),
                        got: (*got).clone(),
                    });
                }
            }
        }
    }

    let mut state = initial.clone();
    for ev in events {
        if let Some(last) = last
            && ev.rv > last.rv
        {
            break;
        }
        let present = state.contains_key(&ev.key);
        match ev.kind {
            EventKind::Added if present => out.push(Violation::Inconsistent {
                event: ev.clone(),
                why: "ADDED for an object that exists",
            }),
            EventKind::Modified | EventKind::Deleted if !present => {
                out.push(Violation::Inconsistent {
                    event: ev.clone(),
                    why: "MODIFIED or DELETED for an object that does not exist",
                });
            }
            _ => {}
        }
        if ev.kind == EventKind::Deleted {
            state.remove(&ev.key);
        } else {
            state.insert(ev.key.clone(), (ev.value.clone(), ev.rv));
        }
    }
    if let Some(last) = last {
        let seen = events.iter().map(|e| e.rv).max().unwrap_or(from);
        // A list's revision is the store's, which other kinds advance too: the stream may
        // legitimately end below it, but then it must hold every change up to it.
        let newest_listed = last.objects.values().map(|(_, rv)| *rv).max();
        if newest_listed.is_some_and(|n| n > seen) {
            out.push(Violation::Incomplete {
                last: seen,
                listed: last.rv,
            });
        }
        let keys: std::collections::BTreeSet<&String> =
            state.keys().chain(last.objects.keys()).collect();
        for key in keys {
            let (replayed, listed) = (state.get(key), last.objects.get(key));
            if replayed != listed {
                out.push(Violation::FinalState {
                    key: key.clone(),
                    replayed: replayed.cloned(),
                    listed: listed.cloned(),
                });
            }
        }
    }
    if out.is_empty() {
        Ok(Summary {
            events: events.len(),
            acked: acked.len(),
        })
    } else {
        Err(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind, key: &str, rv: u64, value: &str) -> WatchEvent {
        WatchEvent {
            kind,
            key: key.into(),
            rv,
            value: Some(value.into()),
        }
    }
    fn ack(e: &WatchEvent) -> AckedWrite {
        AckedWrite {
            key: e.key.clone(),
            rv: e.rv,
            kind: e.kind,
            value: (e.kind != EventKind::Deleted)
                .then(|| e.value.clone())
                .flatten(),
        }
    }
    use EventKind::{Added, Deleted, Modified};

    fn good() -> Vec<WatchEvent> {
        vec![
            ev(Added, "a", 11, "1"),
            ev(Added, "b", 12, "2"),
            ev(Modified, "a", 15, "3"),
            ev(Deleted, "b", 16, "2"),
            ev(Added, "b", 20, "4"),
        ]
    }

    fn snapshot(rv: u64, objs: &[(&str, &str, u64)]) -> Snapshot {
        Snapshot {
            rv,
            objects: objs
                .iter()
                .map(|(k, v, rv)| (k.to_string(), (Some(v.to_string()), *rv)))
                .collect(),
        }
    }

    #[test]
    fn a_complete_ordered_stream_passes() {
        let evs = good();
        let acked: Vec<_> = evs.iter().map(ack).collect();
        let last = snapshot(25, &[("a", "3", 15), ("b", "4", 20)]);
        let s = validate(10, &BTreeMap::new(), &evs, &acked, Some(&last)).unwrap();
        assert_eq!((s.events, s.acked), (5, 5));
        // Unacknowledged (maybe) writes in the stream are fine when the final state agrees.
        validate(10, &BTreeMap::new(), &evs, &acked[..2], Some(&last)).unwrap();
    }

    #[test]
    fn a_duplicate_is_found() {
        let mut evs = good();
        evs.insert(3, evs[2].clone());
        let acked: Vec<_> = good().iter().map(ack).collect();
        let errs = validate(10, &BTreeMap::new(), &evs, &acked, None).unwrap_err();
        assert!(
            errs.contains(&Violation::Duplicate { rv: 15, index: 3 }),
            "{errs:?}"
        );
    }

    #[test]
    fn reordering_is_found() {
        let mut evs = good();
        evs.swap(1, 2);
        let acked: Vec<_> = good().iter().map(ack).collect();
        let errs = validate(10, &BTreeMap::new(), &evs, &acked, None).unwrap_err();
        assert!(
            errs.iter()
                .any(|v| matches!(v, Violation::OutOfOrder { rv: 12, .. })),
            "{errs:?}"
        );
    }

    #[test]
    fn a_missing_acknowledged_write_is_found() {
        let mut evs = good();
        let acked: Vec<_> = evs.iter().map(ack).collect();
        evs.remove(2);
        let errs = validate(10, &BTreeMap::new(), &evs, &acked, None).unwrap_err();
        assert!(
            errs.contains(&Violation::Missing(acked[2].clone())),
            "{errs:?}"
        );
    }

    /// The violations of `evs` (nothing acknowledged) against the final state of `good()`.
    fn against_final_state(evs: &[WatchEvent]) -> Vec<Violation> {
        let last = snapshot(25, &[("a", "3", 15), ("b", "4", 20)]);
        validate(10, &BTreeMap::new(), evs, &[], Some(&last)).unwrap_err()
    }

    #[test]
    fn a_gap_of_unacknowledged_writes_is_found_through_the_final_state() {
        // Nothing acknowledged is missing, but an unacknowledged modification of "a" is:
        // the replay ends with a's old value.
        let mut evs = good();
        evs.remove(2);
        let errs = against_final_state(&evs);
        assert!(
            errs.iter()
                .any(|v| matches!(v, Violation::FinalState { key, .. } if key == "a")),
            "{errs:?}"
        );
        // A gap that drops a creation shows up as an inconsistent stream on its own.
        let mut evs = good();
        evs.remove(1);
        let errs = validate(10, &BTreeMap::new(), &evs, &[], None).unwrap_err();
        assert!(
            errs.iter()
                .any(|v| matches!(v, Violation::Inconsistent { .. })),
            "{errs:?}"
        );
        // A stream that stopped early.
        let errs = against_final_state(&good()[..3]);
        assert!(
            errs.iter()
                .any(|v| matches!(v, Violation::Incomplete { .. })),
            "{errs:?}"
        );
    }

    #[test]
    fn wrong_content_and_replays_of_old_history_are_found() {
        let mut evs = good();
        let acked: Vec<_> = evs.iter().map(ack).collect();
        evs[2].value = Some("other".into());
        let errs = validate(10, &BTreeMap::new(), &evs, &acked, None).unwrap_err();
        assert!(
            errs.iter().any(|v| matches!(v, Violation::Mismatch { .. })),
            "{errs:?}"
        );
        // Resuming from 10 must not replay revision 9.
        let mut evs = good();
        evs.insert(0, ev(Added, "z", 9, "0"));
        let errs = validate(10, &BTreeMap::new(), &evs, &[], None).unwrap_err();
        assert!(
            errs.contains(&Violation::BeforeStart { rv: 9, from: 10 }),
            "{errs:?}"
        );
    }
}
