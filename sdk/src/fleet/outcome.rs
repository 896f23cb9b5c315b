//! What a fleet operation gives back: [`Started`] when it starts (its
//! answer at once, or the [`FleetId`] of an operation that waits), the
//! [`FleetAnswer`] itself (a bucket's outcome or a counter's value), the
//! [`FleetResult`] of an operation that waited, and the [`FleetError`]
//! that kept an operation from an answer. Plain values: both sides of the
//! seam build them, and the phases that receive results read them.

use std::fmt;

use crate::types::BucketOutcome;

/// The id of a fleet operation that waits, as
/// [`Started::Pending`] carried it: unique within the request, together
/// with the ids of its outbound calls, and carried by the operation's
/// [`FleetResult`]. Ids grow in the order operations and calls start.
///
/// # Example
///
/// ```
/// use weir_sdk::fleet::{self, Bucket, Started};
/// use weir_sdk::testing::{FleetMode, TestHost, TestRequest};
/// use weir_sdk::{Action, Plugin, Request};
/// # struct Two;
/// # impl Plugin for Two {
/// #     type Config = serde::de::IgnoredAny;
/// #     fn new(_: Self::Config) -> Result<Self, String> { Ok(Two) }
/// #     fn on_request(&mut self, _: &mut Request<'_>) -> Action {
/// #         let bucket = Bucket { capacity: 5, refill_per_second: 1 };
/// #         let (Ok(Started::Pending(a)), Ok(Started::Pending(b))) =
/// #             (fleet::take("a", bucket, 1), fleet::take("b", bucket, 1))
/// #         else { panic!("strict mode waits") };
/// #         assert!(a < b);
/// #         Action::Wait
/// #     }
/// # }
/// let mut host = TestHost::<Two>::new(serde_json::json!({})).unwrap();
/// host.fleet_mode(FleetMode::Strict);
/// let exchange = host.run(TestRequest::get("/"));
/// let ids: Vec<_> = exchange.fleet().iter().filter_map(|op| op.pending()).collect();
/// assert!(ids[0] < ids[1]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FleetId(pub(crate) u32);

/// The id's number, as the gateway's logs show it.
impl fmt::Display for FleetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A fleet operation the gateway accepted: answered at once, or waiting
/// for its answer from the fleet's store. Which one depends on the mode the
/// operator chose for the plugin, never on the plugin: handle both.
///
/// # Example
///
/// ```
/// use weir_sdk::fleet::{self, Bucket, Started};
/// use weir_sdk::Action;
///
/// let bucket = Bucket { capacity: 10, refill_per_second: 1 };
/// let action = match fleet::take("client-1", bucket, 1) {
///     Ok(Started::Done(outcome)) if outcome.allowed => Action::Continue,
///     Ok(Started::Done(_)) => Action::respond(429).into(),
///     // The answer comes to `on_request_calls`.
///     Ok(Started::Pending(_)) => Action::Wait,
///     Err(e) => Action::respond(503).body(e.to_string()).into(),
/// };
/// // Outside a test host, operations are answered at once.
/// assert_eq!(action, Action::Continue);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started<T> {
    /// Answered at once: always in the modes `local` and `sync`.
    Done(T),
    /// Decided in the fleet's store (mode `strict`): answer
    /// [`Action::Wait`](crate::Action::Wait) (or
    /// [`ResponseAction::Wait`](crate::ResponseAction::Wait)), and the
    /// answer comes with this id to the matching `*_calls` phase.
    Pending(FleetId),
}

impl<T> Started<T> {
    /// Whether the answer comes later, to a `*_calls` phase.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::fleet::Started;
    /// assert!(!Started::Done(3).is_pending());
    /// ```
    pub fn is_pending(&self) -> bool {
        matches!(self, Started::Pending(_))
    }

    /// The answer, if it came at once.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::fleet::Started;
    /// assert_eq!(Started::Done(3).done(), Some(3));
    /// ```
    pub fn done(self) -> Option<T> {
        match self {
            Started::Done(answer) => Some(answer),
            Started::Pending(_) => None,
        }
    }
}

/// What a fleet operation answered: a take's [`BucketOutcome`], or a
/// counter's value after an increment.
///
/// # Example
///
/// ```
/// use weir_sdk::fleet::FleetAnswer;
///
/// let answer = FleetAnswer::Counter(7);
/// assert_eq!(answer.counter(), Some(7));
/// assert_eq!(answer.bucket(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetAnswer {
    /// A token-bucket take ([`take`](crate::fleet::take)).
    Bucket(BucketOutcome),
    /// A counter's value after the increment
    /// ([`increment`](crate::fleet::increment)).
    Counter(i64),
}

impl FleetAnswer {
    /// The bucket's outcome, if this answers a take.
    ///
    /// # Example
    ///
    /// See [`FleetAnswer`].
    pub fn bucket(&self) -> Option<BucketOutcome> {
        match self {
            FleetAnswer::Bucket(outcome) => Some(*outcome),
            FleetAnswer::Counter(_) => None,
        }
    }

    /// The counter's value, if this answers an increment.
    ///
    /// # Example
    ///
    /// See [`FleetAnswer`].
    pub fn counter(&self) -> Option<i64> {
        match self {
            FleetAnswer::Counter(value) => Some(*value),
            FleetAnswer::Bucket(_) => None,
        }
    }
}

/// A fleet operation that waited, as the `*_calls` phases of
/// [`Plugin`](crate::Plugin) receive it: which operation it was (its id and
/// tag) and how it ended.
///
/// # Example
///
/// ```
/// use weir_sdk::fleet::{FleetError, FleetResult};
///
/// /// Whether the take tagged `limit` let the request through.
/// fn allowed(results: &[FleetResult]) -> Result<bool, FleetError> {
///     match results.iter().find(|r| r.tag == "limit") {
///         Some(limit) => Ok(limit.bucket()?.allowed),
///         None => Ok(true),
///     }
/// }
/// assert_eq!(allowed(&[]), Ok(true));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetResult {
    /// The id [`Started::Pending`] carried.
    pub id: FleetId,
    /// The operation's tag, as it was given.
    pub tag: String,
    /// Its answer, or why it has none.
    pub outcome: Result<FleetAnswer, FleetError>,
}

impl FleetResult {
    /// The bucket's outcome of a take, or the operation's error (an
    /// increment's answer here is [`FleetError::Invalid`]: the result of
    /// another operation than the one looked for).
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::calls::CallResult;
    /// use weir_sdk::fleet::{self, Bucket, FleetResult};
    /// use weir_sdk::testing::{FleetMode, TestHost, TestRequest};
    /// use weir_sdk::{Action, Plugin, Request};
    ///
    /// /// Counts and limits requests per path, fleet-wide.
    /// struct PerPath;
    /// impl Plugin for PerPath {
    ///     type Config = serde::de::IgnoredAny;
    ///     fn new(_: Self::Config) -> Result<Self, String> { Ok(PerPath) }
    ///     fn on_request(&mut self, req: &mut Request<'_>) -> Action {
    ///         let bucket = Bucket { capacity: 1, refill_per_second: 1 };
    ///         let hits = fleet::Increment::new(format!("hits:{}", req.path()), 1).tag("hits");
    ///         let limit = fleet::Take::new(req.path(), bucket, 1).tag("limit");
    ///         match (hits.start(), limit.start()) {
    ///             (Ok(a), Ok(b)) if a.is_pending() && b.is_pending() => Action::Wait,
    ///             _ => Action::respond(503).into(),
    ///         }
    ///     }
    ///     fn on_request_calls(
    ///         &mut self,
    ///         _: &mut Request<'_>,
    ///         _: Vec<CallResult>,
    ///         fleet: Vec<FleetResult>,
    ///     ) -> Action {
    ///         let hits = fleet.iter().find(|r| r.tag == "hits").map(FleetResult::counter);
    ///         let limit = fleet.iter().find(|r| r.tag == "limit").map(FleetResult::bucket);
    ///         match (hits, limit) {
    ///             (Some(Ok(hits)), Some(Ok(outcome))) if outcome.allowed => {
    ///                 Action::respond(200).body(hits.to_string()).into()
    ///             }
    ///             _ => Action::respond(429).into(),
    ///         }
    ///     }
    /// }
    ///
    /// let mut host = TestHost::<PerPath>::new(serde_json::json!({})).unwrap();
    /// host.fleet_mode(FleetMode::Strict);
    /// assert_eq!(host.run(TestRequest::get("/a")).body_text(), "1");
    /// assert_eq!(host.run(TestRequest::get("/a")).status(), 429);
    /// ```
    pub fn bucket(&self) -> Result<BucketOutcome, FleetError> {
        match &self.outcome {
            Ok(FleetAnswer::Bucket(outcome)) => Ok(*outcome),
            Ok(FleetAnswer::Counter(_)) => Err(self.mismatch("a counter", "a take")),
            Err(e) => Err(e.clone()),
        }
    }

    /// The counter's value after an increment, or the operation's error (a
    /// take's answer here is [`FleetError::Invalid`]).
    ///
    /// # Example
    ///
    /// See [`FleetResult::bucket`].
    pub fn counter(&self) -> Result<i64, FleetError> {
        match &self.outcome {
            Ok(FleetAnswer::Counter(value)) => Ok(*value),
            Ok(FleetAnswer::Bucket(_)) => Err(self.mismatch("a token bucket", "an increment")),
            Err(e) => Err(e.clone()),
        }
    }

    /// The error of asking an answer of the wrong kind: the result of
    /// another operation than the one the plugin looked for.
    fn mismatch(&self, got: &str, wanted: &str) -> FleetError {
        FleetError::Invalid(format!(
            "fleet operation {} (tag `{}`) answered {got}, not {wanted}",
            self.id,
            self.tag.escape_debug()
        ))
    }
}

/// Why a fleet operation was not started, or has no answer. Each variant
/// is the contract's `fleet-error` of the same name; the texts are the
/// gateway's, naming the rule that refused the operation.
///
/// # Example
///
/// ```
/// use weir_sdk::fleet::FleetError;
///
/// let down = FleetError::Unavailable("no answer from Redis within 50ms".into());
/// assert_eq!(down.to_string(), "fleet store unavailable: no answer from Redis within 50ms");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetError {
    /// A malformed operation (key, bucket, tag), or one that would wait
    /// outside the request and response phases.
    Invalid(String),
    /// A bound was reached: operations that wait per phase call
    /// ([`MAX_FLEET_PENDING_PER_CALL`](crate::fleet::MAX_FLEET_PENDING_PER_CALL)),
    /// or the keys the plugin holds.
    Limit(String),
    /// The fleet's store (Redis) cannot be reached in time and the plugin's
    /// `fleet_fallback` is `closed`.
    Unavailable(String),
}

impl fmt::Display for FleetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FleetError::Invalid(why) => write!(f, "invalid fleet operation: {why}"),
            FleetError::Limit(why) => write!(f, "fleet limit reached: {why}"),
            FleetError::Unavailable(why) => write!(f, "fleet store unavailable: {why}"),
        }
    }
}

impl std::error::Error for FleetError {}
