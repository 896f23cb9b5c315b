//! Per-plugin metrics: calls by phase and outcome, their duration, traps by
//! cause, answers Weir did not use, calls skipped under `failure = "open"`,
//! the counters a plugin adds through the contract (`counter-add`), deploy
//! attempts by outcome, and what a scrape reads from the plugin runtime
//! itself (live instances, breakers, CPU shares, the version serving).
//!
//! One [`PluginStats`] per configured plugin name, kept by name in the
//! registry, so counts carry over a hot deploy or a reload that keeps the
//! name. The plugin runtime resolves it once per slot (one plugin with one
//! configuration) and counts into the current thread's cells
//! ([`PerThread`]): a call costs no lock, no shared atomic and no lookup by
//! name. Breaker and CPU-share counts are not counted twice: they stay the
//! slot's own atomics (shown in `/admin/plugins` too), which a slot lends
//! to its stats as a [`SlotSource`] read at scrape time; a slot that goes
//! away leaves its final counts behind, so those counters never go back.
//!
//! This module names nothing of `crate::plugin` (which sits above it): the
//! runtime describes itself through [`SlotSource`] and the fixed sets
//! [`Phase`], [`Outcome`] and [`Cause`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use dashmap::DashMap;

use super::{Bounds, Hist, Out, PerThread, Registry, Tally};

/// Longest name of a counter a plugin adds, in bytes.
pub const MAX_COUNTER_NAME_BYTES: usize = 64;
/// Most counters one plugin may add: the bound on the series of
/// `weir_plugin_counted_total` per plugin (names past it are refused and
/// the refusal logged by the host call).
pub const MAX_COUNTERS: usize = 1_000;

/// A phase of the contract, `init` included (an instance being made).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Init,
    Request,
    RequestBody,
    Response,
    ResponseBody,
    Log,
    /// The request phase again, with the results of its calls.
    RequestCalls,
    /// The response phase again, with the results of its calls.
    ResponseCalls,
    /// The results of calls not waited for, after the response.
    BackgroundCalls,
}

impl Phase {
    const ALL: [Phase; 9] = [
        Phase::Init,
        Phase::Request,
        Phase::RequestBody,
        Phase::Response,
        Phase::ResponseBody,
        Phase::Log,
        Phase::RequestCalls,
        Phase::ResponseCalls,
        Phase::BackgroundCalls,
    ];

    /// Whether a call of this phase may start outbound calls.
    pub fn may_call(self) -> bool {
        matches!(
            self,
            Phase::Request | Phase::Response | Phase::RequestCalls | Phase::ResponseCalls
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Init => "init",
            Phase::Request => "request",
            Phase::RequestBody => "request_body",
            Phase::Response => "response",
            Phase::ResponseBody => "response_body",
            Phase::Log => "log",
            Phase::RequestCalls => "request_calls",
            Phase::ResponseCalls => "response_calls",
            Phase::BackgroundCalls => "background_calls",
        }
    }
}

/// How a call the pipeline asked for ended. A call refused at once by an
/// open breaker or a spent CPU share is not among them: those are the
/// breaker's and the share's own counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The Wasm call returned (its answer may still be one Weir does not
    /// use: see [`PluginStats::rejected`]).
    Ok,
    /// The call trapped; [`Cause`] says why.
    Trap,
    /// No instance could take the call: all busy, or one being made again
    /// after a trap.
    Unavailable,
}

impl Outcome {
    const ALL: [Outcome; 3] = [Outcome::Ok, Outcome::Trap, Outcome::Unavailable];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Trap => "trap",
            Outcome::Unavailable => "unavailable",
        }
    }
}

/// Why a call trapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// It used its CPU deadline.
    Deadline,
    /// It ran for the wall-clock cap behind the deadline.
    WallClock,
    /// It tried to grow its memory past the plugin's cap.
    Memory,
    /// Anything else: a panic, `unreachable`, a stack overflow, a host
    /// call that trapped.
    Other,
}

impl Cause {
    const ALL: [Cause; 4] = [
        Cause::Deadline,
        Cause::WallClock,
        Cause::Memory,
        Cause::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Deadline => "deadline",
            Cause::WallClock => "wall_clock",
            Cause::Memory => "memory",
            Cause::Other => "other",
        }
    }
}

/// Upper bounds of the call duration histogram, in seconds. Plugin calls
/// take microseconds and are stopped at their deadline (milliseconds), so
/// these start far below the request histogram's (`super::cells::BOUNDS`,
/// whose first bucket would hold nearly every call); `init` (instances
/// made at start-up or after a trap) reaches the top ones.
pub const CALL_BOUNDS: Bounds<16> = Bounds::from_seconds([
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
]);

/// One thread's share of a call duration histogram.
type CallHist = Hist<16>;

/// One thread's counts for one plugin.
#[derive(Debug, Default)]
struct PluginCells {
    calls: [[Tally; Outcome::ALL.len()]; Phase::ALL.len()],
    duration: [CallHist; Phase::ALL.len()],
    traps: [Tally; Cause::ALL.len()],
    rejected: [Tally; Phase::ALL.len()],
    skipped: Tally,
    outbound: [Tally; CALL_OUTCOMES.len()],
}

/// How a plugin's outbound call ended (`weir_plugin_outbound_calls_total`):
/// answered, or the contract's `call-error` case, refusals at the start
/// (`not_allowed`, `invalid`, `limit`, `deadline`) included.
pub const CALL_OUTCOMES: [&str; 8] = [
    "answered",
    "not_allowed",
    "invalid",
    "limit",
    "deadline",
    "timeout",
    "too_large",
    "failed",
];

/// What a scrape reads from one slot (a plugin with one configuration) of
/// the plugin runtime.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SlotReading {
    /// Instances alive now, idle or serving (gauge).
    pub instances: u64,
    /// Workers whose breaker is open or probing now (gauge).
    pub breakers_open: u64,
    /// Times a worker's breaker opened.
    pub breaker_opens: u64,
    /// Calls an open breaker refused.
    pub breaker_refusals: u64,
    /// Calls refused because the worker's CPU share was spent.
    pub share_refusals: u64,
    /// Times a worker's share went from available to spent.
    pub share_spent: u64,
    /// Worker time charged to the slot's calls, in ms (sampled).
    pub cpu_charged_ms: u64,
}

impl SlotReading {
    /// Adds `r`'s counters (not its gauges): what a slot that went away
    /// leaves behind.
    fn keep_counts(&mut self, r: &SlotReading) {
        self.breaker_opens += r.breaker_opens;
        self.breaker_refusals += r.breaker_refusals;
        self.share_refusals += r.share_refusals;
        self.share_spent += r.share_spent;
        self.cpu_charged_ms += r.cpu_charged_ms;
    }

    fn add(&mut self, r: &SlotReading) {
        self.keep_counts(r);
        self.instances += r.instances;
        self.breakers_open += r.breakers_open;
    }
}

/// A slot of the plugin runtime, read at scrape time.
pub trait SlotSource: Send + Sync {
    fn read(&self) -> SlotReading;
}

/// The slots of one plugin that exist now, and what the ones gone left.
#[derive(Default)]
struct Slots {
    next_id: u64,
    live: Vec<(u64, Arc<dyn SlotSource>)>,
    gone: SlotReading,
}

/// Keeps a slot's [`SlotSource`] in its plugin's stats while the slot
/// exists; dropped with the slot, it folds the slot's final counts into
/// the plugin's, under the same lock a scrape reads with, so no scrape
/// sees them vanish.
pub struct Registered {
    stats: Arc<PluginStats>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut slots = self.stats.slots();
        if let Some(i) = slots.live.iter().position(|(id, _)| *id == self.id) {
            let (_, source) = slots.live.swap_remove(i);
            let last = source.read();
            slots.gone.keep_counts(&last);
        }
    }
}

/// The counters one plugin adds through `counter-add`, by name: at most
/// [`MAX_COUNTERS`] names of 1 to [`MAX_COUNTER_NAME_BYTES`] bytes. An
/// add to a known name takes a shard's read lock and one atomic add; a
/// new name takes `adding` too, so the bound is exact.
#[derive(Debug, Default)]
struct AddedCounters {
    map: DashMap<Box<str>, AtomicU64>,
    adding: Mutex<usize>,
}

impl AddedCounters {
    fn add(&self, name: &str, delta: u64) -> Result<(), String> {
        if name.is_empty() || name.len() > MAX_COUNTER_NAME_BYTES {
            return Err(format!(
                "counter names are 1 to {MAX_COUNTER_NAME_BYTES} bytes"
            ));
        }
        if let Some(c) = self.map.get(name) {
            c.fetch_add(delta, Relaxed);
            return Ok(());
        }
        let mut names = lock(&self.adding);
        if let Some(c) = self.map.get(name) {
            c.fetch_add(delta, Relaxed);
            return Ok(());
        }
        if *names >= MAX_COUNTERS {
            return Err(format!("at most {MAX_COUNTERS} counters per plugin"));
        }
        self.map.insert(name.into(), AtomicU64::new(delta));
        *names += 1;
        Ok(())
    }

    /// Every counter as (name, value), sorted by name.
    fn snapshot(&self) -> Vec<(String, u64)> {
        let mut out: Vec<_> = self
            .map
            .iter()
            .map(|e| (e.key().to_string(), e.value().load(Relaxed)))
            .collect();
        out.sort();
        out
    }
}

/// A plugin's stats (one per plugin name, kept over deploys and reloads).
#[derive(Default)]
pub struct PluginStats {
    cells: PerThread<PluginCells>,
    counters: AddedCounters,
    /// The sha256 of the version serving, once one does.
    serving: Mutex<Option<Arc<str>>>,
    /// Deploy attempts by (trigger, outcome), and the rejected ones by
    /// (trigger, step): rare, so behind a lock.
    attempts: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    rejections: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    slots: Mutex<Slots>,
}

impl fmt::Debug for PluginStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginStats").finish_non_exhaustive()
    }
}

/// One call in this many, per thread, is timed for
/// `weir_plugin_call_duration_seconds`. Timing a call reads the clock
/// twice (about 0.1 µs on the development VM), which is half of what a
/// no-op call costs: timing every call would make the metric a large part
/// of what it measures. Every call is counted in `weir_plugin_calls_total`.
pub const TIMED_ONE_IN: u32 = 8;

/// When to time the call about to start: `Some(now)` for one call in
/// [`TIMED_ONE_IN`] on this thread (a thread-local count, no clock read
/// otherwise).
#[inline]
pub fn call_timer() -> Option<std::time::Instant> {
    thread_local! {
        static CALLS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    CALLS.with(|c| {
        let n = c.get().wrapping_add(1);
        c.set(n);
        (n % TIMED_ONE_IN == 0).then(std::time::Instant::now)
    })
}

impl PluginStats {
    /// A call of `phase` that ran (or trapped), timed when `took` is
    /// there (one call in [`TIMED_ONE_IN`]).
    #[inline]
    pub fn ran(&self, phase: Phase, outcome: Outcome, took: Option<Duration>) {
        let c = self.cells.local();
        c.calls[phase as usize][outcome as usize].inc();
        if let Some(took) = took {
            c.duration[phase as usize].observe(took, &CALL_BOUNDS);
        }
    }

    /// A call of `phase` that trapped, for `cause`, timed when `took` is
    /// there.
    #[inline]
    pub fn trapped(&self, phase: Phase, cause: Cause, took: Option<Duration>) {
        let c = self.cells.local();
        c.calls[phase as usize][Outcome::Trap as usize].inc();
        if let Some(took) = took {
            c.duration[phase as usize].observe(took, &CALL_BOUNDS);
        }
        c.traps[cause as usize].inc();
    }

    /// A call of `phase` no instance could take.
    #[inline]
    pub fn unavailable(&self, phase: Phase) {
        self.cells.local().calls[phase as usize][Outcome::Unavailable as usize].inc();
    }

    /// A call of `phase` that returned an answer Weir did not use (an
    /// invalid one, or `init` refusing its configuration).
    pub fn rejected(&self, phase: Phase) {
        self.cells.local().rejected[phase as usize].inc();
    }

    /// An outbound call that ended with `outcome`, one of
    /// [`CALL_OUTCOMES`] (anything else counts as `failed`).
    pub fn called_out(&self, outcome: &str) {
        let i = CALL_OUTCOMES
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(CALL_OUTCOMES.len() - 1);
        self.cells.local().outbound[i].inc();
    }

    /// A failed call the plugin's `failure = "open"` skipped.
    pub fn skipped(&self) {
        self.cells.local().skipped.inc();
    }

    /// Adds to the plugin's counter `name` (`counter-add`), within
    /// [`MAX_COUNTERS`] names of at most [`MAX_COUNTER_NAME_BYTES`].
    pub fn add_counter(&self, name: &str, delta: u64) -> Result<(), String> {
        self.counters.add(name, delta)
    }

    /// An attempt to put a plugin file in service, as `/admin/plugins`
    /// records it: `trigger` (`startup`, `file-change`, `config-reload`),
    /// `outcome` (`deployed`, `rejected`, `removed`) and, when rejected,
    /// the `step` that refused it.
    pub fn attempt(
        &self,
        trigger: &'static str,
        outcome: &'static str,
        step: Option<&'static str>,
    ) {
        *lock(&self.attempts).entry((trigger, outcome)).or_default() += 1;
        if let Some(step) = step {
            *lock(&self.rejections).entry((trigger, step)).or_default() += 1;
        }
    }

    /// The version now serving.
    pub fn set_serving(&self, sha256: &str) {
        let mut serving = lock(&self.serving);
        if serving.as_deref() != Some(sha256) {
            *serving = Some(sha256.into());
        }
    }

    /// Reads `source` at every scrape until the returned guard drops.
    pub fn register(self: &Arc<Self>, source: Arc<dyn SlotSource>) -> Registered {
        let mut slots = self.slots();
        let id = slots.next_id;
        slots.next_id += 1;
        slots.live.push((id, source));
        Registered {
            stats: self.clone(),
            id,
        }
    }

    fn slots(&self) -> MutexGuard<'_, Slots> {
        lock(&self.slots)
    }

    /// The slots' readings summed, with what the slots gone left.
    fn reading(&self) -> SlotReading {
        let slots = self.slots();
        let mut sum = slots.gone;
        for (_, s) in &slots.live {
            sum.add(&s.read());
        }
        sum
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    /// The stats of plugin `name`.
    pub fn plugin(&self, name: &str) -> Arc<PluginStats> {
        self.plugins.get(name)
    }

    /// Forgets plugins no chain names any more (after a reload or deploy
    /// put a registry serving `names` in service).
    pub fn keep_plugins<'a>(&self, names: impl Iterator<Item = &'a str>) {
        let names: std::collections::HashSet<&str> = names.collect();
        self.plugins.retain(|n| names.contains(n));
    }

    pub(super) fn plugins_section(&self, out: &mut Out<'_>) -> fmt::Result {
        exposition::encode(&self.plugins, out)
    }
}

mod exposition;

#[cfg(test)]
mod tests;
