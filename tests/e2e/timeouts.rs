//! Client-side timeouts: a slow request head is cut off after the header
//! read timeout even while bytes trickle in; an idle keep-alive connection
//! lives for the idle timeout, not the header timeout.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const LISTENER: &str = "header_read_timeout = \"400ms\"\nidle_timeout = \"1500ms\"\n";

/// An echo upstream behind a gateway with the short timeouts above.
async fn echo_behind_gateway() -> (Upstream, Gateway) {
    let up = Upstream::echo("app").await;
    let gw = Gateway::with_config(config(
        LISTENER,
        &[("app", up.addr)],
        "[[route]]\nupstream = \"app\"\n",
    ))
    .start();
    (up, gw)
}

#[tokio::test]
async fn slow_header_client_is_cut_off() {
    let (up, gw) = echo_behind_gateway().await;
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").await.unwrap();
    let started = Instant::now();
    // One header byte every 100 ms: always active, never finished.
    let mut closed_after = None;
    for _ in 0..40 {
        if s.write_all(b"X").await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed_after = Some(started.elapsed());
                break;
            }
            _ => {}
        }
    }
    let closed_after = closed_after.expect("slow header client was never cut off");
    assert!(
        closed_after < Duration::from_millis(1400),
        "cut off after {closed_after:?}"
    );
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn idle_keep_alive_outlives_the_header_timeout_then_closes() {
    let (up, gw) = echo_behind_gateway().await;
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let req = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut buf = vec![0u8; 4096];
    for _ in 0..2 {
        s.write_all(req).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
        // Quiet for longer than the header timeout, shorter than idle.
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    let started = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("idle connection never closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "expected close, got data");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(up.count(), 2);
}
