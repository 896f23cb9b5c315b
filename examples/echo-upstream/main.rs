//! A demo upstream for trying Weir: answers every request with a JSON
//! description of what it received (method, target, headers, body size),
//! so you can see what the gateway forwarded.
//!
//! ```text
//! cargo run -p weir --example echo-upstream -- 127.0.0.1:9000
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

async fn describe(
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, mut body) = req.into_parts();
    let mut body_bytes = 0u64;
    while let Some(Ok(frame)) = body.frame().await {
        body_bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
    }
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect();
    let answer = serde_json::json!({
        "upstream": "echo-upstream",
        "method": parts.method.as_str(),
        "target": parts.uri.to_string(),
        "headers": headers,
        "body_bytes": body_bytes,
    });
    let mut text = serde_json::to_string_pretty(&answer).unwrap_or_default();
    text.push('\n');
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(text)))
        .expect("static response parts are valid"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".into())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("echo-upstream listening on http://{addr}");
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(describe))
                .await;
        });
    }
}
