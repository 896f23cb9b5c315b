//! The host functions a plugin calls, and the per-store data they work on.
//! A store serves one call at a time; for the length of a call the
//! pipeline lends it the request (and response) head by swapping it into
//! [`Call`], so headers never leave host memory and a plugin that reads one
//! header pays for one header. Everything a plugin hands in is validated
//! here before it can reach the wire or a shared structure (bounds in
//! [`limits`]).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{StatusCode, Uri};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{ResourceLimiter, StoreLimits};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::weir::plugin::{calls as wcalls, fleet as wfleet, host, http as whttp, types};
use super::bindings::{
    BucketOutcome, FieldsHandle, LogLevel, REQUEST_FIELDS_REP, RequestHandle, ResponseHandle,
};
use super::calls::{self, CallPolicy, RequestCalls};
use super::deadline::CpuDeadline;
use super::fleet::{self, FleetPolicy};
use super::log_fields::LogFields;
use super::reserved::reserved;
use super::state::Namespace;
use crate::metrics::plugin::PluginStats;

/// Bounds on what a plugin may hand the host in one call.
pub mod limits {
    /// Longest log message; longer ones are cut (and marked so).
    pub const MAX_LOG_BYTES: usize = 4 * 1024;
    /// Log lines one call may write, its own and the host's warnings about
    /// it together; past them one line says so and the rest are dropped.
    pub const MAX_LOG_LINES_PER_CALL: u32 = 32;
    /// How the SDK's panic hook starts the error line it sends before the
    /// panic traps: such a line is kept for the call's failure report
    /// instead of being logged (and costs no line of the budget).
    pub const PANIC_PREFIX: &str = "plugin panic: ";
    /// Longest panic report kept (`panicked at FILE:LINE:COLUMN: MESSAGE`):
    /// it is quoted in the failure line, which should stay short.
    pub const MAX_PANIC_BYTES: usize = 1024;
    /// Request-scoped context: entries per plugin per request, key and
    /// value sizes.
    pub const MAX_CONTEXT_ENTRIES: usize = 32;
    pub const MAX_CONTEXT_KEY_BYTES: usize = 256;
    pub const MAX_CONTEXT_VALUE_BYTES: usize = 4 * 1024;
    /// Header names and values one call may set or add, in bytes, and the
    /// longest single value.
    pub const MAX_HEADER_BYTES_PER_CALL: usize = 64 * 1024;
    pub const MAX_HEADER_VALUE_BYTES: usize = 16 * 1024;
    /// Header fields a plugin's own response may carry.
    pub const MAX_RESPONSE_HEADERS: usize = 100;
    /// Longest path plus query a plugin may set.
    pub const MAX_TARGET_BYTES: usize = 8 * 1024;
    /// Most random bytes per call (the contract says so too).
    pub const MAX_RANDOM_BYTES: u32 = 1024;
    /// Most bytes one `wasi:random` call may ask for; a larger request
    /// traps (WASI's rule) before the host allocates anything.
    pub const MAX_WASI_RANDOM_BYTES: u64 = 64 * 1024;
    /// Header fields (values, counting repeats) a request or response head
    /// may hold after a plugin's edits: twice the most a client may send.
    /// Adding a field beyond it is refused.
    pub const MAX_HEAD_FIELDS: usize = 2 * crate::config::limits::MAX_HEADERS;
    /// Characters of a refused header name quoted back in the error.
    pub const MAX_QUOTED_NAME_CHARS: usize = 64;
    /// Access-log fields (`log-field`): per request, all plugins of the
    /// chain together; name and value sizes. Kept beside their checks.
    pub use super::super::log_fields::{
        MAX_LOG_FIELD_NAME_BYTES, MAX_LOG_FIELD_VALUE_BYTES, MAX_LOG_FIELDS,
    };
}

/// Cuts `s` to at most `max` bytes on a character boundary; whether it
/// was cut.
pub(crate) fn cut(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut at = max;
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    s.truncate(at);
    true
}

/// Request-scoped context of one plugin: small string pairs.
#[derive(Debug, Default, Clone)]
pub struct Context(Vec<(String, String)>);

impl Context {
    fn get(&self, key: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    fn set(&mut self, key: String, value: String) -> Result<(), String> {
        if key.len() > limits::MAX_CONTEXT_KEY_BYTES
            || value.len() > limits::MAX_CONTEXT_VALUE_BYTES
        {
            return Err(format!(
                "context keys are at most {} bytes and values at most {}",
                limits::MAX_CONTEXT_KEY_BYTES,
                limits::MAX_CONTEXT_VALUE_BYTES
            ));
        }
        if let Some(slot) = self.0.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
            return Ok(());
        }
        if self.0.len() >= limits::MAX_CONTEXT_ENTRIES {
            return Err(format!(
                "at most {} context entries per plugin per request",
                limits::MAX_CONTEXT_ENTRIES
            ));
        }
        self.0.push((key, value));
        Ok(())
    }
}

/// What the pipeline lends a store for one call.
pub struct Call {
    pub req: http::request::Parts,
    pub resp: http::response::Parts,
    pub context: Context,
    /// The request's access-log fields, shared by its chain; outside a
    /// call, a placeholder that refuses them.
    pub log_fields: LogFields,
    pub id: HeaderValue,
    pub client_ip: IpAddr,
    /// The connection's verified client certificate, if any.
    pub client_cert: Option<Arc<crate::tls::ClientCert>>,
    /// Header bytes this call may still set or add.
    pub header_budget: usize,
    /// Log lines this call may still write.
    pub log_budget: u32,
    /// The first value a `response` setter refused in this call. In the
    /// request phases the handle names the plugin's own answer, and an
    /// answer one of whose values was refused is not sent (`pool`).
    pub refused: Option<String>,
    /// The last panic report the plugin sent in this call (see
    /// [`limits::PANIC_PREFIX`]); the trap that follows a panic is
    /// described with it. Taken when the call ends.
    pub panic: Option<String>,
    /// The plugin's calls in this request; lent like the context.
    pub calls: RequestCalls,
}

impl Call {
    /// Keeps the first refusal of a `response` setter (see `refused`).
    pub(crate) fn note_refusal(&mut self, r: Result<(), String>) -> Result<(), String> {
        if let Err(e) = &r {
            self.refused.get_or_insert_with(|| e.clone());
        }
        r
    }

    /// Applies a plugin's header write (set, or add when `append`) to the
    /// request or the response head, within the call's header budget; a
    /// refused write to the response is kept (see `refused`). `value` is
    /// already an error when the caller refused it before copying it. The
    /// one place a header write is applied: the generated bindings below
    /// and the hand-bound ones in `hot.rs` both come here.
    pub(crate) fn write_header(
        &mut self,
        side: Side,
        name: &str,
        value: Result<Bytes, String>,
        append: bool,
    ) -> Result<(), String> {
        let mut budget = self.header_budget;
        let r = value.and_then(|v| set(self.head(side), &mut budget, name, v, append));
        self.header_budget = budget;
        match side {
            Side::Request => r,
            Side::Response => self.note_refusal(r),
        }
    }

    /// The request's or the response's header map.
    pub(crate) fn head(&mut self, side: Side) -> &mut http::HeaderMap {
        match side {
            Side::Request => &mut self.req.headers,
            Side::Response => &mut self.resp.headers,
        }
    }
}

/// Which head of a [`Call`] a header write goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Request,
    Response,
}

impl Side {
    /// The head a `fields` handle names.
    pub(crate) fn of(h: &Resource<FieldsHandle>) -> Side {
        if h.rep() == REQUEST_FIELDS_REP {
            Side::Request
        } else {
            Side::Response
        }
    }
}

impl Default for Call {
    fn default() -> Call {
        Call {
            req: http::Request::new(()).into_parts().0,
            resp: http::Response::new(()).into_parts().0,
            context: Context::default(),
            log_fields: LogFields::no_request(),
            id: HeaderValue::from_static(""),
            client_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            client_cert: None,
            header_budget: limits::MAX_HEADER_BYTES_PER_CALL,
            log_budget: limits::MAX_LOG_LINES_PER_CALL,
            refused: None,
            panic: None,
            calls: RequestCalls::default(),
        }
    }
}

/// A store's resource limits (wasmtime's [`StoreLimits`]), noting when
/// they refused a memory growth: the trap that follows is then counted as
/// a memory-cap hit (`weir_plugin_traps{cause="memory"}`), which the trap
/// itself does not say.
pub(crate) struct Limits {
    inner: StoreLimits,
    /// A memory growth was refused in this store. Growth failures trap,
    /// and a trapped instance is never used again, so it is never reset.
    pub(crate) memory_refused: bool,
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum);
        if !matches!(allowed, Ok(true)) {
            self.memory_refused = true;
        }
        allowed
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_refused = true;
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// The data of one plugin store.
pub struct StoreData {
    pub(crate) plugin: Arc<str>,
    pub(crate) state: Arc<Namespace>,
    /// The plugin's metrics; its `counter-add` counters live there.
    pub(crate) stats: Arc<PluginStats>,
    pub(crate) limits: Limits,
    pub(crate) call: Call,
    /// What the plugin may call out to, and the bounds on its calls.
    pub(crate) call_policy: Arc<CallPolicy>,
    /// How the plugin's fleet operations are kept.
    pub(crate) fleet_policy: Arc<FleetPolicy>,
    /// The CPU deadline of the call under way.
    pub(crate) deadline: CpuDeadline,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl StoreData {
    pub(crate) fn new(
        plugin: Arc<str>,
        state: Arc<Namespace>,
        stats: Arc<PluginStats>,
        limits: StoreLimits,
        deadline: CpuDeadline,
        call_policy: Arc<CallPolicy>,
        fleet_policy: Arc<FleetPolicy>,
    ) -> StoreData {
        StoreData {
            call_policy,
            fleet_policy,
            plugin,
            state,
            stats,
            limits: Limits {
                inner: limits,
                memory_refused: false,
            },
            call: Call::default(),
            deadline,
            // No preopens, no environment, no arguments, no inherited
            // stdio, no network: only what `super::engine` links is
            // reachable, and that reads none of these anyway.
            wasi: WasiCtx::builder()
                .max_random_size(limits::MAX_WASI_RANDOM_BYTES)
                .build(),
            table: ResourceTable::new(),
        }
    }

    /// Whether the current call may write one more log line; the line
    /// that uses up the budget says the rest are dropped instead.
    fn may_log(&mut self) -> bool {
        match self.call.log_budget {
            0 => false,
            1 => {
                self.call.log_budget = 0;
                tracing::warn!(
                    plugin = &*self.plugin,
                    request_id = self.request_id(),
                    "further log lines of this plugin call are dropped (at most {} per call)",
                    limits::MAX_LOG_LINES_PER_CALL
                );
                false
            }
            _ => {
                self.call.log_budget -= 1;
                true
            }
        }
    }

    /// Where the store's deadline is kept, for `deadline::install`.
    pub(crate) fn deadline(&mut self) -> &mut CpuDeadline {
        &mut self.deadline
    }

    fn request_id(&self) -> &str {
        self.call.id.to_str().unwrap_or("")
    }
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The answer to a header value longer than the bound.
pub(crate) fn value_too_long() -> String {
    format!(
        "header values are at most {} bytes",
        limits::MAX_HEADER_VALUE_BYTES
    )
}

/// Validates a header a plugin hands in. The value's buffer (copied once
/// out of Wasm memory) becomes the header value as is.
pub(crate) fn header_pair(
    name: &str,
    value: Bytes,
    budget: &mut usize,
) -> Result<(HeaderName, HeaderValue), String> {
    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
        // Quoted in part: the error is logged, and a plugin chooses how
        // long the name is.
        let quoted: String = name.chars().take(limits::MAX_QUOTED_NAME_CHARS).collect();
        let more = if quoted.len() < name.len() { "…" } else { "" };
        format!(
            "`{}{more}` ({} bytes) is not a valid header name",
            quoted.escape_debug(),
            name.len()
        )
    })?;
    if reserved(name.as_str()) {
        return Err(format!(
            "`{name}` is managed by the gateway and cannot be set by a plugin"
        ));
    }
    if value.len() > limits::MAX_HEADER_VALUE_BYTES {
        return Err(value_too_long());
    }
    let cost = name.as_str().len() + value.len();
    if cost > *budget {
        return Err(format!(
            "a plugin may set at most {} header bytes per call",
            limits::MAX_HEADER_BYTES_PER_CALL
        ));
    }
    // HeaderValue refuses CR, LF, NUL and other control bytes, so nothing
    // a plugin writes can split a header line on the wire.
    let value = HeaderValue::from_maybe_shared(value).map_err(|_| {
        "header values may not contain control characters (CR, LF, NUL)".to_string()
    })?;
    *budget -= cost;
    Ok((name, value))
}

/// A plugin's own answer as its call left it: refused when one of the
/// values set on it was, or when it carries more header fields than a
/// plugin's answer may.
pub(crate) fn answer_head(
    head: http::response::Parts,
    refused: Option<String>,
) -> Result<http::response::Parts, String> {
    if let Some(e) = refused {
        return Err(format!("its answer: {e}"));
    }
    if head.headers.len() > limits::MAX_RESPONSE_HEADERS {
        return Err(format!(
            "its answer has {} header fields; at most {}",
            head.headers.len(),
            limits::MAX_RESPONSE_HEADERS
        ));
    }
    Ok(head)
}

/// A final status a plugin may choose: 1xx cannot end a response.
pub(crate) fn status_code(status: u16) -> Result<StatusCode, String> {
    match StatusCode::from_u16(status) {
        Ok(s) if status >= 200 => Ok(s),
        _ => Err(format!(
            "status {status} is not a final HTTP status (200..=999)"
        )),
    }
}

pub(crate) fn get(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)?.to_str().ok().map(str::to_owned)
}

pub(crate) fn get_all(h: &HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect()
}

fn names(h: &HeaderMap) -> Vec<String> {
    h.keys().map(|k| k.as_str().to_owned()).collect()
}

pub(crate) fn set(
    h: &mut HeaderMap,
    budget: &mut usize,
    name: &str,
    value: Bytes,
    append: bool,
) -> Result<(), String> {
    let (n, v) = header_pair(name, value, budget)?;
    if h.len() >= limits::MAX_HEAD_FIELDS && (append || !h.contains_key(&n)) {
        return Err(format!(
            "a head holds at most {} header fields",
            limits::MAX_HEAD_FIELDS
        ));
    }
    // Under the bound above the map cannot reach `http`'s own limit, where
    // the plain calls panic; the checked ones keep it an error anyway.
    let grown = if append {
        h.try_append(n, v).map(|_| ())
    } else {
        h.try_insert(n, v).map(|_| ())
    };
    grown.map_err(|_| "the head holds too many header fields".to_owned())
}

pub(crate) fn remove(h: &mut HeaderMap, name: &str) {
    // An invalid name matches nothing.
    if !reserved(name) {
        h.remove(name);
    }
}

fn set_target(uri: &Uri, path: Option<&str>, query: Option<Option<&str>>) -> Result<Uri, String> {
    let path = path.unwrap_or(uri.path());
    let query = query.unwrap_or(uri.query());
    if !path.starts_with('/') {
        return Err("the path must start with `/`".into());
    }
    let target = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    if target.len() > limits::MAX_TARGET_BYTES {
        return Err(format!(
            "path and query are at most {} bytes",
            limits::MAX_TARGET_BYTES
        ));
    }
    if path.contains(['?', '#']) || query.is_some_and(|q| q.contains('#')) {
        return Err("`?` and `#` cannot appear there".into());
    }
    let pq = PathAndQuery::try_from(target).map_err(|e| format!("invalid request target: {e}"))?;
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(pq);
    Uri::from_parts(parts).map_err(|e| format!("invalid request target: {e}"))
}

impl wcalls::Host for StoreData {
    fn start(
        &mut self,
        req: wcalls::CallRequest,
    ) -> wasmtime::Result<Result<u32, wcalls::CallError>> {
        let asked = calls::Asked {
            upstream: req.upstream,
            method: req.method,
            path: req.path,
            headers: req.headers,
            body: req.body,
            timeout_ms: req.timeout_ms,
            tag: req.tag,
        };
        let started = calls::start(&self.call_policy, &self.plugin, &mut self.call.calls, asked);
        if let Err(e) = &started {
            self.stats.called_out(e.label());
        }
        Ok(started.map_err(call_error))
    }
}

/// A call's error in the contract's terms.
pub(crate) fn call_error(e: calls::CallError) -> wcalls::CallError {
    use calls::CallError as E;
    match e {
        E::NotAllowed(m) => wcalls::CallError::NotAllowed(m),
        E::Invalid(m) => wcalls::CallError::Invalid(m),
        E::Limit(m) => wcalls::CallError::Limit(m),
        E::Deadline => wcalls::CallError::Deadline,
        E::Timeout => wcalls::CallError::Timeout,
        E::TooLarge(n) => wcalls::CallError::TooLarge(n),
        E::Failed(m) => wcalls::CallError::Failed(m),
    }
}

impl wfleet::Host for StoreData {
    fn take(
        &mut self,
        key: String,
        capacity: u64,
        refill_per_second: u64,
        cost: u64,
        tag: String,
    ) -> wasmtime::Result<Result<wfleet::Started, wfleet::FleetError>> {
        let op = fleet::Op::Take {
            key,
            capacity,
            refill_per_second,
            cost,
        };
        Ok(self.fleet(op, tag))
    }

    fn increment(
        &mut self,
        key: String,
        delta: i64,
        ttl_ms: Option<u64>,
        tag: String,
    ) -> wasmtime::Result<Result<wfleet::Started, wfleet::FleetError>> {
        let op = fleet::Op::Increment { key, delta, ttl_ms };
        Ok(self.fleet(op, tag))
    }
}

impl StoreData {
    fn fleet(&mut self, op: fleet::Op, tag: String) -> Result<wfleet::Started, wfleet::FleetError> {
        match self.call.calls.start_fleet(&self.fleet_policy, op, tag) {
            Ok(fleet::Started::Done(a)) => Ok(wfleet::Started::Done(fleet_answer(a))),
            Ok(fleet::Started::Pending(id)) => Ok(wfleet::Started::Pending(id)),
            Err(e) => Err(fleet_error(e)),
        }
    }
}

pub(crate) fn fleet_answer(a: fleet::Answer) -> wfleet::FleetAnswer {
    match a {
        fleet::Answer::Bucket(b) => wfleet::FleetAnswer::Bucket(BucketOutcome {
            allowed: b.allowed,
            remaining: b.remaining,
            retry_after_ms: b.retry_after_ms,
        }),
        fleet::Answer::Counter(n) => wfleet::FleetAnswer::Counter(n),
    }
}

pub(crate) fn fleet_error(e: fleet::FleetError) -> wfleet::FleetError {
    match e {
        fleet::FleetError::Invalid(m) => wfleet::FleetError::Invalid(m),
        fleet::FleetError::Limit(m) => wfleet::FleetError::Limit(m),
        fleet::FleetError::Unavailable(m) => wfleet::FleetError::Unavailable(m),
    }
}

impl whttp::Host for StoreData {}
impl types::Host for StoreData {}

impl whttp::HostRequest for StoreData {
    fn method(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<String> {
        Ok(self.call.req.method.as_str().to_owned())
    }
    fn path(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<String> {
        Ok(self.call.req.uri.path().to_owned())
    }
    fn set_path(
        &mut self,
        _: Resource<RequestHandle>,
        path: String,
    ) -> wasmtime::Result<Result<(), String>> {
        Ok(set_target(&self.call.req.uri, Some(&path), None).map(|u| self.call.req.uri = u))
    }
    fn query(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<Option<String>> {
        Ok(self.call.req.uri.query().map(str::to_owned))
    }
    fn set_query(
        &mut self,
        _: Resource<RequestHandle>,
        query: Option<String>,
    ) -> wasmtime::Result<Result<(), String>> {
        Ok(set_target(&self.call.req.uri, None, Some(query.as_deref()))
            .map(|u| self.call.req.uri = u))
    }
    fn client_ip(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<String> {
        Ok(self.call.client_ip.to_string())
    }
    fn id(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<String> {
        Ok(self.request_id().to_owned())
    }
    fn client_cert(
        &mut self,
        _: Resource<RequestHandle>,
    ) -> wasmtime::Result<Option<whttp::ClientCert>> {
        Ok(self.call.client_cert.as_ref().map(|c| whttp::ClientCert {
            subject: c.subject.clone(),
            dns_names: c.names.clone(),
        }))
    }
    fn drop(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<()> {
        // The handle names whatever head is lent; the head is the pipeline's.
        Ok(())
    }
}

impl whttp::HostResponse for StoreData {
    fn status(&mut self, _: Resource<ResponseHandle>) -> wasmtime::Result<u16> {
        Ok(self.call.resp.status.as_u16())
    }
    fn set_status(
        &mut self,
        _: Resource<ResponseHandle>,
        status: u16,
    ) -> wasmtime::Result<Result<(), String>> {
        let r = status_code(status).map(|s| self.call.resp.status = s);
        Ok(self.call.note_refusal(r))
    }
    fn drop(&mut self, _: Resource<ResponseHandle>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl whttp::HostFields for StoreData {
    fn get(&mut self, h: Resource<FieldsHandle>, name: String) -> wasmtime::Result<Option<String>> {
        Ok(get(self.call.head(Side::of(&h)), &name))
    }
    fn get_all(
        &mut self,
        h: Resource<FieldsHandle>,
        name: String,
    ) -> wasmtime::Result<Vec<String>> {
        Ok(get_all(self.call.head(Side::of(&h)), &name))
    }
    fn names(&mut self, h: Resource<FieldsHandle>) -> wasmtime::Result<Vec<String>> {
        Ok(names(self.call.head(Side::of(&h))))
    }
    fn set(
        &mut self,
        h: Resource<FieldsHandle>,
        name: String,
        value: String,
    ) -> wasmtime::Result<Result<(), String>> {
        let v = Ok(Bytes::from(value));
        Ok(self.call.write_header(Side::of(&h), &name, v, false))
    }
    fn add(
        &mut self,
        h: Resource<FieldsHandle>,
        name: String,
        value: String,
    ) -> wasmtime::Result<Result<(), String>> {
        let v = Ok(Bytes::from(value));
        Ok(self.call.write_header(Side::of(&h), &name, v, true))
    }
    fn remove(&mut self, h: Resource<FieldsHandle>, name: String) -> wasmtime::Result<()> {
        remove(self.call.head(Side::of(&h)), &name);
        Ok(())
    }
    fn drop(&mut self, _: Resource<FieldsHandle>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl host::Host for StoreData {
    fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        if let (LogLevel::Error, Some(report)) = (level, message.strip_prefix(limits::PANIC_PREFIX))
        {
            let mut report = report.replace(['\n', '\r'], " ");
            cut(&mut report, limits::MAX_PANIC_BYTES);
            self.call.panic = Some(report);
            return Ok(());
        }
        if !self.may_log() {
            return Ok(());
        }
        let mut message = message;
        if cut(&mut message, limits::MAX_LOG_BYTES) {
            message.push_str(" [cut]");
        }
        // One message, one line: a plugin cannot forge lines of its own
        // (or another plugin's) in the text log.
        if message.contains(['\n', '\r']) {
            message = message.replace('\n', "\\n").replace('\r', "\\r");
        }
        let (plugin, id) = (&*self.plugin, self.request_id());
        match level {
            LogLevel::Trace => {
                tracing::trace!(target: "weir::plugin", plugin, request_id = id, "{message}")
            }
            LogLevel::Debug => {
                tracing::debug!(target: "weir::plugin", plugin, request_id = id, "{message}")
            }
            LogLevel::Info => {
                tracing::info!(target: "weir::plugin", plugin, request_id = id, "{message}")
            }
            LogLevel::Warn => {
                tracing::warn!(target: "weir::plugin", plugin, request_id = id, "{message}")
            }
            LogLevel::Error => {
                tracing::error!(target: "weir::plugin", plugin, request_id = id, "{message}")
            }
        }
        Ok(())
    }

    fn context_get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.call.context.get(&key))
    }

    fn context_set(&mut self, key: String, value: String) -> wasmtime::Result<()> {
        // The contract gives this call no error channel; an oversized or
        // surplus entry is dropped and said so in the log.
        if let Err(e) = self.call.context.set(key, value)
            && self.may_log()
        {
            tracing::warn!(
                plugin = &*self.plugin,
                request_id = self.request_id(),
                "context-set refused: {e}"
            );
        }
        Ok(())
    }

    fn state_get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.state.get(&key))
    }

    fn state_set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Result<(), String>> {
        Ok(self
            .state
            .set(&key, &value, ttl_ms.map(Duration::from_millis)))
    }

    fn state_delete(&mut self, key: String) -> wasmtime::Result<bool> {
        Ok(self.state.delete(&key))
    }

    fn state_increment(
        &mut self,
        key: String,
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Result<i64, String>> {
        Ok(self
            .state
            .increment(&key, delta, ttl_ms.map(Duration::from_millis)))
    }

    fn token_bucket_take(
        &mut self,
        key: String,
        capacity: u64,
        refill_per_second: u64,
        cost: u64,
    ) -> wasmtime::Result<Result<BucketOutcome, String>> {
        Ok(self
            .state
            .take(&key, capacity, refill_per_second, cost)
            .map(|b| BucketOutcome {
                allowed: b.allowed,
                remaining: b.remaining,
                retry_after_ms: b.retry_after_ms,
            }))
    }

    fn counter_add(&mut self, name: String, delta: u64) -> wasmtime::Result<()> {
        if let Err(e) = self.stats.add_counter(&name, delta)
            && self.may_log()
        {
            tracing::warn!(
                plugin = &*self.plugin,
                request_id = self.request_id(),
                "counter-add refused: {e}"
            );
        }
        Ok(())
    }

    fn log_field(&mut self, name: String, value: String) -> wasmtime::Result<Result<(), String>> {
        // A refusal is the plugin's to handle, and not logged here: the
        // value, which may be an identity, goes nowhere but the access log.
        Ok(self.call.log_fields.set(name, value))
    }

    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64))
    }

    fn random_bytes(&mut self, len: u32) -> wasmtime::Result<Vec<u8>> {
        let mut buf = vec![0; len.min(limits::MAX_RANDOM_BYTES) as usize];
        getrandom::fill(&mut buf)
            .map_err(|e| wasmtime::format_err!("no system randomness: {e}"))?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests;
