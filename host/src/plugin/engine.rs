//! The one wasmtime engine, narrowed in one constructor so no other code
//! has to think about its configuration: component model on, epoch
//! interruption with a ticker thread (`deadline::Ticker`, parked while no
//! plugin runs), a bounded pooling allocator, and a
//! linker that offers the Weir contract plus the few WASI functions Rust's
//! standard library may call at start-up (random seeds, the wall clock, an
//! empty environment, exit). Every other WASI import a component names is
//! linked to a function that traps: no filesystem, sockets, stdio or
//! environment variables are reachable.
//!
//! Two compilers, two engines: the optimizing one (Cranelift) serves
//! everything normally; the baseline one (Winch, several times faster to
//! compile, slower code) lets a hot deploy of a file the cache does not
//! hold serve within tens of milliseconds while the optimizing build is
//! made in the background and swapped in after it (`Tier`).
//!
//! Compiled plugins are cached on disk with wasmtime's own cache, keyed
//! by the file's contents, the engine's settings and the wasmtime version,
//! so a restart or a redeploy of a known file does not compile it again.
//! wasmtime checks every cached artifact against this engine when it
//! loads it; a stale or foreign entry is compiled afresh.
//!
//! Why not all of `wasmtime-wasi` with an empty context: its synchronous
//! bindings block on a Tokio runtime of their own for stream I/O, which
//! panics on our single-threaded worker runtimes. The functions linked here
//! never block. A plugin that prints traps instead; plugins log through
//! the host's `log`.

use std::path::{Path, PathBuf};

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{
    Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig,
    Strategy,
};
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::random::{WasiRandom, WasiRandomView};

use super::bindings::{self, HTTP_INTERFACE};
use super::deadline::Ticker;
use super::host::StoreData;

/// Wasm stack per call. Worker threads have 2 MiB of native stack; this
/// leaves room for the gateway's own frames, so unbounded recursion traps
/// inside Wasm instead of overflowing the thread.
const MAX_WASM_STACK: usize = 512 * 1024;

/// What the pooling allocator must hold: set from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Component instances alive at once, over all plugins.
    pub instances: u32,
    /// The largest memory any plugin may grow to.
    pub max_memory_bytes: usize,
}

/// Which compiler an engine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Winch: compiles fast, runs slower. Used only for the first minutes
    /// (in practice, a second or less) after a deploy of an uncached file.
    Baseline,
    /// Cranelift: what serves normally. Its output is cached on disk.
    Optimized,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Baseline => "baseline",
            Tier::Optimized => "optimized",
        }
    }
}

/// How the compiled-plugin cache has served this engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// Plugins loaded from the cache instead of compiled.
    pub hits: usize,
    /// Plugins compiled (and then stored in the cache).
    pub misses: usize,
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
    /// What the pooling allocator was sized for.
    pub capacity: Capacity,
    pub tier: Tier,
    /// Where compiled plugins are cached; `None` when caching is off.
    pub cache_dir: Option<PathBuf>,
    cache: Option<Cache>,
    /// Advances the epoch while calls run; ends when the runtime goes.
    pub(crate) ticker: Ticker,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

impl Runtime {
    /// Builds an engine with the optimizing compiler. `cache_dir` turns on
    /// the compiled-plugin cache; a cache folder that cannot be used is
    /// logged and compilation goes on uncached.
    pub fn new(capacity: Capacity, cache_dir: Option<&Path>) -> wasmtime::Result<Runtime> {
        Runtime::build(capacity, cache_dir, Tier::Optimized)
    }

    /// Builds an engine with the baseline compiler (never cached: its
    /// output serves only until the optimized build is ready).
    pub fn baseline(capacity: Capacity) -> wasmtime::Result<Runtime> {
        Runtime::build(capacity, None, Tier::Baseline)
    }

    fn build(
        capacity: Capacity,
        cache_dir: Option<&Path>,
        tier: Tier,
    ) -> wasmtime::Result<Runtime> {
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
        if tier == Tier::Baseline {
            config.strategy(Strategy::Winch);
        }
        // wasmtime's cache gets a folder of its own: its cleanup deletes
        // any file there it does not recognise, such as our markers.
        let cache = cache_dir.and_then(|dir| {
            let mut cc = CacheConfig::new();
            cc.with_directory(dir.join("wasmtime"));
            match std::fs::create_dir_all(dir.join("wasmtime"))
                .map_err(wasmtime::Error::from)
                .and_then(|()| Cache::new(cc))
            {
                Ok(cache) => {
                    config.cache(Some(cache.clone()));
                    Some((dir.to_owned(), cache))
                }
                Err(e) => {
                    tracing::warn!(cache_dir = %dir.display(), error = %e, "cannot use the compiled-plugin cache; plugins are compiled on every start");
                    None
                }
            }
        });
        let (cache_dir, cache) = cache.unzip();
        let engine = Engine::new(&config)?;

        let mut linker = Linker::new(&engine);
        bindings::Plugin::add_to_linker::<StoreData, HasSelf<StoreData>>(&mut linker, |s| s)?;
        super::hot::link(&mut linker, HTTP_INTERFACE)?;
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

        let ticker = Ticker::start(engine.clone())
            .map_err(|e| wasmtime::format_err!("cannot start the epoch ticker: {e}"))?;
        Ok(Runtime {
            engine,
            linker,
            capacity,
            tier,
            cache_dir,
            cache,
            ticker,
        })
    }

    /// Compilations served from the cache and compilations done, since
    /// this engine started; `None` when caching is off.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.cache.as_ref().map(|c| CacheStats {
            hits: c.cache_hits(),
            misses: c.cache_misses(),
        })
    }

    /// The marker file saying that this engine compiled (and so cached)
    /// the file with this hash: a deploy that finds it compiles with the
    /// optimizing compiler at once, expecting a cache hit. wasmtime may
    /// evict entries, which only makes such a deploy slower.
    pub fn cached_marker(&self, sha256: &str) -> Option<PathBuf> {
        use std::hash::{Hash, Hasher};
        let dir = self.cache_dir.as_ref()?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        Some(
            dir.join("weir-compiled")
                .join(format!("{:016x}-{sha256}", h.finish())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::deadline::{self, CpuDeadline};
    use std::time::Duration;
    use wasmtime::Store;
    use wasmtime::component::Component;

    /// The baseline compiler honours epoch deadlines too: a runaway loop
    /// compiled by it is stopped.
    #[test]
    fn baseline_code_is_interrupted_at_its_deadline() {
        let capacity = Capacity {
            instances: 2,
            max_memory_bytes: 1 << 20,
        };
        let rt = Runtime::baseline(capacity).unwrap();
        assert_eq!(rt.tier, Tier::Baseline);
        let wasm = wat::parse_str(
            r#"(component
                (core module $m (func (export "spin") (loop br 0)))
                (core instance $i (instantiate $m))
                (func (export "spin") (canon lift (core func $i "spin"))))"#,
        )
        .unwrap();
        let component = Component::new(&rt.engine, &wasm).unwrap();
        let linker = Linker::<CpuDeadline>::new(&rt.engine);
        let mut store = Store::new(&rt.engine, rt.ticker.deadline());
        let get: fn(&mut CpuDeadline) -> &mut CpuDeadline = |d| d;
        deadline::install(&mut store, get);
        let instance = linker.instantiate(&mut store, &component).unwrap();
        let spin = instance
            .get_typed_func::<(), ()>(&mut store, "spin")
            .unwrap();
        deadline::arm(&mut store, get, Duration::from_millis(10));
        let err = spin.call(&mut store, ()).unwrap_err();
        assert_eq!(
            err.downcast_ref::<wasmtime::Trap>(),
            Some(&wasmtime::Trap::Interrupt),
            "{err:?}"
        );
    }
}
