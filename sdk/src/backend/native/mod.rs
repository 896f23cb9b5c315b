//! The native side of the seam: the in-memory host every SDK call reaches
//! when not compiled for Wasm, applying the gateway's validation and bounds
//! with the gateway's errors. The services act on the current environment
//! ([the environment](self::env): the one a running [`TestHost`](crate::testing::TestHost)
//! installed, or a per-thread default); shared state is kept as the
//! gateway keeps it ([`store`]), requests and responses as plain values
//! ([`head`]), the calls a plugin starts with the gateway's checks at
//! start ([`calls`]), and its fleet operations in the mode a test chose
//! ([`fleet`]).

mod calls;
mod env;
mod fleet;
mod head;
mod store;

pub use calls::CallLimits;
pub(crate) use calls::Started;
pub use env::LogLine;
use env::with_env;
pub(crate) use env::{Env, LogWindow, begin_call, install};
pub(crate) use fleet::Made;
pub use fleet::{FleetMode, FleetOpKind};
pub(crate) use head::{Headers, RequestState, ResponseState};

use crate::calls::outcome::{CallError, CallId};
use crate::calls::request::CallRequest;
use crate::fleet::outcome::{FleetAnswer, FleetError, Started as FleetStarted};
use crate::limits::{context, log, metrics, random};
use crate::types::{Bucket, BucketOutcome, Level};

pub(crate) type RequestRef<'a> = &'a mut RequestState;
pub(crate) type ResponseRef<'a> = &'a mut ResponseState;

/// As in the gateway: within the call's line budget, cut to
/// [`log::MAX_MESSAGE_BYTES`] and kept to one line.
pub(crate) fn log(level: Level, message: &str) {
    with_env(|env| {
        if !env.may_log() {
            return;
        }
        let mut message = message.to_owned();
        if message.len() > log::MAX_MESSAGE_BYTES {
            let mut at = log::MAX_MESSAGE_BYTES;
            while !message.is_char_boundary(at) {
                at -= 1;
            }
            message.truncate(at);
            message.push_str(" [cut]");
        }
        if message.contains(['\n', '\r']) {
            message = message.replace('\n', "\\n").replace('\r', "\\r");
        }
        env.logs.borrow_mut().push(LogLine { level, message })
    })
}

/// A panic report from the SDK's panic hook: one error line in the current
/// environment's logs whatever is left of the call's line budget, as the
/// gateway keeps it apart from the plugin's lines. Never panics itself: it
/// runs inside the panic hook, where a second panic would abort the test.
pub(crate) fn panicked(line: &str) {
    env::record_panic(line);
}

pub(crate) fn context_get(key: &str) -> Option<String> {
    with_env(|env| env.context.borrow().get(key).cloned())
}

/// As in the gateway, an entry over the bounds is dropped and logged (the
/// contract gives `context-set` no error channel).
pub(crate) fn context_set(key: &str, value: &str) {
    with_env(|env| {
        let refusal = {
            let mut context = env.context.borrow_mut();
            if key.len() > context::MAX_KEY_BYTES || value.len() > context::MAX_VALUE_BYTES {
                Some(format!(
                    "context keys are at most {} bytes and values at most {}",
                    context::MAX_KEY_BYTES,
                    context::MAX_VALUE_BYTES
                ))
            } else if !context.contains_key(key) && context.len() >= context::MAX_ENTRIES {
                Some(format!(
                    "at most {} context entries per plugin per request",
                    context::MAX_ENTRIES
                ))
            } else {
                context.insert(key.to_owned(), value.to_owned());
                None
            }
        };
        if let Some(refusal) = refusal {
            env.warn(format!("context-set refused: {refusal}"));
        }
    });
}

pub(crate) fn state_get(key: &str) -> Option<Vec<u8>> {
    with_env(|env| env.with_store(|store, now| store.get(key, now)))
}

pub(crate) fn state_set(key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), String> {
    with_env(|env| env.with_store(|store, now| store.set(key, value, ttl_ms, now)))
        .map_err(String::from)
}

pub(crate) fn state_delete(key: &str) -> bool {
    with_env(|env| env.with_store(|store, now| store.delete(key, now)))
}

pub(crate) fn state_increment(key: &str, delta: i64, ttl_ms: Option<u64>) -> Result<i64, String> {
    with_env(|env| env.with_store(|store, now| store.increment(key, delta, ttl_ms, now)))
        .map_err(String::from)
}

pub(crate) fn token_bucket_take(
    key: &str,
    capacity: u64,
    refill_per_second: u64,
    cost: u64,
) -> Result<BucketOutcome, String> {
    with_env(|env| {
        env.with_store(|store, now| store.take(key, capacity, refill_per_second, cost, now))
    })
    .map_err(String::from)
}

/// As in the gateway, an add the bounds refuse is dropped and logged.
pub(crate) fn counter_add(name: &str, delta: u64) {
    with_env(|env| {
        let refusal = {
            let mut counters = env.counters.borrow_mut();
            if name.is_empty() || name.len() > metrics::MAX_NAME_BYTES {
                Some(format!(
                    "counter names are 1 to {} bytes",
                    metrics::MAX_NAME_BYTES
                ))
            } else if let Some(counter) = counters.get_mut(name) {
                *counter = counter.wrapping_add(delta);
                None
            } else if counters.len() >= metrics::MAX_COUNTERS {
                Some(format!(
                    "at most {} counters per plugin",
                    metrics::MAX_COUNTERS
                ))
            } else {
                counters.insert(name.to_owned(), delta);
                None
            }
        };
        if let Some(refusal) = refusal {
            env.warn(format!("counter-add refused: {refusal}"));
        }
    })
}

/// As in the gateway: see [`Env::set_log_field`].
pub(crate) fn log_field(name: &str, value: &str) -> Result<(), String> {
    with_env(|env| env.set_log_field(name, value))
}

pub(crate) fn now_ms() -> u64 {
    with_env(|env| env.now_ms.get())
}

pub(crate) fn random_bytes(len: u32) -> Vec<u8> {
    assert!(
        len as usize <= random::MAX_BYTES,
        "random-bytes allows at most {} bytes per call",
        random::MAX_BYTES
    );
    with_env(|env| {
        (0..len)
            .map(|_| env.next_random().to_le_bytes()[0])
            .collect()
    })
}

/// As in the gateway: see [`calls::Calls::start`].
pub(crate) fn call_start(req: CallRequest) -> Result<CallId, CallError> {
    with_env(|env| env.calls.borrow_mut().start(req, env.now_ms.get()))
}

/// As in the gateway: see [`Env::fleet_start`].
pub(crate) fn fleet_take(
    key: &str,
    bucket: Bucket,
    cost: u64,
    tag: &str,
) -> Result<FleetStarted<FleetAnswer>, FleetError> {
    with_env(|env| env.fleet_start(key, tag, FleetOpKind::Take { bucket, cost }))
}

/// As in the gateway: see [`Env::fleet_start`].
pub(crate) fn fleet_increment(
    key: &str,
    delta: i64,
    ttl_ms: Option<u64>,
    tag: &str,
) -> Result<FleetStarted<FleetAnswer>, FleetError> {
    let ttl = ttl_ms.map(std::time::Duration::from_millis);
    with_env(|env| env.fleet_start(key, tag, FleetOpKind::Increment { delta, ttl }))
}
