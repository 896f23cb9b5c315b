//! HTTP/2 to upstreams (issue 19), through the real binary: many client
//! requests multiplexed on a few upstream connections within the peer's
//! stream limit; GOAWAY (graceful under load, and one whose last stream id
//! says some streams never ran) and REFUSED_STREAM failing no request and
//! repeating none that ran; trailers both ways on h2↔h2, h1↔h2 and h2↔h1;
//! HTTP/1.1 clients translated to an h2c upstream (bodies of every framing,
//! 50 MiB each way, the host as `:authority`); `h2` and `auto` over TLS
//! chosen by ALPN; upstreams that break HTTP/2 (bad frames, an oversized
//! header block, a reset storm) costing only their own requests; PING
//! keep-alive dropping a silent connection and keeping a live one; and
//! `weir check` refusing bad protocol settings. The upstreams are in
//! `support/h2.rs`; the broken ones write their frames by hand.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::task::JoinSet;

use crate::support::h2::{
    self as h2s, RawH2, Record, RecordingOptions, TcpServer, TlsUpstream, body_for,
    body_with_trailers, h1_stream_client, h2c_stream_client, handler, pattern_body, pattern_digest,
    read_body,
};
use crate::support::pki::Ca;
use crate::support::upstream::full;
use crate::support::*;

type BoxFut = Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A gateway configuration: one plain listener `main`, `workers` worker
/// threads, then `rest` (upstreams and routes) as written.
fn gateway_config(workers: usize, rest: &str) -> String {
    format!(
        "[server]\nworkers = {workers}\ndrain_timeout = \"5s\"\n\n[[listener]]\nname = \"main\"\naddress = \"127.0.0.1:0\"\n\n{rest}\n"
    )
}

/// An `[[upstream]]` block: `keys` are extra lines of the upstream's own
/// table, `http2` the lines of its `[upstream.http2]` table (none when
/// empty; it comes last because a TOML table runs to the next header).
fn upstream(
    name: &str,
    protocol: &str,
    endpoints: &[SocketAddr],
    keys: &str,
    http2: &str,
) -> String {
    let list: Vec<String> = endpoints.iter().map(|a| format!("\"{a}\"")).collect();
    let mut s = format!(
        "[[upstream]]\nname = \"{name}\"\nprotocol = \"{protocol}\"\nendpoints = [{}]\nconnect_timeout = \"2s\"\n{keys}\n",
        list.join(", ")
    );
    if !http2.is_empty() {
        s.push_str(&format!("[upstream.http2]\n{http2}\n"));
    }
    s.push('\n');
    s
}

/// A `[[route]]` for requests under `prefix` to `upstream`.
fn route(prefix: &str, upstream: &str, extra: &str) -> String {
    format!("[[route]]\nupstream = \"{upstream}\"\npath_prefix = \"{prefix}\"\n{extra}\n\n")
}

/// Outlier ejection off: a broken upstream's every request reaches it.
const NO_OUTLIER: &str = "outlier = { consecutive_5xx = 0, consecutive_connect_failures = 0 }";

/// The gateway's warnings and errors, for failure messages.
fn warnings(gw: &Gateway) -> String {
    gw.logs()
        .iter()
        .filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\""))
        .cloned()
        .collect::<Vec<_>>()
        .join("\n")
}

/// Sends a request and reads its answer whole; a transport failure or a
/// timeout is an `Err` with the reason instead of a panic, so a test under
/// load can count failures.
async fn try_send<B>(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        B,
    >,
    req: Request<B>,
) -> Result<(u16, Bytes), String>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| format!("request: {e:?}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((status, body))
}

/// A request with the id the recording servers key on (`x-test-id`): a
/// GET, or a POST carrying [`body_for`] the id.
fn id_request(url: &str, id: &str, post: bool) -> Request<Full<Bytes>> {
    let b = if post {
        Request::post(url)
    } else {
        Request::get(url)
    };
    let body = if post { body_for(id) } else { String::new() };
    // The same id as the request id, so the gateway's log lines about a
    // request name it too.
    let b = if id == "-" {
        b
    } else {
        b.header("x-request-id", id)
    };
    b.header("x-test-id", id)
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// What a recording server answers to the request [`id_request`] made.
fn expected_answer(id: &str, post: bool) -> String {
    let len = if post { body_for(id).len() } else { 0 };
    format!("id={id} len={len}")
}

// ---------------------------------------------------------------------
// 1. Multiplexing.

/// What the slow multiplexing upstream saw.
#[derive(Default)]
struct MuxStats {
    /// Streams opened (HEADERS frames that start a request).
    requests: AtomicUsize,
    /// The most streams one connection had open at once.
    max_open: AtomicUsize,
    /// Streams opened past SETTINGS_MAX_CONCURRENT_STREAMS (refused),
    /// once the client had acknowledged the SETTINGS that say it.
    over_limit: AtomicUsize,
    /// The same before the client acknowledged them: it may not have
    /// read them yet (RFC 9113 section 6.5.3).
    over_before_ack: AtomicUsize,
    /// Per connection, by index: (streams, most open at once, over the
    /// limit, whether the SETTINGS were acknowledged at its first
    /// stream).
    conns: Mutex<std::collections::BTreeMap<usize, (usize, usize, usize, bool)>>,
}

/// The limit the slow multiplexer advertises.
const MUX_LIMIT: usize = 10;

/// A raw HTTP/2 connection that advertises at most [`MUX_LIMIT`] streams,
/// answers each request `ok` after 100 ms, and counts how many streams
/// the client keeps open at once (from the HEADERS that opens one to the
/// frame that ends its answer). A stream over the limit is refused, as a
/// real server would, and counted.
async fn slow_multiplexer(index: usize, stream: tokio::net::TcpStream, stats: Arc<MuxStats>) {
    let Ok(mut conn) = RawH2::accept(
        stream,
        &[(h2s::SETTINGS_MAX_CONCURRENT_STREAMS, MUX_LIMIT as u32)],
    )
    .await
    else {
        return;
    };
    let w = conn.writer();
    let open = Arc::new(AtomicUsize::new(0));
    let mut answers = JoinSet::new();
    let mut acked = false;
    while let Ok(Some(f)) = conn.next().await {
        if f.kind == h2s::SETTINGS && f.flags & h2s::ACK != 0 {
            acked = true;
        }
        if f.kind != h2s::HEADERS {
            continue;
        }
        stats.requests.fetch_add(1, Ordering::SeqCst);
        let now = open.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_open.fetch_max(now, Ordering::SeqCst);
        let over = now > MUX_LIMIT;
        {
            let mut conns = stats.conns.lock().unwrap();
            let c = conns.entry(index).or_insert((0, 0, 0, acked));
            c.0 += 1;
            c.1 = c.1.max(now);
            c.2 += usize::from(over);
        }
        if over {
            let count = if acked {
                &stats.over_limit
            } else {
                &stats.over_before_ack
            };
            count.fetch_add(1, Ordering::SeqCst);
            open.fetch_sub(1, Ordering::SeqCst);
            let _ = w.rst(f.stream, h2s::REFUSED_STREAM).await;
            continue;
        }
        let (w, open) = (w.clone(), open.clone());
        answers.spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            // The stream counts as closed from the moment its last frame
            // is sent; counted down first so that a new stream the
            // client opens in reply is never counted against this one.
            open.fetch_sub(1, Ordering::SeqCst);
            let _ = w.answer(f.stream, b"ok").await;
        });
    }
}

#[tokio::test]
async fn many_concurrent_streams_share_a_few_upstream_connections() {
    let stats = Arc::new(MuxStats::default());
    let s = stats.clone();
    let up = TcpServer::start(move |i, stream| slow_multiplexer(i, stream, s.clone())).await;
    let gw = Gateway::with_config(gateway_config(
        1,
        &format!(
            "{}{}",
            upstream("up", "h2c", &[up.addr], "", ""),
            route("/", "up", "")
        ),
    ))
    .start();

    // One request first: the pooled connection then knows the server's
    // limit (its SETTINGS arrived) before the burst.
    let warm = get(&client(), &gw.url("/warm"), &[]).await;
    assert_eq!(warm.status, 200, "{}\n{}", warm.text(), warnings(&gw));

    // 50 at once: 25 HTTP/1.1 clients (a connection each) and 25 streams
    // of one h2c client.
    let mut all = JoinSet::new();
    for i in 0..25 {
        let url = gw.url(&format!("/h1/{i}"));
        all.spawn(async move { try_send(&client(), id_request(&url, "-", false)).await });
    }
    let h2 = h2c_client();
    for i in 0..25 {
        let (h2, url) = (h2.clone(), gw.url(&format!("/h2/{i}")));
        all.spawn(async move { try_send(&h2, id_request(&url, "-", false)).await });
    }
    let mut bad = Vec::new();
    while let Some(r) = all.join_next().await {
        match r.unwrap() {
            Ok((200, body)) if body == "ok" => {}
            other => bad.push(format!("{other:?}")),
        }
    }
    let conns = up.accepted();
    let requests = stats.requests.load(Ordering::SeqCst);
    let max_open = stats.max_open.load(Ordering::SeqCst);
    let over = stats.over_limit.load(Ordering::SeqCst);
    let early = stats.over_before_ack.load(Ordering::SeqCst);
    let per_conn = stats.conns.lock().unwrap().clone();
    let seen = format!(
        "{conns} connections, {requests} streams, at most {max_open} open at once on one; \
         {over} streams over the limit of {MUX_LIMIT} once the gateway had acknowledged it, \
         {early} before; per connection (streams, most at once, over, SETTINGS acknowledged \
         at its first stream): {per_conn:?}"
    );
    assert!(
        bad.is_empty(),
        "{} of 50 failed: {:?}\nthe upstream saw {seen}\n{}",
        bad.len(),
        &bad[..bad.len().min(5)],
        warnings(&gw)
    );

    // 50 streams need 5 connections of 10; 3 more for connections opened
    // while the first ones' streams were still being counted.
    assert!(conns <= 8, "too many connections for 51 requests: {seen}");
    assert!(
        max_open <= MUX_LIMIT && over + early == 0,
        "over the stream limit: {seen}"
    );
    // 50 requests at once on at most 8 connections: streams were
    // multiplexed, not sent one per connection at a time.
    assert!(
        max_open >= 3,
        "never more than {max_open} streams at once on a connection"
    );
}

// ---------------------------------------------------------------------
// 2. GOAWAY and REFUSED_STREAM.

#[tokio::test]
async fn a_graceful_goaway_under_load_fails_no_request_and_repeats_none() {
    let record: Arc<Mutex<Record>> = Arc::default();
    let opts = RecordingOptions {
        goaway_after: Some(20),
        max_delay: Duration::from_millis(5),
        ..RecordingOptions::default()
    };
    let (r1, r2) = (record.clone(), record.clone());
    let a = TcpServer::start(move |_, s| h2s::serve_recording(s, opts, r1.clone())).await;
    let b = TcpServer::start(move |_, s| h2s::serve_recording(s, opts, r2.clone())).await;
    let gw = Gateway::with_config(gateway_config(
        2,
        &format!(
            "{}{}",
            upstream("up", "h2c", &[a.addr, b.addr], NO_OUTLIER, ""),
            route("/", "up", "")
        ),
    ))
    .start();

    // 8 clients, 50 requests each, GET and POST in turn: four HTTP/1.1
    // clients and four tasks sharing one h2c client.
    const PER_TASK: usize = 50;
    let mut tasks = JoinSet::new();
    let h2 = h2c_client();
    for t in 0..8 {
        let c = if t < 4 { client() } else { h2.clone() };
        let url = gw.url("/load");
        tasks.spawn(async move {
            let mut failed = Vec::new();
            for i in 0..PER_TASK {
                let id = format!("t{t}-{i}");
                let post = i % 2 == 1;
                match try_send(&c, id_request(&url, &id, post)).await {
                    Ok((200, body)) if body == expected_answer(&id, post) => {}
                    other => failed.push((id, format!("{other:?}"))),
                }
            }
            failed
        });
    }
    let mut failed = Vec::new();
    while let Some(f) = tasks.join_next().await {
        failed.extend(f.unwrap());
    }
    // Whether the upstreams ran each failed request says whether it was
    // safe to retry.
    let failed: Vec<String> = failed
        .into_iter()
        .map(|(id, what)| {
            let ran = record.lock().unwrap().received.get(&id).copied();
            format!("{id}: {what} (ran upstream: {ran:?})")
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}\n{}",
        failed.len(),
        8 * PER_TASK,
        &failed[..failed.len().min(5)],
        warnings(&gw)
    );

    let r = record.lock().unwrap();
    let twice: Vec<_> = r.received.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "requests that ran and were sent again: {twice:?}"
    );
    assert!(r.bad_bodies.is_empty(), "{:?}", r.bad_bodies);
    assert_eq!(r.received.len(), 8 * PER_TASK);
    // Every 20 streams a connection went away: the load crossed many.
    assert!(r.goaways >= 5, "only {} GOAWAYs sent", r.goaways);
    assert!(a.accepted() + b.accepted() >= 6);
}

/// What the GOAWAY-with-a-low-last-stream-id connection did.
#[derive(Default)]
struct LowGoaway {
    /// Streams opened on it.
    opened: Vec<u32>,
    /// The one it answered, and named as the last stream in its GOAWAY.
    answered: Option<u32>,
}

/// A raw connection that waits for `want` requests (or 3 s), answers
/// the lowest stream `raw`, and sends GOAWAY naming that stream as the
/// last one it processed: every other stream never ran.
async fn low_goaway(stream: tokio::net::TcpStream, want: usize, out: Arc<Mutex<LowGoaway>>) {
    let Ok(mut conn) = RawH2::accept(stream, &[(h2s::SETTINGS_MAX_CONCURRENT_STREAMS, 100)]).await
    else {
        return;
    };
    let w = conn.writer();
    let (mut opened, mut ended) = (BTreeSet::new(), BTreeSet::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while ended.len() < want {
        match tokio::time::timeout_at(deadline, conn.next()).await {
            Ok(Ok(Some(f))) => {
                if f.kind == h2s::HEADERS {
                    opened.insert(f.stream);
                }
                if f.ends_stream() {
                    ended.insert(f.stream);
                }
            }
            Ok(_) => return,
            Err(_) => break,
        }
    }
    let Some(&first) = opened.iter().next() else {
        return;
    };
    {
        let mut o = out.lock().unwrap();
        o.opened = opened.iter().copied().collect();
        o.answered = Some(first);
    }
    let _ = w.answer(first, b"raw").await;
    let _ = w.goaway(first, h2s::NO_ERROR).await;
    conn.until_closed(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn streams_a_goaway_says_never_ran_are_retried_on_a_new_connection() {
    let record: Arc<Mutex<Record>> = Arc::default();
    let low: Arc<Mutex<LowGoaway>> = Arc::default();
    let (r, l) = (record.clone(), low.clone());
    // The first connection is the raw one; every later one a recording
    // h2 server on the same port.
    let up = TcpServer::start(move |index, s| -> BoxFut {
        if index == 0 {
            Box::pin(low_goaway(s, 6, l.clone()))
        } else {
            Box::pin(h2s::serve_recording(
                s,
                RecordingOptions::default(),
                r.clone(),
            ))
        }
    })
    .await;
    // One worker and one connection per endpoint: all six requests share
    // the first connection.
    let gw = Gateway::with_config(gateway_config(
        1,
        &format!(
            "{}{}",
            upstream(
                "up",
                "h2c",
                &[up.addr],
                NO_OUTLIER,
                "max_connections_per_endpoint = 1"
            ),
            route("/", "up", "")
        ),
    ))
    .start();

    let mut all = JoinSet::new();
    for i in 0..6 {
        let url = gw.url("/low");
        // Four POSTs with a small body, two GETs.
        let post = i < 4;
        let id = format!("g{i}");
        all.spawn(async move {
            let r = try_send(&client(), id_request(&url, &id, post)).await;
            (id, post, r)
        });
    }
    let mut raw_answered = Vec::new();
    let mut bad = Vec::new();
    while let Some(j) = all.join_next().await {
        let (id, post, r) = j.unwrap();
        match r {
            Ok((200, body)) if body == "raw" => raw_answered.push(id),
            Ok((200, body)) if body == expected_answer(&id, post) => {}
            other => bad.push(format!("{id}: {other:?}")),
        }
    }
    assert!(bad.is_empty(), "{bad:?}\n{}", warnings(&gw));
    let low = low.lock().unwrap();
    assert!(
        low.opened.len() >= 2,
        "the first connection carried {:?}: nothing was left to retry\n{}",
        low.opened,
        warnings(&gw)
    );
    assert_eq!(raw_answered.len(), 1, "{raw_answered:?}");
    let r = record.lock().unwrap();
    assert!(
        !r.received.contains_key(&raw_answered[0]),
        "{} ran on the first connection and was sent again",
        raw_answered[0]
    );
    for i in 0..6 {
        let id = format!("g{i}");
        if id != raw_answered[0] {
            assert_eq!(r.received.get(&id), Some(&1), "{id}: {:?}", r.received);
        }
    }
    assert!(r.bad_bodies.is_empty(), "{:?}", r.bad_bodies);
    assert!(up.accepted() >= 2);
}

#[tokio::test]
async fn refused_streams_are_retried_and_succeed() {
    let record: Arc<Mutex<Record>> = Arc::default();
    let r = record.clone();
    let opts = RecordingOptions {
        refuse_first_try: true,
        ..RecordingOptions::default()
    };
    let up = TcpServer::start(move |_, s| h2s::serve_recording(s, opts, r.clone())).await;
    let gw = Gateway::with_config(gateway_config(
        1,
        &format!(
            "{}{}",
            upstream("up", "h2c", &[up.addr], NO_OUTLIER, ""),
            route("/", "up", "")
        ),
    ))
    .start();
    // Each request is refused the first time the server sees it, before
    // it reads a byte of the body: three GETs, three POSTs, at once.
    let mut all = JoinSet::new();
    for i in 0..6 {
        let url = gw.url("/refused");
        let post = i % 2 == 0;
        let id = format!("r{i}");
        all.spawn(async move {
            let mut req = id_request(&url, &id, post);
            req.headers_mut().insert("x-refuse", "1".parse().unwrap());
            let r = try_send(&client(), req).await;
            (id, post, r)
        });
    }
    while let Some(j) = all.join_next().await {
        let (id, post, r) = j.unwrap();
        assert!(
            matches!(&r, Ok((200, body)) if *body == expected_answer(&id, post)),
            "{id}: {r:?}\n{}",
            warnings(&gw)
        );
    }
    let r = record.lock().unwrap();
    for i in 0..6 {
        let id = format!("r{i}");
        assert_eq!(r.refused.get(&id), Some(&1), "{id} was never refused");
        assert_eq!(r.received.get(&id), Some(&1), "{id}: {:?}", r.received);
    }
    assert!(r.bad_bodies.is_empty(), "{:?}", r.bad_bodies);
}

// ---------------------------------------------------------------------
// 3. Trailers.

/// What the trailer-echoing upstream saw of one request.
#[derive(Debug, Clone, Default)]
struct TrailerSeen {
    te: Option<String>,
    trailers: Option<HeaderMap>,
    body: Vec<u8>,
}

/// An h2c upstream that records each request's `te` and trailers and
/// answers `trailers ok` with the trailers `x-checksum: c0ffee` and
/// `x-got: ` the request's `x-req-sum` trailer, declared in a `Trailer`
/// field.
async fn trailer_upstream(seen: Arc<Mutex<Vec<TrailerSeen>>>) -> TcpServer {
    h2s::h2c_upstream(handler(move |req: Request<Incoming>| {
        let seen = seen.clone();
        async move {
            let te = req
                .headers()
                .get("te")
                .map(|v| v.to_str().unwrap_or("?").to_owned());
            let body = read_body(req.into_body()).await;
            let got = body
                .trailers
                .as_ref()
                .and_then(|t| t.get("x-req-sum"))
                .cloned()
                .unwrap_or_else(|| "none".parse().unwrap());
            seen.lock().unwrap().push(TrailerSeen {
                te,
                trailers: body.trailers.clone(),
                body: body.head.clone(),
            });
            let mut t = HeaderMap::new();
            t.insert("x-checksum", "c0ffee".parse().unwrap());
            t.insert("x-got", got);
            // Declared ahead, as RFC 9110 section 6.6.2 asks of a sender
            // that can: an HTTP/1.1 server (hyper's, the gateway's
            // client side) sends only the trailer fields it declared.
            Response::builder()
                .header("trailer", "x-checksum, x-got")
                .body(body_with_trailers("trailers ok", t))
                .unwrap()
        }
    }))
    .await
}

#[tokio::test]
async fn trailers_pass_both_ways_between_an_h2c_client_and_an_h2c_upstream() {
    let seen = Arc::default();
    let up = trailer_upstream(Arc::clone(&seen)).await;
    let gw = Gateway::with_config(gateway_config(
        1,
        &format!(
            "{}{}",
            upstream("up", "h2c", &[up.addr], "", ""),
            route("/", "up", "")
        ),
    ))
    .start();
    let mut t = HeaderMap::new();
    t.insert("x-req-sum", "abc".parse().unwrap());
    let req = Request::post(gw.url("/t"))
        .header("te", "trailers")
        .body(body_with_trailers("hello", t))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(30), h2c_stream_client().request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", warnings(&gw));
    let body = read_body(resp.into_body()).await;
    assert_eq!(body.head, b"trailers ok");
    let trailers = body.trailers.unwrap_or_default();
    assert_eq!(
        trailers.get("x-checksum").map(|v| v.as_bytes()),
        Some(&b"c0ffee"[..]),
        "response trailers {trailers:?}"
    );
    let seen = seen.lock().unwrap()[0].clone();
    assert_eq!(seen.body, b"hello");
    assert_eq!(seen.te.as_deref(), Some("trailers"), "{seen:?}");
    assert_eq!(
        seen.trailers
            .as_ref()
            .and_then(|t| t.get("x-req-sum"))
            .map(|v| v.as_bytes()),
        Some(&b"abc"[..]),
        "request trailers at the upstream: {seen:?}"
    );
    assert_eq!(
        trailers.get("x-got").map(|v| v.as_bytes()),
        Some(&b"abc"[..])
    );
}

/// A chunked HTTP/1.1 body decoded: its data and its trailer fields
/// (names lowercased).
fn dechunk(mut b: &[u8]) -> (Vec<u8>, Vec<(String, String)>) {
    let mut data = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let line = std::str::from_utf8(&b[..eol]).unwrap();
        let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).unwrap();
        b = &b[eol + 2..];
        if size == 0 {
            break;
        }
        data.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
    let mut trailers = Vec::new();
    for line in std::str::from_utf8(b).unwrap().split("\r\n") {
        if line.is_empty() {
            break;
        }
        let (n, v) = line.split_once(':').expect("a trailer field");
        trailers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    (data, trailers)
}

#[tokio::test]
async fn an_http1_client_and_an_h2c_upstream_exchange_trailers_in_chunked_bodies() {
    let seen = Arc::default();
    let up = trailer_upstream(Arc::clone(&seen)).await;
    let gw = Gateway::with_config(gateway_config(
        1,
        &format!(
            "{}{}",
            upstream("up", "h2c", &[up.addr], "", ""),
            route("/", "up", "")
        ),
    ))
    .start();
    // A chunked upload with a trailer, from a client that accepts
    // trailers in its answer.
    let text = raw(
        gw.addr(),
        b"POST /t HTTP/1.1\r\nHost: t\r\nTE: trailers\r\nConnection: TE, close\r\nTransfer-Encoding: chunked\r\nTrailer: x-req-sum\r\n\r\n5\r\nhello\r\n0\r\nx-req-sum: def\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(raw_status(&text), Some(200), "{text}\n{}", warnings(&gw));
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "trailers need a chunked answer: {head}"
    );
    let (data, trailers) = dechunk(body.as_bytes());
    assert_eq!(data, b"trailers ok");
    assert!(
        trailers.contains(&("x-checksum".into(), "c0ffee".into())),
        "trailers in the chunked answer: {trailers:?}\n{text}"
    );
    let seen = seen.lock().unwrap()[0].clone();
    assert_eq!(seen.body, b"hello");
    assert_eq!(
        seen.te.as_deref(),
        Some("trailers"),
        "TE: trailers did not reach the h2 upstream: {seen:?}"
    );
    assert_eq!(
        seen.trailers
            .as_ref()
            .and_then(|t| t.get("x-req-sum"))
            .map(|v| v.as_bytes()),
        Some(&b"def"[..]),
        "the chunked upload's trailer at the upstream: {seen:?}"
    );
}

#[tokio::test]
async fn an_http1_upstreams_trailers_reach_an_h2c_client() {
    // A hyper HTTP/1.1 server sends trailers (declared in `Trailer`) only
    // to a request that said `TE: trailers`: what it saw is recorded.
    let te_seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let t_seen = te_seen.clone();
    let up = h2s::h1_upstream(handler(move |req: Request<Incoming>| {
        let t_seen = t_seen.clone();
        async move {
            t_seen.lock().unwrap().push(
                req.headers()
                    .get("te")
                    .map(|v| v.to_str().unwrap_or("?").to_owned()),
            );
            let mut t = HeaderMap::new();
            t.insert("x-checksum", "beef".parse().unwrap());
            Response::builder()
                .header("trailer", "x-checksum")
                .body(body_with_trailers("from h1", t))
                .unwrap()
        }
    }))
    .await;
    let gw = Gateway::with_config(gateway_config(
        1,
        &format!(
            "{}{}",
            upstream("up", "http1", &[up.addr], "", ""),
            route("/", "up", "")
        ),
    ))
    .start();
    let req = Request::get(gw.url("/t"))
        .header("te", "trailers")
        .body(full(""))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(30), h2c_stream_client().request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", warnings(&gw));
    let body = read_body(resp.into_body()).await;
    assert_eq!(body.head, b"from h1");
    assert_eq!(
        body.trailers
            .as_ref()
            .and_then(|t| t.get("x-checksum"))
            .map(|v| v.as_bytes()),
        Some(&b"beef"[..]),
        "trailers at the h2c client: {:?}; the HTTP/1.1 upstream saw TE {:?}",
        body.trailers,
        te_seen.lock().unwrap()
    );
}

// ---------------------------------------------------------------------
// 4. HTTP/1.1 clients against an h2c upstream.

/// 50 MiB each way.
const LARGE: usize = 50 * 1024 * 1024;

/// An h2c upstream: `/download` streams [`LARGE`] bytes of the pattern
/// body; anything else is answered with JSON describing the request as
/// it arrived (version, method, authority, host header, body length and
/// sha256).
async fn describing_upstream() -> TcpServer {
    h2s::h2c_upstream(handler(|req: Request<Incoming>| async move {
        if req.uri().path() == "/download" {
            return Response::builder()
                .header("content-length", LARGE.to_string())
                .body(pattern_body(LARGE))
                .unwrap();
        }
        let version = format!("{:?}", req.version());
        let method = req.method().to_string();
        let authority = req
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let host: Vec<String> = req
            .headers()
            .get_all("host")
            .iter()
            .map(|v| v.to_str().unwrap_or("?").to_owned())
            .collect();
        let body = read_body(req.into_body()).await;
        let json = serde_json::json!({
            "version": version,
            "method": method,
            "authority": authority,
            "host": host,
            "body_bytes": body.len,
            "sha256": body.sha256,
            "complete": body.error.is_none(),
        });
        Response::new(full(json.to_string()))
    }))
    .await
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    h2s::hex(&sha2::Sha256::digest(b))
}

/// Sends `req` with `c` and returns the upstream's description of it.
async fn described(
    c: &h2s::StreamClient,
    req: Request<crate::support::upstream::UpBody>,
    gw: &Gateway,
) -> serde_json::Value {
    let (status, body) = try_send(c, req).await.unwrap();
    assert_eq!(
        status,
        200,
        "{}\n{}",
        String::from_utf8_lossy(&body),
        warnings(gw)
    );
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn http1_requests_of_every_framing_are_translated_to_an_h2c_upstream() {
    let up = describing_upstream().await;
    let gw = Gateway::with_config(gateway_config(
        1,
        &format!(
            "{}[[route]]\nupstream = \"up\"\nhosts = [\"api.test\"]\nmax_body_bytes = \"100MiB\"\n",
            upstream("up", "h2c", &[up.addr], "", "")
        ),
    ))
    .start();
    let c = h1_stream_client();

    // GET: the route's host arrives as `:authority`, and no other host.
    let j = described(
        &c,
        Request::get(gw.url("/echo?q=1"))
            .header("host", "api.test")
            .body(full(""))
            .unwrap(),
        &gw,
    )
    .await;
    assert_eq!(j["version"], "HTTP/2.0", "{j}");
    assert_eq!(j["method"], "GET");
    assert_eq!(j["authority"], "api.test", "{j}");
    let hosts = j["host"].as_array().unwrap();
    assert!(
        hosts.is_empty() || hosts == &vec![serde_json::json!("api.test")],
        "a Host beside :authority that differs: {j}"
    );
    assert_eq!(j["body_bytes"], 0);

    // POST with Content-Length.
    let j = described(
        &c,
        Request::post(gw.url("/echo"))
            .header("host", "api.test")
            .body(full("hello"))
            .unwrap(),
        &gw,
    )
    .await;
    assert_eq!(j["method"], "POST");
    assert_eq!(j["body_bytes"], 5, "{j}");
    assert_eq!(j["sha256"], sha256_hex(b"hello"));

    // A chunked upload (no length known), then a large one.
    for len in [100 * 1024 + 7, LARGE] {
        let (sha, n) = pattern_digest(len);
        let j = described(
            &c,
            Request::put(gw.url("/echo"))
                .header("host", "api.test")
                .body(pattern_body(len))
                .unwrap(),
            &gw,
        )
        .await;
        assert_eq!(j["body_bytes"], n, "{len}: {j}");
        assert_eq!(j["sha256"], sha, "{len}: {j}");
        assert_eq!(j["complete"], true, "{len}: {j}");
    }

    // A large answer, streamed to the HTTP/1.1 client intact.
    let resp = tokio::time::timeout(
        Duration::from_secs(30),
        c.request(
            Request::get(gw.url("/download"))
                .header("host", "api.test")
                .body(full(""))
                .unwrap(),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(resp.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(120), read_body(resp.into_body()))
        .await
        .expect("the 50 MiB answer within 2 minutes");
    let (sha, n) = pattern_digest(LARGE);
    assert_eq!(body.error, None);
    assert_eq!(body.len, n);
    assert_eq!(body.sha256, sha);
}

// ---------------------------------------------------------------------
// 5. `h2` and `auto` over TLS.

#[tokio::test]
async fn tls_upstreams_speak_http2_when_alpn_picks_h2_and_auto_falls_back() {
    let ca = Ca::new("Upstream CA");
    let cert = ca.server(&["api.test"], false);
    let both = TlsUpstream::start(&cert, &[b"h2", b"http/1.1"]).await;
    let h1_only = TlsUpstream::start(&cert, &[b"http/1.1"]).await;
    let no_alpn = TlsUpstream::start(&cert, &[]).await;
    let tls = "tls = { ca = \"ca.pem\", sni = \"api.test\" }";
    let mut rest = String::new();
    for (name, protocol, addr) in [
        ("h2-both", "h2", both.server.addr),
        ("auto-both", "auto", both.server.addr),
        ("auto-h1", "auto", h1_only.server.addr),
        ("auto-none", "auto", no_alpn.server.addr),
    ] {
        rest.push_str(&upstream(name, protocol, &[addr], tls, ""));
        rest.push_str(&route(&format!("/{name}"), name, ""));
    }
    let gw = Gateway::with_config(gateway_config(1, &rest))
        .file("ca.pem", ca.pem())
        .start();
    let c = client();
    for (path, version) in [
        ("/h2-both", "HTTP/2.0"),
        ("/auto-both", "HTTP/2.0"),
        ("/auto-h1", "HTTP/1.1"),
        ("/auto-none", "HTTP/1.1"),
    ] {
        for _ in 0..2 {
            let r = get(&c, &gw.url(path), &[]).await;
            assert_eq!(r.status, 200, "{path}: {}\n{}", r.text(), warnings(&gw));
            assert_eq!(r.text(), version, "{path}");
        }
    }
    assert_eq!(
        both.versions.lock().unwrap().as_slice(),
        &[http::Version::HTTP_2; 4]
    );
    assert!(both.server.accepted() <= 2, "connections were not pooled");
}

#[tokio::test]
async fn protocol_h2_against_an_upstream_without_h2_alpn_is_a_502_that_says_why() {
    let ca = Ca::new("Upstream CA");
    let cert = ca.server(&["api.test"], false);
    let h1_only = TlsUpstream::start(&cert, &[b"http/1.1"]).await;
    let no_alpn = TlsUpstream::start(&cert, &[]).await;
    for (what, up) in [
        ("offers only http/1.1", &h1_only),
        ("offers no ALPN", &no_alpn),
    ] {
        let gw = Gateway::with_config(gateway_config(
            1,
            &format!(
                "{}{}",
                upstream(
                    "up",
                    "h2",
                    &[up.server.addr],
                    "tls = { ca = \"ca.pem\", sni = \"api.test\" }",
                    ""
                ),
                route("/", "up", "")
            ),
        ))
        .file("ca.pem", ca.pem())
        .start();
        let r = get(&client(), &gw.url("/"), &[]).await;
        assert_eq!(r.status, 502, "{what}: {}", r.text());
        assert!(
            up.versions.lock().unwrap().is_empty(),
            "{what}: a request reached it"
        );
        let said = eventually(Duration::from_secs(5), || async {
            gw.logs().iter().any(|l| {
                let l = l.to_ascii_lowercase();
                (l.contains("warn") || l.contains("error"))
                    && (l.contains("alpn")
                        || l.contains("application protocol")
                        || l.contains("applicationprotocol")
                        || l.contains("application_protocol"))
            })
        })
        .await;
        assert!(said, "{what}: no log line names ALPN\n{}", warnings(&gw));
    }
}

// ---------------------------------------------------------------------
// 6. Broken upstreams.

/// A raw connection that answers each request with a HEADERS frame on
/// stream 0, a connection error (RFC 9113 section 6.2).
async fn headers_on_stream_zero(stream: tokio::net::TcpStream) {
    let Ok(mut conn) = RawH2::accept(stream, &[]).await else {
        return;
    };
    let w = conn.writer();
    while let Ok(Some(f)) = conn.next().await {
        if f.kind == h2s::HEADERS {
            let _ = w
                .frame(h2s::HEADERS, h2s::END_HEADERS | h2s::END_STREAM, 0, &[0x88])
                .await;
        }
    }
}

/// A "server" that reads the HTTP/2 preface and answers in HTTP/1.1, as
/// a server that does not speak h2c would: no SETTINGS, bytes that do
/// not parse as frames.
async fn http1_garbage(stream: tokio::net::TcpStream) {
    let Ok(mut conn) = RawH2::accept_silent(stream).await else {
        return;
    };
    let w = conn.writer();
    while let Ok(Some(f)) = conn.next().await {
        if f.kind == h2s::HEADERS {
            let _ = w
                .bytes(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\n\r\nBad Request")
                .await;
        }
    }
}

/// A raw connection that answers each request with a header block of
/// about 24 KiB (48 fields of 500 bytes), in HEADERS and CONTINUATION
/// frames, then a body.
async fn oversized_headers(stream: tokio::net::TcpStream) {
    let Ok(mut conn) = RawH2::accept(stream, &[]).await else {
        return;
    };
    let w = conn.writer();
    let mut block = vec![0x88];
    for i in 0..48 {
        h2s::hpack_literal(&mut block, &format!("x-big-{i:02}"), &[b'a'; 500]);
    }
    while let Ok(Some(f)) = conn.next().await {
        if f.kind == h2s::HEADERS {
            let _ = w.header_block(f.stream, &block, false).await;
            let _ = w.data(f.stream, b"big", true).await;
        }
    }
}

/// A raw connection that resets every stream it is sent.
async fn resets_every_stream(stream: tokio::net::TcpStream, resets: Arc<AtomicUsize>) {
    let Ok(mut conn) = RawH2::accept(stream, &[]).await else {
        return;
    };
    let w = conn.writer();
    while let Ok(Some(f)) = conn.next().await {
        if f.kind == h2s::HEADERS && w.rst(f.stream, h2s::INTERNAL_ERROR).await.is_ok() {
            resets.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The reason a warning or error log line gives for a request whose id
/// starts with `id_prefix` (with its opening quote: ids are logged
/// quoted): every field but the id, the time and the target, lowercased.
/// The id is left out because it names the breakage it tests.
fn failure_reason(line: &str, id_prefix: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let level = v["level"].as_str()?;
    if level != "WARN" && level != "ERROR" {
        return None;
    }
    if !v["request_id"].as_str()?.starts_with(id_prefix) {
        return None;
    }
    let mut reason = String::new();
    for (k, v) in v.as_object()? {
        if !matches!(k.as_str(), "request_id" | "timestamp" | "target" | "level") {
            reason.push_str(&v.to_string().to_ascii_lowercase());
            reason.push(' ');
        }
    }
    Some(reason)
}

/// A gRPC call (an empty message) with the h2c client: the HTTP status
/// and `grpc-status`, from the headers (trailers-only) or the trailers.
async fn grpc_status(url: &str, id: &str) -> (u16, Option<String>) {
    let req = Request::post(url)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-request-id", id)
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(30), h2c_client().request(req))
        .await
        .expect("gRPC call timed out")
        .expect("gRPC call failed");
    let status = resp.status().as_u16();
    let head = resp.headers().get("grpc-status").cloned();
    let body = resp.into_body().collect().await.expect("gRPC body");
    let trailer = body.trailers().and_then(|t| t.get("grpc-status")).cloned();
    let grpc = head
        .or(trailer)
        .map(|v| v.to_str().unwrap_or("?").to_owned());
    (status, grpc)
}

#[tokio::test]
async fn broken_h2_upstreams_cost_only_their_own_requests() {
    let resets = Arc::new(AtomicUsize::new(0));
    let rs = resets.clone();
    let stream0 = TcpServer::start(|_, s| headers_on_stream_zero(s)).await;
    let garbage = TcpServer::start(|_, s| http1_garbage(s)).await;
    let big = TcpServer::start(|_, s| oversized_headers(s)).await;
    let storm = TcpServer::start(move |_, s| resets_every_stream(s, rs.clone())).await;
    let healthy = h2s::h2c_upstream(handler(|req: Request<Incoming>| async move {
        let _ = req.into_body().collect().await;
        Response::new(full("fine"))
    }))
    .await;
    let mut rest = String::new();
    for (name, addr, http2) in [
        ("stream0", stream0.addr, ""),
        ("garbage", garbage.addr, ""),
        ("bigheaders", big.addr, "max_header_list_size = \"16KiB\""),
        ("resets", storm.addr, ""),
        ("healthy", healthy.addr, ""),
    ] {
        rest.push_str(&upstream(name, "h2c", &[addr], NO_OUTLIER, http2));
        rest.push_str(&route(&format!("/{name}"), name, ""));
    }
    // One worker: the broken upstreams and the healthy one share its
    // event loop and its pools.
    let mut gw = Gateway::with_config(gateway_config(1, &rest)).start();
    let load = Load::start(&gw.url("/healthy/x"), 4);

    let c = client();
    for kind in ["stream0", "garbage", "bigheaders"] {
        for i in 0..5 {
            let id = format!("{kind}-{i}");
            let r = get(&c, &gw.url(&format!("/{kind}/x")), &[("x-request-id", &id)]).await;
            assert_eq!(r.status, 502, "{id}: {}\n{}", r.text(), warnings(&gw));
        }
        let (status, grpc) = grpc_status(
            &gw.url(&format!("/{kind}/pkg.Svc/Call")),
            &format!("{kind}-grpc"),
        )
        .await;
        assert_eq!(
            (status, grpc.as_deref()),
            (200, Some("14")),
            "{kind}: a gRPC call to a broken upstream"
        );
    }
    // The reset storm: 200 requests from 10 clients at once, every stream
    // reset by the upstream.
    let mut storm_tasks = JoinSet::new();
    for t in 0..10 {
        let url = gw.url("/resets/x");
        storm_tasks.spawn(async move {
            let c = client();
            let mut statuses = Vec::new();
            for i in 0..20 {
                let id = format!("resets-{t}-{i}");
                let req = Request::get(&url)
                    .header("x-request-id", &id)
                    .body(Full::default())
                    .unwrap();
                statuses.push((id, try_send(&c, req).await.map(|(s, _)| s)));
            }
            statuses
        });
    }
    while let Some(j) = storm_tasks.join_next().await {
        for (id, r) in j.unwrap() {
            assert_eq!(r, Ok(502), "{id}\n{}", warnings(&gw));
        }
    }
    let (status, grpc) = grpc_status(&gw.url("/resets/pkg.Svc/Call"), "resets-grpc").await;
    assert_eq!((status, grpc.as_deref()), (200, Some("14")), "resets: gRPC");
    assert!(
        resets.load(Ordering::SeqCst) >= 200,
        "only {} streams reset",
        resets.load(Ordering::SeqCst)
    );

    // Meanwhile the healthy upstream on the same worker failed nothing.
    load.finish_without_failures(&gw, 20).await;

    // The log says why, for each kind of breakage.
    for (kind, words) in [
        ("stream0", &["protocol"][..]),
        (
            "garbage",
            &["frame", "protocol", "size", "preface", "http/1"][..],
        ),
        // h2 ends such a stream with a PROTOCOL_ERROR of its own: the
        // gateway has to say that the header block was too large.
        (
            "bigheaders",
            &["header", "max_header_list_size", "too large"][..],
        ),
        ("resets", &["reset", "internal"][..]),
    ] {
        let said = eventually(Duration::from_secs(5), || async {
            gw.logs()
                .iter()
                .filter_map(|l| failure_reason(l, &format!("\"{kind}-")))
                .any(|reason| words.iter().any(|w| reason.contains(w)))
        })
        .await;
        assert!(
            said,
            "{kind}: no warning for its requests names any of {words:?}\n{}",
            warnings(&gw)
        );
    }
    assert!(gw.alive(), "the gateway died");
    // And still serves.
    let r = get(&client(), &gw.url("/healthy/after"), &[]).await;
    assert_eq!(r.status, 200);
}

// ---------------------------------------------------------------------
// 7. PING keep-alive.

/// What the connection that goes silent saw.
#[derive(Default)]
struct Silent {
    /// When it answered its first request and stopped answering PINGs.
    served: Option<Instant>,
    /// When the gateway closed it.
    closed: Option<Instant>,
    /// PINGs it left unanswered.
    unanswered: usize,
}

/// A raw connection that answers requests, and after the first one
/// stops acknowledging PINGs (only on the first connection: later ones
/// stay polite).
async fn stops_answering_pings(
    stream: tokio::net::TcpStream,
    first: bool,
    out: Arc<Mutex<Silent>>,
) {
    let Ok(mut conn) = RawH2::accept(stream, &[]).await else {
        return;
    };
    let w = conn.writer();
    loop {
        match conn.next().await {
            Ok(Some(f)) if f.kind == h2s::HEADERS => {
                let _ = w.answer(f.stream, b"ok").await;
                if first && conn.answer_pings {
                    conn.answer_pings = false;
                    out.lock().unwrap().served = Some(Instant::now());
                }
            }
            Ok(Some(f)) if f.kind == h2s::PING && f.flags & h2s::ACK == 0 => {
                if !conn.answer_pings {
                    out.lock().unwrap().unanswered += 1;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    if first {
        out.lock().unwrap().closed = Some(Instant::now());
    }
}

/// The `[upstream.http2]` keep-alive of the PING tests.
const FAST_PINGS: &str = "keepalive_interval = \"200ms\"\nkeepalive_timeout = \"200ms\"";

#[tokio::test]
async fn an_upstream_connection_that_stops_answering_pings_is_dropped() {
    let silent: Arc<Mutex<Silent>> = Arc::default();
    let s = silent.clone();
    let up =
        TcpServer::start(move |index, stream| stops_answering_pings(stream, index == 0, s.clone()))
            .await;
    let gw = Gateway::with_config(gateway_config(
        1,
        &format!(
            "{}{}",
            upstream("up", "h2c", &[up.addr], "", FAST_PINGS),
            route("/", "up", "")
        ),
    ))
    .start();
    let c = client();
    assert_eq!(get(&c, &gw.url("/first"), &[]).await.status, 200);
    let closed = eventually(Duration::from_secs(10), || async {
        silent.lock().unwrap().closed.is_some()
    })
    .await;
    let (served, dropped, unanswered) = {
        let s = silent.lock().unwrap();
        (s.served, s.closed, s.unanswered)
    };
    assert!(
        closed,
        "the silent connection is still open 10 s on ({unanswered} PINGs unanswered)\n{}",
        warnings(&gw)
    );
    let after = dropped.unwrap() - served.unwrap();
    // 200 ms to the first PING and 200 ms without its answer; the rest is
    // slack for a busy machine.
    assert!(
        after <= Duration::from_secs(3),
        "dropped {after:?} after it went silent"
    );
    assert!(unanswered >= 1, "no PING was sent");
    // The next request opens a new connection and is served.
    assert_eq!(get(&c, &gw.url("/second"), &[]).await.status, 200);
    assert_eq!(up.accepted(), 2);
}

#[tokio::test]
async fn an_idle_upstream_connection_that_answers_pings_is_kept() {
    let up = h2s::h2c_upstream(handler(|req: Request<Incoming>| async move {
        let _ = req.into_body().collect().await;
        Response::new(full("ok"))
    }))
    .await;
    let gw = Gateway::with_config(gateway_config(
        1,
        &format!(
            "{}{}",
            upstream("up", "h2c", &[up.addr], "", FAST_PINGS),
            route("/", "up", "")
        ),
    ))
    .start();
    let c = client();
    for i in 0..4 {
        if i > 0 {
            // Two and a half keep-alive intervals idle.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let r = get(&c, &gw.url("/idle"), &[]).await;
        assert_eq!(r.status, 200, "{}", warnings(&gw));
    }
    assert_eq!(
        up.accepted(),
        1,
        "the idle connection was not kept across PING intervals\n{}",
        warnings(&gw)
    );
}

// ---------------------------------------------------------------------
// 8. Configuration errors.

/// `weir check` on a configuration with this one upstream (and a route
/// to it).
fn check_upstream(block: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.toml");
    std::fs::write(
        &path,
        format!(
            "[[listener]]\naddress = \"127.0.0.1:0\"\n\n[[upstream]]\nname = \"up\"\nendpoints = [\"127.0.0.1:9000\"]\n{block}\n\n[[route]]\nupstream = \"up\"\n"
        ),
    )
    .unwrap();
    weir_check(&path)
}

#[test]
fn check_refuses_bad_http2_upstream_settings() {
    // What is valid passes: the refusals below are about their values.
    for ok in [
        "protocol = \"h2c\"\n[upstream.http2]\nmax_connections_per_endpoint = 4\nmax_concurrent_streams = 1000\ninitial_stream_window = \"1MiB\"\ninitial_connection_window = \"4MiB\"\nmax_header_list_size = \"64KiB\"\nkeepalive_interval = \"30s\"\nkeepalive_timeout = \"10s\"",
        "protocol = \"h2\"\ntls = true",
        "protocol = \"auto\"\ntls = true",
        "protocol = \"http1\"",
        "protocol = \"h2c\"\nhealth_check = { path = \"/health\" }\n[upstream.http2]\nkeepalive_interval = \"0s\"",
    ] {
        let (passed, err) = check_upstream(ok);
        assert!(passed, "refused:\n{ok}\n{err}");
    }
    for (bad, words) in [
        // h2 is negotiated by ALPN: it needs TLS; h2c is the plain one.
        ("protocol = \"h2\"", &["protocol", "h2c"][..]),
        ("protocol = \"h3\"", &["protocol", "h3"][..]),
        (
            "protocol = \"http1\"\n[upstream.http2]\nmax_concurrent_streams = 10",
            &["http2"][..],
        ),
        (
            "[upstream.http2]\nmax_concurrent_streams = 10",
            &["http2"][..],
        ),
        (
            "protocol = \"h2c\"\n[upstream.http2]\ninitial_stream_window = \"4GiB\"",
            &["initial_stream_window"][..],
        ),
        (
            "protocol = \"h2c\"\n[upstream.http2]\ninitial_connection_window = \"8GiB\"",
            &["initial_connection_window"][..],
        ),
    ] {
        let (passed, err) = check_upstream(bad);
        assert!(!passed, "accepted:\n{bad}\n{err}");
        let problem = err
            .lines()
            .find(|l| l.contains("upstream"))
            .unwrap_or_default();
        for w in words {
            assert!(
                problem.contains(w),
                "{bad}: the problem does not name `{w}`: {err}"
            );
        }
        assert!(
            !err.contains("unknown field"),
            "{bad}: refused as an unknown key: {err}"
        );
    }
    let (_, err) = check_upstream("protocol = \"h2\"");
    assert!(
        err.contains("TLS") || err.contains("tls"),
        "h2 without TLS: {err}"
    );
}
