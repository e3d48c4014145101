//! redb plumbing shared by the log store and the state machine: opening each file and its
//! tables (moving an older server's log out of the state machine's file, see [`open_log`]),
//! JSON rows, running blocking redb work off the async threads, waiting for a file a previous
//! instance in this process still holds, and the durable renames and flushes both rely on.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use redb::{Database, DatabaseError, Durability, ReadableDatabase, ReadableTable, Table};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::log_store::{LOG, RAFT_META};
use super::state_machine::{OBJECTS, SM_META};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("redb: {0}")]
    Redb(#[from] redb::Error),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Other(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for DbError {
            fn from(e: $t) -> Self {
                DbError::Redb(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
    DatabaseError
);

/// Run blocking redb work off the async threads.
pub async fn blocking<T, F>(f: F) -> Result<T, DbError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, DbError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DbError::Other(format!("blocking task failed: {e}")))?
}

pub fn get_json<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>, DbError> {
    match table.get(key)? {
        Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
        None => Ok(None),
    }
}

pub fn put_json<T: Serialize + ?Sized>(
    table: &mut Table<'_, &'static str, &'static [u8]>,
    key: &str,
    value: &T,
) -> Result<(), DbError> {
    table.insert(key, serde_json::to_vec(value)?.as_slice())?;
    Ok(())
}

/// The log's file in a data dir.
pub const LOG_FILE: &str = "log.redb";

/// Open (creating) the state machine's database and its tables, so read transactions
/// never miss one.
pub fn open_state(path: &Path) -> Result<Arc<Database>, DbError> {
    crate::files::ensure_private_file(path).map_err(|e| io_error(path, &e))?;
    let db = Database::create(path)?;
    let txn = db.begin_write()?;
    txn.open_table(OBJECTS)?;
    txn.open_table(SM_META)?;
    txn.commit()?;
    Ok(Arc::new(db))
}

/// Open (creating) the log's database at `path` and its tables.
///
/// Servers before the log had a file of its own kept it in the state machine's
/// database: when `path` does not exist yet, the log tables of `state` are copied into
/// a new file, made durable, renamed into place, and only then removed from `state`. A
/// crash in between leaves either no log file (the copy starts over) or two equal copies
/// (the old one is removed at the next start).
///
/// # Errors
/// Besides IO: two different logs (an older ketch ran on this data dir after a newer
/// one), or none at all beside an applied state machine (`log.redb` lost): a server
/// that went on would have forgotten its vote or its log, so it refuses to start.
pub fn open_log(path: &Path, state: &Database) -> Result<Arc<Database>, DbError> {
    let old = LogSummary::of(&state.begin_read()?)?;
    let fresh = !path.exists();
    if fresh {
        if old.is_none() && super::state_machine::has_applied(state)? {
            return Err(DbError::Other(format!(
                "{} is missing, but the state machine beside it has applied raft log \
                 entries: this server's raft log and vote are gone. Restore the data dir \
                 whole from one backup, or remove it to join or start afresh",
                path.display()
            )));
        }
        // A leftover of a ketch that crashed here, when the name was fixed.
        remove_if_exists(&path.with_extension("redb.tmp"))?;
        let tmp = crate::files::temp_path(path);
        {
            create_private_new(&tmp)?;
            let db = Database::create(&tmp)?;
            let txn = db.begin_write()?;
            {
                let old = state.begin_read()?;
                copy_table(&old, &mut txn.open_table(LOG)?, LOG)?;
                copy_table(&old, &mut txn.open_table(RAFT_META)?, RAFT_META)?;
            }
            txn.commit()?;
        }
        rename_durably(&tmp, path)?;
    }
    crate::files::ensure_private_file(path).map_err(|e| io_error(path, &e))?;
    let db = Database::create(path)?;
    let txn = db.begin_write()?;
    txn.open_table(LOG)?;
    txn.open_table(RAFT_META)?;
    txn.commit()?;
    if !fresh && old.is_some() && old != LogSummary::of(&db.begin_read()?)? {
        return Err(DbError::Other(format!(
            "{} holds a raft log other than {} (an older ketch ran on this data dir after \
             a newer one?): refusing to choose between them. Restore the data dir from a \
             backup, or move {} away to go on from the older log in raft.redb (what only \
             {} holds is then lost)",
            path.with_file_name("raft.redb").display(),
            path.display(),
            path.display(),
            path.display()
        )));
    }
    let txn = state.begin_write()?;
    let had_log = txn.delete_table(LOG)?;
    let had_meta = txn.delete_table(RAFT_META)?;
    if had_log || had_meta {
        txn.commit()?;
    } else {
        txn.abort()?;
    }
    Ok(Arc::new(db))
}

/// What tells two copies of a raft log apart: its metadata (vote, committed, last
/// purged) and its first and last entries. `None` for no log (no tables, or empty).
#[derive(PartialEq)]
struct LogSummary {
    meta: Vec<(String, Vec<u8>)>,
    first: Option<(u64, Vec<u8>)>,
    last: Option<(u64, Vec<u8>)>,
}

impl LogSummary {
    fn of(txn: &redb::ReadTransaction) -> Result<Option<Self>, DbError> {
        let (meta, log) = match (txn.open_table(RAFT_META), txn.open_table(LOG)) {
            (Ok(meta), Ok(log)) => (meta, log),
            (Err(redb::TableError::TableDoesNotExist(_)), _)
            | (_, Err(redb::TableError::TableDoesNotExist(_))) => return Ok(None),
            (Err(e), _) | (_, Err(e)) => return Err(e.into()),
        };
        let mut rows = Vec::new();
        for row in meta.iter()? {
            let (k, v) = row?;
            rows.push((k.value().to_string(), v.value().to_vec()));
        }
        let entry = |e: Option<(redb::AccessGuard<'_, u64>, redb::AccessGuard<'_, &[u8]>)>| {
            e.map(|(k, v)| (k.value(), v.value().to_vec()))
        };
        let summary = Self {
            meta: rows,
            first: entry(log.first()?),
            last: entry(log.last()?),
        };
        Ok((!summary.meta.is_empty() || summary.first.is_some()).then_some(summary))
    }
}

/// Copies every row of table `def` in `from` (if it exists there) into `to`.
pub fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    from: &redb::ReadTransaction,
    to: &mut Table<'_, K, V>,
    def: redb::TableDefinition<'_, K, V>,
) -> Result<(), DbError> {
    let table = match from.open_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for row in table.iter()? {
        let (k, v) = row?;
        to.insert(k.value(), v.value())?;
    }
    Ok(())
}

pub fn io_error(path: &Path, e: &std::io::Error) -> DbError {
    DbError::Other(format!("{}: {e}", path.display()))
}

/// Creates `path` empty, 0600, failing if anything is there (`O_EXCL`): a temporary file
/// no one else made.
pub fn create_private_new(path: &Path) -> Result<std::fs::File, DbError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_error(path, &e))
}

/// Removes `path`; a file that is not there is no error.
pub fn remove_if_exists(path: &Path) -> Result<(), DbError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(path, &e)),
    }
}

/// Renames `from` (a file already synced) to `to` and syncs the directory, so the new
/// name survives a crash.
pub fn rename_durably(from: &Path, to: &Path) -> Result<(), DbError> {
    std::fs::rename(from, to).map_err(|e| io_error(to, &e))?;
    let dir = to.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, &e))
}

/// Opens with `open`, but waits (up to 5 s) for a previous instance in this process to
/// release the file (raft's tasks drop their handles shortly after shutdown).
pub async fn open_retrying<F>(path: &Path, open: F) -> Result<Arc<Database>, DbError>
where
    F: Fn(&Path) -> Result<Arc<Database>, DbError> + Clone + Send + 'static,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let p = path.to_path_buf();
        let open = open.clone();
        match blocking(move || open(&p)).await {
            Err(DbError::Redb(redb::Error::DatabaseAlreadyOpen))
                if tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

/// A durable empty commit: persists every earlier non-durable commit.
pub fn flush(db: &Database) -> Result<(), DbError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    txn.commit()?;
    Ok(())
}
