//! `pods/{name}/log` and `pods/{name}/proxy/...`: the API server finds the Pod's node and
//! forwards the request to that node's agent (as the Kubernetes API server does to the
//! kubelet), streaming both ways. The agent's URL is the Node annotation
//! `ketch.dev/agent-endpoint`, written by the agent when it registers.

use axum::body::Body;
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt as _;
use ketch_api::wellknown;
use serde_json::Value;

use super::ApiState;
use super::error::ApiError;
use super::path::{PodSub, ResourcePath, key_of};

/// Request headers passed on to the agent; everything else (auth, hop-by-hop) is not.
const FORWARDED_REQUEST_HEADERS: [header::HeaderName; 5] = [
    header::CONTENT_TYPE,
    header::ACCEPT,
    header::USER_AGENT,
    header::CONTENT_LENGTH,
    header::CACHE_CONTROL,
];

pub async fn pod_subresource(
    st: &ApiState,
    path: &ResourcePath,
    sub: &PodSub,
    method: &Method,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let namespace = path.namespace.as_deref().unwrap_or_default();
    let name = path.name.as_deref().unwrap_or_default();
    if matches!(sub, PodSub::Log) && method != Method::GET {
        return Err(ApiError::MethodNotAllowed(format!(
            "pods/log supports GET only, not {method}"
        )));
    }
    st.store.read_barrier().await?;
    let pod = st
        .store
        .get(&path.key())?
        .ok_or_else(|| ApiError::not_found(path.info, name))?;
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::BadRequest(format!("pod \"{name}\" is not scheduled to a node yet"))
        })?;
    let nodes = ketch_api::resource::lookup("nodes").expect("nodes are registered");
    let node_obj = st
        .store
        .get(&key_of(nodes, None, Some(node)))?
        .ok_or_else(|| {
            ApiError::Unavailable(format!("node \"{node}\" of pod \"{name}\" is gone"))
        })?;
    let endpoint = node_obj
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(wellknown::AGENT_ENDPOINT))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::Unavailable(format!(
                "node \"{node}\" has no agent endpoint (annotation {})",
                wellknown::AGENT_ENDPOINT
            ))
        })?;
    let mut url = match sub {
        PodSub::Log => format!(
            "{}/pods/{namespace}/{name}/log",
            endpoint.trim_end_matches('/')
        ),
        PodSub::Proxy(rest) => format!(
            "{}/pods/{namespace}/{name}/proxy/{rest}",
            endpoint.trim_end_matches('/')
        ),
        // Dispatched to `handlers::bind` and `handlers::evict` before proxying; never
        // reaches here.
        PodSub::Binding | PodSub::Eviction => {
            return Err(ApiError::Internal(
                "pods/binding and pods/eviction are served by the API server, not the node".into(),
            ));
        }
    };
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(q);
    }
    let url = agent_url(&url, namespace, name)?;
    // Mutual TLS: the agent takes only servers' certificates.
    let mut req = st.http.request(method.clone(), url);
    for h in FORWARDED_REQUEST_HEADERS {
        if let Some(v) = headers.get(&h) {
            req = req.header(h, v);
        }
    }
    if !matches!(*method, Method::GET | Method::HEAD) {
        req = req.body(reqwest::Body::wrap_stream(body.into_data_stream()));
    }
    let resp = req.send().await.map_err(|e| {
        ApiError::Unavailable(format!(
            "reaching the agent of node \"{node}\" at {endpoint}: {e}"
        ))
    })?;
    // The endpoint is an annotation: whoever answers there must hold this node's own
    // certificate, not only one of the cluster's, before anything of its answer goes back.
    let answered_by = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(reqwest::tls::TlsInfo::peer_certificate)
        .and_then(ketch_tls::identity_of);
    let expected = ketch_tls::node_identity(node);
    if answered_by.as_ref().map(|i| &i.name) != Some(&expected.name) {
        return Err(ApiError::BadGateway(format!(
            "the agent endpoint {endpoint} of node \"{node}\" answered as {}, not as {}",
            answered_by.map_or_else(|| "no known identity".to_string(), |i| i.name),
            expected.name
        )));
    }
    let mut out = Response::builder().status(resp.status().as_u16());
    for (k, v) in resp.headers() {
        if k != header::CONNECTION && k != header::TRANSFER_ENCODING {
            out = out.header(k, v);
        }
    }
    let stream = resp.bytes_stream().map_err(std::io::Error::other);
    out.body(Body::from_stream(stream))
        .map_err(|e| ApiError::Internal(format!("building the proxied response: {e}")))
        .map(IntoResponse::into_response)
}

/// The agent URL of a `log` or `proxy` request, refused unless it stays under the Pod's own
/// path: a `..` or `.` segment (also percent-encoded) or a backslash, which URL parsing
/// resolves or turns into `/`, would move a request authorized for one Pod onto another
/// path of the agent. So would a control character (the router has percent-decoded the
/// path: `%09` is a tab): URL parsing drops tabs and newlines anywhere and other controls
/// and spaces at the ends, so `.\t./` is `../` once parsed; and a segment that is dots once
/// trailing spaces are dropped is refused too.
pub(crate) fn agent_url(url: &str, namespace: &str, name: &str) -> Result<reqwest::Url, ApiError> {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let dot_segment = path.split('/').any(|seg| {
        let seg = seg.to_ascii_lowercase().replace("%2e", ".");
        let seg = seg.trim_matches(' ');
        seg == "." || seg == ".."
    });
    if dot_segment
        || path.contains('\\')
        || path.to_ascii_lowercase().contains("%5c")
        || path.contains(|c: char| c.is_ascii_control())
    {
        return Err(ApiError::BadRequest(format!(
            "pods/{name}: a proxied path may not hold \".\" or \"..\" segments, backslashes or \
             control characters"
        )));
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| ApiError::BadRequest(format!("pods/{name}: the proxied URL: {e}")))?;
    let prefix = format!("/pods/{namespace}/{name}/");
    if !parsed.path().contains(&prefix) {
        return Err(ApiError::BadRequest(format!(
            "pods/{name}: the proxied path leaves the pod's own path"
        )));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxied_path_stays_under_its_pod() {
        let base = "https://10.0.0.2:10250/pods/d/a/proxy/";
        for ok in ["", "x/y", "x.y/..z", "...", "%2e%2fx", "x?a=../b"] {
            let url = agent_url(&format!("{base}{ok}"), "d", "a").unwrap();
            assert!(url.path().starts_with("/pods/d/a/proxy/"), "{ok}: {url}");
        }
        for bad in [
            "../../b/proxy/x",
            "x/../../../b/proxy",
            "%2e%2e/%2E%2E/b/proxy",
            ".%2e/x",
            "./x",
            "..\\..\\b",
            "%5c..%5cb",
            // Found by the fuzz harness (src/fuzz.rs): parsing drops the control characters
            // (and a trailing space), leaving `..` segments that reached other paths of the
            // agent, here another Pod's proxy.
            "..\u{17}",
            ".\t./.\t./.\t./e/b/proxy/pods/d/a/",
            ".\n./.\r./x",
            "x/.. ",
        ] {
            let err = agent_url(&format!("{base}{bad}"), "d", "a").unwrap_err();
            assert!(matches!(err, ApiError::BadRequest(_)), "{bad}");
        }
    }
}
