//! The routing matrix: host (exact, wildcard), path (exact, prefix,
//! regex), method, header presence and value, first match wins, and
//! prefix rewriting, each checked by which upstream answered and what
//! target it received. Then the host a request is routed by: exactly one,
//! well-formed, and the same one the upstream receives (raw HTTP/1 bytes
//! and a bare HTTP/2 client, so nothing sanitises the request first).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::support::*;

#[tokio::test]
async fn routing_matrix() {
    let names = [
        "wild", "host", "regex", "exact", "post", "hdrval", "hdr", "rewrite", "first1", "first2",
        "prefix",
    ];
    let mut ups = Vec::new();
    for n in names {
        ups.push((n, Upstream::echo(n).await));
    }
    let addrs: Vec<(&str, std::net::SocketAddr)> = ups.iter().map(|(n, u)| (*n, u.addr)).collect();
    let routes = r#"
[[route]]
name = "wild"
upstream = "wild"
hosts = ["*.wild.test"]

[[route]]
name = "host"
upstream = "host"
hosts = ["exact.test"]

[[route]]
name = "regex"
upstream = "regex"
path_regex = "^/v[0-9]+/items$"

[[route]]
name = "exact"
upstream = "exact"
path = "/exact"

[[route]]
name = "post"
upstream = "post"
path_prefix = "/m"
methods = ["post"]

[[route]]
name = "hdrval"
upstream = "hdrval"
path_prefix = "/h"
headers = [{ name = "X-Env", value = "canary" }]

[[route]]
name = "hdr"
upstream = "hdr"
path_prefix = "/h"
headers = [{ name = "x-flag" }]

[[route]]
name = "rewrite"
upstream = "rewrite"
path_prefix = "/api"
rewrite_prefix = "/v2"

[[route]]
name = "first1"
upstream = "first1"
path_prefix = "/first"

[[route]]
name = "first2"
upstream = "first2"
path_prefix = "/first"

[[route]]
name = "prefix"
upstream = "prefix"
path_prefix = "/p/"
"#;
    let gw = Gateway::with_config(config("", &addrs, routes)).start();
    let c = client();

    // (method, host, path, extra header, expected upstream or 404, expected target)
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Option<(&'a str, &'a str)>,
        &'a str,
        &'a str,
    );
    let cases: &[Case] = &[
        ("GET", "a.wild.test", "/zzz", None, "wild", "/zzz"),
        ("GET", "a.b.wild.test", "/", None, "wild", "/"),
        ("GET", "wild.test", "/zzz", None, "404", ""),
        ("GET", "exact.test", "/zzz", None, "host", "/zzz"),
        ("GET", "EXACT.test:8080", "/zzz", None, "host", "/zzz"),
        ("GET", "other.test", "/v1/items", None, "regex", "/v1/items"),
        ("GET", "other.test", "/v1/items/x", None, "404", ""),
        ("GET", "other.test", "/exact", None, "exact", "/exact"),
        ("GET", "other.test", "/exact/x", None, "404", ""),
        ("POST", "other.test", "/m", None, "post", "/m"),
        ("GET", "other.test", "/m", None, "404", ""),
        (
            "GET",
            "other.test",
            "/h",
            Some(("x-env", "canary")),
            "hdrval",
            "/h",
        ),
        (
            "GET",
            "other.test",
            "/h",
            Some(("x-env", "prod")),
            "404",
            "",
        ),
        ("GET", "other.test", "/h", Some(("x-flag", "")), "hdr", "/h"),
        (
            "GET",
            "other.test",
            "/api/users?q=1",
            None,
            "rewrite",
            "/v2/users?q=1",
        ),
        ("GET", "other.test", "/api", None, "rewrite", "/v2"),
        ("GET", "other.test", "/apix", None, "404", ""),
        ("GET", "other.test", "/first/x", None, "first1", "/first/x"),
        ("GET", "other.test", "/p/x", None, "prefix", "/p/x"),
        ("GET", "other.test", "/px", None, "404", ""),
    ];
    for (method, host, path, header, want, target) in cases {
        let mut b = http::Request::builder()
            .method(*method)
            .uri(gw.url(path))
            .header("host", *host);
        if let Some((k, v)) = header {
            b = b.header(*k, *v);
        }
        let r = send(&c, b.body(Default::default()).unwrap()).await;
        let what = format!("{method} {host}{path} {header:?}");
        if *want == "404" {
            assert_eq!(r.status, 404, "{what}: {}", r.text());
            continue;
        }
        assert_eq!(r.status, 200, "{what}: {}", r.text());
        let j = r.json();
        assert_eq!(j["server"], *want, "{what}");
        assert_eq!(j["target"], *target, "{what}");
    }
    // The shadowed route never served anything.
    let first2 = &ups.iter().find(|(n, _)| *n == "first2").unwrap().1;
    assert_eq!(first2.count(), 0);
}

const HOST_ROUTES: &str = r#"
[[route]]
name = "admin"
upstream = "admin"
hosts = ["admin.example.test"]

[[route]]
name = "www"
upstream = "www"
hosts = ["www.example.test"]

[[route]]
name = "wild"
upstream = "wild"
hosts = ["*.wild.test"]

[[route]]
name = "any"
upstream = "any"
"#;

/// A gateway with host-scoped routes (`admin` listed before `www`, as a
/// route with stricter plugins would be), a wildcard and a catch-all, each
/// on its own echo upstream.
struct Hosts {
    admin: Upstream,
    www: Upstream,
    wild: Upstream,
    any: Upstream,
    gw: Gateway,
}

impl Hosts {
    async fn start() -> Hosts {
        let admin = Upstream::echo("admin").await;
        let www = Upstream::echo("www").await;
        let wild = Upstream::echo("wild").await;
        let any = Upstream::echo("any").await;
        let gw = Gateway::with_config(config(
            "",
            &[
                ("admin", admin.addr),
                ("www", www.addr),
                ("wild", wild.addr),
                ("any", any.addr),
            ],
            HOST_ROUTES,
        ))
        .start();
        Hosts {
            admin,
            www,
            wild,
            any,
            gw,
        }
    }

    /// Requests that reached any upstream, whole or not.
    fn forwarded(&self) -> usize {
        [&self.admin, &self.www, &self.wild, &self.any]
            .iter()
            .map(|u| u.seen.lock().unwrap().len())
            .sum()
    }

    /// The `Host` and `X-Forwarded-Host` of the last request `up` saw.
    fn last_hosts(up: &Upstream) -> (String, String) {
        let seen = up.seen.lock().unwrap();
        let last = seen.last().expect("the upstream saw no request");
        let get = |name: &str| {
            let all: Vec<&str> = last
                .headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            all.join(" | ")
        };
        (get("host"), get("x-forwarded-host"))
    }

    /// Sends raw request bytes on a fresh connection; the response's status
    /// (HTTP/1.0 or 1.1) and its text.
    async fn raw(&self, req: &[u8]) -> (Option<u16>, String) {
        let text = raw(self.gw.addr(), req, Duration::from_secs(3)).await;
        let status = text
            .strip_prefix("HTTP/1.1 ")
            .or_else(|| text.strip_prefix("HTTP/1.0 "))
            .and_then(|t| t.get(..3))
            .and_then(|t| t.parse().ok());
        (status, text)
    }

    /// Sends one HTTP/2 (prior knowledge) request on a fresh connection
    /// with a client that adds nothing: `:authority` comes from `uri`, and
    /// `host` headers are sent as given.
    async fn h2(&self, uri: &str, hosts: &[&str]) -> u16 {
        let tcp = tokio::net::TcpStream::connect(self.gw.addr())
            .await
            .unwrap();
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(conn);
        let mut req = http::Request::get(uri);
        for h in hosts {
            req = req.header("host", *h);
        }
        let req = req.body(Empty::<Bytes>::new()).unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
            .await
            .expect("h2 request timed out")
            .expect("h2 request failed");
        resp.status().as_u16()
    }
}

#[tokio::test]
async fn more_than_one_host_header_is_refused() {
    let t = Hosts::start().await;
    let cases: &[(&str, &[u8])] = &[
        (
            "two hosts",
            b"GET /x HTTP/1.1\r\nHost: www.example.test\r\nHost: admin.example.test\r\n\r\n",
        ),
        (
            "the same host twice",
            b"GET /x HTTP/1.1\r\nHost: www.example.test\r\nHost: www.example.test\r\n\r\n",
        ),
        (
            "two hosts, absolute-form",
            b"GET http://www.example.test/x HTTP/1.1\r\nHost: www.example.test\r\nHost: admin.example.test\r\n\r\n",
        ),
        (
            "two hosts, HTTP/1.0",
            b"GET /x HTTP/1.0\r\nHost: www.example.test\r\nHost: admin.example.test\r\n\r\n",
        ),
    ];
    for (what, req) in cases {
        let (status, text) = t.raw(req).await;
        assert_eq!(status, Some(400), "{what}: {text}");
    }
    assert_eq!(t.forwarded(), 0, "a request with two hosts was forwarded");
    // Refused on the same path as other malformed requests: logged with
    // the reason.
    let logged = eventually(Duration::from_secs(3), || async {
        t.gw.logs()
            .iter()
            .any(|l| l.contains("request refused") && l.contains("more than one Host"))
    })
    .await;
    assert!(logged, "no refusal logged:\n{}", t.gw.logs().join("\n"));

    // One Host is served.
    let (status, text) = t
        .raw(b"GET /x HTTP/1.1\r\nHost: www.example.test\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(status, Some(200), "{text}");
    assert_eq!(t.www.count(), 1);
}

#[tokio::test]
async fn an_http11_request_without_host_is_refused() {
    let t = Hosts::start().await;
    for (what, req) in [
        ("origin-form", &b"GET /x HTTP/1.1\r\n\r\n"[..]),
        (
            "absolute-form",
            &b"GET http://www.example.test/x HTTP/1.1\r\n\r\n"[..],
        ),
    ] {
        let (status, text) = t.raw(req).await;
        assert_eq!(status, Some(400), "{what}: {text}");
    }
    assert_eq!(t.forwarded(), 0, "a request without Host was forwarded");

    // HTTP/1.0 needs no Host: a host-less request matches only routes
    // without hosts; an absolute-form one is routed by its target.
    let (status, text) = t.raw(b"GET /x HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, Some(200), "{text}");
    assert_eq!(t.any.count(), 1);
    let (status, text) = t
        .raw(b"GET http://www.example.test/x HTTP/1.0\r\n\r\n")
        .await;
    assert_eq!(status, Some(200), "{text}");
    assert_eq!(t.www.count(), 1);
    assert_eq!(Hosts::last_hosts(&t.www).0, "www.example.test");
}

#[tokio::test]
async fn an_invalid_host_is_refused() {
    let t = Hosts::start().await;
    let bad: &[&[u8]] = &[
        b"evil#.wild.test",
        b"evil/x.wild.test",
        b"evil\\x.wild.test",
        b"evil?.wild.test",
        b"user@x.wild.test",
        b"x y.wild.test",
        b"x%2f.wild.test",
        b"x,y.wild.test",
        b"x;y.wild.test",
        b"\xffx.wild.test",
        b"x.wild.test:http",
        b"x.wild.test:99999",
        b"x.wild.test:80:80",
        b"[::1",
        b"[::1]x",
        b"[not-an-ip].wild.test",
        b"::1",
        b":80",
        b"",
    ];
    for host in bad {
        let mut req = b"GET /x HTTP/1.1\r\nHost: ".to_vec();
        req.extend_from_slice(host);
        req.extend_from_slice(b"\r\n\r\n");
        let (status, text) = t.raw(&req).await;
        let host = String::from_utf8_lossy(host);
        assert_eq!(status, Some(400), "Host {host:?}: {text}");
    }
    // An invalid Host is refused in absolute-form too, although the
    // target's authority is what counts there.
    let (status, text) = t
        .raw(b"GET http://a.wild.test/x HTTP/1.1\r\nHost: evil#.wild.test\r\n\r\n")
        .await;
    assert_eq!(status, Some(400), "{text}");
    // And so is a target authority with user information.
    let (status, text) = t
        .raw(b"GET http://user@a.wild.test/x HTTP/1.1\r\nHost: a.wild.test\r\n\r\n")
        .await;
    assert_eq!(status, Some(400), "{text}");
    assert_eq!(
        t.forwarded(),
        0,
        "a request with an invalid host was forwarded"
    );

    // Well-formed hosts of every kind are served, by the route their host
    // selects, and forwarded as sent.
    let good: &[(&str, &Upstream)] = &[
        ("A.Wild.Test:8080", &t.wild),
        ("a_b-c.wild.test", &t.wild),
        ("a.wild.test:", &t.wild),
        ("127.0.0.1:80", &t.any),
        ("[::1]:8080", &t.any),
        ("[::ffff:127.0.0.1]", &t.any),
    ];
    for (host, up) in good {
        let req = format!("GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let (status, text) = t.raw(req.as_bytes()).await;
        assert_eq!(status, Some(200), "Host {host:?}: {text}");
        assert_eq!(
            Hosts::last_hosts(up),
            (host.to_string(), host.to_string()),
            "Host {host:?}"
        );
    }
    assert_eq!(t.forwarded(), good.len());
}

#[tokio::test]
async fn absolute_form_is_routed_by_and_forwards_its_target() {
    let t = Hosts::start().await;
    // The client's Host names the admin route; the target names www. The
    // request goes where its target says, and says so upstream.
    let (status, text) = t
        .raw(b"GET http://www.example.test/admin?q=1 HTTP/1.1\r\nHost: admin.example.test\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(status, Some(200), "{text}");
    assert_eq!(t.www.count(), 1);
    assert_eq!(t.admin.count(), 0);
    assert_eq!(
        Hosts::last_hosts(&t.www),
        ("www.example.test".into(), "www.example.test".into())
    );
    assert_eq!(t.www.seen.lock().unwrap()[0].target, "/admin?q=1");

    // The other way round, with a port and upper case in the target.
    let (status, text) = t
        .raw(b"GET http://Admin.Example.test:8080/ HTTP/1.1\r\nHost: www.example.test\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(status, Some(200), "{text}");
    assert_eq!(t.admin.count(), 1);
    assert_eq!(t.www.count(), 1);
    assert_eq!(
        Hosts::last_hosts(&t.admin),
        (
            "Admin.Example.test:8080".into(),
            "Admin.Example.test:8080".into()
        )
    );
}

#[tokio::test]
async fn http2_authority_and_host_must_agree() {
    let t = Hosts::start().await;
    let url = "http://www.example.test/h2";
    // hyper's HTTP/2 client sends a `host` header next to `:authority`
    // as it is given.
    for hosts in [
        &["admin.example.test"][..],
        &["www.example.test:8080"][..],
        &["www.example.test", "www.example.test"][..],
        &["evil#.example.test"][..],
    ] {
        assert_eq!(t.h2(url, hosts).await, 400, "host {hosts:?}");
    }
    assert_eq!(
        t.forwarded(),
        0,
        "a conflicting HTTP/2 request was forwarded"
    );

    // The same host (compared case-insensitively, the default port
    // implied), or none at all: the upstream gets `:authority` as Host.
    for hosts in [
        &["WWW.Example.Test:80"][..],
        &["www.example.test"][..],
        &[][..],
    ] {
        assert_eq!(t.h2(url, hosts).await, 200, "host {hosts:?}");
        assert_eq!(
            Hosts::last_hosts(&t.www),
            ("www.example.test".into(), "www.example.test".into()),
            "host {hosts:?}"
        );
    }
    assert_eq!(t.forwarded(), 3);
}
