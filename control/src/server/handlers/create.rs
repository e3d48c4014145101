//! `POST` to a collection: a new object, its name generated when it asks for one, in a
//! namespace that exists and is not being deleted.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use ketch_api::decode::admit;
use serde_json::json;

use super::pod_security;
use super::service_ports::{assign_node_ports, is_service_spec, lost_node_port_race};
use super::shared::{
    applied_response, meta_mut, meta_str, place_in_namespace, read_object, submit,
};
use crate::server::ApiState;
use crate::server::error::ApiError;
use crate::server::path::{ResourcePath, key_of};
use crate::store::command::Write;

fn random_suffix() -> String {
    // Kubernetes' alphabet: no vowels (no accidental words), no look-alike characters.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

async fn ensure_namespace(st: &ApiState, path: &ResourcePath) -> Result<(), ApiError> {
    let Some(ns) = path.namespace.as_deref().filter(|_| path.info.namespaced) else {
        return Ok(());
    };
    let ns_info =
        ketch_api::resource::by_path("", "v1", "namespaces").expect("namespaces is registered");
    // Every create reads its namespace: decode only whether it is terminating.
    #[derive(serde::Deserialize)]
    struct NamespaceView {
        metadata: MetaView,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct MetaView {
        deletion_timestamp: Option<serde::de::IgnoredAny>,
    }
    match st
        .store
        .get_as::<NamespaceView>(&key_of(ns_info, None, Some(ns)))?
    {
        Some(v) if v.metadata.deletion_timestamp.is_some() => Err(ApiError::Forbidden(format!(
            "unable to create new content in namespace {ns} because it is being terminated"
        ))),
        Some(_) => Ok(()),
        None => Err(ApiError::not_found(ns_info, ns)),
    }
}

pub(super) async fn create(
    st: &ApiState,
    path: &ResourcePath,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if path.info.namespaced && path.namespace.is_none() {
        return Err(ApiError::BadRequest(format!(
            "{} is namespaced: POST to .../namespaces/{{namespace}}/{}",
            path.info.plural, path.info.plural
        )));
    }
    let mut obj = read_object(headers, body).await?;
    place_in_namespace(&mut obj, path)?;
    if meta_str(&obj, "resourceVersion").is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::BadRequest(
            "metadata.resourceVersion: Forbidden: resourceVersion should not be set on objects to be created".into(),
        ));
    }
    {
        let meta = meta_mut(&mut obj)?;
        for owned in [
            "uid",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
        ] {
            meta.remove(owned);
        }
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(ketch_api::time::now()));
    }
    if path.info.has_status
        && let Some(o) = obj.as_object_mut()
    {
        // Status is written only through /status, as in Kubernetes.
        o.remove("status");
        if path.info.plural == "namespaces" {
            o.insert("status".into(), json!({"phase": "Active"}));
        }
    }
    ensure_namespace(st, path).await?;
    let generate = meta_str(&obj, "name")
        .is_none_or(str::is_empty)
        .then(|| meta_str(&obj, "generateName").map(str::to_string))
        .flatten();
    // A generated name can collide, and so can a node port chosen concurrently with another
    // write: retry a few times, as Kubernetes' clients would. Only such a create goes round
    // again; any other hands its object over rather than copying it.
    let retriable = generate.is_some() || is_service_spec(path);
    for attempt in 0..5 {
        let mut candidate = if retriable {
            obj.clone()
        } else {
            std::mem::take(&mut obj)
        };
        if let Some(prefix) = &generate {
            meta_mut(&mut candidate)?
                .insert("name".into(), json!(format!("{prefix}{}", random_suffix())));
        }
        let admitted = admit(path.info, candidate)?;
        pod_security::enforce(st, path, &admitted, None)?;
        let warning = pod_security::template_warning(st, path, &admitted)?;
        let name = meta_str(&admitted, "name").unwrap_or_default().to_string();
        let (admitted, _reserved) = assign_node_ports(st, path, &name, admitted, true).await?;
        let key = key_of(path.info, path.namespace.as_deref(), Some(&name));
        match submit(
            st,
            Write::Create {
                key,
                object: admitted,
            },
            path.info,
            &name,
        )
        .await
        {
            Err(ApiError::AlreadyExists { .. }) if generate.is_some() && attempt < 4 => continue,
            Err(e) if lost_node_port_race(&e) && attempt < 4 => continue,
            Err(e) => return Err(e),
            Ok(applied) => {
                let response = applied_response(headers, StatusCode::CREATED, applied);
                return Ok(pod_security::with_warning(response, warning));
            }
        }
    }
    unreachable!("the loop returns on its last attempt")
}
