//! What every verb's handler shares: reading a request body, the response encodings (JSON,
//! or YAML on request), the metadata a handler fills in or checks, and the write path to the
//! group committer. The query parameters are `ketch_api::params`.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ketch_api::decode::parse_documents;
use ketch_api::params::ReadParams;
use ketch_api::resource::ResourceInfo;
use serde_json::{Value, json};

use crate::server::ApiState;
use crate::server::encryption;
use crate::server::error::ApiError;
use crate::server::path::ResourcePath;
use crate::store::command::{Applied, UpdateScope, Write};

/// Largest request body accepted (Kubernetes' etcd object limit is 1.5 MiB; requests 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 << 20;
/// Bodies up to this size are parsed on the async worker that read them (tens of µs).
const INLINE_PARSE_BYTES: usize = 16 << 10;

/// Serialize a response body as JSON, or YAML when the client asks for it.
pub fn json_response(headers: &HeaderMap, code: StatusCode, value: &Value) -> Response {
    if wants_yaml(headers) {
        match serde_yaml::to_string(value) {
            Ok(text) => (code, [(header::CONTENT_TYPE, "application/yaml")], text).into_response(),
            Err(e) => ApiError::Internal(format!("encoding YAML: {e}")).into_response(),
        }
    } else {
        let body = serde_json::to_vec(value).expect("JSON values always serialize");
        (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

/// The object a write stored, as a response: the store's own encoding of it when it made
/// one (the same bytes it stored), else encoded here.
pub(super) fn applied_response(
    headers: &HeaderMap,
    code: StatusCode,
    applied: Applied,
) -> Response {
    match applied.encoded {
        Some(body) if !wants_yaml(headers) => {
            (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        _ => json_response(headers, code, &applied.object),
    }
}

pub(super) fn wants_yaml(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("yaml") && !a.contains("json"))
}

/// Read and parse a request body (JSON or YAML, one document) within the size limit.
pub(super) async fn read_object(headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::TooLarge {
            limit: MAX_BODY_BYTES,
        })?;
    let bytes_len = bytes.len();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if content_type.contains("protobuf") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "unsupported content type {content_type:?}: send application/json or application/yaml"
        )));
    }
    let parse = move || {
        let text = std::str::from_utf8(&bytes)
            .map_err(|e| ApiError::BadRequest(format!("request body is not UTF-8: {e}")))?;
        parse_documents(text).map_err(|e| ApiError::BadRequest(format!("request body: {e}")))
    };
    // A large body takes milliseconds to parse (YAML more): off the async workers, so it
    // cannot stall the watches and requests that share them. Small ones parse in place.
    let mut docs = if bytes_len > INLINE_PARSE_BYTES {
        tokio::task::spawn_blocking(parse)
            .await
            .map_err(|e| ApiError::Internal(format!("parsing the request body: {e}")))??
    } else {
        parse()?
    };
    match docs.len() {
        1 => Ok(docs.remove(0)),
        0 => Err(ApiError::BadRequest("request body is empty".into())),
        n => Err(ApiError::BadRequest(format!(
            "request body holds {n} objects: send one per request"
        ))),
    }
}

pub(super) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

pub(super) fn meta_mut(obj: &mut Value) -> Result<&mut serde_json::Map<String, Value>, ApiError> {
    let o = obj.as_object_mut().ok_or_else(|| {
        ApiError::BadRequest("the request body must be a JSON/YAML object".into())
    })?;
    o.entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| ApiError::BadRequest("metadata: must be an object".into()))
}

/// Fill the namespace from the path, refusing a body that names another one.
pub(super) fn place_in_namespace(obj: &mut Value, path: &ResourcePath) -> Result<(), ApiError> {
    let body_ns = meta_str(obj, "namespace").map(str::to_string);
    let meta = meta_mut(obj)?;
    match (&path.namespace, body_ns) {
        (Some(ns), Some(b)) if !b.is_empty() && &b != ns => Err(ApiError::BadRequest(format!(
            "the namespace of the provided object ({b}) does not match the namespace sent on the request ({ns})"
        ))),
        (Some(ns), _) => {
            meta.insert("namespace".into(), json!(ns));
            Ok(())
        }
        (None, Some(b)) if !b.is_empty() && !path.info.namespaced => {
            Err(ApiError::BadRequest(format!(
                "metadata.namespace: {} is cluster-scoped and takes no namespace",
                path.info.plural
            )))
        }
        (None, _) => Ok(()),
    }
}

pub(super) fn check_name(obj: &Value, path: &ResourcePath) -> Result<(), ApiError> {
    if let (Some(url), Some(body)) = (path.name.as_deref(), meta_str(obj, "name"))
        && url != body
    {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({body}) does not match the name on the URL ({url})"
        )));
    }
    Ok(())
}

/// The linearizable read barrier, skipped for `resourceVersion=0`: Kubernetes' "any
/// version", served from this server's applied state without asking the leader (the
/// forwarding middleware keeps such reads local too), so a follower answers it even when it
/// is cut off, and its answer may be behind.
pub(super) async fn read_barrier_unless_any_version(
    st: &ApiState,
    read: &ReadParams,
) -> Result<(), ApiError> {
    if read.resource_version.as_deref() == Some("0") {
        return Ok(());
    }
    st.store.read_barrier().await?;
    Ok(())
}

pub(super) fn scope_for(path: &ResourcePath) -> UpdateScope {
    if path.status {
        UpdateScope::Status
    } else if path.info.has_status {
        UpdateScope::Spec
    } else {
        UpdateScope::Whole
    }
}

/// Hands one write to the group committer and waits for its result. A Secret is sealed
/// here before it is proposed, and its result opened (see [`crate::server::encryption`]):
/// every handler write passes this point.
pub(super) async fn submit(
    st: &ApiState,
    mut write: Write,
    info: &ResourceInfo,
    name: &str,
) -> Result<Applied, ApiError> {
    encryption::seal_write(st, &mut write);
    let key = write.key().to_string();
    let size = match &write {
        Write::Create { object, .. } | Write::Update { object, .. } => object_size(object),
        Write::MergeStatus { patch, .. } | Write::MergePatch { patch, .. } => object_size(patch),
        Write::Delete { .. } | Write::Bind { .. } => 64,
    };
    let mut applied = st
        .batcher
        .submit(write, size)
        .await?
        .map_err(|e| ApiError::from_write(e, info, name))?;
    encryption::reveal_applied(st, &key, &mut applied)?;
    Ok(applied)
}

/// About the serialized length of `v`, counted without serializing it: batch sizing needs
/// no more (the batch cap is a soft 1 MiB), and a write should not pay a second encoding.
/// Escapes are not counted; a number counts as its widest.
fn object_size(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 20,
        Value::String(s) => s.len() + 2,
        Value::Array(a) => 2 + a.iter().map(|x| object_size(x) + 1).sum::<usize>(),
        Value::Object(m) => {
            2 + m
                .iter()
                .map(|(k, x)| k.len() + 4 + object_size(x))
                .sum::<usize>()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_estimate_stays_near_the_encoded_length() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-7d9f", "namespace": "default", "labels": {"app": "web"},
                "resourceVersion": "12", "generation": 1},
            "spec": {"containers": [{"name": "web", "image": "file:hello.wasm",
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}],
                "restartPolicy": "Always", "terminationGracePeriodSeconds": 30},
            "status": {"phase": "Pending", "conditions": [], "ready": false, "x": null}});
        let exact = serde_json::to_vec(&pod).unwrap().len();
        let estimate = object_size(&pod);
        assert!(
            estimate >= exact && estimate <= exact * 3 / 2,
            "estimate {estimate}, encoded {exact}"
        );
    }
}
