//! Protocol upgrades (RFC 9110 section 7.8): which ones a client may make
//! on a route, and the tunnel once the upstream has switched.
//!
//! Only the protocols in the route's `upgrades` (WebSocket by default) are
//! offered upstream. An offer of any other, `h2c` above all, goes with the
//! other hop-by-hop headers and the request is forwarded as a plain one:
//! RFC 9110 section 7.8 lets a server ignore an upgrade it does not take,
//! so a client that tried (curl's `--http2` on an `http://` URL does) gets
//! its answer over HTTP/1.1. A tunnel to an upstream's h2c would carry
//! every later request on the connection past routing, the host checks,
//! body limits and plugins ("h2c smuggling"). An upstream that switches
//! unasked, or to a protocol the client was not offered through Weir, gets
//! no tunnel: the client is answered 502.

use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Response, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::error::ProxyError;
use super::headers;
use super::response::ResponseBody;
use crate::conn::{ConnContext, PendingUpgrade, Upgraded};

/// A client's protocol-upgrade request, taken out of the request.
pub(super) struct Upgrade {
    /// The `Upgrade` value sent upstream: the client's offers the route
    /// allows, in the client's order.
    pub protocol: HeaderValue,
    client: ClientSide,
}

/// Where the client's connection comes from once the 101 is out: Weir's
/// own HTTP/1.1 connection hands it over (`listener::h1`), hyper's
/// serves it through its upgrade future.
enum ClientSide {
    Owned(PendingUpgrade),
    Hyper(OnUpgrade),
}

/// Takes the client's upgrade out of the request when it offers a
/// protocol the route allows; otherwise the offer stays in the headers,
/// where the hop-by-hop stripping removes it.
pub(super) fn take(parts: &mut Parts, allowed: &[String]) -> Option<Upgrade> {
    if parts.version != Version::HTTP_11 || !headers::connection_has(&parts.headers, "upgrade") {
        return None;
    }
    let protocol = allowed_offer(&parts.headers, allowed)?;
    let client = match parts.extensions.remove::<PendingUpgrade>() {
        Some(owned) => ClientSide::Owned(owned),
        None => ClientSide::Hyper(parts.extensions.remove::<OnUpgrade>()?),
    };
    Some(Upgrade { protocol, client })
}

/// The protocols of every `Upgrade` field, trimmed, empty list elements
/// skipped.
fn protocols<'a>(values: impl Iterator<Item = &'a HeaderValue>) -> impl Iterator<Item = &'a [u8]> {
    values
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|p| !p.is_empty())
}

/// Whether `protocol`'s name, the part before any `/version`, is one of
/// `names` (compared case-insensitively).
fn named<'a>(protocol: &[u8], mut names: impl Iterator<Item = &'a [u8]>) -> bool {
    let name = |p: &'a [u8]| {
        p.split(|b| *b == b'/')
            .next()
            .unwrap_or_default()
            .trim_ascii()
    };
    let own = protocol
        .split(|b| *b == b'/')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    names.any(|n| name(n).eq_ignore_ascii_case(own))
}

/// The offered protocols the route allows, as one `Upgrade` value, or
/// `None` when it allows none of them.
fn allowed_offer(h: &HeaderMap, allowed: &[String]) -> Option<HeaderValue> {
    let kept: Vec<&[u8]> = protocols(h.get_all(header::UPGRADE).iter())
        .filter(|p| named(p, allowed.iter().map(|a| a.as_bytes())))
        .collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_bytes(&kept.join(&b", "[..])).ok()
}

/// Whether a 101's `Upgrade` names only protocols the request offered:
/// a server must not switch to another (RFC 9110 section 7.8) and must
/// name the ones it switches to (section 15.2.2).
fn switched_as_offered(resp: &HeaderMap, offered: &HeaderValue) -> bool {
    let mut switched = protocols(resp.get_all(header::UPGRADE).iter()).peekable();
    switched.peek().is_some() && switched.all(|p| named(p, protocols(std::iter::once(offered))))
}

/// Answers an upstream's 101: for an upgrade the client asked for and the
/// route allows, starts the tunnel and hands back the 101 for the client;
/// otherwise fails with 502 and the upstream connection is dropped.
pub(super) fn switch(
    cx: &ConnContext,
    upgrade: Option<Upgrade>,
    resp: Response<crate::upstream::Received>,
    endpoint: &str,
) -> Result<Response<ResponseBody>, ProxyError> {
    let bad = || ProxyError::BadSwitch {
        endpoint: endpoint.to_owned(),
    };
    let Some(up) = upgrade.filter(|up| switched_as_offered(resp.headers(), &up.protocol)) else {
        return Err(bad());
    };
    let (mut rparts, body) = resp.into_parts();
    let upstream_side = body.into_upgraded().ok_or_else(bad)?;
    // The connection's task waits for the tunnel (see
    // `ConnContext::tunnel`), so it stays counted and watched.
    let handle = tokio::spawn(tunnel(up.client, upstream_side));
    *cx.tunnel.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
    // The 101 must keep Upgrade and Connection: they are the handshake.
    let keep_upgrade = rparts.headers.remove(header::UPGRADE);
    headers::strip_hop_by_hop(&mut rparts.headers);
    if let Some(v) = keep_upgrade {
        rparts.headers.insert(header::UPGRADE, v);
    }
    rparts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers::append_via(&mut rparts.headers, Version::HTTP_11);
    Ok(Response::from_parts(rparts, ResponseBody::empty()))
}

/// Copies bytes both ways between an upgraded client and upstream until
/// either side closes.
async fn tunnel(client: ClientSide, mut upstream: Upgraded) {
    let copied = match client {
        ClientSide::Owned(pending) => {
            let Some(Ok(mut client)) = (match pending.take() {
                Some(rx) => Some(rx.await),
                None => None,
            }) else {
                tracing::debug!("upgrade failed: the client connection was not handed over");
                return;
            };
            tokio::io::copy_bidirectional(&mut client, &mut upstream).await
        }
        ClientSide::Hyper(on) => match on.await {
            Ok(client) => {
                tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut upstream).await
            }
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        },
    };
    if let Err(e) = copied {
        tracing::debug!(error = %e, "upgraded connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade_fields(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::UPGRADE, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_allowed_protocols_are_offered_upstream() {
        let allowed = ["websocket".to_owned()];
        let offer = |values: &[&'static str]| allowed_offer(&upgrade_fields(values), &allowed);
        assert_eq!(offer(&["websocket"]).unwrap(), "websocket");
        assert_eq!(offer(&["WebSocket"]).unwrap(), "WebSocket");
        assert_eq!(offer(&["h2c"]), None);
        assert_eq!(offer(&["h2c, websocket"]).unwrap(), "websocket");
        assert_eq!(offer(&["h2c", "websocket/13"]).unwrap(), "websocket/13");
        assert_eq!(offer(&["websocketx", "web"]), None);
        assert_eq!(offer(&[" , "]), None);
        assert_eq!(offer(&[]), None);
        assert_eq!(allowed_offer(&upgrade_fields(&["websocket"]), &[]), None);
    }

    #[test]
    fn a_switch_must_name_an_offered_protocol() {
        let offered = HeaderValue::from_static("websocket, foo/2");
        let switched =
            |values: &[&'static str]| switched_as_offered(&upgrade_fields(values), &offered);
        assert!(switched(&["websocket"]));
        assert!(switched(&["WEBSOCKET"]));
        assert!(switched(&["foo/3"]));
        assert!(!switched(&["h2c"]));
        assert!(!switched(&["websocket, h2c"]));
        assert!(!switched(&[]));
    }
}
