//! Restart back-off, as the kubelet does it: 10 s, doubling up to 5 min, forgotten after a
//! workload has run successfully for 10 min. Pure arithmetic on [`Instant`]s so it is tested
//! without sleeping; the pod worker keeps one per container, which keys it per (pod uid,
//! container name).

use std::time::{Duration, Instant};

/// First delay after a failure.
pub const INITIAL: Duration = Duration::from_secs(10);
/// Longest delay.
pub const MAX: Duration = Duration::from_secs(300);
/// Running this long without failing resets the delay to [`INITIAL`].
pub const RESET_AFTER: Duration = Duration::from_secs(600);

/// Exponential restart back-off for one container.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    reset_after: Duration,
    /// The delay handed out by the last failure; `None` before the first one.
    current: Option<Duration>,
    /// When the workload last started successfully and has not failed since.
    running_since: Option<Instant>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(INITIAL, MAX, RESET_AFTER)
    }
}

impl Backoff {
    /// A back-off with explicit bounds (tests, other runtimes).
    pub fn new(initial: Duration, max: Duration, reset_after: Duration) -> Self {
        Self {
            initial,
            max,
            reset_after,
            current: None,
            running_since: None,
        }
    }

    /// Records a successful start at `now`.
    pub fn started(&mut self, now: Instant) {
        self.running_since = Some(now);
    }

    /// Records a failure (a start that failed or a workload that exited) at `now` and returns
    /// how long to wait before the next attempt.
    pub fn failed(&mut self, now: Instant) -> Duration {
        if let Some(since) = self.running_since.take()
            && now.saturating_duration_since(since) >= self.reset_after
        {
            self.current = None;
        }
        let next = match self.current {
            None => self.initial,
            Some(d) => (d * 2).min(self.max),
        };
        self.current = Some(next);
        next
    }

    /// The delay handed out by the last failure, if any.
    pub fn current(&self) -> Option<Duration> {
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_start_at_ten_seconds_and_double_up_to_five_minutes() {
        let mut b = Backoff::default();
        let now = Instant::now();
        let delays: Vec<u64> = (0..8).map(|_| b.failed(now).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn ten_minutes_of_successful_running_resets_the_delay() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        b.failed(t0);
        b.failed(t0);
        assert_eq!(b.failed(t0), Duration::from_secs(40));
        b.started(t0);
        assert_eq!(b.failed(t0 + Duration::from_secs(600)), INITIAL);
    }

    #[test]
    fn a_short_run_does_not_reset_the_delay() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        b.failed(t0);
        b.started(t0 + Duration::from_secs(10));
        assert_eq!(
            b.failed(t0 + Duration::from_secs(70)),
            Duration::from_secs(20)
        );
    }

    #[test]
    fn failures_without_a_successful_start_never_reset() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        b.failed(t0);
        assert_eq!(
            b.failed(t0 + Duration::from_secs(3600)),
            Duration::from_secs(20)
        );
    }
}
