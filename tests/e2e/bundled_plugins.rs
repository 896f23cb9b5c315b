//! The bundled plugins of plugins/, built once per test run for
//! wasm32-wasip2 exactly as an operator builds them, each through the real
//! gateway with real upstreams: api-key, jwt-auth, rate-limit, transform,
//! canary, and noop with header-rewrite chained.

use std::path::PathBuf;
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::Response;
use http_body_util::{BodyExt, Full};
use sha2::Sha256;

use crate::plugins_support::build_wasm_workspace;
use crate::support::upstream::full;
use crate::support::*;

/// A bundled plugin's release build, by its route name (`api-key`).
pub fn bundled(name: &str) -> Vec<u8> {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| build_wasm_workspace("plugins", "bundled-plugins"));
    let path = dir.join(format!("{}.wasm", name.replace('-', "_")));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn start(config: String, plugins: &[&str]) -> Gateway {
    let mut b = Gateway::with_config(config);
    for p in plugins {
        b = b.file(&format!("plugins/{p}.wasm"), bundled(p));
    }
    b.start()
}

fn header_of(v: &serde_json::Value, name: &str) -> Option<String> {
    v["headers"][name].as_str().map(str::to_owned)
}

#[tokio::test]
async fn api_key() {
    let up = Upstream::echo("app").await;
    let routes = r#"
[[route]]
upstream = "app"
plugins = [{ name = "api-key", config = { keys = { "k-alice-1" = "alice" } } }]
"#;
    let gw = start(config("", &[("app", up.addr)], routes), &["api-key"]);
    let c = client();

    for headers in [vec![], vec![("x-api-key", "wrong")]] {
        let r = get(&c, &gw.url("/x"), &headers).await;
        assert_eq!(r.status, 401, "{headers:?}: {}", r.text());
        assert!(
            r.header("www-authenticate")
                .is_some_and(|v| v.contains("ApiKey"))
        );
    }
    assert_eq!(up.count(), 0, "an unauthenticated request was forwarded");

    let r = get(
        &c,
        &gw.url("/x"),
        &[("x-api-key", "k-alice-1"), ("x-consumer", "admin")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.json();
    assert_eq!(header_of(&seen, "x-consumer").as_deref(), Some("alice"));
    assert!(
        header_of(&seen, "x-api-key").is_none(),
        "the key was forwarded: {seen}"
    );
}

fn hs256_token(secret: &[u8], claims: &serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing = format!("{header}.{payload}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(signing.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing}.{sig}")
}

#[tokio::test]
async fn jwt_auth() {
    let up = Upstream::echo("app").await;
    let secret = "0123456789abcdef0123456789abcdef";
    let routes = format!(
        r#"
[[route]]
upstream = "app"
plugins = [{{ name = "jwt-auth", config = {{ hs256_secret = "{secret}", issuer = "weir-test", audience = "api", forward_claims = {{ sub = "x-user" }} }} }}]
"#
    );
    let gw = start(config("", &[("app", up.addr)], &routes), &["jwt-auth"]);
    let c = client();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |exp: u64| serde_json::json!({"sub": "user-42", "iss": "weir-test", "aud": "api", "exp": exp});

    let good = hs256_token(secret.as_bytes(), &claims(now + 300));
    let r = get(
        &c,
        &gw.url("/x"),
        &[
            ("authorization", &format!("Bearer {good}")),
            ("x-user", "spoofed"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(header_of(&r.json(), "x-user").as_deref(), Some("user-42"));

    let expired = hs256_token(secret.as_bytes(), &claims(now - 3600));
    let forged = hs256_token(b"another-secret-another-secret-xx", &claims(now + 300));
    for (what, auth) in [
        ("expired", format!("Bearer {expired}")),
        ("forged", format!("Bearer {forged}")),
        ("missing", String::new()),
    ] {
        let headers: Vec<(&str, &str)> = if auth.is_empty() {
            vec![]
        } else {
            vec![("authorization", auth.as_str())]
        };
        let r = get(&c, &gw.url("/x"), &headers).await;
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        assert!(
            r.header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")),
            "{what}"
        );
    }
    assert_eq!(up.count(), 1, "a rejected token was forwarded");
}

#[tokio::test]
async fn rate_limit() {
    let up = Upstream::echo("app").await;
    let routes = r#"
[[route]]
upstream = "app"
plugins = [{ name = "rate-limit", config = { capacity = 2, refill_per_second = 1, key = "header", header = "x-client" } }]
"#;
    let gw = start(config("", &[("app", up.addr)], routes), &["rate-limit"]);
    let c = client();
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        let r = get(&c, &gw.url("/x"), &[("x-client", "one")]).await;
        statuses.push(r.status);
        last = Some(r);
    }
    assert_eq!(statuses, [200, 200, 429]);
    let limited = last.unwrap();
    assert!(
        limited.header("retry-after").is_some(),
        "{:?}",
        limited.headers
    );
    assert_eq!(limited.header("ratelimit-limit"), Some("2"));
    assert_eq!(limited.header("ratelimit-remaining"), Some("0"));
    // Another client has its own bucket.
    assert_eq!(
        get(&c, &gw.url("/x"), &[("x-client", "two")]).await.status,
        200
    );
    assert_eq!(up.count(), 3);
}

#[tokio::test]
async fn transform() {
    // An upstream that answers with the body it received.
    let up = Upstream::start(|req: http::Request<hyper::body::Incoming>| async move {
        let target = req.uri().to_string();
        let cookie = req.headers().get("cookie").is_some();
        let env = req
            .headers()
            .get("x-env")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        Response::builder()
            .header("x-target", target)
            .header("x-had-cookie", cookie.to_string())
            .header("x-env-seen", env)
            .header("server", "upstream/1.0")
            .body(full(body))
            .unwrap()
    })
    .await;
    let routes = r#"
[[route]]
upstream = "app"
path_prefix = "/v1"

[[route.plugins]]
name = "transform"

[route.plugins.config]
request_headers = { remove = ["cookie"], set = { "x-env" = "prod" } }
response_headers = { remove = ["server"], add = { "cache-control" = "no-store" } }
path = { pattern = "^/v1/users/([0-9]+)$", replacement = "/v2/accounts/$1" }
json_body = { remove = ["/is_admin"], set = { "/source" = "gateway" } }
"#;
    let gw = start(config("", &[("app", up.addr)], routes), &["transform"]);
    let c = client();
    let req = http::Request::post(gw.url("/v1/users/7?x=1"))
        .header("cookie", "session=1")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"name":"a","is_admin":true}"#,
        )))
        .unwrap();
    let r = send(&c, req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-target"), Some("/v2/accounts/7?x=1"));
    assert_eq!(r.header("x-had-cookie"), Some("false"));
    assert_eq!(r.header("x-env-seen"), Some("prod"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(r.header("server").is_none());
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body, serde_json::json!({"name": "a", "source": "gateway"}));
}

#[tokio::test]
async fn canary() {
    let stable = Upstream::echo("stable").await;
    let canary = Upstream::echo("canary").await;
    let routes = r#"
[[route]]
upstream = "stable"
plugins = [{ name = "canary", config = { upstream = "canary", percent = 0, header = { name = "x-beta", values = ["1"] } } }]
"#;
    let gw = start(
        config(
            "",
            &[("stable", stable.addr), ("canary", canary.addr)],
            routes,
        ),
        &["canary"],
    );
    let c = client();
    let r = get(&c, &gw.url("/"), &[]).await;
    assert_eq!(r.json()["server"], "stable");
    let cookie = r.header("set-cookie").unwrap_or_default().to_owned();
    assert!(cookie.starts_with("weir_canary=stable"), "{cookie}");
    let r = get(&c, &gw.url("/"), &[("x-beta", "1")]).await;
    assert_eq!(r.json()["server"], "canary");
    let r = get(&c, &gw.url("/"), &[("cookie", "weir_canary=canary")]).await;
    assert_eq!(r.json()["server"], "canary");
}

#[tokio::test]
async fn noop_and_header_rewrite_chained() {
    let up = Upstream::echo("app").await;
    let routes = r#"
[[route]]
upstream = "app"
plugins = [
  { name = "noop" },
  { name = "header-rewrite", config = { set_name = "x-env", set_value = "bench", remove = "cookie" } },
]
"#;
    let gw = start(
        config("", &[("app", up.addr)], routes),
        &["noop", "header-rewrite"],
    );
    let r = get(&client(), &gw.url("/"), &[("cookie", "a=1")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.json();
    assert_eq!(header_of(&seen, "x-env").as_deref(), Some("bench"));
    assert!(header_of(&seen, "cookie").is_none(), "{seen}");
}

/// A raw endpoint that answers every request (bodiless, read to its
/// blank line) with `answer`, keeping the connection.
async fn canned(answer: &'static [u8]) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut buf, mut chunk) = (Vec::new(), [0u8; 4096]);
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        if s.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_request_phase_plugin_leaves_the_response_head_as_received() {
    let up = canned(
        b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-Mid: 1\r\nSet-Cookie: b=2\r\n\
          Keep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    let routes = r#"
[[route]]
upstream = "app"
path_prefix = "/request-phase"
plugins = [{ name = "noop" }]

[[route]]
upstream = "app"
path_prefix = "/response-phase"
plugins = [{ name = "transform", config = { response_headers = { add = { "x-transformed" = "1" } } } }]
"#;
    let gw = start(config("", &[("app", up)], routes), &["noop", "transform"]);
    let get = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").into_bytes()
    };
    let wait = std::time::Duration::from_secs(5);

    // noop takes only the request phase: the fields go out as received,
    // in their order and case, less the hop-by-hop one.
    let text = raw(gw.addr(), &get("/request-phase"), wait).await;
    assert_eq!(raw_status(&text), Some(200), "{text}");
    assert!(
        text.contains("\r\nSet-Cookie: a=1\r\nX-Mid: 1\r\nSet-Cookie: b=2\r\n"),
        "{text}"
    );
    assert!(!text.to_ascii_lowercase().contains("keep-alive"), "{text}");
    assert!(text.ends_with("\r\n\r\nok"), "{text}");

    // transform takes the response phase: it sees (and edits) a map of
    // the same fields.
    let text = raw(gw.addr(), &get("/response-phase"), wait).await;
    assert_eq!(raw_status(&text), Some(200), "{text}");
    let lower = text.to_ascii_lowercase();
    assert!(lower.contains("\r\nx-transformed: 1\r\n"), "{text}");
    assert!(lower.contains("\r\nset-cookie: a=1\r\n"), "{text}");
    assert!(lower.contains("\r\nset-cookie: b=2\r\n"), "{text}");
    assert!(lower.contains("\r\nx-mid: 1\r\n"), "{text}");
    assert!(!lower.contains("keep-alive"), "{text}");
    assert!(text.ends_with("\r\n\r\nok"), "{text}");
}
