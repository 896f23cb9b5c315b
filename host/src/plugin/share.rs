//! The CPU share of one plugin entry on one worker thread: how much of
//! the worker's time the entry's calls may take. Calls run on the worker,
//! so a plugin that is slow on some input (a regular expression that
//! backtracks, a large token, a bug) holds the worker's other connections
//! while it runs; the deadline bounds one call, the breaker
//! (`super::breaker`) a run of calls that all reach it, and the share
//! bounds the rest: calls that take long without reaching the deadline,
//! or slow calls mixed with fast ones so that the breaker never opens.
//!
//! The share is a credit of worker time that refills at `share` (a
//! fraction of real time) and holds at most `share × window`. Calls spend
//! it; while it is spent, the entry's calls on that worker fail at once
//! under the plugin's failure policy, until it has refilled above zero.
//! So over any stretch of time a plugin takes at most its share of a
//! worker, plus one window's worth after it was idle, plus the one call
//! that overdrew the credit (at most its deadline; the debt it leaves is
//! bounded by one window's worth, so it is refused for at most one window).
//!
//! What a call spends is sampled, not timed: every epoch tick that falls
//! inside a call (the deadline's own ticks, `super::deadline`) costs the
//! call one tick ([`EPOCH_TICK`]). A call of `d` sees on average `d / tick`
//! ticks, so the charge is right on average: a call of 2 µs is charged a
//! whole tick about once in 2,500 calls, and one that runs to a 10 ms
//! deadline two ticks. Timing every call instead would read the clock
//! twice per call; sampling costs nothing on a call that sees no tick.
//! The time charged is wall-clock time inside calls, which is what the
//! worker's other connections lose.
//!
//! Cost: checking the share before a call is one comparison on state kept
//! in the slot's per-thread cell (`pool`); the clock is read only to
//! charge a call that saw a tick and to check a share that is spent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::deadline::EPOCH_TICK;

/// A share's settings (`[plugin_limits.NAME]` `cpu_share`, `cpu_window`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareSettings {
    /// The fraction of a worker's time the plugin may take, in percent
    /// (1 to 100); 100 turns the share off.
    pub percent: u32,
    /// How much unused share can be saved up: `percent` of this.
    pub window: Duration,
}

impl ShareSettings {
    /// Whether the share limits anything.
    pub fn is_on(&self) -> bool {
        self.percent < 100
    }

    /// The most credit a worker holds: `percent` of the window, in ns.
    fn capacity(&self) -> i64 {
        (self.window.as_nanos() as i64).saturating_mul(i64::from(self.percent)) / 100
    }

    /// Credit earned over `elapsed`, in ns.
    fn earned(&self, elapsed: Duration) -> i64 {
        (elapsed.as_nanos().min(i64::MAX as u128) as i64).saturating_mul(i64::from(self.percent))
            / 100
    }
}

/// What a call saw of the epoch ticks: what it is charged for.
pub fn charge_for(ticks: u32) -> Duration {
    EPOCH_TICK * ticks
}

/// One worker's share for one slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Share {
    /// Credit in ns as of `at`; starts full. `None` until first charged.
    state: Option<(i64, Instant)>,
}

/// Whether a call may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Call,
    /// The share is spent; it is above zero again after this long.
    Refuse {
        retry_after: Duration,
    },
}

impl Share {
    /// Whether a call may start. Reads the clock (`now`) only when the
    /// credit is spent.
    #[inline]
    pub fn admit(&mut self, now: impl FnOnce() -> Instant, s: ShareSettings) -> Admit {
        match self.state {
            Some((credit, _)) if credit <= 0 => self.admit_spent(now(), s),
            _ => Admit::Call,
        }
    }

    #[cold]
    fn admit_spent(&mut self, now: Instant, s: ShareSettings) -> Admit {
        let credit = self.refill(now, s);
        if credit > 0 {
            return Admit::Call;
        }
        // Refilling `-credit + 1` ns at `percent` per cent of real time.
        let wait_ns = ((1 - credit) as u128 * 100).div_ceil(u128::from(s.percent.max(1)));
        Admit::Refuse {
            retry_after: Duration::from_nanos(wait_ns.min(u64::MAX as u128) as u64),
        }
    }

    /// Charges a call that used `used` of the worker at `now`. The debt
    /// left refills within one window.
    pub fn charge(&mut self, used: Duration, now: Instant, s: ShareSettings) {
        let cap = s.capacity();
        let credit = self.refill(now, s);
        let used = used.as_nanos().min(i64::MAX as u128) as i64;
        self.state = Some((credit.saturating_sub(used).max(1 - cap), now));
    }

    /// The credit at `now`, refilled since it was last looked at.
    fn refill(&mut self, now: Instant, s: ShareSettings) -> i64 {
        let cap = s.capacity();
        let credit = match self.state {
            None => cap,
            Some((credit, at)) => credit
                .saturating_add(s.earned(now.saturating_duration_since(at)))
                .min(cap),
        };
        self.state = Some((credit, now));
        credit
    }

    /// Whether the credit was spent when last looked at.
    pub fn is_spent(&self) -> bool {
        matches!(self.state, Some((credit, _)) if credit <= 0)
    }
}

/// What the workers' shares of one slot report, for `/admin/plugins`.
#[derive(Debug, Default)]
pub struct ShareStats {
    /// The slot's settings, shown with the counters.
    pub settings: Option<ShareSettings>,
    /// Worker time charged to the slot's calls, in ms (sampled: see the
    /// module doc).
    pub charged_ms: AtomicU64,
    /// Calls refused because the share was spent.
    pub refused: AtomicU64,
    /// Times a worker's share went from available to spent.
    pub spent: AtomicU64,
}

impl ShareStats {
    pub fn charged(&self, used: Duration, became_spent: bool) {
        self.charged_ms
            .fetch_add(used.as_millis() as u64, Ordering::Relaxed);
        if became_spent {
            self.spent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: ShareSettings = ShareSettings {
        percent: 25,
        window: Duration::from_secs(1),
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_fresh_share_admits_without_reading_the_clock() {
        let mut s = Share::default();
        assert_eq!(s.admit(|| panic!("the clock was read"), S), Admit::Call);
        s.charge(ms(10), Instant::now(), S);
        assert_eq!(s.admit(|| panic!("the clock was read"), S), Admit::Call);
    }

    #[test]
    fn spending_the_window_refuses_until_the_credit_refills() {
        let t0 = Instant::now();
        let mut s = Share::default();
        // 25 % of 1 s: 250 ms of credit, spent by 25 calls of 10 ms.
        for i in 0..25 {
            assert_eq!(s.admit(|| t0, S), Admit::Call, "call {i}");
            s.charge(ms(10), t0, S);
        }
        assert!(s.is_spent());
        // At 25 %, 1 ns of credit takes 4 ns.
        assert_eq!(
            s.admit(|| t0, S),
            Admit::Refuse {
                retry_after: Duration::from_nanos(4)
            }
        );
        assert_eq!(s.admit(|| t0 + Duration::from_nanos(4), S), Admit::Call);
        // Another 10 ms call leaves 10 ms of debt: 40 ms of refusal.
        s.charge(ms(10), t0 + Duration::from_nanos(4), S);
        match s.admit(|| t0 + ms(20), S) {
            Admit::Refuse { retry_after } => {
                assert!(
                    retry_after > ms(19) && retry_after < ms(21),
                    "{retry_after:?}"
                )
            }
            Admit::Call => panic!("admitted while in debt"),
        }
        assert_eq!(s.admit(|| t0 + ms(41), S), Admit::Call);
    }

    #[test]
    fn a_steady_caller_gets_its_share_and_no_more() {
        // Calls of 10 ms back to back on one worker for 10 s: the share
        // lets through the saved-up window plus 25 % of the time.
        let t0 = Instant::now();
        let mut s = Share::default();
        let mut now = t0;
        let mut used = Duration::ZERO;
        while now < t0 + Duration::from_secs(10) {
            match s.admit(|| now, S) {
                Admit::Call => {
                    now += ms(10);
                    used += ms(10);
                    s.charge(ms(10), now, S);
                }
                // A refused request costs the worker next to nothing; the
                // client asks again at once.
                Admit::Refuse { .. } => now += Duration::from_micros(50),
            }
        }
        let allowed = ms(250) + Duration::from_secs(10) / 4;
        assert!(used <= allowed + ms(10), "used {used:?}");
        assert!(used >= allowed - ms(50), "used {used:?}");
    }

    #[test]
    fn one_long_call_is_refused_for_at_most_one_window() {
        let t0 = Instant::now();
        let mut s = Share::default();
        s.charge(Duration::from_secs(10), t0, S);
        match s.admit(|| t0, S) {
            Admit::Refuse { retry_after } => assert!(retry_after <= S.window, "{retry_after:?}"),
            Admit::Call => panic!("admitted"),
        }
    }

    #[test]
    fn unused_share_is_saved_up_to_one_window() {
        let t0 = Instant::now();
        let mut s = Share::default();
        s.charge(ms(250), t0, S);
        // An hour idle earns no more than the window's 250 ms.
        let later = t0 + Duration::from_secs(3600);
        s.charge(ms(250), later, S);
        assert!(s.is_spent());
        assert!(matches!(s.admit(|| later, S), Admit::Refuse { .. }));
    }

    #[test]
    fn the_charge_is_one_tick_per_tick_seen() {
        assert_eq!(charge_for(0), Duration::ZERO);
        assert_eq!(charge_for(2), EPOCH_TICK * 2);
        assert!(!ShareSettings { percent: 100, ..S }.is_on());
        assert!(S.is_on());
    }
}
