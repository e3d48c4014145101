//! Test harness: start the real `ketch` binary on a free loopback port with its own data
//! dir and client config, run CLI commands against it, and stop it by PID.

use std::path::{Path, PathBuf};

use serde_json::Value;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const KETCH: &str = env!("CARGO_BIN_EXE_ketch");

/// Where the tests' `file:` images live: the test guests' directory and temporary
/// directories (the servers and agents the tests start allow only these).
pub fn file_image_dirs() -> String {
    let guests = Path::new(ketch_test_guests::HELLO)
        .parent()
        .expect("the guests' directory");
    format!("{}:{}", guests.display(), std::env::temp_dir().display())
}

/// A `ketch` command that may read the tests' `file:` images.
pub fn ketch_cmd() -> Command {
    let mut cmd = Command::new(KETCH);
    cmd.env("KETCH_ALLOW_FILE_IMAGES", file_image_dirs());
    cmd
}

/// Every cluster CA this test process has seen (from the client configs its servers wrote):
/// test clients trust them all, as a user trusts the CA in their client config.
static CAS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Trust `ca` (PEM) in the clients this process makes from now on.
pub fn trust(ca: &str) {
    let mut cas = CAS.lock().unwrap();
    if !cas.iter().any(|c| c == ca) {
        cas.push(ca.to_string());
    }
}

/// The CAs trusted so far, as one PEM bundle (`None` before any server started).
pub fn trusted() -> Option<String> {
    let cas = CAS.lock().unwrap();
    (!cas.is_empty()).then(|| cas.join("\n"))
}

/// A reqwest client trusting the clusters' CAs (plain `http://` URLs, the gateways, work
/// too); it follows no redirects, like ketch's own clients.
pub fn reqwest_client() -> reqwest::Client {
    ketch_tls::install_default_provider();
    let mut b = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = trusted() {
        b = b.tls_backend_preconfigured(ketch_tls::client_config(&ca, None).unwrap());
    }
    b.build().unwrap()
}

/// A ketch client for `servers` with `token`, trusting the clusters' CAs.
pub fn client_for(servers: &[String], token: &str) -> ketch_client::Client {
    let tls = trusted().map(|ca| ketch_client::TlsSettings {
        certificate_authority: ca,
        client_certificate: None,
        client_key: None,
    });
    ketch_client::Client::with_tls(servers, token, tls.as_ref()).unwrap()
}

/// A running `ketch server` owned by one test.
pub struct Server {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub url: String,
    pub token: String,
    pub port: u16,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    pub fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, free_port())
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    /// Start a server with extra `ketch server` flags.
    pub fn start_with(args: &[&str]) -> Server {
        Self::start_full(tempfile::tempdir().unwrap(), free_port(), args)
    }

    /// Start (or restart) a server on `port` with its data in `dir`.
    pub fn start_in(dir: tempfile::TempDir, port: u16) -> Server {
        Self::start_full(dir, port, &[])
    }

    /// Start (or restart) a server on `port` with its data in `dir` and extra flags.
    pub fn start_full(dir: tempfile::TempDir, port: u16, extra: &[&str]) -> Server {
        Self::spawn_full(dir, port, extra).ready()
    }

    /// Like [`Server::start_full`] without waiting for readiness: a restarting member of a
    /// cluster is ready only once enough of the others are up to elect a leader.
    pub fn spawn_full(dir: tempfile::TempDir, port: u16, extra: &[&str]) -> Starting {
        Self::spawn_at(dir, &Place::loopback(port), extra)
    }

    /// [`Server::spawn_full`] at `place` (an address in a network namespace, say).
    pub fn spawn_at(dir: tempfile::TempDir, place: &Place, extra: &[&str]) -> Starting {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("server.log"))
            .unwrap();
        // `ip netns exec` execs ketch in the namespace: the child's PID is ketch's own.
        let mut cmd = match &place.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, KETCH]);
                c.env("KETCH_ALLOW_FILE_IMAGES", file_image_dirs());
                c
            }
            None => ketch_cmd(),
        };
        let child = cmd
            .args(["server", "--listen", &place.addr(), "--data-dir"])
            .arg(dir.path().join("data"))
            .args(extra)
            // Tests run in parallel: every gateway on a free loopback port.
            .args(
                (!extra.iter().any(|a| a.contains("gateway")))
                    .then_some(["--gateway", "127.0.0.1:0"])
                    .into_iter()
                    .flatten(),
            )
            // And every gateway TLS listener (default 0.0.0.0:8443) too.
            .args(free_tls_listener(extra))
            .env("KETCH_CONFIG", dir.path().join("config"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ketch server");
        Starting(Server {
            child,
            dir,
            url: format!("https://{}", place.addr()),
            // Read once ready: a pristine server writes it at startup.
            token: String::new(),
            port: place.port,
        })
    }

    fn log_of(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
    }
}

/// `--gateway-tls 127.0.0.1:0` unless `extra` sets the TLS listener or turns the gateway off:
/// tests run in parallel, and the default (`:8443`) would collide.
pub fn free_tls_listener(extra: &[&str]) -> Vec<&'static str> {
    let set = extra
        .iter()
        .any(|a| a.starts_with("--gateway-tls") || a.starts_with("--no-gateway"));
    if set {
        Vec::new()
    } else {
        vec!["--gateway-tls", "127.0.0.1:0"]
    }
}

/// Where a server listens: a loopback port, or an address inside a network namespace.
#[derive(Debug, Clone)]
pub struct Place {
    pub host: String,
    pub port: u16,
    pub netns: Option<String>,
}

impl Place {
    pub fn loopback(port: u16) -> Place {
        Place {
            host: "127.0.0.1".into(),
            port,
            netns: None,
        }
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A spawned server not yet known to be ready (killed on drop like a [`Server`]).
pub struct Starting(Server);

impl Starting {
    /// kill -9 before it was ready, and wait; returns the data dir for a restart.
    pub fn kill9(self) -> (tempfile::TempDir, u16) {
        self.0.kill9()
    }

    /// Wait up to 30 s for `/readyz` and the client config.
    pub fn ready(self) -> Server {
        let Starting(mut server) = self;
        let (url, dir) = (&server.url, &server.dir);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // The server writes the client config (with the CA to verify it by) once it
            // serves; then /readyz must say ready.
            if let Ok(cfg) = ketch_client::ClientConfig::load(&dir.path().join("config"))
                && let Some(ca) = &cfg.certificate_authority
            {
                trust(ca);
                if blocking_get(&format!("{url}/readyz")) == Some(200) {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "server did not become ready: {}",
                Server::log_of(dir.path())
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server.token = std::fs::read_to_string(dir.path().join("data/admin.token"))
            .unwrap()
            .trim()
            .to_string();
        server
    }
}

impl Server {
    pub fn log(&self) -> String {
        Self::log_of(self.dir.path())
    }

    /// Run `ketch ARGS` against this server (through its client config file).
    pub fn ketch(&self, args: &[&str]) -> Output {
        self.ketch_stdin(args, None)
    }

    pub fn ketch_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write as _;
        let mut child = ketch_cmd()
            .args(args)
            .env("KETCH_CONFIG", self.config_path())
            .env_remove("KETCH_SERVER")
            .env_remove("KETCH_TOKEN")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// Run `ketch ARGS`, assert success, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.ketch(args);
        assert!(
            out.status.success(),
            "ketch {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Run `ketch ARGS`, assert failure, return stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.ketch(args);
        assert!(
            !out.status.success(),
            "ketch {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    pub fn client(&self) -> ketch_client::Client {
        client_for(std::slice::from_ref(&self.url), &self.token)
    }

    /// The cluster CA (from the client config) in a file, for `--certificate-authority`.
    pub fn ca_file(&self) -> PathBuf {
        let cfg = ketch_client::ClientConfig::load(&self.config_path()).unwrap();
        let path = self.dir.path().join("ca.crt");
        std::fs::write(&path, cfg.certificate_authority.unwrap()).unwrap();
        path
    }

    /// A join token for a node (`ketch token create --join`), as `ketch agent --token`
    /// takes it.
    pub fn join_token(&self) -> String {
        self.created_token(&["token", "create", "--join"])
    }

    /// A join token for a server (`ketch token create --join-server`).
    pub fn server_join_token(&self) -> String {
        self.created_token(&["token", "create", "--join-server"])
    }

    fn created_token(&self, args: &[&str]) -> String {
        let out = self.ok(args);
        out.split_whitespace()
            .skip_while(|w| *w != "--token")
            .nth(1)
            .unwrap_or_else(|| panic!("no token in {out:?}"))
            .to_string()
    }

    /// The gateway URL of node `node` (its `ketch.dev/gateway-endpoint` annotation), once
    /// the node has registered.
    pub fn gateway_of(&self, node: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.ketch(&["get", "node", node, "-o", "json"]);
            if out.status.success() {
                let n: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                if let Some(url) =
                    n["metadata"]["annotations"]["ketch.dev/gateway-endpoint"].as_str()
                {
                    return url.to_string();
                }
            }
            assert!(
                Instant::now() < deadline,
                "node {node} has no gateway endpoint"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The gateway of the server's own node (the only node unless a test adds agents).
    pub fn gateway(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let names = self.ok(&["get", "nodes", "-o", "name"]);
            if let Some(first) = names.lines().next() {
                return self.gateway_of(first.trim().trim_start_matches("node/"));
            }
            assert!(Instant::now() < deadline, "no node registered");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn http(&self) -> reqwest::Client {
        reqwest_client()
    }

    /// `/metrics` as the admin.
    pub async fn metrics(&self) -> String {
        self.http()
            .get(format!("{}/metrics", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// kill -9 and wait; returns the data dir for a restart.
    pub fn kill9(mut self) -> (tempfile::TempDir, u16) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let port = self.port;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (dir, port)
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(mut self) -> (tempfile::TempDir, u16) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "server exited with {status}: {}",
                    self.log()
                );
                break;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
        let port = self.port;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (dir, port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three `--no-agent` servers on loopback: the first founds the cluster, the others join
/// through it.
pub fn three_servers() -> Vec<Server> {
    let places: Vec<_> = (0..3).map(|_| Place::loopback(free_port())).collect();
    cluster_at(&places, &[])
}

/// A `--no-agent` server at each place, with `extra` flags: the first founds the cluster,
/// the others join through it.
pub fn cluster_at(places: &[Place], extra: &[&str]) -> Vec<Server> {
    let flags = [&["--no-agent"][..], extra].concat();
    let start = |place: &Place, flags: &[&str]| {
        Server::spawn_at(tempfile::tempdir().unwrap(), place, flags).ready()
    };
    // Joining hands the new server the CA, the admin token and the Secret keys.
    let first = start(&places[0], &flags);
    let (via, token) = (places[0].addr(), first.server_join_token());
    let join = [&flags[..], &["--join", &via, "--token", &token]].concat();
    let mut servers = vec![first];
    servers.extend(places[1..].iter().map(|p| start(p, &join)));
    servers
}

/// A status probe for readiness polling: on its own thread and runtime, so async tests
/// (already inside a runtime) can start servers too.
fn blocking_get(url: &str) -> Option<u16> {
    let url = url.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let resp = reqwest_client()
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .ok()?;
            Some(resp.status().as_u16())
        })
    })
    .join()
    .unwrap()
}

/// The node's annotation `key` (a URL).
pub fn node_annotation(s: &Server, node: &str, key: &str) -> String {
    eventually(30, &format!("node {node}'s {key}"), || {
        let out = s.ketch(&["get", "node", node, "-o", "json"]);
        let n: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        n["metadata"]["annotations"][key]
            .as_str()
            .map(str::to_string)
    })
}

pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Poll `check` until it returns Some, or fail with `what` after `secs`.
pub fn eventually<T>(secs: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn pods(s: &Server, selector: &str) -> Vec<Value> {
    let out = s.ok(&["get", "pods", "-l", selector, "-o", "json"]);
    let list: Value = serde_json::from_str(&out).unwrap();
    list["items"].as_array().cloned().unwrap_or_default()
}

pub fn running_ready(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
        && p.pointer("/metadata/deletionTimestamp").is_none()
        && p["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Wait until exactly `n` Pods match and all are Running and Ready; return their names.
pub fn wait_running(s: &Server, selector: &str, n: usize) -> Vec<String> {
    eventually(60, &format!("{n} running pods ({selector})"), || {
        let ps = pods(s, selector);
        (ps.len() == n && ps.iter().all(running_ready)).then(|| {
            ps.iter()
                .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
                .collect()
        })
    })
}

/// A plain HTTP request from the test (a fresh current-thread runtime per call, as tests
/// are synchronous): `(status, headers, body)`.
pub fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    try_http(method, url, headers, body).unwrap_or_else(|| panic!("{method} {url}: no response"))
}

/// [`http`], or `None` when no response came (connection refused, reset).
pub fn try_http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Option<(u16, reqwest::header::HeaderMap, String)> {
    try_http_within(Duration::from_secs(120), method, url, headers, body)
}

/// [`try_http`], also `None` when the whole exchange takes longer than `timeout`.
pub fn try_http_within(
    timeout: Duration,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Option<(u16, reqwest::header::HeaderMap, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req = reqwest_client()
            .request(method.parse().unwrap(), url)
            .timeout(timeout);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let resp = req.send().await.ok()?;
        let code = resp.status().as_u16();
        let headers = resp.headers().clone();
        Some((code, headers, resp.text().await.ok()?))
    })
}

/// A `ketch up DIR` process with its stdout lines on a channel.
pub struct KetchUp {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub gw_port: u16,
    lines: std::sync::mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl KetchUp {
    /// Starts `ketch up EXAMPLE` (a directory under `examples/`) with its own data dir, API
    /// and gateway ports, and `extra` flags.
    pub fn start(example: &str, extra: &[&str]) -> KetchUp {
        Self::spawn(example, extra, true)
    }

    /// [`KetchUp::start`] without `--data-dir`, run in its own temp dir: the data goes to
    /// the default, `./.ketch`, a relative path (`dir/.ketch`).
    pub fn start_with_the_default_data_dir(example: &str, extra: &[&str]) -> KetchUp {
        Self::spawn(example, extra, false)
    }

    fn spawn(example: &str, extra: &[&str], data_dir_flag: bool) -> KetchUp {
        use std::io::BufRead as _;
        let dir = tempfile::tempdir().unwrap();
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(example);
        let gw_port = free_port();
        let mut cmd = ketch_cmd();
        cmd.arg("up").arg(&path);
        if data_dir_flag {
            cmd.arg("--data-dir").arg(dir.path().join("state"));
        } else {
            cmd.current_dir(dir.path());
        }
        let mut child = cmd
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--gateway", &format!("127.0.0.1:{gw_port}")])
            .args(free_tls_listener(extra))
            .args(extra)
            .env("KETCH_CONFIG", dir.path().join("config"))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("up.log")).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        KetchUp {
            child,
            dir,
            gw_port,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits up to `secs` for a line starting with `prefix`; returns the rest of it.
    pub fn wait_line(&mut self, prefix: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let line = self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| {
                    panic!(
                        "no line starting with {prefix:?}; output so far:\n{}\n{}",
                        self.seen.join("\n"),
                        self.log()
                    )
                });
            self.seen.push(line.clone());
            if let Some(rest) = line.trim().strip_prefix(prefix) {
                return rest.to_string();
            }
        }
    }

    /// `ketch ARGS` against the cluster this runs (its client config); stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = ketch_cmd()
            .args(args)
            .env("KETCH_CONFIG", self.dir.path().join("config"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ketch {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// What `ketch up` wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("up.log")).unwrap_or_default()
    }

    /// Whether a line containing `needle` has been printed by now.
    pub fn printed(&mut self, needle: &str) -> bool {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
        self.seen.iter().any(|l| l.contains(needle))
    }

    /// Ctrl-C, then the exit status (within `secs`).
    pub fn interrupt(mut self, secs: u64) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "ketch up did not stop on SIGINT");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for KetchUp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
