//! A response body as it comes from an upstream, whichever protocol
//! carried it: hyper's body of an HTTP/1.1 connection, or a stream's body
//! on an HTTP/2 one ([`super::http2::RecvBody`]). Both yield data frames
//! and then, when the upstream sent some, one trailers frame.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::http2::RecvBody;
use crate::body::BoxError;

/// The body of an upstream's response.
#[derive(Debug)]
pub enum Received {
    H1(Incoming),
    H2(RecvBody),
}

impl Received {
    /// hyper's body, which an upgrade (a 101 over HTTP/1.1) needs.
    pub fn into_h1(self) -> Option<Incoming> {
        match self {
            Received::H1(b) => Some(b),
            Received::H2(_) => None,
        }
    }
}

impl Body for Received {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Received::H1(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(|e| Box::new(e) as BoxError))),
            Received::H2(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(|e| Box::new(e) as BoxError))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Received::H1(b) => b.is_end_stream(),
            Received::H2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Received::H1(b) => b.size_hint(),
            Received::H2(b) => b.size_hint(),
        }
    }
}
