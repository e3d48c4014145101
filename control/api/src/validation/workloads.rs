//! Deployments and ReplicaSets: a selector that is required and selects the pod template's
//! labels, a template whose pods always restart, and the rolling-update bounds.

use super::field::{FieldError, check_non_negative, check_one_of, child, quote};
use super::meta::{
    NameFormat, validate_annotations, validate_label_selector, validate_labels,
    validate_object_meta,
};
use super::pod::{PodSpecOptions, validate_pod_spec};
use crate::apps::{Deployment, PodTemplateSpec, ReplicaSet};
use crate::core::IntOrString;
use crate::meta::ObjectMeta;
use crate::selector::{LabelSelector, Selector};
use crate::wellknown::AnnotationScope;

/// Validates a pod template, including that `selector` (if given) selects its labels.
fn validate_template(
    template: &PodTemplateSpec,
    selector: Option<&LabelSelector>,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let meta_path = child(path, "metadata");
    let empty = ObjectMeta::default();
    let meta = template.metadata.as_ref().unwrap_or(&empty);
    errs.extend(validate_labels(&meta.labels, &child(&meta_path, "labels")));
    errs.extend(validate_annotations(
        &meta.annotations,
        AnnotationScope::Pod,
        &child(&meta_path, "annotations"),
    ));
    if let Some(sel) = selector
        && !sel.is_empty()
        && let Ok(parsed) = Selector::from_label_selector(sel)
        && !parsed.matches(&meta.labels)
    {
        // Rendered the way the Go API server prints a map, so messages look familiar.
        let rendered = serde_json::to_string(&meta.labels).unwrap_or_default();
        errs.push(FieldError::invalid(
            child(&meta_path, "labels"),
            format!("map[string]string{rendered}"),
            "selector does not match template labels",
        ));
    }
    match &template.spec {
        Some(spec) => errs.extend(validate_pod_spec(
            spec,
            &child(path, "spec"),
            PodSpecOptions {
                require_restart_always: true,
            },
        )),
        None => errs.push(FieldError::required(child(path, "spec"), "")),
    }
    errs
}

fn validate_workload_selector(sel: &LabelSelector, path: &str) -> Vec<FieldError> {
    if sel.is_empty() {
        return vec![FieldError::required(path, "")];
    }
    validate_label_selector(sel, path)
}

pub(super) fn validate_int_or_percent(v: &IntOrString, path: &str) -> (Vec<FieldError>, bool) {
    match v {
        IntOrString::Int(n) if *n < 0 => (
            vec![FieldError::invalid(
                path,
                n,
                "must be greater than or equal to 0",
            )],
            false,
        ),
        IntOrString::Int(n) => (Vec::new(), *n == 0),
        IntOrString::String(s) => match s.strip_suffix('%').and_then(|n| n.parse::<u32>().ok()) {
            Some(n) => (Vec::new(), n == 0),
            None => (
                vec![FieldError::invalid_str(
                    path,
                    s,
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                )],
                false,
            ),
        },
    }
}

/// Validates a Deployment.
pub fn validate_deployment(d: &Deployment) -> Vec<FieldError> {
    let mut errs = validate_object_meta(
        &d.metadata,
        true,
        NameFormat::Dns1123Subdomain,
        AnnotationScope::Other,
        "metadata",
    );
    let Some(spec) = &d.spec else {
        errs.push(FieldError::required("spec", ""));
        return errs;
    };
    if let Some(r) = spec.replicas {
        check_non_negative(&mut errs, "spec.replicas".into(), Some(i64::from(r)));
    }
    errs.extend(validate_workload_selector(&spec.selector, "spec.selector"));
    errs.extend(validate_template(
        &spec.template,
        Some(&spec.selector),
        "spec.template",
    ));
    if let Some(strategy) = &spec.strategy {
        let sp = "spec.strategy";
        let ty = strategy.type_.as_deref().unwrap_or("RollingUpdate");
        check_one_of(
            &mut errs,
            child(sp, "type"),
            strategy.type_.as_deref(),
            &["Recreate", "RollingUpdate"],
        );
        if let Some(ru) = &strategy.rolling_update {
            let rp = child(sp, "rollingUpdate");
            if ty == "Recreate" {
                errs.push(FieldError::forbidden(
                    rp.clone(),
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
            let mut surge_zero = false;
            let mut unavailable_zero = false;
            if let Some(s) = &ru.max_surge {
                let (e, zero) = validate_int_or_percent(s, &child(&rp, "maxSurge"));
                errs.extend(e);
                surge_zero = zero;
            }
            if let Some(u) = &ru.max_unavailable {
                let up = child(&rp, "maxUnavailable");
                let (e, zero) = validate_int_or_percent(u, &up);
                errs.extend(e);
                unavailable_zero = zero;
                if let IntOrString::String(s) = u
                    && let Some(n) = s.strip_suffix('%').and_then(|n| n.parse::<u32>().ok())
                    && n > 100
                {
                    errs.push(FieldError::invalid_str(
                        up.clone(),
                        s,
                        "must not be greater than 100%",
                    ));
                }
            }
            if surge_zero && unavailable_zero {
                errs.push(FieldError::invalid(
                    child(&rp, "maxUnavailable"),
                    ru.max_unavailable
                        .as_ref()
                        .map(|v| match v {
                            IntOrString::Int(n) => n.to_string(),
                            IntOrString::String(s) => quote(s),
                        })
                        .unwrap_or_default(),
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
        }
    }
    for (field, v) in [
        ("minReadySeconds", spec.min_ready_seconds),
        ("revisionHistoryLimit", spec.revision_history_limit),
        ("progressDeadlineSeconds", spec.progress_deadline_seconds),
    ] {
        check_non_negative(&mut errs, child("spec", field), v.map(i64::from));
    }
    if let (Some(deadline), Some(min_ready)) =
        (spec.progress_deadline_seconds, spec.min_ready_seconds)
        && deadline >= 0
        && deadline <= min_ready
    {
        errs.push(FieldError::invalid(
            "spec.progressDeadlineSeconds",
            deadline,
            "must be greater than minReadySeconds",
        ));
    }
    errs
}

/// Validates a ReplicaSet.
pub fn validate_replica_set(rs: &ReplicaSet) -> Vec<FieldError> {
    let mut errs = validate_object_meta(
        &rs.metadata,
        true,
        NameFormat::Dns1123Subdomain,
        AnnotationScope::Other,
        "metadata",
    );
    let Some(spec) = &rs.spec else {
        errs.push(FieldError::required("spec", ""));
        return errs;
    };
    if let Some(r) = spec.replicas {
        check_non_negative(&mut errs, "spec.replicas".into(), Some(i64::from(r)));
    }
    check_non_negative(
        &mut errs,
        "spec.minReadySeconds".into(),
        spec.min_ready_seconds.map(i64::from),
    );
    errs.extend(validate_workload_selector(&spec.selector, "spec.selector"));
    errs.extend(validate_template(
        &spec.template,
        Some(&spec.selector),
        "spec.template",
    ));
    errs
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::apps::{DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
    use crate::core::PodSpec;
    use crate::validation::fixtures::{container, strings};

    fn deployment(strategy: Option<DeploymentStrategy>) -> Deployment {
        let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                selector: LabelSelector {
                    match_labels: labels.clone(),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels,
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![container("web")],
                        ..Default::default()
                    }),
                },
                strategy,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn rolling_update_bounds_must_be_counts_or_percentages_and_not_both_zero() {
        assert!(validate_deployment(&deployment(None)).is_empty());
        let ru = |s: IntOrString, u: IntOrString| {
            Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(s),
                    max_unavailable: Some(u),
                }),
            })
        };
        let errs = strings(&validate_deployment(&deployment(ru(
            IntOrString::Int(0),
            IntOrString::String("0%".into()),
        ))));
        assert_eq!(
            errs,
            vec![
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"0%\": may not be 0 when `maxSurge` is 0"
            ]
        );
        let errs = strings(&validate_deployment(&deployment(ru(
            IntOrString::String("lots".into()),
            IntOrString::Int(-1),
        ))));
        assert_eq!(errs.len(), 2);
        assert!(errs[0].starts_with("spec.strategy.rollingUpdate.maxSurge: Invalid value: \"lots\": a valid percent string"), "{}", errs[0]);
        assert_eq!(
            errs[1],
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: -1: must be greater than or equal to 0"
        );
        let recreate = Some(DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: Some(RollingUpdateDeployment::default()),
        });
        assert_eq!(
            strings(&validate_deployment(&deployment(recreate))),
            vec![
                "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"
            ]
        );
    }

    #[test]
    fn a_deployment_needs_a_selector() {
        let mut d = deployment(None);
        d.spec.as_mut().unwrap().selector = LabelSelector::default();
        assert_eq!(
            strings(&validate_deployment(&d)),
            vec!["spec.selector: Required value"]
        );
    }
}
