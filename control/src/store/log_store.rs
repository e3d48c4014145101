//! The raft log, persisted in the server's redb file.
//!
//! Every mutation of the log (append, truncate, purge) and the vote is a durable
//! (`Durability::Immediate`) redb commit made on the blocking thread pool; `append` reports
//! completion through [`LogFlushed::log_io_completed`] only after its commit returned.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader, StorageIOError};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::db::{DbError, blocking, get_json, put_json};
use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// Log entries by index, each serialized with serde_json.
pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Raft metadata: `vote`, `committed`, `last_purged` (serde_json).
pub(crate) const RAFT_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

/// The raft log storage; cheap to clone (it is also its own log reader).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl LogStore {
    /// Wrap the shared database; the tables must already exist (see `db::open`).
    pub fn new(db: Arc<Database>) -> Self {
        Self { db }
    }

    /// Whether this server has ever taken part in a cluster: a vote or any log.
    pub(crate) fn is_pristine(&self) -> Result<bool, DbError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(RAFT_META)?;
        let log = txn.open_table(LOG)?;
        Ok(meta.get(VOTE)?.is_none() && meta.get(LAST_PURGED)?.is_none() && log.first()?.is_none())
    }

    /// Run a durable write transaction on the blocking pool.
    async fn write<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&redb::WriteTransaction) -> Result<T, DbError> + Send + 'static,
    {
        let db = self.db.clone();
        blocking(move || {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            let out = f(&txn)?;
            txn.commit()?;
            Ok(out)
        })
        .await
    }
}

/// Stored bytes of log entries one replication request carries (at least one entry,
/// however big). openraft 0.9 gives an AppendEntries call one heartbeat interval (50 ms)
/// to travel, be decoded and be made durable on the follower; a call that cannot finish in
/// time is retried whole, forever. Its default of up to 300 entries per call — each a
/// group-commit batch of up to [`crate::server::batcher::MAX_BATCH_BYTES`] — stalled
/// replication of large objects for good (the snapshot fault test, under load).
pub const REPLICATION_BYTES: usize = 1 << 20;

/// Entries in `range`, stopping after the first one that brings the total stored size to
/// `budget` bytes (all of them with `None`).
fn read_entries(
    db: &Database,
    range: (Bound<u64>, Bound<u64>),
    budget: Option<usize>,
) -> Result<Vec<Entry>, DbError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(LOG)?;
    let mut out = Vec::new();
    let mut bytes = 0;
    for item in table.range::<u64>(range)? {
        let (_, v) = item?;
        bytes += v.value().len();
        out.push(serde_json::from_slice::<Entry>(v.value())?);
        if budget.is_some_and(|b| bytes >= b) {
            break;
        }
    }
    Ok(out)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        let db = self.db.clone();
        blocking(move || read_entries(&db, bounds, None))
            .await
            .map_err(|e| StorageIOError::read_logs(&e).into())
    }

    /// What replication sends in one call: at most [`REPLICATION_BYTES`] (or one entry).
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let db = self.db.clone();
        let bounds = (Bound::Included(start), Bound::Excluded(end));
        blocking(move || read_entries(&db, bounds, Some(REPLICATION_BYTES)))
            .await
            .map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_read()?;
            let meta = txn.open_table(RAFT_META)?;
            let last_purged: Option<LogId> = get_json(&meta, LAST_PURGED)?;
            let log = txn.open_table(LOG)?;
            let last = match log.last()? {
                Some((_, v)) => Some(serde_json::from_slice::<Entry>(v.value())?.log_id),
                None => last_purged,
            };
            Ok(LogState {
                last_purged_log_id: last_purged,
                last_log_id: last,
            })
        })
        .await
        .map_err(|e| StorageIOError::read_logs(&e).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.write(move |txn| {
            let mut meta = txn.open_table(RAFT_META)?;
            put_json(&mut meta, VOTE, &vote)
        })
        .await
        .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_read()?;
            get_json(&txn.open_table(RAFT_META)?, VOTE)
        })
        .await
        .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not required for safety (openraft re-derives it); saved so a restart re-applies the
        // committed tail at once. Made durable by the next durable commit.
        let db = self.db.clone();
        blocking(move || {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::None)?;
            {
                let mut meta = txn.open_table(RAFT_META)?;
                put_json(&mut meta, COMMITTED, &committed)?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_read()?;
            let c: Option<Option<LogId>> = get_json(&txn.open_table(RAFT_META)?, COMMITTED)?;
            Ok(c.flatten())
        })
        .await
        .map_err(|e| StorageIOError::read(&e).into())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded: Result<Vec<(u64, Vec<u8>)>, serde_json::Error> = entries
            .into_iter()
            .map(|e| Ok((e.log_id.index, serde_json::to_vec(&e)?)))
            .collect();
        let res = match encoded {
            Ok(encoded) => {
                self.write(move |txn| {
                    let mut log = txn.open_table(LOG)?;
                    for (index, bytes) in &encoded {
                        log.insert(*index, bytes.as_slice())?;
                    }
                    Ok(())
                })
                .await
            }
            Err(e) => Err(e.into()),
        };
        match res {
            Ok(()) => {
                // The commit above was durable: the entries are on disk.
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.write(move |txn| {
            let mut log = txn.open_table(LOG)?;
            log.retain_in(log_id.index.., |_, _| false)?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.write(move |txn| {
            let mut meta = txn.open_table(RAFT_META)?;
            put_json(&mut meta, LAST_PURGED, &log_id)?;
            let mut log = txn.open_table(LOG)?;
            log.retain_in(..=log_id.index, |_, _| false)?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}
