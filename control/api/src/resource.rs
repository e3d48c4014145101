//! The resource registry: which kinds ketch serves, under which URL paths and names.
//!
//! This table is the single source of truth for the API server's routes, the CLI's resource
//! name resolution (`ketch get deploy`) and admission's apiVersion/kind checks.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::apps::{Deployment, ReplicaSet};
use crate::coordination::Lease;
use crate::core::{ConfigMap, Event, Namespace, Node, Pod, Secret, Service};
use crate::discovery::EndpointSlice;
use crate::meta::ObjectMeta;
use crate::networking::Ingress;
use crate::policy::PodDisruptionBudget;
use crate::rbac::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};

/// Static description of one served resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
    /// Whether a `/status` subresource exists (and the main endpoint ignores status changes).
    pub has_status: bool,
}

impl ResourceInfo {
    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kind of list responses, e.g. `PodList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// `Deployment.apps` / `Pod`: the qualified kind Kubernetes uses in error messages.
    pub fn group_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// `deployments.apps` / `pods`: the qualified resource name.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

const fn info(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    short_names: &'static [&'static str],
    namespaced: bool,
    has_status: bool,
) -> ResourceInfo {
    ResourceInfo {
        group,
        version: "v1",
        kind,
        plural,
        singular,
        short_names,
        namespaced,
        has_status,
    }
}

pub const NAMESPACES: ResourceInfo = info(
    "",
    "Namespace",
    "namespaces",
    "namespace",
    &["ns"],
    false,
    true,
);
pub const PODS: ResourceInfo = info("", "Pod", "pods", "pod", &["po"], true, true);
pub const SERVICES: ResourceInfo = info("", "Service", "services", "service", &["svc"], true, true);
pub const CONFIGMAPS: ResourceInfo = info(
    "",
    "ConfigMap",
    "configmaps",
    "configmap",
    &["cm"],
    true,
    false,
);
pub const SECRETS: ResourceInfo = info("", "Secret", "secrets", "secret", &[], true, false);
pub const NODES: ResourceInfo = info("", "Node", "nodes", "node", &["no"], false, true);
pub const EVENTS: ResourceInfo = info("", "Event", "events", "event", &["ev"], true, false);
pub const DEPLOYMENTS: ResourceInfo = info(
    "apps",
    "Deployment",
    "deployments",
    "deployment",
    &["deploy"],
    true,
    true,
);
pub const REPLICASETS: ResourceInfo = info(
    "apps",
    "ReplicaSet",
    "replicasets",
    "replicaset",
    &["rs"],
    true,
    true,
);
pub const LEASES: ResourceInfo = info(
    "coordination.k8s.io",
    "Lease",
    "leases",
    "lease",
    &[],
    true,
    false,
);
pub const ENDPOINTSLICES: ResourceInfo = info(
    "discovery.k8s.io",
    "EndpointSlice",
    "endpointslices",
    "endpointslice",
    &[],
    true,
    false,
);
pub const INGRESSES: ResourceInfo = info(
    "networking.k8s.io",
    "Ingress",
    "ingresses",
    "ingress",
    &["ing"],
    true,
    true,
);
pub const PODDISRUPTIONBUDGETS: ResourceInfo = info(
    "policy",
    "PodDisruptionBudget",
    "poddisruptionbudgets",
    "poddisruptionbudget",
    &["pdb"],
    true,
    true,
);

pub const ROLES: ResourceInfo = info(
    crate::rbac::GROUP,
    "Role",
    "roles",
    "role",
    &[],
    true,
    false,
);
pub const CLUSTERROLES: ResourceInfo = info(
    crate::rbac::GROUP,
    "ClusterRole",
    "clusterroles",
    "clusterrole",
    &[],
    false,
    false,
);
pub const ROLEBINDINGS: ResourceInfo = info(
    crate::rbac::GROUP,
    "RoleBinding",
    "rolebindings",
    "rolebinding",
    &[],
    true,
    false,
);
pub const CLUSTERROLEBINDINGS: ResourceInfo = info(
    crate::rbac::GROUP,
    "ClusterRoleBinding",
    "clusterrolebindings",
    "clusterrolebinding",
    &[],
    false,
    false,
);

/// Every served resource, in the order `ketch api-resources` lists them.
pub static RESOURCES: &[ResourceInfo] = &[
    NAMESPACES,
    PODS,
    SERVICES,
    CONFIGMAPS,
    SECRETS,
    NODES,
    EVENTS,
    DEPLOYMENTS,
    REPLICASETS,
    LEASES,
    ENDPOINTSLICES,
    INGRESSES,
    PODDISRUPTIONBUDGETS,
    ROLES,
    CLUSTERROLES,
    ROLEBINDINGS,
    CLUSTERROLEBINDINGS,
];

/// The resource served at `/api/v1/<plural>` (group `""`) or `/apis/<group>/<version>/<plural>`.
pub fn by_path(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource for a manifest's `apiVersion` and `kind` (both exact, as Kubernetes requires).
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

/// Resolves a user-typed resource name, as `kubectl` does: plural, singular, kind and short names
/// (case-insensitive), optionally qualified with the group (`deployments.apps`, `deploy.apps`).
pub fn lookup(name: &str) -> Option<&'static ResourceInfo> {
    let name = name.to_ascii_lowercase();
    let matches_name = |r: &ResourceInfo, n: &str| {
        r.plural == n
            || r.singular == n
            || r.kind.eq_ignore_ascii_case(n)
            || r.short_names.contains(&n)
    };
    if let Some(r) = RESOURCES.iter().find(|r| matches_name(r, &name)) {
        return Some(r);
    }
    // `plural.group`, also `plural.version.group` (`deployments.v1.apps`) like kubectl.
    RESOURCES.iter().find(|r| {
        let Some((head, group)) = name.split_once('.') else {
            return false;
        };
        if group == r.group {
            return matches_name(r, head);
        }
        let version_group = format!("{}.{}", r.version, r.group);
        group == version_group && matches_name(r, head)
    })
}

/// A typed, persisted kind. Lets generic code (client, stores, controllers) go from a Rust type to
/// its URL and metadata without a lookup.
pub trait Resource: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    const INFO: &'static ResourceInfo;
    fn metadata(&self) -> &ObjectMeta;
    fn metadata_mut(&mut self) -> &mut ObjectMeta;
}

macro_rules! impl_resource {
    ($($ty:ty => $info:ident),* $(,)?) => {
        $(impl Resource for $ty {
            const INFO: &'static ResourceInfo = &$info;
            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        })*
    };
}

impl_resource!(
    Namespace => NAMESPACES,
    Pod => PODS,
    Service => SERVICES,
    ConfigMap => CONFIGMAPS,
    Secret => SECRETS,
    Node => NODES,
    Event => EVENTS,
    Deployment => DEPLOYMENTS,
    ReplicaSet => REPLICASETS,
    Lease => LEASES,
    EndpointSlice => ENDPOINTSLICES,
    Ingress => INGRESSES,
    PodDisruptionBudget => PODDISRUPTIONBUDGETS,
    Role => ROLES,
    ClusterRole => CLUSTERROLES,
    RoleBinding => ROLEBINDINGS,
    ClusterRoleBinding => CLUSTERROLEBINDINGS,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_and_list_kinds_follow_kubernetes() {
        assert_eq!(PODS.api_version(), "v1");
        assert_eq!(DEPLOYMENTS.api_version(), "apps/v1");
        assert_eq!(LEASES.api_version(), "coordination.k8s.io/v1");
        assert_eq!(PODS.list_kind(), "PodList");
        assert_eq!(DEPLOYMENTS.group_kind(), "Deployment.apps");
    }

    #[test]
    fn lookup_accepts_every_kubectl_spelling() {
        for name in [
            "deployments",
            "deployment",
            "Deployment",
            "deploy",
            "deployments.apps",
            "deploy.apps",
            "deployments.v1.apps",
        ] {
            assert_eq!(lookup(name).map(|r| r.kind), Some("Deployment"), "{name}");
        }
        assert_eq!(lookup("ns").map(|r| r.kind), Some("Namespace"));
        assert_eq!(
            lookup("leases.coordination.k8s.io").map(|r| r.kind),
            Some("Lease")
        );
        assert_eq!(lookup("CM").map(|r| r.kind), Some("ConfigMap"));
        assert_eq!(lookup("ing").map(|r| r.kind), Some("Ingress"));
        assert_eq!(lookup("pdb").map(|r| r.kind), Some("PodDisruptionBudget"));
        assert_eq!(
            lookup("poddisruptionbudgets.policy").map(|r| r.api_version()),
            Some("policy/v1".to_string())
        );
        assert_eq!(
            lookup("endpointslices.discovery.k8s.io").map(|r| r.kind),
            Some("EndpointSlice")
        );
        assert_eq!(lookup("pods.apps"), None);
        assert_eq!(lookup("widgets"), None);
    }

    #[test]
    fn path_and_kind_lookups_are_exact() {
        assert_eq!(
            by_path("apps", "v1", "replicasets").map(|r| r.kind),
            Some("ReplicaSet")
        );
        assert_eq!(by_path("", "v1", "deployments"), None);
        assert_eq!(by_kind("v1", "Secret").map(|r| r.plural), Some("secrets"));
        assert_eq!(by_kind("apps/v1", "Pod"), None);
        assert_eq!(
            by_path("discovery.k8s.io", "v1", "endpointslices").map(|r| r.kind),
            Some("EndpointSlice")
        );
        assert_eq!(
            by_kind("networking.k8s.io/v1", "Ingress").map(|r| r.has_status),
            Some(true)
        );
    }

    #[test]
    fn the_trait_constant_points_at_the_table_entry() {
        assert_eq!(<Deployment as Resource>::INFO.plural, "deployments");
        assert_eq!(RESOURCES.len(), 17);
        assert!(!<Node as Resource>::INFO.namespaced);
    }
}
