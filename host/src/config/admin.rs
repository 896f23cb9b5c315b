//! Validation of `[admin]`: the admin listener's address, the bearer token
//! that guards it and the metrics listener beside it. The token is read
//! from `token_file` while the configuration loads, so `weir check`,
//! start-up and every reload read it the same way and a bad token file is
//! one more configuration problem. Only its sha256 is kept: nothing that
//! prints, logs or shows a configuration can show the token. Comparing a
//! presented token with it is here too, so the comparison is written once.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::raw::RawAdmin;
use super::{At, Problem, Validator, field, limits};

/// `[admin]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub address: SocketAddr,
    /// The token every admin endpoint but `/healthz` asks for, when set.
    pub token: Option<AdminToken>,
    /// Where `token` was read from (for messages; never the token).
    pub token_file: Option<PathBuf>,
    /// A second listener serving only `/metrics` and `/healthz`, without
    /// the token, for scrapers.
    pub metrics_address: Option<SocketAddr>,
}

/// A bearer token, kept as its sha256. `Debug` shows no part of it.
#[derive(Clone, Copy)]
pub struct AdminToken {
    digest: [u8; 32],
}

impl AdminToken {
    /// Reads a token file: one token, surrounding whitespace trimmed. The
    /// error says what is wrong with the file, never what is in it.
    pub fn read(path: &Path) -> Result<AdminToken, String> {
        let bytes = super::read_small_file(path, limits::MAX_TOKEN_FILE_BYTES)?;
        let shown = path.display();
        AdminToken::parse(&bytes).map_err(|why| format!("the token in `{shown}` {why}"))
    }

    /// The token in a token file's bytes, or what is wrong with it.
    fn parse(bytes: &[u8]) -> Result<AdminToken, String> {
        let token = bytes.trim_ascii();
        if token.is_empty() {
            return Err("is empty: the admin API would have no token".into());
        }
        if token.len() < limits::MIN_TOKEN_BYTES {
            return Err(format!(
                "is {} bytes long; at least {} are needed so it cannot be guessed (for example \
                 the output of `openssl rand -hex 32`)",
                token.len(),
                limits::MIN_TOKEN_BYTES
            ));
        }
        // RFC 6750 section 2.1: the token goes in an `Authorization`
        // header after `Bearer `, so it is visible ASCII without spaces.
        if !token.iter().all(|b| (0x21..=0x7e).contains(b)) {
            return Err(
                "holds a space, a control character or a non-ASCII byte: a bearer token is sent \
                 in an `Authorization` header and must be visible ASCII"
                    .into(),
            );
        }
        Ok(AdminToken {
            digest: Sha256::digest(token).into(),
        })
    }

    /// Whether `presented` is the token. The time taken does not depend
    /// on how much of it is right: digests of the same length are
    /// compared in full, so timing tells a client nothing about the token.
    pub fn matches(&self, presented: &[u8]) -> bool {
        constant_time_eq(&self.digest, &Sha256::digest(presented).into())
    }
}

impl PartialEq for AdminToken {
    fn eq(&self, other: &AdminToken) -> bool {
        constant_time_eq(&self.digest, &other.digest)
    }
}

impl Eq for AdminToken {}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// Compares every byte, whatever the first difference: each XOR goes
/// through `black_box` so the optimizer cannot stop at a difference.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    diff == 0
}

/// Whether only this host can reach `address` (`::ffff:127.0.0.1`
/// included); `0.0.0.0` and `::` are every interface, so not loopback.
pub fn is_loopback(address: SocketAddr) -> bool {
    address.ip().to_canonical().is_loopback()
}

impl Validator<'_> {
    pub(super) fn admin(&mut self, raw: RawAdmin, at: &At) -> Option<AdminConfig> {
        let address = raw.address.as_deref().unwrap_or("127.0.0.1:9901");
        let address = self.socket_addr(at, "address", address);
        let metrics_address = raw
            .metrics_address
            .as_deref()
            .and_then(|a| self.socket_addr(at, "metrics_address", a));
        let token_file = raw.token_file.map(|f| self.base().join(f));
        let token = token_file
            .as_deref()
            .and_then(|path| match AdminToken::read(path) {
                Ok(t) => Some(t),
                Err(reason) => {
                    self.report(
                        &field(at, "token_file"),
                        Problem::Invalid {
                            field: "token_file",
                            reason,
                        },
                    );
                    None
                }
            });
        let address = address?;
        if token_file.is_none() && !is_loopback(address) {
            self.report(
                &field(at, "address"),
                Problem::Invalid {
                    field: "address",
                    reason: format!(
                        "`{address}` is not a loopback address and there is no `token_file`: the \
                         admin API shows the configuration, plugins, upstreams and metrics, so \
                         beyond this host it must ask for a bearer token; set `token_file`, or \
                         listen on 127.0.0.1"
                    ),
                },
            );
        }
        // Port 0 (any free port) twice is two listeners, not a clash.
        if metrics_address == Some(address) && address.port() != 0 {
            self.report(
                &field(at, "metrics_address"),
                Problem::Invalid {
                    field: "metrics_address",
                    reason: format!(
                        "`{address}` is also `address`: the metrics listener is a second \
                         listener and needs an address of its own"
                    ),
                },
            );
        }
        Some(AdminConfig {
            address,
            token,
            token_file,
            metrics_address,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigErrors};

    const TOKEN: &str = "0123456789abcdef0123";

    #[test]
    fn equal_digests_match_and_a_difference_anywhere_does_not() {
        let a = [7u8; 32];
        assert!(constant_time_eq(&a, &a));
        for i in 0..32 {
            for bit in 0..8 {
                let mut b = a;
                b[i] ^= 1 << bit;
                assert!(!constant_time_eq(&a, &b), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn a_token_matches_itself_only() {
        let t = AdminToken::parse(format!("  {TOKEN}\r\n").as_bytes()).unwrap();
        assert!(t.matches(TOKEN.as_bytes()));
        assert!(!t.matches(format!("{TOKEN} ").as_bytes()));
        assert!(!t.matches(&TOKEN.as_bytes()[1..]));
        assert!(!t.matches(TOKEN.to_uppercase().as_bytes()));
        assert!(!t.matches(b""));
        assert_eq!(t, AdminToken::parse(TOKEN.as_bytes()).unwrap());
        assert_ne!(t, AdminToken::parse(b"another-token-of-16+").unwrap());
    }

    #[test]
    fn debug_never_shows_the_token() {
        let t = AdminToken::parse(TOKEN.as_bytes()).unwrap();
        let shown = format!("{t:?}");
        assert_eq!(shown, "AdminToken(<redacted>)");
    }

    #[test]
    fn empty_short_and_unprintable_tokens_are_refused() {
        for (bytes, why) in [
            (&b""[..], "is empty"),
            (b" \n\t ", "is empty"),
            (b"short-token\n", "is 11 bytes long; at least 16"),
            (b"0123456789 abcdef", "holds a space"),
            (b"0123456789abcdef\x01", "holds a space, a control"),
            ("0123456789abcdéf".as_bytes(), "non-ASCII"),
        ] {
            let e = AdminToken::parse(bytes).unwrap_err();
            assert!(e.contains(why), "{bytes:?}: {e}");
        }
        assert!(AdminToken::parse(b"0123456789abcdef").is_ok());
    }

    #[test]
    fn token_files_are_read_with_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        std::fs::write(&good, format!("{TOKEN}\n")).unwrap();
        assert!(AdminToken::read(&good).unwrap().matches(TOKEN.as_bytes()));

        let big = dir.path().join("big");
        let size = limits::MAX_TOKEN_FILE_BYTES as usize + 1;
        std::fs::write(&big, "a".repeat(size)).unwrap();
        let e = AdminToken::read(&big).unwrap_err();
        assert!(
            e.contains("larger than 4096 bytes") && e.contains("big"),
            "{e}"
        );

        let e = AdminToken::read(&dir.path().join("missing")).unwrap_err();
        assert!(
            e.starts_with("cannot read `") && e.contains("missing"),
            "{e}"
        );
        let e = AdminToken::read(dir.path()).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
    }

    fn parse(dir: &Path, admin: &str) -> Result<Config, ConfigErrors> {
        let text = format!("[admin]\n{admin}\n[[listener]]\naddress = \"127.0.0.1:0\"\n");
        Config::parse(&dir.join("weir.toml"), &text)
    }

    #[test]
    fn beyond_loopback_the_admin_listener_needs_a_token_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), TOKEN).unwrap();
        let all = parse(dir.path(), "address = \"0.0.0.0:9901\"")
            .unwrap_err()
            .to_string();
        assert!(
            all.contains("admin.address") && all.contains("set `token_file`"),
            "{all}"
        );
        assert!(parse(dir.path(), "address = \"[::]:9901\"").is_err());
        // A relative path starts in the configuration's folder.
        let c = parse(
            dir.path(),
            "address = \"0.0.0.0:9901\"\ntoken_file = \"token\"",
        )
        .unwrap();
        let admin = c.admin.unwrap();
        assert!(admin.token.unwrap().matches(TOKEN.as_bytes()));
        assert_eq!(admin.token_file, Some(dir.path().join("token")));
        for loopback in [
            "127.0.0.1:9901",
            "127.0.0.2:1",
            "[::1]:9901",
            "[::ffff:127.0.0.1]:1",
        ] {
            let c = parse(dir.path(), &format!("address = \"{loopback}\"")).unwrap();
            assert_eq!(c.admin.unwrap().token, None);
        }
    }

    #[test]
    fn a_bad_token_file_is_a_problem_of_token_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "tiny\n").unwrap();
        let all = parse(dir.path(), "token_file = \"token\"")
            .unwrap_err()
            .to_string();
        assert!(all.contains("weir.toml:1: admin.token_file:"), "{all}");
        assert!(
            all.contains("the token in `") && all.contains("is 4 bytes"),
            "{all}"
        );
        assert!(!all.contains("tiny"), "the token leaked: {all}");
    }

    #[test]
    fn the_metrics_listener_needs_its_own_address() {
        let dir = tempfile::tempdir().unwrap();
        let all = parse(
            dir.path(),
            "address = \"127.0.0.1:9901\"\nmetrics_address = \"127.0.0.1:9901\"",
        )
        .unwrap_err()
        .to_string();
        assert!(all.contains("admin.metrics_address"), "{all}");
        let c = parse(dir.path(), "metrics_address = \"0.0.0.0:9902\"").unwrap();
        let admin = c.admin.unwrap();
        assert_eq!(admin.metrics_address, Some("0.0.0.0:9902".parse().unwrap()));
        assert_eq!(admin.address, "127.0.0.1:9901".parse().unwrap());
    }
}
