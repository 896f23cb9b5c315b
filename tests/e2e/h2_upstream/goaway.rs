//! GOAWAY and REFUSED_STREAM: a graceful GOAWAY every 20 streams under
//! load from HTTP/1.1 and h2c clients, a GOAWAY whose last stream id says
//! the other streams never ran, and streams refused on their first try;
//! in each, no request fails and none that ran upstream is sent again.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;

use super::*;
use crate::support::h2::{self as h2s, RawH2, Record, RecordingOptions, TcpServer};
use crate::support::*;

type BoxFut = Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// An h2 server whose connections record into `record` (see
/// [`h2s::serve_recording`]).
async fn recording(opts: RecordingOptions, record: &Arc<Mutex<Record>>) -> TcpServer {
    let record = record.clone();
    TcpServer::start(move |_, s| h2s::serve_recording(s, opts, record.clone())).await
}

#[tokio::test]
async fn a_graceful_goaway_under_load_fails_no_request_and_repeats_none() {
    let record: Arc<Mutex<Record>> = Arc::default();
    let opts = RecordingOptions {
        goaway_after: Some(20),
        max_delay: Duration::from_millis(5),
        ..RecordingOptions::default()
    };
    let a = recording(opts, &record).await;
    let b = recording(opts, &record).await;
    let gw = one_upstream(2, "h2c", &[a.addr, b.addr], NO_OUTLIER, "").start();

    // 8 clients, 50 requests each, GET and POST in turn: four HTTP/1.1
    // clients and four tasks sharing one h2c client.
    const PER_TASK: usize = 50;
    let mut tasks = JoinSet::new();
    let h2 = h2c_client();
    for t in 0..8 {
        let c = if t < 4 { client() } else { h2.clone() };
        let url = gw.url("/load");
        tasks.spawn(async move {
            let mut failed = Vec::new();
            for i in 0..PER_TASK {
                let id = format!("t{t}-{i}");
                let post = i % 2 == 1;
                match try_send(&c, id_request(&url, &id, post)).await {
                    Ok((200, body)) if body == expected_answer(&id, post) => {}
                    other => failed.push((id, format!("{other:?}"))),
                }
            }
            failed
        });
    }
    let mut failed = Vec::new();
    while let Some(f) = tasks.join_next().await {
        failed.extend(f.unwrap());
    }
    // Whether the upstreams ran each failed request says whether it was
    // safe to retry.
    let failed: Vec<String> = failed
        .into_iter()
        .map(|(id, what)| {
            let ran = record.lock().unwrap().received.get(&id).copied();
            format!("{id}: {what} (ran upstream: {ran:?})")
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}\n{}",
        failed.len(),
        8 * PER_TASK,
        &failed[..failed.len().min(5)],
        warnings(&gw)
    );

    let r = record.lock().unwrap();
    let twice: Vec<_> = r.received.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "requests that ran and were sent again: {twice:?}"
    );
    assert!(r.bad_bodies.is_empty(), "{:?}", r.bad_bodies);
    assert_eq!(r.received.len(), 8 * PER_TASK);
    // Every 20 streams a connection went away: the load crossed many.
    assert!(r.goaways >= 5, "only {} GOAWAYs sent", r.goaways);
    assert!(a.accepted() + b.accepted() >= 6);
}

/// What the GOAWAY-with-a-low-last-stream-id connection did.
#[derive(Default)]
struct LowGoaway {
    /// Streams opened on it.
    opened: Vec<u32>,
    /// The one it answered, and named as the last stream in its GOAWAY.
    answered: Option<u32>,
}

/// A raw connection that waits for `want` requests (or 3 s), answers
/// the lowest stream `raw`, and sends GOAWAY naming that stream as the
/// last one it processed: every other stream never ran.
async fn low_goaway(stream: tokio::net::TcpStream, want: usize, out: Arc<Mutex<LowGoaway>>) {
    let Ok(mut conn) = RawH2::accept(stream, &[(h2s::SETTINGS_MAX_CONCURRENT_STREAMS, 100)]).await
    else {
        return;
    };
    let w = conn.writer();
    let (mut opened, mut ended) = (BTreeSet::new(), BTreeSet::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while ended.len() < want {
        match tokio::time::timeout_at(deadline, conn.next()).await {
            Ok(Ok(Some(f))) => {
                if f.kind == h2s::HEADERS {
                    opened.insert(f.stream);
                }
                if f.ends_stream() {
                    ended.insert(f.stream);
                }
            }
            Ok(_) => return,
            Err(_) => break,
        }
    }
    let Some(&first) = opened.iter().next() else {
        return;
    };
    {
        let mut o = out.lock().unwrap();
        o.opened = opened.iter().copied().collect();
        o.answered = Some(first);
    }
    let _ = w.answer(first, b"raw").await;
    let _ = w.goaway(first, h2s::NO_ERROR).await;
    conn.until_closed(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn streams_a_goaway_says_never_ran_are_retried_on_a_new_connection() {
    let record: Arc<Mutex<Record>> = Arc::default();
    let low: Arc<Mutex<LowGoaway>> = Arc::default();
    let (r, l) = (record.clone(), low.clone());
    // The first connection is the raw one; every later one a recording
    // h2 server on the same port.
    let up = TcpServer::start(move |index, s| -> BoxFut {
        if index == 0 {
            Box::pin(low_goaway(s, 6, l.clone()))
        } else {
            Box::pin(h2s::serve_recording(
                s,
                RecordingOptions::default(),
                r.clone(),
            ))
        }
    })
    .await;
    // One worker and one connection per endpoint: all six requests share
    // the first connection.
    let gw = one_upstream(
        1,
        "h2c",
        &[up.addr],
        NO_OUTLIER,
        "max_connections_per_endpoint = 1",
    )
    .start();

    let mut all = JoinSet::new();
    for i in 0..6 {
        let url = gw.url("/low");
        // Four POSTs with a small body, two GETs.
        let post = i < 4;
        let id = format!("g{i}");
        all.spawn(async move {
            let r = try_send(&client(), id_request(&url, &id, post)).await;
            (id, post, r)
        });
    }
    let mut raw_answered = Vec::new();
    let mut bad = Vec::new();
    while let Some(j) = all.join_next().await {
        let (id, post, r) = j.unwrap();
        match r {
            Ok((200, body)) if body == "raw" => raw_answered.push(id),
            Ok((200, body)) if body == expected_answer(&id, post) => {}
            other => bad.push(format!("{id}: {other:?}")),
        }
    }
    assert!(bad.is_empty(), "{bad:?}\n{}", warnings(&gw));
    let low = low.lock().unwrap();
    assert!(
        low.opened.len() >= 2,
        "the first connection carried {:?}: nothing was left to retry\n{}",
        low.opened,
        warnings(&gw)
    );
    assert_eq!(raw_answered.len(), 1, "{raw_answered:?}");
    let r = record.lock().unwrap();
    assert!(
        !r.received.contains_key(&raw_answered[0]),
        "{} ran on the first connection and was sent again",
        raw_answered[0]
    );
    for i in 0..6 {
        let id = format!("g{i}");
        if id != raw_answered[0] {
            assert_eq!(r.received.get(&id), Some(&1), "{id}: {:?}", r.received);
        }
    }
    assert!(r.bad_bodies.is_empty(), "{:?}", r.bad_bodies);
    assert!(up.accepted() >= 2);
}

#[tokio::test]
async fn refused_streams_are_retried_and_succeed() {
    let record: Arc<Mutex<Record>> = Arc::default();
    let opts = RecordingOptions {
        refuse_first_try: true,
        ..RecordingOptions::default()
    };
    let up = recording(opts, &record).await;
    let gw = one_upstream(1, "h2c", &[up.addr], NO_OUTLIER, "").start();
    // Each request is refused the first time the server sees it, before
    // it reads a byte of the body: three GETs, three POSTs, at once.
    let mut all = JoinSet::new();
    for i in 0..6 {
        let url = gw.url("/refused");
        let post = i % 2 == 0;
        let id = format!("r{i}");
        all.spawn(async move {
            let mut req = id_request(&url, &id, post);
            req.headers_mut().insert("x-refuse", "1".parse().unwrap());
            let r = try_send(&client(), req).await;
            (id, post, r)
        });
    }
    while let Some(j) = all.join_next().await {
        let (id, post, r) = j.unwrap();
        assert!(
            matches!(&r, Ok((200, body)) if *body == expected_answer(&id, post)),
            "{id}: {r:?}\n{}",
            warnings(&gw)
        );
    }
    let r = record.lock().unwrap();
    for i in 0..6 {
        let id = format!("r{i}");
        assert_eq!(r.refused.get(&id), Some(&1), "{id} was never refused");
        assert_eq!(r.received.get(&id), Some(&1), "{id}: {:?}", r.received);
    }
    assert!(r.bad_bodies.is_empty(), "{:?}", r.bad_bodies);
}
