use super::*;
use crate::plugin::{Capacity, Runtime};

const MS: Duration = Duration::from_millis(1);

fn armed(budget: Duration) -> CpuDeadline {
    let mut d = CpuDeadline::new(Arc::default());
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

/// `r` is the trap of an epoch interrupt, and the deadline says why.
fn interrupted(r: wasmtime::Result<()>, deadline: &CpuDeadline, why: Stop) {
    let err = r.unwrap_err();
    assert_eq!(
        err.downcast_ref::<wasmtime::Trap>(),
        Some(&wasmtime::Trap::Interrupt),
        "{err:?}"
    );
    assert_eq!(deadline.stopped(), Some(why));
}

#[test]
fn the_first_tick_marks_and_every_tick_checks_again() {
    let mut d = armed(10 * MS);
    let t0 = Instant::now();
    assert_eq!(continues(d.on_tick_at(3 * MS, t0)), Some(1));
    assert_eq!(continues(d.on_tick_at(8 * MS, t0 + 5 * MS)), Some(1));
    assert_eq!(d.stopped(), None);
}

#[test]
fn a_preempted_call_is_not_stopped_until_it_has_used_its_cpu() {
    let mut d = armed(10 * MS);
    let t0 = Instant::now();
    d.on_tick_at(Duration::ZERO, t0);
    // 50 ms of wall clock, 1 ms of CPU; 100 ms, 6 ms of CPU.
    assert_eq!(continues(d.on_tick_at(MS, t0 + 50 * MS)), Some(1));
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
    // 10 ms of wall clock left, 9 of CPU.
    assert_eq!(continues(d.on_tick_at(MS, t0 + 990 * MS)), Some(1));
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
    assert_eq!(continues(d.on_tick_at(20 * MS, t0 + 21 * MS)), Some(1));
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
    let mut store = Store::new(&rt.engine, rt.ticker.deadline());
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
    let r = spin.call(&mut store, ());
    interrupted(r, store.data(), Stop::Cpu);
    let used = thread_cpu_time() - cpu0;
    assert!(used >= 10 * MS - SLACK, "stopped after {used:?} of CPU");

    arm(&mut store, get, 10 * MS);
    // Checks fall on the loop's back edge, after each pause: the first
    // marks (300 ms), the fifth finds 1.2 s gone.
    let r = nap.call(&mut store, (10, 300));
    interrupted(r, store.data(), Stop::Wall);
}

/// An engine for the ticker tests below.
fn small_runtime() -> Runtime {
    Runtime::new(
        Capacity {
            instances: 2,
            max_memory_bytes: 1 << 20,
        },
        None,
    )
    .unwrap()
}

/// Whether `rt`'s ticker parks within 5 s.
fn parked(rt: &Runtime) -> bool {
    let give_up = Instant::now() + Duration::from_secs(5);
    while !rt.ticker.activity().parked() {
        if Instant::now() > give_up {
            return false;
        }
        std::thread::sleep(MS);
    }
    true
}

/// A store of `rt` with its deadline installed, and its function that
/// spins forever.
fn spinner(rt: &Runtime) -> (Store<CpuDeadline>, wasmtime::TypedFunc<(), ()>) {
    let wasm = wat::parse_str(r#"(module (func (export "spin") (loop br 0)))"#).unwrap();
    let module = wasmtime::Module::new(&rt.engine, &wasm).unwrap();
    let mut store = Store::new(&rt.engine, rt.ticker.deadline());
    let get: fn(&mut CpuDeadline) -> &mut CpuDeadline = |d| d;
    install(&mut store, get);
    let instance = wasmtime::Linker::<CpuDeadline>::new(&rt.engine)
        .instantiate(&mut store, &module)
        .unwrap();
    let spin = instance
        .get_typed_func::<(), ()>(&mut store, "spin")
        .unwrap();
    (store, spin)
}

/// An engine without calls parks its ticker within a few ticks; a call
/// armed then wakes it, the ticks inside a call keep it awake, and a
/// runaway call is still stopped at its deadline (30 ms: six ticks).
/// The calls run on a thread of their own, so a ticker that parked
/// under a running call fails the test instead of hanging it.
#[test]
fn an_idle_ticker_parks_and_the_next_call_wakes_it() {
    let rt = Arc::new(small_runtime());
    assert!(parked(&rt), "the ticker of an engine without calls parks");

    let (done, finished) = std::sync::mpsc::channel();
    let calls = rt.clone();
    std::thread::spawn(move || {
        let rt = calls;
        let (mut store, spin) = spinner(&rt);
        let get: fn(&mut CpuDeadline) -> &mut CpuDeadline = |d| d;
        for _ in 0..3 {
            assert!(parked(&rt));
            // Only a call unparks the ticker, and this thread makes
            // the only calls, so arming must count a wake-up (the
            // ticker may already have ticked and parked again by the
            // time this thread looks at `parked`).
            let wakes = rt.ticker.activity().wakes();
            arm(&mut store, get, 30 * MS);
            assert_eq!(
                rt.ticker.activity().wakes(),
                wakes + 1,
                "arming wakes the ticker"
            );
            let r = spin.call(&mut store, ());
            interrupted(r, store.data(), Stop::Cpu);
        }
        done.send(()).unwrap();
    });
    finished
        .recv_timeout(Duration::from_secs(60))
        .expect("every runaway call was stopped");
    assert!(parked(&rt), "parks again once the calls are over");
}

/// A call whose epoch deadline lies past the epoch its ticker parked at
/// (what a call preempted inside a tick's callback ends up with: wasmtime
/// sets the next deadline after the callback marked the engine busy) is
/// still reached, by the parked ticker's own tick, and stopped at its
/// deadline. Here the call is armed without marking the engine (as after
/// that preemption) and its deadline set two ticks ahead while the ticker
/// is parked; without the parked tick it would spin forever, so it runs
/// on a thread of its own and the test fails instead of hanging.
#[test]
fn a_call_past_the_parked_epoch_is_still_reached_and_stopped() {
    let rt = Arc::new(small_runtime());
    assert!(parked(&rt), "the idle ticker parks");
    let (done, finished) = std::sync::mpsc::channel();
    let calls = rt.clone();
    std::thread::spawn(move || {
        let rt = calls;
        let (mut store, spin) = spinner(&rt);
        // Armed as a preempted callback leaves a call: the budget set,
        // the engine not marked, the deadline two ticks ahead.
        let d = store.data_mut();
        d.budget = 20 * MS;
        d.mark = None;
        d.stopped = None;
        store.set_epoch_deadline(2);
        assert!(rt.ticker.activity().parked());
        let r = spin.call(&mut store, ());
        done.send(r.is_err() && store.data().stopped() == Some(Stop::Cpu))
            .unwrap();
    });
    let stopped = finished
        .recv_timeout(Duration::from_secs(20))
        .expect("a call past the parked epoch is reached by a tick");
    assert!(stopped, "and stopped at its CPU deadline");
}
