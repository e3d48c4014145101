//! A Service's node ports, chosen by the handler of a create, update or patch from a read
//! of every stored Service (see [`crate::server::nodeports`]), and the retry when another
//! write took one first.

use ketch_api::core::Service;
use ketch_api::decode::Invalid;
use ketch_api::resource::SERVICES;
use serde_json::Value;

use crate::server::ApiState;
use crate::server::error::ApiError;
use crate::server::nodeports;
use crate::server::path::{ResourcePath, key_of};

/// A write through the main endpoint of `services` (the only kind with node ports).
pub(super) fn is_service_spec(path: &ResourcePath) -> bool {
    path.info.plural == SERVICES.plural && !path.status
}

/// For a Service spec write, fills in node ports (see [`nodeports`]) from a fresh read of
/// every stored Service, and reserves the ones it chose until the returned guard is dropped
/// (keep it until the write's result is in). Anything else passes through. `creating`
/// ignores a stored namesake (the create fails on it anyway) instead of inheriting its ports.
pub(super) async fn assign_node_ports<'s>(
    st: &'s ApiState,
    path: &ResourcePath,
    name: &str,
    admitted: Value,
    creating: bool,
) -> Result<(Value, nodeports::Reserved<'s>), ApiError> {
    let nothing = || st.node_ports.hold(Vec::new());
    if !is_service_spec(path) {
        return Ok((admitted, nothing()));
    }
    let mut svc: Service = serde_json::from_value(admitted)
        .map_err(|e| ApiError::Internal(format!("an admitted Service does not decode: {e}")))?;
    let node_port = svc
        .spec
        .as_ref()
        .is_some_and(|s| s.type_.as_deref() == Some("NodePort"));
    let reserved = if node_port {
        st.store.read_barrier().await?;
        // The read and the choice happen under the lock (no await inside), so a concurrent
        // write either sees our reservation or, once it is released, our stored result.
        let mut reservations = st.node_ports.lock();
        let (_, stored) = st.store.list(&key_of(path.info, None, None))?;
        let ns = path.namespace.as_deref().unwrap_or("");
        let mut held = nodeports::held_by_others(&stored, (ns, name));
        held.extend(reservations.iter().copied());
        let previous: Option<Service> = if creating {
            None
        } else {
            st.store
                .get(&path.key())?
                .and_then(|v| serde_json::from_value(v).ok())
        };
        let assigned = nodeports::assign(&mut svc, previous.as_ref(), &held).map_err(|e| {
            ApiError::Invalid(Invalid {
                kind: path.info.group_kind(),
                name: name.to_string(),
                errors: vec![e.field_error()],
            })
        })?;
        let ports: Vec<i64> = svc
            .spec
            .as_ref()
            .map(|s| {
                assigned
                    .iter()
                    .filter_map(|i| s.ports.get(*i)?.node_port.map(i64::from))
                    .collect()
            })
            .unwrap_or_default();
        reservations.extend(ports.iter().copied());
        drop(reservations);
        st.node_ports.hold(ports)
    } else {
        nothing()
    };
    let value = serde_json::to_value(&svc)
        .map_err(|e| ApiError::Internal(format!("encoding a Service: {e}")))?;
    Ok((value, reserved))
}

/// Whether the store refused a write because another write took one of its node ports
/// between our read and its commit: choosing again from a fresh read resolves it (and an
/// explicitly requested port is then reported by the pre-check in [`assign_node_ports`]).
pub(super) fn lost_node_port_race(e: &ApiError) -> bool {
    matches!(e, ApiError::Invalid(inv)
        if inv.errors.iter().any(|f| f.detail == crate::store::apply::NODE_PORT_ALLOCATED))
}
