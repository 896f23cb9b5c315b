//! Hot deploy. `watch` notices that a watched file changed and waits until
//! it is ready to read (the configuration file and the plugin folder);
//! `plugin` owns a plugin file's deploy from that event to the new version
//! serving: compile off the request path, `init`, the atomic swap, the
//! background optimized build, and the report. The control loop
//! (`control`) only routes events here, one at a time; a configuration
//! reload is `server::Gateway::reload`. `certs` watches a TLS listener's
//! certificate files and reloads them when they change.

pub mod certs;
pub mod plugin;
mod watch;

pub use watch::{FileWatch, SETTLE, WatchError, watch_ready};
