//! The benchmark's gRPC upstream: one unary method, `/bench.Echo/Unary`,
//! that answers each request with the message it got, as tonic serves any
//! gRPC service (HTTP/2 with prior knowledge, `grpc-status` in trailers).
//!
//! The service is written out by hand the way `tonic-build` would generate
//! it from this `.proto`, so the build needs no `protoc`:
//!
//! ```proto
//! syntax = "proto3";
//! package bench;
//! message Msg { bytes payload = 1; }
//! service Echo { rpc Unary(Msg) returns (Msg); }
//! ```
//!
//! Usage: `bench-grpc-upstream GRPC_PORT STATS_PORT`. Both listen on
//! 127.0.0.1. One thread (a current-thread runtime): the benchmark pins it
//! to the load CPU. A connection to STATS_PORT is answered with the number
//! of Unary calls answered so far and a newline, then closed: the
//! benchmark reads it around each measured run to check that every 2xx
//! the load tool counted came from here (a proxy's own gRPC errors are
//! HTTP 200 too). A request with the header `x-bench-echo` is answered
//! with `x-bench-seen`, the forwarding headers that reached the upstream
//! (the set-up check's; the benchmark's requests have none).

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWriteExt;
use tonic::codegen::{http, Body, StdError};
use tonic::server::NamedService;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Msg {
    #[prost(bytes = "vec", tag = "1")]
    pub payload: Vec<u8>,
}

thread_local! {
    // One thread serves everything: a plain counter, no atomics.
    static ANSWERED: Cell<u64> = const { Cell::new(0) };
}

/// The request headers `x-bench-echo` asks about, in the order of
/// configs.ECHO_H2 (which adds `te`).
const ECHOED: [&str; 6] =
    ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "via", "x-request-id", "te"];

#[derive(Clone, Copy)]
struct Unary;

impl tonic::server::UnaryService<Msg> for Unary {
    type Response = Msg;
    type Future = std::future::Ready<Result<tonic::Response<Msg>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<Msg>) -> Self::Future {
        ANSWERED.with(|n| n.set(n.get() + 1));
        // For the benchmark's set-up check only: with `x-bench-echo`, the
        // answer tells which forwarding headers (and `te`) arrived.
        let seen = request.metadata().get("x-bench-echo").map(|_| {
            let get = |name: &str| {
                request.metadata().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
            };
            ECHOED.iter().map(|name| format!("{name}={}", get(name))).collect::<Vec<_>>().join(" ")
        });
        let mut answer = tonic::Response::new(request.into_inner());
        if let Some(seen) = seen.and_then(|s| s.parse().ok()) {
            answer.metadata_mut().insert("x-bench-seen", seen);
        }
        std::future::ready(Ok(answer))
    }
}

#[derive(Clone, Copy)]
struct EchoServer;

impl NamedService for EchoServer {
    const NAME: &'static str = "bench.Echo";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Infallible>> + Send>>;

impl<B> tonic::codegen::Service<http::Request<B>> for EchoServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match req.uri().path() {
            "/bench.Echo/Unary" => Box::pin(async move {
                let codec = tonic_prost::ProstCodec::<Msg, Msg>::default();
                let mut grpc = tonic::server::Grpc::new(codec);
                Ok(grpc.unary(Unary, req).await)
            }),
            _ => Box::pin(async move {
                Ok(tonic::Status::unimplemented("no such method").into_http())
            }),
        }
    }
}

async fn stats(listener: tokio::net::TcpListener) {
    loop {
        if let Ok((mut sock, _)) = listener.accept().await {
            let n = ANSWERED.with(Cell::get);
            let _ = sock.write_all(format!("{n}\n").as_bytes()).await;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: bench-grpc-upstream GRPC_PORT STATS_PORT";
    let port = |i: usize| -> u16 {
        args.get(i).and_then(|a| a.parse().ok()).unwrap_or_else(|| {
            eprintln!("{usage}");
            std::process::exit(2)
        })
    };
    let (grpc_port, stats_port) = (port(1), port(2));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let stats_listener = tokio::net::TcpListener::bind(("127.0.0.1", stats_port))
            .await
            .expect("bind the stats port");
        tokio::spawn(stats(stats_listener));
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], grpc_port));
        tonic::transport::Server::builder()
            .add_service(EchoServer)
            .serve(addr)
            .await
            .expect("serve");
    });
}
