//! Trailers both ways: between an h2c client and an h2c upstream,
//! between an HTTP/1.1 client (chunked bodies, `TE: trailers`) and an h2c
//! upstream, and from an HTTP/1.1 upstream to an h2c client.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, Request, Response};
use hyper::body::Incoming;

use super::*;
use crate::support::h2::{
    self as h2s, TcpServer, body_with_trailers, h2c_stream_client, handler, read_body,
};
use crate::support::upstream::full;
use crate::support::*;

/// The value of the trailer field `name` in `trailers`, if there is one.
fn trailer<'a>(trailers: &'a Option<HeaderMap>, name: &str) -> Option<&'a [u8]> {
    trailers
        .as_ref()
        .and_then(|t| t.get(name))
        .map(|v| v.as_bytes())
}

/// A request's `te` field, if it has one.
fn te(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get("te")
        .map(|v| v.to_str().unwrap_or("?").to_owned())
}

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
            let te = te(&req);
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
    let gw = h2c_gateway(up.addr);
    let mut t = HeaderMap::new();
    t.insert("x-req-sum", "abc".parse().unwrap());
    let req = Request::post(gw.url("/t"))
        .header("te", "trailers")
        .body(body_with_trailers("hello", t))
        .unwrap();
    let resp = stream_request(&h2c_stream_client(), req).await;
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
        trailer(&seen.trailers, "x-req-sum"),
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
    let gw = h2c_gateway(up.addr);
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
        trailer(&seen.trailers, "x-req-sum"),
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
            t_seen.lock().unwrap().push(te(&req));
            let mut t = HeaderMap::new();
            t.insert("x-checksum", "beef".parse().unwrap());
            Response::builder()
                .header("trailer", "x-checksum")
                .body(body_with_trailers("from h1", t))
                .unwrap()
        }
    }))
    .await;
    let gw = one_upstream(1, "http1", &[up.addr], "", "").start();
    let req = Request::get(gw.url("/t"))
        .header("te", "trailers")
        .body(full(""))
        .unwrap();
    let resp = stream_request(&h2c_stream_client(), req).await;
    assert_eq!(resp.status(), 200, "{}", warnings(&gw));
    let body = read_body(resp.into_body()).await;
    assert_eq!(body.head, b"from h1");
    assert_eq!(
        trailer(&body.trailers, "x-checksum"),
        Some(&b"beef"[..]),
        "trailers at the h2c client: {:?}; the HTTP/1.1 upstream saw TE {:?}",
        body.trailers,
        te_seen.lock().unwrap()
    );
}
