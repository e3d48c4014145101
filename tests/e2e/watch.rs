//! Watch: ordered, no duplicates, resumable from any retained version, 410 when compacted,
//! and the client's watcher carrying on across a server restart.

use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::support::Server;

fn configmaps() -> &'static ketch_api::resource::ResourceInfo {
    ketch_api::resource::lookup("configmaps").unwrap()
}

fn cm(name: &str, v: u32) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"v": v.to_string()}})
}

/// Read `n` non-bookmark events from a watch response.
async fn read_events(resp: &mut reqwest::Response, buf: &mut Vec<u8>, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let ev: Value = serde_json::from_slice(&line).unwrap();
            if ev["type"] != "BOOKMARK" {
                out.push(ev);
            }
            continue;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
            .await
            .expect("watch event within 10 s")
            .unwrap()
            .expect("stream open");
        buf.extend_from_slice(&chunk);
    }
    out
}

fn rv(ev: &Value) -> u64 {
    ev["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_delivers_every_change_in_order_and_resumes_without_gaps_or_duplicates() {
    let s = Server::start();
    let c = s.client();
    let start = c
        .list(configmaps(), Some("default"), &Default::default())
        .await
        .unwrap();
    let from = start["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let params = ketch_client::ListParams::default();
    let mut resp = c
        .watch_once(configmaps(), Some("default"), &params, Some(&from))
        .await
        .unwrap();

    // 20 creates, 20 updates, 10 deletes = 50 events.
    for i in 0..20 {
        c.create(configmaps(), Some("default"), &cm(&format!("w{i}"), 0))
            .await
            .unwrap();
    }
    for i in 0..20 {
        let name = format!("w{i}");
        c.merge_patch(
            configmaps(),
            Some("default"),
            &name,
            &json!({"data": {"v": "1"}}),
            false,
        )
        .await
        .unwrap();
    }
    for i in 0..10 {
        c.delete(configmaps(), Some("default"), &format!("w{i}"))
            .await
            .unwrap();
    }
    let mut buf = Vec::new();
    let first = read_events(&mut resp, &mut buf, 20).await;
    drop(resp);
    // Resume from the last version seen on a new connection.
    let last = rv(first.last().unwrap()).to_string();
    let mut resp = c
        .watch_once(configmaps(), Some("default"), &params, Some(&last))
        .await
        .unwrap();
    let mut buf = Vec::new();
    let rest = read_events(&mut resp, &mut buf, 30).await;
    let all: Vec<Value> = first.into_iter().chain(rest).collect();
    let revs: Vec<u64> = all.iter().map(rv).collect();
    assert!(
        revs.windows(2).all(|w| w[0] < w[1]),
        "not strictly ordered: {revs:?}"
    );
    let types: Vec<&str> = all.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.iter().filter(|t| **t == "ADDED").count(), 20);
    assert_eq!(types.iter().filter(|t| **t == "MODIFIED").count(), 20);
    assert_eq!(types.iter().filter(|t| **t == "DELETED").count(), 10);
    assert_eq!(all[0]["object"]["metadata"]["name"], "w0");

    // A label-selected watch sees only matching objects.
    let sel = ketch_client::ListParams {
        label_selector: Some("pick=yes".into()),
        ..Default::default()
    };
    let head = c
        .list(configmaps(), Some("default"), &Default::default())
        .await
        .unwrap();
    let head = head["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut resp = c
        .watch_once(configmaps(), Some("default"), &sel, Some(&head))
        .await
        .unwrap();
    let mut skip = cm("skip", 0);
    skip["metadata"]["labels"] = json!({"pick": "no"});
    let mut pick = cm("pick", 0);
    pick["metadata"]["labels"] = json!({"pick": "yes"});
    c.create(configmaps(), Some("default"), &skip)
        .await
        .unwrap();
    c.create(configmaps(), Some("default"), &pick)
        .await
        .unwrap();
    let mut buf = Vec::new();
    let evs = read_events(&mut resp, &mut buf, 1).await;
    assert_eq!(evs[0]["object"]["metadata"]["name"], "pick");
    // Relabelling takes the object out of this watch's selection: DELETED for it; and back.
    let relabel = |v: &str| json!({"metadata": {"labels": {"pick": v}}});
    c.merge_patch(configmaps(), Some("default"), "pick", &relabel("no"), false)
        .await
        .unwrap();
    c.merge_patch(
        configmaps(),
        Some("default"),
        "skip",
        &relabel("yes"),
        false,
    )
    .await
    .unwrap();
    let evs = read_events(&mut resp, &mut buf, 2).await;
    let seen: Vec<(&str, &str)> = evs
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["object"]["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, vec![("DELETED", "pick"), ("ADDED", "skip")]);
}

#[test]
fn get_watch_prints_a_line_per_change() {
    use std::io::BufRead as _;
    let s = Server::start();
    let cm_file = |name: &str| {
        let text = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n");
        crate::support::write_file(s.dir.path(), &format!("{name}.yaml"), &text)
    };
    s.ok(&["apply", "-f", cm_file("listed").to_str().unwrap()]);
    let mut child = crate::support::ketch_cmd()
        .args(["get", "cm", "-w", "-o", "name"])
        .env("KETCH_CONFIG", s.config_path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // The first line comes from the list; after it, only the watch can print.
    assert_eq!(lines.next().unwrap().unwrap(), "configmap/listed");
    s.ok(&["apply", "-f", cm_file("watched").to_str().unwrap()]);
    assert_eq!(lines.next().unwrap().unwrap(), "configmap/watched");
    child.kill().unwrap();
    child.wait().unwrap();
}
#[tokio::test(flavor = "multi_thread")]
async fn a_watch_resumes_across_a_restart_and_the_watcher_recovers_by_itself() {
    let s = Server::start();
    let c = s.client();
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(
            c.create(configmaps(), Some("default"), &cm(&format!("c{i}"), 0))
                .await
                .unwrap(),
        );
    }
    let mut watcher = Box::pin(ketch_client::watcher::<Value>(
        c.clone(),
        configmaps(),
        Some("default".into()),
        Default::default(),
        None,
    ));
    match watcher.next().await.unwrap().unwrap() {
        ketch_client::Event::Restarted(objs) => assert_eq!(objs.len(), 5),
        other => panic!("expected the initial list, got {other:?}"),
    }
    let (dir, port) = s.stop();
    let s = Server::start_in(dir, port);
    let c = s.client();
    // The recent history survives the restart: a watch from before it replays what followed,
    // in order, instead of answering 410 (see EVENT_HISTORY in the state machine).
    let first = created[0]["metadata"]["resourceVersion"].as_str().unwrap();
    let mut resp = c
        .watch_once(
            configmaps(),
            Some("default"),
            &Default::default(),
            Some(first),
        )
        .await
        .expect("a watch from before the restart resumes");
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !(text.contains("\"c4\"") && text.ends_with('\n')) {
            let chunk = resp.chunk().await.unwrap().expect("the stream stays open");
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await
    .expect("the events after the resume point are replayed");
    let replayed: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["type"] == "ADDED")
        .map(|e| {
            e["object"]["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(replayed, ["c1", "c2", "c3", "c4"]);
    // The watcher reconnects by itself and sees a change made after the restart.
    c.create(configmaps(), Some("default"), &cm("after", 0))
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match watcher.next().await.unwrap() {
                Ok(ketch_client::Event::Added(o)) if o["metadata"]["name"] == "after" => {
                    return "added";
                }
                Ok(ketch_client::Event::Restarted(objs))
                    if objs.iter().any(|o| o["metadata"]["name"] == "after") =>
                {
                    return "relisted";
                }
                _ => continue,
            }
        }
    })
    .await
    .expect("the watcher recovers after a server restart");
    assert!(ev == "added" || ev == "relisted");
}
