//! Shared by the benchmark harnesses: start a real `ketch server` on a free loopback port
//! with its data on the real disk, and the small statistics they all print.
#![allow(
    dead_code,
    reason = "each bench compiles this module and uses a different subset of it"
)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `ketch server` process owned by one benchmark; killed when dropped.
pub struct BenchServer {
    child: Child,
    dir: tempfile::TempDir,
    pub client: ketch_client::Client,
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
        let mut cmd = match cpu {
            Some(c) => {
                let mut t = Command::new("taskset");
                t.args(["-c", &c.to_string(), env!("CARGO_BIN_EXE_ketch")]);
                t
            }
            None => Command::new(env!("CARGO_BIN_EXE_ketch")),
        };
        let child = cmd
            .args(["server", "--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .args(
                (!extra.iter().any(|a| a.contains("gateway")))
                    .then_some(["--gateway", "127.0.0.1:0"])
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
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let code = http
                .get(format!("{url}/readyz"))
                .send()
                .await
                .map(|r| r.status().as_u16());
            if code.is_ok_and(|c| c == 200) {
                break;
            }
            assert!(Instant::now() < deadline, "server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let token = std::fs::read_to_string(dir.path().join("data/admin.token")).unwrap();
        let client = ketch_client::Client::new(&url, token.trim()).unwrap();
        BenchServer { child, dir, client }
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
