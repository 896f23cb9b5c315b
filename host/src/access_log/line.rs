//! One request's access-log line and how it is written: JSON with the
//! configured fields, or the combined log format. A line is written by
//! hand, straight into one buffer (JSON escaping, integers through `itoa`,
//! the time's text made once a second), rather than through `serde_json`:
//! making a line is on the worker, so it costs one allocation and no
//! formatting machinery per field.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Method, Uri, Version};

use super::MAX_VALUE_BYTES;
use crate::config::LogField;

/// One request's line, borrowed from its record.
pub struct Line<'a> {
    /// When the request's head arrived.
    pub time: SystemTime,
    pub request_id: &'a HeaderValue,
    pub trace_id: Option<&'a str>,
    /// The client's IP address as text (made once per connection).
    pub client_ip: &'a HeaderValue,
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub version: Version,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration: Duration,
    /// From the first try's start to the response head (none when no try
    /// was made).
    pub upstream_duration: Option<Duration>,
    pub route: Option<&'a str>,
    pub upstream: Option<&'a str>,
    pub endpoint: Option<&'a str>,
    pub attempts: u32,
    pub tls_version: Option<&'a str>,
    pub sni: Option<&'a str>,
    pub user_agent: Option<&'a HeaderValue>,
    pub referer: Option<&'a HeaderValue>,
    /// Fields plugins set, in the order they were first set.
    pub plugin: Vec<(&'a str, &'a str)>,
}

/// A string value cut to [`MAX_VALUE_BYTES`] at a character boundary.
pub(super) fn bounded(s: &str) -> &str {
    if s.len() <= MAX_VALUE_BYTES {
        return s;
    }
    let mut end = MAX_VALUE_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

pub(super) fn protocol(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP",
    }
}

/// `s` as a JSON string (RFC 8259 section 7): `"` and `\\` escaped, control
/// characters as `\\uXXXX` (or their short forms), the rest as it is.
/// Written straight into the line: a value with nothing to escape (nearly
/// all) is copied in one piece.
pub(super) fn json_str(out: &mut String, s: &str) {
    let s = bounded(s);
    out.push('"');
    // One pass without branches over the whole value (it vectorises),
    // then one copy when there is nothing to escape.
    let escapes = s.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\') | (b == 0x7f)
    });
    if !escapes {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..0x20 | 0x7f => "",
            _ => continue,
        };
        out.push_str(&s[plain..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(esc);
        }
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

/// A header value as a JSON string: its bytes as UTF-8 text when they are
/// (nearly always), else with the other bytes replaced.
pub(super) fn json_bytes(out: &mut String, v: &[u8]) {
    match std::str::from_utf8(v) {
        Ok(s) => json_str(out, s),
        Err(_) => json_str(out, &String::from_utf8_lossy(v)),
    }
}

pub(super) fn int(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// Milliseconds with three decimals, from microseconds, without floating
/// point: `1234` → `1.234`.
pub(super) fn millis(out: &mut String, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    int(out, us / 1000);
    let frac = us % 1000;
    out.push('.');
    out.push(char::from(b'0' + (frac / 100) as u8));
    out.push(char::from(b'0' + (frac / 10 % 10) as u8));
    out.push(char::from(b'0' + (frac % 10) as u8));
}

/// RFC 3339 UTC with milliseconds (`2026-12-07T08:46:31.250Z`). The part
/// up to the second is made once per second per thread: every line of a
/// busy second reuses it.
pub(super) fn rfc3339(out: &mut String, t: SystemTime) {
    thread_local! {
        static SECOND: std::cell::RefCell<(u64, String)> =
            const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            let (days, rem) = (secs / 86_400, secs % 86_400);
            let (y, m, d) = civil_from_days(days as i64);
            c.1.clear();
            let _ = write!(
                c.1,
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
                rem / 3600,
                rem % 3600 / 60,
                rem % 60
            );
            c.0 = secs;
        }
        out.push('"');
        out.push_str(&c.1);
    });
    let ms = since.subsec_millis();
    out.push('.');
    out.push(char::from(b'0' + (ms / 100) as u8));
    out.push(char::from(b'0' + (ms / 10 % 10) as u8));
    out.push(char::from(b'0' + (ms % 10) as u8));
    out.push_str("Z\"");
}

/// Each field's key as a line writes it, `,"name":`, made once when the
/// log starts (the first key of a line is written without its comma).
pub(super) fn keys(fields: &[LogField]) -> Vec<(LogField, String)> {
    fields
        .iter()
        .map(|f| (*f, format!(",\"{}\":", f.name())))
        .collect()
}

pub(super) fn json(out: &mut String, l: &Line<'_>, fields: &[(LogField, String)]) {
    out.push('{');
    let mut first = true;
    for (f, key) in fields {
        let mut key_ = |out: &mut String| {
            out.push_str(if first { &key[1..] } else { key });
            first = false;
        };
        match f {
            LogField::Time => {
                key_(out);
                rfc3339(out, l.time);
            }
            LogField::RequestId => {
                key_(out);
                json_bytes(out, l.request_id.as_bytes());
            }
            LogField::TraceId => {
                if let Some(t) = l.trace_id {
                    key_(out);
                    json_str(out, t);
                }
            }
            LogField::ClientAddress => {
                key_(out);
                json_bytes(out, l.client_ip.as_bytes());
            }
            LogField::Method => {
                key_(out);
                json_str(out, l.method.as_str());
            }
            LogField::Path => {
                key_(out);
                json_str(out, l.uri.path());
            }
            LogField::Query => {
                if let Some(q) = l.uri.query() {
                    key_(out);
                    json_str(out, q);
                }
            }
            LogField::Protocol => {
                key_(out);
                json_str(out, protocol(l.version));
            }
            LogField::Status => {
                key_(out);
                int(out, u64::from(l.status));
            }
            LogField::BytesIn => {
                key_(out);
                int(out, l.bytes_in);
            }
            LogField::BytesOut => {
                key_(out);
                int(out, l.bytes_out);
            }
            LogField::DurationMs => {
                key_(out);
                millis(out, l.duration);
            }
            LogField::UpstreamDurationMs => {
                if let Some(d) = l.upstream_duration {
                    key_(out);
                    millis(out, d);
                }
            }
            LogField::Route => opt(out, &mut key_, l.route),
            LogField::Upstream => opt(out, &mut key_, l.upstream),
            LogField::Endpoint => opt(out, &mut key_, l.endpoint),
            LogField::Attempts => {
                key_(out);
                int(out, u64::from(l.attempts));
            }
            LogField::TlsVersion => opt(out, &mut key_, l.tls_version.filter(|v| !v.is_empty())),
            LogField::Sni => opt(out, &mut key_, l.sni),
            LogField::UserAgent => {
                if let Some(v) = l.user_agent {
                    key_(out);
                    json_bytes(out, v.as_bytes());
                }
            }
            LogField::Referer => {
                if let Some(v) = l.referer {
                    key_(out);
                    json_bytes(out, v.as_bytes());
                }
            }
            LogField::Plugin => {
                if !l.plugin.is_empty() {
                    key_(out);
                    out.push('{');
                    for (i, (k, v)) in l.plugin.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        json_str(out, k);
                        out.push(':');
                        json_str(out, v);
                    }
                    out.push('}');
                }
            }
        }
    }
    out.push('}');
}

pub(super) fn opt(out: &mut String, key: &mut impl FnMut(&mut String), v: Option<&str>) {
    if let Some(v) = v {
        key(out);
        json_str(out, v);
    }
}

/// `%h - %u [%t] "%r" %>s %b "%{Referer}i" "%{User-Agent}i"`: the client
/// address, the `consumer` a plugin set (`-` when none), the request's
/// time, its request line, the status, the body bytes sent (`-` for none),
/// the referer and the user agent.
pub(super) fn combined(out: &mut String, l: &Line<'_>) {
    let consumer = l
        .plugin
        .iter()
        .find(|(k, _)| *k == "consumer")
        .map(|(_, v)| *v);
    escaped(out, l.client_ip.as_bytes());
    out.push_str(" - ");
    quoted_or_dash(out, consumer.map(str::as_bytes), false);
    out.push_str(" [");
    clf_time(out, l.time);
    out.push_str("] \"");
    escaped(out, l.method.as_str().as_bytes());
    out.push(' ');
    escaped(
        out,
        l.uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .as_bytes(),
    );
    out.push(' ');
    out.push_str(protocol(l.version));
    let _ = write!(out, "\" {} ", l.status);
    if l.bytes_out == 0 {
        out.push('-');
    } else {
        let _ = write!(out, "{}", l.bytes_out);
    }
    out.push(' ');
    quoted_or_dash(out, l.referer.map(HeaderValue::as_bytes), true);
    out.push(' ');
    quoted_or_dash(out, l.user_agent.map(HeaderValue::as_bytes), true);
}

pub(super) fn quoted_or_dash(out: &mut String, v: Option<&[u8]>, quoted: bool) {
    match v {
        Some(v) if quoted => {
            out.push('"');
            escaped(out, v);
            out.push('"');
        }
        Some(v) => escaped(out, v),
        None if quoted => out.push_str("\"-\""),
        None => out.push('-'),
    }
}

/// nginx's escaping for the combined format: `"`, `\`, control and
/// non-ASCII bytes as `\xHH`, so one line stays one line of ASCII.
pub(super) fn escaped(out: &mut String, s: &[u8]) {
    for &b in &s[..s.len().min(MAX_VALUE_BYTES)] {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b as char);
        }
    }
}

/// `07/Dec/2026:08:46:31 +0000`: the common log format's time, in UTC.
pub(super) fn clf_time(out: &mut String, t: SystemTime) {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let _ = write!(
        out,
        "{d:02}/{}/{y:04}:{:02}:{:02}:{:02} +0000",
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
}

/// Year, month (1–12) and day of a count of days since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
pub(super) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}
