//! Pod status from container states: a pure function, so phases and conditions are tested
//! without a server. Kubernetes rules: Running once every container has started and at least
//! one runs; Succeeded/Failed when every container has terminated for good; Pending before.

use ketch_api::core::{ContainerStatus, PodCondition, PodIp, PodStatus};

/// Inputs the agent knows besides the container statuses.
#[derive(Debug, Clone)]
pub struct PodFacts<'a> {
    pub existing: Option<&'a PodStatus>,
    pub host_ip: &'a str,
    pub pod_ip: &'a str,
    pub start_time: &'a str,
    pub now: &'a str,
}

/// Whether a container has terminated and will not be restarted.
pub fn is_final(c: &ContainerStatus, terminal: bool) -> bool {
    terminal && c.state.as_ref().is_some_and(|s| s.terminated.is_some())
}

/// Builds the status to write. `terminal[i]` says container `i` will not be restarted.
pub fn build(
    facts: &PodFacts<'_>,
    containers: Vec<ContainerStatus>,
    terminal: &[bool],
) -> PodStatus {
    let all_final = !containers.is_empty()
        && containers
            .iter()
            .zip(terminal)
            .all(|(c, t)| is_final(c, *t));
    let any_running = containers
        .iter()
        .any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()));
    let phase = if all_final {
        let ok = containers.iter().all(|c| {
            c.state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0)
        });
        if ok { "Succeeded" } else { "Failed" }
    } else if any_running {
        "Running"
    } else {
        "Pending"
    };
    let unready: Vec<&str> = containers
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let existing_conds: &[PodCondition] = facts
        .existing
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let cond = |type_: &str, ok: bool, reason: Option<String>, message: Option<String>| {
        let status = if ok { "True" } else { "False" };
        let prev = existing_conds.iter().find(|c| c.type_ == type_);
        let transition = match prev {
            Some(p) if p.status == status => p.last_transition_time.clone(),
            _ => Some(facts.now.to_string()),
        };
        PodCondition {
            type_: type_.into(),
            status: status.into(),
            reason,
            message,
            last_transition_time: transition,
            last_probe_time: None,
        }
    };
    let (reason, message) = if unready.is_empty() {
        (None, None)
    } else if all_final {
        (Some("PodCompleted".to_string()), None)
    } else {
        (
            Some("ContainersNotReady".to_string()),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    let ready = unready.is_empty() && !containers.is_empty();
    // Conditions the agent does not own (PodScheduled, set by the scheduler) are kept.
    let mut conditions: Vec<PodCondition> = existing_conds
        .iter()
        .filter(|c| {
            !matches!(
                c.type_.as_str(),
                "Initialized" | "ContainersReady" | "Ready"
            )
        })
        .cloned()
        .collect();
    conditions.push(cond("Initialized", true, None, None));
    conditions.push(cond(
        "ContainersReady",
        ready,
        reason.clone(),
        message.clone(),
    ));
    conditions.push(cond("Ready", ready, reason, message));
    PodStatus {
        phase: Some(phase.into()),
        conditions,
        host_ip: Some(facts.host_ip.into()),
        pod_ip: Some(facts.pod_ip.into()),
        pod_ips: vec![PodIp {
            ip: facts.pod_ip.into(),
        }],
        start_time: Some(
            facts
                .existing
                .and_then(|s| s.start_time.clone())
                .unwrap_or_else(|| facts.start_time.to_string()),
        ),
        message: None,
        reason: None,
        init_container_statuses: Vec::new(),
        container_statuses: containers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ketch_api::core::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    };

    fn facts(existing: Option<&PodStatus>) -> PodFacts<'_> {
        PodFacts {
            existing,
            host_ip: "127.0.0.1",
            pod_ip: "127.0.0.1",
            start_time: "T0",
            now: "T1",
        }
    }

    fn running(name: &str) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            ready: true,
            started: Some(true),
            state: Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some("T0".into()),
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }
    }

    fn waiting(name: &str, reason: &str) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.into()),
                    message: None,
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }
    }

    fn terminated(name: &str, code: i32) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: code,
                    ..ContainerStateTerminated::default()
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }
    }

    fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn all_containers_running_make_the_pod_running_and_ready() {
        let s = build(
            &facts(None),
            vec![running("a"), running("b")],
            &[false, false],
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(cond(&s, "ContainersReady").status, "True");
        assert_eq!(s.start_time.as_deref(), Some("T0"));
    }

    #[test]
    fn a_waiting_container_keeps_the_pod_unready_and_names_it() {
        let s = build(
            &facts(None),
            vec![running("a"), waiting("b", "ErrImagePull")],
            &[false, false],
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
        let ready = cond(&s, "Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [b]")
        );
        let s = build(
            &facts(None),
            vec![waiting("a", "InvalidComponent")],
            &[false],
        );
        assert_eq!(s.phase.as_deref(), Some("Pending"));
    }

    #[test]
    fn containers_terminated_for_good_end_the_pod() {
        let s = build(&facts(None), vec![terminated("a", 128)], &[true]);
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        let s = build(&facts(None), vec![terminated("a", 0)], &[true]);
        assert_eq!(s.phase.as_deref(), Some("Succeeded"));
        // Terminated but about to restart: not final.
        let s = build(&facts(None), vec![terminated("a", 1)], &[false]);
        assert_eq!(s.phase.as_deref(), Some("Pending"));
    }

    #[test]
    fn scheduler_conditions_and_unchanged_transition_times_are_kept() {
        let existing = PodStatus {
            conditions: vec![
                PodCondition {
                    type_: "PodScheduled".into(),
                    status: "True".into(),
                    last_transition_time: Some("T-1".into()),
                    ..PodCondition::default()
                },
                PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some("T-1".into()),
                    ..PodCondition::default()
                },
            ],
            start_time: Some("T-5".into()),
            ..PodStatus::default()
        };
        let s = build(&facts(Some(&existing)), vec![running("a")], &[false]);
        assert_eq!(cond(&s, "PodScheduled").status, "True");
        assert_eq!(
            cond(&s, "Ready").last_transition_time.as_deref(),
            Some("T-1")
        );
        assert_eq!(
            cond(&s, "Initialized").last_transition_time.as_deref(),
            Some("T1")
        );
        assert_eq!(s.start_time.as_deref(), Some("T-5"));
    }
}
