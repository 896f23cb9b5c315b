//! A raw-TCP upstream that records the exact bytes it receives, so a test
//! can assert what reached an upstream byte for byte, or that nothing did.
//! It follows HTTP/1.1 framing just far enough to answer each request
//! (the head to its blank line with httparse, the body by
//! `Content-Length` or chunk by chunk) with a canned response. Told to,
//! it plays the upstream an h2c smuggling attack wants: it switches
//! protocols when asked (or unasked) and then records whatever the
//! gateway passes on.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What the upstream answers to a request.
#[derive(Debug, Clone, Copy)]
pub enum Switch {
    /// Always `200 OK` with the body `ok`.
    Never,
    /// `101` naming the request's own `Upgrade` when it has one (as an
    /// upstream that speaks the protocol does), else `200 OK`.
    WhenAsked,
    /// `101` to every request, naming this protocol.
    Always(&'static str),
}

/// A running recording upstream; stopped when dropped.
pub struct Recording {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
    task: JoinHandle<()>,
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recording {
    pub async fn start(switch: Switch) -> Recording {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let record = received.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve(stream, record.clone(), switch));
            }
        });
        Recording {
            addr,
            received,
            task,
        }
    }

    /// Every byte received so far, over all connections, in arrival order.
    pub fn received(&self) -> Vec<u8> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (bounded) until exactly `want` has been received, and panics
    /// with what was received instead, escaped, when it is not.
    pub async fn expect(&self, want: &[u8]) {
        let done = super::eventually(Duration::from_secs(5), || async {
            self.received().len() >= want.len()
        })
        .await;
        let got = self.received();
        assert!(
            done && got == want,
            "the upstream received\n{}\ninstead of\n{}",
            got.escape_ascii(),
            want.escape_ascii()
        );
    }
}

/// Records and answers one connection's requests until it closes; after
/// a 101, only records.
async fn serve(mut stream: TcpStream, record: Arc<Mutex<Vec<u8>>>, switch: Switch) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 8192];
    let mut tunnel = false;
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        record.lock().unwrap().extend_from_slice(&buf[..n]);
        if tunnel {
            continue;
        }
        pending.extend_from_slice(&buf[..n]);
        while let Some(req) = request_end(&pending) {
            pending.drain(..req.len);
            let answer = match (switch, req.upgrade) {
                (Switch::Always(p), _) => switched(p),
                (Switch::WhenAsked, Some(p)) => switched(&p),
                // A response to HEAD has no body (RFC 9110 section 9.3.2).
                _ if req.head => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n".to_vec(),
                _ => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
            };
            if stream.write_all(&answer).await.is_err() {
                return;
            }
            if answer.starts_with(b"HTTP/1.1 101") {
                tunnel = true;
                break;
            }
        }
    }
}

fn switched(protocol: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: {protocol}\r\n\r\n"
    )
    .into_bytes()
}

/// The first whole request of a connection's unanswered bytes.
struct Request {
    len: usize,
    upgrade: Option<String>,
    head: bool,
}

/// The first whole request in `buf`; `None` while it is incomplete.
fn request_end(buf: &[u8]) -> Option<Request> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(head) = req.parse(buf).ok()? else {
        return None;
    };
    let value = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
    };
    let body = if value("transfer-encoding").is_some() {
        chunked_end(&buf[head..])?
    } else {
        let length: usize = value("content-length").map_or(0, |v| v.parse().unwrap());
        (buf.len() >= head + length).then_some(length)?
    };
    Some(Request {
        len: head + body,
        upgrade: value("upgrade"),
        head: req.method == Some("HEAD"),
    })
}

/// The length of a chunked body (trailers included) at the start of
/// `body`; `None` while it is incomplete.
fn chunked_end(body: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let line = body[at..].windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&body[at..at + line]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        at += line + 2;
        if size == 0 {
            // Trailer lines, then the empty line.
            loop {
                let line = body[at..].windows(2).position(|w| w == b"\r\n")?;
                at += line + 2;
                if line == 0 {
                    return Some(at);
                }
            }
        }
        if body.len() < at + size + 2 {
            return None;
        }
        at += size + 2;
    }
}
