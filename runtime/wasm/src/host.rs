//! Per-request host state: WASI (deny-by-default), wasi:http with ketch's outbound hooks, the
//! memory limiter, and the adapter from guest stdout/stderr to the caller's [`LogSink`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::outbound::OutboundHooks;

/// Which guest output stream a log write came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// `wasi:cli/stdout`.
    Stdout,
    /// `wasi:cli/stderr`.
    Stderr,
}

/// Receives what guests write to stdout and stderr.
///
/// # Invariants for implementors
///
/// `write` is called synchronously from the task running the guest: it must not block for
/// long (append to a buffer or a size-bounded file; drop bytes rather than wait). Bytes arrive
/// in the chunks the guest wrote, not split into lines, and concurrent requests interleave.
pub trait LogSink: Send + Sync + 'static {
    /// Record `bytes` written by the guest to `stream`.
    fn write(&self, stream: Stream, bytes: &[u8]);
}

/// The `T` of every `Store<T>`.
pub(crate) struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) hooks: OutboundHooks,
    pub(crate) limiter: MemoryLimiter,
    /// This app's wasi:keyvalue data; `None`: `open` fails with a clear error.
    pub(crate) key_value: Option<Arc<crate::keyvalue::KeyValueScope>>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Caps each linear memory at `limit` bytes and remembers whether the cap was hit, so that the
/// resulting trap is reported as [`crate::InvokeError::MemoryLimit`] rather than a generic trap.
pub(crate) struct MemoryLimiter {
    pub(crate) limit: u64,
    pub(crate) hit: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.limit {
            // An error (not `Ok(false)`) traps the guest right at the failed grow, like
            // `StoreLimits::trap_on_grow_failure`: a guest cannot swallow the failure and limp on.
            self.hit = true;
            wasmtime::bail!(
                "memory limit of {} bytes exceeded (growing to {desired} bytes)",
                self.limit
            );
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Table sizes are bounded by the pooling allocator's slots.
        Ok(true)
    }
}

/// A guest output stream that forwards to a [`LogSink`] (or discards when there is none).
pub(crate) struct SinkStream {
    pub(crate) sink: Option<Arc<dyn LogSink>>,
    pub(crate) stream: Stream,
}

impl IsTerminal for SinkStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for SinkStream {
    /// The stream a `wasi:cli` guest writes to. Overridden because the default wraps
    /// [`Self::async_stream`] in wasmtime-wasi's `AsyncWriteStream`, which spawns a tokio
    /// task per stream and hands every write to it through channels (two task hops per
    /// `println!`). A [`LogSink`] never blocks, so the write completes synchronously.
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(SinkWriter {
            sink: self.sink.clone(),
            stream: self.stream,
        })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(SinkWriter {
            sink: self.sink.clone(),
            stream: self.stream,
        })
    }
}

/// Budget offered to a guest per `check-write`; a write is at most this long.
const SINK_WRITE_BUDGET: usize = 64 * 1024;

struct SinkWriter {
    sink: Option<Arc<dyn LogSink>>,
    stream: Stream,
}

impl SinkWriter {
    fn write_bytes(&self, bytes: &[u8]) {
        if let Some(sink) = &self.sink {
            sink.write(self.stream, bytes);
        }
    }
}

impl OutputStream for SinkWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(SINK_WRITE_BUDGET)
    }
}

impl Pollable for SinkWriter {
    // The expanded form of `#[async_trait] async fn ready(&mut self) {}`: always ready.
    fn ready<'a, 'b>(&'a mut self) -> Pin<Box<dyn Future<Output = ()> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(std::future::ready(()))
    }
}

impl tokio::io::AsyncWrite for SinkWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
