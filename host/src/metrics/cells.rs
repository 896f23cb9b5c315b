//! The counting primitives: a counter cell written by one thread only, a
//! set of such cells per thread ([`PerThread`]), and a fixed-bucket
//! duration histogram made of them.
//!
//! A worker counts into cells of its own (found through the
//! `thread_local` crate's per-object, per-thread slots), with a plain load
//! and store: no locked instruction and no cache line another worker
//! writes. A scrape walks every thread's cells and adds them up; it may
//! see a count a few nanoseconds stale, never a torn or lost one (each
//! cell is a whole `AtomicU64`, written by one thread).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use thread_local::ThreadLocal;

/// A counter that only the thread owning it writes (see [`PerThread`]).
#[derive(Debug, Default)]
pub struct Tally(AtomicU64);

impl Tally {
    /// Adds `n`. Only the owning thread calls this, so a load and a store
    /// cannot lose an update.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// One `T` of cells per thread that counts, summed by whoever reads.
#[derive(Debug)]
pub struct PerThread<T: Send>(ThreadLocal<T>);

impl<T: Send + Default> Default for PerThread<T> {
    fn default() -> Self {
        PerThread(ThreadLocal::new())
    }
}

impl<T: Send + Sync + Default> PerThread<T> {
    /// This thread's cells, made on its first count.
    #[inline]
    pub fn local(&self) -> &T {
        self.0.get_or_default()
    }

    /// Every thread's cells (for a scrape).
    pub fn all(&self) -> impl Iterator<Item = &T> {
        self.0.iter()
    }

    /// The sum over threads of what `f` reads from each.
    pub fn sum(&self, f: impl Fn(&T) -> u64) -> u64 {
        self.all().map(f).fold(0, u64::wrapping_add)
    }
}

/// Upper bounds of the duration histograms, in seconds: from half a
/// millisecond (a proxied request on loopback) to ten seconds (a slow
/// upstream near a typical timeout); slower ones land in `+Inf`.
pub const BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// The same bounds in microseconds, for bucketing without floating point.
const BOUNDS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// One thread's share of a duration histogram: a count per bucket (not
/// cumulative; the last is `+Inf`) and the sum in microseconds.
#[derive(Debug, Default)]
pub struct Hist {
    buckets: [Tally; BOUNDS.len() + 1],
    sum_us: Tally,
}

impl Hist {
    #[inline]
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_US.partition_point(|&b| b < us);
        self.buckets[i].inc();
        self.sum_us.add(us);
    }
}

/// A histogram summed over threads, ready to encode.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HistSum {
    /// Count per bucket (not cumulative), `+Inf` last.
    pub buckets: [u64; BOUNDS.len() + 1],
    pub sum_us: u64,
}

impl HistSum {
    pub fn add(&mut self, h: &Hist) {
        for (a, b) in self.buckets.iter_mut().zip(&h.buckets) {
            *a = a.wrapping_add(b.get());
        }
        self.sum_us = self.sum_us.wrapping_add(h.sum_us.get());
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().fold(0, |a, b| a.wrapping_add(*b))
    }

    /// `(upper bound, count)` pairs as the encoder takes them.
    pub fn pairs(&self) -> Vec<(f64, u64)> {
        BOUNDS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.buckets.iter().copied())
            .collect()
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum_us as f64 / 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_count_apart_and_sum_together() {
        let cells: PerThread<Tally> = PerThread::default();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        cells.local().inc();
                    }
                });
            }
        });
        // A thread that ends leaves its cells to the next thread given
        // its slot: counts are kept, never lost.
        assert_eq!(cells.sum(Tally::get), 4000);
    }

    #[test]
    fn durations_fall_in_the_first_bucket_at_or_above_them() {
        let h = Hist::default();
        h.observe(Duration::from_micros(500)); // le=0.0005
        h.observe(Duration::from_micros(501)); // le=0.001
        h.observe(Duration::from_secs(11)); // +Inf
        let mut s = HistSum::default();
        s.add(&h);
        assert_eq!(s.buckets[0], 1);
        assert_eq!(s.buckets[1], 1);
        assert_eq!(s.buckets[BOUNDS.len()], 1);
        assert_eq!(s.count(), 3);
        assert_eq!(s.sum_us, 500 + 501 + 11_000_000);
        let pairs = s.pairs();
        assert_eq!(pairs.len(), 15);
        assert_eq!(pairs[14], (f64::INFINITY, 1));
    }
}
