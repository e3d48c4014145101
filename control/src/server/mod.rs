//! The API server: Kubernetes REST paths over the replicated store.
//!
//! [`router`] builds the whole HTTP surface from an [`ApiState`] (testable without a
//! socket); [`Server::start`] opens the data dir, the store and the listener.

pub mod auth;
pub mod batcher;
pub mod cluster;
pub mod error;
pub mod fields;
pub mod handlers;
pub mod metrics;
pub mod nodeports;
pub mod path;
pub mod proxy;
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
use axum::serve::ListenerExt as _;
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
    /// Client for forwarding pod log/proxy requests to node agents.
    pub http: reqwest::Client,
    /// Bearer token presented to node agents (the admin token until node credentials exist).
    pub agent_token: String,
    /// Node ports chosen for Service writes in flight (see [`nodeports`]).
    pub node_ports: nodeports::Reservations,
    /// The nodes' heartbeats, noted in memory (on the leader: followers forward them).
    pub liveness: Arc<NodeLiveness>,
}

/// The whole HTTP surface of a server.
pub fn router(state: Arc<ApiState>) -> Router {
    let raft = crate::store::network::raft_router(state.store.raft().clone()).layer(
        axum::middleware::from_fn_with_state(state.clone(), require_admin),
    );
    let cluster = cluster::routes().layer(axum::middleware::from_fn_with_state(
        state.clone(),
        require_admin,
    ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/version", get(version))
        .route("/api", get(api_versions))
        .route("/apis", get(api_groups))
        .route("/api/{*rest}", any(handlers::core))
        .route("/apis/{*rest}", any(handlers::grouped))
        .nest("/raft", raft)
        .nest("/cluster", cluster)
        .route(
            "/heartbeat/{node}",
            post(heartbeat).layer(axum::middleware::from_fn_with_state(
                state.clone(),
                require_admin,
            )),
        )
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

async fn require_admin(State(st): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match st.authn.authenticate(header) {
        Ok(_) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok"
}

/// `POST /heartbeat/{node}`: notes that `node`'s agent is alive (in memory, see
/// [`crate::liveness`]) and says when to come back. Served by the leader: followers
/// forward it, and the leader's node lifecycle controller reads the table.
async fn heartbeat(State(st): State<Arc<ApiState>>, Path(node): Path<String>) -> Response {
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

/// Ready when this server is the leader and can pass a read barrier, or is a voter that
/// knows a leader to forward to.
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
    match st.store.read_barrier().await {
        Ok(()) => "ok".into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}")).into_response(),
    }
}

async fn metrics_text(State(st): State<Arc<ApiState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.render(&st.store),
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
        }
    }
}

/// `ketch server --join ADDR --token T`.
#[derive(Debug, Clone)]
pub struct JoinOptions {
    /// Any current member's API address (`host:port` or URL); it forwards to the leader.
    pub address: String,
    /// The cluster's admin token, which is its join token (see [`cluster`]). This server
    /// adopts it as its own admin token, so every server accepts the same client token.
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

/// A joining server takes the cluster's admin token as its own. A data dir that already
/// holds another token belongs to another cluster.
fn adopt_token(data_dir: &std::path::Path, token: &str) -> Result<String, ServerError> {
    let token = token.trim();
    if token.is_empty() {
        return Err(ServerError::Join(
            "--token: the cluster's admin token is required to join".into(),
        ));
    }
    let path = data_dir.join("admin.token");
    let dir_err = |source| ServerError::DataDir {
        path: data_dir.to_path_buf(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(existing) if existing.trim() == token => Ok(token.to_string()),
        Ok(existing) if !existing.trim().is_empty() => Err(ServerError::Join(format!(
            "{} holds a different admin token than --token: this data dir belongs to another cluster",
            path.display()
        ))),
        Ok(_) => {
            auth::write_private(&path, token.as_bytes()).map_err(dir_err)?;
            Ok(token.to_string())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            auth::write_private(&path, token.as_bytes()).map_err(dir_err)?;
            Ok(token.to_string())
        }
        Err(e) => Err(dir_err(e)),
    }
}

/// A running API server.
pub struct Server {
    pub addr: SocketAddr,
    pub token: String,
    pub node_id: u64,
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
        std::fs::create_dir_all(&opts.data_dir).map_err(dir_err)?;
        let node_id = load_identity(&opts.data_dir).map_err(dir_err)?;
        let token = match &opts.join {
            Some(join) => adopt_token(&opts.data_dir, &join.token)?,
            None => auth::load_or_create_token(&opts.data_dir).map_err(dir_err)?,
        };
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .map_err(|source| ServerError::Listen {
                addr: opts.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(ServerError::Serve)?;
        let hub = Arc::new(WatchHub::new(WATCH_HISTORY));
        let advertise = opts.advertise.clone().unwrap_or_else(|| addr.to_string());
        let store = Store::open(
            StoreConfig {
                data_dir: opts.data_dir.clone(),
                node_id,
                advertise_addr: advertise.clone(),
                watch_history: WATCH_HISTORY,
                // Peers' `/raft` endpoints sit behind the same admin check as the API.
                peer_token: Some(token.clone()),
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
        let batcher = Batcher::spawn(store.clone());
        let liveness = Arc::new(NodeLiveness::new(opts.heartbeat));
        let authz = crate::authz::Chain::start(&store, &hub)?;
        let state = Arc::new(ApiState {
            store: store.clone(),
            hub,
            batcher: batcher.clone(),
            authn: Authenticator::new(token.clone()),
            authz: Box::new(authz),
            metrics: Metrics::new(),
            http: reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(5))
                .build()
                .map_err(|e| ServerError::Serve(std::io::Error::other(e)))?,
            agent_token: token.clone(),
            node_ports: nodeports::Reservations::default(),
            liveness: liveness.clone(),
        });
        // The namespace is created once, by the server that founded the cluster; the others
        // get it by replication. (A restarted member may still believe in its old term's
        // leadership here, so `is_leader` is not the test.)
        if alone {
            ensure_default_namespace(&batcher).await?;
            crate::authz::defaults::ensure(&batcher).await?;
        }
        let (shutdown, mut rx) = tokio::sync::watch::channel(false);
        let app = router(state);
        let served_app = app.clone();
        // Watch streams write one small event at a time: with Nagle's algorithm an event
        // could wait for the ACK of the one before it.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let serve = tokio::spawn(async move {
            axum::serve(listener, served_app)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                })
                .await
        });
        if let Some(join) = joining {
            // Served before asking: the leader replicates to this server's `/raft` while
            // the join request waits.
            let req = cluster::JoinRequest {
                id: node_id,
                address: advertise.clone(),
            };
            let joined = match cluster::request_join(&join.address, &token, &req).await {
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
    let object = json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "default", "uid": uuid::Uuid::new_v4().to_string(),
                     "creationTimestamp": ketch_api::time::now()},
        "spec": {}, "status": {"phase": "Active"},
    });
    let write = Write::Create {
        key: "namespaces//default".into(),
        object,
    };
    // AlreadyExists (every start after the first) is fine.
    let _ = batcher.submit(write, 256).await?;
    Ok(())
}
