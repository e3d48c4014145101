//! Write flood benchmark (issue 21): drives a real `ketch server` (release build) with far
//! more concurrent creates than it can store, as one non-admin user, and measures what the
//! others see meanwhile. Run: `cargo bench --bench flood`.
//!
//! 1. The sustainable create rate: 64 concurrent clients as the admin (`system:masters` is
//!    exempt from the in-flight budgets, so this is what the store commits, not what the
//!    budgets let through), `KETCH_BENCH_SUSTAINABLE_SECS` (10 s), on a server of its own so
//!    the flood's server starts empty.
//! 2. The flood: `KETCH_BENCH_FLOOD_TASKS` (1,024) tasks, each its own HTTP/1.1 connection,
//!    create ConfigMaps as user `flood` (ClusterRole `edit` in `default`) back to back for
//!    `KETCH_BENCH_FLOOD_SECS` (60 s), ignoring `Retry-After` as a hostile client would.
//!    Meanwhile, user `reader` (`view`) GETs one ConfigMap 20 times a second and LISTs
//!    `limit=50` 10 times a second; user `other` (`edit`) updates a marker ConfigMap every
//!    100 ms, and two watches as `reader` time each update from its 200 to its event: one
//!    with a label selector (only the marker) and one on the whole namespace (every flood
//!    create too, as a controller of ConfigMaps would see it). The server's RSS is sampled
//!    every 200 ms.
//! 3. After the flood: every name that got a 201 is listed (paged, as the admin), no name
//!    that got a 429 is, and the server still answers `/readyz`.
//! 4. The bad-input matrix (the classes of `tests/e2e/bad_input.rs` and a few more) against
//!    a fresh release server, its RSS sampled every 100 ms: the answer to each case and the
//!    server's max RSS per class. `KETCH_BENCH_MATRIX_ONLY=1` runs only this part.

mod support;

use support::{BenchServer, cpu_seconds, ms, pct, rss_kib};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `ketch token create --user NAME` against `server`: the new user's bearer token.
fn token_for(server: &BenchServer, user: &str) -> String {
    server.token_create(&["--user", user]).trim().to_string()
}

/// A client of `server` with `token` (the admin config's servers and CA).
fn client_as(server: &BenchServer, token: &str) -> ketch_client::Client {
    let mut cfg = ketch_client::ClientConfig::load(&server.dir().join("config")).unwrap();
    cfg.token = token.to_string();
    ketch_client::Client::from_config(&cfg).unwrap()
}

/// A user whom a RoleBinding in `default` grants ClusterRole `role`: their token.
async fn user_with_role(server: &BenchServer, name: &str, role: &str) -> String {
    let token = token_for(server, name);
    let rbs = ketch_api::resource::lookup("rolebindings").unwrap();
    let rb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": format!("{name}-{role}"), "namespace": "default"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}]});
    server
        .client
        .create(rbs, Some("default"), &rb)
        .await
        .unwrap();
    token
}

fn config_map(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"d": "x"}})
}

/// What one request came back with: the status code, or 0 for no HTTP answer (the
/// connection failed or broke), or 1 for a 2xx body that did not decode.
fn code_of(r: &Result<Value, ketch_client::Error>) -> u16 {
    match r {
        Ok(_) => 200,
        Err(ketch_client::Error::Api(s)) => s.code,
        Err(ketch_client::Error::Decode { .. }) => 1,
        Err(_) => 0,
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn codes_line(codes: &BTreeMap<u16, u64>) -> String {
    codes
        .iter()
        .map(|(c, n)| match c {
            0 => format!("no answer (connection error): {n}"),
            1 => format!("undecodable 2xx: {n}"),
            c => format!("{c}: {n}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// 64 admin clients creating ConfigMaps for `secs`: creates/s.
async fn sustainable_rate(secs: u64) -> f64 {
    let server = BenchServer::start(&["--no-agent"]).await;
    let cms = ketch_api::resource::lookup("configmaps").unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..64 {
        let c = server.client.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                c.create(cms, Some("default"), &config_map(&format!("sus-{w}-{n}")))
                    .await
                    .unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// Follows ConfigMaps in `default` as `client` (with `selector`, if any) from `from`, and
/// records when each marker update (its `data.markerSeq`) arrives. Every event line is
/// read, but only the marker's are parsed: on the whole-namespace watch the flood's
/// creates are the cost being measured, not the harness's JSON parsing of them.
fn watch_marker(
    client: ketch_client::Client,
    selector: Option<String>,
    from: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(HashMap<u64, Instant>, u64, u64)> {
    let cms = ketch_api::resource::lookup("configmaps").unwrap();
    tokio::spawn(async move {
        let mut seen = HashMap::new();
        let (mut events, mut restarts) = (0u64, 0u64);
        let mut rv = from;
        'watch: while !stop.load(Ordering::Relaxed) {
            let params = ketch_client::ListParams {
                label_selector: selector.clone(),
                ..Default::default()
            };
            let mut resp = match client
                .watch_once(cms, Some("default"), &params, Some(&rv))
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("watch ({selector:?}) refused: {e}");
                    restarts += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let mut buf: Vec<u8> = Vec::new();
            loop {
                let chunk = tokio::select! {
                    c = resp.chunk() => c,
                    () = tokio::time::sleep(Duration::from_millis(200)) => {
                        if stop.load(Ordering::Relaxed) { break 'watch; }
                        continue;
                    }
                };
                let chunk = match chunk {
                    Ok(Some(c)) => c,
                    other => {
                        eprintln!("watch ({selector:?}) ended: {other:?}");
                        restarts += 1;
                        continue 'watch;
                    }
                };
                let now = Instant::now();
                buf.extend_from_slice(&chunk);
                let mut start = 0;
                while let Some(pos) = buf[start..].iter().position(|b| *b == b'\n') {
                    let line = &buf[start..start + pos];
                    start += pos + 1;
                    events += 1;
                    if !line.windows(11).any(|w| w == b"\"markerSeq\"") {
                        continue;
                    }
                    let ev: Value = serde_json::from_slice(line).unwrap();
                    let obj = &ev["object"];
                    if let Some(v) = obj["metadata"]["resourceVersion"].as_str() {
                        rv = v.to_string();
                    }
                    if let Some(seq) = obj["data"]["markerSeq"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                    {
                        seen.entry(seq).or_insert(now);
                    }
                }
                buf.drain(..start);
            }
        }
        (seen, events, restarts)
    })
}

/// Latencies and codes of one kind of read.
#[derive(Default)]
struct Reads {
    lat: Vec<Duration>,
    codes: BTreeMap<u16, u64>,
}

/// `path` as `client` every `period` until `stop`.
fn read_loop(
    client: ketch_client::Client,
    path: String,
    period: Duration,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Reads> {
    tokio::spawn(async move {
        let mut out = Reads::default();
        let mut tick = tokio::time::interval(period);
        // A slow read is not followed by a burst that makes up for it: the rate stays.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let t = Instant::now();
            let r = client.get_path(&path).await;
            out.lat.push(t.elapsed());
            *out.codes.entry(code_of(&r)).or_default() += 1;
        }
        out
    })
}

#[tokio::main]
async fn main() {
    if std::env::var_os("KETCH_BENCH_MATRIX_ONLY").is_none() {
        flood().await;
    }
    matrix().await;
}

async fn flood() {
    let sustainable_secs = env_or("KETCH_BENCH_SUSTAINABLE_SECS", 10);
    let flood_secs = env_or("KETCH_BENCH_FLOOD_SECS", 60);
    let tasks_n = env_or("KETCH_BENCH_FLOOD_TASKS", 1024);
    println!(
        "machine: {} cores",
        std::thread::available_parallelism().unwrap()
    );

    // 1. What the store sustains.
    let sustainable = sustainable_rate(sustainable_secs).await;
    println!("sustainable: {sustainable:.0} creates/s (64 admin clients, {sustainable_secs} s)");

    // 2. The flood, on a server of its own.
    let server = BenchServer::start(&["--no-agent"]).await;
    let pid = server.pid();
    let cms = ketch_api::resource::lookup("configmaps").unwrap();
    let admin = server.client.clone();
    let flood_token = user_with_role(&server, "flood", "edit").await;
    let flooder = client_as(&server, &flood_token);
    let other = client_as(&server, &user_with_role(&server, "other", "edit").await);
    let reader = client_as(&server, &user_with_role(&server, "reader", "view").await);
    admin
        .create(cms, Some("default"), &config_map("target"))
        .await
        .unwrap();
    let marker = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "marker", "labels": {"role": "marker"}}, "data": {"markerSeq": "0"}});
    admin.create(cms, Some("default"), &marker).await.unwrap();
    // Bindings reach the authorizer through a watch: wait until each user is let in.
    let ready_by = Instant::now() + Duration::from_secs(30);
    loop {
        let r = reader
            .get_path("/api/v1/namespaces/default/configmaps/target")
            .await;
        let w = flooder
            .create(cms, Some("default"), &config_map("probe-flood"))
            .await;
        let o = other
            .create(cms, Some("default"), &config_map("probe-other"))
            .await;
        let ok = |r: &Result<Value, ketch_client::Error>| {
            r.is_ok() || matches!(r, Err(e) if e.code() == Some(409))
        };
        if ok(&r) && ok(&w) && ok(&o) {
            break;
        }
        assert!(
            Instant::now() < ready_by,
            "the RoleBindings never took effect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let from = support::head_rv(&admin, cms).await;
    let watch_selected = watch_marker(
        reader.clone(),
        Some("role=marker".into()),
        from.clone(),
        stop.clone(),
    );
    let watch_all = watch_marker(reader.clone(), None, from, stop.clone());
    let gets = read_loop(
        reader.clone(),
        "/api/v1/namespaces/default/configmaps/target".into(),
        Duration::from_millis(50),
        stop.clone(),
    );
    let lists = read_loop(
        reader.clone(),
        "/api/v1/namespaces/default/configmaps?limit=50".into(),
        Duration::from_millis(100),
        stop.clone(),
    );
    let rss_max = Arc::new(AtomicU64::new(rss_kib(pid)));
    let rss_before = rss_kib(pid);
    let sampler = {
        let (stop, rss_max) = (stop.clone(), rss_max.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                rss_max.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    // The marker's writer: acknowledged at, per sequence number.
    let marker_writer = {
        let (c, stop) = (other.clone(), stop.clone());
        tokio::spawn(async move {
            let mut acks: HashMap<u64, Instant> = HashMap::new();
            let mut codes: BTreeMap<u16, u64> = BTreeMap::new();
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                seq += 1;
                let patch = json!({"data": {"markerSeq": seq.to_string()}});
                let r = c
                    .merge_patch(cms, Some("default"), "marker", &patch, false)
                    .await;
                *codes.entry(code_of(&r)).or_default() += 1;
                if r.is_ok() {
                    acks.insert(seq, Instant::now());
                }
            }
            (acks, codes)
        })
    };
    // Let the watches and readers settle before the flood starts.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let cpu_before = cpu_seconds(pid);
    let own_cpu_before = cpu_seconds(std::process::id());
    let flood_stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut flood = Vec::new();
    let mut pool = flooder.clone();
    for t in 0..tasks_n {
        // One client (one connection pool) per 64 tasks: no pool is shared by more tasks
        // than a client process would hold.
        if t % 64 == 0 {
            pool = client_as(&server, &flood_token);
        }
        let c = pool.clone();
        let stop = flood_stop.clone();
        flood.push(tokio::spawn(async move {
            // codes[i]: the answer to `flood-{t}-{i}`; 201s' latencies apart.
            let mut codes: Vec<u16> = Vec::new();
            let mut created_lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let name = format!("flood-{t}-{}", codes.len());
                let at = Instant::now();
                let r = c.create(cms, Some("default"), &config_map(&name)).await;
                let code = match &r {
                    Ok(_) => 201,
                    r => code_of(r),
                };
                if code == 201 {
                    created_lat.push(at.elapsed());
                }
                codes.push(code);
            }
            (codes, created_lat)
        }));
    }
    tokio::time::sleep(Duration::from_secs(flood_secs)).await;
    flood_stop.store(true, Ordering::Relaxed);
    let mut per_task = Vec::new();
    let mut created_lat = Vec::new();
    for f in flood {
        let (codes, lat) = f.await.unwrap();
        per_task.push(codes);
        created_lat.extend(lat);
    }
    let flood_wall = started.elapsed().as_secs_f64();
    let server_cpu = cpu_seconds(pid) - cpu_before;
    let own_cpu = cpu_seconds(std::process::id()) - own_cpu_before;
    // The last marker events arrive, then everything else stops.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let (acks, marker_codes) = marker_writer.await.unwrap();
    let (seen_selected, _, restarts_selected) = watch_selected.await.unwrap();
    let (seen_all, events_all, restarts_all) = watch_all.await.unwrap();
    let gets = gets.await.unwrap();
    let lists = lists.await.unwrap();
    sampler.await.unwrap();
    let rss_after = rss_kib(pid);

    let mut codes: BTreeMap<u16, u64> = BTreeMap::new();
    for c in per_task.iter().flatten() {
        *codes.entry(*c).or_default() += 1;
    }
    let attempts: u64 = codes.values().sum();
    let created = codes.get(&201).copied().unwrap_or(0);
    let refused = codes.get(&429).copied().unwrap_or(0);
    println!(
        "flood: {tasks_n} tasks as user `flood`, {flood_wall:.1} s: {attempts} attempts \
         ({:.0}/s offered, {:.1}x the sustainable rate); {created} created ({:.0}/s), \
         {refused} refused 429",
        attempts as f64 / flood_wall,
        attempts as f64 / flood_wall / sustainable,
        created as f64 / flood_wall,
    );
    println!("flood codes: {}", codes_line(&codes));
    created_lat.sort();
    println!(
        "flood creates that got 201: latency p50 {} p99 {}",
        ms(pct(&created_lat, 0.5)),
        ms(pct(&created_lat, 0.99))
    );
    println!(
        "CPU during the flood: server {:.1} s ({:.2} cores), harness {:.1} s ({:.2} cores)",
        server_cpu,
        server_cpu / flood_wall,
        own_cpu,
        own_cpu / flood_wall
    );
    for (what, mut r) in [("GET one ConfigMap", gets), ("LIST limit=50", lists)] {
        r.lat.sort();
        println!(
            "reader {what}: {} requests, p50 {} p99 {} max {}; codes {}",
            r.lat.len(),
            ms(pct(&r.lat, 0.5)),
            ms(pct(&r.lat, 0.99)),
            ms(r.lat.last().copied().unwrap_or_default()),
            codes_line(&r.codes)
        );
    }
    println!(
        "marker writer (user `other`, every 100 ms): codes {}",
        codes_line(&marker_codes)
    );
    for (what, seen, restarts) in [
        (
            "watch delay, selector role=marker",
            &seen_selected,
            restarts_selected,
        ),
        ("watch delay, whole namespace", &seen_all, restarts_all),
    ] {
        // An event may arrive before the writer sees its response: that counts as 0.
        let mut delays: Vec<Duration> = acks
            .iter()
            .filter_map(|(seq, ack)| seen.get(seq).map(|at| at.saturating_duration_since(*ack)))
            .collect();
        delays.sort();
        let missing = acks.keys().filter(|s| !seen.contains_key(s)).count();
        println!(
            "{what}: {} updates, p50 {} p99 {} max {}; {missing} acknowledged updates not seen; \
             {restarts} watch restarts",
            delays.len(),
            ms(pct(&delays, 0.5)),
            ms(pct(&delays, 0.99)),
            ms(delays.last().copied().unwrap_or_default()),
        );
    }
    println!("whole-namespace watch: {events_all} events read");
    println!(
        "server RSS: {} MiB before, max {} MiB (sampled every 200 ms), {} MiB after",
        rss_before / 1024,
        rss_max.load(Ordering::Relaxed) / 1024,
        rss_after / 1024
    );

    // 3. Nothing acknowledged is lost, nothing refused is stored.
    let alive = std::fs::metadata(format!("/proc/{pid}")).is_ok();
    let ready = matches!(
        admin.get_path("/readyz").await,
        Ok(_) | Err(ketch_client::Error::Decode { .. })
    );
    let mut stored: HashSet<String> = HashSet::new();
    let listed_at = Instant::now();
    let mut cont: Option<String> = None;
    loop {
        let mut path = "/api/v1/namespaces/default/configmaps?limit=5000".to_string();
        if let Some(c) = &cont {
            path.push_str(&format!("&continue={}", percent_encode(c)));
        }
        let page = admin.get_path(&path).await.unwrap();
        for item in page["items"].as_array().unwrap() {
            stored.insert(item["metadata"]["name"].as_str().unwrap().to_string());
        }
        match page["metadata"]["continue"].as_str() {
            Some(c) if !c.is_empty() => cont = Some(c.to_string()),
            _ => break,
        }
    }
    let (mut lost, mut refused_but_stored, mut unanswered_stored) = (0u64, 0u64, 0u64);
    for (t, codes) in per_task.iter().enumerate() {
        for (i, code) in codes.iter().enumerate() {
            let present = stored.contains(&format!("flood-{t}-{i}"));
            match code {
                201 if !present => {
                    lost += 1;
                    if lost <= 5 {
                        println!("LOST: flood-{t}-{i} got 201 and is not stored");
                    }
                }
                429 if present => refused_but_stored += 1,
                201 | 429 => {}
                _ if present => unanswered_stored += 1,
                _ => {}
            }
        }
    }
    println!(
        "after the flood: process alive {alive}, /readyz {ready}; listed {} ConfigMaps in {:.1} s; \
         acknowledged and lost: {lost}; 429 and stored: {refused_but_stored}; \
         other answer and stored: {unanswered_stored}",
        stored.len(),
        listed_at.elapsed().as_secs_f64()
    );
    assert_eq!(lost, 0, "acknowledged writes lost");
}

/// An HTTP client trusting `server`'s cluster CA: raw bodies the typed client cannot send.
fn raw_http(server: &BenchServer) -> reqwest::Client {
    let cfg = ketch_client::ClientConfig::load(&server.dir().join("config")).unwrap();
    let tls = ketch_tls::client_config(&cfg.certificate_authority.unwrap(), None).unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap()
}

async fn post_raw(
    http: &reqwest::Client,
    server: &BenchServer,
    token: &str,
    path: &str,
    content_type: &str,
    body: String,
) -> (u16, String) {
    let resp = http
        .post(format!("{}{path}", server.url))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await;
    match resp {
        Ok(r) => {
            let code = r.status().as_u16();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            let msg = v["message"].as_str().unwrap_or_default();
            (code, msg.chars().take(90).collect())
        }
        Err(e) => (0, e.to_string()),
    }
}

/// The bad-input classes against a fresh server: each case's answer, and the server's max
/// RSS while the class ran (a sampler every 100 ms, and a sample right after each case, so
/// a short spike between samples is still caught if it is kept).
async fn matrix() {
    let server = BenchServer::start(&["--no-agent"]).await;
    let pid = server.pid();
    let token = ketch_client::ClientConfig::load(&server.dir().join("config"))
        .unwrap()
        .token;
    let http = raw_http(&server);
    let viewer = user_with_role(&server, "watcher", "view").await;
    let cms = "/api/v1/namespaces/default/configmaps";
    // Warm the paths the cases take, so the first class does not pay for them.
    let (code, _) = post_raw(
        &http,
        &server,
        &token,
        cms,
        "application/yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: warm}\ndata: {a: &x b, c: *x}\n".into(),
    )
    .await;
    assert_eq!(code, 201);
    let baseline = rss_kib(pid);
    println!(
        "matrix: server RSS {} MiB after start and one create",
        baseline / 1024
    );
    let class: Arc<Mutex<String>> = Arc::new(Mutex::new(String::new()));
    let max: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (class, max, stop) = (class.clone(), max.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let rss = rss_kib(pid);
                let c = class.lock().unwrap().clone();
                // The guard is not Send: released before the await.
                {
                    let mut m = max.lock().unwrap();
                    let e = m.entry(c).or_default();
                    *e = (*e).max(rss);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let sample = |c: &str| {
        let rss = rss_kib(pid);
        let mut m = max.lock().unwrap();
        let e = m.entry(c.to_string()).or_default();
        *e = (*e).max(rss);
    };
    let mut rows: Vec<(String, usize, String)> = Vec::new();
    let bomb = |aliases: usize| {
        let mut b =
            String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\nx: &a [");
        b.push_str(&vec!["lol"; 1000].join(","));
        b.push_str("]\ny: [");
        b.push_str(&vec!["*a"; aliases].join(","));
        b.push_str("]\n");
        b
    };
    let yaml = "application/yaml";
    let js = "application/json";
    // (path, content type, body)
    type Request<'a> = (&'a str, &'a str, String);
    let cases: Vec<(&str, Vec<Request>)> = vec![
        (
            "malformed (JSON, YAML)",
            vec![
                (cms, js, r#"{"apiVersion": "v1", "kind": "#.into()),
                (cms, yaml, "apiVersion: v1\nkind: [ConfigMap\n".into()),
            ],
        ),
        (
            "oversized body (4 MiB JSON, 4 MiB YAML)",
            vec![
                (
                    cms,
                    js,
                    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"},
                        "data": {"d": "x".repeat(4 << 20)}})
                    .to_string(),
                ),
                (
                    cms,
                    yaml,
                    format!(
                        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big}}\ndata: {{d: {}}}\n",
                        "x".repeat(4 << 20)
                    ),
                ),
            ],
        ),
        (
            "deeply nested (100,000 JSON, 100,000 YAML)",
            vec![
                (
                    cms,
                    js,
                    format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
                ),
                (
                    cms,
                    yaml,
                    format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000)),
                ),
            ],
        ),
        (
            "YAML alias bomb (64 KiB: 20,000 aliases; 2.9 MiB: 1,000,000 aliases)",
            vec![(cms, yaml, bomb(20_000)), (cms, yaml, bomb(1_000_000))],
        ),
        (
            "unknown field, wrong type",
            vec![
                (
                    cms,
                    js,
                    r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "u"}, "bogus": 1}"#
                        .into(),
                ),
                (
                    cms,
                    js,
                    r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "t"}, "data": 5}"#
                        .into(),
                ),
            ],
        ),
        (
            "EndpointSlice to loopback, metadata address",
            vec![
                (
                    "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
                    js,
                    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                        "metadata": {"name": "lo", "labels": {"kubernetes.io/service-name": "x"}},
                        "addressType": "IPv4", "endpoints": [{"addresses": ["127.0.0.1"]}],
                        "ports": [{"port": 80}]})
                    .to_string(),
                ),
                (
                    "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
                    js,
                    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                        "metadata": {"name": "md", "labels": {"kubernetes.io/service-name": "x"}},
                        "addressType": "IPv4", "endpoints": [{"addresses": ["169.254.169.254"]}],
                        "ports": [{"port": 80}]})
                    .to_string(),
                ),
            ],
        ),
    ];
    for (name, bodies) in cases {
        *class.lock().unwrap() = name.to_string();
        let n = bodies.len();
        let mut answers = Vec::new();
        for (path, ct, body) in bodies {
            let t = Instant::now();
            let (code, msg) = post_raw(&http, &server, &token, path, ct, body).await;
            let took = t.elapsed();
            sample(name);
            answers.push(format!("{code} in {} ({msg})", ms(took)));
        }
        rows.push((name.to_string(), n, answers.join("; ")));
    }

    // A watch timeout past the clock's range: a watch without deadline, not a panic.
    let name = "watch timeoutSeconds=18446744073709551615";
    *class.lock().unwrap() = name.to_string();
    let resp = http
        .get(format!(
            "{}{cms}?watch=true&timeoutSeconds=18446744073709551615",
            server.url
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    rows.push((name.into(), 1, resp.status().as_u16().to_string()));
    drop(resp);
    sample(name);

    // A watch flood: one user opens watches until refused (a fresh connection each, as
    // 1,000 clients would), then one more is asked for.
    let name = "watch flood (one `view` user, 1,001 watches)";
    *class.lock().unwrap() = name.to_string();
    let viewer_ready = Instant::now() + Duration::from_secs(30);
    while http
        .get(format!("{}{cms}", server.url))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(Instant::now() < viewer_ready, "the viewer's binding");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut open = Vec::new();
    let mut watch_codes: BTreeMap<u16, u64> = BTreeMap::new();
    for _ in 0..1001 {
        let r = http
            .get(format!("{}{cms}?watch=true", server.url))
            .bearer_auth(&viewer)
            .send()
            .await;
        let code = r.as_ref().map_or(0, |r| r.status().as_u16());
        *watch_codes.entry(code).or_default() += 1;
        if let Ok(r) = r {
            open.push(r);
        }
    }
    sample(name);
    tokio::time::sleep(Duration::from_millis(300)).await;
    sample(name);
    rows.push((name.into(), 1001, codes_line(&watch_codes)));
    drop(open);

    // A TLS client that connects and says nothing: closed at the handshake timeout (10 s).
    let name = "silent TLS client";
    *class.lock().unwrap() = name.to_string();
    let addr = server.url.trim_start_matches("https://").to_string();
    let outcome = tokio::task::spawn_blocking(move || {
        use std::io::Read as _;
        let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let t = Instant::now();
        let mut buf = [0u8; 16];
        let n = tcp.read(&mut buf);
        format!("read {n:?} after {:.1} s", t.elapsed().as_secs_f64())
    })
    .await
    .unwrap();
    sample(name);
    rows.push((name.into(), 1, outcome));

    stop.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    let alive = std::fs::metadata(format!("/proc/{pid}")).is_ok();
    let ready = matches!(
        server.client.get_path("/readyz").await,
        Ok(_) | Err(ketch_client::Error::Decode { .. })
    );
    let max = max.lock().unwrap().clone();
    for (name, n, answer) in rows {
        println!(
            "matrix: {name}: {n} cases; max server RSS {} MiB; {answer}",
            max.get(&name).copied().unwrap_or(0) / 1024
        );
    }
    println!(
        "matrix: server alive {alive}, /readyz {ready}, RSS now {} MiB",
        rss_kib(pid) / 1024
    );
}
