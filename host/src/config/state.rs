//! Validation of `[state]`: where the counters and token buckets that a
//! fleet of gateways shares are kept (`crate::fleet`), and of the
//! per-plugin `fleet` and `fleet_fallback` keys of `[plugin_limits.NAME]`.
//! Every key, default and bound is in `docs/configuration.md`; what the
//! backends and modes guarantee is in `docs/fleet.md`.
//!
//! The Redis password is read from `password_file` while the
//! configuration loads, like the admin token, so `weir check`, start-up
//! and reloads read it the same way; a password written in `url` is
//! refused, so no configuration file holds one. `Debug` never shows it.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{At, Problem, Validator, field};

/// Bounds and defaults of `[state]`.
pub mod limits {
    use std::time::Duration;

    pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_millis(100);
    /// Below this, a fleet of gateways would keep Redis busy with rounds
    /// that change little.
    pub const MIN_SYNC_INTERVAL: Duration = Duration::from_millis(10);
    pub const MAX_SYNC_INTERVAL: Duration = Duration::from_secs(10);
    pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_millis(50);
    pub const MIN_COMMAND_TIMEOUT: Duration = Duration::from_millis(1);
    /// A `strict` decision holds its request for up to this long.
    pub const MAX_COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
    pub const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_POOL_SIZE: usize = 2;
    pub const MAX_POOL_SIZE: usize = 64;
    /// `strict` operations sent to Redis and not yet answered, over the
    /// whole gateway: past it an operation is answered by the plugin's
    /// `fleet_fallback` at once.
    pub const DEFAULT_MAX_PENDING: usize = 10_000;
    pub const MAX_MAX_PENDING: usize = 1_000_000;
    pub const MAX_PREFIX_BYTES: usize = 64;
    pub const MAX_URL_BYTES: usize = 2048;
    pub const MAX_PASSWORD_FILE_BYTES: u64 = 4096;
    pub const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;
}

/// `[state]`, validated.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct StateConfig {
    /// `None`: `backend = "local"`, every plugin's state in this process.
    pub redis: Option<RedisConfig>,
}

/// `backend = "redis"`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://` or `rediss://` (TLS), host, port, database; no password.
    pub url: String,
    /// Read from `password_file`.
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    /// PEM certificates that sign Redis's (`rediss://` only), read from
    /// `ca_file`; without, Mozilla's roots (`webpki-roots`).
    pub ca: Option<Vec<u8>>,
    pub ca_file: Option<PathBuf>,
    pub pool_size: usize,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub sync_interval: Duration,
    /// Every key Weir writes starts with `{prefix}:`.
    pub prefix: String,
    pub max_pending: usize,
}

impl std::fmt::Debug for StateConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.redis {
            None => f.write_str("StateConfig(local)"),
            Some(r) => r.fmt(f),
        }
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "(hidden)"))
            .field("password_file", &self.password_file)
            .field("ca_file", &self.ca_file)
            .field("pool_size", &self.pool_size)
            .field("sync_interval", &self.sync_interval)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// How a plugin's `fleet` operations are kept (`[plugin_limits.NAME] fleet`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FleetMode {
    /// In this gateway only.
    #[default]
    Local,
    /// Decided from a local view, reconciled with Redis every
    /// `sync_interval`.
    Sync,
    /// Decided in Redis, one round trip per operation.
    Strict,
}

impl FleetMode {
    pub fn name(self) -> &'static str {
        match self {
            FleetMode::Local => "local",
            FleetMode::Sync => "sync",
            FleetMode::Strict => "strict",
        }
    }
}

/// What a plugin's `fleet` operations do while Redis cannot be reached
/// (`[plugin_limits.NAME] fleet_fallback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FleetFallback {
    /// Answer from this gateway, the limits shared out over the gateways
    /// last seen.
    #[default]
    Local,
    /// Answer `unavailable`.
    Closed,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub backend: Option<String>,
    pub url: Option<String>,
    pub password_file: Option<String>,
    pub ca_file: Option<String>,
    pub pool_size: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub command_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub sync_interval: Option<Duration>,
    pub prefix: Option<String>,
    pub max_pending: Option<usize>,
}

const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

impl Validator<'_> {
    pub(super) fn state(&mut self, raw: RawState, at: &At) -> StateConfig {
        match raw.backend.as_deref() {
            None | Some("local") => {
                let redis_keys = [
                    ("url", raw.url.is_some()),
                    ("password_file", raw.password_file.is_some()),
                    ("ca_file", raw.ca_file.is_some()),
                    ("pool_size", raw.pool_size.is_some()),
                    ("connect_timeout", raw.connect_timeout.is_some()),
                    ("command_timeout", raw.command_timeout.is_some()),
                    ("sync_interval", raw.sync_interval.is_some()),
                    ("prefix", raw.prefix.is_some()),
                    ("max_pending", raw.max_pending.is_some()),
                ];
                if let Some((key, _)) = redis_keys.iter().find(|(_, set)| *set) {
                    self.report(
                        &field(at, key),
                        Problem::Invalid {
                            field: "backend",
                            reason: format!(
                                "`{key}` is a setting of the Redis backend: set `backend = \"redis\"`"
                            ),
                        },
                    );
                }
                StateConfig { redis: None }
            }
            Some("redis") => StateConfig {
                redis: self.redis(raw, at),
            },
            Some(other) => {
                self.report(
                    &field(at, "backend"),
                    Problem::Invalid {
                        field: "backend",
                        reason: format!(
                            "`{}` is neither `local` (state in this process) nor `redis` (shared by a fleet)",
                            other.chars().take(64).collect::<String>().escape_debug()
                        ),
                    },
                );
                StateConfig { redis: None }
            }
        }
    }

    fn redis(&mut self, raw: RawState, at: &At) -> Option<RedisConfig> {
        let url = raw.url.unwrap_or_else(|| DEFAULT_URL.to_owned());
        let url_ok = self.redis_url(&url, at);
        let password_file = raw.password_file.map(|f| self.base().join(f));
        let password = self.file_setting(
            at,
            "password_file",
            password_file.as_deref(),
            limits::MAX_PASSWORD_FILE_BYTES,
            |path, bytes| {
                let p = String::from_utf8(bytes.trim_ascii().to_vec())
                    .map_err(|_| format!("the password in `{}` is not UTF-8", path.display()))?;
                if p.is_empty() {
                    return Err(format!("`{}` is empty", path.display()));
                }
                Ok(p)
            },
        );
        let ca_file = raw.ca_file.map(|f| self.base().join(f)).filter(|_| {
            let tls = url.starts_with("rediss://");
            if !tls {
                self.report(
                    &field(at, "ca_file"),
                    Problem::Invalid {
                        field: "ca_file",
                        reason: "only a `rediss://` (TLS) url uses a CA".to_owned(),
                    },
                );
            }
            tls
        });
        let ca = self.file_setting(
            at,
            "ca_file",
            ca_file.as_deref(),
            limits::MAX_CA_FILE_BYTES,
            |path, pem| {
                use rustls_pki_types::CertificateDer;
                use rustls_pki_types::pem::PemObject;
                let certs = CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("`{}` is not PEM: {e}", path.display()))?;
                if certs.is_empty() {
                    return Err(format!("`{}` holds no certificate", path.display()));
                }
                Ok(pem)
            },
        );
        let pool_size = raw.pool_size.unwrap_or(limits::DEFAULT_POOL_SIZE);
        self.range(at, "pool_size", pool_size, 1, limits::MAX_POOL_SIZE);
        let connect_timeout = self.between(
            at,
            "connect_timeout",
            raw.connect_timeout
                .unwrap_or(limits::DEFAULT_CONNECT_TIMEOUT),
            limits::MIN_COMMAND_TIMEOUT,
            limits::MAX_CONNECT_TIMEOUT,
        );
        let command_timeout = self.between(
            at,
            "command_timeout",
            raw.command_timeout
                .unwrap_or(limits::DEFAULT_COMMAND_TIMEOUT),
            limits::MIN_COMMAND_TIMEOUT,
            limits::MAX_COMMAND_TIMEOUT,
        );
        let sync_interval = self.between(
            at,
            "sync_interval",
            raw.sync_interval.unwrap_or(limits::DEFAULT_SYNC_INTERVAL),
            limits::MIN_SYNC_INTERVAL,
            limits::MAX_SYNC_INTERVAL,
        );
        let prefix = raw.prefix.unwrap_or_else(|| "weir".to_owned());
        let prefix_ok = !prefix.is_empty()
            && prefix.len() <= limits::MAX_PREFIX_BYTES
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        if !prefix_ok {
            self.report(
                &field(at, "prefix"),
                Problem::Invalid {
                    field: "prefix",
                    reason: format!(
                        "use 1 to {} letters, digits, `-`, `_`, `.` or `:`: every key Weir \
                         writes in Redis starts with it",
                        limits::MAX_PREFIX_BYTES
                    ),
                },
            );
        }
        let max_pending = raw.max_pending.unwrap_or(limits::DEFAULT_MAX_PENDING);
        self.range(at, "max_pending", max_pending, 1, limits::MAX_MAX_PENDING);
        url_ok.then_some(RedisConfig {
            url,
            password,
            password_file,
            ca,
            ca_file,
            pool_size,
            connect_timeout,
            command_timeout,
            sync_interval,
            prefix,
            max_pending,
        })
    }

    /// A `redis://` or `rediss://` URL the client accepts, without a
    /// password (that goes in `password_file`).
    fn redis_url(&mut self, url: &str, at: &At) -> bool {
        let reason = if url.len() > limits::MAX_URL_BYTES {
            Some(format!("at most {} bytes", limits::MAX_URL_BYTES))
        } else if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            Some(
                "use `redis://host:port/db`, or `rediss://` for TLS (Sentinel, Cluster and Unix \
                 sockets are not supported)"
                    .to_owned(),
            )
        } else {
            match redis::parse_redis_url(url) {
                None => Some("not a URL".to_owned()),
                Some(u) if u.password().is_some() => Some(
                    "holds a password: put it in a file named by `password_file`, so the \
                     configuration holds no secret"
                        .to_owned(),
                ),
                Some(u) if u.host_str().is_none_or(str::is_empty) => {
                    Some("names no host".to_owned())
                }
                Some(_) => None,
            }
        };
        if let Some(reason) = reason {
            // The URL itself is not repeated: it may hold a password.
            self.report(
                &field(at, "url"),
                Problem::Invalid {
                    field: "url",
                    reason,
                },
            );
            return false;
        }
        true
    }

    /// A duration between `min` and `max`, reported otherwise.
    fn between(
        &mut self,
        at: &At,
        name: &'static str,
        value: Duration,
        min: Duration,
        max: Duration,
    ) -> Duration {
        if !(min..=max).contains(&value) {
            self.report(
                &field(at, name),
                Problem::OutOfRange {
                    field: name,
                    rule: format!(
                        "between {} and {}",
                        humantime::format_duration(min),
                        humantime::format_duration(max)
                    ),
                },
            );
        }
        value
    }

    /// A setting `name` that names a file (at `path`, when set): read
    /// within `max` bytes and made into a value by `parse`, or reported.
    fn file_setting<T>(
        &mut self,
        at: &At,
        name: &'static str,
        path: Option<&std::path::Path>,
        max: u64,
        parse: impl FnOnce(&std::path::Path, Vec<u8>) -> Result<T, String>,
    ) -> Option<T> {
        let path = path?;
        match super::read_small_file(path, max).and_then(|bytes| parse(path, bytes)) {
            Ok(v) => Some(v),
            Err(reason) => {
                self.report(
                    &field(at, name),
                    Problem::Invalid {
                        field: name,
                        reason,
                    },
                );
                None
            }
        }
    }

    /// `fleet` and `fleet_fallback` of `[plugin_limits.NAME]`.
    pub(super) fn fleet_settings(
        &mut self,
        mode: Option<&str>,
        fallback: Option<&str>,
        at: &At,
    ) -> (FleetMode, FleetFallback) {
        let mode = match mode {
            None | Some("local") => FleetMode::Local,
            Some("sync") => FleetMode::Sync,
            Some("strict") => FleetMode::Strict,
            Some(other) => {
                self.report(
                    &field(at, "fleet"),
                    Problem::Invalid {
                        field: "fleet",
                        reason: format!(
                            "`{}` is not `local`, `sync` or `strict`",
                            other.chars().take(64).collect::<String>().escape_debug()
                        ),
                    },
                );
                FleetMode::Local
            }
        };
        let fallback = match fallback {
            None | Some("local") => FleetFallback::Local,
            Some("closed") => FleetFallback::Closed,
            Some(other) => {
                self.report(
                    &field(at, "fleet_fallback"),
                    Problem::Invalid {
                        field: "fleet_fallback",
                        reason: format!(
                            "`{}` is neither `local` (answer from this gateway) nor `closed` \
                             (answer `unavailable`)",
                            other.chars().take(64).collect::<String>().escape_debug()
                        ),
                    },
                );
                FleetFallback::Local
            }
        };
        (mode, fallback)
    }
}

impl Validator<'_> {
    /// A plugin whose `fleet` mode shares its state needs a Redis to share
    /// it through: called when `[state]` does not ask for one.
    pub(super) fn fleet_needs_redis(&mut self, plugins: &super::PluginsConfig) {
        for (name, s) in &plugins.settings {
            if s.fleet != FleetMode::Local {
                self.report(
                    &At {
                        line: None,
                        key: format!("plugin_limits.{name}.fleet"),
                    },
                    Problem::Invalid {
                        field: "fleet",
                        reason: format!(
                            "`{}` shares the plugin's counters and buckets through Redis: \
                             set `[state] backend = \"redis\"`",
                            s.fleet.name()
                        ),
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigErrors, FleetFallback, FleetMode};

    const BASE: &str = "[[listener]]\naddress = \"127.0.0.1:0\"\n";

    fn parse(dir: &Path, text: &str) -> Result<Config, ConfigErrors> {
        Config::parse(&dir.join("weir.toml"), &format!("{BASE}{text}"))
    }

    #[test]
    fn the_redis_backend_is_read_with_its_defaults_and_a_password_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("redis.pass"), "s3cret-pass\n").unwrap();
        let c = parse(
            dir.path(),
            "[state]\nbackend = \"redis\"\nurl = \"rediss://cache:6380/2\"\n\
             password_file = \"redis.pass\"\n\
             [plugin_limits.rate-limit]\nfleet = \"strict\"\nfleet_fallback = \"closed\"\n",
        )
        .unwrap();
        let r = c.state.redis.as_ref().unwrap();
        assert_eq!(r.url, "rediss://cache:6380/2");
        assert_eq!(r.password.as_deref(), Some("s3cret-pass"));
        assert_eq!(r.sync_interval, super::limits::DEFAULT_SYNC_INTERVAL);
        assert_eq!(r.prefix, "weir");
        assert!(!format!("{:?}", c.state).contains("s3cret"));
        let s = c.plugins.settings("rate-limit");
        assert_eq!(
            (s.fleet, s.fleet_fallback),
            (FleetMode::Strict, FleetFallback::Closed)
        );
        assert!(parse(dir.path(), "").unwrap().state.redis.is_none());
    }

    #[test]
    fn bad_state_settings_name_their_key_and_never_show_a_password() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("redis.pass"), "not a certificate\n").unwrap();
        for (text, key, words) in [
            (
                "[plugin_limits.rate-limit]\nfleet = \"sync\"\n",
                "plugin_limits.rate-limit.fleet",
                "backend = \"redis\"",
            ),
            (
                "[state]\nbackend = \"redis\"\nurl = \"redis://user:hunter22@cache:6379\"\n",
                "state.url",
                "password_file",
            ),
            (
                "[state]\nbackend = \"redis\"\nurl = \"http://cache\"\n\
                 [plugin_limits.rate-limit]\nfleet = \"sync\"\n",
                "state.url",
                "rediss://",
            ),
            (
                "[state]\nbackend = \"redis\"\nurl = \"redis+unix:///tmp/r.sock\"\n",
                "state.url",
                "not supported",
            ),
            (
                "[state]\nurl = \"redis://cache\"\n",
                "state.url",
                "set `backend = \"redis\"`",
            ),
            (
                "[state]\nbackend = \"memcached\"\n",
                "state.backend",
                "neither",
            ),
            (
                "[state]\nbackend = \"redis\"\nsync_interval = \"1ms\"\n",
                "state.sync_interval",
                "between 10ms and 10s",
            ),
            (
                "[state]\nbackend = \"redis\"\nprefix = \"a b\"\n",
                "state.prefix",
                "letters",
            ),
            (
                "[state]\nbackend = \"redis\"\npassword_file = \"missing\"\n",
                "state.password_file",
                "cannot read",
            ),
            (
                "[state]\nbackend = \"redis\"\nca_file = \"redis.pass\"\n",
                "state.ca_file",
                "only a `rediss://` (TLS) url",
            ),
            (
                "[state]\nbackend = \"redis\"\nurl = \"rediss://cache\"\nca_file = \"redis.pass\"\n",
                "state.ca_file",
                "holds no certificate",
            ),
            (
                "[state]\nbackend = \"redis\"\n[plugin_limits.x]\nfleet = \"eventual\"\n",
                "plugin_limits.x.fleet",
                "not `local`, `sync` or `strict`",
            ),
        ] {
            let e = parse(dir.path(), text).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
            // One problem, reported where it is.
            assert_eq!(e.lines().count(), 1, "{text}: {e}");
            assert!(e.contains(words), "{text}: {e}");
            assert!(!e.contains("hunter22"), "{e}");
        }
    }
}
