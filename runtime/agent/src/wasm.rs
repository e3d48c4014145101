//! [`WasmRuntime`]: the [`WorkloadRuntime`] for `wasi:http` components, on ketch-wasm. One
//! [`Engine`] per agent (precompiled cache under `<data_dir>/wasm-cache`, pooling sized from
//! the node's instance budget and memory). A Wasm "container" is a request handler: it has no
//! process, starts in microseconds once compiled, and never exits by itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use http_body_util::BodyExt as _;
use ketch_wasm::{
    AppConfig, BodyError, Engine, EngineConfig, Handler, InvokeError, KeyValueScope, KeyValueStore,
    LogSink, OutboundBody, OutboundResolver, Resolution, Stream, WasmError,
};
use sync_wrapper::SyncWrapper;

use ketch_api::format;
use ketch_oci::PullPolicy;
use ketch_oci::wasm::WasmStore;
use ketch_workload::{
    InvokeFailure, OutputSink, OutputStream, ServiceCaller, StartError, StartReason, Started,
    Workload, WorkloadExit, WorkloadRuntime, WorkloadSpec,
};

/// Per-request budget when `ketch.dev/request-timeout` is not set.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs Wasm components in-process.
pub struct WasmRuntime {
    engine: Engine,
    /// The node's wasi:keyvalue data (one redb file, opened on first use), scoped per app.
    key_value: KeyValueStore,
    /// Components pulled from OCI registries; `None`: registry references are refused.
    store: Option<Arc<WasmStore>>,
    /// Canonical directories `file:` images may be read from (the node's
    /// `--allow-file-images`); any other path is refused before it is opened.
    file_image_dirs: Vec<PathBuf>,
}

impl std::fmt::Debug for WasmRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmRuntime")
            .field("engine", &self.engine)
            .finish()
    }
}

/// The largest memory one instance may have: a quarter of the node, between 64 MiB and the
/// 4 GiB a 32-bit linear memory can address. `resources.limits.memory` may only lower it.
pub fn max_memory_per_instance(node_memory: u64) -> u64 {
    (node_memory / 4).clamp(64 << 20, 4 << 30)
}

impl WasmRuntime {
    /// Creates the node's engine from `config`, its wasi:keyvalue data in `key_value_file`;
    /// `file:` images are read only from under `file_image_dirs` (canonical paths).
    ///
    /// # Errors
    /// The engine refused the settings (e.g. the pool's address space cannot be reserved),
    /// or `config.outbound_ca_file` is unreadable or holds no valid certificate.
    pub fn new(
        config: EngineConfig,
        key_value_file: PathBuf,
        file_image_dirs: Vec<PathBuf>,
    ) -> Result<Self, WasmError> {
        Ok(Self {
            engine: Engine::new(config)?,
            key_value: KeyValueStore::new(key_value_file),
            store: None,
            file_image_dirs,
        })
    }

    /// Pulls registry references into `store` (shared with the agent, which also asks it
    /// what a reference is before choosing a runtime).
    #[must_use]
    pub fn with_store(mut self, store: Arc<WasmStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// A registry reference made present on disk per the container's `imagePullPolicy`:
    /// the component's path and digest, the status `imageID`, and what the `Pulled` Event
    /// says about the pull.
    async fn pull(&self, spec: &WorkloadSpec, image: &str) -> Result<Pulled, StartError> {
        let pull_err = |message: String| StartError {
            reason: StartReason::ErrImagePull,
            message,
        };
        let Some(store) = &self.store else {
            return Err(pull_err(format!(
                "not supported yet: pulling Wasm images from OCI registries in this runtime \
                 (no image store): {image}"
            )));
        };
        let policy = PullPolicy::of(spec.definition.image_pull_policy.as_deref(), image);
        let t0 = Instant::now();
        let local = store
            .ensure(image, policy, &spec.progress)
            .await
            .map_err(|e| pull_err(e.to_string()))?;
        let name = ketch_oci::wasm::parse_reference(image)
            .map(|r| format!("{}/{}", r.registry(), r.repository()))
            .unwrap_or_else(|_| image.to_string());
        let pulled = if !local.pulled {
            format!("Container image \"{image}\" already present on machine")
        } else if local.fetched == 0 {
            format!(
                "Successfully pulled image \"{image}\" in {} (component {} already on this node)",
                format::duration(t0.elapsed()),
                local.digest
            )
        } else {
            format!(
                "Successfully pulled image \"{image}\" in {} ({} bytes, {})",
                format::duration(t0.elapsed()),
                local.fetched,
                local.manifest_digest
            )
        };
        Ok(Pulled {
            image_id: format!("{name}@{}", local.manifest_digest),
            path: local.path,
            digest: local.digest,
            detail: pulled,
        })
    }
}

/// A registry image made present by [`WasmRuntime::pull`].
struct Pulled {
    path: PathBuf,
    digest: String,
    image_id: String,
    detail: String,
}

/// Where a Wasm image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WasmSource {
    /// A local file (relative paths resolve against the agent's current dir).
    File(PathBuf),
    /// An OCI reference: a CNCF Wasm artifact in a registry.
    Oci(String),
}

/// `file:/abs.wasm`, `file:./rel.wasm`, a bare path ending in `.wasm` → a file; anything else
/// is an OCI reference.
pub fn parse_image(image: &str) -> WasmSource {
    if let Some(path) = image.strip_prefix("file://") {
        return WasmSource::File(PathBuf::from(path));
    }
    if let Some(path) = image.strip_prefix("file:") {
        return WasmSource::File(PathBuf::from(path));
    }
    let looks_like_path =
        image.starts_with('/') || image.starts_with("./") || image.starts_with("../");
    if looks_like_path || image.ends_with(".wasm") {
        return WasmSource::File(PathBuf::from(image));
    }
    WasmSource::Oci(image.to_string())
}

fn start_error(e: WasmError) -> StartError {
    let reason = match &e {
        WasmError::InvalidComponent(_) | WasmError::TooLarge { .. } | WasmError::Digest { .. } => {
            StartReason::InvalidComponent
        }
        WasmError::NotHttpComponent(_) | WasmError::UnsupportedImport(_) => {
            StartReason::NotHttpComponent
        }
        WasmError::Io { .. } => StartReason::ErrImagePull,
        _ => StartReason::CreateContainerError,
    };
    StartError {
        reason,
        message: e.to_string(),
    }
}

impl WorkloadRuntime for WasmRuntime {
    fn name(&self) -> &str {
        "wasm"
    }

    fn start(&self, spec: WorkloadSpec) -> BoxFuture<'_, Result<Started, StartError>> {
        async move {
            let (path, pulled) = match parse_image(&spec.image) {
                WasmSource::Oci(r) => {
                    let p = self.pull(&spec, &r).await?;
                    (p.path.clone(), Some(p))
                }
                WasmSource::File(p) => (self.allowed_file(&spec.image, &p)?, None),
            };
            let digest = pulled.as_ref().map(|p| p.digest.as_str());
            let t0 = Instant::now();
            // With the digest, a component compiled before is loaded from the cache without
            // reading its bytes.
            let app = self
                .engine
                .load_file(&path, digest)
                .await
                .map_err(start_error)?;
            let took = t0.elapsed();
            let how = if app.compiled() { "compiled" } else { "cached" };
            let handler = app
                .handler(AppConfig {
                    env: spec.env.clone(),
                    memory_limit: spec.memory_limit,
                    request_timeout: spec.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT),
                    max_concurrency: spec.max_concurrency,
                    allowed_outbound_hosts: spec.allowed_outbound_hosts.clone(),
                    outbound_resolver: spec.services.clone().map(|services| {
                        Arc::new(ClusterResolver {
                            services,
                            namespace: spec.namespace.clone(),
                        }) as Arc<dyn OutboundResolver>
                    }),
                    log_sink: Some(Arc::new(SinkAdapter(spec.output.clone()))),
                    key_value: Some(KeyValueScope {
                        store: self.key_value.clone(),
                        app: spec.app.clone(),
                    }),
                })
                .map_err(|e| StartError {
                    reason: StartReason::CreateContainerError,
                    message: e.to_string(),
                })?;
            let digest = app.digest().to_string();
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let loaded = format!(
                "Loaded Wasm component sha256:{digest} in {:.1}ms ({how})",
                took.as_secs_f64() * 1000.0
            );
            Ok(Started {
                image_id: pulled
                    .as_ref()
                    .map_or_else(|| format!("sha256:{digest}"), |p| p.image_id.clone()),
                container_id: format!(
                    "wasm://{}/{}",
                    &digest[..12.min(digest.len())],
                    spec.pod_uid
                ),
                detail: match &pulled {
                    Some(p) => format!("{}; {loaded}", p.detail),
                    None => loaded,
                },
                adopted: false,
                workload: Arc::new(WasmWorkload {
                    handler,
                    request_timeout: spec.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT),
                    stop_tx,
                    stop_rx,
                }),
            })
        }
        .boxed()
    }

    /// A registry reference this node has pulled before (its record in the Wasm store).
    fn has_image<'a>(&'a self, image: &'a str) -> BoxFuture<'a, bool> {
        let has = self
            .store
            .as_ref()
            .is_some_and(|s| s.local(image).is_some());
        futures_util::future::ready(has).boxed()
    }
}

impl WasmRuntime {
    /// The canonical path of a `file:` image, when it is a file under one of the node's
    /// allowed directories. Whether it is missing or only not allowed is not told apart: a
    /// Pod must not learn which paths exist on the node.
    fn allowed_file(&self, image: &str, p: &Path) -> Result<PathBuf, StartError> {
        let path = absolute(p);
        let allowed = std::fs::canonicalize(&path)
            .ok()
            .filter(|c| c.is_file() && self.file_image_dirs.iter().any(|d| c.starts_with(d)));
        allowed.ok_or_else(|| StartError {
            reason: StartReason::ErrImagePull,
            message: format!(
                "image {image:?}: {} is not a file under a directory this node allows file: \
                 images from ({}); nothing was read",
                path.display(),
                if self.file_image_dirs.is_empty() {
                    "none: see --allow-file-images".to_string()
                } else {
                    self.file_image_dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        })
    }
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

/// Sends a guest's requests for in-cluster names (`http://svc.ns/…`) to the node's gateway
/// dispatcher, before the allow-list sees them: a Service of the cluster needs no
/// `allowed-outbound-hosts` entry, and nothing leaves the process for a local endpoint.
struct ClusterResolver {
    services: Arc<dyn ServiceCaller>,
    namespace: String,
}

fn to_outbound(b: Body) -> OutboundBody {
    b.map_err(|e| BodyError::new(e.to_string())).boxed_unsync()
}

impl OutboundResolver for ClusterResolver {
    fn resolve(
        &self,
        req: http::Request<OutboundBody>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Resolution> + Send>> {
        let Some(host) = req.uri().authority().map(|a| a.as_str().to_string()) else {
            return Box::pin(futures_util::future::ready(Resolution::Pass(req)));
        };
        let req = req.map(Body::new);
        match self.services.clone().call(&self.namespace, &host, req) {
            Ok(fut) => Box::pin(fut.map(|resp| Resolution::Respond(resp.map(to_outbound)))),
            Err(req) => Box::pin(futures_util::future::ready(Resolution::Pass(
                (*req).map(to_outbound),
            ))),
        }
    }
}

struct SinkAdapter(Arc<dyn OutputSink>);

impl LogSink for SinkAdapter {
    fn write(&self, stream: Stream, bytes: &[u8]) {
        let s = match stream {
            Stream::Stdout => OutputStream::Stdout,
            Stream::Stderr => OutputStream::Stderr,
        };
        self.0.write(s, bytes);
    }
}

struct WasmWorkload {
    handler: Handler,
    request_timeout: Duration,
    stop_tx: tokio::sync::watch::Sender<bool>,
    stop_rx: tokio::sync::watch::Receiver<bool>,
}

/// axum's body is `Send` but not `Sync`; ketch-wasm wants `Sync` bodies. Only `poll_frame`
/// (which has `&mut`) is forwarded, which is what [`SyncWrapper`] allows.
struct SyncBody(SyncWrapper<Body>);

impl http_body::Body for SyncBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        std::pin::Pin::new(self.get_mut().0.get_mut()).poll_frame(cx)
    }
}

impl Workload for WasmWorkload {
    fn invoke(
        &self,
        req: http::Request<Body>,
    ) -> BoxFuture<'_, Result<http::Response<Body>, InvokeFailure>> {
        async move {
            if *self.stop_rx.borrow() {
                return Err(InvokeFailure::Overloaded);
            }
            let req = req.map(|b| SyncBody(SyncWrapper::new(b)));
            match self.handler.handle(req).await {
                Ok(resp) => Ok(resp.map(Body::new)),
                Err(e) => Err(match e {
                    InvokeError::Overloaded => InvokeFailure::Overloaded,
                    InvokeError::Timeout => InvokeFailure::Timeout {
                        budget: self.request_timeout,
                    },
                    InvokeError::MemoryLimit { limit } => InvokeFailure::MemoryLimit { limit },
                    InvokeError::Trap(m) => InvokeFailure::Trap(m),
                    InvokeError::Guest(m) => InvokeFailure::Guest(m),
                    InvokeError::NoResponse => InvokeFailure::NoResponse,
                    InvokeError::BadRequest(m) => InvokeFailure::BadRequest(m),
                    other => InvokeFailure::Trap(other.to_string()),
                }),
            }
        }
        .boxed()
    }

    fn exited(&self) -> BoxFuture<'static, WorkloadExit> {
        // A handler has no process to exit: stays pending (the worker drops it on stop).
        futures_util::future::pending().boxed()
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        let _ = self.stop_tx.send(true);
        futures_util::future::ready(()).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_select_files_or_oci_references() {
        assert_eq!(
            parse_image("file:/a/b.wasm"),
            WasmSource::File("/a/b.wasm".into())
        );
        assert_eq!(
            parse_image("file:./b.wasm"),
            WasmSource::File("./b.wasm".into())
        );
        assert_eq!(parse_image("app.wasm"), WasmSource::File("app.wasm".into()));
        assert_eq!(
            parse_image("ghcr.io/x/app:1.0"),
            WasmSource::Oci("ghcr.io/x/app:1.0".into())
        );
    }

    #[test]
    fn instance_memory_is_a_quarter_of_the_node_within_bounds() {
        assert_eq!(max_memory_per_instance(1 << 30), 256 << 20);
        assert_eq!(max_memory_per_instance(100 << 20), 64 << 20);
        assert_eq!(max_memory_per_instance(64 << 30), 4 << 30);
    }
}
