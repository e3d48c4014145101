//! Workload benchmark: drives a real all-in-one `ketch server` (API, scheduler, controllers
//! and a node agent in one process; release build) and prints apply→Running latency for a
//! 1-replica Deployment of the HELLO guest, and the server's RSS holding 1,000 running Wasm
//! Pods. Run: `cargo bench --bench workloads`.

mod support;

use support::{BenchServer, create_and_wait_ready, head_rv, ms, pct, rss_kib, watch_ready};

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const HELLO: &str = ketch_test_guests::HELLO;

fn deployment(name: &str, replicas: u32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": format!("file:{HELLO}")}]}}}})
}

#[tokio::main]
async fn main() {
    let server =
        BenchServer::start(&["--name", "bench-node", "--max-wasm-instances", "2000"]).await;
    let client = server.client.clone();
    let deploys = ketch_api::resource::lookup("deployments").unwrap();
    let nodes = ketch_api::resource::lookup("nodes").unwrap();
    let pods = ketch_api::resource::lookup("pods").unwrap();

    // Wait for the agent's Node to be Ready.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = client.list(nodes, None, &Default::default()).await.unwrap();
        let ready = list["items"].as_array().is_some_and(|ns| {
            ns.iter().any(|n| {
                n["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
        });
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "node did not become Ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "machine: {} cores (server, agent and this load generator share them)",
        std::thread::available_parallelism().unwrap()
    );

    let from = head_rv(&client, pods).await;
    let mut ready = watch_ready(client.clone(), from);

    // (a) apply → Running+Ready, one 1-replica Deployment at a time.
    let mut run = async |name: &str| -> Duration {
        create_and_wait_ready(
            &client,
            &mut ready,
            deploys,
            &deployment(name, 1),
            name,
            Duration::from_secs(60),
        )
        .await
    };
    let first = run("warmup").await;
    println!(
        "first apply→Running (cold: the agent compiles HELLO): {}",
        ms(first)
    );
    let n = 20;
    let mut lat = Vec::new();
    for i in 0..n {
        lat.push(run(&format!("apply-{i}")).await);
    }
    lat.sort();
    println!(
        "apply→Running+Ready, 1-replica Deployment, {n} runs (artifact cached): p50 {} p99 {} min {} max {}",
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99)),
        ms(lat[0]),
        ms(lat[n - 1])
    );

    // (b) one Deployment scaled 1 → 1,000 replicas: time to all Running, RSS before/after.
    let name = "mem";
    let t = Instant::now();
    client
        .create(deploys, Some("default"), &deployment(name, 1))
        .await
        .unwrap();
    let mut counts: HashMap<String, usize> = HashMap::new();
    while counts.get(name).copied().unwrap_or(0) < 1 {
        let (app, _) = ready.recv().await.unwrap();
        *counts.entry(app).or_default() += 1;
    }
    println!(
        "mem deployment with 1 replica Running after {}",
        ms(t.elapsed())
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = server.pid();
    let before = rss_kib(pid);
    let replicas = 1000;
    let t = Instant::now();
    client
        .merge_patch(
            deploys,
            Some("default"),
            name,
            &json!({"spec": {"replicas": replicas}}),
            false,
        )
        .await
        .unwrap();
    let mut last_print = Instant::now();
    while counts.get(name).copied().unwrap_or(0) < replicas {
        match tokio::time::timeout(Duration::from_secs(120), ready.recv()).await {
            Ok(Some((app, _))) => *counts.entry(app).or_default() += 1,
            _ => panic!(
                "stalled at {} Running after {:?}",
                counts.get(name).copied().unwrap_or(0),
                t.elapsed()
            ),
        }
        if last_print.elapsed() > Duration::from_secs(5) {
            println!(
                "  … {} Running after {:.1} s",
                counts[name],
                t.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
    }
    let scale = t.elapsed();
    let after_immediate = rss_kib(pid);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = rss_kib(pid);
    println!(
        "scale 1→{replicas} replicas: all Running+Ready after {:.2} s ({:.0} pods/s)",
        scale.as_secs_f64(),
        (replicas - 1) as f64 / scale.as_secs_f64()
    );
    println!(
        "server RSS (API + store + scheduler + controllers + agent, one process): before {} MiB, at 1,000 Running {} MiB, 5 s later {} MiB; per Pod {:.1} KiB ({} other Running Pods also present)",
        before / 1024,
        after_immediate / 1024,
        after / 1024,
        (after as f64 - before as f64) / (replicas - 1) as f64,
        n + 1
    );
}
