//! The ReplicaSet controller: keep `spec.replicas` active pods matching the selector.
//!
//! One [`plan`] claims pods (adopts matching orphans, releases owned pods whose labels no longer
//! match), creates or deletes pods to reach the desired count, and reports status. It follows
//! Kubernetes' `ReplicaSetController.syncReplicaSet`.

use std::cmp::Ordering;
use std::time::Duration;

use ketch_api::time;

use chrono::{DateTime, Utc};
use ketch_api::apps::{ReplicaSet, ReplicaSetStatus};
use ketch_api::core::Pod;
use ketch_api::meta::ObjectMeta;
use ketch_api::selector::Selector;

use super::{
    Action, ObjectKey, Plan, Propagation, claim, controller_owner_ref, pod_is_active,
    pod_is_available, pod_phase, pod_ready_since,
};

/// The most pods one plan creates or deletes, like Kubernetes' `burstReplicas`: a scale from 0
/// to 100,000 proceeds in steps instead of one giant batch that would starve other work.
pub const BURST_REPLICAS: usize = 500;

/// Plans one sync of `rs` against `pods` (the pods of its namespace; others are ignored).
///
/// Returns nothing when the ReplicaSet has no spec or an invalid or empty selector (an empty
/// selector would claim every pod; admission rejects it, so this is a guard, not a feature).
pub fn plan(rs: &ReplicaSet, pods: &[Pod], now: &str) -> Plan {
    let Some(spec) = &rs.spec else {
        return Vec::new();
    };
    let selector = match Selector::from_label_selector(&spec.selector) {
        Ok(s) if !s.is_empty() => s,
        _ => return Vec::new(),
    };
    let now_t = time::parse(now);
    let rs_deleting = rs.metadata.deletion_timestamp.is_some();
    let mut actions = Vec::new();

    // Claim: the pods this ReplicaSet controls after adoption and release.
    let claimed: Vec<&Pod> = claim(
        pods.iter()
            .filter(|p| p.metadata.namespace() == rs.metadata.namespace()),
        |p: &Pod| &p.metadata,
        ObjectKey::pod,
        &selector,
        &owner_ref(rs),
        rs_deleting,
        &mut actions,
    );

    let active: Vec<&Pod> = claimed.into_iter().filter(|p| pod_is_active(p)).collect();
    let desired = spec.replicas.unwrap_or(1).max(0) as usize;

    if active.len() < desired && !rs_deleting {
        let template_meta = spec.template.metadata.clone().unwrap_or_default();
        for _ in 0..(desired - active.len()).min(BURST_REPLICAS) {
            actions.push(Action::CreatePod(Box::new(Pod {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                metadata: ObjectMeta {
                    generate_name: Some(format!("{}-", rs.metadata.name())),
                    namespace: rs.metadata.namespace.clone(),
                    labels: template_meta.labels.clone(),
                    annotations: template_meta.annotations.clone(),
                    owner_references: vec![owner_ref(rs)],
                    ..Default::default()
                },
                spec: spec.template.spec.clone(),
                status: None,
            })));
        }
    } else if active.len() > desired {
        let mut ranked: Vec<(DeleteRank, &Pod)> =
            active.iter().map(|p| (DeleteRank::of(p), *p)).collect();
        ranked.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, pod) in ranked
            .into_iter()
            .take((active.len() - desired).min(BURST_REPLICAS))
        {
            actions.push(Action::Delete {
                object: ObjectKey::pod(&pod.metadata),
                propagation: Propagation::Background,
            });
        }
    }

    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let template_labels = spec
        .template
        .metadata
        .as_ref()
        .map(|m| &m.labels)
        .filter(|l| !l.is_empty());
    let count = |f: &dyn Fn(&Pod) -> bool| active.iter().filter(|p| f(p)).count() as i32;
    let old = rs.status.clone().unwrap_or_default();
    let status = ReplicaSetStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: Some(count(&|p| {
            template_labels
                .is_none_or(|tl| tl.iter().all(|(k, v)| p.metadata.labels.get(k) == Some(v)))
        })),
        ready_replicas: Some(count(&|p| pod_ready_since(p).is_some())),
        available_replicas: Some(count(&|p| pod_is_available(p, min_ready, now_t))),
        observed_generation: rs.metadata.generation.or(old.observed_generation),
        conditions: old.conditions.clone(),
    };
    if status != old {
        actions.push(Action::UpdateReplicaSetStatus {
            replica_set: ObjectKey::replica_set(&rs.metadata),
            status,
        });
    }

    // A ready pod becomes available after minReadySeconds with no event to say so.
    if min_ready > 0
        && let Some(now_t) = now_t
    {
        let wait = active
            .iter()
            .filter(|p| !pod_is_available(p, min_ready, Some(now_t)))
            .filter_map(|p| pod_ready_since(p).flatten().and_then(time::parse))
            .map(|since| since + chrono::Duration::seconds(i64::from(min_ready)) - now_t)
            .filter_map(|d| d.to_std().ok())
            .min();
        if let Some(wait) = wait {
            actions.push(Action::RequeueAfter(wait.max(Duration::from_secs(1))));
        }
    }
    actions
}

fn owner_ref(rs: &ReplicaSet) -> ketch_api::meta::OwnerReference {
    controller_owner_ref("apps/v1", "ReplicaSet", &rs.metadata)
}

/// Sort key for scale-down: smaller deletes first. Field order is Kubernetes' `ActivePods`
/// ranking: unscheduled, then Pending < Unknown < Running, then not ready, then ready for the
/// shortest time, then most restarts, then newest; the name makes the order total.
#[derive(Debug, PartialEq, Eq)]
struct DeleteRank<'a> {
    scheduled: bool,
    phase: u8,
    ready: bool,
    ready_since: Option<DateTime<Utc>>,
    restarts: i32,
    created: Option<DateTime<Utc>>,
    name: &'a str,
}

impl<'a> DeleteRank<'a> {
    fn of(pod: &'a Pod) -> Self {
        let ready = pod_ready_since(pod);
        DeleteRank {
            scheduled: pod
                .spec
                .as_ref()
                .is_some_and(|s| s.node_name.as_deref().is_some_and(|n| !n.is_empty())),
            phase: match pod_phase(pod) {
                "Unknown" => 1,
                "Running" => 2,
                _ => 0,
            },
            ready: ready.is_some(),
            ready_since: ready.flatten().and_then(time::parse),
            restarts: pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.iter().map(|c| c.restart_count).max())
                .unwrap_or(0),
            created: pod
                .metadata
                .creation_timestamp
                .as_deref()
                .and_then(time::parse),
            name: pod.metadata.name(),
        }
    }
}

impl Ord for DeleteRank<'_> {
    fn cmp(&self, o: &Self) -> Ordering {
        self.scheduled
            .cmp(&o.scheduled)
            .then(self.phase.cmp(&o.phase))
            .then(self.ready.cmp(&o.ready))
            .then_with(|| {
                if self.ready && o.ready {
                    o.ready_since.cmp(&self.ready_since)
                } else {
                    Ordering::Equal
                }
            })
            .then(o.restarts.cmp(&self.restarts))
            .then(o.created.cmp(&self.created))
            .then(self.name.cmp(o.name))
    }
}

impl PartialOrd for DeleteRank<'_> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

#[cfg(test)]
mod tests {
    use ketch_api::apps::{PodTemplateSpec, ReplicaSetSpec};
    use ketch_api::core::{ContainerStatus, PodCondition, PodStatus};
    use ketch_api::selector::LabelSelector;

    use super::super::testing::*;
    use super::*;

    const NOW: &str = "2026-01-01T00:10:00Z";

    fn rs(replicas: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                generation: Some(3),
                ..meta("web-abc", "rs-uid")
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: labels(&[("app", "web")]),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: labels(&[("app", "web"), ("tier", "fe")]),
                        ..Default::default()
                    }),
                    spec: Some(pod_spec("nginx")),
                },
                min_ready_seconds: None,
            }),
            ..Default::default()
        }
    }

    fn mine(name: &str) -> Pod {
        owned_by(
            ready_pod(
                name,
                &format!("{name}-uid"),
                &[("app", "web"), ("tier", "fe")],
            ),
            controller_owner_ref("apps/v1", "ReplicaSet", &rs(0).metadata),
        )
    }

    fn creates(plan: &Plan) -> Vec<&Pod> {
        plan.iter()
            .filter_map(|a| match a {
                Action::CreatePod(p) => Some(&**p),
                _ => None,
            })
            .collect()
    }

    fn deletes(plan: &Plan) -> Vec<&str> {
        plan.iter()
            .filter_map(|a| match a {
                Action::Delete { object, .. } => Some(object.name.as_str()),
                _ => None,
            })
            .collect()
    }

    fn status(plan: &Plan) -> Option<&ReplicaSetStatus> {
        plan.iter().find_map(|a| match a {
            Action::UpdateReplicaSetStatus { status, .. } => Some(status),
            _ => None,
        })
    }

    #[test]
    fn scale_up_creates_missing_pods_from_the_template_with_a_controller_reference() {
        let plan = plan(&rs(3), &[mine("a")], NOW);
        let created = creates(&plan);
        assert_eq!(created.len(), 2);
        let p = created[0];
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-abc-"));
        assert_eq!(p.metadata.name, None);
        assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(p.metadata.labels, labels(&[("app", "web"), ("tier", "fe")]));
        assert_eq!(p.spec, Some(pod_spec("nginx")));
        let r = &p.metadata.owner_references[0];
        assert_eq!(
            (r.api_version.as_str(), r.kind.as_str(), r.name.as_str()),
            ("apps/v1", "ReplicaSet", "web-abc")
        );
        assert_eq!(r.uid, "rs-uid");
        assert_eq!(
            (r.controller, r.block_owner_deletion),
            (Some(true), Some(true))
        );
        assert_eq!(status(&plan).unwrap().replicas, 1);
    }

    #[test]
    fn a_huge_scale_up_is_capped_at_the_burst_size() {
        let plan = plan(&rs(100_000), &[], NOW);
        assert_eq!(creates(&plan).len(), BURST_REPLICAS);
    }

    #[test]
    fn scale_down_deletes_by_kubernetes_ranking() {
        let unscheduled = {
            let mut p = mine("unscheduled");
            p.spec.as_mut().unwrap().node_name = None;
            p.status.as_mut().unwrap().phase = Some("Pending".into());
            p.status.as_mut().unwrap().conditions.clear();
            p
        };
        let pending = {
            let mut p = mine("pending");
            p.status.as_mut().unwrap().phase = Some("Pending".into());
            p.status.as_mut().unwrap().conditions.clear();
            p
        };
        let not_ready = {
            let mut p = mine("not-ready");
            p.status.as_mut().unwrap().conditions[0].status = "False".into();
            p
        };
        let ready_recently = {
            let mut p = mine("ready-recently");
            p.status.as_mut().unwrap().conditions[0].last_transition_time =
                Some("2026-01-01T00:05:00Z".into());
            p
        };
        let restarted = {
            let mut p = mine("restarted");
            p.status.as_mut().unwrap().container_statuses = vec![ContainerStatus {
                name: "app".into(),
                restart_count: 4,
                ..Default::default()
            }];
            p
        };
        let newer = {
            let mut p = mine("newer");
            p.metadata.creation_timestamp = Some("2026-01-01T00:01:00Z".into());
            p
        };
        let oldest = mine("oldest");
        let pods = [
            oldest,
            newer,
            restarted,
            ready_recently,
            not_ready,
            pending,
            unscheduled,
        ];
        let plan = plan(&rs(1), &pods, NOW);
        assert_eq!(
            deletes(&plan),
            [
                "unscheduled",
                "pending",
                "not-ready",
                "ready-recently",
                "restarted",
                "newer"
            ]
        );
        assert!(creates(&plan).is_empty());
    }

    #[test]
    fn matching_orphans_are_adopted_and_pods_of_other_controllers_are_left_alone() {
        let orphan = ready_pod("orphan", "o-uid", &[("app", "web")]);
        let foreign = owned_by(
            ready_pod("foreign", "f-uid", &[("app", "web")]),
            controller_owner_ref("apps/v1", "ReplicaSet", &meta("other", "other-uid")),
        );
        let unrelated = ready_pod("db", "d-uid", &[("app", "db")]);
        let plan = plan(&rs(1), &[orphan, foreign, unrelated], NOW);
        assert_eq!(plan.len(), 2, "{plan:#?}");
        match &plan[0] {
            Action::SetOwnerReferences {
                object,
                owner_references,
            } => {
                assert_eq!(
                    (object.name.as_str(), object.uid.as_str()),
                    ("orphan", "o-uid")
                );
                assert_eq!(owner_references.len(), 1);
                assert_eq!(owner_references[0].uid, "rs-uid");
                assert_eq!(owner_references[0].controller, Some(true));
            }
            other => panic!("expected adoption, got {other:?}"),
        }
        let st = status(&plan).unwrap();
        assert_eq!(st.replicas, 1);
        // The orphan lacks the template's `tier` label.
        assert_eq!(st.fully_labeled_replicas, Some(0));
    }

    #[test]
    fn owned_pods_whose_labels_no_longer_match_are_released_and_replaced() {
        let mut moved = mine("moved");
        moved.metadata.labels = labels(&[("app", "debug")]);
        moved
            .metadata
            .owner_references
            .push(ketch_api::meta::OwnerReference {
                uid: "keep-me".into(),
                ..Default::default()
            });
        let plan = plan(&rs(1), &[moved], NOW);
        match &plan[0] {
            Action::SetOwnerReferences {
                object,
                owner_references,
            } => {
                assert_eq!(object.name, "moved");
                assert_eq!(owner_references.len(), 1);
                assert_eq!(owner_references[0].uid, "keep-me");
            }
            other => panic!("expected release, got {other:?}"),
        }
        assert_eq!(creates(&plan).len(), 1);
    }

    #[test]
    fn terminating_and_finished_pods_do_not_count_and_are_replaced() {
        let mut terminating = mine("terminating");
        terminating.metadata.deletion_timestamp = Some("2026-01-01T00:09:00Z".into());
        let mut failed = mine("failed");
        failed.status.as_mut().unwrap().phase = Some("Failed".into());
        let plan = plan(&rs(2), &[terminating, failed, mine("ok")], NOW);
        assert_eq!(creates(&plan).len(), 1);
        assert!(deletes(&plan).is_empty());
        assert_eq!(status(&plan).unwrap().replicas, 1);
    }

    #[test]
    fn availability_honors_min_ready_seconds_and_requeues_until_it_elapses() {
        let mut set = rs(3);
        set.spec.as_mut().unwrap().min_ready_seconds = Some(60);
        let mut fresh = mine("fresh");
        fresh.status.as_mut().unwrap().conditions[0].last_transition_time =
            Some("2026-01-01T00:09:30Z".into());
        let mut starting = mine("starting");
        starting.status = Some(PodStatus {
            phase: Some("Running".into()),
            conditions: vec![PodCondition {
                type_: "Ready".into(),
                status: "False".into(),
                ..Default::default()
            }],
            ..Default::default()
        });
        let plan = plan(&set, &[mine("old"), fresh, starting], NOW);
        let st = status(&plan).unwrap();
        assert_eq!(st.replicas, 3);
        assert_eq!(st.fully_labeled_replicas, Some(3));
        assert_eq!(st.ready_replicas, Some(2));
        assert_eq!(st.available_replicas, Some(1));
        assert_eq!(st.observed_generation, Some(3));
        assert_eq!(
            plan.last(),
            Some(&Action::RequeueAfter(Duration::from_secs(30)))
        );
    }

    #[test]
    fn a_converged_replica_set_plans_nothing() {
        let pods = [mine("a"), mine("b")];
        let mut set = rs(2);
        let first = plan(&set, &pods, NOW);
        set.status = status(&first).cloned();
        assert_eq!(plan(&set, &pods, NOW), Vec::new());
    }

    #[test]
    fn a_deleting_replica_set_neither_creates_nor_adopts() {
        let mut set = rs(3);
        set.metadata.deletion_timestamp = Some("2026-01-01T00:09:00Z".into());
        let plan = plan(&set, &[ready_pod("orphan", "o", &[("app", "web")])], NOW);
        assert!(creates(&plan).is_empty());
        assert!(
            !plan
                .iter()
                .any(|a| matches!(a, Action::SetOwnerReferences { .. }))
        );
    }
}
