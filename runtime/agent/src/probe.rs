//! Container probes — startup, liveness, readiness — with the kubelet's semantics.
//!
//! - A probe runs every `periodSeconds` after `initialDelaySeconds`; one attempt fails when
//!   it has no answer within `timeoutSeconds`.
//! - Its result flips only after `successThreshold` consecutive successes or
//!   `failureThreshold` consecutive failures ([`Tracker`], pure). Readiness starts failed
//!   (a container with a readiness probe is not Ready until it passes); startup and liveness
//!   start passed.
//! - While a startup probe has not passed, the other two do not run; a failed startup or
//!   liveness probe gets the container killed and restarted per the Pod's restartPolicy.
//!
//! Actions: `httpGet` goes through the workload's own invoke path — in-process for a Wasm
//! component, to `podIP:port` for a Linux container — and passes on a status in 200–399;
//! `tcpSocket` connects to `podIP:port`. A Wasm component has no socket of its own: it
//! accepts on every port while it is loaded, so a `tcpSocket` probe of a Wasm container
//! passes while it runs (the httpGet probe is the one that asks the app). `exec`, HTTPS and
//! a `host` other than the Pod are refused by validation (not supported yet).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use ketch_api::core::{Container, IntOrString, Probe};
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

use ketch_workload::{TargetPort, Workload};

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    /// As the kubelet words its Events: "Liveness probe failed: …".
    pub(crate) fn title(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }
}

/// What one attempt does, with named ports resolved against the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    HttpGet {
        path: String,
        port: u16,
        headers: Vec<(String, String)>,
    },
    TcpSocket {
        port: u16,
    },
}

/// One probe of one container, resolved from its spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spec {
    pub kind: Kind,
    pub action: Action,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

fn secs(v: Option<i32>, default: u64) -> Duration {
    Duration::from_secs(v.and_then(|v| u64::try_from(v).ok()).unwrap_or(default))
}

fn count(v: Option<i32>, default: u32) -> u32 {
    v.and_then(|v| u32::try_from(v).ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

/// A port number, or a named port of the container.
fn resolve_port(port: &IntOrString, c: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("port {n} out of range")),
        IntOrString::String(name) => c
            .ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("the container declares no port named {name:?}")),
    }
}

impl Spec {
    /// The container's probes of `kind` (at most one).
    ///
    /// # Errors
    /// A named port the container does not declare, or a handler this agent does not run
    /// (validation refuses those first).
    pub(crate) fn of(kind: Kind, c: &Container) -> Result<Option<Spec>, String> {
        let probe: Option<&Probe> = match kind {
            Kind::Startup => c.startup_probe.as_ref(),
            Kind::Liveness => c.liveness_probe.as_ref(),
            Kind::Readiness => c.readiness_probe.as_ref(),
        };
        let Some(p) = probe else {
            return Ok(None);
        };
        let action = if let Some(h) = &p.http_get {
            let path = h.path.clone().filter(|p| !p.is_empty());
            Action::HttpGet {
                path: path
                    .map_or_else(|| "/".into(), |p| format!("/{}", p.trim_start_matches('/'))),
                port: resolve_port(&h.port, c)?,
                headers: h
                    .http_headers
                    .iter()
                    .map(|h| (h.name.clone(), h.value.clone()))
                    .collect(),
            }
        } else if let Some(t) = &p.tcp_socket {
            Action::TcpSocket {
                port: resolve_port(&t.port, c)?,
            }
        } else {
            return Err("only httpGet and tcpSocket probes are supported".into());
        };
        Ok(Some(Spec {
            kind,
            action,
            initial_delay: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, 10),
            timeout: secs(p.timeout_seconds, 1),
            success_threshold: count(p.success_threshold, 1),
            failure_threshold: count(p.failure_threshold, 3),
        }))
    }
}

/// Consecutive results → the probe's state, as the kubelet's prober worker counts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tracker {
    /// `None` until a startup probe reaches a threshold: it neither passed nor failed yet.
    passing: Option<bool>,
    last: Option<bool>,
    run: u32,
}

impl Tracker {
    pub(crate) fn new(kind: Kind) -> Self {
        // As the kubelet starts them: readiness failed (not Ready until it passes), liveness
        // passing (it only ever kills), startup unknown (it ends by passing or by killing).
        Tracker {
            passing: match kind {
                Kind::Readiness => Some(false),
                Kind::Liveness => Some(true),
                Kind::Startup => None,
            },
            last: None,
            run: 0,
        }
    }

    #[cfg(test)]
    pub(crate) fn passing(&self) -> Option<bool> {
        self.passing
    }

    /// Records one attempt; `Some(state)` when the probe's state changed.
    pub(crate) fn record(&mut self, ok: bool, spec: &Spec) -> Option<bool> {
        if self.last == Some(ok) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(ok);
            self.run = 1;
        }
        let threshold = if ok {
            spec.success_threshold
        } else {
            spec.failure_threshold
        };
        if self.run >= threshold && self.passing != Some(ok) {
            self.passing = Some(ok);
            return Some(ok);
        }
        None
    }
}

/// What a probe attempt reaches: the workload, and the Pod's address for TCP (`None`: an
/// in-process Wasm component).
#[derive(Clone)]
pub(crate) struct Target {
    pub workload: Arc<dyn Workload>,
    pub pod_ip: Option<IpAddr>,
}

/// One attempt: `Err` says why it failed.
async fn attempt(action: &Action, target: &Target) -> Result<(), String> {
    match action {
        Action::HttpGet {
            path,
            port,
            headers,
        } => {
            let host = match target.pod_ip {
                Some(ip) => SocketAddr::new(ip, *port).to_string(),
                None => format!("localhost:{port}"),
            };
            let mut req = http::Request::get(path.as_str())
                .header(http::header::HOST, host)
                .header(http::header::USER_AGENT, "ketch-probe/1")
                .header(http::header::ACCEPT, "*/*");
            for (k, v) in headers {
                req = req.header(k.as_str(), v.as_str());
            }
            let mut req = req
                .body(Body::empty())
                .map_err(|e| format!("building the request: {e}"))?;
            req.extensions_mut().insert(TargetPort(*port));
            let resp = target
                .workload
                .invoke(req)
                .await
                .map_err(|e| e.to_string())?;
            let code = resp.status().as_u16();
            if (200..400).contains(&code) {
                Ok(())
            } else {
                Err(format!("HTTP probe failed with statuscode: {code}"))
            }
        }
        Action::TcpSocket { port } => match target.pod_ip {
            Some(ip) => tokio::net::TcpStream::connect((ip, *port))
                .await
                .map(drop)
                .map_err(|e| format!("dial tcp {}: {e}", SocketAddr::new(ip, *port))),
            // An in-process component accepts on every port while it is loaded.
            None => Ok(()),
        },
    }
}

/// A probe attempt's result for the Pod worker: container index, its start generation,
/// the probe, and `Err(why)` on failure.
pub(crate) type Report = (usize, u64, Kind, Result<(), String>);

/// Runs `spec` against `target` until the returned task is aborted, reporting every
/// attempt.
pub(crate) fn spawn(
    spec: Spec,
    target: Target,
    container: usize,
    generation: u64,
    tx: mpsc::UnboundedSender<Report>,
) -> AbortOnDropHandle<()> {
    AbortOnDropHandle::new(tokio::spawn(async move {
        tokio::time::sleep(spec.initial_delay).await;
        let mut tick = tokio::time::interval(spec.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let result =
                match tokio::time::timeout(spec.timeout, attempt(&spec.action, &target)).await {
                    Ok(r) => r,
                    Err(_) => Err(format!(
                        "no answer within {}",
                        ketch_api::format::duration(spec.timeout)
                    )),
                };
            if tx.send((container, generation, spec.kind, result)).is_err() {
                return;
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ketch_api::core::{ContainerPort, HttpGetAction, TcpSocketAction};

    fn container() -> Container {
        Container {
            name: "app".into(),
            ports: vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }],
            readiness_probe: Some(Probe {
                http_get: Some(HttpGetAction {
                    path: Some("healthz".into()),
                    port: IntOrString::String("http".into()),
                    ..Default::default()
                }),
                period_seconds: Some(2),
                success_threshold: Some(2),
                ..Default::default()
            }),
            liveness_probe: Some(Probe {
                tcp_socket: Some(TcpSocketAction {
                    port: IntOrString::String("grpc".into()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_spec_takes_the_kubelet_defaults_and_resolves_named_ports() {
        let c = container();
        let r = Spec::of(Kind::Readiness, &c).unwrap().unwrap();
        assert_eq!(
            r.action,
            Action::HttpGet {
                path: "/healthz".into(),
                port: 8080,
                headers: vec![]
            }
        );
        assert_eq!(
            (r.initial_delay, r.period, r.timeout),
            (
                Duration::ZERO,
                Duration::from_secs(2),
                Duration::from_secs(1)
            )
        );
        assert_eq!((r.success_threshold, r.failure_threshold), (2, 3));
        assert_eq!(Spec::of(Kind::Startup, &c).unwrap(), None);
        let err = Spec::of(Kind::Liveness, &c).unwrap_err();
        assert!(err.contains("no port named \"grpc\""), "{err}");
    }

    fn spec(kind: Kind, success: u32, failure: u32) -> Spec {
        Spec {
            kind,
            action: Action::TcpSocket { port: 1 },
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    #[test]
    fn readiness_starts_failed_and_flips_only_after_its_thresholds() {
        let s = spec(Kind::Readiness, 2, 3);
        let mut t = Tracker::new(Kind::Readiness);
        assert_eq!(t.passing(), Some(false));
        assert_eq!(t.record(true, &s), None);
        assert_eq!(t.record(false, &s), None, "a failure resets the run");
        assert_eq!(t.record(true, &s), None);
        assert_eq!(t.record(true, &s), Some(true));
        assert_eq!(t.record(true, &s), None, "no change, no report");
        assert_eq!(t.record(false, &s), None);
        assert_eq!(t.record(false, &s), None);
        assert_eq!(t.record(false, &s), Some(false));
        assert_eq!(t.passing(), Some(false));
    }

    #[test]
    fn liveness_starts_passing_and_fails_after_failure_threshold_in_a_row() {
        let s = spec(Kind::Liveness, 1, 2);
        let mut t = Tracker::new(Kind::Liveness);
        assert_eq!(t.passing(), Some(true));
        assert_eq!(t.record(true, &s), None);
        assert_eq!(t.record(false, &s), None);
        assert_eq!(t.record(true, &s), None);
        assert_eq!(t.record(false, &s), None);
        assert_eq!(t.record(false, &s), Some(false));
    }

    #[test]
    fn startup_ends_by_passing_once_or_by_failure_threshold_in_a_row() {
        let s = spec(Kind::Startup, 1, 3);
        assert_eq!(Tracker::new(Kind::Startup).passing(), None);
        // Each run on a fresh tracker: the state changes reported, attempt by attempt.
        let cases: [(&[bool], &[Option<bool>]); 3] = [
            (&[true], &[Some(true)]),
            (&[false, false, true], &[None, None, Some(true)]),
            (&[false, false, false], &[None, None, Some(false)]),
        ];
        for (attempts, expected) in cases {
            let mut t = Tracker::new(Kind::Startup);
            let got: Vec<_> = attempts.iter().map(|ok| t.record(*ok, &s)).collect();
            assert_eq!(got, expected, "attempts {attempts:?}");
        }
    }
}
