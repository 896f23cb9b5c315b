use super::route::host_pattern;
use super::*;

fn parse(s: &str) -> Result<Config, ConfigErrors> {
    Config::parse(Path::new("test.toml"), s)
}

const GOOD: &str = r#"
[[listener]]
address = "127.0.0.1:0"

[[upstream]]
name = "app"
endpoints = ["127.0.0.1:9000", { address = "localhost:9001", weight = 3 }]

[[route]]
name = "api"
upstream = "app"
hosts = ["api.example.com", "*.example.org"]
path_prefix = "/api"
rewrite_prefix = "/"
"#;

#[test]
fn good_file_loads() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.upstreams[0].endpoints[1].host, "localhost");
    assert_eq!(c.upstreams[0].endpoints[1].weight, 3);
    assert_eq!(
        c.routes[0].hosts[1],
        HostPattern::Suffix(".example.org".into())
    );
}

#[test]
fn typo_and_dangling_upstream_are_both_reported_with_lines() {
    let text = GOOD.replace("upstream = \"app\"", "upstream = \"ap\"\nupstreem = 1");
    let errs = parse(&text).unwrap_err().0;
    let all = ConfigErrors(errs.clone()).to_string();
    assert_eq!(errs.len(), 1, "{all}");
    assert!(all.contains("unknown field `upstreem`"), "{all}");
    assert!(all.contains("test.toml:9: route[0]"), "{all}");

    // A second route with a dangling upstream is still checked.
    let text = format!("{text}\n[[route]]\nname = \"b\"\nupstream = \"nope\"\n");
    let all = parse(&text).unwrap_err().to_string();
    assert!(all.contains("upstreem"), "{all}");
    assert!(all.contains("upstream `nope` is not defined"), "{all}");
    assert!(all.contains("route[1] (b).upstream"), "{all}");
}

#[test]
fn duplicates_and_ranges() {
    let text = format!(
        "{GOOD}\n[[upstream]]\nname = \"app\"\nendpoints = [\"x:0\"]\nconnect_timeout = \"0s\"\n"
    );
    let all = parse(&text).unwrap_err().to_string();
    assert!(all.contains("duplicate upstream name `app`"), "{all}");
    assert!(all.contains("endpoints[0]"), "{all}");
    assert!(all.contains("connect_timeout"), "{all}");
}

#[test]
fn body_timeouts_default_and_are_bounded() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.listeners[0].send_timeout, Duration::from_secs(60));
    assert_eq!(c.upstreams[0].read_timeout, Duration::from_secs(60));
    assert_eq!(c.routes[0].read_timeout, None);
    let text = GOOD
        .replace(
            "address = \"127.0.0.1:0\"",
            "address = \"127.0.0.1:0\"\nsend_timeout = \"0s\"",
        )
        .replace("weight = 3 }]", "weight = 3 }]\nread_timeout = \"2h\"")
        .replace(
            "rewrite_prefix = \"/\"",
            "rewrite_prefix = \"/\"\nread_timeout = \"0s\"",
        );
    let all = parse(&text).unwrap_err().to_string();
    assert!(all.contains("listener[0].send_timeout"), "{all}");
    assert!(all.contains("upstream[0] (app).read_timeout"), "{all}");
    assert!(all.contains("route[0] (api).read_timeout"), "{all}");
}

#[test]
fn syntax_error_names_line() {
    let all = parse("[[listener]]\naddress = \n").unwrap_err().to_string();
    assert!(all.starts_with("test.toml:2"), "{all}");
}

#[test]
fn path_rules() {
    let text = GOOD.replace(
        "path_prefix = \"/api\"",
        "path = \"/a\"\npath_regex = \"(\"",
    );
    let all = parse(&text).unwrap_err().to_string();
    assert!(all.contains("only one of `path`"), "{all}");
    assert!(all.contains("path_regex"), "{all}");
    assert!(all.contains("rewrite_prefix` needs `path_prefix`"), "{all}");
}

#[test]
fn host_patterns() {
    assert_eq!(
        host_pattern("A.com"),
        Some(HostPattern::Exact("a.com".into()))
    );
    assert_eq!(
        host_pattern("*.a.com"),
        Some(HostPattern::Suffix(".a.com".into()))
    );
    assert_eq!(host_pattern("*"), None);
    assert_eq!(host_pattern("a b"), None);
    assert_eq!(split_host_port("[::1]:80"), Some(("::1".into(), 80)));
    assert_eq!(
        split_host_port("svc.local:8080"),
        Some(("svc.local".into(), 8080))
    );
    assert_eq!(split_host_port("svc.local"), None);
}

#[test]
fn upgrades_default_to_websocket_and_are_tokens_without_h2c() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.routes[0].upgrades, ["websocket"]);
    assert!(!c.listeners[0].underscores_in_headers);
    let with = |upgrades: &str| {
        parse(&GOOD.replace(
            "rewrite_prefix = \"/\"",
            &format!("rewrite_prefix = \"/\"\nupgrades = {upgrades}"),
        ))
    };
    assert!(with("[]").unwrap().routes[0].upgrades.is_empty());
    assert_eq!(
        with("[\"WebSocket\", \"websocket\", \"x-proto\"]")
            .unwrap()
            .routes[0]
            .upgrades,
        ["websocket", "x-proto"]
    );
    for bad in [
        "[\"h2c\"]",
        "[\"H2C\"]",
        "[\"\"]",
        "[\"websocket/13\"]",
        "[\"a b\"]",
    ] {
        let all = with(bad).unwrap_err().to_string();
        assert!(all.contains("route[0] (api).upgrades"), "{bad}: {all}");
    }
    let many: Vec<String> = (0..=limits::MAX_UPGRADES)
        .map(|i| format!("\"p{i}\""))
        .collect();
    let all = with(&format!("[{}]", many.join(", ")))
        .unwrap_err()
        .to_string();
    assert!(all.contains("at most 16 protocols"), "{all}");

    let c = parse(&GOOD.replace(
        "address = \"127.0.0.1:0\"",
        "address = \"127.0.0.1:0\"\nunderscores_in_headers = true",
    ))
    .unwrap();
    assert!(c.listeners[0].underscores_in_headers);
}
