//! The plugin sections of the configuration: `[plugins]` (the folder, the
//! body caps and the global chain), `[plugin_limits.NAME]` (per-plugin limits and
//! failure policy) and the `plugins = [...]` chain on a `[[route]]`. Only
//! the file format and its bounds live here; whether `NAME.wasm` exists and
//! is a valid plugin is checked by `crate::plugin` when it compiles it.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::raw::{RawPluginRef, RawPluginSettings, RawPlugins};
use super::state::{FleetFallback, FleetMode};
use super::{At, Problem, RouteConfig, Validator, field};

/// Bounds and defaults of the plugin settings (docs/plugins.md lists them).
pub mod limits {
    use std::time::Duration;

    pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(10);
    /// One epoch tick (`plugin::EPOCH_TICK`, the granularity deadlines are
    /// enforced with): a shorter deadline could not be honoured.
    pub const MIN_DEADLINE: Duration = Duration::from_millis(5);
    pub const MAX_DEADLINE: Duration = Duration::from_secs(10);
    pub const DEFAULT_MEMORY: u64 = 32 * 1024 * 1024;
    /// A Rust plugin needs its 1 MiB shadow stack plus data.
    pub const MIN_MEMORY: u64 = 2 * 1024 * 1024;
    pub const MAX_MEMORY: u64 = 1024 * 1024 * 1024;
    pub const DEFAULT_MAX_INSTANCES: usize = 16;
    pub const MAX_INSTANCES: usize = 1024;
    pub const DEFAULT_BODY_BYTES: u64 = 1024 * 1024;
    pub const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
    /// Entries in one chain (the global chain plus a route's).
    pub const MAX_CHAIN: usize = 16;
    /// A plugin's configuration, as JSON text.
    pub const MAX_CONFIG_BYTES: usize = 64 * 1024;
    /// Time a deployment (compile, link, `init` of every configuration)
    /// may take while the gateway serves before it is refused.
    pub const DEFAULT_COMPILE_TIMEOUT: Duration = Duration::from_secs(30);
    pub const MIN_COMPILE_TIMEOUT: Duration = Duration::from_secs(1);
    pub const MAX_COMPILE_TIMEOUT: Duration = Duration::from_secs(600);
    /// Consecutive calls of a plugin on one worker that end at their
    /// deadline before its breaker opens (0: never). Each such call held
    /// the worker for a whole deadline; more than a few in a row is a
    /// plugin stuck on its input, not bad luck.
    pub const DEFAULT_BREAKER_AFTER: u32 = 5;
    pub const MAX_BREAKER_AFTER: u32 = 1000;
    /// How long an open breaker refuses calls before one probe, at first
    /// (it doubles with each probe that reaches its deadline, up to
    /// `plugin::breaker::MAX_BACKOFF`).
    pub const DEFAULT_BREAKER_BACKOFF: Duration = Duration::from_secs(1);
    pub const MIN_BREAKER_BACKOFF: Duration = Duration::from_millis(10);
    pub const MAX_BREAKER_BACKOFF: Duration = Duration::from_secs(10);
    /// The share of a worker's time one plugin's calls may take there
    /// (`plugin::share`): a quarter leaves three quarters of every worker
    /// to the other routes whatever one plugin's input does to it. 100
    /// turns the share off.
    pub const DEFAULT_CPU_SHARE_PERCENT: u32 = 25;
    /// How much unused share a worker saves up: the share of this long.
    pub const DEFAULT_CPU_WINDOW: Duration = Duration::from_secs(1);
    /// Twenty epoch ticks: the share is charged in ticks, so a shorter
    /// window would save up too few of them to be fair to a plugin whose
    /// calls are short.
    pub const MIN_CPU_WINDOW: Duration = Duration::from_millis(100);
    pub const MAX_CPU_WINDOW: Duration = Duration::from_secs(60);
    /// Outbound calls (`[plugin_limits.NAME] calls`): one call's time
    /// limit, before the request's deadline caps it.
    pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(1);
    pub const MIN_CALL_TIMEOUT: Duration = Duration::from_millis(1);
    pub const MAX_CALL_TIMEOUT: Duration = Duration::from_secs(60);
    /// Calls one plugin may start per request, every phase together.
    pub const DEFAULT_MAX_CALLS_PER_REQUEST: u32 = 4;
    pub const MAX_CALLS_PER_REQUEST: u32 = 64;
    /// Calls of one plugin under way at once in the whole gateway: what a
    /// flood of requests can make the plugin ask of the services it calls.
    pub const DEFAULT_MAX_CALLS_IN_FLIGHT: usize = 256;
    pub const MAX_CALLS_IN_FLIGHT: usize = 65_536;
    /// The body a call sends and the body of its answer, each.
    pub const DEFAULT_MAX_CALL_BODY_BYTES: u64 = 256 * 1024;
    pub const MAX_CALL_BODY_BYTES: u64 = 16 * 1024 * 1024;
    /// Upstreams one plugin's `calls` list may name.
    pub const MAX_CALL_UPSTREAMS: usize = 64;
}

/// What a plugin may call out to, and the bounds on its calls
/// (`[plugin_limits.NAME]`'s `calls` and `call_*` keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSettings {
    /// The upstreams it may call, by name; empty: none.
    pub upstreams: Vec<String>,
    pub timeout: Duration,
    pub max_per_request: u32,
    pub max_in_flight: usize,
    pub max_body_bytes: usize,
}

impl Default for CallSettings {
    fn default() -> CallSettings {
        CallSettings {
            upstreams: Vec::new(),
            timeout: limits::DEFAULT_CALL_TIMEOUT,
            max_per_request: limits::DEFAULT_MAX_CALLS_PER_REQUEST,
            max_in_flight: limits::DEFAULT_MAX_CALLS_IN_FLIGHT,
            max_body_bytes: limits::DEFAULT_MAX_CALL_BODY_BYTES as usize,
        }
    }
}

/// What a plugin does when a call fails (trap, deadline, memory cap,
/// invalid answer, no free instance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// The request fails: 500, or 503 when every instance is busy.
    Closed,
    /// The plugin is skipped for that call and the skip is logged.
    Open,
}

/// How instances are shared between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Instances are reused across requests (the default; fastest).
    Pooled,
    /// Each request gets a fresh instance, dropped after its log phase.
    Request,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSettings {
    /// CPU time one call may take.
    pub deadline: Duration,
    /// Linear memory one instance may grow to.
    pub memory_bytes: usize,
    /// Instances alive at once, per configuration of the plugin.
    pub max_instances: usize,
    pub failure: FailurePolicy,
    pub isolation: Isolation,
    /// Consecutive deadline traps on one worker that open the plugin's
    /// breaker there; 0 turns the breaker off.
    pub breaker_after: u32,
    /// How long an open breaker refuses calls before its first probe.
    pub breaker_backoff: Duration,
    /// The share of a worker's time the plugin's calls may take, in per
    /// cent (1 to 100; 100: no limit).
    pub cpu_share_percent: u32,
    /// How much unused share a worker saves up: the share of this long.
    pub cpu_window: Duration,
    /// Outbound calls: where to, and their bounds.
    pub calls: CallSettings,
    /// How its `fleet` operations are kept.
    pub fleet: FleetMode,
    /// What they do while Redis cannot be reached.
    pub fleet_fallback: FleetFallback,
}

impl Default for PluginSettings {
    fn default() -> PluginSettings {
        PluginSettings {
            deadline: limits::DEFAULT_DEADLINE,
            memory_bytes: limits::DEFAULT_MEMORY as usize,
            max_instances: limits::DEFAULT_MAX_INSTANCES,
            failure: FailurePolicy::Closed,
            isolation: Isolation::Pooled,
            breaker_after: limits::DEFAULT_BREAKER_AFTER,
            breaker_backoff: limits::DEFAULT_BREAKER_BACKOFF,
            cpu_share_percent: limits::DEFAULT_CPU_SHARE_PERCENT,
            cpu_window: limits::DEFAULT_CPU_WINDOW,
            calls: CallSettings::default(),
            fleet: FleetMode::Local,
            fleet_fallback: FleetFallback::Local,
        }
    }
}

/// One entry of a chain: a plugin by name, and its configuration as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PluginRef {
    pub name: String,
    pub config: String,
}

#[derive(Debug, Clone)]
pub struct PluginsConfig {
    /// The plugin folder, resolved against the configuration file's folder.
    pub dir: PathBuf,
    /// The compiled-plugin cache folder; `None` when caching is off.
    pub cache_dir: Option<PathBuf>,
    /// Bound on one deployment while serving (see `limits`).
    pub compile_timeout: Duration,
    /// A hot deploy of a file the cache lacks serves from the baseline
    /// compiler's code first, then from the optimizing compiler's.
    pub tiered: bool,
    pub max_request_body_bytes: usize,
    pub max_response_body_bytes: usize,
    /// Runs before every route's own chain.
    pub global: Vec<PluginRef>,
    /// Settings of the plugins that have a `[plugin_limits.NAME]` table.
    pub settings: BTreeMap<String, PluginSettings>,
}

impl PluginsConfig {
    pub fn settings(&self, name: &str) -> PluginSettings {
        self.settings.get(name).cloned().unwrap_or_default()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.wasm"))
    }

    /// Every plugin named by a chain, each once, in first-use order.
    pub fn referenced<'a>(&'a self, routes: &'a [RouteConfig]) -> Vec<&'a str> {
        let mut out: Vec<&str> = Vec::new();
        let all = self
            .global
            .iter()
            .chain(routes.iter().flat_map(|r| r.plugins.iter()));
        for r in all {
            if !out.contains(&r.name.as_str()) {
                out.push(&r.name);
            }
        }
        out
    }
}

/// The compiled-plugin cache when the configuration names none:
/// `$XDG_CACHE_HOME/weir`, else `$HOME/.cache/weir`; without either the
/// cache is off.
fn default_cache_dir() -> Option<PathBuf> {
    let from = |var: &str| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    from("XDG_CACHE_HOME")
        .or_else(|| from("HOME").map(|h| h.join(".cache")))
        .map(|d| d.join("weir"))
}

impl Validator<'_> {
    pub(super) fn plugins(
        &mut self,
        raw: Option<&Spanned<toml::Table>>,
        settings: &BTreeMap<String, Spanned<toml::Table>>,
        routes: &[RouteConfig],
        upstreams: &HashMap<String, usize>,
    ) -> PluginsConfig {
        let (raw, at) = match raw {
            Some(t) => {
                let (raw, at) = self.section::<RawPlugins>(t, "plugins".into());
                (raw.unwrap_or_default(), at)
            }
            None => (
                RawPlugins::default(),
                At {
                    line: None,
                    key: "plugins".into(),
                },
            ),
        };
        let base = self.base();
        let dir = base.join(raw.dir.as_deref().unwrap_or("plugins"));
        let cache_dir = match (raw.cache, &raw.cache_dir) {
            (Some(false), Some(_)) => {
                self.report(
                    &field(&at, "cache"),
                    Problem::Invalid {
                        field: "cache",
                        reason:
                            "`cache = false` turns the cache off, so `cache_dir` cannot be set too"
                                .into(),
                    },
                );
                None
            }
            (Some(false), None) => None,
            (_, Some(d)) => Some(base.join(d)),
            (_, None) => default_cache_dir(),
        };
        let compile_timeout = raw
            .compile_timeout
            .unwrap_or(limits::DEFAULT_COMPILE_TIMEOUT);
        if !(limits::MIN_COMPILE_TIMEOUT..=limits::MAX_COMPILE_TIMEOUT).contains(&compile_timeout) {
            self.report(
                &field(&at, "compile_timeout"),
                Problem::OutOfRange {
                    field: "compile_timeout",
                    rule: format!(
                        "between {:?} and {:?}",
                        limits::MIN_COMPILE_TIMEOUT,
                        limits::MAX_COMPILE_TIMEOUT
                    ),
                },
            );
        }
        let mut body = |name: &'static str, v: Option<bytesize::ByteSize>| {
            let v = v.map_or(limits::DEFAULT_BODY_BYTES, |b| b.as_u64());
            self.range(&at, name, v, 1, limits::MAX_BODY_BYTES) as usize
        };
        let max_request_body_bytes = body("max_request_body_bytes", raw.max_request_body_bytes);
        let max_response_body_bytes = body("max_response_body_bytes", raw.max_response_body_bytes);
        let global = self.plugin_refs(&field(&at, "global"), &raw.global);

        let settings = self.plugin_limits(settings, upstreams);
        self.chain_lengths(routes, global.len());
        PluginsConfig {
            dir,
            cache_dir,
            compile_timeout,
            tiered: raw.tiered.unwrap_or(true),
            max_request_body_bytes,
            max_response_body_bytes,
            global,
            settings,
        }
    }

    /// The `[plugin_limits.NAME]` tables, by plugin name.
    fn plugin_limits(
        &mut self,
        tables: &BTreeMap<String, Spanned<toml::Table>>,
        upstreams: &HashMap<String, usize>,
    ) -> BTreeMap<String, PluginSettings> {
        let mut out = BTreeMap::new();
        for (name, t) in tables {
            let (raw, at) = self.section::<RawPluginSettings>(t, format!("plugin_limits.{name}"));
            if !self.name(&at, name) {
                continue;
            }
            if let Some(raw) = raw {
                out.insert(name.clone(), self.plugin_settings(raw, &at, upstreams));
            }
        }
        out
    }

    /// Each route's chain, with the global one, within the chain bound.
    fn chain_lengths(&mut self, routes: &[RouteConfig], global: usize) {
        for r in routes {
            if global + r.plugins.len() > limits::MAX_CHAIN {
                self.report(
                    &At {
                        line: None,
                        key: format!("route ({}).plugins", r.name),
                    },
                    Problem::OutOfRange {
                        field: "plugins",
                        rule: format!(
                            "at most {} entries together with the global chain",
                            limits::MAX_CHAIN
                        ),
                    },
                );
            }
        }
    }

    fn plugin_settings(
        &mut self,
        raw: RawPluginSettings,
        at: &At,
        upstreams: &HashMap<String, usize>,
    ) -> PluginSettings {
        let d = PluginSettings::default();
        let deadline = raw.deadline.unwrap_or(d.deadline);
        if deadline < limits::MIN_DEADLINE || deadline > limits::MAX_DEADLINE {
            self.report(
                &field(at, "deadline"),
                Problem::OutOfRange {
                    field: "deadline",
                    rule: format!(
                        "between {:?} and {:?}: a call blocks its worker for up to this long",
                        limits::MIN_DEADLINE,
                        limits::MAX_DEADLINE
                    ),
                },
            );
        }
        let memory = raw.memory.map_or(limits::DEFAULT_MEMORY, |m| m.as_u64());
        let memory = self.range(at, "memory", memory, limits::MIN_MEMORY, limits::MAX_MEMORY);
        let max_instances = raw.max_instances.unwrap_or(d.max_instances);
        let max_instances =
            self.range(at, "max_instances", max_instances, 1, limits::MAX_INSTANCES);
        let failure = match raw.failure.as_deref() {
            None | Some("closed") => FailurePolicy::Closed,
            Some("open") => FailurePolicy::Open,
            Some(other) => {
                self.report(
                    &field(at, "failure"),
                    Problem::Invalid {
                        field: "failure",
                        reason: format!("`{other}` is neither `closed` (fail the request) nor `open` (skip the plugin)"),
                    },
                );
                FailurePolicy::Closed
            }
        };
        let isolation = self.isolation(raw.isolation.as_deref(), at);
        let breaker_after = raw.breaker_after.unwrap_or(d.breaker_after);
        let breaker_after = self.range(
            at,
            "breaker_after",
            breaker_after,
            0,
            limits::MAX_BREAKER_AFTER,
        );
        let breaker_backoff = raw.breaker_backoff.unwrap_or(d.breaker_backoff);
        if !(limits::MIN_BREAKER_BACKOFF..=limits::MAX_BREAKER_BACKOFF).contains(&breaker_backoff) {
            self.report(
                &field(at, "breaker_backoff"),
                Problem::OutOfRange {
                    field: "breaker_backoff",
                    rule: format!(
                        "between {:?} and {:?}: how long a plugin stuck at its deadline is \
                         refused before it is tried again",
                        limits::MIN_BREAKER_BACKOFF,
                        limits::MAX_BREAKER_BACKOFF
                    ),
                },
            );
        }
        let cpu_share_percent = self.cpu_share(raw.cpu_share.as_deref(), at);
        let cpu_window = raw.cpu_window.unwrap_or(d.cpu_window);
        if !(limits::MIN_CPU_WINDOW..=limits::MAX_CPU_WINDOW).contains(&cpu_window) {
            self.report(
                &field(at, "cpu_window"),
                Problem::OutOfRange {
                    field: "cpu_window",
                    rule: format!(
                        "between {:?} and {:?}: how much unused CPU share a worker saves up",
                        limits::MIN_CPU_WINDOW,
                        limits::MAX_CPU_WINDOW
                    ),
                },
            );
        }
        let calls = self.call_settings(&raw, at, upstreams);
        let (fleet, fleet_fallback) =
            self.fleet_settings(raw.fleet.as_deref(), raw.fleet_fallback.as_deref(), at);
        PluginSettings {
            calls,
            fleet,
            fleet_fallback,
            deadline,
            memory_bytes: memory as usize,
            max_instances,
            failure,
            isolation,
            breaker_after,
            breaker_backoff,
            cpu_share_percent,
            cpu_window,
        }
    }

    /// `calls = [...]` and the bounds on the calls: each name must be an
    /// `[[upstream]]` of this configuration.
    fn call_settings(
        &mut self,
        raw: &RawPluginSettings,
        at: &At,
        upstreams: &HashMap<String, usize>,
    ) -> CallSettings {
        let d = CallSettings::default();
        let mut names: Vec<String> = Vec::new();
        let listed = raw.calls.as_deref().unwrap_or_default();
        if listed.len() > limits::MAX_CALL_UPSTREAMS {
            self.report(
                &field(at, "calls"),
                Problem::OutOfRange {
                    field: "calls",
                    rule: format!("at most {} upstreams", limits::MAX_CALL_UPSTREAMS),
                },
            );
        }
        for name in listed.iter().take(limits::MAX_CALL_UPSTREAMS) {
            if !upstreams.contains_key(name) {
                let quoted: String = name.chars().take(128).collect();
                self.report(
                    &field(at, "calls"),
                    Problem::Invalid {
                        field: "calls",
                        reason: format!(
                            "upstream `{}` is not defined: a plugin may call only an \
                             [[upstream]] of this configuration, by its `name`",
                            quoted.escape_debug()
                        ),
                    },
                );
            } else if !names.contains(name) {
                names.push(name.clone());
            }
        }
        let timeout = raw.call_timeout.unwrap_or(d.timeout);
        if !(limits::MIN_CALL_TIMEOUT..=limits::MAX_CALL_TIMEOUT).contains(&timeout) {
            self.report(
                &field(at, "call_timeout"),
                Problem::OutOfRange {
                    field: "call_timeout",
                    rule: format!(
                        "between {:?} and {:?}",
                        limits::MIN_CALL_TIMEOUT,
                        limits::MAX_CALL_TIMEOUT
                    ),
                },
            );
        }
        let max_per_request = raw.max_calls_per_request.unwrap_or(d.max_per_request);
        let max_per_request = self.range(
            at,
            "max_calls_per_request",
            max_per_request,
            1,
            limits::MAX_CALLS_PER_REQUEST,
        );
        let max_in_flight = raw.max_calls_in_flight.unwrap_or(d.max_in_flight);
        let max_in_flight = self.range(
            at,
            "max_calls_in_flight",
            max_in_flight,
            1,
            limits::MAX_CALLS_IN_FLIGHT,
        );
        let body = raw
            .max_call_body_bytes
            .map_or(limits::DEFAULT_MAX_CALL_BODY_BYTES, |b| b.as_u64());
        let body = self.range(
            at,
            "max_call_body_bytes",
            body,
            1,
            limits::MAX_CALL_BODY_BYTES,
        );
        CallSettings {
            upstreams: names,
            timeout,
            max_per_request,
            max_in_flight,
            max_body_bytes: body as usize,
        }
    }

    /// `cpu_share = "25%"`: a whole percentage from 1 to 100.
    fn cpu_share(&mut self, raw: Option<&str>, at: &At) -> u32 {
        let Some(text) = raw else {
            return limits::DEFAULT_CPU_SHARE_PERCENT;
        };
        let parsed = text
            .trim()
            .strip_suffix('%')
            .and_then(|n| n.trim().parse::<u32>().ok())
            .filter(|n| (1..=100).contains(n));
        parsed.unwrap_or_else(|| {
            self.report(
                &field(at, "cpu_share"),
                Problem::Invalid {
                    field: "cpu_share",
                    reason: format!(
                        "`{text}` is not a share of a worker's time: write a whole percentage \
                         from \"1%\" to \"100%\" (\"100%\" sets no limit)"
                    ),
                },
            );
            limits::DEFAULT_CPU_SHARE_PERCENT
        })
    }

    fn isolation(&mut self, raw: Option<&str>, at: &At) -> Isolation {
        match raw {
            None | Some("pooled") => Isolation::Pooled,
            Some("request") => Isolation::Request,
            Some(other) => {
                self.report(
                    &field(at, "isolation"),
                    Problem::Invalid {
                        field: "isolation",
                        reason: format!("`{other}` is neither `pooled` nor `request`"),
                    },
                );
                Isolation::Pooled
            }
        }
    }

    pub(super) fn plugin_refs(&mut self, at: &At, raw: &[RawPluginRef]) -> Vec<PluginRef> {
        let mut out = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let at = At {
                line: at.line,
                key: format!("{}[{i}]", at.key),
            };
            if !self.name(&at, &r.name) {
                continue;
            }
            let config = match &r.config {
                None => "{}".to_owned(),
                Some(v) => serde_json::to_string(v).unwrap_or_else(|_| "{}".into()),
            };
            if config.len() > limits::MAX_CONFIG_BYTES {
                self.report(
                    &field(&at, "config"),
                    Problem::OutOfRange {
                        field: "config",
                        rule: format!("at most {} bytes as JSON", limits::MAX_CONFIG_BYTES),
                    },
                );
                continue;
            }
            out.push(PluginRef {
                name: r.name.clone(),
                config,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests;
