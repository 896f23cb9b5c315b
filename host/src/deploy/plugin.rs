//! Hot deploy of one plugin file, from the watcher's event to the new
//! version serving, and its report. The steps, in order:
//!
//! 1. [`file_changed`]: a `NAME.wasm` in the plugin folder was added,
//!    replaced or removed. A file no chain names is reported `ignored`; a
//!    removed one keeps its last good version serving.
//! 2. [`deploy`]: read the file within its size cap; unless it is the
//!    version serving, compile it (baseline code when the compiled-module
//!    cache lacks it) and run `init` with every configuration the routes
//!    give it, off the request path, within `plugins.compile_timeout`.
//! 3. Swap in a route table with the new chains ([`Gateway::swap_chains`]):
//!    new requests use the new version, requests in flight finish on the
//!    one they started with. On any error nothing changes.
//! 4. A version serving baseline code gets its optimized build in the
//!    background ([`optimize_in_background`]); [`optimized_ready`] swaps
//!    it in if the same file still serves.
//!
//! Every outcome is logged and recorded for `/admin/plugins` (which counts
//! it in the plugin's metrics, `weir_plugin_deploys_total`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{FileWatch, watch_ready};
use crate::admin::{AdminState, PluginAttempt};
use crate::plugin::offload::{COMPILING, OPTIMIZING, off_request_path, timed_out};
use crate::plugin::{Compiled, PluginError, Serving, Tier};
use crate::server::Gateway;

/// What a plugin file change did.
#[derive(Debug)]
pub enum Deployed {
    /// The new version serves; `previous` is the hash it replaced.
    New { serving: Serving, previous: String },
    /// The file has the hash of the version already serving.
    Unchanged { sha256: String },
}

/// The optimized build of a plugin serving from baseline code, ready to
/// be swapped in by [`optimized_ready`].
pub struct Optimized {
    pub name: String,
    /// `Ok(None)`: skipped, because the file changed since its baseline
    /// build (its new contents deploy on their own).
    pub result: Result<Option<Arc<Compiled>>, PluginError>,
    pub took: Duration,
}

/// A plugin file was added, replaced or removed: deploy it, or report why
/// not. The serving version changes only when the new one is ready.
pub async fn file_changed(
    gateway: &mut Gateway,
    file: &Path,
    state: &AdminState,
    optimized: &mpsc::UnboundedSender<Optimized>,
) {
    let Some(name) = file
        .file_stem()
        .and_then(|n| n.to_str())
        .filter(|_| file.extension().is_some_and(|e| e == "wasm"))
    else {
        return;
    };
    let record = |attempt: PluginAttempt| {
        state
            .plugins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(name, file, attempt);
    };
    let exists = file.exists();
    if !gateway.plugins.uses(name) {
        if exists {
            tracing::info!(plugin = name, file = %file.display(), "plugin file is not named by any chain; it is loaded once the configuration names it");
            record(PluginAttempt::ignored("file-change"));
        }
        return;
    }
    // The configured path, so the registry sees one name for one file.
    let path = gateway
        .plugins
        .config()
        .map(|c| c.file(name))
        .unwrap_or_else(|| file.to_owned());
    if !exists {
        tracing::warn!(plugin = name, file = %path.display(), "plugin file removed; the last good version keeps serving");
        record(PluginAttempt::removed("file-change"));
        return;
    }
    let started = Instant::now();
    match deploy(gateway, name, &path).await {
        Ok(Deployed::New { serving, previous }) => {
            tracing::info!(
                plugin = name,
                sha256 = %serving.sha256,
                previous_sha256 = %previous,
                tier = serving.tier.as_str(),
                took_ms = started.elapsed().as_millis() as u64,
                "plugin deployed"
            );
            {
                let attempt = PluginAttempt::deployed("file-change", &serving.sha256);
                let mut status = state.plugins.lock().unwrap_or_else(|e| e.into_inner());
                status.set_serving(&gateway.plugins);
                status.record(name, &path, attempt);
            }
            if serving.tier == Tier::Baseline {
                optimize_in_background(gateway, name, optimized.clone());
            }
        }
        Ok(Deployed::Unchanged { sha256 }) => {
            tracing::debug!(plugin = name, %sha256, "plugin file unchanged");
        }
        Err(e) => {
            tracing::error!(
                plugin = name,
                sha256 = e.sha256.as_deref().unwrap_or("-"),
                step = e.step.as_str(),
                file = %e.path.display(),
                error = %e.reason,
                "plugin deployment refused; the serving version stays"
            );
            record(PluginAttempt::rejected("file-change", &e));
        }
    }
}

/// Counts an attempt in the metrics of plugin `name` (one a chain names).
/// Deploys the plugin file at `path` (named `NAME.wasm`) while serving:
/// reads it, and unless it is the version already serving, compiles it
/// and runs `init` with every configuration the routes give it, off the
/// request path and within `plugins.compile_timeout`; then swaps in a
/// route table with the new chains. Requests in flight finish on the
/// version they started with. On any error nothing changes.
pub async fn deploy(
    gateway: &mut Gateway,
    name: &str,
    path: &Path,
) -> Result<Deployed, PluginError> {
    let Some((timeout, tiered)) = gateway
        .plugins
        .config()
        .map(|c| (c.compile_timeout, c.tiered))
    else {
        return Err(crate::plugin::not_named(name, path, None));
    };
    let previous = gateway
        .plugins
        .serving()
        .into_iter()
        .find(|s| s.name == name)
        .map(|s| s.sha256)
        .unwrap_or_default();
    let registry = gateway.plugins.clone();
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
    gateway.swap_chains(plugins, &chains);
    let serving = gateway
        .plugins
        .serving()
        .into_iter()
        .find(|s| s.name == name && s.sha256 == sha256)
        .expect("the deployed version serves");
    Ok(Deployed::New { serving, previous })
}

/// Starts the optimizing build of plugin `name` (serving from baseline
/// code) on a blocking thread; the result is sent to `done` for the
/// control loop to hand to [`optimized_ready`]. Only one such build runs
/// at a time.
pub fn optimize_in_background(
    gateway: &Gateway,
    name: &str,
    done: mpsc::UnboundedSender<Optimized>,
) {
    let Some(pc) = gateway.plugins.config() else {
        return;
    };
    let (registry, path, timeout) = (gateway.plugins.clone(), pc.file(name), pc.compile_timeout);
    let Some(serving) = gateway
        .plugins
        .serving()
        .into_iter()
        .find(|s| s.name == name)
    else {
        return;
    };
    let name = name.to_owned();
    tokio::spawn(async move {
        let started = Instant::now();
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

/// An optimized build finished: swap it in if its file still serves from
/// baseline code, and report the outcome.
pub async fn optimized_ready(gateway: &mut Gateway, built: Optimized, state: &AdminState) {
    let name = built.name.as_str();
    let version = match built.result {
        Ok(Some(v)) => v,
        Ok(None) => {
            tracing::debug!(
                plugin = name,
                "optimized build skipped: the file changed since its baseline build"
            );
            return;
        }
        Err(e) => {
            tracing::error!(plugin = name, sha256 = e.sha256.as_deref().unwrap_or("-"), step = e.step.as_str(), error = %e.reason, "optimized build failed; the baseline build keeps serving");
            return;
        }
    };
    let sha256 = version.sha256.clone();
    match install_optimized(gateway, name, version).await {
        Ok(true) => {
            tracing::info!(
                plugin = name,
                %sha256,
                compile_ms = built.took.as_millis() as u64,
                "plugin now serves its optimized build"
            );
            state
                .plugins
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .set_serving(&gateway.plugins);
        }
        Ok(false) => {
            tracing::debug!(plugin = name, %sha256, "optimized build no longer needed");
        }
        Err(e) => {
            tracing::error!(plugin = name, %sha256, step = e.step.as_str(), error = %e.reason, "optimized build refused; the baseline build keeps serving");
        }
    }
}

/// Swaps in an optimized build if the same file still serves from
/// baseline code; `Ok(false)` when it no longer applies.
async fn install_optimized(
    gateway: &mut Gateway,
    name: &str,
    version: Arc<Compiled>,
) -> Result<bool, PluginError> {
    if !gateway.plugins.upgrades(name, &version) {
        return Ok(false);
    }
    let timeout = gateway
        .plugins
        .config()
        .map_or(Duration::from_secs(30), |c| c.compile_timeout);
    let registry = gateway.plugins.clone();
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
    gateway.swap_chains(plugins, &chains);
    Ok(true)
}

/// The watch on the plugin folder, if it exists.
pub struct PluginWatch(Option<(PathBuf, FileWatch)>);

impl PluginWatch {
    /// Watches `dir` for `*.wasm` files ready to read; without the folder
    /// (or when it cannot be watched) nothing is watched and SIGHUP is the
    /// way to deploy.
    pub fn start(dir: &Path, tx: mpsc::UnboundedSender<PathBuf>) -> PluginWatch {
        if !dir.is_dir() {
            tracing::debug!(dir = %dir.display(), "no plugin folder to watch");
            return PluginWatch(None);
        }
        let wanted = |p: &Path| p.extension().is_some_and(|e| e == "wasm");
        match watch_ready(dir, wanted, tx) {
            Ok(w) => PluginWatch(Some((dir.to_owned(), w))),
            Err(e) => {
                tracing::warn!(error = %e, "plugin folder not watched: copy plugins in and send SIGHUP to deploy them");
                PluginWatch(None)
            }
        }
    }

    /// The folder watched.
    pub fn dir(&self) -> Option<&Path> {
        self.0.as_ref().map(|(d, _)| d.as_path())
    }
}
