//! The cluster on a network: TLS on every port, no credential in cleartext, certificates
//! from the cluster CA only, and each identity kept to what it may do.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{Server, eventually, node_annotation};

/// A TCP relay on loopback that records every byte it passes, both ways: what someone on
/// the path between two machines sees.
struct Relay {
    port: u16,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Relay {
    fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let record = record.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            match from.read(&mut buf) {
                                Ok(0) | Err(_) => {
                                    let _ = to.shutdown(std::net::Shutdown::Write);
                                    return;
                                }
                                Ok(n) => {
                                    record.lock().unwrap().extend_from_slice(&buf[..n]);
                                    if to.write_all(&buf[..n]).is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                    });
                }
            }
        });
        Relay { port, seen }
    }

    fn saw(&self, needle: &[u8]) -> bool {
        let seen = self.seen.lock().unwrap();
        !needle.is_empty() && seen.windows(needle.len()).any(|w| w == needle)
    }

    fn bytes(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

fn addr_of(url: &str) -> SocketAddr {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap();
    rest.split('/').next().unwrap().parse().unwrap()
}

fn first_node(s: &Server) -> String {
    eventually(30, "a node", || {
        let names = s.ok(&["get", "nodes", "-o", "name"]);
        names
            .lines()
            .next()
            .map(|l| l.trim().trim_start_matches("node/").to_string())
    })
}

/// What a plaintext HTTP request to `addr` gets back (the first bytes, if any).
fn plaintext_answer(addr: SocketAddr) -> String {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer not-a-secret\r\nConnection: close\r\n\r\n"
    );
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

#[test]
fn no_token_crosses_the_wire_and_plaintext_is_refused_on_every_port() {
    let s = Server::start();
    let ca = s.ca_file();
    let relay = Relay::start(addr_of(&s.url));
    let via = format!("https://127.0.0.1:{}", relay.port);
    // The CLI through the relay, with the admin token.
    let out = crate::support::ketch_cmd()
        .args([
            "get",
            "namespaces",
            "-o",
            "name",
            "--server",
            &via,
            "--token",
            &s.token,
        ])
        .arg("--certificate-authority")
        .arg(&ca)
        .env("KETCH_CONFIG", s.dir.path().join("no-config"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("namespace/default"));
    // A node joins through the relay with a join token, then talks to the server there.
    let join = s.join_token();
    let log = std::fs::File::create(s.dir.path().join("relayed-agent.log")).unwrap();
    let mut agent = crate::support::ketch_cmd()
        .args([
            "agent", "--server", &via, "--token", &join, "--name", "relayed",
        ])
        .args([
            "--agent-listen",
            "127.0.0.1:0",
            "--gateway",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(s.dir.path().join("relayed-agent"))
        .env("KETCH_CONFIG", s.dir.path().join("no-config"))
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    eventually(60, "the relayed node to be Ready", || {
        let out = s.ketch(&["get", "node", "relayed", "-o", "json"]);
        let n: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        n["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
            .then_some(())
    });
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(relay.bytes() > 1000, "the relay carried the traffic");
    let secret = join.rsplit('.').next().unwrap();
    for (what, needle) in [
        ("the admin token", s.token.as_bytes()),
        ("the join token's secret", secret.as_bytes()),
        ("an Authorization header", b"Bearer ".as_slice()),
        ("an API path", b"/api/v1".as_slice()),
    ] {
        assert!(!relay.saw(needle), "{what} crossed the relay in cleartext");
    }

    // Every port of the server's process speaks TLS only: the API, the agent endpoint and
    // the gateway's peer listener. (The public gateway listener serves plain HTTP apps.)
    let node = first_node(&s);
    for (what, url) in [
        ("the API", s.url.clone()),
        (
            "the agent endpoint",
            node_annotation(&s, &node, "ketch.dev/agent-endpoint"),
        ),
        (
            "the gateway's peer listener",
            node_annotation(&s, &node, "ketch.dev/gateway-peer-endpoint"),
        ),
    ] {
        assert!(url.starts_with("https://"), "{what}: {url}");
        let answer = plaintext_answer(addr_of(&url));
        assert!(
            !answer.contains(" 200 ") && !answer.contains("ok"),
            "{what} answered plaintext: {answer:?}"
        );
    }
}

/// A client trusting `ca` (PEM) and presenting `cert` (certificate and key PEM), if any.
fn tls_client(ca: &str, cert: Option<(&str, &str)>) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(ketch_tls::client_config(ca, cert).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The status of `req`, or `None` when no answer came (the handshake failed).
fn status_of(req: reqwest::RequestBuilder) -> Option<u16> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { req.send().await.ok().map(|r| r.status().as_u16()) })
}

#[test]
fn certificates_from_another_ca_are_refused() {
    let s = Server::start();
    let ca = std::fs::read_to_string(s.ca_file()).unwrap();
    // A rogue CA issues itself a "server" certificate: raft refuses it.
    let rogue = ketch_tls::ClusterCa::generate().unwrap();
    let fake = rogue
        .issue(
            &ketch_tls::server_identity(1),
            &["127.0.0.1".into()],
            ketch_tls::Usage::ServerAndClient,
        )
        .unwrap();
    let client = tls_client(&ca, Some((&fake.cert_pem, &fake.key_pem)));
    let answer = status_of(client.post(format!("{}/raft/vote", s.url)).body("{}"));
    assert_eq!(answer, None, "a rogue certificate got an answer");
    // A client trusting another CA does not trust the server.
    let client = tls_client(rogue.cert_pem(), None);
    assert_eq!(status_of(client.get(format!("{}/healthz", s.url))), None);
    // Without a certificate, raft and the cluster's keys are closed; health is open.
    let client = tls_client(&ca, None);
    assert_eq!(
        status_of(client.get(format!("{}/healthz", s.url))),
        Some(200)
    );
    let vote = status_of(client.post(format!("{}/raft/vote", s.url)).body("{}"));
    assert_eq!(vote, Some(401));
    let keys = status_of(
        client
            .get(format!("{}/cluster/bootstrap", s.url))
            .bearer_auth(&s.token),
    );
    assert_eq!(keys, Some(403), "not even the admin gets the CA key");
}

/// A client presenting the certificate a node agent keeps in `agent_dir/pki`.
fn node_client(agent_dir: &std::path::Path) -> reqwest::Client {
    let read = |f: &str| std::fs::read_to_string(agent_dir.join("pki").join(f)).unwrap();
    tls_client(
        &read("ca.crt"),
        Some((&read("node.crt"), &read("node.key"))),
    )
}

/// Starts `ketch agent` for node `name` with a join token; waits until it is Ready.
fn join_node(s: &Server, name: &str) -> (std::process::Child, std::path::PathBuf) {
    let dir = s.dir.path().join(format!("{name}-agent"));
    let log = std::fs::File::create(s.dir.path().join(format!("{name}.log"))).unwrap();
    let child = crate::support::ketch_cmd()
        .args([
            "agent",
            "--server",
            &s.url,
            "--token",
            &s.join_token(),
            "--name",
            name,
        ])
        .args(["--agent-listen", "127.0.0.1:0", "--gateway", "127.0.0.1:0"])
        .args([
            "--gateway-tls",
            "127.0.0.1:0",
            "--no-containerd",
            "--data-dir",
        ])
        .arg(&dir)
        .env("KETCH_CONFIG", s.dir.path().join("no-config"))
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    eventually(60, &format!("node {name} to be Ready"), || {
        let out = s.ketch(&["get", "node", name, "-o", "json"]);
        let n: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        n["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
            .then_some(())
    });
    (child, dir)
}

#[test]
fn each_identity_gets_only_what_it_may() {
    let s = Server::start();
    let (mut a, a_dir) = join_node(&s, "node-a");
    let (mut b, _) = join_node(&s, "node-b");
    let url = |p: &str| format!("{}{p}", s.url);
    let f = crate::support::write_file(
        s.dir.path(),
        "objects.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {name: lonely, namespace: default}\n\
         stringData: {k: v}\n",
    );
    s.ok(&["apply", "-f", f.to_str().unwrap()]);

    // Node A: its own Node, not node B's; no Secret its Pods do not use; not raft, not the
    // cluster's keys, not a server certificate.
    let node_a = node_client(&a_dir);
    let get = |c: &reqwest::Client, p: &str| status_of(c.get(url(p)));
    assert_eq!(get(&node_a, "/api/v1/nodes/node-a"), Some(200));
    let patch_b = node_a
        .patch(url("/api/v1/nodes/node-b"))
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"metadata":{"labels":{"stolen":"yes"}}}"#);
    assert_eq!(status_of(patch_b), Some(403), "node A relabels node B");
    assert_eq!(
        get(&node_a, "/api/v1/namespaces/default/secrets/lonely"),
        Some(403)
    );
    assert_eq!(get(&node_a, "/api/v1/secrets"), Some(403));
    assert_eq!(
        get(&node_a, "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-b"),
        Some(403)
    );
    assert_eq!(
        get(&node_a, "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-a"),
        Some(200)
    );
    assert_eq!(
        status_of(node_a.post(url("/raft/vote")).body("{}")),
        Some(403)
    );
    assert_eq!(get(&node_a, "/cluster/bootstrap"), Some(403));
    let (csr, _) = ketch_tls::csr("x").unwrap();
    let as_server = node_a
        .post(url("/cluster/certificates"))
        .json(&serde_json::json!({
            "kind": "server", "serverId": 7, "csr": csr, "addresses": [],
        }));
    assert_eq!(status_of(as_server), Some(403));

    // A join token: nothing but its certificate.
    let ca = std::fs::read_to_string(s.ca_file()).unwrap();
    let anon = tls_client(&ca, None);
    let join = s.join_token();
    let bearer = join.rsplit("::").next().unwrap().to_string();
    let with = |rb: reqwest::RequestBuilder| status_of(rb.bearer_auth(&bearer));
    assert_eq!(with(anon.get(url("/api/v1/namespaces"))), Some(403));
    assert_eq!(
        with(anon.get(url("/api/v1/namespaces/default/secrets"))),
        Some(403)
    );
    let node_csr = anon
        .post(url("/cluster/certificates"))
        .json(&serde_json::json!({
            "kind": "node", "nodeName": "node-c", "csr": csr, "addresses": ["127.0.0.1"],
        }));
    assert_eq!(with(node_csr), Some(200));
    let server_csr = anon
        .post(url("/cluster/certificates"))
        .json(&serde_json::json!({
            "kind": "server", "serverId": 7, "csr": csr, "addresses": [],
        }));
    assert_eq!(
        with(server_csr),
        Some(403),
        "a node join token makes no server"
    );

    // A user token: nothing until a binding, then what the binding grants, where.
    let alice = s
        .ok(&["token", "create", "--user", "alice"])
        .trim()
        .to_string();
    let as_alice = |p: &str| status_of(anon.get(url(p)).bearer_auth(&alice));
    assert_eq!(as_alice("/api/v1/namespaces/default/pods"), Some(403));
    let f = crate::support::write_file(
        s.dir.path(),
        "alice.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n\
         metadata: {name: alice-views, namespace: default}\n\
         roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}\n\
         subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}]\n",
    );
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    eventually(10, "alice's binding", || {
        (as_alice("/api/v1/namespaces/default/pods") == Some(200)).then_some(())
    });
    assert_eq!(
        as_alice("/api/v1/namespaces/team/pods"),
        Some(403),
        "another namespace"
    );
    assert_eq!(
        as_alice("/api/v1/namespaces/default/secrets"),
        Some(403),
        "view reads no Secrets"
    );

    // A ServiceAccount token: its namespace only.
    let robot = s
        .ok(&["token", "create", "--service-account", "team/robot"])
        .trim()
        .to_string();
    let f = crate::support::write_file(
        s.dir.path(),
        "robot.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n\
         metadata: {name: robot-edits, namespace: team}\n\
         roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}\n\
         subjects: [{kind: ServiceAccount, name: robot, namespace: team}]\n",
    );
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    let cm = |ns: &str| {
        status_of(
            anon.post(url(&format!("/api/v1/namespaces/{ns}/configmaps")))
                .bearer_auth(&robot)
                .json(&serde_json::json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": format!("made-by-robot-{}", rand::random::<u32>())},
                })),
        )
    };
    eventually(10, "the robot's binding", || {
        (cm("team") == Some(201)).then_some(())
    });
    assert_eq!(cm("default"), Some(403));
    let _ = a.kill();
    let _ = b.kill();
    let _ = a.wait();
    let _ = b.wait();
}
