//! Fleet-wide counters and token buckets: the contract's `fleet`
//! interface as the plugin runtime serves it. What a plugin keeps through
//! it is shared by every gateway of a fleet when `[state] backend =
//! "redis"`; the plugin's `[plugin_limits.NAME] fleet` mode says how:
//!
//! - `local`: in this process only ([`PluginFleet::local`], the same
//!   store as `host` state, apart from its keys); answered at once.
//! - `sync`: answered at once from this gateway's view of the fleet's
//!   value ([`view`]), which the `weir-fleet` thread reconciles with Redis
//!   every `sync_interval`, all keys in one pipelined round trip
//!   ([`store`](mod@store)).
//! - `strict`: decided in Redis, atomically, one round trip per
//!   operation: the operation is [`FleetOp`], which the request sends and
//!   waits for on its worker's event loop beside the plugin's outbound
//!   calls, then hands the answer to the plugin's `-calls` export.
//!
//! While Redis cannot be reached, the plugin's `fleet_fallback` decides:
//! `local` answers from this gateway with the bucket's capacity and refill
//! shared out over the gateways last seen (a counter's count multiplied by
//! them), `closed` answers `unavailable`. docs/fleet.md states what each
//! mode guarantees and by how much a limit can be overshot.
//!
//! Bounds: keys of 1 to [`MAX_KEY_BYTES`] bytes, buckets of at most
//! [`MAX_BUCKET`] tokens and tokens per second, tags of at most
//! [`MAX_TAG_BYTES`], at most [`MAX_PENDING_PER_CALL`] operations that
//! wait per phase call, at most `state::limits::MAX_KEYS` keys per plugin
//! in a `sync` view; `strict` operations in flight are bounded by
//! `[state] max_pending` and each waits at most `command_timeout`.

mod scripts;
pub mod store;
mod view;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use super::state::{Bucket, Namespace};
use crate::config::{FleetFallback, FleetMode};
pub use store::Store;
use view::View;

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Largest bucket capacity and refill rate.
pub const MAX_BUCKET: u64 = 1_000_000_000;
/// Longest tag an operation carries back, in bytes.
pub const MAX_TAG_BYTES: usize = 256;
/// Operations that wait, per phase call.
pub const MAX_PENDING_PER_CALL: usize = 16;

/// The process's Redis store, when `[state] backend = "redis"`: set once
/// at start-up (a change of `[state]` takes a restart).
static STORE: ArcSwapOption<Store> = ArcSwapOption::const_empty();

/// Makes `store` the one every plugin's fleet operations use from now on.
pub fn install(store: Option<Arc<Store>>) {
    STORE.store(store);
}

/// The store fleet operations use, if there is one.
pub fn store() -> Option<Arc<Store>> {
    STORE.load_full()
}

/// What an operation asks.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Take {
        key: String,
        capacity: u64,
        refill_per_second: u64,
        cost: u64,
    },
    Increment {
        key: String,
        delta: i64,
        ttl_ms: Option<u64>,
    },
}

impl Op {
    fn key(&self) -> &str {
        match self {
            Op::Take { key, .. } | Op::Increment { key, .. } => key,
        }
    }
}

/// What an operation answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Bucket(Bucket),
    Counter(i64),
}

/// Why an operation has no answer: the contract's `fleet-error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetError {
    Invalid(String),
    Limit(String),
    Unavailable(String),
}

/// A started operation: the contract's `started`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    Done(Answer),
    Pending(u32),
}

/// What [`FleetPolicy::start`] made of an operation: answered, or to be
/// decided in Redis while the request waits (the request numbers it,
/// `plugin::calls::RequestCalls::start_fleet`).
#[derive(Debug)]
pub enum Decision {
    Done(Answer),
    Wait(FleetOp),
}

/// An operation to decide in Redis (`strict`), for the request to send.
#[derive(Debug)]
pub struct FleetOp {
    pub id: u32,
    pub tag: String,
    pub op: Op,
    name: Arc<str>,
    plugin: Arc<PluginFleet>,
    fallback: FleetFallback,
    store: Arc<Store>,
}

/// A finished [`FleetOp`], as the plugin receives it.
#[derive(Debug, Clone)]
pub struct FleetDone {
    pub id: u32,
    pub tag: String,
    pub outcome: Result<Answer, FleetError>,
}

impl FleetOp {
    /// Decides the operation in Redis; if Redis does not answer in time,
    /// the plugin's fallback answers.
    pub async fn run(self) -> FleetDone {
        let outcome = match self.store.strict(&self.name, &self.op).await {
            Ok(answer) => Ok(answer),
            Err(why) => {
                self.store
                    .stats()
                    .fell_back(self.fallback == FleetFallback::Closed);
                fall_back(
                    &self.name,
                    &self.plugin,
                    self.fallback,
                    &self.op,
                    self.store.nodes(),
                    why,
                )
            }
        };
        FleetDone {
            id: self.id,
            tag: self.tag,
            outcome,
        }
    }
}

/// One plugin's fleet state in this process, kept across its versions and
/// reloads with its other state.
#[derive(Debug, Default)]
pub struct PluginFleet {
    /// `local` mode's store, and every mode's fallback.
    local: Namespace,
    /// `sync` mode's view of the fleet's values.
    view: View,
}

/// A plugin's fleet operations as its slot serves them: its mode and
/// fallback, its state, and the store.
#[derive(Debug)]
pub struct FleetPolicy {
    pub mode: FleetMode,
    pub fallback: FleetFallback,
    name: Arc<str>,
    plugin: Arc<PluginFleet>,
    /// `None` without Redis: every mode is then `local`.
    store: Option<Arc<Store>>,
}

impl FleetPolicy {
    pub fn new(
        name: Arc<str>,
        mode: FleetMode,
        fallback: FleetFallback,
        plugin: Arc<PluginFleet>,
    ) -> FleetPolicy {
        let store = match mode {
            FleetMode::Local => None,
            FleetMode::Sync | FleetMode::Strict => store(),
        };
        if let (FleetMode::Sync, Some(s)) = (mode, &store) {
            s.watch(&name, &plugin);
        }
        FleetPolicy {
            mode,
            fallback,
            name,
            plugin,
            store,
        }
    }

    /// Whether an operation may leave the request waiting on Redis.
    pub fn waits(&self) -> bool {
        self.mode == FleetMode::Strict && self.store.is_some()
    }

    /// `fleet.take` and `fleet.increment`: checks the operation and
    /// answers it, or makes it one to wait for. `open`: the phase call
    /// may wait; `queued`: operations it already waits for.
    pub fn start(
        &self,
        open: bool,
        queued: usize,
        op: Op,
        tag: String,
    ) -> Result<Decision, FleetError> {
        check(&op, &tag)?;
        let Some(store) = &self.store else {
            return local(&self.plugin.local, &op, 1).map(Decision::Done);
        };
        let now = Instant::now();
        match self.mode {
            FleetMode::Local => local(&self.plugin.local, &op, 1).map(Decision::Done),
            FleetMode::Sync => {
                if !store.is_up() {
                    // Answered from the view alone (shares keep refilling
                    // here), or not at all.
                    store
                        .stats()
                        .fell_back(self.fallback == FleetFallback::Closed);
                    if self.fallback == FleetFallback::Closed {
                        return Err(unavailable());
                    }
                }
                let nodes = store.nodes();
                match op {
                    Op::Take {
                        key,
                        capacity,
                        refill_per_second,
                        cost,
                    } => self
                        .plugin
                        .view
                        .take(
                            &key,
                            (capacity, refill_per_second),
                            cost,
                            nodes,
                            store.is_up(),
                            now,
                        )
                        .map(|b| Decision::Done(Answer::Bucket(b))),
                    Op::Increment { key, delta, ttl_ms } => self
                        .plugin
                        .view
                        .increment(&key, delta, ttl_ms, nodes, now)
                        .map(|n| Decision::Done(Answer::Counter(n))),
                }
            }
            FleetMode::Strict => {
                if !store.is_up() {
                    store
                        .stats()
                        .fell_back(self.fallback == FleetFallback::Closed);
                    return fall_back(
                        &self.name,
                        &self.plugin,
                        self.fallback,
                        &op,
                        store.nodes(),
                        "unreachable",
                    )
                    .map(Decision::Done);
                }
                if !open {
                    return Err(FleetError::Invalid(
                        "a strict fleet operation waits, so it starts only in the request and \
                         response phases (and their -calls exports)"
                            .into(),
                    ));
                }
                if queued >= MAX_PENDING_PER_CALL {
                    return Err(FleetError::Limit(format!(
                        "at most {MAX_PENDING_PER_CALL} fleet operations that wait per phase call"
                    )));
                }
                Ok(Decision::Wait(FleetOp {
                    id: 0,
                    tag,
                    op,
                    name: self.name.clone(),
                    plugin: self.plugin.clone(),
                    fallback: self.fallback,
                    store: store.clone(),
                }))
            }
        }
    }
}

fn unavailable() -> FleetError {
    FleetError::Unavailable(
        "the fleet's Redis cannot be reached and this plugin's fleet_fallback is `closed`".into(),
    )
}

/// The answer while Redis cannot be reached (`why`, for the log).
fn fall_back(
    name: &str,
    plugin: &PluginFleet,
    fallback: FleetFallback,
    op: &Op,
    nodes: u32,
    why: &str,
) -> Result<Answer, FleetError> {
    tracing::debug!(
        plugin = name,
        reason = why,
        "fleet operation answered by its fallback"
    );
    match fallback {
        FleetFallback::Closed => Err(unavailable()),
        FleetFallback::Local => local(&plugin.local, op, nodes),
    }
}

/// Answers `op` from this process's store, as one of `nodes` gateways:
/// a bucket's capacity and refill are shared out over them (rounded up,
/// and never below the cost), and a counter counts each increment for
/// every one of them.
fn local(ns: &Namespace, op: &Op, nodes: u32) -> Result<Answer, FleetError> {
    let n = u64::from(nodes.max(1));
    match op {
        Op::Take {
            key,
            capacity,
            refill_per_second,
            cost,
        } => {
            let capacity = capacity.div_ceil(n).max((*cost).min(*capacity)).max(1);
            let refill = refill_per_second.div_ceil(n);
            ns.take(key, capacity, refill, *cost)
                .map(Answer::Bucket)
                .map_err(refused)
        }
        Op::Increment { key, delta, ttl_ms } => {
            let ttl = ttl_ms.map(Duration::from_millis);
            ns.increment(key, *delta, ttl)
                .map(|v| Answer::Counter(v.saturating_mul(n as i64)))
                .map_err(refused)
        }
    }
}

/// A refusal of the local store: its bounds on keys and bytes (which
/// start "this plugin") are limits, the rest (a key of the other kind, an
/// overflow) invalid operations.
fn refused(e: String) -> FleetError {
    if e.starts_with("this plugin") {
        FleetError::Limit(e)
    } else {
        FleetError::Invalid(e)
    }
}

/// The checks every mode applies, with the texts the SDK uses.
fn check(op: &Op, tag: &str) -> Result<(), FleetError> {
    let key = op.key();
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(FleetError::Invalid(format!(
            "fleet keys are 1 to {MAX_KEY_BYTES} bytes"
        )));
    }
    if tag.len() > MAX_TAG_BYTES {
        return Err(FleetError::Invalid(format!(
            "a fleet operation's tag is at most {MAX_TAG_BYTES} bytes"
        )));
    }
    if let Op::Take {
        capacity,
        refill_per_second,
        ..
    } = op
        && (*capacity == 0 || *capacity > MAX_BUCKET || *refill_per_second > MAX_BUCKET)
    {
        return Err(FleetError::Invalid(format!(
            "bucket capacity must be 1 to {MAX_BUCKET} and refill at most {MAX_BUCKET} per second"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
