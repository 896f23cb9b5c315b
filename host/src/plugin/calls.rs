//! Outbound calls as the plugin runtime sees them: the checks and bounds
//! of the `calls.start` host function, a started call ([`CallSpec`]) as
//! the pipeline receives it, what a request's calls and `strict` fleet
//! operations (numbered with them) leave on each plugin between its
//! phases ([`RequestCalls`]), and a finished call ([`Finished`]) or set of
//! them ([`Waited`]). Sending a call is the pipeline's (`proxy::calls`): this
//! module knows no upstream, only the names a plugin may call.
//!
//! Bounds (docs/plugins.md lists them): a call names an upstream of the
//! plugin's `calls` list; at most `max_calls_per_request` per plugin per
//! request and `max_calls_in_flight` per plugin in the whole gateway; a
//! body to send of at most `max_call_body_bytes`; a method that is an HTTP
//! token other than CONNECT; an origin-form path of at most
//! [`MAX_CALL_PATH_BYTES`]; at most [`MAX_CALL_HEADER_FIELDS`] header
//! fields of at most [`MAX_CALL_HEADER_BYTES`] together, none of them
//! hop-by-hop or `content-length`; a tag of at most [`MAX_CALL_TAG_BYTES`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;

use super::fleet::{self, FleetDone, FleetOp, FleetPolicy};
use crate::config::CallSettings;

/// Longest tag a call carries back to the plugin, in bytes.
pub const MAX_CALL_TAG_BYTES: usize = 256;
/// Header fields one call may send.
pub const MAX_CALL_HEADER_FIELDS: usize = 64;
/// Bytes of header names and values one call may send.
pub const MAX_CALL_HEADER_BYTES: usize = 16 * 1024;
/// Longest path and query of a call.
pub const MAX_CALL_PATH_BYTES: usize = 8 * 1024;

/// Why a call was not started, or has no answer: the contract's
/// `call-error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    NotAllowed(String),
    Invalid(String),
    Limit(String),
    Deadline,
    Timeout,
    TooLarge(u64),
    Failed(String),
}

impl CallError {
    /// The outcome label of `weir_plugin_outbound_calls_total`.
    pub fn label(&self) -> &'static str {
        match self {
            CallError::NotAllowed(_) => "not_allowed",
            CallError::Invalid(_) => "invalid",
            CallError::Limit(_) => "limit",
            CallError::Deadline => "deadline",
            CallError::Timeout => "timeout",
            CallError::TooLarge(_) => "too_large",
            CallError::Failed(_) => "failed",
        }
    }
}

/// What a call's upstream answered, whole.
#[derive(Debug, Clone)]
pub struct Answered {
    pub status: u16,
    /// Lower-case names, in order; values that are not UTF-8 are left out.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A finished call, as the plugin receives it.
#[derive(Debug, Clone)]
pub struct Finished {
    pub id: u32,
    pub tag: String,
    pub outcome: Result<Answered, CallError>,
}

impl Finished {
    /// How it ended, as the metrics and its span say it: `answered`, or
    /// its error's [`CallError::label`].
    pub fn label(&self) -> &'static str {
        match &self.outcome {
            Ok(_) => "answered",
            Err(e) => e.label(),
        }
    }
}

/// What a phase call waited for, finished: its calls' results and its
/// `strict` fleet operations' answers, each in the order they started.
#[derive(Debug, Default)]
pub struct Waited {
    pub calls: Vec<Finished>,
    pub fleet: Vec<FleetDone>,
}

/// A plugin's call policy: its `calls` list and bounds, and the count of
/// its calls in flight (kept with the plugin's shared state, so every
/// version and instance of the plugin counts against one bound).
#[derive(Debug)]
pub struct CallPolicy {
    pub settings: CallSettings,
    in_flight: Arc<AtomicUsize>,
}

impl CallPolicy {
    pub fn new(settings: CallSettings, in_flight: Arc<AtomicUsize>) -> CallPolicy {
        CallPolicy {
            settings,
            in_flight,
        }
    }

    /// Whether the plugin may call anything at all.
    pub fn any(&self) -> bool {
        !self.settings.upstreams.is_empty()
    }
}

/// One call of the plugin's in flight; given back when the call (or its
/// unsent description) is dropped.
#[derive(Debug)]
pub struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

/// A call the plugin started, checked, for the pipeline to send.
#[derive(Debug)]
pub struct CallSpec {
    pub id: u32,
    pub tag: String,
    pub upstream: String,
    pub method: Method,
    pub path: PathAndQuery,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The call's own limit and the plugin's `call_timeout`, whichever is
    /// shorter; the pipeline caps it with the request's deadline.
    pub timeout: Duration,
    /// The largest answer body taken.
    pub max_body: usize,
    /// Holds the call's place in its plugin's `max_calls_in_flight`.
    pub in_flight: InFlight,
}

/// What one plugin's calls keep over one request: lent to each of its
/// phase calls like its context.
#[derive(Debug, Default)]
pub struct RequestCalls {
    /// Calls started in the phase call under way (or just ended), in order.
    pub started: Vec<CallSpec>,
    /// `strict` fleet operations started in it, in order.
    pub fleet: Vec<FleetOp>,
    /// Whether the phase call under way may start calls.
    pub open: bool,
    /// The request's deadline, when the request may make calls.
    pub deadline: Option<Instant>,
    /// Calls started so far in the request.
    count: u32,
    /// The next id of a call or fleet operation.
    ids: u32,
}

impl RequestCalls {
    /// A request's calls, under `deadline`.
    pub fn new(deadline: Option<Instant>) -> RequestCalls {
        RequestCalls {
            deadline,
            ..RequestCalls::default()
        }
    }

    /// The calls the phase call started, taken.
    pub fn take(&mut self) -> Vec<CallSpec> {
        std::mem::take(&mut self.started)
    }

    /// The fleet operations the phase call started, taken.
    pub fn take_fleet(&mut self) -> Vec<FleetOp> {
        std::mem::take(&mut self.fleet)
    }

    /// Whether the phase call started anything to wait for.
    pub fn any_started(&self) -> bool {
        !self.started.is_empty() || !self.fleet.is_empty()
    }

    /// `fleet.take` and `fleet.increment`: answered by `policy`, or
    /// numbered and kept to be waited for.
    pub fn start_fleet(
        &mut self,
        policy: &FleetPolicy,
        op: fleet::Op,
        tag: String,
    ) -> Result<fleet::Started, fleet::FleetError> {
        match policy.start(self.open, self.fleet.len(), op, tag)? {
            fleet::Decision::Done(a) => Ok(fleet::Started::Done(a)),
            fleet::Decision::Wait(mut op) => {
                let id = self.next_id();
                op.id = id;
                self.fleet.push(op);
                Ok(fleet::Started::Pending(id))
            }
        }
    }

    /// An id for a call or fleet operation, unique within the request.
    fn next_id(&mut self) -> u32 {
        let id = self.ids;
        self.ids = self.ids.wrapping_add(1);
        id
    }
}

/// The contract's `call-request`, in host types.
pub struct Asked {
    pub upstream: String,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: Option<u32>,
    pub tag: String,
}

/// `calls.start`: checks a call against the plugin's policy and the
/// request's bounds and, if it passes, adds it to the started calls.
pub fn start(
    policy: &CallPolicy,
    plugin: &str,
    calls: &mut RequestCalls,
    asked: Asked,
) -> Result<u32, CallError> {
    let s = &policy.settings;
    if !calls.open {
        return Err(CallError::Invalid(
            "calls start only in the request and response phases (and their -calls exports)".into(),
        ));
    }
    if !s.upstreams.contains(&asked.upstream) {
        let quoted: String = asked.upstream.chars().take(128).collect();
        return Err(CallError::NotAllowed(format!(
            "upstream `{}` is not in this plugin's `calls` list ([plugin_limits.{plugin}] calls)",
            quoted.escape_debug()
        )));
    }
    if calls.count >= s.max_per_request {
        return Err(CallError::Limit(format!(
            "at most {} calls per request (max_calls_per_request)",
            s.max_per_request
        )));
    }
    if calls.deadline.is_some_and(|d| d <= Instant::now()) {
        return Err(CallError::Deadline);
    }
    // Methods are case-sensitive, but an upstream may read `connect` as
    // CONNECT: a call is one request and answer, never a tunnel.
    let method = Method::from_bytes(asked.method.as_bytes())
        .ok()
        .filter(|m| !m.as_str().eq_ignore_ascii_case("CONNECT"))
        .ok_or_else(|| {
            CallError::Invalid(format!(
                "`{}` is not an HTTP method a call may use",
                asked
                    .method
                    .chars()
                    .take(32)
                    .collect::<String>()
                    .escape_debug()
            ))
        })?;
    let path = check_path(&asked.path)?;
    if asked.tag.len() > MAX_CALL_TAG_BYTES {
        return Err(CallError::Invalid(format!(
            "a call's tag is at most {MAX_CALL_TAG_BYTES} bytes"
        )));
    }
    let headers = check_headers(asked.headers)?;
    if asked.body.len() > s.max_body_bytes {
        return Err(CallError::Limit(format!(
            "a call's body is at most {} bytes (max_call_body_bytes)",
            s.max_body_bytes
        )));
    }
    let reserved = policy
        .in_flight
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < s.max_in_flight).then_some(n + 1)
        })
        .is_ok();
    if !reserved {
        return Err(CallError::Limit(format!(
            "the plugin has {} calls in flight (max_calls_in_flight)",
            s.max_in_flight
        )));
    }
    let in_flight = InFlight(policy.in_flight.clone());
    let timeout = asked.timeout_ms.map_or(s.timeout, |ms| {
        Duration::from_millis(ms.into()).min(s.timeout)
    });
    let id = calls.next_id();
    calls.count += 1;
    calls.started.push(CallSpec {
        id,
        tag: asked.tag,
        upstream: asked.upstream,
        method,
        path,
        headers,
        body: Bytes::from(asked.body),
        timeout,
        max_body: s.max_body_bytes,
        in_flight,
    });
    Ok(id)
}

/// An origin-form request target (RFC 9112 section 3.2.1: an absolute
/// path and an optional query of RFC 3986's characters, `%` only before
/// two hex digits). A call is sent as written, so nothing an upstream could
/// read otherwise passes: no space, control, `#`, `[`, raw non-ASCII byte
/// or stray `%`. The SDK applies the same rule.
fn check_path(path: &str) -> Result<PathAndQuery, CallError> {
    if path.len() > MAX_CALL_PATH_BYTES {
        return Err(CallError::Invalid(format!(
            "a call's path is at most {MAX_CALL_PATH_BYTES} bytes"
        )));
    }
    if !path.starts_with('/') {
        return Err(CallError::Invalid(
            "a call's path must start with `/`".into(),
        ));
    }
    let bytes = path.as_bytes();
    let hex = |at: usize| bytes.get(at).is_some_and(u8::is_ascii_hexdigit);
    let mut i = 0;
    let mut plain = true;
    while i < bytes.len() && plain {
        let b = bytes[i];
        if b == b'%' && hex(i + 1) && hex(i + 2) {
            i += 3;
        } else if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?".contains(&b) {
            i += 1;
        } else {
            plain = false;
        }
    }
    match PathAndQuery::try_from(path) {
        Ok(p) if plain => Ok(p),
        _ => Err(CallError::Invalid(format!(
            "`{}` is not a valid request path (visible ASCII, percent-encoded)",
            path.chars().take(64).collect::<String>().escape_debug()
        ))),
    }
}

fn check_headers(fields: Vec<(String, String)>) -> Result<HeaderMap, CallError> {
    if fields.len() > MAX_CALL_HEADER_FIELDS {
        return Err(CallError::Invalid(format!(
            "a call sends at most {MAX_CALL_HEADER_FIELDS} header fields"
        )));
    }
    let total: usize = fields.iter().map(|(n, v)| n.len() + v.len()).sum();
    if total > MAX_CALL_HEADER_BYTES {
        return Err(CallError::Invalid(format!(
            "a call's header names and values are at most {MAX_CALL_HEADER_BYTES} bytes together"
        )));
    }
    let mut out = HeaderMap::with_capacity(fields.len());
    for (name, value) in fields {
        let quoted = || {
            name.chars()
                .take(64)
                .collect::<String>()
                .escape_debug()
                .to_string()
        };
        let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            CallError::Invalid(format!("`{}` is not a valid header name", quoted()))
        })?;
        // The connection's own fields (RFC 9110 section 7.6.1), the body's
        // length (the host sets it), `expect`, `http2-settings` and names
        // that read as a framing field: what no plugin may set anywhere.
        if super::reserved::reserved(n.as_str()) {
            return Err(CallError::Invalid(format!(
                "`{n}` is set by the gateway for the call's connection and cannot be sent by a \
                 plugin"
            )));
        }
        let v = HeaderValue::from_str(&value).map_err(|_| {
            CallError::Invalid(format!(
                "the value of `{n}` may not contain control characters (CR, LF, NUL)"
            ))
        })?;
        out.append(n, v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_in_flight: usize) -> CallPolicy {
        CallPolicy::new(
            CallSettings {
                upstreams: vec!["auth".into()],
                timeout: Duration::from_millis(500),
                max_per_request: 2,
                max_in_flight,
                max_body_bytes: 8,
            },
            Arc::default(),
        )
    }

    fn asked(upstream: &str) -> Asked {
        Asked {
            upstream: upstream.into(),
            method: "GET".into(),
            path: "/check?x=1".into(),
            headers: vec![("authorization".into(), "Bearer t".into())],
            body: Vec::new(),
            timeout_ms: Some(2000),
            tag: "t".into(),
        }
    }

    fn open() -> RequestCalls {
        RequestCalls {
            open: true,
            ..RequestCalls::default()
        }
    }

    #[test]
    fn a_call_is_checked_and_numbered_and_its_timeout_capped_by_the_policy() {
        let p = policy(10);
        let mut calls = open();
        assert_eq!(start(&p, "x", &mut calls, asked("auth")), Ok(0));
        assert_eq!(start(&p, "x", &mut calls, asked("auth")), Ok(1));
        let started = calls.take();
        assert_eq!(started[1].timeout, Duration::from_millis(500));
        assert_eq!(started[0].path.as_str(), "/check?x=1");
        assert_eq!(started[0].headers["authorization"], "Bearer t");
        assert_eq!(p.in_flight.load(Ordering::Acquire), 2);
        drop(started);
        assert_eq!(p.in_flight.load(Ordering::Acquire), 0);
        // The per-request count stays spent after the calls are taken.
        assert!(matches!(
            start(&p, "x", &mut calls, asked("auth")),
            Err(CallError::Limit(m)) if m.contains("2 calls per request")
        ));
    }

    #[test]
    fn calls_outside_the_list_the_phases_or_the_bounds_are_refused() {
        let p = policy(1);
        let mut closed = RequestCalls::default();
        assert!(matches!(
            start(&p, "x", &mut closed, asked("auth")),
            Err(CallError::Invalid(_))
        ));
        let mut calls = open();
        assert!(matches!(
            start(&p, "x", &mut calls, asked("other")),
            Err(CallError::NotAllowed(m)) if m.contains("`other`") && m.contains("[plugin_limits.x] calls")
        ));
        let with = |f: &dyn Fn(&mut Asked)| {
            let mut a = asked("auth");
            f(&mut a);
            start(&p, "x", &mut open(), a)
        };
        assert!(matches!(
            with(&|a| a.method = "CONNECT".into()),
            Err(CallError::Invalid(_))
        ));
        assert!(matches!(
            with(&|a| a.method = "GE T".into()),
            Err(CallError::Invalid(_))
        ));
        assert!(matches!(
            with(&|a| a.path = "check".into()),
            Err(CallError::Invalid(_))
        ));
        assert!(matches!(
            with(&|a| a.path = "/a b".into()),
            Err(CallError::Invalid(_))
        ));
        assert!(matches!(
            with(&|a| a.path = format!("/{}", "a".repeat(MAX_CALL_PATH_BYTES))),
            Err(CallError::Invalid(_))
        ));
        assert!(matches!(
            with(&|a| a.tag = "t".repeat(MAX_CALL_TAG_BYTES + 1)),
            Err(CallError::Invalid(_))
        ));
        for name in [
            "connection",
            "Transfer-Encoding",
            "content-length",
            "te",
            "expect",
            "content_length",
        ] {
            assert!(matches!(
                with(&|a| a.headers = vec![(name.into(), "x".into())]),
                Err(CallError::Invalid(m)) if m.contains("set by the gateway")
            ));
        }
        assert!(matches!(
            with(&|a| a.headers = vec![("x".into(), "a\r\nb".into())]),
            Err(CallError::Invalid(_))
        ));
        assert!(matches!(
            with(&|a| a.headers = vec![("x".into(), "v".into()); MAX_CALL_HEADER_FIELDS + 1]),
            Err(CallError::Invalid(_))
        ));
        assert!(matches!(
            with(&|a| a.body = vec![0; 9]),
            Err(CallError::Limit(m)) if m.contains("max_call_body_bytes")
        ));
        // One in flight at most: a second is refused until the first ends.
        let mut calls = open();
        assert_eq!(start(&p, "x", &mut calls, asked("auth")), Ok(0));
        assert!(matches!(
            start(&p, "x", &mut open(), asked("auth")),
            Err(CallError::Limit(m)) if m.contains("max_calls_in_flight")
        ));
        drop(calls.take());
        assert_eq!(
            start(&p, "x", &mut open(), asked("auth")).map(|_| ()),
            Ok(())
        );
    }

    #[test]
    fn a_call_after_the_requests_deadline_is_refused() {
        let p = policy(10);
        let mut calls = RequestCalls::new(Some(Instant::now()));
        calls.open = true;
        assert_eq!(
            start(&p, "x", &mut calls, asked("auth")),
            Err(CallError::Deadline)
        );
    }
}
