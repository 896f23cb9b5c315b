//! What an edge proxy must not pass on changed: upgrade offers a route
//! does not allow (h2c smuggling), header names that read as framing
//! headers, transfer-coding lists, bodies on GET and HEAD, and
//! `Expect: 100-continue`. Each case sends the attack's exact bytes and
//! asserts the exact bytes the upstream received (a raw recording
//! upstream), or that it received nothing: a request sent after the
//! refused ones is then the first thing the upstream saw.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::support::raw::RawConn;
use crate::support::recording::{Recording, Switch};
use crate::support::*;

/// A gateway with two listeners, `main` (header names with `_` dropped,
/// the default) and `keep` (`underscores_in_headers = true`), in front of
/// one recording upstream: `/plain` allows no upgrade, every other path
/// the default (WebSocket). One worker and no retries, so the upstream
/// sees each request once, in order.
fn gateway(rec: &Recording) -> Gateway {
    Gateway::with_config(format!(
        r#"
[server]
workers = 1

[[listener]]
name = "main"
address = "127.0.0.1:0"
header_read_timeout = "1s"

[[listener]]
name = "keep"
address = "127.0.0.1:0"
underscores_in_headers = true

[[upstream]]
name = "rec"
endpoints = ["{}"]
connect_timeout = "1s"
retry = {{ attempts = 0 }}

[[route]]
name = "no-upgrades"
upstream = "rec"
path_prefix = "/plain"
upgrades = []

[[route]]
name = "default"
upstream = "rec"
"#,
        rec.addr
    ))
    .start()
}

/// The headers Weir adds after the client's own (those it keeps, in the
/// client's order) to an HTTP/1.1 request from 127.0.0.1 for host `x`.
const WEIRS: &str = "x-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\nx-forwarded-host: x\r\nvia: 1.1 weir\r\n";

/// The same for an HTTP/2 request to `host`.
fn weirs_h2(host: &str) -> String {
    format!(
        "x-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\nx-forwarded-host: {host}\r\nvia: 2 weir\r\n"
    )
}

/// A plain GET with a known request id, sent after the cases under test:
/// when the upstream's bytes start with it, nothing came before.
const MARK: &[u8] =
    b"GET /mark HTTP/1.1\r\nHost: x\r\nX-Request-Id: mark\r\nConnection: close\r\n\r\n";

fn mark_bytes() -> String {
    format!("GET /mark HTTP/1.1\r\nhost: x\r\nx-request-id: mark\r\n{WEIRS}\r\n")
}

/// Sends a request that must be refused with 400 on a fresh connection:
/// the answer comes and the gateway closes the connection.
async fn refused(addr: std::net::SocketAddr, what: &str, bytes: &[u8]) {
    let mut c = RawConn::open(addr).await;
    c.send(bytes).await;
    let r = c.response().await;
    assert_eq!(r.status, 400, "{what}: {r:?}");
    let (closed, rest) = c.closed().await;
    assert!(closed, "{what}: connection left open");
    assert!(
        rest.is_empty(),
        "{what}: more after the 400: {:?}",
        rest.escape_ascii().to_string()
    );
}

async fn mark(addr: std::net::SocketAddr) {
    let mut c = RawConn::open(addr).await;
    c.send(MARK).await;
    assert_eq!(c.response().await.status, 200);
}

#[tokio::test]
async fn an_h2c_upgrade_is_forwarded_as_a_plain_request() {
    // The upstream switches whenever it is asked to, as one that speaks
    // h2c would: only a request that reaches it with `Upgrade` can open
    // the tunnel.
    let rec = Recording::start(Switch::WhenAsked).await;
    let gw = gateway(&rec);
    let mut c = RawConn::open(gw.listener("main")).await;
    c.send(b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\nRAW-BYTES-AFTER-101\r\n")
        .await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, b"ok");
    let id = r.header("x-request-id").unwrap().to_owned();
    // The bytes after the request are read as the next request, which is
    // no request: 400, and the connection closes.
    assert_eq!(c.response().await.status, 400);
    assert!(c.closed().await.0, "connection left open");

    mark(gw.listener("main")).await;
    // Weir made the request id: it comes after the rest.
    let up = format!("GET /up HTTP/1.1\r\nhost: x\r\n{WEIRS}x-request-id: {id}\r\n\r\n");
    rec.expect(format!("{up}{}", mark_bytes()).as_bytes()).await;
}

#[tokio::test]
async fn only_the_upgrades_a_route_allows_are_tunnelled() {
    let rec = Recording::start(Switch::WhenAsked).await;
    let gw = gateway(&rec);
    let addr = gw.listener("main");

    // WebSocket is allowed by default; an h2c offer beside it is dropped.
    let mut c = RawConn::open(addr).await;
    c.send(b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c, websocket\r\nX-Request-Id: ws\r\n\r\n")
        .await;
    let r = c.response().await;
    assert_eq!(r.status, 101, "{r:?}");
    assert_eq!(r.header("upgrade"), Some("websocket"));
    c.send(b"THROUGH-THE-TUNNEL").await;
    let ws = format!(
        "GET /chat HTTP/1.1\r\nhost: x\r\nx-request-id: ws\r\n{WEIRS}upgrade: websocket\r\nconnection: upgrade\r\n\r\nTHROUGH-THE-TUNNEL"
    );
    rec.expect(ws.as_bytes()).await;
    drop(c);

    // A route that allows none forwards the same offer as a plain request.
    let mut c = RawConn::open(addr).await;
    c.send(b"GET /plain HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX-Request-Id: plain\r\n\r\nNOT-TUNNELLED\r\n\r\n")
        .await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(c.response().await.status, 400);
    mark(addr).await;
    let plain = format!("GET /plain HTTP/1.1\r\nhost: x\r\nx-request-id: plain\r\n{WEIRS}\r\n");
    rec.expect(format!("{ws}{plain}{}", mark_bytes()).as_bytes())
        .await;
}

#[tokio::test]
async fn an_upstream_that_switches_to_a_protocol_not_offered_gets_no_tunnel() {
    let rec = Recording::start(Switch::Always("h2c")).await;
    let gw = gateway(&rec);
    let addr = gw.listener("main");
    let mut want = String::new();
    for (what, offer, forwarded) in [
        (
            "websocket offered",
            "Connection: Upgrade\r\nUpgrade: websocket\r\n",
            "upgrade: websocket\r\nconnection: upgrade\r\n",
        ),
        ("nothing offered", "", ""),
    ] {
        let mut c = RawConn::open(addr).await;
        let req = format!("GET /chat HTTP/1.1\r\nHost: x\r\n{offer}X-Request-Id: s\r\n\r\n");
        c.send(req.as_bytes()).await;
        let r = c.response().await;
        assert_eq!(r.status, 502, "{what}: {r:?}");
        // What follows is read by Weir as the next request, not tunnelled.
        c.send(b"NOT-TUNNELLED\r\n\r\n").await;
        assert_eq!(c.response().await.status, 400, "{what}");
        want +=
            &format!("GET /chat HTTP/1.1\r\nhost: x\r\nx-request-id: s\r\n{WEIRS}{forwarded}\r\n");
        rec.expect(want.as_bytes()).await;
    }
    // The log line is read off the gateway's output, which may come a
    // little after the answer.
    assert!(
        eventually(Duration::from_secs(5), || async {
            gw.logs().iter().any(|l| l.contains("switched protocols"))
        })
        .await
    );
}

#[tokio::test]
async fn header_names_that_read_as_framing_headers_are_refused_and_underscores_dropped() {
    let rec = Recording::start(Switch::Never).await;
    let gw = gateway(&rec);
    for listener in ["main", "keep"] {
        let addr = gw.listener(listener);
        for name in [
            "Transfer_Encoding",
            "Transfer---Encoding",
            "Transfer___Encoding",
        ] {
            let req = format!("POST /foo/bar HTTP/1.1\r\nHost: x\r\n{name}: chunked\r\n\r\n");
            refused(addr, &format!("{listener}: {name}"), req.as_bytes()).await;
        }
        refused(
            addr,
            &format!("{listener}: Content_Length"),
            b"POST /foo/bar HTTP/1.1\r\nHost: x\r\nContent_Length: 5\r\n\r\nhello",
        )
        .await;
    }
    mark(gw.listener("main")).await;
    rec.expect(mark_bytes().as_bytes()).await;

    // Other names with `_` are dropped by default, kept when the listener
    // says so.
    let mut sent = mark_bytes();
    for (listener, id, kept) in [("main", "u1", ""), ("keep", "u2", "x_custom: 1\r\n")] {
        let mut c = RawConn::open(gw.listener(listener)).await;
        let req =
            format!("GET /u HTTP/1.1\r\nHost: x\r\nX_Custom: 1\r\nX-Request-Id: {id}\r\n\r\n");
        c.send(req.as_bytes()).await;
        assert_eq!(c.response().await.status, 200);
        sent.push_str(&format!(
            "GET /u HTTP/1.1\r\nhost: x\r\n{kept}x-request-id: {id}\r\n{WEIRS}\r\n"
        ));
        rec.expect(sent.as_bytes()).await;
    }
}

#[tokio::test]
async fn transfer_coding_lists_are_refused() {
    let rec = Recording::start(Switch::Never).await;
    let gw = gateway(&rec);
    let addr = gw.listener("main");
    for (what, req) in [
        (
            "gzip, chunked",
            &b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"[..],
        ),
        (
            "chunked, chunked",
            b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "two chunked lines",
            b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
    ] {
        refused(addr, what, req).await;
    }
    mark(addr).await;
    rec.expect(mark_bytes().as_bytes()).await;

    // One `chunked` (any case) is forwarded, chunked, as sent.
    let mut c = RawConn::open(addr).await;
    c.send(b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\nX-Request-Id: p\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        .await;
    assert_eq!(c.response().await.status, 200);
    let post = format!(
        "POST /p HTTP/1.1\r\nhost: x\r\nx-request-id: p\r\n{WEIRS}transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    );
    rec.expect(format!("{}{post}", mark_bytes()).as_bytes())
        .await;
}

#[tokio::test]
async fn get_and_head_bodies_are_forwarded_as_sent() {
    let rec = Recording::start(Switch::Never).await;
    let gw = gateway(&rec);
    let addr = gw.listener("main");
    let mut c = RawConn::open(addr).await;
    let mut want = String::new();

    let chunked = "\r\n5\r\nhello\r\n0\r\n\r\n";
    // (what the client sends, whether it is HEAD, what the upstream gets)
    for (sent, head, forwarded) in [
        (
            format!(
                "GET /g HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nX-Request-Id: g1\r\n{chunked}"
            ),
            false,
            format!(
                "GET /g HTTP/1.1\r\nhost: x\r\nx-request-id: g1\r\n{WEIRS}transfer-encoding: chunked\r\n{chunked}"
            ),
        ),
        (
            format!(
                "HEAD /h HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nX-Request-Id: h1\r\n{chunked}"
            ),
            true,
            format!(
                "HEAD /h HTTP/1.1\r\nhost: x\r\nx-request-id: h1\r\n{WEIRS}transfer-encoding: chunked\r\n{chunked}"
            ),
        ),
        (
            "GET /g HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nX-Request-Id: g2\r\n\r\nhello"
                .to_owned(),
            false,
            format!(
                "GET /g HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nx-request-id: g2\r\n{WEIRS}\r\nhello"
            ),
        ),
    ] {
        c.send(sent.as_bytes()).await;
        let r = if head {
            c.head_response().await
        } else {
            c.response().await
        };
        assert_eq!(r.status, 200, "{sent:?}: {r:?}");
        want += &forwarded;
        rec.expect(want.as_bytes()).await;
    }

    // HTTP/2: DATA frames and no content-length.
    let h2: Client<_, http_body_util::StreamBody<_>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let frames = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(
        hyper::body::Frame::data(Bytes::from_static(b"hello")),
    )]);
    let req = http::Request::get(format!("http://{addr}/g2"))
        .header("x-request-id", "g3")
        .body(http_body_util::StreamBody::new(frames))
        .unwrap();
    let resp = h2.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
    // HTTP/2 has no `Host` field: Weir's comes last, from `:authority`.
    want += &format!(
        "GET /g2 HTTP/1.1\r\nx-request-id: g3\r\n{}host: {addr}\r\ntransfer-encoding: chunked\r\n{chunked}",
        weirs_h2(&addr.to_string())
    );
    rec.expect(want.as_bytes()).await;
}

#[tokio::test]
async fn expect_100_continue_is_answered_by_weir_and_not_forwarded() {
    let rec = Recording::start(Switch::Never).await;
    let gw = gateway(&rec);
    let addr = gw.listener("main");

    // A request Weir refuses gets its answer without a 100: the client
    // need not send the body at all.
    let mut c = RawConn::open(addr).await;
    c.send(
        b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 20000000\r\nExpect: 100-continue\r\n\r\n",
    )
    .await;
    assert_eq!(c.response().await.status, 413);

    // Otherwise the 100 comes before the body is sent, once; the upstream
    // is not asked for another.
    let mut c = RawConn::open(addr).await;
    c.send(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\nX-Request-Id: e\r\n\r\n")
        .await;
    assert_eq!(c.response().await.status, 100);
    c.send(b"hello").await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "{r:?}");
    rec.expect(
        format!(
            "POST /e HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nx-request-id: e\r\n{WEIRS}\r\nhello"
        )
        .as_bytes(),
    )
    .await;
}

#[tokio::test]
async fn http2_requests_get_the_same_header_screening() {
    let rec = Recording::start(Switch::Never).await;
    let gw = gateway(&rec);
    let h2 = h2c_client();
    let addr = gw.listener("main");
    let url = format!("http://{addr}/h");
    for (name, value) in [("transfer_encoding", "chunked"), ("content_length", "5")] {
        let req = http::Request::get(&url)
            .header(name, value)
            .body(Default::default())
            .unwrap();
        assert_eq!(send(&h2, req).await.status, 400, "{name}");
    }
    let req = http::Request::get(&url)
        .header("x_custom", "1")
        .header("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA")
        .header("x-request-id", "h2")
        .body(Default::default())
        .unwrap();
    assert_eq!(send(&h2, req).await.status, 200);
    let want = format!(
        "GET /h HTTP/1.1\r\nx-request-id: h2\r\n{}host: {addr}\r\n\r\n",
        weirs_h2(&addr.to_string())
    );
    rec.expect(want.as_bytes()).await;
}
