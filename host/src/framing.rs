//! A watcher over the raw bytes of an HTTP/1.1 client connection that
//! spots requests carrying both `Content-Length` and `Transfer-Encoding`.
//!
//! Such a request is the classic request-smuggling vector (RFC 9112
//! section 6.1). hyper handles it the way the RFC permits, by dropping
//! `Content-Length` and framing by `Transfer-Encoding` before the proxy sees
//! the request, which hides the conflict. Weir refuses these requests with
//! 400 instead, so this watcher follows the connection's framing (heads
//! parsed with `httparse`, the parser hyper itself uses; bodies skipped by
//! length or by chunk) and reports the ordinal of the offending request.
//!
//! It also says which header names only look like framing headers
//! ([`is_framing_lookalike`]): the client screening in `proxy` and the
//! plugin host both refuse them.
//!
//! The watcher gives up (and flags nothing more) where hyper will itself
//! reject the input or stop speaking HTTP/1.1 on the connection: an
//! unparsable or oversized head, a malformed chunk, an HTTP/2 preface.

/// Headers parsed per request head; more makes hyper answer 431 anyway.
const MAX_HEADERS: usize = 1_000;

#[derive(Debug)]
enum State {
    /// Collecting a request head.
    Head,
    /// Skipping this many body bytes.
    Body(u64),
    /// Chunked body: reading a chunk-size line.
    ChunkSize { size: u64, digits: u8, ext: bool },
    /// Chunked body: skipping chunk data.
    ChunkData(u64),
    /// Chunked body: the CRLF after chunk data.
    ChunkEnd,
    /// Chunked body: trailer lines until an empty one; whether the current
    /// line has content yet.
    Trailers { line_has_content: bool },
    /// Stopped watching.
    Off,
}

/// Per-connection framing follower. Feed it every byte read, in order.
#[derive(Debug)]
pub struct FramingWatch {
    state: State,
    head: Vec<u8>,
    max_head: usize,
    requests: u64,
    /// Heads parsed so far (complete or not).
    #[cfg(test)]
    parses: u32,
}

impl FramingWatch {
    pub fn new(max_head: usize) -> FramingWatch {
        FramingWatch {
            state: State::Head,
            head: Vec::new(),
            max_head,
            requests: 0,
            #[cfg(test)]
            parses: 0,
        }
    }

    /// Whether part of a request head has arrived and the rest has not.
    pub fn in_partial_head(&self) -> bool {
        matches!(self.state, State::Head) && !self.head.is_empty()
    }

    /// Follows `data`; returns the 1-based ordinal of a request on this
    /// connection whose head had both framing headers.
    pub fn feed(&mut self, mut data: &[u8]) -> Option<u64> {
        while !data.is_empty() {
            match &mut self.state {
                State::Off => return None,
                State::Head => {
                    let (used, verdict) = self.head_bytes(data);
                    data = &data[used..];
                    if verdict.is_some() {
                        return verdict;
                    }
                }
                State::Body(n) => {
                    let skip = (*n).min(data.len() as u64);
                    *n -= skip;
                    data = &data[skip as usize..];
                    if *n == 0 {
                        self.state = State::Head;
                    }
                }
                State::ChunkData(n) => {
                    let skip = (*n).min(data.len() as u64);
                    *n -= skip;
                    data = &data[skip as usize..];
                    if *n == 0 {
                        self.state = State::ChunkEnd;
                    }
                }
                _ => {
                    self.chunk_byte(data[0]);
                    data = &data[1..];
                }
            }
        }
        None
    }

    /// Consumes bytes of a request head; returns how many it used and a
    /// verdict once a complete head had both framing headers.
    fn head_bytes(&mut self, data: &[u8]) -> (usize, Option<u64>) {
        // Parse straight from the read when a whole head is in it (the
        // common case), else accumulate.
        let in_place = self.head.is_empty();
        let buf: &[u8] = if in_place {
            data
        } else {
            // Parsed again only once a blank line may have arrived, as
            // hyper does: re-parsing the whole head on every read of a
            // head that trickles in would cost time quadratic in its size.
            let seen = self.head.len().saturating_sub(3);
            self.head.extend_from_slice(data);
            if !may_end_head(&self.head[seen..]) {
                return (data.len(), self.partial());
            }
            &self.head
        };
        #[cfg(test)]
        {
            self.parses += 1;
        }
        let mut storage = [httparse::EMPTY_HEADER; 64];
        let mut many;
        let mut req = httparse::Request::new(&mut storage);
        let mut parsed = req.parse(buf);
        if matches!(parsed, Err(httparse::Error::TooManyHeaders)) {
            many = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
            req = httparse::Request::new(&mut many);
            parsed = req.parse(buf);
        }
        match parsed {
            Ok(httparse::Status::Complete(len)) => {
                self.requests += 1;
                let (mut cl, mut te, mut chunked, mut length) = (false, false, false, 0u64);
                for h in req.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        cl = true;
                        length = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        te = true;
                        chunked =
                            h.value.rsplit(|b| *b == b',').next().is_some_and(|last| {
                                last.trim_ascii().eq_ignore_ascii_case(b"chunked")
                            });
                    }
                }
                let used = if in_place {
                    len
                } else {
                    // Only the part of `data` that completed the head.
                    let before = self.head.len() - data.len();
                    self.head.clear();
                    len - before
                };
                self.state = match (cl, te) {
                    (true, true) => {
                        self.state = State::Off;
                        return (data.len(), Some(self.requests));
                    }
                    (_, true) if chunked => State::ChunkSize {
                        size: 0,
                        digits: 0,
                        ext: false,
                    },
                    // Not chunked as the final coding: hyper refuses it.
                    (_, true) => State::Off,
                    (true, false) if length > 0 => State::Body(length),
                    _ => State::Head,
                };
                (used, None)
            }
            Ok(httparse::Status::Partial) => {
                // Empty lines before a request line are skipped (by
                // httparse too): a stray CRLF after a body starts no head.
                if in_place && !data.iter().all(|b| matches!(b, b'\r' | b'\n')) {
                    self.head.extend_from_slice(data);
                }
                (data.len(), self.partial())
            }
            Err(_) => {
                self.state = State::Off;
                self.head = Vec::new();
                (data.len(), None)
            }
        }
    }

    /// After a read that left the head incomplete: stops watching a head
    /// that grew past its bound (hyper answers that itself).
    fn partial(&mut self) -> Option<u64> {
        if self.head.len() > self.max_head {
            self.state = State::Off;
            self.head = Vec::new();
        }
        None
    }

    fn chunk_byte(&mut self, b: u8) {
        self.state = match std::mem::replace(&mut self.state, State::Off) {
            State::ChunkSize { size, digits, ext } => match b {
                b'\n' if digits == 0 => State::Off,
                b'\n' if size == 0 => State::Trailers {
                    line_has_content: false,
                },
                b'\n' => State::ChunkData(size),
                b'\r' => State::ChunkSize { size, digits, ext },
                _ if ext => State::ChunkSize { size, digits, ext },
                b';' | b' ' | b'\t' => State::ChunkSize {
                    size,
                    digits,
                    ext: true,
                },
                // Any number of digits, as hyper takes them (leading zeros
                // too), up to the overflow hyper refuses as well: giving up
                // on a size hyper accepts would leave the rest of the
                // connection without a header clock.
                _ => match (b as char)
                    .to_digit(16)
                    .and_then(|d| size.checked_mul(16)?.checked_add(u64::from(d)))
                {
                    Some(size) => State::ChunkSize {
                        size,
                        digits: digits.saturating_add(1),
                        ext,
                    },
                    None => State::Off,
                },
            },
            State::ChunkEnd => match b {
                b'\r' => State::ChunkEnd,
                b'\n' => State::ChunkSize {
                    size: 0,
                    digits: 0,
                    ext: false,
                },
                _ => State::Off,
            },
            State::Trailers { line_has_content } => match b {
                b'\r' => State::Trailers { line_has_content },
                b'\n' if !line_has_content => State::Head,
                b'\n' => State::Trailers {
                    line_has_content: false,
                },
                _ => State::Trailers {
                    line_has_content: true,
                },
            },
            other => other,
        };
    }
}

/// Whether these bytes hold the end of a head (an empty line); a head's
/// bytes seen before are not searched again, so the caller passes the new
/// bytes and the three before them.
fn may_end_head(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|w| w == b"\n\n") || bytes.windows(3).any(|w| w == b"\n\r\n")
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(chunks: &[&[u8]]) -> Option<u64> {
        let mut w = FramingWatch::new(8192);
        chunks.iter().find_map(|c| w.feed(c))
    }

    #[test]
    fn both_headers_are_flagged_in_either_order() {
        let a = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let b =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n";
        assert_eq!(feed_all(&[a]), Some(1));
        assert_eq!(feed_all(&[b]), Some(1));
    }

    #[test]
    fn follows_bodies_to_later_requests() {
        let first = b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world";
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nTrailer: t\r\n\r\n";
        let plain = b"GET / HTTP/1.1\r\n\r\n";
        let bad = b"POST / HTTP/1.1\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n";
        let all = [&first[..], chunked, plain, bad].concat();
        assert_eq!(feed_all(&[&all]), Some(4));
        // The same bytes split at every position give the same answer.
        for cut in 1..all.len() {
            assert_eq!(
                feed_all(&[&all[..cut], &all[cut..]]),
                Some(4),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn ordinary_traffic_is_not_flagged() {
        let reqs = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nokGET /y HTTP/1.1\r\n\r\n";
        assert_eq!(feed_all(&[reqs]), None);
        // A body that looks like a smuggling head is body, not a head.
        let tricky = b"POST / HTTP/1.1\r\nContent-Length: 60\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: x\r\n\r\n";
        assert_eq!(feed_all(&[tricky]), None);
    }

    #[test]
    fn long_zero_padded_chunk_sizes_keep_the_watch_on() {
        // hyper takes any number of leading zeros; so must the watch, or
        // the next head would have no header clock.
        let zeros = "0".repeat(40);
        let mut w = FramingWatch::new(8192);
        let body = format!(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{zeros}5\r\nhello\r\n{zeros}\r\n\r\nGET / HTTP/1.1\r\nHo"
        );
        assert_eq!(w.feed(body.as_bytes()), None);
        assert!(w.in_partial_head(), "lost track of the connection");
        // A size that overflows 64 bits is refused by hyper too.
        let mut w = FramingWatch::new(8192);
        let over = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\n";
        assert_eq!(w.feed(over), None);
        assert!(matches!(w.state, State::Off));
    }

    #[test]
    fn a_head_trickling_in_is_parsed_once_it_can_be_complete() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut w = FramingWatch::new(8192);
        let mut verdict = None;
        for b in head.chunks(1) {
            if let Some(v) = w.feed(b) {
                verdict = Some(v);
            }
            if verdict.is_none() {
                assert!(w.in_partial_head() || w.head.is_empty());
            }
        }
        assert_eq!(verdict, Some(2));
        // Byte by byte, a head of 8,000 bytes is parsed a few times, not
        // once per byte.
        let mut w = FramingWatch::new(16_384);
        let big = format!("GET / HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "p".repeat(8000));
        for b in big.as_bytes().chunks(1) {
            assert_eq!(w.feed(b), None);
        }
        assert!(!w.in_partial_head());
        // The first byte, then the first line break of a blank line and
        // the complete head.
        assert!(w.parses <= 4, "{} parses", w.parses);
    }

    #[test]
    fn a_stray_line_break_between_requests_starts_no_head() {
        let mut w = FramingWatch::new(8192);
        assert_eq!(
            w.feed(b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nok"),
            None
        );
        assert_eq!(w.feed(b"\r\n"), None);
        assert!(!w.in_partial_head(), "a CRLF alone holds the header clock");
        assert_eq!(w.feed(b"GET / HTTP/1.1\r\n\r\n"), None);
        assert!(!w.in_partial_head());
    }

    #[test]
    fn gives_up_on_http2_and_garbage() {
        assert_eq!(feed_all(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]), None);
        let mut w = FramingWatch::new(8192);
        assert_eq!(w.feed(b"GARBAGE\r\n\r\n"), None);
        assert!(matches!(w.state, State::Off));
    }
}
