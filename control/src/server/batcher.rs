//! Group commit: concurrent API writes are gathered into one raft proposal, so one log
//! entry and one fsync carry many writes. openraft 0.9 appends (and fsyncs) once per
//! proposal, so batching has to happen here, above raft.
//!
//! The loop takes whatever writes are queued when the previous proposal returns — under
//! load batches grow by themselves; a lone write goes out at once, waiting for nobody.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::store::command::{Applied, Batch, Write, WriteError};
use crate::store::{Store, StoreError};

/// Most writes in one proposal: bounds a raft entry (objects are ≤ 3 MiB each, typically ~1 KiB).
pub const MAX_BATCH_WRITES: usize = 1024;
/// Most payload bytes gathered into one proposal before it is sent: an entry must reach a
/// follower within one heartbeat interval (see `store::log_store::REPLICATION_BYTES`), so
/// big writes go in entries of their own rather than in one huge one.
pub const MAX_BATCH_BYTES: usize = 1 << 20;
/// Most writes waiting for a proposal: beyond it a write is refused at once (429) instead of
/// queueing without bound (etcd's answer to a flood is its quota; Kubernetes' is
/// `--max-mutating-requests-inflight`). Sixteen full batches.
pub const MAX_QUEUED_WRITES: usize = 16 * MAX_BATCH_WRITES;
/// Most payload bytes waiting for a proposal (objects are up to 3 MiB each).
pub const MAX_QUEUED_BYTES: usize = 64 << 20;

/// Proposals in flight at once. More than one overlaps one batch's apply with the next
/// one's append; more than a couple only shrinks batches.
const IN_FLIGHT: usize = 2;

/// The outcome of one write: the store's verdict on it, or why the batch failed as a whole.
pub type WriteOutcome = Result<Result<Applied, WriteError>, StoreError>;

struct Pending {
    write: Write,
    size: usize,
    reply: oneshot::Sender<WriteOutcome>,
    /// Its place in the queue, given back once it is taken into a batch.
    _ticket: Ticket,
}

/// What waits for a proposal, in writes and bytes.
#[derive(Debug, Default)]
struct Queue {
    writes: AtomicUsize,
    bytes: AtomicUsize,
}

impl Queue {
    /// A place for `writes` writes of `bytes` bytes together, or why there is none.
    fn enter(self: &Arc<Self>, writes: usize, bytes: usize) -> Result<Ticket, StoreError> {
        let w = self.writes.fetch_add(writes, Ordering::Relaxed) + writes;
        let b = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let ticket = Ticket {
            queue: self.clone(),
            writes,
            bytes,
        };
        // Over a limit (and not the only thing waiting: one write larger than the byte
        // limit alone still goes through).
        if (w > MAX_QUEUED_WRITES || b > MAX_QUEUED_BYTES) && w > writes {
            drop(ticket);
            return Err(StoreError::Overloaded(format!(
                "too many writes are waiting ({} writes, {} bytes; the limits are \
                 {MAX_QUEUED_WRITES} and {MAX_QUEUED_BYTES}): retry",
                w - writes,
                b - bytes
            )));
        }
        Ok(ticket)
    }
}

/// Holds writes' place in the [`Queue`] until dropped.
#[derive(Debug)]
struct Ticket {
    queue: Arc<Queue>,
    writes: usize,
    bytes: usize,
}

impl Ticket {
    /// The part of this ticket for one write of `bytes`.
    fn split(&mut self, bytes: usize) -> Ticket {
        self.writes -= 1;
        self.bytes -= bytes;
        Ticket {
            queue: self.queue.clone(),
            writes: 1,
            bytes,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.queue.writes.fetch_sub(self.writes, Ordering::Relaxed);
        self.queue.bytes.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Handle for submitting writes; cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::UnboundedSender<Pending>,
    queue: Arc<Queue>,
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
        Self {
            tx,
            queue: Arc::default(),
        }
    }

    /// Submit one write and wait for its result. `size` is its approximate encoded size.
    pub async fn submit(&self, write: Write, size: usize) -> WriteOutcome {
        let (reply, rx) = oneshot::channel();
        let ticket = self.queue.enter(1, size)?;
        self.tx
            .send(Pending {
                write,
                size,
                reply,
                _ticket: ticket,
            })
            .map_err(|_| StoreError::Unavailable("the store is shutting down".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the store is shutting down".into()))?
    }

    /// Submit several writes as one unit of batching (they land in the same raft entry
    /// unless they exceed a batch limit) and wait for all results, in order.
    pub async fn submit_all(&self, writes: Vec<(Write, usize)>) -> Vec<WriteOutcome> {
        let total = writes.iter().map(|(_, size)| size).sum();
        let mut ticket = match self.queue.enter(writes.len(), total) {
            Ok(t) => t,
            Err(e) => {
                let msg = e.to_string();
                return writes
                    .iter()
                    .map(|_| Err(StoreError::Overloaded(msg.clone())))
                    .collect();
            }
        };
        let mut waits = Vec::with_capacity(writes.len());
        for (write, size) in writes {
            let (reply, rx) = oneshot::channel();
            let pending = Pending {
                write,
                size,
                reply,
                _ticket: ticket.split(size),
            };
            if self.tx.send(pending).is_err() {
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
            // Dropping each `Pending`'s ticket here gives its place in the queue back.
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
        StoreError::Overloaded(m) => StoreError::Overloaded(m.clone()),
        _ => StoreError::Storage(msg.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_refuses_past_its_limits_and_frees_places_as_writes_leave() {
        let q = Arc::new(Queue::default());
        let mut held: Vec<Ticket> = (0..MAX_QUEUED_WRITES)
            .map(|_| q.enter(1, 100).unwrap())
            .collect();
        let err = q.enter(1, 100).unwrap_err();
        assert!(
            matches!(&err, StoreError::Overloaded(m) if m.contains("retry")),
            "{err}"
        );
        held.pop();
        q.enter(1, 100).unwrap();
        drop(held);
        assert_eq!(q.writes.load(Ordering::Relaxed), 0);
        // Bytes: one write bigger than the limit passes alone, not behind others.
        let alone = q.enter(1, MAX_QUEUED_BYTES + 1).unwrap();
        assert!(q.enter(1, 1).is_err());
        drop(alone);
        // A group is one decision; its split tickets give back what they hold.
        let mut group = q.enter(3, 30).unwrap();
        let one = group.split(10);
        assert_eq!(
            (
                q.writes.load(Ordering::Relaxed),
                q.bytes.load(Ordering::Relaxed)
            ),
            (3, 30)
        );
        drop(one);
        assert_eq!(
            (
                q.writes.load(Ordering::Relaxed),
                q.bytes.load(Ordering::Relaxed)
            ),
            (2, 20)
        );
        drop(group);
        assert_eq!(
            (
                q.writes.load(Ordering::Relaxed),
                q.bytes.load(Ordering::Relaxed)
            ),
            (0, 0)
        );
    }
}
