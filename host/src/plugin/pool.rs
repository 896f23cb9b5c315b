//! Instances of one plugin with one configuration (a [`Slot`]): made from
//! the pre-instantiated component, initialised with the configuration,
//! pooled and reused across requests. A call checks an instance out,
//! lends it the request head, runs under the CPU deadline, and returns it;
//! an instance whose call trapped is dropped, never reused. With
//! `isolation = "request"` the pipeline keeps one fresh instance for the
//! whole request and drops it afterwards.
//!
//! Stores are made only when an instance is made, never per call: a pooled
//! call takes the instance its worker thread used last (no lock), a few
//! swaps to lend the heads, and the Wasm call itself. The instance's
//! `request` and `response` handles, given in `init`, name whatever is
//! lent for the call.
//!
//! After a trap, a pooled instance is made again on the request path only
//! if its `init` fits in a call's deadline; otherwise a background thread
//! makes it with the full `init` budget, one at a time per slot and after
//! a back-off that grows with consecutive failures, while the plugin's
//! calls fail fast (failure policy). So a plugin that traps on every call
//! and has a slow `init` costs a worker no more than a call's deadline, and
//! the host at most one `init` per back-off.
//!
//! Each worker also keeps, beside its instance, the slot's breaker on
//! repeated deadline traps (`super::breaker`) and its CPU share
//! (`super::share`): while the breaker is open or the share spent, the
//! slot's calls on that worker fail at once.
//!
//! Every call and every `init` is counted in its plugin's metrics
//! (`crate::metrics::plugin`, resolved once per slot): phase, outcome,
//! the time the Wasm call ran (two clock reads per call), and a trap's
//! cause. The slot's instance count, breaker and share atomics are read
//! from there at scrape time.

use std::cell::Cell;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use thread_local::ThreadLocal;

use http::HeaderValue;
use wasmtime::component::Resource;
use wasmtime::{Store, StoreLimitsBuilder};

use super::bindings::{self, REQUEST_FIELDS_REP, REQUEST_REP, RESPONSE_FIELDS_REP, RESPONSE_REP};
use super::breaker::{Admit, Breaker, BreakerSettings, BreakerStats, Outcome};
use super::calls::{CallPolicy, RequestCalls, Waited};
use super::deadline::{self, CpuDeadline, Stop};
use super::fleet::{FleetPolicy, PluginFleet};
use super::host::{self, Context, StoreData};
use super::load::Compiled;
use super::log_fields::LogFields;
use super::share::{self, Share, ShareSettings, ShareStats};
use super::state::Namespace;
use crate::config::{FailurePolicy, Isolation};
use crate::metrics::plugin::{self as metrics, Cause, Phase, PluginStats, Registered, SlotReading};

/// CPU time making an instance and running its `init` may take, when the
/// plugin's call deadline is shorter: `init` parses configuration and may
/// build tables (keys, regular expressions), once per instance, which can
/// take more than a 10 ms call deadline. Instances are mostly made off the
/// request path (at start-up, reload and deploy); when a pool grows under
/// load, a worker waits for at most this long (of CPU; see `deadline`).
pub const INIT_DEADLINE: Duration = Duration::from_secs(1);

/// Back-off before a background re-make after a trap: none after the first
/// trap, then this doubling with each further consecutive failure (a trap,
/// or an `init` that failed or did not fit in a call's deadline) up to
/// [`REFILL_BACKOFF_MAX`]; a call that succeeds resets it.
pub const REFILL_BACKOFF: Duration = Duration::from_millis(100);
pub const REFILL_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// The phases a plugin asked for in `init`: the pipeline calls no other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub request: bool,
    pub request_body: bool,
    pub response: bool,
    pub response_body: bool,
    pub log: bool,
}

impl From<bindings::Capabilities> for Capabilities {
    fn from(c: bindings::Capabilities) -> Capabilities {
        use bindings::Capabilities as C;
        Capabilities {
            request: c.contains(C::REQUEST),
            request_body: c.contains(C::REQUEST_BODY),
            response: c.contains(C::RESPONSE),
            response_body: c.contains(C::RESPONSE_BODY),
            log: c.contains(C::LOG),
        }
    }
}

/// Why a plugin call did not produce an answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FailureKind {
    #[error("trapped: {0}")]
    Trap(String),
    #[error("all {0} instances are busy")]
    Busy(usize),
    #[error("answered with something invalid: {0}")]
    Invalid(String),
    #[error("init refused its configuration: {0}")]
    Init(String),
    #[error("is replacing an instance that trapped")]
    Recovering,
    /// This worker's breaker is open: the plugin's last calls here ended
    /// at their deadline.
    #[error(
        "is refused at once on this worker: its breaker opened after {after} calls in a row \
         ended at their deadline (next probe in {retry_after:?})"
    )]
    Breaker { after: u32, retry_after: Duration },
    /// This worker's CPU share for the plugin is spent.
    #[error(
        "is refused at once on this worker: its calls used their CPU share ({percent}% of the \
         worker, saved up over {window:?}); calls resume in {retry_after:?}"
    )]
    Share {
        percent: u32,
        window: Duration,
        retry_after: Duration,
    },
}

impl FailureKind {
    /// Whether the plugin could not be called at all (no instance, its
    /// breaker open or its share spent): a closed policy answers 503, not
    /// 500.
    pub fn unavailable(&self) -> bool {
        matches!(
            self,
            FailureKind::Busy(_)
                | FailureKind::Recovering
                | FailureKind::Breaker { .. }
                | FailureKind::Share { .. }
        )
    }

    /// When to try again, for a `Retry-After`: known for an open breaker
    /// and a spent share.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            FailureKind::Breaker { retry_after, .. } | FailureKind::Share { retry_after, .. } => {
                Some(*retry_after)
            }
            _ => None,
        }
    }
}

/// A failed plugin call, with the plugin's name.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin `{plugin}` {kind}")]
pub struct Failure {
    pub plugin: Arc<str>,
    pub kind: FailureKind,
}

/// One instance and its store.
pub struct Instance {
    store: Store<StoreData>,
    guest: bindings::Plugin,
    _live: Live,
}

/// Counts an instance against its slot's `max_instances` while it exists.
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

/// What the pipeline lends a plugin for one call.
pub struct Io<'a> {
    pub req: &'a mut http::request::Parts,
    pub resp: Option<&'a mut http::response::Parts>,
    pub context: &'a mut Context,
    /// The request's access-log fields, one set for the whole chain;
    /// lent like the heads.
    pub log_fields: &'a mut LogFields,
    /// Lent like the heads (swapped, not cloned).
    pub id: &'a mut HeaderValue,
    pub client_ip: IpAddr,
    /// The connection's verified client certificate, if any.
    pub client_cert: Option<&'a Arc<crate::tls::ClientCert>>,
    /// The instance this request holds (request isolation only).
    pub held: &'a mut Option<Box<Instance>>,
    /// The plugin's calls in this request (lent like the context).
    pub calls: &'a mut RequestCalls,
}

/// What making an instance takes; shared with a background re-make.
struct Maker {
    name: Arc<str>,
    config: String,
    /// The version the slot serves.
    compiled: Arc<Compiled>,
    state: Arc<Namespace>,
    /// The plugin's metrics, resolved once per slot.
    stats: Arc<PluginStats>,
    /// CPU deadline of a call (see `deadline`).
    deadline: Duration,
    max_instances: usize,
    live: Arc<AtomicUsize>,
    /// What the plugin may call out to; every store of the slot shares it.
    calls: Arc<CallPolicy>,
    /// How its fleet operations are kept; shared likewise.
    fleet: Arc<FleetPolicy>,
}

/// What a slot shares with its background re-make.
#[derive(Default)]
struct Shared {
    /// Boxed, so checking one out or in moves a pointer, not the
    /// instance's export table.
    #[expect(clippy::vec_box, reason = "instances move in and out per call")]
    idle: Mutex<Vec<Box<Instance>>>,
    /// Set when a newer version replaced this slot: instances coming back
    /// are dropped instead of pooled.
    retired: AtomicBool,
    /// Consecutive failures: traps, and re-makes that failed. A call that
    /// succeeds sets it back to 0.
    failures: AtomicU32,
    /// A background re-make is under way (or waiting out its back-off).
    refilling: AtomicBool,
}

impl Shared {
    #[expect(clippy::vec_box, reason = "instances move in and out per call")]
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Box<Instance>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A plugin with one configuration, and its instances.
pub struct Slot {
    pub name: Arc<str>,
    /// Makes instances of the version this slot serves. A hot deploy makes
    /// new slots for the new version and retires this one: requests in
    /// flight finish here.
    maker: Arc<Maker>,
    shared: Arc<Shared>,
    pub caps: Capabilities,
    pub failure: FailurePolicy,
    pub isolation: Isolation,
    /// Largest body a plugin may hand back (replace or respond).
    pub body_cap: usize,
    /// Per thread, the instance that thread used last. A worker thread
    /// runs one call at a time, so it checks its own out and back in
    /// without a lock or any atomic read-modify-write (each costs tens of
    /// nanoseconds per call); `idle` serves a thread whose own is missing.
    /// These go with the slot: for a retired slot, when the last request
    /// holding it ends. Beside it, that worker's breaker and CPU share.
    local: ThreadLocal<Local>,
    breaker: BreakerSettings,
    /// What the workers' breakers report, for `/admin/plugins`.
    pub breaker_stats: Arc<BreakerStats>,
    share: ShareSettings,
    /// What the workers' shares report, for `/admin/plugins`.
    pub share_stats: Arc<ShareStats>,
    /// When a call refused at once (breaker, share) was last logged, in
    /// ms of `worker::now_ms` (0: never), and how many were not logged
    /// since: see [`Slot::refusal_report`].
    refusals_logged_ms: AtomicU64,
    refusals_unlogged: AtomicU64,
    /// Lends the slot's instance count, breaker and share atomics to its
    /// plugin's metrics while the slot exists ([`Gauges`]).
    _metrics: Registered,
}

/// What a metrics scrape reads of a slot: the atomics `/admin/plugins`
/// shows too, so nothing is counted twice.
struct Gauges {
    live: Arc<AtomicUsize>,
    breaker: Arc<BreakerStats>,
    share: Arc<ShareStats>,
}

impl metrics::SlotSource for Gauges {
    fn read(&self) -> SlotReading {
        let r = Ordering::Relaxed;
        SlotReading {
            instances: self.live.load(r) as u64,
            breakers_open: self.breaker.open.load(r) as u64,
            breaker_opens: self.breaker.opened.load(r),
            breaker_refusals: self.breaker.refused.load(r),
            share_refusals: self.share.refused.load(r),
            share_spent: self.share.spent.load(r),
            cpu_charged_ms: self.share.charged_ms.load(r),
        }
    }
}

/// Calls refused at once (an open breaker, a spent share) are logged at
/// most once per this long per slot: under attack they come as fast as a
/// client can send, and a line each would cost more than the refusal.
pub const REFUSAL_LOG_INTERVAL_MS: u64 = 1000;

/// What one worker thread keeps per slot.
#[derive(Default)]
struct Local {
    inst: Cell<Option<Box<Instance>>>,
    breaker: Cell<Breaker>,
    share: Cell<Share>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("name", &self.name)
            .field("caps", &self.caps)
            .finish_non_exhaustive()
    }
}

/// Our reading of a trap, for logs: short and without Wasm backtraces.
/// `deadline` is the store's deadline as the call left it, and `panic` the
/// panic report the plugin sent in the call (the SDK's panic hook sends
/// one just before the panic traps), which names the cause better than
/// the trap itself.
fn describe(e: &wasmtime::Error, deadline: &CpuDeadline, panic: Option<String>) -> String {
    if let Some(report) = panic {
        return report;
    }
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        return match trap {
            wasmtime::Trap::Interrupt => match deadline.stopped() {
                Some(Stop::Wall) => format!(
                    "ran for {:?} of wall-clock time without finishing (CPU deadline {:?})",
                    deadline.wall_cap(),
                    deadline.budget()
                ),
                _ => format!("exceeded its CPU deadline of {:?}", deadline.budget()),
            },
            wasmtime::Trap::StackOverflow => "overflowed its stack".into(),
            wasmtime::Trap::UnreachableCodeReached => {
                "reached `unreachable` (a panic or abort in the plugin)".into()
            }
            other => other.to_string(),
        };
    }
    let root = e.root_cause().to_string();
    let mut line = root.lines().next().unwrap_or("").to_owned();
    if line.contains("unknown import") {
        line.push_str(
            " (plugins have no stdio, filesystem or sockets; without weir-sdk's panic hook a \
             panic writes its message to stderr)",
        );
    }
    host::cut(&mut line, 512);
    line
}

/// Why a call trapped, for the metrics: what `describe` says in words.
fn cause(e: &wasmtime::Error, data: &StoreData) -> Cause {
    // A refused memory growth traps with an error of its own, not a
    // `wasmtime::Trap`: the store's limiter noted it.
    if data.limits.memory_refused {
        return Cause::Memory;
    }
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => match data.deadline.stopped() {
            Some(Stop::Wall) => Cause::WallClock,
            _ => Cause::Deadline,
        },
        _ => Cause::Other,
    }
}

impl Slot {
    /// Makes the slot and `warm` instances (at least one, at most
    /// `max_instances`), each running `init` with the configuration: a
    /// plugin that refuses its configuration fails here. A deploy warms as
    /// many instances as the version it replaces had, so traffic does not
    /// pay for `init` right after a swap.
    pub(crate) fn new(
        compiled: Arc<Compiled>,
        config: String,
        state: Arc<Namespace>,
        fleet: Arc<PluginFleet>,
        body_cap: usize,
        warm: usize,
    ) -> Result<Slot, Failure> {
        let s = &compiled.settings;
        let (failure, isolation, deadline) = (s.failure, s.isolation, s.deadline);
        let breaker = BreakerSettings {
            after: s.breaker_after,
            backoff: s.breaker_backoff,
        };
        let share = ShareSettings {
            percent: s.cpu_share_percent,
            window: s.cpu_window,
        };
        let calls = Arc::new(CallPolicy::new(
            s.calls.clone(),
            state.calls_in_flight.clone(),
        ));
        let fleet = Arc::new(FleetPolicy::new(
            compiled.name.clone(),
            s.fleet,
            s.fleet_fallback,
            fleet,
        ));
        let maker = Arc::new(Maker {
            calls,
            fleet,
            name: compiled.name.clone(),
            config,
            state,
            stats: crate::metrics::global().plugin(&compiled.name),
            deadline,
            max_instances: s.max_instances,
            live: Arc::new(AtomicUsize::new(0)),
            compiled,
        });
        // With request isolation `init` runs for every request, on the
        // request path: it is request work, bounded by the call deadline,
        // and a plugin whose `init` does not fit is refused here.
        let first_budget = match isolation {
            Isolation::Request => deadline,
            Isolation::Pooled => maker.init_budget(),
        };
        let (first, caps) = maker.make(first_budget).map_err(|f| match f.kind {
            FailureKind::Trap(why) if isolation == Isolation::Request => {
                maker.fail(FailureKind::Trap(format!(
                    "{why} in init (with isolation = \"request\", init runs for every \
                     request and must fit in the call deadline)"
                )))
            }
            _ => f,
        })?;
        let breaker_stats = Arc::<BreakerStats>::default();
        let share_stats = Arc::new(ShareStats {
            settings: Some(share),
            ..ShareStats::default()
        });
        let _metrics = maker.stats.register(Arc::new(Gauges {
            live: maker.live.clone(),
            breaker: breaker_stats.clone(),
            share: share_stats.clone(),
        }));
        let slot = Slot {
            name: maker.name.clone(),
            shared: Arc::default(),
            caps,
            failure,
            isolation,
            body_cap,
            local: ThreadLocal::new(),
            breaker,
            breaker_stats,
            share,
            share_stats,
            refusals_logged_ms: AtomicU64::new(0),
            refusals_unlogged: AtomicU64::new(0),
            _metrics,
            maker,
        };
        if slot.isolation == Isolation::Pooled {
            let mut idle = vec![first];
            for _ in 1..warm.min(slot.maker.max_instances) {
                idle.push(slot.maker.make(slot.maker.init_budget())?.0);
            }
            *slot.shared.idle() = idle;
        }
        Ok(slot)
    }

    fn fail(&self, kind: FailureKind) -> Failure {
        self.maker.fail(kind)
    }
}

impl Maker {
    fn fail(&self, kind: FailureKind) -> Failure {
        Failure {
            plugin: self.name.clone(),
            kind,
        }
    }

    /// What making an instance may take off the request path (or when a
    /// pool grows): the call deadline, or [`INIT_DEADLINE`] if longer.
    fn init_budget(&self) -> Duration {
        self.deadline.max(INIT_DEADLINE)
    }

    /// A new instance, initialised within `budget` of CPU. Counts against
    /// `max_instances`.
    fn make(&self, budget: Duration) -> Result<(Box<Instance>, Capabilities), Failure> {
        let reserved = self
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_instances).then_some(n + 1)
            })
            .is_ok();
        if !reserved {
            return Err(self.fail(FailureKind::Busy(self.max_instances)));
        }
        let live = Live(self.live.clone());
        let compiled = &self.compiled;
        let s = &compiled.settings;
        let limits = StoreLimitsBuilder::new()
            .memory_size(s.memory_bytes)
            .instances(32)
            .tables(16)
            .memories(4)
            .table_elements(100_000)
            // A plugin that cannot grow its memory traps at once instead
            // of limping on with a failed allocation.
            .trap_on_grow_failure(true)
            .build();
        let data = StoreData::new(
            self.name.clone(),
            self.state.clone(),
            self.stats.clone(),
            limits,
            compiled.runtime.ticker.deadline(),
            self.calls.clone(),
            self.fleet.clone(),
        );
        let mut store = Store::new(&compiled.runtime.engine, data);
        store.limiter(|d| &mut d.limits);
        deadline::install(&mut store, StoreData::deadline);
        // Instantiating and `init` are counted together as the init phase.
        let started = Instant::now();
        let trap = |e: wasmtime::Error, store: &mut Store<StoreData>| {
            let cause = cause(&e, store.data());
            self.stats
                .trapped(Phase::Init, cause, Some(started.elapsed()));
            let panic = store.data_mut().call.panic.take();
            self.fail(FailureKind::Trap(describe(
                &e,
                &store.data().deadline,
                panic,
            )))
        };
        deadline::arm(&mut store, StoreData::deadline, budget);
        let guest = match compiled.pre.instantiate(&mut store) {
            Ok(g) => g,
            Err(e) => return Err(trap(e, &mut store)),
        };
        deadline::arm(&mut store, StoreData::deadline, budget);
        let caps = guest
            .weir_plugin_guest()
            .call_init(
                &mut store,
                &self.config,
                bindings::exports::weir::plugin::guest::Heads {
                    request: Resource::new_own(REQUEST_REP),
                    request_headers: Resource::new_own(REQUEST_FIELDS_REP),
                    response: Resource::new_own(RESPONSE_REP),
                    response_headers: Resource::new_own(RESPONSE_FIELDS_REP),
                },
            )
            .map_err(|e| trap(e, &mut store))?;
        self.stats
            .ran(Phase::Init, metrics::Outcome::Ok, Some(started.elapsed()));
        let caps = caps.map_err(|msg| {
            self.stats.rejected(Phase::Init);
            let mut msg = msg;
            host::cut(&mut msg, 1024);
            self.fail(FailureKind::Init(msg))
        })?;
        let caps = Capabilities::from(caps);
        let inst = Box::new(Instance {
            store,
            guest,
            _live: live,
        });
        Ok((inst, caps))
    }
}

impl Slot {
    fn checkout(&self) -> Result<Box<Instance>, Failure> {
        if self.isolation == Isolation::Pooled {
            if let Some(inst) = self.local.get().and_then(|l| l.inst.take()) {
                return Ok(inst);
            }
            if let Some(inst) = self.shared.idle().pop() {
                return Ok(inst);
            }
            if self.shared.failures.load(Ordering::Relaxed) > 0 {
                return self.remake_after_failure();
            }
            return self
                .maker
                .make(self.maker.init_budget())
                .map(|(inst, _)| inst);
        }
        self.maker.make(self.maker.deadline).map(|(inst, _)| inst)
    }

    /// No instance is left and the last calls trapped: one is made here
    /// only if its `init` fits in a call's deadline, and otherwise in the
    /// background; until then calls fail at once.
    fn remake_after_failure(&self) -> Result<Box<Instance>, Failure> {
        if self.shared.refilling.load(Ordering::Acquire) {
            return Err(self.fail(FailureKind::Recovering));
        }
        match self.maker.make(self.maker.deadline) {
            Ok((inst, _)) => Ok(inst),
            Err(f) if matches!(f.kind, FailureKind::Busy(_)) => Err(f),
            Err(f) => {
                tracing::debug!(
                    plugin = &*self.name,
                    reason = %f.kind,
                    "init does not fit in a call's deadline: re-making in the background"
                );
                self.refill();
                self.shared.failures.fetch_add(1, Ordering::Relaxed);
                Err(self.fail(FailureKind::Recovering))
            }
        }
    }

    /// Starts the background re-make, unless one is under way.
    fn refill(&self) {
        let shared = &self.shared;
        if shared.refilling.swap(true, Ordering::AcqRel) {
            return;
        }
        let failures = shared.failures.load(Ordering::Relaxed);
        let backoff = match failures {
            0 | 1 => Duration::ZERO,
            n => REFILL_BACKOFF
                .saturating_mul(1 << (n - 2).min(16))
                .min(REFILL_BACKOFF_MAX),
        };
        let (maker, shared) = (self.maker.clone(), self.shared.clone());
        let spawned = std::thread::Builder::new()
            .name("weir-plugin-remake".into())
            .spawn(move || {
                std::thread::sleep(backoff);
                if !shared.retired.load(Ordering::Acquire) {
                    match maker.make(maker.init_budget()) {
                        Ok((inst, _)) if !shared.retired.load(Ordering::Acquire) => {
                            shared.idle().push(inst);
                        }
                        Ok(_) => {}
                        Err(f) => {
                            shared.failures.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(
                                plugin = &*maker.name,
                                reason = %f.kind,
                                "could not replace an instance that trapped"
                            );
                        }
                    }
                }
                shared.refilling.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            self.shared.refilling.store(false, Ordering::Release);
        }
    }

    fn checkin(&self, inst: Box<Instance>) {
        if self.isolation != Isolation::Pooled || self.shared.retired.load(Ordering::Acquire) {
            return;
        }
        let mine = self.local.get_or(Local::default);
        if let Some(other) = mine.inst.replace(Some(inst)) {
            self.shared.idle().push(other);
        }
    }

    /// Instances alive now (idle and serving).
    pub fn live(&self) -> usize {
        self.maker.live.load(Ordering::Acquire)
    }

    /// Whether a request may wait on the plugin's operations: outbound
    /// calls (its `calls` list is not empty) or `strict` fleet operations.
    pub fn may_wait(&self) -> bool {
        self.maker.calls.any() || self.maker.fleet.waits()
    }

    /// The version this slot serves.
    pub fn compiled(&self) -> &Arc<Compiled> {
        &self.maker.compiled
    }

    /// Called when a newer version took this slot's place: idle instances
    /// are dropped now (freeing their pool entries for the new version)
    /// and instances still serving requests are dropped when they return.
    pub(crate) fn retire(&self) {
        self.shared.retired.store(true, Ordering::Release);
        let idle = std::mem::take(&mut *self.shared.idle());
        drop(idle);
    }

    /// Runs one phase call with the pipeline's request (and response)
    /// lent to the store, under the CPU deadline.
    fn call<R>(
        &self,
        phase: Phase,
        io: &mut Io<'_>,
        f: impl FnOnce(&bindings::Plugin, &mut Store<StoreData>) -> wasmtime::Result<R>,
    ) -> Result<R, Failure> {
        self.call_answering(phase, io, f).map(|(v, _)| v)
    }

    /// [`Slot::call`], also handing back the plugin's own answer when the
    /// call wrote one: in the request phases no response is lent, and the
    /// `response` handle names that answer instead.
    fn call_answering<R>(
        &self,
        phase: Phase,
        io: &mut Io<'_>,
        f: impl FnOnce(&bindings::Plugin, &mut Store<StoreData>) -> wasmtime::Result<R>,
    ) -> Result<(R, Option<Answer>), Failure> {
        self.admit()?;
        let mut inst = match io.held.take() {
            Some(i) => i,
            None => self
                .checkout()
                .inspect_err(|_| self.maker.stats.unavailable(phase))?,
        };
        io.calls.open = phase.may_call();
        lend(&mut inst.store, io);
        deadline::arm(&mut inst.store, StoreData::deadline, self.maker.deadline);
        let timer = metrics::call_timer();
        let result = f(&inst.guest, &mut inst.store);
        let took = timer.map(|t| t.elapsed());
        self.charge(inst.store.data().deadline.ticks());
        let panic = inst.store.data_mut().call.panic.take();
        let answer = match io.resp {
            None => take_answer(&mut inst.store.data_mut().call),
            Some(_) => None,
        };
        lend(&mut inst.store, io);
        io.calls.open = false;
        match result {
            Ok(v) => {
                self.maker.stats.ran(phase, metrics::Outcome::Ok, took);
                self.record(Outcome::Other);
                let failures = &self.shared.failures;
                if failures.load(Ordering::Relaxed) != 0 {
                    failures.store(0, Ordering::Relaxed);
                }
                match self.isolation {
                    Isolation::Request => *io.held = Some(inst),
                    Isolation::Pooled => self.checkin(inst),
                }
                Ok((v, answer))
            }
            // A trapped instance may be in any state: drop it.
            Err(e) => {
                let cause = cause(&e, inst.store.data());
                self.maker.stats.trapped(phase, cause, took);
                self.record(match e.downcast_ref::<wasmtime::Trap>() {
                    Some(wasmtime::Trap::Interrupt) => Outcome::Deadline,
                    _ => Outcome::Other,
                });
                self.shared.failures.fetch_add(1, Ordering::Relaxed);
                let deadline = &inst.store.data().deadline;
                Err(self.fail(FailureKind::Trap(describe(&e, deadline, panic))))
            }
        }
    }

    /// Whether this worker's breaker and CPU share let a call start. A
    /// closed breaker and a share with credit (the common case) cost a
    /// thread-local read and two comparisons: no clock, no lock.
    #[inline]
    pub(super) fn admit(&self) -> Result<(), Failure> {
        let Some(local) = self.local.get() else {
            return Ok(());
        };
        let mut breaker = local.breaker.get();
        if !breaker.is_closed() {
            let admit = breaker.admit(Instant::now());
            local.breaker.set(breaker);
            if let Admit::Refuse { retry_after } = admit {
                self.breaker_stats.refused.fetch_add(1, Ordering::Relaxed);
                return Err(self.fail(FailureKind::Breaker {
                    after: self.breaker.after,
                    retry_after,
                }));
            }
        }
        let mut share = local.share.get();
        if let share::Admit::Refuse { retry_after } = share.admit(Instant::now, self.share) {
            local.share.set(share);
            self.share_stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(self.fail(FailureKind::Share {
                percent: self.share.percent,
                window: self.share.window,
                retry_after,
            }));
        }
        local.share.set(share);
        Ok(())
    }

    /// Whether a call refused at once should be logged now: at most one
    /// line per [`REFUSAL_LOG_INTERVAL_MS`] for the slot (all workers).
    /// `Some(n)`: log it, and say `n` more were refused since the last
    /// line; `None`: counted, not logged.
    pub fn refusal_report(&self) -> Option<u64> {
        let now = crate::worker::now_ms().max(1);
        let last = self.refusals_logged_ms.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < REFUSAL_LOG_INTERVAL_MS
            || self
                .refusals_logged_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            self.refusals_unlogged.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.refusals_unlogged.swap(0, Ordering::Relaxed))
    }

    /// Charges this worker's share for a call that saw `ticks` epoch
    /// ticks. Free for a call that saw none (nearly every short call).
    #[inline]
    pub(super) fn charge(&self, ticks: u32) {
        if ticks == 0 || !self.share.is_on() {
            return;
        }
        let used = share::charge_for(ticks);
        let local = self.local.get_or(Local::default);
        let mut share = local.share.get();
        let was_spent = share.is_spent();
        share.charge(used, Instant::now(), self.share);
        local.share.set(share);
        self.share_stats
            .charged(used, !was_spent && share.is_spent());
    }

    /// Tells this worker's breaker how a call that started ended. Free for
    /// a call that answered while its breaker is closed with no streak.
    fn record(&self, outcome: Outcome) {
        if self.breaker.after == 0 {
            return;
        }
        let local = match outcome {
            Outcome::Deadline => self.local.get_or(Local::default),
            Outcome::Other => match self.local.get() {
                Some(local) => local,
                None => return,
            },
        };
        let mut breaker = local.breaker.get();
        if outcome == Outcome::Other && breaker.is_idle() {
            return;
        }
        let change = breaker.record(outcome, Instant::now(), self.breaker);
        local.breaker.set(breaker);
        self.breaker_stats.count(change);
    }

    pub fn on_request(&self, io: &mut Io<'_>) -> Result<Action, Failure> {
        let phase = Phase::Request;
        let (action, answer) =
            self.call_answering(phase, io, |g, s| g.weir_plugin_guest().call_on_request(s))?;
        self.action(phase, io, action, answer)
    }

    /// The request phase again, with the results of the calls it waited
    /// for.
    pub fn on_request_calls(&self, io: &mut Io<'_>, waited: Waited) -> Result<Action, Failure> {
        let phase = Phase::RequestCalls;
        let (results, fleet) = contract_results(waited);
        let (action, answer) = self.call_answering(phase, io, |g, s| {
            g.weir_plugin_guest()
                .call_on_request_calls(s, &results, &fleet)
        })?;
        self.action(phase, io, action, answer)
    }

    fn action(
        &self,
        phase: Phase,
        io: &mut Io<'_>,
        action: bindings::Action,
        answer: Option<Answer>,
    ) -> Result<Action, Failure> {
        match action {
            bindings::Action::Continue => Ok(Action::Continue),
            bindings::Action::RouteTo(name) => Ok(Action::RouteTo(name)),
            bindings::Action::Respond(body) => {
                self.respond(phase, answer, body).map(Action::Respond)
            }
            bindings::Action::Wait => self.wait(phase, io).map(|()| Action::Wait),
        }
    }

    /// A `wait` answer: valid only when the call started calls to wait for.
    fn wait(&self, phase: Phase, io: &mut Io<'_>) -> Result<(), Failure> {
        if !io.calls.any_started() {
            return Err(self.invalid(
                phase,
                "`wait` without a call or fleet operation started in this phase: there is nothing to wait for".into(),
            ));
        }
        Ok(())
    }

    pub fn on_request_body(&self, io: &mut Io<'_>, body: &[u8]) -> Result<BodyAction, Failure> {
        let phase = Phase::RequestBody;
        let (action, answer) = self.call_answering(phase, io, |g, s| {
            g.weir_plugin_guest().call_on_request_body(s, body)
        })?;
        match action {
            bindings::BodyAction::Continue => Ok(BodyAction::Continue),
            bindings::BodyAction::Replace(b) => self.body(phase, b).map(BodyAction::Replace),
            bindings::BodyAction::Respond(b) => {
                self.respond(phase, answer, b).map(BodyAction::Respond)
            }
        }
    }

    pub fn on_response(&self, io: &mut Io<'_>) -> Result<Flow, Failure> {
        let phase = Phase::Response;
        let flow = self.call(phase, io, |g, s| g.weir_plugin_guest().call_on_response(s))?;
        self.flow(phase, io, flow)
    }

    /// The response phase again, with the results of the calls it waited
    /// for.
    pub fn on_response_calls(&self, io: &mut Io<'_>, waited: Waited) -> Result<Flow, Failure> {
        let phase = Phase::ResponseCalls;
        let (results, fleet) = contract_results(waited);
        let flow = self.call(phase, io, |g, s| {
            g.weir_plugin_guest()
                .call_on_response_calls(s, &results, &fleet)
        })?;
        self.flow(phase, io, flow)
    }

    fn flow(
        &self,
        phase: Phase,
        io: &mut Io<'_>,
        flow: bindings::ResponseAction,
    ) -> Result<Flow, Failure> {
        match flow {
            bindings::ResponseAction::Continue => Ok(Flow::Continue),
            bindings::ResponseAction::Wait => self.wait(phase, io).map(|()| Flow::Wait),
        }
    }

    /// The results of the calls the plugin started without waiting, after
    /// the response was sent.
    pub fn on_background_calls(&self, io: &mut Io<'_>, waited: Waited) -> Result<(), Failure> {
        let (results, fleet) = contract_results(waited);
        self.call(Phase::BackgroundCalls, io, |g, s| {
            g.weir_plugin_guest()
                .call_on_background_calls(s, &results, &fleet)
        })
    }

    pub fn on_response_body(
        &self,
        io: &mut Io<'_>,
        body: &[u8],
    ) -> Result<Option<Vec<u8>>, Failure> {
        let phase = Phase::ResponseBody;
        let replaced = self.call(phase, io, |g, s| {
            g.weir_plugin_guest().call_on_response_body(s, body)
        })?;
        replaced.map(|b| self.body(phase, b)).transpose()
    }

    pub fn on_log(&self, io: &mut Io<'_>, status: u16) -> Result<(), Failure> {
        self.call(Phase::Log, io, |g, s| {
            g.weir_plugin_guest().call_on_log(s, status)
        })
    }

    fn body(&self, phase: Phase, b: Vec<u8>) -> Result<Vec<u8>, Failure> {
        if b.len() > self.body_cap {
            return Err(self.invalid(
                phase,
                format!("a body of {} bytes; the cap is {}", b.len(), self.body_cap),
            ));
        }
        Ok(b)
    }

    /// An answer of a call of `phase` that Weir does not use.
    fn invalid(&self, phase: Phase, why: String) -> Failure {
        self.maker.stats.rejected(phase);
        self.fail(FailureKind::Invalid(why))
    }

    /// The metrics of this slot's plugin.
    pub fn stats(&self) -> &PluginStats {
        &self.maker.stats
    }

    /// The plugin's own answer: the head it set through its `response`
    /// handle in this call (status 200 and no headers when it set none)
    /// and the body it returned.
    fn respond(
        &self,
        phase: Phase,
        answer: Option<Answer>,
        body: Vec<u8>,
    ) -> Result<Respond, Failure> {
        let answer = answer.unwrap_or_default();
        let head =
            host::answer_head(answer.head, answer.refused).map_err(|e| self.invalid(phase, e))?;
        let body = self.body(phase, body)?;
        Ok(Respond { head, body })
    }
}

/// Swaps the pipeline's request, response, context and log fields with
/// the store's: called before a call to lend them and after it to take
/// them back.
fn lend(store: &mut Store<StoreData>, io: &mut Io<'_>) {
    let call = &mut store.data_mut().call;
    std::mem::swap(&mut call.req, io.req);
    if let Some(resp) = io.resp.as_deref_mut() {
        std::mem::swap(&mut call.resp, resp);
    }
    std::mem::swap(&mut call.context, io.context);
    std::mem::swap(&mut call.log_fields, io.log_fields);
    std::mem::swap(&mut call.calls, io.calls);
    std::mem::swap(&mut call.id, io.id);
    call.client_ip = io.client_ip;
    // The same certificate for every call of a connection: cloned (an
    // atomic increment) only when it changes.
    let same = match (&call.client_cert, io.client_cert) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    };
    if !same {
        call.client_cert = io.client_cert.cloned();
    }
    call.header_budget = host::limits::MAX_HEADER_BYTES_PER_CALL;
    call.log_budget = host::limits::MAX_LOG_LINES_PER_CALL;
    call.refused = None;
}

/// What a request-phase call left on its `response` handle.
struct Answer {
    head: http::response::Parts,
    refused: Option<String>,
}

impl Default for Answer {
    fn default() -> Answer {
        Answer {
            head: http::Response::new(()).into_parts().0,
            refused: None,
        }
    }
}

/// Takes what a call without a lent response wrote to its `response`
/// handle, leaving an empty head for the next call: nothing carries over
/// between calls or grows across them. Free when the call wrote nothing.
fn take_answer(call: &mut host::Call) -> Option<Answer> {
    if call.resp.status == http::StatusCode::OK
        && call.resp.headers.is_empty()
        && call.refused.is_none()
    {
        return None;
    }
    let fresh = Answer::default();
    Some(Answer {
        head: std::mem::replace(&mut call.resp, fresh.head),
        refused: call.refused.take(),
    })
}

/// A response a plugin built, validated.
#[derive(Debug)]
pub struct Respond {
    pub head: http::response::Parts,
    pub body: Vec<u8>,
}

/// The request phase's answer.
#[derive(Debug)]
pub enum Action {
    Continue,
    Respond(Respond),
    RouteTo(String),
    /// Wait for the calls the phase started (never without one).
    Wait,
}

/// The response phase's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Wait for the calls the phase started (never without one).
    Wait,
}

/// Finished calls in the contract's terms.
fn contract_results(waited: Waited) -> (Vec<bindings::CallResult>, Vec<bindings::FleetResult>) {
    let fleet = waited
        .fleet
        .into_iter()
        .map(|f| bindings::FleetResult {
            id: f.id,
            tag: f.tag,
            outcome: f.outcome.map(host::fleet_answer).map_err(host::fleet_error),
        })
        .collect();
    let calls = waited
        .calls
        .into_iter()
        .map(|f| bindings::CallResult {
            id: f.id,
            tag: f.tag,
            outcome: f
                .outcome
                .map(|a| bindings::CallResponse {
                    status: a.status,
                    headers: a.headers,
                    body: a.body,
                })
                .map_err(host::call_error),
        })
        .collect();
    (calls, fleet)
}

/// The request-body phase's answer.
#[derive(Debug)]
pub enum BodyAction {
    Continue,
    Replace(Vec<u8>),
    Respond(Respond),
}
