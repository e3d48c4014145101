//! kubectl-style output: the table columns each kind shows (`ketch get`, `-o wide`), ages,
//! and how an object is named in messages (`deployment.apps/web`).

use ketch_api::resource::ResourceInfo;
use serde_json::Value;

/// Table columns of one kind; `wide` adds the `-o wide` ones.
pub fn headers(info: &ResourceInfo, wide: bool, all_namespaces: bool) -> Vec<&'static str> {
    let mut h: Vec<&'static str> = Vec::new();
    if all_namespaces && info.namespaced {
        h.push("NAMESPACE");
    }
    h.extend_from_slice(match info.plural {
        "pods" => &["NAME", "READY", "STATUS", "RESTARTS", "AGE"][..],
        "deployments" => &["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "replicasets" => &["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
        "services" => &["NAME", "TYPE", "PORT(S)", "AGE"],
        "configmaps" => &["NAME", "DATA", "AGE"],
        "secrets" => &["NAME", "TYPE", "DATA", "AGE"],
        "nodes" => &["NAME", "STATUS", "RUNTIMES", "AGE"],
        "namespaces" => &["NAME", "STATUS", "AGE"],
        "events" => &["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "leases" => &["NAME", "HOLDER", "AGE"],
        "endpointslices" => &["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"],
        "ingresses" => &["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"],
        "poddisruptionbudgets" => &[
            "NAME",
            "MIN AVAILABLE",
            "MAX UNAVAILABLE",
            "ALLOWED DISRUPTIONS",
            "AGE",
        ],
        "rolebindings" | "clusterrolebindings" => &["NAME", "ROLE", "AGE"],
        _ => &["NAME", "AGE"],
    });
    if wide {
        h.extend_from_slice(match info.plural {
            "pods" => &["IP", "NODE"][..],
            "deployments" | "replicasets" => &["CONTAINERS", "IMAGES", "SELECTOR"],
            "services" => &["SELECTOR"],
            "nodes" => &["INTERNAL-IP", "CPU", "MEMORY"],
            _ => &[],
        });
    }
    h
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn n(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn or_none(x: String) -> String {
    if x.is_empty() { "<none>".into() } else { x }
}

/// `5s`, `3m`, `2h`, `4d` since an RFC 3339 timestamp, like kubectl.
pub fn age(timestamp: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    let Some(t) = ketch_api::time::parse(timestamp) else {
        return "<unknown>".into();
    };
    let secs = (now - t).num_seconds().max(0);
    match secs {
        0..120 => format!("{secs}s"),
        120..7200 => format!("{}m", secs / 60),
        7200..172_800 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

fn selector_text(v: &Value) -> String {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn containers(v: &Value, field: &str) -> String {
    v.pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| s(c, field).to_string())
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// At most `max` items joined by commas, then ` + N more...`; `<unset>` when empty (kubectl's
/// `listWithMoreString`).
fn list_with_more(items: impl Iterator<Item = String>, max: usize) -> String {
    let all: Vec<String> = items.collect();
    if all.is_empty() {
        return "<unset>".into();
    }
    let shown = all[..all.len().min(max)].join(",");
    if all.len() > max {
        format!("{shown} + {} more...", all.len() - max)
    } else {
        shown
    }
}

fn array<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// One table row for `obj`./// One table row for `obj`.
pub fn row(
    info: &ResourceInfo,
    obj: &Value,
    wide: bool,
    all_namespaces: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<String> {
    let name = s(obj, "/metadata/name").to_string();
    let created = age(s(obj, "/metadata/creationTimestamp"), now);
    let mut r = Vec::new();
    if all_namespaces && info.namespaced {
        r.push(s(obj, "/metadata/namespace").to_string());
    }
    match info.plural {
        "pods" => {
            let statuses = obj
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array);
            let total = obj
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = statuses.map_or(0, |c| {
                c.iter().filter(|c| c["ready"] == Value::Bool(true)).count()
            });
            let restarts: i64 =
                statuses.map_or(0, |c| c.iter().map(|c| n(c, "/restartCount")).sum());
            // A waiting or terminated container's reason says more than the phase.
            let reason = statuses
                .and_then(|c| {
                    c.iter().find_map(|c| {
                        let w = s(c, "/state/waiting/reason");
                        let t = s(c, "/state/terminated/reason");
                        (!w.is_empty())
                            .then_some(w)
                            .or((!t.is_empty()).then_some(t))
                    })
                })
                .map(str::to_string);
            let mut status = reason.unwrap_or_else(|| s(obj, "/status/phase").to_string());
            if status.is_empty() {
                status = "Pending".into();
            }
            if obj.pointer("/metadata/deletionTimestamp").is_some() {
                status = "Terminating".into();
            }
            r.extend([
                name,
                format!("{ready}/{total}"),
                status,
                restarts.to_string(),
                created,
            ]);
            if wide {
                r.push(or_none(s(obj, "/status/podIP").to_string()));
                r.push(or_none(s(obj, "/spec/nodeName").to_string()));
            }
        }
        "deployments" | "replicasets" => {
            let desired = obj
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let ready = n(obj, "/status/readyReplicas");
            if info.plural == "deployments" {
                r.extend([
                    name,
                    format!("{ready}/{desired}"),
                    n(obj, "/status/updatedReplicas").to_string(),
                    n(obj, "/status/availableReplicas").to_string(),
                    created,
                ]);
            } else {
                r.extend([
                    name,
                    desired.to_string(),
                    n(obj, "/status/replicas").to_string(),
                    ready.to_string(),
                    created,
                ]);
            }
            if wide {
                r.push(containers(obj, "/name"));
                r.push(containers(obj, "/image"));
                r.push(selector_text(
                    obj.pointer("/spec/selector/matchLabels")
                        .unwrap_or(&Value::Null),
                ));
            }
        }
        "services" => {
            let ports = obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            let node = p
                                .get("nodePort")
                                .and_then(Value::as_i64)
                                .map(|np| format!(":{np}"))
                                .unwrap_or_default();
                            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                            format!("{}{node}/{proto}", n(p, "/port"))
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let ty = s(obj, "/spec/type");
            r.extend([
                name,
                if ty.is_empty() {
                    "ClusterIP".into()
                } else {
                    ty.into()
                },
                or_none(ports),
                created,
            ]);
            if wide {
                r.push(or_none(selector_text(
                    obj.pointer("/spec/selector").unwrap_or(&Value::Null),
                )));
            }
        }
        "configmaps" | "secrets" => {
            let count = |p: &str| {
                obj.pointer(p)
                    .and_then(Value::as_object)
                    .map_or(0, serde_json::Map::len)
            };
            let data = count("/data") + count("/binaryData");
            r.push(name);
            if info.plural == "secrets" {
                let ty = s(obj, "/type");
                r.push(if ty.is_empty() {
                    "Opaque".into()
                } else {
                    ty.into()
                });
            }
            r.extend([data.to_string(), created]);
        }
        "nodes" => {
            let ready = obj
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                .map(|c| {
                    if c["status"] == "True" {
                        "Ready"
                    } else {
                        "NotReady"
                    }
                })
                .unwrap_or("Unknown");
            let mut status = ready.to_string();
            if obj.pointer("/spec/unschedulable") == Some(&Value::Bool(true)) {
                status.push_str(",SchedulingDisabled");
            }
            let runtimes = obj
                .pointer("/status/runtimeHandlers")
                .and_then(Value::as_array)
                .map(|hs| {
                    hs.iter()
                        .map(|h| s(h, "/name").to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            r.extend([name, status, or_none(runtimes), created]);
            if wide {
                let ip = obj
                    .pointer("/status/addresses")
                    .and_then(Value::as_array)
                    .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
                    .map(|a| s(a, "/address").to_string())
                    .unwrap_or_default();
                r.extend([
                    or_none(ip),
                    s(obj, "/status/allocatable/cpu").into(),
                    s(obj, "/status/allocatable/memory").into(),
                ]);
            }
        }
        "namespaces" => {
            let phase = s(obj, "/status/phase");
            let phase = if obj.pointer("/metadata/deletionTimestamp").is_some() {
                "Terminating"
            } else if phase.is_empty() {
                "Active"
            } else {
                phase
            };
            r.extend([name, phase.into(), created]);
        }
        "events" => {
            let last = [
                s(obj, "/lastTimestamp"),
                s(obj, "/eventTime"),
                s(obj, "/metadata/creationTimestamp"),
            ]
            .into_iter()
            .find(|t| !t.is_empty())
            .unwrap_or_default();
            let object = format!(
                "{}/{}",
                s(obj, "/involvedObject/kind").to_lowercase(),
                s(obj, "/involvedObject/name")
            );
            r.extend([
                age(last, now),
                s(obj, "/type").into(),
                s(obj, "/reason").into(),
                object,
                s(obj, "/message").into(),
            ]);
        }
        "leases" => r.extend([
            name,
            or_none(s(obj, "/spec/holderIdentity").into()),
            created,
        ]),
        "endpointslices" => {
            // A port without a number (an unresolved named targetPort) shows its name.
            let ports = array(obj, "/ports").iter().map(|p| match p.get("port") {
                Some(n) if n.is_i64() => n.to_string(),
                _ => p
                    .get("name")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .unwrap_or("*")
                    .to_string(),
            });
            // Only ready addresses: what traffic can reach (an unset condition means ready).
            let addresses = array(obj, "/endpoints")
                .iter()
                .filter(|e| e.pointer("/conditions/ready") != Some(&Value::Bool(false)))
                .flat_map(|e| array(e, "/addresses"))
                .filter_map(|a| a.as_str().map(str::to_string));
            r.extend([
                name,
                s(obj, "/addressType").into(),
                list_with_more(ports, 3),
                list_with_more(addresses, 3),
                created,
            ]);
        }
        "ingresses" => {
            let rules = array(obj, "/spec/rules");
            let hosts: Vec<&str> = rules
                .iter()
                .map(|r| s(r, "/host"))
                .filter(|h| !h.is_empty())
                .collect();
            let hosts = match hosts.len() {
                0 => "*".to_string(),
                n if n > 3 => format!("{} + {} more...", hosts[..3].join(","), n - 3),
                _ => hosts.join(","),
            };
            let address = array(obj, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| {
                    let ip = s(i, "/ip");
                    if ip.is_empty() { s(i, "/hostname") } else { ip }
                })
                .filter(|a| !a.is_empty())
                .collect::<Vec<_>>()
                .join(",");
            let ports = if array(obj, "/spec/tls").is_empty() {
                "80"
            } else {
                "80, 443"
            };
            r.extend([
                name,
                or_none(s(obj, "/spec/ingressClassName").into()),
                hosts,
                address,
                ports.into(),
                created,
            ]);
        }
        "poddisruptionbudgets" => {
            // A bound is a number or a percentage string; the one not set shows as N/A.
            let bound = |p: &str| match obj.pointer(p) {
                Some(Value::String(v)) => v.clone(),
                Some(Value::Number(v)) => v.to_string(),
                _ => "N/A".to_string(),
            };
            r.extend([
                name,
                bound("/spec/minAvailable"),
                bound("/spec/maxUnavailable"),
                n(obj, "/status/disruptionsAllowed").to_string(),
                created,
            ]);
        }
        "rolebindings" | "clusterrolebindings" => {
            let role = format!("{}/{}", s(obj, "/roleRef/kind"), s(obj, "/roleRef/name"));
            r.extend([name, role, created]);
        }
        _ => r.extend([name, created]),
    }
    r
}

/// `deployment.apps/web`: how kubectl names an object in messages.
pub fn display_name(info: &ResourceInfo, name: &str) -> String {
    let kind = info.kind.to_lowercase();
    if info.group.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{kind}.{}/{name}", info.group)
    }
}

/// Render rows under headers with columns padded like kubectl (3 spaces between).
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}   ", w = widths[i]));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(headers.to_vec());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ages_read_like_kubectl() {
        let now = ketch_api::time::parse("2026-01-02T00:00:00Z").unwrap();
        assert_eq!(age("2026-01-01T23:59:30Z", now), "30s");
        assert_eq!(age("2026-01-01T23:50:00Z", now), "10m");
        assert_eq!(age("2026-01-01T12:00:00Z", now), "12h");
        assert_eq!(age("2025-12-20T00:00:00Z", now), "13d");
        assert_eq!(age("yesterday", now), "<unknown>");
    }

    #[test]
    fn a_pod_row_shows_ready_count_and_waiting_reason() {
        let info = ketch_api::resource::by_kind("v1", "Pod").unwrap();
        let pod = json!({"metadata": {"name": "web-1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Pending", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 2},
                {"name": "b", "ready": false, "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        let now = chrono::Utc::now();
        let r = row(info, &pod, false, false, now);
        assert_eq!(&r[..4], &["web-1", "1/2", "CrashLoopBackOff", "3"]);
        let table = render(&headers(info, false, false), &[r]);
        assert!(table.starts_with("NAME    READY   STATUS"), "{table}");
    }

    fn info(plural: &str) -> &'static ResourceInfo {
        ketch_api::resource::lookup(plural).unwrap()
    }

    #[test]
    fn a_service_row_shows_its_type_and_node_ports() {
        let svc = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "ports": [
            {"port": 80, "nodePort": 30080}, {"port": 53, "protocol": "UDP"}]}});
        let r = row(info("svc"), &svc, false, false, chrono::Utc::now());
        assert_eq!(&r[..3], &["web", "NodePort", "80:30080/TCP,53/UDP"]);
    }

    #[test]
    fn an_endpoint_slice_row_lists_ready_addresses_and_ports_like_kubectl() {
        let ep = |ip: &str, ready: bool| json!({"addresses": [ip], "conditions": {"ready": ready}});
        let slice = json!({"metadata": {"name": "web"}, "addressType": "IPv4",
            "ports": [{"name": "", "port": 8080}, {"name": "metrics"}],
            "endpoints": [ep("10.0.0.1", true), ep("10.0.0.2", false), ep("10.0.0.3", true),
                {"addresses": ["10.0.0.4"]}, ep("10.0.0.5", true)]});
        let h = headers(info("endpointslices"), false, false);
        assert_eq!(h, ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]);
        let r = row(
            info("endpointslices"),
            &slice,
            false,
            false,
            chrono::Utc::now(),
        );
        assert_eq!(
            &r[..4],
            &[
                "web",
                "IPv4",
                "8080,metrics",
                "10.0.0.1,10.0.0.3,10.0.0.4 + 1 more..."
            ]
        );
        let empty = json!({"metadata": {"name": "ext"}, "addressType": "IPv4", "endpoints": []});
        let r = row(
            info("endpointslices"),
            &empty,
            false,
            false,
            chrono::Utc::now(),
        );
        assert_eq!(&r[2..4], &["<unset>", "<unset>"]);
    }

    #[test]
    fn a_pod_disruption_budget_row_shows_its_bounds_and_allowed_disruptions() {
        let h = headers(info("pdb"), false, false);
        assert_eq!(
            h,
            [
                "NAME",
                "MIN AVAILABLE",
                "MAX UNAVAILABLE",
                "ALLOWED DISRUPTIONS",
                "AGE"
            ]
        );
        let pdb = json!({"metadata": {"name": "web"}, "spec": {"minAvailable": 2},
            "status": {"disruptionsAllowed": 1}});
        let r = row(info("pdb"), &pdb, false, false, chrono::Utc::now());
        assert_eq!(&r[..4], &["web", "2", "N/A", "1"]);
        let pdb = json!({"metadata": {"name": "api"}, "spec": {"maxUnavailable": "25%"}});
        let r = row(info("pdb"), &pdb, false, false, chrono::Utc::now());
        assert_eq!(&r[..4], &["api", "N/A", "25%", "0"]);
    }

    #[test]
    fn an_ingress_row_shows_class_hosts_address_and_ports() {
        let ing = json!({"metadata": {"name": "web"}, "spec": {"ingressClassName": "ketch",
            "rules": [{"host": "a.example"}, {"host": "b.example"}, {}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}});
        assert_eq!(
            headers(info("ing"), false, false),
            ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
        );
        let r = row(info("ing"), &ing, false, false, chrono::Utc::now());
        assert_eq!(
            &r[..5],
            &["web", "ketch", "a.example,b.example", "127.0.0.1", "80"]
        );
        let bare = json!({"metadata": {"name": "x"}, "spec": {"defaultBackend": {}}});
        let r = row(info("ing"), &bare, false, false, chrono::Utc::now());
        assert_eq!(&r[..5], &["x", "<none>", "*", "", "80"]);
    }

    #[test]
    fn display_names_follow_kubectl() {
        let deploy = ketch_api::resource::by_kind("apps/v1", "Deployment").unwrap();
        assert_eq!(display_name(deploy, "web"), "deployment.apps/web");
        let svc = ketch_api::resource::by_kind("v1", "Service").unwrap();
        assert_eq!(display_name(svc, "web"), "service/web");
    }
}
