//! Configuration: the TOML file format (`raw`) turned into a validated
//! [`Config`]. Loading is all-or-nothing: either every rule holds, or the
//! caller gets every problem found, each with the file, the line, the key
//! path and why the rule exists. The format is documented in
//! `docs/configuration.md`; every bound enforced here is listed there.
//!
//! This module knows nothing about sockets or requests: it only produces
//! plain values that `router`, `upstream` and `listener` build from.

mod access_log;
mod admin;
mod error;
mod raw;
mod upstream;

mod plugins;
mod route;
mod state;
mod tls;
mod trace;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use regex::Regex;
use serde::de::DeserializeOwned;
use toml::Spanned;

use access_log::RawAccessLog;
pub use access_log::{AccessLogConfig, Field as LogField, Format as LogFormat, Sink as LogSink};
pub use admin::{AdminConfig, AdminToken, is_loopback};
pub use error::{ConfigError, ConfigErrors, Problem};
pub use plugins::{
    CallSettings, FailurePolicy, Isolation, PluginRef, PluginSettings, PluginsConfig,
    limits as plugin_limits,
};
use raw::*;
pub use state::{FleetFallback, FleetMode, RedisConfig, StateConfig, limits as state_limits};
pub use tls::{
    CertPair, ClientAuth, HttpsRedirect, ListenerTls, MinVersion, UnknownSni, limits as tls_limits,
};
pub use trace::{OtlpConfig, TracingConfig, limits as tracing_limits};
pub use upstream::*;

/// Bounds on values that come from the configuration file. They exist so a
/// typo (an extra zero) cannot make the gateway allocate without limit.
pub mod limits {
    use std::time::Duration;

    pub const MAX_WORKERS: usize = 256;
    pub const MAX_CONNECTIONS: usize = 1_000_000;
    /// hyper needs at least 8 KiB of read buffer to parse a request head.
    pub const MIN_HEADER_BYTES: u64 = 8 * 1024;
    pub const MAX_HEADER_BYTES: u64 = 1024 * 1024;
    pub const MAX_HEADERS: usize = 1_000;
    pub const MIN_URI_BYTES: u64 = 64;
    pub const MAX_ENDPOINTS: usize = 1_024;
    pub const MAX_WEIGHT: u32 = 100;
    pub const MAX_POOL_IDLE: usize = 10_000;
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(3_600);
    pub const MAX_NAME_LEN: usize = 64;
    pub const MAX_ROUTES: usize = 10_000;
    /// Retries after the first try of one request.
    pub const MAX_RETRY_ATTEMPTS: u32 = 5;
    pub const MAX_UPSTREAM_CONNECTIONS: usize = 1_000_000;
    pub const MAX_PENDING_REQUESTS: usize = 1_000_000;
    /// Health-check and outlier thresholds.
    pub const MAX_THRESHOLD: u32 = 100;
    /// Health checks more often than this would be load, not checks.
    pub const MIN_HEALTH_INTERVAL: Duration = Duration::from_millis(50);
    /// DNS names are not re-resolved more often than this.
    pub const MIN_DNS_REFRESH: Duration = Duration::from_secs(1);
    pub const MAX_HEALTH_PATH_BYTES: usize = 1024;
    /// A gRPC health check's service name (it is sent in every probe).
    pub const MAX_GRPC_SERVICE_BYTES: usize = 256;
    /// HTTP/2 connections per endpoint and worker.
    pub const MAX_H2_CONNECTIONS_PER_ENDPOINT: usize = 64;
    /// Streams Weir opens at once on one HTTP/2 connection.
    pub const MAX_H2_STREAMS: u32 = 10_000;
    /// HTTP/2 flow-control windows: from the protocol's initial 64 KiB
    /// (RFC 9113 section 6.9.2) to 64 MiB. A window is how much an
    /// upstream may send before Weir reads it, so it bounds the memory
    /// one stream (or one connection) holds.
    pub const MIN_H2_WINDOW: u64 = 65_535;
    pub const MAX_H2_WINDOW: u64 = 64 * 1024 * 1024;
    /// The largest response header block accepted from an HTTP/2 upstream.
    pub const MIN_H2_HEADER_LIST: u64 = 1024;
    pub const MAX_H2_HEADER_LIST: u64 = 1024 * 1024;
    /// The PING keep-alive's interval, when on.
    pub const MIN_H2_KEEPALIVE: Duration = Duration::from_millis(100);
    pub const MAX_RETRY_FLOOR_PER_SECOND: u32 = 10_000;
    /// Compiled size limit of one `path_regex`, so a pathological pattern
    /// cannot eat memory at load time.
    pub const MAX_REGEX_BYTES: usize = 1024 * 1024;
    /// Protocols one route may let clients upgrade to.
    pub const MAX_UPGRADES: usize = 16;
    /// Length of one upgrade protocol name.
    pub const MAX_UPGRADE_LEN: usize = 64;
    /// An admin token file holds one token: a bigger file is the wrong one.
    pub const MAX_TOKEN_FILE_BYTES: u64 = 4096;
    /// An admin token shorter than this could be guessed.
    pub const MIN_TOKEN_BYTES: usize = 16;
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub server: ServerConfig,
    pub admin: Option<AdminConfig>,
    /// The access log, when on.
    pub access_log: Option<AccessLogConfig>,
    pub listeners: Vec<ListenerConfig>,
    pub upstreams: Vec<UpstreamConfig>,
    pub routes: Vec<RouteConfig>,
    pub plugins: PluginsConfig,
    /// `[tracing]`: trace context and span export.
    pub tracing: TracingConfig,
    /// `[state]`: where fleet-wide plugin state is kept.
    pub state: StateConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Worker threads, each with its own event loop and accept socket.
    pub workers: usize,
    pub drain_timeout: Duration,
    /// Requests counted per route for `/metrics` (on by default).
    pub metrics: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    pub name: String,
    pub address: SocketAddr,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// How long a write to the client may stay blocked (the client reads
    /// nothing) before the connection is closed.
    pub send_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_uri_bytes: usize,
    pub max_body_bytes: u64,
    /// Whether request header names with `_` are forwarded; when false
    /// (the default) they are dropped.
    pub underscores_in_headers: bool,
    /// HTTPS on this listener, when set.
    pub tls: Option<ListenerTls>,
    /// A plain listener that redirects every request to HTTPS instead of
    /// proxying it.
    pub https_redirect: Option<HttpsRedirect>,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: String,
    pub upstream: String,
    pub hosts: Vec<HostPattern>,
    /// The route serves only requests on connections whose verified
    /// client certificate has one of these names (mutual TLS).
    pub client_cert_names: Vec<HostPattern>,
    pub path: Option<PathMatch>,
    pub methods: Vec<Method>,
    pub headers: Vec<HeaderMatch>,
    pub rewrite_prefix: Option<String>,
    /// Overrides the upstream's `timeout` (the whole request, retries included).
    pub timeout: Option<Duration>,
    /// Overrides the upstream's `connect_timeout`.
    pub connect_timeout: Option<Duration>,
    /// Overrides the upstream's `read_timeout`.
    pub read_timeout: Option<Duration>,
    /// Overrides the upstream's `retry.attempts`.
    pub retry_attempts: Option<u32>,
    pub max_body_bytes: Option<u64>,
    /// Protocol names (lower-case) a client may upgrade to on this route.
    pub upgrades: Vec<String>,
    /// This route's plugin chain; the global chain runs before it.
    pub plugins: Vec<PluginRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `api.example.com`, stored lower-case.
    Exact(String),
    /// `*.example.com`, stored as `.example.com`: any name with that suffix
    /// and at least one more label in front.
    Suffix(String),
}

#[derive(Debug, Clone)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

#[derive(Debug, Clone)]
pub struct HeaderMatch {
    pub name: HeaderName,
    pub value: Option<HeaderValue>,
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_owned(),
                line: None,
                key: String::new(),
                problem: Problem::Invalid {
                    field: "file",
                    reason: format!("cannot read: {e}"),
                },
            }])
        })?;
        Config::parse(path, &text)
    }

    /// Validates configuration text; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
        let mut v = Validator {
            file: path.to_owned(),
            text,
            errors: Vec::new(),
        };
        let config = v.validate();
        match config {
            Some(c) if v.errors.is_empty() => Ok(c),
            _ => Err(ConfigErrors(v.errors)),
        }
    }

    pub fn upstream(&self, name: &str) -> Option<&UpstreamConfig> {
        self.upstreams.iter().find(|u| u.name == name)
    }
}

struct Validator<'a> {
    file: PathBuf,
    text: &'a str,
    errors: Vec<ConfigError>,
}

/// Where in the file a value came from, for messages.
#[derive(Clone)]
struct At {
    line: Option<usize>,
    key: String,
}

impl Validator<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .bytes()
            .filter(|b| *b == b'\n')
            .count()
            + 1
    }

    /// The configuration file's folder: relative paths in it start there.
    fn base(&self) -> PathBuf {
        self.file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    fn report(&mut self, at: &At, problem: Problem) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line: at.line,
            key: at.key.clone(),
            problem,
        });
    }

    /// Deserializes one table of the file on its own, so its errors carry
    /// its line and key path and do not stop the rest from being checked.
    fn section<T: DeserializeOwned>(
        &mut self,
        table: &Spanned<toml::Table>,
        key: String,
    ) -> (Option<T>, At) {
        let at = At {
            line: Some(self.line_of(table.span().start)),
            key,
        };
        match T::deserialize(toml::Value::Table(table.get_ref().clone())) {
            Ok(v) => (Some(v), at),
            Err(e) => {
                let msg = e.message().trim().to_owned();
                self.report(&at, Problem::Shape(msg));
                (None, at)
            }
        }
    }

    fn validate(&mut self) -> Option<Config> {
        let file: RawFile = match toml::from_str(self.text) {
            Ok(f) => f,
            Err(e) => {
                let line = e.span().map(|s| self.line_of(s.start));
                let at = At {
                    line,
                    key: String::new(),
                };
                self.report(&at, Problem::Syntax(e.message().trim().to_owned()));
                return None;
            }
        };

        let server = match &file.server {
            Some(t) => {
                let (raw, at) = self.section::<RawServer>(t, "server".into());
                raw.map(|r| self.server(r, &at))
            }
            None => Some(self.server(RawServer::default(), &at_key("server"))),
        };
        let admin = match &file.admin {
            Some(t) => {
                let (raw, at) = self.section::<RawAdmin>(t, "admin".into());
                raw.and_then(|r| self.admin(r, &at))
            }
            None => None,
        };

        let access_log = match &file.access_log {
            Some(t) => {
                let (raw, at) = self.section::<RawAccessLog>(t, "access_log".into());
                raw.and_then(|r| self.access_log(r, &at))
            }
            None => None,
        };

        let mut listeners = Vec::new();
        let mut names = HashMap::new();
        for (i, t) in file.listener.iter().enumerate() {
            let (raw, at) = self.section::<RawListener>(t, format!("listener[{i}]"));
            if let Some(l) = raw.and_then(|r| self.listener(i, r, &at)) {
                self.unique("listener", &l.name, &at, &mut names);
                listeners.push(l);
            }
        }
        if file.listener.is_empty() {
            self.report(&at_key("listener"), Problem::NoListener);
        }

        let mut upstreams = Vec::new();
        let mut names = HashMap::new();
        for (i, t) in file.upstream.iter().enumerate() {
            let (raw, at) = self.section::<RawUpstream>(t, format!("upstream[{i}]"));
            if let Some(u) = raw.and_then(|r| self.upstream(r, &at)) {
                self.unique("upstream", &u.name, &at, &mut names);
                upstreams.push(u);
            }
        }
        let upstream_names: HashMap<String, usize> = names;

        let routes = self.routes(&file.route, &upstream_names);

        if let Some(old) = &file.plugin {
            let at = At {
                line: Some(self.line_of(old.span().start)),
                key: "plugin".into(),
            };
            self.report(&at, Problem::RenamedPluginLimits);
        }
        let plugins = self.plugins(
            file.plugins.as_ref(),
            &file.plugin_limits,
            &routes,
            &upstream_names,
        );
        let tracing = match &file.tracing {
            Some(t) => {
                let (raw, at) = self.section::<trace::RawTracing>(t, "tracing".into());
                raw.map(|r| self.tracing(r, &at)).unwrap_or_default()
            }
            None => TracingConfig::default(),
        };
        let state = match &file.state {
            Some(t) => {
                let (raw, at) = self.section::<state::RawState>(t, "state".into());
                raw.map(|r| self.state(r, &at)).unwrap_or_default()
            }
            None => StateConfig::default(),
        };
        // A Redis backend refused for its own settings is reported there.
        let redis_asked = file
            .state
            .as_ref()
            .and_then(|t| t.get_ref().get("backend"))
            .and_then(toml::Value::as_str)
            == Some("redis");
        if !redis_asked {
            self.fleet_needs_redis(&plugins);
        }

        Some(Config {
            path: self.file.clone(),
            // `[server] access_log` turns the log on or off; unset, the
            // section's presence turns it on.
            access_log: match file
                .server
                .as_ref()
                .and_then(|t| t.get_ref().get("access_log"))
                .and_then(toml::Value::as_bool)
            {
                Some(false) => None,
                Some(true) => Some(access_log.unwrap_or_default()),
                None => access_log,
            },
            server: server?,
            admin,
            listeners,
            upstreams,
            routes,
            plugins,
            tracing,
            state,
        })
    }

    fn unique(
        &mut self,
        what: &'static str,
        name: &str,
        at: &At,
        seen: &mut HashMap<String, usize>,
    ) {
        let line = at.line.unwrap_or(0);
        if let Some(first_line) = seen.get(name) {
            let at = At {
                key: format!("{}.name", at.key),
                ..at.clone()
            };
            self.report(
                &at,
                Problem::DuplicateName {
                    what,
                    name: name.to_owned(),
                    first_line: *first_line,
                },
            );
        } else {
            seen.insert(name.to_owned(), line);
        }
    }

    fn name(&mut self, at: &At, name: &str) -> bool {
        let ok = !name.is_empty()
            && name.len() <= limits::MAX_NAME_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok {
            self.report(
                &field(at, "name"),
                Problem::Invalid {
                    field: "name",
                    reason: format!(
                        "`{name}` is not a valid name: use 1 to {} letters, digits, `-`, `_` or `.` so it can appear in logs and metrics unquoted",
                        limits::MAX_NAME_LEN
                    ),
                },
            );
        }
        ok
    }

    fn duration(
        &mut self,
        at: &At,
        field_name: &'static str,
        value: Option<Duration>,
        default: Duration,
    ) -> Duration {
        let d = value.unwrap_or(default);
        if d.is_zero() || d > limits::MAX_TIMEOUT {
            self.report(
                &field(at, field_name),
                Problem::OutOfRange {
                    field: field_name,
                    rule: format!(
                        "more than 0 and at most {}",
                        humantime::format_duration(limits::MAX_TIMEOUT)
                    ),
                },
            );
        }
        d
    }

    fn range<T: PartialOrd + Copy + std::fmt::Display>(
        &mut self,
        at: &At,
        field_name: &'static str,
        value: T,
        min: T,
        max: T,
    ) -> T {
        if value < min || value > max {
            self.report(
                &field(at, field_name),
                Problem::OutOfRange {
                    field: field_name,
                    rule: format!("between {min} and {max}, not {value}"),
                },
            );
        }
        value
    }

    fn server(&mut self, raw: RawServer, at: &At) -> ServerConfig {
        let workers = match raw.workers {
            None | Some(0) => std::thread::available_parallelism().map_or(1, |n| n.get()),
            Some(n) => self.range(at, "workers", n, 1, limits::MAX_WORKERS),
        };
        ServerConfig {
            workers,
            drain_timeout: self.duration(
                at,
                "drain_timeout",
                raw.drain_timeout,
                Duration::from_secs(30),
            ),
            metrics: raw.metrics.unwrap_or(true),
        }
    }

    fn socket_addr(&mut self, at: &At, field_name: &'static str, s: &str) -> Option<SocketAddr> {
        match s.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.report(
                    &field(at, field_name),
                    Problem::Invalid {
                        field: field_name,
                        reason: format!("`{s}` is not an IP address and port such as 0.0.0.0:8080"),
                    },
                );
                None
            }
        }
    }

    fn listener(&mut self, i: usize, raw: RawListener, at: &At) -> Option<ListenerConfig> {
        let name = raw.name.unwrap_or_else(|| format!("listener-{i}"));
        self.name(at, &name);
        let address = self.socket_addr(at, "address", &raw.address);
        let max_header_bytes = self.range(
            at,
            "max_header_bytes",
            raw.max_header_bytes.map_or(32 * 1024, |b| b.as_u64()),
            limits::MIN_HEADER_BYTES,
            limits::MAX_HEADER_BYTES,
        );
        let max_uri_bytes = raw.max_uri_bytes.map_or(8 * 1024, |b| b.as_u64());
        let max_uri_bytes = self.range(
            at,
            "max_uri_bytes",
            max_uri_bytes,
            limits::MIN_URI_BYTES,
            max_header_bytes,
        );
        let max_connections = raw.max_connections.unwrap_or(10_000);
        let max_connections = self.range(
            at,
            "max_connections",
            max_connections,
            1,
            limits::MAX_CONNECTIONS,
        );
        let max_headers = raw.max_headers.unwrap_or(100);
        let max_headers = self.range(at, "max_headers", max_headers, 1, limits::MAX_HEADERS);
        let tls = raw.tls.map(|t| self.listener_tls(t, at));
        let https_redirect = raw.https_redirect.map(|r| self.https_redirect(r, at));
        if tls.is_some() && https_redirect.is_some() {
            self.report(
                &field(at, "https_redirect"),
                Problem::Invalid {
                    field: "https_redirect",
                    reason: "a listener with `tls` already serves HTTPS; redirect from a plain \
                             listener"
                        .into(),
                },
            );
        }
        Some(ListenerConfig {
            name,
            address: address?,
            max_connections,
            header_read_timeout: self.duration(
                at,
                "header_read_timeout",
                raw.header_read_timeout,
                Duration::from_secs(10),
            ),
            idle_timeout: self.duration(
                at,
                "idle_timeout",
                raw.idle_timeout,
                Duration::from_secs(60),
            ),
            send_timeout: self.duration(
                at,
                "send_timeout",
                raw.send_timeout,
                Duration::from_secs(60),
            ),
            max_header_bytes: max_header_bytes as usize,
            max_headers,
            max_uri_bytes: max_uri_bytes as usize,
            max_body_bytes: raw.max_body_bytes.map_or(10 * 1024 * 1024, |b| b.as_u64()),
            underscores_in_headers: raw.underscores_in_headers.unwrap_or(false),
            tls,
            https_redirect,
        })
    }
}

fn at_key(key: &str) -> At {
    At {
        line: None,
        key: key.to_owned(),
    }
}

/// Reads a small file a setting names (a token, a password, a CA): a
/// regular file of at most `max` bytes, read in one go while the
/// configuration loads. The error says what is wrong with the file, never
/// what is in it.
fn read_small_file(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let shown = path.display();
    let mut file = std::fs::File::open(path).map_err(|e| format!("cannot read `{shown}`: {e}"))?;
    // A FIFO or a device would block or never end the read.
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read `{shown}`: {e}"))?;
    if !meta.is_file() {
        return Err(format!("`{shown}` is not a regular file"));
    }
    let mut bytes = Vec::new();
    file.by_ref()
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read `{shown}`: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(format!("`{shown}` is larger than {max} bytes"));
    }
    Ok(bytes)
}

fn field(at: &At, name: &str) -> At {
    At {
        line: at.line,
        key: format!("{}.{name}", at.key),
    }
}

/// `host:port`, `[v6]:port`; the host is an IP address or a DNS name.
fn split_host_port(s: &str) -> Option<(String, u16)> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Some((addr.ip().to_string(), addr.port()));
    }
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let valid = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    valid.then(|| (host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests;
