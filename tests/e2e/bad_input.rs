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

/// A token for user `name` whom a RoleBinding in `default` grants the ClusterRole `role`.
fn user_with_role(s: &Server, name: &str, role: &str) -> String {
    let token = s
        .ok(&["token", "create", "--user", name])
        .trim()
        .to_string();
    let f = crate::support::write_file(
        s.dir.path(),
        &format!("{name}.yaml"),
        &format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n\
             metadata: {{name: {name}-{role}, namespace: default}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}\n\
             subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {name}}}]\n"
        ),
    );
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    token
}

/// POSTs a ConfigMap `name` with `bytes` of data as the holder of `token`: the status code
/// and the response (its `Retry-After` header in `retry_after`).
async fn create_config_map(
    http: &reqwest::Client,
    s: &Server,
    token: &str,
    name: &str,
    bytes: usize,
) -> (u16, Option<String>, Value) {
    let body = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name}, "data": {"d": "x".repeat(bytes)}});
    let resp = http
        .post(format!("{}/api/v1/namespaces/default/configmaps", s.url))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (code, retry, resp.json().await.unwrap_or(Value::Null))
}

async fn get_status(http: &reqwest::Client, s: &Server, token: &str, path: &str) -> u16 {
    http.get(format!("{}{path}", s.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_flood_gets_429s_without_starving_reads_or_other_writers_and_loses_nothing() {
    let s = Server::start_with(&[
        "--no-agent",
        "--max-mutating-requests-inflight",
        "4",
        "--max-requests-inflight",
        "8",
    ]);
    let flood = user_with_role(&s, "flood", "edit");
    let other = user_with_role(&s, "other", "edit");
    let reader = user_with_role(&s, "reader", "view");
    let http = s.http();
    // Bindings reach the authorizer through a watch.
    crate::support::eventually(10, "the bindings", || {
        let ok = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                get_status(&http, &s, &reader, "/api/v1/namespaces/default/configmaps").await == 200
                    && create_config_map(&http, &s, &other, "other-0", 10).await.0 == 201
            })
        });
        ok.then_some(())
    });

    // 32 writers as one user, for 3 s.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..32 {
        let (http, stop, flood) = (http.clone(), stop.clone(), flood.clone());
        let s = (s.url.clone(), s.token.clone());
        writers.push(tokio::spawn(async move {
            let mut codes: Vec<(u16, Option<String>, String)> = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let name = format!("flood-{w}-{i}");
                let body = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name}, "data": {"d": "x"}});
                let resp = http
                    .post(format!("{}/api/v1/namespaces/default/configmaps", s.0))
                    .bearer_auth(&flood)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                let retry = resp
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string());
                codes.push((resp.status().as_u16(), retry, name));
                i += 1;
            }
            codes
        }));
    }
    // Meanwhile, another writer and a reader each go one request at a time: their own
    // places are never taken by the flood.
    let mut others = Vec::new();
    let mut reads = Vec::new();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut n = 1;
    while std::time::Instant::now() < until {
        others.push(
            create_config_map(&http, &s, &other, &format!("other-{n}"), 10)
                .await
                .0,
        );
        reads.push(
            get_status(
                &http,
                &s,
                &reader,
                "/api/v1/namespaces/default/configmaps?limit=10",
            )
            .await,
        );
        n += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut flooded = Vec::new();
    for w in writers {
        flooded.extend(w.await.unwrap());
    }
    let created: Vec<&str> = flooded
        .iter()
        .filter(|(c, ..)| *c == 201)
        .map(|(_, _, n)| n.as_str())
        .collect();
    let refused = flooded.iter().filter(|(c, ..)| *c == 429).count();
    assert!(
        flooded.iter().all(|(c, ..)| *c == 201 || *c == 429),
        "only 201 and 429: {:?}",
        flooded
            .iter()
            .filter(|(c, ..)| *c != 201 && *c != 429)
            .take(5)
            .collect::<Vec<_>>()
    );
    assert!(
        refused > 0 && !created.is_empty(),
        "{} created, {refused} refused",
        created.len()
    );
    assert!(
        flooded
            .iter()
            .filter(|(c, ..)| *c == 429)
            .all(|(_, r, _)| r.as_deref() == Some("1")),
        "every 429 says Retry-After: 1"
    );
    assert!(
        others.iter().all(|c| *c == 201),
        "the other writer: {others:?}"
    );
    assert!(reads.iter().all(|c| *c == 200), "the reader: {reads:?}");
    // Every acknowledged create is stored.
    let listed = s.ok(&["get", "configmaps", "-o", "name"]);
    let stored: std::collections::HashSet<&str> = listed
        .lines()
        .map(|l| l.trim().trim_start_matches("configmap/"))
        .collect();
    let lost: Vec<_> = created.iter().filter(|n| !stored.contains(*n)).collect();
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_store_quota_creates_get_507_until_deletes_free_space() {
    let s = Server::start_with(&["--no-agent", "--quota-backend-bytes", "512Ki"]);
    let filler = user_with_role(&s, "filler", "edit");
    let http = s.http();
    // 32 KiB ConfigMaps until the quota (measured every second) refuses one.
    let mut made = Vec::new();
    let refusal = loop {
        let name = format!("fill-{}", made.len());
        let (code, _, body) = create_config_map(&http, &s, &filler, &name, 32 << 10).await;
        match code {
            201 => made.push(name),
            // The binding is not seen yet.
            403 if made.is_empty() => {}
            507 => break body,
            _ => panic!("{code}: {body}"),
        }
        assert!(made.len() < 100, "no refusal after {} creates", made.len());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let msg = refusal["message"].as_str().unwrap();
    assert!(
        msg.contains("over its quota of 512Ki (--quota-backend-bytes)"),
        "{refusal}"
    );
    assert_eq!(refusal["reason"], "InsufficientStorage");
    let metrics = s.metrics().await;
    assert!(
        metrics.lines().any(|l| l == "ketch_store_quota_exceeded 1"),
        "{metrics}"
    );
    // Deletes go on, and free the space: creates are taken again.
    for name in &made {
        let resp = http
            .delete(format!(
                "{}/api/v1/namespaces/default/configmaps/{name}",
                s.url
            ))
            .bearer_auth(&filler)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "delete {name}");
    }
    let mut code = 0;
    for _ in 0..50 {
        code = create_config_map(&http, &s, &filler, "after", 10).await.0;
        if code == 201 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(code, 201, "the alarm clears once deletes freed space");
}

#[test]
fn a_client_that_connects_and_stays_silent_is_dropped() {
    use std::io::Read as _;
    let s = Server::start_with(&["--no-agent"]);
    let addr = format!("127.0.0.1:{}", s.port);
    let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let started = std::time::Instant::now();
    // No TLS ClientHello: the handshake timeout (10 s) closes the connection.
    let mut buf = [0u8; 16];
    let n = tcp.read(&mut buf).expect("closed, not timed out");
    assert_eq!(n, 0);
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_secs(9) && took < std::time::Duration::from_secs(20),
        "{took:?}"
    );
}
