//! HTTP/2 to upstreams (issue 19), through the real binary: many client
//! requests multiplexed on a few upstream connections within the peer's
//! stream limit; GOAWAY (graceful under load, and one whose last stream id
//! says some streams never ran) and REFUSED_STREAM failing no request and
//! repeating none that ran; trailers both ways on h2↔h2, h1↔h2 and h2↔h1;
//! HTTP/1.1 clients translated to an h2c upstream (bodies of every framing,
//! 50 MiB each way, the host as `:authority`); `h2` and `auto` over TLS
//! chosen by ALPN; upstreams that break HTTP/2 (bad frames, an oversized
//! header block, a reset storm) costing only their own requests; PING
//! keep-alive dropping a silent connection and keeping a live one; and
//! `weir check` refusing bad protocol settings. One file a theme; this one
//! holds what they share: the configuration they write, the requests they
//! send and a plain upstream. The upstreams are in `support/h2.rs`; the
//! broken ones write their frames by hand.

mod broken;
mod check;
mod goaway;
mod http1_clients;
mod keepalive;
mod multiplexing;
mod tls;
mod trailers;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use crate::support::h2::{self as h2s, StreamClient, TcpServer, body_for, handler};
use crate::support::upstream::{UpBody, full};
use crate::support::*;

/// A gateway configuration: one plain listener `main`, `workers` worker
/// threads, then `rest` (upstreams and routes) as written.
fn gateway_config(workers: usize, rest: &str) -> String {
    format!(
        "[server]\nworkers = {workers}\ndrain_timeout = \"5s\"\n\n[[listener]]\nname = \"main\"\naddress = \"127.0.0.1:0\"\n\n{rest}\n"
    )
}

/// An `[[upstream]]` block: `keys` are extra lines of the upstream's own
/// table, `http2` the lines of its `[upstream.http2]` table (none when
/// empty; it comes last because a TOML table runs to the next header).
fn upstream(
    name: &str,
    protocol: &str,
    endpoints: &[SocketAddr],
    keys: &str,
    http2: &str,
) -> String {
    let list: Vec<String> = endpoints.iter().map(|a| format!("\"{a}\"")).collect();
    let mut s = format!(
        "[[upstream]]\nname = \"{name}\"\nprotocol = \"{protocol}\"\nendpoints = [{}]\nconnect_timeout = \"2s\"\n{keys}\n",
        list.join(", ")
    );
    if !http2.is_empty() {
        s.push_str(&format!("[upstream.http2]\n{http2}\n"));
    }
    s.push('\n');
    s
}

/// A `[[route]]` for requests under `prefix` to `upstream`.
fn route(prefix: &str, upstream: &str, extra: &str) -> String {
    format!("[[route]]\nupstream = \"{upstream}\"\npath_prefix = \"{prefix}\"\n{extra}\n\n")
}

/// An upstream `name` to `endpoint` (as [`upstream`] writes it) and a
/// route for the paths under `/name` to it: one of several upstreams a
/// gateway tells apart by path.
fn routed_upstream(
    name: &str,
    protocol: &str,
    endpoint: SocketAddr,
    keys: &str,
    http2: &str,
) -> String {
    let mut s = upstream(name, protocol, &[endpoint], keys, http2);
    s.push_str(&route(&format!("/{name}"), name, ""));
    s
}

/// The set-up most tests here share: `workers` worker threads, one
/// upstream `up` of `protocol` to `endpoints` (with its `keys` and
/// `[upstream.http2]` lines, as [`upstream`] takes them) and a route for
/// every path to it. Not started yet, so that a test can add files.
fn one_upstream(
    workers: usize,
    protocol: &str,
    endpoints: &[SocketAddr],
    keys: &str,
    http2: &str,
) -> GatewayBuilder {
    Gateway::with_config(gateway_config(
        workers,
        &format!(
            "{}{}",
            upstream("up", protocol, endpoints, keys, http2),
            route("/", "up", "")
        ),
    ))
}

/// A started gateway, one worker, with every path routed to the h2c
/// upstream at `endpoint` under the default settings.
fn h2c_gateway(endpoint: SocketAddr) -> Gateway {
    one_upstream(1, "h2c", &[endpoint], "", "").start()
}

/// An h2c upstream that reads each request's body whole and answers
/// `text`.
async fn answering(text: &'static str) -> TcpServer {
    h2s::h2c_upstream(handler(move |req: Request<Incoming>| async move {
        let _ = req.into_body().collect().await;
        Response::new(full(text))
    }))
    .await
}

/// Outlier ejection off: a broken upstream's every request reaches it.
const NO_OUTLIER: &str = "outlier = { consecutive_5xx = 0, consecutive_connect_failures = 0 }";

/// The gateway's warnings and errors, for failure messages.
fn warnings(gw: &Gateway) -> String {
    gw.logs()
        .iter()
        .filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\""))
        .cloned()
        .collect::<Vec<_>>()
        .join("\n")
}

/// Sends `req` with a client whose bodies stream: the answer's head,
/// within 30 s.
async fn stream_request(c: &StreamClient, req: Request<UpBody>) -> Response<Incoming> {
    tokio::time::timeout(Duration::from_secs(30), c.request(req))
        .await
        .unwrap()
        .unwrap()
}

/// A request with the id the recording servers key on (`x-test-id`): a
/// GET, or a POST carrying [`body_for`] the id.
fn id_request(url: &str, id: &str, post: bool) -> Request<Full<Bytes>> {
    let b = if post {
        Request::post(url)
    } else {
        Request::get(url)
    };
    let body = if post { body_for(id) } else { String::new() };
    // The same id as the request id, so the gateway's log lines about a
    // request name it too.
    let b = if id == "-" {
        b
    } else {
        b.header("x-request-id", id)
    };
    b.header("x-test-id", id)
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// What a recording server answers to the request [`id_request`] made.
fn expected_answer(id: &str, post: bool) -> String {
    let len = if post { body_for(id).len() } else { 0 };
    format!("id={id} len={len}")
}
