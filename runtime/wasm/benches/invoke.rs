//! In-process invoke benchmark for ketch-wasm (no network): per-request latency of a fresh
//! instance serving one GET for the HELLO guest, throughput with 2 concurrent tasks, and the
//! time to serve the first request of an app whose compiled artifact is on disk but not in
//! the engine's in-memory map. Run: `cargo bench -p ketch-wasm --bench invoke`.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use ketch_test_guests::HELLO;
use ketch_wasm::{AppConfig, Engine, EngineConfig, Handler};

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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-invoke");
    std::fs::create_dir_all(&base).expect("bench dir");
    let dir = tempfile::tempdir_in(&base).expect("tempdir");
    let cache = dir.path().join("cache");
    let hello = Path::new(HELLO);
    println!(
        "machine: {} cores; guest {} ({} KiB)",
        std::thread::available_parallelism().expect("cores"),
        HELLO,
        std::fs::metadata(hello).expect("guest").len() / 1024
    );

    // Compile once, cold cache.
    let engine = Engine::new(EngineConfig::new(&cache)).expect("engine");
    let t = Instant::now();
    let app = engine.load_file(hello, None).await.expect("load");
    println!(
        "compile (first load_file, cold cache, incl. artifact write + fsync): {}",
        ms(t.elapsed())
    );
    let handler = app.handler(AppConfig::default()).expect("handler");

    // (a) sequential latency.
    let warmup = 500;
    let n = 10_000;
    for _ in 0..warmup {
        one(&handler).await;
    }
    let mut lat = Vec::with_capacity(n);
    let total = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        one(&handler).await;
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

    // (a') throughput with 2 concurrent tasks.
    let per = 10_000;
    let tasks = 2;
    let t = Instant::now();
    let mut joins = Vec::new();
    for _ in 0..tasks {
        let h = handler.clone();
        joins.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for _ in 0..per {
                let t = Instant::now();
                one(&h).await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for j in joins {
        lat.extend(j.await.expect("task"));
    }
    let secs = t.elapsed().as_secs_f64();
    lat.sort();
    println!(
        "invoke GET /, {tasks} concurrent tasks x {per}: {:.0} req/s (latency p50 {} p99 {})",
        (tasks * per) as f64 / secs,
        us(pct(&lat, 0.5)),
        us(pct(&lat, 0.99))
    );
    drop(handler);
    drop(app);
    drop(engine);

    // (b) artifact on disk, not in memory: a fresh Engine per iteration over the same cache.
    let iters = 100;
    let mut lat = Vec::with_capacity(iters);
    let mut engine_new = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        let engine = Engine::new(EngineConfig::new(&cache)).expect("engine");
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
