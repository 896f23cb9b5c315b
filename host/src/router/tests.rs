use super::*;

#[test]
fn dot_segments_are_refused_and_dotted_names_are_not() {
    for bad in [
        "/a/../b",
        "/..",
        "/a/.",
        "/./a",
        "/a/%2e%2E/b",
        "/a/.%2e",
        "/a/%2e/b",
    ] {
        assert!(check_path(bad).is_err(), "{bad}");
    }
    for fine in [
        "/",
        "/a/b",
        "/file.tar.gz",
        "/a/...",
        "/a/..b",
        "/.well-known/x",
        "/a/%2e%2e%2e",
        "/%20",
        "*",
    ] {
        assert!(check_path(fine).is_ok(), "{fine}");
    }
}

#[test]
fn prefix_is_segment_aware() {
    assert!(prefix_matches("/api", "/api"));
    assert!(prefix_matches("/api", "/api/v1"));
    assert!(!prefix_matches("/api", "/apiv1"));
    assert!(prefix_matches("/api/", "/api/v1"));
    assert!(prefix_matches("/", "/anything"));
}

#[test]
fn wildcard_needs_a_label() {
    let p = HostPattern::Suffix(".example.com".into());
    assert!(host_matches(&p, "a.example.com"));
    assert!(host_matches(&p, "a.b.example.com"));
    assert!(!host_matches(&p, "example.com"));
    assert!(!host_matches(&p, "badexample.com"));
}

#[test]
fn host_from_header_strips_port() {
    let req = http::Request::get("/")
        .header("host", "API.Example.com:8080")
        .body(())
        .unwrap();
    let (parts, _) = req.into_parts();
    assert_eq!(request_host(&parts).as_deref(), Some("api.example.com"));
}

fn parts(version: Version, uri: &str, hosts: &[&str]) -> Parts {
    let mut b = http::Request::get(uri).version(version);
    for h in hosts {
        b = b.header("host", *h);
    }
    b.body(()).unwrap().into_parts().0
}

#[test]
fn authorities() {
    let ok = |a: &str, host: &str, port: Option<u16>| {
        assert_eq!(
            parse_authority(a.as_bytes()),
            Some(HostPort {
                host: host.as_bytes(),
                port
            }),
            "{a}"
        )
    };
    ok("example.com", "example.com", None);
    ok("Ex-am_ple.com:8080", "Ex-am_ple.com", Some(8080));
    ok("example.com:", "example.com", None);
    ok("10.0.0.1:65535", "10.0.0.1", Some(65535));
    ok("[::1]", "[::1]", None);
    ok("[2001:db8::1]:443", "[2001:db8::1]", Some(443));
    ok("[::ffff:10.0.0.1]", "[::ffff:10.0.0.1]", None);
    ok("[::1]:", "[::1]", None);
    for bad in [
        "",
        ":80",
        "evil#.example.com",
        "a/b.example.com",
        "a\\b.example.com",
        "user@example.com",
        "user:pw@example.com",
        "a b.example.com",
        "a%2eb.example.com",
        "a,b.example.com",
        "a;b.example.com",
        "ex\u{e9}.com",
        "example.com:80:80",
        "example.com:http",
        "example.com:65536",
        "example.com:000080",
        "example.com: 80",
        "[::1",
        "[::1]x",
        "[::1]]",
        "[fe80::1%25eth0]",
        "[v1.x]",
        "[example.com]",
        "::1",
    ] {
        assert_eq!(parse_authority(bad.as_bytes()), None, "{bad:?}");
    }
}

#[test]
fn one_valid_host_is_required() {
    use Version as V;
    let check = |v, uri, hosts: &[&str]| check_host(&parts(v, uri, hosts));
    assert_eq!(check(V::HTTP_11, "/", &["a.test"]), Ok(()));
    assert_eq!(
        check(V::HTTP_11, "/", &["a.test", "a.test"]),
        Err("more than one Host header")
    );
    assert_eq!(check(V::HTTP_11, "/", &[]), Err("missing Host header"));
    assert_eq!(check(V::HTTP_10, "/", &[]), Ok(()));
    assert_eq!(
        check(V::HTTP_10, "/", &["a.test", "b.test"]),
        Err("more than one Host header")
    );
    assert_eq!(
        check(V::HTTP_11, "/", &["a#.test"]),
        Err("invalid Host header")
    );
    // Absolute-form: Host is still required and checked, but ignored.
    assert_eq!(check(V::HTTP_11, "http://a.test/", &["b.test"]), Ok(()));
    assert_eq!(
        check(V::HTTP_11, "http://a.test/", &[]),
        Err("missing Host header")
    );
    assert_eq!(check(V::HTTP_10, "http://a.test/", &[]), Ok(()));
    assert_eq!(
        check(V::HTTP_11, "http://u@a.test/", &["a.test"]),
        Err("invalid request target authority")
    );
    // HTTP/2: `host` is optional and must agree with `:authority`.
    assert_eq!(check(V::HTTP_2, "http://a.test/", &[]), Ok(()));
    assert_eq!(check(V::HTTP_2, "http://a.test/", &["A.Test:80"]), Ok(()));
    assert_eq!(check(V::HTTP_2, "https://a.test:443/", &["a.test"]), Ok(()));
    for other in ["b.test", "a.test:8080", "a.test:443"] {
        assert_eq!(
            check(V::HTTP_2, "http://a.test/", &[other]),
            Err("Host header differs from :authority"),
            "{other}"
        );
    }
    assert_eq!(check(V::HTTP_2, "/", &["a.test"]), Ok(()));
    assert_eq!(check(V::HTTP_2, "/", &[]), Err("missing Host header"));
}

#[test]
fn the_target_wins_over_host() {
    let p = parts(
        Version::HTTP_11,
        "http://WWW.a.test:8080/x",
        &["admin.a.test"],
    );
    assert_eq!(request_host(&p).as_deref(), Some("www.a.test"));
    assert!(matches!(host_source(&p), Some(HostSource::Target(a)) if a == "WWW.a.test:8080"));
    let p = parts(Version::HTTP_11, "/x", &["[::1]:80"]);
    assert_eq!(request_host(&p).as_deref(), Some("[::1]"));
    let p = parts(Version::HTTP_10, "/x", &[]);
    assert!(host_source(&p).is_none());
    assert_eq!(request_host(&p), None);
}
