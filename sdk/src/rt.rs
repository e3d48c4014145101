//! A minimal single-threaded executor for `async` handlers: futures wait on `wasi:io`
//! pollables ([`ready`]), and [`block_on`] blocks in `wasi:io/poll.poll` on all of them at
//! once, so several outbound requests awaited together (e.g. with a `join`) run concurrently.
//! No wasi:io beyond what std already imports, and no async runtime dependency.

use std::cell::RefCell;
use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use wasip2::io::poll::Pollable;

thread_local! {
    /// Pollables the futures polled in this round are waiting on.
    static WAITING: RefCell<Vec<Pollable>> = const { RefCell::new(Vec::new()) };
}

/// Runs `future` to completion on the current (only) thread and returns its output.
///
/// # Panics
/// When the future is pending without waiting on a `wasi:io` pollable through the SDK (for
/// example a channel fed by nothing): it could never finish, so this panics rather than hang
/// until the request deadline.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            WAITING.with(|w| w.borrow_mut().clear());
            return out;
        }
        let waiting = WAITING.with(|w| std::mem::take(&mut *w.borrow_mut()));
        assert!(
            !waiting.is_empty(),
            "ketch_sdk::block_on: the future is pending but waits on no wasi:io pollable \
             (only the SDK's own I/O futures can be awaited in a handler)"
        );
        let refs: Vec<&Pollable> = waiting.iter().collect();
        // Returns when at least one is ready; every future re-checks its own on the next poll.
        wasip2::io::poll::poll(&refs);
    }
}

/// Completes once `pollable` is ready (immediately when it already is).
pub(crate) fn ready(pollable: Pollable) -> Ready {
    Ready {
        pollable: Some(pollable),
    }
}

pub(crate) struct Ready {
    pollable: Option<Pollable>,
}

impl Future for Ready {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        match self.pollable.take() {
            Some(p) if !p.ready() => {
                WAITING.with(|w| w.borrow_mut().push(p));
                Poll::Pending
            }
            // Ready, or polled again after block_on's poll returned: callers loop and
            // re-check their resource, subscribing again if it is still not ready.
            _ => Poll::Ready(()),
        }
    }
}

/// Runs two futures concurrently (on the SDK's executor: e.g. two outbound requests) and
/// returns both outputs. For more, nest it or use a futures crate's `join_all`.
///
/// ```no_run
/// # async fn f() -> Result<(), ketch_sdk::Error> {
/// use ketch_sdk::http::get_async;
/// let (users, orders) = ketch_sdk::join(get_async("http://users/"), get_async("http://orders/")).await;
/// println!("{} {}", users?.status(), orders?.status());
/// # Ok(())
/// # }
/// ```
pub async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut out_a, mut out_b) = (None, None);
    std::future::poll_fn(|cx| {
        if out_a.is_none()
            && let Poll::Ready(v) = a.as_mut().poll(cx)
        {
            out_a = Some(v);
        }
        if out_b.is_none()
            && let Poll::Ready(v) = b.as_mut().poll(cx)
        {
            out_b = Some(v);
        }
        if out_a.is_some() && out_b.is_some() {
            Poll::Ready((out_a.take().unwrap(), out_b.take().unwrap()))
        } else {
            Poll::Pending
        }
    })
    .await
}
