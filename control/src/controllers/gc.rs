//! The garbage collector: owner references across all kinds.
//!
//! * Background: a dependent whose owners are all gone is deleted.
//! * Foreground: an owner being deleted with the `foregroundDeletion` finalizer has its
//!   dependents deleted; the finalizer is removed once no dependent with
//!   `blockOwnerDeletion: true` still exists.
//! * Orphan: an owner being deleted with the `orphan` finalizer has its reference removed from
//!   every dependent, then the finalizer is removed.
//!
//! A dependent that still has a live owner is never deleted; references to missing owners
//! (and to owners waiting in foreground deletion) are dropped from it instead, as Kubernetes'
//! `attemptToDeleteItem` does.

use std::collections::{HashMap, HashSet};

use ketch_api::meta::{ObjectMeta, OwnerReference};

use super::{Action, FOREGROUND_FINALIZER, ORPHAN_FINALIZER, ObjectKey, Plan, Propagation};

/// What the collector needs to know about any object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GcObject {
    pub key: ObjectKey,
    pub owner_references: Vec<OwnerReference>,
    pub deletion_timestamp: Option<String>,
    pub finalizers: Vec<String>,
}

impl GcObject {
    pub fn new(api_version: &str, kind: &str, meta: &ObjectMeta) -> Self {
        GcObject {
            key: ObjectKey::new(api_version, kind, meta),
            owner_references: meta.owner_references.clone(),
            deletion_timestamp: meta.deletion_timestamp.clone(),
            finalizers: meta.finalizers.clone(),
        }
    }

    fn deleting(&self) -> bool {
        self.deletion_timestamp.is_some()
    }

    fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }
}

/// How one owner reference of a dependent resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OwnerState {
    /// The owner exists (an orphaning owner counts: it keeps its dependents alive).
    Solid,
    /// No such owner in the snapshot.
    Dangling,
    /// The owner is being deleted in the foreground and waits for its dependents.
    Waiting,
    /// The owner is being deleted with the orphan finalizer: drop the reference.
    Orphaning,
}

/// Plans one collection pass over `objects`.
///
/// `objects` must be one consistent snapshot of every kind that can own or be owned (one list
/// revision): an owner missing from it is taken to be deleted. Actions on dependents come
/// first and finalizer removals last, so a runner that stops at the first failure never
/// releases an owner before its dependents were handled.
pub fn plan(objects: &[GcObject]) -> Plan {
    let by_uid: HashMap<&str, &GcObject> = objects
        .iter()
        .filter(|o| !o.key.uid.is_empty())
        .map(|o| (o.key.uid.as_str(), o))
        .collect();
    // Owner uids that some object references: those objects have dependents.
    let referenced: HashSet<&str> = objects
        .iter()
        .flat_map(|o| o.owner_references.iter().map(|r| r.uid.as_str()))
        .collect();

    let mut actions = Vec::new();
    for dep in objects.iter().filter(|o| !o.owner_references.is_empty()) {
        let states: Vec<OwnerState> = dep
            .owner_references
            .iter()
            .map(|r| owner_state(dep, r, &by_uid))
            .collect();
        let solid = states
            .iter()
            .any(|s| matches!(s, OwnerState::Solid | OwnerState::Orphaning));
        if solid {
            let kept: Vec<OwnerReference> = dep
                .owner_references
                .iter()
                .zip(&states)
                .filter(|(_, s)| **s == OwnerState::Solid)
                .map(|(r, _)| r.clone())
                .collect();
            if kept.len() != dep.owner_references.len() {
                actions.push(Action::SetOwnerReferences {
                    object: dep.key.clone(),
                    owner_references: kept,
                });
            }
        } else if !dep.deleting() {
            // Every owner is gone or deleting in the foreground. A dependent that has its own
            // dependents goes in the foreground too, so the whole chain blocks the top owner.
            let waiting = states.contains(&OwnerState::Waiting);
            let propagation = if waiting && referenced.contains(dep.key.uid.as_str()) {
                Propagation::Foreground
            } else {
                Propagation::Background
            };
            actions.push(Action::Delete {
                object: dep.key.clone(),
                propagation,
            });
        }
    }

    for owner in objects.iter().filter(|o| o.deleting()) {
        if owner.has_finalizer(ORPHAN_FINALIZER) {
            // Every reference to it was dropped above, in this same plan.
            actions.push(Action::RemoveFinalizer {
                object: owner.key.clone(),
                finalizer: ORPHAN_FINALIZER.into(),
            });
        }
        if owner.has_finalizer(FOREGROUND_FINALIZER) {
            let blocked = objects.iter().any(|dep| {
                dep.owner_references.iter().any(|r| {
                    r.uid == owner.key.uid
                        && r.block_owner_deletion == Some(true)
                        && owner_state(dep, r, &by_uid) != OwnerState::Dangling
                })
            });
            if !blocked {
                actions.push(Action::RemoveFinalizer {
                    object: owner.key.clone(),
                    finalizer: FOREGROUND_FINALIZER.into(),
                });
            }
        }
    }
    actions
}

fn owner_state(
    dep: &GcObject,
    r: &OwnerReference,
    by_uid: &HashMap<&str, &GcObject>,
) -> OwnerState {
    let Some(owner) = by_uid.get(r.uid.as_str()) else {
        return OwnerState::Dangling;
    };
    // A namespaced owner must live in the dependent's namespace; cluster-scoped owners may
    // own anything.
    if !owner.key.namespace.is_empty() && owner.key.namespace != dep.key.namespace {
        return OwnerState::Dangling;
    }
    if owner.deleting() && owner.has_finalizer(ORPHAN_FINALIZER) {
        OwnerState::Orphaning
    } else if owner.deleting() && owner.has_finalizer(FOREGROUND_FINALIZER) {
        OwnerState::Waiting
    } else {
        OwnerState::Solid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(kind: &str, name: &str, owners: &[(&str, bool)]) -> GcObject {
        GcObject {
            key: ObjectKey {
                api_version: "v1".into(),
                kind: kind.into(),
                namespace: "default".into(),
                name: name.into(),
                uid: format!("{name}-uid"),
            },
            owner_references: owners
                .iter()
                .map(|(owner, block)| OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: owner.to_string(),
                    uid: format!("{owner}-uid"),
                    controller: Some(true),
                    block_owner_deletion: Some(*block),
                })
                .collect(),
            deletion_timestamp: None,
            finalizers: Vec::new(),
        }
    }

    fn deleting(mut o: GcObject, finalizer: &str) -> GcObject {
        o.deletion_timestamp = Some("2026-01-01T00:00:00Z".into());
        o.finalizers.push(finalizer.into());
        o
    }

    fn summary(plan: &Plan) -> Vec<String> {
        plan.iter()
            .map(|a| match a {
                Action::Delete {
                    object,
                    propagation,
                } => format!("delete {} {propagation:?}", object.name),
                Action::SetOwnerReferences {
                    object,
                    owner_references,
                } => format!(
                    "owners {} -> [{}]",
                    object.name,
                    owner_references
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                Action::RemoveFinalizer { object, finalizer } => {
                    format!("unfinalize {} {finalizer}", object.name)
                }
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn dependents_of_a_vanished_owner_are_deleted_in_the_background() {
        let mut terminating = obj("Pod", "b", &[("gone", true)]);
        terminating.deletion_timestamp = Some("2026-01-01T00:00:00Z".into());
        let objects = [
            obj("ReplicaSet", "rs", &[]),
            obj("Pod", "a", &[("gone", true)]),
            terminating,
            obj("Pod", "c", &[("rs", true)]),
        ];
        assert_eq!(summary(&plan(&objects)), ["delete a Background"]);
    }

    #[test]
    fn a_dependent_with_a_live_owner_loses_only_its_dangling_reference() {
        let objects = [
            obj("ReplicaSet", "rs", &[]),
            obj("Pod", "a", &[("gone", true), ("rs", true)]),
        ];
        assert_eq!(summary(&plan(&objects)), ["owners a -> [rs]"]);
    }

    #[test]
    fn an_owner_in_another_namespace_does_not_count() {
        let mut owner = obj("ReplicaSet", "rs", &[]);
        owner.key.namespace = "other".into();
        let objects = [owner, obj("Pod", "a", &[("rs", true)])];
        assert_eq!(summary(&plan(&objects)), ["delete a Background"]);
    }

    #[test]
    fn foreground_deletion_deletes_dependents_and_holds_the_owner_until_they_are_gone() {
        let deploy = deleting(obj("Deployment", "d", &[]), FOREGROUND_FINALIZER);
        let rs = obj("ReplicaSet", "rs", &[("d", true)]);
        let pod = obj("Pod", "p", &[("rs", true)]);
        // The ReplicaSet has dependents, so it goes in the foreground as well.
        assert_eq!(
            summary(&plan(&[deploy.clone(), rs.clone(), pod.clone()])),
            ["delete rs Foreground"]
        );

        // The ReplicaSet now waits for its pod; the Deployment waits for the ReplicaSet.
        let rs = deleting(rs, FOREGROUND_FINALIZER);
        assert_eq!(
            summary(&plan(&[deploy.clone(), rs.clone(), pod])),
            ["delete p Background"]
        );

        // Pod gone: the ReplicaSet is released; the Deployment still waits for it.
        assert_eq!(
            summary(&plan(&[deploy.clone(), rs])),
            ["unfinalize rs foregroundDeletion"]
        );

        // ReplicaSet gone: the Deployment is released.
        assert_eq!(
            summary(&plan(&[deploy])),
            ["unfinalize d foregroundDeletion"]
        );
    }

    #[test]
    fn a_dependent_without_block_owner_deletion_does_not_hold_the_owner() {
        let owner = deleting(obj("ReplicaSet", "rs", &[]), FOREGROUND_FINALIZER);
        let mut pod = obj("Pod", "p", &[("rs", false)]);
        pod.deletion_timestamp = Some("2026-01-01T00:00:00Z".into());
        assert_eq!(
            summary(&plan(&[owner, pod])),
            ["unfinalize rs foregroundDeletion"]
        );
    }

    #[test]
    fn a_foreground_owner_is_dropped_from_dependents_that_have_another_live_owner() {
        let objects = [
            deleting(obj("ReplicaSet", "rs", &[]), FOREGROUND_FINALIZER),
            obj("ReplicaSet", "keeper", &[]),
            obj("Pod", "p", &[("rs", true), ("keeper", true)]),
        ];
        // The owner is released only once the reference is really gone (next pass).
        assert_eq!(summary(&plan(&objects)), ["owners p -> [keeper]"]);
    }

    #[test]
    fn orphan_deletion_strips_the_references_then_removes_the_finalizer() {
        let objects = [
            deleting(obj("ReplicaSet", "rs", &[]), ORPHAN_FINALIZER),
            obj("Pod", "a", &[("rs", true)]),
            obj("Pod", "b", &[("rs", true), ("gone", true)]),
        ];
        assert_eq!(
            summary(&plan(&objects)),
            ["owners a -> []", "owners b -> []", "unfinalize rs orphan"]
        );
    }

    #[test]
    fn objects_without_owners_or_with_live_owners_produce_no_actions() {
        let objects = [
            obj("ReplicaSet", "rs", &[]),
            obj("Pod", "a", &[("rs", true)]),
            obj("ConfigMap", "c", &[]),
        ];
        assert_eq!(plan(&objects), Vec::new());
    }
}
