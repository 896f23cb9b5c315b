//! Tests of the test host's fleet operations: answered at once in the
//! local and sync modes, waited for in the strict mode and delivered with
//! the calls' results, the gateway's bounds and refusals, Redis out of
//! reach, and the fleet keys apart from shared state.

use std::time::Duration;

use serde::Deserialize;

use crate::calls::{Call, CallResult};
use crate::fleet::{
    self, Bucket, FleetAnswer, FleetError, FleetResult, Increment, MAX_FLEET_PENDING_PER_CALL,
    Started, Take,
};
use crate::state::BucketOutcome;
use crate::testing::{FleetMode, FleetOpKind, Phase, TestCallResponse, TestHost, TestRequest};
use crate::{Action, BodyAction, Phases, Plugin, Request, Response, ResponseAction};

/// One fleet operation to start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum Op {
    Take {
        key: String,
        #[serde(default = "one")]
        capacity: u64,
        #[serde(default = "one")]
        refill: u64,
        #[serde(default = "one")]
        cost: u64,
        #[serde(default)]
        tag: String,
    },
    Increment {
        key: String,
        #[serde(default = "one_i64")]
        delta: i64,
        ttl_ms: Option<u64>,
        #[serde(default)]
        tag: String,
    },
}

fn one() -> u64 {
    1
}

fn one_i64() -> i64 {
    1
}

impl Op {
    fn start(&self) -> Result<Started<FleetAnswer>, FleetError> {
        match self {
            Op::Take {
                key,
                capacity,
                refill,
                cost,
                tag,
            } => {
                let bucket = Bucket {
                    capacity: *capacity,
                    refill_per_second: *refill,
                };
                let started = Take::new(key, bucket, *cost).tag(tag).start()?;
                Ok(match started {
                    Started::Done(outcome) => Started::Done(FleetAnswer::Bucket(outcome)),
                    Started::Pending(id) => Started::Pending(id),
                })
            }
            Op::Increment {
                key,
                delta,
                ttl_ms,
                tag,
            } => {
                let mut op = Increment::new(key, *delta).tag(tag);
                if let Some(ms) = ttl_ms {
                    op = op.ttl(Duration::from_millis(*ms));
                }
                Ok(match op.start()? {
                    Started::Done(value) => Started::Done(FleetAnswer::Counter(value)),
                    Started::Pending(id) => Started::Pending(id),
                })
            }
        }
    }
}

/// What one phase call does: the operations and calls it starts, and
/// whether it waits.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Step {
    ops: Vec<Op>,
    /// Upstreams to call (GET /), each tagged with its name.
    calls: Vec<String>,
    wait: bool,
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
    background: Step,
    log: Step,
}

type Answer = Result<Started<FleetAnswer>, FleetError>;

/// Starts what its plan says in each phase and keeps what it got: each
/// start's answer, and each batch of results with the clock then.
struct Fleeter {
    plan: Plan,
    round: usize,
    started: Vec<(&'static str, Answer)>,
    got: Vec<(&'static str, Vec<CallResult>, Vec<FleetResult>)>,
}

impl Fleeter {
    fn step(&mut self, phase: &'static str, step: &Step) -> bool {
        for op in &step.ops {
            self.started.push((phase, op.start()));
        }
        for upstream in &step.calls {
            Call::get(upstream, "/").tag(upstream).start().unwrap();
        }
        step.wait
    }

    fn round(steps: &[Step], round: usize) -> Step {
        steps.get(round).cloned().unwrap_or_default()
    }
}

fn response_action(wait: bool) -> ResponseAction {
    if wait {
        ResponseAction::Wait
    } else {
        ResponseAction::Continue
    }
}

fn action(wait: bool) -> Action {
    if wait { Action::Wait } else { Action::Continue }
}

impl Plugin for Fleeter {
    type Config = Plan;

    fn new(plan: Plan) -> Result<Self, String> {
        let mut fleeter = Fleeter {
            plan,
            round: 0,
            started: Vec::new(),
            got: Vec::new(),
        };
        let step = fleeter.plan.init.clone();
        fleeter.step("init", &step);
        Ok(fleeter)
    }

    fn phases(&self) -> Phases {
        Phases::ALL
    }

    fn on_request(&mut self, _: &mut Request<'_>) -> Action {
        self.round = 0;
        let step = self.plan.request.clone();
        action(self.step("request", &step))
    }

    fn on_request_calls(
        &mut self,
        _: &mut Request<'_>,
        results: Vec<CallResult>,
        fleet: Vec<FleetResult>,
    ) -> Action {
        self.got.push(("request_calls", results, fleet));
        let step = Self::round(&self.plan.request_calls, self.round);
        self.round += 1;
        action(self.step("request_calls", &step))
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
        _: &mut Response<'_>,
        results: Vec<CallResult>,
        fleet: Vec<FleetResult>,
    ) -> ResponseAction {
        self.got.push(("response_calls", results, fleet));
        let step = Self::round(&self.plan.response_calls, self.round);
        self.round += 1;
        response_action(self.step("response_calls", &step))
    }

    fn on_background_calls(
        &mut self,
        _: &Request<'_>,
        results: Vec<CallResult>,
        fleet: Vec<FleetResult>,
    ) {
        self.got.push(("background", results, fleet));
        let step = self.plan.background.clone();
        self.step("background", &step);
    }

    fn on_log(&mut self, _: &Request<'_>, _: u16) {
        let step = self.plan.log.clone();
        self.step("log", &step);
    }
}

fn host(plan: serde_json::Value) -> TestHost<Fleeter> {
    TestHost::<Fleeter>::new(plan).unwrap()
}

fn strict(plan: serde_json::Value) -> TestHost<Fleeter> {
    let mut host = host(plan);
    host.fleet_mode(FleetMode::Strict);
    host
}

/// A take's outcome, as a bucket answers it.
fn bucket(allowed: bool, remaining: u64, retry_after_ms: u64) -> FleetAnswer {
    FleetAnswer::Bucket(BucketOutcome {
        allowed,
        remaining,
        retry_after: Duration::from_millis(retry_after_ms),
    })
}

/// What each start answered, without the phase.
fn answers(host: &TestHost<Fleeter>) -> Vec<Answer> {
    host.plugin()
        .started
        .iter()
        .map(|(_, a)| a.clone())
        .collect()
}

/// The fleet results each phase got, as (phase, tag, outcome).
fn fleet_got(
    host: &TestHost<Fleeter>,
) -> Vec<(&'static str, String, Result<FleetAnswer, FleetError>)> {
    host.plugin()
        .got
        .iter()
        .flat_map(|(phase, _, fleet)| {
            fleet
                .iter()
                .map(move |r| (*phase, r.tag.clone(), r.outcome.clone()))
        })
        .collect()
}

#[test]
fn local_mode_answers_at_once_with_the_state_arithmetic() {
    let mut host = host(serde_json::json!({
        "request": { "ops": [
            { "take": { "key": "b", "capacity": 2, "refill": 1, "tag": "t" } },
            { "increment": { "key": "c", "delta": 5 } },
        ]},
    }));
    let first = host.run(TestRequest::get("/"));
    host.run(TestRequest::get("/"));
    host.run(TestRequest::get("/"));
    assert_eq!(
        answers(&host),
        [
            Ok(Started::Done(bucket(true, 1, 0))),
            Ok(Started::Done(FleetAnswer::Counter(5))),
            Ok(Started::Done(bucket(true, 0, 0))),
            Ok(Started::Done(FleetAnswer::Counter(10))),
            Ok(Started::Done(bucket(false, 0, 1000))),
            Ok(Started::Done(FleetAnswer::Counter(15))),
        ]
    );
    // Nothing waited: no phase got results.
    assert!(host.plugin().got.is_empty());
    assert_eq!(
        first.phases(),
        [
            Phase::Request,
            Phase::RequestBody,
            Phase::Response,
            Phase::ResponseBody,
            Phase::Log
        ]
    );
    // The exchange lists what was made, and what it got.
    let ops = first.fleet();
    assert_eq!(ops.len(), 2);
    assert_eq!((ops[0].key(), ops[0].tag()), ("b", "t"));
    assert_eq!(
        ops[0].kind(),
        &FleetOpKind::Take {
            bucket: Bucket {
                capacity: 2,
                refill_per_second: 1
            },
            cost: 1
        }
    );
    assert_eq!(ops[0].outcome(), &Ok(bucket(true, 1, 0)));
    assert_eq!(ops[0].pending(), None);
    assert!(!ops[0].background());
    assert_eq!(
        ops[1].kind(),
        &FleetOpKind::Increment {
            delta: 5,
            ttl: None
        }
    );
    assert_eq!(host.fleet_counter("c"), Some(15));
    // A second later the bucket has a token again.
    host.advance(Duration::from_secs(1));
    host.run(TestRequest::get("/"));
    assert_eq!(
        host.plugin().started[6].1,
        Ok(Started::Done(bucket(true, 0, 0)))
    );
}

#[test]
fn fleet_keys_are_apart_from_shared_state() {
    let mut host = host(serde_json::json!({
        "request": { "ops": [
            { "take": { "key": "k", "capacity": 1 } },
            { "increment": { "key": "n", "delta": 3 } },
        ]},
    }));
    // The same names in shared state hold values that are neither a bucket
    // nor a counter: the fleet's keys are others.
    host.set_state("k", b"not a bucket");
    host.set_state("n", b"not a counter");
    host.run(TestRequest::get("/"));
    assert_eq!(
        answers(&host),
        [
            Ok(Started::Done(bucket(true, 0, 0))),
            Ok(Started::Done(FleetAnswer::Counter(3)))
        ]
    );
    assert_eq!(host.state("k").as_deref(), Some(&b"not a bucket"[..]));
    assert_eq!(host.state("n").as_deref(), Some(&b"not a counter"[..]));
    assert_eq!(host.fleet_counter("n"), Some(3));
    assert_eq!(host.fleet_counter("k"), None, "a bucket is no counter");
    assert_eq!(host.fleet_counter("missing"), None);
}

#[test]
fn local_and_sync_modes_answer_anywhere_strict_waits_only_in_the_request_and_response() {
    let everywhere = serde_json::json!({
        "init": { "ops": [{ "increment": { "key": "c" } }] },
        "request_body": { "ops": [{ "increment": { "key": "c" } }] },
        "log": { "ops": [{ "increment": { "key": "c" } }] },
    });
    for mode in [FleetMode::Local, FleetMode::Sync] {
        let mut host = host(everywhere.clone());
        host.fleet_mode(mode);
        host.run(TestRequest::get("/"));
        let values: Vec<Answer> = (1..=3)
            .map(|n| Ok(Started::Done(FleetAnswer::Counter(n))))
            .collect();
        assert_eq!(answers(&host), values, "{mode:?}");
    }
    let mut host = host(serde_json::json!({
        "request_body": { "ops": [{ "increment": { "key": "c" } }] },
        "response": { "ops": [{ "increment": { "key": "c", "tag": "bg" } }] },
        "background": { "ops": [{ "increment": { "key": "c" } }] },
        "log": { "ops": [{ "increment": { "key": "c" } }] },
    }));
    host.fleet_mode(FleetMode::Strict);
    let exchange = host.run(TestRequest::get("/"));
    let invalid = Err(FleetError::Invalid(
        "a strict fleet operation waits, so it starts only in the request and response phases \
         (and their -calls exports)"
            .into(),
    ));
    let started = &host.plugin().started;
    let phases: Vec<&str> = started.iter().map(|(p, _)| *p).collect();
    assert_eq!(phases, ["request_body", "response", "background", "log"]);
    assert_eq!(started[0].1, invalid);
    assert!(matches!(started[1].1, Ok(Started::Pending(_))));
    assert_eq!(started[2].1, invalid);
    assert_eq!(started[3].1, invalid);
    // Only the one that waited was made, and counted.
    assert_eq!(exchange.fleet().len(), 1);
    assert_eq!(host.fleet_counter("c"), Some(1));
}

#[test]
fn strict_mode_waits_and_the_calls_phase_gets_every_answer_in_start_order() {
    let mut host = strict(serde_json::json!({
        "request": { "wait": true, "ops": [
            { "take": { "key": "b", "capacity": 3, "cost": 2, "tag": "take" } },
            { "increment": { "key": "c", "delta": 4, "tag": "count" } },
        ], "calls": ["auth"] },
    }));
    host.allow_calls(["auth"])
        .answer_calls("auth", TestCallResponse::new(204));
    let exchange = host.run(TestRequest::get("/"));
    let (phase, calls, fleet) = &host.plugin().got[0];
    assert_eq!(*phase, "request_calls");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].tag, "auth");
    assert_eq!(
        fleet_got(&host),
        [
            ("request_calls", "take".into(), Ok(bucket(true, 1, 0))),
            ("request_calls", "count".into(), Ok(FleetAnswer::Counter(4))),
        ]
    );
    // The ids are those the starts gave, and the calls' ids are apart.
    let pending: Vec<_> = answers(&host)
        .into_iter()
        .map(|a| match a {
            Ok(Started::Pending(id)) => id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(fleet.iter().map(|r| r.id).collect::<Vec<_>>(), pending);
    assert_eq!(
        pending.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["0", "1"]
    );
    assert_eq!(calls[0].id.to_string(), "2");
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
    let ops = exchange.fleet();
    assert_eq!(ops.len(), 2);
    assert_eq!(ops[0].pending(), Some(pending[0]));
    assert!(!ops[0].background());
    assert_eq!(ops[1].outcome(), &Ok(FleetAnswer::Counter(4)));
    // The answers were decided against the same values local mode uses.
    host.fleet_mode(FleetMode::Local);
    host.run(TestRequest::get("/"));
    assert_eq!(
        host.plugin().started[2..],
        [
            ("request", Ok(Started::Done(bucket(false, 1, 1000)))),
            ("request", Ok(Started::Done(FleetAnswer::Counter(8)))),
        ]
    );
}

#[test]
fn a_wait_for_fleet_operations_alone_is_a_wait_in_both_phases() {
    let mut host = strict(serde_json::json!({
        "request": { "wait": true, "ops": [{ "increment": { "key": "c", "tag": "r1" } }] },
        "request_calls": [
            { "wait": true, "ops": [{ "increment": { "key": "c", "tag": "r2" } }] },
        ],
        "response": { "wait": true, "ops": [{ "increment": { "key": "c", "tag": "s1" } }] },
        "response_calls": [
            { "wait": true, "ops": [{ "increment": { "key": "c", "tag": "s2" } }] },
        ],
    }));
    let before = host.now_ms();
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
    let counter = |n| Ok(FleetAnswer::Counter(n));
    assert_eq!(
        fleet_got(&host),
        [
            ("request_calls", "r1".into(), counter(1)),
            ("request_calls", "r2".into(), counter(2)),
            ("response_calls", "s1".into(), counter(3)),
            ("response_calls", "s2".into(), counter(4)),
        ]
    );
    assert!(
        host.plugin()
            .got
            .iter()
            .all(|(_, calls, _)| calls.is_empty())
    );
    assert_eq!(
        host.now_ms(),
        before,
        "the store answers on the host's clock at once"
    );
}

#[test]
fn operations_that_wait_started_by_a_phase_that_does_not_wait_go_to_the_background_phase() {
    let mut host = strict(serde_json::json!({
        "request": { "ops": [{ "increment": { "key": "c", "tag": "req" } }], "calls": ["audit"] },
        "response": { "ops": [{ "take": { "key": "b", "tag": "resp" } }] },
    }));
    host.allow_calls(["audit"])
        .answer_calls("audit", TestCallResponse::new(202));
    let exchange = host.run(TestRequest::get("/"));
    assert_eq!(
        exchange.phases(),
        [
            Phase::Request,
            Phase::RequestBody,
            Phase::Response,
            Phase::ResponseBody,
            Phase::BackgroundCalls,
            Phase::Log
        ]
    );
    let (phase, calls, _) = &host.plugin().got[0];
    assert_eq!((*phase, calls.len()), ("background", 1));
    assert_eq!(
        fleet_got(&host),
        [
            ("background", "req".into(), Ok(FleetAnswer::Counter(1))),
            ("background", "resp".into(), Ok(bucket(true, 0, 0))),
        ]
    );
    assert!(exchange.fleet().iter().all(|op| op.background()));
}

#[test]
fn at_most_so_many_operations_wait_per_phase_call() {
    let ops: Vec<serde_json::Value> = (0..=MAX_FLEET_PENDING_PER_CALL)
        .map(|i| serde_json::json!({ "increment": { "key": format!("k{i}") } }))
        .collect();
    let mut host = strict(serde_json::json!({
        "request": { "wait": true, "ops": ops },
        "request_calls": [{ "wait": true, "ops": ops }],
    }));
    let exchange = host.run(TestRequest::get("/"));
    let limit = Err(FleetError::Limit(
        "at most 16 fleet operations that wait per phase call".into(),
    ));
    let started = &host.plugin().started;
    assert_eq!(started.len(), 2 * (MAX_FLEET_PENDING_PER_CALL + 1));
    // Each phase call has its own budget.
    for call in started.chunks(MAX_FLEET_PENDING_PER_CALL + 1) {
        let (last, waited) = call.split_last().unwrap();
        assert!(
            waited
                .iter()
                .all(|(_, a)| matches!(a, Ok(Started::Pending(_))))
        );
        assert_eq!(last.1, limit);
    }
    assert_eq!(exchange.fleet().len(), 2 * MAX_FLEET_PENDING_PER_CALL);
    let got: Vec<usize> = (host.plugin().got.iter())
        .map(|(_, _, fleet)| fleet.len())
        .collect();
    assert_eq!(got, [MAX_FLEET_PENDING_PER_CALL; 2]);
}

#[test]
fn redis_out_of_reach_refuses_at_once_in_sync_and_strict_modes() {
    let plan = serde_json::json!({
        "request": { "wait": true, "ops": [{ "take": { "key": "b", "tag": "limit" } }],
                     "calls": ["auth"] },
        "log": { "ops": [{ "increment": { "key": "c" } }] },
    });
    let unavailable = FleetError::Unavailable(
        "the fleet's Redis cannot be reached and this plugin's fleet_fallback is `closed`".into(),
    );
    assert_eq!(
        unavailable.to_string(),
        "fleet store unavailable: the fleet's Redis cannot be reached and this plugin's \
         fleet_fallback is `closed`"
    );

    // Local: Redis is never asked.
    let mut local = host(plan.clone());
    local.allow_calls(["auth"]).fleet_unavailable(true);
    local.run(TestRequest::get("/"));
    assert_eq!(
        answers(&local),
        [
            Ok(Started::Done(bucket(true, 0, 0))),
            Ok(Started::Done(FleetAnswer::Counter(1)))
        ]
    );

    // Sync and strict: refused at start, wherever (before strict's check
    // of the phase, as in the gateway); not an operation the exchange
    // lists, and nothing was taken.
    for mode in [FleetMode::Sync, FleetMode::Strict] {
        let mut host = host(plan.clone());
        host.allow_calls(["auth"])
            .fleet_mode(mode)
            .fleet_unavailable(true);
        let exchange = host.run(TestRequest::get("/"));
        assert_eq!(
            answers(&host),
            [Err(unavailable.clone()), Err(unavailable.clone())],
            "{mode:?}"
        );
        assert!(exchange.fleet().is_empty());
        assert_eq!(fleet_got(&host), []);
        host.fleet_unavailable(false);
        host.run(TestRequest::get("/"));
        assert!(matches!(
            answers(&host)[2],
            Ok(Started::Done(_) | Started::Pending(_))
        ));
        // Reachable, a strict operation in the log phase is refused again.
        let logged = (mode == FleetMode::Sync).then_some(1);
        assert_eq!(host.fleet_counter("c"), logged, "{mode:?}");
    }
}

#[test]
fn redis_not_answering_in_time_gives_strict_operations_an_unavailable_result() {
    let plan = serde_json::json!({
        "request": { "wait": true, "ops": [{ "take": { "key": "b", "tag": "limit" } }],
                     "calls": ["auth"] },
    });
    let unavailable = FleetError::Unavailable(
        "the fleet's Redis cannot be reached and this plugin's fleet_fallback is `closed`".into(),
    );
    let mut strict = strict(plan.clone());
    strict.allow_calls(["auth"]).fleet_times_out(true);
    let exchange = strict.run(TestRequest::get("/"));
    assert!(matches!(answers(&strict)[0], Ok(Started::Pending(_))));
    assert_eq!(
        fleet_got(&strict),
        [("request_calls", "limit".into(), Err(unavailable.clone()))]
    );
    assert_eq!(exchange.fleet()[0].outcome(), &Err(unavailable));
    // The bucket was not touched; answering again, Redis takes from it.
    strict.fleet_times_out(false);
    strict.run(TestRequest::get("/"));
    assert_eq!(
        fleet_got(&strict)[1],
        ("request_calls", "limit".into(), Ok(bucket(true, 0, 0)))
    );
    // The modes that do not wait are not affected.
    let mut sync = host(plan);
    sync.allow_calls(["auth"])
        .fleet_mode(FleetMode::Sync)
        .fleet_times_out(true);
    sync.run(TestRequest::get("/"));
    assert_eq!(answers(&sync), [Ok(Started::Done(bucket(true, 0, 0)))]);
}

#[test]
fn a_counter_with_a_ttl_is_a_fixed_window_in_every_mode() {
    for mode in [FleetMode::Local, FleetMode::Strict] {
        let mut host = host(serde_json::json!({
            "request": { "wait": mode == FleetMode::Strict, "ops": [
                { "increment": { "key": "w", "ttl_ms": 1000 } },
            ]},
        }));
        host.fleet_mode(mode);
        host.run(TestRequest::get("/"));
        host.advance(Duration::from_millis(999));
        host.run(TestRequest::get("/"));
        assert_eq!(host.fleet_counter("w"), Some(2), "{mode:?}");
        host.advance(Duration::from_millis(1));
        assert_eq!(host.fleet_counter("w"), None, "{mode:?}");
        let exchange = host.run(TestRequest::get("/"));
        assert_eq!(host.fleet_counter("w"), Some(1), "{mode:?}");
        assert_eq!(
            exchange.fleet()[0].kind(),
            &FleetOpKind::Increment {
                delta: 1,
                ttl: Some(Duration::from_secs(1))
            }
        );
    }
}

#[test]
fn a_full_plugin_is_refused_with_a_limit() {
    // On this thread's environment outside a test host, where code runs
    // as in a request phase.
    super::super::with_request(TestRequest::get("/"), |_| {
        for i in 0..crate::state::MAX_KEYS {
            fleet::increment(&format!("k{i}"), 1, None).unwrap();
        }
        assert_eq!(
            fleet::increment("one-more", 1, None),
            Err(FleetError::Limit(
                "this plugin already holds 10000 keys, the most allowed".into()
            ))
        );
        // A key it holds still counts.
        assert_eq!(fleet::increment("k0", 1, None), Ok(Started::Done(2)));
    });
}

#[test]
fn malformed_operations_are_refused_before_the_host_is_asked() {
    let mut host = strict(serde_json::json!({
        "request": { "wait": true, "ops": [
            { "take": { "key": "", "tag": "a" } },
            { "take": { "key": "b", "capacity": 0 } },
            { "increment": { "key": "c", "tag": "t".repeat(257) } },
            { "increment": { "key": "c", "tag": "ok" } },
        ]},
    }));
    let exchange = host.run(TestRequest::get("/"));
    let started = answers(&host);
    assert_eq!(
        started[..3],
        [
            Err(FleetError::Invalid("fleet keys are 1 to 256 bytes".into())),
            Err(FleetError::Invalid(
                "bucket capacity must be 1 to 1000000000 and refill at most 1000000000 per \
                 second"
                    .into()
            )),
            Err(FleetError::Invalid(
                "a fleet operation's tag is at most 256 bytes".into()
            )),
        ]
    );
    assert!(matches!(started[3], Ok(Started::Pending(_))));
    assert_eq!(exchange.fleet().len(), 1);
}

#[test]
#[should_panic(expected = "the plugin answered Wait without starting a call or a fleet operation")]
fn waiting_on_operations_answered_at_once_fails_the_test() {
    let mut host = host(serde_json::json!({
        "request": { "wait": true, "ops": [{ "increment": { "key": "c" } }] },
    }));
    host.run(TestRequest::get("/"));
}
