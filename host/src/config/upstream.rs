//! The `[[upstream]]` section: endpoints, the balancing policy, health
//! checks, outlier ejection, retries, limits and the connection pool,
//! validated into [`UpstreamConfig`]. Defaults and bounds are listed in
//! `docs/upstreams.md`; this file is the one place that enforces them.

use std::time::Duration;

use http::HeaderName;
use serde::Deserialize;

use super::raw::{
    RawEndpoint, RawHealthCheck, RawHttp2, RawOutlier, RawPool, RawRetry, RawUpstream,
};
use super::{At, Problem, Validator, field, limits, split_host_port};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    pub name: String,
    pub endpoints: Vec<EndpointConfig>,
    pub balancer: BalancerKind,
    /// The HTTP version spoken to the endpoints.
    pub protocol: Protocol,
    /// HTTP/2 connection settings; used when `protocol` is not `http1`.
    pub http2: Http2Config,
    pub connect_timeout: Duration,
    /// The whole request until the response head, retries included.
    pub timeout: Duration,
    /// How long the response body may go without a byte from the upstream.
    pub read_timeout: Duration,
    pub pool: PoolConfig,
    /// How often DNS-named endpoints are resolved again.
    pub dns_refresh: Duration,
    /// Percent of endpoints that must be healthy; below it the balancer
    /// uses every endpoint, healthy or not.
    pub panic_threshold: u32,
    /// Open connections to all endpoints together.
    pub max_connections: usize,
    /// Requests sent (or being sent) and waiting for a response head.
    pub max_pending_requests: usize,
    pub health_check: Option<HealthCheckConfig>,
    pub outlier: OutlierConfig,
    pub retry: RetryConfig,
    /// TLS to the endpoints (`tls = true`, a `tls` table, or `https://`
    /// endpoints).
    pub tls: Option<UpstreamTls>,
}

/// An upstream's TLS settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpstreamTls {
    /// The name sent (SNI) and verified instead of each endpoint's host.
    pub sni: Option<String>,
    /// Trust only this CA bundle instead of the built-in public roots.
    pub ca: Option<std::path::PathBuf>,
    /// A client certificate and key to present (mutual TLS).
    pub client_cert: Option<super::CertPair>,
    /// Accept any certificate for any name. For tests and migrations
    /// only: anyone on the path can read and change the traffic.
    pub insecure_skip_verify: bool,
    /// The protocols offered by ALPN, from the upstream's `protocol`.
    pub alpn: Vec<Vec<u8>>,
}

/// `protocol` on an `[[upstream]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// HTTP/1.1 (over TLS too, offering `http/1.1` by ALPN).
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge over plain TCP (RFC 9113 section 3.3).
    H2c,
    /// HTTP/2 over TLS, agreed by ALPN; an endpoint that does not agree
    /// fails the connection.
    H2,
    /// Over TLS, offers `h2` and `http/1.1` by ALPN and speaks what the
    /// endpoint picks.
    Auto,
}

impl Protocol {
    /// Whether requests may go over HTTP/2.
    pub fn may_be_h2(self) -> bool {
        self != Protocol::Http1
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::H2c => "h2c",
            Protocol::H2 => "h2",
            Protocol::Auto => "auto",
        }
    }
}

/// `[upstream.http2]`: how HTTP/2 connections to the endpoints are made
/// and shared. Defaults and bounds are in `docs/upstreams.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http2Config {
    /// Connections per endpoint and worker; another is opened only when
    /// the streams of those open are all in use.
    pub max_connections_per_endpoint: usize,
    /// Streams Weir opens at once on one connection; the endpoint's
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` lowers it.
    pub max_concurrent_streams: u32,
    pub initial_stream_window: u32,
    pub initial_connection_window: u32,
    /// The largest response header block accepted.
    pub max_header_list_size: u32,
    /// A PING on a connection without streams this often; `None` is off.
    pub keepalive_interval: Option<Duration>,
    /// How long a PING may go unanswered before the connection is dropped.
    pub keepalive_timeout: Duration,
}

impl Default for Http2Config {
    fn default() -> Http2Config {
        Http2Config {
            max_connections_per_endpoint: 4,
            max_concurrent_streams: 256,
            initial_stream_window: 1024 * 1024,
            initial_connection_window: 4 * 1024 * 1024,
            max_header_list_size: 64 * 1024,
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_timeout: Duration::from_secs(10),
        }
    }
}

/// `tls = { ... }` on an `[[upstream]]`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstreamTls {
    sni: Option<String>,
    ca: Option<String>,
    client_cert: Option<String>,
    client_key: Option<String>,
    insecure_skip_verify: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    pub host: String,
    pub port: u16,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BalancerKind {
    RoundRobin,
    LeastRequest,
    ConsistentHash(HashKey),
    Random,
}

/// What a consistent-hash balancer hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    Header(HeaderName),
    Cookie(String),
    ClientIp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    pub max_idle: usize,
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckConfig {
    pub kind: CheckKind,
    /// The HTTP check's path (`/` for a gRPC check, which does not use it).
    pub path: String,
    /// `Host` header of the probe; the endpoint's configured host when unset.
    pub host: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive passes that bring an unhealthy endpoint back.
    pub healthy_threshold: u32,
    /// Consecutive failures that take a healthy endpoint out.
    pub unhealthy_threshold: u32,
    /// Inclusive ranges of statuses that count as a pass.
    pub expected_statuses: Vec<(u16, u16)>,
}

/// What a health probe asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// `GET path`, passing on an expected status.
    Http,
    /// `grpc.health.v1.Health/Check` for `service` ("" is the server as
    /// a whole), passing on `SERVING`.
    Grpc { service: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierConfig {
    /// 0 disables this trigger.
    pub consecutive_5xx: u32,
    /// 0 disables this trigger.
    pub consecutive_connect_failures: u32,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryConfig {
    /// Retries after the first try; 0 disables retries.
    pub attempts: u32,
    /// Statuses that make an idempotent, bodiless request try again.
    pub statuses: Vec<u16>,
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Retries allowed per 1,000 requests.
    pub budget_per_mille: u32,
    /// Retries always allowed per second, whatever the ratio says.
    pub budget_min_per_second: u32,
}

impl Validator<'_> {
    pub(super) fn upstream(&mut self, raw: RawUpstream, at: &At) -> Option<UpstreamConfig> {
        let named = At {
            key: format!("{} ({})", at.key, raw.name),
            ..at.clone()
        };
        let at = &named;
        self.name(at, &raw.name);
        let (endpoints, https) = self.endpoints(at, &raw.endpoints);
        let mut tls = self.upstream_tls(at, raw.tls, https);
        let protocol = self.protocol(at, raw.protocol.as_deref(), tls.is_some());
        if let Some(tls) = &mut tls {
            tls.alpn = match protocol {
                Protocol::Http1 | Protocol::H2c => vec![b"http/1.1".to_vec()],
                Protocol::H2 => vec![b"h2".to_vec()],
                Protocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            };
        }
        let http2 = self.http2(&field(at, "http2"), raw.http2, protocol);
        let balancer = self.balancer(at, raw.balancer.as_deref(), raw.hash_key.as_deref());
        let pool = self.pool(&field(at, "pool"), raw.pool);
        let panic_threshold = self.range(
            at,
            "panic_threshold",
            raw.panic_threshold.unwrap_or(50),
            0,
            100,
        );
        let max_connections = self.range(
            at,
            "max_connections",
            raw.max_connections.unwrap_or(10_000),
            1,
            limits::MAX_UPSTREAM_CONNECTIONS,
        );
        let max_pending_requests = self.range(
            at,
            "max_pending_requests",
            raw.max_pending_requests.unwrap_or(10_000),
            1,
            limits::MAX_PENDING_REQUESTS,
        );
        let dns_refresh =
            self.duration(at, "dns_refresh", raw.dns_refresh, Duration::from_secs(30));
        if dns_refresh < limits::MIN_DNS_REFRESH {
            self.report(
                &field(at, "dns_refresh"),
                Problem::OutOfRange {
                    field: "dns_refresh",
                    rule: "at least 1s, so a resolver is not queried in a loop".into(),
                },
            );
        }
        let health_check = raw
            .health_check
            .map(|h| self.health_check(&field(at, "health_check"), h, protocol));
        let outlier = self.outlier(&field(at, "outlier"), raw.outlier);
        let retry = self.retry(&field(at, "retry"), raw.retry);
        Some(UpstreamConfig {
            name: raw.name,
            endpoints,
            balancer,
            protocol,
            http2,
            connect_timeout: self.duration(
                at,
                "connect_timeout",
                raw.connect_timeout,
                Duration::from_secs(2),
            ),
            timeout: self.duration(at, "timeout", raw.timeout, Duration::from_secs(30)),
            read_timeout: self.duration(
                at,
                "read_timeout",
                raw.read_timeout,
                Duration::from_secs(60),
            ),
            pool,
            dns_refresh,
            panic_threshold,
            max_connections,
            max_pending_requests,
            health_check,
            outlier,
            retry,
            tls,
        })
    }

    /// `tls = true`, `tls = { sni, ca, client_cert, client_key,
    /// insecure_skip_verify }`, or endpoints written `https://…` (`https`).
    fn upstream_tls(
        &mut self,
        at: &At,
        raw: Option<toml::Value>,
        https: bool,
    ) -> Option<UpstreamTls> {
        let tls_at = field(at, "tls");
        let raw = match raw {
            None => return https.then(UpstreamTls::default),
            Some(toml::Value::Boolean(false)) if https => {
                self.report(
                    &tls_at,
                    Problem::Invalid {
                        field: "tls",
                        reason: "`https://` endpoints need TLS; drop `tls = false`".into(),
                    },
                );
                return None;
            }
            Some(toml::Value::Boolean(on)) => return on.then(UpstreamTls::default),
            Some(toml::Value::Table(t)) => match RawUpstreamTls::deserialize(t) {
                Ok(r) => r,
                Err(e) => {
                    self.report(
                        &tls_at,
                        Problem::Invalid {
                            field: "tls",
                            reason: e.to_string(),
                        },
                    );
                    return None;
                }
            },
            Some(other) => {
                self.report(
                    &tls_at,
                    Problem::Invalid {
                        field: "tls",
                        reason: format!(
                            "`{other}` is neither `true`/`false` nor a table of TLS settings"
                        ),
                    },
                );
                return None;
            }
        };
        let base = self.base();
        let client_cert = match (raw.client_cert, raw.client_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(super::CertPair {
                cert: base.join(cert),
                key: base.join(key),
            }),
            _ => {
                self.report(
                    &tls_at,
                    Problem::Invalid {
                        field: "client_cert",
                        reason: "`client_cert` and `client_key` go together".into(),
                    },
                );
                None
            }
        };
        if let Some(sni) = &raw.sni
            && rustls_pki_types::ServerName::try_from(sni.as_str()).is_err()
        {
            self.report(
                &field(&tls_at, "sni"),
                Problem::Invalid {
                    field: "sni",
                    reason: format!("`{sni}` is not a DNS name or an IP address"),
                },
            );
        }
        Some(UpstreamTls {
            sni: raw.sni,
            ca: raw.ca.map(|c| base.join(c)),
            client_cert,
            insecure_skip_verify: raw.insecure_skip_verify.unwrap_or(false),
            alpn: Vec::new(),
        })
    }

    /// `protocol`: `http1` (default), `h2c`, `h2` or `auto`; the last two
    /// agree on HTTP/2 by ALPN, so they need TLS, and `h2c` is the one
    /// without it.
    fn protocol(&mut self, at: &At, raw: Option<&str>, tls: bool) -> Protocol {
        let at = field(at, "protocol");
        let bad = |this: &mut Self, reason: String| {
            this.report(
                &at,
                Problem::Invalid {
                    field: "protocol",
                    reason,
                },
            );
        };
        let p = match raw.unwrap_or("http1") {
            "http1" => Protocol::Http1,
            "h2c" => Protocol::H2c,
            "h2" => Protocol::H2,
            "auto" => Protocol::Auto,
            other => {
                bad(
                    self,
                    format!("unknown protocol `{other}`; known: http1, h2c, h2, auto"),
                );
                return Protocol::Http1;
            }
        };
        match p {
            Protocol::H2 | Protocol::Auto if !tls => bad(
                self,
                format!(
                    "`{}` agrees on HTTP/2 by ALPN, which needs TLS: add `tls` (or `https://` \
                     endpoints), or use `h2c` for HTTP/2 over plain TCP",
                    p.as_str()
                ),
            ),
            Protocol::H2c if tls => bad(
                self,
                "`h2c` is HTTP/2 over plain TCP; over TLS use `h2` (or `auto`)".into(),
            ),
            _ => {}
        }
        p
    }

    /// `[upstream.http2]`, only on an upstream that may speak HTTP/2.
    fn http2(&mut self, at: &At, raw: Option<RawHttp2>, protocol: Protocol) -> Http2Config {
        let d = Http2Config::default();
        let Some(raw) = raw else { return d };
        if !protocol.may_be_h2() {
            self.report(
                at,
                Problem::Invalid {
                    field: "http2",
                    reason: "the upstream speaks HTTP/1.1; set `protocol` to `h2c`, `h2` or \
                             `auto` to use HTTP/2 settings"
                        .into(),
                },
            );
        }
        let window = |this: &mut Self, name: &'static str, v: Option<bytesize::ByteSize>, dv| {
            let v = v.map_or(u64::from(dv), |b| b.as_u64());
            this.range(at, name, v, limits::MIN_H2_WINDOW, limits::MAX_H2_WINDOW) as u32
        };
        let initial_stream_window = window(
            self,
            "initial_stream_window",
            raw.initial_stream_window,
            d.initial_stream_window,
        );
        let initial_connection_window = window(
            self,
            "initial_connection_window",
            raw.initial_connection_window,
            d.initial_connection_window,
        );
        let max_header_list_size = self.range(
            at,
            "max_header_list_size",
            raw.max_header_list_size
                .map_or(u64::from(d.max_header_list_size), |b| b.as_u64()),
            limits::MIN_H2_HEADER_LIST,
            limits::MAX_H2_HEADER_LIST,
        ) as u32;
        // `0s` turns the keep-alive off.
        let keepalive_interval = match raw.keepalive_interval {
            None => d.keepalive_interval,
            Some(i) if i.is_zero() => None,
            Some(i) => {
                if i < limits::MIN_H2_KEEPALIVE || i > limits::MAX_TIMEOUT {
                    self.report(
                        &field(at, "keepalive_interval"),
                        Problem::OutOfRange {
                            field: "keepalive_interval",
                            rule: "0s (off), or from 100ms to 1h".into(),
                        },
                    );
                }
                Some(i)
            }
        };
        Http2Config {
            max_connections_per_endpoint: self.range(
                at,
                "max_connections_per_endpoint",
                raw.max_connections_per_endpoint
                    .unwrap_or(d.max_connections_per_endpoint),
                1,
                limits::MAX_H2_CONNECTIONS_PER_ENDPOINT,
            ),
            max_concurrent_streams: self.range(
                at,
                "max_concurrent_streams",
                raw.max_concurrent_streams
                    .unwrap_or(d.max_concurrent_streams),
                1,
                limits::MAX_H2_STREAMS,
            ),
            initial_stream_window,
            initial_connection_window,
            max_header_list_size,
            keepalive_interval,
            keepalive_timeout: self.duration(
                at,
                "keepalive_timeout",
                raw.keepalive_timeout,
                d.keepalive_timeout,
            ),
        }
    }

    /// 1 to `MAX_ENDPOINTS` endpoints, each `host:port` with a weight,
    /// optionally `http://` or `https://` first (all of an upstream's the
    /// same; `https://` means TLS, and 443 when no port is given). Also
    /// returns whether they were `https://`.
    fn endpoints(&mut self, at: &At, raw: &[RawEndpoint]) -> (Vec<EndpointConfig>, bool) {
        if raw.is_empty() || raw.len() > limits::MAX_ENDPOINTS {
            self.report(
                &field(at, "endpoints"),
                Problem::OutOfRange {
                    field: "endpoints",
                    rule: format!("a list of 1 to {} endpoints", limits::MAX_ENDPOINTS),
                },
            );
        }
        let mut endpoints = Vec::new();
        let mut schemes = Vec::new();
        for (j, ep) in raw.iter().enumerate() {
            let ep_at = field(at, &format!("endpoints[{j}]"));
            let weight = ep.weight.unwrap_or(1);
            self.range(&ep_at, "weight", weight, 1, limits::MAX_WEIGHT);
            let (https, address) = match ep.address.split_once("://") {
                Some(("https", rest)) => (true, rest),
                Some(("http", rest)) => (false, rest),
                _ => (false, ep.address.as_str()),
            };
            schemes.push(https);
            let address = address.trim_end_matches('/');
            let with_port;
            let address = if https && split_host_port(address).is_none() {
                with_port = format!("{address}:443");
                with_port.as_str()
            } else {
                address
            };
            match split_host_port(address) {
                Some((host, port)) => endpoints.push(EndpointConfig { host, port, weight }),
                None => self.report(
                    &ep_at,
                    Problem::Invalid {
                        field: "address",
                        reason: format!(
                            "`{}` is not host:port (an IP address or DNS name, and a port from 1 to 65535)",
                            ep.address
                        ),
                    },
                ),
            }
        }
        let https = schemes.first().copied().unwrap_or(false);
        if schemes.iter().any(|s| *s != https) {
            self.report(
                &field(at, "endpoints"),
                Problem::Invalid {
                    field: "endpoints",
                    reason: "some endpoints are `https://` and some are not: TLS is set per \
                             upstream; split them into two upstreams"
                        .into(),
                },
            );
        }
        (endpoints, https)
    }

    fn balancer(&mut self, at: &At, kind: Option<&str>, hash_key: Option<&str>) -> BalancerKind {
        let kind = match kind.unwrap_or("round_robin") {
            "round_robin" => BalancerKind::RoundRobin,
            "least_request" => BalancerKind::LeastRequest,
            "random" => BalancerKind::Random,
            "consistent_hash" => {
                BalancerKind::ConsistentHash(self.hash_key(at, hash_key.unwrap_or("client_ip")))
            }
            other => {
                self.report(
                    &field(at, "balancer"),
                    Problem::Invalid {
                        field: "balancer",
                        reason: format!(
                            "unknown balancer `{other}`; known: round_robin, least_request, consistent_hash, random"
                        ),
                    },
                );
                BalancerKind::RoundRobin
            }
        };
        if hash_key.is_some() && !matches!(kind, BalancerKind::ConsistentHash(_)) {
            self.report(
                &field(at, "hash_key"),
                Problem::Invalid {
                    field: "hash_key",
                    reason: "only `balancer = \"consistent_hash\"` uses a hash key".into(),
                },
            );
        }
        kind
    }

    fn hash_key(&mut self, at: &At, s: &str) -> HashKey {
        let key = match s.split_once(':') {
            None if s == "client_ip" => Some(HashKey::ClientIp),
            Some(("header", name)) => HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                .ok()
                .map(HashKey::Header),
            Some(("cookie", name))
                if !name.is_empty()
                    && name.len() <= 256
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && !b"=;,\"".contains(&b)) =>
            {
                Some(HashKey::Cookie(name.to_owned()))
            }
            _ => None,
        };
        key.unwrap_or_else(|| {
            self.report(
                &field(at, "hash_key"),
                Problem::Invalid {
                    field: "hash_key",
                    reason: format!(
                        "`{s}` is not a hash key: use `client_ip`, `header:NAME` or `cookie:NAME`"
                    ),
                },
            );
            HashKey::ClientIp
        })
    }

    fn pool(&mut self, at: &At, raw: Option<RawPool>) -> PoolConfig {
        let raw = raw.unwrap_or(RawPool {
            max_idle: None,
            idle_timeout: None,
        });
        PoolConfig {
            max_idle: self.range(
                at,
                "max_idle",
                raw.max_idle.unwrap_or(256),
                0,
                limits::MAX_POOL_IDLE,
            ),
            idle_timeout: self.duration(
                at,
                "idle_timeout",
                raw.idle_timeout,
                Duration::from_secs(60),
            ),
        }
    }

    fn health_check(
        &mut self,
        at: &At,
        raw: RawHealthCheck,
        protocol: Protocol,
    ) -> HealthCheckConfig {
        let kind = match raw.kind.as_deref().unwrap_or("http") {
            "http" => CheckKind::Http,
            "grpc" => CheckKind::Grpc {
                service: raw.service.clone().unwrap_or_default(),
            },
            other => {
                self.report(
                    &field(at, "type"),
                    Problem::Invalid {
                        field: "type",
                        reason: format!("unknown health check `{other}`; known: http, grpc"),
                    },
                );
                CheckKind::Http
            }
        };
        let path = match (&kind, raw.path) {
            (CheckKind::Http, Some(path)) => {
                if !path.starts_with('/')
                    || path.len() > limits::MAX_HEALTH_PATH_BYTES
                    || http::uri::PathAndQuery::try_from(path.as_str()).is_err()
                {
                    self.report(
                        &field(at, "path"),
                        Problem::Invalid {
                            field: "path",
                            reason: format!(
                                "`{path}` must be a request path starting with `/`, at most {} bytes",
                                limits::MAX_HEALTH_PATH_BYTES
                            ),
                        },
                    );
                }
                path
            }
            (CheckKind::Http, None) => {
                self.report(
                    &field(at, "path"),
                    Problem::Invalid {
                        field: "path",
                        reason: "an HTTP health check needs the `path` it asks for".into(),
                    },
                );
                String::new()
            }
            (CheckKind::Grpc { .. }, Some(_)) => {
                self.report(
                    &field(at, "path"),
                    Problem::Invalid {
                        field: "path",
                        reason: "a gRPC health check always asks `/grpc.health.v1.Health/Check`; \
                                 name the service with `service`"
                            .into(),
                    },
                );
                "/".into()
            }
            (CheckKind::Grpc { .. }, None) => "/".into(),
        };
        if let CheckKind::Grpc { service } = &kind {
            if !protocol.may_be_h2() {
                self.report(
                    &field(at, "type"),
                    Problem::Invalid {
                        field: "type",
                        reason: "gRPC runs over HTTP/2: set the upstream's `protocol` to `h2c`, \
                                 `h2` or `auto`"
                            .into(),
                    },
                );
            }
            if service.len() > limits::MAX_GRPC_SERVICE_BYTES
                || service.bytes().any(|b| !b.is_ascii_graphic())
            {
                self.report(
                    &field(at, "service"),
                    Problem::Invalid {
                        field: "service",
                        reason: format!(
                            "a service name is at most {} visible ASCII characters",
                            limits::MAX_GRPC_SERVICE_BYTES
                        ),
                    },
                );
            }
        } else if raw.service.is_some() {
            self.report(
                &field(at, "service"),
                Problem::Invalid {
                    field: "service",
                    reason: "only a `type = \"grpc\"` health check names a service".into(),
                },
            );
        }
        if let Some(h) = &raw.host
            && http::HeaderValue::from_str(h).is_err()
        {
            self.report(
                &field(at, "host"),
                Problem::Invalid {
                    field: "host",
                    reason: "must be a valid Host header value".into(),
                },
            );
        }
        let interval = self.duration(at, "interval", raw.interval, Duration::from_secs(5));
        if interval < limits::MIN_HEALTH_INTERVAL {
            self.report(
                &field(at, "interval"),
                Problem::OutOfRange {
                    field: "interval",
                    rule: "at least 50ms, so checks stay checks and not load".into(),
                },
            );
        }
        let timeout = self.duration(at, "timeout", raw.timeout, Duration::from_secs(1));
        let healthy_threshold = self.range(
            at,
            "healthy_threshold",
            raw.healthy_threshold.unwrap_or(2),
            1,
            limits::MAX_THRESHOLD,
        );
        let unhealthy_threshold = self.range(
            at,
            "unhealthy_threshold",
            raw.unhealthy_threshold.unwrap_or(3),
            1,
            limits::MAX_THRESHOLD,
        );
        let mut expected_statuses = Vec::new();
        for r in &raw.expected_statuses {
            if !(100..=599).contains(&r.from) || !(100..=599).contains(&r.to) || r.from > r.to {
                self.report(
                    &field(at, "expected_statuses"),
                    Problem::OutOfRange {
                        field: "expected_statuses",
                        rule: format!(
                            "statuses from 100 to 599, low to high, not {}-{}",
                            r.from, r.to
                        ),
                    },
                );
            }
            expected_statuses.push((r.from, r.to));
        }
        if expected_statuses.is_empty() {
            expected_statuses.push((200, 299));
        }
        HealthCheckConfig {
            kind,
            path,
            host: raw.host,
            interval,
            timeout,
            healthy_threshold,
            unhealthy_threshold,
            expected_statuses,
        }
    }

    fn outlier(&mut self, at: &At, raw: Option<RawOutlier>) -> OutlierConfig {
        let raw = raw.unwrap_or(RawOutlier {
            consecutive_5xx: None,
            consecutive_connect_failures: None,
            base_ejection: None,
            max_ejection: None,
        });
        let base_ejection = self.duration(
            at,
            "base_ejection",
            raw.base_ejection,
            Duration::from_secs(10),
        );
        let max_ejection = self.duration(
            at,
            "max_ejection",
            raw.max_ejection,
            Duration::from_secs(300),
        );
        if max_ejection < base_ejection {
            self.report(
                &field(at, "max_ejection"),
                Problem::OutOfRange {
                    field: "max_ejection",
                    rule: "at least `base_ejection`: it caps the growing ejection time".into(),
                },
            );
        }
        OutlierConfig {
            consecutive_5xx: self.range(
                at,
                "consecutive_5xx",
                raw.consecutive_5xx.unwrap_or(5),
                0,
                limits::MAX_THRESHOLD,
            ),
            consecutive_connect_failures: self.range(
                at,
                "consecutive_connect_failures",
                raw.consecutive_connect_failures.unwrap_or(3),
                0,
                limits::MAX_THRESHOLD,
            ),
            base_ejection,
            max_ejection,
        }
    }

    fn retry(&mut self, at: &At, raw: Option<RawRetry>) -> RetryConfig {
        let raw = raw.unwrap_or(RawRetry {
            attempts: None,
            statuses: None,
            backoff: None,
            max_backoff: None,
            budget_ratio: None,
            budget_min_per_second: None,
        });
        let statuses = raw.statuses.unwrap_or_else(|| vec![502, 503, 504]);
        for s in &statuses {
            if !(100..=599).contains(s) {
                self.report(
                    &field(at, "statuses"),
                    Problem::OutOfRange {
                        field: "statuses",
                        rule: format!("HTTP statuses from 100 to 599, not {s}"),
                    },
                );
            }
        }
        let backoff = self.duration(at, "backoff", raw.backoff, Duration::from_millis(10));
        let max_backoff = self.duration(
            at,
            "max_backoff",
            raw.max_backoff,
            Duration::from_millis(250),
        );
        if max_backoff < backoff {
            self.report(
                &field(at, "max_backoff"),
                Problem::OutOfRange {
                    field: "max_backoff",
                    rule: "at least `backoff`: it caps the growing backoff".into(),
                },
            );
        }
        let ratio = raw.budget_ratio.unwrap_or(0.2);
        if !(0.0..=1.0).contains(&ratio) {
            self.report(
                &field(at, "budget_ratio"),
                Problem::OutOfRange {
                    field: "budget_ratio",
                    rule: format!(
                        "between 0 and 1 (retries per request), not {ratio}: more than one retry per request multiplies an outage"
                    ),
                },
            );
        }
        RetryConfig {
            attempts: self.range(
                at,
                "attempts",
                raw.attempts.unwrap_or(2),
                0,
                limits::MAX_RETRY_ATTEMPTS,
            ),
            statuses,
            backoff,
            max_backoff,
            budget_per_mille: (ratio.clamp(0.0, 1.0) * 1000.0).round() as u32,
            budget_min_per_second: self.range(
                at,
                "budget_min_per_second",
                raw.budget_min_per_second.unwrap_or(10),
                0,
                limits::MAX_RETRY_FLOOR_PER_SECOND,
            ),
        }
    }
}

#[cfg(test)]
mod tests;
