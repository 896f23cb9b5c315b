//! The plugin phases of one request. `forward` (in `mod.rs`) decides when
//! each runs; this file runs a chain for one phase: the request phase in
//! chain order (global chain first), the opt-in body phases on bodies
//! buffered up to a cap, the response phase in reverse order, and the log
//! phase spawned after the response is handed to the connection, off the
//! critical path. A [`Scope`] carries what lives from the request to the
//! log phase: each plugin's request-scoped context, the access-log fields
//! the chain sets, the request head the later phases read, and (with
//! request isolation) the instances held.
//!
//! Each plugin is called only in the phases it asked for in `init`. What
//! a phase needs is paid for only when some plugin of the chain asked for
//! it: the copy of the request head kept for the response and log phases,
//! and the task the log phase runs in.
//!
//! A plugin that may call out (`[plugin_limits.NAME] calls`) or is in
//! `strict` fleet mode, and answers `wait`, stops the synchronous request
//! phase: the rest of it is a future ([`Scope::finish_request`]), which
//! sends the plugin's calls (`super::calls`) and fleet operations
//! (`plugin::fleet::FleetOp`) and calls it again with their results, its
//! instance back in the pool in between, so a request that does not wait
//! pays for no future. The response phase of such a chain runs as a future
//! when it has one ([`Scope::on_response_calling`]). Calls and operations
//! a phase started without waiting run beside the request and their
//! results reach the plugin in the log task, before its log phase. A
//! request dropped before its end (the client went away) aborts what it
//! waits on or started, and still runs the log phase, with status 499. A
//! phase that started nothing to wait for has its `wait` refused as an
//! invalid answer.
//!
//! A failing plugin either fails the request (`failure = "closed"`: 500,
//! or 503 when it could not be called: every instance busy, one being
//! replaced, its breaker open or its CPU share spent on this worker) or is
//! skipped for that call (`failure = "open"`), and the skip is logged with
//! the request id.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Response, response};
use http_body_util::{BodyExt, Limited};

use super::error::ProxyError;
use super::response::ResponseBody;
use crate::body::{ClientBody, RequestBody};
use crate::config::FailurePolicy;
use crate::plugin::fleet::{FleetDone, FleetError, FleetOp};
use crate::plugin::{
    Action, BodyAction, CallError, Chain, Context, Failure, Finished, Flow, Instance, Io,
    LogFields, RequestCalls, Slot, Waited,
};
use crate::router::{Route, Router};
use crate::trace::{PluginCalls, SpanId};
use crate::upstream::Upstream;
use smallvec::SmallVec;

/// What the request phase decided.
pub enum Decision {
    /// Forward, to this upstream instead of the route's when set.
    Forward(Option<Arc<Upstream>>),
    /// A plugin answered; send this to the client. Boxed: answers are the
    /// rare path, and the common one should not carry their size.
    Respond(Box<Response<ResponseBody>>),
}

/// How far the synchronous request phase got.
pub enum Step {
    Decided(Decision),
    /// A plugin waits on calls (or, in a chain that may call out, answered
    /// and its answer's response phase may wait): the rest is a future,
    /// [`Scope::finish_request`]. Boxed, as answers are.
    Waiting(Box<Waiting>),
}

/// Where the request phase stopped to wait.
pub struct Waiting {
    /// The plugin waiting, or answering.
    at: usize,
    /// The upstream a plugin before it chose.
    steer: Option<Arc<Upstream>>,
    /// Its answer, when it answered rather than waited.
    answer: Option<crate::plugin::Respond>,
}

/// One request's plugin state, from the request phase to the log phase.
/// Empty (and free) on routes without plugins.
pub struct Scope {
    chain: Option<Arc<Chain>>,
    /// One entry per plugin of the chain, inline for chains of up to
    /// four plugins (no allocation per request).
    each: SmallVec<[PerPlugin; 4]>,
    /// The access-log fields the chain's plugins set, one set for all of
    /// them (empty, and unallocated, until one sets a field).
    log_fields: LogFields,
    /// The calls' spans, while the request's trace records them.
    pub calls: PluginCalls,
    /// The request id, lent to each call (see `plugin::Io`).
    id: HeaderValue,
    client_ip: IpAddr,
    /// The connection's verified client certificate, if any.
    client_cert: Option<Arc<crate::tls::ClientCert>>,
    /// Plugins the request went through (their request phase ran, or they
    /// did not ask for it): the response phase runs for these.
    ran: usize,
    /// The request head as forwarded, for the response and log phases;
    /// kept only when a plugin of the chain asked for one of them.
    request: Option<Parts>,
    /// What sending calls needs; only for chains that may call out.
    out: Option<Outbound>,
}

/// What a request's outbound calls need beyond its plugins' own records.
struct Outbound {
    /// The client's address, for balancers that hash it.
    peer: SocketAddr,
    /// What every call carries from the request: its id, its trace context.
    carried: super::calls::Carried,
    /// The request's deadline (the route's timeout, or a gRPC client's).
    deadline: Instant,
    /// Whether a plugin waited on calls: the time left to the deadline is
    /// then what the upstream gets.
    waited: bool,
    /// Calls not waited for, by plugin index, in the order started.
    background: Vec<Background>,
}

/// A call or `strict` fleet operation running beside its request;
/// aborted when dropped before it finished, so none outlives the request.
struct Background {
    plugin: usize,
    id: u32,
    tag: String,
    task: Task,
}

enum Task {
    Call(tokio::task::JoinHandle<Finished>),
    Fleet(tokio::task::JoinHandle<FleetDone>),
}

impl Drop for Background {
    fn drop(&mut self) {
        match &self.task {
            Task::Call(t) => t.abort(),
            Task::Fleet(t) => t.abort(),
        }
    }
}

impl Background {
    /// Adds its result, once it has finished, to `waited`; a call's is
    /// counted in `stats`.
    async fn finish(mut self, waited: &mut Waited, stats: &crate::metrics::plugin::PluginStats) {
        let (id, tag) = (self.id, std::mem::take(&mut self.tag));
        match &mut self.task {
            Task::Call(t) => {
                let f = t.await.unwrap_or_else(|e| Finished {
                    id,
                    tag,
                    outcome: Err(CallError::Failed(format!("the call did not finish: {e}"))),
                });
                super::calls::count(stats, &f);
                waited.calls.push(f);
            }
            Task::Fleet(t) => {
                let f = t.await.unwrap_or_else(|e| FleetDone {
                    id,
                    tag,
                    outcome: Err(FleetError::Unavailable(format!(
                        "the operation did not finish: {e}"
                    ))),
                });
                waited.fleet.push(f);
            }
        }
    }
}

impl Default for Scope {
    fn default() -> Scope {
        Scope {
            chain: None,
            each: SmallVec::new(),
            log_fields: LogFields::for_request(),
            calls: PluginCalls::default(),
            id: HeaderValue::from_static(""),
            client_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            client_cert: None,
            ran: 0,
            request: None,
            out: None,
        }
    }
}

impl Drop for Scope {
    /// A request dropped before its end (the client went away midway):
    /// its calls are aborted and its log phase still runs, with 499 (the
    /// status nginx logs for a client that closed the request).
    fn drop(&mut self) {
        if self.chain.is_some() {
            self.on_log(super::STATUS_CLIENT_GONE);
        }
    }
}

/// What one plugin of the chain keeps for one request.
#[derive(Default)]
struct PerPlugin {
    context: Context,
    /// The instance held for the whole request (request isolation only).
    held: Option<Box<Instance>>,
    /// The calls it started and may still start.
    calls: RequestCalls,
}

/// A call's outcome as its span names it: `refused` when the plugin could
/// not be called (busy, breaker open, share spent).
fn outcome<T>(r: &Result<T, Failure>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(f) if f.kind.unavailable() => "refused",
        Err(_) => "failed",
    }
}

/// The upstream a plugin's `route-to` names.
fn steer_to(slot: &Slot, router: &Router, name: &str) -> Result<Arc<Upstream>, ProxyError> {
    router
        .upstream(name)
        .cloned()
        .ok_or_else(|| ProxyError::UnknownUpstream {
            plugin: slot.name.clone(),
            name: name.chars().take(128).collect(),
        })
}

/// An empty request head, for phases after a request whose head was not
/// kept.
fn no_request() -> Parts {
    http::Request::new(()).into_parts().0
}

/// A copy of a request head without its extensions (which are not Clone
/// and which plugins cannot see).
fn copy_head(p: &Parts) -> Parts {
    let mut out = http::Request::new(()).into_parts().0;
    out.method = p.method.clone();
    out.uri = p.uri.clone();
    out.version = p.version;
    out.headers = p.headers.clone();
    out
}

impl Scope {
    /// Prepares the scope for a route's chain. `timeout` is the request's
    /// deadline from now, used only by chains that may call out. (A
    /// call's upstream is looked up in the table the request was routed
    /// by, which the phases are given, so a reload does not change it
    /// midway.)
    pub fn start(
        &mut self,
        route: &Route,
        timeout: Duration,
        (peer, headers): (SocketAddr, &http::HeaderMap),
        client_cert: Option<&Arc<crate::tls::ClientCert>>,
        id: &HeaderValue,
    ) {
        let chain = &route.plugins;
        if chain.is_empty() {
            return;
        }
        let n = chain.slots.len();
        self.each = (0..n).map(|_| PerPlugin::default()).collect();
        if chain.calls {
            let deadline = Instant::now() + timeout;
            for p in &mut self.each {
                p.calls = RequestCalls::new(Some(deadline));
            }
            self.out = Some(Outbound {
                peer,
                carried: super::calls::Carried::of(headers, id),
                deadline,
                waited: false,
                background: Vec::new(),
            });
        }
        let client_ip = peer.ip();
        self.id = id.clone();
        self.client_ip = client_ip;
        self.client_cert = client_cert.cloned();
        self.chain = Some(chain.clone());
    }

    /// The access-log fields the chain's plugins set, for the access-log
    /// line. Called once the response is decided and before
    /// [`Scope::on_log`]: the log phase runs after the line is written,
    /// and its `log-field` calls are refused.
    pub fn take_log_fields(&mut self) -> LogFields {
        self.log_fields.take()
    }

    /// Keeps a copy of the request head as forwarded when a later phase
    /// will read it.
    fn keep_request(&mut self, chain: &Chain, parts: &Parts) {
        if chain.response || chain.response_body || chain.log {
            self.request = Some(copy_head(parts));
        }
    }

    fn io<'a>(
        id: &'a mut HeaderValue,
        log_fields: &'a mut LogFields,
        client: (IpAddr, Option<&'a Arc<crate::tls::ClientCert>>),
        req: &'a mut Parts,
        resp: Option<&'a mut response::Parts>,
        each: &'a mut PerPlugin,
    ) -> Io<'a> {
        Io {
            req,
            resp,
            context: &mut each.context,
            log_fields,
            id,
            client_ip: client.0,
            client_cert: client.1,
            held: &mut each.held,
            calls: &mut each.calls,
        }
    }

    /// Applies a slot's failure policy: `Ok(None)` means skip the plugin.
    /// A call refused at once (an open breaker, a spent share) is logged
    /// here, at most once a second per slot with the count of the others
    /// (`Slot::refusal_report`); `proxy::handle` does not log it again.
    fn judge<T>(&self, slot: &Slot, r: Result<T, Failure>) -> Result<Option<T>, ProxyError> {
        let f = match r {
            Ok(v) => return Ok(Some(v)),
            Err(f) => f,
        };
        // Every other failure is logged: here when the plugin is skipped,
        // by `proxy::handle` when the request fails.
        let refused = f.kind.retry_after().is_some();
        let unlogged = if refused {
            slot.refusal_report()
        } else {
            Some(0)
        };
        let skip = slot.failure == FailurePolicy::Open;
        if let Some(unlogged) = unlogged
            && (skip || refused)
        {
            let what = if skip {
                "plugin skipped (failure = \"open\")"
            } else {
                "request refused: plugin unavailable (failure = \"closed\")"
            };
            tracing::warn!(
                plugin = &*f.plugin,
                request_id = ?self.id,
                reason = %f.kind,
                unlogged,
                "{what}"
            );
        }
        if skip {
            slot.stats().skipped();
            return Ok(None);
        }
        Err(ProxyError::Plugin {
            busy: f.kind.unavailable(),
            failure: f,
        })
    }

    /// The request phase, in chain order, as far as it goes without
    /// waiting.
    pub fn on_request(&mut self, parts: &mut Parts, router: &Router) -> Result<Step, ProxyError> {
        // Taken out and put back rather than cloned: an `Arc` clone and
        // drop are two atomic read-modify-writes per phase.
        let Some(chain) = self.chain.take() else {
            return Ok(Step::Decided(Decision::Forward(None)));
        };
        let step = self.request_from(&chain, parts, router, 0, None);
        self.chain = Some(chain);
        step
    }

    /// The request phase from plugin `from` on, until the chain decides
    /// or a plugin waits.
    fn request_from(
        &mut self,
        chain: &Chain,
        parts: &mut Parts,
        router: &Router,
        from: usize,
        mut steer: Option<Arc<Upstream>>,
    ) -> Result<Step, ProxyError> {
        for (i, slot) in chain.slots.iter().enumerate().skip(from) {
            if !slot.caps.request {
                self.ran = i + 1;
                continue;
            }
            let r = self.call_request(i, slot, parts, None);
            self.ran = i + 1;
            match self.settle(i, slot, r, router, |a| matches!(a, Action::Wait))? {
                None | Some(Action::Continue) => {}
                Some(Action::RouteTo(name)) => steer = Some(steer_to(slot, router, &name)?),
                Some(Action::Wait) => {
                    return Ok(Step::Waiting(Box::new(Waiting {
                        at: i,
                        steer,
                        answer: None,
                    })));
                }
                // The answer's response phase may wait on calls.
                Some(Action::Respond(r)) if chain.calls && chain.response => {
                    return Ok(Step::Waiting(Box::new(Waiting {
                        at: i,
                        steer,
                        answer: Some(r),
                    })));
                }
                Some(Action::Respond(r)) => {
                    let (mut head, body) = self.answering(chain, i, parts, r);
                    self.response_head_phase(chain, &mut head)?;
                    let resp = Response::from_parts(head, body);
                    return Ok(Step::Decided(Decision::Respond(Box::new(resp))));
                }
            }
        }
        self.keep_request(chain, parts);
        Ok(Step::Decided(Decision::Forward(steer)))
    }

    /// Whether a plugin of the chain asked for the request body (without
    /// one the body streams and `on_request_body` need not be awaited).
    pub fn wants_request_body(&self) -> bool {
        self.chain.as_ref().is_some_and(|c| c.request_body)
    }

    /// Whether a plugin of the chain asked for the response body (without
    /// one, [`Scope::on_response`] runs the response phase without a future).
    pub fn wants_response_body(&self) -> bool {
        self.chain.as_ref().is_some_and(|c| c.response_body)
    }

    /// The response phase over the head, for chains that did not ask for
    /// the response body.
    pub fn on_response(
        &mut self,
        resp: Response<ResponseBody>,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        // Without a response phase the response is not even taken apart.
        if !self.chain.as_ref().is_some_and(|c| c.response) {
            return Ok(resp);
        }
        let (mut head, body) = resp.into_parts();
        self.response_head(&mut head)?;
        Ok(Response::from_parts(head, body))
    }

    /// The request-body phase when a plugin asked for it: the body is
    /// buffered up to the smaller of the plugin cap and the route's limit
    /// (413 past it). Otherwise the body streams through untouched.
    pub async fn on_request_body(
        &mut self,
        parts: &mut Parts,
        body: ClientBody,
        (route, router): (&Route, &Router),
        cap: usize,
    ) -> Result<Result<RequestBody, Response<ResponseBody>>, ProxyError> {
        let chain = match &self.chain {
            Some(c) if c.request_body => c.clone(),
            _ => return Ok(Ok(RequestBody::limited(body, route.max_body_bytes))),
        };
        let limit = (cap as u64).min(route.max_body_bytes);
        let collected =
            tokio::time::timeout(route.timeout, Limited::new(body, limit as usize).collect()).await;
        let mut bytes: Bytes = match collected {
            Err(_) => return Err(ProxyError::BodyTimeout),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(ProxyError::BodyTooLarge { limit });
            }
            Ok(Err(_)) => return Err(ProxyError::BadFraming("the request body ended early")),
            Ok(Ok(c)) => c.to_bytes(),
        };
        let mut changed = false;
        for (i, slot) in chain.slots.iter().enumerate() {
            if !slot.caps.request_body {
                continue;
            }
            let mut io = Self::io(
                &mut self.id,
                &mut self.log_fields,
                (self.client_ip, self.client_cert.as_ref()),
                parts,
                None,
                &mut self.each[i],
            );
            let t = self.calls.start();
            let r = slot.on_request_body(&mut io, &bytes);
            self.calls.done(t, &slot.name, "request_body", outcome(&r));
            match self.judge(slot, r)? {
                None | Some(BodyAction::Continue) => {}
                Some(BodyAction::Replace(b)) => {
                    bytes = Bytes::from(b);
                    changed = true;
                }
                Some(BodyAction::Respond(r)) => {
                    self.ran = i;
                    let mut head = r.head;
                    self.response_head_any(&chain, router, &mut head).await?;
                    return Ok(Err(Response::from_parts(head, ResponseBody::full(r.body))));
                }
            }
        }
        if changed {
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        }
        if let Some(req) = &mut self.request {
            req.headers = parts.headers.clone();
        }
        Ok(Ok(RequestBody::full(bytes)))
    }

    /// The response phase in reverse chain order, then the response-body
    /// phase when a plugin asked for it (buffered up to `cap`; 502 past
    /// it, as the upstream's answer cannot be passed on whole).
    pub async fn on_response_body(
        &mut self,
        resp: Response<ResponseBody>,
        cap: usize,
        (route, router): (&Route, &Router),
    ) -> Result<Response<ResponseBody>, ProxyError> {
        let chain = match &self.chain {
            None => return Ok(resp),
            Some(c) if !c.response_body => return self.on_response(resp),
            Some(c) => c.clone(),
        };
        let (mut head, body) = resp.into_parts();
        self.response_head_any(&chain, router, &mut head).await?;
        let collected =
            tokio::time::timeout(route.timeout, Limited::new(body, cap).collect()).await;
        let mut bytes: Bytes = match collected {
            Err(_) => return Err(ProxyError::BodyTimeout),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(ProxyError::ResponseBodyTooLarge { limit: cap as u64 });
            }
            Ok(Err(_)) => return Err(ProxyError::ResponseBodyBroken),
            Ok(Ok(c)) => c.to_bytes(),
        };
        let mut req = self.request.take().unwrap_or_else(no_request);
        for i in (0..self.ran).rev() {
            let slot = &chain.slots[i];
            if !slot.caps.response_body {
                continue;
            }
            let mut io = Self::io(
                &mut self.id,
                &mut self.log_fields,
                (self.client_ip, self.client_cert.as_ref()),
                &mut req,
                Some(&mut head),
                &mut self.each[i],
            );
            let t = self.calls.start();
            let r = slot.on_response_body(&mut io, &bytes);
            self.calls.done(t, &slot.name, "response_body", outcome(&r));
            match self.judge(slot, r) {
                Ok(Some(Some(b))) => bytes = Bytes::from(b),
                Ok(_) => {}
                Err(e) => {
                    self.request = Some(req);
                    return Err(e);
                }
            }
        }
        self.request = Some(req);
        head.headers.remove(header::TRANSFER_ENCODING);
        head.headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        Ok(Response::from_parts(head, ResponseBody::full(bytes)))
    }

    /// Response phase over a head, reverse chain order.
    fn response_head(&mut self, head: &mut response::Parts) -> Result<(), ProxyError> {
        let Some(chain) = self.chain.take() else {
            return Ok(());
        };
        let r = self.response_head_phase(&chain, head);
        self.chain = Some(chain);
        r
    }

    fn response_head_phase(
        &mut self,
        chain: &Chain,
        head: &mut response::Parts,
    ) -> Result<(), ProxyError> {
        if !chain.response {
            return Ok(());
        }
        let mut req = self.request.take().unwrap_or_else(no_request);
        let mut result = Ok(());
        for i in (0..self.ran).rev() {
            let slot = &chain.slots[i];
            if !slot.caps.response {
                continue;
            }
            let r = self.call_response(i, slot, (&mut req, head), None);
            if let Err(e) = self.judge(slot, r) {
                result = Err(e);
                break;
            }
        }
        self.request = Some(req);
        result
    }

    /// The log phase, spawned so the response does not wait for it. Runs,
    /// in chain order, for every plugin that asked for it and that the
    /// request went through, after the results of the calls plugins did
    /// not wait for have reached them (`on-background-calls`); nothing is
    /// spawned when there is no such plugin or call and no instance held
    /// for the request to drop.
    pub fn on_log(&mut self, status: u16) {
        let Some(chain) = self.chain.take() else {
            return;
        };
        // Whether or not the access log took the fields, the line is
        // written: the log phase cannot add to it.
        self.log_fields.take();
        // Instances held for the request (request isolation) are dropped
        // in the task too: dropping a store is not free either.
        let held = self.each.iter().any(|p| p.held.is_some());
        let logs = chain.log && self.ran > 0;
        let background = self.out.as_ref().is_some_and(|o| !o.background.is_empty());
        if !(logs || held || background) || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let this = std::mem::take(self);
        tokio::spawn(async move {
            let mut this = this;
            let mut req = this.request.take().unwrap_or_else(no_request);
            this.background_results(&chain, &mut req).await;
            for i in 0..this.ran {
                let slot = &chain.slots[i];
                if !slot.caps.log {
                    continue;
                }
                let mut io = Self::io(
                    &mut this.id,
                    &mut this.log_fields,
                    (this.client_ip, this.client_cert.as_ref()),
                    &mut req,
                    None,
                    &mut this.each[i],
                );
                if let Err(f) = slot.on_log(&mut io, status) {
                    tracing::warn!(plugin = &*f.plugin, request_id = ?this.id, reason = %f.kind, "log phase failed");
                }
            }
        });
    }

    /// Waits for the calls plugins started without waiting and hands each
    /// plugin its results, in the order it started them.
    async fn background_results(&mut self, chain: &Chain, req: &mut Parts) {
        let Some(out) = &mut self.out else {
            return;
        };
        let tasks = std::mem::take(&mut out.background);
        let mut each: Vec<Waited> = chain.slots.iter().map(|_| Waited::default()).collect();
        for t in tasks {
            let plugin = t.plugin;
            t.finish(&mut each[plugin], chain.slots[plugin].stats())
                .await;
        }
        for (i, (slot, results)) in chain.slots.iter().zip(each).enumerate() {
            if results.calls.is_empty() && results.fleet.is_empty() {
                continue;
            }
            let mut io = Self::io(
                &mut self.id,
                &mut self.log_fields,
                (self.client_ip, self.client_cert.as_ref()),
                req,
                None,
                &mut self.each[i],
            );
            if let Err(f) = slot.on_background_calls(&mut io, results) {
                tracing::warn!(plugin = &*f.plugin, request_id = ?self.id, reason = %f.kind, "background calls' results failed");
            }
        }
    }

    /// What is left of `timeout` for the upstream: all of it, unless a
    /// plugin waited on calls, which spent part of the request's deadline.
    pub fn remaining(&self, timeout: Duration) -> Duration {
        match &self.out {
            Some(o) if o.waited => o.deadline.saturating_duration_since(Instant::now()),
            _ => timeout,
        }
    }

    /// The rest of the request phase after a plugin waited (or answered
    /// with a response phase that may wait): its calls are sent and
    /// awaited, it is called again with their results, and the chain goes
    /// on, waiting again as often as its plugins do. `chain` is the
    /// route's, the one [`Scope::start`] took: borrowed from the route
    /// rather than taken out of the scope, which keeps it, so a request
    /// dropped while it waits runs its log phase from there.
    pub async fn finish_request(
        &mut self,
        chain: &Chain,
        mut waiting: Box<Waiting>,
        parts: &mut Parts,
        router: &Router,
    ) -> Result<Decision, ProxyError> {
        loop {
            let Waiting { at, steer, answer } = *waiting;
            if let Some(r) = answer {
                let (mut head, body) = self.answering(chain, at, parts, r);
                self.response_head_calling(chain, router, &mut head).await?;
                return Ok(Decision::Respond(Box::new(Response::from_parts(
                    head, body,
                ))));
            }
            let slot = &chain.slots[at];
            let mut steer = steer;
            loop {
                // The log phase of a request abandoned while it waits
                // reads the head as it is now.
                self.keep_request(chain, parts);
                let results = self.wait_calls(at, slot, router).await;
                let r = self.call_request(at, slot, parts, Some(results));
                match self.settle(at, slot, r, router, |a| matches!(a, Action::Wait))? {
                    Some(Action::Wait) => continue,
                    None | Some(Action::Continue) => {}
                    Some(Action::RouteTo(name)) => steer = Some(steer_to(slot, router, &name)?),
                    Some(Action::Respond(r)) => {
                        let (mut head, body) = self.answering(chain, at, parts, r);
                        self.response_head_calling(chain, router, &mut head).await?;
                        let resp = Response::from_parts(head, body);
                        return Ok(Decision::Respond(Box::new(resp)));
                    }
                }
                break;
            }
            match self.request_from(chain, parts, router, at + 1, steer)? {
                Step::Decided(d) => return Ok(d),
                Step::Waiting(w) => waiting = w,
            }
        }
    }

    /// Plugin `i` answered the request itself: the plugins before it
    /// still see the answer in their response phase, as they would an
    /// upstream's (the caller runs it on the head returned).
    fn answering(
        &mut self,
        chain: &Chain,
        i: usize,
        parts: &Parts,
        r: crate::plugin::Respond,
    ) -> (response::Parts, ResponseBody) {
        self.ran = i;
        self.keep_request(chain, parts);
        (r.head, ResponseBody::full(r.body))
    }

    /// One request-phase call of plugin `i`: `on-request`, or with
    /// `results`, `on-request-calls`.
    fn call_request(
        &mut self,
        i: usize,
        slot: &Slot,
        parts: &mut Parts,
        results: Option<Waited>,
    ) -> Result<Action, Failure> {
        let mut io = Self::io(
            &mut self.id,
            &mut self.log_fields,
            (self.client_ip, self.client_cert.as_ref()),
            parts,
            None,
            &mut self.each[i],
        );
        let t = self.calls.start();
        let (r, phase) = match results {
            None => (slot.on_request(&mut io), "request"),
            Some(results) => (slot.on_request_calls(&mut io, results), "request_calls"),
        };
        self.calls.done(t, &slot.name, phase, outcome(&r));
        r
    }

    /// One response-phase call of plugin `i`: `on-response`, or with
    /// `results`, `on-response-calls`.
    fn call_response(
        &mut self,
        i: usize,
        slot: &Slot,
        (req, head): (&mut Parts, &mut response::Parts),
        results: Option<Waited>,
    ) -> Result<Flow, Failure> {
        let mut io = Self::io(
            &mut self.id,
            &mut self.log_fields,
            (self.client_ip, self.client_cert.as_ref()),
            req,
            Some(head),
            &mut self.each[i],
        );
        let t = self.calls.start();
        let (r, phase) = match results {
            None => (slot.on_response(&mut io), "response"),
            Some(results) => (slot.on_response_calls(&mut io, results), "response_calls"),
        };
        self.calls.done(t, &slot.name, phase, outcome(&r));
        r
    }

    /// [`Scope::judge`] for a plugin that may have started calls: a
    /// failed or skipped call's calls are dropped unsent; an answer other
    /// than `wait` sends them in the background.
    fn settle<T>(
        &mut self,
        i: usize,
        slot: &Slot,
        r: Result<T, Failure>,
        router: &Router,
        waits: impl Fn(&T) -> bool,
    ) -> Result<Option<T>, ProxyError> {
        let judged = self.judge(slot, r);
        match &judged {
            Ok(Some(v)) if waits(v) => {}
            Ok(Some(_)) => self.detach(i, router),
            _ => {
                drop(self.each[i].calls.take());
                drop(self.each[i].calls.take_fleet());
            }
        }
        judged
    }

    /// Starts plugin `i`'s calls and fleet operations of the phase call
    /// that just ended as tasks beside the request.
    fn detach(&mut self, i: usize, router: &Router) {
        let started = self.each[i].calls.take();
        let fleet = self.each[i].calls.take_fleet();
        let Some(out) = &mut self.out else {
            return;
        };
        for op in fleet {
            out.background.push(Background {
                plugin: i,
                id: op.id,
                tag: op.tag.clone(),
                task: Task::Fleet(tokio::spawn(op.run())),
            });
        }
        for call in started {
            let upstream = router.upstream(&call.upstream).cloned();
            out.background.push(Background {
                plugin: i,
                id: call.id,
                tag: call.tag.clone(),
                task: Task::Call(tokio::spawn(super::calls::send_one(
                    upstream,
                    out.peer,
                    out.carried.clone(),
                    call,
                    out.deadline,
                ))),
            });
        }
    }

    /// Sends plugin `i`'s calls and fleet operations and waits for them
    /// all; each call is a span of the request's trace when its plugin
    /// calls are recorded.
    async fn wait_calls(&mut self, i: usize, slot: &Slot, router: &Router) -> Waited {
        let started = self.each[i].calls.take();
        let fleet = self.each[i].calls.take_fleet();
        let Some(out) = &mut self.out else {
            unreachable!("only a chain that may call out starts calls");
        };
        out.waited = true;
        let recorded: Option<Vec<(SpanId, String)>> = self.calls.is_recording().then(|| {
            started
                .iter()
                .map(|c| (SpanId::random(), c.upstream.clone()))
                .collect()
        });
        let spans: Option<Vec<SpanId>> = recorded
            .as_ref()
            .map(|r| r.iter().map(|(s, _)| *s).collect());
        let begun = Instant::now();
        let (results, fleet) = futures_util::future::join(
            super::calls::send_all(
                router,
                out.peer,
                &out.carried,
                started,
                (out.deadline, spans.as_deref()),
                slot.stats(),
            ),
            futures_util::future::join_all(fleet.into_iter().map(FleetOp::run)),
        )
        .await;
        let mut finished = Vec::with_capacity(results.len());
        let mut recorded = recorded.map(Vec::into_iter);
        for (f, ended) in results {
            if let Some((span, upstream)) = recorded.as_mut().and_then(Iterator::next) {
                let status = f.outcome.as_ref().ok().map(|a| a.status);
                self.calls.call(
                    span,
                    (begun, ended),
                    (&slot.name, &upstream),
                    (f.label(), status),
                );
            }
            finished.push(f);
        }
        Waited {
            calls: finished,
            fleet,
        }
    }

    /// The response phase over the head, for chains that may call out;
    /// `chain` as in [`Scope::finish_request`].
    pub async fn on_response_calling(
        &mut self,
        chain: &Chain,
        router: &Router,
        resp: Response<ResponseBody>,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        if !chain.response {
            return Ok(resp);
        }
        let (mut head, body) = resp.into_parts();
        self.response_head_any(chain, router, &mut head).await?;
        Ok(Response::from_parts(head, body))
    }

    /// The response phase over a head, for any chain.
    async fn response_head_any(
        &mut self,
        chain: &Chain,
        router: &Router,
        head: &mut response::Parts,
    ) -> Result<(), ProxyError> {
        if chain.calls {
            self.response_head_calling(chain, router, head).await
        } else {
            self.response_head_phase(chain, head)
        }
    }

    /// The response phase in reverse chain order, for a chain that may
    /// call out.
    async fn response_head_calling(
        &mut self,
        chain: &Chain,
        router: &Router,
        head: &mut response::Parts,
    ) -> Result<(), ProxyError> {
        if !chain.response {
            return Ok(());
        }
        let mut req = self.request.take().unwrap_or_else(no_request);
        let mut result = Ok(());
        'plugins: for i in (0..self.ran).rev() {
            let slot = &chain.slots[i];
            if !slot.caps.response {
                continue;
            }
            let mut r = self.call_response(i, slot, (&mut req, head), None);
            loop {
                match self.settle(i, slot, r, router, |f| *f == Flow::Wait) {
                    Ok(Some(Flow::Wait)) => {
                        self.request = Some(copy_head(&req));
                        let results = self.wait_calls(i, slot, router).await;
                        r = self.call_response(i, slot, (&mut req, head), Some(results));
                    }
                    Ok(_) => break,
                    Err(e) => {
                        result = Err(e);
                        break 'plugins;
                    }
                }
            }
        }
        self.request = Some(req);
        result
    }
}
