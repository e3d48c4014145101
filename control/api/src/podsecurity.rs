//! Pod Security admission: Kubernetes' Pod Security Standards (`privileged`, `baseline`,
//! `restricted`) as a pure function of a pod spec and a level, returning every violation with
//! the field path that causes it.
//!
//! A namespace chooses its level with the label `pod-security.kubernetes.io/enforce`; without
//! it the level is `baseline` (Kubernetes' built-in default is `privileged`: ketch runs
//! untrusted Pods next to each other, so the default prevents the known escalations). The API
//! server refuses a Pod that violates its namespace's level with Kubernetes' wording,
//! `violates PodSecurity "baseline:latest": …`. Only `latest` exists: there is one version of
//! these checks.
//!
//! # The checks, and the ones ketch needs no check for
//!
//! Baseline: privileged containers, capabilities added beyond the baseline set
//! ([`BASELINE_CAPABILITIES`]), host ports, a `seccompProfile` of type `Unconfined`.
//! Restricted adds: `allowPrivilegeEscalation: true`, capabilities not dropping `ALL` or adding
//! anything but `NET_BIND_SERVICE`, `runAsNonRoot` not true, `runAsUser: 0`, no seccomp
//! profile of type `RuntimeDefault` or `Localhost`.
//!
//! The other Kubernetes checks are about fields ketch's types do not have, so decoding
//! already refuses them by name: `hostNetwork`, `hostPID`, `hostIPC`, `hostPath` volumes,
//! `procMount`, `sysctls`, AppArmor and SELinux options, Windows `hostProcess`. Restricted's
//! volume types are satisfied by every volume ketch accepts (`emptyDir`, `configMap`,
//! `secret`).
//!
//! One difference from Kubernetes, on the lenient side where ketch's default is the strict
//! value: restricted accepts an unset `allowPrivilegeEscalation`, since ketch turns
//! `noNewPrivileges` on unless a container sets it to true (Kubernetes' default is false).

use std::collections::BTreeMap;
use std::fmt;

use crate::core::{Container, PodSpec, SeccompProfile, linux_capability};
use crate::validation::{FieldError, child, index, key};

/// The namespace label that chooses the level Pods are held to.
pub const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";

/// The namespace label that pins the version of the checks; only `latest` exists here.
pub const ENFORCE_VERSION_LABEL: &str = "pod-security.kubernetes.io/enforce-version";

/// The label prefix Kubernetes reserves for Pod Security.
const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";

/// The capabilities `baseline` lets a container add: Docker's defaults minus `NET_RAW`
/// (Kubernetes' list, Kubernetes spelling).
pub const BASELINE_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// A Pod Security Standards level, from the most open to the strictest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    /// The level of a namespace without the enforce label.
    pub const DEFAULT: Level = Level::Baseline;

    pub const NAMES: [&'static str; 3] = ["privileged", "baseline", "restricted"];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }

    /// The level a namespace's labels choose. A value validation would refuse (it never
    /// reaches the store) counts as `restricted`, as in Kubernetes: fail closed.
    pub fn of_namespace(labels: &BTreeMap<String, String>) -> Level {
        match labels.get(ENFORCE_LABEL) {
            None => Level::DEFAULT,
            Some(v) => Level::parse(v).unwrap_or(Level::Restricted),
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks a namespace's `pod-security.kubernetes.io/*` labels at `path` (`metadata.labels`):
/// `enforce` must name a level, `enforce-version` must be `latest`, and the `warn` and `audit`
/// modes are refused by name (ketch enforces; it has no warning or audit channel for them yet).
pub fn validate_namespace_labels(labels: &BTreeMap<String, String>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in labels {
        let Some(mode) = k.strip_prefix(LABEL_PREFIX) else {
            continue;
        };
        let field = key(path, k);
        match mode {
            "enforce" => {
                if Level::parse(v).is_none() {
                    errs.push(FieldError::not_supported(field, v, &Level::NAMES));
                }
            }
            "enforce-version" => {
                if v != "latest" {
                    errs.push(FieldError::not_supported(field, v, &["latest"]));
                }
            }
            "warn" | "audit" | "warn-version" | "audit-version" => {
                errs.push(FieldError::not_supported_yet(
                    field,
                    "the Pod Security warn and audit modes (use `pod-security.kubernetes.io/enforce`)",
                ));
            }
            _ => errs.push(FieldError::not_supported(
                field,
                k,
                &[ENFORCE_LABEL, ENFORCE_VERSION_LABEL],
            )),
        }
    }
    errs
}

/// One way a pod spec breaks a level: the check (Kubernetes' name for it), the field that
/// breaks it, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub check: &'static str,
    pub field: String,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}: {})", self.check, self.field, self.detail)
    }
}

/// The message for a refused Pod, Kubernetes' shape:
/// `violates PodSecurity "baseline:latest": non-default capabilities (spec.containers[0]…)`.
pub fn violation_message(level: Level, violations: &[Violation]) -> String {
    format!(
        "violates PodSecurity \"{level}:latest\": {}",
        violation_list(violations)
    )
}

/// The violations, comma-separated, each `check (field: detail)`.
pub fn violation_list(violations: &[Violation]) -> String {
    let list: Vec<String> = violations.iter().map(ToString::to_string).collect();
    list.join(", ")
}

fn seccomp_type(p: Option<&SeccompProfile>) -> Option<&str> {
    p.map(|p| p.type_.as_str())
}

/// Every violation of `level` in `spec`, whose field paths start at `path` (`spec`, or
/// `spec.template.spec` for a workload's template). Empty when the spec meets the level;
/// `privileged` has no checks.
pub fn check_pod_spec(spec: &PodSpec, level: Level, path: &str) -> Vec<Violation> {
    let mut out = Vec::new();
    if level == Level::Privileged {
        return out;
    }
    let psc = spec.security_context.as_ref();
    let psc_path = child(path, "securityContext");
    let containers: Vec<(String, &Container)> = spec
        .init_containers
        .iter()
        .enumerate()
        .map(|(i, c)| (index(&child(path, "initContainers"), i), c))
        .chain(
            spec.containers
                .iter()
                .enumerate()
                .map(|(i, c)| (index(&child(path, "containers"), i), c)),
        )
        .collect();
    let mut push = |check: &'static str, field: String, detail: String| {
        out.push(Violation {
            check,
            field,
            detail,
        });
    };

    // Baseline.
    if seccomp_type(psc.and_then(|s| s.seccomp_profile.as_ref())) == Some("Unconfined") {
        push(
            "seccompProfile",
            child(&child(&psc_path, "seccompProfile"), "type"),
            "must not be \"Unconfined\"".into(),
        );
    }
    for (p, c) in &containers {
        let sp = child(p, "securityContext");
        let sc = c.security_context.as_ref();
        if sc.and_then(|s| s.privileged) == Some(true) {
            push(
                "privileged",
                child(&sp, "privileged"),
                "must not be true".into(),
            );
        }
        let add = sc
            .and_then(|s| s.capabilities.as_ref())
            .map(|c| c.add.as_slice())
            .unwrap_or_default();
        for (j, name) in add.iter().enumerate() {
            let allowed =
                linux_capability(name).is_some_and(|c| BASELINE_CAPABILITIES.contains(&c));
            if !allowed {
                push(
                    "non-default capabilities",
                    index(&child(&child(&sp, "capabilities"), "add"), j),
                    format!(
                        "{name:?} is not allowed (allowed: {})",
                        BASELINE_CAPABILITIES.join(", ")
                    ),
                );
            }
        }
        for (j, port) in c.ports.iter().enumerate() {
            if port.host_port.is_some_and(|h| h != 0) {
                push(
                    "hostPort",
                    child(&index(&child(p, "ports"), j), "hostPort"),
                    "must be unset or 0".into(),
                );
            }
        }
        if seccomp_type(sc.and_then(|s| s.seccomp_profile.as_ref())) == Some("Unconfined") {
            push(
                "seccompProfile",
                child(&child(&sp, "seccompProfile"), "type"),
                "must not be \"Unconfined\"".into(),
            );
        }
    }
    if level == Level::Baseline {
        return out;
    }

    // Restricted.
    let pod_non_root = psc.and_then(|s| s.run_as_non_root);
    if pod_non_root == Some(false) {
        push(
            "runAsNonRoot != true",
            child(&psc_path, "runAsNonRoot"),
            "must not be false".into(),
        );
    }
    if psc.and_then(|s| s.run_as_user) == Some(0) {
        push(
            "runAsUser=0",
            child(&psc_path, "runAsUser"),
            "must not be 0".into(),
        );
    }
    let pod_seccomp_ok = matches!(
        seccomp_type(psc.and_then(|s| s.seccomp_profile.as_ref())),
        Some("RuntimeDefault" | "Localhost")
    );
    for (p, c) in &containers {
        let sp = child(p, "securityContext");
        let sc = c.security_context.as_ref();
        if sc.and_then(|s| s.allow_privilege_escalation) == Some(true) {
            push(
                "allowPrivilegeEscalation != false",
                child(&sp, "allowPrivilegeEscalation"),
                "must not be true".into(),
            );
        }
        let caps = sc.and_then(|s| s.capabilities.as_ref());
        let cp = child(&sp, "capabilities");
        let drops_all = caps.is_some_and(|c| c.drop.iter().any(|d| d.eq_ignore_ascii_case("ALL")));
        if !drops_all {
            push(
                "unrestricted capabilities",
                child(&cp, "drop"),
                "must include \"ALL\"".into(),
            );
        }
        for (j, name) in caps
            .map(|c| c.add.as_slice())
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if linux_capability(name) != Some("NET_BIND_SERVICE") {
                push(
                    "unrestricted capabilities",
                    index(&child(&cp, "add"), j),
                    format!("{name:?} is not allowed (only \"NET_BIND_SERVICE\")"),
                );
            }
        }
        match sc.and_then(|s| s.run_as_non_root) {
            Some(true) => {}
            Some(false) => push(
                "runAsNonRoot != true",
                child(&sp, "runAsNonRoot"),
                "must not be false".into(),
            ),
            None if pod_non_root == Some(true) => {}
            None => push(
                "runAsNonRoot != true",
                child(&sp, "runAsNonRoot"),
                format!("must be true (or {psc_path}.runAsNonRoot)"),
            ),
        }
        if sc.and_then(|s| s.run_as_user) == Some(0) {
            push(
                "runAsUser=0",
                child(&sp, "runAsUser"),
                "must not be 0".into(),
            );
        }
        match seccomp_type(sc.and_then(|s| s.seccomp_profile.as_ref())) {
            Some("RuntimeDefault" | "Localhost") => {}
            // Reported by the baseline check.
            Some("Unconfined") => {}
            _ if pod_seccomp_ok => {}
            _ => push(
                "seccompProfile",
                child(&child(&sp, "seccompProfile"), "type"),
                format!(
                    "must be \"RuntimeDefault\" or \"Localhost\" (or {psc_path}.seccompProfile.type)"
                ),
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Capabilities, ContainerPort, PodSecurityContext, SecurityContext};

    fn container(name: &str) -> Container {
        Container {
            name: name.into(),
            image: Some("busybox".into()),
            ..Default::default()
        }
    }

    fn spec_with(sc: SecurityContext) -> PodSpec {
        let mut c = container("a");
        c.security_context = Some(sc);
        PodSpec {
            containers: vec![c],
            ..Default::default()
        }
    }

    fn runtime_default() -> Option<SeccompProfile> {
        Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        })
    }

    fn unconfined() -> Option<SeccompProfile> {
        Some(SeccompProfile {
            type_: "Unconfined".into(),
            localhost_profile: None,
        })
    }

    /// A spec that meets `restricted`.
    fn restricted_ok() -> PodSpec {
        let mut spec = spec_with(SecurityContext {
            capabilities: Some(Capabilities {
                add: vec!["NET_BIND_SERVICE".into()],
                drop: vec!["ALL".into()],
            }),
            allow_privilege_escalation: Some(false),
            ..Default::default()
        });
        spec.security_context = Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(1000),
            seccomp_profile: runtime_default(),
            ..Default::default()
        });
        spec
    }

    fn fields(v: &[Violation]) -> Vec<String> {
        v.iter()
            .map(|v| format!("{}: {}", v.check, v.field))
            .collect()
    }

    #[test]
    fn a_minimal_pod_meets_baseline_but_not_restricted() {
        let spec = PodSpec {
            containers: vec![container("a")],
            ..Default::default()
        };
        assert!(check_pod_spec(&spec, Level::Baseline, "spec").is_empty());
        assert!(check_pod_spec(&spec, Level::Privileged, "spec").is_empty());
        assert_eq!(
            fields(&check_pod_spec(&spec, Level::Restricted, "spec")),
            [
                "unrestricted capabilities: spec.containers[0].securityContext.capabilities.drop",
                "runAsNonRoot != true: spec.containers[0].securityContext.runAsNonRoot",
                "seccompProfile: spec.containers[0].securityContext.seccompProfile.type",
            ]
        );
        assert!(check_pod_spec(&restricted_ok(), Level::Restricted, "spec").is_empty());
    }

    #[test]
    fn baseline_refuses_capabilities_beyond_its_set_and_privileged_allows_them() {
        let spec = spec_with(SecurityContext {
            capabilities: Some(Capabilities {
                add: vec!["CHOWN".into(), "cap_sys_admin".into(), "NET_RAW".into()],
                drop: vec![],
            }),
            ..Default::default()
        });
        let v = check_pod_spec(&spec, Level::Baseline, "spec");
        assert_eq!(
            fields(&v),
            [
                "non-default capabilities: spec.containers[0].securityContext.capabilities.add[1]",
                "non-default capabilities: spec.containers[0].securityContext.capabilities.add[2]",
            ]
        );
        assert!(
            v[0].detail.starts_with("\"cap_sys_admin\" is not allowed"),
            "{}",
            v[0].detail
        );
        assert!(check_pod_spec(&spec, Level::Privileged, "spec").is_empty());
        // Every capability Docker grants by default except NET_RAW may be added.
        let defaults = spec_with(SecurityContext {
            capabilities: Some(Capabilities {
                add: BASELINE_CAPABILITIES.map(String::from).to_vec(),
                drop: vec![],
            }),
            ..Default::default()
        });
        assert!(check_pod_spec(&defaults, Level::Baseline, "spec").is_empty());
    }

    #[test]
    fn baseline_refuses_privileged_containers_and_host_ports() {
        let mut spec = spec_with(SecurityContext {
            privileged: Some(true),
            ..Default::default()
        });
        spec.init_containers = vec![container("init")];
        spec.init_containers[0].ports = vec![ContainerPort {
            container_port: 80,
            host_port: Some(8080),
            ..Default::default()
        }];
        assert_eq!(
            fields(&check_pod_spec(
                &spec,
                Level::Baseline,
                "spec.template.spec"
            )),
            [
                "hostPort: spec.template.spec.initContainers[0].ports[0].hostPort",
                "privileged: spec.template.spec.containers[0].securityContext.privileged",
            ]
        );
    }

    #[test]
    fn unconfined_seccomp_is_refused_from_baseline_up_at_pod_and_container_level() {
        let mut spec = spec_with(SecurityContext {
            seccomp_profile: unconfined(),
            ..Default::default()
        });
        spec.security_context = Some(PodSecurityContext {
            seccomp_profile: unconfined(),
            ..Default::default()
        });
        assert_eq!(
            fields(&check_pod_spec(&spec, Level::Baseline, "spec")),
            [
                "seccompProfile: spec.securityContext.seccompProfile.type",
                "seccompProfile: spec.containers[0].securityContext.seccompProfile.type",
            ]
        );
        assert!(check_pod_spec(&spec, Level::Privileged, "spec").is_empty());
        // RuntimeDefault at the Pod, Unconfined in the container: still Unconfined.
        let mut spec = restricted_ok();
        spec.containers[0]
            .security_context
            .as_mut()
            .unwrap()
            .seccomp_profile = unconfined();
        assert_eq!(
            fields(&check_pod_spec(&spec, Level::Restricted, "spec")),
            ["seccompProfile: spec.containers[0].securityContext.seccompProfile.type"]
        );
    }

    #[test]
    fn restricted_requires_drop_all_and_adds_only_net_bind_service() {
        let mut spec = restricted_ok();
        spec.containers[0]
            .security_context
            .as_mut()
            .unwrap()
            .capabilities = Some(Capabilities {
            add: vec!["NET_BIND_SERVICE".into(), "CHOWN".into()],
            drop: vec!["NET_RAW".into()],
        });
        assert_eq!(
            fields(&check_pod_spec(&spec, Level::Restricted, "spec")),
            [
                "unrestricted capabilities: spec.containers[0].securityContext.capabilities.drop",
                "unrestricted capabilities: spec.containers[0].securityContext.capabilities.add[1]",
            ]
        );
    }

    #[test]
    fn restricted_requires_run_as_non_root_at_pod_or_every_container_and_no_uid_0() {
        let mut spec = restricted_ok();
        spec.security_context.as_mut().unwrap().run_as_non_root = None;
        spec.containers.push(restricted_ok().containers.remove(0));
        spec.containers[1].name = "b".into();
        spec.containers[1]
            .security_context
            .as_mut()
            .unwrap()
            .run_as_non_root = Some(true);
        assert_eq!(
            fields(&check_pod_spec(&spec, Level::Restricted, "spec")),
            ["runAsNonRoot != true: spec.containers[0].securityContext.runAsNonRoot"]
        );
        spec.containers[0]
            .security_context
            .as_mut()
            .unwrap()
            .run_as_non_root = Some(true);
        assert!(check_pod_spec(&spec, Level::Restricted, "spec").is_empty());

        let mut spec = restricted_ok();
        spec.security_context.as_mut().unwrap().run_as_user = Some(0);
        let csc = spec.containers[0].security_context.as_mut().unwrap();
        csc.run_as_user = Some(0);
        csc.run_as_non_root = Some(false);
        assert_eq!(
            fields(&check_pod_spec(&spec, Level::Restricted, "spec")),
            [
                "runAsUser=0: spec.securityContext.runAsUser",
                "runAsNonRoot != true: spec.containers[0].securityContext.runAsNonRoot",
                "runAsUser=0: spec.containers[0].securityContext.runAsUser",
            ]
        );
    }

    #[test]
    fn restricted_refuses_privilege_escalation_but_accepts_ketchs_default() {
        let mut spec = restricted_ok();
        let csc = spec.containers[0].security_context.as_mut().unwrap();
        csc.allow_privilege_escalation = None;
        assert!(check_pod_spec(&spec, Level::Restricted, "spec").is_empty());
        let csc = spec.containers[0].security_context.as_mut().unwrap();
        csc.allow_privilege_escalation = Some(true);
        assert_eq!(
            fields(&check_pod_spec(&spec, Level::Restricted, "spec")),
            [
                "allowPrivilegeEscalation != false: spec.containers[0].securityContext.allowPrivilegeEscalation"
            ]
        );
        assert!(check_pod_spec(&spec, Level::Baseline, "spec").is_empty());
    }

    #[test]
    fn restricted_takes_the_seccomp_profile_from_the_pod_or_each_container() {
        let mut spec = restricted_ok();
        spec.security_context.as_mut().unwrap().seccomp_profile = None;
        assert_eq!(
            fields(&check_pod_spec(&spec, Level::Restricted, "spec")),
            ["seccompProfile: spec.containers[0].securityContext.seccompProfile.type"]
        );
        spec.containers[0]
            .security_context
            .as_mut()
            .unwrap()
            .seccomp_profile = runtime_default();
        assert!(check_pod_spec(&spec, Level::Restricted, "spec").is_empty());
    }

    #[test]
    fn the_message_has_kubernetes_shape_and_names_each_field() {
        let v = check_pod_spec(
            &spec_with(SecurityContext {
                capabilities: Some(Capabilities {
                    add: vec!["SYS_ADMIN".into()],
                    drop: vec![],
                }),
                ..Default::default()
            }),
            Level::Baseline,
            "spec",
        );
        let msg = violation_message(Level::Baseline, &v);
        assert!(
            msg.starts_with(
                "violates PodSecurity \"baseline:latest\": non-default capabilities \
                 (spec.containers[0].securityContext.capabilities.add[0]: \"SYS_ADMIN\" is not allowed"
            ),
            "{msg}"
        );
    }

    #[test]
    fn the_namespace_label_chooses_the_level_baseline_by_default() {
        let labels = |v: &str| BTreeMap::from([(ENFORCE_LABEL.to_string(), v.to_string())]);
        assert_eq!(Level::of_namespace(&BTreeMap::new()), Level::Baseline);
        assert_eq!(
            Level::of_namespace(&labels("privileged")),
            Level::Privileged
        );
        assert_eq!(
            Level::of_namespace(&labels("restricted")),
            Level::Restricted
        );
        assert_eq!(Level::of_namespace(&labels("nonsense")), Level::Restricted);
    }

    #[test]
    fn namespace_labels_must_name_a_level_and_warn_and_audit_are_refused_by_name() {
        let labels: BTreeMap<String, String> = [
            (ENFORCE_LABEL, "strict"),
            (ENFORCE_VERSION_LABEL, "v1.30"),
            ("pod-security.kubernetes.io/warn", "restricted"),
            ("app", "x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let errs: Vec<String> = validate_namespace_labels(&labels, "metadata.labels")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(
            errs[0].starts_with(
                "metadata.labels[pod-security.kubernetes.io/enforce]: Unsupported value: \"strict\""
            ),
            "{errs:?}"
        );
        assert!(errs[0].contains("\"baseline\""), "{errs:?}");
        assert!(errs[1].contains("enforce-version"), "{errs:?}");
        assert!(
            errs[2].contains("warn") && errs[2].contains("not supported yet"),
            "{errs:?}"
        );
        let ok = BTreeMap::from([
            (ENFORCE_LABEL.to_string(), "restricted".to_string()),
            (ENFORCE_VERSION_LABEL.to_string(), "latest".to_string()),
        ]);
        assert!(validate_namespace_labels(&ok, "metadata.labels").is_empty());
    }
}
