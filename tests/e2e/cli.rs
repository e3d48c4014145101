//! The CLI tour from the README, and bad input through the CLI.

use crate::support::{Server, write_file};

const K8S_MANIFEST: &str = include_str!("../manifests/k8s-deployment-service.yaml");

#[test]
fn a_kubernetes_deployment_and_service_apply_unchanged_then_reapply_and_update() {
    let s = Server::start();
    let dir = s.dir.path();
    let f = write_file(dir, "app.yaml", K8S_MANIFEST);
    let f = f.to_str().unwrap();
    let out = s.ok(&["apply", "-f", f]);
    assert!(
        out.contains("deployment.apps/") && out.contains(" created"),
        "{out}"
    );
    assert!(out.contains("service/"), "{out}");
    // The same manifest again changes nothing.
    let out = s.ok(&["apply", "-f", f]);
    assert!(out.lines().all(|l| l.ends_with(" unchanged")), "{out}");
    // A changed replica count is an update.
    let changed = K8S_MANIFEST.replacen("replicas: 3", "replicas: 4", 1);
    assert_ne!(changed, K8S_MANIFEST, "the test manifest sets replicas: 3");
    let f2 = write_file(dir, "app2.yaml", &changed);
    let out = s.ok(&["apply", "-f", f2.to_str().unwrap()]);
    assert!(
        out.contains("deployment.apps/") && out.contains(" configured"),
        "{out}"
    );
    assert!(
        out.contains("service/") && out.contains(" unchanged"),
        "{out}"
    );

    let table = s.ok(&["get", "deploy"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("0/4"), "{table}");
    let yaml = s.ok(&["get", "deployments.apps", "-o", "yaml"]);
    assert!(
        yaml.contains("replicas: 4") && yaml.contains("generation: 2"),
        "{yaml}"
    );
    let svc = s.ok(&["get", "svc", "-o", "wide"]);
    assert!(svc.contains("SELECTOR"), "{svc}");

    let out = s.ok(&["delete", "-f", f]);
    assert!(out.contains("deleted"), "{out}");
    let err = s.fails(&["get", "deploy", "web"]);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn apply_reads_directories_and_stdin_and_get_filters_by_label_and_namespace() {
    let s = Server::start();
    let dir = s.dir.path().join("m");
    std::fs::create_dir(&dir).unwrap();
    write_file(
        &dir,
        "a.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n",
    );
    write_file(
        &dir,
        "b.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: one\n  namespace: team-a\n  labels: {tier: front}\ndata:\n  k: v\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: two\n  namespace: team-a\n  labels: {tier: back}\n",
    );
    let out = s.ok(&["apply", "-f", dir.to_str().unwrap()]);
    assert_eq!(out.lines().count(), 3, "{out}");
    let out = s.ketch_stdin(
        &["apply", "-f", "-"],
        Some("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"three\"}}"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let front = s.ok(&["get", "cm", "-n", "team-a", "-l", "tier=front"]);
    assert!(front.contains("one") && !front.contains("two"), "{front}");
    let set = s.ok(&[
        "get",
        "configmaps",
        "-n",
        "team-a",
        "-l",
        "tier in (front,back)",
        "-o",
        "name",
    ]);
    assert_eq!(set.lines().count(), 2, "{set}");
    let all = s.ok(&["get", "cm", "-A"]);
    assert!(
        all.starts_with("NAMESPACE") && all.contains("three") && all.contains("two"),
        "{all}"
    );
    let ns = s.ok(&["get", "ns"]);
    assert!(
        ns.contains("team-a") && ns.contains("default") && ns.contains("Active"),
        "{ns}"
    );
    let by_field = s.ok(&[
        "get",
        "cm",
        "-A",
        "--field-selector",
        "metadata.name=two",
        "-o",
        "name",
    ]);
    assert_eq!(by_field.trim(), "configmap/two");

    let described = s.ok(&["describe", "cm", "one", "-n", "team-a"]);
    assert!(
        described.contains("Name:            one") && described.contains("tier=front"),
        "{described}"
    );
    assert!(described.contains("Events:"), "{described}");

    // Deleting a namespace deletes what is in it.
    s.ok(&["delete", "ns", "team-a"]);
    let gone = s.ketch(&["get", "cm", "one", "-n", "team-a"]);
    assert!(!gone.status.success());
    let err = s.fails(&["delete", "namespace", "default"]);
    assert!(err.contains("protected"), "{err}");
}

#[test]
fn bad_manifests_are_refused_with_file_line_field_and_nothing_is_stored() {
    let s = Server::start();
    let dir = s.dir.path();
    let bad_yaml = write_file(
        dir,
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  labels: [oops\n",
    );
    let err = s.fails(&["apply", "-f", bad_yaml.to_str().unwrap()]);
    assert!(
        err.contains("bad.yaml") && err.contains("line") && err.contains("column"),
        "{err}"
    );

    let unknown = write_file(
        dir,
        "unknown.yaml",
        "apiVersion: v1\nkind: Gadget\nmetadata:\n  name: x\n",
    );
    let err = s.fails(&["apply", "-f", unknown.to_str().unwrap()]);
    assert!(err.contains("unknown kind \"Gadget\""), "{err}");

    let unsupported = write_file(
        dir,
        "unsupported.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: x\n    stdin: true\n",
    );
    let err = s.fails(&["apply", "-f", unsupported.to_str().unwrap()]);
    assert!(err.contains("spec.containers[0].stdin"), "{err}");

    let bad_name = write_file(
        dir,
        "name.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Not_Valid\n",
    );
    let err = s.fails(&["apply", "-f", bad_name.to_str().unwrap()]);
    assert!(
        err.contains("metadata.name") && err.contains("Not_Valid"),
        "{err}"
    );

    let bad_qty = write_file(
        dir,
        "qty.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: x\n    resources:\n      limits:\n        memory: 12 potatoes\n",
    );
    let err = s.fails(&["apply", "-f", bad_qty.to_str().unwrap()]);
    assert!(
        err.contains("spec.containers[0].resources.limits[memory]")
            || err.contains("resources.limits"),
        "{err}"
    );

    // ketch's own Pod knobs are checked when the Pod (or its template) is admitted: a bad
    // value, or a ketch.dev/ annotation no kind defines, is refused by name.
    let bad_timeout = write_file(
        dir,
        "timeout.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    ketch.dev/request-timeout: soon\nspec:\n  containers:\n  - name: c\n    image: registry.example/app:1\n",
    );
    let err = s.fails(&["apply", "-f", bad_timeout.to_str().unwrap()]);
    assert!(
        err.contains("metadata.annotations[ketch.dev/request-timeout]")
            && err.contains("\"soon\"")
            && err.contains("30s or 500ms"),
        "{err}"
    );
    let invented = write_file(
        dir,
        "invented.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  selector:\n    matchLabels: {app: d}\n  template:\n    metadata:\n      labels: {app: d}\n      annotations:\n        ketch.dev/max-instance-reuse: \"5\"\n    spec:\n      containers:\n      - name: c\n        image: registry.example/app:1\n",
    );
    let err = s.fails(&["apply", "-f", invented.to_str().unwrap()]);
    assert!(
        err.contains("spec.template.metadata.annotations")
            && err.contains("ketch.dev/max-instance-reuse")
            && err.contains("ketch.dev/request-timeout"),
        "{err}"
    );

    let err = s.fails(&["get", "gadgets"]);
    assert!(err.contains("doesn't have a resource type"), "{err}");
    // Nothing of the above was stored.
    let pods = s.ketch(&["get", "pods", "-A", "-o", "name"]);
    assert_eq!(String::from_utf8_lossy(&pods.stdout).trim(), "");
    let cms = s.ok(&["get", "cm", "-A", "-o", "name"]);
    assert_eq!(cms.trim(), "");
    let deploys = s.ok(&["get", "deployments", "-A", "-o", "name"]);
    assert_eq!(deploys.trim(), "");
}

#[test]
fn the_cli_needs_a_server_and_a_valid_token() {
    let s = Server::start();
    let ca = s.ca_file();
    let out = crate::support::ketch_cmd()
        .args(["get", "pods", "--server", &s.url, "--token", "wrong"])
        .arg("--certificate-authority")
        .arg(&ca)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unauthorized"));
    let out = crate::support::ketch_cmd()
        .args(["get", "pods"])
        .env("KETCH_CONFIG", s.dir.path().join("nope"))
        .env_remove("KETCH_SERVER")
        .env_remove("KETCH_TOKEN")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no server configured"));
    // Flags via the environment work too.
    let out = crate::support::ketch_cmd()
        .args(["get", "ns", "-o", "name"])
        .env("KETCH_CONFIG", s.dir.path().join("nope"))
        .env("KETCH_SERVER", &s.url)
        .env("KETCH_TOKEN", &s.token)
        .env("KETCH_CERTIFICATE_AUTHORITY", &ca)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("namespace/default"));
}

#[test]
fn the_server_writes_a_private_token_and_client_config_and_version_and_completions_work() {
    use std::os::unix::fs::PermissionsExt as _;
    let s = Server::start();
    let mode = std::fs::metadata(s.data_dir().join("admin.token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let mode = std::fs::metadata(s.config_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let v = s.ok(&["version"]);
    assert!(
        v.contains("Client Version: v") && v.contains("Server Version: v"),
        "{v}"
    );
    let bash = s.ok(&["completion", "bash"]);
    assert!(bash.contains("_ketch"), "completion script looks wrong");
    let help = s.ok(&["get", "--help"]);
    assert!(help.contains("--selector"), "{help}");
}
