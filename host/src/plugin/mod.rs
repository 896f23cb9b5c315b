//! Wasm plugins: the wasmtime engine (`engine`), the generated contract
//! bindings (`bindings`, the only generated code), the host functions
//! (`host`, with the hot header calls bound by hand in `hot`), shared
//! state (`state`), a request's access-log fields (`log_fields`), CPU
//! deadlines and the epoch ticker (`deadline`), loading and version checks (`load`) and instance pools (`pool`). This module's [`Plugins`] is the registry
//! the server builds at start-up and `weir check` builds to validate; it
//! hands each route a [`Chain`]. The order of phases within a request is
//! not decided here but in `proxy`.
//!
//! The registry is a value: a configuration reload or a plugin deploy
//! builds a new registry from the current one (off the request path),
//! reusing everything that did not change (the engine, compiled versions,
//! slots with their warm instances) and always keeping each plugin's
//! shared state (its metrics, `counter-add` counters included, are kept
//! by name in `crate::metrics::plugin`). The server then swaps in a route
//! table holding the new chains; a request keeps the chain it started
//! with, so it finishes on the version it started on, and an old version
//! is freed when its last request ends.

pub mod bindings;
pub mod breaker;
pub mod calls;
mod deadline;
mod engine;
pub mod fleet;
pub mod host;
mod hot;
mod load;
mod log_fields;
pub mod offload;
mod pool;
mod reserved;
pub mod share;
pub mod state;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use crate::config::{Config, PluginRef, PluginsConfig};
pub use bindings::CONTRACT;
pub use calls::{CallError, CallSpec, Finished, RequestCalls, Waited};
pub use deadline::EPOCH_TICK;
pub use engine::{CacheStats, Capacity, Runtime, Tier};
pub use host::Context;
pub use load::{
    Compiled, MAX_PLUGIN_FILE_BYTES, PluginError, PluginErrors, PluginFile, Step,
    read as read_plugin,
};
pub use log_fields::LogFields;
pub use pool::{
    Action, BodyAction, Capabilities, Failure, FailureKind, Flow, Instance, Io, Respond, Slot,
};
use state::Namespace;

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
    /// Whether a request may wait on a plugin's operations (outbound
    /// calls, `[plugin_limits.NAME] calls`, or `strict` fleet
    /// operations): only then does a request note its deadline for them.
    pub calls: bool,
}

impl Chain {
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// A plugin version in service, for the admin view and logs.
#[derive(Debug, Clone)]
pub struct Serving {
    pub name: String,
    pub path: PathBuf,
    pub sha256: String,
    pub deployed_at: SystemTime,
    /// Which compiler built the code serving.
    pub tier: Tier,
}

/// A registry built for a configuration, and what it changed.
#[derive(Debug)]
pub struct Reconfigured {
    pub plugins: Plugins,
    /// One chain per route of the configuration, in order.
    pub chains: Vec<Arc<Chain>>,
    /// Plugins whose file is gone but whose last good version keeps
    /// serving (with the reason, for a warning).
    pub kept: Vec<PluginError>,
    /// Plugins compiled from a new file by this reconfiguration.
    pub compiled: Vec<Serving>,
}

/// Every plugin the configuration names, compiled, and the chains built
/// from them. Cheap to clone: everything inside is shared.
#[derive(Clone, Default)]
pub struct Plugins {
    /// The optimizing engine: everything serves from it normally.
    runtime: Option<Arc<Runtime>>,
    /// The baseline engine, made at the first deploy that needs it.
    baseline: Option<Arc<Runtime>>,
    /// The version serving, per plugin name.
    versions: HashMap<String, Arc<Compiled>>,
    /// Shared state per plugin name; kept across deploys and reloads.
    namespaces: HashMap<String, Arc<Namespace>>,
    /// Fleet state per plugin name; kept like `namespaces`.
    fleets: HashMap<String, Arc<fleet::PluginFleet>>,
    /// One slot per (plugin, configuration), shared by every chain that
    /// names that pair: the global chain's slots serve every route.
    slots: HashMap<PluginRef, Arc<Slot>>,
    /// Each route's chain (global first), in route order.
    routes: Vec<Vec<PluginRef>>,
    config: Option<PluginsConfig>,
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugins")
            .field("plugins", &self.names())
            .finish_non_exhaustive()
    }
}

/// What the pooling allocator must hold for a configuration: every slot's
/// instances twice over, so a deploy can run an old and a new version side
/// by side.
fn capacity(config: &Config) -> Capacity {
    let pc = &config.plugins;
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
    let max_memory = pc
        .referenced(&config.routes)
        .iter()
        .map(|n| pc.settings(n).memory_bytes)
        .max()
        .unwrap_or(0);
    Capacity {
        instances: (instances * 2).min(u32::MAX as usize) as u32,
        max_memory_bytes: max_memory,
    }
}

impl Plugins {
    /// Compiles every plugin a chain names and builds every chain (which
    /// runs each configuration's `init` once). Returns one chain per route
    /// of `config.routes`, in order. Without plugins no engine is started.
    pub fn load(config: &Config) -> Result<(Plugins, Vec<Arc<Chain>>), PluginErrors> {
        let r = Plugins::default().reconfigure(config)?;
        r.plugins.publish();
        Ok((r.plugins, r.chains))
    }

    /// Builds the registry for `config` from this one. Blocking: it reads,
    /// compiles and initialises what changed. Reused as they are: the
    /// engine while it is large enough and its cache folder is the same,
    /// a compiled version whose file has the same hash (with new settings
    /// if `[plugin_limits.NAME]` changed), and a slot whose plugin version and
    /// configuration are the same. Shared state is always kept. A file that
    /// is gone while its plugin serves keeps the version serving (reported
    /// in `kept`).
    pub fn reconfigure(&self, config: &Config) -> Result<Reconfigured, PluginErrors> {
        let pc = &config.plugins;
        let names = pc.referenced(&config.routes);
        let mut next = Plugins {
            runtime: None,
            baseline: None,
            versions: HashMap::new(),
            namespaces: HashMap::new(),
            fleets: HashMap::new(),
            slots: HashMap::new(),
            routes: config
                .routes
                .iter()
                .map(|r| pc.global.iter().chain(r.plugins.iter()).cloned().collect())
                .collect(),
            config: Some(pc.clone()),
        };
        let mut out = Reconfigured {
            plugins: Plugins::default(),
            chains: Vec::new(),
            kept: Vec::new(),
            compiled: Vec::new(),
        };
        if names.is_empty() {
            out.chains = config.routes.iter().map(|_| Arc::default()).collect();
            out.plugins = next;
            return Ok(out);
        }

        let runtime = self.runtime_for(config, names[0])?;
        let same_engine = self
            .runtime
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, &runtime));
        next.runtime = Some(runtime.clone());
        if same_engine {
            next.baseline = self.baseline.clone();
        }

        let mut errors = Vec::new();
        for name in &names {
            match self.version_for(&runtime, same_engine, pc, name, &mut out) {
                Ok(version) => {
                    next.versions.insert((*name).to_owned(), version);
                    let ns = self.namespaces.get(*name).cloned().unwrap_or_default();
                    next.namespaces.insert((*name).to_owned(), ns);
                    let fleet = self.fleets.get(*name).cloned().unwrap_or_default();
                    next.fleets.insert((*name).to_owned(), fleet);
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(PluginErrors(errors));
        }
        self.reuse_slots(&mut next)?;
        out.chains = next.chains();
        out.plugins = next;
        Ok(out)
    }

    /// The engine for `config`: this registry's while it is large enough
    /// and its cache folder is the same, else a new one. `first` names the
    /// plugin an engine failure is reported against.
    fn runtime_for(&self, config: &Config, first: &str) -> Result<Arc<Runtime>, PluginErrors> {
        let pc = &config.plugins;
        let needed = capacity(config);
        match &self.runtime {
            Some(r)
                if r.capacity.instances >= needed.instances
                    && r.capacity.max_memory_bytes >= needed.max_memory_bytes
                    && r.cache_dir == pc.cache_dir =>
            {
                Ok(r.clone())
            }
            _ => {
                let runtime = Runtime::new(needed, pc.cache_dir.as_deref()).map_err(|e| {
                    PluginErrors(vec![PluginError {
                        name: first.to_owned(),
                        path: pc.dir.clone(),
                        step: Step::Compile,
                        sha256: None,
                        reason: format!("cannot start the Wasm engine: {e:#}"),
                    }])
                })?;
                Ok(Arc::new(runtime))
            }
        }
    }

    /// The version of plugin `name` to serve: the current one when its
    /// file has the same hash (with the new settings), or when its file
    /// is gone (reported in `out.kept`); otherwise the file compiled anew
    /// (reported in `out.compiled`).
    fn version_for(
        &self,
        runtime: &Arc<Runtime>,
        same_engine: bool,
        pc: &PluginsConfig,
        name: &str,
        out: &mut Reconfigured,
    ) -> Result<Arc<Compiled>, PluginError> {
        let settings = pc.settings(name);
        let path = pc.file(name);
        let current = self
            .versions
            .get(name)
            .filter(|c| same_engine && c.path == path);
        let with_settings = |c: &Arc<Compiled>, settings| {
            if c.settings == settings {
                c.clone()
            } else {
                Arc::new(c.with_settings(settings))
            }
        };
        match (load::read(name, &path), current) {
            (Ok(file), Some(c)) if c.sha256 == file.sha256 => Ok(with_settings(c, settings)),
            (Ok(file), _) => {
                let c = Arc::new(load::compile(runtime, name, &file, settings)?);
                out.compiled.push(serving(&c));
                Ok(c)
            }
            (Err(e), Some(c)) if !path.exists() => {
                out.kept.push(e);
                Ok(with_settings(c, settings))
            }
            (Err(e), _) => Err(e),
        }
    }

    /// Fills `next`'s slots, one per plugin reference of its routes,
    /// reusing this registry's where the version and configuration are the
    /// same (warm instances kept) and making the rest (`init` runs).
    fn reuse_slots(&self, next: &mut Plugins) -> Result<(), PluginErrors> {
        let mut errors: Vec<PluginError> = Vec::new();
        for refs in &next.routes {
            for r in refs {
                if next.slots.contains_key(r) {
                    continue;
                }
                let version = &next.versions[&r.name];
                let slot = match self.slots.get(r) {
                    Some(s) if Arc::ptr_eq(s.compiled(), version) => s.clone(),
                    old => match next.slot(r, version.clone(), old.map_or(1, |s| s.live())) {
                        Ok(s) => s,
                        Err(e) => {
                            if !errors.iter().any(|x| x.to_string() == e.to_string()) {
                                errors.push(e);
                            }
                            continue;
                        }
                    },
                };
                next.slots.insert(r.clone(), slot);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(PluginErrors(errors))
        }
    }

    /// Builds the registry with a new version of plugin `name` from `file`:
    /// compiled, pre-instantiated, and `init` run with every configuration
    /// the routes give it. Blocking. Nothing changes unless all of that
    /// succeeds; shared state is kept. With `tiered`, a file the cache does
    /// not hold is compiled by the baseline compiler (the caller then asks
    /// for [`Plugins::optimize`] in the background).
    pub fn deploy(
        &self,
        name: &str,
        file: &PluginFile,
        tiered: bool,
    ) -> Result<(Plugins, Vec<Arc<Chain>>), PluginError> {
        let (Some(runtime), Some(pc)) = (&self.runtime, &self.config) else {
            return Err(not_named(name, &file.path, Some(file.sha256.clone())));
        };
        let cached = runtime
            .cached_marker(&file.sha256)
            .is_some_and(|m| m.exists());
        let mut next = self.clone();
        let engine = if tiered && !cached {
            match next.baseline_runtime() {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "baseline compiler unavailable; deploying with the optimizing one");
                    runtime.clone()
                }
            }
        } else {
            runtime.clone()
        };
        let version = Arc::new(load::compile(&engine, name, file, pc.settings(name))?);
        next.install(name, version)
    }

    /// The optimized build of `file` for plugin `name`, to replace a
    /// baseline version: compiled only (blocking); [`Plugins::install`]
    /// puts it in service.
    pub fn optimize(&self, name: &str, file: &PluginFile) -> Result<Arc<Compiled>, PluginError> {
        let (Some(runtime), Some(pc)) = (&self.runtime, &self.config) else {
            return Err(not_named(name, &file.path, Some(file.sha256.clone())));
        };
        load::compile(runtime, name, file, pc.settings(name)).map(Arc::new)
    }

    /// Builds the registry with `version` serving for plugin `name`: new
    /// slots, as warm as the ones they replace, each running `init`.
    /// Blocking.
    pub fn install(
        &self,
        name: &str,
        version: Arc<Compiled>,
    ) -> Result<(Plugins, Vec<Arc<Chain>>), PluginError> {
        let mut next = self.clone();
        next.versions.insert(name.to_owned(), version.clone());
        for (r, old) in self.slots.iter().filter(|(r, _)| r.name == name) {
            let slot = next.slot(r, version.clone(), old.live())?;
            next.slots.insert(r.clone(), slot);
        }
        let chains = next.chains();
        Ok((next, chains))
    }

    /// Whether `version` can replace what serves plugin `name`: the same
    /// file, serving at the baseline tier, on this registry's engine.
    pub fn upgrades(&self, name: &str, version: &Compiled) -> bool {
        let engine = self.runtime.as_ref();
        self.versions.get(name).is_some_and(|c| {
            c.sha256 == version.sha256
                && c.tier() == Tier::Baseline
                && engine.is_some_and(|r| Arc::ptr_eq(r, &version.runtime))
        })
    }

    /// The baseline engine, made (with the optimizing engine's capacity)
    /// the first time it is needed.
    fn baseline_runtime(&mut self) -> wasmtime::Result<Arc<Runtime>> {
        if let Some(b) = &self.baseline {
            return Ok(b.clone());
        }
        let capacity = self
            .runtime
            .as_ref()
            .map(|r| r.capacity)
            .expect("a runtime exists when plugins do");
        let b = Arc::new(Runtime::baseline(capacity)?);
        self.baseline = Some(b.clone());
        Ok(b)
    }

    /// A new slot for one (plugin, configuration) with `warm` instances
    /// made (at least one), each of which runs `init`.
    fn slot(
        &self,
        r: &PluginRef,
        version: Arc<Compiled>,
        warm: usize,
    ) -> Result<Arc<Slot>, PluginError> {
        let (path, sha256) = (version.path.clone(), version.sha256.clone());
        let pc = self
            .config
            .as_ref()
            .expect("slots are made for a configuration");
        let slot = Slot::new(
            version,
            r.config.clone(),
            self.namespaces[&r.name].clone(),
            self.fleets[&r.name].clone(),
            pc.max_request_body_bytes.max(pc.max_response_body_bytes),
            warm,
        )
        .map_err(|f| PluginError {
            name: r.name.clone(),
            path,
            step: Step::Init,
            sha256: Some(sha256),
            reason: format!("with configuration {}: {}", r.config, f.kind),
        })?;
        Ok(Arc::new(slot))
    }

    fn chains(&self) -> Vec<Arc<Chain>> {
        self.routes
            .iter()
            .map(|refs| {
                let mut chain = Chain::default();
                for r in refs {
                    let slot = self.slots[r].clone();
                    chain.request_body |= slot.caps.request_body;
                    chain.response_body |= slot.caps.response_body;
                    chain.response |= slot.caps.response;
                    chain.log |= slot.caps.log;
                    chain.calls |= slot.may_wait();
                    chain.slots.push(slot);
                }
                Arc::new(chain)
            })
            .collect()
    }

    /// Called once `next` serves in this registry's place: slots that
    /// `next` does not reuse drop their idle instances now and the rest as
    /// their requests end.
    pub fn retire_replaced(&self, next: &Plugins) {
        for (r, slot) in &self.slots {
            if !next.slots.get(r).is_some_and(|s| Arc::ptr_eq(s, slot)) {
                slot.retire();
            }
        }
        next.publish();
    }

    /// Tells the metrics which versions serve, and forgets the plugins no
    /// chain names any more: called once this registry is in service.
    fn publish(&self) {
        let metrics = crate::metrics::global();
        for (name, version) in &self.versions {
            metrics.plugin(name).set_serving(&version.sha256);
        }
        metrics.keep_plugins(self.versions.keys().map(String::as_str));
    }

    /// Whether a chain names this plugin.
    pub fn uses(&self, name: &str) -> bool {
        self.versions.contains_key(name)
    }

    /// The plugin folder and the time bound on a deployment, when a
    /// configuration is loaded.
    pub fn config(&self) -> Option<&PluginsConfig> {
        self.config.as_ref()
    }

    /// The breaker counters of every slot serving plugin `name`.
    pub fn breaker_stats(&self, name: &str) -> Vec<Arc<breaker::BreakerStats>> {
        self.slots_of(name, |slot| slot.breaker_stats.clone())
    }

    /// The CPU share counters of every slot serving plugin `name`.
    pub fn share_stats(&self, name: &str) -> Vec<Arc<share::ShareStats>> {
        self.slots_of(name, |slot| slot.share_stats.clone())
    }

    /// `f` of every slot serving plugin `name` (one per configuration).
    fn slots_of<T>(&self, name: &str, f: impl Fn(&Slot) -> T) -> Vec<T> {
        self.slots
            .iter()
            .filter(|(r, _)| r.name == name)
            .map(|(_, slot)| f(slot))
            .collect()
    }

    /// The version serving for each plugin, sorted by name.
    pub fn serving(&self) -> Vec<Serving> {
        let mut v: Vec<Serving> = self.versions.values().map(|c| serving(c)).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The named plugins, sorted; for start-up logs and `weir check`.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.versions.keys().map(String::as_str).collect();
        v.sort();
        v
    }

    /// Where compiled plugins are cached, when caching is on and usable.
    pub fn cache_dir(&self) -> Option<&std::path::Path> {
        self.runtime.as_ref().and_then(|r| r.cache_dir.as_deref())
    }

    /// Cache hits and misses of the engine serving, when caching is on.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.runtime.as_ref().and_then(|r| r.cache_stats())
    }
}

fn serving(c: &Compiled) -> Serving {
    Serving {
        name: c.name.to_string(),
        path: c.path.clone(),
        sha256: c.sha256.clone(),
        deployed_at: c.deployed_at,
        tier: c.tier(),
    }
}

/// Why a file is not deployed when no chain names its plugin.
pub const NOT_NAMED: &str = "no route or global chain names this plugin";

/// The error for a plugin file that no chain names.
pub fn not_named(name: &str, path: &std::path::Path, sha256: Option<String>) -> PluginError {
    PluginError {
        name: name.to_owned(),
        path: path.to_owned(),
        step: Step::Validate,
        sha256,
        reason: NOT_NAMED.into(),
    }
}

#[cfg(test)]
mod measure;
