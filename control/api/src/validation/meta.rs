//! Checks shared by every kind: object metadata (name or generateName, namespace, labels,
//! annotations, owner references), label selectors and quantities.

use std::collections::BTreeMap;

use super::field::{FieldError, check, check_non_negative, child, index, key};
use super::format::{
    is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_qualified_name,
    is_valid_label_value,
};
use crate::meta::ObjectMeta;
use crate::quantity::Quantity;
use crate::selector::LabelSelector;
use crate::wellknown::{self, AnnotationScope};

const ANNOTATIONS_MAX: usize = 256 * 1024;

/// Which name format a kind's `metadata.name` must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameFormat {
    Dns1123Label,
    Dns1123Subdomain,
    Dns1035Label,
    /// Kubernetes' `ValidatePathSegmentName` (RBAC objects: `system:node` is a valid
    /// ClusterRole name): anything but `.`, `..` and names holding `/` or `%`.
    PathSegment,
}

impl NameFormat {
    fn check(self, s: &str) -> Vec<String> {
        match self {
            NameFormat::Dns1123Label => is_dns1123_label(s),
            NameFormat::Dns1123Subdomain => is_dns1123_subdomain(s),
            NameFormat::Dns1035Label => is_dns1035_label(s),
            NameFormat::PathSegment => path_segment_name(s),
        }
    }
}

fn path_segment_name(s: &str) -> Vec<String> {
    if s == "." || s == ".." {
        return vec![format!("may not be '{s}'")];
    }
    ["/", "%"]
        .iter()
        .filter(|c| s.contains(**c))
        .map(|c| format!("may not contain '{c}'"))
        .collect()
}

/// Validates label keys and values at `path` (e.g. `metadata.labels`).
pub fn validate_labels(labels: &BTreeMap<String, String>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in labels {
        check(&mut errs, path, k, is_qualified_name(k));
        check(&mut errs, &key(path, k), v, is_valid_label_value(v));
    }
    errs
}

/// Validates annotation keys, the 256 KiB total size limit, and the `ketch.dev/…` ones an
/// object of `scope` may carry ([`wellknown::validate_ketch_annotations`]).
pub fn validate_annotations(
    annotations: &BTreeMap<String, String>,
    scope: AnnotationScope,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = wellknown::validate_ketch_annotations(scope, annotations, path);
    let mut total = 0usize;
    for (k, v) in annotations {
        check(
            &mut errs,
            path,
            k,
            is_qualified_name(&k.to_ascii_lowercase()),
        );
        total += k.len() + v.len();
    }
    if total > ANNOTATIONS_MAX {
        errs.push(FieldError::too_long(path, ANNOTATIONS_MAX));
    }
    errs
}

/// Validates object metadata: name (or generateName), namespace, labels, annotations (with
/// the `ketch.dev/…` ones of `scope`), owners.
pub fn validate_object_meta(
    meta: &ObjectMeta,
    namespaced: bool,
    format: NameFormat,
    scope: AnnotationScope,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match (&meta.name, &meta.generate_name) {
        (Some(name), _) if !name.is_empty() => {
            check(&mut errs, &child(path, "name"), name, format.check(name));
        }
        (_, Some(gen_name)) if !gen_name.is_empty() => {
            // The server appends 5 random characters, so validate the prefix with a stand-in
            // suffix, and without a trailing '-' which is legal inside the final name.
            let probe = format!("{}a", gen_name);
            check(
                &mut errs,
                &child(path, "generateName"),
                gen_name,
                format.check(&probe),
            );
        }
        _ => errs.push(FieldError::required(
            child(path, "name"),
            "name or generateName is required",
        )),
    }
    if let Some(ns) = meta.namespace.as_deref().filter(|ns| !ns.is_empty()) {
        if namespaced {
            check(
                &mut errs,
                &child(path, "namespace"),
                ns,
                is_dns1123_label(ns),
            );
        } else {
            errs.push(FieldError::forbidden(
                child(path, "namespace"),
                "not allowed on this type",
            ));
        }
    }
    errs.extend(validate_labels(&meta.labels, &child(path, "labels")));
    errs.extend(validate_annotations(
        &meta.annotations,
        scope,
        &child(path, "annotations"),
    ));
    check_non_negative(&mut errs, child(path, "generation"), meta.generation);
    for (i, owner) in meta.owner_references.iter().enumerate() {
        let p = index(&child(path, "ownerReferences"), i);
        for (field, value) in [
            ("apiVersion", &owner.api_version),
            ("kind", &owner.kind),
            ("name", &owner.name),
            ("uid", &owner.uid),
        ] {
            if value.is_empty() {
                errs.push(FieldError::required(child(&p, field), ""));
            }
        }
    }
    if meta
        .owner_references
        .iter()
        .filter(|o| o.controller == Some(true))
        .count()
        > 1
    {
        errs.push(FieldError::invalid(
            child(path, "ownerReferences"),
            "[...]",
            "Only one reference can have Controller set to true",
        ));
    }
    errs
}

/// Validates a label selector spec at `path` (e.g. `spec.selector`).
pub fn validate_label_selector(sel: &LabelSelector, path: &str) -> Vec<FieldError> {
    let mut errs = validate_labels(&sel.match_labels, &child(path, "matchLabels"));
    for (i, expr) in sel.match_expressions.iter().enumerate() {
        let p = index(&child(path, "matchExpressions"), i);
        check(
            &mut errs,
            &child(&p, "key"),
            &expr.key,
            is_qualified_name(&expr.key),
        );
        match expr.operator.as_str() {
            "In" | "NotIn" => {
                if expr.values.is_empty() {
                    errs.push(FieldError::required(
                        child(&p, "values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !expr.values.is_empty() {
                    errs.push(FieldError::forbidden(
                        child(&p, "values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                child(&p, "operator"),
                other,
                &["In", "NotIn", "Exists", "DoesNotExist"],
            )),
        }
        for (j, v) in expr.values.iter().enumerate() {
            check(
                &mut errs,
                &index(&child(&p, "values"), j),
                v,
                is_valid_label_value(v),
            );
        }
    }
    errs
}

/// Validates that a quantity parses and is not negative.
pub fn validate_quantity(q: &Quantity, path: &str) -> Vec<FieldError> {
    match q.check_non_negative() {
        Ok(_) => Vec::new(),
        Err(e) => vec![FieldError::invalid_str(path, &q.0, e.to_string())],
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::validation::fixtures::strings;

    #[test]
    fn bad_labels_are_reported_at_their_key() {
        let labels = BTreeMap::from([
            ("ok".to_string(), "x y".to_string()),
            ("bad key".to_string(), "v".to_string()),
        ]);
        let errs = strings(&validate_labels(&labels, "metadata.labels"));
        assert_eq!(errs.len(), 2);
        assert!(
            errs[0].starts_with("metadata.labels: Invalid value: \"bad key\": name part"),
            "{}",
            errs[0]
        );
        assert!(
            errs[1].starts_with("metadata.labels[ok]: Invalid value: \"x y\": a valid label"),
            "{}",
            errs[1]
        );
    }

    #[test]
    fn annotations_are_limited_to_256_kib_in_total() {
        let big = BTreeMap::from([("a".to_string(), "x".repeat(256 * 1024))]);
        assert_eq!(
            strings(&validate_annotations(
                &big,
                AnnotationScope::Other,
                "metadata.annotations"
            )),
            vec!["metadata.annotations: Too long: may not be more than 262144 bytes"]
        );
    }
}
