//! Hot deploy: noticing that a watched file changed, waiting until it is
//! ready to read, and handing the change to whoever validates and swaps it
//! in. The configuration file and the plugin folder are watched here; what
//! a change means is decided by `control` (configuration) and by the
//! plugin registry (plugins).

mod watch;

pub use watch::{FileWatch, SETTLE, WatchError, watch_ready};

/// The sha256 of a file's bytes in lowercase hex: how admin views and logs
/// name a version of a configuration or plugin file.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        let _ = write!(out, "{b:02x}");
    }
    out
}
