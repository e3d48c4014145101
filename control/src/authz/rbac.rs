//! The RBAC authorizer's index: every Role, ClusterRole and binding, with the bindings
//! turned around into subject → grants, so a decision looks only at the grants of the
//! caller's name and groups in the request's namespace (and cluster-wide), never at every
//! binding.
//!
//! A grant names its role, not its rules: a role edited (or an aggregated ClusterRole
//! refilled) changes every grant at once, and a binding to a role that does not exist yet
//! starts granting when the role appears, as in Kubernetes.

use std::collections::HashMap;
use std::sync::Arc;

use ketch_api::authorization::{NonResourceRule, ResourceRule};
use ketch_api::rbac::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, SUBJECT_GROUP,
    SUBJECT_SERVICE_ACCOUNT, SUBJECT_USER, Subject,
};

use super::{Decision, Request, User};

/// Which role a grant gives: a namespace's Role or a ClusterRole.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum RoleKey {
    Role { namespace: String, name: String },
    Cluster(String),
}

/// One binding's grant to one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Grant {
    /// The binding's store key (`rolebindings/ns/name`, `clusterrolebindings//name`): to
    /// remove its grants when it changes, and to name it in a decision's reason.
    binding: Arc<str>,
    role: RoleKey,
}

/// A subject's grants: cluster-wide ones (ClusterRoleBindings) and per namespace.
#[derive(Debug, Default)]
struct Grants {
    cluster: Vec<Grant>,
    by_namespace: HashMap<String, Vec<Grant>>,
}

impl Grants {
    fn is_empty(&self) -> bool {
        self.cluster.is_empty() && self.by_namespace.is_empty()
    }
}

/// Users and groups are different subjects with the same name space of strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum SubjectKey {
    User(String),
    Group(String),
}

/// What a stored binding granted, so its change or removal undoes exactly that.
#[derive(Debug, Clone)]
struct Bound {
    namespace: Option<String>,
    subjects: Vec<SubjectKey>,
}

/// The RBAC state: roles by key and bindings turned into subject → grants.
#[derive(Debug, Default)]
pub struct RbacIndex {
    roles: HashMap<RoleKey, Arc<[PolicyRule]>>,
    /// Users' and groups' grants apart, so a lookup borrows the caller's strings.
    users: HashMap<String, Grants>,
    groups: HashMap<String, Grants>,
    bindings: HashMap<Arc<str>, Bound>,
}

/// The subject a binding's `subjects[]` entry stands for; a ServiceAccount is the user
/// `system:serviceaccount:<ns>:<name>`, its namespace the binding's when unset.
fn subject_key(s: &Subject, binding_ns: Option<&str>) -> Option<SubjectKey> {
    match s.kind.as_str() {
        SUBJECT_USER => Some(SubjectKey::User(s.name.clone())),
        SUBJECT_GROUP => Some(SubjectKey::Group(s.name.clone())),
        SUBJECT_SERVICE_ACCOUNT => {
            let ns = s
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .or(binding_ns)?;
            Some(SubjectKey::User(format!(
                "system:serviceaccount:{ns}:{}",
                s.name
            )))
        }
        _ => None,
    }
}

impl RbacIndex {
    fn subject_map<'a, 'k>(
        &'a mut self,
        k: &'k SubjectKey,
    ) -> (&'a mut HashMap<String, Grants>, &'k str) {
        match k {
            SubjectKey::User(n) => (&mut self.users, n),
            SubjectKey::Group(n) => (&mut self.groups, n),
        }
    }

    pub fn clear(&mut self) {
        *self = Self::default();
    }

    pub fn put_role(&mut self, role: &Role) {
        let key = RoleKey::Role {
            namespace: role.metadata.namespace().to_string(),
            name: role.metadata.name().to_string(),
        };
        self.roles.insert(key, role.rules.clone().into());
    }

    pub fn remove_role(&mut self, namespace: &str, name: &str) {
        self.roles.remove(&RoleKey::Role {
            namespace: namespace.to_string(),
            name: name.to_string(),
        });
    }

    pub fn put_cluster_role(&mut self, role: &ClusterRole) {
        let key = RoleKey::Cluster(role.metadata.name().to_string());
        self.roles.insert(key, role.rules.clone().into());
    }

    pub fn remove_cluster_role(&mut self, name: &str) {
        self.roles.remove(&RoleKey::Cluster(name.to_string()));
    }

    pub fn put_role_binding(&mut self, key: &str, b: &RoleBinding) {
        let ns = b.metadata.namespace().to_string();
        let role = match b.role_ref.kind.as_str() {
            "Role" => RoleKey::Role {
                namespace: ns.clone(),
                name: b.role_ref.name.clone(),
            },
            _ => RoleKey::Cluster(b.role_ref.name.clone()),
        };
        self.put_binding(key, Some(ns), &b.subjects, role);
    }

    pub fn put_cluster_role_binding(&mut self, key: &str, b: &ClusterRoleBinding) {
        let role = RoleKey::Cluster(b.role_ref.name.clone());
        self.put_binding(key, None, &b.subjects, role);
    }

    fn put_binding(
        &mut self,
        key: &str,
        namespace: Option<String>,
        subjects: &[Subject],
        role: RoleKey,
    ) {
        self.remove_binding(key);
        let binding: Arc<str> = key.into();
        let keys: Vec<SubjectKey> = subjects
            .iter()
            .filter_map(|s| subject_key(s, namespace.as_deref()))
            .collect();
        for k in &keys {
            let (map, name) = self.subject_map(k);
            let grants = map.entry(name.to_string()).or_default();
            let grant = Grant {
                binding: binding.clone(),
                role: role.clone(),
            };
            match &namespace {
                None => grants.cluster.push(grant),
                Some(ns) => grants
                    .by_namespace
                    .entry(ns.clone())
                    .or_default()
                    .push(grant),
            }
        }
        self.bindings.insert(
            binding,
            Bound {
                namespace,
                subjects: keys,
            },
        );
    }

    /// Forgets the grants of the binding stored at `key`.
    pub fn remove_binding(&mut self, key: &str) {
        let Some(bound) = self.bindings.remove(key) else {
            return;
        };
        for k in bound.subjects {
            let (map, name) = self.subject_map(&k);
            let Some(grants) = map.get_mut(name) else {
                continue;
            };
            match &bound.namespace {
                None => grants.cluster.retain(|g| &*g.binding != key),
                Some(ns) => {
                    if let Some(list) = grants.by_namespace.get_mut(ns) {
                        list.retain(|g| &*g.binding != key);
                        if list.is_empty() {
                            grants.by_namespace.remove(ns);
                        }
                    }
                }
            }
            if grants.is_empty() {
                map.remove(name);
            }
        }
    }

    /// How many bindings the index holds.
    pub fn binding_count(&self) -> usize {
        self.bindings.len()
    }

    /// Every grant that applies to `user` in `namespace` (cluster-wide ones always), with
    /// the subject it came through, in a fixed order: the user's own, then each group's.
    fn grants<'a>(
        &'a self,
        user: &'a User,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a Grant, SubjectRef<'a>)> + 'a {
        let subjects = std::iter::once(SubjectRef::User(&user.name))
            .chain(user.groups.iter().map(|g| SubjectRef::Group(g)));
        subjects.flat_map(move |s| {
            let grants = match s {
                SubjectRef::User(n) => self.users.get(n),
                SubjectRef::Group(n) => self.groups.get(n),
            };
            let cluster = grants.into_iter().flat_map(|g| g.cluster.iter());
            let local = grants
                .zip(namespace)
                .and_then(|(g, ns)| g.by_namespace.get(ns))
                .into_iter()
                .flatten();
            cluster.chain(local).map(move |g| (g, s))
        })
    }

    /// Allow when a rule of a role granted to `user` (in the request's namespace or
    /// cluster-wide) matches; otherwise no opinion (RBAC never denies).
    pub fn decide(&self, user: &User, req: &Request<'_>) -> Decision {
        for (grant, subject) in self.grants(user, req.namespace()) {
            let Some(rules) = self.roles.get(&grant.role) else {
                continue;
            };
            if rules.iter().any(|r| req.matches(r)) {
                return Decision::Allow(format!(
                    "RBAC: allowed by {} of {} to {subject}",
                    binding_name(&grant.binding),
                    role_name(&grant.role),
                ));
            }
        }
        Decision::NoOpinion(String::new())
    }

    /// What `user` may do in `namespace` (and cluster-wide), for a SelfSubjectRulesReview:
    /// each granted rule once, resource rules and non-resource rules apart.
    pub fn rules_for(
        &self,
        user: &User,
        namespace: Option<&str>,
    ) -> (Vec<ResourceRule>, Vec<NonResourceRule>) {
        let mut resource = Vec::new();
        let mut non_resource = Vec::new();
        for (grant, _) in self.grants(user, namespace) {
            let Some(rules) = self.roles.get(&grant.role) else {
                continue;
            };
            for r in rules.iter() {
                if r.non_resource_urls.is_empty() {
                    let rr = ResourceRule {
                        verbs: r.verbs.clone(),
                        api_groups: r.api_groups.clone(),
                        resources: r.resources.clone(),
                        resource_names: r.resource_names.clone(),
                    };
                    if !resource.contains(&rr) {
                        resource.push(rr);
                    }
                } else {
                    let nr = NonResourceRule {
                        verbs: r.verbs.clone(),
                        non_resource_urls: r.non_resource_urls.clone(),
                    };
                    if !non_resource.contains(&nr) {
                        non_resource.push(nr);
                    }
                }
            }
        }
        (resource, non_resource)
    }
}

#[derive(Debug, Clone, Copy)]
enum SubjectRef<'a> {
    User(&'a str),
    Group(&'a str),
}

impl std::fmt::Display for SubjectRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubjectRef::User(n) => write!(f, "User {n:?}"),
            SubjectRef::Group(n) => write!(f, "Group {n:?}"),
        }
    }
}

fn binding_name(key: &str) -> String {
    let mut parts = key.splitn(3, '/');
    let (plural, ns, name) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if plural == "rolebindings" {
        format!("RoleBinding \"{name}\" of namespace {ns:?}")
    } else {
        format!("ClusterRoleBinding {name:?}")
    }
}

fn role_name(role: &RoleKey) -> String {
    match role {
        RoleKey::Role { name, .. } => format!("Role {name:?}"),
        RoleKey::Cluster(name) => format!("ClusterRole {name:?}"),
    }
}
