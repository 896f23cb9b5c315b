use http::HeaderMap;

use super::*;

const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn parent(s: &str) -> Option<Parent> {
    parse_traceparent(s.as_bytes())
}

#[test]
fn a_valid_version_00_is_read() {
    let p = parent(VALID).unwrap();
    assert_eq!(p.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(p.span_id.to_string(), "00f067aa0ba902b7");
    assert_eq!(p.flags, 1);
    assert!(p.sampled());
    let unsampled = parent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
    assert!(!unsampled.sampled());
    // Flags other than sampled are read (and later sent as zero).
    assert_eq!(
        parent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09")
            .unwrap()
            .flags,
        9
    );
    // Optional white space around the value.
    assert!(parent(&format!(" \t{VALID}\t ")).is_some());
}

#[test]
fn each_malformed_shape_is_refused() {
    let bad = [
        // too short, too long for version 00
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "",
        // upper-case hex anywhere
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
        "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        // not hex
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
        "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        // all-zero ids
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        // wrong separators or field lengths
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
        "00-4bf92f3577b34da6a3ce929d0e0e47-3600f067aa0ba902b7-01",
        "000-bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        // version ff is invalid whatever follows
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more",
    ];
    for s in bad {
        assert_eq!(parent(s), None, "{s:?} should be refused");
    }
}

#[test]
fn higher_versions_are_read_forward_compatibly() {
    // Same fields, then the end or `-` and whatever the version adds.
    let p = parent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    assert_eq!(p.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(
        parent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future").is_some()
    );
    assert!(parent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-x").is_some());
    // Without the `-` after the flags it is not a longer version-00-like
    // value but a malformed one.
    assert_eq!(
        parent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x"),
        None
    );
    // The first fields keep their rules.
    assert_eq!(
        parent("cc-00000000000000000000000000000000-00f067aa0ba902b7-01-x"),
        None
    );
    assert_eq!(
        parent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"),
        None
    );
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

/// The `tracestate` Weir forwards for these fields.
fn state(values: &[&str]) -> Option<String> {
    let pairs: Vec<_> = values.iter().map(|v| ("tracestate", *v)).collect();
    let h = headers(&pairs);
    match parse_tracestate(h.get_all(TRACESTATE).iter())? {
        TraceState::AsSent => Some(values[0].to_owned()),
        TraceState::Joined(v) => Some(v.to_str().unwrap().to_owned()),
    }
}

#[test]
fn tracestate_members_are_checked_and_joined() {
    assert_eq!(
        state(&["congo=t61rcWkgMzE"]).as_deref(),
        Some("congo=t61rcWkgMzE")
    );
    // Several fields are one list; OWS and empty members go.
    assert_eq!(
        state(&["rojo=00f067aa0ba902b7 ,\t", " congo=t61rcWkgMzE"]).as_deref(),
        Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
    );
    // Multi-tenant keys, inner spaces in values, the key characters.
    assert_eq!(
        state(&["tenant1@vendor=a b", "0t@s=x", "a_-*/9=~"]).as_deref(),
        Some("tenant1@vendor=a b,0t@s=x,a_-*/9=~")
    );
    assert_eq!(state(&[]), None);
    assert_eq!(state(&[" , "]), None);
}

#[test]
fn a_malformed_tracestate_is_dropped_whole() {
    let bad = [
        "Congo=t61",           // upper-case key
        "1congo=t61",          // a simple key starts with a letter
        "congo",               // no value
        "congo=",              // empty value
        "congo=a=b",           // `=` in a value
        "=value",              // empty key
        "a@=x",                // empty system id
        "@b=x",                // empty tenant id
        "a@1b=x",              // a system id starts with a letter
        "a@bcdefghijklmnop=x", // system id longer than 14
        "a@b@c=x",             // two `@`
        "congo=t61,congo=t62", // a key twice
        "ok=1,bad key=2",      // one bad member spoils the list
        "caf\u{e9}=1",         // not ASCII
    ];
    for s in bad {
        if let Ok(v) = HeaderValue::from_str(s) {
            let mut h = HeaderMap::new();
            h.insert(TRACESTATE, v);
            assert_eq!(
                parse_tracestate(h.get_all(TRACESTATE).iter()),
                None,
                "{s:?} should be dropped"
            );
        }
    }
    let long_key = format!("{}=1", "k".repeat(257));
    assert_eq!(state(&[&long_key]), None);
    let long_value = format!("k={}", "v".repeat(257));
    assert_eq!(state(&[&long_value]), None);
    let long_tenant = format!("{}@s=1", "t".repeat(242));
    assert_eq!(state(&[&long_tenant]), None);
}

#[test]
fn tracestate_bounds() {
    let members = |n: usize| -> String {
        (0..n)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",")
    };
    assert!(state(&[&members(MAX_TRACESTATE_MEMBERS)]).is_some());
    assert_eq!(state(&[&members(MAX_TRACESTATE_MEMBERS + 1)]), None);
    // 512 bytes in all, the separator between fields counted.
    let list = |last: usize| {
        let mut m: Vec<String> = (0..3)
            .map(|i| format!("k{i}={}", "v".repeat(124)))
            .collect();
        m.push(format!("k3={}", "v".repeat(last)));
        m.join(",")
    };
    assert_eq!(list(125).len(), MAX_TRACESTATE_BYTES);
    assert!(state(&[&list(125)]).is_some());
    assert_eq!(state(&[&list(126)]), None);
    let half = format!("a={}", "v".repeat(253));
    let other = format!("b={}", "v".repeat(254));
    assert!(state(&[&half, &other]).is_some());
    let other = format!("b={}", "v".repeat(255));
    assert_eq!(state(&[&half, &other]), None);
}

const TRUST: Policy = Policy {
    trust_client: true,
    sample_rate: 1.0,
};

fn sent(h: &HeaderMap) -> Vec<String> {
    h.get_all(TRACEPARENT)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_trusted_valid_context_is_continued_with_weirs_span() {
    let mut h = headers(&[("traceparent", VALID), ("tracestate", "congo=t61rcWkgMzE")]);
    let cx = Context::propagate(&mut h, TRUST);
    assert_eq!(cx.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(cx.parent.unwrap().to_string(), "00f067aa0ba902b7");
    assert_ne!(cx.span_id, cx.parent.unwrap());
    assert!(cx.sampled);
    assert_eq!(
        sent(&h),
        [format!(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01",
            cx.span_id
        )]
    );
    assert_eq!(h.get(TRACESTATE).unwrap(), "congo=t61rcWkgMzE");

    // The client's unsampled decision is kept even at sample rate 1; a
    // higher version and unknown flags go out as version 00 and `00`.
    let mut h = headers(&[(
        "traceparent",
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-08-future",
    )]);
    let cx = Context::propagate(&mut h, TRUST);
    assert!(!cx.sampled);
    assert_eq!(
        sent(&h),
        [format!(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-{}-00",
            cx.span_id
        )]
    );
}

#[test]
fn an_absent_or_malformed_context_is_replaced_and_its_state_dropped() {
    for incoming in [
        vec![],
        vec![("traceparent", "00-xyz"), ("tracestate", "congo=t61")],
        vec![
            ("traceparent", VALID),
            ("traceparent", VALID),
            ("tracestate", "congo=t61"),
        ],
        vec![("tracestate", "congo=t61")],
    ] {
        let mut h = headers(&incoming);
        let cx = Context::propagate(&mut h, TRUST);
        assert_eq!(cx.parent, None);
        assert_ne!(cx.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            sent(&h),
            [format!("00-{}-{}-01", cx.trace_id, cx.span_id)],
            "{incoming:?}"
        );
        assert!(h.get(TRACESTATE).is_none(), "{incoming:?}");
    }
}

#[test]
fn untrusted_clients_choose_neither_trace_nor_sampling() {
    let policy = Policy {
        trust_client: false,
        sample_rate: 0.0,
    };
    let mut h = headers(&[("traceparent", VALID), ("tracestate", "congo=t61")]);
    let cx = Context::propagate(&mut h, policy);
    assert_ne!(cx.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(cx.parent, None);
    assert!(!cx.sampled);
    assert!(sent(&h)[0].ends_with("-00"));
    assert!(h.get(TRACESTATE).is_none());
}

#[test]
fn weir_samples_at_its_rate() {
    let at = |rate: f64| {
        let policy = Policy {
            trust_client: true,
            sample_rate: rate,
        };
        (0..2000)
            .filter(|_| Context::propagate(&mut HeaderMap::new(), policy).sampled)
            .count()
    };
    assert_eq!(at(0.0), 0);
    assert_eq!(at(1.0), 2000);
    let half = at(0.5);
    assert!((800..1200).contains(&half), "{half}");
}

#[test]
fn new_ids_are_never_zero_and_differ() {
    let a = TraceId::random();
    let b = TraceId::random();
    assert_ne!(a, b);
    assert_ne!(a.0, [0; 16]);
    assert_ne!(SpanId::random().0, [0; 8]);
    assert_eq!(a.to_string().len(), 32);
    assert!(
        a.to_string()
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
}

#[test]
fn ids_are_written_and_read_back_as_hex() {
    for x in [
        1,
        9,
        10,
        15,
        16,
        u128::MAX,
        0x0123_4567_89ab_cdef_0011_2233_4455_6677,
    ]
    .into_iter()
    .chain((0..1000).map(|_| fastrand::u128(1..)))
    {
        let hex = TraceId(x.to_be_bytes()).hex();
        assert_eq!(hex.as_str(), format!("{x:032x}"));
        let span = SpanId((x as u64).to_be_bytes()).hex();
        assert_eq!(span.as_str(), format!("{:016x}", x as u64));
        let read = parent(&format!("00-{}-{}-01", hex.as_str(), span.as_str()));
        if x as u64 != 0 {
            assert_eq!(read.unwrap().trace_id.0, x.to_be_bytes());
            assert_eq!(read.unwrap().span_id.0, (x as u64).to_be_bytes());
        }
    }
}

#[test]
fn hex_refuses_every_byte_but_a_lower_case_digit() {
    let good = *b"0123456789abcdef";
    assert_eq!(hex_number::<16>(&good), Some(0x0123_4567_89ab_cdef));
    for at in 0..16 {
        for b in 0..=255u8 {
            let mut s = good;
            s[at] = b;
            let digit = b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
            assert_eq!(hex_number::<16>(&s).is_some(), digit, "byte {b:#x} at {at}");
        }
    }
}

/// The `tracestate` fields a request is sent upstream with, after a
/// trusted `traceparent`.
fn forwarded_state(fields: &[&str]) -> (Vec<String>, Option<HeaderValue>) {
    let mut pairs = vec![("traceparent", VALID)];
    pairs.extend(fields.iter().map(|f| ("tracestate", *f)));
    let mut h = headers(&pairs);
    let cx = Context::propagate(&mut h, TRUST);
    let sent = h
        .get_all(TRACESTATE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    (sent, cx.tracestate)
}

#[test]
fn a_tracestate_is_forwarded_as_sent_or_joined_or_not_at_all() {
    // Already as Weir would send it: the client's own value, unparsed
    // bytes and all.
    let (sent, kept) = forwarded_state(&["rojo=00f067aa0ba902b7,congo=t61"]);
    assert_eq!(sent, ["rojo=00f067aa0ba902b7,congo=t61"]);
    assert_eq!(kept.unwrap(), "rojo=00f067aa0ba902b7,congo=t61");
    // Several fields, white space or empty members: one joined field.
    for fields in [
        &["rojo=1", "congo=2"][..],
        &["rojo=1 , congo=2"],
        &["rojo=1,,congo=2"],
        &["rojo=1,congo=2,"],
    ] {
        let (sent, kept) = forwarded_state(fields);
        assert_eq!(sent, ["rojo=1,congo=2"], "{fields:?}");
        assert_eq!(kept.unwrap(), "rojo=1,congo=2", "{fields:?}");
    }
    // Invalid in any field: none of them goes.
    let (sent, kept) = forwarded_state(&["rojo=1", "Congo=2"]);
    assert!(sent.is_empty());
    assert_eq!(kept, None);
}
