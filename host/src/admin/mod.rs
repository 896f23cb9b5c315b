//! The admin listener: a small HTTP/1.1 server for operators, on loopback
//! by default, separate from traffic listeners. It answers `GET /healthz`,
//! `GET /admin/config` (what configuration serves, how the last reload
//! went, and each TLS listener's certificates), `GET /admin/tls` (the TLS
//! listeners alone, with their handshake counts), `GET /admin/plugins`
//! (which version of each plugin serves and how the last deployment of
//! its file went), `GET /admin/upstreams` (what the balancers see) as
//! JSON, and `GET /metrics` (the `metrics` registry's exposition). With
//! `[admin] token_file` every endpoint but `/healthz` asks for that bearer
//! token. The metrics listener (`[admin] metrics_address`) is the same
//! server answering only `/metrics` and `/healthz`, without the token, for
//! scrapers. It owns the status records those views show (`status`);
//! `control` updates them and hands over the token and upstream names of
//! the configuration serving ([`AdminState::apply`]).

mod status;
mod upstreams;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::{AdminToken, Config};
use crate::router::Router;
pub use status::{
    Attempt, BreakerView, ConfigStatus, MAX_PLUGIN_ENTRIES, PluginAttempt, PluginStatus,
    PluginsStatus, ShareView, now_rfc3339, rfc3339,
};

/// Connections one admin or metrics listener serves at once; more wait in
/// the backlog.
const MAX_ADMIN_CONNECTIONS: usize = 64;
/// Time an admin client has to send its request head.
const ADMIN_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Which endpoints a listener answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// Every endpoint, behind the token when there is one.
    Admin,
    /// `/metrics` and `/healthz` only, without a token.
    Metrics,
}

/// Shared status behind the admin views.
#[derive(Debug)]
pub struct AdminState {
    pub config: Mutex<ConfigStatus>,
    pub plugins: Mutex<PluginsStatus>,
    /// Each TLS listener's state, by name (fixed for the process's life).
    pub tls: Vec<(String, Arc<crate::tls::TlsListener>)>,
    /// The route table the workers read; `/admin/upstreams` shows its
    /// upstreams.
    router: Arc<ArcSwap<Router>>,
    serving: Mutex<Serving>,
}

/// What the admin listener takes from the configuration serving.
#[derive(Debug, Default)]
struct Serving {
    token: Option<AdminToken>,
    /// Upstream names in the configuration's order.
    upstreams: Vec<String>,
}

impl AdminState {
    pub fn new(
        config: ConfigStatus,
        tls: Vec<(String, Arc<crate::tls::TlsListener>)>,
        router: Arc<ArcSwap<Router>>,
    ) -> AdminState {
        AdminState {
            config: Mutex::new(config),
            plugins: Mutex::default(),
            tls,
            router,
            serving: Mutex::default(),
        }
    }

    /// Takes the token and the upstream names of the configuration now
    /// serving (at start-up and after each applied reload): a changed
    /// token file takes effect here, a removed one only where the
    /// configuration allows it (`server::Gateway::reload`).
    pub fn apply(&self, config: &Config) {
        let mut serving = self.serving.lock().unwrap_or_else(|e| e.into_inner());
        serving.token = config.admin.as_ref().and_then(|a| a.token);
        serving.upstreams = config.upstreams.iter().map(|u| u.name.clone()).collect();
    }
}

/// Serves `surface` on an already bound listener until the task is
/// dropped.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, surface: Surface) {
    let slots = Arc::new(Semaphore::new(MAX_ADMIN_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
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
                async move { Ok::<_, Infallible>(route(&state, surface, &req, peer)) }
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

fn route(
    state: &AdminState,
    surface: Surface,
    req: &Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    // Load balancers and orchestrators probe /healthz without a token.
    if path != "/healthz" {
        match surface {
            Surface::Metrics if path != "/metrics" => {
                return json(
                    StatusCode::NOT_FOUND,
                    &serde_json::json!({"error": "not found", "endpoints": ["/healthz", "/metrics"]}),
                );
            }
            Surface::Metrics => {}
            Surface::Admin => {
                let token = state
                    .serving
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .token;
                if !authorized(token.as_ref(), req.headers()) {
                    // The peer and the path only: what was presented
                    // could be the token with a typo.
                    tracing::warn!(%peer, path, "admin request refused: no valid bearer token");
                    return unauthorized();
                }
            }
        }
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return json(
            StatusCode::METHOD_NOT_ALLOWED,
            &serde_json::json!({"error": "only GET is supported"}),
        );
    }
    match path {
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/metrics" => {
            let openmetrics = crate::metrics::wants_openmetrics(req.headers().get(header::ACCEPT));
            let (content_type, body) = crate::metrics::render(openmetrics);
            text(StatusCode::OK, content_type, body)
        }
        "/admin/config" => {
            let status = state
                .config
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let mut view = serde_json::to_value(&status).unwrap_or_default();
            view["tls"] = status::tls_view(state);
            json(StatusCode::OK, &view)
        }
        "/admin/tls" => json(StatusCode::OK, &status::tls_view(state)),
        "/admin/plugins" => {
            let status = state.plugins.lock().unwrap_or_else(|e| e.into_inner());
            json(StatusCode::OK, &status.view())
        }
        "/admin/upstreams" => {
            let names = state
                .serving
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .upstreams
                .clone();
            json(
                StatusCode::OK,
                &upstreams::view(&state.router.load(), &names),
            )
        }
        _ => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "not found", "endpoints": [
                "/healthz", "/metrics", "/admin/config", "/admin/plugins", "/admin/tls",
                "/admin/upstreams",
            ]}),
        ),
    }
}

/// Whether the request may see the admin API: there is no token, or it
/// carries `Authorization: Bearer <token>` (RFC 6750 section 2.1; the
/// scheme is case-insensitive, RFC 9110 section 11.1).
fn authorized(token: Option<&AdminToken>, headers: &HeaderMap) -> bool {
    let Some(token) = token else {
        return true;
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    match value.as_bytes().split_at_checked(7) {
        Some((scheme, presented)) if scheme.eq_ignore_ascii_case(b"bearer ") => {
            token.matches(presented.trim_ascii())
        }
        _ => false,
    }
}

/// One answer for a missing token and a wrong one, so a client learns
/// nothing from which it got (RFC 9110 section 11.6.1 asks for the
/// challenge on every 401).
fn unauthorized() -> Response<Full<Bytes>> {
    let mut resp = json(
        StatusCode::UNAUTHORIZED,
        &serde_json::json!({"error": "unauthorized: send `Authorization: Bearer <token>`"}),
    );
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer realm=\"weir-admin\""),
    );
    resp
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> AdminToken {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "0123456789abcdef\n").unwrap();
        AdminToken::read(&path).unwrap()
    }

    fn with(authorization: Option<&[u8]>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = authorization {
            h.insert(
                header::AUTHORIZATION,
                http::HeaderValue::from_bytes(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn only_the_bearer_token_is_authorized() {
        let t = token();
        let yes = |v: &[u8]| authorized(Some(&t), &with(Some(v)));
        assert!(yes(b"Bearer 0123456789abcdef"));
        assert!(yes(b"bearer 0123456789abcdef"));
        assert!(yes(b"BEARER  0123456789abcdef "));
        assert!(!yes(b"Bearer 0123456789abcde"));
        assert!(!yes(b"Bearer 0123456789abcdeF"));
        assert!(!yes(b"Basic 0123456789abcdef"));
        assert!(!yes(b"Bearer"));
        assert!(!yes(b"0123456789abcdef"));
        assert!(!authorized(Some(&t), &with(None)));
        // Without a token the admin API is open (loopback only, which
        // configuration validation enforces).
        assert!(authorized(None, &with(None)));
    }

    #[test]
    fn the_refusal_carries_a_bearer_challenge() {
        let r = unauthorized();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(
            r.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer ")
        );
    }
}
