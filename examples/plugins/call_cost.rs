//! Measures what a plugin's request phase costs the gateway per request,
//! without any I/O: the built plugin files are loaded the way `weir run`
//! loads them (`Plugins::load`), and the request phase of the route's
//! only plugin is called on a request head shaped like the benchmark's
//! (the headers Weir adds before plugins run, plus the scenario's own).
//! This is the part of the benchmark's "over Weir plain" figure that the
//! plugin call itself accounts for; the rest is how the whole process
//! behaves around it (scheduling, caches, the kernel's share).
//!
//! ```text
//! (cd plugins && cargo build --release --target wasm32-wasip2)
//! cargo run --release -p weir --example call-cost [-- PLUGIN_DIR]
//! ```
//!
//! `PLUGIN_DIR` defaults to `plugins/target/wasm32-wasip2/release`.
//!
//! Three figures per plugin: *warm*, calls back to back, so the call's
//! code and data stay in the CPU's caches; then with a walk over other
//! memory before each call (untimed), as a request's trip through the
//! kernel and the proxy does between two calls in the gateway: over every
//! line of 1 MiB (*lines evicted*), or over one line of each page of
//! 64 MiB (*pages evicted*: the address translations go too). Each call is
//! timed on its own; the same loop without the call (the clock reads, and
//! the copy of the request head for plugins that edit it) is subtracted.
//!
//! Last, the pages one call touches: the kernel's accessed bits are
//! cleared (`/proc/self/clear_refs`), one call runs, and the pages marked
//! referenced since are counted from `/proc/self/smaps`, by mapping, net
//! of the same steps without the call. Every page a call touches is one
//! more address translation it may miss; the "pages evicted" walk also
//! evicts caches, so it overstates what those misses cost in the gateway
//! (with its code or heap on 2 MiB pages the benchmark did not move; see
//! `tests/bench/RESULTS.md`).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http::HeaderValue;
use std::sync::Arc;
use weir::config::Config;

use weir::plugin::{Action, Chain, Context, Io, LogFields, Plugins};

const ROUNDS: usize = 5;
/// Cache line and page sizes assumed by the walks.
const LINE: usize = 64;
const PAGE: usize = 4096;

/// What runs between two calls, outside the timed part.
#[derive(Clone, Copy)]
enum Between {
    /// Nothing: the call's code and data stay in the caches.
    Nothing,
    /// A write to every cache line of 1 MiB of other memory: the call finds
    /// its code and data evicted from the core's first two cache levels.
    Lines,
    /// A write to one line in each page of 64 MiB: the call also finds its
    /// pages' address translations evicted (costly on a virtual machine).
    Pages,
}

impl Between {
    fn calls(self) -> u32 {
        match self {
            Between::Nothing => 200_000,
            Between::Lines => 20_000,
            Between::Pages => 2_000,
        }
    }

    fn walk(self, buf: &mut [u8]) {
        let (len, step) = match self {
            Between::Nothing => return,
            Between::Lines => (1 << 20, LINE),
            Between::Pages => (buf.len(), PAGE),
        };
        for i in (0..len).step_by(step) {
            buf[i] = buf[i].wrapping_add(1);
        }
        std::hint::black_box(&buf);
    }
}

/// A plugin scenario: the plugin's name, its file as cargo writes it, its
/// configuration (TOML inline table), the headers the client sends, and
/// whether a call edits the request (then each call gets a fresh copy).
struct Scenario {
    name: &'static str,
    file: &'static str,
    config: &'static str,
    headers: &'static [(&'static str, &'static str)],
    edits: bool,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "noop",
        file: "noop.wasm",
        config: "{}",
        headers: &[],
        edits: false,
    },
    Scenario {
        name: "header-rewrite",
        file: "header_rewrite.wasm",
        config: r#"{ set_name = "x-bench", set_value = "1", remove = "x-remove-me" }"#,
        headers: &[("x-remove-me", "1")],
        edits: true,
    },
    Scenario {
        name: "api-key",
        file: "api_key.wasm",
        config: r#"{ keys = { "bench-key-09-0123456789abcdef" = "consumer-09", "bench-key-00-0123456789abcdef" = "consumer-00" } }"#,
        headers: &[("x-api-key", "bench-key-09-0123456789abcdef")],
        edits: true,
    },
];

/// The head a plugin sees in the benchmark: wrk's request after Weir's own
/// edits (forwarding headers, `Via`, the request id).
fn head(extra: &[(&str, &str)]) -> http::request::Parts {
    let mut b = http::Request::builder()
        .method("GET")
        .uri("/")
        .header("host", "127.0.0.1:8080")
        .header("x-forwarded-for", "127.0.0.1")
        .header("x-forwarded-proto", "http")
        .header("x-forwarded-host", "127.0.0.1:8080")
        .header("via", "1.1 weir")
        .header("x-request-id", "0123456789abcdef0123456789abcdef");
    for (n, v) in extra {
        b = b.header(*n, *v);
    }
    b.body(()).expect("a valid head").into_parts().0
}

/// The plugin loaded as `weir run` loads it, and the route's chain.
fn load(dir: &Path, s: &Scenario) -> (Plugins, Arc<Chain>) {
    let folder = std::env::temp_dir().join(format!("weir-call-cost-{}", std::process::id()));
    std::fs::create_dir_all(&folder).expect("a temporary folder");
    let src = dir.join(s.file);
    std::fs::copy(&src, folder.join(format!("{}.wasm", s.name)))
        .unwrap_or_else(|e| panic!("{}: {e} (build plugins/ first)", src.display()));
    let text = format!(
        "[server]\nworkers = 1\n[[listener]]\naddress = \"127.0.0.1:0\"\n\
         [[upstream]]\nname = \"origin\"\nendpoints = [\"127.0.0.1:9\"]\n\
         [plugins]\ndir = {:?}\n\
         [[route]]\nname = \"all\"\nupstream = \"origin\"\n\
         plugins = [{{ name = \"{}\", config = {} }}]\n",
        folder.display().to_string(),
        s.name,
        s.config
    );
    let config = Config::parse(Path::new("call-cost.toml"), &text).expect("a valid configuration");
    let (plugins, mut chains) = Plugins::load(&config).expect("the plugin loads");
    std::fs::remove_dir_all(&folder).ok();
    (plugins, chains.remove(0))
}

/// One round: `between.calls()` requests, each timed on its own from
/// before its copy of `base` (for plugins that edit the request) to after
/// its request phase (skipped without `call`, to time the rest alone).
/// Returns nanoseconds per request.
fn round(
    chain: &Chain,
    base: &http::request::Parts,
    copy: bool,
    call: bool,
    between: Between,
    buf: &mut [u8],
) -> f64 {
    let mut r = Requests::new(chain, base);
    let mut spent = Duration::ZERO;
    for _ in 0..between.calls() {
        between.walk(buf);
        let started = Instant::now();
        r.one(copy, call);
        spent += started.elapsed();
    }
    spent.as_nanos() as f64 / f64::from(between.calls())
}

fn copy_head(p: &http::request::Parts) -> http::request::Parts {
    let mut out = http::Request::new(()).into_parts().0;
    out.method = p.method.clone();
    out.uri = p.uri.clone();
    out.headers = p.headers.clone();
    out
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("plugins/target/wasm32-wasip2/release"));
    let mut buf = vec![0u8; 64 << 20];
    println!("ns per request phase, median of {ROUNDS} rounds [min-max]");
    println!(
        "{:<16} {:<22} {:<22} {:<22}",
        "plugin", "warm", "lines evicted", "pages evicted"
    );
    for s in SCENARIOS {
        let (_plugins, chain) = load(&dir, s);
        let base = head(s.headers);
        // Warm-up: instances made, code paths touched.
        round(&chain, &base, s.edits, true, Between::Nothing, &mut buf);
        let mut row = format!("{:<16}", s.name);
        for between in [Between::Nothing, Between::Lines, Between::Pages] {
            let samples = (0..ROUNDS)
                .map(|_| {
                    let with = round(&chain, &base, s.edits, true, between, &mut buf);
                    let without = round(&chain, &base, s.edits, false, between, &mut buf);
                    with - without
                })
                .collect();
            row.push(' ');
            row.push_str(&summary(samples));
        }
        println!("{row}");
        let pages = pages_touched(&chain, &base, s.edits);
        let total: i64 = pages.iter().map(|(_, p)| p).sum();
        let by: Vec<String> = pages.iter().map(|(k, p)| format!("{p} {k}")).collect();
        println!(
            "{:<16} pages touched by one call: {total} ({})",
            "",
            by.join(", ")
        );
    }
}

/// Kilobytes marked referenced in each mapping of this process, keyed by
/// what the mapping is (file name or `[heap]`-style name, else `anon`)
/// and its permissions.
fn referenced() -> std::collections::BTreeMap<String, u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("/proc/self/smaps");
    let mut out = std::collections::BTreeMap::new();
    let mut key = String::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            let perms = fields.next().unwrap_or_default();
            let name = fields
                .nth(3)
                .map_or("anon", |p| p.rsplit('/').next().unwrap_or(p));
            key = format!("{name} {perms}");
        } else if first == "Referenced:" {
            let kb: u64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            *out.entry(key.clone()).or_insert(0) += kb;
        }
    }
    out
}

/// Pages (4 KiB) one request phase touches, by mapping: the median over
/// `reps` of (referenced after clearing and calling) minus the median of
/// (referenced after clearing alone).
fn pages_touched(chain: &Chain, base: &http::request::Parts, copy: bool) -> Vec<(String, i64)> {
    const REPS: usize = 15;
    let runs = |call: bool| {
        let mut per_key: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
        for _ in 0..REPS {
            std::fs::write("/proc/self/clear_refs", "1").expect("/proc/self/clear_refs");
            round_once(chain, base, copy, call);
            for (k, kb) in referenced() {
                per_key.entry(k).or_default().push(kb);
            }
        }
        per_key
            .into_iter()
            .map(|(k, mut v)| {
                v.resize(REPS, 0);
                v.sort_unstable();
                (k, v[REPS / 2] as i64)
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let without = runs(false);
    let with = runs(true);
    let mut out: Vec<(String, i64)> = with
        .iter()
        .map(|(k, kb)| (k.clone(), (kb - without.get(k).copied().unwrap_or(0)) / 4))
        .filter(|(_, pages)| *pages != 0)
        .collect();
    out.sort_by_key(|(_, pages)| -pages);
    out
}

/// One request through the same steps as [`round`], untimed.
fn round_once(chain: &Chain, base: &http::request::Parts, copy: bool, call: bool) {
    Requests::new(chain, base).one(copy, call);
}

/// What the pipeline lends a plugin call, kept across the requests of a
/// round as a worker keeps them across requests.
struct Requests<'a> {
    chain: &'a Chain,
    base: &'a http::request::Parts,
    id: HeaderValue,
    context: Context,
    log_fields: LogFields,
    held: Option<Box<weir::plugin::Instance>>,
    calls: weir::plugin::RequestCalls,
    req: http::request::Parts,
}

impl<'a> Requests<'a> {
    fn new(chain: &'a Chain, base: &'a http::request::Parts) -> Self {
        Requests {
            chain,
            base,
            id: HeaderValue::from_static("0123456789abcdef0123456789abcdef"),
            context: Context::default(),
            log_fields: LogFields::for_request(),
            held: None,
            calls: weir::plugin::RequestCalls::default(),
            req: copy_head(base),
        }
    }

    /// One request: a fresh copy of the head when `copy`, then the request
    /// phase when `call` (which must continue).
    fn one(&mut self, copy: bool, call: bool) {
        if copy {
            self.req = copy_head(self.base);
        }
        if call {
            let slot = &self.chain.slots[0];
            let mut io = Io {
                req: &mut self.req,
                resp: None,
                context: &mut self.context,
                log_fields: &mut self.log_fields,
                id: &mut self.id,
                client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                client_cert: None,
                held: &mut self.held,
                calls: &mut self.calls,
            };
            match slot.on_request(&mut io) {
                Ok(Action::Continue) => {}
                Ok(other) => panic!("{}: expected continue, got {other:?}", slot.name),
                Err(e) => panic!("{}: {e}", slot.name),
            }
        }
        std::hint::black_box(&self.req);
    }
}

/// "median [min-max]" of a round's samples.
fn summary(mut samples: Vec<f64>) -> String {
    samples.sort_by(f64::total_cmp);
    let text = format!(
        "{:.1} [{:.1}-{:.1}]",
        samples[samples.len() / 2],
        samples[0],
        samples[samples.len() - 1]
    );
    format!("{text:<22}")
}
