//! Real upstream servers for the tests: hyper HTTP/1.1 servers on
//! 127.0.0.1 port 0 with a handler, plus an echo server that reports what
//! it received, a WebSocket echo server, a server that resets every
//! connection, and ports held where nothing listens.

use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use socket2::{Domain, Socket, Type};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub type UpBody = BoxBody<Bytes, std::io::Error>;

/// What an upstream saw of one request.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    pub method: String,
    /// Path and query as received.
    pub target: String,
    pub headers: HeaderMap,
    pub body_bytes: u64,
    /// Whether the body arrived whole (false: the sender aborted it).
    pub complete: bool,
}

/// A running upstream server; stopped when dropped.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<UpstreamRequest>>>,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn full(body: impl Into<Bytes>) -> UpBody {
    Full::new(body.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

impl Upstream {
    /// Serves every request with `handler`.
    pub async fn start<F, Fut>(handler: F) -> Upstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<UpBody>> + Send + 'static,
    {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), handler).await
    }

    /// Like [`Upstream::start`] on a given listener (to restart on a port).
    pub async fn start_on<F, Fut>(listener: TcpListener, handler: F) -> Upstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<UpBody>> + Send + 'static,
    {
        let addr = listener.local_addr().unwrap();
        let handler = Arc::new(handler);
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| {
                        let h = handler.clone();
                        async move { Ok::<_, Infallible>(h(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Upstream {
            addr,
            seen: Arc::new(Mutex::new(Vec::new())),
            task,
        }
    }

    /// Answers 200 with a JSON object describing the request:
    /// `{"server", "method", "target", "headers": {name: value}, "body_bytes"}`.
    /// The body is read and counted, never stored.
    pub async fn echo(name: &str) -> Upstream {
        Self::echo_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), name).await
    }

    /// Like [`Upstream::echo`] on a given listener.
    pub async fn echo_on(listener: TcpListener, name: &str) -> Upstream {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let name = name.to_owned();
        let record = seen.clone();
        let mut up = Upstream::start_on(listener, move |req: Request<Incoming>| {
            let name = name.clone();
            let record = record.clone();
            async move {
                let (parts, mut body) = req.into_parts();
                let mut n = 0u64;
                let mut complete = true;
                while let Some(frame) = body.frame().await {
                    match frame {
                        Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                        Err(_) => {
                            complete = false;
                            break;
                        }
                    }
                }
                let target = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default();
                let mut headers = serde_json::Map::new();
                for k in parts.headers.keys() {
                    let v: Vec<&str> = parts
                        .headers
                        .get_all(k)
                        .iter()
                        .map(|v| v.to_str().unwrap_or("?"))
                        .collect();
                    headers.insert(k.to_string(), v.join(", ").into());
                }
                record.lock().unwrap().push(UpstreamRequest {
                    method: parts.method.to_string(),
                    target: target.clone(),
                    headers: parts.headers.clone(),
                    body_bytes: n,
                    complete,
                });
                let json = serde_json::json!({
                    "server": name,
                    "method": parts.method.as_str(),
                    "target": target,
                    "headers": headers,
                    "body_bytes": n,
                });
                Response::builder()
                    .header("content-type", "application/json")
                    .body(full(json.to_string()))
                    .unwrap()
            }
        })
        .await;
        up.seen = seen;
        up
    }

    /// How many requests reached this upstream whole (echo servers only).
    pub fn count(&self) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.complete)
            .count()
    }

    /// A WebSocket server that echoes every message back.
    pub async fn websocket_echo() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    while let Some(Ok(msg)) = ws.next().await {
                        if msg.is_close() {
                            break;
                        }
                        if ws.send(msg).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Upstream {
            addr,
            seen: Arc::new(Mutex::new(Vec::new())),
            task,
        }
    }

    /// Accepts connections and closes them at once, without answering.
    pub async fn resetting() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                if let Ok((s, _)) = listener.accept().await {
                    drop(s);
                }
            }
        });
        Upstream {
            addr,
            seen: Arc::new(Mutex::new(Vec::new())),
            task,
        }
    }
}

/// A port on 127.0.0.1 where nothing listens, held for as long as this
/// lives: connections to it are refused.
///
/// Closing a listener to get such an address does not hold it: the next
/// bind to port 0 (the gateway's, another test's upstream) may be handed
/// the port, and the gateway would then proxy to that. A bound socket that
/// does not listen keeps the port: the kernel never picks a port for a
/// bind to port 0 while any socket is bound to it, and it refuses
/// connections to a port without a listener.
pub struct ClosedPort {
    socket: Socket,
    addr: SocketAddr,
}

impl ClosedPort {
    /// A fresh port.
    pub fn new() -> ClosedPort {
        // Without SO_REUSEADDR: not even an explicit bind can share it.
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket
            .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
            .unwrap();
        let addr = socket.local_addr().unwrap().as_socket().unwrap();
        ClosedPort { socket, addr }
    }

    /// A listener on a fresh port, with the same port also held by the
    /// returned [`ClosedPort`]: a server on the listener can be stopped
    /// (connections are refused once the listener is closed) and started
    /// again on its port with [`ClosedPort::listen`], and no other bind
    /// can take the port in between.
    pub fn beside_listener() -> (TcpListener, ClosedPort) {
        // Two sockets share a port only if both set SO_REUSEADDR and
        // neither listens yet, so the spare is bound before the other
        // listens. SO_REUSEADDR also lets the spare listen later next to
        // the stopped server's connections in TIME_WAIT.
        let reusable = || {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            s.set_reuse_address(true).unwrap();
            s
        };
        let first = reusable();
        first
            .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
            .unwrap();
        let addr = first.local_addr().unwrap().as_socket().unwrap();
        let socket = reusable();
        socket.bind(&addr.into()).unwrap();
        (listen(first), ClosedPort { socket, addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts listening on the held port (the port never left our hands).
    pub fn listen(self) -> TcpListener {
        listen(self.socket)
    }
}

/// Turns a bound socket into a tokio listener.
fn listen(socket: Socket) -> TcpListener {
    socket.listen(1024).unwrap();
    socket.set_nonblocking(true).unwrap();
    TcpListener::from_std(socket.into()).unwrap()
}
