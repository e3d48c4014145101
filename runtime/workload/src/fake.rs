//! [`FakeRuntime`]: a [`WorkloadRuntime`] that records what it is asked to do, for tests of
//! the agent's Pod workers and of the gateway (youki's `TestHelperSyscall` idea). A test
//! queues how the next starts end, then makes workloads exit when it wants and asserts on
//! the specs they were started with and on what was stopped.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Body;
use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use tokio::sync::watch;

use crate::{
    InvokeFailure, StartError, Started, Workload, WorkloadExit, WorkloadRuntime, WorkloadSpec,
};

/// A recording runtime: every start succeeds unless an outcome was queued with
/// [`FakeRuntime::fail_next`].
pub struct FakeRuntime {
    name: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    starts: Vec<WorkloadSpec>,
    failures: VecDeque<StartError>,
    workloads: Vec<Arc<FakeWorkload>>,
    images: HashSet<String>,
    reaped: Vec<HashSet<String>>,
    exit_on_stop: Option<WorkloadExit>,
}

impl std::fmt::Debug for FakeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeRuntime")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl FakeRuntime {
    /// A runtime reporting itself as `name` (`wasm`, `container`).
    pub fn new(name: &str) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next start fails with `error` (queued: one per call).
    pub fn fail_next(&self, error: StartError) {
        self.state().failures.push_back(error);
    }

    /// Workloads exit with `exit` when stopped, as a process does (`137` after a kill);
    /// without it they behave like Wasm handlers, which never exit.
    pub fn exit_on_stop(&self, exit: WorkloadExit) {
        self.state().exit_on_stop = Some(exit);
    }

    /// `image` is already on this node ([`WorkloadRuntime::has_image`]).
    pub fn add_image(&self, image: &str) {
        self.state().images.insert(image.into());
    }

    /// Every start asked for, in order, with its spec.
    pub fn starts(&self) -> Vec<WorkloadSpec> {
        self.state().starts.clone()
    }

    /// Every workload started, in order.
    pub fn workloads(&self) -> Vec<Arc<FakeWorkload>> {
        self.state().workloads.clone()
    }

    /// The `live` sets of every [`WorkloadRuntime::reap`] call.
    pub fn reaped(&self) -> Vec<HashSet<String>> {
        self.state().reaped.clone()
    }
}

impl WorkloadRuntime for FakeRuntime {
    fn name(&self) -> &str {
        &self.name
    }

    fn start(&self, spec: WorkloadSpec) -> BoxFuture<'_, Result<Started, StartError>> {
        let mut st = self.state();
        st.starts.push(spec.clone());
        if let Some(e) = st.failures.pop_front() {
            return futures_util::future::ready(Err(e)).boxed();
        }
        let n = st.workloads.len();
        let (exit, _) = watch::channel(None);
        let workload = Arc::new(FakeWorkload {
            container: spec.container.clone(),
            exit,
            exit_on_stop: st.exit_on_stop.clone(),
            stopped: AtomicBool::new(false),
            invocations: AtomicUsize::new(0),
            status: AtomicU16::new(200),
        });
        st.workloads.push(workload.clone());
        let started = Started {
            workload,
            image_id: format!("sha256:fake{n}"),
            container_id: format!("fake://{}/{}", spec.pod_uid, n),
            detail: format!("Loaded fake {}", spec.image),
            adopted: false,
        };
        futures_util::future::ready(Ok(started)).boxed()
    }

    fn has_image<'a>(&'a self, image: &'a str) -> BoxFuture<'a, bool> {
        let has = self.state().images.contains(image);
        futures_util::future::ready(has).boxed()
    }

    fn reap<'a>(&'a self, live: &'a HashSet<String>) -> BoxFuture<'a, ()> {
        self.state().reaped.push(live.clone());
        futures_util::future::ready(()).boxed()
    }
}

/// A workload of [`FakeRuntime`]: answers `fake <container>` with status 200 (or the one
/// set with [`FakeWorkload::answer`]) until stopped.
pub struct FakeWorkload {
    /// The container it runs.
    pub container: String,
    exit: watch::Sender<Option<WorkloadExit>>,
    exit_on_stop: Option<WorkloadExit>,
    stopped: AtomicBool,
    invocations: AtomicUsize,
    status: AtomicU16,
}

impl FakeWorkload {
    /// Makes the workload exit by itself with `exit`.
    pub fn exit(&self, exit: WorkloadExit) {
        self.exit.send_replace(Some(exit));
    }

    /// Answers requests with `status` from now on (a probe sees it fail with 500).
    pub fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Whether the agent stopped it.
    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Requests served or refused so far.
    pub fn invocations(&self) -> usize {
        self.invocations.load(Ordering::SeqCst)
    }
}

impl Workload for FakeWorkload {
    fn invoke(
        &self,
        _req: http::Request<Body>,
    ) -> BoxFuture<'_, Result<http::Response<Body>, InvokeFailure>> {
        self.invocations.fetch_add(1, Ordering::SeqCst);
        let r = if self.stopped() {
            Err(InvokeFailure::Overloaded)
        } else {
            let mut resp = http::Response::new(Body::from(format!("fake {}", self.container)));
            *resp.status_mut() = http::StatusCode::from_u16(self.status.load(Ordering::SeqCst))
                .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
            Ok(resp)
        };
        futures_util::future::ready(r).boxed()
    }

    fn exited(&self) -> BoxFuture<'static, WorkloadExit> {
        let mut rx = self.exit.subscribe();
        async move {
            loop {
                if let Some(exit) = rx.borrow_and_update().clone() {
                    return exit;
                }
                if rx.changed().await.is_err() {
                    // The workload is gone without an exit: like a Wasm handler, never.
                    return futures_util::future::pending().await;
                }
            }
        }
        .boxed()
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(exit) = &self.exit_on_stop {
            self.exit.send_replace(Some(exit.clone()));
        }
        futures_util::future::ready(()).boxed()
    }
}
