//! The agent's HTTP endpoint: container logs and the Pod proxy, for the API server only.
//! Over TLS (the node's certificate) a request must come with a server's client certificate
//! from the cluster CA; an agent started without a certificate (tests of the agent alone)
//! takes its bearer token instead.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use bytes::Bytes;
use http::header;
use ketch_api::params::{LogParams, from_query};
use ketch_workload::{InvokeFailure, PodError};
use subtle::ConstantTimeEq as _;

use crate::error::AgentError;
use crate::logs;
use crate::pods::Ctx;

/// How often a following log reader checks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

#[derive(Clone)]
pub(crate) struct HttpState {
    pub ctx: Arc<Ctx>,
    /// `None` over TLS: callers are checked by their certificate.
    pub token: Option<Arc<str>>,
}

pub(crate) fn router(state: HttpState) -> Router {
    Router::new()
        .route("/pods/{ns}/{pod}/log", get(log))
        .route("/pods/{ns}/{pod}/proxy", any(proxy_root))
        .route("/pods/{ns}/{pod}/proxy/", any(proxy_root))
        .route("/pods/{ns}/{pod}/proxy/{*path}", any(proxy))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state)
}

async fn auth(State(st): State<HttpState>, req: Request, next: Next) -> Response {
    // Health and metrics are readable without the token, as Prometheus scrapes them.
    if matches!(req.uri().path(), "/healthz" | "/metrics") {
        return next.run(req).await;
    }
    let ok = match &st.token {
        None => req
            .extensions()
            .get::<ketch_tls::PeerIdentity>()
            .is_some_and(|p| p.0.in_group(ketch_tls::SERVERS_GROUP)),
        Some(token) => req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| bool::from(t.trim().as_bytes().ct_eq(token.as_bytes()))),
    };
    if ok {
        next.run(req).await
    } else {
        AgentError::Unauthorized.into_response()
    }
}

async fn metrics(State(st): State<HttpState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.ctx.metrics.encode(),
    )
        .into_response()
}

async fn proxy_root(
    State(st): State<HttpState>,
    Path((ns, pod)): Path<(String, String)>,
    req: Request,
) -> Response {
    forward(st, ns, pod, String::new(), req).await
}

async fn proxy(
    State(st): State<HttpState>,
    Path((ns, pod, path)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    forward(st, ns, pod, path, req).await
}

/// Rewrites the URI to the remainder after `/proxy` (query kept) and invokes the Pod.
async fn forward(
    st: HttpState,
    ns: String,
    pod: String,
    rest: String,
    mut req: Request,
) -> Response {
    let pq = match req.uri().query() {
        Some(q) => format!("/{rest}?{q}"),
        None => format!("/{rest}"),
    };
    match pq.parse::<http::Uri>() {
        Ok(uri) => *req.uri_mut() = uri,
        Err(e) => {
            return PodError::Invoke {
                namespace: ns,
                pod,
                failure: InvokeFailure::BadRequest(e.to_string()),
            }
            .into_response();
        }
    }
    match st.ctx.pods.invoke(&ns, &pod, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn log(
    State(st): State<HttpState>,
    Path((ns, pod)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, AgentError> {
    let entry = st
        .ctx
        .pods
        .lookup(&ns, &pod)
        .ok_or_else(|| PodError::NotFound {
            namespace: ns.clone(),
            pod: pod.clone(),
        })?;
    // LogParams' fields are all lenient: its parse refuses nothing (a malformed tailLines is
    // ignored).
    let params: LogParams = from_query(query.as_deref().unwrap_or_default()).unwrap_or_default();
    let container = match params.container {
        Some(c) => {
            if !entry.containers.iter().any(|(n, _)| *n == c) {
                return Err(AgentError::from(PodError::ContainerNotFound {
                    namespace: ns,
                    pod,
                    container: c,
                }));
            }
            c
        }
        None => match entry.containers.first() {
            Some((n, _)) => n.clone(),
            None => {
                return Err(AgentError::from(PodError::ContainerNotFound {
                    namespace: ns,
                    pod,
                    container: String::new(),
                }));
            }
        },
    };
    let follow = params.follow;
    let timestamps = params.timestamps;
    let tail_lines = params
        .tail_lines
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    let file = logs::container_file(&entry.log_dir, &container);
    let text = logs::read_all(&file).await;
    let mut first = String::new();
    for line in logs::tail(&text, tail_lines) {
        first.push_str(&logs::render(line, timestamps));
    }
    let mut resp = if follow {
        // Follow from the end of the current file; a shrink means it rotated.
        let offset = tokio::fs::metadata(&file)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        let state = FollowState {
            ctx: st.ctx.clone(),
            ns,
            pod,
            uid: entry.uid,
            file,
            offset,
            partial: String::new(),
            timestamps,
            first: Some(first),
        };
        let stream = futures_util::stream::unfold(state, follow_step);
        Response::new(Body::from_stream(stream))
    } else {
        Response::new(Body::from(first))
    };
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(resp)
}

struct FollowState {
    ctx: Arc<Ctx>,
    ns: String,
    pod: String,
    uid: String,
    file: std::path::PathBuf,
    offset: u64,
    partial: String,
    timestamps: bool,
    first: Option<String>,
}

async fn follow_step(mut s: FollowState) -> Option<(Result<Bytes, std::io::Error>, FollowState)> {
    if let Some(first) = s.first.take()
        && !first.is_empty()
    {
        return Some((Ok(Bytes::from(first)), s));
    }
    loop {
        // Stop once the Pod is gone (deleted, replaced, or the agent is stopping).
        if s.ctx
            .pods
            .lookup(&s.ns, &s.pod)
            .is_none_or(|e| e.uid != s.uid)
        {
            return None;
        }
        let len = tokio::fs::metadata(&s.file)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        if len < s.offset {
            s.offset = 0;
            s.partial.clear();
        }
        if len > s.offset {
            let bytes = read_from(&s.file, s.offset).await.unwrap_or_default();
            s.offset += bytes.len() as u64;
            s.partial.push_str(&String::from_utf8_lossy(&bytes));
            let mut out = String::new();
            while let Some(pos) = s.partial.find('\n') {
                let line: String = s.partial.drain(..=pos).collect();
                out.push_str(&logs::render(line.trim_end_matches('\n'), s.timestamps));
            }
            if !out.is_empty() {
                return Some((Ok(Bytes::from(out)), s));
            }
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

async fn read_from(path: &std::path::Path, offset: u64) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
    let mut f = tokio::fs::File::open(path).await?;
    f.seek(std::io::SeekFrom::Start(offset)).await?;
    let mut buf = Vec::new();
    // Bounded per step so one burst cannot buffer a whole file in memory.
    f.take(1 << 20).read_to_end(&mut buf).await?;
    Ok(buf)
}
