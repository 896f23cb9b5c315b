//! HTTP/1.1 message framing, the one reading Weir makes of where an HTTP/1
//! message ends (RFC 9112 section 6.3): request and response heads parsed
//! and checked ([`head`]), and the chunked transfer coding's decoder
//! ([`chunked`]).
//!
//! httparse tokenises a head (the start line and the fields) and stops
//! there: what the fields say about the body's length, and which
//! combinations are ambiguous, is left to its user. hyper frames messages
//! but only inside its own connection, and it settles some ambiguities the
//! RFC lets a recipient settle (it drops `Content-Length` beside
//! `Transfer-Encoding`, takes repeated equal lengths, reads a bare LF as a
//! line end), which a proxy must refuse instead: the next hop may settle
//! them otherwise, and that difference is request smuggling. So the
//! framing rules are written here, on httparse, and refuse every
//! ambiguity.
//!
//! A crate of its own, depending on httparse and memchr alone, so that its fuzz
//! targets (`fuzz/`) build in seconds rather than with the gateway.
//!
//! Every bound comes from the caller ([`head::Limits`],
//! [`chunked::Limits`]); nothing here allocates more than those bounds
//! allow, whatever the input.

pub mod chunked;
pub mod head;

pub use chunked::{ChunkError, Decoder};
pub use head::{
    BodyLength, HeadError, Limits, RequestHead, ResponseBody, ResponseHead, Version, parse_request,
    parse_response,
};
