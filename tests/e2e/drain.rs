//! Voluntary disruption: `ketch cordon` / `uncordon`, PodDisruptionBudgets and their
//! status, the `pods/eviction` subresource, and `ketch drain` of one of three nodes (real
//! `ketch server --no-agent` and `ketch agent` processes) while a budget holds.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::gateway::hello_app;
use crate::node_failure::{cluster, hello_pods};
use crate::support::{Server, eventually, pods, running_ready, wait_running, write_file};

fn budget(min_available: &str) -> String {
    format!(
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: hello\nspec:\n  minAvailable: {min_available}\n  selector:\n    matchLabels: {{app: hello}}\n"
    )
}

fn pdb_status(s: &Server) -> Value {
    let out = s.ok(&["get", "pdb", "hello", "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["status"].clone()
}

fn node_json(s: &Server, node: &str) -> Value {
    serde_json::from_str(&s.ok(&["get", "node", node, "-o", "json"])).unwrap()
}

fn has_unschedulable_taint(node: &Value) -> bool {
    node["spec"]["taints"].as_array().is_some_and(|ts| {
        ts.iter()
            .any(|t| t["key"] == "node.kubernetes.io/unschedulable" && t["effect"] == "NoSchedule")
    })
}

#[test]
fn cordon_and_uncordon_mark_the_node_and_say_so_like_kubectl() {
    let s = Server::start();
    // The server's own node registers a moment after the API is ready.
    let node = crate::support::eventually(30, "the server's node", || {
        let nodes: Value = serde_json::from_str(&s.ok(&["get", "nodes", "-o", "json"])).unwrap();
        nodes["items"][0]["metadata"]["name"]
            .as_str()
            .map(str::to_string)
    });

    assert_eq!(
        s.ok(&["cordon", &node]).trim(),
        format!("node/{node} cordoned")
    );
    assert_eq!(
        s.ok(&["cordon", &node]).trim(),
        format!("node/{node} already cordoned")
    );
    assert!(s.ok(&["get", "nodes"]).contains("SchedulingDisabled"));
    eventually(10, "the unschedulable taint", || {
        has_unschedulable_taint(&node_json(&s, &node)).then_some(())
    });
    let described = s.ok(&["describe", "node", &node]);
    assert!(
        described.contains("Unschedulable:   true")
            && described.contains("node.kubernetes.io/unschedulable:NoSchedule"),
        "{described}"
    );
    // A Pod created now is not placed on the cordoned (only) node.
    let f = write_file(s.dir.path(), "hello.yaml", &hello_app(1, None));
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    eventually(20, "the Pod unschedulable", || {
        let ps = pods(&s, "app=hello");
        (ps.len() == 1 && ps[0]["spec"]["nodeName"].is_null()).then_some(())
    });

    assert_eq!(
        s.ok(&["uncordon", &node]).trim(),
        format!("node/{node} uncordoned")
    );
    assert_eq!(
        s.ok(&["uncordon", &node]).trim(),
        format!("node/{node} already uncordoned")
    );
    eventually(10, "the taint gone", || {
        (!has_unschedulable_taint(&node_json(&s, &node))).then_some(())
    });
    assert!(
        s.ok(&["describe", "node", &node])
            .contains("Unschedulable:   false")
    );
    wait_running(&s, "app=hello", 1);

    let err = s.fails(&["cordon", "no-such-node"]);
    assert!(err.contains("not found"), "{err}");

    // A Pod no controller manages is not drained without --force (it would not come back).
    let bare = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bare\n  labels: {app: bare}\nspec:\n  containers:\n  - name: app\n    image: file:HELLO\n"
        .replace("HELLO", ketch_test_guests::HELLO);
    let f = write_file(s.dir.path(), "bare.yaml", &bare);
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    wait_running(&s, "app=bare", 1);
    let err = s.fails(&["drain", &node]);
    assert!(
        err.contains(
            "cannot evict Pods that declare no controller (use --force to override): default/bare"
        ),
        "{err}"
    );
    let out = s.ok(&["drain", &node, "--force", "--timeout", "60s"]);
    assert!(
        out.contains("node/")
            && out.contains("already cordoned")
            && out.contains("pod/bare evicted"),
        "{out}"
    );
    assert!(pods(&s, "app=bare").is_empty());
    s.ok(&["uncordon", &node]);
}

#[test]
fn budgets_are_validated_by_field_and_show_their_status_and_a_refused_eviction_is_429() {
    let s = Server::start();
    let bad = "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: bad\nspec:\n  minAvailable: 150%\n  maxUnavailable: 1\n  unhealthyPodEvictionPolicy: Sometimes\n  selector:\n    matchLabels: {app: hello}\n";
    let f = write_file(s.dir.path(), "bad.yaml", bad);
    let err = s.fails(&["apply", "-f", f.to_str().unwrap()]);
    for want in [
        "spec: Invalid value: \"minAvailable and maxUnavailable\": minAvailable and maxUnavailable cannot be both set",
        "spec.minAvailable: Invalid value: \"150%\": must not be greater than 100%",
        "spec.unhealthyPodEvictionPolicy: Unsupported value: \"Sometimes\"",
    ] {
        assert!(err.contains(want), "missing {want:?} in {err}");
    }
    let neither = "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: bad\nspec:\n  selector: {}\n";
    let f = write_file(s.dir.path(), "neither.yaml", neither);
    let err = s.fails(&["apply", "-f", f.to_str().unwrap()]);
    assert!(err.contains("spec.minAvailable: Required value"), "{err}");

    let f = write_file(s.dir.path(), "hello.yaml", &hello_app(1, None));
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    let pod = wait_running(&s, "app=hello", 1).remove(0);
    let f = write_file(s.dir.path(), "pdb.yaml", &budget("1"));
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    let status = eventually(20, "the budget's status", || {
        let st = pdb_status(&s);
        (st["expectedPods"] == 1 && st["currentHealthy"] == 1).then_some(st)
    });
    assert_eq!(status["desiredHealthy"], 1);
    assert_eq!(status["disruptionsAllowed"], 0);
    assert_eq!(status["conditions"][0]["type"], "DisruptionAllowed");
    assert_eq!(status["conditions"][0]["reason"], "InsufficientPods");
    let table = s.ok(&["get", "poddisruptionbudgets"]);
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("NAME")
            && header.contains("MIN AVAILABLE   MAX UNAVAILABLE   ALLOWED DISRUPTIONS   AGE"),
        "{table}"
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], &["hello", "1", "N/A", "0"], "{table}");
    assert!(
        s.ok(&["describe", "pdb", "hello"])
            .contains("disruptionsAllowed: 0")
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = s.client();
    let err = rt
        .block_on(c.evict_pod("default", &pod, None))
        .expect_err("the budget holds the only Pod");
    assert_eq!(err.code(), Some(429), "{err}");
    assert_eq!(
        err.to_string(),
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    wait_running(&s, "app=hello", 1);

    // A drain that the budget holds up gives up at its timeout, saying what is left.
    let node = pods(&s, "app=hello")[0]["spec"]["nodeName"]
        .as_str()
        .unwrap()
        .to_string();
    let err = s.fails(&["drain", &node, "--timeout", "3s"]);
    assert!(
        err.contains(&format!(
            "drain did not complete within 3s: pods still on node {node}: default/{pod}"
        )),
        "{err}"
    );
    s.ok(&["uncordon", &node]);
    wait_running(&s, "app=hello", 1);

    // Without the budget the same eviction deletes the Pod, and its ReplicaSet replaces it.
    s.ok(&["delete", "pdb", "hello"]);
    rt.block_on(c.evict_pod("default", &pod, None)).unwrap();
    eventually(30, "a replacement Pod", || {
        let ps = pods(&s, "app=hello");
        (ps.len() == 1 && ps[0]["metadata"]["name"] != pod.as_str() && running_ready(&ps[0]))
            .then_some(())
    });
}

#[test]
fn drain_with_a_budget_never_goes_below_min_available_and_uncordon_lets_pods_back() {
    let (s, _agents) = cluster();
    let f = write_file(s.dir.path(), "pdb.yaml", &budget("5"));
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    eventually(20, "one disruption allowed", || {
        let st = pdb_status(&s);
        (st["currentHealthy"] == 6 && st["disruptionsAllowed"] == 1).then_some(())
    });
    let victim = "n1";
    let on_victim = hello_pods(&s)
        .iter()
        .filter(|(_, _, n)| n == victim)
        .count();
    assert!(on_victim >= 1, "{:?}", hello_pods(&s));

    let stop = AtomicBool::new(false);
    let lowest = AtomicUsize::new(usize::MAX);
    let looks = AtomicUsize::new(0);
    let out = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let ready = pods(&s, "app=hello")
                    .iter()
                    .filter(|p| running_ready(p))
                    .count();
                lowest.fetch_min(ready, Ordering::Relaxed);
                looks.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let out = s.ketch(&["drain", victim, "--timeout", "150s"]);
        stop.store(true, Ordering::Relaxed);
        out
    });
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "drain failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        looks.load(Ordering::Relaxed) > 5,
        "the watcher looked too seldom"
    );
    assert!(
        lowest.load(Ordering::Relaxed) >= 5,
        "Ready Pods went down to {} during the drain:\n{stdout}",
        lowest.load(Ordering::Relaxed)
    );
    assert!(
        stdout.starts_with(&format!("node/{victim} cordoned")),
        "{stdout}"
    );
    assert!(
        stdout.matches("evicting pod default/hello-").count() >= on_victim,
        "{stdout}"
    );
    assert_eq!(stdout.matches(" evicted\n").count(), on_victim, "{stdout}");
    if on_victim >= 2 {
        // The second eviction came while the first Pod's replacement was not Ready yet.
        assert!(
            stdout.contains("Cannot evict pod as it would violate the pod's disruption budget."),
            "{stdout}"
        );
    }
    assert!(
        stdout
            .trim_end()
            .ends_with(&format!("node/{victim} drained")),
        "{stdout}"
    );
    println!("{stdout}");

    eventually(60, "six Ready replicas, none on the drained node", || {
        let ps = hello_pods(&s);
        let ready = pods(&s, "app=hello")
            .iter()
            .filter(|p| running_ready(p))
            .count();
        (ps.len() == 6 && ready == 6 && ps.iter().all(|(_, _, n)| n != victim)).then_some(())
    });

    assert!(has_unschedulable_taint(&node_json(&s, victim)));
    assert_eq!(
        s.ok(&["uncordon", victim]).trim(),
        format!("node/{victim} uncordoned")
    );
    // Until the lifecycle controller's next look removes the taint, the node still repels
    // new Pods (as in Kubernetes).
    eventually(10, "the unschedulable taint gone", || {
        (!has_unschedulable_taint(&node_json(&s, victim))).then_some(())
    });
    s.ok(&["scale", "deploy/hello", "--replicas", "8"]);
    let placed = std::time::Instant::now();
    while placed.elapsed() < Duration::from_secs(60) {
        if pods(&s, "app=hello")
            .iter()
            .any(|p| p["spec"]["nodeName"] == victim && running_ready(p))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "no replica on the uncordoned node: {:?}\n{}\n{}",
        hello_pods(&s),
        s.ok(&["get", "node", victim, "-o", "yaml"]),
        s.ok(&["get", "events"])
    );
}

#[test]
fn two_evictions_racing_for_the_last_allowed_disruption_cannot_both_win() {
    let s = Server::start();
    let f = write_file(s.dir.path(), "hello.yaml", &hello_app(3, None));
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    let names = wait_running(&s, "app=hello", 3);
    let f = write_file(s.dir.path(), "pdb.yaml", &budget("2"));
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    eventually(20, "one disruption allowed", || {
        let st = pdb_status(&s);
        (st["currentHealthy"] == 3 && st["disruptionsAllowed"] == 1).then_some(())
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = s.client();
    let (a, b) = rt.block_on(async {
        tokio::join!(
            c.evict_pod("default", &names[0], None),
            c.evict_pod("default", &names[1], None)
        )
    });
    let refused: Vec<_> = [&a, &b].iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(refused.len(), 1, "{a:?} {b:?}");
    assert_eq!(refused[0].code(), Some(429), "{refused:?}");
    // Exactly one of the two Pods is gone.
    let left: Vec<String> = pods(&s, "app=hello")
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    let kept = names[..2].iter().filter(|n| left.contains(n)).count();
    assert_eq!(kept, 1, "{names:?} {left:?}");
}
