//! Inter-pod affinity and anti-affinity for one placement (kube-scheduler's InterPodAffinity):
//! a filter from the required terms and a score from the preferred ones.
//!
//! A term selects pods by `labelSelector` (none: no pod) in `namespaces` (empty: the pod's
//! own), and names a node label, `topologyKey`, whose values are the domains. Filter, in
//! this order of reasons:
//! - every required affinity term must find a matching pod in the node's domain; the first
//!   pod of a group that matches its own terms may go anywhere that has the keys while no
//!   pod matches yet (else it could never start);
//! - no required anti-affinity term may find a matching pod in the node's domain;
//! - no pod already placed may have a required anti-affinity term that matches the
//!   incoming pod and whose domain the node is in (anti-affinity is symmetric).
//!
//! Score: for each preferred term, its weight times the number of matching pods in the
//! node's domain, added for affinity and subtracted for anti-affinity; normalized to 0..100
//! by `100 · (raw − min) / (max − min)` (0 everywhere when all are equal). Unlike
//! kube-scheduler, the preferred terms of the pods already placed are not scored
//! against the incoming pod.
//!
//! Cost: one scan of the pods on the nodes that have the term's key, per term, paid only by
//! pods with pod (anti-)affinity, plus, for every pod, one pass over the pods that carry a
//! required anti-affinity term (kept apart by [`super::topology::PodTopology`], their terms
//! compiled when they were recorded).

use std::collections::{HashMap, HashSet};

use ketch_api::core::{Pod, PodAffinityTerm};
use ketch_api::selector::Selector;

use super::topology::{PodMeta, domain};
use super::{ClusterSnapshot, NodeInfo, Reason};

/// A term compiled for matching. The required anti-affinity terms of the pods already
/// placed are compiled once, when the cache records the pod ([`PodMeta`]), since every
/// placement checks them.
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    key: String,
    /// `None`: the term selects no pod.
    selector: Option<Selector>,
    namespaces: Vec<String>,
}

impl Term {
    /// `own_namespace`: the namespace of the pod that carries the term.
    pub fn of(t: &PodAffinityTerm, own_namespace: &str) -> Self {
        Term {
            key: t.topology_key.clone(),
            // Validated at admission; a selector that still fails selects nothing.
            selector: t
                .label_selector
                .as_ref()
                .and_then(|s| Selector::from_label_selector(s).ok()),
            namespaces: if t.namespaces.is_empty() {
                vec![own_namespace.to_string()]
            } else {
                t.namespaces.clone()
            },
        }
    }

    fn selects(
        &self,
        namespace: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> bool {
        self.namespaces.iter().any(|n| n == namespace)
            && self.selector.as_ref().is_some_and(|s| s.matches(labels))
    }

    fn selects_meta(&self, p: &PodMeta) -> bool {
        self.selects(&p.namespace, &p.labels)
    }

    /// Matching pods per domain of the term's key, over every node.
    fn counts<'a>(&self, snap: &'a ClusterSnapshot) -> HashMap<&'a str, u32> {
        let mut counts = HashMap::new();
        for node in &snap.nodes {
            let Some(d) = domain(node, &self.key) else {
                continue;
            };
            let n = snap
                .pods
                .pods_on(&node.name)
                .filter(|p| self.selects_meta(p))
                .count() as u32;
            if n > 0 {
                *counts.entry(d).or_default() += n;
            }
        }
        counts
    }
}

/// Pod (anti-)affinity prepared for one placement; see the module docs.
#[derive(Default)]
pub(super) struct InterPod<'a> {
    /// Required affinity: each term's key and the domains holding a matching pod.
    affinity: Vec<(&'a str, HashMap<&'a str, u32>)>,
    /// No pod matches any required affinity term, and the pod matches all of its own.
    first_of_group: bool,
    /// Required anti-affinity: each term's key and the domains holding a matching pod.
    anti: Vec<(&'a str, HashMap<&'a str, u32>)>,
    /// Domains (key, value) barred by the anti-affinity of pods already placed.
    barred: HashSet<(&'a str, &'a str)>,
    /// Preferred terms: key, signed weight, matching pods per domain.
    preferred: Vec<(&'a str, f64, HashMap<&'a str, u32>)>,
}

impl<'a> InterPod<'a> {
    pub(super) fn prepare(pod: &'a Pod, snap: &'a ClusterSnapshot) -> Self {
        let mut s = InterPod::default();
        let ns = pod.metadata.namespace();
        let affinity = pod.spec.as_ref().and_then(|spec| spec.affinity.as_ref());
        if let Some(a) = affinity {
            if let Some(pa) = &a.pod_affinity {
                let raw = &pa.required_during_scheduling_ignored_during_execution;
                let terms: Vec<Term> = raw.iter().map(|t| Term::of(t, ns)).collect();
                s.affinity = raw
                    .iter()
                    .zip(&terms)
                    .map(|(r, t)| (r.topology_key.as_str(), t.counts(snap)))
                    .collect();
                s.first_of_group = !terms.is_empty()
                    && s.affinity.iter().all(|(_, c)| c.is_empty())
                    && terms.iter().all(|t| t.selects(ns, &pod.metadata.labels));
                for w in &pa.preferred_during_scheduling_ignored_during_execution {
                    let t = Term::of(&w.pod_affinity_term, ns);
                    let key = w.pod_affinity_term.topology_key.as_str();
                    s.preferred.push((key, f64::from(w.weight), t.counts(snap)));
                }
            }
            if let Some(anti) = &a.pod_anti_affinity {
                for r in &anti.required_during_scheduling_ignored_during_execution {
                    s.anti
                        .push((r.topology_key.as_str(), Term::of(r, ns).counts(snap)));
                }
                for w in &anti.preferred_during_scheduling_ignored_during_execution {
                    let t = Term::of(&w.pod_affinity_term, ns);
                    let key = w.pod_affinity_term.topology_key.as_str();
                    s.preferred
                        .push((key, -f64::from(w.weight), t.counts(snap)));
                }
            }
        }
        for (node_name, other) in snap.pods.with_anti_affinity() {
            let Some(node) = snap.node(node_name) else {
                continue;
            };
            for t in &other.anti_affinity {
                if t.selects(ns, &pod.metadata.labels)
                    && let Some(d) = domain(node, &t.key)
                {
                    s.barred.insert((t.key.as_str(), d));
                }
            }
        }
        s
    }

    /// The InterPodAffinity filter for `node`.
    pub(super) fn check(&self, node: &NodeInfo) -> Result<(), Reason> {
        for (key, domains) in &self.affinity {
            let Some(d) = domain(node, key) else {
                return Err(Reason::PodAffinity);
            };
            if !self.first_of_group && !domains.contains_key(d) {
                return Err(Reason::PodAffinity);
            }
        }
        for (key, domains) in &self.anti {
            if domain(node, key).is_some_and(|d| domains.contains_key(d)) {
                return Err(Reason::PodAntiAffinity);
            }
        }
        if !self.barred.is_empty()
            && self
                .barred
                .iter()
                .any(|&(key, value)| domain(node, key) == Some(value))
        {
            return Err(Reason::ExistingAntiAffinity);
        }
        Ok(())
    }

    /// Whether there is a required term to filter by.
    pub(super) fn filters(&self) -> bool {
        !self.affinity.is_empty() || !self.anti.is_empty() || !self.barred.is_empty()
    }

    /// Whether there is a preferred term to score.
    pub(super) fn scores(&self) -> bool {
        !self.preferred.is_empty()
    }

    /// The raw score of `node` (higher is better).
    pub(super) fn raw(&self, node: &NodeInfo) -> f64 {
        self.preferred
            .iter()
            .filter_map(|(key, weight, counts)| {
                let d = domain(node, key)?;
                Some(weight * f64::from(counts.get(d).copied().unwrap_or(0)))
            })
            .sum()
    }
}

/// Normalizes raw scores to 0..100 between the smallest and the largest.
pub(super) fn normalize_min_max(raw: &[f64]) -> Vec<f64> {
    let min = raw.iter().copied().fold(f64::INFINITY, f64::min);
    let max = raw.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    raw.iter()
        .map(|s| {
            if max > min {
                100.0 * (s - min) / (max - min)
            } else {
                0.0
            }
        })
        .collect()
}
