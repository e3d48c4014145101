//! Runs the [`ControlPlane`] only while this server is the raft leader.
//!
//! With several servers exactly one set of controllers and one scheduler may act. Raft
//! already elects one leader, so the control plane follows raft's leadership instead of a
//! separate Lease: it starts when this server becomes leader (confirmed by a read barrier)
//! and stops as soon as raft reports another state or leader. Its client sends [`NO_FORWARD_HEADER`], so a write it
//! issues after this server lost leadership fails here instead of being forwarded to the new
//! leader, whose control plane is already acting; and a write the old leader accepted but
//! could not commit in its term is never applied.
//!
//! [`NO_FORWARD_HEADER`]: crate::server::cluster::NO_FORWARD_HEADER

use std::time::Duration;

use ketch_client::Client;
use tokio::sync::watch;

use super::{ControlOptions, ControlPlane};
use crate::store::Store;

/// Whether a raft state means "act as the control plane" (pure).
pub fn leads(state: openraft::ServerState, leader: Option<u64>, me: u64) -> bool {
    state == openraft::ServerState::Leader && leader == Some(me)
}

/// The leadership-following control plane; [`LeaderGated::stop`] ends it.
pub struct LeaderGated {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl LeaderGated {
    /// Follow `leadership` (true while this server leads) and run a [`ControlPlane`] over
    /// `client` whenever it is true.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(
        client: Client,
        opts: ControlOptions,
        mut leadership: watch::Receiver<bool>,
    ) -> LeaderGated {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut running: Option<ControlPlane> = None;
            loop {
                let leading = *leadership.borrow_and_update();
                match (leading, running.take()) {
                    (true, None) => {
                        tracing::info!("this server leads: starting the controllers and scheduler");
                        running = Some(ControlPlane::start(client.clone(), opts.clone()));
                    }
                    (false, Some(cp)) => {
                        tracing::info!("leadership lost: stopping the controllers and scheduler");
                        cp.stop().await;
                    }
                    (_, keep) => running = keep,
                }
                tokio::select! {
                    changed = leadership.changed() => if changed.is_err() { break },
                    _ = stopped.wait_for(|s| *s) => break,
                }
            }
            if let Some(cp) = running {
                cp.stop().await;
            }
        });
        LeaderGated { stop, task }
    }

    /// Stop the control plane if it runs, and stop following leadership.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// A `bool` channel that is true while this server leads: the input of
/// [`LeaderGated::start`]. It turns true only once a read barrier confirmed the leadership
/// with a quorum — a restarted leader restores its old term's leadership from its vote and
/// believes it until it hears of the newer term — and false as soon as raft reports another
/// state or leader. Fed by a task that ends with the store's raft.
pub fn leadership(store: Store) -> watch::Receiver<bool> {
    let lead_of = |m: &openraft::RaftMetrics<u64, openraft::BasicNode>| {
        leads(m.state, m.current_leader, m.id)
    };
    let (tx, rx) = watch::channel(false);
    let mut metrics = store.metrics();
    tokio::spawn(async move {
        loop {
            let mut now = lead_of(&metrics.borrow_and_update());
            if now && !*tx.borrow() {
                // Retry a failed barrier while raft still says so; a change of state or
                // leader ends the wait instead.
                loop {
                    tokio::select! {
                        confirmed = store.read_barrier() => {
                            if confirmed.is_ok() { break; }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        changed = metrics.changed() => {
                            if changed.is_err() { return; }
                            if !lead_of(&metrics.borrow_and_update()) { now = false; break; }
                        }
                    }
                }
            }
            tx.send_if_modified(|v| std::mem::replace(v, now) != now);
            if tx.is_closed() || metrics.changed().await.is_err() {
                return;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use openraft::ServerState;

    use super::leads;

    #[test]
    fn only_the_acknowledged_leader_leads() {
        assert!(leads(ServerState::Leader, Some(7), 7));
        assert!(!leads(ServerState::Follower, Some(7), 7));
        assert!(!leads(ServerState::Follower, Some(3), 7));
        assert!(!leads(ServerState::Candidate, None, 7));
        assert!(!leads(ServerState::Learner, Some(3), 7));
        // A stale metrics frame naming another leader while the state still says Leader.
        assert!(!leads(ServerState::Leader, Some(3), 7));
    }
}
