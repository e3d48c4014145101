//! The raft transport between servers: JSON over HTTPS with mutual TLS.
//!
//! A client POSTs to `https://{node.addr}/raft/{append,vote,snapshot}` presenting its
//! server certificate (the peer's `/raft` accepts only servers' certificates); the peer answers with
//! the serialized `Result<Response, RaftError>` of the matching `Raft` call. Snapshots travel
//! with openraft 0.9's chunked `install_snapshot` protocol (the default `full_snapshot`
//! implementation slices them into chunks of `snapshot_max_chunk_size`). A chunk is sent as
//! binary ([`encode_chunk`]): its bytes as JSON would be an array of numbers, several times
//! their size and slow to parse, which made large snapshots miss their deadline forever.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use axum::{Json, Router};
use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{SnapshotMeta, Vote};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::types::{NodeId, Raft, TypeConfig};

/// Creates one [`NetworkClient`] per peer; all share one HTTP connection pool.
#[derive(Clone)]
pub struct NetworkFactory {
    http: reqwest::Client,
    scheme: &'static str,
}

impl std::fmt::Debug for NetworkFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkFactory").finish_non_exhaustive()
    }
}

impl NetworkFactory {
    /// Peers over HTTPS with `peer` (the server's mutual-TLS client), or, without one, over
    /// plain HTTP (the store's own tests, which run servers without an API in front).
    pub fn new(peer: Option<reqwest::Client>) -> Self {
        match peer {
            Some(http) => Self {
                http,
                scheme: "https",
            },
            None => Self {
                http: {
                    ketch_tls::install_default_provider();
                    reqwest::Client::builder()
                        .connect_timeout(Duration::from_secs(1))
                        .pool_idle_timeout(ketch_tls::CLIENT_POOL_IDLE)
                        .build()
                        .expect("a plain HTTP client always builds")
                },
                scheme: "http",
            },
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = NetworkClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        NetworkClient {
            target,
            addr: node.addr.clone(),
            http: self.http.clone(),
            scheme: self.scheme,
        }
    }
}

/// The connection to one peer.
pub struct NetworkClient {
    target: NodeId,
    addr: String,
    http: reqwest::Client,
    scheme: &'static str,
}

impl std::fmt::Debug for NetworkClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkClient")
            .field("target", &self.target)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// A non-2xx answer from a peer (e.g. 403 for a certificate that is not a server's).
#[derive(Debug, thiserror::Error)]
#[error("raft peer {addr} answered HTTP {status}: {body}")]
struct HttpStatusError {
    addr: String,
    status: u16,
    body: String,
}

impl NetworkClient {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let url = format!("{}://{}/raft/{path}", self.scheme, self.addr);
        self.send(self.http.post(url).json(req), timeout).await
    }

    async fn send<Resp, E>(
        &self,
        builder: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let builder = builder.timeout(timeout);
        let resp = builder.send().await.map_err(|e| {
            if e.is_connect() {
                RPCError::Unreachable(Unreachable::new(&e))
            } else {
                RPCError::Network(NetworkError::new(&e))
            }
        })?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(RPCError::Network(NetworkError::new(&HttpStatusError {
                addr: self.addr.clone(),
                status: status.as_u16(),
                body,
            })));
        }
        let result: Result<Resp, RaftError<NodeId, E>> = resp
            .json()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for NetworkClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("append", &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let url = format!("{}://{}/raft/snapshot", self.scheme, self.addr);
        let body = encode_chunk(&rpc);
        self.send(
            self.http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(body),
            option.hard_ttl(),
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("vote", &rpc, option.hard_ttl()).await
    }
}

/// Largest raft request accepted: a batch of appended entries or one snapshot chunk.
const MAX_RAFT_BODY: usize = 256 * 1024 * 1024;

/// The peer-facing endpoints, relative to where the API server nests them (`/raft`):
/// `POST /append`, `POST /vote`, `POST /snapshot`. Generic over the outer router's state so
/// it can be nested (and layered) inside the API server's router.
pub fn raft_router<S>(raft: Raft) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/append", post(append))
        .route("/vote", post(vote))
        .route("/snapshot", post(snapshot))
        .layer(DefaultBodyLimit::max(MAX_RAFT_BODY))
        .with_state(raft)
}

async fn append(
    State(raft): State<Raft>,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> Json<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>> {
    Json(raft.append_entries(req).await)
}

async fn vote(
    State(raft): State<Raft>,
    Json(req): Json<VoteRequest<NodeId>>,
) -> Json<Result<VoteResponse<NodeId>, RaftError<NodeId>>> {
    Json(raft.vote(req).await)
}

async fn snapshot(
    State(raft): State<Raft>,
    body: Bytes,
) -> Result<
    Json<Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>>,
    (axum::http::StatusCode, String),
> {
    let req = decode_chunk(&body).map_err(|e| (axum::http::StatusCode::BAD_REQUEST, e))?;
    Ok(Json(raft.install_snapshot(req).await))
}

/// Everything of a snapshot chunk but its bytes.
#[derive(Serialize, Deserialize)]
struct ChunkHead {
    vote: Vote<NodeId>,
    meta: SnapshotMeta<NodeId, BasicNode>,
    offset: u64,
    done: bool,
}

/// A snapshot chunk on the wire: the head's JSON length (u32, big-endian), the head as
/// JSON, then the chunk's bytes as they are.
pub(crate) fn encode_chunk(rpc: &InstallSnapshotRequest<TypeConfig>) -> Vec<u8> {
    let head = serde_json::to_vec(&ChunkHead {
        vote: rpc.vote,
        meta: rpc.meta.clone(),
        offset: rpc.offset,
        done: rpc.done,
    })
    .expect("a snapshot chunk's head always serializes");
    let len = u32::try_from(head.len()).expect("a chunk head is far below 4 GiB");
    let mut body = Vec::with_capacity(4 + head.len() + rpc.data.len());
    body.extend_from_slice(&len.to_be_bytes());
    body.extend_from_slice(&head);
    body.extend_from_slice(&rpc.data);
    body
}

pub(crate) fn decode_chunk(body: &[u8]) -> Result<InstallSnapshotRequest<TypeConfig>, String> {
    let (len, rest) = body
        .split_first_chunk::<4>()
        .ok_or("snapshot chunk: shorter than its length prefix")?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return Err(format!(
            "snapshot chunk: head of {len} bytes announced, {} present",
            rest.len()
        ));
    }
    let (head, data) = rest.split_at(len);
    let head: ChunkHead =
        serde_json::from_slice(head).map_err(|e| format!("snapshot chunk head: {e}"))?;
    // The id names a file on this server: only the grammar servers write is taken.
    if !super::state_machine::is_snapshot_id(&head.meta.snapshot_id) {
        return Err(format!(
            "snapshot chunk: meta.snapshot_id {:?} is not of the form TERM-NODE-INDEX-rREVISION",
            head.meta.snapshot_id
        ));
    }
    Ok(InstallSnapshotRequest {
        vote: head.vote,
        meta: head.meta,
        offset: head.offset,
        data: data.to_vec(),
        done: head.done,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, LogId, StoredMembership};

    #[test]
    fn a_snapshot_chunk_survives_the_binary_framing_and_a_short_one_is_refused() {
        let rpc = InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 7),
            meta: SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(3, 7), 42)),
                last_membership: StoredMembership::default(),
                snapshot_id: "3-7-42-r9".into(),
            },
            offset: 1 << 20,
            data: (0..=255u8).cycle().take(5000).collect(),
            done: true,
        };
        let wire = encode_chunk(&rpc);
        // The bytes travel as they are, not as JSON numbers.
        assert!(wire.len() < rpc.data.len() + 300, "{} bytes", wire.len());
        let back = decode_chunk(&wire).unwrap();
        assert_eq!(
            (back.vote, back.meta, back.offset, back.done),
            (rpc.vote, rpc.meta, rpc.offset, rpc.done)
        );
        assert_eq!(back.data, rpc.data);
        assert!(
            decode_chunk(&wire[..2])
                .unwrap_err()
                .contains("length prefix")
        );
        assert!(decode_chunk(&wire[..20]).unwrap_err().contains("announced"));
    }

    #[test]
    fn a_snapshot_id_that_is_not_a_servers_own_name_is_refused() {
        for id in [
            "../../x",
            "/etc/x",
            "3-7-42-r9/../../x",
            "3-7-42",
            "",
            "a-b-c-r1",
            "none-r",
            "1-2-3-4-r5",
        ] {
            let rpc = InstallSnapshotRequest::<TypeConfig> {
                vote: Vote::new_committed(3, 7),
                meta: SnapshotMeta {
                    last_log_id: None,
                    last_membership: StoredMembership::default(),
                    snapshot_id: id.into(),
                },
                offset: 0,
                data: vec![],
                done: true,
            };
            let err = decode_chunk(&encode_chunk(&rpc)).err();
            assert!(err.is_some_and(|e| e.contains("snapshot_id")), "{id:?}");
        }
        for id in ["none-r0", "3-7-42-r9", "18446744073709551615-1-2-r3"] {
            assert!(super::super::state_machine::is_snapshot_id(id), "{id}");
        }
    }
}
