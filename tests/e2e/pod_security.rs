//! Pod Security admission through the real binary: a namespace's
//! `pod-security.kubernetes.io/enforce` label chooses the level (`baseline` without one),
//! a Pod that breaks it is refused with the field named, and fields ketch cannot honor yet
//! are refused by name. No containerd needed: these Pods are only admitted, never run.

use crate::support::{Server, write_file};

fn pod(ns: &str, name: &str, container_extra: &str, pod_extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n{pod_extra}  containers:\n  - name: main\n    image: 127.0.0.1:5000/ketch-test/busybox:1\n    command: [sleep, '1000']\n{container_extra}"
    )
}

fn namespace(name: &str, level: Option<&str>) -> String {
    match level {
        Some(l) => format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n    pod-security.kubernetes.io/enforce: {l}\n"
        ),
        None => format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"),
    }
}

const SYS_ADMIN: &str = "    securityContext:\n      capabilities:\n        add: [SYS_ADMIN]\n";

/// `apply` of `manifest` from a file named `name`; its stderr when it fails.
fn apply(s: &Server, name: &str, manifest: &str) -> Result<String, String> {
    let f = write_file(s.dir.path(), name, manifest);
    let out = s.ketch(&["apply", "-f", f.to_str().unwrap()]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn a_capability_beyond_baseline_is_refused_by_default_and_allowed_in_a_privileged_namespace() {
    let s = Server::start();
    let err = apply(&s, "admin.yaml", &pod("default", "admin", SYS_ADMIN, "")).unwrap_err();
    assert!(
        err.contains("pods \"admin\" is forbidden: violates PodSecurity \"baseline:latest\": non-default capabilities (spec.containers[0].securityContext.capabilities.add[0]: \"SYS_ADMIN\" is not allowed"),
        "{err}"
    );
    // A label value that is no level is refused, naming the label.
    let err = apply(&s, "bad-ns.yaml", &namespace("odd", Some("strict"))).unwrap_err();
    assert!(
        err.contains(
            "metadata.labels[pod-security.kubernetes.io/enforce]: Unsupported value: \"strict\""
        ),
        "{err}"
    );
    apply(&s, "ns.yaml", &namespace("ops", Some("privileged"))).unwrap();
    apply(&s, "admin-ops.yaml", &pod("ops", "admin", SYS_ADMIN, "")).unwrap();
    // Unconfined seccomp: the same split.
    let unconfined = "    securityContext:\n      seccompProfile:\n        type: Unconfined\n";
    let err = apply(&s, "u.yaml", &pod("default", "u", unconfined, "")).unwrap_err();
    assert!(
        err.contains("seccompProfile (spec.containers[0].securityContext.seccompProfile.type: must not be \"Unconfined\")"),
        "{err}"
    );
    apply(&s, "u-ops.yaml", &pod("ops", "u", unconfined, "")).unwrap();

    // An update that adds the capability is checked too; one that leaves the spec alone is not,
    // even after the namespace's level went up.
    apply(&s, "plain.yaml", &pod("default", "plain", "", "")).unwrap();
    let err = apply(&s, "plain2.yaml", &pod("default", "plain", SYS_ADMIN, "")).unwrap_err();
    assert!(
        err.contains("violates PodSecurity \"baseline:latest\""),
        "{err}"
    );
    apply(&s, "ns2.yaml", &namespace("ops", Some("restricted"))).unwrap();
    let labelled = pod("ops", "admin", SYS_ADMIN, "").replace(
        "  name: admin\n",
        "  name: admin\n  labels:\n    team: infra\n",
    );
    apply(&s, "admin-ops2.yaml", &labelled).unwrap();
    let got = s.ok(&["get", "pod", "admin", "-n", "ops", "-o", "json"]);
    assert!(
        got.contains("\"team\": \"infra\"") || got.contains("\"team\":\"infra\""),
        "{got}"
    );
}

#[test]
fn a_restricted_namespace_takes_only_hardened_pods() {
    let s = Server::start();
    apply(&s, "ns.yaml", &namespace("locked", Some("restricted"))).unwrap();
    let err = apply(&s, "plain.yaml", &pod("locked", "plain", "", "")).unwrap_err();
    assert!(
        err.contains("violates PodSecurity \"restricted:latest\""),
        "{err}"
    );
    for field in [
        "unrestricted capabilities (spec.containers[0].securityContext.capabilities.drop: must include \"ALL\")",
        "runAsNonRoot != true (spec.containers[0].securityContext.runAsNonRoot",
        "seccompProfile (spec.containers[0].securityContext.seccompProfile.type",
    ] {
        assert!(err.contains(field), "{field}: {err}");
    }
    let hardened = pod(
        "locked",
        "hardened",
        "    securityContext:\n      allowPrivilegeEscalation: false\n      capabilities:\n        drop: [ALL]\n",
        "  securityContext:\n    runAsNonRoot: true\n    runAsUser: 1000\n    seccompProfile:\n      type: RuntimeDefault\n",
    );
    apply(&s, "hardened.yaml", &hardened).unwrap();
}

#[test]
fn fields_ketch_cannot_honor_yet_are_refused_by_name() {
    let s = Server::start();
    let err = apply(
        &s,
        "userns.yaml",
        &pod("default", "userns", "", "  hostUsers: false\n"),
    )
    .unwrap_err();
    assert!(err.contains("spec.hostUsers: Unsupported value"), "{err}");
    assert!(err.contains("not supported yet"), "{err}");
    let localhost = "    securityContext:\n      seccompProfile:\n        type: Localhost\n        localhostProfile: profiles/audit.json\n";
    let err = apply(&s, "lh.yaml", &pod("default", "lh", localhost, "")).unwrap_err();
    assert!(
        err.contains(
            "spec.containers[0].securityContext.seccompProfile.localhostProfile: Unsupported value"
        ),
        "{err}"
    );
    assert!(err.contains("not supported yet"), "{err}");
    let host_port = "    ports:\n    - containerPort: 80\n      hostPort: 8080\n";
    let err = apply(&s, "hp.yaml", &pod("default", "hp", host_port, "")).unwrap_err();
    assert!(
        err.contains("spec.containers[0].ports[0].hostPort"),
        "{err}"
    );
    // `hostUsers: true` is what every Pod gets: accepted.
    apply(
        &s,
        "hu.yaml",
        &pod("default", "hu", "", "  hostUsers: true\n"),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_whose_template_breaks_the_level_is_stored_with_a_warning() {
    let s = Server::start();
    let deployment = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "admin"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "admin"}},
            "template": {
                "metadata": {"labels": {"app": "admin"}},
                "spec": {"containers": [{
                    "name": "main",
                    "image": "127.0.0.1:5000/ketch-test/busybox:1",
                    "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}
                }]}
            }
        }
    });
    let resp = s
        .http()
        .post(format!(
            "{}/apis/apps/v1/namespaces/default/deployments",
            s.url
        ))
        .bearer_auth(&s.token)
        .json(&deployment)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let warning = resp
        .headers()
        .get("warning")
        .expect("a Warning header")
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        warning.starts_with(
            "299 - \"would violate PodSecurity \\\"baseline:latest\\\": non-default capabilities (spec.template.spec.containers[0].securityContext.capabilities.add[0]"
        ),
        "{warning}"
    );
}
