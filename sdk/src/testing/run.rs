//! [`TestHost::run`]: one request played through the phases the plugin
//! asked for, in the gateway's order, against the upstream's scripted
//! answer.

use super::exchange::{Exchange, Forwarded, Phase};
use super::host::TestHost;
use super::request::{TestRequest, TestResponse};
use crate::action::{Action, BodyAction, Reply};
use crate::backend::{Headers, LogWindow, RequestState, install};
use crate::http::{Request, Response};
use crate::plugin::Plugin;
use crate::validate;

impl<P: Plugin> TestHost<P> {
    /// Plays one request through every phase the gateway would run (those
    /// the plugin asked for, see [`TestHost::phases`]). The request context
    /// and access-log fields start empty; shared state, logs, counters and
    /// the clock carry over between runs. The access-log line is written
    /// before the log phase, as in the gateway: the fields set until then
    /// are the [`Exchange`]'s, and `on_log` cannot set more.
    ///
    /// # Example
    ///
    /// See [`Exchange`].
    ///
    /// # Panics
    ///
    /// If the plugin answers with a reply the gateway would refuse (status
    /// outside 200..=999, invalid header), or panics itself (a trap).
    pub fn run(&mut self, request: TestRequest) -> Exchange {
        let _current = install(&self.env);
        self.env.context.borrow_mut().clear();
        self.env.log_fields.borrow_mut().clear();
        self.env.log_window.set(LogWindow::Open);
        let TestRequest {
            state: mut req,
            body,
            upstream,
        } = request;
        let mut ran = Vec::new();
        let decided = self.request_phases(&mut req, body, &mut ran);
        let (answer, forwarded) = match decided.reply {
            Some(reply) => (Answer::checked_reply(reply), None),
            None => {
                let forwarded = Forwarded {
                    state: req.clone(),
                    body: decided.body,
                };
                let answer = self.response_phases(&mut req, upstream, &mut ran);
                (answer, Some(forwarded))
            }
        };
        let log_fields = std::mem::take(&mut *self.env.log_fields.borrow_mut());
        self.env.log_window.set(LogWindow::Written);
        if self.begin(Phase::Log, &mut ran) {
            self.plugin.on_log(&Request::new(&mut req), answer.status);
        }
        Exchange {
            responded_by_plugin: forwarded.is_none(),
            routed_to: decided.routed_to,
            forwarded,
            status: answer.status,
            headers: answer.headers,
            body: answer.body,
            context: self.env.context.borrow().clone(),
            log_fields,
            phases: ran,
        }
    }

    /// Starts a phase call if the plugin asked for `phase`, noting that it
    /// ran; `false` if it did not ask.
    fn begin(&self, phase: Phase, ran: &mut Vec<Phase>) -> bool {
        if !self.phases.contains(phase.flag()) {
            return false;
        }
        ran.push(phase);
        self.env.begin_call();
        true
    }

    /// The request and request-body phases: the plugin's own reply if it
    /// answered, where it routed the request, and the body to forward.
    fn request_phases(
        &mut self,
        req: &mut RequestState,
        mut body: Vec<u8>,
        ran: &mut Vec<Phase>,
    ) -> Decided {
        let (mut reply, mut routed_to) = (None, None);
        if self.begin(Phase::Request, ran) {
            match self.plugin.on_request(&mut Request::new(req)) {
                Action::Continue => {}
                Action::RouteTo(upstream) => {
                    assert!(!upstream.is_empty(), "route_to needs an upstream name");
                    routed_to = Some(upstream);
                }
                Action::Respond(answer) => reply = Some(answer),
            }
        }
        if reply.is_none() && self.begin(Phase::RequestBody, ran) {
            match self
                .plugin
                .on_request_body(&mut Request::new(req), body.clone())
            {
                BodyAction::Continue => {}
                BodyAction::Replace(replacement) => {
                    body = replacement;
                    req.headers
                        .set_by_host("content-length", &body.len().to_string());
                }
                BodyAction::Respond(answer) => reply = Some(answer),
            }
        }
        Decided {
            reply,
            routed_to,
            body,
        }
    }

    /// The response and response-body phases, on the upstream's scripted
    /// answer: what the client receives.
    fn response_phases(
        &mut self,
        req: &mut RequestState,
        upstream: TestResponse,
        ran: &mut Vec<Phase>,
    ) -> Answer {
        let TestResponse {
            state: mut resp,
            mut body,
        } = upstream;
        if self.begin(Phase::Response, ran) {
            self.plugin
                .on_response(&Request::new(req), &mut Response::new(&mut resp));
        }
        if self.begin(Phase::ResponseBody, ran) {
            let replacement = self.plugin.on_response_body(
                &Request::new(req),
                &mut Response::new(&mut resp),
                body.clone(),
            );
            if let Some(replacement) = replacement {
                body = replacement;
                resp.headers
                    .set_by_host("content-length", &body.len().to_string());
            }
        }
        Answer {
            status: resp.status,
            headers: resp.headers,
            body,
        }
    }
}

/// What the request phases decided.
struct Decided {
    /// The plugin's own answer, if it gave one.
    reply: Option<Reply>,
    /// The upstream the plugin routed to, if it did.
    routed_to: Option<String>,
    /// The request body to forward.
    body: Vec<u8>,
}

/// The response the client receives.
struct Answer {
    status: u16,
    headers: Headers,
    body: Vec<u8>,
}

impl Answer {
    /// A plugin's reply, checked as the gateway checks it; a refused reply
    /// is a bug in the plugin under test.
    fn checked_reply(reply: Reply) -> Self {
        validate::status(reply.status()).unwrap_or_else(|e| panic!("the plugin's reply: {e}"));
        assert!(
            reply.headers().len() <= validate::MAX_REPLY_HEADERS,
            "the plugin's reply: more than {} headers",
            validate::MAX_REPLY_HEADERS
        );
        let (status, pairs, body) = reply.into_parts();
        let mut headers = Headers::default();
        for (name, value) in &pairs {
            headers
                .add(name, value)
                .unwrap_or_else(|e| panic!("the plugin's reply: {e}"));
        }
        Self {
            status,
            headers,
            body,
        }
    }
}
