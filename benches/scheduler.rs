//! Scheduler benchmark with hollow nodes: a real control-plane-only `ketch server --no-agent`
//! (release build); this process plays 5,000 nodes (Node objects with Ready status, a Lease
//! heartbeat per node every 10 s, and a hollow kubelet that marks each bound Pod Running),
//! then creates Pods with 64 concurrent clients and measures how fast they are bound.
//! Run: `cargo bench --bench scheduler`. Sizes: `KETCH_BENCH_NODES` (5000),
//! `KETCH_BENCH_PODS` (50000), `KETCH_BENCH_TIMEOUT_S` (600, for binding all Pods).

mod support;

use support::{BenchServer, ms, pct, rss_kib};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use ketch_client::{Event, ListParams};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

const CONCURRENCY: usize = 64;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn now_micro() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Runs `f(i)` for i in 0..n with `CONCURRENCY` workers.
async fn par<F, Fut>(n: usize, f: F)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (f, next) = (f.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= n {
                    break;
                }
                f(i).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

fn node_name(i: usize) -> String {
    format!("hollow-{i:05}")
}

#[tokio::main]
async fn main() {
    let n_nodes = env_usize("KETCH_BENCH_NODES", 5000);
    let n_pods = env_usize("KETCH_BENCH_PODS", 50_000);
    let timeout = Duration::from_secs(env_usize("KETCH_BENCH_TIMEOUT_S", 600) as u64);

    let server = BenchServer::start(&["--no-agent"]).await;
    let client = server.client.clone();
    let nodes = ketch_api::resource::lookup("nodes").unwrap();
    let pods = ketch_api::resource::lookup("pods").unwrap();
    let leases = ketch_api::resource::lookup("leases").unwrap();
    let namespaces = ketch_api::resource::lookup("namespaces").unwrap();
    println!(
        "machine: {} cores (server and this load generator share them); {n_nodes} hollow nodes, {n_pods} pods",
        std::thread::available_parallelism().unwrap()
    );

    // Hollow nodes: Node, then its status, then its Lease.
    match client
        .create(
            namespaces,
            None,
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-node-lease"}}),
        )
        .await
    {
        Ok(_) => {}
        Err(e) if e.code() == Some(409) => {}
        Err(e) => panic!("creating kube-node-lease: {e}"),
    }
    let t = Instant::now();
    {
        let c = client.clone();
        par(n_nodes, move |i| {
            let c = c.clone();
            async move {
                let name = node_name(i);
                let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name,
                    "labels": {"kubernetes.io/hostname": name}}});
                c.create(nodes, None, &node).await.unwrap();
                let t = now_rfc3339();
                let res = json!({"cpu": "64", "memory": "256Gi", "pods": "1100",
                    "ketch.dev/wasm-instances": "1000"});
                let status = json!({"status": {"capacity": res, "allocatable": res,
                    "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": t,
                        "lastTransitionTime": t, "reason": "HollowNodeReady"}],
                    "runtimeHandlers": [{"name": "wasm"}]}});
                c.merge_patch(nodes, None, &name, &status, true)
                    .await
                    .unwrap();
                let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name, "namespace": "kube-node-lease"},
                    "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                        "renewTime": now_micro()}});
                c.create(leases, Some("kube-node-lease"), &lease)
                    .await
                    .unwrap();
            }
        })
        .await;
    }
    println!(
        "registered {n_nodes} hollow nodes (create + status + lease = 3 writes each) in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Heartbeat: each node's Lease renewed every 10 s, spread evenly.
    let hb_ok = Arc::new(AtomicU64::new(0));
    let hb_err = Arc::new(AtomicU64::new(0));
    let hb_lat: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let heartbeat = {
        let (c, ok, err, lat) = (
            client.clone(),
            hb_ok.clone(),
            hb_err.clone(),
            hb_lat.clone(),
        );
        tokio::spawn(async move {
            let sem = Arc::new(Semaphore::new(CONCURRENCY));
            let period = Duration::from_secs(10) / u32::try_from(n_nodes).unwrap();
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut i = 0usize;
            loop {
                tick.tick().await;
                let name = node_name(i % n_nodes);
                i += 1;
                let permit = sem.clone().acquire_owned().await.unwrap();
                let (c, ok, err, lat) = (c.clone(), ok.clone(), err.clone(), lat.clone());
                tokio::spawn(async move {
                    let t = Instant::now();
                    let patch = json!({"spec": {"renewTime": now_micro(), "holderIdentity": name}});
                    match c
                        .merge_patch(leases, Some("kube-node-lease"), &name, &patch, false)
                        .await
                    {
                        Ok(_) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            lat.lock().unwrap().push(t.elapsed());
                        }
                        Err(_) => {
                            err.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    drop(permit);
                });
            }
        })
    };

    // Hollow kubelet + bind recorder: one watcher over all pods.
    let head = client.list(pods, None, &Default::default()).await.unwrap();
    let from = head["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let bound: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let running = Arc::new(AtomicU64::new(0));
    let kubelet_err = Arc::new(AtomicU64::new(0));
    let watch = {
        let (c, bound, running, kerr) = (
            client.clone(),
            bound.clone(),
            running.clone(),
            kubelet_err.clone(),
        );
        tokio::spawn(async move {
            let stream = ketch_client::watcher::<Value>(
                c.clone(),
                pods,
                None,
                ListParams::default(),
                Some(from),
            );
            futures_util::pin_mut!(stream);
            let sem = Arc::new(Semaphore::new(CONCURRENCY));
            while let Some(ev) = stream.next().await {
                let now = Instant::now();
                let p = match ev {
                    Ok(Event::Added(p) | Event::Modified(p)) => p,
                    Ok(Event::Restarted(_) | Event::Deleted(_)) => continue,
                    Err(e) => {
                        eprintln!("watch error: {e}");
                        continue;
                    }
                };
                if p["spec"]["nodeName"].as_str().is_none() {
                    continue;
                }
                let name = p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let ns = p["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("default")
                    .to_string();
                let first = {
                    let mut b = bound.lock().unwrap();
                    if b.contains_key(&name) {
                        false
                    } else {
                        b.insert(name.clone(), now);
                        true
                    }
                };
                if !first {
                    continue;
                }
                let permit = sem.clone().acquire_owned().await.unwrap();
                let (c, running, kerr) = (c.clone(), running.clone(), kerr.clone());
                tokio::spawn(async move {
                    let t = now_rfc3339();
                    let status = json!({"status": {"phase": "Running", "startTime": t,
                        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": t}]}});
                    match c.merge_patch(pods, Some(&ns), &name, &status, true).await {
                        Ok(_) => running.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            if kerr.fetch_add(1, Ordering::Relaxed) < 3 {
                                eprintln!("hollow kubelet status write failed: {e}");
                            }
                            0
                        }
                    };
                    drop(permit);
                });
            }
        })
    };

    // Pods: 64 concurrent creators; record each create-ack.
    let acks: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let hb_before = hb_ok.load(Ordering::Relaxed);
    let start = Instant::now();
    let creators = {
        let (c, acks) = (client.clone(), acks.clone());
        tokio::spawn(par(n_pods, move |i| {
            let (c, acks) = (c.clone(), acks.clone());
            async move {
                let name = format!("pod-{i:06}");
                let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                    "spec": {"containers": [{"name": "app", "image": "file:/x.wasm",
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}});
                c.create(pods, Some("default"), &pod).await.unwrap();
                acks.lock().unwrap().insert(name, Instant::now());
            }
        }))
    };
    let mut last = Instant::now();
    let mut timed_out = false;
    loop {
        let b = bound.lock().unwrap().len();
        if b >= n_pods {
            break;
        }
        if start.elapsed() > timeout {
            timed_out = true;
            break;
        }
        if last.elapsed() >= Duration::from_secs(5) {
            println!(
                "  … {:.0} s: {} created, {b} bound, {} running",
                start.elapsed().as_secs_f64(),
                acks.lock().unwrap().len(),
                running.load(Ordering::Relaxed)
            );
            last = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall = start.elapsed();
    if !timed_out {
        creators.await.unwrap();
    }
    let hb_during = hb_ok.load(Ordering::Relaxed) - hb_before;
    // Let the hollow kubelet finish its status writes (not part of the binding figure).
    let t = Instant::now();
    while (running.load(Ordering::Relaxed) + kubelet_err.load(Ordering::Relaxed))
        < bound.lock().unwrap().len() as u64
        && t.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    heartbeat.abort();
    watch.abort();

    let acks = acks.lock().unwrap().clone();
    let bound = bound.lock().unwrap().clone();
    let first_ack = acks.values().min().copied().unwrap_or(start);
    let mut bound_times: Vec<Instant> = bound.values().copied().collect();
    bound_times.sort();
    let last_bound = bound_times.last().copied().unwrap_or(start);
    let window = last_bound.saturating_duration_since(first_ack);
    let mut lat: Vec<Duration> = bound
        .iter()
        .filter_map(|(name, b)| acks.get(name).map(|a| b.saturating_duration_since(*a)))
        .collect();
    lat.sort();
    let early = lat.iter().filter(|d| d.is_zero()).count();
    let nb = bound_times.len();
    let (lo, hi) = (nb / 10, nb * 9 / 10);
    let steady = if hi > lo + 1 {
        (hi - lo) as f64
            / bound_times[hi - 1]
                .duration_since(bound_times[lo])
                .as_secs_f64()
    } else {
        0.0
    };
    let mut hb = hb_lat.lock().unwrap().clone();
    hb.sort();
    println!(
        "{}pods created {} / bound {} / marked Running {} (hollow kubelet errors {}); total {:.2} s from start of creates",
        if timed_out { "TIMED OUT: " } else { "" },
        acks.len(),
        nb,
        running.load(Ordering::Relaxed),
        kubelet_err.load(Ordering::Relaxed),
        wall.as_secs_f64()
    );
    println!(
        "bound/s over first create-ack → last bind ({:.2} s): {:.0}/s; steady state (10th→90th percentile of binds): {:.0}/s",
        window.as_secs_f64(),
        nb as f64 / window.as_secs_f64(),
        steady
    );
    println!(
        "created→bound (create-ack → bind seen on the watch), {} pods: p50 {} p99 {} max {} ({} binds seen before their create-ack, counted as 0)",
        lat.len(),
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99)),
        ms(lat.last().copied().unwrap_or_default()),
        early
    );
    println!(
        "lease heartbeats during the run: {hb_during} ok ({:.0}/s), {} errors total; heartbeat latency p50 {} p99 {}",
        hb_during as f64 / wall.as_secs_f64(),
        hb_err.load(Ordering::Relaxed),
        ms(pct(&hb, 0.5)),
        ms(pct(&hb, 0.99))
    );
    println!(
        "server RSS at the end: {} MiB",
        rss_kib(server.pid()) / 1024
    );
}
