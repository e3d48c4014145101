//! Shared by the benchmark harnesses: start a real `ketch server` on a free loopback port
//! with its data on the real disk, and the small statistics they all print.
#![allow(
    dead_code,
    reason = "each bench compiles this module and uses a different subset of it"
)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::{Value, json};

/// The `ketch` binary under test: this build's, or `KETCH_BENCH_BIN` to compare another build
/// (say, one with a different allocator) in the same run.
pub fn ketch_bin() -> std::path::PathBuf {
    std::env::var_os("KETCH_BENCH_BIN")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_ketch").into())
}

/// A `ketch server` process owned by one benchmark; killed when dropped.
pub struct BenchServer {
    child: Child,
    dir: tempfile::TempDir,
    pub client: ketch_client::Client,
    /// The API's URL.
    pub url: String,
}

impl BenchServer {
    /// Start `ketch server` with `extra` flags and wait until it is ready. The data dir is
    /// under `target/bench-data` (a real disk, not tmpfs, so durability costs what it costs).
    pub async fn start(extra: &[&str]) -> BenchServer {
        Self::start_on(extra, None).await
    }

    /// [`BenchServer::start`] with the process confined to one CPU from its first
    /// instruction (`taskset -c CPU`), so its runtimes size themselves for that one CPU.
    pub async fn start_on(extra: &[&str], cpu: Option<usize>) -> BenchServer {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
        std::fs::create_dir_all(&base).unwrap();
        let dir = tempfile::tempdir_in(&base).unwrap();
        let port = free_port();
        let bin = ketch_bin();
        let mut cmd = match cpu {
            Some(c) => {
                let mut t = Command::new("taskset");
                t.args(["-c", &c.to_string()]).arg(&bin);
                t
            }
            None => Command::new(&bin),
        };
        // KETCH_BENCH_SERVER_ARGS: flags for every server under test (an A/B of a setting).
        let from_env = std::env::var("KETCH_BENCH_SERVER_ARGS").unwrap_or_default();
        let child = cmd
            .env("KETCH_ALLOW_FILE_IMAGES", file_image_dirs())
            .args(["server", "--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .args(from_env.split_whitespace())
            .args(
                (!extra.iter().any(|a| a.contains("gateway")))
                    .then_some(["--gateway", "127.0.0.1:0"])
                    .into_iter()
                    .flatten(),
            )
            // The gateway TLS listener's default (:8443) would collide between servers.
            .args(
                (!extra
                    .iter()
                    .any(|a| a.starts_with("--gateway-tls") || a.starts_with("--no-gateway")))
                .then_some(["--gateway-tls", "127.0.0.1:0"])
                .into_iter()
                .flatten(),
            )
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("KETCH_CONFIG", dir.path().join("config"))
            .env("KETCH_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("https://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        // The client config (with the cluster CA) is written once the server serves.
        let client = loop {
            if let Ok(cfg) = ketch_client::ClientConfig::load(&dir.path().join("config"))
                && let Ok(client) = ketch_client::Client::from_config(&cfg)
                // `/readyz` answers `ok`, not JSON: a 200 is a decode error here.
                && matches!(
                    client.get_path("/readyz").await,
                    Ok(_) | Err(ketch_client::Error::Decode { .. })
                )
            {
                break client;
            }
            assert!(Instant::now() < deadline, "server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        BenchServer {
            child,
            dir,
            client,
            url,
        }
    }

    /// What `ketch token create ARGS` prints, run against this server.
    pub fn token_create(&self, args: &[&str]) -> String {
        let out = Command::new(ketch_bin())
            .args(["token", "create"])
            .args(args)
            .env("KETCH_CONFIG", self.dir.path().join("config"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A join token (`ketch token create FLAG`, FLAG `--join` or `--join-server`).
    pub fn join_token(&self, flag: &str) -> String {
        self.token_create(&[flag])
            .split_whitespace()
            .skip_while(|w| *w != "--token")
            .nth(1)
            .expect("a token in the output")
            .to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The benchmark's scratch dir; the server's data is in `data/` below it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An address of this host that is not loopback, on a dummy link the bench makes and
/// removes (root only): hand-written EndpointSlices may not name loopback, so a native back
/// end the gateway reaches through one listens here.
pub struct OutsideAddress {
    link: String,
    pub ip: std::net::Ipv4Addr,
}

impl OutsideAddress {
    /// # Panics
    /// When the link cannot be made (not root).
    pub fn create() -> OutsideAddress {
        let link = format!("kbench{}", std::process::id() % 100_000);
        // 10.213.255.0/24: the e2e tests' namespaces use 10.213.1–251.0/24.
        let ip = std::net::Ipv4Addr::new(10, 213, 255, (std::process::id() % 250) as u8 + 2);
        let addr = format!("{ip}/32");
        for args in [
            &["link", "add", &link, "type", "dummy"][..],
            &["addr", "add", &addr, "dev", &link],
            &["link", "set", &link, "up"],
        ] {
            let ok = std::process::Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "ip {} failed (the bench needs root)", args.join(" "));
        }
        OutsideAddress { link, ip }
    }
}

impl Drop for OutsideAddress {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.link])
            .status();
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `p` quantile (0–1) of sorted samples.
pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// utime + stime of a process, seconds (10 ms ticks).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Resident set size of a process, KiB (`VmRSS` in /proc).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub fn running_and_ready(pod: &serde_json::Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Follows all Pods in `default`; sends (app label, instant) the first time each Pod is
/// Running and Ready.
pub fn watch_ready(
    client: ketch_client::Client,
    from: String,
) -> tokio::sync::mpsc::UnboundedReceiver<(String, Instant)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let pods = ketch_api::resource::lookup("pods").unwrap();
    tokio::spawn(async move {
        let stream = ketch_client::watcher::<serde_json::Value>(
            client,
            pods,
            Some("default".into()),
            ketch_client::ListParams::default(),
            Some(from),
        );
        futures_util::pin_mut!(stream);
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        while let Some(ev) = stream.next().await {
            let now = Instant::now();
            let objs = match ev {
                Ok(ketch_client::Event::Added(p) | ketch_client::Event::Modified(p)) => vec![p],
                Ok(ketch_client::Event::Restarted(ps)) => ps,
                Ok(ketch_client::Event::Deleted(_)) => continue,
                Err(e) => {
                    eprintln!("watch error: {e}");
                    continue;
                }
            };
            for p in objs {
                if !running_and_ready(&p) {
                    continue;
                }
                let name = p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if seen.insert(name) {
                    let app = p["metadata"]["labels"]["app"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    if tx.send((app, now)).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// The current resourceVersion of `resource` in `default` (where a watch starts "from now").
pub async fn head_rv(
    client: &ketch_client::Client,
    resource: &'static ketch_api::ResourceInfo,
) -> String {
    let head = client
        .list(resource, Some("default"), &Default::default())
        .await
        .unwrap();
    head["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Creates `obj` (a `resource` in `default`) and waits, up to `budget`, for a Pod labelled
/// `app=<app>` to be reported Running and Ready on `ready`: how long that took.
pub async fn create_and_wait_ready(
    client: &ketch_client::Client,
    ready: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Instant)>,
    resource: &'static ketch_api::ResourceInfo,
    obj: &serde_json::Value,
    app: &str,
    budget: Duration,
) -> Duration {
    let t = Instant::now();
    client.create(resource, Some("default"), obj).await.unwrap();
    loop {
        let (got, at) = tokio::time::timeout(budget, ready.recv())
            .await
            .expect("the pod Running and Ready in time")
            .expect("watcher alive");
        if got == app {
            return at.saturating_duration_since(t);
        }
    }
}

/// Waits until `url` (with `host`) answers 200.
pub async fn wait_200(http: &reqwest::Client, url: &str, host: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut req = http.get(url);
        if let Some(h) = host {
            req = req.header("host", h);
        }
        if req.send().await.is_ok_and(|r| r.status() == 200) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} ({host:?}) never answered 200"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// `file:PATH`: how a manifest names a local component.
/// Where the benches' `file:` images live (the workspace: test guests and examples, and
/// temporary directories), for the servers and agents they start.
pub fn file_image_dirs() -> String {
    format!(
        "{}:{}",
        env!("CARGO_MANIFEST_DIR"),
        std::env::temp_dir().display()
    )
}

pub fn file_image(path: &str) -> String {
    format!("file:{path}")
}

/// A 1-replica Deployment `name` (label `app: name`) of `image` (a full reference).
pub fn deployment(name: &str, image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]}}}})
}

/// A Service `name` on port 80 selecting `app: name`.
pub fn service(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}})
}

/// Creates [`deployment`] and [`service`] `name` in `default`.
pub async fn deploy(server: &BenchServer, name: &str, image: &str) {
    let c = &server.client;
    let deployments = ketch_api::resource::lookup("deployments").unwrap();
    let services = ketch_api::resource::lookup("services").unwrap();
    c.create(deployments, Some("default"), &deployment(name, image))
        .await
        .unwrap();
    c.create(services, Some("default"), &service(name))
        .await
        .unwrap();
}

/// `wasm` with a custom section appended: a valid component with a different digest, so
/// each "app" is compiled and cached on its own.
pub fn variant(wasm: &[u8], i: usize, dir: &std::path::Path) -> String {
    let name = b"ketch-bench";
    let payload = format!("variant {i}");
    let mut section = vec![u8::try_from(name.len()).unwrap()];
    section.extend_from_slice(name);
    section.extend_from_slice(payload.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0); // custom section id
    out.push(u8::try_from(section.len()).unwrap()); // LEB128 size (< 128)
    out.extend_from_slice(&section);
    let path = dir.join(format!("hello-{i}.wasm"));
    std::fs::write(&path, out).unwrap();
    path.to_string_lossy().into_owned()
}
