//! How many requests a server works on at once, reads and writes counted apart, nodes apart
//! from everyone else, and no caller taking more than half of a budget: a flood of writes
//! gets 429s instead of memory, and does not take the places of reads, of the nodes' own
//! requests, or of other callers.
//!
//! Kubernetes has the same two knobs (`--max-requests-inflight` 400 and
//! `--max-mutating-requests-inflight` 200, ketch's defaults too) and, on top, API Priority
//! and Fairness: priority levels with their own shares and fair queuing between flows. ketch
//! keeps the part that decides who is starved: a priority level for nodes (their status and
//! leases keep Pods from being declared lost) and one for everyone else, each with both
//! budgets, and a per-caller cap inside each. Requests over budget are refused at once with a
//! 429 and `Retry-After` (as Kubernetes' max-in-flight filter does); nothing queues.
//!
//! Members of `system:masters` (the admin, and the controllers this server runs in process
//! as the admin) are not limited, as Kubernetes' max-in-flight filter exempts them: the
//! cluster's own reconciling must not queue behind its users.
//!
//! Watches and the long-running Pod subresources (`log`, `proxy`) hold no place here: a
//! watch is counted per user by [`super::watch::WatchCounts`], and a stream that stays open
//! for hours would otherwise pin a place meant for a request that lasts milliseconds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::auth::User;
use super::error::ApiError;

/// Kubernetes' defaults.
pub const DEFAULT_MAX_READS: u32 = 400;
pub const DEFAULT_MAX_WRITES: u32 = 200;

/// The group node agents authenticate in (Kubernetes' `system:nodes`).
const NODES_GROUP: &str = "system:nodes";
/// Kubernetes' `system:masters`: the admin, exempt.
const MASTERS_GROUP: &str = "system:masters";

/// What a request does, for the budget it counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// get, list (and discovery): answered from the local store.
    Read,
    /// create, update, patch, delete, and the subresources that write (binding, eviction).
    Write,
}

/// Whose requests share a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// Node agents: their heartbeats, Leases and Pod statuses must not wait behind a user's
    /// flood, or Pods are declared lost.
    Nodes,
    /// Everyone else.
    Global,
}

impl Level {
    pub fn of(user: &User) -> Level {
        if user.groups.iter().any(|g| g == NODES_GROUP) {
            Level::Nodes
        } else {
            Level::Global
        }
    }
}

/// The budgets: requests in flight at once, per level and class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub reads: usize,
    pub writes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            reads: DEFAULT_MAX_READS as usize,
            writes: DEFAULT_MAX_WRITES as usize,
        }
    }
}

impl Limits {
    fn of(&self, class: Class) -> usize {
        match class {
            Class::Read => self.reads,
            Class::Write => self.writes,
        }
    }

    /// One caller's cap inside a level's budget: half of it (at least one), so a single
    /// caller with many connections leaves room for the others and a benchmark's or a
    /// controller's parallelism still fits.
    fn per_caller(&self, class: Class) -> usize {
        (self.of(class) / 2).max(1)
    }
}

/// Requests in flight, by (level, class) and by (caller, class).
#[derive(Debug, Default)]
struct Counts {
    levels: HashMap<(Level, Class), usize>,
    callers: HashMap<(String, Class), usize>,
}

/// Why a request was refused: the pure decision, which limit is full.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Full {
    Level(usize),
    Caller(usize),
}

impl Counts {
    /// Takes a place for `caller`'s request of `class` at `level`, or says which limit is
    /// full (nothing changes then).
    fn enter(
        &mut self,
        limits: &Limits,
        level: Level,
        class: Class,
        caller: &str,
    ) -> Result<(), Full> {
        let at_level = self.levels.get(&(level, class)).copied().unwrap_or(0);
        if at_level >= limits.of(class) {
            return Err(Full::Level(limits.of(class)));
        }
        let key = (caller.to_string(), class);
        let mine = self.callers.get(&key).copied().unwrap_or(0);
        if mine >= limits.per_caller(class) {
            return Err(Full::Caller(limits.per_caller(class)));
        }
        *self.levels.entry((level, class)).or_default() += 1;
        *self.callers.entry(key).or_default() += 1;
        Ok(())
    }

    fn leave(&mut self, level: Level, class: Class, caller: &str) {
        if let Some(n) = self.levels.get_mut(&(level, class)) {
            *n = n.saturating_sub(1);
        }
        let key = (caller.to_string(), class);
        if let Some(n) = self.callers.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                // Callers come and go (one per service account, node, user): keep no
                // entry for a caller with nothing in flight.
                self.callers.remove(&key);
            }
        }
    }
}

/// A server's in-flight budgets.
#[derive(Debug, Clone, Default)]
pub struct Inflight {
    limits: Limits,
    counts: Arc<Mutex<Counts>>,
}

impl Inflight {
    pub fn new(limits: Limits) -> Inflight {
        Inflight {
            limits,
            counts: Arc::default(),
        }
    }

    /// A place for `user`'s request of `class`, held until the returned slot drops (`None`:
    /// the admin, not counted), or a 429 naming the limit.
    ///
    /// # Errors
    /// [`ApiError::TooManyRequests`].
    pub fn enter(&self, user: &User, class: Class) -> Result<Option<Slot>, ApiError> {
        if user.groups.iter().any(|g| g == MASTERS_GROUP) {
            return Ok(None);
        }
        let level = Level::of(user);
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let what = match class {
            Class::Read => "reads",
            Class::Write => "writes",
        };
        match counts.enter(&self.limits, level, class, &user.name) {
            Ok(()) => Ok(Some(Slot {
                counts: self.counts.clone(),
                level,
                class,
                caller: user.name.clone(),
            })),
            Err(Full::Level(n)) => Err(ApiError::TooManyRequests {
                message: format!(
                    "too many requests: this server has {n} {what} in flight, its limit{}; \
                     retry later",
                    match level {
                        Level::Nodes => " for nodes",
                        Level::Global => "",
                    }
                ),
                causes: Vec::new(),
            }),
            Err(Full::Caller(n)) => Err(ApiError::TooManyRequests {
                message: format!(
                    "too many requests: {} has {n} {what} in flight on this server, the \
                     limit per caller; retry later",
                    user.name
                ),
                causes: Vec::new(),
            }),
        }
    }
}

/// One request's place; given back on drop (when the response is made, or the client goes).
#[derive(Debug)]
pub struct Slot {
    counts: Arc<Mutex<Counts>>,
    level: Level,
    class: Class,
    caller: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .leave(self.level, self.class, &self.caller);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> User {
        User::new(name, groups)
    }

    #[test]
    fn reads_writes_and_nodes_have_budgets_of_their_own() {
        let limits = Limits {
            reads: 4,
            writes: 2,
        };
        let mut c = Counts::default();
        // Two writers fill the writes (one place each: half of 2).
        assert_eq!(c.enter(&limits, Level::Global, Class::Write, "a"), Ok(()));
        assert_eq!(
            c.enter(&limits, Level::Global, Class::Write, "a"),
            Err(Full::Caller(1))
        );
        assert_eq!(c.enter(&limits, Level::Global, Class::Write, "b"), Ok(()));
        assert_eq!(
            c.enter(&limits, Level::Global, Class::Write, "c"),
            Err(Full::Level(2))
        );
        // Reads and the nodes' writes are untouched by the full writes.
        assert_eq!(c.enter(&limits, Level::Global, Class::Read, "a"), Ok(()));
        assert_eq!(
            c.enter(&limits, Level::Nodes, Class::Write, "system:node:n1"),
            Ok(())
        );
        // A place given back is free again, and a caller with nothing in flight is forgotten.
        c.leave(Level::Global, Class::Write, "a");
        assert!(!c.callers.contains_key(&("a".to_string(), Class::Write)));
        assert_eq!(c.enter(&limits, Level::Global, Class::Write, "c"), Ok(()));
    }

    #[test]
    fn one_caller_gets_at_most_half_a_budget() {
        let limits = Limits {
            reads: 10,
            writes: 1,
        };
        let mut c = Counts::default();
        for _ in 0..5 {
            c.enter(&limits, Level::Global, Class::Read, "flood")
                .unwrap();
        }
        assert_eq!(
            c.enter(&limits, Level::Global, Class::Read, "flood"),
            Err(Full::Caller(5))
        );
        assert_eq!(
            c.enter(&limits, Level::Global, Class::Read, "other"),
            Ok(())
        );
        // A budget of one still lets one caller in.
        assert_eq!(c.enter(&limits, Level::Global, Class::Write, "w"), Ok(()));
    }

    #[test]
    fn nodes_are_their_own_level_and_a_refusal_is_a_429_naming_the_limit() {
        assert_eq!(
            Level::of(&user("system:node:n1", &["system:nodes"])),
            Level::Nodes
        );
        let inflight = Inflight::new(Limits {
            reads: 2,
            writes: 2,
        });
        // The admin (and the controllers, in process as the admin) is not counted.
        let admin = user("admin", &["system:masters"]);
        for _ in 0..3 {
            assert!(inflight.enter(&admin, Class::Write).unwrap().is_none());
        }
        let a = user("alice", &[]);
        let held = inflight.enter(&a, Class::Write).unwrap();
        let err = inflight.enter(&a, Class::Write).unwrap_err();
        assert!(
            matches!(&err, ApiError::TooManyRequests { message, .. }
                if message == "too many requests: alice has 1 writes in flight on this server, the limit per caller; retry later"),
            "{err:?}"
        );
        drop(held);
        assert!(inflight.enter(&a, Class::Write).is_ok());
    }
}
