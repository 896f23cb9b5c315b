//! Weir's own HTTP/1.1 upstream connection as an endpoint meets it on the
//! wire: informational answers read past, ambiguous or oversized response
//! heads refused, a body ended by the close, bytes past a response keeping
//! the connection out of the pool, request bodies framed by length or by
//! chunks on one kept-alive connection, and an endpoint that answers
//! before the upload ends. A scripted raw endpoint behind, raw clients in
//! front, so the bytes on both sides are the ones asserted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

const WAIT: Duration = Duration::from_secs(5);

fn gateway(upstream: std::net::SocketAddr) -> Gateway {
    Gateway::with_config(config(
        "",
        &[("app", upstream)],
        "[[route]]\nname = \"app\"\nupstream = \"app\"\nretry_attempts = 0\n",
    ))
    .start()
}

/// A raw endpoint: reads each request (its head, then a body framed by
/// `Content-Length` or chunks), keeps its bytes, and writes what
/// `answer` gives for the n-th request it read (counting over all
/// connections); closes after an answer when `close` says so.
/// What a scripted endpoint writes for its n-th request, and whether it
/// closes after.
type Answer = fn(usize) -> (Vec<u8>, bool);

struct Scripted {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Scripted {
    async fn start(answer: Answer) -> Scripted {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (a, r) = (accepted.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                a.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let Some(req) = read_request(&mut s, &mut buf).await else {
                            return;
                        };
                        let n = {
                            let mut all = r.lock().unwrap();
                            all.push(req);
                            all.len() - 1
                        };
                        let (bytes, close) = answer(n);
                        if s.write_all(&bytes).await.is_err() || close {
                            let _ = s.shutdown().await;
                            return;
                        }
                    }
                });
            }
        });
        Scripted {
            addr,
            accepted,
            requests,
        }
    }

    fn request(&self, n: usize) -> String {
        String::from_utf8_lossy(&self.requests.lock().unwrap()[n]).into_owned()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One whole request from `s` (bytes beyond it stay in `buf`); `None`
/// when the peer closes first.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map(|v| v.trim().parse::<usize>().unwrap());
            let total = if let Some(n) = length {
                Some(end + 4 + n)
            } else if head.contains("transfer-encoding: chunked") {
                // The last chunk (after a data chunk's CRLF, or first),
                // then its trailer section up to the empty line.
                let last = find(&buf[end + 2..], b"\r\n0\r\n").map(|i| end + 2 + i + 5);
                last.and_then(|at| {
                    if buf[at..].starts_with(b"\r\n") {
                        Some(at + 2)
                    } else {
                        find(&buf[at..], b"\r\n\r\n").map(|i| at + i + 4)
                    }
                })
            } else {
                Some(end + 4)
            };
            if let Some(total) = total.filter(|t| *t <= buf.len()) {
                return Some(buf.drain(..total).collect());
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Sends `req` on a new connection and reads the whole answer (the
/// gateway closes after it: every request here says `Connection: close`).
async fn exchange(gw: &Gateway, req: &[u8]) -> String {
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(req).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut got))
        .await
        .expect("the gateway answers and closes")
        .unwrap();
    String::from_utf8_lossy(&got).into_owned()
}

const GET: &[u8] = b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

#[tokio::test]
async fn informational_answers_are_read_past_and_the_final_one_is_forwarded() {
    let up = Scripted::start(|_| {
        (
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n\
              HTTP/1.1 100 Continue\r\n\r\n\
              HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                .to_vec(),
            false,
        )
    })
    .await;
    let gw = gateway(up.addr);
    let text = exchange(&gw, GET).await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nok"), "{text}");
    // One status line only (a bare "103" could be in the request id).
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    assert!(
        !text.contains("Early Hints") && !text.contains("a.css"),
        "{text}"
    );

    // More than 16 of them is an endpoint that never answers.
    let up =
        Scripted::start(|_| (b"HTTP/1.1 100 Continue\r\n\r\n".repeat(17).to_vec(), false)).await;
    let gw = gateway(up.addr);
    let text = exchange(&gw, GET).await;
    assert!(text.starts_with("HTTP/1.1 502 "), "{text}");
}

#[tokio::test]
async fn ambiguous_or_oversized_response_heads_are_refused_with_502() {
    let answers: [Answer; 5] = [
        // Content-Length beside chunked: which one frames it?
        |_| {
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n\
                  0\r\n\r\n"
                    .to_vec(),
                false,
            )
        },
        // Two lengths.
        |_| {
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok!".to_vec(),
                false,
            )
        },
        // A bare LF.
        |_| {
            (
                b"HTTP/1.1 200 OK\ncontent-length: 2\r\n\r\nok".to_vec(),
                false,
            )
        },
        // A head over 64 KiB.
        |_| {
            let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..700 {
                head.extend_from_slice(format!("x-f{i}: {}\r\n", "v".repeat(100)).as_bytes());
            }
            head.extend_from_slice(b"content-length: 2\r\n\r\nok");
            (head, false)
        },
        // A bad chunk size.
        |_| {
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n"
                    .to_vec(),
                true,
            )
        },
    ];
    for (i, answer) in answers.into_iter().enumerate() {
        let up = Scripted::start(answer).await;
        let gw = gateway(up.addr);
        let text = exchange(&gw, GET).await;
        if i < 4 {
            assert!(text.starts_with("HTTP/1.1 502 "), "answer {i}: {text}");
        } else {
            // The head was fine, the body broke as it came: the client's
            // connection is cut, before or after the head, and never
            // reads as a complete response.
            assert!(
                text.is_empty() || text.starts_with("HTTP/1.1 200 "),
                "answer {i}: {text}"
            );
            assert!(!text.ends_with("0\r\n\r\n"), "answer {i}: {text}");
        }
    }
}

#[tokio::test]
async fn a_body_ended_by_the_close_is_streamed_and_its_connection_not_reused() {
    let up = Scripted::start(|n| {
        (
            format!("HTTP/1.1 200 OK\r\n\r\nanswer {n} until the close").into_bytes(),
            true,
        )
    })
    .await;
    let gw = gateway(up.addr);
    for n in 0..2 {
        let text = exchange(&gw, GET).await;
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
        assert!(
            text.contains(&format!("answer {n} until the close")),
            "{text}"
        );
        assert!(
            text.ends_with("0\r\n\r\n"),
            "a complete chunked body: {text}"
        );
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn bytes_past_a_response_keep_its_connection_out_of_the_pool() {
    // The first answer carries bytes nobody asked for after its body: were
    // the connection reused, they would be read as the next answer.
    let up = Scripted::start(|n| match n {
        0 => (
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirstHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nforge"
                .to_vec(),
            false,
        ),
        _ => (b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecond".to_vec(), false),
    })
    .await;
    let gw = gateway(up.addr);
    let text = exchange(&gw, GET).await;
    assert!(text.ends_with("\r\n\r\nfirst"), "{text}");
    let text = exchange(&gw, GET).await;
    assert!(text.ends_with("\r\n\r\nsecond"), "{text}");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn request_bodies_go_by_length_or_by_chunks_on_one_kept_connection() {
    let up = Scripted::start(|n| {
        (
            format!("HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n{n}").into_bytes(),
            false,
        )
    })
    .await;
    let gw = gateway(up.addr);
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(
        b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello\
          POST /b HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          3\r\nabc\r\n2\r\nde\r\n0\r\nx-sum: 5\r\n\r\n\
          GET /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&got);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 3, "{text}");

    let a = up.request(0);
    assert!(a.starts_with("POST /a HTTP/1.1\r\n"), "{a}");
    assert!(a.contains("content-length: 5\r\n"), "{a}");
    assert!(!a.contains("transfer-encoding"), "{a}");
    assert!(a.ends_with("\r\n\r\nhello"), "{a}");
    let b = up.request(1);
    assert!(b.starts_with("POST /b HTTP/1.1\r\n"), "{b}");
    assert!(b.contains("transfer-encoding: chunked\r\n"), "{b}");
    assert!(!b.contains("content-length"), "{b}");
    assert!(
        b.ends_with("\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nx-sum: 5\r\n\r\n"),
        "{b}"
    );
    let c = up.request(2);
    assert!(c.starts_with("GET /c HTTP/1.1\r\n"), "{c}");
    assert!(
        !c.contains("content-length") && !c.contains("transfer-encoding"),
        "{c}"
    );
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        1,
        "all three on one upstream connection"
    );
}

#[tokio::test]
async fn an_endpoint_that_answers_before_the_upload_ends_is_heard_at_once() {
    // The endpoint answers 413 as soon as it has the head, then reads
    // nothing more.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while find(&buf, b"\r\n\r\n").is_none() {
            let n = s.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
        }
        s.write_all(
            b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\nconnection: close\r\n\r\ntoo big\n",
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let gw = gateway(addr);
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\nfirst bytes")
        .await
        .unwrap();
    // The rest of the upload never comes: the answer must not wait for it.
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !got.ends_with(b"too big\n") {
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk))
            .await
            .expect("the early answer arrives while the upload is unfinished")
            .unwrap();
        assert!(n > 0, "closed early: {}", got.escape_ascii());
        got.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 413 "), "{text}");
}

/// Where `needle` starts in `head`, which must hold it exactly once.
fn once(head: &str, needle: &str) -> usize {
    assert_eq!(head.matches(needle).count(), 1, "{needle:?} once in {head}");
    head.find(needle).unwrap()
}

#[tokio::test]
async fn a_response_head_goes_out_as_received_less_its_hop_by_hop_fields() {
    let up = Scripted::start(|n| {
        let answer: &[u8] = match n {
            // Fields kept as received: their case and order, repeated
            // names apart; hop-by-hop ones and the framing left out.
            0 => {
                b"HTTP/1.1 200 OK\r\nServer: Scripted\r\nSet-Cookie: a=1\r\n\
                   Connection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-Mixed-Case: Yes\r\n\
                   Transfer-Encoding: chunked\r\nSet-Cookie: b=2\r\n\
                   Proxy-Authenticate: Basic\r\nDate: Tue, 01 Dec 2026 00:00:00 GMT\r\n\
                   Trailer: x-t\r\n\r\n2\r\nok\r\n0\r\n\r\n"
            }
            // A HEAD's answer keeps the length it announces.
            1 => b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nX-A: 1\r\n\r\n",
            // A `Via` is extended and a field `Connection` names removed:
            // the head goes through a map.
            _ => {
                b"HTTP/1.1 200 OK\r\nVia: 1.0 other\r\nConnection: x-secret\r\n\
                   X-Secret: 1\r\nX-B: 2\r\nContent-Length: 2\r\n\r\nok"
            }
        };
        (answer.to_vec(), false)
    })
    .await;
    let gw = gateway(up.addr);

    let text = exchange(&gw, GET).await;
    let end = text.find("\r\n\r\n").unwrap();
    let (head, body) = (&text[..end + 2], &text[end + 4..]);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    let order = [
        "\r\nServer: Scripted\r\n",
        "\r\nSet-Cookie: a=1\r\n",
        "\r\nX-Mixed-Case: Yes\r\n",
        "\r\nSet-Cookie: b=2\r\n",
        "\r\nDate: Tue, 01 Dec 2026 00:00:00 GMT\r\n",
        "\r\nTrailer: x-t\r\n",
        "\r\nvia: 1.1 weir\r\n",
    ]
    .map(|f| once(head, f));
    assert!(order.is_sorted(), "fields out of order: {head}");
    let lower = head.to_ascii_lowercase();
    for gone in ["keep-alive", "proxy-authenticate", "content-length"] {
        assert!(!lower.contains(gone), "{gone} in {head}");
    }
    once(&lower, "\r\ndate: ");
    once(&lower, "\r\ntransfer-encoding: chunked\r\n");
    once(&lower, "\r\nconnection: close\r\n");
    once(&lower, "\r\nx-request-id: ");
    assert_eq!(body, "2\r\nok\r\n0\r\n\r\n", "{text}");

    let text = exchange(
        &gw,
        b"HEAD /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    once(&text, "\r\ncontent-length: 1234\r\n");
    once(&text, "\r\nX-A: 1\r\n");
    assert!(
        text.ends_with("\r\n\r\n"),
        "no body after a HEAD's head: {text}"
    );

    let text = exchange(&gw, GET).await;
    let lower = text.to_ascii_lowercase();
    once(&lower, "\r\nvia: 1.0 other, 1.1 weir\r\n");
    once(&lower, "\r\nx-b: 2\r\n");
    assert!(!lower.contains("x-secret"), "{text}");
    assert!(text.ends_with("\r\n\r\nok"), "{text}");
}
