//! The scheduling constraints of a pod spec: `affinity` (node affinity, pod affinity and
//! anti-affinity) and `topologySpreadConstraints`. What the scheduler does not implement is
//! refused by path (`not supported yet`), never accepted and ignored.

use std::collections::BTreeSet;

use super::field::{FieldError, check, check_one_of, child, index};
use super::format::{is_dns1123_label, is_qualified_name, is_valid_label_value};
use super::meta::validate_label_selector;
use crate::core::{
    Affinity, NodeSelectorRequirement, NodeSelectorTerm, PodAffinity, PodAffinityTerm,
    TopologySpreadConstraint,
};

/// The operators of a node selector's `matchExpressions`.
const NODE_SELECTOR_OPERATORS: &[&str] = &["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"];
/// The one node field `matchFields` may name.
pub const NODE_FIELD_NAME: &str = "metadata.name";
/// `whenUnsatisfiable` values.
pub const DO_NOT_SCHEDULE: &str = "DoNotSchedule";
pub const SCHEDULE_ANYWAY: &str = "ScheduleAnyway";

/// Validates `affinity` at `path` (`spec.affinity`).
pub(super) fn validate_affinity(a: &Affinity, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(na) = &a.node_affinity {
        let p = child(path, "nodeAffinity");
        if let Some(req) = &na.required_during_scheduling_ignored_during_execution {
            let rp = child(
                &child(&p, "requiredDuringSchedulingIgnoredDuringExecution"),
                "nodeSelectorTerms",
            );
            if req.node_selector_terms.is_empty() {
                errs.push(FieldError::required(
                    rp.clone(),
                    "must have at least one node selector term",
                ));
            }
            for (i, term) in req.node_selector_terms.iter().enumerate() {
                errs.extend(validate_node_selector_term(term, &index(&rp, i)));
            }
        }
        let pp = child(&p, "preferredDuringSchedulingIgnoredDuringExecution");
        for (i, pref) in na
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .enumerate()
        {
            let ip = index(&pp, i);
            check_weight(&mut errs, child(&ip, "weight"), pref.weight);
            errs.extend(validate_node_selector_term(
                &pref.preference,
                &child(&ip, "preference"),
            ));
        }
    }
    for (field, pa) in [
        ("podAffinity", &a.pod_affinity),
        ("podAntiAffinity", &a.pod_anti_affinity),
    ] {
        if let Some(pa) = pa {
            errs.extend(validate_pod_affinity(pa, &child(path, field)));
        }
    }
    errs
}

fn check_weight(errs: &mut Vec<FieldError>, field: String, weight: i32) {
    if !(1..=100).contains(&weight) {
        errs.push(FieldError::invalid(
            field,
            weight,
            "must be in the range 1-100",
        ));
    }
}

fn validate_node_selector_term(term: &NodeSelectorTerm, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, r) in term.match_expressions.iter().enumerate() {
        let p = index(&child(path, "matchExpressions"), i);
        check(
            &mut errs,
            &child(&p, "key"),
            &r.key,
            is_qualified_name(&r.key),
        );
        errs.extend(validate_node_requirement_values(r, &p));
        for (j, v) in r.values.iter().enumerate() {
            check(
                &mut errs,
                &index(&child(&p, "values"), j),
                v,
                is_valid_label_value(v),
            );
        }
    }
    for (i, r) in term.match_fields.iter().enumerate() {
        let p = index(&child(path, "matchFields"), i);
        if r.key != NODE_FIELD_NAME {
            errs.push(FieldError::not_supported(
                child(&p, "key"),
                &r.key,
                &[NODE_FIELD_NAME],
            ));
        }
        // As in Kubernetes: a field has one value, so only set membership of one name.
        if !matches!(r.operator.as_str(), "In" | "NotIn") {
            errs.push(FieldError::not_supported(
                child(&p, "operator"),
                &r.operator,
                &["In", "NotIn"],
            ));
        } else if r.values.len() != 1 {
            errs.push(FieldError::required(
                child(&p, "values"),
                "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
            ));
        }
    }
    errs
}

fn validate_node_requirement_values(r: &NodeSelectorRequirement, p: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let values = child(p, "values");
    match r.operator.as_str() {
        "In" | "NotIn" if r.values.is_empty() => errs.push(FieldError::required(
            values,
            "must be specified when `operator` is 'In' or 'NotIn'",
        )),
        "Exists" | "DoesNotExist" if !r.values.is_empty() => errs.push(FieldError::forbidden(
            values,
            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        )),
        "Gt" | "Lt" if r.values.len() != 1 => errs.push(FieldError::required(
            values,
            "must be specified single value when `operator` is 'Lt' or 'Gt'",
        )),
        "Gt" | "Lt" if r.values[0].parse::<i64>().is_err() => errs.push(FieldError::invalid_str(
            index(&values, 0),
            &r.values[0],
            "must be an integer when `operator` is 'Lt' or 'Gt'",
        )),
        op if !NODE_SELECTOR_OPERATORS.contains(&op) => errs.push(FieldError::not_supported(
            child(p, "operator"),
            op,
            NODE_SELECTOR_OPERATORS,
        )),
        _ => {}
    }
    errs
}

fn validate_pod_affinity(pa: &PodAffinity, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let rp = child(path, "requiredDuringSchedulingIgnoredDuringExecution");
    for (i, term) in pa
        .required_during_scheduling_ignored_during_execution
        .iter()
        .enumerate()
    {
        errs.extend(validate_pod_affinity_term(term, &index(&rp, i)));
    }
    let pp = child(path, "preferredDuringSchedulingIgnoredDuringExecution");
    for (i, w) in pa
        .preferred_during_scheduling_ignored_during_execution
        .iter()
        .enumerate()
    {
        let ip = index(&pp, i);
        check_weight(&mut errs, child(&ip, "weight"), w.weight);
        errs.extend(validate_pod_affinity_term(
            &w.pod_affinity_term,
            &child(&ip, "podAffinityTerm"),
        ));
    }
    errs
}

fn validate_pod_affinity_term(t: &PodAffinityTerm, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(sel) = &t.label_selector {
        errs.extend(validate_label_selector(sel, &child(path, "labelSelector")));
    }
    for (i, ns) in t.namespaces.iter().enumerate() {
        check(
            &mut errs,
            &index(&child(path, "namespaces"), i),
            ns,
            is_dns1123_label(ns),
        );
    }
    check_topology_key(&mut errs, &child(path, "topologyKey"), &t.topology_key);
    if t.namespace_selector.is_some() {
        errs.push(FieldError::not_supported_yet(
            child(path, "namespaceSelector"),
            "a namespaceSelector (list the namespaces)",
        ));
    }
    for (field, keys) in [
        ("matchLabelKeys", &t.match_label_keys),
        ("mismatchLabelKeys", &t.mismatch_label_keys),
    ] {
        if !keys.is_empty() {
            errs.push(FieldError::not_supported_yet(child(path, field), field));
        }
    }
    errs
}

fn check_topology_key(errs: &mut Vec<FieldError>, field: &str, key: &str) {
    if key.is_empty() {
        errs.push(FieldError::required(field, "can not be empty"));
    } else {
        check(errs, field, key, is_qualified_name(key));
    }
}

/// Validates `topologySpreadConstraints` at `path`.
pub(super) fn validate_topology_spread_constraints(
    constraints: &[TopologySpreadConstraint],
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, c) in constraints.iter().enumerate() {
        let p = index(path, i);
        if c.max_skew <= 0 {
            errs.push(FieldError::invalid(
                child(&p, "maxSkew"),
                c.max_skew,
                "must be greater than zero",
            ));
        }
        check_topology_key(&mut errs, &child(&p, "topologyKey"), &c.topology_key);
        let when = child(&p, "whenUnsatisfiable");
        if c.when_unsatisfiable.is_empty() {
            errs.push(FieldError::required(when.clone(), ""));
        } else {
            check_one_of(
                &mut errs,
                when.clone(),
                Some(&c.when_unsatisfiable),
                &[DO_NOT_SCHEDULE, SCHEDULE_ANYWAY],
            );
        }
        if let Some(sel) = &c.label_selector {
            errs.extend(validate_label_selector(sel, &child(&p, "labelSelector")));
        }
        if let Some(m) = c.min_domains {
            if m <= 0 {
                errs.push(FieldError::invalid(
                    child(&p, "minDomains"),
                    m,
                    "must be greater than zero",
                ));
            } else if c.when_unsatisfiable != DO_NOT_SCHEDULE {
                errs.push(FieldError::invalid(
                    child(&p, "minDomains"),
                    m,
                    "can only use minDomains if whenUnsatisfiable=DoNotSchedule, not ScheduleAnyway",
                ));
            }
        }
        if !c.topology_key.is_empty()
            && !c.when_unsatisfiable.is_empty()
            && !seen.insert((c.topology_key.as_str(), c.when_unsatisfiable.as_str()))
        {
            errs.push(FieldError::duplicate(
                format!("{p}.{{topologyKey, whenUnsatisfiable}}"),
                format!("{{{}, {}}}", c.topology_key, c.when_unsatisfiable),
            ));
        }
        for (field, set) in [
            ("nodeAffinityPolicy", c.node_affinity_policy.is_some()),
            ("nodeTaintsPolicy", c.node_taints_policy.is_some()),
            ("matchLabelKeys", !c.match_label_keys.is_empty()),
        ] {
            if set {
                errs.push(FieldError::not_supported_yet(child(&p, field), field));
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{
        NodeAffinity, NodeSelector, PreferredSchedulingTerm, WeightedPodAffinityTerm,
    };
    use crate::selector::LabelSelector;
    use crate::validation::fixtures::strings;

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn node_affinity_errors_name_the_field_path() {
        let a = Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: vec![
                            req("disk", "Foo", &["ssd"]),
                            req("cores", "Gt", &["many"]),
                            req("gpu", "Exists", &["yes"]),
                            req("zone", "In", &[]),
                            req("ok", "Lt", &["3"]),
                        ],
                        match_fields: vec![
                            req("metadata.labels", "In", &["x"]),
                            req("metadata.name", "Exists", &[]),
                            req("metadata.name", "In", &["a", "b"]),
                        ],
                    }],
                }),
                preferred_during_scheduling_ignored_during_execution: vec![
                    PreferredSchedulingTerm {
                        weight: 0,
                        preference: NodeSelectorTerm {
                            match_expressions: vec![req("disk", "In", &["ssd"])],
                            ..Default::default()
                        },
                    },
                ],
            }),
            ..Default::default()
        };
        let p = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]";
        assert_eq!(
            strings(&validate_affinity(&a, "spec.affinity")),
            vec![
                format!(
                    "{p}.matchExpressions[0].operator: Unsupported value: \"Foo\": supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\", \"Gt\", \"Lt\""
                ),
                format!(
                    "{p}.matchExpressions[1].values[0]: Invalid value: \"many\": must be an integer when `operator` is 'Lt' or 'Gt'"
                ),
                format!(
                    "{p}.matchExpressions[2].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
                ),
                format!(
                    "{p}.matchExpressions[3].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"
                ),
                format!(
                    "{p}.matchFields[0].key: Unsupported value: \"metadata.labels\": supported values: \"metadata.name\""
                ),
                format!(
                    "{p}.matchFields[1].operator: Unsupported value: \"Exists\": supported values: \"In\", \"NotIn\""
                ),
                format!(
                    "{p}.matchFields[2].values: Required value: must be only one value when `operator` is 'In' or 'NotIn' for node field selector"
                ),
                "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: Invalid value: 0: must be in the range 1-100".to_string(),
            ]
        );
        let empty = Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector::default()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            strings(&validate_affinity(&empty, "spec.affinity")),
            vec![
                "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms: Required value: must have at least one node selector term"
            ]
        );
    }

    #[test]
    fn pod_affinity_terms_need_a_topology_key_and_refuse_what_is_not_implemented() {
        let term = |key: &str| PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_labels: [("app".to_string(), "web".to_string())].into(),
                ..Default::default()
            }),
            topology_key: key.into(),
            ..Default::default()
        };
        let a = Affinity {
            pod_affinity: Some(PodAffinity {
                required_during_scheduling_ignored_during_execution: vec![
                    term("kubernetes.io/hostname"),
                    PodAffinityTerm {
                        namespace_selector: Some(LabelSelector::default()),
                        namespaces: vec!["Bad_NS".into()],
                        ..term("")
                    },
                ],
                ..Default::default()
            }),
            pod_anti_affinity: Some(PodAffinity {
                preferred_during_scheduling_ignored_during_execution: vec![
                    WeightedPodAffinityTerm {
                        weight: 101,
                        pod_affinity_term: PodAffinityTerm {
                            match_label_keys: vec!["pod-template-hash".into()],
                            ..term("topology.kubernetes.io/zone")
                        },
                    },
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        let errs = strings(&validate_affinity(&a, "spec.affinity"));
        let r = "spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[1]";
        let w = "spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0]";
        assert_eq!(errs.len(), 5, "{errs:#?}");
        assert!(errs[0].starts_with(&format!("{r}.namespaces[0]: Invalid value: \"Bad_NS\"")));
        assert_eq!(
            errs[1],
            format!("{r}.topologyKey: Required value: can not be empty")
        );
        assert_eq!(
            errs[2],
            format!(
                "{r}.namespaceSelector: Unsupported value: a namespaceSelector (list the namespaces) is not supported yet"
            )
        );
        assert_eq!(
            errs[3],
            format!("{w}.weight: Invalid value: 101: must be in the range 1-100")
        );
        assert_eq!(
            errs[4],
            format!(
                "{w}.podAffinityTerm.matchLabelKeys: Unsupported value: matchLabelKeys is not supported yet"
            )
        );
    }

    #[test]
    fn topology_spread_constraints_check_skew_key_policy_and_duplicates() {
        let c = |skew: i32, key: &str, when: &str| TopologySpreadConstraint {
            max_skew: skew,
            topology_key: key.into(),
            when_unsatisfiable: when.into(),
            ..Default::default()
        };
        let zone = "topology.kubernetes.io/zone";
        let list = vec![
            TopologySpreadConstraint {
                min_domains: Some(3),
                ..c(1, zone, DO_NOT_SCHEDULE)
            },
            TopologySpreadConstraint {
                min_domains: Some(2),
                node_taints_policy: Some("Honor".into()),
                ..c(0, "", "Sometimes")
            },
            c(2, zone, DO_NOT_SCHEDULE),
            TopologySpreadConstraint {
                min_domains: Some(2),
                ..c(1, "kubernetes.io/hostname", SCHEDULE_ANYWAY)
            },
        ];
        let p = "spec.topologySpreadConstraints";
        assert_eq!(
            strings(&validate_topology_spread_constraints(&list, p)),
            vec![
                format!("{p}[1].maxSkew: Invalid value: 0: must be greater than zero"),
                format!("{p}[1].topologyKey: Required value: can not be empty"),
                format!(
                    "{p}[1].whenUnsatisfiable: Unsupported value: \"Sometimes\": supported values: \"DoNotSchedule\", \"ScheduleAnyway\""
                ),
                format!(
                    "{p}[1].minDomains: Invalid value: 2: can only use minDomains if whenUnsatisfiable=DoNotSchedule, not ScheduleAnyway"
                ),
                format!(
                    "{p}[1].nodeTaintsPolicy: Unsupported value: nodeTaintsPolicy is not supported yet"
                ),
                format!(
                    "{p}[2].{{topologyKey, whenUnsatisfiable}}: Duplicate value: {{{zone}, DoNotSchedule}}"
                ),
                format!(
                    "{p}[3].minDomains: Invalid value: 2: can only use minDomains if whenUnsatisfiable=DoNotSchedule, not ScheduleAnyway"
                ),
            ]
        );
    }
}
