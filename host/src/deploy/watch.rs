//! Folder watching with notify. A folder is watched rather than single
//! files: deploy tools and editors replace a file by writing a new one and
//! renaming it over the old, which a watch on the file itself would lose.
//!
//! [`watch_ready`] (the configuration file and the plugin folder) reports
//! a path at once when the event itself says the file is complete (the
//! writer closed it, or it was renamed into place or removed), otherwise
//! once it has been quiet for [`SETTLE`], and never for a mere open or
//! read. notify's debouncers do not tell event kinds apart: with one, a
//! deploy waits out the settle time on every atomic `mv`, and reading the
//! configuration file after an event is itself an event, so the gateway
//! re-read its configuration every settle period forever. The small settle
//! loop is ours.
//!
//! A reported file may still be incomplete (a writer pausing
//! longer than [`SETTLE`], or closing between halves): readers validate
//! what they read and a later event reports the finished file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

/// How long a file must be quiet before it is read, when no event says it
/// is complete.
pub const SETTLE: Duration = Duration::from_millis(150);

/// A running watch; dropping it stops watching.
pub struct FileWatch {
    _watch: Box<dyn Send>,
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

impl WatchError {
    /// Makes the errors of watching `dir`.
    fn at(dir: &Path) -> impl Fn(String) -> WatchError + '_ {
        move |reason| WatchError {
            path: dir.to_owned(),
            reason,
        }
    }
}

/// When a path should be reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Readiness {
    /// The event says the file is complete (closed after writing, renamed
    /// into place) or gone.
    Now,
    /// Something changed; report once quiet for [`SETTLE`].
    Settle,
    /// Nothing changed (opened, read).
    Ignore,
}

fn readiness(kind: &EventKind) -> Readiness {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Readiness::Now,
        EventKind::Access(_) => Readiness::Ignore,
        // Every backend that pairs a rename into `Both` has already sent
        // its `From` and `To` halves: reporting it would read the file
        // twice.
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => Readiness::Ignore,
        EventKind::Modify(ModifyKind::Name(_)) | EventKind::Remove(_) => Readiness::Now,
        _ => Readiness::Settle,
    }
}

/// Watches `dir` (not recursively) and sends the path of every file whose
/// name passes `wanted` once it is ready to read (see the module docs).
/// Removed files are sent too; the receiver checks whether they exist.
pub fn watch_ready(
    dir: &Path,
    wanted: impl Fn(&Path) -> bool + Send + 'static,
    tx: mpsc::UnboundedSender<PathBuf>,
) -> Result<FileWatch, WatchError> {
    let err = WatchError::at(dir);
    let (raw_tx, raw_rx) = std_mpsc::channel::<(PathBuf, Readiness)>();
    let mut watcher: RecommendedWatcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) => {
                let r = readiness(&event.kind);
                if r == Readiness::Ignore {
                    return;
                }
                for p in event.paths {
                    if wanted(&p) {
                        let _ = raw_tx.send((p, r));
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "file watch error"),
        })
        .map_err(|e| err(e.to_string()))?;
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|e| err(e.to_string()))?;
    // The settle loop ends when the watcher (and with it `raw_tx`) drops.
    std::thread::Builder::new()
        .name("weir-file-watch".into())
        .spawn(move || settle_loop(raw_rx, tx))
        .map_err(|e| err(e.to_string()))?;
    Ok(FileWatch {
        _watch: Box::new(watcher),
    })
}

/// Holds back paths that changed until they are quiet for [`SETTLE`];
/// passes on at once those whose event says they are ready, dropping any
/// pending settle for them.
fn settle_loop(rx: std_mpsc::Receiver<(PathBuf, Readiness)>, tx: mpsc::UnboundedSender<PathBuf>) {
    let mut pending: HashMap<PathBuf, Instant> = HashMap::new();
    loop {
        let now = Instant::now();
        let wait = pending
            .values()
            .min()
            .map_or(Duration::from_secs(3600), |due| {
                due.saturating_duration_since(now)
            });
        match rx.recv_timeout(wait) {
            Ok((path, Readiness::Now)) => {
                pending.remove(&path);
                if tx.send(path).is_err() {
                    return;
                }
            }
            Ok((path, _)) => {
                pending.insert(path, Instant::now() + SETTLE);
            }
            Err(std_mpsc::RecvTimeoutError::Timeout) => {
                let now = Instant::now();
                let due: Vec<PathBuf> = pending
                    .iter()
                    .filter(|(_, at)| **at <= now)
                    .map(|(p, _)| p.clone())
                    .collect();
                for p in due {
                    pending.remove(&p);
                    if tx.send(p).is_err() {
                        return;
                    }
                }
            }
            Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn next(rx: &mut mpsc::UnboundedReceiver<PathBuf>, within: Duration) -> Option<PathBuf> {
        tokio::time::timeout(within, rx.recv()).await.ok().flatten()
    }

    #[tokio::test]
    async fn rename_is_reported_without_waiting_to_settle() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _w = watch_ready(
            dir.path(),
            |p| p.extension().is_some_and(|e| e == "wasm"),
            tx,
        )
        .unwrap();
        std::fs::write(dir.path().join("a.wasm.tmp"), b"x").unwrap();
        std::fs::rename(dir.path().join("a.wasm.tmp"), dir.path().join("a.wasm")).unwrap();
        let got = next(&mut rx, Duration::from_secs(5)).await;
        assert_eq!(got.as_deref(), Some(dir.path().join("a.wasm").as_path()));
        // Reported once, and the temporary name never passes the filter.
        assert!(next(&mut rx, SETTLE * 3).await.is_none());
    }

    #[tokio::test]
    async fn an_open_file_is_reported_once_quiet_and_again_when_closed() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _w = watch_ready(dir.path(), |_| true, tx).unwrap();
        let path = dir.path().join("b.wasm");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(b"first half").unwrap();
        // Still open: reported only after it has been quiet.
        let got = next(&mut rx, Duration::from_secs(5)).await;
        assert_eq!(got.as_deref(), Some(path.as_path()));
        f.write_all(b" second half").unwrap();
        drop(f);
        let got = next(&mut rx, Duration::from_secs(5)).await;
        assert_eq!(got.as_deref(), Some(path.as_path()));
    }
}
