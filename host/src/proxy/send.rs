//! Sending one request to its upstream: admit it against the
//! pending limit, pick an endpoint, get a connection, send, and retry when
//! that is safe, always on an endpoint not tried yet, with backoff, within
//! the request's deadline and the upstream's retry budget.
//!
//! What may be retried:
//! - a request that never left (connect failure, or a pooled connection
//!   found closed as it was used): always, because its body, streaming or
//!   not, was not read;
//! - a request that was sent and failed (connection reset, or a status in
//!   `retry.statuses`): only when it is idempotent and has no body, since
//!   Weir streams bodies and keeps no copy to replay, and only when
//!   `retry.statuses` is not empty: that is when the request head is
//!   copied before sending (one `HeaderMap` clone per such request, and
//!   only when the upstream has another endpoint to retry on).
//!
//! The deadline (`timeout`) covers every try and backoff together; a try
//! that runs into it ends the request with 504, not with another try.
//!
//! The client's own body can fail a try too: an upload aborted or with
//! bad framing ends the request with 400, one stalled past the deadline
//! with 408. Neither is the endpoint's fault, so neither is recorded
//! against it (passive health) nor retried.
//!
//! Every try is counted in its endpoint's metrics by how it ended
//! ([`outcome_of`]), with the time to its response head; retries, the
//! budget's refusals and the limits' refusals in the upstream's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{Method, Request, Response};

use super::error::ProxyError;
use super::exchange::Tries;
use crate::body::{self, RequestBody, RequestHead};
use crate::metrics::upstream::{LimitKind, TryOutcome};
use crate::trace::Trace;
use crate::upstream::http2::{self, H2Failure};
use crate::upstream::{
    Checkout, ConnectError, Endpoint, Limit, Outcome, Outstanding, Received, SendError, Tried,
    Upstream,
};
use crate::worker;

/// What a request's tries are bounded by: its route's settings, or, for a
/// plugin's call, its upstream's.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds {
    /// Retries after the first try.
    pub retry_attempts: u32,
    pub connect_timeout: Duration,
    /// The request body's limit, to tell a client's oversized upload from
    /// an endpoint's failure.
    pub max_body_bytes: u64,
    /// The response goes to an HTTP/1.1 client with no edits but this
    /// hop's: an HTTP/1.1 upstream's fields may be kept as received
    /// (`upstream::h1::Connection::send`).
    pub raw_head: bool,
}

impl Bounds {
    pub(super) fn of(route: &crate::router::Route) -> Bounds {
        Bounds {
            retry_attempts: route.retry_attempts,
            connect_timeout: route.connect_timeout,
            max_body_bytes: route.max_body_bytes,
            raw_head: false,
        }
    }
}

/// A response head from the upstream (its body holds the HTTP/1.1
/// connection or HTTP/2 stream it came on), and its endpoint.
pub(super) struct Sent {
    pub resp: Response<Received>,
    pub endpoint: Arc<Endpoint>,
}

/// How one try ended.
enum Attempt {
    Answered(Sent),
    /// The request never left; it comes back untouched. `stale` when the
    /// endpoint was reached but a pooled connection had just closed.
    /// `routine` when that was an HTTP/2 connection going away (GOAWAY, or
    /// closed): connection rotation, not an overload or a failure, so its
    /// retry is not charged to the retry budget.
    NotSent {
        req: Request<RequestBody>,
        error: ProxyError,
        stale: bool,
        routine: bool,
    },
    /// Sent, then failed: only a replayable request may try again.
    Failed(ProxyError),
    /// Nothing more to try: deadline, body limit, connection limit.
    Final(ProxyError),
}

impl Attempt {
    /// How the try ended, as its span says it.
    fn summary(&self) -> (&'static str, Option<u16>) {
        match self {
            Attempt::Answered(f) => ("answered", Some(f.resp.status().as_u16())),
            Attempt::NotSent { .. } => ("not_sent", None),
            Attempt::Failed(_) => ("failed", None),
            Attempt::Final(_) => ("stopped", None),
        }
    }

    /// Gives up a try that is retried elsewhere: logs why, and hands back
    /// the request when it never left.
    fn into_retry(self, ep: &Endpoint, retry: u32) -> Option<Request<RequestBody>> {
        match self {
            Attempt::NotSent { req, error, .. } => {
                tracing::debug!(endpoint = %ep.label, %error, retry, "retrying elsewhere");
                Some(req)
            }
            Attempt::Failed(error) => {
                tracing::debug!(endpoint = %ep.label, %error, retry, "retrying elsewhere");
                None
            }
            Attempt::Answered(f) => {
                tracing::debug!(endpoint = %ep.label, status = f.resp.status().as_u16(), retry, "retrying elsewhere");
                None
            }
            Attempt::Final(_) => unreachable!("final outcomes are not retried"),
        }
    }
}

/// A copy of a bodiless request's head when one could be needed to send
/// it again: status retries are configured and the request could be
/// replayed somewhere else (a retry after a sent try never goes back to
/// an endpoint already tried, so a single endpoint needs no copy).
/// Connect retries need no copy; the copy also serves a retry after a
/// reset.
fn replay_copy(
    route: &Bounds,
    upstream: &Upstream,
    parts: &Parts,
    body: &RequestBody,
    upgrade: bool,
) -> Option<RequestHead> {
    (route.retry_attempts > 0
        && !upstream.config.retry.statuses.is_empty()
        && !upgrade
        && matches!(body, RequestBody::Empty)
        && is_idempotent(&parts.method)
        && upstream.has_alternatives())
    .then(|| RequestHead::of(parts))
}

/// Sends the request to `upstream` (the route's, or one a plugin chose),
/// with retries, under `route`'s limits and the deadline `timeout` (the
/// route's, or less when a gRPC client asked for less).
// The request, where it goes and under which limits, and the two parts
// of its record a try writes (the access log's tries, the trace's spans).
#[allow(clippy::too_many_arguments)]
pub(super) async fn send(
    route: &Bounds,
    upstream: &Arc<Upstream>,
    peer: SocketAddr,
    parts: Parts,
    body: RequestBody,
    upgrade: bool,
    timeout: Duration,
    tries: &mut Tries,
    mut trace: Option<&mut Trace>,
) -> Result<Sent, ProxyError> {
    let _pending = upstream.admit().map_err(|o| {
        upstream.stats.limited(LimitKind::PendingRequests);
        ProxyError::Overloaded {
            upstream: upstream.config.name.clone(),
            what: Limit::PendingRequests,
            limit: o.limit,
        }
    })?;
    // One clock read: the deadline, the retry budget's window, and the
    // age of a pooled connection.
    let now = std::time::Instant::now();
    let deadline = tokio::time::Instant::from_std(now) + timeout;
    let hash = upstream.hash_of(&parts, peer);
    let retry = &upstream.config.retry;
    let replay = replay_copy(route, upstream, &parts, &body, upgrade);
    if route.retry_attempts > 0 {
        upstream.budget.record_request(worker::ms_at(now));
    }

    let mut tried = Tried::default();
    let mut req = Some(Request::from_parts(parts, body));
    let mut retries = 0;
    let mut ep = upstream
        .pick(hash, &tried)
        .ok_or_else(|| ProxyError::NoEndpoint {
            upstream: upstream.config.name.clone(),
        })?;
    loop {
        tried.push(ep.id);
        let Some(mut request) = req
            .take()
            .or_else(|| replay.as_ref().map(|h| h.request(RequestBody::Empty)))
        else {
            unreachable!("a try is only repeated with the request back or a replay copy");
        };
        // A retry, after a backoff, reads the clock afresh.
        let at = if retries == 0 {
            now
        } else {
            std::time::Instant::now()
        };
        // A recorded request's try is a span of its own, the parent the
        // upstream is told.
        let span = trace
            .as_deref_mut()
            .map(|t| t.try_begins(request.headers_mut()));
        let outcome = attempt(
            route,
            upstream,
            &ep,
            request,
            (deadline, timeout),
            upgrade,
            at,
        )
        .await;
        if let (Some(t), Some(span)) = (trace.as_deref_mut(), span) {
            let (what, status) = outcome.summary();
            t.try_ended(span, at, (&upstream.config.name, &ep.label), what, status);
        }
        count(upstream, &ep, &outcome, at);
        let (may_retry, stale, routine) = match &outcome {
            Attempt::Answered(f) => (
                replay.is_some() && retry.statuses.contains(&f.resp.status().as_u16()),
                false,
                false,
            ),
            Attempt::NotSent { stale, routine, .. } => (true, *stale, *routine),
            Attempt::Failed(_) => (replay.is_some(), false, false),
            Attempt::Final(_) => (false, false, false),
        };
        let next = if may_retry && retries < route.retry_attempts {
            // A closed pooled connection says nothing about the endpoint:
            // with nowhere else to go, it may be tried again afresh.
            upstream
                .pick(hash, &tried)
                .or_else(|| stale.then(|| ep.clone()))
                .filter(|_| routine || upstream.take_retry(worker::now_ms()))
        } else {
            None
        };
        let Some(next) = next else {
            tries.note(retries + 1, upstream, &ep, now);
            return match outcome {
                Attempt::Answered(f) => Ok(f),
                Attempt::NotSent { error, .. } | Attempt::Failed(error) | Attempt::Final(error) => {
                    Err(error)
                }
            };
        };
        retries += 1;
        upstream.stats.retried();
        req = outcome.into_retry(&ep, retries);
        if !stale {
            let wait = backoff(retries, retry.backoff, retry.max_backoff);
            // Boxed: a timer is large, and a backoff is rare; inline it
            // would grow every request's future.
            Box::pin(tokio::time::sleep_until(
                deadline.min(tokio::time::Instant::now() + wait),
            ))
            .await;
        }
        ep = next;
    }
}

/// Counts a try that started at `started` in the metrics: by its outcome
/// in its endpoint's, or as the connection limit's refusal in the
/// upstream's (the request never reached the endpoint).
fn count(upstream: &Upstream, ep: &Endpoint, a: &Attempt, started: std::time::Instant) {
    match outcome_of(a) {
        Some(TryOutcome::Response) => ep.stats().answered(started.elapsed()),
        Some(outcome) => ep.stats().tried(outcome),
        None => upstream.stats.limited(LimitKind::Connections),
    }
}

/// How a try ended, for the metrics; `None` when the upstream's
/// connection limit refused it before it reached the endpoint.
fn outcome_of(a: &Attempt) -> Option<TryOutcome> {
    use crate::upstream::ConnectError as Connect;
    let error = match a {
        Attempt::Answered(_) => return Some(TryOutcome::Response),
        Attempt::NotSent { error, .. } | Attempt::Failed(error) | Attempt::Final(error) => error,
    };
    let sent = !matches!(a, Attempt::NotSent { .. });
    Some(match error {
        ProxyError::Overloaded { .. } => return None,
        ProxyError::Connect {
            source: Connect::Timeout(_),
            ..
        } => TryOutcome::ConnectTimeout,
        ProxyError::Connect {
            source: Connect::UpgradeOverH2(_),
            ..
        } => TryOutcome::LocalError,
        ProxyError::Connect { .. } => TryOutcome::ConnectError,
        ProxyError::Upstream { .. } if sent => TryOutcome::Reset,
        ProxyError::Upstream { .. } => TryOutcome::ClosedBeforeSend,
        ProxyError::Http2 { source, .. } => {
            let e = &source.0;
            if e.is_go_away() {
                TryOutcome::GoAway
            } else if e.is_remote() && e.reason() == Some(h2::Reason::REFUSED_STREAM) {
                TryOutcome::RefusedStream
            } else if !sent {
                TryOutcome::ClosedBeforeSend
            } else if e.reason().is_some() || e.is_io() {
                TryOutcome::Reset
            } else {
                // A head h2 refused to send: a user error, not the endpoint's.
                TryOutcome::LocalError
            }
        }
        ProxyError::UpstreamTimeout { .. } => TryOutcome::Timeout,
        ProxyError::BodyTimeout
        | ProxyError::BodyTooLarge { .. }
        | ProxyError::RequestBodyBroken { .. } => TryOutcome::ClientBody,
        _ => TryOutcome::LocalError,
    })
}

/// One try on one endpoint.
async fn attempt(
    route: &Bounds,
    upstream: &Upstream,
    ep: &Arc<Endpoint>,
    req: Request<RequestBody>,
    (deadline, timeout): (tokio::time::Instant, Duration),
    upgrade: bool,
    now: std::time::Instant,
) -> Attempt {
    let connect_timeout = route.connect_timeout;
    let _outstanding = Outstanding::new(ep.clone());
    let started = upstream.try_started();
    let connecting = async {
        if upgrade {
            ep.connect_for_upgrade(connect_timeout)
                .await
                .map(Checkout::H1)
        } else {
            ep.checkout(connect_timeout, now).await
        }
    };
    let conn = match tokio::time::timeout_at(deadline, connecting).await {
        Err(_) => {
            return Attempt::Final(ProxyError::UpstreamTimeout {
                endpoint: ep.label.clone(),
                timeout,
            });
        }
        Ok(Err(ConnectError::LimitReached { limit })) => {
            return Attempt::Final(ProxyError::Overloaded {
                upstream: upstream.config.name.clone(),
                what: Limit::Connections,
                limit,
            });
        }
        Ok(Err(source)) => {
            upstream.record(ep, Outcome::ConnectFailed, started);
            return Attempt::NotSent {
                req,
                error: ProxyError::Connect {
                    endpoint: ep.label.clone(),
                    source,
                },
                stale: false,
                routine: false,
            };
        }
        Ok(Ok(c)) => c,
    };
    let conn = match conn {
        Checkout::H1(c) => c,
        Checkout::H2(stream) => {
            // Boxed: an HTTP/2 try holds its stream, the kept head and the
            // body pump; inline, they would grow every request's future,
            // HTTP/1.1 ones too, and each HTTP/2 stream's task is moved
            // several times on its way to the executor.
            return Box::pin(attempt_h2(
                route,
                upstream,
                ep,
                stream,
                req,
                (deadline, timeout),
                started,
            ))
            .await;
        }
    };
    // Kept to tell, at the deadline, a stalled upload from a slow upstream.
    let stalled = req.body().stalled().cloned();
    // Pinned where it is made: the timeout then holds a reference, not a
    // second copy of the send's future.
    let send = std::pin::pin!(conn.send(req, route.raw_head));
    match tokio::time::timeout_at(deadline, send).await {
        Err(_) => past_deadline(upstream, ep, stalled.as_deref(), started, timeout),
        Ok(Err(SendError {
            req: Some(req),
            error,
        })) => Attempt::NotSent {
            req,
            error: ProxyError::Upstream {
                endpoint: ep.label.clone(),
                source: error,
            },
            stale: true,
            routine: false,
        },
        Ok(Err(SendError {
            req: None,
            error: source,
        })) => {
            if let Some(e) = client_body_failure(&source, route.max_body_bytes) {
                return Attempt::Final(e);
            }
            upstream.record(ep, Outcome::Failed, started);
            Attempt::Failed(ProxyError::Upstream {
                endpoint: ep.label.clone(),
                source,
            })
        }
        Ok(Ok(resp)) => {
            upstream.record(ep, Outcome::Status(resp.status().as_u16()), started);
            Attempt::Answered(Sent {
                resp,
                endpoint: ep.clone(),
            })
        }
    }
}

/// One try on a stream of an HTTP/2 connection. A stream the upstream
/// refused unprocessed (`REFUSED_STREAM`, or above a GOAWAY's last stream
/// id) comes back as not sent, like a pooled HTTP/1.1 connection found
/// closed: it is nobody's fault and may go again at once, also to the
/// same endpoint on another connection.
async fn attempt_h2(
    route: &Bounds,
    upstream: &Upstream,
    ep: &Arc<Endpoint>,
    stream: http2::Stream,
    req: Request<RequestBody>,
    (deadline, timeout): (tokio::time::Instant, Duration),
    started: crate::upstream::TryStart,
) -> Attempt {
    let stalled = req.body().stalled().cloned();
    // A copy for a replay only when a retry is possible at all.
    let keep = route.retry_attempts > 0;
    let sending = http2::send(stream, req, ep.scheme(), &ep.label, keep);
    let failed = |source| ProxyError::Http2 {
        endpoint: ep.label.clone(),
        source: http2::H2Error(source),
    };
    match tokio::time::timeout_at(deadline, sending).await {
        Err(_) => past_deadline(upstream, ep, stalled.as_deref(), started, timeout),
        Ok(Ok(resp)) => {
            upstream.record(ep, Outcome::Status(resp.status().as_u16()), started);
            Attempt::Answered(Sent {
                resp: resp.map(Received::H2),
                endpoint: ep.clone(),
            })
        }
        Ok(Err(H2Failure::Unprocessed {
            req: Some(req),
            error,
        })) => Attempt::NotSent {
            req: *req,
            routine: error.is_go_away() || error.is_io(),
            error: failed(error),
            stale: true,
        },
        // Unprocessed, but too much of its body went to keep a copy: only
        // a bodiless replay copy (status retries) may still go again.
        Ok(Err(H2Failure::Unprocessed { req: None, error })) => Attempt::Failed(failed(error)),
        Ok(Err(H2Failure::Failed(error))) => {
            // A head h2 refused to send (a user error: no reason, no I/O)
            // is not the endpoint's failure.
            if error.reason().is_some() || error.is_io() {
                upstream.record(ep, Outcome::Failed, started);
            }
            Attempt::Failed(failed(error))
        }
        Ok(Err(H2Failure::Body(e))) => Attempt::Final(
            client_body_failure(&*e, route.max_body_bytes).unwrap_or_else(|| {
                ProxyError::RequestBodyBroken {
                    reason: e.to_string(),
                }
            }),
        ),
    }
}

/// A try that ran into the request's deadline: the client's fault when
/// the upstream was waiting for its stalled upload, else the endpoint's.
fn past_deadline(
    upstream: &Upstream,
    ep: &Endpoint,
    stalled: Option<&body::Stalled>,
    started: crate::upstream::TryStart,
    timeout: Duration,
) -> Attempt {
    if stalled.is_some_and(body::Stalled::get) {
        return Attempt::Final(ProxyError::BodyTimeout);
    }
    upstream.record(ep, Outcome::Failed, started);
    Attempt::Final(ProxyError::UpstreamTimeout {
        endpoint: ep.label.clone(),
        timeout,
    })
}

/// The client's answer when a send failed on the client's own body: it
/// grew past the route's limit, or broke off. Neither is the endpoint's
/// fault, so neither is recorded against it.
fn client_body_failure(
    source: &(dyn std::error::Error + 'static),
    limit: u64,
) -> Option<ProxyError> {
    if body::is_body_too_large(source) {
        return Some(ProxyError::BodyTooLarge { limit });
    }
    body::client_body_error(source).map(|e| ProxyError::RequestBodyBroken {
        reason: e.to_string(),
    })
}

/// RFC 9110 9.2.2: methods whose repetition has the effect of one request.
fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Exponential backoff for the n-th retry (1-based), capped, with jitter
/// over its upper half so retries from many clients do not line up.
fn backoff(n: u32, base: Duration, max: Duration) -> Duration {
    let full = base.saturating_mul(1 << (n - 1).min(16)).min(max);
    let half = full / 2;
    half + half.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(10);
        let max = Duration::from_millis(50);
        for _ in 0..100 {
            let b1 = backoff(1, base, max);
            assert!(b1 >= Duration::from_millis(5) && b1 <= base);
            let b3 = backoff(3, base, max);
            assert!(b3 >= Duration::from_millis(20) && b3 <= Duration::from_millis(40));
            assert!(backoff(30, base, max) <= max);
        }
    }

    #[test]
    fn only_safe_methods_are_replayed() {
        assert!(is_idempotent(&Method::GET));
        assert!(is_idempotent(&Method::PUT));
        assert!(!is_idempotent(&Method::POST));
        assert!(!is_idempotent(&Method::PATCH));
    }
}
