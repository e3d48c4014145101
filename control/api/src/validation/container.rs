//! One container of a pod spec: name and image, ports, environment, resources, probes,
//! security context (capabilities, no privileged mode) and volume mounts.

use std::collections::BTreeSet;

use super::field::{
    FieldError, check, check_non_negative, check_one_of, check_port, child, index, key, quote,
};
use super::format::{
    is_config_map_key, is_dns1123_label, is_env_var_name, is_port_name, is_qualified_name,
};
use super::meta::validate_quantity;
use crate::core::{Container, IntOrString, Probe, SeccompProfile, linux_capability};
use crate::quantity::Quantity;

/// The protocols of a container, Service or EndpointSlice port.
pub(super) const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];

/// Each entry must name a Linux capability ([`crate::core::LINUX_CAPABILITIES`], any case,
/// `CAP_` prefix optional); `ALL` only where `all_allowed` (`drop`): adding every capability
/// is as good as `privileged`, which ketch does not support.
fn validate_capabilities(
    errs: &mut Vec<FieldError>,
    path: &str,
    names: &[String],
    all_allowed: bool,
) {
    for (j, name) in names.iter().enumerate() {
        let field = index(path, j);
        if name.eq_ignore_ascii_case("ALL") {
            if !all_allowed {
                errs.push(FieldError::forbidden(
                    field,
                    "adding ALL capabilities is not supported: list the capabilities the container needs",
                ));
            }
        } else if linux_capability(name).is_none() {
            errs.push(FieldError::invalid_str(
                field,
                name,
                "not a Linux capability: use a name from capabilities(7) without the CAP_ prefix, such as \"NET_ADMIN\"",
            ));
        }
    }
}

/// The seccomp profile types of Kubernetes. `Localhost` (a JSON profile file on the node) is
/// refused by name: the agent has no profile directory to read it from yet, and accepting it
/// would mean running the container under a filter other than the one asked for.
pub(super) fn validate_seccomp_profile(errs: &mut Vec<FieldError>, p: &str, sp: &SeccompProfile) {
    let type_field = child(p, "type");
    let localhost_field = child(p, "localhostProfile");
    match sp.type_.as_str() {
        "" => errs.push(FieldError::required(type_field, "")),
        "RuntimeDefault" | "Unconfined" => {
            if let Some(profile) = &sp.localhost_profile {
                errs.push(FieldError::invalid_str(
                    localhost_field,
                    profile,
                    "can only be set for type `Localhost`",
                ));
            }
        }
        "Localhost" => errs.push(FieldError::not_supported_yet(
            localhost_field,
            "a Localhost seccomp profile (a profile file on the node); use `RuntimeDefault`",
        )),
        other => errs.push(FieldError::not_supported(
            type_field,
            other,
            &["RuntimeDefault", "Unconfined", "Localhost"],
        )),
    }
}

pub(super) fn validate_container(
    c: &Container,
    p: &str,
    volumes: &BTreeSet<&str>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if c.name.is_empty() {
        errs.push(FieldError::required(child(p, "name"), ""));
    } else {
        check(
            &mut errs,
            &child(p, "name"),
            &c.name,
            is_dns1123_label(&c.name),
        );
    }
    match c.image.as_deref() {
        None => errs.push(FieldError::required(child(p, "image"), "")),
        Some(img) if img.trim().is_empty() => {
            errs.push(FieldError::required(child(p, "image"), ""));
        }
        Some(img) if img.trim() != img => errs.push(FieldError::invalid_str(
            child(p, "image"),
            img,
            "must not have leading or trailing whitespace",
        )),
        _ => {}
    }
    check_one_of(
        &mut errs,
        child(p, "imagePullPolicy"),
        c.image_pull_policy.as_deref(),
        &["Always", "IfNotPresent", "Never"],
    );

    let mut port_names = BTreeSet::new();
    for (i, port) in c.ports.iter().enumerate() {
        let pp = index(&child(p, "ports"), i);
        if let Some(name) = &port.name {
            check(&mut errs, &child(&pp, "name"), name, is_port_name(name));
            if !port_names.insert(name.as_str()) {
                errs.push(FieldError::duplicate(child(&pp, "name"), quote(name)));
            }
        }
        check_port(&mut errs, child(&pp, "containerPort"), port.container_port);
        if let Some(hp) = port.host_port
            && hp != 0
        {
            // Nothing on the node forwards a host port to a Pod: accepting one would publish
            // nothing while saying it did. (Pod Security's baseline forbids it anyway.)
            errs.push(FieldError::not_supported_yet(
                child(&pp, "hostPort"),
                "a host port (use a NodePort Service)",
            ));
        }
        check_one_of(
            &mut errs,
            child(&pp, "protocol"),
            port.protocol.as_deref(),
            PROTOCOLS,
        );
    }

    for (i, env) in c.env.iter().enumerate() {
        let ep = index(&child(p, "env"), i);
        if env.name.is_empty() {
            errs.push(FieldError::required(child(&ep, "name"), ""));
        } else {
            check(
                &mut errs,
                &child(&ep, "name"),
                &env.name,
                is_env_var_name(&env.name),
            );
        }
        if let Some(from) = &env.value_from {
            let fp = child(&ep, "valueFrom");
            if env.value.as_deref().is_some_and(|v| !v.is_empty()) {
                errs.push(FieldError::invalid(
                    fp.clone(),
                    "",
                    "may not be specified when `value` is not empty",
                ));
            }
            let n = [
                from.config_map_key_ref.is_some(),
                from.secret_key_ref.is_some(),
                from.field_ref.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if n != 1 {
                errs.push(FieldError::invalid(
                    fp.clone(),
                    "",
                    "must specify exactly one of: `configMapKeyRef`, `secretKeyRef` or `fieldRef`",
                ));
            }
            for (field, sel) in [
                ("configMapKeyRef", &from.config_map_key_ref),
                ("secretKeyRef", &from.secret_key_ref),
            ] {
                if let Some(sel) = sel {
                    let sp = child(&fp, field);
                    if sel.name.is_empty() {
                        errs.push(FieldError::required(child(&sp, "name"), ""));
                    }
                    if sel.key.is_empty() {
                        errs.push(FieldError::required(child(&sp, "key"), ""));
                    } else {
                        check(
                            &mut errs,
                            &child(&sp, "key"),
                            &sel.key,
                            is_config_map_key(&sel.key),
                        );
                    }
                }
            }
            if let Some(fr) = &from.field_ref
                && fr.field_path.is_empty()
            {
                errs.push(FieldError::required(
                    child(&child(&fp, "fieldRef"), "fieldPath"),
                    "",
                ));
            }
        }
    }

    for (i, ef) in c.env_from.iter().enumerate() {
        let ep = index(&child(p, "envFrom"), i);
        if let Some(prefix) = ef.prefix.as_deref().filter(|s| !s.is_empty()) {
            check(
                &mut errs,
                &child(&ep, "prefix"),
                prefix,
                is_env_var_name(prefix),
            );
        }
        match (&ef.config_map_ref, &ef.secret_ref) {
            (Some(_), Some(_)) => errs.push(FieldError::invalid(
                ep.clone(),
                "",
                "may not have more than one field specified at a time",
            )),
            (None, None) => errs.push(FieldError::required(
                ep.clone(),
                "must specify one of: `configMapRef` or `secretRef`",
            )),
            (Some(r), None) | (None, Some(r)) => {
                let field = if ef.config_map_ref.is_some() {
                    "configMapRef"
                } else {
                    "secretRef"
                };
                if r.name.is_empty() {
                    errs.push(FieldError::required(child(&child(&ep, field), "name"), ""));
                }
            }
        }
    }

    if let Some(res) = &c.resources {
        let rp = child(p, "resources");
        for (field, map) in [("limits", &res.limits), ("requests", &res.requests)] {
            for (name, q) in map {
                let qp = key(&child(&rp, field), name);
                check(&mut errs, &qp, name, is_qualified_name(name));
                errs.extend(validate_quantity(q, &qp));
            }
        }
        for (name, req) in &res.requests {
            let Some(limit) = res.limits.get(name) else {
                continue;
            };
            // CPU is compared in millis, everything else in whole units.
            let cmp = |q: &Quantity| {
                if name == "cpu" { q.millis() } else { q.value() }
            };
            if let (Ok(r), Ok(l)) = (cmp(req), cmp(limit))
                && r > l
            {
                errs.push(FieldError::invalid_str(
                    key(&child(&rp, "requests"), name),
                    &req.0,
                    format!("must be less than or equal to {name} limit of {}", limit.0),
                ));
            }
        }
    }

    for (field, probe) in [
        ("readinessProbe", &c.readiness_probe),
        ("livenessProbe", &c.liveness_probe),
        ("startupProbe", &c.startup_probe),
    ] {
        if let Some(probe) = probe {
            errs.extend(validate_probe(
                probe,
                &child(p, field),
                field != "readinessProbe",
            ));
        }
    }

    if let Some(sc) = &c.security_context {
        let sp = child(p, "securityContext");
        check_non_negative(&mut errs, child(&sp, "runAsUser"), sc.run_as_user);
        check_non_negative(&mut errs, child(&sp, "runAsGroup"), sc.run_as_group);
        if sc.privileged == Some(true) {
            // A privileged container gets every capability, every device and no seccomp or
            // masked paths: ketch runs untrusted Pods next to each other and offers none of it.
            errs.push(FieldError::forbidden(
                child(&sp, "privileged"),
                "privileged containers are not supported",
            ));
            if sc.allow_privilege_escalation == Some(false) {
                errs.push(FieldError::invalid(
                    child(&sp, "allowPrivilegeEscalation"),
                    false,
                    "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
                ));
            }
        }
        if let Some(caps) = &sc.capabilities {
            let cp = child(&sp, "capabilities");
            validate_capabilities(&mut errs, &child(&cp, "add"), &caps.add, false);
            validate_capabilities(&mut errs, &child(&cp, "drop"), &caps.drop, true);
        }
        if let Some(profile) = &sc.seccomp_profile {
            validate_seccomp_profile(&mut errs, &child(&sp, "seccompProfile"), profile);
        }
    }

    let mut mount_paths = BTreeSet::new();
    for (i, m) in c.volume_mounts.iter().enumerate() {
        let mp = index(&child(p, "volumeMounts"), i);
        if m.name.is_empty() {
            errs.push(FieldError::required(child(&mp, "name"), ""));
        } else if !volumes.contains(m.name.as_str()) {
            errs.push(FieldError::not_supported(
                child(&mp, "name"),
                &m.name,
                &volumes.iter().copied().collect::<Vec<_>>(),
            ));
        }
        if m.mount_path.is_empty() {
            errs.push(FieldError::required(child(&mp, "mountPath"), ""));
        } else if !mount_paths.insert(m.mount_path.as_str()) {
            errs.push(FieldError::invalid_str(
                child(&mp, "mountPath"),
                &m.mount_path,
                "must be unique",
            ));
        }
        if let Some(sub) = &m.sub_path
            && (sub.starts_with('/') || sub.split('/').any(|s| s == ".."))
        {
            errs.push(FieldError::invalid_str(
                child(&mp, "subPath"),
                sub,
                "must be a relative path without '..'",
            ));
        }
    }
    errs
}

fn validate_probe(probe: &Probe, p: &str, success_must_be_one: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let handlers = [
        probe.http_get.is_some(),
        probe.tcp_socket.is_some(),
        probe.exec.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if handlers == 0 {
        errs.push(FieldError::required(
            p.to_string(),
            "must specify a handler type (httpGet, tcpSocket or exec)",
        ));
    } else if handlers > 1 {
        errs.push(FieldError::forbidden(
            p.to_string(),
            "may not specify more than 1 handler type",
        ));
    }
    if let Some(h) = &probe.http_get {
        let hp = child(p, "httpGet");
        errs.extend(validate_port_ref(&h.port, &child(&hp, "port")));
        check_one_of(
            &mut errs,
            child(&hp, "scheme"),
            h.scheme.as_deref(),
            &["HTTP", "HTTPS"],
        );
        // The agent probes the Pod itself over plain HTTP (in-process for Wasm).
        if h.scheme.as_deref() == Some("HTTPS") {
            errs.push(FieldError::not_supported_yet(
                child(&hp, "scheme"),
                "an HTTPS probe",
            ));
        }
        if h.host.as_deref().is_some_and(|h| !h.is_empty()) {
            errs.push(FieldError::not_supported_yet(
                child(&hp, "host"),
                "probing a host other than the Pod",
            ));
        }
        for (i, header) in h.http_headers.iter().enumerate() {
            if header.name.is_empty() {
                errs.push(FieldError::required(
                    child(&index(&child(&hp, "httpHeaders"), i), "name"),
                    "",
                ));
            }
        }
    }
    if let Some(t) = &probe.tcp_socket {
        errs.extend(validate_port_ref(
            &t.port,
            &child(&child(p, "tcpSocket"), "port"),
        ));
    }
    if let Some(e) = &probe.exec {
        if e.command.is_empty() {
            errs.push(FieldError::required(
                child(&child(p, "exec"), "command"),
                "",
            ));
        } else {
            errs.push(FieldError::not_supported_yet(
                child(p, "exec"),
                "an exec probe (use httpGet or tcpSocket)",
            ));
        }
    }
    check_non_negative(
        &mut errs,
        child(p, "initialDelaySeconds"),
        probe.initial_delay_seconds.map(i64::from),
    );
    for (field, v) in [
        ("periodSeconds", probe.period_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ] {
        if let Some(v) = v
            && v < 1
        {
            errs.push(FieldError::invalid(
                child(p, field),
                v,
                "must be greater than or equal to 1",
            ));
        }
    }
    if success_must_be_one
        && let Some(v) = probe.success_threshold
        && v != 1
    {
        errs.push(FieldError::invalid(
            child(p, "successThreshold"),
            v,
            "must be 1",
        ));
    }
    errs
}

/// A port given by number (1–65535) or by IANA service name.
pub(super) fn validate_port_ref(port: &IntOrString, p: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match port {
        IntOrString::Int(n) => check_port(&mut errs, p.to_string(), *n),
        IntOrString::String(s) => check(&mut errs, p, s, is_port_name(s)),
    }
    errs
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::core::{
        Capabilities, ContainerPort, ExecAction, HttpGetAction, ResourceRequirements,
        SecurityContext, TcpSocketAction,
    };
    use crate::validation::fixtures::{container, pod, strings};

    fn seccomp(t: &str, localhost: Option<&str>) -> Option<SeccompProfile> {
        Some(SeccompProfile {
            type_: t.into(),
            localhost_profile: localhost.map(String::from),
        })
    }

    fn errors(p: &crate::core::Pod) -> Vec<String> {
        validate_pod(p).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn seccomp_profiles_are_runtime_default_or_unconfined_and_localhost_is_refused_by_name() {
        for t in ["RuntimeDefault", "Unconfined"] {
            let mut c = container("a");
            c.security_context = Some(SecurityContext {
                seccomp_profile: seccomp(t, None),
                ..Default::default()
            });
            assert!(validate_pod(&pod(vec![c])).is_empty(), "{t}");
        }
        let cases = [
            (
                seccomp("Localhost", Some("p.json")),
                "spec.containers[0].securityContext.seccompProfile.localhostProfile: Unsupported value: a Localhost seccomp profile (a profile file on the node); use `RuntimeDefault` is not supported yet",
            ),
            (
                seccomp("RuntimeDefault", Some("p.json")),
                "spec.containers[0].securityContext.seccompProfile.localhostProfile: Invalid value: \"p.json\": can only be set for type `Localhost`",
            ),
            (
                seccomp("", None),
                "spec.containers[0].securityContext.seccompProfile.type: Required value",
            ),
        ];
        for (profile, want) in cases {
            let mut c = container("a");
            c.security_context = Some(SecurityContext {
                seccomp_profile: profile,
                ..Default::default()
            });
            assert_eq!(errors(&pod(vec![c])), [want]);
        }
        let mut c = container("a");
        c.security_context = Some(SecurityContext {
            seccomp_profile: seccomp("Strict", None),
            ..Default::default()
        });
        let errs = errors(&pod(vec![c]));
        assert!(
            errs[0].starts_with("spec.containers[0].securityContext.seccompProfile.type: Unsupported value: \"Strict\""),
            "{errs:?}"
        );
        // The Pod's own profile is checked the same way.
        let mut p = pod(vec![container("a")]);
        p.spec.as_mut().unwrap().security_context = Some(crate::core::PodSecurityContext {
            seccomp_profile: seccomp("Localhost", Some("p.json")),
            ..Default::default()
        });
        let errs = errors(&p);
        assert!(
            errs[0].starts_with(
                "spec.securityContext.seccompProfile.localhostProfile: Unsupported value"
            ),
            "{errs:?}"
        );
    }

    #[test]
    fn host_users_false_and_host_ports_are_refused_by_name() {
        let mut p = pod(vec![container("a")]);
        p.spec.as_mut().unwrap().host_users = Some(false);
        let errs = errors(&p);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("spec.hostUsers: Unsupported value: a user namespace per Pod"),
            "{errs:?}"
        );
        p.spec.as_mut().unwrap().host_users = Some(true);
        assert!(errors(&p).is_empty());

        let mut c = container("a");
        c.ports = vec![ContainerPort {
            container_port: 80,
            host_port: Some(8080),
            ..Default::default()
        }];
        assert_eq!(
            errors(&pod(vec![c.clone()])),
            [
                "spec.containers[0].ports[0].hostPort: Unsupported value: a host port (use a NodePort Service) is not supported yet"
            ]
        );
        c.ports[0].host_port = Some(0);
        assert!(errors(&pod(vec![c])).is_empty());
    }
    use crate::validation::validate_pod;

    #[test]
    fn privileged_containers_are_forbidden() {
        let mut c = container("a");
        c.security_context = Some(SecurityContext {
            privileged: Some(true),
            ..Default::default()
        });
        assert_eq!(
            strings(&validate_pod(&pod(vec![c]))),
            vec![
                "spec.containers[0].securityContext.privileged: Forbidden: privileged containers are not supported"
            ]
        );
        let mut unprivileged = container("a");
        unprivileged.security_context = Some(SecurityContext {
            privileged: Some(false),
            ..Default::default()
        });
        assert!(validate_pod(&pod(vec![unprivileged])).is_empty());
    }

    #[test]
    fn http_and_tcp_probes_are_accepted_exec_https_and_other_hosts_are_not_yet() {
        let http = |scheme: Option<&str>, host: Option<&str>| Probe {
            http_get: Some(HttpGetAction {
                path: Some("/healthz".into()),
                port: IntOrString::Int(8080),
                scheme: scheme.map(str::to_string),
                host: host.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut ok = container("a");
        ok.readiness_probe = Some(http(Some("HTTP"), None));
        ok.liveness_probe = Some(Probe {
            tcp_socket: Some(TcpSocketAction {
                port: IntOrString::Int(8080),
            }),
            ..Default::default()
        });
        assert!(validate_pod(&pod(vec![ok])).is_empty());
        let mut c = container("a");
        c.readiness_probe = Some(http(Some("HTTPS"), Some("10.0.0.1")));
        c.startup_probe = Some(Probe {
            exec: Some(ExecAction {
                command: vec!["true".into()],
            }),
            ..Default::default()
        });
        assert_eq!(
            strings(&validate_pod(&pod(vec![c]))),
            vec![
                "spec.containers[0].readinessProbe.httpGet.scheme: Unsupported value: an HTTPS probe is not supported yet",
                "spec.containers[0].readinessProbe.httpGet.host: Unsupported value: probing a host other than the Pod is not supported yet",
                "spec.containers[0].startupProbe.exec: Unsupported value: an exec probe (use httpGet or tcpSocket) is not supported yet",
            ]
        );
    }

    #[test]
    fn capabilities_must_be_linux_capabilities_and_all_may_only_be_dropped() {
        let mut c = container("a");
        c.security_context = Some(SecurityContext {
            capabilities: Some(Capabilities {
                add: vec![
                    "NET_ADMIN".into(),
                    "cap_sys_time".into(),
                    "FOO".into(),
                    "ALL".into(),
                ],
                drop: vec!["ALL".into(), "CAP_CHOWN".into(), "NET-RAW".into()],
            }),
            ..Default::default()
        });
        assert_eq!(
            strings(&validate_pod(&pod(vec![c]))),
            vec![
                "spec.containers[0].securityContext.capabilities.add[2]: Invalid value: \"FOO\": not a Linux capability: use a name from capabilities(7) without the CAP_ prefix, such as \"NET_ADMIN\"",
                "spec.containers[0].securityContext.capabilities.add[3]: Forbidden: adding ALL capabilities is not supported: list the capabilities the container needs",
                "spec.containers[0].securityContext.capabilities.drop[2]: Invalid value: \"NET-RAW\": not a Linux capability: use a name from capabilities(7) without the CAP_ prefix, such as \"NET_ADMIN\"",
            ]
        );
    }

    #[test]
    fn capability_names_are_matched_in_any_case_with_or_without_the_cap_prefix() {
        assert_eq!(linux_capability("NET_ADMIN"), Some("NET_ADMIN"));
        assert_eq!(linux_capability("net_admin"), Some("NET_ADMIN"));
        assert_eq!(linux_capability("CAP_SYS_ADMIN"), Some("SYS_ADMIN"));
        assert_eq!(linux_capability("cap_syslog"), Some("SYSLOG"));
        assert_eq!(linux_capability("ALL"), None);
        assert_eq!(linux_capability("CAP_"), None);
        assert_eq!(linux_capability(""), None);
        let unique: BTreeSet<_> = crate::core::LINUX_CAPABILITIES.iter().collect();
        assert_eq!(unique.len(), crate::core::LINUX_CAPABILITIES.len());
    }

    #[test]
    fn negative_or_malformed_resource_quantities_are_rejected() {
        let mut c = container("a");
        c.resources = Some(ResourceRequirements {
            requests: BTreeMap::from([
                ("cpu".to_string(), Quantity::new("-1")),
                ("memory".to_string(), Quantity::new("lots")),
            ]),
            limits: BTreeMap::new(),
        });
        let errs = strings(&validate_pod(&pod(vec![c])));
        assert_eq!(
            errs,
            vec![
                "spec.containers[0].resources.requests[cpu]: Invalid value: \"-1\": quantity \"-1\" must not be negative",
                "spec.containers[0].resources.requests[memory]: Invalid value: \"lots\": quantity \"lots\" is not a number with an optional suffix (e.g. \"250m\", \"128Mi\", \"1.5\")",
            ]
        );
    }

    #[test]
    fn requests_may_not_exceed_limits() {
        let mut c = container("a");
        c.resources = Some(ResourceRequirements {
            requests: BTreeMap::from([("cpu".to_string(), Quantity::new("2"))]),
            limits: BTreeMap::from([("cpu".to_string(), Quantity::new("500m"))]),
        });
        let errs = strings(&validate_pod(&pod(vec![c])));
        assert_eq!(
            errs,
            vec![
                "spec.containers[0].resources.requests[cpu]: Invalid value: \"2\": must be less than or equal to cpu limit of 500m"
            ]
        );
    }

    #[test]
    fn container_ports_must_be_in_range_and_uniquely_named() {
        let mut c = container("a");
        c.ports = vec![
            ContainerPort {
                name: Some("http".into()),
                container_port: 80,
                ..Default::default()
            },
            ContainerPort {
                name: Some("http".into()),
                container_port: 70000,
                protocol: Some("ICMP".into()),
                ..Default::default()
            },
        ];
        let errs = strings(&validate_pod(&pod(vec![c])));
        assert_eq!(
            errs,
            vec![
                "spec.containers[0].ports[1].name: Duplicate value: \"http\"",
                "spec.containers[0].ports[1].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.containers[0].ports[1].protocol: Unsupported value: \"ICMP\": supported values: \"TCP\", \"UDP\", \"SCTP\"",
            ]
        );
    }

    #[test]
    fn volume_mounts_must_name_a_declared_volume() {
        let mut c = container("a");
        c.volume_mounts = vec![crate::core::VolumeMount {
            name: "data".into(),
            mount_path: "/d".into(),
            ..Default::default()
        }];
        let errs = strings(&validate_pod(&pod(vec![c])));
        assert_eq!(
            errs,
            vec!["spec.containers[0].volumeMounts[0].name: Unsupported value: \"data\""]
        );
    }
}
