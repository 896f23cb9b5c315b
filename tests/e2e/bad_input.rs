//! The bad-input table, over raw TCP so nothing sanitises the bytes: each
//! malformed or oversized request gets its 4xx, the connection closes where
//! the rest of the bytes cannot be trusted, and nothing reaches the
//! upstream. Upstream failures map to 502 and 504. A body the client
//! aborts, garbles or stalls mid-upload is 400 or 408, and is not held
//! against the endpoint. The gateway survives all of it.

use std::time::{Duration, Instant};

use http::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::balancing::post;
use crate::support::upstream::{ClosedPort, full};
use crate::support::*;

const LISTENER: &str = r#"max_header_bytes = "8KiB"
max_uri_bytes = "1KiB"
header_read_timeout = "500ms"
"#;

const ROUTES: &str = r#"
[[route]]
upstream = "echo"
path_prefix = "/ok"
max_body_bytes = "1KiB"

[[route]]
upstream = "refused"
path_prefix = "/refused"

[[route]]
upstream = "reset"
path_prefix = "/reset"

[[route]]
upstream = "slow"
path_prefix = "/slow"
timeout = "300ms"
"#;

/// Sends `req` and returns (response text, whether the gateway closed the
/// connection within the wait).
async fn exchange(addr: std::net::SocketAddr, req: &[u8]) -> (String, bool) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req).await.unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out))
        .await
        .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

#[tokio::test]
async fn bad_input_table() {
    let echo = Upstream::echo("echo").await;
    let reset = Upstream::resetting().await;
    let slow = Upstream::start(|_req| async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        Response::new(full("late"))
    })
    .await;
    // Held until the test ends, so nothing else can come to listen there.
    let refused = ClosedPort::new();
    let mut gw = Gateway::with_config(config(
        LISTENER,
        &[
            ("echo", echo.addr),
            ("refused", refused.addr()),
            ("reset", reset.addr),
            ("slow", slow.addr),
        ],
        ROUTES,
    ))
    .start();
    let addr = gw.addr();

    let big_header = format!(
        "GET /ok HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(10_000)
    );
    let long_uri = format!("GET /ok/{} HTTP/1.1\r\nHost: t\r\n\r\n", "u".repeat(2_000));
    // (what, request bytes, expected status, must the connection close?)
    let table: Vec<(&str, Vec<u8>, u16, bool)> = vec![
        (
            "dot-dot segment",
            b"GET /ok/../ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec(),
            400,
            true,
        ),
        (
            "percent-encoded dot-dot segment",
            b"GET /ok/%2E%2e/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec(),
            400,
            true,
        ),
        (
            "dot segment",
            b"GET /ok/./x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec(),
            400,
            true,
        ),
        (
            "malformed request line",
            b"GARBAGE\r\n\r\n".to_vec(),
            400,
            true,
        ),
        (
            "malformed header",
            b"GET /ok HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n".to_vec(),
            400,
            true,
        ),
        (
            "conflicting content-length",
            b"POST /ok HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
                .to_vec(),
            400,
            true,
        ),
        (
            // hyper takes equal values; a next hop reading only one of
            // two fields, or a list, could frame it otherwise.
            "repeated equal content-length",
            b"POST /ok HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"
                .to_vec(),
            400,
            true,
        ),
        (
            "content-length list",
            b"POST /ok HTTP/1.1\r\nHost: t\r\nContent-Length: 2, 2\r\n\r\nok".to_vec(),
            400,
            true,
        ),
        (
            "a header line ended by a bare LF",
            b"GET /ok HTTP/1.1\r\nHost: t\nX-A: 1\r\n\r\n".to_vec(),
            400,
            true,
        ),
        (
            "content-length and transfer-encoding",
            b"POST /ok HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            400,
            true,
        ),
        ("headers over the limit", big_header.into_bytes(), 431, true),
        ("uri over the limit", long_uri.into_bytes(), 414, true),
        (
            "declared body over the route limit",
            // Only 10 of the 2048 announced bytes are sent: the answer must
            // not wait for (or read) the rest.
            b"POST /ok HTTP/1.1\r\nHost: t\r\nContent-Length: 2048\r\n\r\n0123456789".to_vec(),
            413,
            true,
        ),
        (
            "no route",
            b"GET /nowhere HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec(),
            404,
            true,
        ),
    ];
    for (what, req, want, must_close) in table {
        let started = Instant::now();
        let (text, closed) = exchange(addr, &req).await;
        assert_eq!(raw_status(&text), Some(want), "{what}: got {text:?}");
        if must_close {
            assert!(closed, "{what}: connection left open");
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{what}: slow answer"
        );
    }

    // The smuggling pair is caught on a later request of a keep-alive
    // connection too, with the headers in the other order.
    let (text, closed) = exchange(
        addr,
        b"GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\nPOST /ok HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    )
    .await;
    let statuses: Vec<&str> = text.matches("HTTP/1.1 ").map(|_| "").collect();
    assert_eq!(statuses.len(), 2, "{text}");
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
    assert!(
        text.contains("\r\n\r\nHTTP/1.1 400") || text.contains("HTTP/1.1 400 Bad Request"),
        "{text}"
    );
    assert!(closed, "connection left open after a smuggling attempt");

    // A chunked body that grows past the limit is cut off with 413.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /ok HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..3 {
        let _ = s
            .write_all(format!("3e8\r\n{}\r\n", "c".repeat(1000)).as_bytes())
            .await;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert_eq!(raw_status(&text), Some(413), "chunked over limit: {text}");

    // None of the above reached the upstream whole. (The chunked one
    // streams until the limit trips, then the upstream sees it aborted.)
    assert!(
        echo.seen
            .lock()
            .unwrap()
            .iter()
            .all(|r| r.body_bytes <= 1024),
        "an oversized body was forwarded"
    );
    let forwarded = echo.count();
    assert_eq!(
        forwarded,
        0,
        "bad requests were forwarded: {:?}",
        echo.seen.lock().unwrap()
    );

    // Upstream failures.
    let c = client();
    assert_eq!(get(&c, &gw.url("/refused"), &[]).await.status, 502);
    assert_eq!(get(&c, &gw.url("/reset"), &[]).await.status, 502);
    let started = Instant::now();
    assert_eq!(get(&c, &gw.url("/slow"), &[]).await.status, 504);
    assert!(
        started.elapsed() < Duration::from_millis(2800),
        "504 took {:?}",
        started.elapsed()
    );

    // A client that connects and sends nothing is closed after the header
    // read timeout (500 ms here).
    let started = Instant::now();
    let (text, closed) = exchange(addr, b"").await;
    assert!(closed, "silent client still connected");
    assert!(!text.starts_with("HTTP/1.1 2"), "{text}");
    assert!(started.elapsed() < Duration::from_millis(2800));

    // And the gateway still serves normally.
    assert!(gw.alive());
    let r = get(&c, &gw.url("/ok/fine"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(echo.count(), 1);
}

/// A gateway in front of one endpoint that two failures in a row eject for
/// a minute, with panic mode off: once ejected, every request gets 503.
/// `app` echoes; `slow` reads the whole body, then takes 3 s to answer.
/// The route deadline is 500 ms.
async fn strict_gateway() -> (Upstream, Upstream, Gateway) {
    let echo = Upstream::echo("echo").await;
    let slow = Upstream::start(|req: http::Request<hyper::body::Incoming>| async move {
        use http_body_util::BodyExt;
        let _ = req.into_body().collect().await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        Response::new(full("late"))
    })
    .await;
    let mut cfg = String::from(
        "[server]\nworkers = 2\n\n[[listener]]\nname = \"main\"\naddress = \"127.0.0.1:0\"\n",
    );
    for (name, addr) in [("app", echo.addr), ("slow", slow.addr)] {
        cfg.push_str(&format!(
            "\n[[upstream]]\nname = \"{name}\"\nendpoints = [\"{addr}\"]\nconnect_timeout = \"1s\"\npanic_threshold = 0\noutlier = {{ consecutive_5xx = 2, consecutive_connect_failures = 2, base_ejection = \"1m\" }}\nretry = {{ attempts = 0 }}\n"
        ));
    }
    cfg.push_str(
        "\n[[route]]\nupstream = \"slow\"\npath_prefix = \"/slow\"\ntimeout = \"500ms\"\n\n[[route]]\nupstream = \"app\"\ntimeout = \"500ms\"\n",
    );
    let gw = Gateway::with_config(cfg).start();
    (echo, slow, gw)
}

/// Sends `head` and `body` on a fresh connection, shutting the write side
/// down after them when `shut`, and returns what came back before the
/// gateway closed the connection (at most 3 s).
async fn upload(addr: std::net::SocketAddr, head: &str, body: &[u8], shut: bool) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    if shut {
        s.shutdown().await.unwrap();
    }
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out))
        .await
        .is_ok();
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(closed, "connection left open after {text:?}");
    text
}

/// The endpoint still serves: it was not ejected.
async fn still_serving(gw: &Gateway, echo: &Upstream, what: &str) {
    let before = echo.count();
    let r = get(&client(), &gw.url("/after"), &[]).await;
    assert_eq!(r.status, 200, "{what}: endpoint ejected? {}", r.text());
    assert_eq!(echo.count(), before + 1);
    assert!(
        !gw.logs().iter().any(|l| l.contains("endpoint ejected")),
        "{what}: {}",
        gw.logs_for_failure()
    );
}

#[tokio::test]
async fn an_aborted_upload_is_400_and_not_held_against_the_endpoint() {
    let (echo, _slow, gw) = strict_gateway().await;
    // 10 of the 100 announced bytes, then the client's side closes.
    for i in 0..5 {
        let text = upload(
            gw.addr(),
            "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n",
            b"0123456789",
            true,
        )
        .await;
        // The answer, if the gateway gets to send one to a client that
        // half-closed, blames the client; never a 5xx.
        assert!(
            text.is_empty() || raw_status(&text) == Some(400),
            "aborted upload {i}: {text:?}"
        );
    }
    still_serving(&gw, &echo, "aborted uploads").await;
}

#[tokio::test]
async fn bad_chunked_framing_is_400_and_not_held_against_the_endpoint() {
    let (echo, _slow, gw) = strict_gateway().await;
    for i in 0..5 {
        // A good chunk (it goes upstream), then a chunk size that is not hex.
        let text = upload(
            gw.addr(),
            "POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"5\r\nhello\r\nzz\r\n",
            false,
        )
        .await;
        assert_eq!(raw_status(&text), Some(400), "bad chunk {i}: {text:?}");
        assert!(
            text.to_ascii_lowercase().contains("connection: close"),
            "{text}"
        );
    }
    still_serving(&gw, &echo, "bad chunked framing").await;
}

#[tokio::test]
async fn a_stalled_upload_is_408_but_a_slow_upstream_is_504() {
    let (echo, _slow, gw) = strict_gateway().await;
    // Headers and 10 of 100 bytes, then nothing: the route's 500 ms
    // deadline passes while the upstream waits for the client.
    for i in 0..3 {
        let started = Instant::now();
        let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
        s.write_all(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
            .await
            .unwrap();
        let mut out = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out))
            .await
            .is_ok();
        let text = String::from_utf8_lossy(&out);
        assert_eq!(raw_status(&text), Some(408), "stalled upload {i}: {text:?}");
        assert!(closed, "connection left open after the 408");
        assert!(started.elapsed() < Duration::from_millis(2800));
    }
    still_serving(&gw, &echo, "stalled uploads").await;

    // A body that arrived whole, then an upstream too slow: that is the
    // endpoint's fault, 504, and it counts (two eject it: then 503).
    let c = client();
    for i in 0..2 {
        let r = send(&c, post(&gw.url("/slow"), "the whole body")).await;
        assert_eq!(r.status, 504, "slow upstream {i}: {}", r.text());
    }
    let r = send(&c, post(&gw.url("/slow"), "the whole body")).await;
    assert_eq!(r.status, 503, "the slow endpoint was not ejected");
}
