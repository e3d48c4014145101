//! Bad input through the real binary: every class gets a 4xx that names the field or the
//! limit, the server stays up, and its memory stays bounded.

use serde_json::Value;

use crate::support::Server;

/// Resident set size of a process, KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn post(s: &Server, path: &str, content_type: &str, body: String) -> (u16, Value) {
    let resp = s
        .http()
        .post(format!("{}{path}", s.url))
        .bearer_auth(&s.token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_expand_or_nest_without_bound_are_refused_and_cost_little() {
    let s = Server::start_with(&["--no-agent"]);
    let configmaps = "/api/v1/namespaces/default/configmaps";
    let pid = s.child.id();
    // Warm the paths the bomb takes, so the RSS figure measures the bomb alone.
    let (code, _) = post(
        &s,
        configmaps,
        "application/yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: warm}\ndata: {a: &x b, c: *x}\n".into(),
    )
    .await;
    assert_eq!(code, 201);
    let before = rss_kib(pid);

    // The measured shape: one anchor of 1,000 scalars, 20,000 aliases of it (64 KiB).
    let mut bomb = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\nx: &a [");
    bomb.push_str(&vec!["lol"; 1000].join(","));
    bomb.push_str("]\ny: [");
    bomb.push_str(&vec!["*a"; 20_000].join(","));
    bomb.push_str("]\n");
    let started = std::time::Instant::now();
    let (code, body) = post(&s, configmaps, "application/yaml", bomb).await;
    let took = started.elapsed();
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("YAML aliases"),
        "{body}"
    );
    // Unbounded it took 25 s and 1.9 GiB; the issue asks ≤ 100 ms (BENCHMARKS.md has the
    // release figure), a debug build on a busy machine gets some slack.
    assert!(took < std::time::Duration::from_secs(2), "{took:?}");
    let grew = rss_kib(pid).saturating_sub(before);
    assert!(grew < 50 << 10, "RSS grew {grew} KiB");

    // Deep nesting: the parsers' recursion limits, as a 400 and not a stack overflow.
    let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (code, body) = post(&s, configmaps, "application/json", deep_json).await;
    assert_eq!(code, 400, "{body}");
    let deep_yaml = format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let (code, body) = post(&s, configmaps, "application/yaml", deep_yaml).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("deeper than 256"),
        "{body}"
    );

    // A watch timeout past what the clock can hold is no timeout, not a panic.
    let resp = s
        .http()
        .get(format!(
            "{}{configmaps}?watch=true&timeoutSeconds=18446744073709551615",
            s.url
        ))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);

    // Nothing was stored but the warm-up, and the server still answers.
    let listed = s.ok(&["get", "configmaps", "-o", "name"]);
    assert!(
        listed.contains("warm") && !listed.contains("bomb"),
        "{listed}"
    );
}

#[test]
fn a_file_image_outside_the_allowed_directories_is_not_read() {
    let s = Server::start();
    let guests = std::path::Path::new(ketch_test_guests::HELLO)
        .parent()
        .unwrap()
        .display()
        .to_string();
    // Outright, and through `..` from an allowed directory.
    for (pod, image) in [
        ("passwd", "/etc/passwd".to_string()),
        ("walk", format!("{guests}/../../../../../../../etc/passwd")),
    ] {
        let f = crate::support::write_file(
            s.dir.path(),
            "pod.yaml",
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\nspec:\n  containers:\n  - name: app\n    image: file:{image}\n"
            ),
        );
        s.ok(&["apply", "-f", f.to_str().unwrap()]);
        let waiting = crate::support::eventually(30, "the pod waiting on its image", || {
            let out = s.ok(&["get", "pod", pod, "-o", "json"]);
            let v: Value = serde_json::from_str(&out).ok()?;
            let w = v["status"]["containerStatuses"][0]["state"]["waiting"].clone();
            (w["reason"] == "ErrImagePull" || w["reason"] == "ImagePullBackOff").then_some(w)
        });
        let message = waiting["message"].as_str().unwrap();
        assert!(message.contains("allows file: images from"), "{message}");
        assert!(!message.contains("root:"), "{message}");
    }
}
