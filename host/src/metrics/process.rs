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

/// Clock ticks per second of `/proc`'s CPU times: `USER_HZ`, 100 in
/// Linux's ABI on every architecture Weir builds for (Prometheus's own
/// process collector assumes the same).
const USER_HZ: f64 = 100.0;

/// User and system CPU seconds from `/proc/self/stat` (fields 14 and 15,
/// counted after the command name, which may hold spaces and parentheses).
/// Read from `/proc` rather than `clock_gettime(CLOCK_PROCESS_CPUTIME_ID)`
/// so a scrape needs no vDSO, which a process under valgrind (the
/// benchmark's instruction counts) cannot look up.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    cpu_seconds_in(&stat)
}

fn cpu_seconds_in(stat: &str) -> Option<f64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

pub(super) fn encode(out: &mut Out<'_>) -> fmt::Result {
    if let Some(s) = cpu_seconds() {
        out.counter(
            "process_cpu_seconds",
            "User and system CPU time the process has spent, in seconds.",
            [(vec![], s)],
        )?;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_are_read_after_the_command_name() {
        let stat =
            "4242 (we ir) (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 1 2 3";
        assert_eq!(cpu_seconds_in(stat), Some(3.25));
        assert_eq!(cpu_seconds_in("garbage"), None);
        assert!(cpu_seconds().is_some());
    }
}
