//! Retrying a request on another endpoint, and keeping dead peers out of the rotation.
//!
//! Between a node's death and the control plane noticing it (a few seconds, see the node
//! lifecycle controller), its endpoints are still Ready in every route table. A request
//! picked for one of them fails; this module decides whether the gateway may send it to the
//! next endpoint instead, so that in that window only requests already in flight on the
//! dead node fail.
//!
//! A request is tried again only when doing so cannot run it twice, or when running it twice
//! is harmless:
//! - it never reached a backend (the connection to the peer gateway was refused or timed
//!   out; the Pod was no longer on its node, not running, or at its concurrency limit), or
//! - its method is idempotent and safe to repeat (`GET`, `HEAD`, `OPTIONS`);
//!
//! and, in both cases, its body can be sent again: what an attempt read of it is kept, up to
//! [`REPLAY_LIMIT`] ([`BodySlot`]). At most [`MAX_ATTEMPTS`] endpoints are tried, each once, all within the
//! gateway's one deadline.
//!
//! A peer gateway that refused a connection is *ejected* for [`EJECT_FOR`]: the picks skip
//! its endpoints (unless nothing else is left), so a dead node costs one failed connect per
//! gateway and period instead of one per request.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::Method;
use http_body::{Frame, SizeHint};

/// Endpoints tried for one request, the first included.
pub const MAX_ATTEMPTS: usize = 3;

/// How long a peer gateway that refused a connection is left out of the picks.
pub const EJECT_FOR: Duration = Duration::from_secs(2);

/// Whether a failed attempt may be made again on another endpoint: see the module docs.
/// `delivered`: the request may have reached a backend; `replayable`: its body can be sent
/// whole again ([`BodySlot::replayable`]).
pub fn may_retry(method: &Method, delivered: bool, replayable: bool) -> bool {
    replayable && (!delivered || is_idempotent(method))
}

/// Methods a client expects may be repeated (RFC 9110 §9.2.2 lists PUT and DELETE too, but
/// an app's handlers of those are not safe to run twice as often as the RFC hopes).
fn is_idempotent(method: &Method) -> bool {
    *method == Method::GET || *method == Method::HEAD || *method == Method::OPTIONS
}

/// The most of a request body kept for sending it again: Envoy's default buffer limit. A
/// request whose body is longer is not retried once its body has started to go out.
pub const REPLAY_LIMIT: usize = 1 << 20;

/// A request body shared by the attempts to send it: each attempt's body first replays what
/// earlier attempts read (kept as reference-counted [`Bytes`], not copied), then reads on from
/// the client. An attempt that ends early puts the unread rest back.
#[derive(Clone)]
pub struct BodySlot {
    shared: Arc<Mutex<Shared>>,
    /// The client body's, for every attempt: each sends the whole body.
    hint: SizeHint,
    end: bool,
}

#[derive(Default)]
struct Shared {
    /// What no attempt has read yet; `None` while an attempt reads it or once it is done.
    rest: Option<Body>,
    /// Frames read so far, in order, while they fit in [`REPLAY_LIMIT`].
    read: Vec<Recorded>,
    read_bytes: usize,
    /// More than [`REPLAY_LIMIT`] was read: the body cannot be sent again.
    overflowed: bool,
}

#[derive(Clone)]
enum Recorded {
    Data(Bytes),
    Trailers(http::HeaderMap),
}

impl Recorded {
    fn frame(&self) -> Frame<Bytes> {
        match self {
            Recorded::Data(b) => Frame::data(b.clone()),
            Recorded::Trailers(t) => Frame::trailers(t.clone()),
        }
    }
}

impl BodySlot {
    pub fn new(body: Body) -> Self {
        let hint = http_body::Body::size_hint(&body);
        let end = http_body::Body::is_end_stream(&body);
        Self {
            shared: Arc::new(Mutex::new(Shared {
                rest: Some(body),
                ..Shared::default()
            })),
            hint,
            end,
        }
    }

    /// The whole body again, for one attempt.
    pub fn body(&self) -> Body {
        Body::new(AttemptBody {
            slot: self.clone(),
            replayed: 0,
            yielded: 0,
            reading: None,
        })
    }

    /// Another attempt can send the whole body (none has read more than [`REPLAY_LIMIT`]).
    pub fn replayable(&self) -> bool {
        !self.lock().overflowed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct AttemptBody {
    slot: BodySlot,
    /// How many of the recorded frames this attempt has sent.
    replayed: usize,
    yielded: u64,
    /// The client body while this attempt reads it.
    reading: Option<Body>,
}

impl Drop for AttemptBody {
    fn drop(&mut self) {
        if let Some(rest) = self.reading.take() {
            self.slot.lock().rest = Some(rest);
        }
    }
}

impl http_body::Body for AttemptBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if this.reading.is_none() {
            let mut shared = this.slot.lock();
            if let Some(r) = shared.read.get(this.replayed) {
                let frame = r.frame();
                this.replayed += 1;
                if let Some(d) = frame.data_ref() {
                    this.yielded += d.len() as u64;
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            match shared.rest.take() {
                Some(rest) => this.reading = Some(rest),
                // Read to its end by an earlier attempt, and replayed whole.
                None => return Poll::Ready(None),
            }
        }
        let Some(reading) = this.reading.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(reading).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let mut shared = this.slot.lock();
                if let Some(d) = frame.data_ref() {
                    this.yielded += d.len() as u64;
                }
                if !shared.overflowed {
                    let recorded = match frame.data_ref() {
                        Some(d) => Some((Recorded::Data(d.clone()), d.len())),
                        None => frame
                            .trailers_ref()
                            .map(|t| (Recorded::Trailers(t.clone()), 0)),
                    };
                    if let Some((r, len)) = recorded {
                        shared.read_bytes += len;
                        if shared.read_bytes > REPLAY_LIMIT {
                            shared.overflowed = true;
                            shared.read = Vec::new();
                        } else {
                            shared.read.push(r);
                            this.replayed = shared.read.len();
                        }
                    }
                }
            }
            Poll::Ready(None) => this.reading = None,
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.reading {
            Some(b) => b.is_end_stream(),
            None => self.slot.end && self.yielded == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.slot.hint.exact() {
            Some(n) => SizeHint::with_exact(n.saturating_sub(self.yielded)),
            None => self.slot.hint,
        }
    }
}

/// Peer gateways that refused a connection, until when. Checked on every pick, so the
/// common case (nobody ejected) is one atomic load.
#[derive(Debug, Default)]
pub struct Ejections {
    count: AtomicUsize,
    until: RwLock<HashMap<Arc<str>, Instant>>,
}

impl Ejections {
    /// Leaves `gateway` out until `now + EJECT_FOR`.
    pub fn eject(&self, gateway: &Arc<str>, now: Instant) {
        let mut map = self.until.write().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, until| *until > now);
        map.insert(gateway.clone(), now + EJECT_FOR);
        self.count.store(map.len(), Ordering::Relaxed);
    }

    /// Whether `gateway` is left out at `now`.
    pub fn is_ejected(&self, gateway: &str, now: Instant) -> bool {
        if self.count.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let until = self
            .until
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(gateway)
            .copied();
        match until {
            Some(until) if until > now => true,
            Some(_) => {
                // Expired: forget it, so that once all have expired picks are back to one
                // atomic load.
                let mut map = self.until.write().unwrap_or_else(|p| p.into_inner());
                map.retain(|_, until| *until > now);
                self.count.store(map.len(), Ordering::Relaxed);
                false
            }
            None => false,
        }
    }

    /// Something is ejected (perhaps expired): picks must check.
    pub fn any(&self) -> bool {
        self.count.load(Ordering::Relaxed) != 0
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;

    #[test]
    fn only_undelivered_or_idempotent_requests_with_whole_bodies_are_retried() {
        // Never reached a backend: any method.
        assert!(may_retry(&Method::POST, false, true));
        assert!(may_retry(&Method::GET, false, true));
        // Reached one (or may have): only what is safe to repeat.
        assert!(may_retry(&Method::GET, true, true));
        assert!(may_retry(&Method::HEAD, true, true));
        assert!(may_retry(&Method::OPTIONS, true, true));
        assert!(!may_retry(&Method::POST, true, true));
        assert!(!may_retry(&Method::PUT, true, true));
        assert!(!may_retry(&Method::DELETE, true, true));
        assert!(!may_retry(&Method::PATCH, true, true));
        // A body that cannot be sent again whole stops it.
        assert!(!may_retry(&Method::GET, false, false));
        assert!(!may_retry(&Method::POST, false, false));
    }

    /// Reads up to `frames` frames of `body` (all with `None`), as an attempt that fails
    /// part way would, and drops it.
    async fn read(body: Body, frames: Option<usize>) -> Vec<u8> {
        let mut body = body;
        let mut out = Vec::new();
        let mut n = 0;
        while frames.is_none_or(|max| n < max) {
            let Some(frame) = body.frame().await else {
                break;
            };
            if let Ok(d) = frame.unwrap().into_data() {
                out.extend_from_slice(&d);
            }
            n += 1;
        }
        out
    }

    fn streamed(chunks: &[&'static str]) -> Body {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
            .collect();
        Body::new(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )))
    }

    #[tokio::test]
    async fn every_attempt_sends_the_whole_body() {
        let slot = BodySlot::new(streamed(&["one ", "two ", "three"]));
        // An attempt that fails before reading.
        drop(slot.body());
        // One that fails after the first chunk.
        assert_eq!(read(slot.body(), Some(1)).await, b"one ");
        assert!(slot.replayable());
        // One that reads it all, then fails.
        assert_eq!(read(slot.body(), None).await, b"one two three");
        // And the last: the whole body once more, from what was kept.
        assert_eq!(read(slot.body(), None).await, b"one two three");
        assert!(slot.replayable());
    }

    #[tokio::test]
    async fn a_body_over_the_limit_cannot_be_sent_again() {
        let big = Bytes::from(vec![7u8; REPLAY_LIMIT + 1]);
        let slot = BodySlot::new(Body::from(big));
        assert_eq!(
            http_body::Body::size_hint(&slot.body()).exact(),
            Some(REPLAY_LIMIT as u64 + 1)
        );
        drop(slot.body());
        assert!(slot.replayable(), "nothing read yet");
        assert_eq!(read(slot.body(), None).await.len(), REPLAY_LIMIT + 1);
        assert!(!slot.replayable());
    }

    #[tokio::test]
    async fn an_empty_body_stays_empty() {
        let slot = BodySlot::new(Body::empty());
        let b = slot.body();
        assert!(http_body::Body::is_end_stream(&b));
        assert!(read(b, None).await.is_empty());
        assert!(read(slot.body(), None).await.is_empty());
        assert!(slot.replayable());
    }

    #[test]
    fn a_refusing_gateway_is_left_out_for_a_while() {
        let e = Ejections::default();
        let t0 = Instant::now();
        let gw: Arc<str> = Arc::from("http://10.0.0.2:8080");
        assert!(!e.any());
        assert!(!e.is_ejected(&gw, t0));
        e.eject(&gw, t0);
        assert!(e.any());
        assert!(e.is_ejected(&gw, t0 + Duration::from_secs(1)));
        assert!(!e.is_ejected("http://10.0.0.3:8080", t0));
        let other: Arc<str> = Arc::from("http://10.0.0.3:8080");
        e.eject(&other, t0 + Duration::from_secs(1));
        // Expired entries are forgotten when seen.
        assert!(!e.is_ejected(&gw, t0 + EJECT_FOR));
        assert!(e.any(), "the other one is still out");
        assert!(!e.is_ejected(&other, t0 + EJECT_FOR * 2));
        assert!(!e.any());
    }
}
