//! Validation of one `[[route]]`: its matchers (hosts, path, methods,
//! headers), its rewrite, its per-route overrides of the upstream's
//! timeouts, retries and body limit, and the protocols a client may
//! upgrade to on it. Each matcher kind is checked on its own, so a route
//! with several mistakes reports all of them.

use std::collections::HashMap;

use http::{HeaderName, HeaderValue, Method};
use toml::Spanned;

use super::raw::{RawHeaderMatch, RawRoute};
use super::{
    At, HeaderMatch, HostPattern, PathMatch, Problem, RouteConfig, Validator, at_key, field, limits,
};

impl Validator<'_> {
    /// Every `[[route]]`, in file order: each one's rules, a unique name,
    /// and an upstream that exists.
    pub(super) fn routes(
        &mut self,
        raw: &[Spanned<toml::Table>],
        upstream_names: &HashMap<String, usize>,
    ) -> Vec<RouteConfig> {
        let mut routes = Vec::new();
        let mut names = HashMap::new();
        if raw.len() > limits::MAX_ROUTES {
            self.report(
                &at_key("route"),
                Problem::OutOfRange {
                    field: "route",
                    rule: format!("at most {} entries", limits::MAX_ROUTES),
                },
            );
        }
        for (i, t) in raw.iter().enumerate() {
            let (raw, at) = self.section::<RawRoute>(t, format!("route[{i}]"));
            if let Some(r) = raw.and_then(|r| self.route(i, r, &at)) {
                self.unique("route", &r.name, &at, &mut names);
                if !upstream_names.contains_key(&r.upstream) {
                    let at = At {
                        key: format!("{} ({}).upstream", at.key, r.name),
                        ..at
                    };
                    self.report(
                        &at,
                        Problem::DanglingUpstream {
                            name: r.upstream.clone(),
                        },
                    );
                }
                routes.push(r);
            }
        }
        routes
    }

    pub(super) fn route(&mut self, i: usize, raw: RawRoute, at: &At) -> Option<RouteConfig> {
        let name = raw.name.clone().unwrap_or_else(|| format!("route-{i}"));
        let named = At {
            key: format!("{} ({name})", at.key),
            ..at.clone()
        };
        let at = &named;
        self.name(at, &name);

        let hosts = self.hosts(at, &raw.hosts);
        let client_cert_names = self.client_cert_names(at, &raw.client_cert_names);
        let path = self.path_match(at, &raw);
        let methods = self.methods(at, &raw.methods);
        let headers = self.header_matches(at, &raw.headers);
        if let Some(r) = &raw.rewrite_prefix {
            self.rewrite(at, r, raw.path_prefix.is_some());
        }
        let timeout = raw
            .timeout
            .map(|t| self.duration(at, "timeout", Some(t), t));
        let plugins = self.plugin_refs(&field(at, "plugins"), &raw.plugins);

        Some(RouteConfig {
            name,
            upstream: raw.upstream,
            hosts,
            client_cert_names,
            path,
            methods,
            headers,
            rewrite_prefix: raw.rewrite_prefix,
            timeout,
            connect_timeout: raw
                .connect_timeout
                .map(|t| self.duration(at, "connect_timeout", Some(t), t)),
            read_timeout: raw
                .read_timeout
                .map(|t| self.duration(at, "read_timeout", Some(t), t)),
            retry_attempts: raw
                .retry_attempts
                .map(|n| self.range(at, "retry_attempts", n, 0, limits::MAX_RETRY_ATTEMPTS)),
            max_body_bytes: raw.max_body_bytes.map(|b| b.as_u64()),
            upgrades: self.upgrades(at, raw.upgrades.as_deref()),
            plugins,
        })
    }

    fn hosts(&mut self, at: &At, raw: &[String]) -> Vec<HostPattern> {
        let mut hosts = Vec::new();
        for h in raw {
            match host_pattern(h) {
                Some(p) => hosts.push(p),
                None => self.report(
                    &field(at, "hosts"),
                    Problem::Invalid {
                        field: "hosts",
                        reason: format!(
                            "`{h}` is not a host name or `*.suffix` wildcard (letters, digits, `-` and `.`)"
                        ),
                    },
                ),
            }
        }
        hosts
    }

    /// Names a verified client certificate must have (one of), exact or
    /// `*.suffix`, like `hosts`.
    fn client_cert_names(&mut self, at: &At, raw: &[String]) -> Vec<HostPattern> {
        let mut names = Vec::new();
        for n in raw {
            match host_pattern(n) {
                Some(p) => names.push(p),
                None => self.report(
                    &field(at, "client_cert_names"),
                    Problem::Invalid {
                        field: "client_cert_names",
                        reason: format!(
                            "`{n}` is not a DNS name or `*.suffix` wildcard (letters, digits, `-` and `.`)"
                        ),
                    },
                ),
            }
        }
        names
    }

    /// At most one of `path`, `path_prefix` and `path_regex`.
    fn path_match(&mut self, at: &At, raw: &RawRoute) -> Option<PathMatch> {
        let set = [&raw.path, &raw.path_prefix, &raw.path_regex]
            .iter()
            .filter(|p| p.is_some())
            .count();
        if set > 1 {
            self.report(at, Problem::ConflictingPathMatch);
        }
        let mut path = None;
        for (field_name, value) in [("path", &raw.path), ("path_prefix", &raw.path_prefix)] {
            if let Some(p) = value {
                if !p.starts_with('/') {
                    self.report(
                        &field(at, field_name),
                        Problem::Invalid {
                            field: field_name,
                            reason: format!("`{p}` must start with `/`: request paths always do"),
                        },
                    );
                }
                path = Some(if field_name == "path" {
                    PathMatch::Exact(p.clone())
                } else {
                    PathMatch::Prefix(p.clone())
                });
            }
        }
        if let Some(re) = &raw.path_regex {
            match regex::RegexBuilder::new(re)
                .size_limit(limits::MAX_REGEX_BYTES)
                .build()
            {
                Ok(r) => path = Some(PathMatch::Regex(r)),
                Err(e) => self.report(
                    &field(at, "path_regex"),
                    Problem::Invalid {
                        field: "path_regex",
                        reason: format!("not a valid regular expression: {e}"),
                    },
                ),
            }
        }
        path
    }

    fn methods(&mut self, at: &At, raw: &[String]) -> Vec<Method> {
        let mut methods = Vec::new();
        for m in raw {
            match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                Ok(m) => methods.push(m),
                Err(_) => self.report(
                    &field(at, "methods"),
                    Problem::Invalid {
                        field: "methods",
                        reason: format!("`{m}` is not an HTTP method token"),
                    },
                ),
            }
        }
        methods
    }

    fn header_matches(&mut self, at: &At, raw: &[RawHeaderMatch]) -> Vec<HeaderMatch> {
        let mut headers = Vec::new();
        for (j, h) in raw.iter().enumerate() {
            let h_at = field(at, &format!("headers[{j}]"));
            let name = HeaderName::from_bytes(h.name.to_ascii_lowercase().as_bytes());
            let value = h.value.as_deref().map(HeaderValue::from_str).transpose();
            match (name, value) {
                (Ok(name), Ok(value)) => headers.push(HeaderMatch { name, value }),
                (Err(_), _) => self.report(
                    &h_at,
                    Problem::Invalid {
                        field: "name",
                        reason: format!("`{}` is not a valid header name", h.name),
                    },
                ),
                (_, Err(_)) => self.report(
                    &h_at,
                    Problem::Invalid {
                        field: "value",
                        reason: "header values must be visible ASCII or spaces".into(),
                    },
                ),
            }
        }
        headers
    }

    /// `upgrades`: protocol names (RFC 9110 section 7.8), stored lower-case
    /// as they are matched case-insensitively. `h2c` is refused: a tunnel
    /// to an upstream's HTTP/2 would carry every later request on the
    /// connection past routing, the host checks, body limits and plugins
    /// ("h2c smuggling"); HTTP/2 clients speak it to Weir directly.
    fn upgrades(&mut self, at: &At, raw: Option<&[String]>) -> Vec<String> {
        let Some(raw) = raw else {
            return vec!["websocket".to_owned()];
        };
        let at = field(at, "upgrades");
        if raw.len() > limits::MAX_UPGRADES {
            self.report(
                &at,
                Problem::OutOfRange {
                    field: "upgrades",
                    rule: format!("at most {} protocols", limits::MAX_UPGRADES),
                },
            );
        }
        let mut upgrades: Vec<String> = Vec::new();
        for p in raw {
            let reason = if p.is_empty()
                || p.len() > limits::MAX_UPGRADE_LEN
                || !p.bytes().all(is_tchar)
            {
                format!(
                    "`{p}` is not a protocol name: 1 to {} token characters, without a `/version`",
                    limits::MAX_UPGRADE_LEN
                )
            } else if p.eq_ignore_ascii_case("h2c") {
                "`h2c` cannot be allowed: the tunnel would carry the client's later requests past routing, host checks, body limits and plugins; HTTP/2 clients can speak it to Weir directly".to_owned()
            } else {
                let p = p.to_ascii_lowercase();
                if !upgrades.contains(&p) {
                    upgrades.push(p);
                }
                continue;
            };
            self.report(
                &at,
                Problem::Invalid {
                    field: "upgrades",
                    reason,
                },
            );
        }
        upgrades
    }

    /// `rewrite_prefix` replaces a matched `path_prefix`, so it needs one.
    fn rewrite(&mut self, at: &At, rewrite: &str, has_prefix: bool) {
        if !has_prefix {
            self.report(&field(at, "rewrite_prefix"), Problem::RewriteWithoutPrefix);
        }
        if !rewrite.starts_with('/') {
            self.report(
                &field(at, "rewrite_prefix"),
                Problem::Invalid {
                    field: "rewrite_prefix",
                    reason: format!(
                        "`{rewrite}` must start with `/` so the rewritten path is valid"
                    ),
                },
            );
        }
    }
}

/// A token character (RFC 9110 section 5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

pub(super) fn host_pattern(h: &str) -> Option<HostPattern> {
    let h = h.to_ascii_lowercase();
    let (wild, name) = match h.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, h.as_str()),
    };
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !valid {
        return None;
    }
    Some(if wild {
        HostPattern::Suffix(format!(".{name}"))
    } else {
        HostPattern::Exact(name.to_owned())
    })
}
