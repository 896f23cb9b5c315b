//! The test host's environment for one plugin ([`Env`]: clock, logs,
//! request context and access-log fields, counters, shared state, calls,
//! fleet operations, random generator, and what is left of the current
//! phase call's budgets) and
//! which environment is current on this thread: the one a running [`TestHost`](crate::testing::TestHost)
//! installed, or a per-thread default when none is (doc examples, and unit
//! tests of a plugin's helper functions).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use super::calls::Calls;
use super::fleet::{Fleet, FleetOpKind};
use super::store::Store;
use crate::fleet::outcome::{FleetAnswer, FleetError, Started};
use crate::limits::log;
use crate::types::Level;
use crate::validate;

/// The default clock of a test environment: 2023-11-14T22:13:20Z. Fixed, so
/// tests involving time are deterministic until they move the clock.
const DEFAULT_NOW_MS: u64 = 1_700_000_000_000;

/// One line a plugin logged.
///
/// # Example
///
/// ```
/// use weir_sdk::log::Level;
/// use weir_sdk::testing::TestHost;
///
/// struct Hello;
/// impl weir_sdk::Plugin for Hello {
///     type Config = serde::de::IgnoredAny;
///     fn new(_: Self::Config) -> Result<Self, String> {
///         weir_sdk::log::warn("hello");
///         Ok(Hello)
///     }
/// }
/// let host = TestHost::<Hello>::new(serde_json::json!({})).unwrap();
/// let line = &host.logs()[0];
/// assert_eq!((line.level, line.message.as_str()), (Level::Warn, "hello"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Its severity.
    pub level: Level,
    /// Its text.
    pub message: String,
}

/// Everything the host keeps for one plugin: state, context, logs, clock,
/// calls, fleet operations, and what is left of the current phase call's
/// budgets.
pub(crate) struct Env {
    pub(crate) now_ms: Cell<u64>,
    pub(crate) logs: RefCell<Vec<LogLine>>,
    pub(crate) context: RefCell<BTreeMap<String, String>>,
    /// The current request's access-log fields, in the order first set.
    pub(crate) log_fields: RefCell<Vec<(String, String)>>,
    /// Whether `log_fields` can be set now (see [`LogWindow`]).
    pub(crate) log_window: Cell<LogWindow>,
    pub(crate) counters: RefCell<BTreeMap<String, u64>>,
    pub(crate) calls: RefCell<Calls>,
    pub(crate) fleet: RefCell<Fleet>,
    store: RefCell<Store>,
    rng: Cell<u64>,
    /// Header bytes the current call may still write
    /// ([`validate::MAX_HEADER_BYTES_PER_CALL`] at its start).
    header_budget: Cell<usize>,
    /// Log lines the current call may still write
    /// ([`log::MAX_LINES_PER_CALL`] at its start).
    log_budget: Cell<usize>,
}

impl Env {
    pub(crate) fn new() -> Self {
        Self {
            now_ms: Cell::new(DEFAULT_NOW_MS),
            logs: RefCell::default(),
            context: RefCell::default(),
            log_fields: RefCell::default(),
            // Outside a test host (doc examples, unit tests of helpers)
            // code runs as if in a request phase.
            log_window: Cell::new(LogWindow::Open),
            counters: RefCell::default(),
            calls: RefCell::new(Calls::new()),
            fleet: RefCell::new(Fleet::new()),
            store: RefCell::default(),
            rng: Cell::new(0x9E37_79B9_7F4A_7C15),
            header_budget: Cell::new(validate::MAX_HEADER_BYTES_PER_CALL),
            log_budget: Cell::new(log::MAX_LINES_PER_CALL),
        }
    }

    /// Starts a phase call: its budgets are full again, as the gateway
    /// refills them for every call.
    pub(crate) fn begin_call(&self) {
        self.header_budget.set(validate::MAX_HEADER_BYTES_PER_CALL);
        self.log_budget.set(log::MAX_LINES_PER_CALL);
    }

    /// Whether the current call may write one more log line; the line that
    /// uses the budget up becomes the host's warning that the rest are
    /// dropped, as in the gateway.
    pub(super) fn may_log(&self) -> bool {
        match self.log_budget.get() {
            0 => false,
            1 => {
                self.log_budget.set(0);
                self.logs.borrow_mut().push(LogLine {
                    level: Level::Warn,
                    message: format!(
                        "further log lines of this plugin call are dropped (at most {} per call)",
                        log::MAX_LINES_PER_CALL
                    ),
                });
                false
            }
            n => {
                self.log_budget.set(n - 1);
                true
            }
        }
    }

    /// A warning of the host's about the current call (a dropped context
    /// entry or counter), within the call's log budget.
    pub(super) fn warn(&self, message: String) {
        if self.may_log() {
            self.logs.borrow_mut().push(LogLine {
                level: Level::Warn,
                message,
            });
        }
    }

    /// A plugin's `log-field`, as the gateway applies it: refused outside a
    /// request and in the log phase, then checked, then a new name counted
    /// against [`log::MAX_FIELDS`].
    pub(super) fn set_log_field(&self, name: &str, value: &str) -> Result<(), String> {
        match self.log_window.get() {
            LogWindow::Open => {}
            LogWindow::NoRequest => {
                return Err("log fields belong to a request, and init runs outside one".into());
            }
            LogWindow::Written => {
                return Err("the access-log line is already written: the log phase \
                            cannot set log fields"
                    .into());
            }
        }
        validate::log_field(name, value)?;
        let mut fields = self.log_fields.borrow_mut();
        if let Some(slot) = fields.iter_mut().find(|(n, _)| n == name) {
            slot.1 = value.to_owned();
            return Ok(());
        }
        if fields.len() >= log::MAX_FIELDS {
            return Err(format!(
                "at most {} log fields per request (all plugins of the chain together)",
                log::MAX_FIELDS
            ));
        }
        fields.push((name.to_owned(), value.to_owned()));
        Ok(())
    }

    /// Takes `cost` bytes from the current call's header budget.
    fn spend_header_bytes(&self, cost: usize) -> Result<(), String> {
        let left = self.header_budget.get();
        if cost > left {
            return Err(format!(
                "a plugin may set at most {} header bytes per call",
                validate::MAX_HEADER_BYTES_PER_CALL
            ));
        }
        self.header_budget.set(left - cost);
        Ok(())
    }

    /// A fleet operation, as the gateway answers it: see [`Fleet::start`].
    /// It may wait where calls may start, and takes its id from the
    /// request's numbering of calls.
    pub(super) fn fleet_start(
        &self,
        key: &str,
        tag: &str,
        kind: FleetOpKind,
    ) -> Result<Started<FleetAnswer>, FleetError> {
        let mut calls = self.calls.borrow_mut();
        let open = calls.open;
        let now = self.now_ms.get();
        (self.fleet.borrow_mut()).start(key, tag, kind, now, open, || calls.take_id())
    }

    /// Runs `f` on the plugin's shared state, at the clock's time.
    pub(crate) fn with_store<R>(&self, f: impl FnOnce(&mut Store, u64) -> R) -> R {
        f(&mut self.store.borrow_mut(), self.now_ms.get())
    }

    /// splitmix64: deterministic, so tests that draw random numbers repeat.
    pub(super) fn next_random(&self) -> u64 {
        let mut z = self.rng.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.rng.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn seed_random(&self, seed: u64) {
        self.rng.set(seed);
    }
}

/// Where the test host is relative to the request's access-log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogWindow {
    /// No request: `Plugin::new` (the gateway's `init`).
    NoRequest,
    /// The request, request-body, response and response-body phases.
    Open,
    /// The log phase: the line is written.
    Written,
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Env>>> = const { RefCell::new(None) };
    static DEFAULT: Rc<Env> = Rc::new(Env::new());
}

/// Runs `f` on the current environment.
pub(super) fn with_env<R>(f: impl FnOnce(&Env) -> R) -> R {
    let env = CURRENT
        .with(|current| current.borrow().clone())
        .unwrap_or_else(|| DEFAULT.with(Rc::clone));
    f(&env)
}

/// Adds a panic report to the current environment's logs, if it can be
/// reached without panicking (the hook may run while the logs are
/// borrowed, or while the thread's locals are being torn down).
pub(super) fn record_panic(line: &str) {
    let env = CURRENT
        .try_with(|current| current.try_borrow().ok().and_then(|c| c.clone()))
        .ok()
        .flatten()
        .or_else(|| DEFAULT.try_with(Rc::clone).ok());
    if let Some(mut logs) = env.as_ref().and_then(|e| e.logs.try_borrow_mut().ok()) {
        logs.push(LogLine {
            level: Level::Error,
            message: line.to_owned(),
        });
    }
}

/// Makes an environment the current one until dropped.
pub(crate) struct Installed(Option<Rc<Env>>);

pub(crate) fn install(env: &Rc<Env>) -> Installed {
    Installed(CURRENT.with(|current| current.borrow_mut().replace(Rc::clone(env))))
}

impl Drop for Installed {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|current| *current.borrow_mut() = previous);
    }
}

/// Starts a phase call on the current environment (see [`Env::begin_call`]).
pub(crate) fn begin_call() {
    with_env(Env::begin_call)
}

/// Takes `cost` bytes from the current call's header budget.
pub(super) fn spend_header_bytes(cost: usize) -> Result<(), String> {
    with_env(|env| env.spend_header_bytes(cost))
}
