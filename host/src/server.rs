//! Putting a gateway together from a validated [`Config`]: resolve the
//! upstreams, build the route table, bind the listeners, start one worker
//! thread per core, and on SIGTERM or SIGINT drain and stop. This is the
//! only place that knows the order of start-up and shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::config::Config;
use crate::listener::{self, Bound, Shared};
use crate::plugin::{Chain, Compiled, PluginError, PluginErrors, Plugins, Serving, Step};
use crate::router::{PluginBodyCaps, Route, Router};
use crate::upstream::{Upstream, discovery};
use crate::worker;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("listener `{name}`: cannot listen on {address}: {source}")]
    Bind {
        name: String,
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("upstream `{upstream}`: cannot resolve `{endpoint}`: {reason}")]
    Resolve {
        upstream: String,
        endpoint: String,
        reason: String,
    },
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("{0}")]
    Plugins(PluginErrors),
    #[error(
        "compiling and initialising the plugins took longer than plugins.compile_timeout ({0:?})"
    )]
    PluginTimeout(Duration),
}

/// One blocking plugin compilation at a time. A deployment that timed out
/// keeps its permit until its thread finishes (wasmtime cannot stop a
/// compilation), so abandoned compilations never pile up.
static COMPILING: Semaphore = Semaphore::const_new(1);

/// Runs `f` on a blocking thread holding a permit of `slots`, within
/// `timeout` (waiting for the permit included). `None` when the time ran
/// out.
async fn off_request_path<T: Send + 'static>(
    slots: &'static Semaphore,
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let work = async {
        let permit = slots.acquire().await.ok()?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        })
        .await
        .ok()
    };
    tokio::time::timeout(timeout, work).await.ok().flatten()
}

/// Background optimizing builds, one at a time, apart from deployments so
/// a deploy never waits for one.
static OPTIMIZING: Semaphore = Semaphore::const_new(1);

/// The optimized build of a plugin serving from baseline code, ready to
/// be swapped in by [`Gateway::install_optimized`].
pub struct Optimized {
    pub name: String,
    /// `Ok(None)`: skipped, because the file changed since its baseline
    /// build (its new contents deploy on their own).
    pub result: Result<Option<Arc<Compiled>>, PluginError>,
    pub took: Duration,
}

/// A deployment step that ran out of `plugins.compile_timeout`.
fn timed_out(
    name: &str,
    path: &Path,
    sha256: Option<String>,
    what: &str,
    timeout: Duration,
) -> PluginError {
    PluginError {
        name: name.to_owned(),
        path: path.to_owned(),
        step: Step::Timeout,
        sha256,
        reason: format!("{what} took longer than plugins.compile_timeout ({timeout:?})"),
    }
}

/// What a configuration reload did besides swapping the configuration.
#[derive(Debug, Default)]
pub struct Reloaded {
    /// Changed settings that only a restart applies.
    pub needs_restart: Vec<String>,
    /// Plugins compiled from a changed file.
    pub compiled: Vec<Serving>,
    /// Plugins whose file is gone; the last good version keeps serving.
    pub kept: Vec<PluginError>,
}

/// What a plugin file change did.
#[derive(Debug)]
pub enum Deployed {
    /// The new version serves; `previous` is the hash it replaced.
    New { serving: Serving, previous: String },
    /// The file has the hash of the version already serving.
    Unchanged { sha256: String },
}

/// Builds the route table, with its upstreams, from a configuration. An
/// upstream whose configuration is unchanged from `previous` is reused as
/// is, keeping its connection pools, balancer and health state (and its
/// background health checks and DNS refresh, which end when the last
/// route table holding it is dropped). `chains` holds each route's plugin
/// chain, one per route of `config.routes` as [`Plugins::load`] returns
/// them; an empty slice means no plugins.
pub async fn build_router(
    config: &Config,
    previous: Option<&Router>,
    chains: &[Arc<Chain>],
) -> Result<Router, StartError> {
    let mut upstreams = HashMap::new();
    for u in &config.upstreams {
        if let Some(old) = previous.and_then(|p| p.upstream(&u.name))
            && old.config == *u
        {
            upstreams.insert(u.name.clone(), old.clone());
            continue;
        }
        let addrs = discovery::resolve(u)
            .await
            .map_err(|e| StartError::Resolve {
                upstream: u.name.clone(),
                endpoint: e.endpoint,
                reason: e.reason,
            })?;
        let upstream = Arc::new(Upstream::new(u.clone(), &addrs, config.server.workers));
        upstream.spawn_background();
        upstreams.insert(u.name.clone(), upstream);
    }
    // Routes apply on every listener; a route's body limit defaults to the
    // smallest listener limit so no listener's promise is broken.
    let default_body = config
        .listeners
        .iter()
        .map(|l| l.max_body_bytes)
        .min()
        .unwrap_or(u64::MAX);
    let routes = config
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let route = Route::new(r, upstreams[&r.upstream].clone(), default_body);
            match chains.get(i) {
                Some(c) => route.with_plugins(c.clone()),
                None => route,
            }
        })
        .collect();
    let mut router = Router::new(routes, upstreams);
    router.plugin_body_caps = PluginBodyCaps {
        request: config.plugins.max_request_body_bytes,
        response: config.plugins.max_response_body_bytes,
    };
    Ok(router)
}

/// A running gateway's handles.
pub struct Gateway {
    pub listeners: Vec<(String, SocketAddr)>,
    /// The route table every worker reads; swapped whole on reload.
    pub router: Arc<ArcSwap<Router>>,
    /// The configuration serving now.
    pub config: Config,
    /// The plugin registry (its engine, versions, state and counters).
    pub plugins: Plugins,
    shutdown: watch::Sender<bool>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Gateway {
    /// Binds and starts serving. Returns once every listener is accepting.
    pub async fn start(config: Config) -> Result<Gateway, StartError> {
        // Plugins compile before anything binds: a missing or invalid
        // plugin stops start-up with the file and the reason.
        let (plugins, chains) = Plugins::load(&config).map_err(StartError::Plugins)?;
        if !plugins.names().is_empty() {
            let cache = plugins.cache_stats();
            tracing::info!(
                plugins = ?plugins.names(),
                cache_dir = ?plugins.cache_dir(),
                cache_hits = cache.map(|c| c.hits),
                cache_misses = cache.map(|c| c.misses),
                "plugins loaded"
            );
        }
        let router = Arc::new(ArcSwap::from_pointee(
            build_router(&config, None, &chains).await?,
        ));
        let workers = config.server.workers;
        let mut bound: Vec<Bound> = Vec::new();
        for l in &config.listeners {
            let b = listener::bind(l, workers).map_err(|source| StartError::Bind {
                name: l.name.clone(),
                address: l.address,
                source,
            })?;
            tracing::info!(listener = %l.name, address = %b.local_addr, "listening");
            bound.push(b);
        }
        let listeners = bound
            .iter()
            .map(|b| (b.config.name.clone(), b.local_addr))
            .collect();

        let (shutdown, shutdown_rx) = watch::channel(false);
        let open = Arc::new(AtomicUsize::new(0));
        let shared: Vec<Arc<Shared>> = bound
            .iter()
            .map(|b| {
                Arc::new(Shared {
                    config: b.config.clone(),
                    router: router.clone(),
                    access_log: config.server.access_log,
                    connections: Arc::new(Semaphore::new(b.config.max_connections)),
                    open: open.clone(),
                })
            })
            .collect();

        // Hand worker i its socket of every listener.
        let mut per_worker: Vec<Vec<(std::net::TcpListener, Arc<Shared>)>> =
            (0..workers).map(|_| Vec::new()).collect();
        for (b, s) in bound.into_iter().zip(&shared) {
            for (i, sock) in b.sockets.into_iter().enumerate() {
                per_worker[i].push((sock, s.clone()));
            }
        }

        let drain = config.server.drain_timeout;
        let mut handles = Vec::with_capacity(workers);
        for (i, sockets) in per_worker.into_iter().enumerate() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(StartError::Runtime)?;
            let rx = shutdown_rx.clone();
            let open = open.clone();
            let h = std::thread::Builder::new()
                .name(format!("weir-worker-{i}"))
                .spawn(move || {
                    worker::set_id(i);
                    rt.block_on(run_worker(sockets, rx, open, drain));
                })
                .map_err(StartError::Runtime)?;
            handles.push(h);
        }
        Ok(Gateway {
            listeners,
            router,
            config,
            plugins,
            shutdown,
            workers: handles,
        })
    }

    /// Swaps in a new, already validated configuration: routes, upstreams
    /// and their settings change at once for new requests; requests in
    /// flight finish on the table they started with. Settings that need a
    /// restart (listeners, workers, admin address) are kept as they are and
    /// named in the returned [`Reloaded`].
    pub async fn reload(&mut self, config: Config) -> Result<Reloaded, StartError> {
        let mut needs_restart = Vec::new();
        if self.config.listeners != config.listeners {
            needs_restart.push("[[listener]]".to_owned());
        }
        if self.config.server.workers != config.server.workers {
            needs_restart.push("server.workers".to_owned());
        }
        if self.config.admin.as_ref().map(|a| a.address) != config.admin.as_ref().map(|a| a.address)
        {
            needs_restart.push("admin.address".to_owned());
        }
        let mut config = config;
        // Listener limits and worker count stay those the sockets run with.
        config.listeners = self.config.listeners.clone();
        config.server.workers = self.config.server.workers;
        let current = self.router.load_full();
        // Plugins whose file and settings did not change keep their
        // compiled version and warm instances; changed ones are compiled
        // and initialised off the request path. Shared state is kept.
        let timeout = config.plugins.compile_timeout;
        let (registry, wanted) = (self.plugins.clone(), config.clone());
        let plugins = off_request_path(&COMPILING, timeout, move || registry.reconfigure(&wanted))
            .await
            .ok_or(StartError::PluginTimeout(timeout))?
            .map_err(StartError::Plugins)?;
        let router = build_router(&config, Some(&current), &plugins.chains).await?;
        self.router.store(Arc::new(router));
        self.plugins.retire_replaced(&plugins.plugins);
        self.plugins = plugins.plugins;
        self.config = config;
        Ok(Reloaded {
            needs_restart,
            compiled: plugins.compiled,
            kept: plugins.kept,
        })
    }

    /// Deploys the plugin file at `path` (named `NAME.wasm`) while serving:
    /// reads it, and unless it is the version already serving, compiles it
    /// and runs `init` with every configuration the routes give it, off the
    /// request path and within `plugins.compile_timeout`; then swaps in a
    /// route table with the new chains. Requests in flight finish on the
    /// version they started with. On any error nothing changes.
    pub async fn deploy_plugin(
        &mut self,
        name: &str,
        path: &Path,
    ) -> Result<Deployed, PluginError> {
        let Some((timeout, tiered)) = self.plugins.config().map(|c| (c.compile_timeout, c.tiered))
        else {
            return Err(crate::plugin::not_named(name, path, None));
        };
        let previous = self
            .plugins
            .serving()
            .into_iter()
            .find(|s| s.name == name)
            .map(|s| s.sha256)
            .unwrap_or_default();
        let registry = self.plugins.clone();
        let (owned_name, owned_path, known) = (name.to_owned(), path.to_owned(), previous.clone());
        let work = move || {
            let file = crate::plugin::read_plugin(&owned_name, &owned_path)?;
            if file.sha256 == known {
                return Ok(None);
            }
            registry
                .deploy(&owned_name, &file, tiered)
                .map(|(plugins, chains)| Some((plugins, chains, file.sha256)))
        };
        let outcome = off_request_path(&COMPILING, timeout, work)
            .await
            .unwrap_or_else(|| {
                Err(timed_out(
                    name,
                    path,
                    None,
                    "compiling and initialising",
                    timeout,
                ))
            })?;
        let Some((plugins, chains, sha256)) = outcome else {
            return Ok(Deployed::Unchanged { sha256: previous });
        };
        let router = self.router.load().with_chains(&chains);
        self.router.store(Arc::new(router));
        self.plugins.retire_replaced(&plugins);
        self.plugins = plugins;
        let serving = self
            .plugins
            .serving()
            .into_iter()
            .find(|s| s.name == name && s.sha256 == sha256)
            .expect("the deployed version serves");
        Ok(Deployed::New { serving, previous })
    }

    /// Starts the optimizing build of plugin `name` (serving from baseline
    /// code) on a blocking thread; the result is sent to `done` for the
    /// control loop to install. Only one such build runs at a time.
    pub fn optimize_in_background(&self, name: &str, done: mpsc::UnboundedSender<Optimized>) {
        let Some(pc) = self.plugins.config() else {
            return;
        };
        let (registry, path, timeout) = (self.plugins.clone(), pc.file(name), pc.compile_timeout);
        let Some(serving) = self.plugins.serving().into_iter().find(|s| s.name == name) else {
            return;
        };
        let name = name.to_owned();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let work = {
                let (name, want) = (name.clone(), serving.sha256.clone());
                move || {
                    let file = crate::plugin::read_plugin(&name, &path)?;
                    if file.sha256 != want {
                        return Ok(None);
                    }
                    registry.optimize(&name, &file).map(Some)
                }
            };
            let result = off_request_path(&OPTIMIZING, timeout, work)
                .await
                .unwrap_or_else(|| {
                    Err(timed_out(
                        &name,
                        &serving.path,
                        Some(serving.sha256.clone()),
                        "the optimized build",
                        timeout,
                    ))
                });
            let _ = done.send(Optimized {
                name,
                result,
                took: started.elapsed(),
            });
        });
    }

    /// Swaps in an optimized build if the same file still serves from
    /// baseline code; `Ok(false)` when it no longer applies.
    pub async fn install_optimized(
        &mut self,
        name: &str,
        version: Arc<Compiled>,
    ) -> Result<bool, PluginError> {
        if !self.plugins.upgrades(name, &version) {
            return Ok(false);
        }
        let timeout = self
            .plugins
            .config()
            .map_or(Duration::from_secs(30), |c| c.compile_timeout);
        let registry = self.plugins.clone();
        let owned = name.to_owned();
        let (path, sha256) = (version.path.clone(), version.sha256.clone());
        let (plugins, chains) = off_request_path(&COMPILING, timeout, move || {
            registry.install(&owned, version)
        })
        .await
        .unwrap_or_else(|| {
            Err(timed_out(
                name,
                &path,
                Some(sha256),
                "initialising the optimized build",
                timeout,
            ))
        })?;
        let router = self.router.load().with_chains(&chains);
        self.router.store(Arc::new(router));
        self.plugins.retire_replaced(&plugins);
        self.plugins = plugins;
        Ok(true)
    }

    /// Stops accepting, lets in-flight requests finish within the drain
    /// timeout, and waits for the workers to stop.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let workers = self.workers;
        let _ = tokio::task::spawn_blocking(move || {
            for w in workers {
                let _ = w.join();
            }
        })
        .await;
    }
}

async fn run_worker(
    sockets: Vec<(std::net::TcpListener, Arc<Shared>)>,
    mut shutdown: watch::Receiver<bool>,
    open: Arc<AtomicUsize>,
    drain: Duration,
) {
    for (sock, shared) in sockets {
        tokio::spawn(listener::accept_loop(sock, shared, shutdown.clone()));
    }
    let _ = shutdown.wait_for(|stop| *stop).await;
    // Connections were told to finish their current request and close;
    // give them the drain timeout. `open` counts every worker's
    // connections, so each worker waits until all are done (or time is up)
    // and none stops early while its own tasks still run.
    let deadline = tokio::time::Instant::now() + drain;
    while open.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let left = open.load(Ordering::Relaxed);
    if left > 0 && worker::id() == 0 {
        tracing::warn!(
            connections = left,
            "drain timeout reached; closing remaining connections"
        );
    }
}
