use super::*;

/// The SDK states these bounds to plugin authors, and its native test
/// host enforces them: they must be the gateway's.
#[test]
fn the_sdk_states_the_gateways_bounds() {
    use super::super::state::limits as state;
    use weir_sdk::{context, log, metrics, random, validate};
    assert_eq!(
        validate::MAX_HEADER_VALUE_BYTES,
        limits::MAX_HEADER_VALUE_BYTES
    );
    assert_eq!(
        validate::MAX_HEADER_BYTES_PER_CALL,
        limits::MAX_HEADER_BYTES_PER_CALL
    );
    assert_eq!(validate::MAX_HEAD_FIELDS, limits::MAX_HEAD_FIELDS);
    assert_eq!(validate::MAX_REPLY_HEADERS, limits::MAX_RESPONSE_HEADERS);
    assert_eq!(validate::MAX_TARGET_BYTES, limits::MAX_TARGET_BYTES);
    assert_eq!(log::MAX_MESSAGE_BYTES, limits::MAX_LOG_BYTES);
    assert_eq!(log::PANIC_PREFIX, limits::PANIC_PREFIX);
    assert_eq!(log::MAX_PANIC_BYTES, limits::MAX_PANIC_BYTES);
    assert_eq!(
        log::MAX_LINES_PER_CALL,
        limits::MAX_LOG_LINES_PER_CALL as usize
    );
    assert_eq!(context::MAX_ENTRIES, limits::MAX_CONTEXT_ENTRIES);
    assert_eq!(context::MAX_KEY_BYTES, limits::MAX_CONTEXT_KEY_BYTES);
    assert_eq!(context::MAX_VALUE_BYTES, limits::MAX_CONTEXT_VALUE_BYTES);
    assert_eq!(random::MAX_BYTES, limits::MAX_RANDOM_BYTES as usize);
    assert_eq!(weir_sdk::state::MAX_KEY_BYTES, state::MAX_KEY_BYTES);
    assert_eq!(weir_sdk::state::MAX_VALUE_BYTES, state::MAX_VALUE_BYTES);
    assert_eq!(weir_sdk::state::MAX_KEYS, state::MAX_KEYS);
    assert_eq!(weir_sdk::state::MAX_BYTES, state::MAX_BYTES);
    assert_eq!(weir_sdk::state::MAX_BUCKET, state::MAX_BUCKET);
    assert_eq!(weir_sdk::state::SWEEP_INTERVAL, state::SWEEP_INTERVAL);
    {
        use super::super::fleet;
        assert_eq!(weir_sdk::fleet::MAX_FLEET_KEY_BYTES, fleet::MAX_KEY_BYTES);
        assert_eq!(weir_sdk::fleet::MAX_FLEET_BUCKET, fleet::MAX_BUCKET);
        assert_eq!(weir_sdk::fleet::MAX_FLEET_TAG_BYTES, fleet::MAX_TAG_BYTES);
        assert_eq!(
            weir_sdk::fleet::MAX_FLEET_PENDING_PER_CALL,
            fleet::MAX_PENDING_PER_CALL
        );
    }
    assert_eq!(metrics::MAX_NAME_BYTES, state::MAX_COUNTER_NAME_BYTES);
    assert_eq!(metrics::MAX_COUNTERS, state::MAX_COUNTERS);
    assert_eq!(log::MAX_FIELDS, limits::MAX_LOG_FIELDS);
    assert_eq!(log::MAX_FIELD_NAME_BYTES, limits::MAX_LOG_FIELD_NAME_BYTES);
    assert_eq!(
        log::MAX_FIELD_VALUE_BYTES,
        limits::MAX_LOG_FIELD_VALUE_BYTES
    );
    {
        use crate::config::plugin_limits as cfg;
        use crate::plugin::calls as gw;
        use weir_sdk::calls as sdk;
        assert_eq!(sdk::MAX_CALL_TAG_BYTES, gw::MAX_CALL_TAG_BYTES);
        assert_eq!(sdk::MAX_CALL_HEADER_FIELDS, gw::MAX_CALL_HEADER_FIELDS);
        assert_eq!(sdk::MAX_CALL_HEADER_BYTES, gw::MAX_CALL_HEADER_BYTES);
        assert_eq!(sdk::MAX_CALL_PATH_BYTES, gw::MAX_CALL_PATH_BYTES);
        assert_eq!(
            sdk::DEFAULT_MAX_CALLS_PER_REQUEST as u32,
            cfg::DEFAULT_MAX_CALLS_PER_REQUEST
        );
        assert_eq!(
            sdk::MAX_CALLS_PER_REQUEST as u32,
            cfg::MAX_CALLS_PER_REQUEST
        );
        assert_eq!(
            sdk::DEFAULT_MAX_CALLS_IN_FLIGHT,
            cfg::DEFAULT_MAX_CALLS_IN_FLIGHT
        );
        assert_eq!(sdk::MAX_CALLS_IN_FLIGHT, cfg::MAX_CALLS_IN_FLIGHT);
        assert_eq!(
            sdk::DEFAULT_MAX_CALL_BODY_BYTES as u64,
            cfg::DEFAULT_MAX_CALL_BODY_BYTES
        );
        assert_eq!(sdk::MAX_CALL_BODY_BYTES as u64, cfg::MAX_CALL_BODY_BYTES);
        assert_eq!(sdk::DEFAULT_CALL_TIMEOUT, cfg::DEFAULT_CALL_TIMEOUT);
        assert_eq!(sdk::MIN_CALL_TIMEOUT, cfg::MIN_CALL_TIMEOUT);
        assert_eq!(sdk::MAX_CALL_TIMEOUT, cfg::MAX_CALL_TIMEOUT);
    }
    let mut sdk = validate::RESERVED_HEADERS.to_vec();
    let mut gateway = super::super::reserved::RESERVED.to_vec();
    sdk.sort_unstable();
    gateway.sort_unstable();
    assert_eq!(sdk, gateway);
    // The look-alikes the SDK refuses are the gateway's.
    for name in [
        "transfer_encoding",
        "Content_Length",
        "transfer---encoding",
        "content-_-length",
        "x_transfer_encoding",
        "transfer-encodings",
        "x-fine",
        "x_fine",
        "Transfer-Encoding",
    ] {
        assert_eq!(
            validate::header_name(name).is_err(),
            reserved(name),
            "{name}"
        );
    }
}

#[test]
fn header_values_cannot_split_lines() {
    let mut budget = limits::MAX_HEADER_BYTES_PER_CALL;
    assert!(header_pair("x-a", "ok\r\ninjected: 1".into(), &mut budget).is_err());
    assert!(header_pair("x-a", "a\0b".into(), &mut budget).is_err());
    assert!(header_pair("x-a\r\nb", "1".into(), &mut budget).is_err());
    assert!(header_pair("content-length", "1".into(), &mut budget).is_err());
    assert!(header_pair("Transfer-Encoding", "chunked".into(), &mut budget).is_err());
    // What the listener screens out of a client's request, a plugin cannot
    // put back (RFC 9112 section 6.1).
    assert!(header_pair("Transfer_Encoding", "chunked".into(), &mut budget).is_err());
    assert!(header_pair("content__length", "5".into(), &mut budget).is_err());
    assert!(header_pair("http2-settings", "AAMAAABk".into(), &mut budget).is_err());
    assert!(header_pair("expect", "100-continue".into(), &mut budget).is_err());
    assert!(header_pair("x_custom", "1".into(), &mut budget).is_ok());
    let (n, v) = header_pair("X-Fine", "caf\u{e9}".into(), &mut budget).unwrap();
    assert_eq!(n, "x-fine");
    assert_eq!(v.as_bytes(), "caf\u{e9}".as_bytes());
}

#[test]
fn a_head_stops_growing_at_its_bound_and_never_panics() {
    let mut h = HeaderMap::new();
    let mut added = 0;
    // Far past `http`'s own limit (24,576 names), where an unchecked
    // insert panics; a fresh budget for each, as for separate calls.
    for i in 0..30_000 {
        let mut budget = limits::MAX_HEADER_BYTES_PER_CALL;
        if set(
            &mut h,
            &mut budget,
            &format!("x-{i}"),
            Bytes::new(),
            i % 2 == 0,
        )
        .is_ok()
        {
            added += 1;
        }
    }
    assert_eq!(added, limits::MAX_HEAD_FIELDS);
    assert_eq!(h.len(), limits::MAX_HEAD_FIELDS);
    // Replacing a field that is there still works at the bound.
    let mut budget = limits::MAX_HEADER_BYTES_PER_CALL;
    assert!(set(&mut h, &mut budget, "x-1", "v".into(), false).is_ok());
    assert!(set(&mut h, &mut budget, "x-1", "w".into(), true).is_err());
}

#[test]
fn a_refused_name_is_quoted_in_part_and_cuts_keep_characters_whole() {
    let mut budget = limits::MAX_HEADER_BYTES_PER_CALL;
    let long = "\u{7f}".repeat(1_000_000);
    let e = header_pair(&long, "1".into(), &mut budget).unwrap_err();
    assert!(e.len() < 1_000, "{} bytes of error", e.len());
    assert!(e.contains("(1000000 bytes)"), "{e}");

    let mut s = "\u{20ac}".repeat(400);
    assert!(cut(&mut s, 1024));
    assert_eq!(s.len(), 1023);
    assert!(!cut(&mut s, 1024));
}

#[test]
fn removal_spares_framing_headers() {
    let mut h = HeaderMap::new();
    h.insert("content-length", HeaderValue::from_static("1"));
    h.insert("x-a", HeaderValue::from_static("1"));
    remove(&mut h, "Content-Length");
    remove(&mut h, "X-A");
    remove(&mut h, "not a name\r\n");
    assert_eq!(h.len(), 1);
    assert!(h.contains_key("content-length"));
}

#[test]
fn header_budget_is_per_call() {
    let mut budget = limits::MAX_HEADER_BYTES_PER_CALL;
    let chunk = "v".repeat(limits::MAX_HEADER_VALUE_BYTES);
    let mut ok = 0;
    while header_pair("x-h", chunk.clone().into(), &mut budget).is_ok() {
        ok += 1;
    }
    assert_eq!(ok, limits::MAX_HEADER_BYTES_PER_CALL / (chunk.len() + 3));
    assert!(
        header_pair(
            "x-h",
            "v".repeat(limits::MAX_HEADER_VALUE_BYTES + 1).into(),
            &mut usize::MAX.clone()
        )
        .is_err()
    );
}

#[test]
fn statuses_and_targets() {
    assert!(status_code(42).is_err());
    assert!(status_code(101).is_err());
    assert!(status_code(1000).is_err());
    assert_eq!(status_code(418).unwrap(), StatusCode::IM_A_TEAPOT);
    let uri: Uri = "/a/b?x=1".parse().unwrap();
    assert_eq!(set_target(&uri, Some("/c"), None).unwrap(), "/c?x=1");
    assert_eq!(set_target(&uri, None, Some(None)).unwrap(), "/a/b");
    assert!(set_target(&uri, Some("c"), None).is_err());
    assert!(set_target(&uri, Some("/c?y"), None).is_err());
    assert!(set_target(&uri, Some("/c d"), None).is_err());
}

#[test]
fn context_is_bounded() {
    let mut c = Context::default();
    for i in 0..limits::MAX_CONTEXT_ENTRIES {
        c.set(i.to_string(), "v".into()).unwrap();
    }
    assert!(c.set("more".into(), "v".into()).is_err());
    c.set("0".into(), "replaced".into()).unwrap();
    assert_eq!(c.get("0").as_deref(), Some("replaced"));
    assert!(
        c.set("k".into(), "v".repeat(limits::MAX_CONTEXT_VALUE_BYTES + 1))
            .is_err()
    );
}

/// A plugin's `cargo test` must see the gateway's answers to `log-field`:
/// the same fields kept and the same errors, word for word.
#[test]
fn the_sdk_test_host_sets_log_fields_as_the_gateway_does() {
    use super::super::log_fields::LogFields;
    use weir_sdk::testing::{TestHost, TestRequest};
    use weir_sdk::{Action, Phases, Plugin, Request};

    /// Each (name, value) tried in turn, in init, in the request phase and
    /// in the log phase; the answers kept per phase.
    const TRIES: &[(&str, &str)] = &[
        ("consumer", "ada"),
        ("", "v"),
        ("9lives", "v"),
        ("Consumer", "v"),
        ("consumer", "two\nlines"),
        ("consumer", "tab\t"),
        ("long", "\u{e9}"),
        ("consumer", "grace"),
    ];
    type Answers = Vec<Result<(), String>>;
    fn try_all(extra: usize) -> Answers {
        let long = "v".repeat(limits::MAX_LOG_FIELD_VALUE_BYTES + 1);
        let name = "n".repeat(limits::MAX_LOG_FIELD_NAME_BYTES + 1);
        let mut out: Answers = TRIES
            .iter()
            .map(|(n, v)| weir_sdk::log::set_field(n, v))
            .collect();
        out.push(weir_sdk::log::set_field("long", &long));
        out.push(weir_sdk::log::set_field(&name, "v"));
        out.extend((0..extra).map(|i| weir_sdk::log::set_field(&format!("f{i}"), "v")));
        out
    }
    struct Tries {
        init: Answers,
        request: Answers,
        log: Answers,
    }
    impl Plugin for Tries {
        type Config = serde::de::IgnoredAny;
        fn new(_: Self::Config) -> Result<Self, String> {
            Ok(Tries {
                init: try_all(0),
                request: Vec::new(),
                log: Vec::new(),
            })
        }
        fn phases(&self) -> Phases {
            Phases::REQUEST | Phases::LOG
        }
        fn on_request(&mut self, _: &mut Request<'_>) -> Action {
            self.request = try_all(limits::MAX_LOG_FIELDS);
            Action::Continue
        }
        fn on_log(&mut self, _: &Request<'_>, _: u16) {
            self.log = try_all(0);
        }
    }
    fn gateway(f: &mut LogFields, extra: usize) -> Answers {
        let long = "v".repeat(limits::MAX_LOG_FIELD_VALUE_BYTES + 1);
        let name = "n".repeat(limits::MAX_LOG_FIELD_NAME_BYTES + 1);
        let mut tries: Vec<(String, String)> = TRIES
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        tries.push(("long".into(), long));
        tries.push((name, "v".into()));
        tries.extend((0..extra).map(|i| (format!("f{i}"), "v".to_owned())));
        tries.into_iter().map(|(n, v)| f.set(n, v)).collect()
    }

    let mut host = TestHost::<Tries>::new(serde_json::json!({})).unwrap();
    let exchange = host.run(TestRequest::get("/"));
    let sdk = host.plugin();

    assert_eq!(sdk.init, gateway(&mut LogFields::no_request(), 0));
    let mut fields = LogFields::for_request();
    assert_eq!(sdk.request, gateway(&mut fields, limits::MAX_LOG_FIELDS));
    let kept: Vec<(String, String)> = fields
        .iter()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(exchange.log_fields(), kept);
    assert_eq!(kept.len(), limits::MAX_LOG_FIELDS);
    fields.take();
    assert_eq!(sdk.log, gateway(&mut fields, 0));
    // Every kind of refusal was met.
    let refusals: std::collections::BTreeSet<_> = [&sdk.init, &sdk.request, &sdk.log]
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_ref().err())
        .collect();
    assert_eq!(refusals.len(), 6, "{refusals:#?}");
}
