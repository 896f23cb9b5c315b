//! Sending the calls plugins start (`plugin::calls` checks them when they
//! start). A call goes to its upstream the way a forwarded request does
//! (`send::send`: the upstream's pending limit, balancer, health, retry
//! budget, connection pool and TLS), bounded by the upstream's connect
//! timeout and retries, and by the call's own time limit capped by the
//! request's deadline. Its answer is read whole, up to the plugin's
//! `max_call_body_bytes`, within the same time limit, and its connection
//! goes back to the pool.
//!
//! A call is a future owned by the request: waited for in place, or, for
//! a call the plugin did not wait for, a task whose handle the request
//! keeps and aborts when it is dropped. Either way nothing of a call
//! outlives its request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Version};
use http_body_util::{BodyExt, Limited};

use super::exchange::Tries;
use super::response::{Lease, ResponseBody};
use super::send::{self, Bounds};
use crate::body::RequestBody;
use crate::metrics::plugin::PluginStats;
use crate::plugin::calls::{Answered, CallError, CallSpec, Finished};
use crate::router::Router;
use crate::trace::SpanId;
use crate::trace::context::{TRACEPARENT, TRACESTATE};
use crate::upstream::Upstream;

/// What every call of a request carries from it: its id, and its trace
/// context as the upstream is sent it (with tracing on, Weir's span as
/// the parent), so the called service's spans join the request's trace.
/// A plugin that sets one of these on a call keeps its own.
#[derive(Debug, Clone)]
pub(super) struct Carried {
    pub id: HeaderValue,
    pub traceparent: Option<HeaderValue>,
    pub tracestate: Option<HeaderValue>,
}

impl Carried {
    /// What the calls of the request with `headers` (as forwarded) and
    /// `id` carry.
    pub(super) fn of(headers: &HeaderMap, id: &HeaderValue) -> Carried {
        Carried {
            id: id.clone(),
            traceparent: headers.get(TRACEPARENT).cloned(),
            tracestate: headers.get(TRACESTATE).cloned(),
        }
    }

    /// The request's `traceparent` with `span` as the parent: a recorded
    /// call's own span. Only for a context Weir wrote itself (tracing on:
    /// version 00, fixed layout).
    fn with_parent(&self, span: SpanId) -> Option<HeaderValue> {
        let tp = self.traceparent.as_ref()?.to_str().ok()?;
        let (head, flags) = (tp.get(..36)?, tp.get(52..)?);
        HeaderValue::from_str(&format!("{head}{span}{flags}")).ok()
    }
}

/// Sends `calls` at once and waits for all of them; the results are in
/// the order the calls were started, each with when it ended. `spans`,
/// when the request's calls are recorded: each call's span, its parent.
pub(super) async fn send_all(
    router: &Router,
    peer: SocketAddr,
    carried: &Carried,
    calls: Vec<CallSpec>,
    (deadline, spans): (Instant, Option<&[SpanId]>),
    stats: &PluginStats,
) -> Vec<(Finished, Instant)> {
    let sends = calls.into_iter().enumerate().map(|(i, c)| {
        let upstream = router.upstream(&c.upstream).cloned();
        let mut carried = carried.clone();
        if let Some(span) = spans.and_then(|s| s.get(i)) {
            carried.traceparent = carried.with_parent(*span).or(carried.traceparent);
        }
        async move {
            let f = send_one(upstream, peer, carried, c, deadline).await;
            (f, Instant::now())
        }
    });
    let results = futures_util::future::join_all(sends).await;
    for (r, _) in &results {
        count(stats, r);
    }
    results
}

/// Counts a finished call in its plugin's metrics.
pub(super) fn count(stats: &PluginStats, r: &Finished) {
    stats.called_out(r.label());
}

/// Sends one call. `upstream` is `None` when the configuration the request
/// started with has no upstream of that name.
pub(super) async fn send_one(
    upstream: Option<Arc<Upstream>>,
    peer: SocketAddr,
    carried: Carried,
    call: CallSpec,
    deadline: Instant,
) -> Finished {
    let (call_id, tag) = (call.id, call.tag.clone());
    let outcome = match upstream {
        None => Err(CallError::NotAllowed(format!(
            "upstream `{}` is not in the gateway's configuration",
            call.upstream
        ))),
        Some(u) => answer(&u, peer, carried, call, deadline).await,
    };
    Finished {
        id: call_id,
        tag,
        outcome,
    }
}

/// The call's time limit: its own, capped by what is left of the
/// request's deadline.
fn limit(own: Duration, deadline: Instant) -> Duration {
    own.min(deadline.saturating_duration_since(Instant::now()))
}

async fn answer(
    upstream: &Arc<Upstream>,
    peer: SocketAddr,
    carried: Carried,
    call: CallSpec,
    deadline: Instant,
) -> Result<Answered, CallError> {
    let CallSpec {
        method,
        path,
        headers,
        body,
        timeout,
        max_body,
        in_flight,
        ..
    } = call;
    // The call counts toward its plugin's `max_calls_in_flight` until its
    // answer is read or it is dropped.
    let _in_flight = in_flight;
    let time = limit(timeout, deadline);
    if time.is_zero() {
        return Err(CallError::Deadline);
    }
    let req = request(upstream, carried, (method, path, headers), body)?;
    let exchange = async {
        let bounds = Bounds {
            retry_attempts: upstream.config.retry.attempts,
            connect_timeout: upstream.config.connect_timeout.min(time),
            max_body_bytes: u64::MAX,
            raw_head: false,
        };
        let (parts, body) = req.into_parts();
        let mut tries = Tries::default();
        let sent = send::send(
            &bounds, upstream, peer, parts, body, false, time, &mut tries, None,
        )
        .await
        .map_err(|e| {
            if e.status() == http::StatusCode::GATEWAY_TIMEOUT {
                CallError::Timeout
            } else {
                CallError::Failed(e.to_string())
            }
        })?;
        let (head, body) = sent.resp.into_parts();
        let body = ResponseBody::upstream(
            body,
            Lease::new(sent.endpoint),
            upstream.config.read_timeout,
        );
        let body = match Limited::new(body, max_body).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(CallError::TooLarge(max_body as u64));
            }
            Err(e) => {
                return Err(CallError::Failed(format!(
                    "the answer's body broke off: {e}"
                )));
            }
        };
        let headers = head
            .headers
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        Ok(Answered {
            status: head.status.as_u16(),
            headers,
            body: Vec::from(body),
        })
    };
    match tokio::time::timeout(time, exchange).await {
        Ok(r) => r,
        Err(_) => Err(CallError::Timeout),
    }
}

/// The request a call sends: its method, path and headers, `host` (the
/// upstream's TLS name or first endpoint unless the plugin set one),
/// `x-request-id` (the request the call was made for) and the request's
/// trace context (unless the plugin set its own) added.
fn request(
    upstream: &Upstream,
    carried: Carried,
    (method, path, mut headers): (http::Method, PathAndQuery, HeaderMap),
    body: Bytes,
) -> Result<Request<RequestBody>, CallError> {
    let len = body.len();
    let mut req = Request::new(RequestBody::full(body));
    *req.method_mut() = method;
    *req.uri_mut() = http::Uri::from(path);
    *req.version_mut() = Version::HTTP_11;
    if !headers.contains_key(header::HOST) {
        let cfg = &upstream.config;
        let host = match (
            cfg.tls.as_ref().and_then(|t| t.sni.as_deref()),
            cfg.endpoints.first(),
        ) {
            (Some(sni), _) => sni.to_owned(),
            (None, Some(ep)) => format!("{}:{}", ep.host, ep.port),
            (None, None) => cfg.name.clone(),
        };
        let host = HeaderValue::from_str(&host)
            .map_err(|_| CallError::Failed("the upstream's host is not a header value".into()))?;
        headers.insert(header::HOST, host);
    }
    headers.insert(super::headers::X_REQUEST_ID.clone(), carried.id);
    if !headers.contains_key(TRACEPARENT)
        && let Some(tp) = carried.traceparent
    {
        headers.insert(TRACEPARENT, tp);
        if let Some(ts) = carried.tracestate {
            headers.entry(TRACESTATE).or_insert(ts);
        }
    }
    if len > 0 {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    *req.headers_mut() = headers;
    Ok(req)
}
