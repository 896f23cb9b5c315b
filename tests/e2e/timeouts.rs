//! Client-side timeouts: a slow request head is cut off after the header
//! read timeout even while bytes trickle in; an idle keep-alive connection
//! lives for the idle timeout, not the header timeout, and an idle timeout
//! shorter than the header timeout is kept too.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::upstream::full;
use crate::support::*;

/// The listener's header read timeout. A new connection must send its
/// first byte within it too, so it is long enough that a loaded machine
/// stalling between connect and write does not trip it.
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);

/// Timeouts short enough for quick tests. The idle test sleeps 1.5 s
/// between requests: more than the header timeout, and 2.5 s less than
/// the idle timeout.
const LISTENER: &str = "header_read_timeout = \"1s\"\nidle_timeout = \"4s\"\n";

/// An echo upstream behind a gateway with the short timeouts above.
async fn echo_behind_gateway() -> (Upstream, Gateway) {
    behind_gateway(LISTENER).await
}

/// An echo upstream behind a gateway with these listener settings.
async fn behind_gateway(listener: &str) -> (Upstream, Gateway) {
    let up = Upstream::echo("app").await;
    let gw = Gateway::with_config(config(
        listener,
        &[("app", up.addr)],
        "[[route]]\nupstream = \"app\"\n",
    ))
    .start();
    (up, gw)
}

/// A connection that has had one request answered (200) and is now quiet.
async fn answered_once(gw: &Gateway) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    ask(&mut s).await;
    s
}

/// Sends one request on `s` and checks it is answered with 200.
async fn ask(s: &mut tokio::net::TcpStream) {
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}

/// Writes one byte every 100 ms until the gateway closes the connection
/// or `limit` has passed since `started`; returns when it closed.
async fn trickle(
    s: &mut tokio::net::TcpStream,
    started: Instant,
    limit: Duration,
) -> Option<Duration> {
    while started.elapsed() < limit {
        if s.write_all(b"X").await.is_err() {
            return Some(started.elapsed());
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            _ => {}
        }
    }
    None
}

#[tokio::test]
async fn slow_header_client_is_cut_off() {
    let (up, gw) = echo_behind_gateway().await;
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").await.unwrap();
    let started = Instant::now();
    // One header byte every 100 ms: always active, never finished. For
    // ten times the header timeout: without it, nothing else would cut
    // this client off in that time.
    let closed_after = trickle(&mut s, started, 10 * HEADER_TIMEOUT).await;
    let closed_after = closed_after.expect("slow header client was never cut off");
    // Cut off about the header timeout after its first byte; the bound
    // leaves room for a slow machine and is still half the trickle.
    assert!(
        closed_after < 5 * HEADER_TIMEOUT,
        "cut off after {closed_after:?}"
    );
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn idle_keep_alive_outlives_the_header_timeout_then_closes() {
    let (up, gw) = echo_behind_gateway().await;
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    for _ in 0..2 {
        ask(&mut s).await;
        // Quiet for longer than the header timeout, shorter than idle.
        tokio::time::sleep(HEADER_TIMEOUT + Duration::from_millis(500)).await;
    }
    // The idle timeout closes it about 2.5 s from here; the bound only
    // tells it from a connection that stays open (for the 60 s default).
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("idle connection not closed within 10 s")
        .unwrap_or(0);
    assert_eq!(n, 0, "expected close, got data");
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn an_idle_timeout_shorter_than_the_header_timeout_still_applies() {
    // The connection's timer is first set for the header timeout (30 s);
    // after the request the idle timeout (300 ms) is the deadline.
    let (_up, gw) =
        behind_gateway("header_read_timeout = \"30s\"\nidle_timeout = \"300ms\"\n").await;
    let mut s = answered_once(&gw).await;
    let mut buf = vec![0u8; 4096];
    // Closed after about 0.6 s at most; the bound tells it from the 30 s
    // the header timeout would give.
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("idle connection not closed within 10 s")
        .unwrap_or(0);
    assert_eq!(n, 0, "expected close, got data");
}

#[tokio::test]
async fn a_slow_head_on_a_quiet_keep_alive_connection_is_cut_off_too() {
    // Quiet after its first answer, the connection waits on the idle
    // timeout (20 s); a head that then starts to trickle has only the
    // header timeout (1 s).
    let (up, gw) = behind_gateway("header_read_timeout = \"1s\"\nidle_timeout = \"20s\"\n").await;
    let mut s = answered_once(&gw).await;
    // Past the first header-timeout wake-up, so the gateway now waits on
    // the idle clock.
    tokio::time::sleep(HEADER_TIMEOUT + Duration::from_millis(500)).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").await.unwrap();
    let started = Instant::now();
    let closed_after = trickle(&mut s, started, Duration::from_secs(15))
        .await
        .expect("slow head never cut off");
    // About 1 s; waiting for the idle clock would take about 18.5 s.
    assert!(
        closed_after < 5 * HEADER_TIMEOUT,
        "cut off after {closed_after:?}"
    );
    assert_eq!(up.count(), 1);
}

/// An upstream that answers after 5 s, behind a gateway whose idle
/// timeout is 500 ms.
async fn slow_behind_gateway() -> (Upstream, Gateway) {
    let slow = Upstream::start(|_req| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Response::new(full("late"))
    })
    .await;
    let gw = Gateway::with_config(config(
        "idle_timeout = \"500ms\"\n",
        &[("app", slow.addr)],
        "[[route]]\nupstream = \"app\"\ntimeout = \"10s\"\n",
    ))
    .start();
    (slow, gw)
}

#[tokio::test]
async fn a_request_waiting_past_the_idle_timeout_does_not_spin_the_watchdog() {
    let (_slow, gw) = slow_behind_gateway().await;
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    // Past the idle timeout with the request still waiting on the
    // upstream: nothing for the workers to do for the next second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (workers, before) = gw.thread_wakeups("weir-worker");
    assert!(workers > 0, "no worker threads");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, after) = gw.thread_wakeups("weir-worker");
    // A watchdog re-armed for every millisecond wakes about 1,000 times;
    // one that looks again after the idle timeout, about twice.
    assert!(
        after - before < 100,
        "workers woke {} times in 1 s",
        after - before
    );
    // The request is still answered, and the connection was kept.
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
}

#[tokio::test]
async fn an_http2_stream_the_client_resets_does_not_keep_its_connection_open() {
    let (_slow, gw) = slow_behind_gateway().await;
    let tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = Request::get(format!("http://{}/", gw.addr()))
        .body(Empty::<Bytes>::new())
        .unwrap();
    // Given up while the gateway waits on the upstream: dropping the
    // response future resets the stream (RST_STREAM, CANCEL).
    let gave_up = tokio::time::timeout(Duration::from_millis(300), send.send_request(req)).await;
    assert!(gave_up.is_err(), "answered before the reset");
    // Quiet from here on (the request handle stays alive, so the client
    // does not close): the gateway closes it after the idle timeout.
    let closed = tokio::time::timeout(Duration::from_secs(4), conn).await;
    assert!(
        closed.is_ok(),
        "connection still open 4 s after its only stream was reset"
    );
    drop(send);
}
