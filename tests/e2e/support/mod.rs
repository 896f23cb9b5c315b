//! Test harness: the real `weir` binary as a child process, real upstream
//! HTTP servers on port 0 (a raw one that records the bytes it receives,
//! and one that holds requests until the test releases them), an HTTP
//! client, a raw TCP client for malformed input, and a bounded
//! `eventually` for asynchronous outcomes.

#![allow(dead_code)]

pub mod grpc;
pub mod h2;
pub mod held;
pub mod jwt;
pub mod metrics;
pub mod pki;
pub mod raw;
pub mod recording;
pub mod redis;
pub mod upstream;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustix::process::{Pid, Signal, kill_process};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use upstream::Upstream;

/// Path of the gateway binary Cargo built for these tests.
pub fn weir_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_weir"))
}

/// Runs `weir check -c path`: whether it passed, and what it printed on
/// stderr (the problems, one per line, and warnings).
pub fn weir_check(path: &Path) -> (bool, String) {
    let out = Command::new(weir_bin())
        .args(["check", "-c"])
        .arg(path)
        .output()
        .expect("run weir check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The repository root (for `examples/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A running gateway process.
pub struct Gateway {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Listener name → bound address, from the `listening` log lines.
    pub listeners: HashMap<String, SocketAddr>,
    logs: Arc<Mutex<Vec<String>>>,
}

/// A configuration: TOML text written to `weir.toml` in a fresh temporary
/// folder (files the config refers to can be put there with `file`).
pub struct GatewayBuilder {
    config: String,
    files: Vec<(String, Vec<u8>)>,
    /// Symbolic links (name, target) made after the files.
    links: Vec<(String, String)>,
    args: Vec<String>,
}

impl GatewayBuilder {
    pub fn file(mut self, name: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push((name.to_owned(), contents.into()));
        self
    }

    /// A symbolic link `name` → `target` in the gateway's folder.
    pub fn symlink(mut self, name: &str, target: &str) -> Self {
        self.links.push((name.to_owned(), target.to_owned()));
        self
    }

    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_owned());
        self
    }

    /// Starts the gateway and waits (bounded) until every listener is up.
    pub fn start(self) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, contents) in &self.files {
            let p = dir.path().join(name);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).unwrap();
            }
            std::fs::write(p, contents).unwrap();
        }
        for (name, target) in &self.links {
            std::os::unix::fs::symlink(target, dir.path().join(name)).unwrap();
        }
        let config = dir.path().join("weir.toml");
        std::fs::write(&config, &self.config).unwrap();
        let expected = self.config.matches("[[listener]]").count()
            + usize::from(self.config.contains("[admin]"));

        let mut child = Command::new(weir_bin())
            .args(["--log-format", "json", "--log-level", "debug"])
            .args(&self.args)
            .arg("run")
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weir");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                        && v["message"] == "listening"
                    {
                        let name = v["listener"].as_str().unwrap_or("").to_owned();
                        let addr: SocketAddr = v["address"].as_str().unwrap().parse().unwrap();
                        let _ = tx.send((name, addr));
                    }
                    logs.lock().unwrap().push(line);
                }
            });
        }
        let mut listeners = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while listeners.len() < expected {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((name, addr)) => {
                    listeners.insert(name, addr);
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().ok();
                    panic!(
                        "gateway did not start (exit {status:?}); logs:\n{}",
                        logs.lock().unwrap().join("\n")
                    );
                }
            }
        }
        Gateway {
            child: Some(child),
            dir,
            listeners,
            logs,
        }
    }
}

impl Gateway {
    pub fn with_config(config: impl Into<String>) -> GatewayBuilder {
        GatewayBuilder {
            config: config.into(),
            files: Vec::new(),
            links: Vec::new(),
            args: Vec::new(),
        }
    }

    /// The address of the only (or the named) listener.
    pub fn addr(&self) -> SocketAddr {
        assert_eq!(self.listeners.len(), 1, "use listener(name)");
        *self.listeners.values().next().unwrap()
    }

    pub fn listener(&self, name: &str) -> SocketAddr {
        self.listeners[name]
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Every log line so far (JSON, one object per line).
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// The log so far without its DEBUG lines, one per line: what a
    /// failing assertion shows.
    pub fn logs_for_failure(&self) -> String {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| !l.contains("DEBUG"))
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// How many of the gateway's threads have a name starting with
    /// `prefix`, and how often they have gone to sleep and woken since
    /// they started (the sum of their voluntary context switches).
    pub fn thread_wakeups(&self, prefix: &str) -> (usize, u64) {
        let tasks = format!("/proc/{}/task", self.pid());
        let (mut threads, mut wakeups) = (0, 0);
        for task in std::fs::read_dir(&tasks).unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if !comm.starts_with(prefix) {
                continue;
            }
            threads += 1;
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            wakeups += status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
        (threads, wakeups)
    }

    /// CPU time the whole process (every thread) has used so far, from
    /// /proc/PID/stat (user + system, in USER_HZ ticks of 10 ms).
    pub fn cpu_time(&self) -> Duration {
        let s = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the command name, which is in parentheses and may
        // hold spaces: state is field 3, utime 14 and stime 15.
        let rest = &s[s.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        Duration::from_millis(ticks * 10)
    }

    /// A field of /proc/PID/status in KiB, e.g. `VmRSS` or `VmHWM`.
    pub fn proc_status_kb(&self, field: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    /// Sends SIGTERM (graceful shutdown).
    pub fn sigterm(&self) {
        self.signal(Signal::TERM);
    }

    /// Sends SIGHUP (reload the configuration).
    pub fn sighup(&self) {
        self.signal(Signal::HUP);
    }

    /// Sends SIGUSR1 (reopen the access log's file).
    pub fn sigusr1(&self) {
        self.signal(Signal::USR1);
    }

    /// Sends `sig` with a system call: slim images may lack a `kill`
    /// program. The child is only reaped by `wait_exit` or on drop, so its
    /// pid cannot have been reused meanwhile.
    fn signal(&self, sig: Signal) {
        let pid = Pid::from_child(self.child.as_ref().unwrap());
        kill_process(pid, sig).unwrap_or_else(|e| panic!("kill({pid:?}, {sig:?}): {e}"));
    }

    /// Waits (bounded) for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                panic!("gateway did not exit within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().unwrap().try_wait().unwrap().is_none()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls `check` until it returns true, for at most `within`.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// An HTTP/1.1 keep-alive client.
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 client with prior knowledge (h2c).
pub fn h2c_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A response read to its end.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub version: http::Version,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends a request and reads the whole response.
pub async fn send(client: &HttpClient, req: http::Request<Full<Bytes>>) -> Reply {
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .expect("request timed out")
        .expect("request failed");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
        version: parts.version,
    }
}

/// Sends a request and reads its answer whole; a transport failure or a
/// timeout is an `Err` with the reason instead of a panic, so a test under
/// load can count failures.
pub async fn try_send<B>(
    client: &Client<HttpConnector, B>,
    req: http::Request<B>,
) -> Result<(u16, Bytes), String>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| format!("request: {e:?}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((status, body))
}

/// GET with extra headers.
pub async fn get(client: &HttpClient, url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut b = http::Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(client, b.body(Full::new(Bytes::new())).unwrap()).await
}

/// Writes raw bytes on a fresh TCP connection and reads until the peer
/// closes (or `within` passes). Returns what was read.
pub async fn raw(addr: SocketAddr, bytes: &[u8], within: Duration) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(within, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of the first response in raw HTTP/1.1 text.
pub fn raw_status(resp: &str) -> Option<u16> {
    resp.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// A configuration with one listener (`listener_extra` lines added to it),
/// one upstream per `(name, address)` and the given route blocks.
pub fn config(listener_extra: &str, upstreams: &[(&str, SocketAddr)], routes: &str) -> String {
    let mut s = format!(
        "[server]\nworkers = 2\ndrain_timeout = \"10s\"\n\n[[listener]]\nname = \"main\"\naddress = \"127.0.0.1:0\"\n{listener_extra}\n"
    );
    for (name, addr) in upstreams {
        s.push_str(&format!(
            "\n[[upstream]]\nname = \"{name}\"\nendpoints = [\"{addr}\"]\nconnect_timeout = \"1s\"\n"
        ));
    }
    s.push('\n');
    s.push_str(routes);
    s
}

/// Continuous load: `clients` keep-alive clients each sending GET `url`
/// in a loop until [`Load::finish`]. Every answer other than 200 and every
/// transport error is recorded as a failure.
pub struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    ok: Arc<std::sync::atomic::AtomicUsize>,
    failed: Arc<Mutex<Vec<String>>>,
    last: Arc<Mutex<Option<Reply>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(url: &str, clients: usize) -> Load {
        use std::sync::atomic::Ordering;
        let load = Load {
            stop: Arc::default(),
            ok: Arc::default(),
            failed: Arc::default(),
            last: Arc::default(),
            tasks: Vec::new(),
        };
        let tasks = (0..clients)
            .map(|_| {
                let (stop, ok, failed, last) = (
                    load.stop.clone(),
                    load.ok.clone(),
                    load.failed.clone(),
                    load.last.clone(),
                );
                let url = url.to_owned();
                tokio::spawn(async move {
                    let c = client();
                    while !stop.load(Ordering::Relaxed) {
                        let req = http::Request::get(&url).body(Full::default()).unwrap();
                        let resp = tokio::time::timeout(Duration::from_secs(30), c.request(req));
                        match resp.await {
                            Ok(Ok(resp)) => {
                                let (parts, body) = resp.into_parts();
                                let body = match body.collect().await {
                                    Ok(b) => b.to_bytes(),
                                    Err(e) => {
                                        failed.lock().unwrap().push(format!("body: {e}"));
                                        continue;
                                    }
                                };
                                if parts.status != 200 {
                                    failed.lock().unwrap().push(format!(
                                        "status {}: {}",
                                        parts.status,
                                        String::from_utf8_lossy(&body)
                                    ));
                                    continue;
                                }
                                ok.fetch_add(1, Ordering::Relaxed);
                                *last.lock().unwrap() = Some(Reply {
                                    status: 200,
                                    headers: parts.headers,
                                    body,
                                    version: parts.version,
                                });
                            }
                            Ok(Err(e)) => failed.lock().unwrap().push(e.to_string()),
                            Err(_) => failed.lock().unwrap().push("timed out".into()),
                        }
                    }
                })
            })
            .collect();
        Load { tasks, ..load }
    }

    /// Requests answered 200 so far.
    pub fn ok(&self) -> usize {
        self.ok.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The latest 200 answer any client got.
    pub fn last(&self) -> Option<Reply> {
        self.last.lock().unwrap().as_ref().map(|r| Reply {
            status: r.status,
            headers: r.headers.clone(),
            body: r.body.clone(),
            version: r.version,
        })
    }

    /// Stops the clients and asserts that none failed and at least
    /// `at_least` requests were answered; returns how many were. A failure
    /// report carries the gateway's warnings and errors, which say why.
    pub async fn finish_without_failures(self, gw: &Gateway, at_least: usize) -> usize {
        let (ok, failed) = self.finish().await;
        assert!(
            failed.is_empty(),
            "{} failed requests: {:?}\ngateway warnings and errors:\n{}",
            failed.len(),
            &failed[..failed.len().min(5)],
            gw.logs()
                .iter()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(ok >= at_least, "too little load: {ok} requests");
        ok
    }

    /// Stops the clients; returns the number of 200 answers and every
    /// failure.
    pub async fn finish(self) -> (usize, Vec<String>) {
        let Load {
            stop,
            ok,
            failed,
            tasks,
            ..
        } = self;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        let failed = failed.lock().unwrap().clone();
        (ok.load(std::sync::atomic::Ordering::Relaxed), failed)
    }
}
