//! What the bounded YAML decoder (`bounded_yaml`) costs and saves: `parse_documents` on an
//! ordinary manifest against serde_yaml's own decoding into a map (what it did before), run
//! alternately A B A B; and the time to refuse the alias bomb and the deep nesting of
//! issue 21. Run: `cargo bench -p ketch-api --bench decode`.

use std::time::{Duration, Instant};

use serde::Deserialize as _;
use serde_json::{Map, Value};

const MANIFEST: &str = include_str!("../../../tests/manifests/k8s-deployment-service.yaml");

/// The decoding before the bound: serde_yaml straight into JSON maps.
fn unbounded(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .filter_map(|d| Option::<Map<String, Value>>::deserialize(d).unwrap())
        .map(Value::Object)
        .collect()
}

fn bounded(text: &str) -> Vec<Value> {
    ketch_api::decode::parse_documents(text).unwrap()
}

/// Median and 99th percentile of `runs` timings of `f`, µs.
fn time(runs: usize, mut f: impl FnMut()) -> (f64, f64) {
    let mut t: Vec<Duration> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    (us(t[runs / 2]), us(t[runs * 99 / 100]))
}

fn main() {
    assert_eq!(bounded(MANIFEST), unbounded(MANIFEST));
    println!(
        "ordinary manifest ({} bytes, 2 documents), 20,000 parses a run:",
        MANIFEST.len()
    );
    for round in 1..=2 {
        let (p50, p99) = time(20_000, || {
            std::hint::black_box(unbounded(MANIFEST));
        });
        println!("  A unbounded, run {round}: p50 {p50:.1} µs, p99 {p99:.1} µs");
        let (p50, p99) = time(20_000, || {
            std::hint::black_box(bounded(MANIFEST));
        });
        println!("  B bounded,   run {round}: p50 {p50:.1} µs, p99 {p99:.1} µs");
    }

    let mut bomb = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\nx: &a [");
    bomb.push_str(&vec!["lol"; 1000].join(","));
    bomb.push_str("]\ny: [");
    bomb.push_str(&vec!["*a"; 20_000].join(","));
    bomb.push_str("]\n");
    let (p50, p99) = time(50, || {
        assert!(ketch_api::decode::parse_documents(&bomb).is_err());
    });
    println!(
        "alias bomb ({} bytes: one 1,000-scalar anchor, 20,000 aliases), refused: p50 {:.2} ms, p99 {:.2} ms",
        bomb.len(),
        p50 / 1000.0,
        p99 / 1000.0
    );
    let deep = format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let (p50, p99) = time(50, || {
        assert!(ketch_api::decode::parse_documents(&deep).is_err());
    });
    println!(
        "100,000 nested [ ], refused: p50 {:.3} ms, p99 {:.3} ms",
        p50 / 1000.0,
        p99 / 1000.0
    );
    let limit = format!("a: {}{}\n", "[".repeat(256), "]".repeat(256));
    let (p50, _) = time(50, || {
        std::hint::black_box(ketch_api::decode::parse_documents(&limit).ok());
    });
    println!(
        "256 nested [ ] (the limit; serde_yaml refuses past 128): p50 {:.3} ms",
        p50 / 1000.0
    );
}
