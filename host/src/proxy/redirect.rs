//! A plain listener with `https_redirect`: every request is answered with
//! a permanent redirect to the same host and path over HTTPS, and never
//! routed or forwarded. The host comes from the request (`Host`, or the
//! HTTP/2 authority) without its port; a request without a usable host
//! is a 400, since there is nowhere to send it.

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode, header};

use super::error::ProxyError;
use super::response::ResponseBody;
use crate::config::HttpsRedirect;

/// The redirect for a request, or why there is none.
pub fn answer(parts: &Parts, r: HttpsRedirect) -> Result<Response<ResponseBody>, ProxyError> {
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .and_then(|a| a.parse::<http::uri::Authority>().ok())
        .ok_or(ProxyError::BadTarget(
            "no host to redirect to (an HTTPS redirect needs a Host header)",
        ))?;
    let host = authority.host();
    let port = if r.port == 443 {
        String::new()
    } else {
        format!(":{}", r.port)
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let location = format!("https://{host}{port}{path}");
    let location = HeaderValue::from_str(&location).map_err(|_| {
        ProxyError::BadTarget("the request's host and path do not make a valid location")
    })?;
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::PERMANENT_REDIRECT);
    let mut resp = Response::new(ResponseBody::full(Bytes::new()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::LOCATION, location);
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    Ok(resp)
}
