//! The CPU deadline of a plugin call: what a call may spend of its
//! thread's CPU time before it is stopped, and a wall-clock cap behind it.
//!
//! Epochs tick on wall-clock time, so a deadline counted in ticks alone
//! charges a plugin for time its thread spent preempted. On a busy machine
//! (two gateways, a build, a noisy neighbour) a call of a few microseconds
//! that is descheduled for 10 ms trapped as if it had looped, and the
//! request failed. Instead, the first epoch tick inside a call reads the
//! thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`), and later ticks stop the
//! call only once it has used its deadline of CPU since then.
//!
//! Bounds, with tick = [`EPOCH_TICK`] (5 ms):
//! - CPU: a call is stopped once it has used its deadline of CPU time
//!   (less 1 ms of slack), counted from the first tick inside it. CPU used
//!   before that tick (at most one tick) is not counted, so a runaway call
//!   that has its core to itself is stopped after its deadline plus at most
//!   one tick. One that is also preempted is checked again when it could
//!   have used the rest, rounded up to a tick: up to one tick more.
//! - Wall clock: a call is also stopped after [`WALL_FACTOR`] times its
//!   deadline, at least [`MIN_WALL_CAP`], of wall-clock time from that first
//!   tick, whatever CPU it used. Plugins have no import that blocks, so only
//!   a starved machine gets near this; it bounds how long one call can hold
//!   a worker thread.
//!
//! Cost: nothing per call beyond arming (three stores); the clock is read
//! only at ticks that fall inside a call, which for calls of microseconds
//! is about one call in a thousand or fewer.

use std::time::{Duration, Instant};

use wasmtime::{Store, UpdateDeadline};

use super::engine::EPOCH_TICK;

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

/// One store's deadline; armed before every call.
#[derive(Debug, Default)]
pub struct CpuDeadline {
    budget: Duration,
    /// Thread CPU time and wall-clock time at the first tick inside the
    /// call, if a tick has fallen inside it yet.
    mark: Option<(Duration, Instant)>,
    stopped: Option<Stop>,
}

impl CpuDeadline {
    /// Readies the deadline for one call of at most `budget` CPU time. The
    /// store's epoch deadline must be set to one tick with it.
    #[inline]
    pub fn arm(&mut self, budget: Duration) {
        self.budget = budget;
        self.mark = None;
        self.stopped = None;
    }

    /// The CPU deadline the current (or last) call was armed with.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// Why the last call was stopped, if it was.
    pub fn stopped(&self) -> Option<Stop> {
        self.stopped
    }

    /// The wall-clock cap for the armed budget.
    pub fn wall_cap(&self) -> Duration {
        (self.budget * WALL_FACTOR).max(MIN_WALL_CAP)
    }

    /// An epoch tick inside the call: reads the thread's clocks.
    fn on_tick(&mut self) -> UpdateDeadline {
        self.on_tick_at(thread_cpu_time(), Instant::now())
    }

    /// An epoch tick inside the call, with the thread's CPU time and the
    /// wall-clock time now.
    fn on_tick_at(&mut self, cpu: Duration, now: Instant) -> UpdateDeadline {
        let Some((cpu0, wall0)) = self.mark else {
            self.mark = Some((cpu, now));
            return UpdateDeadline::Continue(ticks(self.budget));
        };
        let used = cpu.saturating_sub(cpu0);
        let waited = now.saturating_duration_since(wall0);
        let cap = self.wall_cap();
        if used + SLACK >= self.budget {
            self.stopped = Some(Stop::Cpu);
            UpdateDeadline::Interrupt
        } else if waited + SLACK >= cap {
            self.stopped = Some(Stop::Wall);
            UpdateDeadline::Interrupt
        } else {
            // Even a thread that runs throughout needs this long to use
            // the rest of its budget, so no earlier tick could stop it.
            UpdateDeadline::Continue(ticks((self.budget - used).min(cap - waited)))
        }
    }
}

/// Ticks until `d` has passed: rounded up, at least one.
fn ticks(d: Duration) -> u64 {
    (d.as_micros().div_ceil(EPOCH_TICK.as_micros()) as u64).max(1)
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
mod tests {
    use super::*;
    use crate::plugin::{Capacity, Runtime};

    const MS: Duration = Duration::from_millis(1);

    fn armed(budget: Duration) -> CpuDeadline {
        let mut d = CpuDeadline::default();
        d.arm(budget);
        d
    }

    fn interrupts(u: UpdateDeadline) -> bool {
        matches!(u, UpdateDeadline::Interrupt)
    }

    fn continues(u: UpdateDeadline) -> Option<u64> {
        match u {
            UpdateDeadline::Continue(n) => Some(n),
            _ => None,
        }
    }

    #[test]
    fn the_first_tick_marks_and_waits_a_whole_budget() {
        let mut d = armed(10 * MS);
        let t0 = Instant::now();
        assert_eq!(continues(d.on_tick_at(3 * MS, t0)), Some(2));
        assert_eq!(d.stopped(), None);
    }

    #[test]
    fn a_preempted_call_is_not_stopped_until_it_has_used_its_cpu() {
        let mut d = armed(10 * MS);
        let t0 = Instant::now();
        d.on_tick_at(Duration::ZERO, t0);
        // 50 ms of wall clock, 1 ms of CPU: wait for the 9 ms left.
        assert_eq!(continues(d.on_tick_at(MS, t0 + 50 * MS)), Some(2));
        // 100 ms, 6 ms of CPU: one more tick covers the 4 ms left.
        assert_eq!(continues(d.on_tick_at(6 * MS, t0 + 100 * MS)), Some(1));
        assert_eq!(d.stopped(), None);
        assert!(interrupts(d.on_tick_at(10 * MS, t0 + 105 * MS)));
        assert_eq!(d.stopped(), Some(Stop::Cpu));
    }

    #[test]
    fn a_call_within_the_slack_of_its_budget_is_stopped_now() {
        let mut d = armed(10 * MS);
        let t0 = Instant::now();
        d.on_tick_at(Duration::ZERO, t0);
        assert!(interrupts(d.on_tick_at(10 * MS - SLACK / 2, t0 + 10 * MS)));
        assert_eq!(d.stopped(), Some(Stop::Cpu));
    }

    #[test]
    fn the_wall_clock_cap_stops_a_call_that_never_runs_out_of_cpu() {
        let mut d = armed(10 * MS);
        assert_eq!(d.wall_cap(), MIN_WALL_CAP);
        let t0 = Instant::now();
        d.on_tick_at(Duration::ZERO, t0);
        // Never more than the cap away: 10 ms of wall clock left, 9 of CPU.
        assert_eq!(continues(d.on_tick_at(MS, t0 + 990 * MS)), Some(2));
        assert!(interrupts(d.on_tick_at(2 * MS, t0 + 1000 * MS)));
        assert_eq!(d.stopped(), Some(Stop::Wall));

        let d = armed(Duration::from_secs(1));
        assert_eq!(d.wall_cap(), Duration::from_secs(10));
    }

    #[test]
    fn arming_forgets_the_last_call() {
        let mut d = armed(10 * MS);
        let t0 = Instant::now();
        d.on_tick_at(Duration::ZERO, t0);
        assert!(interrupts(d.on_tick_at(20 * MS, t0 + 20 * MS)));
        d.arm(10 * MS);
        assert_eq!(d.stopped(), None);
        assert_eq!(continues(d.on_tick_at(20 * MS, t0 + 21 * MS)), Some(2));
    }

    /// The deadline in a real store, against the thread's real clocks: a
    /// call whose thread is off the CPU for eight times its deadline (the
    /// host import sleeps, as a preempted thread would) completes; a spin
    /// loop is stopped for CPU, having used at least its deadline less the
    /// slack; a call off the CPU past the wall-clock cap is stopped for
    /// that.
    #[test]
    fn real_calls_are_charged_for_cpu_not_for_time_off_it() {
        let rt = Runtime::new(
            Capacity {
                instances: 2,
                max_memory_bytes: 1 << 20,
            },
            None,
        )
        .unwrap();
        let wasm = wat::parse_str(
            r#"(module
                (import "host" "pause" (func $pause (param i32)))
                (func (export "nap") (param $n i32) (param $ms i32)
                  (loop $l
                    (call $pause (local.get $ms))
                    (local.set $n (i32.sub (local.get $n) (i32.const 1)))
                    (br_if $l (local.get $n))))
                (func (export "spin") (loop br 0)))"#,
        )
        .unwrap();
        let module = wasmtime::Module::new(&rt.engine, &wasm).unwrap();
        let mut linker = wasmtime::Linker::<CpuDeadline>::new(&rt.engine);
        linker
            .func_wrap("host", "pause", |ms: u32| {
                std::thread::sleep(Duration::from_millis(ms.into()))
            })
            .unwrap();
        let mut store = Store::new(&rt.engine, CpuDeadline::default());
        let get: fn(&mut CpuDeadline) -> &mut CpuDeadline = |d| d;
        install(&mut store, get);
        let instance = linker.instantiate(&mut store, &module).unwrap();
        let nap = instance
            .get_typed_func::<(u32, u32), ()>(&mut store, "nap")
            .unwrap();
        let spin = instance
            .get_typed_func::<(), ()>(&mut store, "spin")
            .unwrap();

        arm(&mut store, get, 10 * MS);
        let started = Instant::now();
        nap.call(&mut store, (8, 10)).unwrap();
        assert!(started.elapsed() >= 80 * MS);
        assert_eq!(store.data().stopped(), None);

        arm(&mut store, get, 10 * MS);
        let cpu0 = thread_cpu_time();
        let err = spin.call(&mut store, ()).unwrap_err();
        assert_eq!(
            err.downcast_ref::<wasmtime::Trap>(),
            Some(&wasmtime::Trap::Interrupt),
            "{err:?}"
        );
        assert_eq!(store.data().stopped(), Some(Stop::Cpu));
        let used = thread_cpu_time() - cpu0;
        assert!(used >= 10 * MS - SLACK, "stopped after {used:?} of CPU");

        arm(&mut store, get, 10 * MS);
        // Checks fall on the loop's back edge, after each pause: the first
        // marks (300 ms), the fifth finds 1.2 s gone.
        let err = nap.call(&mut store, (10, 300)).unwrap_err();
        assert_eq!(
            err.downcast_ref::<wasmtime::Trap>(),
            Some(&wasmtime::Trap::Interrupt),
            "{err:?}"
        );
        assert_eq!(store.data().stopped(), Some(Stop::Wall));
    }
}
