//! Node lifecycle: which nodes are alive, their `Ready` condition, the taints that keep
//! Pods off a dead node and evict the ones on it, and the brake that keeps a network blip
//! from becoming a mass reschedule. Pure: [`plan`] takes what the caches and the leader's
//! heartbeat table show and returns the writes; the runner does them.
//!
//! - **Alive.** A node that sends heartbeats to this leader ([`crate::liveness`]) is alive
//!   while its last one is within its grace (a few heartbeat intervals: seconds). A node
//!   this leader never heard from (an older agent, or every node just after a leader
//!   change) is judged by its Lease and its Ready condition's heartbeat against the long
//!   grace (`--node-grace-period`, 40 s), counted from no earlier than this controller's
//!   start: a new leader gives every node a fresh grace, as Nomad does after a failover.
//! - **Ready.** A silent node whose Ready is `True` becomes `Unknown`
//!   (`NodeStatusUnknown`); a node this controller marked so becomes `True` again as soon as
//!   its heartbeats come back.
//! - **Taints**, as Kubernetes sets them: Ready `Unknown` → `node.kubernetes.io/unreachable`,
//!   Ready `False` → `node.kubernetes.io/not-ready`, each with `NoSchedule` (at once: the
//!   scheduler stops placing Pods there) and `NoExecute` (the eviction controller,
//!   [`super::taint_eviction`], then evicts the Pods that do not tolerate it, after their
//!   `tolerationSeconds`). Both go as soon as the node is Ready again, and the Pods' pending
//!   evictions with them.
//! - **The brake.** Adding a `NoExecute` taint is rate-limited per zone (the
//!   `topology.kubernetes.io/zone` label; nodes without it form one zone), Kubernetes'
//!   `--node-eviction-rate` 0.1 nodes/s: the first dead node is tainted at once, the next
//!   one of its zone ten seconds later. A zone where at least
//!   [`LifecyclePolicy::unhealthy_zone_threshold`] of the nodes (and more than two) are not
//!   Ready is in partial disruption: large zones slow to the secondary rate, small ones stop.
//!   When every node of every zone is not Ready at once, the likelier cause is this control
//!   plane being cut off, not every node dying: no `NoExecute` taint is added, the existing
//!   ones are removed, and no Pod is marked not Ready.
//! - **Flap damping**, after BGP's route flap damping (RFC 2439): each time a node goes from
//!   Ready to not Ready it gains a penalty of [`FLAP_PENALTY`], which halves every
//!   [`LifecyclePolicy::flap_half_life`]. Over [`FLAP_SUPPRESS`] (two failures within about
//!   a half-life) it gets `ketch.dev/flapping:NoSchedule` until the penalty is back under
//!   [`FLAP_REUSE`] (two half-lives later for two failures): its Pods stay, but no new ones
//!   go there, so replacements never land on a node that is about to drop them again and a
//!   flapping node's Pods are evicted once, not at each flap. When at least
//!   `unhealthy_zone_threshold` of all nodes would be suppressed, none is: that is the
//!   control plane's network, not the nodes, and suppressing them all would stop all
//!   scheduling. A look where the control plane looks cut off adds no penalty.
//! - **Cordon.** A node with `spec.unschedulable` (`ketch cordon`, `ketch drain`) carries
//!   `node.kubernetes.io/unschedulable:NoSchedule`, as Kubernetes: the scheduler already
//!   skips such a node, and the taint shows why to whoever reads the node's taints. It goes
//!   when the node is uncordoned.
//! - **Pods** on a node that is not Ready are marked not Ready (their `Ready` condition
//!   `False`, reason `NodeNotReady`), so every EndpointSlice drops them and no gateway routes
//!   new requests there; the agent writes its own status again when it is back.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use ketch_api::coordination::Lease;
use ketch_api::core::{Node, NodeCondition, Pod, PodCondition, Taint};
use ketch_api::time;
use ketch_api::wellknown::{
    LABEL_ZONE, TAINT_FLAPPING, TAINT_NOT_READY, TAINT_UNREACHABLE, TAINT_UNSCHEDULABLE,
};

/// Where agents keep their node Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// Kubernetes' default node-monitor grace period: the grace of nodes judged by their Lease.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(40);
/// Why a node's Ready is `Unknown` when this controller set it.
pub const REASON_UNKNOWN: &str = "NodeStatusUnknown";
/// Why a Pod's Ready is `False` when this controller set it.
pub const REASON_POD_NODE_NOT_READY: &str = "NodeNotReady";
/// What one failure (Ready to not Ready) adds to a node's flap penalty.
pub const FLAP_PENALTY: f64 = 1000.0;
/// A node whose penalty reaches this is tainted `ketch.dev/flapping:NoSchedule`.
pub const FLAP_SUPPRESS: f64 = 1500.0;
/// ...and keeps the taint until its penalty is under this.
pub const FLAP_REUSE: f64 = 500.0;
/// The most penalty a node accrues: it is never suppressed for more than
/// log2(4000 / 500) = 3 half-lives after its last failure.
pub const FLAP_MAX: f64 = 4000.0;

/// How nodes are judged and how fast their Pods may be evicted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LifecyclePolicy {
    /// How long a node judged by its Lease may be silent.
    pub grace: Duration,
    /// `NoExecute` taints added per second per zone (Kubernetes: 0.1).
    pub eviction_rate: f64,
    /// The same in a large zone in partial disruption (Kubernetes: 0.01).
    pub secondary_eviction_rate: f64,
    /// The share of not-Ready nodes that puts a zone in partial disruption (0.55).
    pub unhealthy_zone_threshold: f64,
    /// Zones up to this many nodes stop evicting in partial disruption (50).
    pub large_cluster_threshold: usize,
    /// How fast a node's flap penalty decays (halves): see the module docs.
    pub flap_half_life: Duration,
}

impl Default for LifecyclePolicy {
    fn default() -> Self {
        Self {
            grace: DEFAULT_GRACE,
            eviction_rate: 0.1,
            secondary_eviction_rate: 0.01,
            unhealthy_zone_threshold: 0.55,
            large_cluster_threshold: 50,
            flap_half_life: Duration::from_secs(60),
        }
    }
}

/// A zone's health, as Kubernetes computes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneState {
    Normal,
    /// At least the threshold share, and more than two, of its nodes are not Ready.
    PartialDisruption,
    /// None of its nodes is Ready.
    FullDisruption,
}

/// A token bucket of one token: how `NoExecute` taints are paced per zone.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
}

impl Bucket {
    fn take(&mut self, now_ms: i64, rate: f64) -> bool {
        if rate <= 0.0 {
            return false;
        }
        let elapsed = (now_ms - self.at_ms).max(0) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * rate).min(1.0);
        self.at_ms = now_ms;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What the controller keeps between looks.
#[derive(Debug, Clone, Default)]
pub struct LifecycleState {
    /// When this controller started (ms): no node is judged silent before its grace has
    /// passed since then.
    started_ms: Option<i64>,
    buckets: HashMap<String, Bucket>,
    zones: BTreeMap<String, ZoneState>,
    flaps: HashMap<String, Flap>,
}

/// One node's flap damping.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Flap {
    penalty: f64,
    at_ms: i64,
    was_ready: bool,
    suppressed: bool,
}

impl Flap {
    /// Decays the penalty to `now_ms`, adds a failure if the node went from Ready to not
    /// Ready (and `count`), and says whether it is to be suppressed.
    fn update(&mut self, now_ms: i64, ready: bool, count: bool, half_life: Duration) -> bool {
        let half_life_ms = half_life.as_millis().max(1) as f64;
        let elapsed = (now_ms - self.at_ms).max(0) as f64;
        self.penalty *= 0.5f64.powf(elapsed / half_life_ms);
        self.at_ms = now_ms;
        if self.was_ready && !ready && count {
            self.penalty = (self.penalty + FLAP_PENALTY).min(FLAP_MAX);
        }
        self.was_ready = ready;
        self.suppressed = if self.suppressed {
            self.penalty >= FLAP_REUSE
        } else {
            self.penalty >= FLAP_SUPPRESS
        };
        self.suppressed
    }
}

/// One node's heartbeats as this leader saw them, on the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub at_ms: i64,
    pub grace_ms: i64,
}

/// What one look sees.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub nodes: &'a [Node],
    pub leases: &'a [Lease],
    /// This leader's heartbeat table.
    pub heartbeats: &'a HashMap<String, Heartbeat>,
    /// Now, as the API writes it.
    pub now: &'a str,
}

/// The writes one look asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Nodes whose Ready changes: their whole condition list.
    pub conditions: Vec<(String, Vec<NodeCondition>)>,
    /// Nodes whose taints change: their whole taint list.
    pub taints: Vec<(String, Vec<Taint>)>,
    /// Zones whose state changed, for the log.
    pub zones: Vec<(String, ZoneState)>,
    /// Nodes whose Pods are to be marked not Ready ([`pods_not_ready`]): every node that
    /// is not Ready after this look, none when the control plane looks cut off.
    pub not_ready: BTreeSet<String>,
}

fn ms(t: &str) -> Option<i64> {
    time::parse(t).map(|t| t.timestamp_millis())
}

fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
}

fn zone_of(node: &Node) -> &str {
    node.metadata
        .labels
        .get(LABEL_ZONE)
        .map_or("", String::as_str)
}

/// One look: see the module's documentation.
pub fn plan(seen: &Observed<'_>, policy: &LifecyclePolicy, state: &mut LifecycleState) -> Plan {
    let mut out = Plan::default();
    let Some(now_ms) = ms(seen.now) else {
        return out;
    };
    let started_ms = *state.started_ms.get_or_insert(now_ms);
    let renewed: HashMap<&str, i64> = seen
        .leases
        .iter()
        .filter(|l| l.metadata.namespace() == NODE_LEASE_NAMESPACE)
        .filter_map(|l| {
            let t = l.spec.as_ref()?.renew_time.as_deref().and_then(ms)?;
            Some((l.metadata.name(), t))
        })
        .collect();
    let grace_ms = i64::try_from(policy.grace.as_millis()).unwrap_or(i64::MAX);

    // 1. Ready, after this look.
    let mut ready: HashMap<&str, String> = HashMap::new();
    for node in seen.nodes {
        let name = node.metadata.name();
        let Some(cond) = ready_condition(node) else {
            continue;
        };
        // A heartbeat from before this controller started (this server led before, and
        // someone else led since) says nothing about now.
        let beat = seen.heartbeats.get(name).filter(|b| b.at_ms >= started_ms);
        let alive = match beat {
            Some(b) => now_ms - b.at_ms <= b.grace_ms,
            None => {
                let heartbeat = cond.last_heartbeat_time.as_deref().and_then(ms);
                let last_seen = [heartbeat, renewed.get(name).copied(), Some(started_ms)]
                    .into_iter()
                    .flatten()
                    .max()
                    .unwrap_or(started_ms);
                now_ms - last_seen <= grace_ms
            }
        };
        let mine = cond.reason.as_deref() == Some(REASON_UNKNOWN);
        let status = match (cond.status.as_str(), alive) {
            ("True", false) => Some(("Unknown", REASON_UNKNOWN, "the node's agent went silent")),
            ("Unknown", true) if mine && beat.is_some() => Some((
                "True",
                "NodeHeartbeatResumed",
                "the node's agent sends heartbeats again",
            )),
            _ => None,
        };
        let effective = match status {
            Some((s, reason, message)) => {
                let conditions = node
                    .status
                    .as_ref()
                    .map(|st| st.conditions.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| {
                        if c.type_ == "Ready" {
                            NodeCondition {
                                status: s.into(),
                                reason: Some(reason.into()),
                                message: Some(message.into()),
                                last_transition_time: Some(seen.now.to_string()),
                                ..c
                            }
                        } else {
                            c
                        }
                    })
                    .collect();
                out.conditions.push((name.to_string(), conditions));
                s.to_string()
            }
            None => cond.status.clone(),
        };
        ready.insert(name, effective);
    }

    // 2. Zones.
    let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for node in seen.nodes {
        let entry = counts.entry(zone_of(node)).or_default();
        entry.0 += 1;
        if ready.get(node.metadata.name()).is_none_or(|s| s != "True") {
            entry.1 += 1;
        }
    }
    let mut zones = BTreeMap::new();
    for (zone, (total, not_ready)) in &counts {
        let zs = if *not_ready == *total {
            ZoneState::FullDisruption
        } else if *not_ready > 2
            && *not_ready as f64 / *total as f64 >= policy.unhealthy_zone_threshold
        {
            ZoneState::PartialDisruption
        } else {
            ZoneState::Normal
        };
        if state.zones.get(*zone).copied().unwrap_or(ZoneState::Normal) != zs {
            out.zones.push((zone.to_string(), zs));
        }
        zones.insert(zone.to_string(), zs);
    }
    let cut_off = !zones.is_empty() && zones.values().all(|z| *z == ZoneState::FullDisruption);
    state.zones = zones;

    // 3. Flap damping.
    let mut flapping: BTreeSet<&str> = BTreeSet::new();
    for node in seen.nodes {
        let name = node.metadata.name();
        let Some(status) = ready.get(name) else {
            continue;
        };
        let is_ready = status == "True";
        let flap = state.flaps.entry(name.to_string()).or_insert(Flap {
            penalty: 0.0,
            at_ms: now_ms,
            was_ready: is_ready,
            suppressed: false,
        });
        if flap.update(now_ms, is_ready, !cut_off, policy.flap_half_life) {
            flapping.insert(name);
        }
    }
    state
        .flaps
        .retain(|name, _| ready.contains_key(name.as_str()));
    if !flapping.is_empty()
        && flapping.len() as f64 / seen.nodes.len() as f64 >= policy.unhealthy_zone_threshold
    {
        flapping.clear();
    }

    // 4. Taints.
    for node in seen.nodes {
        let name = node.metadata.name();
        let zone = zone_of(node);
        let current: &[Taint] = node
            .spec
            .as_ref()
            .map(|s| s.taints.as_slice())
            .unwrap_or_default();
        // A node with no Ready condition yet is not judged (its Ready taints are left as they
        // are), but it may be cordoned.
        let judged = ready.contains_key(name);
        let managed = |t: &Taint| {
            (judged
                && (t.key == TAINT_NOT_READY
                    || t.key == TAINT_UNREACHABLE
                    || t.key == TAINT_FLAPPING))
                || (t.key == TAINT_UNSCHEDULABLE && t.effect == "NoSchedule")
        };
        let key = match ready.get(name).map(String::as_str) {
            Some("Unknown") => Some(TAINT_UNREACHABLE),
            Some("False") => Some(TAINT_NOT_READY),
            _ => None,
        };
        let mut desired: Vec<Taint> = current.iter().filter(|t| !managed(t)).cloned().collect();
        // Kept as written (its time too) while it applies, made now when it starts to.
        let mut no_schedule = |key: &str| {
            let existing = current
                .iter()
                .find(|t| t.key == key && t.effect == "NoSchedule");
            desired.push(existing.cloned().unwrap_or_else(|| Taint {
                key: key.into(),
                value: None,
                effect: "NoSchedule".into(),
                time_added: Some(seen.now.to_string()),
            }));
        };
        if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
            no_schedule(TAINT_UNSCHEDULABLE);
        }
        if flapping.contains(name) {
            no_schedule(TAINT_FLAPPING);
        }
        if let Some(key) = key {
            for effect in ["NoSchedule", "NoExecute"] {
                let existing = current.iter().find(|t| t.key == key && t.effect == effect);
                if effect == "NoExecute" && cut_off {
                    continue;
                }
                match existing {
                    Some(t) => desired.push(t.clone()),
                    None => {
                        if effect == "NoExecute" {
                            let rate = match state.zones.get(zone) {
                                Some(ZoneState::PartialDisruption) => {
                                    let size = counts.get(zone).map_or(0, |c| c.0);
                                    if size > policy.large_cluster_threshold {
                                        policy.secondary_eviction_rate
                                    } else {
                                        0.0
                                    }
                                }
                                _ => policy.eviction_rate,
                            };
                            let bucket = state.buckets.entry(zone.to_string()).or_insert(Bucket {
                                tokens: 1.0,
                                at_ms: now_ms,
                            });
                            if !bucket.take(now_ms, rate) {
                                continue;
                            }
                        }
                        desired.push(Taint {
                            key: key.into(),
                            value: None,
                            effect: effect.into(),
                            time_added: Some(seen.now.to_string()),
                        });
                    }
                }
            }
        }
        if desired.as_slice() != current {
            out.taints.push((name.to_string(), desired));
        }
    }

    if !cut_off {
        out.not_ready = ready
            .iter()
            .filter(|(_, s)| s.as_str() != "True")
            .map(|(n, _)| n.to_string())
            .collect();
    }
    out
}

/// The Pods of `pods` on a node of `not_ready` (a [`Plan::not_ready`]) that still say they
/// are Ready: namespace, name, and their whole condition list with Ready `False`
/// (`NodeNotReady`).
pub fn pods_not_ready<'p>(
    pods: impl IntoIterator<Item = &'p Pod>,
    not_ready: &BTreeSet<String>,
    now: &str,
) -> Vec<(String, String, Vec<PodCondition>)> {
    let mut out = Vec::new();
    for pod in pods {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
            continue;
        };
        if !not_ready.contains(node) {
            continue;
        }
        let Some(status) = &pod.status else { continue };
        let Some(i) = status
            .conditions
            .iter()
            .position(|c| c.type_ == "Ready" && c.status == "True")
        else {
            continue;
        };
        let mut conditions = status.conditions.clone();
        conditions[i] = PodCondition {
            status: "False".into(),
            reason: Some(REASON_POD_NODE_NOT_READY.into()),
            message: Some(format!("node {node} is not ready")),
            last_transition_time: Some(now.to_string()),
            ..conditions[i].clone()
        };
        out.push((
            pod.metadata.namespace().to_string(),
            pod.metadata.name().to_string(),
            conditions,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ketch_api::coordination::LeaseSpec;
    use ketch_api::core::{NodeSpec, NodeStatus, PodSpec, PodStatus};
    use ketch_api::meta::ObjectMeta;

    const T0: &str = "2026-01-01T00:00:00Z";

    /// `secs` after [`T0`].
    fn at(secs: i64) -> String {
        time::format(
            time::parse(T0).unwrap() + chrono::Duration::seconds(secs),
            chrono::SecondsFormat::Secs,
        )
    }

    fn t0_ms() -> i64 {
        ms(T0).unwrap()
    }

    fn node(name: &str, ready: &str, zone: &str) -> Node {
        let mut labels = BTreeMap::new();
        if !zone.is_empty() {
            labels.insert(LABEL_ZONE.to_string(), zone.to_string());
        }
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels,
                ..Default::default()
            },
            status: Some(NodeStatus {
                conditions: vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    last_heartbeat_time: Some(T0.into()),
                    reason: (ready == "Unknown").then(|| REASON_UNKNOWN.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Nodes a, b and c, Ready, in no zone.
    fn three_ready() -> [Node; 3] {
        [
            node("a", "True", ""),
            node("b", "True", ""),
            node("c", "True", ""),
        ]
    }

    fn tainted(mut n: Node, key: &str, effects: &[&str]) -> Node {
        n.spec.get_or_insert_with(NodeSpec::default).taints = effects
            .iter()
            .map(|e| Taint {
                key: key.into(),
                value: None,
                effect: (*e).into(),
                time_added: Some(T0.into()),
            })
            .collect();
        n
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

    fn beat(secs_after_t0: i64) -> Heartbeat {
        Heartbeat {
            at_ms: t0_ms() + secs_after_t0 * 1000,
            grace_ms: 4000,
        }
    }

    fn ready_pod(name: &str, node: &str) -> Pod {
        Pod {
            api_version: None,
            kind: None,
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                conditions: vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    /// One look at `now` over `nodes` (no leases or Pods) with `beats`.
    fn look(
        nodes: &[Node],
        beats: &[(&str, Heartbeat)],
        now: &str,
        state: &mut LifecycleState,
    ) -> Plan {
        let heartbeats = beats.iter().map(|(n, b)| (n.to_string(), *b)).collect();
        plan(
            &Observed {
                nodes,
                leases: &[],
                heartbeats: &heartbeats,
                now,
            },
            &LifecyclePolicy::default(),
            state,
        )
    }

    fn ready_of(p: &Plan, node: &str) -> Option<String> {
        p.conditions
            .iter()
            .find(|(n, _)| n == node)
            .map(|(_, c)| c[0].status.clone())
    }

    fn taints_of(p: &Plan, node: &str) -> Option<Vec<(String, String)>> {
        p.taints.iter().find(|(n, _)| n == node).map(|(_, ts)| {
            ts.iter()
                .map(|t| (t.key.clone(), t.effect.clone()))
                .collect()
        })
    }

    fn unreachable_taints() -> Vec<(String, String)> {
        vec![
            (TAINT_UNREACHABLE.to_string(), "NoSchedule".to_string()),
            (TAINT_UNREACHABLE.to_string(), "NoExecute".to_string()),
        ]
    }

    #[test]
    fn a_node_whose_heartbeats_stop_is_unknown_after_its_grace_and_tainted_at_once() {
        let nodes = three_ready();
        let mut state = LifecycleState::default();
        let alive = [("a", beat(0)), ("b", beat(3)), ("c", beat(3))];
        // Started before the grace ran out: a fresh controller waits out its own grace.
        look(&nodes, &alive, &at(-10), &mut state);
        assert_eq!(look(&nodes, &alive, &at(4), &mut state), Plan::default());
        let p = look(&nodes, &alive, &at(5), &mut state);
        assert_eq!(ready_of(&p, "a").as_deref(), Some("Unknown"));
        assert_eq!(ready_of(&p, "b"), None);
        assert_eq!(taints_of(&p, "a"), Some(unreachable_taints()));
        assert_eq!(p.taints[0].1[1].time_added.as_deref(), Some(at(5).as_str()));
    }

    #[test]
    fn a_node_judged_by_its_lease_has_the_long_grace_and_a_new_leader_gives_a_fresh_one() {
        let nodes = [node("a", "True", ""), node("b", "True", "")];
        let leases = [lease("a", &at(0)), lease("b", &at(120))];
        let run = |now: &str, state: &mut LifecycleState| {
            plan(
                &Observed {
                    nodes: &nodes,
                    leases: &leases,
                    heartbeats: &HashMap::new(),
                    now,
                },
                &LifecyclePolicy::default(),
                state,
            )
        };
        // A controller started at t+100 (a new leader) waits 40 s from its start.
        let mut state = LifecycleState::default();
        assert_eq!(run(&at(100), &mut state), Plan::default());
        assert_eq!(run(&at(139), &mut state), Plan::default());
        let p = run(&at(141), &mut state);
        assert_eq!(ready_of(&p, "a").as_deref(), Some("Unknown"));
        assert_eq!(ready_of(&p, "b"), None, "renewed at t+120");
    }

    #[test]
    fn a_node_marked_unknown_is_ready_again_when_its_heartbeats_resume_and_loses_the_taints() {
        let nodes = [
            tainted(
                node("a", "Unknown", ""),
                TAINT_UNREACHABLE,
                &["NoSchedule", "NoExecute"],
            ),
            node("b", "True", ""),
        ];
        let mut state = LifecycleState::default();
        look(&nodes, &[], &at(50), &mut state);
        let p = look(
            &nodes,
            &[("a", beat(99)), ("b", beat(99))],
            &at(100),
            &mut state,
        );
        assert_eq!(ready_of(&p, "a").as_deref(), Some("True"));
        assert_eq!(taints_of(&p, "a"), Some(vec![]));
        // Set Unknown by someone else (not this controller's reason): left to its agent.
        let mut other = node("a", "Unknown", "");
        other.status.as_mut().unwrap().conditions[0].reason = Some("Other".into());
        let p = look(
            &[other],
            &[("a", beat(99))],
            &at(100),
            &mut LifecycleState::default(),
        );
        assert_eq!(ready_of(&p, "a"), None);
    }

    #[test]
    fn heartbeats_from_before_this_controller_started_do_not_count() {
        let nodes = [node("a", "True", ""), node("b", "True", "")];
        let mut state = LifecycleState::default();
        // This server led before (beats at t+0), someone else led since; it leads again at
        // t+300: the old beats would make every node look dead.
        let stale = [("a", beat(0)), ("b", beat(0))];
        assert_eq!(look(&nodes, &stale, &at(300), &mut state), Plan::default());
        assert_eq!(look(&nodes, &stale, &at(339), &mut state), Plan::default());
    }

    #[test]
    fn a_user_taint_is_kept_and_ready_false_brings_the_not_ready_taints() {
        let mut n = node("a", "False", "");
        n.spec = Some(NodeSpec {
            taints: vec![Taint {
                key: "gpu".into(),
                value: Some("yes".into()),
                effect: "NoSchedule".into(),
                time_added: None,
            }],
            ..Default::default()
        });
        let p = look(
            &[n, node("b", "True", ""), node("c", "True", "")],
            &[("b", beat(0)), ("c", beat(0))],
            &at(1),
            &mut LifecycleState::default(),
        );
        assert_eq!(
            taints_of(&p, "a"),
            Some(vec![
                ("gpu".to_string(), "NoSchedule".to_string()),
                (TAINT_NOT_READY.to_string(), "NoSchedule".to_string()),
                (TAINT_NOT_READY.to_string(), "NoExecute".to_string()),
            ])
        );
    }

    #[test]
    fn noexecute_taints_are_paced_per_zone_and_noschedule_is_not() {
        // Four of ten nodes of zone z1 die at once (40 %: normal), and one of z2's three.
        let mut nodes: Vec<Node> = (0..10)
            .map(|i| node(&format!("n{i}"), "True", "z1"))
            .collect();
        for i in 0..3 {
            nodes.push(node(&format!("m{i}"), "True", "z2"));
        }
        let dead = ["n0", "n1", "n2", "n3", "m0"];
        // The dead ones' last heartbeat was at t+0; the others beat a second ago.
        let beats_at = |now: i64| -> Vec<(String, Heartbeat)> {
            nodes
                .iter()
                .map(|n| {
                    let name = n.metadata.name().to_string();
                    let last = if dead.contains(&name.as_str()) {
                        0
                    } else {
                        now - 1
                    };
                    (name, beat(last))
                })
                .collect()
        };
        let mut state = LifecycleState::default();
        let mut current = nodes.clone();
        let look_at = |now: i64, state: &mut LifecycleState, current: &mut Vec<Node>| {
            let beats = beats_at(now);
            let beats: Vec<(&str, Heartbeat)> =
                beats.iter().map(|(n, b)| (n.as_str(), *b)).collect();
            let p = look(current, &beats, &at(now), state);
            for (name, taints) in &p.taints {
                let n = current
                    .iter_mut()
                    .find(|n| n.metadata.name() == name)
                    .unwrap();
                n.spec.get_or_insert_with(NodeSpec::default).taints = taints.clone();
            }
            for (name, conds) in &p.conditions {
                let n = current
                    .iter_mut()
                    .find(|n| n.metadata.name() == name)
                    .unwrap();
                n.status.as_mut().unwrap().conditions = conds.clone();
            }
            p
        };
        look_at(-1, &mut state, &mut current);
        let p = look_at(100, &mut state, &mut current);
        let with = |p: &Plan, effect: &str| {
            p.taints
                .iter()
                .filter(|(_, ts)| ts.iter().any(|t| t.effect == effect))
                .count()
        };
        assert_eq!(with(&p, "NoSchedule"), 5, "every dead node at once");
        assert_eq!(with(&p, "NoExecute"), 2, "one per zone: {:?}", p.taints);
        // Nothing new a second later; ten seconds later, one more in z1, which still waits.
        let p = look_at(101, &mut state, &mut current);
        assert!(p.taints.is_empty(), "{:?}", p.taints);
        let p = look_at(110, &mut state, &mut current);
        assert_eq!(p.taints.len(), 1, "z1's next node: {:?}", p.taints);
        assert!(p.taints[0].0.starts_with('n'));
    }

    #[test]
    fn a_small_zone_in_partial_disruption_stops_evicting() {
        // Three of five down: 60 % ≥ 55 % and more than two.
        let nodes: Vec<Node> = (0..5).map(|i| node(&format!("n{i}"), "True", "")).collect();
        let beats: Vec<(String, Heartbeat)> = (0..5)
            .map(|i| (format!("n{i}"), beat(if i < 3 { 0 } else { 100 })))
            .collect();
        let beats: Vec<(&str, Heartbeat)> = beats.iter().map(|(n, b)| (n.as_str(), *b)).collect();
        let mut state = LifecycleState::default();
        look(&nodes, &beats, &at(-60), &mut state);
        let p = look(&nodes, &beats, &at(100), &mut state);
        assert_eq!(p.zones, vec![(String::new(), ZoneState::PartialDisruption)]);
        assert!(
            p.taints
                .iter()
                .all(|(_, ts)| ts.iter().all(|t| t.effect == "NoSchedule")),
            "{:?}",
            p.taints
        );
    }

    #[test]
    fn when_every_node_goes_silent_nothing_is_evicted_and_existing_noexecute_taints_go() {
        let nodes = [
            tainted(
                node("a", "True", ""),
                TAINT_UNREACHABLE,
                &["NoSchedule", "NoExecute"],
            ),
            node("b", "True", ""),
            node("c", "True", ""),
        ];
        let heartbeats: HashMap<String, Heartbeat> = ["a", "b", "c"]
            .iter()
            .map(|n| (n.to_string(), beat(0)))
            .collect();
        let mut state = LifecycleState::default();
        look(&nodes, &[], &at(-60), &mut state);
        let now = at(60);
        let p = plan(
            &Observed {
                nodes: &nodes,
                leases: &[],
                heartbeats: &heartbeats,
                now: &now,
            },
            &LifecyclePolicy::default(),
            &mut state,
        );
        assert_eq!(p.conditions.len(), 3, "all are Unknown");
        assert_eq!(p.zones, vec![(String::new(), ZoneState::FullDisruption)]);
        for (_, ts) in &p.taints {
            assert!(ts.iter().all(|t| t.effect == "NoSchedule"), "{ts:?}");
        }
        assert!(p.not_ready.is_empty(), "traffic is left alone");
    }

    #[test]
    fn pods_on_a_node_that_is_not_ready_are_marked_not_ready_once() {
        let nodes = three_ready();
        let mut state = LifecycleState::default();
        look(&nodes, &[], &at(-60), &mut state);
        let p = look(
            &nodes,
            &[("a", beat(0)), ("b", beat(10)), ("c", beat(10))],
            &at(10),
            &mut state,
        );
        assert_eq!(p.not_ready, BTreeSet::from(["a".to_string()]));
        let mut not_ready_already = ready_pod("q", "a");
        not_ready_already.status.as_mut().unwrap().conditions[0].status = "False".into();
        let pods = [ready_pod("p", "a"), ready_pod("r", "b"), not_ready_already];
        let marked = pods_not_ready(&pods, &p.not_ready, &at(10));
        assert_eq!(marked.len(), 1);
        let (ns, name, conds) = &marked[0];
        assert_eq!((ns.as_str(), name.as_str()), ("default", "p"));
        assert_eq!(conds[0].status, "False");
        assert_eq!(conds[0].reason.as_deref(), Some(REASON_POD_NODE_NOT_READY));
    }

    #[test]
    fn a_cordoned_node_gets_the_unschedulable_taint_and_loses_it_when_uncordoned() {
        let cordoned = |mut n: Node, on: bool| {
            n.spec.get_or_insert_with(NodeSpec::default).unschedulable = Some(on);
            n
        };
        let beats = [("a", beat(0)), ("b", beat(0)), ("c", beat(0))];
        let mut state = LifecycleState::default();
        let [a, b, c] = three_ready();
        let nodes = [cordoned(a, true), b, c];
        let p = look(&nodes, &beats, &at(1), &mut state);
        let want = vec![(TAINT_UNSCHEDULABLE.to_string(), "NoSchedule".to_string())];
        assert_eq!(taints_of(&p, "a"), Some(want.clone()));
        assert_eq!(p.taints.len(), 1, "{:?}", p.taints);

        // Once written it stays as it is (its time too); a user's taint is kept beside it.
        let mut a = cordoned(tainted(node("a", "True", ""), "gpu", &["NoSchedule"]), true);
        a.spec
            .as_mut()
            .unwrap()
            .taints
            .push(p.taints[0].1[0].clone());
        let mut nodes = [a, node("b", "True", ""), node("c", "True", "")];
        assert_eq!(look(&nodes, &beats, &at(2), &mut state).taints, vec![]);

        // A cordoned node that dies has both; uncordoned, only the user's taint is left.
        nodes[0] = cordoned(nodes[0].clone(), false);
        let p = look(&nodes, &beats, &at(3), &mut state);
        assert_eq!(
            taints_of(&p, "a"),
            Some(vec![("gpu".to_string(), "NoSchedule".to_string())])
        );
        let mut dead = cordoned(node("a", "False", ""), true);
        dead.spec.as_mut().unwrap().taints.clear();
        let p = look(
            &[dead, node("b", "True", ""), node("c", "True", "")],
            &beats[1..],
            &at(4),
            &mut LifecycleState::default(),
        );
        assert_eq!(
            taints_of(&p, "a"),
            Some(vec![
                (TAINT_UNSCHEDULABLE.to_string(), "NoSchedule".to_string()),
                (TAINT_NOT_READY.to_string(), "NoSchedule".to_string()),
                (TAINT_NOT_READY.to_string(), "NoExecute".to_string()),
            ])
        );
    }

    /// One look a second at a, b and c (no zone) for `secs` seconds, each sending a
    /// heartbeat in the seconds `alive(node, s)` says, with every plan's writes applied to
    /// the nodes as the runner does. Returns the `NoExecute` taints added, and for each node
    /// the seconds it carried `ketch.dev/flapping`.
    fn simulate(
        secs: i64,
        alive: impl Fn(&str, i64) -> bool,
    ) -> (usize, HashMap<String, Vec<i64>>) {
        let mut current = three_ready().to_vec();
        let mut state = LifecycleState::default();
        look(&current, &[], &at(-60), &mut state);
        let mut last_beat: HashMap<&str, i64> = [("a", -1), ("b", -1), ("c", -1)].into();
        let mut noexecute = 0;
        let mut flapping: HashMap<String, Vec<i64>> = HashMap::new();
        for s in 0..secs {
            for (name, last) in last_beat.iter_mut() {
                if alive(name, s) {
                    *last = s;
                }
            }
            let beats: Vec<(&str, Heartbeat)> =
                last_beat.iter().map(|(n, t)| (*n, beat(*t))).collect();
            let p = look(&current, &beats, &at(s), &mut state);
            for (name, ts) in &p.taints {
                let n = current
                    .iter_mut()
                    .find(|n| n.metadata.name() == name)
                    .unwrap();
                let before = n.spec.as_ref().map_or(0, |sp| {
                    sp.taints.iter().filter(|t| t.effect == "NoExecute").count()
                });
                let after = ts.iter().filter(|t| t.effect == "NoExecute").count();
                noexecute += after.saturating_sub(before);
                n.spec.get_or_insert_with(NodeSpec::default).taints = ts.clone();
            }
            for (name, conds) in &p.conditions {
                let n = current
                    .iter_mut()
                    .find(|n| n.metadata.name() == name)
                    .unwrap();
                n.status.as_mut().unwrap().conditions = conds.clone();
            }
            for n in &current {
                let taints = n
                    .spec
                    .as_ref()
                    .map(|sp| sp.taints.as_slice())
                    .unwrap_or(&[]);
                if taints
                    .iter()
                    .any(|t| t.key == TAINT_FLAPPING && t.effect == "NoSchedule")
                {
                    flapping
                        .entry(n.metadata.name().to_string())
                        .or_default()
                        .push(s);
                }
            }
        }
        (noexecute, flapping)
    }

    #[test]
    fn a_flapping_node_is_tainted_no_faster_than_the_zone_rate() {
        // a: dead 5 s, alive 1 s, for a minute.
        let (noexecute, _) = simulate(60, |n, s| n != "a" || s % 6 == 5);
        assert!(
            noexecute <= 7,
            "at most one per 10 s (+ the first): {noexecute}"
        );
    }

    #[test]
    fn a_node_that_fails_twice_in_a_minute_takes_no_new_pods_until_it_has_been_steady() {
        // a is silent from 10 s to 16 s and from 30 s to 36 s.
        let down = |s: i64| (10..16).contains(&s) || (30..36).contains(&s);
        let (_, flapping) = simulate(240, |n, s| n != "a" || !down(s));
        let a = flapping.get("a").cloned().unwrap_or_default();
        assert!(!a.contains(&20), "one failure is no flapping: {a:?}");
        // Found out again at 34 s: 1000 halved over 24 s, plus 1000, is over 1500.
        assert_eq!(a.first(), Some(&34), "{a:?}");
        // Kept while its penalty (about 1760 at 34 s) is over 500: about 108 s more.
        assert!(a.contains(&100) && a.contains(&140), "{a:?}");
        assert!(!a.contains(&150), "{a:?}");
        assert_eq!(
            a.len() as i64,
            a.last().unwrap() - a.first().unwrap() + 1,
            "one stretch"
        );
        assert!(!flapping.contains_key("b") && !flapping.contains_key("c"));
    }

    #[test]
    fn nodes_that_fail_together_are_not_suppressed() {
        // The control plane cut off twice: every node silent at once.
        let down = |s: i64| (10..16).contains(&s) || (30..36).contains(&s);
        let (_, flapping) = simulate(120, |_, s| !down(s));
        assert!(flapping.is_empty(), "{flapping:?}");
        // Two of three nodes flapping together: a network problem, not two bad nodes, and
        // suppressing both would leave one node for all new Pods.
        let (_, flapping) = simulate(120, |n, s| n == "c" || !down(s));
        assert!(flapping.is_empty(), "{flapping:?}");
    }
}
