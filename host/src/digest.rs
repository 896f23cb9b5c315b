//! How the gateway names one version of a file (a configuration or a
//! plugin) in logs and admin views: the sha256 of its bytes.

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
