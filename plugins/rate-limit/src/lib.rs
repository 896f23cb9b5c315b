//! `rate-limit`: a token bucket per client (its IP, a request header, or the
//! consumer header `api-key` sets), kept in the host's shared state so every
//! instance of the plugin draws from the same buckets. A request that finds
//! its bucket empty gets `429` with `Retry-After`; every response, refused or
//! not, carries `RateLimit-Limit`, `RateLimit-Remaining` and
//! `RateLimit-Reset` (the draft IETF RateLimit header fields). For allowed
//! requests those values travel from `on_request` to `on_response` through
//! the request context.
//!
//! With `fleet = true` the buckets are the fleet's
//! ([`weir_sdk::fleet`]), shared by every gateway as the operator's mode for
//! the plugin says (`[plugin_limits.rate-limit] fleet`): a take answered at
//! once decides in `on_request`, as this gateway's buckets do; one that
//! waits (mode `strict`) makes the request wait, and `on_request_calls`
//! decides with its answer. Without it (the default) a request costs one
//! host call, to this gateway's shared state.
//!
//! Bucket keys are bounded: a client-chosen header value longer than
//! [`MAX_KEY_VALUE_BYTES`] is replaced by its SHA-256 digest, so clients
//! cannot make the host store arbitrarily long keys. If the host refuses a
//! take (an error, not an empty bucket) the request is let through and the
//! error logged: a broken limiter must not take the route down. The one
//! exception is the fleet's store out of reach with the operator's
//! `fleet_fallback = "closed"` ([`FleetError::Unavailable`]): the operator
//! chose to fail closed, so the request gets `503` with `Retry-After: 1`
//! (counted as `rate_limit_unavailable`).

use serde::Deserialize;
use sha2::{Digest, Sha256};
use weir_sdk::calls::CallResult;
use weir_sdk::fleet::{FleetError, FleetResult, Started};
use weir_sdk::state::{Bucket, BucketOutcome};
use weir_sdk::{Action, Phases, Plugin, Request, Response, ResponseAction, context, validate};

/// Client-chosen key material longer than this is hashed (bytes).
pub const MAX_KEY_VALUE_BYTES: usize = 128;

/// What identifies a client.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyBy {
    /// The client's IP address.
    #[default]
    Ip,
    /// The value of the request header named by `header`.
    Header,
    /// The consumer header set by `api-key` (`header` defaults to
    /// `x-consumer`).
    Consumer,
}

/// Configuration, as written in the route's `config` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Tokens in a full bucket: the burst a client may send at once.
    pub capacity: u64,
    /// Tokens regained per second: the sustained rate.
    pub refill_per_second: u64,
    /// What identifies a client.
    #[serde(default)]
    pub key: KeyBy,
    /// The header for `key = "header"` (required) or `"consumer"`.
    #[serde(default)]
    pub header: Option<String>,
    /// Take from the fleet's buckets ([`weir_sdk::fleet`]) rather than
    /// this gateway's shared state.
    #[serde(default)]
    pub fleet: bool,
}

/// The most tokens a bucket may hold; keeps every header value and the
/// host's arithmetic far from overflow.
pub const MAX_CAPACITY: u64 = 1_000_000_000;

/// The plugin.
pub struct RateLimit {
    bucket: Bucket,
    key: KeyBy,
    header: String,
    fleet: bool,
}

const CTX_LIMIT: &str = "limit";
const CTX_REMAINING: &str = "remaining";
const CTX_RESET: &str = "reset";

impl Plugin for RateLimit {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if !(1..=MAX_CAPACITY).contains(&config.capacity) {
            return Err(format!("capacity: must be 1..={MAX_CAPACITY}"));
        }
        if !(1..=MAX_CAPACITY).contains(&config.refill_per_second) {
            return Err(format!("refill_per_second: must be 1..={MAX_CAPACITY}"));
        }
        let header = match (config.key, config.header) {
            (KeyBy::Header, None) => {
                return Err("header: required when key = \"header\"".to_owned());
            }
            (KeyBy::Consumer, None) => "x-consumer".to_owned(),
            (KeyBy::Ip, Some(_)) => {
                return Err("header: only used with key = \"header\" or \"consumer\"".to_owned());
            }
            (_, header) => header.unwrap_or_default(),
        };
        if config.key != KeyBy::Ip {
            validate::header_name(&header).map_err(|e| format!("header: {e}"))?;
        }
        Ok(Self {
            bucket: Bucket {
                capacity: config.capacity,
                refill_per_second: config.refill_per_second,
            },
            key: config.key,
            header,
            fleet: config.fleet,
        })
    }

    fn phases(&self) -> Phases {
        Phases::REQUEST | Phases::RESPONSE
    }

    fn on_request(&mut self, req: &mut Request<'_>) -> Action {
        let key = self.bucket_key(req);
        if self.fleet {
            return match weir_sdk::fleet::take(&key, self.bucket, 1) {
                Ok(Started::Done(outcome)) => self.decide(outcome),
                Ok(Started::Pending(_)) => Action::Wait,
                Err(e) => fleet_failed(e),
            };
        }
        match weir_sdk::state::take_tokens(&key, self.bucket, 1) {
            Ok(outcome) => self.decide(outcome),
            Err(e) => allowed_despite(&e),
        }
    }

    /// The fleet's answer to the take `on_request` started (mode
    /// `strict`).
    fn on_request_calls(
        &mut self,
        _req: &mut Request<'_>,
        _calls: Vec<CallResult>,
        fleet: Vec<FleetResult>,
    ) -> Action {
        match fleet.first().map(FleetResult::bucket) {
            Some(Ok(outcome)) => self.decide(outcome),
            Some(Err(e)) => fleet_failed(e),
            None => allowed_despite("the fleet's answer to the take did not come"),
        }
    }

    fn on_response(&mut self, _req: &Request<'_>, resp: &mut Response<'_>) -> ResponseAction {
        for (ctx, header) in [
            (CTX_LIMIT, "ratelimit-limit"),
            (CTX_REMAINING, "ratelimit-remaining"),
            (CTX_RESET, "ratelimit-reset"),
        ] {
            if let Some(value) = context::get(ctx) {
                // Decimal numbers are always valid header values.
                let _ = resp.set_header(header, &value);
            }
        }
        ResponseAction::Continue
    }
}

impl RateLimit {
    /// Lets the request through, its bucket's state kept for
    /// `on_response`, or refuses it with 429.
    fn decide(&self, outcome: BucketOutcome) -> Action {
        if outcome.allowed {
            context::set(CTX_LIMIT, &self.bucket.capacity.to_string());
            context::set(CTX_REMAINING, &outcome.remaining.to_string());
            context::set(
                CTX_RESET,
                &self.seconds_until_full(outcome.remaining).to_string(),
            );
            return Action::Continue;
        }
        weir_sdk::metrics::counter_add("rate_limited", 1);
        let retry_after = retry_after_secs(&outcome);
        Action::respond(429)
            .header("retry-after", retry_after.to_string())
            .header("ratelimit-limit", self.bucket.capacity.to_string())
            .header("ratelimit-remaining", outcome.remaining.to_string())
            .header("ratelimit-reset", retry_after.to_string())
            .header("content-type", "application/json")
            .body("{\"error\":\"rate limit exceeded\"}")
            .into()
    }

    /// Namespaced per key kind, so a header value can never collide with an
    /// IP address's bucket. A missing header falls back to the client IP.
    fn bucket_key(&self, req: &Request<'_>) -> String {
        let from_header = match self.key {
            KeyBy::Ip => None,
            KeyBy::Header | KeyBy::Consumer => req.header(&self.header).filter(|v| !v.is_empty()),
        };
        match from_header {
            Some(value) if value.len() > MAX_KEY_VALUE_BYTES => {
                let digest = Sha256::digest(value.as_bytes());
                let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                format!("h#:{hex}")
            }
            Some(value) => format!("h:{value}"),
            None => format!("ip:{}", req.client_ip()),
        }
    }

    /// Seconds until a bucket holding `remaining` tokens is full again.
    fn seconds_until_full(&self, remaining: u64) -> u64 {
        (self.bucket.capacity - remaining.min(self.bucket.capacity))
            .div_ceil(self.bucket.refill_per_second)
    }
}

/// A take the host refused (an error, not an empty bucket): the request
/// goes on, and the error is logged and counted.
fn allowed_despite(error: &str) -> Action {
    weir_sdk::log::error(&format!(
        "token bucket unavailable, request allowed: {error}"
    ));
    weir_sdk::metrics::counter_add("rate_limit_errors", 1);
    Action::Continue
}

/// A fleet take that has no answer: `503` when the fleet's store is out of
/// reach and the operator chose to fail closed; otherwise let through, as
/// any refused take.
fn fleet_failed(error: FleetError) -> Action {
    if !matches!(error, FleetError::Unavailable(_)) {
        return allowed_despite(&error.to_string());
    }
    weir_sdk::metrics::counter_add("rate_limit_unavailable", 1);
    Action::respond(503)
        .header("retry-after", "1")
        .header("content-type", "application/json")
        .body("{\"error\":\"rate limit store unavailable\"}")
        .into()
}

/// Whole seconds, rounded up and at least 1: a client told "0" would retry
/// at once and be refused again.
fn retry_after_secs(outcome: &BucketOutcome) -> u64 {
    let ms = u64::try_from(outcome.retry_after.as_millis()).unwrap_or(u64::MAX);
    ms.div_ceil(1000).max(1)
}

weir_sdk::export!(RateLimit);

#[cfg(test)]
mod tests;
