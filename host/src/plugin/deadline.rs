//! The CPU deadline of a plugin call (what a call may spend of its
//! thread's CPU time before it is stopped, and a wall-clock cap behind it)
//! and the epoch ticker that drives it.
//!
//! Epochs tick on wall-clock time, so a deadline counted in ticks alone
//! charges a plugin for time its thread spent preempted: on a busy machine
//! (two gateways, a build, a noisy neighbour) a call of a few microseconds
//! that is descheduled for 10 ms would trap as if it had looped, and its
//! request would fail. Instead, the first epoch tick inside a call reads the
//! thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`), and later ticks stop the
//! call only once it has used its deadline of CPU since then.
//!
//! Bounds, with tick = [`EPOCH_TICK`] (5 ms):
//! - CPU: a call is stopped once it has used its deadline of CPU time
//!   (less 1 ms of slack), counted from the first tick inside it. CPU used
//!   before that tick (at most one tick) is not counted, so a runaway call
//!   that has its core to itself is stopped after its deadline plus at most
//!   one tick. Every later tick inside the call checks again, so one that
//!   is also preempted is stopped at the first tick after it has used its
//!   deadline: up to one tick more.
//! - Wall clock: a call is also stopped after [`WALL_FACTOR`] times its
//!   deadline, at least [`MIN_WALL_CAP`], of wall-clock time from that first
//!   tick, whatever CPU it used. Plugins have no import that blocks, so only
//!   a starved machine gets near this; it bounds how long one call can hold
//!   a worker thread.
//!
//! Cost: nothing per call beyond arming (a few stores and one load); the
//! clock is read only at ticks that fall inside a call, which for calls of
//! microseconds is about one call in a thousand or fewer.
//!
//! The epoch ticker ([`Ticker`], one thread per engine) sleeps while no
//! plugin runs: after a whole tick in which no call was armed and none
//! ticked, it parks, and the next call to be armed wakes it. While a call
//! runs, each tick that reaches it marks the engine busy, so the ticker
//! does not park under it (see [`Activity`]). One case escapes that: a
//! call's epoch deadline is set by wasmtime after the tick's callback
//! returns, one tick past the epoch of that moment, so a call preempted
//! between marking the engine and that return can find its next deadline
//! one tick beyond the epoch the ticker parked at, and no tick would ever
//! reach it. So a parked ticker still ticks once every [`PARKED_TICK`]:
//! such a call is reached within that time (and then ticked as any other),
//! and an idle gateway wakes about ten times a second instead of 200.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use wasmtime::{Engine, Store, UpdateDeadline};

/// How often the epoch advances: the granularity of CPU deadlines (see
/// `deadline`; a call overruns its deadline by at most about one tick).
///
/// While plugin calls run, every tick wakes the ticker thread, and a
/// thread wake-up costs microseconds of CPU: a 1 ms tick would cost a busy
/// gateway about as much per request as a small plugin call itself
/// (tests/bench/RESULTS.md has the figures), 5 ms a fifth of that. The
/// shortest deadline the configuration accepts is one tick. Without calls
/// the ticker parks ([`Ticker`]).
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// How often a parked ticker still ticks (see the module documentation):
/// the most a call whose deadline a preemption pushed past the parked
/// epoch runs on unticked.
pub const PARKED_TICK: Duration = Duration::from_millis(100);

/// Wall-clock cap, as a multiple of the CPU deadline.
pub const WALL_FACTOR: u32 = 10;

/// The least wall-clock cap, whatever the deadline.
pub const MIN_WALL_CAP: Duration = Duration::from_secs(1);

/// A call within this much of its deadline is stopped at this tick rather
/// than given one more: the clock and the tick never line up exactly.
const SLACK: Duration = Duration::from_millis(1);

/// Why a call was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// It used its deadline of CPU time.
    Cpu,
    /// It ran for the wall-clock cap.
    Wall,
}

/// What an engine's ticker and the calls on its stores share.
///
/// The ticker parks only after a tick at which it found `used` clear, and
/// only if `used` is still clear after it set `parked`; a call sets `used`
/// when it is armed and at every tick inside it, then looks at `parked`
/// and wakes the ticker if it is set. Both sides write one flag and then
/// read the other, in one total order (`SeqCst`), so either the ticker
/// sees the call or the call sees the parked ticker. A call under way is
/// reached by the tick before a park and marks `used` (waking the ticker)
/// as soon as it runs again, unless it was preempted inside that tick's
/// callback long enough for its next deadline to land past the parked
/// epoch: for that case the parked ticker ticks every [`PARKED_TICK`].
#[derive(Debug, Default)]
pub struct Activity {
    /// Some call was armed, or ticked, since the ticker last looked.
    used: AtomicBool,
    /// The ticker is parked (or about to be) for want of calls.
    parked: AtomicBool,
    /// The engine is gone: the ticker ends.
    stop: AtomicBool,
    thread: OnceLock<Thread>,
    /// How often a call found the ticker parked and woke it.
    #[cfg(test)]
    wakes: std::sync::atomic::AtomicU32,
}

impl Activity {
    /// Marks the engine busy; wakes the ticker if it sleeps. One load when
    /// the engine is already marked (every call but the first of a tick).
    #[inline]
    fn touch(&self) {
        if !self.used.load(Ordering::SeqCst) {
            self.mark_used();
        }
    }

    #[cold]
    fn mark_used(&self) {
        self.used.store(true, Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst) {
            self.parked.store(false, Ordering::SeqCst);
            #[cfg(test)]
            self.wakes.fetch_add(1, Ordering::SeqCst);
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
    }

    /// Whether the ticker is parked now.
    #[cfg(test)]
    pub fn parked(&self) -> bool {
        self.parked.load(Ordering::SeqCst)
    }

    /// How many times a call has woken the parked ticker.
    #[cfg(test)]
    pub fn wakes(&self) -> u32 {
        self.wakes.load(Ordering::SeqCst)
    }
}

/// An engine's epoch ticker: a thread that advances the epoch every
/// [`EPOCH_TICK`] while plugin calls are armed or running, and parks
/// otherwise. Ends (within a tick) when dropped.
#[derive(Debug)]
pub struct Ticker {
    activity: Arc<Activity>,
}

impl Ticker {
    /// Starts the ticker thread for `engine`.
    pub fn start(engine: Engine) -> std::io::Result<Ticker> {
        let activity = Arc::new(Activity::default());
        let a = activity.clone();
        std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || tick(&engine, &a))?;
        Ok(Ticker { activity })
    }

    /// A deadline for a store of this engine, tied to this ticker.
    pub fn deadline(&self) -> CpuDeadline {
        CpuDeadline::new(self.activity.clone())
    }

    /// What the ticker and its calls share.
    #[cfg(test)]
    pub fn activity(&self) -> &Activity {
        &self.activity
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.activity.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.activity.thread.get() {
            t.unpark();
        }
    }
}

/// The ticker thread's loop.
fn tick(engine: &Engine, a: &Activity) {
    // Set before the first park, so a call that finds the ticker parked
    // always finds whom to wake.
    a.thread.set(std::thread::current()).ok();
    // A park that ran out its time ticks at once: it has waited longer
    // than a tick already.
    let mut probe = false;
    loop {
        if !probe {
            std::thread::sleep(EPOCH_TICK);
        }
        probe = false;
        if a.stop.load(Ordering::SeqCst) {
            return;
        }
        engine.increment_epoch();
        if a.used.swap(false, Ordering::SeqCst) {
            continue;
        }
        // A whole tick without a call: park, unless one came meanwhile.
        a.parked.store(true, Ordering::SeqCst);
        if a.used.load(Ordering::SeqCst) {
            a.parked.store(false, Ordering::SeqCst);
            continue;
        }
        let parked_at = Instant::now();
        while a.parked.load(Ordering::SeqCst) && !a.stop.load(Ordering::SeqCst) {
            let waited = parked_at.elapsed();
            if waited >= PARKED_TICK {
                // One tick anyway, then park again if no call is found.
                a.parked.store(false, Ordering::SeqCst);
                probe = true;
                break;
            }
            std::thread::park_timeout(PARKED_TICK - waited);
        }
    }
}

/// One store's deadline; armed before every call.
#[derive(Debug)]
pub struct CpuDeadline {
    budget: Duration,
    /// Thread CPU time and wall-clock time at the first tick inside the
    /// call, if a tick has fallen inside it yet.
    mark: Option<(Duration, Instant)>,
    /// Epoch ticks that fell inside the call: what the call is charged
    /// against its CPU share (`super::share`).
    ticks: u32,
    stopped: Option<Stop>,
    /// The engine's ticker, woken by a call if it sleeps.
    activity: Arc<Activity>,
}

impl CpuDeadline {
    /// A deadline whose calls keep the ticker sharing `activity` awake
    /// (see [`Ticker::deadline`]).
    pub fn new(activity: Arc<Activity>) -> CpuDeadline {
        CpuDeadline {
            budget: Duration::ZERO,
            mark: None,
            ticks: 0,
            stopped: None,
            activity,
        }
    }

    /// Readies the deadline for one call of at most `budget` CPU time, and
    /// wakes the ticker if it sleeps. The store's epoch deadline must be
    /// set to one tick with it.
    #[inline]
    pub fn arm(&mut self, budget: Duration) {
        self.budget = budget;
        self.mark = None;
        self.ticks = 0;
        self.stopped = None;
        self.activity.touch();
    }

    /// The CPU deadline the current (or last) call was armed with.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// How many epoch ticks fell inside the current (or last) call.
    pub fn ticks(&self) -> u32 {
        self.ticks
    }

    /// Why the last call was stopped, if it was.
    pub fn stopped(&self) -> Option<Stop> {
        self.stopped
    }

    /// The wall-clock cap for the armed budget.
    pub fn wall_cap(&self) -> Duration {
        (self.budget * WALL_FACTOR).max(MIN_WALL_CAP)
    }

    /// An epoch tick inside the call: keeps the ticker awake and reads
    /// the thread's clocks.
    fn on_tick(&mut self) -> UpdateDeadline {
        self.activity.touch();
        self.on_tick_at(thread_cpu_time(), Instant::now())
    }

    /// An epoch tick inside the call, with the thread's CPU time and the
    /// wall-clock time now. A call that goes on is checked again at the
    /// next tick: every tick must reach a running call (see [`Activity`]),
    /// and a clock read every tick is nothing next to a call that long.
    fn on_tick_at(&mut self, cpu: Duration, now: Instant) -> UpdateDeadline {
        self.ticks = self.ticks.saturating_add(1);
        let Some((cpu0, wall0)) = self.mark else {
            self.mark = Some((cpu, now));
            return UpdateDeadline::Continue(1);
        };
        let used = cpu.saturating_sub(cpu0);
        let waited = now.saturating_duration_since(wall0);
        if used + SLACK >= self.budget {
            self.stopped = Some(Stop::Cpu);
            UpdateDeadline::Interrupt
        } else if waited + SLACK >= self.wall_cap() {
            self.stopped = Some(Stop::Wall);
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::Continue(1)
        }
    }
}

/// CPU time this thread has used.
fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Makes epoch deadlines in `store` consult the store's [`CpuDeadline`]
/// (found with `deadline`) instead of trapping outright.
pub fn install<T: 'static>(store: &mut Store<T>, deadline: fn(&mut T) -> &mut CpuDeadline) {
    store.epoch_deadline_callback(move |mut cx| Ok(deadline(cx.data_mut()).on_tick()));
}

/// Arms `store` for one call of at most `budget` CPU time.
#[inline]
pub fn arm<T>(store: &mut Store<T>, deadline: fn(&mut T) -> &mut CpuDeadline, budget: Duration) {
    deadline(store.data_mut()).arm(budget);
    store.set_epoch_deadline(1);
}

#[cfg(test)]
mod tests;
