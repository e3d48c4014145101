//! The lifecycle of one Pod's containers on this node, as a pure state machine: what
//! happened goes in (a start succeeded or failed, a workload exited, a probe answered, time
//! passed, the Pod is being deleted, a status was written), what to do comes out as a list
//! of [`Effect`]s in the order to do them (start, stop, probe, record an Event, publish the
//! running workloads). The Pod's worker does the IO and feeds the results back; the
//! container statuses to write are read off the state ([`Lifecycle::statuses`]).
//!
//! The rules are the kubelet's:
//! - restart policy: `Always` restarts every exit, `OnFailure` a non-zero one, `Never`
//!   none; a restart waits out the container's [`Backoff`] (10 s doubling to 5 min, reset
//!   after 10 min of running) in `CrashLoopBackOff`;
//! - a container that cannot start waits with the runtime's reason (`ErrImagePull`,
//!   `CreateContainerConfigError`, …) and is retried with the same back-off; a failed pull
//!   is shown once as `ErrImagePull`, then as `ImagePullBackOff` until the next attempt;
//!   a component that can never start (`InvalidComponent`, `NotHttpComponent`) terminates
//!   the container under `Never`;
//! - probes: a startup probe holds liveness and readiness back until it passes; Ready
//!   follows readiness; a failed startup or liveness probe kills the container, and its
//!   exit goes through the restart policy like any other;
//! - a Pod being deleted has every container stopped and terminated (`Completed`).
//!
//! Time comes in with every input ([`Now`]): the machine never reads a clock, so a test
//! sets the state by hand, calls one handler and asserts on the exact effects.

use std::time::Instant;

use ketch_api::core::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Pod,
};
use ketch_api::format;
use ketch_workload::{StartError, StartReason, WorkloadExit};

use crate::backoff::Backoff;
use crate::events::EventType;
use crate::probe::{self, Kind as ProbeKind};

/// The waiting reason between two failed image pulls.
const IMAGE_PULL_BACKOFF: &str = "ImagePullBackOff";
/// The waiting reason between a crash and its restart.
const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";
/// The exit a killed workload is given when its runtime reports none (an in-process
/// component has no process to exit): SIGKILL's.
const KILLED_EXIT_CODE: i32 = 137;
/// The exit code of a container that terminated without ever running (a component that
/// can never start, under `restartPolicy: Never`), as the kubelet reports a failed exec.
const NEVER_STARTED_EXIT_CODE: i32 = 128;

/// The moment an input happened: the monotonic instant (back-off, next attempts) and the
/// wall-clock time as the API writes it (`startedAt`, `finishedAt`).
#[derive(Debug, Clone)]
pub(crate) struct Now {
    pub instant: Instant,
    pub wall: String,
}

/// What the worker must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Start container `i` (choose its runtime, resolve its spec, start it), then report
    /// with [`Lifecycle::started`] or [`Lifecycle::start_failed`].
    Start(usize),
    /// Run `spec` against the workload of container `container`, start `generation`,
    /// reporting every attempt to [`Lifecycle::probed`].
    Probe {
        container: usize,
        generation: u64,
        spec: probe::Spec,
    },
    /// Stop container `container`'s probe of `kind`.
    StopProbe { container: usize, kind: ProbeKind },
    /// Stop every probe of container `i`.
    StopProbes(usize),
    /// Stop container `container`'s workload (start `generation`), then report how it
    /// ended with [`Lifecycle::killed`].
    Kill {
        container: usize,
        generation: u64,
        message: String,
    },
    /// Stop container `i`'s workload and drop it.
    Stop(usize),
    /// Drop container `i`'s workload: it exited by itself.
    Forget(usize),
    /// Record an Event about the Pod.
    Event {
        type_: EventType,
        reason: &'static str,
        message: String,
    },
    /// The running workloads changed: make them what requests reach.
    Publish,
}

fn event(type_: EventType, reason: &'static str, message: String) -> Effect {
    Effect::Event {
        type_,
        reason,
        message,
    }
}

/// `restartPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    fn of(pod: &Pod) -> Self {
        match pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) {
            Some("OnFailure") => RestartPolicy::OnFailure,
            Some("Never") => RestartPolicy::Never,
            _ => RestartPolicy::Always,
        }
    }

    fn restarts(self, exit_code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        }
    }
}

/// What a successful start reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StartedFacts {
    pub image_id: String,
    pub container_id: String,
    /// For the `Pulled` (or `Adopted`) Event.
    pub detail: String,
    /// Already running before this agent started.
    pub adopted: bool,
}

/// One probe of the current run of a container.
#[derive(Debug, Clone)]
struct ActiveProbe {
    spec: probe::Spec,
    tracker: probe::Tracker,
}

/// One container's state.
#[derive(Debug, Clone)]
struct ContainerLife {
    name: String,
    image: String,
    /// Incremented by every start: reports about an earlier run are ignored.
    generation: u64,
    /// Its workload of `generation` runs.
    running: bool,
    image_id: String,
    container_id: Option<String>,
    state: ContainerState,
    last_state: Option<ContainerState>,
    restart_count: i32,
    backoff: Backoff,
    /// When to (re)start; `None` while running or terminal.
    next_attempt: Option<Instant>,
    /// Terminated and will not restart.
    terminal: bool,
    /// Its startup probe passed (or it has none) since it last started.
    started: bool,
    /// Its readiness probe passes (or it has none).
    ready: bool,
    /// Its probes, resolved once from the Pod (probes are immutable), by [`probe_slot`].
    probes: [Result<Option<probe::Spec>, String>; 3],
    active: Vec<ActiveProbe>,
}

fn probe_slot(kind: ProbeKind) -> usize {
    match kind {
        ProbeKind::Startup => 0,
        ProbeKind::Liveness => 1,
        ProbeKind::Readiness => 2,
    }
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message,
        }),
        ..ContainerState::default()
    }
}

impl ContainerLife {
    fn new(c: &Container, restart_count: i32, start_at: Option<Instant>) -> Self {
        let spec = |kind| probe::Spec::of(kind, c);
        ContainerLife {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            generation: 0,
            running: false,
            image_id: String::new(),
            container_id: None,
            state: waiting("ContainerCreating", None),
            last_state: None,
            restart_count,
            backoff: Backoff::default(),
            next_attempt: start_at,
            terminal: start_at.is_none(),
            started: false,
            ready: false,
            probes: [
                spec(ProbeKind::Startup),
                spec(ProbeKind::Liveness),
                spec(ProbeKind::Readiness),
            ],
            active: Vec::new(),
        }
    }

    fn waiting_reason(&self) -> Option<&str> {
        self.state.waiting.as_ref()?.reason.as_deref()
    }

    fn started_at(&self) -> Option<String> {
        self.state.running.as_ref()?.started_at.clone()
    }

    /// Ends the probes of the current run.
    fn end_probes(&mut self) {
        self.active.clear();
        self.ready = false;
        self.started = false;
    }
}

/// The containers of one Pod on this node.
#[derive(Debug, Clone)]
pub(crate) struct Lifecycle {
    policy: RestartPolicy,
    /// `namespace/name`, for Event messages.
    pod: String,
    containers: Vec<ContainerLife>,
}

impl Lifecycle {
    /// The Pod's containers, waiting in `ContainerCreating` and due to start at `now`; a
    /// Pod that had already finished (`Succeeded`/`Failed`) when this agent took it starts
    /// nothing. Restart counts continue from the Pod's status (an agent restart keeps them).
    pub(crate) fn new(pod: &Pod, now: Instant) -> Self {
        let finished = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        let previous = |name: &str| {
            pod.status
                .as_ref()
                .and_then(|s| s.container_statuses.iter().find(|c| c.name == name))
                .map_or(0, |c| c.restart_count)
        };
        let containers = pod
            .spec
            .as_ref()
            .map(|s| s.containers.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|c| ContainerLife::new(c, previous(&c.name), (!finished).then_some(now)))
            .collect();
        Lifecycle {
            policy: RestartPolicy::of(pod),
            pod: format!("{}/{}", pod.metadata.namespace(), pod.metadata.name()),
            containers,
        }
    }

    /// Container names in spec order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.containers.iter().map(|c| c.name.as_str())
    }

    /// The image of container `i` as the Pod named it.
    pub(crate) fn image(&self, i: usize) -> &str {
        &self.containers[i].image
    }

    /// The current start generation of container `i`.
    pub(crate) fn generation(&self, i: usize) -> u64 {
        self.containers[i].generation
    }

    /// The earliest pending (re)start, if any.
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        self.containers.iter().filter_map(|c| c.next_attempt).min()
    }

    /// Time passed: the containers whose (re)start is due.
    pub(crate) fn due(&mut self, now: &Now) -> Vec<Effect> {
        let mut out = Vec::new();
        for (i, c) in self.containers.iter_mut().enumerate() {
            if c.next_attempt.is_some_and(|at| at <= now.instant) {
                c.next_attempt = None;
                out.push(Effect::Start(i));
            }
        }
        out
    }

    /// Container `i` started (or was adopted): it runs as a new generation, its probes
    /// start (the startup probe alone first), and the workloads are published.
    pub(crate) fn started(&mut self, i: usize, s: StartedFacts, now: &Now) -> Vec<Effect> {
        let c = &mut self.containers[i];
        c.generation += 1;
        c.running = true;
        c.backoff.started(now.instant);
        c.image_id = s.image_id;
        c.container_id = Some(s.container_id);
        if c.state.terminated.is_some() {
            c.last_state = Some(c.state.clone());
        }
        c.state = ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(now.wall.clone()),
            }),
            ..ContainerState::default()
        };
        let name = c.name.clone();
        let mut out = Vec::new();
        // A startup probe holds the others back until it passes.
        if matches!(c.probes[probe_slot(ProbeKind::Startup)], Ok(Some(_))) {
            self.activate(i, &[ProbeKind::Startup], &mut out);
        } else {
            self.warn_unresolved(i, ProbeKind::Startup, &mut out);
            self.containers[i].started = true;
            self.activate(i, &[ProbeKind::Liveness, ProbeKind::Readiness], &mut out);
        }
        if s.adopted {
            out.push(event(EventType::Normal, "Adopted", s.detail));
        } else {
            out.push(event(EventType::Normal, "Pulled", s.detail));
            out.push(event(
                EventType::Normal,
                "Started",
                format!("Started container {name}"),
            ));
        }
        out.push(Effect::Publish);
        out
    }

    /// Container `i` could not start: it waits with the runtime's reason and is retried
    /// after its back-off, or terminates when retrying cannot help under `Never`.
    pub(crate) fn start_failed(&mut self, i: usize, e: StartError, now: &Now) -> Vec<Effect> {
        let policy = self.policy;
        let pod = self.pod.clone();
        let c = &mut self.containers[i];
        let msg = format!("{}: {}", e.reason, e.message);
        // The first failure of a kind gets a Failed Event, repeats a BackOff one too; a
        // failed pull gets its BackOff Event once it waits in ImagePullBackOff.
        let first =
            c.waiting_reason() != Some(e.reason.as_str()) || e.reason == StartReason::ErrImagePull;
        if e.reason.is_permanent() && policy == RestartPolicy::Never {
            c.state = ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: NEVER_STARTED_EXIT_CODE,
                    reason: Some(e.reason.as_str().into()),
                    message: Some(e.message),
                    started_at: Some(now.wall.clone()),
                    finished_at: Some(now.wall.clone()),
                    ..ContainerStateTerminated::default()
                }),
                ..ContainerState::default()
            };
            c.terminal = true;
            return vec![event(EventType::Warning, "Failed", msg)];
        }
        let delay = c.backoff.failed(now.instant);
        c.next_attempt = Some(now.instant + delay);
        c.state = waiting(e.reason.as_str(), Some(e.message));
        let mut out = vec![event(EventType::Warning, "Failed", msg)];
        if !first {
            out.push(event(
                EventType::Warning,
                "BackOff",
                format!(
                    "Back-off {} restarting failed container {} in pod {pod}",
                    format::duration(delay),
                    c.name
                ),
            ));
        }
        out
    }

    /// A status showing these containers was written: a failed pull shown once as
    /// `ErrImagePull` now waits in `ImagePullBackOff`, keeping the registry's message. An
    /// empty result means nothing changed (no second write needed).
    pub(crate) fn status_written(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        for c in &mut self.containers {
            if c.waiting_reason() != Some(StartReason::ErrImagePull.as_str())
                || c.next_attempt.is_none()
            {
                continue;
            }
            let message = c
                .state
                .waiting
                .as_ref()
                .and_then(|w| w.message.as_deref())
                .unwrap_or("");
            let message = format!(
                "Back-off pulling image {:?}: ErrImagePull: {message}",
                c.image
            );
            c.state = waiting(IMAGE_PULL_BACKOFF, Some(message));
            out.push(event(
                EventType::Normal,
                "BackOff",
                format!("Back-off pulling image {:?}", c.image),
            ));
        }
        out
    }

    /// Container `i`'s workload of `generation` exited by itself: the restart policy
    /// decides between a restart after the back-off and the end.
    pub(crate) fn exited(
        &mut self,
        i: usize,
        generation: u64,
        exit: WorkloadExit,
        now: &Now,
    ) -> Vec<Effect> {
        let policy = self.policy;
        let Some(c) = self.containers.get_mut(i) else {
            return Vec::new();
        };
        if c.generation != generation || !c.running {
            return Vec::new();
        }
        c.running = false;
        c.end_probes();
        let terminated = ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: exit.exit_code,
                reason: Some(exit.reason),
                message: exit.message,
                started_at: c.started_at(),
                finished_at: Some(now.wall.clone()),
                container_id: c.container_id.clone(),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        };
        let mut out = vec![Effect::StopProbes(i), Effect::Forget(i)];
        if policy.restarts(exit.exit_code) {
            let delay = c.backoff.failed(now.instant);
            c.last_state = Some(terminated);
            c.state = waiting(
                CRASH_LOOP_BACK_OFF,
                Some(format!(
                    "back-off {} restarting failed container={}",
                    format::duration(delay),
                    c.name
                )),
            );
            c.restart_count += 1;
            c.next_attempt = Some(now.instant + delay);
            out.push(event(
                EventType::Warning,
                "BackOff",
                format!("Back-off restarting failed container {}", c.name),
            ));
        } else {
            c.state = terminated;
            c.terminal = true;
        }
        out.push(Effect::Publish);
        out
    }

    /// A [`Effect::Kill`] is done: the workload ended with `exit` (`None`: its runtime has
    /// no process to report, SIGKILL's exit is assumed), which goes through the restart
    /// policy with `message` saying why it was killed.
    pub(crate) fn killed(
        &mut self,
        i: usize,
        generation: u64,
        exit: Option<WorkloadExit>,
        message: String,
        now: &Now,
    ) -> Vec<Effect> {
        let exit = match exit {
            Some(e) => WorkloadExit {
                message: Some(message),
                ..e
            },
            None => WorkloadExit {
                exit_code: KILLED_EXIT_CODE,
                reason: "Error".into(),
                message: Some(message),
            },
        };
        self.exited(i, generation, exit, now)
    }

    /// One attempt of container `i`'s `kind` probe (start `generation`) answered `result`:
    /// readiness moves Ready; startup passing starts the others; startup or liveness
    /// failing kills the container.
    pub(crate) fn probed(
        &mut self,
        i: usize,
        generation: u64,
        kind: ProbeKind,
        result: Result<(), String>,
    ) -> Vec<Effect> {
        let Some(c) = self.containers.get_mut(i) else {
            return Vec::new();
        };
        if c.generation != generation || !c.running {
            return Vec::new();
        }
        let Some(p) = c.active.iter_mut().find(|p| p.spec.kind == kind) else {
            return Vec::new();
        };
        let changed = p.tracker.record(result.is_ok(), &p.spec);
        let name = c.name.clone();
        let mut out = Vec::new();
        if let Err(why) = &result {
            out.push(event(
                EventType::Warning,
                "Unhealthy",
                format!("{} probe failed: {why}", kind.title()),
            ));
        }
        match (kind, changed) {
            (ProbeKind::Readiness, Some(ready)) => self.containers[i].ready = ready,
            (ProbeKind::Startup, Some(true)) => {
                let c = &mut self.containers[i];
                c.started = true;
                // Its job is done.
                c.active.retain(|p| p.spec.kind != ProbeKind::Startup);
                out.push(Effect::StopProbe {
                    container: i,
                    kind: ProbeKind::Startup,
                });
                self.activate(i, &[ProbeKind::Liveness, ProbeKind::Readiness], &mut out);
            }
            (ProbeKind::Startup | ProbeKind::Liveness, Some(false)) => {
                let message = format!(
                    "Container {name} failed {} probe, will be restarted",
                    kind.title().to_lowercase()
                );
                out.push(event(EventType::Normal, "Killing", message.clone()));
                self.containers[i].end_probes();
                out.push(Effect::StopProbes(i));
                out.push(Effect::Kill {
                    container: i,
                    generation,
                    message,
                });
            }
            _ => {}
        }
        out
    }

    /// The Pod is going away (`why`): every container that has not terminated for good is
    /// stopped and terminated with `Completed`.
    pub(crate) fn stop_all(&mut self, why: &str, now: &Now) -> Vec<Effect> {
        let mut out = Vec::new();
        for (i, c) in self.containers.iter_mut().enumerate() {
            if c.terminal {
                continue;
            }
            if c.running {
                c.running = false;
                out.push(Effect::StopProbes(i));
                out.push(Effect::Stop(i));
            }
            c.end_probes();
            c.state = ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 0,
                    reason: Some("Completed".into()),
                    message: Some(why.into()),
                    started_at: c.started_at(),
                    finished_at: Some(now.wall.clone()),
                    container_id: c.container_id.clone(),
                    ..ContainerStateTerminated::default()
                }),
                ..ContainerState::default()
            };
            c.terminal = true;
            c.next_attempt = None;
        }
        if !out.is_empty() {
            out.push(Effect::Publish);
        }
        out
    }

    /// The container statuses to write, and which containers will not restart.
    pub(crate) fn statuses(&self) -> (Vec<ContainerStatus>, Vec<bool>) {
        let statuses = self
            .containers
            .iter()
            .map(|c| {
                let running = c.state.running.is_some();
                ContainerStatus {
                    name: c.name.clone(),
                    ready: running && c.started && c.ready,
                    restart_count: c.restart_count,
                    image: c.image.clone(),
                    image_id: c.image_id.clone(),
                    container_id: c.container_id.clone(),
                    started: Some(running && c.started),
                    state: Some(c.state.clone()),
                    last_state: c.last_state.clone(),
                }
            })
            .collect();
        (
            statuses,
            self.containers.iter().map(|c| c.terminal).collect(),
        )
    }

    /// Starts container `i`'s probes of `kinds`; one without a readiness probe is ready.
    fn activate(&mut self, i: usize, kinds: &[ProbeKind], out: &mut Vec<Effect>) {
        for &kind in kinds {
            self.warn_unresolved(i, kind, out);
            let c = &mut self.containers[i];
            let spec = c.probes[probe_slot(kind)].clone().ok().flatten();
            if kind == ProbeKind::Readiness {
                c.ready = spec.is_none();
            }
            if let Some(spec) = spec {
                c.active.push(ActiveProbe {
                    tracker: probe::Tracker::new(kind),
                    spec: spec.clone(),
                });
                out.push(Effect::Probe {
                    container: i,
                    generation: c.generation,
                    spec,
                });
            }
        }
    }

    /// A probe that cannot run (a named port the container does not declare) is reported
    /// once per start and skipped.
    fn warn_unresolved(&self, i: usize, kind: ProbeKind, out: &mut Vec<Effect>) {
        if let Err(e) = &self.containers[i].probes[probe_slot(kind)] {
            out.push(event(
                EventType::Warning,
                "Unhealthy",
                format!("{} probe not run: {e}", kind.title()),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    /// A Pod with `containers` (JSON objects) and `restartPolicy: policy`.
    fn pod(policy: &str, containers: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"restartPolicy": policy, "containers": containers},
        }))
        .unwrap()
    }

    fn app() -> serde_json::Value {
        json!([{"name": "app", "image": "app.wasm"}])
    }

    /// `secs` after `t0`, with a wall time that says so.
    fn at(t0: Instant, secs: u64) -> Now {
        Now {
            instant: t0 + Duration::from_secs(secs),
            wall: format!("t+{secs}"),
        }
    }

    fn facts() -> StartedFacts {
        StartedFacts {
            image_id: "sha256:abc".into(),
            container_id: "wasm://abc/u1".into(),
            detail: "Loaded".into(),
            adopted: false,
        }
    }

    fn exit(code: i32) -> WorkloadExit {
        WorkloadExit {
            exit_code: code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
        }
    }

    fn state(l: &Lifecycle) -> ContainerState {
        l.statuses().0[0].state.clone().unwrap()
    }

    fn waiting_reason(l: &Lifecycle) -> Option<String> {
        state(l).waiting.and_then(|w| w.reason)
    }

    /// A lifecycle of `p` whose first container started at `t0`.
    fn running(p: &Pod, t0: Instant) -> Lifecycle {
        let mut l = Lifecycle::new(p, t0);
        assert_eq!(l.due(&at(t0, 0)), vec![Effect::Start(0)]);
        l.started(0, facts(), &at(t0, 0));
        l
    }

    #[test]
    fn a_new_pod_starts_every_container_at_once_and_a_finished_one_nothing() {
        let t0 = Instant::now();
        let p = pod("Always", json!([{"name": "a"}, {"name": "b"}]));
        let mut l = Lifecycle::new(&p, t0);
        assert_eq!(l.next_wake(), Some(t0));
        assert_eq!(waiting_reason(&l).as_deref(), Some("ContainerCreating"));
        assert_eq!(l.due(&at(t0, 0)), vec![Effect::Start(0), Effect::Start(1)]);
        assert_eq!(l.due(&at(t0, 1)), vec![], "each start is handed out once");

        let mut done = p.clone();
        done.status = serde_json::from_value(json!({"phase": "Succeeded"})).unwrap();
        let mut l = Lifecycle::new(&done, t0);
        assert_eq!(l.next_wake(), None);
        assert_eq!(l.due(&at(t0, 100)), vec![]);
        assert_eq!(l.statuses().1, [true, true]);
    }

    #[test]
    fn a_start_runs_the_container_records_its_events_and_publishes() {
        let t0 = Instant::now();
        let mut l = Lifecycle::new(&pod("Always", app()), t0);
        l.due(&at(t0, 0));
        assert_eq!(
            l.started(0, facts(), &at(t0, 0)),
            vec![
                event(EventType::Normal, "Pulled", "Loaded".into()),
                event(EventType::Normal, "Started", "Started container app".into()),
                Effect::Publish,
            ]
        );
        let (st, terminal) = l.statuses();
        assert!(st[0].ready, "no readiness probe: ready once running");
        assert_eq!(st[0].started, Some(true));
        assert_eq!(st[0].container_id.as_deref(), Some("wasm://abc/u1"));
        assert_eq!(
            st[0]
                .state
                .as_ref()
                .unwrap()
                .running
                .as_ref()
                .unwrap()
                .started_at
                .as_deref(),
            Some("t+0")
        );
        assert_eq!(terminal, [false]);

        let mut adopted = Lifecycle::new(&pod("Always", app()), t0);
        adopted.due(&at(t0, 0));
        let effects = adopted.started(
            0,
            StartedFacts {
                adopted: true,
                detail: "Re-adopted".into(),
                ..facts()
            },
            &at(t0, 0),
        );
        assert_eq!(
            effects,
            vec![
                event(EventType::Normal, "Adopted", "Re-adopted".into()),
                Effect::Publish
            ]
        );
    }

    #[test]
    fn the_restart_policy_decides_what_each_exit_does() {
        // (policy, exit code) → restarted?
        let table = [
            ("Always", 0, true),
            ("Always", 1, true),
            ("OnFailure", 0, false),
            ("OnFailure", 2, true),
            ("Never", 0, false),
            ("Never", 137, false),
        ];
        for (policy, code, restarts) in table {
            let t0 = Instant::now();
            let mut l = running(&pod(policy, app()), t0);
            let effects = l.exited(0, 1, exit(code), &at(t0, 5));
            let (st, terminal) = l.statuses();
            let case = format!("{policy} exit {code}");
            assert_eq!(
                effects[..2],
                [Effect::StopProbes(0), Effect::Forget(0)],
                "{case}"
            );
            assert_eq!(effects.last(), Some(&Effect::Publish), "{case}");
            if restarts {
                assert_eq!(
                    waiting_reason(&l).as_deref(),
                    Some("CrashLoopBackOff"),
                    "{case}"
                );
                assert_eq!(st[0].restart_count, 1, "{case}");
                let last = st[0]
                    .last_state
                    .as_ref()
                    .unwrap()
                    .terminated
                    .as_ref()
                    .unwrap();
                assert_eq!(last.exit_code, code, "{case}");
                assert_eq!(last.started_at.as_deref(), Some("t+0"), "{case}");
                assert_eq!(last.finished_at.as_deref(), Some("t+5"), "{case}");
                assert_eq!(terminal, [false], "{case}");
                assert_eq!(l.next_wake(), Some(t0 + Duration::from_secs(15)), "{case}");
                assert!(effects.contains(&event(
                    EventType::Warning,
                    "BackOff",
                    "Back-off restarting failed container app".into()
                )));
            } else {
                let t = state(&l).terminated.unwrap();
                assert_eq!(t.exit_code, code, "{case}");
                assert_eq!(st[0].restart_count, 0, "{case}");
                assert_eq!(terminal, [true], "{case}");
                assert_eq!(l.next_wake(), None, "{case}");
            }
        }
    }

    #[test]
    fn crash_back_off_doubles_to_five_minutes_and_resets_after_ten_minutes_running() {
        let t0 = Instant::now();
        let mut l = running(&pod("Always", app()), t0);
        let mut t = 0;
        let mut delays = Vec::new();
        for generation in 1..=7 {
            l.exited(0, generation, exit(1), &at(t0, t));
            let wake = l.next_wake().unwrap();
            delays.push((wake - (t0 + Duration::from_secs(t))).as_secs());
            t = (wake - t0).as_secs();
            assert_eq!(l.due(&at(t0, t)), vec![Effect::Start(0)]);
            l.started(0, facts(), &at(t0, t));
        }
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300]);
        let msg = |l: &Lifecycle| state(l).waiting.unwrap().message.unwrap();
        // Ten minutes of running forgets the back-off.
        l.exited(0, 8, exit(1), &at(t0, t + 600));
        assert_eq!(msg(&l), "back-off 10s restarting failed container=app");
        assert_eq!(l.statuses().0[0].restart_count, 8);
    }

    #[test]
    fn reports_about_an_earlier_run_are_ignored() {
        let t0 = Instant::now();
        let mut l = running(&pod("Always", app()), t0);
        assert_eq!(
            l.exited(0, 2, exit(1), &at(t0, 1)),
            vec![],
            "a future generation"
        );
        l.exited(0, 1, exit(1), &at(t0, 1));
        assert_eq!(
            l.exited(0, 1, exit(1), &at(t0, 2)),
            vec![],
            "already exited"
        );
        assert_eq!(l.probed(0, 1, ProbeKind::Liveness, Err("x".into())), vec![]);
        assert_eq!(l.statuses().0[0].restart_count, 1);
    }

    fn start_error(reason: StartReason) -> StartError {
        StartError {
            reason,
            message: "boom".into(),
        }
    }

    #[test]
    fn a_failed_start_waits_with_the_runtimes_reason_and_backs_off() {
        let t0 = Instant::now();
        let mut l = Lifecycle::new(&pod("Always", app()), t0);
        l.due(&at(t0, 0));
        let reason = StartReason::CreateContainerConfigError;
        assert_eq!(
            l.start_failed(0, start_error(reason), &at(t0, 0)),
            vec![event(
                EventType::Warning,
                "Failed",
                "CreateContainerConfigError: boom".into()
            )]
        );
        assert_eq!(
            waiting_reason(&l).as_deref(),
            Some("CreateContainerConfigError")
        );
        assert_eq!(l.next_wake(), Some(t0 + Duration::from_secs(10)));
        assert_eq!(
            l.status_written(),
            vec![],
            "only pulls move on to a back-off reason"
        );
        // The same failure again: a BackOff Event too, and a longer wait.
        l.due(&at(t0, 10));
        assert_eq!(
            l.start_failed(0, start_error(reason), &at(t0, 10)),
            vec![
                event(
                    EventType::Warning,
                    "Failed",
                    "CreateContainerConfigError: boom".into()
                ),
                event(
                    EventType::Warning,
                    "BackOff",
                    "Back-off 20s restarting failed container app in pod ns/p".into()
                ),
            ]
        );
        assert_eq!(l.next_wake(), Some(t0 + Duration::from_secs(30)));
    }

    #[test]
    fn a_failed_pull_shows_err_image_pull_once_then_image_pull_back_off() {
        let t0 = Instant::now();
        let mut l = Lifecycle::new(&pod("Always", app()), t0);
        for (secs, round) in [(0, 0), (10, 1)] {
            l.due(&at(t0, secs));
            let effects = l.start_failed(0, start_error(StartReason::ErrImagePull), &at(t0, secs));
            assert_eq!(effects.len(), 1, "round {round}: only Failed, {effects:?}");
            assert_eq!(waiting_reason(&l).as_deref(), Some("ErrImagePull"));
            assert_eq!(
                l.status_written(),
                vec![event(
                    EventType::Normal,
                    "BackOff",
                    "Back-off pulling image \"app.wasm\"".into()
                )]
            );
            let w = state(&l).waiting.unwrap();
            assert_eq!(w.reason.as_deref(), Some("ImagePullBackOff"));
            assert_eq!(
                w.message.as_deref(),
                Some("Back-off pulling image \"app.wasm\": ErrImagePull: boom")
            );
            assert_eq!(l.status_written(), vec![], "moved once");
        }
    }

    #[test]
    fn a_component_that_can_never_start_terminates_under_never_and_retries_otherwise() {
        let t0 = Instant::now();
        for (policy, terminates) in [("Never", true), ("OnFailure", false), ("Always", false)] {
            for reason in [StartReason::InvalidComponent, StartReason::NotHttpComponent] {
                let mut l = Lifecycle::new(&pod(policy, app()), t0);
                l.due(&at(t0, 0));
                l.start_failed(0, start_error(reason), &at(t0, 0));
                let case = format!("{policy} {reason}");
                assert_eq!(l.statuses().1, [terminates], "{case}");
                if terminates {
                    let t = state(&l).terminated.unwrap();
                    assert_eq!(t.exit_code, 128, "{case}");
                    assert_eq!(t.reason.as_deref(), Some(reason.as_str()), "{case}");
                    assert_eq!(l.next_wake(), None, "{case}");
                } else {
                    assert_eq!(
                        waiting_reason(&l).as_deref(),
                        Some(reason.as_str()),
                        "{case}"
                    );
                }
            }
        }
        // A pull failure is retried even under Never (the Pod stays Pending).
        let mut l = Lifecycle::new(&pod("Never", app()), t0);
        l.due(&at(t0, 0));
        l.start_failed(0, start_error(StartReason::ErrImagePull), &at(t0, 0));
        assert_eq!(l.statuses().1, [false]);
    }

    fn probed_app(probes: serde_json::Value) -> Pod {
        let mut c = json!({"name": "app", "image": "app.wasm",
            "ports": [{"name": "http", "containerPort": 8080}]});
        for (k, v) in probes.as_object().unwrap() {
            c[k] = v.clone();
        }
        pod("Always", json!([c]))
    }

    fn http_probe(threshold: u32) -> serde_json::Value {
        json!({"httpGet": {"path": "/healthz", "port": "http"},
               "failureThreshold": threshold, "successThreshold": 1})
    }

    fn probe_kinds(effects: &[Effect]) -> Vec<ProbeKind> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Probe { spec, .. } => Some(spec.kind),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn readiness_makes_the_container_ready_only_once_it_passes() {
        let t0 = Instant::now();
        let p = probed_app(json!({"readinessProbe": http_probe(2)}));
        let mut l = Lifecycle::new(&p, t0);
        l.due(&at(t0, 0));
        let effects = l.started(0, facts(), &at(t0, 0));
        assert_eq!(probe_kinds(&effects), [ProbeKind::Readiness]);
        assert!(!l.statuses().0[0].ready, "not Ready until the probe passes");
        assert_eq!(l.probed(0, 1, ProbeKind::Readiness, Ok(())), vec![]);
        assert!(l.statuses().0[0].ready);
        assert_eq!(
            l.probed(0, 1, ProbeKind::Readiness, Err("HTTP 500".into())),
            vec![event(
                EventType::Warning,
                "Unhealthy",
                "Readiness probe failed: HTTP 500".into()
            )]
        );
        assert!(
            l.statuses().0[0].ready,
            "one failure is under the threshold"
        );
        l.probed(0, 1, ProbeKind::Readiness, Err("HTTP 500".into()));
        assert!(!l.statuses().0[0].ready, "failureThreshold in a row");
        assert_eq!(waiting_reason(&l), None, "readiness never kills");
    }

    #[test]
    fn a_startup_probe_holds_the_others_back_then_hands_over() {
        let t0 = Instant::now();
        let p = probed_app(json!({
            "startupProbe": http_probe(3),
            "livenessProbe": http_probe(3),
            "readinessProbe": http_probe(3),
        }));
        let mut l = Lifecycle::new(&p, t0);
        l.due(&at(t0, 0));
        assert_eq!(
            probe_kinds(&l.started(0, facts(), &at(t0, 0))),
            [ProbeKind::Startup]
        );
        assert_eq!(l.statuses().0[0].started, Some(false));
        let effects = l.probed(0, 1, ProbeKind::Startup, Ok(()));
        assert_eq!(
            effects[0],
            Effect::StopProbe {
                container: 0,
                kind: ProbeKind::Startup
            }
        );
        assert_eq!(
            probe_kinds(&effects),
            [ProbeKind::Liveness, ProbeKind::Readiness]
        );
        assert_eq!(l.statuses().0[0].started, Some(true));
        assert_eq!(
            l.probed(0, 1, ProbeKind::Startup, Ok(())),
            vec![],
            "the startup probe is done"
        );
    }

    #[test]
    fn a_failing_liveness_probe_kills_and_the_kill_restarts_per_policy() {
        let t0 = Instant::now();
        let p = probed_app(json!({"livenessProbe": http_probe(2)}));
        let mut l = Lifecycle::new(&p, t0);
        l.due(&at(t0, 0));
        l.started(0, facts(), &at(t0, 0));
        l.probed(0, 1, ProbeKind::Liveness, Err("timeout".into()));
        let why = "Container app failed liveness probe, will be restarted".to_string();
        assert_eq!(
            l.probed(0, 1, ProbeKind::Liveness, Err("timeout".into())),
            vec![
                event(
                    EventType::Warning,
                    "Unhealthy",
                    "Liveness probe failed: timeout".into()
                ),
                event(EventType::Normal, "Killing", why.clone()),
                Effect::StopProbes(0),
                Effect::Kill {
                    container: 0,
                    generation: 1,
                    message: why.clone()
                },
            ]
        );
        // No exit from the runtime (in-process): SIGKILL's, with why.
        l.killed(0, 1, None, why.clone(), &at(t0, 3));
        let st = &l.statuses().0[0];
        let last = st.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(last.exit_code, 137);
        assert_eq!(last.message.as_deref(), Some(why.as_str()));
        assert_eq!(waiting_reason(&l).as_deref(), Some("CrashLoopBackOff"));
        // A container's own exit is kept, with why.
        let mut l = Lifecycle::new(&p, t0);
        l.due(&at(t0, 0));
        l.started(0, facts(), &at(t0, 0));
        l.killed(0, 1, Some(exit(143)), why.clone(), &at(t0, 3));
        let st = &l.statuses().0[0];
        let last = st.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(
            (last.exit_code, last.message.as_deref()),
            (143, Some(why.as_str()))
        );
    }

    #[test]
    fn a_startup_probe_that_never_passes_kills_the_container() {
        let t0 = Instant::now();
        let p = probed_app(json!({"startupProbe": http_probe(1)}));
        let mut l = Lifecycle::new(&p, t0);
        l.due(&at(t0, 0));
        l.started(0, facts(), &at(t0, 0));
        let effects = l.probed(0, 1, ProbeKind::Startup, Err("refused".into()));
        assert!(effects.contains(&Effect::Kill {
            container: 0,
            generation: 1,
            message: "Container app failed startup probe, will be restarted".into()
        }));
    }

    #[test]
    fn a_probe_that_cannot_run_is_reported_at_each_start_and_skipped() {
        let t0 = Instant::now();
        let p = probed_app(json!({"livenessProbe":
            {"tcpSocket": {"port": "grpc"}}}));
        let mut l = Lifecycle::new(&p, t0);
        l.due(&at(t0, 0));
        let effects = l.started(0, facts(), &at(t0, 0));
        assert_eq!(probe_kinds(&effects), []);
        assert_eq!(
            effects[0],
            event(
                EventType::Warning,
                "Unhealthy",
                "Liveness probe not run: the container declares no port named \"grpc\"".into()
            )
        );
    }

    #[test]
    fn deletion_stops_running_containers_and_terminates_every_one() {
        let t0 = Instant::now();
        let p = pod("Always", json!([{"name": "a"}, {"name": "b"}]));
        let mut l = Lifecycle::new(&p, t0);
        l.due(&at(t0, 0));
        l.started(0, facts(), &at(t0, 0));
        l.start_failed(1, start_error(StartReason::ErrImagePull), &at(t0, 0));
        assert_eq!(
            l.stop_all("pod is being deleted", &at(t0, 9)),
            vec![Effect::StopProbes(0), Effect::Stop(0), Effect::Publish]
        );
        let (st, terminal) = l.statuses();
        assert_eq!(terminal, [true, true]);
        for s in &st {
            let t = s.state.as_ref().unwrap().terminated.as_ref().unwrap();
            assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
            assert_eq!(t.message.as_deref(), Some("pod is being deleted"));
        }
        assert_eq!(l.next_wake(), None, "nothing restarts");
        assert_eq!(l.stop_all("again", &at(t0, 10)), vec![]);
    }
}
