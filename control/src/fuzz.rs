//! Fuzz targets over the API server's and the store's decoders (issue 21): API paths and
//! the proxied Pod path, field selectors, JSON merge patches as the store applies them, raft
//! entries (what `/raft/append` and the log store decode, and what the state machine then
//! applies), snapshot chunks and stored watch events. Run by bolero like `ketch-api`'s
//! targets (see its `fuzz` module): 1 s each under `cargo test`, longer or under libFuzzer
//! as README.md says. The properties: no panic; a path, a chunk or an entry that decodes
//! encodes back to itself; a snapshot id that passes names no file outside its directory; a
//! proxied path stays under its Pod.

use ketch_api::resource::RESOURCES;
use ketch_fuzz::{Edits, build, build_text, check};
use openraft::{
    BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta,
    StoredMembership, Vote,
};
use serde_json::{Value, json};

use crate::attrs::attrs_of;
use crate::server::fields::FieldSelector;
use crate::server::path::{PodSub, ResourcePath, parse};
use crate::store::apply::{apply_write, merge_patch};
use crate::store::command::{Batch, UpdateScope, Write};
use crate::store::network::{decode_chunk, encode_chunk};
use crate::store::state_machine::{decode_event, is_snapshot_id};
use crate::store::types::TypeConfig;

/// Objects as the store holds them, for patches, field selectors and writes to act on.
fn objects() -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "uid": "u1", "resourceVersion": "3",
                "labels": {"app": "web"}, "finalizers": ["x"]},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "file:a.wasm",
                "resources": {"requests": {"cpu": "250m"}}}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}),
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "resourceVersion": "9"},
            "spec": {"unschedulable": true}, "status": {"capacity": {"cpu": "4"}}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "default", "resourceVersion": "5", "generation": 2},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}},
            "status": {"replicas": 2, "readyReplicas": 1}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "default", "resourceVersion": "2"},
            "data": {"a": "b"}}),
    ]
}

/// The store key of `object`, as the API server makes it.
fn key_of(object: &Value) -> String {
    let kind = object["kind"].as_str().unwrap_or_default();
    let plural = RESOURCES
        .iter()
        .find(|r| r.kind == kind)
        .map_or("pods", |r| r.plural);
    format!(
        "{plural}/{}/{}",
        object["metadata"]["namespace"].as_str().unwrap_or_default(),
        object["metadata"]["name"].as_str().unwrap_or_default()
    )
}

const JSON_DICT: &[&str] = &[
    "null",
    "{}",
    "[]",
    "{\"a\":",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "0",
    "-1",
    "1e999",
    "\"status\":",
    "\"metadata\":",
    "\"spec\":",
    "\"labels\":",
    "\"resourceVersion\":\"",
    "\"uid\":\"",
    "\"finalizers\":[",
    "\"deletionTimestamp\":\"2026-01-01T00:00:00Z\"",
    "\"nodeName\":",
    "\"containers\":[",
    "\"conditions\":[",
    "\"kind\":\"",
    "\"key\":\"",
    "\"object\":",
    "\"patch\":",
    "\"scope\":\"Status\"",
    "\"Create\":",
    "\"MergePatch\":",
    "\"MergeStatus\":",
    "\"Bind\":",
    "\"Delete\":",
    "\"Update\":",
    "\"Normal\":",
    "\"Blank\"",
    "18446744073709551616",
    "\\u0000",
    "\\ud800",
];

/// How a path looks back when written from its parts; for the round-trip check.
fn path_of(p: &ResourcePath) -> String {
    let mut out = p.info.api_version();
    if let Some(ns) = &p.namespace {
        out.push_str(&format!("/namespaces/{ns}"));
    }
    out.push('/');
    out.push_str(p.info.plural);
    if let Some(name) = &p.name {
        out.push_str(&format!("/{name}"));
    }
    if p.status {
        out.push_str("/status");
    }
    match &p.pod_sub {
        None => {}
        Some(PodSub::Log) => out.push_str("/log"),
        Some(PodSub::Binding) => out.push_str("/binding"),
        Some(PodSub::Eviction) => out.push_str("/eviction"),
        Some(PodSub::Proxy(rest)) => out.push_str(&format!("/proxy/{rest}")),
    }
    out
}

#[test]
fn fuzz_api_paths_parse_and_write_back_to_the_same_request() {
    const SEEDS: &[&str] = &[
        "v1/namespaces/default/pods",
        "v1/namespaces/default/pods/web/status",
        "v1/namespaces/foo",
        "v1/namespaces/foo/status",
        "v1/nodes/n1",
        "v1/pods",
        "apps/v1/namespaces/ns1/deployments/web/status",
        "v1/namespaces/d/pods/a/proxy/x/y",
        "v1/namespaces/d/pods/a/log",
        "v1/namespaces/d/pods/a/binding",
        "policy/v1/namespaces/d/poddisruptionbudgets",
        "rbac.authorization.k8s.io/v1/clusterrolebindings/b",
    ];
    const DICT: &[&str] = &[
        "/",
        "//",
        "namespaces/",
        "status",
        "finalize",
        "proxy/",
        "log",
        "binding",
        "eviction",
        "..",
        ".",
        "%2e",
        "pods",
        "nodes",
        "v1/",
        "apps/v1/",
        "\u{e9}",
        "\0",
        "?",
        "#",
    ];
    check!()
        .with_type::<(bool, Edits)>()
        .for_each(|(core, edits)| {
            let rest = build_text(SEEDS, DICT, edits, 1024);
            // The same seeds serve `/api` and `/apis`: a core path read as a grouped one (and
            // the reverse) is one more malformed input.
            let Ok(p) = parse(*core, &rest) else {
                return;
            };
            let _ = p.key();
            assert!(
                p.info.namespaced || p.namespace.is_none(),
                "{rest:?} put a cluster-scoped kind in a namespace"
            );
            let written = path_of(&p);
            let again = parse(p.info.group.is_empty(), &written);
            assert_eq!(
                again.ok().as_ref(),
                Some(&p),
                "{rest:?} written as {written:?}"
            );
        });
}

#[test]
fn fuzz_proxied_pod_paths_stay_under_their_pod() {
    const SEEDS: &[&str] = &["", "x/y", "x.y/..z", "...", "%2e%2fx", "x?a=../b", "a/b/c"];
    const DICT: &[&str] = &[
        "/",
        "..",
        ".",
        "%2e",
        "%2E",
        "%5c",
        "\\",
        "?",
        "#",
        "\t",
        "\n",
        "\r",
        " ",
        "%00",
        "%2f",
        "pods/d/a/",
        "b/proxy/",
        "@",
        ":",
        "//",
        "%",
        "\u{3002}",
        "\u{ff0e}",
    ];
    check!().with_type::<Edits>().for_each(|edits| {
        // What `rest` can hold after the router percent-decodes the path.
        let rest = build_text(SEEDS, DICT, edits, 1024);
        let url = format!("https://10.0.0.2:10250/pods/d/a/proxy/{rest}");
        if let Ok(parsed) = crate::server::proxy::agent_url(&url, "d", "a") {
            assert_eq!(parsed.host_str(), Some("10.0.0.2"), "{rest:?}");
            assert!(
                parsed.path().starts_with("/pods/d/a/proxy/"),
                "{rest:?} reaches {}",
                parsed.path()
            );
        }
    });
}

#[test]
fn fuzz_field_selectors_parse_for_every_kind_and_match_without_panicking() {
    const SEEDS: &[&str] = &[
        "spec.nodeName=n1,status.phase!=Running",
        "metadata.name==p",
        "metadata.namespace=default",
        "involvedObject.name=p,type=Warning",
        "spec.unschedulable=true",
    ];
    const DICT: &[&str] = &[
        "=",
        "==",
        "!=",
        ",",
        " ",
        "!",
        "metadata.",
        "spec.",
        "status.",
        "\u{e9}",
    ];
    let objects = objects();
    check!()
        .with_type::<(u8, Edits)>()
        .for_each(|(kind, edits)| {
            let text = build_text(SEEDS, DICT, edits, 1024);
            let info = &RESOURCES[usize::from(*kind) % RESOURCES.len()];
            if let Ok(selector) = FieldSelector::parse(info.plural, &text) {
                for object in &objects {
                    let _ = selector.matches(&attrs_of(info.plural, object));
                }
            }
        });
}

#[test]
fn fuzz_merge_patches_apply_idempotently_and_the_store_never_panics_on_them() {
    let objects = objects();
    let seeds: Vec<String> = objects
        .iter()
        .map(Value::to_string)
        .chain([
            r#"{"metadata":{"labels":{"app":null,"x":"y"}},"spec":{"replicas":3}}"#.into(),
            r#"{"status":{"phase":"Failed","conditions":null},"metadata":{"resourceVersion":"3"}}"#
                .into(),
            r#"{"spec":{"containers":[{"name":"c","image":"x"}]},"metadata":{"uid":"u2"}}"#.into(),
            r#"{"metadata":{"finalizers":null,"deletionTimestamp":"2026-01-01T00:00:00Z"}}"#.into(),
            r#"{"a":{"b":{"c":{"d":[1,{"e":null}]}}}}"#.into(),
        ])
        .collect();
    let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
    check!()
        .with_type::<(u8, u8, Edits)>()
        .for_each(|(target, how, edits)| {
            let Ok(patch) =
                serde_json::from_str::<Value>(&build_text(&seeds, JSON_DICT, edits, 8192))
            else {
                return;
            };
            let current = objects[usize::from(*target) % objects.len()].clone();
            // RFC 7386: applying a patch twice is applying it once.
            let mut once = current.clone();
            merge_patch(&mut once, &patch);
            let mut twice = once.clone();
            merge_patch(&mut twice, &patch);
            assert_eq!(once, twice, "patch {patch}");
            // The store merges and admits at apply; whatever the patch, it decides.
            let key = key_of(&current);
            let write = match how % 3 {
                0 => Write::MergeStatus { key, patch },
                1 => Write::MergePatch {
                    key,
                    patch,
                    scope: UpdateScope::Spec,
                },
                _ => Write::MergePatch {
                    key,
                    patch,
                    scope: UpdateScope::Whole,
                },
            };
            let _ = apply_write(Some(current), write, 42);
        });
}

/// Raft entries as the log holds them, JSON-encoded: every write variant, a blank entry
/// and a membership change.
fn entry_seeds() -> Vec<String> {
    let log_id = LogId::new(CommittedLeaderId::new(3, 1), 17);
    let objects = objects();
    let pod = objects[0].clone();
    let writes = vec![
        Write::Create {
            key: "pods/default/p".into(),
            object: pod.clone(),
        },
        Write::Update {
            key: "pods/default/p".into(),
            object: pod.clone(),
            scope: UpdateScope::Status,
        },
        Write::Delete {
            key: "pods/default/p".into(),
            now: "2026-01-01T00:00:00Z".into(),
            precondition_rv: Some(3),
        },
        Write::Bind {
            key: "pods/default/p".into(),
            uid: Some("u1".into()),
            node: "n1".into(),
            now: "2026-01-01T00:00:00Z".into(),
        },
        Write::MergeStatus {
            key: "pods/default/p".into(),
            patch: json!({"status": {"phase": "Failed"}}),
        },
        Write::MergePatch {
            key: "deployments/default/d".into(),
            patch: json!({"spec": {"replicas": 5}}),
            scope: UpdateScope::Spec,
        },
    ];
    let mut entries = vec![
        Entry::<TypeConfig> {
            log_id,
            payload: EntryPayload::Normal(Batch(writes)),
        },
        Entry::<TypeConfig> {
            log_id,
            payload: EntryPayload::Blank,
        },
        Entry::<TypeConfig> {
            log_id,
            payload: EntryPayload::Membership(Membership::new(
                vec![[1, 2, 3].into_iter().collect()],
                [(1, BasicNode::new("10.0.0.1:6443"))]
                    .into_iter()
                    .collect::<std::collections::BTreeMap<_, _>>(),
            )),
        },
    ];
    entries.push(Entry {
        log_id,
        payload: EntryPayload::Normal(Batch(vec![Write::Create {
            key: "nodes//n1".into(),
            object: objects[1].clone(),
        }])),
    });
    entries
        .iter()
        .map(|e| serde_json::to_string(e).expect("entries encode"))
        .collect()
}

#[test]
fn fuzz_raft_entries_decode_encode_back_and_apply_without_panicking() {
    let seeds = entry_seeds();
    let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
    let objects = objects();
    check!().with_type::<Edits>().for_each(|edits| {
        let text = build_text(&seeds, JSON_DICT, edits, 16 << 10);
        let Ok(entry) = serde_json::from_str::<Entry<TypeConfig>>(&text) else {
            return;
        };
        let encoded = serde_json::to_string(&entry).expect("a decoded entry encodes");
        let back: Entry<TypeConfig> =
            serde_json::from_str(&encoded).expect("an encoded entry decodes");
        assert_eq!(
            serde_json::to_string(&back).ok().as_ref(),
            Some(&encoded),
            "{text}"
        );
        // A committed entry is applied on every replica: deciding a write must not panic,
        // whatever the entry holds and whichever stored object (or none) is under its key.
        if let EntryPayload::Normal(Batch(writes)) = entry.payload {
            for (i, write) in writes.into_iter().enumerate() {
                let current = (i % 2 == 1).then(|| objects[i / 2 % objects.len()].clone());
                let _ = apply_write(current, write, u64::MAX);
            }
        }
    });
}

#[test]
fn fuzz_append_requests_decode_without_panicking() {
    let entries = entry_seeds();
    let seeds: Vec<String> = vec![
        format!(
            r#"{{"vote":{{"leader_id":{{"term":3,"node_id":1}},"committed":true}},"prev_log_id":null,"leader_commit":{{"leader_id":{{"term":3,"node_id":1}},"index":16}},"entries":[{}]}}"#,
            entries.join(",")
        ),
        r#"{"vote":{"leader_id":{"term":0,"node_id":0},"committed":false},"prev_log_id":{"leader_id":{"term":1,"node_id":2},"index":3},"leader_commit":null,"entries":[]}"#.into(),
    ];
    let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
    check!().with_type::<Edits>().for_each(|edits| {
        let text = build_text(&seeds, JSON_DICT, edits, 32 << 10);
        let _ = serde_json::from_str::<openraft::raft::AppendEntriesRequest<TypeConfig>>(&text);
    });
}

#[test]
fn fuzz_snapshot_chunks_decode_only_to_servers_own_ids() {
    let chunk = |id: &str, data: Vec<u8>| {
        encode_chunk(&openraft::raft::InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 7),
            meta: SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(3, 7), 42)),
                last_membership: StoredMembership::default(),
                snapshot_id: id.into(),
            },
            offset: 1 << 20,
            data,
            done: true,
        })
    };
    let seeds = [
        chunk("3-7-42-r9", b"{\"objects\":{}}".to_vec()),
        chunk("none-r0", vec![]),
        chunk("18446744073709551615-1-2-r3", vec![0, 1, 2, 255]),
    ];
    let seeds: Vec<&[u8]> = seeds.iter().map(Vec::as_slice).collect();
    const DICT: &[&[u8]] = &[
        b"-r",
        b"none",
        b"/",
        b"..",
        b"\\",
        b"\0",
        b"-",
        b"9",
        b"\"",
        b"\xff\xff\xff\xff",
        b"\0\0\0\0",
        b"\0\0\0\x10",
        b"18446744073709551616",
        b"\\u002f",
    ];
    check!().with_type::<Edits>().for_each(|edits| {
        let body = build(&seeds, DICT, edits, 16 << 10);
        let Ok(rpc) = decode_chunk(&body) else {
            return;
        };
        let id = &rpc.meta.snapshot_id;
        assert!(is_snapshot_id(id), "{id:?}");
        assert!(
            !id.contains(['/', '\\', '\0', '.']) && !id.is_empty(),
            "snapshot id {id:?} could leave the snapshot directory"
        );
        let again = decode_chunk(&encode_chunk(&rpc)).expect("a decoded chunk encodes back");
        assert_eq!(
            (
                again.vote,
                &again.meta,
                again.offset,
                again.done,
                &again.data
            ),
            (rpc.vote, &rpc.meta, rpc.offset, rpc.done, &rpc.data)
        );
    });
}

#[test]
fn fuzz_snapshot_ids_that_pass_name_only_plain_files() {
    const SEEDS: &[&str] = &["3-7-42-r9", "none-r0", "18446744073709551615-1-2-r3"];
    const DICT: &[&str] = &[
        "-", "r", "-r", "none", "/", "..", ".", "9", "0", "\u{660}", "+", " ",
    ];
    check!().with_type::<Edits>().for_each(|edits| {
        let id = build_text(SEEDS, DICT, edits, 256);
        if is_snapshot_id(&id) {
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_digit() || b == b'-' || b"none-r".contains(&b)),
                "{id:?}"
            );
        }
    });
}

#[test]
fn fuzz_stored_watch_events_decode_without_panicking() {
    const SEEDS: &[&str] = &[
        "{\"event\":\"Added\",\"key\":\"pods/default/p\",\"attrs\":{\"labels\":{\"app\":\"web\"},\"fields\":[[\"spec.nodeName\",\"n1\"]]},\"previous\":null}\n{\"kind\":\"Pod\"}",
        "{\"event\":\"Deleted\",\"key\":\"nodes//n1\",\"attrs\":{\"labels\":{},\"fields\":[]},\"previous\":{\"labels\":{},\"fields\":[[\"metadata.name\",\"n1\"]]}}\n",
    ];
    const DICT: &[&str] = &[
        "\n",
        "\"",
        "{",
        "}",
        "[",
        "]",
        "/",
        "\"Modified\"",
        "null",
        ",",
    ];
    check!()
        .with_type::<(u64, Edits)>()
        .for_each(|(revision, edits)| {
            let bytes = build_text(SEEDS, DICT, edits, 8192);
            let _ = decode_event(*revision, bytes.as_bytes());
        });
}
