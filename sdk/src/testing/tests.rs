//! Tests of the test host itself: it must model the gateway faithfully, or
//! plugin tests built on it prove nothing.

use std::time::Duration;

use super::{Phase, TestHost, TestRequest, TestResponse};
use crate::state::{Bucket, take_tokens};
use crate::{Action, BodyAction, Phases, Plugin, Request, Response, ResponseAction};

/// Exercises every phase: uppercases the request body, tags the response,
/// replaces the response body, records the logged status.
struct AllPhases;

impl Plugin for AllPhases {
    type Config = serde::de::IgnoredAny;

    fn new(_: Self::Config) -> Result<Self, String> {
        Ok(AllPhases)
    }

    fn phases(&self) -> Phases {
        Phases::ALL
    }

    fn on_request(&mut self, req: &mut Request<'_>) -> Action {
        crate::context::set("seen", &req.path());
        if req.header("x-deny").is_some() {
            return Action::respond(401)
                .header("www-authenticate", "Test")
                .into();
        }
        Action::Continue
    }

    fn on_request_body(&mut self, req: &mut Request<'_>, body: Vec<u8>) -> BodyAction {
        if body == b"refuse" {
            return Action::respond(400).body("refused").into();
        }
        req.set_header("x-body-seen", "1").unwrap();
        BodyAction::Replace(body.to_ascii_uppercase())
    }

    fn on_response(&mut self, _: &Request<'_>, resp: &mut Response<'_>) -> ResponseAction {
        let seen = crate::context::get("seen").unwrap_or_default();
        resp.set_header("x-seen", &seen).unwrap();
        ResponseAction::Continue
    }

    fn on_response_body(
        &mut self,
        _: &Request<'_>,
        _: &mut Response<'_>,
        body: Vec<u8>,
    ) -> Option<Vec<u8>> {
        Some([b"wrapped:".as_slice(), &body].concat())
    }

    fn on_log(&mut self, _: &Request<'_>, status: u16) {
        crate::log::info(&format!("status {status}"));
    }
}

#[test]
fn full_lifecycle_runs_every_phase_in_order_and_applies_replacements() {
    let mut host = TestHost::<AllPhases>::new(serde_json::json!({})).unwrap();
    let exchange = host.run(
        TestRequest::post("/a")
            .body("hello")
            .upstream(TestResponse::new(201).body("up")),
    );
    assert_eq!(
        exchange.phases(),
        [
            Phase::Request,
            Phase::RequestBody,
            Phase::Response,
            Phase::ResponseBody,
            Phase::Log
        ]
    );
    let upstream = exchange.upstream_request().unwrap();
    assert_eq!(upstream.body(), b"HELLO");
    assert_eq!(upstream.header("content-length"), Some("5"));
    assert_eq!(upstream.header("x-body-seen"), Some("1"));
    assert_eq!(exchange.status(), 201);
    assert_eq!(exchange.header("x-seen"), Some("/a"));
    assert_eq!(exchange.body(), b"wrapped:up");
    assert_eq!(exchange.header("content-length"), Some("10"));
    assert_eq!(host.logs().last().unwrap().message, "status 201");
}

#[test]
fn short_circuit_skips_upstream_and_response_phases_but_logs() {
    let mut host = TestHost::<AllPhases>::new(serde_json::json!({})).unwrap();
    let exchange = host.run(TestRequest::get("/").header("x-deny", "1"));
    assert!(exchange.responded_by_plugin());
    assert_eq!(exchange.status(), 401);
    assert_eq!(exchange.header("www-authenticate"), Some("Test"));
    assert_eq!(exchange.phases(), [Phase::Request, Phase::Log]);
    assert_eq!(host.logs().last().unwrap().message, "status 401");

    let refused = host.run(TestRequest::post("/").body("refuse"));
    assert_eq!(refused.status(), 400);
    assert_eq!(refused.body_text(), "refused");
    assert!(refused.upstream_request().is_none());
}

#[test]
fn context_is_reset_between_requests() {
    let mut host = TestHost::<AllPhases>::new(serde_json::json!({})).unwrap();
    assert_eq!(
        host.run(TestRequest::get("/one")).context("seen"),
        Some("/one")
    );
    let second = host.run(TestRequest::get("/two").header("x-deny", "1"));
    assert_eq!(second.context("seen"), Some("/two"));
}

/// Sets access-log fields in every phase, as steered by the request:
/// `x-fields: N` sets N distinct ones in the request phase. What each
/// call answered goes into the context (`init` and `log`: a field of the
/// plugin itself, read back after the run).
struct Fields {
    init: Result<(), String>,
    log: Option<Result<(), String>>,
}

impl Plugin for Fields {
    type Config = serde::de::IgnoredAny;

    fn new(_: Self::Config) -> Result<Self, String> {
        Ok(Fields {
            init: crate::log::set_field("init", "x"),
            log: None,
        })
    }

    fn phases(&self) -> Phases {
        Phases::ALL
    }

    fn on_request(&mut self, req: &mut Request<'_>) -> Action {
        crate::log::set_field("consumer", "ada").unwrap();
        let n: usize = req.header("x-fields").map_or(0, |n| n.parse().unwrap());
        for i in 0..n {
            if let Err(e) = crate::log::set_field(&format!("f{i}"), "v") {
                crate::context::set("refused", &e);
                break;
            }
        }
        Action::Continue
    }

    fn on_request_body(&mut self, _: &mut Request<'_>, _: Vec<u8>) -> BodyAction {
        if let Err(e) = crate::log::set_field("body", "a\tb") {
            crate::context::set("body", &e);
        }
        BodyAction::Continue
    }

    fn on_response(&mut self, _: &Request<'_>, resp: &mut Response<'_>) -> ResponseAction {
        let _ = crate::log::set_field("status", &resp.status().to_string());
        // Replaces the request phase's value: one field, the last value.
        let _ = crate::log::set_field("consumer", "grace");
        ResponseAction::Continue
    }

    fn on_log(&mut self, _: &Request<'_>, _: u16) {
        self.log = Some(crate::log::set_field("late", "x"));
    }
}

#[test]
fn log_fields_are_per_request_bounded_and_refused_in_init_and_the_log_phase() {
    let mut host = TestHost::<Fields>::new(serde_json::json!({})).unwrap();
    assert_eq!(
        host.plugin().init.as_ref().unwrap_err(),
        "log fields belong to a request, and init runs outside one"
    );
    let exchange = host.run(TestRequest::post("/").body("b"));
    assert_eq!(
        exchange.log_fields(),
        [
            ("consumer".to_owned(), "grace".to_owned()),
            ("status".to_owned(), "200".to_owned())
        ]
    );
    assert_eq!(
        exchange.context("body"),
        Some("a log field value cannot hold control characters")
    );
    assert_eq!(
        host.plugin().log.as_ref().unwrap().as_ref().unwrap_err(),
        "the access-log line is already written: the log phase cannot set log fields"
    );

    // Sixteen fields in all: `consumer` and 15 more, then refusals, also
    // for the response phase's new name; its replacement still goes.
    let full = host.run(TestRequest::get("/").header("x-fields", "20"));
    assert_eq!(full.log_fields().len(), crate::log::MAX_FIELDS);
    assert_eq!(
        full.context("refused"),
        Some("at most 16 log fields per request (all plugins of the chain together)")
    );
    assert_eq!(full.log_field("status"), None);
    assert_eq!(full.log_field("consumer"), Some("grace"));

    // The next request starts with none.
    let next = host.run(TestRequest::get("/"));
    assert_eq!(next.log_fields().len(), 2);
}

#[test]
#[should_panic(expected = "invalid status 42")]
fn a_reply_the_gateway_would_refuse_fails_the_test() {
    struct Bad;
    impl Plugin for Bad {
        type Config = serde::de::IgnoredAny;
        fn new(_: Self::Config) -> Result<Self, String> {
            Ok(Bad)
        }
        fn on_request(&mut self, _: &mut Request<'_>) -> Action {
            Action::respond(42).into()
        }
    }
    TestHost::<Bad>::new(serde_json::json!({}))
        .unwrap()
        .run(TestRequest::get("/"));
}

#[test]
fn configuration_errors_name_the_problem() {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Config {
        #[allow(dead_code)]
        limit: u32,
    }
    struct Strict;
    impl Plugin for Strict {
        type Config = Config;
        fn new(_: Config) -> Result<Self, String> {
            Ok(Strict)
        }
    }
    let err = TestHost::<Strict>::new(serde_json::json!({ "limt": 1 }))
        .err()
        .unwrap();
    assert!(err.contains("unknown field `limt`"), "{err}");
    let err = TestHost::<Strict>::from_json("").err().unwrap();
    assert!(err.contains("missing field `limit`"), "{err}");
}

#[test]
fn token_bucket_refills_with_the_clock_and_reports_retry_after() {
    let host = TestHost::<AllPhases>::new(serde_json::json!({})).unwrap();
    let _current = crate::backend::install(&host.env);
    let bucket = Bucket {
        capacity: 2,
        refill_per_second: 4,
    };
    assert_eq!(take_tokens("k", bucket, 1).unwrap().remaining, 1);
    assert_eq!(take_tokens("k", bucket, 1).unwrap().remaining, 0);
    let refused = take_tokens("k", bucket, 1).unwrap();
    assert!(!refused.allowed);
    assert_eq!(refused.retry_after, Duration::from_millis(250));
    host.advance(Duration::from_millis(249));
    assert!(!take_tokens("k", bucket, 1).unwrap().allowed);
    host.advance(Duration::from_millis(1));
    assert!(take_tokens("k", bucket, 1).unwrap().allowed);
    // Refill never exceeds capacity.
    host.advance(Duration::from_secs(3600));
    assert_eq!(take_tokens("k", bucket, 1).unwrap().remaining, 1);
    // Keys are independent; a cost above the capacity never passes.
    assert_eq!(take_tokens("other", bucket, 2).unwrap().remaining, 0);
    let impossible = take_tokens("k", bucket, 3).unwrap();
    assert!(!impossible.allowed);
    assert_eq!(impossible.retry_after, Duration::from_millis(u64::MAX));
    let zero = Bucket {
        capacity: 0,
        refill_per_second: 1,
    };
    assert!(take_tokens("k", zero, 1).is_err());
    assert!(take_tokens(&"k".repeat(257), bucket, 1).is_err());
}

#[test]
fn state_values_expire_with_the_clock() {
    let host = TestHost::<AllPhases>::new(serde_json::json!({})).unwrap();
    let _current = crate::backend::install(&host.env);
    crate::state::set("k", b"v", Some(Duration::from_secs(10))).unwrap();
    host.advance(Duration::from_millis(9_999));
    assert_eq!(crate::state::get("k").as_deref(), Some(&b"v"[..]));
    host.advance(Duration::from_millis(1));
    assert_eq!(crate::state::get("k"), None);
    assert_eq!(host.state("k"), None);
}

/// Counters behave as the gateway's: they read as decimal text, live in
/// the same keys as values, and a TTL given when one is made is a fixed
/// window.
#[test]
fn counters_share_keys_with_values_and_expire_as_windows() {
    use crate::state::{delete, get, increment, increment_with_ttl, set};
    let host = TestHost::<AllPhases>::new(serde_json::json!({})).unwrap();
    let _current = crate::backend::install(&host.env);
    assert_eq!(increment("hits", 2), Ok(2));
    assert_eq!(get("hits").as_deref(), Some(&b"2"[..]));
    assert!(delete("hits"));
    assert_eq!(get("hits"), None);
    set("bytes", b"x", None).unwrap();
    assert!(increment("bytes", 1).is_err());

    let minute = Duration::from_secs(60);
    assert_eq!(increment_with_ttl("w", 1, minute), Ok(1));
    host.advance(Duration::from_secs(59));
    assert_eq!(increment_with_ttl("w", 1, minute), Ok(2));
    host.advance(Duration::from_secs(1));
    assert_eq!(increment_with_ttl("w", 1, minute), Ok(1), "a new window");
}

#[test]
fn random_bytes_are_chunked_to_the_host_limit_and_deterministic_per_seed() {
    let host = TestHost::<AllPhases>::new(serde_json::json!({})).unwrap();
    let _current = crate::backend::install(&host.env);
    host.seed_random(1);
    let first = crate::random::bytes(3000);
    host.seed_random(1);
    assert_eq!(crate::random::bytes(3000), first);
    assert_eq!(first.len(), 3000);
}

#[test]
fn gateway_managed_headers_cannot_be_written_by_plugins() {
    super::with_request(TestRequest::get("/").header("content-length", "3"), |req| {
        assert!(req.set_header("content-length", "9").is_err());
        assert!(req.add_header("Transfer-Encoding", "chunked").is_err());
        req.remove_header("content-length");
        assert_eq!(req.header("content-length").as_deref(), Some("3"));
    });
}

#[test]
fn context_and_state_bounds_match_the_gateway() {
    let host = TestHost::<AllPhases>::new(serde_json::json!({})).unwrap();
    let _current = crate::backend::install(&host.env);
    for i in 0..40 {
        crate::context::set(&format!("k{i}"), "v");
    }
    assert_eq!(crate::context::get("k31").as_deref(), Some("v"));
    assert_eq!(crate::context::get("k32"), None);
    assert!(
        host.logs()
            .iter()
            .any(|l| l.message.contains("at most 32 context entries"))
    );
    assert!(crate::state::set("k", &vec![0; 64 * 1024 + 1], None).is_err());
    assert!(crate::state::set("k", &vec![0; 64 * 1024], None).is_ok());
}

/// Sets `x-big-N` headers of 16 KiB on the request until one is refused,
/// keeping the refusals in the context; replies with a header one byte
/// over what is left of the budget when the request asks for it.
struct BigHeaders;

impl Plugin for BigHeaders {
    type Config = serde::de::IgnoredAny;

    fn new(_: Self::Config) -> Result<Self, String> {
        Ok(BigHeaders)
    }

    fn on_request(&mut self, req: &mut Request<'_>) -> Action {
        let value = "v".repeat(crate::validate::MAX_HEADER_VALUE_BYTES);
        let mut set = 0;
        while let Ok(()) = req.set_header(&format!("x-big-{set}"), &value) {
            set += 1;
        }
        let refused = req.set_header("x-one-more", &value).unwrap_err();
        crate::context::set("set", &set.to_string());
        crate::context::set("refused", &refused);
        if req.header("x-reply").is_some() {
            // Less than what was refused above, but more than is left.
            let left = crate::validate::MAX_HEADER_BYTES_PER_CALL - set * (value.len() + 7);
            return Action::respond(403)
                .header("x-reply", "r".repeat(left + 1 - "x-reply".len()))
                .into();
        }
        Action::Continue
    }

    fn on_response(&mut self, _: &Request<'_>, resp: &mut Response<'_>) -> ResponseAction {
        // A new call: the budget is full again.
        let value = "v".repeat(crate::validate::MAX_HEADER_VALUE_BYTES);
        resp.set_header("x-big", &value).unwrap();
        ResponseAction::Continue
    }
}

/// The per-call header budget: what one call may write, request and reply
/// together, is bounded; the next call starts afresh.
#[test]
fn header_bytes_are_bounded_per_call_as_in_the_gateway() {
    let mut host = TestHost::<BigHeaders>::new(serde_json::json!({})).unwrap();
    let exchange = host.run(TestRequest::get("/"));
    // 16 KiB values plus their names: three fit in 64 KiB, the fourth not.
    assert_eq!(exchange.context("set"), Some("3"));
    let refused = exchange.context("refused").unwrap();
    assert_eq!(
        refused,
        "a plugin may set at most 65536 header bytes per call"
    );
    assert_eq!(exchange.header("x-big").map(str::len), Some(16 * 1024));
    assert_eq!(
        exchange
            .upstream_request()
            .unwrap()
            .header("x-big-2")
            .map(str::len),
        Some(16 * 1024)
    );
}

#[test]
#[should_panic(
    expected = "the plugin's reply: a plugin may set at most 65536 header bytes per call"
)]
fn a_reply_past_the_calls_header_budget_fails_the_test() {
    // The reply's header no longer fits: the gateway would refuse the whole
    // answer (500).
    let mut host = TestHost::<BigHeaders>::new(serde_json::json!({})).unwrap();
    host.run(TestRequest::get("/").header("x-reply", "1"));
}

#[test]
fn a_head_holds_a_bounded_number_of_fields() {
    use crate::validate::MAX_HEAD_FIELDS;
    super::with_request(TestRequest::get("/").header("x-a", "0"), |req| {
        for _ in 1..MAX_HEAD_FIELDS {
            req.add_header("x-a", "1").unwrap();
        }
        let refused = req.add_header("x-a", "1").unwrap_err();
        assert_eq!(refused, "a head holds at most 2000 header fields");
        assert!(req.set_header("x-b", "1").is_err(), "a new name");
        // Replacing every `x-a` makes room again.
        req.set_header("x-a", "2").unwrap();
        req.add_header("x-b", "1").unwrap();
    });
}

/// Logs `n` lines per request phase (from the `x-lines` header) and one in
/// the log phase.
struct Chatty;

impl Plugin for Chatty {
    type Config = serde::de::IgnoredAny;

    fn new(_: Self::Config) -> Result<Self, String> {
        Ok(Chatty)
    }

    fn on_request(&mut self, req: &mut Request<'_>) -> Action {
        let n: usize = req.header("x-lines").unwrap().parse().unwrap();
        for i in 0..n {
            crate::log::info(&format!("line {i}"));
        }
        Action::Continue
    }

    fn on_log(&mut self, _: &Request<'_>, status: u16) {
        crate::log::info(&format!("done\r\n{status}"));
    }
}

#[test]
fn log_lines_are_bounded_per_call_and_kept_to_one_line() {
    use crate::log::{Level, MAX_LINES_PER_CALL, MAX_MESSAGE_BYTES};
    let mut host = TestHost::<Chatty>::new(serde_json::json!({})).unwrap();
    host.run(TestRequest::get("/").header("x-lines", "40"));
    let logs = host.logs();
    let messages: Vec<&str> = logs.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(logs.len(), MAX_LINES_PER_CALL + 1, "{messages:?}");
    assert_eq!(messages[MAX_LINES_PER_CALL - 2], "line 30");
    assert_eq!(logs[MAX_LINES_PER_CALL - 1].level, Level::Warn);
    assert_eq!(
        messages[MAX_LINES_PER_CALL - 1],
        "further log lines of this plugin call are dropped (at most 32 per call)"
    );
    // The log phase is a new call, and a message is one line.
    assert_eq!(messages[MAX_LINES_PER_CALL], "done\\r\\n200");

    // A long message is cut on a character boundary, and says so.
    let _current = crate::backend::install(&host.env);
    host.env.begin_call();
    crate::log::info(&format!("a{}", "é".repeat(MAX_MESSAGE_BYTES)));
    let cut = host.logs().pop().unwrap().message;
    assert!(cut.ends_with(" [cut]"), "{cut}");
    assert_eq!(cut.len(), MAX_MESSAGE_BYTES - 1 + " [cut]".len());
}

#[test]
fn a_plugin_holds_a_bounded_number_of_keys_and_bytes() {
    use crate::state::{MAX_BYTES, MAX_KEYS, MAX_VALUE_BYTES, delete, get, increment, set};
    let host = TestHost::<AllPhases>::new(serde_json::json!({})).unwrap();
    let _current = crate::backend::install(&host.env);
    set("short-lived", b"v", Some(Duration::from_secs(1))).unwrap();
    for i in 1..MAX_KEYS {
        set(&format!("k{i}"), b"v", None).unwrap();
    }
    assert_eq!(
        set("one-more", b"v", None).unwrap_err(),
        "this plugin already holds 10000 keys, the most allowed"
    );
    assert!(increment("one-more", 1).is_err());
    set("k1", b"replaced", None).unwrap();
    // An expired key is swept to make room, at most once per 100 ms.
    host.advance(Duration::from_secs(1));
    set("one-more", b"v", None).unwrap();
    assert_eq!(get("short-lived"), None);
    assert!(delete("one-more"));
    set("short-lived", b"v", Some(Duration::from_millis(10))).unwrap();
    host.advance(Duration::from_millis(50));
    assert!(set("one-more", b"v", None).is_err(), "50 ms after a sweep");
    host.advance(Duration::from_millis(50));
    set("one-more", b"v", None).unwrap();

    for i in 1..MAX_KEYS {
        assert!(delete(&format!("k{i}")));
    }
    let big = vec![0; MAX_VALUE_BYTES];
    let mut stored = 0;
    let refused = loop {
        match set(&format!("big{stored}"), &big, None) {
            Ok(()) => stored += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(stored, MAX_BYTES / (MAX_VALUE_BYTES + 5));
    assert_eq!(refused, "this plugin's state would exceed 16777216 bytes");
    set("big0", &big, None).unwrap();
}

/// Values, counters and token buckets share one set of keys, and a bucket
/// that is full again holds none.
#[test]
fn token_buckets_share_keys_with_values_and_counters() {
    use crate::state::{delete, get, increment, set};
    let host = TestHost::<AllPhases>::new(serde_json::json!({})).unwrap();
    let _current = crate::backend::install(&host.env);
    let bucket = Bucket {
        capacity: 2,
        refill_per_second: 1,
    };
    set("v", b"x", None).unwrap();
    assert_eq!(
        take_tokens("v", bucket, 1).unwrap_err(),
        "key `v` does not hold a token bucket"
    );
    assert!(take_tokens("b", bucket, 1).unwrap().allowed);
    assert_eq!(get("b"), None);
    assert_eq!(
        increment("b", 1).unwrap_err(),
        "key `b` does not hold a counter"
    );
    // Full again after a second: the key is gone, as a missing bucket
    // answers the same.
    host.advance(Duration::from_secs(1));
    assert!(!delete("b"));
    assert_eq!(increment("b", 1), Ok(1));
    // Taking nothing leaves a bucket full: no key is made.
    assert_eq!(take_tokens("n", bucket, 0).unwrap().remaining, 2);
    assert!(!delete("n"));
    assert_eq!(
        set("", b"x", None).unwrap_err(),
        "state keys are 1 to 256 bytes"
    );
}

#[test]
fn metrics_counters_are_bounded_and_refusals_logged() {
    use crate::metrics::{MAX_COUNTERS, MAX_NAME_BYTES, counter_add};
    let host = TestHost::<AllPhases>::new(serde_json::json!({})).unwrap();
    let _current = crate::backend::install(&host.env);
    counter_add(&"n".repeat(MAX_NAME_BYTES + 1), 1);
    counter_add("", 1);
    for i in 0..MAX_COUNTERS {
        counter_add(&format!("c{i}"), 1);
    }
    counter_add("one-more", 1);
    counter_add("c0", 2);
    assert_eq!(host.counter("c0"), 3);
    assert_eq!(host.counter("one-more"), 0);
    let warnings: Vec<String> = host.logs().into_iter().map(|l| l.message).collect();
    assert_eq!(
        warnings,
        [
            "counter-add refused: counter names are 1 to 64 bytes",
            "counter-add refused: counter names are 1 to 64 bytes",
            "counter-add refused: at most 1000 counters per plugin",
        ]
    );
}

/// Panics in its request phase with a message long enough to be cut.
struct Panics;

impl Plugin for Panics {
    type Config = serde::de::IgnoredAny;

    fn new(_: Self::Config) -> Result<Self, String> {
        Ok(Panics)
    }

    fn on_request(&mut self, req: &mut Request<'_>) -> Action {
        if req.header("x-long").is_some() {
            panic!("{}", "é".repeat(2 * crate::log::MAX_PANIC_BYTES));
        }
        panic!("no token for {}", req.path());
    }
}

#[test]
fn a_panicking_plugin_reports_its_message_and_location_as_the_gateway_does() {
    let mut host = TestHost::<Panics>::new(serde_json::json!({})).unwrap();
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        host.run(TestRequest::get("/secret"))
    }));
    assert!(
        run.is_err(),
        "the panic still fails the run, as a trap does"
    );
    let logs = host.logs();
    let line = &logs.last().expect("the hook's line").message;
    let report = line
        .strip_prefix(crate::log::PANIC_PREFIX)
        .unwrap_or_else(|| panic!("{line:?}"));
    assert!(
        report.starts_with("panicked at sdk/src/testing/tests.rs:"),
        "{report}"
    );
    assert!(report.ends_with(": no token for /secret"), "{report}");
    assert_eq!(logs.last().unwrap().level, crate::log::Level::Error);

    let long = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        host.run(TestRequest::get("/").header("x-long", "1"))
    }));
    assert!(long.is_err());
    let line = host.logs().last().unwrap().message.clone();
    let report = line.strip_prefix(crate::log::PANIC_PREFIX).unwrap();
    assert!(
        report.len() <= crate::log::MAX_PANIC_BYTES,
        "{}",
        report.len()
    );
    assert!(report.len() > crate::log::MAX_PANIC_BYTES - 4);
}

mod calls;
mod fleet;
