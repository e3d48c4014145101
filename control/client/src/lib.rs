//! Typed HTTP client for the ketch API, and a [`watcher`] that follows a collection
//! forever: it resumes from the last resourceVersion it saw after a dropped connection,
//! and relists when the server says that version is gone (410).
//!
//! Objects can be handled dynamically (`serde_json::Value` + a [`ResourceInfo`]) — as the
//! CLI does for any kind — or typed through [`Api<K>`] for a [`Resource`] type. A
//! [`Client`] knows every server of a cluster and moves on from one that fails, or calls
//! the server's router in its own process ([`LocalTransport`]). [`ClientConfig`] is the
//! client config file (servers and token) that `ketch server` writes and the CLI reads.
//!
//! What the CLI prints (kubectl-style tables) and how it reads and applies manifests are
//! the `ketch` binary's, not this crate's: the control plane and the agent are clients too
//! and need neither.

mod config;
pub mod files;
pub mod join;
mod watcher;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ketch_api::meta::Status;
use ketch_api::params::{QueryParams, ReadParams};
use ketch_api::resource::{Resource, ResourceInfo};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use config::{ClientConfig, TlsSettings};
/// The query parameters a list, a watch and a log take; defined in `ketch-api`, where the
/// server parses them from.
pub use ketch_api::params::{ListParams, LogParams};
pub use watcher::{Event, watcher};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server refused the request; the `Status` says why (code, reason, message).
    #[error("{}", .0.message.as_deref().unwrap_or("request failed"))]
    Api(Box<Status>),
    /// The server could not be reached or the connection broke.
    #[error("{url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered something that is not what the API promises.
    #[error("decoding the response from {url}: {message}")]
    Decode { url: String, message: String },
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// The HTTP code when the server answered with a `Status`.
    pub fn code(&self) -> Option<u16> {
        match self {
            Error::Api(s) => Some(s.code),
            _ => None,
        }
    }

    /// Whether the same request may succeed if made again (to this server or, after a
    /// client moved on, the next): the server could not be reached, the connection broke,
    /// or it answered that it cannot serve now (5xx, 429). Not for refusals (4xx) or
    /// answers that do not decode.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Http { .. } => true,
            Error::Api(s) => s.code >= 500 || s.code == 429,
            Error::Decode { .. } | Error::Config(_) => false,
        }
    }

    /// The `Status.reason` when the server answered with one.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Error::Api(s) => s.reason.as_deref(),
            _ => None,
        }
    }
}

/// A client for one server, or for the servers of a cluster: it uses one at a time and
/// moves to the next when a connection to it fails (the request that failed is not
/// retried; its caller's retry goes to the next server). Cheap to clone; clones share the
/// current server, so everything a process does moves together.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// Set for a client inside the server process: requests go to the server's router as
    /// function calls instead of over a connection (see [`Client::in_process`]).
    local: Option<Arc<dyn LocalTransport>>,
    servers: Arc<[String]>,
    /// Index into `servers` of the one in use.
    current: Arc<AtomicUsize>,
    token: String,
    /// Send `x-ketch-no-forward`: the server must serve the request itself (see
    /// [`Client::no_forward`]).
    no_forward: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("servers", &self.servers)
            .field("in_process", &self.local.is_some())
            .field("no_forward", &self.no_forward)
            .finish_non_exhaustive()
    }
}

/// What a response future of a [`LocalTransport`] is.
pub type LocalResponse = Pin<Box<dyn Future<Output = http::Response<reqwest::Body>> + Send>>;

/// A server's HTTP surface called as a function: the same router, authentication and
/// handlers a connection reaches, without the socket and the HTTP/1 encoding and parsing on
/// both ends. The server's own control loops (scheduler, controllers, the all-in-one agent)
/// are API clients of the process they run in; over loopback each of their requests paid
/// that twice (15–30 % of the server's CPU per Pod in the scheduler benchmark).
pub trait LocalTransport: Send + Sync + std::fmt::Debug {
    /// Serve one request. Errors are responses (as over the network, a refused request is a
    /// `Status` body with its code).
    fn call(&self, request: http::Request<reqwest::Body>) -> LocalResponse;
}

/// `/api/v1/namespaces/{ns}/pods/{name}` for a resource, namespace and name.
pub fn resource_path(info: &ResourceInfo, namespace: Option<&str>, name: Option<&str>) -> String {
    let mut p = if info.group.is_empty() {
        format!("/api/{}", info.version)
    } else {
        format!("/apis/{}/{}", info.group, info.version)
    };
    if info.namespaced
        && let Some(ns) = namespace
    {
        p.push_str("/namespaces/");
        p.push_str(ns);
    }
    p.push('/');
    p.push_str(info.plural);
    if let Some(n) = name {
        p.push('/');
        p.push_str(n);
    }
    p
}

impl Client {
    /// `server` is one URL, or several separated by commas (the servers of a cluster, used
    /// one at a time as [`Client::with_servers`] does).
    ///
    /// # Errors
    /// [`Error::Config`] when a server URL is not `http://` or `https://`, or none is given.
    pub fn new(server: &str, token: &str) -> Result<Self, Error> {
        let servers: Vec<String> = server
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        Self::with_servers(&servers, token)
    }

    /// A client for the servers of a cluster, starting with the first; on a connection
    /// failure it moves to the next (round robin).
    ///
    /// # Errors
    /// [`Error::Config`] when a server URL is not `http://` or `https://`, or the list is
    /// empty.
    pub fn with_servers(servers: &[String], token: &str) -> Result<Self, Error> {
        Self::with_tls(servers, token, None)
    }

    /// A client for `servers` that trusts only the cluster CA in `tls` and presents the
    /// client certificate there, if any (see [`TlsSettings`]); `token` may be empty when
    /// the certificate is the credential. Without `tls`, `https://` servers cannot be
    /// reached (there is nothing to verify them with).
    ///
    /// # Errors
    /// As [`Client::with_servers`], and [`Error::Config`] when the PEMs do not make a TLS
    /// config.
    pub fn with_tls(
        servers: &[String],
        token: &str,
        tls: Option<&TlsSettings>,
    ) -> Result<Self, Error> {
        if servers.is_empty() {
            return Err(Error::Config("no server configured".into()));
        }
        for server in servers {
            if !(server.starts_with("http://") || server.starts_with("https://")) {
                return Err(Error::Config(format!(
                    "server {server:?}: must be a URL like http://127.0.0.1:6443"
                )));
            }
        }
        ketch_tls::install_default_provider();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .pool_idle_timeout(ketch_tls::CLIENT_POOL_IDLE)
            // The API never redirects; a server that does is not followed anywhere.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(tls) = tls {
            let identity = tls
                .client_certificate
                .as_deref()
                .zip(tls.client_key.as_deref());
            let config = ketch_tls::client_config(&tls.certificate_authority, identity)
                .map_err(|e| Error::Config(format!("TLS settings: {e}")))?;
            builder = builder.tls_backend_preconfigured(config);
        }
        let http = builder
            .build()
            .map_err(|e| Error::Config(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            http,
            local: None,
            servers: servers
                .iter()
                .map(|s| s.trim_end_matches('/').to_string())
                .collect(),
            current: Arc::new(AtomicUsize::new(0)),
            token: token.to_string(),
            no_forward: false,
        })
    }

    /// The first of `servers` that answers `/healthz` (each gets `probe` to connect and
    /// answer), so a client configured with every server of a cluster fails over from a
    /// dead one. One server is used as is, without a probe.
    ///
    /// # Errors
    /// [`Error::Config`] for an empty list or a bad URL; [`Error::Http`] (of the last one)
    /// when none answers.
    pub async fn connect_any(
        servers: &[String],
        token: &str,
        tls: Option<&TlsSettings>,
        probe: Duration,
    ) -> Result<Self, Error> {
        let client = Self::with_tls(servers, token, tls)?;
        if servers.len() == 1 {
            return Ok(client);
        }
        let mut last = None;
        for (i, server) in client.servers.iter().enumerate() {
            let url = format!("{server}/healthz");
            match client.http.get(&url).timeout(probe).send().await {
                Ok(_) => {
                    client.current.store(i, Ordering::Relaxed);
                    return Ok(client);
                }
                Err(source) => last = Some(Error::Http { url, source }),
            }
        }
        Err(last.unwrap_or_else(|| Error::Config("no server configured".into())))
    }

    /// This client's requests must be served by the server it talks to and never be
    /// forwarded to another (the leader-only controllers use it: a server that lost
    /// leadership refuses their writes instead of passing them on).
    #[must_use]
    pub fn no_forward(mut self) -> Self {
        self.no_forward = true;
        self
    }

    /// A client that calls `transport` (the router of the server it runs in) instead of
    /// connecting to `server`, whose URL still names it in errors. Requests, answers and
    /// streams are the same as over HTTP.
    ///
    /// # Errors
    /// As [`Client::with_servers`].
    pub fn in_process(
        server: &str,
        token: &str,
        transport: Arc<dyn LocalTransport>,
    ) -> Result<Self, Error> {
        let mut client = Self::with_servers(&[server.to_string()], token)?;
        client.local = Some(transport);
        Ok(client)
    }

    /// A client for a config file's servers (starting with the first).
    ///
    /// # Errors
    /// As [`Client::with_servers`].
    pub fn from_config(cfg: &ClientConfig) -> Result<Self, Error> {
        Self::with_tls(&cfg.servers, &cfg.token, cfg.tls().as_ref())
    }

    /// The URL of the server in use.
    pub fn base_url(&self) -> &str {
        &self.servers[self.current.load(Ordering::Relaxed) % self.servers.len()]
    }

    /// A transport error for `url`; when the connection failed or broke before the answer
    /// (the server died mid-request), the server it was for is skipped from now on (unless
    /// another request already moved on).
    fn transport_error(&self, url: String, source: reqwest::Error) -> Error {
        if source.is_connect() {
            self.move_on_from(&url, "unreachable");
        } else if source.is_request() {
            self.move_on_from(&url, "closed the connection before answering");
        }
        Error::Http { url, source }
    }

    /// An answer from the server `url` went to: a 503 means it cannot serve now (cut off
    /// from the others, or no leader known), so later requests go to the next server, as
    /// after a connection failure. The answer itself is returned as it is.
    fn check_answer(&self, url: &str, resp: &reqwest::Response) {
        if resp.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            self.move_on_from(url, "unavailable (503)");
        }
    }

    /// Use the server after the one `url` went to, unless there is only one or another
    /// request already moved on (compare-and-swap from the failed one, so concurrent
    /// failures move the index once).
    fn move_on_from(&self, url: &str, why: &str) {
        if self.servers.len() < 2 {
            return;
        }
        let failed = self.servers.iter().position(|s| {
            url.strip_prefix(s.as_str())
                .is_some_and(|p| p.starts_with('/'))
        });
        if let Some(i) = failed {
            let next = (i + 1) % self.servers.len();
            if self
                .current
                .compare_exchange(i, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                tracing::warn!(failed = %self.servers[i], next = %self.servers[next],
                    "API server {why}; moving to the next one");
            }
        }
    }

    /// A typed handle for kind `K` in `namespace` (ignored for cluster-scoped kinds).
    pub fn api<K: Resource>(&self, namespace: Option<&str>) -> Api<K> {
        Api {
            client: self.clone(),
            namespace: namespace.map(str::to_string),
            _k: std::marker::PhantomData,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> (String, reqwest::RequestBuilder) {
        let url = format!("{}{}", self.base_url(), path);
        let mut rb = self.http.request(method, &url);
        if !self.token.is_empty() {
            rb = rb.bearer_auth(&self.token);
        }
        if self.no_forward {
            rb = rb.header("x-ketch-no-forward", "1");
        }
        (url, rb)
    }

    /// Send over the connection, or through the in-process transport when there is one.
    async fn execute(
        &self,
        url: &str,
        rb: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Error> {
        let sent = match &self.local {
            None => rb.send().await,
            Some(local) => match rb.build().and_then(http::Request::try_from) {
                Ok(req) => Ok(reqwest::Response::from(local.call(req).await)),
                Err(e) => Err(e),
            },
        };
        let resp = sent.map_err(|source| self.transport_error(url.to_string(), source))?;
        self.check_answer(url, &resp);
        Ok(resp)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        url: String,
        rb: reqwest::RequestBuilder,
    ) -> Result<T, Error> {
        let resp = self.execute(&url, rb).await?;
        decode(url, resp).await
    }

    /// GET a path (for `/version`, discovery and the like).
    ///
    /// # Errors
    /// [`Error::Api`] with the server's Status, or a transport/decoding error.
    pub async fn get_path(&self, path: &str) -> Result<Value, Error> {
        let (url, rb) = self.request(reqwest::Method::GET, path);
        self.send(url, rb).await
    }

    /// A certificate (PEM) for `req` from `/cluster/certificates`, asked for with this
    /// client's credential (a node renewing its own, or an admin).
    ///
    /// # Errors
    /// As [`Client::get_path`].
    pub async fn request_node_certificate(
        &self,
        req: &join::CertificateRequest,
    ) -> Result<String, Error> {
        let (url, rb) = self.request(reqwest::Method::POST, "/cluster/certificates");
        let answer: join::CertificateAnswer = self.send(url, rb.json(req)).await?;
        Ok(answer.certificate)
    }

    /// DELETE a path outside the resource API (e.g. `/cluster/members/{id}`).
    ///
    /// # Errors
    /// As [`Client::get_path`].
    pub async fn delete_path(&self, path: &str) -> Result<Value, Error> {
        let (url, rb) = self.request(reqwest::Method::DELETE, path);
        self.send(url, rb).await
    }

    /// # Errors
    /// [`Error::Api`] (404 NotFound, 401, …), or a transport/decoding error.
    pub async fn get(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, Error> {
        let (url, rb) = self.request(reqwest::Method::GET, &resource_path(info, ns, Some(name)));
        self.send(url, rb).await
    }

    /// List a collection (all namespaces when `ns` is `None`).
    ///
    /// # Errors
    /// As [`Client::get`].
    pub async fn list(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        params: &ListParams,
    ) -> Result<Value, Error> {
        let (url, rb) = self.request(reqwest::Method::GET, &resource_path(info, ns, None));
        self.send(url, rb.query(params)).await
    }

    /// # Errors
    /// [`Error::Api`] 409 AlreadyExists, 422 Invalid, …
    pub async fn create(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        obj: &Value,
    ) -> Result<Value, Error> {
        let (url, rb) = self.request(reqwest::Method::POST, &resource_path(info, ns, None));
        self.send(url, rb.json(obj)).await
    }

    /// PUT the whole object (compare-and-set when it carries a resourceVersion).
    ///
    /// # Errors
    /// [`Error::Api`] 409 Conflict when stale, 404, 422, …
    pub async fn replace(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        obj: &Value,
    ) -> Result<Value, Error> {
        let (url, rb) = self.request(reqwest::Method::PUT, &resource_path(info, ns, Some(name)));
        self.send(url, rb.json(obj)).await
    }

    /// PUT the status subresource.
    ///
    /// # Errors
    /// As [`Client::replace`].
    pub async fn replace_status(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        obj: &Value,
    ) -> Result<Value, Error> {
        let path = format!("{}/status", resource_path(info, ns, Some(name)));
        let (url, rb) = self.request(reqwest::Method::PUT, &path);
        self.send(url, rb.json(obj)).await
    }

    /// JSON merge patch (RFC 7386) of the object, or of its status when `status` is true.
    ///
    /// # Errors
    /// As [`Client::replace`].
    pub async fn merge_patch(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        patch: &Value,
        status: bool,
    ) -> Result<Value, Error> {
        let mut path = resource_path(info, ns, Some(name));
        if status {
            path.push_str("/status");
        }
        let (url, rb) = self.request(reqwest::Method::PATCH, &path);
        let rb = rb
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/merge-patch+json",
            )
            .body(serde_json::to_vec(patch).expect("JSON values serialize"));
        self.send(url, rb).await
    }

    /// Assign a Pod to a node through its `binding` subresource (what a scheduler does):
    /// sets `spec.nodeName` and `PodScheduled=True` in one write. `uid`, when given, must be
    /// the stored Pod's.
    ///
    /// # Errors
    /// [`Error::Api`] 404 NotFound; 409 when the Pod is already assigned, is being deleted,
    /// or has another uid.
    pub async fn bind_pod(
        &self,
        ns: &str,
        name: &str,
        uid: Option<&str>,
        node: &str,
    ) -> Result<Value, Error> {
        let pods = ketch_api::resource::lookup("pods").expect("pods are registered");
        let path = format!("{}/binding", resource_path(pods, Some(ns), Some(name)));
        let (url, rb) = self.request(reqwest::Method::POST, &path);
        let binding = serde_json::json!({"apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": ns, "uid": uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
        let rb = rb
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&binding).expect("JSON values serialize"));
        self.send(url, rb).await
    }

    /// Evict a Pod through its `eviction` subresource: deleted if its PodDisruptionBudget
    /// allows (or none covers it). `uid`, when given, must be the stored Pod's.
    ///
    /// # Errors
    /// [`Error::Api`] 429 when the budget does not allow it now (retry later), 404 when the
    /// Pod is gone, 409 when `uid` is another Pod's, 500 when several budgets cover it.
    pub async fn evict_pod(&self, ns: &str, name: &str, uid: Option<&str>) -> Result<Value, Error> {
        let pods = ketch_api::resource::lookup("pods").expect("pods are registered");
        let path = format!("{}/eviction", resource_path(pods, Some(ns), Some(name)));
        let (url, rb) = self.request(reqwest::Method::POST, &path);
        let mut eviction = serde_json::json!({"apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": {"name": name, "namespace": ns}});
        if let Some(uid) = uid {
            eviction["deleteOptions"] = serde_json::json!({"preconditions": {"uid": uid}});
        }
        let rb = rb
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&eviction).expect("JSON values serialize"));
        self.send(url, rb).await
    }

    /// Delete; returns the object as deleted (or as marked, when finalizers hold it).
    ///
    /// # Errors
    /// [`Error::Api`] 404 NotFound, 409 on a failed precondition, …
    pub async fn delete(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, Error> {
        let (url, rb) = self.request(
            reqwest::Method::DELETE,
            &resource_path(info, ns, Some(name)),
        );
        self.send(url, rb).await
    }

    /// Tells the leader that `node`'s agent is alive (ketch's heartbeat, kept in the
    /// leader's memory: see `ketch_api::heartbeat`); the answer says when to come back.
    ///
    /// # Errors
    /// [`Error::Api`] (404 from a server that predates heartbeats), or a transport error.
    pub async fn node_heartbeat(
        &self,
        node: &str,
    ) -> Result<ketch_api::heartbeat::HeartbeatAnswer, Error> {
        let (url, rb) = self.request(reqwest::Method::POST, &ketch_api::heartbeat::path(node));
        self.send(url, rb).await
    }

    /// Stream a container's log from its node (through the API server): the response body
    /// is the log text.
    ///
    /// # Errors
    /// [`Error::Api`] (404 for an unknown pod or container, 503 when its node is
    /// unreachable), or a transport error.
    pub async fn pod_log(
        &self,
        namespace: &str,
        pod: &str,
        opts: &LogParams,
    ) -> Result<reqwest::Response, Error> {
        let info = ketch_api::resource::lookup("pods").expect("pods are registered");
        let path = format!("{}/log", resource_path(info, Some(namespace), Some(pod)));
        let (url, rb) = self.request(reqwest::Method::GET, &path);
        self.send_streaming(url, rb.query(opts)).await
    }

    /// Open one watch stream from `resource_version` (`None`: current state as ADDED first).
    /// Prefer [`watcher`], which reconnects and resumes.
    ///
    /// # Errors
    /// [`Error::Api`] 410 Expired when the version is compacted, or a transport error.
    pub async fn watch_once(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        params: &ListParams,
        resource_version: Option<&str>,
    ) -> Result<reqwest::Response, Error> {
        let (url, rb) = self.request(reqwest::Method::GET, &resource_path(info, ns, None));
        let query = QueryParams {
            list: params.clone(),
            read: ReadParams {
                watch: true,
                resource_version: resource_version.map(str::to_string),
            },
            allow_watch_bookmarks: true,
            ..QueryParams::default()
        };
        self.send_streaming(url, rb.query(&query)).await
    }

    /// Send a request whose successful body is a stream (a watch, a log); a failure
    /// answers with the server's `Status`.
    async fn send_streaming(
        &self,
        url: String,
        rb: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Error> {
        let resp = self.execute(&url, rb).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(decode::<Value>(url, resp)
            .await
            .err()
            .unwrap_or_else(|| Error::Decode {
                url: String::new(),
                message: "error status with a success body".into(),
            }))
    }
}

async fn decode<T: DeserializeOwned>(url: String, resp: reqwest::Response) -> Result<T, Error> {
    let code = resp.status();
    let bytes = resp.bytes().await.map_err(|source| Error::Http {
        url: url.clone(),
        source,
    })?;
    if !code.is_success() {
        let status = serde_json::from_slice::<Status>(&bytes).unwrap_or_else(|_| Status {
            code: code.as_u16(),
            message: Some(format!(
                "{} {}",
                code,
                String::from_utf8_lossy(&bytes)
                    .chars()
                    .take(500)
                    .collect::<String>()
            )),
            ..Status::default()
        });
        return Err(Error::Api(Box::new(status)));
    }
    serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
        url,
        message: e.to_string(),
    })
}

/// Typed access to one kind in one namespace.
#[derive(Debug, Clone)]
pub struct Api<K> {
    client: Client,
    namespace: Option<String>,
    _k: std::marker::PhantomData<fn() -> K>,
}

fn to_typed<K: DeserializeOwned>(v: Value) -> Result<K, Error> {
    serde_json::from_value(v).map_err(|e| Error::Decode {
        url: String::new(),
        message: e.to_string(),
    })
}

fn to_value<K: serde::Serialize>(k: &K) -> Value {
    serde_json::to_value(k).expect("API objects serialize")
}

impl<K: Resource> Api<K> {
    fn ns(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// # Errors
    /// See [`Client::get`].
    pub async fn get(&self, name: &str) -> Result<K, Error> {
        to_typed(self.client.get(K::INFO, self.ns(), name).await?)
    }

    /// # Errors
    /// See [`Client::list`].
    pub async fn list(&self, params: &ListParams) -> Result<ketch_api::meta::ObjectList<K>, Error> {
        to_typed(self.client.list(K::INFO, self.ns(), params).await?)
    }

    /// # Errors
    /// See [`Client::create`].
    pub async fn create(&self, obj: &K) -> Result<K, Error> {
        to_typed(
            self.client
                .create(K::INFO, self.ns(), &to_value(obj))
                .await?,
        )
    }

    /// # Errors
    /// See [`Client::replace`].
    pub async fn replace(&self, obj: &K) -> Result<K, Error> {
        let name = obj.metadata().name.clone().unwrap_or_default();
        to_typed(
            self.client
                .replace(K::INFO, self.ns(), &name, &to_value(obj))
                .await?,
        )
    }

    /// # Errors
    /// See [`Client::replace_status`].
    pub async fn replace_status(&self, obj: &K) -> Result<K, Error> {
        let name = obj.metadata().name.clone().unwrap_or_default();
        to_typed(
            self.client
                .replace_status(K::INFO, self.ns(), &name, &to_value(obj))
                .await?,
        )
    }

    /// # Errors
    /// See [`Client::merge_patch`].
    pub async fn merge_patch(&self, name: &str, patch: &Value, status: bool) -> Result<K, Error> {
        to_typed(
            self.client
                .merge_patch(K::INFO, self.ns(), name, patch, status)
                .await?,
        )
    }

    /// # Errors
    /// See [`Client::delete`].
    pub async fn delete(&self, name: &str) -> Result<K, Error> {
        to_typed(self.client.delete(K::INFO, self.ns(), name).await?)
    }

    /// Deletes `name` only if it is still the object with `uid` (a `uid` precondition).
    ///
    /// # Errors
    /// See [`Client::delete`]; 409 when another object now has the name.
    pub async fn delete_with_uid(&self, name: &str, uid: &str) -> Result<K, Error> {
        let options = serde_json::json!({
            "kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": uid},
        });
        let (url, rb) = self.client.request(
            reqwest::Method::DELETE,
            &resource_path(K::INFO, self.ns(), Some(name)),
        );
        to_typed(self.client.send(url, rb.json(&options)).await?)
    }

    /// A resuming watch of this kind (see [`watcher`]).
    pub fn watcher(
        &self,
        params: ListParams,
        from: Option<String>,
    ) -> impl futures_util::Stream<Item = Result<Event<K>, Error>> + Send + use<K> {
        watcher(
            self.client.clone(),
            K::INFO,
            self.namespace.clone(),
            params,
            from,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A loopback server answering every request with `{}`; its URL.
    async fn answering() -> String {
        answering_with(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
        )
        .await
    }

    /// A loopback server answering every request with `answer`; its URL.
    async fn answering_with(answer: &'static [u8]) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = conn.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        if conn.write_all(answer).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        url
    }

    /// A URL where nothing listens.
    fn refusing() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    }

    #[tokio::test]
    async fn a_connection_failure_moves_every_clone_to_the_next_server() {
        let (dead, live) = (refusing(), answering().await);
        let client = Client::new(&format!("{dead}, {live}/"), "t").unwrap();
        let clone = client.clone();
        assert_eq!(client.base_url(), dead);
        // The failed request is not retried: the caller sees the error…
        let err = client.get_path("/version").await.unwrap_err();
        assert!(matches!(err, Error::Http { .. }), "{err:?}");
        // …and its next request, from any clone, goes to the next server.
        assert_eq!(clone.base_url(), live);
        assert_eq!(
            clone.get_path("/version").await.unwrap(),
            serde_json::json!({})
        );
        // An answering server is kept.
        assert_eq!(client.base_url(), live);
    }

    #[tokio::test]
    async fn a_server_that_answers_503_is_left_for_the_next_one() {
        let cut_off = answering_with(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n{\"code\":503}",
        )
        .await;
        let live = answering().await;
        let client = Client::new(&format!("{cut_off},{live}"), "t").unwrap();
        let err = client.get_path("/version").await.unwrap_err();
        assert_eq!(err.code(), Some(503), "{err:?}");
        assert_eq!(client.base_url(), live);
        client.get_path("/version").await.unwrap();
    }

    /// A loopback server that reads each request and closes the connection without an
    /// answer (a server dying mid-request); its URL.
    async fn hanging_up() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
            }
        });
        url
    }

    #[tokio::test]
    async fn a_connection_closed_before_the_answer_moves_on_and_may_be_retried() {
        let (gone, live) = (hanging_up().await, answering().await);
        let client = Client::new(&format!("{gone},{live}"), "t").unwrap();
        let err = client.get_path("/version").await.unwrap_err();
        assert!(matches!(err, Error::Http { .. }), "{err:?}");
        assert!(err.is_retriable());
        assert_eq!(client.base_url(), live);
        client.get_path("/version").await.unwrap();
        // A refusal is final; a server that cannot serve now may later.
        let status = |code| {
            Error::Api(Box::new(Status {
                code,
                ..Status::default()
            }))
        };
        assert!(!status(404).is_retriable() && !status(409).is_retriable());
        assert!(status(503).is_retriable() && status(429).is_retriable());
    }

    #[tokio::test]
    async fn the_last_server_wraps_around_to_the_first() {
        let (live, dead) = (answering().await, refusing());
        let client = Client::with_servers(&[live.clone(), dead.clone()], "t").unwrap();
        client.current.store(1, Ordering::Relaxed);
        client.get_path("/version").await.unwrap_err();
        assert_eq!(client.base_url(), live);
        // One server: nothing to move to.
        let alone = Client::new(&dead, "t").unwrap();
        alone.get_path("/version").await.unwrap_err();
        assert_eq!(alone.base_url(), dead);
    }

    #[test]
    fn server_lists_are_checked() {
        assert!(
            matches!(Client::new(" , ", "t"), Err(Error::Config(m)) if m.contains("no server"))
        );
        let err = Client::new("http://a:1,b:2", "t").unwrap_err().to_string();
        assert!(
            err.contains("\"b:2\"") && err.contains("must be a URL"),
            "{err}"
        );
    }
}
