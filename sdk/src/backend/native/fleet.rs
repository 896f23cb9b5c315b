//! The fleet operations a plugin makes on the in-memory host ([`Fleet`]):
//! the mode a test chose ([`FleetMode`]) and whether Redis answers,
//! the plugin's fleet keys (a store of their own, apart from its shared
//! state, with the same arithmetic), the gateway's bounds on operations
//! that wait with its errors, and the current request's operations with
//! their answers. The test host ([`testing`](crate::testing)) delivers the
//! answers of those that wait.

use std::time::Duration;

use super::store::{Refusal, Store};
use crate::fleet::outcome::{FleetAnswer, FleetError, FleetId, Started};
use crate::limits::fleet::MAX_FLEET_PENDING_PER_CALL;
use crate::types::Bucket;

/// How the gateway runs a plugin's fleet operations, as
/// `[plugin_limits.NAME] fleet` chooses it. The test host is one gateway
/// of a fleet whose other gateways take nothing: every mode decides
/// against the same buckets and counters, and differs in when the plugin
/// gets the answer.
///
/// # Example
///
/// ```
/// use weir_sdk::testing::{FleetMode, TestHost};
/// # struct Noop;
/// # impl weir_sdk::Plugin for Noop {
/// #     type Config = serde::de::IgnoredAny;
/// #     fn new(_: Self::Config) -> Result<Self, String> { Ok(Noop) }
/// # }
///
/// let mut host = TestHost::<Noop>::new(serde_json::json!({})).unwrap();
/// assert_eq!(FleetMode::default(), FleetMode::Local);
/// host.fleet_mode(FleetMode::Strict);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FleetMode {
    /// `local`, the gateway's default: answered at once
    /// ([`Started::Done`]), from this gateway's own values; Redis is never
    /// asked, so it being out of reach changes nothing.
    #[default]
    Local,
    /// `sync`: answered at once from this gateway's view of the fleet's
    /// values; with Redis out of reach (and `fleet_fallback = "closed"`),
    /// refused at once with [`FleetError::Unavailable`].
    Sync,
    /// `strict`: every operation waits ([`Started::Pending`]) and its
    /// answer comes to the `*_calls` phase. An operation that would wait
    /// outside the request and response phases is refused
    /// ([`FleetError::Invalid`]), and at most
    /// [`MAX_FLEET_PENDING_PER_CALL`] wait per phase call
    /// ([`FleetError::Limit`]). With Redis out of reach (and
    /// `fleet_fallback = "closed"`), refused at once, wherever it starts,
    /// with [`FleetError::Unavailable`]; with Redis not answering in time,
    /// it waits and its result is that error.
    Strict,
}

/// What a fleet operation does, as a test reads it back
/// ([`FleetOp::kind`](crate::testing::FleetOp::kind)).
///
/// # Example
///
/// ```
/// use weir_sdk::fleet::{self, Bucket};
/// use weir_sdk::testing::{FleetOpKind, TestHost, TestRequest};
/// use weir_sdk::{Action, Plugin, Request};
///
/// struct Count;
/// impl Plugin for Count {
///     type Config = serde::de::IgnoredAny;
///     fn new(_: Self::Config) -> Result<Self, String> { Ok(Count) }
///     fn on_request(&mut self, _: &mut Request<'_>) -> Action {
///         let _ = fleet::increment("hits", 2, None);
///         Action::Continue
///     }
/// }
///
/// let mut host = TestHost::<Count>::new(serde_json::json!({})).unwrap();
/// let exchange = host.run(TestRequest::get("/"));
/// assert_eq!(exchange.fleet()[0].kind(), &FleetOpKind::Increment { delta: 2, ttl: None });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetOpKind {
    /// A take of `cost` tokens from a bucket of this shape
    /// ([`fleet::take`](crate::fleet::take)).
    Take {
        /// The bucket's capacity and refill, as given.
        bucket: Bucket,
        /// The tokens to take.
        cost: u64,
    },
    /// An increment of a counter
    /// ([`fleet::increment`](crate::fleet::increment)).
    Increment {
        /// What to add.
        delta: i64,
        /// The expiry of a counter it creates, in whole milliseconds.
        ttl: Option<Duration>,
    },
}

/// A fleet operation the host accepted in the current request.
#[derive(Debug, Clone)]
pub(crate) struct Made {
    pub(crate) key: String,
    pub(crate) tag: String,
    pub(crate) kind: FleetOpKind,
    /// Its id, when it waited.
    pub(crate) pending: Option<FleetId>,
    /// Whether it waited in the background: its phase did not answer
    /// `Wait`.
    pub(crate) background: bool,
    /// Its answer, as the plugin got it (at once, or with its result).
    pub(crate) outcome: Result<FleetAnswer, FleetError>,
}

/// What the host keeps of one plugin's fleet operations: its settings, its
/// keys, and the current request's operations.
pub(crate) struct Fleet {
    pub(crate) mode: FleetMode,
    /// Whether the gateway knows Redis is out of reach (with
    /// `fleet_fallback = "closed"`).
    pub(crate) unavailable: bool,
    /// Whether Redis leaves the operations that wait unanswered past the
    /// gateway's time limit (with `fleet_fallback = "closed"`).
    pub(crate) times_out: bool,
    store: Store,
    /// The operations of the current request, in the order they started.
    made: Vec<Made>,
    /// Those that wait started by the current phase call (their places in
    /// `made`).
    new: Vec<usize>,
}

impl Fleet {
    pub(crate) fn new() -> Self {
        Self {
            mode: FleetMode::Local,
            unavailable: false,
            times_out: false,
            store: Store::default(),
            made: Vec::new(),
            new: Vec::new(),
        }
    }

    /// A new request: none of its operations started yet.
    pub(crate) fn begin_request(&mut self) {
        self.made.clear();
        self.new.clear();
    }

    /// An operation as the gateway answers it in the current mode, its
    /// checks in the gateway's order: Redis known out of reach, then (for
    /// one that waits) the phase, then the operations waiting. `open`:
    /// whether the phase call under way may leave operations waiting;
    /// `next_id` numbers one that waits.
    pub(crate) fn start(
        &mut self,
        key: &str,
        tag: &str,
        kind: FleetOpKind,
        now_ms: u64,
        open: bool,
        next_id: impl FnOnce() -> u32,
    ) -> Result<Started<FleetAnswer>, FleetError> {
        let pending = match self.mode {
            FleetMode::Local => false,
            FleetMode::Sync | FleetMode::Strict if self.unavailable => return Err(unavailable()),
            FleetMode::Sync => false,
            FleetMode::Strict if !open => {
                return Err(FleetError::Invalid(
                    "a strict fleet operation waits, so it starts only in the request and \
                     response phases (and their -calls exports)"
                        .into(),
                ));
            }
            FleetMode::Strict if self.new.len() >= MAX_FLEET_PENDING_PER_CALL => {
                return Err(FleetError::Limit(format!(
                    "at most {MAX_FLEET_PENDING_PER_CALL} fleet operations that wait per phase \
                     call"
                )));
            }
            FleetMode::Strict => true,
        };
        // Redis answers a strict operation as this gateway's store would:
        // the test host's fleet has no other gateway.
        let outcome = if pending && self.times_out {
            Err(unavailable())
        } else {
            self.answer(key, &kind, now_ms)
        };
        if !pending {
            let answer = outcome?;
            self.made.push(Made {
                key: key.to_owned(),
                tag: tag.to_owned(),
                kind,
                pending: None,
                background: false,
                outcome: Ok(answer),
            });
            return Ok(Started::Done(answer));
        }
        let id = FleetId(next_id());
        self.new.push(self.made.len());
        self.made.push(Made {
            key: key.to_owned(),
            tag: tag.to_owned(),
            kind,
            pending: Some(id),
            background: false,
            outcome,
        });
        Ok(Started::Pending(id))
    }

    /// The operation's answer from the plugin's fleet keys.
    fn answer(
        &mut self,
        key: &str,
        kind: &FleetOpKind,
        now_ms: u64,
    ) -> Result<FleetAnswer, FleetError> {
        let answer = match *kind {
            FleetOpKind::Take { bucket, cost } => self
                .store
                .take(key, bucket.capacity, bucket.refill_per_second, cost, now_ms)
                .map(FleetAnswer::Bucket),
            FleetOpKind::Increment { delta, ttl } => {
                let ttl_ms = ttl.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
                (self.store.increment(key, delta, ttl_ms, now_ms)).map(FleetAnswer::Counter)
            }
        };
        answer.map_err(|refusal| match refusal {
            Refusal::Invalid(why) => FleetError::Invalid(why),
            Refusal::Full(why) => FleetError::Limit(why),
        })
    }

    /// The operations that wait the phase call that just returned started:
    /// the gateway sends them now. `background`: the phase did not answer
    /// `Wait`, so their results come after the response.
    pub(crate) fn take_new(&mut self, background: bool) -> Vec<Made> {
        let new = std::mem::take(&mut self.new);
        for &at in &new {
            self.made[at].background = background;
        }
        new.into_iter().map(|at| self.made[at].clone()).collect()
    }

    /// The operations of the current request that waited in the
    /// background.
    pub(crate) fn background(&self) -> Vec<Made> {
        (self.made.iter())
            .filter(|m| m.pending.is_some() && m.background)
            .cloned()
            .collect()
    }

    /// The current request's operations, for its exchange.
    pub(crate) fn take_made(&mut self) -> Vec<Made> {
        self.new.clear();
        std::mem::take(&mut self.made)
    }

    /// A fleet counter's value, if `key` holds one.
    pub(crate) fn counter(&mut self, key: &str, now_ms: u64) -> Option<i64> {
        let text = self.store.get(key, now_ms)?;
        std::str::from_utf8(&text).ok()?.parse().ok()
    }
}

/// Redis cannot be reached and the plugin fails closed.
fn unavailable() -> FleetError {
    FleetError::Unavailable(
        "the fleet's Redis cannot be reached and this plugin's fleet_fallback is `closed`".into(),
    )
}
