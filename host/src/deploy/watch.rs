//! Folder watching with notify and a debouncer. A folder is watched rather
//! than single files: deploy tools and editors replace a file by writing a
//! new one and renaming it over the old, which a watch on the file itself
//! would lose. Events are debounced per path, so the many writes of one
//! `cp` become one event once the file has been quiet for [`SETTLE`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify_debouncer_mini::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};
use tokio::sync::mpsc;

/// How long a file must be quiet before it is read.
pub const SETTLE: Duration = Duration::from_millis(150);

/// A running watch; dropping it stops watching.
pub struct FileWatch {
    _debouncer: Debouncer<RecommendedWatcher>,
}

impl std::fmt::Debug for FileWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWatch").finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot watch {path}: {reason}")]
pub struct WatchError {
    pub path: PathBuf,
    pub reason: String,
}

/// Watches `dir` (not recursively) and sends the path of every settled
/// change whose file name passes `wanted`. A file that was removed is sent
/// too; the receiver checks whether it still exists.
pub fn watch_folder(
    dir: &Path,
    wanted: impl Fn(&Path) -> bool + Send + 'static,
    tx: mpsc::UnboundedSender<PathBuf>,
) -> Result<FileWatch, WatchError> {
    let err = |reason: String| WatchError {
        path: dir.to_owned(),
        reason,
    };
    let mut debouncer = new_debouncer(SETTLE, move |events: DebounceEventResult| match events {
        Ok(events) => {
            for e in events {
                if wanted(&e.path) {
                    let _ = tx.send(e.path);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "file watch error"),
    })
    .map_err(|e| err(e.to_string()))?;
    debouncer
        .watcher()
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|e| err(e.to_string()))?;
    Ok(FileWatch {
        _debouncer: debouncer,
    })
}
