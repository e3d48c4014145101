//! Spreading: what placement knows of the pods on each node beyond their resources
//! ([`PodTopology`]), and the PodTopologySpread filter and score built from it for one
//! placement ([`Spread`]).
//!
//! Two kinds of spreading, as in kube-scheduler:
//! - **Default spreading.** A pod that sets no `topologySpreadConstraints` and has a
//!   controller owner (a ReplicaSet, ...) is spread from the other pods of that owner by
//!   score only: kube-scheduler's system defaults, hostname with maxSkew 3 and
//!   `topology.kubernetes.io/zone` with maxSkew 5, both `ScheduleAnyway`. "Pods of the same
//!   owner" is the controller owner's uid (Kubernetes selects by the owning Service's or
//!   ReplicaSet's labels; the owner is what those labels stand for). The counts come from an
//!   index by owner, so this costs O(1) per candidate node (a cursor walks the owner's
//!   nodes along the candidates), plus a label lookup per candidate when the cluster has
//!   zones. A pod without a controller owner is not spread.
//! - **The pod's own constraints.** `DoNotSchedule` constraints filter, `ScheduleAnyway`
//!   ones score. Matching pods are counted per topology domain over the nodes that pass
//!   the pod's `nodeSelector` and required node affinity and have the constraint's key
//!   (kube-scheduler's default `nodeAffinityPolicy: Honor`, `nodeTaintsPolicy: Ignore`):
//!   one scan of those nodes' pods per placement, paid only by pods with constraints.
//!
//! The node is its own `kubernetes.io/hostname` domain even without that label (the agent
//! sets it to the node name anyway). Pods count while they hold resources in the cache
//! (bound or assumed, terminating included, finished not).
//!
//! Raw score of a node (lower is better), over the scoring constraints whose key the node
//! has: `Σ count(domain of the node) · ln(domains + 2) + (maxSkew − 1)`, where `domains` is
//! the number of domains of that key. A node missing a key of one of the pod's own scoring
//! constraints is left out (normalized score 0); default spreading skips the zone term on a
//! node without a zone instead. Normalized to 0..100 among the scored nodes:
//! `100 · (max + min − raw) / max` (100 everywhere when `max` is 0).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ketch_api::core::{Pod, PodAffinityTerm};
use ketch_api::selector::Selector;
use ketch_api::validation::DO_NOT_SCHEDULE;
use ketch_api::wellknown::{LABEL_HOSTNAME, LABEL_ZONE};

use super::interpod::Term;
use super::{ClusterSnapshot, NodeInfo, PodFacts, Reason};

/// The default constraints' maxSkew, by hostname and by zone.
const DEFAULT_HOSTNAME_SKEW: u32 = 3;
const DEFAULT_ZONE_SKEW: u32 = 5;

/// What spreading and affinity need of a pod that holds a node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodMeta {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// The uid of the pod's controller owner.
    pub owner: Option<String>,
    /// The pod's required anti-affinity terms, which bar other pods from their domains.
    pub anti_affinity: Vec<Term>,
}

/// The pod's required anti-affinity terms.
fn required_anti_affinity(pod: &Pod) -> &[PodAffinityTerm] {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .map_or(&[], |a| {
            a.required_during_scheduling_ignored_during_execution
                .as_slice()
        })
}

impl PodMeta {
    pub fn of(pod: &Pod) -> PodMeta {
        PodMeta {
            namespace: pod.metadata.namespace().to_string(),
            labels: pod.metadata.labels.clone(),
            owner: controller_uid(pod).map(str::to_string),
            anti_affinity: anti_terms(pod),
        }
    }

    /// Whether `pod` still has this namespace, labels and owner (an update can then keep
    /// the shared value instead of building a new one).
    pub fn describes(&self, pod: &Pod) -> bool {
        self.namespace == pod.metadata.namespace()
            && self.labels == pod.metadata.labels
            && self.owner.as_deref() == controller_uid(pod)
            && (self.anti_affinity.is_empty() && required_anti_affinity(pod).is_empty()
                || self.anti_affinity == anti_terms(pod))
    }
}

/// The pod's required anti-affinity terms, compiled.
fn anti_terms(pod: &Pod) -> Vec<Term> {
    required_anti_affinity(pod)
        .iter()
        .map(|t| Term::of(t, pod.metadata.namespace()))
        .collect()
}

/// The uid of the owner reference marked `controller: true`, if any.
pub fn controller_uid(pod: &Pod) -> Option<&str> {
    pod.metadata
        .owner_references
        .iter()
        .find(|r| r.controller == Some(true) && !r.uid.is_empty())
        .map(|r| r.uid.as_str())
}

/// The topology domain of `node` for `key`: its label value, and for
/// `kubernetes.io/hostname` the node itself when the label is missing.
pub fn domain<'n>(node: &'n NodeInfo, key: &str) -> Option<&'n str> {
    match node.labels.get(key) {
        Some(v) => Some(v),
        None if key == LABEL_HOSTNAME => Some(&node.name),
        None => None,
    }
}

/// The pods holding each node, by node name (known to the snapshot or not), and how many
/// pods of each controller owner are on each node.
///
/// A pod is one shared [`PodMeta`] in its node's list, not keyed by name: recording one
/// costs no key allocation, which every placement would pay (the list is short, and a
/// removal finds its record by pointer, or by value, where equal records are
/// interchangeable).
///
/// Invariant: `by_owner[o][n]` is the number of records of `by_node[n]` whose owner is `o`;
/// no zero counts or empty maps are kept. `anti` holds exactly the records with required
/// anti-affinity terms.
#[derive(Debug, Clone, Default)]
pub struct PodTopology {
    by_node: HashMap<String, Vec<Arc<PodMeta>>>,
    by_owner: HashMap<String, HashMap<String, u32>>,
    /// The records with required anti-affinity terms, with their node: every placement
    /// checks them (see `interpod.rs`), so they are kept apart from the rest.
    anti: Vec<(String, Arc<PodMeta>)>,
}

/// The same record: the same allocation, or an equal value.
fn same(a: &Arc<PodMeta>, b: &PodMeta) -> bool {
    std::ptr::eq(&**a, b) || **a == *b
}

impl PodTopology {
    /// Records a pod on `node`.
    pub fn add(&mut self, node: &str, meta: Arc<PodMeta>) {
        if let Some(owner) = &meta.owner {
            let nodes = match self.by_owner.get_mut(owner.as_str()) {
                Some(n) => n,
                None => self.by_owner.entry(owner.clone()).or_default(),
            };
            *nodes.entry(node.to_string()).or_default() += 1;
        }
        if !meta.anti_affinity.is_empty() {
            self.anti.push((node.to_string(), meta.clone()));
        }
        match self.by_node.get_mut(node) {
            Some(pods) => pods.push(meta),
            None => {
                self.by_node.insert(node.to_string(), vec![meta]);
            }
        }
    }

    /// Drops one record of `meta` from `node`. Returns whether there was one.
    pub fn remove(&mut self, node: &str, meta: &PodMeta) -> bool {
        let Some(pods) = self.by_node.get_mut(node) else {
            return false;
        };
        let Some(at) = pods
            .iter()
            .position(|p| std::ptr::eq(&**p, meta))
            .or_else(|| pods.iter().position(|p| same(p, meta)))
        else {
            return false;
        };
        let old = pods.swap_remove(at);
        if pods.is_empty() {
            self.by_node.remove(node);
        }
        if !old.anti_affinity.is_empty()
            && let Some(k) = self
                .anti
                .iter()
                .position(|(n, m)| n == node && same(m, &old))
        {
            self.anti.swap_remove(k);
        }
        if let Some(owner) = &old.owner
            && let Some(nodes) = self.by_owner.get_mut(owner.as_str())
        {
            if let Some(n) = nodes.get_mut(node) {
                *n -= 1;
                if *n == 0 {
                    nodes.remove(node);
                }
            }
            if nodes.is_empty() {
                self.by_owner.remove(owner.as_str());
            }
        }
        true
    }

    /// The pods on `node`.
    pub fn pods_on(&self, node: &str) -> impl Iterator<Item = &PodMeta> {
        self.by_node
            .get(node)
            .into_iter()
            .flat_map(|p| p.iter().map(|m| &**m))
    }

    /// How many pods of `owner` each node holds.
    pub fn owner_nodes(&self, owner: &str) -> impl Iterator<Item = (&str, u32)> {
        self.by_owner
            .get(owner)
            .into_iter()
            .flat_map(|n| n.iter().map(|(k, v)| (k.as_str(), *v)))
    }

    /// The pods with required anti-affinity terms, with their node.
    pub fn with_anti_affinity(&self) -> impl Iterator<Item = (&str, &PodMeta)> {
        self.anti.iter().map(|(n, m)| (n.as_str(), &**m))
    }

    /// The number of pods recorded.
    pub fn len(&self) -> usize {
        self.by_node.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_node.is_empty()
    }
}

/// One of the pod's own constraints, counted for one placement.
pub(super) struct Constraint<'a> {
    key: &'a str,
    max_skew: u32,
    /// `DoNotSchedule`: a filter; otherwise a score.
    hard: bool,
    self_match: bool,
    /// Matching pods per domain, over the eligible nodes; a domain with none is present
    /// with 0.
    counts: HashMap<&'a str, u32>,
    /// The smallest count among the domains (0 when fewer than `minDomains`).
    min: u32,
}

impl Constraint<'_> {
    fn count(&self, node: &NodeInfo) -> Option<u32> {
        domain(node, self.key).map(|d| self.counts.get(d).copied().unwrap_or(0))
    }

    fn weight(&self) -> f64 {
        topology_weight(self.counts.len())
    }
}

/// kube-scheduler's weight of a topology in the spreading score: more domains, more weight.
fn topology_weight(domains: usize) -> f64 {
    (domains as f64 + 2.0).ln()
}

/// Default spreading for one placement.
pub(super) struct OwnerSpread<'a> {
    /// Pods of the owner per node position, sorted by position.
    hosts: Vec<(usize, u32)>,
    /// Pods of the owner per zone.
    zones: HashMap<&'a str, u32>,
    host_weight: f64,
    /// Some when some node has a zone.
    zone_weight: Option<f64>,
}

/// Spreading prepared for one placement; see the module docs.
pub(super) enum Spread<'a> {
    /// Nothing to filter, and a score equal on every node.
    None,
    Owner(OwnerSpread<'a>),
    Constraints(Vec<Constraint<'a>>),
}

impl<'a> Spread<'a> {
    pub(super) fn prepare(pod: &'a Pod, facts: &PodFacts, snap: &'a ClusterSnapshot) -> Self {
        let Some(spec) = &pod.spec else {
            return Spread::None;
        };
        if spec.topology_spread_constraints.is_empty() {
            return match controller_uid(pod) {
                Some(owner) => Self::owner(owner, snap),
                None => Spread::None,
            };
        }
        let namespace = pod.metadata.namespace();
        let mut constraints: Vec<(Constraint, Option<Selector>, usize)> = spec
            .topology_spread_constraints
            .iter()
            .map(|c| {
                // Validated at admission; a selector that still fails matches no pod, and a
                // missing one matches none, as in Kubernetes.
                let selector = c
                    .label_selector
                    .as_ref()
                    .and_then(|s| Selector::from_label_selector(s).ok());
                let self_match = selector
                    .as_ref()
                    .is_some_and(|s| s.matches(&pod.metadata.labels));
                let constraint = Constraint {
                    key: &c.topology_key,
                    max_skew: u32::try_from(c.max_skew).unwrap_or(1).max(1),
                    hard: c.when_unsatisfiable == DO_NOT_SCHEDULE,
                    self_match,
                    counts: HashMap::new(),
                    min: 0,
                };
                let min_domains = c.min_domains.and_then(|m| usize::try_from(m).ok());
                (constraint, selector, min_domains.unwrap_or(1))
            })
            .collect();
        for node in &snap.nodes {
            if !facts.matches_node_labels(node) {
                continue;
            }
            for (c, selector, _) in &mut constraints {
                let Some(d) = domain(node, c.key) else {
                    continue;
                };
                let n = c.counts.entry(d).or_insert(0);
                if let Some(sel) = selector {
                    *n += snap
                        .pods
                        .pods_on(&node.name)
                        .filter(|p| p.namespace == namespace && sel.matches(&p.labels))
                        .count() as u32;
                }
            }
        }
        Spread::Constraints(
            constraints
                .into_iter()
                .map(|(mut c, _, min_domains)| {
                    c.min = if c.counts.len() < min_domains {
                        0
                    } else {
                        c.counts.values().copied().min().unwrap_or(0)
                    };
                    c
                })
                .collect(),
        )
    }

    fn owner(owner: &str, snap: &'a ClusterSnapshot) -> Self {
        let zoned = !snap.zones.is_empty();
        let mut hosts = Vec::new();
        let mut zones: HashMap<&str, u32> = HashMap::new();
        for (name, n) in snap.pods.owner_nodes(owner) {
            // Pods on nodes the snapshot does not know are in no domain a node could join.
            let Some(&i) = snap.index.get(name) else {
                continue;
            };
            hosts.push((i, n));
            if zoned && let Some(z) = snap.nodes[i].labels.get(LABEL_ZONE) {
                *zones.entry(z.as_str()).or_default() += n;
            }
        }
        if hosts.is_empty() && !zoned {
            // The first replica: every node scores the same.
            return Spread::None;
        }
        hosts.sort_unstable();
        Spread::Owner(OwnerSpread {
            hosts,
            zones,
            host_weight: topology_weight(snap.nodes.len()),
            zone_weight: zoned.then(|| topology_weight(snap.zones.len())),
        })
    }

    /// The PodTopologySpread filter for the node at position `i`.
    pub(super) fn check(&self, node: &NodeInfo) -> Result<(), Reason> {
        let Spread::Constraints(cs) = self else {
            return Ok(());
        };
        for c in cs.iter().filter(|c| c.hard) {
            let Some(n) = c.count(node) else {
                return Err(Reason::SpreadMissingLabel);
            };
            if n + u32::from(c.self_match) > c.min + c.max_skew {
                return Err(Reason::Spread);
            }
        }
        Ok(())
    }

    /// Whether there is a constraint to filter by.
    pub(super) fn filters(&self) -> bool {
        matches!(self, Spread::Constraints(cs) if cs.iter().any(|c| c.hard))
    }

    /// Whether the score can differ between nodes (otherwise it is left out).
    pub(super) fn scores(&self) -> bool {
        match self {
            Spread::None => false,
            Spread::Owner(_) => true,
            Spread::Constraints(cs) => cs.iter().any(|c| !c.hard),
        }
    }

    /// The raw scores of `candidates` (positions in scan order: increasing, wrapping once
    /// to 0), lower is better; `None` for a node that lacks a key of a scoring constraint.
    pub(super) fn raws(
        &self,
        candidates: &[(usize, f64)],
        snap: &ClusterSnapshot,
    ) -> Vec<Option<f64>> {
        match self {
            Spread::None => vec![Some(0.0); candidates.len()],
            Spread::Owner(o) => o.raws(candidates, snap),
            Spread::Constraints(cs) => candidates
                .iter()
                .map(|&(i, _)| {
                    let node = &snap.nodes[i];
                    let mut s = 0.0;
                    for c in cs.iter().filter(|c| !c.hard) {
                        s += f64::from(c.count(node)?) * c.weight() + f64::from(c.max_skew - 1);
                    }
                    Some(s)
                })
                .collect(),
        }
    }
}

impl OwnerSpread<'_> {
    fn raws(&self, candidates: &[(usize, f64)], snap: &ClusterSnapshot) -> Vec<Option<f64>> {
        // A cursor into the owner's nodes (sorted by position) walks along with the
        // candidates, so finding each count costs O(1) amortized, not a search.
        let hosts = &self.hosts;
        let mut k = candidates
            .first()
            .map_or(0, |&(i, _)| hosts.partition_point(|&(at, _)| at < i));
        let mut prev = 0;
        candidates
            .iter()
            .map(|&(i, _)| {
                if i < prev {
                    // Wrapped around to position 0.
                    k = 0;
                }
                prev = i;
                while hosts.get(k).is_some_and(|&(at, _)| at < i) {
                    k += 1;
                }
                let host = match hosts.get(k) {
                    Some(&(at, n)) if at == i => n,
                    _ => 0,
                };
                let mut s =
                    f64::from(host) * self.host_weight + f64::from(DEFAULT_HOSTNAME_SKEW - 1);
                if let Some(w) = self.zone_weight
                    && let Some(z) = snap.nodes[i].labels.get(LABEL_ZONE)
                {
                    let n = self.zones.get(z.as_str()).copied().unwrap_or(0);
                    s += f64::from(n) * w + f64::from(DEFAULT_ZONE_SKEW - 1);
                }
                Some(s)
            })
            .collect()
    }
}

/// Normalizes raw spreading scores in place to 0..100, higher better; `None` becomes 0.
pub(super) fn normalize_spread(raw: &[Option<f64>]) -> Vec<f64> {
    let (mut min, mut max) = (f64::INFINITY, 0.0f64);
    for s in raw.iter().flatten() {
        min = min.min(*s);
        max = max.max(*s);
    }
    raw.iter()
        .map(|s| match s {
            None => 0.0,
            Some(_) if max == 0.0 => 100.0,
            Some(s) => 100.0 * (max + min - s) / max,
        })
        .collect()
}
