//! Controllers as pure planners: each `plan` reads a snapshot of objects and returns the
//! [`Action`]s that move the cluster toward the desired state. No IO happens here.
//!
//! # The contract with the runner
//!
//! The runner (the IO half, elsewhere) lists the objects a controller needs, calls its `plan`,
//! and executes the actions **in order, stopping at the first failure**; it then re-plans on
//! the next change or requeue. Plans are written so that this is safe:
//!
//! * A plan is idempotent over its snapshot: executing it and planning again from the new
//!   snapshot yields no further actions once the state has converged (status updates are only
//!   emitted when the status differs).
//! * Every action names its target by [`ObjectKey`] including the `uid`, which the runner must
//!   send as a precondition, so a plan made for one incarnation of an object never touches a
//!   recreated object with the same name.
//! * The snapshot must not lag behind the runner's own writes: if pods created by the last plan
//!   are not visible yet, the next plan would create them again (Kubernetes guards this with
//!   "expectations"). ketch's store is linearizable, so re-listing after executing a plan is
//!   enough.
//! * [`Action::RequeueAfter`] asks for another `plan` after a delay even if nothing changes
//!   (minReadySeconds elapsing, a progress deadline expiring).
//!
//! Timestamps (`now`, `creationTimestamp`, condition times) are RFC 3339 strings.

pub mod deployment;
pub mod disruption;
pub mod endpointslice;
pub mod event_ttl;
pub mod gc;
pub mod node_lifecycle;
pub mod replicaset;
pub mod taint_eviction;

use std::collections::BTreeMap;
use std::time::Duration;

use ketch_api::time;

use chrono::{DateTime, Utc};
use ketch_api::apps::{DeploymentStatus, ReplicaSet, ReplicaSetStatus};
use ketch_api::core::Pod;
use ketch_api::discovery::EndpointSlice;
use ketch_api::meta::{ObjectMeta, OwnerReference};

/// Identifies the object an action applies to. `uid` is a precondition for the write.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectKey {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl ObjectKey {
    pub fn new(api_version: &str, kind: &str, meta: &ObjectMeta) -> Self {
        ObjectKey {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: meta.namespace().into(),
            name: meta.name().into(),
            uid: meta.uid.clone().unwrap_or_default(),
        }
    }

    pub fn pod(meta: &ObjectMeta) -> Self {
        Self::new("v1", "Pod", meta)
    }

    pub fn replica_set(meta: &ObjectMeta) -> Self {
        Self::new("apps/v1", "ReplicaSet", meta)
    }

    pub fn deployment(meta: &ObjectMeta) -> Self {
        Self::new("apps/v1", "Deployment", meta)
    }

    pub fn endpoint_slice(meta: &ObjectMeta) -> Self {
        Self::new("discovery.k8s.io/v1", "EndpointSlice", meta)
    }
}

/// How a delete treats the object's dependents (`deleteOptions.propagationPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Delete now; the garbage collector removes dependents afterwards.
    Background,
    /// Keep the object (with the `foregroundDeletion` finalizer) until blocking dependents
    /// are gone.
    Foreground,
}

/// One step of a plan, executed by the runner in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create a pod (usually with `generateName`, so the server picks the name).
    CreatePod(Box<Pod>),
    CreateReplicaSet(Box<ReplicaSet>),
    CreateEndpointSlice(Box<EndpointSlice>),
    /// Make `slice` carry `desired`'s labels (added; others are kept), address type,
    /// endpoints and ports.
    UpdateEndpointSlice {
        slice: ObjectKey,
        desired: Box<EndpointSlice>,
    },
    /// Set `spec.replicas` of a ReplicaSet.
    ScaleReplicaSet {
        replica_set: ObjectKey,
        replicas: i32,
    },
    /// Merge these annotations into `metadata.annotations`.
    SetAnnotations {
        object: ObjectKey,
        annotations: BTreeMap<String, String>,
    },
    /// Replace `metadata.ownerReferences`: adoption, release, orphaning, dropping dangling refs.
    SetOwnerReferences {
        object: ObjectKey,
        owner_references: Vec<OwnerReference>,
    },
    Delete {
        object: ObjectKey,
        propagation: Propagation,
    },
    /// Remove one entry of `metadata.finalizers`.
    RemoveFinalizer {
        object: ObjectKey,
        finalizer: String,
    },
    /// Replace `status` (through the status subresource).
    UpdateReplicaSetStatus {
        replica_set: ObjectKey,
        status: ReplicaSetStatus,
    },
    UpdateDeploymentStatus {
        deployment: ObjectKey,
        status: Box<DeploymentStatus>,
    },
    /// Plan again after this long even if nothing is observed to change.
    RequeueAfter(Duration),
}

/// What a `plan` returns: actions in execution order.
pub type Plan = Vec<Action>;

/// The finalizer that holds an owner until its blocking dependents are deleted.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// The finalizer that strips owner references from dependents before the owner goes.
pub const ORPHAN_FINALIZER: &str = "orphan";

/// The owner reference with `controller: true`, if any.
pub fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .find(|r| r.controller == Some(true))
}

/// Whether `meta` is controlled by the object with `uid`.
pub fn is_controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    !uid.is_empty() && controller_ref(meta).is_some_and(|r| r.uid == uid)
}

/// A controller owner reference to `owner` (`controller` and `blockOwnerDeletion` set).
pub fn controller_owner_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: owner.name().into(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

pub(crate) fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Counts toward replicas: not terminating and not finished.
pub(crate) fn pod_is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && !matches!(pod_phase(pod), "Succeeded" | "Failed")
}

/// The pod's `Ready` condition when it is `True`: the time it became ready, if recorded.
pub(crate) fn pod_ready_since(pod: &Pod) -> Option<Option<&str>> {
    pod.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| c.last_transition_time.as_deref())
}

/// Ready for at least `min_ready_seconds` at `now` (Kubernetes' `IsPodAvailable`).
pub(crate) fn pod_is_available(
    pod: &Pod,
    min_ready_seconds: i32,
    now: Option<DateTime<Utc>>,
) -> bool {
    match pod_ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => match (since.and_then(time::parse), now) {
            (Some(since), Some(now)) => {
                since + chrono::Duration::seconds(i64::from(min_ready_seconds)) <= now
            }
            _ => false,
        },
    }
}

/// Kubernetes' ControllerRefManager in one pure function: of `candidates` (same namespace as
/// the owner), keep those the owner controls and whose labels still match `selector`;
/// release (drop the owner's reference from) controlled ones that stopped matching; adopt
/// matching orphans (add `owner_ref` as their controller) unless the owner is being
/// deleted. Objects controlled by someone else are left alone. Releases and adoptions are
/// pushed onto `actions` as `SetOwnerReferences`.
pub fn claim<'a, T>(
    candidates: impl IntoIterator<Item = &'a T>,
    meta: impl Fn(&T) -> &ObjectMeta,
    key: impl Fn(&ObjectMeta) -> ObjectKey,
    selector: &ketch_api::selector::Selector,
    owner_ref: &OwnerReference,
    owner_deleting: bool,
    actions: &mut Vec<Action>,
) -> Vec<&'a T> {
    let mut claimed = Vec::new();
    for item in candidates {
        let m = meta(item);
        let matches = selector.matches(&m.labels);
        let deleting = m.deletion_timestamp.is_some();
        match controller_ref(m) {
            Some(r) if r.uid == owner_ref.uid => {
                if matches {
                    claimed.push(item);
                } else if !deleting {
                    actions.push(Action::SetOwnerReferences {
                        object: key(m),
                        owner_references: m
                            .owner_references
                            .iter()
                            .filter(|r| r.uid != owner_ref.uid)
                            .cloned()
                            .collect(),
                    });
                }
            }
            Some(_) => {}
            None if matches && !deleting && !owner_deleting => {
                let mut refs = m.owner_references.clone();
                refs.push(owner_ref.clone());
                actions.push(Action::SetOwnerReferences {
                    object: key(m),
                    owner_references: refs,
                });
                claimed.push(item);
            }
            None => {}
        }
    }
    claimed
}

#[cfg(test)]
pub(crate) mod testing {
    //! Builders shared by the controller tests.

    use ketch_api::core::{Container, PodCondition, PodSpec, PodStatus};
    use ketch_api::meta::ObjectMeta;

    use super::*;

    pub fn meta(name: &str, uid: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(uid.into()),
            creation_timestamp: Some("2026-01-01T00:00:00Z".into()),
            ..Default::default()
        }
    }

    pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub fn pod_spec(image: &str) -> PodSpec {
        PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some(image.into()),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// A running, ready pod bound to a node.
    pub fn ready_pod(name: &str, uid: &str, labels: &[(&str, &str)]) -> Pod {
        let mut p = Pod {
            metadata: ObjectMeta {
                labels: super::testing::labels(labels),
                ..meta(name, uid)
            },
            spec: Some(pod_spec("nginx")),
            ..Default::default()
        };
        set_ready(&mut p, "2026-01-01T00:00:00Z");
        p
    }

    pub fn set_ready(p: &mut Pod, since: &str) {
        p.spec.get_or_insert_with(Default::default).node_name = Some("node-1".into());
        p.status = Some(PodStatus {
            phase: Some("Running".into()),
            conditions: vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(since.into()),
                ..Default::default()
            }],
            ..Default::default()
        });
    }

    pub fn owned_by(mut p: Pod, owner: OwnerReference) -> Pod {
        p.metadata.owner_references.push(owner);
        p
    }
}
