//! Registry-referenced Wasm apps (issue 6): a real all-in-one `ketch server` (release build)
//! and a real OCI registry (Debian's `docker-registry`, started here on a free loopback
//! port with its storage in a temp dir). For each of `KETCH_BENCH_RUNS` (10) runs, a distinct
//! variant of the hello component (a custom section appended, so a new digest the node has
//! never seen) is pushed with `ketch push` before the clock starts; then:
//! - first deploy: create a Deployment (1 replica, image = the registry tag, no
//!   `runtimeClassName`) + Service → first 200 through the gateway: pull + verify + compile
//!   + start + route;
//! - second Pod of the same app: another Deployment + Service of the same reference → first
//!   200: the digest is cached and compiled already.
//!
//! Run: `cargo bench --bench registry` (needs `docker-registry`: `apt-get install
//! docker-registry`; without it the bench says so and exits).

mod support;

use support::{BenchServer, deploy, free_port, ms, pct, variant, wait_200};

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The registry process; killed when dropped.
struct Registry {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_registry() -> Option<Registry> {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let child = match Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            println!("docker-registry could not be started ({e}): apt-get install docker-registry");
            return None;
        }
    };
    let registry = Registry {
        child,
        addr,
        _dir: dir,
    };
    ketch_tls::install_default_provider();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .get(format!("http://{}/v2/", registry.addr))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "the registry did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Some(registry)
}

/// `ketch push FILE REF`; returns the digest reference it prints.
fn push(file: &str, reference: &str) -> String {
    let out = Command::new(support::ketch_bin())
        .args(["push", file, reference])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ketch push failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn summary(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "  {label}, {} runs: p50 {}, p99 {}, min {}, max {}",
        samples.len(),
        ms(pct(&samples, 0.5)),
        ms(pct(&samples, 0.99)),
        ms(samples[0]),
        ms(samples[samples.len() - 1])
    );
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("KETCH_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let Some(registry) = start_registry().await else {
        return;
    };
    let gw_port = free_port();
    let server = BenchServer::start(&["--gateway", &format!("127.0.0.1:{gw_port}")]).await;
    let gw = format!("http://127.0.0.1:{gw_port}/");
    ketch_tls::install_default_provider();
    let http = reqwest::Client::new();
    let hello = std::fs::read(ketch_test_guests::HELLO).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    println!(
        "registry-referenced Wasm app: hello ({} KiB) variants pushed to {} (plain HTTP, loopback)",
        hello.len() / 1024,
        registry.addr
    );

    let (mut first, mut second) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let file = variant(&hello, 1000 + i, scratch.path());
        let reference = format!("{}/bench/hello-{i}:1", registry.addr);
        let pushed = push(&file, &reference);
        if i == 0 {
            println!("  e.g. pushed {pushed}");
        }

        let name = format!("first{i}");
        let t0 = Instant::now();
        deploy(&server, &name, &reference).await;
        wait_200(&http, &gw, Some(&format!("{name}.default.ketch.localhost"))).await;
        first.push(t0.elapsed());

        let name = format!("second{i}");
        let t0 = Instant::now();
        deploy(&server, &name, &reference).await;
        wait_200(&http, &gw, Some(&format!("{name}.default.ketch.localhost"))).await;
        second.push(t0.elapsed());
    }
    println!("deploy (Deployment + Service create) → first 200 through the gateway:");
    summary(
        "first Pod of a never-seen digest (pull + compile + start)",
        first,
    );
    summary("second Pod of the same app (cache hit)", second);
}
