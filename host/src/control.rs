//! The control thread of `weir run`: starts the gateway and the admin
//! listeners (the admin API and, when configured, the metrics listener),
//! then waits for what changes its life: SIGTERM or SIGINT
//! (drain and stop), SIGHUP or an edit of the configuration file (reload),
//! a `NAME.wasm` added, replaced or removed in the plugin folder (hot
//! deploy of that plugin), and a TLS listener's certificate file changed
//! (its certificates reload). Changes are applied one at a time, in order.
//! A reload is validated exactly as `weir check` would, a plugin file as
//! start-up would; what is refused is reported (log and admin views) and
//! what serves keeps serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::admin::{self, AdminState, Attempt, ConfigStatus, PluginAttempt, Surface};
use crate::config::Config;
use crate::deploy::certs::{self, CertWatch};
use crate::deploy::plugin::{self, PluginWatch};
use crate::deploy::{FileWatch, WatchError, watch_ready};
use crate::digest::sha256_hex;
use crate::server::{Gateway, StartError};

/// Why `weir run` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
    #[error("{field}: cannot listen on {address}: {source}")]
    Admin {
        /// `admin.address` or `admin.metrics_address`.
        field: &'static str,
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Watch(#[from] WatchError),
}

/// Runs the gateway until SIGTERM or SIGINT.
pub async fn run(config: Config, path: PathBuf) -> Result<(), RunError> {
    // Handlers first: a signal that arrives during start-up must not hit
    // the default action (SIGHUP would kill the process).
    let mut term = signal(SignalKind::terminate()).map_err(RunError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(RunError::Signal)?;
    let mut hup = signal(SignalKind::hangup()).map_err(RunError::Signal)?;
    // Watch before serving, so no edit made once the gateway is up is lost.
    let (changes, mut changed) = mpsc::unbounded_channel();
    let _watcher = watch_file(&path, changes)?;
    let (plugin_tx, mut plugin_changed) = mpsc::unbounded_channel();
    let (optimized_tx, mut optimized) = mpsc::unbounded_channel();
    let mut plugin_watch = PluginWatch::start(&config.plugins.dir, plugin_tx.clone());
    let (cert_tx, mut cert_changed) = mpsc::unbounded_channel();
    let mut cert_watch = CertWatch::start(&config, &cert_tx);
    let sha = std::fs::read(&path)
        .map(|b| sha256_hex(&b))
        .unwrap_or_default();
    let admin_config = config.admin.clone();
    let mut gateway = Gateway::start(config).await?;

    let state = Arc::new(AdminState::new(
        ConfigStatus {
            path: path.display().to_string(),
            sha256: sha.clone(),
            applied_at: admin::now_rfc3339(),
            last_attempt: Some(Attempt {
                at: admin::now_rfc3339(),
                trigger: "startup".into(),
                outcome: "applied",
                errors: Vec::new(),
                needs_restart: Vec::new(),
                sha256: Some(sha),
            }),
        },
        gateway.tls.clone(),
        gateway.router.clone(),
    ));
    state.apply(&gateway.config);
    {
        let mut status = state.plugins.lock().unwrap_or_else(|e| e.into_inner());
        status.set_serving(&gateway.plugins);
        for s in gateway.plugins.serving() {
            status.record(
                &s.name,
                &s.path,
                PluginAttempt::deployed("startup", &s.sha256),
            );
        }
    }
    let mut admin_tasks = Vec::new();
    if let Some(a) = &admin_config {
        // The admin listener first: its `listening` line comes before the
        // metrics listener's.
        let listeners = [
            (Surface::Admin, "admin", "admin.address", Some(a.address)),
            (
                Surface::Metrics,
                "metrics",
                "admin.metrics_address",
                a.metrics_address,
            ),
        ];
        for (surface, name, field, address) in listeners {
            let Some(address) = address else { continue };
            let l = tokio::net::TcpListener::bind(address)
                .await
                .map_err(|source| RunError::Admin {
                    field,
                    address,
                    source,
                })?;
            let bound = l.local_addr().unwrap_or(address);
            let auth = match surface {
                Surface::Admin if a.token.is_some() => "bearer",
                _ => "none",
            };
            tracing::info!(listener = name, address = %bound, auth, "listening");
            admin_tasks.push(tokio::spawn(admin::serve(l, state.clone(), surface)));
        }
    }

    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => reload(&mut gateway, &path, &state, "sighup").await,
            Some(_) = changed.recv() => reload(&mut gateway, &path, &state, "file-change").await,
            Some(first) = plugin_changed.recv() => {
                // One deploy per file, however many events queued for it.
                let mut files = vec![first];
                while let Ok(p) = plugin_changed.try_recv() {
                    if !files.contains(&p) {
                        files.push(p);
                    }
                }
                for file in files {
                    plugin::file_changed(&mut gateway, &file, &state, &optimized_tx).await;
                }
            }
            Some(built) = optimized.recv() => plugin::optimized_ready(&mut gateway, built, &state).await,
            Some(first) = cert_changed.recv() => {
                // One reload for every file a renewal wrote at once.
                tokio::time::sleep(crate::deploy::SETTLE).await;
                let mut files = vec![first];
                while let Ok(p) = cert_changed.try_recv() {
                    files.push(p);
                }
                certs::changed(&gateway, &files);
            }
        }
        // A reload may have named other certificate files.
        if !cert_watch.covers(&gateway.config) {
            cert_watch = CertWatch::start(&gateway.config, &cert_tx);
        }
        // A reload may have moved the plugin folder.
        let dir = &gateway.config.plugins.dir;
        if plugin_watch.dir() != Some(dir.as_path()) {
            plugin_watch = PluginWatch::start(dir, plugin_tx.clone());
        }
    }

    tracing::info!("shutting down: draining in-flight requests");
    for t in admin_tasks {
        t.abort();
    }
    gateway.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Validates the file and swaps it in, or reports why not.
async fn reload(gateway: &mut Gateway, path: &Path, state: &AdminState, trigger: &str) {
    let bytes = std::fs::read(path);
    let sha = bytes.as_ref().ok().map(|b| sha256_hex(b));
    let current_sha = state
        .config
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .sha256
        .clone();
    if trigger == "file-change" && sha.as_deref() == Some(current_sha.as_str()) {
        // Touched but not changed (or a second event for one edit).
        return;
    }
    let mut attempt = Attempt {
        at: admin::now_rfc3339(),
        trigger: trigger.to_owned(),
        outcome: "rejected",
        errors: Vec::new(),
        needs_restart: Vec::new(),
        sha256: sha.clone(),
    };
    let result = match Config::load(path) {
        Err(errors) => Err(errors.0.iter().map(|e| e.to_string()).collect::<Vec<_>>()),
        Ok(config) => match gateway.reload(config).await {
            Ok(r) => Ok(r),
            Err(StartError::Plugins(errors)) => {
                let mut status = state.plugins.lock().unwrap_or_else(|e| e.into_inner());
                for e in &errors.0 {
                    status.record(
                        &e.name,
                        &e.path,
                        PluginAttempt::rejected("config-reload", e),
                    );
                }
                Err(errors.0.iter().map(|e| e.to_string()).collect())
            }
            Err(e) => Err(vec![e.to_string()]),
        },
    };
    match result {
        Ok(reloaded) => {
            {
                let mut status = state.plugins.lock().unwrap_or_else(|e| e.into_inner());
                status.set_serving(&gateway.plugins);
                for s in &reloaded.compiled {
                    tracing::info!(plugin = %s.name, sha256 = %s.sha256, "plugin deployed with the new configuration");
                    status.record(
                        &s.name,
                        &s.path,
                        PluginAttempt::deployed("config-reload", &s.sha256),
                    );
                }
                for e in &reloaded.kept {
                    tracing::warn!(plugin = %e.name, file = %e.path.display(), "plugin file is gone; its last good version keeps serving");
                    status.record(&e.name, &e.path, PluginAttempt::removed("config-reload"));
                }
            }
            state.apply(&gateway.config);
            let needs_restart = reloaded.needs_restart;
            attempt.outcome = "applied";
            attempt.needs_restart = needs_restart.clone();
            tracing::info!(trigger, sha256 = ?sha, "configuration reloaded");
            if !needs_restart.is_empty() {
                tracing::warn!(settings = ?needs_restart, "changed settings take effect only after a restart");
            }
            let mut status = state.config.lock().unwrap_or_else(|e| e.into_inner());
            status.sha256 = sha.unwrap_or_default();
            status.applied_at = attempt.at.clone();
            status.last_attempt = Some(attempt);
        }
        Err(errors) => {
            for e in &errors {
                tracing::error!(trigger, error = %e, "configuration reload refused; the running configuration stays");
            }
            attempt.errors = errors;
            state
                .config
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .last_attempt = Some(attempt);
        }
    }
}

/// Sends the path once per change of the configuration file (see
/// [`watch_ready`]; opening and reading it are not changes).
fn watch_file(path: &Path, tx: mpsc::UnboundedSender<PathBuf>) -> Result<FileWatch, RunError> {
    let abs = std::path::absolute(path).map_err(|e| {
        RunError::Watch(WatchError {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    })?;
    let dir = abs
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("."));
    let name = abs.file_name().map(|n| n.to_owned());
    Ok(watch_ready(
        &dir,
        move |p| p.file_name() == name.as_deref(),
        tx,
    )?)
}
