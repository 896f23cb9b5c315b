//! [`TestHost::run`]: one request played through the phases the plugin
//! asked for, in the gateway's order, against the upstream's scripted
//! answer. The calls and the fleet operations that wait a phase call
//! starts are sent when it returns: waited for, and handed to the matching
//! `*_calls` phase, when it answered `Wait`; otherwise delivered to
//! `on_background_calls` after the response, before `on_log`.

use super::calls::SentCall;
use super::exchange::{Exchange, Forwarded, Phase};
use super::fleet::{FleetOp, result};
use super::host::TestHost;
use super::request::{TestRequest, TestResponse};
use crate::action::{Action, BodyAction, Reply, ResponseAction};
use crate::backend::{Headers, LogWindow, RequestState, install};
use crate::calls::CallResult;
use crate::fleet::FleetResult;
use crate::http::{Request, Response};
use crate::plugin::Plugin;
use crate::validate;

impl<P: Plugin> TestHost<P> {
    /// Plays one request through every phase the gateway would run (those
    /// the plugin asked for, see [`TestHost::phases`], and those that get
    /// the results of calls and fleet operations). The request context and
    /// access-log fields start empty; shared state, fleet values, logs,
    /// counters, the clock, and the call and fleet settings and scripts
    /// carry over between runs. The access-log line
    /// is written before `on_background_calls` and the log phase, as in
    /// the gateway: the fields set until then are the [`Exchange`]'s, and
    /// those phases cannot set more.
    ///
    /// Calls are sent when the phase call that started them returns, each
    /// answered by its upstream's script ([`TestHost::answer_calls`]) on
    /// the host's clock. When the phase answered `Wait`, the clock moves to
    /// the end of the slowest of them (the calls run side by side) and the
    /// matching `*_calls` phase gets their results; otherwise they are
    /// background calls, and the clock moves to the end of the slowest
    /// only when their results are delivered, after the response. Fleet
    /// operations that wait ([`TestHost::fleet_mode`]) are answered at
    /// once on the clock, and their results go with the calls'.
    ///
    /// # Example
    ///
    /// See [`Exchange`], and [`TestHost::answer_calls`] for calls.
    ///
    /// # Panics
    ///
    /// If the plugin answers with a reply the gateway would refuse (status
    /// outside 200..=999, invalid header), answers `Wait` without having
    /// started a call or a fleet operation that waits, or panics itself (a
    /// trap).
    pub fn run(&mut self, request: TestRequest) -> Exchange {
        let _current = install(&self.env);
        self.env.context.borrow_mut().clear();
        self.env.log_fields.borrow_mut().clear();
        self.env.log_window.set(LogWindow::Open);
        let TestRequest {
            state: mut req,
            body,
            upstream,
            deadline,
        } = request;
        let deadline_ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
        let deadline_at = self.env.now_ms.get().saturating_add(deadline_ms);
        self.env.calls.borrow_mut().begin_request(deadline_at);
        self.env.fleet.borrow_mut().begin_request();
        let mut record = Record::default();
        let decided = self.request_phases(&mut req, body, &mut record);
        let (answer, forwarded) = match decided.reply {
            Some(reply) => (Answer::checked_reply(reply), None),
            None => {
                let forwarded = Forwarded {
                    state: req.clone(),
                    body: decided.body,
                };
                let answer = self.response_phases(&mut req, upstream, &mut record);
                (answer, Some(forwarded))
            }
        };
        let log_fields = std::mem::take(&mut *self.env.log_fields.borrow_mut());
        self.env.log_window.set(LogWindow::Written);
        self.background_calls(&mut req, &mut record);
        if self.begin(Phase::Log, &mut record) {
            self.plugin.on_log(&Request::new(&mut req), answer.status);
        }
        let fleet = self.env.fleet.borrow_mut().take_made();
        Exchange {
            responded_by_plugin: forwarded.is_none(),
            routed_to: decided.routed_to,
            forwarded,
            status: answer.status,
            headers: answer.headers,
            body: answer.body,
            context: self.env.context.borrow().clone(),
            log_fields,
            phases: record.ran,
            calls: record.calls,
            fleet: fleet.into_iter().map(FleetOp::new).collect(),
        }
    }

    /// Starts a phase call if the plugin asked for `phase` (the phases
    /// that get calls' results need not be asked for), noting that it ran;
    /// `false` if it did not ask.
    fn begin(&self, phase: Phase, record: &mut Record) -> bool {
        if phase.flag().is_some_and(|flag| !self.phases.contains(flag)) {
            return false;
        }
        record.ran.push(phase);
        self.env.begin_call();
        self.env.calls.borrow_mut().open = phase.starts_calls();
        true
    }

    /// The phase call that just returned answered `Wait`: its calls and
    /// its fleet operations that wait are sent and waited for, and their
    /// results are what the `*_calls` phase gets.
    fn wait(&mut self, record: &mut Record) -> (Vec<CallResult>, Vec<FleetResult>) {
        let started = self.env.calls.borrow_mut().take_new();
        let fleet = self.env.fleet.borrow_mut().take_new(false);
        assert!(
            !started.is_empty() || !fleet.is_empty(),
            "the plugin answered Wait without starting a call or a fleet operation that waits: \
             the gateway refuses the answer (there is nothing to wait for)"
        );
        let sent = self.send(started, false);
        self.wait_for(&sent);
        let results = sent.iter().map(SentCall::result).collect();
        record.calls.extend(sent);
        (results, fleet.iter().map(result).collect())
    }

    /// The phase call that just returned answered anything but `Wait`: its
    /// calls and fleet operations that wait are sent and run in the
    /// background.
    fn run_in_background(&mut self, record: &mut Record) {
        let started = self.env.calls.borrow_mut().take_new();
        self.env.fleet.borrow_mut().take_new(true);
        record.calls.extend(self.send(started, true));
    }

    /// The request and request-body phases: the plugin's own reply if it
    /// answered, where it routed the request, and the body to forward.
    fn request_phases(
        &mut self,
        req: &mut RequestState,
        mut body: Vec<u8>,
        record: &mut Record,
    ) -> Decided {
        let (mut reply, mut routed_to) = (None, None);
        if self.begin(Phase::Request, record) {
            let mut action = self.plugin.on_request(&mut Request::new(req));
            while action == Action::Wait {
                let (results, fleet) = self.wait(record);
                self.begin(Phase::RequestCalls, record);
                action = self
                    .plugin
                    .on_request_calls(&mut Request::new(req), results, fleet);
            }
            self.run_in_background(record);
            match action {
                // `Wait` ended the loop above: here it cannot be.
                Action::Continue | Action::Wait => {}
                Action::RouteTo(upstream) => {
                    assert!(!upstream.is_empty(), "route_to needs an upstream name");
                    routed_to = Some(upstream);
                }
                Action::Respond(answer) => reply = Some(answer),
            }
        }
        if reply.is_none() && self.begin(Phase::RequestBody, record) {
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
        record: &mut Record,
    ) -> Answer {
        let TestResponse {
            state: mut resp,
            mut body,
        } = upstream;
        if self.begin(Phase::Response, record) {
            let mut action = self
                .plugin
                .on_response(&Request::new(req), &mut Response::new(&mut resp));
            while action == ResponseAction::Wait {
                let (results, fleet) = self.wait(record);
                self.begin(Phase::ResponseCalls, record);
                action = self.plugin.on_response_calls(
                    &Request::new(req),
                    &mut Response::new(&mut resp),
                    results,
                    fleet,
                );
            }
            self.run_in_background(record);
        }
        if self.begin(Phase::ResponseBody, record) {
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

    /// After the response: the results of the background calls and fleet
    /// operations, once the last of them has ended, if there are any.
    fn background_calls(&mut self, req: &mut RequestState, record: &mut Record) {
        let background: Vec<&SentCall> = record.calls.iter().filter(|c| c.background()).collect();
        let fleet = self.env.fleet.borrow().background();
        if background.is_empty() && fleet.is_empty() {
            return;
        }
        self.wait_for(background.iter().copied());
        let results = background.iter().map(|c| c.result()).collect();
        let fleet = fleet.iter().map(result).collect();
        self.begin(Phase::BackgroundCalls, record);
        (self.plugin).on_background_calls(&Request::new(req), results, fleet);
    }
}

/// What a request left so far: the phases that ran and the calls sent.
#[derive(Default)]
struct Record {
    ran: Vec<Phase>,
    calls: Vec<SentCall>,
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
