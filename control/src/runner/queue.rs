//! The controller loop: a deduplicating work queue of object keys and workers that call a
//! [`Reconciler`] for each, in the shape of kube-runtime's `Controller`.
//!
//! Queue guarantees (client-go's workqueue): a key is queued at most once; a key being
//! processed is never handed to a second worker; a key added while it is processed is marked
//! dirty and queued again when processing ends, so no change is lost and none is processed
//! twice concurrently.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::Error;

/// What to do with a key after reconciling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// Reconcile again after this long even if nothing changes.
    After(Duration),
    /// Reconcile again only when a watched object changes.
    AwaitChange,
}

/// One controller's reconcile logic.
pub trait Reconciler: Send + Sync + 'static {
    /// For logs.
    const NAME: &'static str;

    /// Brings the object at `key` toward its desired state.
    ///
    /// # Errors
    /// Any failure; [`Reconciler::error_policy`] decides when to retry.
    fn reconcile(
        self: Arc<Self>,
        key: String,
    ) -> impl Future<Output = Result<Requeue, Error>> + Send;

    /// When to retry after `error`, the `failures`-th consecutive failure of this key (from 1).
    /// The default retries conflicts and stale caches quickly and quietly, and anything else
    /// with exponential back-off (5 ms doubling up to 30 s), logging it.
    fn error_policy(&self, key: &str, error: &Error, failures: u32) -> Requeue {
        if error.is_transient() {
            tracing::debug!(controller = Self::NAME, key, error = %error, "retrying");
            return Requeue::After(Duration::from_millis(100));
        }
        tracing::warn!(controller = Self::NAME, key, error = %error, failures, "reconcile failed");
        Requeue::After(backoff(failures))
    }
}

/// 5 ms · 2^(failures-1), capped at 30 s.
pub fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    Duration::from_millis(5u64 << exp).min(Duration::from_secs(30))
}

#[derive(Default)]
struct State {
    queue: VecDeque<String>,
    queued: HashSet<String>,
    in_flight: HashSet<String>,
    dirty: HashSet<String>,
    closed: bool,
}

/// A deduplicating queue of keys. Cheap to share behind an `Arc`.
#[derive(Default)]
pub struct WorkQueue {
    state: Mutex<State>,
    notify: Notify,
}

impl WorkQueue {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Queues `key` unless it is queued already; a key in flight is marked to run again.
    pub fn add(&self, key: String) {
        let mut s = self.state.lock().expect("queue lock");
        if s.closed || s.queued.contains(&key) {
            return;
        }
        if s.in_flight.contains(&key) {
            s.dirty.insert(key);
            return;
        }
        s.queued.insert(key.clone());
        s.queue.push_back(key);
        drop(s);
        self.notify.notify_one();
    }

    /// Queues `key` after `delay` (a requeue timer).
    pub fn add_after(self: &Arc<Self>, key: String, delay: Duration) {
        let q = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(q) = q.upgrade() {
                q.add(key);
            }
        });
    }

    /// Waits for the next key and marks it in flight; `None` once the queue is closed.
    pub async fn next(&self) -> Option<String> {
        loop {
            let notified = self.notify.notified();
            {
                let mut s = self.state.lock().expect("queue lock");
                if s.closed {
                    return None;
                }
                if let Some(key) = s.queue.pop_front() {
                    s.queued.remove(&key);
                    s.in_flight.insert(key.clone());
                    // Another worker may be waiting and there may be more keys.
                    if !s.queue.is_empty() {
                        self.notify.notify_one();
                    }
                    return Some(key);
                }
            }
            notified.await;
        }
    }

    /// Ends processing of `key`: if it changed meanwhile, it is queued again.
    pub fn done(&self, key: &str) {
        let mut s = self.state.lock().expect("queue lock");
        s.in_flight.remove(key);
        if s.dirty.remove(key) {
            drop(s);
            self.add(key.to_string());
        }
    }

    /// Stops handing out keys; waiting workers return `None`.
    pub fn close(&self) {
        self.state.lock().expect("queue lock").closed = true;
        self.notify.notify_waiters();
    }

    pub fn len(&self) -> usize {
        self.state.lock().expect("queue lock").queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Runs `workers` workers reconciling keys from `queue` until it is closed.
pub fn run<R: Reconciler>(
    reconciler: Arc<R>,
    queue: Arc<WorkQueue>,
    workers: usize,
    set: &mut JoinSet<()>,
) {
    let failures: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    for _ in 0..workers.max(1) {
        let (r, q, failures) = (reconciler.clone(), queue.clone(), failures.clone());
        set.spawn(async move {
            while let Some(key) = q.next().await {
                let result = r.clone().reconcile(key.clone()).await;
                let requeue = match result {
                    Ok(requeue) => {
                        failures.lock().expect("failures lock").remove(&key);
                        requeue
                    }
                    Err(e) => {
                        let n = {
                            let mut f = failures.lock().expect("failures lock");
                            let n = f.entry(key.clone()).or_default();
                            *n = n.saturating_add(1);
                            *n
                        };
                        r.error_policy(&key, &e, n)
                    }
                };
                q.done(&key);
                if let Requeue::After(d) = requeue {
                    q.add_after(key, d);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_key_is_queued_once_and_a_key_in_flight_is_not_handed_out_again() {
        let q = WorkQueue::new();
        q.add("a".into());
        q.add("a".into());
        q.add("b".into());
        assert_eq!(q.len(), 2);
        assert_eq!(q.next().await.as_deref(), Some("a"));
        // While "a" is in flight, adding it only marks it dirty.
        q.add("a".into());
        assert_eq!(q.len(), 1);
        assert_eq!(q.next().await.as_deref(), Some("b"));
        assert!(q.is_empty());
        q.done("a");
        assert_eq!(q.next().await.as_deref(), Some("a"));
        q.done("a");
        q.done("b");
        assert!(q.is_empty());
        q.close();
        assert_eq!(q.next().await, None);
    }

    struct Counting {
        calls: AtomicUsize,
        concurrent: AtomicUsize,
        max_concurrent: AtomicUsize,
    }

    impl Reconciler for Counting {
        const NAME: &'static str = "counting";

        async fn reconcile(self: Arc<Self>, _key: String) -> Result<Requeue, Error> {
            let now = self.concurrent.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_concurrent.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.concurrent.fetch_sub(1, Ordering::SeqCst);
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(if n == 0 {
                Requeue::After(Duration::from_millis(10))
            } else {
                Requeue::AwaitChange
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_key_never_runs_on_two_workers_and_requeue_timers_fire() {
        let r = Arc::new(Counting {
            calls: AtomicUsize::new(0),
            concurrent: AtomicUsize::new(0),
            max_concurrent: AtomicUsize::new(0),
        });
        let q = WorkQueue::new();
        let mut set = JoinSet::new();
        run(r.clone(), q.clone(), 4, &mut set);
        for _ in 0..10 {
            q.add("k".into());
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(r.max_concurrent.load(Ordering::SeqCst), 1);
        // First run, the dirty re-run, and the timer's run.
        assert_eq!(r.calls.load(Ordering::SeqCst), 3);
        q.close();
        while set.join_next().await.is_some() {}
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(5));
        assert_eq!(backoff(3), Duration::from_millis(20));
        assert_eq!(backoff(100), Duration::from_secs(30));
    }
}
