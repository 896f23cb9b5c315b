//! A finished span record as the workers hand it to the exporter: plain
//! data, made on the worker by `span.rs`, read on the exporter thread by
//! `otlp.rs`. Times are `Instant`s, placed on the wall clock from the
//! request's start when encoded.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::{Method, Version};

use super::context::{Context, SpanId};

/// The server span's facts from the request head, as the client sent it.
pub struct Server {
    /// The method as the conventions name it ([`method_name`]).
    pub method: &'static str,
    /// The path only, never the query (it may hold secrets).
    pub path: String,
    pub host: Option<String>,
    pub tls: bool,
    pub version: Version,
    pub client: IpAddr,
}

/// A finished child span.
pub struct Child {
    pub span_id: SpanId,
    pub start: Instant,
    pub end: Instant,
    pub kind: ChildKind,
}

pub enum ChildKind {
    /// One plugin call: `outcome` is `ok`, `failed` or `refused`.
    Plugin {
        plugin: Arc<str>,
        phase: &'static str,
        outcome: &'static str,
    },
    /// One call a plugin made and waited for (`proxy::calls`): `outcome`
    /// is `answered` or the call's error (`timeout`, `failed`, ...);
    /// `status` when answered.
    Call {
        plugin: Arc<str>,
        upstream: String,
        outcome: &'static str,
        status: Option<u16>,
    },
    /// One try upstream (1-based `attempt`): `outcome` is `answered`,
    /// `not_sent`, `failed` or `stopped`; `status` when answered.
    Upstream {
        upstream: String,
        endpoint: String,
        attempt: u32,
        outcome: &'static str,
        status: Option<u16>,
    },
}

/// A finished server span with its children: what the exporter queue
/// carries.
pub struct SpanRecord {
    pub context: Context,
    pub wall: SystemTime,
    pub started: Instant,
    pub end: Instant,
    pub server: Server,
    pub status: u16,
    pub route: Option<String>,
    pub upstream: Option<String>,
    pub children: Vec<Child>,
}

/// The method as the OpenTelemetry conventions name it: a method the
/// client invented is `_OTHER` (it is the client's text, of any length,
/// and would make span names unbounded).
pub fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
}
