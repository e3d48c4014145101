//! `ketch-workload` is the contract between ketch's node agent and the runtimes that run its
//! containers. The agent knows Pods, not engines: a [`WorkloadRuntime`] turns a
//! [`WorkloadSpec`] into a running [`Workload`], and nothing here names a wasmtime or
//! containerd type (the Wasm runtime is in `ketch-agent` on `ketch-wasm`, the Linux-container
//! one is `ketch-containers`).
//!
//! It also holds what the agent, its HTTP endpoint and the gateway share about the Pods
//! running on a node: the [`PodRegistry`] (which workload serves which Pod, and
//! [`PodRegistry::invoke`], the in-process request path) and its errors' HTTP mapping
//! ([`PodError`]). The gateway holds the registry, never the agent: nothing points back.
//!
//! With the `fake` feature, [`fake::FakeRuntime`] records what it was asked to do and lets a
//! test decide how each start ends and when each workload exits.

#[cfg(feature = "fake")]
pub mod fake;
mod network;
mod registry;
pub mod wire;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use futures_util::future::BoxFuture;
use ketch_api::format;

pub use network::Attachment;
pub use registry::{FailureObserver, PodEntry, PodError, PodKey, PodRegistry};

/// Which output stream a guest or process wrote to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

impl OutputStream {
    /// The CRI log spelling: `stdout` / `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        }
    }
}

/// Receives a workload's stdout/stderr.
///
/// # Invariants for implementors
///
/// Called synchronously on the workload's execution path: never block (buffer or drop).
pub trait OutputSink: Send + Sync + 'static {
    fn write(&self, stream: OutputStream, bytes: &[u8]);
}

/// Everything a runtime needs to start one container of a Pod; references (ConfigMaps,
/// Secrets, field refs) are already resolved.
#[derive(Clone)]
pub struct WorkloadSpec {
    pub namespace: String,
    pub pod_name: String,
    pub pod_uid: String,
    pub container: String,
    /// The image as written in the Pod (`file:/abs.wasm`, `./x.wasm`, `registry/app:tag`).
    pub image: String,
    /// Which workload the Pod belongs to ([`workload_identity`]): the scope of its
    /// wasi:keyvalue data.
    pub app: String,
    /// The container's whole environment.
    pub env: Vec<(String, String)>,
    /// `resources.limits.memory` in bytes.
    pub memory_limit: Option<u64>,
    /// `ketch.dev/request-timeout`.
    pub request_timeout: Option<Duration>,
    /// `ketch.dev/max-concurrency`.
    pub max_concurrency: Option<usize>,
    /// `ketch.dev/allowed-outbound-hosts`.
    pub allowed_outbound_hosts: Vec<String>,
    pub output: Arc<dyn OutputSink>,
    /// Serves the workload's calls to in-cluster Service names (`http://svc.ns`).
    pub services: Option<Arc<dyn ServiceCaller>>,
    /// The container as declared in the Pod (command, args, ports, securityContext, pull
    /// policy, limits): a Linux container needs all of it.
    pub definition: Arc<ketch_api::core::Container>,
    /// The Pod's spec (pod-level securityContext, termination grace period).
    pub pod_spec: Arc<ketch_api::core::PodSpec>,
    /// The Pod's network namespace and address (Linux-container Pods).
    pub network: Option<Attachment>,
    /// Receives progress worth an Event (`Pulling image ...`).
    pub progress: Arc<dyn Fn(String) + Send + Sync>,
}

/// The workload a Pod belongs to, `<namespace>/<Kind>/<name>`: the scope of its
/// wasi:keyvalue data on a node. Read from the Pod's controller ownerReference, so every Pod
/// of a Deployment — across rollouts, which make new ReplicaSets, and the replacement of a
/// deleted Pod — gets the same identity, and two workloads never share data because they
/// carry the same `app` label. A ReplicaSet a Deployment made (`<deployment>-<hash>`, its
/// Pods labelled `pod-template-hash: <hash>`) stands for its Deployment; a Pod without a
/// controller is its own workload (`<namespace>/Pod/<name>`).
///
/// Any Pod that can be created in the namespace can name any controller there, as it can
/// mount any Secret there: the namespace is the boundary, as in Kubernetes.
pub fn workload_identity(
    namespace: &str,
    meta: &ketch_api::meta::ObjectMeta,
    pod_name: &str,
) -> String {
    let controller = meta
        .owner_references
        .iter()
        .find(|o| o.controller == Some(true) && !o.kind.is_empty() && !o.name.is_empty());
    let Some(owner) = controller else {
        return format!("{namespace}/Pod/{pod_name}");
    };
    let deployment = (owner.kind == "ReplicaSet")
        .then(|| meta.labels.get("pod-template-hash"))
        .flatten()
        .and_then(|hash| owner.name.strip_suffix(hash.as_str()))
        .and_then(|prefix| prefix.strip_suffix('-'))
        .filter(|name| !name.is_empty());
    match deployment {
        Some(name) => format!("{namespace}/Deployment/{name}"),
        None => format!("{namespace}/{}/{}", owner.kind, owner.name),
    }
}

/// The port a request is for (the Service's target port), set by the gateway as a request
/// extension: a Linux container serves on its own ports, a Wasm component ignores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetPort(pub u16);

/// Calls in-cluster Services on behalf of a workload (the gateway's dispatcher implements it).
pub trait ServiceCaller: Send + Sync + 'static {
    /// The response of one of the Service's Ready endpoints, or the gateway's error response
    /// (503 when none is Ready, 404 for a `*.svc.cluster.local` name that does not exist).
    ///
    /// # Errors
    /// Gives `req` back when `host` (port allowed) is not an in-cluster name as seen from
    /// `from_namespace`: the caller's own outbound policy decides then.
    fn call(
        self: Arc<Self>,
        from_namespace: &str,
        host: &str,
        req: http::Request<Body>,
    ) -> Result<BoxFuture<'static, http::Response<Body>>, Box<http::Request<Body>>>;
}

impl fmt::Debug for WorkloadSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadSpec")
            .field("namespace", &self.namespace)
            .field("pod_name", &self.pod_name)
            .field("container", &self.container)
            .field("image", &self.image)
            .field("memory_limit", &self.memory_limit)
            .field("request_timeout", &self.request_timeout)
            .field("max_concurrency", &self.max_concurrency)
            .finish_non_exhaustive()
    }
}

/// Why a container could not start; `reason` is the Kubernetes-style waiting reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct StartError {
    pub reason: StartReason,
    pub message: String,
}

/// Waiting reasons a runtime can report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartReason {
    /// The image could not be fetched (missing file, unsupported registry).
    ErrImagePull,
    /// The bytes are not a valid component.
    InvalidComponent,
    /// A valid component that is not a `wasi:http` handler.
    NotHttpComponent,
    /// The container's settings are not acceptable to the runtime (limits out of range, ...).
    CreateContainerError,
    /// The container's configuration references something missing (env sources,
    /// annotations); produced by the agent before the runtime is called.
    CreateContainerConfigError,
}

impl StartReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StartReason::ErrImagePull => "ErrImagePull",
            StartReason::InvalidComponent => "InvalidComponent",
            StartReason::NotHttpComponent => "NotHttpComponent",
            StartReason::CreateContainerError => "CreateContainerError",
            StartReason::CreateContainerConfigError => "CreateContainerConfigError",
        }
    }

    /// Retrying cannot help without a new image: with `restartPolicy: Never` the container
    /// terminates (as a container whose process cannot be exec'd does); otherwise it is
    /// retried with back-off. The other reasons are retried whatever the policy (the pod
    /// stays Pending), as the kubelet does for image pulls and config errors.
    pub fn is_permanent(self) -> bool {
        matches!(
            self,
            StartReason::InvalidComponent | StartReason::NotHttpComponent
        )
    }
}

impl fmt::Display for StartReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A started container.
pub struct Started {
    pub workload: Arc<dyn Workload>,
    /// `sha256:<hex>` of the image content.
    pub image_id: String,
    /// Unique id for status, e.g. `wasm://<digest12>/<pod uid>`.
    pub container_id: String,
    /// For the `Pulled` event, e.g. "Loaded Wasm component sha256:… in 1.2ms (compiled)".
    pub detail: String,
    /// Already running before this agent started (re-adopted, not started again).
    pub adopted: bool,
}

/// How a workload ended by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadExit {
    pub exit_code: i32,
    pub reason: String,
    pub message: Option<String>,
}

/// Why one request failed; maps to an HTTP status in [`PodError`]'s response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeFailure {
    #[error("too many concurrent requests")]
    Overloaded,
    #[error("request exceeded the {} CPU deadline", format::duration(*.budget))]
    Timeout { budget: Duration },
    #[error("request exceeded the memory limit of {}", format::bytes(*.limit))]
    MemoryLimit { limit: u64 },
    #[error("guest trapped: {0}")]
    Trap(String),
    #[error("guest returned an error instead of a response: {0}")]
    Guest(String),
    #[error("guest returned without sending a response")]
    NoResponse,
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("this container does not serve HTTP")]
    NotHttp,
    /// A Linux container that did not accept a connection on its address: the request
    /// never reached it.
    #[error("container not reachable: {0}")]
    Unreachable(String),
    /// The connection to a Linux container failed after it was made: the request may have
    /// reached it.
    #[error("container connection failed: {0}")]
    Disconnected(String),
}

impl InvokeFailure {
    /// Whether the failure is the workload's fault and worth a `RequestFailed` event (not
    /// overload or a malformed request).
    pub fn is_workload_failure(&self) -> bool {
        matches!(
            self,
            InvokeFailure::Timeout { .. }
                | InvokeFailure::MemoryLimit { .. }
                | InvokeFailure::Trap(_)
                | InvokeFailure::Guest(_)
                | InvokeFailure::NoResponse
        )
    }
}

/// One running container.
pub trait Workload: Send + Sync {
    /// Serves one HTTP request, bodies streaming both ways.
    ///
    /// # Errors
    /// [`InvokeFailure`]; one failed request never stops the workload.
    fn invoke(
        &self,
        req: http::Request<Body>,
    ) -> BoxFuture<'_, Result<http::Response<Body>, InvokeFailure>>;

    /// Resolves when the workload exits by itself (never, for request-driven Wasm).
    fn exited(&self) -> BoxFuture<'static, WorkloadExit>;

    /// Stops the workload; in-flight requests may finish.
    fn stop(&self) -> BoxFuture<'_, ()>;
}

/// Starts workloads of one kind (Wasm, Linux containers).
pub trait WorkloadRuntime: Send + Sync {
    /// `wasm`, `container`: the Node's runtime handler name.
    fn name(&self) -> &str;

    /// Starts one container, or adopts it when the runtime still runs it from before an
    /// agent restart ([`Started::adopted`]).
    ///
    /// # Errors
    /// [`StartError`] with the waiting reason to report.
    fn start(&self, spec: WorkloadSpec) -> BoxFuture<'_, Result<Started, StartError>>;

    /// Whether this node already holds `image` for this runtime (a pulled Wasm artifact, an
    /// unpacked container image): how the agent tells what a registry reference is without
    /// asking the registry, unless the Pod says `imagePullPolicy: Always`.
    fn has_image<'a>(&'a self, image: &'a str) -> BoxFuture<'a, bool> {
        let _ = image;
        Box::pin(async { false })
    }

    /// Removes what the runtime still runs for Pods that are not in `live` (uids): called
    /// once the agent knows the Pods bound to it, after a restart.
    fn reap<'a>(&'a self, live: &'a std::collections::HashSet<String>) -> BoxFuture<'a, ()> {
        let _ = live;
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {

    use super::workload_identity;
    use ketch_api::meta::ObjectMeta;
    use serde_json::json;

    #[test]
    fn a_pods_workload_is_its_controller_and_a_deployments_replica_sets_are_the_deployment() {
        let meta = |v: serde_json::Value| -> ObjectMeta { serde_json::from_value(v).unwrap() };
        let rs = |name: &str, hash: &str| {
            meta(json!({
                "labels": {"app": "counter", "pod-template-hash": hash},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": name, "uid": "u1", "controller": true}],
            }))
        };
        // Two rollouts of one Deployment share data; the app label plays no part.
        assert_eq!(
            workload_identity("ns", &rs("counter-7d9f", "7d9f"), "p"),
            "ns/Deployment/counter"
        );
        assert_eq!(
            workload_identity("ns", &rs("counter-55aa", "55aa"), "p"),
            "ns/Deployment/counter"
        );
        // A ReplicaSet of its own (no matching hash) is itself the workload.
        assert_eq!(
            workload_identity("ns", &rs("plain", "7d9f"), "p"),
            "ns/ReplicaSet/plain"
        );
        let job = meta(json!({"ownerReferences": [
            {"kind": "Job", "name": "backup", "uid": "u2", "controller": true},
        ]}));
        assert_eq!(workload_identity("ns", &job, "p"), "ns/Job/backup");
        // Same label, no controller: each Pod keeps its own data.
        let bare = meta(json!({"labels": {"app": "counter"}, "ownerReferences": [
            {"kind": "ConfigMap", "name": "x", "uid": "u3"},
        ]}));
        assert_eq!(workload_identity("ns", &bare, "p-1"), "ns/Pod/p-1");
    }
}
