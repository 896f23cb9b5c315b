//! Reading JWKS documents: what is kept, what is skipped, and the bounds on
//! what comes from the network.

use serde_json::json;

use super::*;
use crate::jwk::{MAX_JWKS_BYTES, MAX_KEYS, parse_jwks};

fn doc(keys: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({ "keys": keys })).unwrap()
}

fn kids(body: &[u8]) -> Vec<String> {
    let (set, _) = parse_jwks(body).unwrap();
    set.keys.into_iter().map(|k| k.kid.unwrap()).collect()
}

#[test]
fn usable_signature_keys_are_kept_in_order() {
    let mut x5c = ec_jwk("with-extras", &ec_key(3));
    x5c["x5c"] = json!(["MIIB..."]);
    x5c["x5t"] = json!("abc");
    let body = doc(vec![ec_jwk("ec", &ec_key(1)), rsa_jwk("rsa"), x5c]);
    assert_eq!(kids(&body), ["ec", "rsa", "with-extras"]);
    // What is kept is only what makes the key.
    let (set, _) = parse_jwks(&body).unwrap();
    assert_eq!(set.keys[2].use_, None);
    assert!(!serde_json::to_string(&set).unwrap().contains("x5c"));
}

#[test]
fn unusable_keys_are_skipped_not_fatal() {
    let ec = ec_key(1);
    let mut no_kid = ec_jwk("x", &ec);
    no_kid.as_object_mut().unwrap().remove("kid");
    let mut enc = rsa_jwk("enc");
    enc["use"] = json!("enc");
    let mut ps256 = rsa_jwk("ps");
    ps256["alg"] = json!("PS256");
    let mut long_kid = ec_jwk("x", &ec);
    long_kid["kid"] = json!("k".repeat(129));
    let body = doc(vec![
        json!({ "kty": "oct", "kid": "hmac", "k": "c2VjcmV0" }),
        no_kid,
        enc,
        ps256,
        long_kid,
        json!("not an object"),
        ec_jwk("good", &ec),
        ec_jwk("good", &ec_key(2)),
    ]);
    let (set, skipped) = parse_jwks(&body).unwrap();
    assert_eq!(set.keys.len(), 1);
    assert_eq!(set.keys[0].kid.as_deref(), Some("good"));
    assert_eq!(skipped.unusable, 7);
    assert_eq!(skipped.over_limit, 0);
}

#[test]
fn the_document_is_bounded() {
    let many: Vec<Value> = (0..MAX_KEYS + 3)
        .map(|i| ec_jwk(&format!("k{i}"), &ec_key(1)))
        .collect();
    let (set, skipped) = parse_jwks(&doc(many)).unwrap();
    assert_eq!(set.keys.len(), MAX_KEYS);
    assert_eq!(skipped.over_limit, 3);
    // The kept set fits one shared-state value.
    assert!(serde_json::to_vec(&set).unwrap().len() < weir_sdk::state::MAX_VALUE_BYTES);

    let huge = vec![b' '; MAX_JWKS_BYTES + 1];
    assert!(parse_jwks(&huge).unwrap_err().contains("larger than"));
    for bad in [&b"not json"[..], b"{}", b"[]", b"{\"keys\":{}}"] {
        assert!(parse_jwks(bad).is_err(), "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn rsa_keys_are_bounded_in_size() {
    let mut big = rsa_jwk("big");
    big["n"] = json!(URL_SAFE_NO_PAD.encode(vec![0xc5; 1025]));
    let mut weak = rsa_jwk("weak");
    weak["n"] = json!(URL_SAFE_NO_PAD.encode(vec![0xc5; 128]));
    let (set, skipped) = parse_jwks(&doc(vec![big, weak])).unwrap();
    assert!(set.keys.is_empty());
    assert_eq!(skipped.unusable, 2);
}
