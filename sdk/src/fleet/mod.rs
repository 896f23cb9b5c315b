//! Counters and token buckets shared by every gateway of a fleet: the
//! operations that start them ([`take`], [`increment`], and the
//! [`Take`] and [`Increment`] builders that carry a tag), what they give
//! back ([`Started`]: an answer at once or a [`FleetId`] to wait for; a
//! [`FleetResult`] with a [`FleetAnswer`] or a [`FleetError`]), the checks
//! the gateway applies to an operation alone, and the gateway's bounds as
//! constants. Where the value lives (this gateway, Redis, both) is the
//! operator's choice, not the plugin's; the phases that receive the
//! answers of operations that waited are [`Plugin`](crate::Plugin)'s.
//!
//! Counters and buckets that are this gateway's alone are
//! [`state`](crate::state)'s; its keys and a plugin's fleet keys are apart
//! (the same name in both is two values).
//!
//! # Modes
//!
//! The operator picks how a plugin's fleet operations run, per plugin, in
//! the gateway's configuration:
//!
//! ```toml
//! [state]
//! backend = "redis"            # without it, every plugin runs `local`
//!
//! [plugin_limits.rate-limit]
//! fleet = "strict"             # "local" (the default), "sync" or "strict"
//! fleet_fallback = "closed"    # when Redis cannot be reached: "local" or "closed"
//! ```
//!
//! - `local`: the value is this gateway's, like [`state`](crate::state)'s,
//!   and answered at once ([`Started::Done`]). A fleet of N gateways lets
//!   N times a bucket's capacity through.
//! - `sync`: answered at once from this gateway's view of the fleet's
//!   value, which the gateway reconciles with Redis in the background:
//!   fleet-wide, but a burst may pass the limit by what the gateways take
//!   between two reconciliations.
//! - `strict`: each operation is decided in Redis, atomically: exact, at
//!   the cost of a round trip. The operation starts
//!   [`Started::Pending`]; the phase answers
//!   [`Action::Wait`](crate::Action::Wait) (or
//!   [`ResponseAction::Wait`](crate::ResponseAction::Wait)), the request
//!   waits on the gateway's event loop holding no instance, and the answer
//!   comes to [`on_request_calls`](crate::Plugin::on_request_calls) (or
//!   [`on_response_calls`](crate::Plugin::on_response_calls)) in its
//!   `fleet` list, with the operation's id and tag, beside the results of
//!   any calls the phase started.
//!
//! When Redis cannot be reached, `fleet_fallback` decides: `local` answers
//! from this gateway alone, with a bucket's capacity and refill (and a
//! counter's count, multiplied) shared out over the gateways it last saw;
//! `closed` answers [`FleetError::Unavailable`], at start or as an
//! operation's result.
//!
//! # Writing for every mode
//!
//! The same plugin runs in each mode, so it handles each answer:
//!
//! - [`Started::Done`]: decide now.
//! - [`Started::Pending`]: answer `Wait` and decide in the `*_calls`
//!   phase, from the [`FleetResult`] with that id (or tag). That phase may
//!   run on another instance: what it needs goes in the operation's tag
//!   ([`Take::tag`], at most [`MAX_FLEET_TAG_BYTES`]) or in
//!   [`context`](crate::context), not in `self`. An operation that waits
//!   started by a phase that answers anything else ends in the background,
//!   and its result goes to
//!   [`on_background_calls`](crate::Plugin::on_background_calls).
//! - [`FleetError::Unavailable`]: the operator chose to fail closed; a
//!   rate limiter answers 503, say, rather than let the request through.
//!
//! Operations wait only in the request and response phases and their
//! `*_calls` phases; elsewhere (`Plugin::new`, the body phases,
//! `on_background_calls`, `on_log`) one that would wait is refused with
//! [`FleetError::Invalid`]. At most [`MAX_FLEET_PENDING_PER_CALL`]
//! operations wait per phase call ([`FleetError::Limit`] past it).
//!
//! # Checks and bounds
//!
//! Before asking the gateway, an operation is checked as the gateway
//! checks it, in its order and with its errors ([`FleetError::Invalid`]):
//! the key is 1 to [`MAX_FLEET_KEY_BYTES`] bytes; the tag at most
//! [`MAX_FLEET_TAG_BYTES`]; a bucket's capacity 1 to [`MAX_FLEET_BUCKET`]
//! and its refill at most [`MAX_FLEET_BUCKET`] per second. [`Take::check`] and
//! [`Increment::check`] run the same checks, to refuse a configuration in
//! [`Plugin::new`](crate::Plugin::new). The test host
//! ([`testing`](crate::testing)) plays every mode: `local` by default,
//! `strict` and an unreachable Redis when a test asks.
//!
//! # Example
//!
//! ```
//! use weir_sdk::calls::CallResult;
//! use weir_sdk::fleet::{self, Bucket, BucketOutcome, FleetError, FleetResult, Started};
//! use weir_sdk::{Action, Plugin, Request};
//!
//! /// At most 2 requests per client per second, over the whole fleet.
//! struct FleetLimit;
//!
//! const BUCKET: Bucket = Bucket { capacity: 2, refill_per_second: 2 };
//!
//! fn decide(outcome: Result<BucketOutcome, FleetError>) -> Action {
//!     match outcome {
//!         Ok(outcome) if outcome.allowed => Action::Continue,
//!         Ok(_) => Action::respond(429).into(),
//!         Err(FleetError::Unavailable(_)) => Action::respond(503).into(),
//!         Err(_) => Action::Continue,
//!     }
//! }
//!
//! impl Plugin for FleetLimit {
//!     type Config = serde::de::IgnoredAny;
//!
//!     fn new(_: Self::Config) -> Result<Self, String> {
//!         Ok(FleetLimit)
//!     }
//!
//!     fn on_request(&mut self, req: &mut Request<'_>) -> Action {
//!         match fleet::take(&req.client_ip(), BUCKET, 1) {
//!             Ok(Started::Done(outcome)) => decide(Ok(outcome)),
//!             Ok(Started::Pending(_)) => Action::Wait,
//!             Err(e) => decide(Err(e)),
//!         }
//!     }
//!
//!     fn on_request_calls(
//!         &mut self,
//!         _: &mut Request<'_>,
//!         _: Vec<CallResult>,
//!         fleet: Vec<FleetResult>,
//!     ) -> Action {
//!         match fleet.first() {
//!             Some(result) => decide(result.bucket()),
//!             None => Action::Continue,
//!         }
//!     }
//! }
//!
//! use weir_sdk::testing::{FleetMode, TestHost, TestRequest};
//! let mut host = TestHost::<FleetLimit>::new(serde_json::json!({})).unwrap();
//! let statuses = |host: &mut TestHost<FleetLimit>| -> Vec<u16> {
//!     (0..3).map(|_| host.run(TestRequest::get("/")).status()).collect()
//! };
//! assert_eq!(statuses(&mut host), [200, 200, 429]);       // local: answered at once
//!
//! host.advance(std::time::Duration::from_secs(1));
//! host.fleet_mode(FleetMode::Strict);                      // each take waits
//! assert_eq!(statuses(&mut host), [200, 200, 429]);
//! assert!(host.run(TestRequest::get("/")).fleet()[0].pending().is_some());
//!
//! host.fleet_unavailable(true);                            // Redis down, fallback closed
//! assert_eq!(host.run(TestRequest::get("/")).status(), 503);
//! ```

pub(crate) mod outcome;

use std::time::Duration;

use crate::backend;
pub use crate::fleet::outcome::{FleetAnswer, FleetError, FleetId, FleetResult, Started};
pub use crate::limits::fleet::{
    MAX_FLEET_BUCKET, MAX_FLEET_KEY_BYTES, MAX_FLEET_PENDING_PER_CALL, MAX_FLEET_TAG_BYTES,
};
pub use crate::types::{Bucket, BucketOutcome};

/// Takes `cost` tokens from the fleet bucket `key`, created full with
/// `bucket.capacity` tokens and refilled at `bucket.refill_per_second`:
/// [`Take`] without a tag. The bucket's shape is given with each take, as
/// for [`state::take_tokens`](crate::state::take_tokens); a `cost` over
/// the capacity is never met (refused, with the longest `retry_after`).
///
/// # Example
///
/// ```
/// use weir_sdk::fleet::{take, Bucket, Started};
///
/// let bucket = Bucket { capacity: 1, refill_per_second: 1 };
/// let Ok(Started::Done(first)) = take("ip:192.0.2.1", bucket, 1) else {
///     unreachable!("answered at once outside a test host")
/// };
/// assert!(first.allowed);
/// let second = take("ip:192.0.2.1", bucket, 1).unwrap().done().unwrap();
/// assert!(!second.allowed);
/// assert_eq!(second.retry_after.as_secs(), 1);
/// ```
pub fn take(key: &str, bucket: Bucket, cost: u64) -> Result<Started<BucketOutcome>, FleetError> {
    check_key(key)?;
    check_bucket(bucket)?;
    bucket_answer(backend::fleet_take(key, bucket, cost, ""))
}

/// Adds `delta` to the fleet counter `key` (created at 0); answers its
/// value after the increment. With `ttl`, a counter this call creates
/// expires that long later (millisecond precision): a fixed window.
/// [`Increment`] without a tag.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use weir_sdk::fleet::{increment, Started};
///
/// let minute = Some(Duration::from_secs(60));
/// assert_eq!(increment("logins:ada", 1, minute), Ok(Started::Done(1)));
/// assert_eq!(increment("logins:ada", 1, minute), Ok(Started::Done(2)));
/// ```
pub fn increment(key: &str, delta: i64, ttl: Option<Duration>) -> Result<Started<i64>, FleetError> {
    check_key(key)?;
    counter_answer(backend::fleet_increment(key, delta, ttl.map(millis), ""))
}

/// A take from a fleet bucket to [`start`](Take::start), with a tag: what
/// [`take`] does, and the tag comes back with the operation's
/// [`FleetResult`] when it waits.
///
/// # Example
///
/// ```
/// use weir_sdk::fleet::{Bucket, Started, Take};
///
/// let bucket = Bucket { capacity: 100, refill_per_second: 10 };
/// let take = Take::new("tenant:acme", bucket, 5).tag("tenant");
/// assert!(take.check().is_ok());
/// let Ok(Started::Done(outcome)) = take.start() else { unreachable!() };
/// assert_eq!(outcome.remaining, 95);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Take {
    key: String,
    bucket: Bucket,
    cost: u64,
    tag: String,
}

impl Take {
    /// A take of `cost` tokens from the bucket `key` of this shape, with
    /// an empty tag.
    ///
    /// # Example
    ///
    /// See [`Take`].
    pub fn new(key: impl Into<String>, bucket: Bucket, cost: u64) -> Self {
        Self {
            key: key.into(),
            bucket,
            cost,
            tag: String::new(),
        }
    }

    /// Sets the tag, given back unchanged with the operation's
    /// [`FleetResult`] (at most [`MAX_FLEET_TAG_BYTES`]): which operation
    /// it was, and anything the plugin needs to act on its answer, which
    /// may reach another instance.
    ///
    /// # Example
    ///
    /// See [`Take`].
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = tag.into();
        self
    }

    /// Checks what the gateway checks of the take alone, in its order and
    /// with its errors ([`FleetError::Invalid`]): the key, the tag, the
    /// bucket (see the [module](self)). [`Take::start`] runs the same
    /// checks.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::fleet::{Bucket, FleetError, Take};
    ///
    /// let empty = Bucket { capacity: 0, refill_per_second: 1 };
    /// assert_eq!(
    ///     Take::new("k", empty, 1).check(),
    ///     Err(FleetError::Invalid(
    ///         "bucket capacity must be 1 to 1000000000 and refill at most 1000000000 per second"
    ///             .into()
    ///     ))
    /// );
    /// ```
    pub fn check(&self) -> Result<(), FleetError> {
        check_key(&self.key)?;
        check_tag(&self.tag)?;
        check_bucket(self.bucket)
    }

    /// Starts the take: its answer at once, or the id its answer comes
    /// with to the `*_calls` phase (see the [module](self) for when). An
    /// error means the take was not started.
    ///
    /// # Example
    ///
    /// See [`Take`].
    pub fn start(self) -> Result<Started<BucketOutcome>, FleetError> {
        self.check()?;
        bucket_answer(backend::fleet_take(
            &self.key,
            self.bucket,
            self.cost,
            &self.tag,
        ))
    }
}

/// An increment of a fleet counter to [`start`](Increment::start), with a
/// tag: what [`increment`] does, and the tag comes back with the
/// operation's [`FleetResult`] when it waits.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use weir_sdk::fleet::{Increment, Started};
///
/// let hits = Increment::new("hits:/orders", 1)
///     .ttl(Duration::from_secs(60))
///     .tag("hits");
/// assert_eq!(hits.start(), Ok(Started::Done(1)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Increment {
    key: String,
    delta: i64,
    ttl_ms: Option<u64>,
    tag: String,
}

impl Increment {
    /// Adds `delta` to the counter `key`, which does not expire, with an
    /// empty tag.
    ///
    /// # Example
    ///
    /// See [`Increment`].
    pub fn new(key: impl Into<String>, delta: i64) -> Self {
        Self {
            key: key.into(),
            delta,
            ttl_ms: None,
            tag: String::new(),
        }
    }

    /// A counter this increment creates expires `ttl` later (millisecond
    /// precision); adding to a live counter keeps its expiry.
    ///
    /// # Example
    ///
    /// See [`Increment`].
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl_ms = Some(millis(ttl));
        self
    }

    /// Sets the tag, given back unchanged with the operation's
    /// [`FleetResult`] (at most [`MAX_FLEET_TAG_BYTES`]).
    ///
    /// # Example
    ///
    /// See [`Increment`].
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = tag.into();
        self
    }

    /// Checks what the gateway checks of the increment alone, in its order
    /// and with its errors ([`FleetError::Invalid`]): the key, the tag.
    /// [`Increment::start`] runs the same checks.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::fleet::{FleetError, Increment};
    ///
    /// assert_eq!(
    ///     Increment::new("", 1).check(),
    ///     Err(FleetError::Invalid("fleet keys are 1 to 256 bytes".into()))
    /// );
    /// ```
    pub fn check(&self) -> Result<(), FleetError> {
        check_key(&self.key)?;
        check_tag(&self.tag)
    }

    /// Starts the increment: the counter's value at once, or the id its
    /// answer comes with to the `*_calls` phase. An error means it was not
    /// started.
    ///
    /// # Example
    ///
    /// See [`Increment`].
    pub fn start(self) -> Result<Started<i64>, FleetError> {
        self.check()?;
        counter_answer(backend::fleet_increment(
            &self.key,
            self.delta,
            self.ttl_ms,
            &self.tag,
        ))
    }
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

fn check_key(key: &str) -> Result<(), FleetError> {
    if key.is_empty() || key.len() > MAX_FLEET_KEY_BYTES {
        return Err(FleetError::Invalid(format!(
            "fleet keys are 1 to {MAX_FLEET_KEY_BYTES} bytes"
        )));
    }
    Ok(())
}

fn check_bucket(bucket: Bucket) -> Result<(), FleetError> {
    if !(1..=MAX_FLEET_BUCKET).contains(&bucket.capacity)
        || bucket.refill_per_second > MAX_FLEET_BUCKET
    {
        return Err(FleetError::Invalid(format!(
            "bucket capacity must be 1 to {MAX_FLEET_BUCKET} and refill at most \
             {MAX_FLEET_BUCKET} per second"
        )));
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<(), FleetError> {
    if tag.len() > MAX_FLEET_TAG_BYTES {
        return Err(FleetError::Invalid(format!(
            "a fleet operation's tag is at most {MAX_FLEET_TAG_BYTES} bytes"
        )));
    }
    Ok(())
}

/// A take's answer: a bucket's outcome (a counter here is the gateway's
/// mistake, reported as one).
fn bucket_answer(
    started: Result<Started<FleetAnswer>, FleetError>,
) -> Result<Started<BucketOutcome>, FleetError> {
    match started? {
        Started::Done(FleetAnswer::Bucket(outcome)) => Ok(Started::Done(outcome)),
        Started::Done(FleetAnswer::Counter(_)) => Err(FleetError::Invalid(
            "the gateway answered a take with a counter".into(),
        )),
        Started::Pending(id) => Ok(Started::Pending(id)),
    }
}

/// An increment's answer: a counter's value.
fn counter_answer(
    started: Result<Started<FleetAnswer>, FleetError>,
) -> Result<Started<i64>, FleetError> {
    match started? {
        Started::Done(FleetAnswer::Counter(value)) => Ok(Started::Done(value)),
        Started::Done(FleetAnswer::Bucket(_)) => Err(FleetError::Invalid(
            "the gateway answered an increment with a token bucket".into(),
        )),
        Started::Pending(id) => Ok(Started::Pending(id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_tags_and_buckets_are_checked_in_the_gateways_order() {
        let ok = Bucket {
            capacity: 1,
            refill_per_second: 0,
        };
        let bad = Bucket {
            capacity: 0,
            refill_per_second: 0,
        };
        let key_error = FleetError::Invalid("fleet keys are 1 to 256 bytes".into());
        let tag_error = FleetError::Invalid("a fleet operation's tag is at most 256 bytes".into());
        assert_eq!(
            Take::new("", bad, 1).tag("t".repeat(300)).check(),
            Err(key_error.clone())
        );
        assert_eq!(
            Take::new("k", bad, 1).tag("t".repeat(300)).check(),
            Err(tag_error.clone())
        );
        assert_eq!(
            Take::new("k", bad, 1).tag("t".repeat(256)).check(),
            Err(FleetError::Invalid(
                "bucket capacity must be 1 to 1000000000 and refill at most 1000000000 per second"
                    .into()
            ))
        );
        assert!(Take::new("k", ok, 1).tag("t".repeat(256)).check().is_ok());
        assert_eq!(
            Increment::new("k", 1).tag("t".repeat(257)).check(),
            Err(tag_error)
        );
        assert_eq!(
            Increment::new("k".repeat(257), 1).check(),
            Err(key_error.clone())
        );
        for refill in [MAX_FLEET_BUCKET + 1, u64::MAX] {
            let bucket = Bucket {
                capacity: 1,
                refill_per_second: refill,
            };
            assert!(Take::new("k", bucket, 1).check().is_err());
        }
        // The free functions check before the host is asked.
        assert_eq!(take("", ok, 1), Err(key_error.clone()));
        assert_eq!(increment("", 1, None), Err(key_error));
        assert!(take("k", bad, 1).is_err());
    }

    #[test]
    fn an_answer_of_the_wrong_kind_is_the_gateways_mistake() {
        let counter = Ok(Started::Done(FleetAnswer::Counter(1)));
        assert!(matches!(
            bucket_answer(counter),
            Err(FleetError::Invalid(_))
        ));
        let outcome = BucketOutcome {
            allowed: true,
            remaining: 0,
            retry_after: Duration::ZERO,
        };
        let bucket = Ok(Started::Done(FleetAnswer::Bucket(outcome)));
        assert!(matches!(
            counter_answer(bucket),
            Err(FleetError::Invalid(_))
        ));
        assert_eq!(
            counter_answer(Ok(Started::Pending(FleetId(3)))),
            Ok(Started::Pending(FleetId(3)))
        );
    }
}
