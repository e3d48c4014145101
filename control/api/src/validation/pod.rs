//! Pods and the pod spec a workload's template carries: containers (checked in
//! `container.rs`), restart policy, scheduling (node selector, tolerations; affinity and topology
//! spread in `scheduling.rs`), volumes and
//! their projections.

use crate::wellknown::AnnotationScope;
use std::collections::BTreeSet;

use super::container::{validate_container, validate_seccomp_profile};
use super::field::{FieldError, check, check_non_negative, check_one_of, child, index, quote};
use super::format::{
    is_dns1123_label, is_dns1123_subdomain, is_qualified_name, is_valid_label_value,
};
use super::meta::{NameFormat, validate_labels, validate_object_meta, validate_quantity};
use super::scheduling::{validate_affinity, validate_topology_spread_constraints};
use crate::core::{Pod, PodSpec, Toleration};

/// The taint effects a toleration (and a Node's taint) may name.
pub(super) const TOLERATION_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// Validates a Pod.
pub fn validate_pod(pod: &Pod) -> Vec<FieldError> {
    let mut errs = validate_object_meta(
        &pod.metadata,
        true,
        NameFormat::Dns1123Subdomain,
        AnnotationScope::Pod,
        "metadata",
    );
    match &pod.spec {
        Some(spec) => errs.extend(validate_pod_spec(spec, "spec", PodSpecOptions::default())),
        None => errs.push(FieldError::required("spec", "")),
    }
    errs
}

/// Options that differ between a bare Pod and a pod template inside a workload.
#[derive(Debug, Clone, Copy, Default)]
pub struct PodSpecOptions {
    /// Workload templates must use `restartPolicy: Always` (ketch restarts, the controller
    /// replaces).
    pub require_restart_always: bool,
}

/// Validates a pod spec at `path` (`spec` or `spec.template.spec`).
pub fn validate_pod_spec(spec: &PodSpec, path: &str, opts: PodSpecOptions) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let volume_names: BTreeSet<&str> = spec.volumes.iter().map(|v| v.name.as_str()).collect();

    if spec.containers.is_empty() {
        errs.push(FieldError::required(child(path, "containers"), ""));
    }
    let mut seen_names = BTreeSet::new();
    for (list, field) in [
        (&spec.init_containers, "initContainers"),
        (&spec.containers, "containers"),
    ] {
        for (i, c) in list.iter().enumerate() {
            let p = index(&child(path, field), i);
            errs.extend(validate_container(c, &p, &volume_names));
            if !c.name.is_empty() && !seen_names.insert(c.name.as_str()) {
                errs.push(FieldError::duplicate(child(&p, "name"), quote(&c.name)));
            }
        }
    }
    if let Some(i) = crate::runtime::mixed_runtime_container(spec) {
        let (field, i) = if i < spec.containers.len() {
            ("containers", i)
        } else {
            ("initContainers", i - spec.containers.len())
        };
        errs.push(FieldError::forbidden(
            child(&index(&child(path, field), i), "image"),
            "a Pod cannot mix Wasm components and Linux containers: run them as separate \
             Pods and connect them with Services",
        ));
    }

    let allowed_restart: &[&str] = if opts.require_restart_always {
        &["Always"]
    } else {
        &["Always", "OnFailure", "Never"]
    };
    check_one_of(
        &mut errs,
        child(path, "restartPolicy"),
        spec.restart_policy.as_deref(),
        allowed_restart,
    );
    errs.extend(validate_labels(
        &spec.node_selector,
        &child(path, "nodeSelector"),
    ));
    if let Some(n) = &spec.node_name {
        check(
            &mut errs,
            &child(path, "nodeName"),
            n,
            is_dns1123_subdomain(n),
        );
    }
    for (i, t) in spec.tolerations.iter().enumerate() {
        errs.extend(validate_toleration(
            t,
            &index(&child(path, "tolerations"), i),
        ));
    }
    if let Some(a) = &spec.affinity {
        errs.extend(validate_affinity(a, &child(path, "affinity")));
    }
    errs.extend(validate_topology_spread_constraints(
        &spec.topology_spread_constraints,
        &child(path, "topologySpreadConstraints"),
    ));
    check_non_negative(
        &mut errs,
        child(path, "terminationGracePeriodSeconds"),
        spec.termination_grace_period_seconds,
    );
    if let Some(v) = spec.active_deadline_seconds
        && v <= 0
    {
        errs.push(FieldError::invalid(
            child(path, "activeDeadlineSeconds"),
            v,
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    if let Some(rc) = &spec.runtime_class_name {
        check(
            &mut errs,
            &child(path, "runtimeClassName"),
            rc,
            is_dns1123_subdomain(rc),
        );
    }
    for (field, value) in [("hostname", &spec.hostname), ("subdomain", &spec.subdomain)] {
        if let Some(v) = value {
            check(&mut errs, &child(path, field), v, is_dns1123_label(v));
        }
    }
    if let Some(sc) = &spec.security_context {
        let p = child(path, "securityContext");
        check_non_negative(&mut errs, child(&p, "runAsUser"), sc.run_as_user);
        check_non_negative(&mut errs, child(&p, "runAsGroup"), sc.run_as_group);
        if let Some(profile) = &sc.seccomp_profile {
            validate_seccomp_profile(&mut errs, &child(&p, "seccompProfile"), profile);
        }
    }
    if spec.host_users == Some(false) {
        // A user namespace needs the container's root filesystem owned by the mapped ids:
        // idmapped mounts (runc 1.2+) or a chowned copy of every snapshot, and neither the
        // runc 1.1 nor the containerd 1.6 that ketch runs on (Debian 12) offers the first.
        errs.push(FieldError::not_supported_yet(
            child(path, "hostUsers"),
            "a user namespace per Pod (`hostUsers: false`; it needs runc 1.2 idmapped mounts)",
        ));
    }

    let mut seen_volumes = BTreeSet::new();
    for (i, v) in spec.volumes.iter().enumerate() {
        let p = index(&child(path, "volumes"), i);
        if v.name.is_empty() {
            errs.push(FieldError::required(child(&p, "name"), ""));
        } else {
            check(
                &mut errs,
                &child(&p, "name"),
                &v.name,
                is_dns1123_label(&v.name),
            );
            if !seen_volumes.insert(v.name.as_str()) {
                errs.push(FieldError::duplicate(child(&p, "name"), quote(&v.name)));
            }
        }
        let sources = [
            v.empty_dir.is_some(),
            v.config_map.is_some(),
            v.secret.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if sources == 0 {
            errs.push(FieldError::required(
                p.clone(),
                "must specify a volume type (emptyDir, configMap or secret)",
            ));
        } else if sources > 1 {
            errs.push(FieldError::forbidden(
                p.clone(),
                "may not specify more than 1 volume type",
            ));
        }
        if let Some(ed) = &v.empty_dir {
            let ep = child(&p, "emptyDir");
            check_one_of(
                &mut errs,
                child(&ep, "medium"),
                ed.medium.as_deref(),
                &["", "Memory"],
            );
            if let Some(q) = &ed.size_limit {
                errs.extend(validate_quantity(q, &child(&ep, "sizeLimit")));
            }
        }
        let projections = [
            v.config_map.as_ref().map(|c| {
                (
                    child(&p, "configMap"),
                    "name",
                    c.name.as_deref(),
                    &c.items,
                    c.default_mode,
                )
            }),
            v.secret.as_ref().map(|s| {
                (
                    child(&p, "secret"),
                    "secretName",
                    s.secret_name.as_deref(),
                    &s.items,
                    s.default_mode,
                )
            }),
        ];
        for (sp, name_field, name, items, mode) in projections.into_iter().flatten() {
            match name {
                None | Some("") => errs.push(FieldError::required(child(&sp, name_field), "")),
                Some(n) => check(
                    &mut errs,
                    &child(&sp, name_field),
                    n,
                    is_dns1123_subdomain(n),
                ),
            }
            check_file_mode(&mut errs, child(&sp, "defaultMode"), mode);
            for (j, item) in items.iter().enumerate() {
                let ip = index(&child(&sp, "items"), j);
                if item.key.is_empty() {
                    errs.push(FieldError::required(child(&ip, "key"), ""));
                }
                if item.path.is_empty() {
                    errs.push(FieldError::required(child(&ip, "path"), ""));
                } else if item.path.starts_with('/') || item.path.split('/').any(|s| s == "..") {
                    errs.push(FieldError::invalid_str(
                        child(&ip, "path"),
                        &item.path,
                        "must be a relative path without '..'",
                    ));
                }
                check_file_mode(&mut errs, child(&ip, "mode"), item.mode);
            }
        }
    }
    errs
}

fn check_file_mode(errs: &mut Vec<FieldError>, field: String, mode: Option<i32>) {
    if let Some(m) = mode
        && !(0..=0o777).contains(&m)
    {
        errs.push(FieldError::invalid(
            field,
            m,
            "must be a number between 0 and 0777 (octal), both inclusive",
        ));
    }
}

fn validate_toleration(t: &Toleration, p: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let key_empty = t.key.as_deref().is_none_or(str::is_empty);
    if let Some(k) = t.key.as_deref().filter(|k| !k.is_empty()) {
        check(&mut errs, &child(p, "key"), k, is_qualified_name(k));
    }
    match t.operator.as_deref() {
        None | Some("") | Some("Equal") => {
            if key_empty {
                errs.push(FieldError::invalid_str(
                    child(p, "operator"),
                    t.operator.as_deref().unwrap_or(""),
                    "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
                ));
            }
            if let Some(v) = &t.value {
                check(&mut errs, &child(p, "value"), v, is_valid_label_value(v));
            }
        }
        Some("Exists") => {
            if t.value.as_deref().is_some_and(|v| !v.is_empty()) {
                errs.push(FieldError::invalid_str(
                    child(p, "operator"),
                    t.value.as_deref().unwrap_or(""),
                    "value must be empty when `operator` is 'Exists'",
                ));
            }
        }
        Some(other) => errs.push(FieldError::not_supported(
            child(p, "operator"),
            other,
            &["Equal", "Exists"],
        )),
    }
    let effect = t.effect.as_deref().filter(|e| !e.is_empty());
    check_one_of(&mut errs, child(p, "effect"), effect, TOLERATION_EFFECTS);
    if t.toleration_seconds.is_some() && effect != Some("NoExecute") {
        errs.push(FieldError::invalid_str(
            child(p, "effect"),
            effect.unwrap_or(""),
            "effect must be 'NoExecute' when `tolerationSeconds` is set",
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::fixtures::{container, pod, strings};

    #[test]
    fn pods_need_containers_with_unique_names_and_images() {
        assert_eq!(
            strings(&validate_pod(&pod(vec![]))),
            vec!["spec.containers: Required value"]
        );
        let mut noimage = container("b");
        noimage.image = None;
        let errs = strings(&validate_pod(&pod(vec![
            container("a"),
            container("a"),
            noimage,
        ])));
        assert_eq!(
            errs,
            vec![
                "spec.containers[1].name: Duplicate value: \"a\"",
                "spec.containers[2].image: Required value",
            ]
        );
    }

    #[test]
    fn tolerations_check_operator_effect_and_value() {
        let mut p = pod(vec![container("a")]);
        p.spec.as_mut().unwrap().tolerations = vec![
            Toleration {
                operator: Some("Exists".into()),
                ..Default::default()
            },
            Toleration {
                key: Some("k".into()),
                operator: Some("Like".into()),
                effect: Some("Never".into()),
                ..Default::default()
            },
            Toleration {
                key: Some("k".into()),
                operator: Some("Exists".into()),
                value: Some("v".into()),
                ..Default::default()
            },
        ];
        let errs = strings(&validate_pod(&p));
        assert_eq!(
            errs,
            vec![
                "spec.tolerations[1].operator: Unsupported value: \"Like\": supported values: \"Equal\", \"Exists\"",
                "spec.tolerations[1].effect: Unsupported value: \"Never\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
                "spec.tolerations[2].operator: Invalid value: \"v\": value must be empty when `operator` is 'Exists'",
            ]
        );
    }
}
