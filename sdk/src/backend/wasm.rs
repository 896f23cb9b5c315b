//! The Wasm side of the seam: the host services are the generated imports
//! of `weir:plugin/host`, `weir:plugin/calls` and `weir:plugin/fleet`, and
//! a request and a response are the contract's `request` and `response`
//! resources with their `fields`, reached through the handles `init`
//! received (the `export` module keeps them). The results of calls and of
//! fleet operations, which the host hands to the guest's exports, become
//! the SDK's [`CallResult`]s and [`FleetResult`]s here too.

use super::fields::HeaderFields;
use crate::bindings::weir::plugin::{calls, fleet, host, http, types};
use crate::calls::outcome::{CallError, CallId, CallResponse, CallResult};
use crate::calls::request::CallRequest;
use crate::fleet::outcome::{FleetAnswer, FleetError, FleetId, FleetResult, Started};
use crate::types::{Bucket, BucketOutcome, Level};

pub(crate) type RequestRef<'a> = WasmHead<'a, http::Request>;

impl From<http::ClientCert> for crate::types::ClientCert {
    fn from(c: http::ClientCert) -> Self {
        crate::types::ClientCert {
            subject: c.subject,
            dns_names: c.dns_names,
        }
    }
}
pub(crate) type ResponseRef<'a> = WasmHead<'a, http::Response>;

/// A head as the Wasm side reaches it: the contract's `request` or
/// `response` handle (method, path, status, …, reached through `Deref`)
/// and the `fields` handle of its headers. `pub` because the sealed side
/// of [`Head`](crate::Head) names it; no path outside the crate reaches it.
pub struct WasmHead<'a, R> {
    head: &'a R,
    fields: &'a http::Fields,
}

impl<'a, R> WasmHead<'a, R> {
    pub(crate) fn new(head: &'a R, fields: &'a http::Fields) -> Self {
        WasmHead { head, fields }
    }
}

impl<R> std::ops::Deref for WasmHead<'_, R> {
    type Target = R;

    fn deref(&self) -> &R {
        self.head
    }
}

impl<R> HeaderFields for WasmHead<'_, R> {
    #[inline]
    fn header(&self, name: &str) -> Option<String> {
        self.fields.get(name)
    }
    #[inline]
    fn header_all(&self, name: &str) -> Vec<String> {
        self.fields.get_all(name)
    }
    #[inline]
    fn header_names(&self) -> Vec<String> {
        self.fields.names()
    }
    #[inline]
    fn set_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        self.fields.set(name, value)
    }
    #[inline]
    fn add_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        self.fields.add(name, value)
    }
    #[inline]
    fn remove_header(&mut self, name: &str) {
        self.fields.remove(name)
    }
}

pub(crate) fn log(level: Level, message: &str) {
    let level = match level {
        Level::Trace => types::LogLevel::Trace,
        Level::Debug => types::LogLevel::Debug,
        Level::Info => types::LogLevel::Info,
        Level::Warn => types::LogLevel::Warn,
        Level::Error => types::LogLevel::Error,
    };
    host::log(level, message)
}

/// A panic report from the SDK's panic hook: one error line, which the
/// gateway keeps for the call's failure report.
pub(crate) fn panicked(line: &str) {
    host::log(types::LogLevel::Error, line)
}

pub(crate) fn context_get(key: &str) -> Option<String> {
    host::context_get(key)
}

pub(crate) fn context_set(key: &str, value: &str) {
    host::context_set(key, value)
}

pub(crate) fn state_get(key: &str) -> Option<Vec<u8>> {
    host::state_get(key)
}

pub(crate) fn state_set(key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), String> {
    host::state_set(key, value, ttl_ms)
}

pub(crate) fn state_delete(key: &str) -> bool {
    host::state_delete(key)
}

pub(crate) fn state_increment(key: &str, delta: i64, ttl_ms: Option<u64>) -> Result<i64, String> {
    host::state_increment(key, delta, ttl_ms)
}

pub(crate) fn token_bucket_take(
    key: &str,
    capacity: u64,
    refill_per_second: u64,
    cost: u64,
) -> Result<BucketOutcome, String> {
    host::token_bucket_take(key, capacity, refill_per_second, cost).map(BucketOutcome::from)
}

impl From<types::BucketOutcome> for BucketOutcome {
    fn from(outcome: types::BucketOutcome) -> Self {
        BucketOutcome {
            allowed: outcome.allowed,
            remaining: outcome.remaining,
            retry_after: std::time::Duration::from_millis(outcome.retry_after_ms),
        }
    }
}

pub(crate) fn counter_add(name: &str, delta: u64) {
    host::counter_add(name, delta)
}

pub(crate) fn log_field(name: &str, value: &str) -> Result<(), String> {
    host::log_field(name, value)
}

pub(crate) fn now_ms() -> u64 {
    host::now_ms()
}

pub(crate) fn random_bytes(len: u32) -> Vec<u8> {
    host::random_bytes(len)
}

pub(crate) fn call_start(req: CallRequest) -> Result<CallId, CallError> {
    let req = calls::CallRequest {
        upstream: req.upstream,
        method: req.method,
        path: req.path,
        headers: req.headers,
        body: req.body,
        timeout_ms: req.timeout_ms,
        tag: req.tag,
    };
    calls::start(&req).map(CallId).map_err(CallError::from)
}

impl From<calls::CallError> for CallError {
    fn from(e: calls::CallError) -> Self {
        match e {
            calls::CallError::NotAllowed(why) => CallError::NotAllowed(why),
            calls::CallError::Invalid(why) => CallError::Invalid(why),
            calls::CallError::Limit(why) => CallError::Limit(why),
            calls::CallError::Deadline => CallError::Deadline,
            calls::CallError::Timeout => CallError::Timeout,
            calls::CallError::TooLarge(cap) => CallError::TooLarge(cap),
            calls::CallError::Failed(why) => CallError::Failed(why),
        }
    }
}

impl From<calls::CallResult> for CallResult {
    fn from(r: calls::CallResult) -> Self {
        CallResult {
            id: CallId(r.id),
            tag: r.tag,
            outcome: r
                .outcome
                .map(|resp| CallResponse {
                    status: resp.status,
                    headers: resp.headers,
                    body: resp.body,
                })
                .map_err(CallError::from),
        }
    }
}

pub(crate) fn fleet_take(
    key: &str,
    bucket: Bucket,
    cost: u64,
    tag: &str,
) -> Result<Started<FleetAnswer>, FleetError> {
    fleet::take(key, bucket.capacity, bucket.refill_per_second, cost, tag)
        .map(Started::from)
        .map_err(FleetError::from)
}

pub(crate) fn fleet_increment(
    key: &str,
    delta: i64,
    ttl_ms: Option<u64>,
    tag: &str,
) -> Result<Started<FleetAnswer>, FleetError> {
    fleet::increment(key, delta, ttl_ms, tag)
        .map(Started::from)
        .map_err(FleetError::from)
}

impl From<fleet::FleetAnswer> for FleetAnswer {
    fn from(answer: fleet::FleetAnswer) -> Self {
        match answer {
            fleet::FleetAnswer::Bucket(outcome) => FleetAnswer::Bucket(outcome.into()),
            fleet::FleetAnswer::Counter(value) => FleetAnswer::Counter(value),
        }
    }
}

impl From<fleet::Started> for Started<FleetAnswer> {
    fn from(started: fleet::Started) -> Self {
        match started {
            fleet::Started::Done(answer) => Started::Done(answer.into()),
            fleet::Started::Pending(id) => Started::Pending(FleetId(id)),
        }
    }
}

impl From<fleet::FleetError> for FleetError {
    fn from(e: fleet::FleetError) -> Self {
        match e {
            fleet::FleetError::Invalid(why) => FleetError::Invalid(why),
            fleet::FleetError::Limit(why) => FleetError::Limit(why),
            fleet::FleetError::Unavailable(why) => FleetError::Unavailable(why),
        }
    }
}

impl From<fleet::FleetResult> for FleetResult {
    fn from(r: fleet::FleetResult) -> Self {
        FleetResult {
            id: FleetId(r.id),
            tag: r.tag,
            outcome: r.outcome.map(FleetAnswer::from).map_err(FleetError::from),
        }
    }
}
