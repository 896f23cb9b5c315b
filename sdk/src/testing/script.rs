//! The upstreams a plugin calls, as a test scripts them:
//! [`TestCallResponse`] and [`TestCallAnswer`] (what one call gets), the
//! scripts per upstream ([`Scripts`]) that [`TestHost`](super::TestHost)'s
//! `answer_calls*` methods set, and what a call's answer comes to on the
//! host's clock (its time limit, the body cap).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::backend::{Headers, Started};
use crate::calls::{CallError, CallResponse};

/// A scripted answer of a called upstream: status, headers, body, and how
/// long it takes on the test host's clock.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use weir_sdk::testing::TestCallResponse;
///
/// let answer = TestCallResponse::new(200)
///     .header("content-type", "application/json")
///     .body(r#"{"allow":true}"#)
///     .delay(Duration::from_millis(30));
/// # let _ = answer;
/// ```
#[derive(Debug, Clone)]
pub struct TestCallResponse {
    status: u16,
    headers: Headers,
    body: Vec<u8>,
    delay: Duration,
}

impl TestCallResponse {
    /// An answer with this status, no headers, an empty body, at once.
    ///
    /// # Example
    ///
    /// ```
    /// let answer = weir_sdk::testing::TestCallResponse::new(204);
    /// # let _ = answer;
    /// ```
    ///
    /// # Panics
    ///
    /// If the status is outside 200..=999 (a call gets a final answer): a
    /// bug in the test.
    pub fn new(status: u16) -> Self {
        assert!(
            (200..=999).contains(&status),
            "TestCallResponse: status {status} outside 200..=999"
        );
        Self {
            status,
            headers: Headers::default(),
            body: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    /// Adds a header (the plugin reads its name in lower case).
    ///
    /// # Example
    ///
    /// ```
    /// let answer = weir_sdk::testing::TestCallResponse::new(200).header("X-User", "ada");
    /// # let _ = answer;
    /// ```
    ///
    /// # Panics
    ///
    /// If the name or value is not valid HTTP: a bug in the test.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .add_received(name, value)
            .unwrap_or_else(|e| panic!("TestCallResponse: {e}"));
        self
    }

    /// Sets the body. One over the plugin's `max_call_body_bytes` reaches
    /// the plugin as [`CallError::TooLarge`].
    ///
    /// # Example
    ///
    /// ```
    /// let answer = weir_sdk::testing::TestCallResponse::new(200).body("ok");
    /// # let _ = answer;
    /// ```
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets how long the whole answer takes, on the test host's clock
    /// (nothing sleeps: the clock moves when the plugin waits). An answer
    /// slower than the call's time limit reaches the plugin as
    /// [`CallError::Timeout`], at the limit.
    ///
    /// # Example
    ///
    /// See [`TestHost::answer_calls`](super::TestHost::answer_calls).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// What a called upstream answers: a [`TestCallResponse`], or a
/// [`CallError`] the call ends with. [`CallError::Timeout`] takes the
/// call's whole time limit on the clock; the other errors come at once.
/// Made with `.into()` from either (the `answer_calls*` methods take
/// `impl Into<TestCallAnswer>`).
///
/// # Example
///
/// ```
/// use weir_sdk::calls::CallError;
/// use weir_sdk::testing::{TestCallAnswer, TestCallResponse};
///
/// let ok: TestCallAnswer = TestCallResponse::new(200).into();
/// let down: TestCallAnswer = CallError::Failed("connection refused".into()).into();
/// # let _ = (ok, down);
/// ```
#[derive(Debug, Clone)]
pub enum TestCallAnswer {
    /// The upstream answers this.
    Response(TestCallResponse),
    /// The call ends with this error.
    Error(CallError),
}

impl From<TestCallResponse> for TestCallAnswer {
    fn from(response: TestCallResponse) -> Self {
        Self::Response(response)
    }
}

impl From<CallError> for TestCallAnswer {
    fn from(error: CallError) -> Self {
        Self::Error(error)
    }
}

/// How one upstream answers.
#[derive(Debug, Clone)]
enum Script {
    /// Every call the same.
    Always(TestCallAnswer),
    /// One answer per call, in order, `given` of them so far.
    InOrder {
        answers: VecDeque<TestCallAnswer>,
        given: usize,
    },
}

/// The scripts of the upstreams a test set.
#[derive(Debug, Clone, Default)]
pub(super) struct Scripts(BTreeMap<String, Script>);

impl Scripts {
    /// Every call to `upstream` gets `answer`.
    pub(super) fn always(&mut self, upstream: &str, answer: TestCallAnswer) {
        self.0.insert(upstream.to_owned(), Script::Always(answer));
    }

    /// Each call to `upstream` gets the next of `answers`.
    pub(super) fn in_order(&mut self, upstream: &str, answers: VecDeque<TestCallAnswer>) {
        let script = Script::InOrder { answers, given: 0 };
        self.0.insert(upstream.to_owned(), script);
    }

    /// The next answer of `upstream`; an upstream without one (never
    /// scripted, or its answers used up) fails the call, saying so.
    pub(super) fn next(&mut self, upstream: &str) -> TestCallAnswer {
        let failed = |why: String| TestCallAnswer::Error(CallError::Failed(why));
        match self.0.get_mut(upstream) {
            None => failed(format!("no answer scripted for upstream `{upstream}`")),
            Some(Script::Always(answer)) => answer.clone(),
            Some(Script::InOrder { answers, given }) => match answers.pop_front() {
                Some(answer) => {
                    *given += 1;
                    answer
                }
                None => failed(format!(
                    "the {given} answers scripted for upstream `{upstream}` are used up"
                )),
            },
        }
    }
}

/// What a call gets from its upstream's answer, and how long it took on
/// the clock: a response slower than the call's time limit is a timeout
/// at the limit; one within it, with a body over the cap, is too large.
pub(super) fn answer(
    answer: TestCallAnswer,
    call: &Started,
    cap: usize,
) -> (Result<CallResponse, CallError>, u64) {
    match answer {
        TestCallAnswer::Response(r) => {
            // Rounded up: an answer a fraction of a millisecond late is late.
            let delay_ms =
                u64::try_from(r.delay.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
            if delay_ms > call.limit_ms {
                (Err(CallError::Timeout), call.limit_ms)
            } else if r.body.len() > cap {
                (Err(CallError::TooLarge(cap as u64)), delay_ms)
            } else {
                let response = CallResponse {
                    status: r.status,
                    headers: r.headers.pairs().to_vec(),
                    body: r.body,
                };
                (Ok(response), delay_ms)
            }
        }
        TestCallAnswer::Error(CallError::Timeout) => (Err(CallError::Timeout), call.limit_ms),
        TestCallAnswer::Error(e) => (Err(e), 0),
    }
}
