//! The bundled plugins that call other services, built as an operator
//! builds them, through the real gateway with real services on port 0:
//! `ext-auth` asking an authorization service (its answer passed on, its
//! decision cached, its absence a 503), and `jwt-auth` with keys from a
//! JWKS endpoint (fetched once and shared, fetched again for an unknown
//! `kid` at most once per `min_refresh_interval`, refreshed in the
//! background so a rotated-out key stops being accepted).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::bundled_plugins::bundled;
use crate::support::jwt::{Signer, jwks, tampered};
use crate::support::upstream::{ClosedPort, UpstreamRequest, full};
use crate::support::*;

/// The headers the app upstream (an echo server) received, from its answer.
fn seen_header(reply: &Reply, name: &str) -> Option<String> {
    reply.json()["headers"][name].as_str().map(str::to_owned)
}

/// An authorization service: `Bearer alice-secret` and `Bearer
/// bob-secret` are allowed (200, `x-user` naming the user), anything else
/// refused (401 with a challenge and a body). It records every request.
async fn auth_service() -> Upstream {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let mut up = Upstream::start(move |req: Request<Incoming>| {
        let record = record.clone();
        async move {
            record.lock().unwrap().push(UpstreamRequest {
                method: req.method().to_string(),
                target: req.uri().to_string(),
                headers: req.headers().clone(),
                body_bytes: 0,
                complete: true,
            });
            let user = match req.headers().get("authorization").map(|v| v.as_bytes()) {
                Some(b"Bearer alice-secret") => Some("alice"),
                Some(b"Bearer bob-secret") => Some("bob"),
                _ => None,
            };
            match user {
                Some(user) => Response::builder()
                    .header("x-user", user)
                    .header("x-internal", "not for the app")
                    .body(full("ok"))
                    .unwrap(),
                None => Response::builder()
                    .status(401)
                    .header("www-authenticate", "Bearer realm=\"weir-test\"")
                    .header("content-type", "text/plain")
                    .header("x-internal", "not for the client")
                    .body(full("who are you?"))
                    .unwrap(),
            }
        }
    })
    .await;
    up.seen = seen;
    up
}

#[tokio::test]
async fn ext_auth_asks_the_service_passes_its_answer_and_caches_it() {
    let app = Upstream::echo("app").await;
    let auth = auth_service().await;
    let down = ClosedPort::new();
    let routes = r#"
[plugin_limits.ext-auth]
calls = ["auth", "down"]

[[route]]
name = "api"
upstream = "app"
path_prefix = "/api"
rewrite_prefix = "/v2"
plugins = [{ name = "ext-auth", config = { upstream = "auth", path = "/check", upstream_headers = ["x-user"], consumer_header = "x-user", cache_ttl = "60s" } }]

[[route]]
name = "down"
upstream = "app"
path_prefix = "/down"
plugins = [{ name = "ext-auth", config = { upstream = "down", path = "/check" } }]

[access_log]
path = "access.log"
"#;
    let cfg = config(
        "",
        &[
            ("app", app.addr),
            ("auth", auth.addr),
            ("down", down.addr()),
        ],
        routes,
    );
    let gw = Gateway::with_config(cfg)
        .file("plugins/ext-auth.wasm", bundled("ext-auth"))
        .start();
    let c = client();

    // Refused: the client gets the service's status, challenge and body,
    // not its other headers; the app gets nothing. A refusal is not kept
    // (deny_ttl is 0): asked again, the service is asked again.
    for (i, headers) in [
        vec![],
        vec![("authorization", "Bearer mallory")],
        vec![("authorization", "Bearer mallory")],
    ]
    .into_iter()
    .enumerate()
    {
        let r = get(&c, &gw.url("/api/orders"), &headers).await;
        assert_eq!(r.status, 401, "{headers:?}: {}", r.text());
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"weir-test\"")
        );
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert_eq!(r.text(), "who are you?");
        assert!(r.header("x-internal").is_none(), "{:?}", r.headers);
        assert_eq!(
            auth.count(),
            i + 1,
            "{headers:?}: the service was not asked"
        );
    }
    assert_eq!(app.count(), 0, "a refused request was forwarded");

    // Allowed: the app gets the service's x-user, never the client's, and
    // the path as rewritten; the service was told the credential, the
    // method and that path, and nothing else of the client's.
    let r = get(
        &c,
        &gw.url("/api/orders?id=7"),
        &[
            ("authorization", "Bearer alice-secret"),
            ("x-user", "admin"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), gw.logs_for_failure());
    assert_eq!(r.json()["target"], "/v2/orders?id=7");
    assert_eq!(seen_header(&r, "x-user").as_deref(), Some("alice"));
    assert!(seen_header(&r, "x-internal").is_none(), "{}", r.text());
    assert_eq!(auth.count(), 4);
    let asked = auth.seen.lock().unwrap()[3].clone();
    assert_eq!(
        (asked.method.as_str(), asked.target.as_str()),
        ("GET", "/check")
    );
    let h = |name: &str| asked.headers.get(name).and_then(|v| v.to_str().ok());
    assert_eq!(h("authorization"), Some("Bearer alice-secret"));
    assert_eq!(h("x-forwarded-method"), Some("GET"));
    assert_eq!(h("x-forwarded-uri"), Some("/v2/orders?id=7"));
    assert_eq!(h("x-user"), None, "the client's x-user reached the service");

    // The same credential again, with another forged x-user: answered from
    // the cache, without asking the service.
    let r = get(
        &c,
        &gw.url("/api/other"),
        &[("authorization", "Bearer alice-secret"), ("x-user", "root")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(seen_header(&r, "x-user").as_deref(), Some("alice"));
    assert_eq!(auth.count(), 4, "a cached decision was asked again");

    // Another credential is asked about, with its own method.
    let req = http::Request::post(gw.url("/api/items"))
        .header("authorization", "Bearer bob-secret")
        .body(Full::default())
        .unwrap();
    let r = send(&c, req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(seen_header(&r, "x-user").as_deref(), Some("bob"));
    assert_eq!(auth.count(), 5);
    let asked = auth.seen.lock().unwrap()[4].clone();
    assert_eq!(asked.headers["x-forwarded-method"], "POST");
    assert_eq!(asked.headers["x-forwarded-uri"], "/v2/items");
    assert_eq!(app.count(), 3);

    // No service to ask: 503, and the request goes no further.
    let r = get(
        &c,
        &gw.url("/down/x"),
        &[("authorization", "Bearer alice-secret")],
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"], "authorization service unavailable");
    assert_eq!(app.count(), 3, "a request nobody authorized was forwarded");

    // The access log names each allowed request's consumer, from the
    // service's answer or the cache, and never holds a credential.
    let path = gw.dir().join("access.log");
    let lines = || {
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    assert!(eventually(Duration::from_secs(10), || async { lines().len() >= 7 }).await);
    let log = lines();
    let mut consumers: Vec<(u64, Option<&str>)> = log
        .iter()
        .map(|l| {
            (
                l["status"].as_u64().unwrap(),
                l["plugin"]["consumer"].as_str(),
            )
        })
        .collect();
    consumers.sort();
    assert_eq!(
        consumers,
        [
            (200, Some("alice")),
            (200, Some("alice")),
            (200, Some("bob")),
            (401, None),
            (401, None),
            (401, None),
            (503, None),
        ],
        "{log:?}"
    );
    let all = std::fs::read_to_string(&path).unwrap() + &gw.logs().join("\n");
    assert!(!all.contains("secret"), "a credential was logged:\n{all}");
}

/// An identity provider serving a JWKS document the test can replace,
/// counting how often it is fetched.
struct Idp {
    up: Upstream,
    doc: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
}

impl Idp {
    async fn start(doc: String) -> Idp {
        let doc = Arc::new(Mutex::new(doc));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (doc.clone(), fetches.clone());
        let up = Upstream::start(move |req: Request<Incoming>| {
            let (doc, fetches) = (served.clone(), counted.clone());
            async move {
                if req.uri().path() != "/.well-known/jwks.json" {
                    return Response::builder().status(404).body(full("")).unwrap();
                }
                fetches.fetch_add(1, Ordering::SeqCst);
                let doc = doc.lock().unwrap().clone();
                Response::builder()
                    .header("content-type", "application/json")
                    .body(full(doc))
                    .unwrap()
            }
        })
        .await;
        Idp { up, doc, fetches }
    }

    fn serve(&self, doc: String) {
        *self.doc.lock().unwrap() = doc;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// Claims `jwt-auth` accepts on the routes below.
fn claims(sub: &str) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json!({"sub": sub, "iss": "https://idp.test", "aud": "api", "exp": now + 300})
}

/// A gateway with `jwt-auth` on `/` taking its keys from `idp` with these
/// `refresh` and `min_refresh_interval`, forwarding `sub` as `x-user`, and
/// on `/down` from an IdP that cannot be reached.
fn jwks_gateway(app: &Upstream, idp: &Idp, down: &ClosedPort, refresh: &str, min: &str) -> Gateway {
    let routes = format!(
        r#"
[plugin_limits.jwt-auth]
calls = ["idp", "idp-down"]

[[route]]
name = "down"
upstream = "app"
path_prefix = "/down"
plugins = [{{ name = "jwt-auth", config = {{ jwks = {{ upstream = "idp-down" }}, issuer = "https://idp.test", audience = "api" }} }}]

[[route]]
name = "api"
upstream = "app"
plugins = [{{ name = "jwt-auth", config = {{ jwks = {{ upstream = "idp", refresh = "{refresh}", min_refresh_interval = "{min}" }}, issuer = "https://idp.test", audience = "api", forward_claims = {{ sub = "x-user" }} }} }}]
"#
    );
    let cfg = config(
        "",
        &[
            ("app", app.addr),
            ("idp", idp.up.addr),
            ("idp-down", down.addr()),
        ],
        &routes,
    );
    Gateway::with_config(cfg)
        .file("plugins/jwt-auth.wasm", bundled("jwt-auth"))
        .start()
}

async fn with_token(gw: &Gateway, path: &str, token: &str) -> Reply {
    let bearer = format!("Bearer {token}");
    get(&client(), &gw.url(path), &[("authorization", &bearer)]).await
}

/// Asserts a 401 whose challenge gives this reason (RFC 6750 §3).
fn assert_refused(r: &Reply, reason: &str) {
    assert_eq!(r.status, 401, "{}", r.text());
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\"")
            && challenge.contains(&format!("error_description=\"{reason}\"")),
        "{challenge}"
    );
}

#[tokio::test]
async fn jwt_auth_fetches_jwks_once_and_again_for_a_new_kid_at_most_once_per_interval() {
    const MIN_REFRESH: Duration = Duration::from_secs(3);
    let app = Upstream::echo("app").await;
    let (a, a_rsa, b) = (
        Signer::es256("key-a"),
        Signer::rs256("key-a-rsa"),
        Signer::es256("key-b"),
    );
    let idp = Idp::start(jwks(&[&a, &a_rsa])).await;
    let down = ClosedPort::new();
    let min = format!("{}ms", MIN_REFRESH.as_millis());
    let gw = jwks_gateway(&app, &idp, &down, "60s", &min);

    // The first token fetches the key set; later ones, on any worker and
    // instance, use the shared copy.
    let first = Instant::now();
    let r = with_token(&gw, "/", &a.token(&claims("alice"))).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), gw.logs_for_failure());
    assert_eq!(seen_header(&r, "x-user").as_deref(), Some("alice"));
    assert_eq!(idp.fetches(), 1);
    for _ in 0..4 {
        let r = with_token(&gw, "/", &a.token(&claims("alice"))).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = with_token(&gw, "/", &a_rsa.token(&claims("carol"))).await;
    assert_eq!(r.status, 200, "RS256: {}", r.text());
    assert_eq!(seen_header(&r, "x-user").as_deref(), Some("carol"));
    assert_eq!(idp.fetches(), 1, "a known key id fetched the set again");

    // A token whose claims were changed after signing.
    let forged = tampered(&a.token(&claims("alice")), &claims("admin"));
    assert_refused(&with_token(&gw, "/", &forged).await, "invalid signature");

    // A key id nobody published, within min_refresh_interval of the
    // fetch: refused without asking the IdP again.
    let c = Signer::es256("key-c");
    assert_refused(
        &with_token(&gw, "/", &c.token(&claims("eve"))).await,
        "unknown key id",
    );
    assert_no_fetch_since(&idp, 1, first, MIN_REFRESH);
    assert_eq!(app.count(), 6);

    // Rotation: the IdP now publishes only key B. A token signed with B is
    // refused as unknown until min_refresh_interval has passed since the
    // last fetch, then fetches the set once and is accepted.
    idp.serve(jwks(&[&b]));
    let token_b = b.token(&claims("bob"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let fetched = loop {
        let sent = Instant::now();
        let r = with_token(&gw, "/", &token_b).await;
        if r.status == 200 {
            assert_eq!(seen_header(&r, "x-user").as_deref(), Some("bob"));
            break sent;
        }
        assert_refused(&r, "unknown key id");
        assert!(
            Instant::now() < deadline,
            "key B never accepted\n{}",
            gw.logs_for_failure()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(idp.fetches(), 2, "more than one fetch for one new key id");

    // Another unknown key id right after: refused, no fetch.
    assert_refused(
        &with_token(&gw, "/", &c.token(&claims("eve"))).await,
        "unknown key id",
    );
    assert_no_fetch_since(&idp, 2, fetched, MIN_REFRESH);

    // An IdP that cannot be reached, with no key held: 503 with
    // Retry-After (the gateway's fault, not the token's), never a 401.
    let r = with_token(&gw, "/down", &a.token(&claims("alice"))).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    assert!(r.header("www-authenticate").is_none(), "{:?}", r.headers);
    assert_eq!(app.count(), 7);
}

/// Asserts that the IdP was fetched `fetches` times in all, when that
/// claim depends on `min` not having passed since `since`. A run so slow
/// that it passed cannot say anything about the interval: it says so
/// instead of failing.
fn assert_no_fetch_since(idp: &Idp, fetches: usize, since: Instant, min: Duration) {
    let got = idp.fetches();
    if since.elapsed() < min {
        assert_eq!(
            got, fetches,
            "an unknown key id fetched within the interval"
        );
    } else {
        eprintln!("min_refresh_interval passed before the check; not checked ({got} fetches)");
    }
}

#[tokio::test]
async fn jwt_auth_refresh_drops_a_key_the_idp_no_longer_publishes() {
    let app = Upstream::echo("app").await;
    let (a, b) = (Signer::es256("key-a"), Signer::es256("key-b"));
    let idp = Idp::start(jwks(&[&a])).await;
    let down = ClosedPort::new();
    let gw = jwks_gateway(&app, &idp, &down, "1s", "1s");
    let token_a = a.token(&claims("alice"));
    let r = with_token(&gw, "/", &token_a).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), gw.logs_for_failure());
    assert_eq!(idp.fetches(), 1);

    // Key A is served while the set is fresh, then once it is stale (the
    // request that notices starts a refresh and is served with what it
    // has); once the refreshed set is in, A is refused everywhere.
    idp.serve(jwks(&[&b]));
    let refused = eventually(Duration::from_secs(30), || async {
        let r = with_token(&gw, "/", &token_a).await;
        assert!(matches!(r.status, 200 | 401), "{}", r.text());
        r.status == 401
    })
    .await;
    assert!(refused, "key A still accepted\n{}", gw.logs_for_failure());
    assert!(idp.fetches() >= 2);
    for _ in 0..4 {
        assert_refused(&with_token(&gw, "/", &token_a).await, "unknown key id");
    }
    let r = with_token(&gw, "/", &b.token(&claims("bob"))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(seen_header(&r, "x-user").as_deref(), Some("bob"));
}
