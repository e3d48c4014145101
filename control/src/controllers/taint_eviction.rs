//! Taint-based eviction: a Pod bound to a node with a `NoExecute` taint it does not
//! tolerate is evicted at once; one it tolerates for `tolerationSeconds` is evicted that
//! long after the taint was added; one it tolerates without a limit stays. Pure: [`plan`]
//! returns the evictions due now and when the next one falls due; the runner deletes the
//! Pods through the API (their owners replace them) and records a `TaintManagerEviction`
//! Event. Bare Pods are not recreated, as in Kubernetes.
//!
//! When several tolerations match, the shortest limit counts; when several taints apply,
//! the earliest deadline does (Kubernetes' taint manager).

use std::collections::HashMap;

use ketch_api::core::{Node, Pod, Taint};
use ketch_api::time;

use crate::scheduler::tolerates;

/// One Pod to evict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: String,
    /// Why, for the Event: the taint and how long it was tolerated.
    pub message: String,
}

/// The Pods to evict at `now`, and the wall-clock ms of the next eviction due (to look
/// again then).
pub fn plan(pods: &[Pod], nodes: &[Node], now: &str) -> (Vec<Eviction>, Option<i64>) {
    let Some(now_ms) = time::parse(now).map(|t| t.timestamp_millis()) else {
        return (Vec::new(), None);
    };
    let taints: HashMap<&str, Vec<&Taint>> = nodes
        .iter()
        .filter_map(|n| {
            let ts: Vec<&Taint> = n
                .spec
                .as_ref()?
                .taints
                .iter()
                .filter(|t| t.effect == "NoExecute")
                .collect();
            (!ts.is_empty()).then(|| (n.metadata.name(), ts))
        })
        .collect();
    let mut out = Vec::new();
    let mut next: Option<i64> = None;
    for pod in pods {
        let Some(spec) = &pod.spec else { continue };
        let Some(node) = spec.node_name.as_deref() else {
            continue;
        };
        let Some(node_taints) = taints.get(node) else {
            continue;
        };
        if pod.metadata.deletion_timestamp.is_some()
            || matches!(
                pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        {
            continue;
        }
        // The earliest deadline over the taints, with the one that sets it.
        let mut due: Option<(i64, &Taint, Option<i64>)> = None;
        for taint in node_taints {
            let matching: Vec<_> = spec
                .tolerations
                .iter()
                .filter(|t| tolerates(t, taint))
                .collect();
            let deadline = if matching.is_empty() {
                Some((now_ms, None))
            } else if matching.iter().any(|t| t.toleration_seconds.is_none()) {
                None
            } else {
                let secs = matching
                    .iter()
                    .filter_map(|t| t.toleration_seconds)
                    .min()
                    .unwrap_or(0)
                    .max(0);
                let added = taint
                    .time_added
                    .as_deref()
                    .and_then(time::parse)
                    .map_or(now_ms, |t| t.timestamp_millis());
                Some((added + secs * 1000, Some(secs)))
            };
            if let Some((at, secs)) = deadline
                && due.is_none_or(|(d, _, _)| at < d)
            {
                due = Some((at, taint, secs));
            }
        }
        let Some((at, taint, secs)) = due else {
            continue;
        };
        if at > now_ms {
            next = Some(next.map_or(at, |n| n.min(at)));
            continue;
        }
        let tolerated = match secs {
            Some(s) => format!("tolerated for {s}s"),
            None => "not tolerated".to_string(),
        };
        out.push(Eviction {
            namespace: pod.metadata.namespace().to_string(),
            name: pod.metadata.name().to_string(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            node: node.to_string(),
            message: format!(
                "Marking for deletion Pod {}/{}: node {node} has taint {}:{} ({tolerated})",
                pod.metadata.namespace(),
                pod.metadata.name(),
                taint.key,
                taint.effect
            ),
        });
    }
    (out, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ketch_api::core::{NodeSpec, PodSpec, PodStatus, Toleration};
    use ketch_api::meta::ObjectMeta;
    use ketch_api::wellknown::TAINT_UNREACHABLE;

    const ADDED: &str = "2026-01-01T00:00:00Z";

    fn at(secs: i64) -> String {
        time::format(
            time::parse(ADDED).unwrap() + chrono::Duration::seconds(secs),
            chrono::SecondsFormat::Secs,
        )
    }

    fn node(name: &str, taints: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: taints
                    .iter()
                    .map(|(k, e)| Taint {
                        key: (*k).into(),
                        value: None,
                        effect: (*e).into(),
                        time_added: Some(ADDED.into()),
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(name: &str, node: &str, tolerations: Vec<Toleration>) -> Pod {
        Pod {
            api_version: None,
            kind: None,
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("{name}-uid")),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                tolerations,
                ..Default::default()
            }),
            status: Some(PodStatus::default()),
        }
    }

    fn tolerate(key: &str, secs: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: secs,
            ..Default::default()
        }
    }

    fn names(e: &[Eviction]) -> Vec<&str> {
        e.iter().map(|e| e.name.as_str()).collect()
    }

    #[test]
    fn each_pod_leaves_when_its_toleration_runs_out() {
        let nodes = [
            node("dead", &[(TAINT_UNREACHABLE, "NoExecute")]),
            node("ok", &[]),
        ];
        let pods = [
            pod("none", "dead", vec![]),
            pod("two", "dead", vec![tolerate(TAINT_UNREACHABLE, Some(2))]),
            pod(
                "thirty",
                "dead",
                vec![tolerate(TAINT_UNREACHABLE, Some(30))],
            ),
            pod("forever", "dead", vec![tolerate(TAINT_UNREACHABLE, None)]),
            pod("elsewhere", "ok", vec![]),
        ];
        let (now, next) = plan(&pods, &nodes, &at(0));
        assert_eq!(names(&now), ["none"]);
        assert_eq!(next, time::parse(&at(2)).map(|t| t.timestamp_millis()));
        assert_eq!(
            now[0].message,
            "Marking for deletion Pod default/none: node dead has taint \
             node.kubernetes.io/unreachable:NoExecute (not tolerated)"
        );
        let (due, _) = plan(&pods, &nodes, &at(2));
        assert_eq!(names(&due), ["none", "two"]);
        let (due, next) = plan(&pods, &nodes, &at(31));
        assert_eq!(names(&due), ["none", "two", "thirty"]);
        assert_eq!(next, None, "the one tolerating forever stays");
    }

    #[test]
    fn the_shortest_matching_limit_and_the_earliest_taint_count() {
        let nodes = [node(
            "dead",
            &[
                (TAINT_UNREACHABLE, "NoExecute"),
                ("maintenance", "NoExecute"),
            ],
        )];
        let everything = Toleration {
            operator: Some("Exists".into()),
            toleration_seconds: Some(60),
            ..Default::default()
        };
        let pods = [pod(
            "p",
            "dead",
            vec![everything, tolerate(TAINT_UNREACHABLE, Some(5))],
        )];
        assert!(plan(&pods, &nodes, &at(4)).0.is_empty());
        assert_eq!(names(&plan(&pods, &nodes, &at(5)).0), ["p"]);
    }

    #[test]
    fn noschedule_taints_terminating_and_finished_pods_are_left_alone() {
        let nodes = [
            node("cordoned", &[("x", "NoSchedule")]),
            node("dead", &[(TAINT_UNREACHABLE, "NoExecute")]),
        ];
        let mut going = pod("going", "dead", vec![]);
        going.metadata.deletion_timestamp = Some(ADDED.into());
        let mut done = pod("done", "dead", vec![]);
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        let pods = [pod("stays", "cordoned", vec![]), going, done];
        assert_eq!(plan(&pods, &nodes, &at(100)), (Vec::new(), None));
    }
}
