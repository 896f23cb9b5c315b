//! Redis for the fleet tests: a real `redis-server` on a free port in a
//! temporary folder (no snapshots, no append-only file), which a test can
//! kill and start again on the same port; a small blocking RESP client
//! to look at what the gateways wrote; and a TCP proxy between one
//! gateway and Redis that a test switches to forward, to hold every
//! connection without forwarding a byte (a partition), or to drop them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, watch};

/// The server binary (Debian package `redis-server`; CI installs it).
const REDIS_SERVER: &str = "redis-server";

/// A running `redis-server`; killed when dropped.
pub struct RedisServer {
    port: u16,
    password: Option<String>,
    /// Certificate and key files: the server speaks TLS only.
    tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    dir: tempfile::TempDir,
    /// The TLS files' folder.
    keep: Option<tempfile::TempDir>,
    child: Option<Child>,
}

impl RedisServer {
    /// A server without a password.
    pub fn start() -> RedisServer {
        Self::launch(None, None)
    }

    /// A server that requires `password` (`--requirepass`).
    pub fn start_with_password(password: &str) -> RedisServer {
        Self::launch(Some(password.to_owned()), None)
    }

    /// A server that speaks only TLS, with this certificate and key (PEM).
    pub fn start_tls(cert: &str, key: &str) -> RedisServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let (c, k) = (dir.path().join("redis.crt"), dir.path().join("redis.key"));
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        let mut server = Self::launch(None, Some((c, k)));
        // The files must outlive the server.
        server.keep = Some(dir);
        server
    }

    fn launch(
        password: Option<String>,
        tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    ) -> RedisServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut server = RedisServer {
            port: 0,
            password,
            tls,
            keep: None,
            dir,
            child: None,
        };
        // A port found free may be taken before the server binds it: try
        // another one then.
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn() {
                return server;
            }
        }
        panic!("redis-server did not start; its log:\n{}", server.log());
    }

    /// Starts the server on `self.port`; false if it exited at once (the
    /// port was taken). Waits (bounded) until it answers.
    fn spawn(&mut self) -> bool {
        let mut cmd = Command::new(REDIS_SERVER);
        match &self.tls {
            None => cmd.arg("--port").arg(self.port.to_string()),
            Some((cert, key)) => cmd
                .args(["--port", "0", "--tls-auth-clients", "no", "--tls-port"])
                .arg(self.port.to_string())
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key),
        };
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"));
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{REDIS_SERVER} could not be run ({e}): the fleet tests need it; \
                     install it: apt-get install -y redis-server"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                eprintln!("redis-server on port {} exited: {status}", self.port);
                return false;
            }
            // A TLS server is taken as serving once its port accepts: the
            // plain client below cannot ask it which process it is.
            if self.tls.is_some() {
                if std::net::TcpStream::connect(self.addr()).is_ok() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            // Serving, and this very process (not another server that
            // took the port first).
            match self.serving_pid() {
                Some(pid) if pid == self.child.as_ref().unwrap().id() => return true,
                Some(other) => {
                    eprintln!("port {} is served by process {other}", self.port);
                    self.kill();
                    return false;
                }
                None => {}
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer within 10 s; its log:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The `process_id` of the server answering on the port, if one does.
    fn serving_pid(&self) -> Option<u32> {
        let mut c = Resp::connect(self.addr()).ok()?;
        if let Some(p) = &self.password {
            c.cmd(&["AUTH", p]).ok()?;
        }
        let info = c.cmd(&["INFO", "server"]).ok()?.text();
        info.lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .and_then(|v| v.trim().parse().ok())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `redis://127.0.0.1:PORT`, without the password.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye to its clients) and waits for
    /// it to be gone. Its data goes with it (nothing is saved).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port (after [`kill`]).
    ///
    /// [`kill`]: RedisServer::kill
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is still running");
        assert!(
            self.spawn(),
            "redis-server could not start again on port {}; its log:\n{}",
            self.port,
            self.log()
        );
    }

    /// A client, authenticated when the server has a password.
    pub fn client(&self) -> Resp {
        let mut c = Resp::connect(self.addr()).expect("connect to redis-server");
        if let Some(p) = &self.password {
            let r = c.cmd(&["AUTH", p]).expect("AUTH");
            assert_eq!(r, RespValue::Simple("OK".into()), "AUTH");
        }
        c
    }

    /// Every key the server holds (SCAN to the end).
    pub fn keys(&self) -> Vec<String> {
        let mut c = self.client();
        let mut keys = Vec::new();
        let mut cursor = "0".to_owned();
        loop {
            let r = c.cmd(&["SCAN", &cursor, "COUNT", "1000"]).expect("SCAN");
            let RespValue::Array(mut parts) = r else {
                panic!("SCAN answered {r:?}");
            };
            let batch = parts.pop().expect("SCAN keys");
            cursor = parts.pop().expect("SCAN cursor").text();
            if let RespValue::Array(batch) = batch {
                keys.extend(batch.iter().map(RespValue::text));
            }
            if cursor == "0" {
                return keys;
            }
        }
    }

    /// The server's log file so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespValue {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<RespValue>),
}

impl RespValue {
    /// The reply as text (a string, a number, or `Debug` for the rest).
    pub fn text(&self) -> String {
        match self {
            RespValue::Simple(s) | RespValue::Error(s) => s.clone(),
            RespValue::Int(n) => n.to_string(),
            RespValue::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            other => format!("{other:?}"),
        }
    }
}

/// A blocking RESP2 client on one connection: enough to look at keys.
/// Each call is one local round trip, so it may run on a test's event
/// loop.
pub struct Resp {
    reader: BufReader<TcpStream>,
}

impl Resp {
    pub fn connect(addr: SocketAddr) -> std::io::Result<Resp> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.set_write_timeout(Some(Duration::from_secs(5)))?;
        Ok(Resp {
            reader: BufReader::new(s),
        })
    }

    /// Sends one command and reads its reply (an error reply is `Ok`).
    pub fn cmd(&mut self, args: &[&str]) -> std::io::Result<RespValue> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        self.reader.get_mut().write_all(&out)?;
        self.read()
    }

    fn read(&mut self) -> std::io::Result<RespValue> {
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end_matches("\r\n");
        let (kind, rest) = line.split_at_checked(1).ok_or_else(|| bad("empty line"))?;
        let number = || rest.parse::<i64>().map_err(|_| bad(line));
        Ok(match kind {
            "+" => RespValue::Simple(rest.to_owned()),
            "-" => RespValue::Error(rest.to_owned()),
            ":" => RespValue::Int(number()?),
            "$" => match number()? {
                -1 => RespValue::Bulk(None),
                n => {
                    let mut b = vec![0; usize::try_from(n).map_err(|_| bad(line))? + 2];
                    self.reader.read_exact(&mut b)?;
                    b.truncate(b.len() - 2);
                    RespValue::Bulk(Some(b))
                }
            },
            "*" => match number()? {
                -1 => RespValue::Array(Vec::new()),
                n => (0..n)
                    .map(|_| self.read())
                    .collect::<std::io::Result<_>>()
                    .map(RespValue::Array)?,
            },
            _ => return Err(bad(line)),
        })
    }
}

/// What a [`TcpProxy`] does with its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forwards bytes both ways (connecting to the target on first use).
    Forward,
    /// Forwards nothing and holds every connection open, new ones too:
    /// to the client the peer is silent, as across a network partition.
    /// Switching back to `Forward` resumes the held connections.
    Blackhole,
    /// Closes every connection, and each new one as soon as it comes.
    Drop,
}

/// A TCP proxy on 127.0.0.1 port 0 to `target`, run on a thread of its
/// own (so a test that blocks its own event loop does not stall it);
/// stopped, its connections closed, when dropped.
pub struct TcpProxy {
    pub addr: SocketAddr,
    mode: watch::Sender<ProxyMode>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TcpProxy {
    pub fn start(target: SocketAddr) -> TcpProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, modes) = watch::channel(ProxyMode::Forward);
        let (stop, mut stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("redis-proxy".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    loop {
                        tokio::select! {
                            _ = &mut stopped => return,
                            accepted = listener.accept() => {
                                if let Ok((client, _)) = accepted {
                                    tokio::spawn(proxy_conn(client, target, modes.clone()));
                                }
                            }
                        }
                    }
                });
                // Dropping the runtime ends every connection's task,
                // which closes its sockets.
            })
            .unwrap();
        TcpProxy {
            addr,
            mode,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `redis://` URL of the proxy.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    pub fn set(&self, mode: ProxyMode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One proxied connection, following the proxy's mode.
async fn proxy_conn(
    mut client: tokio::net::TcpStream,
    target: SocketAddr,
    mut mode: watch::Receiver<ProxyMode>,
) {
    let mut upstream: Option<tokio::net::TcpStream> = None;
    let (mut up_buf, mut down_buf) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    loop {
        let now = *mode.borrow_and_update();
        match now {
            ProxyMode::Drop => return,
            ProxyMode::Blackhole => {
                if mode.changed().await.is_err() {
                    return;
                }
            }
            ProxyMode::Forward => {
                if upstream.is_none() {
                    match tokio::net::TcpStream::connect(target).await {
                        Ok(s) => upstream = Some(s),
                        Err(_) => return,
                    }
                }
                let server = upstream.as_mut().unwrap();
                let (mut cr, mut cw) = client.split();
                let (mut sr, mut sw) = server.split();
                tokio::select! {
                    r = cr.read(&mut up_buf) => match r {
                        Ok(n) if n > 0 => {
                            if sw.write_all(&up_buf[..n]).await.is_err() {
                                return;
                            }
                        }
                        _ => return,
                    },
                    r = sr.read(&mut down_buf) => match r {
                        Ok(n) if n > 0 => {
                            if cw.write_all(&down_buf[..n]).await.is_err() {
                                return;
                            }
                        }
                        _ => return,
                    },
                    changed = mode.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}
