//! The one wasmtime engine, narrowed in one constructor so no other code
//! has to think about its configuration: component model on, epoch
//! interruption with a ticker thread, a bounded pooling allocator, and a
//! linker that offers the Weir contract plus the few WASI functions Rust's
//! standard library may call at start-up (random seeds, the wall clock, an
//! empty environment, exit). Every other WASI import a component names is
//! linked to a function that traps: no filesystem, sockets, stdio or
//! environment variables are reachable.
//!
//! Why not all of `wasmtime-wasi` with an empty context: its synchronous
//! bindings block on a Tokio runtime of their own for stream I/O, which
//! panics on our single-threaded worker runtimes. The functions linked here
//! never block. A plugin that prints traps instead; plugins log through
//! the host's `log`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::random::{WasiRandom, WasiRandomView};

use super::bindings;
use super::host::StoreData;

/// How often the epoch advances: the granularity of CPU deadlines. A call
/// overruns its deadline by at most one tick.
///
/// Every tick wakes the ticker thread, whether or not a plugin call is
/// running, and on the benchmark VM a wake-up costs about 16 µs of CPU: at
/// 1 ms the ticker alone burnt 16 ms of CPU per second, 0.27 µs per request
/// at 61,000 requests per second (as much as the plugin call itself), and
/// 2 % of a core when idle. At 5 ms it is a fifth of that; the shortest
/// deadline the configuration accepts is one tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Wasm stack per call. Worker threads have 2 MiB of native stack; this
/// leaves room for the gateway's own frames, so unbounded recursion traps
/// inside Wasm instead of overflowing the thread.
const MAX_WASM_STACK: usize = 512 * 1024;

/// What the pooling allocator must hold: set from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Capacity {
    /// Component instances alive at once, over all plugins.
    pub instances: u32,
    /// The largest memory any plugin may grow to.
    pub max_memory_bytes: usize,
}

/// The WASI interfaces plugins may call (any 0.2.x version): hash-map
/// seeds, wall-clock time, an empty environment, exit. Every other WASI
/// import is linked to a trap (`load`).
pub(super) const PROVIDED_WASI: &[&str] = &[
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:clocks/wall-clock",
    "wasi:cli/environment",
    "wasi:cli/exit",
];

/// The engine, its linker and its epoch ticker.
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<StoreData>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

impl Runtime {
    pub fn new(capacity: Capacity) -> wasmtime::Result<Runtime> {
        let n = capacity.instances.max(1);
        let mut pool = PoolingAllocationConfig::default();
        // A Rust component is one core module plus a few small shims; the
        // per-component numbers leave headroom for that shape and no more.
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(8))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(4))
            .total_stacks(0)
            .max_core_instances_per_component(16)
            .max_memories_per_component(2)
            .max_tables_per_component(4)
            .max_memory_size(capacity.max_memory_bytes);

        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(MAX_WASM_STACK)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;

        let mut linker = Linker::new(&engine);
        bindings::Plugin::add_to_linker::<StoreData, HasSelf<StoreData>>(&mut linker, |s| s)?;
        {
            use wasmtime_wasi::p2::bindings::{cli, clocks, random};
            let l = &mut linker;
            random::random::add_to_linker::<StoreData, WasiRandom>(l, |t| t.random())?;
            random::insecure::add_to_linker::<StoreData, WasiRandom>(l, |t| t.random())?;
            random::insecure_seed::add_to_linker::<StoreData, WasiRandom>(l, |t| t.random())?;
            clocks::wall_clock::add_to_linker::<StoreData, WasiClocks>(l, |t| t.clocks())?;
            cli::environment::add_to_linker::<StoreData, WasiCli>(l, |t| t.cli())?;
            cli::exit::add_to_linker::<StoreData, WasiCli>(l, |t| t.cli())?;
        }

        let stop = Arc::new(AtomicBool::new(false));
        let (ticking, flag) = (engine.clone(), stop.clone());
        std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticking.increment_epoch();
                }
            })
            .map_err(|e| wasmtime::format_err!("cannot start the epoch ticker: {e}"))?;
        Ok(Runtime {
            engine,
            linker,
            stop,
        })
    }

    /// Epoch ticks for a CPU deadline: rounded up, plus the tick already
    /// under way so a call gets at least its full deadline.
    pub fn deadline_ticks(deadline: Duration) -> u64 {
        deadline.as_micros().div_ceil(EPOCH_TICK.as_micros()) as u64 + 1
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_up_to_ticks_plus_the_one_under_way() {
        assert_eq!(Runtime::deadline_ticks(EPOCH_TICK), 2);
        assert_eq!(
            Runtime::deadline_ticks(EPOCH_TICK * 2 + Duration::from_micros(1)),
            4
        );
    }
}
