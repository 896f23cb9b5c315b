//! Verification keys and the one function that checks a signature with
//! them: an HS256 shared secret, RS256 public keys (RSA) and ES256 public
//! keys (ECDSA on P-256). The keys given in the configuration (a secret, PEM
//! public keys, JWKs) are parsed and checked once at deploy time here; keys
//! fetched from a JWKS are parsed by [`jwk`](crate::jwk) into the same
//! [`Key`].
//!
//! Only these three algorithms exist, and every key is bound to exactly one
//! of them by its type (a secret to HS256, an RSA key to RS256, a P-256 key
//! to ES256): the token's `alg` picks which keys may check it, never the
//! other way round. So `none`, and the classic confusion of an HS256 token
//! "signed" with a public key's text, cannot happen.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use rsa::PublicKey;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use rsa::traits::PublicKeyParts;
use sha2::Sha256;

use crate::jwk::Jwk;

/// The shortest HS256 secret accepted: RFC 7518 §3.2 requires a key at
/// least as long as the hash output (256 bits).
pub const MIN_HS256_SECRET_BYTES: usize = 32;
/// The smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// The longest PEM text accepted for a public key, in bytes.
pub const MAX_PEM_BYTES: usize = 16 * 1024;
/// The most JWKs the configuration may list.
pub const MAX_CONFIG_JWKS: usize = 64;

/// A signature algorithm the plugin verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC with SHA-256.
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// ECDSA on P-256 with SHA-256 (RFC 7518 §3.4: the signature is the
    /// 64 bytes of `r` and `s`, not DER).
    Es256,
}

impl Algorithm {
    /// The algorithm named by a token's `alg`, if supported.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "HS256" => Some(Self::Hs256),
            "RS256" => Some(Self::Rs256),
            "ES256" => Some(Self::Es256),
            _ => None,
        }
    }

    /// The JWA name (`alg`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
        }
    }
}

/// One verification key, bound to the algorithm its type allows.
pub enum Key {
    /// An HS256 shared secret.
    Hmac(Vec<u8>),
    /// An RS256 public key.
    Rsa(VerifyingKey<Sha256>),
    /// An ES256 public key.
    Ec(p256::ecdsa::VerifyingKey),
}

impl Key {
    /// The one algorithm this key checks.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Hmac(_) => Algorithm::Hs256,
            Self::Rsa(_) => Algorithm::Rs256,
            Self::Ec(_) => Algorithm::Es256,
        }
    }

    /// An RS256 key from an RSA public key of at least [`MIN_RSA_BITS`]
    /// and at most `max_bits`.
    pub fn rsa(key: PublicKey, max_bits: usize) -> Result<Self, String> {
        let bits = key.n().bit_width() as usize;
        if bits < MIN_RSA_BITS {
            return Err(format!(
                "a {bits}-bit key is too weak (at least {MIN_RSA_BITS} bits)"
            ));
        }
        if bits > max_bits {
            return Err(format!("a {bits}-bit key is over {max_bits} bits"));
        }
        Ok(Self::Rsa(VerifyingKey::<Sha256>::new(key)))
    }

    /// Checks `signature` over `signed` (the token's `header.payload`).
    /// HMAC tags are compared in constant time by `verify_slice`; an ES256
    /// signature that is not exactly 64 bytes (e.g. DER) is refused.
    pub fn verify(&self, signed: &[u8], signature: &[u8]) -> bool {
        match self {
            Self::Hmac(secret) => {
                let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
                    .expect("HMAC accepts keys of any length");
                mac.update(signed);
                mac.verify_slice(signature).is_ok()
            }
            Self::Rsa(key) => {
                Signature::try_from(signature).is_ok_and(|sig| key.verify(signed, &sig).is_ok())
            }
            Self::Ec(key) => {
                signature.len() == 64
                    && p256::ecdsa::Signature::from_slice(signature)
                        .is_ok_and(|sig| key.verify(signed, &sig).is_ok())
            }
        }
    }
}

/// The keys given in the configuration.
pub struct Keys {
    hs256: Option<Key>,
    /// The PEM public keys: at most one per algorithm, without a key id.
    rs256: Option<Key>,
    es256: Option<Key>,
    /// The configured JWKs, with their key ids when they have one.
    jwks: Vec<(Option<String>, Key)>,
}

impl Keys {
    /// Checks and parses the configured keys. `jwks` tells whether keys
    /// may also come from a JWKS endpoint: without one, at least one key
    /// must be configured.
    pub fn new(
        hs256_secret: Option<String>,
        rs256_public_key: Option<String>,
        es256_public_key: Option<String>,
        jwks: Vec<Jwk>,
        has_jwks_endpoint: bool,
    ) -> Result<Self, String> {
        if hs256_secret.is_none()
            && rs256_public_key.is_none()
            && es256_public_key.is_none()
            && jwks.is_empty()
            && !has_jwks_endpoint
        {
            return Err(
                "no key: give hs256_secret, rs256_public_key, es256_public_key, keys or jwks"
                    .to_owned(),
            );
        }
        let hs256 = match hs256_secret {
            Some(secret) if secret.len() < MIN_HS256_SECRET_BYTES => {
                return Err(format!(
                    "hs256_secret: at least {MIN_HS256_SECRET_BYTES} bytes (RFC 7518 §3.2)"
                ));
            }
            other => other.map(|s| Key::Hmac(s.into_bytes())),
        };
        let rs256 = rs256_public_key
            .map(|pem| parse_rsa_public_key(&pem).map_err(|e| format!("rs256_public_key: {e}")))
            .transpose()?;
        let es256 = es256_public_key
            .map(|pem| parse_ec_public_key(&pem).map_err(|e| format!("es256_public_key: {e}")))
            .transpose()?;
        if jwks.len() > MAX_CONFIG_JWKS {
            return Err(format!("keys: at most {MAX_CONFIG_JWKS} keys"));
        }
        let mut parsed: Vec<(Option<String>, Key)> = Vec::with_capacity(jwks.len());
        for (i, jwk) in jwks.iter().enumerate() {
            let key = jwk.to_key().map_err(|e| format!("keys[{i}]: {e}"))?;
            let kid = jwk.kid.clone();
            if parsed.iter().any(|(k, _)| *k == kid) {
                return Err(match kid {
                    Some(kid) => format!("keys[{i}]: key id {kid:?} is listed twice"),
                    None => format!(
                        "keys[{i}]: only one key may go without a key id (kid); give each a kid"
                    ),
                });
            }
            parsed.push((kid, key));
        }
        Ok(Self {
            hs256,
            rs256,
            es256,
            jwks: parsed,
        })
    }

    /// Whether a configured key checks `alg`.
    pub fn supports(&self, alg: Algorithm) -> bool {
        self.pem(alg).is_some() || self.jwks.iter().any(|(_, key)| key.algorithm() == alg)
    }

    /// The configured JWK with this key id.
    pub fn by_kid(&self, kid: &str) -> Option<&Key> {
        self.jwks
            .iter()
            .find(|(k, _)| k.as_deref() == Some(kid))
            .map(|(_, key)| key)
    }

    /// The configured key for `alg` that has no key id: the secret or PEM
    /// key, else a JWK without `kid`.
    pub fn without_kid(&self, alg: Algorithm) -> Option<&Key> {
        self.pem(alg).or_else(|| {
            self.jwks
                .iter()
                .find(|(kid, key)| kid.is_none() && key.algorithm() == alg)
                .map(|(_, key)| key)
        })
    }

    fn pem(&self, alg: Algorithm) -> Option<&Key> {
        match alg {
            Algorithm::Hs256 => self.hs256.as_ref(),
            Algorithm::Rs256 => self.rs256.as_ref(),
            Algorithm::Es256 => self.es256.as_ref(),
        }
    }
}

/// Reads a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) or `RSA PUBLIC KEY`
/// (PKCS#1) block holding an RSA key.
fn parse_rsa_public_key(pem: &str) -> Result<Key, String> {
    let (label, der) = pem_decode(pem)?;
    let key = match label.as_str() {
        "PUBLIC KEY" => PublicKey::from_public_key_der(&der).map_err(|e| e.to_string())?,
        "RSA PUBLIC KEY" => PublicKey::from_pkcs1_der(&der).map_err(|e| e.to_string())?,
        other => {
            return Err(format!(
                "expected a PUBLIC KEY or RSA PUBLIC KEY block, found {other:?}"
            ));
        }
    };
    Key::rsa(key, PublicKey::MAX_SIZE)
}

/// Reads a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) block holding a P-256
/// key (`id-ecPublicKey` on `prime256v1`).
fn parse_ec_public_key(pem: &str) -> Result<Key, String> {
    let (label, der) = pem_decode(pem)?;
    if label != "PUBLIC KEY" {
        return Err(format!("expected a PUBLIC KEY block, found {label:?}"));
    }
    p256::ecdsa::VerifyingKey::from_public_key_der(&der)
        .map(Key::Ec)
        .map_err(|_| "not a P-256 (prime256v1) public key".to_owned())
}

/// The label and bytes of a single PEM block of at most [`MAX_PEM_BYTES`].
pub(crate) fn pem_decode(pem: &str) -> Result<(String, Vec<u8>), String> {
    if pem.len() > MAX_PEM_BYTES {
        return Err(format!("at most {MAX_PEM_BYTES} bytes"));
    }
    let mut lines = pem.trim().lines().map(str::trim);
    let label = lines
        .next()
        .and_then(|l| l.strip_prefix("-----BEGIN "))
        .and_then(|l| l.strip_suffix("-----"))
        .ok_or("not PEM: missing the -----BEGIN ...----- line")?
        .to_owned();
    let end = format!("-----END {label}-----");
    let mut body = String::new();
    for line in lines.by_ref() {
        if line == end {
            return STANDARD
                .decode(&body)
                .map(|der| (label, der))
                .map_err(|e| format!("not PEM: {e}"));
        }
        body.push_str(line);
    }
    Err(format!("not PEM: missing {end:?}"))
}
