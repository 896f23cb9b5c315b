//! 100 MB through the gateway in each direction, with the gateway's peak
//! memory (VmHWM) staying far below the body size: bodies stream, nothing
//! buffers them whole.

use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const TOTAL: u64 = 100 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;
/// Peak resident memory the gateway may reach while moving 200 MB. Its
/// baseline is a few MiB; a buffered body alone would exceed this.
const PEAK_LIMIT_KB: u64 = 48 * 1024;

#[tokio::test]
async fn hundred_megabytes_stream_both_ways_with_flat_memory() {
    let sink = Upstream::echo("sink").await;
    let source = Upstream::start(|_req| async {
        let chunk = Bytes::from(vec![b'x'; CHUNK]);
        let n = TOTAL as usize / CHUNK;
        let stream = futures_util::stream::iter(
            (0..n).map(move |_| Ok::<_, std::io::Error>(Frame::data(chunk.clone()))),
        );
        Response::builder()
            .header("content-length", TOTAL.to_string())
            .body(StreamBody::new(stream).boxed())
            .unwrap()
    })
    .await;
    let routes = r#"
[[route]]
upstream = "sink"
path = "/upload"
max_body_bytes = "200MiB"

[[route]]
upstream = "source"
path = "/download"
"#;
    let gw = Gateway::with_config(config(
        "",
        &[("sink", sink.addr), ("source", source.addr)],
        routes,
    ))
    .start();

    // Upload: 100 MB written on a raw socket, the upstream counts it.
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(
        format!("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {TOTAL}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let chunk = vec![b'u'; CHUNK];
    for _ in 0..TOTAL as usize / CHUNK {
        s.write_all(&chunk).await.unwrap();
    }
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut out))
        .await
        .expect("upload answer")
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert_eq!(raw_status(&text), Some(200), "{text}");
    assert!(text.contains(&format!("\"body_bytes\":{TOTAL}")), "{text}");

    // Download: 100 MB from the upstream, counted as it arrives.
    let c = client();
    let resp = c
        .request(
            http::Request::get(gw.url("/download"))
                .body(Default::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut n = 0u64;
    while let Some(f) = body.frame().await {
        n += f.unwrap().data_ref().map_or(0, |d| d.len() as u64);
    }
    assert_eq!(n, TOTAL);

    let peak = gw.proc_status_kb("VmHWM");
    assert!(
        peak < PEAK_LIMIT_KB,
        "gateway peak RSS {peak} KiB while streaming; limit {PEAK_LIMIT_KB} KiB"
    );
}
