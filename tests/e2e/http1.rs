//! Weir's own HTTP/1.1 connection as clients meet it on the wire:
//! pipelined requests answered in order, HTTP/1.0 clients, chunked bodies
//! with trailers both ways, a head that arrives a byte at a time, a body
//! of unknown length to an HTTP/1.0 client, and a client that closes
//! before its answer. Raw bytes from the client side; real upstreams
//! behind (hyper for requests, a raw one where the response's own bytes
//! matter).

use std::time::Duration;

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::upstream::{Upstream, full};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(5);

fn gateway(upstream: std::net::SocketAddr) -> Gateway {
    Gateway::with_config(config(
        "",
        &[("app", upstream)],
        r#"
[[route]]
name = "app"
upstream = "app"
"#,
    ))
    .start()
}

/// An upstream that answers each request with `METHOD TARGET BODY` and,
/// when the request's body had trailers, their names and values after a
/// `|` (so the test sees what reached it).
async fn describing_upstream() -> Upstream {
    Upstream::start(|req: http::Request<hyper::body::Incoming>| async move {
        let head = format!("{} {}", req.method(), req.uri());
        let collected = req.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned();
        let body = collected.to_bytes();
        let mut text = format!("{head} {}", String::from_utf8_lossy(&body));
        if let Some(t) = trailers {
            for (n, v) in &t {
                text.push_str(&format!("|{n}={}", v.to_str().unwrap()));
            }
        }
        http::Response::new(full(text))
    })
    .await
}

/// Reads from `s` until `done` says the bytes so far are complete or the
/// peer closes; returns them and whether it closed.
async fn read_until(s: &mut TcpStream, done: impl Fn(&[u8]) -> bool) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if done(&got) {
            return (got, false);
        }
        match tokio::time::timeout(WAIT, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
            Err(_) => panic!(
                "nothing more within {WAIT:?} after {:?}",
                got.escape_ascii().to_string()
            ),
        }
    }
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let up = describing_upstream().await;
    let gw = gateway(up.addr);
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    // Three requests in one write: bodiless, a length, chunked; then a
    // fourth split across writes in the middle of its head.
    s.write_all(
        b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n\
          POST /two HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc\
          POST /three HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n1\r\nf\r\n0\r\n\r\n\
          GET /fo",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(b"ur HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let (got, closed) = read_until(&mut s, |b| {
        count(b, b"HTTP/1.1 200") == 4 && b.ends_with(b"/four ")
    })
    .await;
    assert!(!closed, "{}", got.escape_ascii());
    let text = String::from_utf8_lossy(&got);
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle} missing: {text}"))
    };
    assert!(at("GET /one ") < at("POST /two abc"), "{text}");
    assert!(at("POST /two abc") < at("POST /three def"), "{text}");
    assert!(at("POST /three def") < at("GET /four "), "{text}");
    // The connection is still open for more.
    s.write_all(b"GET /five HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (got, closed) = read_until(&mut s, |_| false).await;
    assert!(closed);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    assert!(text.ends_with("GET /five "), "{text}");
}

#[tokio::test]
async fn http_1_0_clients_get_http_1_0_answers_and_keep_alive_only_when_asked() {
    let up = describing_upstream().await;
    let gw = gateway(up.addr);
    // Without keep-alive: answered, then closed.
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"GET /old HTTP/1.0\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let (got, closed) = read_until(&mut s, |_| false).await;
    let text = String::from_utf8_lossy(&got);
    assert!(closed);
    assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}");
    assert!(text.contains("connection: close\r\n"), "{text}");
    assert!(text.ends_with("GET /old "), "{text}");
    // With it: kept, and the connection serves a second request.
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"GET /a HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n")
        .await
        .unwrap();
    let (got, closed) = read_until(&mut s, |b| b.ends_with(b"GET /a ")).await;
    let text = String::from_utf8_lossy(&got);
    assert!(!closed, "{text}");
    assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}");
    assert!(text.contains("connection: keep-alive\r\n"), "{text}");
    s.write_all(b"GET /b HTTP/1.0\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let (got, closed) = read_until(&mut s, |_| false).await;
    assert!(closed);
    assert!(String::from_utf8_lossy(&got).ends_with("GET /b "));
}

/// A raw upstream: reads one request head (and a chunked body's end when
/// it has one) per connection and writes `answer`.
async fn raw_upstream(answer: &'static [u8]) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let _ = read_until(&mut s, |b| b.windows(4).any(|w| w == b"\r\n\r\n")).await;
                let _ = s.write_all(answer).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_body_of_unknown_length_is_chunked_for_http_1_1_and_ends_by_close_for_http_1_0() {
    let up = raw_upstream(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    let gw = gateway(up);
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let (got, closed) = read_until(&mut s, |b| b.ends_with(b"0\r\n\r\n")).await;
    let text = String::from_utf8_lossy(&got);
    assert!(!closed, "{text}");
    assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
    assert!(
        text.contains("\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
        "{text}"
    );

    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n")
        .await
        .unwrap();
    let (got, closed) = read_until(&mut s, |_| false).await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        closed,
        "an HTTP/1.0 body without a length ends by the close"
    );
    assert!(!text.contains("transfer-encoding"), "{text}");
    assert!(text.contains("connection: close\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nhello world"), "{text}");
}

#[tokio::test]
async fn trailers_of_a_chunked_body_reach_the_other_side_both_ways() {
    // Request trailers, to a hyper upstream that reports them.
    let up = describing_upstream().await;
    let gw = gateway(up.addr);
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(
        b"POST /t HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n\
          3\r\nabc\r\n0\r\nx-sum: 6\r\n\r\n",
    )
    .await
    .unwrap();
    let (got, _) = read_until(&mut s, |b| b.ends_with(b"x-sum=6")).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("POST /t abc|x-sum=6"), "{text}");

    // Response trailers, from a raw upstream, to the client.
    let raw = raw_upstream(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-digest\r\n\r\n2\r\nok\r\n0\r\nx-digest: abc\r\n\r\n",
    )
    .await;
    let gw = gateway(raw);
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nTE: trailers\r\n\r\n")
        .await
        .unwrap();
    let (got, _) = read_until(&mut s, |b| {
        b.ends_with(b"\r\n\r\n") && count(b, b"\r\n\r\n") >= 2
    })
    .await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.ends_with("\r\n\r\n2\r\nok\r\n0\r\nx-digest: abc\r\n\r\n"),
        "{text}"
    );
}

#[tokio::test]
async fn a_head_sent_a_byte_at_a_time_is_read_and_answered() {
    let up = describing_upstream().await;
    let gw = gateway(up.addr);
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.set_nodelay(true).unwrap();
    for b in b"\r\nPUT /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi".iter() {
        s.write_all(&[*b]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (got, _) = read_until(&mut s, |b| b.ends_with(b"PUT /slow hi")).await;
    assert!(got.starts_with(b"HTTP/1.1 200"));
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body_is_read() {
    let up = describing_upstream().await;
    let gw = gateway(up.addr);
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(
        b"PUT /up HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    // Nothing of the body is sent until the interim answer comes.
    let (got, _) = read_until(&mut s, |b| b.ends_with(b"\r\n\r\n")).await;
    assert_eq!(got, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"data").await.unwrap();
    let (got, _) = read_until(&mut s, |b| b.ends_with(b"PUT /up data")).await;
    assert!(got.starts_with(b"HTTP/1.1 200"), "{}", got.escape_ascii());
}

#[tokio::test]
async fn an_upstream_answer_is_never_read_as_the_next_request_and_a_refused_head_closes() {
    // A request whose framing is refused gets its status and the close;
    // the bytes after it never reach the upstream as a request.
    let up = Upstream::echo("e").await;
    let gw = gateway(up.addr);
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(
        b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n\
          POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked;q=1\r\n\r\n\
          0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .await
    .unwrap();
    let (got, closed) = read_until(&mut s, |_| false).await;
    let text = String::from_utf8_lossy(&got);
    assert!(closed, "{text}");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    assert!(!text.contains("smuggled"), "{text}");
    assert_eq!(up.count(), 1, "only the first request went upstream");
}
