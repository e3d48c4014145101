//! Gateway benchmark: ketch's request path against `wasmtime serve`, measured with wrk.
//!
//! 1. The hello component (the HELLO test guest) through the ketch gateway vs `wasmtime
//!    serve` of the same .wasm, both with the pooling allocator: requests/s, p50/p99, and the
//!    server's CPU time per request. Runs alternate A B A B.
//! 2. The same with 10 different apps (the guest with 10 distinct digests): one gateway
//!    routing by Host vs 10 `wasmtime serve` processes (each wrk'd with a tenth of the
//!    connections, summed).
//! 3. Gateway overhead: a native hyper hello-world hit directly vs through the gateway (a
//!    selector-less Service with a hand-written EndpointSlice), at 1 connection (latency)
//!    and at the main connection count (throughput); and, as the floor of any proxy here,
//!    through a raw TCP relay and a minimal hyper proxy. `KETCH_BENCH_OVERHEAD_ONLY=1`
//!    runs only this one.
//! 4. Deploy-to-first-response: create a hello Deployment + Service, poll the gateway until
//!    the first 200; 20 runs.
//! 5. ketch-sdk's hello (`examples/hello`) vs the same app without the SDK
//!    (`examples/plain-wasi`): .wasm sizes, and requests/s through the gateway, A B A B.
//!    `KETCH_BENCH_SDK_ONLY=1` runs only this one.
//! 6. Cross-node: the server with its built-in agent (node a) and one more `ketch agent`
//!    (node b, joined with a join token, its own gateway), both on the server CPU. A hello
//!    app on node a (deployed before b joins) and one pinned to b (`nodeSelector`); wrk
//!    through a's gateway to a's Pod (local), through a's gateway to b's Pod (the request
//!    crosses to b's gateway peer listener over mutual TLS), and through b's gateway to its
//!    own Pod (the control), A B A B; CPU is the server's and the agent's together.
//!    `KETCH_BENCH_CROSS_NODE_ONLY=1` runs only this one (it is not in the full run).
//!
//! `KETCH_BENCH_HELLO_ONLY=1` runs only section 1.
//! Servers are started on CPU 0 and wrk on CPU 1 (`taskset -c`) when the machine has 2+ CPUs.
//! Needs `wrk` on PATH and wasmtime-cli 48.0.8 as `$WASMTIME` (default: `wasmtime` on PATH,
//! then /work/tools/bin/wasmtime); the peer runs are skipped, saying so, without it.
//! Run: `cargo bench --bench gateway` (env: `SECS` per run, default 10; `CONNS`, default 32).

mod support;

use support::{
    BenchServer, OutsideAddress, cpu_seconds, deploy, deployment, file_image, free_port, ketch_bin,
    ms, pct, service, variant, wait_200,
};

use std::process::{Child, Command, Stdio};
use std::time::Instant;

use serde_json::json;

const HELLO: &str = ketch_test_guests::HELLO;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The CPU servers run on: CPU 0 when there is another one for wrk.
fn server_cpu() -> Option<usize> {
    (cpus() >= 2).then_some(0)
}

/// `program` confined to the server CPU from its start (`taskset -c 0`), so its async
/// runtime sizes itself for one CPU, as a pinned production server would.
fn pinned(program: &str) -> Command {
    match server_cpu() {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string(), program]);
            c
        }
        None => Command::new(program),
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Wrk {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    requests: f64,
    errors: f64,
}

fn parse_latency(v: &str) -> f64 {
    let v = v.trim();
    let (num, mult) = if let Some(n) = v.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1000.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1_000_000.0)
    } else {
        (v, 1.0)
    };
    num.parse::<f64>().unwrap_or(0.0) * mult
}

fn parse_wrk(out: &str) -> Wrk {
    let mut w = Wrk::default();
    for line in out.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            w.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = line.strip_prefix("50%") {
            w.p50_us = parse_latency(v);
        } else if let Some(v) = line.strip_prefix("99%") {
            w.p99_us = parse_latency(v);
        } else if line.contains("requests in") {
            w.requests = line
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0.0);
        } else if line.starts_with("Non-2xx") || line.starts_with("Socket errors") {
            w.errors += line
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse::<f64>().ok())
                .sum::<f64>();
        }
    }
    w
}

/// Starts wrk (pinned to CPU 1) against `url`; `script` is a Lua file for per-request Host
/// headers.
fn spawn_wrk(url: &str, conns: u32, secs: u32, host: Option<&str>, script: Option<&str>) -> Child {
    let mut cmd = if cpus() >= 2 {
        let mut c = Command::new("taskset");
        c.args(["-c", "1", "wrk"]);
        c
    } else {
        Command::new("wrk")
    };
    cmd.args([
        "-t1",
        "-c",
        &conns.to_string(),
        "-d",
        &format!("{secs}s"),
        "--latency",
    ]);
    if let Some(h) = host {
        cmd.args(["-H", &format!("Host: {h}")]);
    }
    if let Some(s) = script {
        cmd.args(["-s", s]);
    }
    cmd.arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("wrk on PATH (apt-get install wrk)")
}

fn finish_wrk(child: Child) -> Wrk {
    let out = child.wait_with_output().expect("wrk ran");
    parse_wrk(&String::from_utf8_lossy(&out.stdout))
}

/// One wrk run against a server process; returns wrk's figures and the server's CPU µs per
/// request.
fn measure(pids: &[u32], runs: Vec<Child>) -> (Wrk, f64) {
    let cpu0: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
    let results: Vec<Wrk> = runs.into_iter().map(finish_wrk).collect();
    let cpu1: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
    let total = Wrk {
        rps: results.iter().map(|w| w.rps).sum(),
        p50_us: results.iter().map(|w| w.p50_us).fold(0.0, f64::max),
        p99_us: results.iter().map(|w| w.p99_us).fold(0.0, f64::max),
        requests: results.iter().map(|w| w.requests).sum(),
        errors: results.iter().map(|w| w.errors).sum(),
    };
    let cpu_us = if total.requests > 0.0 {
        (cpu1 - cpu0) * 1e6 / total.requests
    } else {
        0.0
    };
    (total, cpu_us)
}

fn row(label: &str, w: Wrk, cpu_us: f64) {
    println!(
        "  {label:<28} {:>9.0} req/s   p50 {:>7.0} µs   p99 {:>7.0} µs   cpu {:>6.1} µs/req{}",
        w.rps,
        w.p50_us,
        w.p99_us,
        cpu_us,
        if w.errors > 0.0 {
            format!("   ({} errors)", w.errors)
        } else {
            String::new()
        }
    );
}

fn wasmtime_bin() -> Option<String> {
    let candidates = [
        std::env::var("WASMTIME").ok(),
        Some("wasmtime".to_string()),
        Some("/work/tools/bin/wasmtime".to_string()),
    ];
    candidates.into_iter().flatten().find(|c| {
        Command::new(c)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// `wasmtime serve` of `wasm` on `port`, pooling allocator on, pinned to CPU 0.
fn wasmtime_serve(bin: &str, wasm: &str, port: u16) -> Child {
    pinned(bin)
        .args([
            "serve",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "-O",
            "pooling-allocator=y",
            "-S",
            "cli=y",
            wasm,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn wasmtime serve")
}

/// Child-process mode: a native hyper HTTP/1.1 hello-world on `port`.
fn native_server(port: u16) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        // Every address: the bench dials loopback directly and the gateway dials an
        // outside address (`OutsideAddress`), as slices may not name loopback.
        let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
            .await
            .unwrap();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(b"hello from ketch\n"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}

/// Child-process mode: the least a reverse proxy on `port` in front of `upstream` does, the
/// floor under the gateway's overhead on this machine. `tcp` copies bytes both ways (no
/// HTTP at all); `http` is a hyper HTTP/1.1 server whose every connection owns one upstream
/// hyper connection and forwards each request on it (no routing, pool, headers or metrics).
fn floor_proxy(kind: &str, port: u16, upstream: u16) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = kind == "http";
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        loop {
            let (mut down, _) = listener.accept().await.unwrap();
            let _ = down.set_nodelay(true);
            tokio::spawn(async move {
                let mut up = tokio::net::TcpStream::connect(("127.0.0.1", upstream))
                    .await
                    .unwrap();
                let _ = up.set_nodelay(true);
                if !http {
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    return;
                }
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(up))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                let sender = std::sync::Arc::new(tokio::sync::Mutex::new(sender));
                let svc = hyper::service::service_fn(move |req| {
                    let sender = sender.clone();
                    async move { sender.lock().await.send_request(req).await }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(down), svc)
                    .await;
            });
        }
    });
}

fn main() {
    if let Ok(port) = std::env::var("KETCH_BENCH_NATIVE_PORT") {
        native_server(port.parse().unwrap());
        return;
    }
    for kind in ["tcp", "http"] {
        let port = std::env::var(format!("KETCH_BENCH_FLOOR_{}", kind.to_uppercase()));
        if let (Ok(port), Ok(up)) = (port, std::env::var("KETCH_BENCH_NATIVE_PORT_UP")) {
            floor_proxy(kind, port.parse().unwrap(), up.parse().unwrap());
            return;
        }
    }
    // `cargo bench` passes `--bench`; nothing else to parse.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let secs: u32 = env_or("SECS", 10);
    let conns: u32 = env_or("CONNS", 32);
    ketch_tls::install_default_provider();
    let http = reqwest::Client::new();
    let scratch = tempfile::tempdir().unwrap();
    let wasmtime = wasmtime_bin();
    println!(
        "gateway benchmark: {} CPUs, servers on CPU 0, wrk on CPU 1, {conns} connections, {secs}s per run",
        cpus()
    );

    // ketch: one all-in-one server with its gateway.
    let gw_port = free_port();
    let server = BenchServer::start_on(
        &["--gateway", &format!("127.0.0.1:{gw_port}")],
        server_cpu(),
    )
    .await;
    let gw = format!("http://127.0.0.1:{gw_port}/");
    if std::env::var_os("KETCH_BENCH_SDK_ONLY").is_some() {
        sdk_vs_plain(&server, &http, &gw, conns, secs).await;
        return;
    }
    if std::env::var_os("KETCH_BENCH_OVERHEAD_ONLY").is_some() {
        overhead(&server, &http, &gw, conns, secs).await;
        return;
    }
    if std::env::var_os("KETCH_BENCH_CROSS_NODE_ONLY").is_some() {
        cross_node(&server, &http, &gw, conns, secs).await;
        return;
    }
    deploy(&server, "hello", &file_image(HELLO)).await;
    wait_200(&http, &gw, Some("hello.default.ketch.localhost")).await;

    // 1. hello: ketch vs wasmtime serve, A B A B.
    println!("\n1. hello component, one app");
    let wt_port = free_port();
    let mut wt = wasmtime
        .as_ref()
        .map(|bin| wasmtime_serve(bin, HELLO, wt_port));
    if wt.is_some() {
        wait_200(&http, &format!("http://127.0.0.1:{wt_port}/"), None).await;
    } else {
        println!("  wasmtime-cli not found ($WASMTIME, PATH, /work/tools/bin): peer runs skipped");
    }
    let mut ratios = Vec::new();
    for round in 1..=2 {
        let (k, kcpu) = measure(
            &[server.pid()],
            vec![spawn_wrk(
                &gw,
                conns,
                secs,
                Some("hello.default.ketch.localhost"),
                None,
            )],
        );
        row(&format!("A{round} ketch gateway"), k, kcpu);
        if let Some(w) = &wt {
            let (p, pcpu) = measure(
                &[w.id()],
                vec![spawn_wrk(
                    &format!("http://127.0.0.1:{wt_port}/"),
                    conns,
                    secs,
                    None,
                    None,
                )],
            );
            row(&format!("B{round} wasmtime serve"), p, pcpu);
            ratios.push(k.rps / p.rps);
        }
    }
    if !ratios.is_empty() {
        let r: Vec<String> = ratios.iter().map(|r| format!("{r:.2}×")).collect();
        println!("  ratio ketch / wasmtime serve (req/s): {}", r.join(", "));
    }
    if let Some(mut w) = wt.take() {
        let _ = w.kill();
        let _ = w.wait();
    }
    if std::env::var_os("KETCH_BENCH_HELLO_ONLY").is_some() {
        return;
    }

    // 2. Ten apps routed by Host vs ten wasmtime serve processes.
    println!("\n2. ten different apps");
    let bytes = std::fs::read(HELLO).unwrap();
    let apps: Vec<String> = (0..10)
        .map(|i| variant(&bytes, i, scratch.path()))
        .collect();
    for (i, wasm) in apps.iter().enumerate() {
        deploy(&server, &format!("app{i}"), &file_image(wasm)).await;
    }
    for i in 0..10 {
        wait_200(&http, &gw, Some(&format!("app{i}.default.ketch.localhost"))).await;
    }
    let lua = scratch.path().join("hosts.lua");
    std::fs::write(
        &lua,
        "local i = 0\nrequest = function()\n  i = (i + 1) % 10\n  wrk.headers[\"Host\"] = \"app\" .. i .. \".default.ketch.localhost\"\n  return wrk.format()\nend\n",
    )
    .unwrap();
    let lua = lua.to_string_lossy().into_owned();
    let peers: Vec<(Child, u16)> = match &wasmtime {
        Some(bin) => apps
            .iter()
            .map(|wasm| {
                let port = free_port();
                (wasmtime_serve(bin, wasm, port), port)
            })
            .collect(),
        None => Vec::new(),
    };
    for (_, port) in &peers {
        wait_200(&http, &format!("http://127.0.0.1:{port}/"), None).await;
    }
    let mut ratios = Vec::new();
    for round in 1..=2 {
        let (k, kcpu) = measure(
            &[server.pid()],
            vec![spawn_wrk(&gw, conns, secs, None, Some(&lua))],
        );
        row(&format!("A{round} ketch, 10 apps by Host"), k, kcpu);
        if !peers.is_empty() {
            let per = (conns / 10).max(1);
            let runs = peers
                .iter()
                .map(|(_, port)| {
                    spawn_wrk(&format!("http://127.0.0.1:{port}/"), per, secs, None, None)
                })
                .collect();
            let pids: Vec<u32> = peers.iter().map(|(c, _)| c.id()).collect();
            let (p, pcpu) = measure(&pids, runs);
            row(&format!("B{round} 10× wasmtime serve"), p, pcpu);
            ratios.push(k.rps / p.rps);
        }
    }
    if !ratios.is_empty() {
        let r: Vec<String> = ratios.iter().map(|r| format!("{r:.2}×")).collect();
        println!("  ratio ketch / wasmtime serve (req/s): {}", r.join(", "));
    }
    for (mut c, _) in peers {
        let _ = c.kill();
        let _ = c.wait();
    }

    overhead(&server, &http, &gw, conns, secs).await;

    // 4. Deploy to first response.
    println!(
        "\n4. deploy-to-first-response (create Deployment + Service → first 200 via the gateway)"
    );
    let mut samples = Vec::new();
    for i in 0..20 {
        let name = format!("d2f{i}");
        let host = format!("{name}.default.ketch.localhost");
        let t0 = Instant::now();
        deploy(&server, &name, &file_image(HELLO)).await;
        wait_200(&http, &gw, Some(&host)).await;
        samples.push(t0.elapsed());
    }
    samples.sort();
    println!(
        "  20 runs: p50 {}, p99 {}, min {}, max {}",
        ms(pct(&samples, 0.5)),
        ms(pct(&samples, 0.99)),
        ms(samples[0]),
        ms(samples[samples.len() - 1])
    );

    sdk_vs_plain(&server, &http, &gw, conns, secs).await;
}

/// This bench binary in one of its child modes (the env vars of `main`), pinned to the
/// server CPU like the servers.
fn child_mode(env: &[(&str, u16)]) -> Child {
    let me = std::env::current_exe().unwrap();
    let mut cmd = pinned(&me.to_string_lossy());
    for (k, v) in env {
        cmd.env(k, v.to_string());
    }
    cmd.stdout(Stdio::null()).spawn().unwrap()
}

/// Section 3: the gateway's overhead on a native hyper backend, against the floor of any
/// proxy on this machine (a raw TCP relay and a minimal hyper proxy, pinned like the
/// gateway). `KETCH_BENCH_OVERHEAD_ONLY=1` runs only this one.
async fn overhead(server: &BenchServer, http: &reqwest::Client, gw: &str, conns: u32, secs: u32) {
    println!("\n3. gateway overhead: native hyper hello-world, direct vs through a proxy");
    let native_port = free_port();
    let mut native = child_mode(&[("KETCH_BENCH_NATIVE_PORT", native_port)]);
    let direct = format!("http://127.0.0.1:{native_port}/");
    wait_200(http, &direct, None).await;
    let mut floors = Vec::new();
    for kind in ["tcp", "http"] {
        let port = free_port();
        let child = child_mode(&[
            (&format!("KETCH_BENCH_FLOOR_{}", kind.to_uppercase()), port),
            ("KETCH_BENCH_NATIVE_PORT_UP", native_port),
        ]);
        let url = format!("http://127.0.0.1:{port}/");
        wait_200(http, &url, None).await;
        floors.push((kind, child, url));
    }
    let outside = OutsideAddress::create();
    let slices = ketch_api::resource::lookup("endpointslices").unwrap();
    let services = ketch_api::resource::lookup("services").unwrap();
    server
        .client
        .create(
            services,
            Some("default"),
            &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "native"},
                "spec": {"ports": [{"port": 80}]}}),
        )
        .await
        .unwrap();
    server
        .client
        .create(
            slices,
            Some("default"),
            &json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "native-1", "labels": {"kubernetes.io/service-name": "native"}},
                "addressType": "IPv4", "endpoints": [{"addresses": [outside.ip.to_string()]}],
                "ports": [{"port": native_port}]}),
        )
        .await
        .unwrap();
    let host = "native.default.ketch.localhost";
    wait_200(http, gw, Some(host)).await;
    for c in [1, conns] {
        let mut added: Vec<(String, f64)> = Vec::new();
        for round in 1..=2 {
            let (d, dcpu) = measure(
                &[native.id()],
                vec![spawn_wrk(&direct, c, secs, None, None)],
            );
            row(&format!("A{round} direct, {c} conn"), d, dcpu);
            // CPU of the proxy process alone: what the hop costs on top of the backend.
            let (g, gcpu) = measure(
                &[server.pid()],
                vec![spawn_wrk(gw, c, secs, Some(host), None)],
            );
            row(&format!("B{round} via gateway, {c} conn"), g, gcpu);
            added.push(("gateway".into(), g.p50_us - d.p50_us));
            for (kind, child, url) in &floors {
                let (f, fcpu) = measure(&[child.id()], vec![spawn_wrk(url, c, secs, None, None)]);
                row(&format!("F{round} via {kind} floor, {c} conn"), f, fcpu);
                added.push((format!("{kind} floor"), f.p50_us - d.p50_us));
            }
        }
        let a: Vec<String> = added
            .iter()
            .map(|(k, a)| format!("{k} {a:.0} µs"))
            .collect();
        println!("  added p50 latency at {c} conn: {}", a.join(", "));
    }
    for (_, mut child, _) in floors {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = native.kill();
    let _ = native.wait();
}

/// Section 5: the hello app written with ketch-sdk (`examples/hello`) vs the same app written
/// against the plain `wasip2` bindings (`examples/plain-wasi`), through the gateway, A B A B.
async fn sdk_vs_plain(
    server: &BenchServer,
    http: &reqwest::Client,
    gw: &str,
    conns: u32,
    secs: u32,
) {
    println!("\n5. ketch-sdk hello vs plain wasi:http hello (same app), through the gateway");
    let apps = [
        ("sdk-hello", ketch_test_guests::EXAMPLE_HELLO),
        ("plain-hello", ketch_test_guests::EXAMPLE_PLAIN_WASI),
    ];
    for (name, wasm) in apps {
        let size = std::fs::metadata(wasm).unwrap().len();
        println!("  {name}: {size} bytes ({:.1} KiB)", size as f64 / 1024.0);
        deploy(server, name, &file_image(wasm)).await;
        wait_200(http, gw, Some(&format!("{name}.default.ketch.localhost"))).await;
    }
    let mut ratios = Vec::new();
    for round in 1..=2 {
        let mut rps = Vec::new();
        for (name, _) in apps {
            let host = format!("{name}.default.ketch.localhost");
            let (w, cpu) = measure(
                &[server.pid()],
                vec![spawn_wrk(gw, conns, secs, Some(&host), None)],
            );
            row(&format!("{round} {name}"), w, cpu);
            rps.push(w.rps);
        }
        ratios.push(rps[0] / rps[1]);
    }
    let r: Vec<String> = ratios.iter().map(|r| format!("{r:.3}×")).collect();
    println!("  ratio sdk / plain (req/s): {}", r.join(", "));
}

/// `ketch agent` node `far` joined to `server` (a join token), with its own gateway, pinned
/// to the server CPU.
fn far_agent(server: &BenchServer) -> Child {
    let token = server.join_token("--join");
    let log = std::fs::File::create(server.dir().join("far.log")).unwrap();
    pinned(&ketch_bin().to_string_lossy())
        .args(["agent", "--server", &server.url, "--token", &token])
        .args([
            "--name",
            "far",
            "--node-label",
            "zone=far",
            "--no-containerd",
        ])
        .args(["--agent-listen", "127.0.0.1:0", "--gateway", "127.0.0.1:0"])
        .args(["--gateway-tls", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(server.dir().join("far-data"))
        .env("KETCH_CONFIG", server.dir().join("no-config"))
        .env("KETCH_ALLOW_FILE_IMAGES", support::file_image_dirs())
        .env("KETCH_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn ketch agent")
}

/// Section 6: a request entering node a's gateway for a Pod on node b, against a Pod on
/// node a and against b's gateway reached directly. `KETCH_BENCH_CROSS_NODE_ONLY=1`.
async fn cross_node(server: &BenchServer, http: &reqwest::Client, gw: &str, conns: u32, secs: u32) {
    println!("\n6. cross-node: node a's gateway to a Pod on node b, hello component");
    // Deployed while node a is the only node, so it runs there.
    deploy(server, "near", &file_image(HELLO)).await;
    wait_200(http, gw, Some("near.default.ketch.localhost")).await;
    let mut agent = far_agent(server);
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    let far_gw = loop {
        let node = server.client.get_path("/api/v1/nodes/far").await;
        if let Some(url) = node.as_ref().ok().and_then(|n| {
            n["metadata"]["annotations"]["ketch.dev/gateway-endpoint"]
                .as_str()
                .map(str::to_string)
        }) {
            break format!("{}/", url.trim_end_matches('/'));
        }
        assert!(Instant::now() < deadline, "node far has no gateway");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let mut far = deployment("far", &file_image(HELLO));
    far["spec"]["template"]["spec"]["nodeSelector"] = json!({"zone": "far"});
    let deployments = ketch_api::resource::lookup("deployments").unwrap();
    let services = ketch_api::resource::lookup("services").unwrap();
    let c = &server.client;
    c.create(deployments, Some("default"), &far).await.unwrap();
    c.create(services, Some("default"), &service("far"))
        .await
        .unwrap();
    let far_host = "far.default.ketch.localhost";
    wait_200(http, &far_gw, Some(far_host)).await;
    wait_200(http, gw, Some(far_host)).await;
    let pids = [server.pid(), agent.id()];
    let cases = [
        ("a's gateway, Pod on a", gw, "near.default.ketch.localhost"),
        ("a's gateway, Pod on b", gw, far_host),
        ("b's gateway, Pod on b", far_gw.as_str(), far_host),
    ];
    for round in 1..=2 {
        for (label, url, host) in cases {
            let (w, cpu) = measure(&pids, vec![spawn_wrk(url, conns, secs, Some(host), None)]);
            row(&format!("{round} {label}"), w, cpu);
        }
    }
    let _ = agent.kill();
    let _ = agent.wait();
}
