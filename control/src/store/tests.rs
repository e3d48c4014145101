//! Store tests: openraft's storage conformance suite, then the facade end to end.

use std::sync::Arc;

use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;

use super::db;
use super::log_store::LogStore;
use super::state_machine::StateMachine;
use super::types::TypeConfig;
use crate::watch::WatchHub;

struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for RedbBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = TempDir::new().expect("tempdir");
        let db = db::open_state(&dir.path().join("raft.redb")).expect("open redb");
        let log = db::open_log(&dir.path().join(db::LOG_FILE), &db).expect("open log");
        let sm = StateMachine::open(
            db.clone(),
            Arc::new(WatchHub::new(1000)),
            dir.path().join("snapshots"),
        )
        .expect("open sm");
        Ok((dir, LogStore::new(log, db).expect("log store"), sm))
    }
}

#[test]
fn the_redb_log_store_and_state_machine_pass_the_openraft_storage_suite() {
    Suite::test_all(RedbBuilder).expect("openraft storage suite");
}

// ---- the Store facade ----

use std::time::Duration;

use serde_json::{Value, json};

use super::command::{Batch, EventType, UpdateScope, Write, WriteError};
use super::{Store, StoreConfig};

fn pod(name: &str) -> Write {
    Write::Create {
        key: format!("pods/default/{name}"),
        object: json!({"kind": "Pod", "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
                       "spec": {"image": "x"}}),
    }
}

fn rv(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion")
        .parse()
        .expect("numeric resourceVersion")
}

async fn open(dir: &std::path::Path, hub: &Arc<WatchHub>) -> Store {
    Store::open(StoreConfig::new(dir, 1, "127.0.0.1:1"), hub.clone())
        .await
        .expect("open store")
}

async fn open_single(dir: &std::path::Path) -> (Store, Arc<WatchHub>) {
    let hub = Arc::new(WatchHub::new(1000));
    let store = open(dir, &hub).await;
    store.bootstrap_single().await.expect("bootstrap");
    (store, hub)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_server_applies_a_batch_in_order_with_one_revision_per_change() {
    let dir = TempDir::new().unwrap();
    let (store, hub) = open_single(dir.path()).await;
    assert_eq!(store.revision().unwrap(), 0);
    let mut sub = hub.subscribe(0).unwrap();
    assert!(sub.backlog.is_empty());

    let cm = Write::Create {
        key: "configmaps/default/cfg".into(),
        object: json!({"kind": "ConfigMap", "metadata": {"name": "cfg"}}),
    };
    let batch = Batch(vec![pod("a"), pod("b"), pod("a"), cm, pod("c")]);
    let res = store.propose(batch).await.unwrap();
    assert_eq!(res.0.len(), 5);
    let revs: Vec<Option<u64>> = res
        .0
        .iter()
        .map(|r| r.as_ref().ok().map(|a| rv(&a.object)))
        .collect();
    assert_eq!(revs, vec![Some(1), Some(2), None, Some(3), Some(4)]);
    assert_eq!(res.0[2], Err(WriteError::AlreadyExists));
    assert_eq!(store.revision().unwrap(), 4);
    // Each result carries the object as the store encoded it, for the response.
    for applied in res.0.iter().filter_map(|r| r.as_ref().ok()) {
        let encoded = applied
            .encoded
            .as_ref()
            .expect("a change carries its encoding");
        assert_eq!(
            serde_json::from_slice::<Value>(encoded).unwrap(),
            applied.object
        );
    }

    store.read_barrier().await.unwrap();
    let a = store.get("pods/default/a").unwrap().expect("pod a stored");
    assert_eq!(rv(&a), 1);
    assert_eq!(a["metadata"]["generation"], 1);
    assert!(store.get("pods/default/zzz").unwrap().is_none());
    let (at, pods) = store.list("pods/default/").unwrap();
    assert_eq!(at, 4);
    let names: Vec<&str> = pods
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["a", "b", "c"]);
    let (_, all) = store.list("").unwrap();
    assert_eq!(all.len(), 4);

    // An update and a delete in one entry.
    let mut b = store.get("pods/default/b").unwrap().unwrap();
    b["spec"]["image"] = json!("y");
    let res = store
        .propose(Batch(vec![
            Write::Update {
                key: "pods/default/b".into(),
                object: b,
                scope: UpdateScope::Whole,
            },
            Write::Delete {
                key: "pods/default/c".into(),
                now: "2026-01-01T00:00:00Z".into(),
                precondition_rv: None,
            },
        ]))
        .await
        .unwrap();
    assert!(res.0.iter().all(Result::is_ok));
    assert_eq!(store.revision().unwrap(), 6);
    assert!(store.get("pods/default/c").unwrap().is_none());

    let mut seen = Vec::new();
    while seen.len() < 6 {
        let ev = tokio::time::timeout(Duration::from_secs(5), sub.live.recv())
            .await
            .expect("event in time")
            .expect("hub open");
        seen.push((ev.revision, ev.event, ev.key.clone()));
    }
    assert_eq!(
        seen,
        vec![
            (1, EventType::Added, "pods/default/a".to_string()),
            (2, EventType::Added, "pods/default/b".to_string()),
            (3, EventType::Added, "configmaps/default/cfg".to_string()),
            (4, EventType::Added, "pods/default/c".to_string()),
            (5, EventType::Modified, "pods/default/b".to_string()),
            (6, EventType::Deleted, "pods/default/c".to_string()),
        ]
    );
    assert_eq!(hub.head(), 6);

    let stats = store.stats();
    assert_eq!(stats.node_id, 1);
    assert_eq!(stats.leader, Some(1));
    assert!(stats.term >= 1);
    assert_eq!(settled(&store).await, 3);
    assert!(store.db_size_bytes() > 0);
    store.shutdown().await.unwrap();
    assert!(matches!(
        store.get("pods/default/a"),
        Err(super::StoreError::Unavailable(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_and_revision_survive_a_restart_and_bootstrap_is_idempotent() {
    let dir = TempDir::new().unwrap();
    {
        let (store, _hub) = open_single(dir.path()).await;
        store
            .bootstrap_single()
            .await
            .expect("second bootstrap is a no-op");
        for name in ["a", "b", "c"] {
            store.propose(Batch(vec![pod(name)])).await.unwrap();
        }
        assert_eq!(store.revision().unwrap(), 3);
        store.shutdown().await.unwrap();
    }
    let hub = Arc::new(WatchHub::new(1000));
    let store = open(dir.path(), &hub).await;
    // The hub starts from the persisted history: a watcher that was behind when the server
    // stopped resumes from where it was, with the same events.
    assert_eq!(hub.head(), 3);
    let sub = hub.subscribe(1).expect("resume across the restart");
    let resumed: Vec<(u64, &str)> = sub
        .backlog
        .iter()
        .map(|e| (e.revision, e.key.as_str()))
        .collect();
    assert_eq!(resumed, vec![(2, "pods/default/b"), (3, "pods/default/c")]);
    assert_eq!(sub.backlog[1].attrs.field("metadata.name"), "c");
    assert!(hub.subscribe(0).is_ok());
    assert_eq!(store.revision().unwrap(), 3);
    let term_before = store.stats().term;
    store
        .bootstrap_single()
        .await
        .expect("bootstrap after restart");
    store.bootstrap_single().await.expect("and again");
    assert!(store.stats().term >= term_before);
    assert_eq!(rv(&store.get("pods/default/c").unwrap().unwrap()), 3);
    let res = store.propose(Batch(vec![pod("d")])).await.unwrap();
    assert_eq!(rv(&res.0[0].as_ref().unwrap().object), 4);
    let (at, pods) = store.list("pods/").unwrap();
    assert_eq!((at, pods.len()), (4, 4));
    // Membership is still the single voter this server initialized.
    let voters: Vec<u64> = store
        .raft()
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    assert_eq!(voters, vec![1]);
    store.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_and_purge_then_restart_keeps_the_store_consistent() {
    let dir = TempDir::new().unwrap();
    let applied = {
        let (store, _hub) = open_single(dir.path()).await;
        for i in 0..20 {
            store
                .propose(Batch(vec![pod(&format!("p{i:02}"))]))
                .await
                .unwrap();
        }
        let applied = snapshot_and_purge(&store).await;
        // More writes after the purge point, so the restart replays a log tail.
        store
            .propose(Batch(vec![pod("after1"), pod("after2")]))
            .await
            .unwrap();
        assert_eq!(store.revision().unwrap(), 22);
        store.shutdown().await.unwrap();
        applied
    };
    let hub = Arc::new(WatchHub::new(1000));
    let store = open(dir.path(), &hub).await;
    store.bootstrap_single().await.unwrap();
    store.read_barrier().await.unwrap();
    settled(&store).await;
    let stats = store.stats();
    assert_eq!(stats.purged_index, Some(applied));
    assert_eq!(stats.snapshot_index, Some(applied));
    assert_eq!(store.revision().unwrap(), 22);
    let (at, pods) = store.list("pods/default/").unwrap();
    assert_eq!((at, pods.len()), (22, 22));
    let mut revs: Vec<u64> = pods.iter().map(rv).collect();
    revs.sort_unstable();
    assert_eq!(revs, (1..=22).collect::<Vec<_>>());
    let res = store.propose(Batch(vec![pod("later")])).await.unwrap();
    assert_eq!(rv(&res.0[0].as_ref().unwrap().object), 23);
    store.shutdown().await.unwrap();
}

/// Lays `dir` out as servers before the log had a file of its own kept it: the log's tables
/// copied into `raft.redb`; `log.redb` is removed unless `keep_log_file` (a crash between the
/// copy and the removal of the old tables).
async fn put_the_log_back_into_raft_redb(dir: &std::path::Path, keep_log_file: bool) {
    use super::log_store::{LOG, RAFT_META};
    let state = db::open_retrying(&dir.join("raft.redb"), db::open_state)
        .await
        .expect("open raft.redb");
    let log = db::open_retrying(&dir.join(db::LOG_FILE), |p| {
        Ok(Arc::new(redb::Database::create(p)?))
    })
    .await
    .expect("open log.redb");
    let read = redb::ReadableDatabase::begin_read(&*log).expect("read");
    let txn = state.begin_write().expect("write");
    db::copy_table(&read, &mut txn.open_table(LOG).expect("table"), LOG).expect("copy");
    db::copy_table(
        &read,
        &mut txn.open_table(RAFT_META).expect("table"),
        RAFT_META,
    )
    .expect("copy");
    txn.commit().expect("commit");
    drop((read, log, state));
    if !keep_log_file {
        std::fs::remove_file(dir.join(db::LOG_FILE)).expect("remove log.redb");
    }
}

async fn raft_redb_has_a_log(dir: &std::path::Path) -> bool {
    // Retrying: the store's threads release the file shortly after it is dropped.
    let db = db::open_retrying(&dir.join("raft.redb"), |p| {
        Ok(Arc::new(redb::Database::create(p)?))
    })
    .await
    .expect("open raft.redb");
    let txn = redb::ReadableDatabase::begin_read(&*db).expect("read");
    match txn.open_table(super::log_store::LOG) {
        Ok(_) => true,
        Err(redb::TableError::TableDoesNotExist(_)) => false,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_kept_inside_raft_redb_by_an_older_server_moves_to_its_own_file() {
    let dir = TempDir::new().unwrap();
    let (last_log, term) = {
        let (store, _hub) = open_single(dir.path()).await;
        for name in ["a", "b", "c"] {
            store.propose(Batch(vec![pod(name)])).await.unwrap();
        }
        let stats = store.stats();
        store.shutdown().await.unwrap();
        (stats.last_log_index, stats.term)
    };
    // Both copies (a crash after the new file was in place): the old tables go.
    put_the_log_back_into_raft_redb(dir.path(), true).await;
    assert!(raft_redb_has_a_log(dir.path()).await);
    open(dir.path(), &Arc::new(WatchHub::new(1000)))
        .await
        .shutdown()
        .await
        .unwrap();
    assert!(!raft_redb_has_a_log(dir.path()).await);
    // Only the old layout (and the leftover of a copy a crash cut short): the log moves,
    // with the vote, and the server goes on from it.
    put_the_log_back_into_raft_redb(dir.path(), false).await;
    let tmp = dir.path().join(format!("{}.tmp", db::LOG_FILE));
    std::fs::write(&tmp, b"half a copy").unwrap();
    let hub = Arc::new(WatchHub::new(1000));
    let store = open(dir.path(), &hub).await;
    assert!(!store.is_pristine().unwrap());
    store
        .raft()
        .wait(Some(Duration::from_secs(5)))
        .metrics(
            |m| m.last_log_index == last_log && m.vote.leader_id().term == term,
            "the moved log and vote",
        )
        .await
        .expect("the log and the vote as they were");
    assert!(dir.path().join(db::LOG_FILE).exists());
    assert!(!tmp.exists());
    store.bootstrap_single().await.unwrap();
    assert_eq!(store.revision().unwrap(), 3);
    let res = store.propose(Batch(vec![pod("d")])).await.unwrap();
    assert_eq!(rv(&res.0[0].as_ref().unwrap().object), 4);
    store.shutdown().await.unwrap();
    drop(store);
    assert!(!raft_redb_has_a_log(dir.path()).await);

    // Two different logs (an older server ran here after a newer one): refused, untouched.
    put_the_log_back_into_raft_redb(dir.path(), true).await;
    write_raft_redb(dir.path(), |txn| {
        let mut meta = txn.open_table(super::log_store::RAFT_META).unwrap();
        meta.insert("vote", b"{}".as_slice()).unwrap();
    })
    .await;
    let cfg = || StoreConfig::new(dir.path(), 1, "127.0.0.1:1");
    let hub = Arc::new(WatchHub::new(1000));
    let err = Store::open(cfg(), hub.clone()).await.expect_err("two logs");
    assert!(err.to_string().contains("other than"), "{err}");
    assert!(raft_redb_has_a_log(dir.path()).await);
    assert!(dir.path().join(db::LOG_FILE).exists());

    // No log at all beside an applied state machine (log.redb lost): refused.
    write_raft_redb(dir.path(), |txn| {
        txn.delete_table(super::log_store::LOG).unwrap();
        txn.delete_table(super::log_store::RAFT_META).unwrap();
    })
    .await;
    std::fs::remove_file(dir.path().join(db::LOG_FILE)).unwrap();
    let err = Store::open(cfg(), hub).await.expect_err("no log");
    assert!(err.to_string().contains("is missing"), "{err}");
    assert!(!dir.path().join(db::LOG_FILE).exists());
}

/// Runs `f` in a write transaction of `dir`'s `raft.redb`.
async fn write_raft_redb(dir: &std::path::Path, f: impl FnOnce(&redb::WriteTransaction)) {
    let db = db::open_retrying(&dir.join("raft.redb"), |p| {
        Ok(Arc::new(redb::Database::create(p)?))
    })
    .await
    .expect("open raft.redb");
    let txn = db.begin_write().expect("write");
    f(&txn);
    txn.commit().expect("commit");
}

/// Wait until raft's metrics show everything in the log applied; returns that index.
async fn settled(store: &Store) -> u64 {
    let m = store
        .raft()
        .wait(Some(Duration::from_secs(10)))
        .metrics(
            |m| m.last_log_index.is_some() && m.last_applied.map(|l| l.index) == m.last_log_index,
            "log applied",
        )
        .await
        .expect("log applied in time");
    m.last_log_index.expect("some log")
}

/// Build a snapshot of everything applied and purge the log up to it; returns its index.
async fn snapshot_and_purge(store: &Store) -> u64 {
    let applied = settled(store).await;
    store.raft().trigger().snapshot().await.unwrap();
    let m = store
        .raft()
        .wait(Some(Duration::from_secs(10)))
        .metrics(
            |m| m.snapshot.map(|s| s.index) >= Some(applied),
            "snapshot built",
        )
        .await
        .expect("snapshot in time");
    let snap = m.snapshot.expect("snapshot").index;
    store.raft().trigger().purge_log(snap).await.unwrap();
    store
        .raft()
        .wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.purged.map(|s| s.index) >= Some(snap), "log purged")
        .await
        .expect("purge in time");
    snap
}

/// Serve a store's raft endpoints the way the API server does (nested at `/raft`).
async fn serve_raft(
    listener: tokio::net::TcpListener,
    store: &Store,
) -> tokio::task::JoinHandle<()> {
    let app = axum::Router::new().nest("/raft", super::network::raft_router(store.raft().clone()));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_learner_catches_up_over_http_from_a_snapshot_and_the_log() {
    let (d1, d2) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let l1 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let l2 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (a1, a2) = (
        l1.local_addr().unwrap().to_string(),
        l2.local_addr().unwrap().to_string(),
    );
    let hub1 = Arc::new(WatchHub::new(1000));
    let hub2 = Arc::new(WatchHub::new(1000));
    let s1 = Store::open(StoreConfig::new(d1.path(), 1, a1.clone()), hub1)
        .await
        .unwrap();
    let s2 = Store::open(StoreConfig::new(d2.path(), 2, a2.clone()), hub2.clone())
        .await
        .unwrap();
    let h1 = serve_raft(l1, &s1).await;
    let h2 = serve_raft(l2, &s2).await;
    s1.bootstrap_single().await.unwrap();

    for i in 0..10 {
        s1.propose(Batch(vec![pod(&format!("p{i}"))]))
            .await
            .unwrap();
    }
    // Snapshot and purge, so the learner can only start from the snapshot.
    let applied = snapshot_and_purge(&s1).await;
    assert_eq!(s1.stats().purged_index, Some(applied));
    s1.propose(Batch(vec![pod("tail")])).await.unwrap();

    s1.raft()
        .add_learner(2, openraft::BasicNode::new(a2.clone()), true)
        .await
        .expect("learner added and caught up");
    s1.propose(Batch(vec![pod("live")])).await.unwrap();
    let want = Some(settled(&s1).await);
    s2.raft()
        .wait(Some(Duration::from_secs(10)))
        .metrics(
            |m| m.last_applied.map(|l| l.index) >= want,
            "learner applied",
        )
        .await
        .unwrap();
    assert_eq!(s2.revision().unwrap(), 12);
    assert_eq!(hub2.head(), 12);
    let (_, pods) = s2.list("pods/default/").unwrap();
    assert_eq!(pods.len(), 12);
    assert_eq!(s2.list("pods/").unwrap(), s1.list("pods/").unwrap());
    assert!(s2.stats().snapshot_index.is_some());
    // A learner is not the leader.
    match s2.propose(Batch(vec![pod("nope")])).await {
        Err(super::StoreError::NotLeader { leader }) => assert_eq!(leader, Some((1, a1.clone()))),
        other => panic!("expected NotLeader, got {other:?}"),
    }

    s2.shutdown().await.unwrap();
    s1.shutdown().await.unwrap();
    h1.abort();
    h2.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_port_is_held_by_one_service_even_within_one_batch() {
    let dir = TempDir::new().unwrap();
    let (store, _hub) = open_single(dir.path()).await;
    let svc = |ns: &str, name: &str, node_port: i64| Write::Create {
        key: format!("services/{ns}/{name}"),
        object: json!({"kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": node_port}]}}),
    };
    // Two creates that picked the same port from the same read travel in one entry.
    let res = store
        .propose(Batch(vec![
            svc("a", "web", 30080),
            svc("b", "web", 30080),
            svc("b", "api", 30081),
        ]))
        .await
        .unwrap();
    assert!(res.0[0].is_ok());
    assert_eq!(
        res.0[1],
        Err(WriteError::FieldInvalid {
            field: "spec.ports[0].nodePort".into(),
            value: "30080".into(),
            detail: "provided port is already allocated".into(),
        })
    );
    assert!(res.0[2].is_ok());
    assert!(store.get("services/b/web").unwrap().is_none());
    // A Service keeps its own port when it is updated.
    let mut web = store.get("services/a/web").unwrap().unwrap();
    web["spec"]["ports"][0]["targetPort"] = json!(8080);
    let res = store
        .propose(Batch(vec![Write::Update {
            key: "services/a/web".into(),
            object: web,
            scope: UpdateScope::Spec,
        }]))
        .await
        .unwrap();
    assert!(res.0[0].is_ok(), "{:?}", res.0[0]);
    store.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_reads_about_a_mebibyte_of_entries_at_a_time_but_always_one() {
    use openraft::storage::RaftLogReader as _;
    let dir = tempfile::tempdir().unwrap();
    let (store, _hub) = open_single(dir.path()).await;
    for i in 0..4 {
        let big = Write::Create {
            key: format!("configmaps/default/big-{i}"),
            object: json!({"kind": "ConfigMap",
                "metadata": {"name": format!("big-{i}"), "namespace": "default", "uid": format!("u{i}")},
                "data": {"x": "y".repeat(400 << 10)}}),
        };
        store.propose(Batch(vec![big])).await.expect("write");
    }
    let last = store
        .inner
        .raft
        .metrics()
        .borrow()
        .last_log_index
        .expect("a log");
    let mut reader = store.inner.log_store.clone();
    let all = reader.try_get_log_entries(1..=last).await.unwrap();
    let limited = reader.limited_get_log_entries(1, last + 1).await.unwrap();
    // The first three 400 KiB writes pass the budget; the fourth waits for the next call.
    assert_eq!(limited.len(), all.len() - 1);
    assert_eq!(limited.last().unwrap().log_id.index, last - 1);
    // One entry is always returned, however big.
    let one = reader
        .limited_get_log_entries(last, last + 1)
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
}

#[test]
fn snapshot_files_that_no_metadata_names_are_removed_at_open() {
    let dir = TempDir::new().expect("tempdir");
    let snapshots = dir.path().join("snapshots");
    std::fs::create_dir_all(&snapshots).expect("mkdir");
    // A build that crashed after its file, and one that crashed while writing it.
    std::fs::write(snapshots.join("1-1-10-r5.snap"), b"{}").expect("write");
    std::fs::write(snapshots.join("1-1-20-r9.snap.tmp"), b"{").expect("write");
    let db = db::open_state(&dir.path().join("raft.redb")).expect("open redb");
    StateMachine::open(db, Arc::new(WatchHub::new(10)), &snapshots).expect("open sm");
    assert_eq!(std::fs::read_dir(&snapshots).expect("read dir").count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_state_machine_is_made_durable_by_its_flusher() {
    use openraft::storage::RaftStateMachine as _;
    use std::time::Instant;
    let dir = TempDir::new().unwrap();
    let db = db::open_state(&dir.path().join("raft.redb")).expect("open redb");
    let mut sm = StateMachine::open(db, Arc::new(WatchHub::new(10)), dir.path().join("snap"))
        .expect("open sm");
    let entry = openraft::Entry::<super::types::TypeConfig> {
        log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), 1),
        payload: openraft::EntryPayload::Normal(Batch(vec![pod("a")])),
    };
    // Just after a durable commit: the apply commits without an fsync.
    sm.set_last_durable(Instant::now());
    sm.apply([entry]).await.expect("apply");
    assert!(sm.is_dirty());
    // Not due yet: the flusher leaves it.
    sm.flush_if_due().await;
    assert!(sm.is_dirty());
    // Once the change has waited DURABLE_EVERY, the flusher's tick commits durably.
    sm.set_last_durable(Instant::now() - super::state_machine::DURABLE_EVERY);
    sm.flush_if_due().await;
    assert!(!sm.is_dirty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installed_snapshot_whose_id_is_a_path_writes_no_file() {
    use openraft::storage::RaftStateMachine as _;
    let dir = TempDir::new().unwrap();
    let db = db::open_state(&dir.path().join("raft.redb")).expect("open redb");
    let snapshots = dir.path().join("deep/snapshots");
    let mut sm = StateMachine::open(db, Arc::new(WatchHub::new(10)), &snapshots).expect("open");
    let data = serde_json::to_vec(&json!({
        "last_applied": null,
        "membership": super::types::StoredMembership::default(),
        "revision": 1,
        "objects": [],
    }))
    .unwrap();
    for id in ["../../x", "../x-r1", "/tmp/ketch-snapshot-escape"] {
        let meta = openraft::SnapshotMeta {
            last_log_id: None,
            last_membership: Default::default(),
            snapshot_id: id.into(),
        };
        let err = sm
            .install_snapshot(&meta, Box::new(std::io::Cursor::new(data.to_vec())))
            .await;
        assert!(err.is_err(), "{id}");
    }
    // Nothing beside or above the snapshot dir, and nothing at the absolute path.
    let names = |p: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert!(names(dir.path()).iter().all(|n| !n.ends_with(".snap")));
    assert!(
        names(&dir.path().join("deep"))
            .iter()
            .all(|n| !n.ends_with(".snap"))
    );
    assert!(!std::path::Path::new("/tmp/ketch-snapshot-escape.snap").exists());
    // The same data under a server's own name installs: the ids, not the data, were refused.
    let meta = openraft::SnapshotMeta {
        last_log_id: None,
        last_membership: Default::default(),
        snapshot_id: "none-r1".into(),
    };
    sm.install_snapshot(&meta, Box::new(std::io::Cursor::new(data.to_vec())))
        .await
        .expect("a well-named snapshot installs");
    assert!(snapshots.join("none-r1.snap").exists());
}
