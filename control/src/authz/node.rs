//! The Node authorizer (Kubernetes' Node authorizer with NodeRestriction's name checks): a
//! node's credential (`system:node:<name>` in `system:nodes`) may do what its agent and
//! gateway do, and nothing else.
//!
//! What a node may do, call by call (read from `runtime/agent` and `runtime/gateway`):
//!
//! | caller | request | allowed when |
//! |---|---|---|
//! | agent `node::register` | get, create, patch `nodes/<self>`; patch `nodes/<self>/status` | the name is its own (a create's name is checked by [`restrict_create`]) |
//! | agent `node::heartbeat` | patch `nodes/<self>/status` | own name |
//! | agent `node::ensure_lease_namespace` | get `namespaces/kube-node-lease` | namespaces are readable |
//! | agent `node::renew_lease` | patch, create `leases/<self>` in `kube-node-lease` | own name, that namespace |
//! | agent `pods::run` | list + watch `pods` with `fieldSelector=spec.nodeName=<self>` | exactly that selector |
//! | agent `pods::worker` | patch `pods/<p>/status` | `<p>` is bound to the node |
//! | agent `pods::spec` | get `configmaps/<c>`, `secrets/<s>` | a Pod bound to the node references it (env, envFrom, volumes) |
//! | agent `events` | create, patch `events` in any namespace | always (as Kubernetes' `system:node` role) |
//! | gateway `reflect` | list + watch `services`, `endpointslices.discovery.k8s.io`, `ingresses.networking.k8s.io`, `nodes` | always (read-only, every namespace) |
//! | gateway (Ingress TLS) | get (or a named list/watch of) `secrets/<s>` | an Ingress's `spec.tls[].secretName` names it |
//! | gateway (Ingress TLS) | list/watch `secrets` with `fieldSelector=type=kubernetes.io/tls` | every node terminates Ingress TLS (an ingress controller's access) |
//!
//! Anything else on the kinds guarded here is denied, so no RBAC binding can widen a node's
//! credential over another node's objects; other kinds get no opinion (RBAC decides, which
//! grants a node only what every authenticated user has).
//!
//! The graph (Pods by node, Secrets and ConfigMaps by Pod, Ingress TLS Secrets) is kept
//! from the store's watch by [`super::reflector`], never read per request.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;

use super::{Decision, Request};
use crate::server::auth::{Attributes, User};

/// The group every node credential carries.
pub const NODES_GROUP: &str = "system:nodes";
/// A node user's name is this prefix and the node's name.
pub const NODE_USER_PREFIX: &str = "system:node:";
/// Where the agents' heartbeat Leases live.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// The node a user speaks for, if it is a node credential.
pub fn node_of(user: &User) -> Option<&str> {
    if !user.groups.iter().any(|g| g == NODES_GROUP) {
        return None;
    }
    user.name
        .strip_prefix(NODE_USER_PREFIX)
        .filter(|n| !n.is_empty())
}

type Key = (String, String);

/// What a Pod references, by namespace.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct PodRefs {
    node: String,
    secrets: Vec<String>,
    config_maps: Vec<String>,
}

/// Pods by node and what they reference, counted so a Secret two Pods of a node use
/// stays readable until both are gone.
#[derive(Debug, Default)]
pub struct NodeGraph {
    pods: HashMap<Key, PodRefs>,
    /// node → Pods bound to it.
    pods_by_node: HashMap<String, HashSet<Key>>,
    /// (node, namespace, name) → how many of the node's Pods reference that Secret.
    secrets: HashMap<(String, String, String), u32>,
    config_maps: HashMap<(String, String, String), u32>,
    /// Ingress (namespace, name) → the Secrets its `spec.tls` names.
    ingress_tls: HashMap<Key, Vec<String>>,
    /// (namespace, Secret) → how many Ingresses name it.
    tls_secrets: HashMap<Key, u32>,
}

/// The part of a stored Pod the graph reads (unknown fields ignored: the store holds
/// admitted Pods; this view only needs the references).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodView {
    #[serde(default)]
    metadata: MetaView,
    #[serde(default)]
    spec: PodSpecView,
}

#[derive(Debug, Default, Deserialize)]
struct MetaView {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpecView {
    #[serde(default)]
    node_name: Option<String>,
    #[serde(default)]
    containers: Vec<ContainerView>,
    #[serde(default)]
    init_containers: Vec<ContainerView>,
    #[serde(default)]
    volumes: Vec<VolumeView>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerView {
    #[serde(default)]
    env: Vec<EnvView>,
    #[serde(default)]
    env_from: Vec<EnvFromView>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvView {
    #[serde(default)]
    value_from: Option<ValueFromView>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ValueFromView {
    #[serde(default)]
    config_map_key_ref: Option<NameView>,
    #[serde(default)]
    secret_key_ref: Option<NameView>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvFromView {
    #[serde(default)]
    config_map_ref: Option<NameView>,
    #[serde(default)]
    secret_ref: Option<NameView>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VolumeView {
    #[serde(default)]
    config_map: Option<NameView>,
    #[serde(default)]
    secret: Option<SecretVolumeView>,
}

#[derive(Debug, Default, Deserialize)]
struct NameView {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretVolumeView {
    #[serde(default)]
    secret_name: Option<String>,
}

/// The part of a stored Ingress the graph reads.
#[derive(Debug, Default, Deserialize)]
pub struct IngressView {
    #[serde(default)]
    metadata: MetaView,
    #[serde(default)]
    spec: IngressSpecView,
}

impl IngressView {
    pub fn namespace(&self) -> &str {
        &self.metadata.namespace
    }

    pub fn name(&self) -> &str {
        &self.metadata.name
    }
}

#[derive(Debug, Default, Deserialize)]
struct IngressSpecView {
    #[serde(default)]
    tls: Vec<IngressTlsView>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IngressTlsView {
    #[serde(default)]
    secret_name: Option<String>,
}

impl PodView {
    pub fn namespace(&self) -> &str {
        &self.metadata.namespace
    }

    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    fn refs(&self) -> Option<PodRefs> {
        let node = self.spec.node_name.clone().filter(|n| !n.is_empty())?;
        let mut secrets = Vec::new();
        let mut config_maps = Vec::new();
        let add = |list: &mut Vec<String>, name: &Option<String>| {
            if let Some(n) = name.as_ref().filter(|n| !n.is_empty())
                && !list.contains(n)
            {
                list.push(n.clone());
            }
        };
        for c in self
            .spec
            .containers
            .iter()
            .chain(&self.spec.init_containers)
        {
            for e in &c.env {
                if let Some(v) = &e.value_from {
                    if let Some(r) = &v.config_map_key_ref {
                        add(&mut config_maps, &r.name);
                    }
                    if let Some(r) = &v.secret_key_ref {
                        add(&mut secrets, &r.name);
                    }
                }
            }
            for e in &c.env_from {
                if let Some(r) = &e.config_map_ref {
                    add(&mut config_maps, &r.name);
                }
                if let Some(r) = &e.secret_ref {
                    add(&mut secrets, &r.name);
                }
            }
        }
        for v in &self.spec.volumes {
            if let Some(r) = &v.config_map {
                add(&mut config_maps, &r.name);
            }
            if let Some(s) = &v.secret {
                add(&mut secrets, &s.secret_name);
            }
        }
        Some(PodRefs {
            node,
            secrets,
            config_maps,
        })
    }
}

fn bump(map: &mut HashMap<(String, String, String), u32>, key: (String, String, String), up: bool) {
    if up {
        *map.entry(key).or_default() += 1;
    } else if let Some(n) = map.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            map.remove(&key);
        }
    }
}

impl NodeGraph {
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// A Pod added or changed (an unbound Pod is in no node's graph).
    pub fn put_pod(&mut self, pod: &PodView) {
        let key = (pod.metadata.namespace.clone(), pod.metadata.name.clone());
        let refs = pod.refs();
        if self.pods.get(&key) == refs.as_ref() {
            return;
        }
        self.remove_pod(&key.0, &key.1);
        let Some(refs) = refs else { return };
        self.count(&key.0, &refs, true);
        self.pods_by_node
            .entry(refs.node.clone())
            .or_default()
            .insert(key.clone());
        self.pods.insert(key, refs);
    }

    pub fn remove_pod(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        let Some(refs) = self.pods.remove(&key) else {
            return;
        };
        self.count(namespace, &refs, false);
        if let Some(set) = self.pods_by_node.get_mut(&refs.node) {
            set.remove(&key);
            if set.is_empty() {
                self.pods_by_node.remove(&refs.node);
            }
        }
    }

    fn count(&mut self, ns: &str, refs: &PodRefs, up: bool) {
        for s in &refs.secrets {
            bump(
                &mut self.secrets,
                (refs.node.clone(), ns.to_string(), s.clone()),
                up,
            );
        }
        for c in &refs.config_maps {
            bump(
                &mut self.config_maps,
                (refs.node.clone(), ns.to_string(), c.clone()),
                up,
            );
        }
    }

    pub fn put_ingress(&mut self, ing: &IngressView) {
        let key = (ing.metadata.namespace.clone(), ing.metadata.name.clone());
        self.remove_ingress(&key.0, &key.1);
        let names: Vec<String> = ing
            .spec
            .tls
            .iter()
            .filter_map(|t| t.secret_name.clone().filter(|s| !s.is_empty()))
            .collect();
        for n in &names {
            *self
                .tls_secrets
                .entry((key.0.clone(), n.clone()))
                .or_default() += 1;
        }
        if !names.is_empty() {
            self.ingress_tls.insert(key, names);
        }
    }

    pub fn remove_ingress(&mut self, namespace: &str, name: &str) {
        let Some(names) = self
            .ingress_tls
            .remove(&(namespace.to_string(), name.to_string()))
        else {
            return;
        };
        for n in names {
            let k = (namespace.to_string(), n);
            if let Some(c) = self.tls_secrets.get_mut(&k) {
                *c -= 1;
                if *c == 0 {
                    self.tls_secrets.remove(&k);
                }
            }
        }
    }

    fn pod_on(&self, node: &str, ns: &str, name: &str) -> bool {
        self.pods
            .get(&(ns.to_string(), name.to_string()))
            .is_some_and(|p| p.node == node)
    }

    fn has(map: &HashMap<(String, String, String), u32>, node: &str, ns: &str, name: &str) -> bool {
        map.contains_key(&(node.to_string(), ns.to_string(), name.to_string()))
    }

    /// How many Pods are bound to `node` (for tests and metrics).
    pub fn pods_on(&self, node: &str) -> usize {
        self.pods_by_node.get(node).map_or(0, HashSet::len)
    }

    /// The decision for `node`'s request: Allow, Deny (a kind this authorizer guards), or no
    /// opinion (RBAC decides).
    pub fn decide(&self, node: &str, req: &Request<'_>) -> Decision {
        let Request::Resource(a) = req else {
            return Decision::NoOpinion(String::new());
        };
        let allow = |why: &str| Decision::Allow(format!("node authorizer: {why}"));
        let deny = |why: String| Decision::Deny(why);
        let verb = a.verb;
        let read = matches!(verb, "get" | "list" | "watch");
        let own = a.name == Some(node);
        let ns = a.namespace.unwrap_or("");
        match (a.group, a.resource) {
            ("", "nodes") => match (verb, a.subresource) {
                ("get" | "list" | "watch", None) => allow("nodes are readable"),
                // NodeRestriction checks a create's name against the node's.
                ("create", None) => allow("a node registers itself"),
                ("patch", None | Some("status")) if own => allow("a node writes its own Node"),
                _ => deny(format!("node {node:?} may only patch its own Node object")),
            },
            ("coordination.k8s.io", "leases") => {
                let in_ns = a.namespace == Some(LEASE_NAMESPACE);
                match verb {
                    "create" if in_ns && a.subresource.is_none() => {
                        allow("a node creates its Lease")
                    }
                    "get" | "patch" if in_ns && own && a.subresource.is_none() => {
                        allow("a node renews its own Lease")
                    }
                    _ => deny(format!(
                        "node {node:?} may only read and renew its own Lease in namespace {LEASE_NAMESPACE:?}"
                    )),
                }
            }
            ("", "pods") => match (verb, a.subresource) {
                ("list" | "watch", None) => {
                    let wanted = format!("spec.nodeName={node}");
                    if a.field_selector == Some(wanted.as_str()) {
                        allow("a node lists its own Pods")
                    } else {
                        deny(format!(
                            "node {node:?} can only list or watch Pods with fieldSelector {wanted:?}"
                        ))
                    }
                }
                ("get", None) | ("patch", Some("status")) => match a.name {
                    Some(name) if self.pod_on(node, ns, name) => {
                        allow("the Pod is bound to the node")
                    }
                    _ => deny(format!(
                        "no relationship found between node {node:?} and this object"
                    )),
                },
                _ => deny(format!("node {node:?} may not {verb} this Pod resource")),
            },
            // Every node's gateway terminates Ingress TLS, so it lists and watches the
            // `kubernetes.io/tls` Secrets (as an ingress controller does, cluster-wide): a
            // node holds the TLS keys of the Ingresses it may serve, no other Secret.
            ("", "secrets")
                if matches!(verb, "list" | "watch")
                    && a.name.is_none()
                    && a.field_selector == Some("type=kubernetes.io/tls") =>
            {
                allow("the gateway serves Ingress TLS from kubernetes.io/tls Secrets")
            }
            ("", "secrets" | "configmaps") => {
                // A named list or watch (`metadata.name=`) reads one object, like a get.
                let name = a.name.or_else(|| {
                    a.field_selector
                        .and_then(|f| f.strip_prefix("metadata.name="))
                        .filter(|n| !n.contains(','))
                });
                let Some(name) = name.filter(|_| read && a.subresource.is_none()) else {
                    return deny(format!(
                        "node {node:?} may only read the {} its Pods reference, one by name",
                        a.resource
                    ));
                };
                let map = if a.resource == "secrets" {
                    &self.secrets
                } else {
                    &self.config_maps
                };
                if Self::has(map, node, ns, name) {
                    allow("a Pod bound to the node references it")
                } else if a.resource == "secrets"
                    && self
                        .tls_secrets
                        .contains_key(&(ns.to_string(), name.to_string()))
                {
                    allow("an Ingress's spec.tls names it, and every gateway serves Ingresses")
                } else {
                    deny(format!(
                        "no relationship found between node {node:?} and this object"
                    ))
                }
            }
            ("", "events") => match verb {
                "create" | "patch" => allow("a node records Events"),
                _ => Decision::NoOpinion(String::new()),
            },
            ("", "services" | "namespaces")
            | ("discovery.k8s.io", "endpointslices")
            | ("networking.k8s.io", "ingresses")
                if read && a.subresource.is_none() =>
            {
                allow("the gateway reads the routing objects")
            }
            _ => Decision::NoOpinion(String::new()),
        }
    }
}

/// NodeRestriction at create, where the authorizer cannot see the name: a node creates
/// only its own Node and its own Lease.
///
/// # Errors
/// The refusal, in Kubernetes' wording.
pub fn restrict_create(node: &str, attrs: &Attributes<'_>, name: &str) -> Result<(), String> {
    let what = match (attrs.group, attrs.resource) {
        ("", "nodes") => "node",
        ("coordination.k8s.io", "leases") => "lease",
        _ => return Ok(()),
    };
    if name == node {
        Ok(())
    } else {
        Err(format!(
            "node \"{node}\" is not allowed to create a {what} named \"{name}\": only its own"
        ))
    }
}

/// NodeRestriction on a node's patch of its own Node: labels, annotations and status are
/// the agent's; the spec (taints, `unschedulable`) belongs to the control plane and
/// operators.
///
/// # Errors
/// The refusal, in Kubernetes' wording.
pub fn restrict_node_patch(node: &str, patch: &serde_json::Value) -> Result<(), String> {
    if patch.get("spec").is_some() {
        return Err(format!(
            "node \"{node}\" is not allowed to modify its spec (taints, unschedulable)"
        ));
    }
    Ok(())
}
