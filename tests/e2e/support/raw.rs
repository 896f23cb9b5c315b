//! A raw HTTP/1.1 client connection: it writes exactly the bytes a test
//! gives it and reads responses one at a time (interim ones included),
//! each read bounded, so a test can follow a keep-alive exchange step by
//! step without waiting for the gateway to close.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one read may wait.
const WAIT: Duration = Duration::from_secs(5);

/// One response as read off the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    pub async fn open(addr: SocketAddr) -> RawConn {
        RawConn {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next response; panics when none comes whole within the wait.
    pub async fn response(&mut self) -> RawResponse {
        self.read_response(false).await
    }

    /// The next response, to a HEAD request: one without a body whatever
    /// its `Content-Length` says (RFC 9110 section 9.3.2).
    pub async fn head_response(&mut self) -> RawResponse {
        self.read_response(true).await
    }

    async fn read_response(&mut self, to_head: bool) -> RawResponse {
        loop {
            if let Some((resp, len)) = parse(&self.buf, to_head) {
                self.buf.drain(..len);
                return resp;
            }
            let mut chunk = [0u8; 8192];
            let n = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no whole response within {WAIT:?}: {:?}",
                        self.buf.escape_ascii().to_string()
                    )
                })
                .unwrap();
            assert!(
                n > 0,
                "the gateway closed the connection after {:?}",
                self.buf.escape_ascii().to_string()
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads to the end; true when the gateway closed the connection
    /// within the wait. Whatever came before the close is returned too.
    pub async fn closed(&mut self) -> (bool, Vec<u8>) {
        let mut rest = std::mem::take(&mut self.buf);
        let closed = tokio::time::timeout(WAIT, self.stream.read_to_end(&mut rest))
            .await
            .is_ok_and(|r| r.is_ok());
        (closed, rest)
    }
}

/// The first whole response in `buf` and its length in bytes.
fn parse(buf: &[u8], to_head: bool) -> Option<(RawResponse, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head) = resp.parse(buf).unwrap() else {
        return None;
    };
    let status = resp.code.unwrap();
    let headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let length = match status {
        _ if to_head => 0,
        100..=199 | 204 | 304 => 0,
        _ => headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().unwrap())
            .expect("a response with a Content-Length"),
    };
    if buf.len() < head + length {
        return None;
    }
    let body = buf[head..head + length].to_vec();
    Some((
        RawResponse {
            status,
            headers,
            body,
        },
        head + length,
    ))
}
