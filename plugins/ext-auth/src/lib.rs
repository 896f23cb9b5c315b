//! `ext-auth`: forward authentication. Before a request goes upstream, an
//! authorization service (an upstream of the gateway) is asked about it,
//! as nginx's `auth_request` and Traefik's ForwardAuth do: the service gets
//! the request's chosen headers (`request_headers`, e.g. `authorization`,
//! `cookie`) and `x-forwarded-method` and `x-forwarded-uri` (the method,
//! and the path and query as they go upstream, after the route's rewrite),
//! and decides.
//!
//! * **2xx:** allowed. The service's `upstream_headers` (e.g. `x-user`,
//!   `x-tenant`) are set on the forwarded request, and its
//!   `consumer_header`, when configured, names the request in the access
//!   log (the field [`CONSUMER_FIELD`]). Copies of `upstream_headers` the
//!   client sent are always removed first, so the upstream can trust them.
//! * **Any other status:** refused with the service's answer: its status
//!   (e.g. 401, 403, or a 302 to a login page), its `client_headers` (by
//!   default `www-authenticate`; add `location` or `set-cookie` for a login
//!   flow), and its body with its `content-type` when the body is at most
//!   [`MAX_REFUSAL_BODY_BYTES`] (a longer one is dropped, not cut).
//! * **No answer** (unreachable, timed out, not allowed to call it, an
//!   answer over the gateway's call body cap): `failure_status` (503 by
//!   default) with a short JSON body, and a warning in the log.
//!
//! **Decision cache.** Decisions are kept at two levels. The shared one
//! is the plugin's shared state, seen by every instance and request, keyed
//! by a SHA-256 digest of the credential headers' values
//! (`credential_headers`, by default the `request_headers`), never the
//! credentials in clear ([`key`]); each entry records when it expires
//! ([`entry`]). Before it, each instance keeps a memo ([`memo`]) of the
//! credentials it has seen (by a keyed 128-bit SipHash): their key and the
//! allowed decision with that same expiry, so a repeated credential costs
//! neither SHA-256 nor a shared-state read, and is never let through past
//! the shared entry's expiry. A request whose credentials were allowed
//! within `cache_ttl` is let through with the cached headers, without a
//! call; refusals are kept (in shared state only) for `deny_ttl` (by
//! default not at all: a client that just logged in should not stay
//! refused), and 5xx answers never. A request with none of the
//! credential headers is always asked about and its answer not kept: one
//! "anonymous" entry would hand every such request the first one's answer,
//! whatever else (the URI) it carries. The cache assumes the service's
//! answer depends on the credentials alone: when it also depends on the
//! method or URI, set `cache_ttl = "0s"`.
//!
//! The phase is the request phase only; the call is waited for, holding no
//! instance. Nothing is logged that holds a credential: warnings name the
//! service and what failed.

pub mod entry;
pub mod key;
pub mod memo;

use std::time::Duration;

use serde::Deserialize;
use weir_sdk::calls::{
    Call, CallError, CallResponse, CallResult, MAX_CALL_HEADER_BYTES, MAX_CALL_HEADER_FIELDS,
};
use weir_sdk::fleet::FleetResult;
use weir_sdk::{Action, Phases, Plugin, Request, state, validate};

use entry::{Entry, encode};
use key::{CacheKey, Keys};
use memo::{Allowed, Found, Memo};

/// The access-log field an allowed request's consumer is named in.
pub const CONSUMER_FIELD: &str = "consumer";
/// The most names each header list of the configuration may hold.
pub const MAX_HEADER_NAMES: usize = 32;
/// The longest `cache_ttl` and `deny_ttl`: a revoked credential is let
/// through at most this long.
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// The longest `timeout` accepted (the gateway's `call_timeout` caps it too).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest refusal body passed to the client, in bytes.
pub const MAX_REFUSAL_BODY_BYTES: usize = 8 * 1024;
/// The most header fields taken from the service's answer (onto the
/// request, or onto a refusal).
pub const MAX_COPIED_FIELDS: usize = 64;
/// The largest decision kept in the cache, in bytes; a larger one is used
/// but not kept.
pub const MAX_ENTRY_BYTES: usize = 16 * 1024;
/// The header telling the service the request's method.
pub const FORWARDED_METHOD: &str = "x-forwarded-method";
/// The header telling the service the request's path and query.
pub const FORWARDED_URI: &str = "x-forwarded-uri";

/// Configuration, as written in the route's `config` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The authorization service: an upstream of the gateway that this
    /// plugin may call (`[plugin_limits.ext-auth] calls`).
    pub upstream: String,
    /// The path (and query) asked on the service.
    #[serde(default = "default_path")]
    pub path: String,
    /// The method of the call.
    #[serde(default = "default_method")]
    pub method: String,
    /// Request headers sent to the service (every value of each).
    #[serde(default = "default_request_headers")]
    pub request_headers: Vec<String>,
    /// Request headers whose values key the cache; by default
    /// `request_headers`.
    #[serde(default)]
    pub credential_headers: Option<Vec<String>>,
    /// Headers of an allowing answer set on the forwarded request.
    #[serde(default)]
    pub upstream_headers: Vec<String>,
    /// Headers of a refusing answer passed to the client.
    #[serde(default = "default_client_headers")]
    pub client_headers: Vec<String>,
    /// A header of an allowing answer naming the consumer in the access log.
    #[serde(default)]
    pub consumer_header: Option<String>,
    /// How long an allowed decision is kept; `"0s"` keeps none.
    #[serde(default = "default_cache_ttl", with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// How long a refusal (other than 5xx) is kept; `"0s"` (the default)
    /// keeps none.
    #[serde(default, with = "humantime_serde")]
    pub deny_ttl: Duration,
    /// The call's own time limit (the gateway's `call_timeout` caps it).
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// The status answered when the service gives no answer (500..=599).
    #[serde(default = "default_failure_status")]
    pub failure_status: u16,
}

fn default_path() -> String {
    "/".to_owned()
}

fn default_method() -> String {
    "GET".to_owned()
}

fn default_request_headers() -> Vec<String> {
    vec!["authorization".to_owned()]
}

fn default_client_headers() -> Vec<String> {
    vec!["www-authenticate".to_owned()]
}

fn default_cache_ttl() -> Duration {
    Duration::from_secs(60)
}

fn default_failure_status() -> u16 {
    503
}

/// The plugin: the validated configuration.
pub struct ExtAuth {
    upstream: String,
    path: String,
    method: String,
    request_headers: Vec<String>,
    credential_headers: Vec<String>,
    upstream_headers: Vec<String>,
    client_headers: Vec<String>,
    consumer_header: Option<String>,
    allow_ttl: Option<Duration>,
    deny_ttl: Option<Duration>,
    timeout: Option<Duration>,
    failure_status: u16,
    keys: Keys,
    memo: Memo,
    /// The request's `credential_headers` values, read once per phase
    /// call and dropped at its end.
    credentials: Vec<Vec<String>>,
    /// For each of `request_headers`, its index among
    /// `credential_headers`: its values are read already.
    sent_credentials: Vec<Option<usize>>,
}

impl Plugin for ExtAuth {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.upstream.is_empty() {
            return Err("upstream: name the authorization service's upstream".to_owned());
        }
        let method = config.method.to_ascii_uppercase();
        if let Err(CallError::Invalid(why) | CallError::NotAllowed(why)) = Call::new(
            method.as_str(),
            config.upstream.as_str(),
            config.path.as_str(),
        )
        .check()
        {
            return Err(format!("method or path: {why}"));
        }
        let request_headers = header_list("request_headers", config.request_headers)?;
        if let Some(name) = request_headers
            .iter()
            .find(|n| *n == FORWARDED_METHOD || *n == FORWARDED_URI)
        {
            return Err(format!(
                "request_headers: {name:?} is always sent, set from the request itself"
            ));
        }
        let credential_headers = match config.credential_headers {
            Some(names) => header_list("credential_headers", names)?,
            None => request_headers.clone(),
        };
        let upstream_headers = header_list("upstream_headers", config.upstream_headers)?;
        let client_headers = header_list("client_headers", config.client_headers)?;
        let consumer_header = config
            .consumer_header
            .map(|name| {
                validate::header_name(&name)
                    .map(|()| name.to_ascii_lowercase())
                    .map_err(|e| format!("consumer_header: {e}"))
            })
            .transpose()?;
        let ttl = |name: &str, ttl: Duration| {
            if ttl > MAX_TTL {
                return Err(format!(
                    "{name}: at most {} (a revoked credential is let through that long)",
                    humantime::format_duration(MAX_TTL)
                ));
            }
            Ok((!ttl.is_zero()).then_some(ttl))
        };
        let allow_ttl = ttl("cache_ttl", config.cache_ttl)?;
        let deny_ttl = ttl("deny_ttl", config.deny_ttl)?;
        if let Some(timeout) = config.timeout
            && (timeout.is_zero() || timeout > MAX_TIMEOUT)
        {
            return Err(format!(
                "timeout: more than 0 and at most {}",
                humantime::format_duration(MAX_TIMEOUT)
            ));
        }
        if !(500..=599).contains(&config.failure_status) {
            return Err(
                "failure_status: 500..=599 (the service's failure is the gateway's side)"
                    .to_owned(),
            );
        }
        // Whatever shapes the service's answer is part of every cache key,
        // so two routes asking differently never share a decision.
        let identity = format!(
            "{:?}",
            (
                &config.upstream,
                &method,
                &config.path,
                &request_headers,
                &credential_headers,
                &upstream_headers,
                &client_headers,
                &consumer_header,
            )
        );
        Ok(Self {
            keys: Keys::new(&identity),
            memo: Memo::new(
                (weir_sdk::random::u64(), weir_sdk::random::u64()),
                allow_ttl.map_or(0, millis),
            ),
            credentials: vec![Vec::new(); credential_headers.len()],
            sent_credentials: request_headers
                .iter()
                .map(|name| credential_headers.iter().position(|c| c == name))
                .collect(),
            upstream: config.upstream,
            path: config.path,
            method,
            request_headers,
            credential_headers,
            upstream_headers,
            client_headers,
            consumer_header,
            allow_ttl,
            deny_ttl,
            timeout: config.timeout,
            failure_status: config.failure_status,
        })
    }

    fn phases(&self) -> Phases {
        Phases::REQUEST
    }

    fn on_request(&mut self, req: &mut Request<'_>) -> Action {
        // Only the service may say who the request is.
        for name in &self.upstream_headers {
            req.remove_header(name);
        }
        let action = self.decide(req);
        self.forget_credentials();
        action
    }

    fn on_request_calls(
        &mut self,
        req: &mut Request<'_>,
        results: Vec<CallResult>,
        _fleet: Vec<FleetResult>,
    ) -> Action {
        let Some(result) = results.into_iter().next() else {
            return self.failure("the call gave no result");
        };
        let key = CacheKey::parse(&result.tag);
        let action = match result.outcome {
            Ok(resp) if resp.is_success() => self.allowed(req, &resp, key),
            Ok(resp) if resp.status >= 300 => self.refused(&resp, key),
            Ok(resp) => self.failure(&format!("it answered {}", resp.status)),
            Err(e) => self.failure(&failure_reason(&e)),
        };
        self.forget_credentials();
        action
    }
}

impl ExtAuth {
    /// Answers from the memo, else from shared state, else asks.
    fn decide(&mut self, req: &mut Request<'_>) -> Action {
        if !self.read_credentials(req) {
            let read = self.caching();
            return self.ask(req, None, read);
        }
        let fingerprint = self.memo.fingerprint(&self.credentials);
        let now = weir_sdk::time::now_ms();
        let key = match self.memo.find(fingerprint, now) {
            Found::Allowed(allowed) => {
                remembered(req, &self.upstream_headers, allowed);
                return Action::Continue;
            }
            Found::Key(key) => key,
            Found::Missing => {
                let key = self.keys.digest(&self.credentials);
                self.memo.remember(fingerprint, key);
                key
            }
        };
        if let Some(value) = state::get(key.as_str())
            && let Some(entry) = Entry::parse(&value)
            && entry.live(now)
        {
            self.remember_entry(fingerprint, key, &entry, now);
            return self.cached(req, &entry);
        }
        self.ask(req, Some(key), true)
    }

    /// Whether any decision is kept.
    fn caching(&self) -> bool {
        self.allow_ttl.is_some() || self.deny_ttl.is_some()
    }

    /// Reads the request's credential headers into `credentials`, when
    /// decisions are kept; `true` if it carries any of them.
    fn read_credentials(&mut self, req: &Request<'_>) -> bool {
        if !self.caching() {
            return false;
        }
        let mut any = false;
        for (values, name) in self.credentials.iter_mut().zip(&self.credential_headers) {
            *values = req.header_all(name);
            any |= !values.is_empty();
        }
        any
    }

    /// Drops the credentials read: the instance keeps none in clear past
    /// the request's phase.
    fn forget_credentials(&mut self) {
        for values in &mut self.credentials {
            *values = Vec::new();
        }
    }

    /// Remembers an allowed decision read from shared state, when it says
    /// when it expires and that is within `cache_ttl` of `now` (a longer
    /// one was written by a clock ahead of this one, or by a route caching
    /// longer: it is used, from shared state, not remembered).
    fn remember_entry(&mut self, fingerprint: u128, key: CacheKey, entry: &Entry<'_>, now: u64) {
        let (None, Some(_), Some(expires)) = (entry.refused, self.allow_ttl, entry.expires_ms)
        else {
            return;
        };
        if entry
            .consumer()
            .is_some_and(|c| validate::log_field(CONSUMER_FIELD, c).is_err())
        {
            return;
        }
        let mut headers = Vec::new();
        for (name, value) in entry.headers() {
            // Not reached: the key covers the configured names.
            let Some(index) = self.upstream_headers.iter().position(|n| n == name) else {
                return;
            };
            headers.push((index, value));
        }
        let allowed = Allowed::new(expires, entry.consumer(), headers);
        self.memo.allow(fingerprint, key, allowed, now);
    }

    /// Answers from a cached decision.
    fn cached(&self, req: &mut Request<'_>, entry: &Entry<'_>) -> Action {
        weir_sdk::metrics::counter_add("ext_auth_cache_hit", 1);
        match entry.refused {
            None => {
                for (name, value) in entry.headers() {
                    // Set once already, before it was cached.
                    let _ = req.add_header(name, value);
                }
                if let Some(consumer) = entry.consumer() {
                    name_consumer(consumer);
                }
                Action::Continue
            }
            Some(status) => {
                let mut reply = Action::respond(status);
                for (name, value) in entry.headers() {
                    reply = reply.header(name, value);
                }
                reply.body(entry.body).into()
            }
        }
    }

    /// Starts the call to the service and waits for it; `read`: the
    /// credential headers' values are in `credentials` already.
    fn ask(&mut self, req: &Request<'_>, key: Option<CacheKey>, read: bool) -> Action {
        let mut call = Call::new(
            self.method.as_str(),
            self.upstream.as_str(),
            self.path.as_str(),
        );
        let uri = match req.query() {
            Some(query) => format!("{}?{query}", req.path()),
            None => req.path(),
        };
        let method = req.method();
        // The two forwarded headers, then the request's.
        let mut fields = 2;
        let mut header_bytes =
            FORWARDED_METHOD.len() + method.len() + FORWARDED_URI.len() + uri.len();
        for (name, credential) in self.request_headers.iter().zip(&self.sent_credentials) {
            let values = match credential {
                Some(index) if read => std::mem::take(&mut self.credentials[*index]),
                _ => req.header_all(name),
            };
            for value in values {
                fields += 1;
                header_bytes += name.len() + value.len();
                call = call.header(name.as_str(), value);
            }
        }
        if fields > MAX_CALL_HEADER_FIELDS || header_bytes > MAX_CALL_HEADER_BYTES {
            // The client's own headers are too many or too large to pass
            // on: its fault, not the service's.
            weir_sdk::metrics::counter_add("ext_auth_refused", 1);
            return Action::respond(431)
                .header("content-type", "application/json")
                .body("{\"error\":\"request headers too large to authorize\"}")
                .into();
        }
        call = call
            .header(FORWARDED_METHOD, method)
            .header(FORWARDED_URI, uri);
        if let Some(key) = key {
            call = call.tag(key.as_str());
        }
        if let Some(timeout) = self.timeout {
            call = call.timeout(timeout);
        }
        match call.start() {
            Ok(_) => Action::Wait,
            Err(e) => self.failure(&failure_reason(&e)),
        }
    }

    /// The service allowed the request: copy its headers, name the
    /// consumer, keep the decision (in shared state and in this
    /// instance's memo).
    fn allowed(
        &mut self,
        req: &mut Request<'_>,
        resp: &CallResponse,
        key: Option<CacheKey>,
    ) -> Action {
        weir_sdk::metrics::counter_add("ext_auth_allowed", 1);
        // This instance may not be the one that asked: the memo's entry
        // is found again from the request's credentials, read before any
        // header is set.
        let kept = match (key, self.allow_ttl) {
            (Some(key), Some(ttl)) => Some((key, ttl, self.fingerprint_of(req, key))),
            _ => None,
        };
        let mut copied: Vec<(&str, &str)> = Vec::new();
        let mut indexes: Vec<usize> = Vec::new();
        for (index, name) in self.upstream_headers.iter().enumerate() {
            for value in resp.header_all(name) {
                if copied.len() == MAX_COPIED_FIELDS {
                    break;
                }
                match req.add_header(name, value) {
                    Ok(()) => {
                        copied.push((name.as_str(), value));
                        indexes.push(index);
                    }
                    // The error names the header, never its value.
                    Err(e) => weir_sdk::log::warn(&format!(
                        "header from the authorization service not forwarded: {e}"
                    )),
                }
            }
        }
        let consumer = self
            .consumer_header
            .as_deref()
            .and_then(|name| resp.header(name))
            .filter(|consumer| name_consumer(consumer));
        if let Some((key, ttl, fingerprint)) = kept {
            let now = weir_sdk::time::now_ms();
            let expires = now.saturating_add(millis(ttl));
            if keep(&key, &encode(None, expires, consumer, &copied, b""), ttl)
                && let Some(fingerprint) = fingerprint
            {
                let headers = indexes.iter().zip(&copied).map(|(i, (_, v))| (*i, *v));
                let allowed = Allowed::new(expires, consumer, headers);
                self.memo.allow(fingerprint, key, allowed, now);
            }
        }
        Action::Continue
    }

    /// The memo's fingerprint of the request's credentials, if they are
    /// those `key` was made from (they are: nothing between the request
    /// and its call's result changes them; checked all the same, so the
    /// memo never files a decision under other credentials).
    fn fingerprint_of(&mut self, req: &Request<'_>, key: CacheKey) -> Option<u128> {
        if !self.read_credentials(req) {
            return None;
        }
        let fingerprint = self.memo.fingerprint(&self.credentials);
        let known = self.memo.key(fingerprint);
        (known == Some(key) || (known.is_none() && self.keys.digest(&self.credentials) == key))
            .then_some(fingerprint)
    }

    /// The service refused the request: pass its answer on.
    fn refused(&self, resp: &CallResponse, key: Option<CacheKey>) -> Action {
        weir_sdk::metrics::counter_add("ext_auth_refused", 1);
        let body: &[u8] = if resp.body.len() <= MAX_REFUSAL_BODY_BYTES {
            &resp.body
        } else {
            &[]
        };
        let mut headers: Vec<(&str, &str)> = Vec::new();
        let content_type = (!body.is_empty()).then_some("content-type");
        for name in self
            .client_headers
            .iter()
            .map(String::as_str)
            .chain(content_type)
        {
            for value in resp.header_all(name) {
                if headers.len() < MAX_COPIED_FIELDS && validate::header_value(name, value).is_ok()
                {
                    headers.push((name, value));
                }
            }
        }
        if resp.status >= 500 {
            weir_sdk::log::warn(&format!(
                "authorization service `{}` answered {}",
                self.upstream, resp.status
            ));
        } else if let (Some(key), Some(ttl)) = (key, self.deny_ttl) {
            let expires = weir_sdk::time::now_ms().saturating_add(millis(ttl));
            keep(
                &key,
                &encode(Some(resp.status), expires, None, &headers, body),
                ttl,
            );
        }
        let mut reply = Action::respond(resp.status);
        for (name, value) in headers {
            reply = reply.header(name, value);
        }
        reply.body(body).into()
    }

    /// No answer from the service: `failure_status`, and a warning.
    fn failure(&self, why: &str) -> Action {
        weir_sdk::metrics::counter_add("ext_auth_failed", 1);
        weir_sdk::log::warn(&format!(
            "authorization service `{}` gave no answer: {why}",
            self.upstream
        ));
        Action::respond(self.failure_status)
            .header("content-type", "application/json")
            .body("{\"error\":\"authorization service unavailable\"}")
            .into()
    }
}

/// Header names from the configuration: valid, lower-cased, bounded.
fn header_list(field: &str, names: Vec<String>) -> Result<Vec<String>, String> {
    if names.len() > MAX_HEADER_NAMES {
        return Err(format!("{field}: at most {MAX_HEADER_NAMES} names"));
    }
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        validate::header_name(&name).map_err(|e| format!("{field}: {e}"))?;
        let name = name.to_ascii_lowercase();
        if out.contains(&name) {
            return Err(format!("{field}: {name:?} is listed twice"));
        }
        out.push(name);
    }
    Ok(out)
}

/// Names the consumer in the access log; `false` if the value cannot be
/// one (the warning does not quote it).
fn name_consumer(consumer: &str) -> bool {
    if let Err(e) = validate::log_field(CONSUMER_FIELD, consumer) {
        weir_sdk::log::warn(&format!("consumer not in the access log: {e}"));
        return false;
    }
    if let Err(e) = weir_sdk::log::set_field(CONSUMER_FIELD, consumer) {
        weir_sdk::log::warn(&format!("consumer not in the access log: {e}"));
    }
    true
}

/// Answers from a decision in the instance's memo: no shared-state read,
/// no parsing; the names are the configuration's own.
fn remembered(req: &mut Request<'_>, names: &[String], allowed: &Allowed) {
    weir_sdk::metrics::counter_add("ext_auth_cache_hit", 1);
    for (index, value) in allowed.headers() {
        // Set once already, before it was kept.
        let _ = req.add_header(&names[index], value);
    }
    if let Some(consumer) = allowed.consumer()
        && let Err(e) = weir_sdk::log::set_field(CONSUMER_FIELD, consumer)
    {
        // Checked before it was kept: the host's own refusal.
        weir_sdk::log::warn(&format!("consumer not in the access log: {e}"));
    }
}

/// Keeps a decision in shared state; `false` if it was not. One that does
/// not fit is only counted (under a spray of distinct credentials the
/// cache fills, and a log line per request would flood the log).
fn keep(key: &CacheKey, value: &[u8], ttl: Duration) -> bool {
    if value.len() > MAX_ENTRY_BYTES || state::set(key.as_str(), value, Some(ttl)).is_err() {
        weir_sdk::metrics::counter_add("ext_auth_cache_skipped", 1);
        return false;
    }
    true
}

/// A TTL in milliseconds, as shared state counts it.
fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

/// Why a call has no answer, with what to change when it is the gateway's
/// configuration.
fn failure_reason(e: &CallError) -> String {
    match e {
        CallError::NotAllowed(_) => {
            format!("{e} (list the upstream in the gateway's [plugin_limits.<this plugin>] calls)")
        }
        _ => e.to_string(),
    }
}

weir_sdk::export!(ExtAuth);

#[cfg(test)]
mod tests;
