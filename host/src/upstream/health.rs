//! Active health checks: every `interval`, each endpoint of an upstream
//! gets `GET path` on a fresh connection (over HTTP/2 when the upstream
//! speaks it), or for `type = "grpc"` the gRPC health-checking protocol's
//! `grpc.health.v1.Health/Check`, with `timeout` for connect and answer
//! together. A gRPC check passes on `SERVING` with `grpc-status` 0; its
//! two messages are a length-prefixed protobuf of one field each, written
//! and read here by hand rather than with a protobuf code generator. `unhealthy_threshold` failures in a row take an
//! endpoint out of the live set; `healthy_threshold` passes in a row bring
//! it back, and also end a passive ejection it may still be serving (the
//! endpoint was restarted: waiting out the ejection would only cost
//! capacity). Endpoints start healthy, so a gateway serves from its first
//! request. Probes run on the runtime that built the upstream (the control
//! thread), never on a worker.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::BodyExt;
use tokio::task::JoinSet;

use super::http2;
use super::{Checkout, Endpoint, Received, Upstream};
use crate::body::RequestBody;
use crate::config::{CheckKind, HealthCheckConfig};

/// The most of a gRPC health answer read (the answer is a few bytes).
const MAX_GRPC_ANSWER: usize = 1024;

pub(super) async fn run(up: Weak<Upstream>, cfg: Arc<HealthCheckConfig>) {
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(up) = up.upgrade() else { return };
        let mut probes = JoinSet::new();
        for ep in up.endpoints() {
            let cfg = cfg.clone();
            probes.spawn(async move {
                let pass = probe(&ep, &cfg).await;
                (ep, pass)
            });
        }
        while let Some(done) = probes.join_next().await {
            // Publish each change as soon as its verdict is in, not after
            // the round's slowest probe, and log it once it is in effect.
            if let Ok((ep, pass)) = done
                && apply(&ep, pass, &cfg)
            {
                up.refresh(true);
                if pass {
                    tracing::info!(upstream = %up.config.name, endpoint = %ep.label, addr = %ep.addr, "endpoint healthy again");
                } else {
                    tracing::warn!(upstream = %up.config.name, endpoint = %ep.label, addr = %ep.addr, "endpoint failed its health checks");
                }
            }
        }
    }
}

/// One probe: does the endpoint answer as a healthy one does, within
/// the timeout?
async fn probe(ep: &Endpoint, cfg: &HealthCheckConfig) -> bool {
    tokio::time::timeout(cfg.timeout, ask(ep, cfg))
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Sends the probe and judges the answer; `None` when none came.
async fn ask(ep: &Endpoint, cfg: &HealthCheckConfig) -> Option<bool> {
    let conn = ep.connect_unpooled(cfg.timeout).await.ok()?;
    let host = cfg.host.as_deref().unwrap_or(&ep.label);
    let req = match &cfg.kind {
        CheckKind::Http => Request::get(cfg.path.as_str())
            .header(header::HOST, host)
            .header(header::USER_AGENT, "weir-health-check")
            .body(RequestBody::Empty)
            .ok()?,
        CheckKind::Grpc { service } => Request::post("/grpc.health.v1.Health/Check")
            .header(header::HOST, host)
            .header(header::USER_AGENT, "weir-health-check")
            .header(header::CONTENT_TYPE, "application/grpc")
            .header(header::TE, "trailers")
            .body(RequestBody::full(grpc_check_request(service)))
            .ok()?,
    };
    let resp: Response<Received> = match conn {
        Checkout::H1(c) => {
            let mut req = req;
            req.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            c.send(req, false).await.ok()?
        }
        Checkout::H2(s) => http2::send(s, req, ep.scheme(), &ep.label, false)
            .await
            .ok()?
            .map(Received::H2),
    };
    Some(match &cfg.kind {
        CheckKind::Http => {
            let status = resp.status().as_u16();
            cfg.expected_statuses
                .iter()
                .any(|(lo, hi)| (*lo..=*hi).contains(&status))
        }
        CheckKind::Grpc { .. } => grpc_serving(resp).await,
    })
}

/// `HealthCheckRequest { service }` as a gRPC message: the frame's
/// 5-byte prefix (not compressed, length), then field 1 (a string).
fn grpc_check_request(service: &str) -> Bytes {
    let mut msg = Vec::with_capacity(service.len() + 8);
    if !service.is_empty() {
        msg.push(0x0a);
        // The configuration bounds a service name to 256 bytes: a varint.
        let mut n = service.len();
        while n >= 0x80 {
            msg.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        msg.push(n as u8);
        msg.extend_from_slice(service.as_bytes());
    }
    let mut framed = Vec::with_capacity(5 + msg.len());
    framed.push(0);
    framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    framed.extend_from_slice(&msg);
    Bytes::from(framed)
}

/// Whether a gRPC health answer says `SERVING`: status 200, `grpc-status`
/// 0 (in the trailers, or the headers of a trailers-only answer), and a
/// `HealthCheckResponse` whose field 1 is 1.
async fn grpc_serving(resp: Response<Received>) -> bool {
    if resp.status() != http::StatusCode::OK {
        return false;
    }
    let ok_status = |h: &http::HeaderMap| h.get("grpc-status").map(|v| v == "0");
    if ok_status(resp.headers()) == Some(false) {
        return false;
    }
    let head_status = ok_status(resp.headers());
    let limited = http_body_util::Limited::new(resp.into_body(), MAX_GRPC_ANSWER);
    let Ok(collected) = limited.collect().await else {
        return false;
    };
    let trailer_status = collected.trailers().and_then(ok_status);
    if !(trailer_status.or(head_status).unwrap_or(false)) {
        return false;
    }
    serving(&collected.to_bytes())
}

/// Reads `HealthCheckResponse.status` out of one gRPC message.
fn serving(framed: &[u8]) -> bool {
    let Some((&[0, a, b, c, d], msg)) = framed.split_first_chunk::<5>() else {
        return false;
    };
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    let Some(mut msg) = msg.get(..len) else {
        return false;
    };
    // Fields: the status is field 1, a varint (tag 0x08); skip others.
    let mut status = 0u64;
    while let Some((&tag, rest)) = msg.split_first() {
        let Some((value, rest)) = varint(rest, tag & 7) else {
            return false;
        };
        if tag == 0x08 {
            status = value;
        }
        msg = rest;
    }
    status == 1
}

/// One field's value after its tag: a varint's value, or a
/// length-delimited field skipped; `None` for anything else or short input.
fn varint(buf: &[u8], wire: u8) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    let mut rest = buf;
    for shift in (0..64).step_by(7) {
        let (&b, r) = rest.split_first()?;
        rest = r;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return match wire {
                0 => Some((value, rest)),
                2 => Some((0, rest.get(value as usize..)?)),
                _ => None,
            };
        }
    }
    None
}

/// Applies one verdict to the endpoint's streaks; true when the endpoint
/// changed state and the live set must be rebuilt.
fn apply(ep: &Endpoint, pass: bool, cfg: &HealthCheckConfig) -> bool {
    let s = &ep.state;
    if pass {
        s.probe_failures.store(0, Ordering::Relaxed);
        let passes = s
            .probe_passes
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if passes >= cfg.healthy_threshold && s.active_down.load(Ordering::Relaxed) {
            s.active_down.store(false, Ordering::Relaxed);
            ep.uneject();
            return true;
        }
        false
    } else {
        s.probe_passes.store(0, Ordering::Relaxed);
        let failures = s
            .probe_failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if failures >= cfg.unhealthy_threshold && !s.active_down.load(Ordering::Relaxed) {
            s.active_down.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::PoolConfig;
    use crate::upstream::pool;

    #[test]
    fn grpc_health_messages() {
        assert_eq!(&grpc_check_request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &grpc_check_request("a.B")[..],
            &[0, 0, 0, 0, 5, 0x0a, 3, b'a', b'.', b'B']
        );
        let long = "s".repeat(200);
        let framed = grpc_check_request(&long);
        assert_eq!(&framed[5..8], &[0x0a, 0xc8, 0x01]);
        assert_eq!(framed.len(), 5 + 3 + 200);

        assert!(serving(&[0, 0, 0, 0, 2, 0x08, 1]));
        assert!(!serving(&[0, 0, 0, 0, 2, 0x08, 2]), "NOT_SERVING");
        assert!(!serving(&[0, 0, 0, 0, 0]), "UNKNOWN (the default)");
        assert!(!serving(&[0, 0, 0, 0, 2, 0x08]), "cut short");
        assert!(!serving(&[1, 0, 0, 0, 2, 0x08, 1]), "compressed");
        // An unknown string field before the status is skipped.
        assert!(serving(&[0, 0, 0, 0, 5, 0x12, 1, b'x', 0x08, 1]));
    }

    #[test]
    fn thresholds_flip_state_once() {
        let pool = PoolConfig {
            max_idle: 1,
            idle_timeout: Duration::from_secs(1),
        };
        let ep = Endpoint::new(
            "127.0.0.1:1".parse().unwrap(),
            "x:1".into(),
            0,
            1,
            pool::EndpointPool::new(
                1,
                &pool,
                crate::upstream::counter::ConnCounter::new(1),
                crate::config::Protocol::Http1,
                &Arc::default(),
                "x:1",
                Arc::default(),
            ),
        );
        let cfg = HealthCheckConfig {
            kind: crate::config::CheckKind::Http,
            path: "/".into(),
            host: None,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            expected_statuses: vec![(200, 299)],
        };
        let verdicts = [
            false, false, true, false, false, false, false, true, true, true,
        ];
        let flips: Vec<bool> = verdicts.iter().map(|p| apply(&ep, *p, &cfg)).collect();
        assert_eq!(
            flips,
            [
                false, false, false, false, false, true, false, false, true, false
            ]
        );
        assert!(!ep.state.active_down.load(Ordering::Relaxed));
    }
}
