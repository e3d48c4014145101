//! Linux containers through the real binary and a real containerd (started by `tests/run`,
//! which exports `KETCH_TEST_CONTAINERD` and pushes the test images to a local registry):
//! exit codes, logs, a container serving through a Service and the gateway, memory and pids
//! limits, re-adoption after `kill -9` of the agent, and nothing left in containerd after a
//! delete.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

use crate::support::{Server, eventually, http, pods, wait_running, write_file};

/// Set `KETCH_SKIP_CONTAINER_TESTS=1` to skip these on a machine without containerd.
pub(crate) fn env_or_skip(name: &str) -> Option<String> {
    if std::env::var_os("KETCH_SKIP_CONTAINER_TESTS").is_some() {
        return None;
    }
    Some(std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: container tests need a containerd and a registry \
             (tests/run starts both; KETCH_SKIP_CONTAINER_TESTS=1 skips these tests)"
        )
    }))
}

struct Env {
    socket: String,
    busybox: String,
    http_image: String,
}

fn test_env() -> Option<Env> {
    Some(Env {
        socket: env_or_skip("KETCH_TEST_CONTAINERD")?,
        busybox: env_or_skip("KETCH_TEST_BUSYBOX")?,
        http_image: env_or_skip("KETCH_TEST_HTTP_IMAGE")?,
    })
}

/// A Linux bridge made for one test (tests run in parallel, each with its own bridge and
/// subnet), deleted when dropped.
struct Bridge {
    name: String,
    subnet: String,
}

impl Bridge {
    fn new() -> Bridge {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id() % 200;
        Bridge {
            name: format!("kt{pid}x{n}"),
            subnet: format!("10.{}.{}.0/24", 100 + n, pid),
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.name])
            .status();
    }
}

impl Bridge {
    /// Agent flags: the test containerd, this bridge, and a node named after it. Tests
    /// share one containerd and the agent removes its node's containers that no Pod claims
    /// when it starts: with every test's node named after the host, one test's agent removed
    /// the containers of another running beside it.
    fn flags<'a>(&'a self, env: &'a Env) -> [&'a str; 8] {
        [
            "--containerd",
            &env.socket,
            "--pod-bridge",
            &self.name,
            "--pod-subnet",
            &self.subnet,
            "--name",
            &self.name,
        ]
    }
}

/// A server whose node offers containers, with `manifest` applied; and the node's name.
fn serve(env: &Env, bridge: &Bridge, manifest: &str) -> (Server, String) {
    let s = Server::start_with(&bridge.flags(env));
    let node = node_name(&s);
    let f = write_file(s.dir.path(), "app.yaml", manifest);
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    (s, node)
}

/// `ctr` against the test containerd, in ketch's namespace.
fn ctr(env: &Env, args: &[&str]) -> String {
    let out = Command::new("ctr")
        .args(["--address", &env.socket, "-n", "ketch"])
        .args(args)
        .output()
        .expect("run ctr");
    assert!(
        out.status.success(),
        "ctr {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Containers, tasks, active snapshots and leases ketch has in containerd for this node.
fn leftovers(env: &Env, node: &str) -> Vec<String> {
    let mut left = Vec::new();
    let containers = ctr(
        env,
        &[
            "containers",
            "ls",
            "-q",
            &format!("labels.\"ketch.dev/node\"=={node}"),
        ],
    );
    left.extend(containers.lines().map(|l| format!("container {l}")));
    for id in containers.lines() {
        if ctr(env, &["tasks", "ls", "-q"]).lines().any(|t| t == id) {
            left.push(format!("task {id}"));
        }
    }
    for l in ctr(env, &["snapshots", "ls"]).lines().skip(1) {
        let cols: Vec<&str> = l.split_whitespace().collect();
        if cols.last() == Some(&"Active") && !cols[0].starts_with("extract-") {
            left.push(format!("active snapshot {}", cols[0]));
        }
    }
    for l in ctr(env, &["leases", "ls", "-q"]).lines() {
        if !l.starts_with("ketch-pull-") {
            left.push(format!("lease {l}"));
        }
    }
    left
}

/// The node's name once it has registered offering the container runtime.
fn node_name(s: &Server) -> String {
    eventually(30, "the node to offer the container runtime", || {
        let out = s.ok(&["get", "nodes", "-o", "json"]);
        let v: Value = serde_json::from_str(&out).unwrap();
        let n = &v["items"][0];
        let offers = n["status"]["runtimeHandlers"]
            .as_array()
            .is_some_and(|hs| hs.iter().any(|h| h["name"] == "container"));
        offers.then(|| n["metadata"]["name"].as_str().unwrap().to_string())
    })
}

fn pod(s: &Server, name: &str) -> Value {
    serde_json::from_str(&s.ok(&["get", "pod", name, "-o", "json"])).unwrap()
}

/// Waits for `pred` on Pod `name`; on timeout the failure shows the Pod and the server log.
fn wait_pod(s: &Server, name: &str, secs: u64, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let p = pod(s, name);
        if pred(&p) {
            return p;
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "timed out after {secs}s waiting for {what}:\n{}\n{}",
                s.ok(&["describe", "pod", name]),
                s.log()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn assert_clean(env: &Env, s: &Server, node: &str) {
    eventually(60, "containerd to hold nothing of ours", || {
        leftovers(env, node).is_empty().then_some(())
    });
    assert!(
        leftovers(env, node).is_empty(),
        "{:?}\n{}",
        leftovers(env, node),
        s.log()
    );
}

#[test]
fn a_busybox_pod_runs_its_command_logs_and_exits_with_its_code() {
    let Some(env) = test_env() else { return };
    let bridge = Bridge::new();
    let (s, node) = serve(
        &env,
        &bridge,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: job\nspec:\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: {}\n    command: [sh, -c, 'echo out-line; echo err-line >&2; echo \"ip=$POD_IP\"; exit 3']\n    env:\n    - name: POD_IP\n      valueFrom:\n        fieldRef: {{fieldPath: status.podIP}}\n",
            env.busybox
        ),
    );
    let p = wait_pod(&s, "job", 120, "the pod to fail", |p| {
        p["status"]["phase"] == "Failed"
    });
    let term = &p["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(term["exitCode"], 3, "{p}");
    assert_eq!(term["reason"], "Error", "{p}");
    assert!(
        p["status"]["containerStatuses"][0]["containerID"]
            .as_str()
            .unwrap()
            .starts_with("containerd://"),
        "{p}"
    );
    let pod_ip = p["status"]["podIP"].as_str().unwrap().to_string();
    let prefix = bridge.subnet.trim_end_matches("0/24");
    assert!(
        pod_ip.starts_with(prefix),
        "{pod_ip} not in {}",
        bridge.subnet
    );
    let logs = s.ok(&["logs", "job"]);
    assert!(logs.contains("out-line"), "{logs}");
    assert!(logs.contains("err-line"), "{logs}");
    assert!(logs.contains(&format!("ip={pod_ip}")), "{logs}");
    let events = s.ok(&["describe", "pod", "job"]);
    assert!(
        events.contains("Pulled") || events.contains("already present"),
        "{events}"
    );

    s.ok(&["delete", "pod", "job"]);
    assert_clean(&env, &s, &node);
}

/// A Deployment of the HTTP test image behind a Service; Ready only once an httpGet
/// readiness probe to the Pod's address passes (a tcpSocket liveness probe beside it).
fn http_app(image: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      terminationGracePeriodSeconds: 2\n      containers:\n      - name: web\n        image: {image}\n        ports:\n        - {{name: http, containerPort: 8080}}\n        readinessProbe:\n          httpGet: {{path: /, port: http}}\n          periodSeconds: 1\n        livenessProbe:\n          tcpSocket: {{port: 8080}}\n          periodSeconds: 1\n        resources:\n          limits: {{memory: 64Mi, cpu: 500m}}\n        env:\n        - name: POD_NAME\n          valueFrom:\n            fieldRef: {{fieldPath: metadata.name}}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {{app: web}}\n  ports:\n  - port: 80\n    targetPort: 8080\n"
    )
}

/// GET through the gateway by Host until it answers 200.
fn get_web(s: &Server) -> String {
    let gw = s.gateway();
    eventually(60, "the container to answer through the gateway", || {
        let (code, _, body) = http(
            "GET",
            &format!("{gw}/"),
            &[("host", "web.default.ketch.localhost")],
            None,
        );
        (code == 200).then_some(body)
    })
}

#[test]
fn a_container_serves_http_through_a_service_and_the_gateway() {
    let Some(env) = test_env() else { return };
    let bridge = Bridge::new();
    let (s, node) = serve(&env, &bridge, &http_app(&env.http_image, 2));
    let names = wait_running(&s, "app=web", 2);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let body = get_web(&s);
        for n in &names {
            if body.contains(n.as_str()) {
                seen.insert(n.clone());
            }
        }
    }
    assert_eq!(seen.len(), 2, "requests were not spread over both pods");
    // The Pods' IPs are what the EndpointSlice lists.
    let slice = s.ok(&["get", "endpointslices", "web", "-o", "json"]);
    for p in pods(&s, "app=web") {
        let ip = p["status"]["podIP"].as_str().unwrap();
        assert!(slice.contains(ip), "{ip} not in {slice}");
    }

    s.ok(&["delete", "deployment", "web"]);
    eventually(60, "the pods to go", || {
        pods(&s, "app=web").is_empty().then_some(())
    });
    assert_clean(&env, &s, &node);
}

/// A cgroup file of a container (v1 or v2 layout).
fn cgroup_file(controller: &str, id: &str, file: &str) -> Option<String> {
    [
        format!("/sys/fs/cgroup/{controller}/ketch/{id}/{file}"),
        format!("/sys/fs/cgroup/ketch/{id}/{file}"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
}

#[test]
fn memory_and_pids_limits_hold_and_oom_kills_are_reported() {
    let Some(env) = test_env() else { return };
    let bridge = Bridge::new();
    let (s, node) = serve(
        &env,
        &bridge,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hog\nspec:\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: {img}\n    command: [sh, -c, 'x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done']\n    resources:\n      limits: {{memory: 16Mi}}\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: bomb\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {img}\n    command: [sh, -c, 'bomb() {{ bomb | bomb & }}; bomb; sleep 3600']\n    resources:\n      limits: {{cpu: 200m, memory: 128Mi}}\n",
            img = env.busybox
        ),
    );
    let p = wait_pod(&s, "hog", 120, "the memory hog to be OOM-killed", |p| {
        p["status"]["phase"] == "Failed"
    });
    let term = &p["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(term["reason"], "OOMKilled", "{p}");
    assert_eq!(term["exitCode"], 137, "{p}");

    // The fork bomb runs into pids.max and stays there; the node keeps serving.
    let id = eventually(60, "the bomb to run", || {
        let p = pod(&s, "bomb");
        p["status"]["containerStatuses"][0]["containerID"]
            .as_str()
            .and_then(|c| c.strip_prefix("containerd://"))
            .map(str::to_string)
    });
    let max: u64 = eventually(30, "pids.max", || cgroup_file("pids", &id, "pids.max"))
        .trim()
        .parse()
        .unwrap();
    assert_eq!(max, 1024);
    let current = eventually(60, "the bomb to reach its limit", || {
        let c: u64 = cgroup_file("pids", &id, "pids.current")?
            .trim()
            .parse()
            .ok()?;
        (c + 10 >= max).then_some(c)
    });
    assert!(current <= max, "{current} > {max}");
    s.ok(&["get", "nodes"]);

    s.ok(&["delete", "pod", "hog", "bomb"]);
    eventually(120, "the pods to go", || {
        (s.ketch(&["get", "pod", "bomb"]).status.code() != Some(0)).then_some(())
    });
    assert_clean(&env, &s, &node);
}

#[test]
fn after_kill_9_the_agent_readopts_the_running_containers() {
    let Some(env) = test_env() else { return };
    let bridge = Bridge::new();
    let (s, node) = serve(&env, &bridge, &http_app(&env.http_image, 1));
    let name = wait_running(&s, "app=web", 1).remove(0);
    let before = pod(&s, &name);
    let cid = before["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap()
        .to_string();
    let id = cid.strip_prefix("containerd://").unwrap().to_string();
    // `ctr tasks ls` columns: TASK PID STATUS (padding varies with the other tasks listed).
    let task_line = |env: &Env| {
        ctr(env, &["tasks", "ls"])
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .find(|l| l.starts_with(id.as_str()))
    };
    let task_before = task_line(&env).expect("the task runs");
    assert!(get_web(&s).contains(&name));

    let (dir, port) = s.kill9();
    // containerd still runs it while no agent is there.
    assert_eq!(task_line(&env).as_deref(), Some(task_before.as_str()));
    let mut flags = bridge.flags(&env).to_vec();
    flags.extend(["--gateway", "127.0.0.1:0"]);
    let s = Server::start_full(dir, port, &flags);
    let after = eventually(60, "the pod to be reported running again", || {
        let p = pod(&s, &name);
        let c = &p["status"]["containerStatuses"][0];
        (c["containerID"] == cid.as_str() && c["state"]["running"].is_object()).then_some(p)
    });
    assert_eq!(
        after["status"]["containerStatuses"][0]["restartCount"], 0,
        "{after}"
    );
    // The same task (same pid), not a new one.
    assert_eq!(task_line(&env).as_deref(), Some(task_before.as_str()));
    assert_eq!(pods(&s, "app=web").len(), 1);
    assert!(get_web(&s).contains(&name));
    let described = s.ok(&["describe", "pod", &name]);
    assert!(described.contains("Adopted"), "{described}");

    s.ok(&["delete", "deployment", "web"]);
    eventually(60, "the pods to go", || {
        pods(&s, "app=web").is_empty().then_some(())
    });
    assert_clean(&env, &s, &node);
}

#[test]
fn a_running_container_no_pod_claims_is_stopped_when_its_agent_comes_back() {
    let Some(env) = test_env() else { return };
    let bridge = Bridge::new();
    let (s, node) = serve(&env, &bridge, &http_app(&env.http_image, 1));
    let name = wait_running(&s, "app=web", 1).remove(0);
    let cid = pod(&s, &name)["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap()
        .to_string();
    let id = cid.strip_prefix("containerd://").unwrap().to_string();
    let task = |env: &Env| {
        ctr(env, &["tasks", "ls", "-q"])
            .lines()
            .any(|t| t == id.as_str())
    };
    assert!(task(&env));
    // The agent dies; meanwhile its Pod is deleted (a server without an agent does it).
    let (dir, port) = s.kill9();
    let s = Server::start_full(dir, port, &["--no-agent"]);
    s.ok(&["delete", "deployment", "web"]);
    eventually(30, "the pod gone", || {
        pods(&s, "app=web").is_empty().then_some(())
    });
    let (dir, port) = s.kill9();
    assert!(
        task(&env),
        "containerd still runs it while no agent is there"
    );
    // Back, the agent finds a running container no Pod claims: it stops it and removes it,
    // task first (a container record deleted under a live task would leave its process
    // running, unlisted).
    let mut flags = bridge.flags(&env).to_vec();
    flags.extend(["--gateway", "127.0.0.1:0"]);
    let s = Server::start_full(dir, port, &flags);
    eventually(60, "the unclaimed task gone", || {
        (!task(&env)).then_some(())
    });
    assert_clean(&env, &s, &node);
}

/// A Wasm Service `hello`, a container Service `web` and a busybox Pod that calls both by
/// name through the node's Service proxy (`HTTP_PROXY`), with `$(VAR)` expanded in its
/// command; a host that is not a Service is refused by the proxy.
const SERVICE_CALLER: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
spec:
  replicas: 1
  selector:
    matchLabels: {app: hello}
  template:
    metadata:
      labels: {app: hello}
    spec:
      containers:
      - name: app
        image: file:HELLO
---
apiVersion: v1
kind: Service
metadata:
  name: hello
spec:
  selector: {app: hello}
  ports:
  - port: 80
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: HTTP_IMAGE
        ports:
        - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: Pod
metadata:
  name: caller
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: BUSYBOX
    env:
    - name: TARGET
      value: http://hello.default.svc.cluster.local:80/
    - name: ESCAPED
      value: $$(TARGET)
    command:
    - sh
    - -c
    - |
      get() {
        n=0
        until wget -q -O- "$1"; do
          n=$((n+1)); [ $n -lt 90 ] || exit 7; sleep 1
        done
        echo
      }
      get http://hello/
      get http://web.default/from-caller
      wget -q -O- $(TARGET) || exit 8
      echo "proxy=$(HTTP_PROXY) escaped=$ESCAPED"
      echo 'literal=$$(TARGET) kept=$(UNDEFINED)'
      echo "--- resolv.conf"; cat /etc/resolv.conf; echo "--- end"
      if wget -q -O- http://example.com/; then exit 9; fi
      p=${HTTP_PROXY#http://}
      # stdin stays open until the answer is in: the proxy does not serve half-closed requests.
      (printf 'GET http://example.com/ HTTP/1.0\r\nHost: example.com\r\n\r\n'; sleep 5) |
        nc ${p%:*} ${p##*:}
      exit 0
"#;

#[test]
fn a_container_calls_a_service_by_name_through_the_node_proxy() {
    let Some(env) = test_env() else { return };
    let bridge = Bridge::new();
    let manifest = SERVICE_CALLER
        .replace("HELLO", ketch_test_guests::HELLO)
        .replace("BUSYBOX", &env.busybox)
        .replace("HTTP_IMAGE", &env.http_image);
    let (s, node) = serve(&env, &bridge, &manifest);
    let p = wait_pod(&s, "caller", 180, "the caller to finish", |p| {
        matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
    });
    let logs = s.ok(&["logs", "caller"]);
    let term = &p["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(term["exitCode"], 0, "{p}\n{logs}\n{}", s.log());
    // Both names answered: the short one and the fully qualified one with a port.
    assert_eq!(logs.matches("hello from ketch").count(), 2, "{logs}");
    // A container back end, by `<svc>.<ns>`.
    assert!(
        logs.contains(r#""from":"backend""#) && logs.contains(r#""path":"/from-caller""#),
        "{logs}"
    );
    let proxy = format!("http://{}1:15080", bridge.subnet.trim_end_matches("0/24"));
    assert!(
        logs.contains(&format!("proxy={proxy} escaped=$(TARGET)\n")),
        "{logs}"
    );
    assert!(
        logs.contains("literal=$(TARGET) kept=$(UNDEFINED)\n"),
        "{logs}"
    );
    // The host's resolver config minus loopback nameservers.
    let resolv = logs
        .split("--- resolv.conf")
        .nth(1)
        .and_then(|r| r.split("--- end").next())
        .unwrap_or_default();
    assert!(!resolv.contains("nameserver 127."), "{resolv}");
    assert!(
        resolv.contains("nameserver ") || resolv.contains("# ketch: no nameserver"),
        "{resolv}"
    );
    // wget saw the refusal; the proxy's body says why.
    assert!(logs.contains("403 Forbidden"), "{logs}");
    assert!(
        logs.contains("\"example.com\" is not a Service of this cluster"),
        "{logs}"
    );

    // A caller that is no Pod of the node (here: the node itself) is refused too.
    let (code, _, body) = http("GET", &format!("{proxy}/"), &[("host", "hello")], None);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("is not a Pod on this node"), "{body}");

    s.ok(&["delete", "pod", "caller"]);
    s.ok(&["delete", "deployment", "hello", "web"]);
    eventually(60, "the pods to go", || {
        pods(&s, "app=web").is_empty().then_some(())
    });
    assert_clean(&env, &s, &node);
}

/// The mixed example's Wasm front end's answer through the gateway at `gw` (it calls the
/// container back end by its Service name), once it gives one.
fn front_end_answer(gw: &str) -> String {
    eventually(60, "the front end to reach the back end", || {
        let (code, _, body) = http(
            "GET",
            gw,
            &[("host", "frontend.default.ketch.localhost")],
            None,
        );
        (code == 200).then_some(body)
    })
}

#[test]
fn the_mixed_example_answers_end_to_end() {
    let Some(env) = test_env() else { return };
    let bridge = Bridge::new();
    // As a user runs it: `ketch up` builds the Wasm front end (and pushes the back end's image
    // to the registry) when the component is missing, then applies the one manifest.
    let mut up = crate::support::KetchUp::start("mixed", &bridge.flags(&env));
    let url = up.wait_line("service default/frontend: ", 900);
    assert!(url.contains("frontend.default.ketch.localhost"), "{url}");
    let gw = format!("http://127.0.0.1:{}/", up.gw_port);
    // The Wasm front end calls the container back end by its Service name.
    let body = front_end_answer(&gw);
    assert!(body.contains("frontend got:"), "{body}");
    assert!(body.contains("\"from\":\"backend\""), "{body}");
    let status = up.interrupt(60);
    assert!(status.success(), "ketch up exited with {status}");
}

#[test]
fn ketch_up_with_its_default_relative_data_dir_runs_containers() {
    let Some(env) = test_env() else { return };
    let bridge = Bridge::new();
    // No --data-dir: the default `./.ketch` is relative (to the temp dir `ketch up` runs in).
    // The agent hands paths under it to processes that run elsewhere (CNI plugins,
    // containerd's shims); a relative one turned containers off with only a warning.
    let mut up =
        crate::support::KetchUp::start_with_the_default_data_dir("mixed", &bridge.flags(&env));
    let data_dir = up.dir.path().canonicalize().unwrap().join(".ketch");
    let started = up.wait_line("ketch ", 900);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let nodes: Value = serde_json::from_str(&up.ok(&["get", "nodes", "-o", "json"])).unwrap();
        let offers = nodes["items"][0]["status"]["runtimeHandlers"]
            .as_array()
            .is_some_and(|hs| hs.iter().any(|h| h["name"] == "container"));
        if offers {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node does not offer containers:\n{}",
            up.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The default was used, made absolute.
    assert!(
        started.contains(&format!("(data in {};", data_dir.display())),
        "{started}"
    );
    up.wait_line("service default/frontend: ", 300);
    let gw = format!("http://127.0.0.1:{}/", up.gw_port);
    // The Wasm front end calls the container back end by its Service name.
    let body = front_end_answer(&gw);
    assert!(body.contains("\"from\":\"backend\""), "{body}");
    assert!(data_dir.join("agent").join("cni").is_dir(), "{}", up.log());
    let status = up.interrupt(60);
    assert!(status.success(), "ketch up exited with {status}");
}

#[test]
fn the_mixed_example_deploys_from_registry_references() {
    let Some(env) = test_env() else { return };
    let registry = env_or_skip("KETCH_TEST_REGISTRY").unwrap();
    // The Wasm front end pushed with `ketch push`; the back end's image is already there
    // (tests/run pushes it, as the example's build-image script does).
    let (ok, reference, err) = crate::registry::push(&[
        ketch_test_guests::EXAMPLE_MIXED_FRONTEND,
        &format!("{registry}/ketch-examples/mixed-frontend:test"),
    ]);
    assert!(ok, "ketch push: {err}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mixed");
    let manifest = crate::registry::example_from_registry(&dir, reference.trim());
    let bridge = Bridge::new();
    let (s, node) = serve(&env, &bridge, &manifest);
    wait_running(&s, "app=frontend", 2);
    let gw = s.gateway();
    let body = front_end_answer(&format!("{gw}/"));
    assert!(body.contains("frontend got:"), "{body}");
    assert!(body.contains("\"from\":\"backend\""), "{body}");
    s.ok(&[
        "delete",
        "-f",
        s.dir.path().join("app.yaml").to_str().unwrap(),
    ]);
    eventually(60, "the pods to go", || {
        pods(&s, "app in (frontend,backend)")
            .is_empty()
            .then_some(())
    });
    assert_clean(&env, &s, &node);
}

/// The Pod's first container's waiting `(reason, message)`.
fn waiting(p: &Value) -> (String, String) {
    let w = &p["status"]["containerStatuses"][0]["state"]["waiting"];
    (
        w["reason"].as_str().unwrap_or_default().to_string(),
        w["message"].as_str().unwrap_or_default().to_string(),
    )
}

fn busybox_pod(name: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, 'exit 0']\n"
    )
}

#[test]
fn a_missing_tag_waits_in_image_pull_backoff_with_the_registrys_message() {
    let Some(env) = test_env() else { return };
    let registry = env_or_skip("KETCH_TEST_REGISTRY").unwrap();
    let bridge = Bridge::new();
    let image = format!("{registry}/ketch-test/busybox:no-such-tag");
    let (s, node) = serve(&env, &bridge, &busybox_pod("missing", &image));
    let p = wait_pod(&s, "missing", 60, "ImagePullBackOff", |p| {
        waiting(p).0 == "ImagePullBackOff"
    });
    let (_, message) = waiting(&p);
    assert!(
        message.starts_with(&format!(
            "Back-off pulling image \"{image}\": ErrImagePull: pulling {image}: "
        )),
        "{message}"
    );
    // distribution's own words for a tag it does not have.
    assert!(message.contains("manifest unknown"), "{message}");
    let described = s.ok(&["describe", "pod", "missing"]);
    assert!(described.contains("ErrImagePull: pulling"), "{described}");
    assert!(described.contains("manifest unknown"), "{described}");
    assert!(
        described.contains(&format!("Back-off pulling image \"{image}\"")),
        "{described}"
    );
    // restartPolicy Never does not stop pull retries: the Pod stays Pending.
    assert_eq!(p["status"]["phase"], "Pending", "{p}");
    s.ok(&["delete", "pod", "missing"]);
    assert_clean(&env, &s, &node);
}

/// A Docker-style config.json with `user` and `password` for `registry`.
pub(crate) fn docker_config(dir: &std::path::Path, registry: &str, user: &str, password: &str) {
    let config = serde_json::json!({"auths": {registry: {"username": user, "password": password}}});
    write_file(dir, "config.json", &config.to_string());
}

#[test]
fn a_registry_with_a_password_is_pulled_from_with_the_docker_config() {
    let Some(env) = test_env() else { return };
    let Ok(registry) = std::env::var("KETCH_TEST_AUTH_REGISTRY") else {
        eprintln!("KETCH_TEST_AUTH_REGISTRY is not set (tests/run could not start it): skipped");
        return;
    };
    let user = std::env::var("KETCH_TEST_AUTH_USER").unwrap();
    let password = std::env::var("KETCH_TEST_AUTH_PASSWORD").unwrap();
    let creds = tempfile::tempdir().unwrap();
    let config = creds.path().join("config.json");
    // A wrong password first: the registry's refusal is the message.
    docker_config(creds.path(), &registry, &user, "wrong");
    let bridge = Bridge::new();
    let mut flags = bridge.flags(&env).to_vec();
    flags.extend(["--registry-config", config.to_str().unwrap()]);
    let s = Server::start_with(&flags);
    let node = node_name(&s);
    let image = format!("{registry}/ketch-test/busybox:1");
    let f = write_file(s.dir.path(), "app.yaml", &busybox_pod("private", &image));
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    let p = wait_pod(&s, "private", 60, "the refused pull", |p| {
        waiting(p).0 == "ImagePullBackOff"
    });
    let (_, message) = waiting(&p);
    assert!(message.contains("Not authorized"), "{message}");
    // The config is read on every pull: the next attempt (after the 10 s back-off) uses the
    // right password without restarting anything.
    docker_config(creds.path(), &registry, &user, &password);
    let p = wait_pod(&s, "private", 90, "the pod to run to completion", |p| {
        p["status"]["phase"] == "Succeeded"
    });
    assert_eq!(
        p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"], 0,
        "{p}"
    );
    s.ok(&["delete", "pod", "private"]);
    assert_clean(&env, &s, &node);
}

/// A Pod's container that runs `script` once (busybox), in namespace `ns`, with
/// `security` (YAML lines under the container, indented four spaces) added.
fn script_pod(ns: &str, name: &str, image: &str, script: &str, security: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, {script:?}]\n{security}"
    )
}

fn logs_when_done(s: &Server, ns: &str, name: &str) -> String {
    eventually(120, "the pod to finish", || {
        let p: Value =
            serde_json::from_str(&s.ok(&["get", "pod", name, "-n", ns, "-o", "json"])).unwrap();
        matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")).then_some(())
    });
    s.ok(&["logs", name, "-n", ns])
}

#[test]
fn a_container_runs_under_the_allow_list_seccomp_profile_with_a_hardened_proc() {
    let Some(env) = test_env() else { return };
    let bridge = Bridge::new();
    // The masked files this kernel has (/proc/kcore and others are configuration-dependent:
    // runc masks only what exists) read as empty; /proc/interrupts exists everywhere.
    let script = "grep -E '^Seccomp(_filters)?:' /proc/self/status; \
                  awk '$5 == \"/proc\" {print \"proc-opts=\" $6}' /proc/self/mountinfo; \
                  for f in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug /proc/interrupts; do \
                    [ -e $f ] && echo masked $f=$(wc -c < $f); done; \
                  mkdir -p /tmp/m; mount -t tmpfs none /tmp/m 2>&1 && echo mount=ok; \
                  (echo x > /proc/sysrq-trigger) 2>/dev/null && echo sysrq=written || echo sysrq=ro";
    let (s, node) = serve(
        &env,
        &bridge,
        &script_pod("default", "probe", &env.busybox, script, ""),
    );
    let logs = logs_when_done(&s, "default", "probe");
    // Mode 2: a filter is loaded.
    assert!(logs.contains("Seccomp:\t2"), "{logs}");
    let opts = logs
        .lines()
        .find_map(|l| l.strip_prefix("proc-opts="))
        .unwrap_or_else(|| panic!("no /proc line: {logs}"));
    for o in ["nosuid", "nodev", "noexec"] {
        assert!(
            opts.split(',').any(|x| x == o),
            "/proc is {opts}, wants {o}"
        );
    }
    let masked: Vec<&str> = logs.lines().filter(|l| l.starts_with("masked ")).collect();
    assert!(masked.contains(&"masked /proc/interrupts=0"), "{logs}");
    for m in masked {
        assert!(m.ends_with("=0"), "{m} is not empty: {logs}");
    }
    // Without SYS_ADMIN, mount is outside the allow list: EPERM, which busybox words so.
    assert!(
        logs.contains("mount: permission denied") && !logs.contains("mount=ok"),
        "{logs}"
    );
    assert!(logs.contains("sysrq=ro"), "{logs}");
    s.ok(&["delete", "pod", "probe"]);
    assert_clean(&env, &s, &node);
}

#[test]
fn a_privileged_namespace_may_add_sys_admin_and_run_unconfined() {
    let Some(env) = test_env() else { return };
    let bridge = Bridge::new();
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ops\n  labels:\n    pod-security.kubernetes.io/enforce: privileged\n";
    let admin = script_pod(
        "ops",
        "admin",
        &env.busybox,
        "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m && echo mount=ok",
        "    securityContext:\n      capabilities:\n        add: [SYS_ADMIN]\n",
    );
    let unconfined = script_pod(
        "ops",
        "loose",
        &env.busybox,
        "grep -E '^Seccomp:' /proc/self/status",
        "    securityContext:\n      seccompProfile:\n        type: Unconfined\n",
    );
    let (s, node) = serve(&env, &bridge, &format!("{ns}---\n{admin}---\n{unconfined}"));
    // SYS_ADMIN lifts the capability check and the seccomp group Docker gates on it.
    let logs = logs_when_done(&s, "ops", "admin");
    assert!(logs.contains("mount=ok"), "{logs}");
    let logs = logs_when_done(&s, "ops", "loose");
    assert!(logs.contains("Seccomp:\t0"), "{logs}");
    s.ok(&["delete", "pod", "admin", "-n", "ops"]);
    s.ok(&["delete", "pod", "loose", "-n", "ops"]);
    assert_clean(&env, &s, &node);
}

#[test]
fn run_as_non_root_with_a_root_image_waits_with_the_kubelets_reason() {
    let Some(env) = test_env() else { return };
    let bridge = Bridge::new();
    let (s, node) = serve(
        &env,
        &bridge,
        &script_pod(
            "default",
            "rooty",
            &env.busybox,
            "id",
            "    securityContext:\n      runAsNonRoot: true\n",
        ),
    );
    let p = wait_pod(&s, "rooty", 60, "CreateContainerConfigError", |p| {
        waiting(p).0 == "CreateContainerConfigError"
    });
    let (_, message) = waiting(&p);
    assert!(
        message.contains("container has runAsNonRoot and image will run as root"),
        "{message}"
    );
    s.ok(&["delete", "pod", "rooty"]);
    assert_clean(&env, &s, &node);
}
