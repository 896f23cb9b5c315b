//! Signing keys for JSON Web Tokens (RFC 7515, 7518): ES256 with a P-256
//! key rcgen makes, RS256 with an RSA key `openssl` makes (rcgen cannot),
//! the tokens they sign and the JWKs an identity provider publishes for
//! them, so `jwt-auth` checks real signatures. Nothing here verifies.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, SigningKey as _};
use serde_json::{Value, json};

/// A private key with its key id.
pub struct Signer {
    kid: String,
    key: KeyPair,
}

impl Signer {
    /// A new P-256 key, for ES256.
    pub fn es256(kid: &str) -> Signer {
        Signer {
            kid: kid.to_owned(),
            key: KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(),
        }
    }

    /// A new RSA 2048 key, for RS256.
    pub fn rs256(kid: &str) -> Signer {
        let key = super::pki::rsa_key();
        assert_eq!(key.algorithm(), &PKCS_RSA_SHA256);
        Signer {
            kid: kid.to_owned(),
            key,
        }
    }

    fn alg(&self) -> &'static str {
        if self.key.algorithm() == &PKCS_ECDSA_P256_SHA256 {
            "ES256"
        } else {
            "RS256"
        }
    }

    /// The public key as a JWK with this key's `kid` (RFC 7518 §6.2, §6.3).
    pub fn jwk(&self) -> Value {
        let public = self.key.public_key_raw();
        if self.alg() == "ES256" {
            // An uncompressed SEC 1 point: 0x04, then x and y.
            assert_eq!((public.len(), public[0]), (65, 0x04));
            json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
                "x": b64(&public[1..33]), "y": b64(&public[33..]),
            })
        } else {
            // PKCS #1 RSAPublicKey (RFC 8017 §A.1.1).
            let [n, e] = der_integers(public);
            json!({
                "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
                "n": b64(n), "e": b64(e),
            })
        }
    }

    /// A compact JWS of `claims` signed with this key, its `kid` in the
    /// header.
    pub fn token(&self, claims: &Value) -> String {
        let header = json!({"alg": self.alg(), "typ": "JWT", "kid": self.kid});
        let signed = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = self.key.sign(signed.as_bytes()).unwrap();
        let signature = if self.alg() == "ES256" {
            // rcgen signs as X.509 does, DER; JWS wants r and s as two
            // 32-byte big-endian numbers (RFC 7518 §3.4).
            let mut fixed = vec![0u8; 64];
            for (i, n) in der_integers(&signature).into_iter().enumerate() {
                fixed[32 * (i + 1) - n.len()..32 * (i + 1)].copy_from_slice(n);
            }
            fixed
        } else {
            signature
        };
        format!("{signed}.{}", b64(&signature))
    }
}

/// A JWKS document publishing these keys.
pub fn jwks(keys: &[&Signer]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() }).to_string()
}

/// `token` with its claims replaced and its signature kept.
pub fn tampered(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let payload = b64(claims.to_string().as_bytes());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The two INTEGERs of a DER SEQUENCE of two (an ECDSA signature's r and
/// s, an RSA public key's n and e), unsigned: without the sign byte.
fn der_integers<'a>(der: &'a [u8]) -> [&'a [u8]; 2] {
    let (tag, seq, rest) = der_item(der);
    assert_eq!((tag, rest.len()), (0x30, 0), "not one SEQUENCE");
    let (tag, first, rest) = der_item(seq);
    assert_eq!(tag, 0x02, "not an INTEGER");
    let (tag, second, rest) = der_item(rest);
    assert_eq!((tag, rest.len()), (0x02, 0), "not a second, last INTEGER");
    // A positive INTEGER whose top bit is set starts with a 0 byte.
    let unsigned = |n: &'a [u8]| &n[usize::from(n.len() > 1 && n[0] == 0)..];
    [unsigned(first), unsigned(second)]
}

/// The first item of `der`: its tag, its contents, and what follows it.
fn der_item(der: &[u8]) -> (u8, &[u8], &[u8]) {
    let (tag, first) = (der[0], der[1]);
    let (len, at) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        let len = der[2..2 + n]
            .iter()
            .fold(0usize, |len, b| len << 8 | usize::from(*b));
        (len, 2 + n)
    };
    (tag, &der[at..at + len], &der[at + len..])
}
