//! The TLS handshake of one client connection, bounded in time, and the
//! count of how handshakes ended. The ClientHello is read first, so that
//! each refusal gets the alert that fits it: `unrecognized_name` (RFC
//! 6066) for a name no certificate has when the listener refuses those,
//! `protocol_version` for a client of TLS 1.1 or older, a plain-text 400
//! for plain HTTP; then rustls runs the rest of the handshake with the
//! listener's current [`ServerTls`]. Every failure closes the connection
//! after its alert, and is counted by its reason.
//!
//! The ClientHello loop is ours, not tokio-rustls's lazy acceptor, because
//! that one always sends rustls's own alert (`handshake_failure` for an
//! old client). rustls bounds what it buffers of a ClientHello.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustls::HandshakeKind;
use rustls::server::Acceptor;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::StartHandshake;
use tokio_rustls::server::TlsStream;

use super::certs::CertInfo;
use super::server::ServerTls;

/// A fatal alert record before any key is agreed: content type 21, the
/// TLS 1.2 record version (what a ServerHello would carry), length 2,
/// level fatal, then the description.
fn alert(description: u8) -> [u8; 7] {
    [21, 3, 3, 0, 2, 2, description]
}
const UNRECOGNIZED_NAME: u8 = 112;
const HANDSHAKE_FAILURE: u8 = 40;
const PROTOCOL_VERSION: u8 = 70;
const DECODE_ERROR: u8 = 50;

/// How a listener's handshakes ended, since start-up.
#[derive(Debug, Default, Serialize)]
pub struct Handshakes {
    /// Completed with a full handshake.
    pub full: AtomicU64,
    /// Completed by resuming an earlier session.
    pub resumed: AtomicU64,
    /// Failed, by reason.
    pub failed: Failures,
}

/// Failed handshakes by reason.
#[derive(Debug, Default, Serialize)]
pub struct Failures {
    /// Not finished within `handshake_timeout`.
    pub timeout: AtomicU64,
    /// What arrived was not a TLS ClientHello (plain HTTP, garbage).
    pub not_tls: AtomicU64,
    /// The client offers no TLS version the listener accepts.
    pub version: AtomicU64,
    /// No certificate names the SNI (or none was sent), and the listener
    /// refuses those.
    pub unknown_sni: AtomicU64,
    /// A required client certificate was missing, or one did not verify.
    pub client_cert: AtomicU64,
    /// The client closed the connection during the handshake.
    pub closed: AtomicU64,
    /// Anything else (no common cipher suite, a bad message mid-way).
    pub other: AtomicU64,
}

/// Why a handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Timeout,
    NotTls,
    Version,
    UnknownSni,
    ClientCert,
    Closed,
    Other,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::NotTls => "not TLS",
            Failure::Version => "no TLS version in common",
            Failure::UnknownSni => "unknown server name",
            Failure::ClientCert => "client certificate missing or not verified",
            Failure::Closed => "closed by the client",
            Failure::Other => "other",
        }
    }

    /// Reads a failed handshake's error.
    fn of(e: &std::io::Error) -> Failure {
        if matches!(
            e.kind(),
            std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe
        ) {
            return Failure::Closed;
        }
        match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(err) => Failure::of_rustls(err),
            None => Failure::Other,
        }
    }

    /// Reads rustls's error. A ClientHello without the signature
    /// algorithms extension, or without TLS 1.2 among its versions, comes
    /// from a client of TLS 1.1 or older.
    fn of_rustls(err: &rustls::Error) -> Failure {
        use rustls::{Error, PeerIncompatible};
        match err {
            Error::InvalidMessage(_) | Error::InappropriateMessage { .. } => Failure::NotTls,
            Error::PeerIncompatible(
                PeerIncompatible::Tls12NotOffered
                | PeerIncompatible::Tls12NotOfferedOrEnabled
                | PeerIncompatible::Tls13RequiredForQuic
                | PeerIncompatible::SupportedVersionsExtensionRequired
                | PeerIncompatible::SignatureAlgorithmsExtensionRequired,
            ) => Failure::Version,
            Error::NoCertificatesPresented | Error::InvalidCertificate(_) => Failure::ClientCert,
            _ => Failure::Other,
        }
    }
}

impl Handshakes {
    /// Counts a failure and hands it back.
    fn failed(&self, f: Failure) -> Failure {
        let c = &self.failed;
        match f {
            Failure::Timeout => &c.timeout,
            Failure::NotTls => &c.not_tls,
            Failure::Version => &c.version,
            Failure::UnknownSni => &c.unknown_sni,
            Failure::ClientCert => &c.client_cert,
            Failure::Closed => &c.closed,
            Failure::Other => &c.other,
        }
        .fetch_add(1, Ordering::Relaxed);
        f
    }
}

/// What the handshake settled, for the connection's requests.
#[derive(Debug, Clone, Default)]
pub struct Session {
    /// The server name the client asked for.
    pub sni: Option<Box<str>>,
    /// ALPN chose HTTP/2.
    pub h2: bool,
    /// The protocol version agreed, as the access log writes it
    /// (`TLSv1.3`, `TLSv1.2`).
    pub version: &'static str,
    /// The verified client certificate, when one was given.
    pub client_cert: Option<std::sync::Arc<ClientCert>>,
}

/// A verified client certificate, as routes, plugins and upstreams see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// Its subject, e.g. `CN=billing, O=Example` (see `CertInfo::subject`).
    pub subject: String,
    /// DNS names of its subjectAltName.
    pub names: Vec<String>,
}

impl ClientCert {
    /// The forwarded header's value: `subject="…"` and one `dns=` per
    /// name, `;`-separated, with `"` and `\` escaped. None when the text
    /// cannot be a header value.
    pub fn header_value(&self) -> Option<http::HeaderValue> {
        let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let mut v = format!("subject=\"{}\"", quote(&self.subject));
        for n in &self.names {
            v.push_str(&format!(";dns=\"{}\"", quote(n)));
        }
        http::HeaderValue::from_str(&v).ok()
    }
}

/// Runs the server side of a handshake on `tcp` within `timeout`. On
/// failure the connection is closed (after the alert) and the failure
/// counted and returned.
pub async fn handshake(
    tcp: TcpStream,
    tls: &ServerTls,
    timeout: Duration,
    stats: &Handshakes,
) -> Result<(TlsStream<TcpStream>, Session), Failure> {
    let deadline = tokio::time::Instant::now() + timeout;
    let start = match tokio::time::timeout_at(deadline, client_hello(tcp)).await {
        Err(_) => return Err(stats.failed(Failure::Timeout)),
        Ok(Err(f)) => return Err(stats.failed(f)),
        Ok(Ok(start)) => start,
    };
    let sni: Option<Box<str>> = start.client_hello().server_name().map(Into::into);
    if tls.refuse_unknown && sni.as_deref().is_none_or(|n| tls.certs.pick(n).is_none()) {
        let code = if sni.is_some() {
            UNRECOGNIZED_NAME
        } else {
            HANDSHAKE_FAILURE
        };
        let mut io = start.io;
        let _ = tokio::time::timeout_at(deadline, refuse(&mut io, &alert(code))).await;
        return Err(stats.failed(Failure::UnknownSni));
    }
    let stream =
        match tokio::time::timeout_at(deadline, start.into_stream(tls.config.clone())).await {
            Err(_) => return Err(stats.failed(Failure::Timeout)),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                return Err(stats.failed(Failure::of(&e)));
            }
            Ok(Ok(s)) => s,
        };
    let (_, conn) = stream.get_ref();
    match conn.handshake_kind() {
        Some(HandshakeKind::Resumed) => &stats.resumed,
        _ => &stats.full,
    }
    .fetch_add(1, Ordering::Relaxed);
    let client_cert = conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| CertInfo::parse(leaf, std::path::Path::new("client certificate")).ok())
        .map(|info| {
            std::sync::Arc::new(ClientCert {
                subject: info.subject,
                names: info.names,
            })
        });
    let session = Session {
        sni,
        h2: conn.alpn_protocol() == Some(b"h2"),
        version: match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "",
        },
        client_cert,
    };
    Ok((stream, session))
}

/// Writes `bytes` and closes the connection.
async fn refuse(tcp: &mut TcpStream, bytes: &[u8]) {
    let _ = tcp.write_all(bytes).await;
    let _ = tcp.shutdown().await;
}

/// What a client that sent plain HTTP to a TLS port is told, as nginx
/// does, before the connection closes.
fn plain_http_answer() -> Vec<u8> {
    const BODY: &str = "This port speaks HTTPS: use an https:// URL.\n";
    format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{BODY}",
        BODY.len()
    )
    .into_bytes()
}

/// Whether the first bytes of a connection look like an HTTP/1 request
/// line (a method of capital letters, then a space).
fn looks_like_http(first: &[u8]) -> bool {
    let method = first.iter().take_while(|b| b.is_ascii_uppercase()).count();
    (3..=7).contains(&method) && first.get(method) == Some(&b' ')
}

/// Reads the ClientHello (rustls's [`Acceptor`], fed from the socket
/// here rather than by tokio-rustls, so that each refusal gets the alert
/// that fits it). A client that offers only TLS 1.1 or older gets
/// `protocol_version`; plain HTTP gets a plain 400; anything else rustls
/// cannot read gets rustls's own alert.
async fn client_hello(mut tcp: TcpStream) -> Result<StartHandshake<TcpStream>, Failure> {
    let mut acceptor = Acceptor::default();
    let mut buf = vec![0u8; 4096];
    let mut first = true;
    loop {
        if tcp.readable().await.is_err() {
            return Err(Failure::Closed);
        }
        let n = match tcp.try_read(&mut buf) {
            Ok(0) => return Err(Failure::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return Err(Failure::Closed),
        };
        if first && looks_like_http(&buf[..n]) {
            refuse(&mut tcp, &plain_http_answer()).await;
            return Err(Failure::NotTls);
        }
        first = false;
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            if acceptor.read_tls(&mut rest).is_err() {
                // Its buffer is full: no ClientHello is that large.
                refuse(&mut tcp, &alert(HANDSHAKE_FAILURE)).await;
                return Err(Failure::Other);
            }
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => return Ok(StartHandshake::from_parts(accepted, tcp)),
            Ok(None) => {}
            Err((err, mut their_alert)) => {
                tracing::debug!(error = %err, "TLS handshake failed reading the ClientHello");
                let f = Failure::of_rustls(&err);
                let mut bytes = Vec::new();
                if f == Failure::Version {
                    bytes.extend_from_slice(&alert(PROTOCOL_VERSION));
                } else {
                    let _ = their_alert.write(&mut bytes);
                }
                if bytes.is_empty() {
                    // rustls has none for some errors (a message it will
                    // not buffer): the generic one that fits.
                    let code = match f {
                        Failure::NotTls => DECODE_ERROR,
                        _ => HANDSHAKE_FAILURE,
                    };
                    bytes.extend_from_slice(&alert(code));
                }
                refuse(&mut tcp, &bytes).await;
                return Err(f);
            }
        }
    }
}
