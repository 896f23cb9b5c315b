//! The admin listener: a small HTTP/1.1 server for operators, on loopback
//! by default, separate from traffic listeners. It answers `GET /healthz`
//! and `GET /admin/config` (what configuration serves and how the last
//! reload went) as JSON. It owns the status records those views show;
//! other modules update them.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Admin connections served at once; more wait in the backlog.
const MAX_ADMIN_CONNECTIONS: usize = 64;
/// Time an admin client has to send its request head.
const ADMIN_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// One attempt to apply a configuration (start-up or reload).
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// RFC 3339 time of the attempt.
    pub at: String,
    /// What started it: `startup`, `file-change` or `sighup`.
    pub trigger: String,
    /// `applied` or `rejected`.
    pub outcome: &'static str,
    /// Every problem, for a rejected attempt.
    pub errors: Vec<String>,
    /// Changed settings that only a restart applies.
    pub needs_restart: Vec<String>,
    /// sha256 of the file as read.
    pub sha256: Option<String>,
}

/// What the admin views show about configuration.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigStatus {
    pub path: String,
    /// sha256 of the file serving now.
    pub sha256: String,
    /// When the serving configuration was applied (RFC 3339).
    pub applied_at: String,
    pub last_attempt: Option<Attempt>,
}

/// Shared status behind the admin views.
#[derive(Debug)]
pub struct AdminState {
    pub config: Mutex<ConfigStatus>,
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// Serves the admin API on an already bound listener until the task is
/// dropped.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    let slots = Arc::new(Semaphore::new(MAX_ADMIN_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, _) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, &req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(ADMIN_HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
            drop(permit);
        });
    }
}

fn route(state: &AdminState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return json(
            StatusCode::METHOD_NOT_ALLOWED,
            &serde_json::json!({"error": "only GET is supported"}),
        );
    }
    match req.uri().path() {
        "/healthz" => Response::builder()
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Full::new(Bytes::from_static(b"ok\n")))
            .expect("static response"),
        "/admin/config" => {
            let status = state
                .config
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            json(StatusCode::OK, &status)
        }
        _ => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "not found", "endpoints": ["/healthz", "/admin/config"]}),
        ),
    }
}

fn json(status: StatusCode, value: &impl Serialize) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts")
}
