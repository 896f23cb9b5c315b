//! Fleet state (`[state] backend = "redis"`): whether Redis is reachable,
//! how many gateways the last round saw, the rounds and the keys they
//! reported, `strict` operations by outcome with their round trip's
//! duration, and operations answered by a plugin's `fleet_fallback`.
//! Shown only with the Redis backend ([`FleetStats::enable`]).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use super::{BOUNDS, Hist, HistSum, Out, PerThread, Registry, Tally};

/// How a `strict` operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrictOutcome {
    /// Decided in Redis.
    Redis,
    /// Redis answered with an error, or the connection broke.
    Failed,
    /// No answer within `command_timeout`.
    Timeout,
    /// `max_pending` operations were already in flight.
    Busy,
}

impl StrictOutcome {
    const ALL: [StrictOutcome; 4] = [
        StrictOutcome::Redis,
        StrictOutcome::Failed,
        StrictOutcome::Timeout,
        StrictOutcome::Busy,
    ];

    fn as_str(self) -> &'static str {
        match self {
            StrictOutcome::Redis => "redis",
            StrictOutcome::Failed => "failed",
            StrictOutcome::Timeout => "timeout",
            StrictOutcome::Busy => "busy",
        }
    }
}

/// One thread's counts (the workers count operations, the `weir-fleet`
/// thread its rounds).
#[derive(Debug, Default)]
pub struct FleetCells {
    strict: [Tally; 4],
    strict_duration: Hist,
    fallback_local: Tally,
    fallback_closed: Tally,
    rounds_ok: Tally,
    rounds_failed: Tally,
    keys_synced: Tally,
    outages: Tally,
}

/// The fleet state's counts.
#[derive(Debug, Default)]
pub struct FleetStats {
    cells: PerThread<FleetCells>,
    enabled: AtomicBool,
    up: AtomicBool,
    nodes: AtomicU32,
}

impl FleetStats {
    /// The Redis backend is on: the section shows from now on.
    pub fn enable(&'static self) -> &'static FleetStats {
        self.enabled.store(true, Ordering::Relaxed);
        self
    }

    pub fn strict(&self, outcome: StrictOutcome, took: Option<Duration>) {
        let c = self.cells.local();
        c.strict[outcome as usize].inc();
        if let Some(d) = took {
            c.strict_duration.observe(d, &BOUNDS);
        }
    }

    /// A fleet operation answered by its plugin's fallback: `closed`, or
    /// `local`.
    pub fn fell_back(&self, closed: bool) {
        let c = self.cells.local();
        if closed {
            c.fallback_closed.inc();
        } else {
            c.fallback_local.inc();
        }
    }

    pub fn round(&self, ok: bool) {
        let c = self.cells.local();
        if ok {
            c.rounds_ok.inc();
        } else {
            c.rounds_failed.inc();
        }
    }

    pub fn synced(&self, keys: u64) {
        self.cells.local().keys_synced.add(keys);
    }

    /// Redis went from reachable (or never reached) to unreachable.
    pub fn outage(&self) {
        self.cells.local().outages.inc();
    }

    /// Outages counted so far (the first failed round is one even though
    /// Redis was never up).
    pub fn outages(&self) -> u64 {
        self.cells.sum(|c| c.outages.get())
    }

    pub fn set_state(&self, up: bool, nodes: u32) {
        self.up.store(up, Ordering::Relaxed);
        self.nodes.store(nodes, Ordering::Relaxed);
    }
}

impl Registry {
    pub(super) fn fleet_section(&self, out: &mut Out<'_>) -> fmt::Result {
        let s = &self.fleet;
        if !s.enabled.load(Ordering::Relaxed) {
            return Ok(());
        }
        let sum = |f: fn(&FleetCells) -> &Tally| s.cells.sum(|c| f(c).get());
        out.gauge(
            "weir_fleet_redis_up",
            "1 when the last round reached the fleet's Redis, 0 when it did not.",
            [(
                vec![],
                if s.up.load(Ordering::Relaxed) {
                    1.0
                } else {
                    0.0
                },
            )],
        )?;
        out.gauge(
            "weir_fleet_nodes",
            "Gateways of the fleet seen by the last round that reached Redis (this one included).",
            [(vec![], f64::from(s.nodes.load(Ordering::Relaxed).max(1)))],
        )?;
        out.counter(
            "weir_fleet_redis_outages",
            "Times Redis became unreachable (each logged once).",
            [(vec![], s.outages())],
        )?;
        out.counter(
            "weir_fleet_sync_rounds",
            "Rounds of the weir-fleet thread (heartbeat and sync reports), by outcome.",
            [
                (vec![("outcome", "ok")], sum(|c| &c.rounds_ok)),
                (vec![("outcome", "failed")], sum(|c| &c.rounds_failed)),
            ],
        )?;
        out.counter(
            "weir_fleet_sync_keys",
            "Keys of sync-mode plugins reported to Redis and read back.",
            [(vec![], sum(|c| &c.keys_synced))],
        )?;
        out.counter(
            "weir_fleet_strict_operations",
            "Strict-mode operations, by outcome: decided in Redis, failed, timed out, or refused \
             because max_pending were in flight (all but `redis` answered by the fallback).",
            StrictOutcome::ALL.map(|o| {
                (
                    vec![("outcome", o.as_str())],
                    s.cells.sum(|c| c.strict[o as usize].get()),
                )
            }),
        )?;
        let mut h = HistSum::default();
        for c in s.cells.all() {
            h.add(&c.strict_duration);
        }
        out.histogram(
            "weir_fleet_strict_duration_seconds",
            "Round trips of strict-mode operations decided in Redis.",
            &BOUNDS,
            [(vec![], h)],
        )?;
        out.counter(
            "weir_fleet_fallbacks",
            "Fleet operations answered by the plugin's fleet_fallback while Redis could not be \
             reached or did not answer: `local` (from this gateway) or `closed` (unavailable).",
            [
                (vec![("fallback", "local")], sum(|c| &c.fallback_local)),
                (vec![("fallback", "closed")], sum(|c| &c.fallback_closed)),
            ],
        )
    }
}
