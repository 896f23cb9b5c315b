//! The routing matrix: host (exact, wildcard), path (exact, prefix,
//! regex), method, header presence and value, first match wins, and
//! prefix rewriting, each checked by which upstream answered and what
//! target it received.

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
