//! Worker identity and the coarse clock. Each worker thread runs its own
//! single-threaded event loop; per-worker state (connection pools) is
//! indexed by [`id`] so a worker never contends with another.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::Instant;

thread_local! {
    static WORKER_ID: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker thread running this code (0 off worker threads).
pub fn id() -> usize {
    WORKER_ID.with(|w| w.get())
}

pub(crate) fn set_id(id: usize) {
    WORKER_ID.with(|w| w.set(id));
}

static START: OnceLock<Instant> = OnceLock::new();

/// Milliseconds since the process first asked; for idle bookkeeping where
/// an atomic integer is cheaper to share than an `Instant`.
pub fn now_ms() -> u64 {
    ms_at(Instant::now())
}

/// [`now_ms`] for an instant already read, so one clock read can serve
/// several purposes.
pub fn ms_at(t: Instant) -> u64 {
    t.saturating_duration_since(*START.get_or_init(|| t))
        .as_millis() as u64
}
