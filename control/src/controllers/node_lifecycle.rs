//! Node lifecycle: a node whose agent stopped renewing its Lease is no longer Ready.
//!
//! Each agent renews a Lease named after its node in `kube-node-lease`. When the newest
//! sign of life (the Lease's renewTime, or the Ready condition's lastHeartbeatTime) is
//! older than the grace period, the node's Ready condition becomes `Unknown`, as the
//! Kubernetes node lifecycle controller does, and the scheduler stops placing Pods there.
//! The agent sets Ready back to True on its next heartbeat. Evicting the Pods of a dead
//! node (rate-limited, halted when many nodes fail at once) is not done yet.

use std::collections::HashMap;
use std::time::Duration;

use ketch_api::time;

use ketch_api::coordination::Lease;
use ketch_api::core::{Node, NodeCondition};

/// Where agents keep their node Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// Kubernetes' default node-monitor grace period.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(40);

/// The Ready conditions to write: for each node gone silent, its full condition list
/// with Ready replaced by `Unknown`.
pub fn plan(
    nodes: &[Node],
    leases: &[Lease],
    now: &str,
    grace: Duration,
) -> Vec<(String, Vec<NodeCondition>)> {
    let Some(now_t) = time::parse(now).map(|t| t.timestamp_millis()) else {
        return Vec::new();
    };
    let renewed: HashMap<&str, i64> = leases
        .iter()
        .filter(|l| l.metadata.namespace() == NODE_LEASE_NAMESPACE)
        .filter_map(|l| {
            let t = l
                .spec
                .as_ref()?
                .renew_time
                .as_deref()
                .and_then(time::parse)?;
            Some((l.metadata.name(), t.timestamp_millis()))
        })
        .collect();
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let mut out = Vec::new();
    for node in nodes {
        let conditions = node
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default();
        let Some(ready) = conditions.iter().find(|c| c.type_ == "Ready") else {
            continue;
        };
        if ready.status != "True" {
            continue;
        }
        let heartbeat = ready
            .last_heartbeat_time
            .as_deref()
            .and_then(time::parse)
            .map(|t| t.timestamp_millis());
        let last_seen = [heartbeat, renewed.get(node.metadata.name()).copied()]
            .into_iter()
            .flatten()
            .max();
        let silent = last_seen.is_none_or(|t| now_t - t > grace_ms);
        if !silent {
            continue;
        }
        let updated = conditions
            .into_iter()
            .map(|c| {
                if c.type_ == "Ready" {
                    NodeCondition {
                        status: "Unknown".into(),
                        reason: Some("NodeStatusUnknown".into()),
                        message: Some("Kubelet stopped posting node status.".into()),
                        last_transition_time: Some(now.to_string()),
                        ..c
                    }
                } else {
                    c
                }
            })
            .collect();
        out.push((node.metadata.name().to_string(), updated));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ketch_api::coordination::LeaseSpec;
    use ketch_api::core::NodeStatus;
    use ketch_api::meta::ObjectMeta;

    fn node(name: &str, ready: &str, heartbeat: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            status: Some(NodeStatus {
                conditions: vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    last_heartbeat_time: Some(heartbeat.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn lease(name: &str, renewed: &str) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(NODE_LEASE_NAMESPACE.into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                renew_time: Some(renewed.into()),
                lease_duration_seconds: Some(40),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    const NOW: &str = "2026-01-01T00:01:00Z";

    #[test]
    fn a_node_whose_lease_and_heartbeat_are_stale_becomes_unknown() {
        let nodes = [node("a", "True", "2026-01-01T00:00:00Z")];
        let leases = [lease("a", "2026-01-01T00:00:10.000000Z")];
        let plan = plan(&nodes, &leases, NOW, DEFAULT_GRACE);
        assert_eq!(plan.len(), 1);
        let ready = &plan[0].1[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("Unknown", Some("NodeStatusUnknown"))
        );
    }

    #[test]
    fn a_fresh_lease_keeps_a_node_ready_even_with_an_old_heartbeat() {
        let nodes = [node("a", "True", "2026-01-01T00:00:00Z")];
        let leases = [lease("a", "2026-01-01T00:00:50.000000Z")];
        assert!(plan(&nodes, &leases, NOW, DEFAULT_GRACE).is_empty());
    }

    #[test]
    fn nodes_already_not_ready_are_left_alone() {
        let nodes = [
            node("a", "Unknown", "2026-01-01T00:00:00Z"),
            node("b", "False", "2026-01-01T00:00:00Z"),
        ];
        assert!(plan(&nodes, &[], NOW, DEFAULT_GRACE).is_empty());
    }
}
