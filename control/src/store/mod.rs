//! The replicated object store: openraft over two redb files per server.
//!
//! `<data_dir>/log.redb` holds the raft log (`raft_log`, `raft_meta`: vote, committed, last
//! purged); `<data_dir>/raft.redb` the state machine (`objects`, `sm_meta`, `events`).
//! Writes go through raft ([`Store::propose`]); reads are redb read transactions on the
//! state machine's file, concurrent with writes, behind a raft read barrier
//! ([`Store::read_barrier`]) when they must be linearizable.
//!
//! Durability: the vote and every log append/truncate/purge is an fsynced commit of the
//! log's file, and openraft is told an append is flushed only after its commit returned
//! (see [`log_store`]). The state machine commits once per `apply()` without an fsync, and
//! durably about every [`state_machine::DURABLE_EVERY`] (by an apply or, when it is quiet,
//! its flusher task), before a purge of the log, at a snapshot and at [`Store::shutdown`];
//! after a crash it resumes from its last durable commit and re-applies the log from there.
//! Servers before the split kept the log in `raft.redb`; the first start of this version
//! moves it (see [`db::open_log`]).

pub mod apply;
pub mod command;
pub(crate) mod db;
pub mod log_store;
pub mod network;
pub mod state_machine;
pub mod types;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ChangeMembers, Config, ServerState, SnapshotPolicy};
use redb::Database;

use self::log_store::LogStore;
use self::network::NetworkFactory;
use self::state_machine::StateMachine;
pub use self::types::TypeConfig;
use self::types::{NodeId, Raft};
use crate::watch::WatchHub;

/// How long a proposal or a read barrier may wait for the cluster before giving up.
const CLUSTER_WAIT: Duration = Duration::from_secs(10);
/// Raft heartbeat interval (ms); a leader confirms its leadership once per round.
const HEARTBEAT_MS: u64 = 50;
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(HEARTBEAT_MS);
/// How long a linearizable read keeps asking for a quorum before it is refused: several
/// election timeouts, so a missed heartbeat round is not an outage, while a leader cut off
/// from the majority refuses within about a second (and its followers elect another).
const QUORUM_RETRY: Duration = Duration::from_secs(1);

/// Where and as whom a server's store runs.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    pub node_id: u64,
    /// `host:port` peers use to reach this server's `/raft` endpoints.
    pub advertise_addr: String,
    /// Watch history (events) the hub keeps; default 100 000. The hub is built by the caller.
    pub watch_history: usize,
    /// The mutual-TLS client raft reaches peers with (HTTPS); `None` for plain HTTP (tests
    /// of the store alone).
    pub peer_http: Option<reqwest::Client>,
    /// Raft log entries applied since the last snapshot that trigger the next one.
    pub snapshot_count: u64,
}

/// Applied raft entries between snapshots unless configured. An entry is a whole batch
/// of writes (group commit), so under load a snapshot covers many more writes than this.
pub const DEFAULT_SNAPSHOT_COUNT: u64 = 5000;

impl StoreConfig {
    pub fn new(
        data_dir: impl Into<PathBuf>,
        node_id: u64,
        advertise_addr: impl Into<String>,
    ) -> Self {
        Self {
            data_dir: data_dir.into(),
            node_id,
            advertise_addr: advertise_addr.into(),
            watch_history: 100_000,
            peer_http: None,
            snapshot_count: DEFAULT_SNAPSHOT_COUNT,
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// This server cannot accept the request; the leader (id, address) when known.
    #[error("not the leader{}", match .leader { Some((id, addr)) => format!(" (leader is {id} at {addr})"), None => String::new() })]
    NotLeader { leader: Option<(u64, String)> },
    /// Raft cannot serve: shut down, fatal error, no quorum, or timed out.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The redb file or its contents failed.
    #[error("storage error: {0}")]
    Storage(String),
    /// A membership change was refused (unknown id, last voter, address clash).
    #[error("{0}")]
    Membership(String),
    /// More writes are waiting than the server queues: not now (the API's 429).
    #[error("{0}")]
    Overloaded(String),
}

impl From<db::DbError> for StoreError {
    fn from(e: db::DbError) -> Self {
        StoreError::Storage(e.to_string())
    }
}

/// A snapshot of raft's metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftStats {
    pub node_id: u64,
    pub term: u64,
    pub leader: Option<u64>,
    pub state: ServerState,
    pub last_log_index: Option<u64>,
    pub last_applied_index: Option<u64>,
    /// Last log index covered by the current snapshot.
    pub snapshot_index: Option<u64>,
    /// Last purged log index.
    pub purged_index: Option<u64>,
}

/// A server's place in the cluster, as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub id: u64,
    /// `host:port` of its API server (and `/raft` endpoints).
    pub address: String,
    /// `voter` or `learner`.
    pub role: String,
    pub leader: bool,
    /// The leader's own last log index; for the others the last index the leader knows
    /// they have (`None` before the first successful replication).
    pub last_log_index: Option<u64>,
}

/// The replicated store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: StoreConfig,
    path: PathBuf,
    log_path: PathBuf,
    /// The state machine's and the log's databases; `None` after shutdown, so the files can
    /// be reopened in this process.
    db: RwLock<Option<(Arc<Database>, Arc<Database>)>>,
    raft: Raft,
    log_store: LogStore,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("node_id", &self.inner.cfg.node_id)
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// The raft configuration every ketch server runs with, snapshotting every
/// `snapshot_count` applied entries.
pub fn raft_config(snapshot_count: u64) -> Config {
    Config {
        cluster_name: "ketch".into(),
        heartbeat_interval: HEARTBEAT_MS,
        election_timeout_min: 150,
        election_timeout_max: 300,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_count),
        // Entries kept behind a snapshot, so a follower a little behind catches up from
        // the log instead of a whole snapshot: 1000, or a fifth of a small snapshot count.
        max_in_snapshot_log_to_keep: (snapshot_count / 5).min(1000),
        // Chunks travel as binary (`network::encode_chunk`), well under the transport's
        // body limit.
        snapshot_max_chunk_size: 4 * 1024 * 1024,
        // Per chunk, and the last one includes installing the whole snapshot into redb on
        // the follower (seconds for a large state). openraft's 200 ms default made a
        // follower that needs a snapshot of more than a few MiB retry forever.
        install_snapshot_timeout: 60_000,
        ..Default::default()
    }
}

impl Store {
    /// Opens (creating if needed) `<data_dir>/raft.redb` and `<data_dir>/log.redb` and starts
    /// raft with heartbeat 50 ms, election timeout 150–300 ms.
    ///
    /// # Errors
    /// The data dir or database cannot be opened, or raft refuses to start.
    pub async fn open(cfg: StoreConfig, hub: Arc<WatchHub>) -> Result<Store, StoreError> {
        crate::files::create_private_dir(&cfg.data_dir)
            .map_err(|e| StoreError::Storage(format!("{}: {e}", cfg.data_dir.display())))?;
        let path = cfg.data_dir.join("raft.redb");
        let db = db::open_retrying(&path, db::open_state).await?;
        let log_path = cfg.data_dir.join(db::LOG_FILE);
        let sm_db = db.clone();
        let log_db = db::open_retrying(&log_path, move |p| db::open_log(p, &sm_db)).await?;
        let log_store = LogStore::new(log_db.clone(), db.clone())?;
        let sm = StateMachine::open(db.clone(), hub, cfg.data_dir.join("snapshots"))?;
        sm.spawn_flusher();
        let config = raft_config(cfg.snapshot_count)
            .validate()
            .map_err(|e| StoreError::Unavailable(format!("invalid raft config: {e}")))?;
        let raft = Raft::new(
            cfg.node_id,
            Arc::new(config),
            NetworkFactory::new(cfg.peer_http.clone()),
            log_store.clone(),
            sm,
        )
        .await
        .map_err(|e| StoreError::Unavailable(format!("raft failed to start: {e}")))?;
        Ok(Store {
            inner: Arc::new(Inner {
                cfg,
                path,
                log_path,
                db: RwLock::new(Some((db, log_db))),
                raft,
                log_store,
            }),
        })
    }

    /// If this server has never been part of a cluster (no vote, no log), initialize a
    /// one-voter cluster of itself. Idempotent. Then wait (up to 10 s) until it is leader.
    ///
    /// # Errors
    /// Initialization failed, or no leadership within the bound.
    pub async fn bootstrap_single(&self) -> Result<(), StoreError> {
        let raft = &self.inner.raft;
        if self.inner.log_store.is_pristine()? {
            let members = BTreeMap::from([(
                self.inner.cfg.node_id,
                BasicNode::new(self.inner.cfg.advertise_addr.clone()),
            )]);
            match raft.initialize(members).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(StoreError::Unavailable(format!("initialize: {e}"))),
            }
        }
        let id = self.inner.cfg.node_id;
        raft.wait(Some(CLUSTER_WAIT))
            .metrics(
                |m| m.current_leader == Some(id) && m.state == ServerState::Leader,
                "this server becomes leader",
            )
            .await
            .map_err(|e| StoreError::Unavailable(format!("no leadership: {e}")))?;
        Ok(())
    }

    /// True when this server has never been part of a cluster (no vote, no log).
    ///
    /// # Errors
    /// The database failed.
    pub fn is_pristine(&self) -> Result<bool, StoreError> {
        Ok(self.inner.log_store.is_pristine()?)
    }

    /// After a restart of a one-voter cluster of this server: wait until it has elected
    /// itself (an error after 10 s, as on first start), as before any other server existed.
    /// With other voters it returns at once: they elect a leader only once this server
    /// serves its `/raft` endpoints, and may still be down themselves (a whole-cluster
    /// restart).
    ///
    /// Returns whether this server is the cluster's only voter.
    ///
    /// # Errors
    /// A one-voter cluster of this server did not elect it within the bound.
    pub async fn resume_after_restart(&self) -> Result<bool, StoreError> {
        let id = self.inner.cfg.node_id;
        let only_me = {
            let m = self.inner.raft.metrics();
            let m = m.borrow();
            m.membership_config.voter_ids().eq([id])
        };
        if only_me {
            self.bootstrap_single().await?;
        }
        Ok(only_me)
    }

    /// The current leader (id, address) as this server knows it.
    pub fn leader(&self) -> Option<(u64, String)> {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        let id = m.current_leader?;
        let addr = m.membership_config.membership().get_node(&id)?.addr.clone();
        Some((id, addr))
    }

    /// True when this server is the leader right now (not a confirmation: see
    /// [`Store::read_barrier`]).
    /// Whether this server leads and a quorum acknowledged it within `within` (openraft's
    /// `millis_since_quorum_ack`), read from raft's metrics: no message is sent. A lone voter
    /// is its own quorum.
    pub fn leads_with_recent_quorum(&self, within: std::time::Duration) -> bool {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        if m.state != ServerState::Leader || m.current_leader != Some(self.inner.cfg.node_id) {
            return false;
        }
        let alone = m.membership_config.membership().voter_ids().count() == 1;
        alone
            || m.millis_since_quorum_ack
                .is_some_and(|ms| u128::from(ms) <= within.as_millis())
    }

    pub fn is_leader(&self) -> bool {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.inner.cfg.node_id)
    }

    /// Wait up to `within` until this server's own log shows it as a voter and it knows a
    /// leader (after a join: the leader has committed the change before this server's
    /// metrics report it).
    ///
    /// # Errors
    /// Not a voter within the bound.
    pub async fn wait_until_voter(&self, within: Duration) -> Result<(), StoreError> {
        let id = self.inner.cfg.node_id;
        self.inner
            .raft
            .wait(Some(within))
            .metrics(
                |m| m.current_leader.is_some() && m.membership_config.voter_ids().any(|v| v == id),
                "this server is a voter",
            )
            .await
            .map(|_| ())
            .map_err(|e| StoreError::Unavailable(format!("not a voter yet: {e}")))
    }

    /// Wait up to `within` for a leader that is confirmed: another server this one follows,
    /// or this server after a read barrier passed. A restarted leader restores its old
    /// term's leadership from its vote and believes it until it hears of the newer term, so
    /// its own view alone is not enough. Returns whether one was confirmed.
    pub async fn wait_for_confirmed_leader(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            if self.is_leader() {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if let Ok(Ok(())) = tokio::time::timeout(left, self.read_barrier()).await {
                    return true;
                }
            } else if self.leader().is_some() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// The leader, waiting up to `within` for one to be known (elections take ~0.5 s).
    pub async fn wait_for_leader(&self, within: Duration) -> Option<(u64, String)> {
        let found = self
            .inner
            .raft
            .wait(Some(within))
            .metrics(|m| m.current_leader.is_some(), "a leader is known")
            .await;
        found.ok().and_then(|_| self.leader())
    }

    /// Leader only: add server `id` at `address` as a learner, wait (up to 2 minutes) until it
    /// has caught up — by log replication, or a snapshot install when the log it needs is
    /// purged — then make it a voter (openraft's joint consensus: joint config, then the new
    /// uniform one). Idempotent for a server that is already a voter at that address.
    ///
    /// # Errors
    /// Not the leader; the id is a member at another address; the learner did not catch up;
    /// no quorum for the change.
    pub async fn add_member(&self, id: u64, address: &str) -> Result<(), StoreError> {
        let raft = &self.inner.raft;
        let (known, is_voter) = {
            let m = raft.metrics();
            let m = m.borrow();
            let membership = m.membership_config.membership();
            (
                membership.get_node(&id).map(|n| n.addr.clone()),
                membership.voter_ids().any(|v| v == id),
            )
        };
        match known {
            Some(addr) if addr != address => {
                return Err(StoreError::Membership(format!(
                    "server {id} is already a member at {addr}; remove it first (`ketch cluster remove {id}`)"
                )));
            }
            Some(_) if is_voter => return Ok(()),
            _ => {}
        }
        // Not `add_learner`'s own blocking wait: it counts a learner within
        // `replication_lag_threshold` (5000) entries as caught up, even one never reached.
        let added = tokio::time::timeout(
            CLUSTER_WAIT,
            raft.add_learner(id, BasicNode::new(address), false),
        )
        .await
        .map_err(|_| StoreError::Unavailable("timed out adding the learner".into()))?;
        let target = match added {
            Ok(resp) => resp.log_id.index,
            Err(e) => return membership_result(Err(e)),
        };
        // Caught up: it holds the entry that made it a learner (by log replication, or a
        // snapshot install when the entries it needs are purged). Promote only then, so a
        // joiner that cannot be reached never becomes a voter that costs quorum.
        let caught_up = raft
            .wait(Some(JOIN_CATCH_UP))
            .metrics(
                |m| match &m.replication {
                    None => true, // no longer the leader: stop waiting, fail below
                    Some(r) => r
                        .get(&id)
                        .cloned()
                        .flatten()
                        .is_some_and(|l| l.index >= target),
                },
                "the new learner catches up",
            )
            .await
            .is_ok_and(|m| m.replication.is_some());
        if !caught_up {
            return Err(StoreError::Unavailable(format!(
                "server {id} at {address} did not catch up within {}s (or this server lost leadership); it stays a learner: retry the join, or remove it with `ketch cluster remove {id}`",
                JOIN_CATCH_UP.as_secs()
            )));
        }
        let changed = tokio::time::timeout(
            CLUSTER_WAIT,
            raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false),
        )
        .await
        .map_err(|_| StoreError::Unavailable("timed out changing the membership".into()))?;
        membership_result(changed)
    }

    /// Leader only: remove server `id` (a voter through joint consensus, or a learner).
    ///
    /// # Errors
    /// Not the leader; unknown id; it is the last voter; no quorum for the change.
    pub async fn remove_member(&self, id: u64) -> Result<(), StoreError> {
        let raft = &self.inner.raft;
        let (known, voters) = {
            let m = raft.metrics();
            let m = m.borrow();
            let membership = m.membership_config.membership();
            (
                membership.get_node(&id).is_some(),
                membership.voter_ids().collect::<BTreeSet<_>>(),
            )
        };
        if !known {
            return Err(StoreError::Membership(format!(
                "server {id} is not a member of this cluster"
            )));
        }
        let change = if voters.contains(&id) {
            if voters.len() == 1 {
                return Err(StoreError::Membership(format!(
                    "server {id} is the only voter; a cluster cannot remove its last voter"
                )));
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        let changed = tokio::time::timeout(CLUSTER_WAIT, raft.change_membership(change, false))
            .await
            .map_err(|_| StoreError::Unavailable("timed out changing the membership".into()))?;
        membership_result(changed)
    }

    /// Every member with its role and replication progress, as this server sees them (the
    /// progress only on the leader).
    pub fn members(&self) -> Vec<Member> {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                address: node.addr.clone(),
                role: if voters.contains(id) {
                    "voter"
                } else {
                    "learner"
                }
                .into(),
                leader: m.current_leader == Some(*id),
                last_log_index: if *id == m.id {
                    m.last_log_index
                } else {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(id).cloned().flatten())
                        .map(|l| l.index)
                },
            })
            .collect()
    }

    /// Changes of raft's metrics (state, leader, membership), for following leadership.
    pub fn metrics(
        &self,
    ) -> tokio::sync::watch::Receiver<openraft::RaftMetrics<NodeId, BasicNode>> {
        self.inner.raft.metrics()
    }

    /// One raft proposal = one log entry for the whole batch.
    ///
    /// # Errors
    /// Not the leader, no quorum within 10 s, raft shut down.
    pub async fn propose(&self, batch: command::Batch) -> Result<command::BatchResult, StoreError> {
        let res = tokio::time::timeout(CLUSTER_WAIT, self.inner.raft.client_write(batch))
            .await
            .map_err(|_| {
                StoreError::Unavailable("timed out waiting for the write to commit".into())
            })?;
        match res {
            Ok(resp) => Ok(resp.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(not_leader(f)),
            Err(RaftError::APIError(e @ ClientWriteError::ChangeMembershipError(_))) => {
                Err(StoreError::Unavailable(e.to_string()))
            }
            Err(RaftError::Fatal(f)) => Err(StoreError::Unavailable(f.to_string())),
        }
    }

    /// Linearizable read barrier: returns once this server is a confirmed leader and has
    /// applied everything committed before the call.
    ///
    /// openraft 0.9 alone is not enough here: `ensure_linearizable` waits for
    /// max(committed, the first entry of the leader's term), and a leader restarted after a
    /// crash resumes its term from its vote while the commit index it saved (not fsynced,
    /// see `log_store`) may be older than writes it acknowledged before the crash; the
    /// term's first entry is older still. The fault tests caught such a leader answering
    /// NotFound for an acknowledged create. So the barrier also waits until everything in
    /// this leader's log when the read began is applied: a leader's log holds every
    /// committed entry, and a leader that stays leader commits its whole log.
    ///
    /// # Errors
    /// Not the leader (or no longer, before its log was applied), no quorum, raft shut down.
    pub async fn read_barrier(&self) -> Result<(), StoreError> {
        let deadline = tokio::time::Instant::now() + CLUSTER_WAIT;
        let last_log = self.inner.raft.metrics().borrow().last_log_index;
        // One heartbeat round without a quorum is no partition: on a loaded machine a
        // follower's answer can miss the round. Ask again for a few election timeouts before
        // refusing, so a client sees 503 only when the quorum is really gone.
        let quorum_deadline = tokio::time::Instant::now() + QUORUM_RETRY;
        loop {
            let res = tokio::time::timeout_at(deadline, self.inner.raft.ensure_linearizable())
                .await
                .map_err(|_| StoreError::Unavailable("timed out confirming leadership".into()))?;
            match res {
                Ok(_) => break,
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                    return Err(not_leader(f));
                }
                Err(RaftError::APIError(e @ CheckIsLeaderError::QuorumNotEnough(_))) => {
                    if tokio::time::Instant::now() >= quorum_deadline.min(deadline) {
                        return Err(StoreError::Unavailable(e.to_string()));
                    }
                    tokio::time::sleep(HEARTBEAT_INTERVAL).await;
                }
                Err(RaftError::Fatal(f)) => return Err(StoreError::Unavailable(f.to_string())),
            }
        }
        let Some(last_log) = last_log else {
            return Ok(());
        };
        let me = self.inner.cfg.node_id;
        let applied = |m: &openraft::RaftMetrics<NodeId, BasicNode>| {
            m.last_applied.is_some_and(|l| l.index >= last_log)
        };
        if applied(&self.inner.raft.metrics().borrow()) {
            return Ok(());
        }
        let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
        let m = self
            .inner
            .raft
            .wait(Some(wait))
            .metrics(
                |m| applied(m) || m.state != ServerState::Leader || m.current_leader != Some(me),
                "read barrier: the leader's log applied",
            )
            .await
            .map_err(|_| {
                StoreError::Unavailable("timed out applying the leader's log for a read".into())
            })?;
        if applied(&m) {
            Ok(())
        } else {
            Err(StoreError::Unavailable(
                "this server stopped being the leader during the read; retry".into(),
            ))
        }
    }

    fn db(&self) -> Result<Arc<Database>, StoreError> {
        self.inner
            .db
            .read()
            .map_err(|_| StoreError::Storage("database lock poisoned".into()))?
            .as_ref()
            .map(|(db, _)| db.clone())
            .ok_or_else(|| StoreError::Unavailable("the store is shut down".into()))
    }

    /// One object by key, as this server has applied it.
    ///
    /// # Errors
    /// The database failed or the store is shut down.
    pub fn get(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        self.get_as(key)
    }

    /// As [`Store::get`], decoded straight into `T` (a view of the few fields a caller reads
    /// costs less than a whole JSON tree).
    ///
    /// # Errors
    /// As [`Store::get`].
    pub fn get_as<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        Ok(state_machine::read_object(&*self.db()?, key)?)
    }

    /// All objects whose key starts with `prefix`, plus the revision they were read at (same
    /// read transaction).
    ///
    /// # Errors
    /// The database failed or the store is shut down.
    pub fn list(&self, prefix: &str) -> Result<(u64, Vec<serde_json::Value>), StoreError> {
        Ok(state_machine::read_prefix(&*self.db()?, prefix)?)
    }

    /// As [`Store::list`], with each object as its stored JSON bytes.
    ///
    /// # Errors
    /// The database failed or the store is shut down.
    pub fn list_raw(&self, prefix: &str) -> Result<(u64, Vec<Vec<u8>>), StoreError> {
        Ok(state_machine::read_prefix_raw(&*self.db()?, prefix)?)
    }

    /// Bytes the stored objects take (see [`state_machine::read_stored_bytes`]): one walk of
    /// the objects table's pages, so callers run it on a blocking thread, now and then.
    ///
    /// # Errors
    /// The database failed or the store is shut down.
    pub fn stored_bytes(&self) -> Result<u64, StoreError> {
        Ok(state_machine::read_stored_bytes(&*self.db()?)?)
    }

    /// Current applied revision.
    ///
    /// # Errors
    /// The database failed or the store is shut down.
    pub fn revision(&self) -> Result<u64, StoreError> {
        Ok(state_machine::read_revision(&*self.db()?)?)
    }

    pub fn raft(&self) -> &openraft::Raft<TypeConfig> {
        &self.inner.raft
    }

    pub fn node_id(&self) -> u64 {
        self.inner.cfg.node_id
    }

    pub fn stats(&self) -> RaftStats {
        let m = self.inner.raft.metrics().borrow().clone();
        RaftStats {
            node_id: m.id,
            term: m.current_term,
            leader: m.current_leader,
            state: m.state,
            last_log_index: m.last_log_index,
            last_applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
        }
    }

    /// Size of the store's files, `raft.redb` and `log.redb` (a file that cannot be read
    /// counts 0).
    pub fn db_size_bytes(&self) -> u64 {
        [&self.inner.path, &self.inner.log_path]
            .iter()
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .sum()
    }

    /// Stop raft and make every applied change durable; the database files are released
    /// once this `Store` and raft's tasks are dropped. Idempotent.
    ///
    /// # Errors
    /// Raft's task failed while stopping, or the final flush failed.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        let Some((db, log_db)) = self
            .inner
            .db
            .write()
            .map_err(|_| StoreError::Storage("database lock poisoned".into()))?
            .take()
        else {
            return Ok(());
        };
        let stopped = self.inner.raft.shutdown().await;
        db::blocking(move || {
            db::flush(&db)?;
            db::flush(&log_db)
        })
        .await?;
        stopped.map_err(|e| StoreError::Unavailable(format!("raft stopped with an error: {e}")))
    }
}

/// How long a joining server may take to catch up before the join fails.
const JOIN_CATCH_UP: Duration = Duration::from_secs(120);

fn membership_result(
    res: Result<
        openraft::raft::ClientWriteResponse<TypeConfig>,
        RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
    >,
) -> Result<(), StoreError> {
    match res {
        Ok(_) => Ok(()),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(not_leader(f)),
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
            Err(StoreError::Membership(e.to_string()))
        }
        Err(RaftError::Fatal(f)) => Err(StoreError::Unavailable(f.to_string())),
    }
}

fn not_leader(f: openraft::error::ForwardToLeader<NodeId, BasicNode>) -> StoreError {
    StoreError::NotLeader {
        leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)),
    }
}
