//! Putting a gateway together from a validated [`Config`]: resolve the
//! upstreams, build the route table, bind the listeners, start one worker
//! thread per core, and on SIGTERM or SIGINT drain and stop. This is the
//! only place that knows the order of start-up and shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{Semaphore, watch};

use crate::access_log::AccessLog;
use crate::config::{AdminConfig, Config};
use crate::listener::{self, Bound, Shared};
use crate::plugin::offload::{COMPILING, off_request_path};
use crate::plugin::{Chain, PluginError, PluginErrors, Plugins, Serving};
use crate::router::{PluginBodyCaps, Route, Router};
use crate::tls::{TlsErrors, TlsListener};
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
    #[error("listener `{listener}`: TLS: {errors}")]
    Tls { listener: String, errors: TlsErrors },
    #[error("upstream `{upstream}`: TLS: {errors}")]
    UpstreamTls { upstream: String, errors: TlsErrors },
    #[error("{0}")]
    Plugins(PluginErrors),
    #[error(
        "compiling and initialising the plugins took longer than plugins.compile_timeout ({0:?})"
    )]
    PluginTimeout(Duration),
    #[error(
        "admin.token_file: the admin listener stays on {address}, not a loopback address, until \
         a restart, so it cannot go without a token before then"
    )]
    AdminWithoutToken { address: SocketAddr },
    #[error("{0}")]
    AccessLog(String),
}

/// SIGUSR1 reopens the access log's file (logrotate's convention). The
/// handler is installed even with the log off, so a rotation script's
/// signal never ends the process (SIGUSR1's default action).
fn reopen_on_sigusr1(observe: Arc<crate::conn::Observe>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
        tracing::warn!("cannot handle SIGUSR1: the access log cannot be reopened by signal");
        return;
    };
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            match &observe.access_log {
                Some(log) => log.reopen(),
                None => tracing::debug!("SIGUSR1: no access log to reopen"),
            }
        }
    });
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
        // An upstream with TLS is made anew on every reload, so its CA
        // and client certificate files are read again.
        if let Some(old) = previous.and_then(|p| p.upstream(&u.name))
            && old.config == *u
            && u.tls.is_none()
        {
            upstreams.insert(u.name.clone(), old.clone());
            continue;
        }
        let tls = load_upstream_tls(u)?;
        let addrs = discovery::resolve(u)
            .await
            .map_err(|e| StartError::Resolve {
                upstream: u.name.clone(),
                endpoint: e.endpoint,
                reason: e.reason,
            })?;
        let upstream = Arc::new(Upstream::with_tls(
            u.clone(),
            &addrs,
            config.server.workers,
            tls,
        ));
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
    router.client_cert_headers = config
        .listeners
        .iter()
        .filter_map(|l| {
            l.tls
                .as_ref()?
                .client_auth
                .as_ref()?
                .forward_header
                .as_deref()
        })
        .filter_map(|h| http::HeaderName::from_bytes(h.as_bytes()).ok())
        .collect();
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
    /// Each TLS listener's state, by listener name.
    pub tls: Vec<(String, Arc<TlsListener>)>,
    shutdown: watch::Sender<bool>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Gateway {
    /// Binds and starts serving. Returns once every listener is accepting.
    pub async fn start(config: Config) -> Result<Gateway, StartError> {
        crate::metrics::process::mark_start();
        // The fleet's store comes before the plugins, whose fleet policies
        // use it. Redis being down does not stop start-up: each plugin's
        // fleet_fallback answers until it is back.
        let store = match &config.state.redis {
            Some(r) => {
                Some(crate::plugin::fleet::Store::start(r.clone()).map_err(StartError::Runtime)?)
            }
            None => None,
        };
        crate::plugin::fleet::install(store);
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
        // Certificates load before anything binds, like plugins: an
        // unusable file stops start-up with the file and the reason.
        let tls = load_tls(&config)?;
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
        let access_log = match &config.access_log {
            Some(cfg) => Some(AccessLog::start(cfg).map_err(StartError::AccessLog)?),
            None => None,
        };
        let observe = Arc::new(crate::conn::Observe {
            metrics: config.server.metrics,
            access_log,
            tracing: crate::trace::Tracing::start(&config.tracing).map_err(StartError::Runtime)?,
        });
        reopen_on_sigusr1(observe.clone());
        let shared: Vec<Arc<Shared>> = bound
            .iter()
            .map(|b| {
                Arc::new(Shared {
                    config: b.config.clone(),
                    router: router.clone(),
                    observe: observe.clone(),
                    connections: Arc::new(Semaphore::new(b.config.max_connections)),
                    open: open.clone(),
                    tls: tls
                        .iter()
                        .find(|(name, _)| *name == b.config.name)
                        .map(|(_, t)| t.clone()),
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
            tls,
            shutdown,
            workers: handles,
        })
    }

    /// Swaps in a new, already validated configuration: routes, upstreams
    /// and their settings change at once for new requests; requests in
    /// flight finish on the table they started with. Settings that need a
    /// restart (listeners, workers, the admin and metrics addresses) are
    /// kept as they are and named in the returned [`Reloaded`].
    pub async fn reload(&mut self, config: Config) -> Result<Reloaded, StartError> {
        let mut needs_restart = Vec::new();
        // A TLS listener's certificates and settings apply on reload
        // (checked before anything changes); the rest of a listener, and
        // turning TLS on or off, needs a restart.
        let mut tls_changes = Vec::new();
        let mut listeners_differ = self.config.listeners.len() != config.listeners.len();
        for (old, new) in self.config.listeners.iter().zip(&config.listeners) {
            let mut same = old.clone();
            same.tls = new.tls.clone();
            if same != *new || old.tls.is_some() != new.tls.is_some() {
                listeners_differ = true;
            } else if let (Some(t), Some(cfg)) = (self.tls_of(&old.name), &new.tls) {
                tls_changes.push((t, cfg.clone()));
            }
        }
        if listeners_differ {
            needs_restart.push("[[listener]]".to_owned());
        }
        // Every TLS listener's files load before anything changes, so a
        // bad file refuses the whole reload.
        let mut loaded = Vec::new();
        for (t, cfg) in &tls_changes {
            let fresh = crate::tls::ServerTls::load(
                cfg,
                t.resumption(),
                &crate::tls::provider(),
                std::time::SystemTime::now(),
            )
            .map_err(|errors| StartError::Tls {
                listener: t.name().to_owned(),
                errors,
            })?;
            loaded.push(fresh);
        }
        if self.config.server.workers != config.server.workers {
            needs_restart.push("server.workers".to_owned());
        }
        if self.config.server.metrics != config.server.metrics {
            needs_restart.push("server.metrics".to_owned());
        }
        if self.config.access_log != config.access_log {
            needs_restart.push("access_log".to_owned());
        }
        if self.config.tracing != config.tracing {
            needs_restart.push("tracing".to_owned());
        }
        if self.config.state != config.state {
            needs_restart.push("state".to_owned());
        }
        let admin = admin_on_reload(
            self.config.admin.as_ref(),
            config.admin.clone(),
            &mut needs_restart,
        )?;
        let mut config = config;
        // Tracing stays what the listeners started with (`conn::Observe`),
        // so a later reload still names a change it did not apply.
        config.tracing = self.config.tracing.clone();
        // So does the fleet's store (`plugin::fleet::install`).
        config.state = self.config.state.clone();
        config.admin = admin;
        // Listener limits and worker count stay those the sockets run with.
        config.listeners = self.config.listeners.clone();
        // A TLS listener's settings are the new ones, already loaded: the
        // route table built below strips the client-certificate headers
        // they name.
        for (t, cfg) in &tls_changes {
            if let Some(l) = config.listeners.iter_mut().find(|l| l.name == t.name()) {
                l.tls = Some(cfg.clone());
            }
        }
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
        let router = Arc::new(build_router(&config, Some(&current), &plugins.chains).await?);
        crate::metrics::global().keep_routes(router.route_names());
        self.router.store(router);
        self.replace_plugins(plugins.plugins);
        for ((t, cfg), fresh) in tls_changes.iter().zip(loaded) {
            t.swap(fresh, cfg);
        }
        self.config = config;
        Ok(Reloaded {
            needs_restart,
            compiled: plugins.compiled,
            kept: plugins.kept,
        })
    }

    /// The TLS state of the listener `name`, if it is a TLS listener.
    pub fn tls_of(&self, name: &str) -> Option<Arc<TlsListener>> {
        self.tls
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
    }

    /// Loads every TLS listener's files again (one of them changed on
    /// disk) and swaps in each listener's that are all usable; returns
    /// the listeners refused, with why. Those keep serving what they had.
    pub fn reload_certificates(&self) -> Vec<(String, TlsErrors)> {
        let mut refused = Vec::new();
        for (name, t) in &self.tls {
            if let Err(e) = t.reload(&t.settings()) {
                refused.push((name.clone(), e));
            }
        }
        refused
    }

    /// Swaps in a route table whose routes keep their upstreams and take
    /// the new `chains`, then the registry they came from. Requests in
    /// flight finish on the table and chains they started with.
    pub fn swap_chains(&mut self, plugins: Plugins, chains: &[Arc<Chain>]) {
        let router = self.router.load().with_chains(chains);
        self.router.store(Arc::new(router));
        self.replace_plugins(plugins);
    }

    /// The registry becomes `plugins`; slots it no longer uses drop their
    /// idle instances (see [`Plugins::retire_replaced`]).
    fn replace_plugins(&mut self, plugins: Plugins) {
        self.plugins.retire_replaced(&plugins);
        self.plugins = plugins;
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

/// The admin settings a reload leaves serving: the admin and metrics
/// listeners stay where they were bound until a restart (a change is named
/// in `needs_restart`), and the token is the new configuration's. A
/// listener that stays beyond loopback keeps asking for a token, whatever
/// address the new configuration names.
fn admin_on_reload(
    running: Option<&AdminConfig>,
    new: Option<AdminConfig>,
    needs_restart: &mut Vec<String>,
) -> Result<Option<AdminConfig>, StartError> {
    if running.map(|a| a.address) != new.as_ref().map(|a| a.address) {
        needs_restart.push("admin.address".to_owned());
    }
    if running.and_then(|a| a.metrics_address) != new.as_ref().and_then(|a| a.metrics_address) {
        needs_restart.push("admin.metrics_address".to_owned());
    }
    let (Some(running), Some(new)) = (running, new) else {
        // Adding or removing `[admin]` waits for the restart.
        return Ok(running.cloned());
    };
    if new.token.is_none() && !crate::config::is_loopback(running.address) {
        return Err(StartError::AdminWithoutToken {
            address: running.address,
        });
    }
    Ok(Some(AdminConfig {
        address: running.address,
        metrics_address: running.metrics_address,
        ..new
    }))
}

/// Loads an upstream's TLS files (none for a plain upstream), warning
/// when it does not verify its endpoints.
pub fn load_upstream_tls(
    u: &crate::config::UpstreamConfig,
) -> Result<Option<Arc<crate::tls::ClientTls>>, StartError> {
    let Some(cfg) = &u.tls else {
        return Ok(None);
    };
    if cfg.insecure_skip_verify {
        tracing::warn!(upstream = %u.name, "tls.insecure_skip_verify is set: this upstream's certificates are not verified, so anyone on the path can read and change its traffic");
    }
    crate::tls::ClientTls::load(cfg, &crate::tls::provider())
        .map(|t| Some(Arc::new(t)))
        .map_err(|errors| StartError::UpstreamTls {
            upstream: u.name.clone(),
            errors,
        })
}

/// Loads the files of every TLS listener, reporting every unusable one.
pub fn load_tls(config: &Config) -> Result<Vec<(String, Arc<TlsListener>)>, StartError> {
    let mut out = Vec::new();
    for l in &config.listeners {
        if let Some(cfg) = &l.tls {
            let t = TlsListener::load(&l.name, cfg).map_err(|errors| StartError::Tls {
                listener: l.name.clone(),
                errors,
            })?;
            out.push((l.name.clone(), Arc::new(t)));
        }
    }
    Ok(out)
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
