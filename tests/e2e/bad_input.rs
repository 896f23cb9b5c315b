//! The bad-input table, over raw TCP so nothing sanitises the bytes: each
//! malformed or oversized request gets its 4xx, the connection closes where
//! the rest of the bytes cannot be trusted, and nothing reaches the
//! upstream. Upstream failures map to 502 and 504. The gateway survives all
//! of it.

use std::time::{Duration, Instant};

use http::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
        started.elapsed() < Duration::from_secs(2),
        "504 took {:?}",
        started.elapsed()
    );

    // A client that connects and sends nothing is closed after the header
    // read timeout (500 ms here).
    let started = Instant::now();
    let (text, closed) = exchange(addr, b"").await;
    assert!(closed, "silent client still connected");
    assert!(!text.starts_with("HTTP/1.1 2"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(2));

    // And the gateway still serves normally.
    assert!(gw.alive());
    let r = get(&c, &gw.url("/ok/fine"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(echo.count(), 1);
}
