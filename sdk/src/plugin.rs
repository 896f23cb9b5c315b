//! The [`Plugin`] trait (one method per phase, each a no-op by default),
//! the [`Phases`] a plugin implements and the [`Capabilities`] it asks for.
//! Also the one function that turns
//! the JSON configuration text into a plugin instance, shared by the Wasm
//! export and the native test host so both parse configuration identically.

use std::ops::BitOr;

use serde::de::DeserializeOwned;

use crate::{Action, BodyAction, Request, Response};

/// The request, response and log phases a plugin implements.
///
/// The host calls a plugin only in the phases it declares: each phase left
/// out saves the gateway a call into WebAssembly on every request. A
/// phase that is implemented but not declared never runs, in the gateway
/// as in [`testing`](crate::testing), so a plugin's own tests catch the
/// omission. The body phases are asked for with [`Capabilities`] instead.
///
/// # Example
///
/// ```
/// use weir_sdk::Phases;
///
/// let both = Phases::REQUEST | Phases::LOG;
/// assert!(both.request && both.log && !both.response);
/// assert_eq!(Phases::default(), Phases::ALL);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phases {
    /// Run [`Plugin::on_request`].
    pub request: bool,
    /// Run [`Plugin::on_response`].
    pub response: bool,
    /// Run [`Plugin::on_log`].
    pub log: bool,
}

impl Phases {
    /// All three: what a plugin gets unless it declares less.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(weir_sdk::Phases::ALL.response);
    /// ```
    pub const ALL: Self = Self {
        request: true,
        response: true,
        log: true,
    };
    /// Only [`Plugin::on_request`].
    ///
    /// # Example
    ///
    /// ```
    /// assert!(!weir_sdk::Phases::REQUEST.log);
    /// ```
    pub const REQUEST: Self = Self {
        request: true,
        response: false,
        log: false,
    };
    /// Only [`Plugin::on_response`].
    ///
    /// # Example
    ///
    /// ```
    /// assert!(!weir_sdk::Phases::RESPONSE.request);
    /// ```
    pub const RESPONSE: Self = Self {
        request: false,
        response: true,
        log: false,
    };
    /// Only [`Plugin::on_log`].
    ///
    /// # Example
    ///
    /// ```
    /// assert!(weir_sdk::Phases::LOG.log);
    /// ```
    pub const LOG: Self = Self {
        request: false,
        response: false,
        log: true,
    };
}

impl Default for Phases {
    fn default() -> Self {
        Self::ALL
    }
}

impl BitOr for Phases {
    type Output = Self;

    fn bitor(self, rhs: Self) -> Self {
        Self {
            request: self.request || rhs.request,
            response: self.response || rhs.response,
            log: self.log || rhs.log,
        }
    }
}

/// Optional phases a plugin asks the host to run.
///
/// Body phases cost the gateway a buffered copy of the body (up to the
/// route's configured cap), so they run only when asked for.
///
/// # Example
///
/// ```
/// use weir_sdk::Capabilities;
///
/// let both = Capabilities::REQUEST_BODY | Capabilities::RESPONSE_BODY;
/// assert!(both.request_body && both.response_body);
/// assert_eq!(Capabilities::default(), Capabilities::NONE);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Run [`Plugin::on_request_body`] with the buffered request body.
    pub request_body: bool,
    /// Run [`Plugin::on_response_body`] with the buffered response body.
    pub response_body: bool,
}

impl Capabilities {
    /// No optional phase.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(!weir_sdk::Capabilities::NONE.request_body);
    /// ```
    pub const NONE: Self = Self {
        request_body: false,
        response_body: false,
    };
    /// Only [`Plugin::on_request_body`].
    ///
    /// # Example
    ///
    /// ```
    /// assert!(weir_sdk::Capabilities::REQUEST_BODY.request_body);
    /// ```
    pub const REQUEST_BODY: Self = Self {
        request_body: true,
        response_body: false,
    };
    /// Only [`Plugin::on_response_body`].
    ///
    /// # Example
    ///
    /// ```
    /// assert!(weir_sdk::Capabilities::RESPONSE_BODY.response_body);
    /// ```
    pub const RESPONSE_BODY: Self = Self {
        request_body: false,
        response_body: true,
    };
}

impl BitOr for Capabilities {
    type Output = Self;

    fn bitor(self, rhs: Self) -> Self {
        Self {
            request_body: self.request_body || rhs.request_body,
            response_body: self.response_body || rhs.response_body,
        }
    }
}

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

    /// Which of [`Plugin::on_request`], [`Plugin::on_response`] and
    /// [`Plugin::on_log`] this instance implements, asked once after
    /// [`Plugin::new`]; the host calls no other. Defaults to all three,
    /// which is always correct; declare only the phases you implement to
    /// spare the gateway a call per request for each of the others.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::{Action, Phases, Plugin, Request};
    ///
    /// struct Deny;
    ///
    /// impl Plugin for Deny {
    ///     type Config = serde::de::IgnoredAny;
    ///     fn new(_: Self::Config) -> Result<Self, String> {
    ///         Ok(Deny)
    ///     }
    ///     fn phases(&self) -> Phases {
    ///         Phases::REQUEST
    ///     }
    ///     fn on_request(&mut self, _: &mut Request<'_>) -> Action {
    ///         Action::respond(403).into()
    ///     }
    /// }
    /// ```
    fn phases(&self) -> Phases {
        Phases::ALL
    }

    /// The optional body phases this instance needs, asked once after
    /// [`Plugin::new`]. Defaults to none.
    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
    }

    /// Before the request is forwarded, in chain order (when
    /// [`Plugin::phases`] includes it). Read and change the
    /// request (headers, path, query), then answer: [`Action::Continue`] to
    /// go on, a [`Reply`](crate::Reply) made with [`Action::respond`] to
    /// answer the client now (authentication failures, rate limits), or
    /// [`Action::route_to`] to send the request to another named upstream.
    fn on_request(&mut self, req: &mut Request<'_>) -> Action {
        let _ = req;
        Action::Continue
    }

    /// With the whole request body, buffered by the host up to the route's
    /// cap; runs only with [`Capabilities::request_body`] and only when
    /// [`Plugin::on_request`] continued. Answer [`BodyAction::Continue`] to
    /// forward the body unchanged, [`BodyAction::Replace`] to forward another
    /// (the host fixes `Content-Length`), or a reply to answer the client.
    fn on_request_body(&mut self, req: &mut Request<'_>, body: Vec<u8>) -> BodyAction {
        let _ = (req, body);
        BodyAction::Continue
    }

    /// After the upstream answered and before the response is sent, in
    /// reverse chain order (when [`Plugin::phases`] includes it). Change
    /// the status and headers here; read what
    /// the request phase decided from [`context`](crate::context). Does not
    /// run when this plugin answered the request itself.
    fn on_response(&mut self, req: &Request<'_>, resp: &mut Response<'_>) {
        let _ = (req, resp);
    }

    /// With the whole response body, buffered up to the route's cap; runs
    /// only with [`Capabilities::response_body`]. Return `Some(body)` to
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
    /// with the status the client received (when [`Plugin::phases`]
    /// includes it). For logs and metrics; nothing
    /// done here can change the response.
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
