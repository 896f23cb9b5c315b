//! The native test host: run a plugin's phases with plain `cargo test`, no
//! WebAssembly involved. Only compiled for non-Wasm targets.
//!
//! [`TestHost`] holds one plugin instance and an in-memory host (shared
//! state, request context, logs, metrics counters, a settable clock
//! starting at a fixed instant, deterministic "random" bytes). [`TestHost::run`]
//! plays one request through the whole lifecycle the gateway runs (see the
//! crate docs) against a scripted upstream response and returns an
//! [`Exchange`]: what the upstream received and what the client got.
//!
//! The test host applies the gateway's validation and bounds to what the
//! plugin writes, with the gateway's errors:
//!
//! - header names and values, reserved headers, paths, statuses and the
//!   bounds of [`crate::validate`], among them the header bytes one phase
//!   call may write ([`crate::validate::MAX_HEADER_BYTES_PER_CALL`], over
//!   the request, the response and a reply together) and the fields a head
//!   may hold;
//! - shared state ([`crate::state`]: key and value sizes, the keys and bytes
//!   one plugin may hold, one set of keys for values, counters and buckets),
//!   request context ([`crate::context`]) and metrics counters
//!   ([`crate::metrics`]), whose refusals are logged as in the gateway;
//! - logging ([`crate::log`]: lines per call, message length, one line per
//!   message) and access-log fields ([`crate::log::set_field`]: names,
//!   values and fields per request; refused in `Plugin::new` and in the
//!   log phase), which [`Exchange::log_fields`] reads back;
//! - calls ([`crate::calls`]: the allow-list and the per-plugin settings,
//!   scripted upstreams on the host's clock) and fleet operations
//!   ([`crate::fleet`]: in the mode a test chooses, [`FleetMode`], local by
//!   default, with Redis reachable or not), which [`Exchange::calls`] and
//!   [`Exchange::fleet`] list.
//!
//! Setters return the gateway's errors, and a reply the gateway would
//! refuse fails the test with a panic. Each phase call starts with full
//! budgets, as in the gateway. It does not model the CPU deadline or the
//! memory cap.
//!
//! # Example
//!
//! ```
//! use weir_sdk::testing::{TestHost, TestRequest, TestResponse};
//! use weir_sdk::{Plugin, Request, Response, ResponseAction};
//!
//! struct Server;
//! impl Plugin for Server {
//!     type Config = serde::de::IgnoredAny;
//!     fn new(_: Self::Config) -> Result<Self, String> { Ok(Server) }
//!     fn on_response(&mut self, _: &Request<'_>, resp: &mut Response<'_>) -> ResponseAction {
//!         resp.set_header("server", "weir").unwrap();
//!         ResponseAction::Continue
//!     }
//! }
//!
//! let mut host = TestHost::<Server>::new(serde_json::json!({})).unwrap();
//! let exchange = host.run(
//!     TestRequest::get("/").upstream(TestResponse::new(201).header("server", "nginx")),
//! );
//! assert_eq!(exchange.status(), 201);
//! assert_eq!(exchange.header("server"), Some("weir"));
//! ```

mod calls;
mod exchange;
mod fleet;
mod host;
mod request;
mod run;
mod script;

pub use self::calls::SentCall;
pub use self::exchange::{Exchange, Forwarded, Phase};
pub use self::fleet::FleetOp;
pub use self::host::TestHost;
pub use self::request::{TestRequest, TestResponse};
pub use self::script::{TestCallAnswer, TestCallResponse};
use crate::backend::begin_call;
pub use crate::backend::native::{CallLimits, FleetMode, FleetOpKind, LogLine};
use crate::http::{Request, Response};

/// Runs `f` with a [`Request`] built from `request`, on the current test
/// environment, as one phase call (with the call's budgets full): for unit
/// tests of helpers that take a `Request`.
///
/// # Example
///
/// ```
/// use weir_sdk::testing::{with_request, TestRequest};
///
/// let user = with_request(TestRequest::get("/").header("x-user", "ada"), |req| req.header("x-user"));
/// assert_eq!(user.as_deref(), Some("ada"));
/// ```
pub fn with_request<R>(request: TestRequest, f: impl FnOnce(&mut Request<'_>) -> R) -> R {
    begin_call();
    let mut state = request.state;
    f(&mut Request::new(&mut state))
}

/// Runs `f` with a [`Response`] built from `response`, as one phase call:
/// for unit tests of helpers that take a `Response`.
///
/// # Example
///
/// ```
/// use weir_sdk::testing::{with_response, TestResponse};
///
/// let status = with_response(TestResponse::new(204), |resp| resp.status());
/// assert_eq!(status, 204);
/// ```
pub fn with_response<R>(response: TestResponse, f: impl FnOnce(&mut Response<'_>) -> R) -> R {
    begin_call();
    let mut state = response.state;
    f(&mut Response::new(&mut state))
}

#[cfg(test)]
mod tests;
