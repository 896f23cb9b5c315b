//! ES256 with configured keys (a PEM public key or JWKs), and the ways a
//! token could try to get around a key's algorithm.

use p256::pkcs8::DecodePrivateKey as _;
use serde_json::json;
use weir_sdk::testing::TestHost;

use super::*;

const ES_PRIVATE_PEM: &str = include_str!("../testdata/es256-private.pem");
const ES_PUBLIC_PEM: &str = include_str!("../testdata/es256-public.pem");
const ES_OTHER_PUBLIC_PEM: &str = include_str!("../testdata/es256-other-public.pem");
const P384_PUBLIC_PEM: &str = include_str!("../testdata/p384-public.pem");

fn pem_key() -> EcSigningKey {
    let (_, der) = pem_decode(ES_PRIVATE_PEM).unwrap();
    EcSigningKey::from_pkcs8_der(&der).unwrap()
}

fn es_token(claims: Value) -> String {
    es256_with(json!({ "alg": "ES256", "typ": "JWT" }), claims, &pem_key())
}

fn pem_host(pem: &str) -> TestHost<JwtAuth> {
    TestHost::new(json!({ "es256_public_key": pem, "forward_claims": { "sub": "x-user" } }))
        .unwrap()
}

#[test]
fn es256_tokens_are_checked_with_a_pem_key() {
    let mut host = pem_host(ES_PUBLIC_PEM);
    let exchange = host.run(with_token(&es_token(valid_claims())));
    assert_eq!(
        exchange
            .upstream_request()
            .expect("forwarded")
            .header("x-user"),
        Some("user-42")
    );
    assert_eq!(exchange.log_field(CONSUMER_FIELD), Some("user-42"));

    let mut other = pem_host(ES_OTHER_PUBLIC_PEM);
    assert_invalid(
        &other.run(with_token(&es_token(valid_claims()))),
        "invalid signature",
    );
}

#[test]
fn tampered_es256_tokens_are_refused() {
    let mut host = pem_host(ES_PUBLIC_PEM);
    let token = es_token(valid_claims());
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();

    let mut forged = parts.clone();
    forged[1] = b64(&json!({ "sub": "admin", "exp": NOW + 300 }));
    assert_invalid(
        &host.run(with_token(&forged.join("."))),
        "invalid signature",
    );

    // One bit of the signature flipped.
    let mut signature = URL_SAFE_NO_PAD.decode(&parts[2]).unwrap();
    signature[10] ^= 1;
    parts[2] = URL_SAFE_NO_PAD.encode(&signature);
    assert_invalid(&host.run(with_token(&parts.join("."))), "invalid signature");

    // A DER-encoded signature (as some libraries produce) is not a JWS one.
    let mut der = vec![0x30, 0x44, 0x02, 0x20];
    der.extend_from_slice(&signature[..32]);
    der.extend_from_slice(&[0x02, 0x20]);
    der.extend_from_slice(&signature[32..]);
    parts[2] = URL_SAFE_NO_PAD.encode(&der);
    assert_invalid(&host.run(with_token(&parts.join("."))), "invalid signature");

    // r = s = 0 is never a valid signature.
    parts[2] = URL_SAFE_NO_PAD.encode([0u8; 64]);
    assert_invalid(&host.run(with_token(&parts.join("."))), "invalid signature");
}

#[test]
fn an_hs256_token_cannot_pass_as_es256() {
    // Only an EC key configured: HS256 is not an algorithm this route takes.
    let mut host = pem_host(ES_PUBLIC_PEM);
    let confused = hs256(json!({ "alg": "HS256" }), valid_claims(), ES_PUBLIC_PEM);
    assert_invalid(&host.run(with_token(&confused)), "unsupported algorithm");

    // With a secret as well, an HMAC over the EC key's text is checked
    // with the secret, never the public key.
    let mut both = TestHost::<JwtAuth>::new(json!({
        "hs256_secret": SECRET,
        "es256_public_key": ES_PUBLIC_PEM,
    }))
    .unwrap();
    assert_invalid(&both.run(with_token(&confused)), "invalid signature");
    assert_eq!(
        both.run(with_token(&es_token(valid_claims()))).status(),
        200
    );
}

#[test]
fn a_key_checks_only_its_own_algorithm() {
    let ec = ec_key(1);
    let mut host = TestHost::<JwtAuth>::new(json!({
        "keys": [ec_jwk("ec-1", &ec), rsa_jwk("rsa-1")],
    }))
    .unwrap();
    assert_eq!(
        host.run(with_token(&es256("ec-1", valid_claims(), &ec)))
            .status(),
        200
    );
    assert_eq!(
        host.run(with_token(&rs256_with(
            json!({ "alg": "RS256", "kid": "rsa-1" }),
            valid_claims()
        )))
        .status(),
        200
    );
    // An RS256 token naming the EC key's id (and the other way round).
    let rs_at_ec = rs256_with(json!({ "alg": "RS256", "kid": "ec-1" }), valid_claims());
    assert_invalid(&host.run(with_token(&rs_at_ec)), "invalid signature");
    let es_at_rsa = es256("rsa-1", valid_claims(), &ec);
    assert_invalid(&host.run(with_token(&es_at_rsa)), "invalid signature");
    // HS256 is not configured at all.
    let hs = hs256(
        json!({ "alg": "HS256", "kid": "ec-1" }),
        valid_claims(),
        SECRET,
    );
    assert_invalid(&host.run(with_token(&hs)), "unsupported algorithm");
}

#[test]
fn configured_jwks_are_chosen_by_kid() {
    let (one, two) = (ec_key(1), ec_key(2));
    let mut host = TestHost::<JwtAuth>::new(json!({
        "keys": [ec_jwk("one", &one), ec_jwk("two", &two)],
    }))
    .unwrap();
    assert_eq!(
        host.run(with_token(&es256("two", valid_claims(), &two)))
            .status(),
        200
    );
    assert_invalid(
        &host.run(with_token(&es256("one", valid_claims(), &two))),
        "invalid signature",
    );
    assert_invalid(
        &host.run(with_token(&es256("three", valid_claims(), &two))),
        "unknown key id",
    );
    let no_kid = es256_with(json!({ "alg": "ES256" }), valid_claims(), &two);
    assert_invalid(&host.run(with_token(&no_kid)), "token has no key id");
    let long_kid = es256(&"k".repeat(129), valid_claims(), &two);
    assert_invalid(&host.run(with_token(&long_kid)), "invalid key id");

    // A PEM key (no kid) checks tokens whatever kid they carry.
    let mut pem = pem_host(ES_PUBLIC_PEM);
    let with_kid = es256_with(
        json!({ "alg": "ES256", "kid": "anything" }),
        valid_claims(),
        &pem_key(),
    );
    assert_eq!(pem.run(with_token(&with_kid)).status(), 200);
}

#[test]
fn invalid_ec_keys_are_refused() {
    let ec = ec_key(1);
    let mut bad_point = ec_jwk("k", &ec);
    bad_point["y"] = bad_point["x"].clone();
    let mut p384 = ec_jwk("k", &ec);
    p384["crv"] = json!("P-384");
    let mut enc = ec_jwk("k", &ec);
    enc["use"] = json!("enc");
    let mut es384 = ec_jwk("k", &ec);
    es384["alg"] = json!("ES384");
    let mut short = ec_jwk("k", &ec);
    short["x"] = json!("AAAA");
    let cases = [
        (
            json!({ "es256_public_key": PUBLIC_PEM }),
            "es256_public_key: not a P-256",
        ),
        (
            json!({ "es256_public_key": P384_PUBLIC_PEM }),
            "es256_public_key: not a P-256",
        ),
        (
            json!({ "es256_public_key": "nope" }),
            "es256_public_key: not PEM",
        ),
        (
            json!({ "keys": [bad_point] }),
            "keys[0]: x, y: not a point of P-256",
        ),
        (json!({ "keys": [p384] }), "keys[0]: crv: only P-256"),
        (json!({ "keys": [enc] }), "keys[0]: not a signature key"),
        (
            json!({ "keys": [es384] }),
            "keys[0]: unsupported alg \"ES384\"",
        ),
        (json!({ "keys": [short] }), "keys[0]: x and y: 32 bytes"),
        (
            json!({ "keys": [{ "kty": "oct", "k": "c2VjcmV0" }] }),
            "keys[0]: unsupported key type \"oct\"",
        ),
        (
            json!({ "keys": [ec_jwk("k", &ec), ec_jwk("k", &ec_key(2))] }),
            "keys[1]: key id \"k\" is listed twice",
        ),
        (
            json!({ "keys": [{ "kty": "EC" , "crv": "P-256", "x": 1 }] }),
            "invalid plugin configuration",
        ),
    ];
    for (config, expected) in cases {
        let err = TestHost::<JwtAuth>::new(config.clone())
            .err()
            .unwrap_or_else(|| panic!("accepted {config}"));
        assert!(err.contains(expected), "{config}: {err}");
    }
}
