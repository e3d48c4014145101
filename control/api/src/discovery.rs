//! `discovery.k8s.io/v1` EndpointSlice: which Pods (addresses, nodes, readiness) back a Service.
//!
//! The EndpointSlice controller writes one slice per Service that has a selector, labelled
//! [`SERVICE_NAME_LABEL`] and [`MANAGED_BY_LABEL`]=[`MANAGED_BY_KETCH`]. Users may write their own
//! slices for selector-less Services (with the service-name label and without the managed-by
//! label); the controller never touches those. Node agents read slices to route a Service's
//! traffic, so this shape is the contract between the control plane and the data plane.

use serde::{Deserialize, Serialize};

use crate::core::ObjectReference;
use crate::meta::ObjectMeta;

/// Names the Service a slice belongs to (Kubernetes' `discovery.LabelServiceName`).
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Names the controller that owns a slice (Kubernetes' `discovery.LabelManagedBy`).
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// The [`MANAGED_BY_LABEL`] value of slices ketch's controller writes; slices without it are
/// the user's and are never changed or deleted by the controller.
pub const MANAGED_BY_KETCH: &str = "endpointslice-controller.ketch.dev";

/// `addressType` values.
pub const ADDRESS_TYPE_IPV4: &str = "IPv4";
pub const ADDRESS_TYPE_IPV6: &str = "IPv6";
pub const ADDRESS_TYPE_FQDN: &str = "FQDN";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointSlice {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `IPv4`, `IPv6` or `FQDN`; required (admission reports it missing rather than the
    /// decoder, so the error reads like Kubernetes').
    #[serde(default)]
    pub address_type: String,
    /// Always serialized, possibly empty: an empty slice is a Service with no backends.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<EndpointPort>,
}

/// One backend (usually one Pod).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoint {
    /// At least one; all of the slice's `addressType`.
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<EndpointConditions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<ObjectReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

impl Endpoint {
    /// Whether traffic may be sent here. An unset `ready` means ready: Kubernetes tells
    /// consumers to interpret "unknown" as ready, so hand-written slices work without
    /// conditions.
    pub fn is_ready(&self) -> bool {
        self.conditions
            .as_ref()
            .and_then(|c| c.ready)
            .unwrap_or(true)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointConditions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminating: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointPort {
    /// Matches the Service port's name (`""` for a single unnamed port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The port on the endpoints; unset when a named `targetPort` could not be resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_endpoint_without_a_ready_condition_counts_as_ready() {
        let mut e = Endpoint::default();
        assert!(e.is_ready());
        e.conditions = Some(EndpointConditions::default());
        assert!(e.is_ready());
        e.conditions = Some(EndpointConditions {
            ready: Some(false),
            ..Default::default()
        });
        assert!(!e.is_ready());
    }

    #[test]
    fn a_slice_round_trips_the_kubernetes_shape_and_keeps_empty_endpoints() {
        let doc = json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web", "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": true},
                "nodeName": "n1", "targetRef": {"kind": "Pod", "name": "web-1"}}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
        });
        let s: EndpointSlice = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(serde_json::to_value(&s).unwrap(), doc);
        let empty = EndpointSlice {
            address_type: "IPv4".into(),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&empty).unwrap()["endpoints"],
            json!([])
        );
    }
}
