use std::time::{Duration, UNIX_EPOCH};

use super::line::*;
use super::*;
use http::{HeaderValue, Method, Uri, Version};

fn line<'a>(
    ip: &'a HeaderValue,
    id: &'a HeaderValue,
    method: &'a Method,
    uri: &'a Uri,
    ua: Option<&'a HeaderValue>,
) -> Line<'a> {
    Line {
        // 2026-12-07T08:46:31.250Z
        time: UNIX_EPOCH + Duration::from_millis(1_796_633_191_250),
        request_id: id,
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        client_ip: ip,
        method,
        uri,
        version: Version::HTTP_11,
        status: 200,
        bytes_in: 12,
        bytes_out: 3456,
        duration: Duration::from_micros(1_500),
        upstream_duration: Some(Duration::from_micros(1_200)),
        route: Some("api"),
        upstream: Some("backend"),
        endpoint: Some("127.0.0.1:8081"),
        attempts: 1,
        tls_version: None,
        sni: None,
        user_agent: ua,
        referer: None,
        plugin: vec![("consumer", "alice")],
    }
}

#[test]
fn a_json_line_has_the_configured_fields_in_order_and_escapes_strings() {
    let id = HeaderValue::from_static("req-1");
    let m = Method::GET;
    let uri: Uri = "/a%22b/\"q?token=secret"
        .parse()
        .unwrap_or_else(|_| "/a?token=secret".parse().unwrap());
    let ua = HeaderValue::from_static("curl/8 \"x\"");
    let ip = HeaderValue::from_static("192.0.2.7");
    let l = line(&ip, &id, &m, &uri, Some(&ua));
    let mut out = String::new();
    json(
        &mut out,
        &l,
        &keys(&[
            LogField::Status,
            LogField::Time,
            LogField::Path,
            LogField::UserAgent,
            LogField::DurationMs,
            LogField::Plugin,
            LogField::TlsVersion,
        ]),
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect(&out);
    assert_eq!(v["status"], 200);
    assert_eq!(v["time"], "2026-12-07T08:46:31.250Z");
    assert_eq!(v["user_agent"], "curl/8 \"x\"");
    assert_eq!(v["duration_ms"], 1.5);
    assert_eq!(v["plugin"]["consumer"], "alice");
    // Absent values leave their field out rather than writing null.
    assert!(v.get("tls_version").is_none());
    // The query is not in the path, and not logged unless asked for.
    assert!(!out.contains("secret"), "{out}");
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(keys.len(), 6);
    assert!(out.starts_with("{\"status\":200,\"time\":"), "{out}");
}

#[test]
fn the_default_fields_are_all_but_the_query_and_two_headers() {
    let id = HeaderValue::from_static("req-2");
    let m = Method::POST;
    let uri: Uri = "/x?secret=1".parse().unwrap();
    let ip = HeaderValue::from_static("192.0.2.7");
    let l = line(&ip, &id, &m, &uri, None);
    let mut out = String::new();
    json(&mut out, &l, &keys(&LogField::defaults()));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for k in [
        "time",
        "request_id",
        "trace_id",
        "client_address",
        "method",
        "path",
        "protocol",
        "status",
        "bytes_in",
        "bytes_out",
        "duration_ms",
        "upstream_duration_ms",
        "route",
        "upstream",
        "endpoint",
        "attempts",
        "plugin",
    ] {
        assert!(v.get(k).is_some(), "{k} missing in {out}");
    }
    assert!(v.get("query").is_none());
    assert_eq!(v["client_address"], "192.0.2.7");
    assert_eq!(v["protocol"], "HTTP/1.1");
}

#[test]
fn a_combined_line_is_what_nginx_writes() {
    let id = HeaderValue::from_static("req-3");
    let m = Method::GET;
    let uri: Uri = "/p?q=1".parse().unwrap();
    let ua = HeaderValue::from_bytes(b"agent \"007\" \xff").unwrap();
    let ip = HeaderValue::from_static("192.0.2.7");
    let l = line(&ip, &id, &m, &uri, Some(&ua));
    let mut out = String::new();
    combined(&mut out, &l);
    assert_eq!(
        out,
        "192.0.2.7 - alice [07/Dec/2026:08:46:31 +0000] \"GET /p?q=1 HTTP/1.1\" 200 3456 \"-\" \
         \"agent \\x22007\\x22 \\xFF\""
    );
}

#[test]
fn long_values_are_cut_at_a_character_boundary() {
    let s = "é".repeat(MAX_VALUE_BYTES);
    let b = bounded(&s);
    assert!(b.len() <= MAX_VALUE_BYTES);
    assert!(b.len() >= MAX_VALUE_BYTES - 1);
}

#[test]
fn civil_dates_are_right_across_leap_years() {
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    assert_eq!(civil_from_days(20_794), (2026, 12, 7));
}

#[test]
fn json_strings_round_trip_through_a_json_parser() {
    let mut every: String = (0u8..0x80).map(char::from).collect();
    every.push_str("é \u{2028} 😀 \"quoted\" \\back\\");
    for s in [every.as_str(), "", "plain", "\"", "\\", "\u{7f}"] {
        let mut out = String::new();
        json_str(&mut out, s);
        let back: String = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(back, s);
        assert!(!out[1..out.len() - 1].bytes().any(|b| b < 0x20), "{out}");
    }
}

#[test]
fn durations_are_milliseconds_with_three_decimals() {
    for (us, want) in [
        (0, "0.000"),
        (7, "0.007"),
        (1_500, "1.500"),
        (12_345_678, "12345.678"),
    ] {
        let mut out = String::new();
        millis(&mut out, Duration::from_micros(us));
        assert_eq!(out, want);
    }
}

#[test]
fn times_within_one_second_reuse_its_text_and_change_with_the_next() {
    let t = UNIX_EPOCH + Duration::from_millis(1_796_633_191_250);
    let mut out = String::new();
    rfc3339(&mut out, t);
    rfc3339(&mut out, t + Duration::from_millis(749));
    rfc3339(&mut out, t + Duration::from_millis(750));
    assert_eq!(
        out,
        "\"2026-12-07T08:46:31.250Z\"\"2026-12-07T08:46:31.999Z\"\"2026-12-07T08:46:32.000Z\""
    );
}
