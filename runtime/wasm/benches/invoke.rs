//! In-process invoke benchmark for ketch-wasm (no network): per-request latency of a fresh
//! instance serving one GET for the HELLO guest, throughput with N concurrent tasks on the
//! 2-worker multi-thread runtime (both for each memory-reset mode), and the time to serve
//! the first request of an app whose compiled artifact is on disk but not in the engine's
//! in-memory map.
//!
//! Run: `cargo bench -p ketch-wasm --bench invoke`. Knobs (environment):
//! - `KETCH_BENCH_CONCURRENCY`: comma-separated task counts for the throughput runs
//!   (default `2,16,64`);
//! - `KETCH_BENCH_RESET`: `dirty` or `decommit` to run only that memory-reset mode (both by
//!   default: dirty-page reset with `EngineConfig::reset_dirty_pages_only`, then the
//!   engine's default decommit);
//! - `KETCH_BENCH_REQUESTS`: requests per sequential run and per throughput run
//!   (default 20,000);
//! - `KETCH_BENCH_PROFILE_SECS`: only loop sequential requests for that many seconds (for
//!   `perf record`), then exit;
//! - `KETCH_BENCH_GUEST`: serve this component instead of the test guests' hello;
//! - `KETCH_BENCH_SERVE`: an address (`127.0.0.1:8081`): serve the guest over plain
//!   HTTP/1.1 there until killed (hyper, one task per connection, no routing: the shape of
//!   `wasmtime serve`), for a load generator such as `wrk`; with dirty-page reset unless
//!   `KETCH_BENCH_RESET=decommit`.

use std::path::Path;

/// The allocator the `ketch` binary uses, so in-process figures match the product.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use ketch_test_guests::HELLO;
use ketch_wasm::{AppConfig, Engine, EngineConfig, Handler};

/// Instance slots of the bench's engines: a quarter of them (the default share of one app)
/// covers the 64 concurrent tasks of the widest run.
const BENCH_INSTANCES: u32 = 256;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// One GET: build the request, handle it, read the whole body. Returns the body length.
async fn one(h: &Handler) -> usize {
    let req = http::Request::get("http://app.test/")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = h.handle(req).await.expect("handle");
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    body.len()
}

/// Serves `handler` over HTTP/1.1 on `addr` until the process is killed.
async fn serve(addr: &str, handler: Handler) {
    use hyper::server::conn::http1;
    use wasmtime_wasi_http::io::TokioIo;
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    println!(
        "serving on http://{}/",
        listener.local_addr().expect("addr")
    );
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let handler = handler.clone();
                async move {
                    let resp = match handler.handle(req).await {
                        Ok(resp) => resp,
                        Err(e) => http::Response::builder()
                            .status(500)
                            .body(
                                http_body_util::Full::new(Bytes::from(e.to_string()))
                                    .map_err(|never| match never {})
                                    .boxed_unsync(),
                            )
                            .expect("response"),
                    };
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Sequential requests for `secs` seconds, for `perf record`.
async fn profile_loop(handler: &Handler, secs: u64) {
    let end = Instant::now() + Duration::from_secs(secs);
    let mut n = 0u64;
    while Instant::now() < end {
        for _ in 0..100 {
            one(handler).await;
        }
        n += 100;
    }
    println!("profile loop: {n} requests in {secs} s");
}

/// (a) sequential latency, then (a') throughput with N concurrent tasks.
async fn invoke_figures(handler: &Handler) {
    // (a) sequential latency: one request at a time, awaited from the main task.
    let warmup = 1_000;
    let n = env_usize("KETCH_BENCH_REQUESTS", 20_000);
    for _ in 0..warmup {
        one(handler).await;
    }
    let mut lat = Vec::with_capacity(n);
    let total = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        one(handler).await;
        lat.push(t.elapsed());
    }
    let total = total.elapsed();
    lat.sort();
    println!(
        "invoke GET /, sequential, {n} requests after {warmup} warm-up: p50 {} p99 {} mean {} ({:.0} req/s)",
        us(pct(&lat, 0.5)),
        us(pct(&lat, 0.99)),
        us(total / n as u32),
        n as f64 / total.as_secs_f64()
    );

    // (a') throughput: N tasks on the 2 workers, each running requests back to back.
    let counts = std::env::var("KETCH_BENCH_CONCURRENCY").unwrap_or_else(|_| "2,16,64".into());
    for tasks in counts
        .split(',')
        .filter_map(|c| c.trim().parse::<usize>().ok())
    {
        let (rps, lat) = throughput(handler, tasks, n).await;
        println!(
            "invoke GET /, {tasks} concurrent tasks, {n} requests: {rps:.0} req/s (latency p50 {} p99 {})",
            us(pct(&lat, 0.5)),
            us(pct(&lat, 0.99))
        );
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `tasks` tasks sharing `total` requests (each takes the next until none are left).
/// Returns (req/s, sorted latencies).
async fn throughput(handler: &Handler, tasks: usize, total: usize) -> (f64, Vec<Duration>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let left = Arc::new(AtomicUsize::new(total));
    let t = Instant::now();
    let mut joins = Vec::new();
    for _ in 0..tasks {
        let h = handler.clone();
        let left = left.clone();
        joins.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(total / tasks + 1);
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                let t = Instant::now();
                one(&h).await;
                lat.push(t.elapsed());
                // A hello request completes without ever returning Pending, so a task would
                // otherwise only yield when tokio's coop budget runs out (every ~128
                // requests), which makes the other tasks' latencies milliseconds long.
                // Independent clients do not queue behind each other like that.
                tokio::task::yield_now().await;
            }
            lat
        }));
    }
    let mut lat = Vec::with_capacity(total);
    for j in joins {
        lat.extend(j.await.expect("task"));
    }
    let secs = t.elapsed().as_secs_f64();
    lat.sort();
    (total as f64 / secs, lat)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-invoke");
    std::fs::create_dir_all(&base).expect("bench dir");
    let dir = tempfile::tempdir_in(&base).expect("tempdir");
    let cache = dir.path().join("cache");
    let guest = std::env::var("KETCH_BENCH_GUEST").unwrap_or_else(|_| HELLO.to_string());
    let hello = Path::new(&guest);
    println!(
        "machine: {} cores; guest {} ({} KiB)",
        std::thread::available_parallelism().expect("cores"),
        hello.display(),
        std::fs::metadata(hello).expect("guest").len() / 1024
    );

    // Compile once, cold cache.
    let engine =
        Engine::new(EngineConfig::with_instances(&cache, BENCH_INSTANCES)).expect("engine");
    let t = Instant::now();
    let app = engine.load_file(hello, None).await.expect("load");
    println!(
        "compile (first load_file, cold cache, incl. artifact write + fsync): {}",
        ms(t.elapsed())
    );
    drop(app);
    drop(engine);

    // An engine with dirty-page reset, then the default one that decommits (unless
    // KETCH_BENCH_RESET picks one: `dirty` or `decommit`).
    let only = std::env::var("KETCH_BENCH_RESET").ok();
    for dirty in [true, false] {
        let name = if dirty { "dirty" } else { "decommit" };
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let mut config = EngineConfig::with_instances(&cache, BENCH_INSTANCES);
        config.reset_dirty_pages_only = dirty;
        let engine = Engine::new(config).expect("engine");
        if dirty && !engine.resets_dirty_pages_only() {
            println!("reset_dirty_pages_only is not usable on this node; skipped");
            continue;
        }
        let app = engine.load_file(hello, None).await.expect("load");
        let handler = app.handler(AppConfig::default()).expect("handler");
        if let Ok(addr) = std::env::var("KETCH_BENCH_SERVE") {
            serve(&addr, handler).await;
            return;
        }
        println!(
            "-- memory reset: {}",
            if dirty {
                "dirty pages only (PAGEMAP_SCAN; reset_dirty_pages_only on)"
            } else {
                "default: decommit (batched madvise)"
            }
        );
        if let Some(secs) = std::env::var("KETCH_BENCH_PROFILE_SECS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            profile_loop(&handler, secs).await;
            return;
        }
        invoke_figures(&handler).await;
    }

    // (b) artifact on disk, not in memory: a fresh Engine per iteration over the same cache.
    let iters = 100;
    let mut lat = Vec::with_capacity(iters);
    let mut engine_new = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        let engine =
            Engine::new(EngineConfig::with_instances(&cache, BENCH_INSTANCES)).expect("engine");
        engine_new.push(t.elapsed());
        let t = Instant::now();
        let app = engine.load_file(hello, None).await.expect("load");
        let h = app.handler(AppConfig::default()).expect("handler");
        one(&h).await;
        lat.push(t.elapsed());
        let stats = engine.stats();
        assert_eq!((stats.compiled, stats.loaded_from_disk), (0, 1));
    }
    lat.sort();
    engine_new.sort();
    println!(
        "load from on-disk artifact (fresh Engine, load_file + handler + first GET), {iters} runs: p50 {} p99 {} (Engine::new, not included: p50 {})",
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99)),
        ms(pct(&engine_new, 0.5))
    );
}
