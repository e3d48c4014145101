//! Key-value storage through `wasi:keyvalue` (0.2.0-draft: `store`, `atomics`, `batch`).
//!
//! On ketch every app has its own buckets, persistent on the node that runs it: they survive
//! Pod restarts and rescheduling onto the same node (not a move to another node yet). A
//! bucket is named by [`Store::open`]; [`Store::open_default`] opens the default one (the
//! identifier `""`, which `wasmtime serve -S keyvalue` also provides, in memory). Keys are
//! strings, values bytes; the node's limits (see ketch's ARCHITECTURE.md) come back as
//! [`Error::KeyValue`].
//!
//! ```no_run
//! use ketch_sdk::kv::Store;
//!
//! # fn main() -> Result<(), ketch_sdk::Error> {
//! let store = Store::open_default()?;
//! store.set("greeting", b"hello")?;
//! assert_eq!(store.get("greeting")?.as_deref(), Some(&b"hello"[..]));
//! let visits = store.increment("visits", 1)?;
//! println!("visit number {visits}; keys: {:?}", store.keys()?);
//! # Ok(())
//! # }
//! ```
//!
//! Counters written by [`Store::increment`] are stored as decimal text (`b"42"`), as
//! wasmtime's own implementation does; [`Store::get_u64`] reads them back.

mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "ketch:sdk/keyvalue",
        generate_all,
    });
}

use bindings::wasi::keyvalue::{atomics, batch, store};

use crate::error::Error;

/// An open bucket.
pub struct Store {
    name: String,
    bucket: store::Bucket,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("name", &self.name).finish()
    }
}

fn err(name: &str, e: store::Error) -> Error {
    Error::KeyValue(match e {
        store::Error::NoSuchStore => format!("bucket {name:?} does not exist on this host"),
        store::Error::AccessDenied => format!("access to bucket {name:?} denied by the host"),
        store::Error::Other(m) => format!("bucket {name:?}: {m}"),
    })
}

impl Store {
    /// Opens bucket `name` (created on first use on ketch).
    ///
    /// # Errors
    /// [`Error::KeyValue`] when the host has no such store or refuses access (a host without
    /// `wasi:keyvalue` fails earlier: the component does not load).
    pub fn open(name: &str) -> Result<Store, Error> {
        let bucket = store::open(name).map_err(|e| err(name, e))?;
        Ok(Store {
            name: name.to_string(),
            bucket,
        })
    }

    /// Opens the default bucket (identifier `""`).
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_default() -> Result<Store, Error> {
        Self::open("")
    }

    /// The value of `key`, if set.
    ///
    /// # Errors
    /// [`Error::KeyValue`] when the host fails or refuses (e.g. a key over its limit).
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.bucket.get(key).map_err(|e| err(&self.name, e))
    }

    /// The value of `key` as UTF-8 text (invalid UTF-8 is an error).
    ///
    /// # Errors
    /// As [`Store::get`], or [`Error::KeyValue`] when the value is not UTF-8.
    pub fn get_string(&self, key: &str) -> Result<Option<String>, Error> {
        self.get(key)?
            .map(|v| {
                String::from_utf8(v)
                    .map_err(|_| Error::KeyValue(format!("value of {key:?} is not UTF-8")))
            })
            .transpose()
    }

    /// The counter at `key` (as written by [`Store::increment`]); `None` when unset.
    ///
    /// # Errors
    /// As [`Store::get`], or [`Error::KeyValue`] when the value is not a decimal `u64`.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, Error> {
        self.get_string(key)?
            .map(|s| {
                s.parse().map_err(|_| {
                    Error::KeyValue(format!("value of {key:?} is not a counter: {s:?}"))
                })
            })
            .transpose()
    }

    /// Sets `key` to `value`.
    ///
    /// # Errors
    /// [`Error::KeyValue`] when the host fails or refuses (e.g. a value over its limit).
    pub fn set(&self, key: &str, value: impl AsRef<[u8]>) -> Result<(), Error> {
        self.bucket
            .set(key, value.as_ref())
            .map_err(|e| err(&self.name, e))
    }

    /// Deletes `key` (not an error when it is not set).
    ///
    /// # Errors
    /// [`Error::KeyValue`] when the host fails.
    pub fn delete(&self, key: &str) -> Result<(), Error> {
        self.bucket.delete(key).map_err(|e| err(&self.name, e))
    }

    /// Whether `key` is set.
    ///
    /// # Errors
    /// [`Error::KeyValue`] when the host fails.
    pub fn exists(&self, key: &str) -> Result<bool, Error> {
        self.bucket.exists(key).map_err(|e| err(&self.name, e))
    }

    /// Every key in the bucket (all pages of `list-keys`).
    ///
    /// # Errors
    /// [`Error::KeyValue`] when the host fails.
    pub fn keys(&self) -> Result<Vec<String>, Error> {
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .bucket
                .list_keys(cursor)
                .map_err(|e| err(&self.name, e))?;
            keys.extend(page.keys);
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(keys),
            }
        }
    }

    /// Atomically adds `delta` to the counter at `key` (unset counts as 0) and returns the
    /// new value.
    ///
    /// # Errors
    /// [`Error::KeyValue`] when the value is not a counter, it would overflow, or the host
    /// fails.
    pub fn increment(&self, key: &str, delta: u64) -> Result<u64, Error> {
        atomics::increment(&self.bucket, key, delta).map_err(|e| err(&self.name, e))
    }

    /// The values of several keys at once (`None` for unset ones), in order.
    ///
    /// # Errors
    /// [`Error::KeyValue`] when the host fails.
    pub fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, Error> {
        let found = batch::get_many(&self.bucket, keys).map_err(|e| err(&self.name, e))?;
        Ok(found.into_iter().map(|kv| kv.map(|(_, v)| v)).collect())
    }

    /// Sets several keys at once.
    ///
    /// # Errors
    /// [`Error::KeyValue`] when the host fails or refuses one of them.
    pub fn set_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), Error> {
        batch::set_many(&self.bucket, entries).map_err(|e| err(&self.name, e))
    }

    /// The value of `key` parsed as JSON.
    ///
    /// # Errors
    /// As [`Store::get`], or [`Error::Json`] when it does not parse as `T`.
    #[cfg(feature = "json")]
    pub fn get_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        self.get(key)?
            .map(|v| serde_json::from_slice(&v).map_err(|e| Error::Json(format!("{key:?}: {e}"))))
            .transpose()
    }

    /// Sets `key` to `value` serialized as JSON.
    ///
    /// # Errors
    /// As [`Store::set`], or [`Error::Json`] when `value` cannot be serialized.
    #[cfg(feature = "json")]
    pub fn set_json<T: serde::Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), Error> {
        let bytes = serde_json::to_vec(value).map_err(|e| Error::Json(e.to_string()))?;
        self.set(key, bytes)
    }
}
