//! End-to-end tests of the node agent against a real in-process API server and real wasmtime.

use std::time::Duration;

use axum::body::Body;
use http_body_util_compat::collect;
use ketch_agent::{Agent, AgentConfig, AgentError};
use ketch_api::coordination::Lease;
use ketch_api::core::{Event, Node, Pod};
use ketch_api::resource::Resource;
use ketch_client::{Client, ListParams};
use ketch_control::server::{Server, ServerOptions};
use ketch_workload::PodError;
use serde_json::json;

mod http_body_util_compat {
    use axum::body::Body;

    /// Reads a whole body as text.
    pub async fn collect(body: Body) -> String {
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// A registry on a loopback port that has one container image manifest, `app:1`, and
/// answers everything else as distribution does for a missing tag.
async fn fake_registry() -> String {
    use axum::http::{StatusCode, header};
    use sha2::Digest as _;
    const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{}", "0".repeat(64)), "size": 2},
        "layers": []
    })
    .to_string();
    let digest = format!("sha256:{:x}", sha2::Sha256::digest(manifest.as_bytes()));
    let app = axum::Router::new()
        .route("/v2/", axum::routing::get(|| async { "{}" }))
        .route(
            "/v2/app/manifests/1",
            axum::routing::get(move || async move {
                (
                    [
                        (header::CONTENT_TYPE, OCI_MANIFEST.to_string()),
                        (
                            header::HeaderName::from_static("docker-content-digest"),
                            digest,
                        ),
                    ],
                    manifest,
                )
            }),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            )
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr.to_string()
}

struct Cluster {
    server: Server,
    agent: Agent,
    client: Client,
    node: String,
    data: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let data = tempfile::tempdir().unwrap();
        let server = Server::start(ServerOptions::new(
            data.path().join("server"),
            "127.0.0.1:0".parse().unwrap(),
        ))
        .await
        .unwrap();
        let url = server.url();
        let node = "node-a".to_string();
        let mut cfg = AgentConfig::new(&url, &server.token, &node, data.path().join("agent"));
        // The agent calls the server in process, as `ketch server`'s own agent does; without
        // a node certificate its endpoint takes the token (these tests call it directly).
        cfg.in_process = Some(server.in_process());
        cfg.max_wasm_instances = 16;
        // The test guests' directory: file: images elsewhere are refused.
        cfg.file_image_dirs = vec![
            std::path::Path::new(ketch_test_guests::HELLO)
                .parent()
                .unwrap()
                .to_path_buf(),
            data.path().to_path_buf(),
        ];
        cfg.memory_bytes = Some(1 << 30);
        cfg.cpu_millis = Some(2000);
        let agent = Agent::start(cfg).await.unwrap();
        let client = server.client().unwrap();
        Cluster {
            server,
            agent,
            client,
            node,
            data,
        }
    }

    async fn create_pod(&self, name: &str, image: &str, extra: serde_json::Value) -> Pod {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "nodeName": self.node,
                "containers": [{"name": "app", "image": image}],
            },
        });
        merge(&mut pod, extra);
        let v = self
            .client
            .create(Pod::INFO, Some("default"), &pod)
            .await
            .unwrap();
        serde_json::from_value(v).unwrap()
    }

    async fn pod(&self, name: &str) -> Option<Pod> {
        self.client.api::<Pod>(Some("default")).get(name).await.ok()
    }

    /// Polls the Pod until `f` holds (10 s).
    async fn wait_pod(&self, name: &str, what: &str, f: impl Fn(&Pod) -> bool) -> Pod {
        for _ in 0..200 {
            if let Some(p) = self.pod(name).await
                && f(&p)
            {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "pod {name}: timed out waiting for {what}: {:#?}",
            self.pod(name).await
        );
    }

    /// Waits for the Pod's first container to wait with `reason`; its message.
    async fn waiting_message(&self, pod: &str, reason: &str) -> String {
        let p = self
            .wait_pod(pod, &format!("waiting {reason}"), |p| {
                waiting_reason(p).as_deref() == Some(reason)
            })
            .await;
        p.status
            .and_then(|s| s.container_statuses.into_iter().next())
            .and_then(|c| c.state?.waiting?.message)
            .unwrap_or_default()
    }

    async fn wait_event(&self, pod: &str, f: impl Fn(&Event) -> bool) -> Event {
        for _ in 0..200 {
            let list = self
                .client
                .api::<Event>(Some("default"))
                .list(&ListParams::default())
                .await
                .unwrap();
            if let Some(e) = list
                .items
                .into_iter()
                .find(|e| e.involved_object.name.as_deref() == Some(pod) && f(e))
            {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("pod {pod}: no matching event");
    }

    async fn stop(self) {
        self.agent.stop().await;
        self.server.stop().await.unwrap();
        drop(self.data);
    }
}

fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
    match (a, b) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn running_and_ready(p: &Pod) -> bool {
    let Some(s) = &p.status else { return false };
    s.phase.as_deref() == Some("Running")
        && s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn waiting_reason(p: &Pod) -> Option<String> {
    p.status
        .as_ref()?
        .container_statuses
        .first()?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

fn get(path: &str) -> http::Request<Body> {
    http::Request::get(path).body(Body::empty()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_registers_its_node_and_renews_its_lease() {
    let c = Cluster::start().await;
    let node = c.client.api::<Node>(None).get(&c.node).await.unwrap();
    assert_eq!(
        node.metadata.annotations["ketch.dev/agent-endpoint"],
        c.agent.endpoint()
    );
    assert_eq!(node.metadata.labels["kubernetes.io/hostname"], c.node);
    let st = node.status.unwrap();
    assert_eq!(st.capacity["cpu"].0, "2");
    assert_eq!(st.allocatable["ketch.dev/wasm-instances"].0, "16");
    assert_eq!(st.runtime_handlers[0].name, "wasm");
    let ready = st.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "True");
    assert!(ready.last_heartbeat_time.is_some());
    assert_eq!(st.addresses[0].address, "127.0.0.1");
    let lease = c
        .client
        .api::<Lease>(Some("kube-node-lease"))
        .get(&c.node)
        .await
        .unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(spec.lease_duration_seconds, Some(40));
    assert!(spec.renew_time.is_some());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_pod_runs_serves_in_process_and_by_proxy_logs_and_stops_when_deleted() {
    let c = Cluster::start().await;
    let image = format!("file:{}", ketch_test_guests::HELLO);
    c.create_pod(
        "hello",
        &image,
        json!({"spec": {"containers": [{"name": "app", "image": image,
            "env": [{"name": "GREETING", "value": "hi from $(POD)"},
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]}}),
    )
    .await;
    let pod = c
        .wait_pod("hello", "Running and Ready", running_and_ready)
        .await;
    let st = pod.status.unwrap();
    let cs = &st.container_statuses[0];
    assert!(cs.image_id.starts_with("sha256:"), "{cs:?}");
    assert!(cs.container_id.as_deref().unwrap().starts_with("wasm://"));
    assert!(cs.ready);
    assert_eq!(st.pod_ip.as_deref(), Some("127.0.0.1"));
    assert!(st.start_time.is_some());

    // In process.
    let resp = c.agent.invoke("default", "hello", get("/")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = collect(resp.into_body()).await;
    // $(POD) is defined after GREETING, so it stays unexpanded (Kubernetes order rules).
    assert_eq!(body, "hello from ketch\ngreeting: hi from $(POD)\n");
    let err = c
        .agent
        .invoke("default", "nope", get("/"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AgentError::Pod(PodError::NotFound { .. })),
        "{err}"
    );

    // Through the agent's HTTP proxy, streaming a body both ways.
    ketch_tls::install_default_provider();
    let http = reqwest::Client::new();
    let base = c.agent.endpoint().to_string();
    let r = http
        .post(format!("{base}/pods/default/hello/proxy/echo?x=1"))
        .bearer_auth(&c.server.token)
        .body("ping pong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ping pong");
    let r = http
        .get(format!("{base}/pods/default/hello/proxy"))
        .bearer_auth(&c.server.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("{base}/pods/default/hello/proxy/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no token, no proxy");

    // Logs: the guest prints "hello: <path>" to stdout and a line to stderr per request.
    let mut logs = String::new();
    for _ in 0..100 {
        logs = http
            .get(format!("{base}/pods/default/hello/log"))
            .bearer_auth(&c.server.token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if logs.contains("hello: /echo?x=1") && logs.lines().count() >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(logs.starts_with("hello: /\n"), "{logs}");
    assert!(logs.contains("hello: stderr works\n"), "{logs}");
    let tail = http
        .get(format!(
            "{base}/pods/default/hello/log?tailLines=1&timestamps=true"
        ))
        .bearer_auth(&c.server.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(tail.lines().count(), 1, "{tail}");
    let (ts, _) = tail.split_once(' ').unwrap();
    assert!(ketch_api::time::parse(ts).is_some(), "{tail}");
    let r = http
        .get(format!("{base}/pods/default/hello/log?container=nope"))
        .bearer_auth(&c.server.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .get(format!("{base}/pods/default/ghost/log"))
        .bearer_auth(&c.server.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let status: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "NotFound");

    // Following: a new request's line arrives on the open stream.
    let mut follow = http
        .get(format!(
            "{base}/pods/default/hello/log?follow=true&tailLines=0"
        ))
        .bearer_auth(&c.server.token)
        .send()
        .await
        .unwrap();
    let resp = c
        .agent
        .invoke("default", "hello", get("/followed"))
        .await
        .unwrap();
    collect(resp.into_body()).await;
    let mut seen = String::new();
    while !seen.contains("hello: /followed") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), follow.chunk())
            .await
            .expect("follow stream delivers new lines")
            .unwrap()
            .expect("stream still open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }

    c.wait_event("hello", |e| e.reason.as_deref() == Some("Started"))
        .await;
    let pulled = c
        .wait_event("hello", |e| e.reason.as_deref() == Some("Pulled"))
        .await;
    assert!(
        pulled
            .message
            .as_deref()
            .unwrap()
            .starts_with("Loaded Wasm component sha256:"),
        "{pulled:?}"
    );
    assert_eq!(
        pulled.source.unwrap().component.as_deref(),
        Some("ketch-agent")
    );

    // Deleting the Pod stops the workload, ends the follow stream and removes the logs.
    let uid = pod.metadata.uid.clone().unwrap();
    c.client
        .api::<Pod>(Some("default"))
        .delete("hello")
        .await
        .unwrap();
    let mut stopped = false;
    for _ in 0..200 {
        if matches!(
            c.agent.invoke("default", "hello", get("/")).await,
            Err(AgentError::Pod(PodError::NotFound { .. }))
        ) {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        stopped,
        "the workload keeps answering after the pod was deleted"
    );
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = follow.chunk().await {}
    })
    .await;
    assert!(end.is_ok(), "follow stream ends when the pod is gone");
    let dir = c
        .data
        .path()
        .join(format!("agent/logs/default_hello_{uid}"));
    for _ in 0..100 {
        if !dir.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!dir.exists(), "log dir {} remains", dir.display());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_pod_times_out_with_504_and_an_event_while_another_pod_still_answers() {
    let c = Cluster::start().await;
    c.create_pod(
        "looper",
        &format!("file:{}", ketch_test_guests::LOOPER),
        json!({"metadata": {"annotations": {"ketch.dev/request-timeout": "300ms"}}}),
    )
    .await;
    c.create_pod(
        "hello",
        &format!("file:{}", ketch_test_guests::HELLO),
        json!({}),
    )
    .await;
    c.wait_pod("looper", "Running", running_and_ready).await;
    c.wait_pod("hello", "Running", running_and_ready).await;

    ketch_tls::install_default_provider();

    let http = reqwest::Client::new();
    let base = c.agent.endpoint().to_string();
    let looping = {
        let (http, base, token) = (http.clone(), base.clone(), c.server.token.clone());
        tokio::spawn(async move {
            http.get(format!("{base}/pods/default/looper/proxy/"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        })
    };
    // While the looper burns its budget, hello still answers.
    let resp = c.agent.invoke("default", "hello", get("/")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let r = looping.await.unwrap();
    assert_eq!(r.status(), 504);
    assert!(r.text().await.unwrap().contains("300ms"));

    let ev = c
        .wait_event("looper", |e| e.reason.as_deref() == Some("RequestFailed"))
        .await;
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    assert_eq!(
        ev.message.as_deref(),
        Some("request exceeded the 300ms CPU deadline")
    );
    // A burst of failures is aggregated into the same Event, not new objects.
    for _ in 0..3 {
        let err = c
            .agent
            .invoke("default", "looper", get("/"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, AgentError::Pod(PodError::Invoke { .. })),
            "{err}"
        );
    }
    let ev = c
        .wait_event("looper", |e| {
            e.reason.as_deref() == Some("RequestFailed") && e.count.unwrap_or(0) >= 4
        })
        .await;
    let all = c
        .client
        .api::<Event>(Some("default"))
        .list(&ListParams::default())
        .await
        .unwrap();
    let n = all
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("RequestFailed"))
        .count();
    assert_eq!(n, 1, "{ev:?}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_images_and_config_wait_with_a_reason_and_an_event() {
    let c = Cluster::start().await;
    let bad = c.data.path().join("random.wasm");
    std::fs::write(&bad, b"\x13\x37 definitely not wasm").unwrap();
    c.create_pod("invalid", &format!("file:{}", bad.display()), json!({}))
        .await;
    let registry = fake_registry().await;
    // A Wasm Pod whose registry has no such tag.
    let missing = format!("{registry}/app:missing");
    c.create_pod(
        "oci",
        &missing,
        json!({"spec": {"runtimeClassName": "wasm"}}),
    )
    .await;
    // Without a runtime class the artifact decides: a container image, which this agent (no
    // containerd) cannot run.
    let image = format!("{registry}/app:1");
    c.create_pod("container-here", &image, json!({})).await;
    c.create_pod(
        "needs-config",
        &format!("file:{}", ketch_test_guests::HELLO),
        json!({"spec": {"containers": [{"name": "app",
            "image": format!("file:{}", ketch_test_guests::HELLO),
            "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "missing", "key": "k"}}}]}]}}),
    )
    .await;
    c.create_pod(
        "invalid-never",
        &format!("file:{}", bad.display()),
        json!({"spec": {"restartPolicy": "Never"}}),
    )
    .await;

    let p = c
        .wait_pod("invalid", "waiting InvalidComponent", |p| {
            waiting_reason(p).as_deref() == Some("InvalidComponent")
        })
        .await;
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Pending"));
    let ev = c
        .wait_event("invalid", |e| e.reason.as_deref() == Some("Failed"))
        .await;
    assert!(ev.message.unwrap().starts_with("InvalidComponent: "));

    // The first failure shows ErrImagePull (the Failed Event keeps it); then the container
    // waits in ImagePullBackOff with the pull's message.
    let ev = c
        .wait_event("oci", |e| e.reason.as_deref() == Some("Failed"))
        .await;
    assert!(ev.message.unwrap().starts_with("ErrImagePull: "));
    let message = c.waiting_message("oci", "ImagePullBackOff").await;
    assert!(
        message.starts_with(&format!(
            "Back-off pulling image \"{missing}\": ErrImagePull: pulling {missing}: "
        )),
        "{message}"
    );
    // The registry's own words.
    assert!(message.contains("manifest unknown"), "{message}");
    let backoff = format!("Back-off pulling image \"{missing}\"");
    c.wait_event("oci", |e| {
        e.reason.as_deref() == Some("BackOff") && e.message.as_deref() == Some(backoff.as_str())
    })
    .await;

    assert_eq!(
        c.waiting_message("container-here", "CreateContainerError")
            .await,
        format!(
            "image {image} is a container image (not a Wasm component artifact with config \
             media type application/vnd.wasm.config.v0+json), and this node does not run \
             Linux containers (no containerd)"
        )
    );

    assert_eq!(
        c.waiting_message("needs-config", "CreateContainerConfigError")
            .await,
        "configmap \"missing\" not found"
    );

    let p = c
        .wait_pod("invalid-never", "Failed", |p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
        })
        .await;
    let t = p.status.unwrap().container_statuses[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(t.reason.as_deref(), Some("InvalidComponent"));
    assert_eq!(t.exit_code, 128);

    let r = c
        .agent
        .invoke("default", "invalid", get("/"))
        .await
        .unwrap_err();
    assert!(
        matches!(r, AgentError::Pod(PodError::NotRunning { .. })),
        "{r}"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trapping_and_memory_hungry_requests_fail_with_500_naming_the_cause() {
    let c = Cluster::start().await;
    c.create_pod(
        "trapper",
        &format!("file:{}", ketch_test_guests::TRAPPER),
        json!({}),
    )
    .await;
    let membomb = format!("file:{}", ketch_test_guests::MEMBOMB);
    c.create_pod(
        "membomb",
        &membomb,
        json!({"spec": {"containers": [{"name": "app", "image": membomb,
            "resources": {"limits": {"memory": "64Mi"}}}]}}),
    )
    .await;
    c.wait_pod("trapper", "Running", running_and_ready).await;
    c.wait_pod("membomb", "Running", running_and_ready).await;
    ketch_tls::install_default_provider();
    let http = reqwest::Client::new();
    let base = c.agent.endpoint().to_string();
    for (pod, expect) in [
        ("trapper", "guest trapped"),
        ("membomb", "request exceeded the memory limit of 64Mi"),
    ] {
        let r = http
            .get(format!("{base}/pods/default/{pod}/proxy/"))
            .bearer_auth(&c.server.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 500, "{pod}");
        let body = r.text().await.unwrap();
        assert!(body.contains(expect), "{pod}: {body}");
        let ev = c
            .wait_event(pod, |e| e.reason.as_deref() == Some("RequestFailed"))
            .await;
        assert!(ev.message.unwrap().contains(expect), "{pod}");
    }
    // A failed request does not stop the Pod.
    let p = c.pod("trapper").await.unwrap();
    assert!(running_and_ready(&p));
    c.stop().await;
}
