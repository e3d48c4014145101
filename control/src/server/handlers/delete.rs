//! `DELETE` of an object: with its propagation policy (Foreground and Orphan through a
//! finalizer the garbage collector acts on) and its preconditions; a Namespace takes what is
//! in it along.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use ketch_api::params::QueryParams;
use ketch_api::resource::RESOURCES;
use serde_json::{Value, json};

use super::shared::{MAX_BODY_BYTES, applied_response, meta_mut, meta_str, scope_for, submit};
use crate::server::ApiState;
use crate::server::error::ApiError;
use crate::server::path::{ResourcePath, key_of};
use crate::store::command::Write;

pub(super) async fn delete(
    st: &ApiState,
    path: &ResourcePath,
    params: &QueryParams,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    /// Prepares a Foreground or Orphan delete: adds `finalizer` to the object (compare-and-set,
    /// retried on a concurrent write unless the caller gave a resourceVersion precondition) and
    /// returns the precondition the delete itself must carry, so nothing slips in between and the
    /// delete only sets `deletionTimestamp`. Nothing is added when the object is terminating
    /// already, when a precondition fails (the delete reports the conflict), or when no object
    /// names it as an owner: with no dependents there is nothing to wait for or orphan, and a
    /// finalizer would only wait for a collector that may not watch this kind.
    async fn add_deletion_finalizer(
        st: &ApiState,
        path: &ResourcePath,
        name: &str,
        finalizer: &str,
        precondition_rv: Option<u64>,
    ) -> Result<Option<u64>, ApiError> {
        let stored_rv =
            |o: &Value| meta_str(o, "resourceVersion").and_then(|s| s.parse::<u64>().ok());
        let mut attempts = 0;
        loop {
            attempts += 1;
            st.store.read_barrier().await?;
            let current = st
                .store
                .get(&path.key())?
                .ok_or_else(|| ApiError::not_found(path.info, name))?;
            if precondition_rv.is_some_and(|want| stored_rv(&current) != Some(want))
                || current.pointer("/metadata/deletionTimestamp").is_some()
            {
                return Ok(precondition_rv);
            }
            let mut finalizers: Vec<Value> = current
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if finalizers.iter().any(|f| f == finalizer) {
                return Ok(stored_rv(&current));
            }
            let uid = meta_str(&current, "uid").unwrap_or_default();
            if !has_dependents(st, path, uid)? {
                return Ok(precondition_rv);
            }
            finalizers.push(json!(finalizer));
            let mut next = current.clone();
            meta_mut(&mut next)?.insert("finalizers".into(), Value::Array(finalizers));
            let result = submit(
                st,
                Write::Update {
                    key: path.key(),
                    object: next,
                    scope: scope_for(path),
                },
                path.info,
                name,
            )
            .await;
            match result {
                Ok(applied) => return Ok(stored_rv(&applied.object)),
                Err(ApiError::Conflict { .. }) if precondition_rv.is_none() && attempts < 5 => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether any object names `uid` as an owner. Dependents of a namespaced owner live in its
    /// namespace; a cluster-scoped owner may own anything. A scan, but only for the rare
    /// Foreground and Orphan deletes.
    fn has_dependents(st: &ApiState, path: &ResourcePath, uid: &str) -> Result<bool, ApiError> {
        if uid.is_empty() {
            return Ok(false);
        }
        let ns = path.namespace.as_deref().filter(|_| path.info.namespaced);
        for info in RESOURCES.iter() {
            if ns.is_some() && !info.namespaced {
                continue;
            }
            let (_, objects) = st.store.list(&key_of(info, ns, None))?;
            let owns = |o: &Value| {
                o.pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| {
                        refs.iter()
                            .any(|r| r.get("uid").and_then(Value::as_str) == Some(uid))
                    })
            };
            if objects.iter().any(owns) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::TooLarge {
            limit: MAX_BODY_BYTES,
        })?;
    let options: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::BadRequest(format!(
                "DeleteOptions: line {} column {}: {e}",
                e.line(),
                e.column()
            ))
        })?
    };
    let policy = options
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| params.propagation_policy.clone());
    // Foreground and Orphan are carried out by the garbage collector, which acts on the
    // finalizer the object gets here (and removes it when done).
    let finalizer = match policy.as_deref() {
        None | Some("Background") => None,
        Some("Foreground") => Some(crate::controllers::FOREGROUND_FINALIZER),
        Some("Orphan") => Some(crate::controllers::ORPHAN_FINALIZER),
        Some(p) => {
            return Err(ApiError::BadRequest(format!(
                "propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
            )));
        }
    };
    let mut precondition_rv = match options
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
    {
        Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
            ApiError::BadRequest(format!(
                "preconditions.resourceVersion: invalid value {rv:?}"
            ))
        })?),
        None => None,
    };
    let name = path.name.clone().unwrap_or_default();
    if let Some(uid) = options
        .pointer("/preconditions/uid")
        .and_then(Value::as_str)
    {
        // Kubernetes' uid precondition, as a compare-and-set: the object read now must be
        // the one named, and the delete carries its resourceVersion, so nothing can replace
        // it in between (an evicted Pod recreated under its name is not deleted).
        st.store.read_barrier().await?;
        let current = st
            .store
            .get(&path.key())?
            .ok_or_else(|| ApiError::not_found(path.info, &name))?;
        let current_uid = meta_str(&current, "uid").unwrap_or_default();
        if current_uid != uid {
            return Err(ApiError::Conflict {
                resource: path.info.group_resource(),
                name,
                message: format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {current_uid}"
                ),
            });
        }
        if precondition_rv.is_none() {
            precondition_rv = meta_str(&current, "resourceVersion").and_then(|s| s.parse().ok());
        }
    }
    let now = ketch_api::time::now();
    let own = Write::Delete {
        key: path.key(),
        now: now.clone(),
        precondition_rv,
    };
    if path.info.plural != "namespaces" {
        let own = match finalizer {
            Some(f) => {
                precondition_rv =
                    add_deletion_finalizer(st, path, &name, f, precondition_rv).await?;
                Write::Delete {
                    key: path.key(),
                    now: now.clone(),
                    precondition_rv,
                }
            }
            None => own,
        };
        let applied = submit(st, own, path.info, &name).await?;
        return Ok(applied_response(headers, StatusCode::OK, applied));
    }
    if name == "default" {
        return Err(ApiError::Forbidden(
            "namespace \"default\" is protected and cannot be deleted".into(),
        ));
    }
    // Deleting a namespace deletes what is in it, in the same batch.
    st.store.read_barrier().await?;
    let mut writes = vec![(own, 64)];
    for info in RESOURCES.iter().filter(|r| r.namespaced) {
        let (_, objects) = st.store.list(&key_of(info, Some(&name), None))?;
        for o in objects {
            let obj_name = meta_str(&o, "name").unwrap_or_default();
            writes.push((
                Write::Delete {
                    key: key_of(info, Some(&name), Some(obj_name)),
                    now: now.clone(),
                    precondition_rv: None,
                },
                64,
            ));
        }
    }
    let mut results = st.batcher.submit_all(writes).await.into_iter();
    let first = results
        .next()
        .expect("the namespace's own delete was submitted")?;
    let applied = first.map_err(|e| ApiError::from_write(e, path.info, &name))?;
    for r in results {
        if let Err(e) = r {
            tracing::warn!(namespace = %name, error = %e, "deleting namespace contents");
        }
    }
    Ok(applied_response(headers, StatusCode::OK, applied))
}
