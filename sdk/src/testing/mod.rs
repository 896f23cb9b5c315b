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
//!   message).
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
//! use weir_sdk::{Plugin, Request, Response};
//!
//! struct Server;
//! impl Plugin for Server {
//!     type Config = serde::de::IgnoredAny;
//!     fn new(_: Self::Config) -> Result<Self, String> { Ok(Server) }
//!     fn on_response(&mut self, _: &Request<'_>, resp: &mut Response<'_>) {
//!         resp.set_header("server", "weir").unwrap();
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

pub(crate) mod backend;
mod exchange;
mod headers;
mod request;

use std::rc::Rc;
use std::time::Duration;

pub use self::backend::LogLine;
use self::backend::{Env, install};
pub use self::exchange::{Exchange, Forwarded, Phase};
use self::headers::Headers;
pub use self::request::{TestRequest, TestResponse};
use crate::plugin::instantiate;
use crate::validate;
use crate::{Action, BodyAction, Phases, Plugin, Reply, Request, Response};

/// One plugin instance running on the in-memory host.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use weir_sdk::testing::{TestHost, TestRequest};
/// # struct Noop;
/// # impl weir_sdk::Plugin for Noop {
/// #     type Config = serde::de::IgnoredAny;
/// #     fn new(_: Self::Config) -> Result<Self, String> { Ok(Noop) }
/// # }
///
/// let mut host = TestHost::<Noop>::new(serde_json::json!({})).unwrap();
/// host.advance(Duration::from_secs(5));
/// assert_eq!(host.now_ms(), 1_700_000_005_000);
/// assert_eq!(host.run(TestRequest::get("/")).status(), 200);
/// ```
pub struct TestHost<P: Plugin> {
    plugin: P,
    phases: Phases,
    env: Rc<Env>,
}

impl<P: Plugin> TestHost<P> {
    /// Creates an instance from a JSON configuration value, exactly as the
    /// gateway does from a route's `config` table; the error is the message
    /// the gateway would refuse the deployment with.
    ///
    /// # Example
    ///
    /// ```
    /// # use weir_sdk::testing::TestHost;
    /// #[derive(serde::Deserialize)]
    /// #[serde(deny_unknown_fields)]
    /// struct Config { limit: u32 }
    /// struct Limited;
    /// impl weir_sdk::Plugin for Limited {
    ///     type Config = Config;
    ///     fn new(c: Config) -> Result<Self, String> {
    ///         if c.limit == 0 { return Err("limit must be positive".into()) }
    ///         Ok(Limited)
    ///     }
    /// }
    /// assert!(TestHost::<Limited>::new(serde_json::json!({ "limit": 1 })).is_ok());
    /// assert!(TestHost::<Limited>::new(serde_json::json!({ "limit": 0 })).is_err());
    /// assert!(TestHost::<Limited>::new(serde_json::json!({ "limmit": 1 })).is_err());
    /// ```
    pub fn new(config: serde_json::Value) -> Result<Self, String> {
        Self::from_json(&config.to_string())
    }

    /// Creates an instance from JSON configuration text (empty text reads as
    /// `{}`, as for a route without a `config` table).
    ///
    /// # Example
    ///
    /// ```
    /// # use weir_sdk::testing::TestHost;
    /// # struct Noop;
    /// # impl weir_sdk::Plugin for Noop {
    /// #     type Config = serde::de::IgnoredAny;
    /// #     fn new(_: Self::Config) -> Result<Self, String> { Ok(Noop) }
    /// # }
    /// assert!(TestHost::<Noop>::from_json("").is_ok());
    /// ```
    pub fn from_json(config: &str) -> Result<Self, String> {
        let env = Rc::new(Env::new());
        let _current = install(&env);
        let plugin = instantiate::<P>(config)?;
        let phases = plugin.phases();
        Ok(Self {
            plugin,
            phases,
            env,
        })
    }

    /// The plugin instance.
    ///
    /// # Example
    ///
    /// ```
    /// # use weir_sdk::testing::TestHost;
    /// # struct Noop;
    /// # impl weir_sdk::Plugin for Noop {
    /// #     type Config = serde::de::IgnoredAny;
    /// #     fn new(_: Self::Config) -> Result<Self, String> { Ok(Noop) }
    /// # }
    /// let host = TestHost::<Noop>::new(serde_json::json!({})).unwrap();
    /// let _noop: &Noop = host.plugin();
    /// ```
    pub fn plugin(&self) -> &P {
        &self.plugin
    }

    /// The phases the plugin asked for ([`Plugin::phases`]):
    /// [`TestHost::run`] calls no other, as the gateway does not.
    ///
    /// # Example
    ///
    /// ```
    /// # use weir_sdk::testing::TestHost;
    /// # struct Noop;
    /// # impl weir_sdk::Plugin for Noop {
    /// #     type Config = serde::de::IgnoredAny;
    /// #     fn new(_: Self::Config) -> Result<Self, String> { Ok(Noop) }
    /// # }
    /// let host = TestHost::<Noop>::new(serde_json::json!({})).unwrap();
    /// assert_eq!(host.phases(), weir_sdk::Phases::DEFAULT);
    /// ```
    pub fn phases(&self) -> Phases {
        self.phases
    }

    /// Plays one request through every phase the gateway would run (those
    /// the plugin asked for, see [`TestHost::phases`]). The
    /// request context starts empty; shared state, logs, counters and the
    /// clock carry over between runs.
    ///
    /// # Example
    ///
    /// See [`Exchange`].
    ///
    /// # Panics
    ///
    /// If the plugin answers with a reply the gateway would refuse (status
    /// outside 200..=999, invalid header), or panics itself (a trap).
    pub fn run(&mut self, request: TestRequest) -> Exchange {
        let _current = install(&self.env);
        self.env.context.borrow_mut().clear();
        let TestRequest {
            state: mut req,
            mut body,
            upstream,
        } = request;
        let mut phases = Vec::new();
        let mut routed_to = None;
        let action = if self.phases.contains(Phases::REQUEST) {
            phases.push(Phase::Request);
            self.env.begin_call();
            self.plugin.on_request(&mut Request::new(&mut req))
        } else {
            Action::Continue
        };
        let mut reply = match action {
            Action::Continue => None,
            Action::RouteTo(upstream) => {
                assert!(!upstream.is_empty(), "route_to needs an upstream name");
                routed_to = Some(upstream);
                None
            }
            Action::Respond(reply) => Some(reply),
        };
        if reply.is_none() && self.phases.contains(Phases::REQUEST_BODY) {
            phases.push(Phase::RequestBody);
            self.env.begin_call();
            match self
                .plugin
                .on_request_body(&mut Request::new(&mut req), body.clone())
            {
                BodyAction::Continue => {}
                BodyAction::Replace(replacement) => {
                    body = replacement;
                    req.headers
                        .set_by_host("content-length", &body.len().to_string());
                }
                BodyAction::Respond(answer) => reply = Some(answer),
            }
        }
        let (status, headers, resp_body, forwarded) = match reply {
            Some(reply) => {
                let (status, headers) = checked_reply(&reply);
                (status, headers, reply.into_parts().2, None)
            }
            None => {
                let forwarded = Forwarded {
                    state: req.clone(),
                    body,
                };
                let TestResponse {
                    state: mut resp,
                    body: mut resp_body,
                } = upstream;
                if self.phases.contains(Phases::RESPONSE) {
                    phases.push(Phase::Response);
                    self.env.begin_call();
                    self.plugin
                        .on_response(&Request::new(&mut req), &mut Response::new(&mut resp));
                }
                if self.phases.contains(Phases::RESPONSE_BODY) {
                    phases.push(Phase::ResponseBody);
                    self.env.begin_call();
                    if let Some(replacement) = self.plugin.on_response_body(
                        &Request::new(&mut req),
                        &mut Response::new(&mut resp),
                        resp_body.clone(),
                    ) {
                        resp_body = replacement;
                        resp.headers
                            .set_by_host("content-length", &resp_body.len().to_string());
                    }
                }
                (resp.status, resp.headers, resp_body, Some(forwarded))
            }
        };
        if self.phases.contains(Phases::LOG) {
            phases.push(Phase::Log);
            self.env.begin_call();
            self.plugin.on_log(&Request::new(&mut req), status);
        }
        Exchange {
            responded_by_plugin: forwarded.is_none(),
            routed_to,
            forwarded,
            status,
            headers,
            body: resp_body,
            context: self.env.context.borrow().clone(),
            phases,
        }
    }

    /// The clock, in milliseconds since the Unix epoch (starts at
    /// 1 700 000 000 000, i.e. 2023-11-14T22:13:20Z).
    ///
    /// # Example
    ///
    /// See [`TestHost`].
    pub fn now_ms(&self) -> u64 {
        self.env.now_ms.get()
    }

    /// Sets the clock.
    ///
    /// # Example
    ///
    /// ```
    /// # use weir_sdk::testing::TestHost;
    /// # struct Noop;
    /// # impl weir_sdk::Plugin for Noop {
    /// #     type Config = serde::de::IgnoredAny;
    /// #     fn new(_: Self::Config) -> Result<Self, String> { Ok(Noop) }
    /// # }
    /// let host = TestHost::<Noop>::new(serde_json::json!({})).unwrap();
    /// host.set_now_ms(42);
    /// assert_eq!(host.now_ms(), 42);
    /// ```
    pub fn set_now_ms(&self, now_ms: u64) {
        self.env.now_ms.set(now_ms);
    }

    /// Moves the clock forward.
    ///
    /// # Example
    ///
    /// See [`TestHost`].
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.env
            .now_ms
            .set(self.env.now_ms.get().saturating_add(by));
    }

    /// Seeds the deterministic generator behind [`crate::random`].
    ///
    /// # Example
    ///
    /// ```
    /// # use weir_sdk::testing::TestHost;
    /// # struct Noop;
    /// # impl weir_sdk::Plugin for Noop {
    /// #     type Config = serde::de::IgnoredAny;
    /// #     fn new(_: Self::Config) -> Result<Self, String> { Ok(Noop) }
    /// # }
    /// let host = TestHost::<Noop>::new(serde_json::json!({})).unwrap();
    /// host.seed_random(7);
    /// ```
    pub fn seed_random(&self, seed: u64) {
        self.env.seed_random(seed);
    }

    /// Every line the plugin logged so far.
    ///
    /// # Example
    ///
    /// ```
    /// # use weir_sdk::testing::TestHost;
    /// struct Chatty;
    /// impl weir_sdk::Plugin for Chatty {
    ///     type Config = serde::de::IgnoredAny;
    ///     fn new(_: Self::Config) -> Result<Self, String> {
    ///         weir_sdk::log::info("ready");
    ///         Ok(Chatty)
    ///     }
    /// }
    /// let host = TestHost::<Chatty>::new(serde_json::json!({})).unwrap();
    /// assert_eq!(host.logs()[0].message, "ready");
    /// ```
    pub fn logs(&self) -> Vec<LogLine> {
        self.env.logs.borrow().clone()
    }

    /// A shared-state value, as the plugin left it.
    ///
    /// # Example
    ///
    /// ```
    /// # use weir_sdk::testing::TestHost;
    /// # struct Noop;
    /// # impl weir_sdk::Plugin for Noop {
    /// #     type Config = serde::de::IgnoredAny;
    /// #     fn new(_: Self::Config) -> Result<Self, String> { Ok(Noop) }
    /// # }
    /// let host = TestHost::<Noop>::new(serde_json::json!({})).unwrap();
    /// host.set_state("k", b"v");
    /// assert_eq!(host.state("k").as_deref(), Some(&b"v"[..]));
    /// ```
    pub fn state(&self, key: &str) -> Option<Vec<u8>> {
        self.env.state_get(key)
    }

    /// Seeds a shared-state value (no expiry).
    ///
    /// # Example
    ///
    /// See [`TestHost::state`].
    ///
    /// # Panics
    ///
    /// If the gateway would refuse the write (key or value over its bound,
    /// or no room left): the test's set-up is wrong.
    pub fn set_state(&self, key: &str, value: &[u8]) {
        (self.env.state_set(key, value, None))
            .unwrap_or_else(|e| panic!("set_state({key:?}): {e}"));
    }

    /// A metrics counter's value (0 if never added to).
    ///
    /// # Example
    ///
    /// ```
    /// # use weir_sdk::testing::TestHost;
    /// # struct Noop;
    /// # impl weir_sdk::Plugin for Noop {
    /// #     type Config = serde::de::IgnoredAny;
    /// #     fn new(_: Self::Config) -> Result<Self, String> { Ok(Noop) }
    /// # }
    /// let host = TestHost::<Noop>::new(serde_json::json!({})).unwrap();
    /// assert_eq!(host.counter("anything"), 0);
    /// ```
    pub fn counter(&self, name: &str) -> u64 {
        self.env.counters.borrow().get(name).copied().unwrap_or(0)
    }
}

/// Checks a plugin's reply as the gateway does; a refused reply is a bug in
/// the plugin under test.
fn checked_reply(reply: &Reply) -> (u16, Headers) {
    validate::status(reply.status()).unwrap_or_else(|e| panic!("the plugin's reply: {e}"));
    assert!(
        reply.headers().len() <= validate::MAX_REPLY_HEADERS,
        "the plugin's reply: more than {} headers",
        validate::MAX_REPLY_HEADERS
    );
    let mut headers = Headers::default();
    for (name, value) in reply.headers() {
        headers
            .add(name, value)
            .unwrap_or_else(|e| panic!("the plugin's reply: {e}"));
    }
    (reply.status(), headers)
}

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
    backend::begin_call();
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
    backend::begin_call();
    let mut state = response.state;
    f(&mut Response::new(&mut state))
}

#[cfg(test)]
mod tests;
