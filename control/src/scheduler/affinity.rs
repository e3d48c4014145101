//! Node affinity for one placement: the required terms filter (with `nodeSelector`, under
//! one reason), the preferred terms score.
//!
//! Terms are compiled once per placement into the shared label [`Selector`] (which has the
//! node selector's `Gt`/`Lt`); `matchFields` can only name `metadata.name` (checked at
//! admission), matched against the node's name. As in Kubernetes, required terms are ORed,
//! the requirements of one term ANDed, and a term without requirements matches no node.
//! Preferred score: the sum of the weights of the matching preferred terms, normalized to
//! 0..100 by the largest sum among the scored nodes.

use ketch_api::core::{NodeAffinity, NodeSelectorTerm};
use ketch_api::selector::Selector;
use ketch_api::validation::NODE_FIELD_NAME;

use super::NodeInfo;

/// One compiled node selector term.
#[derive(Debug)]
struct Term {
    labels: Selector,
    fields: Selector,
    /// Has no requirements, or failed to compile (it was validated at admission): matches
    /// no node.
    matches_none: bool,
}

impl Term {
    fn of(t: &NodeSelectorTerm) -> Term {
        let labels = Selector::from_node_requirements(&t.match_expressions);
        let fields = Selector::from_node_requirements(&t.match_fields);
        match (labels, fields) {
            (Ok(labels), Ok(fields)) => Term {
                matches_none: labels.is_empty() && fields.is_empty(),
                labels,
                fields,
            },
            _ => Term {
                labels: Selector::default(),
                fields: Selector::default(),
                matches_none: true,
            },
        }
    }

    fn matches(&self, node: &NodeInfo) -> bool {
        !self.matches_none
            && self.labels.matches(&node.labels)
            && self
                .fields
                .requirements
                .iter()
                .all(|r| r.matches_value((r.key == NODE_FIELD_NAME).then_some(node.name.as_str())))
    }
}

/// A pod's node affinity, compiled.
#[derive(Debug)]
pub(super) struct NodeAffinityFacts {
    /// ORed; `None`: no requirement.
    required: Option<Vec<Term>>,
    preferred: Vec<(i32, Term)>,
}

impl NodeAffinityFacts {
    pub(super) fn of(a: &NodeAffinity) -> Self {
        NodeAffinityFacts {
            required: a
                .required_during_scheduling_ignored_during_execution
                .as_ref()
                .map(|r| r.node_selector_terms.iter().map(Term::of).collect()),
            preferred: a
                .preferred_during_scheduling_ignored_during_execution
                .iter()
                .map(|p| (p.weight, Term::of(&p.preference)))
                .collect(),
        }
    }

    /// The required terms hold on `node`.
    pub(super) fn required_match(&self, node: &NodeInfo) -> bool {
        self.required
            .as_ref()
            .is_none_or(|terms| terms.iter().any(|t| t.matches(node)))
    }

    /// Whether there is a preferred term to score.
    pub(super) fn scores(&self) -> bool {
        !self.preferred.is_empty()
    }

    /// The sum of the weights of the preferred terms `node` matches.
    pub(super) fn raw(&self, node: &NodeInfo) -> f64 {
        self.preferred
            .iter()
            .filter(|(_, t)| t.matches(node))
            .map(|(w, _)| f64::from(*w))
            .sum()
    }
}

/// Normalizes raw node affinity scores to 0..100 by the largest.
pub(super) fn normalize_by_max(raw: &[f64]) -> Vec<f64> {
    let max = raw.iter().copied().fold(0.0f64, f64::max);
    raw.iter()
        .map(|s| if max > 0.0 { 100.0 * s / max } else { 0.0 })
        .collect()
}
