//! Plain values that cross the seam between the host services and the host:
//! a log line's [`Level`], a token bucket's shape ([`Bucket`]) and answer
//! ([`BucketOutcome`]) and a request's [`ClientCert`] (the contract's
//! `log-level`, `bucket-outcome` and `client-cert`; a bucket's shape is
//! the `capacity` and `refill-per-second` of a take). They sit below both
//! the services, which re-export them where plugins look for them
//! ([`log`](crate::log), [`state`](crate::state), [`fleet`](crate::fleet)),
//! and the two sides of the seam, which build and read them.

use std::time::Duration;

/// A log line's severity.
///
/// # Example
///
/// ```
/// weir_sdk::log::log(weir_sdk::log::Level::Warn, "upstream slow");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the plugin handled.
    Warn,
    /// Something failed.
    Error,
}

/// The shape of a token bucket: how many tokens it holds when full and how
/// many it regains per second. The same for a bucket of this gateway
/// ([`state::take_tokens`](crate::state::take_tokens)) and one of the
/// fleet ([`fleet::take`](crate::fleet::take)).
///
/// # Example
///
/// ```
/// let bucket = weir_sdk::state::Bucket { capacity: 10, refill_per_second: 5 };
/// # let _ = bucket;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Tokens in a full bucket (the burst size).
    pub capacity: u64,
    /// Tokens added per second, up to `capacity`.
    pub refill_per_second: u64,
}

/// The answer of a token-bucket take:
/// [`state::take_tokens`](crate::state::take_tokens)'s, or a fleet
/// bucket's ([`fleet::take`](crate::fleet::take)).
///
/// # Example
///
/// ```
/// use weir_sdk::state::{take_tokens, Bucket};
///
/// let outcome = take_tokens("client-1", Bucket { capacity: 1, refill_per_second: 1 }, 1).unwrap();
/// assert!(outcome.allowed);
/// assert_eq!(outcome.remaining, 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketOutcome {
    /// Whether the tokens were taken.
    pub allowed: bool,
    /// Whole tokens left after this take.
    pub remaining: u64,
    /// When refused: how long until enough tokens are available.
    pub retry_after: Duration,
}

/// A client certificate the gateway's listener verified (mutual TLS), as
/// [`Request::client_cert`](crate::Request::client_cert) gives it.
///
/// # Example
///
/// ```
/// use weir_sdk::testing::{with_request, TestRequest};
///
/// let req = TestRequest::get("/").client_cert("CN=billing", &["billing.internal"]);
/// with_request(req, |req| {
///     let cert = req.client_cert().unwrap();
///     assert_eq!(cert.subject, "CN=billing");
///     assert_eq!(cert.dns_names, ["billing.internal"]);
/// });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// Its subject: attributes as the certificate lists them, `TYPE=value`
    /// joined by `, `, e.g. `CN=billing, O=Example`.
    pub subject: String,
    /// The DNS names of its subjectAltName (its common name when it has
    /// none), lower-case.
    pub dns_names: Vec<String>,
}
