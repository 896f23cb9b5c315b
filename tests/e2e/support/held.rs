//! An upstream that holds every request until the test releases it, on
//! raw TCP so it sees exactly when the gateway gives up on a request: it
//! reports each request's target as it arrives, answers `200` with the
//! body `held:TARGET` (and `x-held: TARGET`) once released (and at once
//! after that), and counts the connections the gateway closed while a
//! request waited on them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// A running holding upstream; stopped when dropped.
pub struct Held {
    pub addr: SocketAddr,
    arrived: tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>,
    release: watch::Sender<bool>,
    closed: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Held {
    pub async fn start() -> Held {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (arrived_tx, arrived) = mpsc::unbounded_channel();
        let (release, released) = watch::channel(false);
        let closed = Arc::new(AtomicUsize::new(0));
        let count = closed.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (tx, rx, count) = (arrived_tx.clone(), released.clone(), count.clone());
                conns.spawn(hold(stream, tx, rx, count));
            }
        });
        Held {
            addr,
            arrived: tokio::sync::Mutex::new(arrived),
            release,
            closed,
            task,
        }
    }

    /// The target of the next request to arrive; panics when none does
    /// within 10 s.
    pub async fn arrival(&self) -> String {
        let mut rx = self.arrived.lock().await;
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a request reached the held upstream")
            .unwrap()
    }

    /// Answers every request held, and every later one at once.
    pub fn release(&self) {
        self.release.send_replace(true);
    }

    /// Connections the gateway closed while a request on them was held.
    pub fn closed(&self) -> usize {
        self.closed.load(Ordering::Acquire)
    }
}

/// Serves one connection: each request is held until the release, or
/// until the gateway closes the connection.
async fn hold(
    mut stream: TcpStream,
    arrived: mpsc::UnboundedSender<String>,
    mut released: watch::Receiver<bool>,
    closed: Arc<AtomicUsize>,
) {
    let mut pending = Vec::new();
    loop {
        let Some(target) = request(&mut stream, &mut pending).await else {
            return;
        };
        let _ = arrived.send(target.clone());
        let mut byte = [0u8; 1];
        tokio::select! {
            _ = released.wait_for(|r| *r) => {}
            // A gateway waiting for its answer sends nothing more: a read
            // that ends is the connection closed.
            n = stream.read(&mut byte) => {
                if matches!(n, Ok(0) | Err(_)) {
                    closed.fetch_add(1, Ordering::AcqRel);
                }
                return;
            }
        }
        let body = format!("held:{target}");
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-held: {target}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Reads one request (its head, and a body by `Content-Length`) and
/// returns its target; `None` when the connection ends first.
async fn request(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Option<String> {
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).into_owned();
            let length: usize = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .map_or(0, |(_, v)| v.trim().parse().unwrap());
            if pending.len() >= end + 4 + length {
                pending.drain(..end + 4 + length);
                return head.split(' ').nth(1).map(str::to_owned);
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
}
