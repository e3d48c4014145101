//! What every listener of ketch bounds (the API server, the agent endpoint, the gateway's
//! listeners): how many connections it holds, how long a client may take to send a request's
//! head, and how long an HTTP/2 peer may stay silent. The anchors are Go's `net/http`
//! (`ReadHeaderTimeout`, `IdleTimeout`), which the Kubernetes API server is built on, and
//! netutil's `LimitListener`.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A request's head must arrive within this much of the connection becoming ready for it —
/// also between requests on a kept-alive HTTP/1 connection, so an idle one closes too.
/// Our own clients drop pooled connections sooner ([`CLIENT_POOL_IDLE`]).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How long ketch's own clients keep an idle pooled connection: well under
/// [`HEADER_READ_TIMEOUT`], so a request never goes out on a connection the server is closing.
pub const CLIENT_POOL_IDLE: Duration = Duration::from_secs(30);
/// An HTTP/2 peer is pinged this often when quiet, and dropped when a ping goes unanswered
/// for as long.
pub const H2_KEEPALIVE: Duration = Duration::from_secs(20);

/// One listener's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Connections open at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// See [`HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
}

impl ListenerLimits {
    /// The API server: clients, agents (one watch connection or two each) and peers.
    pub const API: Self = Self::with_connections(4096);
    /// A node agent's endpoint: only the API servers call it (logs, `pods/proxy`).
    pub const AGENT: Self = Self::with_connections(1024);
    /// A gateway listener: the apps' own traffic.
    pub const GATEWAY: Self = Self::with_connections(16_384);

    /// [`HEADER_READ_TIMEOUT`] and `max_connections`.
    pub const fn with_connections(max_connections: usize) -> Self {
        Self {
            max_connections,
            header_read_timeout: HEADER_READ_TIMEOUT,
        }
    }

    /// The HTTP/1.1 + HTTP/2 connection builder every listener serves with.
    pub fn http_builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(H2_KEEPALIVE)
            .keep_alive_timeout(H2_KEEPALIVE);
        builder
    }

    /// The connection slots of one listener.
    pub fn slots(&self) -> ConnectionSlots {
        ConnectionSlots {
            slots: Arc::new(Semaphore::new(self.max_connections)),
            max: self.max_connections,
        }
    }
}

/// Counts a listener's open connections: each holds a slot until it ends.
#[derive(Debug, Clone)]
pub struct ConnectionSlots {
    slots: Arc<Semaphore>,
    max: usize,
}

impl ConnectionSlots {
    /// A slot for one more connection, or `None` when all are taken (the caller closes the
    /// connection it just accepted: the client sees a reset at once instead of a hang).
    pub fn take(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.slots.clone().try_acquire_owned().ok();
        if permit.is_none() {
            tracing::debug!(
                max = self.max,
                "connection limit reached: closing a new connection"
            );
        }
        permit
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.max - self.slots.available_permits()
    }
}
