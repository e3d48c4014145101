//! The REST handlers: one module per verb over the generic object store (`create.rs`,
//! `get.rs`, `list.rs`, `update.rs`, `patch.rs`, `delete.rs`, `bind.rs`, `evict.rs`; watch is
//! [`super::watch`]), and here the entry points that authenticate, parse the path and query,
//! authorize and dispatch to them. Objects are admitted (strictly decoded + validated) by
//! `ketch_api`, then written through the group committer; reads come from the local state
//! machine after a linearizable read barrier. What several verbs share (bodies, responses,
//! metadata, the write path) is in `shared.rs`; a Service's node ports in `service_ports.rs`.

mod bind;
mod create;
mod delete;
mod evict;
mod get;
mod list;
mod patch;
mod pod_security;
mod review;
mod service_ports;
mod shared;
mod update;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use ketch_api::params::{QueryParams, from_query};
use ketch_api::resource::RESOURCES;
use serde_json::{Value, json};

pub use list::Filter;
pub use shared::{MAX_BODY_BYTES, json_response};

use super::ApiState;
use super::auth::Attributes;
use super::error::ApiError;
use super::inflight::Class;
use super::metrics::{RequestLabels, VerbLabels};
use super::path::{PodSub, parse};

/// Entry for `/api/{*rest}`.
pub async fn core(
    state: State<Arc<ApiState>>,
    method: Method,
    Path(rest): Path<String>,
    query: RawQuery,
    peer: Option<Extension<ketch_tls::PeerIdentity>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    dispatch(state, method, true, rest, query, peer, headers, body).await
}

/// Entry for `/apis/{*rest}`.
pub async fn grouped(
    state: State<Arc<ApiState>>,
    method: Method,
    Path(rest): Path<String>,
    query: RawQuery,
    peer: Option<Extension<ketch_tls::PeerIdentity>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    dispatch(state, method, false, rest, query, peer, headers, body).await
}

#[expect(
    clippy::too_many_arguments,
    reason = "the request's extractors, handed on once from the two entry points"
)]
async fn dispatch(
    State(st): State<Arc<ApiState>>,
    method: Method,
    core: bool,
    rest: String,
    RawQuery(query): RawQuery,
    peer: Option<Extension<ketch_tls::PeerIdentity>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let mut verb = verb_of(&method, None, false);
    let result = async {
        let user = st
            .authn
            .authenticate(&headers, peer.as_ref().map(|p| &p.0))?;
        if let Some(discovery) = discovery(core, &rest) {
            let _slot = st.inflight.enter(&user, Class::Read)?;
            let prefix = if core { "/api/" } else { "/apis/" };
            let url = format!("{prefix}{}", rest.trim_matches('/'));
            st.authz.authorize_non_resource(&user, "get", &url)?;
            return Ok(json_response(&headers, StatusCode::OK, &discovery));
        }
        if let Some(r) = review::Review::of_path(&rest).filter(|_| !core) {
            verb = "create";
            st.authz.authorize(&user, &r.attributes())?;
            // A review is a question, not a write: nothing is stored.
            let _slot = st.inflight.enter(&user, Class::Read)?;
            return review::review(&st, &user, r, &method, &headers, body).await;
        }
        let path = parse(core, &rest)?;
        let params: QueryParams = from_query(query.as_deref().unwrap_or_default())?;
        verb = match &path.pod_sub {
            Some(PodSub::Proxy(_)) => "proxy",
            Some(PodSub::Binding | PodSub::Eviction) => "create",
            _ => verb_of(&method, path.name.as_deref(), params.read.watch),
        };
        // Kubernetes authorizes a `pods/proxy` request by its method (get, create, ...);
        // `proxy` stays the metrics' verb.
        let authz_verb = match &path.pod_sub {
            Some(PodSub::Proxy(_)) => match method.as_str() {
                "POST" => "create",
                "PUT" => "update",
                "PATCH" => "patch",
                "DELETE" => "delete",
                _ => "get",
            },
            _ => verb,
        };
        let attrs = Attributes {
            verb: authz_verb,
            group: path.info.group,
            resource: path.info.plural,
            subresource: match &path.pod_sub {
                Some(PodSub::Log) => Some("log"),
                Some(PodSub::Proxy(_)) => Some("proxy"),
                Some(PodSub::Binding) => Some("binding"),
                Some(PodSub::Eviction) => Some("eviction"),
                None => path.status.then_some("status"),
            },
            namespace: path.namespace.as_deref(),
            name: path.name.as_deref(),
            field_selector: params.list.field_selector.as_deref(),
        };
        st.authz.authorize(&user, &attrs)?;
        // Watches and the streaming subresources hold no place (see `inflight`).
        let _slot = match (&path.pod_sub, verb) {
            (Some(PodSub::Log | PodSub::Proxy(_)), _) | (None, "watch") => None,
            (_, "get" | "list") => st.inflight.enter(&user, Class::Read)?,
            _ => st.inflight.enter(&user, Class::Write)?,
        };
        if path.pod_sub.is_none() && !matches!(verb, "get" | "list" | "watch") {
            st.quota.check(&user, verb)?;
        }
        let body = node_restriction(&user, &attrs, &headers, body).await?;
        if path.pod_sub == Some(PodSub::Binding) {
            return bind::bind(&st, &path, &method, &headers, body).await;
        }
        if path.pod_sub == Some(PodSub::Eviction) {
            if params.dry_run.is_some() {
                return Err(ApiError::BadRequest("dryRun is not supported yet".into()));
            }
            return evict::evict(&st, &path, &method, &params, &headers, body).await;
        }
        if let Some(sub) = &path.pod_sub {
            return super::proxy::pod_subresource(
                &st,
                &path,
                sub,
                &method,
                query.as_deref(),
                &headers,
                body,
            )
            .await;
        }
        if params.dry_run.is_some() {
            return Err(ApiError::BadRequest("dryRun is not supported yet".into()));
        }
        match (verb, &method) {
            ("watch", _) => super::watch::watch(&st, &path, &params, &user.name).await,
            ("list", _) => list::list(&st, &path, &params, &headers).await,
            ("get", _) => get::get(&st, &path, &params, &headers).await,
            ("create", _) => create::create(&st, &path, &headers, body).await,
            ("update", _) => update::update(&st, &path, &headers, body).await,
            ("patch", _) => patch::patch(&st, &path, &headers, body).await,
            ("delete", _) => delete::delete(&st, &path, &params, &headers, body).await,
            _ => Err(ApiError::MethodNotAllowed(format!(
                "the server does not allow this method on the requested resource: {method} {}",
                if path.name.is_some() {
                    "object"
                } else {
                    "collection"
                }
            ))),
        }
    }
    .await;
    let response = result.unwrap_or_else(IntoResponse::into_response);
    let code = response.status().as_u16();
    st.metrics
        .requests
        .get_or_create(&RequestLabels {
            verb: verb.to_string(),
            code,
        })
        .inc();
    if verb != "watch" {
        st.metrics
            .latency
            .get_or_create(&VerbLabels {
                verb: verb.to_string(),
            })
            .observe(started.elapsed().as_secs_f64());
    }
    response
}

/// NodeRestriction on what the authorizer cannot see: a node creates only its own Node and
/// Lease (the name is in the body), and does not patch its Node's spec (taints,
/// `unschedulable`). The body is read only for those requests of node credentials.
async fn node_restriction(
    user: &crate::server::auth::User,
    attrs: &Attributes<'_>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Body, ApiError> {
    use crate::authz::node;
    let Some(n) = node::node_of(user) else {
        return Ok(body);
    };
    let create = attrs.verb == "create" && attrs.subresource.is_none();
    let node_patch = matches!(attrs.verb, "patch" | "update")
        && attrs.resource == "nodes"
        && attrs.subresource.is_none();
    let guarded = matches!(
        (attrs.group, attrs.resource),
        ("", "nodes") | ("coordination.k8s.io", "leases")
    );
    if !guarded || !(create || node_patch) {
        return Ok(body);
    }
    let value = shared::read_object(headers, body).await?;
    let checked = if create {
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        node::restrict_create(n, attrs, name)
    } else {
        node::restrict_node_patch(n, &value)
    };
    checked.map_err(ApiError::Forbidden)?;
    // Handed on as JSON, which every body parser downstream reads (YAML included).
    Ok(Body::from(
        serde_json::to_vec(&value).expect("JSON values always serialize"),
    ))
}

fn verb_of(method: &Method, name: Option<&str>, watch: bool) -> &'static str {
    match (method.as_str(), name.is_some()) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", false) => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

/// `/api/v1` and `/apis/{group}/{version}`: the APIResourceList kubectl reads.
fn discovery(core: bool, rest: &str) -> Option<Value> {
    let rest = rest.trim_matches('/');
    // `/api/v1` names the core group's version; `/apis/apps/v1` names group/version.
    let gv = rest;
    if core && rest.contains('/') {
        return None;
    }
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.api_version() == gv)
        .flat_map(|r| {
            let mut v = vec![json!({
                "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                "kind": r.kind, "shortNames": r.short_names,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            })];
            if r.has_status {
                v.push(json!({"name": format!("{}/status", r.plural), "singularName": "",
                    "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]}));
            }
            if r.plural == "pods" {
                // kubectl drain evicts through this subresource only when discovery lists
                // it (otherwise it deletes, bypassing PodDisruptionBudgets).
                v.push(json!({"name": "pods/eviction", "singularName": "", "namespaced": true,
                    "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]}));
            }
            v
        })
        .collect();
    if resources.is_empty() {
        return None;
    }
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_lists_budgets_and_the_pods_eviction_subresource_as_kubectl_looks_for_it() {
        let core = discovery(true, "v1").unwrap();
        let eviction = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "pods/eviction")
            .expect("pods/eviction is listed");
        assert_eq!(
            (&eviction["group"], &eviction["version"], &eviction["kind"]),
            (&json!("policy"), &json!("v1"), &json!("Eviction"))
        );
        assert_eq!(eviction["verbs"], json!(["create"]));
        let policy = discovery(false, "policy/v1").unwrap();
        let names: Vec<&str> = policy["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert_eq!(
            names,
            ["poddisruptionbudgets", "poddisruptionbudgets/status"]
        );
    }
}
