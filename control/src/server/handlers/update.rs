//! `PUT` of an object or of its status: the whole object replaced, compare-and-set when it
//! carries a resourceVersion.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use ketch_api::decode::admit;
use serde_json::json;

use super::pod_security;
use super::service_ports::{assign_node_ports, is_service_spec, lost_node_port_race};
use super::shared::{
    applied_response, check_name, meta_mut, place_in_namespace, read_object, scope_for, submit,
};
use crate::server::ApiState;
use crate::server::error::ApiError;
use crate::server::nodeports;
use crate::server::path::ResourcePath;
use crate::store::command::Write;

pub(super) async fn update(
    st: &ApiState,
    path: &ResourcePath,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut obj = read_object(headers, body).await?;
    check_name(&obj, path)?;
    place_in_namespace(&mut obj, path)?;
    let name = path.name.clone().unwrap_or_default();
    meta_mut(&mut obj)?.insert("name".into(), json!(name));
    if is_service_spec(path) {
        st.store.read_barrier().await?;
        if let Some(current) = st.store.get(&path.key())? {
            nodeports::drop_stale_node_ports(&mut obj, &current);
        }
    }
    let mut admitted = admit(path.info, obj)?;
    let warning = pod_security::template_warning(st, path, &admitted)?;
    if pod_security::applies(path) {
        // The stored spec, if any: an update that keeps it is not checked again.
        let current = st.store.get(&path.key())?;
        pod_security::enforce(st, path, &admitted, current.as_ref())?;
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        // Only a Service write can lose a node-port race and go round again: anything else
        // hands its object over rather than copying it.
        let object = if is_service_spec(path) {
            admitted.clone()
        } else {
            std::mem::take(&mut admitted)
        };
        let (object, _reserved) = assign_node_ports(st, path, &name, object, false).await?;
        let result = submit(
            st,
            Write::Update {
                key: path.key(),
                object,
                scope: scope_for(path),
            },
            path.info,
            &name,
        )
        .await;
        match result {
            Err(e) if lost_node_port_race(&e) && attempt < 5 => continue,
            Err(e) => return Err(e),
            Ok(applied) => {
                let response = applied_response(headers, StatusCode::OK, applied);
                return Ok(pod_security::with_warning(response, warning));
            }
        }
    }
}
