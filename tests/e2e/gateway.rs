//! Services over HTTP through the real binary: the node gateway routes by Host, Ingress path
//! and NodePort, spreads requests over Ready endpoints, answers 503 while a Service has
//! none, and Wasm apps call other Services by name while other hosts stay denied.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support::{KetchUp, Server, eventually, http, try_http, wait_running, write_file};

pub(crate) const HELLO_HOST: &str = "hello.default.ketch.localhost";

/// A Deployment of the hello test guest that greets with its Pod name, and its Service.
pub(crate) fn hello_app(replicas: u32, node_port: Option<u16>) -> String {
    let svc_type = match node_port {
        Some(p) => format!("  type: NodePort\n  ports:\n  - port: 80\n    nodePort: {p}\n"),
        None => "  ports:\n  - port: 80\n".to_string(),
    };
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: hello\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: hello}}\n  template:\n    metadata:\n      labels: {{app: hello}}\n    spec:\n      containers:\n      - name: app\n        image: file:{}\n        env:\n        - name: GREETING\n          valueFrom:\n            fieldRef: {{fieldPath: metadata.name}}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: hello\nspec:\n  selector: {{app: hello}}\n{svc_type}---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: web\nspec:\n  rules:\n  - http:\n      paths:\n      - path: /hello\n        pathType: Prefix\n        backend:\n          service:\n            name: hello\n            port: {{number: 80}}\n",
        ketch_test_guests::HELLO
    )
}

/// `hello_app`'s manifest with its Service exposed (`ketch.dev/expose`): gateways on
/// addresses others can reach route its name only then.
pub(crate) fn exposed(app: &str) -> String {
    let out = app.replace(
        "kind: Service\nmetadata:\n  name: hello\n",
        "kind: Service\nmetadata:\n  name: hello\n  annotations: {ketch.dev/expose: \"true\"}\n",
    );
    assert!(
        out.contains("ketch.dev/expose"),
        "no Service to expose in {app}"
    );
    out
}

/// Ready endpoints of a Service's EndpointSlice.
fn ready_endpoints(s: &Server, svc: &str) -> usize {
    let out = s.ketch(&["get", "endpointslices", svc, "-o", "json"]);
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return 0;
    };
    v["endpoints"].as_array().map_or(0, |eps| {
        eps.iter()
            .filter(|e| e["conditions"]["ready"] != false)
            .count()
    })
}

/// A NodePort in the Service range that is free on loopback right now.
fn free_node_port() -> u16 {
    let seed = u16::try_from(std::process::id() % 2000).unwrap();
    (0..2767)
        .map(|i| 30000 + (seed + i) % 2767)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port in 30000-32767")
}

#[test]
fn services_are_served_by_host_ingress_path_and_node_port_and_spread_over_pods() {
    let s = Server::start();
    let gw = s.gateway();
    let node_port = free_node_port();
    let f = write_file(s.dir.path(), "hello.yaml", &hello_app(1, Some(node_port)));
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    wait_running(&s, "app=hello", 1);
    eventually(30, "1 ready endpoint", || {
        (ready_endpoints(&s, "hello") == 1).then_some(())
    });

    // By Host: the body is the guest's, with a request id added by the gateway.
    let (code, headers, body) = http("GET", &format!("{gw}/"), &[("host", HELLO_HOST)], None);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("hello from ketch"), "{body}");
    assert!(headers.contains_key("x-request-id"));
    // A client's own request id is kept.
    let (_, headers, _) = http(
        "GET",
        &format!("{gw}/"),
        &[("host", HELLO_HOST), ("x-request-id", "abc-123")],
        None,
    );
    assert_eq!(headers["x-request-id"], "abc-123");
    // Request bodies stream through to the guest and back.
    let (code, _, body) = http(
        "POST",
        &format!("{gw}/echo"),
        &[("host", HELLO_HOST)],
        Some("ping through the gateway"),
    );
    assert_eq!((code, body.as_str()), (200, "ping through the gateway"));
    // By Ingress path on any host, element-wise: /hello and /hello/x, not /hellox.
    let (code, _, body) = http("GET", &format!("{gw}/hello/x"), &[], None);
    assert_eq!(code, 200, "{body}");
    let (code, _, body) = http("GET", &format!("{gw}/hellox"), &[], None);
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("no route"), "{body}");
    // By NodePort.
    let np = format!("http://127.0.0.1:{node_port}");
    let (code, _, body) = eventually(30, "the NodePort listener", || {
        try_http("GET", &format!("{np}/"), &[], None)
    });
    assert_eq!(code, 200, "{body}");

    // Scale to 3: requests spread over all three Pods (the guest greets with its Pod name).
    s.ok(&["scale", "deploy/hello", "--replicas", "3"]);
    let names: BTreeSet<String> = wait_running(&s, "app=hello", 3).into_iter().collect();
    eventually(30, "3 ready endpoints", || {
        (ready_endpoints(&s, "hello") == 3).then_some(())
    });
    let mut served = BTreeSet::new();
    for _ in 0..30 {
        let (code, _, body) = http("GET", &format!("{gw}/"), &[("host", HELLO_HOST)], None);
        assert_eq!(code, 200, "{body}");
        if let Some(pod) = names.iter().find(|n| body.contains(n.as_str())) {
            served.insert(pod.clone());
        }
    }
    assert_eq!(served, names, "round robin reaches every Pod");
    // ...and the gateway counted them by Service and code.
    let agent = agent_endpoint(&s);
    let (_, _, metrics) = http("GET", &format!("{agent}/metrics"), &[], None);
    let count = metric(
        &metrics,
        "ketch_gateway_requests_total{service=\"default/hello\",code=\"200\"}",
    );
    assert!(count >= 33.0, "{metrics}");

    // No Ready endpoint: 503 with a clear body, then recovery.
    s.ok(&["scale", "deploy/hello", "--replicas", "0"]);
    eventually(30, "503 without endpoints", || {
        let (code, headers, body) = http("GET", &format!("{gw}/"), &[("host", HELLO_HOST)], None);
        (code == 503).then(|| {
            assert!(
                body.contains("service default/hello has no ready endpoints"),
                "{body}"
            );
            assert!(headers.contains_key("retry-after"));
        })
    });
    s.ok(&["scale", "deploy/hello", "--replicas", "2"]);
    eventually(30, "200 after scaling back up", || {
        let (code, _, _) = http("GET", &format!("{gw}/"), &[("host", HELLO_HOST)], None);
        (code == 200).then_some(())
    });
    // Deleting every Pod: the ReplicaSet replaces them and the Service recovers; in between a
    // client sees only 200 or 503, never another error.
    let pods = wait_running(&s, "app=hello", 2);
    let mut args = vec!["delete", "pod"];
    args.extend(pods.iter().map(String::as_str));
    s.ok(&args);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut recovered = false;
    while Instant::now() < deadline {
        let (code, _, body) = http("GET", &format!("{gw}/"), &[("host", HELLO_HOST)], None);
        assert!(code == 200 || code == 503, "{code}: {body}");
        if code == 200 && !pods.iter().any(|p| body.contains(p.as_str())) {
            recovered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(recovered, "served by a replacement Pod within 30s");

    // Unknown Service host: 404 naming the convention.
    let (code, _, body) = http(
        "GET",
        &format!("{gw}/"),
        &[("host", "nope.default.ketch.localhost")],
        None,
    );
    assert_eq!(code, 404, "{body}");
}

fn agent_endpoint(s: &Server) -> String {
    let names = s.ok(&["get", "nodes", "-o", "name"]);
    let node = names
        .lines()
        .next()
        .unwrap()
        .trim()
        .trim_start_matches("node/");
    let out = s.ok(&["get", "node", node, "-o", "json"]);
    let n: serde_json::Value = serde_json::from_str(&out).unwrap();
    n["metadata"]["annotations"]["ketch.dev/agent-endpoint"]
        .as_str()
        .unwrap()
        .to_string()
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn wasm_apps_call_services_by_name_and_other_hosts_stay_denied() {
    let s = Server::start();
    let gw = s.gateway();
    let f = write_file(s.dir.path(), "hello.yaml", &hello_app(1, None));
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    let caller = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: caller\n  labels: {{app: caller}}\nspec:\n  containers:\n  - name: app\n    image: file:{}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: caller\nspec:\n  selector: {{app: caller}}\n  ports:\n  - port: 80\n",
        ketch_test_guests::OUTBOUND
    );
    let f = write_file(s.dir.path(), "caller.yaml", &caller);
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    wait_running(&s, "app=hello", 1);
    wait_running(&s, "app=caller", 1);
    eventually(30, "endpoints", || {
        (ready_endpoints(&s, "hello") == 1 && ready_endpoints(&s, "caller") == 1).then_some(())
    });
    let call = |url: &str| {
        http(
            "GET",
            &format!("{gw}/?url={url}"),
            &[("host", "caller.default.ketch.localhost")],
            None,
        )
    };
    for url in [
        "http://hello/",
        "http://hello.default/",
        "http://hello.default.svc/",
        "http://hello.default.svc.cluster.local/",
    ] {
        let (code, _, body) = call(url);
        assert_eq!(code, 200, "{url}: {body}");
        assert!(
            body.contains("status: 200") && body.contains("hello from ketch"),
            "{url}: {body}"
        );
    }
    // A cluster-domain name of no Service: the gateway's 404, not a lookup on the network.
    let (code, _, body) = call("http://nope.default.svc.cluster.local/");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("status: 404"), "{body}");

    // A host the Pod does not allow: denied, and nothing reaches it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (code, _, body) = call(&format!("http://127.0.0.1:{port}/"));
    assert_eq!(code, 502, "{body}");
    assert!(body.contains("HttpRequestDenied"), "{body}");
    assert!(listener.accept().is_err(), "no connection was made");
}

#[test]
fn ketch_up_runs_the_hello_example_and_stops_on_ctrl_c() {
    let mut up = KetchUp::start("hello", &[]);
    // The first run may build the example (cargo, wasm32-wasip2): allow for it.
    let url = up.wait_line("service default/hello: ", 600);
    let gw_port = up.gw_port;
    assert_eq!(url, format!("http://{HELLO_HOST}:{gw_port}/"));
    let (code, _, body) = http(
        "GET",
        &format!("http://127.0.0.1:{gw_port}/"),
        &[("host", HELLO_HOST)],
        None,
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with("Hello from ketch!"), "{body}");
    // The Pods' logs stream to ketch up's output.
    eventually(30, "the request's log line", || {
        up.printed("] INFO GET / served by").then_some(())
    });
    let status = up.interrupt(30);
    assert!(status.success(), "ketch up exited with {status}");
}

#[test]
fn endpoints_on_another_node_are_proxied_to_that_nodes_gateway() {
    let s = Server::start();
    let log = std::fs::File::create(s.dir.path().join("agent.log")).unwrap();
    let mut agent = crate::support::ketch_cmd()
        .args([
            "agent",
            "--server",
            &s.url,
            "--token",
            &s.join_token(),
            "--name",
            "far",
        ])
        .args(["--agent-listen", "127.0.0.1:0", "--gateway", "127.0.0.1:0"])
        .args(["--gateway-tls", "127.0.0.1:0"])
        .args(["--node-label", "zone=far", "--data-dir"])
        .arg(s.dir.path().join("far-agent"))
        .env("KETCH_CONFIG", s.dir.path().join("no-config"))
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let far_gateway = s.gateway_of("far");
    let app = hello_app(1, None).replace(
        "    spec:\n      containers:",
        "    spec:\n      nodeSelector: {zone: far}\n      containers:",
    );
    let f = write_file(s.dir.path(), "hello.yaml", &app);
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    wait_running(&s, "app=hello", 1);
    eventually(30, "1 ready endpoint", || {
        (ready_endpoints(&s, "hello") == 1).then_some(())
    });
    // Through the server node's gateway, whose node does not run the Pod.
    let own = s.gateway_of(&node_other_than(&s, "far"));
    assert_ne!(own, far_gateway);
    let (code, _, body) = http("GET", &format!("{own}/"), &[("host", HELLO_HOST)], None);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("hello from ketch"), "{body}");
    // A peer-delivery header on the public listener means nothing: it is routed by Host
    // like any request (here: no such host).
    let (code, _, _) = http(
        "GET",
        &format!("{far_gateway}/"),
        &[("x-ketch-pod", "default/whatever")],
        None,
    );
    assert_eq!(code, 404);
    // The peer listener takes only a node's or server's certificate.
    let peer = crate::support::node_annotation(&s, "far", "ketch.dev/gateway-peer-endpoint");
    assert!(peer.starts_with("https://"), "{peer}");
    let answer = crate::support::try_http(
        "GET",
        &format!("{peer}/"),
        &[("x-ketch-pod", "default/whatever")],
        None,
    );
    assert!(
        answer.is_none(),
        "the peer listener answered a client without a certificate: {answer:?}"
    );
    agent.kill().unwrap();
    agent.wait().unwrap();
}

fn node_other_than(s: &Server, name: &str) -> String {
    s.ok(&["get", "nodes", "-o", "name"])
        .lines()
        .map(|l| l.trim().trim_start_matches("node/").to_string())
        .find(|n| n != name)
        .expect("another node")
}

/// A one-thread HTTP/1.1 server on `ip` answering every request with `body` (keep-alive
/// off).
fn tiny_http_server(ip: std::net::IpAddr, body: &'static str) -> u16 {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// A selector-less Service with a hand-written EndpointSlice pointing at `address:port`.
fn native_service(address: &str, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: native\nspec:\n  ports:\n  - port: 80\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: native-1\n  labels:\n    kubernetes.io/service-name: native\naddressType: IPv4\nendpoints:\n- addresses: [\"{address}\"]\nports:\n- port: {port}\n"
    )
}

#[test]
fn a_selectorless_service_routes_to_the_endpoints_written_by_hand() {
    let s = Server::start();
    let gw = s.gateway();
    // The node's loopback (its API server, raft, agent) is not an address a slice may send
    // the gateway to.
    let f = write_file(s.dir.path(), "lo.yaml", &native_service("127.0.0.1", 6443));
    let err = s.fails(&["apply", "-f", f.to_str().unwrap()]);
    assert!(
        err.contains("endpoints[0].addresses[0]: Invalid value: \"127.0.0.1\": may not be in the loopback range"),
        "{err}"
    );
    // An outside address: this host's address on a bridge the test makes (root only).
    let Some(net) = crate::netns::Net::create(0) else {
        return;
    };
    let ip = net.gateway();
    let port = tiny_http_server(ip.into(), "native backend\n");
    let f = write_file(
        s.dir.path(),
        "native.yaml",
        &native_service(&ip.to_string(), port),
    );
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    let (code, _, body) = eventually(30, "the hand-written endpoint", || {
        let r = http(
            "GET",
            &format!("{gw}/"),
            &[("host", "native.default.ketch.localhost")],
            None,
        );
        (r.0 == 200).then_some(r)
    });
    assert_eq!((code, body.as_str()), (200, "native backend\n"));
}

#[test]
fn the_gateway_enforces_its_deadline_and_body_limit_speaks_h2c_and_logs_access() {
    let s = Server::start_with(&[
        "--gateway",
        "127.0.0.1:0",
        "--gateway-timeout",
        "500ms",
        "--gateway-max-body",
        "1Ki",
        "--access-log",
    ]);
    let gw = s.gateway();
    let app = |name: &str, image: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: {name}}}\nspec:\n  containers:\n  - name: app\n    image: file:{image}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector: {{app: {name}}}\n  ports:\n  - port: 80\n"
        )
    };
    let manifest = format!(
        "{}---\n{}",
        app("looper", ketch_test_guests::LOOPER),
        app("hello", ketch_test_guests::HELLO)
    );
    let f = write_file(s.dir.path(), "apps.yaml", &manifest);
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    eventually(60, "endpoints", || {
        (ready_endpoints(&s, "looper") == 1 && ready_endpoints(&s, "hello") == 1).then_some(())
    });
    // A guest that never answers: 504 at the gateway deadline, well before its CPU budget.
    let t0 = Instant::now();
    let (code, _, body) = http(
        "GET",
        &format!("{gw}/"),
        &[("host", "looper.default.ketch.localhost")],
        None,
    );
    assert_eq!(code, 504, "{body}");
    assert!(body.contains("did not respond within 500ms"), "{body}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    // Over the body limit: 413, the app never sees it.
    let big = "x".repeat(2048);
    let (code, _, body) = http(
        "POST",
        &format!("{gw}/echo"),
        &[("host", HELLO_HOST)],
        Some(&big),
    );
    assert_eq!(code, 413, "{body}");
    assert!(body.contains("1Ki"), "{body}");
    let (code, _, body) = http(
        "POST",
        &format!("{gw}/echo"),
        &[("host", HELLO_HOST)],
        Some("small"),
    );
    assert_eq!((code, body.as_str()), (200, "small"));
    // HTTP/2 with prior knowledge (h2c): the authority routes like Host.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (version, code, body) = rt.block_on(async {
        let port = gw.rsplit(':').next().unwrap();
        let c = reqwest::Client::builder()
            .http2_prior_knowledge()
            .resolve(HELLO_HOST, format!("127.0.0.1:{port}").parse().unwrap())
            .build()
            .unwrap();
        let r = c
            .get(format!("http://{HELLO_HOST}:{port}/"))
            .send()
            .await
            .unwrap();
        (r.version(), r.status().as_u16(), r.text().await.unwrap())
    });
    assert_eq!(version, reqwest::Version::HTTP_2);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("hello from ketch"), "{body}");
    // One access line per request, with its code and Service; a line is written once its
    // response has gone out, so wait for all four.
    let log = eventually(10, "the access log lines", || {
        let log = s.log();
        (log.matches(" access ").count() >= 4).then_some(log)
    });
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(" access ")).collect();
    assert!(
        lines.iter().any(|l| l.contains("method=GET")
            && l.contains("code=504")
            && l.contains("service=default/looper")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("method=POST")
            && l.contains("path=/echo")
            && l.contains("code=200")),
        "{lines:#?}"
    );
}

#[test]
fn a_public_gateway_routes_service_names_only_to_exposed_services() {
    // On 0.0.0.0 the listener is public; the test reaches it on loopback.
    let s = Server::start_with(&["--gateway", "0.0.0.0:0"]);
    let port = s
        .gateway()
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let gw = format!("http://127.0.0.1:{port}");
    let f = write_file(s.dir.path(), "hello.yaml", &hello_app(1, None));
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    wait_running(&s, "app=hello", 1);
    eventually(30, "1 ready endpoint", || {
        (ready_endpoints(&s, "hello") == 1).then_some(())
    });
    // The Ingress path exposes it; its name alone does not, nor any other Service's.
    let (code, _, body) = http("GET", &format!("{gw}/hello"), &[], None);
    assert_eq!(code, 200, "{body}");
    let (code, _, body) = http("GET", &format!("{gw}/"), &[("host", HELLO_HOST)], None);
    assert_eq!(code, 404, "{body}");
    let (code, _, _) = http(
        "GET",
        &format!("{gw}/"),
        &[("host", "kubernetes.default.ketch.localhost")],
        None,
    );
    assert_eq!(code, 404);
    // Exposed by annotation: served by name.
    let f = write_file(s.dir.path(), "hello.yaml", &exposed(&hello_app(1, None)));
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    eventually(10, "the exposed Service served by name", || {
        let (code, _, body) = http("GET", &format!("{gw}/"), &[("host", HELLO_HOST)], None);
        (code == 200).then_some(body)
    });
}
