//! Graceful shutdown: on SIGTERM the gateway stops accepting, closes its
//! idle connections, lets the request in flight finish, and exits 0.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::Response;

use crate::support::upstream::full;
use crate::support::*;

/// An upstream that answers `/slow` after 1.5 s and anything else at
/// once, and counts the slow requests it began.
async fn slow_upstream() -> (Upstream, Arc<AtomicUsize>) {
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let up = Upstream::start(move |req| {
        let s = s.clone();
        async move {
            if req.uri().path() == "/slow" {
                s.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1500)).await;
                return Response::new(full("slow done"));
            }
            Response::new(full("fast"))
        }
    })
    .await;
    (up, started)
}

/// Waits until the upstream began its slow request.
async fn until_started(started: &AtomicUsize) {
    assert!(
        eventually(Duration::from_secs(5), || async {
            started.load(Ordering::SeqCst) == 1
        })
        .await,
        "request never reached the upstream"
    );
}

#[tokio::test]
async fn sigterm_drains_a_slow_in_flight_request_then_exits_zero() {
    let (up, started) = slow_upstream().await;
    let mut gw = Gateway::with_config(config(
        "",
        &[("slow", up.addr)],
        "[[route]]\nupstream = \"slow\"\n",
    ))
    .start();
    let addr = gw.addr();
    let url = gw.url("/slow");
    let in_flight = tokio::spawn(async move { get(&client(), &url, &[]).await });
    until_started(&started).await;

    gw.sigterm();
    // New connections are refused once the listeners close.
    assert!(
        eventually(Duration::from_secs(5), || async {
            tokio::net::TcpStream::connect(addr).await.is_err()
        })
        .await,
        "gateway kept accepting after SIGTERM"
    );
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "slow done");
    let code = tokio::task::spawn_blocking(move || gw.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
}

/// Reads what `s` sends until the gateway closes it, or `within` passes
/// (`None`: still open then).
async fn read_to_close(s: &mut tokio::net::TcpStream, within: Duration) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn sigterm_closes_idle_connections_at_once_and_a_busy_one_after_its_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (up, started) = slow_upstream().await;
    // A drain timeout far longer than the test may take: the gateway
    // exits early only if it closes its idle connections itself.
    let cfg = config("", &[("up", up.addr)], "[[route]]\nupstream = \"up\"\n")
        .replace("drain_timeout = \"10s\"", "drain_timeout = \"60s\"");
    let mut gw = Gateway::with_config(cfg).start();
    let addr = gw.addr();

    // Several of each, so both workers hold some.
    let mut silent = Vec::new();
    let mut kept = Vec::new();
    for _ in 0..4 {
        silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        let mut k = tokio::net::TcpStream::connect(addr).await.unwrap();
        k.write_all(b"GET /fast HTTP/1.1\r\nHost: gw\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.ends_with(b"fast") {
            let n = k.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before its answer");
            got.extend_from_slice(&buf[..n]);
        }
        kept.push(k);
    }
    // An HTTP/2 connection by prior knowledge (h2c), idle after its
    // settings.
    let mut h2c = tokio::net::TcpStream::connect(addr).await.unwrap();
    h2c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let mut busy = tokio::net::TcpStream::connect(addr).await.unwrap();
    busy.write_all(b"GET /slow HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    until_started(&started).await;

    gw.sigterm();
    for s in silent.iter_mut().chain(kept.iter_mut()) {
        let end = read_to_close(s, Duration::from_secs(5)).await;
        assert_eq!(
            end.as_deref(),
            Some(""),
            "an idle connection stayed open, or was answered"
        );
    }
    // hyper's graceful shutdown: a GOAWAY and a PING; once the PING is
    // answered, the last GOAWAY and the close.
    let goaways = tokio::time::timeout(Duration::from_secs(5), async {
        let mut goaways = 0;
        loop {
            let mut head = [0u8; 9];
            if h2c.read_exact(&mut head).await.is_err() {
                return goaways;
            }
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            if h2c.read_exact(&mut payload).await.is_err() {
                return goaways;
            }
            match (head[3], head[4]) {
                (7, _) => goaways += 1,
                // A PING without ACK: answered.
                (6, 0) => {
                    let mut ack = head;
                    ack[4] = 1;
                    let _ = h2c.write_all(&ack).await;
                    let _ = h2c.write_all(&payload).await;
                }
                _ => {}
            }
        }
    })
    .await
    .expect("the idle HTTP/2 connection stayed open");
    assert!(goaways >= 1, "closed without a GOAWAY");
    let answer = read_to_close(&mut busy, Duration::from_secs(10))
        .await
        .expect("the busy connection was not closed after its answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("connection: close\r\n"), "{answer}");
    assert!(answer.ends_with("slow done"), "{answer}");
    let code = tokio::task::spawn_blocking(move || gw.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
}
