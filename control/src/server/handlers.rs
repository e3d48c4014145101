//! The REST handlers: one function per verb over the generic object store. Objects are
//! admitted (strictly decoded + validated) by `ketch_api`, then written through the group
//! committer; reads come from the local state machine after a linearizable read barrier.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ketch_api::core::Service;
use ketch_api::decode::{Invalid, admit, parse_documents};
use ketch_api::resource::{RESOURCES, ResourceInfo, SERVICES};
use ketch_api::selector::Selector;
use serde_json::{Value, json};

use super::ApiState;
use super::auth::Attributes;
use super::error::ApiError;
use super::fields::FieldSelector;
use super::metrics::{RequestLabels, VerbLabels};
use super::nodeports;
use super::path::{PodSub, ResourcePath, key_of, parse};
use crate::attrs::{Attrs, attrs_of};
use crate::store::apply::merge_patch;
use crate::store::command::{Applied, UpdateScope, Write};

/// Largest request body accepted (Kubernetes' etcd object limit is 1.5 MiB; requests 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 << 20;

/// Query parameters Kubernetes clients send; unknown ones are ignored as Kubernetes does.
#[derive(Debug, Default)]
pub struct Params {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub watch: bool,
    pub resource_version: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub allow_bookmarks: bool,
    pub propagation_policy: Option<String>,
    pub dry_run: bool,
}

impl Params {
    fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let map: HashMap<String, String> = match raw {
            Some(q) => serde_urlencoded_pairs(q),
            None => HashMap::new(),
        };
        let flag = |k: &str| map.get(k).is_some_and(|v| v == "true" || v == "1");
        Ok(Params {
            label_selector: map.get("labelSelector").cloned().filter(|s| !s.is_empty()),
            field_selector: map.get("fieldSelector").cloned().filter(|s| !s.is_empty()),
            watch: flag("watch"),
            resource_version: map
                .get("resourceVersion")
                .cloned()
                .filter(|s| !s.is_empty()),
            timeout_seconds: match map.get("timeoutSeconds") {
                Some(v) => Some(v.parse().map_err(|_| {
                    ApiError::BadRequest(format!("timeoutSeconds: invalid value {v:?}"))
                })?),
                None => None,
            },
            allow_bookmarks: flag("allowWatchBookmarks"),
            propagation_policy: map.get("propagationPolicy").cloned(),
            dry_run: map.contains_key("dryRun"),
        })
    }
}

fn serde_urlencoded_pairs(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Entry for `/api/{*rest}`.
pub async fn core(
    state: State<Arc<ApiState>>,
    method: Method,
    Path(rest): Path<String>,
    query: RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    dispatch(state, method, true, rest, query, headers, body).await
}

/// Entry for `/apis/{*rest}`.
pub async fn grouped(
    state: State<Arc<ApiState>>,
    method: Method,
    Path(rest): Path<String>,
    query: RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    dispatch(state, method, false, rest, query, headers, body).await
}

async fn dispatch(
    State(st): State<Arc<ApiState>>,
    method: Method,
    core: bool,
    rest: String,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let mut verb = verb_of(&method, None, false);
    let result = async {
        let user = st.authn.authenticate(
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        )?;
        if let Some(discovery) = discovery(core, &rest) {
            return Ok(json_response(&headers, StatusCode::OK, &discovery));
        }
        let path = parse(core, &rest)?;
        let params = Params::parse(query.as_deref())?;
        verb = match &path.pod_sub {
            Some(PodSub::Proxy(_)) => "proxy",
            Some(PodSub::Binding) => "create",
            _ => verb_of(&method, path.name.as_deref(), params.watch),
        };
        st.authz.authorize(
            &user,
            &Attributes {
                verb,
                group: path.info.group,
                resource: path.info.plural,
                subresource: match &path.pod_sub {
                    Some(PodSub::Log) => Some("log"),
                    Some(PodSub::Proxy(_)) => Some("proxy"),
                    Some(PodSub::Binding) => Some("binding"),
                    None => path.status.then_some("status"),
                },
                namespace: path.namespace.as_deref(),
                name: path.name.as_deref(),
            },
        )?;
        if path.pod_sub == Some(PodSub::Binding) {
            return bind(&st, &path, &method, &headers, body).await;
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
        if params.dry_run {
            return Err(ApiError::BadRequest("dryRun is not supported yet".into()));
        }
        match (verb, &method) {
            ("watch", _) => super::watch::watch(&st, &path, &params).await,
            ("list", _) => list(&st, &path, &params, &headers).await,
            ("get", _) => get(&st, &path, &params, &headers).await,
            ("create", _) => create(&st, &path, &headers, body).await,
            ("update", _) => update(&st, &path, &headers, body).await,
            ("patch", _) => patch(&st, &path, &headers, body).await,
            ("delete", _) => delete(&st, &path, &params, &headers, body).await,
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
fn applied_response(headers: &HeaderMap, code: StatusCode, applied: Applied) -> Response {
    match applied.encoded {
        Some(body) if !wants_yaml(headers) => {
            (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        _ => json_response(headers, code, &applied.object),
    }
}

/// Read and parse a request body (JSON or YAML, one document) within the size limit.
async fn read_object(headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::TooLarge {
            limit: MAX_BODY_BYTES,
        })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if content_type.contains("protobuf") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "unsupported content type {content_type:?}: send application/json or application/yaml"
        )));
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("request body is not UTF-8: {e}")))?;
    let mut docs =
        parse_documents(text).map_err(|e| ApiError::BadRequest(format!("request body: {e}")))?;
    match docs.len() {
        1 => Ok(docs.remove(0)),
        0 => Err(ApiError::BadRequest("request body is empty".into())),
        n => Err(ApiError::BadRequest(format!(
            "request body holds {n} objects: send one per request"
        ))),
    }
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn meta_mut(obj: &mut Value) -> Result<&mut serde_json::Map<String, Value>, ApiError> {
    let o = obj.as_object_mut().ok_or_else(|| {
        ApiError::BadRequest("the request body must be a JSON/YAML object".into())
    })?;
    o.entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| ApiError::BadRequest("metadata: must be an object".into()))
}

/// Fill the namespace from the path, refusing a body that names another one.
fn place_in_namespace(obj: &mut Value, path: &ResourcePath) -> Result<(), ApiError> {
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

fn check_name(obj: &Value, path: &ResourcePath) -> Result<(), ApiError> {
    if let (Some(url), Some(body)) = (path.name.as_deref(), meta_str(obj, "name"))
        && url != body
    {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({body}) does not match the name on the URL ({url})"
        )));
    }
    Ok(())
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn random_suffix() -> String {
    // Kubernetes' alphabet: no vowels (no accidental words), no look-alike characters.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

async fn submit(
    st: &ApiState,
    write: Write,
    info: &ResourceInfo,
    name: &str,
) -> Result<Applied, ApiError> {
    let size = match &write {
        Write::Create { object, .. } | Write::Update { object, .. } => object_size(object),
        Write::MergeStatus { patch, .. } | Write::MergePatch { patch, .. } => object_size(patch),
        Write::Delete { .. } | Write::Bind { .. } => 64,
    };
    st.batcher
        .submit(write, size)
        .await?
        .map_err(|e| ApiError::from_write(e, info, name))
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

async fn create(
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
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
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
            Ok(applied) => return Ok(applied_response(headers, StatusCode::CREATED, applied)),
        }
    }
    unreachable!("the loop returns on its last attempt")
}

/// `POST pods/{name}/binding` with a v1 `Binding` (what kube-scheduler sends): assigns the
/// Pod to the node `target.name`. One store write that checks "not yet assigned" itself, so
/// no read and no re-admission of the whole Pod. Answers `201` with a `Status`, as Kubernetes.
async fn bind(
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
            now: now_rfc3339(),
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

async fn get(
    st: &ApiState,
    path: &ResourcePath,
    params: &Params,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    read_barrier_unless_any_version(st, params).await?;
    let name = path.name.as_deref().unwrap_or_default();
    let obj = st
        .store
        .get(&path.key())?
        .ok_or_else(|| ApiError::not_found(path.info, name))?;
    Ok(json_response(headers, StatusCode::OK, &obj))
}

/// Label and field selectors of a list or watch.
pub struct Filter {
    labels: Option<Selector>,
    fields: FieldSelector,
    plural: &'static str,
}

impl Filter {
    pub fn new(info: &'static ResourceInfo, params: &Params) -> Result<Self, ApiError> {
        let labels = match &params.label_selector {
            Some(s) => Some(
                Selector::parse(s)
                    .map_err(|e| ApiError::BadRequest(format!("labelSelector: {e}")))?,
            ),
            None => None,
        };
        let fields = match &params.field_selector {
            Some(s) => FieldSelector::parse(info.plural, s)?,
            None => FieldSelector::default(),
        };
        Ok(Self {
            labels,
            fields,
            plural: info.plural,
        })
    }

    /// True when the filter selects everything.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.labels.as_ref().is_none_or(Selector::is_empty)
    }

    pub fn matches_attrs(&self, attrs: &Attrs) -> bool {
        self.fields.matches(attrs)
            && self
                .labels
                .as_ref()
                .is_none_or(|s| s.matches(&attrs.labels))
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.is_empty() || self.matches_attrs(&attrs_of(self.plural, object))
    }
}

/// The linearizable read barrier, skipped for `resourceVersion=0`: Kubernetes' "any
/// version", served from this server's applied state without asking the leader (the
/// forwarding middleware keeps such reads local too), so a follower answers it even when it
/// is cut off, and its answer may be behind.
async fn read_barrier_unless_any_version(st: &ApiState, params: &Params) -> Result<(), ApiError> {
    if params.resource_version.as_deref() == Some("0") {
        return Ok(());
    }
    st.store.read_barrier().await?;
    Ok(())
}

fn wants_yaml(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("yaml") && !a.contains("json"))
}

async fn list(
    st: &ApiState,
    path: &ResourcePath,
    params: &Params,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let filter = Filter::new(path.info, params)?;
    read_barrier_unless_any_version(st, params).await?;
    let (revision, raw) = st.store.list_raw(&path.key())?;
    if filter.is_empty() && !wants_yaml(headers) {
        // The common case — everything of a kind — splices the stored JSON as it is:
        // no parse and re-serialize of thousands of objects.
        let head = json!({
            "apiVersion": path.info.api_version(),
            "kind": path.info.list_kind(),
            "metadata": {"resourceVersion": revision.to_string()},
        });
        let mut body = serde_json::to_vec(&head).expect("JSON values always serialize");
        body.pop(); // the closing brace
        body.extend_from_slice(br#","items":["#);
        for (i, obj) in raw.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(obj);
        }
        body.extend_from_slice(b"]}");
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response());
    }
    let mut items = Vec::with_capacity(raw.len());
    for bytes in &raw {
        let obj: Value = serde_json::from_slice(bytes)
            .map_err(|e| ApiError::Internal(format!("stored object is not JSON: {e}")))?;
        if filter.matches(&obj) {
            items.push(obj);
        }
    }
    let list = json!({
        "apiVersion": path.info.api_version(),
        "kind": path.info.list_kind(),
        "metadata": {"resourceVersion": revision.to_string()},
        "items": items,
    });
    Ok(json_response(headers, StatusCode::OK, &list))
}

fn scope_for(path: &ResourcePath) -> UpdateScope {
    if path.status {
        UpdateScope::Status
    } else if path.info.has_status {
        UpdateScope::Spec
    } else {
        UpdateScope::Whole
    }
}

async fn update(
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
            Ok(applied) => return Ok(applied_response(headers, StatusCode::OK, applied)),
        }
    }
}

/// A write through the main endpoint of `services` (the only kind with node ports).
fn is_service_spec(path: &ResourcePath) -> bool {
    path.info.plural == SERVICES.plural && !path.status
}

/// For a Service spec write, fills in node ports (see [`nodeports`]) from a fresh read of
/// every stored Service, and reserves the ones it chose until the returned guard is dropped
/// (keep it until the write's result is in). Anything else passes through. `creating`
/// ignores a stored namesake (the create fails on it anyway) instead of inheriting its ports.
async fn assign_node_ports<'s>(
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
fn lost_node_port_race(e: &ApiError) -> bool {
    matches!(e, ApiError::Invalid(inv)
        if inv.errors.iter().any(|f| f.detail == crate::store::apply::NODE_PORT_ALLOCATED))
}

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

async fn patch(
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
    if !is_service_spec(path) {
        // The store merges the patch into the stored object and admits the result itself
        // (Write::MergeStatus, Write::MergePatch): no read here, and no retry on a concurrent
        // write, since the merge and the write are one step in raft order. The name and
        // namespace cannot change by patch; a patch naming others is refused here.
        let mut patch = patch;
        check_name(&patch, path)?;
        place_in_namespace(&mut patch, path)?;
        let key = path.key();
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
    // merged here too. Without an explicit resourceVersion it applies to whatever is stored:
    // retry on a concurrent write, as the Kubernetes API server does.
    let explicit_rv = meta_str(&patch, "resourceVersion").is_some();
    let mut attempts = 0;
    loop {
        attempts += 1;
        st.store.read_barrier().await?;
        let current = st
            .store
            .get(&path.key())?
            .ok_or_else(|| ApiError::not_found(path.info, &name))?;
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

async fn delete(
    st: &ApiState,
    path: &ResourcePath,
    params: &Params,
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
    let now = now_rfc3339();
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

    #[test]
    fn query_strings_decode_percent_escapes() {
        let m = serde_urlencoded_pairs("labelSelector=app%3Dweb%2Ctier+in+(a)&watch=true");
        assert_eq!(m["labelSelector"], "app=web,tier in (a)");
        assert_eq!(m["watch"], "true");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

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
