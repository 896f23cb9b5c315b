//! The configuration file as written: serde structs that mirror the TOML
//! one to one, with `deny_unknown_fields` everywhere so a typo is an error,
//! not a silently ignored key. Nothing here checks meaning; `validate` does.

use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;
use toml::Spanned;

/// The top level. Each array element is kept as a spanned table and
/// deserialized on its own, so that one bad route does not hide the
/// problems of the next one and every error can name its line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    #[serde(default)]
    pub server: Option<Spanned<toml::Table>>,
    #[serde(default)]
    pub admin: Option<Spanned<toml::Table>>,
    #[serde(default)]
    pub access_log: Option<Spanned<toml::Table>>,
    #[serde(default)]
    pub listener: Vec<Spanned<toml::Table>>,
    #[serde(default)]
    pub upstream: Vec<Spanned<toml::Table>>,
    #[serde(default)]
    pub route: Vec<Spanned<toml::Table>>,
    #[serde(default)]
    pub plugins: Option<Spanned<toml::Table>>,
    /// `[plugin_limits.NAME]` tables: per-plugin limits and failure policy.
    #[serde(default)]
    pub plugin_limits: std::collections::BTreeMap<String, Spanned<toml::Table>>,
    /// `[plugin.NAME]`, the name `[plugin_limits.NAME]` had: read only to
    /// refuse it with the new name.
    #[serde(default)]
    pub plugin: Option<Spanned<toml::Table>>,
    /// `[tracing]`, read in `config/trace.rs`.
    #[serde(default)]
    pub tracing: Option<Spanned<toml::Table>>,
    /// `[state]`, read in `config/state.rs`.
    #[serde(default)]
    pub state: Option<Spanned<toml::Table>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub workers: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub drain_timeout: Option<Duration>,
    /// Read from the table itself, beside `[access_log]` (`Validator::validate`).
    #[allow(dead_code)]
    pub access_log: Option<bool>,
    pub metrics: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub address: Option<String>,
    pub token_file: Option<String>,
    pub metrics_address: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: Option<String>,
    pub address: String,
    pub max_connections: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub header_read_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub send_timeout: Option<Duration>,
    pub max_header_bytes: Option<ByteSize>,
    pub max_headers: Option<usize>,
    pub max_uri_bytes: Option<ByteSize>,
    pub max_body_bytes: Option<ByteSize>,
    pub underscores_in_headers: Option<bool>,
    pub tls: Option<super::tls::RawTls>,
    pub https_redirect: Option<super::tls::RawRedirect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub name: String,
    pub endpoints: Vec<RawEndpoint>,
    pub balancer: Option<String>,
    pub protocol: Option<String>,
    pub http2: Option<RawHttp2>,
    pub tls: Option<toml::Value>,
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub read_timeout: Option<Duration>,
    pub pool: Option<RawPool>,
    pub hash_key: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub dns_refresh: Option<Duration>,
    pub panic_threshold: Option<u32>,
    pub max_connections: Option<usize>,
    pub max_pending_requests: Option<usize>,
    pub health_check: Option<RawHealthCheck>,
    pub outlier: Option<RawOutlier>,
    pub retry: Option<RawRetry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub path: Option<String>,
    pub service: Option<String>,
    pub host: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    pub healthy_threshold: Option<u32>,
    pub unhealthy_threshold: Option<u32>,
    #[serde(default)]
    pub expected_statuses: Vec<RawStatusRange>,
}

/// A status is `200` or a range `"200-299"`.
#[derive(Debug)]
pub struct RawStatusRange {
    pub from: u16,
    pub to: u16,
}

impl<'de> Deserialize<'de> for RawStatusRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bad = |what: String| {
            serde::de::Error::custom(format!(
                "a status is a number such as 200 or a range such as \"200-299\", not {what}"
            ))
        };
        match toml::Value::deserialize(d)? {
            toml::Value::Integer(n) => {
                let n = u16::try_from(n).map_err(|_| bad(n.to_string()))?;
                Ok(RawStatusRange { from: n, to: n })
            }
            toml::Value::String(s) => {
                let (a, b) = s.split_once('-').unwrap_or((&s, &s));
                match (a.trim().parse(), b.trim().parse()) {
                    (Ok(from), Ok(to)) => Ok(RawStatusRange { from, to }),
                    _ => Err(bad(format!("`{s}`"))),
                }
            }
            other => Err(bad(format!("a {}", other.type_str()))),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutlier {
    pub consecutive_5xx: Option<u32>,
    pub consecutive_connect_failures: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub base_ejection: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub max_ejection: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub attempts: Option<u32>,
    pub statuses: Option<Vec<u16>>,
    #[serde(default, with = "humantime_serde")]
    pub backoff: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub max_backoff: Option<Duration>,
    pub budget_ratio: Option<f64>,
    pub budget_min_per_second: Option<u32>,
}

/// An endpoint is either `"host:port"` or `{ address = "host:port", weight = 3 }`.
#[derive(Debug)]
pub struct RawEndpoint {
    pub address: String,
    pub weight: Option<u32>,
}

impl<'de> Deserialize<'de> for RawEndpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Weighted {
            address: String,
            weight: Option<u32>,
        }
        // Decide on the value's type ourselves: serde's untagged enums
        // answer every mistake with "did not match any variant".
        match toml::Value::deserialize(d)? {
            toml::Value::String(address) => Ok(RawEndpoint {
                address,
                weight: None,
            }),
            v @ toml::Value::Table(_) => {
                let w = Weighted::deserialize(v).map_err(serde::de::Error::custom)?;
                Ok(RawEndpoint {
                    address: w.address,
                    weight: w.weight,
                })
            }
            other => Err(serde::de::Error::custom(format!(
                "an endpoint is \"host:port\" or {{ address = \"host:port\", weight = N }}, not a {}",
                other.type_str()
            ))),
        }
    }
}

/// `[upstream.http2]`: the HTTP/2 connections to an upstream's endpoints.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp2 {
    pub max_connections_per_endpoint: Option<usize>,
    pub max_concurrent_streams: Option<u32>,
    pub initial_stream_window: Option<ByteSize>,
    pub initial_connection_window: Option<ByteSize>,
    pub max_header_list_size: Option<ByteSize>,
    #[serde(default, with = "humantime_serde")]
    pub keepalive_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub keepalive_timeout: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    pub max_idle: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Option<String>,
    pub upstream: String,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub client_cert_names: Vec<String>,
    pub path: Option<String>,
    pub path_prefix: Option<String>,
    pub path_regex: Option<String>,
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub headers: Vec<RawHeaderMatch>,
    pub rewrite_prefix: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub read_timeout: Option<Duration>,
    pub retry_attempts: Option<u32>,
    pub max_body_bytes: Option<ByteSize>,
    /// Protocols a client may upgrade to; absent: `["websocket"]`.
    pub upgrades: Option<Vec<String>>,
    #[serde(default)]
    pub plugins: Vec<RawPluginRef>,
}

/// `[plugins]`: where plugin files live and the chain every route runs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlugins {
    pub dir: Option<String>,
    /// Where compiled plugins are cached; `false` turns the cache off.
    pub cache_dir: Option<String>,
    pub cache: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    pub compile_timeout: Option<Duration>,
    /// Deploy uncached files with the baseline compiler first.
    pub tiered: Option<bool>,
    pub max_request_body_bytes: Option<ByteSize>,
    pub max_response_body_bytes: Option<ByteSize>,
    #[serde(default)]
    pub global: Vec<RawPluginRef>,
}

/// `[plugin_limits.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPluginSettings {
    #[serde(default, with = "humantime_serde")]
    pub deadline: Option<Duration>,
    pub memory: Option<ByteSize>,
    pub max_instances: Option<usize>,
    pub failure: Option<String>,
    pub isolation: Option<String>,
    pub breaker_after: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub breaker_backoff: Option<Duration>,
    pub cpu_share: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub cpu_window: Option<Duration>,
    /// Upstreams the plugin may call (`calls.start`).
    pub calls: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde")]
    pub call_timeout: Option<Duration>,
    pub max_calls_per_request: Option<u32>,
    pub max_calls_in_flight: Option<usize>,
    pub max_call_body_bytes: Option<ByteSize>,
    /// How its `fleet` operations are kept: `local`, `sync` or `strict`.
    pub fleet: Option<String>,
    /// What they do while Redis cannot be reached: `local` or `closed`.
    pub fleet_fallback: Option<String>,
}

/// `{ name = "api-key", config = { ... } }` in a chain.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPluginRef {
    pub name: String,
    pub config: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderMatch {
    pub name: String,
    pub value: Option<String>,
}
