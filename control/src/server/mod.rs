//! The API server: Kubernetes REST paths over the replicated store.
//!
//! [`router`] builds the whole HTTP surface from an [`ApiState`] (testable without a
//! socket); [`Server::start`] opens the data dir, the store and the listener.

pub mod auth;
pub mod batcher;
pub mod cluster;
pub mod encryption;
pub mod error;
pub mod fields;
pub mod handlers;
pub mod inflight;
pub mod metrics;
pub mod nodeports;
pub mod path;
pub mod pki;
pub mod proxy;
pub mod quota;
pub mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::json;

use crate::liveness::{HeartbeatPolicy, NodeLiveness};
use crate::store::command::Write;
use crate::store::{Store, StoreConfig, StoreError};
use crate::watch::WatchHub;
use auth::{Authenticator, Authorizer};
use batcher::Batcher;
use error::ApiError;
use metrics::Metrics;

/// Everything a request handler needs.
pub struct ApiState {
    pub store: Store,
    pub hub: Arc<WatchHub>,
    pub batcher: Batcher,
    pub authn: Authenticator,
    pub authz: Box<dyn Authorizer>,
    pub metrics: Metrics,
    /// The mutual-TLS client (this server's certificate) for forwarding to the leader and
    /// for pod log/proxy requests to node agents.
    pub http: reqwest::Client,
    /// The cluster CA and this server's certificate: `/cluster/certificates` issues from it.
    pub pki: Arc<pki::ServerPki>,
    /// Handed to a joining server with the CA (see [`cluster`]).
    pub admin_token: String,
    /// Node ports chosen for Service writes in flight (see [`nodeports`]).
    pub node_ports: nodeports::Reservations,
    /// The nodes' heartbeats, noted in memory (on the leader: followers forward them).
    pub liveness: Arc<NodeLiveness>,
    /// Seals Secrets before they are proposed and opens them on the way out
    /// (see [`encryption`]).
    pub encryption: Arc<encryption::EncryptionKeys>,
    /// Open watches per user (see [`watch::WatchCounts`]).
    pub watches: watch::WatchCounts,
    /// Requests in flight, reads and writes apart (see [`inflight`]).
    pub inflight: inflight::Inflight,
    /// The store's size quota and its alarm (see [`quota`]).
    pub quota: Arc<quota::Quota>,
}

/// The whole HTTP surface of a server.
pub fn router(state: Arc<ApiState>) -> Router {
    let raft = crate::store::network::raft_router(state.store.raft().clone())
        .layer(axum::middleware::from_fn(require_peer_server));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(healthz))
        .route("/readyz", get(readyz))
        .route("/version", get(version))
        // Without a credential only health and /version answer (as Kubernetes with
        // anonymous requests off); metrics and discovery are non-resource paths RBAC grants
        // (`system:discovery` to every authenticated caller).
        .merge(
            Router::new()
                .route("/metrics", get(metrics_text))
                .route("/api", get(api_versions))
                .route("/apis", get(api_groups))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    require_non_resource,
                )),
        )
        .route("/api/{*rest}", any(handlers::core))
        .route("/apis/{*rest}", any(handlers::grouped))
        .nest("/raft", raft)
        .nest("/cluster", cluster::routes())
        .route("/heartbeat/{node}", post(heartbeat))
        .fallback(|| async {
            ApiError::NotFound {
                resource: "path".into(),
                name: "the server could not find the requested resource".into(),
            }
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            cluster::forward_to_leader,
        ))
        .with_state(state)
}

/// `/raft` is for raft peers only: a client certificate of a server, on the connection
/// itself (raft messages are never forwarded).
async fn require_peer_server(req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ketch_tls::PeerIdentity>();
    match peer {
        Some(p) if p.0.in_group(ketch_tls::SERVERS_GROUP) => next.run(req).await,
        Some(p) => ApiError::Forbidden(format!(
            "user \"{}\" cannot reach /raft: only the cluster's servers may",
            p.0.name
        ))
        .into_response(),
        None => ApiError::Unauthorized.into_response(),
    }
}

/// A non-resource path (`/metrics`, discovery): an authenticated caller the authorizer lets
/// `get` it.
async fn require_non_resource(
    State(st): State<Arc<ApiState>>,
    req: Request,
    next: Next,
) -> Response {
    let allowed = caller(&st, req.headers(), req.extensions()).and_then(|user| {
        st.authz
            .authorize_non_resource(&user, "get", req.uri().path())
    });
    match allowed {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Who sent `req` (see [`Authenticator::authenticate`]).
///
/// # Errors
/// [`ApiError::Unauthorized`].
pub fn caller(
    st: &ApiState,
    headers: &axum::http::HeaderMap,
    extensions: &axum::http::Extensions,
) -> Result<auth::User, ApiError> {
    st.authn
        .authenticate(headers, extensions.get::<ketch_tls::PeerIdentity>())
}

async fn healthz() -> &'static str {
    "ok"
}

/// `POST /heartbeat/{node}`: notes that `node`'s agent is alive (in memory, see
/// [`crate::liveness`]) and says when to come back. Served by the leader: followers
/// forward it, and the leader's node lifecycle controller reads the table.
async fn heartbeat(
    State(st): State<Arc<ApiState>>,
    Path(node): Path<String>,
    headers: axum::http::HeaderMap,
    extensions: axum::http::Extensions,
) -> Response {
    // A node beats for itself; servers forward their callers' beats (authenticated there)
    // and admins may too.
    match caller(&st, &headers, &extensions) {
        Ok(u)
            if u.name == format!("system:node:{node}")
                || u.groups.iter().any(|g| g == "system:masters") => {}
        Ok(u) => {
            return ApiError::Forbidden(format!(
                "user \"{}\" cannot send the heartbeat of node \"{node}\"",
                u.name
            ))
            .into_response();
        }
        Err(e) => return e.into_response(),
    }
    let errors = ketch_api::validation::is_dns1123_subdomain(&node);
    if !errors.is_empty() {
        return ApiError::BadRequest(format!("node name {node:?}: {}", errors.join(", ")))
            .into_response();
    }
    let interval = st.liveness.beat(&node, std::time::Instant::now());
    let answer = ketch_api::heartbeat::HeartbeatAnswer {
        interval_millis: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
    };
    axum::Json(answer).into_response()
}

/// Ready when this server is the leader and a quorum acknowledged it in the last second,
/// or is a voter that knows a leader to forward to.
async fn readyz(State(st): State<Arc<ApiState>>) -> Response {
    if !st.store.is_leader() {
        let me = st.store.node_id();
        let voter = st
            .store
            .members()
            .iter()
            .any(|m| m.id == me && m.role == "voter");
        return match st.store.leader() {
            Some((id, addr)) if voter && id != me => {
                format!("ok (follower of server {id} at {addr})").into_response()
            }
            _ => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: not a voter, or no leader known",
            )
                .into_response(),
        };
    }
    // Unauthenticated, so cheap: raft's own metrics say whether a quorum acknowledged this
    // leader lately (heartbeats go every 50 ms); no read barrier, no message to the peers.
    if st
        .store
        .leads_with_recent_quorum(std::time::Duration::from_secs(1))
    {
        "ok".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no quorum acknowledged this leader in the last second",
        )
            .into_response()
    }
}

async fn metrics_text(State(st): State<Arc<ApiState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.render(&st.store, &st.quota),
    )
        .into_response()
}

async fn version() -> axum::Json<serde_json::Value> {
    axum::Json(json!({
        "major": "0", "minor": "1",
        "gitVersion": concat!("v", env!("CARGO_PKG_VERSION")),
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    }))
}

async fn api_versions() -> axum::Json<serde_json::Value> {
    axum::Json(json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}))
}

async fn api_groups() -> axum::Json<serde_json::Value> {
    // First occurrence order, without assuming a group's kinds are adjacent in the table.
    let mut groups: Vec<(&str, &str)> = Vec::new();
    for r in ketch_api::resource::RESOURCES
        .iter()
        .filter(|r| !r.group.is_empty())
    {
        if !groups.contains(&(r.group, r.version)) {
            groups.push((r.group, r.version));
        }
    }
    let groups: Vec<_> = groups
        .into_iter()
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    axum::Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
}

/// Events kept for resuming watches. A watcher that falls further behind relists (410).
/// Each event holds the object's JSON plus a small selector view (~1 KiB for a Pod).
pub const WATCH_HISTORY: usize = 50_000;

/// How to start a server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// The address other servers and agents reach this one at (defaults to `listen`).
    pub advertise: Option<String>,
    /// Join an existing cluster on first start instead of creating a one-server cluster.
    pub join: Option<JoinOptions>,
    /// Applied raft entries between snapshots (etcd's `--snapshot-count`); see
    /// [`crate::store::DEFAULT_SNAPSHOT_COUNT`].
    pub snapshot_count: u64,
    /// How often agents send heartbeats and when a silent one counts as gone.
    pub heartbeat: HeartbeatPolicy,
    /// More names (IP addresses or DNS names) for the serving certificate (`--tls-san`).
    pub tls_sans: Vec<String>,
    /// The Secret encryption key file; `None`: [`encryption::default_key_file`] of the data
    /// dir, created with one new key on first start (a joining server receives the
    /// cluster's keys instead).
    pub encryption_key_file: Option<PathBuf>,
    /// Reads and writes in flight at once (`--max-requests-inflight`,
    /// `--max-mutating-requests-inflight`); see [`inflight`].
    pub inflight: inflight::Limits,
    /// Bytes of stored objects past which writes that add data are refused
    /// (`--quota-backend-bytes`); see [`quota`].
    pub quota_bytes: u64,
}

impl ServerOptions {
    /// A one-server cluster storing in `data_dir` and listening on `listen`, with the
    /// defaults `ketch server` uses when given no other flag.
    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        Self {
            data_dir: data_dir.into(),
            listen,
            advertise: None,
            join: None,
            snapshot_count: crate::store::DEFAULT_SNAPSHOT_COUNT,
            heartbeat: HeartbeatPolicy::default(),
            tls_sans: Vec::new(),
            encryption_key_file: None,
            inflight: inflight::Limits::default(),
            quota_bytes: quota::DEFAULT_QUOTA_BYTES,
        }
    }
}

/// `ketch server --join ADDR --token T`.
#[derive(Debug, Clone)]
pub struct JoinOptions {
    /// Any current member's API address (`host:port` or URL); it forwards to the leader.
    pub address: String,
    /// A server join token (`ketch token create --join --server`): it pins the cluster CA
    /// and lets this server obtain its certificate, then the CA and the admin token.
    pub token: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("serving HTTP: {0}")]
    Serve(#[source] std::io::Error),
    #[error("joining the cluster: {0}")]
    Join(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    Encryption(#[from] encryption::EncryptionError),
}

/// The server's identity in the data dir: its raft node id, chosen once.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Identity {
    id: u64,
}

fn load_identity(data_dir: &std::path::Path) -> std::io::Result<u64> {
    let path = data_dir.join("server.json");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let ident: Identity = serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?;
            Ok(ident.id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Random ids let servers join a cluster without coordinating numbering.
            let id = rand::random_range(1..u64::MAX >> 1);
            let bytes = serde_json::to_vec_pretty(&Identity { id }).expect("serializes");
            auth::write_private(&path, &bytes)?;
            Ok(id)
        }
        Err(e) => Err(e),
    }
}

/// A running API server.
pub struct Server {
    pub addr: SocketAddr,
    pub token: String,
    pub node_id: u64,
    /// The cluster CA and this server's certificate.
    pki: Arc<pki::ServerPki>,
    store: Store,
    shutdown: tokio::sync::watch::Sender<bool>,
    serve: tokio::task::JoinHandle<Result<(), std::io::Error>>,
    /// The router the listener serves, for [`Server::in_process`].
    app: Router,
    /// The heartbeat table the router writes, for [`Server::liveness`].
    liveness: Arc<NodeLiveness>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Open the data dir and store, bootstrap a one-voter cluster on first start, and serve.
    ///
    /// # Errors
    /// The data dir cannot be created or read, the store fails to open, or the address
    /// cannot be bound.
    pub async fn start(opts: ServerOptions) -> Result<Server, ServerError> {
        let dir_err = |source| ServerError::DataDir {
            path: opts.data_dir.clone(),
            source,
        };
        crate::files::create_private_dir(&opts.data_dir).map_err(dir_err)?;
        crate::files::check_private_dir(&opts.data_dir).map_err(dir_err)?;
        let key_file = opts
            .encryption_key_file
            .clone()
            .unwrap_or_else(|| encryption::default_key_file(&opts.data_dir));
        let node_id = load_identity(&opts.data_dir).map_err(dir_err)?;
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .map_err(|source| ServerError::Listen {
                addr: opts.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(ServerError::Serve)?;
        let advertise = opts.advertise.clone().unwrap_or_else(|| addr.to_string());
        let sans = pki::server_sans(addr, &advertise, &opts.tls_sans);
        // The CA: kept in the data dir; else received from the cluster this server joins
        // (with the admin token); else made now: a new cluster, or the first start of a
        // one-server cluster an older, plaintext ketch made.
        let mut made_ca = false;
        let ca = match (pki::load_ca(&opts.data_dir)?, &opts.join) {
            (Some(ca), _) => ca,
            (None, Some(join)) => {
                let bundle = cluster::bootstrap_server(&join.address, &join.token, node_id, &sans)
                    .await
                    .map_err(|e| ServerError::Join(e.to_string()))?;
                // The cluster's Secret keys, unless the operator put the file there.
                if !key_file.exists() {
                    encryption::EncryptionKeys::parse(
                        bundle.encryption_keys.as_bytes(),
                        "the join answer",
                    )?
                    .save(&key_file)?;
                }
                pki::save_ca(&opts.data_dir, &bundle.ca_cert, &bundle.ca_key)?;
                auth::write_private(
                    &opts.data_dir.join("admin.token"),
                    bundle.admin_token.as_bytes(),
                )
                .map_err(dir_err)?;
                ketch_tls::ClusterCa::from_pem(&bundle.ca_cert, &bundle.ca_key)
                    .map_err(|e| ServerError::Join(format!("the cluster's CA: {e}")))?
            }
            (None, None) => {
                made_ca = true;
                pki::load_or_create_ca(&opts.data_dir)?
            }
        };
        let (keys, created) = encryption::EncryptionKeys::load_or_create(&key_file)?;
        if created {
            tracing::info!(path = %key_file.display(), key = keys.primary(), "created the Secret encryption key file");
        }
        let token = auth::load_or_create_token(&opts.data_dir).map_err(dir_err)?;
        let pki = Arc::new(pki::ServerPki::new(ca, node_id, &sans)?);
        let hub = Arc::new(WatchHub::new(WATCH_HISTORY));
        let store = Store::open(
            StoreConfig {
                data_dir: opts.data_dir.clone(),
                node_id,
                advertise_addr: advertise.clone(),
                watch_history: WATCH_HISTORY,
                // Peers' `/raft` endpoints take only servers' certificates.
                peer_http: Some(pki.peer_http.clone()),
                snapshot_count: opts.snapshot_count,
            },
            hub.clone(),
        )
        .await?;
        // A joining server starts without a cluster: the leader's replication (after the
        // join request below) makes it a learner, then a voter. Once it has been part of a
        // cluster, a restart just rejoins through raft, `--join` or not.
        let joining = opts
            .join
            .clone()
            .filter(|_| store.is_pristine().unwrap_or(false));
        // Whether this server alone makes the cluster (and so is its leader now).
        let alone = match (&joining, store.is_pristine()?) {
            (Some(_), _) => false,
            (None, true) => {
                store.bootstrap_single().await?;
                true
            }
            (None, false) => store.resume_after_restart().await?,
        };
        if made_ca && store.members().len() > 1 {
            let _ = store.shutdown().await;
            return Err(ServerError::Tls(format!(
                "{} belongs to a cluster of {} servers made by a ketch without TLS, and has no \
                 cluster CA: every server must share one. Start one server of that cluster \
                 first (it makes {}/ca.crt and ca.key), copy both files into {}/{} of every \
                 other server (mode 0600), then start those",
                opts.data_dir.display(),
                store.members().len(),
                pki::PKI_DIR,
                opts.data_dir.display(),
                pki::PKI_DIR,
            )));
        }
        let batcher = Batcher::spawn(store.clone());
        let liveness = Arc::new(NodeLiveness::new(opts.heartbeat));
        let authz = crate::authz::Chain::start(&store, &hub)?;
        let keys = Arc::new(keys);
        let state = Arc::new(ApiState {
            store: store.clone(),
            hub,
            batcher: batcher.clone(),
            authn: Authenticator::new(token.clone()).with_store(store.clone(), keys.clone()),
            authz: Box::new(authz),
            metrics: Metrics::new(),
            http: pki.peer_http.clone(),
            pki: pki.clone(),
            admin_token: token.clone(),
            node_ports: nodeports::Reservations::default(),
            liveness: liveness.clone(),
            encryption: keys,
            watches: watch::WatchCounts::default(),
            inflight: inflight::Inflight::new(opts.inflight),
            quota: Arc::new(quota::Quota::new(opts.quota_bytes)),
        });
        state.quota.spawn_refresher(store.clone());
        // Plaintext Secrets of an older ketch, and ones sealed under a key that is no longer
        // the first, are rewritten by whichever server leads.
        encryption::spawn_rewriter(
            state.clone(),
            crate::runner::leader::leadership(store.clone()),
        );
        // The namespace is created once, by the server that founded the cluster; the others
        // get it by replication. (A restarted member may still believe in its old term's
        // leadership here, so `is_leader` is not the test.)
        if alone {
            ensure_default_namespace(&batcher).await?;
            crate::authz::defaults::ensure(&batcher).await?;
        }
        let (shutdown, rx) = tokio::sync::watch::channel(false);
        let app = router(state);
        let served_app = app.clone();
        let serve = tokio::spawn(ketch_tls::serve(
            listener,
            pki.server_config.clone(),
            served_app,
            ketch_tls::ListenerLimits::API,
            rx,
        ));
        if let Some(join) = joining {
            // Served before asking: the leader replicates to this server's `/raft` while
            // the join request waits.
            let req = cluster::JoinRequest {
                id: node_id,
                address: advertise.clone(),
            };
            let joined = match cluster::request_join(&pki.peer_http, &join.address, &req).await {
                Ok(_) => store
                    .wait_until_voter(std::time::Duration::from_secs(10))
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = joined {
                let _ = shutdown.send(true);
                let _ = store.shutdown().await;
                return Err(ServerError::Join(e));
            }
            tracing::info!(node_id, via = %join.address, "joined the cluster as a voter");
        } else if !alone
            && !store
                .wait_for_confirmed_leader(std::time::Duration::from_secs(10))
                .await
        {
            tracing::warn!("no raft leader known yet; the other servers may still be down");
        }
        tracing::info!(%addr, node_id, "ketch API server listening");
        Ok(Server {
            addr,
            token,
            node_id,
            pki,
            store,
            shutdown,
            serve,
            app,
            liveness,
        })
    }

    /// This server's API as a [`ketch_client::LocalTransport`]: for clients inside this
    /// process (`Client::in_process`), which then skip the loopback connection.
    pub fn in_process(&self) -> Arc<dyn ketch_client::LocalTransport> {
        Arc::new(InProcess(self.app.clone()))
    }

    /// The nodes' heartbeats this server noted (while it leads: followers forward them),
    /// for the node lifecycle controller of its process.
    pub fn liveness(&self) -> Arc<NodeLiveness> {
        self.liveness.clone()
    }

    /// This server's API URL (`https://`; loopback for a wildcard listen address).
    pub fn url(&self) -> String {
        let addr = if self.addr.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), self.addr.port())
        } else {
            self.addr
        };
        format!("https://{addr}")
    }

    /// What a client of this server verifies it with (the cluster CA).
    pub fn client_tls(&self) -> ketch_client::TlsSettings {
        ketch_client::TlsSettings {
            certificate_authority: self.ca_pem().to_string(),
            client_certificate: None,
            client_key: None,
        }
    }

    /// A client of this server over HTTPS with the admin token.
    ///
    /// # Errors
    /// As [`ketch_client::Client::with_tls`].
    pub fn client(&self) -> Result<ketch_client::Client, ketch_client::Error> {
        ketch_client::Client::with_tls(&[self.url()], &self.token, Some(&self.client_tls()))
    }

    /// The cluster CA's certificate (PEM): what clients trust.
    pub fn ca_pem(&self) -> &str {
        self.pki.ca.cert_pem()
    }

    /// The cluster CA's SHA-256 (what join tokens pin).
    pub fn ca_hash(&self) -> &str {
        self.pki.ca.hash()
    }

    /// A certificate for node `name`, for the agent running in this process (a remote agent
    /// obtains its own with a join token).
    ///
    /// # Errors
    /// [`ServerError::Tls`] when issuing fails.
    pub fn issue_node_certificate(
        &self,
        name: &str,
        sans: &[String],
    ) -> Result<ketch_tls::Issued, ServerError> {
        self.pki
            .ca
            .issue(
                &ketch_tls::node_identity(name),
                sans,
                ketch_tls::Usage::ServerAndClient,
            )
            .map_err(|e| ServerError::Tls(e.to_string()))
    }

    /// The store: leadership, membership and raft metrics for the process around the server.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stop accepting requests, finish in-flight ones, and shut the store down.
    ///
    /// # Errors
    /// The HTTP server or the store failed while stopping.
    pub async fn stop(self) -> Result<(), ServerError> {
        let _ = self.shutdown.send(true);
        // Watch streams never end by themselves; give in-flight requests a moment.
        let served = tokio::time::timeout(std::time::Duration::from_secs(2), self.serve).await;
        if let Ok(Ok(Err(e))) = served {
            return Err(ServerError::Serve(e));
        }
        self.store.shutdown().await?;
        Ok(())
    }
}

/// A [`Router`] called as a function. Requests pass the same middleware (authentication,
/// the leader check) and handlers as over a connection; bodies stream as they are produced.
#[derive(Debug)]
struct InProcess(Router);

impl ketch_client::LocalTransport for InProcess {
    fn call(&self, request: axum::http::Request<reqwest::Body>) -> ketch_client::LocalResponse {
        let mut router = self.0.clone();
        Box::pin(async move {
            let response = match tower::Service::call(&mut router, request).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            let (parts, body) = response.into_parts();
            axum::http::Response::from_parts(
                parts,
                reqwest::Body::wrap_stream(body.into_data_stream()),
            )
        })
    }
}

async fn ensure_default_namespace(batcher: &Batcher) -> Result<(), ServerError> {
    // `kube-system` holds the cluster's tokens (see [`auth::TOKEN_NAMESPACE`]).
    for name in ["default", auth::TOKEN_NAMESPACE] {
        let object = json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "uid": uuid::Uuid::new_v4().to_string(),
                         "creationTimestamp": ketch_api::time::now()},
            "spec": {}, "status": {"phase": "Active"},
        });
        let write = Write::Create {
            key: format!("namespaces//{name}"),
            object,
        };
        // AlreadyExists (every start after the first) is fine.
        let _ = batcher.submit(write, 256).await?;
    }
    Ok(())
}
