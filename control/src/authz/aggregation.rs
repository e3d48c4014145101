//! ClusterRole aggregation, pure: a ClusterRole with an `aggregationRule` has as `rules`
//! the union of the rules of every other ClusterRole whose labels one of its selectors
//! matches (Kubernetes' clusterrole-aggregation controller). The plan works to a fixed
//! point over the snapshot, so chains (`admin` ← `edit` ← `view`) settle in one pass.

use std::collections::BTreeMap;

use ketch_api::Selector;
use ketch_api::rbac::{ClusterRole, PolicyRule};

/// One aggregated ClusterRole whose rules must change.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub name: String,
    /// The stored resourceVersion the rules were computed against (a write's precondition).
    pub resource_version: Option<String>,
    pub rules: Vec<PolicyRule>,
}

/// The rules every aggregated ClusterRole of `roles` should have, where they differ from
/// what it has. Contributing roles are taken in name order and each rule once, so the
/// result does not depend on the snapshot's order. A selector that does not parse selects
/// nothing (validation refuses one at admission).
pub fn plan(roles: &[ClusterRole]) -> Vec<Update> {
    let mut rules: BTreeMap<&str, Vec<PolicyRule>> = roles
        .iter()
        .map(|r| (r.metadata.name(), r.rules.clone()))
        .collect();
    let selectors: Vec<(&str, Vec<Selector>)> = roles
        .iter()
        .filter_map(|r| {
            let agg = r.aggregation_rule.as_ref()?;
            let sels = agg
                .cluster_role_selectors
                .iter()
                .filter_map(|s| Selector::from_label_selector(s).ok())
                .collect();
            Some((r.metadata.name(), sels))
        })
        .collect();
    let mut sorted: Vec<&ClusterRole> = roles.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name().cmp(b.metadata.name()));
    // Each pass can only lengthen a chain's reach by one role, so as many passes as roles
    // reach the fixed point; a cycle of aggregated roles settles too.
    for _ in 0..=roles.len() {
        let mut changed = false;
        for (name, sels) in &selectors {
            let mut union: Vec<PolicyRule> = Vec::new();
            for other in &sorted {
                let other_name = other.metadata.name();
                if other_name == *name || !sels.iter().any(|s| s.matches(&other.metadata.labels)) {
                    continue;
                }
                for rule in &rules[other_name] {
                    if !union.contains(rule) {
                        union.push(rule.clone());
                    }
                }
            }
            if rules[name] != union {
                rules.insert(name, union);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    roles
        .iter()
        .filter(|r| r.aggregation_rule.is_some() && rules[r.metadata.name()] != r.rules)
        .map(|r| Update {
            name: r.metadata.name().to_string(),
            resource_version: r.metadata.resource_version.clone(),
            rules: rules[r.metadata.name()].clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ketch_api::LabelSelector;
    use ketch_api::rbac::AggregationRule;

    fn role(name: &str, labels: &[(&str, &str)], verbs: &[&str], agg: &[&str]) -> ClusterRole {
        ClusterRole {
            metadata: ketch_api::ObjectMeta {
                name: Some(name.into()),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            },
            rules: verbs
                .iter()
                .map(|v| PolicyRule {
                    verbs: vec![v.to_string()],
                    api_groups: vec![String::new()],
                    resources: vec!["pods".into()],
                    ..Default::default()
                })
                .collect(),
            aggregation_rule: (!agg.is_empty()).then(|| AggregationRule {
                cluster_role_selectors: agg
                    .iter()
                    .map(|l| LabelSelector {
                        match_labels: [(l.to_string(), "true".to_string())].into(),
                        ..Default::default()
                    })
                    .collect(),
            }),
            ..Default::default()
        }
    }

    fn verbs(u: &Update) -> Vec<&str> {
        u.rules.iter().map(|r| r.verbs[0].as_str()).collect()
    }

    #[test]
    fn an_aggregated_role_gets_the_union_of_the_roles_its_selectors_match() {
        let roles = vec![
            role("a", &[("to-x", "true")], &["get", "list"], &[]),
            role("b", &[("to-x", "true")], &["list", "watch"], &[]),
            role("c", &[("to-y", "true")], &["delete"], &[]),
            role("x", &[], &["stale"], &["to-x"]),
        ];
        let plan = plan(&roles);
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].name, "x");
        assert_eq!(verbs(&plan[0]), ["get", "list", "watch"]);
    }

    #[test]
    fn chains_settle_in_one_plan_and_a_settled_snapshot_plans_nothing() {
        // view → edit → admin, as Kubernetes' defaults chain them by labels.
        let mut roles = vec![
            role("admin", &[], &[], &["to-admin"]),
            role("edit", &[("to-admin", "true")], &[], &["to-edit"]),
            role("view", &[("to-edit", "true")], &[], &["to-view"]),
            role("leaf-view", &[("to-view", "true")], &["get"], &[]),
            role("leaf-edit", &[("to-edit", "true")], &["create"], &[]),
        ];
        let updates = plan(&roles);
        let by_name = |n: &str| updates.iter().find(|u| u.name == n).unwrap();
        assert_eq!(verbs(by_name("view")), ["get"]);
        assert_eq!(verbs(by_name("edit")), ["create", "get"]);
        assert_eq!(verbs(by_name("admin")), ["create", "get"]);
        for u in &updates {
            let r = roles
                .iter_mut()
                .find(|r| r.metadata.name() == u.name)
                .unwrap();
            r.rules = u.rules.clone();
        }
        assert_eq!(plan(&roles), Vec::new());
    }

    #[test]
    fn a_role_never_aggregates_itself_and_losing_a_match_removes_its_rules() {
        let roles = vec![
            role("self", &[("to-self", "true")], &["get"], &["to-self"]),
            role("gone", &[("other", "true")], &["delete"], &[]),
        ];
        let plan = plan(&roles);
        assert_eq!(plan[0].name, "self");
        assert!(plan[0].rules.is_empty());
    }
}
