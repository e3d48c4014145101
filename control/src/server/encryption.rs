//! Secrets encrypted at rest: the one place where a Secret's secret bytes are sealed before
//! they are proposed to raft and opened where a Secret leaves the server.
//!
//! The scheme is Kubernetes' `EncryptionConfiguration` with the `aesgcm` provider: a list of
//! named 256-bit keys, the first encrypts, every one decrypts, and each stored value names
//! the key that sealed it. AES-256-GCM from `ring`, a random 96-bit nonce per encryption,
//! and the object's store key (`secrets/{namespace}/{name}`) as additional authenticated
//! data, so a ciphertext moved onto another Secret does not open.
//!
//! **Why in the API server and not in the store.** The raft log, `log.redb`, `raft.redb`,
//! the `events` table and snapshots all hold the bytes that were proposed; sealing before
//! the proposal is the only point where none of them ever sees plaintext. The store's apply
//! stays key-agnostic: it compares, versions and deletes the sealed object like any other.
//!
//! **Stored shape.** Metadata (labels, finalizers, owner references…), `type` and
//! `immutable` stay in the clear, so selectors, the garbage collector, finalizers and
//! compare-and-set work unchanged. `data`, and the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation (kubectl writes the whole
//! manifest, values included, into it), move into one envelope string under the top-level
//! field [`ENVELOPE_FIELD`]:
//!
//! ```text
//! {"apiVersion":"v1","kind":"Secret","metadata":{…},"type":"Opaque",
//!  "ketch.dev/encrypted":"ketch:enc:aesgcm:v1:<key name>:<base64(nonce ‖ ciphertext ‖ tag)>"}
//! ```
//!
//! The plaintext is the JSON `{"data":{…},"annotations":{"kubectl…":"…"}}` (each part only
//! when present). `stringData` never reaches the store: admission folds it into `data`.
//! Clients cannot send the envelope field (admission refuses unknown fields), so an object
//! carrying one always came from the store. A stored Secret without the envelope was written
//! by a ketch before encryption: it reads as it is, and the leader rewrites it sealed
//! ([`rewrite_stale_secrets`]), as it rewrites every Secret sealed under a key that is no
//! longer the first.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ApiState;
use super::error::ApiError;
use crate::store::command::{Applied, UpdateScope, Write};

/// The top-level field of a stored Secret that holds its sealed fields.
pub const ENVELOPE_FIELD: &str = "ketch.dev/encrypted";

/// Every envelope starts with this, then `<key name>:<base64>`. Versioned, so another
/// provider or layout can be told apart later.
const ENVELOPE_PREFIX: &str = "ketch:enc:aesgcm:v1:";

/// kubectl's three-way-apply annotation: it copies a Secret's manifest, values included.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Store keys of Secrets start with this.
const SECRETS_PREFIX: &str = "secrets/";

/// AES-256 keys are 32 bytes.
const KEY_LEN: usize = 32;

/// Key names: they are written into every envelope, between `:` separators.
const MAX_KEY_NAME: usize = 64;

/// Why keys could not be loaded or a Secret could not be opened. Messages name keys and
/// files, never secret bytes.
#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    #[error("encryption key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("encryption key file {path}: {detail}")]
    Invalid { path: String, detail: String },
    #[error(
        "encryption key file {path} is readable by group or others (mode {mode:04o}): run `chmod 600 {path}` and start again"
    )]
    Permissions { path: String, mode: u32 },
    #[error(
        "the Secret is encrypted with key {key:?}, which is not in the encryption key file (it holds {known}): add key {key:?} back to the file and restart"
    )]
    UnknownKey { key: String, known: String },
    #[error(
        "decrypting the Secret with key {key:?} failed: the stored value was altered, or the key named {key:?} in the file is not the one that encrypted it"
    )]
    Decrypt { key: String },
    #[error("the stored Secret's envelope is malformed: {0}")]
    Malformed(String),
}

/// The key file as written on disk (JSON; YAML reads too). Modeled on Kubernetes'
/// `EncryptionConfiguration` key list: `secret` is the base64 of 32 random bytes.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KeyFile {
    #[serde(default)]
    kind: Option<String>,
    keys: Vec<KeyEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    name: String,
    secret: String,
}

struct NamedKey {
    name: String,
    /// Kept to serialize the keys for a joining server.
    raw: [u8; KEY_LEN],
    key: LessSafeKey,
}

/// The cluster's Secret encryption keys: the first one encrypts, all of them decrypt.
///
/// Cheap to share behind an `Arc`; its `Debug` shows key names only.
pub struct EncryptionKeys {
    keys: Vec<NamedKey>,
    /// Where they were read from, for messages.
    origin: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for EncryptionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptionKeys")
            .field("names", &self.names())
            .field("origin", &self.origin)
            .finish()
    }
}

impl EncryptionKeys {
    /// One fresh random key named `name`.
    ///
    /// # Errors
    /// An invalid name, or the system's random source failed.
    pub fn generate(name: &str) -> Result<Self, EncryptionError> {
        let invalid = |detail: String| EncryptionError::Invalid {
            path: "<generated>".into(),
            detail,
        };
        check_key_name(name).map_err(invalid)?;
        let rng = SystemRandom::new();
        let mut raw = [0u8; KEY_LEN];
        rng.fill(&mut raw)
            .map_err(|_| invalid("the system's random source failed".into()))?;
        Ok(Self {
            keys: vec![named_key(name.to_string(), raw)],
            origin: "<generated>".into(),
            rng,
        })
    }

    /// Parses a key file's contents (JSON or YAML): what [`EncryptionKeys::to_bytes`] writes.
    /// `origin` names where they came from in errors (a path, "the join answer").
    ///
    /// # Errors
    /// Not a key file, no keys, a duplicate or invalid name, a secret that is not the base64
    /// of 32 bytes.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Self, EncryptionError> {
        let invalid = |detail: String| EncryptionError::Invalid {
            path: origin.to_string(),
            detail,
        };
        // YAML 1.2 reads JSON too; the error never quotes the input (it holds keys).
        let file: KeyFile = serde_yaml::from_slice(bytes).map_err(|e| {
            invalid(format!(
                "not a key file ({}): expected {{\"keys\": [{{\"name\": …, \"secret\": <base64 of 32 bytes>}}]}}",
                e.location()
                    .map_or_else(|| "unreadable".to_string(), |l| format!("line {} column {}", l.line(), l.column()))
            ))
        })?;
        if let Some(kind) = &file.kind
            && kind != "EncryptionKeys"
        {
            return Err(invalid(format!(
                "kind {kind:?}: must be \"EncryptionKeys\""
            )));
        }
        if file.keys.is_empty() {
            return Err(invalid("keys: at least one key is required".into()));
        }
        let mut keys: Vec<NamedKey> = Vec::with_capacity(file.keys.len());
        for (i, entry) in file.keys.into_iter().enumerate() {
            check_key_name(&entry.name).map_err(|d| invalid(format!("keys[{i}].name: {d}")))?;
            if keys.iter().any(|k| k.name == entry.name) {
                return Err(invalid(format!(
                    "keys[{i}].name: {:?} appears twice",
                    entry.name
                )));
            }
            let raw: [u8; KEY_LEN] = B64
                .decode(entry.secret.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    invalid(format!(
                        "keys[{i}].secret (key {:?}): must be the base64 of exactly {KEY_LEN} bytes",
                        entry.name
                    ))
                })?;
            keys.push(named_key(entry.name, raw));
        }
        Ok(Self {
            keys,
            origin: origin.to_string(),
            rng: SystemRandom::new(),
        })
    }

    /// The keys as a key file (JSON): for the file itself, and for handing the cluster's
    /// keys to a joining server, which parses them with [`EncryptionKeys::parse`]. The bytes
    /// are the keys themselves: send them over an authenticated, encrypted channel only.
    pub fn to_bytes(&self) -> Vec<u8> {
        let file = KeyFile {
            kind: Some("EncryptionKeys".into()),
            keys: self
                .keys
                .iter()
                .map(|k| KeyEntry {
                    name: k.name.clone(),
                    secret: B64.encode(k.raw),
                })
                .collect(),
        };
        let mut bytes = serde_json::to_vec_pretty(&file).expect("key files serialize");
        bytes.push(b'\n');
        bytes
    }

    /// Reads the key file at `path`.
    ///
    /// # Errors
    /// IO, a file readable by group or others, or one [`EncryptionKeys::parse`] refuses.
    pub fn load(path: &Path) -> Result<Self, EncryptionError> {
        use std::os::unix::fs::PermissionsExt as _;
        let io = |source| EncryptionError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(EncryptionError::Permissions {
                path: path.display().to_string(),
                mode,
            });
        }
        let bytes = std::fs::read(path).map_err(io)?;
        Self::parse(&bytes, &path.display().to_string())
    }

    /// Reads the key file at `path`, or, when there is none, makes one key and writes it
    /// there (0600, created exclusively). Returns the keys and whether the file was created.
    ///
    /// # Errors
    /// As [`EncryptionKeys::load`]; IO writing a new file.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), EncryptionError> {
        match std::fs::symlink_metadata(path) {
            Ok(_) => Ok((Self::load(path)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let name = format!("key-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"));
                let mut keys = Self::generate(&name)?;
                keys.save(path)?;
                keys.origin = path.display().to_string();
                Ok((keys, true))
            }
            Err(source) => Err(EncryptionError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Writes the keys to `path` as a new file, 0600 (a joining server stores the keys it
    /// was given this way). Refuses to replace an existing file: keys are never overwritten.
    ///
    /// # Errors
    /// IO, or the file exists already.
    pub fn save(&self, path: &Path) -> Result<(), EncryptionError> {
        crate::files::write_private_new(path, &self.to_bytes()).map_err(|source| {
            EncryptionError::Io {
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// The key names, the encrypting one first.
    pub fn names(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.name.as_str()).collect()
    }

    /// The key new Secrets are sealed with.
    pub fn primary(&self) -> &str {
        &self.keys[0].name
    }

    /// Seals `plaintext` with the first key: `ketch:enc:aesgcm:v1:<name>:<base64>`.
    ///
    /// # Panics
    /// When the system's random source fails (no safe nonce can be made then).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> String {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .expect("the system's random source works");
        let mut body = Vec::with_capacity(plaintext.len() + AES_256_GCM.tag_len());
        body.extend_from_slice(plaintext);
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut body,
            )
            .expect("AES-GCM seals any input under 64 GiB");
        let mut sealed = Vec::with_capacity(NONCE_LEN + body.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&body);
        format!("{ENVELOPE_PREFIX}{}:{}", key.name, B64.encode(&sealed))
    }

    /// Opens an envelope [`EncryptionKeys::seal`] made, with whichever key it names.
    ///
    /// # Errors
    /// Not an envelope, a key not in the list, or authentication failed (tampered, wrong
    /// key under that name, or another `aad`).
    pub fn open(&self, aad: &[u8], envelope: &str) -> Result<Vec<u8>, EncryptionError> {
        let (name, body) = split_envelope(envelope)?;
        let key = self.keys.iter().find(|k| k.name == name).ok_or_else(|| {
            EncryptionError::UnknownKey {
                key: name.to_string(),
                known: format!("{:?} in {}", self.names(), self.origin),
            }
        })?;
        let mut buf = B64
            .decode(body)
            .map_err(|_| EncryptionError::Malformed("the ciphertext is not base64".into()))?;
        if buf.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(EncryptionError::Malformed(
                "the ciphertext is truncated".into(),
            ));
        }
        let mut sealed = buf.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&buf)
            .map_err(|_| EncryptionError::Malformed("bad nonce".into()))?;
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(aad), &mut sealed)
            .map_err(|_| EncryptionError::Decrypt {
                key: name.to_string(),
            })?;
        Ok(plain.to_vec())
    }

    /// Seals a Secret's secret fields (`data`, the last-applied annotation) into
    /// [`ENVELOPE_FIELD`], in place. `store_key` is its `secrets/{ns}/{name}`. An object
    /// that already carries an envelope came from the store and is left as it is.
    pub fn seal_secret(&self, store_key: &str, object: &mut Value) {
        let Some(obj) = object.as_object_mut() else {
            return;
        };
        if obj.contains_key(ENVELOPE_FIELD) {
            return;
        }
        let mut sealed = Map::new();
        if let Some(data) = obj.remove("data") {
            sealed.insert("data".into(), data);
        }
        if let Some(Value::Object(meta)) = obj.get_mut("metadata")
            && let Some(Value::Object(annotations)) = meta.get_mut("annotations")
            && let Some(last) = annotations.remove(LAST_APPLIED)
        {
            if annotations.is_empty() {
                meta.remove("annotations");
            }
            sealed.insert(
                "annotations".into(),
                Value::Object(Map::from_iter([(LAST_APPLIED.to_string(), last)])),
            );
        }
        let plain = serde_json::to_vec(&sealed).expect("JSON values always serialize");
        obj.insert(
            ENVELOPE_FIELD.into(),
            Value::String(self.seal(store_key.as_bytes(), &plain)),
        );
    }

    /// The inverse of [`EncryptionKeys::seal_secret`], in place. A Secret without an
    /// envelope (stored by a ketch before encryption) is left as it is.
    ///
    /// # Errors
    /// See [`EncryptionKeys::open`]; a sealed part that is not what `seal_secret` writes.
    pub fn open_secret(&self, store_key: &str, object: &mut Value) -> Result<(), EncryptionError> {
        let Some(obj) = object.as_object_mut() else {
            return Ok(());
        };
        let Some(envelope) = obj.remove(ENVELOPE_FIELD) else {
            return Ok(());
        };
        let envelope = envelope.as_str().ok_or_else(|| {
            EncryptionError::Malformed(format!("{ENVELOPE_FIELD} is not a string"))
        })?;
        let plain = self.open(store_key.as_bytes(), envelope)?;
        let sealed: Map<String, Value> = serde_json::from_slice(&plain)
            .map_err(|_| EncryptionError::Malformed("the plaintext is not a JSON object".into()))?;
        for (field, value) in sealed {
            match (field.as_str(), value) {
                ("data", data) => {
                    obj.insert("data".into(), data);
                }
                ("annotations", Value::Object(sealed_annotations)) => {
                    let meta = obj
                        .entry("metadata")
                        .or_insert_with(|| Value::Object(Map::new()));
                    let annotations = meta
                        .as_object_mut()
                        .ok_or_else(|| {
                            EncryptionError::Malformed("metadata is not an object".into())
                        })?
                        .entry("annotations")
                        .or_insert_with(|| Value::Object(Map::new()));
                    let annotations = annotations.as_object_mut().ok_or_else(|| {
                        EncryptionError::Malformed("metadata.annotations is not an object".into())
                    })?;
                    annotations.extend(sealed_annotations);
                }
                (other, _) => {
                    return Err(EncryptionError::Malformed(format!(
                        "unexpected sealed field {other:?}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Whether a stored Secret must be rewritten: it has no envelope (stored before
    /// encryption), or its envelope is sealed with a key other than the first.
    pub fn needs_rewrite(&self, stored: &Value) -> bool {
        let sealed_with = stored
            .get(ENVELOPE_FIELD)
            .and_then(Value::as_str)
            .and_then(|e| split_envelope(e).ok())
            .map(|(name, _)| name);
        sealed_with != Some(self.primary())
    }
}

fn named_key(name: String, raw: [u8; KEY_LEN]) -> NamedKey {
    let key =
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &raw).expect("32 bytes is an AES-256 key"));
    NamedKey { name, raw, key }
}

fn check_key_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_KEY_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?}: a key name is 1 to {MAX_KEY_NAME} of [A-Za-z0-9._-]"
        ))
    }
}

/// `(key name, base64 body)` of an envelope.
fn split_envelope(envelope: &str) -> Result<(&str, &str), EncryptionError> {
    envelope
        .strip_prefix(ENVELOPE_PREFIX)
        .and_then(|rest| rest.split_once(':'))
        .ok_or_else(|| {
            EncryptionError::Malformed(format!(
                "{ENVELOPE_FIELD} does not start with {ENVELOPE_PREFIX:?}<key name>:"
            ))
        })
}

/// The default key file for a data dir: `<data-dir>.encryption-key`, beside the data dir and
/// not in it. Backups and copies of a data dir (and a data dir handed to someone to debug)
/// then do not carry the key that opens the Secrets in it; `--encryption-key-file` puts it
/// elsewhere (another volume, a secrets mount). A sibling rather than `/etc/ketch` because
/// `ketch up` and the tests run unprivileged, with many data dirs on one machine.
pub fn default_key_file(data_dir: &Path) -> PathBuf {
    let mut name = data_dir
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_else(|| "ketch".into());
    name.push(".encryption-key");
    data_dir.with_file_name(name)
}

fn is_secret_key(key: &str) -> bool {
    key.starts_with(SECRETS_PREFIX)
}

/// A stored Secret's own store key, from its metadata (which the store keeps equal to the
/// key it is stored under): the associated data it was sealed with. Lists and watches know
/// only a prefix.
fn own_key(object: &Value) -> Result<String, ApiError> {
    let field = |f: &str| {
        object
            .get("metadata")
            .and_then(|m| m.get(f))
            .and_then(Value::as_str)
    };
    match (field("namespace"), field("name")) {
        (Some(ns), Some(name)) => Ok(format!("{SECRETS_PREFIX}{ns}/{name}")),
        _ => Err(ApiError::Internal(
            "a stored Secret has no metadata.namespace or metadata.name".into(),
        )),
    }
}

fn api_error(e: &EncryptionError) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// Seals the Secret a write carries, before it is proposed (nothing else is touched). An
/// update whose secret fields are what is stored, under the first key, keeps the stored
/// envelope: a fresh nonce would make an unchanged Secret look changed (a new
/// resourceVersion and a watch event for nothing). Reusing it is right even if the read is
/// stale: the envelope holds exactly the plaintext this write wants, for this key.
pub(super) fn seal_write(st: &ApiState, write: &mut Write) {
    let keys = &st.encryption;
    match write {
        Write::Create { key, object } if is_secret_key(key) => keys.seal_secret(key, object),
        Write::Update { key, object, .. } if is_secret_key(key) => {
            if object.get(ENVELOPE_FIELD).is_some() {
                return;
            }
            let reused = st.store.get(key).ok().flatten().and_then(|mut stored| {
                if keys.needs_rewrite(&stored) {
                    return None;
                }
                let envelope = stored.get(ENVELOPE_FIELD)?.as_str()?.to_string();
                keys.open_secret(key, &mut stored).ok()?;
                (sealed_parts(&stored) == sealed_parts(object)).then_some(envelope)
            });
            match reused {
                Some(envelope) => {
                    let obj = object
                        .as_object_mut()
                        .expect("admitted objects are objects");
                    obj.remove("data");
                    if let Some(Value::Object(meta)) = obj.get_mut("metadata")
                        && let Some(Value::Object(a)) = meta.get_mut("annotations")
                    {
                        a.remove(LAST_APPLIED);
                        if a.is_empty() {
                            meta.remove("annotations");
                        }
                    }
                    obj.insert(ENVELOPE_FIELD.into(), Value::String(envelope));
                }
                None => keys.seal_secret(key, object),
            }
        }
        _ => {}
    }
}

/// What a Secret's envelope holds, as a comparable value.
fn sealed_parts(secret: &Value) -> (Option<&Value>, Option<&Value>) {
    (
        secret.get("data"),
        secret
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(LAST_APPLIED)),
    )
}

/// Opens a Secret on its way out of the server; `key` is its store key or the prefix it
/// was listed or watched under (objects of other kinds pass through).
///
/// # Errors
/// [`ApiError::Internal`] naming the encryption key when it cannot be opened.
pub(super) fn reveal(st: &ApiState, key: &str, object: &mut Value) -> Result<(), ApiError> {
    if is_secret_key(key) && object.get(ENVELOPE_FIELD).is_some() {
        st.encryption
            .open_secret(&own_key(object)?, object)
            .map_err(|e| api_error(&e))?;
    }
    Ok(())
}

/// [`reveal`] for a write's result: the store's encoding of a Secret is the sealed one, so
/// it is dropped and the response encoded from the opened object.
pub(super) fn reveal_applied(
    st: &ApiState,
    key: &str,
    applied: &mut Applied,
) -> Result<(), ApiError> {
    if is_secret_key(key) {
        applied.encoded = None;
        reveal(st, key, &mut applied.object)?;
    }
    Ok(())
}

/// [`reveal`] for one watch line (`{"type":…,"object":…}\n`) of the object at `key`. A
/// Secret that cannot be opened becomes an `ERROR` event carrying the reason, as 410
/// Expired: the history may hold events sealed with a key since removed from the file (a
/// completed rotation), and a client that relists gets the Secrets as rewritten since.
pub(super) fn reveal_line(st: &ApiState, key: &str, line: Bytes) -> Bytes {
    if !is_secret_key(key) {
        return line;
    }
    let opened = serde_json::from_slice::<Map<String, Value>>(&line)
        .map_err(|e| ApiError::Internal(format!("a watch event is not JSON: {e}")))
        .and_then(|mut event| {
            if let Some(object) = event.get_mut("object") {
                reveal(st, key, object)?;
            }
            Ok(Value::Object(event))
        });
    let event = opened.unwrap_or_else(|e| {
        serde_json::json!({"type": "ERROR", "object": {
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": format!("{e}; list again to resume"), "reason": "Expired", "code": 410}})
    });
    let mut bytes = serde_json::to_vec(&event).expect("JSON values always serialize");
    bytes.push(b'\n');
    bytes.into()
}

/// Whether this key belongs to a Secret, for the handlers that must open Secrets they read.
pub(super) fn is_secret(key: &str) -> bool {
    is_secret_key(key)
}

/// Rewrites every stored Secret that is not sealed under the first key: plaintext ones a
/// ketch before encryption stored (the upgrade), and ones under an older key (rotation).
/// Run by the leader when it takes office (so at every start of a one-server cluster).
/// Each rewrite is a compare-and-set on the resourceVersion read; one that lost to a
/// concurrent write is left alone (that write sealed it). Returns (rewritten, failed).
///
/// # Errors
/// The read barrier or the listing failed (this server is not the leader any more, say).
pub async fn rewrite_stale_secrets(st: &ApiState) -> Result<(usize, usize), ApiError> {
    st.store.read_barrier().await?;
    let (_, stored) = st.store.list(SECRETS_PREFIX)?;
    let mut writes = Vec::new();
    let mut failed = 0;
    for mut object in stored {
        if !st.encryption.needs_rewrite(&object) {
            continue;
        }
        let Ok(key) = own_key(&object) else {
            continue;
        };
        if let Err(e) = st.encryption.open_secret(&key, &mut object) {
            tracing::error!(secret = %key, error = %e, "cannot re-encrypt a Secret");
            failed += 1;
            continue;
        }
        st.encryption.seal_secret(&key, &mut object);
        let size = object.to_string().len();
        writes.push((
            Write::Update {
                key,
                object,
                scope: UpdateScope::Whole,
            },
            size,
        ));
    }
    let mut rewritten = 0;
    for result in st.batcher.submit_all(writes).await {
        match result {
            Ok(Ok(_)) => rewritten += 1,
            // Written (sealed) or deleted by someone else since the read.
            Ok(Err(crate::store::command::WriteError::Conflict(_)))
            | Ok(Err(crate::store::command::WriteError::NotFound)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "re-encrypting a Secret");
                failed += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok((rewritten, failed))
}

/// Runs [`rewrite_stale_secrets`] each time this server becomes the leader (`leadership`
/// as [`crate::runner::leader::leadership`] gives it), logging what it did.
pub fn spawn_rewriter(st: Arc<ApiState>, mut leadership: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        loop {
            if *leadership.borrow_and_update() {
                match rewrite_stale_secrets(&st).await {
                    Ok((0, 0)) => {}
                    Ok((rewritten, failed)) => tracing::info!(
                        rewritten,
                        failed,
                        key = st.encryption.primary(),
                        "Secrets re-encrypted with the first encryption key"
                    ),
                    Err(e) => tracing::warn!(error = %e, "re-encrypting Secrets"),
                }
            }
            if leadership.changed().await.is_err() {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "secrets/default/db";

    fn keys(names: &[&str]) -> EncryptionKeys {
        let mut all = Vec::new();
        for n in names {
            all.extend(EncryptionKeys::generate(n).unwrap().keys);
        }
        EncryptionKeys {
            keys: all,
            origin: "test".into(),
            rng: SystemRandom::new(),
        }
    }

    /// `a` with `b`'s keys appended (the same key material under the same names).
    fn with(a: &EncryptionKeys, b: &EncryptionKeys) -> EncryptionKeys {
        let mut bytes: Value = serde_json::from_slice(&a.to_bytes()).unwrap();
        let more: Value = serde_json::from_slice(&b.to_bytes()).unwrap();
        let list = bytes["keys"].as_array_mut().unwrap();
        list.extend(more["keys"].as_array().unwrap().iter().cloned());
        EncryptionKeys::parse(&serde_json::to_vec(&bytes).unwrap(), "test").unwrap()
    }

    fn secret() -> Value {
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "namespace": "default", "labels": {"app": "db"},
                "annotations": {(LAST_APPLIED): "{\"data\":{\"password\":\"aHVudGVyMg==\"}}", "team": "x"}},
            "type": "Opaque", "data": {"password": "aHVudGVyMg=="}})
    }

    #[test]
    fn a_sealed_secret_opens_to_the_same_object_and_shows_no_value() {
        let k = keys(&["one"]);
        let mut s = secret();
        k.seal_secret(KEY, &mut s);
        let text = s.to_string();
        assert!(!text.contains("aHVudGVyMg"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(s.get("data").is_none());
        assert_eq!(
            s["metadata"]["labels"],
            json!({"app": "db"}),
            "labels stay readable"
        );
        assert_eq!(s["metadata"]["annotations"], json!({"team": "x"}));
        assert!(
            s[ENVELOPE_FIELD]
                .as_str()
                .unwrap()
                .starts_with("ketch:enc:aesgcm:v1:one:")
        );
        k.open_secret(KEY, &mut s).unwrap();
        assert_eq!(s, secret());
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let k = keys(&["one"]);
        assert_ne!(k.seal(b"k", b"same"), k.seal(b"k", b"same"));
    }

    #[test]
    fn an_envelope_opens_only_with_its_own_key_material() {
        let mut s = secret();
        keys(&["one"]).seal_secret(KEY, &mut s);
        // Another key under the same name: authentication fails, with the key named.
        let err = keys(&["one"]).open_secret(KEY, &mut s.clone()).unwrap_err();
        assert!(
            matches!(&err, EncryptionError::Decrypt { key } if key == "one"),
            "{err}"
        );
        assert!(err.to_string().contains("\"one\""));
    }

    #[test]
    fn a_missing_key_is_named_in_the_error() {
        let mut s = secret();
        keys(&["old"]).seal_secret(KEY, &mut s);
        let err = keys(&["new"]).open_secret(KEY, &mut s).unwrap_err();
        assert!(
            matches!(&err, EncryptionError::UnknownKey { key, .. } if key == "old"),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.contains("\"old\"") && msg.contains("\"new\""), "{msg}");
    }

    #[test]
    fn a_tampered_envelope_or_one_moved_to_another_secret_is_refused() {
        let k = keys(&["one"]);
        let mut s = secret();
        k.seal_secret(KEY, &mut s);
        let envelope = s[ENVELOPE_FIELD].as_str().unwrap().to_string();
        let (head, body) = envelope.rsplit_once(':').unwrap();
        let mut raw = B64.decode(body).unwrap();
        let last = raw.len() - 20;
        raw[last] ^= 1;
        let mut tampered = s.clone();
        tampered[ENVELOPE_FIELD] = json!(format!("{head}:{}", B64.encode(&raw)));
        assert!(matches!(
            k.open_secret(KEY, &mut tampered),
            Err(EncryptionError::Decrypt { .. })
        ));
        assert!(matches!(
            k.open_secret("secrets/default/other", &mut s.clone()),
            Err(EncryptionError::Decrypt { .. })
        ));
        let mut garbage = s.clone();
        garbage[ENVELOPE_FIELD] = json!("plain text");
        assert!(matches!(
            k.open_secret(KEY, &mut garbage),
            Err(EncryptionError::Malformed(_))
        ));
    }

    #[test]
    fn rotation_the_first_key_encrypts_and_every_key_decrypts() {
        let old = keys(&["old"]);
        let new = keys(&["new"]);
        let mut before = secret();
        old.seal_secret(KEY, &mut before);
        // Step 1: the new key added first; what the old key sealed still reads.
        let both = with(&new, &old);
        assert_eq!(both.primary(), "new");
        assert!(both.needs_rewrite(&before));
        let mut read = before.clone();
        both.open_secret(KEY, &mut read).unwrap();
        assert_eq!(read, secret());
        // Step 2: re-encryption seals with the first key.
        both.seal_secret(KEY, &mut read);
        assert!(read[ENVELOPE_FIELD].as_str().unwrap().contains(":new:"));
        assert!(!both.needs_rewrite(&read));
        // Step 3: the old key removed; the rewritten Secret reads, the stale copy names its key.
        new.open_secret(KEY, &mut read).unwrap();
        assert_eq!(read, secret());
        assert!(matches!(
            new.open_secret(KEY, &mut before),
            Err(EncryptionError::UnknownKey { key, .. }) if key == "old"
        ));
        // The old key first again: it encrypts (the order is the list's, not the age's).
        let back = with(&old, &new);
        let mut s = secret();
        back.seal_secret(KEY, &mut s);
        assert!(s[ENVELOPE_FIELD].as_str().unwrap().contains(":old:"));
    }

    #[test]
    fn a_plaintext_secret_from_an_older_ketch_reads_as_it_is_and_needs_a_rewrite() {
        let k = keys(&["one"]);
        let mut s = secret();
        k.open_secret(KEY, &mut s).unwrap();
        assert_eq!(s, secret());
        assert!(k.needs_rewrite(&s));
    }

    #[test]
    fn a_secret_without_data_still_gets_an_envelope() {
        let k = keys(&["one"]);
        let mut s = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "e", "namespace": "default"}});
        let original = s.clone();
        k.seal_secret(KEY, &mut s);
        assert!(!k.needs_rewrite(&s));
        k.open_secret(KEY, &mut s).unwrap();
        assert_eq!(s, original);
    }

    #[test]
    fn key_files_round_trip_and_bad_ones_are_refused_without_echoing_secrets() {
        let k = keys(&["a", "b"]);
        let parsed = EncryptionKeys::parse(&k.to_bytes(), "test").unwrap();
        assert_eq!(parsed.names(), ["a", "b"]);
        let mut s = secret();
        k.seal_secret(KEY, &mut s);
        parsed.open_secret(KEY, &mut s).unwrap();
        let yaml = b"keys:\n- name: y\n  secret: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        assert_eq!(EncryptionKeys::parse(yaml, "t").unwrap().names(), ["y"]);
        for bad in [
            &b"{\"keys\": []}"[..],
            b"{\"keys\": [{\"name\": \"a\", \"secret\": \"c2hvcnQ=\"}]}",
            b"{\"keys\": [{\"name\": \"a:b\", \"secret\": \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"}]}",
            b"not a key file",
        ] {
            let err = EncryptionKeys::parse(bad, "t").unwrap_err().to_string();
            assert!(!err.contains("c2hvcnQ"), "{err}");
        }
        let dup = [k.to_bytes(), k.to_bytes()];
        let a: Value = serde_json::from_slice(&dup[0]).unwrap();
        let twice = json!({"keys": [a["keys"][0], a["keys"][0]]});
        assert!(
            EncryptionKeys::parse(twice.to_string().as_bytes(), "t")
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        assert!(!format!("{k:?}").contains(&B64.encode(k.keys[0].raw)));
    }

    #[test]
    fn the_key_file_is_made_once_private_and_a_loose_one_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = default_key_file(&dir.path().join("data"));
        assert_eq!(path, dir.path().join("data.encryption-key"));
        let (made, created) = EncryptionKeys::load_or_create(&path).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, created) = EncryptionKeys::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(again.names(), made.names());
        assert!(made.save(&path).is_err(), "keys are never overwritten");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = EncryptionKeys::load(&path).unwrap_err().to_string();
        assert!(
            err.contains(&format!("chmod 600 {}", path.display())),
            "{err}"
        );
    }

    /// Through a real server and its HTTP API.
    mod through_the_api {
        use super::super::ENVELOPE_FIELD;
        use crate::server::{Server, ServerOptions};
        use crate::store::command::{Batch, Write};
        use ketch_api::resource::SECRETS;
        use ketch_client::{Client, ListParams};
        use serde_json::{Value, json};
        use std::path::Path;
        use std::time::Duration;

        async fn start(data: &Path) -> (Server, Client) {
            let server = Server::start(ServerOptions::new(data, "127.0.0.1:0".parse().unwrap()))
                .await
                .unwrap();
            let client = server.client().unwrap();
            (server, client)
        }

        fn stored(server: &Server, name: &str) -> Value {
            server
                .store()
                .get(&format!("secrets/default/{name}"))
                .unwrap()
                .unwrap()
        }

        fn assert_sealed(object: &Value) {
            let text = object.to_string();
            assert!(object.get("data").is_none(), "{text}");
            assert!(
                object[ENVELOPE_FIELD]
                    .as_str()
                    .is_some_and(|e| e.starts_with("ketch:enc:aesgcm:v1:")),
                "{text}"
            );
            for value in ["aHVudGVyMg", "hunter2", "YWRtaW4"] {
                assert!(!text.contains(value), "{value} in {text}");
            }
        }

        /// The first watch line about `name`, from a watch replaying from revision 1.
        async fn watched(client: &Client, name: &str) -> Value {
            let mut resp = client
                .watch_once(&SECRETS, Some("default"), &ListParams::default(), Some("1"))
                .await
                .unwrap();
            let mut buf = Vec::new();
            loop {
                let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
                    .await
                    .expect("a watch event in time")
                    .unwrap()
                    .expect("the stream goes on");
                buf.extend_from_slice(&chunk);
                for line in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    if let Ok(ev) = serde_json::from_slice::<Value>(line)
                        && ev["object"]["metadata"]["name"] == name
                    {
                        return ev;
                    }
                }
            }
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_api_seals_secrets_before_the_store_and_opens_them_on_every_way_out() {
            let dir = tempfile::tempdir().unwrap();
            let (server, client) = start(&dir.path().join("data")).await;
            let ns = Some("default");
            let created = client
                .create(
                    &SECRETS,
                    ns,
                    &json!({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "db", "labels": {"app": "db"}},
                    "stringData": {"password": "hunter2"}}),
                )
                .await
                .unwrap();
            assert_eq!(created["data"], json!({"password": "aHVudGVyMg=="}));
            assert!(created.get(ENVELOPE_FIELD).is_none());
            assert_sealed(&stored(&server, "db"));
            assert_eq!(
                stored(&server, "db")["metadata"]["labels"],
                json!({"app": "db"})
            );

            let got = client.get(&SECRETS, ns, "db").await.unwrap();
            assert_eq!(got["data"], json!({"password": "aHVudGVyMg=="}));
            let all = client
                .list(&SECRETS, None, &ListParams::default())
                .await
                .unwrap();
            assert_eq!(all["items"][0]["data"], json!({"password": "aHVudGVyMg=="}));
            let selected = ListParams {
                label_selector: Some("app=db".into()),
                field_selector: None,
            };
            let some = client.list(&SECRETS, ns, &selected).await.unwrap();
            assert_eq!(
                some["items"].as_array().unwrap().len(),
                1,
                "labels stay selectable"
            );
            assert_eq!(
                some["items"][0]["data"],
                json!({"password": "aHVudGVyMg=="})
            );
            let event = watched(&client, "db").await;
            assert_eq!(event["type"], "ADDED");
            assert_eq!(event["object"]["data"], json!({"password": "aHVudGVyMg=="}));

            // A merge patch is merged by the API server, which holds the keys.
            let patched = client
                .merge_patch(
                    &SECRETS,
                    ns,
                    "db",
                    &json!({"data": {"user": "YWRtaW4="}}),
                    false,
                )
                .await
                .unwrap();
            assert_eq!(
                patched["data"],
                json!({"password": "aHVudGVyMg==", "user": "YWRtaW4="})
            );
            assert_sealed(&stored(&server, "db"));
            // Writing the same Secret again is no change: the stored envelope is kept.
            let same = client.replace(&SECRETS, ns, "db", &patched).await.unwrap();
            assert_eq!(
                same["metadata"]["resourceVersion"],
                patched["metadata"]["resourceVersion"]
            );
            let changed = client
                .merge_patch(&SECRETS, ns, "db", &json!({"data": {"user": null}}), false)
                .await
                .unwrap();
            assert_eq!(changed["data"], json!({"password": "aHVudGVyMg=="}));
            let deleted = client.delete(&SECRETS, ns, "db").await.unwrap();
            assert_eq!(deleted["data"], json!({"password": "aHVudGVyMg=="}));
            server.stop().await.unwrap();
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_plaintext_secret_of_an_older_ketch_reads_and_is_sealed_at_the_next_start() {
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path().join("data");
            let (server, client) = start(&data).await;
            // Stored as a ketch before encryption did: plaintext, past the API server.
            let plain = json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "old", "namespace": "default", "uid": "u-1",
                    "creationTimestamp": "2026-01-01T00:00:00Z"},
                "data": {"password": "aHVudGVyMg=="}});
            let results = server
                .store()
                .propose(Batch(vec![Write::Create {
                    key: "secrets/default/old".into(),
                    object: plain,
                }]))
                .await
                .unwrap();
            assert!(results.0[0].is_ok());
            let read = client.get(&SECRETS, Some("default"), "old").await.unwrap();
            assert_eq!(read["data"], json!({"password": "aHVudGVyMg=="}));
            server.stop().await.unwrap();

            let (server, client) = start(&data).await;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while stored(&server, "old").get(ENVELOPE_FIELD).is_none() {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "not sealed at start"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_sealed(&stored(&server, "old"));
            let read = client.get(&SECRETS, Some("default"), "old").await.unwrap();
            assert_eq!(read["data"], json!({"password": "aHVudGVyMg=="}));
            server.stop().await.unwrap();
        }
    }
}
