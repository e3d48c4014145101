//! The SDK examples under `examples/`, each deployed from its directory with `ketch up` (which
//! builds it with the `[build]` command of its ketch.toml): counter's key-value data outlives
//! its Pod, and plain-wasi (no SDK) runs unchanged.

use serde_json::Value;

use crate::support::{KetchUp, eventually, http, try_http};

fn running_pods(up: &KetchUp, selector: &str) -> Vec<String> {
    let list: Value =
        serde_json::from_str(&up.ok(&["get", "pods", "-l", selector, "-o", "json"])).unwrap();
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|p| crate::support::running_ready(p))
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn counter_counts_per_path_and_keeps_counting_after_its_pod_is_replaced() {
    let mut up = KetchUp::start("counter", &[]);
    // The first run builds the example (cargo, wasm32-wasip2): allow for it.
    up.wait_line("service default/counter: ", 600);
    let url = format!("http://127.0.0.1:{}", up.gw_port);
    let host = [("host", "counter.default.ketch.localhost")];
    let get = |path: &str| http("GET", &format!("{url}{path}"), &host, None);
    for n in 1..=3 {
        let (code, _, body) = get("/a");
        assert_eq!((code, body.as_str()), (200, format!("/a: {n}\n").as_str()));
    }
    assert_eq!(get("/b").2, "/b: 1\n");

    let before = eventually(30, "one running counter Pod", || {
        let pods = running_pods(&up, "app=counter");
        (pods.len() == 1).then(|| pods[0].clone())
    });
    up.ok(&["delete", "pod", &before]);
    // The Deployment's replacement Pod (another name) serves the same app's data.
    eventually(90, "a replacement Pod", || {
        let pods = running_pods(&up, "app=counter");
        (pods.len() == 1 && pods[0] != before).then_some(())
    });
    let (code, _, body) = eventually(60, "the replacement answering", || {
        try_http("GET", &format!("{url}/a"), &host, None).filter(|(c, _, _)| *c == 200)
    });
    assert_eq!(
        (code, body.as_str()),
        (200, "/a: 4\n"),
        "the count continues"
    );
    assert_eq!(get("/_counts").2, r#"{"/a":4,"/b":1}"#);
}

#[test]
fn plain_wasi_component_runs_unchanged() {
    let mut up = KetchUp::start("plain-wasi", &[]);
    up.wait_line("service default/plain-wasi: ", 600);
    let (code, _, body) = http(
        "GET",
        &format!("http://127.0.0.1:{}/x", up.gw_port),
        &[("host", "plain-wasi.default.ketch.localhost")],
        None,
    );
    assert_eq!(code, 200, "{body}");
    assert!(
        body.starts_with("Hello from a plain wasi:http component! (from plain-wasi-"),
        "{body}"
    );
    assert!(body.ends_with("path /x)\n"), "{body}");
}

#[test]
fn ketch_new_scaffolds_an_app_that_ketch_up_builds_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let new = |name: &str| {
        crate::support::ketch_cmd()
            .args(["new", name])
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = new("my-app");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("next: ketch up my-app"));
    // A second time: refused, nothing overwritten.
    let again = new("my-app");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let bad = new("My_App");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("app name \"My_App\" is invalid"));

    let app = dir.path().join("my-app");
    // KetchUp resolves its argument under examples/, unless it is absolute.
    let mut up = KetchUp::start(app.to_str().unwrap(), &[]);
    up.wait_line("service default/my-app: ", 600);
    let url = format!("http://127.0.0.1:{}", up.gw_port);
    let host = [("host", "my-app.default.ketch.localhost")];
    assert_eq!(
        http("GET", &format!("{url}/"), &host, None).2,
        "Hello from my-app!\n"
    );
    assert_eq!(
        http("GET", &format!("{url}/hello/ketch"), &host, None).2,
        "Hello, ketch!\n"
    );
}
