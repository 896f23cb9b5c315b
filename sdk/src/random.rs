//! Cryptographically secure random bytes from the host (at most
//! [`MAX_BYTES`] per host call; [`bytes`] makes as many calls as needed).

use crate::backend;
pub use crate::limits::random::MAX_BYTES;

/// `len` random bytes.
///
/// # Example
///
/// ```
/// let nonce = weir_sdk::random::bytes(16);
/// assert_eq!(nonce.len(), 16);
/// ```
pub fn bytes(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let chunk = (len - out.len()).min(MAX_BYTES);
        // `chunk` <= 1024, so the conversion cannot truncate.
        let got = backend::random_bytes(chunk as u32);
        // A host that hands out nothing would otherwise loop forever.
        assert!(!got.is_empty(), "the host returned no random bytes");
        out.extend(got.into_iter().take(chunk));
    }
    out
}

/// A random `u64`, e.g. for a percentage draw.
///
/// # Example
///
/// ```
/// let roll = weir_sdk::random::u64() % 100;
/// assert!(roll < 100);
/// ```
pub fn u64() -> u64 {
    let raw = bytes(8);
    let mut buf = [0u8; 8];
    buf.copy_from_slice(&raw);
    u64::from_le_bytes(buf)
}
