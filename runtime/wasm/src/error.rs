//! Error types: what a load can fail with ([`WasmError`]) and what a request can fail with
//! ([`InvokeError`]). wasmtime's own error type never crosses this crate's API.

use std::fmt;

/// Loading a component or configuring an engine or handler failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WasmError {
    /// The bytes are not a valid WebAssembly component (or failed to compile).
    #[error("invalid wasm component: {0}")]
    InvalidComponent(String),
    /// A valid component that does not export `wasi:http/incoming-handler`.
    #[error(
        "component does not export wasi:http/incoming-handler@0.2 (it is not an HTTP handler; \
         build it for the wasi:http/proxy world): {0}"
    )]
    NotHttpComponent(String),
    /// The component imports something this host does not provide.
    #[error("component imports an interface this node does not provide: {0}")]
    UnsupportedImport(String),
    /// The component is larger than [`crate::MAX_COMPONENT_BYTES`].
    #[error("component is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        /// Size of the input.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The given digest is malformed or does not match the bytes.
    #[error("digest {given:?}: {reason}")]
    Digest {
        /// The digest the caller gave.
        given: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Compiling took longer than [`crate::EngineConfig::compile_timeout`].
    #[error("compiling the component took longer than {0:?}")]
    CompileTimeout(std::time::Duration),
    /// An engine or handler setting is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// Reading the component or the artifact cache failed.
    #[error("{context}")]
    Io {
        /// What was being done, including the path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// [`crate::EngineConfig::outbound_ca_file`] cannot be used.
    #[error("outbound CA file {}: {reason}", path.display())]
    OutboundCaFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it (unreadable, no certificate, an invalid one).
        reason: String,
    },
    /// wasmtime failed in a way not covered above (engine creation, a panicked task).
    #[error("wasm engine: {0}")]
    Engine(String),
}

/// A request could not be answered by the guest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvokeError {
    /// The handler's `max_concurrency` (or the engine's instance pool) is exhausted; the request
    /// was not started. Retry later or elsewhere.
    #[error("too many concurrent requests for this handler")]
    Overloaded,
    /// The request ran past its `request_timeout` and was interrupted.
    #[error("request exceeded its time budget")]
    Timeout,
    /// The guest tried to grow its memory past the instance's limit and was trapped.
    #[error("guest exceeded its memory limit of {limit} bytes")]
    MemoryLimit {
        /// The limit in bytes.
        limit: u64,
    },
    /// The guest trapped (a panic, `unreachable`, a host-call failure, ...).
    #[error("guest trapped: {0}")]
    Trap(String),
    /// The guest answered with a `wasi:http` error code instead of a response.
    #[error("guest returned an error instead of a response: {0}")]
    Guest(String),
    /// The guest returned without setting a response.
    #[error("guest returned without sending a response")]
    NoResponse,
    /// The request could not be handed to the guest (e.g. a malformed header).
    #[error("bad request: {0}")]
    BadRequest(String),
}

/// An error while streaming a body (either direction).
#[derive(Debug)]
pub struct BodyError(pub(crate) String);

impl BodyError {
    /// A body error with this message.
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BodyError {}
