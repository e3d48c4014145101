//! What the replicated log carries: batches of object writes, and what applying one returns.
//!
//! The API layer group-commits: many concurrent client writes travel in one [`Batch`], so
//! one raft entry (and one fsync) covers them all. Each write inside a batch succeeds or
//! fails on its own; a failed write leaves the store untouched.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One raft log entry's application data.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Batch(pub Vec<Write>);

/// Which part of a stored object an update may change.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum UpdateScope {
    /// A kind with a status subresource, written through the main resource: everything but
    /// `status` (which is kept from the stored object).
    Spec,
    /// Written through `/status`: only `status` changes (plus nothing else).
    Status,
    /// A kind without a status subresource: the whole object.
    Whole,
}

/// One object write. Keys are `{plural}/{namespace}/{name}` (`{plural}//{name}` for
/// cluster-scoped kinds), so a namespace's objects of one kind share a prefix.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Write {
    /// Create; fails with [`WriteError::AlreadyExists`] when the key is taken. `object` carries
    /// its uid and creationTimestamp already (set by the API layer, so apply is deterministic).
    Create { key: String, object: Value },
    /// Compare-and-set update: when `object.metadata.resourceVersion` is present it must equal
    /// the stored one.
    Update {
        key: String,
        object: Value,
        scope: UpdateScope,
    },
    /// Delete honoring finalizers: with finalizers present, sets `deletionTimestamp = now`.
    Delete {
        key: String,
        /// RFC 3339 time chosen by the API layer, recorded as `deletionTimestamp`.
        now: String,
        /// When set, the stored resourceVersion must equal it.
        precondition_rv: Option<u64>,
    },
    /// Assign a Pod to a node (the `pods/{name}/binding` subresource): sets `spec.nodeName`
    /// and `PodScheduled=True` in one write, refused when the Pod is already assigned or being
    /// deleted. It checks the invariant that matters (not yet bound) instead of a
    /// resourceVersion, so a status write racing the scheduler does not fail the binding, and
    /// the API server need not read the Pod first.
    Bind {
        key: String,
        /// When set, the stored Pod's uid must equal it (a Pod deleted and re-created under
        /// the same name is not bound by a decision made for the old one).
        uid: Option<String>,
        node: String,
        /// RFC 3339 time chosen by the API layer, the condition's `lastTransitionTime`.
        now: String,
    },
    /// A JSON merge patch (RFC 7386) through `/status` (what a kubelet sends), merged into
    /// the stored object here, at apply, so the API server does not read the object first and
    /// never retries on a concurrent write. Only `patch.status` is merged (the stored status
    /// and the result are admitted by [`ketch_api::decode::admit_status`]);
    /// `patch.metadata.resourceVersion` and `.uid`, when present, are preconditions as for
    /// [`Write::Update`]; anything else in the patch is ignored, as in Kubernetes' status
    /// strategy.
    MergeStatus { key: String, patch: Value },
    /// A JSON merge patch (RFC 7386) through the main resource, merged into the stored object
    /// and admitted ([`ketch_api::admit`]) here, at apply, for the same reasons as
    /// [`Write::MergeStatus`]; then it is an update of `scope` (never `Status`).
    /// `patch.metadata.resourceVersion` and `.uid`, when present, are preconditions. Not for
    /// Services: the API server chooses their node ports from a read of every Service.
    MergePatch {
        key: String,
        patch: Value,
        scope: UpdateScope,
    },
}

impl Write {
    /// The key this write touches.
    pub fn key(&self) -> &str {
        match self {
            Write::Create { key, .. }
            | Write::Update { key, .. }
            | Write::Delete { key, .. }
            | Write::Bind { key, .. }
            | Write::MergeStatus { key, .. }
            | Write::MergePatch { key, .. } => key,
        }
    }
}

/// The kind of change a write made, as a watch reports it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    /// The Kubernetes watch event name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// A write that succeeded: the object as stored now (or as it was when deleted) and the
/// change it made. `event` is `None` when the write changed nothing (no revision consumed).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Applied {
    pub object: Value,
    pub event: Option<EventType>,
    /// `object` as the store serialized it (the bytes it stored and sent to watchers), when
    /// the write changed something: a response sends these instead of encoding the object
    /// again. Local to the server that applied the write.
    #[serde(skip)]
    pub encoded: Option<bytes::Bytes>,
}

/// Why one write was refused. Refusals are deterministic, so every replica agrees.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("already exists")]
    AlreadyExists,
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    /// A field whose value conflicts with other stored objects (a Service's nodePort another
    /// Service holds), reported like a validation error: `{field}: Invalid value: {value}:
    /// {detail}`.
    #[error("{field}: Invalid value: {value}: {detail}")]
    FieldInvalid {
        field: String,
        value: String,
        detail: String,
    },
    /// What a [`Write::MergeStatus`] or [`Write::MergePatch`] made of the object failed
    /// admission.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    Rejected(Vec<ketch_api::validation::FieldError>),
}

/// What applying one [`Batch`] returns: one result per write, in order.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BatchResult(pub Vec<Result<Applied, WriteError>>);
