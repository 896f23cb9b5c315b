//! `h2` and `auto` over TLS: ALPN picks HTTP/2 where the upstream offers
//! `h2` (`auto` falls back to HTTP/1.1 where it does not), and `h2`
//! against an upstream without `h2` in its ALPN is a 502 whose log line
//! names ALPN.

use std::time::Duration;

use super::*;
use crate::support::h2::TlsUpstream;
use crate::support::pki::{Ca, Pem};
use crate::support::*;

/// How the gateway reaches the upstreams here: TLS, trusting `ca.pem`,
/// for the name `api.test`.
const TLS: &str = "tls = { ca = \"ca.pem\", sni = \"api.test\" }";

/// The CA (the gateway's `ca.pem`) and the certificate for `api.test` it
/// signed, which the upstreams here present.
fn upstream_cert() -> (Ca, Pem) {
    let ca = Ca::new("Upstream CA");
    let cert = ca.server(&["api.test"], false);
    (ca, cert)
}

#[tokio::test]
async fn tls_upstreams_speak_http2_when_alpn_picks_h2_and_auto_falls_back() {
    let (ca, cert) = upstream_cert();
    let both = TlsUpstream::start(&cert, &[b"h2", b"http/1.1"]).await;
    let h1_only = TlsUpstream::start(&cert, &[b"http/1.1"]).await;
    let no_alpn = TlsUpstream::start(&cert, &[]).await;
    let mut rest = String::new();
    for (name, protocol, addr) in [
        ("h2-both", "h2", both.server.addr),
        ("auto-both", "auto", both.server.addr),
        ("auto-h1", "auto", h1_only.server.addr),
        ("auto-none", "auto", no_alpn.server.addr),
    ] {
        rest.push_str(&routed_upstream(name, protocol, addr, TLS, ""));
    }
    let gw = Gateway::with_config(gateway_config(1, &rest))
        .file("ca.pem", ca.pem())
        .start();
    let c = client();
    for (path, version) in [
        ("/h2-both", "HTTP/2.0"),
        ("/auto-both", "HTTP/2.0"),
        ("/auto-h1", "HTTP/1.1"),
        ("/auto-none", "HTTP/1.1"),
    ] {
        for _ in 0..2 {
            let r = get(&c, &gw.url(path), &[]).await;
            assert_eq!(r.status, 200, "{path}: {}\n{}", r.text(), warnings(&gw));
            assert_eq!(r.text(), version, "{path}");
        }
    }
    assert_eq!(
        both.versions.lock().unwrap().as_slice(),
        &[http::Version::HTTP_2; 4]
    );
    assert!(both.server.accepted() <= 2, "connections were not pooled");
}

#[tokio::test]
async fn protocol_h2_against_an_upstream_without_h2_alpn_is_a_502_that_says_why() {
    let (ca, cert) = upstream_cert();
    let h1_only = TlsUpstream::start(&cert, &[b"http/1.1"]).await;
    let no_alpn = TlsUpstream::start(&cert, &[]).await;
    for (what, up) in [
        ("offers only http/1.1", &h1_only),
        ("offers no ALPN", &no_alpn),
    ] {
        let gw = one_upstream(1, "h2", &[up.server.addr], TLS, "")
            .file("ca.pem", ca.pem())
            .start();
        let r = get(&client(), &gw.url("/"), &[]).await;
        assert_eq!(r.status, 502, "{what}: {}", r.text());
        assert!(
            up.versions.lock().unwrap().is_empty(),
            "{what}: a request reached it"
        );
        let said = eventually(Duration::from_secs(5), || async {
            gw.logs().iter().any(|l| {
                let l = l.to_ascii_lowercase();
                (l.contains("warn") || l.contains("error"))
                    && (l.contains("alpn")
                        || l.contains("application protocol")
                        || l.contains("applicationprotocol")
                        || l.contains("application_protocol"))
            })
        })
        .await;
        assert!(said, "{what}: no log line names ALPN\n{}", warnings(&gw));
    }
}
