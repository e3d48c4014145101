//! Authorization benchmark, in process: the server's authorizer chain
//! (`ketch_control::authz::Chain`, what every API request calls) over indexes holding the
//! default roles, 1,000 RoleBindings (10 in each of 100 namespaces, each to its own user,
//! half to a namespace Role and half to the aggregated `edit` ClusterRole), 100
//! ClusterRoleBindings to groups, and a Node graph of 1,000 Pods on 100 nodes. Run:
//! `cargo bench --bench authz`.
//!
//! Each decision is timed on its own (`Instant` around one `authorize` call, so the figure
//! includes the clock's ~20–30 ns), 200,000 per case after a warm-up; p50, p99 and the max
//! are printed per case. The goal (issue 20) is p99 ≤ 10 µs with 1,000 RoleBindings.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ketch_api::rbac::{ClusterRoleBinding, Role, RoleBinding};
use ketch_control::authz::node::PodView;
use ketch_control::authz::{Attributes, Chain, Indexes, User, defaults};
use ketch_control::server::auth::Authorizer as _;
use serde_json::json;

const NAMESPACES: usize = 100;
const BINDINGS_PER_NAMESPACE: usize = 10;
const SAMPLES: usize = 200_000;

fn setup() -> Chain {
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
        for n in 0..NAMESPACES {
            let ns = format!("ns-{n}");
            let role: Role = serde_json::from_value(json!({
                "metadata": {"name": "reader", "namespace": ns},
                "rules": [
                    {"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["pods", "pods/log", "services"]},
                    {"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["a", "b", "c"]},
                ]
            }))
            .unwrap();
            rbac.put_role(&role);
            for b in 0..BINDINGS_PER_NAMESPACE {
                let (kind, role) = if b % 2 == 0 {
                    ("Role", "reader")
                } else {
                    ("ClusterRole", "edit")
                };
                let rb: RoleBinding = serde_json::from_value(json!({
                    "metadata": {"name": format!("b-{b}"), "namespace": ns},
                    "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": format!("user-{n}-{b}")}],
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role}
                }))
                .unwrap();
                rbac.put_role_binding(&format!("rolebindings/{ns}/b-{b}"), &rb);
            }
        }
        for g in 0..100 {
            let crb: ClusterRoleBinding = serde_json::from_value(json!({
                "metadata": {"name": format!("group-{g}")},
                "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": format!("group-{g}")}],
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}
            }))
            .unwrap();
            rbac.put_cluster_role_binding(&format!("clusterrolebindings//group-{g}"), &crb);
        }
        assert_eq!(
            rbac.binding_count(),
            NAMESPACES * BINDINGS_PER_NAMESPACE + 100 + 3
        );
    }
    {
        let mut g = idx.graph.write().unwrap();
        for p in 0..1000 {
            let pod: PodView = serde_json::from_value(json!({
                "metadata": {"name": format!("pod-{p}"), "namespace": format!("ns-{}", p % NAMESPACES)},
                "spec": {"nodeName": format!("node-{}", p % 100), "containers": [{"name": "c",
                    "env": [{"name": "S", "valueFrom": {"secretKeyRef": {"name": format!("s-{p}"), "key": "k"}}}]}]}
            }))
            .unwrap();
            g.put_pod(&pod);
        }
    }
    Chain::new(idx)
}

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
    ns: Option<&'a str>,
    name: Option<&'a str>,
) -> Attributes<'a> {
    Attributes {
        verb,
        group,
        resource,
        subresource: None,
        namespace: ns,
        name,
        field_selector: None,
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn run(chain: &Chain, what: &str, u: &User, a: &Attributes<'_>, want: bool) {
    for _ in 0..10_000 {
        let _ = std::hint::black_box(chain.authorize(u, a));
    }
    let mut samples = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let t = Instant::now();
        let r = std::hint::black_box(chain.authorize(std::hint::black_box(u), a));
        samples.push(t.elapsed());
        assert_eq!(r.is_ok(), want, "{what}");
    }
    samples.sort();
    println!(
        "{what:<58} p50 {:>6.2} µs   p99 {:>6.2} µs   max {:>7.2} µs",
        pct(&samples, 0.5).as_secs_f64() * 1e6,
        pct(&samples, 0.99).as_secs_f64() * 1e6,
        samples[samples.len() - 1].as_secs_f64() * 1e6,
    );
}

fn main() {
    let chain = setup();
    println!(
        "authorizer chain: {} RoleBindings in {NAMESPACES} namespaces, 103 ClusterRoleBindings, 1,000 Pods on 100 nodes; {SAMPLES} decisions per case",
        NAMESPACES * BINDINGS_PER_NAMESPACE
    );
    let authn = "system:authenticated";
    let reader = user("user-42-4", &[authn]);
    let editor = user("user-42-5", &[authn, "group-7"]);
    let stranger = user("nobody", &[authn, "team-x", "team-y"]);
    let admin = user("admin", &["system:masters", authn]);
    let node = user("system:node:node-7", &["system:nodes", authn]);
    run(
        &chain,
        "admin (system:masters)",
        &admin,
        &attrs("delete", "", "pods", Some("ns-1"), Some("p")),
        true,
    );
    run(
        &chain,
        "user, Role grant: get pods",
        &reader,
        &attrs("get", "", "pods", Some("ns-42"), Some("p")),
        true,
    );
    run(
        &chain,
        "user, Role grant by resourceName: get secret",
        &reader,
        &attrs("get", "", "secrets", Some("ns-42"), Some("c")),
        true,
    );
    run(
        &chain,
        "user, ClusterRole edit via RoleBinding: create deploy",
        &editor,
        &attrs("create", "apps", "deployments", Some("ns-42"), None),
        true,
    );
    run(
        &chain,
        "user, group ClusterRoleBinding (view): list svc",
        &editor,
        &attrs("list", "", "services", Some("ns-9"), None),
        true,
    );
    run(
        &chain,
        "user, refused (every grant looked at, message built)",
        &reader,
        &attrs("delete", "", "pods", Some("ns-42"), Some("p")),
        false,
    );
    run(
        &chain,
        "user without bindings, refused",
        &stranger,
        &attrs("list", "", "pods", Some("ns-1"), None),
        false,
    );
    run(
        &chain,
        "node: its Pod's Secret",
        &node,
        &attrs("get", "", "secrets", Some("ns-7"), Some("s-7")),
        true,
    );
    run(
        &chain,
        "node: another node's Secret, refused",
        &node,
        &attrs("get", "", "secrets", Some("ns-8"), Some("s-8")),
        false,
    );
}
