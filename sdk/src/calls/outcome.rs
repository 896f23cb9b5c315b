//! What a call gives back: its [`CallId`] when it starts, and a
//! [`CallResult`] when it has finished, holding the upstream's
//! [`CallResponse`] or the [`CallError`] that kept it from one. Plain
//! values: both sides of the seam build them, and the phases that receive
//! results read them.

use std::fmt;

use serde::de::DeserializeOwned;

/// A call's id, as [`Call::start`](crate::calls::Call::start) returned it:
/// unique within the request, and carried by the call's [`CallResult`].
/// Ids grow in the order calls start.
///
/// # Example
///
/// ```
/// use weir_sdk::calls::Call;
/// use weir_sdk::testing::{TestCallResponse, TestHost, TestRequest};
/// use weir_sdk::{Action, Plugin, Request};
/// # struct Two;
/// # impl Plugin for Two {
/// #     type Config = serde::de::IgnoredAny;
/// #     fn new(_: Self::Config) -> Result<Self, String> { Ok(Two) }
/// #     fn on_request(&mut self, _: &mut Request<'_>) -> Action {
/// #         let a = Call::get("auth", "/a").start().unwrap();
/// #         let b = Call::get("auth", "/b").start().unwrap();
/// #         assert_ne!(a, b);
/// #         Action::Continue
/// #     }
/// # }
/// let mut host = TestHost::<Two>::new(serde_json::json!({})).unwrap();
/// host.allow_calls(["auth"]).answer_calls("auth", TestCallResponse::new(204));
/// let exchange = host.run(TestRequest::get("/"));
/// let ids: Vec<_> = exchange.calls().iter().map(|c| c.id()).collect();
/// assert!(ids[0] < ids[1]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallId(pub(crate) u32);

/// The id's number, as the gateway's logs show it.
impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A finished call, as the `*_calls` phases of
/// [`Plugin`](crate::Plugin) receive it: which call it was (its id and
/// tag) and how it ended.
///
/// # Example
///
/// ```
/// use weir_sdk::calls::{CallError, CallResult};
///
/// fn consumer(results: &[CallResult]) -> Option<String> {
///     let auth = results.iter().find(|r| r.tag == "auth")?;
///     match &auth.outcome {
///         Ok(resp) if resp.is_success() => resp.header("x-consumer").map(str::to_owned),
///         Ok(_) | Err(CallError::Timeout) | Err(_) => None,
///     }
/// }
/// # assert_eq!(consumer(&[]), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallResult {
    /// What [`Call::start`](crate::calls::Call::start) returned for it.
    pub id: CallId,
    /// The call's [`tag`](crate::calls::Call::tag), unchanged.
    pub tag: String,
    /// The upstream's answer, or why there is none.
    pub outcome: Result<CallResponse, CallError>,
}

/// What a call's upstream answered: the whole response, its body at most
/// the plugin's `max_call_body_bytes`.
///
/// # Example
///
/// ```
/// use weir_sdk::calls::CallResponse;
///
/// let resp = CallResponse {
///     status: 200,
///     headers: vec![("content-type".into(), "application/json".into())],
///     body: br#"{"sub":"ada"}"#.to_vec(),
/// };
/// assert!(resp.is_success());
/// assert_eq!(resp.header("Content-Type"), Some("application/json"));
/// assert_eq!(resp.text(), Some(r#"{"sub":"ada"}"#));
/// let claims: serde_json::Value = resp.json().unwrap();
/// assert_eq!(claims["sub"], "ada");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallResponse {
    /// The status code.
    pub status: u16,
    /// The header fields, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl CallResponse {
    /// Whether the status is 2xx.
    ///
    /// # Example
    ///
    /// ```
    /// # use weir_sdk::calls::CallResponse;
    /// let resp = CallResponse { status: 403, headers: vec![], body: vec![] };
    /// assert!(!resp.is_success());
    /// ```
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of a header; the name is case-insensitive.
    ///
    /// # Example
    ///
    /// See [`CallResponse`].
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order; the name is case-insensitive.
    ///
    /// # Example
    ///
    /// ```
    /// # use weir_sdk::calls::CallResponse;
    /// let resp = CallResponse {
    ///     status: 200,
    ///     headers: vec![("x-role".into(), "a".into()), ("x-role".into(), "b".into())],
    ///     body: vec![],
    /// };
    /// assert_eq!(resp.header_all("X-Role"), ["a", "b"]);
    /// ```
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as text; `None` if it is not UTF-8.
    ///
    /// # Example
    ///
    /// ```
    /// # use weir_sdk::calls::CallResponse;
    /// let resp = CallResponse { status: 200, headers: vec![], body: vec![0xff] };
    /// assert_eq!(resp.text(), None);
    /// ```
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// The body parsed as JSON.
    ///
    /// # Example
    ///
    /// ```
    /// # use weir_sdk::calls::CallResponse;
    /// #[derive(serde::Deserialize)]
    /// struct Verdict { allow: bool }
    ///
    /// let resp = CallResponse { status: 200, headers: vec![], body: br#"{"allow":true}"#.to_vec() };
    /// assert!(resp.json::<Verdict>().unwrap().allow);
    /// assert!(resp.json::<Vec<u8>>().is_err());
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// Why a call was not started ([`Call::start`](crate::calls::Call::start)'s
/// error), or why it has no answer (a [`CallResult`]'s). Each variant is
/// the contract's `call-error` of the same name; the texts are the
/// gateway's, naming the rule that refused the call.
///
/// # Example
///
/// ```
/// use weir_sdk::calls::CallError;
///
/// let why = "upstream `billing` is not in this plugin's `calls` list ([plugin_limits.ext-auth] calls)";
/// assert_eq!(CallError::NotAllowed(why.into()).to_string(), format!("call not allowed: {why}"));
/// assert_eq!(CallError::TooLarge(1024).to_string(), "the call's answer body was larger than 1024 bytes");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The upstream is not one this plugin may call: not in its `calls`
    /// list (`[plugin_limits.NAME] calls` in the gateway's configuration),
    /// or not an upstream of the configuration.
    NotAllowed(String),
    /// The call itself is malformed (method, path, a header, the tag; see
    /// [`Call::check`](crate::calls::Call::check)), or was started outside
    /// the request and response phases.
    Invalid(String),
    /// A bound was reached: calls per request, calls in flight for the
    /// plugin, or the size of the body to send.
    Limit(String),
    /// The request's deadline had passed before the call started.
    Deadline,
    /// No whole answer within the call's time limit: the smallest of its
    /// own [`timeout`](crate::calls::Call::timeout), the plugin's
    /// `call_timeout` and what is left of the request's deadline.
    Timeout,
    /// The answer's body was larger than this many bytes (the plugin's
    /// `max_call_body_bytes`).
    TooLarge(u64),
    /// The upstream could not be reached or failed: no endpoint, a refused
    /// or broken connection, or its own limits.
    Failed(String),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::NotAllowed(why) => write!(f, "call not allowed: {why}"),
            CallError::Invalid(why) => write!(f, "invalid call: {why}"),
            CallError::Limit(why) => write!(f, "call limit reached: {why}"),
            CallError::Deadline => {
                f.write_str("the request's deadline had passed before the call started")
            }
            CallError::Timeout => f.write_str("the call got no whole answer within its time limit"),
            CallError::TooLarge(cap) => {
                write!(f, "the call's answer body was larger than {cap} bytes")
            }
            CallError::Failed(why) => write!(f, "the call failed: {why}"),
        }
    }
}

impl std::error::Error for CallError {}
