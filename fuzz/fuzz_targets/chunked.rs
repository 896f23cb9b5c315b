//! Fuzzes `weir_http1::chunked::Decoder`, and checks more than that it does
//! not panic:
//!
//! - how the bytes arrive changes nothing: the input fed whole, in two
//!   pieces split where its second byte says, and byte by byte gives the
//!   same data, then the same bytes used, end and trailers, or the same
//!   refusal;
//! - each step keeps its contract: it uses no more than it is given,
//!   makes progress unless the body has ended, returns data that is the
//!   last bytes of what it used, and reads nothing past the body's end;
//! - a simple whole-input reading of RFC 9112 section 7.1 (below,
//!   [`reference`], without bounds) agrees: a body the decoder ends is one
//!   the reference ends at the same byte with the same data and trailers;
//!   an incomplete one is incomplete for both; a syntax refusal is one for
//!   both; a bound refusal is one the reference finds exceeded (a size
//!   line, the body's extension bytes, the trailer section); and where
//!   the reference finds no bound exceeded, the decoder refuses nothing
//!   but malformed trailer fields;
//! - a body it ends, encoded again (in chunks of up to 15 bytes, with the
//!   same trailers), decodes to the same data and trailers.
//!
//! Input: the first byte picks the limits (see [`limits`]), the second
//! where to split; the chunked body follows.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_http1::chunked::{ChunkError, Decoder, Limits};

/// The limits the first byte picks: bit 6 clear, roomy ones; set, tight
/// ones from the other bits (the extension bound from bits 2 to 5 and 7,
/// shared with the others, 0 to 31 bytes: below, at and above the line
/// bound of 1 to 16).
fn limits(b: u8) -> Limits {
    if b & 0x40 == 0 {
        return Limits {
            max_line: 256,
            max_extensions: 1024,
            max_trailer_bytes: 1024,
            max_trailer_fields: 16,
        };
    }
    Limits {
        max_line: 1 + usize::from(b & 0x0f),
        max_extensions: 2 * usize::from((b >> 2) & 0x0f) + usize::from(b >> 7),
        max_trailer_bytes: 2 + 24 * usize::from((b >> 4) & 3),
        max_trailer_fields: if b & 0x80 == 0 { 3 } else { 1 },
    }
}

/// What one way of feeding the body gave.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    data: Vec<u8>,
    /// Bytes used; 0 after a refusal.
    used: usize,
    done: bool,
    /// What `trailers()` gives; empty after a refusal.
    trailers: Vec<u8>,
    error: Option<ChunkError>,
}

/// Feeds `pieces` (consecutive parts of one input) to a new decoder, each
/// piece until it is used up, the body ends or it is refused.
fn feed<'a>(limits: Limits, pieces: impl IntoIterator<Item = &'a [u8]>) -> Run {
    let mut decoder = Decoder::new(limits);
    let mut run = Run {
        data: Vec::new(),
        used: 0,
        done: false,
        trailers: Vec::new(),
        error: None,
    };
    'pieces: for mut piece in pieces {
        while !piece.is_empty() {
            let got = match decoder.decode(piece) {
                Ok(got) => got,
                Err(e) => {
                    assert_eq!(e.to_string(), e.reason());
                    run.error = Some(e);
                    break 'pieces;
                }
            };
            assert!(got.used <= piece.len(), "used more than given");
            assert!(got.data.len() <= got.used, "more data than bytes used");
            let data_at = got.used - got.data.len();
            if !got.data.is_empty() {
                assert!(
                    std::ptr::eq(got.data.as_ptr(), piece[data_at..].as_ptr()),
                    "data that is not the last bytes used"
                );
            }
            assert_eq!(got.done, decoder.is_done(), "done and is_done() differ");
            assert!(
                got.used > 0 || got.done,
                "no progress on {} bytes",
                piece.len()
            );
            run.data.extend_from_slice(got.data);
            run.used += got.used;
            piece = &piece[got.used..];
            if got.done {
                // It reads nothing past the end, however often asked.
                let again = decoder.decode(piece).expect("refused after its end");
                assert_eq!((again.used, again.data, again.done), (0, &[][..], true));
                break 'pieces;
            }
        }
    }
    run.done = decoder.is_done();
    if run.error.is_some() {
        // Where a refusal is found within a piece, and so what was used
        // and buffered before it, depends on the pieces: only the refusal
        // and the data before it are compared.
        run.used = 0;
    } else {
        run.trailers = decoder.trailers().to_vec();
    }
    run
}

/// How the reference reading of a whole input ends.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The body ends after this many bytes, with these trailer lines.
    Done { used: usize, trailers: Vec<u8> },
    /// The input stops inside the body.
    Incomplete,
    /// The input is not a chunked body.
    Malformed,
}

/// The reference reading: the data, how it ended, and what bounds it
/// came to: the longest size line (without CRLF), the extension bytes of
/// all size lines, and the trailer section's bytes and field lines so far.
#[derive(Debug)]
struct Reading {
    data: Vec<u8>,
    end: End,
    longest_line: usize,
    /// The bytes after each size line's first `;`, up to its line end or
    /// the first byte an extension may not hold, summed over the body.
    extension_bytes: usize,
    trailer_bytes: usize,
    trailer_fields: usize,
}

/// The chunked coding read straight from the whole input:
/// `chunk-size [ws] [; extensions] CRLF data CRLF`, until a size of zero,
/// then trailer lines ending in CRLF until an empty one. A size is
/// hexadecimal within 64 bits; extensions are tab and bytes from 0x20 but
/// 0x7f. No bounds.
fn reference(input: &[u8]) -> Reading {
    let mut r = Reading {
        data: Vec::new(),
        end: End::Incomplete,
        longest_line: 0,
        extension_bytes: 0,
        trailer_bytes: 0,
        trailer_fields: 0,
    };
    let n = input.len();
    let mut i = 0;
    // The size line that starts at `line`.
    loop {
        let line = i;
        let mut size: u64 = 0;
        while i < n && input[i].is_ascii_hexdigit() {
            let digit = u64::from((input[i] as char).to_digit(16).unwrap_or(0));
            let Some(s) = size.checked_mul(16).and_then(|s| s.checked_add(digit)) else {
                r.longest_line = r.longest_line.max(i + 1 - line);
                r.end = End::Malformed;
                return r;
            };
            size = s;
            i += 1;
        }
        let digits = i - line;
        while i < n && matches!(input[i], b' ' | b'\t') && digits > 0 {
            i += 1;
        }
        if i < n && input[i] == b';' && digits > 0 {
            i += 1;
            let extensions = i;
            while i < n && (input[i] == b'\t' || input[i] >= b' ' && input[i] != 0x7f) {
                i += 1;
            }
            r.extension_bytes += i - extensions;
        }
        // The line's bytes so far; a byte that ends it wrongly counts too.
        let wrong = i < n && input[i] != b'\r';
        r.longest_line = r.longest_line.max(i - line + usize::from(wrong));
        if i == n {
            return r;
        }
        if digits == 0 || wrong {
            r.end = End::Malformed;
            return r;
        }
        i += 1;
        if i == n {
            return r;
        }
        if input[i] != b'\n' {
            r.end = End::Malformed;
            return r;
        }
        i += 1;
        if size == 0 {
            break;
        }
        let left = (n - i) as u64;
        if left < size {
            r.data.extend_from_slice(&input[i..]);
            return r;
        }
        let size = size as usize;
        r.data.extend_from_slice(&input[i..i + size]);
        i += size;
        for end in *b"\r\n" {
            if i == n {
                return r;
            }
            if input[i] != end {
                r.end = End::Malformed;
                return r;
            }
            i += 1;
        }
    }
    let start = i;
    loop {
        let Some(lf) = input[i..].iter().position(|&b| b == b'\n') else {
            r.trailer_bytes = n - start;
            return r;
        };
        let end = i + lf + 1;
        r.trailer_bytes = end - start;
        if lf == 0 || input[end - 2] != b'\r' {
            r.end = End::Malformed;
            return r;
        }
        if lf == 1 {
            r.end = End::Done {
                used: end,
                trailers: input[start..i].to_vec(),
            };
            return r;
        }
        r.trailer_fields += 1;
        i = end;
    }
}

/// The decoder's run against the reference reading.
fn check_reference(limits: &Limits, run: &Run, body: &[u8]) {
    let r = reference(body);
    assert!(
        r.data.starts_with(&run.data),
        "data other than the reference's"
    );
    let within = r.longest_line <= limits.max_line
        && r.extension_bytes <= limits.max_extensions
        && r.trailer_bytes <= limits.max_trailer_bytes
        && r.trailer_fields <= limits.max_trailer_fields;
    match run.error {
        None if run.done => {
            let expect = End::Done {
                used: run.used,
                trailers: run.trailers.clone(),
            };
            assert_eq!(r.end, expect, "ended otherwise than the reference");
            assert_eq!(r.data, run.data, "data other than the reference's");
            assert!(within, "ended past a bound: {r:?}");
        }
        None => {
            assert_eq!(run.used, body.len(), "stopped short of the input");
            assert_eq!(r.end, End::Incomplete, "incomplete, not for the reference");
            assert_eq!(r.data, run.data, "data other than the reference's");
            // Only the trailer bytes are bounded before the section ends.
            assert!(
                r.longest_line <= limits.max_line,
                "a size line past its bound"
            );
            assert!(
                r.extension_bytes <= limits.max_extensions,
                "extensions past their bound"
            );
            assert!(
                r.trailer_bytes <= limits.max_trailer_bytes,
                "trailers past their bound"
            );
        }
        Some(ChunkError::BadSize | ChunkError::BadLineEnd | ChunkError::BadDataEnd) => {
            assert_eq!(
                r.end,
                End::Malformed,
                "refused {:?}, not by the reference",
                run.error
            );
        }
        Some(ChunkError::LineTooLong) => {
            assert!(
                r.longest_line > limits.max_line || r.extension_bytes > limits.max_extensions,
                "a line too long within its bound, extensions within theirs: {r:?}"
            );
        }
        Some(ChunkError::TrailersTooLarge) => {
            assert!(
                r.trailer_bytes > limits.max_trailer_bytes
                    || r.trailer_fields > limits.max_trailer_fields,
                "trailers too large within their bounds: {r:?}"
            );
        }
        Some(ChunkError::BadTrailers) => {
            assert!(
                matches!(r.end, End::Done { .. }),
                "malformed trailers before the section's end: {r:?}"
            );
        }
    }
    if within && r.end != End::Malformed {
        assert!(
            matches!(run.error, None | Some(ChunkError::BadTrailers)),
            "refused {:?} within every bound",
            run.error
        );
    }
}

/// A body the decoder ended, encoded again: the data in chunks of up to 15
/// bytes (one hex digit, within any size-line bound), then the trailers.
fn check_round_trip(limits: Limits, run: &Run) {
    let mut encoded = Vec::new();
    for chunk in run.data.chunks(15) {
        encoded.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        encoded.extend_from_slice(chunk);
        encoded.extend_from_slice(b"\r\n");
    }
    encoded.extend_from_slice(b"0\r\n");
    encoded.extend_from_slice(&run.trailers);
    encoded.extend_from_slice(b"\r\n");
    let again = feed(limits, [&encoded[..]]);
    let expect = Run {
        data: run.data.clone(),
        used: encoded.len(),
        done: true,
        trailers: run.trailers.clone(),
        error: None,
    };
    assert_eq!(again, expect, "encoded again, decoded otherwise");
}

fuzz_target!(|input: &[u8]| {
    let [pick, split, body @ ..] = input else {
        return;
    };
    let limits = limits(*pick);
    let at = usize::from(*split) * body.len() / 255;

    let whole = feed(limits, [body]);
    let halves = feed(limits, [&body[..at], &body[at..]]);
    let bytes = feed(limits, body.chunks(1));
    assert_eq!(whole, halves, "whole and split at {at} differ");
    assert_eq!(whole, bytes, "whole and byte by byte differ");

    check_reference(&limits, &whole, body);
    if whole.done {
        check_round_trip(limits, &whole);
    }
});
