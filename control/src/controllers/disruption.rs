//! Voluntary disruption: the status of each PodDisruptionBudget ([`plan`]) and whether a Pod
//! may be evicted under its budget ([`decide_eviction`]), as Kubernetes' disruption
//! controller and eviction subresource decide them. Pure; the runner writes the status and
//! the API server's `pods/{name}/eviction` handler acts on the decision.
//!
//! - **Expected Pods.** A numeric `minAvailable` counts the Pods the selector matches. A
//!   percentage, and any `maxUnavailable`, count the *replicas the Pods' controllers ask
//!   for*: each distinct controller of a matching Pod once, a ReplicaSet's `spec.replicas`,
//!   or its Deployment's when a Deployment controls it (Kubernetes' rule, so a rollout's
//!   surge or a Pod still being created does not move the budget). Pods without a
//!   controller are left out of that count. A controller that cannot be found makes the
//!   status fail safe: no disruption allowed, condition `SyncFailed`.
//! - **Healthy** Pods are Ready and not being deleted, and not among `disruptedPods`: the
//!   Pods an eviction was granted for in the last [`DELETION_TIMEOUT`], which may still show
//!   as Ready until their deletion is seen.
//! - **Allowed**: `currentHealthy - desiredHealthy`, never below 0, and 0 while no Pod is
//!   expected (a budget whose Pods are not there yet must not let the first ones go).
//!
//! An eviction decrements `disruptionsAllowed` and records the Pod in `disruptedPods` with a
//! compare-and-set on the budget's resourceVersion, so concurrent evictions are serialized
//! by the store; the controller's own status write is a compare-and-set too, so it never
//! puts back an allowance an eviction just used.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use ketch_api::apps::{Deployment, ReplicaSet};
use ketch_api::core::Pod;
use ketch_api::policy::{
    ALWAYS_ALLOW, CONDITION_DISRUPTION_ALLOWED, Condition, PodDisruptionBudget,
    PodDisruptionBudgetStatus,
};
use ketch_api::selector::Selector;
use ketch_api::time;

use super::{controller_ref, pod_phase, pod_ready_since};

/// How long a Pod an eviction was granted for is expected to take to go away; until then it
/// does not count as healthy (Kubernetes: two minutes).
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);
/// The most Pods `disruptedPods` may hold: more means evictions the controller has not
/// caught up with (Kubernetes' bound).
pub const MAX_DISRUPTED_PODS: usize = 2000;

/// The Pods of `pods` (of the budget's namespace) the budget's selector matches. No
/// selector matches nothing; `{}` matches every Pod. A selector that does not parse
/// (admission refuses those) matches nothing.
pub fn selects(pdb: &PodDisruptionBudget, pod: &Pod) -> bool {
    pod.metadata.namespace() == pdb.metadata.namespace()
        && pdb
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .and_then(|s| Selector::from_label_selector(s).ok())
            .is_some_and(|s| s.matches(&pod.metadata.labels))
}

fn is_ready(pod: &Pod) -> bool {
    pod_ready_since(pod).is_some()
}

/// What one look at a budget decides.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The new status, when it differs from the stored one.
    pub status: Option<PodDisruptionBudgetStatus>,
    /// Look again after this long even if nothing changes: the first `disruptedPods` entry
    /// expires then.
    pub recheck_after: Option<Duration>,
    /// Matching Pods without a controller, left out of a percentage's count (for the log).
    pub unmanaged: Vec<String>,
}

/// The expected Pod count of the controllers of `pods`: see the module documentation.
fn expected_scale(
    pods: &[&Pod],
    replica_sets: &[&ReplicaSet],
    deployments: &[&Deployment],
    unmanaged: &mut Vec<String>,
) -> Result<i32, String> {
    let mut seen = HashSet::new();
    let mut total: i64 = 0;
    for pod in pods {
        let Some(r) = controller_ref(&pod.metadata) else {
            unmanaged.push(pod.metadata.name().to_string());
            continue;
        };
        if !seen.insert(r.uid.clone()) {
            continue;
        }
        let not_found = || format!("found no controllers for pod {:?}", pod.metadata.name());
        if r.kind != "ReplicaSet" || r.api_version != "apps/v1" {
            return Err(not_found());
        }
        let rs = replica_sets
            .iter()
            .find(|rs| rs.metadata.uid.as_deref() == Some(r.uid.as_str()))
            .ok_or_else(not_found)?;
        let replicas = match controller_ref(&rs.metadata).filter(|d| d.kind == "Deployment") {
            Some(d) => {
                let d = deployments
                    .iter()
                    .find(|x| x.metadata.uid.as_deref() == Some(d.uid.as_str()))
                    .ok_or_else(not_found)?;
                d.spec.as_ref().and_then(|s| s.replicas)
            }
            None => rs.spec.as_ref().and_then(|s| s.replicas),
        };
        // The controller that owns two matching Pods is counted once (by its uid above).
        total += i64::from(replicas.unwrap_or(1).max(0));
    }
    Ok(total.min(i64::from(i32::MAX)) as i32)
}

/// `(expectedPods, desiredHealthy)` of the budget over its matching `pods`.
fn expected_and_desired(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    replica_sets: &[&ReplicaSet],
    deployments: &[&Deployment],
    unmanaged: &mut Vec<String>,
) -> Result<(i32, i32), String> {
    let spec = pdb.spec.as_ref();
    if let Some(max) = spec.and_then(|s| s.max_unavailable.as_ref()) {
        let expected = expected_scale(pods, replica_sets, deployments, unmanaged)?;
        let desired = (expected - max.scaled(expected, true)).max(0);
        return Ok((expected, desired));
    }
    match spec.and_then(|s| s.min_available.as_ref()) {
        Some(min) if min.is_percent() => {
            let expected = expected_scale(pods, replica_sets, deployments, unmanaged)?;
            Ok((expected, min.scaled(expected, true)))
        }
        Some(min) => Ok((
            i32::try_from(pods.len()).unwrap_or(i32::MAX),
            min.scaled(0, true),
        )),
        None => Ok((0, 0)),
    }
}

/// The `DisruptionAllowed` condition for `status`, keeping the stored one's transition
/// time when its status does not change.
fn condition(
    old: &[Condition],
    allowed: bool,
    reason: &str,
    message: Option<String>,
    generation: Option<i64>,
    now: &str,
) -> Condition {
    let status = if allowed { "True" } else { "False" };
    let since = old
        .iter()
        .find(|c| c.type_ == CONDITION_DISRUPTION_ALLOWED && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.to_string());
    Condition {
        type_: CONDITION_DISRUPTION_ALLOWED.into(),
        status: status.into(),
        observed_generation: generation,
        last_transition_time: Some(since),
        reason: Some(reason.into()),
        message,
    }
}

/// One look at a budget: `pods`, `replica_sets` and `deployments` are those of its
/// namespace (others are ignored).
pub fn plan(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    replica_sets: &[&ReplicaSet],
    deployments: &[&Deployment],
    now: &str,
) -> Plan {
    let mut out = Plan::default();
    let Some(now_t) = time::parse(now) else {
        return out;
    };
    let old = pdb.status.clone().unwrap_or_default();
    let generation = pdb.metadata.generation;
    let matching: Vec<&Pod> = pods.iter().copied().filter(|p| selects(pdb, p)).collect();
    let status = match expected_and_desired(
        pdb,
        &matching,
        replica_sets,
        deployments,
        &mut out.unmanaged,
    ) {
        Err(message) => PodDisruptionBudgetStatus {
            observed_generation: generation,
            disrupted_pods: old.disrupted_pods.clone(),
            disruptions_allowed: 0,
            current_healthy: old.current_healthy,
            desired_healthy: old.desired_healthy,
            expected_pods: old.expected_pods,
            conditions: vec![condition(
                &old.conditions,
                false,
                "SyncFailed",
                Some(message),
                generation,
                now,
            )],
        },
        Ok((expected, desired)) => {
            // Entries for Pods still there, not yet being deleted, and not expired.
            let timeout = chrono::Duration::from_std(DELETION_TIMEOUT).unwrap_or_default();
            let mut disrupted = BTreeMap::new();
            let mut first_expiry: Option<chrono::DateTime<chrono::Utc>> = None;
            for pod in &matching {
                if pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let Some(at) = old.disrupted_pods.get(pod.metadata.name()) else {
                    continue;
                };
                let Some(expires) = time::parse(at).map(|t| t + timeout) else {
                    continue;
                };
                if expires > now_t {
                    disrupted.insert(pod.metadata.name().to_string(), at.clone());
                    first_expiry = Some(first_expiry.map_or(expires, |f| f.min(expires)));
                }
            }
            out.recheck_after = first_expiry.and_then(|t| (t - now_t).to_std().ok());
            let healthy = matching
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| !disrupted.contains_key(p.metadata.name()))
                .filter(|p| is_ready(p))
                .count();
            let healthy = i32::try_from(healthy).unwrap_or(i32::MAX);
            let allowed = if expected <= 0 {
                0
            } else {
                (healthy - desired).max(0)
            };
            let (reason, ok) = if allowed > 0 {
                ("SufficientPods", true)
            } else {
                ("InsufficientPods", false)
            };
            PodDisruptionBudgetStatus {
                observed_generation: generation,
                disrupted_pods: disrupted,
                disruptions_allowed: allowed,
                current_healthy: healthy,
                desired_healthy: desired,
                expected_pods: expected,
                conditions: vec![condition(
                    &old.conditions,
                    ok,
                    reason,
                    None,
                    generation,
                    now,
                )],
            }
        }
    };
    if pdb.status.as_ref() != Some(&status) {
        out.status = Some(status);
    }
    out
}

/// What an eviction of a Pod does.
#[derive(Debug, Clone, PartialEq)]
pub enum EvictionDecision {
    /// Delete the Pod; no budget is involved (none matches, the Pod is not running, or it is
    /// not Ready and its budget lets such Pods go).
    Delete,
    /// Write this status to the budget (compare-and-set on the budget as read), then delete
    /// the Pod.
    Budgeted(Box<PodDisruptionBudgetStatus>),
    /// Refuse with 429: the budget does not allow it now. The message says why (a cause of
    /// the answer).
    Refused(String),
    /// Refuse with 403: the budget's status is unusable.
    Forbidden(String),
    /// Refuse with 500: more than one budget matches the Pod.
    MultipleBudgets,
}

/// Whether `pod` may be evicted, given every budget of its namespace. `now` is recorded in
/// `disruptedPods`.
pub fn decide_eviction(pod: &Pod, budgets: &[&PodDisruptionBudget], now: &str) -> EvictionDecision {
    // A Pod that is not running, or already going, disrupts nothing by being deleted.
    if matches!(pod_phase(pod), "Succeeded" | "Failed" | "Pending" | "")
        || pod.metadata.deletion_timestamp.is_some()
    {
        return EvictionDecision::Delete;
    }
    let matching: Vec<&&PodDisruptionBudget> = budgets.iter().filter(|b| selects(b, pod)).collect();
    let pdb = match matching.as_slice() {
        [] => return EvictionDecision::Delete,
        [one] => **one,
        _ => return EvictionDecision::MultipleBudgets,
    };
    let status = pdb.status.clone().unwrap_or_default();
    let observed = status.observed_generation.unwrap_or(0) >= pdb.metadata.generation.unwrap_or(0)
        && pdb.status.is_some();
    if !is_ready(pod) {
        let policy = pdb
            .spec
            .as_ref()
            .and_then(|s| s.unhealthy_pod_eviction_policy.as_deref());
        // An unready Pod counts for nothing: letting it go never lowers the healthy count.
        // IfHealthyBudget (the default) still waits for the budget to be met, so a Pod
        // that is only slow to start is not taken while the rest is short.
        if policy == Some(ALWAYS_ALLOW)
            || (observed
                && status.desired_healthy > 0
                && status.current_healthy >= status.desired_healthy)
        {
            return EvictionDecision::Delete;
        }
    }
    let name = pdb.metadata.name();
    if !observed {
        return EvictionDecision::Refused(format!(
            "The disruption budget {name} is still being processed by the server."
        ));
    }
    if status.disruptions_allowed < 0 {
        return EvictionDecision::Forbidden("pdb disruptions allowed is negative".into());
    }
    if status.disrupted_pods.len() > MAX_DISRUPTED_PODS {
        return EvictionDecision::Forbidden(
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller".into(),
        );
    }
    if status.disruptions_allowed == 0 {
        return EvictionDecision::Refused(format!(
            "The disruption budget {name} needs {} healthy pods and has {} currently",
            status.desired_healthy, status.current_healthy
        ));
    }
    let mut next = status;
    next.disruptions_allowed -= 1;
    next.disrupted_pods
        .insert(pod.metadata.name().to_string(), now.to_string());
    if next.disruptions_allowed == 0 {
        next.conditions = vec![condition(
            &next.conditions,
            false,
            "InsufficientPods",
            None,
            next.observed_generation,
            now,
        )];
    }
    EvictionDecision::Budgeted(Box::new(next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::controller_owner_ref;
    use crate::controllers::testing::set_ready;
    use crate::controllers::testing::{meta, owned_by, ready_pod};
    use ketch_api::apps::{DeploymentSpec, ReplicaSetSpec};
    use ketch_api::core::IntOrString;
    use ketch_api::meta::ObjectMeta;
    use ketch_api::policy::PodDisruptionBudgetSpec;
    use ketch_api::selector::LabelSelector;

    const NOW: &str = "2026-01-01T00:10:00Z";

    fn budget(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudget {
        PodDisruptionBudget {
            api_version: None,
            kind: None,
            metadata: ObjectMeta {
                generation: Some(1),
                ..meta("web", "pdb-1")
            },
            spec: Some(PodDisruptionBudgetSpec {
                min_available: min,
                max_unavailable: max,
                selector: Some(LabelSelector {
                    match_labels: [("app".to_string(), "web".to_string())].into(),
                    ..Default::default()
                }),
                unhealthy_pod_eviction_policy: None,
            }),
            status: None,
        }
    }

    fn pct(s: &str) -> Option<IntOrString> {
        Some(IntOrString::String(s.into()))
    }

    /// A Deployment of `replicas`, its ReplicaSet, and `ready` Ready Pods of it.
    fn workload(replicas: i32, ready: usize) -> (Deployment, ReplicaSet, Vec<Pod>) {
        let d = Deployment {
            metadata: meta("web", "d-1"),
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut rs_meta = meta("web-1", "rs-1");
        rs_meta
            .owner_references
            .push(controller_owner_ref("apps/v1", "Deployment", &d.metadata));
        let rs = ReplicaSet {
            metadata: rs_meta,
            // The ReplicaSet's own count differs: mid-rollout, the Deployment's is the one.
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas + 5),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pods = (0..ready)
            .map(|i| {
                owned_by(
                    ready_pod(&format!("web-{i}"), &format!("p-{i}"), &[("app", "web")]),
                    controller_owner_ref("apps/v1", "ReplicaSet", &rs.metadata),
                )
            })
            .collect();
        (d, rs, pods)
    }

    fn look(pdb: &PodDisruptionBudget, d: &Deployment, rs: &ReplicaSet, pods: &[Pod]) -> Plan {
        let pods: Vec<&Pod> = pods.iter().collect();
        plan(pdb, &pods, &[rs], &[d], NOW)
    }

    fn status_of(p: &Plan) -> &PodDisruptionBudgetStatus {
        p.status.as_ref().expect("a status write")
    }

    #[test]
    fn a_numeric_min_available_counts_the_matching_pods_and_allows_the_surplus() {
        let (d, rs, pods) = workload(4, 3);
        let p = look(&budget(Some(IntOrString::Int(2)), None), &d, &rs, &pods);
        let s = status_of(&p);
        assert_eq!(
            (
                s.expected_pods,
                s.desired_healthy,
                s.current_healthy,
                s.disruptions_allowed
            ),
            (3, 2, 3, 1)
        );
        assert_eq!(s.observed_generation, Some(1));
        assert_eq!(s.conditions[0].type_, CONDITION_DISRUPTION_ALLOWED);
        assert_eq!(
            (
                s.conditions[0].status.as_str(),
                s.conditions[0].reason.as_deref()
            ),
            ("True", Some("SufficientPods"))
        );
        // Written once: the same look over the stored status writes nothing.
        let mut stored = budget(Some(IntOrString::Int(2)), None);
        stored.status = p.status.clone();
        assert_eq!(look(&stored, &d, &rs, &pods).status, None);
    }

    #[test]
    fn percentages_and_max_unavailable_count_the_deployments_replicas_rounding_up() {
        // 5 replicas wanted, 4 Ready: 50 % of 5 rounds up to 3 needed, 1 may go.
        let (d, rs, pods) = workload(5, 4);
        let s = look(&budget(pct("50%"), None), &d, &rs, &pods)
            .status
            .unwrap();
        assert_eq!(
            (s.expected_pods, s.desired_healthy, s.disruptions_allowed),
            (5, 3, 1)
        );
        // maxUnavailable 30 % of 5 rounds up to 2 unavailable: 3 needed.
        let s = look(&budget(None, pct("30%")), &d, &rs, &pods)
            .status
            .unwrap();
        assert_eq!(
            (s.expected_pods, s.desired_healthy, s.disruptions_allowed),
            (5, 3, 1)
        );
        let s = look(&budget(None, Some(IntOrString::Int(0))), &d, &rs, &pods)
            .status
            .unwrap();
        assert_eq!((s.desired_healthy, s.disruptions_allowed), (5, 0));
        assert_eq!(s.conditions[0].reason.as_deref(), Some("InsufficientPods"));
    }

    #[test]
    fn unready_terminating_and_recently_evicted_pods_are_not_healthy() {
        let (d, rs, mut pods) = workload(4, 4);
        pods[0].status.as_mut().unwrap().conditions[0].status = "False".into();
        pods[1].metadata.deletion_timestamp = Some(NOW.into());
        let mut pdb = budget(Some(IntOrString::Int(1)), None);
        pdb.status = Some(PodDisruptionBudgetStatus {
            disrupted_pods: [
                ("web-2".to_string(), "2026-01-01T00:09:00Z".to_string()),
                // Expired: two minutes passed and the Pod is still there.
                ("web-3".to_string(), "2026-01-01T00:07:00Z".to_string()),
                // Gone.
                ("web-9".to_string(), "2026-01-01T00:09:30Z".to_string()),
            ]
            .into(),
            ..Default::default()
        });
        let p = look(&pdb, &d, &rs, &pods);
        let s = status_of(&p);
        assert_eq!((s.current_healthy, s.disruptions_allowed), (1, 0));
        assert_eq!(
            s.disrupted_pods.keys().collect::<Vec<_>>(),
            ["web-2"],
            "expired and vanished entries are dropped"
        );
        assert_eq!(p.recheck_after, Some(Duration::from_secs(60)));
    }

    #[test]
    fn no_expected_pods_allows_nothing_and_a_missing_controller_fails_safe() {
        let (d, rs, _) = workload(3, 0);
        let s = look(&budget(Some(IntOrString::Int(0)), None), &d, &rs, &[])
            .status
            .unwrap();
        assert_eq!((s.expected_pods, s.disruptions_allowed), (0, 0));

        let (_, _, pods) = workload(3, 3);
        let pods: Vec<&Pod> = pods.iter().collect();
        let s = plan(&budget(pct("50%"), None), &pods, &[], &[], NOW)
            .status
            .unwrap();
        assert_eq!(s.disruptions_allowed, 0);
        assert_eq!(s.conditions[0].reason.as_deref(), Some("SyncFailed"));
        assert!(
            s.conditions[0]
                .message
                .as_deref()
                .is_some_and(|m| m.contains("found no controllers for pod \"web-0\"")),
            "{s:?}"
        );
    }

    #[test]
    fn a_pod_without_a_controller_is_left_out_of_a_percentage() {
        let (d, rs, mut pods) = workload(2, 2);
        pods.push(ready_pod("bare", "p-bare", &[("app", "web")]));
        let p = look(&budget(pct("100%"), None), &d, &rs, &pods);
        let s = status_of(&p);
        assert_eq!(
            (s.expected_pods, s.current_healthy, s.disruptions_allowed),
            (2, 3, 1)
        );
        assert_eq!(p.unmanaged, ["bare"]);
    }

    fn with_status(
        mut pdb: PodDisruptionBudget,
        allowed: i32,
        healthy: i32,
        desired: i32,
    ) -> PodDisruptionBudget {
        pdb.status = Some(PodDisruptionBudgetStatus {
            observed_generation: Some(1),
            disruptions_allowed: allowed,
            current_healthy: healthy,
            desired_healthy: desired,
            expected_pods: healthy,
            ..Default::default()
        });
        pdb
    }

    #[test]
    fn an_eviction_takes_one_allowed_disruption_and_records_the_pod() {
        let pdb = with_status(budget(Some(IntOrString::Int(2)), None), 1, 3, 2);
        let pod = ready_pod("web-0", "p-0", &[("app", "web")]);
        let EvictionDecision::Budgeted(s) = decide_eviction(&pod, &[&pdb], NOW) else {
            panic!("expected a budgeted eviction");
        };
        assert_eq!(s.disruptions_allowed, 0);
        assert_eq!(s.disrupted_pods.get("web-0").map(String::as_str), Some(NOW));
        assert_eq!(s.conditions[0].status, "False");

        // With the allowance used, the next one is refused, saying why.
        let mut used = pdb.clone();
        used.status = Some(*s);
        let other = ready_pod("web-1", "p-1", &[("app", "web")]);
        assert_eq!(
            decide_eviction(&other, &[&used], NOW),
            EvictionDecision::Refused(
                "The disruption budget web needs 2 healthy pods and has 3 currently".into()
            )
        );
    }

    #[test]
    fn evictions_without_a_budget_or_of_pods_not_running_just_delete() {
        let pdb = with_status(budget(Some(IntOrString::Int(2)), None), 0, 2, 2);
        let other = ready_pod("db-0", "p-9", &[("app", "db")]);
        assert_eq!(
            decide_eviction(&other, &[&pdb], NOW),
            EvictionDecision::Delete
        );
        let mut pending = ready_pod("web-0", "p-0", &[("app", "web")]);
        pending.status.as_mut().unwrap().phase = Some("Pending".into());
        assert_eq!(
            decide_eviction(&pending, &[&pdb], NOW),
            EvictionDecision::Delete
        );
        let mut going = ready_pod("web-1", "p-1", &[("app", "web")]);
        going.metadata.deletion_timestamp = Some(NOW.into());
        assert_eq!(
            decide_eviction(&going, &[&pdb], NOW),
            EvictionDecision::Delete
        );
    }

    #[test]
    fn two_budgets_stale_status_and_negative_allowance_refuse() {
        let pdb = with_status(budget(Some(IntOrString::Int(1)), None), 1, 2, 1);
        let pod = ready_pod("web-0", "p-0", &[("app", "web")]);
        let mut second = pdb.clone();
        second.metadata.name = Some("web-2".into());
        assert_eq!(
            decide_eviction(&pod, &[&pdb, &second], NOW),
            EvictionDecision::MultipleBudgets
        );
        let mut stale = pdb.clone();
        stale.metadata.generation = Some(2);
        assert!(matches!(
            decide_eviction(&pod, &[&stale], NOW),
            EvictionDecision::Refused(m) if m.contains("still being processed")
        ));
        let never_seen = budget(Some(IntOrString::Int(1)), None);
        assert!(matches!(
            decide_eviction(&pod, &[&never_seen], NOW),
            EvictionDecision::Refused(_)
        ));
        let negative = with_status(budget(Some(IntOrString::Int(1)), None), -1, 2, 1);
        assert!(matches!(
            decide_eviction(&pod, &[&negative], NOW),
            EvictionDecision::Forbidden(_)
        ));
    }

    #[test]
    fn an_unready_pod_goes_when_the_budget_is_met_or_the_policy_always_allows() {
        let mut unready = ready_pod("web-0", "p-0", &[("app", "web")]);
        unready.status.as_mut().unwrap().conditions[0].status = "False".into();
        let met = with_status(budget(Some(IntOrString::Int(2)), None), 0, 2, 2);
        assert_eq!(
            decide_eviction(&unready, &[&met], NOW),
            EvictionDecision::Delete
        );
        let short = with_status(budget(Some(IntOrString::Int(2)), None), 0, 1, 2);
        assert!(matches!(
            decide_eviction(&unready, &[&short], NOW),
            EvictionDecision::Refused(_)
        ));
        let mut always = short.clone();
        always.spec.as_mut().unwrap().unhealthy_pod_eviction_policy = Some(ALWAYS_ALLOW.into());
        assert_eq!(
            decide_eviction(&unready, &[&always], NOW),
            EvictionDecision::Delete
        );
        // A Ready Pod is still held by the budget under AlwaysAllow.
        let mut ready = unready.clone();
        set_ready(&mut ready, NOW);
        assert!(matches!(
            decide_eviction(&ready, &[&always], NOW),
            EvictionDecision::Refused(_)
        ));
    }
}
