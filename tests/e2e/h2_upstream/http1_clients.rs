//! HTTP/1.1 clients against an h2c upstream: a GET, a POST with a
//! length, chunked uploads (one of 50 MiB) and a 50 MiB answer, each
//! translated intact, with the host the route matched as `:authority`.

use std::time::Duration;

use http::{Method, Request, Response};
use hyper::body::Incoming;

use super::*;
use crate::support::h2::{
    self as h2s, StreamClient, TcpServer, h1_stream_client, handler, pattern_body, pattern_digest,
    read_body,
};
use crate::support::upstream::{UpBody, full};
use crate::support::*;

/// 50 MiB each way.
const LARGE: usize = 50 * 1024 * 1024;

/// An h2c upstream: `/download` streams [`LARGE`] bytes of the pattern
/// body; anything else is answered with JSON describing the request as
/// it arrived (version, method, authority, host header, body length and
/// sha256).
async fn describing_upstream() -> TcpServer {
    h2s::h2c_upstream(handler(|req: Request<Incoming>| async move {
        if req.uri().path() == "/download" {
            return Response::builder()
                .header("content-length", LARGE.to_string())
                .body(pattern_body(LARGE))
                .unwrap();
        }
        let version = format!("{:?}", req.version());
        let method = req.method().to_string();
        let authority = req
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let host: Vec<String> = req
            .headers()
            .get_all("host")
            .iter()
            .map(|v| v.to_str().unwrap_or("?").to_owned())
            .collect();
        let body = read_body(req.into_body()).await;
        let json = serde_json::json!({
            "version": version,
            "method": method,
            "authority": authority,
            "host": host,
            "body_bytes": body.len,
            "sha256": body.sha256,
            "complete": body.error.is_none(),
        });
        Response::new(full(json.to_string()))
    }))
    .await
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    h2s::hex(&sha2::Sha256::digest(b))
}

/// Sends `req` with `c` and returns the upstream's description of it.
async fn described(c: &StreamClient, req: Request<UpBody>, gw: &Gateway) -> serde_json::Value {
    let (status, body) = try_send(c, req).await.unwrap();
    assert_eq!(
        status,
        200,
        "{}\n{}",
        String::from_utf8_lossy(&body),
        warnings(gw)
    );
    serde_json::from_slice(&body).unwrap()
}

/// A request to `url` with the host the test's route serves.
fn to_api_test(method: Method, url: String, body: UpBody) -> Request<UpBody> {
    Request::builder()
        .method(method)
        .uri(url)
        .header("host", "api.test")
        .body(body)
        .unwrap()
}

#[tokio::test]
async fn http1_requests_of_every_framing_are_translated_to_an_h2c_upstream() {
    let up = describing_upstream().await;
    let gw = Gateway::with_config(gateway_config(
        1,
        &format!(
            "{}[[route]]\nupstream = \"up\"\nhosts = [\"api.test\"]\nmax_body_bytes = \"100MiB\"\n",
            upstream("up", "h2c", &[up.addr], "", "")
        ),
    ))
    .start();
    let c = h1_stream_client();

    // GET: the route's host arrives as `:authority`, and no other host.
    let j = described(
        &c,
        to_api_test(Method::GET, gw.url("/echo?q=1"), full("")),
        &gw,
    )
    .await;
    assert_eq!(j["version"], "HTTP/2.0", "{j}");
    assert_eq!(j["method"], "GET");
    assert_eq!(j["authority"], "api.test", "{j}");
    let hosts = j["host"].as_array().unwrap();
    assert!(
        hosts.is_empty() || hosts == &vec![serde_json::json!("api.test")],
        "a Host beside :authority that differs: {j}"
    );
    assert_eq!(j["body_bytes"], 0);

    // POST with Content-Length.
    let j = described(
        &c,
        to_api_test(Method::POST, gw.url("/echo"), full("hello")),
        &gw,
    )
    .await;
    assert_eq!(j["method"], "POST");
    assert_eq!(j["body_bytes"], 5, "{j}");
    assert_eq!(j["sha256"], sha256_hex(b"hello"));

    // A chunked upload (no length known), then a large one.
    for len in [100 * 1024 + 7, LARGE] {
        let (sha, n) = pattern_digest(len);
        let j = described(
            &c,
            to_api_test(Method::PUT, gw.url("/echo"), pattern_body(len)),
            &gw,
        )
        .await;
        assert_eq!(j["body_bytes"], n, "{len}: {j}");
        assert_eq!(j["sha256"], sha, "{len}: {j}");
        assert_eq!(j["complete"], true, "{len}: {j}");
    }

    // A large answer, streamed to the HTTP/1.1 client intact.
    let resp = stream_request(&c, to_api_test(Method::GET, gw.url("/download"), full(""))).await;
    assert_eq!(resp.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(120), read_body(resp.into_body()))
        .await
        .expect("the 50 MiB answer within 2 minutes");
    let (sha, n) = pattern_digest(LARGE);
    assert_eq!(body.error, None);
    assert_eq!(body.len, n);
    assert_eq!(body.sha256, sha);
}
