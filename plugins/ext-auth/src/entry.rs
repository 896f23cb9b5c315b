//! A cached decision's value in shared state: a head of text lines, an
//! empty line, then the body (bytes):
//!
//! ```text
//! A                  allowed, or D<status> refused with that status
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

/// A cached decision, read in place from its value.
pub struct Entry<'a> {
    /// `None`: allowed; else the refusal's status.
    pub refused: Option<u16>,
    lines: &'a str,
    /// The refusal's body.
    pub body: &'a [u8],
}

impl<'a> Entry<'a> {
    /// Reads a value written by [`encode`].
    pub fn parse(value: &'a [u8]) -> Option<Self> {
        let end = value.windows(2).position(|w| w == b"\n\n")?;
        let head = std::str::from_utf8(&value[..end]).ok()?;
        let (kind, lines) = head.split_once('\n').unwrap_or((head, ""));
        let refused = match kind.strip_prefix('D') {
            Some(status) => Some(status.parse().ok()?),
            None if kind == "A" => None,
            None => return None,
        };
        Some(Self {
            refused,
            lines,
            body: &value[end + 2..],
        })
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

/// Writes a decision: `refused` is `None` when allowed.
pub fn encode(
    refused: Option<u16>,
    consumer: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + body.len());
    match refused {
        None => out.push(b'A'),
        Some(status) => out.extend_from_slice(format!("D{status}").as_bytes()),
    }
    out.push(b'\n');
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
            Some("ada"),
            &[("x-user", "ada"), ("x-tenant", "t:1")],
            b"",
        );
        let entry = Entry::parse(&allowed).unwrap();
        assert_eq!(entry.refused, None);
        assert_eq!(entry.consumer(), Some("ada"));
        assert_eq!(
            entry.headers().collect::<Vec<_>>(),
            [("x-user", "ada"), ("x-tenant", "t:1")]
        );
        assert!(entry.body.is_empty());

        let refused = encode(
            Some(403),
            None,
            &[("www-authenticate", "Basic")],
            b"no\n\nway",
        );
        let entry = Entry::parse(&refused).unwrap();
        assert_eq!(entry.refused, Some(403));
        assert_eq!(entry.consumer(), None);
        assert_eq!(entry.headers().count(), 1);
        assert_eq!(entry.body, b"no\n\nway");

        let bare = encode(None, None, &[], b"");
        assert_eq!(Entry::parse(&bare).unwrap().headers().count(), 0);
        for bad in [&b""[..], b"A", b"X\n\n", b"Dxyz\n\n"] {
            assert!(Entry::parse(bad).is_none(), "{bad:?}");
        }
    }
}
