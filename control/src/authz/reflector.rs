//! Keeps the authorizers' indexes current from this server's own applied state: one list
//! of the kinds they read, then every event the state machine publishes to the watch hub.
//!
//! Not an informer over the HTTP API: the authorizer sits inside the API server, so a
//! client of its own would have to authorize itself; and every server (followers too)
//! decides from what it has applied, as it answers its reads. The live stream is followed
//! in-process; a lagged subscription or a history reset (a snapshot installed) relists.

use std::sync::{Arc, Weak};
use std::time::Duration;

use ketch_api::rbac::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use tokio::sync::broadcast::error::RecvError;

use super::Indexes;
use super::node::{IngressView, PodView};
use crate::store::command::EventType;
use crate::store::{Store, StoreError};
use crate::watch::{Subscription, WatchHub};

/// The store prefixes the indexes are built from.
const PREFIXES: [&str; 6] = [
    "roles/",
    "clusterroles/",
    "rolebindings/",
    "clusterrolebindings/",
    "pods/",
    "ingresses/",
];

/// Loads the indexes from `store` and spawns the task that follows `hub`. The task ends
/// when the indexes or the hub are dropped.
///
/// # Errors
/// The first read of the store failed.
pub fn start(store: Store, hub: Arc<WatchHub>, indexes: Arc<Indexes>) -> Result<(), StoreError> {
    let mut resets = hub.resets();
    resets.mark_unchanged();
    let sub = load(&store, &hub, &indexes)?;
    let (hub, indexes) = (Arc::downgrade(&hub), Arc::downgrade(&indexes));
    tokio::spawn(follow(store, hub, indexes, sub, resets));
    Ok(())
}

/// Lists every prefix and subscribes from the oldest list's revision. Each prefix is its
/// own read, so a replayed event may be older than another prefix's list: applying it puts
/// back an older version for a moment, and the events after it bring the newest back.
fn load(store: &Store, hub: &WatchHub, idx: &Indexes) -> Result<Subscription, StoreError> {
    loop {
        let mut from = u64::MAX;
        let mut objects = Vec::new();
        for prefix in PREFIXES {
            let (rev, raw) = store.list_raw(prefix)?;
            from = from.min(rev);
            objects.push((prefix, raw));
        }
        {
            let mut rbac = write(&idx.rbac);
            let mut graph = write(&idx.graph);
            rbac.clear();
            graph.clear();
            drop((rbac, graph));
        }
        for (prefix, raw) in objects {
            for bytes in raw {
                apply(idx, prefix, "", EventType::Added, &bytes);
            }
        }
        match hub.subscribe(from) {
            Ok(sub) => return Ok(sub),
            // Reset meanwhile (a snapshot installed): read again.
            Err(e) => tracing::debug!(error = %e, "authorizer index: relisting"),
        }
    }
}

fn write<T>(lock: &std::sync::RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn follow(
    store: Store,
    hub: Weak<WatchHub>,
    indexes: Weak<Indexes>,
    sub: Subscription,
    mut resets: tokio::sync::watch::Receiver<u64>,
) {
    let mut sub = Some(sub);
    loop {
        let Some(Subscription {
            backlog, mut live, ..
        }) = sub.take()
        else {
            return;
        };
        let mut last = 0;
        {
            let Some(idx) = indexes.upgrade() else { return };
            for ev in backlog {
                last = ev.revision;
                apply_event(&idx, &ev);
            }
        }
        let relist = loop {
            tokio::select! {
                ev = live.recv() => match ev {
                    Ok(ev) => {
                        if ev.revision <= last {
                            continue;
                        }
                        last = ev.revision;
                        let Some(idx) = indexes.upgrade() else { return };
                        apply_event(&idx, &ev);
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "authorizer index fell behind the watch hub; relisting");
                        break true;
                    }
                    Err(RecvError::Closed) => return,
                },
                changed = resets.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break true;
                }
            }
        };
        if !relist {
            return;
        }
        loop {
            let (Some(h), Some(idx)) = (hub.upgrade(), indexes.upgrade()) else {
                return;
            };
            resets.mark_unchanged();
            match load(&store, &h, &idx) {
                Ok(s) => {
                    sub = Some(s);
                    break;
                }
                Err(StoreError::Unavailable(_)) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "authorizer index: relisting failed; retrying");
                    drop((h, idx));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

fn apply_event(idx: &Indexes, ev: &crate::watch::WatchEvent) {
    let Some(prefix) = PREFIXES.iter().find(|p| ev.key.starts_with(**p)) else {
        return;
    };
    apply(idx, prefix, &ev.key, ev.event, &ev.object);
}

/// Applies one stored object (its JSON bytes) under `prefix`. `key` is the store key when
/// known (events), else taken from the object.
fn apply(idx: &Indexes, prefix: &str, key: &str, event: EventType, bytes: &[u8]) {
    let deleted = event == EventType::Deleted;
    let result = match prefix {
        "roles/" => serde_json::from_slice::<Role>(bytes).map(|r| {
            let mut rbac = write(&idx.rbac);
            if deleted {
                rbac.remove_role(r.metadata.namespace(), r.metadata.name());
            } else {
                rbac.put_role(&r);
            }
        }),
        "clusterroles/" => serde_json::from_slice::<ClusterRole>(bytes).map(|r| {
            let mut rbac = write(&idx.rbac);
            if deleted {
                rbac.remove_cluster_role(r.metadata.name());
            } else {
                rbac.put_cluster_role(&r);
            }
        }),
        "rolebindings/" => serde_json::from_slice::<RoleBinding>(bytes).map(|b| {
            let key = key_or(key, prefix, b.metadata.namespace(), b.metadata.name());
            let mut rbac = write(&idx.rbac);
            if deleted {
                rbac.remove_binding(&key);
            } else {
                rbac.put_role_binding(&key, &b);
            }
        }),
        "clusterrolebindings/" => serde_json::from_slice::<ClusterRoleBinding>(bytes).map(|b| {
            let key = key_or(key, prefix, "", b.metadata.name());
            let mut rbac = write(&idx.rbac);
            if deleted {
                rbac.remove_binding(&key);
            } else {
                rbac.put_cluster_role_binding(&key, &b);
            }
        }),
        "pods/" => serde_json::from_slice::<PodView>(bytes).map(|p| {
            let mut graph = write(&idx.graph);
            if deleted {
                graph.remove_pod(p.namespace(), p.name());
            } else {
                graph.put_pod(&p);
            }
        }),
        "ingresses/" => serde_json::from_slice::<IngressView>(bytes).map(|i| {
            let mut graph = write(&idx.graph);
            if deleted {
                graph.remove_ingress(i.namespace(), i.name());
            } else {
                graph.put_ingress(&i);
            }
        }),
        _ => Ok(()),
    };
    if let Err(e) = result {
        // Stored objects were admitted, so this is an object an older ketch wrote in a
        // shape this one no longer reads: it grants nothing.
        tracing::warn!(key, error = %e, "authorizer index: unreadable stored object skipped");
    }
}

fn key_or(key: &str, prefix: &str, ns: &str, name: &str) -> String {
    if key.is_empty() {
        format!("{prefix}{ns}/{name}")
    } else {
        key.to_string()
    }
}
