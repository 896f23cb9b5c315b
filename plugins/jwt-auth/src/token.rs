//! Decoding and checking a compact JWS (RFC 7515) carrying JWT claims
//! (RFC 7519): split and decode ([`decode`]), then, with the key its `alg`
//! and `kid` chose, verify the signature and check the registered claims
//! ([`Decoded::verify`]). Pure functions of the token, the key, the rules and
//! the time, so they are tested without a request.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::jwk::MAX_KID_BYTES;
use crate::keys::{Algorithm, Key};

/// The longest token accepted, in bytes; longer ones are refused before
/// any decoding (a JWT of a few claims is well under 1 KiB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The claim checks besides the signature.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Required `iss`, if any.
    pub issuer: Option<String>,
    /// Required member of `aud`, if any.
    pub audience: Option<String>,
    /// Tolerated clock skew for `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// Refuse tokens without `exp`.
    pub require_exp: bool,
}

/// Why a token was refused; the text goes into `error_description`, so it
/// says what is wrong without echoing token contents.
pub type Refusal = &'static str;

/// A token split and decoded up to its signature: what choosing its key
/// needs (`alg`, `kid`), and what checking it with that key needs.
#[derive(Debug)]
pub struct Decoded<'a> {
    /// The algorithm its header names, one the plugin may check.
    pub alg: Algorithm,
    /// Its header's key id, if any (at most [`MAX_KID_BYTES`]).
    pub kid: Option<String>,
    /// `header.payload`, the bytes the signature covers.
    signed: &'a [u8],
    payload_b64: &'a str,
    signature: Vec<u8>,
}

/// Splits and decodes `token`, refusing it when it is too long, malformed,
/// names an algorithm `supported` refuses, or has a critical header.
pub fn decode(token: &str, supported: impl Fn(Algorithm) -> bool) -> Result<Decoded<'_>, Refusal> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err("token too long");
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed token");
    };
    let mut header = decode_object(header_b64).ok_or("malformed token header")?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(Algorithm::from_name)
        .filter(|alg| supported(*alg))
        .ok_or("unsupported algorithm")?;
    // RFC 7515 §4.1.11: extensions we do not understand must be refused.
    if header.contains_key("crit") {
        return Err("unsupported critical header");
    }
    let kid = match header.remove("kid") {
        None => None,
        Some(Value::String(kid)) if !kid.is_empty() && kid.len() <= MAX_KID_BYTES => Some(kid),
        Some(_) => return Err("invalid key id"),
    };
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| "malformed signature")?;
    let signed_len = header_b64.len() + 1 + payload_b64.len();
    Ok(Decoded {
        alg,
        kid,
        signed: &token.as_bytes()[..signed_len],
        payload_b64,
        signature,
    })
}

impl Decoded<'_> {
    /// Checks the signature with `key`, then the claims against `rules` at
    /// `now_secs`, and returns the claims. A key of another algorithm than
    /// the token's is refused, whatever the signature.
    pub fn verify(
        &self,
        key: &Key,
        rules: &Rules,
        now_secs: u64,
    ) -> Result<Map<String, Value>, Refusal> {
        if key.algorithm() != self.alg || !key.verify(self.signed, &self.signature) {
            return Err("invalid signature");
        }
        let claims = decode_object(self.payload_b64).ok_or("malformed claims")?;
        check_claims(&claims, rules, now_secs)?;
        Ok(claims)
    }
}

fn decode_object(b64: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(b64).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

fn check_claims(claims: &Map<String, Value>, rules: &Rules, now_secs: u64) -> Result<(), Refusal> {
    let now = now_secs as f64;
    let leeway = rules.leeway_secs as f64;
    match claims.get("exp") {
        // RFC 7519 §4.1.4: the token must not be accepted on or after exp.
        Some(exp) => {
            let exp = exp.as_f64().ok_or("malformed exp claim")?;
            if now >= exp + leeway {
                return Err("token expired");
            }
        }
        None if rules.require_exp => return Err("token has no exp claim"),
        None => {}
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf.as_f64().ok_or("malformed nbf claim")?;
        if now + leeway < nbf {
            return Err("token not yet valid");
        }
    }
    if let Some(issuer) = &rules.issuer
        && claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str())
    {
        return Err("wrong issuer");
    }
    if let Some(audience) = &rules.audience {
        // RFC 7519 §4.1.3: aud is a string or an array of strings.
        let matches = match claims.get("aud") {
            Some(Value::String(aud)) => aud == audience,
            Some(Value::Array(auds)) => auds.iter().any(|aud| aud.as_str() == Some(audience)),
            _ => false,
        };
        if !matches {
            return Err("wrong audience");
        }
    }
    Ok(())
}
