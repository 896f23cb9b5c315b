//! The decision cache's two formats: the shared-state key a request's
//! credentials map to, and the value a decision is kept as.
//!
//! **Key.** SHA-256 over the plugin entry's identity (what shapes the
//! service's answer: upstream, method, path, headers sent and copied) and
//! then each credential header's values, every piece length-prefixed so no
//! two different inputs hash alike; written as 64 hex digits. Shared state
//! is the plugin's over every route it serves, and its keys may be listed
//! by operators: a secret (a token, a cookie) is never a key in clear, and
//! two routes asking different services never share a decision. The
//! hasher is seeded with the identity once, so a request hashes only its
//! own credentials, into a key on the stack.
//!
//! **Value.** A head of text lines, an empty line, then the body (bytes):
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
//! that does not parse is treated as a miss.

use sha2::{Digest, Sha256};

/// Hashes credentials into cache keys for one plugin entry.
#[derive(Clone)]
pub struct KeyHasher {
    seeded: Sha256,
}

/// A cache key: 64 lower-case hex digits, on the stack.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CacheKey([u8; 64]);

impl KeyHasher {
    /// A hasher for the plugin entry described by `identity` (text that
    /// differs whenever the service's answer may differ).
    pub fn new(identity: &str) -> Self {
        let mut seeded = Sha256::new();
        update_prefixed(&mut seeded, identity.as_bytes());
        Self { seeded }
    }

    /// Starts the key of one request.
    pub fn start(&self) -> KeyBuilder {
        KeyBuilder {
            hasher: self.seeded.clone(),
        }
    }
}

/// One request's key, fed header by header.
pub struct KeyBuilder {
    hasher: Sha256,
}

impl KeyBuilder {
    /// Adds one credential header's values (none when it is absent: an
    /// absent header and an empty one differ by their value count).
    pub fn header(&mut self, values: &[String]) {
        self.hasher.update((values.len() as u64).to_le_bytes());
        for value in values {
            update_prefixed(&mut self.hasher, value.as_bytes());
        }
    }

    /// The key.
    pub fn finish(self) -> CacheKey {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = self.hasher.finalize();
        let mut key = [0u8; 64];
        for (i, byte) in digest.iter().enumerate() {
            key[2 * i] = HEX[usize::from(byte >> 4)];
            key[2 * i + 1] = HEX[usize::from(byte & 0xf)];
        }
        CacheKey(key)
    }
}

fn update_prefixed(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

impl CacheKey {
    /// The key as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits")
    }

    /// A key given back as text (a call's tag); `None` if it is not one.
    pub fn parse(text: &str) -> Option<Self> {
        let bytes: [u8; 64] = text.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            .then_some(Self(bytes))
    }
}

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

    #[test]
    fn keys_tell_credentials_and_entries_apart() {
        let one = KeyHasher::new("auth GET /check");
        let other = KeyHasher::new("auth GET /other");
        let key = |hasher: &KeyHasher, headers: &[&[&str]]| {
            let mut b = hasher.start();
            for values in headers {
                let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
                b.header(&values);
            }
            b.finish()
        };
        let a = key(&one, &[&["Bearer a"], &[]]);
        assert!(a == key(&one, &[&["Bearer a"], &[]]));
        assert!(a != key(&other, &[&["Bearer a"], &[]]));
        assert!(a != key(&one, &[&["Bearer b"], &[]]));
        assert!(a != key(&one, &[&[], &["Bearer a"]]));
        assert!(key(&one, &[&["ab", "c"]]) != key(&one, &[&["a", "bc"]]));
        assert!(key(&one, &[&[""]]) != key(&one, &[&[]]));
        assert!(!a.as_str().contains("Bearer"));
        assert!(CacheKey::parse(a.as_str()) == Some(a));
        assert!(CacheKey::parse("xyz").is_none());
    }
}
