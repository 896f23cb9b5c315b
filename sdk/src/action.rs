//! What the phases answer: [`Action`] for `on_request` and
//! `on_request_calls`, [`BodyAction`] for `on_request_body`,
//! [`ResponseAction`] for `on_response` and `on_response_calls`, and
//! [`Reply`], the response a plugin builds to answer the client itself. The host validates a reply (status
//! 200..=999, at most 100 headers, names and values as in
//! [`validate`](crate::validate)) before anything reaches the wire.

/// The answer of [`Plugin::on_request`](crate::Plugin::on_request) and
/// [`Plugin::on_request_calls`](crate::Plugin::on_request_calls).
///
/// # Example
///
/// ```
/// use weir_sdk::Action;
///
/// let go_on = Action::Continue;
/// let deny: Action = Action::respond(403).body("forbidden").into();
/// let steer = Action::route_to("canary");
/// assert!(matches!(steer, Action::RouteTo(ref name) if name == "canary"));
/// # let _ = (go_on, deny);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Go on: the next plugin in the chain, then the route's upstream.
    Continue,
    /// Answer the client with this response; nothing is forwarded upstream.
    Respond(Reply),
    /// Forward to this named upstream instead of the route's own.
    RouteTo(String),
    /// Wait for the calls ([`Call::start`](crate::calls::Call::start)) and
    /// the fleet operations that wait
    /// ([`Started::Pending`](crate::fleet::Started::Pending)) this phase
    /// call started;
    /// [`Plugin::on_request_calls`](crate::Plugin::on_request_calls) then
    /// gets their results and decides. Without a call or such an operation
    /// started, the gateway refuses the answer (the plugin failed).
    Wait,
}

impl Action {
    /// Starts a reply with this status; add headers and a body, then
    /// convert it with `.into()`.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::Action;
    ///
    /// let action: Action = Action::respond(401)
    ///     .header("www-authenticate", "Bearer")
    ///     .body("unauthorized")
    ///     .into();
    /// # let _ = action;
    /// ```
    pub fn respond(status: u16) -> Reply {
        Reply::new(status)
    }

    /// Forwards the request to the upstream named `upstream` (an `[[upstream]]`
    /// of the gateway's configuration).
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::Action;
    ///
    /// assert_eq!(Action::route_to("v2"), Action::RouteTo("v2".to_owned()));
    /// ```
    pub fn route_to(upstream: impl Into<String>) -> Self {
        Self::RouteTo(upstream.into())
    }
}

impl From<Reply> for Action {
    fn from(reply: Reply) -> Self {
        Self::Respond(reply)
    }
}

/// The answer of [`Plugin::on_response`](crate::Plugin::on_response) and
/// [`Plugin::on_response_calls`](crate::Plugin::on_response_calls).
///
/// # Example
///
/// ```
/// use weir_sdk::calls::Call;
/// use weir_sdk::ResponseAction;
///
/// // Wait only when the call started; a refused one is not worth waiting for.
/// let answer = match Call::post("audit", "/seen").start() {
///     Ok(_) => ResponseAction::Wait,
///     Err(_) => ResponseAction::Continue,
/// };
/// assert_eq!(answer, ResponseAction::Continue);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseAction {
    /// Go on: the previous plugin in the chain, then the client.
    #[default]
    Continue,
    /// Wait for the calls and the fleet operations that wait this phase
    /// call started;
    /// [`Plugin::on_response_calls`](crate::Plugin::on_response_calls)
    /// then gets their results. Without a call or such an operation
    /// started, the gateway refuses the answer (the plugin failed).
    Wait,
}

/// The answer of [`Plugin::on_request_body`](crate::Plugin::on_request_body).
///
/// # Example
///
/// ```
/// use weir_sdk::BodyAction;
///
/// let keep = BodyAction::Continue;
/// let swap = BodyAction::Replace(b"{}".to_vec());
/// let refuse: BodyAction = weir_sdk::Action::respond(400).body("bad json").into();
/// # let _ = (keep, swap, refuse);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyAction {
    /// Forward the body unchanged.
    Continue,
    /// Forward this body instead; the host fixes `Content-Length`.
    Replace(Vec<u8>),
    /// Answer the client with this response; nothing is forwarded upstream.
    Respond(Reply),
}

impl From<Reply> for BodyAction {
    fn from(reply: Reply) -> Self {
        Self::Respond(reply)
    }
}

/// A response built by a plugin to answer the client itself.
///
/// # Example
///
/// ```
/// use weir_sdk::Reply;
///
/// let reply = Reply::new(429).header("retry-after", "3").body("slow down");
/// assert_eq!(reply.status(), 429);
/// assert_eq!(reply.headers(), &[("retry-after".to_owned(), "3".to_owned())]);
/// assert_eq!(reply.body_bytes(), b"slow down");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    /// A reply with this status, no headers and an empty body. The host
    /// refuses a status outside 200..=999 (the plugin call fails).
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(weir_sdk::Reply::new(204).status(), 204);
    /// ```
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header (repeat the call for several values).
    ///
    /// # Example
    ///
    /// ```
    /// let reply = weir_sdk::Reply::new(200).header("x-a", "1").header("x-a", "2");
    /// assert_eq!(reply.headers().len(), 2);
    /// ```
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    ///
    /// # Example
    ///
    /// ```
    /// let reply = weir_sdk::Reply::new(200).body(vec![1, 2, 3]);
    /// assert_eq!(reply.body_bytes(), &[1, 2, 3]);
    /// ```
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The status code.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(weir_sdk::Reply::new(401).status(), 401);
    /// ```
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The headers, in the order they were added.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(weir_sdk::Reply::new(401).headers().is_empty());
    /// ```
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(weir_sdk::Reply::new(401).body_bytes().is_empty());
    /// ```
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// Splits the reply into status, headers and body.
    pub(crate) fn into_parts(self) -> (u16, Vec<(String, String)>, Vec<u8>) {
        (self.status, self.headers, self.body)
    }
}
