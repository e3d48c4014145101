//! Services end to end through the real binary: the EndpointSlice controller follows a
//! Deployment's Pods, leaves hand-written slices alone, and its slice goes with the Service;
//! NodePort Services get unique node ports.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Server, write_file};

/// Poll `check` until it returns Some, or fail with `what` after `secs`.
fn eventually<T>(secs: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
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

fn get_json(s: &Server, args: &[&str]) -> Option<Value> {
    let mut full = vec!["get"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-o", "json"]);
    let out = s.ketch(&full);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn names(list: &Value) -> Vec<String> {
    let mut n: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

/// The Pod names of the slice's endpoints when there are `n`, all ready, each with a node
/// and a Pod reference.
fn ready_endpoints(slice: &Value, n: usize) -> Option<Vec<String>> {
    let eps = slice["endpoints"].as_array()?;
    let complete = |e: &Value| {
        e["conditions"]["ready"] == true
            && e["nodeName"].is_string()
            && e["targetRef"]["kind"] == "Pod"
            && e["targetRef"]["uid"].is_string()
            && e["addresses"].as_array().is_some_and(|a| !a.is_empty())
    };
    if eps.len() != n || !eps.iter().all(complete) {
        return None;
    }
    let mut pods: Vec<String> = eps
        .iter()
        .map(|e| e["targetRef"]["name"].as_str().unwrap().to_string())
        .collect();
    pods.sort();
    Some(pods)
}

const WEB: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: file:HELLO
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
";

/// A Service without a selector whose endpoints the user writes by hand.
const EXTERNAL: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: ext
spec:
  ports:
  - {port: 80}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ext-1
  labels: {kubernetes.io/service-name: ext}
addressType: IPv4
endpoints:
- addresses: [192.0.2.10]
ports:
- {name: \"\", port: 80, protocol: TCP}
";

fn node_port_service(name: &str, node_port: Option<i64>) -> Value {
    let mut port = json!({"port": 80});
    if let Some(np) = node_port {
        port["nodePort"] = json!(np);
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"type": "NodePort", "selector": {"app": name}, "ports": [port]}})
}

/// POSTs a Service over raw HTTP: the status code and body.
fn post_service(s: &Server, body: &Value) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = s
            .http()
            .post(format!("{}/api/v1/namespaces/default/services", s.url))
            .bearer_auth(&s.token)
            .json(body)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    })
}

#[test]
fn endpoint_slices_follow_pods_leave_user_slices_alone_and_go_with_their_service() {
    let s = Server::start();
    let dir = s.dir.path();
    let ext = write_file(dir, "ext.yaml", EXTERNAL);
    s.ok(&["apply", "-f", ext.to_str().unwrap()]);
    let user_slice = get_json(&s, &["endpointslice", "ext-1"]).unwrap();

    let web = WEB.replace("HELLO", ketch_test_guests::HELLO);
    let f = write_file(dir, "web.yaml", &web);
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    let first = eventually(60, "slice web with 2 ready endpoints", || {
        let slice = get_json(&s, &["endpointslice", "web"])?;
        let pods = names(&get_json(&s, &["pods", "-l", "app=web"])?);
        ready_endpoints(&slice, 2).filter(|eps| *eps == pods)
    });
    let slice = get_json(&s, &["endpointslice", "web"]).unwrap();
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(
        slice["metadata"]["labels"]["kubernetes.io/service-name"],
        "web"
    );
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.ketch.dev"
    );
    let owner = &slice["metadata"]["ownerReferences"][0];
    assert_eq!(
        (&owner["kind"], &owner["controller"]),
        (&json!("Service"), &json!(true))
    );
    assert_eq!(
        slice["ports"],
        json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
    );
    let table = s.ok(&["get", "endpointslices"]);
    assert!(
        table.starts_with("NAME") && table.contains("ADDRESSTYPE") && table.contains("8080"),
        "{table}"
    );

    // A deleted Pod's replacement takes its place in the slice.
    s.ok(&["delete", "pod", &first[0]]);
    let healed = eventually(60, "slice web with the replacement pod", || {
        let slice = get_json(&s, &["endpointslice", "web"])?;
        let pods = names(&get_json(&s, &["pods", "-l", "app=web"])?);
        ready_endpoints(&slice, 2).filter(|eps| *eps == pods && !eps.contains(&first[0]))
    });
    assert!(healed.contains(&first[1]), "{first:?} -> {healed:?}");

    // Meanwhile the controller neither rewrote the user's slice nor made one for `ext`.
    let still = get_json(&s, &["endpointslice", "ext-1"]).unwrap();
    assert_eq!(
        still["metadata"]["resourceVersion"],
        user_slice["metadata"]["resourceVersion"]
    );
    let for_ext = get_json(
        &s,
        &["endpointslices", "-l", "kubernetes.io/service-name=ext"],
    )
    .unwrap();
    assert_eq!(names(&for_ext), ["ext-1"]);

    // Deleting the Service deletes its slice (garbage collection through the owner
    // reference).
    s.ok(&["delete", "service", "web"]);
    eventually(30, "slice web collected", || {
        get_json(&s, &["endpointslice", "web"])
            .is_none()
            .then_some(())
    });
    assert!(get_json(&s, &["endpointslice", "ext-1"]).is_some());
}

#[test]
fn node_port_services_get_a_unique_port_from_the_range() {
    let s = Server::start();
    let (code, first) = post_service(&s, &node_port_service("np-a", None));
    assert_eq!(code, 201, "{first}");
    let node_port = first["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&node_port), "{node_port}");

    let (code, status) = post_service(&s, &node_port_service("np-b", Some(node_port)));
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(
        status["details"]["causes"][0]["field"],
        "spec.ports[0].nodePort"
    );
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "spec.ports[0].nodePort: Invalid value: {node_port}: provided port is already allocated"
        )),
        "{message}"
    );

    // Re-applying a manifest without nodePort keeps the allocated port.
    let manifest = serde_json::to_string(&node_port_service("np-a", None)).unwrap();
    let f = write_file(s.dir.path(), "np.json", &manifest);
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    let again = get_json(&s, &["service", "np-a"]).unwrap();
    assert_eq!(again["spec"]["ports"][0]["nodePort"], node_port);
    let table = s.ok(&["get", "svc", "np-a"]);
    assert!(
        table.contains("NodePort") && table.contains(&format!("80:{node_port}/TCP")),
        "{table}"
    );

    // Ingresses are served too (routing them is the data plane's job).
    let ing = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: web\nspec:\n  rules:\n  - host: web.example\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: np-a, port: {number: 80}}}}\n";
    let f = write_file(s.dir.path(), "ing.yaml", ing);
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    let table = s.ok(&["get", "ing"]);
    assert!(
        table.contains("HOSTS") && table.contains("web.example"),
        "{table}"
    );
}
