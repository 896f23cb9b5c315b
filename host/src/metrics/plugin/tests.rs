use std::sync::atomic::AtomicU64;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::*;
use crate::metrics::Family;

/// Renders a family of this test's own (the global registry is shared
/// with every other test of the process) in the Prometheus text format.
fn render(plugins: Arc<Family<PluginStats>>) -> String {
    #[derive(Debug)]
    struct Section(Arc<Family<PluginStats>>);
    impl Collector for Section {
        fn encode(&self, encoder: DescriptorEncoder<'_>) -> fmt::Result {
            exposition::encode(&self.0, &mut Out(encoder))
        }
    }
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(Section(plugins)));
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
    text
}

/// A slot's atomics as the plugin runtime would lend them.
#[derive(Default)]
struct FakeSlot {
    instances: AtomicU64,
    breaker_refusals: AtomicU64,
    share_refusals: AtomicU64,
}

impl SlotSource for FakeSlot {
    fn read(&self) -> SlotReading {
        SlotReading {
            instances: self.instances.load(Relaxed),
            breaker_refusals: self.breaker_refusals.load(Relaxed),
            share_refusals: self.share_refusals.load(Relaxed),
            ..SlotReading::default()
        }
    }
}

fn has(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "no line `{line}` in:\n{text}"
    );
}

#[test]
fn calls_traps_and_durations_render_by_phase_outcome_and_cause() {
    let family = Arc::new(Family::<PluginStats>::default());
    let s = family.get("auth");
    s.ran(Phase::Request, Outcome::Ok, Some(Duration::from_micros(3)));
    s.ran(Phase::Request, Outcome::Ok, Some(Duration::from_micros(7)));
    s.trapped(
        Phase::Request,
        Cause::Deadline,
        Some(Duration::from_millis(12)),
    );
    s.trapped(Phase::Log, Cause::Memory, Some(Duration::from_micros(400)));
    s.unavailable(Phase::Response);
    s.rejected(Phase::RequestBody);
    s.skipped();
    s.skipped();
    s.ran(Phase::Init, Outcome::Ok, Some(Duration::from_millis(2)));
    let text = render(family);

    has(
        &text,
        r#"weir_plugin_calls_total{plugin="auth",phase="request",outcome="ok"} 2"#,
    );
    has(
        &text,
        r#"weir_plugin_calls_total{plugin="auth",phase="request",outcome="trap"} 1"#,
    );
    has(
        &text,
        r#"weir_plugin_calls_total{plugin="auth",phase="log",outcome="trap"} 1"#,
    );
    has(
        &text,
        r#"weir_plugin_calls_total{plugin="auth",phase="response",outcome="unavailable"} 1"#,
    );
    has(
        &text,
        r#"weir_plugin_calls_total{plugin="auth",phase="init",outcome="ok"} 1"#,
    );
    // Zero series are left out.
    assert!(!text.contains(r#"phase="request_body",outcome"#), "{text}");
    has(
        &text,
        r#"weir_plugin_traps_total{plugin="auth",cause="deadline"} 1"#,
    );
    has(
        &text,
        r#"weir_plugin_traps_total{plugin="auth",cause="memory"} 1"#,
    );
    assert!(!text.contains(r#"cause="other""#), "{text}");
    has(
        &text,
        r#"weir_plugin_rejected_answers_total{plugin="auth",phase="request_body"} 1"#,
    );
    has(&text, r#"weir_plugin_skips_total{plugin="auth"} 2"#);

    // Microsecond calls land in microsecond buckets; the 12 ms deadline
    // trap past 10 ms.
    has(
        &text,
        r#"weir_plugin_call_duration_seconds_bucket{plugin="auth",phase="request",le="5e-06"} 1"#,
    );
    has(
        &text,
        r#"weir_plugin_call_duration_seconds_bucket{plugin="auth",phase="request",le="1e-05"} 2"#,
    );
    has(
        &text,
        r#"weir_plugin_call_duration_seconds_bucket{plugin="auth",phase="request",le="0.01"} 2"#,
    );
    has(
        &text,
        r#"weir_plugin_call_duration_seconds_bucket{plugin="auth",phase="request",le="0.025"} 3"#,
    );
    has(
        &text,
        r#"weir_plugin_call_duration_seconds_count{plugin="auth",phase="request"} 3"#,
    );
    has(
        &text,
        r#"weir_plugin_call_duration_seconds_sum{plugin="auth",phase="request"} 0.01201"#,
    );
    // An unavailable call did not run: no duration for its phase.
    assert!(
        !text
            .contains(r#"weir_plugin_call_duration_seconds_count{plugin="auth",phase="response"}"#),
        "{text}"
    );
    has(&text, "# TYPE weir_plugin_calls_total counter");
    has(&text, "# TYPE weir_plugin_call_duration_seconds histogram");
}

#[test]
fn slot_counts_are_read_at_scrape_and_survive_the_slot() {
    let family = Arc::new(Family::<PluginStats>::default());
    let s = family.get("limiter");
    let old = Arc::new(FakeSlot::default());
    let guard = s.register(old.clone());
    old.instances.store(3, Relaxed);
    old.breaker_refusals.store(5, Relaxed);
    old.share_refusals.store(1, Relaxed);
    let text = render(family.clone());
    has(&text, r#"weir_plugin_instances{plugin="limiter"} 3.0"#);
    has(
        &text,
        r#"weir_plugin_breaker_refusals_total{plugin="limiter"} 5"#,
    );
    has(
        &text,
        r#"weir_plugin_cpu_share_refusals_total{plugin="limiter"} 1"#,
    );
    has(&text, r#"weir_plugin_breakers_open{plugin="limiter"} 0.0"#);

    // A deploy: a new slot, the old one gone. Its refusals stay counted;
    // its instances do not.
    let new = Arc::new(FakeSlot::default());
    let _new_guard = s.register(new.clone());
    new.instances.store(1, Relaxed);
    new.breaker_refusals.store(2, Relaxed);
    old.breaker_refusals.store(6, Relaxed);
    drop(guard);
    let text = render(family);
    has(&text, r#"weir_plugin_instances{plugin="limiter"} 1.0"#);
    has(
        &text,
        r#"weir_plugin_breaker_refusals_total{plugin="limiter"} 8"#,
    );
    has(
        &text,
        r#"weir_plugin_cpu_share_refusals_total{plugin="limiter"} 1"#,
    );
}

#[test]
fn info_deploys_and_added_counters_render_with_their_labels() {
    let family = Arc::new(Family::<PluginStats>::default());
    let s = family.get("rate-limit");
    s.set_serving("abc123");
    s.attempt("file-change", "deployed", None);
    s.attempt("file-change", "deployed", None);
    s.attempt("file-change", "rejected", Some("compile"));
    s.attempt("config-reload", "removed", None);
    s.add_counter("rejected", 2).unwrap();
    s.add_counter("rejected", 3).unwrap();
    s.add_counter("with \"quotes\"", 1).unwrap();
    let text = render(family.clone());
    has(
        &text,
        r#"weir_plugin_info{plugin="rate-limit",sha256="abc123"} 1.0"#,
    );
    has(
        &text,
        r#"weir_plugin_deploys_total{plugin="rate-limit",trigger="file-change",outcome="deployed"} 2"#,
    );
    has(
        &text,
        r#"weir_plugin_deploys_total{plugin="rate-limit",trigger="file-change",outcome="rejected"} 1"#,
    );
    has(
        &text,
        r#"weir_plugin_deploys_total{plugin="rate-limit",trigger="config-reload",outcome="removed"} 1"#,
    );
    has(
        &text,
        r#"weir_plugin_deploy_rejections_total{plugin="rate-limit",trigger="file-change",step="compile"} 1"#,
    );
    has(
        &text,
        r#"weir_plugin_counted_total{plugin="rate-limit",name="rejected"} 5"#,
    );
    // A plugin's counter name is a label value, escaped as one.
    has(
        &text,
        r#"weir_plugin_counted_total{plugin="rate-limit",name="with \"quotes\""} 1"#,
    );

    // A new version replaces the info series; it does not add one.
    s.set_serving("def456");
    let text = render(family);
    assert!(!text.contains("abc123"), "{text}");
    has(
        &text,
        r#"weir_plugin_info{plugin="rate-limit",sha256="def456"} 1.0"#,
    );
}

#[test]
fn added_counters_are_bounded_in_names_and_name_length() {
    let s = PluginStats::default();
    assert!(s.add_counter("", 1).is_err());
    assert!(
        s.add_counter(&"n".repeat(MAX_COUNTER_NAME_BYTES + 1), 1)
            .is_err()
    );
    s.add_counter(&"n".repeat(MAX_COUNTER_NAME_BYTES), 1)
        .unwrap();
    for i in 1..MAX_COUNTERS {
        s.add_counter(&format!("c{i}"), 1).unwrap();
    }
    let refused = s.add_counter("one-too-many", 1).unwrap_err();
    assert!(refused.contains("at most 1000"), "{refused}");
    // Names already counted still count.
    s.add_counter("c1", 4).unwrap();
    let all = s.counters.snapshot();
    assert_eq!(all.len(), MAX_COUNTERS);
    assert!(all.contains(&("c1".to_owned(), 5)));
}

#[test]
fn keep_plugins_forgets_plugins_no_chain_names() {
    let reg = Registry::default();
    reg.plugin("kept").skipped();
    reg.plugin("gone").skipped();
    reg.keep_plugins(["kept"].into_iter());
    let names: Vec<String> = reg.plugins.snapshot().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["kept"]);
}

#[test]
fn one_call_in_eight_per_thread_is_timed() {
    std::thread::spawn(|| {
        let timed = (0..64).filter(|_| call_timer().is_some()).count();
        assert_eq!(timed, 64 / TIMED_ONE_IN as usize);
    })
    .join()
    .unwrap();
}
