//! Wasm Pods end to end through the real binary: `ketch server` (API, scheduler,
//! controllers and a node agent in one process) runs Deployments of wasi:http components,
//! heals, scales, rolls out, serves requests through `pods/proxy`, and keeps misbehaving
//! guests from hurting anything but their own request.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Server, eventually, http, pods, running_ready, wait_running, write_file};

/// A request to a Pod through the API server's pods/proxy (API → node agent → in-process Wasm).
fn proxy(s: &Server, pod: &str, path: &str) -> (u16, String) {
    let url = format!(
        "{}/api/v1/namespaces/default/pods/{pod}/proxy/{path}",
        s.url
    );
    let auth = format!("Bearer {}", s.token);
    let (code, _, body) = http("GET", &url, &[("authorization", auth.as_str())], None);
    (code, body)
}

fn deployment(name: &str, image: &str, replicas: u32, greeting: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: {name}}}\n  strategy:\n    rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: app\n        image: file:{image}\n        env:\n        - {{name: GREETING, value: \"{greeting}\"}}\n"
    )
}

#[test]
fn a_wasm_deployment_runs_heals_scales_rolls_out_and_is_deleted() {
    let s = Server::start();
    let dir = s.dir.path();
    let hello = ketch_test_guests::HELLO;
    let f = write_file(dir, "hello.yaml", &deployment("hello", hello, 3, "one"));
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    let first = wait_running(&s, "app=hello", 3);

    // Each Pod answers in-process through the API's pods/proxy.
    let (code, body) = proxy(&s, &first[0], "greet");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("hello from ketch") && body.contains("greeting: one"),
        "{body}"
    );
    // A request authorized for one Pod cannot walk onto another's path with `..` (curl
    // sends the path as is; reqwest would resolve it before sending).
    for walk in [
        "../../{other}/proxy/greet",
        "%2e%2e/%2E%2E/{other}/proxy/greet",
    ] {
        let url = format!(
            "{}/api/v1/namespaces/default/pods/{}/proxy/{}",
            s.url,
            first[0],
            walk.replace("{other}", &first[1])
        );
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "--path-as-is",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .arg("--cacert")
            .arg(s.ca_file())
            .args(["-H", &format!("Authorization: Bearer {}", s.token), &url])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "400",
            "{walk}: {out:?}"
        );
    }
    // Its stdout went to the Pod's log.
    let logs = eventually(10, "the request in the pod's log", || {
        let out = s.ok(&["logs", &first[0]]);
        out.contains("hello: /greet").then_some(out)
    });
    assert!(logs.contains("hello: /greet"), "{logs}");

    // Self-healing: a deleted Pod is replaced.
    s.ok(&["delete", "pod", &first[0]]);
    let healed = eventually(60, "a replacement pod", || {
        let ps = pods(&s, "app=hello");
        let names: Vec<String> = ps
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        (ps.len() == 3 && ps.iter().all(running_ready) && !names.contains(&first[0]))
            .then_some(names)
    });
    assert_eq!(healed.len(), 3);

    s.ok(&["scale", "deploy/hello", "--replicas", "5"]);
    wait_running(&s, "app=hello", 5);
    s.ok(&["scale", "deploy/hello", "--replicas", "0"]);
    eventually(60, "scale to zero", || {
        pods(&s, "app=hello").is_empty().then_some(())
    });
    s.ok(&["scale", "deploy/hello", "--replicas", "3"]);
    let before = wait_running(&s, "app=hello", 3);

    // A template change rolls out; `rollout status` follows it to the end.
    let f2 = write_file(dir, "hello2.yaml", &deployment("hello", hello, 3, "two"));
    s.ok(&["apply", "-f", f2.to_str().unwrap()]);
    let out = s.ok(&["rollout", "status", "deploy/hello", "--timeout", "90"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let after = wait_running(&s, "app=hello", 3);
    assert!(
        after.iter().all(|n| !before.contains(n)),
        "old pods survived the rollout: {before:?} {after:?}"
    );
    let (code, body) = proxy(&s, &after[0], "");
    assert_eq!(code, 200);
    assert!(body.contains("greeting: two"), "{body}");
    let rs = s.ok(&["get", "rs", "-o", "json"]);
    let rs: Value = serde_json::from_str(&rs).unwrap();
    assert_eq!(
        rs["items"].as_array().unwrap().len(),
        2,
        "one ReplicaSet per template"
    );

    // Deleting the Deployment removes its ReplicaSets and Pods.
    s.ok(&["delete", "deploy", "hello"]);
    eventually(60, "garbage collection", || {
        let rs: Value = serde_json::from_str(&s.ok(&["get", "rs", "-o", "json"])).unwrap();
        (pods(&s, "app=hello").is_empty() && rs["items"].as_array().unwrap().is_empty())
            .then_some(())
    });
    let node = s.ok(&["get", "nodes"]);
    assert!(node.contains("Ready") && node.contains("wasm"), "{node}");
}

fn pod_manifest(name: &str, image: &str, extra_meta: &str, limits: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{role: guest}}\n{extra_meta}spec:\n  restartPolicy: Never\n  containers:\n  - name: app\n    image: file:{image}\n{limits}"
    )
}

#[test]
fn misbehaving_guests_fail_their_own_request_and_the_node_keeps_serving() {
    let s = Server::start();
    let dir = s.dir.path();
    let timeout = "  annotations: {ketch.dev/request-timeout: 1s}\n";
    let memory = "    resources:\n      limits: {memory: 32Mi}\n";
    let docs = [
        pod_manifest("hello", ketch_test_guests::HELLO, "", ""),
        pod_manifest("looper", ketch_test_guests::LOOPER, timeout, ""),
        pod_manifest("membomb", ketch_test_guests::MEMBOMB, "", memory),
        pod_manifest("trapper", ketch_test_guests::TRAPPER, "", ""),
    ];
    let f = write_file(dir, "guests.yaml", &docs.join("---\n"));
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    wait_running(&s, "role=guest", 4);

    let started = Instant::now();
    let (code, body) = proxy(&s, "looper", "");
    assert_eq!(code, 504, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the loop was not cut at its deadline"
    );
    let (code, body) = proxy(&s, "membomb", "");
    assert_eq!(code, 500, "{body}");
    assert!(body.to_lowercase().contains("memory"), "{body}");
    let (code, body) = proxy(&s, "trapper", "");
    assert_eq!(code, 500, "{body}");
    // The node, and every other Pod, is fine.
    let (code, body) = proxy(&s, "hello", "");
    assert_eq!(
        (code, body.contains("hello from ketch")),
        (200, true),
        "{body}"
    );
    wait_running(&s, "role=guest", 4);
    // Each failure is an Event on its Pod, naming the limit or the trap.
    for (pod, needle) in [
        ("looper", "deadline"),
        ("membomb", "memory"),
        ("trapper", "trap"),
    ] {
        let described = eventually(10, &format!("a RequestFailed event on {pod}"), || {
            let d = s.ok(&["describe", "pod", pod]);
            d.contains("RequestFailed").then_some(d)
        });
        assert!(
            described.to_lowercase().contains(needle),
            "{pod}: {described}"
        );
    }
}

#[test]
fn an_invalid_component_fails_its_pod_with_the_reason_and_nothing_else() {
    let s = Server::start();
    let dir = s.dir.path();
    let junk = dir.join("junk.wasm");
    std::fs::write(&junk, b"this is not wasm at all").unwrap();
    let docs = [
        pod_manifest("broken", junk.to_str().unwrap(), "", ""),
        pod_manifest("fine", ketch_test_guests::HELLO, "", ""),
    ];
    let f = write_file(dir, "pods.yaml", &docs.join("---\n"));
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    let described = eventually(60, "the broken pod to fail", || {
        let p: Value =
            serde_json::from_str(&s.ok(&["get", "pod", "broken", "-o", "json"])).unwrap();
        (p["status"]["phase"] == "Failed").then(|| s.ok(&["describe", "pod", "broken"]))
    });
    assert!(described.contains("InvalidComponent"), "{described}");
    eventually(60, "the healthy pod", || {
        let p: Value = serde_json::from_str(&s.ok(&["get", "pod", "fine", "-o", "json"])).unwrap();
        running_ready(&p).then_some(())
    });
    assert_eq!(proxy(&s, "fine", "").0, 200);
}

#[test]
fn a_pod_no_node_can_take_stays_pending_with_the_reason() {
    let s = Server::start();
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: picky\nspec:\n  nodeSelector: {{disk: ssd}}\n  containers:\n  - name: app\n    image: file:{}\n",
        ketch_test_guests::HELLO
    );
    let f = write_file(s.dir.path(), "picky.yaml", &manifest);
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    // The pod may be applied before the local agent's node is registered and Ready: the
    // scheduler first says `0/0 nodes` or `1 node(s) were not ready`, then retries when the
    // node changes, so wait for the final message.
    let message = eventually(30, "PodScheduled=False naming the selector", || {
        let p: Value = serde_json::from_str(&s.ok(&["get", "pod", "picky", "-o", "json"])).unwrap();
        p["status"]["conditions"].as_array().and_then(|cs| {
            cs.iter()
                .find(|c| c["type"] == "PodScheduled" && c["status"] == "False")
                .map(|c| c["message"].as_str().unwrap_or_default().to_string())
                .filter(|m| m.contains("node affinity/selector"))
        })
    });
    assert!(message.starts_with("0/1 nodes are available"), "{message}");
}

/// Registers `n` Ready nodes (names `n000`…) that offer Wasm, without agents: the scheduler
/// only needs their objects.
fn register_nodes(s: &Server, n: usize) {
    let client = s.client();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let nodes = &ketch_api::resource::NODES;
    rt.block_on(futures_util::future::join_all((0..n).map(|i| {
        let client = client.clone();
        async move {
            let name = format!("n{i:03}");
            let node = serde_json::json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name}});
            client.create(nodes, None, &node).await.unwrap();
            let status = serde_json::json!({"status": {
                "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}],
                "runtimeHandlers": [{"name": "wasm"}]}});
            client
                .merge_patch(nodes, None, &name, &status, true)
                .await
                .unwrap();
        }
    })));
}

#[test]
fn on_large_clusters_the_scheduler_scores_the_share_of_nodes_it_is_told() {
    // 200 empty nodes, bin-packing. Scoring every node puts all Pods on the first node;
    // scoring half of them makes each placement look at the next 100 nodes, so the Pods
    // alternate between the first node of each half (kube-scheduler's
    // percentageOfNodesToScore behaves the same).
    for (percentage, want) in [
        ("100", vec![("n000", 4)]),
        ("50", vec![("n000", 2), ("n100", 2)]),
    ] {
        let s = Server::start_with(&["--no-agent", "--percentage-of-nodes-to-score", percentage]);
        register_nodes(&s, 200);
        for i in 0..4 {
            let manifest = format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p{i}\n  labels: {{app: sampled}}\nspec:\n  containers:\n  - name: app\n    image: file:{}\n    resources: {{requests: {{cpu: 100m}}}}\n",
                ketch_test_guests::HELLO
            );
            let f = write_file(s.dir.path(), &format!("p{i}.yaml"), &manifest);
            s.ok(&["apply", "-f", f.to_str().unwrap()]);
            // One at a time, so each placement follows the previous one.
            eventually(30, "the Pod bound", || {
                let p: Value =
                    serde_json::from_str(&s.ok(&["get", "pod", &format!("p{i}"), "-o", "json"]))
                        .unwrap();
                p["spec"]["nodeName"].as_str().map(str::to_string)
            });
        }
        let mut placed = std::collections::BTreeMap::new();
        for p in pods(&s, "app=sampled") {
            *placed
                .entry(p["spec"]["nodeName"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
        let want: std::collections::BTreeMap<String, i32> =
            want.into_iter().map(|(n, c)| (n.to_string(), c)).collect();
        assert_eq!(placed, want, "--percentage-of-nodes-to-score {percentage}");
    }
    // Out of range is refused by name.
    let s = Server::start();
    let out = s.ketch(&["server", "--percentage-of-nodes-to-score", "101"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--percentage-of-nodes-to-score"), "{err}");
}

#[test]
fn a_separate_agent_process_joins_a_server_and_runs_its_pods() {
    let s = Server::start_with(&["--no-agent"]);
    let nodes = s.ok(&["get", "nodes", "-o", "name"]);
    assert_eq!(nodes.trim(), "", "a --no-agent server registers no node");
    let log = std::fs::File::create(s.dir.path().join("agent.log")).unwrap();
    let mut agent = crate::support::ketch_cmd()
        .args([
            "agent",
            "--server",
            &s.url,
            "--token",
            &s.join_token(),
            "--name",
            "remote-1",
        ])
        .args([
            "--agent-listen",
            "127.0.0.1:0",
            "--gateway",
            "127.0.0.1:0",
            "--gateway-tls",
            "127.0.0.1:0",
            "--node-label",
            "zone=b",
            "--data-dir",
        ])
        .arg(s.dir.path().join("agent"))
        .env("KETCH_CONFIG", s.dir.path().join("no-config"))
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    eventually(30, "node remote-1 Ready", || {
        let out = s.ok(&["get", "nodes", "-l", "zone=b"]);
        (out.contains("remote-1") && out.contains("Ready")).then_some(())
    });
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: remote-hello\n  labels: {{app: remote}}\nspec:\n  nodeSelector: {{zone: b}}\n  containers:\n  - name: app\n    image: file:{}\n",
        ketch_test_guests::HELLO
    );
    let f = write_file(s.dir.path(), "remote.yaml", &manifest);
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    wait_running(&s, "app=remote", 1);
    let pod: Value =
        serde_json::from_str(&s.ok(&["get", "pod", "remote-hello", "-o", "json"])).unwrap();
    assert_eq!(pod["spec"]["nodeName"], "remote-1");
    let (code, body) = proxy(&s, "remote-hello", "");
    assert_eq!(code, 200, "{body}");
    agent.kill().unwrap();
    agent.wait().unwrap();
}

#[test]
fn a_node_whose_agent_dies_stops_being_ready() {
    let s = Server::start_with(&["--no-agent", "--node-grace-period", "3"]);
    let mut agent = crate::support::ketch_cmd()
        .args([
            "agent",
            "--server",
            &s.url,
            "--token",
            &s.join_token(),
            "--name",
            "doomed",
        ])
        .args([
            "--agent-listen",
            "127.0.0.1:0",
            "--gateway",
            "127.0.0.1:0",
            "--gateway-tls",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(s.dir.path().join("agent"))
        .env("KETCH_CONFIG", s.dir.path().join("no-config"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ready = |s: &Server| {
        let out = s.ketch(&["get", "node", "doomed", "-o", "json"]);
        let n: Value = serde_json::from_slice(&out.stdout).ok()?;
        n["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Ready")
            .map(|c| c["status"].as_str().unwrap_or_default().to_string())
    };
    eventually(30, "node doomed Ready", || {
        (ready(&s).as_deref() == Some("True")).then_some(())
    });
    agent.kill().unwrap();
    agent.wait().unwrap();
    eventually(30, "node doomed not Ready", || {
        (ready(&s).as_deref() == Some("Unknown")).then_some(())
    });
    let table = s.ok(&["get", "nodes"]);
    assert!(table.contains("NotReady"), "{table}");
}

/// The Pod's condition `type` ("True"/"False") and its message.
fn condition(p: &Value, type_: &str) -> (String, String) {
    p["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .unwrap_or_default()
}

#[test]
fn probes_gate_readiness_and_a_failing_liveness_probe_restarts_the_container() {
    let s = Server::start();
    let dir = s.dir.path();
    // Ready only once its key-value store holds health/ready (a 404 before); a startup
    // probe that passes at once (listing a bucket is a 200) hands over to the others; a
    // tcpSocket liveness probe, which an in-process component passes while it is loaded.
    let gated = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: gated\n  labels: {{app: gated}}\nspec:\n  containers:\n  - name: app\n    image: file:{}\n    ports: [{{name: http, containerPort: 8080}}]\n    startupProbe:\n      httpGet: {{path: /keys/health, port: http}}\n      periodSeconds: 1\n    readinessProbe:\n      httpGet: {{path: /b/health/ready, port: http}}\n      periodSeconds: 1\n    livenessProbe:\n      tcpSocket: {{port: 8080}}\n      periodSeconds: 1\n",
        ketch_test_guests::KV
    );
    // Every request traps (a 500): its liveness probe fails twice and it is restarted.
    let sick = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: sick\nspec:\n  containers:\n  - name: app\n    image: file:{}\n    livenessProbe:\n      httpGet: {{path: /, port: 8080}}\n      periodSeconds: 1\n      failureThreshold: 2\n",
        ketch_test_guests::TRAPPER
    );
    let f = write_file(dir, "probes.yaml", &format!("{gated}---\n{sick}"));
    s.ok(&["apply", "-f", f.to_str().unwrap()]);

    let get = |name: &str| -> Value {
        serde_json::from_str(&s.ok(&["get", "pod", name, "-o", "json"])).unwrap()
    };
    // Running, but not Ready while its readiness probe fails.
    eventually(30, "gated Running and failing its readiness probe", || {
        let p = get("gated");
        let (ready, message) = condition(&p, "Ready");
        (p["status"]["phase"] == "Running"
            && ready == "False"
            && message.contains("unready status: [app]"))
        .then_some(())
    });
    let described = eventually(30, "the Unhealthy event", || {
        let d = s.ok(&["describe", "pod", "gated"]);
        d.contains("Readiness probe failed: HTTP probe failed with statuscode: 404")
            .then_some(d)
    });
    assert!(!described.contains("Liveness probe failed"), "{described}");
    assert!(!described.contains("Startup probe failed"), "{described}");
    // It stays unready (and is never restarted: its liveness probe passes).
    std::thread::sleep(Duration::from_secs(2));
    let p = get("gated");
    assert_eq!(condition(&p, "Ready").0, "False");
    assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 0);
    assert_eq!(p["status"]["containerStatuses"][0]["ready"], false);
    // The startup probe passed: the container counts as started, and readiness took over.
    assert_eq!(p["status"]["containerStatuses"][0]["started"], true);

    // The app becomes healthy: Ready follows.
    let url = format!(
        "{}/api/v1/namespaces/default/pods/gated/proxy/b/health/ready",
        s.url
    );
    let auth = format!("Bearer {}", s.token);
    let (code, _, body) = http("PUT", &url, &[("authorization", &auth)], Some("yes"));
    assert_eq!(code, 204, "{body}");
    eventually(30, "gated Ready", || {
        running_ready(&get("gated")).then_some(())
    });
    assert_eq!(
        get("gated")["status"]["containerStatuses"][0]["ready"],
        true
    );

    // The sick one is killed by its liveness probe and restarted.
    let sick = eventually(
        60,
        "sick restarted after failing its liveness probe",
        || {
            let p = get("sick");
            (p["status"]["containerStatuses"][0]["restartCount"].as_i64() >= Some(1)).then_some(p)
        },
    );
    assert_eq!(
        sick["status"]["containerStatuses"][0]["lastState"]["terminated"]["message"],
        "Container app failed liveness probe, will be restarted"
    );
    let described = s.ok(&["describe", "pod", "sick"]);
    assert!(described.contains("Liveness probe failed: "), "{described}");
    assert!(described.contains("Killing"), "{described}");
}
