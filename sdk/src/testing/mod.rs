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
//! The test host applies the gateway's validation to what the plugin writes
//! (header names and values, reserved headers, paths, statuses, the bounds
//! of [`crate::validate`], state and context sizes): setters return the
//! same errors, and a reply the gateway would refuse fails the test with a
//! panic. It does not model the CPU deadline, the memory cap or the
//! per-call header byte budget.
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
mod headers;

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

pub use self::backend::LogLine;
use self::backend::{Env, RequestState, ResponseState, install};
use self::headers::Headers;
use crate::plugin::instantiate;
use crate::validate;
use crate::{Action, BodyAction, Capabilities, Plugin, Reply, Request, Response};

/// A request to play through a plugin, with the upstream's scripted answer.
///
/// # Example
///
/// ```
/// use weir_sdk::testing::{TestRequest, TestResponse};
///
/// let req = TestRequest::post("/orders?dry_run=1")
///     .header("content-type", "application/json")
///     .body(r#"{"id":1}"#)
///     .client_ip("198.51.100.4")
///     .upstream(TestResponse::new(201));
/// # let _ = req;
/// ```
#[derive(Debug, Clone)]
pub struct TestRequest {
    state: RequestState,
    body: Vec<u8>,
    upstream: TestResponse,
}

impl TestRequest {
    /// A request with this method and target (`/path` or `/path?query`).
    /// Defaults: no headers, empty body, client `127.0.0.1`, id
    /// `test-request`, upstream answering `200` with no headers and no body.
    ///
    /// # Example
    ///
    /// ```
    /// let req = weir_sdk::testing::TestRequest::new("PATCH", "/items/1");
    /// # let _ = req;
    /// ```
    ///
    /// # Panics
    ///
    /// If the target is not a valid path (and query): a bug in the test.
    pub fn new(method: &str, target: &str) -> Self {
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query.to_owned())),
            None => (target, None),
        };
        validate::path(path).unwrap_or_else(|e| panic!("TestRequest: {e}"));
        validate::target(path, query.as_deref()).unwrap_or_else(|e| panic!("TestRequest: {e}"));
        if let Some(query) = &query {
            validate::query(query).unwrap_or_else(|e| panic!("TestRequest: {e}"));
        }
        Self {
            state: RequestState {
                method: method.to_owned(),
                path: path.to_owned(),
                query,
                headers: Headers::default(),
                client_ip: "127.0.0.1".to_owned(),
                id: "test-request".to_owned(),
            },
            body: Vec::new(),
            upstream: TestResponse::new(200),
        }
    }

    /// A `GET` request.
    ///
    /// # Example
    ///
    /// ```
    /// let req = weir_sdk::testing::TestRequest::get("/health");
    /// # let _ = req;
    /// ```
    pub fn get(target: &str) -> Self {
        Self::new("GET", target)
    }

    /// A `POST` request.
    ///
    /// # Example
    ///
    /// ```
    /// let req = weir_sdk::testing::TestRequest::post("/orders").body("{}");
    /// # let _ = req;
    /// ```
    pub fn post(target: &str) -> Self {
        Self::new("POST", target)
    }

    /// Adds a request header.
    ///
    /// # Example
    ///
    /// ```
    /// let req = weir_sdk::testing::TestRequest::get("/").header("authorization", "Bearer t");
    /// # let _ = req;
    /// ```
    ///
    /// # Panics
    ///
    /// If the name or value is not valid HTTP: a bug in the test.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.state
            .headers
            .add_received(name, value)
            .unwrap_or_else(|e| panic!("TestRequest: {e}"));
        self
    }

    /// Sets the request body (given to `on_request_body` when the plugin
    /// asks for it).
    ///
    /// # Example
    ///
    /// ```
    /// let req = weir_sdk::testing::TestRequest::post("/").body(vec![0u8; 4]);
    /// # let _ = req;
    /// ```
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets the client's IP address.
    ///
    /// # Example
    ///
    /// ```
    /// let req = weir_sdk::testing::TestRequest::get("/").client_ip("2001:db8::1");
    /// # let _ = req;
    /// ```
    pub fn client_ip(mut self, ip: &str) -> Self {
        self.state.client_ip = ip.to_owned();
        self
    }

    /// Sets the request id.
    ///
    /// # Example
    ///
    /// ```
    /// let req = weir_sdk::testing::TestRequest::get("/").id("0af7651916cd43dd");
    /// # let _ = req;
    /// ```
    pub fn id(mut self, id: &str) -> Self {
        self.state.id = id.to_owned();
        self
    }

    /// Scripts the upstream's answer to this request.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::testing::{TestRequest, TestResponse};
    ///
    /// let req = TestRequest::get("/").upstream(TestResponse::new(503));
    /// # let _ = req;
    /// ```
    pub fn upstream(mut self, response: TestResponse) -> Self {
        self.upstream = response;
        self
    }
}

/// A scripted upstream response.
///
/// # Example
///
/// ```
/// let resp = weir_sdk::testing::TestResponse::new(200)
///     .header("content-type", "text/plain")
///     .body("hello");
/// # let _ = resp;
/// ```
#[derive(Debug, Clone)]
pub struct TestResponse {
    state: ResponseState,
    body: Vec<u8>,
}

impl TestResponse {
    /// A response with this status, no headers and an empty body.
    ///
    /// # Example
    ///
    /// ```
    /// let resp = weir_sdk::testing::TestResponse::new(404);
    /// # let _ = resp;
    /// ```
    ///
    /// # Panics
    ///
    /// If the status is outside 100..=999: a bug in the test.
    pub fn new(status: u16) -> Self {
        assert!(
            (100..=999).contains(&status),
            "TestResponse: status {status} outside 100..=999"
        );
        Self {
            state: ResponseState {
                status,
                headers: Headers::default(),
            },
            body: Vec::new(),
        }
    }

    /// Adds a response header.
    ///
    /// # Example
    ///
    /// ```
    /// let resp = weir_sdk::testing::TestResponse::new(200).header("etag", "\"1\"");
    /// # let _ = resp;
    /// ```
    ///
    /// # Panics
    ///
    /// If the name or value is not valid HTTP: a bug in the test.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.state
            .headers
            .add_received(name, value)
            .unwrap_or_else(|e| panic!("TestResponse: {e}"));
        self
    }

    /// Sets the response body.
    ///
    /// # Example
    ///
    /// ```
    /// let resp = weir_sdk::testing::TestResponse::new(200).body("ok");
    /// # let _ = resp;
    /// ```
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

/// A phase the test host ran, in [`Exchange::phases`].
///
/// # Example
///
/// ```
/// use weir_sdk::testing::Phase;
/// assert_ne!(Phase::Request, Phase::Log);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// [`Plugin::on_request`].
    Request,
    /// [`Plugin::on_request_body`].
    RequestBody,
    /// [`Plugin::on_response`].
    Response,
    /// [`Plugin::on_response_body`].
    ResponseBody,
    /// [`Plugin::on_log`].
    Log,
}

/// The request as the upstream received it, after the request phases.
///
/// # Example
///
/// ```
/// use weir_sdk::testing::{TestHost, TestRequest};
/// # struct Noop;
/// # impl weir_sdk::Plugin for Noop {
/// #     type Config = serde::de::IgnoredAny;
/// #     fn new(_: Self::Config) -> Result<Self, String> { Ok(Noop) }
/// # }
/// let mut host = TestHost::<Noop>::new(serde_json::json!({})).unwrap();
/// let exchange = host.run(TestRequest::get("/a?b=1").header("x", "y"));
/// let upstream = exchange.upstream_request().unwrap();
/// assert_eq!(upstream.path(), "/a");
/// assert_eq!(upstream.query(), Some("b=1"));
/// assert_eq!(upstream.header("x"), Some("y"));
/// ```
#[derive(Debug, Clone)]
pub struct Forwarded {
    state: RequestState,
    body: Vec<u8>,
}

impl Forwarded {
    /// The method.
    ///
    /// # Example
    ///
    /// See [`Forwarded`].
    pub fn method(&self) -> &str {
        &self.state.method
    }

    /// The path.
    ///
    /// # Example
    ///
    /// See [`Forwarded`].
    pub fn path(&self) -> &str {
        &self.state.path
    }

    /// The query string, if any.
    ///
    /// # Example
    ///
    /// See [`Forwarded`].
    pub fn query(&self) -> Option<&str> {
        self.state.query.as_deref()
    }

    /// The first value of a header.
    ///
    /// # Example
    ///
    /// See [`Forwarded`].
    pub fn header(&self, name: &str) -> Option<&str> {
        first(&self.state.headers, name)
    }

    /// Every value of a header, in order.
    ///
    /// # Example
    ///
    /// See [`Forwarded`].
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.state.headers.get_all(name)
    }

    /// The body.
    ///
    /// # Example
    ///
    /// See [`Forwarded`].
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

fn first<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .pairs()
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The outcome of [`TestHost::run`]: what the client received, what the
/// upstream received, and how the plugin decided.
///
/// # Example
///
/// ```
/// use weir_sdk::testing::{Phase, TestHost, TestRequest};
/// use weir_sdk::{Action, Plugin, Request};
///
/// struct Deny;
/// impl Plugin for Deny {
///     type Config = serde::de::IgnoredAny;
///     fn new(_: Self::Config) -> Result<Self, String> { Ok(Deny) }
///     fn on_request(&mut self, _: &mut Request<'_>) -> Action {
///         Action::respond(403).header("x-why", "no").body("denied").into()
///     }
/// }
///
/// let mut host = TestHost::<Deny>::new(serde_json::json!(null)).unwrap();
/// let exchange = host.run(TestRequest::get("/"));
/// assert!(exchange.responded_by_plugin());
/// assert!(exchange.upstream_request().is_none());
/// assert_eq!(exchange.status(), 403);
/// assert_eq!(exchange.header("x-why"), Some("no"));
/// assert_eq!(exchange.body_text(), "denied");
/// assert_eq!(exchange.phases(), [Phase::Request, Phase::Log]);
/// ```
#[derive(Debug, Clone)]
pub struct Exchange {
    responded_by_plugin: bool,
    routed_to: Option<String>,
    forwarded: Option<Forwarded>,
    status: u16,
    headers: Headers,
    body: Vec<u8>,
    context: BTreeMap<String, String>,
    phases: Vec<Phase>,
}

impl Exchange {
    /// The status the client received.
    ///
    /// # Example
    ///
    /// See [`Exchange`].
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first value of a response header the client received.
    ///
    /// # Example
    ///
    /// See [`Exchange`].
    pub fn header(&self, name: &str) -> Option<&str> {
        first(&self.headers, name)
    }

    /// Every value of a response header the client received.
    ///
    /// # Example
    ///
    /// See [`Exchange`].
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers.get_all(name)
    }

    /// The response body the client received.
    ///
    /// # Example
    ///
    /// See [`Exchange`].
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The response body as text (lossy UTF-8).
    ///
    /// # Example
    ///
    /// See [`Exchange`].
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the plugin answered the request itself (`Respond`).
    ///
    /// # Example
    ///
    /// See [`Exchange`].
    pub fn responded_by_plugin(&self) -> bool {
        self.responded_by_plugin
    }

    /// The upstream the plugin routed to with [`Action::route_to`], if it did.
    ///
    /// # Example
    ///
    /// ```
    /// # use weir_sdk::testing::{TestHost, TestRequest};
    /// # use weir_sdk::{Action, Plugin, Request};
    /// struct Steer;
    /// impl Plugin for Steer {
    ///     type Config = serde::de::IgnoredAny;
    ///     fn new(_: Self::Config) -> Result<Self, String> { Ok(Steer) }
    ///     fn on_request(&mut self, _: &mut Request<'_>) -> Action { Action::route_to("v2") }
    /// }
    /// let mut host = TestHost::<Steer>::new(serde_json::json!({})).unwrap();
    /// assert_eq!(host.run(TestRequest::get("/")).routed_to(), Some("v2"));
    /// ```
    pub fn routed_to(&self) -> Option<&str> {
        self.routed_to.as_deref()
    }

    /// The request as the upstream received it; `None` when the plugin
    /// answered itself.
    ///
    /// # Example
    ///
    /// See [`Forwarded`].
    pub fn upstream_request(&self) -> Option<&Forwarded> {
        self.forwarded.as_ref()
    }

    /// A request-context value as it was when the exchange ended.
    ///
    /// # Example
    ///
    /// ```
    /// # use weir_sdk::testing::{TestHost, TestRequest};
    /// # use weir_sdk::{Action, Plugin, Request};
    /// struct Remember;
    /// impl Plugin for Remember {
    ///     type Config = serde::de::IgnoredAny;
    ///     fn new(_: Self::Config) -> Result<Self, String> { Ok(Remember) }
    ///     fn on_request(&mut self, req: &mut Request<'_>) -> Action {
    ///         weir_sdk::context::set("path", &req.path());
    ///         Action::Continue
    ///     }
    /// }
    /// let mut host = TestHost::<Remember>::new(serde_json::json!({})).unwrap();
    /// assert_eq!(host.run(TestRequest::get("/x")).context("path"), Some("/x"));
    /// ```
    pub fn context(&self, key: &str) -> Option<&str> {
        self.context.get(key).map(String::as_str)
    }

    /// The phases that ran, in order.
    ///
    /// # Example
    ///
    /// See [`Exchange`].
    pub fn phases(&self) -> &[Phase] {
        &self.phases
    }
}

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
    capabilities: Capabilities,
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
        let capabilities = plugin.capabilities();
        Ok(Self {
            plugin,
            capabilities,
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

    /// The capabilities the instance asked for.
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
    /// assert_eq!(host.capabilities(), weir_sdk::Capabilities::NONE);
    /// ```
    pub fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    /// Plays one request through every phase the gateway would run. The
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
    /// outside 100..=999, invalid header), or panics itself (a trap).
    pub fn run(&mut self, request: TestRequest) -> Exchange {
        let _current = install(&self.env);
        self.env.context.borrow_mut().clear();
        let TestRequest {
            state: mut req,
            mut body,
            upstream,
        } = request;
        let mut phases = vec![Phase::Request];
        let mut routed_to = None;
        let mut reply = match self.plugin.on_request(&mut Request::new(&mut req)) {
            Action::Continue => None,
            Action::RouteTo(upstream) => {
                assert!(!upstream.is_empty(), "route_to needs an upstream name");
                routed_to = Some(upstream);
                None
            }
            Action::Respond(reply) => Some(reply),
        };
        if reply.is_none() && self.capabilities.request_body {
            phases.push(Phase::RequestBody);
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
                phases.push(Phase::Response);
                self.plugin
                    .on_response(&Request::new(&mut req), &mut Response::new(&mut resp));
                if self.capabilities.response_body {
                    phases.push(Phase::ResponseBody);
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
        phases.push(Phase::Log);
        self.plugin.on_log(&Request::new(&mut req), status);
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
    pub fn set_state(&self, key: &str, value: &[u8]) {
        self.env.state_set(key, value, None);
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
/// environment: for unit tests of helpers that take a `Request`.
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
    let mut state = request.state;
    f(&mut Request::new(&mut state))
}

/// Runs `f` with a [`Response`] built from `response`: for unit tests of
/// helpers that take a `Response`.
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
    let mut state = response.state;
    f(&mut Response::new(&mut state))
}

#[cfg(test)]
mod tests;
