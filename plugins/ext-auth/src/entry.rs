//! A cached decision's value in shared state: a head of text lines, an
//! empty line, then the body (bytes):
//!
//! ```text
//! A                  allowed, or D<status> refused with that status
//! e<ms>              when it expires: ms since the Unix epoch (the host's wall clock)
//! c<consumer>        the consumer, if the service named one
//! h<name>:<value>    a header to set (on the forwarded request, or on the refusal)
//! <empty line>
//! <body>             the refusal's body (empty when allowed)
//! ```
//!
//! Header names are HTTP tokens (no `:`) and values cannot hold a line
//! break (the host refuses one), so the lines cannot be confused; a value
//! that does not parse is treated as a miss. [`Entry`] reads one in place,
//! without copying: a cache hit allocates nothing here.
//!
//! The expiry is the instant the writer gave shared state (its clock
//! reading before the write, plus the TTL): shared state drops the entry a
//! moment after it, and the instances' memos ([`crate::memo`]) never keep
//! its decision past it. An entry without one (written before the line
//! existed) is used but not remembered; an entry read past it is a miss.

/// A cached decision, read in place from its value.
pub struct Entry<'a> {
    /// `None`: allowed; else the refusal's status.
    pub refused: Option<u16>,
    /// When it expires (ms since the Unix epoch), if it says.
    pub expires_ms: Option<u64>,
    lines: &'a str,
    /// The refusal's body.
    pub body: &'a [u8],
}

impl<'a> Entry<'a> {
    /// Reads a value written by [`encode`].
    pub fn parse(value: &'a [u8]) -> Option<Self> {
        let end = value.windows(2).position(|w| w == b"\n\n")?;
        let head = std::str::from_utf8(&value[..end]).ok()?;
        let (kind, mut lines) = head.split_once('\n').unwrap_or((head, ""));
        let refused = match kind.strip_prefix('D') {
            Some(status) => Some(status.parse().ok()?),
            None if kind == "A" => None,
            None => return None,
        };
        let mut expires_ms = None;
        if let Some(rest) = lines.strip_prefix('e') {
            let (at, after) = rest.split_once('\n').unwrap_or((rest, ""));
            expires_ms = Some(at.parse().ok()?);
            lines = after;
        }
        Some(Self {
            refused,
            expires_ms,
            lines,
            body: &value[end + 2..],
        })
    }

    /// Whether it may still be used at `now_ms`.
    pub fn live(&self, now_ms: u64) -> bool {
        self.expires_ms.is_none_or(|at| now_ms < at)
    }

    /// The consumer the service named, if any.
    pub fn consumer(&self) -> Option<&'a str> {
        self.lines.split('\n').find_map(|l| l.strip_prefix('c'))
    }

    /// The headers to set, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.lines
            .split('\n')
            .filter_map(|l| l.strip_prefix('h')?.split_once(':'))
    }
}

/// Writes a decision: `refused` is `None` when allowed; it expires at
/// `expires_ms`.
pub fn encode(
    refused: Option<u16>,
    expires_ms: u64,
    consumer: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + body.len());
    match refused {
        None => out.push(b'A'),
        Some(status) => out.extend_from_slice(format!("D{status}").as_bytes()),
    }
    out.extend_from_slice(format!("\ne{expires_ms}\n").as_bytes());
    if let Some(consumer) = consumer {
        out.push(b'c');
        out.extend_from_slice(consumer.as_bytes());
        out.push(b'\n');
    }
    for (name, value) in headers {
        out.push(b'h');
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_read_back_as_written() {
        let allowed = encode(
            None,
            1_700_000_060_000,
            Some("ada"),
            &[("x-user", "ada"), ("x-tenant", "t:1")],
            b"",
        );
        let entry = Entry::parse(&allowed).unwrap();
        assert_eq!(entry.refused, None);
        assert_eq!(entry.expires_ms, Some(1_700_000_060_000));
        assert!(entry.live(1_700_000_059_999));
        assert!(!entry.live(1_700_000_060_000));
        assert_eq!(entry.consumer(), Some("ada"));
        assert_eq!(
            entry.headers().collect::<Vec<_>>(),
            [("x-user", "ada"), ("x-tenant", "t:1")]
        );
        assert!(entry.body.is_empty());

        let refused = encode(
            Some(403),
            7,
            None,
            &[("www-authenticate", "Basic")],
            b"no\n\nway",
        );
        let entry = Entry::parse(&refused).unwrap();
        assert_eq!(entry.refused, Some(403));
        assert_eq!(entry.expires_ms, Some(7));
        assert_eq!(entry.consumer(), None);
        assert_eq!(entry.headers().count(), 1);
        assert_eq!(entry.body, b"no\n\nway");

        let bare = encode(None, 1, None, &[], b"");
        assert_eq!(Entry::parse(&bare).unwrap().headers().count(), 0);

        // Written before entries carried their expiry: read, never expired.
        let old = Entry::parse(b"A\ncada\nhx-user:ada\n\n").unwrap();
        assert_eq!(old.expires_ms, None);
        assert!(old.live(u64::MAX));
        assert_eq!(old.consumer(), Some("ada"));
        assert_eq!(old.headers().collect::<Vec<_>>(), [("x-user", "ada")]);

        for bad in [&b""[..], b"A", b"X\n\n", b"Dxyz\n\n", b"A\nesoon\n\n"] {
            assert!(Entry::parse(bad).is_none(), "{bad:?}");
        }
    }
}
