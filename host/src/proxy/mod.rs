//! The request pipeline. [`phases`] holds the phase order of one request,
//! so a reader sees its whole life in one place ([`handle`] wraps it: the
//! request id, errors turned into responses, the log phase, the access
//! log):
//!
//! ```text
//! framing checks → route match → body limit → request plugins
//!   → [request-body plugins] → pick endpoint → connection (pooled)
//!   → forward with deadline → response hygiene → response plugins
//!   → [response-body plugins] → (response sent) → log plugins
//! ```
//!
//! Errors from any phase become a [`ProxyError`], and `error.rs` alone maps
//! them to statuses. Listening, balancing and pooling live elsewhere; this
//! module only decides what happens to a request.

mod calls;
pub mod error;
pub mod exchange;
pub mod grpc;
pub mod headers;
pub mod plugins;
mod redirect;
pub mod response;
mod send;
pub mod stall;
mod upgrade;

use std::convert::Infallible;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Request, Response, StatusCode, Uri, Version};

use crate::body::{ClientBody, RequestBody};
pub use crate::conn::ConnContext;
use crate::metrics::MethodClass;
use crate::router::{self, HostSource, Route};
pub use error::{ErrorSource, ProxyError};
use exchange::{Exchange, LogInfo, Trail};
use headers::X_REQUEST_ID;
use response::{Lease, ResponseBody};

/// Serves one request. Never fails: every error becomes a response.
pub async fn handle(
    cx: Arc<ConnContext>,
    mut req: Request<ClientBody>,
) -> Result<Response<ResponseBody>, Infallible> {
    let in_flight = Counted::enter(&cx.in_flight);
    let id = headers::request_id(req.headers());
    let grpc = grpc::is_call(req.version(), req.headers());
    // Only a kept record (metrics, access log, tracing) reads the clock.
    let started = cx.observe.any().then(Instant::now);
    let method = MethodClass::of(req.method());
    // The access log's copy of the request line, taken before the
    // pipeline consumes the head.
    let logged = cx
        .observe
        .access_log
        .is_some()
        .then(|| LogInfo::of(&cx, &req, &id));

    let mut run = Running {
        cx: &cx,
        started,
        method,
        plugins: plugins::Scope::default(),
        trail: Trail::default(),
        logged,
    };
    run.trail.tries.wanted = run.logged.is_some();
    // Tracing on: the trace headers are decided (and replaced) before any
    // phase sees the request.
    if let (Some(tracing), Some(started)) = (&cx.observe.tracing, started) {
        let trace = tracing.begin(&mut req, started, cx.peer.ip(), cx.tls.is_some());
        if trace.recording() {
            run.plugins.calls = crate::trace::PluginCalls::recording();
        }
        run.trail.trace = Some(trace);
    }
    let mut resp = match phases(&cx, req, &id, &mut run.plugins, grpc, &mut run.trail).await {
        Ok(r) => r,
        Err(e) => {
            if let Some(reason) = e.client_reason() {
                cx.stats.client_error(reason);
            }
            match e.source_kind() {
                ErrorSource::Client => {
                    tracing::debug!(request_id = ?id, peer = %cx.peer, error = %e, "request refused")
                }
                // Logged where it was refused, at most once a second.
                _ if e.refused_at_once() => {}
                _ => tracing::warn!(request_id = ?id, error = %e, "request failed"),
            }
            if grpc {
                grpc::error_response(&e)
            } else {
                error_response(&e)
            }
        }
    };
    // The client's connection writes it (`ResponseBody::take_id`).
    resp.body_mut().carry_id(headers::request_id_field(&id));
    let status = resp.status().as_u16();
    if let Some(record) = run.finish(status) {
        resp.body_mut().keep(record);
    }
    drop(in_flight);
    Ok(resp)
}

/// The status a request its client abandoned before its response head
/// is logged and counted with, and its plugins' log phase receives (the
/// one nginx logs for a client that closed the request).
pub const STATUS_CLIENT_GONE: u16 = 499;

/// A request while its phases run: its plugins' scope and what its record
/// will be made of. [`Running::finish`] ends it with the response's
/// status; dropped before that (the client went away: hyper drops the
/// request's future), it ends with [`STATUS_CLIENT_GONE`], so an
/// abandoned request is still counted, logged and traced, and its
/// plugins' log phase runs.
struct Running<'a> {
    cx: &'a ConnContext,
    started: Option<Instant>,
    method: MethodClass,
    plugins: plugins::Scope,
    trail: Trail,
    logged: Option<LogInfo>,
}

impl Running<'_> {
    /// Ends the request with `status`: the plugins' log phase is started,
    /// and the record, when one is kept, is returned to ride in the
    /// response body.
    fn finish(&mut self, status: u16) -> Option<Box<Exchange>> {
        if let Some(t) = self.trail.trace.as_deref_mut() {
            t.add_plugin_calls(&mut self.plugins.calls);
        }
        // The fields plugins set go to the access log before the log
        // phase, which runs after the line is made and may set none.
        let fields = self.plugins.take_log_fields();
        if let Some(l) = &mut self.logged {
            l.plugin = fields;
        }
        self.plugins.on_log(status);
        let started = self.started.take()?;
        // Allocated first, so the record is made in the box rather than
        // made on the stack and copied in (about 400 bytes).
        let record = Box::new_uninit();
        Some(Box::write(
            record,
            Exchange::new(
                started,
                self.method,
                std::mem::take(&mut self.trail),
                status,
                self.cx.observe.metrics,
                self.logged.take(),
            ),
        ))
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        // Finished already: `started` was taken (or no record is kept and
        // the plugins' scope ends itself).
        if self.started.is_some() {
            drop(self.finish(STATUS_CLIENT_GONE));
        }
    }
}

/// One unit of a count, given back when dropped: also when the future
/// holding it is dropped midway (an HTTP/2 stream the client reset) or
/// unwinds. A request left in [`ConnContext::in_flight`] would keep its
/// connection from ever being closed for idleness; a connection left in
/// the listener's open count, every drain waiting its full timeout. `R` is
/// `&AtomicUsize` or an owned `Arc<AtomicUsize>` (moved into a task).
pub(crate) struct Counted<R: Deref<Target = AtomicUsize>>(R);

impl<R: Deref<Target = AtomicUsize>> Counted<R> {
    pub(crate) fn enter(count: R) -> Counted<R> {
        count.fetch_add(1, Ordering::Relaxed);
        Counted(count)
    }
}

impl<R: Deref<Target = AtomicUsize>> Drop for Counted<R> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The phases of one request, in order, up to the response head handed to
/// the client (the log phase runs after, from [`handle`]). `grpc`: the
/// request is a gRPC call (its deadline may be shorter than the route's,
/// and a plugin's refusal is answered as a gRPC status).
async fn phases(
    cx: &ConnContext,
    req: Request<ClientBody>,
    id: &HeaderValue,
    plugins: &mut plugins::Scope,
    grpc: bool,
    trail: &mut Trail,
) -> Result<Response<ResponseBody>, ProxyError> {
    let (mut parts, body) = req.into_parts();
    let h1_client = matches!(parts.version, Version::HTTP_10 | Version::HTTP_11);
    check_framing(&mut parts, cx)?;
    if let Some(r) = cx.listener.https_redirect {
        return redirect::answer(&parts, r);
    }

    // Kept in the request's record, which names the route by its place.
    let router = &**trail.router.insert(cx.router.load_full());
    let client_cert = cx
        .tls
        .as_ref()
        .and_then(|t| t.session.client_cert.as_ref())
        .map(|c| c.names.as_slice());
    let (index, route) = router
        .find_indexed(&parts, client_cert)
        .ok_or(ProxyError::NoRoute)?;
    trail.route = Some(index);
    if content_length(&parts.headers).is_some_and(|n| n > route.max_body_bytes) {
        return Err(ProxyError::BodyTooLarge {
            limit: route.max_body_bytes,
        });
    }
    // A gRPC client's deadline caps the route's.
    let timeout = if grpc {
        match grpc::timeout(&parts.headers).map_err(ProxyError::BadHeader)? {
            Some(t) => t.min(route.timeout),
            None => route.timeout,
        }
    } else {
        route.timeout
    };

    let upgrade = upgrade::take(&mut parts, &route.upgrades);
    prepare_upstream_request(
        &mut parts,
        route,
        cx,
        &router.client_cert_headers,
        id,
        upgrade.as_ref().map(|u| &u.protocol),
    )?;

    // A route without plugins skips the plugin phases altogether.
    let plain = route.plugins.is_empty();
    let caps = router.plugin_body_caps;
    let (steered, body) = if plain {
        (None, RequestBody::limited(body, route.max_body_bytes))
    } else {
        // Plugins see the request as it will be sent upstream.
        let cert = cx.tls.as_ref().and_then(|t| t.session.client_cert.as_ref());
        plugins.start(route, timeout, (cx.peer, &parts.headers), cert, id);
        let decision = match plugins.on_request(&mut parts, router)? {
            plugins::Step::Decided(d) => d,
            // Boxed, as the body phase: its future waits on calls.
            plugins::Step::Waiting(w) => {
                Box::pin(plugins.finish_request(&route.plugins, w, &mut parts, router)).await?
            }
        };
        let steered = match decision {
            plugins::Decision::Respond(resp) => return Ok(answer(*resp, grpc)),
            plugins::Decision::Forward(steered) => steered,
        };
        if !plugins.wants_request_body() {
            (steered, RequestBody::limited(body, route.max_body_bytes))
        } else {
            // Boxed: the body phase's future is large, and requests that
            // do not need it should not carry (and move) it.
            match Box::pin(plugins.on_request_body(&mut parts, body, (route, router), caps.request))
                .await?
            {
                Ok(body) => (steered, body),
                Err(resp) => return Ok(answer(resp, grpc)),
            }
        }
    };

    if cx.observe.any() {
        trail.body.note(&body);
    }
    let upstream = steered.as_ref().unwrap_or(&route.upstream);
    // Calls a plugin waited on spent part of the deadline.
    let timeout = plugins.remaining(timeout);
    // A response that only this hop's edits touch (no plugin of the route
    // takes the response phase), going to an HTTP/1.1 client, may keep an
    // HTTP/1.1 upstream's fields as received.
    let untouched = !route.plugins.response && !route.plugins.response_body;
    let bounds = send::Bounds {
        raw_head: untouched && h1_client && !grpc && upgrade.is_none(),
        ..send::Bounds::of(route)
    };
    let send::Sent { resp, endpoint } = send::send(
        &bounds,
        upstream,
        cx.peer,
        parts,
        body,
        upgrade.is_some(),
        timeout,
        &mut trail.tries,
        trail.trace.as_deref_mut().filter(|t| t.recording()),
    )
    .await?;

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        return upgrade::switch(cx, upgrade, resp, &endpoint.label);
    }

    let (mut rparts, mut rbody) = resp.into_parts();
    match rbody.raw_head_mut() {
        // Its hop-by-hop fields were left out as it was kept.
        Some(raw) => raw.append(&header::VIA, &headers::via_value(rparts.version)),
        None => {
            headers::strip_hop_by_hop(&mut rparts.headers);
            headers::append_via(&mut rparts.headers, rparts.version);
        }
    }
    let lease = Lease::new(endpoint);
    let resp = Response::from_parts(
        rparts,
        ResponseBody::upstream(rbody, lease, route.read_timeout),
    );
    if plain {
        return Ok(resp);
    }
    if !plugins.wants_response_body() {
        if route.plugins.calls && route.plugins.response {
            return Box::pin(plugins.on_response_calling(&route.plugins, router, resp)).await;
        }
        return plugins.on_response(resp);
    }
    Box::pin(plugins.on_response_body(resp, caps.response, (route, router))).await
}

/// A plugin's own answer, as the client receives it: a gRPC status for a
/// gRPC call ([`grpc::from_answer`]).
fn answer(resp: Response<ResponseBody>, grpc: bool) -> Response<ResponseBody> {
    if grpc { grpc::from_answer(resp) } else { resp }
}

/// Request smuggling, size and `Host` checks that hyper leaves to us; the
/// header names the listener does not forward are dropped here, before
/// routing, so no route or plugin sees what the upstream will not.
fn check_framing(parts: &mut Parts, cx: &ConnContext) -> Result<(), ProxyError> {
    let listener = &cx.listener;
    let target_len = parts.uri.path_and_query().map_or(0, |p| p.as_str().len())
        + parts.uri.authority().map_or(0, |a| a.as_str().len());
    if target_len > listener.max_uri_bytes {
        return Err(ProxyError::UriTooLong {
            limit: listener.max_uri_bytes,
        });
    }
    // hyper never lets both through, but an HTTP/2 client could send both.
    if parts.headers.contains_key(header::TRANSFER_ENCODING)
        && parts.headers.contains_key(header::CONTENT_LENGTH)
    {
        return Err(ProxyError::BadFraming(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    if !headers::transfer_coding_is_plain(&parts.headers) {
        return Err(ProxyError::BadFraming(
            "a Transfer-Encoding other than one `chunked`",
        ));
    }
    headers::screen_names(&mut parts.headers, listener.underscores_in_headers)
        .map_err(ProxyError::BadFraming)?;
    let mut lengths = parts.headers.get_all(header::CONTENT_LENGTH).iter();
    if let Some(first) = lengths.next()
        && lengths.any(|v| v != first)
    {
        return Err(ProxyError::BadFraming("conflicting Content-Length values"));
    }
    // Exactly one well-formed host, so that the one the route is chosen by
    // is the one the upstream is told (see `prepare_upstream_request`).
    router::check_host(parts).map_err(ProxyError::BadFraming)?;
    router::check_path(parts.uri.path()).map_err(ProxyError::BadTarget)?;
    Ok(())
}

fn content_length(h: &http::HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Rewrites the request in place into what the upstream receives.
fn prepare_upstream_request(
    parts: &mut Parts,
    route: &Route,
    cx: &ConnContext,
    client_cert_headers: &[http::HeaderName],
    id: &HeaderValue,
    upgrade: Option<&HeaderValue>,
) -> Result<(), ProxyError> {
    let (host, host_field) = forwarded_host(parts);
    let client_version = parts.version;
    // `TE: trailers` says the client takes trailers; Weir carries them, so
    // the upstream is told the same (gRPC servers require it).
    let stripped = headers::strip_hop_by_hop(&mut parts.headers);
    let trailers = stripped.te_trailers;
    // Weir answers `100-continue` itself (hyper sends the 100 once the
    // body is first read, that is once the request is on its way
    // upstream); forwarded, it would ask the upstream for a second one.
    if parts.headers.get_all(header::EXPECT).iter().any(|v| {
        v.as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"100-continue")
    }) {
        parts.headers.remove(header::EXPECT);
    }
    if client_version == Version::HTTP_2 {
        join_cookies(&mut parts.headers);
    }
    let proto = if cx.tls.is_some() { "https" } else { "http" };
    headers::set_forwarded(&mut parts.headers, &cx.peer_ip, proto, host.clone());
    // A client certificate header is the gateway's word: whatever a
    // client sends under any listener's name for it is dropped, on every
    // listener, and only a verified certificate sets it.
    for name in client_cert_headers {
        parts.headers.remove(name);
    }
    if let Some(tls) = &cx.tls
        && let (Some(name), Some(cert)) = (&tls.forward_header, &tls.session.client_cert)
        && let Some(value) = cert.header_value()
    {
        parts.headers.insert(name.clone(), value);
    }
    headers::append_via(&mut parts.headers, client_version);
    parts
        .headers
        .insert(X_REQUEST_ID.clone(), headers::request_id_field(id));
    // The routed host is the `Host` field still in place, unless the
    // target's authority replaces it or a client's `Connection: host`
    // just stripped it: only then is it set.
    match host {
        Some(_) if host_field && !stripped.named => {}
        Some(h) => {
            parts.headers.insert(header::HOST, h);
        }
        None => {
            parts.headers.remove(header::HOST);
        }
    }
    if let Some(protocol) = upgrade {
        parts.headers.insert(header::UPGRADE, protocol.clone());
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    if trailers {
        // RFC 9110 section 10.1.4: `TE` goes with a `te` connection option
        // (HTTP/2 upstreams get neither `Connection` nor the option).
        parts
            .headers
            .insert(header::TE, HeaderValue::from_static("trailers"));
        parts
            .headers
            .append(header::CONNECTION, HeaderValue::from_static("te"));
    }

    // Origin-form and unchanged (the common case): keep the parsed URI.
    let path = route.rewrite(parts.uri.path());
    let origin_form = parts.uri.scheme().is_none() && parts.uri.authority().is_none();
    if !origin_form || matches!(path, std::borrow::Cow::Owned(_)) {
        let target = match parts.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.into_owned(),
        };
        parts.uri =
            Uri::try_from(target).map_err(|_| ProxyError::BadFraming("invalid request target"))?;
    }
    parts.version = Version::HTTP_11;
    Ok(())
}

/// The `Host` the upstream receives: the host the request was routed by
/// ([`router::host_source`]), so that a client cannot be routed by one
/// host while the upstream serves another. That is the target's authority
/// for absolute-form and HTTP/2 requests (RFC 9112 3.2.2), else the one
/// `Host` header ([`router::check_host`] refused more than one), and
/// whether it is that header. Copies nothing but a reference count unless
/// the authority has to be made a header value.
fn forwarded_host(parts: &Parts) -> (Option<HeaderValue>, bool) {
    match router::host_source(parts) {
        None => (None, false),
        Some(HostSource::Header(h)) => (Some(h.clone()), true),
        Some(HostSource::Target(a)) => (
            match parts.headers.get(header::HOST) {
                Some(h) if h.as_bytes() == a.as_str().as_bytes() => Some(h.clone()),
                _ => HeaderValue::from_str(a.as_str()).ok(),
            },
            false,
        ),
    }
}

/// HTTP/2 may split `Cookie` into several fields; HTTP/1.1 needs one
/// (RFC 9113 8.2.3).
fn join_cookies(h: &mut http::HeaderMap) {
    let mut all = h.get_all(header::COOKIE).iter();
    let (Some(_), Some(_)) = (all.next(), all.next()) else {
        return;
    };
    let joined: Vec<&[u8]> = h
        .get_all(header::COOKIE)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    if let Ok(v) = HeaderValue::from_bytes(&joined.join(&b"; "[..])) {
        h.insert(header::COOKIE, v);
    }
}

fn error_response(e: &ProxyError) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::full(format!("{}\n", e.client_message())));
    *resp.status_mut() = e.status();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if e.closes_connection() {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let Some(wait) = e.retry_after_header() {
        h.insert(header::RETRY_AFTER, wait);
    }
    resp
}
