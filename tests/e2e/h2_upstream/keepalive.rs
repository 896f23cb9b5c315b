//! PING keep-alive: an upstream connection that stops acknowledging
//! PINGs is dropped within seconds and the next request opens a new one;
//! an idle connection that answers them is kept.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::support::h2::{self as h2s, RawH2, TcpServer};
use crate::support::*;

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
    let gw = one_upstream(1, "h2c", &[up.addr], "", FAST_PINGS).start();
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
    let up = answering("ok").await;
    let gw = one_upstream(1, "h2c", &[up.addr], "", FAST_PINGS).start();
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
