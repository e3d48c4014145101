//! `wasi:keyvalue` (0.2.0-draft: `store`, `atomics`, `batch`) for guests, backed by one redb
//! file on the node. wasmtime-wasi-keyvalue 48 only offers an in-memory map that every
//! instance gets a fresh copy of (nothing survives a request, let alone a Pod restart), so
//! ketch implements the host side itself from the same WIT (vendored in `sdk/wit`).
//!
//! Data is scoped per app: a guest's bucket `B` is the redb table `kv/<app>/<B>`, where the
//! app is the opaque [`KeyValueScope::app`] the caller chose (the node agent uses the Pod's
//! workload, `<namespace>/<Kind>/<name>`: `ketch_workload::workload_identity`), so every Pod
//! of a workload — including the one replacing a deleted Pod — sees the same data, and no
//! workload sees another's. The empty identifier (what
//! `wasmtime serve -S keyvalue` accepts) is the bucket `default`.
//!
//! Costs nothing to apps that do not import it: the file is opened on the first `open` of a
//! bucket on the node, and a request's only overhead is an `Arc` clone.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableError};
use wasmtime::component::{Linker, Resource};

use crate::host::HostState;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../sdk/wit",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
        },
    });
}

use bindings::wasi::keyvalue::{atomics, batch, store};

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value accepted, in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Longest bucket name, in bytes (names are `[A-Za-z0-9._-]`).
pub const MAX_BUCKET_NAME_BYTES: usize = 64;
/// Most keys per `list-keys` page (the cursor continues from there).
pub const LIST_KEYS_PAGE: usize = 1000;
/// Most keys in one `get-many` / `set-many` / `delete-many`.
pub const MAX_BATCH_KEYS: usize = 1000;
/// Most bytes of values one `get-many` returns. The host copies them before the guest's
/// memory limit can refuse them, so without a bound one call could make the node hold
/// 1,000 × 1 MiB per request.
pub const MAX_BATCH_BYTES: usize = 8 << 20;

/// The node's key-value file. Cheap to clone; opened on first use.
#[derive(Clone)]
pub struct KeyValueStore {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    path: PathBuf,
    db: OnceLock<Result<Database, String>>,
}

impl std::fmt::Debug for KeyValueStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyValueStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// One app's access to the node's [`KeyValueStore`] (see [`crate::AppConfig::key_value`]).
#[derive(Debug, Clone)]
pub struct KeyValueScope {
    /// The node's store.
    pub store: KeyValueStore,
    /// Whose buckets: every handler with the same `app` shares them.
    pub app: String,
}

/// A guest's open bucket: the redb table it maps to.
pub struct Bucket {
    table: String,
}

/// A failure, as the guest sees it (`wasi:keyvalue/store.error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KvError {
    AccessDenied,
    Other(String),
}

impl From<KvError> for store::Error {
    fn from(e: KvError) -> Self {
        match e {
            KvError::AccessDenied => store::Error::AccessDenied,
            KvError::Other(m) => store::Error::Other(m),
        }
    }
}

fn other(context: &str, e: impl std::fmt::Display) -> KvError {
    KvError::Other(format!("node key-value store: {context}: {e}"))
}

impl KeyValueStore {
    /// The store in the redb file at `path` (created, with its directory, on first use).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            inner: Arc::new(StoreInner {
                path: path.into(),
                db: OnceLock::new(),
            }),
        }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn db(&self) -> Result<&Database, KvError> {
        self.inner
            .db
            .get_or_init(|| {
                if let Some(dir) = self.inner.path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
                }
                private_file(&self.inner.path).map_err(|e| e.to_string())?;
                Database::create(&self.inner.path).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| other(&format!("opening {}", self.inner.path.display()), e))
    }

    pub(crate) fn get(&self, table: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        check_key(key)?;
        let txn = self.db()?.begin_read().map_err(|e| other("read", e))?;
        match txn.open_table(def(table)) {
            Ok(t) => Ok(t
                .get(key)
                .map_err(|e| other("read", e))?
                .map(|v| v.value().to_vec())),
            Err(TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(other("read", e)),
        }
    }

    pub(crate) fn get_many(
        &self,
        table: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        check_batch(keys.len())?;
        keys.iter().try_for_each(|k| check_key(k))?;
        let txn = self.db()?.begin_read().map_err(|e| other("read", e))?;
        let t = match txn.open_table(def(table)) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(vec![None; keys.len()]),
            Err(e) => return Err(other("read", e)),
        };
        let mut total = 0usize;
        keys.iter()
            .map(|k| {
                let value = t.get(k.as_str()).map_err(|e| other("read", e))?.map(|v| {
                    let v = v.value();
                    total += v.len();
                    (total <= MAX_BATCH_BYTES).then(|| v.to_vec())
                });
                match value {
                    Some(None) => Err(KvError::Other(format!(
                        "the values of these {} keys exceed the limit of {MAX_BATCH_BYTES} bytes \
                         per get-many: ask for fewer keys",
                        keys.len()
                    ))),
                    Some(Some(v)) => Ok(Some(v)),
                    None => Ok(None),
                }
            })
            .collect()
    }

    pub(crate) fn set_many(
        &self,
        table: &str,
        entries: &[(String, Vec<u8>)],
    ) -> Result<(), KvError> {
        check_batch(entries.len())?;
        for (k, v) in entries {
            check_key(k)?;
            check_value(k, v)?;
        }
        self.write(table, |t| {
            for (k, v) in entries {
                t.insert(k.as_str(), v.as_slice())?;
            }
            Ok(())
        })
    }

    pub(crate) fn delete_many(&self, table: &str, keys: &[String]) -> Result<(), KvError> {
        check_batch(keys.len())?;
        keys.iter().try_for_each(|k| check_key(k))?;
        self.write(table, |t| {
            for k in keys {
                t.remove(k.as_str())?;
            }
            Ok(())
        })
    }

    /// Keys in order, from the `cursor`-th; the next cursor when more remain.
    pub(crate) fn list(
        &self,
        table: &str,
        cursor: Option<u64>,
    ) -> Result<(Vec<String>, Option<u64>), KvError> {
        let skip = usize::try_from(cursor.unwrap_or(0)).unwrap_or(usize::MAX);
        let txn = self.db()?.begin_read().map_err(|e| other("read", e))?;
        let t = match txn.open_table(def(table)) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok((Vec::new(), None)),
            Err(e) => return Err(other("read", e)),
        };
        let mut keys = Vec::new();
        for entry in t.iter().map_err(|e| other("read", e))?.skip(skip) {
            if keys.len() == LIST_KEYS_PAGE {
                return Ok((keys, Some((skip + LIST_KEYS_PAGE) as u64)));
            }
            let (k, _) = entry.map_err(|e| other("read", e))?;
            keys.push(k.value().to_string());
        }
        Ok((keys, None))
    }

    /// Adds `delta` to the decimal counter at `key` (unset: 0), in one write transaction.
    pub(crate) fn increment(&self, table: &str, key: &str, delta: u64) -> Result<u64, KvError> {
        check_key(key)?;
        let mut result = Err(KvError::Other(String::new()));
        self.write(table, |t| {
            let current = match t.get(key)? {
                None => Ok(0),
                Some(v) => parse_counter(key, v.value()),
            };
            result = current.and_then(|n| {
                n.checked_add(delta).ok_or_else(|| {
                    KvError::Other(format!("increment of {key:?}: {n} + {delta} overflows u64"))
                })
            });
            if let Ok(n) = &result {
                t.insert(key, n.to_string().as_bytes())?;
            }
            Ok(())
        })?;
        result
    }

    fn write(
        &self,
        table: &str,
        f: impl FnOnce(&mut redb::Table<&'static str, &'static [u8]>) -> Result<(), redb::Error>,
    ) -> Result<(), KvError> {
        let txn = self.db()?.begin_write().map_err(|e| other("write", e))?;
        {
            let mut t = txn.open_table(def(table)).map_err(|e| other("write", e))?;
            f(&mut t).map_err(|e| other("write", e))?;
        }
        txn.commit().map_err(|e| other("commit", e))
    }
}

/// Creates the key-value file empty and 0600 before redb opens it (redb initializes an empty
/// file), and tightens one an older ketch made 0644: it holds every app's data on the node.
fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    if file.metadata()?.permissions().mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

fn def(table: &str) -> TableDefinition<'_, &'static str, &'static [u8]> {
    TableDefinition::new(table)
}

fn parse_counter(key: &str, v: &[u8]) -> Result<u64, KvError> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            KvError::Other(format!(
                "increment of {key:?}: the value is not a decimal u64 counter"
            ))
        })
}

fn check_key(key: &str) -> Result<(), KvError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(KvError::Other(format!(
            "key of {} bytes exceeds the limit of {MAX_KEY_BYTES} bytes",
            key.len()
        )));
    }
    Ok(())
}

fn check_value(key: &str, value: &[u8]) -> Result<(), KvError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(KvError::Other(format!(
            "value of {key:?} is {} bytes; the limit is {MAX_VALUE_BYTES} bytes",
            value.len()
        )));
    }
    Ok(())
}

fn check_batch(n: usize) -> Result<(), KvError> {
    if n > MAX_BATCH_KEYS {
        return Err(KvError::Other(format!(
            "a batch of {n} keys exceeds the limit of {MAX_BATCH_KEYS}"
        )));
    }
    Ok(())
}

/// The table of `app`'s bucket `identifier` (`""` is `default`).
pub(crate) fn table_name(app: &str, identifier: &str) -> Result<String, KvError> {
    let bucket = if identifier.is_empty() {
        "default"
    } else {
        identifier
    };
    let valid = bucket.len() <= MAX_BUCKET_NAME_BYTES
        && bucket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !valid {
        return Err(KvError::Other(format!(
            "bucket name {bucket:?} is invalid: use up to {MAX_BUCKET_NAME_BYTES} of [A-Za-z0-9._-]"
        )));
    }
    Ok(format!("kv/{app}/{bucket}"))
}

/// Adds `wasi:keyvalue/{store,atomics,batch}` to the node's linker.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    bindings::Imports::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(
        linker,
        |s| s,
    )
}

/// Runs a store operation off the async worker (redb reads and commits touch the disk).
async fn blocking<T: Send + 'static>(
    scope: Option<Arc<KeyValueScope>>,
    f: impl FnOnce(&KeyValueStore) -> Result<T, KvError> + Send + 'static,
) -> Result<T, KvError> {
    let scope = scope.ok_or(KvError::AccessDenied)?;
    tokio::task::spawn_blocking(move || f(&scope.store))
        .await
        .map_err(|e| other("task", e))?
}

impl HostState {
    fn bucket_table(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<String> {
        Ok(self.table.get(bucket)?.table.clone())
    }
}

type Res<T> = wasmtime::Result<Result<T, store::Error>>;

impl store::Host for HostState {
    async fn open(&mut self, identifier: String) -> Res<Resource<Bucket>> {
        let Some(scope) = &self.key_value else {
            return Ok(Err(store::Error::Other(
                "wasi:keyvalue is not available to this app on this node".into(),
            )));
        };
        match table_name(&scope.app, &identifier) {
            Ok(table) => Ok(Ok(self.table.push(Bucket { table })?)),
            Err(e) => Ok(Err(e.into())),
        }
    }
}

impl store::HostBucket for HostState {
    async fn get(&mut self, bucket: Resource<Bucket>, key: String) -> Res<Option<Vec<u8>>> {
        let table = self.bucket_table(&bucket)?;
        let r = blocking(self.key_value.clone(), move |s| s.get(&table, &key)).await;
        Ok(r.map_err(Into::into))
    }

    async fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> Res<()> {
        let table = self.bucket_table(&bucket)?;
        let r = blocking(self.key_value.clone(), move |s| {
            s.set_many(&table, &[(key, value)])
        })
        .await;
        Ok(r.map_err(Into::into))
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Res<()> {
        let table = self.bucket_table(&bucket)?;
        let r = blocking(self.key_value.clone(), move |s| {
            s.delete_many(&table, &[key])
        })
        .await;
        Ok(r.map_err(Into::into))
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Res<bool> {
        let table = self.bucket_table(&bucket)?;
        let r = blocking(self.key_value.clone(), move |s| s.get(&table, &key)).await;
        Ok(r.map(|v| v.is_some()).map_err(Into::into))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> Res<store::KeyResponse> {
        let table = self.bucket_table(&bucket)?;
        let r = blocking(self.key_value.clone(), move |s| s.list(&table, cursor)).await;
        Ok(r.map(|(keys, cursor)| store::KeyResponse { keys, cursor })
            .map_err(Into::into))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for HostState {
    async fn increment(&mut self, bucket: Resource<Bucket>, key: String, delta: u64) -> Res<u64> {
        let table = self.bucket_table(&bucket)?;
        let r = blocking(self.key_value.clone(), move |s| {
            s.increment(&table, &key, delta)
        })
        .await;
        Ok(r.map_err(Into::into))
    }
}

impl batch::Host for HostState {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Res<Vec<Option<(String, Vec<u8>)>>> {
        let table = self.bucket_table(&bucket)?;
        let r = blocking(self.key_value.clone(), move |s| {
            let values = s.get_many(&table, &keys)?;
            Ok(keys
                .into_iter()
                .zip(values)
                .map(|(k, v)| v.map(|v| (k, v)))
                .collect())
        })
        .await;
        Ok(r.map_err(Into::into))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Res<()> {
        let table = self.bucket_table(&bucket)?;
        let r = blocking(self.key_value.clone(), move |s| {
            s.set_many(&table, &key_values)
        })
        .await;
        Ok(r.map_err(Into::into))
    }

    async fn delete_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> Res<()> {
        let table = self.bucket_table(&bucket)?;
        let r = blocking(self.key_value.clone(), move |s| {
            s.delete_many(&table, &keys)
        })
        .await;
        Ok(r.map_err(Into::into))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, KeyValueStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = KeyValueStore::new(dir.path().join("kv/keyvalue.redb"));
        (dir, s)
    }

    #[test]
    fn set_get_delete_and_missing_tables_read_as_empty() {
        let (_d, s) = store();
        assert_eq!(s.get("kv/a/default", "k").unwrap(), None);
        assert_eq!(s.list("kv/a/default", None).unwrap(), (vec![], None));
        s.set_many("kv/a/default", &[("k".into(), b"v".to_vec())])
            .unwrap();
        assert_eq!(s.get("kv/a/default", "k").unwrap(), Some(b"v".to_vec()));
        assert_eq!(
            s.get("kv/b/default", "k").unwrap(),
            None,
            "other apps do not see it"
        );
        s.delete_many("kv/a/default", &["k".into(), "never-set".into()])
            .unwrap();
        assert_eq!(s.get("kv/a/default", "k").unwrap(), None);
    }

    #[test]
    fn the_key_value_file_is_private_to_the_node_user() {
        use std::os::unix::fs::PermissionsExt as _;
        let (_d, s) = store();
        s.set_many("kv/a/default", &[("k".into(), b"v".to_vec())])
            .unwrap();
        let mode = std::fs::metadata(s.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn data_survives_reopening_the_file() {
        let (d, s) = store();
        s.increment("kv/a/default", "n", 2).unwrap();
        drop(s);
        let s = KeyValueStore::new(d.path().join("kv/keyvalue.redb"));
        assert_eq!(s.increment("kv/a/default", "n", 3).unwrap(), 5);
        assert_eq!(s.get("kv/a/default", "n").unwrap(), Some(b"5".to_vec()));
    }

    #[test]
    fn increment_refuses_non_counters_and_overflow_without_writing() {
        let (_d, s) = store();
        s.set_many(
            "t",
            &[
                ("x".into(), b"abc".to_vec()),
                ("m".into(), u64::MAX.to_string().into_bytes()),
            ],
        )
        .unwrap();
        let e = s.increment("t", "x", 1).unwrap_err();
        assert!(
            matches!(&e, KvError::Other(m) if m.contains("not a decimal u64")),
            "{e:?}"
        );
        let e = s.increment("t", "m", 1).unwrap_err();
        assert!(
            matches!(&e, KvError::Other(m) if m.contains("overflows")),
            "{e:?}"
        );
        assert_eq!(
            s.get("t", "m").unwrap(),
            Some(u64::MAX.to_string().into_bytes())
        );
    }

    #[test]
    fn list_keys_pages_with_a_cursor() {
        let (_d, s) = store();
        let entries: Vec<(String, Vec<u8>)> = (0..LIST_KEYS_PAGE + 5)
            .map(|i| (format!("k{i:05}"), vec![]))
            .collect();
        for chunk in entries.chunks(MAX_BATCH_KEYS) {
            s.set_many("t", chunk).unwrap();
        }
        let (first, cursor) = s.list("t", None).unwrap();
        assert_eq!(first.len(), LIST_KEYS_PAGE);
        assert_eq!(first[0], "k00000");
        let (rest, end) = s.list("t", cursor).unwrap();
        assert_eq!(rest.len(), 5);
        assert_eq!(rest[4], format!("k{:05}", LIST_KEYS_PAGE + 4));
        assert_eq!(end, None);
    }

    #[test]
    fn limits_are_enforced_with_clear_errors() {
        let (_d, s) = store();
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        let e = s.get("t", &long).unwrap_err();
        assert!(
            matches!(&e, KvError::Other(m) if m.contains("limit of 1024 bytes")),
            "{e:?}"
        );
        let big = vec![0; MAX_VALUE_BYTES + 1];
        let e = s.set_many("t", &[("k".into(), big)]).unwrap_err();
        assert!(
            matches!(&e, KvError::Other(m) if m.contains("the limit is 1048576 bytes")),
            "{e:?}"
        );
        // get-many returns at most MAX_BATCH_BYTES of values, whatever the keys hold.
        let mb = vec![7u8; MAX_VALUE_BYTES];
        let keys: Vec<String> = (0..9).map(|i| format!("big{i}")).collect();
        let entries: Vec<(String, Vec<u8>)> =
            keys.iter().map(|k| (k.clone(), mb.clone())).collect();
        s.set_many("kv/a/b", &entries).unwrap();
        assert_eq!(s.get_many("kv/a/b", &keys[..8]).unwrap().len(), 8);
        let err = s.get_many("kv/a/b", &keys).unwrap_err();
        assert!(format!("{err:?}").contains("8388608 bytes"), "{err:?}");
        let many: Vec<String> = (0..=MAX_BATCH_KEYS).map(|i| i.to_string()).collect();
        assert!(s.get_many("t", &many).is_err());
    }

    #[test]
    fn bucket_names_map_to_per_app_tables() {
        assert_eq!(table_name("ns/app", "").unwrap(), "kv/ns/app/default");
        assert_eq!(
            table_name("ns/app", "cache-1.x").unwrap(),
            "kv/ns/app/cache-1.x"
        );
        assert!(table_name("ns/app", "../other").is_err());
        assert!(table_name("ns/app", &"b".repeat(MAX_BUCKET_NAME_BYTES + 1)).is_err());
    }
}
