//! Verification keys: an HS256 shared secret and/or an RS256 public key,
//! parsed and checked once at deploy time, and the one function that checks
//! a signature with them. Only these two algorithms exist here, so `none`,
//! and the classic HS256-with-the-RSA-public-key confusion, cannot happen:
//! the algorithm picks the key, never the other way round.

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

/// The shortest HS256 secret accepted: RFC 7518 §3.2 requires a key at
/// least as long as the hash output (256 bits).
pub const MIN_HS256_SECRET_BYTES: usize = 32;
/// The smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// The longest PEM text accepted for a public key, in bytes.
pub const MAX_PEM_BYTES: usize = 16 * 1024;

/// A signature algorithm the plugin verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC with SHA-256.
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
}

impl Algorithm {
    /// The algorithm named by a token's `alg`, if supported.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "HS256" => Some(Self::Hs256),
            "RS256" => Some(Self::Rs256),
            _ => None,
        }
    }
}

/// The configured keys.
pub struct Keys {
    hs256: Option<Vec<u8>>,
    rs256: Option<VerifyingKey<Sha256>>,
}

impl Keys {
    /// Checks and parses the configured keys; at least one is required.
    pub fn new(
        hs256_secret: Option<String>,
        rs256_public_key: Option<String>,
    ) -> Result<Self, String> {
        if hs256_secret.is_none() && rs256_public_key.is_none() {
            return Err("give hs256_secret, rs256_public_key, or both".to_owned());
        }
        let hs256 = match hs256_secret {
            Some(secret) if secret.len() < MIN_HS256_SECRET_BYTES => {
                return Err(format!(
                    "hs256_secret: at least {MIN_HS256_SECRET_BYTES} bytes (RFC 7518 §3.2)"
                ));
            }
            other => other.map(String::into_bytes),
        };
        let rs256 = rs256_public_key
            .map(|pem| parse_rsa_public_key(&pem).map_err(|e| format!("rs256_public_key: {e}")))
            .transpose()?
            .map(VerifyingKey::<Sha256>::new);
        Ok(Self { hs256, rs256 })
    }

    /// Whether a key for `alg` is configured.
    pub fn supports(&self, alg: Algorithm) -> bool {
        match alg {
            Algorithm::Hs256 => self.hs256.is_some(),
            Algorithm::Rs256 => self.rs256.is_some(),
        }
    }

    /// Checks `signature` over `signed` (the token's `header.payload`).
    /// HMAC tags are compared in constant time by `verify_slice`.
    pub fn verify(&self, alg: Algorithm, signed: &[u8], signature: &[u8]) -> bool {
        match alg {
            Algorithm::Hs256 => self.hs256.as_ref().is_some_and(|secret| {
                let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
                    .expect("HMAC accepts keys of any length");
                mac.update(signed);
                mac.verify_slice(signature).is_ok()
            }),
            Algorithm::Rs256 => self.rs256.as_ref().is_some_and(|key| {
                Signature::try_from(signature).is_ok_and(|sig| key.verify(signed, &sig).is_ok())
            }),
        }
    }
}

/// Reads a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) or `RSA PUBLIC KEY`
/// (PKCS#1) block.
fn parse_rsa_public_key(pem: &str) -> Result<PublicKey, String> {
    if pem.len() > MAX_PEM_BYTES {
        return Err(format!("at most {MAX_PEM_BYTES} bytes"));
    }
    let pem = pem.trim();
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
    let bits = key.n().bit_width() as usize;
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "a {bits}-bit key is too weak (at least {MIN_RSA_BITS} bits)"
        ));
    }
    Ok(key)
}

/// The label and bytes of a single PEM block.
pub(crate) fn pem_decode(pem: &str) -> Result<(String, Vec<u8>), String> {
    let mut lines = pem.lines().map(str::trim);
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
