//! The header names a plugin may not set, on a request it forwards, on a
//! response, or on a call it starts (`host`, `hot` and `calls` all check
//! against this one list).

/// Header names a plugin may not set: they frame the message or belong to
/// one hop, and letting a plugin choose them would allow request smuggling
/// or response splitting through framing rather than through bytes. The
/// names a client may not send either (`transfer_encoding` and the other
/// look-alikes, RFC 9112 section 6.1) are refused too, so a plugin cannot
/// put back what the listener screened out. Compared as text so a removal
/// can be checked without building (and allocating) a `HeaderName`.
pub(crate) fn reserved(name: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name))
        || crate::framing::is_framing_lookalike(name)
}

/// The headers [`reserved`] names. `expect` and `http2-settings` belong to
/// the client's hop: Weir answers `100-continue` itself, and an h2c
/// upgrade is never offered upstream.
pub(crate) const RESERVED: [&str; 10] = [
    "connection",
    "content-length",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "expect",
    "http2-settings",
];
