//! `jwt-auth`: accepts a request only with a valid JWT bearer token, signed
//! with HS256 (a shared secret) or RS256 (an RSA public key), unexpired
//! (`exp`), already valid (`nbf`), from the configured issuer (`iss`) for
//! the configured audience (`aud`), with a configurable clock leeway.
//! Chosen claims are forwarded upstream as headers, and the token's
//! subject (`sub`) names the request in its access-log line (the field
//! [`CONSUMER_FIELD`]; never the token). Failures answer 401 with
//! `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750 §3.1; a
//! request with no token at all gets a bare `Bearer` challenge, as that RFC
//! asks).
//!
//! This module owns configuration and the request phase; signature keys
//! live in [`keys`], token decoding and claim checks in [`token`].
//! Bounds: tokens over [`token::MAX_TOKEN_BYTES`] are refused before
//! decoding, forwarded claim values over [`MAX_CLAIM_HEADER_BYTES`] are not
//! forwarded, and the leeway is at most [`MAX_LEEWAY_SECS`].

pub mod keys;
pub mod token;

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use weir_sdk::{Action, Phases, Plugin, Request, validate};

use keys::Keys;
use token::Rules;

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
    rules: Rules,
    forward_claims: Vec<(String, String)>,
    header: String,
}

impl Plugin for JwtAuth {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        let keys = Keys::new(config.hs256_secret, config.rs256_public_key)?;
        if config.leeway_seconds > MAX_LEEWAY_SECS {
            return Err(format!("leeway_seconds: at most {MAX_LEEWAY_SECS}"));
        }
        validate::header_name(&config.header).map_err(|e| format!("header: {e}"))?;
        for header in config.forward_claims.values() {
            validate::header_name(header).map_err(|e| format!("forward_claims: {e}"))?;
        }
        Ok(Self {
            keys,
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
        let values = req.header_all(&self.header);
        let token = match values.as_slice() {
            [] => return missing_token(),
            [value] => match bearer_token(value) {
                Some(token) => token,
                None => return invalid_token("expected a Bearer token"),
            },
            _ => return invalid_token("more than one credential"),
        };
        let claims = match token::verify(token, &self.keys, &self.rules, weir_sdk::time::now_secs())
        {
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
