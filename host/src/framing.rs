//! A watcher over the raw bytes of an HTTP/1.1 client connection that
//! follows its framing with Weir's own reading of it (`weir_http1`) and
//! reports the first request whose framing that reading refuses but
//! hyper, which parses the connection, would take.
//!
//! hyper settles some framing ambiguities the way RFC 9112 permits a
//! recipient to: it drops `Content-Length` beside `Transfer-Encoding`
//! (section 6.1), takes repeated equal lengths, and reads a bare LF as a
//! line end (section 2.2). A proxy must refuse them instead, since the
//! next hop may settle them otherwise (request smuggling). So this watcher
//! parses every head with `weir_http1`, skips bodies by its framing (a
//! length, or its chunked decoder), and reports the ordinal of the first
//! request it refuses for framing and the reason ([`Refused`]); the proxy
//! answers that request 400 and closes.
//!
//! It also says which header names only look like framing headers
//! ([`is_framing_lookalike`]): the client screening in `proxy` and the
//! plugin host both refuse them.
//!
//! The watcher gives up (and flags nothing more) where hyper will itself
//! refuse the input or stop speaking HTTP/1.1 on the connection: a head
//! that does not parse or is over its bounds, a chunked body the decoder
//! refuses, an HTTP/2 preface.

use weir_http1::{BodyLength, HeadError, chunked};

/// Header fields parsed per request head: more than any listener allows
/// (hyper answers 431 past the listener's own bound).
const MAX_HEADERS: usize = 1_000;
/// A chunk-size line's bound: the decoder refuses a longer one, and hyper
/// its own (it bounds extensions per body).
const MAX_CHUNK_LINE: usize = 4_096;

#[derive(Debug)]
enum State {
    /// Collecting a request head.
    Head,
    /// Skipping this many body bytes.
    Body(u64),
    /// Following a chunked body.
    Chunked(chunked::Decoder),
    /// Stopped watching.
    Off,
}

/// A request the watcher refused: its 1-based ordinal on the connection
/// and why, packed in a u64 so the connection can keep it in an atomic
/// (0: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub ordinal: u64,
    pub why: HeadError,
}

impl Refused {
    pub fn pack(self) -> u64 {
        (self.ordinal << 8) | u64::from(self.why.code())
    }

    pub fn unpack(packed: u64) -> Option<Refused> {
        Some(Refused {
            ordinal: packed >> 8,
            why: HeadError::from_code(packed as u8)?,
        })
    }
}

/// Per-connection framing follower. Feed it every byte read, in order.
#[derive(Debug)]
pub struct FramingWatch {
    state: State,
    head: Vec<u8>,
    limits: weir_http1::Limits,
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
            limits: weir_http1::Limits {
                max_head_bytes: max_head,
                max_headers: MAX_HEADERS,
                max_target_bytes: usize::MAX,
            },
            requests: 0,
            #[cfg(test)]
            parses: 0,
        }
    }

    /// Whether part of a request head has arrived and the rest has not.
    pub fn in_partial_head(&self) -> bool {
        matches!(self.state, State::Head) && !self.head.is_empty()
    }

    /// Follows `data`; returns the first request of this connection whose
    /// framing `weir_http1` refuses.
    pub fn feed(&mut self, mut data: &[u8]) -> Option<Refused> {
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
                State::Chunked(decoder) => match decoder.decode(data) {
                    Ok(step) => {
                        data = &data[step.used..];
                        if step.done {
                            self.state = State::Head;
                        }
                    }
                    Err(_) => self.state = State::Off,
                },
            }
        }
        None
    }

    /// Consumes bytes of a request head; returns how many it used and a
    /// verdict once a complete head's framing was refused.
    fn head_bytes(&mut self, data: &[u8]) -> (usize, Option<Refused>) {
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
        match weir_http1::parse_request(buf, &self.limits, |h| (h.len, h.body)) {
            Ok(Some((len, body))) => {
                self.requests += 1;
                let used = if in_place {
                    len
                } else {
                    // Only the part of `data` that completed the head.
                    let before = self.head.len() - data.len();
                    self.head.clear();
                    len - before
                };
                self.state = match body {
                    BodyLength::Empty => State::Head,
                    BodyLength::Length(n) => State::Body(n),
                    BodyLength::Chunked => State::Chunked(chunked::Decoder::new(chunked::Limits {
                        max_line: MAX_CHUNK_LINE,
                        max_trailer_bytes: self.limits.max_head_bytes,
                        max_trailer_fields: MAX_HEADERS,
                    })),
                };
                (used, None)
            }
            Ok(None) => {
                // Empty lines before a request line are skipped (by
                // httparse too): a stray CRLF after a body starts no head.
                if in_place && !data.iter().all(|b| matches!(b, b'\r' | b'\n')) {
                    self.head.extend_from_slice(data);
                }
                (data.len(), self.partial())
            }
            Err(why) if why.is_framing() => {
                self.requests += 1;
                self.stop();
                let ordinal = self.requests;
                (data.len(), Some(Refused { ordinal, why }))
            }
            // hyper refuses these itself.
            Err(_) => {
                self.stop();
                (data.len(), None)
            }
        }
    }

    fn stop(&mut self) {
        self.state = State::Off;
        self.head = Vec::new();
    }

    /// After a read that left the head incomplete: stops watching a head
    /// that grew past its bound (hyper answers that itself).
    fn partial(&mut self) -> Option<Refused> {
        if self.head.len() > self.limits.max_head_bytes {
            self.stop();
        }
        None
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

    /// The ordinal of the request refused, if any.
    fn feed_all(chunks: &[&[u8]]) -> Option<u64> {
        let mut w = FramingWatch::new(8192);
        chunks.iter().find_map(|c| w.feed(c)).map(|r| r.ordinal)
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
                verdict = Some(v.ordinal);
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
    fn refuses_what_hyper_would_settle_and_says_why() {
        let cases: &[(&[u8], HeadError)] = &[
            (
                b"GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
                HeadError::RepeatedContentLength,
            ),
            (
                b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\nHost: a\r\n\r\n",
                HeadError::BareLf,
            ),
            (
                b"GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                HeadError::TransferEncodingHttp10,
            ),
        ];
        for (bytes, why) in cases {
            let mut w = FramingWatch::new(8192);
            let refused = w.feed(bytes).expect("refused");
            assert_eq!(
                refused,
                Refused {
                    ordinal: 2,
                    why: *why
                }
            );
            assert_eq!(Refused::unpack(refused.pack()), Some(refused));
        }
        assert_eq!(Refused::unpack(0), None);
    }

    #[test]
    fn gives_up_on_http2_and_garbage() {
        assert_eq!(feed_all(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]), None);
        let mut w = FramingWatch::new(8192);
        assert_eq!(w.feed(b"GARBAGE\r\n\r\n"), None);
        assert!(matches!(w.state, State::Off));
    }
}
