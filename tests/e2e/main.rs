//! End-to-end tests: the real `weir` binary, real upstream servers on
//! port 0, real sockets. Each file is one area of behaviour.

mod support;

mod access_log;
mod admin;
mod bad_input;
mod balancing;
mod balancing_health;
mod balancing_retry;
mod bundled_calls;
mod bundled_plugins;
mod check;
mod fleet;
mod forwarding;
mod grpc;
mod h2_upstream;
mod hot_deploy;
mod http1;
mod metrics_plugins;
mod metrics_upstreams;
mod observability_example;
mod plugin_calls;
mod plugins;
mod plugins_breaker;
mod plugins_hostile;
mod plugins_share;
mod plugins_support;
mod reload;
mod routing;
mod shutdown;
mod smuggling;
mod streaming;
mod timeouts;
mod tls;
mod tls_upstream;
mod trace_context;
mod upstream_h1;
