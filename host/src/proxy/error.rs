//! Why a request could not be proxied, where the fault lies, and the one
//! mapping from error to HTTP status.

use http::StatusCode;

use crate::metrics::listener::ClientError;

/// Whose fault an error is: it decides the log level and, later, metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    Client,
    Upstream,
    Plugin,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no route matches this request")]
    NoRoute,
    #[error("request target is longer than {limit} bytes")]
    UriTooLong { limit: usize },
    #[error("bad request framing: {0}")]
    BadFraming(&'static str),
    #[error("bad request target: {0}")]
    BadTarget(&'static str),
    /// A header the request is read by is malformed (`grpc-timeout`).
    #[error("bad request header: {0}")]
    BadHeader(&'static str),
    #[error("request body is larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("upstream `{upstream}` has no endpoint to send to")]
    NoEndpoint { upstream: String },
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: crate::upstream::ConnectError,
    },
    #[error("{endpoint} did not answer within {timeout:?}")]
    UpstreamTimeout {
        endpoint: String,
        timeout: std::time::Duration,
    },
    /// The upstream answered 101 to a request that offered no upgrade
    /// through Weir, or switched to a protocol that was not offered.
    #[error("{endpoint} switched protocols without an allowed upgrade offered")]
    BadSwitch { endpoint: String },
    #[error("{endpoint} failed: {source}")]
    Upstream {
        endpoint: String,
        source: crate::upstream::H1Error,
    },
    #[error("{endpoint} failed over HTTP/2: {source}")]
    Http2 {
        endpoint: String,
        source: crate::upstream::http2::H2Error,
    },
    /// A plugin with `failure = "closed"` failed (trap, deadline, memory
    /// cap, invalid answer), or could not be called (`busy`: every
    /// instance busy, one being replaced, or its breaker open).
    #[error("{failure}")]
    Plugin {
        failure: crate::plugin::Failure,
        busy: bool,
    },
    #[error("plugin `{plugin}` routed to upstream `{name}`, which is not defined")]
    UnknownUpstream {
        plugin: std::sync::Arc<str>,
        name: String,
    },
    #[error("the request body was not received in time")]
    BodyTimeout,
    /// The client's body broke off or had bad framing while it streamed
    /// upstream; nothing is held against the endpoint.
    #[error("the request body broke off: {reason}")]
    RequestBodyBroken { reason: String },
    #[error(
        "the upstream response body is larger than the {limit}-byte cap of response-body plugins"
    )]
    ResponseBodyTooLarge { limit: u64 },
    #[error("the upstream response body broke off")]
    ResponseBodyBroken,
    /// A per-upstream limit is full; the request is refused at once
    /// rather than queued.
    #[error("upstream `{upstream}` is at its limit of {limit} {what}")]
    Overloaded {
        upstream: String,
        what: crate::upstream::Limit,
        limit: usize,
    },
}

impl ProxyError {
    pub fn source_kind(&self) -> ErrorSource {
        match self {
            ProxyError::NoRoute
            | ProxyError::UriTooLong { .. }
            | ProxyError::BadFraming(_)
            | ProxyError::BadTarget(_)
            | ProxyError::BadHeader(_)
            | ProxyError::BodyTooLarge { .. }
            | ProxyError::BodyTimeout
            | ProxyError::RequestBodyBroken { .. } => ErrorSource::Client,
            ProxyError::Plugin { .. } | ProxyError::UnknownUpstream { .. } => ErrorSource::Plugin,
            ProxyError::ResponseBodyTooLarge { .. } | ProxyError::ResponseBodyBroken => {
                ErrorSource::Upstream
            }
            ProxyError::NoEndpoint { .. }
            | ProxyError::Connect { .. }
            | ProxyError::UpstreamTimeout { .. }
            | ProxyError::Upstream { .. }
            | ProxyError::Http2 { .. }
            | ProxyError::BadSwitch { .. }
            | ProxyError::Overloaded { .. } => ErrorSource::Upstream,
        }
    }

    /// The fixed reason a client's error is counted under in the
    /// listener's metrics; `None` for errors that are not the client's.
    pub fn client_reason(&self) -> Option<ClientError> {
        Some(match self {
            ProxyError::NoRoute => ClientError::NoRoute,
            ProxyError::UriTooLong { .. } => ClientError::UriTooLong,
            ProxyError::BadFraming(_) => ClientError::BadFraming,
            ProxyError::BadTarget(_) => ClientError::BadTarget,
            ProxyError::BadHeader(_) => ClientError::BadHeader,
            ProxyError::BodyTooLarge { .. } => ClientError::BodyTooLarge,
            ProxyError::BodyTimeout => ClientError::BodyTimeout,
            ProxyError::RequestBodyBroken { .. } => ClientError::BodyBroken,
            _ => return None,
        })
    }

    /// The status the client receives.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            ProxyError::BadFraming(_)
            | ProxyError::BadTarget(_)
            | ProxyError::BadHeader(_)
            | ProxyError::RequestBodyBroken { .. } => StatusCode::BAD_REQUEST,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::NoEndpoint { .. } | ProxyError::Overloaded { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::Connect {
                source: crate::upstream::ConnectError::Timeout(_),
                ..
            }
            | ProxyError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Connect { .. }
            | ProxyError::Upstream { .. }
            | ProxyError::Http2 { .. }
            | ProxyError::BadSwitch { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Plugin { busy: true, .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Plugin { busy: false, .. } | ProxyError::UnknownUpstream { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ProxyError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::ResponseBodyTooLarge { .. } | ProxyError::ResponseBodyBroken => {
                StatusCode::BAD_GATEWAY
            }
        }
    }

    /// A short reason safe to show the client (no names or addresses),
    /// for answers whose status alone does not say what to do.
    pub fn client_detail(&self) -> Option<&'static str> {
        match self {
            ProxyError::Overloaded { what, .. } => Some(match what {
                crate::upstream::Limit::Connections => "upstream connection limit reached",
                crate::upstream::Limit::PendingRequests => "upstream pending request limit reached",
            }),
            ProxyError::NoEndpoint { .. } => Some("no healthy upstream endpoint"),
            ProxyError::BadTarget(why) | ProxyError::BadHeader(why) => Some(why),
            _ => None,
        }
    }

    /// A plugin call refused without running (an open breaker, a spent
    /// CPU share): `proxy::plugins` logs those, rate-limited.
    pub fn refused_at_once(&self) -> bool {
        matches!(self, ProxyError::Plugin { failure, .. } if failure.kind.retry_after().is_some())
    }

    /// How long the client should wait before trying again (`Retry-After`),
    /// when that is known: a plugin whose breaker is open.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            ProxyError::Plugin { failure, .. } => failure.kind.retry_after(),
            _ => None,
        }
    }

    /// What the client is told: the status's reason, and the detail
    /// when there is one (`Service Unavailable: no healthy upstream
    /// endpoint`).
    pub fn client_message(&self) -> String {
        let reason = self.status().canonical_reason().unwrap_or("error");
        match self.client_detail() {
            Some(detail) => format!("{reason}: {detail}"),
            None => reason.to_owned(),
        }
    }

    /// [`ProxyError::retry_after`] as a `Retry-After` value: whole seconds
    /// (RFC 9110, section 10.2.3), rounded up, so a client that waits this
    /// long finds the probe's turn come.
    pub fn retry_after_header(&self) -> Option<http::HeaderValue> {
        let wait = self.retry_after()?;
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Some(http::HeaderValue::from(secs.max(1)))
    }

    /// Whether the client connection must close after the answer: when the
    /// request's body was not (or cannot be) read to its end, the next bytes
    /// on the connection are not a request.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            ProxyError::BadFraming(_)
                | ProxyError::BadTarget(_)
                | ProxyError::BodyTooLarge { .. }
                | ProxyError::UriTooLong { .. }
                | ProxyError::BodyTimeout
                | ProxyError::RequestBodyBroken { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_body_failures_are_the_clients() {
        for (e, status) in [
            (
                ProxyError::RequestBodyBroken {
                    reason: "cut".into(),
                },
                StatusCode::BAD_REQUEST,
            ),
            (ProxyError::BodyTimeout, StatusCode::REQUEST_TIMEOUT),
        ] {
            assert_eq!(e.status(), status);
            assert_eq!(e.source_kind(), ErrorSource::Client);
            assert!(e.closes_connection());
        }
    }

    #[test]
    fn every_client_error_has_a_reason_and_no_other_error_has_one() {
        let errors = [
            ProxyError::NoRoute,
            ProxyError::UriTooLong { limit: 1 },
            ProxyError::BadFraming("x"),
            ProxyError::BadTarget("x"),
            ProxyError::BadHeader("x"),
            ProxyError::BodyTooLarge { limit: 1 },
            ProxyError::BodyTimeout,
            ProxyError::RequestBodyBroken { reason: "x".into() },
            ProxyError::NoEndpoint {
                upstream: "u".into(),
            },
            ProxyError::ResponseBodyBroken,
            ProxyError::BadSwitch {
                endpoint: "e".into(),
            },
        ];
        for e in &errors {
            assert_eq!(
                e.client_reason().is_some(),
                e.source_kind() == ErrorSource::Client,
                "{e}"
            );
            // Weir's own refusals of a client are 4xx.
            if e.client_reason().is_some() {
                assert!(e.status().is_client_error(), "{e}");
            }
        }
    }

    #[test]
    fn an_open_breaker_is_a_503_with_a_retry_after() {
        use crate::plugin::{Failure, FailureKind};
        let kind = FailureKind::Breaker {
            after: 5,
            retry_after: std::time::Duration::from_millis(1500),
        };
        let e = ProxyError::Plugin {
            busy: kind.unavailable(),
            failure: Failure {
                plugin: "p".into(),
                kind,
            },
        };
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            e.retry_after(),
            Some(std::time::Duration::from_millis(1500))
        );
        assert_eq!(e.source_kind(), ErrorSource::Plugin);
    }
}
