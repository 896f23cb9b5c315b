//! gRPC through the real binary with a real gRPC server and client
//! (Python grpcio, `tests/e2e/grpc/server.py` and `client.py`): the four
//! call kinds downstream over h2c and over TLS, to h2c and to TLS (`h2`,
//! `auto`) upstreams; 4 MiB messages; deadlines (the client's
//! `grpc-timeout` capping the route's, the route's own timeout answered
//! as DEADLINE_EXCEEDED); a server's status, message and trailing
//! metadata reaching the client unchanged; Weir's own errors (no route, a
//! refused upstream, a timeout, a full pending limit, a plugin's refusal)
//! answered as gRPC statuses, checked both as the grpcio client reads them
//! and on the wire (HTTP 200, trailers-only `grpc-status`); the gRPC health
//! check ejecting an endpoint that reports NOT_SERVING and bringing it
//! back; and a plugin's header reaching the server as metadata.
//!
//! The Python side runs from the virtual environment `target/grpc-venv`
//! (`.ci/run` makes it from `tests/e2e/grpc/requirements.txt`), or from
//! the interpreter `WEIR_GRPC_PYTHON` names.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::Value;

use crate::bundled_plugins::bundled;
use crate::support::grpc::{has_pair, names};
use crate::support::h2::{TcpServer, h2c_upstream, handler};
use crate::support::pki::Ca;
use crate::support::upstream::{ClosedPort, full};
use crate::support::*;

/// How long one client run may take: its calls carry their own deadlines,
/// this only catches a client that hangs.
const CLIENT_LIMIT: Duration = Duration::from_secs(60);

/// The Python interpreter with grpcio and grpcio-health-checking.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("WEIR_GRPC_PYTHON") {
        return p.into();
    }
    let p = repo_root().join("target/grpc-venv/bin/python");
    assert!(
        p.exists(),
        "the gRPC tests need Python with grpcio at {}; make it with\n  \
         python3 -m venv target/grpc-venv && \
         target/grpc-venv/bin/pip install -r tests/e2e/grpc/requirements.txt\n\
         (.ci/run does this), or point WEIR_GRPC_PYTHON at an interpreter that has them",
        p.display()
    );
    p
}

fn script(name: &str) -> PathBuf {
    repo_root().join("tests/e2e/grpc").join(name)
}

/// A running `server.py`: its address, the events it printed, and the
/// file its health statuses are read from. Killed when dropped.
struct GrpcServer {
    child: Child,
    addr: SocketAddr,
    events: Arc<Mutex<Vec<Value>>>,
    health_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl GrpcServer {
    /// A plaintext (h2c) server answering as `name`.
    fn start(name: &str) -> GrpcServer {
        Self::start_with(name, &[])
    }

    /// A server with `extra` arguments (such as `--tls-cert`).
    fn start_with(name: &str, extra: &[&str]) -> GrpcServer {
        let dir = tempfile::tempdir().unwrap();
        let health_file = dir.path().join("health");
        let mut child = Command::new(python())
            .arg(script("server.py"))
            .args(["--port", "0", "--name", name, "--health-file"])
            .arg(&health_file)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start server.py");
        let (tx, rx) = std::sync::mpsc::channel();
        let events = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = events.clone();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            for line in lines {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        let Ok(port) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            panic!("server.py {name} printed no port within 30 s");
        };
        let port: u16 = port
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("server.py {name}: not a port: {port:?}"));
        GrpcServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            events,
            health_file,
            _dir: dir,
        }
    }

    /// Replaces the health file's text (see server.py: `STATUS` for the
    /// whole server and echo.Echo, `SERVICE=STATUS` for one), written
    /// whole and renamed into place so the server never reads half.
    fn set_health(&self, text: &str) {
        let tmp = self.health_file.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.health_file).unwrap();
    }

    /// The events named `name` printed so far.
    fn events(&self, name: &str) -> Vec<Value> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == name)
            .cloned()
            .collect()
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the client reaches the gateway: h2c, or TLS trusting `ca` and
/// checking the certificate for `authority`.
struct Via {
    target: SocketAddr,
    tls: Option<(PathBuf, String)>,
}

impl Via {
    fn h2c(addr: SocketAddr) -> Via {
        Via {
            target: addr,
            tls: None,
        }
    }
}

/// Runs `client.py` with `args` (a case and its options, in any order)
/// and returns the JSON it printed.
async fn grpc(via: &Via, args: &[&str]) -> Value {
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(script("client.py"))
        .arg("--target")
        .arg(via.target.to_string());
    if let Some((ca, authority)) = &via.tls {
        cmd.arg("--ca").arg(ca).arg("--authority").arg(authority);
    }
    cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(CLIENT_LIMIT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("client.py {args:?} did not finish within {CLIENT_LIMIT:?}"))
        .expect("run client.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "client.py {args:?} printed no JSON ({e}, {}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Asserts a client result's status code (with the whole result and the
/// gateway's log on failure).
fn assert_code(r: &Value, code: &str, gw: &Gateway) {
    assert_eq!(
        r["code"],
        code,
        "{r}\ngateway log:\n{}",
        gw.logs_for_failure()
    );
}

/// A configuration: listener `main` (with `listener` lines), upstream
/// `grpc` over h2c to `endpoints` (with `upstream` lines, which may end in
/// its sub-tables), and route `echo` for the service echo.Echo (with
/// `route` lines).
fn grpc_config(listener: &str, endpoints: &[SocketAddr], upstream: &str, route: &str) -> String {
    let endpoints: Vec<String> = endpoints
        .iter()
        .map(|a| format!("{{ address = \"{a}\" }}"))
        .collect();
    format!(
        r#"[server]
workers = 2
drain_timeout = "10s"

[[listener]]
name = "main"
address = "127.0.0.1:0"
{listener}

[[upstream]]
name = "grpc"
protocol = "h2c"
endpoints = [{}]
connect_timeout = "1s"
{upstream}

[[route]]
name = "echo"
path_prefix = "/echo.Echo/"
upstream = "grpc"
{route}
"#,
        endpoints.join(", ")
    )
}

/// A started gateway with a plain listener and [`grpc_config`]'s
/// upstream (to `endpoints`, with `upstream` lines) and route (with
/// `route` lines).
fn grpc_gateway(endpoints: &[SocketAddr], upstream: &str, route: &str) -> Gateway {
    Gateway::with_config(grpc_config("", endpoints, upstream, route)).start()
}

/// Asserts that the status the client read is one Weir sent as a gRPC
/// status: grpcio makes one up from a bare HTTP status too, and then its
/// details quote the HTTP/2 header.
fn assert_not_from_http_status(r: &Value) {
    assert!(
        !r["details"].as_str().unwrap().contains("http2 header"),
        "an HTTP status, not a gRPC one: {r}"
    );
}

/// How long a client call took, in milliseconds.
fn elapsed_ms(r: &Value) -> u64 {
    r["elapsed_ms"].as_u64().unwrap()
}

/// The four call kinds and a server error, each checked for what it must
/// carry: every reply intact, the server's trailing metadata, and the
/// error's status, message and trailers unchanged.
async fn four_kinds_and_an_error(via: &Via, gw: &Gateway) {
    let r = grpc(via, &["unary", "--text", "hello"]).await;
    assert_code(&r, "OK", gw);
    assert_eq!(r["text"], "hello", "{r}");
    assert!(has_pair(&r["trailing"], "x-server", "one"), "{r}");

    let r = grpc(via, &["server_stream", "--count", "5", "--size", "1000"]).await;
    assert_code(&r, "OK", gw);
    assert_eq!(r["sizes"], serde_json::json!(vec![1000; 5]), "{r}");
    assert_eq!(r["intact"], true, "{r}");

    let r = grpc(via, &["client_stream", "--count", "5", "--size", "1000"]).await;
    assert_code(&r, "OK", gw);
    assert_eq!(r["intact"], true, "{r}");

    // Ping-pong: each message waits for the previous reply, so a request
    // or reply stream held back anywhere runs into the deadline.
    let r = grpc(
        via,
        &["bidi", "--count", "5", "--size", "1000", "--timeout", "10"],
    )
    .await;
    assert_code(&r, "OK", gw);
    assert_eq!(r["intact"], true, "{r}");
    assert_eq!(r["sizes"], serde_json::json!(vec![1000; 5]), "{r}");

    server_error_passes_unchanged(via, gw).await;
}

/// The server's INVALID_ARGUMENT: code, message (also one that needs
/// gRPC's percent-encoding) and trailing metadata (text and binary) as
/// the server sent them.
async fn server_error_passes_unchanged(via: &Via, gw: &Gateway) {
    for (args, message) in [
        (vec!["fail"], "bad thing"),
        (
            vec!["fail", "--text", "bad thing: 100% \u{2717} ünïcode"],
            "bad thing: 100% \u{2717} ünïcode",
        ),
    ] {
        let r = grpc(via, &args).await;
        assert_code(&r, "INVALID_ARGUMENT", gw);
        assert_eq!(r["details"], message, "{r}");
        assert!(has_pair(&r["trailing"], "x-detail", "why"), "{r}");
        assert!(
            has_pair(&r["trailing"], "x-detail-bin", "hex:0001feff"),
            "{r}"
        );
        assert!(has_pair(&r["trailing"], "x-server", "one"), "{r}");
    }
}

#[tokio::test]
async fn the_four_call_kinds_and_a_server_error_pass_over_h2c() {
    let server = GrpcServer::start("one");
    let gw = grpc_gateway(&[server.addr], "", "");
    four_kinds_and_an_error(&Via::h2c(gw.addr()), &gw).await;
}

#[tokio::test]
async fn the_four_call_kinds_and_a_server_error_pass_over_tls() {
    let ca = Ca::new("gRPC test CA");
    let cert = ca.server(&["a.test"], false);
    let server = GrpcServer::start("one");
    let tls = "[listener.tls]\ncertificates = [{ cert = \"a.pem\", key = \"a.key\" }]";
    let gw = Gateway::with_config(grpc_config(tls, &[server.addr], "", ""))
        .file("ca.pem", ca.pem())
        .file("a.pem", cert.cert)
        .file("a.key", cert.key)
        .start();
    let via = Via {
        target: gw.addr(),
        tls: Some((gw.dir().join("ca.pem"), "a.test".into())),
    };
    four_kinds_and_an_error(&via, &gw).await;
}

/// The upstream side over TLS: a grpcio server with a certificate, reached
/// with `protocol = "h2"` (HTTP/2 by ALPN) and `protocol = "auto"` (ALPN
/// picks; grpcio picks h2).
#[tokio::test]
async fn the_four_call_kinds_pass_to_an_upstream_over_tls() {
    let ca = Ca::new("gRPC upstream CA");
    let cert = ca.server(&["grpc.test"], false);
    let certs = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (certs.path().join("s.pem"), certs.path().join("s.key"));
    std::fs::write(&cert_path, &cert.cert).unwrap();
    std::fs::write(&key_path, &cert.key).unwrap();
    let server = GrpcServer::start_with(
        "one",
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
    );
    for protocol in ["h2", "auto"] {
        let upstream = "tls = { ca = \"ca.pem\", sni = \"grpc.test\" }";
        let cfg = grpc_config("", &[server.addr], upstream, "")
            .replace("protocol = \"h2c\"", &format!("protocol = \"{protocol}\""));
        let gw = Gateway::with_config(cfg).file("ca.pem", ca.pem()).start();
        four_kinds_and_an_error(&Via::h2c(gw.addr()), &gw).await;
    }
}

/// A stream's messages are one request body, so three of 4 MiB need a
/// route `max_body_bytes` above the default 10 MiB; under the default the
/// client stream is refused with a gRPC status (413 is UNKNOWN in gRPC's
/// mapping of HTTP statuses).
#[tokio::test]
async fn four_mib_messages_pass_intact_in_every_call_kind() {
    let server = GrpcServer::start("one");
    let route = "max_body_bytes = \"64MiB\"";
    let gw = grpc_gateway(&[server.addr], "", route);
    let via = Via::h2c(gw.addr());
    let four_mib = (4 * 1024 * 1024).to_string();
    let size = four_mib.as_str();

    let r = grpc(&via, &["unary", "--size", size]).await;
    assert_code(&r, "OK", &gw);
    assert_eq!(r["sizes"], serde_json::json!([4 * 1024 * 1024]), "{r}");
    assert_eq!(r["intact"], true, "{r}");

    for case in ["server_stream", "client_stream", "bidi"] {
        let r = grpc(&via, &[case, "--count", "3", "--size", size]).await;
        assert_code(&r, "OK", &gw);
        assert_eq!(r["intact"], true, "{case}: {r}");
        assert_eq!(
            r["sizes"].as_array().map(Vec::len),
            Some(if case == "client_stream" { 1 } else { 3 }),
            "{case}: {r}"
        );
    }

    let limited = grpc_gateway(&[server.addr], "", "");
    let r = grpc(
        &Via::h2c(limited.addr()),
        &["client_stream", "--count", "3", "--size", size],
    )
    .await;
    assert_code(&r, "UNKNOWN", &limited);
    assert_not_from_http_status(&r);
}

/// A `sleep` call of `ms` milliseconds with a client deadline of
/// `timeout` seconds through `gw`, asserted to end in DEADLINE_EXCEEDED:
/// its result.
async fn sleep_past_a_deadline(gw: &Gateway, ms: &str, timeout: &str) -> Value {
    let r = grpc(
        &Via::h2c(gw.addr()),
        &["sleep", "--ms", ms, "--timeout", timeout],
    )
    .await;
    assert_code(&r, "DEADLINE_EXCEEDED", gw);
    r
}

#[tokio::test]
async fn a_client_deadline_shorter_than_the_route_timeout_ends_the_call_at_the_server_too() {
    let server = GrpcServer::start("one");
    let gw = grpc_gateway(&[server.addr], "timeout = \"10s\"", "");
    let r = sleep_past_a_deadline(&gw, "5000", "0.5").await;
    assert!(elapsed_ms(&r) < 3000, "{r}");
    // The server's call ended with the client's deadline, not after its
    // whole sleep: Weir passed the deadline on or ended the stream.
    let ended = eventually(Duration::from_secs(5), || async {
        !server.events("sleep_end").is_empty()
    })
    .await;
    assert!(ended, "the server's Sleep never ended");
    let end = &server.events("sleep_end")[0];
    assert_eq!(end["cancelled"], true, "{end}");
    assert!(end["after_ms"].as_u64().unwrap() < 3000, "{end}");
}

/// An h2c upstream that answers every request after `delay`, whatever its
/// `grpc-timeout` says: what Weir does with a deadline is then Weir's
/// alone. Records each request's `grpc-timeout`.
async fn slow_h2c_upstream(delay: Duration) -> (TcpServer, Arc<Mutex<Vec<Option<String>>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let server = h2c_upstream(handler(move |req: Request<Incoming>| {
        let timeout = req
            .headers()
            .get("grpc-timeout")
            .map(|v| v.to_str().unwrap_or("?").to_owned());
        record.lock().unwrap().push(timeout);
        async move {
            drop(req.into_body());
            tokio::time::sleep(delay).await;
            Response::builder()
                .header("content-type", "application/grpc")
                .header("grpc-status", "0")
                .body(full(Bytes::new()))
                .unwrap()
        }
    }))
    .await;
    (server, seen)
}

/// A gRPC request as bytes on the wire would have it, over h2c: POST,
/// `content-type: application/grpc`, `te: trailers`, one empty
/// length-prefixed message, and `headers`.
async fn raw_grpc(gw: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut b = Request::post(format!("http://{gw}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let body = Full::new(Bytes::from_static(&[0, 0, 0, 0, 0]));
    send(&h2c_client(), b.body(body).unwrap()).await
}

/// Asserts that `r` is a gRPC trailers-only answer with status `code`:
/// HTTP 200, a gRPC content type, `grpc-status` and `grpc-message` in the
/// one header block, and no body.
fn assert_trailers_only(r: &Reply, code: u32, gw: &Gateway) {
    let logs = gw.logs_for_failure();
    assert_eq!(r.status, 200, "{r:?}\n{logs}");
    assert_eq!(
        r.header("grpc-status"),
        Some(code.to_string().as_str()),
        "{r:?}\n{logs}"
    );
    assert!(r.header("grpc-message").is_some(), "{r:?}");
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("application/grpc")),
        "{r:?}"
    );
    assert!(r.body.is_empty(), "{r:?}");
}

/// Asserts Weir's own error status `code` (`number` on the wire) for a
/// call to `method`, both ways: in `r`, what the grpcio client read, as a
/// status Weir sent (not one grpcio made up from an HTTP status), and on
/// the wire as the trailers-only answer to a raw call.
async fn assert_weirs_own_status(gw: &Gateway, r: &Value, code: &str, number: u32, method: &str) {
    assert_code(r, code, gw);
    assert_not_from_http_status(r);
    let raw = raw_grpc(gw.addr(), method, &[]).await;
    assert_trailers_only(&raw, number, gw);
}

#[tokio::test]
async fn grpc_timeout_caps_the_route_deadline() {
    let (up, seen) = slow_h2c_upstream(Duration::from_secs(5)).await;
    let gw = grpc_gateway(&[up.addr], "timeout = \"10s\"", "");
    let started = Instant::now();
    let r = raw_grpc(gw.addr(), "/echo.Echo/Sleep", &[("grpc-timeout", "300m")]).await;
    let took = started.elapsed();
    assert_trailers_only(&r, 4, &gw);
    assert!(
        took < Duration::from_secs(3),
        "answered after {took:?}, not at the client's 300 ms deadline"
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "the request reached the upstream"
    );
}

#[tokio::test]
async fn the_route_timeout_answers_deadline_exceeded_before_a_longer_client_deadline() {
    let server = GrpcServer::start("one");
    let gw = grpc_gateway(&[server.addr], "timeout = \"500ms\"", "");
    let r = sleep_past_a_deadline(&gw, "3000", "10").await;
    // Weir's 500 ms, not the client's 10 s nor the server's 3 s.
    assert!(elapsed_ms(&r) < 2500, "{r}");

    let r = raw_grpc(gw.addr(), "/echo.Echo/Sleep", &[]).await;
    assert_trailers_only(&r, 4, &gw);
}

#[tokio::test]
async fn no_route_is_unimplemented() {
    let server = GrpcServer::start("one");
    let gw = grpc_gateway(&[server.addr], "", "");
    let r = grpc(
        &Via::h2c(gw.addr()),
        &["call", "--method", "/other.Service/Method"],
    )
    .await;
    // grpcio maps a bare HTTP 404 to UNIMPLEMENTED too, saying so.
    assert_weirs_own_status(&gw, &r, "UNIMPLEMENTED", 12, "/other.Service/Method").await;
    // A request that is not gRPC keeps its HTTP status.
    let r = get(&h2c_client(), &gw.url("/other.Service/Method"), &[]).await;
    assert_eq!(r.status, 404, "{r:?}");
}

#[tokio::test]
async fn an_upstream_that_refuses_connections_is_unavailable() {
    let closed = ClosedPort::new();
    let gw = grpc_gateway(&[closed.addr()], "", "");
    let r = grpc(&Via::h2c(gw.addr()), &["unary", "--text", "x"]).await;
    assert_weirs_own_status(&gw, &r, "UNAVAILABLE", 14, "/echo.Echo/Unary").await;
}

#[tokio::test]
async fn a_full_pending_request_limit_is_unavailable() {
    let server = GrpcServer::start("one");
    let gw = grpc_gateway(&[server.addr], "max_pending_requests = 1", "");
    let via = Arc::new(Via::h2c(gw.addr()));

    // One call waits for its answer (grpcio sends a unary call's head with
    // its reply), which fills the limit of one.
    let first = {
        let via = via.clone();
        tokio::spawn(async move { grpc(&via, &["sleep", "--ms", "6000"]).await })
    };
    let sleeping = eventually(Duration::from_secs(20), || async {
        !server.events("sleep").is_empty()
    })
    .await;
    assert!(sleeping, "the first call never reached the server");

    let r = grpc(&via, &["unary", "--text", "x"]).await;
    assert_code(&r, "UNAVAILABLE", &gw);
    assert!(elapsed_ms(&r) < 2000, "not at once: {r}");
    let r = raw_grpc(gw.addr(), "/echo.Echo/Unary", &[]).await;
    assert_trailers_only(&r, 14, &gw);

    let r = first.await.unwrap();
    assert_code(&r, "OK", &gw);
    assert_eq!(r["text"], "slept", "{r}");
    // With the first answered, the limit has room again.
    let r = grpc(&via, &["unary", "--text", "x"]).await;
    assert_code(&r, "OK", &gw);
}

#[tokio::test]
async fn a_plugin_refusal_is_unauthenticated_and_plugin_headers_reach_the_server() {
    let server = GrpcServer::start("one");
    let route = r#"plugins = [
  { name = "api-key", config = { keys = { "k-grpc-1" = "grpc-app" } } },
  { name = "header-rewrite", config = { set_name = "x-from-plugin", set_value = "header-rewrite", remove = "x-remove-me" } },
]"#;
    let gw = Gateway::with_config(grpc_config("", &[server.addr], "", route))
        .file("plugins/api-key.wasm", bundled("api-key"))
        .file("plugins/header-rewrite.wasm", bundled("header-rewrite"))
        .start();
    let via = Via::h2c(gw.addr());

    let r = grpc(&via, &["metadata"]).await;
    assert_weirs_own_status(&gw, &r, "UNAUTHENTICATED", 16, "/echo.Echo/Metadata").await;

    let r = grpc(
        &via,
        &[
            "metadata",
            "--metadata",
            "x-api-key=k-grpc-1",
            "--metadata",
            "x-remove-me=1",
            "--metadata",
            "x-kept=yes",
        ],
    )
    .await;
    assert_code(&r, "OK", &gw);
    let seen = &r["seen"];
    assert!(has_pair(seen, "x-consumer", "grpc-app"), "{r}");
    assert!(has_pair(seen, "x-from-plugin", "header-rewrite"), "{r}");
    assert!(has_pair(seen, "x-kept", "yes"), "{r}");
    for gone in ["x-api-key", "x-remove-me"] {
        assert!(
            !seen.as_array().unwrap().iter().any(|p| p[0] == gone),
            "{gone} reached the server: {r}"
        );
    }
}

/// Runs `call` until its result passes `check`, for at most `within`:
/// whether one did, and the last result (what a failure shows).
async fn until<F, Fut>(
    within: Duration,
    mut call: F,
    check: impl Fn(&Value) -> bool,
) -> (bool, Value)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    let deadline = Instant::now() + within;
    loop {
        let last = call().await;
        if check(&last) {
            return (true, last);
        }
        if Instant::now() > deadline {
            return (false, last);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two servers behind one upstream with gRPC health checks asking about
/// `service`; `not_serving` is the health file text that takes `one` out.
async fn health_check_ejects_and_restores(service: &str, not_serving: &str) {
    let one = GrpcServer::start("one");
    let two = GrpcServer::start("two");
    let upstream = format!(
        r#"panic_threshold = 0

[upstream.health_check]
type = "grpc"
service = "{service}"
interval = "200ms"
timeout = "1s"
unhealthy_threshold = 1
healthy_threshold = 1"#
    );
    let gw = grpc_gateway(&[one.addr, two.addr], &upstream, "");
    let via = Via::h2c(gw.addr());

    // Both serve (once their first checks passed, if Weir waits for them).
    let (both, last) = until(
        Duration::from_secs(10),
        || grpc(&via, &["whoami", "--count", "10"]),
        |r| {
            let n = names(r);
            r["code"] == "OK" && n.iter().any(|n| n == "one") && n.iter().any(|n| n == "two")
        },
    )
    .await;
    assert!(both, "not both served: {last}\n{}", gw.logs_for_failure());

    // `one` reports NOT_SERVING: after a few intervals every call lands on
    // `two`, and stays there.
    one.set_health(not_serving);
    let (ejected, last) = until(
        Duration::from_secs(10),
        || grpc(&via, &["whoami", "--count", "10"]),
        |r| r["code"] == "OK" && names(r).iter().all(|n| n == "two"),
    )
    .await;
    assert!(
        ejected,
        "`one` still served after NOT_SERVING: {last}\n{}",
        gw.logs_for_failure()
    );
    let r = grpc(&via, &["whoami", "--count", "20"]).await;
    assert_code(&r, "OK", &gw);
    assert!(names(&r).iter().all(|n| n == "two"), "{r}");

    // SERVING again: `one` is back.
    one.set_health("SERVING");
    let (restored, last) = until(
        Duration::from_secs(10),
        || grpc(&via, &["whoami", "--count", "10"]),
        |r| names(r).iter().any(|n| n == "one"),
    )
    .await;
    assert!(
        restored,
        "`one` did not come back: {last}\n{}",
        gw.logs_for_failure()
    );
}

#[tokio::test]
async fn the_grpc_health_check_ejects_a_server_not_serving_and_brings_it_back() {
    health_check_ejects_and_restores("", "NOT_SERVING").await;
}

/// With `service` set, that service's status decides: the server as a
/// whole still reports SERVING, so a check that asked about "" instead
/// would keep the endpoint in.
#[tokio::test]
async fn the_grpc_health_check_asks_about_the_service_it_names() {
    health_check_ejects_and_restores("echo.Echo", "echo.Echo=NOT_SERVING\n=SERVING").await;
}
