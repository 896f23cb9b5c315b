//! `api-key`: authenticates a request by an API key carried in a header or
//! a query parameter (one of the two, configured), answers 401 with `WWW-Authenticate` when the key is
//! missing or unknown, and forwards the consumer the key belongs to as a
//! header (the one `rate-limit` can key on) and in the request's
//! access-log line (the field [`CONSUMER_FIELD`]). The key itself is
//! stripped before forwarding, so upstreams never see credentials, and is
//! never logged.
//!
//! Keys are looked up without leaking them through timing: the presented
//! key is hashed with SipHash-2-4 under a secret 128-bit key drawn from the
//! host's CSPRNG when the instance starts, the configured keys are found by
//! that hash, and a candidate is confirmed by a constant-time comparison.
//! What the lookup's timing depends on is the secret-keyed hash, which an
//! attacker can neither compute nor steer, so it reveals neither which key
//! matched nor how many leading bytes of a guess were right. The cost per
//! request does not grow with the number of keys. Presented keys longer
//! than [`MAX_KEY_BYTES`] are refused unhashed.

use std::collections::BTreeMap;
use std::hash::Hasher;

use serde::Deserialize;
use siphasher::sip::SipHasher24;
use subtle::ConstantTimeEq;
use weir_sdk::{Action, Phases, Plugin, Request, validate};

/// The longest key accepted, in configuration and on requests (bytes).
pub const MAX_KEY_BYTES: usize = 512;

/// The most keys one instance holds (they are all in its memory).
pub const MAX_KEYS: usize = 10_000;

/// The access-log field a let-through request's consumer is named in.
pub const CONSUMER_FIELD: &str = "consumer";

/// Raw configuration, as written in the route's `config` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Key → consumer name. At least one.
    pub keys: BTreeMap<String, String>,
    /// Where the key is carried.
    #[serde(default)]
    pub source: Source,
    /// The header or query parameter name; defaults to `x-api-key` for a
    /// header, `api_key` for a query parameter.
    #[serde(default)]
    pub name: Option<String>,
    /// Header the consumer name is forwarded in (replacing any value the
    /// client sent, so it cannot be spoofed).
    #[serde(default = "default_consumer_header")]
    pub consumer_header: String,
    /// Remove the key (header and query parameter) before forwarding.
    #[serde(default = "yes")]
    pub remove_key: bool,
    /// The realm named in `WWW-Authenticate`.
    #[serde(default = "default_realm")]
    pub realm: String,
}

/// Where a request carries its key.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A request header.
    #[default]
    Header,
    /// A query parameter (percent-decoded).
    Query,
}

fn default_consumer_header() -> String {
    "x-consumer".to_owned()
}

fn default_realm() -> String {
    "weir".to_owned()
}

fn yes() -> bool {
    true
}

/// The plugin: validated configuration with keys in a table by their
/// secret-keyed hash.
pub struct ApiKey {
    /// `(hash, key, consumer)`, sorted by hash.
    keys: Vec<(u64, String, String)>,
    /// The SipHash key, secret to this instance.
    secret: (u64, u64),
    source: Source,
    name: String,
    consumer_header: String,
    remove_key: bool,
    challenge: String,
}

impl Plugin for ApiKey {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.keys.is_empty() {
            return Err("keys: at least one key is required".to_owned());
        }
        if config.keys.len() > MAX_KEYS {
            return Err(format!("keys: at most {MAX_KEYS} keys per route"));
        }
        let name = match (config.source, config.name) {
            (Source::Header, None) => "x-api-key".to_owned(),
            (Source::Query, None) => "api_key".to_owned(),
            (Source::Header, Some(name)) => {
                validate::header_name(&name).map_err(|e| format!("name: {e}"))?;
                name
            }
            (Source::Query, Some(name)) => {
                if name.is_empty() || name.contains(['&', '=', '#']) {
                    return Err(format!(
                        "name: {name:?} is not a usable query parameter name"
                    ));
                }
                name
            }
        };
        validate::header_name(&config.consumer_header)
            .map_err(|e| format!("consumer_header: {e}"))?;
        let secret = (weir_sdk::random::u64(), weir_sdk::random::u64());
        let mut keys = Vec::with_capacity(config.keys.len());
        for (key, consumer) in config.keys {
            if key.is_empty() || key.len() > MAX_KEY_BYTES {
                return Err(format!(
                    "keys: every key must be 1..={MAX_KEY_BYTES} bytes (consumer {consumer:?})"
                ));
            }
            validate::header_value(&config.consumer_header, &consumer)
                .and_then(|()| validate::log_field(CONSUMER_FIELD, &consumer))
                .map_err(|e| format!("keys: consumer {consumer:?}: {e}"))?;
            keys.push((keyed_hash(secret, &key), key, consumer));
        }
        keys.sort_unstable_by_key(|k| k.0);
        if config.realm.contains(['"', '\\']) {
            return Err("realm: must not contain '\"' or '\\'".to_owned());
        }
        let challenge = format!("ApiKey realm=\"{}\"", config.realm);
        validate::header_value("www-authenticate", &challenge)
            .map_err(|e| format!("realm: {e}"))?;
        Ok(Self {
            keys,
            secret,
            source: config.source,
            name,
            consumer_header: config.consumer_header,
            remove_key: config.remove_key,
            challenge,
        })
    }

    fn phases(&self) -> Phases {
        Phases::REQUEST
    }

    fn on_request(&mut self, req: &mut Request<'_>) -> Action {
        let presented = match self.presented_key(req) {
            Ok(key) => key,
            Err(reason) => return self.deny(reason),
        };
        let Some(consumer) = self.consumer_of(&presented) else {
            return self.deny("invalid api key");
        };
        if self.remove_key {
            self.strip_key(req);
        }
        if let Err(e) = req.set_header(&self.consumer_header, consumer) {
            // Names and consumers were validated in `new`; refuse rather
            // than forward an unauthenticated-looking request.
            weir_sdk::log::error(&format!("could not set consumer header: {e}"));
            return Action::respond(500).into();
        }
        // Consumers were checked as field values in `new`: only the
        // chain's field count can refuse this, and the request still goes.
        if let Err(e) = weir_sdk::log::set_field(CONSUMER_FIELD, consumer) {
            weir_sdk::log::warn(&format!("consumer not in the access log: {e}"));
        }
        Action::Continue
    }
}

impl ApiKey {
    /// The key from the configured header or query parameter.
    fn presented_key(&self, req: &Request<'_>) -> Result<String, &'static str> {
        let key = match self.source {
            Source::Header => {
                let mut values = req.header_all(&self.name);
                // Two values are ambiguous: which one would the upstream trust?
                if values.len() > 1 {
                    return Err("more than one api key");
                }
                values.pop()
            }
            Source::Query => req.query_param(&self.name),
        };
        match key {
            None => Err("missing api key"),
            Some(key) if key.is_empty() => Err("missing api key"),
            Some(key) if key.len() > MAX_KEY_BYTES => Err("invalid api key"),
            Some(key) => Ok(key),
        }
    }

    /// The consumer of the presented key: found by its secret-keyed hash,
    /// confirmed in constant time (keys whose hashes collide are all
    /// compared).
    fn consumer_of(&self, presented: &str) -> Option<&str> {
        let hash = keyed_hash(self.secret, presented);
        let first = self.keys.partition_point(|k| k.0 < hash);
        self.keys[first..]
            .iter()
            .take_while(|k| k.0 == hash)
            .find(|k| bool::from(k.1.as_bytes().ct_eq(presented.as_bytes())))
            .map(|k| k.2.as_str())
    }

    fn strip_key(&self, req: &mut Request<'_>) {
        match self.source {
            Source::Header => req.remove_header(&self.name),
            Source::Query => {
                // Removing pairs from a query the host accepted keeps it
                // valid, so this cannot fail.
                let _ = req.remove_query_param(&self.name);
            }
        }
    }

    fn deny(&self, reason: &str) -> Action {
        weir_sdk::metrics::counter_add("api_key_rejected", 1);
        Action::respond(401)
            .header("www-authenticate", self.challenge.as_str())
            .header("content-type", "application/json")
            .body(format!("{{\"error\":\"{reason}\"}}"))
            .into()
    }
}

fn keyed_hash(secret: (u64, u64), key: &str) -> u64 {
    let mut h = SipHasher24::new_with_keys(secret.0, secret.1);
    h.write(key.as_bytes());
    h.finish()
}

weir_sdk::export!(ApiKey);

#[cfg(test)]
mod tests;
