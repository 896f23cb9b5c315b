//! The calls a plugin makes on the test host, from the test's side:
//! [`TestHost::allow_calls`] and [`TestHost::call_limits`] (the gateway's
//! settings for the plugin), the `answer_calls*` methods that script the
//! upstreams, sending the calls a phase call started, and [`SentCall`], a
//! call as the plugin made it with the result it got. When the phases run
//! is `run.rs`'s.

use std::time::Duration;

use super::host::TestHost;
use super::script::{TestCallAnswer, answer};
use crate::backend::{CallLimits, Started};
use crate::calls::{CallError, CallId, CallResponse, CallResult};
use crate::plugin::Plugin;

/// A call the plugin started, as it was sent, with the result it got.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use weir_sdk::calls::Call;
/// use weir_sdk::testing::{TestCallResponse, TestHost, TestRequest};
/// use weir_sdk::{Action, Plugin, Request};
///
/// struct Notify;
/// impl Plugin for Notify {
///     type Config = serde::de::IgnoredAny;
///     fn new(_: Self::Config) -> Result<Self, String> { Ok(Notify) }
///     fn on_request(&mut self, req: &mut Request<'_>) -> Action {
///         let call = Call::post("hooks", "/seen?src=gw")
///             .header("content-type", "text/plain")
///             .body(req.path())
///             .timeout(Duration::from_millis(50))
///             .tag("seen");
///         call.start().unwrap();
///         Action::Continue
///     }
/// }
///
/// let mut host = TestHost::<Notify>::new(serde_json::json!({})).unwrap();
/// host.allow_calls(["hooks"]).answer_calls("hooks", TestCallResponse::new(202));
/// let exchange = host.run(TestRequest::get("/orders"));
/// let call = &exchange.calls()[0];
/// assert_eq!((call.method(), call.upstream(), call.path()), ("POST", "hooks", "/seen?src=gw"));
/// assert_eq!(call.header("Content-Type"), Some("text/plain"));
/// assert_eq!(call.body(), b"/orders");
/// assert_eq!(call.tag(), "seen");
/// assert_eq!(call.timeout(), Some(Duration::from_millis(50)));
/// assert_eq!(call.time_limit(), Duration::from_millis(50));
/// assert!(call.background());
/// assert_eq!(call.outcome().as_ref().unwrap().status, 202);
/// ```
#[derive(Debug, Clone)]
pub struct SentCall {
    call: Started,
    background: bool,
    outcome: Result<CallResponse, CallError>,
    /// When it ended, on the clock.
    end_ms: u64,
}

impl SentCall {
    /// The id [`Call::start`](crate::calls::Call::start) returned.
    ///
    /// # Example
    ///
    /// See [`CallId`].
    pub fn id(&self) -> CallId {
        self.call.id
    }

    /// The upstream called.
    ///
    /// # Example
    ///
    /// See [`SentCall`].
    pub fn upstream(&self) -> &str {
        &self.call.req.upstream
    }

    /// The method.
    ///
    /// # Example
    ///
    /// See [`SentCall`].
    pub fn method(&self) -> &str {
        &self.call.req.method
    }

    /// The path, with its query.
    ///
    /// # Example
    ///
    /// See [`SentCall`].
    pub fn path(&self) -> &str {
        &self.call.req.path
    }

    /// The first value of a header the call sent; the name is
    /// case-insensitive.
    ///
    /// # Example
    ///
    /// See [`SentCall`].
    pub fn header(&self, name: &str) -> Option<&str> {
        self.call
            .req
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header field the call sent, as the plugin gave them, in order.
    ///
    /// # Example
    ///
    /// ```
    /// # use weir_sdk::calls::Call;
    /// # use weir_sdk::testing::{TestHost, TestRequest};
    /// # use weir_sdk::{Action, Plugin, Request};
    /// # struct Two;
    /// # impl Plugin for Two {
    /// #     type Config = serde::de::IgnoredAny;
    /// #     fn new(_: Self::Config) -> Result<Self, String> { Ok(Two) }
    /// #     fn on_request(&mut self, _: &mut Request<'_>) -> Action {
    /// #         Call::get("a", "/").header("x-a", "1").header("X-A", "2").start().unwrap();
    /// #         Action::Continue
    /// #     }
    /// # }
    /// # let mut host = TestHost::<Two>::new(serde_json::json!({})).unwrap();
    /// # host.allow_calls(["a"]);
    /// let exchange = host.run(TestRequest::get("/"));
    /// assert_eq!(
    ///     exchange.calls()[0].headers(),
    ///     [("x-a".to_owned(), "1".to_owned()), ("X-A".to_owned(), "2".to_owned())]
    /// );
    /// ```
    pub fn headers(&self) -> &[(String, String)] {
        &self.call.req.headers
    }

    /// The body the call sent.
    ///
    /// # Example
    ///
    /// See [`SentCall`].
    pub fn body(&self) -> &[u8] {
        &self.call.req.body
    }

    /// The call's tag.
    ///
    /// # Example
    ///
    /// See [`SentCall`].
    pub fn tag(&self) -> &str {
        &self.call.req.tag
    }

    /// The time limit the call asked for
    /// ([`Call::timeout`](crate::calls::Call::timeout)), in whole
    /// milliseconds.
    ///
    /// # Example
    ///
    /// See [`SentCall`].
    pub fn timeout(&self) -> Option<Duration> {
        self.call
            .req
            .timeout_ms
            .map(|ms| Duration::from_millis(ms.into()))
    }

    /// The time limit the call ran under: the smallest of its own, the
    /// plugin's `call_timeout` and what was left of the request's deadline
    /// when it started.
    ///
    /// # Example
    ///
    /// See [`SentCall`].
    pub fn time_limit(&self) -> Duration {
        Duration::from_millis(self.call.limit_ms)
    }

    /// Whether it was a background call (its phase did not wait for it;
    /// its result went to
    /// [`Plugin::on_background_calls`]).
    ///
    /// # Example
    ///
    /// See [`SentCall`].
    pub fn background(&self) -> bool {
        self.background
    }

    /// The result the plugin got.
    ///
    /// # Example
    ///
    /// See [`SentCall`].
    pub fn outcome(&self) -> &Result<CallResponse, CallError> {
        &self.outcome
    }

    /// The result as the plugin receives it.
    pub(super) fn result(&self) -> CallResult {
        CallResult {
            id: self.call.id,
            tag: self.call.req.tag.clone(),
            outcome: self.outcome.clone(),
        }
    }
}

impl<P: Plugin> TestHost<P> {
    /// Sets the upstreams the plugin may call, as the gateway's
    /// `[plugin_limits.NAME] calls = [...]` does (replacing the list). A
    /// call to any other upstream is refused with
    /// [`CallError::NotAllowed`], with the gateway's message. None is
    /// allowed until this is called.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::calls::{Call, CallError};
    /// use weir_sdk::testing::{TestHost, TestRequest};
    /// use weir_sdk::{Action, Plugin, Request};
    ///
    /// struct CallsBilling;
    /// impl Plugin for CallsBilling {
    ///     type Config = serde::de::IgnoredAny;
    ///     fn new(_: Self::Config) -> Result<Self, String> { Ok(CallsBilling) }
    ///     fn on_request(&mut self, _: &mut Request<'_>) -> Action {
    ///         match Call::get("billing", "/").start() {
    ///             Err(CallError::NotAllowed(why)) => Action::respond(500).body(why).into(),
    ///             _ => Action::Continue,
    ///         }
    ///     }
    /// }
    ///
    /// let mut host = TestHost::<CallsBilling>::new(serde_json::json!({})).unwrap();
    /// host.allow_calls(["auth", "jwks"]);
    /// let exchange = host.run(TestRequest::get("/"));
    /// assert_eq!(exchange.body_text(), "upstream `billing` is not in this plugin's `calls` list");
    /// ```
    pub fn allow_calls<S: Into<String>>(
        &mut self,
        upstreams: impl IntoIterator<Item = S>,
    ) -> &mut Self {
        self.env.calls.borrow_mut().allowed = upstreams.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the plugin's call settings, as `[plugin_limits.NAME]`'s
    /// `max_calls_per_request`, `max_calls_in_flight`,
    /// `max_call_body_bytes` and `call_timeout` do; until then they are
    /// the gateway's defaults ([`CallLimits::default`]).
    ///
    /// # Example
    ///
    /// See [`CallLimits`].
    ///
    /// # Panics
    ///
    /// If the gateway's configuration would refuse a setting (out of its
    /// range): the test's set-up is wrong.
    pub fn call_limits(&mut self, limits: CallLimits) -> &mut Self {
        limits
            .check()
            .unwrap_or_else(|e| panic!("call_limits: {e}"));
        self.env.calls.borrow_mut().limits = limits;
        self
    }

    /// Scripts `upstream` to give every call the same answer: a
    /// [`TestCallResponse`](super::TestCallResponse), or a [`CallError`]
    /// (both convert). Replaces what was scripted for it; scripts last over
    /// runs. A call to an allowed upstream with no script fails with
    /// ``CallError::Failed("no answer scripted for upstream `NAME`")``.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_sdk::calls::{Call, CallError, CallResult};
    /// use weir_sdk::fleet::FleetResult;
    /// use weir_sdk::testing::{TestCallResponse, TestHost, TestRequest};
    /// use weir_sdk::{Action, Plugin, Request};
    ///
    /// /// Answers with the outcome of a call to `auth`.
    /// struct Ask;
    /// impl Plugin for Ask {
    ///     type Config = serde::de::IgnoredAny;
    ///     fn new(_: Self::Config) -> Result<Self, String> { Ok(Ask) }
    ///     fn on_request(&mut self, _: &mut Request<'_>) -> Action {
    ///         Call::get("auth", "/").start().unwrap();
    ///         Action::Wait
    ///     }
    ///     fn on_request_calls(
    ///         &mut self,
    ///         _: &mut Request<'_>,
    ///         r: Vec<CallResult>,
    ///         _: Vec<FleetResult>,
    ///     ) -> Action {
    ///         let text = match &r[0].outcome {
    ///             Ok(resp) => resp.status.to_string(),
    ///             Err(e) => e.to_string(),
    ///         };
    ///         Action::respond(200).body(text).into()
    ///     }
    /// }
    ///
    /// let mut host = TestHost::<Ask>::new(serde_json::json!({})).unwrap();
    /// host.allow_calls(["auth"]);
    /// host.answer_calls("auth", TestCallResponse::new(204));
    /// assert_eq!(host.run(TestRequest::get("/")).body_text(), "204");
    ///
    /// // Slower than the gateway's default `call_timeout` (1 s): a timeout,
    /// // and the request waited the whole second.
    /// host.answer_calls("auth", TestCallResponse::new(204).delay(Duration::from_secs(2)));
    /// let before = host.now_ms();
    /// let exchange = host.run(TestRequest::get("/"));
    /// assert_eq!(exchange.calls()[0].outcome(), &Err(CallError::Timeout));
    /// assert_eq!(host.now_ms() - before, 1_000);
    ///
    /// host.answer_calls("auth", CallError::Failed("connection refused".into()));
    /// assert_eq!(host.run(TestRequest::get("/")).body_text(), "the call failed: connection refused");
    /// ```
    pub fn answer_calls(&mut self, upstream: &str, answer: impl Into<TestCallAnswer>) -> &mut Self {
        self.scripts.always(upstream, answer.into());
        self
    }

    /// Scripts `upstream` to give each call the next of `answers`, in
    /// order, over runs; once they are used up, a call fails with
    /// [`CallError::Failed`] saying so. Replaces what was scripted for it.
    /// Answers of both kinds mix as [`TestCallAnswer`]s:
    /// `[TestCallAnswer::from(TestCallResponse::new(200)), CallError::Timeout.into()]`.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::calls::{Call, CallError};
    /// use weir_sdk::testing::{TestCallResponse, TestHost, TestRequest};
    /// use weir_sdk::{Action, Plugin, Request};
    ///
    /// struct Fire;
    /// impl Plugin for Fire {
    ///     type Config = serde::de::IgnoredAny;
    ///     fn new(_: Self::Config) -> Result<Self, String> { Ok(Fire) }
    ///     fn on_request(&mut self, _: &mut Request<'_>) -> Action {
    ///         Call::get("jwks", "/keys").start().unwrap();
    ///         Action::Continue
    ///     }
    /// }
    ///
    /// let mut host = TestHost::<Fire>::new(serde_json::json!({})).unwrap();
    /// host.allow_calls(["jwks"])
    ///     .answer_calls_in_order("jwks", [TestCallResponse::new(503), TestCallResponse::new(200)]);
    /// let status = |e: &weir_sdk::testing::Exchange| e.calls()[0].outcome().as_ref().map(|r| r.status).ok();
    /// assert_eq!(status(&host.run(TestRequest::get("/"))), Some(503));
    /// assert_eq!(status(&host.run(TestRequest::get("/"))), Some(200));
    /// assert_eq!(
    ///     host.run(TestRequest::get("/")).calls()[0].outcome(),
    ///     &Err(CallError::Failed("the 2 answers scripted for upstream `jwks` are used up".into()))
    /// );
    /// ```
    pub fn answer_calls_in_order(
        &mut self,
        upstream: &str,
        answers: impl IntoIterator<Item = impl Into<TestCallAnswer>>,
    ) -> &mut Self {
        self.scripts
            .in_order(upstream, answers.into_iter().map(Into::into).collect());
        self
    }

    /// Sends the calls a phase call started, as the gateway does when the
    /// phase returns: each gets its upstream's next answer, within its
    /// time limit and the body cap, and is in flight until it ends on the
    /// clock.
    pub(super) fn send(&mut self, started: Vec<Started>, background: bool) -> Vec<SentCall> {
        let cap = self.env.calls.borrow().limits.max_body_bytes;
        started
            .into_iter()
            .map(|call| {
                let (outcome, took_ms) = answer(self.scripts.next(&call.req.upstream), &call, cap);
                let end_ms = call.at_ms.saturating_add(took_ms);
                self.env.calls.borrow_mut().sent(end_ms);
                SentCall {
                    call,
                    background,
                    outcome,
                    end_ms,
                }
            })
            .collect()
    }

    /// Moves the clock to the end of the last of `calls`, if later: the
    /// plugin waited for them.
    pub(super) fn wait_for<'a>(&self, calls: impl IntoIterator<Item = &'a SentCall>) {
        if let Some(end) = calls.into_iter().map(|c| c.end_ms).max() {
            self.env.now_ms.set(self.env.now_ms.get().max(end));
        }
    }
}
