//! The access log's own counts: lines queued by the workers, dropped
//! because the writer's queue was full, written by the writer, write
//! errors and file reopens (SIGUSR1). Dropped lines are the figure to
//! watch: a request never waits for its line, so a slow disk shows here.

use std::fmt;

use super::{Out, PerThread, Tally};

/// One thread's counts (the workers queue and drop; the writer writes).
#[derive(Debug, Default)]
pub struct AccessLogCells {
    pub queued: Tally,
    pub dropped: Tally,
    pub written: Tally,
    pub write_errors: Tally,
    pub reopened: Tally,
}

pub(super) fn encode(cells: &PerThread<AccessLogCells>, out: &mut Out<'_>) -> fmt::Result {
    let sum = |f: fn(&AccessLogCells) -> &Tally| cells.sum(|c| f(c).get());
    out.counter(
        "weir_access_log_lines_queued",
        "Access-log lines handed to the writer thread.",
        [(vec![], sum(|c| &c.queued))],
    )?;
    out.counter(
        "weir_access_log_lines_dropped",
        "Access-log lines dropped because the writer's queue was full (the request did not wait).",
        [(vec![], sum(|c| &c.dropped))],
    )?;
    out.counter(
        "weir_access_log_lines_written",
        "Access-log lines the writer thread wrote.",
        [(vec![], sum(|c| &c.written))],
    )?;
    out.counter(
        "weir_access_log_write_errors",
        "Failed writes of access-log lines (a full disk, a closed pipe).",
        [(vec![], sum(|c| &c.write_errors))],
    )?;
    out.counter(
        "weir_access_log_reopens",
        "Times the access-log file was reopened (SIGUSR1).",
        [(vec![], sum(|c| &c.reopened))],
    )
}
