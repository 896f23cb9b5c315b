//! What the admin views show and `control` records: each attempt to apply
//! a configuration, each plugin file's deployments with its breakers and
//! CPU shares, and the TLS listeners' certificates and handshake counts.

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use super::AdminState;
use crate::plugin::{NOT_NAMED, PluginError};

/// Entries in `/admin/plugins` (plugins the configuration names always
/// have one; stray files in the folder fill the rest).
pub const MAX_PLUGIN_ENTRIES: usize = 1024;

/// One attempt to apply a configuration (start-up or reload).
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// RFC 3339 time of the attempt.
    pub at: String,
    /// What started it: `startup`, `file-change` or `sighup`.
    pub trigger: String,
    /// `applied` or `rejected`.
    pub outcome: &'static str,
    /// Every problem, for a rejected attempt.
    pub errors: Vec<String>,
    /// Changed settings that only a restart applies.
    pub needs_restart: Vec<String>,
    /// sha256 of the file as read.
    pub sha256: Option<String>,
}

/// What the admin views show about configuration.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConfigStatus {
    pub path: String,
    /// sha256 of the file serving now.
    pub sha256: String,
    /// When the serving configuration was applied (RFC 3339).
    pub applied_at: String,
    pub last_attempt: Option<Attempt>,
}

/// One attempt to put a plugin file in service.
#[derive(Debug, Clone, Serialize)]
pub struct PluginAttempt {
    /// RFC 3339 time of the attempt.
    pub at: String,
    /// What started it: `startup`, `file-change` or `config-reload`.
    pub trigger: &'static str,
    /// sha256 of the file as read, when it could be read.
    pub sha256: Option<String>,
    /// `deployed`; `rejected` (nothing changed); `removed` (the file is
    /// gone, the last good version keeps serving); `ignored` (no chain
    /// names the plugin).
    pub outcome: &'static str,
    /// For a rejected attempt: `read`, `validate`, `compile`, `link`,
    /// `init` or `timeout`.
    pub step: Option<&'static str>,
    pub error: Option<String>,
}

impl PluginAttempt {
    /// A version that now serves.
    pub fn deployed(trigger: &'static str, sha256: &str) -> PluginAttempt {
        PluginAttempt::new(trigger, "deployed", Some(sha256.to_owned()), None, None)
    }

    /// A file refused at `e.step`; nothing changed.
    pub fn rejected(trigger: &'static str, e: &PluginError) -> PluginAttempt {
        PluginAttempt::new(
            trigger,
            "rejected",
            e.sha256.clone(),
            Some(e.step.as_str()),
            Some(e.reason.clone()),
        )
    }

    /// The file is gone; the last good version keeps serving.
    pub fn removed(trigger: &'static str) -> PluginAttempt {
        PluginAttempt::new(
            trigger,
            "removed",
            None,
            None,
            Some(
                "the file was removed; the last good version keeps serving until no chain names the plugin"
                    .into(),
            ),
        )
    }

    /// A file that no chain names.
    pub fn ignored(trigger: &'static str) -> PluginAttempt {
        PluginAttempt::new(trigger, "ignored", None, None, Some(NOT_NAMED.into()))
    }

    fn new(
        trigger: &'static str,
        outcome: &'static str,
        sha256: Option<String>,
        step: Option<&'static str>,
        error: Option<String>,
    ) -> PluginAttempt {
        PluginAttempt {
            at: now_rfc3339(),
            trigger,
            sha256,
            outcome,
            step,
            error,
        }
    }
}

/// What the admin view shows about one plugin.
#[derive(Debug, Clone, Serialize)]
pub struct PluginStatus {
    pub name: String,
    pub file: String,
    /// sha256 of the file whose version serves; none when none does.
    pub sha256: Option<String>,
    /// When the serving version was deployed (RFC 3339).
    pub deployed_at: Option<String>,
    /// Which compiler built the code serving: `optimized`, or `baseline`
    /// for the moments after a deploy of an uncached file.
    pub tier: Option<&'static str>,
    pub last_attempt: Option<PluginAttempt>,
    /// Its breakers on repeated deadline traps, read when the view is
    /// served.
    pub breaker: BreakerView,
    /// Its CPU shares, read when the view is served.
    pub cpu_share: ShareView,
}

/// The breakers of a serving plugin's slots (one per configuration), summed
/// when shown: `open_workers` (workers whose breaker is open or probing
/// now, counted once per configuration), `opened` (times one opened) and
/// `refused` (calls refused at once), since the slot was made.
#[derive(Debug, Clone, Default)]
pub struct BreakerView(Vec<Arc<crate::plugin::breaker::BreakerStats>>);

impl Serialize for BreakerView {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        use std::sync::atomic::Ordering::Relaxed;
        let sum = |f: &dyn Fn(&crate::plugin::breaker::BreakerStats) -> u64| {
            self.0.iter().map(|b| f(b)).sum::<u64>()
        };
        let mut out = s.serialize_struct("BreakerView", 3)?;
        out.serialize_field("open_workers", &sum(&|b| b.open.load(Relaxed) as u64))?;
        out.serialize_field("opened", &sum(&|b| b.opened.load(Relaxed)))?;
        out.serialize_field("refused", &sum(&|b| b.refused.load(Relaxed)))?;
        out.end()
    }
}

/// The CPU shares of a serving plugin's slots, summed when shown:
/// `percent` and `window_ms` (the settings), `charged_ms` (worker time
/// charged to its calls, sampled at epoch ticks), `spent` (times a
/// worker's share ran out) and `refused` (calls refused at once), since
/// the slot was made.
#[derive(Debug, Clone, Default)]
pub struct ShareView(Vec<Arc<crate::plugin::share::ShareStats>>);

impl Serialize for ShareView {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        use std::sync::atomic::Ordering::Relaxed;
        let sum = |f: &dyn Fn(&crate::plugin::share::ShareStats) -> u64| {
            self.0.iter().map(|b| f(b)).sum::<u64>()
        };
        let settings = self.0.iter().find_map(|x| x.settings);
        let mut out = s.serialize_struct("ShareView", 5)?;
        out.serialize_field("percent", &settings.map(|x| x.percent))?;
        out.serialize_field("window_ms", &settings.map(|x| x.window.as_millis() as u64))?;
        out.serialize_field("charged_ms", &sum(&|b| b.charged_ms.load(Relaxed)))?;
        out.serialize_field("spent", &sum(&|b| b.spent.load(Relaxed)))?;
        out.serialize_field("refused", &sum(&|b| b.refused.load(Relaxed)))?;
        out.end()
    }
}

/// What the admin views show about plugins.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PluginsStatus {
    /// The watched plugin folder.
    pub dir: String,
    /// Where compiled plugins are cached; none when caching is off.
    pub cache_dir: Option<String>,
    /// Plugins loaded from the cache and compiled, by the serving engine.
    pub cache: Option<crate::plugin::CacheStats>,
    pub plugins: std::collections::BTreeMap<String, PluginStatus>,
}

impl PluginsStatus {
    /// Records the versions serving now; plugins no chain names any more
    /// keep their last attempt but show no version.
    pub fn set_serving(&mut self, plugins: &crate::plugin::Plugins) {
        if let Some(pc) = plugins.config() {
            self.dir = pc.dir.display().to_string();
        }
        self.cache_dir = plugins.cache_dir().map(|d| d.display().to_string());
        self.cache = plugins.cache_stats();
        let serving = plugins.serving();
        for status in self.plugins.values_mut() {
            if !serving.iter().any(|s| s.name == status.name) {
                status.sha256 = None;
                status.deployed_at = None;
                status.tier = None;
                status.breaker = BreakerView::default();
                status.cpu_share = ShareView::default();
            }
        }
        for s in serving {
            let entry = self
                .plugins
                .entry(s.name.clone())
                .or_insert_with(|| PluginStatus {
                    name: s.name.clone(),
                    file: String::new(),
                    sha256: None,
                    deployed_at: None,
                    tier: None,
                    last_attempt: None,
                    breaker: BreakerView::default(),
                    cpu_share: ShareView::default(),
                });
            entry.file = s.path.display().to_string();
            entry.tier = Some(s.tier.as_str());
            entry.sha256 = Some(s.sha256);
            entry.deployed_at = Some(rfc3339(s.deployed_at));
            entry.breaker = BreakerView(plugins.breaker_stats(&s.name));
            entry.cpu_share = ShareView(plugins.share_stats(&s.name));
        }
    }

    /// Records an attempt for plugin `name` read from `file`. Plugins no
    /// chain names get an entry only while there are fewer than
    /// [`MAX_PLUGIN_ENTRIES`], so a folder full of stray files cannot grow
    /// this view without bound.
    pub fn record(&mut self, name: &str, file: &std::path::Path, attempt: PluginAttempt) {
        if !self.plugins.contains_key(name) && self.plugins.len() >= MAX_PLUGIN_ENTRIES {
            return;
        }
        let entry = self
            .plugins
            .entry(name.to_owned())
            .or_insert_with(|| PluginStatus {
                name: name.to_owned(),
                file: file.display().to_string(),
                sha256: None,
                deployed_at: None,
                tier: None,
                last_attempt: None,
                breaker: BreakerView::default(),
                cpu_share: ShareView::default(),
            });
        // Counted here, where every attempt is recorded (start-up, a
        // reload, a file change). An ignored file's name is no configured
        // name, so it makes no label.
        if attempt.outcome != "ignored" {
            crate::metrics::global().plugin(name).attempt(
                attempt.trigger,
                attempt.outcome,
                attempt.step,
            );
        }
        entry.last_attempt = Some(attempt);
    }
}

/// The JSON shape of `GET /admin/plugins`: plugins as a list, by name.
#[derive(Serialize)]
pub(super) struct PluginsView<'a> {
    dir: &'a str,
    cache_dir: Option<&'a str>,
    cache: Option<crate::plugin::CacheStats>,
    plugins: Vec<&'a PluginStatus>,
}

impl PluginsStatus {
    pub(super) fn view(&self) -> PluginsView<'_> {
        PluginsView {
            dir: &self.dir,
            cache_dir: self.cache_dir.as_deref(),
            cache: self.cache,
            plugins: self.plugins.values().collect(),
        }
    }
}

/// The TLS listeners as `/admin/config` and `/admin/tls` show them: per
/// listener, the certificates serving (file, subject, names, validity,
/// days left), the client CA bundle's, and how handshakes ended. Never a
/// key.
pub(super) fn tls_view(state: &AdminState) -> serde_json::Value {
    let now = SystemTime::now();
    let cert = |i: &crate::tls::certs::CertInfo| {
        let mut v = serde_json::to_value(i).unwrap_or_default();
        v["expires_in_days"] = (i.expires_in(now).as_secs() / 86_400).into();
        v
    };
    let mut out = serde_json::Map::new();
    for (name, t) in &state.tls {
        let current = t.current.load();
        out.insert(
            name.clone(),
            serde_json::json!({
                "certificates": current.certs.infos().map(cert).collect::<Vec<_>>(),
                "client_cas": current.client_cas.iter().map(cert).collect::<Vec<_>>(),
                "handshakes": &t.stats,
            }),
        );
    }
    serde_json::Value::Object(out)
}

pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}
