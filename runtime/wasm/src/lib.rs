//! `ketch-wasm` is ketch's WebAssembly runtime: wasmtime only, no control plane. It loads
//! `wasi:http` components (compiling each once and caching the artifact on disk, keyed by
//! content digest and engine compatibility hash), and serves HTTP requests with a fresh,
//! resource-limited instance per request: a memory cap per instance, a per-request deadline
//! enforced by epoch interruption, a concurrency bound per handler, deny-by-default WASI
//! (no files, sockets, inherited env or args) and an allow-list for outbound HTTP and HTTPS
//! (rustls, verified against the platform's roots plus an optional CA file per node). Guests may
//! import `wasi:keyvalue` (store, atomics, batch): per-app data in a redb file on the node
//! ([`KeyValueStore`], granted per handler with [`AppConfig::key_value`]).
//!
//! The node agent drives it through its own workload-runtime trait; nothing here knows about
//! Pods or the API. The shape, from node start to a response:
//!
//! 1. [`Engine::new`] once per node (pooling allocator, epoch ticker thread);
//! 2. [`Engine::load`] / [`Engine::load_file`] per app: validates and compiles or loads the
//!    component, returning an [`App`] shared by every Pod of that app;
//! 3. [`App::handler`] per Pod with its [`AppConfig`] (env, limits, outbound policy, logs);
//! 4. [`Handler::handle`] per request, streaming bodies both ways.

mod app;
mod egress;
mod engine;
mod error;
mod host;
mod keyvalue;
mod outbound;
mod tls;

pub use app::{App, AppConfig, Handler, ResponseBody};
pub use egress::EgressPolicy;
pub use engine::{Engine, EngineConfig, EngineStats, MAX_COMPONENT_BYTES};
pub use error::{BodyError, InvokeError, WasmError};
pub use host::{LogSink, Stream};
pub use keyvalue::{
    KeyValueScope, KeyValueStore, LIST_KEYS_PAGE, MAX_BATCH_KEYS, MAX_BUCKET_NAME_BYTES,
    MAX_KEY_BYTES, MAX_VALUE_BYTES,
};
pub use outbound::{OutboundBody, OutboundResolver, Resolution};
