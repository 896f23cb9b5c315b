//! The fleet operations a plugin makes on the test host, from the test's
//! side: [`TestHost::fleet_mode`] (the gateway's mode for the plugin),
//! [`TestHost::fleet_unavailable`] and [`TestHost::fleet_times_out`]
//! (Redis out of reach, or not answering in time),
//! [`TestHost::fleet_counter`] to read a fleet counter, and [`FleetOp`],
//! an operation as the plugin made it with the answer it got. When the
//! answers of those that wait are delivered is `run.rs`'s.

use super::host::TestHost;
use crate::backend::{FleetMode, FleetOpKind, Made};
use crate::fleet::{FleetAnswer, FleetError, FleetId, FleetResult};
use crate::plugin::Plugin;

/// A fleet operation the host accepted while serving a request, with the
/// answer the plugin got: at once, or with its result in a `*_calls`
/// phase (an operation refused at start is not one: the plugin got the
/// error from its start).
///
/// # Example
///
/// ```
/// use weir_sdk::fleet::{Bucket, FleetAnswer, Take};
/// use weir_sdk::testing::{FleetMode, FleetOpKind, TestHost, TestRequest};
/// use weir_sdk::{Action, Plugin, Request};
///
/// struct Limit;
/// impl Plugin for Limit {
///     type Config = serde::de::IgnoredAny;
///     fn new(_: Self::Config) -> Result<Self, String> { Ok(Limit) }
///     fn on_request(&mut self, req: &mut Request<'_>) -> Action {
///         let bucket = Bucket { capacity: 10, refill_per_second: 1 };
///         match Take::new(req.client_ip(), bucket, 3).tag("ip").start() {
///             Ok(started) if started.is_pending() => Action::Wait,
///             _ => Action::Continue,
///         }
///     }
/// }
///
/// let mut host = TestHost::<Limit>::new(serde_json::json!({})).unwrap();
/// host.fleet_mode(FleetMode::Strict);
/// let exchange = host.run(TestRequest::get("/").client_ip("192.0.2.7"));
/// let op = &exchange.fleet()[0];
/// assert_eq!((op.key(), op.tag()), ("192.0.2.7", "ip"));
/// assert!(matches!(op.kind(), FleetOpKind::Take { cost: 3, .. }));
/// assert!(op.pending().is_some());
/// assert!(!op.background());
/// let Ok(FleetAnswer::Bucket(outcome)) = op.outcome() else { panic!() };
/// assert_eq!(outcome.remaining, 7);
/// ```
#[derive(Debug, Clone)]
pub struct FleetOp {
    made: Made,
}

impl FleetOp {
    pub(super) fn new(made: Made) -> Self {
        Self { made }
    }

    /// The key.
    ///
    /// # Example
    ///
    /// See [`FleetOp`].
    pub fn key(&self) -> &str {
        &self.made.key
    }

    /// The tag.
    ///
    /// # Example
    ///
    /// See [`FleetOp`].
    pub fn tag(&self) -> &str {
        &self.made.tag
    }

    /// What it does: a take or an increment, with its arguments.
    ///
    /// # Example
    ///
    /// See [`FleetOp`] and [`FleetOpKind`].
    pub fn kind(&self) -> &FleetOpKind {
        &self.made.kind
    }

    /// The id it waited with ([`Started::Pending`](crate::fleet::Started::Pending));
    /// `None` when it was answered at once.
    ///
    /// # Example
    ///
    /// See [`FleetOp`].
    pub fn pending(&self) -> Option<FleetId> {
        self.made.pending
    }

    /// Whether it waited in the background (its phase did not answer
    /// `Wait`; its result went to [`Plugin::on_background_calls`]).
    ///
    /// # Example
    ///
    /// See [`FleetOp`].
    pub fn background(&self) -> bool {
        self.made.background
    }

    /// The answer the plugin got, at once or with the operation's result.
    ///
    /// # Example
    ///
    /// See [`FleetOp`].
    pub fn outcome(&self) -> &Result<FleetAnswer, FleetError> {
        &self.made.outcome
    }
}

/// The result of an operation that waited, as the plugin receives it.
pub(super) fn result(made: &Made) -> FleetResult {
    FleetResult {
        id: made
            .pending
            .expect("only operations that wait have results"),
        tag: made.tag.clone(),
        outcome: made.outcome.clone(),
    }
}

impl<P: Plugin> TestHost<P> {
    /// Sets the mode the gateway runs the plugin's fleet operations in, as
    /// `[plugin_limits.NAME] fleet` does; until then it is the gateway's
    /// default, [`FleetMode::Local`]. The mode changes when the plugin
    /// gets an answer, never the answer: the test host is one gateway of
    /// a fleet whose other gateways take nothing, and every mode decides
    /// against the same fleet buckets and counters (the plugin's own,
    /// apart from its shared state). In [`FleetMode::Strict`] every
    /// operation waits, and its answer comes with the results of the
    /// phase's calls to the `*_calls` phase when the phase answers `Wait`,
    /// or to `on_background_calls` when it does not.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::calls::CallResult;
    /// use weir_sdk::fleet::{self, FleetError, FleetResult, Started};
    /// use weir_sdk::testing::{FleetMode, Phase, TestHost, TestRequest};
    /// use weir_sdk::{Action, Plugin, Request};
    ///
    /// /// Answers with the fleet-wide count of requests.
    /// struct Count;
    /// impl Plugin for Count {
    ///     type Config = serde::de::IgnoredAny;
    ///     fn new(_: Self::Config) -> Result<Self, String> { Ok(Count) }
    ///     fn on_request(&mut self, _: &mut Request<'_>) -> Action {
    ///         match fleet::increment("requests", 1, None) {
    ///             Ok(Started::Done(n)) => Action::respond(200).body(n.to_string()).into(),
    ///             Ok(Started::Pending(_)) => Action::Wait,
    ///             Err(e) => Action::respond(503).body(e.to_string()).into(),
    ///         }
    ///     }
    ///     fn on_request_calls(
    ///         &mut self,
    ///         _: &mut Request<'_>,
    ///         _: Vec<CallResult>,
    ///         fleet: Vec<FleetResult>,
    ///     ) -> Action {
    ///         match fleet[0].counter() {
    ///             Ok(n) => Action::respond(200).body(n.to_string()).into(),
    ///             Err(e) => Action::respond(503).body(e.to_string()).into(),
    ///         }
    ///     }
    /// }
    ///
    /// let mut host = TestHost::<Count>::new(serde_json::json!({})).unwrap();
    /// assert_eq!(host.run(TestRequest::get("/")).body_text(), "1");
    /// host.fleet_mode(FleetMode::Strict);
    /// let exchange = host.run(TestRequest::get("/"));
    /// assert_eq!(exchange.body_text(), "2");
    /// assert_eq!(exchange.phases(), [Phase::Request, Phase::RequestCalls, Phase::Log]);
    /// assert_eq!(host.fleet_counter("requests"), Some(2));
    /// ```
    pub fn fleet_mode(&mut self, mode: FleetMode) -> &mut Self {
        self.env.fleet.borrow_mut().mode = mode;
        self
    }

    /// Puts Redis out of reach (`true`), as the gateway knows it after a
    /// round that failed, or back (`false`), for a plugin whose
    /// `fleet_fallback` is `closed`: in [`FleetMode::Sync`] and
    /// [`FleetMode::Strict`] an operation is refused at once with
    /// [`FleetError::Unavailable`]. In [`FleetMode::Local`] Redis is never
    /// asked, and nothing changes. (With `fleet_fallback = "local"` the
    /// gateway answers from its own values, as [`FleetMode::Local`] does on
    /// one gateway.) See [`TestHost::fleet_times_out`] for an operation
    /// that waited and got no answer.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::fleet::{self, FleetError};
    /// use weir_sdk::testing::{FleetMode, TestHost, TestRequest};
    /// use weir_sdk::{Action, Plugin, Request};
    ///
    /// struct Count;
    /// impl Plugin for Count {
    ///     type Config = serde::de::IgnoredAny;
    ///     fn new(_: Self::Config) -> Result<Self, String> { Ok(Count) }
    ///     fn on_request(&mut self, _: &mut Request<'_>) -> Action {
    ///         match fleet::increment("requests", 1, None) {
    ///             Err(FleetError::Unavailable(_)) => Action::respond(503).into(),
    ///             _ => Action::Continue,
    ///         }
    ///     }
    /// }
    ///
    /// let mut host = TestHost::<Count>::new(serde_json::json!({})).unwrap();
    /// host.fleet_unavailable(true);
    /// assert_eq!(host.run(TestRequest::get("/")).status(), 200);   // local: no Redis
    /// host.fleet_mode(FleetMode::Sync);
    /// assert_eq!(host.run(TestRequest::get("/")).status(), 503);
    /// host.fleet_unavailable(false);
    /// assert_eq!(host.run(TestRequest::get("/")).status(), 200);
    /// ```
    pub fn fleet_unavailable(&mut self, unavailable: bool) -> &mut Self {
        self.env.fleet.borrow_mut().unavailable = unavailable;
        self
    }

    /// Makes Redis leave operations unanswered past the gateway's time
    /// limit (`true`), or answer again (`false`), for a plugin whose
    /// `fleet_fallback` is `closed`: in [`FleetMode::Strict`] an operation
    /// still waits, and its result is [`FleetError::Unavailable`] (the
    /// value is not touched). The other modes do not wait for Redis, and
    /// nothing changes. Nothing sleeps: the result comes at once on the
    /// host's clock.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::calls::CallResult;
    /// use weir_sdk::fleet::{self, FleetError, FleetResult};
    /// use weir_sdk::testing::{FleetMode, TestHost, TestRequest};
    /// use weir_sdk::{Action, Plugin, Request};
    ///
    /// struct Count;
    /// impl Plugin for Count {
    ///     type Config = serde::de::IgnoredAny;
    ///     fn new(_: Self::Config) -> Result<Self, String> { Ok(Count) }
    ///     fn on_request(&mut self, _: &mut Request<'_>) -> Action {
    ///         match fleet::increment("requests", 1, None) {
    ///             Ok(started) if started.is_pending() => Action::Wait,
    ///             _ => Action::Continue,
    ///         }
    ///     }
    ///     fn on_request_calls(
    ///         &mut self,
    ///         _: &mut Request<'_>,
    ///         _: Vec<CallResult>,
    ///         fleet: Vec<FleetResult>,
    ///     ) -> Action {
    ///         match fleet[0].counter() {
    ///             Err(FleetError::Unavailable(_)) => Action::respond(503).into(),
    ///             _ => Action::Continue,
    ///         }
    ///     }
    /// }
    ///
    /// let mut host = TestHost::<Count>::new(serde_json::json!({})).unwrap();
    /// host.fleet_mode(FleetMode::Strict).fleet_times_out(true);
    /// let exchange = host.run(TestRequest::get("/"));
    /// assert_eq!(exchange.status(), 503);
    /// assert!(exchange.fleet()[0].pending().is_some());
    /// assert_eq!(host.fleet_counter("requests"), None);
    /// ```
    pub fn fleet_times_out(&mut self, times_out: bool) -> &mut Self {
        self.env.fleet.borrow_mut().times_out = times_out;
        self
    }

    /// A fleet counter's value, as the plugin left it; `None` if the key
    /// holds no live counter.
    ///
    /// # Example
    ///
    /// See [`TestHost::fleet_mode`].
    pub fn fleet_counter(&self, key: &str) -> Option<i64> {
        let now = self.env.now_ms.get();
        self.env.fleet.borrow_mut().counter(key, now)
    }
}
