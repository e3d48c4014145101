//! Scheduler benchmark with hollow nodes: a real control-plane-only `ketch server --no-agent`
//! (release build); this process plays 5,000 nodes (Node objects with Ready status, a Lease
//! renewal per node every 10 s, a heartbeat to the leader per node at the interval it gives
//! (`KETCH_BENCH_NO_BEATS=1`: none), and a hollow kubelet that marks each bound Pod Running),
//! then creates Pods with 64 concurrent clients (`KETCH_BENCH_CLIENTS`) and measures how
//! fast they are bound.
//! First, as a reference, it times the scheduler's placement alone (in process, no IO) for
//! the same nodes and Pods.
//! Run: `cargo bench --bench scheduler`. Sizes: `KETCH_BENCH_NODES` (5000),
//! `KETCH_BENCH_PODS` (50000), `KETCH_BENCH_TIMEOUT_S` (600, for binding all Pods);
//! `KETCH_BENCH_NO_RUNNING=1` leaves out the hollow kubelet's status writes (a diagnostic).
//! `KETCH_BENCH_PLACEMENT_ONLY=1` stops after the in-process placement figures (an A/B of the
//! scheduler's own cost, without a server). The bench's Pods are bare (no controller owner),
//! so default spreading does not apply to them; the in-process figures also place the same
//! Pods as replicas of ReplicaSets of [`REPLICAS_PER_OWNER`] each, which it does apply to.
//! `KETCH_BENCH_OWNED=1` does that in the server run too: every [`REPLICAS_PER_OWNER`] Pods
//! have one controller owner, a ConfigMap made for it (an owner the garbage collector finds
//! alive and no controller acts on, so the Pods are the bench's alone).
//!
//! `KETCH_BENCH_BACKLOG=1` measures the scheduler draining a backlog instead, as
//! kube-scheduler's scheduler_perf does with pods already pending: the nodes register with
//! a `NoSchedule` taint, every Pod is created (and parked as unschedulable), then the taint
//! is removed from every node and the clock runs from the first removal to the last bind.
//! The default mode's figure is bounded by how fast 64 clients get Pods into the store;
//! this one by how fast the scheduler places and binds them.

mod support;

use support::{BenchServer, cpu_seconds, ms, pct, rss_kib};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use ketch_api::time::{now, now_micro};
use ketch_client::{Event, ListParams};
use ketch_control::scheduler::NodesToScore;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

/// The load generator shares the two cores with the server it measures, so it uses the same
/// allocator as the `ketch` binary: with glibc's malloc, allocation was ~20 % of its CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Concurrent clients of each kind (creators, hollow kubelet writes, heartbeats):
/// `KETCH_BENCH_CLIENTS`, default 64.
fn concurrency() -> usize {
    env_usize("KETCH_BENCH_CLIENTS", 64)
}

/// `KETCH_BENCH_NO_RUNNING=1`: the hollow kubelet writes no Running status. A diagnostic of
/// what those writes cost the server, not the setup (its hollow nodes report Pods
/// Running).
fn no_running() -> bool {
    std::env::var_os("KETCH_BENCH_NO_RUNNING").is_some()
}

/// The taint the nodes register with in backlog mode (removed to start the drain).
const HOLD_TAINT: &str = "bench.ketch.dev/hold";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `f(node name)` for every hollow node once per `every`, spread evenly over it, at
/// most [`concurrency`] at a time, until aborted.
fn each_node_every<F, Fut>(n_nodes: usize, every: Duration, f: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let sem = Arc::new(Semaphore::new(concurrency()));
        let period = every / u32::try_from(n_nodes).unwrap();
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut i = 0usize;
        loop {
            tick.tick().await;
            let name = node_name(i % n_nodes);
            i += 1;
            let permit = sem.clone().acquire_owned().await.unwrap();
            let work = f(name);
            tokio::spawn(async move {
                work.await;
                drop(permit);
            });
        }
    })
}

/// Runs `f(i)` for i in 0..n with [`concurrency`] workers.
async fn par<F, Fut>(n: usize, f: F)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency() {
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

/// The hollow kubelet's view of a Pod: only what it reads. Decoding this instead of a whole
/// JSON tree keeps the load generator's CPU (which shares the cores with the server) low.
#[derive(serde::Deserialize)]
struct PodView {
    metadata: MetaView,
    #[serde(default)]
    spec: SpecView,
}

#[derive(serde::Deserialize)]
struct MetaView {
    name: String,
    namespace: Option<String>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SpecView {
    node_name: Option<String>,
}

fn node_name(i: usize) -> String {
    format!("hollow-{i:05}")
}

/// What every hollow node offers.
fn node_resources() -> Value {
    json!({"cpu": "64", "memory": "256Gi", "pods": "1100", "ketch.dev/wasm-instances": "1000"})
}

/// Replicas per ReplicaSet in the in-process figure for owned Pods.
const REPLICAS_PER_OWNER: usize = 50;

fn pod_json(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("pod-{i:06}"), "namespace": "default"},
        "spec": {"containers": [{"name": "app", "image": "file:/x.wasm",
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}})
}

/// Makes `pod` one of its owner's replicas: `owner` is `(apiVersion, kind, name, uid)`.
fn owned_by(pod: &mut Value, owner: (&str, &str, &str, &str)) {
    let (api_version, kind, name, uid) = owner;
    pod["metadata"]["ownerReferences"] = json!([{"apiVersion": api_version, "kind": kind,
        "name": name, "uid": uid, "controller": true}]);
}

/// The scheduler's own work without any IO: places the benchmark's Pods onto its nodes
/// through the scheduler's cache, as the scheduler loop does (place against the snapshot,
/// then assume the placement). Returns the time taken and how many Pods found a node.
fn placement_only(
    n_nodes: usize,
    n_pods: usize,
    nodes_to_score: NodesToScore,
    owned: bool,
) -> (Duration, usize) {
    use ketch_api::core::{Node, Pod};
    use ketch_control::scheduler::cache::SchedulerCache;
    use ketch_control::scheduler::{NodeInfo, Placement, Profile};

    let mut cache = SchedulerCache::new();
    for i in 0..n_nodes {
        let node: Node = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node_name(i)},
            "status": {"allocatable": node_resources(),
                "conditions": [{"type": "Ready", "status": "True"}],
                "runtimeHandlers": [{"name": "wasm"}]}}))
        .unwrap();
        cache.set_node(NodeInfo::from_node(&node));
    }
    let pods: Vec<Pod> = (0..n_pods)
        .map(|i| {
            let mut pod = pod_json(i);
            if owned {
                let rs = i / REPLICAS_PER_OWNER;
                let (name, uid) = (format!("rs-{rs}"), format!("uid-{rs}"));
                owned_by(&mut pod, ("apps/v1", "ReplicaSet", &name, &uid));
            }
            serde_json::from_value(pod).unwrap()
        })
        .collect();
    let t = Instant::now();
    let profile = Profile {
        nodes_to_score,
        ..Profile::default()
    };
    let mut placed = 0;
    for p in &pods {
        let key = format!("default/{}", p.metadata.name());
        if let Placement::Bind(_) = cache.place(&key, p, profile) {
            placed += 1;
        }
    }
    (t.elapsed(), placed)
}

// One thread: the load generator needs ~0.4 of a core, and on a multi-threaded runtime it spent
// more of it waking its own threads (0.43–0.45 cores against 0.37–0.38 here).
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n_nodes = env_usize("KETCH_BENCH_NODES", 5000);
    let n_pods = env_usize("KETCH_BENCH_PODS", 50_000);
    let backlog = env_usize("KETCH_BENCH_BACKLOG", 0) == 1;
    let timeout = Duration::from_secs(env_usize("KETCH_BENCH_TIMEOUT_S", 600) as u64);

    // The server runs with the default (adaptive) sampling; every-node placement is the
    // reference.
    let owned_label = format!("replicas of ReplicaSets of {REPLICAS_PER_OWNER}, adaptive sampling");
    for (label, nodes_to_score, owned) in [
        (
            "adaptive sampling, the default",
            NodesToScore::ADAPTIVE,
            false,
        ),
        ("every node", NodesToScore::ALL, false),
        (owned_label.as_str(), NodesToScore::ADAPTIVE, true),
    ] {
        let (took, placed) = placement_only(n_nodes, n_pods, nodes_to_score, owned);
        println!(
            "placement alone (in process, no IO, {label}): {placed} of {n_pods} pods onto {n_nodes} nodes in {:.0} ms: {:.0} pods/s, {:.1} µs per pod",
            took.as_secs_f64() * 1e3,
            n_pods as f64 / took.as_secs_f64(),
            took.as_secs_f64() * 1e6 / n_pods as f64
        );
    }

    if std::env::var_os("KETCH_BENCH_PLACEMENT_ONLY").is_some() {
        return;
    }
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
                let mut node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name,
                    "labels": {"kubernetes.io/hostname": name}}});
                if backlog {
                    node["spec"] = json!({"taints": [{"key": HOLD_TAINT, "effect": "NoSchedule"}]});
                }
                c.create(nodes, None, &node).await.unwrap();
                let t = now();
                let res = node_resources();
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
        each_node_every(n_nodes, Duration::from_secs(10), move |name| {
            let (c, ok, err, lat) = (c.clone(), ok.clone(), err.clone(), lat.clone());
            async move {
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
            }
        })
    };

    // Node heartbeats to the leader (in its memory, no store write), at the interval its
    // first answer gives (it grows with the cluster: 5 s at 5,000 nodes, so 1,000/s), spread
    // evenly. KETCH_BENCH_NO_BEATS=1 leaves them out (the nodes are then judged by their
    // Leases, as older agents are).
    let beat_ok = Arc::new(AtomicU64::new(0));
    let beat_err = Arc::new(AtomicU64::new(0));
    let beats = if std::env::var_os("KETCH_BENCH_NO_BEATS").is_some() {
        None
    } else {
        // One round first, as agents joining do: the interval the leader gives depends on
        // how many nodes beat.
        let c = client.clone();
        par(n_nodes, move |i| {
            let c = c.clone();
            async move {
                c.node_heartbeat(&node_name(i)).await.unwrap();
            }
        })
        .await;
        let last = client.node_heartbeat(&node_name(0)).await.unwrap();
        let every = Duration::from_millis(last.interval_millis);
        println!(
            "node heartbeats: every {every:?} per node ({:.0}/s for {n_nodes} nodes)",
            n_nodes as f64 / every.as_secs_f64()
        );
        let (c, ok, err) = (client.clone(), beat_ok.clone(), beat_err.clone());
        Some(each_node_every(n_nodes, every, move |name| {
            let (c, ok, err) = (c.clone(), ok.clone(), err.clone());
            async move {
                match c.node_heartbeat(&name).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => err.fetch_add(1, Ordering::Relaxed),
                };
            }
        }))
    };

    // Bind recorder: one watcher over all pods. It only records and hands each newly bound
    // pod to the hollow kubelet, so the kubelet's writes never hold back the observation of a
    // binding.
    let head = client.list(pods, None, &Default::default()).await.unwrap();
    let from = head["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let bound: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let running = Arc::new(AtomicU64::new(0));
    let kubelet_err = Arc::new(AtomicU64::new(0));
    let (to_kubelet, kubelet_rx) = tokio::sync::mpsc::unbounded_channel::<(String, String)>();
    let watch = {
        let (c, bound) = (client.clone(), bound.clone());
        tokio::spawn(async move {
            let stream = ketch_client::watcher::<PodView>(
                c.clone(),
                pods,
                None,
                ListParams::default(),
                Some(from),
            );
            futures_util::pin_mut!(stream);
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
                if p.spec.node_name.is_none() {
                    continue;
                }
                let name = p.metadata.name;
                let ns = p.metadata.namespace.unwrap_or_else(|| "default".into());
                let first = {
                    let mut b = bound.lock().unwrap();
                    if b.contains_key(&name) {
                        false
                    } else {
                        b.insert(name.clone(), now);
                        true
                    }
                };
                if first {
                    let _ = to_kubelet.send((ns, name));
                }
            }
        })
    };
    // Hollow kubelet: marks each bound pod Running+Ready, `concurrency()` writes at a time.
    let kubelet = {
        let (c, running, kerr) = (client.clone(), running.clone(), kubelet_err.clone());
        let queue = futures_util::stream::unfold(kubelet_rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        tokio::spawn(queue.for_each_concurrent(concurrency(), move |(ns, name)| {
            let (c, running, kerr) = (c.clone(), running.clone(), kerr.clone());
            async move {
                let t = now();
                let status = json!({"status": {"phase": "Running", "startTime": t,
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": t}]}});
                if no_running() {
                    return;
                }
                match c.merge_patch(pods, Some(&ns), &name, &status, true).await {
                    Ok(_) => {
                        running.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if kerr.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("hollow kubelet status write failed: {e}");
                        }
                    }
                }
            }
        }))
    };

    // KETCH_BENCH_OWNED=1: the owners, made before the clock starts.
    let owners: Arc<Vec<String>> = if std::env::var_os("KETCH_BENCH_OWNED").is_some() {
        let n = n_pods.div_ceil(REPLICAS_PER_OWNER);
        let uids: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(vec![String::new(); n]));
        let configmaps = ketch_api::resource::lookup("configmaps").unwrap();
        let (c, u) = (client.clone(), uids.clone());
        par(n, move |i| {
            let (c, u) = (c.clone(), u.clone());
            async move {
                let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": format!("owner-{i}"), "namespace": "default"}});
                let made = c.create(configmaps, Some("default"), &cm).await.unwrap();
                u.lock().unwrap()[i] = made["metadata"]["uid"].as_str().unwrap().to_string();
            }
        })
        .await;
        println!("owned: {n} owners of {REPLICAS_PER_OWNER} Pods each (default spreading applies)");
        let uids = std::mem::take(&mut *uids.lock().unwrap());
        Arc::new(uids)
    } else {
        Arc::default()
    };

    // Pods: `concurrency()` creators; record each create-ack.
    let acks: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut hb_before = hb_ok.load(Ordering::Relaxed);
    let mut beats_before = beat_ok.load(Ordering::Relaxed);
    let mut start = Instant::now();
    let creators = {
        let (c, acks, owners) = (client.clone(), acks.clone(), owners.clone());
        tokio::spawn(par(n_pods, move |i| {
            let (c, acks, owners) = (c.clone(), acks.clone(), owners.clone());
            async move {
                let mut pod = pod_json(i);
                if let Some(uid) = owners.get(i / REPLICAS_PER_OWNER) {
                    let name = format!("owner-{}", i / REPLICAS_PER_OWNER);
                    owned_by(&mut pod, ("v1", "ConfigMap", &name, uid));
                }
                let name = pod["metadata"]["name"].as_str().unwrap().to_string();
                c.create(pods, Some("default"), &pod).await.unwrap();
                acks.lock().unwrap().insert(name, Instant::now());
            }
        }))
    };
    let mut release = None;
    if backlog {
        // Every Pod in the store (and parked: no node tolerates the taint) before the clock.
        let t = Instant::now();
        while acks.lock().unwrap().len() < n_pods {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!(
            "backlog: {n_pods} pods created in {:.1} s, {} bound (expected 0); releasing the {n_nodes} nodes",
            t.elapsed().as_secs_f64(),
            bound.lock().unwrap().len()
        );
        hb_before = hb_ok.load(Ordering::Relaxed);
        beats_before = beat_ok.load(Ordering::Relaxed);
        start = Instant::now();
        let c = client.clone();
        release = Some(tokio::spawn(par(n_nodes, move |i| {
            let c = c.clone();
            async move {
                let patch = json!({"spec": {"taints": null}});
                c.merge_patch(nodes, None, &node_name(i), &patch, false)
                    .await
                    .unwrap();
            }
        })));
    }
    // CPU of the server and of this process (the load generator) over the measured run.
    let me = std::process::id();
    let cpu_start = (cpu_seconds(server.pid()), cpu_seconds(me));
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
    let running_at_last_bind = running.load(Ordering::Relaxed);
    let cpu = (
        cpu_seconds(server.pid()) - cpu_start.0,
        cpu_seconds(me) - cpu_start.1,
    );
    if !timed_out {
        creators.await.unwrap();
        if let Some(r) = release {
            r.await.unwrap();
        }
    }
    let hb_during = hb_ok.load(Ordering::Relaxed) - hb_before;
    let beats_during = beat_ok.load(Ordering::Relaxed) - beats_before;
    // Let the hollow kubelet finish its status writes. When it lags, part of every Pod's work
    // falls after the binding window, so the run also reports the window that ends with the
    // last Running write: the rate the whole cycle keeps up with.
    let t = Instant::now();
    while !no_running()
        && (running.load(Ordering::Relaxed) + kubelet_err.load(Ordering::Relaxed))
            < bound.lock().unwrap().len() as u64
        && t.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all_running = (Instant::now(), cpu_seconds(server.pid()) - cpu_start.0);
    heartbeat.abort();
    if let Some(b) = beats {
        b.abort();
    }
    watch.abort();
    kubelet.abort();

    let acks = acks.lock().unwrap().clone();
    let bound = bound.lock().unwrap().clone();
    // The clock starts at the first create-ack, or (backlog) at the first taint removal.
    let first_ack = if backlog {
        start
    } else {
        acks.values().min().copied().unwrap_or(start)
    };
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
        "{}pods created {} / bound {} / marked Running {} (hollow kubelet errors {}{}); total {:.2} s from start of creates",
        if timed_out { "TIMED OUT: " } else { "" },
        acks.len(),
        nb,
        running.load(Ordering::Relaxed),
        kubelet_err.load(Ordering::Relaxed),
        if no_running() {
            "; KETCH_BENCH_NO_RUNNING: the hollow kubelet wrote no status"
        } else {
            ""
        },
        wall.as_secs_f64()
    );
    println!(
        "bound/s over {} → last bind ({:.2} s): {:.0}/s; steady state (10th→90th percentile of binds): {:.0}/s",
        if backlog {
            "the first taint removal"
        } else {
            "first create-ack"
        },
        window.as_secs_f64(),
        nb as f64 / window.as_secs_f64(),
        steady
    );
    // In backlog mode every Pod waited for the release on purpose: no latency figure.
    if !backlog {
        println!(
            "created→bound (create-ack → bind seen on the watch), {} pods: p50 {} p99 {} max {} ({} binds seen before their create-ack, counted as 0)",
            lat.len(),
            ms(pct(&lat, 0.5)),
            ms(pct(&lat, 0.99)),
            ms(lat.last().copied().unwrap_or_default()),
            early
        );
    }
    println!(
        "CPU over those {:.2} s: server {:.2} cores ({:.0} µs per bound pod, including its share of the Running writes and Lease renewals), this load generator {:.2} cores",
        wall.as_secs_f64(),
        cpu.0 / wall.as_secs_f64(),
        cpu.0 * 1e6 / nb.max(1) as f64,
        cpu.1 / wall.as_secs_f64()
    );
    let n_running = running.load(Ordering::Relaxed);
    if !no_running() && !timed_out && n_running == nb as u64 {
        let whole = all_running
            .0
            .saturating_duration_since(first_ack)
            .as_secs_f64();
        println!(
            "bound and marked Running: the last Running write {:.2} s after the first create-ack → {:.0} Pods/s; server CPU over that window {:.0} µs per Pod ({} Running writes were still queued when the last Pod was bound)",
            whole,
            nb as f64 / whole,
            all_running.1 * 1e6 / nb.max(1) as f64,
            nb as u64 - running_at_last_bind
        );
    }
    println!(
        "lease heartbeats during the run: {hb_during} ok ({:.0}/s), {} errors total; heartbeat latency p50 {} p99 {}",
        hb_during as f64 / wall.as_secs_f64(),
        hb_err.load(Ordering::Relaxed),
        ms(pct(&hb, 0.5)),
        ms(pct(&hb, 0.99))
    );
    println!(
        "node heartbeats during the run: {beats_during} ok ({:.0}/s), {} errors total",
        beats_during as f64 / wall.as_secs_f64(),
        beat_err.load(Ordering::Relaxed)
    );
    // Every hollow node stays alive for the node lifecycle: none may be found silent.
    let nodes_now = client.list(nodes, None, &Default::default()).await.unwrap();
    let not_ready = nodes_now["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| {
            !n["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .count();
    println!("nodes not Ready at the end: {not_ready}");
    println!(
        "server RSS at the end: {} MiB",
        rss_kib(server.pid()) / 1024
    );
}
