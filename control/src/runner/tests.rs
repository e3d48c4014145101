//! End to end: a real API server in-process, the control plane against it, and a simulated
//! kubelet that marks bound pods running and ready.

use std::future::Future;
use std::time::Duration;

use ketch_api::apps::{Deployment, ReplicaSet};
use ketch_api::core::{Event, Pod};
use ketch_api::discovery::EndpointSlice;
use ketch_api::params::QueryParams;
use ketch_api::resource::{CONFIGMAPS, DEPLOYMENTS, NODES, PODS, SERVICES};
use ketch_client::{Client, ListParams};
use serde_json::{Value, json};

use super::{ControlOptions, ControlPlane};
use crate::controllers::deployment::{RolloutStatus, rollout_status};
use crate::server::{Server, ServerOptions};

const TIMEOUT: Duration = Duration::from_secs(30);

struct Cluster {
    server: Option<Server>,
    client: Client,
    control: Option<ControlPlane>,
    kubelet: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// A server on a fresh data dir, with a client over HTTP and one in process.
async fn start_server() -> (tempfile::TempDir, Server, Client, Client) {
    let dir = tempfile::tempdir().unwrap();
    // Not the temp dir itself: the Secret key file goes beside the data dir.
    let server = Server::start(ServerOptions::new(
        dir.path().join("data"),
        "127.0.0.1:0".parse().unwrap(),
    ))
    .await
    .unwrap();
    let url = server.url();
    let http = server.client().unwrap();
    let local = Client::in_process(&url, &server.token, server.in_process()).unwrap();
    (dir, server, http, local)
}

impl Cluster {
    async fn start() -> Cluster {
        let (dir, server, client, local) = start_server().await;
        // As in `ketch server`: the control plane calls the router in process; the test
        // and its kubelet go over HTTP.
        let control = ControlPlane::start(local, ControlOptions::default());
        let kubelet = tokio::spawn(kubelet(client.clone()));
        for n in ["node-a", "node-b"] {
            add_node(&client, n).await;
        }
        Cluster {
            server: Some(server),
            client,
            control: Some(control),
            kubelet,
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        self.kubelet.abort();
        self.control.take().unwrap().stop().await;
        self.server.take().unwrap().stop().await.unwrap();
    }

    async fn pods(&self) -> Vec<Pod> {
        self.client
            .api::<Pod>(Some("default"))
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
    }

    async fn replica_sets(&self) -> Vec<ReplicaSet> {
        self.client
            .api::<ReplicaSet>(Some("default"))
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
    }

    async fn deployment(&self, name: &str) -> Option<Deployment> {
        self.client
            .api::<Deployment>(Some("default"))
            .get(name)
            .await
            .ok()
    }

    async fn patch_deployment(&self, name: &str, patch: Value) {
        self.client
            .merge_patch(&DEPLOYMENTS, Some("default"), name, &patch, false)
            .await
            .unwrap();
    }

    /// Raw DELETE with a propagation policy (the client sends no DeleteOptions).
    async fn delete_with_policy(&self, path: &str, policy: &str) -> reqwest::Response {
        let server = self.server.as_ref().unwrap();
        let query = QueryParams {
            propagation_policy: Some(policy.to_string()),
            ..QueryParams::default()
        };
        reqwest::Client::builder()
            .tls_backend_preconfigured(ketch_tls::client_config(server.ca_pem(), None).unwrap())
            .build()
            .unwrap()
            .delete(format!("{}{path}", server.url()))
            .query(&query)
            .bearer_auth(&server.token)
            .send()
            .await
            .unwrap()
    }
}

/// Polls `check` until it returns `Some`, failing with `what` after [`TIMEOUT`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn add_node(client: &Client, name: &str) {
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
    });
    let created = client.create(&NODES, None, &node).await.unwrap();
    let mut with_status = created;
    with_status["status"] = json!({
        "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "runtimeHandlers": [{"name": "wasm"}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
    });
    client
        .replace_status(&NODES, None, name, &with_status)
        .await
        .unwrap();
}

/// Marks every bound, not yet ready pod Running and Ready, as an agent would.
async fn kubelet(client: Client) {
    loop {
        if let Ok(list) = client.api::<Pod>(None).list(&ListParams::default()).await {
            for p in list.items {
                let bound = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
                let ready = p.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                });
                if !bound || ready || p.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let now = ketch_api::time::now();
                let mut conditions: Vec<Value> = vec![
                    json!({"type": "Initialized", "status": "True", "lastTransitionTime": now}),
                    json!({"type": "ContainersReady", "status": "True", "lastTransitionTime": now}),
                    json!({"type": "Ready", "status": "True", "lastTransitionTime": now}),
                ];
                conditions.push(
                    json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": now}),
                );
                let patch = json!({
                    "metadata": {"resourceVersion": p.metadata.resource_version},
                    "status": {
                        "phase": "Running",
                        "podIP": "127.0.0.1",
                        "startTime": now,
                        "conditions": conditions,
                        "containerStatuses": [{
                            "name": "app", "ready": true, "restartCount": 0,
                            "image": "file:./x.wasm", "imageID": "",
                            "started": true, "state": {"running": {"startedAt": now}},
                        }],
                    },
                });
                // A conflict means the pod changed: the next round sees it.
                let _ = client
                    .merge_patch(
                        &PODS,
                        p.metadata.namespace.as_deref(),
                        p.metadata.name(),
                        &patch,
                        true,
                    )
                    .await;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn deployment(name: &str, replicas: i32, version: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "app",
                    "image": "file:./x.wasm",
                    "env": [{"name": "VERSION", "value": version}],
                }]},
            },
        },
    })
}

fn owned_by(p: &Pod, rs: &ReplicaSet) -> bool {
    p.metadata
        .owner_references
        .iter()
        .any(|r| r.controller == Some(true) && Some(&r.uid) == rs.metadata.uid.as_ref())
}

fn env_version(p: &Pod) -> Option<String> {
    p.spec.as_ref()?.containers[0].env[0].value.clone()
}

fn ready(p: &Pod) -> bool {
    p.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// Waits until the Deployment has rolled out with `replicas` ready pods of `version`, and no
/// others; returns them.
async fn rolled_out(c: &Cluster, name: &str, replicas: i32, version: &str) -> Vec<Pod> {
    eventually(
        &format!("{name} rolled out with {replicas} replicas of {version}"),
        || async {
            let d = c.deployment(name).await?;
            let st = d.status.clone().unwrap_or_default();
            let pods = c.pods().await;
            let ok = rollout_status(&d) == RolloutStatus::Complete
                && st.ready_replicas.unwrap_or(0) == replicas
                && st.available_replicas.unwrap_or(0) == replicas
                && pods.len() == replicas as usize
                && pods
                    .iter()
                    .all(|p| ready(p) && env_version(p).as_deref() == Some(version));
            ok.then_some(pods)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_is_created_rolled_scaled_healed_and_collected() {
    let c = Cluster::start().await;
    c.client
        .create(&DEPLOYMENTS, Some("default"), &deployment("web", 3, "1"))
        .await
        .unwrap();

    // Three pods, owned through a ReplicaSet, bound, ready; the rollout completes.
    let pods = rolled_out(&c, "web", 3, "1").await;
    let rss = c.replica_sets().await;
    assert_eq!(rss.len(), 1);
    let d = c.deployment("web").await.unwrap();
    let rs_owner = &rss[0].metadata.owner_references[0];
    assert_eq!(Some(&rs_owner.uid), d.metadata.uid.as_ref());
    for p in &pods {
        assert!(
            owned_by(p, &rss[0]),
            "{} is not owned by the ReplicaSet",
            p.metadata.name()
        );
        let node = p.spec.as_ref().unwrap().node_name.as_deref().unwrap();
        assert!(node == "node-a" || node == "node-b");
    }
    // Every binding was announced.
    let events = c
        .client
        .api::<Event>(Some("default"))
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let scheduled = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("Scheduled"))
        .count();
    assert!(scheduled >= 3, "{scheduled} Scheduled events");

    // A template change rolls out through a new ReplicaSet; the old one ends at zero.
    c.patch_deployment(
        "web",
        json!({"spec": {"template": {"spec": {"containers": [{
            "name": "app", "image": "file:./x.wasm", "env": [{"name": "VERSION", "value": "2"}],
        }]}}}}),
    )
    .await;
    rolled_out(&c, "web", 3, "2").await;
    let rss = eventually("the old ReplicaSet scaled to zero", || async {
        let rss = c.replica_sets().await;
        let zero = rss
            .iter()
            .filter(|rs| rs.spec.as_ref().unwrap().replicas == Some(0))
            .count();
        (rss.len() == 2 && zero == 1).then_some(rss)
    })
    .await;
    assert_eq!(rss.len(), 2);

    // Scale up, down to zero, and back.
    c.patch_deployment("web", json!({"spec": {"replicas": 5}}))
        .await;
    rolled_out(&c, "web", 5, "2").await;
    c.patch_deployment("web", json!({"spec": {"replicas": 0}}))
        .await;
    eventually("scaled to zero", || async {
        let d = c.deployment("web").await?;
        let done = c.pods().await.is_empty()
            && d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0) == 0;
        done.then_some(())
    })
    .await;
    c.patch_deployment("web", json!({"spec": {"replicas": 2}}))
        .await;
    let pods = rolled_out(&c, "web", 2, "2").await;

    // A deleted pod is replaced.
    let victim = pods[0].metadata.name().to_string();
    c.client
        .api::<Pod>(Some("default"))
        .delete(&victim)
        .await
        .unwrap();
    let pods = rolled_out(&c, "web", 2, "2").await;
    assert!(pods.iter().all(|p| p.metadata.name() != victim));

    // Deleting the Deployment (background) collects its ReplicaSets and their pods.
    c.client
        .api::<Deployment>(Some("default"))
        .delete("web")
        .await
        .unwrap();
    eventually("ReplicaSets and pods collected", || async {
        (c.replica_sets().await.is_empty() && c.pods().await.is_empty()).then_some(())
    })
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_no_node_fits_is_marked_unschedulable_with_the_reasons() {
    let c = Cluster::start().await;
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "picky", "namespace": "default"},
        "spec": {
            "nodeSelector": {"disk": "ssd"},
            "containers": [{"name": "app", "image": "file:./x.wasm"}],
        },
    });
    c.client.create(&PODS, Some("default"), &pod).await.unwrap();
    // The scheduler's node cache may briefly lag behind (no nodes, or not Ready yet): wait for
    // its verdict on the nodes as they are.
    let want = "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.";
    let cond = eventually("PodScheduled=False for the selector", || async {
        let p = c
            .client
            .api::<Pod>(Some("default"))
            .get("picky")
            .await
            .ok()?;
        p.status?.conditions.into_iter().find(|c| {
            c.type_ == "PodScheduled" && c.status == "False" && c.message.as_deref() == Some(want)
        })
    })
    .await;
    assert_eq!(cond.reason.as_deref(), Some("Unschedulable"));
    let ev = eventually("a FailedScheduling event", || async {
        let evs = c
            .client
            .api::<Event>(Some("default"))
            .list(&ListParams::default())
            .await
            .ok()?
            .items;
        evs.into_iter()
            .find(|e| e.reason.as_deref() == Some("FailedScheduling"))
    })
    .await;
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    assert_eq!(ev.involved_object.name.as_deref(), Some("picky"));
    assert_eq!(
        ev.source.and_then(|s| s.component).as_deref(),
        Some("ketch-scheduler")
    );

    // Once a node matches, the pod is bound and the condition flips.
    let patch = json!({"metadata": {"labels": {"disk": "ssd"}}});
    c.client
        .merge_patch(&NODES, None, "node-b", &patch, false)
        .await
        .unwrap();
    let p = eventually("picky bound to node-b", || async {
        let p = c
            .client
            .api::<Pod>(Some("default"))
            .get("picky")
            .await
            .ok()?;
        (p.spec.as_ref()?.node_name.as_deref() == Some("node-b")).then_some(p)
    })
    .await;
    assert_eq!(p.metadata.name(), "picky");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_and_orphan_deletion_are_carried_out_by_the_collector() {
    let c = Cluster::start().await;
    // With no dependents there is nothing to wait for: the object goes at once, even of a
    // kind the collector does not watch.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "lonely"}});
    c.client
        .create(&CONFIGMAPS, Some("default"), &cm)
        .await
        .unwrap();
    let resp = c
        .delete_with_policy("/api/v1/namespaces/default/configmaps/lonely", "Foreground")
        .await;
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let err = c
        .client
        .get(&CONFIGMAPS, Some("default"), "lonely")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(404));

    c.client
        .create(&DEPLOYMENTS, Some("default"), &deployment("fg", 2, "1"))
        .await
        .unwrap();
    rolled_out(&c, "fg", 2, "1").await;

    // Foreground: the Deployment waits (finalizer) until its ReplicaSet and pods are gone.
    let resp = c
        .delete_with_policy(
            "/apis/apps/v1/namespaces/default/deployments/fg",
            "Foreground",
        )
        .await;
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let marked: Value = resp.json().await.unwrap();
    assert!(marked.pointer("/metadata/deletionTimestamp").is_some());
    assert_eq!(
        marked.pointer("/metadata/finalizers"),
        Some(&json!(["foregroundDeletion"]))
    );
    eventually("everything gone in the foreground", || async {
        let gone = c.deployment("fg").await.is_none()
            && c.replica_sets().await.is_empty()
            && c.pods().await.is_empty();
        gone.then_some(())
    })
    .await;

    // Orphan: the Deployment goes, its ReplicaSet stays without an owner reference.
    c.client
        .create(&DEPLOYMENTS, Some("default"), &deployment("orph", 1, "1"))
        .await
        .unwrap();
    rolled_out(&c, "orph", 1, "1").await;
    let resp = c
        .delete_with_policy(
            "/apis/apps/v1/namespaces/default/deployments/orph",
            "Orphan",
        )
        .await;
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    eventually("the Deployment gone, its ReplicaSet orphaned", || async {
        let rss = c.replica_sets().await;
        let orphaned = c.deployment("orph").await.is_none()
            && rss.len() == 1
            && rss[0].metadata.owner_references.is_empty();
        orphaned.then_some(())
    })
    .await;
    // The orphaned ReplicaSet keeps its pod.
    assert_eq!(c.pods().await.len(), 1);
    c.stop().await;
}

fn service(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

fn node_ports(svc: &Value) -> Vec<i64> {
    svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["nodePort"].as_i64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ports_are_unique_under_concurrent_creates_and_survive_a_reapply() {
    let c = Cluster::start().await;
    // Concurrent creates are group-committed into the same raft entries: each still gets its
    // own port, the lowest ones free.
    let creates = (0..8).map(|i| {
        let client = c.client.clone();
        async move {
            let spec = json!({"type": "NodePort", "ports": [{"port": 80}]});
            client
                .create(
                    &SERVICES,
                    Some("default"),
                    &service(&format!("np-{i}"), spec),
                )
                .await
                .unwrap()
        }
    });
    let created = futures_util::future::join_all(creates).await;
    let mut ports: Vec<i64> = created.iter().flat_map(node_ports).collect();
    ports.sort_unstable();
    assert_eq!(ports, (30000..30008).collect::<Vec<_>>());

    // An explicit port another Service holds is refused, naming the field.
    let taken = json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30003}]});
    let err = c
        .client
        .create(&SERVICES, Some("default"), &service("dup", taken))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(422));
    assert!(
        err.to_string().contains(
            "spec.ports[0].nodePort: Invalid value: 30003: provided port is already allocated"
        ),
        "{err}"
    );

    // Re-applying the ports without node ports (a merge patch replaces the list) keeps them.
    let before = node_ports(
        &c.client
            .get(&SERVICES, Some("default"), "np-0")
            .await
            .unwrap(),
    );
    let patched = c
        .client
        .merge_patch(
            &SERVICES,
            Some("default"),
            "np-0",
            &json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}}),
            false,
        )
        .await
        .unwrap();
    assert_eq!(node_ports(&patched), before);
    // Turning it into a ClusterIP Service drops the node port instead of failing validation.
    let patched = c
        .client
        .merge_patch(
            &SERVICES,
            Some("default"),
            "np-0",
            &json!({"spec": {"type": "ClusterIP"}}),
            false,
        )
        .await
        .unwrap();
    assert!(node_ports(&patched).is_empty(), "{patched}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_slice_follows_the_ready_pods_of_a_service_and_goes_with_it() {
    let c = Cluster::start().await;
    c.client
        .create(&DEPLOYMENTS, Some("default"), &deployment("web", 2, "1"))
        .await
        .unwrap();
    let spec = json!({"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]});
    c.client
        .create(&SERVICES, Some("default"), &service("web", spec))
        .await
        .unwrap();
    let slices = c.client.api::<EndpointSlice>(Some("default"));
    let slice = eventually("a slice with two ready endpoints", || async {
        let s = slices.get("web").await.ok()?;
        (s.endpoints.len() == 2 && s.endpoints.iter().all(|e| e.is_ready())).then_some(s)
    })
    .await;
    assert_eq!(slice.ports[0].port, Some(8080));
    // Converged: the controller does not keep rewriting an up-to-date slice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = slices.get("web").await.unwrap();
    assert_eq!(
        later.metadata.resource_version,
        slice.metadata.resource_version
    );
    assert!(slice.endpoints.iter().all(|e| {
        e.node_name.is_some()
            && e.target_ref
                .as_ref()
                .and_then(|t| t.name.as_ref())
                .is_some()
    }));

    // Deleting the Service deletes its slice (the collector follows the owner reference).
    c.client
        .delete(&SERVICES, Some("default"), "web")
        .await
        .unwrap();
    eventually("the slice collected", || async {
        slices
            .get("web")
            .await
            .err()
            .filter(|e| e.code() == Some(404))
    })
    .await;
    c.stop().await;
}

/// The in-process transport answers as the listener does: the same objects, the same
/// `Status` errors (authentication included), and watch streams that deliver as they go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_client_gets_the_answers_a_connection_gets() {
    use futures_util::StreamExt as _;

    let (_dir, server, http, local) = start_server().await;

    let mut events = std::pin::pin!(
        local
            .api::<ketch_api::core::ConfigMap>(Some("default"))
            .watcher(ListParams::default(), None)
    );
    // The watcher lists first (nothing yet), then follows the stream.
    match tokio::time::timeout(TIMEOUT, events.next()).await {
        Ok(Some(Ok(ketch_client::Event::Restarted(items)))) => assert!(items.is_empty()),
        other => panic!("the watch's first list: {other:?}"),
    }
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "one", "namespace": "default"}, "data": {"k": "v"}});
    let created = local
        .create(&CONFIGMAPS, Some("default"), &cm)
        .await
        .unwrap();
    assert_eq!(created["data"]["k"], "v");
    assert!(created["metadata"]["uid"].is_string());
    // Written in process, read over HTTP: one store.
    let read = http.get(&CONFIGMAPS, Some("default"), "one").await.unwrap();
    assert_eq!(read, created);

    for (client, label) in [(&local, "in process"), (&http, "over HTTP")] {
        let err = client
            .create(&CONFIGMAPS, Some("default"), &cm)
            .await
            .expect_err(label);
        assert_eq!(
            (err.code(), err.reason()),
            (Some(409), Some("AlreadyExists")),
            "{label}"
        );
        let err = client
            .get(&CONFIGMAPS, Some("default"), "missing")
            .await
            .expect_err(label);
        assert_eq!(
            (err.code(), err.reason()),
            (Some(404), Some("NotFound")),
            "{label}"
        );
    }
    let url = server.url();
    let stranger = Client::in_process(&url, "wrong-token", server.in_process()).unwrap();
    let err = stranger
        .get(&CONFIGMAPS, Some("default"), "one")
        .await
        .expect_err("bad token");
    assert_eq!(err.code(), Some(401));

    // The watch streamed the create.
    let mut seen = None;
    while seen.is_none() {
        match tokio::time::timeout(TIMEOUT, events.next())
            .await
            .expect("a watch event")
        {
            Some(Ok(ketch_client::Event::Added(cm))) => seen = Some(cm),
            Some(Ok(_)) => {}
            other => panic!("watch: {other:?}"),
        }
    }
    assert_eq!(seen.unwrap().metadata.name(), "one");
    server.stop().await.unwrap();
}
