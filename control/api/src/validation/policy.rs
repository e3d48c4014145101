//! PodDisruptionBudgets: exactly one of `minAvailable` and `maxUnavailable`, each a count or
//! a percentage of at most 100 %, a valid selector, a known unhealthy-Pod policy; and a
//! status whose counts are not negative.

use super::field::{FieldError, check_non_negative, check_one_of, child};
use super::meta::{NameFormat, validate_label_selector, validate_object_meta};
use super::workloads::validate_int_or_percent;
use crate::core::IntOrString;
use crate::policy::{
    ALWAYS_ALLOW, IF_HEALTHY_BUDGET, PodDisruptionBudget, PodDisruptionBudgetStatus,
};
use crate::wellknown::AnnotationScope;

fn validate_budget_value(v: &IntOrString, path: &str) -> Vec<FieldError> {
    let (mut errs, _) = validate_int_or_percent(v, path);
    if let IntOrString::String(s) = v
        && errs.is_empty()
        && s.strip_suffix('%')
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n > 100)
    {
        errs.push(FieldError::invalid_str(
            path,
            s,
            "must not be greater than 100%",
        ));
    }
    errs
}

/// Validates a PodDisruptionBudget.
pub fn validate_pod_disruption_budget(pdb: &PodDisruptionBudget) -> Vec<FieldError> {
    let mut errs = validate_object_meta(
        &pdb.metadata,
        true,
        NameFormat::Dns1123Subdomain,
        AnnotationScope::Other,
        "metadata",
    );
    let Some(spec) = &pdb.spec else {
        errs.push(FieldError::required("spec", ""));
        return errs;
    };
    match (&spec.min_available, &spec.max_unavailable) {
        (Some(_), Some(_)) => errs.push(FieldError::invalid_str(
            "spec",
            "minAvailable and maxUnavailable",
            "minAvailable and maxUnavailable cannot be both set",
        )),
        // Kubernetes lets a budget name neither (it then allows every disruption); such a
        // budget is more likely a mistake than a wish, so ketch asks for one.
        (None, None) => errs.push(FieldError::required(
            "spec.minAvailable",
            "one of spec.minAvailable and spec.maxUnavailable must be set",
        )),
        _ => {}
    }
    if let Some(v) = &spec.min_available {
        errs.extend(validate_budget_value(v, "spec.minAvailable"));
    }
    if let Some(v) = &spec.max_unavailable {
        errs.extend(validate_budget_value(v, "spec.maxUnavailable"));
    }
    if let Some(sel) = &spec.selector {
        errs.extend(validate_label_selector(sel, "spec.selector"));
    }
    check_one_of(
        &mut errs,
        "spec.unhealthyPodEvictionPolicy".into(),
        spec.unhealthy_pod_eviction_policy.as_deref(),
        &[ALWAYS_ALLOW, IF_HEALTHY_BUDGET],
    );
    if let Some(status) = &pdb.status {
        errs.extend(validate_pod_disruption_budget_status(status));
    }
    errs
}

/// Validates a PodDisruptionBudget's status (also on its own, for `/status` writes).
pub fn validate_pod_disruption_budget_status(s: &PodDisruptionBudgetStatus) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (name, v) in [
        ("disruptionsAllowed", s.disruptions_allowed),
        ("currentHealthy", s.current_healthy),
        ("desiredHealthy", s.desired_healthy),
        ("expectedPods", s.expected_pods),
    ] {
        check_non_negative(&mut errs, child("status", name), Some(i64::from(v)));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::ObjectMeta;
    use crate::policy::PodDisruptionBudgetSpec;
    use crate::selector::LabelSelector;
    use crate::validation::fixtures::strings;

    fn pdb(spec: PodDisruptionBudgetSpec) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(PodDisruptionBudgetSpec {
                selector: Some(LabelSelector::default()),
                ..spec
            }),
            ..Default::default()
        }
    }

    fn min(v: IntOrString) -> PodDisruptionBudgetSpec {
        PodDisruptionBudgetSpec {
            min_available: Some(v),
            ..Default::default()
        }
    }

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    #[test]
    fn counts_and_percentages_up_to_100_are_valid_budgets() {
        for spec in [
            min(IntOrString::Int(2)),
            min(pct("50%")),
            PodDisruptionBudgetSpec {
                max_unavailable: Some(pct("100%")),
                unhealthy_pod_eviction_policy: Some(ALWAYS_ALLOW.into()),
                ..Default::default()
            },
        ] {
            assert_eq!(
                strings(&validate_pod_disruption_budget(&pdb(spec))),
                Vec::<String>::new()
            );
        }
    }

    #[test]
    fn a_budget_names_exactly_one_bound_and_each_bound_is_checked_by_its_path() {
        let both = PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(1)),
            max_unavailable: Some(IntOrString::Int(1)),
            ..Default::default()
        };
        let errs = strings(&validate_pod_disruption_budget(&pdb(both)));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("cannot be both set"), "{errs:?}");
        let errs = strings(&validate_pod_disruption_budget(&pdb(Default::default())));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("spec.minAvailable: Required value"),
            "{errs:?}"
        );

        let errs = strings(&validate_pod_disruption_budget(&pdb(min(pct("150%")))));
        assert_eq!(
            errs,
            ["spec.minAvailable: Invalid value: \"150%\": must not be greater than 100%"]
        );
        let errs = strings(&validate_pod_disruption_budget(&pdb(min(
            IntOrString::Int(-1),
        ))));
        assert_eq!(
            errs,
            ["spec.minAvailable: Invalid value: -1: must be greater than or equal to 0"]
        );
        let bad = PodDisruptionBudgetSpec {
            max_unavailable: Some(pct("half")),
            unhealthy_pod_eviction_policy: Some("Sometimes".into()),
            ..Default::default()
        };
        let errs = strings(&validate_pod_disruption_budget(&pdb(bad)));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with("spec.maxUnavailable: Invalid value: \"half\""),
            "{errs:?}"
        );
        assert!(
            errs[1]
                .starts_with("spec.unhealthyPodEvictionPolicy: Unsupported value: \"Sometimes\""),
            "{errs:?}"
        );
    }

    #[test]
    fn negative_status_counts_are_refused() {
        let status = PodDisruptionBudgetStatus {
            disruptions_allowed: -1,
            ..Default::default()
        };
        assert_eq!(
            strings(&validate_pod_disruption_budget_status(&status)),
            ["status.disruptionsAllowed: Invalid value: -1: must be greater than or equal to 0"]
        );
    }
}
