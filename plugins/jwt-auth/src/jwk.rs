//! JSON Web Keys (RFC 7517) and key sets: one JWK turned into a [`Key`],
//! and a JWKS document, as an identity provider serves it, read into a
//! bounded [`KeySet`]. Only signature keys this plugin can use are kept: an
//! RSA key (`kty: "RSA"`, `n`, `e`) for RS256 and a P-256 key (`kty:
//! "EC"`, `crv: "P-256"`, `x`, `y`) for ES256 (RFC 7518 §6). Symmetric keys
//! (`kty: "oct"`) are never taken from a key set: a published HMAC secret
//! would let anyone sign.
//!
//! Members this plugin does not use (`x5c`, `x5t`, …) are ignored, as
//! RFC 7517 §4 asks. Everything read from the network is bounded: the
//! document's size ([`MAX_JWKS_BYTES`]), the keys kept ([`MAX_KEYS`]), a key
//! id's length ([`MAX_KID_BYTES`]) and an RSA modulus ([`MAX_JWK_RSA_BITS`]).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::BoxedUint;
use serde::{Deserialize, Serialize};

use crate::keys::Key;

/// The largest JWKS document read, in bytes.
pub const MAX_JWKS_BYTES: usize = 128 * 1024;
/// The most keys kept from one JWKS document; the rest are ignored.
pub const MAX_KEYS: usize = 64;
/// The longest key id (`kid`) accepted, in bytes, in a token or a JWK.
pub const MAX_KID_BYTES: usize = 128;
/// The largest RSA modulus accepted in a JWK, in bits: keeps a key set
/// of [`MAX_KEYS`] keys within one shared-state value, and the cost of one
/// verification bounded.
pub const MAX_JWK_RSA_BITS: usize = 4096;

/// One JWK, with the members this plugin reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Jwk {
    /// Key type: `RSA` or `EC`.
    pub kty: String,
    /// Key id, matched against a token's `kid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Intended use: absent or `sig`.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// The one algorithm the key is for, if it says: `RS256` or `ES256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Key operations, if it says: must include `verify`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ops: Option<Vec<String>>,
    /// EC curve: `P-256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// EC x coordinate, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC y coordinate, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// RSA modulus, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA public exponent, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
}

impl Jwk {
    /// The verification key, or why this JWK cannot be one.
    pub fn to_key(&self) -> Result<Key, String> {
        if let Some(kid) = &self.kid
            && (kid.is_empty() || kid.len() > MAX_KID_BYTES)
        {
            return Err(format!("kid: 1..={MAX_KID_BYTES} bytes"));
        }
        if self.use_.as_deref().is_some_and(|u| u != "sig") {
            return Err("not a signature key (use is not \"sig\")".to_owned());
        }
        if let Some(ops) = &self.key_ops
            && !ops.iter().any(|op| op == "verify")
        {
            return Err("not a verification key (key_ops lacks \"verify\")".to_owned());
        }
        let expected_alg = match self.kty.as_str() {
            "RSA" => "RS256",
            "EC" => "ES256",
            other => return Err(format!("unsupported key type {other:?} (RSA or EC)")),
        };
        if let Some(alg) = &self.alg
            && alg != expected_alg
        {
            return Err(format!(
                "unsupported alg {alg:?} for a {} key ({expected_alg})",
                self.kty
            ));
        }
        match self.kty.as_str() {
            "RSA" => {
                let n = b64_member("n", self.n.as_deref(), MAX_JWK_RSA_BITS / 8 + 1)?;
                let e = b64_member("e", self.e.as_deref(), 8)?;
                let key = rsa::PublicKey::new(
                    BoxedUint::from_be_slice_vartime(&n),
                    BoxedUint::from_be_slice_vartime(&e),
                )
                .map_err(|e| format!("not a usable RSA key: {e}"))?;
                Key::rsa(key, MAX_JWK_RSA_BITS)
            }
            _ => {
                if self.crv.as_deref() != Some("P-256") {
                    return Err("crv: only P-256 is supported".to_owned());
                }
                let x = b64_member("x", self.x.as_deref(), 32)?;
                let y = b64_member("y", self.y.as_deref(), 32)?;
                if x.len() != 32 || y.len() != 32 {
                    return Err("x and y: 32 bytes each for P-256".to_owned());
                }
                let mut sec1 = [0u8; 65];
                sec1[0] = 0x04; // uncompressed point (SEC 1 §2.3.3)
                sec1[1..33].copy_from_slice(&x);
                sec1[33..].copy_from_slice(&y);
                p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                    .map(Key::Ec)
                    .map_err(|_| "x, y: not a point of P-256".to_owned())
            }
        }
    }

    /// The members that make the key, for keeping a key set small: the
    /// rest (`use`, `key_ops`, `alg`) were checked by [`Jwk::to_key`].
    fn essential(&self) -> Self {
        Self {
            kty: self.kty.clone(),
            kid: self.kid.clone(),
            use_: None,
            alg: None,
            key_ops: None,
            crv: self.crv.clone(),
            x: self.x.clone(),
            y: self.y.clone(),
            n: self.n.clone(),
            e: self.e.clone(),
        }
    }
}

/// A base64url member of at most `max` bytes once decoded.
fn b64_member(name: &str, value: Option<&str>, max: usize) -> Result<Vec<u8>, String> {
    let value = value.ok_or_else(|| format!("{name}: missing"))?;
    // Four characters carry three bytes: a longer text is over `max` anyway.
    if value.len() > max.div_ceil(3) * 4 {
        return Err(format!("{name}: longer than {max} bytes"));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| format!("{name}: not base64url"))?;
    if bytes.is_empty() || bytes.len() > max {
        return Err(format!("{name}: 1..={max} bytes"));
    }
    Ok(bytes)
}

/// The usable keys of a JWKS document, each with a key id, in the
/// document's order: what is kept in shared state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct KeySet {
    /// At most [`MAX_KEYS`], key ids distinct.
    pub keys: Vec<Jwk>,
}

/// What reading a JWKS document found besides its usable keys.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Keys left out: no `kid`, a duplicate `kid`, or not usable (type,
    /// curve, size, use).
    pub unusable: usize,
    /// Usable keys past [`MAX_KEYS`].
    pub over_limit: usize,
}

/// Reads a JWKS document (RFC 7517 §5) into its usable keys. An error says
/// why the document as a whole is refused (too large, not JSON, no `keys`
/// array); keys that cannot be used are counted in [`Skipped`], not errors,
/// so one odd key (an encryption key, another curve) does not hide the
/// others. Keys without `kid` are skipped: a token is matched to a fetched
/// key by its id.
pub fn parse_jwks(body: &[u8]) -> Result<(KeySet, Skipped), String> {
    if body.len() > MAX_JWKS_BYTES {
        return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
    }
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document = serde_json::from_slice(body)
        .map_err(|_| "not a JWKS document (JSON with a \"keys\" array)")?;
    let mut set = KeySet::default();
    let mut skipped = Skipped::default();
    for value in document.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            skipped.unusable += 1;
            continue;
        };
        let usable =
            jwk.kid.is_some() && jwk.to_key().is_ok() && !set.keys.iter().any(|k| k.kid == jwk.kid);
        if !usable {
            skipped.unusable += 1;
        } else if set.keys.len() == MAX_KEYS {
            skipped.over_limit += 1;
        } else {
            set.keys.push(jwk.essential());
        }
    }
    Ok((set, skipped))
}
