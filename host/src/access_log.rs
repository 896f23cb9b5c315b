//! The access log: one line per request, made on the worker when the
//! response ends and written by a thread of its own.
//!
//! **The request never waits for the log.** A worker formats its line and
//! hands it over through a bounded queue (`queue_lines`); when the queue is
//! full (the disk or the terminal is slower than the traffic) the line is
//! dropped and counted (`weir_access_log_lines_dropped_total`), never
//! waited for. The writer thread drains the queue into a buffered writer
//! and flushes after each drain: a quiet gateway's line reaches the file
//! at once, a busy one's within 10 ms (the writer drains in batches then,
//! see [`write_lines`]).
//!
//! **Rotation** follows logrotate's convention: after the file is renamed,
//! `SIGUSR1` makes the writer flush what it holds into the old file and
//! open the path anew. Every line goes to exactly one of the two: none is
//! lost or written twice.
//!
//! **Formats**: JSON lines with the fields the configuration lists (in its
//! order), or the combined log format of Apache and nginx, whose fields
//! are fixed. A line is written by hand, straight into one buffer (JSON
//! escaping, integers through `itoa`, the time's text made once a second),
//! rather than through `serde_json`: making a line is on the worker, so it
//! costs one allocation and no formatting machinery per field.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Method, Uri, Version};

use crate::config::{AccessLogConfig, LogField, LogFormat, LogSink};
use crate::metrics;

/// The writer's buffer: lines are written in blocks of this size at most.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;
/// Longest string value a line carries (a path, a user agent, a plugin's
/// field is already bounded tighter); longer ones are cut, so a client
/// cannot make one line megabytes long. Heads are bounded by the listener
/// anyway; this bounds the queue's memory to `queue_lines` × a few KiB.
pub const MAX_VALUE_BYTES: usize = 4 * 1024;

/// How long the writer waits between two drains of a busy queue: a line
/// reaches the file at most this late, and the queue (`queue_lines`)
/// must hold what arrives meanwhile (the default holds 16384 lines: more
/// than a second of a busy worker's).
const BATCH_INTERVAL: Duration = Duration::from_millis(10);

/// What goes through the queue.
enum Msg {
    Line(Vec<u8>),
    Reopen,
}

/// The workers' end of the access log.
#[derive(Debug)]
pub struct AccessLog {
    tx: SyncSender<Msg>,
    format: LogFormat,
    /// The JSON fields with their keys as written.
    fields: Vec<(LogField, String)>,
    reopen: Arc<AtomicBool>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Line(l) => write!(f, "Line({} bytes)", l.len()),
            Msg::Reopen => f.write_str("Reopen"),
        }
    }
}

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

impl AccessLog {
    /// Opens the sink and starts the writer thread. A file that cannot be
    /// opened is an error here, at start-up, with the path and the reason.
    pub fn start(cfg: &AccessLogConfig) -> Result<AccessLog, String> {
        let sink = Sink::open(&cfg.sink)?;
        let (tx, rx) = mpsc::sync_channel(cfg.queue_lines);
        let reopen = Arc::new(AtomicBool::new(false));
        let flag = reopen.clone();
        std::thread::Builder::new()
            .name("weir-access-log".into())
            .spawn(move || write_lines(rx, sink, &flag))
            .map_err(|e| format!("cannot start the access log's writer thread: {e}"))?;
        Ok(AccessLog {
            tx,
            format: cfg.format,
            fields: keys(&cfg.fields),
            reopen,
        })
    }

    /// Whether a line shows request headers (`user_agent`, `referer`, or
    /// the combined format, which has both), so they are kept for it.
    pub fn shows_headers(&self) -> bool {
        self.format == LogFormat::Combined
            || self
                .fields
                .iter()
                .any(|(f, _)| matches!(f, LogField::UserAgent | LogField::Referer))
    }

    /// Asks the writer to reopen its file (SIGUSR1). Never blocks: when the
    /// queue is full the writer finds the flag after its next line.
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
        let _ = self.tx.try_send(Msg::Reopen);
    }

    /// Formats `line` and queues it; a full queue drops it (counted).
    pub fn write(&self, line: &Line<'_>) {
        let mut out = String::with_capacity(384);
        match self.format {
            LogFormat::Json => json(&mut out, line, &self.fields),
            LogFormat::Combined => combined(&mut out, line),
        }
        out.push('\n');
        let stats = metrics::global().access_log.local();
        match self.tx.try_send(Msg::Line(out.into_bytes())) {
            Ok(()) => stats.queued.inc(),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => stats.dropped.inc(),
        }
    }
}

/// Where the writer writes.
enum Sink {
    Stdout(io::Stdout),
    File { path: PathBuf, file: File },
}

impl Sink {
    fn open(sink: &LogSink) -> Result<Sink, String> {
        match sink {
            LogSink::Stdout => Ok(Sink::Stdout(io::stdout())),
            LogSink::File(path) => Ok(Sink::File {
                path: path.clone(),
                file: open_append(path)
                    .map_err(|e| format!("access log: cannot open `{}`: {e}", path.display()))?,
            }),
        }
    }
}

fn open_append(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Stdout(s) => s.write(buf),
            Sink::File { file, .. } => file.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout(s) => s.flush(),
            Sink::File { file, .. } => file.flush(),
        }
    }
}

/// The writer thread: lines in queue order, a flush when the queue runs
/// dry, a reopen when asked. Ends when every sender is gone (shutdown),
/// after writing what was queued.
///
/// While lines keep coming it works in batches: it drains the queue,
/// flushes, then sleeps [`BATCH_INTERVAL`] before the next drain, so a
/// worker that queues a line finds no writer to wake (waking one costs a
/// system call and a context switch per line). Only a queue found empty
/// sends the writer to wait for the next line, which then wakes it once.
fn write_lines(rx: Receiver<Msg>, sink: Sink, reopen: &AtomicBool) {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, sink);
    let mut failing = false;
    let write = |out: &mut BufWriter<Sink>, msg: Msg, failing: &mut bool| {
        if let Msg::Line(line) = msg {
            *failing = report(out.write_all(&line), *failing);
            metrics::global().access_log.local().written.inc();
        }
        if reopen.swap(false, Ordering::Acquire) {
            *failing = report(reopen_sink(out), *failing);
        }
    };
    loop {
        let mut drained = 0usize;
        while let Ok(msg) = rx.try_recv() {
            write(&mut out, msg, &mut failing);
            drained += 1;
        }
        // What came since the last flush goes out before any wait.
        failing = report(out.flush(), failing);
        if drained > 0 {
            std::thread::sleep(BATCH_INTERVAL);
            continue;
        }
        match rx.recv() {
            Ok(msg) => write(&mut out, msg, &mut failing),
            Err(_) => break,
        }
    }
    let _ = out.flush();
}

/// Flushes into the old file, then opens the path again (logrotate has
/// renamed the old one). If the path cannot be opened, lines keep going to
/// the old file rather than nowhere.
fn reopen_sink(out: &mut BufWriter<Sink>) -> io::Result<()> {
    out.flush()?;
    if let Sink::File { path, file } = out.get_mut() {
        *file = open_append(path)?;
        metrics::global().access_log.local().reopened.inc();
    }
    Ok(())
}

/// Counts a write error and logs the first of a run of them (a full disk
/// fails every write; one line says so, and one says when it recovered).
fn report(r: io::Result<()>, failing: bool) -> bool {
    match r {
        Ok(()) => {
            if failing {
                tracing::info!("access log: writing again");
            }
            false
        }
        Err(e) => {
            metrics::global().access_log.local().write_errors.inc();
            if !failing {
                tracing::warn!(error = %e, "access log: write failed; lines are lost until it works again");
            }
            true
        }
    }
}

/// A string value cut to [`MAX_VALUE_BYTES`] at a character boundary.
fn bounded(s: &str) -> &str {
    if s.len() <= MAX_VALUE_BYTES {
        return s;
    }
    let mut end = MAX_VALUE_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn protocol(v: Version) -> &'static str {
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
fn json_str(out: &mut String, s: &str) {
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
fn json_bytes(out: &mut String, v: &[u8]) {
    match std::str::from_utf8(v) {
        Ok(s) => json_str(out, s),
        Err(_) => json_str(out, &String::from_utf8_lossy(v)),
    }
}

fn int(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// Milliseconds with three decimals, from microseconds, without floating
/// point: `1234` → `1.234`.
fn millis(out: &mut String, d: Duration) {
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
fn rfc3339(out: &mut String, t: SystemTime) {
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
fn keys(fields: &[LogField]) -> Vec<(LogField, String)> {
    fields
        .iter()
        .map(|f| (*f, format!(",\"{}\":", f.name())))
        .collect()
}

fn json(out: &mut String, l: &Line<'_>, fields: &[(LogField, String)]) {
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

fn opt(out: &mut String, key: &mut impl FnMut(&mut String), v: Option<&str>) {
    if let Some(v) = v {
        key(out);
        json_str(out, v);
    }
}

/// `%h - %u [%t] "%r" %>s %b "%{Referer}i" "%{User-Agent}i"`: the client
/// address, the `consumer` a plugin set (`-` when none), the request's
/// time, its request line, the status, the body bytes sent (`-` for none),
/// the referer and the user agent.
fn combined(out: &mut String, l: &Line<'_>) {
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

fn quoted_or_dash(out: &mut String, v: Option<&[u8]>, quoted: bool) {
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
fn escaped(out: &mut String, s: &[u8]) {
    for &b in &s[..s.len().min(MAX_VALUE_BYTES)] {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b as char);
        }
    }
}

/// `07/Dec/2026:08:46:31 +0000`: the common log format's time, in UTC.
fn clf_time(out: &mut String, t: SystemTime) {
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
fn civil_from_days(z: i64) -> (i64, u32, u32) {
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

#[cfg(test)]
mod tests;
