//! `PATCH` with a JSON merge patch, of an object or of its status: merged and admitted by
//! the store at apply, except a Service's (its node ports are chosen here) and a Secret's
//! (stored sealed), merged here.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use ketch_api::decode::admit;
use serde_json::{Value, json};

use super::pod_security;
use super::service_ports::{assign_node_ports, is_service_spec, lost_node_port_race};
use super::shared::{
    MAX_BODY_BYTES, applied_response, check_name, meta_mut, meta_str, place_in_namespace,
    scope_for, submit,
};
use crate::server::ApiState;
use crate::server::encryption;
use crate::server::error::ApiError;
use crate::server::nodeports;
use crate::server::path::ResourcePath;
use crate::store::apply::merge_patch;
use crate::store::command::Write;

/// Deepest nesting of arrays and objects a merge patch may have. The store logs a patch as
/// it came (it merges it at apply), inside a raft entry ~6 levels deep, and serde_json reads
/// an entry back only up to 128 levels: a deeper patch would make its entry unreadable, which
/// stops the store. No object ketch serves nests deeper than ~20.
const MAX_PATCH_NESTING: usize = 64;

/// How deeply arrays and objects nest in `v` (a scalar is 0).
fn nesting(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(nesting).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

pub(super) async fn patch(
    st: &ApiState,
    path: &ResourcePath,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/merge-patch+json") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "unsupported patch type {content_type:?}: ketch supports application/merge-patch+json \
             (strategic merge, JSON patch and server-side apply are not supported yet)"
        )));
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::TooLarge {
            limit: MAX_BODY_BYTES,
        })?;
    let patch: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::BadRequest(format!(
            "patch body: line {} column {}: {e}",
            e.line(),
            e.column()
        ))
    })?;
    if !patch.is_object() {
        return Err(ApiError::BadRequest(
            "patch body: a merge patch must be a JSON object".into(),
        ));
    }
    if nesting(&patch) > MAX_PATCH_NESTING {
        return Err(ApiError::BadRequest(format!(
            "patch body: nested deeper than {MAX_PATCH_NESTING} levels"
        )));
    }
    let name = path.name.clone().unwrap_or_default();
    let key = path.key();
    // A Pod patch that touches the spec is merged here, not in the store, so that Pod
    // Security can check the result against the namespace's level before it is written.
    let pod_spec_patch = pod_security::applies(path) && patch.get("spec").is_some();
    if !is_service_spec(path) && !encryption::is_secret(&key) && !pod_spec_patch {
        // The store merges the patch into the stored object and admits the result itself
        // (Write::MergeStatus, Write::MergePatch): no read here, and no retry on a concurrent
        // write, since the merge and the write are one step in raft order. The name and
        // namespace cannot change by patch; a patch naming others is refused here.
        let mut patch = patch;
        check_name(&patch, path)?;
        place_in_namespace(&mut patch, path)?;
        let write = if path.status {
            Write::MergeStatus { key, patch }
        } else {
            let scope = scope_for(path);
            Write::MergePatch { key, patch, scope }
        };
        let applied = submit(st, write, path.info, &name).await?;
        return Ok(applied_response(headers, StatusCode::OK, applied));
    }
    // A Service's node ports are chosen here, from a read of every Service, so its patch is
    // merged here too; a Secret is stored sealed, and only the API server holds the keys to
    // merge into it. Without an explicit resourceVersion the patch applies to whatever is
    // stored: retry on a concurrent write, as the Kubernetes API server does.
    let explicit_rv = meta_str(&patch, "resourceVersion").is_some();
    let mut attempts = 0;
    loop {
        attempts += 1;
        st.store.read_barrier().await?;
        let mut current = st
            .store
            .get(&key)?
            .ok_or_else(|| ApiError::not_found(path.info, &name))?;
        encryption::reveal(st, &key, &mut current)?;
        let rv = meta_str(&current, "resourceVersion")
            .unwrap_or_default()
            .to_string();
        let mut next = current.clone();
        merge_patch(&mut next, &patch);
        if !explicit_rv {
            meta_mut(&mut next)?.insert("resourceVersion".into(), json!(rv));
        }
        check_name(&next, path)?;
        place_in_namespace(&mut next, path)?;
        nodeports::drop_stale_node_ports(&mut next, &current);
        let admitted = admit(path.info, next)?;
        pod_security::enforce(st, path, &admitted, Some(&current))?;
        let (admitted, _reserved) = assign_node_ports(st, path, &name, admitted, false).await?;
        let result = submit(
            st,
            Write::Update {
                key: path.key(),
                object: admitted,
                scope: scope_for(path),
            },
            path.info,
            &name,
        )
        .await;
        match result {
            Err(ApiError::Conflict { .. }) if !explicit_rv && attempts < 5 => continue,
            Err(e) if lost_node_port_race(&e) && attempts < 5 => continue,
            Err(e) => return Err(e),
            Ok(applied) => return Ok(applied_response(headers, StatusCode::OK, applied)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_counts_arrays_and_objects() {
        assert_eq!(nesting(&json!(1)), 0);
        assert_eq!(nesting(&json!({"a": [1, {"b": {}}], "c": 2})), 4);
        let mut deep = json!(0);
        for _ in 0..MAX_PATCH_NESTING {
            deep = json!([deep]);
        }
        assert_eq!(nesting(&deep), MAX_PATCH_NESTING);
    }
}
