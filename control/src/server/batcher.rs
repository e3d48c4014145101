//! Group commit: concurrent API writes are gathered into one raft proposal, so one log
//! entry and one fsync carry many writes. openraft 0.9 appends (and fsyncs) once per
//! proposal, so batching has to happen here, above raft.
//!
//! The loop takes whatever writes are queued when the previous proposal returns — under
//! load batches grow by themselves; a lone write goes out at once, waiting for nobody.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::store::command::{Applied, Batch, Write, WriteError};
use crate::store::{Store, StoreError};

/// Most writes in one proposal: bounds a raft entry (objects are ≤ 3 MiB each, typically ~1 KiB).
pub const MAX_BATCH_WRITES: usize = 1024;
/// Most payload bytes gathered into one proposal before it is sent: an entry must reach a
/// follower within one heartbeat interval (see `store::log_store::REPLICATION_BYTES`), so
/// big writes go in entries of their own rather than in one huge one.
pub const MAX_BATCH_BYTES: usize = 1 << 20;
/// Proposals in flight at once. More than one overlaps one batch's apply with the next
/// one's append; more than a couple only shrinks batches.
const IN_FLIGHT: usize = 2;

/// The outcome of one write: the store's verdict on it, or why the batch failed as a whole.
pub type WriteOutcome = Result<Result<Applied, WriteError>, StoreError>;

struct Pending {
    write: Write,
    size: usize,
    reply: oneshot::Sender<WriteOutcome>,
}

/// Handle for submitting writes; cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::UnboundedSender<Pending>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl Batcher {
    /// Start the batching loop on the current runtime.
    pub fn spawn(store: Store) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(store, rx));
        Self { tx }
    }

    /// Submit one write and wait for its result. `size` is its approximate encoded size.
    pub async fn submit(&self, write: Write, size: usize) -> WriteOutcome {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { write, size, reply })
            .map_err(|_| StoreError::Unavailable("the store is shutting down".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the store is shutting down".into()))?
    }

    /// Submit several writes as one unit of batching (they land in the same raft entry
    /// unless they exceed a batch limit) and wait for all results, in order.
    pub async fn submit_all(&self, writes: Vec<(Write, usize)>) -> Vec<WriteOutcome> {
        let mut waits = Vec::with_capacity(writes.len());
        for (write, size) in writes {
            let (reply, rx) = oneshot::channel();
            if self.tx.send(Pending { write, size, reply }).is_err() {
                waits.push(None);
            } else {
                waits.push(Some(rx));
            }
        }
        let mut out = Vec::with_capacity(waits.len());
        for w in waits {
            out.push(match w {
                Some(rx) => rx.await.unwrap_or_else(|_| {
                    Err(StoreError::Unavailable("the store is shutting down".into()))
                }),
                None => Err(StoreError::Unavailable("the store is shutting down".into())),
            });
        }
        out
    }
}

async fn run(store: Store, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        // Take everything that queued while we waited for a permit, up to the limits.
        let mut bytes = first.size;
        let mut pending = vec![first];
        while pending.len() < MAX_BATCH_WRITES && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.size;
                    pending.push(p);
                }
                Err(_) => break,
            }
        }
        let store = store.clone();
        tokio::spawn(async move {
            let (writes, replies): (Vec<_>, Vec<_>) =
                pending.into_iter().map(|p| (p.write, p.reply)).unzip();
            match store.propose(Batch(writes)).await {
                Ok(result) => {
                    for (reply, r) in replies.into_iter().zip(result.0) {
                        let _ = reply.send(Ok(r));
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    for reply in replies {
                        let _ = reply.send(Err(clone_store_error(&e, &msg)));
                    }
                }
            }
            drop(permit);
        });
    }
}

/// A batch-wide failure goes to every waiter; StoreError is not Clone (it may carry
/// sources), so rebuild the variants that callers act on.
fn clone_store_error(e: &StoreError, msg: &str) -> StoreError {
    match e {
        StoreError::NotLeader { leader } => StoreError::NotLeader {
            leader: leader.clone(),
        },
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        _ => StoreError::Storage(msg.to_string()),
    }
}
