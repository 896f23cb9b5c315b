//! Cost of plugin calls, printed, not asserted (timing assertions are
//! flaky by nature): `cargo test -p weir --lib plugin::measure --
//! --ignored --nocapture` after the e2e tests built the fixtures (and, for
//! the bundled plugins, `cargo build --release --target wasm32-wasip2
//! --target-dir ../target/bundled` in plugins/). Files not built are
//! skipped. `WEIR_MEASURE_ONLY=TEXT` keeps the cases whose label contains
//! TEXT and `WEIR_MEASURE_CALLS=N` sets the calls per case (for a
//! profiler; calls run under the plugin's wall-clock deadline, so on a
//! busy machine a very long run can see one trap).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Instant;

use http::HeaderValue;

use super::*;

fn slot_for(file: &str, config: &str) -> Option<(Plugins, Arc<Chain>)> {
    let built = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(file);
    let tag = file.replace('/', "-");
    let dir = std::env::temp_dir().join(format!("weir-measure-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(dir.join("plugins")).ok()?;
    std::fs::copy(&built, dir.join("plugins/p.wasm")).ok()?;
    let text = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[[upstream]]\nname = \"a\"\nendpoints = [\"127.0.0.1:9\"]\n[[route]]\nupstream = \"a\"\nplugins = [{{ name = \"p\", config = {config} }}]\n"
    );
    let config = Config::parse(&dir.join("weir.toml"), &text).unwrap();
    let (plugins, chains) = Plugins::load(&config).unwrap();
    Some((plugins, chains[0].clone()))
}

/// This thread's time on a CPU (Linux schedstat), which unlike wall
/// time leaves out waiting for a CPU on a busy machine.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

#[test]
#[ignore = "measurement; prints numbers"]
fn per_call_cost() {
    let fixtures = "fixture-plugins/wasm32-wasip2/release";
    let bundled = "bundled/wasm32-wasip2/release";
    let cases = [
        (
            format!("{fixtures}/fixture_hostile.wasm"),
            "{ mode = \"none\" }",
            "fixture no-op",
        ),
        (
            format!("{bundled}/noop.wasm"),
            "{}",
            "bundled noop (weir-sdk)",
        ),
        (
            format!("{bundled}/header_rewrite.wasm"),
            "{}",
            "bundled header-rewrite (weir-sdk)",
        ),
        (
            format!("{bundled}/api_key.wasm"),
            "{ keys = { \"bench-key-0123456789abcdef\" = \"consumer\" } }",
            "bundled api-key (weir-sdk)",
        ),
        (
            format!("{fixtures}/fixture_basic.wasm"),
            "{ tag = \"t\" }",
            "fixture basic (log, context, state, random, 6 header edits)",
        ),
    ];
    let only = std::env::var("WEIR_MEASURE_ONLY").ok();
    let n: u32 = std::env::var("WEIR_MEASURE_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    for (file, config, what) in cases {
        if only.as_deref().is_some_and(|o| !what.contains(o)) {
            continue;
        }
        let Some((_plugins, chain)) = slot_for(&file, config) else {
            eprintln!("{file} not built; skipped");
            continue;
        };
        let slot = &chain.slots[0];
        let mut id = HeaderValue::from_static("measure");
        let mut context = Context::default();
        let mut log_fields = LogFields::for_request();
        let mut held = None;
        let mut calls = crate::plugin::RequestCalls::default();
        let mut parts = http::Request::get("/x")
            .header("host", "a")
            .header("x-api-key", "bench-key-0123456789abcdef")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let started = Instant::now();
        let cpu_started = thread_cpu_ns();
        for _ in 0..n {
            let mut io = Io {
                req: &mut parts,
                resp: None,
                context: &mut context,
                log_fields: &mut log_fields,
                id: &mut id,
                client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                client_cert: None,
                held: &mut held,
                calls: &mut calls,
            };
            let action = slot.on_request(&mut io).unwrap();
            assert!(matches!(action, Action::Continue), "{what}: {action:?}");
            parts.headers.remove("x-fx-order");
            parts.headers.insert(
                "x-api-key",
                HeaderValue::from_static("bench-key-0123456789abcdef"),
            );
        }
        let per = started.elapsed() / n;
        let cpu = match (cpu_started, thread_cpu_ns()) {
            (Some(a), Some(b)) => format!(", {} ns of CPU", (b - a) / u64::from(n)),
            _ => String::new(),
        };
        eprintln!("{what}: on-request {per:?} per call{cpu} ({n} calls)");
    }
}

/// What checking the breaker and the CPU share costs before a call, on a
/// worker that has called the plugin before (its per-thread cell exists),
/// with both in their usual state: breaker closed, share not spent.
#[test]
#[ignore = "measurement; prints numbers"]
fn admission_cost() {
    let file = "fixture-plugins/wasm32-wasip2/release/fixture_hostile.wasm";
    let Some((_plugins, chain)) = slot_for(file, "{ mode = \"none\" }") else {
        eprintln!("{file} not built; skipped");
        return;
    };
    let slot = &chain.slots[0];
    let mut id = HeaderValue::from_static("measure");
    let mut context = Context::default();
    let mut log_fields = LogFields::for_request();
    let mut held = None;
    let mut calls = crate::plugin::RequestCalls::default();
    let mut parts = http::Request::get("/x").body(()).unwrap().into_parts().0;
    let mut io = Io {
        req: &mut parts,
        resp: None,
        context: &mut context,
        log_fields: &mut log_fields,
        id: &mut id,
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        client_cert: None,
        held: &mut held,
        calls: &mut calls,
    };
    slot.on_request(&mut io).unwrap();
    // The cell exists once the worker has had something to remember: a
    // charge makes it, as a call that saw a tick would.
    slot.charge(1);
    let n: u32 = 10_000_000;
    let started = Instant::now();
    for _ in 0..n {
        std::hint::black_box(std::hint::black_box(slot).admit()).unwrap();
    }
    let per = started.elapsed().as_nanos() as f64 / f64::from(n);
    eprintln!("breaker and CPU share check before a call: {per:.1} ns ({n} checks)");
}
