//! RBAC and the Node authorizer through the real binary: the default roles, Roles and
//! bindings through `apply`/`get`, roleRef immutability, aggregation by the controller,
//! `auth can-i`/`whoami`, and access reviews that show the authorizers' indexes follow the
//! store (a SubjectAccessReview asks for any user; until user and node credentials exist,
//! the admin asks on their behalf).

use ketch_api::resource::ResourceInfo;
use serde_json::{Value, json};

use crate::support::{Server, eventually, write_file};

const SAR: ResourceInfo = ResourceInfo {
    group: "authorization.k8s.io",
    version: "v1",
    kind: "SubjectAccessReview",
    plural: "subjectaccessreviews",
    singular: "",
    short_names: &[],
    namespaced: false,
    has_status: false,
};

fn review(
    rt: &tokio::runtime::Runtime,
    s: &Server,
    user: &str,
    groups: &[&str],
    attrs: Value,
) -> Value {
    let body = json!({"spec": {"user": user, "groups": groups, "resourceAttributes": attrs}});
    let answer = rt
        .block_on(s.client().create(&SAR, None, &body))
        .expect("a review is answered");
    answer["status"].clone()
}

const ROLE: &str = "\
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: default}
rules:
- {apiGroups: [\"\"], resources: [pods, pods/log], verbs: [get, list]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-reads, namespace: default}
subjects:
- {kind: User, apiGroup: rbac.authorization.k8s.io, name: alice}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
";

#[test]
fn rbac_objects_grant_through_the_store_and_nodes_reach_only_their_own() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = Server::start_with(&["--no-agent"]);

    // The defaults, aggregated on creation.
    let roles = s.ok(&["get", "clusterroles"]);
    for name in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:basic-user",
    ] {
        assert!(roles.lines().any(|l| l.starts_with(name)), "{roles}");
    }
    let bindings = s.ok(&["get", "clusterrolebindings"]);
    assert!(bindings.contains("ClusterRole/cluster-admin"), "{bindings}");
    let edit = s.ok(&["get", "clusterrole", "edit", "-o", "json"]);
    assert!(edit.contains("deployments"), "{edit}");

    // Not yet granted, then granted by an applied Role and RoleBinding.
    let get_pods = json!({"namespace": "default", "verb": "get", "resource": "pods", "name": "p"});
    assert_eq!(
        review(&rt, &s, "alice", &[], get_pods.clone())["allowed"],
        false
    );
    let f = write_file(s.dir.path(), "role.yaml", ROLE);
    let out = s.ok(&["apply", "-f", f.to_str().unwrap()]);
    assert!(
        out.contains("rolebinding.rbac.authorization.k8s.io/alice-reads created"),
        "{out}"
    );
    assert!(s.ok(&["get", "rolebindings"]).contains("Role/pod-reader"));
    let status = eventually(5, "the binding to reach the authorizer", || {
        let st = review(&rt, &s, "alice", &[], get_pods.clone());
        (st["allowed"] == true).then_some(st)
    });
    assert!(
        status["reason"].as_str().unwrap().contains("alice-reads"),
        "{status}"
    );
    let elsewhere = json!({"namespace": "other", "verb": "get", "resource": "pods"});
    assert_eq!(review(&rt, &s, "alice", &[], elsewhere)["allowed"], false);

    // roleRef is immutable.
    let changed = ROLE.replace(
        "kind: Role, name: pod-reader",
        "kind: ClusterRole, name: admin",
    );
    let f2 = write_file(s.dir.path(), "role2.yaml", &changed);
    let err = s.fails(&["apply", "-f", f2.to_str().unwrap()]);
    assert!(err.contains("cannot change roleRef"), "{err}");

    // Deleting the binding takes the grant away.
    s.ok(&["delete", "rolebinding", "alice-reads"]);
    eventually(5, "the binding's removal to reach the authorizer", || {
        (review(&rt, &s, "alice", &[], get_pods.clone())["allowed"] == false).then_some(())
    });

    // Aggregation: a new ClusterRole labelled for `view` lends its rules to view, edit and
    // admin (the controller on the leader).
    let extra = "\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: widgets-view
  labels: {rbac.authorization.k8s.io/aggregate-to-view: \"true\"}
rules:
- {apiGroups: [example.com], resources: [widgets], verbs: [get]}
";
    let f3 = write_file(s.dir.path(), "widgets.yaml", extra);
    s.ok(&["apply", "-f", f3.to_str().unwrap()]);
    eventually(10, "admin to aggregate the new rule", || {
        s.ok(&["get", "clusterrole", "admin", "-o", "json"])
            .contains("widgets")
            .then_some(())
    });

    // The Node authorizer: a Pod bound to n1 makes its Secret readable by n1 only.
    let pod = "\
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default}
spec:
  nodeName: n1
  containers:
  - name: app
    image: example.com/hello:1
    env:
    - name: TOKEN
      valueFrom: {secretKeyRef: {name: web-token, key: t}}
";
    let f4 = write_file(s.dir.path(), "pod.yaml", pod);
    s.ok(&["apply", "-f", f4.to_str().unwrap()]);
    let secret =
        json!({"namespace": "default", "verb": "get", "resource": "secrets", "name": "web-token"});
    let node = |n: &str| format!("system:node:{n}");
    eventually(5, "the Pod to reach the node graph", || {
        (review(&rt, &s, &node("n1"), &["system:nodes"], secret.clone())["allowed"] == true)
            .then_some(())
    });
    let other = review(&rt, &s, &node("n2"), &["system:nodes"], secret.clone());
    assert_eq!(other["allowed"], false, "{other}");
    assert_eq!(other["denied"], true, "{other}");
    let patch_other = json!({"verb": "patch", "resource": "nodes", "name": "n1"});
    assert_eq!(
        review(&rt, &s, &node("n2"), &["system:nodes"], patch_other)["allowed"],
        false
    );
    let own_status = json!({"namespace": "default", "verb": "patch", "resource": "pods", "subresource": "status", "name": "web"});
    assert_eq!(
        review(&rt, &s, &node("n1"), &["system:nodes"], own_status.clone())["allowed"],
        true
    );
    assert_eq!(
        review(&rt, &s, &node("n2"), &["system:nodes"], own_status)["allowed"],
        false
    );

    // The CLI, as the admin.
    assert_eq!(
        s.ok(&["auth", "can-i", "create", "deployments"]).trim(),
        "yes"
    );
    assert_eq!(s.ok(&["auth", "can-i", "get", "/version"]).trim(), "yes");
    let who = s.ok(&["auth", "whoami"]);
    assert!(who.contains("Username") && who.contains("admin"), "{who}");
    assert!(who.contains("system:masters"), "{who}");
    let list = s.ok(&["auth", "can-i", "--list"]);
    assert!(list.starts_with("Resources"), "{list}");
}
