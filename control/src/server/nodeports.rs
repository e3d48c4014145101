//! NodePort allocation: a `type: NodePort` Service gets a node port for every port that does
//! not name one, from 30000–32767, unique across all Services.
//!
//! The API server picks the ports (the lowest free, so allocation is deterministic) from a
//! read of the stored Services before it proposes the write. Two concurrent writes must not
//! pick the same port from the same read, so the ports chosen for writes still in flight are
//! [`Reservations`]: the read and the choice happen under one lock, and a reservation ends
//! only once its write has been applied (or refused), when the next read sees it.
//!
//! That closes the race within one API server, not between several (HA): the state machine
//! therefore refuses any write claiming a port another Service holds
//! (`store::apply::check_node_ports`, raft-ordered, so every replica agrees), and the server
//! picks again from a fresh read when a port it chose was refused. A port the user asked for
//! is never replaced: its refusal is the user's error.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Mutex, MutexGuard};

use ketch_api::FieldError;
use ketch_api::core::Service;
use serde_json::Value;

use crate::store::apply::{NODE_PORT_ALLOCATED, node_ports_of};

/// Kubernetes' default `--service-node-port-range`.
pub const NODE_PORT_MIN: i32 = 30000;
pub const NODE_PORT_MAX: i32 = 32767;

/// Why node ports could not be assigned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    /// An explicitly requested node port is held by another Service.
    #[error("{0}")]
    Taken(FieldError),
    /// Every port of the range is in use.
    #[error("{0}")]
    Exhausted(FieldError),
}

impl AllocationError {
    pub fn field_error(self) -> FieldError {
        match self {
            AllocationError::Taken(e) | AllocationError::Exhausted(e) => e,
        }
    }
}

/// Node ports chosen by this server for writes that have not been applied yet.
#[derive(Debug, Default)]
pub struct Reservations(Mutex<HashSet<i64>>);

impl Reservations {
    /// Holds the reservation set while a read and a choice are made; keep it off `.await`s.
    pub fn lock(&self) -> MutexGuard<'_, HashSet<i64>> {
        // A panic elsewhere cannot leave the set inconsistent (single inserts and removes).
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reserves `ports` (already inserted under `set`) until the returned guard is dropped.
    pub fn hold(&self, ports: Vec<i64>) -> Reserved<'_> {
        Reserved { set: self, ports }
    }
}

/// Releases its ports when dropped: after the write that claims them was applied or refused.
#[derive(Debug)]
#[must_use = "dropping the guard releases the reservation before the write is applied"]
pub struct Reserved<'a> {
    set: &'a Reservations,
    ports: Vec<i64>,
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        if !self.ports.is_empty() {
            let mut set = self.set.lock();
            for p in &self.ports {
                set.remove(p);
            }
        }
    }
}

fn is_node_port(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .is_some_and(|s| s.type_.as_deref() == Some("NodePort"))
}

/// The node ports held by the stored Services other than the one at `own` (namespace, name).
pub fn held_by_others<'a>(
    stored: impl IntoIterator<Item = &'a Value>,
    own: (&str, &str),
) -> HashSet<i64> {
    let id = |v: &'a Value| {
        let s = |f: &str| v.pointer(f).and_then(Value::as_str).unwrap_or("");
        (s("/metadata/namespace"), s("/metadata/name"))
    };
    stored
        .into_iter()
        .filter(|v| id(v) != own)
        .flat_map(|v| node_ports_of(v).into_iter().map(|(_, np)| np))
        .collect()
}

/// Fills `spec.ports[*].nodePort` of a NodePort Service in place and returns the indices it
/// assigned (empty when it assigned none).
///
/// A port without a node port first keeps the one `previous` (the stored version, on update)
/// had for the port of the same name, as Kubernetes' `patchAllocatedValues` does, so that
/// re-applying a manifest without node ports changes nothing; otherwise it gets the lowest
/// port of the range that neither another Service (`held`) nor this one uses.
///
/// # Errors
/// [`AllocationError::Taken`] when an explicit node port is in `held` (checked here so the
/// user gets the field error without a raft round trip; the apply path checks again), and
/// [`AllocationError::Exhausted`] when the range is full.
pub fn assign(
    svc: &mut Service,
    previous: Option<&Service>,
    held: &HashSet<i64>,
) -> Result<Vec<usize>, AllocationError> {
    if !is_node_port(svc) {
        return Ok(Vec::new());
    }
    let Some(spec) = svc.spec.as_mut() else {
        return Ok(Vec::new());
    };
    let set = |np: Option<i32>| np.filter(|n| *n != 0);
    for (i, p) in spec.ports.iter().enumerate() {
        if let Some(np) = set(p.node_port)
            && held.contains(&i64::from(np))
        {
            return Err(AllocationError::Taken(FieldError::invalid(
                format!("spec.ports[{i}].nodePort"),
                np,
                NODE_PORT_ALLOCATED,
            )));
        }
    }
    let mut used: BTreeSet<i32> = spec.ports.iter().filter_map(|p| set(p.node_port)).collect();
    if let Some(prev) = previous
        .filter(|p| is_node_port(p))
        .and_then(|p| p.spec.as_ref())
    {
        let by_name: BTreeMap<&str, i32> = prev
            .ports
            .iter()
            .filter_map(|p| Some((p.name.as_deref().unwrap_or(""), set(p.node_port)?)))
            .collect();
        for p in spec.ports.iter_mut().filter(|p| set(p.node_port).is_none()) {
            if let Some(&np) = by_name.get(p.name.as_deref().unwrap_or(""))
                && !used.contains(&np)
                && !held.contains(&i64::from(np))
            {
                p.node_port = Some(np);
                used.insert(np);
            }
        }
    }
    let mut assigned = Vec::new();
    let mut candidates = (NODE_PORT_MIN..=NODE_PORT_MAX)
        .filter(|np| !used.contains(np) && !held.contains(&i64::from(*np)));
    for (i, p) in spec.ports.iter_mut().enumerate() {
        if set(p.node_port).is_some() {
            continue;
        }
        let Some(np) = candidates.next() else {
            return Err(AllocationError::Exhausted(FieldError::invalid(
                format!("spec.ports[{i}].nodePort"),
                0,
                format!(
                    "no free node port left in the range {NODE_PORT_MIN}-{NODE_PORT_MAX}: \
                     delete a NodePort Service or use ClusterIP"
                ),
            )));
        };
        p.node_port = Some(np);
        assigned.push(i);
    }
    Ok(assigned)
}

/// When an update turns a NodePort Service into another type, drops the node ports it kept
/// unchanged from `current`, as Kubernetes' `dropTypeDependentFields` does: otherwise
/// `kubectl patch -p '{"spec":{"type":"ClusterIP"}}'` would fail validation on ports the
/// user never wrote. Works on the raw request (before admission, which would refuse them).
pub fn drop_stale_node_ports(incoming: &mut Value, current: &Value) {
    let is_np = |v: &Value| v.pointer("/spec/type").and_then(Value::as_str) == Some("NodePort");
    if is_np(incoming) || !is_np(current) {
        return;
    }
    let old: BTreeMap<&str, &Value> = current
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                p.get("name").and_then(Value::as_str).unwrap_or(""),
                p.get("nodePort")?,
            ))
        })
        .collect();
    let Some(ports) = incoming
        .pointer_mut("/spec/ports")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        if p.get("nodePort").is_some() && p.get("nodePort") == old.get(name).copied() {
            p.remove("nodePort");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(ty: &str, ports: Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": ty, "ports": ports}}))
        .unwrap()
    }

    fn node_ports(svc: &Service) -> Vec<Option<i32>> {
        svc.spec
            .as_ref()
            .unwrap()
            .ports
            .iter()
            .map(|p| p.node_port)
            .collect()
    }

    #[test]
    fn missing_node_ports_get_the_lowest_free_ports_of_the_range() {
        let mut svc = service(
            "NodePort",
            json!([{"name": "a", "port": 80}, {"name": "b", "port": 81, "nodePort": 30001},
                   {"name": "c", "port": 82}]),
        );
        let held = HashSet::from([30000, 30002]);
        assert_eq!(assign(&mut svc, None, &held), Ok(vec![0, 2]));
        assert_eq!(
            node_ports(&svc),
            vec![Some(30003), Some(30001), Some(30004)]
        );
    }

    #[test]
    fn cluster_ip_services_get_no_node_ports() {
        let mut svc = service("ClusterIP", json!([{"port": 80}]));
        assert_eq!(assign(&mut svc, None, &HashSet::new()), Ok(vec![]));
        assert_eq!(node_ports(&svc), vec![None]);
    }

    #[test]
    fn an_explicit_node_port_held_by_another_service_is_refused_by_field() {
        let mut svc = service(
            "NodePort",
            json!([{"name": "a", "port": 80}, {"name": "b", "port": 81, "nodePort": 30080}]),
        );
        let err = assign(&mut svc, None, &HashSet::from([30080]))
            .unwrap_err()
            .field_error();
        assert_eq!(
            err.to_string(),
            "spec.ports[1].nodePort: Invalid value: 30080: provided port is already allocated"
        );
    }

    #[test]
    fn an_update_without_node_ports_keeps_the_allocated_ones_by_port_name() {
        let previous = service(
            "NodePort",
            json!([{"name": "a", "port": 80, "nodePort": 30100},
                   {"name": "b", "port": 81, "nodePort": 30101}]),
        );
        let mut svc = service(
            "NodePort",
            json!([{"name": "b", "port": 8081}, {"name": "new", "port": 90}]),
        );
        assert_eq!(
            assign(&mut svc, Some(&previous), &HashSet::new()),
            Ok(vec![1])
        );
        assert_eq!(node_ports(&svc), vec![Some(30101), Some(30000)]);
        // The unnamed single port of a service is matched by the empty name.
        let previous = service("NodePort", json!([{"port": 80, "nodePort": 31000}]));
        let mut svc = service("NodePort", json!([{"port": 80}]));
        assert_eq!(
            assign(&mut svc, Some(&previous), &HashSet::new()),
            Ok(vec![])
        );
        assert_eq!(node_ports(&svc), vec![Some(31000)]);
    }

    #[test]
    fn a_full_range_is_reported_with_the_range() {
        let held: HashSet<i64> = (i64::from(NODE_PORT_MIN)..=i64::from(NODE_PORT_MAX)).collect();
        let mut svc = service("NodePort", json!([{"port": 80}]));
        let err = assign(&mut svc, None, &held).unwrap_err();
        assert!(matches!(err, AllocationError::Exhausted(_)));
        assert!(err.to_string().contains("30000-32767"), "{err}");
    }

    #[test]
    fn a_reservation_lasts_until_its_guard_is_dropped() {
        let r = Reservations::default();
        r.lock().insert(30000);
        let guard = r.hold(vec![30000]);
        assert!(r.lock().contains(&30000));
        drop(guard);
        assert!(r.lock().is_empty());
    }

    #[test]
    fn held_ports_exclude_the_service_being_written() {
        let a = json!({"metadata": {"namespace": "x", "name": "a"},
            "spec": {"ports": [{"port": 80, "nodePort": 30000}]}});
        let b = json!({"metadata": {"namespace": "y", "name": "a"},
            "spec": {"ports": [{"port": 80, "nodePort": 30001}, {"port": 81}]}});
        let held = held_by_others([&a, &b], ("x", "a"));
        assert_eq!(held, HashSet::from([30001]));
    }

    #[test]
    fn leaving_node_port_type_drops_only_the_unchanged_node_ports() {
        let current = json!({"spec": {"type": "NodePort", "ports": [
            {"name": "a", "port": 80, "nodePort": 30000},
            {"name": "b", "port": 81, "nodePort": 30001}]}});
        let mut incoming = json!({"spec": {"type": "ClusterIP", "ports": [
            {"name": "a", "port": 80, "nodePort": 30000},
            {"name": "b", "port": 81, "nodePort": 30500}]}});
        drop_stale_node_ports(&mut incoming, &current);
        assert_eq!(incoming["spec"]["ports"][0].get("nodePort"), None);
        assert_eq!(incoming["spec"]["ports"][1]["nodePort"], 30500);
        let mut still = json!({"spec": {"type": "NodePort", "ports": [
            {"name": "a", "port": 80, "nodePort": 30000}]}});
        drop_stale_node_ports(&mut still, &current);
        assert_eq!(still["spec"]["ports"][0]["nodePort"], 30000);
    }
}
