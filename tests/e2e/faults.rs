//! Fault tests in the style of etcd's robustness suite: a seeded load from 8 clients while
//! the test injects faults, then three checks over what was recorded — every acknowledged
//! write is still there, the history is linearizable per key, and a watcher that ran
//! through every fault saw each change once, in order, with no gap.
//!
//! The faults: `kill -9` of a single server and a restart on the same data dir and port;
//! on a 3-server cluster, `kill -9` of the current leader and its restart; and stopping and
//! restarting the whole cluster. The fast runs (~30 s each) are part of the normal suite;
//! `KETCH_LONG_FAULTS=1` runs the long ones (2 minutes, a kill every 5 s).
//! `KETCH_FAULT_SEED=N` replays a run's operation mix and fault schedule (thread timing
//! still varies).

use std::ops::RangeInclusive;
use std::time::Duration;

use crate::linearizability;
use crate::load::{self, LoadConfig, Recorded};
use crate::support::{self, Server, eventually};
use crate::watch_validator;

fn long_run() -> bool {
    std::env::var("KETCH_LONG_FAULTS").is_ok_and(|v| v == "1")
}

/// (total time, pause before each fault, faults at least injected) of a run.
fn schedule() -> (Duration, RangeInclusive<Duration>, usize) {
    if long_run() {
        (
            Duration::from_secs(120),
            Duration::from_secs(5)..=Duration::from_secs(5),
            // Restarts take time out of the 2 minutes too.
            15,
        )
    } else {
        (
            Duration::from_secs(30),
            Duration::from_secs(3)..=Duration::from_secs(5),
            3,
        )
    }
}

/// Check everything a run recorded; panics with the findings.
fn assert_sound(rec: &Recorded, min_faults: usize) {
    let s = &rec.stats;
    eprintln!(
        "fault run: {} ops ({} ok, {} failed, {} unknown, {} never sent), {} faults, \
         {} watch events over {} connections",
        rec.history.len(),
        s.ok,
        s.failed,
        s.unknown,
        s.not_sent,
        rec.faults,
        rec.watch.events.len(),
        rec.watch.reconnects
    );
    assert!(
        s.unexpected.is_empty(),
        "answers outside the model: {:?}",
        &s.unexpected[..s.unexpected.len().min(5)]
    );
    assert!(
        rec.faults >= min_faults,
        "only {} faults injected",
        rec.faults
    );
    // Enough successful work between faults to mean something.
    assert!(
        s.ok >= 100 * (rec.faults + 1),
        "too few successful operations: {}",
        s.ok
    );

    let lost = rec.lost_writes();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {lost:#?}",
        lost.len()
    );

    let t = std::time::Instant::now();
    let history = rec.settled_history();
    match linearizability::check(&history) {
        Ok(report) => eprintln!(
            "linearizable: {} keys, {} ops ({} unknown), {} search steps in {:?}",
            report.keys,
            report.operations,
            report.unknown,
            report.steps,
            t.elapsed()
        ),
        Err(e) => panic!("history not linearizable:\n{e}"),
    }
    // The same history with one read made stale must fail: the check has teeth here.
    let corrupted = linearizability::with_stale_read(&history).expect("no read to corrupt");
    match linearizability::check(&corrupted) {
        Err(linearizability::CheckError::NotLinearizable { .. }) => {}
        other => panic!("a planted stale read was not found: {other:?}"),
    }

    // The server persists its recent watch history, so a watcher that was behind at a kill
    // resumes after the restart: no 410, no gap.
    assert!(
        rec.watch.expired.is_empty(),
        "the watcher could not resume: {:?}",
        rec.watch.expired
    );
    assert!(rec.watch.complete, "the watcher never saw the fence");
    let acked = rec.acked_writes();
    let last = Some(&rec.last);
    if let Err(violations) = watch_validator::validate(
        rec.watch.from,
        &Default::default(),
        &rec.watch.events,
        &acked,
        last,
    ) {
        panic!(
            "watch validation failed ({} violations), first ones: {:#?}",
            violations.len(),
            &violations[..violations.len().min(10)]
        );
    }
}

#[test]
fn kill_9_and_restart_under_load_loses_nothing_and_stays_linearizable() {
    let (total, every, min_faults) = schedule();
    let seed = load::seed();
    let flags = ["--no-agent"];
    let mut server = Some(Server::start_with(&flags));
    let first = server.as_ref().unwrap();
    let cfg = LoadConfig::new(vec![first.url.clone()], &first.token, seed);
    let rec = load::run_with_faults(cfg, total, every, |_| {
        let (dir, port) = server.take().unwrap().kill9();
        server = Some(Server::start_full(dir, port, &flags));
    });
    assert_sound(&rec, min_faults);
}

/// The flags every cluster member restarts with: a member's data dir already holds the
/// cluster, so it rejoins through raft without `--join`.
const MEMBER_FLAGS: [&str; 1] = ["--no-agent"];

/// Three servers, each in a slot the faults empty and refill.
fn three_servers() -> Vec<Option<Server>> {
    support::three_servers().into_iter().map(Some).collect()
}

/// The index of the current leader, as `/cluster/members` on a live server reports it
/// (waiting out an election).
fn leader_of(servers: &[Option<Server>]) -> usize {
    eventually(30, "a leader", || {
        servers.iter().flatten().find_map(|s| {
            let list = get_json(s, "/cluster/members")?;
            let leader = list["members"]
                .as_array()?
                .iter()
                .find(|m| m["id"] == list["leader"])?;
            let address = leader["address"].as_str()?;
            servers.iter().position(|s| {
                s.as_ref()
                    .is_some_and(|s| s.url == format!("https://{address}"))
            })
        })
    })
}

#[test]
fn leader_kill_9_under_load_on_three_servers_loses_nothing_and_stays_linearizable() {
    let (total, every, min_faults) = schedule();
    let seed = load::seed();
    let mut servers = three_servers();
    let urls = servers.iter().flatten().map(|s| s.url.clone()).collect();
    let token = servers[0].as_ref().unwrap().token.clone();
    let cfg = LoadConfig::new(urls, &token, seed);
    let mut killed = Vec::new();
    let rec = load::run_with_faults(cfg, total, every, |_| {
        let i = leader_of(&servers);
        killed.push(i);
        let (dir, port) = servers[i].take().unwrap().kill9();
        // Down until the other two have elected a new leader (a server restarted sooner
        // may resume its old term's leadership, and the next kill would hit it again).
        leader_of(&servers);
        servers[i] = Some(Server::start_full(dir, port, &MEMBER_FLAGS));
    });
    eprintln!("killed leaders (server index): {killed:?}");
    assert_sound(&rec, min_faults);
    // The watcher started on the first server, the first leader killed: it went on on
    // another one.
    assert!(
        rec.watch.servers.len() >= 2,
        "the watcher never moved to another server: {:?}",
        rec.watch.servers
    );
}

#[test]
fn whole_cluster_stop_and_restart_under_load_loses_nothing() {
    let seed = load::seed();
    let mut servers = three_servers();
    let urls = servers.iter().flatten().map(|s| s.url.clone()).collect();
    let token = servers[0].as_ref().unwrap().token.clone();
    let cfg = LoadConfig::new(urls, &token, seed);
    let every = Duration::from_secs(4)..=Duration::from_secs(6);
    let rec = load::run_with_faults(cfg, Duration::from_secs(30), every, |n| {
        // Alternately a clean stop (SIGTERM) and a crash (kill -9) of every server.
        let down: Vec<_> = servers
            .iter_mut()
            .map(|s| {
                let s = s.take().unwrap();
                if n % 2 == 0 { s.stop() } else { s.kill9() }
            })
            .collect();
        // None is ready before a majority is up to elect a leader: start all, then wait.
        let starting: Vec<_> = down
            .into_iter()
            .map(|(dir, port)| Server::spawn_full(dir, port, &MEMBER_FLAGS))
            .collect();
        for (slot, s) in servers.iter_mut().zip(starting) {
            *slot = Some(s.ready());
        }
    });
    assert_sound(&rec, 2);
}

/// A ConfigMap `name` in namespace `probe`, created through `server` within `timeout`:
/// whether it was acknowledged (201).
fn create_probe(server: &Server, name: &str, timeout: Duration) -> bool {
    let body =
        format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}}}}"#);
    let auth = format!("Bearer {}", server.token);
    let url = format!("{}/api/v1/namespaces/probe/configmaps", server.url);
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    support::try_http_within(timeout, "POST", &url, &headers, Some(&body))
        .is_some_and(|(code, _, _)| code == 201)
}

/// GET `path` (and query) from `server` with the token, within 30 s: status and body.
fn api_get(server: &Server, path: &str) -> Option<(u16, String)> {
    let auth = format!("Bearer {}", server.token);
    let url = format!("{}{path}", server.url);
    let timeout = Duration::from_secs(30);
    support::try_http_within(timeout, "GET", &url, &[("authorization", &auth)], None)
        .map(|(code, _, body)| (code, body))
}

/// [`api_get`]'s body as JSON, when the answer is a 200.
fn get_json(server: &Server, path: &str) -> Option<serde_json::Value> {
    match api_get(server, path)? {
        (200, body) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// The status of probe `name` read from `server`'s own applied state (`resourceVersion=0`:
/// no read barrier, not forwarded to the leader).
fn local_probe(server: &Server, name: &str) -> Option<u16> {
    let path = format!("/api/v1/namespaces/probe/configmaps/{name}?resourceVersion=0");
    api_get(server, &path).map(|(code, _)| code)
}

#[test]
fn partitions_under_load_leave_the_minority_read_only_and_it_converges_after_healing() {
    let Some(mut net) = crate::netns::Net::create(3) else {
        return;
    };
    let (total, every, min_faults) = schedule();
    let seed = load::seed();
    let places: Vec<_> = (0..3)
        .map(|i| support::Place {
            host: net.addr(i).to_string(),
            port: 6443,
            netns: Some(net.netns(i)),
        })
        .collect();
    // Declared after `net`, so dropped (killed) before the namespaces go.
    let servers: Vec<_> = support::cluster_at(&places, &[])
        .into_iter()
        .map(Some)
        .collect();
    let first = servers[0].as_ref().unwrap();
    let ns = support::write_file(
        first.dir.path(),
        "probe.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: probe\n",
    );
    first.ok(&["apply", "-f", ns.to_str().unwrap()]);
    let urls = servers.iter().flatten().map(|s| s.url.clone()).collect();
    let cfg = LoadConfig::new(urls, &first.token, seed);
    let mut refused = Vec::new();
    let mut cut = Vec::new();
    let rec = load::run_with_faults(cfg, total, every, |n| {
        // Alternately the leader (the load's watcher starts on it, so its stream lives
        // through the partition) and a follower.
        let leader = leader_of(&servers);
        let i = if n % 2 == 0 { leader } else { (leader + 1) % 3 };
        cut.push(i);
        net.isolate(i);
        let minority = servers[i].as_ref().unwrap();
        let majority = servers[(i + 1) % 3].as_ref().unwrap();
        // The majority goes on (after electing a leader if it lost its own).
        let ok = format!("majority-{n}");
        eventually(20, "a write acknowledged by the majority", || {
            create_probe(majority, &ok, Duration::from_secs(3)).then_some(())
        });
        // The minority acknowledges nothing: no split brain. (Checked again after the
        // run: the write it was asked for never happened.)
        let refused_name = format!("minority-{n}");
        assert!(
            !create_probe(minority, &refused_name, Duration::from_secs(2)),
            "server {i}, cut off from the others, acknowledged a write"
        );
        refused.push(refused_name);
        // It still serves reads of any version from its own state, behind the majority.
        assert_eq!(local_probe(minority, &ok), Some(404));
        net.heal();
        // Once healed it catches up by itself.
        eventually(30, "the healed server has the majority's write", || {
            (local_probe(minority, &ok) == Some(200)).then_some(())
        });
    });
    eprintln!("partitioned servers (index): {cut:?}");
    assert_sound(&rec, min_faults);
    // What the minority was asked to write while cut off did not happen anywhere.
    for s in servers.iter().flatten() {
        for name in &refused {
            assert_eq!(local_probe(s, name), Some(404), "{name} on {}", s.url);
        }
    }
    drop(servers);
}

/// The names and resourceVersions of the ConfigMaps in `default`, as `server` holds them
/// (`local`: its own applied state, `resourceVersion=0`) or as the leader does.
fn config_maps(server: &Server, local: bool) -> Option<Vec<(String, String)>> {
    let any = if local { "?resourceVersion=0" } else { "" };
    let list = get_json(
        server,
        &format!("/api/v1/namespaces/default/configmaps{any}"),
    )?;
    let items = list["items"].as_array()?;
    Some(
        items
            .iter()
            .map(|o| {
                let m = &o["metadata"];
                (m["name"].to_string(), m["resourceVersion"].to_string())
            })
            .collect(),
    )
}

#[test]
fn a_follower_killed_while_installing_a_snapshot_converges_after_a_restart() {
    // Snapshots every 100 applied entries, so a few hundred writes leave a stopped follower
    // behind the leader's log; bulky objects make the snapshot big enough to take a while
    // to transfer, so the kill lands inside the install.
    let flags = ["--no-agent", "--snapshot-count", "100"];
    let places: Vec<_> = (0..3)
        .map(|_| support::Place::loopback(support::free_port()))
        .collect();
    let mut servers: Vec<_> = support::cluster_at(&places, &flags[1..])
        .into_iter()
        .map(Some)
        .collect();
    let leader = leader_of(&servers);
    let f = (leader + 1) % 3;
    let client = servers[leader].as_ref().unwrap().client();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let put = |name: &str, bytes: usize| {
        let cm = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name},
            "data": {"blob": "x".repeat(bytes)},
        });
        // Retried through elections (a loaded machine has some); an earlier attempt that
        // took effect after all shows as AlreadyExists.
        eventually(30, name, || {
            match rt.block_on(client.create(&ketch_api::resource::CONFIGMAPS, Some("default"), &cm))
            {
                Ok(_) => Some(()),
                Err(e) if e.code() == Some(409) => Some(()),
                Err(_) => None,
            }
        });
    };
    // 48 MiB of objects while everyone is up.
    for i in 0..96 {
        put(&format!("bulk-{i}"), 512 << 10);
    }
    let (dir, port) = servers[f].take().unwrap().kill9();
    // Several snapshots' worth of small writes while the follower is down: the leader's
    // log no longer reaches back to where the follower stopped.
    for i in 0..300 {
        put(&format!("small-{i}"), 16);
    }
    let log_path = dir.path().join("server.log");
    let before = std::fs::metadata(&log_path).unwrap().len() as usize;
    let after_restart = |log: &str| log.get(before..).unwrap_or_default().to_string();
    let starting = Server::spawn_full(dir, port, &flags);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let log = after_restart(&std::fs::read_to_string(&log_path).unwrap());
        if log.contains("receiving a snapshot from the leader") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the restarted follower never received a snapshot:\n{log}\nthe leader's log:\n{}",
            servers[leader].as_ref().unwrap().log()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let (dir, port) = starting.kill9();
    let log = after_restart(&std::fs::read_to_string(&log_path).unwrap());
    assert!(
        !log.contains("installed a snapshot"),
        "the install finished before the kill; make the state bigger:\n{log}"
    );
    servers[f] = Some(Server::start_full(dir, port, &flags));
    let want = config_maps(servers[leader].as_ref().unwrap(), false).unwrap();
    assert!(want.len() >= 396, "{} objects", want.len());
    eventually(
        60,
        "the follower holds exactly the leader's objects",
        || (config_maps(servers[f].as_ref().unwrap(), true)? == want).then_some(()),
    );
}
