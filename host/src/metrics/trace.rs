//! Span export counters: spans handed to the collector, spans dropped
//! (and why), and posts that failed. The workers count what they drop
//! (a full queue, children past the per-request bound) and the exporter
//! thread what it sends, each in its own cells. Shown only while tracing
//! exports spans ([`TraceStats::enable`]), so a gateway without it
//! exposes no empty families.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Out, PerThread, Registry, Tally};

/// Why a span was not exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanDrop {
    /// The export queue was full (the collector is slow or down).
    QueueFull,
    /// A child span past the bound on one request's children.
    ChildLimit,
    /// In a batch the collector did not accept (an error, a timeout, a
    /// refusal, or spans its answer says it rejected).
    ExportFailed,
}

impl SpanDrop {
    const ALL: [SpanDrop; 3] = [
        SpanDrop::QueueFull,
        SpanDrop::ChildLimit,
        SpanDrop::ExportFailed,
    ];

    fn as_str(self) -> &'static str {
        match self {
            SpanDrop::QueueFull => "queue_full",
            SpanDrop::ChildLimit => "child_limit",
            SpanDrop::ExportFailed => "export_failed",
        }
    }
}

#[derive(Debug, Default)]
pub struct TraceCells {
    exported: Tally,
    dropped: [Tally; 3],
    failures: Tally,
}

/// The span export's counts.
#[derive(Debug, Default)]
pub struct TraceStats {
    cells: PerThread<TraceCells>,
    enabled: AtomicBool,
}

impl TraceStats {
    /// Spans are exported: the section shows from now on.
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    pub fn exported(&self, n: u64) {
        self.cells.local().exported.add(n);
    }

    pub fn dropped(&self, why: SpanDrop, n: u64) {
        self.cells.local().dropped[why as usize].add(n);
    }

    /// A post to the collector that failed.
    pub fn export_failed(&self) {
        self.cells.local().failures.inc();
    }

    /// Spans exported so far, for tests.
    pub fn exported_total(&self) -> u64 {
        self.cells.sum(|c| c.exported.get())
    }

    /// Spans dropped so far for `why`, for tests.
    pub fn dropped_total(&self, why: SpanDrop) -> u64 {
        self.cells.sum(|c| c.dropped[why as usize].get())
    }
}

impl Registry {
    pub(super) fn trace_section(&self, out: &mut Out<'_>) -> fmt::Result {
        let s = &self.trace;
        if !s.enabled.load(Ordering::Relaxed) {
            return Ok(());
        }
        out.counter(
            "weir_trace_spans_exported",
            "Spans the OTLP collector accepted.",
            [(vec![], s.exported_total())],
        )?;
        out.counter(
            "weir_trace_spans_dropped",
            "Spans not exported, by reason: the export queue was full, a request had more \
             children than the bound, or the collector did not accept the batch.",
            SpanDrop::ALL.map(|why| (vec![("reason", why.as_str())], s.dropped_total(why))),
        )?;
        out.counter(
            "weir_trace_export_failures",
            "Posts of a batch of spans to the OTLP collector that failed (an error, a timeout \
             or a status other than 2xx).",
            [(vec![], s.cells.sum(|c| c.failures.get()))],
        )
    }
}
