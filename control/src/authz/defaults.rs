//! The roles and bindings a cluster starts with, as Kubernetes' RBAC bootstrap policy:
//! `cluster-admin` (bound to `system:masters`), the aggregated user-facing `admin`, `edit`
//! and `view` with their `system:aggregate-to-*` parts, `system:basic-user` (the access
//! reviews) and `system:discovery` (`/version`, `/api`, `/apis`) for every authenticated
//! caller.
//!
//! The rules are generated from ketch's resource table, so a kind added to
//! [`ketch_api::resource::RESOURCES`] is covered by the defaults without editing them:
//! `view` reads every namespaced kind but Secrets and RBAC; `edit` also writes them (and
//! Secrets) but not RBAC, Events or Leases; `admin` adds Roles and RoleBindings.

use std::collections::BTreeMap;

use ketch_api::rbac::{
    AGGREGATE_TO_PREFIX, AUTOUPDATE, AggregationRule, ClusterRole, ClusterRoleBinding, GROUP,
    PolicyRule, RoleRef, SUBJECT_GROUP, Subject,
};
use ketch_api::resource::{RESOURCES, ResourceInfo};
use ketch_api::{LabelSelector, ObjectMeta};

use super::{AUTHENTICATED_GROUP, MASTERS_GROUP};

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(ToString::to_string).collect()
}

fn meta(name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    let mut l: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.insert("kubernetes.io/bootstrapping".into(), "rbac-defaults".into());
    ObjectMeta {
        name: Some(name.into()),
        labels: l,
        annotations: [(AUTOUPDATE.to_string(), "true".to_string())].into(),
        ..ObjectMeta::default()
    }
}

/// One rule per API group over `resources`, groups in the table's order.
fn rules_by_group(verbs: &[&str], resources: &[(&str, String)]) -> Vec<PolicyRule> {
    let mut groups: Vec<&str> = Vec::new();
    for (g, _) in resources {
        if !groups.contains(g) {
            groups.push(g);
        }
    }
    groups
        .into_iter()
        .map(|g| PolicyRule {
            verbs: strings(verbs),
            api_groups: vec![g.to_string()],
            resources: resources
                .iter()
                .filter(|(rg, _)| *rg == g)
                .map(|(_, r)| r.clone())
                .collect(),
            ..PolicyRule::default()
        })
        .collect()
}

fn namespaced(
    filter: impl Fn(&ResourceInfo) -> bool,
) -> impl Iterator<Item = &'static ResourceInfo> {
    RESOURCES.iter().filter(move |r| r.namespaced && filter(r))
}

fn is_rbac(r: &ResourceInfo) -> bool {
    r.group == GROUP
}

fn aggregated(name: &str, selects: &str, labels: &[(&str, &str)]) -> ClusterRole {
    ClusterRole {
        api_version: Some(format!("{GROUP}/v1")),
        kind: Some("ClusterRole".into()),
        metadata: meta(name, labels),
        // Filled by the aggregation plan (here for a new cluster, then by the controller).
        rules: Vec::new(),
        aggregation_rule: Some(AggregationRule {
            cluster_role_selectors: vec![LabelSelector {
                match_labels: [(format!("{AGGREGATE_TO_PREFIX}{selects}"), "true".into())].into(),
                ..LabelSelector::default()
            }],
        }),
    }
}

fn leaf(name: &str, to: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    let label = format!("{AGGREGATE_TO_PREFIX}{to}");
    ClusterRole {
        api_version: Some(format!("{GROUP}/v1")),
        kind: Some("ClusterRole".into()),
        metadata: meta(name, &[(&label, "true")]),
        rules,
        aggregation_rule: None,
    }
}

/// The default ClusterRoles, aggregated rules filled in.
pub fn cluster_roles() -> Vec<ClusterRole> {
    // view: read every namespaced kind except Secrets and RBAC, and their status and logs.
    let mut view_res: Vec<(&str, String)> = Vec::new();
    for r in namespaced(|r| r.plural != "secrets" && !is_rbac(r)) {
        view_res.push((r.group, r.plural.to_string()));
        if r.has_status {
            view_res.push((r.group, format!("{}/status", r.plural)));
        }
        if r.plural == "pods" {
            view_res.push((r.group, "pods/log".to_string()));
        }
    }
    let mut view_rules = rules_by_group(READ, &view_res);
    view_rules.push(PolicyRule {
        verbs: strings(READ),
        api_groups: vec![String::new()],
        resources: vec!["namespaces".into()],
        ..PolicyRule::default()
    });
    // edit: write the namespaced application kinds (Secrets too, which it also reads);
    // Events and Leases are the cluster's own records, RBAC is admin's.
    let edit_res: Vec<(&str, String)> =
        namespaced(|r| !is_rbac(r) && r.plural != "events" && r.plural != "leases")
            .map(|r| (r.group, r.plural.to_string()))
            .collect();
    let mut edit_rules = rules_by_group(WRITE, &edit_res);
    edit_rules.push(PolicyRule {
        verbs: strings(READ),
        api_groups: vec![String::new()],
        resources: vec!["secrets".into()],
        ..PolicyRule::default()
    });
    edit_rules.push(PolicyRule {
        verbs: strings(&["create", "get"]),
        api_groups: vec![String::new()],
        resources: strings(&["pods/proxy", "pods/eviction"]),
        ..PolicyRule::default()
    });
    // admin: a namespace's Roles and RoleBindings.
    let admin_res: Vec<(&str, String)> = namespaced(is_rbac)
        .map(|r| (r.group, r.plural.to_string()))
        .collect();
    let mut verbs_all: Vec<&str> = READ.to_vec();
    verbs_all.extend_from_slice(WRITE);
    let admin_rules = rules_by_group(&verbs_all, &admin_res);

    let edit_label = format!("{AGGREGATE_TO_PREFIX}edit");
    let admin_label = format!("{AGGREGATE_TO_PREFIX}admin");
    let mut roles = vec![
        ClusterRole {
            api_version: Some(format!("{GROUP}/v1")),
            kind: Some("ClusterRole".into()),
            metadata: meta("cluster-admin", &[]),
            rules: vec![
                PolicyRule {
                    verbs: strings(&["*"]),
                    api_groups: strings(&["*"]),
                    resources: strings(&["*"]),
                    ..PolicyRule::default()
                },
                PolicyRule {
                    verbs: strings(&["*"]),
                    non_resource_urls: strings(&["*"]),
                    ..PolicyRule::default()
                },
            ],
            aggregation_rule: None,
        },
        // As in Kubernetes: `view` lends its rules to `edit`, `edit` to `admin`.
        aggregated("admin", "admin", &[]),
        aggregated("edit", "edit", &[(&admin_label, "true")]),
        aggregated("view", "view", &[(&edit_label, "true")]),
        leaf("system:aggregate-to-view", "view", view_rules),
        leaf("system:aggregate-to-edit", "edit", edit_rules),
        leaf("system:aggregate-to-admin", "admin", admin_rules),
        ClusterRole {
            api_version: Some(format!("{GROUP}/v1")),
            kind: Some("ClusterRole".into()),
            metadata: meta("system:basic-user", &[]),
            rules: vec![
                PolicyRule {
                    verbs: strings(&["create"]),
                    api_groups: strings(&[ketch_api::authorization::GROUP]),
                    resources: strings(&["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
                    ..PolicyRule::default()
                },
                PolicyRule {
                    verbs: strings(&["create"]),
                    api_groups: strings(&[ketch_api::authorization::AUTHENTICATION_GROUP]),
                    resources: strings(&["selfsubjectreviews"]),
                    ..PolicyRule::default()
                },
            ],
            aggregation_rule: None,
        },
        ClusterRole {
            api_version: Some(format!("{GROUP}/v1")),
            kind: Some("ClusterRole".into()),
            metadata: meta("system:discovery", &[]),
            rules: vec![PolicyRule {
                verbs: strings(&["get"]),
                non_resource_urls: strings(&[
                    "/api", "/api/*", "/apis", "/apis/*", "/version", "/healthz", "/livez",
                    "/readyz",
                ]),
                ..PolicyRule::default()
            }],
            aggregation_rule: None,
        },
    ];
    for u in super::aggregation::plan(&roles) {
        if let Some(r) = roles.iter_mut().find(|r| r.metadata.name() == u.name) {
            r.rules = u.rules;
        }
    }
    roles
}

fn binding(name: &str, role: &str, group: &str) -> ClusterRoleBinding {
    ClusterRoleBinding {
        api_version: Some(format!("{GROUP}/v1")),
        kind: Some("ClusterRoleBinding".into()),
        metadata: meta(name, &[]),
        subjects: vec![Subject {
            kind: SUBJECT_GROUP.into(),
            api_group: Some(GROUP.into()),
            name: group.into(),
            namespace: None,
        }],
        role_ref: RoleRef {
            api_group: GROUP.into(),
            kind: "ClusterRole".into(),
            name: role.into(),
        },
    }
}

/// The default ClusterRoleBindings.
pub fn cluster_role_bindings() -> Vec<ClusterRoleBinding> {
    vec![
        binding("cluster-admin", "cluster-admin", MASTERS_GROUP),
        binding(
            "system:basic-user",
            "system:basic-user",
            AUTHENTICATED_GROUP,
        ),
        binding("system:discovery", "system:discovery", AUTHENTICATED_GROUP),
    ]
}

/// Every default object as `(store key, JSON)`, server-owned metadata (uid, creation time)
/// set, ready to be written with a create (an existing one is left as it is).
pub fn objects() -> Vec<(String, serde_json::Value)> {
    let stamp = |mut v: serde_json::Value| {
        if let Some(m) = v
            .get_mut("metadata")
            .and_then(serde_json::Value::as_object_mut)
        {
            m.insert("uid".into(), uuid::Uuid::new_v4().to_string().into());
            m.insert("creationTimestamp".into(), ketch_api::time::now().into());
        }
        v
    };
    let mut out = Vec::new();
    for r in cluster_roles() {
        let key = format!("clusterroles//{}", r.metadata.name());
        out.push((key, stamp(serde_json::to_value(&r).expect("serializes"))));
    }
    for b in cluster_role_bindings() {
        let key = format!("clusterrolebindings//{}", b.metadata.name());
        out.push((key, stamp(serde_json::to_value(&b).expect("serializes"))));
    }
    out
}

/// Writes the default roles and bindings, and the `kube-node-lease` namespace (a node may
/// not create namespaces, so the cluster has it from the start), where they do not exist
/// yet. Called by the server that founds the cluster, beside the `default` namespace.
///
/// # Errors
/// The store refused a write for another reason than the object existing.
pub async fn ensure(
    batcher: &crate::server::batcher::Batcher,
) -> Result<(), crate::store::StoreError> {
    let mut writes = objects();
    writes.push((
        format!("namespaces//{}", super::node::LEASE_NAMESPACE),
        serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": super::node::LEASE_NAMESPACE,
                         "uid": uuid::Uuid::new_v4().to_string(),
                         "creationTimestamp": ketch_api::time::now()},
            "spec": {}, "status": {"phase": "Active"},
        }),
    ));
    let writes = writes
        .into_iter()
        .map(|(key, object)| (crate::store::command::Write::Create { key, object }, 1024))
        .collect();
    for outcome in batcher.submit_all(writes).await {
        // AlreadyExists (every start after the first, or an operator's own version) is
        // fine: a default an operator changed is theirs.
        let _ = outcome?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_pass_admission_and_aggregate_view_into_edit_into_admin() {
        for (key, obj) in objects() {
            let plural = key.split('/').next().unwrap();
            let info = RESOURCES.iter().find(|r| r.plural == plural).unwrap();
            ketch_api::admit(info, obj).unwrap_or_else(|e| panic!("{key}: {e}"));
        }
        let roles = cluster_roles();
        let get = |n: &str| roles.iter().find(|r| r.metadata.name() == n).unwrap();
        let grants = |role: &str, verb: &str, group: &str, res: &str, sub: Option<&str>| {
            get(role)
                .rules
                .iter()
                .any(|r| r.allows_resource(verb, group, res, sub, Some("x")))
        };
        assert!(grants("view", "list", "apps", "deployments", None));
        assert!(grants("view", "get", "", "pods", Some("log")));
        assert!(!grants("view", "get", "", "secrets", None));
        assert!(!grants("view", "get", GROUP, "roles", None));
        assert!(grants("edit", "get", "", "secrets", None));
        assert!(grants("edit", "list", "apps", "deployments", None));
        assert!(grants(
            "edit",
            "create",
            "policy",
            "poddisruptionbudgets",
            None
        ));
        assert!(!grants("edit", "create", GROUP, "rolebindings", None));
        assert!(grants("admin", "create", GROUP, "rolebindings", None));
        assert!(grants("admin", "delete", "", "pods", None));
        assert!(!grants("admin", "create", "", "nodes", None));
        assert!(!grants("admin", "create", GROUP, "clusterroles", None));
        assert!(grants("cluster-admin", "create", "", "nodes", None));
        // Already aggregated: the controller has nothing to do on a new cluster.
        assert_eq!(super::super::aggregation::plan(&roles), Vec::new());
    }
}
