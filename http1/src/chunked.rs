//! The chunked transfer coding's decoder (RFC 9112 section 7.1), fed the
//! bytes as they arrive, in pieces of any size.
//!
//! Strict where a lenient reading could differ from the next hop's:
//! every line ends in CRLF (a bare LF or CR is refused), a chunk's data is
//! followed by exactly CRLF, a size is hexadecimal digits only (leading
//! zeros taken, a value past 64 bits refused), and what follows the size is
//! optional whitespace and extensions made of visible characters,
//! whitespace and `;`. Bounded: a size line with its extensions at most
//! [`Limits::max_line`] bytes, all extensions of the body at most
//! [`Limits::max_extensions`] bytes, the trailer section at most
//! [`Limits::max_trailer_bytes`] (kept, for the caller to forward) and
//! [`Limits::max_trailer_fields`] fields, which must parse as fields.

/// Bounds on what a chunked body may hold beside its data.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of a chunk-size line: the size, whitespace and extensions,
    /// without its CRLF.
    pub max_line: usize,
    /// Bytes of chunk extensions over the whole body: one-byte chunks
    /// with long extensions would otherwise cost a reader unbounded work
    /// for little data.
    pub max_extensions: usize,
    /// Bytes of the trailer section, its final empty line included.
    pub max_trailer_bytes: usize,
    /// Fields in the trailer section.
    pub max_trailer_fields: usize,
}

/// Why a chunked body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// A chunk size that is not hexadecimal, is missing, or overflows 64
    /// bits; or a character that belongs in no size line.
    BadSize,
    /// A line ended in LF without CR, or a CR not followed by LF.
    BadLineEnd,
    /// A size line over [`Limits::max_line`], or the body's extensions
    /// over [`Limits::max_extensions`].
    LineTooLong,
    /// Chunk data not followed by CRLF.
    BadDataEnd,
    /// The trailer section over its byte or field bound.
    TrailersTooLarge,
    /// A trailer line that does not parse as a field.
    BadTrailers,
}

impl ChunkError {
    pub fn reason(self) -> &'static str {
        match self {
            ChunkError::BadSize => "an invalid chunk size",
            ChunkError::BadLineEnd => "a chunk line not ended by CRLF",
            ChunkError::LineTooLong => "a chunk-size line too long",
            ChunkError::BadDataEnd => "chunk data not followed by CRLF",
            ChunkError::TrailersTooLarge => "trailers too large",
            ChunkError::BadTrailers => "malformed trailers",
        }
    }
}

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for ChunkError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In a size line's digits; `digits` seen so far.
    Size {
        size: u64,
        digits: usize,
    },
    /// After the digits: whitespace, then `;` or the line end.
    SizeWs {
        size: u64,
    },
    /// In the extensions.
    Ext {
        size: u64,
    },
    /// After the size line's CR.
    SizeLf {
        size: u64,
    },
    /// This many data bytes still to come.
    Data(u64),
    /// After a chunk's data: its CR, then its LF.
    DataCr,
    DataLf,
    /// In the trailer section (the bytes go to `trailers`).
    Trailers,
    /// The last chunk and the trailers are read: the body has ended.
    Done,
}

/// A chunked body's decoder. Feed it with [`Decoder::decode`] until it
/// says the body is done; it never reads past the body's end, so what
/// follows (a pipelined request) stays with the caller.
#[derive(Debug)]
pub struct Decoder {
    state: State,
    limits: Limits,
    /// Bytes of the current size line.
    line: usize,
    /// Bytes of extensions so far.
    extensions: usize,
    trailers: Vec<u8>,
}

/// What one [`Decoder::decode`] step found.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// Bytes of the input used (framing and data).
    pub used: usize,
    /// Body data in the input (possibly empty): the last bytes of the
    /// used part.
    pub data: &'a [u8],
    /// Whether the body has ended: the last chunk and its trailer section
    /// are read.
    pub done: bool,
}

impl Decoder {
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            state: State::Size { size: 0, digits: 0 },
            limits,
            line: 0,
            extensions: 0,
            trailers: Vec::new(),
        }
    }

    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Once the body is done, the trailer section as received: field
    /// lines with their CRLFs, without the final empty line; empty when
    /// there were none. (Before that, part of a section still arriving.)
    pub fn trailers(&self) -> &[u8] {
        let n = self.trailers.len().saturating_sub(2);
        &self.trailers[..n]
    }

    /// Once the body is done, calls `f` with each trailer field's name
    /// and value, in order.
    pub fn for_each_trailer(&self, mut f: impl FnMut(&str, &[u8])) {
        if !self.is_done() || self.trailers.len() <= 2 {
            return;
        }
        let lines = self.trailers.iter().filter(|&&b| b == b'\n').count() - 1;
        let mut fields = vec![httparse::EMPTY_HEADER; lines];
        if let Ok(httparse::Status::Complete((_, fields))) =
            httparse::parse_headers(&self.trailers, &mut fields)
        {
            for h in fields {
                f(h.name, h.value);
            }
        }
    }

    /// Reads framing from `input` up to and including at most one run of
    /// data, which it returns. Call again with the rest of the input while
    /// `used` is short of it and the body is not done.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<Decoded<'a>, ChunkError> {
        let mut at = 0;
        while at < input.len() {
            match self.state {
                State::Done => break,
                State::Data(left) => {
                    let take = left.min((input.len() - at) as u64) as usize;
                    self.state = if take as u64 == left {
                        State::DataCr
                    } else {
                        State::Data(left - take as u64)
                    };
                    return Ok(Decoded {
                        used: at + take,
                        data: &input[at..at + take],
                        done: false,
                    });
                }
                State::Trailers => {
                    at += self.trailer_bytes(&input[at..])?;
                }
                _ => {
                    self.byte(input[at])?;
                    at += 1;
                }
            }
        }
        Ok(Decoded {
            used: at,
            data: &[],
            done: self.state == State::Done,
        })
    }

    fn byte(&mut self, b: u8) -> Result<(), ChunkError> {
        if matches!(
            self.state,
            State::Size { .. } | State::SizeWs { .. } | State::Ext { .. }
        ) && b != b'\r'
        {
            self.line += 1;
            if self.line > self.limits.max_line {
                return Err(ChunkError::LineTooLong);
            }
        }
        self.state = match (self.state, b) {
            (State::Size { size, digits }, _) if b.is_ascii_hexdigit() => {
                let digit = u64::from((b as char).to_digit(16).unwrap_or(0));
                let size = size
                    .checked_mul(16)
                    .and_then(|s| s.checked_add(digit))
                    .ok_or(ChunkError::BadSize)?;
                State::Size {
                    size,
                    digits: digits + 1,
                }
            }
            (State::Size { digits: 0, .. }, _) => return Err(ChunkError::BadSize),
            (State::Size { size, .. } | State::SizeWs { size }, b' ' | b'\t') => {
                State::SizeWs { size }
            }
            (State::Size { size, .. } | State::SizeWs { size }, b';') => State::Ext { size },
            (State::Size { size, .. } | State::SizeWs { size } | State::Ext { size }, b'\r') => {
                State::SizeLf { size }
            }
            (State::Size { .. } | State::SizeWs { .. } | State::Ext { .. }, b'\n') => {
                return Err(ChunkError::BadLineEnd);
            }
            (State::Size { .. } | State::SizeWs { .. }, _) => return Err(ChunkError::BadSize),
            // Extensions: visible characters (quoted strings included),
            // whitespace; no controls.
            (State::Ext { size }, _) if b == b'\t' || b >= b' ' && b != 0x7f => {
                self.extensions += 1;
                if self.extensions > self.limits.max_extensions {
                    return Err(ChunkError::LineTooLong);
                }
                State::Ext { size }
            }
            (State::Ext { .. }, _) => return Err(ChunkError::BadSize),
            (State::SizeLf { size }, b'\n') => {
                self.line = 0;
                if size == 0 {
                    State::Trailers
                } else {
                    State::Data(size)
                }
            }
            (State::SizeLf { .. }, _) => return Err(ChunkError::BadLineEnd),
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::Size { size: 0, digits: 0 },
            (State::DataCr | State::DataLf, _) => return Err(ChunkError::BadDataEnd),
            (State::Data(_) | State::Trailers | State::Done, _) => {
                unreachable!("decode handles these states itself")
            }
        };
        Ok(())
    }

    /// Takes trailer-section bytes up to the section's end; returns how
    /// many it used.
    fn trailer_bytes(&mut self, input: &[u8]) -> Result<usize, ChunkError> {
        let room = self.limits.max_trailer_bytes - self.trailers.len();
        // Up to and including the next LF, or all of it.
        let (take, line_end) = match input.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (input.len(), false),
        };
        if take > room {
            return Err(ChunkError::TrailersTooLarge);
        }
        let line_start = self
            .trailers
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        self.trailers.extend_from_slice(&input[..take]);
        if !line_end {
            return Ok(take);
        }
        let line = &self.trailers[line_start..];
        if line.len() < 2 || line[line.len() - 2] != b'\r' {
            return Err(ChunkError::BadLineEnd);
        }
        if line.len() == 2 {
            self.check_trailers()?;
            self.state = State::Done;
        }
        Ok(take)
    }

    /// The whole trailer section must parse as fields, within the bound.
    fn check_trailers(&self) -> Result<(), ChunkError> {
        if self.trailers.len() == 2 {
            return Ok(());
        }
        let lines = self.trailers.iter().filter(|&&b| b == b'\n').count() - 1;
        if lines > self.limits.max_trailer_fields {
            return Err(ChunkError::TrailersTooLarge);
        }
        let mut fields = vec![httparse::EMPTY_HEADER; lines];
        match httparse::parse_headers(&self.trailers, &mut fields) {
            Ok(httparse::Status::Complete((n, _))) if n == self.trailers.len() => {}
            _ => return Err(ChunkError::BadTrailers),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
