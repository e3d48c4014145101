//! The real kubectl (`/usr/bin/kubectl`, on the machines ketch is tested on) with the
//! kubeconfig ketch writes: it sends its token only over TLS, so this is where a cluster
//! without TLS failed every call.

use std::path::Path;
use std::process::Command;

use crate::support::{Server, write_file};

const KUBECTL: &str = "/usr/bin/kubectl";

fn kubectl(s: &Server, args: &[&str]) -> std::process::Output {
    Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(s.dir.path().join("kubeconfig"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(s: &Server, args: &[&str]) -> String {
    let out = kubectl(s, args);
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_real_kubectl_gets_creates_and_deletes_over_tls() {
    if !Path::new(KUBECTL).exists() {
        eprintln!("skipped: {KUBECTL} is not installed");
        return;
    }
    let s = Server::start();
    let config = std::fs::read_to_string(s.dir.path().join("kubeconfig")).unwrap();
    assert!(config.contains("server: https://"), "{config}");
    assert!(config.contains("certificate-authority-data:"), "{config}");
    assert!(ok(&s, &["get", "namespaces", "-o", "name"]).contains("namespace/default"));
    // Validation downloads OpenAPI, which ketch does not serve yet (the kubectl issue).
    let f = write_file(
        s.dir.path(),
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-kubectl}\ndata: {a: b}\n",
    );
    ok(
        &s,
        &["create", "--validate=false", "-f", f.to_str().unwrap()],
    );
    let cm: serde_json::Value =
        serde_json::from_str(&s.ok(&["get", "configmap", "from-kubectl", "-o", "json"])).unwrap();
    assert_eq!(cm["data"]["a"], "b");
    ok(&s, &["delete", "configmap", "from-kubectl"]);
    assert!(
        !s.ok(&["get", "configmaps", "-o", "name"])
            .contains("from-kubectl")
    );
    // A wrong token is refused over the same TLS connection.
    let out = kubectl(&s, &["get", "namespaces", "--token", "wrong"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Unauthorized"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
