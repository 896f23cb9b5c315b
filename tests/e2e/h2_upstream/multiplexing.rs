//! Multiplexing: 50 requests at once (25 HTTP/1.1 clients and 25 streams
//! of one h2c client) share a few upstream connections, with never more
//! streams open on one than the upstream's SETTINGS allow, and several
//! open at once: multiplexed, not sent one per connection at a time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;

use super::*;
use crate::support::h2::{self as h2s, RawH2, TcpServer};
use crate::support::*;

/// What the slow multiplexing upstream saw.
#[derive(Default)]
struct MuxStats {
    /// Streams opened (HEADERS frames that start a request).
    requests: AtomicUsize,
    /// The most streams one connection had open at once.
    max_open: AtomicUsize,
    /// Streams opened past SETTINGS_MAX_CONCURRENT_STREAMS (refused),
    /// once the client had acknowledged the SETTINGS that say it.
    over_limit: AtomicUsize,
    /// The same before the client acknowledged them: it may not have
    /// read them yet (RFC 9113 section 6.5.3).
    over_before_ack: AtomicUsize,
    /// Per connection, by index: (streams, most open at once, over the
    /// limit, whether the SETTINGS were acknowledged at its first
    /// stream).
    conns: Mutex<std::collections::BTreeMap<usize, (usize, usize, usize, bool)>>,
}

/// The limit the slow multiplexer advertises.
const MUX_LIMIT: usize = 10;

/// A raw HTTP/2 connection that advertises at most [`MUX_LIMIT`] streams,
/// answers each request `ok` after 100 ms, and counts how many streams
/// the client keeps open at once (from the HEADERS that opens one to the
/// frame that ends its answer). A stream over the limit is refused, as a
/// real server would, and counted.
async fn slow_multiplexer(index: usize, stream: tokio::net::TcpStream, stats: Arc<MuxStats>) {
    let Ok(mut conn) = RawH2::accept(
        stream,
        &[(h2s::SETTINGS_MAX_CONCURRENT_STREAMS, MUX_LIMIT as u32)],
    )
    .await
    else {
        return;
    };
    let w = conn.writer();
    let open = Arc::new(AtomicUsize::new(0));
    let mut answers = JoinSet::new();
    let mut acked = false;
    while let Ok(Some(f)) = conn.next().await {
        if f.kind == h2s::SETTINGS && f.flags & h2s::ACK != 0 {
            acked = true;
        }
        if f.kind != h2s::HEADERS {
            continue;
        }
        stats.requests.fetch_add(1, Ordering::SeqCst);
        let now = open.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_open.fetch_max(now, Ordering::SeqCst);
        let over = now > MUX_LIMIT;
        {
            let mut conns = stats.conns.lock().unwrap();
            let c = conns.entry(index).or_insert((0, 0, 0, acked));
            c.0 += 1;
            c.1 = c.1.max(now);
            c.2 += usize::from(over);
        }
        if over {
            let count = if acked {
                &stats.over_limit
            } else {
                &stats.over_before_ack
            };
            count.fetch_add(1, Ordering::SeqCst);
            open.fetch_sub(1, Ordering::SeqCst);
            let _ = w.rst(f.stream, h2s::REFUSED_STREAM).await;
            continue;
        }
        let (w, open) = (w.clone(), open.clone());
        answers.spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            // The stream counts as closed from the moment its last frame
            // is sent; counted down first so that a new stream the
            // client opens in reply is never counted against this one.
            open.fetch_sub(1, Ordering::SeqCst);
            let _ = w.answer(f.stream, b"ok").await;
        });
    }
}

#[tokio::test]
async fn many_concurrent_streams_share_a_few_upstream_connections() {
    let stats = Arc::new(MuxStats::default());
    let s = stats.clone();
    let up = TcpServer::start(move |i, stream| slow_multiplexer(i, stream, s.clone())).await;
    let gw = h2c_gateway(up.addr);

    // One request first: the pooled connection then knows the server's
    // limit (its SETTINGS arrived) before the burst.
    let warm = get(&client(), &gw.url("/warm"), &[]).await;
    assert_eq!(warm.status, 200, "{}\n{}", warm.text(), warnings(&gw));

    // 50 at once: 25 HTTP/1.1 clients (a connection each) and 25 streams
    // of one h2c client.
    let mut all = JoinSet::new();
    for i in 0..25 {
        let url = gw.url(&format!("/h1/{i}"));
        all.spawn(async move { try_send(&client(), id_request(&url, "-", false)).await });
    }
    let h2 = h2c_client();
    for i in 0..25 {
        let (h2, url) = (h2.clone(), gw.url(&format!("/h2/{i}")));
        all.spawn(async move { try_send(&h2, id_request(&url, "-", false)).await });
    }
    let mut bad = Vec::new();
    while let Some(r) = all.join_next().await {
        match r.unwrap() {
            Ok((200, body)) if body == "ok" => {}
            other => bad.push(format!("{other:?}")),
        }
    }
    let conns = up.accepted();
    let requests = stats.requests.load(Ordering::SeqCst);
    let max_open = stats.max_open.load(Ordering::SeqCst);
    let over = stats.over_limit.load(Ordering::SeqCst);
    let early = stats.over_before_ack.load(Ordering::SeqCst);
    let per_conn = stats.conns.lock().unwrap().clone();
    let seen = format!(
        "{conns} connections, {requests} streams, at most {max_open} open at once on one; \
         {over} streams over the limit of {MUX_LIMIT} once the gateway had acknowledged it, \
         {early} before; per connection (streams, most at once, over, SETTINGS acknowledged \
         at its first stream): {per_conn:?}"
    );
    assert!(
        bad.is_empty(),
        "{} of 50 failed: {:?}\nthe upstream saw {seen}\n{}",
        bad.len(),
        &bad[..bad.len().min(5)],
        warnings(&gw)
    );

    // 50 streams need 5 connections of 10; 3 more for connections opened
    // while the first ones' streams were still being counted.
    assert!(conns <= 8, "too many connections for 51 requests: {seen}");
    assert!(
        max_open <= MUX_LIMIT && over + early == 0,
        "over the stream limit: {seen}"
    );
    // 50 requests at once on at most 8 connections: streams were
    // multiplexed, not sent one per connection at a time.
    assert!(
        max_open >= 3,
        "never more than {max_open} streams at once on a connection"
    );
}
