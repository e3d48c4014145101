//! The cluster's own objects: Namespaces, Nodes (taints, status quantities), Leases and
//! Events.

use super::field::{FieldError, check, check_non_negative, check_one_of, child, index, key};
use super::format::{is_qualified_name, is_valid_label_value};
use super::meta::{NameFormat, validate_object_meta, validate_quantity};
use super::pod::TOLERATION_EFFECTS;
use crate::coordination::Lease;
use crate::core::{Event, Namespace, Node, NodeStatus, Taint};
use crate::wellknown::AnnotationScope;

/// Validates a Namespace.
pub fn validate_namespace(ns: &Namespace) -> Vec<FieldError> {
    let mut errs = validate_object_meta(
        &ns.metadata,
        false,
        NameFormat::Dns1123Label,
        AnnotationScope::Other,
        "metadata",
    );
    errs.extend(crate::podsecurity::validate_namespace_labels(
        &ns.metadata.labels,
        "metadata.labels",
    ));
    errs
}

/// Validates a Node.
pub fn validate_node(node: &Node) -> Vec<FieldError> {
    let mut errs = validate_object_meta(
        &node.metadata,
        false,
        NameFormat::Dns1123Subdomain,
        AnnotationScope::Node,
        "metadata",
    );
    if let Some(spec) = &node.spec {
        for (i, t) in spec.taints.iter().enumerate() {
            errs.extend(validate_taint(t, &index("spec.taints", i)));
        }
    }
    if let Some(status) = &node.status {
        errs.extend(validate_node_status(status));
    }
    errs
}

/// Validates a Node's status (its quantities).
pub fn validate_node_status(status: &NodeStatus) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (field, map) in [
        ("capacity", &status.capacity),
        ("allocatable", &status.allocatable),
    ] {
        for (name, q) in map {
            errs.extend(validate_quantity(q, &key(&child("status", field), name)));
        }
    }
    errs
}

fn validate_taint(t: &Taint, p: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if t.key.is_empty() {
        errs.push(FieldError::required(child(p, "key"), ""));
    } else {
        check(
            &mut errs,
            &child(p, "key"),
            &t.key,
            is_qualified_name(&t.key),
        );
    }
    if let Some(v) = &t.value {
        check(&mut errs, &child(p, "value"), v, is_valid_label_value(v));
    }
    if t.effect.is_empty() {
        errs.push(FieldError::required(child(p, "effect"), ""));
    } else {
        check_one_of(
            &mut errs,
            child(p, "effect"),
            Some(&t.effect),
            TOLERATION_EFFECTS,
        );
    }
    errs
}

/// Validates an Event. Event names are generated (`<object>.<hex>`), so any subdomain is fine.
pub fn validate_event(ev: &Event) -> Vec<FieldError> {
    let mut errs = validate_object_meta(
        &ev.metadata,
        true,
        NameFormat::Dns1123Subdomain,
        AnnotationScope::Other,
        "metadata",
    );
    check_one_of(
        &mut errs,
        "type".into(),
        ev.type_.as_deref(),
        &["Normal", "Warning"],
    );
    if let (Some(obj_ns), Some(ev_ns)) = (
        ev.involved_object
            .namespace
            .as_deref()
            .filter(|s| !s.is_empty()),
        ev.metadata.namespace.as_deref().filter(|s| !s.is_empty()),
    ) && obj_ns != ev_ns
    {
        errs.push(FieldError::invalid_str(
            "involvedObject.namespace",
            obj_ns,
            "does not match event.namespace",
        ));
    }
    if let Some(c) = ev.count {
        check_non_negative(&mut errs, "count".into(), Some(i64::from(c)));
    }
    errs
}

/// Validates a Lease.
pub fn validate_lease(lease: &Lease) -> Vec<FieldError> {
    let mut errs = validate_object_meta(
        &lease.metadata,
        true,
        NameFormat::Dns1123Subdomain,
        AnnotationScope::Other,
        "metadata",
    );
    if let Some(spec) = &lease.spec {
        if let Some(d) = spec.lease_duration_seconds
            && d <= 0
        {
            errs.push(FieldError::invalid(
                "spec.leaseDurationSeconds",
                d,
                "must be greater than 0",
            ));
        }
        check_non_negative(
            &mut errs,
            "spec.leaseTransitions".into(),
            spec.lease_transitions.map(i64::from),
        );
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordination::LeaseSpec;
    use crate::meta::ObjectMeta;
    use crate::validation::fixtures::strings;

    #[test]
    fn node_taints_need_a_key_and_a_known_effect() {
        let node = Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                ..Default::default()
            },
            spec: Some(crate::core::NodeSpec {
                taints: vec![Taint {
                    key: "k".into(),
                    effect: "Sometimes".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            strings(&validate_node(&node)),
            vec![
                "spec.taints[0].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""
            ]
        );
    }

    #[test]
    fn lease_durations_must_be_positive() {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some("leader".into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                lease_duration_seconds: Some(0),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            strings(&validate_lease(&lease)),
            vec!["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]
        );
    }
}
