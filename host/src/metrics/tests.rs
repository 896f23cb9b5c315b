use std::time::Duration;

use super::route::Finished;
use super::*;

fn finished(status: u16, method: http::Method) -> Finished {
    Finished {
        method: MethodClass::of(&method),
        status,
        duration: Duration::from_millis(3),
        bytes_in: 10,
        bytes_out: 100,
    }
}

#[test]
fn a_route_counts_by_method_and_status_class_and_renders_both_formats() {
    // The registry is process-wide: a name of this test's own.
    let s = global().route("metrics-unit-route");
    s.record(&finished(200, http::Method::GET));
    s.record(&finished(204, http::Method::GET));
    s.record(&finished(503, http::Method::from_bytes(b"BREW").unwrap()));

    let (ct, text) = render(false);
    assert_eq!(ct, TEXT_CONTENT_TYPE);
    assert!(
        text.contains(
            "weir_requests_total{route=\"metrics-unit-route\",method=\"GET\",status_class=\"2xx\"} 2\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "weir_requests_total{route=\"metrics-unit-route\",method=\"other\",status_class=\"5xx\"} 1\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "weir_request_duration_seconds_bucket{route=\"metrics-unit-route\",le=\"0.005\"} 3\n"
        ),
        "{text}"
    );
    assert!(text.contains("weir_response_body_bytes_total{route=\"metrics-unit-route\"} 300\n"));
    assert!(
        text.contains("# TYPE process_cpu_seconds_total counter\n"),
        "{text}"
    );
    assert!(!text.contains("# EOF"));

    let (ct, om) = render(true);
    assert_eq!(ct, OPENMETRICS_CONTENT_TYPE);
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("# TYPE weir_requests counter\n"));
}

#[test]
fn accept_picks_openmetrics_only_when_asked() {
    let v = |s: &'static str| http::HeaderValue::from_static(s);
    assert!(wants_openmetrics(Some(&v(
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    ))));
    assert!(!wants_openmetrics(Some(&v("text/plain"))));
    assert!(!wants_openmetrics(None));
}
