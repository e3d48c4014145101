//! The EndpointSlice controller: for each Service with a selector, one EndpointSlice listing
//! the Pods that back it (Kubernetes' `endpointslice` controller, with one slice per Service).
//!
//! The slice is named like the Service, labelled [`SERVICE_NAME_LABEL`] and
//! [`MANAGED_BY_LABEL`]=[`MANAGED_BY_KETCH`], and controlled by the Service, so the garbage
//! collector deletes it with the Service. Slices without the managed-by label belong to users
//! (the way to give a selector-less Service endpoints) and are never touched.
//!
//! One slice per Service instead of Kubernetes' 100-endpoint shards: simpler for the node
//! agents that read it, and the API caps a slice at 1000 endpoints (more ready Pods than that
//! behind one Service are not listed; sharding is future work).

use std::collections::BTreeMap;

use ketch_api::core::{ContainerPort, IntOrString, ObjectReference, Pod, Service, ServicePort};
use ketch_api::discovery::{
    ADDRESS_TYPE_IPV4, Endpoint, EndpointConditions, EndpointPort, EndpointSlice, MANAGED_BY_KETCH,
    MANAGED_BY_LABEL, SERVICE_NAME_LABEL,
};
use ketch_api::meta::ObjectMeta;

use super::{
    Action, ObjectKey, Plan, Propagation, controller_owner_ref, is_controlled_by, pod_is_active,
    pod_ready_since,
};

/// Most endpoints one slice lists (the API's per-slice limit).
pub const MAX_ENDPOINTS: usize = 1000;

/// Whether the controller owns `slice`: only slices labelled managed-by ketch.
pub fn is_managed(slice: &EndpointSlice) -> bool {
    slice
        .metadata
        .labels
        .get(MANAGED_BY_LABEL)
        .map(String::as_str)
        == Some(MANAGED_BY_KETCH)
}

/// The Service a slice names in its [`SERVICE_NAME_LABEL`], if any.
pub fn service_name(slice: &EndpointSlice) -> Option<&str> {
    slice
        .metadata
        .labels
        .get(SERVICE_NAME_LABEL)
        .map(String::as_str)
}

/// The Service's selector, when it has one. An empty selector means "no selector" (the
/// Service's endpoints are managed by hand), as in Kubernetes.
pub fn service_selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec
        .as_ref()
        .map(|s| &s.selector)
        .filter(|s| !s.is_empty())
}

/// Whether a Service selector (equality terms only) selects `labels`.
pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Plans one sync of `svc` against the Pods and EndpointSlices of its namespace (others are
/// ignored).
///
/// Deletes the managed slices of this Service that are not its current one (the Service lost
/// its selector, or they belong to a deleted incarnation of the same name), then creates or
/// updates the current one when it differs from the desired state. When a user's slice holds
/// the name, nothing is created: the user's object wins and stays untouched.
pub fn plan<'a>(
    svc: &Service,
    pods: impl IntoIterator<Item = &'a Pod>,
    slices: &[&EndpointSlice],
) -> Plan {
    let ns = svc.metadata.namespace();
    let name = svc.metadata.name();
    let uid = svc.metadata.uid.as_deref().unwrap_or("");
    if svc.metadata.deletion_timestamp.is_some() || uid.is_empty() {
        // Being deleted: the garbage collector removes its slices.
        return Vec::new();
    }
    let slices: Vec<&EndpointSlice> = slices
        .iter()
        .copied()
        .filter(|s| s.metadata.namespace() == ns)
        .collect();
    let selector = service_selector(svc);
    let mut actions = Vec::new();
    let mut current = None;
    for s in slices
        .iter()
        .filter(|s| is_managed(s) && service_name(s) == Some(name))
    {
        let ours =
            selector.is_some() && s.metadata.name() == name && is_controlled_by(&s.metadata, uid);
        if ours {
            current = Some(*s);
        } else {
            actions.push(Action::Delete {
                object: ObjectKey::endpoint_slice(&s.metadata),
                propagation: Propagation::Background,
            });
        }
    }
    let Some(selector) = selector else {
        return actions;
    };
    let desired = desired_slice(svc, selector, pods);
    match current {
        Some(cur) => {
            let labels_ok = desired
                .metadata
                .labels
                .iter()
                .all(|(k, v)| cur.metadata.labels.get(k) == Some(v));
            if !labels_ok
                || cur.address_type != desired.address_type
                || cur.endpoints != desired.endpoints
                || cur.ports != desired.ports
            {
                actions.push(Action::UpdateEndpointSlice {
                    slice: ObjectKey::endpoint_slice(&cur.metadata),
                    desired: Box::new(desired),
                });
            }
        }
        None => {
            // A managed namesake of another incarnation is deleted above, before this create.
            let taken_by_user = slices
                .iter()
                .any(|s| s.metadata.name() == name && !is_managed(s));
            if !taken_by_user {
                actions.push(Action::CreateEndpointSlice(Box::new(desired)));
            }
        }
    }
    actions
}

/// The slice `svc` should have: one endpoint per matching, scheduled, live Pod with an IP,
/// ordered by Pod name so the result does not depend on list order.
fn desired_slice<'a>(
    svc: &Service,
    selector: &BTreeMap<String, String>,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> EndpointSlice {
    let ns = svc.metadata.namespace();
    let mut backing: Vec<&Pod> = pods
        .into_iter()
        .filter(|p| p.metadata.namespace() == ns && selects(selector, &p.metadata.labels))
        .filter(|p| pod_is_active(p) && node_name(p).is_some() && pod_ip(p).is_some())
        .collect();
    backing.sort_by(|a, b| a.metadata.name().cmp(b.metadata.name()));
    backing.truncate(MAX_ENDPOINTS);
    let endpoints = backing.iter().map(|p| endpoint(svc, p)).collect();
    let ports = svc
        .spec
        .as_ref()
        .map(|s| {
            s.ports
                .iter()
                .map(|sp| endpoint_port(sp, &backing))
                .collect()
        })
        .unwrap_or_default();
    EndpointSlice {
        api_version: Some("discovery.k8s.io/v1".into()),
        kind: Some("EndpointSlice".into()),
        metadata: ObjectMeta {
            name: Some(svc.metadata.name().into()),
            namespace: Some(ns.into()),
            labels: BTreeMap::from([
                (SERVICE_NAME_LABEL.into(), svc.metadata.name().into()),
                (MANAGED_BY_LABEL.into(), MANAGED_BY_KETCH.into()),
            ]),
            owner_references: vec![controller_owner_ref("v1", "Service", &svc.metadata)],
            ..Default::default()
        },
        address_type: ADDRESS_TYPE_IPV4.into(),
        endpoints,
        ports,
    }
}

fn node_name(p: &Pod) -> Option<&str> {
    p.spec
        .as_ref()?
        .node_name
        .as_deref()
        .filter(|n| !n.is_empty())
}

fn pod_ip(p: &Pod) -> Option<&str> {
    p.status
        .as_ref()?
        .pod_ip
        .as_deref()
        .filter(|ip| !ip.is_empty())
}

fn endpoint(svc: &Service, p: &Pod) -> Endpoint {
    let ready = pod_ready_since(p).is_some();
    // Kubernetes publishes a Pod's hostname when its subdomain names the Service (the
    // headless-Service DNS records of StatefulSets).
    let hostname = p.spec.as_ref().and_then(|s| {
        let host = s.hostname.as_deref().filter(|h| !h.is_empty())?;
        (s.subdomain.as_deref() == Some(svc.metadata.name())).then(|| host.to_string())
    });
    Endpoint {
        addresses: pod_ip(p).into_iter().map(str::to_string).collect(),
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(ready),
            terminating: Some(false),
        }),
        hostname,
        node_name: node_name(p).map(str::to_string),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some(p.metadata.namespace().into()),
            name: Some(p.metadata.name().into()),
            uid: p.metadata.uid.clone(),
            ..Default::default()
        }),
        zone: None,
    }
}

/// The slice port for one Service port: its name (`""` when unnamed, as Kubernetes writes
/// it), and the target port — numeric as given (0 or unset meaning the Service port), or a
/// named container port resolved on the first backing Pod that declares it with the same
/// protocol (left unset when none does).
fn endpoint_port(sp: &ServicePort, backing: &[&Pod]) -> EndpointPort {
    let protocol = sp.protocol.clone().unwrap_or_else(|| "TCP".into());
    let port = match &sp.target_port {
        None | Some(IntOrString::Int(0)) => Some(sp.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => backing
            .iter()
            .find_map(|p| named_container_port(p, name, &protocol)),
    };
    EndpointPort {
        name: Some(sp.name.clone().unwrap_or_default()),
        port,
        protocol: Some(protocol),
        app_protocol: sp.app_protocol.clone(),
    }
}

fn named_container_port(p: &Pod, name: &str, protocol: &str) -> Option<i32> {
    p.spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| &c.ports)
        .find(|cp| {
            cp.name.as_deref() == Some(name) && cp.protocol.as_deref().unwrap_or("TCP") == protocol
        })
        .map(|cp| cp.container_port)
}

type SpecFacts<'a> = (
    &'a Option<String>,
    &'a Option<String>,
    &'a Option<String>,
    Vec<&'a [ContainerPort]>,
);

/// Whether a Pod update can change any slice: its labels (which Services select it) or a
/// fact an endpoint is built from. Status writes that change none of these (container
/// restarts counts, messages, heartbeats) skip the Services' reconciles.
pub fn pod_change_matters(old: &Pod, new: &Pod) -> bool {
    fn spec_facts(p: &Pod) -> Option<SpecFacts<'_>> {
        p.spec.as_ref().map(|s| {
            let ports = s.containers.iter().map(|c| c.ports.as_slice()).collect();
            (&s.node_name, &s.hostname, &s.subdomain, ports)
        })
    }
    old.metadata.labels != new.metadata.labels
        || old.metadata.deletion_timestamp.is_some() != new.metadata.deletion_timestamp.is_some()
        || old.metadata.uid != new.metadata.uid
        || spec_facts(old) != spec_facts(new)
        || pod_ip(old) != pod_ip(new)
        || pod_is_active(old) != pod_is_active(new)
        || pod_ready_since(old).is_some() != pod_ready_since(new).is_some()
}

#[cfg(test)]
mod tests {
    use super::super::testing::{labels, meta, ready_pod};
    use super::*;
    use ketch_api::core::ServiceSpec;

    fn service(name: &str, selector: &[(&str, &str)], ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: meta(name, &format!("{name}-uid")),
            spec: Some(ServiceSpec {
                selector: labels(selector),
                ports,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn port(name: Option<&str>, port: i32, target: Option<IntOrString>) -> ServicePort {
        ServicePort {
            name: name.map(str::to_string),
            port,
            target_port: target,
            ..Default::default()
        }
    }

    /// A ready pod on node-1 with an IP.
    fn pod(name: &str, app: &str, ip: &str) -> Pod {
        let mut p = ready_pod(name, &format!("{name}-uid"), &[("app", app)]);
        p.status.as_mut().unwrap().pod_ip = Some(ip.into());
        p
    }

    fn created(plan: &Plan) -> &EndpointSlice {
        match plan.as_slice() {
            [Action::CreateEndpointSlice(s)] => s,
            other => panic!("expected one create, got {other:?}"),
        }
    }

    fn web() -> Service {
        service(
            "web",
            &[("app", "web")],
            vec![port(None, 80, Some(IntOrString::Int(8080)))],
        )
    }

    #[test]
    fn a_service_gets_one_labelled_owned_slice_with_its_ready_pods_sorted_by_name() {
        let pods = [
            pod("web-b", "web", "10.0.0.2"),
            pod("web-a", "web", "10.0.0.1"),
            pod("db-a", "db", "10.0.0.3"),
        ];
        let plan = plan(&web(), &pods, &[]);
        let s = created(&plan);
        assert_eq!(s.metadata.name(), "web");
        assert_eq!(s.metadata.namespace(), "default");
        assert_eq!(s.metadata.labels[SERVICE_NAME_LABEL], "web");
        assert_eq!(s.metadata.labels[MANAGED_BY_LABEL], MANAGED_BY_KETCH);
        let owner = &s.metadata.owner_references[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Service", "web-uid", Some(true))
        );
        assert_eq!(s.address_type, "IPv4");
        let names: Vec<_> = s
            .endpoints
            .iter()
            .map(|e| e.target_ref.as_ref().unwrap().name.clone().unwrap())
            .collect();
        assert_eq!(names, ["web-a", "web-b"]);
        let e = &s.endpoints[0];
        assert_eq!(e.addresses, ["10.0.0.1"]);
        assert_eq!(e.node_name.as_deref(), Some("node-1"));
        assert_eq!(
            e.conditions,
            Some(EndpointConditions {
                ready: Some(true),
                serving: Some(true),
                terminating: Some(false)
            })
        );
        let target = e.target_ref.as_ref().unwrap();
        assert_eq!(target.kind.as_deref(), Some("Pod"));
        assert_eq!(target.namespace.as_deref(), Some("default"));
        assert_eq!(target.uid.as_deref(), Some("web-a-uid"));
        assert_eq!(
            s.ports,
            [EndpointPort {
                name: Some(String::new()),
                port: Some(8080),
                protocol: Some("TCP".into()),
                app_protocol: None,
            }]
        );
    }

    #[test]
    fn unscheduled_terminating_finished_and_ip_less_pods_are_left_out_and_unready_ones_marked() {
        let mut unscheduled = pod("a", "web", "10.0.0.1");
        unscheduled.spec.as_mut().unwrap().node_name = None;
        let mut terminating = pod("b", "web", "10.0.0.2");
        terminating.metadata.deletion_timestamp = Some("2026-01-01T00:00:01Z".into());
        let mut finished = pod("c", "web", "10.0.0.3");
        finished.status.as_mut().unwrap().phase = Some("Succeeded".into());
        let mut no_ip = pod("d", "web", "");
        no_ip.status.as_mut().unwrap().pod_ip = None;
        let mut unready = pod("e", "web", "10.0.0.5");
        unready.status.as_mut().unwrap().conditions.clear();
        let mut elsewhere = pod("f", "web", "10.0.0.6");
        elsewhere.metadata.namespace = Some("other".into());
        let pods = [
            unscheduled,
            terminating,
            finished,
            no_ip,
            unready,
            elsewhere,
        ];
        let plan = plan(&web(), &pods, &[]);
        let s = created(&plan);
        assert_eq!(s.endpoints.len(), 1);
        assert_eq!(s.endpoints[0].addresses, ["10.0.0.5"]);
        assert!(!s.endpoints[0].is_ready());
        assert_eq!(
            s.endpoints[0].conditions.as_ref().unwrap().serving,
            Some(false)
        );
    }

    #[test]
    fn target_ports_default_to_the_port_and_names_resolve_on_the_first_declaring_pod() {
        let svc = service(
            "web",
            &[("app", "web")],
            vec![
                port(Some("plain"), 80, None),
                port(Some("zero"), 81, Some(IntOrString::Int(0))),
                port(Some("named"), 82, Some(IntOrString::String("http".into()))),
                port(
                    Some("missing"),
                    83,
                    Some(IntOrString::String("nope".into())),
                ),
            ],
        );
        let bare = pod("a", "web", "10.0.0.1");
        let mut declaring = pod("b", "web", "10.0.0.2");
        declaring.spec.as_mut().unwrap().containers[0].ports = vec![
            ContainerPort {
                name: Some("http".into()),
                container_port: 9000,
                protocol: Some("UDP".into()),
                ..Default::default()
            },
            ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            },
        ];
        let pods = [bare, declaring];
        let plan = plan(&svc, &pods, &[]);
        let ports: Vec<(Option<String>, Option<i32>)> = created(&plan)
            .ports
            .iter()
            .map(|p| (p.name.clone(), p.port))
            .collect();
        assert_eq!(
            ports,
            [
                (Some("plain".into()), Some(80)),
                (Some("zero".into()), Some(81)),
                (Some("named".into()), Some(8080)),
                (Some("missing".into()), None),
            ]
        );
    }

    /// The slice the controller would have written for `svc` and `pods`, as stored.
    fn stored(svc: &Service, pods: &[Pod]) -> EndpointSlice {
        let mut s = created(&plan(svc, pods, &[])).clone();
        s.metadata.uid = Some("slice-uid".into());
        s
    }

    #[test]
    fn an_up_to_date_slice_is_not_rewritten_and_a_changed_one_is_updated() {
        let svc = web();
        let mut pods = vec![pod("web-a", "web", "10.0.0.1")];
        let mut current = stored(&svc, &pods);
        // User labels on our slice do not make it differ.
        current.metadata.labels.insert("team".into(), "x".into());
        assert_eq!(plan(&svc, &pods, &[&current]), vec![]);

        pods.push(pod("web-b", "web", "10.0.0.2"));
        let p = plan(&svc, &pods, &[&current]);
        match p.as_slice() {
            [Action::UpdateEndpointSlice { slice, desired }] => {
                assert_eq!(slice.uid, "slice-uid");
                assert_eq!(slice.kind, "EndpointSlice");
                assert_eq!(desired.endpoints.len(), 2);
            }
            other => panic!("expected one update, got {other:?}"),
        }
    }

    #[test]
    fn a_replaced_pod_converges_to_the_new_pod_name() {
        let svc = web();
        let current = stored(&svc, &[pod("web-a", "web", "10.0.0.1")]);
        let p = plan(&svc, &[pod("web-c", "web", "10.0.0.1")], &[&current]);
        let [Action::UpdateEndpointSlice { desired, .. }] = p.as_slice() else {
            panic!("expected one update, got {p:?}");
        };
        let target = desired.endpoints[0].target_ref.as_ref().unwrap();
        assert_eq!(target.name.as_deref(), Some("web-c"));
    }

    #[test]
    fn selector_less_services_leave_user_slices_alone() {
        let svc = service("ext", &[], vec![port(None, 80, None)]);
        let user = EndpointSlice {
            metadata: ObjectMeta {
                labels: labels(&[(SERVICE_NAME_LABEL, "ext")]),
                ..meta("ext-1", "user-uid")
            },
            address_type: "IPv4".into(),
            ..Default::default()
        };
        assert_eq!(plan(&svc, &[], &[&user]), vec![]);
        // Even with a selector, a user's slice holding the name is neither replaced nor
        // deleted.
        let user_named = EndpointSlice {
            metadata: ObjectMeta {
                labels: labels(&[(SERVICE_NAME_LABEL, "web")]),
                ..meta("web", "user-uid")
            },
            ..Default::default()
        };
        assert_eq!(
            plan(&web(), &[pod("web-a", "web", "10.0.0.1")], &[&user_named]),
            vec![]
        );
    }

    #[test]
    fn a_service_that_loses_its_selector_has_its_managed_slice_deleted() {
        let current = stored(&web(), &[pod("web-a", "web", "10.0.0.1")]);
        let mut svc = web();
        svc.spec.as_mut().unwrap().selector.clear();
        assert_eq!(
            plan(&svc, &[], &[&current]),
            vec![Action::Delete {
                object: ObjectKey::endpoint_slice(&current.metadata),
                propagation: Propagation::Background,
            }]
        );
    }

    #[test]
    fn a_managed_slice_of_an_earlier_incarnation_is_deleted_before_the_new_one_is_created() {
        let old = stored(&web(), &[]);
        let mut svc = web();
        svc.metadata.uid = Some("web-uid-2".into());
        let p = plan(&svc, &[], &[&old]);
        assert!(
            matches!(p.as_slice(), [Action::Delete { object, .. }, Action::CreateEndpointSlice(new)]
                if object.uid == "slice-uid" && new.metadata.owner_references[0].uid == "web-uid-2"),
            "{p:?}"
        );
    }

    #[test]
    fn a_terminating_service_is_left_to_the_garbage_collector() {
        let mut svc = web();
        svc.metadata.deletion_timestamp = Some("2026-01-01T00:00:01Z".into());
        assert_eq!(plan(&svc, &[pod("web-a", "web", "10.0.0.1")], &[]), vec![]);
    }

    #[test]
    fn only_endpoint_facts_and_labels_make_a_pod_change_matter() {
        let a = pod("web-a", "web", "10.0.0.1");
        let mut restarted = a.clone();
        restarted.status.as_mut().unwrap().message = Some("restarted".into());
        assert!(!pod_change_matters(&a, &restarted));
        let mut relabelled = a.clone();
        relabelled.metadata.labels.insert("v".into(), "2".into());
        assert!(pod_change_matters(&a, &relabelled));
        let mut unready = a.clone();
        unready.status.as_mut().unwrap().conditions.clear();
        assert!(pod_change_matters(&a, &unready));
        let mut moved = a.clone();
        moved.status.as_mut().unwrap().pod_ip = Some("10.0.0.9".into());
        assert!(pod_change_matters(&a, &moved));
    }
}
