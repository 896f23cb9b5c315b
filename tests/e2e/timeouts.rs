//! Client-side timeouts: a slow request head is cut off after the header
//! read timeout even while bytes trickle in; an idle keep-alive connection
//! lives for the idle timeout, not the header timeout, and an idle timeout
//! shorter than the header timeout is kept too. Once a response streams:
//! an upstream that stops sending its body is cut off after `read_timeout`,
//! and a client that stops reading (a whole connection, or one HTTP/2
//! stream) after `send_timeout`, both long before the idle timeout would
//! act, and the upstream connection goes with them; a client that keeps
//! reading is never cut, however long the download.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
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

/// A raw connection to the gateway on which `GET /` has been sent.
async fn get_sent(gw: &Gateway) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
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
    let mut s = get_sent(&gw).await;
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
    let req = h2_get(&gw, "/");
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

/// Dropped with the upstream's response body: tells the test that the
/// gateway let go of the upstream connection carrying it.
struct Dropped(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for Dropped {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// An upstream whose one response body is `chunks` (then, when `hang`, no
/// end: the body waits for ever); the receiver fires when the gateway
/// drops the connection carrying it.
async fn streaming_upstream(
    chunks: impl Iterator<Item = Bytes> + Send + Sync + 'static,
    hang: bool,
) -> (Upstream, tokio::sync::oneshot::Receiver<()>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let once = std::sync::Mutex::new(Some((chunks, tx)));
    let up = Upstream::start(move |_req| {
        let (chunks, tx) = once.lock().unwrap().take().expect("one request only");
        async move {
            let guard = Dropped(Some(tx));
            let data = futures_util::stream::iter(chunks.map(|c| Ok(Frame::data(c))));
            let tail = futures_util::stream::unfold(guard, move |guard| async move {
                if hang {
                    std::future::pending::<()>().await;
                }
                drop(guard);
                None::<(Result<Frame<Bytes>, std::io::Error>, Dropped)>
            });
            Response::new(BodyExt::boxed(StreamBody::new(data.chain(tail))))
        }
    })
    .await;
    (up, rx)
}

#[tokio::test]
async fn an_upstream_body_that_stops_is_cut_off_after_read_timeout() {
    let (up, dropped) = streaming_upstream(std::iter::once(Bytes::from("hello")), true).await;
    // idle_timeout is 30 s: only read_timeout can end this within the
    // test's bounds.
    let gw = Gateway::with_config(config(
        "idle_timeout = \"30s\"\n",
        &[("app", up.addr)],
        "[[route]]\nupstream = \"app\"\nread_timeout = \"1s\"\n",
    ))
    .start();
    let mut s = get_sent(&gw).await;
    let started = Instant::now();
    let mut got = Vec::new();
    let read_all = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    assert!(
        read_all.is_ok(),
        "connection still open 10 s after the upstream stopped; got {:?}",
        String::from_utf8_lossy(&got)
    );
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // The part that came is passed on, and the chunked body never ends
    // (no last chunk), so the client can tell it was cut.
    assert!(text.contains("hello"), "{text}");
    assert!(!text.ends_with("0\r\n\r\n"), "body ended cleanly: {text}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "cut after {:?}, before read_timeout",
        started.elapsed()
    );
    tokio::time::timeout(Duration::from_secs(5), dropped)
        .await
        .expect("the upstream connection was kept after the body was cut")
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            gw.logs()
                .iter()
                .any(|l| l.contains("sent nothing of the response body"))
        })
        .await,
        "{}",
        gw.logs_for_failure()
    );
}

#[tokio::test]
async fn a_client_that_reads_nothing_is_closed_after_send_timeout() {
    // An endless body: the client's socket and the gateway's fill up.
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    let (up, dropped) = streaming_upstream(std::iter::repeat(chunk), false).await;
    let gw = Gateway::with_config(config(
        "idle_timeout = \"30s\"\nsend_timeout = \"1s\"\n",
        &[("app", up.addr)],
        "[[route]]\nupstream = \"app\"\n",
    ))
    .start();
    let mut s = get_sent(&gw).await;
    // Reads nothing. The gateway gives up on it and on the upstream
    // connection; without send_timeout, only the 30 s idle timeout would.
    tokio::time::timeout(Duration::from_secs(10), dropped)
        .await
        .expect("the upstream connection still streams 10 s after the client stopped reading")
        .unwrap();
    // What the kernel buffered is still readable, then the connection ends.
    let mut sink = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut sink)).await;
    assert!(end.is_ok(), "client connection still open");
}

/// An HTTP/2 connection to the gateway whose streams start with a 64 KiB
/// window, opened again only as the client reads; with `pings`, the
/// client pings every 200 ms.
async fn h2_small_window(
    gw: &Gateway,
    pings: bool,
) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let mut b = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    b.initial_stream_window_size(65_535);
    if pings {
        b.timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Duration::from_millis(200))
            .keep_alive_while_idle(true);
    }
    let (send, conn) = b.handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    send
}

/// `GET path` for an HTTP/2 connection to the gateway.
fn h2_get(gw: &Gateway, path: &str) -> Request<Empty<Bytes>> {
    Request::get(format!("http://{}{path}", gw.addr()))
        .body(Empty::<Bytes>::new())
        .unwrap()
}

#[tokio::test]
async fn an_http2_stream_the_client_stops_reading_is_reset_after_send_timeout() {
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    let (up, dropped) = streaming_upstream(std::iter::repeat(chunk), false).await;
    let echo = Upstream::echo("echo").await;
    let gw = Gateway::with_config(config(
        "idle_timeout = \"30s\"\nsend_timeout = \"1s\"\n",
        &[("app", up.addr), ("echo", echo.addr)],
        "[[route]]\nupstream = \"echo\"\npath = \"/echo\"\n\n[[route]]\nupstream = \"app\"\n",
    ))
    .start();
    // The client never opens the stream's window again (it reads nothing
    // of the body), and its pings keep the connection busy: the socket
    // never blocks and the connection is never idle, so only the stream's
    // own clock can end this.
    let mut send = h2_small_window(&gw, true).await;
    let get = |path: &str| h2_get(&gw, path);
    let resp = send.send_request(get("/")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let unread = resp.into_body();
    tokio::time::timeout(Duration::from_secs(10), dropped)
        .await
        .expect("the upstream connection still streams 10 s after the client stopped reading")
        .unwrap();
    // Only that stream was reset: the connection serves the next one.
    let next = tokio::time::timeout(Duration::from_secs(5), send.send_request(get("/echo")))
        .await
        .expect("no answer on the same connection")
        .unwrap();
    assert_eq!(next.status(), 200);
    drop(unread);
}

#[tokio::test]
async fn an_http2_download_longer_than_send_timeout_completes_while_the_client_reads() {
    // 40 chunks of 64 KiB, 50 ms apart: two seconds of body against a
    // one-second send_timeout, each chunk filling the client's window.
    let up = Upstream::start(|_req| async {
        let chunks = futures_util::stream::unfold(0u32, |i| async move {
            if i == 40 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            Some((Ok::<_, std::io::Error>(Frame::data(chunk)), i + 1))
        });
        Response::new(BodyExt::boxed(StreamBody::new(chunks)))
    })
    .await;
    let gw = Gateway::with_config(config(
        "send_timeout = \"1s\"\n",
        &[("app", up.addr)],
        "[[route]]\nupstream = \"app\"\n",
    ))
    .start();
    let mut send = h2_small_window(&gw, false).await;
    let resp = send.send_request(h2_get(&gw, "/")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(20), resp.into_body().collect())
        .await
        .expect("download did not finish")
        .expect("download was cut");
    assert_eq!(body.to_bytes().len(), 40 * 64 * 1024);
}
