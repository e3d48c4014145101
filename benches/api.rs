//! API/store benchmark: drives a real `ketch server` (release build) over HTTP on loopback
//! and prints the figures BENCHMARKS.md records. Run: `cargo bench --bench api`;
//! `KETCH_BENCH_SERVERS=3` (or 5) runs the same against a cluster of that many servers on
//! loopback, every one durable, with the clients on the leader (the founding server).
//!
//! Figures: create latency with one client (durable), creates/s with 64 clients (group
//! commit), watch delay (write acknowledged → event at a watcher), LIST of 10,000 Pods and
//! the server's RSS holding them. A raw fsync on the same disk is measured as the anchor.

mod support;

use support::{BenchServer, ms, pct, rss_kib};

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn fsync_baseline(dir: &std::path::Path) -> Duration {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).unwrap();
    let mut samples = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        f.write_all(&[0u8; 512]).unwrap();
        f.sync_data().unwrap();
        samples.push(t.elapsed());
    }
    samples.sort();
    pct(&samples, 0.5)
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"nodeName": "bench-node", "containers": [{"name": "app", "image": "file:./hello.wasm",
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}})
}

#[tokio::main]
async fn main() {
    // A real disk (not tmpfs) so durability costs what it costs.
    let server = BenchServer::start(&["--no-agent"]).await;
    let members: usize = std::env::var("KETCH_BENCH_SERVERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut others = Vec::new();
    if members > 1 {
        let addr = server
            .client
            .base_url()
            .trim_start_matches("https://")
            .to_string();
        let token = server.join_token("--join-server");
        let join = ["--no-agent", "--join", &addr, "--token", token.as_str()];
        for _ in 1..members {
            // Each returns once it is a voter.
            others.push(BenchServer::start(&join).await);
        }
    }
    println!("servers: {members} (clients on the leader)");
    let client = server.client.clone();
    let fsync = fsync_baseline(server.dir());
    let cms = ketch_api::resource::lookup("configmaps").unwrap();
    let pods = ketch_api::resource::lookup("pods").unwrap();

    println!(
        "machine: {} cores; fsync (512 B write + fdatasync) p50 {}",
        std::thread::available_parallelism().unwrap(),
        ms(fsync)
    );

    // 1. Create latency, one client.
    let mut lat = Vec::new();
    for i in 0..2000 {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("seq-{i}")}, "data": {"k": "v"}});
        let t = Instant::now();
        client.create(cms, Some("default"), &obj).await.unwrap();
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "create latency, 1 client, 2000 creates: p50 {} p99 {}",
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99))
    );

    // 2. Throughput with 64 concurrent clients.
    let total = 32_000;
    let per = total / 64;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..64 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut lats = Vec::with_capacity(per);
            for i in 0..per {
                let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("par-{w}-{i}")}, "data": {"k": "v"}});
                let t = Instant::now();
                c.create(cms, Some("default"), &obj).await.unwrap();
                lats.push(t.elapsed());
            }
            lats
        }));
    }
    let mut lats = Vec::new();
    for task in tasks {
        lats.extend(task.await.unwrap());
    }
    let secs = t.elapsed().as_secs_f64();
    lats.sort();
    println!(
        "creates/s, 64 clients, {total} creates: {:.0}/s (latency p50 {} p99 {})",
        total as f64 / secs,
        ms(pct(&lats, 0.5)),
        ms(pct(&lats, 0.99))
    );

    // 3. Watch delay: acknowledged → received.
    let from = support::head_rv(&client, cms).await;
    let mut resp = client
        .watch_once(
            cms,
            Some("default"),
            &ketch_client::ListParams {
                label_selector: Some("w=1".into()),
                ..Default::default()
            },
            Some(&from),
        )
        .await
        .unwrap();
    let acks: Arc<std::sync::Mutex<Vec<Instant>>> = Arc::default();
    let n = 1000;
    let writer = {
        let (c, acks) = (client.clone(), acks.clone());
        tokio::spawn(async move {
            for i in 0..n {
                let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("watch-{i}"), "labels": {"w": "1"}}});
                c.create(cms, Some("default"), &obj).await.unwrap();
                acks.lock().unwrap().push(Instant::now());
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let mut received = Vec::new();
    let mut buf = Vec::new();
    while received.len() < n {
        let chunk = resp.chunk().await.unwrap().unwrap();
        let now = Instant::now();
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let ev: Value = serde_json::from_slice(&line).unwrap();
            if ev["type"] == "ADDED" {
                received.push(now);
            }
        }
    }
    writer.await.unwrap();
    let acks = acks.lock().unwrap().clone();
    // An event may arrive before the writer sees its HTTP response: that counts as 0.
    let mut delays: Vec<Duration> = received
        .iter()
        .zip(acks.iter())
        .map(|(r, a)| r.saturating_duration_since(*a))
        .collect();
    delays.sort();
    println!(
        "watch delay (ack → event), {n} writes: p50 {} p99 {}",
        ms(pct(&delays, 0.5)),
        ms(pct(&delays, 0.99))
    );

    // 4. 10,000 Pods: LIST latency and server RSS.
    let rss_before = rss_kib(server.pid());
    let mut tasks = Vec::new();
    for w in 0..32 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..(10_000 / 32 + 1) {
                let idx = w * (10_000 / 32 + 1) + i;
                if idx >= 10_000 {
                    break;
                }
                c.create(pods, Some("default"), &pod(&format!("pod-{idx}")))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut lat = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let list = client
            .list(pods, Some("default"), &Default::default())
            .await
            .unwrap();
        lat.push(t.elapsed());
        assert_eq!(list["items"].as_array().unwrap().len(), 10_000);
    }
    lat.sort();
    let rss = rss_kib(server.pid());
    println!(
        "LIST 10,000 Pods (client-side, incl. JSON decode), 20 runs: p50 {} p99 {}; server RSS {} MiB (before the Pods: {} MiB; 34,000 ConfigMaps also stored)",
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99)),
        rss / 1024,
        rss_before / 1024
    );
    let size =
        |f: &str| std::fs::metadata(server.dir().join("data").join(f)).map_or(0, |m| m.len());
    println!(
        "store files: raft.redb (state machine) {} MiB, log.redb {} MiB",
        size("raft.redb") >> 20,
        size("log.redb") >> 20
    );
    drop(others);
}
