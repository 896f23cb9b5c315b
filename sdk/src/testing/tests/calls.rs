//! Tests of the test host's calls: the gateway's checks and bounds at
//! start, the scripted answers on the clock, and the phases that get
//! results, in the gateway's order.

use std::time::Duration;

use serde::Deserialize;

use crate::calls::{Call, CallError, CallId, CallResult};
use crate::fleet::FleetResult;
use crate::testing::{CallLimits, Phase, TestCallAnswer, TestCallResponse, TestHost, TestRequest};
use crate::{Action, BodyAction, Phases, Plugin, Request, Response, ResponseAction};

/// What one phase call does: the calls it starts, and whether it waits.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Step {
    calls: Vec<Spec>,
    wait: bool,
}

/// A call to start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    upstream: String,
    #[serde(default = "root")]
    path: String,
    #[serde(default = "get")]
    method: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body_bytes: usize,
    timeout_ms: Option<u64>,
    #[serde(default)]
    tag: String,
}

fn root() -> String {
    "/".into()
}

fn get() -> String {
    "GET".into()
}

impl Spec {
    fn start(&self) -> Result<CallId, CallError> {
        let mut call = Call::new(&*self.method, &*self.upstream, &*self.path)
            .body(vec![b'b'; self.body_bytes])
            .tag(&*self.tag);
        for (name, value) in &self.headers {
            call = call.header(name, value);
        }
        if let Some(ms) = self.timeout_ms {
            call = call.timeout(Duration::from_millis(ms));
        }
        call.start()
    }
}

/// The plugin's plan for every phase; the `*_calls` ones have one step
/// per round (a round past the list starts nothing and goes on).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Plan {
    init: Step,
    request: Step,
    request_calls: Vec<Step>,
    request_body: Step,
    response: Step,
    response_calls: Vec<Step>,
    response_body: Step,
    background: Step,
    log: Step,
    /// The request phase answers the client itself when it does not wait.
    respond: bool,
}

/// Starts the calls its plan says in each phase and keeps what it got:
/// each start's answer, and each batch of results with the clock then.
struct Caller {
    plan: Plan,
    round: usize,
    started: Vec<(&'static str, Result<CallId, CallError>)>,
    got: Vec<(&'static str, u64, Vec<CallResult>)>,
    log_field: Option<Result<(), String>>,
}

impl Caller {
    /// Runs a step: starts its calls, noting each answer; whether to wait.
    fn step(&mut self, phase: &'static str, step: &Step) -> bool {
        for spec in &step.calls {
            self.started.push((phase, spec.start()));
        }
        step.wait
    }

    fn round(steps: &[Step], round: usize) -> Step {
        steps.get(round).cloned().unwrap_or_default()
    }

    fn got(&mut self, phase: &'static str, results: Vec<CallResult>) {
        self.got.push((phase, crate::time::now_ms(), results));
    }

    fn action(&self, wait: bool) -> Action {
        match (wait, self.plan.respond) {
            (true, _) => Action::Wait,
            (false, true) => Action::respond(200).body("mine").into(),
            (false, false) => Action::Continue,
        }
    }
}

fn response_action(wait: bool) -> ResponseAction {
    if wait {
        ResponseAction::Wait
    } else {
        ResponseAction::Continue
    }
}

impl Plugin for Caller {
    type Config = Plan;

    fn new(plan: Plan) -> Result<Self, String> {
        let mut caller = Caller {
            plan,
            round: 0,
            started: Vec::new(),
            got: Vec::new(),
            log_field: None,
        };
        let step = caller.plan.init.clone();
        caller.step("init", &step);
        Ok(caller)
    }

    fn phases(&self) -> Phases {
        Phases::ALL
    }

    fn on_request(&mut self, _: &mut Request<'_>) -> Action {
        self.round = 0;
        let step = self.plan.request.clone();
        let wait = self.step("request", &step);
        self.action(wait)
    }

    fn on_request_calls(
        &mut self,
        _: &mut Request<'_>,
        results: Vec<CallResult>,
        _: Vec<FleetResult>,
    ) -> Action {
        self.got("request_calls", results);
        let step = Self::round(&self.plan.request_calls, self.round);
        self.round += 1;
        let wait = self.step("request_calls", &step);
        self.action(wait)
    }

    fn on_request_body(&mut self, _: &mut Request<'_>, _: Vec<u8>) -> BodyAction {
        let step = self.plan.request_body.clone();
        self.step("request_body", &step);
        BodyAction::Continue
    }

    fn on_response(&mut self, _: &Request<'_>, _: &mut Response<'_>) -> ResponseAction {
        self.round = 0;
        let step = self.plan.response.clone();
        response_action(self.step("response", &step))
    }

    fn on_response_calls(
        &mut self,
        _: &Request<'_>,
        resp: &mut Response<'_>,
        results: Vec<CallResult>,
        _: Vec<FleetResult>,
    ) -> ResponseAction {
        resp.set_header("x-round", &self.round.to_string()).unwrap();
        self.got("response_calls", results);
        let step = Self::round(&self.plan.response_calls, self.round);
        self.round += 1;
        response_action(self.step("response_calls", &step))
    }

    fn on_response_body(
        &mut self,
        _: &Request<'_>,
        _: &mut Response<'_>,
        _: Vec<u8>,
    ) -> Option<Vec<u8>> {
        let step = self.plan.response_body.clone();
        self.step("response_body", &step);
        None
    }

    fn on_background_calls(
        &mut self,
        _: &Request<'_>,
        results: Vec<CallResult>,
        _: Vec<FleetResult>,
    ) {
        self.got("background", results);
        self.log_field = Some(crate::log::set_field("late", "x"));
        let step = self.plan.background.clone();
        self.step("background", &step);
    }

    fn on_log(&mut self, _: &Request<'_>, _: u16) {
        let step = self.plan.log.clone();
        self.step("log", &step);
    }
}

fn host(plan: serde_json::Value) -> TestHost<Caller> {
    let mut host = TestHost::<Caller>::new(plan).unwrap();
    host.allow_calls(["auth", "jwks", "audit"]);
    host
}

fn ok(status: u16) -> TestCallResponse {
    TestCallResponse::new(status)
}

/// The results a phase got, as (tag, status or error) pairs.
fn outcomes(results: &[CallResult]) -> Vec<(String, Result<u16, CallError>)> {
    results
        .iter()
        .map(|r| {
            let outcome = r
                .outcome
                .as_ref()
                .map(|resp| resp.status)
                .map_err(Clone::clone);
            (r.tag.clone(), outcome)
        })
        .collect()
}

fn errors(host: &TestHost<Caller>) -> Vec<CallError> {
    host.plugin()
        .started
        .iter()
        .filter_map(|(_, r)| r.clone().err())
        .collect()
}

#[test]
fn a_wait_gets_every_result_in_start_order_after_the_slowest() {
    let mut host = host(serde_json::json!({
        "request": { "wait": true, "calls": [
            { "upstream": "auth", "tag": "a" },
            { "upstream": "jwks", "tag": "j" },
            { "upstream": "audit", "tag": "x" },
        ]},
    }));
    host.answer_calls("auth", ok(200).delay(Duration::from_millis(10)))
        .answer_calls("jwks", ok(201).delay(Duration::from_millis(30)))
        .answer_calls("audit", ok(202).delay(Duration::from_millis(20)));
    let before = host.now_ms();
    let exchange = host.run(TestRequest::get("/"));
    let (phase, at, results) = &host.plugin().got[0];
    assert_eq!(*phase, "request_calls");
    assert_eq!(*at, before + 30, "side by side: the slowest's time");
    assert_eq!(
        outcomes(results),
        [
            ("a".into(), Ok(200)),
            ("j".into(), Ok(201)),
            ("x".into(), Ok(202))
        ]
    );
    let ids: Vec<CallId> = results.iter().map(|r| r.id).collect();
    let started: Vec<CallId> = host
        .plugin()
        .started
        .iter()
        .map(|(_, r)| r.clone().unwrap())
        .collect();
    assert_eq!(ids, started);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        exchange.phases(),
        [
            Phase::Request,
            Phase::RequestCalls,
            Phase::RequestBody,
            Phase::Response,
            Phase::ResponseBody,
            Phase::Log
        ]
    );
    assert!(exchange.calls().iter().all(|c| !c.background()));
    assert!(exchange.upstream_request().is_some());
}

#[test]
fn a_phase_may_wait_again_in_both_phases() {
    let mut host = host(serde_json::json!({
        "request": { "wait": true, "calls": [{ "upstream": "jwks", "tag": "keys" }] },
        "request_calls": [
            { "wait": true, "calls": [{ "upstream": "auth", "tag": "check" }] },
        ],
        "response": { "wait": true, "calls": [{ "upstream": "audit", "tag": "r1" }] },
        "response_calls": [
            { "wait": true, "calls": [{ "upstream": "audit", "tag": "r2" }] },
        ],
    }));
    host.answer_calls("jwks", ok(200))
        .answer_calls("auth", ok(204))
        .answer_calls("audit", ok(202));
    let exchange = host.run(TestRequest::get("/"));
    assert_eq!(
        exchange.phases(),
        [
            Phase::Request,
            Phase::RequestCalls,
            Phase::RequestCalls,
            Phase::RequestBody,
            Phase::Response,
            Phase::ResponseCalls,
            Phase::ResponseCalls,
            Phase::ResponseBody,
            Phase::Log
        ]
    );
    let got: Vec<_> = host
        .plugin()
        .got
        .iter()
        .map(|(phase, _, results)| (*phase, outcomes(results)))
        .collect();
    assert_eq!(
        got,
        [
            ("request_calls", vec![("keys".into(), Ok(200))]),
            ("request_calls", vec![("check".into(), Ok(204))]),
            ("response_calls", vec![("r1".into(), Ok(202))]),
            ("response_calls", vec![("r2".into(), Ok(202))]),
        ]
    );
    // Each round gets only the calls of the call that waited; the second
    // response round's change is what the client sees.
    assert_eq!(exchange.header("x-round"), Some("1"));
    assert_eq!(exchange.calls().len(), 4);
}

#[test]
fn a_reply_after_waiting_skips_the_upstream() {
    let mut host = host(serde_json::json!({
        "request": { "wait": true, "calls": [{ "upstream": "auth" }] },
        "respond": true,
    }));
    host.answer_calls("auth", ok(403));
    let exchange = host.run(TestRequest::get("/"));
    assert!(exchange.responded_by_plugin());
    assert_eq!(exchange.body_text(), "mine");
    assert_eq!(
        exchange.phases(),
        [Phase::Request, Phase::RequestCalls, Phase::Log]
    );
}

#[test]
fn calls_a_phase_does_not_wait_for_come_after_the_response_before_the_log() {
    let mut host = host(serde_json::json!({
        "request": { "calls": [{ "upstream": "audit", "tag": "req" }] },
        "response": { "wait": true, "calls": [{ "upstream": "auth", "tag": "waited" }] },
        "response_calls": [{ "calls": [{ "upstream": "audit", "tag": "resp" }] }],
    }));
    host.answer_calls("audit", ok(202).delay(Duration::from_millis(500)))
        .answer_calls("auth", ok(200).delay(Duration::from_millis(5)));
    let before = host.now_ms();
    let exchange = host.run(TestRequest::get("/"));
    assert_eq!(
        exchange.phases(),
        [
            Phase::Request,
            Phase::RequestBody,
            Phase::Response,
            Phase::ResponseCalls,
            Phase::ResponseBody,
            Phase::BackgroundCalls,
            Phase::Log
        ]
    );
    let got = &host.plugin().got;
    assert_eq!(got[0].1, before + 5, "the wait did not wait for the audit");
    let (phase, at, results) = &got[1];
    assert_eq!(*phase, "background");
    assert_eq!(
        outcomes(results),
        [("req".into(), Ok(202)), ("resp".into(), Ok(202))]
    );
    // The second audit started 5 ms in: the last ends at 505 ms.
    assert_eq!(*at, before + 505);
    let background: Vec<bool> = exchange.calls().iter().map(|c| c.background()).collect();
    assert_eq!(background, [true, false, true]);
    // The access-log line is written: no fields there.
    assert_eq!(
        host.plugin().log_field.clone().unwrap().unwrap_err(),
        "the access-log line is already written: the log phase cannot set log fields"
    );
}

#[test]
fn background_calls_of_a_reply_are_delivered_too() {
    let mut host = host(serde_json::json!({
        "request": { "calls": [{ "upstream": "audit" }] },
        "respond": true,
    }));
    host.answer_calls("audit", CallError::Failed("connection refused".into()));
    let exchange = host.run(TestRequest::get("/"));
    assert_eq!(
        exchange.phases(),
        [Phase::Request, Phase::BackgroundCalls, Phase::Log]
    );
    assert_eq!(
        outcomes(&host.plugin().got[0].2),
        [(
            String::new(),
            Err(CallError::Failed("connection refused".into()))
        )]
    );
    // Without calls, no background phase.
    let mut quiet = self::host(serde_json::json!({}));
    assert_eq!(
        quiet.run(TestRequest::get("/")).phases(),
        [
            Phase::Request,
            Phase::RequestBody,
            Phase::Response,
            Phase::ResponseBody,
            Phase::Log
        ]
    );
}

#[test]
fn calls_start_only_in_the_request_and_response_phases() {
    let call = |tag: &str| serde_json::json!({ "calls": [{ "upstream": "audit", "tag": tag }] });
    let mut host = host(serde_json::json!({
        "init": call("init"),
        "request": call("request"),
        "request_body": call("request_body"),
        "response_body": call("response_body"),
        "background": call("background"),
        "log": call("log"),
    }));
    host.answer_calls("audit", ok(200));
    let exchange = host.run(TestRequest::get("/"));
    let started: Vec<(&str, Result<CallId, CallError>)> = host.plugin().started.clone();
    let refused = || {
        Err(CallError::Invalid(
            "calls start only in the request and response phases (and their -calls exports)".into(),
        ))
    };
    assert_eq!(
        started,
        [
            ("init", refused()),
            ("request", Ok(CallId(0))),
            ("request_body", refused()),
            ("response_body", refused()),
            ("background", refused()),
            ("log", refused()),
        ]
    );
    assert_eq!(exchange.calls().len(), 1);
}

#[test]
fn only_allowed_upstreams_answer_and_unscripted_ones_fail() {
    let mut host = host(serde_json::json!({
        "request": { "wait": true, "calls": [
            { "upstream": "billing" },
            { "upstream": "" },
            { "upstream": "jwks" },
        ]},
    }));
    host.run(TestRequest::get("/"));
    assert_eq!(
        errors(&host),
        [
            CallError::NotAllowed("upstream `billing` is not in this plugin's `calls` list".into()),
            CallError::NotAllowed("upstream `` is not in this plugin's `calls` list".into()),
        ]
    );
    assert_eq!(
        outcomes(&host.plugin().got[0].2),
        [(
            String::new(),
            Err(CallError::Failed(
                "no answer scripted for upstream `jwks`".into()
            ))
        )]
    );
    // The list is replaced, as the configuration's is.
    host.allow_calls(["billing"]);
    host.run(TestRequest::get("/"));
    assert_eq!(
        errors(&host)[2..],
        [
            CallError::NotAllowed("upstream `` is not in this plugin's `calls` list".into()),
            CallError::NotAllowed("upstream `jwks` is not in this plugin's `calls` list".into()),
        ]
    );
    // Until a test allows some, none is.
    let mut fresh = TestHost::<Caller>::new(serde_json::json!({
        "request": { "calls": [{ "upstream": "auth" }] },
    }))
    .unwrap();
    fresh.run(TestRequest::get("/"));
    assert!(matches!(errors(&fresh)[..], [CallError::NotAllowed(_)]));
}

#[test]
fn a_malformed_call_is_refused_with_the_gateways_reasons() {
    let mut host = host(serde_json::json!({
        "request": { "calls": [
            { "upstream": "billing", "path": "no-slash" },
            { "upstream": "auth", "path": "no-slash" },
            { "upstream": "auth", "method": "GE T" },
            { "upstream": "auth", "method": "CONNECT" },
            { "upstream": "auth", "path": "/a b" },
            { "upstream": "auth", "headers": [["content-length", "3"]] },
            { "upstream": "auth", "headers": [["upgrade", "websocket"]] },
            { "upstream": "auth", "headers": [["x-a", "a\r\nb"]] },
            { "upstream": "auth", "tag": "t".repeat(crate::calls::MAX_CALL_TAG_BYTES + 1) },
            { "upstream": "auth", "headers": [["host", "auth.internal"]],
              "tag": "t".repeat(crate::calls::MAX_CALL_TAG_BYTES) },
        ]},
    }));
    host.answer_calls("auth", ok(200));
    let exchange = host.run(TestRequest::get("/"));
    let mut errors = errors(&host).into_iter();
    // The allow-list comes first, as in the gateway.
    assert!(matches!(errors.next(), Some(CallError::NotAllowed(_))));
    let invalid: Vec<String> = errors
        .map(|e| match e {
            CallError::Invalid(why) => why,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        invalid,
        [
            "a call's path must start with `/`",
            "`GE T` is not an HTTP method a call may use",
            "`CONNECT` is not an HTTP method a call may use",
            "`/a b` is not a valid request path (visible ASCII, percent-encoded)",
            "`content-length` is set by the gateway for the call's connection and cannot be \
             sent by a plugin",
            "`upgrade` is set by the gateway for the call's connection and cannot be sent by a \
             plugin",
            "the value of `x-a` may not contain control characters (CR, LF, NUL)",
            "a call's tag is at most 256 bytes",
        ]
    );
    let sent = &exchange.calls()[0];
    assert_eq!(sent.header("Host"), Some("auth.internal"));
    assert_eq!(sent.tag().len(), crate::calls::MAX_CALL_TAG_BYTES);
}

#[test]
fn calls_per_request_are_bounded_background_ones_included() {
    let audit = serde_json::json!({ "upstream": "audit" });
    let mut host = host(serde_json::json!({
        "request": { "calls": [audit, audit, audit] },
        "response": { "calls": [audit, audit] },
    }));
    host.answer_calls("audit", ok(200));
    let exchange = host.run(TestRequest::get("/"));
    assert_eq!(
        exchange.calls().len(),
        crate::calls::DEFAULT_MAX_CALLS_PER_REQUEST
    );
    assert_eq!(
        errors(&host),
        [CallError::Limit(
            "at most 4 calls per request (max_calls_per_request)".into()
        )]
    );
    // The next request starts afresh, within its own setting.
    host.call_limits(CallLimits {
        max_per_request: 2,
        ..CallLimits::default()
    });
    assert_eq!(host.run(TestRequest::get("/")).calls().len(), 2);
    assert_eq!(errors(&host).len(), 1 + 3);
}

#[test]
fn calls_in_flight_are_bounded_on_the_clock() {
    let audit = serde_json::json!({ "upstream": "audit" });
    let mut host = host(serde_json::json!({
        "request": { "calls": [audit, audit] },
        "response": { "calls": [audit] },
    }));
    host.call_limits(CallLimits {
        max_in_flight: 1,
        ..CallLimits::default()
    });
    // A slow background call is still under way when the response phase
    // starts: refused.
    host.answer_calls("audit", ok(200).delay(Duration::from_millis(50)));
    host.run(TestRequest::get("/"));
    let refusal = CallError::Limit("the plugin has 1 calls in flight (max_calls_in_flight)".into());
    assert_eq!(errors(&host), [refusal.clone(), refusal.clone()]);

    // One that answered at once is not.
    let mut fast = self::host(serde_json::json!({
        "request": { "calls": [audit] },
        "response": { "calls": [audit] },
    }));
    fast.call_limits(CallLimits {
        max_in_flight: 1,
        ..CallLimits::default()
    });
    fast.answer_calls("audit", ok(200));
    assert_eq!(fast.run(TestRequest::get("/")).calls().len(), 2);
    assert!(errors(&fast).is_empty());
}

#[test]
fn bodies_are_capped_both_ways() {
    let cap = 1024;
    let mut host = host(serde_json::json!({
        "request": { "wait": true, "calls": [
            { "upstream": "audit", "body_bytes": cap + 1 },
            { "upstream": "audit", "body_bytes": cap, "tag": "fits" },
            { "upstream": "jwks", "tag": "big" },
            { "upstream": "auth", "tag": "edge" },
        ]},
    }));
    host.call_limits(CallLimits {
        max_body_bytes: cap,
        ..CallLimits::default()
    })
    .answer_calls("audit", ok(200))
    .answer_calls("jwks", ok(200).body(vec![b'k'; cap + 1]))
    .answer_calls("auth", ok(200).body(vec![b'k'; cap]));
    let exchange = host.run(TestRequest::get("/"));
    assert_eq!(
        errors(&host),
        [CallError::Limit(
            "a call's body is at most 1024 bytes (max_call_body_bytes)".into()
        )]
    );
    assert_eq!(
        outcomes(&host.plugin().got[0].2),
        [
            ("fits".into(), Ok(200)),
            ("big".into(), Err(CallError::TooLarge(1024))),
            ("edge".into(), Ok(200))
        ]
    );
    assert_eq!(exchange.calls()[0].body().len(), cap);
}

#[test]
fn a_calls_time_limit_is_its_own_the_plugins_or_the_deadlines_smallest() {
    let mut host = host(serde_json::json!({
        "request": { "wait": true, "calls": [
            { "upstream": "auth", "tag": "own", "timeout_ms": 100 },
            { "upstream": "auth", "tag": "plugin", "timeout_ms": 5000 },
            { "upstream": "auth", "tag": "none" },
        ]},
    }));
    host.call_limits(CallLimits {
        timeout: Duration::from_millis(300),
        ..CallLimits::default()
    })
    .answer_calls("auth", ok(200).delay(Duration::from_millis(100)));
    let limits = |exchange: &crate::testing::Exchange| -> Vec<u128> {
        exchange
            .calls()
            .iter()
            .map(|c| c.time_limit().as_millis())
            .collect()
    };
    let exchange = host.run(TestRequest::get("/"));
    assert_eq!(limits(&exchange), [100, 300, 300]);
    assert_eq!(
        exchange.calls()[0].timeout(),
        Some(Duration::from_millis(100))
    );
    assert_eq!(exchange.calls()[2].timeout(), None);
    // Exactly at its limit is in time.
    assert!(exchange.calls().iter().all(|c| c.outcome().is_ok()));

    let exchange = host.run(TestRequest::get("/").deadline(Duration::from_millis(200)));
    assert_eq!(limits(&exchange), [100, 200, 200]);
}

#[test]
fn a_slow_answer_times_out_at_the_limit_on_the_clock() {
    let mut host = host(serde_json::json!({
        "request": { "wait": true, "calls": [
            { "upstream": "auth", "tag": "slow", "timeout_ms": 50 },
            { "upstream": "jwks", "tag": "scripted" },
        ]},
    }));
    host.answer_calls("auth", ok(200).delay(Duration::from_micros(50_001)))
        .answer_calls("jwks", CallError::Timeout);
    let before = host.now_ms();
    host.run(TestRequest::get("/"));
    let (_, at, results) = &host.plugin().got[0];
    assert_eq!(
        outcomes(results),
        [
            ("slow".into(), Err(CallError::Timeout)),
            ("scripted".into(), Err(CallError::Timeout))
        ]
    );
    // A scripted timeout takes the whole limit: the gateway's 1 s.
    assert_eq!(*at, before + 1_000);
}

#[test]
fn a_call_after_the_deadline_is_refused() {
    let mut host = host(serde_json::json!({
        "request": { "wait": true, "calls": [{ "upstream": "auth", "tag": "first" }] },
        "request_calls": [{ "calls": [{ "upstream": "auth", "tag": "late" }] }],
    }));
    host.answer_calls("auth", ok(200).delay(Duration::from_secs(2)));
    let before = host.now_ms();
    let exchange = host.run(TestRequest::get("/").deadline(Duration::from_millis(400)));
    let (_, at, results) = &host.plugin().got[0];
    assert_eq!(*at, before + 400, "the first call's limit was the deadline");
    assert_eq!(
        outcomes(results),
        [("first".into(), Err(CallError::Timeout))]
    );
    assert_eq!(errors(&host), [CallError::Deadline]);
    assert_eq!(exchange.calls().len(), 1);
}

#[test]
#[should_panic(expected = "the plugin answered Wait without starting a call")]
fn waiting_without_a_call_fails_the_test() {
    let mut host = host(serde_json::json!({
        "request": { "wait": true, "calls": [{ "upstream": "billing" }] },
    }));
    host.run(TestRequest::get("/"));
}

#[test]
fn answers_in_order_are_used_up_over_runs() {
    let mut host = host(serde_json::json!({
        "request": { "wait": true, "calls": [{ "upstream": "jwks" }] },
    }));
    host.answer_calls_in_order(
        "jwks",
        [
            TestCallAnswer::from(ok(503)),
            CallError::Failed("reset".into()).into(),
            ok(200).header("Content-Type", "application/json").into(),
        ],
    );
    for _ in 0..4 {
        host.run(TestRequest::get("/"));
    }
    let got: Vec<_> = host
        .plugin()
        .got
        .iter()
        .map(|(_, _, r)| outcomes(r).remove(0).1)
        .collect();
    assert_eq!(
        got,
        [
            Ok(503),
            Err(CallError::Failed("reset".into())),
            Ok(200),
            Err(CallError::Failed(
                "the 3 answers scripted for upstream `jwks` are used up".into()
            ))
        ]
    );
    let third = &host.plugin().got[2].2[0];
    let answer = third.outcome.as_ref().unwrap();
    assert_eq!(
        answer.headers,
        [("content-type".to_owned(), "application/json".to_owned())]
    );
}

#[test]
#[should_panic(expected = "call_limits: max_calls_per_request is 1 to 64, not 65")]
fn limits_the_gateway_would_refuse_fail_the_test() {
    host(serde_json::json!({})).call_limits(CallLimits {
        max_per_request: 65,
        ..CallLimits::default()
    });
}

#[test]
fn limits_are_checked_against_the_configurations_ranges() {
    let bad = [
        CallLimits {
            max_per_request: 0,
            ..CallLimits::default()
        },
        CallLimits {
            max_in_flight: 0,
            ..CallLimits::default()
        },
        CallLimits {
            max_in_flight: crate::calls::MAX_CALLS_IN_FLIGHT + 1,
            ..CallLimits::default()
        },
        CallLimits {
            max_body_bytes: 0,
            ..CallLimits::default()
        },
        CallLimits {
            max_body_bytes: crate::calls::MAX_CALL_BODY_BYTES + 1,
            ..CallLimits::default()
        },
        CallLimits {
            timeout: Duration::from_micros(999),
            ..CallLimits::default()
        },
        CallLimits {
            timeout: crate::calls::MAX_CALL_TIMEOUT + Duration::from_millis(1),
            ..CallLimits::default()
        },
    ];
    for limits in bad {
        assert!(limits.check().is_err(), "{limits:?}");
    }
    assert!(CallLimits::default().check().is_ok());
}

/// Fetches a key set once and keeps it in shared state: what a JWKS
/// plugin does.
struct Cache;

impl Plugin for Cache {
    type Config = serde::de::IgnoredAny;

    fn new(_: Self::Config) -> Result<Self, String> {
        Ok(Cache)
    }

    fn on_request(&mut self, _: &mut Request<'_>) -> Action {
        match crate::state::get("keys") {
            Some(_) => Action::Continue,
            None => {
                Call::get("jwks", "/keys").tag("keys").start().unwrap();
                Action::Wait
            }
        }
    }

    fn on_request_calls(
        &mut self,
        _: &mut Request<'_>,
        results: Vec<CallResult>,
        _: Vec<FleetResult>,
    ) -> Action {
        let keys = results[0].outcome.as_ref().unwrap();
        crate::state::set("keys", &keys.body, None).unwrap();
        Action::Continue
    }
}

#[test]
fn shared_state_lets_a_plugin_call_once_over_requests() {
    let mut host = TestHost::<Cache>::new(serde_json::json!({})).unwrap();
    host.allow_calls(["jwks"])
        .answer_calls_in_order("jwks", [ok(200).body("k1")]);
    assert_eq!(host.run(TestRequest::get("/")).calls().len(), 1);
    assert_eq!(host.run(TestRequest::get("/")).calls().len(), 0);
    assert_eq!(host.state("keys").as_deref(), Some(&b"k1"[..]));
}

#[test]
fn outside_a_test_host_no_upstream_is_allowed() {
    super::super::with_request(TestRequest::get("/"), |_| {
        assert!(matches!(
            Call::get("auth", "/").start(),
            Err(CallError::NotAllowed(_))
        ));
    });
}
