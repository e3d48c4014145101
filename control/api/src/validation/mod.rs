//! Field validation with Kubernetes-compatible error messages.
//!
//! Messages follow `k8s.io/apimachinery/pkg/util/validation` word for word where ketch enforces
//! the same rule, so users (and tools that grep kubectl output) see familiar text. Validators
//! collect every error instead of stopping at the first, as the Kubernetes API server does.
//!
//! One file per group of kinds, each kind's `validate_*` with the checks it needs (a check
//! two files need lives with its first user): `field.rs` (the error type, field paths, the
//! checks most files use), `format.rs` (string formats), `meta.rs` (metadata, selectors,
//! quantities), `pod.rs`, `container.rs` and `scheduling.rs` (affinity, topology spread),
//! `workloads.rs` (Deployment, ReplicaSet), `services.rs` (Service, EndpointSlice, Ingress),
//! `policy.rs` (PodDisruptionBudget), `rbac.rs` (Roles and their bindings), `config.rs` (ConfigMap, Secret) and
//! `cluster.rs` (Namespace, Node, Lease, Event). Everything public is re-exported here, so
//! callers name `ketch_api::validation::…` whatever file it lives in.

mod cluster;
mod config;
mod container;
mod field;
mod format;
mod meta;
mod pod;
mod policy;
mod rbac;
mod scheduling;
mod services;
mod workloads;

pub use cluster::{
    validate_event, validate_lease, validate_namespace, validate_node, validate_node_status,
};
pub use config::{validate_config_map, validate_secret};
pub use field::{FieldError, FieldErrorKind, child, index, key};
pub use format::{
    is_config_map_key, is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_env_var_name,
    is_ip_address, is_port_name, is_qualified_name, is_valid_label_value,
    is_wildcard_dns1123_subdomain,
};
pub use meta::{
    NameFormat, validate_annotations, validate_label_selector, validate_labels,
    validate_object_meta, validate_quantity,
};
pub use pod::{PodSpecOptions, validate_pod, validate_pod_spec};
pub use policy::{validate_pod_disruption_budget, validate_pod_disruption_budget_status};
pub use rbac::{
    validate_cluster_role, validate_cluster_role_binding, validate_role, validate_role_binding,
};
pub use scheduling::{DO_NOT_SCHEDULE, NODE_FIELD_NAME, SCHEDULE_ANYWAY};
pub use services::{validate_endpoint_slice, validate_ingress, validate_service};
pub use workloads::{validate_deployment, validate_replica_set};

/// Builders the tests of several files share.
#[cfg(test)]
mod fixtures {
    use super::FieldError;
    use crate::core::{Container, Pod, PodSpec};
    use crate::meta::ObjectMeta;

    pub(super) fn strings(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    pub(super) fn pod(containers: Vec<Container>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub(super) fn container(name: &str) -> Container {
        Container {
            name: name.into(),
            image: Some("img".into()),
            ..Default::default()
        }
    }
}
