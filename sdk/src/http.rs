//! [`Request`] and [`Response`]: typed views of the request and response the
//! host keeps in its own memory. Each call reads or writes one item through
//! the host, so a plugin that looks at one header pays for one header.
//! Header names are case-insensitive; setters return the host's validation
//! error (see [`validate`](crate::validate)) instead of letting an invalid
//! value reach the wire; removing a gateway-managed header has no effect.
//!
//! Both are a [`Head`], one per side: the header methods are written once
//! for both, and each side adds its own (the request's method, path, query
//! and client; the response's status). A head holds the seam's handle and
//! nothing else; each method is one direct call through it.

use crate::backend::HeaderFields;
use side::Side;

/// The two sides a [`Head`] can be, and the seam's handle for each. Sealed:
/// the module is private, so no other crate names or implements them.
mod side {
    use crate::backend::{HeaderFields, RequestRef, ResponseRef};

    /// A side of a [`Head`](super::Head) and the handle it is reached
    /// through.
    pub trait Side {
        /// The seam's handle for a head of this side.
        type Handle<'a>: HeaderFields;
    }

    /// The request's side.
    pub enum RequestSide {}

    /// The response's side.
    pub enum ResponseSide {}

    impl Side for RequestSide {
        type Handle<'a> = RequestRef<'a>;
    }

    impl Side for ResponseSide {
        type Handle<'a> = ResponseRef<'a>;
    }
}

/// A request or response head, kept in host memory: a [`Request`] or a
/// [`Response`]. The header methods serve both.
///
/// # Example
///
/// ```
/// use weir_sdk::{Plugin, Request, Response, ResponseAction};
///
/// struct CopyTrace;
/// impl Plugin for CopyTrace {
///     type Config = serde::de::IgnoredAny;
///     fn new(_: Self::Config) -> Result<Self, String> { Ok(CopyTrace) }
///     fn on_response(&mut self, req: &Request<'_>, resp: &mut Response<'_>) -> ResponseAction {
///         if let Some(trace) = req.header("traceparent") {
///             let _ = resp.set_header("traceparent", &trace);
///         }
///         ResponseAction::Continue
///     }
/// }
/// ```
pub struct Head<'a, S: Side> {
    handle: S::Handle<'a>,
}

/// The request being served, as seen (and changed) by a plugin.
///
/// Changes made in [`Plugin::on_request`](crate::Plugin::on_request) and
/// [`Plugin::on_request_body`](crate::Plugin::on_request_body) are what the
/// upstream receives.
///
/// The header methods ([`header`](Head::header),
/// [`header_all`](Head::header_all), [`header_names`](Head::header_names),
/// [`set_header`](Head::set_header), [`add_header`](Head::add_header),
/// [`remove_header`](Head::remove_header)) are [`Head`]'s, shared with
/// [`Response`].
///
/// # Example
///
/// ```
/// use weir_sdk::{Action, Plugin, Request};
///
/// struct Tag;
/// impl Plugin for Tag {
///     type Config = serde::de::IgnoredAny;
///     fn new(_: Self::Config) -> Result<Self, String> { Ok(Tag) }
///     fn on_request(&mut self, req: &mut Request<'_>) -> Action {
///         let tag = format!("{} {}", req.method(), req.path());
///         match req.set_header("x-seen", &tag) {
///             Ok(()) => Action::Continue,
///             Err(_) => Action::respond(400).into(),
///         }
///     }
/// }
/// ```
pub type Request<'a> = Head<'a, side::RequestSide>;

/// The upstream's response, as seen (and changed) by a plugin in the
/// response phases.
///
/// The header methods ([`header`](Head::header),
/// [`header_all`](Head::header_all), [`header_names`](Head::header_names),
/// [`set_header`](Head::set_header), [`add_header`](Head::add_header),
/// [`remove_header`](Head::remove_header)) are [`Head`]'s, shared with
/// [`Request`].
///
/// # Example
///
/// ```
/// use weir_sdk::{Plugin, Request, Response, ResponseAction};
///
/// struct HideServer;
/// impl Plugin for HideServer {
///     type Config = serde::de::IgnoredAny;
///     fn new(_: Self::Config) -> Result<Self, String> { Ok(HideServer) }
///     fn on_response(&mut self, _req: &Request<'_>, resp: &mut Response<'_>) -> ResponseAction {
///         resp.remove_header("server");
///         ResponseAction::Continue
///     }
/// }
/// ```
pub type Response<'a> = Head<'a, side::ResponseSide>;

impl<'a, S: Side> Head<'a, S> {
    pub(crate) fn new(handle: S::Handle<'a>) -> Self {
        Self { handle }
    }

    /// The first value of a header; `None` if absent or not UTF-8.
    ///
    /// # Example
    ///
    /// ```
    /// # weir_sdk::testing::with_request(weir_sdk::testing::TestRequest::get("/").header("Accept", "text/html"), |req| {
    /// assert_eq!(req.header("accept").as_deref(), Some("text/html"));
    /// # });
    /// ```
    pub fn header(&self, name: &str) -> Option<String> {
        self.handle.header(name)
    }

    /// Every value of a header, in order.
    ///
    /// # Example
    ///
    /// ```
    /// # weir_sdk::testing::with_request(weir_sdk::testing::TestRequest::get("/").header("x-a", "1").header("x-a", "2"), |req| {
    /// assert_eq!(req.header_all("x-a"), ["1", "2"]);
    /// # });
    /// ```
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.handle.header_all(name)
    }

    /// The names of all headers present, lower-case.
    ///
    /// # Example
    ///
    /// ```
    /// # weir_sdk::testing::with_response(weir_sdk::testing::TestResponse::new(200).header("ETag", "1"), |resp| {
    /// assert_eq!(resp.header_names(), ["etag"]);
    /// # });
    /// ```
    pub fn header_names(&self) -> Vec<String> {
        self.handle.header_names()
    }

    /// Replaces all values of a header with one value.
    ///
    /// # Example
    ///
    /// ```
    /// # weir_sdk::testing::with_request(weir_sdk::testing::TestRequest::get("/"), |req| {
    /// req.set_header("x-user", "ada").unwrap();
    /// assert!(req.set_header("x-bad", "line\nbreak").is_err());
    /// # });
    /// ```
    pub fn set_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        self.handle.set_header(name, value)
    }

    /// Adds a header value, keeping existing ones.
    ///
    /// # Example
    ///
    /// ```
    /// # weir_sdk::testing::with_response(weir_sdk::testing::TestResponse::new(200), |resp| {
    /// resp.add_header("set-cookie", "a=1").unwrap();
    /// resp.add_header("set-cookie", "b=2").unwrap();
    /// assert_eq!(resp.header_all("set-cookie"), ["a=1", "b=2"]);
    /// # });
    /// ```
    pub fn add_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        self.handle.add_header(name, value)
    }

    /// Removes all values of a header.
    ///
    /// # Example
    ///
    /// ```
    /// # weir_sdk::testing::with_request(weir_sdk::testing::TestRequest::get("/").header("cookie", "a=1"), |req| {
    /// req.remove_header("cookie");
    /// assert_eq!(req.header("cookie"), None);
    /// # });
    /// ```
    pub fn remove_header(&mut self, name: &str) {
        self.handle.remove_header(name)
    }
}

impl Request<'_> {
    /// The method, e.g. `"GET"`.
    ///
    /// # Example
    ///
    /// ```
    /// # weir_sdk::testing::with_request(weir_sdk::testing::TestRequest::post("/"), |req| {
    /// assert_eq!(req.method(), "POST");
    /// # });
    /// ```
    pub fn method(&self) -> String {
        self.handle.method()
    }

    /// The path, without the query, e.g. `"/users/42"`.
    ///
    /// # Example
    ///
    /// ```
    /// # weir_sdk::testing::with_request(weir_sdk::testing::TestRequest::get("/users/42?x=1"), |req| {
    /// assert_eq!(req.path(), "/users/42");
    /// # });
    /// ```
    pub fn path(&self) -> String {
        self.handle.path()
    }

    /// Replaces the path sent upstream; it must start with `/` and be a
    /// valid URI path.
    ///
    /// # Example
    ///
    /// ```
    /// # weir_sdk::testing::with_request(weir_sdk::testing::TestRequest::get("/old"), |req| {
    /// req.set_path("/new").unwrap();
    /// assert!(req.set_path("no-slash").is_err());
    /// assert_eq!(req.path(), "/new");
    /// # });
    /// ```
    pub fn set_path(&mut self, path: &str) -> Result<(), String> {
        self.handle.set_path(path)
    }

    /// The raw query string without `?`, if any.
    ///
    /// # Example
    ///
    /// ```
    /// # weir_sdk::testing::with_request(weir_sdk::testing::TestRequest::get("/s?q=weir"), |req| {
    /// assert_eq!(req.query().as_deref(), Some("q=weir"));
    /// # });
    /// ```
    pub fn query(&self) -> Option<String> {
        self.handle.query()
    }

    /// Replaces the raw query string; `None` removes it.
    ///
    /// # Example
    ///
    /// ```
    /// # weir_sdk::testing::with_request(weir_sdk::testing::TestRequest::get("/s?q=weir"), |req| {
    /// req.set_query(None).unwrap();
    /// assert_eq!(req.query(), None);
    /// # });
    /// ```
    pub fn set_query(&mut self, query: Option<&str>) -> Result<(), String> {
        self.handle.set_query(query)
    }

    /// The value of one query parameter (the first if repeated),
    /// percent-decoded, `+` read as a space. Parsed from [`Request::query`].
    ///
    /// # Example
    ///
    /// ```
    /// # weir_sdk::testing::with_request(weir_sdk::testing::TestRequest::get("/s?q=a%20b&n=1"), |req| {
    /// assert_eq!(req.query_param("q").as_deref(), Some("a b"));
    /// assert_eq!(req.query_param("missing"), None);
    /// # });
    /// ```
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.query()?;
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key) == name).then(|| percent_decode(value))
        })
    }

    /// Removes every pair of the query whose (percent-decoded) name is
    /// `name`, keeping the others in order; `true` if any was removed. A
    /// query left empty is removed.
    ///
    /// # Example
    ///
    /// ```
    /// # weir_sdk::testing::with_request(weir_sdk::testing::TestRequest::get("/s?a=1&token=x&b=2&tok%65n=y"), |req| {
    /// assert_eq!(req.remove_query_param("token"), Ok(true));
    /// assert_eq!(req.query().as_deref(), Some("a=1&b=2"));
    /// assert_eq!(req.remove_query_param("token"), Ok(false));
    /// # });
    /// ```
    pub fn remove_query_param(&mut self, name: &str) -> Result<bool, String> {
        let Some(query) = self.query() else {
            return Ok(false);
        };
        let pairs: Vec<&str> = query.split('&').collect();
        let kept: Vec<&str> = pairs
            .iter()
            .copied()
            .filter(|pair| {
                percent_decode(pair.split_once('=').map_or(*pair, |(key, _)| key)) != name
            })
            .collect();
        if kept.len() == pairs.len() {
            return Ok(false);
        }
        let kept = kept.join("&");
        self.set_query((!kept.is_empty()).then_some(kept.as_str()))?;
        Ok(true)
    }

    /// The client's IP address as text.
    ///
    /// # Example
    ///
    /// ```
    /// # weir_sdk::testing::with_request(weir_sdk::testing::TestRequest::get("/").client_ip("192.0.2.7"), |req| {
    /// assert_eq!(req.client_ip(), "192.0.2.7");
    /// # });
    /// ```
    pub fn client_ip(&self) -> String {
        self.handle.client_ip()
    }

    /// The client certificate the gateway's TLS listener verified for this
    /// connection (mutual TLS); `None` on a plain connection or when the
    /// client presented none. Read-only.
    ///
    /// # Example
    ///
    /// ```
    /// # use weir_sdk::testing::{with_request, TestRequest};
    /// # with_request(TestRequest::get("/").client_cert("CN=ops", &["ops.internal"]), |req| {
    /// let who = req.client_cert().map(|c| c.dns_names.join(","));
    /// assert_eq!(who.as_deref(), Some("ops.internal"));
    /// # });
    /// ```
    pub fn client_cert(&self) -> Option<crate::ClientCert> {
        // The Wasm side converts the contract's record; the test host
        // keeps the SDK's own type.
        #[allow(clippy::useless_conversion)]
        self.handle.client_cert().map(Into::into)
    }

    /// The request id (the `x-request-id` header Weir guarantees).
    ///
    /// # Example
    ///
    /// ```
    /// # weir_sdk::testing::with_request(weir_sdk::testing::TestRequest::get("/").id("req-1"), |req| {
    /// assert_eq!(req.id(), "req-1");
    /// # });
    /// ```
    pub fn id(&self) -> String {
        self.handle.id()
    }
}

impl Response<'_> {
    /// The status code.
    ///
    /// # Example
    ///
    /// ```
    /// # weir_sdk::testing::with_response(weir_sdk::testing::TestResponse::new(404), |resp| {
    /// assert_eq!(resp.status(), 404);
    /// # });
    /// ```
    pub fn status(&self) -> u16 {
        self.handle.status()
    }

    /// Replaces the status code (a final status, 200..=999).
    ///
    /// # Example
    ///
    /// ```
    /// # weir_sdk::testing::with_response(weir_sdk::testing::TestResponse::new(404), |resp| {
    /// resp.set_status(410).unwrap();
    /// assert!(resp.set_status(42).is_err());
    /// # });
    /// ```
    pub fn set_status(&mut self, status: u16) -> Result<(), String> {
        self.handle.set_status(status)
    }
}

/// Decodes `%XX` escapes and `+` (form encoding's space); invalid escapes
/// are kept as they are, invalid UTF-8 is replaced.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests;
