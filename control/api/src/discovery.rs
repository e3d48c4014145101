//! `discovery.k8s.io/v1` EndpointSlice: which Pods (addresses, nodes, readiness) back a Service.
//!
//! The EndpointSlice controller writes one slice per Service that has a selector, labelled
//! [`SERVICE_NAME_LABEL`] and [`MANAGED_BY_LABEL`]=[`MANAGED_BY_KETCH`]. Users may write their own
//! slices for selector-less Services (with the service-name label and without the managed-by
//! label); the controller never touches those. Node agents read slices to route a Service's
//! traffic, so this shape is the contract between the control plane and the data plane.

use std::net::IpAddr;

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

    /// The Pod this endpoint stands for: a `targetRef` of kind `Pod` (or of no kind, as
    /// hand-written slices often leave it) with a name. Node agents route such an endpoint to
    /// the Pod itself (in process, or through the Pod's node), never to its addresses.
    pub fn pod(&self) -> Option<&ObjectReference> {
        self.target_ref
            .as_ref()
            .filter(|r| r.kind.as_deref().is_none_or(|k| k == "Pod") && r.name.is_some())
    }
}

/// Cloud metadata and host services outside the link-local range: Alibaba's
/// `100.100.100.200`, Azure's wire server `168.63.129.16`, AWS's IPv6 IMDS `fd00:ec2::254`.
const METADATA_ADDRESSES: [IpAddr; 3] = [
    IpAddr::V4(std::net::Ipv4Addr::new(100, 100, 100, 200)),
    IpAddr::V4(std::net::Ipv4Addr::new(168, 63, 129, 16)),
    IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
];

/// Why `ip` is not a destination ketch dials on a user's say-so, `None` when it may be.
/// These addresses reach the node itself (loopback: the all-in-one API server, raft, the
/// agent), cloud metadata (link-local and the providers' fixed addresses), or nothing in
/// particular (unspecified, multicast, broadcast). An IPv4-mapped IPv6 address is judged as
/// the IPv4 address it carries. Kubernetes refuses the same ranges in Endpoints and
/// EndpointSlices (`ValidateEndpointIP`); the wording follows it.
pub fn special_address(ip: IpAddr) -> Option<&'static str> {
    let ip = ip.to_canonical();
    if METADATA_ADDRESSES.contains(&ip) {
        return Some("may not be a cloud metadata address");
    }
    let (unspecified, loopback, link_local, multicast, broadcast) = match ip {
        IpAddr::V4(v4) => (
            v4.is_unspecified(),
            v4.is_loopback(),
            v4.is_link_local(),
            v4.is_multicast(),
            v4.is_broadcast(),
        ),
        IpAddr::V6(v6) => (
            v6.is_unspecified(),
            v6.is_loopback(),
            v6.is_unicast_link_local(),
            v6.is_multicast(),
            false,
        ),
    };
    if unspecified {
        Some("may not be unspecified (0.0.0.0, ::)")
    } else if loopback {
        Some("may not be in the loopback range (127.0.0.0/8, ::1/128)")
    } else if link_local {
        Some("may not be in the link-local range (169.254.0.0/16, fe80::/10)")
    } else if multicast {
        Some("may not be a multicast address (224.0.0.0/4, ff00::/8)")
    } else if broadcast {
        Some("may not be the broadcast address (255.255.255.255)")
    } else {
        None
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
    fn loopback_link_local_metadata_unspecified_and_multicast_addresses_are_special() {
        for (ip, why) in [
            ("127.0.0.1", "loopback"),
            ("127.8.9.10", "loopback"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("169.254.169.254", "link-local"),
            ("::ffff:169.254.169.254", "link-local"),
            ("fe80::1", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("100.100.100.200", "metadata"),
            ("168.63.129.16", "metadata"),
            ("fd00:ec2::254", "metadata"),
        ] {
            let msg = special_address(ip.parse().unwrap());
            assert!(msg.is_some_and(|m| m.contains(why)), "{ip}: {msg:?}");
        }
        for ip in [
            "10.1.2.3",
            "192.0.2.10",
            "93.184.216.34",
            "2001:db8::1",
            "fd00::1",
        ] {
            assert_eq!(special_address(ip.parse().unwrap()), None, "{ip}");
        }
    }

    #[test]
    fn an_endpoint_stands_for_a_pod_when_its_target_is_a_named_pod() {
        let mut e = Endpoint::default();
        assert!(e.pod().is_none());
        e.target_ref = Some(ObjectReference {
            kind: Some("Pod".into()),
            ..Default::default()
        });
        assert!(e.pod().is_none(), "no name");
        e.target_ref.as_mut().unwrap().name = Some("web-1".into());
        assert!(e.pod().is_some());
        e.target_ref.as_mut().unwrap().kind = None;
        assert!(e.pod().is_some(), "no kind: a Pod");
        e.target_ref.as_mut().unwrap().kind = Some("Node".into());
        assert!(e.pod().is_none());
    }

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
