//! The retry budget of one upstream: retries may add at most `ratio` of the
//! requests, plus a small floor per second, counted over the current and
//! the previous second. When every endpoint fails, a retry policy alone
//! would multiply the load by the number of attempts just when the
//! upstream can least take it; the budget caps that at `1 + ratio`.
//!
//! Counters are plain atomics shared by all workers. Two slots, indexed by
//! the second's parity, are reset by whichever thread first sees a new
//! second; a race at the boundary can lose a count or two, which only
//! makes the budget approximate, never unbounded.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub struct RetryBudget {
    per_mille: u64,
    floor_per_second: u64,
    slots: [Slot; 2],
}

#[derive(Debug, Default)]
struct Slot {
    /// Which second this slot counts, plus one (0 means never used).
    second: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

impl RetryBudget {
    pub fn new(per_mille: u32, floor_per_second: u32) -> RetryBudget {
        RetryBudget {
            per_mille: u64::from(per_mille),
            floor_per_second: u64::from(floor_per_second),
            slots: Default::default(),
        }
    }

    fn slot(&self, now_ms: u64) -> &Slot {
        let second = now_ms / 1000 + 1;
        let slot = &self.slots[(second % 2) as usize];
        let seen = slot.second.load(Ordering::Relaxed);
        if seen != second
            && slot
                .second
                .compare_exchange(seen, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            slot.requests.store(0, Ordering::Relaxed);
            slot.retries.store(0, Ordering::Relaxed);
        }
        slot
    }

    /// Counts one request as it arrives (not its retries).
    pub fn record_request(&self, now_ms: u64) {
        self.slot(now_ms).requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget, or says no.
    pub fn try_retry(&self, now_ms: u64) -> bool {
        let cur = self.slot(now_ms);
        let second = now_ms / 1000 + 1;
        let prev = &self.slots[((second + 1) % 2) as usize];
        let (prev_req, prev_ret) = if prev.second.load(Ordering::Relaxed) + 1 == second {
            (
                prev.requests.load(Ordering::Relaxed),
                prev.retries.load(Ordering::Relaxed),
            )
        } else {
            (0, 0)
        };
        let requests = cur.requests.load(Ordering::Relaxed) + prev_req;
        let allowed = self.floor_per_second + requests * self.per_mille / 1000;
        let used = cur.retries.fetch_add(1, Ordering::Relaxed) + prev_ret;
        if used < allowed {
            true
        } else {
            cur.retries.fetch_sub(1, Ordering::Relaxed);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn floor_allows_a_few_without_traffic() {
        let b = RetryBudget::new(0, 3);
        let granted = (0..10).filter(|_| b.try_retry(500)).count();
        assert_eq!(granted, 3);
        // A new second brings the floor back, minus what the previous
        // second used (it is still in the window).
        assert!(!b.try_retry(1_500));
        assert_eq!((0..10).filter(|_| b.try_retry(2_500)).count(), 3);
    }

    proptest! {
        /// However requests and retries interleave within a second, retries
        /// never exceed the floor plus ratio times the requests in the window.
        #[test]
        fn retries_are_capped(per_mille in 0u32..=1000, floor in 0u32..20, ops in prop::collection::vec(any::<bool>(), 0..2000)) {
            let b = RetryBudget::new(per_mille, floor);
            let mut requests = 0u64;
            let mut granted = 0u64;
            for is_request in ops {
                if is_request {
                    b.record_request(100);
                    requests += 1;
                } else if b.try_retry(100) {
                    granted += 1;
                }
            }
            prop_assert!(granted <= u64::from(floor) + requests * u64::from(per_mille) / 1000);
        }
    }
}
