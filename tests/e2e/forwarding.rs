//! Forwarding behaviour: header hygiene in both directions, forwarded
//! headers, request ids, HTTP/2 (h2c) clients, WebSocket upgrades, and
//! upstream keep-alive (reuse, and an upstream closing idle connections).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use futures_util::{SinkExt, StreamExt};
use http::Response;
use tokio_tungstenite::tungstenite::Message;

use crate::support::upstream::full;
use crate::support::*;

const ONE_ROUTE: &str = "[[route]]\nname = \"all\"\nupstream = \"app\"\n";

#[tokio::test]
async fn request_headers_are_cleaned_and_forwarded_headers_set() {
    let up = Upstream::echo("app").await;
    let gw = Gateway::with_config(config("", &[("app", up.addr)], ONE_ROUTE)).start();
    let c = client();
    let r = get(
        &c,
        &gw.url("/x"),
        &[
            ("host", "app.test"),
            ("connection", "keep-alive, X-Secret"),
            ("x-secret", "must not pass"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip;q=0.5, trailers"),
            ("x-forwarded-for", "203.0.113.7"),
            ("x-kept", "yes"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let h = &r.json()["headers"];
    for gone in ["x-secret", "keep-alive", "proxy-connection"] {
        assert!(h.get(gone).is_none(), "{gone} reached the upstream: {h}");
    }
    // Weir carries trailers, so it passes on that the client takes them,
    // and nothing else of the client's `TE` (a hop-by-hop field).
    assert_eq!(h["te"], "trailers", "{h}");
    // Hyper's client may add its own `connection: keep-alive`? It must not
    // carry the client's list.
    assert!(
        h.get("connection")
            .is_none_or(|v| !v.as_str().unwrap().contains("X-Secret")),
        "{h}"
    );
    assert_eq!(h["x-kept"], "yes");
    assert_eq!(h["host"], "app.test");
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "app.test");
    assert_eq!(h["via"], "1.1 weir");

    // A request id was generated, sent upstream, and returned.
    let id = h["x-request-id"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(r.header("x-request-id"), Some(id));
    assert_eq!(r.header("via"), Some("1.1 weir"));

    // A client's own request id is kept end to end.
    let r = get(&c, &gw.url("/x"), &[("x-request-id", "client-id-42")]).await;
    assert_eq!(r.json()["headers"]["x-request-id"], "client-id-42");
    assert_eq!(r.header("x-request-id"), Some("client-id-42"));
}

#[tokio::test]
async fn the_upstream_gets_the_routed_host_whatever_the_client_strips_or_sends() {
    let up = Upstream::echo("app").await;
    let gw = Gateway::with_config(config("", &[("app", up.addr)], ONE_ROUTE)).start();
    let echoed = |text: String| -> serde_json::Value {
        assert_eq!(raw_status(&text), Some(200), "{text}");
        let body = text.split_once("\r\n\r\n").unwrap().1;
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
    };
    let cases: [(&str, &[u8]); 3] = [
        // A client's `Connection` naming `Host` strips the field it routed by.
        (
            "Connection: host",
            b"GET /x HTTP/1.1\r\nHost: app.test\r\nConnection: host, close\r\n\r\n",
        ),
        // The target's authority is the host, not a `Host` that differs.
        (
            "absolute-form",
            b"GET http://app.test/x HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n",
        ),
        (
            "plain",
            b"GET /x HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        ),
    ];
    for (what, request) in cases {
        let body = echoed(raw(gw.addr(), request, Duration::from_secs(5)).await);
        let h = &body["headers"];
        assert_eq!(h["host"], "app.test", "{what}: {h}");
        assert_eq!(h["x-forwarded-host"], "app.test", "{what}: {h}");
    }
}

#[tokio::test]
async fn response_hop_by_hop_headers_are_removed() {
    let up = Upstream::start(|_req| async {
        Response::builder()
            .header("connection", "x-up-secret")
            .header("x-up-secret", "1")
            .header("keep-alive", "timeout=3")
            .header("x-up-kept", "1")
            .header("x-request-id", "from-upstream")
            .body(full("hi"))
            .unwrap()
    })
    .await;
    let gw = Gateway::with_config(config("", &[("app", up.addr)], ONE_ROUTE)).start();
    // Raw bytes, so no client library hides what the gateway wrote.
    let text = raw(
        gw.addr(),
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    let head = text.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    assert_eq!(raw_status(&text), Some(200), "{text}");
    assert!(!head.contains("x-up-secret"), "{head}");
    assert!(!head.contains("keep-alive"), "{head}");
    assert!(head.contains("x-up-kept: 1"), "{head}");
    assert!(head.contains("via: 1.1 weir"), "{head}");
    // The gateway's request id, once, in place of the upstream's.
    assert_eq!(head.matches("x-request-id: ").count(), 1, "{head}");
    assert!(!head.contains("from-upstream"), "{head}");
    assert!(text.ends_with("hi"), "{text}");
}

#[tokio::test]
async fn h2c_prior_knowledge_clients_are_served() {
    let up = Upstream::echo("app").await;
    let gw = Gateway::with_config(config("", &[("app", up.addr)], ONE_ROUTE)).start();
    let c = h2c_client();
    for _ in 0..3 {
        let r = get(
            &c,
            &gw.url("/h2?x=1"),
            &[("cookie", "a=1"), ("cookie", "b=2")],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.version, http::Version::HTTP_2);
        let j = r.json();
        assert_eq!(j["target"], "/h2?x=1");
        assert_eq!(j["headers"]["via"], "2 weir");
        assert_eq!(j["headers"]["cookie"], "a=1; b=2");
        assert!(r.header("x-request-id").is_some());
    }
}

#[tokio::test]
async fn websocket_echo_through_the_gateway() {
    let up = Upstream::websocket_echo().await;
    let gw = Gateway::with_config(config(
        "",
        &[("ws", up.addr)],
        "[[route]]\nupstream = \"ws\"\n",
    ))
    .start();
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/chat", gw.addr()))
        .await
        .expect("websocket handshake through weir");
    assert_eq!(resp.status(), 101);
    assert!(resp.headers().contains_key("x-request-id"));
    ws.send(Message::text("hello")).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap();
    assert_eq!(echoed.unwrap().unwrap(), Message::text("hello"));
    let big = vec![7u8; 200 * 1024];
    ws.send(Message::binary(big.clone())).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap();
    assert_eq!(echoed.unwrap().unwrap().into_data().as_ref(), &big[..]);
    ws.close(None).await.unwrap();
}

/// An upgraded connection stays under the listener's limits: it holds its
/// `max_connections` permit (a second client waits), and it is closed after
/// `idle_timeout` without a byte either way.
#[tokio::test]
async fn a_websocket_counts_as_a_connection_and_is_closed_when_idle() {
    let up = Upstream::websocket_echo().await;
    let app = Upstream::echo("app").await;
    let gw = Gateway::with_config(config(
        "max_connections = 1\nidle_timeout = \"1s\"\n",
        &[("ws", up.addr), ("app", app.addr)],
        "[[route]]\nupstream = \"app\"\npath_prefix = \"/plain\"\n\n[[route]]\nupstream = \"ws\"\n",
    ))
    .start();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/chat", gw.addr()))
        .await
        .expect("websocket handshake through weir");
    // Traffic keeps it open past the idle timeout.
    for i in 0..4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        ws.send(Message::text(format!("m{i}"))).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap();
        assert_eq!(echoed.unwrap().unwrap(), Message::text(format!("m{i}")));
    }
    // While it lives, it holds the only permit: another client is not
    // served (its connection waits in the backlog).
    let mut other = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    other
        .write_all(b"GET /plain HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let waiting = tokio::time::timeout(Duration::from_millis(500), other.read(&mut buf)).await;
    assert!(
        waiting.is_err(),
        "a second connection was served past max_connections = 1"
    );
    // Quiet: closed about 1 s after the last byte.
    let closed = tokio::time::timeout(Duration::from_secs(8), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "an idle websocket was still open after 8 s");
    // And the permit came back: the waiting client is served.
    let n = tokio::time::timeout(Duration::from_secs(5), other.read(&mut buf))
        .await
        .expect("served once the websocket closed")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
}

/// A WebSocket client that sends and never reads: the echoes back up until
/// every buffer on the way is full, and `send_timeout` ends the tunnel
/// (the idle timeout, 30 s here, would not in the test's time).
#[tokio::test]
async fn a_websocket_whose_client_reads_nothing_is_closed_after_send_timeout() {
    let up = Upstream::websocket_echo().await;
    let gw = Gateway::with_config(config(
        "idle_timeout = \"30s\"\nsend_timeout = \"1s\"\n",
        &[("ws", up.addr)],
        "[[route]]\nupstream = \"ws\"\n",
    ))
    .start();
    // By hand on a raw socket: a WebSocket library would read (and so
    // drain the echoes) while it writes.
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(
        b"GET /chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
    // Binary frames of 64 KiB, masked with a zero key (the payload as is).
    let mut frame = vec![0x82, 0xFF];
    frame.extend_from_slice(&(64u64 * 1024).to_be_bytes());
    frame.extend_from_slice(&[0; 4]);
    frame.extend(std::iter::repeat_n(7u8, 64 * 1024));
    let cut = tokio::time::timeout(Duration::from_secs(10), async {
        while s.write_all(&frame).await.is_ok() {}
    })
    .await;
    assert!(
        cut.is_ok(),
        "a websocket whose client reads nothing was still open after 10 s"
    );
}

/// An upstream written by hand so it can close keep-alive connections the
/// way servers do: it answers every request head with `200 ok`, and closes
/// its idle connections as an idle timeout would, but when told to rather
/// than on a timer, so that a stall of a slow machine between two requests
/// cannot pass for an idle period.
struct ClosingUpstream {
    addr: SocketAddr,
    /// Connections accepted.
    accepted: Arc<AtomicUsize>,
    /// Connections it closed that the gateway then closed on its side,
    /// which the gateway does once it has noticed the close.
    hung_up: Arc<AtomicUsize>,
    close_idle: watch::Sender<()>,
}

impl ClosingUpstream {
    async fn start() -> ClosingUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted, hung_up) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (close_idle, _) = watch::channel(());
        let (count, gone, commands) = (accepted.clone(), hung_up.clone(), close_idle.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                // Only commands sent from now on concern this connection.
                let mut close = commands.subscribe();
                let gone = gone.clone();
                tokio::spawn(async move {
                    let (mut buf, mut chunk) = (Vec::new(), [0u8; 4096]);
                    loop {
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if s.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                        tokio::select! {
                            read = s.read(&mut chunk) => match read {
                                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                                // Closed or broken.
                                _ => return,
                            },
                            _ = close.changed() => break,
                        }
                    }
                    // Told to close (the test sends the command only
                    // between requests, so the connection is idle). Send
                    // FIN, then wait for the gateway to hang up too.
                    let _ = s.shutdown().await;
                    while matches!(s.read(&mut chunk).await, Ok(n) if n > 0) {}
                    gone.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        ClosingUpstream {
            addr,
            accepted,
            hung_up,
            close_idle,
        }
    }
}

/// Sequential requests share one upstream connection; when the upstream
/// closes it while it sits idle in the pool, the next request notices as
/// it takes the connection and opens another, without a retry (the route
/// allows none) and without a failed request.
#[tokio::test]
async fn upstream_keep_alive_is_reused_and_an_idle_close_is_noticed() {
    let up = ClosingUpstream::start().await;
    let routes = "[[route]]\nname = \"all\"\nupstream = \"app\"\nretry_attempts = 0\n";
    let gw = Gateway::with_config(config("", &[("app", up.addr)], routes)).start();
    let c = client();
    for _ in 0..5 {
        let r = get(&c, &gw.url("/x"), &[]).await;
        assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    }
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        1,
        "one upstream connection"
    );
    for opened in 2..=4 {
        up.close_idle.send_replace(());
        // The gateway hangs up when the connection's task ends, and that
        // same step (on the worker that pools it) marks it closed: from
        // then on no request can take it. A request sent earlier could
        // race the close, which is what a timer used to leave to chance.
        let closes = opened - 1;
        assert!(
            eventually(Duration::from_secs(10), || async {
                up.hung_up.load(Ordering::SeqCst) == closes
            })
            .await,
            "the gateway never noticed close {closes}"
        );
        for _ in 0..3 {
            let r = get(&c, &gw.url("/x"), &[]).await;
            assert_eq!(
                (r.status, r.text().as_str()),
                (200, "ok"),
                "after close {closes}"
            );
        }
        assert_eq!(up.accepted.load(Ordering::SeqCst), opened);
    }
}
