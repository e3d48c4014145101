//! High availability: three `ketch server` processes on loopback form one raft cluster;
//! any server serves the API, the leader's death costs a re-election, and a restarted
//! server catches up from its data dir and the leader.

use std::time::{Duration, Instant};

use crate::support::{Server, eventually, three_servers, try_http, wait_running, write_file};

/// One row of `ketch cluster members`.
#[derive(Debug)]
struct Row {
    id: String,
    address: String,
    role: String,
    leader: bool,
}

fn members(s: &Server) -> Vec<Row> {
    s.ok(&["cluster", "members"])
        .lines()
        .skip(1)
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            Row {
                id: cols[0].to_string(),
                address: cols[1].to_string(),
                role: cols[2].to_string(),
                leader: cols.len() == 5 && cols[3] == "*",
            }
        })
        .collect()
}

/// A gauge of a server's own `/metrics` (its local state, never forwarded).
fn gauge(s: &Server, name: &str) -> Option<u64> {
    let auth = format!("Bearer {}", s.token);
    let (code, _, body) = try_http(
        "GET",
        &format!("{}/metrics", s.url),
        &[("authorization", &auth)],
        None,
    )?;
    assert_eq!(code, 200, "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|m| m.ends_with(name))
        })
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}

fn configmap(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{k: v}}\n")
}

fn configmap_names(s: &Server) -> Vec<String> {
    let mut names: Vec<String> = s
        .ok(&["get", "configmaps", "-o", "name"])
        .lines()
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

#[test]
fn three_servers_serve_fail_over_and_catch_up() {
    let first = Server::start();
    let join = |s: &Server| -> Vec<String> {
        vec![
            "--no-agent".into(),
            "--join".into(),
            format!("127.0.0.1:{}", s.port),
            "--token".into(),
            s.server_join_token(),
        ]
    };
    let args2 = join(&first);
    let second = Server::start_with(&args2.iter().map(String::as_str).collect::<Vec<_>>());
    // The third joins through a follower, which forwards the join to the leader.
    let args3 = join(&second);
    let third = Server::start_with(&args3.iter().map(String::as_str).collect::<Vec<_>>());
    let mut servers = vec![(first, Vec::new()), (second, args2), (third, args3)];

    // Every server sees the same three voters and one leader.
    for (s, _) in &servers {
        let rows = members(s);
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert!(rows.iter().all(|r| r.role == "voter"), "{rows:?}");
        assert_eq!(rows.iter().filter(|r| r.leader).count(), 1, "{rows:?}");
    }
    // A joined server's client config names every member.
    let config = std::fs::read_to_string(servers[2].0.config_path()).unwrap();
    for (s, _) in &servers {
        assert!(config.contains(&s.url), "{config}");
    }

    // A write through a follower is readable through every server.
    let leader_addr = members(&servers[0].0)
        .into_iter()
        .find(|r| r.leader)
        .unwrap()
        .address;
    let leader_at = |servers: &[(Server, Vec<String>)], addr: &str| -> usize {
        servers
            .iter()
            .position(|(s, _)| s.url.ends_with(addr))
            .unwrap_or_else(|| panic!("no server at {addr}"))
    };
    let li = leader_at(&servers, &leader_addr);
    let follower = &servers[(li + 1) % 3].0;
    let f = write_file(follower.dir.path(), "a.yaml", &configmap("via-follower"));
    follower.ok(&["apply", "-f", f.to_str().unwrap()]);
    for (s, _) in &servers {
        assert!(configmap_names(s).contains(&"configmap/via-follower".to_string()));
    }
    // The controllers run on the leader: a ReplicaSet created through a follower gets its
    // Pods (they stay Pending: only the first server has a node agent).
    let rs = "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: web}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: c, image: x}]\n";
    let f = write_file(follower.dir.path(), "rs.yaml", rs);
    follower.ok(&["apply", "-f", f.to_str().unwrap()]);
    // `None` when the read is refused: on a loaded machine a linearizable read can meet a
    // moment without a heartbeat quorum (503 "not enough for a quorum"), and a client
    // retries that like any 503.
    let pod_count = |s: &Server| {
        let out = s.ketch(&["get", "pods", "-l", "app=web", "-o", "name"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).lines().count())
    };
    eventually(30, "2 pods of the ReplicaSet", || {
        (pod_count(follower) == Some(2)).then_some(())
    });

    // kill -9 the leader: the two others elect a new one and serve writes within seconds.
    let (dead, dead_args) = servers.remove(li);
    let dead_id = members(&servers[0].0)
        .into_iter()
        .find(|r| r.address == leader_addr)
        .unwrap()
        .id;
    let (dir, port) = dead.kill9();
    let killed = Instant::now();
    let mut n = 0;
    let failover = loop {
        n += 1;
        let s = &servers[n % 2].0;
        let f = write_file(s.dir.path(), "b.yaml", &configmap("after-failover"));
        if s.ketch(&["apply", "-f", f.to_str().unwrap()])
            .status
            .success()
        {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(15),
            "no server accepted a write within 15 s of the leader's death:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        failover < Duration::from_secs(10),
        "failover took {failover:?}"
    );
    let rows = members(&servers[0].0);
    let new_leader = rows.iter().find(|r| r.leader).expect("a new leader");
    assert_ne!(new_leader.id, dead_id, "{rows:?}");
    for (s, _) in &servers {
        assert!(configmap_names(s).contains(&"configmap/after-failover".to_string()));
    }
    // The new leader's controllers took over without acting twice: still exactly 2 Pods.
    std::thread::sleep(Duration::from_secs(2));
    let count = eventually(30, "a pod count", || pod_count(&servers[0].0));
    assert_eq!(count, 2);

    // More writes while it is down, then restart it from its data dir: it catches up.
    for i in 0..20 {
        let s = &servers[i % 2].0;
        let f = write_file(
            s.dir.path(),
            "c.yaml",
            &configmap(&format!("while-down-{i}")),
        );
        s.ok(&["apply", "-f", f.to_str().unwrap()]);
    }
    let restarted = Server::start_full(
        dir,
        port,
        &dead_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let want = configmap_names(&servers[0].0);
    assert_eq!(want.len(), 22, "{want:?}");
    // Its own applied state (metrics are served locally, never forwarded) reaches the
    // others' revision.
    let target = gauge(&servers[0].0, "store_revision").expect("store_revision gauge");
    let deadline = Instant::now() + Duration::from_secs(30);
    while gauge(&restarted, "store_revision") < Some(target) {
        assert!(
            Instant::now() < deadline,
            "the restarted server did not catch up to revision {target}:\n{}",
            restarted.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(configmap_names(&restarted), want);
    let rows = members(&restarted);
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows.iter().all(|r| r.role == "voter"), "{rows:?}");
}

#[test]
fn joining_needs_a_server_join_token() {
    let first = Server::start_with(&["--no-agent"]);
    let try_join = |token: &str| {
        let dir = tempfile::tempdir().unwrap();
        let out = crate::support::ketch_cmd()
            .args(["server", "--no-agent", "--listen"])
            .arg(format!("127.0.0.1:{}", crate::support::free_port()))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--join", &format!("127.0.0.1:{}", first.port)])
            .args(["--token", token])
            .env("KETCH_CONFIG", dir.path().join("config"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // Not a join token at all (the admin token joins nothing any more).
    let err = try_join(&first.token);
    assert!(err.contains("join token: expected K1"), "{err}");
    // The right CA, a secret nobody issued.
    let real = first.server_join_token();
    let forged = format!("{}.{}", real.rsplit_once('.').unwrap().0, "a".repeat(16));
    let err = try_join(&forged);
    assert!(
        err.contains("joining the cluster") && err.contains("401"),
        "{err}"
    );
    // A node's join token makes no server.
    let err = try_join(&first.join_token());
    assert!(err.contains("403"), "{err}");
    // Another cluster's CA: refused before anything is sent.
    let other = Server::start_with(&["--no-agent"]);
    let err = try_join(&other.server_join_token());
    assert!(err.contains("joining the cluster"), "{err}");
    // Nothing changed in the cluster.
    assert_eq!(members(&first).len(), 1);
}

/// A child process killed when the test ends, pass or fail.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_agent_given_every_server_moves_on_when_its_server_dies() {
    let mut servers = three_servers();
    let list = servers
        .iter()
        .map(|s| s.url.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let dir = servers[1].dir.path().to_path_buf();
    let log = std::fs::File::create(dir.join("agent.log")).unwrap();
    let _agent = Reaped(
        crate::support::ketch_cmd()
            .args([
                "agent",
                "--server",
                &list,
                "--token",
                &servers[0].join_token(),
            ])
            .args(["--name", "roamer", "--node-label", "zone=r"])
            .args(["--agent-listen", "127.0.0.1:0", "--gateway", "127.0.0.1:0"])
            .args(["--gateway-tls", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.join("agent"))
            .env("KETCH_CONFIG", dir.join("no-config"))
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let ready = |s: &Server| {
        let out = s.ok(&["get", "nodes", "-l", "zone=r"]);
        (out.contains("roamer") && out.contains("Ready") && !out.contains("NotReady")).then_some(())
    };
    eventually(30, "node roamer Ready", || ready(&servers[1]));

    // The agent talks to the first server (also the leader): kill it. Its Pod watch and
    // its status writes must go on through another server.
    let _dead = servers.remove(0).kill9();
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: roaming\n  labels: {{app: roam}}\nspec:\n  nodeSelector: {{zone: r}}\n  containers:\n  - name: app\n    image: file:{}\n",
        ketch_test_guests::HELLO
    );
    let f = write_file(&dir, "roaming.yaml", &manifest);
    eventually(30, "the Pod created after the failover", || {
        servers[0]
            .ketch(&["apply", "-f", f.to_str().unwrap()])
            .status
            .success()
            .then_some(())
    });
    // On a timeout, say what the agent and the cluster saw (the temp dir goes with the test).
    let running = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_running(&servers[0], "app=roam", 1);
    }));
    if let Err(e) = running {
        let agent_log = std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
        let pod = servers[0].ketch(&["get", "pod", "roaming", "-o", "yaml"]);
        let nodes = servers[0].ketch(&["get", "nodes", "-o", "yaml"]);
        let events = servers[0].ketch(&["get", "events"]);
        eprintln!(
            "agent log:\n{agent_log}\npod:\n{}\nnodes:\n{}\nevents:\n{}",
            String::from_utf8_lossy(&pod.stdout),
            String::from_utf8_lossy(&nodes.stdout),
            String::from_utf8_lossy(&events.stdout)
        );
        std::panic::resume_unwind(e);
    }
    eventually(30, "node roamer Ready after the failover", || {
        ready(&servers[1])
    });
    let agent_log = std::fs::read_to_string(dir.join("agent.log")).unwrap();
    assert!(
        agent_log.contains("moving to the next one"),
        "the agent never moved to another server:\n{agent_log}"
    );
}

#[test]
fn a_removed_server_leaves_the_membership_and_the_others_go_on() {
    let servers = three_servers();
    let rows = members(&servers[0]);
    let victim = rows.iter().find(|r| !r.leader).expect("a follower");
    let stays: Vec<&Server> = servers
        .iter()
        .filter(|s| !s.url.ends_with(&victim.address))
        .collect();
    assert_eq!(stays.len(), 2);
    // Through a server that stays (it forwards to the leader): joint consensus, then the
    // two-voter configuration.
    stays[0].ok(&["cluster", "remove", &victim.id]);
    let after = eventually(10, "two members", || {
        let rows = members(stays[1]);
        (rows.len() == 2).then_some(rows)
    });
    assert!(
        after.iter().all(|r| r.id != victim.id && r.role == "voter"),
        "{after:?}"
    );
    // The two remaining servers still form a majority of their cluster.
    let f = write_file(
        stays[1].dir.path(),
        "after.yaml",
        &configmap("after-remove"),
    );
    stays[1].ok(&["apply", "-f", f.to_str().unwrap()]);
    assert!(configmap_names(stays[0]).contains(&"configmap/after-remove".to_string()));
    // An id that is not a member is refused, naming it.
    let err = stays[0].fails(&["cluster", "remove", "12345"]);
    assert!(err.contains("server 12345 is not a member"), "{err}");
}
