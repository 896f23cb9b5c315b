//! Validation of `[tracing]`: W3C trace context on every request and the
//! optional OTLP export of spans (`[tracing.otlp]`). Every key, default
//! and bound is in `docs/configuration.md`; what they do is in
//! `docs/observability.md` ("Trace context").

use std::time::Duration;

use serde::Deserialize;

use super::{At, Problem, Validator, field};

/// Bounds of `[tracing]`. The queue and batch bounds keep the memory
/// spans can hold to a known size: a span is at most about 10 KiB (its
/// attributes bounded in number and length, at most
/// `crate::trace::MAX_CHILD_SPANS` children), so a full queue of
/// `MAX_QUEUE_SPANS` is at most about 640 MiB, and the default 2048
/// about 20 MiB (most spans are well under 1 KiB).
pub mod limits {
    use std::time::Duration;

    pub const MAX_QUEUE_SPANS: usize = 65_536;
    pub const MAX_BATCH_SPANS: usize = 8_192;
    /// Batches are not posted more often than this.
    pub const MIN_EXPORT_INTERVAL: Duration = Duration::from_millis(10);
    pub const MAX_EXPORT_INTERVAL: Duration = Duration::from_secs(60);
    pub const MAX_EXPORT_TIMEOUT: Duration = Duration::from_secs(60);
    pub const MAX_SERVICE_NAME_BYTES: usize = 128;
    pub const MAX_ENDPOINT_BYTES: usize = 2048;
}

/// `[tracing]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// Off (the default): Weir neither reads nor writes trace headers.
    pub enabled: bool,
    /// The share of the requests Weir samples when the decision is its
    /// own (no trusted `traceparent` came with the request).
    pub sample_rate: f64,
    /// Whether a client's valid `traceparent` is continued.
    pub trust_client_headers: bool,
    /// Where sampled spans go, when set.
    pub otlp: Option<OtlpConfig>,
}

impl Default for TracingConfig {
    fn default() -> TracingConfig {
        TracingConfig {
            enabled: false,
            sample_rate: 1.0,
            trust_client_headers: true,
            otlp: None,
        }
    }
}

/// `[tracing.otlp]`, validated: OTLP/HTTP with protobuf bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpConfig {
    /// The URL spans are posted to, path included.
    pub endpoint: http::Uri,
    /// `endpoint`'s host and port, to connect to.
    pub host: String,
    pub port: u16,
    pub max_queue_spans: usize,
    pub max_batch_spans: usize,
    pub export_interval: Duration,
    pub export_timeout: Duration,
    /// The resource's `service.name`.
    pub service_name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    pub enabled: Option<bool>,
    pub sample_rate: Option<f64>,
    pub trust_client_headers: Option<bool>,
    pub otlp: Option<RawOtlp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOtlp {
    pub endpoint: Option<String>,
    pub max_queue_spans: Option<usize>,
    pub max_batch_spans: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub export_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub export_timeout: Option<Duration>,
    pub service_name: Option<String>,
}

/// A local collector's OTLP/HTTP traces URL (the OpenTelemetry
/// Collector's default port).
const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4318/v1/traces";

impl Validator<'_> {
    pub(super) fn tracing(&mut self, raw: RawTracing, at: &At) -> TracingConfig {
        let d = TracingConfig::default();
        let sample_rate = raw.sample_rate.unwrap_or(d.sample_rate);
        // `!(0..=1).contains` also refuses NaN.
        if !(0.0..=1.0).contains(&sample_rate) {
            self.report(
                &field(at, "sample_rate"),
                Problem::OutOfRange {
                    field: "sample_rate",
                    rule: format!(
                        "between 0.0 and 1.0 (the share of requests sampled), not {sample_rate}"
                    ),
                },
            );
        }
        let otlp = raw.otlp.and_then(|o| self.otlp(o, &field(at, "otlp")));
        TracingConfig {
            enabled: raw.enabled.unwrap_or(d.enabled),
            sample_rate,
            trust_client_headers: raw.trust_client_headers.unwrap_or(d.trust_client_headers),
            otlp,
        }
    }

    fn otlp(&mut self, raw: RawOtlp, at: &At) -> Option<OtlpConfig> {
        let endpoint = raw.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT);
        let parsed = self.otlp_endpoint(endpoint, at);
        let max_queue_spans = raw.max_queue_spans.unwrap_or(2048);
        self.range(
            at,
            "max_queue_spans",
            max_queue_spans,
            1,
            limits::MAX_QUEUE_SPANS,
        );
        let max_batch_spans = raw.max_batch_spans.unwrap_or(512.min(max_queue_spans));
        self.range(
            at,
            "max_batch_spans",
            max_batch_spans,
            1,
            limits::MAX_BATCH_SPANS.min(max_queue_spans.max(1)),
        );
        let export_interval = raw.export_interval.unwrap_or(Duration::from_secs(1));
        if !(limits::MIN_EXPORT_INTERVAL..=limits::MAX_EXPORT_INTERVAL).contains(&export_interval) {
            self.report(
                &field(at, "export_interval"),
                Problem::OutOfRange {
                    field: "export_interval",
                    rule: format!(
                        "between {} and {}: how long a span may wait for its batch",
                        humantime::format_duration(limits::MIN_EXPORT_INTERVAL),
                        humantime::format_duration(limits::MAX_EXPORT_INTERVAL)
                    ),
                },
            );
        }
        let export_timeout = raw.export_timeout.unwrap_or(Duration::from_secs(5));
        if export_timeout.is_zero() || export_timeout > limits::MAX_EXPORT_TIMEOUT {
            self.report(
                &field(at, "export_timeout"),
                Problem::OutOfRange {
                    field: "export_timeout",
                    rule: format!(
                        "more than 0 and at most {}: spans queue up while a post waits",
                        humantime::format_duration(limits::MAX_EXPORT_TIMEOUT)
                    ),
                },
            );
        }
        let service_name = raw.service_name.unwrap_or_else(|| "weir".to_owned());
        let printable = service_name.bytes().all(|b| (0x20..0x7f).contains(&b));
        if service_name.is_empty()
            || service_name.len() > limits::MAX_SERVICE_NAME_BYTES
            || !printable
        {
            self.report(
                &field(at, "service_name"),
                Problem::Invalid {
                    field: "service_name",
                    reason: format!(
                        "use 1 to {} printable ASCII characters: it names Weir in every trace",
                        limits::MAX_SERVICE_NAME_BYTES
                    ),
                },
            );
        }
        let (endpoint, host, port) = parsed?;
        Some(OtlpConfig {
            endpoint,
            host,
            port,
            max_queue_spans,
            max_batch_spans,
            export_interval,
            export_timeout,
            service_name,
        })
    }

    /// An `http://host[:port]/path` URL: Weir posts spans over plain
    /// HTTP/1.1 to a collector beside it (an HTTPS collector is reached
    /// through a local one).
    fn otlp_endpoint(&mut self, s: &str, at: &At) -> Option<(http::Uri, String, u16)> {
        let bad = |reason: String| Problem::Invalid {
            field: "endpoint",
            reason,
        };
        if s.len() > limits::MAX_ENDPOINT_BYTES {
            let reason = format!("longer than {} bytes", limits::MAX_ENDPOINT_BYTES);
            self.report(&field(at, "endpoint"), bad(reason));
            return None;
        }
        let uri: http::Uri = match s.parse() {
            Ok(u) => u,
            Err(e) => {
                self.report(
                    &field(at, "endpoint"),
                    bad(format!("`{s}` is not a URL: {e}")),
                );
                return None;
            }
        };
        if uri.scheme_str() != Some("http") {
            let reason = format!(
                "`{s}`: only http:// URLs are supported (run a collector beside Weir, and let it \
                 forward over TLS)"
            );
            self.report(&field(at, "endpoint"), bad(reason));
            return None;
        }
        let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
            self.report(&field(at, "endpoint"), bad(format!("`{s}` has no host")));
            return None;
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(80);
        Some((uri, host, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn load(tracing: &str) -> Result<Config, String> {
        let text = format!(
            "[[listener]]\naddress = \"127.0.0.1:0\"\n[[upstream]]\nname = \"a\"\n\
             endpoints = [\"127.0.0.1:1\"]\n[[route]]\nupstream = \"a\"\n{tracing}"
        );
        Config::parse(std::path::Path::new("weir.toml"), &text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_off_and_whole() {
        let c = load("").unwrap();
        assert_eq!(c.tracing, TracingConfig::default());
        assert!(!c.tracing.enabled);
        let c = load("[tracing]\nenabled = true\n[tracing.otlp]\n").unwrap();
        let o = c.tracing.otlp.unwrap();
        assert_eq!(o.endpoint, "http://127.0.0.1:4318/v1/traces");
        assert_eq!((o.host.as_str(), o.port), ("127.0.0.1", 4318));
        assert_eq!((o.max_queue_spans, o.max_batch_spans), (2048, 512));
        assert_eq!(o.export_interval, Duration::from_secs(1));
        assert_eq!(o.export_timeout, Duration::from_secs(5));
        assert_eq!(o.service_name, "weir");
    }

    #[test]
    fn each_bad_value_names_its_field() {
        for (toml, field) in [
            ("[tracing]\nsample_rate = 1.5", "tracing.sample_rate"),
            ("[tracing]\nsample_rate = -0.1", "tracing.sample_rate"),
            ("[tracing]\nsample_rate = nan", "tracing.sample_rate"),
            ("[tracing]\nbogus = 1", "tracing"),
            (
                "[tracing.otlp]\nendpoint = \"https://c:4318/v1/traces\"",
                "tracing.otlp.endpoint",
            ),
            (
                "[tracing.otlp]\nendpoint = \"not a url\"",
                "tracing.otlp.endpoint",
            ),
            (
                "[tracing.otlp]\nmax_queue_spans = 0",
                "tracing.otlp.max_queue_spans",
            ),
            (
                "[tracing.otlp]\nmax_queue_spans = 100\nmax_batch_spans = 101",
                "tracing.otlp.max_batch_spans",
            ),
            (
                "[tracing.otlp]\nexport_interval = \"1ms\"",
                "tracing.otlp.export_interval",
            ),
            (
                "[tracing.otlp]\nexport_timeout = \"2m\"",
                "tracing.otlp.export_timeout",
            ),
            (
                "[tracing.otlp]\nservice_name = \"\"",
                "tracing.otlp.service_name",
            ),
        ] {
            let err = load(toml).expect_err(toml);
            assert!(err.contains(&format!(": {field}")), "{toml}: {err}");
        }
    }
}
