//! The Node object and the heartbeats: registration (create or update), the leader's
//! in-memory heartbeat at the interval it asks for, the `kube-node-lease` Lease renewed
//! every [`HEARTBEAT`], and the Ready condition's `lastHeartbeatTime`. Marking a silent node
//! not Ready is the node lifecycle controller's job
//! (`ketch_control::controllers::node_lifecycle`): this side only keeps proving it is alive.

use std::collections::BTreeMap;
use std::time::Duration;

use ketch_api::Quantity;
use ketch_api::coordination::{Lease, LeaseSpec};
use ketch_api::core::{
    Namespace, Node, NodeAddress, NodeCondition, NodeRuntimeHandler, NodeStatus, NodeSystemInfo,
};
use ketch_api::meta::ObjectMeta;
use ketch_api::time::{now, now_micro};
use ketch_api::wellknown;
use ketch_client::Client;
use serde_json::json;

/// Lease renewal and Ready heartbeat period.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// `leaseDurationSeconds`: four missed renewals.
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// Namespace of node leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Pods a node accepts beyond its Wasm instance budget (for containers and idle apps).
const EXTRA_PODS: u32 = 100;
/// Version of wasmtime the agent embeds (kept with the workspace pin).
pub const WASMTIME_VERSION: &str = "48.0.10";

/// What the agent reports about its machine.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub endpoint: String,
    /// The gateway URL (`ketch.dev/gateway-endpoint`), when the node runs one.
    pub gateway_endpoint: Option<String>,
    /// The gateway's peer listener, for other nodes' gateways.
    pub gateway_peer_endpoint: Option<String>,
    pub internal_ip: String,
    pub hostname: String,
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    pub max_wasm_instances: u32,
    pub kernel: String,
    pub runtime_handlers: Vec<String>,
}

/// CPU as a Quantity: whole cores when exact (`"2"`), else millicores (`"2500m"`).
pub fn cpu_quantity(millis: i64) -> Quantity {
    if millis % 1000 == 0 {
        Quantity::new((millis / 1000).to_string())
    } else {
        Quantity::new(format!("{millis}m"))
    }
}

/// Logical CPUs × 1000.
pub fn detect_cpu_millis() -> i64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as i64 * 1000)
        .unwrap_or(1000)
}

/// `MemTotal` from `/proc/meminfo` in bytes (1 GiB when unreadable).
pub fn detect_memory_bytes() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| parse_meminfo(&s))
        .unwrap_or(1 << 30)
}

fn parse_meminfo(s: &str) -> Option<i64> {
    let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn detect_kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub fn detect_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The Node's metadata labels and annotations.
pub fn node_metadata(f: &NodeFacts) -> ObjectMeta {
    let mut labels = f.labels.clone();
    labels.insert("kubernetes.io/hostname".into(), f.name.clone());
    labels.insert("kubernetes.io/os".into(), "linux".into());
    labels.insert("kubernetes.io/arch".into(), arch().into());
    ObjectMeta {
        name: Some(f.name.clone()),
        labels,
        annotations: BTreeMap::from_iter(
            std::iter::once((wellknown::AGENT_ENDPOINT.to_string(), f.endpoint.clone()))
                .chain(
                    f.gateway_endpoint
                        .clone()
                        .map(|g| (wellknown::GATEWAY_ENDPOINT.to_string(), g)),
                )
                .chain(
                    f.gateway_peer_endpoint
                        .clone()
                        .map(|g| (wellknown::GATEWAY_PEER_ENDPOINT.to_string(), g)),
                ),
        ),
        ..ObjectMeta::default()
    }
}

/// The Node's status at registration.
pub fn node_status(f: &NodeFacts) -> NodeStatus {
    let mut res = BTreeMap::new();
    res.insert("cpu".to_string(), cpu_quantity(f.cpu_millis));
    res.insert(
        "memory".to_string(),
        Quantity::new(f.memory_bytes.to_string()),
    );
    res.insert(
        "pods".to_string(),
        Quantity::new((u64::from(f.max_wasm_instances) + u64::from(EXTRA_PODS)).to_string()),
    );
    res.insert(
        wellknown::WASM_INSTANCES.to_string(),
        Quantity::new(f.max_wasm_instances.to_string()),
    );
    let t = now();
    NodeStatus {
        capacity: res.clone(),
        allocatable: res,
        conditions: vec![ready_condition(&t, &t)],
        addresses: vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: f.internal_ip.clone(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: f.hostname.clone(),
            },
        ],
        node_info: Some(NodeSystemInfo {
            machine_id: String::new(),
            kernel_version: f.kernel.clone(),
            os_image: String::new(),
            architecture: arch().into(),
            operating_system: "linux".into(),
            container_runtime_version: format!("wasmtime-{WASMTIME_VERSION}"),
            kubelet_version: format!("ketch-{}", env!("CARGO_PKG_VERSION")),
        }),
        runtime_handlers: f
            .runtime_handlers
            .iter()
            .map(|n| NodeRuntimeHandler {
                name: n.clone(),
                features: None,
            })
            .collect(),
    }
}

fn ready_condition(heartbeat: &str, transition: &str) -> NodeCondition {
    NodeCondition {
        type_: "Ready".into(),
        status: "True".into(),
        last_heartbeat_time: Some(heartbeat.into()),
        last_transition_time: Some(transition.into()),
        reason: Some("KetchAgentReady".into()),
        message: Some("ketch agent is posting ready status".into()),
    }
}

/// Creates the Node, or updates labels, annotations and status when it exists.
///
/// # Errors
/// The API refused a write.
pub async fn register(client: &Client, facts: &NodeFacts) -> Result<(), ketch_client::Error> {
    let api = client.api::<Node>(None);
    let meta = node_metadata(facts);
    match api.get(&facts.name).await {
        Ok(_) => {
            let patch =
                json!({"metadata": {"labels": meta.labels, "annotations": meta.annotations}});
            api.merge_patch(&facts.name, &patch, false).await?;
        }
        Err(e) if e.code() == Some(404) => {
            let node = Node {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                metadata: meta,
                ..Node::default()
            };
            match api.create(&node).await {
                Ok(_) => {}
                Err(e) if e.code() == Some(409) => {}
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    }
    let status = node_status(facts);
    api.merge_patch(&facts.name, &json!({"status": status}), true)
        .await?;
    Ok(())
}

/// Makes sure the lease namespace exists (409 means it does). Read first: the server
/// creates it with the cluster, and a node's credential may read namespaces but not create
/// them (the Node authorizer); only a server older than that needs the create.
///
/// # Errors
/// The API refused the read or the create for another reason.
pub async fn ensure_lease_namespace(client: &Client) -> Result<(), ketch_client::Error> {
    match client.api::<Namespace>(None).get(LEASE_NAMESPACE).await {
        Ok(_) => return Ok(()),
        Err(e) if e.code() == Some(404) => {}
        Err(e) => return Err(e),
    }
    let ns = Namespace {
        api_version: Some("v1".into()),
        kind: Some("Namespace".into()),
        metadata: ObjectMeta {
            name: Some(LEASE_NAMESPACE.into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    match client.api::<Namespace>(None).create(&ns).await {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(409) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Renews (or creates) the node's Lease.
///
/// # Errors
/// The API refused the write.
pub async fn renew_lease(client: &Client, node: &str) -> Result<(), ketch_client::Error> {
    let api = client.api::<Lease>(Some(LEASE_NAMESPACE));
    let t = now_micro();
    match api
        .merge_patch(
            node,
            &json!({"spec": {"renewTime": t, "holderIdentity": node}}),
            false,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(404) => {
            let lease = Lease {
                api_version: Some("coordination.k8s.io/v1".into()),
                kind: Some("Lease".into()),
                metadata: ObjectMeta {
                    name: Some(node.into()),
                    namespace: Some(LEASE_NAMESPACE.into()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(node.into()),
                    lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
                    acquire_time: Some(t.clone()),
                    renew_time: Some(t),
                    lease_transitions: Some(0),
                }),
            };
            match api.create(&lease).await {
                Ok(_) => Ok(()),
                Err(e) if e.code() == Some(409) => Ok(()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Refreshes the Ready condition's heartbeat (keeping its transition time).
///
/// # Errors
/// The API refused the write.
pub async fn heartbeat(
    client: &Client,
    node: &str,
    ready_since: &str,
) -> Result<(), ketch_client::Error> {
    let cond = ready_condition(&now(), ready_since);
    client
        .api::<Node>(None)
        .merge_patch(node, &json!({"status": {"conditions": [cond]}}), true)
        .await
        .map(|_| ())
}

/// Bounds on the heartbeat interval a server may hand out, so a bad answer neither floods
/// it nor makes the node look dead.
const BEAT_BOUNDS: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(60));

/// The heartbeat loop, until `stop`: a heartbeat to the leader (`POST /heartbeat/{node}`,
/// kept in its memory) at the interval it answers, which is how a dead node is found in
/// seconds; and every [`HEARTBEAT`] the Lease and the Ready condition (what Kubernetes
/// tools read, and what a server without heartbeats goes by).
pub async fn heartbeat_loop(
    client: Client,
    node: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let ready_since = now();
    let start = tokio::time::Instant::now();
    let (mut next_beat, mut next_status) = (start, start);
    let mut beat_every = Duration::from_secs(1);
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next_beat.min(next_status)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now_i = tokio::time::Instant::now();
        if now_i >= next_beat {
            match client.node_heartbeat(&node).await {
                Ok(answer) => {
                    beat_every = Duration::from_millis(answer.interval_millis)
                        .clamp(BEAT_BOUNDS.0, BEAT_BOUNDS.1);
                }
                // A server that predates heartbeats: the Lease is all it reads.
                Err(e) if e.code() == Some(404) => beat_every = HEARTBEAT,
                Err(e) => tracing::warn!(error = %e, "sending the node heartbeat"),
            }
            next_beat = now_i + beat_every;
        }
        if now_i >= next_status {
            if let Err(e) = renew_lease(&client, &node).await {
                tracing::warn!(error = %e, "renewing the node lease");
            }
            if let Err(e) = heartbeat(&client, &node, &ready_since).await {
                tracing::warn!(error = %e, "updating the node's Ready condition");
            }
            next_status = now_i + HEARTBEAT;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_whole_cores_when_exact_and_millicores_otherwise() {
        assert_eq!(cpu_quantity(2000).0, "2");
        assert_eq!(cpu_quantity(2500).0, "2500m");
    }

    #[test]
    fn meminfo_total_is_read_in_bytes() {
        let s = "MemTotal:       16384 kB\nMemFree: 1 kB\n";
        assert_eq!(parse_meminfo(s), Some(16384 * 1024));
        assert_eq!(parse_meminfo("nothing"), None);
    }

    #[test]
    fn the_node_advertises_capacity_runtimes_and_its_endpoint() {
        let facts = NodeFacts {
            name: "n1".into(),
            labels: BTreeMap::from([("zone".to_string(), "a".to_string())]),
            endpoint: "http://127.0.0.1:1234".into(),
            gateway_endpoint: Some("http://127.0.0.1:8080".into()),
            gateway_peer_endpoint: Some("https://127.0.0.1:10251".into()),
            internal_ip: "127.0.0.1".into(),
            hostname: "box".into(),
            cpu_millis: 2000,
            memory_bytes: 1 << 30,
            max_wasm_instances: 1000,
            kernel: "6.1".into(),
            runtime_handlers: vec!["wasm".into()],
        };
        let meta = node_metadata(&facts);
        assert_eq!(meta.labels["kubernetes.io/hostname"], "n1");
        assert_eq!(meta.labels["zone"], "a");
        assert_eq!(
            meta.annotations[wellknown::AGENT_ENDPOINT],
            "http://127.0.0.1:1234"
        );
        let st = node_status(&facts);
        assert_eq!(st.capacity["cpu"].0, "2");
        assert_eq!(st.allocatable["pods"].0, "1100");
        assert_eq!(st.capacity[wellknown::WASM_INSTANCES].0, "1000");
        assert_eq!(st.runtime_handlers[0].name, "wasm");
        assert_eq!(st.conditions[0].status, "True");
        let info = st.node_info.unwrap();
        assert_eq!(info.container_runtime_version, "wasmtime-48.0.10");
        assert!(info.kubelet_version.starts_with("ketch-"));
    }
}
