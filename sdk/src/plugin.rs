//! The [`Plugin`] trait (one method per phase, each a no-op by default,
//! and [`Plugin::phases`], the phases it asks for), and the one function
//! that turns the JSON configuration text into a plugin instance, shared by
//! the Wasm export and the native test host so both parse configuration
//! identically.

use serde::de::DeserializeOwned;

use crate::action::{Action, BodyAction};
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
/// use weir_sdk::{Action, Plugin, Request, Response};
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
///     fn on_response(&mut self, req: &Request<'_>, resp: &mut Response<'_>) {
///         let _ = resp.set_header("x-path", &req.path());
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
    /// answer the client now (authentication failures, rate limits), or
    /// [`Action::route_to`] to send the request to another named upstream.
    fn on_request(&mut self, req: &mut Request<'_>) -> Action {
        let _ = req;
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
    /// [`context`](crate::context). Does not run when this plugin answered
    /// the request itself.
    fn on_response(&mut self, req: &Request<'_>, resp: &mut Response<'_>) {
        let _ = (req, resp);
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
