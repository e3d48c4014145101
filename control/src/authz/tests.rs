//! Table-driven tests of the chain: RBAC grants and refusals, the Node authorizer's graph,
//! and the refusal wording.

use std::sync::Arc;

use ketch_api::rbac::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde_json::json;

use super::node::{IngressView, PodView};
use super::*;

fn user(name: &str, groups: &[&str]) -> User {
    User {
        name: name.into(),
        groups: groups.iter().map(ToString::to_string).collect(),
    }
}

fn attrs<'a>(
    verb: &'a str,
    group: &'a str,
    resource: &'a str,
    sub: Option<&'a str>,
    ns: Option<&'a str>,
    name: Option<&'a str>,
) -> Attributes<'a> {
    Attributes {
        verb,
        group,
        resource,
        subresource: sub,
        namespace: ns,
        name,
        field_selector: None,
    }
}

fn chain() -> Chain {
    let idx = Arc::new(Indexes::default());
    {
        let mut rbac = idx.rbac.write().unwrap();
        for r in defaults::cluster_roles() {
            rbac.put_cluster_role(&r);
        }
        for b in defaults::cluster_role_bindings() {
            rbac.put_cluster_role_binding(
                &format!("clusterrolebindings//{}", b.metadata.name()),
                &b,
            );
        }
        let role: Role = serde_json::from_value(json!({
            "metadata": {"name": "pod-reader", "namespace": "team"},
            "rules": [
                {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "pods/log"]},
                {"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["public"]},
            ]
        }))
        .unwrap();
        rbac.put_role(&role);
        let rb: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": "alice-reads", "namespace": "team"},
            "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"}
        }))
        .unwrap();
        rbac.put_role_binding("rolebindings/team/alice-reads", &rb);
        // A ClusterRole through a RoleBinding: granted in that namespace only.
        let rb: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": "devs-edit", "namespace": "dev"},
            "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "devs"}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"}
        }))
        .unwrap();
        rbac.put_role_binding("rolebindings/dev/devs-edit", &rb);
        let rb: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": "sa-view", "namespace": "apps"},
            "subjects": [{"kind": "ServiceAccount", "name": "builder"}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}
        }))
        .unwrap();
        rbac.put_role_binding("rolebindings/apps/sa-view", &rb);
        let crb: ClusterRoleBinding = serde_json::from_value(json!({
            "metadata": {"name": "ops-any-status"},
            "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "ops"}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "status-everywhere"}
        }))
        .unwrap();
        rbac.put_cluster_role_binding("clusterrolebindings//ops-any-status", &crb);
        let cr: ClusterRole = serde_json::from_value(json!({
            "metadata": {"name": "status-everywhere"},
            "rules": [
                {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*/status", "pods/*"]},
                {"verbs": ["get"], "nonResourceURLs": ["/metrics"]},
            ]
        }))
        .unwrap();
        rbac.put_cluster_role(&cr);
    }
    {
        let mut g = idx.graph.write().unwrap();
        for (ns, name, node, secret, cm) in [
            ("team", "a-pod", "node-a", "a-secret", "a-config"),
            ("team", "b-pod", "node-b", "b-secret", "b-config"),
        ] {
            let pod: PodView = serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": ns},
                "spec": {"nodeName": node, "containers": [{
                    "name": "c",
                    "env": [{"name": "S", "valueFrom": {"secretKeyRef": {"name": secret, "key": "k"}}}],
                    "envFrom": [{"configMapRef": {"name": cm}}]
                }], "volumes": [{"name": "v", "secret": {"secretName": format!("{secret}-vol")}}]}
            }))
            .unwrap();
            g.put_pod(&pod);
        }
        let ing: IngressView = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "team"},
            "spec": {"tls": [{"hosts": ["x.example"], "secretName": "web-cert"}]}
        }))
        .unwrap();
        g.put_ingress(&ing);
    }
    Chain::new(idx)
}

fn allowed(c: &Chain, u: &User, a: Attributes<'_>) -> bool {
    matches!(c.decide(u, &Request::Resource(a)), Decision::Allow(_))
}

#[test]
fn rbac_grants_and_refuses_as_kubernetes_does() {
    let c = chain();
    let alice = user("alice", &["system:authenticated"]);
    let dev = user("dora", &["devs", "system:authenticated"]);
    let ops = user("ops", &["system:authenticated"]);
    let sa = user(
        "system:serviceaccount:apps:builder",
        &[
            "system:serviceaccounts",
            "system:serviceaccounts:apps",
            "system:authenticated",
        ],
    );
    let admin = user("admin", &["system:masters", "system:authenticated"]);
    let cases: &[(&str, &User, Attributes<'_>, bool)] = &[
        (
            "a Role grants in its namespace",
            &alice,
            attrs("get", "", "pods", None, Some("team"), Some("p")),
            true,
        ),
        (
            "a verb the Role lacks",
            &alice,
            attrs("delete", "", "pods", None, Some("team"), Some("p")),
            false,
        ),
        (
            "another namespace",
            &alice,
            attrs("get", "", "pods", None, Some("other"), Some("p")),
            false,
        ),
        (
            "an explicit subresource",
            &alice,
            attrs("get", "", "pods", Some("log"), Some("team"), Some("p")),
            true,
        ),
        (
            "a subresource not listed",
            &alice,
            attrs("get", "", "pods", Some("status"), Some("team"), Some("p")),
            false,
        ),
        (
            "resourceNames: the named one",
            &alice,
            attrs("get", "", "secrets", None, Some("team"), Some("public")),
            true,
        ),
        (
            "resourceNames: another one",
            &alice,
            attrs("get", "", "secrets", None, Some("team"), Some("private")),
            false,
        ),
        (
            "resourceNames never grant a list",
            &alice,
            attrs("list", "", "secrets", None, Some("team"), None),
            false,
        ),
        (
            "a ClusterRole through a RoleBinding, its namespace",
            &dev,
            attrs("create", "apps", "deployments", None, Some("dev"), None),
            true,
        ),
        (
            "a ClusterRole through a RoleBinding, another namespace",
            &dev,
            attrs("create", "apps", "deployments", None, Some("prod"), None),
            false,
        ),
        (
            "a ClusterRole through a RoleBinding, cluster scope",
            &dev,
            attrs("list", "apps", "deployments", None, None, None),
            false,
        ),
        (
            "aggregated edit reads (from view)",
            &dev,
            attrs("list", "", "services", None, Some("dev"), None),
            true,
        ),
        (
            "aggregated edit does not grant RBAC",
            &dev,
            attrs(
                "create",
                "rbac.authorization.k8s.io",
                "rolebindings",
                None,
                Some("dev"),
                None,
            ),
            false,
        ),
        (
            "wildcard */status",
            &ops,
            attrs(
                "update",
                "apps",
                "deployments",
                Some("status"),
                Some("x"),
                Some("d"),
            ),
            true,
        ),
        (
            "wildcard pods/*",
            &ops,
            attrs("get", "", "pods", Some("log"), Some("x"), Some("p")),
            true,
        ),
        (
            "pods/* is not pods",
            &ops,
            attrs("get", "", "pods", None, Some("x"), Some("p")),
            false,
        ),
        (
            "a ServiceAccount subject defaults to the binding's namespace",
            &sa,
            attrs("list", "", "configmaps", None, Some("apps"), None),
            true,
        ),
        (
            "view does not read Secrets",
            &sa,
            attrs("get", "", "secrets", None, Some("apps"), Some("s")),
            false,
        ),
        (
            "a ServiceAccount outside its namespace",
            &sa,
            attrs("list", "", "configmaps", None, Some("team"), None),
            false,
        ),
        (
            "basic-user: anyone authenticated reviews itself",
            &alice,
            attrs(
                "create",
                "authorization.k8s.io",
                "selfsubjectaccessreviews",
                None,
                None,
                None,
            ),
            true,
        ),
        (
            "basic-user does not grant SubjectAccessReview",
            &alice,
            attrs(
                "create",
                "authorization.k8s.io",
                "subjectaccessreviews",
                None,
                None,
                None,
            ),
            false,
        ),
        (
            "system:masters may do anything",
            &admin,
            attrs("delete", "", "nodes", None, None, Some("n")),
            true,
        ),
    ];
    for (what, u, a, want) in cases {
        assert_eq!(allowed(&c, u, a.clone()), *want, "{what}");
    }
}

#[test]
fn non_resource_paths_follow_the_discovery_role() {
    let c = chain();
    let anyone = user("u", &["system:authenticated"]);
    let ops = user("ops", &["system:authenticated"]);
    let nobody = user("x", &[]);
    let decide = |u: &User, path: &str| {
        matches!(
            c.decide(u, &Request::NonResource { verb: "get", path }),
            Decision::Allow(_)
        )
    };
    assert!(decide(&anyone, "/version"));
    assert!(decide(&anyone, "/apis/apps/v1"));
    assert!(!decide(&anyone, "/metrics"));
    assert!(decide(&ops, "/metrics"));
    assert!(!decide(&nobody, "/version"));
}

#[test]
fn bindings_removed_or_replaced_stop_granting() {
    let c = chain();
    let alice = user("alice", &[]);
    let get = attrs("get", "", "pods", None, Some("team"), Some("p"));
    assert!(allowed(&c, &alice, get.clone()));
    c.indexes()
        .rbac
        .write()
        .unwrap()
        .remove_binding("rolebindings/team/alice-reads");
    assert!(!allowed(&c, &alice, get.clone()));
    // A binding to a role that does not exist yet grants once the role appears.
    let rb: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "later", "namespace": "team"},
        "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"}],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "not-yet"}
    }))
    .unwrap();
    c.indexes()
        .rbac
        .write()
        .unwrap()
        .put_role_binding("rolebindings/team/later", &rb);
    assert!(!allowed(&c, &alice, get.clone()));
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "not-yet", "namespace": "team"},
        "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]
    }))
    .unwrap();
    c.indexes().rbac.write().unwrap().put_role(&role);
    assert!(allowed(&c, &alice, get));
}

#[test]
fn a_node_reaches_its_own_objects_and_nothing_of_another_node() {
    let c = chain();
    let a = user(
        "system:node:node-a",
        &["system:nodes", "system:authenticated"],
    );
    let with_selector = |verb: &'static str, sel: &'static str| Attributes {
        field_selector: Some(sel),
        ..attrs(verb, "", "pods", None, None, None)
    };
    let named_secret = Attributes {
        field_selector: Some("metadata.name=a-secret"),
        ..attrs("watch", "", "secrets", None, Some("team"), None)
    };
    let tls_secrets = |verb: &'static str, sel: &'static str| Attributes {
        field_selector: Some(sel),
        ..attrs(verb, "", "secrets", None, None, None)
    };
    let cases: &[(&str, Attributes<'_>, bool)] = &[
        (
            "the gateway watches kubernetes.io/tls Secrets",
            tls_secrets("watch", "type=kubernetes.io/tls"),
            true,
        ),
        (
            "but no other type of Secret",
            tls_secrets("list", "type=Opaque"),
            false,
        ),
        (
            "nor every Secret",
            attrs("list", "", "secrets", None, None, None),
            false,
        ),
        (
            "its own Node: get",
            attrs("get", "", "nodes", None, None, Some("node-a")),
            true,
        ),
        (
            "its own Node: patch",
            attrs("patch", "", "nodes", None, None, Some("node-a")),
            true,
        ),
        (
            "its own Node: status",
            attrs("patch", "", "nodes", Some("status"), None, Some("node-a")),
            true,
        ),
        (
            "another Node: patch (labels, taints, endpoint)",
            attrs("patch", "", "nodes", None, None, Some("node-b")),
            false,
        ),
        (
            "another Node: status",
            attrs("patch", "", "nodes", Some("status"), None, Some("node-b")),
            false,
        ),
        (
            "another Node: update",
            attrs("update", "", "nodes", None, None, Some("node-b")),
            false,
        ),
        (
            "its own Node: delete",
            attrs("delete", "", "nodes", None, None, Some("node-a")),
            false,
        ),
        (
            "Nodes: watch all (gateway)",
            attrs("watch", "", "nodes", None, None, None),
            true,
        ),
        (
            "create a Node (name checked at admission)",
            attrs("create", "", "nodes", None, None, None),
            true,
        ),
        (
            "its Lease: patch",
            attrs(
                "patch",
                "coordination.k8s.io",
                "leases",
                None,
                Some("kube-node-lease"),
                Some("node-a"),
            ),
            true,
        ),
        (
            "its Lease: create",
            attrs(
                "create",
                "coordination.k8s.io",
                "leases",
                None,
                Some("kube-node-lease"),
                None,
            ),
            true,
        ),
        (
            "another node's Lease",
            attrs(
                "patch",
                "coordination.k8s.io",
                "leases",
                None,
                Some("kube-node-lease"),
                Some("node-b"),
            ),
            false,
        ),
        (
            "a Lease elsewhere",
            attrs(
                "create",
                "coordination.k8s.io",
                "leases",
                None,
                Some("default"),
                None,
            ),
            false,
        ),
        (
            "its Pods: watch with its selector",
            with_selector("watch", "spec.nodeName=node-a"),
            true,
        ),
        (
            "its Pods: list with its selector",
            with_selector("list", "spec.nodeName=node-a"),
            true,
        ),
        (
            "Pods: watch with another node's selector",
            with_selector("watch", "spec.nodeName=node-b"),
            false,
        ),
        (
            "Pods: list without a selector",
            attrs("list", "", "pods", None, None, None),
            false,
        ),
        (
            "its Pod: get",
            attrs("get", "", "pods", None, Some("team"), Some("a-pod")),
            true,
        ),
        (
            "its Pod: status",
            attrs(
                "patch",
                "",
                "pods",
                Some("status"),
                Some("team"),
                Some("a-pod"),
            ),
            true,
        ),
        (
            "another node's Pod: get",
            attrs("get", "", "pods", None, Some("team"), Some("b-pod")),
            false,
        ),
        (
            "another node's Pod: status",
            attrs(
                "patch",
                "",
                "pods",
                Some("status"),
                Some("team"),
                Some("b-pod"),
            ),
            false,
        ),
        (
            "its Pod: delete",
            attrs("delete", "", "pods", None, Some("team"), Some("a-pod")),
            false,
        ),
        (
            "create a Pod",
            attrs("create", "", "pods", None, Some("team"), None),
            false,
        ),
        (
            "its Pod's Secret (env)",
            attrs("get", "", "secrets", None, Some("team"), Some("a-secret")),
            true,
        ),
        (
            "its Pod's Secret (volume)",
            attrs(
                "get",
                "",
                "secrets",
                None,
                Some("team"),
                Some("a-secret-vol"),
            ),
            true,
        ),
        ("its Pod's Secret, by a named watch", named_secret, true),
        (
            "its Pod's ConfigMap (envFrom)",
            attrs(
                "get",
                "",
                "configmaps",
                None,
                Some("team"),
                Some("a-config"),
            ),
            true,
        ),
        (
            "another node's Pod's Secret",
            attrs("get", "", "secrets", None, Some("team"), Some("b-secret")),
            false,
        ),
        (
            "another node's Pod's ConfigMap",
            attrs(
                "get",
                "",
                "configmaps",
                None,
                Some("team"),
                Some("b-config"),
            ),
            false,
        ),
        (
            "the same Secret name in another namespace",
            attrs("get", "", "secrets", None, Some("other"), Some("a-secret")),
            false,
        ),
        (
            "Secrets: list",
            attrs("list", "", "secrets", None, Some("team"), None),
            false,
        ),
        (
            "its Pod's Secret: update",
            attrs(
                "update",
                "",
                "secrets",
                None,
                Some("team"),
                Some("a-secret"),
            ),
            false,
        ),
        (
            "an Ingress TLS Secret (gateway)",
            attrs("get", "", "secrets", None, Some("team"), Some("web-cert")),
            true,
        ),
        (
            "Events: create",
            attrs("create", "", "events", None, Some("team"), None),
            true,
        ),
        (
            "Events: patch",
            attrs("patch", "", "events", None, Some("team"), Some("e")),
            true,
        ),
        (
            "Services: watch (gateway)",
            attrs("watch", "", "services", None, None, None),
            true,
        ),
        (
            "EndpointSlices: list (gateway)",
            attrs(
                "list",
                "discovery.k8s.io",
                "endpointslices",
                None,
                None,
                None,
            ),
            true,
        ),
        (
            "Ingresses: watch (gateway)",
            attrs("watch", "networking.k8s.io", "ingresses", None, None, None),
            true,
        ),
        (
            "Namespaces: get",
            attrs("get", "", "namespaces", None, None, Some("kube-node-lease")),
            true,
        ),
        (
            "Namespaces: create",
            attrs("create", "", "namespaces", None, None, None),
            false,
        ),
        (
            "Services: write",
            attrs("patch", "", "services", None, Some("team"), Some("s")),
            false,
        ),
        (
            "Deployments: list",
            attrs("list", "apps", "deployments", None, None, None),
            false,
        ),
        (
            "RBAC: create a binding",
            attrs(
                "create",
                "rbac.authorization.k8s.io",
                "clusterrolebindings",
                None,
                None,
                None,
            ),
            false,
        ),
        (
            "its own access review (basic-user)",
            attrs(
                "create",
                "authorization.k8s.io",
                "selfsubjectaccessreviews",
                None,
                None,
                None,
            ),
            true,
        ),
    ];
    for (what, at, want) in cases {
        assert_eq!(allowed(&c, &a, at.clone()), *want, "{what}");
    }
}

#[test]
fn the_graph_follows_pods_moving_and_going() {
    let c = chain();
    let a = user("system:node:node-a", &["system:nodes"]);
    let secret = attrs("get", "", "secrets", None, Some("team"), Some("a-secret"));
    assert!(allowed(&c, &a, secret.clone()));
    c.indexes()
        .graph
        .write()
        .unwrap()
        .remove_pod("team", "a-pod");
    assert!(!allowed(&c, &a, secret.clone()));
    assert_eq!(c.indexes().graph.read().unwrap().pods_on("node-a"), 0);
    // Two Pods share a Secret: it stays readable until both are gone.
    for name in ["p1", "p2"] {
        let pod: PodView = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "team"},
            "spec": {"nodeName": "node-a", "containers": [{"name": "c",
                "env": [{"name": "S", "valueFrom": {"secretKeyRef": {"name": "a-secret", "key": "k"}}}]}]}
        }))
        .unwrap();
        c.indexes().graph.write().unwrap().put_pod(&pod);
    }
    c.indexes().graph.write().unwrap().remove_pod("team", "p1");
    assert!(allowed(&c, &a, secret.clone()));
    // Rebound elsewhere (a Pod's node never changes in Kubernetes, but an object recreated
    // under the same name may land on another node).
    let moved: PodView = serde_json::from_value(json!({
        "metadata": {"name": "p2", "namespace": "team"},
        "spec": {"nodeName": "node-b", "containers": [{"name": "c",
            "env": [{"name": "S", "valueFrom": {"secretKeyRef": {"name": "a-secret", "key": "k"}}}]}]}
    }))
    .unwrap();
    c.indexes().graph.write().unwrap().put_pod(&moved);
    assert!(!allowed(&c, &a, secret));
}

#[test]
fn bootstrap_tokens_and_misnamed_nodes_may_do_nothing() {
    let c = chain();
    let boot = user("system:bootstrap:abcdef", &["system:bootstrappers"]);
    let review = attrs(
        "create",
        "authorization.k8s.io",
        "selfsubjectaccessreviews",
        None,
        None,
        None,
    );
    assert!(!allowed(&c, &boot, review.clone()));
    let odd = user("mallory", &["system:nodes", "system:authenticated"]);
    assert!(!allowed(
        &c,
        &odd,
        attrs("watch", "", "nodes", None, None, None)
    ));
}

#[test]
fn refusals_use_kubernetes_wording() {
    let c = chain();
    let u = user("u", &["system:authenticated"]);
    let err = |a: Attributes<'_>| match c.authorize(&u, &a) {
        Err(ApiError::Forbidden(m)) => m,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        err(attrs("get", "", "pods", None, Some("ns"), Some("x"))),
        "pods \"x\" is forbidden: User \"u\" cannot get resource \"pods\" in API group \"\" in the namespace \"ns\""
    );
    assert_eq!(
        err(attrs("list", "apps", "deployments", None, None, None)),
        "deployments.apps is forbidden: User \"u\" cannot list resource \"deployments\" in API group \"apps\" at the cluster scope"
    );
    assert_eq!(
        err(attrs("get", "", "pods", Some("log"), Some("ns"), Some("x"))),
        "pods \"x\" is forbidden: User \"u\" cannot get resource \"pods/log\" in API group \"\" in the namespace \"ns\""
    );
    let node = user("system:node:node-a", &["system:nodes"]);
    match c.authorize(
        &node,
        &attrs("get", "", "secrets", None, Some("team"), Some("b-secret")),
    ) {
        Err(ApiError::Forbidden(m)) => assert_eq!(
            m,
            "secrets \"b-secret\" is forbidden: User \"system:node:node-a\" cannot get resource \"secrets\" in API group \"\" in the namespace \"team\": no relationship found between node \"node-a\" and this object"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.authorize_non_resource(&user("x", &[]), "get", "/version")
            .unwrap_err()
            .to_string(),
        "forbidden: User \"x\" cannot get path \"/version\""
    );
}

#[test]
fn a_rules_review_lists_what_rbac_grants_in_the_namespace() {
    let c = chain();
    let alice = user("alice", &["system:authenticated"]);
    let s = c.rules(&alice, Some("team"));
    assert!(
        s.resource_rules
            .iter()
            .any(|r| r.resources == ["pods", "pods/log"])
    );
    assert!(
        s.resource_rules
            .iter()
            .any(|r| r.resources == ["selfsubjectaccessreviews", "selfsubjectrulesreviews"])
    );
    assert!(
        s.non_resource_rules
            .iter()
            .any(|r| r.non_resource_urls.contains(&"/version".to_string()))
    );
    assert!(!s.incomplete);
    let other = c.rules(&alice, Some("other"));
    assert!(
        !other
            .resource_rules
            .iter()
            .any(|r| r.resources.contains(&"pods".to_string()))
    );
    let node = user("system:node:n", &["system:nodes"]);
    assert!(c.rules(&node, None).incomplete);
}
