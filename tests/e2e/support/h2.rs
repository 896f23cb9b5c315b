//! HTTP/2 upstreams for the tests of Weir's HTTP/2 upstream side
//! (`h2_upstream/`): a TCP server that hands each connection to a
//! script and counts them; hyper HTTP/2 servers with a handler (h2c, or
//! over rustls with the ALPN a test chooses, recording the version each
//! request arrived in); an h2-crate server that records every request by
//! its id and can refuse streams or send GOAWAY after a number of them;
//! and a raw frame-level connection for upstreams that break the protocol
//! on purpose (frames written byte by byte, HPACK literals encoded by
//! hand). Also clients whose request bodies stream and carry trailers.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::pki::Pem;
use super::upstream::UpBody;

// ---------------------------------------------------------------------
// A TCP server whose connections each go to a script.

/// A server on 127.0.0.1 port 0 that hands each accepted connection,
/// with its index (0 for the first), to a task of its own. It counts the
/// connections it accepted; it stops, connections and all, when dropped.
pub struct TcpServer {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TcpServer {
    pub async fn start<F, Fut>(script: F) -> TcpServer
    where
        F: Fn(usize, TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            // Connection tasks live in the set, so aborting this task (on
            // drop) ends them too.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accept = listener.accept() => {
                        let Ok((stream, _)) = accept else { continue };
                        let _ = stream.set_nodelay(true);
                        let index = count.fetch_add(1, Ordering::SeqCst);
                        conns.spawn(script(index, stream));
                    }
                    // Reap finished connections so the set does not grow.
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        TcpServer {
            addr,
            accepted,
            task,
        }
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

// ---------------------------------------------------------------------
// hyper HTTP/2 servers with a handler.

/// What answers each request of a hyper-served upstream.
pub type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<UpBody>> + Send>>
        + Send
        + Sync,
>;

/// Wraps an async closure as a [`Handler`].
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<UpBody>> + Send + 'static,
{
    Arc::new(move |req| Box::pin(f(req)))
}

/// Serves one connection with hyper's HTTP/2 server (prior knowledge).
pub async fn serve_h2<I>(io: I, handler: Handler, max_streams: Option<u32>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let h = handler.clone();
        async move { Ok::<_, Infallible>(h(req).await) }
    });
    let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    if let Some(n) = max_streams {
        b.max_concurrent_streams(n);
    }
    let _ = b.serve_connection(TokioIo::new(io), svc).await;
}

/// Serves one connection with hyper's HTTP/1.1 server.
pub async fn serve_h1<I>(io: I, handler: Handler)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let h = handler.clone();
        async move { Ok::<_, Infallible>(h(req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

/// An h2c upstream (HTTP/2 with prior knowledge) answering with `h`.
pub async fn h2c_upstream(h: Handler) -> TcpServer {
    TcpServer::start(move |_, stream| serve_h2(stream, h.clone(), None)).await
}

/// An HTTP/1.1 upstream answering with `h`, counting its connections.
pub async fn h1_upstream(h: Handler) -> TcpServer {
    TcpServer::start(move |_, stream| serve_h1(stream, h.clone())).await
}

/// A body of one chunk and then `trailers`.
pub fn body_with_trailers(data: impl Into<Bytes>, trailers: http::HeaderMap) -> UpBody {
    let frames = vec![
        Ok::<_, std::io::Error>(hyper::body::Frame::data(data.into())),
        Ok(hyper::body::Frame::trailers(trailers)),
    ];
    http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed()
}

/// A body of `len` bytes of [`pattern`] in 64 KiB frames, with no size
/// known in advance (chunked on HTTP/1.1).
pub fn pattern_body(len: usize) -> UpBody {
    const FRAME: usize = 64 * 1024;
    let frames = (0..len.div_ceil(FRAME)).map(move |i| {
        let n = FRAME.min(len - i * FRAME);
        Ok::<_, std::io::Error>(hyper::body::Frame::data(pattern(i, n)))
    });
    http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed()
}

/// Frame `i` of a [`pattern_body`]: bytes that differ from frame to frame
/// and within one, so a lost, repeated or reordered frame changes the
/// hash.
pub fn pattern(i: usize, n: usize) -> Bytes {
    (0..n)
        .map(|j| (i.wrapping_mul(31) ^ j.wrapping_mul(7)) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// The sha256 (hex) and length of a [`pattern_body`] of `len` bytes.
pub fn pattern_digest(len: usize) -> (String, u64) {
    const FRAME: usize = 64 * 1024;
    let mut h = Sha256::new();
    for i in 0..len.div_ceil(FRAME) {
        h.update(pattern(i, FRAME.min(len - i * FRAME)));
    }
    (hex(&h.finalize()), len as u64)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A body read to its end: its length, sha256 (hex) and trailers.
pub struct ReadBody {
    pub len: u64,
    pub sha256: String,
    pub trailers: Option<http::HeaderMap>,
    /// The first 64 KiB, for small bodies that a test compares whole.
    pub head: Vec<u8>,
    /// The error that ended it early, if one did.
    pub error: Option<String>,
}

/// Reads a body frame by frame, hashing it without keeping it.
pub async fn read_body<B>(mut body: B) -> ReadBody
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut h = Sha256::new();
    let mut out = ReadBody {
        len: 0,
        sha256: String::new(),
        trailers: None,
        head: Vec::new(),
        error: None,
    };
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => match f.into_data() {
                Ok(d) => {
                    out.len += d.len() as u64;
                    if out.head.len() < 64 * 1024 {
                        let room = 64 * 1024 - out.head.len();
                        out.head.extend_from_slice(&d[..d.len().min(room)]);
                    }
                    h.update(&d);
                }
                Err(f) => {
                    if let Ok(t) = f.into_trailers() {
                        out.trailers = Some(t);
                    }
                }
            },
            Err(e) => {
                out.error = Some(e.to_string());
                break;
            }
        }
    }
    out.sha256 = hex(&h.finalize());
    out
}

// ---------------------------------------------------------------------
// TLS upstreams that offer a chosen ALPN list.

/// A TLS upstream serving HTTP/2 when ALPN picked `h2` and HTTP/1.1
/// otherwise; every request is answered with the version it arrived in
/// (`HTTP/2.0` or `HTTP/1.1`), which is also recorded.
pub struct TlsUpstream {
    pub server: TcpServer,
    pub versions: Arc<Mutex<Vec<http::Version>>>,
}

impl TlsUpstream {
    pub async fn start(cert: &Pem, alpn: &[&[u8]]) -> TlsUpstream {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert.cert.as_bytes())
                .map(Result::unwrap)
                .collect();
        let key = PrivateKeyDer::from_pem_slice(cert.key.as_bytes()).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(weir::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let versions: Arc<Mutex<Vec<http::Version>>> = Arc::default();
        let record = versions.clone();
        let h = handler(move |req: Request<Incoming>| {
            let record = record.clone();
            async move {
                let version = req.version();
                record.lock().unwrap().push(version);
                let _ = req.into_body().collect().await;
                Response::new(super::upstream::full(format!("{version:?}")))
            }
        });
        let server = TcpServer::start(move |_, tcp| {
            let (acceptor, h) = (acceptor.clone(), h.clone());
            async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                    serve_h2(tls, h, None).await;
                } else {
                    serve_h1(tls, h).await;
                }
            }
        })
        .await;
        TlsUpstream { server, versions }
    }
}

// ---------------------------------------------------------------------
// An h2-crate server that records requests by id.

/// How a [`serve_recording`] connection behaves.
#[derive(Clone, Copy)]
pub struct RecordingOptions {
    /// SETTINGS_MAX_CONCURRENT_STREAMS it advertises (and enforces).
    pub max_concurrent_streams: u32,
    /// After accepting this many streams, the connection shuts down
    /// gracefully: GOAWAY, the streams it accepted finish, it closes.
    pub goaway_after: Option<usize>,
    /// A request carrying `x-refuse: 1` is reset with REFUSED_STREAM,
    /// before its body is read, the first time its id is seen.
    pub refuse_first_try: bool,
    /// Each answer waits a random time up to this long, so that streams
    /// overlap.
    pub max_delay: Duration,
}

impl Default for RecordingOptions {
    fn default() -> Self {
        RecordingOptions {
            max_concurrent_streams: 100,
            goaway_after: None,
            refuse_first_try: false,
            max_delay: Duration::ZERO,
        }
    }
}

/// What the recording servers (all that share it) saw.
#[derive(Default)]
pub struct Record {
    /// Requests that reached the server's application, by `x-test-id`:
    /// each was read whole and answered.
    pub received: HashMap<String, usize>,
    /// Requests refused with REFUSED_STREAM, by id.
    pub refused: HashMap<String, usize>,
    /// Connections that sent their GOAWAY.
    pub goaways: usize,
    /// Bodies that did not match what their `x-test-id` says they carry
    /// (`body-ID`), with what arrived.
    pub bad_bodies: Vec<String>,
}

/// The body a request with this id carries: the server checks it.
pub fn body_for(id: &str) -> String {
    format!("body-{id}")
}

/// Serves one connection with the h2 crate. Every request is answered
/// 200 with `id=ID len=N` once its body is read whole; a POST's body
/// must be `body-ID` ([`body_for`]). See [`RecordingOptions`].
pub async fn serve_recording(
    stream: TcpStream,
    opts: RecordingOptions,
    record: Arc<Mutex<Record>>,
) {
    let Ok(mut conn) = ::h2::server::Builder::new()
        .max_concurrent_streams(opts.max_concurrent_streams)
        .handshake::<_, Bytes>(stream)
        .await
    else {
        return;
    };
    let mut accepted = 0usize;
    while let Some(next) = conn.accept().await {
        let Ok((req, mut respond)) = next else { break };
        accepted += 1;
        if opts.goaway_after == Some(accepted) {
            conn.graceful_shutdown();
            record.lock().unwrap().goaways += 1;
        }
        let record = record.clone();
        tokio::spawn(async move {
            let id = req
                .headers()
                .get("x-test-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned();
            if opts.refuse_first_try && req.headers().contains_key("x-refuse") {
                let mut r = record.lock().unwrap();
                let refused = r.refused.entry(id.clone()).or_default();
                if *refused == 0 {
                    *refused += 1;
                    drop(r);
                    respond.send_reset(::h2::Reason::REFUSED_STREAM);
                    return;
                }
            }
            let method = req.method().clone();
            let mut body = req.into_body();
            let mut got = Vec::new();
            while let Some(chunk) = body.data().await {
                let Ok(chunk) = chunk else { return };
                let _ = body.flow_control().release_capacity(chunk.len());
                got.extend_from_slice(&chunk);
            }
            {
                let mut r = record.lock().unwrap();
                *r.received.entry(id.clone()).or_default() += 1;
                if method == http::Method::POST && got != body_for(&id).as_bytes() {
                    r.bad_bodies
                        .push(format!("{id}: {:?}", String::from_utf8_lossy(&got)));
                }
            }
            if !opts.max_delay.is_zero() {
                let ms = fastrand::u64(0..=opts.max_delay.as_millis() as u64);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let Ok(mut send) = respond.send_response(Response::new(()), false) else {
                return;
            };
            let _ = send.send_data(Bytes::from(format!("id={id} len={}", got.len())), true);
        });
    }
}

// ---------------------------------------------------------------------
// Raw HTTP/2 frames.

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;

pub const NO_ERROR: u32 = 0x0;
pub const INTERNAL_ERROR: u32 = 0x2;
pub const REFUSED_STREAM: u32 = 0x7;

/// The client connection preface (RFC 9113 section 3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The largest frame payload a peer must accept before it says more
/// (SETTINGS_MAX_FRAME_SIZE's initial value).
const MAX_FRAME: usize = 16_384;

/// One frame as read off the wire.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Bytes,
}

impl Frame {
    pub fn ends_stream(&self) -> bool {
        matches!(self.kind, DATA | HEADERS) && self.flags & END_STREAM != 0
    }
}

/// The writing side of a raw connection; clones share it, so tasks of
/// the same connection can answer streams independently.
#[derive(Clone)]
pub struct RawWriter(Arc<tokio::sync::Mutex<OwnedWriteHalf>>);

impl RawWriter {
    /// Writes bytes as they are.
    pub async fn bytes(&self, b: &[u8]) -> std::io::Result<()> {
        let mut w = self.0.lock().await;
        w.write_all(b).await?;
        w.flush().await
    }

    /// Writes one frame: 3-byte length, type, flags, 4-byte stream id,
    /// payload.
    pub async fn frame(
        &self,
        kind: u8,
        flags: u8,
        stream: u32,
        payload: &[u8],
    ) -> std::io::Result<()> {
        self.bytes(&frame_bytes(kind, flags, stream, payload)).await
    }

    /// A header block (not empty) on `stream`, in a HEADERS frame and as
    /// many CONTINUATION frames as it needs, written at once.
    pub async fn header_block(
        &self,
        stream: u32,
        block: &[u8],
        end_stream: bool,
    ) -> std::io::Result<()> {
        let mut out = Vec::new();
        let mut parts = block.chunks(MAX_FRAME).peekable();
        let mut first = true;
        while let Some(part) = parts.next() {
            let last = parts.peek().is_none();
            let kind = if first { HEADERS } else { CONTINUATION };
            let mut flags = if last { END_HEADERS } else { 0 };
            if first && end_stream {
                flags |= END_STREAM;
            }
            out.extend(frame_bytes(kind, flags, stream, part));
            first = false;
        }
        self.bytes(&out).await
    }

    /// `:status 200` on `stream`.
    pub async fn ok_headers(&self, stream: u32, end_stream: bool) -> std::io::Result<()> {
        // 0x88: the static table's `:status: 200`, indexed.
        self.header_block(stream, &[0x88], end_stream).await
    }

    pub async fn data(&self, stream: u32, data: &[u8], end_stream: bool) -> std::io::Result<()> {
        let flags = if end_stream { END_STREAM } else { 0 };
        self.frame(DATA, flags, stream, data).await
    }

    /// A whole answer: `:status 200` and `body`, the stream ended.
    pub async fn answer(&self, stream: u32, body: &[u8]) -> std::io::Result<()> {
        let mut out = frame_bytes(HEADERS, END_HEADERS, stream, &[0x88]);
        out.extend(frame_bytes(DATA, END_STREAM, stream, body));
        self.bytes(&out).await
    }

    pub async fn rst(&self, stream: u32, code: u32) -> std::io::Result<()> {
        self.frame(RST_STREAM, 0, stream, &code.to_be_bytes()).await
    }

    pub async fn goaway(&self, last_stream: u32, code: u32) -> std::io::Result<()> {
        let mut p = last_stream.to_be_bytes().to_vec();
        p.extend_from_slice(&code.to_be_bytes());
        self.frame(GOAWAY, 0, 0, &p).await
    }

    pub async fn settings(&self, settings: &[(u16, u32)]) -> std::io::Result<()> {
        let mut p = Vec::new();
        for (id, v) in settings {
            p.extend_from_slice(&id.to_be_bytes());
            p.extend_from_slice(&v.to_be_bytes());
        }
        self.frame(SETTINGS, 0, 0, &p).await
    }
}

pub fn frame_bytes(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with an `n`-bit prefix, `flags` in the first byte's
/// other bits (RFC 7541 section 5.1).
fn hpack_int(out: &mut Vec<u8>, n: u32, flags: u8, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(flags | v as u8);
        return;
    }
    out.push(flags | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// A header field as an HPACK literal without indexing, new name, no
/// Huffman coding (RFC 7541 section 6.2.2).
pub fn hpack_literal(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(0x00);
    hpack_int(out, 7, 0, name.len());
    out.extend_from_slice(name.as_bytes());
    hpack_int(out, 7, 0, value.len());
    out.extend_from_slice(value);
}

/// One server-side HTTP/2 connection driven frame by frame.
pub struct RawH2 {
    reader: OwnedReadHalf,
    buf: BytesMut,
    writer: RawWriter,
    /// Whether PINGs are acknowledged (on by default).
    pub answer_pings: bool,
    /// PINGs (not acknowledgements) received.
    pub pings: usize,
}

impl RawH2 {
    /// Sends the server's SETTINGS (`settings`; sent first, before
    /// anything is read, so they reach the client as early as they can)
    /// and reads the client's preface.
    pub async fn accept(stream: TcpStream, settings: &[(u16, u32)]) -> std::io::Result<RawH2> {
        Self::open(stream, Some(settings)).await
    }

    /// Reads the client's preface and sends nothing.
    pub async fn accept_silent(stream: TcpStream) -> std::io::Result<RawH2> {
        Self::open(stream, None).await
    }

    async fn open(stream: TcpStream, settings: Option<&[(u16, u32)]>) -> std::io::Result<RawH2> {
        let (mut reader, writer) = stream.into_split();
        let writer = RawWriter(Arc::new(tokio::sync::Mutex::new(writer)));
        if let Some(settings) = settings {
            writer.settings(settings).await?;
        }
        let mut preface = [0u8; 24];
        reader.read_exact(&mut preface).await?;
        if preface != PREFACE {
            return Err(std::io::Error::other("not an HTTP/2 preface"));
        }
        Ok(RawH2 {
            reader,
            buf: BytesMut::new(),
            writer,
            answer_pings: true,
            pings: 0,
        })
    }

    pub fn writer(&self) -> RawWriter {
        self.writer.clone()
    }

    /// The next frame; `None` when the peer closed. SETTINGS are
    /// acknowledged, PINGs answered (while `answer_pings`), and DATA
    /// credited back to the connection's flow-control window, before the
    /// frame is returned.
    pub async fn next(&mut self) -> std::io::Result<Option<Frame>> {
        let frame = loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let kind = self.buf[3];
                    let flags = self.buf[4];
                    let stream =
                        u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]])
                            & 0x7fff_ffff;
                    self.buf.advance(9);
                    let payload = self.buf.split_to(len).freeze();
                    break Frame {
                        kind,
                        flags,
                        stream,
                        payload,
                    };
                }
            }
            if self.reader.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        };
        match frame.kind {
            SETTINGS if frame.flags & ACK == 0 => {
                self.writer.frame(SETTINGS, ACK, 0, &[]).await?;
            }
            PING if frame.flags & ACK == 0 => {
                self.pings += 1;
                if self.answer_pings {
                    self.writer.frame(PING, ACK, 0, &frame.payload).await?;
                }
            }
            DATA if !frame.payload.is_empty() => {
                let n = (frame.payload.len() as u32).to_be_bytes();
                self.writer.frame(WINDOW_UPDATE, 0, 0, &n).await?;
            }
            _ => {}
        }
        Ok(Some(frame))
    }

    /// Reads and discards frames until the peer closes or `within`
    /// passes; true when it closed (EOF or a reset connection).
    pub async fn until_closed(&mut self, within: Duration) -> bool {
        let end = async {
            loop {
                match self.next().await {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => return,
                }
            }
        };
        tokio::time::timeout(within, end).await.is_ok()
    }
}

// ---------------------------------------------------------------------
// Clients whose request bodies stream.

/// A client whose request bodies are any [`UpBody`] (streamed, with
/// trailers).
pub type StreamClient = Client<HttpConnector, UpBody>;

/// An HTTP/1.1 keep-alive client with streamed request bodies.
pub fn h1_stream_client() -> StreamClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An h2c (prior knowledge) client with streamed request bodies.
pub fn h2c_stream_client() -> StreamClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}
