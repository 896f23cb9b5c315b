//! The [`Plugin`] trait (one method per phase, each a no-op by default,
//! and [`Plugin::phases`], the phases it asks for), and the one function
//! that turns the JSON configuration text into a plugin instance, shared by
//! the Wasm export and the native test host so both parse configuration
//! identically.

use serde::de::DeserializeOwned;

use crate::action::{Action, BodyAction, ResponseAction};
use crate::calls::CallResult;
use crate::fleet::FleetResult;
use crate::http::{Request, Response};
use crate::phases::Phases;

/// A Weir plugin: a constructor from configuration plus one method per
/// request phase. Every phase has a default that does nothing, so a plugin
/// implements only the phases it needs. See the crate documentation for the
/// order in which the host calls them.
///
/// An instance serves many requests, one at a time; `&mut self` state lives
/// as long as the instance, which the host may discard at any moment (after
/// a trap, on redeploy). State that must outlive an instance or be shared
/// between instances belongs in [`state`](crate::state); state that must
/// live from one phase to a later one of the same request belongs in
/// [`context`](crate::context).
///
/// # Example
///
/// ```
/// use weir_sdk::{Plugin, Request, Response, ResponseAction};
///
/// /// Tags every response with the path it answered.
/// struct EchoPath;
///
/// impl Plugin for EchoPath {
///     type Config = serde::de::IgnoredAny;
///
///     fn new(_: Self::Config) -> Result<Self, String> {
///         Ok(EchoPath)
///     }
///
///     fn on_response(&mut self, req: &Request<'_>, resp: &mut Response<'_>) -> ResponseAction {
///         let _ = resp.set_header("x-path", &req.path());
///         ResponseAction::Continue
///     }
/// }
/// ```
pub trait Plugin: Sized + 'static {
    /// The plugin's configuration: the route's `config` table, given to the
    /// plugin as JSON and deserialized with serde. Use
    /// `#[serde(deny_unknown_fields)]` so a typo is refused at deploy time
    /// rather than silently ignored; use [`serde::de::IgnoredAny`] for a
    /// plugin without configuration.
    type Config: DeserializeOwned;

    /// Builds an instance from its validated configuration, once per
    /// instance. An `Err` rejects the deployment with that message, so check
    /// here everything the configuration alone can get wrong (empty key
    /// lists, bad regexes, impossible numbers) and keep the phases free of
    /// configuration errors.
    fn new(config: Self::Config) -> Result<Self, String>;

    /// The phases the host runs for this instance, asked once after
    /// [`Plugin::new`]; the host calls no other. Defaults to
    /// [`Phases::DEFAULT`]: the request, response and log phases, which is
    /// always correct for a plugin without body phases. Name only the
    /// phases you implement to spare the gateway a call per request for
    /// each of the others, and add [`Phases::REQUEST_BODY`] or
    /// [`Phases::RESPONSE_BODY`] to get a body phase.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::{Action, BodyAction, Phases, Plugin, Request};
    ///
    /// /// Refuses empty uploads.
    /// struct NonEmpty;
    ///
    /// impl Plugin for NonEmpty {
    ///     type Config = serde::de::IgnoredAny;
    ///     fn new(_: Self::Config) -> Result<Self, String> {
    ///         Ok(NonEmpty)
    ///     }
    ///     fn phases(&self) -> Phases {
    ///         Phases::REQUEST_BODY
    ///     }
    ///     fn on_request_body(&mut self, _: &mut Request<'_>, body: Vec<u8>) -> BodyAction {
    ///         if body.is_empty() {
    ///             return Action::respond(400).body("empty body").into();
    ///         }
    ///         BodyAction::Continue
    ///     }
    /// }
    /// ```
    fn phases(&self) -> Phases {
        Phases::DEFAULT
    }

    /// Before the request is forwarded, in chain order (with
    /// [`Phases::REQUEST`]). Read and change the
    /// request (headers, path, query), then answer: [`Action::Continue`] to
    /// go on, a [`Reply`](crate::Reply) made with [`Action::respond`] to
    /// answer the client now (authentication failures, rate limits),
    /// [`Action::route_to`] to send the request to another named upstream,
    /// or [`Action::Wait`] to wait for the [calls](crate::calls) and the
    /// [fleet operations](crate::fleet) that wait this call started
    /// ([`Plugin::on_request_calls`] then decides).
    fn on_request(&mut self, req: &mut Request<'_>) -> Action {
        let _ = req;
        Action::Continue
    }

    /// After [`Plugin::on_request`] (or this phase) answered
    /// [`Action::Wait`], once every call and every fleet operation that
    /// waits ([`Started::Pending`](crate::fleet::Started::Pending)) it
    /// started has finished: the calls' results and the operations'
    /// results, each list in the order they were started. Decides as
    /// `on_request` does, and may start more and answer [`Action::Wait`]
    /// again. Runs whenever the plugin waited, whatever [`Plugin::phases`]
    /// says.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::calls::{Call, CallResult};
    /// use weir_sdk::fleet::FleetResult;
    /// use weir_sdk::{Action, Plugin, Request};
    ///
    /// /// Asks two upstreams at once; the request goes on only if both agree.
    /// struct BothAgree;
    ///
    /// impl Plugin for BothAgree {
    ///     type Config = serde::de::IgnoredAny;
    ///     fn new(_: Self::Config) -> Result<Self, String> {
    ///         Ok(BothAgree)
    ///     }
    ///     fn on_request(&mut self, req: &mut Request<'_>) -> Action {
    ///         let path = format!("/allow{}", req.path());
    ///         for upstream in ["policy-a", "policy-b"] {
    ///             if Call::get(upstream, &path).tag(upstream).start().is_err() {
    ///                 return Action::respond(503).into();
    ///             }
    ///         }
    ///         Action::Wait
    ///     }
    ///     fn on_request_calls(
    ///         &mut self,
    ///         _: &mut Request<'_>,
    ///         results: Vec<CallResult>,
    ///         _: Vec<FleetResult>,
    ///     ) -> Action {
    ///         let agree = |r: &CallResult| r.outcome.as_ref().is_ok_and(|resp| resp.is_success());
    ///         if results.iter().all(agree) {
    ///             Action::Continue
    ///         } else {
    ///             Action::respond(403).into()
    ///         }
    ///     }
    /// }
    ///
    /// use weir_sdk::testing::{TestCallResponse, TestHost, TestRequest};
    /// let mut host = TestHost::<BothAgree>::new(serde_json::json!({})).unwrap();
    /// host.allow_calls(["policy-a", "policy-b"])
    ///     .answer_calls("policy-a", TestCallResponse::new(200))
    ///     .answer_calls("policy-b", TestCallResponse::new(403));
    /// assert_eq!(host.run(TestRequest::get("/orders")).status(), 403);
    /// ```
    fn on_request_calls(
        &mut self,
        req: &mut Request<'_>,
        results: Vec<CallResult>,
        fleet: Vec<FleetResult>,
    ) -> Action {
        let _ = (req, results, fleet);
        Action::Continue
    }

    /// With the whole request body, buffered by the host up to the route's
    /// cap; runs only with [`Phases::REQUEST_BODY`] and only when
    /// [`Plugin::on_request`] continued. Answer [`BodyAction::Continue`] to
    /// forward the body unchanged, [`BodyAction::Replace`] to forward another
    /// (the host fixes `Content-Length`), or a reply to answer the client.
    fn on_request_body(&mut self, req: &mut Request<'_>, body: Vec<u8>) -> BodyAction {
        let _ = (req, body);
        BodyAction::Continue
    }

    /// After the upstream answered and before the response is sent, in
    /// reverse chain order (with [`Phases::RESPONSE`]). Change the status
    /// and headers here; read what the request phase decided from
    /// [`context`](crate::context). Answer [`ResponseAction::Continue`],
    /// or [`ResponseAction::Wait`] to wait for the [calls](crate::calls)
    /// and the [fleet operations](crate::fleet) that wait this call started
    /// ([`Plugin::on_response_calls`] then gets their results). Does not
    /// run when this plugin answered the request itself.
    fn on_response(&mut self, req: &Request<'_>, resp: &mut Response<'_>) -> ResponseAction {
        let _ = (req, resp);
        ResponseAction::Continue
    }

    /// After [`Plugin::on_response`] (or this phase) answered
    /// [`ResponseAction::Wait`], once every call and every fleet operation
    /// that waits it started has finished: their results, each list in the
    /// order they were started. May change the response, start more and
    /// wait again. Runs whenever the plugin waited, whatever
    /// [`Plugin::phases`] says.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::calls::{Call, CallResult};
    /// use weir_sdk::fleet::FleetResult;
    /// use weir_sdk::{Plugin, Request, Response, ResponseAction};
    ///
    /// /// Adds the upstream's owner, looked up per response.
    /// struct Owner;
    ///
    /// impl Plugin for Owner {
    ///     type Config = serde::de::IgnoredAny;
    ///     fn new(_: Self::Config) -> Result<Self, String> {
    ///         Ok(Owner)
    ///     }
    ///     fn on_response(&mut self, req: &Request<'_>, _: &mut Response<'_>) -> ResponseAction {
    ///         match Call::get("owners", format!("/owner{}", req.path())).start() {
    ///             Ok(_) => ResponseAction::Wait,
    ///             Err(_) => ResponseAction::Continue,
    ///         }
    ///     }
    ///     fn on_response_calls(
    ///         &mut self,
    ///         _: &Request<'_>,
    ///         resp: &mut Response<'_>,
    ///         results: Vec<CallResult>,
    ///         _: Vec<FleetResult>,
    ///     ) -> ResponseAction {
    ///         if let Ok(owner) = &results[0].outcome {
    ///             if let Some(team) = owner.text() {
    ///                 let _ = resp.set_header("x-owner", team);
    ///             }
    ///         }
    ///         ResponseAction::Continue
    ///     }
    /// }
    ///
    /// use weir_sdk::testing::{TestCallResponse, TestHost, TestRequest};
    /// let mut host = TestHost::<Owner>::new(serde_json::json!({})).unwrap();
    /// host.allow_calls(["owners"])
    ///     .answer_calls("owners", TestCallResponse::new(200).body("payments"));
    /// assert_eq!(host.run(TestRequest::get("/pay")).header("x-owner"), Some("payments"));
    /// ```
    fn on_response_calls(
        &mut self,
        req: &Request<'_>,
        resp: &mut Response<'_>,
        results: Vec<CallResult>,
        fleet: Vec<FleetResult>,
    ) -> ResponseAction {
        let _ = (req, resp, results, fleet);
        ResponseAction::Continue
    }

    /// With the whole response body, buffered up to the route's cap; runs
    /// only with [`Phases::RESPONSE_BODY`]. Return `Some(body)` to
    /// replace it, `None` to send it unchanged.
    fn on_response_body(
        &mut self,
        req: &Request<'_>,
        resp: &mut Response<'_>,
        body: Vec<u8>,
    ) -> Option<Vec<u8>> {
        let _ = (req, resp, body);
        None
    }

    /// After the response was sent to the client, off the critical path:
    /// the results of the calls and of the fleet operations that wait this
    /// plugin started in the request without waiting for them (from a
    /// phase that answered anything but `Wait`), each list in the order
    /// they were started; before [`Plugin::on_log`]. Runs only when there
    /// are such results, whatever [`Plugin::phases`] says.
    /// Nothing done here can change the response, and the request's
    /// access-log line is written: for state, logs and metrics.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::calls::{Call, CallResult};
    /// use weir_sdk::fleet::FleetResult;
    /// use weir_sdk::{Action, Plugin, Request};
    ///
    /// /// Reports every request to an audit service, without waiting.
    /// struct Audit;
    ///
    /// impl Plugin for Audit {
    ///     type Config = serde::de::IgnoredAny;
    ///     fn new(_: Self::Config) -> Result<Self, String> {
    ///         Ok(Audit)
    ///     }
    ///     fn on_request(&mut self, req: &mut Request<'_>) -> Action {
    ///         let _ = Call::post("audit", "/events").body(req.path()).start();
    ///         Action::Continue
    ///     }
    ///     fn on_background_calls(
    ///         &mut self,
    ///         _: &Request<'_>,
    ///         results: Vec<CallResult>,
    ///         _: Vec<FleetResult>,
    ///     ) {
    ///         if results.iter().any(|r| r.outcome.is_err()) {
    ///             weir_sdk::metrics::counter_add("audit_failed", 1);
    ///         }
    ///     }
    /// }
    ///
    /// use weir_sdk::calls::CallError;
    /// use weir_sdk::testing::{TestHost, TestRequest};
    /// let mut host = TestHost::<Audit>::new(serde_json::json!({})).unwrap();
    /// host.allow_calls(["audit"])
    ///     .answer_calls("audit", CallError::Failed("connection refused".into()));
    /// assert_eq!(host.run(TestRequest::get("/")).status(), 200);
    /// assert_eq!(host.counter("audit_failed"), 1);
    /// ```
    fn on_background_calls(
        &mut self,
        req: &Request<'_>,
        results: Vec<CallResult>,
        fleet: Vec<FleetResult>,
    ) {
        let _ = (req, results, fleet);
    }

    /// After the response was sent to the client, off the critical path,
    /// with the status the client received (with [`Phases::LOG`]). For logs
    /// and metrics; nothing done here can change the response.
    fn on_log(&mut self, req: &Request<'_>, status: u16) {
        let _ = (req, status);
    }
}

/// Parses the JSON configuration text and builds the plugin. Empty text
/// (a route without a `config` table) reads as `{}`.
pub(crate) fn instantiate<P: Plugin>(config: &str) -> Result<P, String> {
    let text = if config.trim().is_empty() {
        "{}"
    } else {
        config
    };
    let config: P::Config =
        serde_json::from_str(text).map_err(|e| format!("invalid plugin configuration: {e}"))?;
    P::new(config)
}
