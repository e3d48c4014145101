//! What routes traffic to Pods: Services (ClusterIP and NodePort), EndpointSlices and
//! Ingresses.

use crate::wellknown::AnnotationScope;
use std::collections::BTreeSet;
use std::net::IpAddr;

use super::container::{PROTOCOLS, validate_port_ref};
use super::field::{
    FieldError, FieldErrorKind, check, check_one_of, check_port, child, index, quote,
};
use super::format::{
    is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_ip_address, is_port_name,
    is_qualified_name, is_wildcard_dns1123_subdomain,
};
use super::meta::{NameFormat, validate_labels, validate_object_meta};
use crate::core::{IntOrString, Service};
use crate::discovery::{
    ADDRESS_TYPE_FQDN, ADDRESS_TYPE_IPV4, ADDRESS_TYPE_IPV6, EndpointSlice, special_address,
};
use crate::networking::{
    Ingress, IngressBackend, PATH_TYPE_EXACT, PATH_TYPE_IMPLEMENTATION_SPECIFIC, PATH_TYPE_PREFIX,
};

/// Validates a Service.
pub fn validate_service(svc: &Service) -> Vec<FieldError> {
    let mut errs = validate_object_meta(
        &svc.metadata,
        true,
        NameFormat::Dns1035Label,
        AnnotationScope::Service,
        "metadata",
    );
    let Some(spec) = &svc.spec else {
        errs.push(FieldError::required("spec", ""));
        return errs;
    };
    let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
    match ty {
        "ClusterIP" | "NodePort" => {}
        "LoadBalancer" | "ExternalName" => errs.push(FieldError {
            field: "spec.type".into(),
            kind: FieldErrorKind::NotSupported(vec!["ClusterIP".into(), "NodePort".into()]),
            detail: format!("{} (not supported yet)", quote(ty)),
        }),
        other => errs.push(FieldError::not_supported(
            "spec.type",
            other,
            &["ClusterIP", "NodePort"],
        )),
    }
    errs.extend(validate_labels(&spec.selector, "spec.selector"));
    check_one_of(
        &mut errs,
        "spec.sessionAffinity".into(),
        spec.session_affinity.as_deref(),
        &["ClientIP", "None"],
    );
    if spec.ports.is_empty() && spec.cluster_ip.as_deref() != Some("None") {
        errs.push(FieldError::required("spec.ports", ""));
    }
    let mut names = BTreeSet::new();
    let mut node_ports = BTreeSet::new();
    for (i, port) in spec.ports.iter().enumerate() {
        let pp = index("spec.ports", i);
        match port.name.as_deref() {
            None | Some("") if spec.ports.len() > 1 => {
                errs.push(FieldError::required(child(&pp, "name"), ""));
            }
            None | Some("") => {}
            Some(name) => {
                check(&mut errs, &child(&pp, "name"), name, is_dns1123_label(name));
                if !names.insert(name) {
                    errs.push(FieldError::duplicate(child(&pp, "name"), quote(name)));
                }
            }
        }
        check_port(&mut errs, child(&pp, "port"), port.port);
        check_one_of(
            &mut errs,
            child(&pp, "protocol"),
            port.protocol.as_deref(),
            PROTOCOLS,
        );
        if let Some(tp) = &port.target_port {
            // Kubernetes treats targetPort 0 as "same as port".
            if *tp != IntOrString::Int(0) {
                errs.extend(validate_port_ref(tp, &child(&pp, "targetPort")));
            }
        }
        if let Some(np) = port.node_port
            && np != 0
        {
            if ty != "NodePort" {
                errs.push(FieldError::forbidden(
                    child(&pp, "nodePort"),
                    format!("may not be used when `type` is '{ty}'"),
                ));
            } else if !(30000..=32767).contains(&np) {
                errs.push(FieldError::invalid(
                    child(&pp, "nodePort"),
                    np,
                    "provided port is not in the valid range. The range of valid ports is 30000-32767",
                ));
            } else if !node_ports.insert((np, port.protocol.as_deref().unwrap_or("TCP"))) {
                errs.push(FieldError::duplicate(child(&pp, "nodePort"), np));
            }
        }
    }
    errs
}

/// Kubernetes' limits per EndpointSlice: they keep one slice (and one watch event) small.
const MAX_SLICE_ENDPOINTS: usize = 1000;
const MAX_ENDPOINT_ADDRESSES: usize = 100;
const MAX_SLICE_PORTS: usize = 20000;

/// Validates an EndpointSlice (Kubernetes' `ValidateEndpointSlice`, without topology hints).
pub fn validate_endpoint_slice(slice: &EndpointSlice) -> Vec<FieldError> {
    let mut errs = validate_object_meta(
        &slice.metadata,
        true,
        NameFormat::Dns1123Subdomain,
        AnnotationScope::Other,
        "metadata",
    );
    let address_type = slice.address_type.as_str();
    match address_type {
        "" => errs.push(FieldError::required("addressType", "")),
        ADDRESS_TYPE_IPV4 | ADDRESS_TYPE_IPV6 | ADDRESS_TYPE_FQDN => {}
        other => errs.push(FieldError::not_supported(
            "addressType",
            other,
            &[ADDRESS_TYPE_FQDN, ADDRESS_TYPE_IPV4, ADDRESS_TYPE_IPV6],
        )),
    }
    if slice.endpoints.len() > MAX_SLICE_ENDPOINTS {
        errs.push(FieldError::too_many(
            "endpoints",
            slice.endpoints.len(),
            MAX_SLICE_ENDPOINTS,
        ));
    }
    for (i, ep) in slice.endpoints.iter().enumerate() {
        let p = index("endpoints", i);
        let ap = child(&p, "addresses");
        if ep.addresses.is_empty() {
            errs.push(FieldError::required(&ap, "must contain at least 1 address"));
        } else if ep.addresses.len() > MAX_ENDPOINT_ADDRESSES {
            errs.push(FieldError::too_many(
                &ap,
                ep.addresses.len(),
                MAX_ENDPOINT_ADDRESSES,
            ));
        }
        let pod = ep.pod();
        for (j, addr) in ep.addresses.iter().enumerate() {
            let field = index(&ap, j);
            let ip = match address_type {
                ADDRESS_TYPE_IPV4 => addr
                    .parse::<std::net::Ipv4Addr>()
                    .map(IpAddr::V4)
                    .map_err(|_| "must be a valid IPv4 address"),
                ADDRESS_TYPE_IPV6 => addr
                    .parse::<std::net::Ipv6Addr>()
                    .map(IpAddr::V6)
                    .map_err(|_| "must be a valid IPv6 address"),
                ADDRESS_TYPE_FQDN => {
                    check(&mut errs, &field, addr, is_dns1123_subdomain(addr));
                    continue;
                }
                _ => continue,
            };
            match ip {
                Err(why) => errs.push(FieldError::invalid_str(field, addr, why)),
                // Node agents dial the addresses of an endpoint that is not a Pod: one on the
                // node itself or at cloud metadata would let whoever may write slices reach
                // them through the gateway. A Pod's endpoint is routed to the Pod, never to
                // its address (a Wasm Pod's is its node's, loopback under `ketch up`).
                Ok(ip) if pod.is_none() => {
                    if let Some(why) = special_address(ip) {
                        errs.push(FieldError::invalid_str(field, addr, why));
                    }
                }
                Ok(_) => {}
            }
        }
        // A Service routes to Pods of its own namespace only; a slice naming another
        // namespace's Pod would publish that Pod under this namespace's Service.
        if let Some(ns) = pod.and_then(|r| r.namespace.as_deref())
            && slice
                .metadata
                .namespace
                .as_deref()
                .is_some_and(|own| own != ns)
        {
            errs.push(FieldError::invalid_str(
                child(&child(&p, "targetRef"), "namespace"),
                ns,
                "must be the EndpointSlice's own namespace",
            ));
        }
        if let Some(node) = ep.node_name.as_deref().filter(|n| !n.is_empty()) {
            check(
                &mut errs,
                &child(&p, "nodeName"),
                node,
                is_dns1123_subdomain(node),
            );
        }
        if let Some(host) = ep.hostname.as_deref() {
            check(
                &mut errs,
                &child(&p, "hostname"),
                host,
                is_dns1123_label(host),
            );
        }
    }
    if slice.ports.len() > MAX_SLICE_PORTS {
        errs.push(FieldError::too_many(
            "ports",
            slice.ports.len(),
            MAX_SLICE_PORTS,
        ));
    }
    let mut names = BTreeSet::new();
    for (i, port) in slice.ports.iter().enumerate() {
        let p = index("ports", i);
        let name = port.name.as_deref().unwrap_or("");
        if !name.is_empty() {
            check(&mut errs, &child(&p, "name"), name, is_dns1123_label(name));
        }
        if !names.insert(name) {
            errs.push(FieldError::duplicate(child(&p, "name"), quote(name)));
        }
        if let Some(n) = port.port {
            check_port(&mut errs, child(&p, "port"), n);
        }
        check_one_of(
            &mut errs,
            child(&p, "protocol"),
            port.protocol.as_deref(),
            PROTOCOLS,
        );
        if let Some(ap) = port.app_protocol.as_deref() {
            check(
                &mut errs,
                &child(&p, "appProtocol"),
                ap,
                is_qualified_name(ap),
            );
        }
    }
    errs
}

/// Validates an Ingress (Kubernetes' `ValidateIngressCreate` rules for networking/v1).
pub fn validate_ingress(ing: &Ingress) -> Vec<FieldError> {
    let mut errs = validate_object_meta(
        &ing.metadata,
        true,
        NameFormat::Dns1123Subdomain,
        AnnotationScope::Other,
        "metadata",
    );
    let Some(spec) = &ing.spec else {
        errs.push(FieldError::required("spec", ""));
        return errs;
    };
    if spec.rules.is_empty() && spec.default_backend.is_none() {
        errs.push(FieldError::invalid(
            "spec",
            "[]",
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(class) = spec.ingress_class_name.as_deref() {
        check(
            &mut errs,
            "spec.ingressClassName",
            class,
            is_dns1123_subdomain(class),
        );
    }
    if let Some(b) = &spec.default_backend {
        errs.extend(validate_ingress_backend(b, "spec.defaultBackend"));
    }
    for (i, rule) in spec.rules.iter().enumerate() {
        let p = index("spec.rules", i);
        if let Some(host) = rule.host.as_deref().filter(|h| !h.is_empty()) {
            let hp = child(&p, "host");
            if is_ip_address(host) {
                errs.push(FieldError::invalid_str(
                    &hp,
                    host,
                    "must be a DNS name, not an IP address",
                ));
            } else if host.contains('*') {
                check(&mut errs, &hp, host, is_wildcard_dns1123_subdomain(host));
            } else {
                check(&mut errs, &hp, host, is_dns1123_subdomain(host));
            }
        }
        let Some(http) = &rule.http else {
            continue;
        };
        let pp = child(&child(&p, "http"), "paths");
        if http.paths.is_empty() {
            errs.push(FieldError::required(&pp, ""));
        }
        for (j, path) in http.paths.iter().enumerate() {
            let p = index(&pp, j);
            let value = path.path.as_deref().unwrap_or("");
            let path_field = child(&p, "path");
            match path.path_type.as_str() {
                "" => errs.push(FieldError::required(
                    child(&p, "pathType"),
                    "must be specified",
                )),
                PATH_TYPE_EXACT | PATH_TYPE_PREFIX => {
                    if !value.starts_with('/') {
                        errs.push(FieldError::invalid_str(
                            &path_field,
                            value,
                            "must be an absolute path",
                        ));
                    }
                    // Sequences a proxy would normalize differently from the matcher.
                    for seq in ["//", "/./", "/../", "%2f", "%2F"] {
                        if value.contains(seq) {
                            errs.push(FieldError::invalid_str(
                                &path_field,
                                value,
                                format!("must not contain '{seq}'"),
                            ));
                        }
                    }
                    for suffix in ["/..", "/."] {
                        if value.ends_with(suffix) {
                            errs.push(FieldError::invalid_str(
                                &path_field,
                                value,
                                format!("cannot end with '{suffix}'"),
                            ));
                        }
                    }
                }
                PATH_TYPE_IMPLEMENTATION_SPECIFIC => {
                    if !value.is_empty() && !value.starts_with('/') {
                        errs.push(FieldError::invalid_str(
                            &path_field,
                            value,
                            "must be an absolute path",
                        ));
                    }
                }
                other => errs.push(FieldError::not_supported(
                    child(&p, "pathType"),
                    other,
                    &[
                        PATH_TYPE_EXACT,
                        PATH_TYPE_IMPLEMENTATION_SPECIFIC,
                        PATH_TYPE_PREFIX,
                    ],
                )),
            }
            errs.extend(validate_ingress_backend(
                &path.backend,
                &child(&p, "backend"),
            ));
        }
    }
    for (i, tls) in spec.tls.iter().enumerate() {
        let p = index("spec.tls", i);
        // The gateway picks a certificate by the handshake's SNI host only, so an entry
        // without hosts or without a Secret (Kubernetes: the controller's default
        // certificate, for every host) is refused by name rather than served some other way.
        if tls.hosts.is_empty() {
            errs.push(FieldError::not_supported_yet(
                child(&p, "hosts"),
                "a TLS entry without hosts (a default certificate for every host)",
            ));
        }
        for (j, host) in tls.hosts.iter().enumerate() {
            let hp = index(&child(&p, "hosts"), j);
            if host.contains('*') {
                check(&mut errs, &hp, host, is_wildcard_dns1123_subdomain(host));
            } else {
                check(&mut errs, &hp, host, is_dns1123_subdomain(host));
            }
        }
        match tls.secret_name.as_deref().filter(|n| !n.is_empty()) {
            None => errs.push(FieldError::not_supported_yet(
                child(&p, "secretName"),
                "a TLS entry without secretName (the gateway's default certificate)",
            )),
            Some(name) => check(
                &mut errs,
                &child(&p, "secretName"),
                name,
                is_dns1123_subdomain(name),
            ),
        }
    }
    errs
}

fn validate_ingress_backend(b: &IngressBackend, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match (&b.service, &b.resource) {
        (Some(_), Some(_)) => errs.push(FieldError::invalid(
            path,
            "\"\"",
            "cannot set both resource and service backends",
        )),
        (None, Some(_)) => errs.push(FieldError::not_supported_yet(
            child(path, "resource"),
            "a resource backend",
        )),
        (None, None) => errs.push(FieldError::invalid(
            path,
            "\"\"",
            "resource or service backend is required",
        )),
        (Some(svc), None) => {
            let sp = child(path, "service");
            if svc.name.is_empty() {
                errs.push(FieldError::required(child(&sp, "name"), ""));
            } else {
                check(
                    &mut errs,
                    &child(&sp, "name"),
                    &svc.name,
                    is_dns1035_label(&svc.name),
                );
            }
            let port = svc.port.clone().unwrap_or_default();
            let name = port.name.as_deref().filter(|n| !n.is_empty());
            let number = port.number.filter(|n| *n != 0);
            let pp = child(&sp, "port");
            match (name, number) {
                (Some(_), Some(_)) => errs.push(FieldError::invalid(
                    path,
                    "\"\"",
                    "cannot set both port name & port number",
                )),
                (Some(name), None) => {
                    check(&mut errs, &child(&pp, "name"), name, is_port_name(name));
                }
                (None, Some(n)) => check_port(&mut errs, child(&pp, "number"), n),
                (None, None) => errs.push(FieldError::required(
                    path,
                    "port name or number is required",
                )),
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::fixtures::strings;

    fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).unwrap()
    }

    fn ingress(spec: serde_json::Value) -> Ingress {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "web"}, "spec": spec}))
            .unwrap()
    }

    fn service_backend(name: &str, port: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"service": {"name": name, "port": port}})
    }

    #[test]
    fn an_endpoint_slice_needs_a_known_address_type_addresses_and_valid_ports() {
        let ok = slice(serde_json::json!({
            "metadata": {"name": "web"}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"], "nodeName": "node-1"}],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}));
        assert!(validate_endpoint_slice(&ok).is_empty());
        let errs = strings(&validate_endpoint_slice(&slice(serde_json::json!({
            "metadata": {"name": "web"},
            "endpoints": [{"addresses": []}],
            "ports": [{"port": 0}, {"name": "b", "port": 65536}]}))));
        assert_eq!(
            errs,
            vec![
                "addressType: Required value",
                "endpoints[0].addresses: Required value: must contain at least 1 address",
                "ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "ports[1].port: Invalid value: 65536: must be between 1 and 65535, inclusive",
            ]
        );
        let errs = strings(&validate_endpoint_slice(&slice(serde_json::json!({
            "metadata": {"name": "web"}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["fe80::1", "10.0.0.1"]}]}))));
        assert_eq!(
            errs,
            vec![
                "endpoints[0].addresses[0]: Invalid value: \"fe80::1\": must be a valid IPv4 address"
            ]
        );
        let errs = strings(&validate_endpoint_slice(&slice(
            serde_json::json!({"metadata": {"name": "web"}, "addressType": "IPv5"}),
        )));
        assert_eq!(
            errs,
            vec![
                "addressType: Unsupported value: \"IPv5\": supported values: \"FQDN\", \"IPv4\", \"IPv6\""
            ]
        );
    }

    #[test]
    fn addresses_a_node_would_dial_may_not_be_the_node_itself_or_cloud_metadata() {
        let errs = strings(&validate_endpoint_slice(&slice(serde_json::json!({
        "metadata": {"name": "s", "namespace": "a"},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["127.0.0.1"]},
            {"addresses": ["169.254.169.254"], "targetRef": {"kind": "Node", "name": "n"}},
            {"addresses": ["192.0.2.10", "0.0.0.0"]},
            // A Pod's endpoint is routed to the Pod: its address (a Wasm Pod's is its
            // node's) is not dialed.
            {"addresses": ["127.0.0.1"], "targetRef": {"kind": "Pod", "name": "web-1"}},
            {"addresses": ["10.0.0.1"], "targetRef": {"kind": "Pod", "name": "w", "namespace": "b"}},
        ]}))));
        assert_eq!(
            errs,
            [
                "endpoints[0].addresses[0]: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)",
                "endpoints[1].addresses[0]: Invalid value: \"169.254.169.254\": may not be in the link-local range (169.254.0.0/16, fe80::/10)",
                "endpoints[2].addresses[1]: Invalid value: \"0.0.0.0\": may not be unspecified (0.0.0.0, ::)",
                "endpoints[4].targetRef.namespace: Invalid value: \"b\": must be the EndpointSlice's own namespace",
            ]
        );
        let errs = strings(&validate_endpoint_slice(&slice(serde_json::json!({
            "metadata": {"name": "s"}, "addressType": "IPv6",
            "endpoints": [{"addresses": ["::1", "fd00:ec2::254", "2001:db8::1"]}]}))));
        assert_eq!(
            errs,
            [
                "endpoints[0].addresses[0]: Invalid value: \"::1\": may not be in the loopback range (127.0.0.0/8, ::1/128)",
                "endpoints[0].addresses[1]: Invalid value: \"fd00:ec2::254\": may not be a cloud metadata address",
            ]
        );
    }

    #[test]
    fn too_many_endpoints_in_one_slice_are_refused() {
        let endpoints: Vec<serde_json::Value> = (0..1001)
            .map(|_| serde_json::json!({"addresses": ["10.0.0.1"]}))
            .collect();
        let errs = strings(&validate_endpoint_slice(&slice(serde_json::json!({
            "metadata": {"name": "web"}, "addressType": "IPv4", "endpoints": endpoints}))));
        assert_eq!(
            errs,
            vec!["endpoints: Too many: 1001: must have at most 1000 items"]
        );
    }

    #[test]
    fn an_ingress_with_rules_and_service_backends_is_valid() {
        let ing = ingress(serde_json::json!({
            "defaultBackend": service_backend("fallback", serde_json::json!({"number": 80})),
            "rules": [
                {"host": "example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix",
                     "backend": service_backend("web", serde_json::json!({"name": "http"}))},
                    {"pathType": "ImplementationSpecific",
                     "backend": service_backend("web", serde_json::json!({"number": 8080}))}]}},
                {"host": "*.apps.example.com", "http": {"paths": [
                    {"path": "/exact", "pathType": "Exact",
                     "backend": service_backend("api", serde_json::json!({"number": 80}))}]}}]}));
        assert_eq!(strings(&validate_ingress(&ing)), Vec::<String>::new());
    }

    #[test]
    fn ingress_paths_need_a_known_path_type_and_absolute_paths() {
        let backend = service_backend("web", serde_json::json!({"number": 80}));
        let ing = ingress(serde_json::json!({"rules": [{"http": {"paths": [
            {"path": "/a", "backend": backend},
            {"path": "/b", "pathType": "Regex", "backend": backend},
            {"path": "relative", "pathType": "Prefix", "backend": backend},
            {"path": "/a//b", "pathType": "Exact", "backend": backend}]}}]}));
        assert_eq!(
            strings(&validate_ingress(&ing)),
            vec![
                "spec.rules[0].http.paths[0].pathType: Required value: must be specified",
                "spec.rules[0].http.paths[1].pathType: Unsupported value: \"Regex\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\"",
                "spec.rules[0].http.paths[2].path: Invalid value: \"relative\": must be an absolute path",
                "spec.rules[0].http.paths[3].path: Invalid value: \"/a//b\": must not contain '//'",
            ]
        );
    }

    #[test]
    fn ingress_backends_need_a_service_name_and_exactly_one_port_reference() {
        let path = |backend: serde_json::Value| serde_json::json!({"path": "/", "pathType": "Prefix", "backend": backend});
        let ing = ingress(serde_json::json!({"rules": [{"http": {"paths": [
            path(service_backend("", serde_json::json!({"number": 80}))),
            path(service_backend("web", serde_json::json!({"name": "http", "number": 80}))),
            path(serde_json::json!({"service": {"name": "web"}})),
            path(serde_json::json!({"resource": {"kind": "Bucket", "name": "b"}})),
            path(serde_json::json!({})),
        ]}}]}));
        assert_eq!(
            strings(&validate_ingress(&ing)),
            vec![
                "spec.rules[0].http.paths[0].backend.service.name: Required value",
                "spec.rules[0].http.paths[1].backend: Invalid value: \"\": cannot set both port name & port number",
                "spec.rules[0].http.paths[2].backend: Required value: port name or number is required",
                "spec.rules[0].http.paths[3].backend.resource: Unsupported value: a resource backend is not supported yet",
                "spec.rules[0].http.paths[4].backend: Invalid value: \"\": resource or service backend is required",
            ]
        );
    }

    #[test]
    fn ingress_hosts_are_dns_names_with_at_most_a_leading_wildcard() {
        let rule = |host: &str| serde_json::json!({"host": host});
        let ing = ingress(serde_json::json!({
            "defaultBackend": service_backend("web", serde_json::json!({"number": 80})),
            "rules": [rule("10.0.0.1"), rule("::1"), rule("foo.*.example.com"), rule("*.ok.example"),
                      rule("Bad_Host")]}));
        let errs = strings(&validate_ingress(&ing));
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert_eq!(
            errs[0],
            "spec.rules[0].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address"
        );
        assert_eq!(
            errs[1],
            "spec.rules[1].host: Invalid value: \"::1\": must be a DNS name, not an IP address"
        );
        assert!(
            errs[2].starts_with(
                "spec.rules[2].host: Invalid value: \"foo.*.example.com\": a wildcard DNS-1123 subdomain must start with '*.'"
            ),
            "{}",
            errs[2]
        );
        assert!(
            errs[3].starts_with(
                "spec.rules[4].host: Invalid value: \"Bad_Host\": a lowercase RFC 1123 subdomain"
            ),
            "{}",
            errs[3]
        );
        assert!(
            is_ip_address("010.001.1.1"),
            "leading zeros are still an IP"
        );
        assert!(!is_ip_address("1.2.3.256"));
    }

    #[test]
    fn an_ingress_needs_rules_or_a_default_backend() {
        let ing =
            ingress(serde_json::json!({"tls": [{"hosts": ["example.com"], "secretName": "c"}]}));
        assert_eq!(
            strings(&validate_ingress(&ing)),
            vec!["spec: Invalid value: []: either `defaultBackend` or `rules` must be specified"]
        );
    }

    #[test]
    fn ingress_tls_needs_hosts_and_a_secret_name_and_checks_them() {
        let backend = service_backend("web", serde_json::json!({"number": 80}));
        let with_tls = |tls: serde_json::Value| {
            ingress(serde_json::json!({"defaultBackend": backend, "tls": tls}))
        };
        assert!(
            validate_ingress(&with_tls(serde_json::json!([
                {"hosts": ["example.com", "*.example.com"], "secretName": "cert"}
            ])))
            .is_empty()
        );
        let errs = strings(&validate_ingress(&with_tls(serde_json::json!([
            {"secretName": "cert"},
            {"hosts": ["Bad_Host", "a.*.com"]},
            {"hosts": ["ok.com"], "secretName": "Not/A/Name"}
        ]))));
        let expected = [
            "spec.tls[0].hosts: Unsupported value: a TLS entry without hosts (a default \
             certificate for every host) is not supported yet",
            "spec.tls[1].hosts[0]: Invalid value: \"Bad_Host\": ",
            "spec.tls[1].hosts[1]: Invalid value: \"a.*.com\": ",
            "spec.tls[1].secretName: Unsupported value: a TLS entry without secretName (the \
             gateway's default certificate) is not supported yet",
            "spec.tls[2].secretName: Invalid value: \"Not/A/Name\": ",
        ];
        assert_eq!(errs.len(), expected.len(), "{errs:#?}");
        for (got, want) in errs.iter().zip(expected) {
            assert!(
                got.starts_with(want),
                "{got:?} does not start with {want:?}"
            );
        }
    }

    #[test]
    fn services_accept_cluster_ip_and_node_port_and_refuse_node_ports_elsewhere() {
        let svc = |ty: &str, node_port: Option<i32>| -> Service {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "web"},
                "spec": {"type": ty, "selector": {"app": "web"},
                         "ports": [{"port": 80, "nodePort": node_port}]}}))
            .unwrap()
        };
        assert!(validate_service(&svc("ClusterIP", None)).is_empty());
        assert!(validate_service(&svc("NodePort", None)).is_empty());
        assert!(validate_service(&svc("NodePort", Some(30080))).is_empty());
        assert_eq!(
            strings(&validate_service(&svc("ClusterIP", Some(30080)))),
            vec!["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
        );
        assert_eq!(
            strings(&validate_service(&svc("NodePort", Some(40000)))),
            vec![
                "spec.ports[0].nodePort: Invalid value: 40000: provided port is not in the valid range. The range of valid ports is 30000-32767"
            ]
        );
        assert_eq!(
            strings(&validate_service(&svc("ExternalName", None))),
            vec![
                "spec.type: Unsupported value: \"ExternalName\" (not supported yet): supported values: \"ClusterIP\", \"NodePort\""
            ]
        );
    }
}
