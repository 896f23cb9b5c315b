//! Unit tests of the query helpers of [`Request`](super::Request).

use super::percent_decode;

#[test]
fn percent_decoding_handles_escapes_plus_and_garbage() {
    assert_eq!(percent_decode("a%20b+c"), "a b c");
    assert_eq!(percent_decode("%zz%4"), "%zz%4");
    assert_eq!(percent_decode("%41"), "A");
    assert_eq!(percent_decode("100%"), "100%");
}
