//! The quickstart and the TLS example followed as a new user would:
//! run the real `examples/quickstart/run.sh` from the repository root, read
//! the three tries it prints once Weir serves, run each printed command as
//! a reader would paste it (`sh -c`, from the same folder), and check that
//! each shows what the script says it shows. Then Ctrl-C (SIGINT to the
//! script's process group, as a terminal sends it) must stop everything.
//! The commands and the claims are read from the script's output, so the
//! test fails when the printed tries stop working.
//!
//! `examples/tls/run.sh` is followed the same way: its three tries (HTTPS
//! over HTTP/2, the redirect, a route for clients with a certificate).
//!
//! `examples/grpc/run.sh` too: the calls it makes itself (one of each
//! kind, and a server error) must have printed what they should, then its
//! three tries (calls balanced over two gRPC servers, one taken out by the
//! gRPC health check and brought back, Weir's UNIMPLEMENTED for a service
//! no route serves). It needs the Python environment `.ci/run` makes
//! (the script makes it when missing).
//!
//! A test binary of its own, not part of `e2e`: the scripts build (a no-op
//! for the gateway after `cargo test` built it, the plugins' first Wasm
//! build otherwise), and the examples' fixed ports (8080, 9000 and 9901;
//! 8443, 8088, 9100 and 9911; 8091, 9921, 9051 and 9052) are used by
//! nothing else in the test suite.

// Only `eventually`, the repository root and the gRPC client's results
// (`support::grpc`) are used here.
#[allow(unused_imports)]
#[path = "../e2e/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};
use sha2::{Digest, Sha256};
use support::eventually;
use support::grpc::names;

/// Bound on the script's builds and start-up. After `cargo test` the
/// gateway build finds nothing to do, but the plugins may be built for the
/// first time, and other builds may hold Cargo's lock meanwhile.
const BUILD_AND_START: Duration = Duration::from_secs(30 * 60);
/// The last line of what the script prints once Weir serves.
const LAST_LINE: &str = "Ctrl-C here stops";

/// The script, running in a process group of its own (as in a terminal),
/// with what it printed so far. Dropping it stops the whole group.
struct Script {
    child: Mutex<Child>,
    group: Pid,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Script {
    fn start(root: &Path, script: &str) -> Script {
        let mut child = Command::new(script)
            .current_dir(root)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {script}: {e}"));
        let group = Pid::from_child(&child);
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Script {
            child: Mutex::new(child),
            group,
            stdout,
            stderr,
        }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn exited(&self) -> Option<ExitStatus> {
        self.child.lock().unwrap().try_wait().unwrap()
    }

    fn signal(&self, sig: Signal) {
        // The group may be gone already; nothing to stop then.
        let _ = kill_process_group(self.group, sig);
    }

    /// What a failing assertion shows: everything printed on stdout and the
    /// end of stderr (Cargo's and the gateway's logs).
    fn failure(&self) -> String {
        let err = self.stderr.lock().unwrap();
        let tail: Vec<&str> = err.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "--- stdout\n{}--- stderr (end)\n{}",
            self.stdout(),
            tail.join("\n")
        )
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        self.signal(Signal::TERM);
        let group = self.group;
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Whatever ignored SIGTERM, and the script if it did not exit.
        let _ = kill_process_group(group, Signal::KILL);
        let _ = child.wait();
    }
}

/// Reads `pipe` to its end on a thread of its own, into the returned text.
fn collect(pipe: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    text
}

/// One numbered try: what the script says about it, and its commands (the
/// lines indented by four spaces).
#[derive(Debug)]
struct Try {
    says: String,
    commands: Vec<String>,
}

/// The numbered tries in the script's output, up to its last line.
fn tries(out: &str) -> Vec<Try> {
    let mut tries: Vec<Try> = Vec::new();
    for line in out.lines() {
        if line.starts_with(LAST_LINE) {
            break;
        }
        let numbered = line
            .split_once(". ")
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if numbered {
            tries.push(Try {
                says: String::new(),
                commands: Vec::new(),
            });
        }
        let Some(current) = tries.last_mut() else {
            continue;
        };
        match line.strip_prefix("    ") {
            Some(command) if !command.starts_with(' ') => {
                current.commands.push(command.to_owned());
            }
            _ => {
                current.says.push_str(line.trim());
                current.says.push(' ');
            }
        }
    }
    tries
}

/// The `"name": "value"` pairs in `text`, as the demo upstream's JSON echo
/// prints headers.
fn echoed_pairs(text: &str) -> Vec<String> {
    let pair = regex::Regex::new(r#""[a-z0-9-]+": "[^"]*""#).unwrap();
    pair.find_iter(text)
        .map(|m| m.as_str().to_owned())
        .collect()
}

/// Runs a printed command as the reader would, from `dir`; its stdout.
fn run(dir: &Path, command: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "`{command}` failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The status line of `curl -i` output.
fn status_line(out: &str) -> &str {
    out.lines().next().unwrap_or_default().trim_end()
}

/// `(sha256, deployed_at)` of plugin `name` in an `/admin/plugins` answer.
fn serving(admin: &str, name: &str) -> (String, String) {
    let view: serde_json::Value = serde_json::from_str(admin)
        .unwrap_or_else(|e| panic!("/admin/plugins is not JSON ({e}):\n{admin}"));
    let plugin = view["plugins"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no plugin {name:?} in /admin/plugins:\n{admin}"));
    let field = |f: &str| plugin[f].as_str().unwrap_or_default().to_owned();
    (field("sha256"), field("deployed_at"))
}

fn sha256_of(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    format!("{:x}", Sha256::digest(bytes))
}

/// Starts `script` and waits until it has printed its tries (or exited);
/// asserts that it printed three.
async fn start_and_read_tries(root: &Path, script: &str) -> (Script, Vec<Try>) {
    let script = Script::start(root, script);
    eventually(BUILD_AND_START, || async {
        script.exited().is_some() || script.stdout().contains(LAST_LINE)
    })
    .await;
    let printed = script.stdout();
    assert!(
        printed.contains(LAST_LINE),
        "the script did not get to its tries (exit: {:?}):\n{}",
        script.exited(),
        script.failure()
    );
    let tries = tries(&printed);
    assert_eq!(tries.len(), 3, "three tries:\n{printed}");
    (script, tries)
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quickstart_prints_three_tries_that_work_as_printed() {
    let root: PathBuf = support::repo_root().canonicalize().unwrap();
    let (script, tries) = start_and_read_tries(&root, "./examples/quickstart/run.sh").await;

    // 1. Refused without a key, by the plugin (its 401 and its reason).
    let [refused] = tries[0].commands.as_slice() else {
        panic!("one command in try 1: {:?}", tries[0]);
    };
    assert!(tries[0].says.contains("401"), "{:?}", tries[0].says);
    let out = run(&root, refused);
    assert_eq!(status_line(&out), "HTTP/1.1 401 Unauthorized", "{out}");
    assert!(out.contains("www-authenticate: ApiKey"), "{out}");
    assert!(out.contains("missing api key"), "{out}");

    // 2. Let through with the key: the echo shows the consumer header the
    // plugin set, and not the key it removed.
    let [with_key] = tries[1].commands.as_slice() else {
        panic!("one command in try 2: {:?}", tries[1]);
    };
    assert!(tries[1].says.contains("200"), "{:?}", tries[1].says);
    let claimed = echoed_pairs(&tries[1].says);
    assert!(
        claimed.iter().any(|p| p.starts_with("\"x-consumer\"")),
        "try 2 names the consumer header: {:?}",
        tries[1].says
    );
    let before = run(&root, with_key);
    assert_eq!(status_line(&before), "HTTP/1.1 200 OK", "{before}");
    for pair in &claimed {
        assert!(before.contains(pair.as_str()), "{pair} in:\n{before}");
    }
    assert!(
        !before.contains("x-api-key"),
        "the key reached the upstream:\n{before}"
    );

    // 3. A copy into the plugin folder deploys a new version while it
    // serves: the admin view shows the copied file's sha256 and a new
    // deployment time, and the next request shows its effect.
    let [copy, admin] = tries[2].commands.as_slice() else {
        panic!("a copy and an admin request in try 3: {:?}", tries[2]);
    };
    assert!(tries[2].says.contains("sha256"), "{:?}", tries[2].says);
    let words: Vec<&str> = copy.split_whitespace().collect();
    let ["cp", from, to] = words.as_slice() else {
        panic!("try 3 copies one file: {copy}");
    };
    let name = Path::new(to)
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let new_sha = sha256_of(&root.join(from));
    let (old_sha, old_at) = serving(&run(&root, admin), &name);
    assert_ne!(old_sha, new_sha, "the copy must bring a new version");
    let effect = echoed_pairs(
        tries[2]
            .says
            .split_once("run 2 again")
            .unwrap_or_else(|| panic!("try 3 says to run 2 again: {:?}", tries[2].says))
            .1,
    );
    assert!(!effect.is_empty(), "try 3 names what 2 shows after it");
    for pair in &effect {
        assert!(
            !before.contains(pair.as_str()),
            "{pair} before the deploy:\n{before}"
        );
    }

    run(&root, copy);
    let deployed = eventually(Duration::from_secs(30), || async {
        let (sha, at) = serving(&run(&root, admin), &name);
        sha == new_sha && at != old_at
    })
    .await;
    assert!(
        deployed,
        "{name} did not serve the copied file:\n{}\n{}",
        run(&root, admin),
        script.failure()
    );
    let after = run(&root, with_key);
    assert_eq!(status_line(&after), "HTTP/1.1 200 OK", "{after}");
    for pair in claimed.iter().chain(&effect) {
        assert!(
            after.contains(pair.as_str()),
            "{pair} after the deploy:\n{after}"
        );
    }

    // Ctrl-C stops the gateway and the upstream, and frees their ports.
    script.signal(Signal::INT);
    let stopped = eventually(Duration::from_secs(20), || async {
        script.exited().is_some() && ![8080, 9000, 9901].into_iter().any(port_open)
    })
    .await;
    let open: Vec<u16> = [8091, 9921, 9051, 9052]
        .into_iter()
        .filter(|p| port_open(*p))
        .collect();
    assert!(
        stopped,
        "Ctrl-C did not stop everything (script exited: {}, ports still open: {open:?}):\n{}",
        script.exited().is_some(),
        script.failure()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tls_example_prints_tries_that_work_as_printed() {
    let root: PathBuf = support::repo_root().canonicalize().unwrap();
    let (script, tries) = start_and_read_tries(&root, "./examples/tls/run.sh").await;

    // 1. HTTPS over HTTP/2, and what the upstream was told.
    let [https] = tries[0].commands.as_slice() else {
        panic!("one command in try 1: {:?}", tries[0]);
    };
    let out = run(&root, https);
    assert_eq!(status_line(&out), "HTTP/2 200", "{out}");
    let claimed = echoed_pairs(&tries[0].says);
    assert!(!claimed.is_empty(), "{:?}", tries[0].says);
    for pair in &claimed {
        assert!(out.contains(pair.as_str()), "{pair} in:\n{out}");
    }

    // 2. The redirect, to the same path over HTTPS.
    let [plain] = tries[1].commands.as_slice() else {
        panic!("one command in try 2: {:?}", tries[1]);
    };
    let out = run(&root, plain);
    assert_eq!(
        status_line(&out),
        "HTTP/1.1 308 Permanent Redirect",
        "{out}"
    );
    assert!(
        out.contains("location: https://localhost:8443/hello"),
        "{out}"
    );

    // 3. With the client certificate the route serves, and the upstream
    // sees who called; without it, no route serves the client.
    let [with_cert, without] = tries[2].commands.as_slice() else {
        panic!("two commands in try 3: {:?}", tries[2]);
    };
    let out = run(&root, with_cert);
    assert_eq!(status_line(&out), "HTTP/2 200", "{out}");
    assert!(
        out.contains("\"x-client-cert\": \"subject=\\\"CN=demo-client"),
        "{out}"
    );
    let out = run(&root, without);
    assert_eq!(status_line(&out), "HTTP/2 404", "{out}");

    script.signal(Signal::INT);
    let stopped = eventually(Duration::from_secs(20), || async {
        script.exited().is_some() && ![8443, 8088, 9100, 9911].into_iter().any(port_open)
    })
    .await;
    assert!(
        stopped,
        "Ctrl-C did not stop everything:\n{}",
        script.failure()
    );
}

/// The JSON results `client.py` printed in `text`, one per line (the
/// gRPC example's own calls, or a try's output).
fn grpc_results(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(|l| {
            serde_json::from_str(l.trim())
                .unwrap_or_else(|e| panic!("not a client.py result ({e}): {l}"))
        })
        .collect()
}

/// The one result a try's command printed.
fn grpc_result(text: &str) -> serde_json::Value {
    let mut all = grpc_results(text);
    assert_eq!(all.len(), 1, "one client.py result:\n{text}");
    all.remove(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_grpc_example_shows_every_call_kind_and_prints_tries_that_work_as_printed() {
    let root: PathBuf = support::repo_root().canonicalize().unwrap();
    let (script, tries) = start_and_read_tries(&root, "./examples/grpc/run.sh").await;

    // The calls the script made itself, before its tries: each kind OK
    // with its replies intact, and the server's error unchanged.
    let printed = script.stdout();
    let made = grpc_results(printed.split("Try these").next().unwrap());
    let case = |name: &str| {
        made.iter()
            .find(|r| r["case"] == name)
            .unwrap_or_else(|| panic!("no {name} call printed:\n{}", script.failure()))
    };
    for kind in ["unary", "server_stream", "client_stream", "bidi"] {
        let r = case(kind);
        assert_eq!(r["code"], "OK", "{kind}: {r}");
        assert_eq!(r["intact"], true, "{kind}: {r}");
    }
    let failed = case("fail");
    assert_eq!(failed["code"], "INVALID_ARGUMENT", "{failed}");
    assert_eq!(failed["details"], "bad thing", "{failed}");
    assert!(
        failed["trailing"]
            .as_array()
            .is_some_and(|t| t.iter().any(|p| p[0] == "x-detail" && p[1] == "why")),
        "{failed}"
    );

    // 1. Balanced: both servers answer.
    let [whoami] = tries[0].commands.as_slice() else {
        panic!("one command in try 1: {:?}", tries[0]);
    };
    let r = grpc_result(&run(&root, whoami));
    let seen = names(&r);
    assert!(
        seen.iter().any(|n| n == "alpha") && seen.iter().any(|n| n == "beta"),
        "{r}"
    );

    // 2. alpha NOT_SERVING: within seconds only beta answers; SERVING
    // again: alpha is back.
    let [down, whoami_again, up] = tries[1].commands.as_slice() else {
        panic!("three commands in try 2: {:?}", tries[1]);
    };
    assert!(tries[1].says.contains("NOT_SERVING"), "{:?}", tries[1].says);
    run(&root, down);
    let only_beta = eventually(Duration::from_secs(10), || async {
        let r = grpc_result(&run(&root, whoami_again));
        r["code"] == "OK" && names(&r).iter().all(|n| n == "beta")
    })
    .await;
    assert!(
        only_beta,
        "alpha still served after NOT_SERVING:\n{}\n{}",
        run(&root, whoami_again),
        script.failure()
    );
    run(&root, up);
    let back = eventually(Duration::from_secs(10), || async {
        names(&grpc_result(&run(&root, whoami_again)))
            .iter()
            .any(|n| n == "alpha")
    })
    .await;
    assert!(back, "alpha did not come back:\n{}", script.failure());

    // 3. Weir's own answer for a service no route serves, as a gRPC status
    // (grpcio would say "Received http2 header with status: 404" for a
    // bare HTTP 404).
    let [unrouted] = tries[2].commands.as_slice() else {
        panic!("one command in try 3: {:?}", tries[2]);
    };
    assert!(
        tries[2].says.contains("UNIMPLEMENTED"),
        "{:?}",
        tries[2].says
    );
    let r = grpc_result(&run(&root, unrouted));
    assert_eq!(r["code"], "UNIMPLEMENTED", "{r}");
    assert!(
        !r["details"].as_str().unwrap_or("").contains("http2 header"),
        "an HTTP status, not a gRPC one: {r}"
    );

    script.signal(Signal::INT);
    let stopped = eventually(Duration::from_secs(20), || async {
        script.exited().is_some() && ![8091, 9921, 9051, 9052].into_iter().any(port_open)
    })
    .await;
    assert!(
        stopped,
        "Ctrl-C did not stop everything:\n{}",
        script.failure()
    );
}
