//! The outputs of a test: [`Exchange`] (what the client and the upstream
//! received, how the plugin decided, the calls and fleet operations it
//! made), [`Forwarded`] (the upstream's view of the request) and the
//! [`Phase`]s that ran.

use std::collections::BTreeMap;

use super::calls::SentCall;
use super::fleet::FleetOp;
use crate::backend::{Headers, RequestState};
use crate::phases::Phases;

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
    /// [`Plugin::on_request`](crate::Plugin::on_request).
    Request,
    /// [`Plugin::on_request_calls`](crate::Plugin::on_request_calls).
    RequestCalls,
    /// [`Plugin::on_request_body`](crate::Plugin::on_request_body).
    RequestBody,
    /// [`Plugin::on_response`](crate::Plugin::on_response).
    Response,
    /// [`Plugin::on_response_calls`](crate::Plugin::on_response_calls).
    ResponseCalls,
    /// [`Plugin::on_response_body`](crate::Plugin::on_response_body).
    ResponseBody,
    /// [`Plugin::on_background_calls`](crate::Plugin::on_background_calls).
    BackgroundCalls,
    /// [`Plugin::on_log`](crate::Plugin::on_log).
    Log,
}

impl Phase {
    /// The flag a plugin asks for this phase with; `None` for the phases
    /// that get the results of calls and fleet operations, which run
    /// whenever there are results.
    pub(super) fn flag(self) -> Option<Phases> {
        match self {
            Phase::Request => Some(Phases::REQUEST),
            Phase::RequestBody => Some(Phases::REQUEST_BODY),
            Phase::Response => Some(Phases::RESPONSE),
            Phase::ResponseBody => Some(Phases::RESPONSE_BODY),
            Phase::Log => Some(Phases::LOG),
            Phase::RequestCalls | Phase::ResponseCalls | Phase::BackgroundCalls => None,
        }
    }

    /// Whether calls may start in this phase, and fleet operations wait.
    pub(super) fn starts_calls(self) -> bool {
        matches!(
            self,
            Phase::Request | Phase::RequestCalls | Phase::Response | Phase::ResponseCalls
        )
    }
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
    pub(super) state: RequestState,
    pub(super) body: Vec<u8>,
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

pub(super) fn first<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .pairs()
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The outcome of [`TestHost::run`](super::TestHost::run): what the
/// client received, what the upstream received, how the plugin decided,
/// and the calls and fleet operations it made.
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
    pub(super) responded_by_plugin: bool,
    pub(super) routed_to: Option<String>,
    pub(super) forwarded: Option<Forwarded>,
    pub(super) status: u16,
    pub(super) headers: Headers,
    pub(super) body: Vec<u8>,
    pub(super) context: BTreeMap<String, String>,
    pub(super) log_fields: Vec<(String, String)>,
    pub(super) phases: Vec<Phase>,
    pub(super) calls: Vec<SentCall>,
    pub(super) fleet: Vec<FleetOp>,
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

    /// The upstream the plugin routed to with
    /// [`Action::route_to`](crate::Action::route_to), if it did.
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

    /// The value of an access-log field the plugin set for this request
    /// ([`log::set_field`](crate::log::set_field)), as the gateway would
    /// write it in the request's access-log line.
    ///
    /// # Example
    ///
    /// ```
    /// # use weir_sdk::testing::{TestHost, TestRequest};
    /// # use weir_sdk::{Action, Plugin, Request};
    /// struct Who;
    /// impl Plugin for Who {
    ///     type Config = serde::de::IgnoredAny;
    ///     fn new(_: Self::Config) -> Result<Self, String> { Ok(Who) }
    ///     fn on_request(&mut self, req: &mut Request<'_>) -> Action {
    ///         if let Some(user) = req.header("x-user") {
    ///             weir_sdk::log::set_field("consumer", &user).unwrap();
    ///         }
    ///         Action::Continue
    ///     }
    /// }
    /// let mut host = TestHost::<Who>::new(serde_json::json!({})).unwrap();
    /// let exchange = host.run(TestRequest::get("/").header("x-user", "ada"));
    /// assert_eq!(exchange.log_field("consumer"), Some("ada"));
    /// assert_eq!(host.run(TestRequest::get("/")).log_field("consumer"), None);
    /// ```
    pub fn log_field(&self, name: &str) -> Option<&str> {
        self.log_fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every access-log field the plugin set for this request, as
    /// (name, value) in the order first set.
    ///
    /// # Example
    ///
    /// See [`Exchange::log_field`] and [`log::set_field`](crate::log::set_field).
    pub fn log_fields(&self) -> &[(String, String)] {
        &self.log_fields
    }

    /// The phases that ran, in order.
    ///
    /// # Example
    ///
    /// See [`Exchange`].
    pub fn phases(&self) -> &[Phase] {
        &self.phases
    }

    /// The calls the plugin started while serving the request, in the
    /// order started, each with the result it got (a call refused at
    /// start is not one: the plugin got the error from
    /// [`Call::start`](crate::calls::Call::start)).
    ///
    /// # Example
    ///
    /// See [`SentCall`].
    pub fn calls(&self) -> &[SentCall] {
        &self.calls
    }

    /// The fleet operations the plugin made while serving the request
    /// (from its request phase to its log phase), in the order made, each
    /// with the answer it got, at once or as a result (an operation refused
    /// at start is not one: the plugin got the error from its start).
    ///
    /// # Example
    ///
    /// See [`FleetOp`].
    pub fn fleet(&self) -> &[FleetOp] {
        &self.fleet
    }
}
