//! Node liveness kept in the leader's memory, as Nomad keeps its heartbeat timers: an agent
//! proves it is alive with `POST /heartbeat/{node}` every few seconds, and the leader only
//! notes the instant. Nothing goes through raft, so a heartbeat costs an HTTP request, not a
//! replicated write, and it can come often enough to detect a dead node in seconds.
//!
//! The interval grows with the cluster so the leader never takes more than
//! [`HeartbeatPolicy::max_rate`] heartbeats a second (1,000 by default: 1 s up to 1,000
//! nodes, 5 s at 5,000), and the answer tells each agent when to come back. A node is
//! silent once [`HeartbeatPolicy::misses`] intervals (plus a second of slack) pass without
//! one. The table lives only on the leader that received the heartbeats: a new leader starts
//! empty and gives every node the long lease-based grace until its first heartbeat arrives
//! (the node lifecycle controller's "fresh grace" after a leader change).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often agents beat, and when a silent one counts as gone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeartbeatPolicy {
    /// The shortest interval handed out.
    pub min_interval: Duration,
    /// The longest interval handed out, however large the cluster.
    pub max_interval: Duration,
    /// Heartbeats per second the leader takes at most (what sets the interval).
    pub max_rate: f64,
    /// Intervals without a heartbeat before a node is silent.
    pub misses: u32,
}

impl Default for HeartbeatPolicy {
    fn default() -> Self {
        Self {
            min_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(10),
            max_rate: 1000.0,
            misses: 3,
        }
    }
}

impl HeartbeatPolicy {
    /// The interval for a cluster of `nodes`: spread so the leader takes at most
    /// `max_rate` heartbeats a second, within `[min_interval, max_interval]`.
    pub fn interval(&self, nodes: usize) -> Duration {
        let spread = if self.max_rate > 0.0 {
            Duration::from_secs_f64(nodes as f64 / self.max_rate)
        } else {
            self.max_interval
        };
        spread.clamp(self.min_interval, self.max_interval)
    }

    /// How long a node may go without a heartbeat at `interval` before it is silent.
    pub fn grace(&self, interval: Duration) -> Duration {
        interval * self.misses + Duration::from_secs(1)
    }
}

/// The leader's table of the last heartbeat of every node.
#[derive(Debug, Default)]
pub struct NodeLiveness {
    policy: HeartbeatPolicy,
    beats: Mutex<HashMap<String, Instant>>,
}

/// What the leader knows of one node's heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beat {
    /// When the last one arrived.
    pub at: Instant,
    /// How long the node may stay silent after it.
    pub grace: Duration,
}

impl NodeLiveness {
    pub fn new(policy: HeartbeatPolicy) -> Self {
        Self {
            policy,
            beats: Mutex::new(HashMap::new()),
        }
    }

    fn beats(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.beats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes a heartbeat of `node` at `now`; the interval to come back after.
    pub fn beat(&self, node: &str, now: Instant) -> Duration {
        let mut beats = self.beats();
        match beats.get_mut(node) {
            Some(at) => *at = now,
            None => {
                beats.insert(node.to_string(), now);
            }
        }
        self.policy.interval(beats.len())
    }

    /// Every node's last heartbeat, with the grace the current interval gives it.
    pub fn snapshot(&self) -> HashMap<String, Beat> {
        let beats = self.beats();
        let grace = self.policy.grace(self.policy.interval(beats.len()));
        beats
            .iter()
            .map(|(n, at)| (n.clone(), Beat { at: *at, grace }))
            .collect()
    }

    /// Forgets nodes that no longer exist (the table holds only what heartbeats named, so
    /// a deleted node's entry would otherwise stay).
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        self.beats().retain(|n, _| keep(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_grows_with_the_cluster_to_cap_the_heartbeat_rate() {
        let p = HeartbeatPolicy::default();
        assert_eq!(p.interval(3), Duration::from_secs(1));
        assert_eq!(p.interval(1000), Duration::from_secs(1));
        assert_eq!(p.interval(5000), Duration::from_secs(5));
        assert_eq!(p.interval(50_000), Duration::from_secs(10), "capped");
        assert_eq!(p.grace(Duration::from_secs(1)), Duration::from_secs(4));
        assert_eq!(p.grace(Duration::from_secs(5)), Duration::from_secs(16));
    }

    #[test]
    fn a_heartbeat_is_noted_and_answered_with_the_interval() {
        let live = NodeLiveness::new(HeartbeatPolicy {
            max_rate: 1.0,
            ..HeartbeatPolicy::default()
        });
        let t0 = Instant::now();
        assert_eq!(live.beat("a", t0), Duration::from_secs(1));
        assert_eq!(live.beat("b", t0), Duration::from_secs(2));
        let later = t0 + Duration::from_secs(3);
        live.beat("a", later);
        let snap = live.snapshot();
        assert_eq!(snap["a"].at, later);
        assert_eq!(snap["b"].grace, Duration::from_secs(7));
        live.retain(|n| n == "a");
        assert_eq!(live.snapshot().len(), 1);
    }
}
