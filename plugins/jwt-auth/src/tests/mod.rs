//! Behaviour of `jwt-auth` through the SDK's test host, with tokens signed
//! here: HS256 with `hmac`, RS256 with a fixed 2048-bit test key pair and
//! ES256 with a P-256 key pair (testdata/, generated with openssl for these
//! tests only) or keys made from fixed scalars. This file holds the
//! helpers and the HS256/RS256 cases with configured keys; ES256 and keys
//! from a JWKS endpoint have their own files.

mod es256;
mod jwk;
mod jwks;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use p256::ecdsa::SigningKey as EcSigningKey;
use rsa::PrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use sha2::Sha256;
use weir_sdk::testing::{Exchange, TestHost, TestRequest};

use super::keys::pem_decode;
use super::{CONSUMER_FIELD, JwtAuth};

const SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!";
const PRIVATE_PEM: &str = include_str!("../testdata/test-private.pem");
const PUBLIC_PEM: &str = include_str!("../testdata/test-public.pem");
const PUBLIC_PKCS1_PEM: &str = include_str!("../testdata/test-public-pkcs1.pem");
const OTHER_PUBLIC_PEM: &str = include_str!("../testdata/other-public.pem");
const WEAK_PUBLIC_PEM: &str = include_str!("../testdata/weak-1024-public.pem");

/// The test host's fixed clock, in seconds.
const NOW: u64 = 1_700_000_000;

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn hs256(header: Value, claims: Value, secret: &str) -> String {
    let signed = format!("{}.{}", b64(&header), b64(&claims));
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(signed.as_bytes());
    format!(
        "{signed}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

fn rs256(claims: Value) -> String {
    rs256_with(json!({ "alg": "RS256", "typ": "JWT" }), claims)
}

fn rs256_with(header: Value, claims: Value) -> String {
    let signed = format!("{}.{}", b64(&header), b64(&claims));
    let (_, der) = pem_decode(PRIVATE_PEM.trim()).unwrap();
    let key = SigningKey::<Sha256>::new(PrivateKey::from_pkcs8_der(&der).unwrap());
    let signature = key.sign(signed.as_bytes()).to_vec();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// The test RSA key pair's public half as a JWK.
fn rsa_jwk(kid: &str) -> Value {
    let (_, der) = pem_decode(PRIVATE_PEM.trim()).unwrap();
    let key = rsa::PublicKey::from(PrivateKey::from_pkcs8_der(&der).unwrap());
    json!({
        "kty": "RSA",
        "kid": kid,
        "use": "sig",
        "alg": "RS256",
        "n": URL_SAFE_NO_PAD.encode(key.n().to_be_bytes()),
        "e": URL_SAFE_NO_PAD.encode(key.e().to_be_bytes()),
    })
}

/// A P-256 signing key made from a fixed scalar (any small non-zero
/// number is a valid one).
fn ec_key(seed: u8) -> EcSigningKey {
    let mut scalar = [0u8; 32];
    scalar[31] = seed;
    scalar[0] = 0x11;
    EcSigningKey::from_slice(&scalar).unwrap()
}

/// An ES256 token: the JWS signature is `r || s`, 64 bytes (RFC 7518 §3.4).
fn es256_with(header: Value, claims: Value, key: &EcSigningKey) -> String {
    let signed = format!("{}.{}", b64(&header), b64(&claims));
    let signature: p256::ecdsa::Signature = key.sign(signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

/// An ES256 token naming key `kid`, signed by `key`.
fn es256(kid: &str, claims: Value, key: &EcSigningKey) -> String {
    es256_with(
        json!({ "alg": "ES256", "typ": "JWT", "kid": kid }),
        claims,
        key,
    )
}

/// `key`'s public half as a JWK.
fn ec_jwk(kid: &str, key: &EcSigningKey) -> Value {
    let point = key.verifying_key().to_sec1_point(false);
    let bytes = point.as_bytes();
    json!({
        "kty": "EC",
        "crv": "P-256",
        "kid": kid,
        "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(&bytes[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&bytes[33..65]),
    })
}

fn hs_token(claims: Value) -> String {
    hs256(json!({ "alg": "HS256", "typ": "JWT" }), claims, SECRET)
}

fn valid_claims() -> Value {
    json!({ "sub": "user-42", "iss": "https://idp.example", "aud": "shop", "exp": NOW + 300, "level": 3 })
}

fn hs_host() -> TestHost<JwtAuth> {
    TestHost::new(json!({
        "hs256_secret": SECRET,
        "issuer": "https://idp.example",
        "audience": "shop",
        "forward_claims": { "sub": "x-user", "level": "x-level" },
    }))
    .unwrap()
}

fn with_token(token: &str) -> TestRequest {
    TestRequest::get("/").header("authorization", &format!("Bearer {token}"))
}

fn assert_invalid(exchange: &Exchange, reason: &str) {
    assert_eq!(exchange.status(), 401, "{}", exchange.body_text());
    assert!(exchange.upstream_request().is_none());
    assert_eq!(
        exchange.header("www-authenticate"),
        Some(format!("Bearer error=\"invalid_token\", error_description=\"{reason}\"").as_str())
    );
}

#[test]
fn valid_hs256_token_is_accepted_and_claims_forwarded() {
    let mut host = hs_host();
    let exchange = host.run(with_token(&hs_token(valid_claims())));
    let upstream = exchange.upstream_request().expect("forwarded");
    assert_eq!(upstream.header("x-user"), Some("user-42"));
    assert_eq!(upstream.header("x-level"), Some("3"));
    // The access log names the subject, never the token.
    assert_eq!(
        exchange.log_fields(),
        [(CONSUMER_FIELD.to_owned(), "user-42".to_owned())]
    );
}

#[test]
fn the_access_log_names_a_usable_subject_only() {
    let mut host = hs_host();
    let mut claims = valid_claims();
    claims["sub"] = json!("x".repeat(513));
    let too_long = host.run(with_token(&hs_token(claims.clone())));
    assert_eq!(too_long.status(), 200);
    assert!(too_long.log_fields().is_empty());
    assert_eq!(
        host.logs().last().unwrap().message,
        "subject not in the access log: a log field value is at most 512 bytes"
    );

    claims["sub"] = json!(42);
    let not_a_string = host.run(with_token(&hs_token(claims.clone())));
    assert_eq!(not_a_string.status(), 200);
    assert!(not_a_string.log_fields().is_empty());

    claims.as_object_mut().unwrap().remove("sub");
    assert!(
        host.run(with_token(&hs_token(claims)))
            .log_fields()
            .is_empty()
    );

    // A refused token names nobody.
    let refused = host.run(with_token(&hs256(
        json!({ "alg": "HS256" }),
        valid_claims(),
        "another-secret-of-at-least-32-bytes!!",
    )));
    assert_eq!(refused.status(), 401);
    assert!(refused.log_fields().is_empty());
}

#[test]
fn valid_rs256_token_is_accepted_with_either_pem_format() {
    for pem in [PUBLIC_PEM, PUBLIC_PKCS1_PEM] {
        let mut host = TestHost::<JwtAuth>::new(json!({
            "rs256_public_key": pem,
            "forward_claims": { "sub": "x-user" },
        }))
        .unwrap();
        let exchange = host.run(with_token(&rs256(valid_claims())));
        assert_eq!(
            exchange.upstream_request().unwrap().header("x-user"),
            Some("user-42")
        );
    }
}

#[test]
fn rs256_token_from_another_key_is_refused() {
    let mut host =
        TestHost::<JwtAuth>::new(json!({ "rs256_public_key": OTHER_PUBLIC_PEM })).unwrap();
    assert_invalid(
        &host.run(with_token(&rs256(valid_claims()))),
        "invalid signature",
    );
}

#[test]
fn tampered_or_wrongly_keyed_hs256_tokens_are_refused() {
    let mut host = hs_host();
    let token = hs_token(valid_claims());
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged = b64(
        &json!({ "sub": "admin", "iss": "https://idp.example", "aud": "shop", "exp": NOW + 300 }),
    );
    parts[1] = &forged;
    assert_invalid(&host.run(with_token(&parts.join("."))), "invalid signature");

    let other_secret = hs256(
        json!({ "alg": "HS256" }),
        valid_claims(),
        "another-secret-of-at-least-32-bytes!!",
    );
    assert_invalid(&host.run(with_token(&other_secret)), "invalid signature");
}

#[test]
fn alg_none_and_algorithm_confusion_are_refused() {
    let mut host = hs_host();
    let none = format!(
        "{}.{}.",
        b64(&json!({ "alg": "none" })),
        b64(&valid_claims())
    );
    assert_invalid(&host.run(with_token(&none)), "unsupported algorithm");

    // The classic confusion: an HS256 token "signed" with the RS256 public
    // key's text. With only RS256 configured, HS256 is not accepted at all.
    let mut rs_host = TestHost::<JwtAuth>::new(json!({ "rs256_public_key": PUBLIC_PEM })).unwrap();
    let confused = hs256(json!({ "alg": "HS256" }), valid_claims(), PUBLIC_PEM);
    assert_invalid(&rs_host.run(with_token(&confused)), "unsupported algorithm");
}

#[test]
fn exp_is_checked_with_leeway() {
    let mut host = hs_host(); // default leeway: 30 s
    let at = |exp: u64| {
        let mut claims = valid_claims();
        claims["exp"] = json!(exp);
        with_token(&hs_token(claims))
    };
    assert_eq!(host.run(at(NOW - 29)).status(), 200);
    assert_invalid(&host.run(at(NOW - 30)), "token expired");
    host.advance(std::time::Duration::from_secs(600));
    assert_invalid(
        &host.run(with_token(&hs_token(valid_claims()))),
        "token expired",
    );
}

#[test]
fn nbf_is_checked_with_configured_leeway() {
    let mut host =
        TestHost::<JwtAuth>::new(json!({ "hs256_secret": SECRET, "leeway_seconds": 5 })).unwrap();
    let nbf = |nbf: u64| {
        let mut claims = valid_claims();
        claims["nbf"] = json!(nbf);
        with_token(&hs_token(claims))
    };
    assert_eq!(host.run(nbf(NOW + 5)).status(), 200);
    assert_invalid(&host.run(nbf(NOW + 6)), "token not yet valid");
    host.set_now_ms((NOW + 1) * 1000);
    assert_eq!(host.run(nbf(NOW + 6)).status(), 200);
}

#[test]
fn issuer_and_audience_must_match() {
    let mut host = hs_host();
    let mut claims = valid_claims();
    claims["iss"] = json!("https://evil.example");
    assert_invalid(&host.run(with_token(&hs_token(claims))), "wrong issuer");

    let mut claims = valid_claims();
    claims["aud"] = json!("other");
    assert_invalid(&host.run(with_token(&hs_token(claims))), "wrong audience");

    let mut claims = valid_claims();
    claims["aud"] = json!(["other", "shop"]);
    assert_eq!(host.run(with_token(&hs_token(claims))).status(), 200);

    let mut claims = valid_claims();
    claims.as_object_mut().unwrap().remove("aud");
    assert_invalid(&host.run(with_token(&hs_token(claims))), "wrong audience");
}

#[test]
fn exp_is_required_unless_configured_otherwise() {
    let mut claims = valid_claims();
    claims.as_object_mut().unwrap().remove("exp");
    let token = hs_token(claims);
    assert_invalid(&hs_host().run(with_token(&token)), "token has no exp claim");
    let mut lax =
        TestHost::<JwtAuth>::new(json!({ "hs256_secret": SECRET, "require_exp": false })).unwrap();
    assert_eq!(lax.run(with_token(&token)).status(), 200);
}

#[test]
fn missing_malformed_and_oversized_tokens_are_refused() {
    let mut host = hs_host();
    let missing = host.run(TestRequest::get("/"));
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));

    let basic = host.run(TestRequest::get("/").header("authorization", "Basic dXNlcjpwdw=="));
    assert_invalid(&basic, "expected a Bearer token");
    assert_invalid(&host.run(with_token("a.b")), "malformed token");
    assert_invalid(&host.run(with_token("a.b.c.d")), "malformed token");
    assert_invalid(&host.run(with_token("!!.b.c")), "malformed token header");
    let huge = format!("{}.{}.x", "a".repeat(5000), "b".repeat(5000));
    assert_invalid(&host.run(with_token(&huge)), "token too long");
    let crit = hs256(
        json!({ "alg": "HS256", "crit": ["exp"] }),
        valid_claims(),
        SECRET,
    );
    assert_invalid(&host.run(with_token(&crit)), "unsupported critical header");
    let two = host.run(with_token(&hs_token(valid_claims())).header("authorization", "Bearer x"));
    assert_invalid(&two, "more than one credential");
    assert_eq!(host.counter("jwt_rejected"), 8);
}

#[test]
fn scheme_is_case_insensitive() {
    let mut host = hs_host();
    let token = hs_token(valid_claims());
    let exchange =
        host.run(TestRequest::get("/").header("authorization", &format!("bearer {token}")));
    assert_eq!(exchange.status(), 200);
}

#[test]
fn client_supplied_claim_headers_never_reach_the_upstream() {
    let mut host = hs_host();
    let mut claims = valid_claims();
    claims.as_object_mut().unwrap().remove("level");
    let exchange = host.run(
        with_token(&hs_token(claims))
            .header("x-level", "99")
            .header("x-user", "admin"),
    );
    let upstream = exchange.upstream_request().unwrap();
    assert_eq!(upstream.header("x-level"), None);
    assert_eq!(upstream.header_all("x-user"), ["user-42"]);
}

#[test]
fn invalid_configurations_are_refused() {
    let cases = [
        (json!({}), "no key: give hs256_secret, rs256_public_key"),
        (
            json!({ "hs256_secret": "short" }),
            "hs256_secret: at least 32",
        ),
        (
            json!({ "rs256_public_key": "not pem" }),
            "rs256_public_key: not PEM",
        ),
        (json!({ "rs256_public_key": WEAK_PUBLIC_PEM }), "too weak"),
        (
            json!({ "rs256_public_key": PRIVATE_PEM }),
            "expected a PUBLIC KEY",
        ),
        (
            json!({ "hs256_secret": SECRET, "leeway_seconds": 601 }),
            "leeway_seconds:",
        ),
        (
            json!({ "hs256_secret": SECRET, "header": "bad name" }),
            "header:",
        ),
        (
            json!({ "hs256_secret": SECRET, "forward_claims": { "sub": "x y" } }),
            "forward_claims:",
        ),
        (
            json!({ "hs256_secret": SECRET, "isuer": "x" }),
            "unknown field",
        ),
    ];
    for (config, expected) in cases {
        let err = TestHost::<JwtAuth>::new(config.clone())
            .err()
            .unwrap_or_else(|| panic!("accepted {config}"));
        assert!(err.contains(expected), "{config}: {err}");
    }
}
