//! Graceful shutdown: on SIGTERM the gateway stops accepting, lets the
//! request in flight finish, and exits 0.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::Response;

use crate::support::upstream::full;
use crate::support::*;

#[tokio::test]
async fn sigterm_drains_a_slow_in_flight_request_then_exits_zero() {
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let up = Upstream::start(move |_req| {
        let s = s.clone();
        async move {
            s.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(1500)).await;
            Response::new(full("slow done"))
        }
    })
    .await;
    let mut gw = Gateway::with_config(config(
        "",
        &[("slow", up.addr)],
        "[[route]]\nupstream = \"slow\"\n",
    ))
    .start();
    let addr = gw.addr();
    let url = gw.url("/slow");
    let in_flight = tokio::spawn(async move { get(&client(), &url, &[]).await });
    assert!(
        eventually(Duration::from_secs(5), || async {
            started.load(Ordering::SeqCst) == 1
        })
        .await,
        "request never reached the upstream"
    );

    gw.sigterm();
    // New connections are refused once the listeners close.
    assert!(
        eventually(Duration::from_secs(5), || async {
            tokio::net::TcpStream::connect(addr).await.is_err()
        })
        .await,
        "gateway kept accepting after SIGTERM"
    );
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "slow done");
    let code = tokio::task::spawn_blocking(move || gw.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
}
