use super::*;

const LIMITS: Limits = Limits {
    max_head_bytes: 8192,
    max_headers: 100,
    max_target_bytes: 1024,
};

/// The body framing of a complete head, or its refusal.
fn request(bytes: &[u8]) -> Result<Option<(usize, BodyLength, bool)>, HeadError> {
    parse_request(bytes, &LIMITS, |h| (h.len, h.body, h.keep_alive))
}

fn response(bytes: &[u8], answering: Answering) -> Result<Option<(ResponseBody, bool)>, HeadError> {
    parse_response(bytes, &LIMITS, answering, |h| (h.body, h.keep_alive))
}

#[test]
fn frames_requests_by_length_chunked_or_nothing() {
    let get = b"GET /a?b HTTP/1.1\r\nHost: x\r\n\r\nNEXT";
    assert_eq!(
        request(get),
        Ok(Some((get.len() - 4, BodyLength::Empty, true)))
    );
    let post = b"POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n";
    assert_eq!(request(post).unwrap().unwrap().1, BodyLength::Length(12));
    let zero = b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(request(zero).unwrap().unwrap().1, BodyLength::Empty);
    let chunked =
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: Chunked\r\n\r\n";
    assert_eq!(request(chunked).unwrap().unwrap().1, BodyLength::Chunked);
    // Leading empty lines are skipped and counted in the head's length.
    let lead = b"\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    assert_eq!(request(lead).unwrap().unwrap().0, lead.len());
}

#[test]
fn a_head_in_pieces_is_partial_until_its_empty_line() {
    let head = b"GET / HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n";
    for cut in 0..head.len() {
        assert_eq!(request(&head[..cut]), Ok(None), "cut at {cut}");
    }
    assert!(request(head).unwrap().is_some());
}

#[test]
fn refuses_every_framing_ambiguity() {
    let cases: &[(&[u8], HeadError)] = &[
        (
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            HeadError::LengthAndChunked,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            HeadError::LengthAndChunked,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            HeadError::RepeatedContentLength,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            HeadError::RepeatedContentLength,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            HeadError::BadContentLength,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n",
            HeadError::BadContentLength,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
            HeadError::BadContentLength,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            HeadError::BadContentLength,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            HeadError::BadTransferEncoding,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            HeadError::BadTransferEncoding,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            HeadError::BadTransferEncoding,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked;q=1\r\n\r\n",
            HeadError::BadTransferEncoding,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked ; x=y\r\n\r\n",
            HeadError::BadTransferEncoding,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            HeadError::BadTransferEncoding,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: ,chunked\r\n\r\n",
            HeadError::BadTransferEncoding,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: \"chunked\"\r\n\r\n",
            HeadError::BadTransferEncoding,
        ),
        (
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            HeadError::TransferEncodingHttp10,
        ),
        (b"GET / HTTP/1.1\nHost: x\r\n\r\n", HeadError::BareLf),
        (b"GET / HTTP/1.1\r\nHost: x\n\r\n", HeadError::BareLf),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\n", HeadError::BareLf),
        (b"\nGET / HTTP/1.1\r\n\r\n", HeadError::BareLf),
        // Obsolete line folding, a space before the colon, a bad version.
        (b"GET / HTTP/1.1\r\nX-A: 1\r\n 2\r\n\r\n", HeadError::Syntax),
        (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", HeadError::Syntax),
        (b"GET / HTTP/1.2\r\n\r\n", HeadError::Syntax),
        (b"GET  / HTTP/1.1\r\n\r\n", HeadError::Syntax),
        (b"GET / HTTP/1.1\rHost: x\r\n\r\n", HeadError::Syntax),
    ];
    for (bytes, want) in cases {
        assert_eq!(
            request(bytes),
            Err(*want),
            "{}",
            String::from_utf8_lossy(bytes)
        );
        assert!(want.is_framing() || *want == HeadError::Syntax);
        assert_eq!(want.status(), 400);
    }
}

#[test]
fn bounds_answer_431_or_414() {
    let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
    let head = format!("GET / HTTP/1.1\r\n{many}\r\n");
    assert_eq!(request(head.as_bytes()), Err(HeadError::TooManyHeaders));
    assert_eq!(HeadError::TooManyHeaders.status(), 431);
    // 65 fields: more than the inline storage, within the limit.
    let some: String = (0..65).map(|i| format!("X-{i}: v\r\n")).collect();
    assert!(
        request(format!("GET / HTTP/1.1\r\n{some}\r\n").as_bytes())
            .unwrap()
            .is_some()
    );
    let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "v".repeat(8200));
    assert_eq!(request(big.as_bytes()), Err(HeadError::TooLarge));
    // Still partial, already over the bound.
    assert_eq!(request(&big.as_bytes()[..8200]), Err(HeadError::TooLarge));
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(2000));
    assert_eq!(request(long.as_bytes()), Err(HeadError::TargetTooLong));
    assert_eq!(HeadError::TargetTooLong.status(), 414);
    let endless = format!("GET /{}", "a".repeat(9000));
    assert_eq!(request(endless.as_bytes()), Err(HeadError::TargetTooLong));
}

#[test]
fn connection_options() {
    let h = |bytes: &[u8]| {
        parse_request(bytes, &LIMITS, |h| {
            (h.keep_alive, h.expect_continue, h.upgrade)
        })
        .unwrap()
        .unwrap()
    };
    assert_eq!(h(b"GET / HTTP/1.1\r\n\r\n"), (true, false, false));
    assert_eq!(
        h(b"GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n"),
        (false, false, false)
    );
    assert_eq!(h(b"GET / HTTP/1.0\r\n\r\n"), (false, false, false));
    assert_eq!(
        h(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"),
        (true, false, false)
    );
    assert_eq!(
        h(b"PUT / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n"),
        (true, true, false)
    );
    // Expect means nothing from an HTTP/1.0 client.
    assert_eq!(
        h(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n"),
        (false, false, false)
    );
    assert_eq!(
        h(b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
        (true, false, true)
    );
    assert_eq!(
        h(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"),
        (true, false, false)
    );
}

#[test]
fn frames_responses_by_status_request_and_fields() {
    let plain = Answering::default();
    let head = Answering {
        head: true,
        connect: false,
    };
    let connect = Answering {
        head: false,
        connect: true,
    };
    let r = |b: &[u8], a| response(b, a).unwrap().unwrap();
    assert_eq!(
        r(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", plain),
        (ResponseBody::Length(3), true)
    );
    assert_eq!(
        r(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", head),
        (ResponseBody::Empty, true)
    );
    assert_eq!(
        r(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            plain
        ),
        (ResponseBody::Chunked, true)
    );
    assert_eq!(
        r(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", plain),
        (ResponseBody::UntilClose, false)
    );
    assert_eq!(
        r(b"HTTP/1.1 200 OK\r\n\r\n", plain),
        (ResponseBody::UntilClose, false)
    );
    assert_eq!(
        r(
            b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n",
            plain
        ),
        (ResponseBody::Empty, true)
    );
    assert_eq!(
        r(
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            plain
        ),
        (ResponseBody::Empty, true)
    );
    assert_eq!(
        r(b"HTTP/1.1 100 Continue\r\n\r\n", plain),
        (ResponseBody::Empty, true)
    );
    assert_eq!(
        r(b"HTTP/1.1 200 Connection established\r\n\r\n", connect),
        (ResponseBody::Tunnel, false)
    );
    assert_eq!(
        r(b"HTTP/1.1 407 Auth\r\nContent-Length: 0\r\n\r\n", connect),
        (ResponseBody::Empty, true)
    );
    assert_eq!(
        r(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", plain),
        (ResponseBody::Length(1), false)
    );
    assert_eq!(
        r(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n",
            plain
        ),
        (ResponseBody::Length(1), false)
    );
    for bad in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\nContent-Length: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
    ] {
        assert!(
            response(bad, plain).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn a_partial_head_past_a_small_field_limit_is_refused_early_and_statuses_start_at_100() {
    let small = Limits {
        max_headers: 4,
        ..LIMITS
    };
    let partial = b"GET / HTTP/1.1\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\nF: 1\r\n";
    assert_eq!(
        parse_request(partial, &small, |_| ()),
        Err(HeadError::TooManyHeaders)
    );
    assert_eq!(
        response(b"HTTP/1.1 099 Low\r\n\r\n", Answering::default()),
        Err(HeadError::Syntax)
    );
}
