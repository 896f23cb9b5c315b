//! The calls a plugin starts on the in-memory host ([`Calls`]): where in
//! the request a call (or a fleet operation that waits) may start, the
//! gateway's checks and bounds at start with its errors, the ids the
//! request's calls and fleet operations share, and the calls started and
//! not yet finished.
//! Answering them is the test host's ([`testing`](crate::testing)), which
//! knows the scripted upstreams and plays the phases that get results.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::calls::outcome::{CallError, CallId};
use crate::calls::request::CallRequest;
use crate::limits::calls::{
    DEFAULT_CALL_TIMEOUT, DEFAULT_MAX_CALL_BODY_BYTES, DEFAULT_MAX_CALLS_IN_FLIGHT,
    DEFAULT_MAX_CALLS_PER_REQUEST, MAX_CALL_BODY_BYTES, MAX_CALL_TIMEOUT, MAX_CALLS_IN_FLIGHT,
    MAX_CALLS_PER_REQUEST, MIN_CALL_TIMEOUT,
};

/// The gateway's per-plugin call settings (`[plugin_limits.NAME]`), as
/// the test host applies them. [`CallLimits::default`] is the gateway's
/// defaults.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use weir_sdk::testing::{CallLimits, TestHost};
/// # struct Noop;
/// # impl weir_sdk::Plugin for Noop {
/// #     type Config = serde::de::IgnoredAny;
/// #     fn new(_: Self::Config) -> Result<Self, String> { Ok(Noop) }
/// # }
///
/// let mut host = TestHost::<Noop>::new(serde_json::json!({})).unwrap();
/// host.call_limits(CallLimits {
///     max_per_request: 2,
///     timeout: Duration::from_millis(100),
///     ..CallLimits::default()
/// });
/// assert_eq!(CallLimits::default().max_per_request, weir_sdk::calls::DEFAULT_MAX_CALLS_PER_REQUEST);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// `max_calls_per_request`: the calls the plugin may start while
    /// serving one request, background calls included (1 to
    /// [`MAX_CALLS_PER_REQUEST`]).
    pub max_per_request: usize,
    /// `max_calls_in_flight`: the plugin's calls under way at once (1 to
    /// [`MAX_CALLS_IN_FLIGHT`]). On the test host, which serves one request at a time,
    /// those are the request's calls started and not yet finished on its
    /// clock.
    pub max_in_flight: usize,
    /// `max_call_body_bytes`: the largest body a call sends, and the
    /// largest answer body it receives (1 to [`MAX_CALL_BODY_BYTES`]).
    pub max_body_bytes: usize,
    /// `call_timeout`: the longest a call may take
    /// ([`MIN_CALL_TIMEOUT`] to [`MAX_CALL_TIMEOUT`]).
    pub timeout: Duration,
}

impl Default for CallLimits {
    fn default() -> Self {
        Self {
            max_per_request: DEFAULT_MAX_CALLS_PER_REQUEST,
            max_in_flight: DEFAULT_MAX_CALLS_IN_FLIGHT,
            max_body_bytes: DEFAULT_MAX_CALL_BODY_BYTES,
            timeout: DEFAULT_CALL_TIMEOUT,
        }
    }
}

impl CallLimits {
    /// Whether the gateway's configuration accepts these settings; the
    /// error names the key and its range.
    pub(crate) fn check(&self) -> Result<(), String> {
        let within = |key: &str, value: usize, max: usize| {
            if (1..=max).contains(&value) {
                Ok(())
            } else {
                Err(format!("{key} is 1 to {max}, not {value}"))
            }
        };
        within(
            "max_calls_per_request",
            self.max_per_request,
            MAX_CALLS_PER_REQUEST,
        )?;
        within(
            "max_calls_in_flight",
            self.max_in_flight,
            MAX_CALLS_IN_FLIGHT,
        )?;
        within(
            "max_call_body_bytes",
            self.max_body_bytes,
            MAX_CALL_BODY_BYTES,
        )?;
        if !(MIN_CALL_TIMEOUT..=MAX_CALL_TIMEOUT).contains(&self.timeout) {
            return Err(format!(
                "call_timeout is between {MIN_CALL_TIMEOUT:?} and {MAX_CALL_TIMEOUT:?}, not {:?}",
                self.timeout
            ));
        }
        Ok(())
    }
}

/// A call the plugin started, with when and for how long at most.
#[derive(Debug, Clone)]
pub(crate) struct Started {
    pub(crate) id: CallId,
    pub(crate) req: CallRequest,
    /// The clock when it started, in milliseconds.
    pub(crate) at_ms: u64,
    /// Its time limit: its own, the plugin's `call_timeout` and what was
    /// left of the request's deadline, the smallest.
    pub(crate) limit_ms: u64,
}

/// What the host keeps of one plugin's calls: its settings and, for the
/// current request, the calls started.
pub(crate) struct Calls {
    /// The upstreams the plugin may call (`calls = [...]`).
    pub(crate) allowed: BTreeSet<String>,
    pub(crate) limits: CallLimits,
    /// Whether the phase call under way may start calls (outside a request
    /// played by the test host, code runs as in a request phase).
    pub(crate) open: bool,
    /// The current request's deadline on the clock; `None` outside a
    /// request played by the test host (doc examples, helpers' tests).
    deadline_ms: Option<u64>,
    /// Calls started in the current request.
    started: u32,
    /// The next id in the current request: its calls and its fleet
    /// operations that wait share one numbering, as in the gateway.
    next_id: u32,
    /// When each call sent in the current request finishes, on the
    /// clock: those later than now are in flight.
    sent: Vec<u64>,
    /// Calls started by the current phase call, not yet sent.
    new: Vec<Started>,
}

impl Calls {
    pub(crate) fn new() -> Self {
        Self {
            allowed: BTreeSet::new(),
            limits: CallLimits::default(),
            open: true,
            deadline_ms: None,
            started: 0,
            next_id: 0,
            sent: Vec::new(),
            new: Vec::new(),
        }
    }

    /// A new request, with its deadline: none of its calls started yet.
    /// (The test host serves one request at a time and delivers every call
    /// of one before the next, so none is in flight either.)
    pub(crate) fn begin_request(&mut self, deadline_ms: u64) {
        self.deadline_ms = Some(deadline_ms);
        self.started = 0;
        self.next_id = 0;
        self.sent.clear();
        self.new.clear();
    }

    /// `calls.start` as the gateway answers it: its checks in its order,
    /// with its errors.
    pub(crate) fn start(&mut self, req: CallRequest, now_ms: u64) -> Result<CallId, CallError> {
        if !self.open {
            return Err(CallError::Invalid(
                "calls start only in the request and response phases (and their -calls exports)"
                    .into(),
            ));
        }
        if !self.allowed.contains(&req.upstream) {
            // The gateway goes on with `([plugin_limits.NAME] calls)`,
            // naming the plugin, which the test host does not know.
            let quoted: String = req.upstream.chars().take(128).collect();
            return Err(CallError::NotAllowed(format!(
                "upstream `{}` is not in this plugin's `calls` list",
                quoted.escape_debug()
            )));
        }
        let limits = self.limits;
        if self.started as usize >= limits.max_per_request {
            return Err(CallError::Limit(format!(
                "at most {} calls per request (max_calls_per_request)",
                limits.max_per_request
            )));
        }
        let left_ms = match self.deadline_ms {
            Some(deadline) if now_ms >= deadline => return Err(CallError::Deadline),
            Some(deadline) => deadline - now_ms,
            None => u64::MAX,
        };
        req.check().map_err(CallError::Invalid)?;
        if req.body.len() > limits.max_body_bytes {
            return Err(CallError::Limit(format!(
                "a call's body is at most {} bytes (max_call_body_bytes)",
                limits.max_body_bytes
            )));
        }
        let in_flight = self.new.len() + self.sent.iter().filter(|&&end| end > now_ms).count();
        if in_flight >= limits.max_in_flight {
            return Err(CallError::Limit(format!(
                "the plugin has {} calls in flight (max_calls_in_flight)",
                limits.max_in_flight
            )));
        }
        let configured = u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX);
        let own = req.timeout_ms.map_or(u64::MAX, u64::from);
        let id = CallId(self.take_id());
        self.started += 1;
        self.new.push(Started {
            id,
            req,
            at_ms: now_ms,
            limit_ms: own.min(configured).min(left_ms),
        });
        Ok(id)
    }

    /// The next id of the request, for a call or a fleet operation that
    /// waits.
    pub(crate) fn take_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The calls the phase call that just returned started: the gateway
    /// sends them now.
    pub(crate) fn take_new(&mut self) -> Vec<Started> {
        std::mem::take(&mut self.new)
    }

    /// A call the test host sent is under way until `end_ms` on the clock.
    pub(crate) fn sent(&mut self, end_ms: u64) {
        self.sent.push(end_ms);
    }
}
