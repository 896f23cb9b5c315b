//! Header names that only look like framing headers
//! ([`is_framing_lookalike`]): the client screening in `proxy` and the
//! plugin host both refuse them. Framing itself is read in one place,
//! the `weir_http1` crate, by Weir's HTTP/1.1 connection.

/// Whether `name` (in any case) is not a framing header but reads as `Transfer-Encoding` or `Content-Length` once `_`
/// becomes `-` and runs of `-` become one: `transfer_encoding`,
/// `content__length`, `transfer---encoding`. A server or middleware that
/// folds names so (CGI's `HTTP_TRANSFER_ENCODING`, some frameworks) would
/// frame the body by a header Weir did not, the smuggling RFC 9112
/// section 6.1 warns of.
pub fn is_framing_lookalike(name: &str) -> bool {
    let folded = |target: &[u8]| {
        let mut want = target.iter();
        let mut after_dash = false;
        for b in name.bytes() {
            let b = if b == b'_' {
                b'-'
            } else {
                b.to_ascii_lowercase()
            };
            if b == b'-' && after_dash {
                continue;
            }
            after_dash = b == b'-';
            if want.next() != Some(&b) {
                return false;
            }
        }
        want.next().is_none()
    };
    !name.eq_ignore_ascii_case("transfer-encoding")
        && !name.eq_ignore_ascii_case("content-length")
        && (folded(b"transfer-encoding") || folded(b"content-length"))
}
