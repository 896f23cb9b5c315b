//! Configuration errors: `weir check` accepts valid HTTP/2 upstream
//! settings and refuses bad ones (`h2` without TLS, an unknown protocol,
//! `[upstream.http2]` on an HTTP/1.1 upstream, flow-control windows too
//! large) with a message that names the setting.

use crate::support::*;

/// `weir check` on a configuration with this one upstream (and a route
/// to it).
fn check_upstream(block: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.toml");
    std::fs::write(
        &path,
        format!(
            "[[listener]]\naddress = \"127.0.0.1:0\"\n\n[[upstream]]\nname = \"up\"\nendpoints = [\"127.0.0.1:9000\"]\n{block}\n\n[[route]]\nupstream = \"up\"\n"
        ),
    )
    .unwrap();
    weir_check(&path)
}

#[test]
fn check_refuses_bad_http2_upstream_settings() {
    // What is valid passes: the refusals below are about their values.
    for ok in [
        "protocol = \"h2c\"\n[upstream.http2]\nmax_connections_per_endpoint = 4\nmax_concurrent_streams = 1000\ninitial_stream_window = \"1MiB\"\ninitial_connection_window = \"4MiB\"\nmax_header_list_size = \"64KiB\"\nkeepalive_interval = \"30s\"\nkeepalive_timeout = \"10s\"",
        "protocol = \"h2\"\ntls = true",
        "protocol = \"auto\"\ntls = true",
        "protocol = \"http1\"",
        "protocol = \"h2c\"\nhealth_check = { path = \"/health\" }\n[upstream.http2]\nkeepalive_interval = \"0s\"",
    ] {
        let (passed, err) = check_upstream(ok);
        assert!(passed, "refused:\n{ok}\n{err}");
    }
    for (bad, words) in [
        // h2 is negotiated by ALPN: it needs TLS; h2c is the plain one.
        ("protocol = \"h2\"", &["protocol", "h2c"][..]),
        ("protocol = \"h3\"", &["protocol", "h3"][..]),
        (
            "protocol = \"http1\"\n[upstream.http2]\nmax_concurrent_streams = 10",
            &["http2"][..],
        ),
        (
            "[upstream.http2]\nmax_concurrent_streams = 10",
            &["http2"][..],
        ),
        (
            "protocol = \"h2c\"\n[upstream.http2]\ninitial_stream_window = \"4GiB\"",
            &["initial_stream_window"][..],
        ),
        (
            "protocol = \"h2c\"\n[upstream.http2]\ninitial_connection_window = \"8GiB\"",
            &["initial_connection_window"][..],
        ),
    ] {
        let (passed, err) = check_upstream(bad);
        assert!(!passed, "accepted:\n{bad}\n{err}");
        let problem = err
            .lines()
            .find(|l| l.contains("upstream"))
            .unwrap_or_default();
        for w in words {
            assert!(
                problem.contains(w),
                "{bad}: the problem does not name `{w}`: {err}"
            );
        }
        assert!(
            !err.contains("unknown field"),
            "{bad}: refused as an unknown key: {err}"
        );
    }
    let (_, err) = check_upstream("protocol = \"h2\"");
    assert!(
        err.contains("TLS") || err.contains("tls"),
        "h2 without TLS: {err}"
    );
}
