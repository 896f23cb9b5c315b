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

/// Where a duration histogram's buckets end: the upper bounds in
/// seconds, as exposed, and the same in nanoseconds, for bucketing
/// without floating point. `N` bounds make `N + 1` buckets, the last
/// `+Inf`.
#[derive(Debug)]
pub struct Bounds<const N: usize> {
    pub seconds: [f64; N],
    pub nanos: [u64; N],
}

impl<const N: usize> Bounds<N> {
    /// The bounds `seconds`, with their nanoseconds worked out (rounded)
    /// at compile time.
    pub const fn from_seconds(seconds: [f64; N]) -> Bounds<N> {
        let mut nanos = [0u64; N];
        let mut i = 0;
        while i < N {
            nanos[i] = (seconds[i] * 1e9 + 0.5) as u64;
            i += 1;
        }
        Bounds { seconds, nanos }
    }
}

/// The bounds of the request and upstream duration histograms: from half
/// a millisecond (a proxied request on loopback) to ten seconds (a slow
/// upstream near a typical timeout); slower ones land in `+Inf`.
pub const BOUNDS: Bounds<14> = Bounds::from_seconds([
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
]);

/// One thread's share of a duration histogram with `N` bounds: a count
/// per bucket (not cumulative) and the sum in nanoseconds (a plugin call
/// of a microsecond or two would lose half its time rounded to whole
/// microseconds).
#[derive(Debug)]
pub struct Hist<const N: usize = 14> {
    buckets: [Tally; N],
    /// The `+Inf` bucket.
    over: Tally,
    sum_ns: Tally,
}

impl<const N: usize> Default for Hist<N> {
    fn default() -> Self {
        Hist {
            buckets: std::array::from_fn(|_| Tally::default()),
            over: Tally::default(),
            sum_ns: Tally::default(),
        }
    }
}

impl<const N: usize> Hist<N> {
    #[inline]
    pub fn observe(&self, d: Duration, bounds: &Bounds<N>) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        match self.buckets.get(bounds.nanos.partition_point(|&b| b < ns)) {
            Some(bucket) => bucket.inc(),
            None => self.over.inc(),
        }
        self.sum_ns.add(ns);
    }
}

/// A histogram summed over threads, ready to encode.
#[derive(Debug, Clone, PartialEq)]
pub struct HistSum<const N: usize = 14> {
    /// Count per bucket (not cumulative).
    pub buckets: [u64; N],
    /// The `+Inf` bucket.
    pub over: u64,
    pub sum_ns: u64,
}

impl<const N: usize> Default for HistSum<N> {
    fn default() -> Self {
        HistSum {
            buckets: [0; N],
            over: 0,
            sum_ns: 0,
        }
    }
}

impl<const N: usize> HistSum<N> {
    pub fn add(&mut self, h: &Hist<N>) {
        for (a, b) in self.buckets.iter_mut().zip(&h.buckets) {
            *a = a.wrapping_add(b.get());
        }
        self.over = self.over.wrapping_add(h.over.get());
        self.sum_ns = self.sum_ns.wrapping_add(h.sum_ns.get());
    }

    pub fn count(&self) -> u64 {
        self.buckets
            .iter()
            .fold(self.over, |a, b| a.wrapping_add(*b))
    }

    /// `(upper bound, count)` pairs as the encoder takes them.
    pub fn pairs(&self, bounds: &Bounds<N>) -> Vec<(f64, u64)> {
        bounds
            .seconds
            .iter()
            .copied()
            .zip(self.buckets.iter().copied())
            .chain([(f64::INFINITY, self.over)])
            .collect()
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum_ns as f64 / 1e9
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
        let h: Hist = Hist::default();
        h.observe(Duration::from_micros(500), &BOUNDS); // le=0.0005
        h.observe(Duration::from_micros(501), &BOUNDS); // le=0.001
        h.observe(Duration::from_secs(11), &BOUNDS); // +Inf
        let mut s = HistSum::default();
        s.add(&h);
        assert_eq!(s.buckets[0], 1);
        assert_eq!(s.buckets[1], 1);
        assert_eq!(s.over, 1);
        assert_eq!(s.count(), 3);
        assert_eq!(s.sum_ns, (500 + 501 + 11_000_000) * 1000);
        assert_eq!(BOUNDS.nanos[0], 500_000);
        assert_eq!(BOUNDS.nanos[2], 2_500_000);
        assert_eq!(BOUNDS.nanos[13], 10_000_000_000);
        let pairs = s.pairs(&BOUNDS);
        assert_eq!(pairs.len(), 15);
        assert_eq!(pairs[14], (f64::INFINITY, 1));
    }
}
