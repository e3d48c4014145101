//! Authorization: the chain every API request passes, after authentication.
//!
//! 1. `system:masters` may do anything (the admin token); `system:bootstrappers` (join
//!    tokens) nothing through the API.
//! 2. The Node authorizer ([`node`]) for node credentials (`system:nodes`): allow or deny
//!    on the kinds a node's agent and gateway use, no opinion otherwise.
//! 3. RBAC ([`rbac`]): Roles, ClusterRoles and their bindings; allow or no opinion.
//!
//! No opinion at the end is a refusal. Both authorizers decide from memory: [`reflector`]
//! keeps their indexes from the store's watch hub (one list at start, then every applied
//! change), so a decision is a few hash lookups, not a read. Every server keeps its own,
//! from its own applied state, as it serves its own reads.
//!
//! [`defaults`] holds the roles a new cluster starts with, [`aggregation`] the pure plan of
//! the ClusterRole aggregation controller.

pub mod aggregation;
pub mod defaults;
pub mod node;
pub mod rbac;
pub mod reflector;

use std::sync::{Arc, RwLock};

use ketch_api::authorization::{SubjectAccessReviewStatus, SubjectRulesReviewStatus};
use ketch_api::rbac::PolicyRule;

use crate::server::auth::Authorizer;
pub use crate::server::auth::{Attributes, User};
use crate::server::error::ApiError;

/// The group of the admin credential: allowed everything, before any other authorizer.
pub const MASTERS_GROUP: &str = "system:masters";
/// The group of bootstrap (join) tokens: refused everything through the API.
pub const BOOTSTRAPPERS_GROUP: &str = "system:bootstrappers";
/// Every authenticated caller's group.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// What one request asks for.
#[derive(Debug, Clone)]
pub enum Request<'a> {
    Resource(Attributes<'a>),
    /// A path outside the resource API (`/version`, `/apis`).
    NonResource {
        verb: &'a str,
        path: &'a str,
    },
}

impl Request<'_> {
    /// The namespace of a namespaced resource request.
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Request::Resource(a) => a.namespace,
            Request::NonResource { .. } => None,
        }
    }

    /// Whether `rule` grants this request.
    pub fn matches(&self, rule: &PolicyRule) -> bool {
        match self {
            Request::Resource(a) => {
                rule.allows_resource(a.verb, a.group, a.resource, a.subresource, a.name)
            }
            Request::NonResource { verb, path } => rule.allows_non_resource(verb, path),
        }
    }
}

/// One authorizer's answer, with the reason an access review reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(String),
    /// Refused; no later authorizer is asked.
    Deny(String),
    /// Not this authorizer's to decide; the reason, if any, is kept for the refusal.
    NoOpinion(String),
}

/// The indexes both authorizers read, kept by the [`reflector`].
#[derive(Debug, Default)]
pub struct Indexes {
    pub rbac: RwLock<rbac::RbacIndex>,
    pub graph: RwLock<node::NodeGraph>,
}

/// The authorizer chain the API server runs (see the module docs).
#[derive(Debug, Clone)]
pub struct Chain {
    indexes: Arc<Indexes>,
}

impl Chain {
    /// A chain over `indexes` (filled by the caller: tests and benchmarks).
    pub fn new(indexes: Arc<Indexes>) -> Self {
        Self { indexes }
    }

    /// A chain whose indexes follow the store: loaded from `store` now, then kept current
    /// from `hub` by a task.
    ///
    /// # Errors
    /// The first read of the store failed.
    pub fn start(
        store: &crate::store::Store,
        hub: &Arc<crate::watch::WatchHub>,
    ) -> Result<Self, crate::store::StoreError> {
        let indexes = Arc::new(Indexes::default());
        reflector::start(store.clone(), hub.clone(), indexes.clone())?;
        Ok(Self::new(indexes))
    }

    pub fn indexes(&self) -> &Arc<Indexes> {
        &self.indexes
    }

    /// The chain's decision for `user`'s `req`.
    pub fn decide(&self, user: &User, req: &Request<'_>) -> Decision {
        let in_group = |g: &str| user.groups.iter().any(|x| x == g);
        if in_group(MASTERS_GROUP) {
            return Decision::Allow(format!("member of {MASTERS_GROUP}"));
        }
        if in_group(BOOTSTRAPPERS_GROUP) {
            return Decision::Deny("a bootstrap token may only join the cluster".into());
        }
        let mut why = String::new();
        if in_group(node::NODES_GROUP) {
            match node::node_of(user) {
                Some(n) => match self.read_graph().decide(n, req) {
                    Decision::NoOpinion(r) => why = r,
                    decided => return decided,
                },
                None => {
                    return Decision::Deny(format!(
                        "a member of {} must be named {}<node>",
                        node::NODES_GROUP,
                        node::NODE_USER_PREFIX
                    ));
                }
            }
        }
        match self.read_rbac().decide(user, req) {
            Decision::NoOpinion(r) if why.is_empty() => Decision::NoOpinion(r),
            Decision::NoOpinion(_) => Decision::NoOpinion(why),
            decided => decided,
        }
    }

    fn read_rbac(&self) -> std::sync::RwLockReadGuard<'_, rbac::RbacIndex> {
        // A panic while holding the lock leaves a consistent index (every update is a
        // whole-entry insert or removal), so a poisoned lock is still read.
        self.indexes
            .rbac
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn read_graph(&self) -> std::sync::RwLockReadGuard<'_, node::NodeGraph> {
        self.indexes
            .graph
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The status of an access review for a decision.
pub fn review_status(d: &Decision) -> SubjectAccessReviewStatus {
    let (allowed, denied, reason) = match d {
        Decision::Allow(r) => (true, false, r),
        Decision::Deny(r) => (false, true, r),
        Decision::NoOpinion(r) => (false, false, r),
    };
    SubjectAccessReviewStatus {
        allowed,
        denied,
        reason: (!reason.is_empty()).then(|| reason.clone()),
        evaluation_error: None,
    }
}

/// Kubernetes' refusal text: `pods "x" is forbidden: User "u" cannot get resource "pods" in
/// API group "" in the namespace "ns"`, and `: <reason>` when the authorizer gave one.
pub fn forbidden_message(user: &User, req: &Request<'_>, reason: &str) -> String {
    let mut msg = match req {
        Request::Resource(a) => {
            let resource = if a.group.is_empty() {
                a.resource.to_string()
            } else {
                format!("{}.{}", a.resource, a.group)
            };
            let object = match a.name {
                Some(n) => format!("{resource} \"{n}\""),
                None => resource,
            };
            let full = match a.subresource {
                Some(s) => format!("{}/{s}", a.resource),
                None => a.resource.to_string(),
            };
            let scope = match a.namespace {
                Some(ns) => format!("in the namespace \"{ns}\""),
                None => "at the cluster scope".to_string(),
            };
            format!(
                "{object} is forbidden: User \"{}\" cannot {} resource \"{full}\" in API group \"{}\" {scope}",
                user.name, a.verb, a.group
            )
        }
        Request::NonResource { verb, path } => format!(
            "forbidden: User \"{}\" cannot {verb} path \"{path}\"",
            user.name
        ),
    };
    if !reason.is_empty() {
        msg.push_str(": ");
        msg.push_str(reason);
    }
    msg
}

impl Authorizer for Chain {
    fn authorize(&self, user: &User, attrs: &Attributes<'_>) -> Result<(), ApiError> {
        let req = Request::Resource(attrs.clone());
        match self.decide(user, &req) {
            Decision::Allow(_) => Ok(()),
            Decision::Deny(r) | Decision::NoOpinion(r) => {
                Err(ApiError::Forbidden(forbidden_message(user, &req, &r)))
            }
        }
    }

    fn authorize_non_resource(&self, user: &User, verb: &str, path: &str) -> Result<(), ApiError> {
        let req = Request::NonResource { verb, path };
        match self.decide(user, &req) {
            Decision::Allow(_) => Ok(()),
            Decision::Deny(r) | Decision::NoOpinion(r) => {
                Err(ApiError::Forbidden(forbidden_message(user, &req, &r)))
            }
        }
    }

    fn review(&self, user: &User, req: &Request<'_>) -> SubjectAccessReviewStatus {
        review_status(&self.decide(user, req))
    }

    fn rules(&self, user: &User, namespace: Option<&str>) -> SubjectRulesReviewStatus {
        if user.groups.iter().any(|g| g == MASTERS_GROUP) {
            return SubjectRulesReviewStatus {
                resource_rules: vec![ketch_api::authorization::ResourceRule {
                    verbs: vec!["*".into()],
                    api_groups: vec!["*".into()],
                    resources: vec!["*".into()],
                    resource_names: Vec::new(),
                }],
                non_resource_rules: vec![ketch_api::authorization::NonResourceRule {
                    verbs: vec!["*".into()],
                    non_resource_urls: vec!["*".into()],
                }],
                incomplete: false,
                evaluation_error: None,
            };
        }
        if user.groups.iter().any(|g| g == BOOTSTRAPPERS_GROUP) {
            return SubjectRulesReviewStatus::default();
        }
        let (resource_rules, non_resource_rules) = self.read_rbac().rules_for(user, namespace);
        SubjectRulesReviewStatus {
            resource_rules,
            non_resource_rules,
            // The Node authorizer's grants depend on objects and cannot be listed as rules.
            incomplete: node::node_of(user).is_some(),
            evaluation_error: None,
        }
    }
}

#[cfg(test)]
mod tests;
