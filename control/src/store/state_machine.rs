//! The replicated state machine: the object table and its metadata, in `raft.redb` (the raft
//! log has a file of its own).
//!
//! One `apply()` call is one redb write transaction: every write of every entry in the slice,
//! the new `revision` and `last_applied` commit together, so a crash leaves the state machine
//! exactly at some applied log id and re-application from there is deterministic. Most of
//! these commits are not fsynced (`Durability::None`): one at least [`DURABLE_EVERY`] after
//! the last durable one is, a flusher task makes a quiet state machine durable within about
//! twice that, and snapshots, the flush before a log purge and the one at shutdown are
//! durable. After a crash the state machine is at its last durable commit and what it lost
//! is re-applied from the durable log. Watch events are published only after the commit.

use std::io::{Cursor, Write as _};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::apply::{self, Mutation, apply_write};
use super::command::{Batch, BatchResult, EventType};
use super::db::{
    DbError, blocking, get_json, io_error, put_json, remove_if_exists, rename_durably,
};
use super::types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::attrs::{Attrs, StoredAttrs, plural_of_key};
use crate::watch::{WatchEvent, WatchHub};

/// Objects by store key (`{plural}/{namespace}/{name}`), as JSON bytes.
pub(crate) const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
/// State machine metadata (serde_json values): see the `*_KEY` constants.
pub(crate) const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");

/// The most recent watch events by revision (see [`EVENT_HISTORY`]): a framed record of
/// [`StoredEventHead`] JSON, a newline, then the object's JSON bytes.
pub(crate) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");

/// How many of the most recent watch events the state machine keeps on disk, written in the
/// same transaction as the objects they describe. A restarted server restores them into the
/// watch hub, so a watcher that was behind when it stopped (or crashed) resumes without a
/// gap instead of getting 410 and relisting. Kubernetes gets this from etcd's MVCC history;
/// here it costs one extra insert per changed object and is bounded by count.
pub const EVENT_HISTORY: u64 = 10_000;

const LAST_APPLIED: &str = "last_applied";
const LAST_MEMBERSHIP: &str = "last_membership";
const REVISION: &str = "revision";
const SNAPSHOT_META: &str = "snapshot_meta";
/// Raw snapshot bytes, where servers before the snapshot files kept them: read if no file
/// exists, removed at the next snapshot.
const SNAPSHOT_DATA: &str = "snapshot_data";

/// The metadata part of a persisted watch event.
#[derive(Debug, Serialize, Deserialize)]
struct StoredEventHead {
    event: EventType,
    key: String,
    attrs: StoredAttrs,
    previous: Option<StoredAttrs>,
}

fn encode_event(ev: &WatchEvent) -> Result<Vec<u8>, DbError> {
    let head = StoredEventHead {
        event: ev.event,
        key: ev.key.clone(),
        attrs: ev.attrs.to_stored(),
        previous: ev.previous.as_ref().map(Attrs::to_stored),
    };
    // serde_json never writes a raw newline, so the first one ends the head.
    let mut out = serde_json::to_vec(&head)?;
    out.push(b'\n');
    out.extend_from_slice(&ev.object);
    Ok(out)
}

pub(crate) fn decode_event(revision: u64, bytes: &[u8]) -> Result<WatchEvent, DbError> {
    let split = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| DbError::Other(format!("stored watch event {revision}: no header")))?;
    let head: StoredEventHead = serde_json::from_slice(&bytes[..split])?;
    let plural = plural_of_key(&head.key).to_string();
    Ok(WatchEvent::from_parts(
        revision,
        head.event,
        head.key,
        bytes::Bytes::copy_from_slice(&bytes[split + 1..]),
        Attrs::from_stored(&plural, head.attrs),
        head.previous.map(|p| Attrs::from_stored(&plural, p)),
    ))
}

/// The persisted watch events, oldest first (none before the table first exists).
fn read_events(db: &Database) -> Result<Vec<WatchEvent>, DbError> {
    let txn = db.begin_read()?;
    let table = match txn.open_table(EVENTS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(redb::Error::from(e).into()),
    };
    let mut out = Vec::new();
    for row in table.iter()? {
        let (rev, bytes) = row?;
        out.push(decode_event(rev.value(), bytes.value())?);
    }
    Ok(out)
}

/// What a snapshot's bytes hold.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotBlob {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    revision: u64,
    /// Objects as their stored JSON text: a snapshot copies bytes, it never builds a
    /// parsed tree of every object (which would cost many times the data in memory).
    objects: Vec<(String, Box<RawValue>)>,
}

/// How often the state machine commits durably while it applies (the first apply this long
/// after the last durable commit fsyncs; when no apply comes, the flusher does within about
/// twice this): what a crash can make a restart re-apply from the log, and, since redb
/// reuses the pages a commit frees only once a durable commit follows, how long the file
/// grows unchecked.
pub const DURABLE_EVERY: Duration = Duration::from_secs(1);

/// The state machine's durable point: when an apply's or the flusher's commit last was
/// durable, and whether commits since were not. (Snapshot commits and the flush before a
/// log purge are durable too but not recorded: at worst one fsync more than needed.)
#[derive(Debug)]
struct DurablePoint {
    at: Instant,
    dirty: bool,
}

impl DurablePoint {
    /// After a commit (durable or not) returned.
    fn committed(&mut self, durable: bool) {
        if durable {
            self.at = Instant::now();
            self.dirty = false;
        } else {
            self.dirty = true;
        }
    }
}

/// The state machine; cheap to clone (it is also its own snapshot builder).
#[derive(Clone)]
pub struct StateMachine {
    db: Arc<Database>,
    hub: Arc<WatchHub>,
    snapshots: Arc<SnapshotFiles>,
    durable: Arc<Mutex<DurablePoint>>,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine").finish_non_exhaustive()
    }
}

impl StateMachine {
    /// Open over the state machine's database (`raft.redb`, tables already created) and
    /// reset the watch hub to the stored revision. Snapshots are files in `snapshot_dir`
    /// (created if missing).
    pub fn open(
        db: Arc<Database>,
        hub: Arc<WatchHub>,
        snapshot_dir: impl Into<PathBuf>,
    ) -> Result<Self, DbError> {
        let revision = read_revision(&db)?;
        hub.restore(revision, read_events(&db)?);
        let snapshots = SnapshotFiles::open(snapshot_dir.into())?;
        // Nothing else runs yet: whatever the current metadata does not name is left over
        // (a crash between a file and its metadata, or before an old file was removed).
        let current = {
            let txn = db.begin_read()?;
            get_json::<SnapshotMeta>(&txn.open_table(SM_META)?, SNAPSHOT_META)?
        };
        snapshots.remove_all_but(current.as_ref().map(|m| m.snapshot_id.as_str()));
        Ok(Self {
            db,
            hub,
            snapshots: Arc::new(snapshots),
            durable: Arc::new(Mutex::new(DurablePoint {
                at: Instant::now(),
                dirty: false,
            })),
        })
    }

    fn durable(&self) -> MutexGuard<'_, DurablePoint> {
        lock(&self.durable)
    }

    /// Whether some applied change is not durable yet.
    #[cfg(test)]
    pub(crate) fn is_dirty(&self) -> bool {
        self.durable().dirty
    }

    /// Sets when the state machine last committed durably (tests: no waiting on the clock).
    #[cfg(test)]
    pub(crate) fn set_last_durable(&self, at: Instant) {
        self.durable().at = at;
    }

    /// One tick of the flusher task, see [`StateMachine::spawn_flusher`].
    #[cfg(test)]
    pub(crate) async fn flush_if_due(&self) {
        flush_if_due(self.db.clone(), &self.durable).await;
    }

    /// Start the task that makes applied changes durable once they are [`DURABLE_EVERY`]
    /// old when no apply came to do it (the last writes before a quiet spell). It ends
    /// once the database is dropped.
    pub fn spawn_flusher(&self) {
        let db = Arc::downgrade(&self.db);
        let durable = self.durable.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(DURABLE_EVERY).await;
                let Some(db) = db.upgrade() else { return };
                flush_if_due(db, &durable).await;
            }
        });
    }
}

fn lock(point: &Mutex<DurablePoint>) -> MutexGuard<'_, DurablePoint> {
    // Two plain fields: usable whatever a panicking holder left.
    point.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Commits `db` durably when a change has waited [`DURABLE_EVERY`] for it.
async fn flush_if_due(db: Arc<Database>, point: &Mutex<DurablePoint>) {
    {
        let mut d = lock(point);
        if !(d.dirty && d.at.elapsed() >= DURABLE_EVERY) {
            return;
        }
        // Cleared first: an apply that commits after the flush marks it again (whatever
        // committed before the flush's commit is durable with it).
        d.dirty = false;
    }
    match blocking(move || super::db::flush(&db)).await {
        Ok(()) => lock(point).at = Instant::now(),
        Err(e) => {
            tracing::warn!(error = %e, "flushing the state machine failed");
            lock(point).dirty = true;
        }
    }
}

/// The snapshot data, one file per snapshot, named by its id; the redb metadata
/// (`SNAPSHOT_META`) says which one is current.
///
/// Kept out of redb because a snapshot holds every object: written into the database it
/// held redb's one write transaction (and so every apply) while hundreds of MiB were
/// copied, checksummed and fsynced; at 50,000 Pods that made the store spend most of its
/// time snapshotting. A file is written beside the database, and only the small metadata
/// commit takes the write lock.
/// Whether `id` is of the grammar `build_snapshot` names snapshots with:
/// `{term}-{node}-{index}-r{revision}` or `none-r{revision}`, every part decimal digits.
pub(crate) fn is_snapshot_id(id: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    let Some((log, revision)) = id.rsplit_once("-r") else {
        return false;
    };
    if !digits(revision) {
        return false;
    }
    log == "none" || {
        let parts: Vec<&str> = log.split('-').collect();
        parts.len() == 3 && parts.iter().all(|p| digits(p))
    }
}

struct SnapshotFiles {
    dir: PathBuf,
}

impl SnapshotFiles {
    fn open(dir: PathBuf) -> Result<Self, DbError> {
        crate::files::create_private_dir(&dir).map_err(|e| io_error(&dir, &e))?;
        Ok(Self { dir })
    }

    /// The file of snapshot `id`. An id arrives from a peer with an installed snapshot, so
    /// only the grammar this server itself writes names a file (`is_snapshot_id`): never a
    /// separator, `..` or an absolute path.
    fn path(&self, id: &str) -> Result<PathBuf, DbError> {
        if !is_snapshot_id(id) {
            return Err(DbError::Other(format!(
                "snapshot id {id:?} is not of the form TERM-NODE-INDEX-rREVISION or none-rREVISION"
            )));
        }
        Ok(self.dir.join(format!("{id}.snap")))
    }

    /// Writes `data` as snapshot `id`, durably (temp file, fsync, rename, fsync the dir).
    fn write(&self, id: &str, data: &[u8]) -> Result<(), DbError> {
        let path = self.path(id)?;
        // Random name, created exclusively, 0600: a snapshot holds every object. A leftover
        // of a crash is removed at the next start (`remove_all_but`).
        let tmp = crate::files::temp_path(&path);
        let mut f = super::db::create_private_new(&tmp)?;
        f.write_all(data)
            .and_then(|()| f.sync_all())
            .map_err(|e| io_error(&tmp, &e))?;
        rename_durably(&tmp, &path)
    }

    fn read(&self, id: &str) -> Result<Option<Vec<u8>>, DbError> {
        let path = self.path(id)?;
        match std::fs::read(&path) {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&path, &e)),
        }
    }

    /// Removes snapshot `id`'s file, once no metadata names it. Only this one: a build and
    /// an install may run at once, and each removes only the file it made stale.
    fn remove(&self, id: &str) {
        let removed = self.path(id).and_then(|path| remove_if_exists(&path));
        if let Err(e) = removed {
            tracing::warn!(error = %e, "removing an old snapshot");
        }
    }

    /// At start-up: removes every snapshot file but `keep`'s.
    fn remove_all_but(&self, keep: Option<&str>) {
        let keep = keep.map(|id| format!("{id}.snap"));
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_str().is_some_and(|n| Some(n) == keep.as_deref()) {
                // Snapshots of a ketch before 2026-12-07 were 0644.
                if let Err(e) = crate::files::ensure_private_file(&entry.path()) {
                    tracing::warn!(path = %entry.path().display(), error = %e, "making a snapshot private");
                }
                continue;
            }
            if name.to_str().is_some_and(|n| Some(n) != keep.as_deref())
                && let Err(e) = std::fs::remove_file(entry.path())
            {
                tracing::warn!(path = %entry.path().display(), error = %e, "removing an old snapshot");
            }
        }
    }
}

/// The current applied revision.
pub(crate) fn read_revision(db: &Database) -> Result<u64, DbError> {
    let txn = db.begin_read()?;
    Ok(get_json(&txn.open_table(SM_META)?, REVISION)?.unwrap_or(0))
}

/// Bytes of the stored objects (keys and values, as redb counts its leaves): what the
/// store's quota measures. Freed by deletes at once, unlike the file's size.
pub(crate) fn read_stored_bytes(db: &Database) -> Result<u64, DbError> {
    use redb::ReadableTableMetadata as _;
    let txn = db.begin_read()?;
    Ok(txn.open_table(OBJECTS)?.stats()?.stored_bytes())
}

/// Whether the state machine has applied any log entry.
pub(crate) fn has_applied(db: &Database) -> Result<bool, DbError> {
    let txn = db.begin_read()?;
    let last: Option<Option<LogId>> = get_json(&txn.open_table(SM_META)?, LAST_APPLIED)?;
    Ok(last.flatten().is_some())
}

/// One object by key.
pub(crate) fn read_object<T: serde::de::DeserializeOwned>(
    db: &Database,
    key: &str,
) -> Result<Option<T>, DbError> {
    let txn = db.begin_read()?;
    let objects = txn.open_table(OBJECTS)?;
    match objects.get(key)? {
        Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
        None => Ok(None),
    }
}

/// Every object whose key starts with `prefix`, and the revision of that same read.
pub(crate) fn read_prefix(db: &Database, prefix: &str) -> Result<(u64, Vec<Value>), DbError> {
    let (revision, raw) = read_prefix_raw(db, prefix)?;
    let objects = raw
        .iter()
        .map(|bytes| serde_json::from_slice(bytes))
        .collect::<Result<_, _>>()?;
    Ok((revision, objects))
}

/// As [`read_prefix`], with each object as its stored JSON bytes (no parsing: an
/// unfiltered LIST splices them straight into the response).
pub(crate) fn read_prefix_raw(db: &Database, prefix: &str) -> Result<(u64, Vec<Vec<u8>>), DbError> {
    let txn = db.begin_read()?;
    let revision = get_json(&txn.open_table(SM_META)?, REVISION)?.unwrap_or(0);
    let objects = txn.open_table(OBJECTS)?;
    let mut out = Vec::new();
    for item in objects.range::<&str>(prefix..)? {
        let (k, v) = item?;
        if !k.value().starts_with(prefix) {
            break;
        }
        out.push(v.value().to_vec());
    }
    Ok((revision, out))
}

fn read_current_snapshot(
    db: &Database,
    files: &SnapshotFiles,
) -> Result<Option<(SnapshotMeta, Vec<u8>)>, DbError> {
    let txn = db.begin_read()?;
    let meta_table = txn.open_table(SM_META)?;
    let Some(meta) = get_json::<SnapshotMeta>(&meta_table, SNAPSHOT_META)? else {
        return Ok(None);
    };
    let data = match files.read(&meta.snapshot_id)? {
        Some(data) => data,
        None => meta_table
            .get(SNAPSHOT_DATA)?
            .map(|v| v.value().to_vec())
            .ok_or_else(|| {
                DbError::Other(format!(
                    "snapshot {} has metadata but no data",
                    meta.snapshot_id
                ))
            })?,
    };
    Ok(Some((meta, data)))
}

/// Apply a slice of entries in one write transaction (fsynced when `durable`); returns the
/// results and the events to publish once it has committed.
fn apply_entries(
    db: &Database,
    entries: Vec<Entry>,
    durable: bool,
) -> Result<(Vec<BatchResult>, Vec<WatchEvent>), DbError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(if durable {
        Durability::Immediate
    } else {
        Durability::None
    })?;
    let mut results = Vec::with_capacity(entries.len());
    // Up to one event per write: sized once (a batch carries up to a thousand writes, and
    // growing the vector step by step showed in profiles).
    let writes = entries
        .iter()
        .map(|e| match &e.payload {
            EntryPayload::Normal(Batch(w)) => w.len(),
            _ => 0,
        })
        .sum();
    let mut events = Vec::with_capacity(writes);
    {
        let mut objects = txn.open_table(OBJECTS)?;
        let mut meta = txn.open_table(SM_META)?;
        let mut last_applied: Option<LogId> =
            get_json::<Option<LogId>>(&meta, LAST_APPLIED)?.flatten();
        let mut revision: u64 = get_json(&meta, REVISION)?.unwrap_or(0);
        let mut membership: Option<StoredMembership> = None;
        for entry in entries {
            if last_applied.is_some_and(|la| entry.log_id.index <= la.index) {
                // Already applied (its effects are in this table): applying twice would
                // consume revisions twice.
                results.push(BatchResult::default());
                continue;
            }
            match entry.payload {
                EntryPayload::Blank => results.push(BatchResult::default()),
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m));
                    results.push(BatchResult::default());
                }
                EntryPayload::Normal(Batch(writes)) => {
                    let mut out = Vec::with_capacity(writes.len());
                    for write in writes {
                        let key = write.key().to_string();
                        let claimed = apply::claimed_node_ports(&write);
                        if !claimed.is_empty() {
                            let held = node_ports_held_by_others(&objects, &key)?;
                            if let Err(e) = apply::check_node_ports(&claimed, &held) {
                                out.push(Err(e));
                                continue;
                            }
                        }
                        let (current, stored_len): (Option<Value>, usize) = match objects
                            .get(key.as_str())?
                        {
                            Some(v) => (Some(serde_json::from_slice(v.value())?), v.value().len()),
                            None => (None, 0),
                        };
                        // What watchers knew the object by, for those whose selector it leaves
                        // (taken before the write consumes the object).
                        let previous = current.as_ref().map(|c| WatchEvent::attrs_for(&key, c));
                        let (mut result, mutation) = apply_write(current, write, revision + 1);
                        let mut stored = None;
                        // A mutation comes only with a successful write.
                        if let (Some(mutation), Ok(applied)) = (mutation, &result) {
                            revision += 1;
                            match mutation {
                                Mutation::Put => {
                                    let bytes = to_json(&applied.object, stored_len)?;
                                    objects.insert(key.as_str(), bytes.as_slice())?;
                                    stored = Some(bytes::Bytes::from(bytes));
                                }
                                Mutation::Remove => {
                                    objects.remove(key.as_str())?;
                                }
                            }
                        }
                        if let Ok(applied) = &mut result
                            && let Some(event) = applied.event
                        {
                            let previous = previous.filter(|_| event == EventType::Modified);
                            // A deletion stored nothing: its event still carries the object.
                            let bytes = match stored {
                                Some(bytes) => bytes,
                                None => to_json(&applied.object, stored_len)?.into(),
                            };
                            applied.encoded = Some(bytes.clone());
                            let ev = WatchEvent::serialized(
                                revision,
                                event,
                                key,
                                &applied.object,
                                bytes,
                            );
                            events.push(ev.with_previous(previous));
                        }
                        out.push(result);
                    }
                    results.push(BatchResult(out));
                }
            }
            last_applied = Some(entry.log_id);
        }
        if !events.is_empty() {
            let mut history = txn.open_table(EVENTS)?;
            for ev in &events {
                history.insert(ev.revision, encode_event(ev)?.as_slice())?;
            }
            if let Some(cutoff) = revision.checked_sub(EVENT_HISTORY) {
                history.retain_in(..=cutoff, |_, _| false)?;
            }
        }
        put_json(&mut meta, LAST_APPLIED, &last_applied)?;
        put_json(&mut meta, REVISION, &revision)?;
        if let Some(membership) = membership {
            put_json(&mut meta, LAST_MEMBERSHIP, &membership)?;
        }
    }
    txn.commit()?;
    Ok((results, events))
}

/// `object` as stored JSON, into a buffer sized from the object's previous encoding
/// (`previous_len`, 0 for a new one) so a write does not grow it step by step.
fn to_json(object: &Value, previous_len: usize) -> Result<Vec<u8>, DbError> {
    let mut buf = Vec::with_capacity(previous_len + previous_len / 4 + 256);
    serde_json::to_writer(&mut buf, object)?;
    Ok(buf)
}

/// The node ports of every stored Service except the one at `own_key`. A scan of the
/// Services, paid only by Service writes that carry node ports (rare, and Services are few
/// next to Pods); it runs inside the apply transaction, so it sees the earlier writes of the
/// same batch.
fn node_ports_held_by_others(
    objects: &impl ReadableTable<&'static str, &'static [u8]>,
    own_key: &str,
) -> Result<std::collections::HashSet<i64>, DbError> {
    let mut held = std::collections::HashSet::new();
    for item in objects.range::<&str>(apply::SERVICES_PREFIX..)? {
        let (k, v) = item?;
        let k = k.value();
        if !k.starts_with(apply::SERVICES_PREFIX) {
            break;
        }
        if k == own_key {
            continue;
        }
        let service: Value = serde_json::from_slice(v.value())?;
        held.extend(apply::node_ports_of(&service).into_iter().map(|(_, np)| np));
    }
    Ok(held)
}

fn build_snapshot(
    db: &Database,
    files: &SnapshotFiles,
) -> Result<(SnapshotMeta, Vec<u8>), DbError> {
    let blob = {
        let txn = db.begin_read()?;
        let meta = txn.open_table(SM_META)?;
        let objects = txn.open_table(OBJECTS)?;
        let mut all = Vec::new();
        for item in objects.iter()? {
            let (k, v) = item?;
            let text = String::from_utf8(v.value().to_vec()).map_err(|e| {
                serde_json::Error::io(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
            })?;
            all.push((k.value().to_string(), RawValue::from_string(text)?));
        }
        SnapshotBlob {
            last_applied: get_json(&meta, LAST_APPLIED)?.flatten(),
            membership: get_json(&meta, LAST_MEMBERSHIP)?.unwrap_or_default(),
            revision: get_json(&meta, REVISION)?.unwrap_or(0),
            objects: all,
        }
    };
    let data = serde_json::to_vec(&blob)?;
    let snapshot_id = match &blob.last_applied {
        Some(l) => format!(
            "{}-{}-{}-r{}",
            l.leader_id.term, l.leader_id.node_id, l.index, blob.revision
        ),
        None => format!("none-r{}", blob.revision),
    };
    let meta = SnapshotMeta {
        last_log_id: blob.last_applied,
        last_membership: blob.membership,
        snapshot_id,
    };
    // The data first, outside any write transaction; then the metadata that makes it
    // current. A crash in between leaves a file no metadata names, removed next time.
    files.write(&meta.snapshot_id, &data)?;
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    // What becomes stale: the snapshot this one replaces, or this one if it lost.
    let stale = {
        let mut table = txn.open_table(SM_META)?;
        let current: Option<SnapshotMeta> = get_json(&table, SNAPSHOT_META)?;
        // An installed snapshot may have overtaken this build; never replace a newer one.
        match current {
            Some(c) if c.last_log_id > meta.last_log_id => Some(meta.snapshot_id.clone()),
            current => {
                put_json(&mut table, SNAPSHOT_META, &meta)?;
                table.remove(SNAPSHOT_DATA)?;
                current
                    .map(|c| c.snapshot_id)
                    .filter(|id| *id != meta.snapshot_id)
            }
        }
    };
    txn.commit()?;
    if let Some(id) = stale {
        files.remove(&id);
    }
    Ok((meta, data))
}

fn install_snapshot(
    db: &Database,
    files: &SnapshotFiles,
    meta: &SnapshotMeta,
    data: Vec<u8>,
) -> Result<u64, DbError> {
    let blob: SnapshotBlob = serde_json::from_slice(&data)?;
    files.write(&meta.snapshot_id, &data)?;
    let replaced;
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    txn.delete_table(OBJECTS)?;
    // The history before a snapshot is not this server's to replay.
    txn.delete_table(EVENTS)?;
    {
        let mut objects = txn.open_table(OBJECTS)?;
        for (key, object) in &blob.objects {
            objects.insert(key.as_str(), object.get().as_bytes())?;
        }
        let mut table = txn.open_table(SM_META)?;
        replaced = get_json::<SnapshotMeta>(&table, SNAPSHOT_META)?
            .map(|c| c.snapshot_id)
            .filter(|id| *id != meta.snapshot_id);
        put_json(&mut table, LAST_APPLIED, &meta.last_log_id)?;
        put_json(&mut table, LAST_MEMBERSHIP, &meta.last_membership)?;
        put_json(&mut table, REVISION, &blob.revision)?;
        put_json(&mut table, SNAPSHOT_META, meta)?;
        table.remove(SNAPSHOT_DATA)?;
    }
    txn.commit()?;
    if let Some(id) = replaced {
        files.remove(&id);
    }
    Ok(blob.revision)
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let (db, files) = (self.db.clone(), self.snapshots.clone());
        let (meta, data) = blocking(move || build_snapshot(&db, &files))
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_read()?;
            let meta = txn.open_table(SM_META)?;
            let last_applied: Option<Option<LogId>> = get_json(&meta, LAST_APPLIED)?;
            let membership: Option<StoredMembership> = get_json(&meta, LAST_MEMBERSHIP)?;
            Ok((last_applied.flatten(), membership.unwrap_or_default()))
        })
        .await
        .map_err(|e| StorageIOError::read_state_machine(&e).into())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let durable = self.durable().at.elapsed() >= DURABLE_EVERY;
        let db = self.db.clone();
        let (results, events) = blocking(move || apply_entries(&db, entries, durable))
            .await
            .map_err(|e| StorageIOError::write_state_machine(&e))?;
        // Marked after the commit: the flusher's next commit then covers this one.
        self.durable().committed(durable);
        // Only after the commit: watchers must never see a change the store does not hold.
        self.hub.publish(events);
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        // Operators (and the fault tests) see a far-behind server being brought up to date
        // by a whole snapshot rather than the log.
        tracing::info!("receiving a snapshot from the leader");
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let (db, files) = (self.db.clone(), self.snapshots.clone());
        let owned_meta = meta.clone();
        let data = snapshot.into_inner();
        let revision = blocking(move || install_snapshot(&db, &files, &owned_meta, data))
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        self.hub.reset(revision);
        tracing::info!(revision, "installed a snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let (db, files) = (self.db.clone(), self.snapshots.clone());
        let current = blocking(move || read_current_snapshot(&db, &files))
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(current.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
