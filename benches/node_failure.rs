//! Node failure: how long after an agent is `kill -9`ed its Wasm Pods run again elsewhere,
//! and when every request succeeds again. A `ketch server --no-agent` (least-allocated
//! scoring, so replicas spread) and three `ketch agent` processes on loopback; a Deployment
//! of six replicas of the HELLO guest behind a Service; a load of one request at a time
//! (GET and POST in turn) through node n1's gateway for the whole run. Each round kills n2 or n3 (in turn, so the
//! victim always holds Pods: the replacements of the previous round went to the node
//! restarted then), measures, and restarts it.
//!
//! Per kill: when the node is not Ready, when its endpoints are gone from the Service's
//! EndpointSlice, when six replicas are Running and Ready on the other nodes, and the last
//! failed request. Kills are at least 11 s apart: the eviction brake lets one node per zone
//! be tainted `NoExecute` every 10 s (Kubernetes' `--node-eviction-rate` 0.1), so closer
//! kills measure the brake, not a node failure. Run: `cargo bench --bench node_failure`
//! (`KETCH_BENCH_KILLS`, default 10).
//!
//! `KETCH_BENCH_CONTAINERS=1` runs the replicas as Linux containers instead: the http-echo
//! test image (`KETCH_TEST_HTTP_IMAGE`) through containerd (`KETCH_TEST_CONTAINERD`), both as
//! `tests/run` sets them up; each agent gets its own bridge and Pod subnet. As root.

mod support;

use support::{BenchServer, ketch_bin, pct, running_and_ready};

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const HELLO_HOST: &str = "hello.default.ketch.localhost";

/// The containerd socket and the http-echo image, with `KETCH_BENCH_CONTAINERS=1`.
fn containers() -> Option<(String, String)> {
    if std::env::var("KETCH_BENCH_CONTAINERS").is_ok_and(|v| v == "1") {
        let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
        Some((var("KETCH_TEST_CONTAINERD"), var("KETCH_TEST_HTTP_IMAGE")))
    } else {
        None
    }
}

/// Agent flags for the runtimes: containerd with a bridge and subnet of the node's own (`n2`
/// gets `kb-n2`, `10.89.102.0/24`), or none.
fn runtime_flags(name: &str) -> Vec<String> {
    match containers() {
        Some((socket, _)) => {
            let i: u8 = name.trim_start_matches('n').parse().unwrap();
            vec![
                "--containerd".into(),
                socket,
                "--pod-bridge".into(),
                format!("kb-{name}"),
                "--pod-subnet".into(),
                format!("10.89.{}.0/24", 100 + i),
            ]
        }
        None => vec!["--no-containerd".into()],
    }
}

fn agent(server: &BenchServer, name: &str) -> Child {
    let token = server.join_token("--join");
    let log = std::fs::File::create(server.dir().join(format!("{name}.log"))).unwrap();
    Command::new(ketch_bin())
        .env("KETCH_ALLOW_FILE_IMAGES", support::file_image_dirs())
        .args([
            "agent",
            "--server",
            &server.url,
            "--token",
            token.trim(),
            "--name",
            name,
        ])
        .args(["--agent-listen", "127.0.0.1:0", "--gateway", "127.0.0.1:0"])
        .args(["--gateway-tls", "127.0.0.1:0"])
        .args(runtime_flags(name))
        .arg("--data-dir")
        .arg(server.dir().join(format!("{name}-data")))
        .env("KETCH_CONFIG", server.dir().join("no-config"))
        .env("KETCH_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

async fn get(server: &BenchServer, path: &str) -> Value {
    server.client.get_path(path).await.unwrap_or(Value::Null)
}

async fn nodes_ready(server: &BenchServer) -> Vec<String> {
    get(server, "/api/v1/nodes").await["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| {
            n["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

async fn hello_pods(server: &BenchServer) -> Vec<Value> {
    get(
        server,
        "/api/v1/namespaces/default/pods?labelSelector=app%3Dhello",
    )
    .await["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn ready_endpoints_on(server: &BenchServer, node: &str) -> usize {
    get(
        server,
        "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/hello",
    )
    .await["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["nodeName"] == node && e["conditions"]["ready"] == true)
        .count()
}

async fn until<F, Fut>(what: &str, secs: u64, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn gateway_of(server: &BenchServer, node: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = get(server, &format!("/api/v1/nodes/{node}")).await;
        if let Some(url) = n["metadata"]["annotations"]["ketch.dev/gateway-endpoint"].as_str() {
            return url.to_string();
        }
        assert!(Instant::now() < deadline, "node {node} has no gateway");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main]
async fn main() {
    let kills: usize = std::env::var("KETCH_BENCH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let server =
        BenchServer::start(&["--no-agent", "--scheduler-scoring", "least-allocated"]).await;
    let mut agents: Vec<(String, Child)> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| (n.to_string(), agent(&server, n)))
        .collect();
    until("three Ready nodes", 60, || async {
        nodes_ready(&server).await.len() == 3
    })
    .await;
    let c = &server.client;
    let deployments = ketch_api::resource::lookup("deployments").unwrap();
    let services = ketch_api::resource::lookup("services").unwrap();
    let (image, port, kind) = match containers() {
        Some((_, image)) => (image, 8080, "container"),
        None => (format!("file:{}", ketch_test_guests::HELLO), 80, "Wasm"),
    };
    let mut app = json!({"name": "app", "image": image,
        "resources": {"requests": {"cpu": "100m"}}});
    if kind == "container" {
        app["ports"] = json!([{"containerPort": port}]);
    }
    c.create(
        deployments,
        Some("default"),
        &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "hello"},
            "spec": {"replicas": 6, "selector": {"matchLabels": {"app": "hello"}},
                "template": {"metadata": {"labels": {"app": "hello"}},
                    "spec": {"terminationGracePeriodSeconds": 2,
                        "containers": [app]}}}}),
    )
    .await
    .unwrap();
    c.create(
        services,
        Some("default"),
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hello"},
            "spec": {"selector": {"app": "hello"}, "ports": [{"port": 80, "targetPort": port}]}}),
    )
    .await
    .unwrap();
    let six_running = |excluding: String| {
        let server = &server;
        async move {
            let ps = hello_pods(server).await;
            ps.len() == 6
                && ps.iter().all(running_and_ready)
                && ps
                    .iter()
                    .all(|p| p["spec"]["nodeName"] != excluding.as_str())
        }
    };
    until("six running replicas", 60, || six_running(String::new())).await;

    // The load: one request at a time through n1's gateway, GET and POST in turn, for the
    // whole run: `(answered, POST, ok)`.
    let gw = gateway_of(&server, "n1").await;
    let seen: Arc<Mutex<Vec<(Instant, bool, bool)>>> = Arc::default();
    let load = {
        let seen = seen.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap();
            for post in [false, true].into_iter().cycle() {
                let req = if post {
                    http.post(format!("{gw}/")).body("order")
                } else {
                    http.get(format!("{gw}/"))
                };
                let ok = req
                    .header("host", HELLO_HOST)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                seen.lock().unwrap().push((Instant::now(), post, ok));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;

    println!(
        "node failure: 1 server, 3 agents, 6 {kind} replicas, {kills} kills; times after kill -9"
    );
    let (mut not_ready, mut gone, mut replaced, mut all_ok) = (vec![], vec![], vec![], vec![]);
    let (mut failed_get, mut failed_post) = (0, 0);
    let mut last_lost: Option<Instant> = None;
    for k in 0..kills {
        let i = 1 + k % 2;
        let victim = agents[i].0.clone();
        if let Some(t) = last_lost {
            tokio::time::sleep_until((t + Duration::from_secs(11)).into()).await;
        }
        let t0 = Instant::now();
        agents[i].1.kill().unwrap();
        agents[i].1.wait().unwrap();
        until("the victim not Ready", 60, || async {
            !nodes_ready(&server).await.contains(&victim)
        })
        .await;
        not_ready.push(t0.elapsed());
        last_lost = Some(Instant::now());
        until("its endpoints gone", 60, || async {
            ready_endpoints_on(&server, &victim).await == 0
        })
        .await;
        gone.push(t0.elapsed());
        until("six running replicas elsewhere", 60, || {
            six_running(victim.clone())
        })
        .await;
        replaced.push(t0.elapsed());
        // Some time with every replica elsewhere, to see that nothing fails any more.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (last_failure, fails, posts) = {
            let seen = seen.lock().unwrap();
            let failed: Vec<&(Instant, bool, bool)> =
                seen.iter().filter(|(t, _, ok)| *t >= t0 && !ok).collect();
            (
                failed.iter().map(|(t, _, _)| *t).max(),
                failed.len(),
                failed.iter().filter(|(_, post, _)| *post).count(),
            )
        };
        failed_get += fails - posts;
        failed_post += posts;
        let ok_after = last_failure.map_or(Duration::ZERO, |t| t.duration_since(t0));
        all_ok.push(ok_after);
        println!(
            "  kill {} ({victim}): not Ready {:.2} s, endpoints gone {:.2} s, replaced {:.2} s, \
             last failed request {:.2} s ({fails} failed, {posts} of them POST)",
            k + 1,
            not_ready[k].as_secs_f64(),
            gone[k].as_secs_f64(),
            replaced[k].as_secs_f64(),
            ok_after.as_secs_f64()
        );
        // Back, empty: the next round's replacements go there.
        agents[i].1 = agent(&server, &victim);
        until("the victim Ready again", 60, || async {
            nodes_ready(&server).await.contains(&victim)
        })
        .await;
    }
    load.abort();
    let report = |name: &str, v: &mut Vec<Duration>| {
        v.sort();
        println!(
            "{name}: p50 {:.2} s, p99 {:.2} s, max {:.2} s",
            pct(v, 0.5).as_secs_f64(),
            pct(v, 0.99).as_secs_f64(),
            v.last().copied().unwrap_or_default().as_secs_f64()
        );
    };
    report("kill → node not Ready", &mut not_ready);
    report("kill → its endpoints gone", &mut gone);
    report("kill → 6 replicas Running elsewhere", &mut replaced);
    report(
        "kill → every request succeeding (last failure)",
        &mut all_ok,
    );
    let total = seen.lock().unwrap().len();
    println!(
        "requests: {total} (GET and POST in turn), failed: GET {failed_get}, POST {failed_post}"
    );
    for (_, mut a) in agents {
        let _ = a.kill();
        let _ = a.wait();
    }
}
