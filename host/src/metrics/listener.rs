//! Listener metrics: connections accepted, those that found the
//! listener at `max_connections` and waited for a slot, connections
//! closed by a timeout (by which one), and the requests Weir refused
//! itself as the client's fault, by a fixed reason (counted here, per
//! thread); and open connections and TLS handshake counts, read at scrape
//! time from the listener through [`ListenerProbe`] (the listener's
//! connection semaphore and the TLS listener's handshake counters, which
//! `/admin/tls` shows too), never kept twice.
//!
//! Listeners only change with a restart, so their names bound the
//! series; every other label is a fixed set.

use std::fmt;
use std::sync::{Arc, Mutex, Weak};

use super::{Labels, Out, PerThread, Registry, Tally};

/// Which of a client connection's clocks closed it: the `timeout` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// `header_read_timeout`: a new connection stayed silent, or a request
    /// head took too long to arrive.
    HeaderRead,
    /// `idle_timeout`: no request and no bytes (also an upgraded
    /// connection's tunnel without bytes either way).
    Idle,
    /// `send_timeout`: the client read nothing of what was written.
    Send,
}

impl Timeout {
    const ALL: [Timeout; 3] = [Timeout::HeaderRead, Timeout::Idle, Timeout::Send];

    pub fn as_str(self) -> &'static str {
        match self {
            Timeout::HeaderRead => "header_read",
            Timeout::Idle => "idle",
            Timeout::Send => "send",
        }
    }
}

/// Why Weir refused a request itself, as the client's fault: the fixed
/// set of the `reason` label (docs/configuration.md lists the statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientError {
    /// No route matches (404).
    NoRoute,
    /// The request target is over `max_uri_bytes` (414).
    UriTooLong,
    /// Ambiguous or forbidden framing: CL and TE, a bad header name, a bad
    /// `Host` (400).
    BadFraming,
    /// A request target Weir will not route (400).
    BadTarget,
    /// A header Weir reads is malformed, like `grpc-timeout` (400).
    BadHeader,
    /// The body is over the route's `max_body_bytes` (413).
    BodyTooLarge,
    /// The body did not arrive within the deadline (408).
    BodyTimeout,
    /// The body broke off or had bad chunked framing (400).
    BodyBroken,
    /// The request head did not parse (400).
    Malformed,
    /// The request head is over `max_header_bytes` or `max_headers` (431).
    HeadersTooLarge,
}

impl ClientError {
    const ALL: [ClientError; 10] = [
        ClientError::NoRoute,
        ClientError::UriTooLong,
        ClientError::BadFraming,
        ClientError::BadTarget,
        ClientError::BadHeader,
        ClientError::BodyTooLarge,
        ClientError::BodyTimeout,
        ClientError::BodyBroken,
        ClientError::Malformed,
        ClientError::HeadersTooLarge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ClientError::NoRoute => "no_route",
            ClientError::UriTooLong => "uri_too_long",
            ClientError::BadFraming => "bad_framing",
            ClientError::BadTarget => "bad_target",
            ClientError::BadHeader => "bad_header",
            ClientError::BodyTooLarge => "body_too_large",
            ClientError::BodyTimeout => "body_timeout",
            ClientError::BodyBroken => "body_broken",
            ClientError::Malformed => "malformed",
            ClientError::HeadersTooLarge => "headers_too_large",
        }
    }
}

/// One thread's counts for one listener.
#[derive(Debug, Default)]
struct ListenerCells {
    accepted: Tally,
    limited: Tally,
    timeouts: [Tally; Timeout::ALL.len()],
    client_errors: [Tally; ClientError::ALL.len()],
}

/// What a scrape reads from a listener's own state: implemented by the
/// listener, which the metrics module cannot name (it sits below it).
pub trait ListenerProbe: Send + Sync + fmt::Debug {
    /// Client connections open now (those holding a `max_connections`
    /// slot).
    fn open_connections(&self) -> u64;
    /// A TLS listener's handshake counts since start-up.
    fn tls_handshakes(&self) -> Option<TlsHandshakes>;
}

/// A TLS listener's handshakes.
#[derive(Debug, Default)]
pub struct TlsHandshakes {
    pub full: u64,
    pub resumed: u64,
    /// Failed ones by reason: a fixed set of `snake_case` names.
    pub failed: Vec<(&'static str, u64)>,
}

/// One listener's counts (one per listener name).
#[derive(Debug, Default)]
pub struct ListenerStats {
    cells: PerThread<ListenerCells>,
    probe: Mutex<Option<Weak<dyn ListenerProbe>>>,
}

impl ListenerStats {
    /// Makes `probe` the listener a scrape reads gauges from.
    pub fn show(&self, probe: Weak<dyn ListenerProbe>) {
        *self.probe.lock().unwrap_or_else(|e| e.into_inner()) = Some(probe);
    }

    fn probe(&self) -> Option<Arc<dyn ListenerProbe>> {
        let probe = self.probe.lock().unwrap_or_else(|e| e.into_inner());
        probe.as_ref().and_then(Weak::upgrade)
    }

    #[inline]
    pub fn accepted(&self) {
        self.cells.local().accepted.inc();
    }

    /// A connection was accepted while every `max_connections` slot was
    /// taken: it waits for one.
    pub fn limited(&self) {
        self.cells.local().limited.inc();
    }

    /// A connection was closed by `timeout`.
    pub fn timed_out(&self, timeout: Timeout) {
        self.cells.local().timeouts[timeout as usize].inc();
    }

    /// Weir refused a request as the client's fault.
    pub fn client_error(&self, reason: ClientError) {
        self.cells.local().client_errors[reason as usize].inc();
    }

    /// Refusals counted so far for `reason` (for tests).
    pub fn client_errors(&self, reason: ClientError) -> u64 {
        self.cells.sum(|c| c.client_errors[reason as usize].get())
    }
}

impl Registry {
    /// The stats of listener `name`, resolved once by each worker's
    /// accept loop.
    pub fn listener(&self, name: &str) -> Arc<ListenerStats> {
        self.listeners.get(name)
    }

    pub(super) fn listeners_section(&self, out: &mut Out<'_>) -> fmt::Result {
        let listeners = self.listeners.snapshot();
        let probes: Vec<_> = listeners.iter().map(|(_, s)| s.probe()).collect();
        let tls: Vec<_> = probes
            .iter()
            .map(|p| p.as_ref().and_then(|p| p.tls_handshakes()))
            .collect();
        let name = |i: usize| -> Labels<'_> { vec![("listener", listeners[i].0.as_str())] };
        let each = || 0..listeners.len();

        out.gauge(
            "weir_listener_connections_open",
            "Client connections open (each holds one of the listener's max_connections slots).",
            each().filter_map(|i| Some((name(i), probes[i].as_ref()?.open_connections() as f64))),
        )?;
        out.counter(
            "weir_listener_connections_accepted",
            "Client connections accepted.",
            each().map(|i| (name(i), listeners[i].1.cells.sum(|c| c.accepted.get()))),
        )?;
        out.counter(
            "weir_listener_connections_limited",
            "Connections accepted while the listener was at max_connections: each waited for a \
             slot (clients behind them wait in the kernel's backlog, uncounted).",
            each().map(|i| (name(i), listeners[i].1.cells.sum(|c| c.limited.get()))),
        )?;
        let mut timeouts = Vec::new();
        let mut refused = Vec::new();
        for i in each() {
            let cells = &listeners[i].1.cells;
            for t in Timeout::ALL {
                let n = cells.sum(|c| c.timeouts[t as usize].get());
                if n > 0 {
                    let mut labels = name(i);
                    labels.push(("timeout", t.as_str()));
                    timeouts.push((labels, n));
                }
            }
            for r in ClientError::ALL {
                let n = cells.sum(|c| c.client_errors[r as usize].get());
                if n > 0 {
                    let mut labels = name(i);
                    labels.push(("reason", r.as_str()));
                    refused.push((labels, n));
                }
            }
        }
        out.counter(
            "weir_listener_timeouts",
            "Client connections closed by a timeout, by which.",
            timeouts,
        )?;
        out.counter(
            "weir_listener_client_errors",
            "Requests Weir refused itself as the client's fault (a 4xx, or to a gRPC call its \
             gRPC status), by reason.",
            refused,
        )?;
        let mut done = Vec::new();
        let mut failed = Vec::new();
        for (i, t) in tls.iter().enumerate() {
            let Some(t) = t else { continue };
            for (kind, n) in [("full", t.full), ("resumed", t.resumed)] {
                let mut labels = name(i);
                labels.push(("kind", kind));
                done.push((labels, n));
            }
            for (reason, n) in &t.failed {
                if *n > 0 {
                    let mut labels = name(i);
                    labels.push(("reason", *reason));
                    failed.push((labels, *n));
                }
            }
        }
        out.counter(
            "weir_listener_tls_handshakes",
            "TLS handshakes completed, full or resumed.",
            done,
        )?;
        out.counter(
            "weir_listener_tls_handshake_failures",
            "TLS handshakes that failed, by reason.",
            failed,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed;

    impl ListenerProbe for Fixed {
        fn open_connections(&self) -> u64 {
            3
        }
        fn tls_handshakes(&self) -> Option<TlsHandshakes> {
            Some(TlsHandshakes {
                full: 5,
                resumed: 1,
                failed: vec![("timeout", 2), ("not_tls", 0)],
            })
        }
    }

    #[test]
    fn a_listener_shows_its_counts_and_what_its_probe_reads() {
        let stats = super::super::global().listener("metrics-unit-listener");
        stats.accepted();
        stats.accepted();
        stats.limited();
        stats.timed_out(Timeout::HeaderRead);
        stats.client_error(ClientError::NoRoute);
        stats.client_error(ClientError::NoRoute);
        let probe: Arc<dyn ListenerProbe> = Arc::new(Fixed);
        stats.show(Arc::downgrade(&probe));

        let (_, text) = super::super::render(false);
        let l = "listener=\"metrics-unit-listener\"";
        for expected in [
            format!("weir_listener_connections_open{{{l}}} 3.0\n"),
            format!("weir_listener_connections_accepted_total{{{l}}} 2\n"),
            format!("weir_listener_connections_limited_total{{{l}}} 1\n"),
            format!("weir_listener_timeouts_total{{{l},timeout=\"header_read\"}} 1\n"),
            format!("weir_listener_client_errors_total{{{l},reason=\"no_route\"}} 2\n"),
            format!("weir_listener_tls_handshakes_total{{{l},kind=\"full\"}} 5\n"),
            format!("weir_listener_tls_handshake_failures_total{{{l},reason=\"timeout\"}} 2\n"),
        ] {
            assert!(text.contains(&expected), "missing {expected}in\n{text}");
        }
        // Reasons never seen make no series.
        assert!(!text.contains(&format!("{l},timeout=\"idle\"")));
        assert!(!text.contains(&format!("{l},reason=\"not_tls\"")));
    }
}
