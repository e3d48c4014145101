//! RBAC objects: Kubernetes' `ValidatePolicyRule`, subjects and role references, with its
//! wording. Names are path segments (`system:node` is a valid ClusterRole name).

use super::field::{FieldError, check, child, index};
use super::format::is_dns1123_subdomain;
use super::meta::{NameFormat, validate_label_selector, validate_object_meta};
use crate::rbac::{
    ClusterRole, ClusterRoleBinding, GROUP, PolicyRule, Role, RoleBinding, RoleRef, SUBJECT_GROUP,
    SUBJECT_SERVICE_ACCOUNT, SUBJECT_USER, Subject,
};
use crate::wellknown::AnnotationScope;

fn meta(m: &crate::meta::ObjectMeta, namespaced: bool) -> Vec<FieldError> {
    validate_object_meta(
        m,
        namespaced,
        NameFormat::PathSegment,
        AnnotationScope::Other,
        "metadata",
    )
}

fn validate_rule(rule: &PolicyRule, namespaced: bool, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if rule.verbs.is_empty() {
        errs.push(FieldError::required(
            child(path, "verbs"),
            "verbs must contain at least one value",
        ));
    }
    if !rule.non_resource_urls.is_empty() {
        if namespaced {
            errs.push(FieldError::invalid(
                child(path, "nonResourceURLs"),
                format!("{:?}", rule.non_resource_urls),
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        if !rule.api_groups.is_empty() || !rule.resources.is_empty() {
            errs.push(FieldError::invalid(
                child(path, "nonResourceURLs"),
                format!("{:?}", rule.non_resource_urls),
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        for (i, u) in rule.non_resource_urls.iter().enumerate() {
            // A star anywhere but at the end would never match: Kubernetes only reads a
            // trailing one as a prefix, so say so instead of storing a dead rule.
            if u != "*" && (!u.starts_with('/') || u[..u.len() - 1].contains('*')) {
                errs.push(FieldError::invalid_str(
                    index(&child(path, "nonResourceURLs"), i),
                    u,
                    "must be \"*\" or a path starting with '/', with '*' only at its end",
                ));
            }
        }
        return errs;
    }
    if rule.api_groups.is_empty() {
        errs.push(FieldError::required(
            child(path, "apiGroups"),
            "resource rules must supply at least one api group",
        ));
    }
    if rule.resources.is_empty() {
        errs.push(FieldError::required(
            child(path, "resources"),
            "resource rules must supply at least one resource",
        ));
    }
    errs
}

fn validate_rules(rules: &[PolicyRule], namespaced: bool) -> Vec<FieldError> {
    rules
        .iter()
        .enumerate()
        .flat_map(|(i, r)| validate_rule(r, namespaced, &index("rules", i)))
        .collect()
}

fn validate_subject(s: &Subject, namespaced: bool, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if s.name.is_empty() {
        errs.push(FieldError::required(child(path, "name"), ""));
    }
    let group = s.api_group.as_deref().unwrap_or("");
    match s.kind.as_str() {
        SUBJECT_SERVICE_ACCOUNT => {
            if !s.name.is_empty() {
                check(
                    &mut errs,
                    &child(path, "name"),
                    &s.name,
                    is_dns1123_subdomain(&s.name),
                );
            }
            if !group.is_empty() {
                errs.push(FieldError::not_supported(
                    child(path, "apiGroup"),
                    group,
                    &[""],
                ));
            }
            if !namespaced && s.namespace.as_deref().unwrap_or("").is_empty() {
                errs.push(FieldError::required(child(path, "namespace"), ""));
            }
        }
        SUBJECT_USER | SUBJECT_GROUP => {
            if group != GROUP {
                errs.push(FieldError::not_supported(
                    child(path, "apiGroup"),
                    group,
                    &[GROUP],
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            child(path, "kind"),
            other,
            &[SUBJECT_SERVICE_ACCOUNT, SUBJECT_USER, SUBJECT_GROUP],
        )),
    }
    errs
}

fn validate_role_ref(r: &RoleRef, kinds: &[&str]) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if r.api_group != GROUP {
        errs.push(FieldError::not_supported(
            "roleRef.apiGroup",
            &r.api_group,
            &[GROUP],
        ));
    }
    if !kinds.contains(&r.kind.as_str()) {
        errs.push(FieldError::not_supported("roleRef.kind", &r.kind, kinds));
    }
    if r.name.is_empty() {
        errs.push(FieldError::required("roleRef.name", ""));
    } else if r.name.contains('/') || r.name.contains('%') || r.name == "." || r.name == ".." {
        errs.push(FieldError::invalid_str(
            "roleRef.name",
            &r.name,
            "may not be '.' or '..' and may not contain '/' or '%'",
        ));
    }
    errs
}

/// Validates a Role (namespaced: no non-resource URLs).
pub fn validate_role(role: &Role) -> Vec<FieldError> {
    let mut errs = meta(&role.metadata, true);
    errs.extend(validate_rules(&role.rules, true));
    errs
}

/// Validates a ClusterRole and its aggregation rule.
pub fn validate_cluster_role(role: &ClusterRole) -> Vec<FieldError> {
    let mut errs = meta(&role.metadata, false);
    errs.extend(validate_rules(&role.rules, false));
    if let Some(agg) = &role.aggregation_rule {
        if agg.cluster_role_selectors.is_empty() {
            errs.push(FieldError::required(
                "aggregationRule.clusterRoleSelectors",
                "at least one clusterRoleSelector required if aggregationRule is non-nil",
            ));
        }
        for (i, sel) in agg.cluster_role_selectors.iter().enumerate() {
            errs.extend(validate_label_selector(
                sel,
                &index("aggregationRule.clusterRoleSelectors", i),
            ));
        }
    }
    errs
}

/// Validates a RoleBinding: its role is a Role of its namespace or a ClusterRole.
pub fn validate_role_binding(b: &RoleBinding) -> Vec<FieldError> {
    let mut errs = meta(&b.metadata, true);
    errs.extend(validate_role_ref(&b.role_ref, &["Role", "ClusterRole"]));
    for (i, s) in b.subjects.iter().enumerate() {
        errs.extend(validate_subject(s, true, &index("subjects", i)));
    }
    errs
}

/// Validates a ClusterRoleBinding: its role is a ClusterRole.
pub fn validate_cluster_role_binding(b: &ClusterRoleBinding) -> Vec<FieldError> {
    let mut errs = meta(&b.metadata, false);
    errs.extend(validate_role_ref(&b.role_ref, &["ClusterRole"]));
    for (i, s) in b.subjects.iter().enumerate() {
        errs.extend(validate_subject(s, false, &index("subjects", i)));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::fixtures::strings;

    fn rule(v: serde_json::Value) -> PolicyRule {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn rules_need_verbs_groups_and_resources_or_only_urls() {
        let role = Role {
            metadata: crate::meta::ObjectMeta {
                name: Some("system:r".into()),
                ..Default::default()
            },
            rules: vec![
                rule(serde_json::json!({"verbs": [], "resources": ["pods"]})),
                rule(serde_json::json!({"verbs": ["get"], "nonResourceURLs": ["/version"]})),
            ],
            ..Default::default()
        };
        assert_eq!(
            strings(&validate_role(&role)),
            [
                "rules[0].verbs: Required value: verbs must contain at least one value",
                "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
                "rules[1].nonResourceURLs: Invalid value: [\"/version\"]: namespaced rules cannot apply to non-resource URLs",
            ]
        );
        let cr = ClusterRole {
            metadata: crate::meta::ObjectMeta {
                name: Some("a/b".into()),
                ..Default::default()
            },
            rules: vec![rule(
                serde_json::json!({"verbs": ["get"], "nonResourceURLs": ["/version", "/a*b"]}),
            )],
            aggregation_rule: Some(crate::rbac::AggregationRule::default()),
            ..Default::default()
        };
        assert_eq!(
            strings(&validate_cluster_role(&cr)),
            [
                "metadata.name: Invalid value: \"a/b\": may not contain '/'",
                "rules[0].nonResourceURLs[1]: Invalid value: \"/a*b\": must be \"*\" or a path starting with '/', with '*' only at its end",
                "aggregationRule.clusterRoleSelectors: Required value: at least one clusterRoleSelector required if aggregationRule is non-nil",
            ]
        );
    }

    #[test]
    fn bindings_check_their_role_ref_and_subjects() {
        let b: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "b"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
            "subjects": [
                {"kind": "ServiceAccount", "name": "sa"},
                {"kind": "User", "name": "u"},
                {"kind": "Robot", "name": "r"},
            ]
        }))
        .unwrap();
        assert_eq!(
            strings(&validate_cluster_role_binding(&b)),
            [
                "roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"",
                "subjects[0].namespace: Required value",
                "subjects[1].apiGroup: Unsupported value: \"\": supported values: \"rbac.authorization.k8s.io\"",
                "subjects[2].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\"",
            ]
        );
    }
}
