//! Keys from a JWKS endpoint: fetched through an outbound call to an
//! upstream of the gateway, kept in shared state so every instance and
//! request uses one copy, and refreshed without holding requests up.
//!
//! Shared state holds, under a prefix of the endpoint's own (two routes
//! with different endpoints never mix their keys):
//!
//! * `doc`: the usable keys of the last good fetch ([`KeySet`] as JSON,
//!   tagged with an id of its content);
//! * `meta`: that id and when it was fetched (`"<id> <ms>"`), small enough
//!   to read whenever an instance needs to know whether its copy is current;
//! * `lease`: a counter that lives `min_refresh_interval`: the request
//!   that creates it may fetch, the others may not (one fetch per interval
//!   over every instance, for unknown key ids and stale sets alike);
//! * `failed`: present for `min_refresh_interval` after a failed fetch.
//!
//! Each instance keeps its own copy of the set, its keys parsed on first
//! use, so a request whose `kid` it knows, while the copy is fresh, makes no
//! host call at all. The copy is compared with `meta` when it goes stale
//! or lacks the `kid` asked for (another instance may have fetched since).
//!
//! What a request gets ([`Lookup`]): a known key, fresh → that key; known
//! but stale (older than `refresh`) → that key, and when the lease allows,
//! a refresh call in the background; unknown → when the lease allows, a
//! fetch the request waits for; else refused as an unknown key. Before any
//! set was fetched, the lease does not hold requests back (each may fetch,
//! so the first requests after a start are not refused while one fetch is
//! under way), but a failed fetch does, for `min_refresh_interval`: an
//! identity provider that is down is not called by every request.

use std::rc::Rc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use weir_sdk::calls::{Call, CallError, CallResponse, CallResult};
use weir_sdk::state;

use crate::jwk::{Jwk, KeySet, MAX_KEYS, parse_jwks};
use crate::keys::Key;

/// The tag of this plugin's JWKS calls.
pub const CALL_TAG: &str = "jwks";
/// The shortest and longest `refresh` accepted.
pub const REFRESH_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(24 * 3600));
/// The shortest and longest `min_refresh_interval` accepted.
pub const MIN_REFRESH_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(3600));
/// The longest `timeout` accepted (the gateway's `call_timeout` caps it too).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// The `jwks` table of the configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksConfig {
    /// The upstream serving the key set; the gateway must allow this plugin
    /// to call it (`[plugin_limits.jwt-auth] calls`).
    pub upstream: String,
    /// The path (and query) of the key set.
    #[serde(default = "default_path")]
    pub path: String,
    /// How old a fetched set may get before it is refreshed (in the
    /// background: requests keep using it meanwhile).
    #[serde(default = "default_refresh", with = "humantime_serde")]
    pub refresh: Duration,
    /// The least time between two fetches: an unknown `kid` fetches the set
    /// at most this often, and a failed fetch is not retried sooner.
    #[serde(default = "default_min_refresh", with = "humantime_serde")]
    pub min_refresh_interval: Duration,
    /// The fetch's own time limit (the gateway's `call_timeout` caps it).
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

fn default_path() -> String {
    "/.well-known/jwks.json".to_owned()
}

fn default_refresh() -> Duration {
    Duration::from_secs(300)
}

fn default_min_refresh() -> Duration {
    Duration::from_secs(10)
}

/// What a key lookup found.
pub enum Lookup {
    /// The key with that id.
    Found(Rc<Key>),
    /// A fetch was started; the request waits for it.
    Fetching,
    /// No key with that id, and no fetch now.
    Unknown,
    /// No key set could be had: the fetch failed, or failed recently.
    Unavailable,
}

/// The JWKS endpoint and this instance's copy of its keys.
pub struct Jwks {
    upstream: String,
    path: String,
    refresh_ms: u64,
    min_refresh: Duration,
    timeout: Option<Duration>,
    keys: StateKeys,
    copy: Option<Cached>,
}

/// The shared-state keys of one endpoint.
struct StateKeys {
    doc: String,
    meta: String,
    lease: String,
    failed: String,
}

/// This instance's copy of the key set.
struct Cached {
    id: String,
    fetched_at_ms: u64,
    keys: Vec<(String, Slot)>,
}

/// A key of the copy: parsed on first use.
enum Slot {
    Jwk(Box<Jwk>),
    Key(Rc<Key>),
    /// Every key was checked when fetched, but a set left in shared state
    /// by another version of the plugin may hold one this version refuses;
    /// kept so it is not parsed again.
    Unusable,
}

/// The `doc` value.
#[derive(Serialize, Deserialize)]
struct Doc {
    id: String,
    #[serde(flatten)]
    set: KeySet,
}

impl Jwks {
    /// Checks the configuration.
    pub fn new(config: JwksConfig) -> Result<Self, String> {
        if config.upstream.is_empty() {
            return Err("jwks.upstream: name the upstream serving the key set".to_owned());
        }
        // The method is fixed and no header comes from the configuration:
        // only the path can make the call invalid.
        if let Err(CallError::Invalid(why) | CallError::NotAllowed(why)) =
            Call::get(config.upstream.as_str(), config.path.as_str()).check()
        {
            return Err(format!("jwks.path: {why}"));
        }
        let within = |name: &str, value: Duration, (min, max): (Duration, Duration)| {
            if value < min || value > max {
                Err(format!(
                    "jwks.{name}: between {} and {}",
                    humantime::format_duration(min),
                    humantime::format_duration(max)
                ))
            } else {
                Ok(())
            }
        };
        within("refresh", config.refresh, REFRESH_RANGE)?;
        within(
            "min_refresh_interval",
            config.min_refresh_interval,
            MIN_REFRESH_RANGE,
        )?;
        if config.min_refresh_interval > config.refresh {
            return Err("jwks.min_refresh_interval: at most jwks.refresh".to_owned());
        }
        if let Some(timeout) = config.timeout {
            within("timeout", timeout, (Duration::from_millis(1), MAX_TIMEOUT))?;
        }
        // Shared state is the plugin's, over every route it serves: a prefix
        // of the endpoint's keeps two endpoints' keys apart.
        let digest = Sha256::digest(format!("{}\n{}", config.upstream, config.path).as_bytes());
        let prefix = format!("jwks:{}:", hex(&digest[..6]));
        Ok(Self {
            refresh_ms: millis(config.refresh),
            min_refresh: config.min_refresh_interval,
            timeout: config.timeout,
            keys: StateKeys {
                doc: format!("{prefix}doc"),
                meta: format!("{prefix}meta"),
                lease: format!("{prefix}lease"),
                failed: format!("{prefix}failed"),
            },
            upstream: config.upstream,
            path: config.path,
            copy: None,
        })
    }

    /// `min_refresh_interval`: how long a client told "unavailable" should
    /// wait before trying again.
    pub fn retry_after(&self) -> Duration {
        self.min_refresh
    }

    /// The key with id `kid` at `now_ms`. With `may_fetch` false (the
    /// request already waited for a fetch), an unknown id is
    /// [`Lookup::Unknown`].
    pub fn key(&mut self, kid: &str, now_ms: u64, may_fetch: bool) -> Lookup {
        let known = self.copy.as_ref().is_some_and(|copy| copy.has(kid));
        if !known || self.is_stale(now_ms) {
            self.sync();
        }
        if let Some(key) = self.copy.as_mut().and_then(|copy| copy.key(kid)) {
            if self.is_stale(now_ms) && self.take_lease() {
                // Not waited for: the result comes to the background phase.
                self.start_fetch();
            }
            return Lookup::Found(key);
        }
        if !may_fetch {
            return Lookup::Unknown;
        }
        if self.copy.is_none() {
            // Nothing fetched yet: fetch, unless the last try failed just now.
            if state::get(&self.keys.failed).is_some() {
                return Lookup::Unavailable;
            }
            self.take_lease();
        } else if !self.take_lease() {
            return Lookup::Unknown;
        }
        if self.start_fetch() {
            Lookup::Fetching
        } else {
            Lookup::Unavailable
        }
    }

    /// Takes in the results of this plugin's calls: stores a fetched key
    /// set, or notes the failure. `Err` says why the fetch failed.
    pub fn absorb(&mut self, results: Vec<CallResult>, now_ms: u64) -> Result<(), String> {
        let outcome = match results.into_iter().find(|r| r.tag == CALL_TAG) {
            None => Err("no JWKS call result".to_owned()),
            Some(result) => result
                .outcome
                .map_err(|e| e.to_string())
                .and_then(|resp| self.usable_set(&resp)),
        };
        match outcome {
            Ok(set) => {
                self.store(set, now_ms);
                Ok(())
            }
            Err(why) => {
                self.failed(&why);
                Err(why)
            }
        }
    }

    /// The usable keys of the endpoint's answer, or why there are none.
    fn usable_set(&self, resp: &CallResponse) -> Result<KeySet, String> {
        if !resp.is_success() {
            return Err(format!("it answered {}", resp.status));
        }
        let (set, skipped) = parse_jwks(&resp.body)?;
        if skipped.unusable > 0 || skipped.over_limit > 0 {
            weir_sdk::log::warn(&format!(
                "JWKS from upstream `{}`: {} unusable key(s) skipped, {} past the first {} ignored",
                self.upstream, skipped.unusable, skipped.over_limit, MAX_KEYS
            ));
        }
        if set.keys.is_empty() {
            // Keep the keys we have rather than drop them all.
            return Err("it holds no usable signature key".to_owned());
        }
        Ok(set)
    }

    fn is_stale(&self, now_ms: u64) -> bool {
        self.copy
            .as_ref()
            .is_none_or(|copy| now_ms.saturating_sub(copy.fetched_at_ms) >= self.refresh_ms)
    }

    /// Brings this instance's copy up to shared state's.
    fn sync(&mut self) {
        let Some(meta) = state::get(&self.keys.meta) else {
            return;
        };
        let Some((id, fetched_at_ms)) = std::str::from_utf8(&meta)
            .ok()
            .and_then(|m| m.split_once(' '))
            .and_then(|(id, at)| Some((id, at.parse::<u64>().ok()?)))
        else {
            return;
        };
        match &mut self.copy {
            Some(copy) if copy.id == id => copy.fetched_at_ms = fetched_at_ms,
            _ => {
                let doc = state::get(&self.keys.doc)
                    .and_then(|doc| serde_json::from_slice::<Doc>(&doc).ok());
                if let Some(doc) = doc {
                    self.copy = Some(Cached::new(doc.id, fetched_at_ms, doc.set));
                }
            }
        }
    }

    /// Whether this request may fetch: the first to ask in an interval.
    fn take_lease(&self) -> bool {
        state::increment_with_ttl(&self.keys.lease, 1, self.min_refresh).is_ok_and(|n| n == 1)
    }

    /// Starts the fetch; `false` (logged, and noted as a failure) if the
    /// gateway refused to start it.
    fn start_fetch(&self) -> bool {
        let mut call = Call::get(self.upstream.as_str(), self.path.as_str())
            .header("accept", "application/json")
            .tag(CALL_TAG);
        if let Some(timeout) = self.timeout {
            call = call.timeout(timeout);
        }
        match call.start() {
            Ok(_) => true,
            Err(e) => {
                self.failed(&e.to_string());
                false
            }
        }
    }

    fn failed(&self, why: &str) {
        weir_sdk::metrics::counter_add("jwks_fetch_failed", 1);
        weir_sdk::log::warn(&format!(
            "JWKS fetch from upstream `{}` failed: {why}; keys already fetched stay in use",
            self.upstream
        ));
        let _ = state::set(&self.keys.failed, b"1", Some(self.min_refresh));
    }

    /// Keeps a fetched set in shared state and in this instance's copy.
    fn store(&mut self, set: KeySet, now_ms: u64) {
        weir_sdk::metrics::counter_add("jwks_fetched", 1);
        let content = serde_json::to_vec(&set).expect("a key set serializes");
        let id = hex(&Sha256::digest(&content)[..8]);
        let doc = Doc { id, set };
        let stored = serde_json::to_vec(&doc)
            .map_err(|e| e.to_string())
            .and_then(|bytes| state::set(&self.keys.doc, &bytes, None))
            .and_then(|()| {
                let meta = format!("{} {now_ms}", doc.id);
                state::set(&self.keys.meta, meta.as_bytes(), None)
            });
        if let Err(e) = stored {
            // This instance still uses it; others fetch their own.
            weir_sdk::log::warn(&format!("JWKS not kept in shared state: {e}"));
        }
        state::delete(&self.keys.failed);
        let same = self.copy.as_ref().is_some_and(|copy| copy.id == doc.id);
        match &mut self.copy {
            Some(copy) if same => copy.fetched_at_ms = now_ms,
            _ => self.copy = Some(Cached::new(doc.id, now_ms, doc.set)),
        }
    }
}

impl Cached {
    fn new(id: String, fetched_at_ms: u64, set: KeySet) -> Self {
        let keys = set
            .keys
            .into_iter()
            .filter_map(|jwk| Some((jwk.kid.clone()?, Slot::Jwk(Box::new(jwk)))))
            .collect();
        Self {
            id,
            fetched_at_ms,
            keys,
        }
    }

    fn has(&self, kid: &str) -> bool {
        self.keys.iter().any(|(k, _)| k == kid)
    }

    fn key(&mut self, kid: &str) -> Option<Rc<Key>> {
        let slot = &mut self.keys.iter_mut().find(|(k, _)| k == kid)?.1;
        if let Slot::Jwk(jwk) = slot {
            *slot = match jwk.to_key() {
                Ok(key) => Slot::Key(Rc::new(key)),
                Err(_) => Slot::Unusable,
            };
        }
        match slot {
            Slot::Key(key) => Some(key.clone()),
            _ => None,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
