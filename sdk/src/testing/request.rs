//! The inputs of a test: [`TestRequest`], a request with its scripted
//! upstream answer and its deadline, and [`TestResponse`], that answer.

use std::time::Duration;

use crate::backend::{Headers, RequestState, ResponseState};
use crate::validate;

/// A request's deadline unless the test sets one: the gateway's default
/// upstream `timeout`.
const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

/// A request to play through a plugin, with the upstream's scripted answer.
///
/// # Example
///
/// ```
/// use weir_sdk::testing::{TestRequest, TestResponse};
///
/// let req = TestRequest::post("/orders?dry_run=1")
///     .header("content-type", "application/json")
///     .body(r#"{"id":1}"#)
///     .client_ip("198.51.100.4")
///     .upstream(TestResponse::new(201));
/// # let _ = req;
/// ```
#[derive(Debug, Clone)]
pub struct TestRequest {
    pub(super) state: RequestState,
    pub(super) body: Vec<u8>,
    pub(super) upstream: TestResponse,
    pub(super) deadline: Duration,
}

impl TestRequest {
    /// A request with this method and target (`/path` or `/path?query`).
    /// Defaults: no headers, empty body, client `127.0.0.1`, id
    /// `test-request`, upstream answering `200` with no headers and no
    /// body, a deadline of 30 s (the gateway's default upstream `timeout`).
    ///
    /// # Example
    ///
    /// ```
    /// let req = weir_sdk::testing::TestRequest::new("PATCH", "/items/1");
    /// # let _ = req;
    /// ```
    ///
    /// # Panics
    ///
    /// If the target is not a valid path (and query): a bug in the test.
    pub fn new(method: &str, target: &str) -> Self {
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query.to_owned())),
            None => (target, None),
        };
        validate::path(path).unwrap_or_else(|e| panic!("TestRequest: {e}"));
        validate::target(path, query.as_deref()).unwrap_or_else(|e| panic!("TestRequest: {e}"));
        if let Some(query) = &query {
            validate::query(query).unwrap_or_else(|e| panic!("TestRequest: {e}"));
        }
        Self {
            state: RequestState {
                method: method.to_owned(),
                path: path.to_owned(),
                query,
                headers: Headers::default(),
                client_ip: "127.0.0.1".to_owned(),
                client_cert: None,
                id: "test-request".to_owned(),
            },
            body: Vec::new(),
            upstream: TestResponse::new(200),
            deadline: DEFAULT_DEADLINE,
        }
    }

    /// A `GET` request.
    ///
    /// # Example
    ///
    /// ```
    /// let req = weir_sdk::testing::TestRequest::get("/health");
    /// # let _ = req;
    /// ```
    pub fn get(target: &str) -> Self {
        Self::new("GET", target)
    }

    /// A `POST` request.
    ///
    /// # Example
    ///
    /// ```
    /// let req = weir_sdk::testing::TestRequest::post("/orders").body("{}");
    /// # let _ = req;
    /// ```
    pub fn post(target: &str) -> Self {
        Self::new("POST", target)
    }

    /// Adds a request header.
    ///
    /// # Example
    ///
    /// ```
    /// let req = weir_sdk::testing::TestRequest::get("/").header("authorization", "Bearer t");
    /// # let _ = req;
    /// ```
    ///
    /// # Panics
    ///
    /// If the name or value is not valid HTTP: a bug in the test.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.state
            .headers
            .add_received(name, value)
            .unwrap_or_else(|e| panic!("TestRequest: {e}"));
        self
    }

    /// Sets the request body (given to `on_request_body` when the plugin
    /// asks for it).
    ///
    /// # Example
    ///
    /// ```
    /// let req = weir_sdk::testing::TestRequest::post("/").body(vec![0u8; 4]);
    /// # let _ = req;
    /// ```
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets the client's IP address.
    ///
    /// # Example
    ///
    /// ```
    /// let req = weir_sdk::testing::TestRequest::get("/").client_ip("2001:db8::1");
    /// # let _ = req;
    /// ```
    pub fn client_ip(mut self, ip: &str) -> Self {
        self.state.client_ip = ip.to_owned();
        self
    }

    /// Sets the client certificate the gateway verified: its subject and
    /// DNS names.
    ///
    /// # Example
    ///
    /// ```
    /// let req = weir_sdk::testing::TestRequest::get("/").client_cert("CN=ops", &["ops.internal"]);
    /// # let _ = req;
    /// ```
    pub fn client_cert(mut self, subject: &str, dns_names: &[&str]) -> Self {
        self.state.client_cert = Some(crate::types::ClientCert {
            subject: subject.to_owned(),
            dns_names: dns_names.iter().map(|n| n.to_string()).collect(),
        });
        self
    }

    /// Sets the request id.
    ///
    /// # Example
    ///
    /// ```
    /// let req = weir_sdk::testing::TestRequest::get("/").id("0af7651916cd43dd");
    /// # let _ = req;
    /// ```
    pub fn id(mut self, id: &str) -> Self {
        self.state.id = id.to_owned();
        self
    }

    /// Sets the request's deadline, counted from the start of
    /// [`TestHost::run`](super::TestHost::run) on the test host's clock: a
    /// call's time limit is at most what is left of it, and a call started
    /// after it is refused with
    /// [`CallError::Deadline`](crate::calls::CallError::Deadline).
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// let req = weir_sdk::testing::TestRequest::get("/").deadline(Duration::from_millis(300));
    /// # let _ = req;
    /// ```
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Scripts the upstream's answer to this request.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::testing::{TestRequest, TestResponse};
    ///
    /// let req = TestRequest::get("/").upstream(TestResponse::new(503));
    /// # let _ = req;
    /// ```
    pub fn upstream(mut self, response: TestResponse) -> Self {
        self.upstream = response;
        self
    }
}

/// A scripted upstream response.
///
/// # Example
///
/// ```
/// let resp = weir_sdk::testing::TestResponse::new(200)
///     .header("content-type", "text/plain")
///     .body("hello");
/// # let _ = resp;
/// ```
#[derive(Debug, Clone)]
pub struct TestResponse {
    pub(super) state: ResponseState,
    pub(super) body: Vec<u8>,
}

impl TestResponse {
    /// A response with this status, no headers and an empty body.
    ///
    /// # Example
    ///
    /// ```
    /// let resp = weir_sdk::testing::TestResponse::new(404);
    /// # let _ = resp;
    /// ```
    ///
    /// # Panics
    ///
    /// If the status is outside 100..=999: a bug in the test.
    pub fn new(status: u16) -> Self {
        assert!(
            (100..=999).contains(&status),
            "TestResponse: status {status} outside 100..=999"
        );
        Self {
            state: ResponseState {
                status,
                headers: Headers::default(),
            },
            body: Vec::new(),
        }
    }

    /// Adds a response header.
    ///
    /// # Example
    ///
    /// ```
    /// let resp = weir_sdk::testing::TestResponse::new(200).header("etag", "\"1\"");
    /// # let _ = resp;
    /// ```
    ///
    /// # Panics
    ///
    /// If the name or value is not valid HTTP: a bug in the test.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.state
            .headers
            .add_received(name, value)
            .unwrap_or_else(|e| panic!("TestResponse: {e}"));
        self
    }

    /// Sets the response body.
    ///
    /// # Example
    ///
    /// ```
    /// let resp = weir_sdk::testing::TestResponse::new(200).body("ok");
    /// # let _ = resp;
    /// ```
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}
