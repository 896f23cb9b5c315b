//! Outbound HTTP calls from a plugin to upstreams of the gateway's
//! configuration: the [`Call`] builder that starts one, the [`CallId`] it
//! gets, the [`CallResult`] (a [`CallResponse`] or a [`CallError`]) it
//! ends with, and the gateway's bounds on calls as constants. Sending,
//! balancing, retries and TLS are the gateway's: a call goes through the
//! upstream's endpoints and connection pool as a request the gateway
//! forwards does. The phases that receive results are
//! [`Plugin`](crate::Plugin)'s.
//!
//! # Starting, waiting, results
//!
//! A call starts in the request or response phase (or in
//! [`on_request_calls`](crate::Plugin::on_request_calls) /
//! [`on_response_calls`](crate::Plugin::on_response_calls)); the gateway
//! sends it once the phase has returned. When the phase answers
//! [`Action::Wait`](crate::Action::Wait) (or
//! [`ResponseAction::Wait`](crate::ResponseAction::Wait)), the request
//! waits on the gateway's event loop, holding no instance, until every
//! call that phase started has finished; the matching `*_calls` phase then
//! gets their results, in the order they were started, and decides, or
//! starts more calls and waits again. Calls started by a phase that
//! answers anything else are background calls: they run beside the rest of
//! the request, and their results go to
//! [`on_background_calls`](crate::Plugin::on_background_calls) after the
//! response was sent, before `on_log`. Calls started anywhere else
//! (`Plugin::new`, the body phases, `on_background_calls`, `on_log`) get
//! [`CallError::Invalid`].
//!
//! # Allowed upstreams and bounds
//!
//! A plugin calls only the upstreams its `calls` list names in the
//! gateway's configuration:
//!
//! ```toml
//! [plugin_limits.ext-auth]
//! calls = ["auth"]              # [[upstream]] names
//! max_calls_per_request = 4     # 1 to 64
//! max_calls_in_flight = 256     # over every request, 1 to 65536
//! max_call_body_bytes = "256KiB" # sent and received, 1 byte to 16 MiB
//! call_timeout = "1s"           # 1 ms to 60 s
//! ```
//!
//! [`Call::start`] checks, in this order, and refuses the call with the
//! error named: that it runs in a phase that may start calls,
//! [`CallError::Invalid`]; that the upstream is in the plugin's `calls`
//! list, [`CallError::NotAllowed`]; the plugin's calls in this request
//! within `max_calls_per_request`, [`CallError::Limit`]; the request's
//! deadline not yet passed, [`CallError::Deadline`]; the call's own parts
//! ([`Call::check`]: method, path, tag, headers), [`CallError::Invalid`];
//! its body within `max_call_body_bytes` and the plugin's calls in flight
//! within `max_calls_in_flight`, [`CallError::Limit`]. A started call's time limit is the
//! smallest of its own [`timeout`](Call::timeout), `call_timeout` and what
//! is left of the request's deadline ([`CallError::Timeout`] past it); an
//! answer body over `max_call_body_bytes` is [`CallError::TooLarge`].
//! The defaults and the fixed bounds are the constants of this module;
//! the test host ([`testing`](crate::testing)) applies the same checks,
//! with the same errors.
//!
//! # Example
//!
//! ```
//! use weir_sdk::calls::{Call, CallResult};
//! use weir_sdk::fleet::FleetResult;
//! use weir_sdk::{Action, Plugin, Request};
//!
//! /// Asks the `auth` upstream about every request's token.
//! struct ExtAuth;
//!
//! impl Plugin for ExtAuth {
//!     type Config = serde::de::IgnoredAny;
//!
//!     fn new(_: Self::Config) -> Result<Self, String> {
//!         Ok(ExtAuth)
//!     }
//!
//!     fn on_request(&mut self, req: &mut Request<'_>) -> Action {
//!         let Some(token) = req.header("authorization") else {
//!             return Action::respond(401).into();
//!         };
//!         match Call::get("auth", "/verify").header("authorization", token).start() {
//!             Ok(_) => Action::Wait,
//!             Err(e) => Action::respond(503).body(e.to_string()).into(),
//!         }
//!     }
//!
//!     fn on_request_calls(
//!         &mut self,
//!         req: &mut Request<'_>,
//!         results: Vec<CallResult>,
//!         _: Vec<FleetResult>,
//!     ) -> Action {
//!         match &results[0].outcome {
//!             Ok(resp) if resp.is_success() => {
//!                 let user = resp.header("x-user").unwrap_or("anonymous");
//!                 let _ = req.set_header("x-user", user);
//!                 Action::Continue
//!             }
//!             Ok(_) => Action::respond(403).into(),
//!             Err(_) => Action::respond(503).into(),
//!         }
//!     }
//! }
//!
//! use weir_sdk::testing::{TestCallResponse, TestHost, TestRequest};
//! let mut host = TestHost::<ExtAuth>::new(serde_json::json!({})).unwrap();
//! host.allow_calls(["auth"])
//!     .answer_calls("auth", TestCallResponse::new(200).header("x-user", "ada"));
//! let exchange = host.run(TestRequest::get("/").header("authorization", "Bearer t"));
//! assert_eq!(exchange.upstream_request().unwrap().header("x-user"), Some("ada"));
//! assert_eq!(exchange.calls()[0].header("authorization"), Some("Bearer t"));
//! ```

pub(crate) mod outcome;
pub(crate) mod request;

use std::time::Duration;

use crate::backend;
pub use crate::calls::outcome::{CallError, CallId, CallResponse, CallResult};
use crate::calls::request::CallRequest;
pub use crate::limits::calls::{
    DEFAULT_CALL_TIMEOUT, DEFAULT_MAX_CALL_BODY_BYTES, DEFAULT_MAX_CALLS_IN_FLIGHT,
    DEFAULT_MAX_CALLS_PER_REQUEST, MAX_CALL_BODY_BYTES, MAX_CALL_HEADER_BYTES,
    MAX_CALL_HEADER_FIELDS, MAX_CALL_PATH_BYTES, MAX_CALL_TAG_BYTES, MAX_CALL_TIMEOUT,
    MAX_CALLS_IN_FLIGHT, MAX_CALLS_PER_REQUEST, MIN_CALL_TIMEOUT,
};

/// A call to build and [`start`](Call::start): an upstream of the
/// gateway's configuration, a method, a path (with its query), and
/// optionally headers, a body, a time limit and a tag.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use weir_sdk::calls::Call;
///
/// let call = Call::post("auth", "/v1/check?scope=orders")
///     .header("content-type", "application/json")
///     .body(r#"{"token":"t"}"#)
///     .timeout(Duration::from_millis(200))
///     .tag("check");
/// assert!(call.check().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    req: CallRequest,
}

impl Call {
    /// A call with this method (an HTTP token, e.g. `"PUT"`) to the
    /// upstream named `upstream` (an `[[upstream]] name`) at `path`, which
    /// starts with `/` and may carry a query. No headers, no body, no time
    /// limit of its own and an empty tag.
    ///
    /// # Example
    ///
    /// ```
    /// let call = weir_sdk::calls::Call::new("DELETE", "sessions", "/s/42");
    /// assert!(call.check().is_ok());
    /// ```
    pub fn new(
        method: impl Into<String>,
        upstream: impl Into<String>,
        path: impl Into<String>,
    ) -> Self {
        Self {
            req: CallRequest {
                upstream: upstream.into(),
                method: method.into(),
                path: path.into(),
                headers: Vec::new(),
                body: Vec::new(),
                timeout_ms: None,
                tag: String::new(),
            },
        }
    }

    /// A `GET` call.
    ///
    /// # Example
    ///
    /// ```
    /// let call = weir_sdk::calls::Call::get("jwks", "/.well-known/jwks.json");
    /// # let _ = call;
    /// ```
    pub fn get(upstream: impl Into<String>, path: impl Into<String>) -> Self {
        Self::new("GET", upstream, path)
    }

    /// A `POST` call.
    ///
    /// # Example
    ///
    /// ```
    /// let call = weir_sdk::calls::Call::post("audit", "/events").body("{}");
    /// # let _ = call;
    /// ```
    pub fn post(upstream: impl Into<String>, path: impl Into<String>) -> Self {
        Self::new("POST", upstream, path)
    }

    /// Adds a header field (repeat the call for several values). `host`
    /// may be set (the gateway sends the upstream's first endpoint
    /// otherwise); `content-length` and the hop-by-hop fields are the
    /// gateway's.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::calls::Call;
    ///
    /// assert!(Call::get("auth", "/").header("host", "auth.internal").check().is_ok());
    /// assert!(Call::get("auth", "/").header("connection", "close").check().is_err());
    /// ```
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.req.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body to send (empty: none). The gateway sets
    /// `content-length`.
    ///
    /// # Example
    ///
    /// ```
    /// let call = weir_sdk::calls::Call::post("audit", "/events").body(vec![1, 2, 3]);
    /// # let _ = call;
    /// ```
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.req.body = body.into();
        self
    }

    /// Sets this call's own time limit, in whole milliseconds (rounded
    /// up). The plugin's `call_timeout` and what is left of the request's
    /// deadline still cap it.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let call = weir_sdk::calls::Call::get("jwks", "/keys").timeout(Duration::from_millis(250));
    /// # let _ = call;
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.req.timeout_ms = Some(CallRequest::timeout_ms(timeout));
        self
    }

    /// Sets the tag, given back unchanged with the call's
    /// [`CallResult`]: which call it was and anything the plugin needs to
    /// act on its answer (at most [`MAX_CALL_TAG_BYTES`]). A result reaches
    /// the plugin in a later phase call, possibly on another instance, so
    /// the tag (or [`context`](crate::context)) is where such things go,
    /// not `self`.
    ///
    /// # Example
    ///
    /// ```
    /// let call = weir_sdk::calls::Call::get("jwks", "/keys").tag("kid=k1");
    /// # let _ = call;
    /// ```
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.req.tag = tag.into();
        self
    }

    /// Checks what the gateway checks of the call alone, in its order and
    /// with its errors ([`CallError::Invalid`]): the method is an HTTP
    /// token and not `CONNECT`; the path an origin-form target (starts with
    /// `/`, RFC 3986 characters, `%` only before two hex digits, at most
    /// [`MAX_CALL_PATH_BYTES`]); the tag at most [`MAX_CALL_TAG_BYTES`]; at
    /// most [`MAX_CALL_HEADER_FIELDS`] header fields and
    /// [`MAX_CALL_HEADER_BYTES`] of names and values together, each name
    /// one a plugin may write
    /// ([`validate::header_name`](crate::validate::header_name): not
    /// `content-length` nor a hop-by-hop field; `host` may be set) and each
    /// value without control characters but tab. [`Call::start`] runs the
    /// same checks; use this one in [`Plugin::new`](crate::Plugin::new) to
    /// refuse a configuration whose calls could never start.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::calls::{Call, CallError};
    ///
    /// assert!(Call::get("auth", "/verify?full=1").check().is_ok());
    /// assert_eq!(
    ///     Call::get("auth", "verify").check(),
    ///     Err(CallError::Invalid("a call's path must start with `/`".into()))
    /// );
    /// assert!(Call::new("CONNECT", "auth", "/").check().is_err());
    /// ```
    pub fn check(&self) -> Result<(), CallError> {
        self.req.check().map_err(CallError::Invalid)
    }

    /// Starts the call; the gateway sends it once the phase has returned.
    /// The id comes back with the call's result. An error means the call
    /// was not started (see the [module](self) for the checks, in order).
    ///
    /// Answer [`Action::Wait`](crate::Action::Wait) (or
    /// [`ResponseAction::Wait`](crate::ResponseAction::Wait)) to wait for
    /// the calls this phase started; otherwise they run in the background.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::calls::{Call, CallError};
    ///
    /// // Outside a test host no upstream is allowed:
    /// let refused = Call::get("auth", "/verify").start().unwrap_err();
    /// assert_eq!(
    ///     refused,
    ///     CallError::NotAllowed("upstream `auth` is not in this plugin's `calls` list".into())
    /// );
    /// ```
    pub fn start(self) -> Result<CallId, CallError> {
        backend::call_start(self.req)
    }
}
