//! Pod Security admission in the API server: a Pod's spec is checked against its namespace's
//! level ([`ketch_api::podsecurity`], the pure checks) when it is created, and when an update
//! changes the spec. An update that leaves the spec as it was is not checked again, as in
//! Kubernetes: raising a namespace's level must not stop controllers from updating the
//! labels, finalizers or status of Pods admitted before.

use std::collections::BTreeMap;

use ketch_api::core::PodSpec;
use ketch_api::podsecurity::{Level, check_pod_spec, violation_list, violation_message};
use serde_json::Value;

use crate::server::ApiState;
use crate::server::error::ApiError;
use crate::server::path::{ResourcePath, key_of};

/// True for writes Pod Security looks at: a Pod's whole object (not its status).
pub(super) fn applies(path: &ResourcePath) -> bool {
    path.info.kind == "Pod" && !path.status && path.pod_sub.is_none()
}

/// The level of namespace `ns`, from its label (read from this server's state, as the
/// namespace check of a create is: a label changed a moment ago may not be seen yet).
fn namespace_level(st: &ApiState, ns: &str) -> Result<Level, ApiError> {
    #[derive(serde::Deserialize)]
    struct NamespaceView {
        #[serde(default)]
        metadata: MetaView,
    }
    #[derive(serde::Deserialize, Default)]
    struct MetaView {
        #[serde(default)]
        labels: BTreeMap<String, String>,
    }
    let info =
        ketch_api::resource::by_path("", "v1", "namespaces").expect("namespaces is registered");
    let labels = st
        .store
        .get_as::<NamespaceView>(&key_of(info, None, Some(ns)))?
        .map(|v| v.metadata.labels)
        .unwrap_or_default();
    Ok(Level::of_namespace(&labels))
}

fn spec_of(pod: &Value) -> Result<PodSpec, ApiError> {
    let spec = pod.get("spec").cloned().unwrap_or(Value::Null);
    // The object was admitted already: its spec decodes.
    serde_json::from_value(spec).map_err(|e| ApiError::Internal(format!("pod spec: {e}")))
}

/// Refuses `pod` (admitted, canonical JSON) with 403 when its spec breaks the level of its
/// namespace; `old` is the stored Pod for an update, whose spec, if unchanged, is not checked.
///
/// # Errors
/// [`ApiError::Forbidden`] naming every violation's field, Kubernetes' wording:
/// `pods "x" is forbidden: violates PodSecurity "baseline:latest": …`.
pub(super) fn enforce(
    st: &ApiState,
    path: &ResourcePath,
    pod: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    if !applies(path) {
        return Ok(());
    }
    if old.is_some_and(|old| old.get("spec") == pod.get("spec")) {
        return Ok(());
    }
    let Some(ns) = path.namespace.as_deref() else {
        return Ok(());
    };
    let level = namespace_level(st, ns)?;
    if level == Level::Privileged {
        return Ok(());
    }
    let violations = check_pod_spec(&spec_of(pod)?, level, "spec");
    if violations.is_empty() {
        return Ok(());
    }
    let name = pod
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    Err(ApiError::Forbidden(format!(
        "pods \"{name}\" is forbidden: {}",
        violation_message(level, &violations)
    )))
}

/// Kubernetes' answer to a workload whose Pod template breaks its namespace's level: the
/// write goes through, with a `Warning` header (`299 - "would violate PodSecurity …"`, which
/// kubectl prints); the Pods its controller makes are then refused one by one. `None` for
/// other kinds, a template that meets the level, or a message that cannot be a header.
pub(super) fn template_warning(
    st: &ApiState,
    path: &ResourcePath,
    obj: &Value,
) -> Result<Option<axum::http::HeaderValue>, ApiError> {
    if !matches!(path.info.kind, "Deployment" | "ReplicaSet") || path.status {
        return Ok(None);
    }
    let Some(ns) = path.namespace.as_deref() else {
        return Ok(None);
    };
    let Some(template) = obj.get("spec").and_then(|s| s.get("template")) else {
        return Ok(None);
    };
    let level = namespace_level(st, ns)?;
    if level == Level::Privileged {
        return Ok(None);
    }
    let violations = check_pod_spec(&spec_of(template)?, level, "spec.template.spec");
    if violations.is_empty() {
        return Ok(None);
    }
    let text = format!(
        "would violate PodSecurity \"{level}:latest\": {}",
        violation_list(&violations)
    );
    let quoted = text.replace('\\', "\\\\").replace('"', "\\\"");
    Ok(axum::http::HeaderValue::from_str(&format!("299 - \"{quoted}\"")).ok())
}

/// Adds `warning` to `response`, if there is one.
pub(super) fn with_warning(
    mut response: axum::response::Response,
    warning: Option<axum::http::HeaderValue>,
) -> axum::response::Response {
    if let Some(w) = warning {
        response
            .headers_mut()
            .append(axum::http::header::WARNING, w);
    }
    response
}
