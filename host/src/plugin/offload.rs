//! Plugin work that must stay off the request path: compiling a file and
//! running `init` happen on tokio's blocking threads, one at a time per
//! kind of work, within `plugins.compile_timeout`. Start-up, a reload and
//! a hot deploy all go through here, so no two compilations ever share the
//! two cores with the workers beyond one each.

use std::path::Path;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::{PluginError, Step};

/// One blocking plugin compilation at a time (start-up, reload, deploy,
/// and the swap-in of an optimized build). A deployment that timed out
/// keeps its permit until its thread finishes (wasmtime cannot stop a
/// compilation), so abandoned compilations never pile up.
pub static COMPILING: Semaphore = Semaphore::const_new(1);

/// Background optimizing builds, one at a time, apart from [`COMPILING`]
/// so a deploy never waits for one.
pub static OPTIMIZING: Semaphore = Semaphore::const_new(1);

/// Runs `f` on a blocking thread holding a permit of `slots`, within
/// `timeout` (waiting for the permit included). `None` when the time ran
/// out.
pub async fn off_request_path<T: Send + 'static>(
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

/// A deployment step that ran out of `plugins.compile_timeout`.
pub fn timed_out(
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
