//! `POST pods/{name}/binding`: the scheduler's assignment of a Pod to a node.

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::shared::{json_response, read_object, submit};
use crate::server::ApiState;
use crate::server::error::ApiError;
use crate::server::path::ResourcePath;
use crate::store::command::Write;

/// `POST pods/{name}/binding` with a v1 `Binding` (what kube-scheduler sends): assigns the
/// Pod to the node `target.name`. One store write that checks "not yet assigned" itself, so
/// no read and no re-admission of the whole Pod. Answers `201` with a `Status`, as Kubernetes.
pub(super) async fn bind(
    st: &ApiState,
    path: &ResourcePath,
    method: &Method,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if method != Method::POST {
        return Err(ApiError::MethodNotAllowed(format!(
            "pods/binding supports POST only, not {method}"
        )));
    }
    let name = path.name.clone().unwrap_or_default();
    let binding = read_object(headers, body).await?;
    let field = |p: &str| binding.pointer(p).and_then(Value::as_str);
    let invalid = |e: ketch_api::FieldError| {
        ApiError::Invalid(ketch_api::decode::Invalid {
            kind: "Binding".into(),
            name: name.clone(),
            errors: vec![e],
        })
    };
    if let Some(kind) = field("/kind").filter(|k| *k != "Binding") {
        return Err(ApiError::BadRequest(format!(
            "a pods/binding body must be a Binding, not a {kind}"
        )));
    }
    if let Some(other) = field("/metadata/name").filter(|n| *n != name) {
        return Err(invalid(ketch_api::FieldError::invalid_str(
            "metadata.name",
            other,
            format!("must be the Pod's name {name:?}"),
        )));
    }
    if let Some(kind) = field("/target/kind").filter(|k| !k.is_empty() && *k != "Node") {
        return Err(invalid(ketch_api::FieldError::not_supported(
            "target.kind",
            kind,
            &["Node"],
        )));
    }
    let node = field("/target/name").unwrap_or_default();
    if node.is_empty() {
        return Err(invalid(ketch_api::FieldError::required("target.name", "")));
    }
    if let Some(e) = ketch_api::validation::is_dns1123_subdomain(node).first() {
        return Err(invalid(ketch_api::FieldError::invalid_str(
            "target.name",
            node,
            e.clone(),
        )));
    }
    submit(
        st,
        Write::Bind {
            key: path.key(),
            uid: field("/metadata/uid")
                .filter(|u| !u.is_empty())
                .map(str::to_string),
            node: node.to_string(),
            now: ketch_api::time::now(),
        },
        path.info,
        &name,
    )
    .await?;
    Ok(json_response(
        headers,
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "code": 201}),
    ))
}
