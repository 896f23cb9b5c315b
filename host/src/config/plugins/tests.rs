use std::path::Path;

use super::*;
use crate::config::Config;

#[test]
fn every_accepted_deadline_is_at_least_one_epoch_tick() {
    assert!(limits::MIN_DEADLINE >= crate::plugin::EPOCH_TICK);
}

const BASE: &str = r#"
[[listener]]
address = "127.0.0.1:0"

[[upstream]]
name = "app"
endpoints = ["127.0.0.1:9000"]
"#;

#[test]
fn chains_settings_and_defaults() {
    let text = format!(
        r#"{BASE}
[plugins]
dir = "wasm"
global = [{{ name = "noop" }}]

[plugin_limits.api-key]
deadline = "5ms"
memory = "8MiB"
failure = "open"
isolation = "request"

[[route]]
upstream = "app"
plugins = [{{ name = "api-key", config = {{ keys = ["a", "b"], n = 2 }} }}]
"#
    );
    let c = Config::parse(Path::new("/etc/weir/weir.toml"), &text).unwrap();
    assert_eq!(c.plugins.dir, Path::new("/etc/weir/wasm"));
    assert_eq!(
        c.plugins.file("noop"),
        Path::new("/etc/weir/wasm/noop.wasm")
    );
    assert_eq!(c.plugins.global[0].config, "{}");
    assert_eq!(c.routes[0].plugins[0].config, r#"{"keys":["a","b"],"n":2}"#);
    let s = c.plugins.settings("api-key");
    assert_eq!(s.deadline, Duration::from_millis(5));
    assert_eq!(s.memory_bytes, 8 * 1024 * 1024);
    assert_eq!(s.failure, FailurePolicy::Open);
    assert_eq!(s.isolation, Isolation::Request);
    assert_eq!(c.plugins.settings("noop"), PluginSettings::default());
    assert_eq!(c.plugins.referenced(&c.routes), vec!["noop", "api-key"]);
}

#[test]
fn bad_settings_name_their_key() {
    let text = format!(
        r#"{BASE}
[plugin_limits.x]
deadline = "0ms"
memory = "10GiB"
failure = "maybe"
colour = 1

[plugin_limits.y]
failure = "maybe"

[[route]]
upstream = "app"
plugins = [{{ name = "../etc/passwd" }}]

[[route]]
upstream = "app"
plugins = [{{ name = "ok", confg = 1 }}]
"#
    );
    let all = Config::parse(Path::new("t.toml"), &text)
        .unwrap_err()
        .to_string();
    assert!(
        all.contains("plugin_limits.x") && all.contains("colour"),
        "{all}"
    );
    assert!(
        all.contains("plugin_limits.y.failure") && all.contains("`maybe`"),
        "{all}"
    );
    assert!(all.contains("confg"), "{all}");
    assert!(all.contains("../etc/passwd"), "{all}");
}

/// Per-plugin limits live in `[plugin_limits.NAME]`; a `[plugin.NAME]`
/// table is refused with its line and the section to use.
#[test]
fn a_plugin_table_is_refused_with_the_section_to_use() {
    let text = format!(
        r#"{BASE}
[plugin.api-key]
deadline = "20ms"

[[route]]
upstream = "app"
plugins = [{{ name = "api-key" }}]
"#
    );
    let all = Config::parse(Path::new("t.toml"), &text)
        .unwrap_err()
        .to_string();
    assert!(all.contains("t.toml:"), "{all}");
    assert!(all.contains("[plugin_limits.NAME]"), "{all}");
}

#[test]
fn breaker_settings_have_defaults_and_bounds() {
    let text = |extra: &str| {
        format!(
            "{BASE}\n[plugin_limits.p]\n{extra}\n\n[[route]]\nupstream = \"app\"\nplugins = [{{ name = \"p\" }}]\n"
        )
    };
    let c = Config::parse(Path::new("t.toml"), &text("")).unwrap();
    let s = c.plugins.settings("p");
    assert_eq!(s.breaker_after, 5);
    assert_eq!(s.breaker_backoff, Duration::from_secs(1));
    let c = Config::parse(
        Path::new("t.toml"),
        &text("breaker_after = 0\nbreaker_backoff = \"250ms\""),
    )
    .unwrap();
    let s = c.plugins.settings("p");
    assert_eq!(
        (s.breaker_after, s.breaker_backoff),
        (0, Duration::from_millis(250))
    );
    for (bad, key) in [
        ("breaker_after = 1001", "plugin_limits.p.breaker_after"),
        (
            "breaker_backoff = \"1ms\"",
            "plugin_limits.p.breaker_backoff",
        ),
        (
            "breaker_backoff = \"11s\"",
            "plugin_limits.p.breaker_backoff",
        ),
    ] {
        let all = Config::parse(Path::new("t.toml"), &text(bad))
            .unwrap_err()
            .to_string();
        assert!(all.contains(key), "{bad}: {all}");
    }
}

#[test]
fn cpu_share_settings_have_defaults_and_bounds() {
    let text = |extra: &str| {
        format!(
            "{BASE}\n[plugin_limits.p]\n{extra}\n\n[[route]]\nupstream = \"app\"\nplugins = [{{ name = \"p\" }}]\n"
        )
    };
    let c = Config::parse(Path::new("t.toml"), &text("")).unwrap();
    let s = c.plugins.settings("p");
    assert_eq!(
        (s.cpu_share_percent, s.cpu_window),
        (25, Duration::from_secs(1))
    );
    let c = Config::parse(
        Path::new("t.toml"),
        &text("cpu_share = \" 100 %\"\ncpu_window = \"250ms\""),
    )
    .unwrap();
    let s = c.plugins.settings("p");
    assert_eq!(
        (s.cpu_share_percent, s.cpu_window),
        (100, Duration::from_millis(250))
    );
    for (bad, key, reason) in [
        (
            "cpu_share = \"25\"",
            "plugin_limits.p.cpu_share",
            "whole percentage",
        ),
        ("cpu_share = \"0%\"", "plugin_limits.p.cpu_share", "\"1%\""),
        (
            "cpu_share = \"101%\"",
            "plugin_limits.p.cpu_share",
            "\"100%\"",
        ),
        (
            "cpu_share = \"2.5%\"",
            "plugin_limits.p.cpu_share",
            "`2.5%`",
        ),
        (
            "cpu_window = \"50ms\"",
            "plugin_limits.p.cpu_window",
            "100ms",
        ),
        ("cpu_window = \"61s\"", "plugin_limits.p.cpu_window", "60s"),
    ] {
        let all = Config::parse(Path::new("t.toml"), &text(bad))
            .unwrap_err()
            .to_string();
        assert!(all.contains(key) && all.contains(reason), "{bad}: {all}");
    }
}

#[test]
fn calls_name_upstreams_of_the_configuration_within_bounds() {
    let text = format!(
        r#"{BASE}
[[upstream]]
name = "auth"
endpoints = ["127.0.0.1:9001"]

[plugin_limits.ext-auth]
calls = ["auth", "app", "auth"]
call_timeout = "250ms"
max_calls_per_request = 8
max_calls_in_flight = 32
max_call_body_bytes = "64KiB"

[[route]]
upstream = "app"
plugins = [{{ name = "ext-auth" }}]
"#
    );
    let c = Config::parse(Path::new("t.toml"), &text).unwrap();
    let calls = c.plugins.settings("ext-auth").calls;
    assert_eq!(calls.upstreams, vec!["auth", "app"]);
    assert_eq!(calls.timeout, Duration::from_millis(250));
    assert_eq!(calls.max_per_request, 8);
    assert_eq!(calls.max_in_flight, 32);
    assert_eq!(calls.max_body_bytes, 64 * 1024);
    // A plugin without a `calls` list calls nothing.
    assert!(c.plugins.settings("other").calls.upstreams.is_empty());
}

#[test]
fn calls_to_an_unknown_upstream_or_out_of_bounds_are_refused_by_name() {
    let text = format!(
        r#"{BASE}
[plugin_limits.ext-auth]
calls = ["app", "idp"]
call_timeout = "2min"
max_calls_per_request = 0
max_calls_in_flight = 100000
max_call_body_bytes = "1GiB"

[[route]]
upstream = "app"
plugins = [{{ name = "ext-auth" }}]
"#
    );
    let all = Config::parse(Path::new("t.toml"), &text)
        .unwrap_err()
        .to_string();
    assert!(
        all.contains("t.toml") && all.contains("plugin_limits.ext-auth.calls"),
        "{all}"
    );
    assert!(all.contains("upstream `idp` is not defined"), "{all}");
    assert!(!all.contains("`app`"), "{all}");
    for key in [
        "call_timeout",
        "max_calls_per_request",
        "max_calls_in_flight",
        "max_call_body_bytes",
    ] {
        assert!(
            all.contains(&format!("plugin_limits.ext-auth.{key}")),
            "{key}: {all}"
        );
    }
}
