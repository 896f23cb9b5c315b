//! `api-key`: authenticates a request by an API key carried in a header or
//! a query parameter (one of the two, configured), answers 401 with `WWW-Authenticate` when the key is
//! missing or unknown, and forwards the consumer the key belongs to as a
//! header (the one `rate-limit` can key on). The key itself is stripped
//! before forwarding, so upstreams never see credentials.
//!
//! Keys are compared in constant time: every configured key's SHA-256
//! digest is compared with the presented key's digest, without stopping at
//! the first match, so response timing reveals neither which key matched
//! nor how many leading bytes of a guess were right, nor a key's length.
//! Presented keys longer than [`MAX_KEY_BYTES`] are refused unhashed.

use std::collections::BTreeMap;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use weir_sdk::{Action, Phases, Plugin, Request, validate};

/// The longest key accepted, in configuration and on requests (bytes).
pub const MAX_KEY_BYTES: usize = 512;

/// The most keys one instance holds: each request compares against all of
/// them, so the bound keeps that cost fixed.
pub const MAX_KEYS: usize = 10_000;

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

/// The plugin: validated configuration with keys stored as digests.
pub struct ApiKey {
    keys: Vec<([u8; 32], String)>,
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
        let mut keys = Vec::with_capacity(config.keys.len());
        for (key, consumer) in &config.keys {
            if key.is_empty() || key.len() > MAX_KEY_BYTES {
                return Err(format!(
                    "keys: every key must be 1..={MAX_KEY_BYTES} bytes (consumer {consumer:?})"
                ));
            }
            validate::header_value(&config.consumer_header, consumer)
                .map_err(|e| format!("keys: consumer {consumer:?}: {e}"))?;
            keys.push((digest(key), consumer.clone()));
        }
        if config.realm.contains(['"', '\\']) {
            return Err("realm: must not contain '\"' or '\\'".to_owned());
        }
        let challenge = format!("ApiKey realm=\"{}\"", config.realm);
        validate::header_value("www-authenticate", &challenge)
            .map_err(|e| format!("realm: {e}"))?;
        Ok(Self {
            keys,
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
        match req.set_header(&self.consumer_header, &consumer) {
            Ok(()) => Action::Continue,
            // Names and consumers were validated in `new`; refuse rather
            // than forward an unauthenticated-looking request.
            Err(e) => {
                weir_sdk::log::error(&format!("could not set consumer header: {e}"));
                Action::respond(500).into()
            }
        }
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

    /// Compares against every key, always, in constant time per key.
    fn consumer_of(&self, presented: &str) -> Option<String> {
        let presented = digest(presented);
        let mut found = subtle::Choice::from(0);
        let mut index = 0u32;
        for (i, (key, _)) in self.keys.iter().enumerate() {
            let hit = key.ct_eq(&presented);
            // `i` < MAX_KEYS, which fits in u32.
            index.conditional_assign(&(i as u32), hit);
            found |= hit;
        }
        bool::from(found).then(|| self.keys[index as usize].1.clone())
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

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

weir_sdk::export!(ApiKey);

#[cfg(test)]
mod tests;
