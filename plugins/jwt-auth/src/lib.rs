//! `jwt-auth`: accepts a request only with a valid JWT bearer token, signed
//! with HS256 (a shared secret), RS256 (an RSA public key) or ES256 (a
//! P-256 public key), unexpired (`exp`), already valid (`nbf`), from the
//! configured issuer (`iss`) for the configured audience (`aud`), with a
//! configurable clock leeway. Chosen claims are forwarded upstream as
//! headers, and the token's subject (`sub`) names the request in its
//! access-log line (the field [`CONSUMER_FIELD`]; never the token). Failures
//! answer 401 with `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750
//! §3.1; a request with no token at all gets a bare `Bearer` challenge, as
//! that RFC asks).
//!
//! Keys come from the configuration (`hs256_secret`, `rs256_public_key`,
//! `es256_public_key` as PEM, `keys` as JWKs) and/or from a JWKS endpoint
//! (`jwks`): an upstream of the gateway that this plugin calls, whose keys
//! are shared by every instance through shared state and refreshed in the
//! background ([`jwks`]). A request whose token names a key id (`kid`) not
//! yet fetched waits for one fetch of the key set (at most one per
//! `min_refresh_interval`); when the key set cannot be fetched and none is
//! held, it gets **503** with `Retry-After` (the fault is the gateway's
//! side, not the client's credentials, and a 401 would make clients throw
//! away good tokens). Keys already fetched stay in use while the endpoint
//! is down.
//!
//! Which key checks a token: HS256 → the secret; a token with a `kid` → the
//! configured JWK with that `kid`, else (with `jwks`) the fetched key with
//! that `kid`; otherwise the configured key for its algorithm that has no
//! `kid` (a PEM key, or a JWK without `kid`). A key checks only the one
//! algorithm its type allows, so `alg` cannot steer a token to another.
//!
//! This module owns configuration and the request phases; keys live in
//! [`keys`] (and [`jwk`] for the JSON form), token decoding and claim checks
//! in [`token`]. Bounds: tokens over [`token::MAX_TOKEN_BYTES`] are refused
//! before decoding, key ids over [`jwk::MAX_KID_BYTES`] are refused,
//! forwarded claim values over [`MAX_CLAIM_HEADER_BYTES`] are not
//! forwarded, the leeway is at most [`MAX_LEEWAY_SECS`], and a key set keeps
//! at most [`jwk::MAX_KEYS`] keys from a document of at most
//! [`jwk::MAX_JWKS_BYTES`].

pub mod jwk;
pub mod jwks;
pub mod keys;
pub mod token;

use std::collections::BTreeMap;
use std::rc::Rc;

use serde::Deserialize;
use serde_json::Value;
use weir_sdk::calls::CallResult;
use weir_sdk::fleet::FleetResult;
use weir_sdk::{Action, Phases, Plugin, Request, validate};

use jwk::Jwk;
use jwks::{Jwks, JwksConfig, Lookup};
use keys::{Algorithm, Key, Keys};
use token::{Decoded, Refusal, Rules};

/// The largest clock leeway accepted, in seconds.
pub const MAX_LEEWAY_SECS: u64 = 600;
/// The longest claim value forwarded as a header, in bytes.
pub const MAX_CLAIM_HEADER_BYTES: usize = 4096;
/// The access-log field an accepted token's subject is named in.
pub const CONSUMER_FIELD: &str = "consumer";

/// Configuration, as written in the route's `config` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Shared secret for HS256 tokens (at least 32 bytes).
    #[serde(default)]
    pub hs256_secret: Option<String>,
    /// PEM public key for RS256 tokens (`PUBLIC KEY` or `RSA PUBLIC KEY`,
    /// at least 2048 bits).
    #[serde(default)]
    pub rs256_public_key: Option<String>,
    /// PEM public key for ES256 tokens (`PUBLIC KEY` on P-256).
    #[serde(default)]
    pub es256_public_key: Option<String>,
    /// Public keys as JWKs (RSA or EC P-256), each with a distinct `kid`
    /// (one may go without).
    #[serde(default)]
    pub keys: Vec<Jwk>,
    /// A JWKS endpoint to fetch keys from.
    #[serde(default)]
    pub jwks: Option<JwksConfig>,
    /// Required `iss` claim.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Required member of the `aud` claim.
    #[serde(default)]
    pub audience: Option<String>,
    /// Tolerated clock skew for `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// Refuse tokens without an `exp` claim.
    #[serde(default = "yes")]
    pub require_exp: bool,
    /// Claim name → request header it is forwarded in.
    #[serde(default)]
    pub forward_claims: BTreeMap<String, String>,
    /// The header carrying `Bearer <token>`.
    #[serde(default = "default_header")]
    pub header: String,
}

fn default_leeway() -> u64 {
    30
}

fn yes() -> bool {
    true
}

fn default_header() -> String {
    "authorization".to_owned()
}

/// The plugin.
pub struct JwtAuth {
    keys: Keys,
    jwks: Option<Jwks>,
    rules: Rules,
    forward_claims: Vec<(String, String)>,
    header: String,
}

/// The key a token is checked with.
enum KeyRef<'a> {
    Configured(&'a Key),
    Fetched(Rc<Key>),
}

impl std::ops::Deref for KeyRef<'_> {
    type Target = Key;
    fn deref(&self) -> &Key {
        match self {
            Self::Configured(key) => key,
            Self::Fetched(key) => key,
        }
    }
}

/// Where choosing a token's key ended, when no key was chosen.
enum NoKey {
    /// Refused (401) for this reason.
    Refused(Refusal),
    /// A key-set fetch was started: wait for it.
    Fetching,
    /// The key set cannot be had now (503).
    Unavailable,
}

impl Plugin for JwtAuth {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        let keys = Keys::new(
            config.hs256_secret,
            config.rs256_public_key,
            config.es256_public_key,
            config.keys,
            config.jwks.is_some(),
        )?;
        let jwks = config.jwks.map(Jwks::new).transpose()?;
        if config.leeway_seconds > MAX_LEEWAY_SECS {
            return Err(format!("leeway_seconds: at most {MAX_LEEWAY_SECS}"));
        }
        validate::header_name(&config.header).map_err(|e| format!("header: {e}"))?;
        for header in config.forward_claims.values() {
            validate::header_name(header).map_err(|e| format!("forward_claims: {e}"))?;
        }
        Ok(Self {
            keys,
            jwks,
            rules: Rules {
                issuer: config.issuer,
                audience: config.audience,
                leeway_secs: config.leeway_seconds,
                require_exp: config.require_exp,
            },
            forward_claims: config.forward_claims.into_iter().collect(),
            header: config.header,
        })
    }

    fn phases(&self) -> Phases {
        Phases::REQUEST
    }

    fn on_request(&mut self, req: &mut Request<'_>) -> Action {
        // Claim headers are the upstream's proof of identity: whatever the
        // client sent under those names goes, whether or not it is replaced.
        for (_, header) in &self.forward_claims {
            req.remove_header(header);
        }
        self.authenticate(req, true)
    }

    /// The key-set fetch this request waited for has ended: keep the keys,
    /// then check the token again (it is read from the request anew).
    fn on_request_calls(
        &mut self,
        req: &mut Request<'_>,
        results: Vec<CallResult>,
        _fleet: Vec<FleetResult>,
    ) -> Action {
        let now_ms = weir_sdk::time::now_ms();
        let fetched = match &mut self.jwks {
            Some(jwks) => jwks.absorb(results, now_ms),
            None => Err("no JWKS configured".to_owned()),
        };
        match fetched {
            Ok(()) => self.authenticate(req, false),
            Err(_) => self.unavailable(),
        }
    }

    /// A background refresh of the key set has ended (the request that
    /// started it used the stale keys it had).
    fn on_background_calls(
        &mut self,
        _req: &Request<'_>,
        results: Vec<CallResult>,
        _fleet: Vec<FleetResult>,
    ) {
        if let Some(jwks) = &mut self.jwks {
            // A failure is logged and noted; the stale keys stay in use.
            let _ = jwks.absorb(results, weir_sdk::time::now_ms());
        }
    }
}

impl JwtAuth {
    /// Checks the request's token and decides. `may_fetch` is false once
    /// the request has waited for a key-set fetch.
    fn authenticate(&mut self, req: &mut Request<'_>, may_fetch: bool) -> Action {
        let values = req.header_all(&self.header);
        let token = match values.as_slice() {
            [] => return missing_token(),
            [value] => match bearer_token(value) {
                Some(token) => token,
                None => return invalid_token("expected a Bearer token"),
            },
            _ => return invalid_token("more than one credential"),
        };
        let has_jwks = self.jwks.is_some();
        let keys = &self.keys;
        let decoded = match token::decode(token, |alg| {
            keys.supports(alg) || (has_jwks && alg != Algorithm::Hs256)
        }) {
            Ok(decoded) => decoded,
            Err(reason) => return invalid_token(reason),
        };
        let now_ms = weir_sdk::time::now_ms();
        let key = match key_for(&self.keys, self.jwks.as_mut(), &decoded, now_ms, may_fetch) {
            Ok(key) => key,
            Err(NoKey::Refused(reason)) => return invalid_token(reason),
            Err(NoKey::Fetching) => return Action::Wait,
            Err(NoKey::Unavailable) => return self.unavailable(),
        };
        let claims = match decoded.verify(&key, &self.rules, now_ms / 1000) {
            Ok(claims) => claims,
            Err(reason) => return invalid_token(reason),
        };
        for (claim, header) in &self.forward_claims {
            let Some(value) = claims.get(claim) else {
                continue;
            };
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if text.len() > MAX_CLAIM_HEADER_BYTES || req.set_header(header, &text).is_err() {
                weir_sdk::log::warn(&format!(
                    "claim {claim:?} not forwarded: too long or not a valid header value"
                ));
            }
        }
        // RFC 7519 §4.1.2: `sub` is a string. One the access log cannot
        // hold (over its size, a control character) is left out of it,
        // and the error does not quote it.
        if let Some(Value::String(sub)) = claims.get("sub")
            && let Err(e) = weir_sdk::log::set_field(CONSUMER_FIELD, sub)
        {
            weir_sdk::log::warn(&format!("subject not in the access log: {e}"));
        }
        Action::Continue
    }

    /// 503: the key set could not be fetched and no key for the token is
    /// held. Not a verdict on the credentials, so no `WWW-Authenticate`.
    fn unavailable(&self) -> Action {
        weir_sdk::metrics::counter_add("jwt_unavailable", 1);
        let retry_after = self.jwks.as_ref().map_or(1, |jwks| {
            jwks.retry_after().as_millis().div_ceil(1000).max(1)
        });
        Action::respond(503)
            .header("retry-after", retry_after.to_string())
            .header("content-type", "application/json")
            .body("{\"error\":\"signing keys unavailable\"}")
            .into()
    }
}
/// The key that checks `token` (see the crate documentation for the
/// order).
fn key_for<'k>(
    keys: &'k Keys,
    jwks: Option<&mut Jwks>,
    token: &Decoded<'_>,
    now_ms: u64,
    may_fetch: bool,
) -> Result<KeyRef<'k>, NoKey> {
    if token.alg != Algorithm::Hs256
        && let Some(kid) = &token.kid
    {
        if let Some(key) = keys.by_kid(kid) {
            return Ok(KeyRef::Configured(key));
        }
        if let Some(jwks) = jwks {
            return match jwks.key(kid, now_ms, may_fetch) {
                Lookup::Found(key) => Ok(KeyRef::Fetched(key)),
                Lookup::Fetching => Err(NoKey::Fetching),
                Lookup::Unknown => Err(NoKey::Refused("unknown key id")),
                Lookup::Unavailable => Err(NoKey::Unavailable),
            };
        }
    }
    match keys.without_kid(token.alg) {
        Some(key) => Ok(KeyRef::Configured(key)),
        None if token.kid.is_some() => Err(NoKey::Refused("unknown key id")),
        None => Err(NoKey::Refused("token has no key id")),
    }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is
/// case-insensitive (RFC 9110 §11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim_start();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn missing_token() -> Action {
    weir_sdk::metrics::counter_add("jwt_rejected", 1);
    Action::respond(401)
        .header("www-authenticate", "Bearer")
        .header("content-type", "application/json")
        .body("{\"error\":\"missing token\"}")
        .into()
}

fn invalid_token(reason: &str) -> Action {
    weir_sdk::metrics::counter_add("jwt_rejected", 1);
    Action::respond(401)
        .header(
            "www-authenticate",
            format!("Bearer error=\"invalid_token\", error_description=\"{reason}\""),
        )
        .header("content-type", "application/json")
        .body(format!(
            "{{\"error\":\"invalid_token\",\"error_description\":\"{reason}\"}}"
        ))
        .into()
}

weir_sdk::export!(JwtAuth);

#[cfg(test)]
mod tests;
