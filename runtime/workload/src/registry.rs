//! The Pods running on this node, as the agent's HTTP endpoint and the gateway reach them:
//! each Pod's workloads by `(namespace, name)`, published by the Pod's worker whenever one
//! starts or stops, and the in-process request path to them ([`PodRegistry::invoke`]).
//!
//! The gateway holds an `Arc<PodRegistry>`, not the agent: the agent owns the registry, its
//! workers write it, and requests read it (one read lock, no copy of the entry, on the
//! gateway's hot path).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::wire::{plain, status_json, unavailable};
use crate::{InvokeFailure, Workload};

/// `(namespace, name)` of a Pod.
pub type PodKey = (String, String);

/// What the endpoint and the gateway need of a Pod on this node.
#[derive(Clone)]
pub struct PodEntry {
    pub uid: String,
    /// The directory of its containers' log files.
    pub log_dir: PathBuf,
    /// Containers in spec order, with their workload while running.
    pub containers: Vec<(String, Option<Arc<dyn Workload>>)>,
}

impl PodEntry {
    /// The Pod's first running workload: the one requests go to.
    pub fn serving(&self) -> Option<&Arc<dyn Workload>> {
        self.containers.iter().find_map(|(_, w)| w.as_ref())
    }
}

/// Told about each request a workload failed by its own fault
/// ([`InvokeFailure::is_workload_failure`]), with the Pod and its uid: the agent records a
/// `RequestFailed` Event.
pub type FailureObserver = Arc<dyn Fn(&PodKey, &str, &InvokeFailure) + Send + Sync>;

/// The Pods of this node and their running workloads.
pub struct PodRegistry {
    pods: RwLock<HashMap<PodKey, PodEntry>>,
    on_failure: Option<FailureObserver>,
}

impl std::fmt::Debug for PodRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodRegistry")
            .field("pods", &self.read().len())
            .finish_non_exhaustive()
    }
}

/// Why a request for a Pod of this node got no response from it.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    /// No such Pod on this node.
    #[error("pods \"{pod}\" not found on this node (namespace {namespace})")]
    NotFound { namespace: String, pod: String },
    /// The Pod has no such container.
    #[error("container \"{container}\" not found in pod {namespace}/{pod}")]
    ContainerNotFound {
        namespace: String,
        pod: String,
        container: String,
    },
    /// The Pod is on this node but none of its containers is running.
    #[error("pod {namespace}/{pod} is not running")]
    NotRunning { namespace: String, pod: String },
    /// The workload failed the request.
    #[error("pod {namespace}/{pod}: {failure}")]
    Invoke {
        namespace: String,
        pod: String,
        failure: InvokeFailure,
    },
}

impl IntoResponse for PodError {
    fn into_response(self) -> Response {
        let msg = self.to_string();
        match &self {
            PodError::NotFound { .. } | PodError::ContainerNotFound { .. } => {
                status_json(StatusCode::NOT_FOUND, "NotFound", msg)
            }
            PodError::NotRunning { .. } => unavailable(msg),
            PodError::Invoke { failure, .. } => match failure {
                InvokeFailure::Timeout { .. } => plain(StatusCode::GATEWAY_TIMEOUT, msg),
                InvokeFailure::Overloaded => unavailable(msg),
                InvokeFailure::MemoryLimit { .. } | InvokeFailure::Trap(_) => {
                    plain(StatusCode::INTERNAL_SERVER_ERROR, msg)
                }
                InvokeFailure::Guest(_)
                | InvokeFailure::NoResponse
                | InvokeFailure::Unreachable(_)
                | InvokeFailure::Disconnected(_) => plain(StatusCode::BAD_GATEWAY, msg),
                InvokeFailure::BadRequest(_) => plain(StatusCode::BAD_REQUEST, msg),
                InvokeFailure::NotHttp => plain(StatusCode::NOT_IMPLEMENTED, msg),
            },
        }
    }
}

impl PodError {
    /// The request never reached the workload (no such Pod here, not running, at its
    /// concurrency limit, or refusing connections), so another endpoint may serve it
    /// whatever its method.
    pub fn not_delivered(&self) -> bool {
        matches!(
            self,
            PodError::NotFound { .. }
                | PodError::NotRunning { .. }
                | PodError::Invoke {
                    failure: InvokeFailure::Overloaded | InvokeFailure::Unreachable(_),
                    ..
                }
        )
    }
}

impl PodRegistry {
    /// An empty registry; `on_failure` hears of the workloads' failed requests.
    pub fn new(on_failure: Option<FailureObserver>) -> Self {
        Self {
            pods: RwLock::new(HashMap::new()),
            on_failure,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<PodKey, PodEntry>> {
        self.pods.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<PodKey, PodEntry>> {
        self.pods.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `entry` what requests for `key` see.
    pub fn publish(&self, key: PodKey, entry: PodEntry) {
        self.write().insert(key, entry);
    }

    /// Forgets `key` if it is still the Pod with `uid` (a Pod recreated under the same name
    /// keeps its new entry).
    pub fn remove(&self, key: &PodKey, uid: &str) {
        let mut pods = self.write();
        if pods.get(key).is_some_and(|e| e.uid == uid) {
            pods.remove(key);
        }
    }

    /// A copy of the Pod's entry.
    pub fn lookup(&self, namespace: &str, pod: &str) -> Option<PodEntry> {
        self.read()
            .get(&(namespace.to_string(), pod.to_string()))
            .cloned()
    }

    /// The workload serving a Pod, without copying its entry: the gateway's per-request
    /// lookup.
    pub fn workload(&self, key: &PodKey) -> Option<Arc<dyn Workload>> {
        self.read().get(key)?.serving().cloned()
    }

    /// Serves `req` with the Pod's workload.
    ///
    /// # Errors
    /// [`PodError::NotFound`], [`PodError::NotRunning`], or [`PodError::Invoke`] when the
    /// workload failed the request.
    pub async fn invoke(
        &self,
        namespace: &str,
        pod: &str,
        req: http::Request<Body>,
    ) -> Result<http::Response<Body>, PodError> {
        let entry = self
            .lookup(namespace, pod)
            .ok_or_else(|| PodError::NotFound {
                namespace: namespace.into(),
                pod: pod.into(),
            })?;
        let workload = entry.serving().ok_or_else(|| PodError::NotRunning {
            namespace: namespace.into(),
            pod: pod.into(),
        })?;
        self.invoke_workload(namespace, pod, workload, req).await
    }

    /// Serves `req` with a workload already looked up; tells the failure observer of the
    /// workload's own failures.
    ///
    /// # Errors
    /// [`PodError::Invoke`] with the workload's failure.
    pub async fn invoke_workload(
        &self,
        namespace: &str,
        pod: &str,
        workload: &Arc<dyn Workload>,
        req: http::Request<Body>,
    ) -> Result<http::Response<Body>, PodError> {
        match workload.invoke(req).await {
            Ok(r) => Ok(r),
            Err(failure) => {
                if failure.is_workload_failure()
                    && let Some(observe) = &self.on_failure
                {
                    let key = (namespace.to_string(), pod.to_string());
                    let uid = self.read().get(&key).map(|e| e.uid.clone());
                    if let Some(uid) = uid {
                        observe(&key, &uid, &failure);
                    }
                }
                Err(PodError::Invoke {
                    namespace: namespace.into(),
                    pod: pod.into(),
                    failure,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::header;

    use super::*;

    fn invoke(failure: InvokeFailure) -> Response {
        PodError::Invoke {
            namespace: "default".into(),
            pod: "p".into(),
            failure,
        }
        .into_response()
    }

    #[test]
    fn invoke_failures_map_to_gateway_style_statuses() {
        let r = invoke(InvokeFailure::Timeout {
            budget: Duration::from_secs(30),
        });
        assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
        let r = invoke(InvokeFailure::Overloaded);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.headers().contains_key(header::RETRY_AFTER));
        for (failure, code) in [
            (
                InvokeFailure::MemoryLimit { limit: 64 << 20 },
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (
                InvokeFailure::Trap("unreachable".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (InvokeFailure::Guest("x".into()), StatusCode::BAD_GATEWAY),
            (InvokeFailure::NoResponse, StatusCode::BAD_GATEWAY),
            (
                InvokeFailure::Unreachable("refused".into()),
                StatusCode::BAD_GATEWAY,
            ),
            (
                InvokeFailure::Disconnected("reset".into()),
                StatusCode::BAD_GATEWAY,
            ),
            (
                InvokeFailure::BadRequest("x".into()),
                StatusCode::BAD_REQUEST,
            ),
            (InvokeFailure::NotHttp, StatusCode::NOT_IMPLEMENTED),
        ] {
            assert_eq!(invoke(failure.clone()).status(), code, "{failure:?}");
        }
    }

    #[test]
    fn only_failures_before_the_workload_saw_the_request_are_undelivered() {
        let failed = |failure| PodError::Invoke {
            namespace: "default".into(),
            pod: "web".into(),
            failure,
        };
        assert!(
            PodError::NotFound {
                namespace: "default".into(),
                pod: "web".into()
            }
            .not_delivered()
        );
        assert!(
            PodError::NotRunning {
                namespace: "default".into(),
                pod: "web".into()
            }
            .not_delivered()
        );
        assert!(failed(InvokeFailure::Overloaded).not_delivered());
        assert!(failed(InvokeFailure::Unreachable("refused".into())).not_delivered());
        for f in [
            InvokeFailure::Disconnected("reset".into()),
            InvokeFailure::Trap("unreachable".into()),
            InvokeFailure::Timeout {
                budget: Duration::from_secs(1),
            },
            InvokeFailure::NoResponse,
            InvokeFailure::BadRequest("x".into()),
        ] {
            assert!(!failed(f.clone()).not_delivered(), "{f:?}");
        }
    }

    #[test]
    fn failure_messages_name_the_limit() {
        assert_eq!(
            InvokeFailure::Timeout {
                budget: Duration::from_secs(30)
            }
            .to_string(),
            "request exceeded the 30s CPU deadline"
        );
        assert_eq!(
            InvokeFailure::MemoryLimit { limit: 64 << 20 }.to_string(),
            "request exceeded the memory limit of 64Mi"
        );
    }

    #[test]
    fn unknown_pods_are_a_status_shaped_404_and_stopped_ones_a_503_to_retry() {
        let r = PodError::NotFound {
            namespace: "default".into(),
            pod: "x".into(),
        }
        .into_response();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let r = PodError::NotRunning {
            namespace: "default".into(),
            pod: "x".into(),
        }
        .into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.headers().contains_key(header::RETRY_AFTER));
    }

    #[test]
    fn a_pod_recreated_under_its_name_is_not_removed_by_the_old_one() {
        let reg = PodRegistry::new(None);
        let key = ("ns".to_string(), "p".to_string());
        let entry = |uid: &str| PodEntry {
            uid: uid.into(),
            log_dir: PathBuf::new(),
            containers: vec![("main".into(), None)],
        };
        reg.publish(key.clone(), entry("new"));
        reg.remove(&key, "old");
        assert_eq!(reg.lookup("ns", "p").map(|e| e.uid), Some("new".into()));
        reg.remove(&key, "new");
        assert!(reg.lookup("ns", "p").is_none());
    }
}
