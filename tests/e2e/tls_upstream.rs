//! HTTPS to upstreams, through the real binary: an upstream that verifies
//! (by the `sni` name, and by IP address), pooled TLS connections reused,
//! one whose certificate does not verify (502, the reason in the log, and
//! never sent the request), `insecure_skip_verify` (and `weir check`'s
//! warning about it), a client certificate presented to an upstream that
//! requires one, and active health checks over TLS. The upstream is a
//! small rustls + hyper server in this file that answers with what it
//! saw: the SNI, the client certificate, the path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::support::pki::{Ca, Pem};
use crate::support::*;

/// A TLS upstream: counts handshakes and requests.
struct TlsUpstream {
    addr: SocketAddr,
    handshakes: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    health: Arc<AtomicUsize>,
}

/// Serves TLS with `cert`; with `client_ca`, requires a client
/// certificate from it.
async fn tls_upstream(cert: &Pem, client_ca: Option<&str>) -> TlsUpstream {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.cert.as_bytes())
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_slice(cert.key.as_bytes()).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(weir::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                weir::tls::provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(v)
        }
    };
    let config = Arc::new(builder.with_single_cert(chain, key).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let up = TlsUpstream {
        addr,
        handshakes: Arc::default(),
        requests: Arc::default(),
        health: Arc::default(),
    };
    let (handshakes, requests, health) = (
        up.handshakes.clone(),
        up.requests.clone(),
        up.health.clone(),
    );
    tokio::spawn(async move {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let (handshakes, requests, health) =
                (handshakes.clone(), requests.clone(), health.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                handshakes.fetch_add(1, Ordering::Relaxed);
                let conn = tls.get_ref().1;
                let sni = conn.server_name().unwrap_or("").to_owned();
                let client = conn
                    .peer_certificates()
                    .and_then(|c| c.first().cloned())
                    .map(|c| {
                        let (_, x) = x509_parser::parse_x509_certificate(c.as_ref()).unwrap();
                        x.subject().to_string()
                    })
                    .unwrap_or_default();
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let path = req.uri().path().to_owned();
                        if path == "/healthz" {
                            health.fetch_add(1, Ordering::Relaxed);
                        } else {
                            requests.fetch_add(1, Ordering::Relaxed);
                        }
                        let body = serde_json::json!({"sni": sni, "client": client, "path": path});
                        async move {
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::from(body.to_string()),
                            )))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    up
}

/// A gateway with one upstream `app` of `endpoint` and `tls` (the text
/// after `tls = `, or empty for none), `files` in its folder.
fn gateway(endpoint: &str, tls: &str, extra: &str, files: &[(&str, &str)]) -> Gateway {
    let tls_line = if tls.is_empty() {
        String::new()
    } else {
        format!("tls = {tls}\n")
    };
    let cfg = format!(
        "[server]\nworkers = 1\n\n[[listener]]\nname = \"main\"\naddress = \"127.0.0.1:0\"\n\n[[upstream]]\nname = \"app\"\nendpoints = [\"{endpoint}\"]\nconnect_timeout = \"2s\"\n{tls_line}{extra}\n[[route]]\nupstream = \"app\"\n"
    );
    let mut b = Gateway::with_config(cfg);
    for (name, text) in files {
        b = b.file(name, text.as_bytes());
    }
    b.start()
}

#[tokio::test]
async fn an_upstream_that_verifies_is_reached_over_pooled_tls_connections() {
    let ca = Ca::new("Upstream CA");
    let cert = ca.server(&["api.test"], false);
    let up = tls_upstream(&cert, None).await;
    let gw = gateway(
        &up.addr.to_string(),
        "{ ca = \"ca.pem\", sni = \"api.test\" }",
        "",
        &[("ca.pem", &ca.pem())],
    );
    let c = client();
    for _ in 0..5 {
        let r = get(&c, &gw.url("/hello"), &[]).await;
        assert_eq!(r.status, 200, "{}\n{}", r.text(), gw.logs_for_failure());
        assert_eq!(r.json()["sni"], "api.test");
        assert_eq!(r.json()["path"], "/hello");
    }
    // One handshake: the connection was pooled and reused.
    assert_eq!(up.handshakes.load(Ordering::Relaxed), 1);
    assert_eq!(up.requests.load(Ordering::Relaxed), 5);
}

#[tokio::test]
async fn an_https_endpoint_by_ip_address_is_verified_against_the_ip() {
    let ca = Ca::new("Upstream CA");
    let cert = ca.server(&["127.0.0.1"], false);
    let up = tls_upstream(&cert, None).await;
    let gw = gateway(
        &format!("https://{}", up.addr),
        "{ ca = \"ca.pem\" }",
        "",
        &[("ca.pem", &ca.pem())],
    );
    let r = get(&client(), &gw.url("/"), &[]).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), gw.logs_for_failure());
    // No SNI for an IP address.
    assert_eq!(r.json()["sni"], "");
}

#[tokio::test]
async fn an_upstream_whose_certificate_does_not_verify_gets_a_502_and_never_the_request() {
    let ca = Ca::new("Upstream CA");
    let stranger = Ca::new("Unknown CA");
    // Signed by a CA the gateway does not trust; and one for another name.
    let untrusted = tls_upstream(&stranger.server(&["api.test"], false), None).await;
    let wrong_name = tls_upstream(&ca.server(&["other.test"], false), None).await;
    for (up, reason) in [
        (&untrusted, "UnknownIssuer"),
        (&wrong_name, "not valid for name"),
    ] {
        let gw = gateway(
            &up.addr.to_string(),
            "{ ca = \"ca.pem\", sni = \"api.test\" }",
            "retry = { attempts = 0 }\n",
            &[("ca.pem", &ca.pem())],
        );
        let r = get(&client(), &gw.url("/secret"), &[]).await;
        assert_eq!(r.status, 502, "{}", r.text());
        let logged = eventually(Duration::from_secs(5), || async {
            gw.logs()
                .iter()
                .any(|l| l.contains("TLS handshake failed") && l.contains(reason))
        })
        .await;
        assert!(logged, "{reason}: {}", gw.logs_for_failure());
        assert_eq!(
            up.requests.load(Ordering::Relaxed),
            0,
            "the request was sent"
        );
    }
}

#[tokio::test]
async fn insecure_skip_verify_connects_to_anything_and_check_warns() {
    let stranger = Ca::new("Unknown CA");
    let up = tls_upstream(&stranger.server(&["whatever.test"], false), None).await;
    let gw = gateway(
        &format!("https://{}", up.addr),
        "{ insecure_skip_verify = true }",
        "",
        &[],
    );
    assert_eq!(get(&client(), &gw.url("/"), &[]).await.status, 200);
    let warned = eventually(Duration::from_secs(5), || async {
        gw.logs().iter().any(|l| l.contains("insecure_skip_verify"))
    })
    .await;
    assert!(warned, "{}", gw.logs_for_failure());
    let (passed, err) = weir_check(&gw.dir().join("weir.toml"));
    assert!(passed, "{err}");
    assert!(
        err.contains("warning: upstream `app`: tls.insecure_skip_verify"),
        "{err}"
    );
}

#[tokio::test]
async fn a_client_certificate_is_presented_to_an_upstream_that_requires_one() {
    let ca = Ca::new("Upstream CA");
    let clients = Ca::new("Gateway CA");
    let me = clients.client("weir-gateway", "gateway.internal");
    let up = tls_upstream(&ca.server(&["api.test"], false), Some(&clients.pem())).await;
    let files = [
        ("ca.pem", ca.pem()),
        ("me.pem", me.cert.clone()),
        ("me.key", me.key.clone()),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let gw = gateway(
        &up.addr.to_string(),
        "{ ca = \"ca.pem\", sni = \"api.test\", client_cert = \"me.pem\", client_key = \"me.key\" }",
        "",
        &files,
    );
    let r = get(&client(), &gw.url("/"), &[]).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), gw.logs_for_failure());
    assert!(
        r.json()["client"]
            .as_str()
            .unwrap()
            .contains("CN=weir-gateway"),
        "{}",
        r.text()
    );
    // Without it, the upstream refuses the handshake: 502.
    let gw = gateway(
        &up.addr.to_string(),
        "{ ca = \"ca.pem\", sni = \"api.test\" }",
        "retry = { attempts = 0 }\n",
        &files,
    );
    assert_eq!(get(&client(), &gw.url("/"), &[]).await.status, 502);
}

#[tokio::test]
async fn health_checks_use_tls_too() {
    let ca = Ca::new("Upstream CA");
    let up = tls_upstream(&ca.server(&["api.test"], false), None).await;
    let _gw = gateway(
        &up.addr.to_string(),
        "{ ca = \"ca.pem\", sni = \"api.test\" }",
        "health_check = { path = \"/healthz\", interval = \"100ms\" }\n",
        &[("ca.pem", &ca.pem())],
    );
    let probed = eventually(Duration::from_secs(10), || async {
        up.health.load(Ordering::Relaxed) >= 2
    })
    .await;
    assert!(probed, "no health check reached the TLS upstream");
}

#[tokio::test]
async fn check_reports_unusable_upstream_tls_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junk.pem"), "junk").unwrap();
    let cfg = "[[listener]]\naddress = \"127.0.0.1:0\"\n[[upstream]]\nname = \"app\"\nendpoints = [\"https://api.test\"]\ntls = { ca = \"junk.pem\", client_cert = \"none.pem\", client_key = \"none.key\" }\n[[route]]\nupstream = \"app\"\n";
    let path = dir.path().join("weir.toml");
    std::fs::write(&path, cfg).unwrap();
    let (passed, err) = weir_check(&path);
    assert!(!passed, "{err}");
    for (file, reason) in [
        ("junk.pem", "no certificate"),
        ("none.pem", "cannot read"),
        ("none.key", "cannot read"),
    ] {
        assert!(
            err.lines().any(|l| l.contains("upstream `app`: TLS:")
                && l.contains(file)
                && l.contains(reason)),
            "{file}: {err}"
        );
    }
}
