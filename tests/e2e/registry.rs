//! Wasm apps through a real OCI registry (Debian's docker-registry, started by `tests/run` on
//! 127.0.0.1:5000, and one that wants a password on 127.0.0.1:5001): `ketch push` lays out a
//! CNCF Wasm artifact; Pods reference it by tag or digest. Gated like the container tests
//! (`KETCH_SKIP_CONTAINER_TESTS=1` skips them).

use serde_json::Value;

use crate::containers::{docker_config, env_or_skip};
use crate::support::{Server, eventually, http, pods, wait_running, write_file};

/// `ketch push ARGS` with no credentials but those named on the command line.
pub(crate) fn push(args: &[&str]) -> (bool, String, String) {
    let empty = tempfile::tempdir().unwrap();
    let out = crate::support::ketch_cmd()
        .arg("push")
        .args(args)
        .env("DOCKER_CONFIG", empty.path())
        .env_remove("KETCH_REGISTRY_CONFIG")
        .output()
        .expect("run ketch push");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Pushes the hello guest to `repo:tag` on `registry`; its digest reference.
pub(crate) fn push_hello(registry: &str, repo: &str, tag: &str) -> String {
    let (ok, out, err) = push(&[
        ketch_test_guests::HELLO,
        &format!("{registry}/{repo}:{tag}"),
    ]);
    assert!(ok, "ketch push failed: {err}");
    out.trim().to_string()
}

fn get_json(url: &str, accept: &str) -> (Value, String) {
    let (code, headers, body) = http("GET", url, &[("accept", accept)], None);
    assert_eq!(code, 200, "GET {url}: {body}");
    let digest = headers
        .get("docker-content-digest")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (serde_json::from_str(&body).unwrap(), digest)
}

#[test]
fn ketch_push_lays_out_a_cncf_wasm_artifact() {
    let Some(registry) = env_or_skip("KETCH_TEST_REGISTRY") else {
        return;
    };
    let digest_ref = push_hello(&registry, "ketch-test/push", "1");
    let (repo, digest) = digest_ref.split_once('@').unwrap();
    assert_eq!(repo, format!("{registry}/ketch-test/push"));
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest_ref}"
    );

    // The registry serves that manifest by tag, under the printed digest.
    let (m, served) = get_json(
        &format!("http://{registry}/v2/ketch-test/push/manifests/1"),
        "application/vnd.oci.image.manifest.v1+json",
    );
    assert_eq!(served, digest);
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{m}");
    assert_eq!(layers[0]["mediaType"], "application/wasm");
    let size = std::fs::metadata(ketch_test_guests::HELLO).unwrap().len();
    assert_eq!(layers[0]["size"], size);

    let (config, _) = get_json(
        &format!(
            "http://{registry}/v2/ketch-test/push/blobs/{}",
            m["config"]["digest"].as_str().unwrap()
        ),
        "*/*",
    );
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(config["os"], "wasip2");
    assert_eq!(config["layerDigests"][0], layers[0]["digest"]);
    assert!(
        config["created"].as_str().unwrap().ends_with('Z'),
        "{config}"
    );
    let exports = config["component"]["exports"].as_array().unwrap();
    assert!(
        exports.iter().any(|e| e
            .as_str()
            .unwrap()
            .starts_with("wasi:http/incoming-handler@0.2")),
        "{config}"
    );
}

#[test]
fn ketch_push_refuses_what_is_not_a_component() {
    let Some(registry) = env_or_skip("KETCH_TEST_REGISTRY") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "hello").unwrap();
    let module = dir.path().join("module.wasm");
    std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
    let target = format!("{registry}/ketch-test/refused:1");
    let (ok, _, err) = push(&[text.to_str().unwrap(), &target]);
    assert!(!ok);
    assert!(
        err.contains(&format!("{} is not a Wasm component", text.display())),
        "{err}"
    );
    assert!(err.contains("not a WebAssembly file"), "{err}");
    let (ok, _, err) = push(&[module.to_str().unwrap(), &target]);
    assert!(!ok);
    assert!(err.contains("core WebAssembly module"), "{err}");
    // Nothing reached the registry.
    let (code, _, _) = http(
        "GET",
        &format!("http://{registry}/v2/ketch-test/refused/tags/list"),
        &[],
        None,
    );
    assert_eq!(code, 404);
}

#[test]
fn ketch_push_uses_the_docker_config_for_a_registry_with_a_password() {
    if env_or_skip("KETCH_TEST_REGISTRY").is_none() {
        return;
    }
    let Ok(registry) = std::env::var("KETCH_TEST_AUTH_REGISTRY") else {
        eprintln!("KETCH_TEST_AUTH_REGISTRY is not set (tests/run could not start it): skipped");
        return;
    };
    let target = format!("{registry}/ketch-test/private-hello:1");
    let (ok, _, err) = push(&[ketch_test_guests::HELLO, &target]);
    assert!(!ok, "pushed without credentials");
    // The registry's own words.
    assert!(err.contains("authentication required"), "{err}");
    let creds = tempfile::tempdir().unwrap();
    docker_config(
        creds.path(),
        &registry,
        &std::env::var("KETCH_TEST_AUTH_USER").unwrap(),
        &std::env::var("KETCH_TEST_AUTH_PASSWORD").unwrap(),
    );
    let config = creds.path().join("config.json");
    let (ok, out, err) = push(&[
        ketch_test_guests::HELLO,
        &target,
        "--registry-config",
        config.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(
        out.trim()
            .starts_with(&format!("{registry}/ketch-test/private-hello@sha256:")),
        "{out}"
    );
}

/// A Deployment of `image` (no runtime class) with a Service of the same name.
fn app(name: &str, image: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: app\n        image: {image}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector: {{app: {name}}}\n  ports:\n  - port: 80\n---\n"
    )
}

/// A server whose node also offers Linux containers when the test containerd is there: the
/// artifact, not the node, must then decide that a Pod is Wasm.
fn server() -> Server {
    match std::env::var("KETCH_TEST_CONTAINERD") {
        Ok(sock) => Server::start_with(&["--containerd", &sock]),
        Err(_) => Server::start(),
    }
}

/// The messages of the Events with `reason`, for Pods whose name starts with `prefix`.
fn events(s: &Server, reason: &str, prefix: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(&s.ok(&["get", "events", "-o", "json"])).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["reason"] == reason
                && e["involvedObject"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(prefix))
        })
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_pushed_component_runs_by_tag_and_by_digest_without_a_runtime_class() {
    let Some(registry) = env_or_skip("KETCH_TEST_REGISTRY") else {
        return;
    };
    let digest_ref = push_hello(&registry, "ketch-test/hello-deploy", "1");
    let tag_ref = format!("{registry}/ketch-test/hello-deploy:1");
    let s = server();
    let manifest = app("by-tag", &tag_ref, 1) + &app("by-digest", &digest_ref, 2);
    let f = write_file(s.dir.path(), "app.yaml", &manifest);
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    wait_running(&s, "app=by-tag", 1);
    wait_running(&s, "app=by-digest", 2);

    // Through the gateway, by Service name.
    let gw = s.gateway();
    for svc in ["by-tag", "by-digest"] {
        let body = eventually(30, "the app to answer through the gateway", || {
            let host = format!("{svc}.default.ketch.localhost");
            let (code, _, body) = http("GET", &format!("{gw}/"), &[("host", &host)], None);
            (code == 200).then_some(body)
        });
        assert!(body.contains("hello from ketch"), "{body}");
    }
    // Wasm, chosen by the artifact's media type; the image ID is the manifest's digest.
    for p in pods(&s, "app=by-tag")
        .iter()
        .chain(&pods(&s, "app=by-digest"))
    {
        let c = &p["status"]["containerStatuses"][0];
        assert!(
            c["containerID"].as_str().unwrap().starts_with("wasm://"),
            "{p}"
        );
        assert_eq!(c["imageID"], digest_ref.as_str(), "{p}");
    }
    // Three Pods, one component: downloaded once and compiled once on this node.
    let pulled = events(&s, "Pulled", "by-");
    assert_eq!(pulled.len(), 3, "{pulled:#?}");
    let downloads = pulled
        .iter()
        .filter(|m| m.contains(" bytes, sha256:"))
        .count();
    assert_eq!(downloads, 1, "{pulled:#?}");
    let compiled = pulled.iter().filter(|m| m.ends_with("(compiled)")).count();
    assert_eq!(compiled, 1, "{pulled:#?}");
    // The second Pod of the digest found it present (the digest is never pulled again).
    assert!(
        pulled
            .iter()
            .any(|m| m.starts_with(&format!("Container image \"{digest_ref}\" already present"))),
        "{pulled:#?}"
    );
    let pulling = events(&s, "Pulling", "by-digest");
    assert_eq!(pulling.len(), 1, "{pulling:#?}");
}

#[test]
fn each_examples_manifest_deploys_from_a_registry_reference() {
    let Some(registry) = env_or_skip("KETCH_TEST_REGISTRY") else {
        return;
    };
    let s = server();
    // (example dir, its built component, the Service its app.yaml declares)
    let examples = [
        ("hello", ketch_test_guests::EXAMPLE_HELLO, "hello"),
        ("counter", ketch_test_guests::EXAMPLE_COUNTER, "counter"),
        (
            "plain-wasi",
            ketch_test_guests::EXAMPLE_PLAIN_WASI,
            "plain-wasi",
        ),
    ];
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for (dir, wasm, _) in examples {
        let (ok, digest_ref, err) = push(&[wasm, &format!("{registry}/ketch-examples/{dir}:test")]);
        assert!(ok, "ketch push {wasm}: {err}");
        let swapped = example_from_registry(&root.join(dir), digest_ref.trim());
        let f = write_file(s.dir.path(), &format!("{dir}.yaml"), &swapped);
        s.ok(&["apply", "-f", f.to_str().unwrap()]);
    }
    let gw = s.gateway();
    for (dir, _, svc) in examples {
        eventually(
            60,
            &format!("examples/{dir} to answer from the registry image"),
            || {
                let host = format!("{svc}.default.ketch.localhost");
                let (code, _, body) = http("GET", &format!("{gw}/"), &[("host", &host)], None);
                (code == 200 && !body.is_empty()).then_some(())
            },
        );
    }
}

/// The example's own manifest (`<dir>/app.yaml`) with its `image: file:...` swapped for
/// `reference` (a registry digest reference).
pub(crate) fn example_from_registry(dir: &std::path::Path, reference: &str) -> String {
    let manifest = std::fs::read_to_string(dir.join("app.yaml")).unwrap();
    let swapped: String = manifest
        .lines()
        .map(|l| match l.split_once("image: file:") {
            Some((indent, _)) => format!("{indent}image: {reference}\n"),
            None => format!("{l}\n"),
        })
        .collect();
    assert_ne!(
        manifest,
        swapped,
        "{}/app.yaml names no file: image",
        dir.display()
    );
    swapped
}

/// The Pod's first container's waiting `(reason, message)` once it waits in `reason`.
fn wait_waiting(s: &Server, pod: &str, reason: &str) -> String {
    eventually(60, &format!("pod {pod} to wait in {reason}"), || {
        let p: Value = serde_json::from_str(&s.ok(&["get", "pod", pod, "-o", "json"])).ok()?;
        let w = &p["status"]["containerStatuses"][0]["state"]["waiting"];
        (w["reason"] == reason).then(|| w["message"].as_str().unwrap_or_default().to_string())
    })
}

fn pod(name: &str, image: &str, class: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n{class}  containers:\n  - name: app\n    image: {image}\n---\n"
    )
}

#[test]
fn a_wrong_digest_a_missing_tag_and_a_container_image_fail_with_the_registrys_message() {
    let Some(registry) = env_or_skip("KETCH_TEST_REGISTRY") else {
        return;
    };
    push_hello(&registry, "ketch-test/hello-fail", "1");
    let wrong = format!("{registry}/ketch-test/hello-fail@sha256:{}", "0".repeat(64));
    let missing = format!("{registry}/ketch-test/hello-fail:no-such-tag");
    let busybox = env_or_skip("KETCH_TEST_BUSYBOX").unwrap();
    let s = Server::start();
    let present_elsewhere = format!("{registry}/ketch-test/hello-fail:1");
    let manifest = pod("wrong-digest", &wrong, "")
        + &pod("missing-tag", &missing, "")
        + &pod("not-wasm", &busybox, "  runtimeClassName: wasm\n")
        + &pod("never", &present_elsewhere, "")
            .replace("    image:", "    imagePullPolicy: Never\n    image:");
    let f = write_file(s.dir.path(), "pods.yaml", &manifest);
    s.ok(&["apply", "-f", f.to_str().unwrap()]);

    let m = wait_waiting(&s, "wrong-digest", "ImagePullBackOff");
    assert!(
        m.starts_with(&format!(
            "Back-off pulling image \"{wrong}\": ErrImagePull: pulling {wrong}: "
        )),
        "{m}"
    );
    assert!(m.contains("manifest unknown"), "{m}");
    let m = wait_waiting(&s, "missing-tag", "ImagePullBackOff");
    assert!(m.contains(&format!("pulling {missing}: ")), "{m}");
    assert!(m.contains("manifest unknown"), "{m}");
    // A container image where the runtime class says Wasm: its media type is named.
    let m = wait_waiting(&s, "not-wasm", "ImagePullBackOff");
    assert!(m.contains("is not a Wasm component artifact"), "{m}");
    assert!(
        m.contains("application/vnd.oci.image.config.v1+json"),
        "{m}"
    );
    // In the registry but not on this node, and the policy says never pull.
    let m = wait_waiting(&s, "never", "ImagePullBackOff");
    assert!(
        m.ends_with(&format!(
            "image {present_elsewhere} is not present on this node and imagePullPolicy is Never"
        )),
        "{m}"
    );
    let described = s.ok(&["describe", "pod", "wrong-digest"]);
    assert!(described.contains("ErrImagePull"), "{described}");
    assert!(described.contains(&"0".repeat(64)), "{described}");
}
