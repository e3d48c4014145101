//! The raft log, persisted in its own redb file (`<data_dir>/log.redb`).
//!
//! One writer thread makes every log mutation (append, truncate, purge) and the vote durable,
//! in the order they were issued, as `Durability::Immediate` redb commits, and folds what is
//! queued when it starts a commit (up to [`MAX_OPS_PER_COMMIT`] ops) into that commit. `append` returns once its entries are
//! in memory and queued, and openraft learns they are durable through
//! [`LogFlushed::log_io_completed`], called after their commit returned — openraft's storage
//! contract. (openraft 0.9's core still waits for that callback before it goes on, so a
//! commit holds one append, perhaps with a saved `committed`; 0.10 pipelines appends, and
//! this writer is ready for it.)
//!
//! The log has a file of its own so that its fsyncs never hold the state machine's redb
//! writer: with one shared file every apply waited for the log commit in progress.
//!
//! Appended entries stay in memory (decoded) until raft reads them to apply them, so the
//! state machine gets them without reading and decoding them back from disk. Memory holds a
//! suffix of the log: the newest entries, the durable ones bounded by [`CACHE_BYTES`].

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader, StorageIOError};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use super::db::{DbError, blocking, get_json, put_json};
use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// Log entries by index, each serialized with serde_json.
pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Raft metadata: `vote`, `committed`, `last_purged` (serde_json).
pub(crate) const RAFT_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

/// Encoded bytes of durable entries kept in memory beyond which the oldest are dropped
/// (read back from disk if ever needed); decoded, they take a few times that. Entries not
/// yet durable are always kept: they cannot be read from disk yet. Raft applies what it
/// appended within milliseconds, so memory holds a batch or two; this bounds a leader that
/// appends without a quorum to commit.
const CACHE_BYTES: usize = 16 << 20;

/// Queued operations one commit of the writer thread takes at most.
const MAX_OPS_PER_COMMIT: usize = 256;

/// The raft log storage; cheap to clone (it is also its own log reader).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    cache: Arc<Mutex<Cache>>,
    ops: mpsc::Sender<Op>,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

/// Appended entries in memory: a contiguous suffix of the log (or nothing).
#[derive(Default)]
struct Cache {
    entries: BTreeMap<u64, Cached>,
    /// Encoded size of `entries`.
    bytes: usize,
    /// The number the next append gets; appends are numbered in the order they are queued.
    next_seq: u64,
    /// Every append numbered up to this one is durable.
    durable_seq: u64,
}

struct Cached {
    entry: Entry,
    /// Its encoded size.
    len: usize,
    /// The append that wrote it.
    seq: u64,
}

impl Cache {
    /// Index of the first entry in memory: everything before it is on disk.
    fn first_index(&self) -> Option<u64> {
        self.entries.first_key_value().map(|(k, _)| *k)
    }

    fn last_log_id(&self) -> Option<LogId> {
        self.entries.last_key_value().map(|(_, c)| c.entry.log_id)
    }

    /// Adds the entries of the append numbered `seq` (with their encoded sizes).
    fn insert(&mut self, seq: u64, entries: impl IntoIterator<Item = (Entry, usize)>) {
        for (entry, len) in entries {
            self.bytes += len;
            let index = entry.log_id.index;
            if let Some(old) = self.entries.insert(index, Cached { entry, len, seq }) {
                self.bytes -= old.len;
            }
        }
    }

    /// Drops the entries from `index` on (a truncation).
    fn truncate(&mut self, index: u64) {
        let removed = self.entries.split_off(&index);
        self.bytes -= removed.values().map(|c| c.len).sum::<usize>();
    }

    /// Drops the entries up to `index`, inclusive (a purge).
    fn purge(&mut self, index: u64) {
        let kept = self.entries.split_off(&index.saturating_add(1));
        let removed = std::mem::replace(&mut self.entries, kept);
        self.bytes -= removed.values().map(|c| c.len).sum::<usize>();
    }

    /// After a commit: appends up to `seq` are durable; then the oldest durable entries go
    /// while memory holds more than `limit` encoded bytes.
    fn mark_durable(&mut self, seq: u64, limit: usize) {
        self.durable_seq = self.durable_seq.max(seq);
        let mut over = self.bytes.saturating_sub(limit);
        self.pop_front_while(|c| {
            let evict = over > 0;
            over = over.saturating_sub(c.len);
            evict
        });
    }

    /// An apply read of `start..end`: durable entries leave memory, and with them every
    /// older durable one (raft reads each entry once, in order, to apply it); entries not
    /// durable yet are copied and stay.
    fn take(&mut self, start: u64, end: u64) -> Vec<Entry> {
        let mut out: Vec<Entry> = self
            .pop_front_while(|c| c.entry.log_id.index < end)
            .into_iter()
            .filter(|c| c.entry.log_id.index >= start)
            .map(|c| c.entry)
            .collect();
        if let Some(first) = self.first_index() {
            let rest = start.max(first)..end;
            if !rest.is_empty() {
                out.extend(self.entries.range(rest).map(|(_, c)| c.entry.clone()));
            }
        }
        out
    }

    /// A replication read: copies of `start..end` up to the first entry that brings their
    /// encoded size to `budget`.
    fn copy(&self, start: u64, end: u64, budget: usize) -> Vec<Entry> {
        let mut out = Vec::new();
        if start >= end {
            return out;
        }
        let mut bytes = 0;
        for c in self.entries.range(start..end).map(|(_, c)| c) {
            out.push(c.entry.clone());
            bytes += c.len;
            if bytes >= budget {
                break;
            }
        }
        out
    }

    /// Removes the oldest entries while `evict(first)` says so and they are durable, so
    /// memory stays a suffix of the log and what it dropped is on disk.
    fn pop_front_while(&mut self, mut evict: impl FnMut(&Cached) -> bool) -> Vec<Cached> {
        let mut out = Vec::new();
        let durable_seq = self.durable_seq;
        while let Some(first) = self.entries.first_entry() {
            if !(first.get().seq <= durable_seq && evict(first.get())) {
                break;
            }
            let c = first.remove();
            self.bytes -= c.len;
            out.push(c);
        }
        out
    }
}

/// A log mutation for the writer thread.
enum Op {
    Append {
        seq: u64,
        entries: Vec<(u64, Vec<u8>)>,
        callback: LogFlushed<TypeConfig>,
    },
    /// Remove entries from this index on.
    Truncate(u64, Done),
    Purge(LogId, Done),
    Vote(Vote, Done),
    /// Not required durable (see `save_committed`): written with the next commit.
    Committed(Option<LogId>),
}

type Done = oneshot::Sender<Result<(), String>>;

impl LogStore {
    /// Wrap the log's database (tables already created, see `db::open_log`) and start its
    /// writer thread, which runs until the last clone is dropped. `state_machine` is the
    /// state machine's database, made durable before any purge of the log.
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn new(db: Arc<Database>, state_machine: Arc<Database>) -> Result<Self, DbError> {
        let cache = Arc::new(Mutex::new(Cache::default()));
        let (ops, rx) = mpsc::channel();
        let writer = Writer {
            db: db.clone(),
            state_machine,
            cache: cache.clone(),
        };
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer.run(&rx))
            .map_err(|e| DbError::Other(format!("starting the raft log writer: {e}")))?;
        Ok(Self { db, cache, ops })
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        lock(&self.cache)
    }

    /// Whether this server has ever taken part in a cluster: a vote or any log.
    pub(crate) fn is_pristine(&self) -> Result<bool, DbError> {
        if !self.cache().entries.is_empty() {
            return Ok(false);
        }
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(RAFT_META)?;
        let log = txn.open_table(LOG)?;
        Ok(meta.get(VOTE)?.is_none() && meta.get(LAST_PURGED)?.is_none() && log.first()?.is_none())
    }

    /// Queue `op` built around `done` and wait until the writer made it durable.
    async fn submit(&self, op: impl FnOnce(Done) -> Op) -> Result<(), DbError> {
        let (tx, rx) = oneshot::channel();
        self.ops.send(op(tx)).map_err(|_| writer_gone())?;
        rx.await.map_err(|_| writer_gone())?.map_err(DbError::Other)
    }

    /// Entries in `range`: from memory where the log still has them there, the rest from
    /// disk.
    ///
    /// With `budget` (a replication read, which copies), stop after the first entry that
    /// brings the total encoded size to it; a range that begins on disk is read from disk
    /// only (replication asks again for the rest). Without, durable entries read from memory
    /// leave it, and with them every older durable one: raft reads each entry once, in order,
    /// to apply it.
    async fn read(
        &self,
        range: (Bound<u64>, Bound<u64>),
        budget: Option<usize>,
    ) -> Result<Vec<Entry>, DbError> {
        let start = match range.0 {
            Bound::Included(s) => s,
            Bound::Excluded(s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.1 {
            Bound::Included(e) => e.saturating_add(1),
            Bound::Excluded(e) => e,
            Bound::Unbounded => u64::MAX,
        };
        if start >= end {
            return Ok(Vec::new());
        }
        let (memory_start, from_memory) = {
            let mut cache = self.cache();
            let memory_start = cache.first_index().unwrap_or(u64::MAX);
            match budget {
                // Replication asks again for what follows the disk's part.
                Some(_) if start < memory_start => (memory_start, Vec::new()),
                Some(budget) => return Ok(cache.copy(start, end, budget)),
                None => (memory_start, cache.take(start, end)),
            }
        };
        if start >= memory_start {
            return Ok(from_memory);
        }
        // Everything before memory's first entry is on disk (entries leave memory only once
        // durable), and precedes what memory gave.
        let db = self.db.clone();
        let disk = start..end.min(memory_start);
        let mut out = blocking(move || read_entries(&db, disk, budget)).await?;
        out.extend(from_memory);
        Ok(out)
    }
}

fn lock(cache: &Mutex<Cache>) -> MutexGuard<'_, Cache> {
    // A panic while holding the lock leaves the map consistent (no invariant spans an
    // unwinding point), so a poisoned lock is still usable.
    cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn writer_gone() -> DbError {
    // The thread ends only with the last LogStore, or by a panic.
    DbError::Other(
        "the raft log writer (log.redb) has stopped (a panic: see the server's log); \
         restart the server"
            .into(),
    )
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
    range: std::ops::Range<u64>,
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

/// The thread that writes the log: one commit per round, in queue order.
struct Writer {
    db: Arc<Database>,
    state_machine: Arc<Database>,
    cache: Arc<Mutex<Cache>>,
}

impl Writer {
    fn run(&self, rx: &mpsc::Receiver<Op>) {
        // After a failed commit every later op fails too: memory already reflects the ops
        // that failed (a truncation, a purge), and a later append marked durable could let
        // memory drop entries that never reached the disk. openraft stops on the first
        // storage error anyway.
        let mut failed: Option<String> = None;
        // Ends when every LogStore clone (every sender) is gone.
        while let Ok(first) = rx.recv() {
            let mut ops = vec![first];
            while ops.len() < MAX_OPS_PER_COMMIT {
                match rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
            let res = match &failed {
                Some(e) => Err(format!(
                    "log.redb: an earlier write failed ({e}); the log takes no writes until \
                     the server restarts"
                )),
                None => self.commit(&ops).map_err(|e| e.to_string()),
            };
            if let Err(e) = &res
                && failed.is_none()
            {
                tracing::error!(error = %e, "raft log write failed; the log refuses every later write");
                failed = Some(e.clone());
            }
            if res.is_ok() {
                let seq = ops.iter().fold(0, |max, op| match op {
                    Op::Append { seq, .. } => max.max(*seq),
                    _ => max,
                });
                lock(&self.cache).mark_durable(seq, CACHE_BYTES);
            }
            for op in ops {
                match op {
                    Op::Append { callback, .. } => {
                        callback.log_io_completed(res.clone().map_err(std::io::Error::other));
                    }
                    Op::Truncate(_, done) | Op::Purge(_, done) | Op::Vote(_, done) => {
                        // The caller may have given up waiting; nothing to tell then.
                        let _ = done.send(res.clone());
                    }
                    Op::Committed(_) => {}
                }
            }
        }
    }

    /// One redb transaction for `ops`, in order; durable unless it only saves `committed`.
    fn commit(&self, ops: &[Op]) -> Result<(), DbError> {
        if ops.iter().any(|op| matches!(op, Op::Purge(..))) {
            // After a crash the state machine resumes from its last durable commit and
            // re-applies the log from there: the entries a purge removes must be applied
            // durably first. (A purge follows a snapshot, whose metadata commit is durable
            // and made after it applied them; this keeps the rule local.)
            super::db::flush(&self.state_machine).map_err(|e| {
                DbError::Other(format!(
                    "raft.redb: making the state machine durable before purging the log: {e}"
                ))
            })?;
        }
        let mut txn = self.db.begin_write()?;
        let durable = ops.iter().any(|op| !matches!(op, Op::Committed(_)));
        txn.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })?;
        {
            let mut log = txn.open_table(LOG)?;
            let mut meta = txn.open_table(RAFT_META)?;
            for op in ops {
                match op {
                    Op::Append { entries, .. } => {
                        for (index, bytes) in entries {
                            log.insert(*index, bytes.as_slice())?;
                        }
                    }
                    Op::Truncate(from, _) => {
                        log.retain_in(*from.., |_, _| false)?;
                    }
                    Op::Purge(log_id, _) => {
                        put_json(&mut meta, LAST_PURGED, log_id)?;
                        log.retain_in(..=log_id.index, |_, _| false)?;
                    }
                    Op::Vote(vote, _) => put_json(&mut meta, VOTE, vote)?,
                    Op::Committed(committed) => put_json(&mut meta, COMMITTED, committed)?,
                }
            }
        }
        txn.commit()?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        self.read(bounds, None)
            .await
            .map_err(|e| StorageIOError::read_logs(&e).into())
    }

    /// What replication sends in one call: at most [`REPLICATION_BYTES`] (or one entry).
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let bounds = (Bound::Included(start), Bound::Excluded(end));
        self.read(bounds, Some(REPLICATION_BYTES))
            .await
            .map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let in_memory = self.cache().last_log_id();
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_read()?;
            let meta = txn.open_table(RAFT_META)?;
            let last_purged: Option<LogId> = get_json(&meta, LAST_PURGED)?;
            let log = txn.open_table(LOG)?;
            // Memory holds the newest entries, some perhaps not on disk yet.
            let last = match (in_memory, log.last()?) {
                (Some(id), _) => Some(id),
                (None, Some((_, v))) => Some(serde_json::from_slice::<Entry>(v.value())?.log_id),
                (None, None) => last_purged,
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
        self.submit(|done| Op::Vote(vote, done))
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
        self.ops
            .send(Op::Committed(committed))
            .map_err(|_| StorageIOError::write(&writer_gone()).into())
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
        let entries: Vec<Entry> = entries.into_iter().collect();
        let encoded: Result<Vec<(u64, Vec<u8>)>, serde_json::Error> = entries
            .iter()
            .map(|e| Ok((e.log_id.index, serde_json::to_vec(e)?)))
            .collect();
        let encoded = match encoded {
            Ok(encoded) => encoded,
            Err(e) => {
                let e = DbError::from(e);
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                return Err(StorageIOError::write_logs(&e).into());
            }
        };
        let seq = {
            let mut cache = self.cache();
            cache.next_seq += 1;
            let seq = cache.next_seq;
            cache.insert(
                seq,
                entries
                    .into_iter()
                    .zip(encoded.iter().map(|(_, b)| b.len())),
            );
            seq
        };
        let op = Op::Append {
            seq,
            entries: encoded,
            callback,
        };
        if let Err(mpsc::SendError(op)) = self.ops.send(op) {
            let e = writer_gone();
            if let Op::Append { callback, .. } = op {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
            }
            return Err(StorageIOError::write_logs(&e).into());
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.cache().truncate(log_id.index);
        self.submit(|done| Op::Truncate(log_id.index, done))
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.cache().purge(log_id.index);
        self.submit(|done| Op::Purge(log_id, done))
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

#[cfg(test)]
mod tests {
    use super::{Cache, Entry};

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: openraft::EntryPayload::Blank,
        }
    }

    fn indexes(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.log_id.index).collect()
    }

    /// Appends 1–3 (seq 1) and 4–5 (seq 2), 10 encoded bytes each; the first is durable.
    fn cache() -> Cache {
        let mut c = Cache::default();
        c.insert(1, (1..=3).map(|i| (entry(i), 10)));
        c.insert(2, (4..=5).map(|i| (entry(i), 10)));
        c.mark_durable(1, usize::MAX);
        c
    }

    #[test]
    fn an_apply_read_takes_durable_entries_and_copies_the_rest() {
        let mut c = cache();
        // 2..5: 1 goes too (older and durable), 2–3 are taken, 4 is copied and stays.
        assert_eq!(indexes(&c.take(2, 5)), vec![2, 3, 4]);
        assert_eq!(c.first_index(), Some(4));
        assert_eq!(c.bytes, 20);
        c.mark_durable(2, usize::MAX);
        assert_eq!(indexes(&c.take(4, 6)), vec![4, 5]);
        assert_eq!((c.first_index(), c.bytes), (None, 0));
    }

    #[test]
    fn a_replication_read_copies_up_to_its_budget_and_keeps_everything() {
        let c = cache();
        assert_eq!(indexes(&c.copy(2, 6, 15)), vec![2, 3]);
        assert_eq!(indexes(&c.copy(5, 6, 1)), vec![5], "one entry however big");
        assert_eq!(c.entries.len(), 5);
    }

    #[test]
    fn memory_over_its_bound_drops_the_oldest_durable_entries_only() {
        let mut c = cache();
        // 50 bytes held, 15 allowed: of the durable 1–3 all go; 4–5 are not durable.
        c.mark_durable(1, 15);
        assert_eq!((c.first_index(), c.bytes), (Some(4), 20));
        c.mark_durable(2, 15);
        assert_eq!((c.first_index(), c.bytes), (Some(5), 10));
    }

    #[test]
    fn truncate_and_purge_keep_memory_a_suffix_and_a_new_append_is_not_durable() {
        let mut c = cache();
        c.truncate(3);
        assert_eq!((c.last_log_id().map(|l| l.index), c.bytes), (Some(2), 20));
        // The same indexes again, from a later append: not durable until it is.
        c.insert(3, (3..=4).map(|i| (entry(i), 10)));
        c.purge(1);
        assert_eq!(indexes(&c.take(2, 5)), vec![2, 3, 4]);
        assert_eq!(c.first_index(), Some(3));
    }
}
