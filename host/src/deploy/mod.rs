//! Hot deploy: noticing that a watched file changed, waiting for it to
//! settle, and handing the change to whoever validates and swaps it in.
//! The configuration file and the plugin folder are watched the same way;
//! what a change means is decided by `control` (configuration) and by the
//! plugin registry (plugins).

mod watch;

pub use watch::{FileWatch, SETTLE, WatchError, watch_folder};
