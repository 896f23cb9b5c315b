//! Upstreams that break HTTP/2 (HEADERS on stream 0, an HTTP/1.1 answer
//! to the preface, a header block over `max_header_list_size`, a reset
//! storm) cost only their own requests: each a 502 (gRPC calls an
//! UNAVAILABLE status) with a log line that says why, while a healthy
//! upstream on the same worker fails nothing.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::*;
use crate::support::h2::{self as h2s, RawH2, RawWriter, TcpServer};
use crate::support::*;

/// Runs a raw connection (`conn`, as accepted) to its end, calling
/// `answer` with its writer and the stream of each request (a HEADERS
/// frame) as it arrives.
async fn on_each_request<F, Fut>(conn: std::io::Result<RawH2>, mut answer: F)
where
    F: FnMut(RawWriter, u32) -> Fut,
    Fut: Future<Output = ()>,
{
    let Ok(mut conn) = conn else {
        return;
    };
    let w = conn.writer();
    while let Ok(Some(f)) = conn.next().await {
        if f.kind == h2s::HEADERS {
            answer(w.clone(), f.stream).await;
        }
    }
}

/// A raw connection that answers each request with a HEADERS frame on
/// stream 0, a connection error (RFC 9113 section 6.2).
async fn headers_on_stream_zero(stream: TcpStream) {
    on_each_request(RawH2::accept(stream, &[]).await, |w, _| async move {
        let _ = w
            .frame(h2s::HEADERS, h2s::END_HEADERS | h2s::END_STREAM, 0, &[0x88])
            .await;
    })
    .await;
}

/// A "server" that reads the HTTP/2 preface and answers in HTTP/1.1, as
/// a server that does not speak h2c would: no SETTINGS, bytes that do
/// not parse as frames.
async fn http1_garbage(stream: TcpStream) {
    on_each_request(RawH2::accept_silent(stream).await, |w, _| async move {
        let _ = w
            .bytes(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\n\r\nBad Request")
            .await;
    })
    .await;
}

/// A raw connection that answers each request with a header block of
/// about 24 KiB (48 fields of 500 bytes), in HEADERS and CONTINUATION
/// frames, then a body.
async fn oversized_headers(stream: TcpStream) {
    let mut block = vec![0x88];
    for i in 0..48 {
        h2s::hpack_literal(&mut block, &format!("x-big-{i:02}"), &[b'a'; 500]);
    }
    let block = &block;
    on_each_request(RawH2::accept(stream, &[]).await, |w, id| async move {
        let _ = w.header_block(id, block, false).await;
        let _ = w.data(id, b"big", true).await;
    })
    .await;
}

/// A raw connection that resets every stream it is sent.
async fn resets_every_stream(stream: TcpStream, resets: Arc<AtomicUsize>) {
    let resets = &resets;
    on_each_request(RawH2::accept(stream, &[]).await, |w, id| async move {
        if w.rst(id, h2s::INTERNAL_ERROR).await.is_ok() {
            resets.fetch_add(1, Ordering::SeqCst);
        }
    })
    .await;
}

/// The reason a warning or error log line gives for a request whose id
/// starts with `id_prefix` (with its opening quote: ids are logged
/// quoted): every field but the id, the time and the target, lowercased.
/// The id is left out because it names the breakage it tests.
fn failure_reason(line: &str, id_prefix: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let level = v["level"].as_str()?;
    if level != "WARN" && level != "ERROR" {
        return None;
    }
    if !v["request_id"].as_str()?.starts_with(id_prefix) {
        return None;
    }
    let mut reason = String::new();
    for (k, v) in v.as_object()? {
        if !matches!(k.as_str(), "request_id" | "timestamp" | "target" | "level") {
            reason.push_str(&v.to_string().to_ascii_lowercase());
            reason.push(' ');
        }
    }
    Some(reason)
}

/// A gRPC call (an empty message) with the h2c client: the HTTP status
/// and `grpc-status`, from the headers (trailers-only) or the trailers.
async fn grpc_status(url: &str, id: &str) -> (u16, Option<String>) {
    let req = Request::post(url)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-request-id", id)
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(30), h2c_client().request(req))
        .await
        .expect("gRPC call timed out")
        .expect("gRPC call failed");
    let status = resp.status().as_u16();
    let head = resp.headers().get("grpc-status").cloned();
    let body = resp.into_body().collect().await.expect("gRPC body");
    let trailer = body.trailers().and_then(|t| t.get("grpc-status")).cloned();
    let grpc = head
        .or(trailer)
        .map(|v| v.to_str().unwrap_or("?").to_owned());
    (status, grpc)
}

#[tokio::test]
async fn broken_h2_upstreams_cost_only_their_own_requests() {
    let resets = Arc::new(AtomicUsize::new(0));
    let rs = resets.clone();
    let stream0 = TcpServer::start(|_, s| headers_on_stream_zero(s)).await;
    let garbage = TcpServer::start(|_, s| http1_garbage(s)).await;
    let big = TcpServer::start(|_, s| oversized_headers(s)).await;
    let storm = TcpServer::start(move |_, s| resets_every_stream(s, rs.clone())).await;
    let healthy = answering("fine").await;
    let mut rest = String::new();
    for (name, addr, http2) in [
        ("stream0", stream0.addr, ""),
        ("garbage", garbage.addr, ""),
        ("bigheaders", big.addr, "max_header_list_size = \"16KiB\""),
        ("resets", storm.addr, ""),
        ("healthy", healthy.addr, ""),
    ] {
        rest.push_str(&routed_upstream(name, "h2c", addr, NO_OUTLIER, http2));
    }
    // One worker: the broken upstreams and the healthy one share its
    // event loop and its pools.
    let mut gw = Gateway::with_config(gateway_config(1, &rest)).start();
    let load = Load::start(&gw.url("/healthy/x"), 4);

    let c = client();
    for kind in ["stream0", "garbage", "bigheaders"] {
        for i in 0..5 {
            let id = format!("{kind}-{i}");
            let r = get(&c, &gw.url(&format!("/{kind}/x")), &[("x-request-id", &id)]).await;
            assert_eq!(r.status, 502, "{id}: {}\n{}", r.text(), warnings(&gw));
        }
        let (status, grpc) = grpc_status(
            &gw.url(&format!("/{kind}/pkg.Svc/Call")),
            &format!("{kind}-grpc"),
        )
        .await;
        assert_eq!(
            (status, grpc.as_deref()),
            (200, Some("14")),
            "{kind}: a gRPC call to a broken upstream"
        );
    }
    // The reset storm: 200 requests from 10 clients at once, every stream
    // reset by the upstream.
    let mut storm_tasks = JoinSet::new();
    for t in 0..10 {
        let url = gw.url("/resets/x");
        storm_tasks.spawn(async move {
            let c = client();
            let mut statuses = Vec::new();
            for i in 0..20 {
                let id = format!("resets-{t}-{i}");
                let req = Request::get(&url)
                    .header("x-request-id", &id)
                    .body(Full::default())
                    .unwrap();
                statuses.push((id, try_send(&c, req).await.map(|(s, _)| s)));
            }
            statuses
        });
    }
    while let Some(j) = storm_tasks.join_next().await {
        for (id, r) in j.unwrap() {
            assert_eq!(r, Ok(502), "{id}\n{}", warnings(&gw));
        }
    }
    let (status, grpc) = grpc_status(&gw.url("/resets/pkg.Svc/Call"), "resets-grpc").await;
    assert_eq!((status, grpc.as_deref()), (200, Some("14")), "resets: gRPC");
    assert!(
        resets.load(Ordering::SeqCst) >= 200,
        "only {} streams reset",
        resets.load(Ordering::SeqCst)
    );

    // Meanwhile the healthy upstream on the same worker failed nothing.
    load.finish_without_failures(&gw, 20).await;

    // The log says why, for each kind of breakage.
    for (kind, words) in [
        ("stream0", &["protocol"][..]),
        (
            "garbage",
            &["frame", "protocol", "size", "preface", "http/1"][..],
        ),
        // h2 ends such a stream with a PROTOCOL_ERROR of its own: the
        // gateway has to say that the header block was too large.
        (
            "bigheaders",
            &["header", "max_header_list_size", "too large"][..],
        ),
        ("resets", &["reset", "internal"][..]),
    ] {
        let said = eventually(Duration::from_secs(5), || async {
            gw.logs()
                .iter()
                .filter_map(|l| failure_reason(l, &format!("\"{kind}-")))
                .any(|reason| words.iter().any(|w| reason.contains(w)))
        })
        .await;
        assert!(
            said,
            "{kind}: no warning for its requests names any of {words:?}\n{}",
            warnings(&gw)
        );
    }
    assert!(gw.alive(), "the gateway died");
    // And still serves.
    let r = get(&client(), &gw.url("/healthy/after"), &[]).await;
    assert_eq!(r.status, 200);
}
