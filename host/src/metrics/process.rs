//! The process's own metrics, read at scrape time under the conventional
//! `process_` names Prometheus's client libraries use: resident memory,
//! CPU seconds, open and allowed file descriptors, start time; and
//! `weir_build_info` with the version.
//!
//! Memory and descriptors come from `/proc/self` (Linux, the only system
//! Weir runs on); a figure that cannot be read is left out rather than
//! shown as zero.

use std::fmt;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use super::Out;

/// When the process started, as the metrics say: the first call (made at
/// start-up by [`mark_start`]).
fn started() -> SystemTime {
    static STARTED: OnceLock<SystemTime> = OnceLock::new();
    *STARTED.get_or_init(SystemTime::now)
}

/// Fixes the start time; called once when `weir run` starts.
pub fn mark_start() {
    let _ = started();
}

/// A `/proc/self/status` field in kB, as bytes.
fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn open_fds() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

/// The soft limit on open descriptors, from `/proc/self/limits`.
fn max_fds() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

pub(super) fn encode(out: &mut Out<'_>) -> fmt::Result {
    out.counter(
        "process_cpu_seconds",
        "User and system CPU time the process has spent, in seconds.",
        [(vec![], cpu_seconds())],
    )?;
    if let Some(rss) = status_bytes("VmRSS:") {
        out.gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            [(vec![], rss as f64)],
        )?;
    }
    if let Some(n) = open_fds() {
        out.gauge(
            "process_open_fds",
            "Open file descriptors.",
            [(vec![], n as f64)],
        )?;
    }
    if let Some(n) = max_fds() {
        out.gauge(
            "process_max_fds",
            "The soft limit on open file descriptors.",
            [(vec![], n as f64)],
        )?;
    }
    let start = started()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    out.gauge(
        "process_start_time_seconds",
        "When the process started, in seconds since the Unix epoch.",
        [(vec![], start)],
    )?;
    out.gauge(
        "weir_build_info",
        "Always 1; the labels say which Weir build runs.",
        [(vec![("version", env!("CARGO_PKG_VERSION"))], 1.0)],
    )
}
