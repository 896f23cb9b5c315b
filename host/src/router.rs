//! The route table: an immutable list of matchers built from the
//! configuration, searched in file order; the first route whose every
//! condition holds wins. It owns matching and path rewriting, nothing about
//! forwarding. Swapping configuration builds a new table; a table is never
//! changed in place.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::uri::Authority;
use http::{HeaderMap, Method, Version};

use crate::config::{HeaderMatch, HostPattern, PathMatch, RouteConfig};
use crate::plugin::Chain;
use crate::upstream::Upstream;

/// A route ready to serve: its matcher and where it sends traffic.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    hosts: Vec<HostPattern>,
    client_cert_names: Vec<HostPattern>,
    path: Option<PathMatch>,
    methods: Vec<Method>,
    headers: Vec<HeaderMatch>,
    rewrite_prefix: Option<String>,
    pub upstream: Arc<Upstream>,
    /// The whole request until the response head, retries included.
    pub timeout: std::time::Duration,
    pub connect_timeout: std::time::Duration,
    /// How long the response body may go without a byte from the upstream.
    pub read_timeout: std::time::Duration,
    /// Retries after the first try.
    pub retry_attempts: u32,
    pub max_body_bytes: u64,
    /// Protocols (lower-case names) a client may upgrade to on this route.
    pub upgrades: Vec<String>,
    /// Plugins to run, global chain first; empty on most routes.
    pub plugins: Arc<Chain>,
    /// Its counts in `/metrics`, kept by name over reloads.
    pub stats: Arc<crate::metrics::RouteStats>,
}

/// Routes in the order the configuration file lists them, and the
/// upstreams they use (kept by name so a reload can reuse unchanged ones
/// with their pools and state).
#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<Route>,
    upstreams: std::collections::HashMap<String, Arc<Upstream>>,
    /// Whether any route matches on host: if none does, requests skip
    /// working out their host.
    uses_hosts: bool,
    /// Caps on bodies buffered for body-phase plugins.
    pub plugin_body_caps: PluginBodyCaps,
    /// The headers TLS listeners forward client certificates in: removed
    /// from every client's request, on every listener.
    pub client_cert_headers: Vec<http::HeaderName>,
}

/// How much of a body is buffered for the plugins that asked for it
/// (`[plugins] max_request_body_bytes` and `max_response_body_bytes`).
#[derive(Debug, Default, Clone, Copy)]
pub struct PluginBodyCaps {
    pub request: usize,
    pub response: usize,
}

impl Route {
    pub fn new(cfg: &RouteConfig, upstream: Arc<Upstream>, default_max_body: u64) -> Route {
        Route {
            name: cfg.name.clone(),
            stats: crate::metrics::global().route(&cfg.name),
            hosts: cfg.hosts.clone(),
            client_cert_names: cfg.client_cert_names.clone(),
            path: cfg.path.clone(),
            methods: cfg.methods.clone(),
            headers: cfg.headers.clone(),
            rewrite_prefix: cfg.rewrite_prefix.clone(),
            timeout: cfg.timeout.unwrap_or(upstream.config.timeout),
            connect_timeout: cfg
                .connect_timeout
                .unwrap_or(upstream.config.connect_timeout),
            read_timeout: cfg.read_timeout.unwrap_or(upstream.config.read_timeout),
            retry_attempts: cfg.retry_attempts.unwrap_or(upstream.config.retry.attempts),
            max_body_bytes: cfg.max_body_bytes.unwrap_or(default_max_body),
            upgrades: cfg.upgrades.clone(),
            upstream,
            plugins: Arc::default(),
        }
    }

    /// Attaches the route's plugin chain.
    pub fn with_plugins(mut self, plugins: Arc<Chain>) -> Route {
        self.plugins = plugins;
        self
    }

    fn matches(
        &self,
        host: Option<&str>,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        client_cert: Option<&[String]>,
    ) -> bool {
        if !self.methods.is_empty() && !self.methods.contains(method) {
            return false;
        }
        if !self.client_cert_names.is_empty() {
            let Some(names) = client_cert else {
                return false;
            };
            if !names
                .iter()
                .any(|n| self.client_cert_names.iter().any(|p| host_matches(p, n)))
            {
                return false;
            }
        }
        if !self.hosts.is_empty() {
            let Some(host) = host else { return false };
            if !self.hosts.iter().any(|p| host_matches(p, host)) {
                return false;
            }
        }
        match &self.path {
            None => {}
            Some(PathMatch::Exact(p)) if p != path => return false,
            Some(PathMatch::Prefix(p)) if !prefix_matches(p, path) => return false,
            Some(PathMatch::Regex(r)) if !r.is_match(path) => return false,
            Some(_) => {}
        }
        self.headers.iter().all(|h| match &h.value {
            None => headers.contains_key(&h.name),
            Some(v) => headers.get_all(&h.name).iter().any(|x| x == v),
        })
    }

    /// The path (and query) to send upstream: the matched prefix replaced
    /// by `rewrite_prefix` when one is set.
    pub fn rewrite<'a>(&self, path: &'a str) -> std::borrow::Cow<'a, str> {
        match (&self.rewrite_prefix, &self.path) {
            (Some(to), Some(PathMatch::Prefix(from))) => {
                let rest = &path[from.len().min(path.len())..];
                let mut out = String::with_capacity(to.len() + rest.len() + 1);
                out.push_str(to);
                // Join without doubling or losing the slash between them.
                match (to.ends_with('/'), rest.starts_with('/')) {
                    (true, true) => out.push_str(&rest[1..]),
                    (false, false) if !rest.is_empty() && !rest.starts_with('?') => {
                        out.push('/');
                        out.push_str(rest)
                    }
                    _ => out.push_str(rest),
                }
                std::borrow::Cow::Owned(out)
            }
            _ => std::borrow::Cow::Borrowed(path),
        }
    }
}

impl Router {
    /// The same routes and upstreams with new plugin chains (one per
    /// route, in order): what a plugin deploy swaps in.
    pub fn with_chains(&self, chains: &[Arc<Chain>]) -> Router {
        let routes = self
            .routes
            .iter()
            .zip(chains)
            .map(|(r, c)| r.clone().with_plugins(c.clone()))
            .collect();
        let mut router = Router::new(routes, self.upstreams.clone());
        router.plugin_body_caps = self.plugin_body_caps;
        router.client_cert_headers = self.client_cert_headers.clone();
        router
    }

    pub fn new(
        routes: Vec<Route>,
        upstreams: std::collections::HashMap<String, Arc<Upstream>>,
    ) -> Router {
        let uses_hosts = routes.iter().any(|r| !r.hosts.is_empty());
        Router {
            routes,
            upstreams,
            uses_hosts,
            plugin_body_caps: PluginBodyCaps::default(),
            client_cert_headers: Vec::new(),
        }
    }

    /// An upstream by name.
    pub fn upstream(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.upstreams.get(name)
    }

    /// The first route that matches the request, in configuration order.
    /// The first route that matches the request; `client_cert` holds the
    /// names of the connection's verified client certificate, if any.
    pub fn find(&self, req: &Parts, client_cert: Option<&[String]>) -> Option<&Route> {
        self.find_indexed(req, client_cert).map(|(_, r)| r)
    }

    /// [`Router::find`] with the route's place in the table, which a
    /// request's record keeps ([`Router::route_at`]) instead of the route.
    pub fn find_indexed(
        &self,
        req: &Parts,
        client_cert: Option<&[String]>,
    ) -> Option<(usize, &Route)> {
        let host = if self.uses_hosts {
            request_host(req)
        } else {
            None
        };
        let host = host.as_deref();
        let path = req.uri.path();
        self.routes
            .iter()
            .enumerate()
            .find(|(_, r)| r.matches(host, &req.method, path, &req.headers, client_cert))
    }

    /// The route at `i` in the table (from [`Router::find_indexed`]).
    pub fn route_at(&self, i: usize) -> Option<&Route> {
        self.routes.get(i)
    }

    /// The names of the routes, in table order.
    pub fn route_names(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().map(|r| r.name.as_str())
    }
}

/// A path prefix match is on whole path segments: `/api`
/// matches `/api` and `/api/x` but not `/apix`, unless the prefix itself
/// ends with `/`.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        None => false,
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
    }
}

fn host_matches(p: &HostPattern, host: &str) -> bool {
    match p {
        HostPattern::Exact(h) => h == host,
        HostPattern::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
    }
}

/// Where a request's host comes from. There is only ever one: after
/// [`check_host`] accepted the request, this is the host it is routed by
/// and the host the upstream receives (as `Host` and `X-Forwarded-Host`).
#[derive(Debug, Clone, Copy)]
pub enum HostSource<'a> {
    /// The request target's authority: absolute-form (RFC 9112 3.2.2: it
    /// overrides `Host`) or HTTP/2 `:authority`.
    Target(&'a Authority),
    /// The one `Host` header of an origin-form request.
    Header(&'a HeaderValue),
}

/// The request's host source; `None` only for HTTP/1.0 without `Host`.
pub fn host_source(req: &Parts) -> Option<HostSource<'_>> {
    match req.uri.authority() {
        Some(a) => Some(HostSource::Target(a)),
        None => req.headers.get(header::HOST).map(HostSource::Header),
    }
}

/// Refuses a path holding a dot-segment: `.` or `..`, percent-encoded
/// or not (`/a/../b`, `/a/%2e%2e/b`). Routes match the path as it comes,
/// while an upstream that resolves dot-segments would serve
/// `/public/../admin` as `/admin`, past the plugins of the route for
/// `/admin`; and a `rewrite_prefix` could be climbed out of. Clients
/// normalise paths before sending them, so only a crafted request has one.
///
/// One scan for `.` and `%` on the common path; segments are looked at
/// only when one is there.
pub fn check_path(path: &str) -> Result<(), &'static str> {
    let b = path.as_bytes();
    if !b.iter().any(|c| matches!(c, b'.' | b'%')) {
        return Ok(());
    }
    let dot_segment = path.split('/').any(|seg| {
        // Each dot is `.` or `%2e`: a dot-segment is 1 to 6 bytes.
        if seg.is_empty() || seg.len() > 6 {
            return false;
        }
        let mut dots = 0;
        let mut rest = seg.as_bytes();
        while !rest.is_empty() {
            if rest[0] == b'.' {
                rest = &rest[1..];
            } else if rest.len() >= 3
                && rest[0] == b'%'
                && rest[1] == b'2'
                && rest[2] | 0x20 == b'e'
            {
                rest = &rest[3..];
            } else {
                return false;
            }
            dots += 1;
        }
        dots <= 2
    });
    if dot_segment {
        Err("the path has a `.` or `..` segment")
    } else {
        Ok(())
    }
}

/// Refuses, with the reason (a 400), a request whose host is ambiguous or
/// malformed, so that what the route is chosen by cannot differ from what
/// the upstream is told:
/// - more than one `Host` field (RFC 9112 3.2), even with equal values;
/// - no host at all, except from HTTP/1.0 (RFC 9112 3.2: HTTP/1.1 needs
///   `Host` even in absolute-form; RFC 9113 8.3.1: HTTP/2 needs
///   `:authority` or `host`);
/// - a `Host` or target authority that is not `host[:port]` (see
///   [`parse_authority`]; user information is refused with the rest);
/// - HTTP/2 whose `host` header names another host than its `:authority`
///   (RFC 9113 8.3.1), compared case-insensitively with the scheme's
///   default port filled in.
///
/// On the common request (one valid `Host`, origin-form) this is one
/// header lookup and one pass over the value's bytes, without allocating.
pub fn check_host(req: &Parts) -> Result<(), &'static str> {
    let mut all = req.headers.get_all(header::HOST).iter();
    let field = all.next();
    if all.next().is_some() {
        return Err("more than one Host header");
    }
    let field = match field {
        Some(v) => Some(parse_authority(v.as_bytes()).ok_or("invalid Host header")?),
        None => None,
    };
    match req.uri.authority() {
        Some(a) => {
            let target =
                parse_authority(a.as_str().as_bytes()).ok_or("invalid request target authority")?;
            if req.version >= Version::HTTP_2 {
                if let Some(field) = field {
                    let default = match req.uri.scheme_str() {
                        Some("http") => Some(80),
                        Some("https") => Some(443),
                        _ => None,
                    };
                    if !target.host.eq_ignore_ascii_case(field.host)
                        || target.port.or(default) != field.port.or(default)
                    {
                        return Err("Host header differs from :authority");
                    }
                }
            } else if field.is_none() && req.version == Version::HTTP_11 {
                return Err("missing Host header");
            }
        }
        None if field.is_none() && req.version > Version::HTTP_10 => {
            return Err("missing Host header");
        }
        None => {}
    }
    Ok(())
}

/// An authority split into host and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HostPort<'a> {
    /// With its brackets when an IPv6 address.
    host: &'a [u8],
    /// `None` when absent or empty (`example.com:`).
    port: Option<u16>,
}

/// Splits `host[:port]` when it is well-formed: the host a bracketed IPv6
/// address, or a name of ASCII letters, digits, `-`, `.`, `_` and `~`
/// (IPv4 addresses included); the port, when there is one, at most 65535.
/// Stricter than RFC 3986's reg-name on purpose: no percent-encoding
/// (which `http`'s `Authority` refuses in a host too) and no
/// sub-delimiters (`,` `;` `!` ...), which no DNS name has and which a
/// reader of `X-Forwarded-Host` may take for a list. No user information
/// (`user@`), no path, no spaces, nothing outside ASCII.
fn parse_authority(a: &[u8]) -> Option<HostPort<'_>> {
    let host_end = if a.first() == Some(&b'[') {
        let close = a.iter().position(|&b| b == b']')?;
        let inner = std::str::from_utf8(&a[1..close]).ok()?;
        inner.parse::<std::net::Ipv6Addr>().ok()?;
        close + 1
    } else {
        let end = a.iter().position(|&b| b == b':').unwrap_or(a.len());
        let name_byte =
            |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
        if end == 0 || !a[..end].iter().all(name_byte) {
            return None;
        }
        end
    };
    let (host, rest) = a.split_at(host_end);
    let port = match rest {
        [] | [b':'] => None,
        [b':', digits @ ..] if digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit) => {
            let n = digits
                .iter()
                .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
            Some(u16::try_from(n).ok()?)
        }
        _ => return None,
    };
    Some(HostPort { host, port })
}

/// The host a request is routed by, lower-case and without port: from
/// [`host_source`]. `None` when there is none or it is malformed (which
/// [`check_host`] has refused before routing).
pub fn request_host(req: &Parts) -> Option<std::borrow::Cow<'_, str>> {
    let authority = match host_source(req)? {
        HostSource::Target(a) => a.as_str().as_bytes(),
        HostSource::Header(h) => h.as_bytes(),
    };
    // ASCII only, once parsed.
    let raw = std::str::from_utf8(parse_authority(authority)?.host).ok()?;
    if raw.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(std::borrow::Cow::Owned(raw.to_ascii_lowercase()))
    } else {
        Some(std::borrow::Cow::Borrowed(raw))
    }
}

#[cfg(test)]
mod tests;
