//! Header hygiene between client and upstream: hop-by-hop headers are
//! removed in both directions (RFC 9110 section 7.6.1, including every
//! header the `Connection` field lists; `Trailer` is not one, so trailers
//! stay declared), the `X-Forwarded-*` family and
//! `Via` are set, and the request id is kept or made. Also what the
//! framing checks read in a request's parsed headers: the transfer coding
//! and the names that only look like framing headers.

use crate::framing::is_framing_lookalike;
use std::net::IpAddr;

use http::Version;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
/// `Connection: close` names it, as it would any field.
static CLOSE: HeaderName = HeaderName::from_static("close");
/// The h2c upgrade's settings (RFC 7540 section 3.2.1): a connection-specific
/// field, so never forwarded, whether or not `Connection` lists it.
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Longest request id accepted from a client; a longer one is replaced so a
/// client cannot make every log line and upstream header arbitrarily big.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Whether a header is hop-by-hop by definition (RFC 9110 7.6.1, plus the
/// legacy ones proxies still see). Standard names compare as enum values,
/// so this costs no hashing.
fn is_fixed_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TE
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == header::PROXY_AUTHENTICATE
        || name == header::PROXY_AUTHORIZATION
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
        || name == HTTP2_SETTINGS
}

/// What [`strip_hop_by_hop`] took away that its caller may still need.
#[derive(Debug, Default)]
pub struct Stripped {
    /// A field went only because `Connection` named it (so any field may
    /// be gone).
    pub named: bool,
    /// `TE` listed `trailers` ([`accepts_trailers`]).
    pub te_trailers: bool,
}

/// Removes every hop-by-hop header, including those `Connection` names.
/// One pass over the names finds them; most requests carry none besides
/// `Connection`, so usually nothing else is touched, and nothing is looked
/// up that the pass did not find.
pub fn strip_hop_by_hop(h: &mut HeaderMap) -> Stripped {
    let mut found: [Option<HeaderName>; 4] = Default::default();
    let mut more: Vec<HeaderName> = Vec::new();
    for name in h.keys() {
        if is_fixed_hop_by_hop(name) {
            match found.iter_mut().find(|f| f.is_none()) {
                Some(slot) => *slot = Some(name.clone()),
                None => more.push(name.clone()),
            }
        }
    }
    if found[0].is_none() {
        return Stripped::default();
    }
    let seen = |name: HeaderName| found.iter().flatten().chain(&more).any(|n| *n == name);
    let te_trailers = seen(header::TE) && accepts_trailers(h);
    let mut named = false;
    // The pass above saw whether `Connection` is there: no lookup for
    // that, and one to take all its values out.
    if seen(header::CONNECTION)
        && let header::Entry::Occupied(e) = h.entry(header::CONNECTION)
    {
        // Tokens naming a fixed hop-by-hop header (`keep-alive`, the usual
        // one) are removed below anyway: no name is parsed for them and
        // the list stays unallocated.
        // Split on the raw bytes: a value with one non-ASCII byte still
        // names the headers it lists (skipping it whole would forward them).
        // `close`, the other usual one, is a name made at compile time.
        let mut listed: smallvec::SmallVec<[HeaderName; 2]> = smallvec::SmallVec::new();
        for v in e.remove_entry_mult().1 {
            listed.extend(
                v.as_bytes()
                    .split(|b| *b == b',')
                    .map(<[u8]>::trim_ascii)
                    .filter(|t| !crate::wire::is_hop_by_hop(t))
                    .filter_map(|t| match t.eq_ignore_ascii_case(b"close") {
                        true => Some(CLOSE.clone()),
                        false => HeaderName::from_bytes(t).ok(),
                    }),
            );
        }
        for name in listed {
            named |= h.remove(name).is_some();
        }
    }
    for name in found.into_iter().flatten().chain(more) {
        if name != header::CONNECTION {
            h.remove(name);
        }
    }
    Stripped { named, te_trailers }
}

/// Whether the request's transfer coding is one `Transfer-Encoding` field
/// saying `chunked` (case-insensitive, RFC 9112 section 7), or absent.
/// Anything else is refused: hyper removes the last `chunked` and would
/// forward still-encoded bytes with no coding to say so (`gzip, chunked`),
/// and RFC 9112 section 6.1 lets a proxy refuse codings it does not
/// forward intact. One `chunked` applied twice (`chunked, chunked`, or two
/// fields) is such a body too.
pub fn transfer_coding_is_plain(h: &HeaderMap) -> bool {
    let mut codings = h.get_all(header::TRANSFER_ENCODING).iter();
    match (codings.next(), codings.next()) {
        (None, _) => true,
        (Some(one), None) => one.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked"),
        (Some(_), Some(_)) => false,
    }
}

/// Screens the request's header names: a framing look-alike
/// ([`is_framing_lookalike`]) is an error whatever the listener says, and
/// names with `_` are removed unless `keep_underscores` (nginx's
/// `underscores_in_headers off`: `X_Forwarded_For` and `X-Forwarded-For`
/// are one variable to a CGI-style upstream, so one could pass for the
/// other). Only names with `_` or `--` are looked at twice, and nothing is
/// allocated unless one is removed.
pub fn screen_names(h: &mut HeaderMap, keep_underscores: bool) -> Result<(), &'static str> {
    let mut drop: Vec<HeaderName> = Vec::new();
    for name in h.keys() {
        let bytes = name.as_str().as_bytes();
        let underscore = bytes.contains(&b'_');
        if !underscore && !bytes.windows(2).any(|w| w == b"--") {
            continue;
        }
        if is_framing_lookalike(name.as_str()) {
            return Err("a header name that reads as Transfer-Encoding or Content-Length");
        }
        if underscore && !keep_underscores {
            drop.push(name.clone());
        }
    }
    for name in drop {
        h.remove(name);
    }
    Ok(())
}

/// Whether the request's `TE` accepts trailers (RFC 9110 section 10.1.4).
pub fn accepts_trailers(h: &HeaderMap) -> bool {
    // TE's members may carry a weight (`trailers;q=1` is unusual but valid).
    lists(h, header::TE, "trailers", true)
}

/// Whether `Connection` lists `token` (case-insensitive).
pub fn connection_has(h: &HeaderMap, token: &str) -> bool {
    lists(h, header::CONNECTION, token, false)
}

/// Whether the comma-separated list in the `name` fields has `token`
/// (case-insensitive; with `params`, what follows a member's `;` is
/// ignored).
fn lists(h: &HeaderMap, name: HeaderName, token: &str, params: bool) -> bool {
    h.get_all(name).iter().any(|v| has_member(v, token, params))
}

/// Whether the comma-separated list in one field value has `token`
/// (case-insensitive), as [`connection_has`] reads each `Connection`
/// field.
pub fn value_lists(v: &HeaderValue, token: &str) -> bool {
    has_member(v, token, false)
}

fn has_member(v: &HeaderValue, token: &str, params: bool) -> bool {
    v.as_bytes().split(|b| *b == b',').any(|t| {
        let t = match (params, t.iter().position(|b| *b == b';')) {
            (true, Some(i)) => &t[..i],
            _ => t,
        };
        t.trim_ascii().eq_ignore_ascii_case(token.as_bytes())
    })
}

/// This hop's `Via` value for a message of `version` (made at compile
/// time: `from_static` checks its bytes when it runs).
pub fn via_value(version: Version) -> HeaderValue {
    const V10: HeaderValue = HeaderValue::from_static("1.0 weir");
    const V11: HeaderValue = HeaderValue::from_static("1.1 weir");
    const V2: HeaderValue = HeaderValue::from_static("2 weir");
    const V3: HeaderValue = HeaderValue::from_static("3 weir");
    match version {
        Version::HTTP_10 => V10,
        Version::HTTP_2 => V2,
        Version::HTTP_3 => V3,
        _ => V11,
    }
}

/// Appends this hop to `Via`.
pub fn append_via(h: &mut HeaderMap, version: Version) {
    let ours = via_value(version);
    // One lookup: most messages carry no `Via` yet.
    match h.entry(header::VIA) {
        header::Entry::Vacant(e) => {
            e.insert(ours);
        }
        header::Entry::Occupied(mut e) => {
            let value = match (e.get().to_str(), ours.to_str()) {
                (Ok(prev), Ok(ours)) if !prev.is_empty() => {
                    HeaderValue::from_str(&format!("{prev}, {ours}")).ok()
                }
                _ => None,
            };
            e.insert(value.unwrap_or(ours));
        }
    }
}

/// Sets `X-Forwarded-For` (appending the client address), `-Proto` and
/// `-Host`. `client` is the peer address as a header value, made once per
/// connection; `host` is the host the request was routed by, the same
/// value the upstream receives as `Host` (a client's own
/// `X-Forwarded-Host` is replaced, never passed on).
pub fn set_forwarded(
    h: &mut HeaderMap,
    client: &HeaderValue,
    proto: &'static str,
    host: Option<HeaderValue>,
) {
    // One lookup for the get-then-set.
    match h.entry(X_FORWARDED_FOR.clone()) {
        header::Entry::Vacant(e) => {
            e.insert(client.clone());
        }
        header::Entry::Occupied(mut e) => {
            let prev = e.get();
            let appended = if prev.is_empty() {
                None
            } else {
                let mut v = Vec::with_capacity(prev.len() + 2 + client.len());
                v.extend_from_slice(prev.as_bytes());
                v.extend_from_slice(b", ");
                v.extend_from_slice(client.as_bytes());
                HeaderValue::from_bytes(&v).ok()
            };
            e.insert(appended.unwrap_or_else(|| client.clone()));
        }
    }
    h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    match host {
        Some(v) => h.insert(X_FORWARDED_HOST.clone(), v),
        None => h.remove(&X_FORWARDED_HOST),
    };
}

/// The peer address as a header value, for [`set_forwarded`]: made once
/// per connection, an IPv4 address written digit by digit (`fmt` takes
/// about 1,300 instructions for one, and a `String` on the way).
pub fn peer_value(ip: IpAddr) -> HeaderValue {
    let IpAddr::V4(v4) = ip else {
        return HeaderValue::from_str(&ip.to_string())
            .expect("an IP address is a valid header value");
    };
    let mut text = [0u8; 15];
    let mut n = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text[n] = b'.';
            n += 1;
        }
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(octet).as_bytes();
        text[n..n + digits.len()].copy_from_slice(digits);
        n += digits.len();
    }
    HeaderValue::from_bytes(&text[..n]).expect("an IP address is a valid header value")
}

/// The client's request id when it sent a sane one, or a new random one.
pub fn request_id(h: &HeaderMap) -> HeaderValue {
    if let Some(v) = h.get(&X_REQUEST_ID)
        && !v.is_empty()
        && v.len() <= MAX_REQUEST_ID_LEN
    {
        return v.clone();
    }
    let mut buf = [0u8; 32];
    let n = fastrand::u128(..);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in buf.iter_mut().enumerate() {
        *b = HEX[((n >> (i * 4)) & 0xf) as usize];
    }
    // Owned by one shared allocation: the clones for the upstream request
    // and the response only count references.
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(buf))
        .expect("hex is a valid header value")
}

/// The request id as a header of the messages Weir sends. It is unique
/// per request, so HTTP/2's header compression could never reuse it:
/// marked sensitive, HPACK sends it as a literal that is never indexed
/// instead of adding it to (and evicting others from) the dynamic table
/// on every request. HTTP/1.1 ignores the mark. The id itself stays
/// unmarked: logs print a sensitive value as `Sensitive`.
pub fn request_id_field(id: &HeaderValue) -> HeaderValue {
    let mut v = id.clone();
    v.set_sensitive(true);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_address_is_written_as_its_display_form() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "1.0.10.100",
            "::1",
            "2001:db8::7",
            "::ffff:192.0.2.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(peer_value(ip), ip.to_string().as_str(), "{ip}");
        }
    }

    #[test]
    fn connection_close_takes_a_field_named_close_with_it() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("Close"));
        h.insert("close", HeaderValue::from_static("1"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        assert!(strip_hop_by_hop(&mut h).named);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn connection_listed_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));

        // A non-ASCII byte elsewhere in the value hides no listed name.
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_bytes(b"x-secret, caf\xe9").unwrap(),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_bytes(b"Upgrade, caf\xe9").unwrap(),
        );
        assert!(connection_has(&h, "upgrade"));
    }

    #[test]
    fn http2_settings_goes_even_unlisted() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("Upgrade"));
        h.insert("upgrade", HeaderValue::from_static("h2c"));
        h.insert(
            "http2-settings",
            HeaderValue::from_static("AAMAAABkAARAAAAAAAIAAAAA"),
        );
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn only_one_plain_chunked_coding_passes() {
        let with = |values: &[&'static str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append("transfer-encoding", HeaderValue::from_static(v));
            }
            transfer_coding_is_plain(&h)
        };
        assert!(with(&[]));
        assert!(with(&["chunked"]));
        assert!(with(&["Chunked "]));
        assert!(!with(&["gzip, chunked"]));
        assert!(!with(&["chunked, chunked"]));
        assert!(!with(&["chunked", "chunked"]));
        assert!(!with(&["", "chunked"]));
        assert!(!with(&["gzip"]));
        assert!(!with(&["chunked;x=1"]));
    }

    #[test]
    fn framing_lookalikes() {
        for name in [
            "transfer_encoding",
            "content_length",
            "transfer---encoding",
            "transfer___encoding",
            "content-_length",
            "transfer_-_encoding",
        ] {
            assert!(is_framing_lookalike(name), "{name}");
        }
        for name in [
            "transfer-encoding",
            "content-length",
            "x_transfer_encoding",
            "transferencoding",
            "content_length_x",
            "content_type",
            "-content-length",
        ] {
            assert!(!is_framing_lookalike(name), "{name}");
        }
    }

    #[test]
    fn underscored_names_go_unless_kept_and_lookalikes_are_refused() {
        let head = || {
            let mut h = HeaderMap::new();
            h.insert("x_custom", HeaderValue::from_static("1"));
            h.insert("x-custom", HeaderValue::from_static("2"));
            h.insert("x--double", HeaderValue::from_static("3"));
            h
        };
        let mut h = head();
        assert_eq!(screen_names(&mut h, false), Ok(()));
        assert_eq!(h.len(), 2, "{h:?}");
        assert!(!h.contains_key("x_custom"));
        let mut h = head();
        assert_eq!(screen_names(&mut h, true), Ok(()));
        assert_eq!(h.len(), 3);
        for keep in [false, true] {
            let mut h = head();
            h.insert("transfer_encoding", HeaderValue::from_static("chunked"));
            assert!(screen_names(&mut h, keep).is_err());
            let mut h = head();
            h.insert("content--length", HeaderValue::from_static("5"));
            assert!(screen_names(&mut h, keep).is_err());
        }
    }

    #[test]
    fn forwarded_and_via_append() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.insert("via", HeaderValue::from_static("1.1 edge"));
        set_forwarded(
            &mut h,
            &peer_value("127.0.0.1".parse().unwrap()),
            "http",
            Some(HeaderValue::from_static("a.com")),
        );
        append_via(&mut h, Version::HTTP_11);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["via"], "1.1 edge, 1.1 weir");
        assert_eq!(h["x-forwarded-host"], "a.com");
    }

    #[test]
    fn request_ids() {
        let mut h = HeaderMap::new();
        let a = request_id(&h);
        assert_eq!(a.len(), 32);
        // Logged as itself; sent marked for HPACK, with the same bytes.
        assert!(!a.is_sensitive());
        assert!(format!("{a:?}").contains(a.to_str().unwrap()));
        let sent = request_id_field(&a);
        assert!(sent.is_sensitive());
        assert_eq!(sent.as_bytes(), a.as_bytes());
        assert_ne!(a, request_id(&h));
        h.insert("x-request-id", HeaderValue::from_static("abc"));
        assert_eq!(request_id(&h), "abc");
        h.insert(
            "x-request-id",
            HeaderValue::from_str(&"a".repeat(200)).unwrap(),
        );
        assert_eq!(request_id(&h).len(), 32);
    }
}
