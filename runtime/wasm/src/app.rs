//! [`App`] (a loaded component), [`AppConfig`] and [`Handler`] (one per Pod), and the
//! per-request invoke path.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::ResourceTable;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView as _};

use crate::engine::Engine;
use crate::error::{BodyError, InvokeError, WasmError};
use crate::host::{HostState, LogSink, MemoryLimiter, SinkStream, Stream};
use crate::keyvalue::KeyValueScope;
use crate::outbound::{OutboundHooks, OutboundPolicy, OutboundResolver};

/// Body of a guest's response: streamed while the guest writes it.
pub type ResponseBody = UnsyncBoxBody<Bytes, BodyError>;

/// A validated, compiled component, shared by every load of the same digest.
pub(crate) struct Loaded {
    pub(crate) digest: String,
    pub(crate) proxy_pre: ProxyPre<HostState>,
    /// Compiled from bytes (not read from the on-disk cache).
    pub(crate) compiled: bool,
}

/// One loaded `wasi:http` component. Cheap to clone; share it between the Pods of an app.
#[derive(Clone)]
pub struct App {
    engine: Engine,
    loaded: Arc<Loaded>,
    /// This load compiled the component (see [`App::compiled`]).
    compiled_here: bool,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("digest", &self.loaded.digest)
            .finish_non_exhaustive()
    }
}

/// Per-Pod settings for a [`Handler`]. Everything not granted here is denied.
#[derive(Clone)]
pub struct AppConfig {
    /// The guest's whole environment (nothing is inherited from the node).
    pub env: Vec<(String, String)>,
    /// Linear-memory cap per instance in bytes; `None` means the engine's
    /// `max_memory_per_instance`, which is also the upper bound.
    pub memory_limit: Option<u64>,
    /// Wall-clock budget of one request, from its start until the guest returns (including
    /// streaming the response body). Busy guests are interrupted at the next epoch tick after
    /// it; guests waiting on I/O are dropped at it.
    pub request_timeout: Duration,
    /// Requests in flight at once; one more fails fast with [`InvokeError::Overloaded`] (the
    /// gateway decides whether to queue or retry). `None`: the engine's
    /// [`crate::EngineConfig::default_max_concurrency`]; at most its
    /// [`crate::EngineConfig::max_concurrency_cap`].
    pub max_concurrency: Option<usize>,
    /// Hosts the guest may send HTTP requests to: `api.example.com` (default port of the
    /// scheme), `*.example.com` (subdomains), `host:8080`, `host:*`, or `*` (anything).
    pub allowed_outbound_hosts: Vec<String>,
    /// Sees every outbound request before the allow-list (e.g. in-cluster service names).
    pub outbound_resolver: Option<Arc<dyn OutboundResolver>>,
    /// Receives guest stdout/stderr; `None` discards them.
    pub log_sink: Option<Arc<dyn LogSink>>,
    /// The app's `wasi:keyvalue` data; `None`: opening a bucket fails with an error saying
    /// key-value is not available.
    pub key_value: Option<KeyValueScope>,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            env: Vec::new(),
            memory_limit: None,
            request_timeout: Duration::from_secs(30),
            max_concurrency: None,
            allowed_outbound_hosts: Vec::new(),
            outbound_resolver: None,
            log_sink: None,
            key_value: None,
        }
    }
}

impl std::fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppConfig")
            .field("env", &self.env)
            .field("memory_limit", &self.memory_limit)
            .field("request_timeout", &self.request_timeout)
            .field("max_concurrency", &self.max_concurrency)
            .field("allowed_outbound_hosts", &self.allowed_outbound_hosts)
            .field("outbound_resolver", &self.outbound_resolver.is_some())
            .field("log_sink", &self.log_sink.is_some())
            .field("key_value", &self.key_value.as_ref().map(|k| &k.app))
            .finish()
    }
}

impl App {
    pub(crate) fn new(engine: Engine, loaded: Arc<Loaded>, compiled_here: bool) -> Self {
        Self {
            engine,
            loaded,
            compiled_here,
        }
    }

    /// Whether the load that returned this app compiled the component; `false` when it came
    /// from the in-memory map or the on-disk cache, or another load of the same digest that
    /// ran at the same time compiled it. Exact per load, unlike [`Engine::stats`] deltas.
    pub fn compiled(&self) -> bool {
        self.compiled_here
    }

    /// The component's content digest (lowercase sha256 hex).
    pub fn digest(&self) -> &str {
        &self.loaded.digest
    }

    /// A request handler for one Pod of this app.
    ///
    /// # Errors
    ///
    /// [`WasmError::InvalidConfig`] when `memory_limit` exceeds the engine's
    /// `max_memory_per_instance`, `request_timeout` or `max_concurrency` is zero,
    /// `max_concurrency` exceeds the engine's `max_concurrency_cap`, or an
    /// `allowed_outbound_hosts` entry is malformed (the message names the index).
    pub fn handler(&self, config: AppConfig) -> Result<Handler, WasmError> {
        let engine_max = self.engine.inner.config.max_memory_per_instance;
        let memory_limit = match config.memory_limit {
            Some(m) if m > engine_max => {
                return Err(WasmError::InvalidConfig(format!(
                    "memory_limit {m} exceeds the node's max_memory_per_instance {engine_max}"
                )));
            }
            Some(m) => m,
            None => engine_max,
        };
        if config.request_timeout.is_zero() {
            return Err(WasmError::InvalidConfig(
                "request_timeout must be > 0".into(),
            ));
        }
        let engine_config = &self.engine.inner.config;
        let cap = engine_config.max_concurrency_cap as usize;
        let max_concurrency = match config.max_concurrency {
            Some(0) => {
                return Err(WasmError::InvalidConfig(
                    "max_concurrency must be > 0".into(),
                ));
            }
            Some(n) if n > cap => {
                return Err(WasmError::InvalidConfig(format!(
                    "max_concurrency {n} exceeds the node's cap of {cap} requests in flight \
                     per Pod (half its {} instance slots)",
                    engine_config.max_instances
                )));
            }
            Some(n) => n,
            // Unset: a share of the node's pool, never all of it.
            None => engine_config.default_max_concurrency as usize,
        };
        let semaphore = Arc::new(Semaphore::new(max_concurrency));
        let outbound = Arc::new(OutboundPolicy::new(
            &config.allowed_outbound_hosts,
            config.outbound_resolver.clone(),
            self.engine.inner.outbound_tls.clone(),
            self.engine.inner.config.egress.clone(),
        )?);
        Ok(Handler {
            inner: Arc::new(HandlerInner {
                app: self.clone(),
                env: config.env,
                memory_limit,
                request_timeout: config.request_timeout,
                semaphore,
                outbound,
                log_sink: config.log_sink,
                key_value: config.key_value.map(Arc::new),
            }),
        })
    }
}

/// Serves requests for one Pod: a fresh instance per request. Cheap to clone.
#[derive(Clone)]
pub struct Handler {
    inner: Arc<HandlerInner>,
}

struct HandlerInner {
    app: App,
    env: Vec<(String, String)>,
    memory_limit: u64,
    request_timeout: Duration,
    semaphore: Arc<Semaphore>,
    outbound: Arc<OutboundPolicy>,
    log_sink: Option<Arc<dyn LogSink>>,
    key_value: Option<Arc<KeyValueScope>>,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("app", &self.inner.app)
            .field("memory_limit", &self.inner.memory_limit)
            .field("request_timeout", &self.inner.request_timeout)
            .finish_non_exhaustive()
    }
}

/// The epoch callback's error when a request's budget is spent.
#[derive(Debug)]
struct DeadlineExceeded;

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// One request's guest: instantiate, call the handler, classify the outcome.
type GuestFuture = Pin<Box<dyn Future<Output = Result<(), InvokeError>> + Send>>;

impl Handler {
    /// Runs one request in a fresh instance and returns the guest's response as soon as the
    /// guest sets it; the body streams while the guest keeps writing. The request body
    /// streams into the guest as it reads it.
    ///
    /// The guest runs inside the returned future, on the caller's task, until its response
    /// head is set: no task spawn or thread hop for a guest that answers at once. If it is
    /// still running then (streaming a body, or doing work after responding), it moves to
    /// a task of its own and runs until it returns or the request budget is spent, whether
    /// or not the body is read. Dropping the future before the head arrives drops the guest.
    ///
    /// A request without an authority in its URI or a `Host` header is given
    /// `Host: localhost`.
    ///
    /// # Errors
    ///
    /// [`InvokeError::Overloaded`] (not started), [`InvokeError::Timeout`],
    /// [`InvokeError::MemoryLimit`], [`InvokeError::Trap`], [`InvokeError::Guest`] (an error
    /// code instead of a response), [`InvokeError::NoResponse`], [`InvokeError::BadRequest`].
    /// A failure after the response head was sent surfaces as an error in the body stream.
    /// None of them affects other requests or handlers.
    pub async fn handle<B>(
        &self,
        mut req: http::Request<B>,
    ) -> Result<http::Response<ResponseBody>, InvokeError>
    where
        B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: std::fmt::Display,
    {
        let permit: OwnedSemaphorePermit = self
            .inner
            .semaphore
            .clone()
            .try_acquire_owned()
            .map_err(|_| InvokeError::Overloaded)?;
        let started = Instant::now();
        let deadline = started + self.inner.request_timeout;
        let mut store = self.new_store(deadline);

        if req.uri().authority().is_none() && !req.headers().contains_key(http::header::HOST) {
            req.headers_mut().insert(
                http::header::HOST,
                http::HeaderValue::from_static("localhost"),
            );
        }
        let scheme = if req.uri().scheme() == Some(&http::uri::Scheme::HTTPS) {
            Scheme::Https
        } else {
            Scheme::Http
        };
        let req = req.map(|body| {
            body.map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(e.to_string())))
        });

        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let pre = self.inner.app.loaded.proxy_pre.clone();
        let memory_limit = self.inner.memory_limit;
        let guest: GuestFuture = Box::pin(async move {
            let _permit = permit; // held until the guest returns, body streaming included
            let run = async {
                let req = store.data_mut().http().new_incoming_request(scheme, req)?;
                let out = store.data_mut().http().new_response_outparam(tx)?;
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            };
            let result = tokio::time::timeout_at(deadline.into(), run).await;
            match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(classify(&e, store.data(), memory_limit)),
                Err(_) => Err(InvokeError::Timeout),
            }
        });

        // The guest runs inside this future (no task of its own) until its response head
        // is known: no task spawn and no cross-thread wake-up per request. Dropping this
        // future (the caller went away) drops the guest. A guest only ends (and drops the
        // outparam, resolving `rx`) once its store is dropped, so once it has returned
        // `rx` is ready on the same poll.
        let mut guest = Some(guest);
        let mut finished = None;
        let head = std::future::poll_fn(|cx| {
            if let Some(g) = guest.as_mut()
                && let Poll::Ready(result) = g.as_mut().poll(cx)
            {
                guest = None;
                finished = Some(result);
            }
            Pin::new(&mut rx).poll(cx)
        })
        .await;

        match head {
            Ok(Ok(resp)) => {
                if let Some(guest) = guest {
                    // Still writing its body (or doing other work): give it its own task,
                    // so it keeps running, and its deadline keeps being enforced, whether
                    // or not the caller reads the body.
                    tokio::spawn(async move {
                        if let Err(e) = guest.await {
                            tracing::debug!(error = %e, "guest failed after sending its response head");
                        }
                    });
                } else if let Some(Err(e)) = finished {
                    tracing::debug!(error = %e, "guest failed after sending its response head");
                }
                Ok(resp.map(|body| body.map_err(|e| BodyError(e.to_string())).boxed_unsync()))
            }
            Ok(Err(code)) => Err(InvokeError::Guest(format!("{code:?}"))),
            // The guest dropped the outparam: it returned, trapped or timed out (or dropped
            // it and is still running: then wait for the outcome).
            Err(_) => {
                let result = match (finished, guest) {
                    (Some(result), _) => result,
                    (None, Some(guest)) => guest.await,
                    (None, None) => Ok(()),
                };
                match result {
                    Err(e) => Err(e),
                    Ok(()) => Err(InvokeError::NoResponse),
                }
            }
        }
    }

    fn new_store(&self, deadline: Instant) -> Store<HostState> {
        let inner = &self.inner;
        // Deny by default: no preopens, no args, no inherited env, no sockets, no name lookup;
        // stdin is empty. Only the configured env and the log sinks.
        let mut wasi = WasiCtx::builder();
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .stdout(SinkStream {
                sink: inner.log_sink.clone(),
                stream: Stream::Stdout,
            })
            .stderr(SinkStream {
                sink: inner.log_sink.clone(),
                stream: Stream::Stderr,
            });
        for (k, v) in &inner.env {
            wasi.env(k, v);
        }
        let state = HostState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: OutboundHooks {
                policy: inner.outbound.clone(),
            },
            limiter: MemoryLimiter {
                limit: inner.memory_limit,
                hit: false,
            },
            key_value: inner.key_value.clone(),
        };
        let mut store = Store::new(&inner.app.engine.inner.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Yield to tokio at every tick until the budget is spent, then trap: with a plain
        // `epoch_deadline_trap` a looping guest would hold its worker thread until killed.
        // `tokio::task::yield_now` (not wasmtime's self-waking `Yield`) lets tokio poll its
        // timer and I/O driver before resuming the guest; otherwise a busy guest delays
        // every timer on its worker by up to 61 ticks (tokio's event interval).
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(wasmtime::Error::new(DeadlineExceeded))
            } else {
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                ))
            }
        });
        store.set_epoch_deadline(1);
        store
    }
}

fn classify(e: &wasmtime::Error, state: &HostState, memory_limit: u64) -> InvokeError {
    if state.limiter.hit {
        return InvokeError::MemoryLimit {
            limit: memory_limit,
        };
    }
    if e.chain().any(|c| c.is::<DeadlineExceeded>()) {
        return InvokeError::Timeout;
    }
    if e.chain()
        .any(|c| c.is::<wasmtime::PoolConcurrencyLimitError>())
    {
        return InvokeError::Overloaded;
    }
    InvokeError::Trap(format!("{e:#}"))
}
