//! Wasm plugins: the wasmtime engine (`engine`), the generated contract
//! bindings (`bindings`, the only generated code), the host functions
//! (`host`), shared state (`state`), loading and version checks (`load`)
//! and instance pools (`pool`). This module's [`Plugins`] is the registry
//! the server builds at start-up and `weir check` builds to validate; it
//! hands each route a [`Chain`]. The order of phases within a request is
//! not decided here but in `proxy`.
//!
//! The registry keeps each plugin's compiled version behind an `ArcSwap`,
//! shared with every slot that uses it, so a later hot deploy can swap a
//! new version in atomically: calls in flight finish on the old one, and
//! old instances are dropped as they come back.

pub mod bindings;
mod engine;
pub mod host;
mod load;
mod pool;
pub mod state;

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{Config, PluginRef};
pub use engine::{Capacity, EPOCH_TICK, Runtime};
pub use host::Context;
pub use load::{CONTRACT, Compiled, MAX_PLUGIN_FILE_BYTES, PluginError, PluginErrors};
pub use pool::{
    Action, BodyAction, Capabilities, Failure, FailureKind, Instance, Io, Respond, Slot,
};
use state::{Counters, Namespace};

/// The plugins of one route, global chain first, in call order.
#[derive(Debug, Default)]
pub struct Chain {
    pub slots: Vec<Arc<Slot>>,
    /// Whether any plugin asked for the request (response) body.
    pub request_body: bool,
    pub response_body: bool,
    /// Whether any plugin asked for the response (log) phase: without
    /// one, the pipeline neither keeps a copy of the request head for it
    /// nor (for the log phase) spawns a task.
    pub response: bool,
    pub log: bool,
}

impl Chain {
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// Every plugin the configuration names, compiled, and the chains built
/// from them.
pub struct Plugins {
    runtime: Option<Arc<Runtime>>,
    compiled: HashMap<String, Arc<ArcSwap<Compiled>>>,
    namespaces: HashMap<String, Arc<Namespace>>,
    pub counters: Arc<Counters>,
    /// One slot per (plugin, configuration), shared by every chain that
    /// names that pair: the global chain's slots serve every route.
    slots: HashMap<PluginRef, Arc<Slot>>,
    body_cap: usize,
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugins")
            .field("plugins", &self.compiled.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Plugins {
    /// Compiles every plugin a chain names and builds every chain (which
    /// runs each configuration's `init` once). Returns one chain per route
    /// of `config.routes`, in order. Without plugins no engine is started.
    pub fn load(config: &Config) -> Result<(Plugins, Vec<Arc<Chain>>), PluginErrors> {
        let pc = &config.plugins;
        let names = pc.referenced(&config.routes);
        let mut plugins = Plugins {
            runtime: None,
            compiled: HashMap::new(),
            namespaces: HashMap::new(),
            counters: Arc::default(),
            slots: HashMap::new(),
            body_cap: pc.max_request_body_bytes.max(pc.max_response_body_bytes),
        };
        if names.is_empty() {
            let chains = config.routes.iter().map(|_| Arc::default()).collect();
            return Ok((plugins, chains));
        }

        // The pool holds every slot's instances twice over, so a hot swap
        // can run an old and a new version side by side.
        let mut distinct: Vec<&PluginRef> = Vec::new();
        for r in pc
            .global
            .iter()
            .chain(config.routes.iter().flat_map(|r| r.plugins.iter()))
        {
            if !distinct.contains(&r) {
                distinct.push(r);
            }
        }
        let instances: usize = distinct
            .iter()
            .map(|r| pc.settings(&r.name).max_instances)
            .sum();
        let max_memory = names
            .iter()
            .map(|n| pc.settings(n).memory_bytes)
            .max()
            .unwrap_or(0);
        let capacity = Capacity {
            instances: (instances * 2).min(u32::MAX as usize) as u32,
            max_memory_bytes: max_memory,
        };
        let runtime = Runtime::new(capacity).map_err(|e| {
            PluginErrors(vec![PluginError {
                name: names[0].to_owned(),
                path: pc.dir.clone(),
                reason: format!("cannot start the Wasm engine: {e:#}"),
            }])
        })?;
        let runtime = Arc::new(runtime);
        plugins.runtime = Some(runtime.clone());

        let mut errors = Vec::new();
        for name in &names {
            match load::compile(&runtime, name, &pc.file(name), pc.settings(name)) {
                Ok(c) => {
                    plugins
                        .compiled
                        .insert((*name).to_owned(), Arc::new(ArcSwap::from_pointee(c)));
                    plugins
                        .namespaces
                        .insert((*name).to_owned(), Arc::default());
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(PluginErrors(errors));
        }

        let mut chains = Vec::with_capacity(config.routes.len());
        for route in &config.routes {
            match plugins.chain(pc.global.iter().chain(route.plugins.iter())) {
                Ok(c) => chains.push(c),
                Err(e) => {
                    if !errors
                        .iter()
                        .any(|x: &PluginError| x.to_string() == e.to_string())
                    {
                        errors.push(e);
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(PluginErrors(errors));
        }
        Ok((plugins, chains))
    }

    fn chain<'a>(
        &mut self,
        refs: impl Iterator<Item = &'a PluginRef>,
    ) -> Result<Arc<Chain>, PluginError> {
        let mut chain = Chain::default();
        for r in refs {
            let slot = match self.slots.get(r) {
                Some(s) => s.clone(),
                None => {
                    let compiled = self.compiled[&r.name].clone();
                    let path = compiled.load().path.clone();
                    let slot = Slot::new(
                        compiled,
                        r.config.clone(),
                        self.runtime
                            .clone()
                            .expect("a runtime exists when plugins do"),
                        self.namespaces[&r.name].clone(),
                        self.counters.clone(),
                        self.body_cap,
                    )
                    .map_err(|f| PluginError {
                        name: r.name.clone(),
                        path,
                        reason: format!("with configuration {}: {}", r.config, f.kind),
                    })?;
                    let slot = Arc::new(slot);
                    self.slots.insert(r.clone(), slot.clone());
                    slot
                }
            };
            chain.request_body |= slot.caps.request_body;
            chain.response_body |= slot.caps.response_body;
            chain.response |= slot.caps.response;
            chain.log |= slot.caps.log;
            chain.slots.push(slot);
        }
        Ok(Arc::new(chain))
    }

    /// The named plugins, sorted; for start-up logs and `weir check`.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.compiled.keys().map(String::as_str).collect();
        v.sort();
        v
    }
}

/// Cost of plugin calls, printed, not asserted (timing assertions are
/// flaky by nature): `cargo test -p weir --lib plugin::measure --
/// --ignored --nocapture` after the e2e tests built the fixtures (and, for
/// the bundled plugins, `cargo build --release --target wasm32-wasip2
/// --target-dir ../target/bundled` in plugins/). Files not built are
/// skipped.
#[cfg(test)]
mod measure {
    use std::net::{IpAddr, Ipv4Addr};
    use std::path::Path;
    use std::time::Instant;

    use http::HeaderValue;

    use super::*;

    fn slot_for(file: &str, config: &str) -> Option<(Plugins, Arc<Chain>)> {
        let built = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target")
            .join(file);
        let tag = file.replace('/', "-");
        let dir = std::env::temp_dir().join(format!("weir-measure-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(dir.join("plugins")).ok()?;
        std::fs::copy(&built, dir.join("plugins/p.wasm")).ok()?;
        let text = format!(
            "[[listener]]\naddress = \"127.0.0.1:0\"\n[[upstream]]\nname = \"a\"\nendpoints = [\"127.0.0.1:9\"]\n[[route]]\nupstream = \"a\"\nplugins = [{{ name = \"p\", config = {config} }}]\n"
        );
        let config = Config::parse(&dir.join("weir.toml"), &text).unwrap();
        let (plugins, chains) = Plugins::load(&config).unwrap();
        Some((plugins, chains[0].clone()))
    }

    #[test]
    #[ignore = "measurement; prints numbers"]
    fn per_call_cost() {
        let fixtures = "fixture-plugins/wasm32-wasip2/release";
        let bundled = "bundled/wasm32-wasip2/release";
        let cases = [
            (
                format!("{fixtures}/fixture_hostile.wasm"),
                "{ mode = \"none\" }",
                "fixture no-op",
            ),
            (
                format!("{bundled}/noop.wasm"),
                "{}",
                "bundled noop (weir-sdk)",
            ),
            (
                format!("{bundled}/header_rewrite.wasm"),
                "{}",
                "bundled header-rewrite (weir-sdk)",
            ),
            (
                format!("{fixtures}/fixture_basic.wasm"),
                "{ tag = \"t\" }",
                "fixture basic (log, context, state, random, 6 header edits)",
            ),
        ];
        for (file, config, what) in cases {
            let Some((_plugins, chain)) = slot_for(&file, config) else {
                eprintln!("{file} not built; skipped");
                continue;
            };
            let slot = &chain.slots[0];
            let mut id = HeaderValue::from_static("measure");
            let mut context = Context::default();
            let mut held = None;
            let n = 20_000;
            let mut parts = http::Request::get("/x")
                .header("host", "a")
                .body(())
                .unwrap()
                .into_parts()
                .0;
            let started = Instant::now();
            for _ in 0..n {
                let mut io = Io {
                    req: &mut parts,
                    resp: None,
                    context: &mut context,
                    id: &mut id,
                    client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    held: &mut held,
                };
                slot.on_request(&mut io).unwrap();
                parts.headers.remove("x-fx-order");
            }
            let per = started.elapsed() / n;
            eprintln!("{what}: on-request {per:?} per call ({n} calls)");
        }
    }
}
