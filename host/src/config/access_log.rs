//! Validation of `[access_log]`: where the lines go, their format, the
//! fields a JSON line carries and the queue between the workers and the
//! writer thread. `[server] access_log = true` turns the log on with these
//! defaults; the section's presence turns it on too.

use std::path::PathBuf;

use serde::Deserialize;

use super::{At, Problem, Validator, field};

/// Lines waiting for the writer by default: a few seconds of a busy
/// gateway's lines, about 4 MiB at 250 bytes a line.
pub const DEFAULT_QUEUE_LINES: usize = 16_384;
/// Bounds of `queue_lines`.
pub const QUEUE_LINES: (usize, usize) = (16, 1 << 20);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessLog {
    pub path: Option<String>,
    pub format: Option<String>,
    pub fields: Option<Vec<String>>,
    pub queue_lines: Option<usize>,
}

/// Where lines are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    Stdout,
    /// A file opened for appending (made if missing), reopened on SIGUSR1.
    File(PathBuf),
}

/// How a line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line, with the configured fields.
    Json,
    /// The combined log format of Apache and nginx (fixed fields).
    Combined,
}

/// A field a JSON line may carry (`fields`), in the documented order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Time,
    RequestId,
    TraceId,
    ClientAddress,
    Method,
    Path,
    Query,
    Protocol,
    Status,
    BytesIn,
    BytesOut,
    DurationMs,
    UpstreamDurationMs,
    Route,
    Upstream,
    Endpoint,
    Attempts,
    TlsVersion,
    Sni,
    UserAgent,
    Referer,
    Plugin,
}

impl Field {
    /// Every field with its name in the configuration and in the line.
    pub const ALL: [(Field, &'static str); 22] = [
        (Field::Time, "time"),
        (Field::RequestId, "request_id"),
        (Field::TraceId, "trace_id"),
        (Field::ClientAddress, "client_address"),
        (Field::Method, "method"),
        (Field::Path, "path"),
        (Field::Query, "query"),
        (Field::Protocol, "protocol"),
        (Field::Status, "status"),
        (Field::BytesIn, "bytes_in"),
        (Field::BytesOut, "bytes_out"),
        (Field::DurationMs, "duration_ms"),
        (Field::UpstreamDurationMs, "upstream_duration_ms"),
        (Field::Route, "route"),
        (Field::Upstream, "upstream"),
        (Field::Endpoint, "endpoint"),
        (Field::Attempts, "attempts"),
        (Field::TlsVersion, "tls_version"),
        (Field::Sni, "sni"),
        (Field::UserAgent, "user_agent"),
        (Field::Referer, "referer"),
        (Field::Plugin, "plugin"),
    ];

    /// Its name (`ALL` lists the fields in declaration order, so a
    /// field's place there is its discriminant).
    pub fn name(self) -> &'static str {
        Field::ALL[self as usize].1
    }

    fn parse(s: &str) -> Option<Field> {
        Field::ALL.iter().find(|(_, n)| *n == s).map(|(f, _)| *f)
    }

    /// The fields a line carries when `fields` is not set: everything but
    /// the query string (which can carry credentials) and the two request
    /// headers (which the combined format has).
    pub fn defaults() -> Vec<Field> {
        Field::ALL
            .iter()
            .map(|(f, _)| *f)
            .filter(|f| !matches!(f, Field::Query | Field::UserAgent | Field::Referer))
            .collect()
    }
}

/// `[access_log]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    pub sink: Sink,
    pub format: Format,
    /// For JSON lines, in this order.
    pub fields: Vec<Field>,
    pub queue_lines: usize,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        AccessLogConfig {
            sink: Sink::Stdout,
            format: Format::Json,
            fields: Field::defaults(),
            queue_lines: DEFAULT_QUEUE_LINES,
        }
    }
}

impl Validator<'_> {
    pub(super) fn access_log(&mut self, raw: RawAccessLog, at: &At) -> Option<AccessLogConfig> {
        let mut ok = true;
        let sink = match raw.path.as_deref() {
            None | Some("stdout") => Sink::Stdout,
            Some("") => {
                self.invalid(at, "path", "is empty: give a file, or \"stdout\"".into());
                ok = false;
                Sink::Stdout
            }
            Some(p) => Sink::File(self.base().join(p)),
        };
        let format = match raw.format.as_deref() {
            None | Some("json") => Format::Json,
            Some("combined") => Format::Combined,
            Some(other) => {
                self.invalid(
                    at,
                    "format",
                    format!("`{other}` is not a format: use \"json\" or \"combined\""),
                );
                ok = false;
                Format::Json
            }
        };
        let fields = match raw.fields {
            None => Field::defaults(),
            Some(names) => {
                let mut fields = Vec::new();
                for n in &names {
                    match Field::parse(n) {
                        Some(f) if !fields.contains(&f) => fields.push(f),
                        Some(_) => {
                            self.invalid(at, "fields", format!("`{n}` is listed twice"));
                            ok = false;
                        }
                        None => {
                            let known: Vec<&str> = Field::ALL.iter().map(|(_, n)| *n).collect();
                            self.invalid(
                                at,
                                "fields",
                                format!(
                                    "`{n}` is not a field; the fields are {}",
                                    known.join(", ")
                                ),
                            );
                            ok = false;
                        }
                    }
                }
                if format == Format::Combined && !names.is_empty() {
                    self.invalid(
                        at,
                        "fields",
                        "applies to JSON lines only: the combined format's fields are fixed".into(),
                    );
                    ok = false;
                }
                fields
            }
        };
        let queue_lines = raw.queue_lines.unwrap_or(DEFAULT_QUEUE_LINES);
        if !(QUEUE_LINES.0..=QUEUE_LINES.1).contains(&queue_lines) {
            self.invalid(
                at,
                "queue_lines",
                format!(
                    "{queue_lines} is out of range: from {} to {}",
                    QUEUE_LINES.0, QUEUE_LINES.1
                ),
            );
            ok = false;
        }
        ok.then_some(AccessLogConfig {
            sink,
            format,
            fields,
            queue_lines,
        })
    }

    fn invalid(&mut self, at: &At, name: &'static str, reason: String) {
        self.report(
            &field(at, name),
            Problem::Invalid {
                field: name,
                reason,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::Field;

    #[test]
    fn a_fields_place_in_all_is_its_discriminant() {
        for (i, (f, name)) in Field::ALL.iter().enumerate() {
            assert_eq!(*f as usize, i, "{name}");
            assert_eq!(f.name(), *name);
        }
    }
}
