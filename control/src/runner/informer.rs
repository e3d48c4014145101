//! A watch-fed in-memory cache of one kind, shared by every controller that reads it.
//!
//! The cache is keyed `namespace/name` (`/name` for cluster-scoped kinds) in a `BTreeMap`, so
//! one namespace is a contiguous range. Each applied event advances [`Informer::observed`], the
//! highest resourceVersion the cache reflects: a controller that just wrote an object at
//! revision `r` waits for `observed >= r` before planning again, so its next plan never works
//! from a snapshot older than its own writes (the "expectations" problem of Kubernetes'
//! controllers, solved by the store being linearizable and revisions being global).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::StreamExt;
use ketch_api::resource::Resource;
use ketch_client::{Client, Event, ListParams};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// A change to one cached object, as delivered to subscribers.
#[derive(Debug, Clone)]
pub enum Change<K> {
    /// Added or modified; `old` is the previous cached version, if any.
    Upsert { old: Option<Arc<K>>, new: Arc<K> },
    /// Gone; the last known version.
    Delete(Arc<K>),
}

impl<K> Change<K> {
    /// The current version, or the last one for a deletion.
    pub fn object(&self) -> &Arc<K> {
        match self {
            Change::Upsert { new, .. } => new,
            Change::Delete(o) => o,
        }
    }
}

type Map<K> = BTreeMap<String, Arc<K>>;

struct Shared<K> {
    map: RwLock<Map<K>>,
    subscribers: Mutex<Vec<mpsc::UnboundedSender<Change<K>>>>,
}

/// The cache of one kind (all namespaces), kept current by a [`ketch_client::watcher`].
///
/// Cheap to clone. The watch task stops on [`Informer::stop`], or at the first event after the
/// last clone was dropped.
pub struct Informer<K> {
    shared: Arc<Shared<K>>,
    /// `None` until the first list arrived; then the highest resourceVersion applied.
    observed: watch::Receiver<Option<u64>>,
    task: Arc<JoinHandle<()>>,
}

impl<K> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Informer {
            shared: self.shared.clone(),
            observed: self.observed.clone(),
            task: self.task.clone(),
        }
    }
}

/// The cache key of an object: `namespace/name`.
pub fn key_of<K: Resource>(obj: &K) -> String {
    let m = obj.metadata();
    format!("{}/{}", m.namespace(), m.name())
}

fn rv_of<K: Resource>(obj: &K) -> u64 {
    obj.metadata()
        .resource_version
        .as_deref()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

impl<K: Resource> Informer<K> {
    /// Starts watching `K` in all namespaces.
    pub fn start(client: &Client) -> Self {
        let shared = Arc::new(Shared {
            map: RwLock::new(BTreeMap::new()),
            subscribers: Mutex::new(Vec::new()),
        });
        let (tx, observed) = watch::channel(None);
        let stream = client.api::<K>(None).watcher(ListParams::default(), None);
        let weak = Arc::downgrade(&shared);
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                let Some(shared) = weak.upgrade() else { return };
                match item {
                    Ok(ev) => {
                        let rv = shared.apply(ev);
                        tx.send_modify(|o| *o = Some(o.unwrap_or(0).max(rv)));
                    }
                    // The watcher retries with back-off and resumes without a gap.
                    Err(e) => tracing::debug!(kind = K::INFO.kind, error = %e, "watch interrupted"),
                }
            }
        });
        Informer {
            shared,
            observed,
            task: Arc::new(task),
        }
    }

    /// Waits until the first full list has been applied.
    pub async fn synced(&self) {
        let mut rx = self.observed.clone();
        // The sender lives as long as the task; if it is gone there is nothing to wait for.
        let _ = rx.wait_for(Option::is_some).await;
    }

    /// Waits (at most `timeout`) until the cache reflects revision `rv`; returns whether it
    /// does. A revision that was a deletion after a relist may never be observed exactly:
    /// callers treat `false` as "plan again later", not as an error.
    pub async fn wait_for(&self, rv: u64, timeout: Duration) -> bool {
        let mut rx = self.observed.clone();
        matches!(
            tokio::time::timeout(timeout, rx.wait_for(|o| o.is_some_and(|o| o >= rv))).await,
            Ok(Ok(_))
        )
    }

    /// A new channel receiving every change from now on.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Change<K>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.shared
            .subscribers
            .lock()
            .expect("subscriber lock")
            .push(tx);
        rx
    }

    /// The cached object at `namespace/name`.
    pub fn get(&self, key: &str) -> Option<Arc<K>> {
        self.shared
            .map
            .read()
            .expect("cache lock")
            .get(key)
            .cloned()
    }

    /// A consistent copy of the objects in `namespace` (all namespaces when `None`), ordered by
    /// key.
    pub fn list(&self, namespace: Option<&str>) -> Vec<Arc<K>> {
        let map = self.shared.map.read().expect("cache lock");
        match namespace {
            None => map.values().cloned().collect(),
            // '0' follows '/': the range is exactly the keys starting with "ns/".
            Some(ns) => map
                .range(format!("{ns}/")..format!("{ns}0"))
                .map(|(_, v)| v.clone())
                .collect(),
        }
    }

    /// Like [`Informer::list`], as owned objects (what the pure planners take).
    pub fn list_owned(&self, namespace: Option<&str>) -> Vec<K> {
        self.list(namespace).iter().map(|o| (**o).clone()).collect()
    }

    /// Stops the watch. Other clones see a cache that no longer changes.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl<K: Resource> Shared<K> {
    /// Applies one watcher event; returns the highest resourceVersion it carried.
    fn apply(&self, ev: Event<K>) -> u64 {
        let mut changes = Vec::new();
        let mut rv = 0;
        {
            let mut map = self.map.write().expect("cache lock");
            match ev {
                Event::Added(o) | Event::Modified(o) => {
                    rv = rv_of(&o);
                    let new = Arc::new(o);
                    let old = map.insert(key_of(&*new), new.clone());
                    changes.push(Change::Upsert { old, new });
                }
                Event::Deleted(o) => {
                    rv = rv_of(&o);
                    map.remove(&key_of(&o));
                    changes.push(Change::Delete(Arc::new(o)));
                }
                Event::Restarted(items) => {
                    let mut next: Map<K> = BTreeMap::new();
                    for o in items {
                        rv = rv.max(rv_of(&o));
                        next.insert(key_of(&o), Arc::new(o));
                    }
                    for (k, old) in map.iter() {
                        if !next.contains_key(k) {
                            changes.push(Change::Delete(old.clone()));
                        }
                    }
                    for (k, new) in &next {
                        let old = map.get(k).cloned();
                        if old.as_ref().is_none_or(|o| rv_of(&**o) != rv_of(&**new)) {
                            changes.push(Change::Upsert {
                                old,
                                new: new.clone(),
                            });
                        }
                    }
                    *map = next;
                }
            }
        }
        let mut subs = self.subscribers.lock().expect("subscriber lock");
        subs.retain(|tx| changes.iter().all(|c| tx.send(c.clone()).is_ok()));
        rv
    }
}

#[cfg(test)]
mod tests {
    use ketch_api::core::Pod;
    use ketch_api::meta::ObjectMeta;

    use super::*;

    fn pod(ns: &str, name: &str, rv: u64) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                resource_version: Some(rv.to_string()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn shared() -> Shared<Pod> {
        Shared {
            map: RwLock::new(BTreeMap::new()),
            subscribers: Mutex::new(Vec::new()),
        }
    }

    #[test]
    fn a_relist_replaces_the_cache_and_reports_what_vanished() {
        let s = shared();
        let (tx, mut rx) = mpsc::unbounded_channel();
        s.subscribers.lock().unwrap().push(tx);
        s.apply(Event::Restarted(vec![pod("a", "x", 1), pod("a", "y", 2)]));
        assert_eq!(
            s.apply(Event::Restarted(vec![pod("a", "y", 2), pod("b", "z", 7)])),
            7
        );
        let keys: Vec<String> = s.map.read().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["a/y", "b/z"]);
        let mut seen = Vec::new();
        while let Ok(c) = rx.try_recv() {
            seen.push(match c {
                Change::Upsert { new, .. } => format!("+{}", key_of(&*new)),
                Change::Delete(o) => format!("-{}", key_of(&*o)),
            });
        }
        // Unchanged y is not reported again.
        assert_eq!(seen, ["+a/x", "+a/y", "-a/x", "+b/z"]);
    }

    #[test]
    fn namespace_ranges_do_not_leak_into_longer_namespace_names() {
        let s = shared();
        s.apply(Event::Restarted(vec![
            pod("a", "x", 1),
            pod("a-b", "y", 2),
            pod("ab", "z", 3),
        ]));
        let map = s.map.read().unwrap();
        let in_a: Vec<&String> = map
            .range("a/".to_string().."a0".to_string())
            .map(|(k, _)| k)
            .collect();
        assert_eq!(in_a, ["a/x"]);
    }
}
