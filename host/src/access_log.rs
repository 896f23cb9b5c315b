//! The access log: one line per request, made on the worker when the
//! response ends and written by a thread of its own.
//!
//! **The request never waits for the log.** A worker formats its line and
//! hands it over through a bounded queue (`queue_lines`); when the queue is
//! full (the disk or the terminal is slower than the traffic) the line is
//! dropped and counted (`weir_access_log_lines_dropped_total`), never
//! waited for. The writer thread drains the queue into a buffered writer
//! and flushes after each drain: a quiet gateway's line reaches the file
//! at once, a busy one's within 10 ms (the writer drains in batches then,
//! see [`write_lines`]).
//!
//! **Rotation** follows logrotate's convention: after the file is renamed,
//! `SIGUSR1` makes the writer flush what it holds into the old file and
//! open the path anew. Every line goes to exactly one of the two: none is
//! lost or written twice.
//!
//! **Formats**: JSON lines with the fields the configuration lists (in its
//! order), or the combined log format of Apache and nginx, whose fields
//! are fixed (`line.rs` writes them).

mod line;

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use crate::config::{AccessLogConfig, LogField, LogFormat, LogSink};
use crate::metrics;
pub use line::Line;
use line::{combined, json, keys};

/// The writer's buffer: lines are written in blocks of this size at most.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;
/// Longest string value a line carries (a path, a user agent, a plugin's
/// field is already bounded tighter); longer ones are cut, so a client
/// cannot make one line megabytes long. Heads are bounded by the listener
/// anyway; this bounds the queue's memory to `queue_lines` × a few KiB.
pub const MAX_VALUE_BYTES: usize = 4 * 1024;

/// How long the writer waits between two drains of a busy queue: a line
/// reaches the file at most this late, and the queue (`queue_lines`)
/// must hold what arrives meanwhile (the default holds 16384 lines: more
/// than a second of a busy worker's).
const BATCH_INTERVAL: Duration = Duration::from_millis(10);

/// What goes through the queue.
enum Msg {
    Line(Vec<u8>),
    Reopen,
}

/// The workers' end of the access log.
#[derive(Debug)]
pub struct AccessLog {
    tx: SyncSender<Msg>,
    format: LogFormat,
    /// The JSON fields with their keys as written.
    fields: Vec<(LogField, String)>,
    reopen: Arc<AtomicBool>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Line(l) => write!(f, "Line({} bytes)", l.len()),
            Msg::Reopen => f.write_str("Reopen"),
        }
    }
}

impl AccessLog {
    /// Opens the sink and starts the writer thread. A file that cannot be
    /// opened is an error here, at start-up, with the path and the reason.
    pub fn start(cfg: &AccessLogConfig) -> Result<AccessLog, String> {
        let sink = Sink::open(&cfg.sink)?;
        let (tx, rx) = mpsc::sync_channel(cfg.queue_lines);
        let reopen = Arc::new(AtomicBool::new(false));
        let flag = reopen.clone();
        std::thread::Builder::new()
            .name("weir-access-log".into())
            .spawn(move || write_lines(rx, sink, &flag))
            .map_err(|e| format!("cannot start the access log's writer thread: {e}"))?;
        Ok(AccessLog {
            tx,
            format: cfg.format,
            fields: keys(&cfg.fields),
            reopen,
        })
    }

    /// Whether a line shows request headers (`user_agent`, `referer`, or
    /// the combined format, which has both), so they are kept for it.
    pub fn shows_headers(&self) -> bool {
        self.format == LogFormat::Combined
            || self
                .fields
                .iter()
                .any(|(f, _)| matches!(f, LogField::UserAgent | LogField::Referer))
    }

    /// Asks the writer to reopen its file (SIGUSR1). Never blocks: when the
    /// queue is full the writer finds the flag after its next line.
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
        let _ = self.tx.try_send(Msg::Reopen);
    }

    /// Formats `line` and queues it; a full queue drops it (counted).
    pub fn write(&self, line: &Line<'_>) {
        let mut out = String::with_capacity(384);
        match self.format {
            LogFormat::Json => json(&mut out, line, &self.fields),
            LogFormat::Combined => combined(&mut out, line),
        }
        out.push('\n');
        let stats = metrics::global().access_log.local();
        match self.tx.try_send(Msg::Line(out.into_bytes())) {
            Ok(()) => stats.queued.inc(),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => stats.dropped.inc(),
        }
    }
}

/// Where the writer writes.
enum Sink {
    Stdout(io::Stdout),
    File { path: PathBuf, file: File },
}

impl Sink {
    fn open(sink: &LogSink) -> Result<Sink, String> {
        match sink {
            LogSink::Stdout => Ok(Sink::Stdout(io::stdout())),
            LogSink::File(path) => Ok(Sink::File {
                path: path.clone(),
                file: open_append(path)
                    .map_err(|e| format!("access log: cannot open `{}`: {e}", path.display()))?,
            }),
        }
    }
}

fn open_append(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Stdout(s) => s.write(buf),
            Sink::File { file, .. } => file.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout(s) => s.flush(),
            Sink::File { file, .. } => file.flush(),
        }
    }
}

/// The writer thread: lines in queue order, a flush after each drain of
/// the queue, a reopen when asked. Ends when every sender is gone (shutdown),
/// after writing what was queued.
///
/// While lines keep coming it works in batches: it drains the queue,
/// flushes, then sleeps [`BATCH_INTERVAL`] before the next drain, so a
/// worker that queues a line finds no writer to wake (waking one costs a
/// system call and a context switch per line). Only a queue found empty
/// sends the writer to wait for the next line, which then wakes it once.
fn write_lines(rx: Receiver<Msg>, sink: Sink, reopen: &AtomicBool) {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, sink);
    let mut failing = false;
    let write = |out: &mut BufWriter<Sink>, msg: Msg, failing: &mut bool| {
        if let Msg::Line(line) = msg {
            *failing = report(out.write_all(&line), *failing);
            metrics::global().access_log.local().written.inc();
        }
        if reopen.swap(false, Ordering::Acquire) {
            *failing = report(reopen_sink(out), *failing);
        }
    };
    loop {
        let mut drained = 0usize;
        while let Ok(msg) = rx.try_recv() {
            write(&mut out, msg, &mut failing);
            drained += 1;
        }
        // What came since the last flush goes out before any wait.
        failing = report(out.flush(), failing);
        if drained > 0 {
            std::thread::sleep(BATCH_INTERVAL);
            continue;
        }
        match rx.recv() {
            Ok(msg) => write(&mut out, msg, &mut failing),
            Err(_) => break,
        }
    }
    let _ = out.flush();
}

/// Flushes into the old file, then opens the path again (logrotate has
/// renamed the old one). If the path cannot be opened, lines keep going to
/// the old file rather than nowhere.
fn reopen_sink(out: &mut BufWriter<Sink>) -> io::Result<()> {
    out.flush()?;
    if let Sink::File { path, file } = out.get_mut() {
        *file = open_append(path)?;
        metrics::global().access_log.local().reopened.inc();
    }
    Ok(())
}

/// Counts a write error and logs the first of a run of them (a full disk
/// fails every write; one line says so, and one says when it recovered).
fn report(r: io::Result<()>, failing: bool) -> bool {
    match r {
        Ok(()) => {
            if failing {
                tracing::info!("access log: writing again");
            }
            false
        }
        Err(e) => {
            metrics::global().access_log.local().write_errors.inc();
            if !failing {
                tracing::warn!(error = %e, "access log: write failed; lines are lost until it works again");
            }
            true
        }
    }
}

#[cfg(test)]
mod tests;
