//! The breaker on repeated deadline traps, for one plugin entry on one
//! worker thread. A call that spins to its CPU deadline holds its worker
//! for that whole deadline; after `after` such calls in a row the breaker
//! opens and the entry's calls on that worker fail at once (under the
//! plugin's failure policy) for a back-off, then one call is let through
//! as a probe: if it ends without reaching its deadline the breaker
//! closes, if it reaches it the breaker opens again for twice the back-off
//! (up to [`MAX_BACKOFF`]).
//!
//! The state is a small `Copy` value kept in the slot's per-thread cell
//! (`pool`), so checking it costs a thread-local read and no lock; only
//! an open breaker reads the clock. The workers' breakers of one slot
//! report to its [`BreakerStats`] (atomics) for `/admin/plugins`. The
//! clock is passed in, so the state machine is tested without waiting.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Longest back-off a breaker grows to while probes keep reaching their
/// deadline: a plugin fixed by a deploy gets a new slot (and closed
/// breakers), and one whose slow input went away is tried again within
/// this long.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A breaker's settings (`[plugin_limits.NAME]` `breaker_after`,
/// `breaker_backoff`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive deadline traps that open the breaker; 0: never opens.
    pub after: u32,
    /// The first back-off; doubled by each failed probe up to
    /// [`MAX_BACKOFF`].
    pub backoff: Duration,
}

/// One worker's breaker for one slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Breaker {
    /// Consecutive calls that ended at their deadline, while closed.
    streak: u32,
    state: State,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum State {
    #[default]
    Closed,
    /// Calls fail at once until `until`; `backoff` is how long it was.
    Open { until: Instant, backoff: Duration },
    /// The back-off is over: calls go through, and the first outcome
    /// recorded decides (a worker runs one call at a time, so that is
    /// the probe's).
    Probing { backoff: Duration },
}

/// Whether a call may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Call,
    /// Refused at once; the breaker is open for this much longer.
    Refuse {
        retry_after: Duration,
    },
}

/// How a call that started ended, for the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stopped at its CPU deadline (or its wall-clock cap).
    Deadline,
    /// Anything else: an answer, or a failure that did not burn the
    /// deadline (those have their own remedies).
    Other,
}

/// A change of state the slot's [`BreakerStats`] count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    Opened,
    Closed,
}

impl Breaker {
    /// Whether a call may start at `now`. A closed breaker reads nothing
    /// but itself (the caller reads the clock only when [`Breaker::is_closed`]
    /// is false).
    pub fn admit(&mut self, now: Instant) -> Admit {
        match self.state {
            State::Open { until, backoff } if now >= until => {
                self.state = State::Probing { backoff };
                Admit::Call
            }
            State::Open { until, .. } => Admit::Refuse {
                retry_after: until - now,
            },
            State::Closed | State::Probing { .. } => Admit::Call,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Closed with no deadline trap counted: an answer changes nothing.
    pub fn is_idle(&self) -> bool {
        self.streak == 0 && self.is_closed()
    }

    /// Records how a call ended at `now`.
    pub fn record(&mut self, outcome: Outcome, now: Instant, s: BreakerSettings) -> Change {
        match (self.state, outcome) {
            (State::Closed, Outcome::Other) => {
                self.streak = 0;
                Change::None
            }
            (State::Closed, Outcome::Deadline) => {
                self.streak = self.streak.saturating_add(1);
                if s.after == 0 || self.streak < s.after {
                    return Change::None;
                }
                self.open(now, s.backoff.min(MAX_BACKOFF));
                Change::Opened
            }
            (State::Probing { backoff }, Outcome::Deadline) => {
                self.open(now, backoff.saturating_mul(2).min(MAX_BACKOFF));
                Change::None
            }
            (State::Probing { .. }, Outcome::Other) => {
                *self = Breaker::default();
                Change::Closed
            }
            // A call admitted before the breaker opened cannot end while
            // it is open on a worker that runs one call at a time; should
            // one, it changes nothing.
            (State::Open { .. }, _) => Change::None,
        }
    }

    fn open(&mut self, now: Instant, backoff: Duration) {
        self.streak = 0;
        self.state = State::Open {
            until: now + backoff,
            backoff,
        };
    }
}

/// One slot's breakers on all workers, for `/admin/plugins`: how many are
/// open (or probing) now, how often one opened, how many calls they
/// refused. Written on the rare paths only (opening, closing, refusing).
#[derive(Debug, Default)]
pub struct BreakerStats {
    pub open: AtomicUsize,
    pub opened: AtomicU64,
    pub refused: AtomicU64,
}

impl BreakerStats {
    pub fn count(&self, change: Change) {
        match change {
            Change::None => {}
            Change::Opened => {
                self.open.fetch_add(1, Ordering::Relaxed);
                self.opened.fetch_add(1, Ordering::Relaxed);
            }
            Change::Closed => {
                self.open.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: BreakerSettings = BreakerSettings {
        after: 3,
        backoff: Duration::from_secs(1),
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn opens_after_the_streak_refuses_for_the_backoff_then_probes_and_closes() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..2 {
            assert_eq!(b.admit(t0), Admit::Call);
            assert_eq!(b.record(Outcome::Deadline, t0, S), Change::None);
        }
        assert_eq!(b.record(Outcome::Deadline, t0, S), Change::Opened);
        assert!(!b.is_closed());
        assert_eq!(
            b.admit(t0 + ms(400)),
            Admit::Refuse {
                retry_after: ms(600)
            }
        );
        // The back-off is over: one probe goes through, and its success
        // closes the breaker.
        assert_eq!(b.admit(t0 + ms(1000)), Admit::Call);
        assert_eq!(b.record(Outcome::Other, t0 + ms(1001), S), Change::Closed);
        assert!(b.is_closed());
        assert_eq!(b.admit(t0 + ms(1002)), Admit::Call);
    }

    #[test]
    fn an_answer_breaks_the_streak() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..10 {
            b.record(Outcome::Deadline, t0, S);
            b.record(Outcome::Deadline, t0, S);
            assert_eq!(b.record(Outcome::Other, t0, S), Change::None);
        }
        assert!(b.is_closed());
    }

    #[test]
    fn a_failed_probe_reopens_with_a_doubled_backoff_up_to_the_cap() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..3 {
            b.record(Outcome::Deadline, t0, S);
        }
        let mut now = t0;
        let mut backoff = S.backoff;
        for _ in 0..10 {
            now += backoff;
            assert_eq!(b.admit(now), Admit::Call, "the probe");
            assert_eq!(b.record(Outcome::Deadline, now, S), Change::None);
            backoff = (backoff * 2).min(MAX_BACKOFF);
            assert_eq!(
                b.admit(now),
                Admit::Refuse {
                    retry_after: backoff
                }
            );
        }
        assert_eq!(backoff, MAX_BACKOFF);
        now += backoff;
        assert_eq!(b.admit(now), Admit::Call);
        assert_eq!(b.record(Outcome::Other, now, S), Change::Closed);
        // Closed again, it takes a whole new streak to open, and the
        // back-off starts over from the configured one.
        for _ in 0..2 {
            assert_eq!(b.record(Outcome::Deadline, now, S), Change::None);
        }
        assert_eq!(b.record(Outcome::Deadline, now, S), Change::Opened);
        assert_eq!(
            b.admit(now),
            Admit::Refuse {
                retry_after: S.backoff
            }
        );
    }

    #[test]
    fn zero_never_opens() {
        let t0 = Instant::now();
        let off = BreakerSettings { after: 0, ..S };
        let mut b = Breaker::default();
        for _ in 0..1000 {
            assert_eq!(b.record(Outcome::Deadline, t0, off), Change::None);
        }
        assert_eq!(b.admit(t0), Admit::Call);
    }

    #[test]
    fn stats_count_open_workers_and_openings() {
        let stats = BreakerStats::default();
        stats.count(Change::Opened);
        stats.count(Change::Opened);
        stats.count(Change::None);
        stats.count(Change::Closed);
        assert_eq!(stats.open.load(Ordering::Relaxed), 1);
        assert_eq!(stats.opened.load(Ordering::Relaxed), 2);
    }
}
