//! Linux-container benchmark (issue 5): drives a real all-in-one `ketch server` (release)
//! against a real containerd and prints
//! (a) apply of a container Pod → Running+Ready, interleaved run by run with
//!     `ctr run --rm` of the same image in the same containerd (the anchor);
//! (b) requests/s through the gateway to a container back end vs wrk straight at the
//!     container's address;
//! (c) the server's RSS (API + store + agent in one process) with 100 container Pods.
//!
//! Needs root, a containerd and a registry holding the test images — `tests/run`'s setup
//! provides them — and `ctr` and `wrk` on PATH. Env: `KETCH_BENCH_CONTAINERD` (socket),
//! `KETCH_BENCH_IMAGE` (an HTTP server on 8080 that has `/bin/true`, e.g.
//! `127.0.0.1:5000/ketch-test/http-echo:1`). Run: `cargo bench --bench containers`.

mod support;

use support::{BenchServer, create_and_wait_ready, head_rv, ms, pct, rss_kib, watch_ready};

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BRIDGE: &str = "kbench0";
const SUBNET: &str = "10.251.0.0/24";

fn pod(name: &str, image: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "app", "image": image,
            "ports": [{"containerPort": 8080}]}]}})
}

fn ctr(socket: &str, args: &[&str]) {
    let out = Command::new("ctr")
        .args(["--address", socket, "-n", "ketch-bench"])
        .args(args)
        .output()
        .expect("run ctr");
    assert!(
        out.status.success(),
        "ctr {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `wrk` for 5 s; requests/s and the p50 latency line.
fn wrk(url: &str, host: Option<&str>) -> String {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t1", "-c16", "-d5s", "--latency"]);
    if let Some(h) = host {
        cmd.args(["-H", &format!("Host: {h}")]);
    }
    let out = cmd.arg(url).output().expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .unwrap_or("Requests/sec: ?")
        .trim()
        .to_string();
    let p50 = text
        .lines()
        .find(|l| l.trim_start().starts_with("50%"))
        .unwrap_or("50% ?")
        .trim()
        .to_string();
    format!("{rps}, latency p50 {p50}")
}

#[tokio::main]
async fn main() {
    let socket = std::env::var("KETCH_BENCH_CONTAINERD").expect("KETCH_BENCH_CONTAINERD");
    let image = std::env::var("KETCH_BENCH_IMAGE").expect("KETCH_BENCH_IMAGE");
    let server = BenchServer::start(&[
        "--name",
        "bench-node",
        "--containerd",
        &socket,
        "--pod-bridge",
        BRIDGE,
        "--pod-subnet",
        SUBNET,
    ])
    .await;
    let client = server.client.clone();
    let pods = ketch_api::resource::lookup("pods").unwrap();
    let services = ketch_api::resource::lookup("services").unwrap();
    let deploys = ketch_api::resource::lookup("deployments").unwrap();
    println!(
        "machine: {} cores (containerd, server and the load generators share them)",
        std::thread::available_parallelism().unwrap()
    );
    ctr(&socket, &["images", "pull", "--plain-http", &image]);

    let from = head_rv(&client, pods).await;
    let mut ready = watch_ready(client.clone(), from);
    let mut run = async |name: &str| -> Duration {
        create_and_wait_ready(
            &client,
            &mut ready,
            pods,
            &pod(name, &image),
            name,
            Duration::from_secs(120),
        )
        .await
    };

    // The agent's own account of each start (its start histogram's sum, read around every
    // run): create → started inside the agent.
    let node = client
        .get(
            ketch_api::resource::lookup("nodes").unwrap(),
            None,
            "bench-node",
        )
        .await
        .unwrap();
    let agent = node["metadata"]["annotations"]["ketch.dev/agent-endpoint"]
        .as_str()
        .expect("the node's agent endpoint")
        .to_string();
    ketch_tls::install_default_provider();
    let http = reqwest::Client::new();
    let agent_sum = async || -> f64 {
        let text = http
            .get(format!("{agent}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(
                    "ketch_agent_container_start_duration_seconds_sum{runtime=\"container\"} ",
                )
            })
            .map_or(0.0, |v| v.trim().parse().unwrap())
    };

    // (a) start latency, ketch and ctr interleaved.
    let first = run("warmup").await;
    println!(
        "first apply→Running (pulls the image into ketch's namespace): {}",
        ms(first)
    );
    let n = 20;
    let (mut ketch, mut ctr_lat, mut inside) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let name = format!("start-{i}");
        let before = agent_sum().await;
        ketch.push(run(&name).await);
        inside.push(Duration::from_secs_f64(agent_sum().await - before));
        client.delete(pods, Some("default"), &name).await.unwrap();
        let t = Instant::now();
        ctr(
            &socket,
            &[
                "run",
                "--rm",
                "--null-io",
                &image,
                &format!("ctr-{i}"),
                "/bin/true",
            ],
        );
        ctr_lat.push(t.elapsed());
    }
    ketch.sort();
    ctr_lat.sort();
    inside.sort();
    println!(
        "apply → Running+Ready, container Pod (image present), {n} runs: p50 {} p99 {}",
        ms(pct(&ketch, 0.5)),
        ms(pct(&ketch, 0.99))
    );
    println!(
        "create → started inside the agent (Pod network, spec, container, task start), {n} runs: p50 {} p99 {}",
        ms(pct(&inside, 0.5)),
        ms(pct(&inside, 0.99))
    );
    println!(
        "ctr run --rm IMAGE /bin/true (create, start, exit, delete), {n} runs: p50 {} p99 {}",
        ms(pct(&ctr_lat, 0.5)),
        ms(pct(&ctr_lat, 0.99))
    );

    // (b) gateway vs direct.
    client
        .create(
            services,
            Some("default"),
            &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "warmup"},
                "spec": {"selector": {"app": "warmup"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
        )
        .await
        .unwrap();
    let p = client.get(pods, Some("default"), "warmup").await.unwrap();
    let ip = p["status"]["podIP"].as_str().unwrap().to_string();
    let nodes = client
        .list(
            ketch_api::resource::lookup("nodes").unwrap(),
            None,
            &Default::default(),
        )
        .await
        .unwrap();
    let gw = nodes["items"][0]["metadata"]["annotations"]["ketch.dev/gateway-endpoint"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_secs(2)).await; // the gateway's table follows the slice
    // The test back end closes every connection, so each request is a new TCP connection
    // from the host to the Pod, whoever sends it; the closed ones sit in TIME_WAIT for 60 s
    // on the same address pair. The gateway runs first so the direct run's leftovers do not
    // slow its connects (the other order was measured at a tenth of the rate).
    println!(
        "through the gateway ({gw}, Host routing): {}",
        wrk(&format!("{gw}/"), Some("warmup.default.ketch.localhost"))
    );
    println!(
        "direct to the container ({ip}:8080): {}",
        wrk(&format!("http://{ip}:8080/"), None)
    );

    // (c) RSS with 100 container Pods.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss_kib(server.pid());
    let replicas = 100;
    let t = Instant::now();
    client
        .create(
            deploys,
            Some("default"),
            &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "many"},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "many"}},
                    "template": {"metadata": {"labels": {"app": "many"}},
                        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "app", "image": image,
                            "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}}}]}}}}),
        )
        .await
        .unwrap();
    let mut up = 0;
    while up < replicas {
        let (app, _) = tokio::time::timeout(Duration::from_secs(300), ready.recv())
            .await
            .expect("progress within 300 s")
            .unwrap();
        if app == "many" {
            up += 1;
        }
    }
    let took = t.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib(server.pid());
    println!(
        "{replicas} container Pods Running after {}; server RSS {} MiB → {} MiB ({:.1} KiB per Pod, agent side only: shims and containers are separate processes)",
        ms(took),
        before / 1024,
        after / 1024,
        (after.saturating_sub(before)) as f64 / f64::from(replicas)
    );

    drop(server);
    let _ = Command::new("ip").args(["link", "del", BRIDGE]).status();
}
