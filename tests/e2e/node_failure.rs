//! A node that dies, hangs or is cut off: one `ketch server --no-agent` and three
//! `ketch agent` processes on loopback, a Deployment of six Wasm replicas spread over them
//! (the default scoring: bin-packing, with the replicas of one owner spread over nodes),
//! traffic through a node that stays up.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::gateway::{HELLO_HOST, hello_app};
use crate::support::{KETCH, Server, eventually, http, pods, running_ready, write_file};

pub(crate) struct AgentProc {
    pub(crate) name: String,
    child: Child,
}

impl AgentProc {
    fn start(s: &Server, name: &str) -> AgentProc {
        Self::start_at(s, name, "127.0.0.1", None)
    }

    /// An agent listening on `host`, inside network namespace `netns` if given.
    fn start_at(s: &Server, name: &str, host: &str, netns: Option<&str>) -> AgentProc {
        let log = std::fs::File::create(s.dir.path().join(format!("{name}.log"))).unwrap();
        // `ip netns exec` execs ketch in the namespace: the child's PID is ketch's own.
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, KETCH]);
                c.env("KETCH_ALLOW_FILE_IMAGES", crate::support::file_image_dirs());
                c
            }
            None => crate::support::ketch_cmd(),
        };
        let listen = format!("{host}:0");
        let child = cmd
            .args([
                "agent",
                "--server",
                &s.url,
                "--token",
                &s.join_token(),
                "--name",
                name,
            ])
            .args(["--agent-listen", &listen, "--gateway", &listen])
            .args(["--gateway-tls", &listen])
            .args(["--no-containerd", "--data-dir"])
            .arg(s.dir.path().join(format!("{name}-data")))
            .env("KETCH_CONFIG", s.dir.path().join("no-config"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        AgentProc {
            name: name.into(),
            child,
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {}", self.name);
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server, three agents, and six hello replicas Running on them.
pub(crate) fn cluster() -> (Server, Vec<AgentProc>) {
    let s = Server::start_with(&["--no-agent"]);
    let agents: Vec<AgentProc> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| AgentProc::start(&s, n))
        .collect();
    deploy_hello(&s, &agents);
    (s, agents)
}

/// Waits for the agents' nodes, deploys six hello replicas, waits for them on three nodes.
fn deploy_hello(s: &Server, agents: &[AgentProc]) {
    for a in agents {
        s.gateway_of(&a.name);
    }
    eventually(30, "three Ready nodes", || {
        (ready_nodes(s).len() == 3).then_some(())
    });
    // No requests: bin-packing sees every node alike, default spreading alone spreads them.
    // Exposed: the agents' gateways listen on addresses others can reach.
    let f = write_file(
        s.dir.path(),
        "hello.yaml",
        &crate::gateway::exposed(&hello_app(6, None)),
    );
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    eventually(60, "6 running replicas on 3 nodes", || {
        let ps = pods(s, "app=hello");
        let nodes: std::collections::BTreeSet<&str> = ps
            .iter()
            .filter_map(|p| p["spec"]["nodeName"].as_str())
            .collect();
        (ps.len() == 6 && ps.iter().all(running_ready) && nodes.len() == 3).then_some(())
    });
}

fn ready_nodes(s: &Server) -> Vec<String> {
    let out = s.ok(&["get", "nodes", "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| {
            n["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

/// `(name, uid, node)` of the hello Pods.
pub(crate) fn hello_pods(s: &Server) -> Vec<(String, String, String)> {
    pods(s, "app=hello")
        .iter()
        .map(|p| {
            let f = |ptr: &str| {
                p.pointer(ptr)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            (f("/metadata/name"), f("/metadata/uid"), f("/spec/nodeName"))
        })
        .collect()
}

/// Ready endpoints of the hello Service on `node`.
fn ready_endpoints_on(s: &Server, node: &str) -> usize {
    let out = s.ok(&["get", "endpointslices", "hello", "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["nodeName"] == node && e["conditions"]["ready"] == true)
        .count()
}

/// One answered request: when, its method, its status.
type Answered = (Instant, &'static str, u16);

/// Requests through `gateway` until stopped, one at a time, GET and POST in turn.
struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Answered>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(gateway: String) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (st, se) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            for method in ["GET", "POST"].into_iter().cycle() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let body = (method == "POST").then_some("order");
                let (code, _, _) = http(
                    method,
                    &format!("{gateway}/"),
                    &[("host", HELLO_HOST)],
                    body,
                );
                se.lock().unwrap().push((Instant::now(), method, code));
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Load {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// Failed requests of `method` (any: `None`) answered in `[from, to)`, and all answered
    /// then.
    fn failures(&self, method: Option<&str>, from: Instant, to: Instant) -> (usize, usize) {
        let seen = self.seen.lock().unwrap();
        let window: Vec<u16> = seen
            .iter()
            .filter(|(t, m, _)| *t >= from && *t < to && method.is_none_or(|want| want == *m))
            .map(|(_, _, c)| *c)
            .collect();
        (window.iter().filter(|c| **c != 200).count(), window.len())
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The node that is not `victim` and serves the load.
fn survivor<'a>(agents: &'a [AgentProc], victim: &str) -> &'a AgentProc {
    agents.iter().find(|a| a.name != victim).unwrap()
}

/// After `victim` stopped answering at `t0`: it goes not Ready, its endpoints go, its Pods
/// are replaced on the others. Returns (not Ready, endpoints gone, replaced) after `t0`.
fn wait_for_replacement(s: &Server, victim: &str, t0: Instant) -> (Duration, Duration, Duration) {
    eventually(60, "the victim not Ready", || {
        (!ready_nodes(s).contains(&victim.to_string())).then_some(())
    });
    let not_ready = t0.elapsed();
    eventually(30, "the victim's endpoints not ready", || {
        (ready_endpoints_on(s, victim) == 0).then_some(())
    });
    let endpoints = t0.elapsed();
    eventually(60, "6 running replicas on the other nodes", || {
        let ps = pods(s, "app=hello");
        (ps.len() == 6
            && ps.iter().all(running_ready)
            && ps.iter().all(|p| p["spec"]["nodeName"] != victim))
        .then_some(())
    });
    (not_ready, endpoints, t0.elapsed())
}

#[test]
fn a_killed_agents_pods_are_replaced_on_the_other_nodes_and_traffic_moves_with_them() {
    let (s, agents) = cluster();
    let victim = agents[0].name.clone();
    let gw = s.gateway_of(&survivor(&agents, &victim).name);
    let load = Load::start(gw);
    std::thread::sleep(Duration::from_secs(1));
    let t0 = Instant::now();
    agents[0].signal("-KILL");
    let (not_ready, endpoints, replaced) = wait_for_replacement(&s, &victim, t0);
    std::thread::sleep(Duration::from_secs(2));
    let (get_before, n_get) = load.failures(Some("GET"), t0, t0 + endpoints);
    let (post_before, n_post) = load.failures(Some("POST"), t0, t0 + endpoints);
    // A gateway learns of the slice a moment after the API shows it.
    let (after, n_after) = load.failures(
        None,
        t0 + endpoints + Duration::from_secs(1),
        Instant::now(),
    );
    eprintln!(
        "kill -9 → not Ready {not_ready:?}, endpoints gone {endpoints:?}, 6 running elsewhere \
         {replaced:?}; failed requests before the endpoints went: GET {get_before}/{n_get}, \
         POST {post_before}/{n_post}; after {after}/{n_after}"
    );
    assert!(replaced < Duration::from_secs(30), "{replaced:?}");
    // Before detection the survivor's gateway still picks the dead node's endpoints: it
    // sends those requests on to another endpoint (a GET always; a POST when it never
    // reached the dead node, which is every one but one in flight at the kill).
    assert!(n_get > 0 && n_post > 0);
    assert_eq!(get_before, 0, "every GET is retried on a live endpoint");
    assert!(
        post_before <= 1,
        "only a POST in flight at the kill may fail"
    );
    assert_eq!(after, 0, "no request fails once the endpoints are gone");
    assert!(n_after > 0);
    let events = s.ok(&["get", "events", "-o", "json"]);
    assert!(events.contains("TaintManagerEviction"), "{events}");
    let described = s.ok(&["describe", "node", &victim]);
    assert!(
        described.contains("Taints:          node.kubernetes.io/unreachable:NoSchedule")
            && described.contains("NodeStatusUnknown"),
        "{described}"
    );
}

#[test]
fn a_hung_agents_pods_are_replaced_and_its_stale_copies_stop_when_it_wakes() {
    let (s, agents) = cluster();
    let victim = agents[1].name.clone();
    let victim_gw = s.gateway_of(&victim);
    let stale: Vec<String> = hello_pods(&s)
        .into_iter()
        .filter(|(_, _, n)| *n == victim)
        .map(|(name, _, _)| name)
        .collect();
    assert!(!stale.is_empty());
    let t0 = Instant::now();
    agents[1].signal("-STOP");
    wait_for_replacement(&s, &victim, t0);
    agents[1].signal("-CONT");
    eventually(30, "the woken node Ready again", || {
        ready_nodes(&s).contains(&victim).then_some(())
    });
    // Its agent stops the Pods that were replaced: a peer asking it for one gets a 404.
    for pod in &stale {
        eventually(30, "the stale copy stopped", || {
            let (code, _, _) = http(
                "GET",
                &format!("{victim_gw}/"),
                &[
                    ("x-ketch-pod", &format!("default/{pod}")),
                    ("x-ketch-gateway-token", &s.token),
                ],
                None,
            );
            (code == 404).then_some(())
        });
    }
    assert_eq!(
        hello_pods(&s).len(),
        6,
        "no more copies than the Deployment asks for"
    );
}

#[test]
fn a_control_plane_cut_off_from_every_node_evicts_nothing() {
    let (s, agents) = cluster();
    let before = hello_pods(&s);
    for a in &agents {
        a.signal("-STOP");
    }
    eventually(30, "every node not Ready", || {
        ready_nodes(&s).is_empty().then_some(())
    });
    // Well past the grace and the Wasm Pods' toleration.
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(hello_pods(&s), before, "nothing evicted while cut off");
    for a in &agents {
        a.signal("-CONT");
    }
    eventually(30, "every node Ready again", || {
        (ready_nodes(&s).len() == 3).then_some(())
    });
    eventually(30, "the same Pods Running and Ready", || {
        let ps = pods(&s, "app=hello");
        (ps.iter().all(running_ready) && hello_pods(&s) == before).then_some(())
    });
    let events = s.ok(&["get", "events", "-o", "json"]);
    assert!(!events.contains("TaintManagerEviction"), "{events}");
}

/// `KETCH_LONG_FAULTS=1`: the full 60 s partition and a longer flapping run.
fn long_run() -> bool {
    std::env::var("KETCH_LONG_FAULTS").is_ok_and(|v| v == "1")
}

/// How many Pods were evicted for a taint so far.
fn evictions(s: &Server) -> usize {
    let out = s.ok(&["get", "events", "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["reason"] == "TaintManagerEviction")
        .map(|e| e["count"].as_u64().unwrap_or(1) as usize)
        .sum()
}

#[test]
fn a_server_cut_off_from_every_agent_by_the_network_evicts_nothing() {
    let Some(mut net) = crate::netns::Net::create(4) else {
        return;
    };
    let place = crate::support::Place {
        host: net.addr(0).to_string(),
        port: 6443,
        netns: Some(net.netns(0)),
    };
    let s = Server::spawn_at(tempfile::tempdir().unwrap(), &place, &["--no-agent"]).ready();
    let agents: Vec<AgentProc> = (1..4)
        .map(|i| {
            let addr = net.addr(i).to_string();
            AgentProc::start_at(&s, &format!("n{i}"), &addr, Some(&net.netns(i)))
        })
        .collect();
    deploy_hello(&s, &agents);
    let before = hello_pods(&s);
    let gw = s.gateway_of("n1");
    let cut_for = Duration::from_secs(if long_run() { 60 } else { 12 });
    // The server's namespace loses its routes to the agents' and theirs to it; the test
    // still reaches all of them over the bridge.
    let t0 = Instant::now();
    net.isolate(0);
    eventually(30, "every node not Ready", || {
        ready_nodes(&s).is_empty().then_some(())
    });
    // The data plane does not need the control plane: the gateways keep serving.
    let (code, _, _) = http("GET", &format!("{gw}/"), &[("host", HELLO_HOST)], None);
    assert_eq!(
        code, 200,
        "a gateway serves while the control plane is cut off"
    );
    std::thread::sleep(cut_for.saturating_sub(t0.elapsed()));
    assert_eq!(hello_pods(&s), before, "nothing evicted while cut off");
    assert_eq!(evictions(&s), 0);
    net.heal();
    eventually(30, "every node Ready again", || {
        (ready_nodes(&s).len() == 3).then_some(())
    });
    eventually(30, "the same Pods Running and Ready", || {
        let ps = pods(&s, "app=hello");
        (ps.iter().all(running_ready) && hello_pods(&s) == before).then_some(())
    });
    assert_eq!(evictions(&s), 0);
    drop(agents);
}

#[test]
fn a_flapping_agent_loses_its_pods_at_most_once_and_takes_no_new_ones() {
    let (s, agents) = cluster();
    let victim = &agents[2];
    let on_victim = hello_pods(&s)
        .iter()
        .filter(|(_, _, n)| *n == victim.name)
        .count();
    // Silent long enough to be found out (4 s) and past its Pods' toleration (2 s), then
    // back until it is Ready again.
    let flap = || {
        victim.signal("-STOP");
        std::thread::sleep(Duration::from_secs(9));
        victim.signal("-CONT");
        eventually(20, "the flapping node Ready again", || {
            ready_nodes(&s).contains(&victim.name).then_some(())
        });
    };
    flap();
    flap();
    // Back, Ready and emptied: default spreading would put new replicas there (it holds
    // the fewest), to be evicted at its next flap. Flap damping keeps them off.
    let described = s.ok(&["describe", "node", &victim.name]);
    assert!(
        described.contains("ketch.dev/flapping:NoSchedule"),
        "{described}"
    );
    let before = hello_pods(&s);
    s.ok(&["scale", "deployment/hello", "--replicas", "9"]);
    eventually(30, "nine Running replicas", || {
        let ps = pods(&s, "app=hello");
        (ps.len() == 9 && ps.iter().all(running_ready)).then_some(())
    });
    let new: Vec<_> = hello_pods(&s)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert_eq!(new.len(), 3);
    assert!(
        new.iter().all(|(_, _, n)| *n != victim.name),
        "no new Pod on the flapping node: {new:?}"
    );
    for _ in 0..if long_run() { 6 } else { 1 } {
        flap();
    }
    eventually(30, "nine Running replicas", || {
        let ps = pods(&s, "app=hello");
        (ps.len() == 9 && ps.iter().all(running_ready)).then_some(())
    });
    let evicted = evictions(&s);
    eprintln!("flaps of 9 s: {evicted} evictions ({on_victim} Pods on the node at first)");
    assert!(
        evicted <= on_victim,
        "a flapping node's Pods are evicted once, not again each time it flaps back: \
         {evicted} evictions, {on_victim} Pods on it"
    );
}
