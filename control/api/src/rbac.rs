//! `rbac.authorization.k8s.io/v1`: Role, ClusterRole, RoleBinding, ClusterRoleBinding.
//!
//! The shapes are Kubernetes'; what they mean (rule matching, wildcards, subresources,
//! aggregation) is decided by the API server's RBAC authorizer and the aggregation
//! controller, with the rule matching itself here ([`PolicyRule::allows`]) so the server,
//! the controller and the CLI agree on it.

use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;
use crate::selector::LabelSelector;

/// The API group of every kind in this module.
pub const GROUP: &str = "rbac.authorization.k8s.io";
/// Matches every verb, group, resource or URL in a rule.
pub const WILDCARD: &str = "*";
/// The label prefix Kubernetes' default aggregated roles select by
/// (`rbac.authorization.k8s.io/aggregate-to-view: "true"`).
pub const AGGREGATE_TO_PREFIX: &str = "rbac.authorization.k8s.io/aggregate-to-";
/// The annotation that marks a default role the server keeps (`"true"`), as Kubernetes'
/// `rbac.authorization.kubernetes.io/autoupdate`.
pub const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";

/// One grant: these verbs on these resources (or non-resource URLs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyRule {
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    /// Plurals, `plural/subresource`, `plural/*`, `*/subresource` or `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    /// Paths such as `/version`, or a prefix ending in `*` (`/apis/*`); only in
    /// ClusterRoles (a RoleBinding cannot grant them).
    #[serde(
        default,
        rename = "nonResourceURLs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_resource_urls: Vec<String>,
}

impl PolicyRule {
    /// Whether this rule grants `verb` on a resource request (Kubernetes'
    /// `ResourceMatches`: `pods/*` covers every Pod subresource but not `pods` itself,
    /// `*/log` every kind's `log`, `*` everything; resource names narrow, empty is all).
    pub fn allows_resource(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
        subresource: Option<&str>,
        name: Option<&str>,
    ) -> bool {
        has(&self.verbs, verb)
            && has(&self.api_groups, group)
            && self.matches_resource(resource, subresource)
            && (self.resource_names.is_empty()
                || name.is_some_and(|n| self.resource_names.iter().any(|r| r == n)))
    }

    fn matches_resource(&self, resource: &str, subresource: Option<&str>) -> bool {
        self.resources.iter().any(|r| {
            if r == WILDCARD {
                return true;
            }
            match subresource {
                None => r == resource,
                Some(sub) => match r.split_once('/') {
                    Some((res, rsub)) => {
                        (res == resource || res == WILDCARD) && (rsub == sub || rsub == WILDCARD)
                    }
                    None => false,
                },
            }
        })
    }

    /// Whether this rule grants `verb` on the non-resource `path` (`/apis/*` covers every
    /// path under `/apis/`, `*` every path).
    pub fn allows_non_resource(&self, verb: &str, path: &str) -> bool {
        has(&self.verbs, verb)
            && self.non_resource_urls.iter().any(|u| {
                u == WILDCARD
                    || u == path
                    || u.strip_suffix('*').is_some_and(|p| path.starts_with(p))
            })
    }
}

fn has(list: &[String], want: &str) -> bool {
    list.iter().any(|x| x == WILDCARD || x == want)
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Role {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterRole {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// For an aggregated role, written by the aggregation controller: the union of the
    /// rules of the ClusterRoles its selectors match.
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation_rule: Option<AggregationRule>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AggregationRule {
    /// A ClusterRole matching any of these (by its labels) lends its rules.
    #[serde(default)]
    pub cluster_role_selectors: Vec<LabelSelector>,
}

/// Who a binding grants to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subject {
    /// `User`, `Group` or `ServiceAccount`.
    #[serde(default)]
    pub kind: String,
    /// `rbac.authorization.k8s.io` for users and groups, `""` for ServiceAccounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
    #[serde(default)]
    pub name: String,
    /// A ServiceAccount's namespace (required for one in a ClusterRoleBinding; defaults to
    /// the binding's namespace in a RoleBinding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

pub const SUBJECT_USER: &str = "User";
pub const SUBJECT_GROUP: &str = "Group";
pub const SUBJECT_SERVICE_ACCOUNT: &str = "ServiceAccount";

/// The role a binding grants; immutable once the binding exists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleRef {
    #[serde(default)]
    pub api_group: String,
    /// `Role` (RoleBindings only) or `ClusterRole`.
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleBinding {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<Subject>,
    #[serde(default)]
    pub role_ref: RoleRef,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterRoleBinding {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<Subject>,
    #[serde(default)]
    pub role_ref: RoleRef,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
        let v = |s: &[&str]| s.iter().map(ToString::to_string).collect();
        PolicyRule {
            verbs: v(verbs),
            api_groups: v(groups),
            resources: v(resources),
            resource_names: v(names),
            non_resource_urls: Vec::new(),
        }
    }

    #[test]
    fn resource_rules_match_as_kubernetes_does() {
        let pods = rule(&["get"], &[""], &["pods"], &[]);
        assert!(pods.allows_resource("get", "", "pods", None, Some("x")));
        assert!(!pods.allows_resource("list", "", "pods", None, None));
        assert!(!pods.allows_resource("get", "apps", "pods", None, None));
        // A subresource is its own resource: `pods` does not cover `pods/log`.
        assert!(!pods.allows_resource("get", "", "pods", Some("log"), Some("x")));
        let logs = rule(&["get"], &[""], &["pods/log"], &[]);
        assert!(logs.allows_resource("get", "", "pods", Some("log"), Some("x")));
        assert!(!logs.allows_resource("get", "", "pods", None, Some("x")));
        let any_sub = rule(&["*"], &["*"], &["pods/*"], &[]);
        assert!(any_sub.allows_resource("patch", "", "pods", Some("status"), Some("x")));
        assert!(!any_sub.allows_resource("patch", "", "pods", None, Some("x")));
        let every_status = rule(&["update"], &["*"], &["*/status"], &[]);
        assert!(every_status.allows_resource(
            "update",
            "apps",
            "deployments",
            Some("status"),
            None
        ));
        let all = rule(&["*"], &["*"], &["*"], &[]);
        assert!(all.allows_resource("delete", "apps", "deployments", None, Some("d")));
        assert!(all.allows_resource("get", "", "pods", Some("log"), Some("d")));
        let named = rule(&["get"], &[""], &["secrets"], &["a"]);
        assert!(named.allows_resource("get", "", "secrets", None, Some("a")));
        assert!(!named.allows_resource("get", "", "secrets", None, Some("b")));
        // A list has no name: a rule with names never grants it.
        assert!(!named.allows_resource("list", "", "secrets", None, None));
    }

    #[test]
    fn non_resource_urls_match_exactly_or_by_a_star_prefix() {
        let r = PolicyRule {
            verbs: vec!["get".into()],
            non_resource_urls: vec!["/version".into(), "/apis/*".into()],
            ..PolicyRule::default()
        };
        assert!(r.allows_non_resource("get", "/version"));
        assert!(r.allows_non_resource("get", "/apis/apps/v1"));
        assert!(!r.allows_non_resource("get", "/version/x"));
        assert!(!r.allows_non_resource("post", "/version"));
        assert!(!r.allows_non_resource("get", "/healthz"));
    }

    #[test]
    fn role_shapes_round_trip_and_unknown_fields_are_refused() {
        let json = serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "b", "namespace": "ns"},
            "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "u"}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}
        });
        let b: RoleBinding = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&b).unwrap(), json);
        let bad = serde_json::json!({"verbs": ["get"], "nonResourceUrls": ["/x"]});
        assert!(serde_json::from_value::<PolicyRule>(bad).is_err());
    }
}
