//! Several servers, one API: cluster membership endpoints and forwarding to the leader.
//!
//! - `POST /cluster/certificates` `{"kind", "nodeName"|"serverId", "csr", "addresses"}`: a
//!   certificate for the CSR's key. A join token (`ketch token create --join`) may ask for
//!   one node's (or, with `--server`, one server's) certificate and do nothing else; a node
//!   renews its own with its current certificate; admins may ask for any.
//! - `GET /cluster/bootstrap`: the CA's certificate and key, the admin token and the Secret
//!   encryption keys, for a server
//!   that just got its certificate and joins (servers only: a raft member holds every object
//!   and could propose any write, so being allowed to join already is full control).
//! - `POST /cluster/join` `{"id", "address"}` (servers only): the leader adds the server as a
//!   learner, waits until it has caught up, then makes it a voter ([`Store::add_member`]).
//! - `GET /cluster/members` (admins and servers): id, address, role, leader, last log index.
//! - `DELETE /cluster/members/{id}` (admins and servers): remove a member.
//! - `GET /cluster/ca` (anyone): the CA certificate, PEM.
//!
//! Any server accepts every API call. [`forward_to_leader`] sends what must run on the
//! leader (writes, linearizable reads, membership) to the leader's API address as an HTTPS
//! proxy, streaming both ways, so there is one code path for a request wherever it arrives.
//! The forwarding server authenticates the caller and passes on who it is
//! ([`super::auth::REMOTE_USER_HEADER`]), which the leader believes only because the
//! connection carries a server's certificate; the caller's token never travels further. Watches that resume from a resourceVersion are served by this server from its
//! own applied state (the revision is replicated, so every server has the same
//! resourceVersion space).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use futures_util::TryStreamExt as _;
use ketch_api::params::{ReadParams, from_query};
use serde::{Deserialize, Serialize};

use ketch_client::join::{
    CertificateAnswer, CertificateKind, CertificateRequest, base_url, refusal, request_certificate,
};

use super::ApiState;
use super::auth::{REMOTE_GROUP_HEADER, REMOTE_USER_HEADER, User};
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

/// The `/cluster` routes (nested by [`super::router`]); each checks its caller.
pub fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/ca", get(ca))
        .route("/certificates", post(certificates))
        .route("/bootstrap", get(bootstrap))
        .route("/join", post(join))
        .route("/members", get(members))
        .route("/members/{id}", delete(remove))
}

const MASTERS: &str = "system:masters";

/// The caller, if it is in one of `groups`.
fn require_group(
    st: &ApiState,
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
    groups: &[&str],
    what: &str,
) -> Result<User, ApiError> {
    let user = super::caller(st, headers, extensions)?;
    if user.groups.iter().any(|g| groups.contains(&g.as_str())) {
        Ok(user)
    } else {
        Err(ApiError::Forbidden(format!(
            "user \"{}\" cannot {what}",
            user.name
        )))
    }
}

async fn ca(State(st): State<Arc<ApiState>>) -> String {
    st.pki.ca.cert_pem().to_string()
}

/// `GET /cluster/bootstrap` answer: what a joining server needs to be one of the servers.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinBundle {
    pub ca_cert: String,
    pub ca_key: String,
    pub admin_token: String,
    /// The Secret encryption keys (the key file's contents): every server must hold them.
    pub encryption_keys: String,
}

/// Most names a certificate may carry.
const MAX_ADDRESSES: usize = 16;

fn check_addresses(addresses: &[String]) -> Result<(), ApiError> {
    if addresses.len() > MAX_ADDRESSES {
        return Err(ApiError::BadRequest(format!(
            "addresses: at most {MAX_ADDRESSES}, got {}",
            addresses.len()
        )));
    }
    for (i, a) in addresses.iter().enumerate() {
        let ip = a.parse::<std::net::IpAddr>().is_ok();
        if !ip && !ketch_api::validation::is_dns1123_subdomain(a).is_empty() {
            return Err(ApiError::BadRequest(format!(
                "addresses[{i}]: {a:?} is neither an IP address nor a DNS name"
            )));
        }
    }
    Ok(())
}

/// Who may get which certificate (pure; unit-tested).
fn may_issue(user: &User, req: &CertificateRequest) -> Result<ketch_tls::Identity, ApiError> {
    let in_group = |g: &str| user.groups.iter().any(|x| x == g);
    let deny =
        |what: String| ApiError::Forbidden(format!("user \"{}\" cannot get {what}", user.name));
    match req.kind {
        CertificateKind::Node => {
            let name = req.node_name.as_deref().ok_or_else(|| {
                ApiError::BadRequest("nodeName: required for a node certificate".into())
            })?;
            let errors = ketch_api::validation::is_dns1123_subdomain(name);
            if !errors.is_empty() {
                return Err(ApiError::BadRequest(format!(
                    "nodeName: {name:?}: {}",
                    errors.join(", ")
                )));
            }
            let own =
                user.name == format!("system:node:{name}") && in_group(ketch_tls::NODES_GROUP);
            if own || in_group(MASTERS) || in_group("ketch:join-node") {
                Ok(ketch_tls::node_identity(name))
            } else {
                Err(deny(format!("the certificate of node \"{name}\"")))
            }
        }
        CertificateKind::Server => {
            let id = req.server_id.filter(|id| *id != 0).ok_or_else(|| {
                ApiError::BadRequest("serverId: required (not 0) for a server certificate".into())
            })?;
            let own = user.name == format!("system:ketch-server:{id}")
                && in_group(ketch_tls::SERVERS_GROUP);
            if own || in_group(MASTERS) || in_group("ketch:join-server") {
                Ok(ketch_tls::server_identity(id))
            } else {
                Err(deny(format!("the certificate of server {id}")))
            }
        }
    }
}

async fn certificates(
    State(st): State<Arc<ApiState>>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    Json(req): Json<CertificateRequest>,
) -> Result<Json<CertificateAnswer>, ApiError> {
    let user = super::caller(&st, &headers, &extensions)?;
    let identity = may_issue(&user, &req)?;
    check_addresses(&req.addresses)?;
    let certificate = st
        .pki
        .ca
        .sign_csr(
            &req.csr,
            &identity,
            &req.addresses,
            ketch_tls::Usage::ServerAndClient,
        )
        .map_err(|e| ApiError::BadRequest(format!("csr: {e}")))?;
    tracing::info!(caller = %user.name, identity = %identity.name, "issued a certificate");
    Ok(Json(CertificateAnswer {
        certificate,
        ca: st.pki.ca.cert_pem().to_string(),
    }))
}

async fn bootstrap(
    State(st): State<Arc<ApiState>>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
) -> Result<Json<JoinBundle>, ApiError> {
    require_group(
        &st,
        &headers,
        &extensions,
        &[ketch_tls::SERVERS_GROUP],
        "read the cluster's keys: only servers may",
    )?;
    Ok(Json(JoinBundle {
        ca_cert: st.pki.ca.cert_pem().to_string(),
        ca_key: st.pki.ca.key_pem().to_string(),
        admin_token: st.admin_token.clone(),
        encryption_keys: String::from_utf8_lossy(&st.encryption.to_bytes()).into_owned(),
    }))
}

fn member_list(st: &ApiState) -> MemberList {
    MemberList {
        leader: st.store.leader().map(|(id, _)| id),
        members: st.store.members(),
    }
}

async fn join(
    State(st): State<Arc<ApiState>>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    Json(req): Json<JoinRequest>,
) -> Result<Json<MemberList>, ApiError> {
    let user = require_group(
        &st,
        &headers,
        &extensions,
        &[ketch_tls::SERVERS_GROUP],
        "join the cluster: only servers may",
    )?;
    // A server joins as itself: its certificate names its raft id.
    if user.name != format!("system:ketch-server:{}", req.id) {
        return Err(ApiError::Forbidden(format!(
            "user \"{}\" cannot join as server {}",
            user.name, req.id
        )));
    }
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

async fn members(
    State(st): State<Arc<ApiState>>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
) -> Result<Json<MemberList>, ApiError> {
    require_group(
        &st,
        &headers,
        &extensions,
        &[MASTERS, ketch_tls::SERVERS_GROUP],
        "list the cluster's servers",
    )?;
    Ok(Json(member_list(&st)))
}

async fn remove(
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
) -> Result<Json<MemberList>, ApiError> {
    require_group(
        &st,
        &headers,
        &extensions,
        &[MASTERS, ketch_tls::SERVERS_GROUP],
        "remove a server",
    )?;
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
    if path == "/cluster/ca" {
        return Route::Local;
    }
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
    // The caller is authenticated here and named to the leader; its credential stays here.
    // A request no credential covers goes on unnamed: the leader answers it as it would
    // here (401 where a caller is needed).
    let (mut parts, body) = req.into_parts();
    let who = super::caller(&st, &parts.headers, &parts.extensions).ok();
    parts.headers.remove(header::AUTHORIZATION);
    parts.headers.remove(REMOTE_USER_HEADER);
    parts.headers.remove(REMOTE_GROUP_HEADER);
    if let Some(user) = who {
        if let Ok(v) = HeaderValue::from_str(&user.name) {
            parts.headers.insert(REMOTE_USER_HEADER, v);
        }
        for g in &user.groups {
            if let Ok(v) = HeaderValue::from_str(g) {
                parts.headers.append(REMOTE_GROUP_HEADER, v);
            }
        }
    }
    let req = Request::from_parts(parts, body);
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
    let url = format!("https://{addr}{path}");
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
/// over `peer` (this server's mutual-TLS client), and wait for the answer: the leader
/// replies once this server is a voter.
///
/// # Errors
/// [`ApiError::Unavailable`] when the member cannot be reached or refuses, with its message.
pub async fn request_join(
    peer: &reqwest::Client,
    address: &str,
    req: &JoinRequest,
) -> Result<MemberList, ApiError> {
    let url = format!("{}/cluster/join", base_url(address));
    let resp = peer
        .post(&url)
        .json(req)
        // The leader answers after the catch-up (up to 2 minutes) and the promotion.
        .timeout(Duration::from_secs(150))
        .send()
        .await
        .map_err(|e| ApiError::Unavailable(format!("joining through {url}: {e}")))?;
    if resp.status() != StatusCode::OK {
        return Err(ApiError::Unavailable(refusal(&url, resp).await));
    }
    resp.json()
        .await
        .map_err(|e| ApiError::Unavailable(format!("joining through {url}: bad answer: {e}")))
}

/// Everything a server joining through `address` with join token `token` needs before it
/// can serve: its certificate, then (as a server) the CA and the admin token.
///
/// # Errors
/// As [`request_certificate`]; and the bootstrap call failing.
pub async fn bootstrap_server(
    address: &str,
    token: &str,
    id: u64,
    sans: &[String],
) -> Result<JoinBundle, ApiError> {
    let (csr, key) = ketch_tls::csr(&format!("system:ketch-server:{id}"))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let req = CertificateRequest {
        kind: CertificateKind::Server,
        node_name: None,
        server_id: Some(id),
        csr,
        addresses: sans.to_vec(),
    };
    let (issued, ca) = request_certificate(address, token, req, key)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let peer = super::pki::mtls_client(&ca, Some((&issued.cert_pem, &issued.key_pem)))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let url = format!("{}/cluster/bootstrap", base_url(address));
    let resp = peer
        .get(&url)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| ApiError::Unavailable(format!("{url}: {e}")))?;
    if resp.status() != StatusCode::OK {
        return Err(ApiError::Unavailable(refusal(&url, resp).await));
    }
    let bundle: JoinBundle = resp
        .json()
        .await
        .map_err(|e| ApiError::Unavailable(format!("{url}: bad answer: {e}")))?;
    if bundle.ca_cert != ca {
        return Err(ApiError::Unavailable(format!(
            "{url}: the CA in the bootstrap answer differs from the one that signed this server's certificate"
        )));
    }
    Ok(bundle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> User {
        User::new(name, groups)
    }

    fn node_req(name: &str) -> CertificateRequest {
        CertificateRequest {
            kind: CertificateKind::Node,
            node_name: Some(name.into()),
            server_id: None,
            csr: String::new(),
            addresses: vec![],
        }
    }

    fn server_req(id: u64) -> CertificateRequest {
        CertificateRequest {
            kind: CertificateKind::Server,
            node_name: None,
            server_id: Some(id),
            csr: String::new(),
            addresses: vec![],
        }
    }

    #[test]
    fn who_may_get_which_certificate() {
        let node_join = user(
            "system:bootstrap:abcdef",
            &["system:bootstrappers", "ketch:join-node"],
        );
        let server_join = user(
            "system:bootstrap:abcdef",
            &["system:bootstrappers", "ketch:join-server"],
        );
        let node_a = user("system:node:a", &["system:nodes"]);
        let admin = user("admin", &["system:masters"]);
        let alice = user("alice", &["devs"]);
        let ok = |u: &User, r: CertificateRequest| may_issue(u, &r).map(|i| i.name);
        assert_eq!(ok(&node_join, node_req("a")).unwrap(), "system:node:a");
        assert!(
            ok(&node_join, server_req(3)).is_err(),
            "a node token cannot make a server"
        );
        assert_eq!(
            ok(&server_join, server_req(3)).unwrap(),
            "system:ketch-server:3"
        );
        assert!(ok(&server_join, node_req("a")).is_err());
        assert_eq!(
            ok(&node_a, node_req("a")).unwrap(),
            "system:node:a",
            "renewal"
        );
        assert!(
            ok(&node_a, node_req("b")).is_err(),
            "node a cannot become node b"
        );
        assert!(ok(&node_a, server_req(3)).is_err());
        assert!(ok(&alice, node_req("a")).is_err());
        assert!(ok(&admin, server_req(9)).is_ok());
        assert!(matches!(
            may_issue(&node_join, &node_req("Bad_Name")),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            may_issue(&server_join, &server_req(0)),
            Err(ApiError::BadRequest(_))
        ));
        assert!(check_addresses(&["10.0.0.1".into(), "node-a.example".into()]).is_ok());
        assert!(check_addresses(&["bad name!".into()]).is_err());
    }

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
