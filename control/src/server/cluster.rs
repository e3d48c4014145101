//! Several servers, one API: cluster membership endpoints and forwarding to the leader.
//!
//! - `POST /cluster/join` `{"id", "address"}`: the leader adds the server as a learner, waits
//!   until it has caught up, then makes it a voter ([`Store::add_member`]).
//! - `GET /cluster/members`: id, address, role, leader, last log index of every member.
//! - `DELETE /cluster/members/{id}`: remove a member.
//!
//! All three need the admin token, which is also the join token: a raft member holds every
//! object (Secrets included) and could propose any write, so being allowed to join already
//! is full control of the cluster.
//!
//! Any server accepts every API call. [`forward_to_leader`] sends what must run on the
//! leader (writes, linearizable reads, membership) to the leader's API address as a plain
//! HTTP proxy, streaming both ways, so there is one code path for a request wherever it
//! arrives. Watches that resume from a resourceVersion are served by this server from its
//! own applied state (the revision is replicated, so every server has the same
//! resourceVersion space).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderName, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use futures_util::TryStreamExt as _;
use ketch_api::params::{ReadParams, from_query};
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::error::ApiError;
use crate::store::Member;

/// Marks a request one server forwarded to another: it is never forwarded again, so two
/// servers that disagree about the leader for a moment cannot bounce a request forever.
pub const FORWARDED_HEADER: &str = "x-ketch-forwarded";
/// Sent by the leader's own controllers and scheduler: serve here or fail, never forward.
/// A server that just lost leadership thus cannot pass its stopping controllers' last writes
/// on to the new leader, whose controllers are already acting.
pub const NO_FORWARD_HEADER: &str = "x-ketch-no-forward";

/// How long a request waits for a leader to be known (an election takes ~0.5 s).
const LEADER_WAIT: Duration = Duration::from_secs(5);

/// `POST /cluster/join` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinRequest {
    /// The joining server's raft node id (`<data-dir>/server.json`).
    pub id: u64,
    /// `host:port` where the leader and the other servers reach its API and `/raft`.
    pub address: String,
}

/// `GET /cluster/members` (and the join answer).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberList {
    pub leader: Option<u64>,
    pub members: Vec<Member>,
}

/// The `/cluster` routes (nested by [`super::router`] behind the admin check).
pub fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/join", post(join))
        .route("/members", get(members))
        .route("/members/{id}", delete(remove))
}

fn member_list(st: &ApiState) -> MemberList {
    MemberList {
        leader: st.store.leader().map(|(id, _)| id),
        members: st.store.members(),
    }
}

async fn join(
    State(st): State<Arc<ApiState>>,
    Json(req): Json<JoinRequest>,
) -> Result<Json<MemberList>, ApiError> {
    if req.id == 0 {
        return Err(ApiError::BadRequest("id: must not be 0".into()));
    }
    validate_address(&req.address)?;
    tracing::info!(id = req.id, address = %req.address, "adding a server to the cluster");
    st.store.add_member(req.id, &req.address).await?;
    Ok(Json(member_list(&st)))
}

/// `host:port`, nothing else: it is prefixed with `http://` and `/raft/...` by peers.
fn validate_address(address: &str) -> Result<(), ApiError> {
    let bad = |why: &str| {
        ApiError::BadRequest(format!(
            "address: {address:?} {why}; expected host:port, e.g. 10.0.0.2:6443"
        ))
    };
    if address.contains("://") || address.contains('/') {
        return Err(bad("must not carry a scheme or path"));
    }
    let (host, port) = address.rsplit_once(':').ok_or_else(|| bad("has no port"))?;
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(()),
        _ => Err(bad("has an invalid port")),
    }
}

async fn members(State(st): State<Arc<ApiState>>) -> Json<MemberList> {
    Json(member_list(&st))
}

async fn remove(
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<MemberList>, ApiError> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("id: {id:?} is not a server id (a number)")))?;
    st.store.remove_member(id).await?;
    Ok(Json(member_list(&st)))
}

/// Where a request is served.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// Here, whatever this server's role (health, metrics, raft, resumed watches).
    Local,
    /// On the leader.
    Leader,
}

/// Decides from the method, path and query alone (pure, unit-tested).
fn route_of(method: &Method, path: &str, query: Option<&str>) -> Route {
    let leader_path = path.starts_with("/api/")
        || path.starts_with("/apis/")
        || path == "/cluster"
        || path.starts_with("/cluster/")
        || path.starts_with("/heartbeat/");
    if !leader_path {
        return Route::Local;
    }
    // A watch from a resourceVersion needs no read barrier: it replays this server's own
    // applied events. Without one it starts with a linearizable list, so it goes to the
    // leader. A GET or LIST with `resourceVersion=0` asks, as in Kubernetes, for any
    // version: this server's applied state, possibly behind the leader's. (ReadParams'
    // fields are all lenient, so its parse refuses nothing; a malformed parameter of another
    // kind is the handler's to refuse, wherever it is served.)
    let read: ReadParams = from_query(query.unwrap_or_default()).unwrap_or_default();
    let rv = read.resource_version.as_deref();
    let resumes = read.watch && rv.is_some_and(|v| v != "0");
    let any_version = !read.watch && *method == Method::GET && rv == Some("0");
    if resumes || any_version {
        Route::Local
    } else {
        Route::Leader
    }
}

/// Middleware over the whole router: serve here when this server is the leader or the
/// request can be served from local state, otherwise proxy it to the leader.
pub async fn forward_to_leader(
    State(st): State<Arc<ApiState>>,
    req: Request,
    next: Next,
) -> Response {
    if route_of(req.method(), req.uri().path(), req.uri().query()) == Route::Local
        || st.store.is_leader()
    {
        return next.run(req).await;
    }
    let Some((id, addr)) = st.store.wait_for_leader(LEADER_WAIT).await else {
        return ApiError::Unavailable(
            "no raft leader is known (an election may be running); retry".into(),
        )
        .into_response();
    };
    if id == st.store.node_id() {
        return next.run(req).await;
    }
    let headers = req.headers();
    if headers.contains_key(FORWARDED_HEADER) || headers.contains_key(NO_FORWARD_HEADER) {
        return ApiError::Unavailable(format!(
            "this server is not the leader; the leader is server {id} at {addr}"
        ))
        .into_response();
    }
    match proxy(&st.http, &addr, req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

/// Hop-by-hop headers (RFC 9110 7.6.1) and `Host`, which the outgoing request sets itself.
fn hop_by_hop(name: &HeaderName) -> bool {
    [
        header::CONNECTION,
        header::HOST,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
}

async fn proxy(http: &reqwest::Client, addr: &str, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_string(), ToString::to_string);
    let url = format!("http://{addr}{path}");
    let mut out = http
        .request(parts.method.clone(), &url)
        .header(FORWARDED_HEADER, "1");
    for (k, v) in &parts.headers {
        if !hop_by_hop(k) {
            out = out.header(k, v);
        }
    }
    let resp = out
        .body(reqwest::Body::wrap_stream(body.into_data_stream()))
        .send()
        .await
        .map_err(|e| ApiError::Unavailable(format!("forwarding to the leader at {addr}: {e}")))?;
    let mut back = Response::builder().status(resp.status().as_u16());
    for (k, v) in resp.headers() {
        if !hop_by_hop(k) {
            back = back.header(k, v);
        }
    }
    let stream = resp.bytes_stream().map_err(std::io::Error::other);
    back.body(Body::from_stream(stream))
        .map_err(|e| ApiError::Internal(format!("building the forwarded response: {e}")))
}

/// Ask a member of a cluster (`address`: its API `host:port` or URL) to add this server,
/// and wait for the answer: the leader replies once this server is a voter.
///
/// # Errors
/// [`ApiError::Unavailable`] when the member cannot be reached or refuses, with its message.
pub async fn request_join(
    address: &str,
    token: &str,
    req: &JoinRequest,
) -> Result<MemberList, ApiError> {
    let base = if address.starts_with("http://") || address.starts_with("https://") {
        address.trim_end_matches('/').to_string()
    } else {
        format!("http://{}", address.trim_end_matches('/'))
    };
    let url = format!("{base}/cluster/join");
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| ApiError::Internal(format!("building an HTTP client: {e}")))?;
    let resp = http
        .post(&url)
        .bearer_auth(token)
        .json(req)
        // The leader answers after the catch-up (up to 2 minutes) and the promotion.
        .timeout(Duration::from_secs(150))
        .send()
        .await
        .map_err(|e| ApiError::Unavailable(format!("joining through {url}: {e}")))?;
    let status = resp.status();
    if status != StatusCode::OK {
        let body = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or(body);
        return Err(ApiError::Unavailable(format!(
            "joining through {url}: HTTP {status}: {message}"
        )));
    }
    resp.json()
        .await
        .map_err(|e| ApiError::Unavailable(format!("joining through {url}: bad answer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_reads_and_fresh_watches_go_to_the_leader() {
        assert_eq!(
            route_of(&Method::GET, "/api/v1/namespaces/default/pods", None),
            Route::Leader
        );
        assert_eq!(
            route_of(&Method::GET, "/apis/apps/v1/deployments", Some("limit=5")),
            Route::Leader
        );
        assert_eq!(route_of(&Method::GET, "/cluster/join", None), Route::Leader);
        assert_eq!(
            route_of(&Method::GET, "/cluster/members/7", None),
            Route::Leader
        );
        assert_eq!(
            route_of(&Method::GET, "/api/v1/pods", Some("watch=true")),
            Route::Leader
        );
        assert_eq!(
            route_of(
                &Method::GET,
                "/api/v1/pods",
                Some("watch=true&resourceVersion=0")
            ),
            Route::Leader
        );
        assert_eq!(
            route_of(&Method::GET, "/api/v1/pods", Some("resourceVersion=12")),
            Route::Leader
        );
    }

    #[test]
    fn reads_of_any_version_stay_here_and_writes_never_do() {
        let any = Some("resourceVersion=0");
        assert_eq!(
            route_of(&Method::GET, "/api/v1/namespaces/a/pods/x", any),
            Route::Local
        );
        assert_eq!(route_of(&Method::GET, "/api/v1/pods", any), Route::Local);
        for m in [Method::PUT, Method::POST, Method::PATCH, Method::DELETE] {
            assert_eq!(
                route_of(&m, "/api/v1/namespaces/a/pods/x", any),
                Route::Leader,
                "{m}"
            );
        }
        // The leader keeps the heartbeats (in memory).
        assert_eq!(
            route_of(&Method::POST, "/heartbeat/node-1", None),
            Route::Leader
        );
    }

    #[test]
    fn resumed_watches_and_local_endpoints_stay_here() {
        assert_eq!(
            route_of(
                &Method::GET,
                "/api/v1/pods",
                Some("watch=1&resourceVersion=12")
            ),
            Route::Local
        );
        assert_eq!(
            route_of(
                &Method::GET,
                "/apis/apps/v1/deployments",
                Some("resourceVersion=9&watch=true")
            ),
            Route::Local
        );
        for p in [
            "/healthz",
            "/readyz",
            "/metrics",
            "/version",
            "/raft/append",
            "/api",
            "/apis",
        ] {
            assert_eq!(route_of(&Method::GET, p, None), Route::Local, "{p}");
        }
    }

    #[test]
    fn join_addresses_are_host_and_port() {
        assert!(validate_address("127.0.0.1:6443").is_ok());
        assert!(validate_address("ketch-2.internal:6443").is_ok());
        for bad in [
            "http://1.2.3.4:1",
            "1.2.3.4",
            ":6443",
            "h:0",
            "h:x",
            "h:1/raft",
        ] {
            let err = validate_address(bad).unwrap_err().to_string();
            assert!(err.starts_with("address:"), "{bad}: {err}");
        }
    }
}
