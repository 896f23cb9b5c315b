//! The route table: an immutable list of matchers built from the
//! configuration, searched in file order; the first route whose every
//! condition holds wins. It owns matching and path rewriting, nothing about
//! forwarding. Swapping configuration builds a new table; a table is never
//! changed in place.

use std::sync::Arc;

use http::request::Parts;
use http::{HeaderMap, Method};

use crate::config::{HeaderMatch, HostPattern, PathMatch, RouteConfig};
use crate::plugin::Chain;
use crate::upstream::Upstream;

/// A route ready to serve: its matcher and where it sends traffic.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    hosts: Vec<HostPattern>,
    path: Option<PathMatch>,
    methods: Vec<Method>,
    headers: Vec<HeaderMatch>,
    rewrite_prefix: Option<String>,
    pub upstream: Arc<Upstream>,
    /// The whole request until the response head, retries included.
    pub timeout: std::time::Duration,
    pub connect_timeout: std::time::Duration,
    /// Retries after the first try.
    pub retry_attempts: u32,
    pub max_body_bytes: u64,
    /// Plugins to run, global chain first; empty on most routes.
    pub plugins: Arc<Chain>,
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
    /// Caps on bodies buffered for body-phase plugins (request, response).
    pub plugin_body_caps: (usize, usize),
}

impl Route {
    pub fn new(cfg: &RouteConfig, upstream: Arc<Upstream>, default_max_body: u64) -> Route {
        Route {
            name: cfg.name.clone(),
            hosts: cfg.hosts.clone(),
            path: cfg.path.clone(),
            methods: cfg.methods.clone(),
            headers: cfg.headers.clone(),
            rewrite_prefix: cfg.rewrite_prefix.clone(),
            timeout: cfg.timeout.unwrap_or(upstream.config.timeout),
            connect_timeout: cfg
                .connect_timeout
                .unwrap_or(upstream.config.connect_timeout),
            retry_attempts: cfg.retry_attempts.unwrap_or(upstream.config.retry.attempts),
            max_body_bytes: cfg.max_body_bytes.unwrap_or(default_max_body),
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
    ) -> bool {
        if !self.methods.is_empty() && !self.methods.contains(method) {
            return false;
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
            plugin_body_caps: (0, 0),
        }
    }

    /// An upstream by name.
    pub fn upstream(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.upstreams.get(name)
    }

    /// The first route that matches the request, in configuration order.
    pub fn find(&self, req: &Parts) -> Option<&Route> {
        let host = if self.uses_hosts {
            request_host(req)
        } else {
            None
        };
        let host = host.as_deref();
        let path = req.uri.path();
        self.routes
            .iter()
            .find(|r| r.matches(host, &req.method, path, &req.headers))
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

/// The request's host, lower-case and without port: from the URI's
/// authority (HTTP/2, absolute-form) or else the `Host` header.
pub fn request_host(req: &Parts) -> Option<std::borrow::Cow<'_, str>> {
    let raw = match req.uri.host() {
        Some(h) => h,
        None => {
            let h = req.headers.get(http::header::HOST)?.to_str().ok()?;
            // Strip a port; an IPv6 literal keeps its brackets.
            match h.rfind(':') {
                Some(i) if !h[i..].contains(']') => &h[..i],
                _ => h,
            }
        }
    };
    if raw.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(std::borrow::Cow::Owned(raw.to_ascii_lowercase()))
    } else {
        Some(std::borrow::Cow::Borrowed(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_segment_aware() {
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/v1"));
        assert!(!prefix_matches("/api", "/apiv1"));
        assert!(prefix_matches("/api/", "/api/v1"));
        assert!(prefix_matches("/", "/anything"));
    }

    #[test]
    fn wildcard_needs_a_label() {
        let p = HostPattern::Suffix(".example.com".into());
        assert!(host_matches(&p, "a.example.com"));
        assert!(host_matches(&p, "a.b.example.com"));
        assert!(!host_matches(&p, "example.com"));
        assert!(!host_matches(&p, "badexample.com"));
    }

    #[test]
    fn host_from_header_strips_port() {
        let req = http::Request::get("/")
            .header("host", "API.Example.com:8080")
            .body(())
            .unwrap();
        let (parts, _) = req.into_parts();
        assert_eq!(request_host(&parts).as_deref(), Some("api.example.com"));
    }
}
