//! Weir, a programmable edge gateway.
//!
//! This crate is the gateway: configuration, listeners, routing, the proxy
//! pipeline and upstream pools. The `weir` binary (`main.rs`) is a thin
//! command line over [`server::Gateway`]. See ARCHITECTURE.md at the
//! repository root for how the pieces fit.

#![forbid(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod body;
pub mod config;
pub mod conn;
pub mod control;
pub mod deploy;
pub mod digest;
pub mod framing;
pub mod listener;
pub mod metrics;
pub mod plugin;
pub mod proxy;
pub mod router;
pub mod server;
pub mod tls;
pub mod trace;
pub mod upstream;
pub(crate) mod wire;
pub mod worker;
